/* y = d layer_norm / d x (mode 0) | dy * xhat (mode 1), per row
 *
 * With xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) (var biased, the
 * two passes of layer_norm.c) and a = gamma * dy:
 *   mode 0: y = (a - mean(a) - xhat mean(a xhat)) * rstd
 *   mode 1: y = dy * xhat (summed over rows, d layer_norm / d gamma)
 * Sums in float in column order; the fast path runs rows in parallel with
 * the same code (bit-exact with the reference). */
#include "cpu.h"

static void layer_norm_grad_row(const float *x, const float *g, const float *dy, float *y,
                                int32_t cols, float eps, int32_t mode) {
    float sum = 0.0f;
    for (int32_t j = 0; j < cols; j++) sum += x[j];
    const float mean = sum / (float)cols;
    float sq = 0.0f;
    for (int32_t j = 0; j < cols; j++) sq += (x[j] - mean) * (x[j] - mean);
    const float rstd = 1.0f / sqrtf(sq / (float)cols + eps);
    if (mode == 1) {
        for (int32_t j = 0; j < cols; j++) y[j] = dy[j] * ((x[j] - mean) * rstd);
        return;
    }
    float sa = 0.0f, sax = 0.0f;
    for (int32_t j = 0; j < cols; j++) {
        const float a = g[j] * dy[j];
        sa += a;
        sax += a * ((x[j] - mean) * rstd);
    }
    const float ma = sa / (float)cols, mean_ax = sax / (float)cols;
    for (int32_t j = 0; j < cols; j++)
        y[j] = (g[j] * dy[j] - ma - (x[j] - mean) * rstd * mean_ax) * rstd;
}

/* ---- reference ---- */

pclip_status pclip__cpu_layer_norm_grad_ref(const pclip__cpu_node *n) {
    const pclip__layer_norm_grad_params *p = &n->t->params.layer_norm_grad;
    for (int64_t r = 0; r < p->rows; r++)
        layer_norm_grad_row((const float *)n->src[0] + r * p->cols, n->src[1],
                            (const float *)n->src[2] + r * p->cols, n->dst + r * p->cols, p->cols,
                            p->eps, p->mode);
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

pclip_status pclip__cpu_layer_norm_grad_fast(const pclip__cpu_node *n) {
    const pclip__layer_norm_grad_params *p = &n->t->params.layer_norm_grad;
    const int64_t rows = p->rows, cols = p->cols;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (rows * cols >= PCLIP__CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        layer_norm_grad_row((const float *)n->src[0] + r * cols, n->src[1],
                            (const float *)n->src[2] + r * cols, n->dst + r * cols, p->cols, p->eps,
                            p->mode);
    return PCLIP_STATUS_OK;
}
