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
 * The reference is scalar, libm expf, one thread. The fast path computes the
 * same formulas on simd.h vectors with vexp (ulp-level differences; the row
 * sums are added lane by lane, the column sums stay sequential in i), in one
 * OpenMP region per op: column blocks and rows over threads for the stats,
 * then rows for the gradient. The stats live in the exec's scratch (3 n
 * floats, pclip__cpu_clip_loss_scratch); nothing is allocated here. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
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

/* ---- fast: vectors, one OpenMP region per op ---- */

#define PCLIP_SIMD_FILE "clip_loss.c"
#include "simd_foreach.h"

typedef void (*col_stats_fn)(const float *s, float e, int32_t n, int32_t j0, int32_t j1,
                             float *lse_col, float *colsum);
typedef float (*row_lse_fn)(const float *row, float e, int32_t n);
typedef float (*grad_row_fn)(const float *row, float e, int32_t n, int32_t i, float lse_row,
                             const float *lse_col, float dy, float two_n, int32_t which,
                             float *dst);
static const col_stats_fn col_stats[] = PCLIP_SIMD_VARIANTS(col_stats);
static const row_lse_fn row_lse[] = PCLIP_SIMD_VARIANTS(row_lse);
static const grad_row_fn grad_row[] = PCLIP_SIMD_VARIANTS(grad_row);
_Static_assert(sizeof grad_row / sizeof grad_row[0] == PCLIP__CPU_SIMD_COUNT, "one per level");

/* Columns per thread task of the column stats (a multiple of every VL). */
#define FAST_COL_BLOCK 64

/* The stats of L = e s, inside a parallel region (orphaned worksharing):
 * column blocks, then rows, without a barrier between them; the caller's
 * region (or the next loop) waits. */
static void stats_fast(const pclip__cpu_node *node, const float *s, float e, int32_t n,
                       float *lse_col, float *lse_row, float *colsum) {
    const col_stats_fn cs = col_stats[node->simd];
    const row_lse_fn rl = row_lse[node->simd];
    const int32_t blocks = (n + FAST_COL_BLOCK - 1) / FAST_COL_BLOCK;
#pragma omp for schedule(static) nowait
    for (int32_t b = 0; b < blocks; b++) {
        const int32_t j0 = b * FAST_COL_BLOCK;
        cs(s, e, n, j0, j0 + FAST_COL_BLOCK < n ? j0 + FAST_COL_BLOCK : n, lse_col, colsum);
    }
#pragma omp for schedule(static)
    for (int32_t i = 0; i < n; i++) lse_row[i] = rl(s + (size_t)i * n, e, n);
}

pclip_status pclip__cpu_clip_loss_fast(const pclip__cpu_node *node) {
    const int32_t n = node->t->params.clip_loss.n;
    const float *s = node->src[0];
    const float e = expf(*(const float *)node->src[1]);
    float *lse_col = node->scratch, *lse_row = lse_col + n, *colsum = lse_row + n;
    const bool par = node->threads > 1 && (int64_t)n * n >= 2 * PCLIP__CPU_PAR_MIN;
#pragma omp parallel num_threads(node->threads) if (par)
    stats_fast(node, s, e, n, lse_col, lse_row, colsum);
    float rows = 0.0f, cols = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        const float diag = e * s[(size_t)i * n + i];
        rows += lse_row[i] - diag;
        cols += lse_col[i] - diag;
    }
    node->dst[0] = 0.5f * (rows / (float)n + cols / (float)n);
    return PCLIP_STATUS_OK;
}

pclip_status pclip__cpu_clip_loss_grad_fast(const pclip__cpu_node *node) {
    const pclip__clip_loss_grad_params *p = &node->t->params.clip_loss_grad;
    const int32_t n = p->n, which = p->which;
    const float *s = node->src[0];
    const float e = expf(*(const float *)node->src[1]);
    const float dy = *(const float *)node->src[2];
    const float two_n = (float)(2 * (int64_t)n);
    float *lse_col = node->scratch, *lse_row = lse_col + n, *part = lse_row + n;
    const grad_row_fn gr = grad_row[node->simd];
    float *dst = node->dst;
    const bool par = node->threads > 1 && (int64_t)n * n >= 2 * PCLIP__CPU_PAR_MIN;
#pragma omp parallel num_threads(node->threads) if (par)
    {
        stats_fast(node, s, e, n, lse_col, lse_row, part);
        /* the implicit barrier of the row loop: every stat is ready, and
         * part (the column sums) is free again */
#pragma omp for schedule(static)
        for (int32_t i = 0; i < n; i++)
            part[i] = gr(s + (size_t)i * n, e, n, i, lse_row[i], lse_col, dy, two_n, which,
                         which == 0 ? dst + (size_t)i * n : NULL);
    }
    if (which == 1) {
        float sum = 0.0f;
        for (int32_t i = 0; i < n; i++) sum += part[i];
        dst[0] = sum;
    }
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

/* lse_col[j] for j in [j0, j1): the maximum over rows, then the sum of
 * e^(L - max) with rows in order, lane j holding column j. */
static void SIMD(col_stats)(const float *s, float e, int32_t n, int32_t j0, int32_t j1,
                            float *lse_col, float *colsum) {
    const vf ve = vset1(e);
    for (int32_t j = j0; j < j1; j++) lse_col[j] = -INFINITY, colsum[j] = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        const float *row = s + (size_t)i * n;
        int32_t j = j0;
        for (; j + VL <= j1; j += VL)
            vstore(lse_col + j, vmax(vmul(ve, vload(row + j)), vload(lse_col + j)));
        if (j < j1) {
            const vm m = vtail(j1 - j);
            vstore_m(lse_col + j, m, vmax(vmul(ve, vload_m(row + j, m)), vload_m(lse_col + j, m)));
        }
    }
    for (int32_t i = 0; i < n; i++) {
        const float *row = s + (size_t)i * n;
        int32_t j = j0;
        for (; j + VL <= j1; j += VL) {
            const vf x = vmul(ve, vload(row + j));
            vstore(colsum + j, vadd(vload(colsum + j), vexp(vsub(x, vload(lse_col + j)))));
        }
        if (j < j1) {
            const vm m = vtail(j1 - j);
            const vf x = vmul(ve, vload_m(row + j, m));
            const vf t = vexp(vsub(x, vload_m(lse_col + j, m)));
            vstore_m(colsum + j, m, vadd(vload_m(colsum + j, m), t));
        }
    }
    for (int32_t j = j0; j < j1; j++) lse_col[j] = lse_col[j] + logf(colsum[j]);
}

/* max + log(sum e^(L - max)) of one row */
static float SIMD(row_lse)(const float *row, float e, int32_t n) {
    const vf ve = vset1(e), ninf = vset1(-INFINITY);
    vf mx = ninf;
    int32_t j = 0;
    for (; j + VL <= n; j += VL) mx = vmax(vmul(ve, vload(row + j)), mx);
    if (j < n) {
        const vm m = vtail(n - j);
        mx = vmax(vsel_m(m, vmul(ve, vload_m(row + j, m)), ninf), mx);
    }
    const float mxs = vhmax(mx);
    const vf vmx = vset1(mxs);
    vf sum = vzero();
    for (j = 0; j + VL <= n; j += VL) sum = vadd(sum, vexp(vsub(vmul(ve, vload(row + j)), vmx)));
    if (j < n) {
        const vm m = vtail(n - j);
        sum = vadd(sum, vzero_m(m, vexp(vsub(vmul(ve, vload_m(row + j, m)), vmx))));
    }
    return mxs + logf(vsum(sum));
}

/* 2 at index VL, 0 elsewhere: vload(SIMD(two_at) + VL - k) has 2 in lane k */
static const float SIMD(two_at)[2 * VL] = {[VL] = 2.0f};

/* One row of dL (which 0: e dL into dst) or its sum of dL L (which 1, returned). */
static float SIMD(grad_row)(const float *row, float e, int32_t n, int32_t i, float lse_row,
                            const float *lse_col, float dy, float two_n, int32_t which,
                            float *dst) {
    const vf ve = vset1(e), vr = vset1(lse_row), vdy = vset1(dy), v2n = vset1(two_n);
    vf acc = vzero();
    for (int32_t j = 0; j < n; j += VL) {
        const vm m = vtail(n - j);
        const bool full = j + VL <= n;
        const vf x = vmul(ve, full ? vload(row + j) : vload_m(row + j, m));
        const vf c = full ? vload(lse_col + j) : vload_m(lse_col + j, m);
        vf g = vadd(vexp(vsub(x, vr)), vexp(vsub(x, c)));
        if (i >= j && i < j + VL) g = vsub(g, vload(SIMD(two_at) + VL - (i - j)));
        const vf dl = vdiv(vmul(vdy, g), v2n);
        if (which == 0) {
            if (full)
                vstore(dst + j, vmul(ve, dl));
            else
                vstore_m(dst + j, m, vmul(ve, dl));
        } else {
            acc = vadd(acc, vzero_m(m, vmul(dl, x)));
        }
    }
    return vsum(acc);
}

#endif
