/* portclip embed-text and embed-image: embeddings as one float32 [N,D] .npy,
 * rows in input order (temp file, then rename: a failed run leaves no
 * output). The model, backend and inputs come set up by cli.c.
 *
 * embed-image runs the library's pipeline (pclip_embed_image_files: decode
 * and preprocess on worker threads while the encoder runs, --batch-size
 * images per encoder run). Folders are walked by cli_images_collect, and
 * OUT.paths.txt beside OUT lists each row's file; --skip-bad leaves out the
 * files that cannot be decoded (each named on stderr with the reason), and
 * then the rows are kept in memory until the end, since the .npy header
 * needs their number. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- options ---- */

static struct {
    const char *output;
    bool no_normalize, skip_bad;
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
    CLI_FLAG("--skip-bad",
             "leave out files that cannot be decoded (each listed on stderr\n"
             "with the reason); OUT and OUT.paths.txt hold the others",
             &opt.skip_bad),
    CLI_OPTIONS_END};

/* ---- embed-text ---- */

int cmd_embed_text(cli_run *run) {
    pclip_ctx_t ctx = run->ctx;
    if (run->inputs.count > INT32_MAX / 1024) return cli_error(CLI_EXIT_FAILURE, "too many texts");
    int32_t n = (int32_t)run->inputs.count;
    const pclip_config *cfg = pclip_model_config(run->model);
    int32_t n_ctx = cfg->text.max_position_embeddings;
    int32_t *ids = malloc((size_t)n * (size_t)n_ctx * sizeof *ids);
    float *emb = malloc((size_t)n * (size_t)pclip_model_embed_dim(run->model) * sizeof *emb);
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
        int64_t shape[2] = {n, pclip_model_embed_dim(run->model)};
        st = pclip_model_encode_text(run->model, run->backend, ids, n, flags, emb);
        if (!st) st = pclip_npy_write_f32(ctx, opt.output, emb, shape, 2);
        if (st) rc = cli_fail(ctx, st);
    }
    free(ids);
    free(emb);
    return rc;
}

/* ---- image inputs: files and folders ---- */

int cli_images_collect(cli_run *run, cli_images *out) {
    *out = (cli_images){0};
    pclip_path_list_t list = NULL;
    pclip_status st = pclip_collect_images(run->ctx, (const char *const *)run->inputs.items,
                                           (int64_t)run->inputs.count, 0, &list);
    if (st) return cli_fail(run->ctx, st);
    /* what a folder holds besides images is no error; say what could not be read */
    for (int64_t i = 0; i < pclip_path_list_skipped_count(list); i++) {
        pclip_collect_skip why;
        const char *reason;
        const char *path = pclip_path_list_skipped(list, i, &why, &reason);
        if (why != PCLIP_COLLECT_NOT_IMAGE)
            fprintf(stderr, "portclip: note: '%s' left out: %s\n", path, reason);
    }
    *out = (cli_images){.paths = pclip_path_list_paths(list),
                        .n = pclip_path_list_count(list),
                        .list = list};
    if (out->n == 0) {
        cli_images_destroy(out);
        return cli_error(CLI_EXIT_FAILURE, "no image files in the %zu input%s given",
                         run->inputs.count, run->inputs.count == 1 ? "" : "s");
    }
    return 0;
}

void cli_images_destroy(cli_images *im) {
    pclip_path_list_destroy(im->list);
    *im = (cli_images){0};
}

void cli_report_skip(void *user, const pclip_image_failure *f) {
    int64_t *n_skipped = user;
    ++*n_skipped;
    fprintf(stderr, "portclip: skipped: %s\n", f->message);
}

/* OUT.paths.txt, allocated. */
char *cli_paths_file(const char *output) {
    size_t n = strlen(output);
    char *p = malloc(n + sizeof ".paths.txt");
    if (p) memcpy(p, output, n), memcpy(p + n, ".paths.txt", sizeof ".paths.txt");
    return p;
}

/* ---- embed-image ---- */

/* Where rows go: streamed to the .npy writer, or (--skip-bad) kept. */
typedef struct sink {
    pclip_npy_writer_t w;
    float *rows; /* --skip-bad: [n, dim] */
    int64_t n_rows;
    int32_t dim;
    const char *const *paths;
    const char **kept; /* --skip-bad: the embedded rows' paths */
    int64_t next_in, n_skipped;
    char *skipped; /* [n] */
} sink;

static pclip_status append_rows(void *user, int64_t first, int32_t count, int32_t dim,
                                const float *rows) {
    sink *s = user;
    if (s->w) return pclip_npy_writer_append(s->w, rows, (size_t)count * (size_t)dim);
    memcpy(s->rows + (size_t)first * (size_t)dim, rows, (size_t)count * (size_t)dim * sizeof *rows);
    for (int32_t i = 0; i < count; i++) {
        while (s->skipped[s->next_in]) s->next_in++; /* a batch's skips come before its rows */
        s->kept[first + i] = s->paths[s->next_in++];
    }
    s->n_rows = first + count;
    return PCLIP_STATUS_OK;
}

static void skip_file(void *user, const pclip_image_failure *f) {
    sink *s = user;
    s->skipped[f->index] = 1;
    cli_report_skip(&s->n_skipped, f);
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
    cli_images im;
    int rc = cli_images_collect(run, &im);
    if (rc) return rc;
    char *paths_file = cli_paths_file(opt.output);
    sink s = {.dim = pclip_model_embed_dim(run->model), .paths = im.paths};
    int64_t shape[2] = {im.n, pclip_model_embed_dim(run->model)};
    pclip_status st = PCLIP_STATUS_OK;
    if (!paths_file) {
        rc = cli_error(CLI_EXIT_FAILURE, "out of memory");
    } else if (opt.skip_bad) {
        s.rows = malloc((size_t)im.n * (size_t)s.dim * sizeof *s.rows);
        s.kept = malloc((size_t)im.n * sizeof *s.kept);
        s.skipped = calloc((size_t)im.n, 1);
        if (!s.rows || !s.kept || !s.skipped) rc = cli_error(CLI_EXIT_FAILURE, "out of memory");
    } else {
        st = pclip_npy_writer_create(ctx, opt.output, shape, 2, &s.w);
    }
    pclip_embed_options eo = {.batch_size = opt.batch_size,
                              .preprocess = (pclip_preprocess_mode)opt.preprocess,
                              .flags = opt.no_normalize ? 0 : PCLIP_ENCODE_NORMALIZE,
                              .skip = opt.skip_bad ? skip_file : NULL,
                              .skip_user = &s};
    if (!rc && !st) st = pclip_embed_image_files(run->model, run->backend, im.paths, im.n, &eo,
                                                 append_rows, &s);
    /* the row order first: a failure there leaves no .npy either */
    const char *const *kept = opt.skip_bad ? (const char *const *)s.kept : im.paths;
    int64_t n_kept = opt.skip_bad ? s.n_rows : im.n;
    if (!rc && !st && opt.skip_bad && n_kept == 0)
        rc = cli_error(CLI_EXIT_FAILURE, "none of the %lld images could be read; %s not written",
                       (long long)im.n, opt.output);
    if (!rc && !st) st = pclip_lines_write(ctx, paths_file, kept, n_kept);
    if (!rc && !st) {
        shape[0] = n_kept;
        st = s.w ? pclip_npy_writer_commit(s.w) : pclip_npy_write_f32(ctx, opt.output, s.rows, shape, 2);
        if (st) remove(paths_file);
    }
    if (!rc && st) rc = cli_fail(ctx, st);
    if (!rc && s.n_skipped)
        fprintf(stderr, "portclip: %lld of %lld images skipped\n", (long long)s.n_skipped,
                (long long)im.n);
    pclip_npy_writer_destroy(s.w);
    free(s.rows);
    free(s.kept);
    free(s.skipped);
    free(paths_file);
    cli_images_destroy(&im);
    return rc;
}
