/* y = softmax(q k^T * scale + mask) v, per sequence and head
 *
 * As Hugging Face's CLIPAttention: q = q_proj(x) * head_dim^-0.5, scores =
 * q k^T (+ -inf above the diagonal when causal), softmax in fp32, y = p v,
 * heads side by side. qkv is [batch * seq, 3 * heads * head_dim] with the q,
 * k and v blocks next to each other; head h uses columns h*D .. h*D+D-1 of
 * each block. The whole score matrix is never stored: one row at a time.
 *
 * Fast path: each thread takes a run of (sequence, head) pairs and packs
 * the heads of one sequence a chunk at a time (about its L2 cache), reading
 * the rows of qkv in order, the next chunk's rows prefetched while this one
 * computes: the keys transposed (kt [D, seq]) so VL scores come out of D
 * vector FMAs, the values and q * scale row by row. Then per head a few
 * query rows go together (scores, an exp/sum pass per row, then p v
 * accumulated a row of v at a time for all of them), their accumulators in
 * registers.
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

/* Bytes of packed heads a thread keeps at once: with the staged keys and
 * the next chunk's rows (prefetched while this one computes), about its
 * L2 cache. */
#define ATTN_PACKED_BYTES (384 << 10)

/* One packed head, in floats: its keys [D, Sp] (transposed, or bf16 pairs),
 * values [Sp, Dp] and q * scale [Sp, Dp], with seq and head_dim rounded up
 * to 16 lanes (Sp, Dp: the widest level). */
static int64_t head_floats(const pclip__attention_params *p) {
    int64_t sp = (p->seq + 15) / 16 * 16, dp = (p->head_dim + 15) / 16 * 16;
    return p->head_dim * sp + 2 * sp * dp;
}

/* Heads of one sequence packed together: their rows are read side by side,
 * a few KiB in a row of qkv, instead of one head's 4 * head_dim bytes at a
 * time (strided rows, which the hardware prefetchers miss). */
static int64_t chunk_heads(const pclip__attention_params *p) {
    int64_t c = ATTN_PACKED_BYTES / (int64_t)sizeof(float) / head_floats(p);
    return c < 1 ? 1 : c > p->heads ? p->heads : c;
}

/* per-thread scratch of the fast path, in floats: chunk_heads packed
 * heads, the chunk's key rows as read [Sp, chunk * D] (staged for the
 * transposition), then scores and bf16 probabilities [rows, Sp] each */
static int64_t fast_floats(const pclip__attention_params *p) {
    int64_t sp = (p->seq + 15) / 16 * 16;
    return chunk_heads(p) * (head_floats(p) + sp * p->head_dim) + ATTN_ROWS * 2 * sp;
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

typedef void (*attention_pack_fn)(const float *qkv, const pclip__attention_params *p, int64_t b,
                                  int64_t h0, int64_t hc, bool emulate, float *hs, float *stage);
typedef void (*attention_head_fn)(float *y, uint16_t *yb, const pclip__attention_params *p,
                                  int64_t b, int64_t h, const float *hs, float *ws, bool emulate);
static const attention_pack_fn attention_pack[] = PCLIP_SIMD_VARIANTS(attention_pack);
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

/* Prefetches rows r0 .. r1 - 1 of heads h0 .. h0 + hc - 1 of sequence b:
 * their q, k and v columns. */
static void prefetch_rows(const float *qkv, const pclip__attention_params *p, int64_t b, int64_t h0,
                          int64_t hc, int64_t r0, int64_t r1) {
    const int64_t HD = (int64_t)p->heads * p->head_dim, ld = 3 * HD, w = hc * p->head_dim;
    for (int64_t r = r0; r < r1; r++) {
        const float *q = qkv + (b * p->seq + r) * ld + h0 * p->head_dim;
        for (int64_t c = 0; c < w; c += 16) {
            __builtin_prefetch(q + c);
            __builtin_prefetch(q + HD + c);
            __builtin_prefetch(q + 2 * HD + c);
        }
    }
}

pclip_status pclip__cpu_attention_fast(const pclip__cpu_node *n) {
    const pclip__attention_params *p = &n->t->params.attention;
    attention_pack_fn pack = attention_pack[n->simd];
    attention_head_fn head = attention_head[n->simd];
    /* precision bf16: VDPBF16PS where the level and the CPU have it, else
     * the same rounded operands through fp32 FMAs */
#if defined(__x86_64__)
    if (n->bf16 && n->simd == PCLIP__CPU_SIMD_AVX512 && cpu_has_avx512bf16()) {
        pack = attention_pack_bf16_avx512;
        head = attention_head_bf16_avx512;
    }
#endif
    const int64_t H = p->heads, pairs = (int64_t)p->batch * H, per_thread = fast_floats(p);
    const int64_t work = pairs * p->seq * p->seq * p->head_dim;
    const int64_t hf = head_floats(p), chunk = chunk_heads(p);
    float *scratch = n->scratch;
    PCLIP_ASSERT(n->scratch_bytes >= (size_t)(n->threads * per_thread) * sizeof *scratch);
    const float *qkv = n->src[0];
    uint16_t *yb = n->bf16_dst ? (uint16_t *)(void *)n->dst : NULL;
    float *y = yb ? NULL : n->dst;
    const bool emulate = n->bf16;
    /* Contiguous runs of (sequence, head) pairs per thread; the heads of
     * one sequence packed a chunk at a time, then computed. */
#pragma omp parallel num_threads(n->threads) if (work >= PCLIP__CPU_PAR_MIN)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t lo = pairs * t / nt, hi = pairs * (t + 1) / nt;
        float *hs = scratch + t * per_thread, *stage = hs + chunk * hf;
        float *ws = stage + chunk * ((p->seq + 15) / 16 * 16) * p->head_dim;
        for (int64_t bh = lo; bh < hi;) {
            const int64_t b = bh / H, h0 = bh % H;
            int64_t hc = chunk < H - h0 ? chunk : H - h0;
            if (hc > hi - bh) hc = hi - bh;
            pack(qkv, p, b, h0, hc, emulate, hs, stage);
            bh += hc;
            /* the next chunk's rows, a share before each head of this one */
            const int64_t nb = bh / H, nh0 = bh % H;
            int64_t nc = chunk < H - nh0 ? chunk : H - nh0;
            if (nc > hi - bh) nc = hi - bh;
            for (int64_t k = 0; k < hc; k++) {
                if (nc > 0)
                    prefetch_rows(qkv, p, nb, nh0, nc, p->seq * k / hc, p->seq * (k + 1) / hc);
                head(y, yb, p, b, h0 + k, hs + k * hf, ws, emulate);
            }
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

/* VL probabilities e (rounded to bf16 first with rnd) stored to s, or as
 * bf16 to b when b is not NULL; returns what was stored, as fp32. */
static inline vf SIMD(put_e)(vf e, bool rnd, float *s, uint16_t *b) {
    if (rnd) e = SIMD(vround_bf16)(e);
    if (b)
        SIMD(vstore_bf16)(b, e);
    else
        vstore(s, e);
    return e;
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
            const vf e = vexp(vsub(vload(sr + j), max));
            acc = vadd(acc, SIMD(put_e)(e, rnd, sr + j, br ? br + j : NULL));
        }
        if (j < seen) { /* the lanes past `seen` become 0 (j + VL <= sp) */
            const vf e = vzero_m(vtail(seen - j), vexp(vsub(vload(sr + j), max)));
            acc = vadd(acc, SIMD(put_e)(e, rnd, sr + j, br ? br + j : NULL));
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

/* Prefetches the three slices of `w` floats of the qkv row that `q` starts
 * (its q, k and v columns of a chunk of heads), `hd` = H * D apart. */
static inline void SIMD(prefetch_row)(const float *q, int64_t hd, int64_t w) {
    for (int64_t c = 0; c < w; c += 16) {
        __builtin_prefetch(q + c);
        __builtin_prefetch(q + hd + c);
        __builtin_prefetch(q + 2 * hd + c);
    }
}

/* Packs heads h0 .. h0 + hc - 1 of sequence b into hs (head_floats apart):
 * for each, kt [D, sp] (its keys transposed, zero padded), v [S, D] (its
 * values, rows side by side) and q * scale [S, dp]; with emulate each
 * rounded to bf16 (kept as fp32), as precision bf16 has them. The rows of
 * qkv are read in order, all the chunk's columns of one row together (the
 * next row prefetched), the keys through `stage` [S, hc * D]. */
static void SIMD(attention_pack)(const float *qkv, const pclip__attention_params *p, int64_t b,
                                 int64_t h0, int64_t hc, bool emulate, float *hs, float *stage) {
    const int64_t S = p->seq, H = p->heads, D = p->head_dim, ld = 3 * H * D, w = hc * D;
    const int64_t sp = (S + 15) / 16 * 16, dp = (D + 15) / 16 * 16, hf = D * sp + 2 * sp * dp;
    const float *row0 = qkv + b * S * ld + h0 * D;
    const vf scale = vset1(p->scale);
    for (int64_t j = 0; j < S; j++) {
        const float *q = row0 + j * ld, *k = q + H * D, *v = q + 2 * H * D;
        if (j + 1 < S) SIMD(prefetch_row)(q + ld, H * D, w);
        for (int64_t hh = 0; hh < hc; hh++) {
            float *vr = hs + hh * hf + D * sp, *qs = vr + sp * dp;
            for (int64_t d = 0; d < D; d += VL) {
                const vm m = vtail(D - d);
                const vf vv = vload_m(v + hh * D + d, m);
                const vf qv = vmul(vload_m(q + hh * D + d, m), scale);
                vstore_m(vr + j * D + d, m, emulate ? SIMD(vround_bf16)(vv) : vv);
                vstore_m(qs + j * dp + d, m, emulate ? SIMD(vround_bf16)(qv) : qv);
            }
        }
        memcpy(stage + j * w, k, (size_t)w * sizeof *k);
    }
    for (int64_t hh = 0; hh < hc; hh++)
        SIMD(keys_transposed)(stage + hh * D, w, S, D, sp, emulate, hs + hh * hf);
}

/* One (sequence, head) pair, packed in hs by attention_pack, with fp32
 * products, or (emulate) with the products of bf16 operands as precision
 * bf16 has them: q * scale, the keys, the values and the probabilities each
 * rounded to bf16 once, fp32 FMAs. ws: scores [R, sp]. The result goes to
 * y, or as bf16 to yb when yb is not NULL. */
static void SIMD(attention_head)(float *y, uint16_t *yb, const pclip__attention_params *p,
                                 int64_t b, int64_t h, const float *hs, float *ws, bool emulate) {
    const int64_t S = p->seq, H = p->heads, D = p->head_dim;
    const int64_t sp = (S + 15) / 16 * 16, dp = (D + 15) / 16 * 16;
    const float *kt = hs, *vb = kt + D * sp, *qall = vb + sp * dp;
    float *sc = ws; /* [R, sp]: scores, then e^(s - max), of R query rows */
    const int64_t ldv = D;
    for (int64_t i0 = 0; i0 < S; i0 += R) {
        const int64_t nr = S - i0 < R ? S - i0 : R;
        /* rows past the end repeat the last one, so every lane holds a number */
        const float *qs = qall + i0 * dp;
        int64_t qrow[R];
        for (int64_t r = 0; r < R; r++) qrow[r] = (r < nr ? r : nr - 1) * dp;
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
                    const vf qd = vset1(qs[qrow[r] + d]);
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
                for (int r = 0; r < R; r++) a[r] = vfma(vset1(qs[qrow[r] + d]), c0, a[r]);
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
            SIMD(store_rows)
            (o, inv, y ? y + h * D : NULL, yb ? yb + h * D : NULL, nr, b * S + i0, H * D, D, d0);
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

/* One pair of value rows a, b (b NULL past S) as dp 32-bit words:
 * bf16(a[d]) | bf16(b[d]) << 16, zero past D. */
static inline BF16_TARGET void values_pair_bf16_avx512(const float *a, const float *b, int64_t D,
                                                       int64_t dp, uint32_t *out) {
    for (int64_t d0 = 0; d0 < dp; d0 += 16) {
        const __mmask16 m = vtail(D - d0 > 0 ? D - d0 : 0);
        const __m512i lo =
            _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, a + d0)));
        const __m512i hi =
            b ? _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, b + d0)))
              : _mm512_setzero_si512();
        _mm512_storeu_si512(out + d0, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
}

/* attention_pack at precision bf16 for VDPBF16PS: per head the keys as ktb
 * [Dh, sp] pairs, the values as vb [(S + 1) / 2, dp] pairs (for each pair
 * of keys j = 2i, 2i + 1 and column d, bf16(v[2i][d]) | bf16(v[2i + 1][d])
 * << 16), q * scale as pairs of head_dim, [S, dp] 32-bit words (half
 * used); each value rounded to bf16 once (round to nearest even, as
 * pclip__cpu_bf16_round). Rows read in order, as attention_pack. */
static BF16_TARGET void attention_pack_bf16_avx512(const float *qkv,
                                                   const pclip__attention_params *p, int64_t b,
                                                   int64_t h0, int64_t hc, bool emulate, float *hs,
                                                   float *stage) {
    (void)emulate;
    const int64_t S = p->seq, H = p->heads, D = p->head_dim, ld = 3 * H * D, w = hc * D;
    const int64_t sp = (S + 15) / 16 * 16, dp = (D + 15) / 16 * 16, hf = D * sp + 2 * sp * dp;
    const float *row0 = qkv + b * S * ld + h0 * D;
    const __m512 scale = _mm512_set1_ps(p->scale);
    for (int64_t j = 0; j < S; j += 2) {
        const float *q = row0 + j * ld, *k = q + H * D, *v = q + 2 * H * D;
        const bool two = j + 1 < S;
        if (j + 2 < S) prefetch_row_avx512(q + 2 * ld, H * D, w);
        if (j + 3 < S) prefetch_row_avx512(q + 3 * ld, H * D, w);
        for (int64_t hh = 0; hh < hc; hh++) {
            uint32_t *vb = (uint32_t *)(void *)(hs + hh * hf + D * sp), *qp = vb + sp * dp;
            values_pair_bf16_avx512(v + hh * D, two ? v + ld + hh * D : NULL, D, dp,
                                    vb + j / 2 * dp);
            for (int64_t r = j; r < j + 1 + two; r++) {
                const float *qr = q + (r - j) * ld + hh * D;
                for (int64_t d0 = 0; d0 < D; d0 += 32) {
                    const __mmask16 mlo = vtail(D - d0), mhi = vtail(D - d0 > 16 ? D - d0 - 16 : 0);
                    const __m512 lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(mlo, qr + d0), scale);
                    const __m512 hi =
                        _mm512_mul_ps(_mm512_maskz_loadu_ps(mhi, qr + d0 + 16), scale);
                    _mm512_storeu_si512(qp + r * dp + d0 / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                }
            }
        }
        memcpy(stage + j * w, k, (size_t)w * sizeof *k);
        if (two) memcpy(stage + (j + 1) * w, k + ld, (size_t)w * sizeof *k);
    }
    for (int64_t hh = 0; hh < hc; hh++)
        keys_bf16_avx512(stage + hh * D, w, S, D, sp, (uint32_t *)(void *)(hs + hh * hf));
}

/* softmax_rows for VDPBF16PS: the rounded probabilities go to pb as bf16
 * (VCVTNEPS2BF16: the same bits as pclip__cpu_bf16_round), their sum in
 * fp32 from the rounded values. */
static inline BF16_TARGET void softmax_rows_bf16_avx512(const float *sc, uint16_t *pb, int64_t sp,
                                                        int64_t nr, int64_t i0, bool causal,
                                                        int64_t S, int64_t end, float *inv) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t r = 0; r < R; r++) {
        const float *sr = sc + r * sp;
        uint16_t *br = pb + r * sp;
        if (r >= nr) {
            memset(br, 0, (size_t)end * sizeof *br);
            inv[r] = 0.0f;
            continue;
        }
        const int64_t seen = causal ? i0 + r + 1 : S;
        int64_t j;
        __m512 mx = ninf;
        for (j = 0; j + 16 <= seen; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(sr + j));
        if (j < seen) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, vtail(seen - j), sr + j));
        const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 acc = _mm512_setzero_ps();
        for (j = 0; j < seen; j += 16) { /* the lanes past `seen` become 0 (j + 16 <= sp) */
            const __m512 e = _mm512_maskz_mov_ps(vtail(seen - j),
                                                 vexp(_mm512_sub_ps(_mm512_loadu_ps(sr + j), max)));
            const __m256i h = (__m256i)_mm512_cvtneps_pbh(e);
            _mm256_storeu_si256((__m256i *)(void *)(br + j), h);
            acc = _mm512_add_ps(
                acc, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
        }
        for (j = seen; j < end; j++) br[j] = 0;
        inv[r] = 1.0f / _mm512_reduce_add_ps(acc);
    }
}

/* attention_head at precision bf16 with VDPBF16PS, on a head packed by
 * attention_pack_bf16_avx512: products of bf16 operands summed in fp32;
 * softmax statistics and the normalisation in fp32. ws: scores [R, sp],
 * then the bf16 probabilities [R, sp]. */
static BF16_TARGET void attention_head_bf16_avx512(float *y, uint16_t *yb,
                                                   const pclip__attention_params *p, int64_t b,
                                                   int64_t h, const float *hs, float *ws,
                                                   bool emulate) {
    (void)emulate;
    const int64_t S = p->seq, H = p->heads, D = p->head_dim;
    const int64_t sp = (S + 15) / 16 * 16, dp = (D + 15) / 16 * 16, Dh = (D + 1) / 2;
    const uint32_t *ktb = (const uint32_t *)(const void *)hs, *vb = ktb + D * sp;
    const uint32_t *qall = vb + sp * dp;
    float *sc = ws;                                           /* [R, sp] scores */
    uint16_t *pb = (uint16_t *)(void *)(sc + ATTN_ROWS * sp); /* [R, sp] bf16 e^(s - max) */
    for (int64_t i0 = 0; i0 < S; i0 += R) {
        const int64_t nr = S - i0 < R ? S - i0 : R;
        /* rows past the end repeat the last one, so every lane holds a number */
        const uint32_t *qp = qall + i0 * dp;
        int64_t qrow[R];
        for (int64_t r = 0; r < R; r++) qrow[r] = (r < nr ? r : nr - 1) * dp;
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
                    const __m512bh qd = as_bh(_mm512_set1_epi32((int)qp[qrow[r] + i]));
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
                    a[r] =
                        _mm512_dpbf16_ps(a[r], as_bh(_mm512_set1_epi32((int)qp[qrow[r] + i])), c0);
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) _mm512_storeu_ps(sc + r * sp + blk * 16, a[r]);
        }
        /* keys in pairs: the one past seen_all (when odd) gets 0 too */
        const int64_t kpairs = (seen_all + 1) / 2;
        float inv[R];
        softmax_rows_bf16_avx512(sc, pb, sp, nr, i0, p->causal, S, 2 * kpairs, inv);
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
