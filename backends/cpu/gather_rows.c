/* y[i] = table[idx[i]]
 *
 * Token embedding lookup and pooling (one row per sequence). An index
 * outside the table gives a row of zeros, never a read outside it. Pure data
 * movement: bit-exact. */
#include <string.h>

#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_gather_rows_ref(const pclip__cpu_node *n) {
    const pclip__gather_rows_params *p = &n->t->params.gather_rows;
    const float *table = n->src[0];
    const int32_t *idx = n->src[1];
    for (int64_t i = 0; i < p->rows; i++) {
        int32_t k = idx[i];
        for (int64_t j = 0; j < p->cols; j++)
            n->dst[i * p->cols + j] =
                k >= 0 && k < p->table_rows ? table[(int64_t)k * p->cols + j] : 0.0f;
    }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

pclip_status pclip__cpu_gather_rows_fast(const pclip__cpu_node *n) {
    const pclip__gather_rows_params *p = &n->t->params.gather_rows;
    const float *table = n->src[0];
    const int32_t *idx = n->src[1];
    const int64_t cols = p->cols;
    const size_t row_bytes = (size_t)cols * sizeof(float);
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if ((int64_t)p->rows * cols >= 4 * PCLIP__CPU_PAR_MIN)
    for (int64_t i = 0; i < p->rows; i++) {
        int32_t k = idx[i];
        if (k >= 0 && k < p->table_rows)
            memcpy(n->dst + i * cols, table + (int64_t)k * cols, row_bytes);
        else
            memset(n->dst + i * cols, 0, row_bytes);
    }
    return PCLIP_STATUS_OK;
}
