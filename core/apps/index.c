/* The image index on disk: the SQLite database (the model's identity, the
 * dtype, one row per file), the vector file beside it, creating and
 * updating an index in crash-safe chunks, compaction, merging shards, and
 * opening an index for search.
 *
 * Crash safety rests on one order: vectors are appended to vectors.bin and
 * synced before the database transaction that refers to them commits, and
 * the database's `rows` says how many rows of the file are real. Rows past it
 * (an interrupted chunk) are cut off by the next update and never read by a
 * search. A compaction writes vectors.bin.new under a new generation, commits
 * the renumbered rows with that generation, then renames the file into
 * place; whoever finds the generations disagreeing finishes the rename.
 *
 * It does not scan vectors: index_search.c does. */
#define _GNU_SOURCE /* flock, O_CLOEXEC */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "index.h"
#include "model/model.h"
#include "model/head.h"

/* ---- dtypes and row encodings ---- */

static const char *const dtype_names[PCLIP_INDEX_DTYPE_COUNT] = {[PCLIP_INDEX_DTYPE_DEFAULT] =
                                                                     "default",
                                                                 [PCLIP_INDEX_F32] = "f32",
                                                                 [PCLIP_INDEX_F16] = "f16",
                                                                 [PCLIP_INDEX_Q8] = "q8"};

const char *pclip_index_dtype_name(pclip_index_dtype dt) {
    return dt > PCLIP_INDEX_DTYPE_DEFAULT && dt < PCLIP_INDEX_DTYPE_COUNT ? dtype_names[dt] : NULL;
}

size_t pclip__index_row_bytes(pclip_index_dtype dt, int32_t dim) {
    switch (dt) {
    case PCLIP_INDEX_F32: return (size_t)dim * 4;
    case PCLIP_INDEX_F16: return (size_t)dim * 2;
    case PCLIP_INDEX_Q8: return 4 * (size_t)PCLIP__Q8_BLOCKS(dim) + (size_t)dim;
    default: return 0;
    }
}

uint16_t pclip__f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u) /* Inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0));
    if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: Inf */
    if (mag < 0x38800000u) { /* subnormal half (or zero): round to nearest even */
        if (mag < 0x33000000u) return (uint16_t)sign;
        uint32_t m = (mag & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(mag >> 23); /* units of 2^-24, the smallest subnormal */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = mag - 0x38000000u; /* rebias 127 -> 15 */
    uint32_t h = r >> 13, rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

void pclip__index_encode_row(pclip_index_dtype dt, const float *x, int32_t dim, uint8_t *out) {
    if (dt == PCLIP_INDEX_F32) {
        memcpy(out, x, (size_t)dim * 4);
    } else if (dt == PCLIP_INDEX_F16) {
        for (int32_t i = 0; i < dim; i++) {
            uint16_t h = pclip__f32_to_f16(x[i]);
            memcpy(out + 2 * (size_t)i, &h, 2);
        }
    } else { /* q8: per block of 32, x ~ scale * q, q in -127..127 */
        int32_t nb = PCLIP__Q8_BLOCKS(dim);
        int8_t *v = (int8_t *)(out + 4 * (size_t)nb);
        for (int32_t b = 0; b < nb; b++) {
            int32_t lo = b * PCLIP__Q8_BLOCK;
            int32_t hi = lo + PCLIP__Q8_BLOCK < dim ? lo + PCLIP__Q8_BLOCK : dim;
            float amax = 0.0f;
            for (int32_t i = lo; i < hi; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
            float step = amax > 0.0f && isfinite(amax) ? amax / 127.0f : 0.0f;
            double qq = 0, xq = 0;
            for (int32_t i = lo; i < hi; i++) {
                float q = step > 0.0f ? nearbyintf(x[i] / step) : 0.0f;
                q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
                v[i] = (int8_t)q;
                qq += (double)q * q;
                xq += (double)x[i] * q;
            }
            /* the stored scale is the least-squares one, (x . q) / (q . q): the
             * dequantised block is x's projection onto q, closer than step * q */
            float scale = qq > 0 ? (float)(xq / qq) : 0.0f;
            memcpy(out + 4 * (size_t)b, &scale, 4);
        }
    }
}

void pclip__index_decode_row(pclip_index_dtype dt, const uint8_t *row, int32_t dim, float *out) {
    if (dt == PCLIP_INDEX_F32) {
        memcpy(out, row, (size_t)dim * 4);
    } else if (dt == PCLIP_INDEX_F16) {
        for (int32_t i = 0; i < dim; i++) {
            uint16_t h;
            memcpy(&h, row + 2 * (size_t)i, 2);
            out[i] = pclip__f16_to_f32(h);
        }
    } else {
        int32_t nb = PCLIP__Q8_BLOCKS(dim);
        const int8_t *v = (const int8_t *)(row + 4 * (size_t)nb);
        for (int32_t i = 0; i < dim; i++) {
            float scale;
            memcpy(&scale, row + 4 * (size_t)(i / PCLIP__Q8_BLOCK), 4);
            out[i] = scale * (float)v[i];
        }
    }
}

/* ---- hashing ---- */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t lane(uint64_t acc, uint64_t w) { return rotl64(acc + w * P2, 31) * P1; }
static inline uint64_t load64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* xxHash64's structure (four lanes of 8 bytes, then a tail and an avalanche);
 * the constants are xxHash's, the output is not meant to equal it. */
uint64_t pclip__hash64(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data, *end = p + n;
    uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;
    while ((size_t)(end - p) >= 32) {
        a = lane(a, load64(p));
        b = lane(b, load64(p + 8));
        c = lane(c, load64(p + 16));
        d = lane(d, load64(p + 24));
        p += 32;
    }
    uint64_t h = rotl64(a, 1) + rotl64(b, 7) + rotl64(c, 12) + rotl64(d, 18) + (uint64_t)n;
    while ((size_t)(end - p) >= 8) {
        h ^= lane(0, load64(p));
        h = rotl64(h, 27) * P1 + P3;
        p += 8;
    }
    while (p < end) {
        h ^= (uint64_t)(*p++) * P3;
        h = rotl64(h, 11) * P1;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

static void hex64(uint64_t v, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)v); }

/* ---- the model's identity ---- */

pclip_status pclip_model_identity(pclip_model_t m, pclip_preprocess_mode mode, char out[33]) {
    if (!m || !out) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (m->n_shards == 0)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "model '%s' was loaded without its weights: no identity", m->dir);
    /* the weight files' bytes, header included (names, dtypes, shapes), in
     * 4 MiB blocks chained through the seed. Read with read(), not through
     * the map: the loader gives the map's pages back once the weights are
     * converted, and faulting 100s of MB in again page by page cost ~1 GB/s
     * (measured), read() from the page cache several times that. */
    enum { BLOCK = 4 << 20 };
    uint8_t *buf = pclip__malloc(BLOCK);
    if (!buf)
        return pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "model identity: out of memory");
    uint64_t hw = 0;
    for (size_t i = 0; i < m->n_shards; i++) {
        const char *path = m->shards[i]->path;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            pclip__free(buf);
            return pclip__err(m->ctx, PCLIP_STATUS_IO, "model identity: cannot open '%s': %s", path,
                              strerror(errno));
        }
        for (;;) {
            size_t got = 0;
            ssize_t r = 0;
            while (got < BLOCK && (r = read(fd, buf + got, BLOCK - got)) != 0) {
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) break;
                got += (size_t)r;
            }
            if (r < 0) {
                int e = errno;
                close(fd);
                pclip__free(buf);
                return pclip__err(m->ctx, PCLIP_STATUS_IO, "model identity: reading '%s': %s", path,
                                  strerror(e));
            }
            if (got == 0) break;
            hw = pclip__hash64(buf, got, hw);
            if (got < BLOCK) break;
        }
        close(fd);
    }
    pclip__free(buf);
    /* an MLP head replaces the projections: its files' bytes count too */
    if (m->head) hw = pclip__hash64(&m->head->digest, sizeof m->head->digest, hw);
    /* every preprocessing setting, field by field (no padding bytes) */
    const pclip_image_config *c = &m->image_config;
    int64_t ints[] = {c->shortest_edge,        c->resize_height, c->resize_width,
                      c->crop_height,          c->crop_width,    c->do_resize,
                      c->do_center_crop,       c->do_normalize,  c->do_rescale,
                      c->do_convert_rgb,       c->resample,      mode,
                      m->config.projection_dim};
    double reals[] = {c->rescale_factor, c->mean[0], c->mean[1], c->mean[2],
                      c->std[0],         c->std[1],  c->std[2]};
    uint64_t hc = pclip__hash64(ints, sizeof ints, hw);
    hc = pclip__hash64(reals, sizeof reals, hc);
    /* config.json's settings that change the numbers (activation, eps, sizes) */
    const pclip_tower_config *tw[2] = {&m->config.text, &m->config.vision};
    for (int t = 0; t < 2; t++) {
        const pclip_tower_config *x = tw[t];
        int64_t ti[] = {x->hidden_size,
                        x->intermediate_size,
                        x->num_layers,
                        x->num_heads,
                        x->act,
                        x->vocab_size,
                        x->max_position_embeddings,
                        x->bos_token_id,
                        x->eos_token_id,
                        x->pad_token_id,
                        x->image_size,
                        x->patch_size,
                        x->num_channels};
        double te = x->layer_norm_eps;
        hc = pclip__hash64(ti, sizeof ti, hc);
        hc = pclip__hash64(&te, sizeof te, hc);
    }
    hex64(hw, out);
    hex64(hc, out + 16);
    return PCLIP_STATUS_OK;
}

/* ---- SQLite ---- */

static pclip_status db_status(int rc) {
    switch (rc & 0xff) {
    case SQLITE_NOMEM: return PCLIP_STATUS_OUT_OF_MEMORY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT: return PCLIP_STATUS_BAD_FORMAT;
    case SQLITE_CANTOPEN: return PCLIP_STATUS_NOT_FOUND;
    default: return PCLIP_STATUS_IO;
    }
}

static pclip_status db_err(pclip_ctx_t ctx, sqlite3 *db, const char *dir, const char *what) {
    int rc = db ? sqlite3_extended_errcode(db) : SQLITE_NOMEM;
    return pclip__err(ctx, db_status(rc), "index '%s': database %s: %s: %s", dir, PCLIP__INDEX_DB,
                      what, db ? sqlite3_errmsg(db) : "out of memory");
}

static pclip_status db_exec(pclip_ctx_t ctx, sqlite3 *db, const char *dir, const char *sql) {
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) return db_err(ctx, db, dir, sql);
    return PCLIP_STATUS_OK;
}

static pclip_status db_prepare(pclip_ctx_t ctx, sqlite3 *db, const char *dir, const char *sql,
                               sqlite3_stmt **out) {
    if (sqlite3_prepare_v2(db, sql, -1, out, NULL) != SQLITE_OK) return db_err(ctx, db, dir, sql);
    return PCLIP_STATUS_OK;
}

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value NOT NULL);"
    "CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL, row INTEGER NOT NULL UNIQUE);";

/* Opens dir/index.sqlite: read-only (it must exist) or read-write (created). */
static pclip_status db_open(pclip_ctx_t ctx, const char *dir, bool write, sqlite3 **out) {
    char *path = pclip__path_join(dir, PCLIP__INDEX_DB);
    if (!path) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
    if (!write && !pclip__file_exists(path)) {
        pclip__free(path);
        struct stat sb;
        if (stat(dir, &sb) != 0)
            return pclip__err(ctx, PCLIP_STATUS_NOT_FOUND, "index '%s': %s", dir, strerror(errno));
        return pclip__err(ctx, PCLIP_STATUS_NOT_FOUND,
                          "index '%s': no %s inside (not a portclip index)", dir, PCLIP__INDEX_DB);
    }
    sqlite3 *db = NULL;
    int flags = write ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    pclip__free(path);
    if (rc != SQLITE_OK) {
        pclip_status st = db_err(ctx, db, dir, "cannot open");
        sqlite3_close(db);
        return st;
    }
    sqlite3_busy_timeout(db, 10000);
    pclip_status st = PCLIP_STATUS_OK;
    if (write) st = db_exec(ctx, db, dir, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    if (!st && write) st = db_exec(ctx, db, dir, schema);
    if (st) {
        sqlite3_close(db);
        return st;
    }
    *out = db;
    return PCLIP_STATUS_OK;
}

/* meta values: *found false when the key is absent */
static pclip_status meta_get(pclip_ctx_t ctx, sqlite3 *db, const char *dir, const char *key,
                             int64_t *ival, char **sval, bool *found) {
    sqlite3_stmt *s;
    pclip_status st = db_prepare(ctx, db, dir, "SELECT value FROM meta WHERE key=?", &s);
    if (st) return st;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) {
        if (ival) *ival = sqlite3_column_int64(s, 0);
        if (sval) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            if (!(*sval = pclip__strdup(t ? t : "")))
                st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
        }
    } else if (rc != SQLITE_DONE) {
        st = db_err(ctx, db, dir, "reading the metadata");
    }
    sqlite3_finalize(s);
    return st;
}

static pclip_status meta_need_int(pclip_ctx_t ctx, sqlite3 *db, const char *dir, const char *key,
                                  int64_t lo, int64_t hi, int64_t *out) {
    bool found;
    pclip_status st = meta_get(ctx, db, dir, key, out, NULL, &found);
    if (st) return st;
    if (!found || *out < lo || *out > hi)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "index '%s': database %s: metadata '%s' is %s (expected %lld..%lld)", dir,
                          PCLIP__INDEX_DB, key, found ? "out of range" : "missing", (long long)lo,
                          (long long)hi);
    return PCLIP_STATUS_OK;
}

static pclip_status meta_set(pclip_ctx_t ctx, sqlite3 *db, const char *dir, const char *key,
                             const char *text, int64_t ival) {
    sqlite3_stmt *s;
    pclip_status st =
        db_prepare(ctx, db, dir, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", &s);
    if (st) return st;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (text)
        sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(s, 2, ival);
    if (sqlite3_step(s) != SQLITE_DONE) st = db_err(ctx, db, dir, "writing the metadata");
    sqlite3_finalize(s);
    return st;
}

static pclip_status count_files(pclip_ctx_t ctx, sqlite3 *db, const char *dir, int64_t *out) {
    sqlite3_stmt *s;
    pclip_status st = db_prepare(ctx, db, dir, "SELECT count(*) FROM files", &s);
    if (st) return st;
    if (sqlite3_step(s) == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    else
        st = db_err(ctx, db, dir, "counting the files");
    sqlite3_finalize(s);
    return st;
}

/* The metadata every index has, read and checked. */
typedef struct index_meta {
    int64_t dtype, dim, preprocess, generation, rows;
    char *model_id, *model_dir;
    char *head_dir; /* the MLP head it was made with, NULL for none */
} index_meta;

static void meta_free(index_meta *m) {
    pclip__free(m->model_id);
    pclip__free(m->model_dir);
    pclip__free(m->head_dir);
    memset(m, 0, sizeof *m);
}

static pclip_status meta_read(pclip_ctx_t ctx, sqlite3 *db, const char *dir, index_meta *m) {
    int64_t format;
    bool found;
    pclip_status st =
        meta_need_int(ctx, db, dir, "format", PCLIP__INDEX_FORMAT, PCLIP__INDEX_FORMAT, &format);
    if (!st) st = meta_need_int(ctx, db, dir, "dtype", 1, PCLIP_INDEX_DTYPE_COUNT - 1, &m->dtype);
    if (!st) st = meta_need_int(ctx, db, dir, "dim", 1, 1 << 16, &m->dim);
    if (!st)
        st = meta_need_int(ctx, db, dir, "preprocess", 0, PCLIP_PREPROCESS_COUNT - 1,
                           &m->preprocess);
    if (!st) st = meta_need_int(ctx, db, dir, "generation", 1, INT64_MAX, &m->generation);
    if (!st) st = meta_need_int(ctx, db, dir, "rows", 0, INT64_MAX / 2, &m->rows);
    if (!st) st = meta_get(ctx, db, dir, "model_id", NULL, &m->model_id, &found);
    if (!st && (!found || strlen(m->model_id) != 32))
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "index '%s': database %s: bad model_id", dir,
                        PCLIP__INDEX_DB);
    if (!st) st = meta_get(ctx, db, dir, "model_dir", NULL, &m->model_dir, &found);
    if (!st && !found)
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "index '%s': database %s: no model_dir", dir,
                        PCLIP__INDEX_DB);
    if (!st) st = meta_get(ctx, db, dir, "head_dir", NULL, &m->head_dir, &found);
    if (st) meta_free(m);
    return st;
}

/* ---- the vector file ---- */

static pclip_status write_all(pclip_ctx_t ctx, int fd, const void *data, size_t n, uint64_t off,
                              const char *path) {
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return pclip__err(ctx, PCLIP_STATUS_IO, "'%s': write failed: %s", path,
                              w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return PCLIP_STATUS_OK;
}

static pclip_status sync_fd(pclip_ctx_t ctx, int fd, const char *path) {
    if (fsync(fd) != 0)
        return pclip__err(ctx, PCLIP_STATUS_IO, "'%s': fsync failed: %s", path, strerror(errno));
    return PCLIP_STATUS_OK;
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static void header_make(pclip__vec_header *h, pclip_index_dtype dt, int32_t dim, uint64_t gen) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, PCLIP__VEC_MAGIC, 8);
    h->version = PCLIP__VEC_VERSION;
    h->dtype = (uint32_t)dt;
    h->dim = (uint32_t)dim;
    h->row_bytes = (uint32_t)pclip__index_row_bytes(dt, dim);
    h->generation = gen;
}

/* Checks a vector file's header against the database's metadata. */
static pclip_status header_check(pclip_ctx_t ctx, const char *dir, const char *name,
                                 const uint8_t *data, size_t size, const index_meta *m,
                                 bool *gen_ok) {
    pclip__vec_header h;
    if (size < sizeof h)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "index '%s': vector file %s is truncated (%zu bytes, no header)", dir,
                          name, size);
    memcpy(&h, data, sizeof h);
    if (memcmp(h.magic, PCLIP__VEC_MAGIC, 8) == 0 && h.version == 1 && h.dtype == PCLIP_INDEX_Q8)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "index '%s': vector file %s holds q8 rows of format 1 (one scale per "
                          "row), which this version no longer reads (q8 now has one scale per "
                          "block of %d dimensions): rebuild the index (remove the folder and "
                          "run portclip index again)",
                          dir, name, PCLIP__Q8_BLOCK);
    /* format 1 f32 and f16 rows are those of format 2 */
    if (memcmp(h.magic, PCLIP__VEC_MAGIC, 8) != 0 ||
        (h.version != PCLIP__VEC_VERSION && h.version != 1))
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "index '%s': vector file %s is not a portclip vector file (format %u)",
                          dir, name, (unsigned)h.version);
    if ((int64_t)h.dtype != m->dtype || (int64_t)h.dim != m->dim ||
        h.row_bytes != pclip__index_row_bytes((pclip_index_dtype)m->dtype, (int32_t)m->dim))
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "index '%s': vector file %s holds dtype %u dim %u, the database says "
                          "%s dim %lld",
                          dir, name, (unsigned)h.dtype, (unsigned)h.dim,
                          pclip_index_dtype_name((pclip_index_dtype)m->dtype), (long long)m->dim);
    *gen_ok = h.generation == (uint64_t)m->generation;
    return PCLIP_STATUS_OK;
}

static pclip_status rows_fit(pclip_ctx_t ctx, const char *dir, const char *name, size_t size,
                             const index_meta *m, size_t row_bytes) {
    size_t need;
    if (!pclip__mul_size((size_t)m->rows, row_bytes, &need) ||
        need > SIZE_MAX - PCLIP__VEC_HEADER || size < need + PCLIP__VEC_HEADER)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "index '%s': vector file %s is truncated: it holds %zu rows, the "
                          "database records %lld",
                          dir, name, (size - PCLIP__VEC_HEADER) / row_bytes, (long long)m->rows);
    return PCLIP_STATUS_OK;
}

/* Reads the first bytes of dir/name into h; false when it cannot. */
static bool peek_header(const char *dir, const char *name, pclip__vec_header *h) {
    char *p = pclip__path_join(dir, name);
    if (!p) return false;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    pclip__free(p);
    if (fd < 0) return false;
    bool ok = pread(fd, h, sizeof *h, 0) == (ssize_t)sizeof *h;
    close(fd);
    return ok;
}

/* The writer's view: the generations disagree after a compaction that
 * committed but did not rename; finish it. A stale vectors.bin.new (a
 * compaction that did not commit) is removed. */
static pclip_status vec_recover(pclip_ctx_t ctx, const char *dir, const index_meta *m) {
    char *vec = pclip__path_join(dir, PCLIP__INDEX_VEC);
    char *nw = pclip__path_join(dir, PCLIP__INDEX_VEC_NEW);
    pclip_status st = PCLIP_STATUS_OK;
    if (!vec || !nw) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
        goto done;
    }
    pclip__vec_header h;
    if (peek_header(dir, PCLIP__INDEX_VEC_NEW, &h)) {
        pclip__vec_header cur;
        bool cur_ok =
            peek_header(dir, PCLIP__INDEX_VEC, &cur) && cur.generation == (uint64_t)m->generation;
        if (!cur_ok && h.generation == (uint64_t)m->generation) {
            if (rename(nw, vec) != 0)
                st = pclip__err(ctx, PCLIP_STATUS_IO, "index '%s': cannot rename %s: %s", dir,
                                PCLIP__INDEX_VEC_NEW, strerror(errno));
            sync_dir(dir);
        } else {
            unlink(nw);
        }
    } else {
        unlink(nw); /* shorter than a header, or absent */
    }
done:
    pclip__free(vec);
    pclip__free(nw);
    return st;
}

/* Opens vectors.bin for appending: checks it and cuts rows past m->rows. */
static pclip_status vec_open_write(pclip_ctx_t ctx, const char *dir, const index_meta *m,
                                   int *fd_out) {
    char *path = pclip__path_join(dir, PCLIP__INDEX_VEC);
    if (!path) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
    pclip_status st = PCLIP_STATUS_OK;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat sb;
    uint8_t head[PCLIP__VEC_HEADER];
    bool gen_ok = false;
    size_t rb = pclip__index_row_bytes((pclip_index_dtype)m->dtype, (int32_t)m->dim);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = pclip__err(ctx, errno == ENOENT ? PCLIP_STATUS_NOT_FOUND : PCLIP_STATUS_IO,
                        "index '%s': vector file %s: %s", dir, PCLIP__INDEX_VEC, strerror(errno));
        goto fail;
    }
    ssize_t r = pread(fd, head, sizeof head, 0);
    st = header_check(ctx, dir, PCLIP__INDEX_VEC, head, r < 0 ? 0 : (size_t)r, m, &gen_ok);
    if (!st && !gen_ok)
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                        "index '%s': vector file %s is not the one the database refers to "
                        "(generation differs)",
                        dir, PCLIP__INDEX_VEC);
    if (!st) st = rows_fit(ctx, dir, PCLIP__INDEX_VEC, (size_t)sb.st_size, m, rb);
    if (st) goto fail;
    off_t keep = (off_t)(PCLIP__VEC_HEADER + (size_t)m->rows * rb);
    if (sb.st_size > keep && ftruncate(fd, keep) != 0) {
        st = pclip__err(ctx, PCLIP_STATUS_IO, "index '%s': cannot cut %s: %s", dir,
                        PCLIP__INDEX_VEC, strerror(errno));
        goto fail;
    }
    pclip__free(path);
    *fd_out = fd;
    return PCLIP_STATUS_OK;
fail:
    if (fd >= 0) close(fd);
    pclip__free(path);
    return st;
}

/* Writes a new vector file holding only a header (tmp, sync, rename). */
static pclip_status vec_create(pclip_ctx_t ctx, const char *dir, pclip_index_dtype dt, int32_t dim,
                               uint64_t gen) {
    char *path = pclip__path_join(dir, PCLIP__INDEX_VEC);
    if (!path) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
    pclip__vec_header h;
    header_make(&h, dt, dim, gen);
    pclip__atomic_file f;
    pclip_status st = pclip__atomic_open(ctx, path, &f);
    if (!st) st = pclip__atomic_write(ctx, &f, &h, sizeof h);
    if (!st) st = pclip__atomic_commit(ctx, &f);
    if (st) pclip__atomic_abort(&f);
    pclip__free(path);
    sync_dir(dir);
    return st;
}

/* ---- the lock ---- */

static pclip_status lock_take(pclip_ctx_t ctx, const char *dir, int *fd_out) {
    char *path = pclip__path_join(dir, PCLIP__INDEX_LOCK);
    if (!path) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    pclip_status st = PCLIP_STATUS_OK;
    if (fd < 0) {
        st = pclip__err(ctx, PCLIP_STATUS_IO, "index '%s': cannot open its lock '%s': %s", dir,
                        path, strerror(errno));
    } else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        fd = -1;
        st = pclip__err(ctx, PCLIP_STATUS_IO,
                        e == EWOULDBLOCK
                            ? "index '%s' is being updated by another process (it holds '%s'); "
                              "nothing was changed: run again when it has finished"
                            : "index '%s': cannot lock '%s'",
                        dir, path);
    }
    pclip__free(path);
    *fd_out = fd;
    return st;
}

static void lock_drop(int fd) {
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

/* ---- update ---- */

typedef struct todo_item {
    const char *path;
    int64_t size, mtime_ns;
    char hash[17];
    bool changed; /* the path is in the index with other content */
} todo_item;

/* Statuses that mean "this file is bad", not "the run is broken". */
static bool bad_file_status(pclip_status st) {
    return st == PCLIP_STATUS_IO || st == PCLIP_STATUS_NOT_FOUND || st == PCLIP_STATUS_BAD_FORMAT ||
           st == PCLIP_STATUS_UNSUPPORTED || st == PCLIP_STATUS_LIMIT;
}

typedef struct update_run {
    pclip_ctx_t ctx;
    const char *dir;
    pclip_model_t model;
    pclip_backend_t b;
    pclip_index_options o;
    pclip_embed_options eo;
    int64_t skipped;
} update_run;

/* rows of one chunk, as the embed callback fills them */
typedef struct chunk_rows {
    uint8_t *data; /* [chunk, row_bytes] */
    bool *ok;      /* [chunk]: embedded */
    bool *failed;  /* [chunk]: could not be decoded (the skip callback) */
    int64_t next;  /* the chunk index the next row belongs to */
    pclip_index_dtype dtype;
    int32_t dim;
    size_t row_bytes;
    struct update_run *u;
    const char *const *paths;
    pclip_index_progress *pr; /* progress so far; updated after each batch */
    int64_t chunk_start;      /* images of the run before this chunk */
    double t0;                /* when the embedding started */
} chunk_rows;

static double now_s(void);

/* Rows come numbered among the embedded images only; the skip callback has
 * marked a batch's failures before its rows arrive, so the next row belongs
 * to the next input not marked. */
static pclip_status take_rows(void *user, int64_t first, int32_t count, int32_t dim,
                              const float *rows) {
    chunk_rows *c = user;
    (void)first;
    if (dim != c->dim) return PCLIP_STATUS_INTERNAL;
    for (int32_t i = 0; i < count; i++) {
        while (c->failed[c->next]) c->next++;
        int64_t at = c->next++;
        pclip__index_encode_row(c->dtype, rows + (size_t)i * (size_t)dim, dim,
                                c->data + (size_t)at * c->row_bytes);
        c->ok[at] = true;
    }
    /* progress after every encoder batch, not only every commit */
    if (c->pr && c->u->o.progress && c->chunk_start + c->next < c->pr->total) {
        c->pr->done = c->chunk_start + c->next;
        c->pr->seconds = now_s() - c->t0;
        c->u->o.progress(c->u->o.user, c->pr);
    }
    return PCLIP_STATUS_OK;
}

static void skip_file(void *user, const pclip_image_failure *f) {
    chunk_rows *c = user;
    c->failed[f->index] = true;
    c->u->skipped++;
    if (c->u->o.skipped) c->u->o.skipped(c->u->o.user, f->path, f->message);
}

/* Embeds paths[0..n) into c (ok[i] marks the rows that worked). Files that
 * cannot be decoded are left out and reported, unless the update is strict:
 * then the first stops it, named in the message. */
static pclip_status embed_chunk(update_run *u, const char *const *paths, int64_t n, chunk_rows *c) {
    if (n <= 0) return PCLIP_STATUS_OK;
    memset(c->ok, 0, (size_t)n * sizeof *c->ok);
    memset(c->failed, 0, (size_t)n * sizeof *c->failed);
    c->next = 0;
    c->u = u;
    c->paths = paths;
    pclip_embed_options eo = u->eo;
    if (!u->o.strict) {
        eo.skip = skip_file;
        eo.skip_user = c;
    }
    return pclip_embed_image_files(u->model, u->b, paths, n, &eo, take_rows, c);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t path_hash(const char *p) { return pclip__hash64(p, strlen(p), 0x5eed); }

/* Rewrites vectors.bin with the live rows only, renumbered in row order. */
static pclip_status compact(pclip_ctx_t ctx, const char *dir, sqlite3 *db, index_meta *m,
                            int vec_fd) {
    size_t rb = pclip__index_row_bytes((pclip_index_dtype)m->dtype, (int32_t)m->dim);
    char *nw = pclip__path_join(dir, PCLIP__INDEX_VEC_NEW);
    char *vec = pclip__path_join(dir, PCLIP__INDEX_VEC);
    int64_t *old = NULL, n = 0, cap = 0;
    uint8_t *buf = pclip__malloc(rb);
    int fd = -1;
    sqlite3_stmt *s = NULL, *upd = NULL;
    pclip_status st = PCLIP_STATUS_OK;
    const int64_t new_gen = m->generation + 1;
    if (!nw || !vec || !buf) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
        goto done;
    }
    if ((st = db_prepare(ctx, db, dir, "SELECT row FROM files ORDER BY row", &s))) goto done;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            int64_t *g = pclip__realloc(old, (size_t)cap * sizeof *g);
            if (!g) {
                st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
                goto done;
            }
            old = g;
        }
        old[n++] = sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE) {
        st = db_err(ctx, db, dir, "listing the rows");
        goto done;
    }
    fd = open(nw, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = pclip__err(ctx, PCLIP_STATUS_IO, "index '%s': cannot create %s: %s", dir,
                        PCLIP__INDEX_VEC_NEW, strerror(errno));
        goto done;
    }
    pclip__vec_header h;
    header_make(&h, (pclip_index_dtype)m->dtype, (int32_t)m->dim, (uint64_t)new_gen);
    if ((st = write_all(ctx, fd, &h, sizeof h, 0, nw))) goto done;
    for (int64_t i = 0; i < n; i++) {
        if (old[i] < 0 || old[i] >= m->rows) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "index '%s': database %s: row %lld is outside the %lld rows", dir,
                            PCLIP__INDEX_DB, (long long)old[i], (long long)m->rows);
            goto done;
        }
        if (pread(vec_fd, buf, rb, (off_t)(PCLIP__VEC_HEADER + (size_t)old[i] * rb)) !=
            (ssize_t)rb) {
            st = pclip__err(ctx, PCLIP_STATUS_IO, "index '%s': cannot read %s", dir,
                            PCLIP__INDEX_VEC);
            goto done;
        }
        if ((st = write_all(ctx, fd, buf, rb, PCLIP__VEC_HEADER + (uint64_t)i * rb, nw))) goto done;
    }
    if ((st = sync_fd(ctx, fd, nw))) goto done;
    if ((st = db_exec(ctx, db, dir, "BEGIN IMMEDIATE"))) goto done;
    /* ascending old rows move down to 0..n-1: a target is never a row still in use */
    st = db_prepare(ctx, db, dir, "UPDATE files SET row=? WHERE row=?", &upd);
    for (int64_t i = 0; !st && i < n; i++) {
        if (old[i] == i) continue;
        sqlite3_bind_int64(upd, 1, i);
        sqlite3_bind_int64(upd, 2, old[i]);
        if (sqlite3_step(upd) != SQLITE_DONE) st = db_err(ctx, db, dir, "renumbering rows");
        sqlite3_reset(upd);
    }
    if (!st) st = meta_set(ctx, db, dir, "generation", NULL, m->generation + 1);
    if (!st) st = meta_set(ctx, db, dir, "rows", NULL, n);
    if (!st) st = db_exec(ctx, db, dir, "COMMIT");
    if (st) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        goto done;
    }
    m->generation++;
    m->rows = n;
    if (rename(nw, vec) != 0) /* the next open finishes it (vec_recover) */
        st = pclip__err(ctx, PCLIP_STATUS_IO, "index '%s': cannot rename %s: %s", dir,
                        PCLIP__INDEX_VEC_NEW, strerror(errno));
    sync_dir(dir);
done:
    sqlite3_finalize(s);
    sqlite3_finalize(upd);
    if (fd >= 0) close(fd);
    if (st && nw && m->generation != new_gen) unlink(nw); /* not committed: drop it */
    pclip__free(old);
    pclip__free(buf);
    pclip__free(nw);
    pclip__free(vec);
    return st;
}

static pclip_status file_hash(pclip_ctx_t ctx, const char *path, char out[17]) {
    pclip__mmap map = {0};
    pclip_status st = pclip__mmap_open(ctx, path, "image", &map);
    if (st) return st;
    hex64(pclip__hash64(map.data, map.size, 0), out);
    pclip__mmap_close(&map);
    return PCLIP_STATUS_OK;
}

/* Sorts out the inputs: unchanged (perhaps with a new time), to embed, or
 * unreadable; files of the index not among them are dropped. One transaction. */
static pclip_status plan_update(update_run *u, sqlite3 *db, const char *const *files, int64_t n,
                                todo_item *todo, int64_t *n_todo, pclip_index_report *r) {
    pclip_ctx_t ctx = u->ctx;
    const char *dir = u->dir;
    sqlite3_stmt *look = NULL, *seen = NULL, *touch = NULL;
    pclip_status st = db_exec(ctx, db, dir,
                              "BEGIN IMMEDIATE; CREATE TEMP TABLE IF NOT EXISTS seen(path TEXT "
                              "PRIMARY KEY); DELETE FROM temp.seen;");
    if (!st)
        st = db_prepare(ctx, db, dir, "SELECT size, mtime_ns, hash FROM files WHERE path=?", &look);
    if (!st) st = db_prepare(ctx, db, dir, "INSERT OR IGNORE INTO temp.seen VALUES(?)", &seen);
    if (!st)
        st = db_prepare(ctx, db, dir, "UPDATE files SET size=?, mtime_ns=? WHERE path=?", &touch);
    int64_t nt = 0;
    for (int64_t i = 0; !st && i < n; i++) {
        const char *p = files[i];
        if (u->o.shard_count > 0 &&
            path_hash(p) % (uint64_t)u->o.shard_count != (uint64_t)u->o.shard_index) {
            r->other_shards++;
            continue;
        }
        struct stat sb;
        int e = stat(p, &sb) != 0 ? errno : 0;
        if (e || !S_ISREG(sb.st_mode)) {
            char why[300];
            snprintf(why, sizeof why, "'%s': %s", p, e ? strerror(e) : "not a regular file");
            if (u->o.strict) {
                st = pclip__err(ctx, PCLIP_STATUS_IO, "%s", why);
                break;
            }
            r->skipped++;
            if (u->o.skipped) u->o.skipped(u->o.user, p, why);
            continue;
        }
        sqlite3_bind_text(seen, 1, p, -1, SQLITE_STATIC);
        int rc = sqlite3_step(seen);
        sqlite3_reset(seen);
        if (rc != SQLITE_DONE) {
            st = db_err(ctx, db, dir, "recording the inputs");
            break;
        }
        if (sqlite3_changes(db) == 0) continue; /* given twice */
        int64_t mt = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        sqlite3_bind_text(look, 1, p, -1, SQLITE_STATIC);
        rc = sqlite3_step(look);
        bool known = rc == SQLITE_ROW, same_stat = false;
        char old_hash[17] = "";
        if (known) {
            same_stat = sqlite3_column_int64(look, 0) == (int64_t)sb.st_size &&
                        sqlite3_column_int64(look, 1) == mt;
            const char *h = (const char *)sqlite3_column_text(look, 2);
            snprintf(old_hash, sizeof old_hash, "%s", h ? h : "");
        } else if (rc != SQLITE_DONE) {
            st = db_err(ctx, db, dir, "looking up a file");
        }
        sqlite3_reset(look);
        if (st) break;
        if (same_stat) {
            r->unchanged++;
            continue;
        }
        todo_item *t = &todo[nt];
        if ((st = file_hash(ctx, p, t->hash))) {
            if (!bad_file_status(st) || u->o.strict) break;
            st = PCLIP_STATUS_OK;
            r->skipped++;
            if (u->o.skipped) u->o.skipped(u->o.user, p, pclip_ctx_last_error(ctx));
            pclip__err_clear(ctx);
            continue;
        }
        if (known && strcmp(t->hash, old_hash) == 0) { /* touched, not changed */
            sqlite3_bind_int64(touch, 1, (int64_t)sb.st_size);
            sqlite3_bind_int64(touch, 2, mt);
            sqlite3_bind_text(touch, 3, p, -1, SQLITE_STATIC);
            if (sqlite3_step(touch) != SQLITE_DONE) st = db_err(ctx, db, dir, "updating a time");
            sqlite3_reset(touch);
            r->unchanged++;
            continue;
        }
        t->path = p;
        t->size = (int64_t)sb.st_size;
        t->mtime_ns = mt;
        t->changed = known;
        nt++;
    }
    if (!st) {
        st = db_exec(ctx, db, dir,
                     "DELETE FROM files WHERE path NOT IN (SELECT path FROM temp.seen)");
        if (!st) r->removed = sqlite3_changes(db);
    }
    sqlite3_finalize(look);
    sqlite3_finalize(seen);
    sqlite3_finalize(touch);
    if (!st) st = db_exec(ctx, db, dir, "COMMIT");
    if (st) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    *n_todo = nt;
    return st;
}

/* Appends one chunk's good rows and commits them. */
static pclip_status commit_chunk(update_run *u, sqlite3 *db, int vec_fd, index_meta *m,
                                 const todo_item *items, int64_t n, const chunk_rows *c,
                                 pclip_index_report *r) {
    pclip_ctx_t ctx = u->ctx;
    const char *dir = u->dir;
    size_t rb = c->row_bytes;
    /* pack the good rows together, then one write and one sync */
    int64_t good = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!c->ok[i]) continue;
        if (good != i) memmove(c->data + (size_t)good * rb, c->data + (size_t)i * rb, rb);
        good++;
    }
    /* a changed file that no longer decodes leaves the index (its old row is dead) */
    bool drop = false;
    for (int64_t i = 0; i < n; i++) drop |= !c->ok[i] && items[i].changed;
    if (good == 0 && !drop) return PCLIP_STATUS_OK;
    pclip_status st = PCLIP_STATUS_OK;
    if (good > 0) {
        st = write_all(ctx, vec_fd, c->data, (size_t)good * rb,
                       PCLIP__VEC_HEADER + (uint64_t)m->rows * rb, PCLIP__INDEX_VEC);
        if (!st) st = sync_fd(ctx, vec_fd, PCLIP__INDEX_VEC);
    }
    if (st) return st;
    sqlite3_stmt *del = NULL, *ins = NULL;
    st = db_exec(ctx, db, dir, "BEGIN IMMEDIATE");
    if (!st) st = db_prepare(ctx, db, dir, "DELETE FROM files WHERE path=?", &del);
    if (!st)
        st = db_prepare(ctx, db, dir,
                        "INSERT INTO files(path, size, mtime_ns, hash, row) VALUES(?,?,?,?,?)",
                        &ins);
    int64_t row = m->rows;
    for (int64_t i = 0; !st && i < n; i++) {
        const todo_item *t = &items[i];
        if (!c->ok[i]) {
            if (t->changed) {
                sqlite3_bind_text(del, 1, t->path, -1, SQLITE_STATIC);
                if (sqlite3_step(del) != SQLITE_DONE) st = db_err(ctx, db, dir, "dropping a file");
                sqlite3_reset(del);
                r->removed++;
            }
            continue;
        }
        if (t->changed) {
            sqlite3_bind_text(del, 1, t->path, -1, SQLITE_STATIC);
            if (sqlite3_step(del) != SQLITE_DONE) st = db_err(ctx, db, dir, "replacing a file");
            sqlite3_reset(del);
        }
        sqlite3_bind_text(ins, 1, t->path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, t->size);
        sqlite3_bind_int64(ins, 3, t->mtime_ns);
        sqlite3_bind_text(ins, 4, t->hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 5, row++);
        if (!st && sqlite3_step(ins) != SQLITE_DONE) st = db_err(ctx, db, dir, "adding a file");
        sqlite3_reset(ins);
        if (t->changed)
            r->changed++;
        else
            r->added++;
    }
    if (!st) st = meta_set(ctx, db, dir, "rows", NULL, row);
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    if (!st) st = db_exec(ctx, db, dir, "COMMIT");
    if (st) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    m->rows = row;
    return PCLIP_STATUS_OK;
}

static pclip_status ensure_dir(pclip_ctx_t ctx, const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "index '%s' is a file, not an index folder", dir);
        /* an existing folder must be an index (or empty): never write into a
         * folder of photos given by mistake */
        DIR *d = opendir(dir);
        if (!d)
            return pclip__err(ctx, PCLIP_STATUS_IO, "index '%s': cannot read the folder: %s", dir,
                              strerror(errno));
        static const char *const ours[] = {".",
                                           "..",
                                           PCLIP__INDEX_DB,
                                           PCLIP__INDEX_DB "-wal",
                                           PCLIP__INDEX_DB "-shm",
                                           PCLIP__INDEX_DB "-journal",
                                           PCLIP__INDEX_VEC,
                                           PCLIP__INDEX_VEC_NEW,
                                           PCLIP__INDEX_LOCK};
        char other[256] = "";
        struct dirent *e;
        while (!other[0] && (e = readdir(d))) {
            bool known = false;
            for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
                known |= strcmp(e->d_name, ours[i]) == 0;
            if (!known) snprintf(other, sizeof other, "%s", e->d_name);
        }
        closedir(d);
        if (other[0])
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "index '%s' is a folder that holds other files ('%s'), not an "
                              "index: give a new folder or an index",
                              dir, other);
        return PCLIP_STATUS_OK;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return pclip__err(ctx, PCLIP_STATUS_IO, "index '%s': cannot create the folder: %s", dir,
                          strerror(errno));
    return PCLIP_STATUS_OK;
}

/* Makes a new index's metadata and vector file, or checks an existing one
 * against the model and options. */
static pclip_status prepare_index(update_run *u, sqlite3 *db, const char *model_id, int32_t dim,
                                  index_meta *m) {
    pclip_ctx_t ctx = u->ctx;
    const char *dir = u->dir;
    bool found;
    int64_t format;
    pclip_status st = meta_get(ctx, db, dir, "format", &format, NULL, &found);
    if (st) return st;
    if (!found) {
        pclip_index_dtype dt = u->o.dtype ? u->o.dtype : PCLIP_INDEX_F32;
        int64_t files = 0;
        if ((st = count_files(ctx, db, dir, &files))) return st;
        if (files != 0)
            return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                              "index '%s': database %s lists files but has no metadata", dir,
                              PCLIP__INDEX_DB);
        /* the vector file first: a crash before the commit leaves a database
         * without metadata, which the next run starts over */
        if ((st = vec_create(ctx, dir, dt, dim, 1))) return st;
        if ((st = db_exec(ctx, db, dir, "BEGIN IMMEDIATE"))) return st;
        st = meta_set(ctx, db, dir, "format", NULL, PCLIP__INDEX_FORMAT);
        if (!st) st = meta_set(ctx, db, dir, "dtype", NULL, dt);
        if (!st) st = meta_set(ctx, db, dir, "dim", NULL, dim);
        if (!st) st = meta_set(ctx, db, dir, "preprocess", NULL, u->o.preprocess);
        if (!st) st = meta_set(ctx, db, dir, "generation", NULL, 1);
        if (!st) st = meta_set(ctx, db, dir, "rows", NULL, 0);
        if (!st) st = meta_set(ctx, db, dir, "model_id", model_id, 0);
        if (!st) st = meta_set(ctx, db, dir, "model_dir", u->model->dir, 0);
        if (!st && u->model->head)
            st = meta_set(ctx, db, dir, "head_dir", u->model->head->dir, 0);
        if (!st) st = db_exec(ctx, db, dir, "COMMIT");
        if (st) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return st;
        }
    }
    if ((st = meta_read(ctx, db, dir, m))) return st;
    if (strcmp(m->model_id, model_id) != 0 || m->dim != dim) {
        char label[PCLIP__MODEL_LABEL];
        st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                        "index '%s' was made with model '%s%s%s' (id %s, %s preprocessing), not "
                        "with model '%s' (id %s, %s preprocessing)",
                        dir, m->model_dir, m->head_dir ? " with head " : "",
                        m->head_dir ? m->head_dir : "", m->model_id,
                        m->preprocess == PCLIP_PREPROCESS_HF ? "hf" : "openai",
                        pclip__model_label(u->model, label, sizeof label),
                        model_id, u->o.preprocess == PCLIP_PREPROCESS_HF ? "hf" : "openai");
    } else if (u->o.dtype && (int64_t)u->o.dtype != m->dtype) {
        st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                        "index '%s' stores %s vectors, not %s (a new index takes the dtype)", dir,
                        pclip_index_dtype_name((pclip_index_dtype)m->dtype),
                        pclip_index_dtype_name(u->o.dtype));
    }
    if (!st) st = vec_recover(ctx, dir, m);
    if (st) meta_free(m);
    return st;
}

pclip_status pclip_index_update(pclip_ctx_t ctx, const char *path, pclip_model_t model,
                                pclip_backend_t b, const char *const *files, int64_t n,
                                const pclip_index_options *opt, pclip_index_report *report) {
    if (!ctx) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!path || !model || !b || n < 0 || (n > 0 && !files))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "index update: NULL path, model, backend or files, or n < 0");
    update_run u = {.ctx = ctx, .dir = path, .model = model, .b = b};
    if (opt) u.o = *opt;
    if (u.o.dtype < 0 || u.o.dtype >= PCLIP_INDEX_DTYPE_COUNT || u.o.preprocess < 0 ||
        u.o.preprocess >= PCLIP_PREPROCESS_COUNT || u.o.chunk < 0 || u.o.shard_count < 0 ||
        (u.o.shard_count > 0 && (u.o.shard_index < 0 || u.o.shard_index >= u.o.shard_count)) ||
        (u.o.shard_count == 0 && u.o.shard_index != 0))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "index '%s': bad options (dtype %d, preprocess %d, chunk %d, shard "
                          "%d/%d)",
                          path, (int)u.o.dtype, (int)u.o.preprocess, (int)u.o.chunk,
                          (int)u.o.shard_index, (int)u.o.shard_count);
    int64_t v;
    pclip_status st = pclip__env_int(ctx, "PORTCLIP_INDEX_CHUNK", 1, 1 << 20, 1024, &v);
    if (st) return st;
    if (u.o.chunk == 0) u.o.chunk = (int32_t)v;
    /* test hook: a pause after each commit, so a test can kill a run in the middle */
    int64_t delay_ms;
    if ((st = pclip__env_int(ctx, "PORTCLIP_INDEX_TEST_DELAY_MS", 0, 60000, 0, &delay_ms)))
        return st;
    u.eo = (pclip_embed_options){.batch_size = u.o.batch_size ? u.o.batch_size : 32,
                                 .threads = u.o.threads,
                                 .preprocess = u.o.preprocess,
                                 .flags = PCLIP_ENCODE_NORMALIZE};
    if (u.eo.batch_size < 1 || u.eo.batch_size > PCLIP_ENCODE_BATCH_MAX)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "index: batch size %d is outside 1..%d", (int)u.eo.batch_size,
                          PCLIP_ENCODE_BATCH_MAX);
    char model_id[33];
    if ((st = pclip_model_identity(model, u.o.preprocess, model_id))) return st;
    int32_t dim = pclip_model_embed_dim(model);

    pclip_index_report r = {0};
    int lock_fd = -1, vec_fd = -1;
    sqlite3 *db = NULL;
    index_meta m = {0};
    todo_item *todo = NULL;
    chunk_rows c = {0};
    const char **paths = NULL;
    if ((st = ensure_dir(ctx, path))) return st;
    if ((st = lock_take(ctx, path, &lock_fd))) return st;
    if ((st = db_open(ctx, path, true, &db))) goto done;
    if ((st = prepare_index(&u, db, model_id, dim, &m))) goto done;
    if ((st = vec_open_write(ctx, path, &m, &vec_fd))) goto done;
    if (n > 0 && !(todo = pclip__calloc((size_t)n, sizeof *todo))) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory for %lld files",
                        (long long)n);
        goto done;
    }
    int64_t n_todo = 0;
    if ((st = plan_update(&u, db, files, n, todo, &n_todo, &r))) goto done;
    u.skipped = r.skipped;

    c.dtype = (pclip_index_dtype)m.dtype;
    c.dim = dim;
    c.row_bytes = pclip__index_row_bytes(c.dtype, dim);
    int64_t chunk = n_todo < u.o.chunk ? n_todo : u.o.chunk;
    if (chunk > 0 && (!(c.data = pclip__malloc((size_t)chunk * c.row_bytes)) ||
                      !(c.ok = pclip__malloc((size_t)chunk * sizeof *c.ok)) ||
                      !(c.failed = pclip__malloc((size_t)chunk * sizeof *c.failed)) ||
                      !(paths = pclip__malloc((size_t)chunk * sizeof *paths)))) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
        goto done;
    }
    double t0 = now_s();
    pclip_index_progress pr = {.total = n_todo};
    if (u.o.progress) u.o.progress(u.o.user, &pr);
    for (int64_t s = 0; s < n_todo; s += chunk) {
        int64_t k = n_todo - s < chunk ? n_todo - s : chunk;
        for (int64_t i = 0; i < k; i++) paths[i] = todo[s + i].path;
        c.pr = &pr;
        c.chunk_start = s;
        c.t0 = t0;
        if ((st = embed_chunk(&u, paths, k, &c))) goto done;
        if ((st = commit_chunk(&u, db, vec_fd, &m, todo + s, k, &c, &r))) goto done;
        pr.done = s + k;
        pr.skipped = u.skipped - r.skipped;
        pr.seconds = now_s() - t0;
        if (u.o.progress) u.o.progress(u.o.user, &pr);
        if (delay_ms > 0) {
            struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    r.skipped = u.skipped;
    if ((st = count_files(ctx, db, path, &r.count))) goto done;
    if (r.count < m.rows) st = compact(ctx, path, db, &m, vec_fd);
done:
    if (report && !st) *report = r;
    if (vec_fd >= 0) close(vec_fd);
    if (db) {
        pclip__err_kept kept;
        pclip__err_keep(ctx, &kept);
        sqlite3_close(db);
        pclip__err_restore(ctx, &kept);
    }
    lock_drop(lock_fd);
    meta_free(&m);
    pclip__free(todo);
    pclip__free(c.data);
    pclip__free(c.ok);
    pclip__free(c.failed);
    pclip__free(paths);
    return st;
}

/* ---- opening for search ---- */

static pclip_status open_snapshot(pclip_ctx_t ctx, const char *dir, struct pclip_index *x) {
    index_meta m = {0};
    pclip_status st = db_open(ctx, dir, false, &x->db);
    if (st) return st;
    /* one read transaction for the handle's life: rows keep their numbers */
    if ((st = db_exec(ctx, x->db, dir, "BEGIN"))) return st;
    if ((st = meta_read(ctx, x->db, dir, &m))) return st;
    if ((st = count_files(ctx, x->db, dir, &x->count))) goto done;
    if (x->count > m.rows) {
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                        "index '%s': database %s lists %lld files but only %lld rows", dir,
                        PCLIP__INDEX_DB, (long long)x->count, (long long)m.rows);
        goto done;
    }
    x->dim = (int32_t)m.dim;
    x->dtype = (pclip_index_dtype)m.dtype;
    x->preprocess = (pclip_preprocess_mode)m.preprocess;
    x->rows = m.rows;
    x->row_bytes = pclip__index_row_bytes(x->dtype, x->dim);
    snprintf(x->model_id, sizeof x->model_id, "%s", m.model_id);
    x->model_dir = m.model_dir;
    m.model_dir = NULL;
    x->head_dir = m.head_dir;
    m.head_dir = NULL;
    /* vectors.bin, or vectors.bin.new when a compaction committed but has not
     * been renamed yet */
    const char *names[] = {PCLIP__INDEX_VEC, PCLIP__INDEX_VEC_NEW};
    for (int i = 0; i < 2; i++) {
        char *p = pclip__path_join(dir, names[i]);
        if (!p) {
            st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
            goto done;
        }
        pclip__mmap map = {0};
        st = pclip__mmap_open(ctx, p, "index vector file", &map);
        pclip__free(p);
        if (st && i == 1) { /* report the first file's problem */
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "index '%s': vector file %s is not the one the database refers to "
                            "(generation differs)",
                            dir, PCLIP__INDEX_VEC);
            goto done;
        }
        if (st) goto done;
        bool gen_ok = false;
        st = header_check(ctx, dir, names[i], map.data, map.size, &m, &gen_ok);
        if (!st && gen_ok) st = rows_fit(ctx, dir, names[i], map.size, &m, x->row_bytes);
        if (!st && gen_ok) {
            x->vec = map;
            x->rows_data = map.data + PCLIP__VEC_HEADER;
            break;
        }
        pclip__mmap_close(&map);
        if (st) goto done;
        if (i == 1)
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "index '%s': vector file %s is not the one the database refers to "
                            "(generation differs)",
                            dir, PCLIP__INDEX_VEC);
    }
    if (!st)
        st = db_prepare(ctx, x->db, dir, "SELECT path FROM files WHERE row=?", &x->path_of_row);
done:
    meta_free(&m);
    return st;
}

pclip_status pclip_index_open(pclip_ctx_t ctx, const char *path, pclip_index_t *out) {
    if (!ctx) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!path || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "index open: NULL path");
    struct pclip_index *x = pclip__calloc(1, sizeof *x);
    if (!x || !(x->dir = pclip__strdup(path))) {
        pclip__free(x);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
    }
    x->ctx = ctx;
    pclip_status st = open_snapshot(ctx, path, x);
    if (st) {
        pclip__err_kept kept;
        pclip__err_keep(ctx, &kept);
        pclip_index_close(x);
        pclip__err_restore(ctx, &kept);
        return st;
    }
    *out = x;
    return PCLIP_STATUS_OK;
}

void pclip__index_free_hits(struct pclip_index *x) {
    for (int64_t i = 0; i < x->n_hit_paths; i++) pclip__free(x->hit_paths[i]);
    pclip__free(x->hit_paths);
    x->hit_paths = NULL;
    x->n_hit_paths = 0;
}

void pclip_index_close(pclip_index_t x) {
    if (!x) return;
    pclip__index_free_hits(x);
    sqlite3_finalize(x->path_of_row);
    if (x->db) {
        sqlite3_exec(x->db, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(x->db);
    }
    pclip__mmap_close(&x->vec);
    pclip__free(x->model_dir);
    pclip__free(x->head_dir);
    pclip__free(x->dir);
    pclip__free(x);
}

void pclip_index_get_info(pclip_index_t x, pclip_index_info *out) {
    if (!x || !out) return;
    *out = (pclip_index_info){.count = x->count,
                              .dim = x->dim,
                              .dtype = x->dtype,
                              .preprocess = x->preprocess,
                              .model_dir = x->model_dir,
                              .model_id = x->model_id,
                              .head_dir = x->head_dir};
}

pclip_status pclip_index_check_model(pclip_index_t x, pclip_model_t model) {
    if (!x || !model) return PCLIP_STATUS_INVALID_ARGUMENT;
    /* hashing the weights again for every search of the same model is a
     * waste (hundreds of MB): remember the model last found to match */
    uint64_t head = model->head ? model->head->digest : 0;
    if (model->n_shards > 0 && x->checked_model == model &&
        x->checked_weights == model->shards[0]->map.data && x->checked_head == head)
        return PCLIP_STATUS_OK;
    char id[33];
    pclip_status st = pclip_model_identity(model, x->preprocess, id);
    if (st) {
        if (model->ctx != x->ctx) pclip__err(x->ctx, st, "%s", pclip_ctx_last_error(model->ctx));
        return st;
    }
    if (strcmp(id, x->model_id) != 0 || pclip_model_embed_dim(model) != x->dim) {
        char label[PCLIP__MODEL_LABEL];
        return pclip__err(x->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "index '%s' was made with model '%s%s%s' (id %s), not with model '%s' "
                          "(id %s)",
                          x->dir, x->model_dir, x->head_dir ? " with head " : "",
                          x->head_dir ? x->head_dir : "", x->model_id,
                          pclip__model_label(model, label, sizeof label), id);
    }
    x->checked_model = model;
    x->checked_weights = model->shards[0]->map.data;
    x->checked_head = head;
    return PCLIP_STATUS_OK;
}

char *pclip__index_path_of_row(pclip_index_t x, int64_t row, pclip_status *st) {
    sqlite3_stmt *s = x->path_of_row;
    sqlite3_bind_int64(s, 1, row);
    int rc = sqlite3_step(s);
    char *p = NULL;
    *st = PCLIP_STATUS_OK;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (!(p = pclip__strdup(t ? t : "")))
            *st = pclip__err(x->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index: out of memory");
    } else if (rc != SQLITE_DONE) {
        *st = db_err(x->ctx, x->db, x->dir, "looking up a row");
    }
    sqlite3_reset(s);
    return p;
}

/* ---- merge ---- */

static void remove_tree(const char *dir) {
    static const char *const names[] = {PCLIP__INDEX_DB,        PCLIP__INDEX_DB "-wal",
                                        PCLIP__INDEX_DB "-shm", PCLIP__INDEX_DB "-journal",
                                        PCLIP__INDEX_VEC,       PCLIP__INDEX_VEC_NEW,
                                        PCLIP__INDEX_LOCK};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = pclip__path_join(dir, names[i]);
        if (p) unlink(p);
        pclip__free(p);
    }
    rmdir(dir);
}

pclip_status pclip_index_merge(pclip_ctx_t ctx, const char *out, const char *const *shards,
                               int64_t n) {
    if (!ctx) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!out || n < 1 || !shards)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "index merge: NULL output, or no shards given");
    struct stat sb;
    if (stat(out, &sb) == 0)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "index merge: output '%s' exists; merge writes a new index", out);
    pclip_index_t *ix = pclip__calloc((size_t)n, sizeof *ix);
    size_t tlen = strlen(out) + 32;
    char *tmp = pclip__malloc(tlen);
    if (!ix || !tmp) {
        pclip__free(ix);
        pclip__free(tmp);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index merge: out of memory");
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", out, (long)getpid());
    sqlite3 *db = NULL;
    sqlite3_stmt *sel = NULL, *ins = NULL;
    int fd = -1;
    char *vec = NULL;
    bool made_tmp = false;
    pclip_status st = PCLIP_STATUS_OK;
    for (int64_t i = 0; i < n && !st; i++) {
        if ((st = pclip_index_open(ctx, shards[i], &ix[i]))) break;
        const struct pclip_index *a = ix[0], *s = ix[i];
        if (strcmp(a->model_id, s->model_id) != 0 || a->dim != s->dim)
            st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                            "index merge: shard '%s' was made with model '%s' (id %s), shard '%s' "
                            "with model '%s' (id %s)",
                            a->dir, a->model_dir, a->model_id, s->dir, s->model_dir, s->model_id);
        else if (a->dtype != s->dtype)
            st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                            "index merge: shard '%s' stores %s vectors, shard '%s' %s", a->dir,
                            pclip_index_dtype_name(a->dtype), s->dir,
                            pclip_index_dtype_name(s->dtype));
    }
    if (st) goto done;
    if (mkdir(tmp, 0755) != 0) {
        st = pclip__err(ctx, PCLIP_STATUS_IO, "index merge: cannot create '%s': %s", tmp,
                        strerror(errno));
        goto done;
    }
    made_tmp = true;
    const struct pclip_index *a = ix[0];
    if ((st = vec_create(ctx, tmp, a->dtype, a->dim, 1))) goto done;
    if (!(vec = pclip__path_join(tmp, PCLIP__INDEX_VEC))) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "index merge: out of memory");
        goto done;
    }
    if ((fd = open(vec, O_RDWR | O_CLOEXEC)) < 0) {
        st = pclip__err(ctx, PCLIP_STATUS_IO, "index merge: '%s': %s", vec, strerror(errno));
        goto done;
    }
    if ((st = db_open(ctx, tmp, true, &db))) goto done;
    if ((st = db_exec(ctx, db, tmp, "BEGIN IMMEDIATE"))) goto done;
    st = meta_set(ctx, db, tmp, "format", NULL, PCLIP__INDEX_FORMAT);
    if (!st) st = meta_set(ctx, db, tmp, "dtype", NULL, a->dtype);
    if (!st) st = meta_set(ctx, db, tmp, "dim", NULL, a->dim);
    if (!st) st = meta_set(ctx, db, tmp, "preprocess", NULL, a->preprocess);
    if (!st) st = meta_set(ctx, db, tmp, "generation", NULL, 1);
    if (!st) st = meta_set(ctx, db, tmp, "model_id", a->model_id, 0);
    if (!st) st = meta_set(ctx, db, tmp, "model_dir", a->model_dir, 0);
    if (!st && a->head_dir) st = meta_set(ctx, db, tmp, "head_dir", a->head_dir, 0);
    if (!st)
        st = db_prepare(ctx, db, tmp,
                        "INSERT INTO files(path, size, mtime_ns, hash, row) VALUES(?,?,?,?,?)",
                        &ins);
    int64_t row = 0;
    for (int64_t i = 0; i < n && !st; i++) {
        struct pclip_index *s = ix[i];
        if ((st = db_prepare(ctx, s->db, s->dir,
                             "SELECT path, size, mtime_ns, hash, row FROM files ORDER BY path",
                             &sel)))
            break;
        int rc;
        while (!st && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
            int64_t r = sqlite3_column_int64(sel, 4);
            if (r < 0 || r >= s->rows) {
                st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                                "index '%s': database %s: row %lld is outside the %lld rows",
                                s->dir, PCLIP__INDEX_DB, (long long)r, (long long)s->rows);
                break;
            }
            for (int col = 0; col < 4; col++)
                sqlite3_bind_value(ins, col + 1, sqlite3_column_value(sel, col));
            sqlite3_bind_int64(ins, 5, row);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                int ext = sqlite3_extended_errcode(db);
                if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
                    st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                                    "index merge: '%s' is in shard '%s' and in an earlier shard",
                                    (const char *)sqlite3_column_text(sel, 0), s->dir);
                else
                    st = db_err(ctx, db, tmp, "adding a file");
            }
            sqlite3_reset(ins);
            if (!st)
                st = write_all(ctx, fd, s->rows_data + (size_t)r * s->row_bytes, s->row_bytes,
                               PCLIP__VEC_HEADER + (uint64_t)row * s->row_bytes, vec);
            row++;
        }
        if (!st && rc != SQLITE_DONE) st = db_err(ctx, s->db, s->dir, "listing the files");
        sqlite3_finalize(sel);
        sel = NULL;
    }
    if (!st) st = meta_set(ctx, db, tmp, "rows", NULL, row);
    if (!st) st = sync_fd(ctx, fd, vec);
    if (!st) st = db_exec(ctx, db, tmp, "COMMIT");
    sqlite3_finalize(ins);
    ins = NULL;
    if (st) goto done;
    sqlite3_close(db); /* checkpoints the WAL into index.sqlite */
    db = NULL;
    if (rename(tmp, out) != 0) {
        st = pclip__err(ctx, PCLIP_STATUS_IO, "index merge: cannot rename '%s' to '%s': %s", tmp,
                        out, strerror(errno));
        goto done;
    }
    made_tmp = false;
done:
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    if (db) sqlite3_close(db);
    if (fd >= 0) close(fd);
    for (int64_t i = 0; i < n; i++) pclip_index_close(ix[i]);
    if (made_tmp) remove_tree(tmp);
    pclip__free(vec);
    pclip__free(ix);
    pclip__free(tmp);
    return st;
}
