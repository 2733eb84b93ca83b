/* y = (CE of rows + CE of columns of exp(t[0]) s, labels i = i) / 2, mean over i
 * and its gradient (clip_loss_grad): which 0: dy[0] d y / d s, which 1: d y / d t.
 *
 * With L = exp(t[0]) s (one float product per element) and, per row i and
 * column j, the log-sum-exps with the maximum subtracted (max first, then
 * the sum of expf(L - max) in index order, lse = max + logf(sum)):
 *   clip_loss       y = (sum_i (lse_row_i - L_ii) / n + sum_j (lse_col_j - L_jj) / n) / 2
 *   clip_loss_grad  P_ij = expf(L_ij - lse_row_i), Q_ij = expf(L_ij - lse_col_j),
 *                   dL_ij = dy (P_ij + Q_ij - 2 [i = j]) / (2 n);
 *                   which 0: dst_ij = exp(t) dL_ij; which 1: dst = sum_i (sum_j dL_ij L_ij)
 * The sums over i are sequential, so the reference (one thread) and the fast
 * path (columns and rows over threads, each one's arithmetic unchanged) are
 * bit-exact with each other. The stats live in the exec's scratch (3 n
 * floats, pclip__cpu_clip_loss_scratch); nothing is allocated here. */
#include "cpu.h"

size_t pclip__cpu_clip_loss_scratch(int32_t n) { return (size_t)n * 3 * sizeof(float); }

/* Column blocks per thread task: rows are streamed, each task owns a block. */
#define COL_BLOCK 256

/* lse_col[j] and lse_row[i] of L = e s (s [n, n]). */
static void clip_stats(const float *s, float e, int32_t n, int32_t threads, float *lse_col,
                       float *lse_row, float *colsum) {
    const int32_t blocks = (n + COL_BLOCK - 1) / COL_BLOCK;
    const bool par = threads > 1 && (int64_t)n * n >= PCLIP__CPU_PAR_MIN;
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
    for (int32_t b = 0; b < blocks; b++) {
        const int32_t j0 = b * COL_BLOCK, j1 = j0 + COL_BLOCK < n ? j0 + COL_BLOCK : n;
        for (int32_t j = j0; j < j1; j++) lse_col[j] = -INFINITY, colsum[j] = 0.0f;
        for (int32_t i = 0; i < n; i++)
            for (int32_t j = j0; j < j1; j++) {
                const float x = e * s[(size_t)i * n + j];
                lse_col[j] = x > lse_col[j] ? x : lse_col[j];
            }
        for (int32_t i = 0; i < n; i++)
            for (int32_t j = j0; j < j1; j++)
                colsum[j] += expf(e * s[(size_t)i * n + j] - lse_col[j]);
        for (int32_t j = j0; j < j1; j++) lse_col[j] = lse_col[j] + logf(colsum[j]);
    }
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
    for (int32_t i = 0; i < n; i++) {
        const float *row = s + (size_t)i * n;
        float m = -INFINITY, sum = 0.0f;
        for (int32_t j = 0; j < n; j++) {
            const float x = e * row[j];
            m = x > m ? x : m;
        }
        for (int32_t j = 0; j < n; j++) sum += expf(e * row[j] - m);
        lse_row[i] = m + logf(sum);
    }
}

static pclip_status clip_loss(const pclip__cpu_node *node, int32_t threads) {
    const int32_t n = node->t->params.clip_loss.n;
    const float *s = node->src[0];
    const float e = expf(*(const float *)node->src[1]);
    float *lse_col = node->scratch, *lse_row = lse_col + n, *colsum = lse_row + n;
    clip_stats(s, e, n, threads, lse_col, lse_row, colsum);
    float rows = 0.0f, cols = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        const float diag = e * s[(size_t)i * n + i];
        rows += lse_row[i] - diag;
        cols += lse_col[i] - diag;
    }
    node->dst[0] = 0.5f * (rows / (float)n + cols / (float)n);
    return PCLIP_STATUS_OK;
}

static pclip_status clip_loss_grad(const pclip__cpu_node *node, int32_t threads) {
    const pclip__clip_loss_grad_params *p = &node->t->params.clip_loss_grad;
    const int32_t n = p->n;
    const float *s = node->src[0];
    const float e = expf(*(const float *)node->src[1]);
    const float dy = *(const float *)node->src[2];
    const float two_n = (float)(2 * (int64_t)n);
    float *lse_col = node->scratch, *lse_row = lse_col + n, *part = lse_row + n;
    clip_stats(s, e, n, threads, lse_col, lse_row, part);
    float *dst = node->dst;
    const bool par = threads > 1 && (int64_t)n * n >= PCLIP__CPU_PAR_MIN;
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
    for (int32_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int32_t j = 0; j < n; j++) {
            const float x = e * s[(size_t)i * n + j];
            const float g = (expf(x - lse_row[i]) + expf(x - lse_col[j])) - (i == j ? 2.0f : 0.0f);
            const float dl = dy * g / two_n;
            if (p->which == 0)
                dst[(size_t)i * n + j] = e * dl;
            else
                acc += dl * x;
        }
        part[i] = acc;
    }
    if (p->which == 1) {
        float sum = 0.0f;
        for (int32_t i = 0; i < n; i++) sum += part[i];
        dst[0] = sum;
    }
    return PCLIP_STATUS_OK;
}

/* ---- reference: one thread ---- */

pclip_status pclip__cpu_clip_loss_ref(const pclip__cpu_node *n) { return clip_loss(n, 1); }
pclip_status pclip__cpu_clip_loss_grad_ref(const pclip__cpu_node *n) {
    return clip_loss_grad(n, 1);
}

/* ---- fast: the same arithmetic, rows and column blocks over threads ---- */

pclip_status pclip__cpu_clip_loss_fast(const pclip__cpu_node *n) {
    return clip_loss(n, n->threads);
}
pclip_status pclip__cpu_clip_loss_grad_fast(const pclip__cpu_node *n) {
    return clip_loss_grad(n, n->threads);
}
