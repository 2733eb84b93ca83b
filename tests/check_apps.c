/* The applications layer: pclip_embed_image_files against
 * pclip_model_encode_images_batched on the same preprocessed pixels
 * (bit-exact on both CPU devices), input order across batch sizes, failures
 * (a bad file, a refusing callback, bad options), the image batcher on its
 * own, and the compiled-graph cache (reuse, LRU eviction, drop with the
 * backend). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph/exec_cache.h" /* the cache is internal: tested directly */
#include "model/model.h"
#include "testutil.h"

static const char *const images[] = {
    "images/j_32x32.jpg",        "images/p_rgb_64x48.png",   "images/j_landscape_97x61.jpg",
    "images/p_portrait_45x80.png", "images/j_grey_64x48.jpg", "images/p_pal8_64x48.png",
    "images/j_cmyk_64x48.jpg"};
#define N_IMAGES ((int)(sizeof images / sizeof images[0]))

static pclip_ctx_t ctx;
static void setup(void) { ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK); }
static void teardown(void) { pclip_ctx_destroy(ctx); }

static const char **image_paths(void) {
    static char store[N_IMAGES][512];
    static const char *paths[N_IMAGES];
    for (int i = 0; i < N_IMAGES; i++) {
        snprintf(store[i], sizeof store[i], "%s", pclip_test_fixture(images[i]));
        paths[i] = store[i];
    }
    return paths;
}

static pclip_model_t load_tiny(void) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    return m;
}

/* pixels [n, 3, S, S] of the paths, decoded and preprocessed one by one here */
static float *preprocess_all(pclip_model_t m, const char *const *paths, int n) {
    int32_t S = pclip_model_config(m)->vision.image_size;
    size_t per = (size_t)3 * S * S;
    float *px = malloc((size_t)n * per * sizeof *px);
    for (int i = 0; i < n; i++) {
        pclip_image *img;
        ck_assert_status(ctx, pclip_image_load(ctx, paths[i], &img), PCLIP_STATUS_OK);
        ck_assert_status(ctx,
                         pclip_image_preprocess(ctx, img, pclip_model_image_config(m),
                                                PCLIP_PREPROCESS_OPENAI, px + (size_t)i * per),
                         PCLIP_STATUS_OK);
        pclip_image_destroy(img);
    }
    return px;
}

/* ---- a callback that collects rows ---- */

typedef struct collected {
    float *rows; /* [n, dim] */
    int64_t next; /* the first row expected next */
    int32_t calls, dim, max_count;
    int32_t fail_at_call; /* 0: never; k: return IO on the k-th call */
} collected;

static pclip_status collect(void *user, int64_t first, int32_t count, int32_t dim,
                            const float *rows) {
    collected *c = user;
    c->calls++;
    ck_assert_msg(first == c->next, "rows out of order: got first %lld, expected %lld",
                  (long long)first, (long long)c->next);
    ck_assert_int_eq(dim, c->dim);
    ck_assert_int_ge(count, 1);
    ck_assert_int_le(count, c->max_count);
    if (c->fail_at_call && c->calls == c->fail_at_call) return PCLIP_STATUS_IO;
    memcpy(c->rows + first * dim, rows, (size_t)count * (size_t)dim * sizeof *rows);
    c->next = first + count;
    return PCLIP_STATUS_OK;
}

/* ---- core ---- */

static const int32_t batch_sizes[] = {1, 3, 64};

/* _i: batch size index * 2 + cpu device */
START_TEST(test_embed_equals_encode) {
    int32_t B = batch_sizes[_i / 2];
    int device = _i % 2;
    pclip_model_t m = load_tiny();
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", device, &b), PCLIP_STATUS_OK);
    const char **paths = image_paths();
    float *px = preprocess_all(m, paths, N_IMAGES);
    int32_t D = pclip_model_config(m)->projection_dim;
    float *want = malloc((size_t)N_IMAGES * D * sizeof *want);
    ck_assert_status(ctx,
                     pclip_model_encode_images_batched(m, b, px, N_IMAGES, B,
                                                       PCLIP_ENCODE_NORMALIZE, want),
                     PCLIP_STATUS_OK);
    collected c = {.rows = calloc((size_t)N_IMAGES * D, sizeof(float)), .dim = D, .max_count = B};
    pclip_embed_options o = {.batch_size = B, .threads = B == 3 ? 2 : 0,
                             .flags = PCLIP_ENCODE_NORMALIZE};
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, N_IMAGES, &o, collect, &c),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(c.next, N_IMAGES);
    ck_assert_int_eq(c.calls, (N_IMAGES + B - 1) / B);
    ck_assert_msg(memcmp(c.rows, want, (size_t)N_IMAGES * D * sizeof(float)) == 0,
                  "batch %d, cpu device %d: rows differ from pclip_model_encode_images_batched",
                  (int)B, device);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    free(px);
    free(want);
    free(c.rows);
}
END_TEST

/* opt NULL: batch 32, raw projections, equal to pclip_model_encode_images. */
START_TEST(test_embed_defaults) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    const char **paths = image_paths();
    float *px = preprocess_all(m, paths, N_IMAGES);
    int32_t D = pclip_model_config(m)->projection_dim;
    float *want = malloc((size_t)N_IMAGES * D * sizeof *want);
    ck_assert_status(ctx, pclip_model_encode_images(m, b, px, N_IMAGES, 0, want), PCLIP_STATUS_OK);
    collected c = {.rows = calloc((size_t)N_IMAGES * D, sizeof(float)), .dim = D, .max_count = 32};
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, N_IMAGES, NULL, collect, &c),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(c.calls, 1);
    ck_assert(memcmp(c.rows, want, (size_t)N_IMAGES * D * sizeof(float)) == 0);
    /* pooled features have the vision width */
    free(c.rows);
    c = (collected){.dim = pclip_model_config(m)->vision.hidden_size, .max_count = 32};
    c.rows = calloc((size_t)N_IMAGES * c.dim, sizeof(float));
    pclip_embed_options o = {.flags = PCLIP_ENCODE_POOLED};
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, N_IMAGES, &o, collect, &c),
                     PCLIP_STATUS_OK);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    free(px);
    free(want);
    free(c.rows);
}
END_TEST

/* The batcher on its own: batches in order, the last one short, then 0. */
START_TEST(test_batcher_batches) {
    pclip_model_t m = load_tiny();
    const char **paths = image_paths();
    float *px = preprocess_all(m, paths, N_IMAGES);
    size_t per = (size_t)3 * 32 * 32;
    pclip_image_batcher_options o = {.batch_size = 4, .threads = 3};
    pclip_image_batcher_t bt;
    ck_assert_status(ctx,
                     pclip_image_batcher_create(ctx, paths, N_IMAGES, pclip_model_image_config(m),
                                                &o, &bt),
                     PCLIP_STATUS_OK);
    int64_t first;
    int32_t count;
    const float *pixels;
    int64_t expect = 0;
    for (;;) {
        ck_assert_status(ctx, pclip_image_batcher_next(bt, &first, &count, &pixels),
                         PCLIP_STATUS_OK);
        if (count == 0) break;
        ck_assert_int_eq(first, expect);
        ck_assert_int_eq(count, first == 0 ? 4 : 3);
        ck_assert(memcmp(pixels, px + (size_t)first * per, (size_t)count * per * sizeof *px) == 0);
        expect += count;
    }
    ck_assert_int_eq(expect, N_IMAGES);
    ck_assert_ptr_null(pixels);
    /* after the end it stays at the end */
    ck_assert_status(ctx, pclip_image_batcher_next(bt, &first, &count, &pixels), PCLIP_STATUS_OK);
    ck_assert_int_eq(count, 0);
    pclip_image_batcher_destroy(bt);
    pclip_image_batcher_destroy(NULL);
    /* destroyed with a batch in flight: the workers are waited for */
    ck_assert_status(ctx,
                     pclip_image_batcher_create(ctx, paths, N_IMAGES, pclip_model_image_config(m),
                                                &o, &bt),
                     PCLIP_STATUS_OK);
    pclip_image_batcher_destroy(bt);
    pclip_model_destroy(m);
    free(px);
}
END_TEST

/* ---- the exec cache ---- */

typedef struct tiny_build {
    int builds;
    int64_t n;
    int64_t extra_outputs; /* more x * 2 outputs, kept alive to the end */
} tiny_build;

/* y = x * 2 for x [n] */
static pclip_status build_scale(void *user, pclip__graph *g, pclip__tensor **io) {
    tiny_build *t = user;
    t->builds++;
    const int64_t ne[1] = {t->n};
    io[0] = pclip__input(g, "x", PCLIP__DTYPE_F32, 1, ne);
    io[1] = pclip__scale(g, "y", io[0], 2.0f);
    if (!io[1]) return g->status;
    for (int64_t i = 0; i < t->extra_outputs; i++) {
        pclip__tensor *y = pclip__scale(g, "y_more", io[0], 2.0f);
        if (!y) return g->status;
        pclip_status st = pclip__graph_output(g, y);
        if (st) return st;
    }
    return pclip__graph_output(g, io[1]);
}

START_TEST(test_exec_cache_reuse_and_lru) {
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    pclip__exec_cache *c;
    ck_assert_status(ctx, pclip__exec_cache_create(ctx, 2, &c), PCLIP_STATUS_OK);
    tiny_build t = {.n = 5};
    pclip__cached_graph *g1, *g2;
    ck_assert_status(ctx, pclip__exec_cache_get(c, b, "a", build_scale, &t, &g1), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_cache_get(c, b, "a", build_scale, &t, &g2), PCLIP_STATUS_OK);
    ck_assert_int_eq(t.builds, 1);
    ck_assert_ptr_eq(g1, g2);
    /* the compiled graph runs */
    float x[5] = {1, 2, 3, 4, 5}, y[5];
    ck_assert_status(ctx, pclip__exec_write(g2->exec, g2->io[0], x), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_run(g2->exec), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_read(g2->exec, g2->io[1], y), PCLIP_STATUS_OK);
    ck_assert(y[4] == 10.0f);
    /* capacity 2: a, b, then c evicts a (least recently used) */
    ck_assert_status(ctx, pclip__exec_cache_get(c, b, "b", build_scale, &t, &g1), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_cache_get(c, b, "c", build_scale, &t, &g1), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_cache_get(c, b, "b", build_scale, &t, &g1), PCLIP_STATUS_OK);
    ck_assert_int_eq(t.builds, 3);
    ck_assert_status(ctx, pclip__exec_cache_get(c, b, "a", build_scale, &t, &g1), PCLIP_STATUS_OK);
    ck_assert_int_eq(t.builds, 4);
    pclip__exec_cache_stats s;
    pclip__exec_cache_stats_get(c, &s);
    ck_assert_int_eq(s.compiles, 4);
    ck_assert_int_eq(s.hits, 2);
    ck_assert_int_eq(s.evictions, 2);
    ck_assert_int_eq(s.live, 2);
    /* the backend goes first: its graphs go with it */
    pclip_backend_destroy(b);
    pclip__exec_cache_stats_get(c, &s);
    ck_assert_int_eq(s.live, 0);
    ck_assert_int_eq(s.dropped, 2);
    /* a new backend compiles again */
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &b), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_cache_get(c, b, "a", build_scale, &t, &g1), PCLIP_STATUS_OK);
    ck_assert_int_eq(t.builds, 5);
    /* the cache goes first: the backend forgets it */
    pclip__exec_cache_destroy(c);
    pclip_backend_destroy(b);
    pclip__exec_cache_destroy(NULL);
}
END_TEST

/* The model keeps its encoder graphs in an exec cache: the same batch twice
 * compiles once; destroying the backend drops them. */
START_TEST(test_model_graph_reuse) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    const char **paths = image_paths();
    float *px = preprocess_all(m, paths, N_IMAGES);
    float out[N_IMAGES * 64];
    ck_assert_int_le((int64_t)N_IMAGES * pclip_model_config(m)->projection_dim, N_IMAGES * 64);
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b, px, 4, 4, 0, out),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b, px, 4, 4, 0, out),
                     PCLIP_STATUS_OK);
    pclip__exec_cache_stats s;
    pclip__exec_cache_stats_get(m->graphs, &s);
    ck_assert_int_eq(s.compiles, 1);
    ck_assert_int_eq(s.hits, 1);
    /* 7 in batches of 4: a graph of 4 (cached) and one of 3 */
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b, px, N_IMAGES, 4, 0, out),
                     PCLIP_STATUS_OK);
    pclip__exec_cache_stats_get(m->graphs, &s);
    ck_assert_int_eq(s.compiles, 2);
    ck_assert_int_eq(s.live, 2);
    pclip_backend_destroy(b);
    pclip__exec_cache_stats_get(m->graphs, &s);
    ck_assert_int_eq(s.live, 0);
    pclip_model_destroy(m);
    free(px);
}
END_TEST

/* ---- limits ---- */

/* A file that cannot be read in the middle: the batches before it arrive,
 * then the run stops with its path in the message and no further rows. */
START_TEST(test_bad_file_stops) {
    int32_t B = batch_sizes[_i];
    pclip_model_t m = load_tiny();
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    const char **good = image_paths();
    char bad[512];
    snprintf(bad, sizeof bad, "%s", pclip_test_fixture("bad/garbage.jpg"));
    const char *paths[N_IMAGES + 1];
    for (int i = 0, k = 0; i <= N_IMAGES; i++) paths[i] = i == 4 ? bad : good[k++];
    int32_t D = pclip_model_config(m)->projection_dim;
    collected c = {.rows = calloc((size_t)(N_IMAGES + 1) * D, sizeof(float)), .dim = D,
                   .max_count = B};
    pclip_embed_options o = {.batch_size = B};
    pclip_status st = pclip_embed_image_files(m, b, paths, N_IMAGES + 1, &o, collect, &c);
    ck_assert_msg(st != PCLIP_STATUS_OK, "a bad file went through");
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), bad) != NULL, "message lacks the path: %s",
                  pclip_ctx_last_error(ctx));
    /* rows before the failing file's batch, none after */
    ck_assert_int_eq(c.next, (4 / B) * B);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    free(c.rows);
}
END_TEST

START_TEST(test_callback_stops) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    const char **paths = image_paths();
    int32_t D = pclip_model_config(m)->projection_dim;
    collected c = {.rows = calloc((size_t)N_IMAGES * D, sizeof(float)), .dim = D, .max_count = 2,
                   .fail_at_call = 2};
    pclip_embed_options o = {.batch_size = 2};
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, N_IMAGES, &o, collect, &c),
                     PCLIP_STATUS_IO);
    ck_assert_int_eq(c.calls, 2);
    ck_assert_int_eq(c.next, 2);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "callback"));
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    free(c.rows);
}
END_TEST

START_TEST(test_bad_options) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    const char **paths = image_paths();
    collected c = {.rows = NULL, .dim = 0};
    static const int32_t bad_batches[] = {-1, PCLIP_ENCODE_BATCH_MAX + 1, INT32_MIN};
    for (int i = 0; i < 3; i++) {
        pclip_embed_options o = {.batch_size = bad_batches[i]};
        ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, N_IMAGES, &o, collect, &c),
                         PCLIP_STATUS_INVALID_ARGUMENT);
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "batch size"));
    }
    float px[3 * 32 * 32] = {0}, out[64];
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b, px, 1, -3, 0, out),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b, px, 1, 5000, 0, out),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    int32_t ids[77] = {0};
    ck_assert_status(ctx, pclip_model_encode_text_batched(m, b, ids, 1, 4097, 0, out),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    pclip_embed_options o = {.threads = -1};
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, N_IMAGES, &o, collect, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    o = (pclip_embed_options){.preprocess = PCLIP_PREPROCESS_COUNT};
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, N_IMAGES, &o, collect, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, N_IMAGES, NULL, NULL, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_embed_image_files(m, NULL, paths, N_IMAGES, NULL, collect, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_embed_image_files(m, b, NULL, 1, NULL, collect, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, -1, NULL, collect, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_embed_image_files(NULL, b, paths, 1, NULL, collect, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    /* nothing to do: OK, no callback */
    ck_assert_status(ctx, pclip_embed_image_files(m, b, paths, 0, NULL, collect, &c),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(c.calls, 0);
    /* a NULL path is named as such */
    const char *with_null[2] = {paths[0], NULL};
    c = (collected){.rows = calloc(2 * 64, sizeof(float)),
                    .dim = pclip_model_config(m)->projection_dim, .max_count = 1};
    o = (pclip_embed_options){.batch_size = 1};
    ck_assert_status(ctx, pclip_embed_image_files(m, b, with_null, 2, &o, collect, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(c.calls, 1);
    free(c.rows);
    /* a model without its weights */
    pclip_model_t cfg_only;
    ck_assert_status(ctx,
                     pclip_model_load_parts(ctx, pclip_test_fixture("tiny-clip"),
                                            PCLIP_MODEL_PART_IMAGE_CONFIG, &cfg_only),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_embed_image_files(cfg_only, b, paths, 1, NULL, collect, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    pclip_model_destroy(cfg_only);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
}
END_TEST

START_TEST(test_exec_cache_limits) {
    pclip__exec_cache *c;
    ck_assert_status(ctx, pclip__exec_cache_create(ctx, 0, &c), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip__exec_cache_create(ctx, PCLIP__EXEC_CACHE_MAX + 1, &c),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip__exec_cache_create(ctx, 1, &c), PCLIP_STATUS_OK);
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    char key[PCLIP__EXEC_KEY_MAX + 1];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = 0;
    tiny_build t = {.n = 3};
    pclip__cached_graph *g;
    ck_assert_status(ctx, pclip__exec_cache_get(c, b, key, build_scale, &t, &g),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    /* a graph bigger than the device is refused before compiling: outputs
     * of 1 GiB each, more of them than the device's memory holds */
    uint64_t have = b->info.memory_bytes;
    if (have > 0) {
        t.n = (int64_t)1 << 28;
        t.extra_outputs = (int64_t)(have >> 30) + 2;
        ck_assert_status(ctx, pclip__exec_cache_get(c, b, "huge", build_scale, &t, &g),
                         PCLIP_STATUS_LIMIT);
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "huge"));
    }
    pclip__exec_cache_stats s;
    pclip__exec_cache_stats_get(c, &s);
    ck_assert_int_eq(s.live, 0);
    pclip__exec_cache_destroy(c);
    pclip_backend_destroy(b);
}
END_TEST


/* ---- collecting images under folders ---- */

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ck_assert_msg(in && out, "copy %s -> %s", from, to);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* A tree with images under misleading names, files that are not images, a
 * hidden folder, a FIFO, a symlink loop and a second link to a folder: the
 * list holds each image once, in path order, and says why the rest is out. */
START_TEST(test_collect_folders) {
    char root[512], p[1024], q[1024];
    snprintf(root, sizeof root, "%s", pclip_test_tmpdir());
    const char *dirs[] = {"tree", "tree/b", "tree/b/deep", "tree/.hidden", "tree/a"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        ck_assert_int_eq(mkdir(p, 0755), 0);
    }
    const char *jpg = pclip_test_fixture("images/j_32x32.jpg");
    char png[512];
    snprintf(png, sizeof png, "%s", pclip_test_fixture("images/p_rgb_64x48.png"));
    struct {
        const char *name, *from;
    } files[] = {{"tree/z.jpg", jpg},        {"tree/photo.txt", png},  {"tree/b/deep/x", jpg},
                 {"tree/b.jpg", png},        {"tree/.hidden/h.jpg", jpg}, {"tree/a/1.png", png}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", root, files[i].name);
        copy_file(files[i].from, p);
    }
    snprintf(p, sizeof p, "%s/tree/notes.jpg", root);
    write_text(p, "not an image\n");
    snprintf(p, sizeof p, "%s/tree/empty.png", root);
    write_text(p, "");
    snprintf(p, sizeof p, "%s/tree/fifo.jpg", root);
    ck_assert_int_eq(mkfifo(p, 0644), 0); /* opening it would block: it must not be */
    snprintf(p, sizeof p, "%s/tree/b/deep/loop", root);
    snprintf(q, sizeof q, "%s/tree/b", root);
    ck_assert_int_eq(symlink(q, p), 0);
    snprintf(p, sizeof p, "%s/tree/link-to-a", root);
    snprintf(q, sizeof q, "%s/tree/a", root);
    ck_assert_int_eq(symlink(q, p), 0);
    snprintf(p, sizeof p, "%s/tree/dangling.jpg", root);
    ck_assert_int_eq(symlink("no-such-file", p), 0);

    char tree[1024], explicit_file[1024];
    snprintf(tree, sizeof tree, "%s/tree/", root); /* a trailing slash is not doubled */
    snprintf(explicit_file, sizeof explicit_file, "%s/tree/notes.jpg", root);
    const char *inputs[] = {explicit_file, tree};
    pclip_path_list_t l = NULL;
    ck_assert_status(ctx, pclip_collect_images(ctx, inputs, 2, 0, &l), PCLIP_STATUS_OK);
    const char *want[] = {"tree/notes.jpg", "tree/a/1.png", "tree/b.jpg", "tree/b/deep/x",
                          "tree/photo.txt", "tree/z.jpg"};
    int64_t n = pclip_path_list_count(l);
    const char *const *got = pclip_path_list_paths(l);
    ck_assert_int_eq(n, (int64_t)(sizeof want / sizeof want[0]));
    for (int64_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", root, want[i]);
        ck_assert_str_eq(got[i], p);
    }
    /* skipped: notes.jpg (text), empty.png, fifo.jpg, the loop, the second
     * link to a, the dangling link; each with its reason */
    struct {
        const char *name;
        pclip_collect_skip why;
    } skip[] = {{"tree/notes.jpg", PCLIP_COLLECT_NOT_IMAGE},
                {"tree/empty.png", PCLIP_COLLECT_NOT_IMAGE},
                {"tree/fifo.jpg", PCLIP_COLLECT_SPECIAL},
                {"tree/b/deep/loop", PCLIP_COLLECT_LOOP},
                {"tree/link-to-a", PCLIP_COLLECT_DUPLICATE},
                {"tree/dangling.jpg", PCLIP_COLLECT_UNREADABLE}};
    ck_assert_int_eq(pclip_path_list_skipped_count(l), (int64_t)(sizeof skip / sizeof skip[0]));
    for (size_t k = 0; k < sizeof skip / sizeof skip[0]; k++) {
        snprintf(p, sizeof p, "%s/%s", root, skip[k].name);
        bool found = false;
        for (int64_t i = 0; i < pclip_path_list_skipped_count(l); i++) {
            pclip_collect_skip why;
            const char *reason;
            const char *path = pclip_path_list_skipped(l, i, &why, &reason);
            if (strcmp(path, p) != 0) continue;
            found = true;
            ck_assert_int_eq(why, skip[k].why);
            ck_assert_ptr_nonnull(strstr(reason, pclip_collect_skip_reason(why)));
        }
        ck_assert_msg(found, "%s is not in the skipped list", skip[k].name);
    }
    ck_assert_ptr_null(pclip_path_list_skipped(l, -1, NULL, NULL));
    pclip_path_list_destroy(l);

    /* hidden entries on request */
    const char *just_tree[] = {tree};
    ck_assert_status(ctx, pclip_collect_images(ctx, just_tree, 1, PCLIP_COLLECT_HIDDEN, &l),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip_path_list_count(l), 6);
    snprintf(p, sizeof p, "%s/tree/.hidden/h.jpg", root);
    ck_assert_str_eq(pclip_path_list_paths(l)[0], p);
    pclip_path_list_destroy(l);

    /* the folder alone: its five images */
    ck_assert_status(ctx, pclip_collect_images(ctx, just_tree, 1, 0, &l), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip_path_list_count(l), 5);
    pclip_path_list_destroy(l);

    /* bad arguments */
    const char *empty[] = {""};
    ck_assert_status(ctx, pclip_collect_images(ctx, empty, 1, 0, &l),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(l);
    ck_assert_status(ctx, pclip_collect_images(ctx, just_tree, 1, 0x80, &l),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_collect_images(ctx, NULL, 1, 0, &l),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_collect_images(ctx, NULL, 0, 0, &l), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip_path_list_count(l), 0);
    pclip_path_list_destroy(l);
    pclip_path_list_destroy(NULL);
}
END_TEST

int main(void) {
    Suite *s = suite_create("apps");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_loop_test(core, test_embed_equals_encode, 0, 6);
    tcase_add_test(core, test_embed_defaults);
    tcase_add_test(core, test_batcher_batches);
    tcase_add_test(core, test_exec_cache_reuse_and_lru);
    tcase_add_test(core, test_model_graph_reuse);
    tcase_add_test(core, test_collect_folders);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_add_loop_test(limits, test_bad_file_stops, 0, 3);
    tcase_add_test(limits, test_callback_stops);
    tcase_add_test(limits, test_bad_options);
    tcase_add_test(limits, test_exec_cache_limits);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
