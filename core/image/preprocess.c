/* Image preprocessing for the vision tower: resize, center crop, RGB
 * conversion, rescale and normalize, bit-exact to one of two references:
 *
 *   OPENAI: OpenAI CLIP's torchvision transform on Pillow 9.4:
 *           Resize(S, BICUBIC) -> CenterCrop (offsets round half to even,
 *           zero padding when the crop is larger) -> convert("RGB") ->
 *           ToTensor (u8 / 255) -> Normalize ((x - mean) / std).
 *   HF:     Hugging Face's CLIPImageProcessor: convert("RGB") -> resize
 *           (Pillow, same size rule) -> center crop (floor offsets) ->
 *           rescale (u8 * factor in double, then float) -> normalize.
 *
 * The resampling is Pillow's (libImaging/Resample.c): separable filters with
 * coefficients computed in double and rounded to 22-bit fixed point, a
 * horizontal pass then a vertical pass, each rounded and clipped to 8 bits.
 * Modes "1" and "P" are resized with Pillow's nearest-neighbour affine
 * stepping, "LA" and "RGBA" through premultiplied alpha, as Image.resize does.
 *
 * Only the pixels inside the crop window are computed: every output pixel of
 * Pillow's resampler depends only on its own coefficients, so computing a
 * window gives the same bytes as resizing the whole image and cropping, for a
 * fraction of the work and memory. This file does not decode (image_decode.c)
 * and does not batch. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "image/image.h"

/* ---- Pillow's filters (Resample.c), evaluated exactly as Pillow does ---- */

#define PI_D 3.14159265358979323846 /* M_PI */

static double filter_box(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * PI_D;
    /* float constants, promoted to double: Pillow writes 0.54f and 0.46f */
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * PI_D;
    return sin(x) / x;
}

static double filter_lanczos(double x) {
    if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
    return 0.0;
}

typedef struct filter_def {
    double (*fn)(double);
    double support;
    const char *name;
} filter_def;

static const filter_def filters[PCLIP_RESAMPLE_COUNT] = {
    [PCLIP_RESAMPLE_NEAREST] = {NULL, 0.0, "nearest"},
    [PCLIP_RESAMPLE_LANCZOS] = {filter_lanczos, 3.0, "lanczos"},
    [PCLIP_RESAMPLE_BILINEAR] = {filter_bilinear, 1.0, "bilinear"},
    [PCLIP_RESAMPLE_BICUBIC] = {filter_bicubic, 2.0, "bicubic"},
    [PCLIP_RESAMPLE_BOX] = {filter_box, 0.5, "box"},
    [PCLIP_RESAMPLE_HAMMING] = {filter_hamming, 1.0, "hamming"},
};

/* 8 bits of result, 2 bits of headroom for filters with negative lobes. */
#define PRECISION_BITS (32 - 8 - 2)
#define ROUND_HALF (1 << (PRECISION_BITS - 1))

/* Pillow's clip8: the accumulator shifted down (arithmetic shift, as Pillow
 * relies on), clamped to 0..255. */
static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* ---- coefficients for one axis ---- */

/* The coefficients of outputs [first, first + count) of an axis that Pillow
 * resamples from in_size to out_size samples (precompute_coeffs followed by
 * normalize_coeffs_8bpc). */
typedef struct axis {
    int32_t first, count;
    int32_t ksize;   /* stride of k */
    int32_t *bounds; /* [count][2]: first input sample, number of inputs */
    int32_t *k;      /* [count][ksize]: fixed-point weights */
    /* The same weights split as khi * 2^SPLIT_SHIFT + klo (klo in 0..2047),
     * both int16, for the fast horizontal pass; NULL when not split. */
    int16_t *khi, *klo; /* [count][ksize] */
} axis;

/* Splitting lets the horizontal pass run as int16 x int16 -> int32 dot
 * products, which compilers vectorise (pmaddwd, vpdpwssd, sdot); the two
 * partial sums recombine into exactly Pillow's int32 sum. Bounds: |khi| <=
 * 2^12 and klo < 2^11, so with at most SPLIT_MAX_TAPS taps neither partial
 * sum can overflow int32 (255 * 2047 * 4096 < 2^31). Wider filters (huge
 * downscales) take the plain int32 loop. */
#define SPLIT_SHIFT 11
#define SPLIT_MAX_TAPS 4096
#define SPLIT_PAD 16 /* split rows are padded to a multiple of this many taps */

static void axis_free(axis *a) {
    pclip__free(a->bounds);
    pclip__free(a->k);
    pclip__free(a->khi);
    pclip__free(a->klo);
    memset(a, 0, sizeof *a);
}

static pclip_status axis_init(pclip_ctx_t ctx, axis *a, const filter_def *f, int32_t in_size,
                              int32_t out_size, int32_t first, int32_t count, bool split,
                              const char *what) {
    memset(a, 0, sizeof *a);
    /* Pillow passes the box as C floats: in1 is (float)in_size. */
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    double kmax = ceil(support) * 2 + 1;
    /* Pillow refuses (MemoryError) when out_size * ksize doubles pass INT_MAX
     * bytes, whatever the memory; we refuse the same resizes. */
    if (kmax * 8.0 * out_size > (double)INT_MAX)
        return pclip__err(ctx, PCLIP_STATUS_LIMIT,
                          "preprocess: %s resize from %d to %d with %s needs %.0f filter taps per "
                          "sample, over Pillow's coefficient table limit",
                          what, in_size, out_size, f->name, kmax);
    int32_t ksize = (int32_t)kmax;
    split = split && ksize <= SPLIT_MAX_TAPS;
    /* The split pass reads whole SPLIT_PAD groups of taps: a wider stride
     * with zero weights past each output's taps gives it room. */
    if (split) ksize = (ksize + SPLIT_PAD - 1) & ~(SPLIT_PAD - 1);
    size_t nk, nb;
    if (!pclip__mul_size((size_t)count, (size_t)ksize, &nk) ||
        !pclip__mul3_size((size_t)count, 2, sizeof(int32_t), &nb) ||
        !pclip__mul_size(nk, sizeof(int32_t), &nk))
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "preprocess: %s coefficient table overflows",
                          what);
    a->bounds = pclip__malloc(nb);
    a->k = pclip__calloc(1, nk);
    if (split) {
        a->khi = pclip__calloc(1, nk / 2);
        a->klo = pclip__calloc(1, nk / 2);
    }
    if (!a->bounds || !a->k || (split && (!a->khi || !a->klo))) {
        axis_free(a);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "preprocess: out of memory for %s resize coefficients (%zu bytes)", what,
                          nk + nb);
    }
    a->first = first;
    a->count = count;
    a->ksize = ksize;
    double ss = 1.0 / filterscale;
    for (int32_t i = 0; i < count; i++) {
        int32_t xx = first + i;
        double center = in0 + (xx + 0.5) * scale;
        int32_t xmin = (int32_t)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int32_t xmax = (int32_t)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        PCLIP_ASSERT(xmax >= 0 && xmax <= ksize);
        /* Pillow keeps the raw weights in its table and divides them by their
         * sum; the filter is deterministic, so evaluating it twice gives the
         * same doubles without a ksize-long scratch table. */
        double ww = 0.0;
        for (int32_t x = 0; x < xmax; x++) ww += f->fn((x + xmin - center + 0.5) * ss);
        int32_t *k = a->k + (size_t)i * (size_t)ksize;
        for (int32_t x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * ss);
            if (ww != 0.0) w /= ww;
            k[x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        a->bounds[2 * i + 0] = xmin;
        a->bounds[2 * i + 1] = xmax;
        if (split)
            for (int32_t x = 0; x < xmax; x++) {
                size_t at = (size_t)i * (size_t)ksize + (size_t)x;
                /* floor division, so the low part is never negative */
                int32_t hi = (k[x] - (k[x] & ((1 << SPLIT_SHIFT) - 1))) / (1 << SPLIT_SHIFT);
                a->khi[at] = (int16_t)hi;
                a->klo[at] = (int16_t)(k[x] & ((1 << SPLIT_SHIFT) - 1));
            }
    }
    return PCLIP_STATUS_OK;
}

/* ---- Pillow's mode conversions (libImaging/Convert.c) ---- */

/* MULDIV255: a * b / 255, rounded, in Pillow's integer form. */
static inline uint32_t muldiv255(uint32_t a, uint32_t b) {
    uint32_t t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* convert("RGB") of n pixels of `mode` (bit2rgb, l2rgb, la2rgb, p2rgb,
 * rgba2rgb, cmyk2rgb). */
static void row_to_rgb(pclip_image_mode mode, const uint8_t *palette, const uint8_t *in,
                       uint8_t *out, size_t n) {
    switch (mode) {
    case PCLIP_IMAGE_1:
        for (size_t i = 0; i < n; i++)
            out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[i] ? 255 : 0;
        break;
    case PCLIP_IMAGE_L:
        for (size_t i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[i];
        break;
    case PCLIP_IMAGE_LA:
        for (size_t i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[2 * i];
        break;
    case PCLIP_IMAGE_P:
        for (size_t i = 0; i < n; i++) memcpy(out + 3 * i, palette + 3 * (size_t)in[i], 3);
        break;
    case PCLIP_IMAGE_RGB: memcpy(out, in, 3 * n); break;
    case PCLIP_IMAGE_RGBA:
        for (size_t i = 0; i < n; i++) memcpy(out + 3 * i, in + 4 * i, 3);
        break;
    case PCLIP_IMAGE_CMYK:
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = in + 4 * i;
            int32_t nk = 255 - p[3];
            for (int c = 0; c < 3; c++) {
                int32_t v = nk - (int32_t)muldiv255(p[c], (uint32_t)nk);
                out[3 * i + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
        break;
    default: break;
    }
}

/* "LA" -> "La" and "RGBA" -> "RGBa" (lA2la, rgbA2rgba): colour times alpha. */
static void row_premultiply(int nch, const uint8_t *in, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++, in += nch, out += nch) {
        uint32_t alpha = in[nch - 1];
        for (int c = 0; c < nch - 1; c++) out[c] = (uint8_t)muldiv255(in[c], alpha);
        out[nch - 1] = (uint8_t)alpha;
    }
}

/* "La" -> "LA" and "RGBa" -> "RGBA" (la2lA, rgba2rgbA), in place. */
static void row_unpremultiply(int nch, uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++, p += nch) {
        uint32_t alpha = p[nch - 1];
        if (alpha == 255 || alpha == 0) continue;
        for (int c = 0; c < nch - 1; c++) {
            uint32_t v = (255u * p[c]) / alpha;
            p[c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

/* ---- reading source rows in the working layout ---- */

typedef enum fetch_kind {
    FETCH_DIRECT,      /* the image's own bytes */
    FETCH_RGB,         /* converted to RGB first (HF) */
    FETCH_PREMULTIPLY, /* LA / RGBA premultiplied for resampling (Pillow's La / RGBa) */
} fetch_kind;

typedef struct source {
    const pclip_image *img;
    fetch_kind kind;
    int nch; /* channels of the working layout */
} source;

/* Pixels [x0, x1) of row y in the working layout: a pointer into the image,
 * or into `scratch` (room for x1 - x0 working pixels) after conversion. */
static const uint8_t *fetch_row(const source *s, int32_t y, int32_t x0, int32_t x1,
                                uint8_t *scratch) {
    const pclip_image *img = s->img;
    const uint8_t *p =
        img->pixels + ((size_t)y * (size_t)img->width + (size_t)x0) * (size_t)img->channels;
    size_t n = (size_t)(x1 - x0);
    switch (s->kind) {
    case FETCH_RGB: row_to_rgb(img->mode, img->palette, p, scratch, n); return scratch;
    case FETCH_PREMULTIPLY: row_premultiply(s->nch, p, scratch, n); return scratch;
    default: return p;
    }
}

/* ---- the two resampling passes (ImagingResampleHorizontal/Vertical_8bpc) ---- */

/* One row: dst[i] for each output of `a`, from src holding input samples
 * starting at `x0`. */
static void pass_horizontal(const axis *a, int nch, const uint8_t *src, int32_t x0, uint8_t *dst) {
    const int32_t ksize = a->ksize;
    for (int32_t i = 0; i < a->count; i++) {
        const int32_t *k = a->k + (size_t)i * (size_t)ksize;
        const int32_t n = a->bounds[2 * i + 1];
        const uint8_t *s = src + (size_t)(a->bounds[2 * i] - x0) * (size_t)nch;
        uint8_t *d = dst + (size_t)i * (size_t)nch;
        switch (nch) {
        case 1: {
            int32_t s0 = ROUND_HALF;
            for (int32_t x = 0; x < n; x++) s0 += s[x] * k[x];
            d[0] = clip8(s0);
            break;
        }
        case 2: {
            int32_t s0 = ROUND_HALF, s1 = ROUND_HALF;
            for (int32_t x = 0; x < n; x++) {
                s0 += s[2 * x + 0] * k[x];
                s1 += s[2 * x + 1] * k[x];
            }
            d[0] = clip8(s0);
            d[1] = clip8(s1);
            break;
        }
        case 3: {
            int32_t s0 = ROUND_HALF, s1 = ROUND_HALF, s2 = ROUND_HALF;
            for (int32_t x = 0; x < n; x++) {
                s0 += s[3 * x + 0] * k[x];
                s1 += s[3 * x + 1] * k[x];
                s2 += s[3 * x + 2] * k[x];
            }
            d[0] = clip8(s0);
            d[1] = clip8(s1);
            d[2] = clip8(s2);
            break;
        }
        default: {
            int32_t s0 = ROUND_HALF, s1 = ROUND_HALF, s2 = ROUND_HALF, s3 = ROUND_HALF;
            for (int32_t x = 0; x < n; x++) {
                s0 += s[4 * x + 0] * k[x];
                s1 += s[4 * x + 1] * k[x];
                s2 += s[4 * x + 2] * k[x];
                s3 += s[4 * x + 3] * k[x];
            }
            d[0] = clip8(s0);
            d[1] = clip8(s1);
            d[2] = clip8(s2);
            d[3] = clip8(s3);
            break;
        }
        }
    }
}

static inline uint8_t clip8_wide(int64_t v) {
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* pass_horizontal on split weights: `planes` holds the row's channels one
 * after the other as int16 ([nch][width], from input sample x0 on, with
 * SPLIT_PAD zeros after each channel). The tap count is rounded up to a
 * multiple of SPLIT_PAD: the extra weights are zero, and the loops have no
 * scalar tail. */
static void pass_horizontal_split(const axis *a, int nch, const int16_t *planes, size_t width,
                                  int32_t x0, uint8_t *dst) {
    const size_t ksize = (size_t)a->ksize, pw = width + SPLIT_PAD;
    for (int32_t i = 0; i < a->count; i++) {
        const int16_t *kh = a->khi + (size_t)i * ksize, *kl = a->klo + (size_t)i * ksize;
        const int32_t n = (a->bounds[2 * i + 1] + SPLIT_PAD - 1) & ~(SPLIT_PAD - 1);
        const int16_t *s = planes + (size_t)(a->bounds[2 * i] - x0);
        uint8_t *d = dst + (size_t)i * (size_t)nch;
        if (nch == 3) {
            const int16_t *s1 = s + pw, *s2 = s + 2 * pw;
            int32_t h0 = 0, l0 = 0, h1 = 0, l1 = 0, h2 = 0, l2 = 0;
            for (int32_t x = 0; x < n; x++) {
                h0 += s[x] * kh[x];
                l0 += s[x] * kl[x];
                h1 += s1[x] * kh[x];
                l1 += s1[x] * kl[x];
                h2 += s2[x] * kh[x];
                l2 += s2[x] * kl[x];
            }
            d[0] = clip8_wide((int64_t)h0 * (1 << SPLIT_SHIFT) + l0 + ROUND_HALF);
            d[1] = clip8_wide((int64_t)h1 * (1 << SPLIT_SHIFT) + l1 + ROUND_HALF);
            d[2] = clip8_wide((int64_t)h2 * (1 << SPLIT_SHIFT) + l2 + ROUND_HALF);
            continue;
        }
        for (int c = 0; c < nch; c++, s += pw) {
            int32_t hi = 0, lo = 0;
            for (int32_t x = 0; x < n; x++) {
                hi += s[x] * kh[x];
                lo += s[x] * kl[x];
            }
            d[c] = clip8_wide((int64_t)hi * (1 << SPLIT_SHIFT) + lo + ROUND_HALF);
        }
    }
}

/* Source row -> int16 planes for pass_horizontal_split (the padding after
 * each plane was zeroed once and is never written). */
static void row_to_planes(const uint8_t *p, int nch, size_t width, int16_t *planes) {
    const size_t pw = width + SPLIT_PAD;
    switch (nch) {
    case 1:
        for (size_t x = 0; x < width; x++) planes[x] = p[x];
        break;
    case 2:
        for (size_t x = 0; x < width; x++) {
            planes[x] = p[2 * x];
            planes[pw + x] = p[2 * x + 1];
        }
        break;
    case 3:
        for (size_t x = 0; x < width; x++) {
            planes[x] = p[3 * x];
            planes[pw + x] = p[3 * x + 1];
            planes[2 * pw + x] = p[3 * x + 2];
        }
        break;
    default:
        for (size_t x = 0; x < width; x++) {
            planes[x] = p[4 * x];
            planes[pw + x] = p[4 * x + 1];
            planes[2 * pw + x] = p[4 * x + 2];
            planes[3 * pw + x] = p[4 * x + 3];
        }
        break;
    }
}

/* Output row i of `a`: rows[] holds input rows from `y0` on, `m` bytes each
 * used; acc is scratch for m accumulators. The taps run in Pillow's order and
 * the sums are exact integers, so sweeping a whole row per tap changes
 * nothing but speed. */
static void pass_vertical(const axis *a, int32_t i, const uint8_t *rows, size_t row_stride,
                          int32_t y0, size_t m, int32_t *acc, uint8_t *dst) {
    const int32_t *k = a->k + (size_t)i * (size_t)a->ksize;
    const int32_t n = a->bounds[2 * i + 1];
    const uint8_t *r = rows + (size_t)(a->bounds[2 * i] - y0) * row_stride;
    for (size_t e = 0; e < m; e++) acc[e] = ROUND_HALF;
    for (int32_t y = 0; y < n; y++, r += row_stride) {
        const int32_t ky = k[y];
        for (size_t e = 0; e < m; e++) acc[e] += r[e] * ky;
    }
    for (size_t e = 0; e < m; e++) dst[e] = clip8(acc[e]);
}

/* ---- geometry ---- */

/* Where the window sits: output pixel (y, x) of the crop is pixel
 * (y + top, x + left) of the resized image, or padding outside it. */
typedef struct geometry {
    int32_t src_w, src_h; /* source image */
    int32_t rw, rh;       /* resized image */
    int32_t cw, ch;       /* crop (the output) */
    int64_t top, left;    /* crop offset in the resized image; negative = padding */
    int32_t r0, r1;       /* resized rows inside the crop */
    int32_t c0, c1;       /* resized columns inside the crop */
} geometry;

/* Offset of a crop of `crop` samples in `size` samples: torchvision takes
 * int(round((size - crop) / 2.0)) (Python rounds half to even),
 * CLIPImageProcessor (size - crop) // 2. A larger crop pads with zeros:
 * torchvision puts (crop - size) // 2 before the image and the rest after.
 * CLIPImageProcessor's center_crop returns one row or column short when the
 * difference is odd (it floors both its pad and its negative crop origin);
 * for HF we pad ceil((crop - size) / 2) before, the fix that keeps the size
 * (fastembed's, and tests/fixtures/make_fixtures.py's). */
static int64_t crop_offset(int64_t size, int64_t crop, pclip_preprocess_mode mode) {
    if (crop > size)
        return mode == PCLIP_PREPROCESS_HF ? -((crop - size + 1) / 2) : -((crop - size) / 2);
    int64_t m = size - crop, q = m / 2;
    if (mode == PCLIP_PREPROCESS_OPENAI && m % 2 == 1 && q % 2 == 1) q += 1;
    return q;
}

static void window_span(int64_t offset, int32_t crop, int32_t size, int32_t *lo, int32_t *hi) {
    int64_t a = offset > 0 ? offset : 0;
    int64_t b = offset + crop < size ? offset + crop : size;
    *lo = (int32_t)a;
    *hi = (int32_t)b;
}

/* ---- filling the window ---- */

/* The window buffer holds [ch, cw, nch] bytes of the working layout, zero
 * where the crop pads; window_at() is where resized pixel (r, c) goes. */
static uint8_t *window_at(const geometry *g, uint8_t *win, int nch, int32_t r, int32_t c) {
    return win + ((size_t)(r - g->top) * (size_t)g->cw + (size_t)(c - g->left)) * (size_t)nch;
}

/* No resize: the crop reads the source directly (Pillow returns a copy when
 * the size already matches, so no premultiplication round trip either). */
static pclip_status fill_copy(pclip_ctx_t ctx, const source *s, const geometry *g, uint8_t *win) {
    size_t n = (size_t)(g->c1 - g->c0);
    uint8_t *scratch = NULL;
    if (s->kind != FETCH_DIRECT) {
        scratch = pclip__malloc(n * (size_t)s->nch);
        if (!scratch)
            return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "preprocess: out of memory");
    }
    for (int32_t r = g->r0; r < g->r1; r++) {
        const uint8_t *p = fetch_row(s, r, g->c0, g->c1, scratch);
        memcpy(window_at(g, win, s->nch, r, g->c0), p, n * (size_t)s->nch);
    }
    pclip__free(scratch);
    return PCLIP_STATUS_OK;
}

/* Pillow's COORD(): floor for the non-negative coordinates, -1 below zero. */
static inline int64_t coord(double v) { return v < 0.0 ? -1 : (int64_t)v; }

/* Image.resize with NEAREST (and always for "1" and "P"): _imaging.c turns it
 * into an affine transform, a[0] = in / out as (double)(float - float) / out,
 * and ImagingScaleAffine walks the source position by repeated addition,
 * starting at a[0] / 2. We replay the same additions from 0 so the rounding
 * matches, and keep the positions inside the window. Samples that land
 * outside the image are filled with zero, as Pillow's fill does. */
static void nearest_table(int32_t in_size, int32_t out_size, int32_t lo, int32_t hi, int64_t *tab) {
    float box0 = 0.0f, box1 = (float)in_size;
    double a = (double)(box1 - box0) / out_size;
    double pos = box0 + a * 0.5;
    for (int32_t x = 0; x < hi; x++) {
        if (x >= lo) {
            int64_t v = coord(pos);
            tab[x - lo] = v >= 0 && v < in_size ? v : -1;
        }
        pos += a;
    }
}

static pclip_status fill_nearest(pclip_ctx_t ctx, const source *s, const geometry *g,
                                 uint8_t *win) {
    size_t nx = (size_t)(g->c1 - g->c0), ny = (size_t)(g->r1 - g->r0);
    size_t tab_bytes;
    if (!pclip__mul_size(nx + ny, sizeof(int64_t), &tab_bytes))
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "preprocess: window too large");
    int64_t *xtab = pclip__malloc(tab_bytes);
    if (!xtab) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "preprocess: out of memory");
    int64_t *ytab = xtab + nx;
    nearest_table(g->src_w, g->rw, g->c0, g->c1, xtab);
    nearest_table(g->src_h, g->rh, g->r0, g->r1, ytab);
    /* The source columns that the window reads, converted once per row. */
    int64_t xlo = INT64_MAX, xhi = -1;
    for (size_t i = 0; i < nx; i++) {
        if (xtab[i] < 0) continue;
        if (xtab[i] < xlo) xlo = xtab[i];
        if (xtab[i] > xhi) xhi = xtab[i];
    }
    uint8_t *scratch = NULL;
    if (xhi >= 0 && s->kind != FETCH_DIRECT) {
        scratch = pclip__malloc((size_t)(xhi + 1 - xlo) * (size_t)s->nch);
        if (!scratch) {
            pclip__free(xtab);
            return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "preprocess: out of memory");
        }
    }
    const size_t nch = (size_t)s->nch;
    for (size_t j = 0; xhi >= 0 && j < ny; j++) {
        if (ytab[j] < 0) continue;
        const uint8_t *p = fetch_row(s, (int32_t)ytab[j], (int32_t)xlo, (int32_t)xhi + 1, scratch);
        uint8_t *d = window_at(g, win, s->nch, g->r0 + (int32_t)j, g->c0);
        for (size_t i = 0; i < nx; i++, d += nch)
            if (xtab[i] >= 0) memcpy(d, p + (size_t)(xtab[i] - xlo) * nch, nch);
    }
    pclip__free(scratch);
    pclip__free(xtab);
    return PCLIP_STATUS_OK;
}

/* ImagingResampleInner restricted to the window: coefficients for the
 * window's outputs only, the horizontal pass over the source rows that the
 * vertical pass reads, then the vertical pass. A pass whose size does not
 * change is skipped, as Pillow skips it. */
static pclip_status fill_resample(pclip_ctx_t ctx, const source *s, const geometry *g,
                                  const filter_def *f, uint8_t *win) {
    pclip_status st;
    axis ax = {0}, ay = {0};
    uint8_t *tmp = NULL, *scratch = NULL;
    int16_t *planes = NULL; /* [nch][width]: a source row, channel by channel */
    int32_t *acc = NULL;
    const bool need_h = g->rw != g->src_w, need_v = g->rh != g->src_h;
    const size_t nch = (size_t)s->nch;
    const int32_t nx = g->c1 - g->c0, ny = g->r1 - g->r0;

    /* Pillow computes the vertical coefficients first, and always. */
    if ((st = axis_init(ctx, &ay, f, g->src_h, g->rh, g->r0, ny, false, "vertical"))) goto done;
    if (need_h && (st = axis_init(ctx, &ax, f, g->src_w, g->rw, g->c0, nx, true, "horizontal")))
        goto done;
    /* Source rows [y0, y1) and columns [x0, x1) that the window depends on. */
    int32_t y0 = g->r0, y1 = g->r1, x0 = g->c0, x1 = g->c1;
    if (need_v) {
        y0 = ay.bounds[0];
        y1 = ay.bounds[2 * (ny - 1)] + ay.bounds[2 * (ny - 1) + 1];
    }
    if (need_h) {
        x0 = ax.bounds[0];
        x1 = ax.bounds[2 * (nx - 1)] + ax.bounds[2 * (nx - 1) + 1];
    }
    size_t row_bytes = (size_t)nx * nch, tmp_bytes = 0;
    if (need_v && !pclip__mul_size((size_t)(y1 - y0), row_bytes, &tmp_bytes)) {
        st = pclip__err(ctx, PCLIP_STATUS_LIMIT, "preprocess: resize buffer overflows");
        goto done;
    }
    if (need_v) {
        tmp = pclip__malloc(tmp_bytes);
        acc = pclip__malloc(row_bytes * sizeof *acc);
    }
    const size_t width = (size_t)(x1 - x0);
    if (s->kind != FETCH_DIRECT) scratch = pclip__malloc(width * nch);
    if (ax.khi) planes = pclip__calloc((width + SPLIT_PAD) * nch, sizeof *planes);
    if ((need_v && (!tmp || !acc)) || (s->kind != FETCH_DIRECT && !scratch) ||
        (ax.khi && !planes)) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                        "preprocess: out of memory for the resize buffers (%zu bytes)", tmp_bytes);
        goto done;
    }
    /* Horizontal pass (or a plain copy of the window's columns) into the
     * temporary rows, or straight into the window when no vertical pass. */
    for (int32_t y = y0; y < y1; y++) {
        const uint8_t *p = fetch_row(s, y, x0, x1, scratch);
        uint8_t *d =
            need_v ? tmp + (size_t)(y - y0) * row_bytes : window_at(g, win, s->nch, y, g->c0);
        if (ax.khi) {
            row_to_planes(p, s->nch, width, planes);
            pass_horizontal_split(&ax, s->nch, planes, width, x0, d);
        } else if (need_h)
            pass_horizontal(&ax, s->nch, p, x0, d);
        else
            memcpy(d, p, row_bytes);
    }
    if (need_v)
        for (int32_t i = 0; i < ny; i++)
            pass_vertical(&ay, i, tmp, row_bytes, y0, row_bytes, acc,
                          window_at(g, win, s->nch, g->r0 + i, g->c0));
    st = PCLIP_STATUS_OK;

done:
    axis_free(&ax);
    axis_free(&ay);
    pclip__free(tmp);
    pclip__free(acc);
    pclip__free(scratch);
    pclip__free(planes);
    return st;
}

/* ---- checks ---- */

static pclip_status check_image(pclip_ctx_t ctx, const pclip_image *img) {
    if ((unsigned)img->mode >= PCLIP_IMAGE_MODE_COUNT)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "preprocess: image mode %d is invalid", (int)img->mode);
    if (img->channels != pclip__image_mode_channels(img->mode))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "preprocess: image mode %s has %d channels, expected %d",
                          pclip__image_mode_name(img->mode), img->channels,
                          pclip__image_mode_channels(img->mode));
    if (img->width < 1 || img->height < 1 || !img->pixels)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "preprocess: image is %dx%d%s",
                          img->width, img->height, img->pixels ? "" : " without pixels");
    if ((int64_t)img->width * img->height > PCLIP_LIMIT_IMAGE_PIXELS)
        return pclip__err(ctx, PCLIP_STATUS_LIMIT,
                          "preprocess: image is %dx%d, over the limit of %lld pixels", img->width,
                          img->height, (long long)PCLIP_LIMIT_IMAGE_PIXELS);
    return PCLIP_STATUS_OK;
}

static pclip_status check_side(pclip_ctx_t ctx, const char *field, int32_t v) {
    if (v < 1 || v > PCLIP_LIMIT_IMAGE_SIDE)
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "preprocess: %s is %d, expected 1..%d",
                          field, v, PCLIP_LIMIT_IMAGE_SIDE);
    return PCLIP_STATUS_OK;
}

static pclip_status check_config(pclip_ctx_t ctx, const pclip_image_config *cfg,
                                 pclip_preprocess_mode mode) {
    pclip_status st;
    if ((st = check_side(ctx, "crop_height", cfg->crop_height))) return st;
    if ((st = check_side(ctx, "crop_width", cfg->crop_width))) return st;
    if (cfg->do_resize) {
        if (cfg->shortest_edge < 0 || cfg->shortest_edge > PCLIP_LIMIT_IMAGE_SIDE)
            return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                              "preprocess: shortest_edge is %d, expected 0..%d", cfg->shortest_edge,
                              PCLIP_LIMIT_IMAGE_SIDE);
        if (cfg->shortest_edge == 0) {
            if ((st = check_side(ctx, "resize height", cfg->resize_height))) return st;
            if ((st = check_side(ctx, "resize width", cfg->resize_width))) return st;
        }
        if ((unsigned)cfg->resample >= PCLIP_RESAMPLE_COUNT)
            return pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                              "preprocess: resample filter %d is not one of Pillow's 0..5",
                              (int)cfg->resample);
    }
    if (mode == PCLIP_PREPROCESS_HF && cfg->do_rescale && !isfinite(cfg->rescale_factor))
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "preprocess: rescale_factor is not finite");
    if (cfg->do_normalize)
        for (int c = 0; c < 3; c++)
            if (!isfinite(cfg->mean[c]) || !isfinite(cfg->std[c]) || cfg->std[c] == 0.0f)
                return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                                  "preprocess: channel %d has mean %g and std %g; expected finite "
                                  "values and a non-zero std",
                                  c, (double)cfg->mean[c], (double)cfg->std[c]);
    return PCLIP_STATUS_OK;
}

/* The resize target. torchvision 0.14 and CLIPImageProcessor agree: the
 * short side becomes S and the long side int(S * long / short), a true
 * division of Python ints. S * long < 2^53 here (S <= 4096, long <= the
 * pixel limit), so the double division rounds exactly as Python's does. */
static pclip_status resize_target(pclip_ctx_t ctx, const pclip_image *img,
                                  const pclip_image_config *cfg, int32_t *rw, int32_t *rh) {
    int64_t w = img->width, h = img->height;
    int64_t nw = w, nh = h;
    if (cfg->do_resize && cfg->shortest_edge > 0) {
        int64_t s = cfg->shortest_edge;
        int64_t shorter = w <= h ? w : h, longer = w <= h ? h : w;
        int64_t nl = (int64_t)((double)(s * longer) / (double)shorter);
        nw = w <= h ? s : nl;
        nh = w <= h ? nl : s;
    } else if (cfg->do_resize) {
        nw = cfg->resize_width;
        nh = cfg->resize_height;
    }
    /* We never hold the resized image, but it must stay a size Pillow could
     * hold: no larger than the decoder's own pixel limit. */
    if (nw > INT32_MAX || nh > INT32_MAX || nw * nh > PCLIP_LIMIT_IMAGE_PIXELS)
        return pclip__err(ctx, PCLIP_STATUS_LIMIT,
                          "preprocess: resizing %lldx%lld gives %lldx%lld, over the limit of %lld "
                          "pixels",
                          (long long)w, (long long)h, (long long)nw, (long long)nh,
                          (long long)PCLIP_LIMIT_IMAGE_PIXELS);
    *rw = (int32_t)nw;
    *rh = (int32_t)nh;
    return PCLIP_STATUS_OK;
}

/* ---- entry point ---- */

pclip_status pclip_image_preprocess(pclip_ctx_t ctx, const pclip_image *img,
                                    const pclip_image_config *cfg, pclip_preprocess_mode mode,
                                    float *out) {
    if (!img || !cfg || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "preprocess: image, config and output must not be NULL");
    if ((unsigned)mode >= PCLIP_PREPROCESS_COUNT)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "preprocess: mode %d is neither OPENAI nor HF", (int)mode);
    pclip_status st;
    if ((st = check_image(ctx, img)) || (st = check_config(ctx, cfg, mode))) return st;

    /* Working layout: HF converts to RGB before anything else; OpenAI's
     * transform resizes and crops the image in its own mode. */
    source src = {.img = img, .kind = FETCH_DIRECT, .nch = img->channels};
    pclip_image_mode work_mode = img->mode;
    if (mode == PCLIP_PREPROCESS_HF && img->mode != PCLIP_IMAGE_RGB) {
        if (!cfg->do_convert_rgb)
            return pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                              "preprocess: a %s image needs do_convert_rgb to give 3 channels",
                              pclip__image_mode_name(img->mode));
        src.kind = FETCH_RGB;
        src.nch = 3;
        work_mode = PCLIP_IMAGE_RGB;
    }

    geometry g = {
        .src_w = img->width, .src_h = img->height, .cw = cfg->crop_width, .ch = cfg->crop_height};
    if ((st = resize_target(ctx, img, cfg, &g.rw, &g.rh))) return st;
    if (cfg->do_center_crop) {
        g.top = crop_offset(g.rh, g.ch, mode);
        g.left = crop_offset(g.rw, g.cw, mode);
    } else if (g.rw != g.cw || g.rh != g.ch) {
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "preprocess: center crop is off, but the %dx%d image is %dx%d after "
                          "resizing, not the %dx%d the model takes",
                          img->width, img->height, g.rw, g.rh, g.cw, g.ch);
    }
    window_span(g.top, g.ch, g.rh, &g.r0, &g.r1);
    window_span(g.left, g.cw, g.rw, &g.c0, &g.c1);

    /* Pillow's choice of filter by mode (Image.resize). */
    pclip_resample resample = cfg->do_resize ? cfg->resample : PCLIP_RESAMPLE_NEAREST;
    if (work_mode == PCLIP_IMAGE_1 || work_mode == PCLIP_IMAGE_P) resample = PCLIP_RESAMPLE_NEAREST;
    const bool resized = g.rw != g.src_w || g.rh != g.src_h;
    const bool premultiplied = resized && resample != PCLIP_RESAMPLE_NEAREST &&
                               (work_mode == PCLIP_IMAGE_LA || work_mode == PCLIP_IMAGE_RGBA);
    if (premultiplied) src.kind = FETCH_PREMULTIPLY;

    /* The crop window, zero bytes where it pads: fill 0 in every mode, so a
     * "P" pad shows palette entry 0 and a CMYK pad (no ink) is white. */
    const size_t npix = (size_t)g.ch * (size_t)g.cw;
    uint8_t *win = pclip__calloc(npix, (size_t)src.nch);
    uint8_t *rgb = pclip__malloc((size_t)g.cw * 3);
    if (!win || !rgb) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                        "preprocess: out of memory for a %dx%d crop", g.cw, g.ch);
        goto done;
    }
    if (!resized)
        st = fill_copy(ctx, &src, &g, win);
    else if (resample == PCLIP_RESAMPLE_NEAREST)
        st = fill_nearest(ctx, &src, &g, win);
    else
        st = fill_resample(ctx, &src, &g, &filters[resample], win);
    if (st) goto done;
    if (premultiplied) row_unpremultiply(src.nch, win, npix);

    /* u8 -> float for each channel value, as a table: OpenAI's ToTensor is
     * a float32 division by 255, HF's rescale a double product cast to
     * float; both normalize with a float32 subtract, then divide. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x;
            if (mode == PCLIP_PREPROCESS_OPENAI)
                x = (float)v / 255.0f;
            else
                x = cfg->do_rescale ? (float)((double)v * cfg->rescale_factor) : (float)v;
            if (cfg->do_normalize) x = (x - cfg->mean[c]) / cfg->std[c];
            lut[c][v] = x;
        }
    /* convert("RGB"), then HWC bytes to CHW floats. */
    for (int32_t y = 0; y < g.ch; y++) {
        row_to_rgb(work_mode, img->palette, win + (size_t)y * (size_t)g.cw * (size_t)src.nch, rgb,
                   (size_t)g.cw);
        for (int c = 0; c < 3; c++) {
            float *o = out + ((size_t)c * (size_t)g.ch + (size_t)y) * (size_t)g.cw;
            for (int32_t x = 0; x < g.cw; x++) o[x] = lut[c][rgb[3 * x + c]];
        }
    }

done:
    pclip__free(win);
    pclip__free(rgb);
    return st;
}
