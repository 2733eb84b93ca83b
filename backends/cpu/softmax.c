/* y = softmax(x * scale + causal mask), per row
 *
 * With the causal mask, row r of each block of `cols` rows sees columns
 * 0..r % cols (the rows of one [T, T] score matrix); masked columns are 0,
 * as exp(-inf) would make them. The row maximum is subtracted first, as
 * torch does; a row with NaN or +inf gives NaN everywhere it sees. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_softmax_ref(const pclip__cpu_node *n) {
    const pclip__softmax_params *p = &n->t->params.softmax;
    for (int32_t r = 0; r < p->rows; r++) {
        const float *x = (const float *)n->src[0] + (int64_t)r * p->cols;
        float *y = n->dst + (int64_t)r * p->cols;
        int32_t seen = p->causal ? r % p->cols + 1 : p->cols;
        float max = -INFINITY;
        for (int32_t j = 0; j < seen; j++)
            if (x[j] * p->scale > max) max = x[j] * p->scale;
        float sum = 0.0f;
        for (int32_t j = 0; j < seen; j++) {
            y[j] = expf(x[j] * p->scale - max);
            sum += y[j];
        }
        for (int32_t j = 0; j < seen; j++) y[j] /= sum;
        for (int32_t j = seen; j < p->cols; j++) y[j] = 0.0f;
    }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

#define PCLIP_SIMD_FILE "softmax.c"
#include "simd_foreach.h"

typedef void (*softmax_row_fn)(const float *x, float *y, int64_t seen, int64_t cols, float scale);
static const softmax_row_fn softmax_row[] = PCLIP_SIMD_VARIANTS(softmax_row);
_Static_assert(sizeof softmax_row / sizeof softmax_row[0] == PCLIP__CPU_SIMD_COUNT,
               "one per level");

pclip_status pclip__cpu_softmax_fast(const pclip__cpu_node *n) {
    const pclip__softmax_params *p = &n->t->params.softmax;
    const softmax_row_fn fn = softmax_row[n->simd];
    const float *x = n->src[0];
    const int64_t rows = p->rows, cols = p->cols;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (rows * cols >= PCLIP__CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        fn(x + r * cols, n->dst + r * cols, p->causal ? r % cols + 1 : cols, cols, p->scale);
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

static void SIMD(softmax_row)(const float *x, float *y, int64_t seen, int64_t cols, float scale) {
    const vf vs = vset1(scale), ninf = vset1(-INFINITY);
    int64_t j;
    vf mx = ninf;
    for (j = 0; j + VL <= seen; j += VL) mx = vmax(mx, vmul(vload(x + j), vs));
    if (j < seen) {
        vm m = vtail(seen - j);
        mx = vmax(mx, vsel_m(m, vmul(vload_m(x + j, m), vs), ninf));
    }
    const vf max = vset1(vhmax(mx));
    vf acc = vzero();
    for (j = 0; j + VL <= seen; j += VL) {
        vf e = vexp(vsub(vmul(vload(x + j), vs), max));
        vstore(y + j, e);
        acc = vadd(acc, e);
    }
    if (j < seen) {
        vm m = vtail(seen - j);
        vf e = vzero_m(m, vexp(vsub(vmul(vload_m(x + j, m), vs), max)));
        vstore_m(y + j, m, e);
        acc = vadd(acc, e);
    }
    const vf inv = vset1(1.0f / vsum(acc));
    for (j = 0; j + VL <= seen; j += VL) vstore(y + j, vmul(vload(y + j), inv));
    if (j < seen) {
        vm m = vtail(seen - j);
        vstore_m(y + j, m, vmul(vload_m(y + j, m), inv));
    }
    for (j = seen; j < cols; j++) y[j] = 0.0f;
}

#endif
