/* portclip preprocess: the pixel tensors the image encoder would see, as one
 * float32 [N,3,S,S] .npy (temp file, then rename: a bad image leaves no
 * output), and beside it OUT.paths.txt, each row's file (folders are read
 * recursively). Images are decoded one at a time on this thread; the
 * threaded pipeline is embed-image's. */
#include <stdio.h>
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
    cli_images im;
    int rc = cli_images_collect(run, &im);
    if (rc) return rc;
    int64_t n = im.n;
    int64_t shape[4] = {n, 3, cfg->crop_height, cfg->crop_width};
    size_t per_image = (size_t)3 * (size_t)cfg->crop_height * (size_t)cfg->crop_width;
    float *pixels = malloc(per_image * sizeof *pixels);
    char *paths_file = cli_paths_file(output);
    if (!pixels || !paths_file) {
        free(pixels);
        free(paths_file);
        cli_images_destroy(&im);
        return cli_error(CLI_EXIT_FAILURE, "out of memory");
    }
    pclip_npy_writer_t w = NULL;
    pclip_status st = pclip_npy_writer_create(ctx, output, shape, 4, &w);
    for (int64_t i = 0; i < n && !st; i++) {
        pclip_image *img = NULL;
        st = pclip_image_load(ctx, im.paths[i], &img);
        if (!st) st = pclip_image_preprocess(ctx, img, cfg, (pclip_preprocess_mode)mode, pixels);
        if (!st) st = pclip_npy_writer_append(w, pixels, per_image);
        pclip_image_destroy(img);
    }
    /* the row order first: a failure there leaves no .npy either */
    if (!st) st = pclip_lines_write(ctx, paths_file, im.paths, n);
    if (!st && (st = pclip_npy_writer_commit(w))) remove(paths_file);
    rc = st ? cli_fail(ctx, st) : CLI_EXIT_OK;
    pclip_npy_writer_destroy(w);
    free(pixels);
    free(paths_file);
    cli_images_destroy(&im);
    return rc;
}
