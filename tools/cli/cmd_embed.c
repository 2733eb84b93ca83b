/* portclip embed-text and embed-image: embeddings as one float32 [N,D] .npy,
 * rows in input order (temp file, then rename: a failed run leaves no
 * output). The model, backend and inputs come set up by cli.c.
 *
 * embed-image decodes images on worker threads while the encoder runs. The
 * library is to offer that pipeline as pclip_embed_image_files
 * (include/portclip/apps.h); here it is the one function embed_image_files,
 * with that call's parameters, so that using the library call means deleting
 * that function and its two types. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
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
    CLI_REQUIRED("--output", "OUT.npy", "where to write the embeddings (.npy)", &opt.output)
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

/* ---- image files to embeddings, on worker threads ---- */

/* The shape of pclip_embed_options (include/portclip/apps.h, to come). */
typedef struct embed_options {
    int32_t batch_size; /* 0: 32 */
    int32_t threads;    /* 0: auto */
    pclip_preprocess_mode preprocess;
    uint32_t flags; /* PCLIP_ENCODE_* */
} embed_options;

/* The shape of pclip_embed_rows_fn: rows [count, dim] for inputs first.. */
typedef pclip_status (*embed_rows_fn)(void *user, int64_t first, int32_t count, int32_t dim,
                                      const float *rows);

/* The message of a failure that embed_image_files finds itself (an image that
 * does not decode, memory); the library call leaves it in the model's context
 * instead. Failed library calls leave theirs in the context as usual. */
static char pipeline_error[1200];

#define DEFAULT_BATCH 32
#define DEFAULT_THREADS 4

/* A batch of images decoded and preprocessed by worker threads, each with its
 * own context (contexts are not shared between threads). */
typedef struct prep_job {
    const char *const *paths;
    const pclip_image_config *cfg;
    pclip_preprocess_mode mode;
    int threads;
    int64_t first; /* input index of pixels[0] */
    int32_t count;
    size_t per_image; /* floats per image */
    float *pixels;    /* [count, per_image] */
    int32_t next;     /* next image to take (under lock) */
    pthread_mutex_t lock;
    int64_t failed_index; /* lowest failing input index, or INT64_MAX */
    pclip_status failed_status;
    char failed_msg[1200];
} prep_job;

static void job_failed(prep_job *j, int64_t index, pclip_status st, const char *msg) {
    pthread_mutex_lock(&j->lock);
    if (index < j->failed_index) {
        j->failed_index = index;
        j->failed_status = st;
        snprintf(j->failed_msg, sizeof j->failed_msg, "%s", msg);
    }
    pthread_mutex_unlock(&j->lock);
}

static void *prep_worker(void *arg) {
    prep_job *j = arg;
    pclip_ctx_t ctx;
    if (pclip_ctx_create(&ctx)) {
        job_failed(j, j->first, PCLIP_STATUS_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int32_t k = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (k >= j->count) break;
        pclip_image *img = NULL;
        pclip_status st = pclip_image_load(ctx, j->paths[j->first + k], &img);
        if (!st)
            st = pclip_image_preprocess(ctx, img, j->cfg, j->mode,
                                        j->pixels + (size_t)k * j->per_image);
        pclip_image_destroy(img);
        if (st) job_failed(j, j->first + k, st, pclip_ctx_last_error(ctx));
    }
    pclip_ctx_destroy(ctx);
    return NULL;
}

static void job_init(prep_job *j, const prep_job *shape, int64_t first, int64_t n, int32_t batch,
                     float *pixels) {
    *j = *shape;
    j->first = first;
    j->count = n - first < batch ? (int32_t)(n - first) : batch;
    j->pixels = pixels;
    j->next = 0;
    j->failed_index = INT64_MAX;
    pthread_mutex_init(&j->lock, NULL);
}

/* Runs a batch on j->threads workers; the calling thread only waits. */
static void *prep_batch(void *arg) {
    prep_job *j = arg;
    pthread_t t[64];
    int started = 0;
    int want = j->count < j->threads ? j->count : j->threads;
    for (int i = 0; i < want && i < 64; i++)
        if (pthread_create(&t[started], NULL, prep_worker, j) == 0) started++;
    if (started == 0) prep_worker(j);
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    return NULL;
}

/* Embeds the images paths[0..n) and hands the rows to `fn` in input order,
 * batch by batch: batch k+1 is decoded on worker threads while batch k is
 * encoded. A failing image stops the run with its status; its message (naming
 * the file) is left in pipeline_error, as are those of failures found here. */
static pclip_status embed_image_files(pclip_model_t model, pclip_backend_t b,
                                      const char *const *paths, int64_t n, const embed_options *o,
                                      embed_rows_fn fn, void *user) {
    pipeline_error[0] = '\0';
    if (!model || !b || !paths || n < 0 || !o || !fn) {
        snprintf(pipeline_error, sizeof pipeline_error, "embed_image_files: bad argument");
        return PCLIP_STATUS_INVALID_ARGUMENT;
    }
    const pclip_config *cfg = pclip_model_config(model);
    int32_t batch = o->batch_size > 0 ? o->batch_size : DEFAULT_BATCH;
    int32_t S = cfg->vision.image_size;
    int32_t dim = (o->flags & PCLIP_ENCODE_POOLED) ? cfg->vision.hidden_size : cfg->projection_dim;
    size_t per_image = (size_t)3 * (size_t)S * (size_t)S;
    float *pixels[2] = {malloc((size_t)batch * per_image * sizeof(float)),
                        malloc((size_t)batch * per_image * sizeof(float))};
    float *emb = malloc((size_t)batch * (size_t)dim * sizeof *emb);
    pclip_status st = PCLIP_STATUS_OK;
    if (!pixels[0] || !pixels[1] || !emb) {
        snprintf(pipeline_error, sizeof pipeline_error,
                 "out of memory for %d images of %dx%d (--batch-size)", (int)batch, (int)S, (int)S);
        st = PCLIP_STATUS_OUT_OF_MEMORY;
    }
    prep_job shape = {.paths = paths,
                      .cfg = pclip_model_image_config(model),
                      .mode = o->preprocess,
                      .per_image = per_image,
                      .threads = o->threads > 0 && o->threads <= 64 ? o->threads : DEFAULT_THREADS};
    prep_job jobs[2];
    int cur = 0;
    if (!st && n > 0) {
        job_init(&jobs[0], &shape, 0, n, batch, pixels[0]);
        prep_batch(&jobs[0]);
    }
    for (int64_t first = 0; !st && first < n; first += batch, cur ^= 1) {
        prep_job *j = &jobs[cur];
        pthread_mutex_destroy(&j->lock);
        if (j->failed_index != INT64_MAX) {
            snprintf(pipeline_error, sizeof pipeline_error, "%s", j->failed_msg);
            st = j->failed_status;
            break;
        }
        pthread_t prefetch;
        bool prefetching = false, more = first + batch < n;
        if (more) {
            prep_job *nj = &jobs[cur ^ 1];
            job_init(nj, &shape, first + batch, n, batch, pixels[cur ^ 1]);
            prefetching = pthread_create(&prefetch, NULL, prep_batch, nj) == 0;
            if (!prefetching) prep_batch(nj);
        }
        st = pclip_model_encode_images(model, b, j->pixels, j->count, o->flags, emb);
        if (!st) st = fn(user, first, j->count, dim, emb);
        if (prefetching) pthread_join(prefetch, NULL);
        if (st && more) pthread_mutex_destroy(&jobs[cur ^ 1].lock);
    }
    free(pixels[0]);
    free(pixels[1]);
    free(emb);
    return st;
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
    embed_options eo = {.batch_size = opt.batch_size,
                        .preprocess = (pclip_preprocess_mode)opt.preprocess,
                        .flags = opt.no_normalize ? 0 : PCLIP_ENCODE_NORMALIZE};
    st = embed_image_files(run->model, run->backend, run->inputs.items, (int64_t)run->inputs.count,
                           &eo, append_rows, w);
    if (!st) st = pclip_npy_writer_commit(w);
    int rc = CLI_EXIT_OK;
    if (st)
        rc = pipeline_error[0] ? cli_error(CLI_EXIT_FAILURE, "%s", pipeline_error)
                               : cli_fail(ctx, st);
    pclip_npy_writer_destroy(w);
    return rc;
}
