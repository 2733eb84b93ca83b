/* y = softmax(q k^T * scale + mask) v, per sequence and head
 *
 * As Hugging Face's CLIPAttention: q = q_proj(x) * head_dim^-0.5, scores =
 * q k^T (+ -inf above the diagonal when causal), softmax in fp32, y = p v,
 * heads side by side. qkv is [batch * seq, 3 * heads * head_dim] with the q,
 * k and v blocks next to each other; head h uses columns h*D .. h*D+D-1 of
 * each block. The whole score matrix is never stored: one row at a time.
 *
 * Fast path, per (sequence, head) on one thread: the head's keys are packed
 * transposed (kt [D, seq]) so VL scores come out of D vector FMAs; a few
 * query rows go together (scores, an exp/sum pass per row, then p v
 * accumulated a row of v at a time for all of them). At bf16, when only
 * bf16 matmuls read the result (n->bf16_dst), it is written as bf16: the
 * products, softmax and its sums stay fp32, each output rounded once. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include <omp.h>

#include "cpu.h"

/* Query rows the widest SIMD pass handles together (see the pass). */
#define ATTN_ROWS 4

/* per-thread scratch of the fast path, in floats: kt [D, Sp], scores
 * [rows, Sp], q * scale [rows, Dp], each rounded up to 16 lanes (the widest
 * level) */
static int64_t fast_floats(const pclip__attention_params *p) {
    int64_t sp = (p->seq + 15) / 16 * 16, dp = (p->head_dim + 15) / 16 * 16;
    return p->head_dim * sp + ATTN_ROWS * (sp + dp);
}

size_t pclip__cpu_attention_scratch(const pclip__attention_params *p, bool fast, int32_t threads) {
    if (!fast) return (size_t)p->seq * sizeof(float);
    return (size_t)threads * (size_t)fast_floats(p) * sizeof(float);
}

/* ---- reference ---- */

pclip_status pclip__cpu_attention_ref(const pclip__cpu_node *n) {
    const pclip__attention_params *p = &n->t->params.attention;
    const int64_t S = p->seq, H = p->heads, D = p->head_dim;
    const int64_t ld = 3 * H * D; /* a row of qkv */
    float *score = n->scratch;    /* [S] */
    PCLIP_ASSERT(n->scratch_bytes >= (size_t)S * sizeof *score);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < S; i++) {
                const float *q = (const float *)n->src[0] + (b * S + i) * ld + h * D;
                int64_t seen = p->causal ? i + 1 : S;
                float max = -INFINITY;
                for (int64_t j = 0; j < seen; j++) {
                    const float *k = (const float *)n->src[0] + (b * S + j) * ld + H * D + h * D;
                    float s = 0.0f;
                    for (int64_t d = 0; d < D; d++) s += (q[d] * p->scale) * k[d];
                    score[j] = s;
                    if (s > max) max = s;
                }
                float sum = 0.0f;
                for (int64_t j = 0; j < seen; j++) {
                    score[j] = expf(score[j] - max);
                    sum += score[j];
                }
                for (int64_t j = 0; j < seen; j++) score[j] /= sum;
                float *y = n->dst + (b * S + i) * H * D + h * D;
                for (int64_t d = 0; d < D; d++) {
                    float acc = 0.0f;
                    for (int64_t j = 0; j < seen; j++) {
                        const float *v =
                            (const float *)n->src[0] + (b * S + j) * ld + 2 * H * D + h * D;
                        acc += score[j] * v[d];
                    }
                    y[d] = acc;
                }
            }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

#define PCLIP_SIMD_FILE "attention.c"
#include "simd_foreach.h"

typedef void (*attention_head_fn)(const float *qkv, float *y, uint16_t *yb,
                                  const pclip__attention_params *p, int64_t b, int64_t h,
                                  const float *next, float *ws);
static const attention_head_fn attention_head[] = PCLIP_SIMD_VARIANTS(attention_head);
_Static_assert(sizeof attention_head / sizeof attention_head[0] == PCLIP__CPU_SIMD_COUNT,
               "one per level");

pclip_status pclip__cpu_attention_fast(const pclip__cpu_node *n) {
    const pclip__attention_params *p = &n->t->params.attention;
    const attention_head_fn fn = attention_head[n->simd];
    const int64_t pairs = (int64_t)p->batch * p->heads, per_thread = fast_floats(p);
    const int64_t work = pairs * p->seq * p->seq * p->head_dim;
    float *scratch = n->scratch;
    PCLIP_ASSERT(n->scratch_bytes >= (size_t)(n->threads * per_thread) * sizeof *scratch);
    const float *qkv = n->src[0];
    const int64_t ld = 3 * (int64_t)p->heads * p->head_dim;
    uint16_t *yb = n->bf16_dst ? (uint16_t *)(void *)n->dst : NULL;
    /* Contiguous runs of (sequence, head) pairs per thread, so that each
     * knows the pair it does next and prefetches its strided rows. */
#pragma omp parallel num_threads(n->threads) if (work >= PCLIP__CPU_PAR_MIN)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t lo = pairs * t / nt, hi = pairs * (t + 1) / nt;
        for (int64_t bh = lo; bh < hi; bh++) {
            const int64_t nb = (bh + 1) / p->heads, nh = (bh + 1) % p->heads;
            const float *next = bh + 1 < hi ? qkv + nb * p->seq * ld + nh * p->head_dim : NULL;
            fn(qkv, yb ? NULL : n->dst, yb, p, bh / p->heads, bh % p->heads, next,
               scratch + t * per_thread);
        }
    }
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

#include "bf16_vec.h"

/* Query rows per pass: their scores share each load of kt and their outputs
 * each load of v, and R * 4 independent FMA chains keep both FMA units busy
 * (AVX-512: 16 accumulators of 32 registers; AVX2: 8 of 16). */
#define R (VL == 16 ? ATTN_ROWS : 2)

#if PCLIP_SIMD_LEVEL == 2
/* r[i] becomes column i of the 16 x 16 block whose rows were r[0..15]. */
static inline void transpose16_avx512(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xDD);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    }
}
#endif

/* kt [D, sp] = the head's keys k0 (rows of stride ld) transposed, zero past S. */
static void SIMD(keys_transposed)(const float *k0, int64_t ld, int64_t S, int64_t D, int64_t sp,
                                  float *kt) {
#if PCLIP_SIMD_LEVEL == 2 /* 16 x 16 blocks in registers */
    for (int64_t j0 = 0; j0 < sp; j0 += 16)
        for (int64_t d0 = 0; d0 < D; d0 += 16) {
            const __mmask16 dm = vtail(D - d0);
            __m512 r[16];
            for (int64_t i = 0; i < 16; i++)
                r[i] = j0 + i < S ? _mm512_maskz_loadu_ps(dm, k0 + (j0 + i) * ld + d0)
                                  : _mm512_setzero_ps();
            transpose16_avx512(r);
            const int64_t dn = D - d0 < 16 ? D - d0 : 16;
            for (int64_t i = 0; i < dn; i++) _mm512_storeu_ps(kt + (d0 + i) * sp + j0, r[i]);
        }
#else
    for (int64_t d = 0; d < D; d++) {
        for (int64_t j = 0; j < S; j++) kt[d * sp + j] = k0[j * ld + d];
        for (int64_t j = S; j < sp; j++) kt[d * sp + j] = 0.0f;
    }
#endif
}

/* `next`: the q columns of the pair this thread does next, or NULL: its q,
 * k and v rows (one stride apart each, so the hardware prefetchers miss
 * them) are prefetched a few rows per pass of this one. The result goes to
 * y, or as bf16 to yb when yb is not NULL. */
static void SIMD(attention_head)(const float *qkv, float *y, uint16_t *yb,
                                 const pclip__attention_params *p, int64_t b, int64_t h,
                                 const float *next, float *ws) {
    const int64_t S = p->seq, H = p->heads, D = p->head_dim, ld = 3 * H * D;
    const int64_t sp = (S + 15) / 16 * 16, dp = (D + 15) / 16 * 16;
    float *kt = ws;          /* [D, sp]: this head's keys, transposed, zero padded */
    float *sc = kt + D * sp; /* [R, sp]: scores, then e^(s - max), of R query rows */
    float *qs = sc + R * sp; /* [R, dp]: q * scale */
    const float *q0 = qkv + b * S * ld + h * D, *k0 = q0 + H * D, *v0 = q0 + 2 * H * D;
    SIMD(keys_transposed)(k0, ld, S, D, sp, kt);
    const vf ninf = vset1(-INFINITY);
    /* the next pair's rows in the order it reads them: keys (all at once,
     * first), values, queries; 3 S row slices spread over the row groups */
    const int64_t groups = (S + R - 1) / R;
    for (int64_t i0 = 0; i0 < S; i0 += R) {
        const int64_t nr = S - i0 < R ? S - i0 : R;
        if (next) {
            const int64_t g = i0 / R, s0 = 3 * S * g / groups, s1 = 3 * S * (g + 1) / groups;
            for (int64_t s = s0; s < s1; s++) {
                const int64_t part = s / S, row = s % S;
                const float *src = next + row * ld +
                                   (part == 0   ? H * D
                                    : part == 1 ? 2 * H * D
                                                : 0);
                for (int64_t d = 0; d < D; d += 16) __builtin_prefetch(src + d);
            }
        }
        /* rows past the end repeat the last one, so every lane holds a number */
        for (int64_t r = 0; r < R; r++) {
            const float *q = q0 + (r < nr ? i0 + r : i0 + nr - 1) * ld;
            for (int64_t d = 0; d < D; d++) qs[r * dp + d] = q[d] * p->scale;
        }
        /* keys any of the rows sees; a row's own limit is applied below */
        const int64_t seen_all = p->causal ? i0 + nr : S, blocks = (seen_all + VL - 1) / VL;
        int64_t blk = 0;
        for (; blk + 4 <= blocks; blk += 4) {
            vf a[R][4];
            for (int r = 0; r < R; r++) a[r][0] = a[r][1] = a[r][2] = a[r][3] = vzero();
            const float *kb = kt + blk * VL;
            for (int64_t d = 0; d < D; d++) {
                const float *kr = kb + d * sp;
                const vf c0 = vload(kr), c1 = vload(kr + VL), c2 = vload(kr + 2 * VL);
                const vf c3 = vload(kr + 3 * VL);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    const vf qd = vset1(qs[r * dp + d]);
                    a[r][0] = vfma(qd, c0, a[r][0]);
                    a[r][1] = vfma(qd, c1, a[r][1]);
                    a[r][2] = vfma(qd, c2, a[r][2]);
                    a[r][3] = vfma(qd, c3, a[r][3]);
                }
            }
            for (int r = 0; r < R; r++)
                for (int c = 0; c < 4; c++) vstore(sc + r * sp + (blk + c) * VL, a[r][c]);
        }
        for (; blk < blocks; blk++) {
            vf a[R];
            for (int r = 0; r < R; r++) a[r] = vzero();
            for (int64_t d = 0; d < D; d++) {
                const vf c0 = vload(kt + d * sp + blk * VL);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) a[r] = vfma(vset1(qs[r * dp + d]), c0, a[r]);
            }
            for (int r = 0; r < R; r++) vstore(sc + r * sp + blk * VL, a[r]);
        }
        /* softmax of each row over its own keys; keys it does not see get 0,
         * so the rows can share the p v loop up to seen_all */
        float inv[R];
        for (int64_t r = 0; r < nr; r++) {
            float *sr = sc + r * sp;
            const int64_t seen = p->causal ? i0 + r + 1 : S;
            int64_t j;
            vf mx = ninf;
            for (j = 0; j + VL <= seen; j += VL) mx = vmax(mx, vload(sr + j));
            if (j < seen) mx = vmax(mx, vsel_m(vtail(seen - j), vload(sr + j), ninf));
            const vf max = vset1(vhmax(mx));
            vf acc = vzero();
            for (j = 0; j + VL <= seen; j += VL) {
                vf e = vexp(vsub(vload(sr + j), max));
                vstore(sr + j, e);
                acc = vadd(acc, e);
            }
            if (j < seen) {
                vm m = vtail(seen - j);
                vf e = vzero_m(m, vexp(vsub(vload(sr + j), max)));
                vstore(sr + j, e);
                acc = vadd(acc, e);
            }
            for (j = seen; j < seen_all; j++) sr[j] = 0.0f;
            inv[r] = 1.0f / vsum(acc);
        }
        for (int64_t r = nr; r < R; r++) {
            for (int64_t j = 0; j < seen_all; j++) sc[r * sp + j] = 0.0f;
            inv[r] = 0.0f;
        }
        /* y = (e v) / sum, four vectors of the head's columns at a time */
        for (int64_t d0 = 0; d0 < D; d0 += 4 * VL) {
            const vm m0 = vtail(D - d0), m1 = vtail(D - d0 - VL > 0 ? D - d0 - VL : 0);
            const vm m2 = vtail(D - d0 - 2 * VL > 0 ? D - d0 - 2 * VL : 0);
            const vm m3 = vtail(D - d0 - 3 * VL > 0 ? D - d0 - 3 * VL : 0);
            vf o[R][4];
            for (int r = 0; r < R; r++) o[r][0] = o[r][1] = o[r][2] = o[r][3] = vzero();
            for (int64_t k = 0; k < seen_all; k++) {
                const float *vr = v0 + k * ld + d0;
                const vf c0 = vload_m(vr, m0), c1 = vload_m(vr + VL, m1);
                const vf c2 = vload_m(vr + 2 * VL, m2), c3 = vload_m(vr + 3 * VL, m3);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    const vf pk = vset1(sc[r * sp + k]);
                    o[r][0] = vfma(pk, c0, o[r][0]);
                    o[r][1] = vfma(pk, c1, o[r][1]);
                    o[r][2] = vfma(pk, c2, o[r][2]);
                    o[r][3] = vfma(pk, c3, o[r][3]);
                }
            }
            for (int64_t r = 0; r < nr && yb; r++) {
                uint16_t *yr = yb + (b * S + i0 + r) * H * D + h * D + d0;
                const vf iv = vset1(inv[r]);
                for (int c = 0; c < 4; c++)
                    if (D - d0 - c * VL > 0)
                        SIMD(vstore_bf16_n)(yr + c * VL, D - d0 - c * VL, vmul(o[r][c], iv));
            }
            for (int64_t r = 0; r < nr && !yb; r++) {
                float *yr = y + (b * S + i0 + r) * H * D + h * D + d0;
                const vf iv = vset1(inv[r]);
                vstore_m(yr, m0, vmul(o[r][0], iv));
                vstore_m(yr + VL, m1, vmul(o[r][1], iv));
                vstore_m(yr + 2 * VL, m2, vmul(o[r][2], iv));
                vstore_m(yr + 3 * VL, m3, vmul(o[r][3], iv));
            }
        }
    }
}

#undef R

#endif
