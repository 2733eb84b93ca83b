/* Images: decoding (every fixture decodes to Pillow 9.4's mode and bytes),
 * preprocessing (every pixel reference of torchvision / CLIPImageProcessor is
 * matched exactly), Pillow's other resampling filters, the crop and padding
 * rules, malformed files, and an allocation-failure walk. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "image/image.h"
#include "internal.h"
#include "testutil.h"

/* ---- helpers ---- */

static pclip_ctx_t ctx_new(void) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    return ctx;
}

static pclip_image *load_ok(pclip_ctx_t ctx, const char *rel) {
    pclip_image *img = NULL;
    pclip_status st = pclip_image_load(ctx, pclip_test_fixture(rel), &img);
    ck_assert_status(ctx, st, PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(img);
    return img;
}

/* FNV-1a 64 of the bytes decoded.json hashes: the pixels as stored, except
 * that "P" is hashed after the palette lookup (RGB). */
static uint64_t canonical_hash(const pclip_image *img) {
    size_t n = (size_t)img->width * (size_t)img->height;
    if (img->mode != PCLIP_IMAGE_P) return pclip_test_fnv1a64(img->pixels, n * img->channels);
    uint8_t *rgb = malloc(n * 3);
    for (size_t i = 0; i < n; i++) memcpy(rgb + 3 * i, img->palette + 3 * img->pixels[i], 3);
    uint64_t h = pclip_test_fnv1a64(rgb, n * 3);
    free(rgb);
    return h;
}

/* A synthetic image owned by the library's allocator (pclip_image_destroy
 * frees it): channel c of pixel (x, y) is (7x + 13y + 50c + (xy mod 23)) & 255. */
static pclip_image *synth(pclip_image_mode mode, int32_t w, int32_t h) {
    pclip_image *img = pclip__calloc(1, sizeof *img);
    ck_assert_ptr_nonnull(img);
    img->mode = mode;
    img->width = w;
    img->height = h;
    img->channels = pclip__image_mode_channels(mode);
    img->pixels = pclip__malloc((size_t)w * h * img->channels);
    ck_assert_ptr_nonnull(img->pixels);
    for (int32_t y = 0; y < h; y++)
        for (int32_t x = 0; x < w; x++)
            for (int c = 0; c < img->channels; c++)
                img->pixels[((size_t)y * w + x) * img->channels + c] =
                    (uint8_t)((x * 7 + y * 13 + c * 50 + (x * y) % 23) & 255);
    return img;
}

/* Resize to exactly w x h, no crop offset, no normalisation: the OpenAI
 * output is then u8 / 255 and gives the resized RGB bytes back. */
static void cfg_exact(pclip_image_config *c, int32_t w, int32_t h, pclip_resample rs) {
    memset(c, 0, sizeof *c);
    c->do_resize = 1;
    c->resize_width = c->crop_width = w;
    c->resize_height = c->crop_height = h;
    c->do_center_crop = 1;
    c->do_convert_rgb = 1;
    c->do_rescale = 1;
    c->rescale_factor = 1.0 / 255.0;
    c->resample = rs;
}

/* The OpenAI output without normalisation, back to u8 (v / 255.0f is exact
 * enough that rounding v / 255 * 255 recovers v). */
static void floats_to_u8(const float *f, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        long v = lrintf(f[i] * 255.0f);
        ck_assert_msg(v >= 0 && v <= 255 && fabsf(f[i] * 255.0f - (float)v) < 1e-3f,
                      "value %g is not a u8 / 255", (double)f[i]);
        out[i] = (uint8_t)v;
    }
}

/* Preprocess with normalisation off and return the u8 CHW bytes (for HF the
 * config must rescale by 1 / 255). */
static uint8_t *run_u8(pclip_ctx_t ctx, const pclip_image *img, const pclip_image_config *cfg,
                       pclip_preprocess_mode mode) {
    size_t n = 3 * (size_t)cfg->crop_height * cfg->crop_width;
    float *f = malloc(n * sizeof *f);
    uint8_t *u = malloc(n);
    pclip_status st = pclip_image_preprocess(ctx, img, cfg, mode, f);
    ck_assert_status(ctx, st, PCLIP_STATUS_OK);
    if (mode == PCLIP_PREPROCESS_OPENAI) {
        floats_to_u8(f, n, u);
    } else {
        for (size_t i = 0; i < n; i++) u[i] = (uint8_t)lrintf(f[i] * 255.0f);
    }
    free(f);
    return u;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- core: decoding ---- */

START_TEST(test_decode_fixtures) {
    size_t len;
    char *text = pclip_test_read_file(pclip_test_fixture("decoded.json"), &len);
    cJSON *root = cJSON_Parse(text);
    ck_assert_ptr_nonnull(root);
    pclip_ctx_t ctx = ctx_new();
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        char rel[512];
        snprintf(rel, sizeof rel, "images/%s", e->string);
        const char *mode = cJSON_GetObjectItem(e, "mode")->valuestring;
        const char *hex = cJSON_GetObjectItem(e, "fnv1a64")->valuestring;
        int w = cJSON_GetObjectItem(e, "width")->valueint;
        int h = cJSON_GetObjectItem(e, "height")->valueint;
        pclip_image *img = load_ok(ctx, rel);
        /* Pillow's "I" (16-bit grey) is our documented deviation: L of v >> 8. */
        const char *want = strcmp(mode, "I") == 0 ? "L" : mode;
        ck_assert_msg(strcmp(pclip__image_mode_name(img->mode), want) == 0,
                      "%s: mode %s, Pillow %s", e->string, pclip__image_mode_name(img->mode), mode);
        ck_assert_int_eq(img->channels, pclip__image_mode_channels(img->mode));
        ck_assert_msg(img->width == w && img->height == h, "%s: %dx%d, Pillow %dx%d", e->string,
                      img->width, img->height, w, h);
        char got[17];
        snprintf(got, sizeof got, "%016llx", (unsigned long long)canonical_hash(img));
        ck_assert_msg(strcmp(got, hex) == 0, "%s: pixel hash %s, Pillow %s", e->string, got, hex);
        pclip_image_destroy(img);
        n++;
    }
    /* every file in images/ has a reference */
    DIR *d = opendir(pclip_test_fixture("images"));
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            ck_assert_msg(cJSON_GetObjectItem(root, de->d_name) != NULL,
                          "images/%s is missing from decoded.json", de->d_name);
            files++;
        }
    closedir(d);
    ck_assert_int_eq(files, n);
    ck_assert_int_gt(n, 40);
    printf("image: %d fixture images decode to Pillow's mode and bytes\n", n);
    cJSON_Delete(root);
    free(text);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_decode_memory) {
    pclip_ctx_t ctx = ctx_new();
    const char *files[] = {"images/j_rgb420_64x48.jpg", "images/p_pal4_64x48.png"};
    for (int i = 0; i < 2; i++) {
        pclip_image *a = load_ok(ctx, files[i]), *b = NULL;
        size_t len;
        char *data = pclip_test_read_file(pclip_test_fixture(files[i]), &len);
        ck_assert_status(ctx, pclip_image_decode(ctx, data, len, files[i], &b), PCLIP_STATUS_OK);
        ck_assert_int_eq(a->mode, b->mode);
        ck_assert_uint_eq(canonical_hash(a), canonical_hash(b));
        /* a cut copy names the image it was given, or "<memory>" */
        pclip_image *c = (pclip_image *)1;
        ck_assert_int_eq(pclip_image_decode(ctx, data, len / 2, NULL, &c), PCLIP_STATUS_BAD_FORMAT);
        ck_assert_ptr_eq(c, (pclip_image *)1);
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "<memory>"));
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "truncated"));
        free(data);
        pclip_image_destroy(a);
        pclip_image_destroy(b);
    }
    pclip_image_destroy(NULL);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- core: pixel references ---- */

static double compare_reference(pclip_ctx_t ctx, const char *cfg_name, pclip_preprocess_mode mode,
                                const pclip_image_config *cfg, char **names, int n) {
    char rel[512];
    snprintf(rel, sizeof rel, "pixels/%s_%s.npy", cfg_name,
             mode == PCLIP_PREPROCESS_OPENAI ? "openai" : "hf");
    pclip_test_npy ref;
    pclip_test_npy_read(pclip_test_fixture(rel), &ref);
    ck_assert_int_eq(ref.ndim, 4);
    ck_assert_int_eq(ref.shape[0], n);
    ck_assert_int_eq(ref.shape[1], 3);
    ck_assert_int_eq(ref.shape[2], cfg->crop_height);
    ck_assert_int_eq(ref.shape[3], cfg->crop_width);
    size_t per = 3 * (size_t)cfg->crop_height * cfg->crop_width;
    float *out = malloc(per * sizeof *out);
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        snprintf(rel, sizeof rel, "images/%s", names[i]);
        pclip_image *img = load_ok(ctx, rel);
        pclip_status st = pclip_image_preprocess(ctx, img, cfg, mode, out);
        ck_assert_status(ctx, st, PCLIP_STATUS_OK);
        const float *want = ref.data + (size_t)i * per;
        double err = 0.0;
        size_t at = 0;
        for (size_t j = 0; j < per; j++) {
            double d = fabs((double)out[j] - (double)want[j]);
            if (d > err) {
                err = d;
                at = j;
            }
        }
        ck_assert_msg(err <= 1e-6, "%s %s %s: max |error| %g at [%zu] (got %.9g, want %.9g)",
                      cfg_name, mode == PCLIP_PREPROCESS_OPENAI ? "openai" : "hf", names[i], err,
                      at, (double)out[at], (double)want[at]);
        if (err > worst) worst = err;
        pclip_image_destroy(img);
    }
    free(out);
    pclip_test_npy_free(&ref);
    return worst;
}

START_TEST(test_pixel_references) {
    pclip_ctx_t ctx = ctx_new();
    DIR *d = opendir(pclip_test_fixture("pixels"));
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    int configs = 0, images = 0;
    double worst = 0.0;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".json")) continue;
        char name[256], rel[512];
        snprintf(name, sizeof name, "%.*s", (int)(strlen(de->d_name) - 5), de->d_name);
        snprintf(rel, sizeof rel, "pixels/%s", de->d_name);
        pclip_image_config cfg;
        pclip_status st = pclip_image_config_load(ctx, pclip_test_fixture(rel), &cfg);
        ck_assert_status(ctx, st, PCLIP_STATUS_OK);
        snprintf(rel, sizeof rel, "pixels/%s.txt", name);
        size_t len;
        char *list = pclip_test_read_file(pclip_test_fixture(rel), &len);
        char *names[256];
        int n = 0;
        for (char *save = NULL, *t = strtok_r(list, "\n", &save); t;
             t = strtok_r(NULL, "\n", &save)) {
            ck_assert_int_lt(n, 256);
            names[n++] = t;
        }
        for (int m = 0; m < PCLIP_PREPROCESS_COUNT; m++) {
            double e = compare_reference(ctx, name, (pclip_preprocess_mode)m, &cfg, names, n);
            if (e > worst) worst = e;
        }
        free(list);
        configs++;
        images += n;
    }
    closedir(d);
    ck_assert_int_ge(configs, 4);
    printf("image: %d configs, %d images, OpenAI and HF: max |error| %g\n", configs, images, worst);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- core: Pillow's filters ---- */

/* Expected FNV-1a 64 of Pillow 9.4's bytes (CHW) for synth() images:
 *   im = Image.fromarray(synth(w, h, channels), mode)   # same formula as synth()
 *   np.asarray(im.resize((rw, rh), resample).convert("RGB")).transpose(2, 0, 1)
 * NEAREST on RGB; LANCZOS and HAMMING on L / RGBA / LA (premultiplied);
 * every filter on RGB, and 5000x3 -> tiny sizes, whose filters are too wide
 * for the split fast path and take the plain loop. */
static const struct filter_case {
    pclip_image_mode mode;
    int32_t w, h;
    int32_t resample, rw, rh;
    uint64_t fnv;
} filter_cases[] = {
    {PCLIP_IMAGE_RGB, 61, 47, 0, 20, 15, 0x0a6820d0b003c021ull},
    {PCLIP_IMAGE_RGB, 61, 47, 0, 100, 80, 0xa2a07e337ec85e82ull},
    {PCLIP_IMAGE_RGB, 61, 47, 0, 61, 20, 0x129106317212fb1dull},
    {PCLIP_IMAGE_RGB, 61, 47, 0, 30, 47, 0x9f9b9ead247a377dull},
    {PCLIP_IMAGE_RGB, 61, 47, 1, 20, 15, 0x2308c0605ae470b4ull},
    {PCLIP_IMAGE_RGB, 61, 47, 1, 100, 80, 0x86faf6edce50dccaull},
    {PCLIP_IMAGE_RGB, 61, 47, 1, 61, 20, 0xb87f0b26753c1496ull},
    {PCLIP_IMAGE_RGB, 61, 47, 1, 30, 47, 0x7cedc930039382cfull},
    {PCLIP_IMAGE_RGB, 61, 47, 2, 20, 15, 0xcbabd5e6d5afbb96ull},
    {PCLIP_IMAGE_RGB, 61, 47, 2, 100, 80, 0x1255d5d2c39d875cull},
    {PCLIP_IMAGE_RGB, 61, 47, 2, 61, 20, 0xb2b178649112881full},
    {PCLIP_IMAGE_RGB, 61, 47, 2, 30, 47, 0x1e89c7402395dfc2ull},
    {PCLIP_IMAGE_RGB, 61, 47, 3, 20, 15, 0x7ac0547044ae81a2ull},
    {PCLIP_IMAGE_RGB, 61, 47, 3, 100, 80, 0x0cf00a50c7509965ull},
    {PCLIP_IMAGE_RGB, 61, 47, 3, 61, 20, 0x3c094e29a87c438bull},
    {PCLIP_IMAGE_RGB, 61, 47, 3, 30, 47, 0xafc6b1a19b3c0e3dull},
    {PCLIP_IMAGE_RGB, 61, 47, 4, 20, 15, 0xf37eeee0d76ddcadull},
    {PCLIP_IMAGE_RGB, 61, 47, 4, 100, 80, 0xa2a07e337ec85e82ull},
    {PCLIP_IMAGE_RGB, 61, 47, 4, 61, 20, 0xdbca48edb6408931ull},
    {PCLIP_IMAGE_RGB, 61, 47, 4, 30, 47, 0xdf30ba236747ed68ull},
    {PCLIP_IMAGE_RGB, 61, 47, 5, 20, 15, 0x645a9108d2995d05ull},
    {PCLIP_IMAGE_RGB, 61, 47, 5, 100, 80, 0xb75d3ad08329359eull},
    {PCLIP_IMAGE_RGB, 61, 47, 5, 61, 20, 0xf95d5a6237031ca4ull},
    {PCLIP_IMAGE_RGB, 61, 47, 5, 30, 47, 0x88151dea45619a3full},
    {PCLIP_IMAGE_L, 61, 47, 1, 20, 15, 0x559b636aa983b07cull},
    {PCLIP_IMAGE_L, 61, 47, 1, 100, 80, 0x95c0ad302394ee3bull},
    {PCLIP_IMAGE_L, 61, 47, 1, 61, 20, 0x9f4d49330d201478ull},
    {PCLIP_IMAGE_L, 61, 47, 1, 30, 47, 0x907fd037db7dfdd8ull},
    {PCLIP_IMAGE_L, 61, 47, 5, 20, 15, 0x1f17a1bbb3ae4636ull},
    {PCLIP_IMAGE_L, 61, 47, 5, 100, 80, 0xfeabb81aa555f0a7ull},
    {PCLIP_IMAGE_L, 61, 47, 5, 61, 20, 0x2b52c1485fb47a63ull},
    {PCLIP_IMAGE_L, 61, 47, 5, 30, 47, 0xb436938e99349ebbull},
    {PCLIP_IMAGE_RGBA, 61, 47, 1, 20, 15, 0x96d488e9091a4bc8ull},
    {PCLIP_IMAGE_RGBA, 61, 47, 1, 100, 80, 0xe61ef5a4cc36d334ull},
    {PCLIP_IMAGE_RGBA, 61, 47, 1, 61, 20, 0x3a596f0d2d2f51baull},
    {PCLIP_IMAGE_RGBA, 61, 47, 1, 30, 47, 0xfb477517e3a4f969ull},
    {PCLIP_IMAGE_RGBA, 61, 47, 5, 20, 15, 0x23a48b68ba8b2a01ull},
    {PCLIP_IMAGE_RGBA, 61, 47, 5, 100, 80, 0xd86ec651531e9f56ull},
    {PCLIP_IMAGE_RGBA, 61, 47, 5, 61, 20, 0xaa1a77454fb12f5full},
    {PCLIP_IMAGE_RGBA, 61, 47, 5, 30, 47, 0x593621c8ef620bf2ull},
    {PCLIP_IMAGE_LA, 61, 47, 1, 20, 15, 0x06468d74b21db962ull},
    {PCLIP_IMAGE_LA, 61, 47, 1, 100, 80, 0x50d500a3dc0c2264ull},
    {PCLIP_IMAGE_LA, 61, 47, 1, 61, 20, 0xf735acf7a088fe4cull},
    {PCLIP_IMAGE_LA, 61, 47, 1, 30, 47, 0x0e28a8453d73db72ull},
    {PCLIP_IMAGE_LA, 61, 47, 5, 20, 15, 0x65e301ea304821d2ull},
    {PCLIP_IMAGE_LA, 61, 47, 5, 100, 80, 0x2ff3fd48b96266d4ull},
    {PCLIP_IMAGE_LA, 61, 47, 5, 61, 20, 0x3717846cfc41178dull},
    {PCLIP_IMAGE_LA, 61, 47, 5, 30, 47, 0xbf07eb448a28b662ull},
    {PCLIP_IMAGE_L, 5000, 3, 3, 1, 1, 0xa32734196f09ea94ull},
    {PCLIP_IMAGE_L, 5000, 3, 3, 2, 3, 0xff9b0e53b73495f5ull},
    {PCLIP_IMAGE_L, 5000, 3, 3, 3, 2, 0x170a70538db10098ull},
    {PCLIP_IMAGE_L, 5000, 3, 1, 1, 1, 0xa32734196f09ea94ull},
    {PCLIP_IMAGE_L, 5000, 3, 1, 2, 3, 0xff9b0e53b73495f5ull},
    {PCLIP_IMAGE_L, 5000, 3, 1, 3, 2, 0x170a70538db10098ull},
    {PCLIP_IMAGE_L, 5000, 3, 4, 1, 1, 0xa32734196f09ea94ull},
    {PCLIP_IMAGE_L, 5000, 3, 4, 2, 3, 0xf592b9b7a6cf34ddull},
    {PCLIP_IMAGE_L, 5000, 3, 4, 3, 2, 0x170a70538db10098ull},
};

START_TEST(test_filters) {
    pclip_ctx_t ctx = ctx_new();
    for (size_t i = 0; i < sizeof filter_cases / sizeof filter_cases[0]; i++) {
        const struct filter_case *fc = &filter_cases[i];
        pclip_image *img = synth(fc->mode, fc->w, fc->h);
        pclip_image_config cfg;
        cfg_exact(&cfg, fc->rw, fc->rh, (pclip_resample)fc->resample);
        uint8_t *u = run_u8(ctx, img, &cfg, PCLIP_PREPROCESS_OPENAI);
        uint64_t h = pclip_test_fnv1a64(u, 3 * (size_t)fc->rw * fc->rh);
        ck_assert_msg(h == fc->fnv,
                      "%s %dx%d -> %dx%d with filter %d: hash %016llx, Pillow %016llx",
                      pclip__image_mode_name(fc->mode), fc->w, fc->h, fc->rw, fc->rh, fc->resample,
                      (unsigned long long)h, (unsigned long long)fc->fnv);
        free(u);
        pclip_image_destroy(img);
    }
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- core: crop, padding and options ---- */

static pclip_image *from_bytes(pclip_image_mode mode, int32_t w, int32_t h, const uint8_t *px) {
    pclip_image *img = synth(mode, w, h);
    memcpy(img->pixels, px, (size_t)w * h * img->channels);
    return img;
}

START_TEST(test_crop_rules) {
    pclip_ctx_t ctx = ctx_new();
    pclip_image_config cfg;
    /* odd margin 3: torchvision rounds 1.5 to 2, CLIPImageProcessor floors to 1 */
    const uint8_t row[7] = {0, 10, 20, 30, 40, 50, 60};
    pclip_image *img = from_bytes(PCLIP_IMAGE_L, 7, 1, row);
    cfg_exact(&cfg, 4, 1, PCLIP_RESAMPLE_BICUBIC);
    cfg.do_resize = 0;
    uint8_t *u = run_u8(ctx, img, &cfg, PCLIP_PREPROCESS_OPENAI);
    ck_assert_int_eq(u[0], 20);
    ck_assert_int_eq(u[3], 50);
    ck_assert_int_eq(u[4], 20); /* G plane */
    free(u);
    u = run_u8(ctx, img, &cfg, PCLIP_PREPROCESS_HF);
    ck_assert_int_eq(u[0], 10);
    ck_assert_int_eq(u[3], 40);
    free(u);
    pclip_image_destroy(img);

    /* a crop larger than the image pads: torchvision (crop - size) // 2
     * before the image, HF (with the size kept) the ceiling of half */
    const uint8_t sq[4] = {100, 101, 102, 103};
    img = from_bytes(PCLIP_IMAGE_L, 2, 2, sq);
    cfg_exact(&cfg, 4, 5, PCLIP_RESAMPLE_BICUBIC);
    cfg.do_resize = 0;
    for (int m = 0; m < PCLIP_PREPROCESS_COUNT; m++) {
        u = run_u8(ctx, img, &cfg, (pclip_preprocess_mode)m);
        int top = m == PCLIP_PREPROCESS_OPENAI ? 1 : 2; /* margin 3 */
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 4; x++) {
                bool in = y >= top && y < top + 2 && (x == 1 || x == 2); /* margin 2 */
                int want = in ? 100 + (y - top) * 2 + (x - 1) : 0;
                ck_assert_msg(u[y * 4 + x] == want, "mode %d (%d, %d): %d, want %d", m, x, y,
                              u[y * 4 + x], want);
            }
        free(u);
    }
    pclip_image_destroy(img);

    /* OpenAI pads before convert("RGB"): CMYK's zero is no ink (white), P's
     * zero is palette entry 0. CLIPImageProcessor pads the RGB image with 0. */
    const uint8_t cmyk[4] = {10, 20, 30, 40};
    img = from_bytes(PCLIP_IMAGE_CMYK, 1, 1, cmyk);
    cfg_exact(&cfg, 3, 3, PCLIP_RESAMPLE_BICUBIC);
    cfg.do_resize = 0;
    u = run_u8(ctx, img, &cfg, PCLIP_PREPROCESS_OPENAI);
    ck_assert_int_eq(u[0], 255);
    ck_assert_int_eq(u[4], 207); /* Pillow's cmyk2rgb of (10, 20, 30, 40) */
    ck_assert_int_eq(u[9 + 4], 198);
    ck_assert_int_eq(u[18 + 4], 190);
    free(u);
    u = run_u8(ctx, img, &cfg, PCLIP_PREPROCESS_HF);
    ck_assert_int_eq(u[0], 0);
    ck_assert_int_eq(u[4], 207);
    free(u);
    pclip_image_destroy(img);

    const uint8_t idx[2] = {1, 1};
    img = from_bytes(PCLIP_IMAGE_P, 2, 1, idx);
    memset(img->palette, 0, sizeof img->palette);
    memcpy(img->palette, (const uint8_t[]){9, 8, 7, 1, 2, 3}, 6);
    img->palette_size = 2;
    cfg_exact(&cfg, 4, 3, PCLIP_RESAMPLE_BICUBIC);
    cfg.do_resize = 0;
    u = run_u8(ctx, img, &cfg, PCLIP_PREPROCESS_OPENAI);
    ck_assert_int_eq(u[0], 9);      /* R of pad = palette[0] */
    ck_assert_int_eq(u[4 + 1], 1);  /* R of pixel (1, 1) = palette[1] */
    ck_assert_int_eq(u[12 + 0], 8); /* G of pad */
    ck_assert_int_eq(u[24 + 6], 3); /* B of pixel (2, 1) */
    free(u);
    u = run_u8(ctx, img, &cfg, PCLIP_PREPROCESS_HF);
    ck_assert_int_eq(u[0], 0);
    ck_assert_int_eq(u[4 + 1], 1);
    free(u);
    pclip_image_destroy(img);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_options) {
    pclip_ctx_t ctx = ctx_new();
    pclip_image *img = load_ok(ctx, "images/j_rgb444_64x48.jpg");
    pclip_image_config cfg;
    pclip_image_config_default(&cfg);
    cfg.shortest_edge = 32;
    cfg.crop_height = cfg.crop_width = 32;
    float *a = malloc(3 * 64 * 48 * sizeof *a), *b = malloc(3 * 64 * 48 * sizeof *b);

    /* normalisation is (x - mean) / std on the rescaled value, in float */
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_OPENAI, a), 0);
    cfg.do_normalize = 0;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_OPENAI, b), 0);
    for (int i = 0; i < 3 * 32 * 32; i++) {
        int c = i / (32 * 32);
        ck_assert(a[i] == (b[i] - cfg.mean[c]) / cfg.std[c]);
    }
    /* HF without rescale sees the u8 values; OpenAI always divides by 255 */
    cfg.do_rescale = 0;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_HF, a), 0);
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_OPENAI, b), 0);
    for (int i = 0; i < 3 * 32 * 32; i++) {
        ck_assert(a[i] == floorf(a[i]) && a[i] <= 255.0f);
        ck_assert(b[i] == a[i] / 255.0f); /* margins are even: same crop */
    }
    /* no resize and no crop: the image must already have the model's size */
    cfg.do_resize = 0;
    cfg.do_center_crop = 0;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_HF, a),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "64x48"));
    cfg.crop_width = 64;
    cfg.crop_height = 48;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_HF, a), 0);
    ck_assert(a[0] == (float)img->pixels[0]);
    ck_assert(a[64 * 48 + 1] == (float)img->pixels[4]);
    /* exact height x width when shortest_edge is 0 */
    cfg.do_resize = 1;
    cfg.do_center_crop = 1;
    cfg.shortest_edge = 0;
    cfg.resize_height = 20;
    cfg.resize_width = 30;
    cfg.crop_height = 20;
    cfg.crop_width = 30;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_HF, a), 0);
    pclip_image_destroy(img);

    /* HF with do_convert_rgb off cannot make 3 channels of a grey image */
    img = load_ok(ctx, "images/j_grey_64x48.jpg");
    cfg.do_convert_rgb = 0;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_HF, a),
                     PCLIP_STATUS_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "do_convert_rgb"));
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_OPENAI, a), 0);
    pclip_image_destroy(img);
    free(a);
    free(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- limits: malformed input ---- */

START_TEST(test_bad_files) {
    static const struct {
        const char *rel;
        pclip_status status;
        const char *says;
    } cases[] = {
        {"bad/empty.jpg", PCLIP_STATUS_UNSUPPORTED, "not a JPEG or PNG"},
        {"bad/garbage.jpg", PCLIP_STATUS_UNSUPPORTED, "not a JPEG or PNG"},
        {"bad/text.txt", PCLIP_STATUS_UNSUPPORTED, "not a JPEG or PNG"},
        {"bad/notanimage.png", PCLIP_STATUS_UNSUPPORTED, "not a JPEG or PNG"},
        {"bad/truncated.jpg", PCLIP_STATUS_BAD_FORMAT, "truncated"},
        {"bad/truncated.png", PCLIP_STATUS_BAD_FORMAT, "truncated"},
        {"bad/badcrc.png", PCLIP_STATUS_BAD_FORMAT, "PNG"},
        {"bad/huge.png", PCLIP_STATUS_LIMIT, "100000x100000"},
        {"bad/huge.jpg", PCLIP_STATUS_LIMIT, "60000x60000"},
        {"bad/missing.png", PCLIP_STATUS_NOT_FOUND, "cannot open"},
        {"images", PCLIP_STATUS_IO, "directory"},
    };
    pclip_ctx_t ctx = ctx_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = pclip_test_fixture(cases[i].rel);
        pclip_image *img = (pclip_image *)1;
        pclip_status st = pclip_image_load(ctx, path, &img);
        ck_assert_msg(st == cases[i].status, "%s: %s, expected %s (%s)", cases[i].rel,
                      pclip_status_name(st), pclip_status_name(cases[i].status),
                      pclip_ctx_last_error(ctx));
        ck_assert_ptr_eq(img, (pclip_image *)1); /* untouched on failure */
        const char *msg = pclip_ctx_last_error(ctx);
        ck_assert_msg(strstr(msg, path) && strstr(msg, cases[i].says),
                      "%s: message '%s' should name the file and say '%s'", cases[i].rel, msg,
                      cases[i].says);
    }
    pclip_ctx_destroy(ctx);
}
END_TEST

static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A copy of `png` with a tEXt chunk inserted after IHDR. */
static uint8_t *with_text_chunk(const uint8_t *png, size_t len, bool good_crc, size_t *out_len) {
    static const uint8_t body[] = {'t', 'E', 'X', 't', 'k', 0, 'v'};
    uint8_t chunk[4 + sizeof body + 4];
    chunk[0] = chunk[1] = chunk[2] = 0;
    chunk[3] = 3;
    memcpy(chunk + 4, body, sizeof body);
    uint32_t crc = crc32_png(body, sizeof body) ^ (good_crc ? 0u : 1u);
    for (int i = 0; i < 4; i++) chunk[4 + sizeof body + i] = (uint8_t)(crc >> (24 - 8 * i));
    size_t at = 8 + 12 + 13; /* after the signature and IHDR */
    uint8_t *out = malloc(len + sizeof chunk);
    memcpy(out, png, at);
    memcpy(out + at, chunk, sizeof chunk);
    memcpy(out + at + sizeof chunk, png + at, len - at);
    *out_len = len + sizeof chunk;
    return out;
}

/* Pillow checks the CRC of every chunk before the first IDAT, ancillary ones
 * included, and none from IDAT on: an IDAT with a stale CRC but intact data
 * opens. A file is truncated when rows are missing or a chunk after the image
 * data is cut off, not when it only lacks IEND or the zlib checksum. */
START_TEST(test_png_chunk_rules) {
    pclip_ctx_t ctx = ctx_new();
    size_t len;
    uint8_t *png =
        (uint8_t *)pclip_test_read_file(pclip_test_fixture("images/p_rgb_64x48.png"), &len);
    pclip_image *ref = load_ok(ctx, "images/p_rgb_64x48.png"), *img = NULL;
    ck_assert(memcmp(png + 12, "IHDR", 4) == 0 && memcmp(png + 37, "IDAT", 4) == 0);
    size_t idat_end = 41 + be32(png + 33);     /* end of IDAT's data, start of its CRC */
    ck_assert_uint_eq(idat_end + 4 + 12, len); /* then IEND */

    png[29] ^= 0x55; /* IHDR's CRC */
    ck_assert_int_eq(pclip_image_decode(ctx, png, len, "ihdr.png", &img), PCLIP_STATUS_BAD_FORMAT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "ihdr.png"));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "CRC"));
    png[29] ^= 0x55;

    png[idat_end] ^= 0x55; /* IDAT's CRC: Pillow never reads it */
    ck_assert_status(ctx, pclip_image_decode(ctx, png, len, "idat.png", &img), PCLIP_STATUS_OK);
    ck_assert_uint_eq(canonical_hash(img), canonical_hash(ref));
    pclip_image_destroy(img);
    png[idat_end] ^= 0x55;

    size_t n2;
    uint8_t *good = with_text_chunk(png, len, true, &n2);
    ck_assert_status(ctx, pclip_image_decode(ctx, good, n2, "text.png", &img), PCLIP_STATUS_OK);
    ck_assert_uint_eq(canonical_hash(img), canonical_hash(ref));
    pclip_image_destroy(img);
    uint8_t *bad = with_text_chunk(png, len, false, &n2);
    img = NULL;
    ck_assert_int_eq(pclip_image_decode(ctx, bad, n2, "text.png", &img), PCLIP_STATUS_BAD_FORMAT);
    ck_assert_ptr_null(img);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "CRC"));
    free(good);
    free(bad);

    /* no IEND, or even no end of the zlib checksum: every row is there */
    size_t cuts[] = {idat_end + 4, idat_end - 2};
    for (int i = 0; i < 2; i++) {
        ck_assert_status(ctx, pclip_image_decode(ctx, png, cuts[i], "cut.png", &img),
                         PCLIP_STATUS_OK);
        ck_assert_uint_eq(canonical_hash(img), canonical_hash(ref));
        pclip_image_destroy(img);
    }
    img = NULL;
    ck_assert_int_eq(pclip_image_decode(ctx, png, idat_end - 300, "cut.png", &img),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "truncated"));
    /* a chunk after the image data that is cut off */
    uint8_t *tail = malloc(idat_end + 4 + 11);
    memcpy(tail, png, idat_end + 4);
    memcpy(tail + idat_end + 4, "\0\0\0\x10tEXtabc", 11);
    ck_assert_int_eq(pclip_image_decode(ctx, tail, idat_end + 4 + 11, "tail.png", &img),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_ptr_null(img);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "tEXt chunk after the image data"));
    free(tail);
    free(png);
    pclip_image_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_bad_arguments) {
    pclip_ctx_t ctx = ctx_new();
    pclip_image *img = synth(PCLIP_IMAGE_RGB, 8, 8), *none = NULL;
    pclip_image_config cfg;
    pclip_image_config_default(&cfg);
    float *out = malloc(3 * 224 * 224 * sizeof *out);
    ck_assert_int_eq(pclip_image_preprocess(ctx, NULL, &cfg, 0, out),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, NULL, 0, out), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, 0, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, PCLIP_PREPROCESS_COUNT, out),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_image_load(ctx, NULL, &none), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_image_decode(ctx, NULL, 5, "x", &none), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(none);

    /* configs that make no sense */
    pclip_image_config bad = cfg;
    bad.crop_width = 0;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &bad, 0, out), PCLIP_STATUS_BAD_CONFIG);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "crop_width"));
    bad = cfg;
    bad.std[1] = 0.0f;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &bad, 1, out), PCLIP_STATUS_BAD_CONFIG);
    bad = cfg;
    bad.resample = (pclip_resample)9;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &bad, 0, out), PCLIP_STATUS_UNSUPPORTED);
    bad = cfg;
    bad.shortest_edge = 0;
    bad.resize_height = 0;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &bad, 0, out), PCLIP_STATUS_BAD_CONFIG);

    /* an image struct that lies about its layout */
    img->channels = 4;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, 0, out), PCLIP_STATUS_INVALID_ARGUMENT);
    img->channels = 3;
    img->width = 0;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, 0, out), PCLIP_STATUS_INVALID_ARGUMENT);
    pclip_image_destroy(img);

    /* a 1 x 100000 line scaled to a 4096 short side would be 4096 x 409600000 */
    img = synth(PCLIP_IMAGE_L, 100000, 1);
    cfg.shortest_edge = 4096;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, 0, out), PCLIP_STATUS_LIMIT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "409600000"));
    /* while 32 x 3200000 is computed without ever holding it: only the crop */
    cfg.shortest_edge = 32;
    ck_assert_status(ctx, pclip_image_preprocess(ctx, img, &cfg, 0, out), PCLIP_STATUS_OK);
    pclip_image_destroy(img);

    /* Pillow raises MemoryError when out_size * taps doubles pass INT_MAX
     * bytes: 45000000 -> 4096 with lanczos needs 65919 taps per sample */
    img = synth(PCLIP_IMAGE_L, 45000000, 1);
    cfg.shortest_edge = 0;
    cfg.resize_width = cfg.resize_height = 4096;
    cfg.crop_width = cfg.crop_height = 8;
    cfg.resample = PCLIP_RESAMPLE_LANCZOS;
    ck_assert_int_eq(pclip_image_preprocess(ctx, img, &cfg, 0, out), PCLIP_STATUS_LIMIT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "coefficient table"));
    cfg.resample = PCLIP_RESAMPLE_BILINEAR; /* 21973 taps: allowed */
    ck_assert_status(ctx, pclip_image_preprocess(ctx, img, &cfg, 0, out), PCLIP_STATUS_OK);
    pclip_image_destroy(img);
    free(out);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Every allocation of load + preprocess fails in turn: each failure is a
 * clean OUT_OF_MEMORY that leaves the output pointer alone, and nothing leaks
 * (ASan's leak checker runs when the forked test exits). libjpeg's own
 * allocations do not go through the hook; libpng's do. */
START_TEST(test_alloc_fail_walk) {
    static const struct {
        const char *rel;
        pclip_preprocess_mode mode;
    } cases[] = {
        {"images/j_rgb420_64x48.jpg", PCLIP_PREPROCESS_OPENAI},
        {"images/j_cmyk_64x48.jpg", PCLIP_PREPROCESS_HF},
        {"images/p_pal4_64x48.png", PCLIP_PREPROCESS_OPENAI},
        {"images/p_la8_64x48.png", PCLIP_PREPROCESS_OPENAI},
        {"images/p_rgba16_adam7_29x31.png", PCLIP_PREPROCESS_HF},
        {"images/p_grey1_64x48.png", PCLIP_PREPROCESS_HF},
    };
    pclip_ctx_t ctx = ctx_new();
    pclip_image_config cfg;
    pclip_image_config_default(&cfg);
    cfg.shortest_edge = 40;
    cfg.crop_height = cfg.crop_width = 37;
    float *out = malloc(3 * 37 * 37 * sizeof *out);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *path = pclip_test_fixture(cases[c].rel);
        long n;
        for (n = 1; n < 10000; n++) {
            pclip_image *img = (pclip_image *)1;
            pclip__alloc_fail_at(n);
            pclip_status st = pclip_image_load(ctx, path, &img);
            if (st == PCLIP_STATUS_OK)
                st = pclip_image_preprocess(ctx, img, &cfg, cases[c].mode, out);
            else
                ck_assert_ptr_eq(img, (pclip_image *)1);
            bool done = st == PCLIP_STATUS_OK;
            pclip__alloc_fail_at(0);
            if (img != (pclip_image *)1) pclip_image_destroy(img);
            if (done) break;
            ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY, "%s, allocation %ld fails: %s (%s)",
                          cases[c].rel, n, pclip_status_name(st), pclip_ctx_last_error(ctx));
        }
        ck_assert_int_gt(n, 3); /* the walk met allocations to fail */
        ck_assert_int_lt(n, 10000);
    }
    free(out);
    pclip_ctx_destroy(ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_decode_fixtures);
    tcase_add_test(tc, test_decode_memory);
    tcase_add_test(tc, test_pixel_references);
    tcase_add_test(tc, test_filters);
    tcase_add_test(tc, test_crop_rules);
    tcase_add_test(tc, test_options);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_bad_files);
    tcase_add_test(lim, test_png_chunk_rules);
    tcase_add_test(lim, test_bad_arguments);
    tcase_add_test(lim, test_alloc_fail_walk);
    suite_add_tcase(s, lim);
    return pclip_test_run(s);
}
