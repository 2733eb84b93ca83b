/* y = softmax(q k^T * scale + mask) v, per sequence and head
 *
 * As Hugging Face's CLIPAttention: q = q_proj(x) * head_dim^-0.5, scores =
 * q k^T (+ -inf above the diagonal when causal), softmax in fp32, y = p v,
 * heads side by side. qkv is [batch * seq, 3 * heads * head_dim] with the q,
 * k and v blocks next to each other; head h uses columns h*D .. h*D+D-1 of
 * each block. The whole score matrix is never stored: one row at a time.
 *
 * Fast path, per (sequence, head) on one thread: the head's keys are packed
 * transposed (kt [D, seq]) so VL scores come out of D vector FMAs, then an
 * exp/sum pass and p v accumulated a row of v at a time. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include <omp.h>

#include "cpu.h"

/* per-thread scratch of the fast path, in floats: kt [D, Sp], scores [Sp],
 * q * scale [Dp], each rounded up to 16 lanes (the widest level) */
static int64_t fast_floats(const pclip__attention_params *p) {
    int64_t sp = (p->seq + 15) / 16 * 16, dp = (p->head_dim + 15) / 16 * 16;
    return p->head_dim * sp + sp + dp;
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

typedef void (*attention_head_fn)(const float *qkv, float *y, const pclip__attention_params *p,
                                  int64_t b, int64_t h, float *ws);
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
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(dynamic, 1) if (work >= PCLIP__CPU_PAR_MIN)
    for (int64_t bh = 0; bh < pairs; bh++)
        fn(n->src[0], n->dst, p, bh / p->heads, bh % p->heads,
           scratch + (int64_t)omp_get_thread_num() * per_thread);
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

static void SIMD(attention_head)(const float *qkv, float *y, const pclip__attention_params *p,
                                 int64_t b, int64_t h, float *ws) {
    const int64_t S = p->seq, H = p->heads, D = p->head_dim, ld = 3 * H * D;
    const int64_t sp = (S + 15) / 16 * 16;
    float *kt = ws;          /* [D, sp]: this head's keys, transposed, zero padded */
    float *sc = kt + D * sp; /* [sp]: one row of scores, then of e^(s - max) */
    float *qs = sc + sp;     /* [D rounded up to 16]: q * scale */
    const float *q0 = qkv + b * S * ld + h * D, *k0 = q0 + H * D, *v0 = q0 + 2 * H * D;
    for (int64_t d = 0; d < D; d++) {
        for (int64_t j = 0; j < S; j++) kt[d * sp + j] = k0[j * ld + d];
        for (int64_t j = S; j < sp; j++) kt[d * sp + j] = 0.0f;
    }
    const vf ninf = vset1(-INFINITY);
    for (int64_t i = 0; i < S; i++) {
        const float *q = q0 + i * ld;
        const int64_t seen = p->causal ? i + 1 : S, blocks = (seen + VL - 1) / VL;
        for (int64_t d = 0; d < D; d++) qs[d] = q[d] * p->scale;
        /* scores, four blocks of VL keys at a time for independent FMA chains */
        int64_t blk = 0;
        for (; blk + 4 <= blocks; blk += 4) {
            vf a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
            const float *kb = kt + blk * VL;
            for (int64_t d = 0; d < D; d++) {
                const vf qd = vset1(qs[d]);
                const float *kr = kb + d * sp;
                a0 = vfma(qd, vload(kr), a0);
                a1 = vfma(qd, vload(kr + VL), a1);
                a2 = vfma(qd, vload(kr + 2 * VL), a2);
                a3 = vfma(qd, vload(kr + 3 * VL), a3);
            }
            vstore(sc + blk * VL, a0);
            vstore(sc + blk * VL + VL, a1);
            vstore(sc + blk * VL + 2 * VL, a2);
            vstore(sc + blk * VL + 3 * VL, a3);
        }
        for (; blk < blocks; blk++) {
            vf a0 = vzero();
            for (int64_t d = 0; d < D; d++)
                a0 = vfma(vset1(qs[d]), vload(kt + d * sp + blk * VL), a0);
            vstore(sc + blk * VL, a0);
        }
        /* softmax over the `seen` keys */
        int64_t j;
        vf mx = ninf;
        for (j = 0; j + VL <= seen; j += VL) mx = vmax(mx, vload(sc + j));
        if (j < seen) mx = vmax(mx, vsel_m(vtail(seen - j), vload(sc + j), ninf));
        const vf max = vset1(vhmax(mx));
        vf acc = vzero();
        for (j = 0; j + VL <= seen; j += VL) {
            vf e = vexp(vsub(vload(sc + j), max));
            vstore(sc + j, e);
            acc = vadd(acc, e);
        }
        if (j < seen) {
            vm m = vtail(seen - j);
            vf e = vzero_m(m, vexp(vsub(vload(sc + j), max)));
            vstore(sc + j, e);
            acc = vadd(acc, e);
        }
        const vf inv = vset1(1.0f / vsum(acc));
        /* y = (e v) / sum, four vectors of the head's columns at a time */
        float *yr = y + (b * S + i) * H * D + h * D;
        for (int64_t d0 = 0; d0 < D; d0 += 4 * VL) {
            const vm m0 = vtail(D - d0), m1 = vtail(D - d0 - VL > 0 ? D - d0 - VL : 0);
            const vm m2 = vtail(D - d0 - 2 * VL > 0 ? D - d0 - 2 * VL : 0);
            const vm m3 = vtail(D - d0 - 3 * VL > 0 ? D - d0 - 3 * VL : 0);
            vf o0 = vzero(), o1 = vzero(), o2 = vzero(), o3 = vzero();
            for (int64_t k = 0; k < seen; k++) {
                const vf pk = vset1(sc[k]);
                const float *vr = v0 + k * ld + d0;
                o0 = vfma(pk, vload_m(vr, m0), o0);
                o1 = vfma(pk, vload_m(vr + VL, m1), o1);
                o2 = vfma(pk, vload_m(vr + 2 * VL, m2), o2);
                o3 = vfma(pk, vload_m(vr + 3 * VL, m3), o3);
            }
            vstore_m(yr + d0, m0, vmul(o0, inv));
            vstore_m(yr + d0 + VL, m1, vmul(o1, inv));
            vstore_m(yr + d0 + 2 * VL, m2, vmul(o2, inv));
            vstore_m(yr + d0 + 3 * VL, m3, vmul(o3, inv));
        }
    }
}

#endif
