/* Precision (pclip_backend_set_precision, --precision, PORTCLIP_PRECISION):
 * the bf16 (CPU) and fp16 (Vulkan) embeddings of every test checkpoint
 * against fp32 within the bounds README.md states, the refusals (reference
 * device, other backends, a CPU without AVX512_BF16 or AMX, fp16 on a CPU,
 * bad values), and the CLI's option and environment variable.
 *
 *   check_precision api          everything that needs no bf16 or fp16 hardware
 *   check_precision accuracy     the bf16 bounds; exits 77 (skipped), saying
 *                                why, on a CPU without AVX512_BF16 or AMX
 *   check_precision vulkan_fp16  the fp16 bounds on Vulkan device 0 against
 *                                the CPU at fp32, and the matmul parity cases
 *                                at fp16 (both matmul kernels), on the
 *                                storage-only path (PORTCLIP_VK_FP16_ARITH=0:
 *                                fp16 weights, fp32 arithmetic); exits 77
 *                                (skipped), saying why, without Vulkan or
 *                                without 16-bit storage
 *   check_precision vulkan_fp16_arith  the same on the fp16-arithmetic path
 *                                (fp16 products, fp32 sums) with its bounds;
 *                                also skipped where device 0 lacks
 *                                shaderFloat16
 *
 * The figures each accuracy case measures are printed, so the README table
 * can be checked against a run. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cpu.h"
#include "graph/parity.h"
#include "testutil.h"

/* The bounds README.md states for bf16 against fp32 on the test
 * checkpoints, for L2-normalised embeddings: the worst cosine of a bf16 row
 * to its fp32 row, and the largest |difference| of one element. Measured
 * (attention's products in bf16 too): worst cosine 0.9999685, largest
 * difference 5.3e-3 (README, Precision). */
#define BF16_MIN_COS 0.9999
#define BF16_MAX_ERR 8e-3

static const char *const variants[] = {"tiny-clip",      "tiny-clip-legacy", "tiny-clip-f16",
                                       "tiny-clip-bf16", "tiny-clip-gelu",   "tiny-clip-sharded",
                                       "tiny-clip-224",  "tiny-clip-336"};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))
/* stored in F16: their weights convert to fp16 exactly */
static bool stored_f16(const char *variant) {
    return strcmp(variant, "tiny-clip-f16") == 0 || strcmp(variant, "tiny-clip-336") == 0;
}

/* The bounds README.md states for fp16 (Vulkan) against fp32 (CPU device
 * 0) on the test checkpoints, for L2-normalised embeddings, as for bf16.
 * Measured on lavapipe: worst cosine 0.9999996, largest difference 4.2e-4
 * (README, Precision). */
#define FP16_MIN_COS 0.999995
#define FP16_MAX_ERR 1e-3
/* each matmul parity case with an fp16 weight, against fp32 on the CPU
 * reference: NMSE of fp16-rounded weights in [-1, 1] (about 1e-8) */
#define FP16_MATMUL_NMSE 1e-6
/* The same for the fp16-arithmetic path (a rounded to fp16 too, fp16
 * products, sums of PORTCLIP_VK_FP16_RUN = 4 products in fp16, fp32
 * accumulation). Measured on lavapipe (README, "fp16 on Vulkan"): worst
 * cosine 0.9999988, largest difference 7.5e-4; matmul parity worst NMSE
 * 6.2e-6 (direct kernels) and 4.3e-6 (tiled), both on a single output of
 * K = 17 (M = N = 1), where one rounding weighs most; 1.3e-6 with runs of 1. */
#define FP16A_MIN_COS 0.999995
#define FP16A_MAX_ERR 1e-3
#define FP16A_MATMUL_NMSE 2e-5

/* the path the vulkan_fp16 parts test: fp16 arithmetic (vulkan_fp16_arith)
 * or storage only (vulkan_fp16); set by main before the tests fork */
static bool fp16_arith;
#define FP16_COS (fp16_arith ? FP16A_MIN_COS : FP16_MIN_COS)
#define FP16_ERR (fp16_arith ? FP16A_MAX_ERR : FP16_MAX_ERR)
#define FP16_NMSE (fp16_arith ? FP16A_MATMUL_NMSE : FP16_MATMUL_NMSE)
#define FP16_PATH (fp16_arith ? "fp16 arithmetic" : "fp16 storage")

static pclip_ctx_t ctx;
static void setup(void) { ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK); }
static void teardown(void) { pclip_ctx_destroy(ctx); }

/* ---- inputs: the reference captions and images of the fixtures ---- */

/* <variant>/reference/reference.json, or tiny-clip's for a variant without
 * its own (the sharded copy of tiny-clip). */
static cJSON *reference_json(const char *variant) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/reference/reference.json", variant);
    FILE *f = fopen(pclip_test_fixture(rel), "rb");
    if (f)
        fclose(f);
    else
        snprintf(rel, sizeof rel, "tiny-clip/reference/reference.json");
    return pclip_test_load_json(rel);
}

static int32_t *caption_ids(pclip_model_t m, cJSON *ref, int32_t *n_out) {
    cJSON *caps = cJSON_GetObjectItem(ref, "captions");
    int32_t n = cJSON_GetArraySize(caps);
    int32_t L = pclip_model_config(m)->text.max_position_embeddings;
    int32_t *ids = malloc((size_t)n * (size_t)L * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    int32_t i = 0;
    for (cJSON *c = caps->child; c; c = c->next, i++)
        ck_assert_status(ctx,
                         pclip_tokenizer_encode(pclip_model_tokenizer(m), c->valuestring,
                                                strlen(c->valuestring), ids + (size_t)i * L, L,
                                                NULL),
                         PCLIP_STATUS_OK);
    *n_out = n;
    return ids;
}

static float *image_pixels(pclip_model_t m, cJSON *ref, int32_t *n_out) {
    pclip_test_npy px;
    pclip_test_npy_read(pclip_test_fixture(cJSON_GetObjectItem(ref, "pixels")->valuestring), &px);
    int32_t S = pclip_model_config(m)->vision.image_size;
    ck_assert_int_eq(px.shape[2], S);
    *n_out = (int32_t)px.shape[0];
    float *out = px.data; /* every preprocessed image of the fixture */
    px.data = NULL;
    pclip_test_npy_free(&px);
    return out;
}

/* Worst row cosine of a to b (L2-normalised rows) and largest |a - b|. */
static void loss(const float *a, const float *b, int32_t rows, int32_t cols, double *cos,
                 double *err) {
    *cos = 1.0;
    *err = 0.0;
    for (int32_t r = 0; r < rows; r++) {
        double dot = 0;
        for (int32_t i = 0; i < cols; i++) {
            size_t k = (size_t)r * cols + i;
            dot += (double)a[k] * b[k];
            double e = fabs((double)a[k] - b[k]);
            if (!(e <= *err)) *err = e; /* NaN sticks */
        }
        if (!(dot >= *cos)) *cos = dot;
    }
}

/* Encodes with flags NORMALIZE at precision p on b. */
static void encode(pclip_model_t m, pclip_backend_t b, pclip_precision p, bool text, const void *in,
                   int32_t n, float *out) {
    ck_assert_status(ctx, pclip_backend_set_precision(b, p), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip_backend_precision(b), p);
    pclip_status st = text ? pclip_model_encode_text(m, b, in, n, PCLIP_ENCODE_NORMALIZE, out)
                           : pclip_model_encode_images(m, b, in, n, PCLIP_ENCODE_NORMALIZE, out);
    ck_assert_status(ctx, st, PCLIP_STATUS_OK);
}

/* ---- accuracy (needs AVX512_BF16 or AMX) ---- */

/* Both encoders of one checkpoint at bf16 against fp32 on cpu device 0. */
START_TEST(test_bf16_bounds) {
    const char *variant = variants[_i];
    cJSON *ref = reference_json(variant);
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture(variant), &m), PCLIP_STATUS_OK);
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    const int32_t P = pclip_model_config(m)->projection_dim;
    int32_t nt, ni;
    int32_t *ids = caption_ids(m, ref, &nt);
    float *px = image_pixels(m, ref, &ni);
    for (int text = 0; text < 2; text++) {
        int32_t n = text ? nt : ni;
        const void *in = text ? (const void *)ids : (const void *)px;
        float *f32 = malloc((size_t)n * P * sizeof *f32), *bf = malloc((size_t)n * P * sizeof *bf);
        float *again = malloc((size_t)n * P * sizeof *again);
        ck_assert(f32 && bf && again);
        encode(m, b, PCLIP_PRECISION_FP32, text, in, n, f32);
        encode(m, b, PCLIP_PRECISION_BF16, text, in, n, bf);
        /* back to fp32: the bf16 graphs were dropped, the result is fp32's again */
        encode(m, b, PCLIP_PRECISION_FP32, text, in, n, again);
        ck_assert_msg(memcmp(f32, again, (size_t)n * P * sizeof *f32) == 0,
                      "%s %s: fp32 after bf16 differs from fp32 before", variant,
                      text ? "text" : "vision");
        double cos, err;
        loss(bf, f32, n, P, &cos, &err);
        printf("precision bf16 vs fp32: %-18s %-6s %3d rows: worst cosine %.7f, max |err| %.3g\n",
               variant, text ? "text" : "vision", (int)n, cos, err);
        ck_assert_msg(cos >= BF16_MIN_COS && err <= BF16_MAX_ERR,
                      "%s %s: bf16 against fp32: worst cosine %.7f (bound %g), max |err| %.3g "
                      "(bound %g)",
                      variant, text ? "text" : "vision", cos, BF16_MIN_COS, err, BF16_MAX_ERR);
        /* bf16 really ran: the products round differently */
        ck_assert_msg(err > 0, "%s %s: bf16 gave exactly the fp32 embeddings", variant,
                      text ? "text" : "vision");
        free(f32);
        free(bf);
        free(again);
    }
    free(ids);
    free(px);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    cJSON_Delete(ref);
}
END_TEST

/* The bf16 weights are cached once each beside the fp32 ones, and the same
 * bytes are bit-identical from one run to the next. */
START_TEST(test_bf16_repeatable) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    cJSON *ref = reference_json("tiny-clip");
    int32_t ni;
    float *px = image_pixels(m, ref, &ni);
    const int32_t P = pclip_model_config(m)->projection_dim;
    float *x = malloc((size_t)ni * P * sizeof *x), *y = malloc((size_t)ni * P * sizeof *y);
    ck_assert(x && y);
    encode(m, b, PCLIP_PRECISION_BF16, false, px, ni, x);
    int32_t packed = pclip__cpu_packed_weights(b->state);
    ck_assert_int_gt(packed, 0);
    encode(m, b, PCLIP_PRECISION_BF16, false, px, ni, y);
    ck_assert_int_eq(pclip__cpu_packed_weights(b->state), packed);
    ck_assert(memcmp(x, y, (size_t)ni * P * sizeof *x) == 0);
    /* odd batch sizes: rows agree with the full batch up to rounding */
    ck_assert_status(ctx,
                     pclip_model_encode_images_batched(m, b, px, ni, 3, PCLIP_ENCODE_NORMALIZE, y),
                     PCLIP_STATUS_OK);
    double cos, err;
    loss(x, y, ni, P, &cos, &err);
    ck_assert_msg(cos >= 0.99999, "bf16 batch 3 against batch %d: worst cosine %.7f", ni, cos);
    free(x);
    free(y);
    free(px);
    cJSON_Delete(ref);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
}
END_TEST

/* ---- bf16 routes between ops ---- */

/* The ops of one pre-LayerNorm transformer layer as the encoders build them
 * (LayerNorm, qkv, attention, out-projection + residual, LayerNorm, fc1 +
 * GELU, fc2 + residual), shapes with SIMD tails (width 40, head_dim 20, 72
 * hidden), then a LayerNorm whose gamma is 0 and whose beta holds the
 * values bf16 rounding treats apart (ties, NaN, infinities, denormals,
 * overflow). The graph stops at stage `stage`'s result (mid[stage]: ln1,
 * attention, ln2, fc1, the special LayerNorm), read by one more linear, y.
 * With `all`, every result before y is an output too, so no op writes
 * bf16; without, each of them is read by bf16 matmuls only (stage 4 has
 * one more output, the layer's result, which a LayerNorm reads). */
enum { RT_B = 3, RT_S = 7, RT_H = 2, RT_D = 20, RT_W = RT_H * RT_D, RT_F = 72, RT_STAGES = 5 };
typedef struct route_graph {
    pclip__graph *g;
    pclip__tensor *x, *y, *mid[RT_STAGES];
} route_graph;

static void route_graph_build(route_graph *r, const float *const *w, int stage, bool all) {
    ck_assert_int_eq(pclip__graph_create(ctx, &r->g), PCLIP_STATUS_OK);
    pclip__graph *g = r->g;
    const int64_t xe[2] = {RT_B * RT_S, RT_W}, qkv_e[2] = {3 * RT_W, RT_W}, q1[1] = {3 * RT_W};
    const int64_t oe[2] = {RT_W, RT_W}, we[1] = {RT_W}, f1e[2] = {RT_F, RT_W}, f1b[1] = {RT_F};
    const int64_t f2e[2] = {RT_W, RT_F};
    memset(r->mid, 0, sizeof r->mid);
    r->x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xe);
    pclip__tensor *h = pclip__layer_norm(g, "ln1", r->x, pclip__weight(g, "g1", 1, we, w[0]),
                                         pclip__weight(g, "b1", 1, we, w[1]), 1e-5f);
    pclip__tensor *last = r->mid[0] = h;
    if (stage >= 1) {
        pclip__tensor *qkv =
            pclip__linear(g, "qkv", h, pclip__weight(g, "wqkv", 2, qkv_e, w[2]),
                          pclip__weight(g, "bqkv", 1, q1, w[3]), PCLIP_ACT_NONE, NULL);
        last = r->mid[1] = pclip__attention(g, "attn", qkv, RT_B, RT_S, RT_H, true);
    }
    pclip__tensor *x2 = NULL;
    if (stage >= 2) {
        x2 = pclip__linear(g, "out", r->mid[1], pclip__weight(g, "wo", 2, oe, w[4]),
                           pclip__weight(g, "bo", 1, we, w[5]), PCLIP_ACT_NONE, r->x);
        last = r->mid[2] = pclip__layer_norm(g, "ln2", x2, pclip__weight(g, "g2", 1, we, w[6]),
                                             pclip__weight(g, "b2", 1, we, w[7]), 1e-5f);
    }
    if (stage >= 3)
        last = r->mid[3] =
            pclip__linear(g, "fc1", r->mid[2], pclip__weight(g, "w1", 2, f1e, w[8]),
                          pclip__weight(g, "bf1", 1, f1b, w[9]), PCLIP_ACT_GELU, NULL);
    if (stage >= 4) {
        pclip__tensor *x3 =
            pclip__linear(g, "fc2", r->mid[3], pclip__weight(g, "w2", 2, f2e, w[10]),
                          pclip__weight(g, "bf2", 1, we, w[11]), PCLIP_ACT_NONE, x2);
        ck_assert_ptr_nonnull(x3);
        ck_assert_int_eq(pclip__graph_output(g, x3), PCLIP_STATUS_OK);
        last = r->mid[4] = pclip__layer_norm(g, "special", x3, pclip__weight(g, "g3", 1, we, w[12]),
                                             pclip__weight(g, "b3", 1, we, w[13]), 1e-5f);
    }
    r->y = stage == 3 ? pclip__linear(g, "y", last, pclip__weight(g, "w2", 2, f2e, w[10]), NULL,
                                      PCLIP_ACT_NONE, NULL)
                      : pclip__linear(g, "y", last, pclip__weight(g, "wo", 2, oe, w[4]), NULL,
                                      PCLIP_ACT_NONE, NULL);
    ck_assert_msg(r->y, "%s", pclip_ctx_last_error(ctx));
    ck_assert_int_eq(pclip__graph_output(g, r->y), PCLIP_STATUS_OK);
    for (int i = 0; i <= stage && all; i++)
        ck_assert_int_eq(pclip__graph_output(g, r->mid[i]), PCLIP_STATUS_OK);
}

/* At each SIMD level (_i / RT_STAGES) and stage (_i % RT_STAGES): where only
 * bf16 matmuls read a result, its op (LayerNorm, attention, a bf16 matmul
 * through oneDNN) writes it as bf16, and those bytes are exactly
 * pclip__cpu_bf16_round of the fp32 values the op gives when the result is
 * an output instead; the matmuls after it read the same bf16 either way,
 * so the final results are bit-identical. (The stage's result is checked
 * in the arena after the run: only y, which cannot overlap it, comes after
 * it.) */
START_TEST(test_bf16_routes) {
    static const char *const levels[] = {"scalar", "avx2", "avx512"};
    const char *level = levels[_i / RT_STAGES];
    const int stage = _i % RT_STAGES;
    ck_assert_int_eq(setenv("PORTCLIP_CPU_SIMD", level, 1), 0);
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_set_precision(b, PCLIP_PRECISION_BF16), PCLIP_STATUS_OK);
    static const size_t sizes[14] = {RT_W,        RT_W,        3 * RT_W * RT_W, 3 * RT_W,
                                     RT_W * RT_W, RT_W,        RT_W,            RT_W,
                                     RT_F * RT_W, RT_F,        RT_W * RT_F,     RT_W,
                                     RT_W,        RT_W};
    float *w[14];
    for (int i = 0; i < 14; i++) w[i] = pclip_test_ramp(sizes[i], i % 2 ? 0.1f : 0.5f);
    for (int j = 0; j < RT_W; j++) w[0][j] += 1.0f, w[6][j] += 1.0f; /* gammas near 1 */
    /* the special LayerNorm: its result is beta (gamma 0), lane by lane */
    static const uint32_t special[] = {
        0x3f808000u, 0x3f818000u, 0xbf808000u, 0x3f80ffffu, 0x3f807fffu, 0x7fc00000u,
        0xffc12345u, 0x7f800001u, 0x7f800000u, 0xff800000u, 0x00000001u, 0x80400000u,
        0x007fffffu, 0x00800000u, 0x7f7fffffu, 0xff7f8000u, 0x7f7f7fffu, 0x00000000u,
        0x3f7fffffu, 0x3eaaaaabu};
    const int n_special = (int)(sizeof special / sizeof special[0]);
    for (int j = 0; j < RT_W; j++) {
        w[12][j] = j < n_special ? 0.0f : w[12][j] + 1.0f;
        if (j < n_special) memcpy(&w[13][j], &special[j], sizeof(float));
    }
    float *x = pclip_test_ramp(RT_B * RT_S * RT_W, 2.0f);
    route_graph r[2];
    pclip__exec *e[2];
    float *y[2];
    for (int k = 0; k < 2; k++) {
        route_graph_build(&r[k], (const float *const *)w, stage, k == 1);
        ck_assert_status(ctx, pclip__exec_create(b, r[k].g, &e[k]), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_write(e[k], r[k].x, x), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip__exec_run(e[k]), PCLIP_STATUS_OK);
        y[k] = malloc(r[k].y->nbytes);
        ck_assert_ptr_nonnull(y[k]);
        ck_assert_int_eq(pclip__exec_read(e[k], r[k].y, y[k]), PCLIP_STATUS_OK);
    }
    /* every result before y is routed in the first graph, none in the second */
    ck_assert_int_eq(pclip__cpu_bf16_routes(e[0]->state), stage + 1);
    ck_assert_int_eq(pclip__cpu_bf16_routes(e[1]->state), 0);
    uint8_t *arena = malloc(e[0]->plan.arena_bytes);
    ck_assert_ptr_nonnull(arena);
    ck_assert_int_eq(pclip__exec_arena_read(e[0], arena), PCLIP_STATUS_OK);
    const pclip__tensor *t = r[0].mid[stage];
    const int64_t n = pclip__nelements(t);
    float *f = malloc(t->nbytes);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(pclip__exec_read(e[1], r[1].mid[stage], f), PCLIP_STATUS_OK);
    const uint16_t *h = (const uint16_t *)(const void *)(arena + t->offset);
    for (int64_t j = 0; j < n; j++)
        ck_assert_msg(h[j] == pclip__cpu_bf16_round(f[j]),
                      "%s: '%s' element %lld: bf16 0x%04x, fp32 %.9g (0x%04x rounded)", level,
                      t->name, (long long)j, h[j], (double)f[j], pclip__cpu_bf16_round(f[j]));
    if (stage == 4) /* the special values reached the result as they are */
        for (int64_t row = 0; row < n / RT_W; row++)
            for (int j = 0; j < n_special; j++) {
                uint32_t u;
                memcpy(&u, &f[row * RT_W + j], sizeof u);
                /* (arithmetic quiets a signalling NaN) */
                const bool nan = (special[j] & 0x7fffffffu) > 0x7f800000u;
                ck_assert_msg(nan ? (u | 0x00400000u) == (special[j] | 0x00400000u)
                                  : u == special[j],
                              "special LayerNorm row %lld lane %d: 0x%08x", (long long)row, j, u);
            }
    ck_assert_msg(memcmp(y[0], y[1], r[0].y->nbytes) == 0, "%s: stage %d: the results differ",
                  level, stage);
    free(f);
    free(arena);
    for (int k = 0; k < 2; k++) {
        pclip__exec_destroy(e[k]);
        pclip__graph_destroy(r[k].g);
        free(y[k]);
    }
    for (int i = 0; i < 14; i++) free(w[i]);
    free(x);
    pclip_backend_destroy(b);
}
END_TEST

/* ---- the bf16 attention kernel ---- */

/* Its results at precision bf16 against a reference that rounds the same
 * operands to bf16 (q * scale, k, v, and e^(s - max)) as the kernel does
 * and sums in double. Every output row is within BF16_ATTN_TIGHT of the
 * output scale (max |y|) (measured: 1.0e-6 at worst, seq 197; 3e-7 up to
 * seq 77: fp32 sums against double ones), except a row where an e^(s - max)
 * lies so close to a bf16 rounding boundary that the kernel's fp32 value
 * (its sums in another order, its exp within 1e-7) rounds to the
 * neighbouring bf16 value: that moves the row by one bf16 step (2^-8) of
 * that probability times v, so such rows are held to BF16_ATTN_STEP of the
 * largest |v| instead, and their number to BF16_ATTN_FLIPS per probability
 * of the case (rows x seq; measured: at most 6.7e-5, 4 rows of 1200 at seq
 * 50; none in most cases). The NMSE of the whole result is held to
 * BF16_ATTN_NMSE (measured: 2.3e-9 at worst, 1e-14 without a rounding
 * step). The inputs are fixed, so the figures are the same at every run. */
#define BF16_ATTN_TIGHT 5e-6
#define BF16_ATTN_STEP (1.0 / 128)
#define BF16_ATTN_FLIPS 2e-4
#define BF16_ATTN_NMSE 1e-8

static const int32_t attn_shapes[][5] = {/* batch, seq, heads, head_dim, causal */
                                         {1, 1, 1, 8, 0},   {2, 1, 2, 8, 1},   {2, 7, 3, 10, 0},
                                         {3, 7, 2, 12, 1},  {1, 33, 2, 17, 0}, {2, 50, 4, 40, 0},
                                         {2, 50, 12, 64, 0}, {2, 77, 8, 64, 1}, {1, 77, 2, 64, 0},
                                         {2, 20, 1, 128, 1}, {1, 5, 1, 64, 1},
                                         {1, 197, 5, 64, 0}};
#define N_ATTN_SHAPES ((int)(sizeof attn_shapes / sizeof attn_shapes[0]))

static double bf16_value(float x) {
    const uint32_t u = (uint32_t)pclip__cpu_bf16_round(x) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* y [B * S, H * D] of qkv as the bf16 kernel should give it, in double. */
static void attention_bf16_reference(const float *qkv, int32_t B, int32_t S, int32_t H, int32_t D,
                                     bool causal, double *y) {
    const int64_t ld = 3 * (int64_t)H * D;
    const float scale = 1.0f / sqrtf((float)D);
    double *s = malloc((size_t)S * sizeof *s), *q = malloc((size_t)D * sizeof *q);
    ck_assert(s && q);
    for (int32_t b = 0; b < B; b++)
        for (int32_t h = 0; h < H; h++)
            for (int32_t i = 0; i < S; i++) {
                const float *qr = qkv + ((int64_t)b * S + i) * ld + (int64_t)h * D;
                for (int32_t d = 0; d < D; d++) q[d] = bf16_value(qr[d] * scale);
                const int32_t seen = causal ? i + 1 : S;
                double max = -INFINITY, sum = 0;
                for (int32_t j = 0; j < seen; j++) {
                    const float *k = qkv + ((int64_t)b * S + j) * ld + (int64_t)(H + h) * D;
                    double acc = 0;
                    for (int32_t d = 0; d < D; d++) acc += q[d] * bf16_value(k[d]);
                    s[j] = acc;
                    if (acc > max) max = acc;
                }
                for (int32_t j = 0; j < seen; j++) {
                    s[j] = bf16_value((float)exp(s[j] - max));
                    sum += s[j];
                }
                double *yr = y + ((int64_t)b * S + i) * H * D + (int64_t)h * D;
                for (int32_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int32_t j = 0; j < seen; j++)
                        acc += s[j] * bf16_value(qkv[((int64_t)b * S + j) * ld +
                                                     (int64_t)(2 * H + h) * D + d]);
                    yr[d] = acc / sum;
                }
            }
    free(s);
    free(q);
}

/* At each SIMD level (_i / N_ATTN_SHAPES) and shape: the attention op at
 * precision bf16 within BF16_ATTN_NMSE and BF16_ATTN_MAX_REL of the
 * reference above when it writes fp32 (its result is an output), and, when
 * only a bf16 matmul reads it (bf16_dst), its bf16 bytes are exactly the
 * rounding of those fp32 results. */
START_TEST(test_bf16_attention) {
    static const char *const levels[] = {"scalar", "avx2", "avx512"};
    const char *level = levels[_i / N_ATTN_SHAPES];
    const int32_t *sh = attn_shapes[_i % N_ATTN_SHAPES];
    const int32_t B = sh[0], S = sh[1], H = sh[2], D = sh[3], W = H * D;
    const bool causal = sh[4] != 0;
    ck_assert_int_eq(setenv("PORTCLIP_CPU_SIMD", level, 1), 0);
    pclip_backend_t b;
    pclip_status st = pclip_backend_create(ctx, "cpu", 0, &b);
    if (st == PCLIP_STATUS_BACKEND_UNAVAILABLE) {
        printf("test_bf16_attention: %s: %s; level not tested\n", level, pclip_ctx_last_error(ctx));
        return;
    }
    ck_assert_status(ctx, st, PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_set_precision(b, PCLIP_PRECISION_BF16), PCLIP_STATUS_OK);
    const int64_t n_in = (int64_t)B * S * 3 * W, n_out = (int64_t)B * S * W;
    float *x = malloc((size_t)n_in * sizeof *x), *w = pclip_test_ramp((size_t)W * W, 0.1f);
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (uint64_t)_i;
    for (int64_t i = 0; i < n_in; i++) { /* uniform in [-2, 2) */
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) / (double)(1ull << 24)) * 4.0f - 2.0f;
    }
    double *ref = malloc((size_t)n_out * sizeof *ref);
    ck_assert(x && w && ref);
    attention_bf16_reference(x, B, S, H, D, causal, ref);
    float *y = malloc((size_t)n_out * sizeof *y);
    ck_assert_ptr_nonnull(y);
    for (int routed = 0; routed < 2; routed++) {
        pclip__graph *g;
        ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
        const int64_t ne[2] = {(int64_t)B * S, 3 * (int64_t)W}, we[2] = {W, W};
        pclip__tensor *in = pclip__input(g, "qkv", PCLIP__DTYPE_F32, 2, ne);
        pclip__tensor *a = pclip__attention(g, "attn", in, B, S, H, causal);
        pclip__tensor *o = routed ? pclip__linear(g, "out", a, pclip__weight(g, "w", 2, we, w),
                                                  NULL, PCLIP_ACT_NONE, NULL)
                                  : a;
        ck_assert_msg(o, "%s", pclip_ctx_last_error(ctx));
        ck_assert_int_eq(pclip__graph_output(g, o), PCLIP_STATUS_OK);
        pclip__exec *e;
        ck_assert_status(ctx, pclip__exec_create(b, g, &e), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_write(e, in, x), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip__exec_run(e), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__cpu_bf16_routes(e->state), routed);
        if (!routed) {
            ck_assert_int_eq(pclip__exec_read(e, a, y), PCLIP_STATUS_OK);
            double num = 0, den = 0, worst = 0, scale = 0, vmax = 0;
            for (int64_t i = 0; i < n_out; i++) {
                const double d = y[i] - ref[i];
                num += d * d;
                den += ref[i] * ref[i];
                if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
            }
            for (int64_t r = 0; r < (int64_t)B * S; r++)
                for (int64_t c = 2 * W; c < 3 * W; c++)
                    if (fabs(x[r * 3 * W + c]) > vmax) vmax = fabs(x[r * 3 * W + c]);
            /* rows (one query, one head) off by more than the tight bound */
            int64_t stepped = 0;
            double worst_tight = 0;
            for (int64_t row = 0; row < n_out / D; row++) {
                double e = 0;
                for (int64_t d = 0; d < D; d++) {
                    const double a = fabs(y[row * D + d] - ref[row * D + d]);
                    if (!(a <= e)) e = a; /* NaN sticks */
                }
                if (!(e <= worst)) worst = e;
                if (e <= BF16_ATTN_TIGHT * scale) {
                    if (e > worst_tight) worst_tight = e;
                } else {
                    stepped++;
                    ck_assert_msg(e <= BF16_ATTN_STEP * vmax,
                                  "%s: row %lld off by %.3g (bound %.3g: a bf16 step of the "
                                  "largest |v|)",
                                  level, (long long)row, e, BF16_ATTN_STEP * vmax);
                }
            }
            const double nmse = den > 0 ? num / den : num;
            printf("bf16 attention %-6s batch %d seq %2d heads %2d head_dim %3d%s: NMSE %.2g, "
                   "max |err| %.2g of the scale (%.2g outside the %lld rounding-step rows of "
                   "%lld)\n",
                   level, B, S, H, D, causal ? " causal" : "       ", nmse, worst / scale,
                   worst_tight / scale, (long long)stepped, (long long)(n_out / D));
            ck_assert_msg(nmse <= BF16_ATTN_NMSE, "%s: NMSE %.3g (bound %g)", level, nmse,
                          BF16_ATTN_NMSE);
            ck_assert_msg(stepped <= BF16_ATTN_FLIPS * (double)(n_out / D) * S,
                          "%s: %lld of %lld rows beyond %g of the scale", level,
                          (long long)stepped, (long long)(n_out / D), BF16_ATTN_TIGHT);
        } else {
            uint8_t *arena = malloc(e->plan.arena_bytes);
            ck_assert_ptr_nonnull(arena);
            ck_assert_int_eq(pclip__exec_arena_read(e, arena), PCLIP_STATUS_OK);
            const uint16_t *hb = (const uint16_t *)(const void *)(arena + a->offset);
            for (int64_t i = 0; i < n_out; i++)
                ck_assert_msg(hb[i] == pclip__cpu_bf16_round(y[i]),
                              "%s: element %lld: bf16 0x%04x, fp32 %.9g", level, (long long)i,
                              hb[i], (double)y[i]);
            free(arena);
        }
        pclip__exec_destroy(e);
        pclip__graph_destroy(g);
    }
    free(x);
    free(w);
    free(y);
    free(ref);
    pclip_backend_destroy(b);
}
END_TEST

/* ---- fp16 on Vulkan (needs a device with 16-bit storage buffers) ---- */

/* Both encoders of one checkpoint on Vulkan device 0 at fp16 against the
 * CPU (device 0) at fp32; Vulkan's own fp32 is printed beside it. */
START_TEST(test_fp16_bounds) {
    const char *variant = variants[_i];
    cJSON *ref = reference_json(variant);
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture(variant), &m), PCLIP_STATUS_OK);
    pclip_backend_t cpu, vk;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &cpu), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "vulkan", 0, &vk), PCLIP_STATUS_OK);
    const int32_t P = pclip_model_config(m)->projection_dim;
    int32_t nt, ni;
    int32_t *ids = caption_ids(m, ref, &nt);
    float *px = image_pixels(m, ref, &ni);
    for (int text = 0; text < 2; text++) {
        int32_t n = text ? nt : ni;
        const void *in = text ? (const void *)ids : (const void *)px;
        const size_t bytes = (size_t)n * P * sizeof(float);
        float *f32 = malloc(bytes), *v32 = malloc(bytes), *h = malloc(bytes),
              *again = malloc(bytes);
        ck_assert(f32 && v32 && h && again);
        encode(m, cpu, PCLIP_PRECISION_FP32, text, in, n, f32);
        encode(m, vk, PCLIP_PRECISION_FP32, text, in, n, v32);
        encode(m, vk, PCLIP_PRECISION_FP16, text, in, n, h);
        /* back to fp32: the fp16 graphs (and their fp16 weights) were dropped */
        encode(m, vk, PCLIP_PRECISION_FP32, text, in, n, again);
        ck_assert_msg(memcmp(v32, again, bytes) == 0,
                      "%s %s: vulkan fp32 after fp16 differs from fp32 before", variant,
                      text ? "text" : "vision");
        double cos, err, cos32, err32;
        loss(h, f32, n, P, &cos, &err);
        loss(v32, f32, n, P, &cos32, &err32);
        printf("precision fp16 (vulkan, %s, run %s) vs fp32 (cpu): %-18s %-6s %3d rows: worst "
               "cosine %.7f, max |err| %.3g (vulkan fp32: %.7f, %.3g)\n",
               FP16_PATH, getenv("PORTCLIP_VK_FP16_RUN") ? getenv("PORTCLIP_VK_FP16_RUN") : "4",
               variant, text ? "text" : "vision", (int)n, cos, err, cos32, err32);
        ck_assert_msg(cos >= FP16_COS && err <= FP16_ERR,
                      "%s %s: %s against fp32: worst cosine %.7f (bound %g), max |err| %.3g "
                      "(bound %g)",
                      variant, text ? "text" : "vision", FP16_PATH, cos, FP16_COS, err, FP16_ERR);
        /* fp16 really ran: the weights round differently; except where the
         * checkpoint stores F16, whose weights lose nothing: bit-identical
         * to Vulkan's fp32 (the same kernels, with widened loads) on the
         * storage-only path, and not on the arithmetic path, which rounds
         * the activations and products too */
        double c16, e16;
        loss(h, v32, n, P, &c16, &e16);
        if (stored_f16(variant) && !fp16_arith)
            ck_assert_msg(e16 == 0, "%s %s: an F16 checkpoint at fp16 differs from fp32 (%.3g)",
                          variant, text ? "text" : "vision", e16);
        else
            ck_assert_msg(e16 > 0, "%s %s: fp16 gave exactly Vulkan's fp32 embeddings", variant,
                          text ? "text" : "vision");
        free(f32);
        free(v32);
        free(h);
        free(again);
    }
    free(ids);
    free(px);
    pclip_model_destroy(m);
    pclip_backend_destroy(vk);
    pclip_backend_destroy(cpu);
    cJSON_Delete(ref);
}
END_TEST

/* Every matmul parity case (core/graph/parity.c, as check_ops runs them) on
 * Vulkan at fp16 against the CPU reference at fp32: a weight b is read as
 * fp16 (NMSE within FP16_MATMUL_NMSE, and not bit-equal: fp16 ran); any
 * other b stays fp32 and meets the case's own tolerance. Guard bytes and
 * non-finite values are checked as usual. Loop 0: the device's own matmul
 * kernels; loop 1: the other kind (PORTCLIP_VK_KERNELS=swap: the
 * shared-memory tiled kernel on a CPU implementation, which GPUs run). */
START_TEST(test_fp16_matmul_parity) {
    const char *kernels = _i ? "swap" : "auto";
    setenv("PORTCLIP_VK_KERNELS", kernels, 1); /* read at open; this test's own process */
    pclip_backend_t ref, vk;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "vulkan", 0, &vk), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_set_precision(vk, PCLIP_PRECISION_FP16), PCLIP_STATUS_OK);
    int weighted = 0, others = 0;
    double worst = 0;
    for (size_t i = 0; i < pclip__parity_count(); i++) {
        pclip__parity_case c;
        ck_assert(pclip__parity_get(i, &c));
        if (c.op != PCLIP__OP_MATMUL) continue;
        pclip__parity_result r;
        pclip_status st = pclip__parity_run(ctx, ref, vk, i, &r);
        ck_assert_msg(st == PCLIP_STATUS_OK, "case %zu: %s", i, pclip_ctx_last_error(ctx));
        if (!(c.flags & PCLIP__PARITY_B_WEIGHT)) {
            ck_assert_msg(r.passed, "case %zu '%s' (b not a weight) at fp16: %s", i, r.name, r.why);
            others++;
            continue;
        }
        weighted++;
        if (r.nmse > worst) worst = r.nmse;
        ck_assert_msg(r.nonfinite_mismatch == 0 && r.guard_test <= 0 && r.guard_ref <= 0,
                      "case %zu '%s' at fp16: %s", i, r.name, r.why);
        ck_assert_msg(r.nmse <= FP16_NMSE, "case %zu '%s' at %s (kernels %s): NMSE %.3g > %.3g",
                      i, r.name, FP16_PATH, kernels, r.nmse, FP16_NMSE);
        const int64_t nk = (int64_t)c.d[2] * c.d[3];
        if (nk >= 16)
            ck_assert_msg(r.bit_diff > 0, "case %zu '%s': fp16 gave exactly fp32's results", i,
                          r.name);
    }
    printf("precision fp16 (vulkan, %s, kernels %s) matmul parity: %d cases with a weight b, "
           "worst NMSE %.3g (bound %g); %d others at their fp32 tolerance\n",
           FP16_PATH, kernels, weighted, worst, FP16_NMSE, others);
    ck_assert_int_gt(weighted, 0);
    pclip_backend_destroy(vk);
    pclip_backend_destroy(ref);
}
END_TEST

/* ---- the API, everywhere ---- */

START_TEST(test_names_and_parse) {
    ck_assert_str_eq(pclip_precision_name(PCLIP_PRECISION_FP32), "fp32");
    ck_assert_str_eq(pclip_precision_name(PCLIP_PRECISION_BF16), "bf16");
    ck_assert_str_eq(pclip_precision_name(PCLIP_PRECISION_FP16), "fp16");
    ck_assert_str_eq(pclip_precision_name(PCLIP_PRECISION_COUNT), "?");
    pclip_precision p = PCLIP_PRECISION_FP32;
    ck_assert_status(ctx, pclip_precision_parse(ctx, "bf16", "--precision", &p), PCLIP_STATUS_OK);
    ck_assert_int_eq(p, PCLIP_PRECISION_BF16);
    ck_assert_status(ctx, pclip_precision_parse(ctx, "fp32", "--precision", &p), PCLIP_STATUS_OK);
    ck_assert_int_eq(p, PCLIP_PRECISION_FP32);
    ck_assert_status(ctx, pclip_precision_parse(ctx, "fp16", "--precision", &p), PCLIP_STATUS_OK);
    ck_assert_int_eq(p, PCLIP_PRECISION_FP16);
    const char *bad[] = {"", "BF16", "FP16", "half", "bf16 ", "f32"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = PCLIP_PRECISION_BF16;
        ck_assert_status(ctx, pclip_precision_parse(ctx, bad[i], "PORTCLIP_PRECISION", &p),
                         PCLIP_STATUS_INVALID_ARGUMENT);
        ck_assert_int_eq(p, PCLIP_PRECISION_BF16); /* untouched */
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "PORTCLIP_PRECISION"));
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "'fp32', 'bf16' or 'fp16'"));
    }
}
END_TEST

START_TEST(test_refusals) {
    pclip_backend_t ref;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip_backend_precision(ref), PCLIP_PRECISION_FP32);
    ck_assert_status(ctx, pclip_backend_set_precision(ref, PCLIP_PRECISION_BF16),
                     PCLIP_STATUS_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "reference"));
    ck_assert_int_eq(pclip_backend_precision(ref), PCLIP_PRECISION_FP32);
    ck_assert_status(ctx, pclip_backend_set_precision(ref, PCLIP_PRECISION_FP32), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_set_precision(ref, (pclip_precision)7),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_backend_set_precision(NULL, PCLIP_PRECISION_FP32),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    pclip_backend_destroy(ref);

    /* the fast device: bf16 where oneDNN can run it, else the instruction set is named */
    pclip_backend_t fast;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &fast), PCLIP_STATUS_OK);
    char why[160] = "";
    bool has = pclip__cpu_dnnl_has_bf16(why, sizeof why);
    pclip_status st = pclip_backend_set_precision(fast, PCLIP_PRECISION_BF16);
    if (has) {
        ck_assert_status(ctx, st, PCLIP_STATUS_OK);
    } else {
        ck_assert_status(ctx, st, PCLIP_STATUS_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "AVX512_BF16 or AMX"));
        ck_assert_int_eq(pclip_backend_precision(fast), PCLIP_PRECISION_FP32);
    }
    /* fp16 is refused on either CPU device, pointing to bf16 */
    ck_assert_status(ctx, pclip_backend_set_precision(fast, PCLIP_PRECISION_FP16),
                     PCLIP_STATUS_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "fp16 is not supported on CPUs"));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "bf16"));
    ck_assert_int_eq(pclip_backend_precision(fast),
                     has ? PCLIP_PRECISION_BF16 : PCLIP_PRECISION_FP32);
    pclip_backend_destroy(fast);

    /* the device list says the same */
    pclip_device_desc devs[16];
    int32_t n = 0;
    ck_assert_status(ctx, pclip_devices_list(ctx, devs, 16, &n), PCLIP_STATUS_OK);
    int seen = 0;
    for (int32_t i = 0; i < n && i < 16; i++) {
        if (!devs[i].usable) continue;
        bool bf16 = strstr(devs[i].precisions, "bf16") != NULL;
        bool fp16 = strstr(devs[i].precisions, "fp16") != NULL;
        ck_assert_ptr_nonnull(strstr(devs[i].precisions, "fp32"));
        if (strcmp(devs[i].backend, "cpu") == 0) {
            ck_assert_int_eq(bf16, devs[i].index == 0 && has);
            seen++;
        } else {
            ck_assert(!bf16); /* no other backend runs bf16 yet */
        }
        if (strcmp(devs[i].backend, "vulkan") != 0) ck_assert(!fp16); /* fp16: Vulkan only */
        if (!bf16) ck_assert_ptr_nonnull(strstr(devs[i].precision_why, "bf16: "));
        if (!fp16) ck_assert_ptr_nonnull(strstr(devs[i].precision_why, "fp16: "));
    }
    ck_assert_int_eq(seen, 2);
}
END_TEST

/* Vulkan refuses bf16, and runs fp16 where the device has 16-bit storage
 * buffers (lavapipe has), saying what is missing where it has not; the
 * device list agrees. */
START_TEST(test_other_backend_refuses) {
    if (!pclip_backend_is_built("vulkan")) {
        printf("test_other_backend_refuses: vulkan not built; nothing to check\n");
        return;
    }
    pclip_backend_t b;
    if (pclip_backend_create(ctx, "vulkan", 0, &b)) {
        printf("test_other_backend_refuses: no vulkan device: %s\n", pclip_ctx_last_error(ctx));
        return;
    }
    ck_assert_status(ctx, pclip_backend_set_precision(b, PCLIP_PRECISION_BF16),
                     PCLIP_STATUS_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "vulkan"));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "fp32 and fp16 only"));
    ck_assert_int_eq(pclip_backend_precision(b), PCLIP_PRECISION_FP32);
    pclip_status st = pclip_backend_set_precision(b, PCLIP_PRECISION_FP16);
    pclip_device_desc devs[16];
    int32_t n = 0;
    ck_assert_status(ctx, pclip_devices_list(ctx, devs, 16, &n), PCLIP_STATUS_OK);
    bool listed = false;
    for (int32_t i = 0; i < n && i < 16; i++)
        if (strcmp(devs[i].backend, "vulkan") == 0 && devs[i].index == 0)
            listed = strstr(devs[i].precisions, "fp16") != NULL;
    if (st == PCLIP_STATUS_OK) {
        ck_assert(listed);
        ck_assert_int_eq(pclip_backend_precision(b), PCLIP_PRECISION_FP16);
    } else {
        ck_assert_status(ctx, st, PCLIP_STATUS_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "storageBuffer16BitAccess"));
        ck_assert(!listed);
        ck_assert_int_eq(pclip_backend_precision(b), PCLIP_PRECISION_FP32);
    }
    pclip_backend_destroy(b);
}
END_TEST

/* ---- the CLI ---- */

/* Runs `portclip ARGS` under the shell with `env` before it; returns the
 * exit status, stderr in *err (caller frees). */
static int cli(const char *env, const char *args, char **err) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s '%s' %s", env, pclip_test_cli(), args);
    return pclip_test_sh(cmd, NULL, err);
}

START_TEST(test_cli_bad_values) {
    char dir[256]; /* pclip_test_sh reuses pclip_test_tmpdir's buffer */
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    char args[2048], out[512], *err = NULL;
    snprintf(out, sizeof out, "%s/e.npy", dir);
    const char *model = pclip_test_fixture("tiny-clip");
    /* a bad --precision: usage error (2) naming the option and the value */
    const char *cmds[] = {"embed-text", "embed-image"};
    for (int c = 0; c < 2; c++) {
        snprintf(args, sizeof args, "%s --model '%s' --precision fp8 --output '%s' x", cmds[c],
                 model, out);
        ck_assert_int_eq(cli("", args, &err), 2);
        ck_assert_msg(strstr(err, "--precision must be 'fp32', 'bf16' or 'fp16', not 'fp8'"), "%s",
                      err);
        free(err);
        /* PORTCLIP_PRECISION: the same, naming the variable */
        snprintf(args, sizeof args, "%s --model '%s' --output '%s' x", cmds[c], model, out);
        ck_assert_int_eq(cli("PORTCLIP_PRECISION=bad", args, &err), 2);
        ck_assert_msg(strstr(err, "PORTCLIP_PRECISION must be 'fp32', 'bf16' or 'fp16', not 'bad'"),
                      "%s", err);
        free(err);
        FILE *f = fopen(out, "rb");
        ck_assert_msg(!f, "%s was written", out);
    }
    /* --precision wins over the environment */
    snprintf(args, sizeof args, "embed-text --model '%s' --precision fp32 --output '%s' x", model,
             out);
    ck_assert_int_eq(cli("PORTCLIP_PRECISION=bad", args, &err), 0);
    free(err);
    remove(out);
    /* the reference device and other backends refuse bf16 (exit 1, saying why) */
    snprintf(args, sizeof args,
             "embed-text --model '%s' --backend cpu --device 1 --precision bf16 --output '%s' x",
             model, out);
    ck_assert_int_eq(cli("", args, &err), 1);
    ck_assert_msg(strstr(err, "fp32 reference"), "%s", err);
    free(err);
    /* fp16 on the CPU: exit 1, pointing to bf16 */
    snprintf(args, sizeof args,
             "embed-text --model '%s' --backend cpu --precision fp16 --output '%s' x", model, out);
    ck_assert_int_eq(cli("", args, &err), 1);
    ck_assert_msg(strstr(err, "fp16 is not supported on CPUs"), "%s", err);
    free(err);
    /* a CPU without the instructions (oneDNN limited to AVX-512 without
     * bf16 stands in for one): exit 1 naming what is missing */
    snprintf(args, sizeof args, "embed-text --model '%s' --precision bf16 --output '%s' x", model,
             out);
    ck_assert_int_eq(cli("ONEDNN_MAX_CPU_ISA=AVX2", args, &err), 1);
    ck_assert_msg(strstr(err, "needs AVX512_BF16 or AMX"), "%s", err);
    free(err);
    /* the commands that encode take --precision; the others do not */
    const char *help[][2] = {{"embed-text", "1"}, {"embed-image", "1"}, {"tokenize", "0"},
                             {"preprocess", "0"}, {"verify", "0"},      {"devices", "0"}};
    for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) {
        char *h = NULL;
        snprintf(args, sizeof args, "'%s' help %s", pclip_test_cli(), help[i][0]);
        ck_assert_int_eq(pclip_test_sh(args, &h, NULL), 0);
        ck_assert_msg((strstr(h, "--precision") != NULL) == (help[i][1][0] == '1'), "%s:\n%s",
                      help[i][0], h);
        free(h);
    }
    snprintf(args, sizeof args, "tokenize --model '%s' --precision bf16 x", model);
    ck_assert_int_eq(cli("", args, &err), 2);
    ck_assert_msg(strstr(err, "tokenize does not take --precision"), "%s", err);
    free(err);
    /* devices reports precisions */
    char *o = NULL;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' devices", pclip_test_cli());
    ck_assert_int_eq(pclip_test_sh(cmd, &o, NULL), 0);
    ck_assert_msg(strstr(o, "precision fp32"), "%s", o);
    free(o);
    remove(dir);
}
END_TEST

/* bf16 end to end through the CLI (needs AVX512_BF16 or AMX): the option
 * and the variable give the same embeddings, close to fp32's. */
START_TEST(test_cli_bf16) {
    char dir[256]; /* pclip_test_sh reuses pclip_test_tmpdir's buffer */
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    const char *model = pclip_test_fixture("tiny-clip");
    char args[2048], path[3][512], *err = NULL;
    const char *modes[3][2] = {
        {"", "--precision fp32"}, {"", "--precision bf16"}, {"PORTCLIP_PRECISION=bf16", ""}};
    for (int k = 0; k < 3; k++) {
        snprintf(path[k], sizeof path[k], "%s/e%d.npy", dir, k);
        snprintf(args, sizeof args,
                 "embed-text --model '%s' %s --output '%s' 'a photo of a cat' 'a dog'", model,
                 modes[k][1], path[k]);
        ck_assert_msg(cli(modes[k][0], args, &err) == 0, "%s", err);
        free(err);
    }
    pclip_test_npy a[3];
    for (int k = 0; k < 3; k++) pclip_test_npy_read(path[k], &a[k]);
    ck_assert(memcmp(a[1].data, a[2].data, a[1].count * sizeof(float)) == 0);
    double cos, e;
    loss(a[1].data, a[0].data, (int32_t)a[0].shape[0], (int32_t)a[0].shape[1], &cos, &e);
    ck_assert_msg(cos >= BF16_MIN_COS && e > 0, "cli bf16: worst cosine %.7f, max |err| %.3g", cos,
                  e);
    for (int k = 0; k < 3; k++) {
        pclip_test_npy_free(&a[k]);
        remove(path[k]);
    }
    remove(dir);
}
END_TEST

/* fp16 end to end through the CLI on Vulkan: the option and the variable
 * give the same embeddings, close to the CPU's fp32. */
START_TEST(test_cli_fp16) {
    char dir[256]; /* pclip_test_sh reuses pclip_test_tmpdir's buffer */
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    const char *model = pclip_test_fixture("tiny-clip");
    char args[2048], path[3][512], *err = NULL;
    const char *modes[3][2] = {{"", "--backend cpu --precision fp32"},
                               {"", "--backend vulkan --precision fp16"},
                               {"PORTCLIP_PRECISION=fp16 PORTCLIP_BACKEND=vulkan", ""}};
    for (int k = 0; k < 3; k++) {
        snprintf(path[k], sizeof path[k], "%s/e%d.npy", dir, k);
        snprintf(args, sizeof args,
                 "embed-text --model '%s' %s --output '%s' 'a photo of a cat' 'a dog'", model,
                 modes[k][1], path[k]);
        ck_assert_msg(cli(modes[k][0], args, &err) == 0, "%s", err);
        free(err);
    }
    pclip_test_npy a[3];
    for (int k = 0; k < 3; k++) pclip_test_npy_read(path[k], &a[k]);
    ck_assert(memcmp(a[1].data, a[2].data, a[1].count * sizeof(float)) == 0);
    double cos, e;
    loss(a[1].data, a[0].data, (int32_t)a[0].shape[0], (int32_t)a[0].shape[1], &cos, &e);
    ck_assert_msg(cos >= FP16_COS && e <= FP16_ERR && e > 0,
                  "cli fp16 (%s): worst cosine %.7f, max |err| %.3g", FP16_PATH, cos, e);
    for (int k = 0; k < 3; k++) {
        pclip_test_npy_free(&a[k]);
        remove(path[k]);
    }
    /* devices lists fp16 for the device */
    char *o = NULL, cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' devices", pclip_test_cli());
    ck_assert_int_eq(pclip_test_sh(cmd, &o, NULL), 0);
    ck_assert_msg(strstr(o, "precision fp32 fp16"), "%s", o);
    free(o);
    remove(dir);
}
END_TEST

/* Exits 77 (skipped), saying why, unless Vulkan device 0 opens and accepts
 * fp16 (and, for fp16_arith, reports fp16 arithmetic); probed in a child
 * process (devices are opened after Check's fork). */
static void probe_vulkan_fp16(void) {
    if (!pclip_backend_is_built("vulkan")) {
        printf("skipped: vulkan: not built into this library\n");
        exit(PCLIP_TEST_SKIP);
    }
    pclip_test_probe_backend("check_precision", "vulkan", 0);
    int fds[2];
    if (pipe(fds) != 0) exit(1);
    pid_t pid = fork();
    if (pid < 0) exit(1);
    if (pid == 0) {
        close(fds[0]);
        pclip_ctx_t c;
        pclip_backend_t b;
        if (pclip_ctx_create(&c) || pclip_backend_create(c, "vulkan", 0, &b)) _exit(1);
        pclip_status st = pclip_backend_set_precision(b, PCLIP_PRECISION_FP16);
        const char *msg = pclip_ctx_last_error(c);
        if (st && write(fds[1], msg, strlen(msg)) < 0) _exit(1);
        if (st) _exit(st == PCLIP_STATUS_UNSUPPORTED ? PCLIP_TEST_SKIP : 1);
        if (fp16_arith) { /* the device list says whether device 0 has shaderFloat16 */
            pclip_device_desc devs[16];
            int32_t n = 0;
            if (pclip_devices_list(c, devs, 16, &n)) _exit(1);
            for (int32_t i = 0; i < n && i < 16; i++)
                if (strcmp(devs[i].backend, "vulkan") == 0 && devs[i].index == 0 &&
                    !strstr(devs[i].features, "fp16-arithmetic")) {
                    char why[300];
                    snprintf(why, sizeof why,
                             "vulkan: device 0 (%s) lacks shaderFloat16 (fp16 arithmetic)",
                             devs[i].name);
                    if (write(fds[1], why, strlen(why)) < 0) _exit(1);
                    _exit(PCLIP_TEST_SKIP);
                }
        }
        _exit(0);
    }
    close(fds[1]);
    char why[512];
    size_t used = 0;
    ssize_t r;
    while (used + 1 < sizeof why && (r = read(fds[0], why + used, sizeof why - 1 - used)) > 0)
        used += (size_t)r;
    why[used] = '\0';
    close(fds[0]);
    int status;
    int code = waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code == 0) return;
    if (code == PCLIP_TEST_SKIP) {
        printf("skipped: %s\n", why);
        exit(PCLIP_TEST_SKIP);
    }
    fprintf(stderr, "check_precision: vulkan fp16 probe failed: %s\n", why);
    exit(1);
}

int main(int argc, char **argv) {
    const char *part = argc > 1 ? argv[1] : "api";
    Suite *s = suite_create("precision");
    if (strcmp(part, "accuracy") == 0) {
        char why[160];
        if (!pclip__cpu_dnnl_has_bf16(why, sizeof why)) {
            printf("skipped: cpu: bf16 %s\n", why);
            return PCLIP_TEST_SKIP;
        }
        TCase *core = tcase_create("core");
        tcase_add_checked_fixture(core, setup, teardown);
        tcase_set_timeout(core, 600);
        tcase_add_loop_test(core, test_bf16_bounds, 0, N_VARIANTS);
        tcase_add_test(core, test_bf16_repeatable);
        tcase_add_loop_test(core, test_bf16_routes, 0, 3 * RT_STAGES);
        tcase_add_loop_test(core, test_bf16_attention, 0, 3 * N_ATTN_SHAPES);
        tcase_add_test(core, test_cli_bf16);
        suite_add_tcase(s, core);
    } else if (strcmp(part, "vulkan_fp16") == 0 || strcmp(part, "vulkan_fp16_arith") == 0) {
        /* the path under test, for every backend these tests open (and the CLI) */
        fp16_arith = strcmp(part, "vulkan_fp16_arith") == 0;
        setenv("PORTCLIP_VK_FP16_ARITH", fp16_arith ? "1" : "0", 1);
        probe_vulkan_fp16();
        TCase *core = tcase_create("core");
        tcase_add_checked_fixture(core, setup, teardown);
        tcase_set_timeout(core, 600);
        tcase_add_loop_test(core, test_fp16_bounds, 0, N_VARIANTS);
        tcase_add_loop_test(core, test_fp16_matmul_parity, 0, 2);
        tcase_add_test(core, test_cli_fp16);
        suite_add_tcase(s, core);
    } else if (strcmp(part, "api") == 0) {
        TCase *core = tcase_create("core");
        tcase_add_checked_fixture(core, setup, teardown);
        tcase_add_test(core, test_names_and_parse);
        tcase_add_test(core, test_refusals);
        tcase_add_test(core, test_other_backend_refuses);
        suite_add_tcase(s, core);
        TCase *limits = tcase_create("limits");
        tcase_add_checked_fixture(limits, setup, teardown);
        tcase_set_timeout(limits, 300);
        tcase_add_test(limits, test_cli_bad_values);
        suite_add_tcase(s, limits);
    } else {
        fprintf(stderr, "usage: check_precision [api|accuracy|vulkan_fp16|vulkan_fp16_arith]\n");
        return 2;
    }
    return pclip_test_run(s);
}
