/* y = dy / n - x (x . dy) / n^3, n = max(||x||, eps), per row
 *
 * The gradient of l2_norm.c with the same eps: where the norm is below eps
 * the clamp holds it constant and y = dy / eps; at ||x|| >= eps (and for a
 * NaN norm) the full formula, written (dy - x (x . dy) / n^2) / n. Sums in
 * float in column order; the fast path runs rows in parallel with the same
 * code (bit-exact with the reference). */
#include "cpu.h"

static void l2_norm_grad_row(const float *x, const float *dy, float *y, int32_t cols, float eps) {
    float sq = 0.0f, dot = 0.0f;
    for (int32_t j = 0; j < cols; j++) {
        sq += x[j] * x[j];
        dot += x[j] * dy[j];
    }
    const float norm = sqrtf(sq);
    if (norm < eps) {
        for (int32_t j = 0; j < cols; j++) y[j] = dy[j] / eps;
        return;
    }
    const float c = dot / (norm * norm);
    for (int32_t j = 0; j < cols; j++) y[j] = (dy[j] - x[j] * c) / norm;
}

/* ---- reference ---- */

pclip_status pclip__cpu_l2_norm_grad_ref(const pclip__cpu_node *n) {
    const pclip__l2_norm_grad_params *p = &n->t->params.l2_norm_grad;
    for (int64_t r = 0; r < p->rows; r++)
        l2_norm_grad_row((const float *)n->src[0] + r * p->cols,
                         (const float *)n->src[1] + r * p->cols, n->dst + r * p->cols, p->cols,
                         p->eps);
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

pclip_status pclip__cpu_l2_norm_grad_fast(const pclip__cpu_node *n) {
    const pclip__l2_norm_grad_params *p = &n->t->params.l2_norm_grad;
    const int64_t rows = p->rows, cols = p->cols;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (rows * cols >= PCLIP__CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        l2_norm_grad_row((const float *)n->src[0] + r * cols, (const float *)n->src[1] + r * cols,
                         n->dst + r * cols, p->cols, p->eps);
    return PCLIP_STATUS_OK;
}
