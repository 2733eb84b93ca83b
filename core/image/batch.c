/* Decoding and preprocessing of image files on worker threads, one batch at
 * a time, with the next batch prepared while the caller uses the current one
 * (two pixel buffers). Each worker has its own context; the first failure of
 * a batch (by input index) is handed to the caller's context with the file's
 * path; with skip_bad, every failure is kept per image instead and the
 * batch is handed over with the good rows packed at the front.
 *
 * It does not encode: overlapping the decode with the encoder is
 * apps/embed.c's job. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define BATCHER_MAX_THREADS 64
#define BATCHER_AUTO_THREADS 4 /* decode shares the cores with the encoder */

typedef struct pclip_image_batcher batcher;

typedef struct worker {
    batcher *bt;
    pclip_ctx_t ctx;
    pthread_t tid;
    bool started;
} worker;

/* The batch in flight. */
typedef struct job {
    int64_t first;
    int32_t count;
    float *pixels;       /* [count, 3, crop_h, crop_w] */
    int32_t next;        /* next image to take, under lock */
    int64_t failed;      /* lowest failing input index, or -1 */
    pclip_status failed_status;
    char failed_msg[PCLIP_ERROR_TEXT];
    /* skip_bad only: per image of the batch (index k), the buffers of this slot */
    pclip_status *status; /* [batch] */
    char *msgs;           /* [batch][PCLIP_ERROR_TEXT] */
} job;

struct pclip_image_batcher {
    pclip_ctx_t ctx; /* borrowed: the caller's */
    const char *const *paths; /* borrowed, [n] */
    int64_t n;
    pclip_image_config cfg;
    pclip_preprocess_mode mode;
    int32_t batch, threads;
    size_t per_image;  /* floats per image */
    float *buf[2];     /* [batch, per_image] each */
    int slot;          /* buffer of the job in flight */
    worker *workers;   /* [threads] */
    pthread_mutex_t lock;
    job job;
    bool in_flight;
    bool skip_bad;
    /* skip_bad: per buffer slot, what its batch's images did */
    pclip_status *status[2];        /* [batch] */
    char *msgs[2];                  /* [batch][PCLIP_ERROR_TEXT] */
    int64_t *indices[2];            /* [batch]: input index of each packed row */
    pclip_image_failure *fails[2];  /* [batch] */
    int32_t n_fails;                /* of the batch last handed over */
    int64_t *out_indices;           /* of the batch last handed over, NULL before */
    pclip_image_failure *out_fails;
    pclip_status sticky; /* a batch failed: every later next says so */
    char sticky_msg[PCLIP_ERROR_TEXT];
};

/* ---- workers ---- */

static void record_failure(batcher *bt, int64_t index, pclip_status st, const char *path,
                           const char *why) {
    job *j = &bt->job;
    if (bt->skip_bad) { /* each image owns its entry: no lock needed */
        int32_t k = (int32_t)(index - j->first);
        char *msg = j->msgs + (size_t)k * PCLIP_ERROR_TEXT;
        j->status[k] = st ? st : PCLIP_STATUS_INTERNAL;
        if (path && strstr(why, path))
            snprintf(msg, PCLIP_ERROR_TEXT, "%s", why);
        else
            snprintf(msg, PCLIP_ERROR_TEXT, "image %lld '%s': %s", (long long)index,
                     path ? path : "(null)", why);
        return;
    }
    pthread_mutex_lock(&bt->lock);
    if (j->failed < 0 || index < j->failed) {
        j->failed = index;
        j->failed_status = st;
        /* decode errors already name the file; preprocess errors do not */
        if (path && strstr(why, path))
            snprintf(j->failed_msg, sizeof j->failed_msg, "%s", why);
        else
            snprintf(j->failed_msg, sizeof j->failed_msg, "image %lld '%s': %s", (long long)index,
                     path ? path : "(null)", why);
    }
    pthread_mutex_unlock(&bt->lock);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    batcher *bt = w->bt;
    job *j = &bt->job;
    for (;;) {
        pthread_mutex_lock(&bt->lock);
        int32_t k = j->next++;
        /* images after a failure of this batch are not needed */
        bool skip = j->failed >= 0 && j->first + k > j->failed;
        pthread_mutex_unlock(&bt->lock);
        if (k >= j->count) break;
        if (skip) continue;
        int64_t index = j->first + k;
        const char *path = bt->paths[index];
        if (!path) {
            record_failure(bt, index, PCLIP_STATUS_INVALID_ARGUMENT, NULL, "the path is NULL");
            continue;
        }
        pclip_image *img = NULL;
        pclip_status st = pclip_image_load(w->ctx, path, &img);
        if (!st)
            st = pclip_image_preprocess(w->ctx, img, &bt->cfg, bt->mode,
                                        j->pixels + (size_t)k * bt->per_image);
        pclip_image_destroy(img);
        if (st) record_failure(bt, index, st, path, pclip_ctx_last_error(w->ctx));
    }
    return NULL;
}

/* Starts the batch at `first` into buffer `slot`. */
static void start_job(batcher *bt, int64_t first, int slot) {
    int64_t left = bt->n - first;
    bt->job = (job){.first = first,
                    .count = left < bt->batch ? (int32_t)left : bt->batch,
                    .pixels = bt->buf[slot],
                    .failed = -1,
                    .status = bt->status[slot],
                    .msgs = bt->msgs[slot]};
    if (bt->skip_bad)
        for (int32_t k = 0; k < bt->job.count; k++) bt->job.status[k] = PCLIP_STATUS_OK;
    bt->slot = slot;
    bt->in_flight = true;
    int32_t want = bt->job.count < bt->threads ? bt->job.count : bt->threads;
    int32_t started = 0;
    for (int32_t i = 0; i < want; i++) {
        worker *w = &bt->workers[i];
        w->started = pthread_create(&w->tid, NULL, worker_main, w) == 0;
        started += w->started;
    }
    /* no thread could start: decode on the caller's thread instead */
    if (started == 0) worker_main(&bt->workers[0]);
}

static void finish_job(batcher *bt) {
    for (int32_t i = 0; i < bt->threads; i++)
        if (bt->workers[i].started) {
            pthread_join(bt->workers[i].tid, NULL);
            bt->workers[i].started = false;
        }
    bt->in_flight = false;
}

/* ---- the batcher ---- */

static void free_buffers(batcher *bt) {
    pclip__free(bt->workers);
    for (int s = 0; s < 2; s++) {
        pclip__free(bt->buf[s]);
        pclip__free(bt->status[s]);
        pclip__free(bt->msgs[s]);
        pclip__free(bt->indices[s]);
        pclip__free(bt->fails[s]);
    }
    pclip__free(bt);
}

/* skip_bad: packs the decoded rows of the finished batch in `slot` at the
 * front of its buffer and lists its failures; returns the rows kept. */
static int32_t pack_batch(batcher *bt, const job *done, int slot) {
    int32_t kept = 0, failed = 0;
    for (int32_t k = 0; k < done->count; k++) {
        int64_t index = done->first + k;
        if (done->status[k]) {
            bt->fails[slot][failed++] =
                (pclip_image_failure){.index = index, .path = bt->paths[index],
                                      .status = done->status[k],
                                      .message = done->msgs + (size_t)k * PCLIP_ERROR_TEXT};
            continue;
        }
        if (kept != k)
            memmove(done->pixels + (size_t)kept * bt->per_image,
                    done->pixels + (size_t)k * bt->per_image, bt->per_image * sizeof(float));
        bt->indices[slot][kept++] = index;
    }
    bt->out_indices = bt->indices[slot];
    bt->out_fails = bt->fails[slot];
    bt->n_fails = failed;
    return kept;
}

static int32_t auto_threads(void) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    return cpus < BATCHER_AUTO_THREADS ? (int32_t)cpus : BATCHER_AUTO_THREADS;
}

pclip_status pclip_image_batcher_create(pclip_ctx_t ctx, const char *const *paths, int64_t n,
                                        const pclip_image_config *cfg,
                                        const pclip_image_batcher_options *opt,
                                        pclip_image_batcher_t *out) {
    pclip_image_batcher_options o = opt ? *opt : (pclip_image_batcher_options){0};
    if (!cfg || !out || n < 0 || (n > 0 && !paths))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "image batcher: NULL argument or n < 0");
    if (o.batch_size == 0) o.batch_size = PCLIP_ENCODE_BATCH_DEFAULT;
    if (o.batch_size < 1 || o.batch_size > PCLIP_ENCODE_BATCH_MAX)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "image batcher: batch size %d is outside 1..%d", (int)o.batch_size,
                          PCLIP_ENCODE_BATCH_MAX);
    if (o.threads == 0) o.threads = auto_threads();
    if (o.threads < 1 || o.threads > BATCHER_MAX_THREADS)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "image batcher: %d threads is outside 1..%d", (int)o.threads,
                          BATCHER_MAX_THREADS);
    if ((unsigned)o.preprocess >= PCLIP_PREPROCESS_COUNT)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "image batcher: preprocess mode %d is neither OPENAI nor HF",
                          (int)o.preprocess);
    if (cfg->crop_height < 1 || cfg->crop_width < 1 || cfg->crop_height > PCLIP_LIMIT_IMAGE_SIDE ||
        cfg->crop_width > PCLIP_LIMIT_IMAGE_SIDE)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "image batcher: crop %dx%d is outside 1..%d", (int)cfg->crop_width,
                          (int)cfg->crop_height, PCLIP_LIMIT_IMAGE_SIDE);
    /* a short input needs no more than its own size */
    if (n < o.batch_size) o.batch_size = n > 0 ? (int32_t)n : 1;
    batcher *bt = pclip__calloc(1, sizeof *bt);
    if (!bt) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "image batcher: out of memory");
    *bt = (batcher){.ctx = ctx, .paths = paths, .n = n, .cfg = *cfg, .mode = o.preprocess,
                    .batch = o.batch_size, .threads = o.threads, .skip_bad = o.skip_bad != 0};
    bt->per_image = (size_t)3 * (size_t)cfg->crop_height * (size_t)cfg->crop_width;
    size_t bytes = 0;
    bool ok = pclip__mul3_size(bt->per_image, (size_t)bt->batch, sizeof(float), &bytes);
    if (ok && n > 0) {
        ok = (bt->buf[0] = pclip__malloc(bytes)) && (bt->buf[1] = pclip__malloc(bytes));
    }
    for (int s = 0; ok && n > 0 && s < 2; s++) {
        ok = (bt->indices[s] = pclip__calloc((size_t)bt->batch, sizeof *bt->indices[s])) != NULL;
        if (ok && bt->skip_bad)
            ok = (bt->status[s] = pclip__calloc((size_t)bt->batch, sizeof *bt->status[s])) &&
                 (bt->msgs[s] = pclip__calloc((size_t)bt->batch, PCLIP_ERROR_TEXT)) &&
                 (bt->fails[s] = pclip__calloc((size_t)bt->batch, sizeof *bt->fails[s]));
    }
    if (ok) ok = (bt->workers = pclip__calloc((size_t)bt->threads, sizeof *bt->workers)) != NULL;
    for (int32_t i = 0; ok && i < bt->threads; i++) {
        bt->workers[i].bt = bt;
        ok = pclip_ctx_create(&bt->workers[i].ctx) == PCLIP_STATUS_OK;
    }
    if (ok) ok = pthread_mutex_init(&bt->lock, NULL) == 0;
    if (!ok) {
        if (bt->workers)
            for (int32_t i = 0; i < bt->threads; i++) pclip_ctx_destroy(bt->workers[i].ctx);
        free_buffers(bt);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "image batcher: out of memory for 2 x %d images of %dx%d",
                          (int)o.batch_size, (int)cfg->crop_width, (int)cfg->crop_height);
    }
    if (n > 0) start_job(bt, 0, 0);
    *out = bt;
    return PCLIP_STATUS_OK;
}

pclip_status pclip_image_batcher_next(pclip_image_batcher_t bt, int64_t *first, int32_t *count,
                                      const float **pixels) {
    if (!bt) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!first || !count || !pixels)
        return pclip__err(bt->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "image batcher: NULL output argument");
    if (bt->sticky) return pclip__err(bt->ctx, bt->sticky, "%s", bt->sticky_msg);
    if (!bt->in_flight) {
        *first = bt->n;
        *count = 0;
        *pixels = NULL;
        return PCLIP_STATUS_OK;
    }
    finish_job(bt);
    job done = bt->job;
    if (done.failed >= 0) {
        bt->sticky = done.failed_status ? done.failed_status : PCLIP_STATUS_INTERNAL;
        snprintf(bt->sticky_msg, sizeof bt->sticky_msg, "%s", done.failed_msg);
        return pclip__err(bt->ctx, bt->sticky, "%s", bt->sticky_msg);
    }
    int done_slot = bt->slot;
    int32_t kept = done.count;
    if (bt->skip_bad) {
        kept = pack_batch(bt, &done, done_slot);
    } else {
        for (int32_t k = 0; k < done.count; k++) bt->indices[done_slot][k] = done.first + k;
        bt->out_indices = bt->indices[done_slot];
    }
    if (done.first + done.count < bt->n) start_job(bt, done.first + done.count, done_slot ^ 1);
    *first = done.first;
    *count = kept;
    *pixels = bt->buf[done_slot];
    return PCLIP_STATUS_OK;
}

const int64_t *pclip_image_batcher_indices(pclip_image_batcher_t bt) {
    return bt ? bt->out_indices : NULL;
}

const pclip_image_failure *pclip_image_batcher_failures(pclip_image_batcher_t bt, int32_t *n) {
    if (n) *n = bt && bt->out_fails ? bt->n_fails : 0;
    return bt && bt->n_fails ? bt->out_fails : NULL;
}

void pclip_image_batcher_destroy(pclip_image_batcher_t bt) {
    if (!bt) return;
    if (bt->in_flight) finish_job(bt);
    pthread_mutex_destroy(&bt->lock);
    for (int32_t i = 0; i < bt->threads; i++) pclip_ctx_destroy(bt->workers[i].ctx);
    free_buffers(bt);
}
