/* The image index's private parts shared by index.c (the database, the
 * vector file, update, merge) and index_search.c (the scan and top-k): the
 * vector file's layout, row encodings and the index handle. */
#ifndef PCLIP_APPS_INDEX_H
#define PCLIP_APPS_INDEX_H

#include <sqlite3.h>

#include "internal.h"
#include "io/safetensors.h" /* pclip__f16_to_f32 */

/* ---- files inside an index folder ---- */

#define PCLIP__INDEX_DB "index.sqlite"
#define PCLIP__INDEX_VEC "vectors.bin"
#define PCLIP__INDEX_VEC_NEW "vectors.bin.new" /* a compaction in progress */
#define PCLIP__INDEX_LOCK "lock"
#define PCLIP__INDEX_FORMAT 1

/* ---- vectors.bin: a header, then `rows` rows of row_bytes each ---- */

#define PCLIP__VEC_MAGIC "PCLIPVEC"
#define PCLIP__VEC_HEADER 64
/* The vector file's own layout version: 2 since q8 rows carry one scale per
 * block of PCLIP__Q8_BLOCK dimensions. Format 1 files of f32 and f16 have the
 * same rows and are read as they are; format 1 q8 files are refused. */
#define PCLIP__VEC_VERSION 2
typedef struct pclip__vec_header {
    char magic[8];    /* PCLIP__VEC_MAGIC */
    uint32_t version; /* PCLIP__VEC_VERSION */
    uint32_t dtype;   /* pclip_index_dtype */
    uint32_t dim;
    uint32_t row_bytes;
    uint64_t generation; /* equals the database's: which vector file it refers to */
    uint8_t reserved[32];
} pclip__vec_header;
_Static_assert(sizeof(pclip__vec_header) == PCLIP__VEC_HEADER, "vector header is 64 bytes");

/* q8 rows: the dimensions in blocks of PCLIP__Q8_BLOCK (the last one may be
 * shorter), each block x ~ scale * q with q in -127..127 and its own float
 * scale (ggml's Q8_0 idea, with f32 scales): first the ceil(dim / 32) scales,
 * then the dim int8 values. */
#define PCLIP__Q8_BLOCK 32
#define PCLIP__Q8_BLOCKS(dim) (((dim) + PCLIP__Q8_BLOCK - 1) / PCLIP__Q8_BLOCK)

/* Bytes of one row: f32 4 dim, f16 2 dim, q8 4 ceil(dim / 32) + dim. */
size_t pclip__index_row_bytes(pclip_index_dtype dt, int32_t dim);
/* Encodes one float row into the dtype's bytes. */
void pclip__index_encode_row(pclip_index_dtype dt, const float *x, int32_t dim, uint8_t *out);
/* Decodes one stored row back to floats. */
void pclip__index_decode_row(pclip_index_dtype dt, const uint8_t *row, int32_t dim, float *out);
/* IEEE half, round to nearest even (the way back: io/safetensors.h) */
uint16_t pclip__f32_to_f16(float f);

/* A fast 64-bit hash of bytes, chained through `seed` (content hashes and
 * the model identity). Not cryptographic: it tells changed files apart. */
uint64_t pclip__hash64(const void *data, size_t n, uint64_t seed);

/* ---- the handle ---- */

struct pclip_index {
    pclip_ctx_t ctx; /* borrowed */
    char *dir;
    sqlite3 *db;
    pclip__mmap vec;          /* vectors.bin, mapped */
    const uint8_t *rows_data; /* vec.data + header */
    int64_t rows;             /* rows the database records (live and dead) */
    int64_t count;            /* files in the index (live rows) */
    int32_t dim;
    size_t row_bytes;
    pclip_index_dtype dtype;
    pclip_preprocess_mode preprocess;
    char *model_dir;
    char *head_dir; /* the MLP head it was made with, NULL for none */
    char model_id[33];
    char **hit_paths; /* the last search's paths, owned */
    int64_t n_hit_paths;
    sqlite3_stmt *path_of_row;
    /* the model pclip_index_check_model last found to be the index's, and
     * its mapped weights: the same pair is not hashed again */
    const struct pclip_model *checked_model;
    const void *checked_weights;
    uint64_t checked_head; /* the head's digest at that check, 0 for none */
};

/* Looks up the path of `row` (NULL for a dead row); the string is a copy
 * owned by the caller (pclip__free), or NULL with *st set on failure. */
char *pclip__index_path_of_row(pclip_index_t idx, int64_t row, pclip_status *st);

/* One result of the scan. */
typedef struct pclip__index_cand {
    float score;
    int64_t row;
} pclip__index_cand;

/* The scan behind every search (index_search.c): the top kk (1..n) rows of
 * rows[0..n) (row_bytes each, dtype dt) for each of the nq queries
 * queries[q, 0..dim), best first (ties: lower row), into out[q * kk ...].
 * Exposed for the benchmark, which scans vectors that are not on disk. */
pclip_status pclip__index_scan(pclip_ctx_t ctx, const uint8_t *rows, int64_t n, size_t row_bytes,
                               pclip_index_dtype dt, int32_t dim, const float *queries, int64_t nq,
                               int64_t kk, pclip__index_cand *out);

/* The same as graph ops on backend b (index_gpu.c): a matmul and a topk per
 * chunk of rows, the chunks merged on the host. Only for kk within topk's
 * limit (pclip__index_graph_search_fits). chunk_rows > 0 caps the rows per
 * chunk (tests: many chunks from few rows); 0 sizes chunks by memory. */
bool pclip__index_graph_search_fits(int64_t kk);
pclip_status pclip__index_graph_search(pclip_ctx_t ctx, pclip_backend_t b, const uint8_t *rows,
                                       int64_t n, size_t row_bytes, pclip_index_dtype dt,
                                       int32_t dim, const float *queries, int64_t nq, int64_t kk,
                                       int64_t chunk_rows, pclip__index_cand *out);

/* Frees the last search's paths. */
void pclip__index_free_hits(struct pclip_index *x);

#endif
