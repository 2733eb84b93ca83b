/* portclip embed-text and embed-image: embeddings as one float32 [N,D] .npy,
 * rows in input order (temp file, then rename: a failed run leaves no
 * output). The model, backend and inputs come set up by cli.c.
 *
 * embed-image runs the library's pipeline (pclip_embed_image_files: decode
 * and preprocess on worker threads while the encoder runs, --batch-size
 * images per encoder run). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- options ---- */

static struct {
    const char *output;
    bool no_normalize;
    int32_t batch_size;
    int preprocess;
} opt = {.batch_size = 32, .preprocess = PCLIP_PREPROCESS_OPENAI};

#define OUTPUT_OPTION                                                                              \
    CLI_OUTPUT("--output", "OUT.npy", "where to write the embeddings (.npy)", &opt.output)
#define NO_NORMALIZE_OPTION                                                                        \
    CLI_FLAG("--no-normalize", "write the raw projections", &opt.no_normalize)

const cli_option cmd_embed_text_options[] = {OUTPUT_OPTION, NO_NORMALIZE_OPTION, CLI_OPTIONS_END};

const cli_option cmd_embed_image_options[] = {
    OUTPUT_OPTION, NO_NORMALIZE_OPTION,
    CLI_INT("--batch-size", "B",
            "images decoded ahead per step, on worker threads, while the\n"
            "previous step is encoded (default 32); the encoder itself\n"
            "runs at most 32 images at a time",
            &opt.batch_size, 1, 4096),
    CLI_CHOICE("--preprocess", "MODE", "openai (default) or hf, as for preprocess", &opt.preprocess,
               cli_preprocess_names),
    CLI_OPTIONS_END};

/* ---- embed-text ---- */

int cmd_embed_text(cli_run *run) {
    pclip_ctx_t ctx = run->ctx;
    if (run->inputs.count > INT32_MAX / 1024) return cli_error(CLI_EXIT_FAILURE, "too many texts");
    int32_t n = (int32_t)run->inputs.count;
    const pclip_config *cfg = pclip_model_config(run->model);
    int32_t n_ctx = cfg->text.max_position_embeddings;
    int32_t *ids = malloc((size_t)n * (size_t)n_ctx * sizeof *ids);
    float *emb = malloc((size_t)n * (size_t)cfg->projection_dim * sizeof *emb);
    int rc = CLI_EXIT_OK;
    if (!ids || !emb) rc = cli_error(CLI_EXIT_FAILURE, "out of memory");
    for (int32_t i = 0; i < n && !rc; i++) {
        const char *text = run->inputs.items[i];
        if (pclip_tokenizer_encode(pclip_model_tokenizer(run->model), text, strlen(text),
                                   ids + (size_t)i * (size_t)n_ctx, n_ctx, NULL))
            rc = cli_error(CLI_EXIT_FAILURE, "text %d: %s", i + 1, pclip_ctx_last_error(ctx));
    }
    pclip_status st = PCLIP_STATUS_OK;
    if (!rc) {
        uint32_t flags = opt.no_normalize ? 0 : PCLIP_ENCODE_NORMALIZE;
        int64_t shape[2] = {n, cfg->projection_dim};
        st = pclip_model_encode_text(run->model, run->backend, ids, n, flags, emb);
        if (!st) st = pclip_npy_write_f32(ctx, opt.output, emb, shape, 2);
        if (st) rc = cli_fail(ctx, st);
    }
    free(ids);
    free(emb);
    return rc;
}

/* ---- embed-image ---- */

static pclip_status append_rows(void *user, int64_t first, int32_t count, int32_t dim,
                                const float *rows) {
    (void)first; /* rows arrive in input order */
    return pclip_npy_writer_append(user, rows, (size_t)count * (size_t)dim);
}

int cmd_embed_image(cli_run *run) {
    pclip_ctx_t ctx = run->ctx;
    const pclip_config *cfg = pclip_model_config(run->model);
    const pclip_image_config *icfg = pclip_model_image_config(run->model);
    int32_t S = cfg->vision.image_size;
    if (icfg->crop_height != S || icfg->crop_width != S)
        return cli_error(CLI_EXIT_FAILURE,
                         "model '%s': preprocessor_config.json crops to %dx%d but "
                         "vision_config.image_size is %d",
                         run->model_dir, icfg->crop_width, icfg->crop_height, S);
    int64_t shape[2] = {(int64_t)run->inputs.count, cfg->projection_dim};
    pclip_npy_writer_t w = NULL;
    pclip_status st = pclip_npy_writer_create(ctx, opt.output, shape, 2, &w);
    if (st) return cli_fail(ctx, st);
    pclip_embed_options eo = {.batch_size = opt.batch_size,
                              .preprocess = (pclip_preprocess_mode)opt.preprocess,
                              .flags = opt.no_normalize ? 0 : PCLIP_ENCODE_NORMALIZE};
    st = pclip_embed_image_files(run->model, run->backend,
                                 (const char *const *)run->inputs.items,
                                 (int64_t)run->inputs.count, &eo, append_rows, w);
    if (!st) st = pclip_npy_writer_commit(w);
    int rc = CLI_EXIT_OK;
    if (st) rc = cli_fail(ctx, st);
    pclip_npy_writer_destroy(w);
    return rc;
}
