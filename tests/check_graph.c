/* Graphs on one backend against the CPU reference: shape errors naming the
 * op and its operands, empty graphs, unread results, the planner's arena
 * reuse (checked for overlaps), a whole transformer block, device indices,
 * tensors of another graph, an allocation-failure walk, and the op model
 * that training needs: params, in-place side-effect ops (an SGD step run 100
 * times with another learning rate each time), reshape views, the backward
 * table against finite differences.
 *
 *   check_graph cpu|vulkan|opencl
 *
 * The backend comes from argv[1] as in check_ops (CTest: check_graph_cpu,
 * ...); a backend this machine cannot open prints "skipped: <backend>:
 * <reason>" and exits 77. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/backend.h"
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

/* ---- the planner's invariant ---- */

/* Checks a plan: aligned offsets inside the arena, and no two tensors live
 * at the same time sharing a byte. A tensor is live from its op (inputs:
 * from the start) to its last reader, or to the end for outputs and for
 * inputs nobody reads. Returns "" or what is wrong. */
static const char *plan_problem(const pclip__graph *g) {
    static char why[512];
    const int32_t end = g->n_tensors;
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const pclip__tensor *a = g->tensors[i];
        /* views share their storage's bytes; params live outside the arena */
        if (a->kind == PCLIP__TENSOR_WEIGHT || a->kind == PCLIP__TENSOR_PARAM || a->view_src)
            continue;
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
            if (b->kind == PCLIP__TENSOR_WEIGHT || b->kind == PCLIP__TENSOR_PARAM || b->view_src)
                continue;
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

/* ---- graphs ---- */

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
    ck_assert_ptr_null(pclip__linear(g, "proj", a, w, NULL, PCLIP_ACT_NONE, NULL));
    ck_assert_int_eq(g->status, PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "matmul 'proj'");
    ck_assert_err_has(ctx, "a [3, 5]");
    ck_assert_err_has(ctx, "w [4, 6]");
    /* a NULL source fails at once and keeps the first message */
    char first[PCLIP_ERROR_TEXT];
    snprintf(first, sizeof first, "%s", pclip_ctx_last_error(ctx));
    ck_assert_ptr_null(pclip__act(g, "act", NULL, PCLIP_ACT_GELU));
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
    /* the training ops */
    ck_assert_ptr_null(pclip__transpose(g, "xT", px)); /* 4-D */
    ck_assert_err_has(ctx, "transpose 'xT'");
    ck_assert_err_has(ctx, "pixels [1, 3, 10, 10]");
    ck_assert_ptr_null(pclip__sum_rows(g, "colsum", bb)); /* 1-D */
    ck_assert_err_has(ctx, "sum_rows 'colsum'");
    ck_assert_ptr_null(pclip__act_grad(g, "da", x, a, PCLIP_ACT_GELU)); /* [2, 3] vs [3, 5] */
    ck_assert_err_has(ctx, "act_grad 'da'");
    ck_assert_err_has(ctx, "a [3, 5]");
    ck_assert_ptr_null(pclip__act_grad(g, "da0", x, x, PCLIP_ACT_NONE));
    ck_assert_err_has(ctx, "act_grad 'da0': bad activation 0");
    ck_assert_ptr_null(pclip__layer_norm_grad(g, "dln", x, gamma, x, 1e-5f, 0));
    ck_assert_err_has(ctx, "layer_norm_grad 'dln'");
    ck_assert_err_has(ctx, "gamma [7]");
    const int64_t g3[1] = {3};
    pclip__tensor *gamma3 = pclip__weight(g, "gamma3", 1, g3, data);
    ck_assert_ptr_nonnull(pclip__layer_norm_grad(g, "dln_ok", x, gamma3, x, 1e-5f, 1));
    ck_assert_ptr_null(pclip__layer_norm_grad(g, "dln2", x, gamma3, x, 1e-5f, 2));
    ck_assert_err_has(ctx, "layer_norm_grad 'dln2': mode 2");
    ck_assert_ptr_null(pclip__l2_norm_grad(g, "dl2", x, bb, 0.0f));
    ck_assert_err_has(ctx, "l2_norm_grad 'dl2'");
    ck_assert_ptr_null(pclip__l2_norm_grad(g, "dl2n", x, x, -1.0f));
    ck_assert_err_has(ctx, "l2_norm_grad 'dl2n'");
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
    ck_assert_status(ctx, pclip_test_run_graph(test, g, 0, NULL, NULL, NULL, NULL),
                     PCLIP_STATUS_OK);
    ck_assert_uint_eq(g->arena_bytes, 0);
    ck_assert_status(ctx, pclip_test_run_graph(ref, g, 0, NULL, NULL, NULL, NULL), PCLIP_STATUS_OK);
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
    pclip__tensor *dead2 = pclip__act(g, "dead2", dead, PCLIP_ACT_GELU);
    pclip__tensor *y = pclip__act(g, "y", x, PCLIP_ACT_QUICK_GELU);
    pclip__tensor *unread = pclip__l2_norm(g, "unread_output", y, 1e-12f);
    ck_assert_ptr_nonnull(dead2);
    ck_assert_ptr_nonnull(unread);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_output(g, unread), PCLIP_STATUS_OK);
    float *in = pclip_test_ramp(4 * 33, 3.0f), yt[4 * 33], yr[4 * 33];
    const void *data[1] = {in};
    ck_assert_status(ctx, pclip_test_run_graph(test, g, 1, &x, data, y, yt), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_test_run_graph(ref, g, 1, &x, data, y, yr), PCLIP_STATUS_OK);
    ck_assert_msg(pclip_test_nmse(yt, yr, 4 * 33) < 1e-11, "nmse %g",
                  pclip_test_nmse(yt, yr, 4 * 33));
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
    float *bias = pclip_test_ramp(1000, 1.0f);
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, ne);
    pclip__tensor *b = pclip__weight(g, "bias", 1, bne, bias);
    pclip__tensor *t = x;
    char name[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "t%d", i);
        switch (i % 4) {
        case 0: t = pclip__scale(g, name, t, 0.5f); break;
        case 1: t = pclip__add(g, name, t, b); break;
        case 2: t = pclip__act(g, name, t, PCLIP_ACT_GELU_TANH); break;
        default: t = pclip__mul(g, name, t, b); break;
        }
    }
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pclip__graph_output(g, t), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_plan(g), PCLIP_STATUS_OK);
    ck_assert_msg(g->arena_bytes < g->naive_bytes && g->arena_bytes <= 3 * n * 4 + 3 * PCLIP__ALIGN,
                  "arena %zu bytes, naive %zu", g->arena_bytes, g->naive_bytes);
    ck_assert_str_eq(plan_problem(g), "");
    float *in = pclip_test_ramp(n, 2.0f), *yt = malloc(n * 4), *yr = malloc(n * 4);
    const void *data[1] = {in};
    ck_assert_status(ctx, pclip_test_run_graph(test, g, 1, &x, data, t, yt), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_test_run_graph(ref, g, 1, &x, data, t, yr), PCLIP_STATUS_OK);
    ck_assert_msg(pclip_test_nmse(yt, yr, n) < 1e-11, "nmse %g", pclip_test_nmse(yt, yr, n));
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
    for (int i = 0; i < 12; i++)
        weights[i] = pclip_test_ramp(sizes[i], i == 0 || i == 6 ? 1.0f : 0.3f);
    *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
    pclip__tensor *h = pclip__layer_norm(g, "ln1", *x, pclip__weight(g, "ln1.g", 1, w1, weights[0]),
                                         pclip__weight(g, "ln1.b", 1, w1, weights[1]), 1e-5f);
    pclip__tensor *qkv =
        pclip__linear(g, "qkv", h, pclip__weight(g, "qkv.w", 2, wqkv, weights[2]),
                      pclip__weight(g, "qkv.b", 1, bqkv, weights[3]), PCLIP_ACT_NONE, NULL);
    pclip__tensor *a = pclip__attention(g, "attn", qkv, B, T, H, causal);
    pclip__tensor *r =
        pclip__linear(g, "out", a, pclip__weight(g, "out.w", 2, wo, weights[4]),
                      pclip__weight(g, "out.b", 1, w1, weights[5]), PCLIP_ACT_NONE, *x);
    h = pclip__layer_norm(g, "ln2", r, pclip__weight(g, "ln2.g", 1, w1, weights[6]),
                          pclip__weight(g, "ln2.b", 1, w1, weights[7]), 1e-5f);
    pclip__tensor *f =
        pclip__linear(g, "fc1", h, pclip__weight(g, "fc1.w", 2, wf1, weights[8]),
                      pclip__weight(g, "fc1.b", 1, bf1, weights[9]), PCLIP_ACT_QUICK_GELU, NULL);
    return pclip__linear(g, "fc2", f, pclip__weight(g, "fc2.w", 2, wf2, weights[10]),
                         pclip__weight(g, "fc2.b", 1, w1, weights[11]), PCLIP_ACT_NONE, r);
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
    float *in = pclip_test_ramp(n, 1.0f), *yt = malloc(n * 4), *yr = malloc(n * 4);
    const void *data[1] = {in};
    ck_assert_status(ctx, pclip_test_run_graph(test, g, 1, &x, data, y, yt), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_test_run_graph(ref, g, 1, &x, data, y, yr), PCLIP_STATUS_OK);
    ck_assert_msg(pclip_test_nmse(yt, yr, n) < 1e-10, "nmse %g", pclip_test_nmse(yt, yr, n));
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
    if (strcmp(backend, "cpu") == 0) ck_assert_err_has(ctx, "2 devices: 0..1");
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
                            pclip__weight(g, "b", 1, bne, bias), PCLIP_ACT_GELU, NULL);
        out = pclip__layer_norm(g, "ln", out, pclip__weight(g, "g", 1, bne, gam),
                                pclip__weight(g, "beta", 1, bne, bet), 1e-5f);
        out = pclip__l2_norm(g, "norm", out, 1e-12f);
        /* g->status, not only !out: a failed optional source (the bias)
         * would otherwise build a graph without it */
        st = g->status;
        if (!st) st = pclip__graph_output(g, out);
    }
    const void *data[1] = {in};
    if (!st) st = pclip_test_run_graph(b, g, 1, &x, data, out, y);
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
    ck_assert_msg(pclip_test_nmse(y, want, 15) < 1e-10, "nmse %g", pclip_test_nmse(y, want, 15));
}
END_TEST

/* ---- the suite ---- */

/* ---- the op model: params, side effects, views, gradients ---- */

/* p -= lr * g, 100 runs of one compiled graph with another lr each run; the
 * step has side effects, so it runs although nothing reads its result, and
 * the param's values follow the same updates computed here in float. The
 * param is initialised from a weight's values and is a copy: a graph that
 * reads the weight still sees the original. */
START_TEST(test_sgd_steps) {
    pclip_ctx_t ctx;
    pclip_backend_t b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
    enum { N = 37, STEPS = 100 };
    float *w0 = pclip_test_ramp(N, 1.0f), *gv = pclip_test_ramp(N, 0.25f);
    float expect[N], got[N];
    const int64_t ne[1] = {N}, one[1] = {1};
    pclip__param *p = NULL;
    ck_assert_status(ctx, pclip__param_create(b, "head.weight", 1, ne, &p), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__param_read(p, got), PCLIP_STATUS_OK);
    for (int i = 0; i < N; i++) ck_assert_float_eq(got[i], 0.0f); /* created zero-filled */
    ck_assert_int_eq(pclip__param_write(p, w0), PCLIP_STATUS_OK);
    memcpy(expect, w0, sizeof expect);

    pclip__graph *g = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    pclip__tensor *tp = pclip__param_tensor(g, p);
    pclip__tensor *tg = pclip__input(g, "grad", PCLIP__DTYPE_F32, 1, ne);
    pclip__tensor *lr = pclip__input(g, "lr", PCLIP__DTYPE_F32, 1, one);
    ck_assert_ptr_nonnull(pclip__sgd(g, "step", tp, tg, lr));
    ck_assert_int_eq(g->status, PCLIP_STATUS_OK);
    pclip__exec *e = NULL;
    ck_assert_status(ctx, pclip__exec_create(b, g, &e), PCLIP_STATUS_OK);
    ck_assert_int_eq(e->plan.n_nodes, 1); /* no output, yet the step runs */
    ck_assert_int_eq(pclip__exec_write(e, tg, gv), PCLIP_STATUS_OK);
    for (int s = 0; s < STEPS; s++) {
        const float rate = 0.001f * (float)(s % 7 + 1) * (s & 1 ? -1.0f : 1.0f);
        ck_assert_int_eq(pclip__exec_write(e, lr, &rate), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip__exec_run(e), PCLIP_STATUS_OK);
        for (int i = 0; i < N; i++) expect[i] = expect[i] - rate * gv[i];
    }
    ck_assert_int_eq(pclip__param_read(p, got), PCLIP_STATUS_OK);
    for (int i = 0; i < N; i++)
        ck_assert_msg(got[i] == expect[i], "element %d after %d steps on %s: %.9g, expected %.9g",
                      i, STEPS, backend, (double)got[i], (double)expect[i]);
    /* the weight the param started from is untouched, on the backend too */
    pclip__graph *g2 = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g2), PCLIP_STATUS_OK);
    pclip__tensor *x = pclip__input(g2, "x", PCLIP__DTYPE_F32, 1, ne);
    pclip__tensor *wt = pclip__weight(g2, "w", 1, ne, w0);
    pclip__tensor *y = pclip__add(g2, "y", x, wt);
    ck_assert_int_eq(pclip__graph_output(g2, y), PCLIP_STATUS_OK);
    float zeros[N] = {0}, yv[N];
    pclip__tensor *in[1] = {x};
    const void *data[1] = {zeros};
    ck_assert_int_eq(pclip_test_run_graph(b, g2, 1, in, data, y, yv), PCLIP_STATUS_OK);
    for (int i = 0; i < N; i++) ck_assert_float_eq(yv[i], w0[i]);
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    pclip__graph_destroy(g2);
    pclip__param_destroy(p);
    free(w0);
    free(gv);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* A param of one backend cannot be used by a graph compiled on another; a
 * view keeps its own shape while its storage keeps its; an unread result
 * without side effects is pruned. */
START_TEST(test_op_model_rules) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &b);
    const int64_t ne[2] = {2, 6}, flat[1] = {12}, one[1] = {1};
    pclip__param *p = NULL;
    ck_assert_status(ctx, pclip__param_create(ref, "p", 2, ne, &p), PCLIP_STATUS_OK);
    pclip__graph *g = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    pclip__tensor *tp = pclip__param_tensor(g, p);
    pclip__tensor *tg = pclip__input(g, "grad", PCLIP__DTYPE_F32, 1, flat);
    pclip__tensor *lr = pclip__input(g, "lr", PCLIP__DTYPE_F32, 1, one);
    pclip__tensor *pv = pclip__reshape(g, tp, 1, flat);
    ck_assert_ptr_nonnull(pv);
    ck_assert_int_eq(tp->ndim, 2); /* the reshape made a view; tp kept its shape */
    ck_assert_int_eq(pv->ndim, 1);
    ck_assert_ptr_eq(pclip__storage(pv), tp);
    pclip__tensor *step = pclip__sgd(g, "step", pv, tg, lr);
    ck_assert_ptr_nonnull(step);
    ck_assert_ptr_eq(pclip__storage(step), tp);
    ck_assert_ptr_nonnull(pclip__scale(g, "unread", tg, 2.0f)); /* pruned */
    pclip__exec *e = NULL;
    /* the param lives on the reference device: any other backend refuses it */
    ck_assert_int_eq(pclip__exec_create(b, g, &e), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "does not live on this");
    ck_assert_status(ctx, pclip__exec_create(ref, g, &e), PCLIP_STATUS_OK);
    ck_assert_int_eq(e->plan.n_nodes, 1);
    ck_assert_int_eq(e->plan.n_params, 1);
    /* a param is no output, and an sgd needs a param */
    ck_assert_int_eq(pclip__graph_output(g, step), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(pclip__sgd(g, "bad", tg, tg, lr));
    ck_assert_err_has(ctx, "needs a PARAM");
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    pclip__param_destroy(p);
    pclip_backend_destroy(b);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Each backward builder against central differences (parity harness). */
/* Every gradient case in one child, the backends opened once (opening a
 * Vulkan instance under the validation layer costs more than a case); every
 * case runs even after one fails, each failure is printed, and the test
 * fails naming the first. A case that could not run has both backends
 * reopened for the next. */
START_TEST(test_gradients) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &b);
    const int count = (int)pclip__parity_grad_count();
    int failed = 0;
    char first[1024] = "";
    for (int i = 0; i < count; i++) {
        pclip__grad_result r;
        char msg[1024];
        pclip_status st = pclip__parity_grad_run(ctx, ref, b, (size_t)i, &r);
        if (st != PCLIP_STATUS_OK) {
            snprintf(msg, sizeof msg, "gradient case %d on %s: %s", i, backend,
                     pclip_ctx_last_error(ctx));
            fprintf(stderr, "check_graph: FAILED %s\n", msg);
            if (!failed++) snprintf(first, sizeof first, "%s", msg);
            pclip_backend_destroy(b);
            pclip_backend_destroy(ref);
            open_pair(ctx, &ref, &b);
            continue;
        }
        if (getenv("PCLIP_PARITY_VERBOSE"))
            printf("%3d %-64s max err %9.3g of max %9.3g (%.3g)\n", i, r.name, r.max_err,
                   r.max_abs, r.max_err / (r.max_abs > 1e-6 ? r.max_abs : 1e-6));
        if (r.passed && r.count > 0) continue;
        snprintf(msg, sizeof msg, "gradient case %d '%s' on %s: %s", i, r.name, backend,
                 r.count > 0 ? r.why : "no elements");
        fprintf(stderr, "check_graph: FAILED %s\n", msg);
        if (!failed++) snprintf(first, sizeof first, "%s", msg);
    }
    pclip_backend_destroy(b);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
    ck_assert_msg(failed == 0, "%d of %d gradient cases failed (each printed above); the first: %s",
                  failed, count, first);
}
END_TEST

/* d scale / d x that forgets the scale */
static pclip__tensor *forgetful_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                         pclip__tensor *dy) {
    (void)t, (void)k;
    return pclip__scale(g, "wrong", dy, 1.0f);
}

/* The gradient check can fail: a wrong builder is caught. */
START_TEST(test_gradient_check_fails) {
    pclip_ctx_t ctx;
    pclip_backend_t ref;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    /* case 0 is d scale / d x; a builder that forgets the scale */
    pclip__backward_fn saved = pclip__op_backward[PCLIP__OP_SCALE];
    pclip__op_backward[PCLIP__OP_SCALE] = forgetful_backward;
    pclip__grad_case c;
    ck_assert(pclip__parity_grad_get(0, &c));
    ck_assert_int_eq(c.op, PCLIP__OP_SCALE);
    pclip__grad_result r;
    pclip_status st = pclip__parity_grad_run(ctx, ref, ref, 0, &r);
    pclip__op_backward[PCLIP__OP_SCALE] = saved;
    ck_assert_int_eq(st, PCLIP_STATUS_OK);
    ck_assert(!r.passed);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- reverse mode (pclip__gradients) ---- */

/* A small head as training builds it: linear with bias -> gelu -> linear ->
 * + the input (residual) -> layer_norm -> l2_norm -> logits z z^T (both
 * operands one activation) scaled -> transposed -> + a row bias broadcast
 * over rows -> a weighted sum (a linear layer to one output). The input
 * arrives flat and is reshaped (a view), so its gradient flows through a
 * view. */
enum { GB = 3, GD = 6, GH = 7, G_WRT = 8 };

typedef struct head_graph {
    pclip__graph *g;
    pclip__tensor *in[G_WRT + 1]; /* the G_WRT tensors differentiated, then one unused */
    pclip__tensor *loss, *grads[G_WRT + 1];
    float *data[G_WRT + 1];
    float wl[GB * GB];
} head_graph;

static float head_rand(uint64_t *s, float lo, float hi) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)((*s >> 40) / 16777216.0);
}

static void head_build(pclip_ctx_t ctx, head_graph *h) {
    memset(h, 0, sizeof *h);
    ck_assert_int_eq(pclip__graph_create(ctx, &h->g), PCLIP_STATUS_OK);
    pclip__graph *g = h->g;
    static const char *const names[G_WRT + 1] = {"x",     "w1",   "b1",       "w2",    "b2",
                                                 "gamma", "beta", "row_bias", "unused"};
    const int64_t shapes[G_WRT + 1][2] = {{GB * GD, 0}, {GH, GD}, {GH, 0}, {GD, GH}, {GD, 0},
                                          {GD, 0},      {GD, 0},  {GB, 0}, {5, 0}};
    uint64_t seed = 42;
    for (int i = 0; i <= G_WRT; i++) {
        const int32_t nd = shapes[i][1] ? 2 : 1;
        h->in[i] = pclip__input(g, names[i], PCLIP__DTYPE_F32, nd, shapes[i]);
        const size_t n = (size_t)(shapes[i][0] * (nd == 2 ? shapes[i][1] : 1));
        h->data[i] = malloc(n * sizeof(float));
        ck_assert_ptr_nonnull(h->data[i]);
        for (size_t e = 0; e < n; e++)
            h->data[i][e] = i == 5 ? head_rand(&seed, 0.5f, 1.5f) : head_rand(&seed, -1.0f, 1.0f);
    }
    for (int e = 0; e < GB * GB; e++) h->wl[e] = head_rand(&seed, -1.0f, 1.0f);
    const int64_t xne[2] = {GB, GD}, zne[3] = {1, GB, GD}, sne[2] = {GB, GB}, fne[2] = {1, GB * GB},
                  wne[2] = {1, GB * GB}, one[1] = {1};
    pclip__tensor *x = pclip__reshape(g, h->in[0], 2, xne);
    pclip__tensor *a1 =
        pclip__act(g, "a1", pclip__linear(g, "h1", x, h->in[1], h->in[2], PCLIP_ACT_NONE, NULL),
                   PCLIP_ACT_GELU);
    pclip__tensor *h2 = pclip__linear(g, "h2", a1, h->in[3], h->in[4], PCLIP_ACT_NONE, NULL);
    pclip__tensor *ln =
        pclip__layer_norm(g, "ln", pclip__add(g, "res", h2, x), h->in[5], h->in[6], 1e-5f);
    pclip__tensor *z = pclip__reshape(g, pclip__l2_norm(g, "z", ln, 1e-12f), 3, zne);
    pclip__tensor *s = pclip__scale(g, "s", pclip__matmul(g, "logits", z, z, true), 2.5f);
    pclip__tensor *u =
        pclip__add(g, "u", pclip__transpose(g, "sT", pclip__reshape(g, s, 2, sne)), h->in[7]);
    pclip__tensor *wl = pclip__weight(g, "wl", 2, wne, h->wl);
    h->loss = pclip__reshape(
        g, pclip__linear(g, "sum", pclip__reshape(g, u, 2, fne), wl, NULL, PCLIP_ACT_NONE, NULL), 1,
        one);
    ck_assert_ptr_nonnull(h->loss);
    ck_assert_int_eq(g->status, PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__gradients(g, h->loss, G_WRT + 1, h->in, h->grads),
                     PCLIP_STATUS_OK);
    ck_assert_ptr_null(h->grads[G_WRT]); /* the loss does not depend on "unused" */
    ck_assert_int_eq(pclip__graph_output(g, h->loss), PCLIP_STATUS_OK);
    for (int i = 0; i < G_WRT; i++) {
        ck_assert_ptr_nonnull(h->grads[i]);
        ck_assert_int_eq(pclip__nelements(h->grads[i]), pclip__nelements(h->in[i]));
        ck_assert_int_eq(pclip__graph_output(g, h->grads[i]), PCLIP_STATUS_OK);
    }
}

static void head_destroy(head_graph *h) {
    for (int i = 0; i <= G_WRT; i++) free(h->data[i]);
    pclip__graph_destroy(h->g);
}

/* Runs the compiled graph with the current data: the loss, and the
 * gradients when `grads` is not NULL (grads[i] holds in[i]'s elements). */
static float head_run(pclip_ctx_t ctx, pclip__exec *e, head_graph *h, float **grads) {
    for (int i = 0; i <= G_WRT; i++)
        ck_assert_status(ctx, pclip__exec_write(e, h->in[i], h->data[i]), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_run(e), PCLIP_STATUS_OK);
    float loss = 0;
    ck_assert_int_eq(pclip__exec_read(e, h->loss, &loss), PCLIP_STATUS_OK);
    for (int i = 0; grads && i < G_WRT; i++)
        ck_assert_int_eq(pclip__exec_read(e, h->grads[i], grads[i]), PCLIP_STATUS_OK);
    return loss;
}

/* The gradients of the head's loss with respect to its input and every
 * weight: on the CPU reference against central differences (step 1/128,
 * within 2e-3 of each tensor's largest gradient), and on the backend under
 * test against the CPU reference's (within 1e-4 of the largest). */
START_TEST(test_gradients_head) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &b);
    head_graph h;
    head_build(ctx, &h);
    float *gref[G_WRT], *gtest[G_WRT];
    for (int i = 0; i < G_WRT; i++) {
        gref[i] = calloc((size_t)pclip__nelements(h.in[i]), sizeof(float));
        gtest[i] = calloc((size_t)pclip__nelements(h.in[i]), sizeof(float));
        ck_assert(gref[i] && gtest[i]);
    }
    pclip__exec *er = NULL, *et = NULL;
    ck_assert_status(ctx, pclip__exec_create(ref, h.g, &er), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_create(b, h.g, &et), PCLIP_STATUS_OK);
    const float loss = head_run(ctx, er, &h, gref);
    const float loss_test = head_run(ctx, et, &h, gtest);
    ck_assert_msg(fabsf(loss - loss_test) <= 1e-5f * (1.0f + fabsf(loss)),
                  "loss on %s %.9g, reference %.9g", backend, (double)loss_test, (double)loss);
    for (int i = 0; i < G_WRT; i++) {
        const int64_t n = pclip__nelements(h.in[i]);
        double max_num = 0, max_err = 0, max_ref = 0, max_diff = 0;
        for (int64_t j = 0; j < n; j++) {
            const float x0 = h.data[i][j], xs[2] = {x0 + 1.0f / 128, x0 - 1.0f / 128};
            double l[2];
            for (int side = 0; side < 2; side++) {
                h.data[i][j] = xs[side];
                l[side] = head_run(ctx, er, &h, NULL);
            }
            h.data[i][j] = x0;
            const double num = (l[0] - l[1]) / ((double)xs[0] - (double)xs[1]);
            if (fabs(num) > max_num) max_num = fabs(num);
            if (!(fabs(num - gref[i][j]) <= max_err)) max_err = fabs(num - gref[i][j]);
            if (fabs(gref[i][j]) > max_ref) max_ref = fabs(gref[i][j]);
            if (!(fabs((double)gtest[i][j] - gref[i][j]) <= max_diff))
                max_diff = fabs((double)gtest[i][j] - gref[i][j]);
        }
        if (getenv("PCLIP_PARITY_VERBOSE"))
            printf("d loss / d %-8s numeric: max err %9.3g of %9.3g; %s vs cpu: %9.3g of %9.3g\n",
                   h.in[i]->name, max_err, max_num, backend, max_diff, max_ref);
        ck_assert_msg(max_num > 1e-3, "d loss / d %s is all zero", h.in[i]->name);
        ck_assert_msg(max_err <= 2e-3 * max_num,
                      "d loss / d %s: max |analytic - numeric| %.3g > 2e-3 x %.3g", h.in[i]->name,
                      max_err, max_num);
        ck_assert_msg(max_diff <= 1e-4 * max_ref,
                      "d loss / d %s on %s: max |%s - cpu| %.3g > 1e-4 x %.3g", h.in[i]->name,
                      backend, backend, max_diff, max_ref);
    }
    pclip__exec_destroy(er);
    pclip__exec_destroy(et);
    for (int i = 0; i < G_WRT; i++) free(gref[i]), free(gtest[i]);
    head_destroy(&h);
    pclip_backend_destroy(b);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* An op without a backward on the path is an error naming it, and the graph
 * is left as it was; a loss of more than one element is refused; a tensor
 * of another graph is refused. */
START_TEST(test_gradients_errors) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip__graph *g = NULL, *other = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_create(ctx, &other), PCLIP_STATUS_OK);
    const int64_t ne[2] = {2, 5}, wne[2] = {1, 5}, one[1] = {1};
    static const float w[5] = {1, 2, 3, 4, 5};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, ne);
    pclip__tensor *sm = pclip__softmax(g, "probs", x, 1.0f, false);
    pclip__tensor *y =
        pclip__linear(g, "y", sm, pclip__weight(g, "w", 2, wne, w), NULL, PCLIP_ACT_NONE, NULL);
    pclip__tensor *loss = pclip__reshape(g, pclip__sum_rows(g, "col", y), 1, one);
    ck_assert_ptr_nonnull(loss);
    pclip__tensor *grad = NULL;
    /* sum_rows has no backward: the first op met on the way back */
    const int32_t n0 = g->n_tensors;
    ck_assert_int_eq(pclip__gradients(g, loss, 1, &x, &grad), PCLIP_STATUS_UNSUPPORTED);
    ck_assert_err_has(ctx, "sum_rows 'col'");
    ck_assert_int_eq(g->n_tensors, n0);
    ck_assert_int_eq(g->status, PCLIP_STATUS_OK);
    ck_assert_ptr_null(grad);
    /* past it, softmax is the one without */
    pclip__tensor *loss2 = pclip__reshape(g, y, 1, (const int64_t[]){2});
    pclip__tensor *l1 = pclip__reshape(
        g,
        pclip__linear(g, "sum2", pclip__reshape(g, loss2, 2, (const int64_t[]){1, 2}),
                      pclip__weight(g, "w2", 2, (const int64_t[]){1, 2}, w), NULL, PCLIP_ACT_NONE,
                      NULL),
        1, one);
    const int32_t n1 = g->n_tensors;
    ck_assert_int_eq(pclip__gradients(g, l1, 1, &x, &grad), PCLIP_STATUS_UNSUPPORTED);
    ck_assert_err_has(ctx, "softmax 'probs'");
    ck_assert_int_eq(g->n_tensors, n1);
    /* with respect to the softmax's result, it works */
    ck_assert_int_eq(pclip__gradients(g, l1, 1, &sm, &grad), PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(grad);
    ck_assert_int_eq(grad->ndim, 2);
    /* the loss must be one element of this graph; wrt tensors of this graph */
    ck_assert_int_eq(pclip__gradients(g, y, 1, &x, &grad), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "one element");
    pclip__tensor *foreign = pclip__input(other, "foreign", PCLIP__DTYPE_F32, 2, ne);
    ck_assert_int_eq(pclip__gradients(g, l1, 1, &foreign, &grad), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "not an f32 tensor of this graph");
    /* an op of this graph that reads a tensor of another one */
    static const float w10[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    pclip__tensor *mix = pclip__add(g, "mix", x, foreign);
    pclip__tensor *l3 =
        pclip__reshape(g,
                       pclip__linear(g, "sum3", pclip__reshape(g, mix, 2, (const int64_t[]){1, 10}),
                                     pclip__weight(g, "w10", 2, (const int64_t[]){1, 10}, w10),
                                     NULL, PCLIP_ACT_NONE, NULL),
                       1, one);
    ck_assert_ptr_nonnull(l3);
    const int32_t n2 = g->n_tensors;
    ck_assert_int_eq(pclip__gradients(g, l3, 1, &x, &grad), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "'mix' reads 'foreign' of another graph");
    ck_assert_int_eq(g->n_tensors, n2);
    pclip__graph_destroy(g);
    pclip__graph_destroy(other);
    pclip_ctx_destroy(ctx);
}
END_TEST

int main(int argc, char **argv) {
    int arg = pclip_test_backend_args(argc, argv, &backend, &test_device);
    if (arg < argc) {
        fprintf(stderr, "usage: check_graph [cpu|vulkan|opencl]\n");
        return 2;
    }
    pclip_test_probe_backend("check_graph", backend, test_device);
    Suite *s = suite_create("graph");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 300);
    tcase_add_test(core, test_empty_graph);
    tcase_add_test(core, test_unread_results);
    tcase_add_test(core, test_planner_reuse);
    tcase_add_loop_test(core, test_block_graph, 0, 2);
    suite_add_tcase(s, core);
    TCase *model = tcase_create("op_model");
    tcase_set_timeout(model, 300);
    tcase_add_test(model, test_sgd_steps);
    tcase_add_test(model, test_op_model_rules);
    tcase_add_test(model, test_gradients);
    tcase_add_test(model, test_gradient_check_fails);
    tcase_add_test(model, test_gradients_head);
    tcase_add_test(model, test_gradients_errors);
    suite_add_tcase(s, model);
    TCase *limits = tcase_create("limits");
    tcase_set_timeout(limits, 300);
    tcase_add_test(limits, test_shape_errors);
    tcase_add_test(limits, test_device_index);
    tcase_add_test(limits, test_foreign_tensor);
    tcase_add_test(limits, test_alloc_failure_walk);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
