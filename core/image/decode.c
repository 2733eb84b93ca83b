/* Image decoding: JPEG through libjpeg-turbo and PNG through libpng, into the
 * mode and the exact pixel bytes that Pillow 9.4's Image.open gives.
 *
 * The format is told by its magic bytes, never by the file name. Sizes are
 * checked against Pillow's decompression-bomb limit before the pixel buffer is
 * allocated. Nothing is colour-managed: no gamma, sRGB or ICC transform and no
 * EXIF rotation, because Pillow applies none of them when it opens a file.
 * Other formats (GIF, WebP, TIFF, ...) are refused as UNSUPPORTED.
 *
 * Both libraries report fatal errors by longjmp back into the function that
 * called setjmp, so every object that must be freed on that path lives in a
 * volatile-qualified variable or in the job struct, never in a plain local. */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "image/image.h"

/* ---- image objects ---- */

static const char *display_name(const char *name) { return name ? name : "<memory>"; }

/* A zeroed image with room for width x height pixels of `mode`, or an error
 * naming the image. The caller has already checked the pixel limit. */
static pclip_status image_alloc(pclip_ctx_t ctx, const char *name, int32_t width, int32_t height,
                                pclip_image_mode mode, pclip_image **out) {
    int32_t channels = pclip__image_mode_channels(mode);
    size_t bytes;
    if (!pclip__mul3_size((size_t)width, (size_t)height, (size_t)channels, &bytes))
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "image '%s': %dx%d pixels overflow size_t", name,
                          width, height);
    pclip_image *img = pclip__calloc(1, sizeof *img);
    if (!img) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "image '%s': out of memory", name);
    img->pixels = pclip__malloc(bytes);
    if (!img->pixels) {
        pclip__free(img);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "image '%s': out of memory for %dx%d %s pixels (%zu bytes)", name, width,
                          height, pclip__image_mode_name(mode), bytes);
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->mode = mode;
    *out = img;
    return PCLIP_STATUS_OK;
}

void pclip_image_destroy(pclip_image *img) {
    if (!img) return;
    pclip__free(img->pixels);
    pclip__free(img);
}

/* Pillow's decompression-bomb check (Image._decompression_bomb_check raises
 * above 2 * MAX_IMAGE_PIXELS), plus the zero sizes that no decoder accepts. */
static pclip_status check_size(pclip_ctx_t ctx, const char *name, const char *format,
                               uint64_t width, uint64_t height) {
    if (width == 0 || height == 0)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "image '%s': %s header gives a %llux%llu image", name, format,
                          (unsigned long long)width, (unsigned long long)height);
    if (width > INT32_MAX || height > INT32_MAX ||
        width * height > (uint64_t)PCLIP_LIMIT_IMAGE_PIXELS)
        return pclip__err(ctx, PCLIP_STATUS_LIMIT,
                          "image '%s': %s is %llux%llu = %llu pixels, over the limit of %lld "
                          "(Pillow's decompression-bomb threshold)",
                          name, format, (unsigned long long)width, (unsigned long long)height,
                          (unsigned long long)(width * height),
                          (long long)PCLIP_LIMIT_IMAGE_PIXELS);
    return PCLIP_STATUS_OK;
}

/* ---- JPEG ---- */

struct jpeg_job {
    struct jpeg_error_mgr pub; /* first: libjpeg sees a jpeg_error_mgr */
    jmp_buf jmp;
    bool data_ended; /* libjpeg ran out of data and faked an EOI */
    char msg[JMSG_LENGTH_MAX];
};

static void jpeg_on_error(j_common_ptr cinfo) {
    struct jpeg_job *job = (struct jpeg_job *)cinfo->err;
    cinfo->err->format_message(cinfo, job->msg);
    longjmp(job->jmp, 1);
}

/* Warnings are not printed. Pillow ignores libjpeg's "corrupt data" warnings
 * (it decodes what libjpeg gives) but raises "image file is truncated" when
 * the data ends early; the memory source reports that as JWRN_JPEG_EOF. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    struct jpeg_job *job = (struct jpeg_job *)cinfo->err;
    if (level < 0) {
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) job->data_ended = true;
        cinfo->err->num_warnings++;
    }
}

static pclip_status decode_jpeg(pclip_ctx_t ctx, const uint8_t *data, size_t size, const char *name,
                                pclip_image **out) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_job job;
    pclip_image *volatile img = NULL;
    pclip_status st = PCLIP_STATUS_OK;

    memset(&job, 0, sizeof job);
    cinfo.err = jpeg_std_error(&job.pub);
    job.pub.error_exit = jpeg_on_error;
    job.pub.emit_message = jpeg_on_message;
    if (setjmp(job.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        pclip_image_destroy(img);
        bool oom = job.pub.msg_code == JERR_OUT_OF_MEMORY;
        return pclip__err(ctx, oom ? PCLIP_STATUS_OUT_OF_MEMORY : PCLIP_STATUS_BAD_FORMAT,
                          "image '%s': JPEG: %s", name, job.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    /* Pillow picks the mode from the component count of the frame header
     * (JpegImagePlugin.SOF) and asks libjpeg for that colour space. */
    pclip_image_mode mode;
    switch (cinfo.num_components) {
    case 1:
        mode = PCLIP_IMAGE_L;
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case 3:
        mode = PCLIP_IMAGE_RGB;
        cinfo.out_color_space = JCS_RGB;
        break;
    case 4: /* CMYK or YCCK: libjpeg turns YCCK into CMYK */
        mode = PCLIP_IMAGE_CMYK;
        cinfo.out_color_space = JCS_CMYK;
        break;
    default:
        st = pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                        "image '%s': JPEG with %d components (Pillow reads 1, 3 or 4)", name,
                        cinfo.num_components);
        goto done;
    }
    if ((st = check_size(ctx, name, "JPEG", cinfo.image_width, cinfo.image_height))) goto done;
    /* Defaults stay as Pillow leaves them: islow IDCT, fancy upsampling. */
    pclip_image *im = NULL;
    if ((st = image_alloc(ctx, name, (int32_t)cinfo.image_width, (int32_t)cinfo.image_height, mode,
                          &im)))
        goto done;
    img = im;

    jpeg_start_decompress(&cinfo);
    if (cinfo.output_width != cinfo.image_width || cinfo.output_height != cinfo.image_height ||
        cinfo.output_components != im->channels) {
        st = pclip__err(ctx, PCLIP_STATUS_INTERNAL,
                        "image '%s': JPEG: libjpeg gives %ux%u x %d, expected %dx%d x %d", name,
                        cinfo.output_width, cinfo.output_height, cinfo.output_components, im->width,
                        im->height, im->channels);
        goto done;
    }
    size_t stride = (size_t)im->width * (size_t)im->channels;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = im->pixels + (size_t)cinfo.output_scanline * stride;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "image '%s': JPEG: decoding stalled",
                            name);
            goto done;
        }
    }
    /* Data missing before the last row was decoded is Pillow's "image file is
     * truncated". */
    if (job.data_ended) {
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                        "image '%s': JPEG data is truncated (it ends before the last row)", name);
        goto done;
    }
    /* Pillow then calls jpeg_finish_decompress, which reads the markers up to
     * EOI: a bad one there fails the image ("broken data stream"), a file
     * that simply ends (no EOI) does not. */
    jpeg_finish_decompress(&cinfo);
    if (mode == PCLIP_IMAGE_CMYK) {
        /* Pillow's rawmode "CMYK;I": Adobe's inverted CMYK, each byte 255 - x. */
        size_t n = stride * (size_t)im->height;
        for (size_t i = 0; i < n; i++) im->pixels[i] = (uint8_t)(255 - im->pixels[i]);
    }

done:
    jpeg_destroy_decompress(&cinfo);
    if (st) {
        pclip_image_destroy(img);
        return st;
    }
    *out = img;
    return PCLIP_STATUS_OK;
}

/* ---- PNG ---- */

/* PNG goes through libpng's progressive reader, fed one chunk at a time from
 * memory. Like Pillow's incremental decoder it hands over each row as soon as
 * the compressed data for it has arrived, so "truncated" means what it means
 * to Pillow: some row never arrived (the sequential reader would also refuse
 * a file that only lacks its zlib checksum, which Pillow opens). Feeding
 * chunk by chunk tells where the image data ended, for Pillow's check of the
 * chunks after it. */
struct png_job {
    pclip_ctx_t ctx;
    const char *name;
    pclip_status status;          /* set with its message before a callback bails out */
    bool out_of_memory;           /* an allocation inside libpng failed */
    pclip_image *img;             /* allocated by the info callback */
    uint64_t rows, rows_expected; /* row callbacks so far / for the whole image */
    int scale;                    /* grey levels below 8 bits are stretched to 0..255 */
    char msg[256];
};

static void png_on_error(png_structp png, png_const_charp msg) {
    struct png_job *job = png_get_error_ptr(png);
    snprintf(job->msg, sizeof job->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* libpng allocates through the library's allocator too, so the
 * allocation-failure walk reaches its allocations. */
static png_voidp png_alloc(png_structp png, png_alloc_size_t n) {
    void *p = pclip__malloc(n);
    if (!p) {
        struct png_job *job = png_get_mem_ptr(png);
        if (job) job->out_of_memory = true;
    }
    return p;
}

static void png_dealloc(png_structp png, png_voidp p) {
    (void)png;
    pclip__free(p);
}

/* How many times the row callback runs for a complete image. With interlace
 * handling libpng calls it `height` times for every Adam7 pass that has a
 * column in the image (rows of the pass with data, NULL for the others, even
 * in a pass with no row at all), and skips passes with no column. */
static uint64_t png_rows_expected(uint32_t w, uint32_t h, bool interlaced) {
    if (!interlaced) return h;
    static const uint32_t first_column[7] = {0, 4, 0, 2, 0, 1, 0};
    uint64_t n = 0;
    for (int p = 0; p < 7; p++)
        if (w > first_column[p]) n += h;
    return n;
}

static void png_on_info(png_structp png, png_infop info) {
    struct png_job *job = png_get_progressive_ptr(png);
    /* Pillow verifies the CRC of every chunk before the first IDAT and of
     * none from there on (see decode_png). */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);

    png_uint_32 width = 0, height = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &depth, &color, &interlace, NULL, NULL);
    if ((job->status = check_size(job->ctx, job->name, "PNG", width, height)))
        png_error(png, "size");

    /* Pillow's modes (PngImagePlugin._MODES) for each colour type and depth. */
    pclip_image_mode mode;
    switch (color) {
    case PNG_COLOR_TYPE_GRAY:
        mode = depth == 1 ? PCLIP_IMAGE_1 : PCLIP_IMAGE_L;
        job->scale = depth == 1 ? 255 : depth == 2 ? 85 : depth == 4 ? 17 : 1;
        /* Deviation: Pillow opens 16-bit grey as mode "I" (32-bit integers)
         * and its convert("RGB") clips them to 255. We keep the high byte
         * (v >> 8) as mode L, which is what the picture looks like. */
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        /* 8-bit is "LA"; Pillow opens 16-bit grey+alpha as "RGBA" with
         * rawmode "LA;16B": R = G = B = high byte of grey, A = high byte. */
        if (depth == 16) {
            mode = PCLIP_IMAGE_RGBA;
            png_set_gray_to_rgb(png);
        } else {
            mode = PCLIP_IMAGE_LA;
        }
        break;
    case PNG_COLOR_TYPE_RGB: mode = PCLIP_IMAGE_RGB; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: mode = PCLIP_IMAGE_RGBA; break;
    case PNG_COLOR_TYPE_PALETTE: mode = PCLIP_IMAGE_P; break;
    default:
        job->status = pclip__err(job->ctx, PCLIP_STATUS_BAD_FORMAT,
                                 "image '%s': PNG colour type %d", job->name, color);
        png_error(png, "colour type");
    }
    /* 16-bit samples keep their high byte (Pillow's ";16B" rawmodes); packed
     * samples become one byte each. tRNS is left alone: Pillow keeps the mode
     * and convert("RGB") drops the transparency. No gamma, no sRGB/ICC. */
    if (depth == 16) png_set_strip_16(png);
    if (depth < 8) png_set_packing(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
    job->rows_expected = png_rows_expected(width, height, interlace != PNG_INTERLACE_NONE);

    pclip_image *im = NULL;
    if ((job->status =
             image_alloc(job->ctx, job->name, (int32_t)width, (int32_t)height, mode, &im)))
        png_error(png, "allocation");
    job->img = im;
    /* Interlaced passes are combined into rows that start out zero. */
    memset(im->pixels, 0, (size_t)im->width * (size_t)im->height * (size_t)im->channels);
    size_t stride = (size_t)im->width * (size_t)im->channels;
    if (png_get_rowbytes(png, info) != stride) {
        job->status = pclip__err(job->ctx, PCLIP_STATUS_INTERNAL,
                                 "image '%s': PNG: libpng rows are %zu bytes, expected %zu",
                                 job->name, (size_t)png_get_rowbytes(png, info), stride);
        png_error(png, "row size");
    }
    if (mode == PCLIP_IMAGE_P) {
        /* Pillow's palette starts as a grey ramp (ImagingPaletteNew) and PLTE
         * overwrites its first entries: an index past PLTE reads as grey. */
        png_colorp plte = NULL;
        int n = 0;
        if (!png_get_PLTE(png, info, &plte, &n)) n = 0;
        if (n > 256) n = 256;
        for (int i = 0; i < 256; i++) {
            im->palette[3 * i + 0] = i < n ? plte[i].red : (uint8_t)i;
            im->palette[3 * i + 1] = i < n ? plte[i].green : (uint8_t)i;
            im->palette[3 * i + 2] = i < n ? plte[i].blue : (uint8_t)i;
        }
        im->palette_size = n;
    }
}

static void png_on_row(png_structp png, png_bytep row, png_uint_32 y, int pass) {
    (void)pass;
    struct png_job *job = png_get_progressive_ptr(png);
    job->rows++;
    if (!row || !job->img || y >= (png_uint_32)job->img->height) return;
    size_t stride = (size_t)job->img->width * (size_t)job->img->channels;
    png_progressive_combine_row(png, job->img->pixels + (size_t)y * stride, row);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Pillow's is_cid: four of [A-Za-z0-9_]. */
static bool png_is_chunk_type(const uint8_t *t) {
    for (int i = 0; i < 4; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '_'))
            return false;
    return true;
}

/* After the last row, Pillow (PngImageFile.load_end) still walks the chunks
 * that follow the one holding it, up to IEND or the first header it cannot
 * read, and fails with "Truncated File Read" when one of them is cut off.
 * The same walk, on lengths only: what those chunks hold is not examined. */
static pclip_status png_check_tail(pclip_ctx_t ctx, const char *name, const uint8_t *data,
                                   size_t size, size_t pos, bool animated) {
    while (pos < size && size - pos >= 8) {
        const uint8_t *type = data + pos + 4;
        if (!png_is_chunk_type(type) || memcmp(type, "IEND", 4) == 0) break;
        if (animated && memcmp(type, "fcTL", 4) == 0) break; /* the next frame */
        size_t len = be32(data + pos);
        pos += 8;
        if (len > size - pos)
            return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                              "image '%s': PNG data is truncated (the %.4s chunk after the image "
                              "data is cut off)",
                              name, (const char *)type);
        pos += len + 4; /* data and CRC */
    }
    return PCLIP_STATUS_OK;
}

static pclip_status decode_png(pclip_ctx_t ctx, const uint8_t *data, size_t size, const char *name,
                               pclip_image **out) {
    struct png_job job;
    memset(&job, 0, sizeof job);
    job.ctx = ctx;
    job.name = name;
    job.scale = 1;

    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &job, png_on_error,
                                               png_on_warning, &job, png_alloc, png_dealloc);
    if (!png) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "image '%s': out of memory", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "image '%s': out of memory", name);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        pclip_image_destroy(job.img);
        if (job.status) return job.status; /* message already set */
        if (job.out_of_memory)
            return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "image '%s': PNG: out of memory",
                              name);
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "image '%s': PNG: %s", name, job.msg);
    }
    /* Pillow verifies the CRC of every chunk before the first IDAT, ancillary
     * ones included, and raises on a mismatch; it never checks IDAT's or any
     * later chunk's CRC (png_on_info relaxes the check). libpng by itself
     * would only warn for ancillary chunks. */
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    /* libpng's default 1,000,000-pixel side limit would refuse images that
     * Pillow opens; the pixel-count limit in png_on_info is the real bound. */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_progressive_read_fn(png, &job, png_on_info, png_on_row, NULL);

    /* One chunk per call, to know in which chunk the last row arrived. */
    png_process_data(png, info, (png_bytep)data, 8);
    size_t pos = 8, image_end = 0;
    bool animated = false;
    while (pos < size && !image_end) {
        size_t n = size - pos;
        if (n >= 8) {
            size_t len = be32(data + pos);
            if (12 + len < n) n = 12 + len;
            /* Pillow's is_animated: an acTL with more than one frame. */
            if (!job.img && memcmp(data + pos + 4, "acTL", 4) == 0 && len >= 8 && n >= 16) {
                uint32_t frames = be32(data + pos + 8);
                animated = frames > 1 && frames <= 0x80000000u;
            }
        }
        png_process_data(png, info, (png_bytep)data + pos, n);
        pos += n;
        if (job.img && job.rows >= job.rows_expected) image_end = pos;
    }

    pclip_status st = PCLIP_STATUS_OK;
    if (!image_end) {
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                        "image '%s': PNG data is truncated (%s; %zu bytes)", name,
                        job.img ? "image rows are missing" : "it ends before the image data", size);
    } else if ((st = png_check_tail(ctx, name, data, size, image_end, animated))) {
        /* message set */
    } else if (job.scale != 1) {
        pclip_image *im = job.img;
        size_t n = (size_t)im->width * (size_t)im->height * (size_t)im->channels;
        for (size_t i = 0; i < n; i++) im->pixels[i] = (uint8_t)(im->pixels[i] * job.scale);
    }
    png_destroy_read_struct(&png, &info, NULL);
    if (st) {
        pclip_image_destroy(job.img);
        return st;
    }
    *out = job.img;
    return PCLIP_STATUS_OK;
}

/* ---- entry points ---- */

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

pclip_status pclip_image_decode(pclip_ctx_t ctx, const void *data, size_t size, const char *name,
                                pclip_image **out) {
    const char *nm = display_name(name);
    if (!out || (!data && size))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "image '%s': decode needs data and an output pointer", nm);
    const uint8_t *p = data;
    if (size == 0)
        return pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                          "image '%s': not a JPEG or PNG file (it is empty)", nm);
    if (size > PCLIP_LIMIT_IMAGE_FILE_BYTES)
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "image '%s': %zu bytes, over the limit of %zu",
                          nm, size, PCLIP_LIMIT_IMAGE_FILE_BYTES);
    /* Pillow's JpegImagePlugin._accept: FF D8 FF. */
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return decode_jpeg(ctx, p, size, nm, out);
    if (size >= sizeof png_magic && memcmp(p, png_magic, sizeof png_magic) == 0)
        return decode_png(ctx, p, size, nm, out);
    return pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                      "image '%s': not a JPEG or PNG file (unrecognised first bytes)", nm);
}

pclip_status pclip_image_load(pclip_ctx_t ctx, const char *path, pclip_image **out) {
    if (!path || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "image: load needs a path and an output pointer");
    char *buf = NULL;
    size_t len = 0;
    pclip_status st =
        pclip__read_file(ctx, path, "image", PCLIP_LIMIT_IMAGE_FILE_BYTES, &buf, &len);
    if (st) return st;
    st = pclip_image_decode(ctx, buf, len, path, out);
    pclip__free(buf);
    return st;
}
