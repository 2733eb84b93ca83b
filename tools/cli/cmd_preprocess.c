/* portclip preprocess: the pixel tensors the image encoder would see, as one
 * float32 [N,3,S,S] .npy (temp file, then rename: a bad image leaves no
 * output). Images are decoded one at a time on this thread; the threaded
 * pipeline is embed-image's. */
#include <stdlib.h>

#include "cli.h"

/* ---- options ---- */

static const char *output;
static int mode = PCLIP_PREPROCESS_OPENAI;

const cli_option cmd_preprocess_options[] = {
    CLI_OUTPUT("--output", "OUT.npy", "where to write the pixels (.npy)", &output),
    CLI_CHOICE("--preprocess", "MODE",
               "openai (default: torchvision's CLIP transform) or hf\n"
               "(Hugging Face CLIPImageProcessor)",
               &mode, cli_preprocess_names),
    CLI_OPTIONS_END};

/* ---- preprocess ---- */

int cmd_preprocess(cli_run *run) {
    pclip_ctx_t ctx = run->ctx;
    const pclip_image_config *cfg = pclip_model_image_config(run->model);
    size_t n = run->inputs.count;
    int64_t shape[4] = {(int64_t)n, 3, cfg->crop_height, cfg->crop_width};
    size_t per_image = (size_t)3 * (size_t)cfg->crop_height * (size_t)cfg->crop_width;
    float *pixels = malloc(per_image * sizeof *pixels);
    if (!pixels) return cli_error(CLI_EXIT_FAILURE, "out of memory");
    pclip_npy_writer_t w = NULL;
    pclip_status st = pclip_npy_writer_create(ctx, output, shape, 4, &w);
    for (size_t i = 0; i < n && !st; i++) {
        pclip_image *img = NULL;
        st = pclip_image_load(ctx, run->inputs.items[i], &img);
        if (!st) st = pclip_image_preprocess(ctx, img, cfg, (pclip_preprocess_mode)mode, pixels);
        if (!st) st = pclip_npy_writer_append(w, pixels, per_image);
        pclip_image_destroy(img);
    }
    if (!st) st = pclip_npy_writer_commit(w);
    int rc = st ? cli_fail(ctx, st) : CLI_EXIT_OK;
    pclip_npy_writer_destroy(w);
    free(pixels);
    return rc;
}
