/* y = act(a @ op(b) + bias) + residual
 *
 * a [batch, M, K]; b [batch or 1, N, K] with trans_b (a weight as nn.Linear
 * stores it) or [batch or 1, K, N]; bias [N] and residual [batch, M, N] are
 * optional (src[2], src[3] may be NULL); act is applied before the residual.
 * The reference is the plain triple loop with a float accumulator.
 *
 * The fast path is a oneDNN matmul primitive made at compile time
 * (cpu_dnnl.c), with bias, activation and residual fused into it, except for
 * one case where our own kernel measures faster: a weight packed by oneDNN
 * in its BA16a64b layout (panels of 64 columns, K rows of 64 floats each),
 * a few dozen rows of a (ViT-B/32 at batch 1 is M = 50) and AVX-512. There
 * every weight is read once per call, from memory rather than cache, and
 * what decides the speed is keeping that stream ahead of the FMAs: the
 * kernel walks each thread's panels in K chunks that stay in L2, and
 * prefetches the next chunk while it computes on this one (bench/RESULTS.md:
 * 416-457 GFLOP/s against oneDNN's 382-388 on such streamed weights). */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include <omp.h>

#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_matmul_ref(const pclip__cpu_node *n) {
    const pclip__matmul_params *p = &n->t->params.matmul;
    const int64_t M = p->M, N = p->N, K = p->K;
    const float *bias = n->src[2];
    for (int64_t bi = 0; bi < p->batch; bi++) {
        const float *a = (const float *)n->src[0] + bi * M * K;
        const float *b = (const float *)n->src[1] + bi * p->b_batch_stride;
        const float *res = n->src[3] ? (const float *)n->src[3] + bi * M * N : NULL;
        float *y = n->dst + bi * M * N;
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N; j++) {
                float acc = 0.0f;
                for (int64_t k = 0; k < K; k++)
                    acc += a[m * K + k] * (p->trans_b ? b[j * K + k] : b[k * N + j]);
                if (bias) acc += bias[j];
                acc = pclip__cpu_act_ref_element(p->act, acc);
                if (res) acc += res[m * N + j];
                y[m * N + j] = acc;
            }
    }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

#define PCLIP_SIMD_FILE "matmul.c"
#include "simd_foreach.h"

bool pclip__cpu_panels_fit(pclip__cpu_simd simd, int64_t M, int64_t N, int64_t K, int32_t threads) {
    return simd == PCLIP__CPU_SIMD_AVX512 && M >= PCLIP__CPU_PANEL_M_MIN &&
           M <= PCLIP__CPU_PANEL_M_MAX && N % PCLIP__CPU_PANEL == 0 && K % 16 == 0 &&
           N / PCLIP__CPU_PANEL >= 2 * (int64_t)threads;
}

pclip_status pclip__cpu_matmul_fast(const pclip__cpu_node *n) {
    const float *panels = pclip__cpu_matmul_panels(n->mm);
    if (!panels) return pclip__cpu_matmul_execute(n);
    const pclip__matmul_params *p = &n->t->params.matmul;
    const int64_t count = p->N / PCLIP__CPU_PANEL;
    /* contiguous runs of panels per thread, so that each knows what it
     * reads next */
#pragma omp parallel num_threads(n->threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        panels_avx512(p, n->src[0], panels, n->src[2], n->src[3], n->dst, count * t / nt,
                      count * (t + 1) / nt);
    }
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */
#if PCLIP_SIMD_LEVEL == 2

#include "act_vec.h"

#define KC 256 /* K rows of a panel per chunk: 64 KiB, kept in L2 */
#define MR 6   /* rows of a per block: 24 accumulators, 4 loads of w per k */

/* c[mr, 64] (+)= a[mr, k0..k0+kc) w[kc, 64]; on the last chunk, the
 * epilogue: + bias, act, + residual. Meanwhile the pf_lines lines (16
 * floats) from pf on, part of the next chunk, are prefetched, per_k per k. */
static inline __attribute__((always_inline)) void
block_avx512(const int mr, const float *a, int64_t lda, const float *w, int64_t kc, float *c,
             int64_t ldc, bool first, bool last, const float *bias, int32_t act, const float *res,
             const float *pf, int64_t pf_lines, int64_t per_k) {
    __m512 acc[MR][4];
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < 4; j++)
            acc[r][j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + r * ldc + 16 * j);
    for (int64_t k = 0; k < kc; k++) {
        const float *wr = w + k * PCLIP__CPU_PANEL;
        const __m512 b0 = _mm512_load_ps(wr), b1 = _mm512_load_ps(wr + 16);
        const __m512 b2 = _mm512_load_ps(wr + 32), b3 = _mm512_load_ps(wr + 48);
        if (k * per_k < pf_lines)
            for (int64_t l = k * per_k; l < (k + 1) * per_k && l < pf_lines; l++)
                _mm_prefetch((const char *)(pf + l * 16), _MM_HINT_T1);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(x, b2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(x, b3, acc[r][3]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < 4; j++) {
            __m512 v = acc[r][j];
            if (last) {
                if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + 16 * j));
                v = SIMD(act_vec)(act, v);
                if (res) v = _mm512_add_ps(v, _mm512_loadu_ps(res + r * ldc + 16 * j));
            }
            _mm512_storeu_ps(c + r * ldc + 16 * j, v);
        }
}

/* Panels [p0, p1) of y = act(a w + bias) + residual, w packed BA16a64b. */
static void panels_avx512(const pclip__matmul_params *p, const float *a, const float *w,
                          const float *bias, const float *res, float *y, int64_t p0, int64_t p1) {
    const int64_t M = p->M, N = p->N, K = p->K, P = PCLIP__CPU_PANEL;
    const int64_t blocks = (M + MR - 1) / MR;
    for (int64_t pi = p0; pi < p1; pi++) {
        const float *wp = w + pi * K * P;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = K - k0 < KC ? K - k0 : KC;
            /* the chunk after this one: the panel's next, or the next panel's first */
            const float *next = NULL;
            int64_t next_rows = 0;
            if (k0 + kc < K)
                next = wp + (k0 + kc) * P, next_rows = K - k0 - kc < KC ? K - k0 - kc : KC;
            else if (pi + 1 < p1)
                next = w + (pi + 1) * K * P, next_rows = K < KC ? K : KC;
            /* its lines (16 floats), spread over every k of every block */
            const int64_t lines = next_rows * P / 16, steps = blocks * kc;
            const int64_t per_k = (lines + steps - 1) / steps;
            int64_t sent = 0;
            for (int64_t b = 0; b < blocks; b++) {
                const int64_t m0 = b * MR;
                const int mr = M - m0 < MR ? (int)(M - m0) : MR;
                const int64_t left = next ? lines - sent : 0;
                const int64_t pf_lines = left < kc * per_k ? left : kc * per_k;
                const float *pf = next ? next + sent * 16 : NULL;
                const float *ar = a + m0 * K + k0, *wr = wp + k0 * P;
                float *c = y + m0 * N + pi * P;
                const float *bp = bias ? bias + pi * P : NULL;
                const float *rp = res ? res + m0 * N + pi * P : NULL;
                const bool first = k0 == 0, last = k0 + kc == K;
                /* the row count as a constant, so each variant is unrolled */
                switch (mr) {
#define BLOCK(R)                                                                                   \
    case R:                                                                                        \
        block_avx512(R, ar, K, wr, kc, c, N, first, last, bp, p->act, rp, pf, pf_lines, per_k);    \
        break;
                    BLOCK(1) BLOCK(2) BLOCK(3) BLOCK(4) BLOCK(5) BLOCK(6)
#undef BLOCK
                }
                sent += pf_lines;
            }
        }
    }
}

#undef KC
#undef MR

#endif
#endif
