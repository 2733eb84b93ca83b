/* y = (x - mean) / sqrt(var + eps) * g + b, per row
 *
 * As torch.nn.LayerNorm: the mean, then the biased variance of x - mean
 * (two passes, no E[x^2] - E[x]^2 cancellation), then the affine map. The
 * fast path runs the same passes on vectors and multiplies by 1/sqrt; at
 * bf16, when only bf16 matmuls read the result (n->bf16_dst), its last pass
 * writes bf16 (statistics and affine map in fp32, rounded once). */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_layer_norm_ref(const pclip__cpu_node *n) {
    const pclip__layer_norm_params *p = &n->t->params.layer_norm;
    const float *g = n->src[1], *b = n->src[2];
    for (int32_t r = 0; r < p->rows; r++) {
        const float *x = (const float *)n->src[0] + (int64_t)r * p->cols;
        float *y = n->dst + (int64_t)r * p->cols;
        float sum = 0.0f;
        for (int32_t j = 0; j < p->cols; j++) sum += x[j];
        float mean = sum / (float)p->cols;
        float sq = 0.0f;
        for (int32_t j = 0; j < p->cols; j++) sq += (x[j] - mean) * (x[j] - mean);
        float sd = sqrtf(sq / (float)p->cols + p->eps);
        for (int32_t j = 0; j < p->cols; j++) y[j] = (x[j] - mean) / sd * g[j] + b[j];
    }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

#define PCLIP_SIMD_FILE "layer_norm.c"
#include "simd_foreach.h"

typedef void (*layer_norm_row_fn)(const float *x, const float *g, const float *b, float *y,
                                  uint16_t *yb, int64_t cols, float eps);
static const layer_norm_row_fn layer_norm_row[] = PCLIP_SIMD_VARIANTS(layer_norm_row);
_Static_assert(sizeof layer_norm_row / sizeof layer_norm_row[0] == PCLIP__CPU_SIMD_COUNT,
               "one per level");

pclip_status pclip__cpu_layer_norm_fast(const pclip__cpu_node *n) {
    const pclip__layer_norm_params *p = &n->t->params.layer_norm;
    const layer_norm_row_fn fn = layer_norm_row[n->simd];
    const float *x = n->src[0], *g = n->src[1], *b = n->src[2];
    const int64_t rows = p->rows, cols = p->cols;
    uint16_t *yb = n->bf16_dst ? (uint16_t *)(void *)n->dst : NULL;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (rows * cols >= PCLIP__CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        fn(x + r * cols, g, b, yb ? NULL : n->dst + r * cols, yb ? yb + r * cols : NULL, cols,
           p->eps);
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

#include "bf16_vec.h"

/* One row into y, or as bf16 into yb when yb is not NULL. */
static void SIMD(layer_norm_row)(const float *x, const float *g, const float *b, float *y,
                                 uint16_t *yb, int64_t cols, float eps) {
    int64_t j;
    vf acc = vzero();
    for (j = 0; j + VL <= cols; j += VL) acc = vadd(acc, vload(x + j));
    if (j < cols) acc = vadd(acc, vload_m(x + j, vtail(cols - j)));
    const vf mean = vset1(vsum(acc) / (float)cols);
    acc = vzero();
    for (j = 0; j + VL <= cols; j += VL) {
        vf d = vsub(vload(x + j), mean);
        acc = vfma(d, d, acc);
    }
    if (j < cols) {
        vm m = vtail(cols - j);
        vf d = vzero_m(m, vsub(vload_m(x + j, m), mean));
        acc = vfma(d, d, acc);
    }
    const vf rstd = vset1(1.0f / sqrtf(vsum(acc) / (float)cols + eps));
    if (yb) {
        for (j = 0; j + VL <= cols; j += VL) {
            vf d = vmul(vsub(vload(x + j), mean), rstd);
            SIMD(vstore_bf16)(yb + j, vfma(d, vload(g + j), vload(b + j)));
        }
        if (j < cols) {
            vm m = vtail(cols - j);
            vf d = vmul(vsub(vload_m(x + j, m), mean), rstd);
            SIMD(vstore_bf16_n)(yb + j, cols - j, vfma(d, vload_m(g + j, m), vload_m(b + j, m)));
        }
        return;
    }
    for (j = 0; j + VL <= cols; j += VL) {
        vf d = vmul(vsub(vload(x + j), mean), rstd);
        vstore(y + j, vfma(d, vload(g + j), vload(b + j)));
    }
    if (j < cols) {
        vm m = vtail(cols - j);
        vf d = vmul(vsub(vload_m(x + j, m), mean), rstd);
        vstore_m(y + j, m, vfma(d, vload_m(g + j, m), vload_m(b + j, m)));
    }
}

#endif
