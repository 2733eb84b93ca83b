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
    int32_t skip_bad;                 /* non-zero: a file that fails is left out of its batch
                                         (pclip_image_batcher_failures says which and why)
                                         instead of failing the batch */
} pclip_image_batcher_options;

/* A file the batcher could not decode or preprocess (skip_bad). */
typedef struct pclip_image_failure {
    int64_t index;       /* into the batcher's paths */
    const char *path;    /* borrowed: the caller's string */
    pclip_status status;
    const char *message; /* names the file and the reason; borrowed like the batch's pixels */
} pclip_image_failure;

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
/* With skip_bad: the batch the last _next returned holds only the images that
 * decoded, in input order, its rows packed at the front of *pixels (*count
 * of them, possibly 0 when every image of the batch failed: the end is
 * *pixels NULL, not *count 0). _indices gives each row's input index and
 * _failures the batch's failed files in input order, with *n their number;
 * both borrowed like the pixels. Without skip_bad: the identity and none. */
PCLIP_API const int64_t *pclip_image_batcher_indices(pclip_image_batcher_t bt);
PCLIP_API const pclip_image_failure *pclip_image_batcher_failures(pclip_image_batcher_t bt,
                                                                  int32_t *n);
/* Waits for the workers of a batch in flight, then frees everything. */
PCLIP_API void pclip_image_batcher_destroy(pclip_image_batcher_t bt);

/* ---- image files to embeddings ---- */

/* Zero means the default for every field. */
typedef struct pclip_embed_options {
    int32_t batch_size;               /* images per encoder run; 0: 32; 1..PCLIP_ENCODE_BATCH_MAX */
    int32_t threads;                  /* decode workers; 0: auto */
    pclip_preprocess_mode preprocess; /* 0: PCLIP_PREPROCESS_OPENAI */
    uint32_t flags;                   /* PCLIP_ENCODE_*; 0: raw projections */
    /* NULL: a file that fails stops the run. Else each file that cannot be
     * decoded or preprocessed is passed to skip(skip_user, failure), in
     * input order and before the rows of its batch, and left out: the rows
     * fn receives are then numbered among the embedded images only. */
    void (*skip)(void *skip_user, const pclip_image_failure *failure);
    void *skip_user;
} pclip_embed_options;

/* Called once per batch, in input order: rows [first, first + count),
 * [count, dim] floats, borrowed for the call; a non-OK return stops the run
 * and is returned. (With opt->skip, `first` counts embedded rows only.) */
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

/* ---- image index and search ---- */

/* An image index is a folder: index.sqlite (SQLite, WAL: the model's
 * identity, the dtype, and per file its path, size, modification time,
 * content hash and row), vectors.bin (a header, then one L2-normalised row
 * per image in the index's dtype; search maps it) and lock (held by the one
 * process that updates the index). */
typedef struct pclip_index *pclip_index_t;

typedef enum pclip_index_dtype {
    PCLIP_INDEX_DTYPE_DEFAULT = 0, /* the index's own; f32 for a new index */
    PCLIP_INDEX_F32 = 1,
    PCLIP_INDEX_F16 = 2, /* IEEE half, round to nearest even */
    PCLIP_INDEX_Q8 = 3,  /* int8 per element with one float scale per row (max |x| / 127) */
    PCLIP_INDEX_DTYPE_COUNT
} pclip_index_dtype;

/* "f32", "f16", "q8"; NULL for a value out of range. */
PCLIP_API const char *pclip_index_dtype_name(pclip_index_dtype dtype);

/* Progress of an update: done of total images to embed this run (unchanged
 * files are not counted), of which `skipped` could not be read. */
typedef struct pclip_index_progress {
    int64_t done, total, skipped;
    double seconds; /* since the embedding started */
} pclip_index_progress;
typedef void (*pclip_index_progress_fn)(void *user, const pclip_index_progress *p);
/* A file left out of the index, and why (borrowed for the call). */
typedef void (*pclip_index_skip_fn)(void *user, const char *path, const char *reason);

/* Zero means the default for every field. */
typedef struct pclip_index_options {
    pclip_index_dtype dtype;          /* a new index's dtype; an existing one must match */
    int32_t batch_size;               /* images per encoder run; 0: 32 */
    int32_t threads;                  /* decode workers; 0: auto */
    pclip_preprocess_mode preprocess; /* a new index's; an existing one must match */
    int32_t chunk;                    /* images per commit; 0: 1024 (PORTCLIP_INDEX_CHUNK) */
    int32_t shard_index, shard_count; /* keep only paths whose hash % count == index; 0 0: all */
    int32_t strict;                   /* non-zero: an unreadable file fails the update */
    pclip_index_progress_fn progress; /* at the start, after each encoder batch and commit */
    pclip_index_skip_fn skipped;      /* called for each file left out */
    void *user;                       /* passed to both */
} pclip_index_options;

/* What an update did. */
typedef struct pclip_index_report {
    int64_t added;     /* new files embedded */
    int64_t changed;   /* files whose content changed, embedded again */
    int64_t unchanged; /* same size and time, or same content hash */
    int64_t removed;   /* files in the index no longer among the inputs */
    int64_t skipped;   /* unreadable or not images */
    int64_t other_shards; /* inputs left to other shards */
    int64_t count;     /* files in the index afterwards */
} pclip_index_report;

/* Creates or updates the index folder `path` so that it holds exactly the
 * images among files[0..n) (regular files, in this order; a caller with
 * folders collects them first): new files and files whose size or time
 * changed and whose content hash differs are embedded (vision tower,
 * L2-normalised); files in the index that are not among the inputs are
 * dropped. Work is committed every `chunk` images: the vectors are written
 * and synced before the database transaction that refers to them commits, so
 * an interrupted update (a crash, kill -9, power loss) loses at most the
 * chunk in flight and the next update resumes. An index made with another
 * model, preprocessing or dtype is an error naming both. Another process
 * updating the same index is an IO error naming the lock (nothing is lost).
 * Unreadable files and files that are not images are left out and reported
 * through opt->skipped (with opt->strict they fail the update, after the
 * chunks before them were committed). report may be NULL. */
PCLIP_API pclip_status pclip_index_update(pclip_ctx_t ctx, const char *path, pclip_model_t model,
                                          pclip_backend_t b, const char *const *files, int64_t n,
                                          const pclip_index_options *opt,
                                          pclip_index_report *report);

/* Combines the indexes shards[0..n) (all made with the same model,
 * preprocessing and dtype, with no path in two of them) into a new index at
 * `out`, which must not exist; it appears complete or not at all. */
PCLIP_API pclip_status pclip_index_merge(pclip_ctx_t ctx, const char *out,
                                         const char *const *shards, int64_t n);

/* Opens an index for searching. A missing, corrupt or truncated database or
 * vector file is an error naming it; rows past what the database records
 * (an interrupted update) are ignored. The index is a snapshot: updates made
 * after the open are not seen. */
PCLIP_API pclip_status pclip_index_open(pclip_ctx_t ctx, const char *path, pclip_index_t *out);
PCLIP_API void pclip_index_close(pclip_index_t idx);

typedef struct pclip_index_info {
    int64_t count;                    /* images in the index */
    int32_t dim;                      /* embedding size */
    pclip_index_dtype dtype;
    pclip_preprocess_mode preprocess;
    const char *model_dir;            /* the model directory that built it, as given then */
    const char *model_id;             /* hex hash of the weights and preprocessing settings */
    const char *head_dir;             /* the MLP head it was made with, as given then; NULL: none */
} pclip_index_info;
/* Strings borrowed: valid until pclip_index_close(idx). */
PCLIP_API void pclip_index_get_info(pclip_index_t idx, pclip_index_info *out);

/* The identity of a model as an index records it: a hex hash of its weight
 * files, its MLP head's files when one is set (pclip_model_set_head), its
 * preprocessor_config.json settings and the preprocessing mode (at least 33
 * bytes in out). */
PCLIP_API pclip_status pclip_model_identity(pclip_model_t model, pclip_preprocess_mode mode,
                                            char out[33]);
/* OK when `model` is the one the index was made with, else INVALID_ARGUMENT
 * naming both models. */
PCLIP_API pclip_status pclip_index_check_model(pclip_index_t idx, pclip_model_t model);

/* One result: the file, its cosine similarity with the query, its row. */
typedef struct pclip_index_hit {
    const char *path; /* borrowed: valid until the next search on idx or its close */
    float score;
    int64_t row;
} pclip_index_hit;

/* Exact cosine top-k of each query queries[q, 0..dim) (L2-normalised by the
 * caller) against every image in the index: hits[q * k ...] receive
 * *n_hits = min(k, count) results per query, best first (ties: lower row
 * first). k < 1, an empty index or a dim that is not the index's are
 * INVALID_ARGUMENT. The CPU scans the mapped vectors once for all queries,
 * on all threads, converting f16 and q8 rows on the fly. */
PCLIP_API pclip_status pclip_index_search(pclip_index_t idx, const float *queries,
                                          int64_t n_queries, int32_t dim, int64_t k,
                                          pclip_index_hit *hits, int64_t *n_hits);
/* The same on backend b: NULL or the CPU backend scan as above; a GPU
 * backend (vulkan, opencl) computes the scores as one matrix product per
 * chunk of rows and picks each chunk's top k with a top-k op on the device
 * (f16 and q8 rows are converted to f32 on the host as each chunk is sent),
 * the chunks merged on the host. Results as the CPU scan's: scores equal up
 * to fp32 rounding (the sums run in another order), the same rows in the
 * same order except that rows whose scores differ by that rounding may
 * swap. A k (plus rows left dead by an interrupted update) over 256 is
 * searched by the CPU scan. The text and image searches below search on
 * the backend that encodes their queries. */
PCLIP_API pclip_status pclip_index_search_on(pclip_index_t idx, pclip_backend_t b,
                                             const float *queries, int64_t n_queries, int32_t dim,
                                             int64_t k, pclip_index_hit *hits, int64_t *n_hits);
/* The same for texts (the text tower) and for image files (the vision tower,
 * with the index's preprocessing); the model must be the index's
 * (pclip_index_check_model) and loaded with the parts the queries need. */
PCLIP_API pclip_status pclip_index_search_text(pclip_index_t idx, pclip_model_t model,
                                               pclip_backend_t b, const char *const *texts,
                                               int64_t n, int64_t k, pclip_index_hit *hits,
                                               int64_t *n_hits);
PCLIP_API pclip_status pclip_index_search_images(pclip_index_t idx, pclip_model_t model,
                                                 pclip_backend_t b, const char *const *paths,
                                                 int64_t n, int64_t k, pclip_index_hit *hits,
                                                 int64_t *n_hits);

/* ---- zero-shot classification and scoring ---- */

/* Classes as text embeddings, and images scored against them the way
 * Hugging Face's CLIPModel computes logits_per_image:
 *   logits[i, j] = exp(logit_scale) * cos(image i, class j)
 *   probs[i, :]  = softmax(logits[i, :])
 * classify makes one class per label from prompt templates; score makes one
 * class per text, used as it is. The class embeddings are computed once, at
 * create; the object borrows the model and backend (they must outlive it),
 * and like the model it is used by one thread at a time. */
typedef struct pclip_zeroshot *pclip_zeroshot_t;

/* The template classify uses when none is given: OpenAI CLIP's own prompt. */
#define PCLIP_ZEROSHOT_TEMPLATE_DEFAULT "a photo of a {}."

/* One class per label: each template with its "{}" replaced by the label
 * gives a prompt; the class embedding is the mean of the prompts'
 * L2-normalised text embeddings, normalised again (the prompt ensemble of
 * CLIP's ImageNet notebook). templates NULL with n_templates 0 means the
 * default template; "{}" alone uses the labels as they are. Refused with
 * INVALID_ARGUMENT and a message naming the label or template: no labels,
 * an empty or duplicate label, no templates, a template without "{}" or with
 * more than one. A prompt that is not UTF-8 is BAD_TEXT. */
PCLIP_API pclip_status pclip_zeroshot_create_labels(pclip_model_t model, pclip_backend_t b,
                                                    const char *const *labels, int32_t n_labels,
                                                    const char *const *templates,
                                                    int32_t n_templates, pclip_zeroshot_t *out);
/* One class per text, in order (duplicates and empty texts allowed; n >= 1). */
PCLIP_API pclip_status pclip_zeroshot_create_texts(pclip_model_t model, pclip_backend_t b,
                                                   const char *const *texts, int32_t n,
                                                   pclip_zeroshot_t *out);
PCLIP_API void pclip_zeroshot_destroy(pclip_zeroshot_t z);

PCLIP_API int32_t pclip_zeroshot_class_count(pclip_zeroshot_t z);
/* The classes' embeddings, [count, projection_dim], L2-normalised.
 * borrowed: valid until pclip_zeroshot_destroy(z) */
PCLIP_API const float *pclip_zeroshot_class_embeddings(pclip_zeroshot_t z);

/* logits[n, count] and (when not NULL) probs[n, count] for n image
 * embeddings image_embeds[n, projection_dim] (normalised here: raw
 * projections or normalised rows give the same result). */
PCLIP_API pclip_status pclip_zeroshot_logits(pclip_zeroshot_t z, const float *image_embeds,
                                             int64_t n, float *logits, float *probs);

/* Called once per embedded image, in input order: its index in paths, and
 * its logits and probs ([count] each, borrowed for the call). A non-OK return
 * stops the run and is returned. */
typedef pclip_status (*pclip_zeroshot_fn)(void *user, int64_t index, int32_t count,
                                          const float *logits, const float *probs);

/* Embeds the image files paths[0..n) (pclip_embed_image_files with opt, its
 * flags ignored) and calls fn for each. With opt->skip, bad files go to it
 * and get no call of fn; without, the first bad file stops the run. */
PCLIP_API pclip_status pclip_zeroshot_image_files(pclip_zeroshot_t z, const char *const *paths,
                                                  int64_t n, const pclip_embed_options *opt,
                                                  pclip_zeroshot_fn fn, void *user);

/* order[0..count) = the class indices by probs (or logits) descending; equal
 * values keep index order. */
PCLIP_API void pclip_zeroshot_rank(const float *probs, int32_t count, int32_t *order);

/* ---- text lists on disk ---- */

/* Writes lines[0..n), each followed by "\n", to `path` atomically (temp
 * file, then rename: on failure `path` is left as it was). A line holding
 * "\n" or "\r" is refused (INVALID_ARGUMENT), since it could not be read
 * back as one line. */
PCLIP_API pclip_status pclip_lines_write(pclip_ctx_t ctx, const char *path,
                                         const char *const *lines, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* PORTCLIP_APPS_H */
