/* y[j, i] = x[i, j]
 *
 * x [rows, cols] -> y [cols, rows]. Data movement only: every backend is
 * bit-exact. The fast path walks 32 x 32 blocks so that both the reads and
 * the writes stay within a few cache lines, blocks of rows in parallel. */
#include "cpu.h"

#define BLOCK 32

static void transpose_block(const float *x, float *y, int64_t rows, int64_t cols, int64_t i0,
                            int64_t j0) {
    const int64_t i1 = i0 + BLOCK < rows ? i0 + BLOCK : rows;
    const int64_t j1 = j0 + BLOCK < cols ? j0 + BLOCK : cols;
    for (int64_t j = j0; j < j1; j++)
        for (int64_t i = i0; i < i1; i++) y[j * rows + i] = x[i * cols + j];
}

/* ---- reference ---- */

pclip_status pclip__cpu_transpose_ref(const pclip__cpu_node *n) {
    const pclip__transpose_params *p = &n->t->params.transpose;
    const float *x = n->src[0];
    for (int64_t i = 0; i < p->rows; i++)
        for (int64_t j = 0; j < p->cols; j++) n->dst[j * p->rows + i] = x[i * p->cols + j];
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

pclip_status pclip__cpu_transpose_fast(const pclip__cpu_node *n) {
    const pclip__transpose_params *p = &n->t->params.transpose;
    const float *x = n->src[0];
    const int64_t rows = p->rows, cols = p->cols, bi = (rows + BLOCK - 1) / BLOCK;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (rows * cols >= PCLIP__CPU_PAR_MIN)
    for (int64_t b = 0; b < bi; b++)
        for (int64_t j0 = 0; j0 < cols; j0 += BLOCK)
            transpose_block(x, n->dst, rows, cols, b * BLOCK, j0);
    return PCLIP_STATUS_OK;
}
