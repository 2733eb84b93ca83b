/* Fuzz target: preprocessor_config.json (pclip__image_config_parse, the
 * parser behind pclip_image_config_load), then, for configs small enough to
 * run quickly, preprocessing a fixed 23x17 image with it in both modes. */
#include <math.h>

#include "fuzz.h"

#define CROP_MAX 64     /* bound on the output a fuzzed config may ask for */
#define RESIZE_MAX 1024 /* and on the resize it may ask for */

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size) {
    const uint8_t *data = fuzz_guarded(input, size);
    pclip_ctx_t ctx = fuzz_ctx();
    pclip_image_config c;
    pclip_status st =
        pclip__image_config_parse(ctx, "preprocessor_config.json", (const char *)data, size, &c);
    FUZZ_CHECK(fuzz_status_ok(st));
    if (st) return 0;
    FUZZ_CHECK(c.crop_height >= 1 && c.crop_height <= PCLIP_LIMIT_IMAGE_SIDE);
    FUZZ_CHECK(c.crop_width >= 1 && c.crop_width <= PCLIP_LIMIT_IMAGE_SIDE);
    FUZZ_CHECK((unsigned)c.resample < PCLIP_RESAMPLE_COUNT);
    for (int i = 0; i < 3; i++) FUZZ_CHECK(isfinite(c.mean[i]) && c.std[i] > 0);
    if (c.crop_height > CROP_MAX || c.crop_width > CROP_MAX || c.shortest_edge > RESIZE_MAX ||
        c.resize_height > RESIZE_MAX || c.resize_width > RESIZE_MAX)
        return 0;

    static uint8_t pixels[23 * 17 * 4];
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 37 + (i >> 5));
    pclip_image img = {
        .width = 23, .height = 17, .channels = 4, .mode = PCLIP_IMAGE_RGBA, .pixels = pixels};
    size_t n = (size_t)3 * (size_t)c.crop_height * (size_t)c.crop_width;
    float *out = malloc(n * sizeof *out);
    FUZZ_CHECK(out != NULL);
    for (int mode = 0; mode < PCLIP_PREPROCESS_COUNT; mode++) {
        st = pclip_image_preprocess(ctx, &img, &c, (pclip_preprocess_mode)mode, out);
        /* what the parser accepted, preprocessing may still refuse: HF mode
         * without do_convert_rgb (UNSUPPORTED for an RGBA image), the crop
         * off with a size that is not the crop (INVALID_ARGUMENT) */
        FUZZ_CHECK(st == PCLIP_STATUS_OK || st == PCLIP_STATUS_UNSUPPORTED ||
                   st == PCLIP_STATUS_INVALID_ARGUMENT);
    }
    free(out);
    return 0;
}
