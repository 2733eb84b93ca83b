/* y[r] = the k largest x[r, j] then their j (as float), per row
 *
 * Order (pclip__topk_params): larger value first, equal values by the lower
 * column, -0 equal to +0, NaN below every number. Every value is mapped to
 * an unsigned key with that order (the float's sign-magnitude bits made
 * monotonic; NaN is key 0), so that the order is one integer comparison of
 * (key, column) on every backend. Selection is exact: bit-exact across
 * backends. */
#include <math.h>
#include <string.h>

#include "cpu.h"

static inline uint32_t topk_key(float v) {
    if (isnan(v)) return 0;
    if (v == 0.0f) v = 0.0f; /* -0 -> +0 */
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* One row: an insertion into a sorted list of the best k seen so far (each
 * column is compared with the list's last entry first, so most cost one
 * comparison). */
static void topk_row(const float *x, float *y, int32_t cols, int32_t k) {
    uint32_t key[PCLIP__TOPK_MAX];
    int32_t idx[PCLIP__TOPK_MAX];
    int32_t n = 0;
    for (int32_t j = 0; j < cols; j++) {
        const uint32_t kj = topk_key(x[j]);
        /* columns come in increasing order: a tie never beats a listed one */
        if (n == k && kj <= key[n - 1]) continue;
        int32_t pos = n < k ? n : k - 1;
        while (pos > 0 && key[pos - 1] < kj) {
            key[pos] = key[pos - 1];
            idx[pos] = idx[pos - 1];
            pos--;
        }
        key[pos] = kj;
        idx[pos] = j;
        if (n < k) n++;
    }
    for (int32_t i = 0; i < k; i++) {
        y[i] = x[idx[i]] == 0.0f ? 0.0f : x[idx[i]];
        y[k + i] = (float)idx[i];
    }
}

/* ---- reference ---- */

pclip_status pclip__cpu_topk_ref(const pclip__cpu_node *n) {
    const pclip__topk_params *p = &n->t->params.topk;
    for (int32_t r = 0; r < p->rows; r++)
        topk_row((const float *)n->src[0] + (int64_t)r * p->cols, n->dst + (int64_t)r * 2 * p->k,
                 p->cols, p->k);
    return PCLIP_STATUS_OK;
}

/* ---- fast: the same, rows in parallel ---- */

pclip_status pclip__cpu_topk_fast(const pclip__cpu_node *n) {
    const pclip__topk_params *p = &n->t->params.topk;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if ((int64_t)p->rows * p->cols >= 4 * PCLIP__CPU_PAR_MIN)
    for (int32_t r = 0; r < p->rows; r++)
        topk_row((const float *)n->src[0] + (int64_t)r * p->cols, n->dst + (int64_t)r * 2 * p->k,
                 p->cols, p->k);
    return PCLIP_STATUS_OK;
}
