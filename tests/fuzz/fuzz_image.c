/* Fuzz target: pclip_image_decode on a file's bytes (JPEG or PNG), then
 * pclip_image_preprocess of the image in both modes with a small crop. The
 * resize target and the filter come from the input's size, so that every
 * filter and both up- and downscaling are reached.
 *
 * Images over PREPROCESS_MAX_PIXELS are decoded but not preprocessed. A
 * 1 KB JPEG can claim 9472x5888 (libjpeg decodes corrupt data), and
 * preprocessing is linear in the source pixels (about 0.5 s at the pixel
 * limit in a Release build, checked by hand), but 50 times slower under the
 * fuzzer's instrumentation: such inputs ran into libFuzzer's timeout. */
#include <math.h>

#include "fuzz.h"
#include "image/image.h"

#define CROP_H 16
#define CROP_W 20
#define PREPROCESS_MAX_PIXELS ((int64_t)1 << 22)

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size) {
    const uint8_t *data = fuzz_guarded(input, size);
    pclip_ctx_t ctx = fuzz_ctx();
    pclip_image *img = NULL;
    pclip_status st = pclip_image_decode(ctx, data, size, "fuzz", &img);
    FUZZ_CHECK(fuzz_status_ok(st));
    if (st) {
        FUZZ_CHECK(img == NULL);
        return 0;
    }
    FUZZ_CHECK(img->width >= 1 && img->height >= 1 && img->pixels);
    FUZZ_CHECK((int64_t)img->width * img->height <= PCLIP_LIMIT_IMAGE_PIXELS);
    FUZZ_CHECK(img->channels == pclip__image_mode_channels(img->mode));
    FUZZ_CHECK(img->mode != PCLIP_IMAGE_P || (img->palette_size >= 0 && img->palette_size <= 256));

    if ((int64_t)img->width * img->height > PREPROCESS_MAX_PIXELS) {
        pclip_image_destroy(img);
        return 0;
    }
    pclip_image_config cfg;
    pclip_image_config_default(&cfg);
    cfg.shortest_edge = 8 + (int32_t)(size % 29);
    cfg.crop_height = CROP_H;
    cfg.crop_width = CROP_W;
    cfg.resample = (pclip_resample)(size % PCLIP_RESAMPLE_COUNT);
    static float out[3 * CROP_H * CROP_W];
    for (int mode = 0; mode < PCLIP_PREPROCESS_COUNT; mode++) {
        st = pclip_image_preprocess(ctx, img, &cfg, (pclip_preprocess_mode)mode, out);
        /* LIMIT: a 1 x N line scaled to a short side of 8+ can pass the
         * pixel limit; UNSUPPORTED cannot happen with do_convert_rgb on */
        FUZZ_CHECK(st == PCLIP_STATUS_OK || st == PCLIP_STATUS_LIMIT);
        if (st) continue;
        for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) FUZZ_CHECK(isfinite(out[i]));
    }
    pclip_image_destroy(img);
    return 0;
}
