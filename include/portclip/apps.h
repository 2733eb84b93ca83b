/* portclip applications: image files to embeddings, with decoding and
 * preprocessing on worker threads. Included by portclip.h; the conventions
 * written there (statuses, contexts, ownership, destroy(NULL)) hold here. */
#ifndef PORTCLIP_APPS_H
#define PORTCLIP_APPS_H

#include "portclip/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- image batches on worker threads ---- */

typedef struct pclip_image_batcher *pclip_image_batcher_t;

/* Zero means the default for every field. */
typedef struct pclip_image_batcher_options {
    int32_t batch_size;               /* images per batch; 0: 32; 1..PCLIP_ENCODE_BATCH_MAX */
    int32_t threads;                  /* decode workers; 0: auto (online CPUs, at most 4); <= 64 */
    pclip_preprocess_mode preprocess; /* 0: PCLIP_PREPROCESS_OPENAI */
} pclip_image_batcher_options;

/* Decodes and preprocesses the images paths[0..n) in batches, on worker
 * threads (each with its own context), preparing the next batch while the
 * caller works on the current one. The first batch starts at once.
 * paths (and each string) are borrowed: they must outlive the batcher. cfg is
 * copied; opt NULL means the defaults. Failures of the call itself (bad
 * options, no memory) are reported in ctx; so are those of _next, which must
 * run on the thread that owns ctx. */
PCLIP_API pclip_status pclip_image_batcher_create(pclip_ctx_t ctx, const char *const *paths,
                                                  int64_t n, const pclip_image_config *cfg,
                                                  const pclip_image_batcher_options *opt,
                                                  pclip_image_batcher_t *out);
/* The next batch, in input order: *first is the index of its first image,
 * *count its size and *pixels the float32 [count, 3, crop_height, crop_width]
 * rows (borrowed: valid until the next _next or _destroy). After the last
 * batch: OK with *count 0 and *pixels NULL. A file that cannot be decoded or
 * preprocessed fails the batch that holds it, with the message naming the
 * path and the reason (the lowest failing index of that batch); every later
 * call returns the same status. */
PCLIP_API pclip_status pclip_image_batcher_next(pclip_image_batcher_t bt, int64_t *first,
                                                int32_t *count, const float **pixels);
/* Waits for the workers of a batch in flight, then frees everything. */
PCLIP_API void pclip_image_batcher_destroy(pclip_image_batcher_t bt);

/* ---- image files to embeddings ---- */

/* Zero means the default for every field. */
typedef struct pclip_embed_options {
    int32_t batch_size;               /* images per encoder run; 0: 32; 1..PCLIP_ENCODE_BATCH_MAX */
    int32_t threads;                  /* decode workers; 0: auto */
    pclip_preprocess_mode preprocess; /* 0: PCLIP_PREPROCESS_OPENAI */
    uint32_t flags;                   /* PCLIP_ENCODE_*; 0: raw projections */
} pclip_embed_options;

/* Called once per batch, in input order: rows [first, first + count),
 * [count, dim] floats, borrowed for the call; a non-OK return stops the run
 * and is returned. */
typedef pclip_status (*pclip_embed_rows_fn)(void *user, int64_t first, int32_t count, int32_t dim,
                                            const float *rows);

/* Embeds the image files paths[0..n) with the model's vision tower on b:
 * decode and preprocess (the model's preprocessor_config.json) of batch k+1
 * run on worker threads while batch k is encoded, and fn(user, ...) receives
 * each batch's rows (dim: projection_dim, or the vision hidden_size with
 * PCLIP_ENCODE_POOLED). The rows equal pclip_model_encode_images_batched on
 * the same pixels with the same batch size. opt NULL means the defaults;
 * paths are borrowed for the call; n 0 is OK with no call of fn.
 * Returns OK once every row went to fn; a file that fails stops the run
 * before its batch is encoded, with the path and the reason in the model's
 * context; fn's non-OK status is returned as it is (its message, if it left
 * none in the model's context, says which rows it refused). The model must
 * have been loaded with its weights and image config. */
PCLIP_API pclip_status pclip_embed_image_files(pclip_model_t model, pclip_backend_t b,
                                               const char *const *paths, int64_t n,
                                               const pclip_embed_options *opt,
                                               pclip_embed_rows_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* PORTCLIP_APPS_H */
