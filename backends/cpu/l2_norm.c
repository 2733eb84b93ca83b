/* y = x / max(||x||, eps), per row
 *
 * As torch.nn.functional.normalize (eps 1e-12) and x / x.norm() (eps 0,
 * where an all-zero row gives NaN, as in torch). A NaN norm stays NaN: the
 * clamp is written `norm < eps ? eps : norm`, like torch's clamp_min. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_l2_norm_ref(const pclip__cpu_node *n) {
    const pclip__l2_norm_params *p = &n->t->params.l2_norm;
    for (int32_t r = 0; r < p->rows; r++) {
        const float *x = (const float *)n->src[0] + (int64_t)r * p->cols;
        float *y = n->dst + (int64_t)r * p->cols;
        float sq = 0.0f;
        for (int32_t j = 0; j < p->cols; j++) sq += x[j] * x[j];
        float norm = sqrtf(sq);
        float d = norm < p->eps ? p->eps : norm;
        for (int32_t j = 0; j < p->cols; j++) y[j] = x[j] / d;
    }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

#define PCLIP_SIMD_FILE "l2_norm.c"
#include "simd_foreach.h"

typedef void (*l2_norm_row_fn)(const float *x, float *y, int64_t cols, float eps);
static const l2_norm_row_fn l2_norm_row[] = PCLIP_SIMD_VARIANTS(l2_norm_row);
_Static_assert(sizeof l2_norm_row / sizeof l2_norm_row[0] == PCLIP__CPU_SIMD_COUNT,
               "one per level");

pclip_status pclip__cpu_l2_norm_fast(const pclip__cpu_node *n) {
    const pclip__l2_norm_params *p = &n->t->params.l2_norm;
    const l2_norm_row_fn fn = l2_norm_row[n->simd];
    const float *x = n->src[0];
    const int64_t rows = p->rows, cols = p->cols;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (rows * cols >= PCLIP__CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) fn(x + r * cols, n->dst + r * cols, cols, p->eps);
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

static void SIMD(l2_norm_row)(const float *x, float *y, int64_t cols, float eps) {
    int64_t j;
    vf acc = vzero();
    for (j = 0; j + VL <= cols; j += VL) {
        vf v = vload(x + j);
        acc = vfma(v, v, acc);
    }
    if (j < cols) {
        vf v = vload_m(x + j, vtail(cols - j));
        acc = vfma(v, v, acc);
    }
    float norm = sqrtf(vsum(acc));
    const vf d = vset1(norm < eps ? eps : norm);
    for (j = 0; j + VL <= cols; j += VL) vstore(y + j, vdiv(vload(x + j), d));
    if (j < cols) {
        vm m = vtail(cols - j);
        vstore_m(y + j, m, vdiv(vload_m(x + j, m), d));
    }
}

#endif
