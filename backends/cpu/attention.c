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
 * accumulated a row of v at a time for all of them), their accumulators
 * in registers.
 *
 * At precision bf16 (n->bf16) the two products take bf16 operands: q *
 * scale, the keys, the values and the probabilities e^(s - max) are each
 * rounded to bf16 once (round to nearest even, pclip__cpu_bf16_round), the
 * products are summed in fp32; the softmax max, exp and sum (of the rounded
 * probabilities) and the final division stay fp32. With AVX512_BF16 at the
 * AVX-512 level the products are VDPBF16PS (keys packed as pairs of
 * head_dim per key, values as pairs of keys per column); at the other
 * levels (PORTCLIP_CPU_SIMD) the same rounded operands go through fp32 FMAs,
 * so that every level agrees up to the order of the fp32 sums. When only
 * bf16 matmuls read the result (n->bf16_dst), it is written as bf16, each
 * output rounded once. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include <omp.h>
#include <string.h>

#include "cpu.h"

/* Query rows the widest SIMD pass handles together (see the pass): 5 fills
 * the 10 groups of a 50-token sequence exactly. */
#define ATTN_ROWS 5

/* per-thread scratch of the fast path, in floats: the packed keys [D, Sp],
 * the packed values at bf16 [Sp, Dp], scores [rows, Sp], bf16
 * probabilities [rows, Sp] (half used), q * scale [rows, Dp], with seq and
 * head_dim rounded up to 16 lanes (Sp, Dp: the widest level) */
static int64_t fast_floats(const pclip__attention_params *p) {
    int64_t sp = (p->seq + 15) / 16 * 16, dp = (p->head_dim + 15) / 16 * 16;
    return p->head_dim * sp + sp * dp + ATTN_ROWS * (2 * sp + dp);
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
                                  const float *next, float *ws, bool emulate);
static const attention_head_fn attention_head[] = PCLIP_SIMD_VARIANTS(attention_head);
_Static_assert(sizeof attention_head / sizeof attention_head[0] == PCLIP__CPU_SIMD_COUNT,
               "one per level");

/* Whether this CPU runs VDPBF16PS (AVX512_BF16). */
static bool cpu_has_avx512bf16(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

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
    /* precision bf16: VDPBF16PS where the level and the CPU have it, else
     * the same rounded operands through fp32 FMAs */
    const bool native = n->bf16 && n->simd == PCLIP__CPU_SIMD_AVX512 && cpu_has_avx512bf16();
    /* Contiguous runs of (sequence, head) pairs per thread, so that each
     * knows the pair it does next and prefetches its strided rows. */
#pragma omp parallel num_threads(n->threads) if (work >= PCLIP__CPU_PAR_MIN)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t lo = pairs * t / nt, hi = pairs * (t + 1) / nt;
        for (int64_t bh = lo; bh < hi; bh++) {
            const int64_t nb = (bh + 1) / p->heads, nh = (bh + 1) % p->heads;
            const float *next = bh + 1 < hi ? qkv + nb * p->seq * ld + nh * p->head_dim : NULL;
            float *y = yb ? NULL : n->dst, *ws = scratch + t * per_thread;
#if defined(__x86_64__)
            if (native)
                attention_head_bf16_avx512(qkv, y, yb, p, bh / p->heads, bh % p->heads, next, ws);
            else
#endif
                fn(qkv, y, yb, p, bh / p->heads, bh % p->heads, next, ws, n->bf16);
        }
    }
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

#include "bf16_vec.h"

/* Query rows per pass: their scores share each load of kt and their outputs
 * each load of v, and R * 4 independent FMA chains keep both FMA units busy
 * (AVX-512: 20 accumulators and 4 loads of 32 registers; AVX2: 8 of 16). */
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

/* kt [D, sp] = the head's keys k0 (rows of stride ld) transposed, zero past
 * S; with rnd, each rounded to bf16 (kept as fp32). */
static void SIMD(keys_transposed)(const float *k0, int64_t ld, int64_t S, int64_t D, int64_t sp,
                                  bool rnd, float *kt) {
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
            for (int64_t i = 0; i < dn; i++)
                _mm512_storeu_ps(kt + (d0 + i) * sp + j0, rnd ? SIMD(vround_bf16)(r[i]) : r[i]);
        }
#else
    for (int64_t d = 0; d < D; d++) {
        for (int64_t j = 0; j < S; j++) kt[d * sp + j] = k0[j * ld + d];
        for (int64_t j = S; j < sp; j++) kt[d * sp + j] = 0.0f;
        for (int64_t j = 0; rnd && j < sp; j += VL)
            vstore(kt + d * sp + j, SIMD(vround_bf16)(vload(kt + d * sp + j)));
    }
#endif
}

/* Prefetches part g of `groups` of the rows of the pair a thread does next
 * (`next`: its q columns): its keys (all at once, first), values, queries,
 * in the order it reads them; 3 S row slices spread over the row groups. */
static inline void SIMD(prefetch_next)(const float *next, int64_t S, int64_t HD, int64_t D,
                                       int64_t ld, int64_t g, int64_t groups) {
    const int64_t s0 = 3 * S * g / groups, s1 = 3 * S * (g + 1) / groups;
    for (int64_t s = s0; s < s1; s++) {
        const int64_t part = s / S, row = s % S;
        const float *src = next + row * ld + (part == 0 ? HD : part == 1 ? 2 * HD : 0);
        for (int64_t d = 0; d < D; d += 16) __builtin_prefetch(src + d);
    }
}

/* Softmax of rows 0 .. nr-1 of sc [R, sp] (row r holds the scores of query
 * i0 + r): each becomes e^(s - max) over the keys its row sees, and 0 past
 * them up to `end`, so that the rows can share the p v loop; inv[r] = 1 /
 * the sum. With rnd each e is rounded to bf16 first (the sum is of the
 * rounded values), for bf16 products; with pb those bf16 values go to pb
 * [R, sp] instead of sc. Rows nr .. R-1 get zeros and inv 0. */
static inline void SIMD(softmax_rows)(float *sc, uint16_t *pb, int64_t sp, int64_t nr, int64_t i0,
                                      bool causal, int64_t S, int64_t end, bool rnd, float *inv) {
    const vf ninf = vset1(-INFINITY);
    for (int64_t r = 0; r < R; r++) {
        float *sr = sc + r * sp;
        uint16_t *br = pb ? pb + r * sp : NULL;
        if (r >= nr) {
            for (int64_t j = 0; j < end; j++)
                if (br)
                    br[j] = 0;
                else
                    sr[j] = 0.0f;
            inv[r] = 0.0f;
            continue;
        }
        const int64_t seen = causal ? i0 + r + 1 : S;
        int64_t j;
        vf mx = ninf;
        for (j = 0; j + VL <= seen; j += VL) mx = vmax(mx, vload(sr + j));
        if (j < seen) mx = vmax(mx, vsel_m(vtail(seen - j), vload(sr + j), ninf));
        const vf max = vset1(vhmax(mx));
        vf acc = vzero();
        for (j = 0; j + VL <= seen; j += VL) {
            vf e = vexp(vsub(vload(sr + j), max));
            if (rnd) e = SIMD(vround_bf16)(e);
            if (br)
                SIMD(vstore_bf16)(br + j, e);
            else
                vstore(sr + j, e);
            acc = vadd(acc, e);
        }
        if (j < seen) { /* the lanes past `seen` become 0 (j + VL <= sp) */
            vf e = vzero_m(vtail(seen - j), vexp(vsub(vload(sr + j), max)));
            if (rnd) e = SIMD(vround_bf16)(e);
            if (br)
                SIMD(vstore_bf16)(br + j, e);
            else
                vstore(sr + j, e);
            acc = vadd(acc, e);
        }
        for (j = seen; j < end; j++)
            if (br)
                br[j] = 0;
            else
                sr[j] = 0.0f;
        inv[r] = 1.0f / vsum(acc);
    }
}

/* Rows row0 .. row0 + nr - 1 of the head's result (y or yb at its first
 * column, rows ldy apart), 4 VL columns from d0 (the lanes up to D): o[r] *
 * inv[r], as fp32 to y or as bf16 to yb. */
static inline void SIMD(store_rows)(vf o[R][4], const float *inv, float *y, uint16_t *yb,
                                    int64_t nr, int64_t row0, int64_t ldy, int64_t D, int64_t d0) {
    const int64_t left = D - d0;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (r >= nr) continue;
        const vf iv = vset1(inv[r]);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const int64_t n = left - c * VL;
            if (n <= 0) continue;
            const vf v = vmul(o[r][c], iv);
            if (yb)
                SIMD(vstore_bf16_n)(yb + (row0 + r) * ldy + d0 + c * VL, n, v);
            else
                vstore_m(y + (row0 + r) * ldy + d0 + c * VL, vtail(n), v);
        }
    }
}

/* One (sequence, head) pair with fp32 products, or (emulate) with the
 * products of bf16 operands as precision bf16 has them: q * scale, the keys,
 * the values and the probabilities each rounded to bf16 once, fp32 FMAs.
 * `next`: the q columns of the pair this thread does next, or NULL: its
 * rows (one stride apart each, so the hardware prefetchers miss them) are
 * prefetched a few rows per group of this one. The result goes to y, or as
 * bf16 to yb when yb is not NULL. */
static void SIMD(attention_head)(const float *qkv, float *y, uint16_t *yb,
                                 const pclip__attention_params *p, int64_t b, int64_t h,
                                 const float *next, float *ws, bool emulate) {
    const int64_t S = p->seq, H = p->heads, D = p->head_dim, ld = 3 * H * D;
    const int64_t sp = (S + 15) / 16 * 16, dp = (D + 15) / 16 * 16;
    float *kt = ws;          /* [D, sp]: this head's keys, transposed, zero padded */
    float *vr = kt + D * sp; /* [S, D]: its values rounded to bf16 (emulate only) */
    float *sc = vr + sp * dp; /* [R, sp]: scores, then e^(s - max), of R query rows */
    float *qs = sc + 2 * ATTN_ROWS * sp; /* [R, dp]: q * scale */
    const float *q0 = qkv + b * S * ld + h * D, *k0 = q0 + H * D, *v0 = q0 + 2 * H * D;
    SIMD(keys_transposed)(k0, ld, S, D, sp, emulate, kt);
    const float *vb = v0;
    int64_t ldv = ld;
    if (emulate) {
        for (int64_t j = 0; j < S; j++)
            for (int64_t d = 0; d < D; d += VL) {
                const vm m = vtail(D - d);
                vstore_m(vr + j * D + d, m, SIMD(vround_bf16)(vload_m(v0 + j * ld + d, m)));
            }
        vb = vr;
        ldv = D;
    }
    const vf scale = vset1(p->scale);
    const int64_t groups = (S + R - 1) / R;
    for (int64_t i0 = 0; i0 < S; i0 += R) {
        const int64_t nr = S - i0 < R ? S - i0 : R;
        if (next) SIMD(prefetch_next)(next, S, H * D, D, ld, i0 / R, groups);
        /* rows past the end repeat the last one, so every lane holds a number */
        for (int64_t r = 0; r < R; r++) {
            const float *q = q0 + (r < nr ? i0 + r : i0 + nr - 1) * ld;
            for (int64_t d = 0; d < D; d += VL) {
                const vm m = vtail(D - d);
                vf x = vmul(vload_m(q + d, m), scale);
                vstore_m(qs + r * dp + d, m, emulate ? SIMD(vround_bf16)(x) : x);
            }
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
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    const vf qd = vset1(qs[r * dp + d]);
                    a[r][0] = vfma(qd, c0, a[r][0]);
                    a[r][1] = vfma(qd, c1, a[r][1]);
                    a[r][2] = vfma(qd, c2, a[r][2]);
                    a[r][3] = vfma(qd, c3, a[r][3]);
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; r++)
                for (int c = 0; c < 4; c++) vstore(sc + r * sp + (blk + c) * VL, a[r][c]);
        }
        for (; blk < blocks; blk++) {
            vf a[R];
            for (int r = 0; r < R; r++) a[r] = vzero();
            for (int64_t d = 0; d < D; d++) {
                const vf c0 = vload(kt + d * sp + blk * VL);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) a[r] = vfma(vset1(qs[r * dp + d]), c0, a[r]);
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) vstore(sc + r * sp + blk * VL, a[r]);
        }
        float inv[R];
        SIMD(softmax_rows)(sc, NULL, sp, nr, i0, p->causal, S, seen_all, emulate, inv);
        /* y = (e v) / sum, four vectors of the head's columns at a time */
        for (int64_t d0 = 0; d0 < D; d0 += 4 * VL) {
            const vm m0 = vtail(D - d0), m1 = vtail(D - d0 - VL > 0 ? D - d0 - VL : 0);
            const vm m2 = vtail(D - d0 - 2 * VL > 0 ? D - d0 - 2 * VL : 0);
            const vm m3 = vtail(D - d0 - 3 * VL > 0 ? D - d0 - 3 * VL : 0);
            vf o[R][4];
            for (int r = 0; r < R; r++) o[r][0] = o[r][1] = o[r][2] = o[r][3] = vzero();
            for (int64_t k = 0; k < seen_all; k++) {
                const float *vk = vb + k * ldv + d0;
                const vf c0 = vload_m(vk, m0), c1 = vload_m(vk + VL, m1);
                const vf c2 = vload_m(vk + 2 * VL, m2), c3 = vload_m(vk + 3 * VL, m3);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    const vf pk = vset1(sc[r * sp + k]);
                    o[r][0] = vfma(pk, c0, o[r][0]);
                    o[r][1] = vfma(pk, c1, o[r][1]);
                    o[r][2] = vfma(pk, c2, o[r][2]);
                    o[r][3] = vfma(pk, c3, o[r][3]);
                }
            }
            SIMD(store_rows)(o, inv, y ? y + h * D : NULL, yb ? yb + h * D : NULL, nr, b * S + i0,
                              H * D, D, d0);
        }
    }
}

#if PCLIP_SIMD_LEVEL == 2 && defined(__x86_64__)
/* ---- bf16 products with AVX512_BF16 (VDPBF16PS), precision bf16 ---- */

#if defined(__clang__)
#define BF16_TARGET __attribute__((target("avx512bf16")))
#else
#define BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx2,fma")))
#endif

static inline BF16_TARGET __m512bh as_bh(__m512i x) { return (__m512bh)x; }

/* ktb [Dh, sp] (Dh = (D + 1) / 2): for each pair of head_dim d = 2i, 2i + 1
 * and key j, the 32 bits bf16(k[j][2i]) | bf16(k[j][2i + 1]) << 16 (VNNI
 * order: the even one in the low half), zero past D and past S. */
static BF16_TARGET void keys_bf16_avx512(const float *k0, int64_t ld, int64_t S, int64_t D,
                                         int64_t sp, uint32_t *ktb) {
    const int64_t Dh = (D + 1) / 2;
    for (int64_t j0 = 0; j0 < sp; j0 += 16)
        for (int64_t d0 = 0; d0 < D; d0 += 32) {
            const __mmask16 mlo = vtail(D - d0), mhi = vtail(D - d0 > 16 ? D - d0 - 16 : 0);
            __m512 r[16];
            for (int64_t i = 0; i < 16; i++) {
                if (j0 + i >= S) {
                    r[i] = _mm512_setzero_ps();
                    continue;
                }
                const float *k = k0 + (j0 + i) * ld + d0;
                const __m512 lo = _mm512_maskz_loadu_ps(mlo, k);
                const __m512 hi = _mm512_maskz_loadu_ps(mhi, k + 16);
                r[i] = _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
            }
            transpose16_avx512(r);
            const int64_t pn = Dh - d0 / 2 < 16 ? Dh - d0 / 2 : 16;
            for (int64_t i = 0; i < pn; i++)
                _mm512_storeu_ps((float *)(void *)(ktb + (d0 / 2 + i) * sp + j0), r[i]);
        }
}

/* vb [(S + 1) / 2, dp]: for each pair of keys j = 2i, 2i + 1 and column d,
 * bf16(v[2i][d]) | bf16(v[2i + 1][d]) << 16, zero past D and past S. */
static BF16_TARGET void values_bf16_avx512(const float *v0, int64_t ld, int64_t S, int64_t D,
                                           int64_t dp, uint32_t *vb) {
    for (int64_t kp = 0; kp < (S + 1) / 2; kp++) {
        const float *a = v0 + 2 * kp * ld, *b = 2 * kp + 1 < S ? a + ld : NULL;
        for (int64_t d0 = 0; d0 < dp; d0 += 16) {
            const __mmask16 m = vtail(D - d0 > 0 ? D - d0 : 0);
            const __m512i lo =
                _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, a + d0)));
            const __m512i hi =
                b ? _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, b + d0)))
                  : _mm512_setzero_si512();
            _mm512_storeu_si512(vb + kp * dp + d0, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

/* attention_head at precision bf16 with VDPBF16PS: q * scale, the keys, the
 * values and the probabilities rounded to bf16 once (round to nearest even,
 * as pclip__cpu_bf16_round), products summed in fp32; softmax statistics
 * and the normalisation in fp32. */
static BF16_TARGET void attention_head_bf16_avx512(const float *qkv, float *y, uint16_t *yb,
                                                   const pclip__attention_params *p, int64_t b,
                                                   int64_t h, const float *next, float *ws) {
    const int64_t S = p->seq, H = p->heads, D = p->head_dim, ld = 3 * H * D;
    const int64_t sp = (S + 15) / 16 * 16, dp = (D + 15) / 16 * 16, Dh = (D + 1) / 2;
    uint32_t *ktb = (uint32_t *)(void *)ws;           /* [Dh, sp] key pairs */
    uint32_t *vb = (uint32_t *)(void *)(ws + D * sp); /* [(S + 1) / 2, dp] value pairs */
    float *sc = ws + D * sp + sp * dp;                /* [R, sp] scores */
    uint16_t *pb = (uint16_t *)(void *)(sc + ATTN_ROWS * sp); /* [R, sp] bf16 e^(s - max) */
    uint32_t *qp = (uint32_t *)(void *)(sc + 2 * ATTN_ROWS * sp); /* [R, dp] q pairs */
    const float *q0 = qkv + b * S * ld + h * D, *k0 = q0 + H * D, *v0 = q0 + 2 * H * D;
    keys_bf16_avx512(k0, ld, S, D, sp, ktb);
    values_bf16_avx512(v0, ld, S, D, dp, vb);
    const __m512 scale = _mm512_set1_ps(p->scale);
    const int64_t groups = (S + R - 1) / R;
    for (int64_t i0 = 0; i0 < S; i0 += R) {
        const int64_t nr = S - i0 < R ? S - i0 : R;
        if (next) prefetch_next_avx512(next, S, H * D, D, ld, i0 / R, groups);
        for (int64_t r = 0; r < R; r++) {
            const float *q = q0 + (r < nr ? i0 + r : i0 + nr - 1) * ld;
            for (int64_t d0 = 0; d0 < D; d0 += 32) {
                const __mmask16 mlo = vtail(D - d0), mhi = vtail(D - d0 > 16 ? D - d0 - 16 : 0);
                const __m512 lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(mlo, q + d0), scale);
                const __m512 hi = _mm512_mul_ps(_mm512_maskz_loadu_ps(mhi, q + d0 + 16), scale);
                _mm512_storeu_si512(qp + r * dp + d0 / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
            }
        }
        const int64_t seen_all = p->causal ? i0 + nr : S, blocks = (seen_all + 15) / 16;
        int64_t blk = 0;
        for (; blk + 4 <= blocks; blk += 4) {
            __m512 a[R][4];
            for (int r = 0; r < R; r++) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
            const uint32_t *kb = ktb + blk * 16;
            for (int64_t i = 0; i < Dh; i++) {
                const uint32_t *kr = kb + i * sp;
                const __m512i c0 = _mm512_loadu_si512(kr), c1 = _mm512_loadu_si512(kr + 16);
                const __m512i c2 = _mm512_loadu_si512(kr + 32), c3 = _mm512_loadu_si512(kr + 48);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    const __m512bh qd = as_bh(_mm512_set1_epi32((int)qp[r * dp + i]));
                    a[r][0] = _mm512_dpbf16_ps(a[r][0], qd, as_bh(c0));
                    a[r][1] = _mm512_dpbf16_ps(a[r][1], qd, as_bh(c1));
                    a[r][2] = _mm512_dpbf16_ps(a[r][2], qd, as_bh(c2));
                    a[r][3] = _mm512_dpbf16_ps(a[r][3], qd, as_bh(c3));
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; r++)
                for (int c = 0; c < 4; c++) _mm512_storeu_ps(sc + r * sp + (blk + c) * 16, a[r][c]);
        }
        for (; blk < blocks; blk++) {
            __m512 a[R];
            for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
            for (int64_t i = 0; i < Dh; i++) {
                const __m512bh c0 = as_bh(_mm512_loadu_si512(ktb + i * sp + blk * 16));
#pragma GCC unroll 8
                for (int r = 0; r < R; r++)
                    a[r] = _mm512_dpbf16_ps(a[r], as_bh(_mm512_set1_epi32((int)qp[r * dp + i])),
                                            c0);
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) _mm512_storeu_ps(sc + r * sp + blk * 16, a[r]);
        }
        /* keys in pairs: the one past seen_all (when odd) gets 0 too */
        const int64_t kpairs = (seen_all + 1) / 2;
        float inv[R];
        softmax_rows_avx512(sc, pb, sp, nr, i0, p->causal, S, 2 * kpairs, true, inv);
        for (int64_t d0 = 0; d0 < D; d0 += 64) {
            const __mmask16 m1 = d0 + 16 < dp ? 0xFFFF : 0, m2 = d0 + 32 < dp ? 0xFFFF : 0;
            const __mmask16 m3 = d0 + 48 < dp ? 0xFFFF : 0;
            __m512 o[R][4];
            for (int r = 0; r < R; r++) o[r][0] = o[r][1] = o[r][2] = o[r][3] = _mm512_setzero_ps();
            for (int64_t k = 0; k < kpairs; k++) {
                const uint32_t *vk = vb + k * dp + d0;
                const __m512i c0 = _mm512_loadu_si512(vk);
                const __m512i c1 = _mm512_maskz_loadu_epi32(m1, vk + 16);
                const __m512i c2 = _mm512_maskz_loadu_epi32(m2, vk + 32);
                const __m512i c3 = _mm512_maskz_loadu_epi32(m3, vk + 48);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    uint32_t pair;
                    memcpy(&pair, pb + r * sp + 2 * k, sizeof pair);
                    const __m512bh pk = as_bh(_mm512_set1_epi32((int)pair));
                    o[r][0] = _mm512_dpbf16_ps(o[r][0], pk, as_bh(c0));
                    o[r][1] = _mm512_dpbf16_ps(o[r][1], pk, as_bh(c1));
                    o[r][2] = _mm512_dpbf16_ps(o[r][2], pk, as_bh(c2));
                    o[r][3] = _mm512_dpbf16_ps(o[r][3], pk, as_bh(c3));
                }
            }
            store_rows_avx512(o, inv, y ? y + h * D : NULL, yb ? yb + h * D : NULL, nr, b * S + i0,
                              H * D, D, d0);
        }
    }
}
#undef BF16_TARGET
#endif

#undef R

#endif
