/* portclip applications: image files to embeddings, with decoding and
 * preprocessing on worker threads. Included by portclip.h; the conventions
 * written there (statuses, contexts, ownership, destroy(NULL)) hold here. */
#ifndef PORTCLIP_APPS_H
#define PORTCLIP_APPS_H

#include "portclip/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- image files under files and folders ---- */

typedef struct pclip_path_list *pclip_path_list_t;

/* Why an entry of a folder is not in the list. */
typedef enum pclip_collect_skip {
    PCLIP_COLLECT_INCLUDED = 0, /* (not skipped) */
    PCLIP_COLLECT_NOT_IMAGE,    /* a file whose first bytes are not JPEG or PNG */
    PCLIP_COLLECT_UNREADABLE,   /* cannot be opened, read or listed */
    PCLIP_COLLECT_SPECIAL,      /* a FIFO, device or socket: never opened */
    PCLIP_COLLECT_LOOP,         /* a symlink to a folder that contains it */
    PCLIP_COLLECT_DUPLICATE,    /* a folder already read through another path */
    PCLIP_COLLECT_TOO_DEEP      /* more than 128 folders deep below the input */
} pclip_collect_skip;

/* Also read files and folders whose names start with '.' (left out by default). */
#define PCLIP_COLLECT_HIDDEN 1u

/* The image files under inputs[0..n), in order: an input that is not a folder
 * is kept as it is given (reading it later says what is wrong with it, if
 * anything); a folder is read recursively (symlinks followed, each folder
 * once) and gives every regular file whose first bytes are those of a JPEG
 * or PNG, never judged by the name, in the byte order of their paths
 * ("DIR/a/b.jpg"). Whatever a folder holds besides images is in the skipped
 * list with the reason. Fails only on bad arguments or no memory. */
PCLIP_API pclip_status pclip_collect_images(pclip_ctx_t ctx, const char *const *inputs, int64_t n,
                                            uint32_t flags, pclip_path_list_t *out);
PCLIP_API int64_t pclip_path_list_count(pclip_path_list_t l);
/* The paths, contiguous (count of them); owned by the list. */
PCLIP_API const char *const *pclip_path_list_paths(pclip_path_list_t l);
PCLIP_API int64_t pclip_path_list_skipped_count(pclip_path_list_t l);
/* Skipped entry i: its path, and in *why and *reason (each may be NULL) the
 * reason as a code and as text ("cannot be read: Permission denied"); NULL
 * for i out of range. Strings are owned by the list. */
PCLIP_API const char *pclip_path_list_skipped(pclip_path_list_t l, int64_t i,
                                              pclip_collect_skip *why, const char **reason);
/* The text of a reason code, without the system's detail. */
PCLIP_API const char *pclip_collect_skip_reason(pclip_collect_skip why);
PCLIP_API void pclip_path_list_destroy(pclip_path_list_t l);

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
