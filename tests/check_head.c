/* Trained projection heads: the safetensors writer (round trip through the
 * reader), the Hugging Face directory export of a linear head (every
 * checkpoint form: F32, F16, BF16, sharded), and the MLP head (files, checks,
 * embeddings through the API and the CLI against a reference computed here
 * in double from the pooled features, index and search refusing a model
 * without the head they were made with).
 *
 * `check_head cpu` runs everything; `check_head vulkan|opencl` the head's
 * embedding comparison on that backend; `check_head python` reads an
 * exported file with Python and PyTorch (skipped when /usr/bin/python3 has
 * no torch). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/export.h"
#include "model/head.h"
#include "model/model.h"
#include "testutil.h"

static pclip_ctx_t ctx;
static const char *backend = "cpu";
static int32_t test_device;

static void setup(void) { ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK); }
static void teardown(void) { pclip_ctx_destroy(ctx); }

#define ck_assert_err_has(needle)                                                                  \
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), needle) != NULL, "message '%s' lacks '%s'",    \
                  pclip_ctx_last_error(ctx), needle)

static char *tmpdir(void) { return strdup(pclip_test_tmpdir()); }

static void rm_tree(char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* xorshift64*: fixed seeds, the same numbers on every run */
static uint64_t rng_state;
static float rnd(float scale) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return scale * (float)((double)(r >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

/* ---- the safetensors writer ---- */

START_TEST(test_st_write_roundtrip) {
    char *dir = tmpdir();
    char *path = join(dir, "x.safetensors");
    float a[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 7};
    uint16_t h[5] = {0x3c00, 0xc000, 0x7bff, 1, 0x8000}; /* F16 bits */
    uint16_t bf = 0x3f80;                                /* BF16 1.0, a scalar */
    int64_t ids[2] = {-5, 1ll << 40};
    pclip__st_out t[] = {
        {.name = "zeta \"quoted\"", .dtype = PCLIP__ST_F16, .ndim = 1, .shape = {5}, .data = h},
        {.name = "alpha", .dtype = PCLIP__ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "scalar", .dtype = PCLIP__ST_BF16, .ndim = 0, .data = &bf},
        {.name = "ids", .dtype = PCLIP__ST_I64, .ndim = 1, .shape = {2}, .data = ids},
        {.name = "empty", .dtype = PCLIP__ST_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
    };
    static const char *const meta[] = {"format", "pt", NULL};
    ck_assert_status(ctx, pclip__st_write(ctx, path, 5, t, meta), PCLIP_STATUS_OK);
    size_t len;
    char *bytes = pclip_test_read_file(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (uint8_t)bytes[i];
    ck_assert_uint_eq(hlen % 8, 0);
    ck_assert_msg(strncmp(bytes + 8, "{\"__metadata__\":{\"format\":\"pt\"},", 32) == 0,
                  "header starts '%.40s'", bytes + 8);
    /* largest dtype first: I64, then F32 by name, then the 2-byte ones */
    char *p_ids = strstr(bytes + 8, "\"ids\""), *p_alpha = strstr(bytes + 8, "\"alpha\"");
    char *p_scalar = strstr(bytes + 8, "\"scalar\"");
    ck_assert(p_ids && p_alpha && p_scalar && p_ids < p_alpha && p_alpha < p_scalar);
    ck_assert_uint_eq(len, 8 + hlen + 16 + 24 + 0 + 10 + 2);
    free(bytes);

    pclip__st_file *f;
    ck_assert_status(ctx, pclip__st_open(ctx, path, &f), PCLIP_STATUS_OK);
    ck_assert_uint_eq(f->n_tensors, 5);
    for (int i = 0; i < 5; i++) {
        const pclip__st_tensor *r = pclip__st_find(f, t[i].name);
        ck_assert_msg(r != NULL, "tensor '%s' missing", t[i].name);
        ck_assert_int_eq(r->dtype, t[i].dtype);
        ck_assert_int_eq(r->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) ck_assert_int_eq(r->shape[d], t[i].shape[d]);
        if (r->nbytes) ck_assert_int_eq(memcmp(r->data, t[i].data, r->nbytes), 0);
        /* every tensor aligned to its dtype in the file */
        size_t off = (size_t)(r->data - f->map.data);
        ck_assert_uint_eq(off % pclip__st_dtype_size(r->dtype), 0);
    }
    pclip__st_close(f);

    /* without metadata: the header has none */
    ck_assert_status(ctx, pclip__st_write(ctx, path, 1, &t[1], NULL), PCLIP_STATUS_OK);
    bytes = pclip_test_read_file(path, &len);
    ck_assert_ptr_null(strstr(bytes + 8, "__metadata__"));
    free(bytes);
    free(path);
    rm_tree(dir);
}
END_TEST

START_TEST(test_st_write_errors) {
    char *dir = tmpdir();
    char *path = join(dir, "bad.safetensors");
    float a[2] = {1, 2};
    pclip__st_out dup[2] = {
        {.name = "w", .dtype = PCLIP__ST_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "w", .dtype = PCLIP__ST_F16, .ndim = 1, .shape = {2}, .data = a},
    };
    ck_assert_status(ctx, pclip__st_write(ctx, path, 2, dup, NULL), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has("'w' given twice");
    pclip__st_out noname = {.name = "", .dtype = PCLIP__ST_F32, .ndim = 1, .shape = {2}, .data = a};
    ck_assert_status(ctx, pclip__st_write(ctx, path, 1, &noname, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    pclip__st_out nodata = {.name = "v", .dtype = PCLIP__ST_F32, .ndim = 1, .shape = {2}};
    ck_assert_status(ctx, pclip__st_write(ctx, path, 1, &nodata, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has("'v'");
    pclip__st_out neg = {.name = "n", .dtype = PCLIP__ST_F32, .ndim = 1, .shape = {-1}, .data = a};
    ck_assert_status(ctx, pclip__st_write(ctx, path, 1, &neg, NULL), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(access(path, F_OK) != 0, "a refused write left a file");
    /* a directory that does not exist: IO, nothing left behind */
    char *missing = join(dir, "no/such/x.safetensors");
    ck_assert_int_ne(pclip__st_write(ctx, missing, 1, &dup[0], NULL), PCLIP_STATUS_OK);
    free(missing);
    free(path);
    rm_tree(dir);
}
END_TEST

/* ---- export of a linear head as a Hugging Face directory ---- */

static const char *const export_models[] = {"tiny-clip", "tiny-clip-sharded", "tiny-clip-f16",
                                            "tiny-clip-bf16"};

static pclip_backend_t open_backend(void) {
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
    return b;
}

/* n texts' ids for model m. */
static int32_t *text_ids(pclip_model_t m, int32_t *n_out) {
    static const char *const texts[] = {"a photo of a cat", "two dogs", "", "a red car on a road"};
    int32_t n = 4, L = pclip_model_config(m)->text.max_position_embeddings;
    int32_t *ids = malloc((size_t)n * (size_t)L * sizeof *ids);
    for (int32_t i = 0; i < n; i++)
        ck_assert_status(ctx,
                         pclip_tokenizer_encode(pclip_model_tokenizer(m), texts[i],
                                                strlen(texts[i]), ids + (size_t)i * L, L, NULL),
                         PCLIP_STATUS_OK);
    *n_out = n;
    return ids;
}

/* n images of pseudo-random pixels for model m. */
static float *image_pixels(pclip_model_t m, int32_t n) {
    const pclip_tower_config *v = &pclip_model_config(m)->vision;
    size_t count = (size_t)n * 3 * (size_t)v->image_size * (size_t)v->image_size;
    float *px = malloc(count * sizeof *px);
    rng_state = 0x1234567;
    for (size_t i = 0; i < count; i++) px[i] = rnd(2.0f);
    return px;
}

/* Embeddings of texts and images: [n_text + n_img, dim], normalised or not. */
static float *embed_all(pclip_model_t m, pclip_backend_t b, uint32_t flags, int32_t *rows,
                        int32_t *cols) {
    int32_t nt, ni = 3;
    int32_t *ids = text_ids(m, &nt);
    float *px = image_pixels(m, ni);
    const pclip_config *c = pclip_model_config(m);
    bool pooled = flags & PCLIP_ENCODE_POOLED;
    int32_t dt = pooled ? c->text.hidden_size : pclip_model_embed_dim(m);
    int32_t dv = pooled ? c->vision.hidden_size : pclip_model_embed_dim(m);
    int32_t d = dt > dv ? dt : dv;
    float *out = calloc((size_t)(nt + ni) * (size_t)d, sizeof *out);
    float *tmp = malloc((size_t)(nt + ni) * (size_t)d * sizeof *tmp);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, nt, flags, tmp), PCLIP_STATUS_OK);
    for (int32_t r = 0; r < nt; r++) memcpy(out + (size_t)r * d, tmp + (size_t)r * dt, dt * 4);
    ck_assert_status(ctx, pclip_model_encode_images(m, b, px, ni, flags, tmp), PCLIP_STATUS_OK);
    for (int32_t r = 0; r < ni; r++)
        memcpy(out + (size_t)(nt + r) * d, tmp + (size_t)r * dv, dv * 4);
    free(tmp);
    free(ids);
    free(px);
    *rows = nt + ni;
    *cols = d;
    return out;
}

/* The checkpoint tensor `name` of m as float32. */
static float *tensor_f32(pclip_model_t m, const char *name, const pclip__st_tensor **t_out) {
    const pclip__st_tensor *t = pclip__model_find(m, name);
    ck_assert_msg(t != NULL, "tensor '%s' missing", name);
    float *v = malloc(t->count * sizeof *v);
    ck_assert_status(ctx, pclip__st_to_f32(ctx, t, v), PCLIP_STATUS_OK);
    if (t_out) *t_out = t;
    return v;
}

static void fill_rep(pclip__export_tensor *r, const char *name, const pclip__st_tensor *t,
                     const float *data) {
    memset(r, 0, sizeof *r);
    r->name = name;
    r->data = data;
    r->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) r->shape[d] = t->shape[d];
}

static bool file_same(const char *a, const char *b) {
    size_t la, lb;
    char *x = pclip_test_read_file(a, &la), *y = pclip_test_read_file(b, &lb);
    bool same = la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* Replacements equal to the originals: every tensor keeps its bytes (the
 * replaced ones their values, as F32), the side files are copied, and the
 * embeddings are bit-identical. */
START_TEST(test_export_identity) {
    const char *src = pclip_test_fixture(export_models[_i]);
    pclip_model_t m, e;
    ck_assert_status(ctx, pclip_model_load(ctx, src, &m), PCLIP_STATUS_OK);
    char *dir = tmpdir();
    char *out = join(dir, "exported"); /* created by the export */
    static const char *const names[] = {"visual_projection.weight", "text_projection.weight",
                                        "logit_scale"};
    pclip__export_tensor rep[3];
    float *vals[3];
    for (int i = 0; i < 3; i++) {
        const pclip__st_tensor *t;
        vals[i] = tensor_f32(m, names[i], &t);
        fill_rep(&rep[i], names[i], t, vals[i]);
    }
    ck_assert_status(ctx, pclip__export_hf_dir(m, out, 3, rep), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_load(ctx, out, &e), PCLIP_STATUS_OK);
    ck_assert_uint_eq(e->n_shards, 1);
    ck_assert_uint_eq(pclip_model_tensor_count(e), pclip_model_tensor_count(m));
    size_t total = 0;
    for (size_t s = 0; s < m->n_shards; s++) {
        for (size_t j = 0; j < m->shards[s]->n_tensors; j++, total++) {
            const pclip__st_tensor *a = &m->shards[s]->tensors[j];
            const pclip__st_tensor *b = pclip__model_find(e, a->name);
            ck_assert_msg(b != NULL, "%s: '%s' not exported", export_models[_i], a->name);
            ck_assert_int_eq(a->ndim, b->ndim);
            for (int d = 0; d < a->ndim; d++) ck_assert_int_eq(a->shape[d], b->shape[d]);
            int r = -1;
            for (int i = 0; i < 3; i++)
                if (strcmp(a->name, names[i]) == 0) r = i;
            if (r < 0) {
                ck_assert_int_eq(a->dtype, b->dtype);
                ck_assert_msg(memcmp(a->data, b->data, a->nbytes) == 0, "'%s' bytes differ",
                              a->name);
            } else {
                ck_assert_int_eq(b->dtype, PCLIP__ST_F32);
                ck_assert_msg(memcmp(b->data, vals[r], b->nbytes) == 0, "'%s' values differ",
                              a->name);
            }
        }
    }
    ck_assert_uint_eq(e->shards[0]->n_tensors, total);
    static const char *const files[] = {"config.json",
                                        "vocab.json",
                                        "merges.txt",
                                        "special_tokens_map.json",
                                        "tokenizer_config.json",
                                        "preprocessor_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *a = join(src, files[i]), *b = join(out, files[i]);
        if (access(a, F_OK) == 0)
            ck_assert_msg(file_same(a, b), "%s differs after the export", files[i]);
        else
            ck_assert_msg(access(b, F_OK) != 0, "%s appeared from nowhere", files[i]);
        free(a);
        free(b);
    }
    char *idx = join(out, "model.safetensors.index.json");
    ck_assert_msg(access(idx, F_OK) != 0, "an index json was written");
    free(idx);
    pclip_backend_t b = open_backend();
    int32_t rows, cols, rows2, cols2;
    float *x = embed_all(m, b, PCLIP_ENCODE_NORMALIZE, &rows, &cols);
    float *y = embed_all(e, b, PCLIP_ENCODE_NORMALIZE, &rows2, &cols2);
    ck_assert_int_eq(rows, rows2);
    ck_assert_msg(memcmp(x, y, (size_t)rows * cols * sizeof *x) == 0,
                  "%s: embeddings of the exported model differ", export_models[_i]);
    ck_assert(pclip_model_logit_scale(m) == pclip_model_logit_scale(e));
    free(x);
    free(y);
    pclip_model_destroy(e);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    for (int i = 0; i < 3; i++) free(vals[i]);
    free(out);
    rm_tree(dir);
}
END_TEST

/* New projections: the exported model's embeddings are the pooled features
 * times the new weights, normalised (reference in double). */
static void linear_reference(const float *pooled, int32_t rows, int32_t width, const float *w,
                             int32_t dim, double *out) {
    for (int32_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int32_t o = 0; o < dim; o++) {
            double acc = 0;
            for (int32_t k = 0; k < width; k++)
                acc += (double)pooled[(size_t)r * width + k] * w[(size_t)o * width + k];
            out[(size_t)r * dim + o] = acc;
            ss += acc * acc;
        }
        for (int32_t o = 0; o < dim; o++) out[(size_t)r * dim + o] /= sqrt(ss);
    }
}

static double row_rel_err(const float *got, const double *want, int32_t cols) {
    double num = 0, den = 0;
    for (int32_t i = 0; i < cols; i++) {
        double d = got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

START_TEST(test_export_replaced) {
    const char *src = pclip_test_fixture("tiny-clip");
    pclip_model_t m, e;
    ck_assert_status(ctx, pclip_model_load(ctx, src, &m), PCLIP_STATUS_OK);
    const pclip_config *c = pclip_model_config(m);
    int32_t P = c->projection_dim, Wt = c->text.hidden_size, Wv = c->vision.hidden_size;
    float *vw = malloc((size_t)P * Wv * 4), *tw = malloc((size_t)P * Wt * 4), ls = 3.25f;
    rng_state = 99;
    for (int32_t i = 0; i < P * Wv; i++) vw[i] = rnd(0.3f);
    for (int32_t i = 0; i < P * Wt; i++) tw[i] = rnd(0.3f);
    pclip__export_tensor rep[3] = {
        {.name = "visual_projection.weight", .data = vw, .ndim = 2, .shape = {P, Wv}},
        {.name = "text_projection.weight", .data = tw, .ndim = 2, .shape = {P, Wt}},
        {.name = "logit_scale", .data = &ls, .ndim = 0},
    };
    char *dir = tmpdir();
    ck_assert_status(ctx, pclip__export_hf_dir(m, dir, 3, rep), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_load(ctx, dir, &e), PCLIP_STATUS_OK);
    ck_assert(pclip_model_logit_scale(e) == ls);
    pclip_backend_t b = open_backend();
    int32_t nt, ni = 3;
    int32_t *ids = text_ids(m, &nt);
    float *px = image_pixels(m, ni);
    float *pt = malloc((size_t)nt * Wt * 4), *pv = malloc((size_t)ni * Wv * 4);
    float *et = malloc((size_t)nt * P * 4), *ev = malloc((size_t)ni * P * 4);
    double *ref = malloc((size_t)(nt > ni ? nt : ni) * P * sizeof *ref);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, nt, PCLIP_ENCODE_POOLED, pt),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images(m, b, px, ni, PCLIP_ENCODE_POOLED, pv),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_text(e, b, ids, nt, PCLIP_ENCODE_NORMALIZE, et),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images(e, b, px, ni, PCLIP_ENCODE_NORMALIZE, ev),
                     PCLIP_STATUS_OK);
    linear_reference(pt, nt, Wt, tw, P, ref);
    for (int32_t r = 0; r < nt; r++) {
        double err = row_rel_err(et + (size_t)r * P, ref + (size_t)r * P, P);
        ck_assert_msg(err < 1e-5, "text %d: relative error %g", r, err);
    }
    linear_reference(pv, ni, Wv, vw, P, ref);
    for (int32_t r = 0; r < ni; r++) {
        double err = row_rel_err(ev + (size_t)r * P, ref + (size_t)r * P, P);
        ck_assert_msg(err < 1e-5, "image %d: relative error %g", r, err);
    }
    free(ids), free(px), free(pt), free(pv), free(et), free(ev), free(ref), free(vw), free(tw);
    pclip_model_destroy(e);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    rm_tree(dir);
}
END_TEST

START_TEST(test_export_errors) {
    const char *src = pclip_test_fixture("tiny-clip");
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, src, &m), PCLIP_STATUS_OK);
    float v[1] = {1};
    /* the model's own directory, also through another spelling */
    char *same = join(src, ".");
    ck_assert_status(ctx, pclip__export_hf_dir(m, same, 0, NULL), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has("model's own directory");
    free(same);
    char *dir = tmpdir();
    pclip__export_tensor unknown = {
        .name = "visual_projection.bias", .data = v, .ndim = 1, .shape = {1}};
    ck_assert_status(ctx, pclip__export_hf_dir(m, dir, 1, &unknown), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has("visual_projection.bias");
    pclip__export_tensor shape = {
        .name = "text_projection.weight", .data = v, .ndim = 2, .shape = {1, 1}};
    ck_assert_status(ctx, pclip__export_hf_dir(m, dir, 1, &shape), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has("text_projection.weight");
    ck_assert_err_has("[1, 1]");
    pclip__export_tensor twice[2] = {{.name = "logit_scale", .data = v, .ndim = 0},
                                     {.name = "logit_scale", .data = v, .ndim = 1, .shape = {1}}};
    ck_assert_status(ctx, pclip__export_hf_dir(m, dir, 2, twice), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has("twice");
    char *nothing = join(dir, "model.safetensors");
    ck_assert_msg(access(nothing, F_OK) != 0, "a refused export wrote files");
    free(nothing);
    /* a file in the way of the directory */
    char *file = join(dir, "file");
    write_text(file, "x");
    ck_assert_status(ctx, pclip__export_hf_dir(m, file, 0, NULL), PCLIP_STATUS_IO);
    ck_assert_err_has("not a directory");
    free(file);
    pclip_model_destroy(m);
    rm_tree(dir);
}
END_TEST

/* ---- the MLP head ---- */

enum { HEAD_E = 20 };

/* A head for tiny-clip with pseudo-random weights (layer norm gains near 1). */
static pclip__head *random_head(uint64_t seed, int32_t dv, int32_t dt) {
    pclip__head *h;
    ck_assert_status(ctx, pclip__head_create(ctx, HEAD_E, dv, dt, &h), PCLIP_STATUS_OK);
    rng_state = seed;
    pclip__head_tower *tw[2] = {&h->vision, &h->text};
    int32_t d[2] = {dv, dt};
    for (int t = 0; t < 2; t++) {
        for (int32_t i = 0; i < HEAD_E * d[t]; i++) tw[t]->proj_w[i] = rnd(0.4f);
        for (int32_t i = 0; i < HEAD_E * HEAD_E; i++) tw[t]->fc_w[i] = rnd(0.3f);
        for (int32_t i = 0; i < HEAD_E; i++) {
            tw[t]->proj_b[i] = rnd(0.1f);
            tw[t]->fc_b[i] = rnd(0.1f);
            tw[t]->ln_w[i] = 1.0f + rnd(0.2f);
            tw[t]->ln_b[i] = rnd(0.1f);
        }
    }
    h->dropout = 0.1;
    h->layer_norm_eps = 1e-5;
    h->logit_scale = 2.5f;
    return h;
}

/* head.h's forward in double, then L2 normalisation when `norm`. */
static void head_reference(const pclip__head *h, const pclip__head_tower *t, int32_t width,
                           const float *pooled, int32_t rows, bool norm, double *out) {
    int32_t E = h->embed_dim;
    double *p = malloc((size_t)E * sizeof *p), *g = malloc((size_t)E * sizeof *g);
    for (int32_t r = 0; r < rows; r++) {
        const float *x = pooled + (size_t)r * width;
        double *y = out + (size_t)r * E;
        for (int32_t o = 0; o < E; o++) {
            double acc = t->proj_b[o];
            for (int32_t k = 0; k < width; k++)
                acc += (double)x[k] * t->proj_w[(size_t)o * width + k];
            p[o] = acc;
            g[o] = 0.5 * acc * (1.0 + erf(acc / sqrt(2.0)));
        }
        double mean = 0, var = 0;
        for (int32_t o = 0; o < E; o++) {
            double acc = t->fc_b[o] + p[o];
            for (int32_t k = 0; k < E; k++) acc += g[k] * t->fc_w[(size_t)o * E + k];
            y[o] = acc;
            mean += acc;
        }
        mean /= E;
        for (int32_t o = 0; o < E; o++) var += (y[o] - mean) * (y[o] - mean);
        var /= E;
        double ss = 0;
        for (int32_t o = 0; o < E; o++) {
            y[o] = (y[o] - mean) / sqrt(var + h->layer_norm_eps) * t->ln_w[o] + t->ln_b[o];
            ss += y[o] * y[o];
        }
        if (norm)
            for (int32_t o = 0; o < E; o++) y[o] /= sqrt(ss);
    }
    free(p);
    free(g);
}

static char *saved_head(pclip_model_t m, uint64_t seed) {
    const pclip_config *c = pclip_model_config(m);
    pclip__head *h = random_head(seed, c->vision.hidden_size, c->text.hidden_size);
    char *dir = tmpdir();
    char *hd = join(dir, "head");
    free(dir);
    ck_assert_status(ctx, pclip__head_save(ctx, hd, h), PCLIP_STATUS_OK);
    pclip__head_destroy(h);
    return hd;
}

START_TEST(test_head_save_load) {
    pclip__head *h = random_head(7, 48, 40), *r;
    char *dir = tmpdir();
    char *hd = join(dir, "new-dir"); /* created by the save */
    ck_assert_status(ctx, pclip__head_save(ctx, hd, h), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__head_load(ctx, hd, &r), PCLIP_STATUS_OK);
    ck_assert_int_eq(r->embed_dim, HEAD_E);
    ck_assert_int_eq(r->vision_dim, 48);
    ck_assert_int_eq(r->text_dim, 40);
    ck_assert(r->dropout == h->dropout && r->layer_norm_eps == h->layer_norm_eps);
    ck_assert(r->logit_scale == h->logit_scale);
    ck_assert_str_eq(r->dir, hd);
    ck_assert_uint_ne(r->digest, 0);
    ck_assert_int_eq(memcmp(r->vision.proj_w, h->vision.proj_w, HEAD_E * 48 * 4), 0);
    ck_assert_int_eq(memcmp(r->text.proj_w, h->text.proj_w, HEAD_E * 40 * 4), 0);
    ck_assert_int_eq(memcmp(r->text.fc_w, h->text.fc_w, HEAD_E * HEAD_E * 4), 0);
    ck_assert_int_eq(memcmp(r->vision.ln_b, h->vision.ln_b, HEAD_E * 4), 0);
    /* the weights file holds exactly the 13 named F32 tensors */
    char *wp = join(hd, "head.safetensors");
    pclip__st_file *f;
    ck_assert_status(ctx, pclip__st_open(ctx, wp, &f), PCLIP_STATUS_OK);
    ck_assert_uint_eq(f->n_tensors, 13);
    const pclip__st_tensor *t = pclip__st_find(f, "text.projection.weight");
    ck_assert(t && t->dtype == PCLIP__ST_F32 && t->ndim == 2 && t->shape[0] == HEAD_E &&
              t->shape[1] == 40);
    t = pclip__st_find(f, "logit_scale");
    ck_assert(t && t->ndim == 0 && t->count == 1);
    pclip__st_close(f);
    free(wp);
    /* another head: another digest */
    pclip__head *h2 = random_head(8, 48, 40), *r2;
    ck_assert_status(ctx, pclip__head_save(ctx, hd, h2), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__head_load(ctx, hd, &r2), PCLIP_STATUS_OK);
    ck_assert_uint_ne(r->digest, r2->digest);
    pclip__head_destroy(h), pclip__head_destroy(h2), pclip__head_destroy(r),
        pclip__head_destroy(r2);
    free(hd);
    rm_tree(dir);
}
END_TEST

/* Embeddings with a head through the API equal the reference from the
 * pooled features; removing the head gives CLIP's embeddings back. */
START_TEST(test_head_embeddings) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    const pclip_config *c = pclip_model_config(m);
    int32_t Wt = c->text.hidden_size, Wv = c->vision.hidden_size;
    pclip_backend_t b = open_backend();
    int32_t rows, cols;
    float *plain = embed_all(m, b, PCLIP_ENCODE_NORMALIZE, &rows, &cols);
    int32_t nt, ni = 3;
    int32_t *ids = text_ids(m, &nt);
    float *px = image_pixels(m, ni);
    float *pt = malloc((size_t)nt * Wt * 4), *pv = malloc((size_t)ni * Wv * 4);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, nt, PCLIP_ENCODE_POOLED, pt),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images(m, b, px, ni, PCLIP_ENCODE_POOLED, pv),
                     PCLIP_STATUS_OK);
    float before = pclip_model_logit_scale(m);
    char *hd = saved_head(m, 11);
    ck_assert_status(ctx, pclip_model_set_head(m, hd), PCLIP_STATUS_OK);
    ck_assert_str_eq(pclip_model_head(m), hd);
    ck_assert_int_eq(pclip_model_embed_dim(m), HEAD_E);
    ck_assert(pclip_model_logit_scale(m) == 2.5f);
    pclip__head *h = m->head;
    float *et = malloc((size_t)nt * HEAD_E * 4), *ev = malloc((size_t)ni * HEAD_E * 4);
    double *ref = malloc((size_t)(nt + ni) * HEAD_E * sizeof *ref);
    for (int norm = 0; norm < 2; norm++) {
        uint32_t flags = norm ? PCLIP_ENCODE_NORMALIZE : 0;
        ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, nt, flags, et), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip_model_encode_images(m, b, px, ni, flags, ev), PCLIP_STATUS_OK);
        head_reference(h, &h->text, Wt, pt, nt, norm, ref);
        for (int32_t r = 0; r < nt; r++) {
            double err = row_rel_err(et + (size_t)r * HEAD_E, ref + (size_t)r * HEAD_E, HEAD_E);
            ck_assert_msg(err < 1e-5, "%s: text %d (norm %d): relative error %g", backend, r, norm,
                          err);
        }
        head_reference(h, &h->vision, Wv, pv, ni, norm, ref);
        for (int32_t r = 0; r < ni; r++) {
            double err = row_rel_err(ev + (size_t)r * HEAD_E, ref + (size_t)r * HEAD_E, HEAD_E);
            ck_assert_msg(err < 1e-5, "%s: image %d (norm %d): relative error %g", backend, r, norm,
                          err);
        }
    }
    /* the pooled features do not change with a head */
    float *pv2 = malloc((size_t)ni * Wv * 4);
    ck_assert_status(ctx, pclip_model_encode_images(m, b, px, ni, PCLIP_ENCODE_POOLED, pv2),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(memcmp(pv, pv2, (size_t)ni * Wv * 4), 0);
    /* a failed set keeps the head in use */
    ck_assert_int_ne(pclip_model_set_head(m, "/nonexistent-head-dir"), PCLIP_STATUS_OK);
    ck_assert_str_eq(pclip_model_head(m), hd);
    /* and without it, CLIP's own embeddings, bit for bit */
    ck_assert_status(ctx, pclip_model_set_head(m, NULL), PCLIP_STATUS_OK);
    ck_assert_ptr_null(pclip_model_head(m));
    ck_assert(pclip_model_logit_scale(m) == before);
    int32_t rows2, cols2;
    float *again = embed_all(m, b, PCLIP_ENCODE_NORMALIZE, &rows2, &cols2);
    ck_assert_int_eq(memcmp(plain, again, (size_t)rows * cols * 4), 0);
    free(plain), free(again), free(ids), free(px), free(pt), free(pv), free(pv2), free(et),
        free(ev), free(ref);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    char *parent = strdup(hd);
    *strrchr(parent, '/') = '\0';
    rm_tree(parent);
    free(hd);
}
END_TEST

/* ---- the CLI ---- */

static int run_cli(char *out_err[2], const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_cli(char *out_err[2], const char *fmt, ...) {
    char cmd[8192];
    int n = snprintf(cmd, sizeof cmd, "PORTCLIP_BACKEND=cpu '%s' ", pclip_test_cli());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    va_end(ap);
    return pclip_test_sh(cmd, &out_err[0], &out_err[1]);
}

static void free_out(char *oe[2]) {
    free(oe[0]);
    free(oe[1]);
    oe[0] = oe[1] = NULL;
}

/* portclip embed-image/embed-text --head equal the reference from the pooled
 * features of the same images and texts. */
START_TEST(test_head_cli_embed) {
    char *model = strdup(pclip_test_fixture("tiny-clip")); /* the fixture buffers rotate */
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, model, &m), PCLIP_STATUS_OK);
    char *hd = saved_head(m, 21);
    char *dir = tmpdir();
    static const char *const imgs[] = {"images/j_32x32.jpg", "images/j_47x32.jpg",
                                       "images/j_grey_64x48.jpg"};
    char *oe[2];
    char *npy = join(dir, "img.npy"), *tnpy = join(dir, "txt.npy");
    int rc = run_cli(oe, "embed-image --model '%s' --head '%s' --output '%s' '%s' '%s' '%s'", model,
                     hd, npy, pclip_test_fixture(imgs[0]), pclip_test_fixture(imgs[1]),
                     pclip_test_fixture(imgs[2]));
    ck_assert_msg(rc == 0, "embed-image failed: %s", oe[1]);
    free_out(oe);
    rc = run_cli(oe, "embed-text --model '%s' --head '%s' --output '%s' 'a cat' 'two dogs'", model,
                 hd, tnpy);
    ck_assert_msg(rc == 0, "embed-text failed: %s", oe[1]);
    free_out(oe);
    pclip_test_npy got, gott;
    pclip_test_npy_read(npy, &got);
    pclip_test_npy_read(tnpy, &gott);
    ck_assert_int_eq(got.ndim, 2);
    ck_assert_int_eq(got.shape[0], 3);
    ck_assert_int_eq(got.shape[1], HEAD_E);
    ck_assert_int_eq(gott.shape[0], 2);
    ck_assert_int_eq(gott.shape[1], HEAD_E);
    /* the reference: pooled features through the library, the head in double */
    const pclip_config *c = pclip_model_config(m);
    int32_t S = c->vision.image_size, Wv = c->vision.hidden_size, Wt = c->text.hidden_size;
    float *px = malloc(3 * 3 * (size_t)S * S * 4), *pv = malloc(3 * (size_t)Wv * 4);
    for (int i = 0; i < 3; i++) {
        pclip_image *img;
        ck_assert_status(ctx, pclip_image_load(ctx, pclip_test_fixture(imgs[i]), &img),
                         PCLIP_STATUS_OK);
        ck_assert_status(ctx,
                         pclip_image_preprocess(ctx, img, pclip_model_image_config(m),
                                                PCLIP_PREPROCESS_OPENAI,
                                                px + (size_t)i * 3 * S * S),
                         PCLIP_STATUS_OK);
        pclip_image_destroy(img);
    }
    pclip_backend_t b = open_backend();
    ck_assert_status(ctx, pclip_model_encode_images(m, b, px, 3, PCLIP_ENCODE_POOLED, pv),
                     PCLIP_STATUS_OK);
    pclip__head *h;
    ck_assert_status(ctx, pclip__head_load(ctx, hd, &h), PCLIP_STATUS_OK);
    double ref[3 * HEAD_E];
    head_reference(h, &h->vision, Wv, pv, 3, true, ref);
    for (int r = 0; r < 3; r++) {
        double err = row_rel_err(got.data + (size_t)r * HEAD_E, ref + (size_t)r * HEAD_E, HEAD_E);
        ck_assert_msg(err < 1e-5, "image %d: relative error %g", r, err);
    }
    int32_t L = c->text.max_position_embeddings;
    int32_t *ids = malloc(2 * (size_t)L * sizeof *ids);
    static const char *const texts[] = {"a cat", "two dogs"};
    for (int i = 0; i < 2; i++)
        ck_assert_status(ctx,
                         pclip_tokenizer_encode(pclip_model_tokenizer(m), texts[i],
                                                strlen(texts[i]), ids + (size_t)i * L, L, NULL),
                         PCLIP_STATUS_OK);
    float *pt = malloc(2 * (size_t)Wt * 4);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 2, PCLIP_ENCODE_POOLED, pt),
                     PCLIP_STATUS_OK);
    head_reference(h, &h->text, Wt, pt, 2, true, ref);
    for (int r = 0; r < 2; r++) {
        double err = row_rel_err(gott.data + (size_t)r * HEAD_E, ref + (size_t)r * HEAD_E, HEAD_E);
        ck_assert_msg(err < 1e-5, "text %d: relative error %g", r, err);
    }
    /* classify uses the head's logit_scale: exp(2.5) * cos */
    rc = run_cli(oe,
                 "classify --model '%s' --head '%s' --labels cat,dog --template '{}' "
                 "--format json '%s'",
                 model, hd, pclip_test_fixture(imgs[0]));
    ck_assert_msg(rc == 0, "classify failed: %s", oe[1]);
    ck_assert_ptr_nonnull(strstr(oe[0], "\"predictions\""));
    free_out(oe);
    rc = run_cli(oe, "score --model '%s' --head '%s' --text cat --format json '%s'", model, hd,
                 pclip_test_fixture(imgs[0]));
    ck_assert_msg(rc == 0, "score failed: %s", oe[1]);
    /* one text: logit = exp(2.5) * cos(image 0, "cat") */
    double cosv = 0;
    float tcat[HEAD_E];
    {
        int32_t *one = malloc((size_t)L * sizeof *one);
        ck_assert_status(ctx,
                         pclip_tokenizer_encode(pclip_model_tokenizer(m), "cat", 3, one, L, NULL),
                         PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip_model_set_head(m, hd), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip_model_encode_text(m, b, one, 1, PCLIP_ENCODE_NORMALIZE, tcat),
                         PCLIP_STATUS_OK);
        free(one);
    }
    for (int i = 0; i < HEAD_E; i++) cosv += (double)tcat[i] * got.data[i];
    const char *lg = strstr(oe[0], "\"logits\": [");
    ck_assert_ptr_nonnull(lg);
    double logit = strtod(lg + strlen("\"logits\": ["), NULL);
    ck_assert_msg(fabs(logit - exp(2.5) * cosv) < 1e-4 * exp(2.5),
                  "score logit %g, expected exp(2.5) * %g", logit, cosv);
    free_out(oe);
    free(px), free(pv), free(pt), free(ids), free(npy), free(tnpy), free(model);
    pclip_test_npy_free(&got);
    pclip_test_npy_free(&gott);
    pclip__head_destroy(h);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    char *parent = strdup(hd);
    *strrchr(parent, '/') = '\0';
    rm_tree(parent);
    free(hd);
    rm_tree(dir);
}
END_TEST

/* portclip verify --head checks both encoders through the head (its rows name
 * the head's width), and --head without --model is a usage error. */
START_TEST(test_head_cli_verify) {
    char *model = strdup(pclip_test_fixture("tiny-clip"));
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, model, &m), PCLIP_STATUS_OK);
    ck_assert_int_ne(pclip_model_embed_dim(m), HEAD_E);
    char *hd = saved_head(m, 23);
    char *oe[2];
    int rc = run_cli(oe, "verify --model '%s' --head '%s' --backend cpu --device 0", model, hd);
    ck_assert_msg(rc == 0, "verify --head failed (%d): %s", rc, oe[1]);
    char want[64];
    snprintf(want, sizeof want, "%d-dim embeddings", HEAD_E);
    const char *row = strstr(oe[0], "text encoder");
    ck_assert_msg(row && strstr(row, want), "no text encoder row with %s:\n%s", want, oe[0]);
    row = strstr(oe[0], "image encoder");
    ck_assert_msg(row && strstr(row, want), "no image encoder row with %s:\n%s", want, oe[0]);
    free_out(oe);
    rc = run_cli(oe, "verify --head '%s' --backend cpu --device 0", hd);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(oe[1], "--head needs --model") != NULL, "stderr: %s", oe[1]);
    free_out(oe);
    pclip_model_destroy(m);
    char *parent = strdup(hd);
    *strrchr(parent, '/') = '\0';
    rm_tree(parent);
    free(hd);
    free(model);
}
END_TEST

/* An index made with a head refuses queries without it and the reverse,
 * naming both; search without --model takes the index's model and head. */
START_TEST(test_head_index_search) {
    char *model = strdup(pclip_test_fixture("tiny-clip"));
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, model, &m), PCLIP_STATUS_OK);
    char *hd = saved_head(m, 31);
    pclip_model_destroy(m);
    char *dir = tmpdir();
    char *with = join(dir, "with-head"), *without = join(dir, "without-head");
    const char *images = pclip_test_fixture("images/j_32x32.jpg");
    const char *images2 = pclip_test_fixture("images/j_47x32.jpg");
    char *oe[2];
    int rc = run_cli(oe, "index --model '%s' --head '%s' --output '%s' '%s' '%s'", model, hd, with,
                     images, images2);
    ck_assert_msg(rc == 0, "index with head failed: %s", oe[1]);
    free_out(oe);
    rc = run_cli(oe, "index --model '%s' --output '%s' '%s' '%s'", model, without, images, images2);
    ck_assert_msg(rc == 0, "index without head failed: %s", oe[1]);
    free_out(oe);
    /* with the head: works, from the index's own record or from --head */
    rc = run_cli(oe, "search --index '%s' --format json 'a cat'", with);
    ck_assert_msg(rc == 0, "search of the head index failed: %s", oe[1]);
    ck_assert_ptr_nonnull(strstr(oe[0], "\"results\""));
    free_out(oe);
    rc = run_cli(oe, "search --index '%s' --model '%s' --head '%s' --format json 'a cat'", with,
                 model, hd);
    ck_assert_msg(rc == 0, "search with --head failed: %s", oe[1]);
    free_out(oe);
    /* the head index without the head */
    rc = run_cli(oe, "search --index '%s' --model '%s' --format json 'a cat'", with, model);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(oe[1], "with head") && strstr(oe[1], hd),
                  "message does not name the index's head: %s", oe[1]);
    free_out(oe);
    /* updating the head index without the head */
    rc = run_cli(oe, "index --model '%s' --output '%s' '%s'", model, with, images);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(oe[1], hd) != NULL, "message does not name the head: %s", oe[1]);
    free_out(oe);
    /* the plain index with a head */
    rc = run_cli(oe, "search --index '%s' --model '%s' --head '%s' --format json 'a cat'", without,
                 model, hd);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(oe[1], "with head") && strstr(oe[1], hd) && strstr(oe[1], model),
                  "message does not name both: %s", oe[1]);
    free_out(oe);
    rc = run_cli(oe, "search --index '%s' --head '%s' --format json 'a cat'", without, hd);
    ck_assert_int_eq(rc, 1);
    free_out(oe);
    rc = run_cli(oe, "search --index '%s' --model '%s' --format json 'a cat'", without, model);
    ck_assert_msg(rc == 0, "plain search failed: %s", oe[1]);
    free_out(oe);
    /* --head is an option of the embedding commands only */
    rc = run_cli(oe, "tokenize --model '%s' --head '%s' hi", model, hd);
    ck_assert_int_eq(rc, 2);
    free_out(oe);
    char *parent = strdup(hd);
    *strrchr(parent, '/') = '\0';
    rm_tree(parent);
    free(hd), free(with), free(without), free(model);
    rm_tree(dir);
}
END_TEST

/* ---- bad heads ---- */

typedef struct bad_head {
    const char *what;
    const char *json;      /* replaces head.json when not NULL */
    const char *drop_file; /* removed */
    const char *tensor;    /* the tensor changed */
    int change;            /* 1 drop, 2 F16, 3 shape [E, 7], 4 NaN, 5 extra tensor */
    pclip_status status;
    const char *needle1, *needle2;
} bad_head;

#define GOOD_JSON_FMT                                                                              \
    "{\"format\": \"portclip-head\", \"version\": 1, \"kind\": \"mlp\", \"embed_dim\": 20, "       \
    "\"vision_dim\": %s, \"text_dim\": 40, \"dropout\": 0.1, \"activation\": \"%s\", "             \
    "\"layer_norm_eps\": 1e-5%s}"

static const bad_head bad_heads[] = {
    {"no head.json", NULL, "head.json", NULL, 0, PCLIP_STATUS_NOT_FOUND, "head.json", NULL},
    {"no weights", NULL, "head.safetensors", NULL, 0, PCLIP_STATUS_NOT_FOUND, "head.safetensors",
     NULL},
    {"bad json", "{\"format\": \"portclip-head\",", NULL, NULL, 0, PCLIP_STATUS_BAD_FORMAT,
     "head.json", NULL},
    {"not an object", "[1, 2]", NULL, NULL, 0, PCLIP_STATUS_BAD_FORMAT, "head.json", NULL},
    {"unknown field", "extra", NULL, NULL, 0, PCLIP_STATUS_BAD_FORMAT, "head.json", "'color'"},
    {"missing field",
     "{\"format\": \"portclip-head\", \"version\": 1, \"kind\": \"mlp\", \"embed_dim\": 20, "
     "\"vision_dim\": 48, \"text_dim\": 40, \"dropout\": 0.1, \"activation\": \"gelu\"}",
     NULL, NULL, 0, PCLIP_STATUS_BAD_FORMAT, "head.json", "layer_norm_eps"},
    {"other format",
     "{\"format\": \"other\", \"version\": 1, \"kind\": \"mlp\", \"embed_dim\": 20, "
     "\"vision_dim\": 48, \"text_dim\": 40, \"dropout\": 0.1, \"activation\": \"gelu\", "
     "\"layer_norm_eps\": 1e-5}",
     NULL, NULL, 0, PCLIP_STATUS_BAD_FORMAT, "head.json", "portclip-head"},
    {"version 2",
     "{\"format\": \"portclip-head\", \"version\": 2, \"kind\": \"mlp\", \"embed_dim\": 20, "
     "\"vision_dim\": 48, \"text_dim\": 40, \"dropout\": 0.1, \"activation\": \"gelu\", "
     "\"layer_norm_eps\": 1e-5}",
     NULL, NULL, 0, PCLIP_STATUS_UNSUPPORTED, "head.json", "version 2"},
    {"linear kind",
     "{\"format\": \"portclip-head\", \"version\": 1, \"kind\": \"linear\", \"embed_dim\": 20, "
     "\"vision_dim\": 48, \"text_dim\": 40, \"dropout\": 0.1, \"activation\": \"gelu\", "
     "\"layer_norm_eps\": 1e-5}",
     NULL, NULL, 0, PCLIP_STATUS_UNSUPPORTED, "head.json", "linear"},
    {"relu", "relu", NULL, NULL, 0, PCLIP_STATUS_UNSUPPORTED, "head.json", "relu"},
    {"fractional dim", "48.5", NULL, NULL, 0, PCLIP_STATUS_BAD_CONFIG, "head.json", "vision_dim"},
    {"json dims against the tensors", "64", NULL, NULL, 0, PCLIP_STATUS_BAD_TENSOR,
     "vision.projection.weight", "[20, 64]"},
    {"missing tensor", NULL, NULL, "text.fc.bias", 1, PCLIP_STATUS_BAD_TENSOR, "text.fc.bias",
     "missing"},
    {"F16 tensor", NULL, NULL, "vision.layer_norm.weight", 2, PCLIP_STATUS_BAD_TENSOR,
     "vision.layer_norm.weight", "F16"},
    {"wrong shape", NULL, NULL, "vision.fc.weight", 3, PCLIP_STATUS_BAD_TENSOR, "vision.fc.weight",
     "[20, 7]"},
    {"NaN", NULL, NULL, "text.projection.bias", 4, PCLIP_STATUS_BAD_TENSOR, "text.projection.bias",
     "NaN"},
    {"extra tensor", NULL, NULL, "vision.projection.weight", 5, PCLIP_STATUS_BAD_TENSOR,
     "vision.extra", "not part"},
};

/* Rewrites head.safetensors of hd from h with one tensor changed. */
static void write_changed(const char *hd, const pclip__head *h, const char *which, int change) {
    pclip__head copy = *h;
    const pclip__head_tower *tw[2] = {&copy.vision, &copy.text};
    const char *tn[2] = {"vision", "text"};
    int32_t d[2] = {copy.vision_dim, copy.text_dim};
    pclip__st_out outs[16];
    char names[16][64];
    uint16_t f16[HEAD_E];
    static float nan_bias[HEAD_E];
    static float seven[HEAD_E * 7];
    int n = 0;
    for (int t = 0; t < 2; t++) {
        const char *parts[6] = {"projection.weight", "projection.bias",   "fc.weight",
                                "fc.bias",           "layer_norm.weight", "layer_norm.bias"};
        const float *data[6] = {tw[t]->proj_w, tw[t]->proj_b, tw[t]->fc_w,
                                tw[t]->fc_b,   tw[t]->ln_w,   tw[t]->ln_b};
        for (int p = 0; p < 6; p++) {
            snprintf(names[n], sizeof names[n], "%s.%s", tn[t], parts[p]);
            pclip__st_out *o = &outs[n];
            memset(o, 0, sizeof *o);
            o->name = names[n];
            o->dtype = PCLIP__ST_F32;
            o->ndim = (p == 0 || p == 2) ? 2 : 1;
            o->shape[0] = HEAD_E;
            o->shape[1] = p == 0 ? d[t] : HEAD_E;
            o->data = data[p];
            if (strcmp(names[n], which) == 0) {
                if (change == 1) continue; /* dropped */
                if (change == 2) {
                    for (int i = 0; i < HEAD_E; i++) f16[i] = 0x3c00;
                    o->dtype = PCLIP__ST_F16;
                    o->data = f16;
                } else if (change == 3) {
                    o->shape[1] = 7;
                    o->data = seven;
                } else if (change == 4) {
                    memcpy(nan_bias, data[p], sizeof nan_bias);
                    nan_bias[3] = NAN;
                    o->data = nan_bias;
                } else if (change == 5) {
                    n++;
                    snprintf(names[n], sizeof names[n], "vision.extra");
                    outs[n] = *o;
                    outs[n].name = names[n];
                }
            }
            n++;
        }
    }
    outs[n] = (pclip__st_out){
        .name = "logit_scale", .dtype = PCLIP__ST_F32, .ndim = 0, .data = &h->logit_scale};
    n++;
    char *path = join(hd, "head.safetensors");
    ck_assert_status(ctx, pclip__st_write(ctx, path, (size_t)n, outs, NULL), PCLIP_STATUS_OK);
    free(path);
}

START_TEST(test_head_bad) {
    const bad_head *c = &bad_heads[_i];
    pclip__head *h = random_head(5, 48, 40);
    char *dir = tmpdir();
    ck_assert_status(ctx, pclip__head_save(ctx, dir, h), PCLIP_STATUS_OK);
    char *jp = join(dir, "head.json");
    if (c->json) {
        char text[1024];
        if (strcmp(c->json, "extra") == 0)
            snprintf(text, sizeof text, GOOD_JSON_FMT, "48", "gelu", ", \"color\": \"red\"");
        else if (strcmp(c->json, "relu") == 0)
            snprintf(text, sizeof text, GOOD_JSON_FMT, "48", "relu", "");
        else if (c->json[0] != '{' && c->json[0] != '[')
            snprintf(text, sizeof text, GOOD_JSON_FMT, c->json, "gelu", "");
        else
            snprintf(text, sizeof text, "%s", c->json);
        write_text(jp, text);
    }
    if (c->drop_file) {
        char *p = join(dir, c->drop_file);
        ck_assert_int_eq(unlink(p), 0);
        free(p);
    }
    if (c->tensor) write_changed(dir, h, c->tensor, c->change);
    pclip__head *r = NULL;
    pclip_status st = pclip__head_load(ctx, dir, &r);
    ck_assert_msg(st == c->status, "%s: status %s, expected %s (%s)", c->what,
                  pclip_status_name(st), pclip_status_name(c->status), pclip_ctx_last_error(ctx));
    ck_assert_ptr_null(r);
    ck_assert_err_has(c->needle1);
    if (c->needle2) ck_assert_err_has(c->needle2);
    /* pclip_model_set_head says the same and keeps the model as it was */
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip_model_set_head(m, dir), c->status);
    ck_assert_err_has(c->needle1);
    ck_assert_ptr_null(pclip_model_head(m));
    pclip_model_destroy(m);
    pclip__head_destroy(h);
    free(jp);
    rm_tree(dir);
}
END_TEST

/* A head whose sizes do not fit the model: named with both shapes. */
START_TEST(test_head_wrong_model) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    static const int32_t dims[2][2] = {{64, 40}, {48, 24}};
    for (int k = 0; k < 2; k++) {
        pclip__head *h = random_head(3, dims[k][0], dims[k][1]);
        char *dir = tmpdir();
        ck_assert_status(ctx, pclip__head_save(ctx, dir, h), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip_model_set_head(m, dir), PCLIP_STATUS_BAD_TENSOR);
        ck_assert_err_has(dir);
        ck_assert_err_has(k == 0 ? "vision.projection.weight' is [20, 64]"
                                 : "text.projection.weight' is [20, 24]");
        ck_assert_err_has(k == 0 ? "needs [20, 48]" : "needs [20, 40]");
        ck_assert_ptr_null(pclip_model_head(m));
        pclip__head_destroy(h);
        rm_tree(dir);
    }
    ck_assert_status(ctx, pclip_model_set_head(m, pclip_test_fixture("tiny-clip")),
                     PCLIP_STATUS_NOT_FOUND);
    ck_assert_err_has("head.json");
    pclip_model_destroy(m);
}
END_TEST

START_TEST(test_head_cli_errors) {
    const char *model = pclip_test_fixture("tiny-clip");
    char *dir = tmpdir();
    char *npy = join(dir, "x.npy");
    char *oe[2];
    int rc = run_cli(oe, "embed-text --model '%s' --head '%s/nothing' --output '%s' hi", model, dir,
                     npy);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(oe[1], "nothing") != NULL, "stderr: %s", oe[1]);
    ck_assert_msg(access(npy, F_OK) != 0, "output written after a failure");
    free_out(oe);
    rc = run_cli(oe, "embed-text --model '%s' --output '%s' --head", model, npy);
    ck_assert_int_eq(rc, 2);
    free_out(oe);
    free(npy);
    rm_tree(dir);
}
END_TEST

/* Every allocation of saving, loading, setting and exporting fails in turn:
 * OUT_OF_MEMORY each time, nothing changed, nothing leaked (ASan). */
START_TEST(test_head_alloc_failures) {
    pclip__head *h = random_head(9, 48, 40);
    char *dir = tmpdir();
    char *hd = join(dir, "head"), *out = join(dir, "export");
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    for (int what = 0; what < 4; what++) {
        long n;
        pclip_status st = PCLIP_STATUS_INTERNAL;
        for (n = 1; n < 100000; n++) {
            pclip__head *r = NULL;
            pclip__alloc_fail_at(n);
            if (what == 0) st = pclip__head_save(ctx, hd, h);
            if (what == 1) st = pclip__head_load(ctx, hd, &r);
            if (what == 2) st = pclip_model_set_head(m, hd);
            if (what == 3) st = pclip__export_hf_dir(m, out, 0, NULL);
            long pending = pclip__alloc_fail_pending();
            pclip__alloc_fail_at(0);
            pclip__head_destroy(r);
            if (st == PCLIP_STATUS_OK && pending > 0) break; /* finished before the failure */
            /* OK here: an allocation whose failure is harmless (the output
             * helpers' sync of the folder after the rename) */
            ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY || st == PCLIP_STATUS_OK,
                          "case %d, allocation %ld: %s: %s", what, n, pclip_status_name(st),
                          pclip_ctx_last_error(ctx));
            if (what == 2 && st != PCLIP_STATUS_OK) ck_assert_ptr_null(pclip_model_head(m));
            if (what == 2 && st == PCLIP_STATUS_OK) pclip_model_set_head(m, NULL);
        }
        ck_assert_msg(st == PCLIP_STATUS_OK && n > 2, "case %d ended after %ld allocations", what,
                      n);
        if (what == 2) pclip_model_set_head(m, NULL);
    }
    pclip_model_destroy(m);
    pclip__head_destroy(h);
    free(hd);
    free(out);
    rm_tree(dir);
}
END_TEST

/* ---- Python ---- */

/* The exported directory read with Python and PyTorch alone (no
 * transformers here): the header parses, the data section is exactly the
 * tensors back to back, and the new projection reads back equal. */
static int python_check(void) {
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
        printf("skipped: python: /usr/bin/python3 with torch and numpy is not available\n");
        return PCLIP_TEST_SKIP;
    }
    pclip_ctx_create(&ctx);
    pclip_model_t m;
    if (pclip_model_load(ctx, pclip_test_fixture("tiny-clip-f16"), &m)) {
        fprintf(stderr, "%s\n", pclip_ctx_last_error(ctx));
        return 1;
    }
    const pclip_config *c = pclip_model_config(m);
    int32_t P = c->projection_dim, Wv = c->vision.hidden_size;
    float *vw = malloc((size_t)P * Wv * 4), ls = 1.5f;
    rng_state = 4;
    for (int32_t i = 0; i < P * Wv; i++) vw[i] = rnd(0.5f);
    pclip__export_tensor rep[2] = {
        {.name = "visual_projection.weight", .data = vw, .ndim = 2, .shape = {P, Wv}},
        {.name = "logit_scale", .data = &ls, .ndim = 0}};
    char dir[256];
    snprintf(dir, sizeof dir, "%s/pclip-head-py-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir) || pclip__export_hf_dir(m, dir, 2, rep)) {
        fprintf(stderr, "export: %s\n", pclip_ctx_last_error(ctx));
        return 1;
    }
    char npy[300];
    snprintf(npy, sizeof npy, "%s/vw.npy", dir);
    const int64_t shape[2] = {P, Wv};
    if (pclip_npy_write_f32(ctx, npy, vw, shape, 2)) return 1;
    static const char script[] =
        "import json, struct, sys, numpy as np, torch\n"
        "d = sys.argv[1]\n"
        "raw = open(d + '/model.safetensors', 'rb').read()\n"
        "n = struct.unpack('<Q', raw[:8])[0]\n"
        "assert n % 8 == 0, n\n"
        "h = json.loads(raw[8:8 + n])\n"
        "assert h.pop('__metadata__') == {'format': 'pt'}\n"
        "size = {'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8}\n"
        "tdt = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'I64': "
        "torch.int64}\n"
        "spans = sorted((v['data_offsets'][0], v['data_offsets'][1], k) for k, v in h.items())\n"
        "pos = 0\n"
        "for b, e, k in spans:\n"
        "    assert b == pos, (k, b, pos)\n"
        "    v = h[k]\n"
        "    assert e - b == int(np.prod(v['shape'])) * size[v['dtype']], k\n"
        "    pos = e\n"
        "assert pos == len(raw) - 8 - n\n"
        "def get(k):\n"
        "    v = h[k]; b, e = v['data_offsets']\n"
        "    return torch.frombuffer(bytearray(raw[8 + n + b:8 + n + e]), "
        "dtype=tdt[v['dtype']]).reshape(v['shape'])\n"
        "cfg = json.load(open(d + '/config.json'))\n"
        "vp = get('visual_projection.weight')\n"
        "assert h['visual_projection.weight']['dtype'] == 'F32'\n"
        "assert list(vp.shape) == [cfg['projection_dim'], cfg['vision_config']['hidden_size']]\n"
        "assert torch.equal(vp, torch.from_numpy(np.load(d + '/vw.npy')))\n"
        "assert h['logit_scale']['shape'] == [] and get('logit_scale').item() == 1.5\n"
        "assert h['text_projection.weight']['dtype'] == 'F16'\n"
        "assert h['vision_model.post_layernorm.weight']['dtype'] == 'F16'\n"
        "print('ok', len(h))\n";
    char spath[300];
    snprintf(spath, sizeof spath, "%s/check.py", dir);
    FILE *f = fopen(spath, "w");
    if (!f) return 1;
    fputs(script, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", spath, dir);
    int rc = system(cmd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(vw);
    pclip_model_destroy(m);
    pclip_ctx_destroy(ctx);
    if (rc != 0) {
        fprintf(stderr, "python check of the exported model.safetensors failed\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "python") == 0) return python_check();
    int arg = pclip_test_backend_args(argc, argv, &backend, &test_device);
    if (arg < argc) {
        fprintf(stderr, "usage: check_head [cpu|vulkan|opencl|python]\n");
        return 2;
    }
    pclip_test_probe_backend("check_head", backend, test_device);
    bool cpu = strcmp(backend, "cpu") == 0;
    Suite *s = suite_create("head");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_set_timeout(core, 300);
    tcase_add_test(core, test_head_embeddings);
    if (cpu) {
        tcase_add_test(core, test_st_write_roundtrip);
        tcase_add_loop_test(core, test_export_identity, 0,
                            (int)(sizeof export_models / sizeof export_models[0]));
        tcase_add_test(core, test_export_replaced);
        tcase_add_test(core, test_head_save_load);
        tcase_add_test(core, test_head_cli_embed);
        tcase_add_test(core, test_head_cli_verify);
        tcase_add_test(core, test_head_index_search);
    }
    suite_add_tcase(s, core);
    if (cpu) {
        TCase *limits = tcase_create("limits");
        tcase_add_checked_fixture(limits, setup, teardown);
        tcase_set_timeout(limits, 300);
        tcase_add_test(limits, test_st_write_errors);
        tcase_add_test(limits, test_export_errors);
        tcase_add_loop_test(limits, test_head_bad, 0,
                            (int)(sizeof bad_heads / sizeof bad_heads[0]));
        tcase_add_test(limits, test_head_wrong_model);
        tcase_add_test(limits, test_head_cli_errors);
        tcase_add_test(limits, test_head_alloc_failures);
        suite_add_tcase(s, limits);
    }
    return pclip_test_run(s);
}
