/* Search with graph ops (a matmul and the topk op per chunk of rows, the
 * chunks merged on the host) against the CPU scan, on the backend named by
 * argv[1] (the CPU backend runs the same graphs): random rows with exact
 * duplicates (ties: the lower row first) in every dtype, chunks of a few
 * rows and one chunk, k from 1 to 256; then a real index of the tiny model's
 * image embeddings, searched with image and text queries through the public
 * calls on this backend against the same searches on the CPU. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/index.h"
#include "testutil.h"

static const char *backend = "cpu";
static int32_t test_device;
static pclip_ctx_t ctx;
static pclip_backend_t b;

static void setup(void) {
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
}
static void teardown(void) {
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}

static const pclip_index_dtype dts[] = {PCLIP_INDEX_F32, PCLIP_INDEX_F16, PCLIP_INDEX_Q8};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uniform(void) { /* [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / (float)(1 << 23) - 1.0f;
}

static void normalise(float *v, int32_t dim) {
    double s = 0;
    for (int32_t i = 0; i < dim; i++) s += (double)v[i] * v[i];
    for (int32_t i = 0; i < dim; i++) v[i] = (float)(v[i] / sqrt(s));
}

/* The graph's result equals the scan's: the same score at every rank (fp32
 * rounding of sums in another order) and the same row, except that two rows
 * whose exact scores lie within the rounding may swap. */
static void same_results(const char *what, const pclip__index_cand *g, const pclip__index_cand *c,
                         int64_t nq, int64_t kk, const float *rows, const float *q, int32_t dim) {
    for (int64_t i = 0; i < nq * kk; i++) {
        ck_assert_msg(fabsf(g[i].score - c[i].score) <= 1e-5f,
                      "%s on %s: query %lld rank %lld: score %.9g, CPU scan %.9g", what, backend,
                      (long long)(i / kk), (long long)(i % kk), (double)g[i].score,
                      (double)c[i].score);
        if (g[i].row == c[i].row) continue;
        const float *qq = q + (i / kk) * dim;
        double sg = 0, sc = 0;
        for (int32_t j = 0; j < dim; j++) {
            sg += (double)qq[j] * rows[g[i].row * dim + j];
            sc += (double)qq[j] * rows[c[i].row * dim + j];
        }
        ck_assert_msg(fabs(sg - sc) <= 1e-6,
                      "%s on %s: query %lld rank %lld: row %lld, CPU scan row %lld (exact "
                      "scores %.9g, %.9g)",
                      what, backend, (long long)(i / kk), (long long)(i % kk), (long long)g[i].row,
                      (long long)c[i].row, sg, sc);
    }
}

/* 700 random rows of dim 40, every seventh a copy of an earlier one (exact
 * ties), row 651 a copy of query 0; 5 queries. */
START_TEST(test_graph_matches_scan) {
    const pclip_index_dtype dt = dts[_i];
    enum { N = 700, DIM = 40, NQ = 5 };
    const size_t rb = pclip__index_row_bytes(dt, DIM);
    float *f = malloc((size_t)N * DIM * sizeof *f), *dec = malloc((size_t)N * DIM * sizeof *dec);
    uint8_t *rows = malloc((size_t)N * rb);
    float q[NQ * DIM];
    ck_assert(f && dec && rows);
    for (int i = 0; i < NQ * DIM; i++) q[i] = uniform();
    for (int r = 0; r < NQ; r++) normalise(q + r * DIM, DIM);
    for (int r = 0; r < N; r++) {
        if (r % 7 == 6)
            memcpy(f + r * DIM, f + (r / 2) * DIM, DIM * sizeof *f);
        else if (r == 651)
            memcpy(f + r * DIM, q, DIM * sizeof *f);
        else {
            for (int j = 0; j < DIM; j++) f[r * DIM + j] = uniform();
            normalise(f + r * DIM, DIM);
        }
        pclip__index_encode_row(dt, f + r * DIM, DIM, rows + (size_t)r * rb);
        pclip__index_decode_row(dt, rows + (size_t)r * rb, DIM, dec + r * DIM);
    }
    static const int64_t ks[] = {1, 7, 256};
    static const int64_t chunks[] = {0, 33};
    pclip__index_cand *g = malloc(NQ * 256 * sizeof *g), *c = malloc(NQ * 256 * sizeof *c);
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const int64_t kk = ks[ki];
        ck_assert_status(ctx, pclip__index_scan(ctx, rows, N, rb, dt, DIM, q, NQ, kk, c),
                         PCLIP_STATUS_OK);
        for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++) {
            char what[96];
            snprintf(what, sizeof what, "%s k=%lld chunk=%lld", pclip_index_dtype_name(dt),
                     (long long)kk, (long long)chunks[ci]);
            ck_assert_status(
                ctx,
                pclip__index_graph_search(ctx, b, rows, N, rb, dt, DIM, q, NQ, kk, chunks[ci], g),
                PCLIP_STATUS_OK);
            same_results(what, g, c, NQ, kk, dec, q, DIM);
            ck_assert_int_eq(g[0].row, 651); /* query 0 itself */
        }
    }
    ck_assert(pclip__index_graph_search_fits(256));
    ck_assert(!pclip__index_graph_search_fits(257));
    free(g);
    free(c);
    free(f);
    free(dec);
    free(rows);
}
END_TEST

/* The topk builder refuses k < 1, k > 256, k > cols, cols > 2^24 and a
 * tensor that is not 2-D, naming the op and the sizes. */
START_TEST(test_topk_limits) {
    pclip__graph *g;
    ck_assert_status(ctx, pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t ne[2] = {3, 300}, small[2] = {3, 5}, wide[2] = {1, (1 << 24) + 1};
    const int64_t flat[1] = {300};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, ne);
    ck_assert_ptr_nonnull(pclip__topk(g, "ok", x, 256));
    ck_assert_ptr_null(pclip__topk(g, "k0", x, 0));
    ck_assert_ptr_null(pclip__topk(g, "k257", x, 257));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "topk 'k257'"));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "x [3, 300]"));
    ck_assert_ptr_null(
        pclip__topk(g, "kcols", pclip__input(g, "s", PCLIP__DTYPE_F32, 2, small), 6));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "topk 'kcols'"));
    ck_assert_ptr_null(pclip__topk(g, "wide", pclip__input(g, "w", PCLIP__DTYPE_F32, 2, wide), 1));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "topk 'wide'"));
    ck_assert_ptr_null(pclip__topk(g, "flat", pclip__input(g, "f", PCLIP__DTYPE_F32, 1, flat), 1));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "topk 'flat'"));
    pclip__graph_destroy(g);
}
END_TEST

/* ---- a real index ---- */

static const char *const images[] = {
    "j_32x32.jpg",       "j_47x32.jpg",           "j_cmyk_64x48.jpg",
    "j_grey_64x48.jpg",  "j_landscape_97x61.jpg", "p_32x32.png",
    "p_grey1_64x48.png", "p_rgb_64x48.png",       "p_rgba_portrait_45x80.png",
    "j_odd_37x23.jpg"};
enum { NI = (int)(sizeof images / sizeof images[0]) };

static pclip_status keep_rows(void *user, int64_t first, int32_t count, int32_t dim,
                              const float *rows) {
    memcpy((float *)user + first * dim, rows, (size_t)count * (size_t)dim * sizeof *rows);
    return PCLIP_STATUS_OK;
}

static void same_hits(const char *what, const pclip_index_hit *h, const pclip_index_hit *c,
                      int64_t n, float tol) {
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(fabsf(h[i].score - c[i].score) <= tol,
                      "%s on %s: hit %lld: %s %.9g, CPU %s %.9g", what, backend, (long long)i,
                      h[i].path, (double)h[i].score, c[i].path, (double)c[i].score);
        /* another row only where the CPU's own scores tie within tol */
        if (h[i].row != c[i].row)
            ck_assert_msg(i + 1 < n && fabsf(c[i].score - c[i + 1].score) <= tol,
                          "%s on %s: hit %lld: row %lld, CPU row %lld", what, backend, (long long)i,
                          (long long)h[i].row, (long long)c[i].row);
    }
}

START_TEST(test_real_index) {
    const pclip_index_dtype dt = dts[_i];
    pclip_model_t model;
    pclip_backend_t cpu;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &model),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &cpu), PCLIP_STATUS_OK);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    char *paths[NI];
    for (int i = 0; i < NI; i++) {
        char src[64];
        snprintf(src, sizeof src, "images/%s", images[i]);
        paths[i] = strdup(pclip_test_fixture(src));
    }
    char index[300];
    snprintf(index, sizeof index, "%s/ix", dir);
    pclip_index_options o = {.dtype = dt};
    ck_assert_status(
        ctx, pclip_index_update(ctx, index, model, cpu, (const char *const *)paths, NI, &o, NULL),
        PCLIP_STATUS_OK);
    const int32_t dim = pclip_model_config(model)->projection_dim;
    float *emb = malloc((size_t)NI * (size_t)dim * sizeof *emb);
    pclip_embed_options eo = {.flags = PCLIP_ENCODE_NORMALIZE};
    ck_assert_status(
        ctx,
        pclip_embed_image_files(model, cpu, (const char *const *)paths, NI, &eo, keep_rows, emb),
        PCLIP_STATUS_OK);
    pclip_index_t x;
    ck_assert_status(ctx, pclip_index_open(ctx, index, &x), PCLIP_STATUS_OK);
    pclip_index_hit hg[NI * NI], hc[NI * NI];
    int64_t ng, nc;
    /* the same queries: on this backend and by the CPU scan */
    for (int64_t k = 1; k <= NI; k += NI - 1) {
        ck_assert_status(ctx, pclip_index_search_on(x, b, emb, NI, dim, k, hg, &ng),
                         PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip_index_search(x, emb, NI, dim, k, hc, &nc), PCLIP_STATUS_OK);
        ck_assert_int_eq(ng, nc);
        same_hits(pclip_index_dtype_name(dt), hg, hc, NI * ng, 1e-5f);
    }
    /* text queries encoded and searched on this backend, against the CPU's */
    const char *texts[] = {"a photo of a cat", "a grey square"};
    ck_assert_status(ctx, pclip_index_search_text(x, model, b, texts, 2, 3, hg, &ng),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_index_search_text(x, model, cpu, texts, 2, 3, hc, &nc),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(ng, 3);
    same_hits("text", hg, hc, 2 * 3, 1e-4f);
    pclip_index_close(x);
    free(emb);
    for (int i = 0; i < NI; i++) free(paths[i]);
    pclip_backend_destroy(cpu);
    pclip_model_destroy(model);
}
END_TEST

int main(int argc, char **argv) {
    int arg = pclip_test_backend_args(argc, argv, &backend, &test_device);
    if (arg < argc) {
        fprintf(stderr, "usage: check_search [cpu|vulkan|opencl]\n");
        return 2;
    }
    pclip_test_probe_backend("check_search", backend, test_device);
    Suite *s = suite_create("search");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_set_timeout(core, 300);
    tcase_add_loop_test(core, test_graph_matches_scan, 0, 3);
    tcase_add_loop_test(core, test_real_index, 0, 3);
    tcase_add_test(core, test_topk_limits);
    suite_add_tcase(s, core);
    return pclip_test_run(s);
}
