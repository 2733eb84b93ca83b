/* y[j] = sum_i x[i, j]
 *
 * x [rows, cols] -> y [cols]: a bias's gradient. Each column is summed in
 * row order in float, on both paths (the fast one splits the columns among
 * threads and keeps each column's order, so it is bit-exact with the
 * reference). */
#include "cpu.h"

/* Columns [j0, j1) of every row, accumulated row by row. */
static void sum_cols(const float *x, float *y, int64_t rows, int64_t cols, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j++) y[j] = 0.0f;
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * cols;
        for (int64_t j = j0; j < j1; j++) y[j] += xr[j];
    }
}

/* ---- reference ---- */

pclip_status pclip__cpu_sum_rows_ref(const pclip__cpu_node *n) {
    const pclip__sum_rows_params *p = &n->t->params.sum_rows;
    sum_cols(n->src[0], n->dst, p->rows, p->cols, 0, p->cols);
    return PCLIP_STATUS_OK;
}

/* ---- fast: blocks of 256 columns in parallel ---- */

pclip_status pclip__cpu_sum_rows_fast(const pclip__cpu_node *n) {
    const pclip__sum_rows_params *p = &n->t->params.sum_rows;
    const int64_t rows = p->rows, cols = p->cols, chunk = 256, chunks = (cols + chunk - 1) / chunk;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (rows * cols >= PCLIP__CPU_PAR_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t j0 = c * chunk, j1 = j0 + chunk < cols ? j0 + chunk : cols;
        sum_cols(n->src[0], n->dst, rows, cols, j0, j1);
    }
    return PCLIP_STATUS_OK;
}
