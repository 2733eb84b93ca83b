/* Pooled features of the frozen encoders for a dataset, computed once and
 * cached on disk: what projection-head training reads every epoch instead
 * of running the encoders again.
 *
 * The features are the towers' pooled outputs before the projections
 * (PCLIP_ENCODE_POOLED): vision [image, vision hidden_size] (class token
 * after post_layernorm), text [caption, text hidden_size] (the end-of-text
 * token after final_layer_norm). Images go through the library's threaded
 * batch pipeline (pclip_embed_image_files), texts through the model's
 * tokenizer, both on the caller's backend. */
#ifndef PCLIP_TRAIN_FEATURES_H
#define PCLIP_TRAIN_FEATURES_H

#include "train/data.h"

/* ---- the cache file ---- */

/* "<cache_dir>/features-<key>.bin": a 128-byte header, then the sections
 * (all little-endian, as the host writes them):
 *   image_row   i64 [n_images]            row of each dataset image, -1 skipped
 *   skipped     skip_bytes                 per skipped image: i64 image,
 *                                          u32 length, the message's bytes
 *   image feats f32 [image_rows, dv]
 *   text feats  f32 [text_rows, dt]        the kept pairs, in dataset order
 * The header's own hash and a hash of every section are checked before
 * anything is used; a file that fails any check is ignored and rebuilt. */
#define PCLIP__FEATURES_MAGIC "PCLIPFTC"
#define PCLIP__FEATURES_VERSION 1
#define PCLIP__FEATURES_HEADER 128
/* a skipped image's message in the cache */
#define PCLIP__FEATURES_LIMIT_MESSAGE 4096

typedef struct pclip__features_header {
    char magic[8];         /* PCLIP__FEATURES_MAGIC */
    uint32_t version;      /* PCLIP__FEATURES_VERSION */
    uint32_t header_bytes; /* PCLIP__FEATURES_HEADER */
    char key[32];          /* hex, as in the file name */
    int64_t n_images;      /* the dataset's images */
    int64_t n_pairs;       /* the dataset's pairs */
    int64_t image_rows;    /* images read */
    int64_t text_rows;     /* kept pairs */
    int32_t dv, dt;
    int64_t n_skipped;
    uint64_t skip_bytes;
    uint64_t payload_hash; /* the sections, in order, chained through pclip__hash64 */
    uint8_t reserved[8];
    uint64_t header_hash;  /* pclip__hash64 of the 120 bytes before it */
} pclip__features_header;
_Static_assert(sizeof(pclip__features_header) == PCLIP__FEATURES_HEADER,
               "the features header is 128 bytes");

/* ---- computing ---- */

/* Progress: `done` of `total` items of the phase `what` ("images", then
 * "texts"); called with done 0 at the start of a phase, after each encoder
 * batch, and with done == total at its end. Not called on a cache hit. */
typedef void (*pclip__features_progress_fn)(void *user, int64_t done, int64_t total,
                                            const char *what);

/* Zero means the default for every field. */
typedef struct pclip__features_options {
    int32_t batch_size;               /* rows per encoder run; 0: 32; 1..PCLIP_ENCODE_BATCH_MAX */
    int32_t threads;                  /* image decode workers; 0: auto */
    pclip_preprocess_mode preprocess; /* 0: PCLIP_PREPROCESS_OPENAI; part of the cache key */
    int32_t strict;                   /* non-zero: a missing or unreadable image fails the call */
    pclip__features_progress_fn progress; /* may be NULL */
    void *user;                       /* passed to progress */
} pclip__features_options;

/* An image left out, with its pairs. */
typedef struct pclip__feature_skip {
    int64_t image;   /* index into the dataset's images */
    const char *path;    /* the resolved path; owned by the result */
    const char *message; /* names the file and the reason; owned by the result */
    int64_t line;    /* the data file's first line that uses the image */
    int64_t pairs;   /* pairs left out with it */
} pclip__feature_skip;

typedef struct pclip__features {
    int32_t dv, dt;      /* vision and text hidden_size */
    int64_t n_images;    /* rows of image_feats: the dataset's images that were read */
    int64_t n_pairs;     /* kept pairs (their image was read) = rows of text_feats */
    float *image_feats;  /* [n_images, dv] */
    float *text_feats;   /* [n_pairs, dt], in dataset order */
    int64_t *pair_image; /* [n_pairs]: each kept pair's row of image_feats */
    int64_t *pair_text;  /* [n_pairs]: each kept pair's row of text_feats (its own index) */
    int64_t *pair_source;  /* [n_pairs]: the pair's index in the dataset */
    int64_t *image_source; /* [n_images]: each row's image index in the dataset */
    int64_t n_dataset_images;
    int64_t *image_row;  /* [n_dataset_images]: each dataset image's row, -1 when skipped */
    int64_t n_skipped;
    pclip__feature_skip *skipped; /* [n_skipped], in dataset image order */
    int32_t cache_hit;   /* 1: read from the cache file, the encoders did not run */
    int32_t cache_written; /* 1: computed and written to the cache file */
    char *cache_path;    /* NULL without a cache folder */
    /* "" when the cache was hit or written; else why not: an existing file
     * that was ignored (corrupt, short, another key) and rebuilt, or a write
     * that failed (the features are still returned) */
    char cache_note[512];
    char key[33];        /* the cache key, hex */
    char *strings;       /* (the skipped paths and messages) */
} pclip__features;

/* Computes the pooled features of ds's images and captions with `model`'s
 * frozen encoders on `b` (its precision counts), or reads them from the
 * cache in `cache_dir` (created, with its parents, when missing; NULL: no
 * cache).
 *
 * The cache key is a hash of: the model's identity (pclip_model_identity:
 * its weight files, config and preprocessing, with opts->preprocess), the
 * backend's precision, the data file's pairs (each caption's bytes and token
 * ids, and which image it goes with) and each image's canonical path
 * (realpath: the same files reached from another working folder give the
 * same key), size and modification time in nanoseconds (or why it could not
 * be read). Image
 * contents are not hashed: a hit costs one stat per image, and an image
 * rewritten with the same size within the same nanosecond is not a concern.
 * The backend and batch size are not part of the key: the features are the
 * model's, equal across backends up to the kernels' rounding.
 *
 * An image that does not exist or cannot be decoded is left out with its
 * pairs and listed in `skipped` (with opts->strict it fails the call, naming
 * the file). Every image failing is an error (IO). A cache file that is
 * missing, short, corrupt or of another key is rebuilt (and written atomically:
 * temp file, sync, rename); a cache folder that cannot be created is an
 * error; a failed cache write is not (see cache_note). On failure *out is
 * left as it was. The library never prints; progress goes to opts->progress. */
pclip_status pclip__features_compute(pclip_model_t model, pclip_backend_t b,
                                     const pclip__dataset *ds, const char *cache_dir,
                                     const pclip__features_options *opts, pclip__features **out);
void pclip__features_destroy(pclip__features *f);

/* ---- train / validation split ---- */

typedef struct pclip__split {
    int64_t n_train, n_val;  /* pairs */
    int64_t *train, *val;    /* indices of kept pairs (0..f->n_pairs), ascending */
    int64_t n_val_images;    /* distinct images on the validation side */
} pclip__split;

/* Splits the kept pairs of f into training and validation BY IMAGE: all
 * captions of one image land on the same side. The distinct images are
 * shuffled by a Fisher-Yates pass driven by splitmix64(seed), and the first
 * round(val_fraction * images) of them (at least 1 and at most images - 1
 * when val_fraction > 0) go to validation. The same f, fraction and seed
 * give the same split on every machine. val_fraction 0: everything trains.
 * val_fraction outside [0, 1), or > 0 with fewer than 2 images, is
 * INVALID_ARGUMENT. */
pclip_status pclip__features_split(pclip_ctx_t ctx, const pclip__features *f, double val_fraction,
                                   uint64_t seed, pclip__split **out);
void pclip__split_destroy(pclip__split *s);

#endif /* PCLIP_TRAIN_FEATURES_H */
