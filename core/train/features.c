/* The frozen encoders' pooled features of a dataset, and their cache file.
 *
 * One call: tokenize every caption, stat every image, hash all of it with
 * the model's identity into the cache key; read the cache file of that key
 * when it is whole, else run the vision tower over the images (the threaded
 * batch pipeline, bad files left out) and the text tower over the captions
 * of the images that were read, then write the file (temp, sync, rename).
 * Also the deterministic train/validation split by image.
 *
 * It does not train or print: the trainer reads the result, the CLI prints
 * the skipped list and draws the progress. */
#define _XOPEN_SOURCE 700 /* st_mtim, realpath */
#include "train/features.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/index.h"  /* pclip__hash64 */
#include "model/model.h" /* the model's context, config and tokenizer */

/* Texts per progress step: a multiple of the batch size, so the text
 * tower's batches (and so its rows) are those of one call over all. */
#define TEXT_BATCHES_PER_STEP 8

/* ---- the run ---- */

typedef struct img_state {
    int64_t size, mtime_ns;
    int err; /* 0 readable so far; errno of stat; -1 not a regular file */
} img_state;

typedef struct run {
    struct pclip_model *m;
    pclip_ctx_t ctx;
    pclip_backend_t b;
    const pclip__dataset *ds;
    pclip__features_options o;
    int32_t dv, dt, n_ctx;
    int32_t *ids;        /* [ds->n_pairs, n_ctx] */
    img_state *img;      /* [ds->n_images] */
    char **why;          /* [ds->n_images]: the message of each skipped image, else NULL */
    int64_t *image_row;  /* [ds->n_images] */
    /* the vision pass */
    int64_t *batch_image; /* [embed_total]: the batcher's index -> dataset image */
    int64_t embed_total, rows_done, failed;
    float *image_feats;   /* [embed_total, dv] while embedding */
    bool oom;
    /* a failure of the run, not of a file (a worker out of memory): it
     * stops the run instead of skipping the file */
    pclip_status fatal;
    char fatal_msg[PCLIP_ERROR_TEXT];
} run;

/* Statuses that mean "this file is bad", not "the run is broken" (as the
 * index's update tells them apart). */
static bool bad_file_status(pclip_status st) {
    return st == PCLIP_STATUS_IO || st == PCLIP_STATUS_NOT_FOUND || st == PCLIP_STATUS_BAD_FORMAT ||
           st == PCLIP_STATUS_UNSUPPORTED || st == PCLIP_STATUS_LIMIT;
}

static void progress(run *r, int64_t done, int64_t total, const char *what) {
    if (r->o.progress) r->o.progress(r->o.user, done, total, what);
}

static pclip_status oom(run *r, const char *what) {
    return pclip__err(r->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "features: out of memory (%s)", what);
}

static void *alloc_rows(int64_t rows, int64_t cols, size_t elem) {
    size_t bytes;
    if (rows < 0 || cols < 0 || !pclip__mul3_size((size_t)rows, (size_t)cols, elem, &bytes))
        return NULL;
    return pclip__malloc(bytes ? bytes : 1);
}

/* ---- inputs: token ids and image files ---- */

static pclip_status tokenize(run *r) {
    const pclip__dataset *ds = r->ds;
    r->ids = alloc_rows(ds->n_pairs, r->n_ctx, sizeof *r->ids);
    if (!r->ids) return oom(r, "token ids");
    for (int64_t i = 0; i < ds->n_pairs; i++) {
        const char *c = ds->pairs[i].caption;
        pclip_status st = pclip_tokenizer_encode(r->m->tokenizer, c, strlen(c),
                                                 r->ids + i * r->n_ctx, r->n_ctx, NULL);
        if (st) {
            pclip__err_prefix(r->ctx, "%s:%lld: caption", ds->path, (long long)ds->pairs[i].line);
            return st;
        }
    }
    return PCLIP_STATUS_OK;
}

static pclip_status stat_images(run *r) {
    const pclip__dataset *ds = r->ds;
    for (int64_t i = 0; i < ds->n_images; i++) {
        struct stat s;
        img_state *x = &r->img[i];
        *x = (img_state){0};
        if (stat(ds->images[i], &s) != 0)
            x->err = errno ? errno : EIO;
        else if (!S_ISREG(s.st_mode))
            x->err = -1;
        else
            *x = (img_state){(int64_t)s.st_size,
                             (int64_t)s.st_mtim.tv_sec * 1000000000 + s.st_mtim.tv_nsec, 0};
        if (!x->err) continue;
        char msg[PCLIP_ERROR_TEXT];
        snprintf(msg, sizeof msg, "image '%s': %s", ds->images[i],
                 x->err == -1        ? "not a regular file"
                 : x->err == ENOENT ? "cannot open: No such file or directory"
                                    : strerror(x->err));
        if (r->o.strict)
            return pclip__err(r->ctx, x->err == ENOENT ? PCLIP_STATUS_NOT_FOUND : PCLIP_STATUS_IO,
                              "%s (%s line %lld)", msg, ds->path, (long long)ds->image_line[i]);
        if (!(r->why[i] = pclip__strdup(msg))) return oom(r, "messages");
    }
    return PCLIP_STATUS_OK;
}

/* ---- the cache key ---- */

typedef struct keyer {
    uint64_t a, b; /* two chains, 128 bits */
} keyer;

static void key_add(keyer *k, const void *p, size_t n) {
    k->a = pclip__hash64(p, n, k->a);
    k->b = pclip__hash64(p, n, k->b);
}

static void key_str(keyer *k, const char *s) { key_add(k, s, strlen(s) + 1); }

static void key_i64(keyer *k, int64_t v) { key_add(k, &v, sizeof v); }

static pclip_status make_key(run *r, char out[33]) {
    char model_id[33];
    pclip_status st = pclip_model_identity(r->m, r->o.preprocess, model_id);
    if (st) return st;
    keyer k = {0x70636c6970667431ull, 0x6b65792d62697473ull};
    key_str(&k, PCLIP__FEATURES_MAGIC);
    key_i64(&k, PCLIP__FEATURES_VERSION);
    key_str(&k, model_id);
    key_str(&k, pclip_precision_name(pclip_backend_precision(r->b)));
    key_i64(&k, r->o.preprocess);
    const pclip__dataset *ds = r->ds;
    key_i64(&k, ds->n_images);
    for (int64_t i = 0; i < ds->n_images; i++) {
        const img_state *x = &r->img[i];
        /* the canonical path, so that the same files read through another
         * relative path (another working folder) give the same key */
        char *real = x->err ? NULL : realpath(ds->images[i], NULL);
        key_str(&k, real ? real : ds->images[i]);
        free(real); /* realpath's own malloc */
        int64_t v[3] = {x->size, x->mtime_ns, x->err};
        key_add(&k, v, sizeof v);
    }
    key_i64(&k, ds->n_pairs);
    for (int64_t i = 0; i < ds->n_pairs; i++) {
        key_i64(&k, ds->pairs[i].image);
        key_str(&k, ds->pairs[i].caption);
        key_add(&k, r->ids + i * r->n_ctx, (size_t)r->n_ctx * sizeof *r->ids);
    }
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)k.a, (unsigned long long)k.b);
    return PCLIP_STATUS_OK;
}

/* ---- the result ---- */

void pclip__features_destroy(pclip__features *f) {
    if (!f) return;
    pclip__free(f->image_feats);
    pclip__free(f->text_feats);
    pclip__free(f->pair_image);
    pclip__free(f->pair_text);
    pclip__free(f->pair_source);
    pclip__free(f->image_source);
    pclip__free(f->image_row);
    pclip__free(f->skipped);
    pclip__free(f->cache_path);
    pclip__free(f->strings);
    pclip__free(f);
}

/* Fills f's index arrays and skipped list from r->image_row and r->why
 * (takes r->image_row). Texts and image rows are left to the caller. */
static pclip_status assemble(run *r, pclip__features *f) {
    const pclip__dataset *ds = r->ds;
    int64_t rows = 0, kept = 0, skipped = 0;
    for (int64_t i = 0; i < ds->n_images; i++) {
        if (r->image_row[i] >= 0) rows++;
        else skipped++;
    }
    for (int64_t i = 0; i < ds->n_pairs; i++) kept += r->image_row[ds->pairs[i].image] >= 0;
    f->n_dataset_images = ds->n_images;
    f->image_row = r->image_row;
    r->image_row = NULL;
    f->n_images = rows;
    f->n_pairs = kept;
    f->image_source = alloc_rows(rows, 1, sizeof(int64_t));
    f->pair_image = alloc_rows(kept, 1, sizeof(int64_t));
    f->pair_text = alloc_rows(kept, 1, sizeof(int64_t));
    f->pair_source = alloc_rows(kept, 1, sizeof(int64_t));
    f->skipped = skipped ? pclip__calloc((size_t)skipped, sizeof *f->skipped) : NULL;
    size_t text_bytes = 1;
    for (int64_t i = 0; i < ds->n_images; i++)
        if (f->image_row[i] < 0)
            text_bytes += strlen(ds->images[i]) + 1 + (r->why[i] ? strlen(r->why[i]) : 0) + 1;
    f->strings = pclip__malloc(text_bytes);
    if (!f->image_source || !f->pair_image || !f->pair_text || !f->pair_source ||
        (skipped && !f->skipped) || !f->strings)
        return oom(r, "result");
    char *s = f->strings;
    for (int64_t i = 0; i < ds->n_images; i++) {
        if (f->image_row[i] >= 0) {
            f->image_source[f->image_row[i]] = i;
            continue;
        }
        pclip__feature_skip *k = &f->skipped[f->n_skipped++];
        size_t n = strlen(ds->images[i]) + 1;
        memcpy(s, ds->images[i], n);
        k->path = s;
        s += n;
        const char *why = r->why[i] ? r->why[i] : "";
        n = strlen(why) + 1;
        memcpy(s, why, n);
        k->message = s;
        s += n;
        k->image = i;
        k->line = ds->image_line[i];
    }
    int64_t p = 0;
    for (int64_t i = 0; i < ds->n_pairs; i++) {
        int64_t row = f->image_row[ds->pairs[i].image];
        if (row < 0) {
            /* skipped is in image order: find the image's entry */
            int64_t lo = 0, hi = f->n_skipped - 1;
            while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (f->skipped[mid].image < ds->pairs[i].image) lo = mid + 1;
                else hi = mid;
            }
            f->skipped[lo].pairs++;
            continue;
        }
        f->pair_image[p] = row;
        f->pair_text[p] = p;
        f->pair_source[p] = i;
        p++;
    }
    return PCLIP_STATUS_OK;
}

/* ---- computing ---- */

static pclip_status take_rows(void *user, int64_t first, int32_t count, int32_t dim,
                              const float *rows) {
    run *r = user;
    if (r->fatal) return pclip__err(r->ctx, r->fatal, "%s", r->fatal_msg);
    if (dim != r->dv || first < 0 || count < 0 || first + count > r->embed_total)
        return pclip__err(r->ctx, PCLIP_STATUS_INTERNAL,
                          "features: rows %lld..+%d of dim %d do not fit [%lld, %d]",
                          (long long)first, (int)count, (int)dim, (long long)r->embed_total,
                          (int)r->dv);
    memcpy(r->image_feats + first * r->dv, rows, (size_t)count * (size_t)dim * sizeof *rows);
    r->rows_done = first + count;
    progress(r, r->rows_done + r->failed, r->embed_total, "images");
    return PCLIP_STATUS_OK;
}

static void take_skip(void *user, const pclip_image_failure *fl) {
    run *r = user;
    if (!bad_file_status(fl->status)) {
        if (!r->fatal) {
            r->fatal = fl->status;
            snprintf(r->fatal_msg, sizeof r->fatal_msg, "%s",
                     fl->message ? fl->message : pclip_status_str(fl->status));
        }
        return;
    }
    int64_t di = r->batch_image[fl->index];
    pclip__free(r->why[di]);
    r->why[di] = pclip__strdup(fl->message ? fl->message : pclip_status_str(fl->status));
    if (!r->why[di]) r->oom = true;
    r->failed++;
    progress(r, r->rows_done + r->failed, r->embed_total, "images");
}

static pclip_status compute_images(run *r) {
    const pclip__dataset *ds = r->ds;
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n_images; i++) n += r->why[i] == NULL;
    r->embed_total = n;
    const char **paths = alloc_rows(n, 1, sizeof *paths);
    r->batch_image = alloc_rows(n, 1, sizeof *r->batch_image);
    r->image_feats = alloc_rows(n, r->dv, sizeof(float));
    if (!paths || !r->batch_image || !r->image_feats) {
        pclip__free(paths);
        return oom(r, "image features");
    }
    n = 0;
    for (int64_t i = 0; i < ds->n_images; i++)
        if (!r->why[i]) {
            r->batch_image[n] = i;
            paths[n++] = ds->images[i];
        }
    pclip_embed_options eo = {.batch_size = r->o.batch_size,
                              .threads = r->o.threads,
                              .preprocess = r->o.preprocess,
                              .flags = PCLIP_ENCODE_POOLED,
                              .skip = r->o.strict ? NULL : take_skip,
                              .skip_user = r};
    progress(r, 0, n, "images");
    pclip_status st = n ? pclip_embed_image_files(r->m, r->b, paths, n, &eo, take_rows, r)
                        : PCLIP_STATUS_OK;
    pclip__free(paths);
    if (st) return st;
    if (r->fatal) return pclip__err(r->ctx, r->fatal, "%s", r->fatal_msg);
    if (r->oom) return oom(r, "messages");
    if (r->rows_done + r->failed != n)
        return pclip__err(r->ctx, PCLIP_STATUS_INTERNAL,
                          "features: %lld images embedded and %lld skipped of %lld",
                          (long long)r->rows_done, (long long)r->failed, (long long)n);
    /* rows in input order among the images that were read */
    int64_t row = 0;
    for (int64_t i = 0; i < ds->n_images; i++) r->image_row[i] = r->why[i] ? -1 : row++;
    progress(r, n, n, "images");
    return PCLIP_STATUS_OK;
}

static pclip_status compute_texts(run *r, pclip__features *f) {
    int64_t n = f->n_pairs;
    int32_t *ids = alloc_rows(n, r->n_ctx, sizeof *ids);
    f->text_feats = alloc_rows(n, r->dt, sizeof(float));
    if (!ids || !f->text_feats) {
        pclip__free(ids);
        return oom(r, "text features");
    }
    for (int64_t p = 0; p < n; p++)
        memcpy(ids + p * r->n_ctx, r->ids + f->pair_source[p] * r->n_ctx,
               (size_t)r->n_ctx * sizeof *ids);
    int32_t batch = r->o.batch_size ? r->o.batch_size : PCLIP_ENCODE_BATCH_DEFAULT;
    int64_t step = (int64_t)batch * TEXT_BATCHES_PER_STEP;
    pclip_status st = PCLIP_STATUS_OK;
    progress(r, 0, n, "texts");
    for (int64_t s = 0; s < n && !st; s += step) {
        int32_t count = (int32_t)(n - s < step ? n - s : step);
        st = pclip_model_encode_text_batched(r->m, r->b, ids + s * r->n_ctx, count, batch,
                                             PCLIP_ENCODE_POOLED, f->text_feats + s * r->dt);
        if (!st) progress(r, s + count, n, "texts");
    }
    pclip__free(ids);
    return st;
}

/* ---- the cache file ---- */

static pclip_status make_dirs(pclip_ctx_t ctx, const char *dir) {
    char *p = pclip__strdup(dir);
    if (!p) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "features: out of memory");
    pclip_status st = PCLIP_STATUS_OK;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n && !st; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        struct stat s;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            st = pclip__err(ctx, PCLIP_STATUS_IO, "feature cache folder '%s': cannot create '%s': %s",
                            dir, p, strerror(errno));
        else if (stat(p, &s) != 0 || !S_ISDIR(s.st_mode))
            st = pclip__err(ctx, PCLIP_STATUS_IO,
                            "feature cache folder '%s': '%s' exists and is not a folder", dir, p);
        p[i] = c;
    }
    pclip__free(p);
    return st;
}

/* The skipped section: per skipped image its index, length and message,
 * zero-padded to 8 bytes so that the floats after it stay aligned. */
static uint8_t *skip_section(const run *r, const pclip__features *f, uint64_t *bytes,
                             int64_t *count) {
    const pclip__dataset *ds = r->ds;
    size_t n = 0;
    *count = 0;
    for (int64_t i = 0; i < ds->n_images; i++)
        if (f->image_row[i] < 0) {
            size_t len = r->why[i] ? strlen(r->why[i]) : 0;
            if (len > PCLIP__FEATURES_LIMIT_MESSAGE) len = PCLIP__FEATURES_LIMIT_MESSAGE;
            n += 12 + len;
            ++*count;
        }
    n = (size_t)pclip__align_up(n, 8);
    uint8_t *s = pclip__calloc(n ? n : 1, 1);
    if (!s) return NULL;
    uint8_t *p = s;
    for (int64_t i = 0; i < ds->n_images; i++)
        if (f->image_row[i] < 0) {
            uint32_t len = (uint32_t)(r->why[i] ? strlen(r->why[i]) : 0);
            if (len > PCLIP__FEATURES_LIMIT_MESSAGE) len = PCLIP__FEATURES_LIMIT_MESSAGE;
            memcpy(p, &i, 8);
            memcpy(p + 8, &len, 4);
            if (len) memcpy(p + 12, r->why[i], len);
            p += 12 + len;
        }
    *bytes = n;
    return s;
}

static pclip_status write_cache(run *r, pclip__features *f) {
    pclip__features_header h;
    memset(&h, 0, sizeof h);
    uint8_t *skips = skip_section(r, f, &h.skip_bytes, &h.n_skipped);
    if (!skips) return oom(r, "cache");
    memcpy(h.magic, PCLIP__FEATURES_MAGIC, 8);
    h.version = PCLIP__FEATURES_VERSION;
    h.header_bytes = PCLIP__FEATURES_HEADER;
    memcpy(h.key, f->key, 32);
    h.n_images = r->ds->n_images;
    h.n_pairs = r->ds->n_pairs;
    h.image_rows = f->n_images;
    h.text_rows = f->n_pairs;
    h.dv = f->dv;
    h.dt = f->dt;
    size_t row_bytes = (size_t)h.n_images * sizeof(int64_t);
    size_t iv = (size_t)f->n_images * (size_t)f->dv * sizeof(float);
    size_t tv = (size_t)f->n_pairs * (size_t)f->dt * sizeof(float);
    uint64_t ph = pclip__hash64(f->image_row, row_bytes, 0);
    ph = pclip__hash64(skips, (size_t)h.skip_bytes, ph);
    ph = pclip__hash64(f->image_feats, iv, ph);
    h.payload_hash = pclip__hash64(f->text_feats, tv, ph);
    h.header_hash = pclip__hash64(&h, offsetof(pclip__features_header, header_hash), 0);
    pclip__atomic_file af;
    pclip_status st = pclip__atomic_open(r->ctx, f->cache_path, &af);
    if (!st) {
        if ((st = pclip__atomic_write(r->ctx, &af, &h, sizeof h)) ||
            (st = pclip__atomic_write(r->ctx, &af, f->image_row, row_bytes)) ||
            (st = pclip__atomic_write(r->ctx, &af, skips, (size_t)h.skip_bytes)) ||
            (st = pclip__atomic_write(r->ctx, &af, f->image_feats, iv)) ||
            (st = pclip__atomic_write(r->ctx, &af, f->text_feats, tv)))
            pclip__atomic_abort(&af);
        else
            st = pclip__atomic_commit(r->ctx, &af);
    }
    pclip__free(skips);
    return st;
}

/* Checks the whole cache file in buf and, when it is good, fills the run's
 * image_row and why[] from it; otherwise says why in `note`. */
static bool cache_parse(run *r, const pclip__features *f, const uint8_t *buf, size_t size,
                        char *note, size_t note_cap, size_t *img_off, size_t *txt_off) {
    const pclip__dataset *ds = r->ds;
    pclip__features_header h;
    if (size < sizeof h) {
        snprintf(note, note_cap, "shorter than its header (%zu bytes)", size);
        return false;
    }
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, PCLIP__FEATURES_MAGIC, 8) != 0 || h.version != PCLIP__FEATURES_VERSION ||
        h.header_bytes != PCLIP__FEATURES_HEADER) {
        snprintf(note, note_cap, "not a feature cache of this version");
        return false;
    }
    if (h.header_hash != pclip__hash64(&h, offsetof(pclip__features_header, header_hash), 0)) {
        snprintf(note, note_cap, "its header is corrupt");
        return false;
    }
    if (memcmp(h.key, f->key, 32) != 0 || h.n_images != ds->n_images ||
        h.n_pairs != ds->n_pairs || h.dv != f->dv || h.dt != f->dt) {
        snprintf(note, note_cap, "made for other data or another model");
        return false;
    }
    size_t rows_b = 0, iv = 0, tv = 0;
    bool fits = h.image_rows >= 0 && h.image_rows <= h.n_images && h.text_rows >= 0 &&
                h.text_rows <= h.n_pairs && h.n_skipped == h.n_images - h.image_rows &&
                h.skip_bytes <= size && h.skip_bytes % 8 == 0 &&
                pclip__mul_size((size_t)h.n_images, 8, &rows_b) &&
                pclip__mul3_size((size_t)h.image_rows, (size_t)h.dv, 4, &iv) &&
                pclip__mul3_size((size_t)h.text_rows, (size_t)h.dt, 4, &tv);
    /* the parts, each checked against what is left of the file */
    size_t left = size - sizeof h;
    const size_t parts[4] = {rows_b, (size_t)h.skip_bytes, iv, tv};
    for (int i = 0; i < 4 && fits; i++) {
        fits = parts[i] <= left;
        left -= fits ? parts[i] : 0;
    }
    fits = fits && left == 0;
    if (!fits) {
        snprintf(note, note_cap, "its sizes do not add up (%zu bytes; short or truncated?)",
                 size);
        return false;
    }
    const uint8_t *rows = buf + sizeof h, *skips = rows + rows_b;
    uint64_t ph = pclip__hash64(rows, rows_b, 0);
    ph = pclip__hash64(skips, (size_t)h.skip_bytes, ph);
    ph = pclip__hash64(skips + h.skip_bytes, iv, ph);
    if (pclip__hash64(skips + h.skip_bytes + iv, tv, ph) != h.payload_hash) {
        snprintf(note, note_cap, "its contents are corrupt (checksum)");
        return false;
    }
    /* the hash holds, so these only fail for a file made by other code */
    int64_t next = 0, kept = 0;
    for (int64_t i = 0; i < ds->n_images; i++) {
        int64_t v;
        memcpy(&v, rows + i * 8, 8);
        if (v != -1 && v != next) {
            snprintf(note, note_cap, "its image rows are out of order");
            return false;
        }
        r->image_row[i] = v;
        next += v >= 0;
    }
    for (int64_t i = 0; i < ds->n_pairs; i++) kept += r->image_row[ds->pairs[i].image] >= 0;
    if (next != h.image_rows || kept != h.text_rows) {
        snprintf(note, note_cap, "its row counts disagree with its image rows");
        return false;
    }
    /* the skipped list: checked whole before anything is taken from it */
    const uint8_t *end = skips + h.skip_bytes;
    for (int pass = 0; pass < 2; pass++) {
        const uint8_t *p = skips;
        int64_t last = -1;
        for (int64_t k = 0; k < h.n_skipped; k++) {
            int64_t img;
            uint32_t len;
            if ((size_t)(end - p) < 12) {
                snprintf(note, note_cap, "its list of skipped images is cut short");
                return false;
            }
            memcpy(&img, p, 8);
            memcpy(&len, p + 8, 4);
            if (img <= last || img >= ds->n_images || r->image_row[img] >= 0 ||
                len > PCLIP__FEATURES_LIMIT_MESSAGE || len > (size_t)(end - p) - 12 ||
                memchr(p + 12, '\0', len)) {
                snprintf(note, note_cap, "its list of skipped images is malformed");
                return false;
            }
            if (pass == 1) {
                char *why = pclip__strndup((const char *)p + 12, len);
                if (!why) {
                    r->oom = true;
                    return false;
                }
                pclip__free(r->why[img]);
                r->why[img] = why;
            }
            last = img;
            p += 12 + len;
        }
        /* then only the zero padding to 8 bytes */
        bool pad_ok = (size_t)(end - p) < 8;
        for (const uint8_t *q = p; pad_ok && q < end; q++) pad_ok = *q == 0;
        if (!pad_ok) {
            snprintf(note, note_cap, "its list of skipped images has trailing bytes");
            return false;
        }
    }
    *img_off = sizeof h + rows_b + (size_t)h.skip_bytes;
    *txt_off = *img_off + iv;
    return true;
}

/* A hit fills f completely; a miss leaves f's arrays empty, with the reason
 * in f->cache_note when a file was there. */
static pclip_status read_cache(run *r, pclip__features *f) {
    struct stat s;
    if (stat(f->cache_path, &s) != 0) return PCLIP_STATUS_OK; /* a plain miss */
    pclip__err_kept kept;
    pclip__err_keep(r->ctx, &kept);
    char *buf = NULL;
    size_t size = 0;
    pclip_status st = pclip__read_file(r->ctx, f->cache_path, "feature cache", SIZE_MAX / 2,
                                       &buf, &size);
    if (st == PCLIP_STATUS_OUT_OF_MEMORY) return st;
    if (st) {
        snprintf(f->cache_note, sizeof f->cache_note, "%s; rebuilt", pclip_ctx_last_error(r->ctx));
        pclip__err_restore(r->ctx, &kept);
        return PCLIP_STATUS_OK;
    }
    char note[256];
    size_t io = 0, to = 0;
    bool ok = cache_parse(r, f, (const uint8_t *)buf, size, note, sizeof note, &io, &to);
    if (ok) {
        ok = !(st = assemble(r, f));
        if (ok) {
            f->image_feats = alloc_rows(f->n_images, f->dv, sizeof(float));
            f->text_feats = alloc_rows(f->n_pairs, f->dt, sizeof(float));
            if (!f->image_feats || !f->text_feats) {
                st = oom(r, "cache");
            } else {
                memcpy(f->image_feats, buf + io, (size_t)f->n_images * (size_t)f->dv * 4);
                memcpy(f->text_feats, buf + to, (size_t)f->n_pairs * (size_t)f->dt * 4);
                f->cache_hit = 1;
            }
        }
    } else if (r->oom) {
        st = oom(r, "cache");
    } else {
        snprintf(f->cache_note, sizeof f->cache_note, "feature cache '%s' ignored: %s; rebuilt",
                 f->cache_path, note);
    }
    pclip__free(buf);
    return st;
}

/* ---- the call ---- */

static pclip_status compute(run *r, const char *cache_dir, pclip__features *f) {
    const pclip__dataset *ds = r->ds;
    pclip_status st;
    r->img = alloc_rows(ds->n_images, 1, sizeof *r->img);
    r->why = pclip__calloc((size_t)ds->n_images, sizeof *r->why);
    r->image_row = alloc_rows(ds->n_images, 1, sizeof *r->image_row);
    if (!r->img || !r->why || !r->image_row) return oom(r, "images");
    if ((st = tokenize(r)) || (st = stat_images(r)) || (st = make_key(r, f->key))) return st;
    if (cache_dir) {
        if ((st = make_dirs(r->ctx, cache_dir))) return st;
        char name[64];
        snprintf(name, sizeof name, "features-%s.bin", f->key);
        if (!(f->cache_path = pclip__path_join(cache_dir, name))) return oom(r, "cache path");
        if ((st = read_cache(r, f))) return st;
        if (f->cache_hit) return PCLIP_STATUS_OK;
    }
    if ((st = compute_images(r))) return st;
    if ((st = assemble(r, f))) return st;
    /* (sized for every image that could be stat'ed: the undecodable ones'
     * rows stay unused at the end) */
    f->image_feats = r->image_feats;
    r->image_feats = NULL;
    if (f->n_images == 0)
        return pclip__err(r->ctx, PCLIP_STATUS_IO,
                          "%s: none of its %lld image%s could be read; the first: %s", ds->path,
                          (long long)ds->n_images, ds->n_images == 1 ? "" : "s",
                          f->n_skipped ? f->skipped[0].message : "?");
    if ((st = compute_texts(r, f))) return st;
    if (f->cache_path) {
        pclip__err_kept kept;
        pclip__err_keep(r->ctx, &kept);
        if ((st = write_cache(r, f)) == PCLIP_STATUS_OUT_OF_MEMORY) return st;
        if (st) {
            snprintf(f->cache_note, sizeof f->cache_note, "not cached: %s",
                     pclip_ctx_last_error(r->ctx));
            pclip__err_restore(r->ctx, &kept);
        } else {
            f->cache_written = 1;
        }
    }
    return PCLIP_STATUS_OK;
}

pclip_status pclip__features_compute(pclip_model_t model, pclip_backend_t b,
                                     const pclip__dataset *ds, const char *cache_dir,
                                     const pclip__features_options *opts, pclip__features **out) {
    if (!model) return PCLIP_STATUS_INVALID_ARGUMENT;
    pclip_ctx_t ctx = model->ctx;
    if (!b || !ds || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "features: NULL backend, dataset or output");
    run r = {.m = model, .ctx = ctx, .b = b, .ds = ds};
    if (opts) r.o = *opts;
    if (r.o.batch_size < 0 || r.o.batch_size > PCLIP_ENCODE_BATCH_MAX)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "features: batch size %d is outside 1..%d", (int)r.o.batch_size,
                          PCLIP_ENCODE_BATCH_MAX);
    if ((unsigned)r.o.preprocess >= PCLIP_PREPROCESS_COUNT)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "features: unknown preprocessing mode %d", (int)r.o.preprocess);
    if (!model->tokenizer || model->n_shards == 0)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "features: model '%s' was loaded without its %s", model->dir,
                          model->tokenizer ? "weights" : "tokenizer");
    if (cache_dir && !*cache_dir)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "features: empty cache folder name");
    if (ds->n_pairs > INT32_MAX)
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "%s: too many pairs", ds->path);
    r.dv = model->config.vision.hidden_size;
    r.dt = model->config.text.hidden_size;
    r.n_ctx = model->config.text.max_position_embeddings;
    pclip__features *f = pclip__calloc(1, sizeof *f);
    if (!f) return oom(&r, "result");
    f->dv = r.dv;
    f->dt = r.dt;
    pclip_status st = compute(&r, cache_dir, f);
    pclip__free(r.ids);
    pclip__free(r.img);
    if (r.why)
        for (int64_t i = 0; i < ds->n_images; i++) pclip__free(r.why[i]);
    pclip__free(r.why);
    pclip__free(r.image_row);
    pclip__free(r.batch_image);
    pclip__free(r.image_feats);
    if (st) {
        pclip__features_destroy(f);
        return st;
    }
    *out = f;
    return PCLIP_STATUS_OK;
}

/* ---- train / validation split ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void pclip__split_destroy(pclip__split *s) {
    if (!s) return;
    pclip__free(s->train);
    pclip__free(s->val);
    pclip__free(s);
}

pclip_status pclip__features_split(pclip_ctx_t ctx, const pclip__features *f, double val_fraction,
                                   uint64_t seed, pclip__split **out) {
    if (!f || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "split: NULL features or output");
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "split: validation fraction %g is outside [0, 1)", val_fraction);
    int64_t n = f->n_images;
    if (val_fraction > 0.0 && n < 2)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "split: a validation fraction of %g needs at least 2 images; the data "
                          "has %lld",
                          val_fraction, (long long)n);
    int64_t n_val = 0;
    if (val_fraction > 0.0) {
        n_val = (int64_t)floor(val_fraction * (double)n + 0.5);
        if (n_val < 1) n_val = 1;
        if (n_val > n - 1) n_val = n - 1;
    }
    pclip__split *s = pclip__calloc(1, sizeof *s);
    int64_t *perm = alloc_rows(n, 1, sizeof *perm);
    uint8_t *is_val = pclip__calloc((size_t)(n ? n : 1), 1);
    if (!s || !perm || !is_val) {
        pclip__free(perm);
        pclip__free(is_val);
        pclip__split_destroy(s);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "split: out of memory");
    }
    /* Fisher-Yates from the end; the modulo's bias is below 2^-32 for any
     * realistic image count */
    uint64_t state = seed;
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix64(&state) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t k = 0; k < n_val; k++) is_val[perm[k]] = 1;
    for (int64_t p = 0; p < f->n_pairs; p++) s->n_val += is_val[f->pair_image[p]];
    s->n_train = f->n_pairs - s->n_val;
    s->n_val_images = n_val;
    s->train = alloc_rows(s->n_train, 1, sizeof *s->train);
    s->val = alloc_rows(s->n_val, 1, sizeof *s->val);
    pclip__free(perm);
    if (!s->train || !s->val) {
        pclip__free(is_val);
        pclip__split_destroy(s);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "split: out of memory");
    }
    int64_t a = 0, v = 0;
    for (int64_t p = 0; p < f->n_pairs; p++) {
        if (is_val[f->pair_image[p]]) s->val[v++] = p;
        else s->train[a++] = p;
    }
    pclip__free(is_val);
    *out = s;
    return PCLIP_STATUS_OK;
}
