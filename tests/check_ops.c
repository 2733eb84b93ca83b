/* Ops: every parity case of core/parity.c on one backend against the CPU
 * reference, and the graph and backend limits (shape errors, empty graphs,
 * unread results, planner reuse, device indices, allocation failures).
 *
 *   check_ops cpu        CPU fast path (device 0) against the reference (device 1)
 *   check_ops vulkan     Vulkan device PORTCLIP_DEVICE (default 0) against it, and
 *                        likewise opencl once those backends exist
 *
 * The backend under test comes from argv[1] (or PCLIP_TEST_BACKEND; "cpu" by
 * default). CTest registers one test per backend (check_ops_cpu, ...); a
 * backend this machine cannot open prints "skipped: <backend>: <reason>" and
 * exits 77. It is probed in a child process: devices are only ever opened
 * after Check's fork. PORTCLIP_CPU_SIMD=avx2|scalar runs the CPU fast path at
 * a lower SIMD level (check_ops_cpu_avx2, check_ops_cpu_scalar).
 *
 * To replay outside Check: `check_ops cpu --list` names every case,
 * `--case N` runs one and prints its errors, `--summary` runs them all and
 * prints the largest errors per op. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../backends/cpu/cpu.h"
#include "graph/parity.h"
#include "testutil.h"

static const char *backend = "cpu"; /* under test */
static int32_t test_device = 0;

#define ck_assert_err_has(ctx, needle)                                                             \
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), needle) != NULL, "message '%s' lacks '%s'",    \
                  pclip_ctx_last_error(ctx), needle)

static void open_pair(pclip_ctx_t ctx, pclip_backend_t *ref, pclip_backend_t *test) {
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, ref), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, test), PCLIP_STATUS_OK);
}

static void print_result(size_t i, const pclip__parity_result *r) {
    printf("%4zu %-64s nmse %9.3g (tol %7.1g) max_abs %9.3g max_rel %9.3g guard %lld/%lld %s\n", i,
           r->name, r->nmse, r->tol, r->max_abs, r->max_rel, (long long)r->guard_ref,
           (long long)r->guard_test, r->passed ? "ok" : r->why);
}

/* ---- parity: one loop test per op, one iteration per case ---- */

START_TEST(test_parity) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &test);
    pclip__parity_result r;
    pclip_status st = pclip__parity_run(ctx, ref, test, (size_t)_i, &r);
    ck_assert_msg(st == PCLIP_STATUS_OK, "case %d on %s: %s: %s", _i, backend,
                  pclip_status_name(st), pclip_ctx_last_error(ctx));
    if (getenv("PCLIP_PARITY_VERBOSE")) print_result((size_t)_i, &r);
    ck_assert_msg(
        r.passed,
        "case %d '%s' on %s (%s): %s[NMSE %.3g, tolerance %.3g, max abs %.3g, max rel %.3g;"
        " worst element %zu: test %.9g, reference %.9g]",
        _i, r.name, backend, pclip_backend_device_name(test), r.why, r.nmse, r.tol, r.max_abs,
        r.max_rel, r.worst, (double)r.worst_test, (double)r.worst_ref);
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- helpers for small graphs ---- */

static float *ramp(size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = scale * (float)((int)(i * 37 % 101) - 50) / 50.0f;
    return p;
}

/* Runs g (planned or not) on b with the given inputs; reads `out` into y. */
static pclip_status run_graph(pclip_backend_t b, pclip__graph *g, int n_in, pclip__tensor **in,
                              void **data, pclip__tensor *out, float *y) {
    pclip__exec *e = NULL;
    pclip_status st = pclip__exec_create(b, g, &e);
    for (int i = 0; !st && i < n_in; i++) st = pclip__exec_write(e, in[i], data[i]);
    if (!st) st = pclip__exec_run(e);
    if (!st && out) st = pclip__exec_read(e, out, y);
    pclip__exec_destroy(e);
    return st;
}

static double nmse(const float *t, const float *r, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)t[i] - r[i]) * ((double)t[i] - r[i]);
        den += (double)r[i] * r[i];
    }
    return den > 0 ? num / den : num;
}

/* Checks a plan: aligned offsets inside the arena, and no two tensors live
 * at the same time sharing a byte. A tensor is live from its op (inputs:
 * from the start) to its last reader, or to the end for outputs and for
 * inputs nobody reads. Returns "" or what is wrong. */
static const char *plan_problem(const pclip__graph *g) {
    static char why[512];
    const int32_t end = g->n_tensors;
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const pclip__tensor *a = g->tensors[i];
        if (a->kind == PCLIP__TENSOR_WEIGHT) continue;
        if (a->offset % PCLIP__ALIGN || a->offset + a->nbytes > g->arena_bytes) {
            snprintf(why, sizeof why, "'%s' at [%zu, +%zu) in a %zu-byte arena", a->name, a->offset,
                     a->nbytes, g->arena_bytes);
            return why;
        }
        int32_t a0 = a->kind == PCLIP__TENSOR_INPUT ? -1 : a->id;
        int32_t a1 = a->is_output || (a->kind == PCLIP__TENSOR_INPUT && a->last_use < 0) ? end
                     : a->last_use < 0                                                   ? a->id
                                       : a->last_use;
        for (int32_t j = i + 1; j < g->n_tensors; j++) {
            const pclip__tensor *b = g->tensors[j];
            if (b->kind == PCLIP__TENSOR_WEIGHT) continue;
            int32_t b0 = b->kind == PCLIP__TENSOR_INPUT ? -1 : b->id;
            int32_t b1 = b->is_output || (b->kind == PCLIP__TENSOR_INPUT && b->last_use < 0) ? end
                         : b->last_use < 0                                                   ? b->id
                                           : b->last_use;
            bool together = a0 <= b1 && b0 <= a1;
            bool overlap = a->offset < b->offset + b->nbytes && b->offset < a->offset + a->nbytes;
            if (together && overlap) {
                snprintf(why, sizeof why,
                         "'%s' [%zu, +%zu) live %d..%d overlaps '%s' [%zu, +%zu) live %d..%d",
                         a->name, a->offset, a->nbytes, a0, a1, b->name, b->offset, b->nbytes, b0,
                         b1);
                return why;
            }
        }
    }
    return "";
}

/* ---- limits ---- */

START_TEST(test_shape_errors) {
    pclip_ctx_t ctx;
    pclip__graph *g;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    static const float data[64];
    const int64_t ane[2] = {3, 5}, wne[2] = {4, 6};
    pclip__tensor *a = pclip__input(g, "a", PCLIP__DTYPE_F32, 2, ane);
    pclip__tensor *w = pclip__weight(g, "w", 2, wne, data);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(g->status, PCLIP_STATUS_OK);
    ck_assert_ptr_null(pclip__linear(g, "proj", a, w, NULL, PCLIP__ACT_NONE, NULL));
    ck_assert_int_eq(g->status, PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "matmul 'proj'");
    ck_assert_err_has(ctx, "a [3, 5]");
    ck_assert_err_has(ctx, "w [4, 6]");
    /* a NULL source fails at once and keeps the first message */
    char first[PCLIP_ERROR_TEXT];
    snprintf(first, sizeof first, "%s", pclip_ctx_last_error(ctx));
    ck_assert_ptr_null(pclip__act(g, "act", NULL, PCLIP__ACT_GELU));
    ck_assert_str_eq(pclip_ctx_last_error(ctx), first);

    const int64_t xne[2] = {2, 3}, bne[1] = {4}, gne[1] = {7}, qne[2] = {6, 10},
                  pne[4] = {1, 3, 10, 10};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
    pclip__tensor *bb = pclip__input(g, "b", PCLIP__DTYPE_F32, 1, bne);
    ck_assert_ptr_null(pclip__add(g, "sum", x, bb));
    ck_assert_err_has(ctx, "add 'sum'");
    ck_assert_err_has(ctx, "x [2, 3]");
    ck_assert_err_has(ctx, "b [4]");
    pclip__tensor *gamma = pclip__weight(g, "gamma", 1, gne, data);
    ck_assert_ptr_null(pclip__layer_norm(g, "ln", x, gamma, gamma, 1e-5f));
    ck_assert_err_has(ctx, "layer_norm 'ln'");
    ck_assert_err_has(ctx, "gamma [7]");
    pclip__tensor *qkv = pclip__input(g, "qkv", PCLIP__DTYPE_F32, 2, qne);
    ck_assert_ptr_null(pclip__attention(g, "attn", qkv, 2, 3, 4, false));
    ck_assert_err_has(ctx, "attention 'attn'");
    ck_assert_err_has(ctx, "qkv [6, 10]");
    pclip__tensor *px = pclip__input(g, "pixels", PCLIP__DTYPE_F32, 4, pne);
    ck_assert_ptr_null(pclip__patches(g, "patches", px, 3));
    ck_assert_err_has(ctx, "patches 'patches'");
    ck_assert_err_has(ctx, "pixels [1, 3, 10, 10]");
    ck_assert_ptr_null(pclip__gather_rows(g, "rows", w, x)); /* float indices */
    ck_assert_err_has(ctx, "gather_rows 'rows'");
    ck_assert_int_eq(g->status, PCLIP_STATUS_INVALID_ARGUMENT);
    /* the graph that is left still plans and runs */
    ck_assert_int_eq(pclip__graph_plan(g), PCLIP_STATUS_OK);
    pclip__graph_destroy(g);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_empty_graph) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    pclip__graph *g;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &test);
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    ck_assert_status(ctx, run_graph(test, g, 0, NULL, NULL, NULL, NULL), PCLIP_STATUS_OK);
    ck_assert_uint_eq(g->arena_bytes, 0);
    ck_assert_status(ctx, run_graph(ref, g, 0, NULL, NULL, NULL, NULL), PCLIP_STATUS_OK);
    pclip__graph_destroy(g);
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Results nobody reads: an op whose output feeds nothing, an output that is
 * never read back, and reading a tensor that is not an output. */
START_TEST(test_unread_results) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    pclip__graph *g;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &test);
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t ne[2] = {4, 33};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, ne);
    pclip__tensor *dead = pclip__scale(g, "dead", x, 2.0f);
    pclip__tensor *dead2 = pclip__act(g, "dead2", dead, PCLIP__ACT_GELU);
    pclip__tensor *y = pclip__act(g, "y", x, PCLIP__ACT_QUICK_GELU);
    pclip__tensor *unread = pclip__l2_norm(g, "unread_output", y, 1e-12f);
    ck_assert_ptr_nonnull(dead2);
    ck_assert_ptr_nonnull(unread);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_output(g, unread), PCLIP_STATUS_OK);
    float *in = ramp(4 * 33, 3.0f), yt[4 * 33], yr[4 * 33];
    void *data[1] = {in};
    ck_assert_status(ctx, run_graph(test, g, 1, &x, data, y, yt), PCLIP_STATUS_OK);
    ck_assert_status(ctx, run_graph(ref, g, 1, &x, data, y, yr), PCLIP_STATUS_OK);
    ck_assert_msg(nmse(yt, yr, 4 * 33) < 1e-11, "nmse %g", nmse(yt, yr, 4 * 33));
    ck_assert_str_eq(plan_problem(g), "");
    pclip__exec *e;
    ck_assert_status(ctx, pclip__exec_create(test, g, &e), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_read(e, dead, yt), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "'dead' is not an output");
    pclip__exec_destroy(e);
    free(in);
    pclip__graph_destroy(g);
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* A chain of 10 elementwise ops needs two or three live tensors, not ten. */
START_TEST(test_planner_reuse) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    pclip__graph *g;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &test);
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t ne[2] = {64, 1000}, bne[1] = {1000};
    const size_t n = 64 * 1000;
    float *bias = ramp(1000, 1.0f);
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, ne);
    pclip__tensor *b = pclip__weight(g, "bias", 1, bne, bias);
    pclip__tensor *t = x;
    char name[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "t%d", i);
        switch (i % 4) {
        case 0: t = pclip__scale(g, name, t, 0.5f); break;
        case 1: t = pclip__add(g, name, t, b); break;
        case 2: t = pclip__act(g, name, t, PCLIP__ACT_GELU_TANH); break;
        default: t = pclip__mul(g, name, t, b); break;
        }
    }
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pclip__graph_output(g, t), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_plan(g), PCLIP_STATUS_OK);
    ck_assert_msg(g->arena_bytes < g->naive_bytes && g->arena_bytes <= 3 * n * 4 + 3 * PCLIP__ALIGN,
                  "arena %zu bytes, naive %zu", g->arena_bytes, g->naive_bytes);
    ck_assert_str_eq(plan_problem(g), "");
    float *in = ramp(n, 2.0f), *yt = malloc(n * 4), *yr = malloc(n * 4);
    void *data[1] = {in};
    ck_assert_status(ctx, run_graph(test, g, 1, &x, data, t, yt), PCLIP_STATUS_OK);
    ck_assert_status(ctx, run_graph(ref, g, 1, &x, data, t, yr), PCLIP_STATUS_OK);
    ck_assert_msg(nmse(yt, yr, n) < 1e-11, "nmse %g", nmse(yt, yr, n));
    free(in), free(yt), free(yr), free(bias);
    pclip__graph_destroy(g);
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* One pre-LayerNorm transformer block, CLIP's shape of graph: many ops in one
 * arena, residuals, fused epilogues. */
static pclip__tensor *block_graph(pclip__graph *g, pclip__tensor **x, float **weights, int32_t B,
                                  int32_t T, int32_t W, int32_t H, bool causal) {
    const int64_t xne[2] = {(int64_t)B * T, W}, w1[1] = {W}, wqkv[2] = {3 * W, W},
                  bqkv[1] = {3 * W};
    const int64_t wo[2] = {W, W}, wf1[2] = {4 * W, W}, bf1[1] = {4 * W}, wf2[2] = {W, 4 * W};
    const size_t sizes[] = {W, W, 3 * W * W, 3 * W, W * W, W, W, W, 4 * W * W, 4 * W, 4 * W * W, W};
    for (int i = 0; i < 12; i++) weights[i] = ramp(sizes[i], i == 0 || i == 6 ? 1.0f : 0.3f);
    *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
    pclip__tensor *h = pclip__layer_norm(g, "ln1", *x, pclip__weight(g, "ln1.g", 1, w1, weights[0]),
                                         pclip__weight(g, "ln1.b", 1, w1, weights[1]), 1e-5f);
    pclip__tensor *qkv =
        pclip__linear(g, "qkv", h, pclip__weight(g, "qkv.w", 2, wqkv, weights[2]),
                      pclip__weight(g, "qkv.b", 1, bqkv, weights[3]), PCLIP__ACT_NONE, NULL);
    pclip__tensor *a = pclip__attention(g, "attn", qkv, B, T, H, causal);
    pclip__tensor *r =
        pclip__linear(g, "out", a, pclip__weight(g, "out.w", 2, wo, weights[4]),
                      pclip__weight(g, "out.b", 1, w1, weights[5]), PCLIP__ACT_NONE, *x);
    h = pclip__layer_norm(g, "ln2", r, pclip__weight(g, "ln2.g", 1, w1, weights[6]),
                          pclip__weight(g, "ln2.b", 1, w1, weights[7]), 1e-5f);
    pclip__tensor *f =
        pclip__linear(g, "fc1", h, pclip__weight(g, "fc1.w", 2, wf1, weights[8]),
                      pclip__weight(g, "fc1.b", 1, bf1, weights[9]), PCLIP__ACT_QUICK_GELU, NULL);
    return pclip__linear(g, "fc2", f, pclip__weight(g, "fc2.w", 2, wf2, weights[10]),
                         pclip__weight(g, "fc2.b", 1, w1, weights[11]), PCLIP__ACT_NONE, r);
}

START_TEST(test_block_graph) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    pclip__graph *g;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &test);
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    float *w[12];
    pclip__tensor *x, *y = block_graph(g, &x, w, 2, 7 + 70 * (_i % 2), 48, 3, _i == 1);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_plan(g), PCLIP_STATUS_OK);
    ck_assert_str_eq(plan_problem(g), "");
    const size_t n = (size_t)pclip__nelements(y);
    float *in = ramp(n, 1.0f), *yt = malloc(n * 4), *yr = malloc(n * 4);
    void *data[1] = {in};
    ck_assert_status(ctx, run_graph(test, g, 1, &x, data, y, yt), PCLIP_STATUS_OK);
    ck_assert_status(ctx, run_graph(ref, g, 1, &x, data, y, yr), PCLIP_STATUS_OK);
    ck_assert_msg(nmse(yt, yr, n) < 1e-10, "nmse %g", nmse(yt, yr, n));
    free(in), free(yt), free(yr);
    for (int i = 0; i < 12; i++) free(w[i]);
    pclip__graph_destroy(g);
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_device_index) {
    pclip_ctx_t ctx;
    pclip_backend_t b = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    int32_t bad = strcmp(backend, "cpu") == 0 ? 2 : 999;
    ck_assert_int_eq(pclip_backend_create(ctx, backend, bad, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(b);
    char want[64];
    snprintf(want, sizeof want, "%s: device %d does not exist", backend, bad);
    ck_assert_err_has(ctx, want);
    if (strcmp(backend, "cpu") == 0) {
        ck_assert_err_has(ctx, "2 devices: 0..1");
        /* the backend's own open refuses it too */
        void *state = NULL;
        ck_assert_int_eq(pclip__cpu_backend_ops.create(ctx, 2, &state),
                         PCLIP_STATUS_INVALID_ARGUMENT);
        ck_assert_err_has(ctx, "cpu: device 2 does not exist (0: fast, 1: reference)");
        ck_assert_int_eq(pclip__cpu_backend_ops.create(ctx, -1, &state),
                         PCLIP_STATUS_INVALID_ARGUMENT);
        ck_assert_ptr_null(state);
    }
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Writing a tensor of another graph, or a weight, is refused. */
START_TEST(test_foreign_tensor) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    pclip__graph *g, *g2;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &test);
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_create(ctx, &g2), PCLIP_STATUS_OK);
    const int64_t ne[1] = {8};
    float buf[8] = {0};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 1, ne);
    pclip__tensor *y = pclip__scale(g, "y", x, 2.0f);
    pclip__tensor *other = pclip__input(g2, "other", PCLIP__DTYPE_F32, 1, ne);
    pclip__tensor *oy = pclip__scale(g2, "other_y", other, 2.0f);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_output(g2, oy), PCLIP_STATUS_OK);
    pclip__exec *e;
    ck_assert_status(ctx, pclip__exec_create(test, g, &e), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_write(e, other, buf), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "'other' is not part of this graph");
    ck_assert_int_eq(pclip__exec_read(e, oy, buf), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip__exec_write(e, y, buf), PCLIP_STATUS_INVALID_ARGUMENT);
    pclip__exec_destroy(e);
    pclip__graph_destroy(g2);
    pclip__graph_destroy(g);
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Every allocation of create + build + compile + run failing in turn: each
 * failure is a clean OUT_OF_MEMORY, nothing leaks (ASan), and once no
 * allocation fails the result is right. */
static pclip_status small_run(pclip_backend_t ref_for_check, float *y, size_t *n) {
    pclip_ctx_t ctx = NULL;
    pclip_backend_t b = NULL;
    pclip__graph *g = NULL;
    static float w[5 * 17], bias[5], gam[5], bet[5], in[3 * 17];
    for (int i = 0; i < 5 * 17; i++) w[i] = (float)(i % 7) * 0.1f - 0.3f;
    for (int i = 0; i < 5; i++) bias[i] = 0.1f * (float)i, gam[i] = 1.0f, bet[i] = 0.0f;
    for (int i = 0; i < 3 * 17; i++) in[i] = (float)(i % 5) * 0.2f - 0.4f;
    pclip_status st = pclip_ctx_create(&ctx);
    if (st) return st;
    if (ref_for_check)
        b = ref_for_check;
    else
        st = pclip_backend_create(ctx, backend, test_device, &b);
    if (!st) st = pclip__graph_create(ctx, &g);
    pclip__tensor *x = NULL, *out = NULL;
    if (!st) {
        const int64_t xne[2] = {3, 17}, wne[2] = {5, 17}, bne[1] = {5};
        x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
        out = pclip__linear(g, "y", x, pclip__weight(g, "w", 2, wne, w),
                            pclip__weight(g, "b", 1, bne, bias), PCLIP__ACT_GELU, NULL);
        out = pclip__layer_norm(g, "ln", out, pclip__weight(g, "g", 1, bne, gam),
                                pclip__weight(g, "beta", 1, bne, bet), 1e-5f);
        out = pclip__l2_norm(g, "norm", out, 1e-12f);
        /* g->status, not only !out: a failed optional source (the bias)
         * would otherwise build a graph without it */
        st = g->status;
        if (!st) st = pclip__graph_output(g, out);
    }
    void *data[1] = {in};
    if (!st) st = run_graph(b, g, 1, &x, data, out, y);
    if (!st) *n = 15;
    pclip__graph_destroy(g);
    if (b != ref_for_check) pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
    return st;
}

START_TEST(test_alloc_failure_walk) {
    float y[15], want[15];
    size_t n = 0;
    pclip_ctx_t ctx;
    pclip_backend_t ref;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    ck_assert_int_eq(small_run(ref, want, &n), PCLIP_STATUS_OK);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
    long k;
    for (k = 1; k < 10000; k++) {
        pclip__alloc_fail_at(k);
        pclip_status st = small_run(NULL, y, &n);
        pclip__alloc_fail_at(0);
        if (st == PCLIP_STATUS_OK) break;
        ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY, "allocation %ld failing gave %s", k,
                      pclip_status_name(st));
    }
    ck_assert_msg(k > 20 && k < 10000, "walk ended at allocation %ld", k);
    ck_assert_msg(nmse(y, want, 15) < 1e-10, "nmse %g", nmse(y, want, 15));
}
END_TEST

/* ---- CPU only ---- */

/* The CPU backend's own device list (not pclip_devices_list, which would
 * also load other backends' drivers into this test). */
START_TEST(test_cpu_devices) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip__device_info d[4];
    int32_t count = 0;
    ck_assert_status(ctx, pclip__cpu_backend_ops.list_devices(ctx, d, 4, &count), PCLIP_STATUS_OK);
    ck_assert_int_eq(count, 2);
    for (int32_t i = 0; i < count; i++) {
        ck_assert_str_eq(d[i].type, "cpu");
        ck_assert(!d[i].software);
        ck_assert_uint_gt(d[i].memory_bytes, (uint64_t)64 << 20);
        ck_assert_int_gt(strlen(d[i].vendor), 0);
    }
    ck_assert_msg(strncmp(d[0].name, "CPU (fast: ", 11) == 0, "name '%s'", d[0].name);
    ck_assert_msg(strstr(d[0].name, "AVX-512") || strstr(d[0].name, "AVX2+FMA") ||
                      strstr(d[0].name, "scalar"),
                  "name '%s' lacks the SIMD level", d[0].name);
    ck_assert_str_eq(d[1].name, "CPU reference (plain C)");
    /* a short table gets the count anyway */
    ck_assert_status(ctx, pclip__cpu_backend_ops.list_devices(ctx, d, 1, &count), PCLIP_STATUS_OK);
    ck_assert_int_eq(count, 2);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_cpu_environment) {
    pclip_ctx_t ctx;
    pclip_backend_t b = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    setenv("PORTCLIP_THREADS", "many", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "PORTCLIP_THREADS='many' is not a thread count");
    setenv("PORTCLIP_THREADS", "0", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    setenv("PORTCLIP_THREADS", "1", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(strstr(pclip_backend_device_name(b), "1 thread)"));
    pclip_backend_destroy(b);
    b = NULL;
    unsetenv("PORTCLIP_THREADS");
    setenv("PORTCLIP_CPU_SIMD", "sse9", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "PORTCLIP_CPU_SIMD='sse9'");
    setenv("PORTCLIP_CPU_SIMD", "scalar", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(strstr(pclip_backend_device_name(b), "scalar"));
    pclip_backend_destroy(b);
    b = NULL;
    unsetenv("PORTCLIP_CPU_SIMD");
    setenv("PORTCLIP_CPU_PANELS", "2", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "PORTCLIP_CPU_PANELS='2' is not 0 or 1");
    unsetenv("PORTCLIP_CPU_PANELS");
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Packed weights are shared by graphs on one device and freed with the last. */
START_TEST(test_cpu_weight_cache) {
    pclip_ctx_t ctx;
    pclip_backend_t b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    float *w = ramp(64 * 96, 0.5f), *in = ramp(50 * 96, 1.0f), y1[50 * 64], y2[50 * 64];
    pclip__graph *g[3];
    pclip__exec *e[3];
    pclip__tensor *x[3], *y[3];
    const int32_t rows[3] = {50, 50, 7};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(pclip__graph_create(ctx, &g[i]), PCLIP_STATUS_OK);
        const int64_t xne[2] = {rows[i], 96}, wne[2] = {64, 96};
        x[i] = pclip__input(g[i], "x", PCLIP__DTYPE_F32, 2, xne);
        y[i] = pclip__linear(g[i], "y", x[i], pclip__weight(g[i], "w", 2, wne, w), NULL,
                             PCLIP__ACT_NONE, NULL);
        ck_assert_int_eq(pclip__graph_output(g[i], y[i]), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip__exec_create(b, g[i], &e[i]), PCLIP_STATUS_OK);
        if (i == 1) ck_assert_int_eq(pclip__cpu_packed_weights(b->state), 1);
    }
    ck_assert_int_le(pclip__cpu_packed_weights(b->state), 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pclip__exec_write(e[i], x[i], in), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_run(e[i]), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_read(e[i], y[i], i ? y2 : y1), PCLIP_STATUS_OK);
    }
    ck_assert_mem_eq(y1, y2, sizeof y1);
    for (int i = 0; i < 3; i++) {
        pclip__exec_destroy(e[i]);
        pclip__graph_destroy(g[i]);
    }
    ck_assert_int_eq(pclip__cpu_packed_weights(b->state), 0);
    free(w), free(in);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* The panel kernel (matmul.c) takes the linear layers it fits, and only
 * those: a few dozen rows, AVX-512, N of at least two 64-column panels per
 * thread. Its results match the reference with the full epilogue, over row
 * blocks with a tail (50 = 8 x 6 + 2) and K chunks with a short last one
 * (784 = 3 x 256 + 16). */
START_TEST(test_cpu_panel_kernel) {
    pclip_ctx_t ctx;
    pclip_backend_t fast, ref;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    setenv("PORTCLIP_THREADS", "2", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &fast), PCLIP_STATUS_OK);
    unsetenv("PORTCLIP_THREADS");
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    const bool avx512 = strstr(pclip_backend_device_name(fast), "AVX-512") != NULL;
    if (!avx512) fprintf(stderr, "test_cpu_panel_kernel: no AVX-512 here, checks results only\n");
    /* the benchmark hook turns it off */
    pclip_backend_t off;
    setenv("PORTCLIP_CPU_PANELS", "0", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &off), PCLIP_STATUS_OK);
    unsetenv("PORTCLIP_CPU_PANELS");
    static const int32_t shapes[][4] = {/* M, N, K, panel kernel expected */
                                        {50, 256, 784, 1}, {16, 512, 64, 1},  {160, 384, 96, 1},
                                        {15, 256, 64, 0},  {161, 256, 64, 0}, {50, 192, 64, 0},
                                        {50, 250, 64, 0},  {50, 256, 72, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *w = ramp((size_t)(N * K), 0.1f), *bias = ramp((size_t)N, 0.5f);
        float *in = ramp((size_t)(M * K), 1.0f), *res = ramp((size_t)(M * N), 2.0f);
        float *y[2] = {malloc((size_t)(M * N) * sizeof(float)),
                       malloc((size_t)(M * N) * sizeof(float))};
        for (int dev = 0; dev < 2; dev++) {
            pclip__graph *g;
            pclip__exec *e;
            ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
            const int64_t xne[2] = {M, K}, wne[2] = {N, K}, bne[1] = {N}, rne[2] = {M, N};
            pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
            pclip__tensor *r = pclip__input(g, "r", PCLIP__DTYPE_F32, 2, rne);
            pclip__tensor *out =
                pclip__linear(g, "y", x, pclip__weight(g, "w", 2, wne, w),
                              pclip__weight(g, "b", 1, bne, bias), PCLIP__ACT_QUICK_GELU, r);
            ck_assert_int_eq(pclip__graph_output(g, out), PCLIP_STATUS_OK);
            if (dev == 0) { /* the same graph on the backend without the kernel */
                ck_assert_status(ctx, pclip__exec_create(off, g, &e), PCLIP_STATUS_OK);
                ck_assert_int_eq(pclip__cpu_panel_nodes(e->state), 0);
                pclip__exec_destroy(e);
            }
            ck_assert_status(ctx, pclip__exec_create(dev ? ref : fast, g, &e), PCLIP_STATUS_OK);
            if (dev == 0)
                ck_assert_msg(pclip__cpu_panel_nodes(e->state) == (avx512 ? shapes[s][3] : 0),
                              "M %lld N %lld K %lld: panel kernel %s expected", (long long)M,
                              (long long)N, (long long)K, shapes[s][3] ? "" : "not");
            ck_assert_int_eq(pclip__exec_write(e, x, in), PCLIP_STATUS_OK);
            ck_assert_int_eq(pclip__exec_write(e, r, res), PCLIP_STATUS_OK);
            ck_assert_int_eq(pclip__exec_run(e), PCLIP_STATUS_OK);
            ck_assert_int_eq(pclip__exec_read(e, out, y[dev]), PCLIP_STATUS_OK);
            pclip__exec_destroy(e);
            pclip__graph_destroy(g);
        }
        double err = 0, norm = 0;
        for (int64_t i = 0; i < M * N; i++) {
            err += ((double)y[0][i] - y[1][i]) * ((double)y[0][i] - y[1][i]);
            norm += (double)y[1][i] * y[1][i];
        }
        ck_assert_msg(err <= 1e-12 * norm, "M %lld N %lld K %lld: NMSE %.3g", (long long)M,
                      (long long)N, (long long)K, err / norm);
        free(w), free(bias), free(in), free(res), free(y[0]), free(y[1]);
    }
    pclip_backend_destroy(fast);
    pclip_backend_destroy(ref);
    pclip_backend_destroy(off);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* An arena bigger than memory: OUT_OF_MEMORY naming its size. (Where the
 * kernel overcommits without limit the allocation may succeed: then there is
 * nothing to check.) ASan aborts on such a request instead of failing it. */
START_TEST(test_cpu_arena_too_large) {
#if defined(__SANITIZE_ADDRESS__)
    return;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return;
#endif
#endif
    pclip_ctx_t ctx;
    pclip_backend_t b;
    pclip__graph *g;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    /* 64 inputs of 4 GiB, all live at once: an arena of 256 GiB and more */
    const int64_t ne[1] = {(int64_t)1 << 30};
    pclip__tensor *y = pclip__input(g, "x0", PCLIP__DTYPE_F32, 1, ne);
    for (int i = 1; i < 64; i++) {
        char name[16], sum[16];
        snprintf(name, sizeof name, "x%d", i);
        snprintf(sum, sizeof sum, "sum%d", i);
        y = pclip__add(g, sum, y, pclip__input(g, name, PCLIP__DTYPE_F32, 1, ne));
    }
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_plan(g), PCLIP_STATUS_OK);
    pclip__exec *e = NULL;
    pclip_status st = pclip__exec_create(b, g, &e);
    if (st) {
        char want[96];
        snprintf(want, sizeof want, "cpu: cannot allocate the graph's arena (%zu MiB)",
                 (g->arena_bytes + ((size_t)1 << 20) - 1) >> 20);
        ck_assert_status(ctx, st, PCLIP_STATUS_OUT_OF_MEMORY);
        ck_assert_err_has(ctx, want);
    }
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- the suite ---- */

static Suite *ops_suite(void) {
    Suite *s = suite_create("ops");
    /* one TCase per op, one iteration per case (cases come grouped by op) */
    size_t count = pclip__parity_count(), lo = 0;
    while (lo < count) {
        pclip__parity_case c;
        pclip__parity_get(lo, &c);
        size_t hi = lo + 1;
        pclip__parity_case d;
        while (hi < count && pclip__parity_get(hi, &d) && d.op == c.op) hi++;
        TCase *tc = tcase_create(pclip__op_name(c.op));
        tcase_set_timeout(tc, 600);
        tcase_add_loop_test(tc, test_parity, (int)lo, (int)hi);
        suite_add_tcase(s, tc);
        lo = hi;
    }
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_shape_errors);
    tcase_add_test(tc, test_empty_graph);
    tcase_add_test(tc, test_unread_results);
    tcase_add_test(tc, test_planner_reuse);
    tcase_add_loop_test(tc, test_block_graph, 0, 2);
    tcase_add_test(tc, test_device_index);
    tcase_add_test(tc, test_foreign_tensor);
    tcase_add_test(tc, test_alloc_failure_walk);
    if (strcmp(backend, "cpu") == 0) {
        tcase_add_test(tc, test_cpu_devices);
        tcase_add_test(tc, test_cpu_environment);
        tcase_add_test(tc, test_cpu_weight_cache);
        tcase_add_test(tc, test_cpu_panel_kernel);
        tcase_add_test(tc, test_cpu_arena_too_large);
    }
    suite_add_tcase(s, tc);
    return s;
}

/* ---- main: backend choice, skip probe, replay modes ---- */

/* Opens the backend in a child process; returns its exit status (0 ok, 77
 * unavailable, else another error) with the reason in `why`. */
static int probe(char *why, size_t n) {
    int fds[2];
    why[0] = '\0';
    if (pipe(fds) != 0) return 1;
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        close(fds[0]);
        pclip_ctx_t ctx;
        pclip_backend_t b;
        if (pclip_ctx_create(&ctx)) _exit(1);
        pclip_status st = pclip_backend_create(ctx, backend, test_device, &b);
        if (st) {
            const char *msg = pclip_ctx_last_error(ctx);
            if (write(fds[1], msg, strlen(msg)) < 0) _exit(1);
            _exit(st == PCLIP_STATUS_BACKEND_UNAVAILABLE ? PCLIP_TEST_SKIP : 1);
        }
        pclip_backend_destroy(b);
        pclip_ctx_destroy(ctx);
        _exit(0);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t r;
    while (used + 1 < n && (r = read(fds[0], why + used, n - 1 - used)) > 0) used += (size_t)r;
    why[used] = '\0';
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 1;
    return WEXITSTATUS(status);
}

/* --case N, --summary: run in this process and print the errors. */
static int replay(long only) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    if (pclip_ctx_create(&ctx) || pclip_backend_create(ctx, "cpu", 1, &ref) ||
        pclip_backend_create(ctx, backend, test_device, &test)) {
        fprintf(stderr, "check_ops: %s\n", pclip_ctx_last_error(ctx));
        return 1;
    }
    printf("%s device %d (%s) against the CPU reference\n", backend, test_device,
           pclip_backend_device_name(test));
    size_t count = pclip__parity_count(), failed = 0;
    double worst[PCLIP__OP_COUNT] = {0}, worst_rel[PCLIP__OP_COUNT] = {0};
    size_t cases[PCLIP__OP_COUNT] = {0};
    for (size_t i = only >= 0 ? (size_t)only : 0; i < count && (only < 0 || i == (size_t)only);
         i++) {
        pclip__parity_case c;
        pclip__parity_result r;
        pclip__parity_get(i, &c);
        if (pclip__parity_run(ctx, ref, test, i, &r)) {
            printf("%4zu error: %s\n", i, pclip_ctx_last_error(ctx));
            failed++;
            continue;
        }
        if (only >= 0 || !r.passed) print_result(i, &r);
        failed += !r.passed;
        cases[c.op]++;
        if (r.nmse > worst[c.op]) worst[c.op] = r.nmse;
        if (r.max_rel > worst_rel[c.op]) worst_rel[c.op] = r.max_rel;
    }
    if (only < 0) {
        printf("%-14s %6s %12s %12s\n", "op", "cases", "max NMSE", "max rel");
        for (int op = 1; op < PCLIP__OP_COUNT; op++)
            printf("%-14s %6zu %12.3g %12.3g\n", pclip__op_name((pclip__op)op), cases[op],
                   worst[op], worst_rel[op]);
        printf("%zu of %zu cases failed\n", failed, count);
    }
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *env = getenv("PCLIP_TEST_BACKEND");
    if (env && *env) backend = env;
    int arg = 1;
    if (argc > 1 && argv[1][0] != '-') backend = argv[arg++];
    env = getenv("PORTCLIP_DEVICE");
    if (strcmp(backend, "cpu") != 0 && env && *env) test_device = atoi(env);
    if (arg < argc && strcmp(argv[arg], "--list") == 0) {
        size_t count = pclip__parity_count();
        for (size_t i = 0; i < count; i++) {
            pclip__parity_case c;
            char name[192];
            pclip__parity_get(i, &c);
            pclip__parity_name(&c, name, sizeof name);
            printf("%4zu %-64s tol %g\n", i, name, c.tol);
        }
        return 0;
    }
    char why[1024];
    int p = probe(why, sizeof why);
    if (p == PCLIP_TEST_SKIP) {
        printf("skipped: %s: %s\n", backend, why);
        return PCLIP_TEST_SKIP;
    }
    if (p != 0) {
        fprintf(stderr, "check_ops: cannot open %s device %d: %s\n", backend, test_device, why);
        return 1;
    }
    if (arg < argc && strcmp(argv[arg], "--summary") == 0) return replay(-1);
    if (arg + 1 < argc && strcmp(argv[arg], "--case") == 0) return replay(atol(argv[arg + 1]));
    if (arg < argc) {
        fprintf(stderr, "usage: check_ops [cpu|vulkan|opencl] [--list | --summary | --case N]\n");
        return 2;
    }
    return pclip_test_run(ops_suite());
}
