/* Exact search over an index's mapped vectors: every row is read once for
 * all queries, on all OpenMP threads (each a contiguous share of the rows),
 * f16 and q8 rows converted in registers, and each thread keeps one bounded
 * min-heap per query; the heaps are merged at the end. Dot products use
 * AVX-512 or AVX2/F16C/FMA when the CPU has them (PORTCLIP_CPU_SIMD caps
 * the level, as for the CPU backend), else plain C.
 *
 * The CPU backend (and no backend) searches here: the scan reads memory at
 * the speed of the CPU's memory system. A GPU backend searches with graph
 * ops (index_gpu.c). It does not open or write the index (index.c). */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "index.h"
#include "model/model.h"

/* ---- dot products, one row against one query ---- */

/* q: the query as floats; qi, qs: the same as int16 times qs (for the q8
 * kernels, which multiply int8 by int16 in integers: a relative change of
 * the score of at most ~3e-5, far under q8's own rounding). Each kernel
 * reads what it needs. */
typedef struct query {
    const float *q;
    const int16_t *qi;
    float qs;
} query;
typedef float (*dot_fn)(const query *qq, const uint8_t *row, int32_t dim);

/* q8 rows (index.h): every level sums each block of 32 exactly in integers
 * (int8 x int16, at most 32 * 127 * 32767 < 2^31), then adds the blocks'
 * sum * scale in eight lanes (block b in lane b % 8) and the lanes in one
 * tree, ((0+4)+(2+6))+((1+5)+(3+7)): plain C and the AVX2 combination (for
 * AVX2 and AVX-512) do the same float operations, so the scalar, AVX2 and
 * AVX-512 kernels give the same bits. */
#define Q8_GROUP 4 /* blocks the SIMD kernels reduce together */

static float q8_combine(const uint8_t *row, const int32_t *isum, int32_t nb) {
    float acc[8] = {0};
    for (int32_t b = 0; b < nb; b++) {
        float scale;
        memcpy(&scale, row + 4 * (size_t)b, 4);
        float p = (float)isum[b] * scale;
        acc[b % 8] += p;
    }
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* the exact integer sum of block b, in plain C (the SIMD kernels' tail) */
static int32_t q8_block_sum(const int8_t *v, const int16_t *qi, int32_t b, int32_t dim) {
    int32_t lo = b * PCLIP__Q8_BLOCK;
    int32_t hi = lo + PCLIP__Q8_BLOCK < dim ? lo + PCLIP__Q8_BLOCK : dim;
    int32_t s = 0;
    for (int32_t i = lo; i < hi; i++) s += (int32_t)qi[i] * v[i];
    return s;
}

#define Q8_NB_MAX 64 /* blocks summed on the stack at a time (a multiple of 8) */

static float dot_f32_c(const query *qq, const uint8_t *row, int32_t dim) {
    const float *q = qq->q;
    float acc[8] = {0};
    int32_t i = 0;
    for (; i + 8 <= dim; i += 8)
        for (int j = 0; j < 8; j++) {
            float x;
            memcpy(&x, row + 4 * (size_t)(i + j), 4);
            acc[j] += q[i + j] * x;
        }
    for (; i < dim; i++) {
        float x;
        memcpy(&x, row + 4 * (size_t)i, 4);
        acc[0] += q[i] * x;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_f16_c(const query *qq, const uint8_t *row, int32_t dim) {
    const float *q = qq->q;
    float acc[4] = {0};
    int32_t i = 0;
    for (; i + 4 <= dim; i += 4)
        for (int j = 0; j < 4; j++) {
            uint16_t h;
            memcpy(&h, row + 2 * (size_t)(i + j), 2);
            acc[j] += q[i + j] * pclip__f16_to_f32(h);
        }
    for (; i < dim; i++) {
        uint16_t h;
        memcpy(&h, row + 2 * (size_t)i, 2);
        acc[0] += q[i] * pclip__f16_to_f32(h);
    }
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static float dot_q8_c(const query *qq, const uint8_t *row, int32_t dim) {
    int32_t nb = PCLIP__Q8_BLOCKS(dim);
    const int8_t *v = (const int8_t *)(row + 4 * (size_t)nb);
    int32_t isum[Q8_NB_MAX];
    float acc = 0.0f;
    for (int32_t b0 = 0; b0 < nb; b0 += Q8_NB_MAX) {
        int32_t m = nb - b0 < Q8_NB_MAX ? nb - b0 : Q8_NB_MAX;
        for (int32_t b = 0; b < m; b++) isum[b] = q8_block_sum(v, qq->qi, b0 + b, dim);
        acc += q8_combine(row + 4 * (size_t)b0, isum, m);
    }
    return acc * qq->qs;
}

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))

AVX2 static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AVX2 static float dot_f32_avx2(const query *qq, const uint8_t *row, int32_t dim) {
    const float *q = qq->q;
    const float *x = (const float *)(const void *)row;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int32_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < dim; i++) s += q[i] * x[i];
    return s;
}

AVX2 static float dot_f16_avx2(const query *qq, const uint8_t *row, int32_t dim) {
    const float *q = qq->q;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int32_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)i)));
        __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)i + 16)));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), x0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), x1, a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < dim; i++) {
        uint16_t h;
        memcpy(&h, row + 2 * (size_t)i, 2);
        s += q[i] * pclip__f16_to_f32(h);
    }
    return s;
}

/* q8_combine in eight lanes: isum holds nb sums and zeros up to the next
 * multiple of 8 (a +0 product leaves a lane as it is: no lane is -0) */
AVX2 static float q8_combine_avx2(const uint8_t *row, const int32_t *isum, int32_t nb) {
    __m256 acc = _mm256_setzero_ps();
    int32_t b = 0;
    for (; b + 8 <= nb; b += 8)
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(
                                                   (const __m256i *)(isum + b))),
                                               _mm256_loadu_ps((const float *)(const void *)(
                                                   row + 4 * (size_t)b))));
    if (b < nb) {
        static const int32_t ramp[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        __m256i mask = _mm256_loadu_si256((const __m256i *)(ramp + 8 - (nb - b)));
        __m256 sc = _mm256_maskload_ps((const float *)(const void *)(row + 4 * (size_t)b), mask);
        acc = _mm256_add_ps(
            acc,
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(isum + b))), sc));
    }
    return hsum256(acc);
}

/* sum q[i] * v[i] = qs * sum_b scale_b * sum_{i in b} qi[i] * v[i]: int8
 * widened to int16, pairs multiplied and added into int32 lanes (madd),
 * four blocks' lanes reduced together by horizontal adds */
AVX2 static __m256i q8_block_avx2(const int8_t *v, const int16_t *qi) {
    __m256i x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)v));
    __m256i x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(v + 16)));
    return _mm256_add_epi32(_mm256_madd_epi16(x0, _mm256_loadu_si256((const __m256i *)qi)),
                            _mm256_madd_epi16(x1, _mm256_loadu_si256((const __m256i *)(qi + 16))));
}

/* four vectors of 8 int32 lanes to their four sums */
AVX2 static __m128i q8_reduce4_avx2(__m256i m0, __m256i m1, __m256i m2, __m256i m3) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(m0, m1), _mm256_hadd_epi32(m2, m3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

AVX2 static float dot_q8_avx2(const query *qq, const uint8_t *row, int32_t dim) {
    int32_t nb = PCLIP__Q8_BLOCKS(dim), full = dim / PCLIP__Q8_BLOCK;
    const int8_t *v = (const int8_t *)(row + 4 * (size_t)nb);
    const int16_t *qi = qq->qi;
    int32_t isum[Q8_NB_MAX];
    float acc = 0.0f;
    for (int32_t b0 = 0; b0 < nb; b0 += Q8_NB_MAX) {
        int32_t m = nb - b0 < Q8_NB_MAX ? nb - b0 : Q8_NB_MAX, b = 0;
        for (; b + Q8_GROUP <= m && b0 + b + Q8_GROUP <= full; b += Q8_GROUP) {
            size_t o = (size_t)(b0 + b) * PCLIP__Q8_BLOCK;
            __m128i s = q8_reduce4_avx2(q8_block_avx2(v + o, qi + o),
                                        q8_block_avx2(v + o + 32, qi + o + 32),
                                        q8_block_avx2(v + o + 64, qi + o + 64),
                                        q8_block_avx2(v + o + 96, qi + o + 96));
            _mm_storeu_si128((__m128i *)(isum + b), s);
        }
        for (; b < m; b++) isum[b] = q8_block_sum(v, qi, b0 + b, dim);
        for (; b % 8; b++) isum[b] = 0;
        acc += q8_combine_avx2(row + 4 * (size_t)b0, isum, m);
    }
    return acc * qq->qs;
}

AVX512 static float dot_f32_avx512(const query *qq, const uint8_t *row, int32_t dim) {
    const float *q = qq->q;
    const float *x = (const float *)(const void *)row;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int32_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    if (i + 16 <= dim) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(x + i), a0);
        i += 16;
    }
    if (i < dim) { /* the tail, masked */
        __mmask16 m = (__mmask16)((1u << (dim - i)) - 1);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

AVX512 static float dot_f16_avx512(const query *qq, const uint8_t *row, int32_t dim) {
    const float *q = qq->q;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int32_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        __m512 x0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * (size_t)i)));
        __m512 x1 =
            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * (size_t)i + 32)));
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), x0, a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), x1, a1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < dim; i++) {
        uint16_t h;
        memcpy(&h, row + 2 * (size_t)i, 2);
        s += q[i] * pclip__f16_to_f32(h);
    }
    return s;
}

AVX512 static __m256i q8_block_avx512(const int8_t *v, const int16_t *qi) {
    __m512i x = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)v));
    __m512i p = _mm512_madd_epi16(x, _mm512_loadu_si512(qi));
    return _mm256_add_epi32(_mm512_castsi512_si256(p), _mm512_extracti64x4_epi64(p, 1));
}

AVX512 static float dot_q8_avx512(const query *qq, const uint8_t *row, int32_t dim) {
    int32_t nb = PCLIP__Q8_BLOCKS(dim), full = dim / PCLIP__Q8_BLOCK;
    const int8_t *v = (const int8_t *)(row + 4 * (size_t)nb);
    const int16_t *qi = qq->qi;
    int32_t isum[Q8_NB_MAX];
    float acc = 0.0f;
    for (int32_t b0 = 0; b0 < nb; b0 += Q8_NB_MAX) {
        int32_t m = nb - b0 < Q8_NB_MAX ? nb - b0 : Q8_NB_MAX, b = 0;
        for (; b + Q8_GROUP <= m && b0 + b + Q8_GROUP <= full; b += Q8_GROUP) {
            size_t o = (size_t)(b0 + b) * PCLIP__Q8_BLOCK;
            __m128i s = q8_reduce4_avx2(q8_block_avx512(v + o, qi + o),
                                        q8_block_avx512(v + o + 32, qi + o + 32),
                                        q8_block_avx512(v + o + 64, qi + o + 64),
                                        q8_block_avx512(v + o + 96, qi + o + 96));
            _mm_storeu_si128((__m128i *)(isum + b), s);
        }
        for (; b < m; b++) isum[b] = q8_block_sum(v, qi, b0 + b, dim);
        for (; b % 8; b++) isum[b] = 0;
        acc += q8_combine_avx2(row + 4 * (size_t)b0, isum, m);
    }
    return acc * qq->qs;
}

/* rows to floats once, for scans of several queries (each then a f32 dot) */
AVX2 static void decode_f16_avx2(const uint8_t *row, int32_t dim, float *out) {
    int32_t i = 0;
    for (; i + 8 <= dim; i += 8)
        _mm256_storeu_ps(out + i,
                         _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)i))));
    for (; i < dim; i++) {
        uint16_t h;
        memcpy(&h, row + 2 * (size_t)i, 2);
        out[i] = pclip__f16_to_f32(h);
    }
}

AVX2 static void decode_q8_avx2(const uint8_t *row, int32_t dim, float *out) {
    int32_t nb = PCLIP__Q8_BLOCKS(dim), full = dim / PCLIP__Q8_BLOCK;
    const int8_t *v = (const int8_t *)(row + 4 * (size_t)nb);
    for (int32_t b = 0; b < nb; b++) {
        float scale;
        memcpy(&scale, row + 4 * (size_t)b, 4);
        int32_t i = b * PCLIP__Q8_BLOCK;
        if (b < full) {
            __m256 sc = _mm256_set1_ps(scale);
            for (int32_t j = 0; j < PCLIP__Q8_BLOCK; j += 8)
                _mm256_storeu_ps(out + i + j,
                                 _mm256_mul_ps(sc, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                       _mm_loadl_epi64((const __m128i *)(v + i + j))))));
        } else {
            for (; i < dim; i++) out[i] = scale * (float)v[i];
        }
    }
}
#endif

/* ---- choosing the kernels ---- */

#if defined(__x86_64__)
#define DECODE_F16_SIMD decode_f16_avx2
#define DECODE_Q8_SIMD decode_q8_avx2
#else
#define DECODE_F16_SIMD decode_f16_c
#define DECODE_Q8_SIMD decode_q8_c
#endif

static const char *const simd_names[] = {"scalar", "avx2", "avx512"};

typedef void (*decode_fn)(const uint8_t *row, int32_t dim, float *out);

static void decode_f16_c(const uint8_t *row, int32_t dim, float *out) {
    pclip__index_decode_row(PCLIP_INDEX_F16, row, dim, out);
}
static void decode_q8_c(const uint8_t *row, int32_t dim, float *out) {
    pclip__index_decode_row(PCLIP_INDEX_Q8, row, dim, out);
}

/* The dot kernel for dt, and (for f16 and q8) a row decoder with the f32
 * dot that follows it. */
static pclip_status pick_dot(pclip_ctx_t ctx, pclip_index_dtype dt, dot_fn *out,
                             decode_fn *dec, dot_fn *dot32) {
    int best = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports does not know it) */
    unsigned a = 0, b = 0, c = 0, d = 0;
    bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) best = 1;
    if (best == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        best = 2;
#endif
    int want;
    pclip_status st = pclip__env_choice(ctx, "PORTCLIP_CPU_SIMD", simd_names, 3, best, &want);
    if (st) return st;
    if (want > best) want = best; /* the backend reports this; search just uses what there is */
    static const dot_fn table[3][3] = {
        {dot_f32_c, dot_f16_c, dot_q8_c},
#if defined(__x86_64__)
        {dot_f32_avx2, dot_f16_avx2, dot_q8_avx2},
        {dot_f32_avx512, dot_f16_avx512, dot_q8_avx512},
#else
        {dot_f32_c, dot_f16_c, dot_q8_c},
        {dot_f32_c, dot_f16_c, dot_q8_c},
#endif
    };
    *dot32 = table[want][0];
    *dec = dt == PCLIP_INDEX_F16  ? (want ? DECODE_F16_SIMD : decode_f16_c)
           : dt == PCLIP_INDEX_Q8 ? (want ? DECODE_Q8_SIMD : decode_q8_c)
                                  : NULL;
    *out = table[want][dt - PCLIP_INDEX_F32];
    return PCLIP_STATUS_OK;
}

/* ---- bounded heaps: the worst kept result on top ---- */

typedef struct cand {
    float score;
    int64_t row;
} cand;

/* a ranks below b: lower score, or the same score and a later row */
static inline bool worse(const cand *a, const cand *b) {
    return a->score < b->score || (a->score == b->score && a->row > b->row);
}

static void heap_push(cand *h, int64_t *n, int64_t cap, cand c) {
    if (*n < cap) {
        int64_t i = (*n)++;
        while (i > 0) {
            int64_t p = (i - 1) / 2;
            if (!worse(&c, &h[p])) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = c;
        return;
    }
    if (!worse(&h[0], &c)) return;
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *mc = &c;
        if (l < cap && worse(&h[l], mc)) {
            m = l;
            mc = &h[l];
        }
        if (r < cap && worse(&h[r], mc)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = c;
}

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

/* ---- the scan ---- */

_Static_assert(sizeof(cand) == sizeof(pclip__index_cand), "one candidate layout");

pclip_status pclip__index_scan(pclip_ctx_t ctx, const uint8_t *rows, int64_t n, size_t row_bytes,
                               pclip_index_dtype dt, int32_t dim, const float *queries, int64_t nq,
                               int64_t kk, pclip__index_cand *out_c) {
    cand *out = (cand *)out_c;
    if (kk < 1 || kk > n || nq < 1)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "scan: bad sizes");
    dot_fn dot, dot32;
    decode_fn dec;
    pclip_status st = pick_dot(ctx, dt, &dot, &dec, &dot32);
    if (st) return st;
    /* several queries: convert each f16/q8 row once, then f32 dots (measured:
     * converting per query made 16 queries cost 16 conversions per row) */
    if (nq < 4) dec = NULL;
    /* the queries, also as int16 (q8 kernels) */
    query *qq = pclip__calloc((size_t)nq, sizeof *qq);
    int16_t *qi = pclip__malloc((size_t)nq * (size_t)dim * sizeof *qi);
    if (!qq || !qi) {
        pclip__free(qq);
        pclip__free(qi);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "search: out of memory");
    }
    for (int64_t q = 0; q < nq; q++) {
        const float *x = queries + (size_t)q * (size_t)dim;
        int16_t *xi = qi + (size_t)q * (size_t)dim;
        float amax = 0;
        for (int32_t i = 0; i < dim; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        float qs = amax > 0 && isfinite(amax) ? amax / 32767.0f : 0.0f;
        for (int32_t i = 0; i < dim; i++) xi[i] = qs > 0 ? (int16_t)lrintf(x[i] / qs) : 0;
        qq[q] = (query){.q = x, .qi = xi, .qs = qs};
    }
    int nt = omp_get_max_threads();
    if ((int64_t)nt > n / 256 + 1) nt = (int)(n / 256 + 1); /* small indexes: fewer threads */
    size_t per, all;
    if (!pclip__mul_size((size_t)nq, (size_t)kk, &per) || !pclip__mul_size(per, (size_t)nt, &all)) {
        pclip__free(qq);
        pclip__free(qi);
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "search: %lld queries x top %lld is too much",
                          (long long)nq, (long long)kk);
    }
    cand *heaps = pclip__malloc(all * sizeof *heaps);
    int64_t *fill = pclip__calloc((size_t)nq * (size_t)nt, sizeof *fill);
    float *rowbuf = dec ? pclip__malloc((size_t)nt * (size_t)dim * sizeof *rowbuf) : NULL;
    if (!heaps || !fill || (dec && !rowbuf)) {
        pclip__free(heaps);
        pclip__free(fill);
        pclip__free(rowbuf);
        pclip__free(qq);
        pclip__free(qi);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "search: out of memory for %lld queries x top %lld", (long long)nq,
                          (long long)kk);
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t lo = n * t / T, hi = n * (t + 1) / T;
        cand *h = heaps + (size_t)t * per;
        int64_t *f = fill + (size_t)t * (size_t)nq;
        float *fb = dec ? rowbuf + (size_t)t * (size_t)dim : NULL;
        for (int64_t r = lo; r < hi; r++) {
            const uint8_t *row = rows + (size_t)r * row_bytes;
            if (dec) dec(row, dim, fb);
            for (int64_t q = 0; q < nq; q++) {
                float s = dec ? dot32(&qq[q], (const uint8_t *)fb, dim) : dot(&qq[q], row, dim);
                if (s != s) s = -INFINITY;
                cand *hq = h + (size_t)q * (size_t)kk;
                /* the usual case: full and not better than the worst kept */
                if (f[q] == kk && s < hq[0].score) continue;
                heap_push(hq, &f[q], kk, (cand){s, r});
            }
        }
    }
    /* merge the threads' heaps per query */
    cand *tmp = pclip__malloc((size_t)nt * (size_t)kk * sizeof *tmp);
    pclip__free(qq);
    pclip__free(qi);
    pclip__free(rowbuf);
    if (!tmp) {
        pclip__free(heaps);
        pclip__free(fill);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "search: out of memory");
    }
    for (int64_t q = 0; q < nq; q++) {
        size_t m = 0;
        for (int t = 0; t < nt; t++) {
            int64_t c = fill[(size_t)t * (size_t)nq + (size_t)q];
            memcpy(tmp + m, heaps + (size_t)t * per + (size_t)q * (size_t)kk,
                   (size_t)c * sizeof *tmp);
            m += (size_t)c;
        }
        qsort(tmp, m, sizeof *tmp, cand_cmp);
        memcpy(out + (size_t)q * (size_t)kk, tmp, (size_t)kk * sizeof *tmp);
    }
    pclip__free(tmp);
    pclip__free(heaps);
    pclip__free(fill);
    return PCLIP_STATUS_OK;
}

/* ---- the public calls ---- */

pclip_status pclip_index_search(pclip_index_t x, const float *queries, int64_t nq, int32_t dim,
                                int64_t k, pclip_index_hit *hits, int64_t *n_hits) {
    return pclip_index_search_on(x, NULL, queries, nq, dim, k, hits, n_hits);
}

/* Whether b searches with graph ops: a backend other than the CPU's. */
static bool on_graph(pclip_backend_t b) { return b && strcmp(pclip_backend_name(b), "cpu") != 0; }

pclip_status pclip_index_search_on(pclip_index_t x, pclip_backend_t b, const float *queries,
                                   int64_t nq, int32_t dim, int64_t k, pclip_index_hit *hits,
                                   int64_t *n_hits) {
    if (!x) return PCLIP_STATUS_INVALID_ARGUMENT;
    pclip_ctx_t ctx = x->ctx;
    if (!queries || nq < 1 || !hits || !n_hits)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "search: NULL queries or results, or no query");
    if (k < 1)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "search: top-k %lld is not positive",
                          (long long)k);
    if (dim != x->dim)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "search: queries of dimension %d, index '%s' holds %d", (int)dim, x->dir,
                          (int)x->dim);
    if (x->count == 0)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "search: index '%s' is empty (no image has been indexed)", x->dir);
    int64_t keep = k < x->count ? k : x->count;
    /* rows no file refers to any more (an update interrupted before its
     * compaction) may rank high: take enough extra to drop them all */
    int64_t dead = x->rows - x->count;
    int64_t kk = keep + dead < x->rows ? keep + dead : x->rows;
    size_t total;
    if (!pclip__mul_size((size_t)nq, (size_t)kk, &total))
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "search: too many results");
    cand *c = pclip__malloc(total * sizeof *c);
    char **paths = pclip__calloc((size_t)nq * (size_t)keep, sizeof *paths);
    if (!c || !paths) {
        pclip__free(c);
        pclip__free(paths);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "search: out of memory");
    }
    pclip_status st =
        on_graph(b) && pclip__index_graph_search_fits(kk)
            ? pclip__index_graph_search(ctx, b, x->rows_data, x->rows, x->row_bytes, x->dtype, dim,
                                        queries, nq, kk, 0, (pclip__index_cand *)c)
            : pclip__index_scan(ctx, x->rows_data, x->rows, x->row_bytes, x->dtype, dim, queries,
                                nq, kk, (pclip__index_cand *)c);
    int64_t np = 0;
    for (int64_t q = 0; q < nq && !st; q++) {
        int64_t got = 0;
        for (int64_t i = 0; i < kk && got < keep && !st; i++) {
            const cand *cd = &c[(size_t)q * (size_t)kk + (size_t)i];
            char *p = pclip__index_path_of_row(x, cd->row, &st);
            if (!p) continue; /* a dead row */
            paths[np++] = p;
            hits[(size_t)q * (size_t)k + (size_t)got++] =
                (pclip_index_hit){.path = p, .score = cd->score, .row = cd->row};
        }
        if (!st && got != keep)
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "index '%s': the database's rows do not match its file count", x->dir);
    }
    pclip__free(c);
    if (st) {
        for (int64_t i = 0; i < np; i++) pclip__free(paths[i]);
        pclip__free(paths);
        return st;
    }
    pclip__index_free_hits(x);
    x->hit_paths = paths;
    x->n_hit_paths = np;
    *n_hits = keep;
    return PCLIP_STATUS_OK;
}

static pclip_status search_rows(pclip_index_t x, pclip_backend_t b, float *emb, int64_t n,
                                int64_t k, pclip_index_hit *hits, int64_t *n_hits) {
    return pclip_index_search_on(x, b, emb, n, x->dim, k, hits, n_hits);
}

pclip_status pclip_index_search_text(pclip_index_t x, pclip_model_t m, pclip_backend_t b,
                                     const char *const *texts, int64_t n, int64_t k,
                                     pclip_index_hit *hits, int64_t *n_hits) {
    if (!x) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!m || !b || !texts || n < 1 || n > INT32_MAX / 1024)
        return pclip__err(x->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "search: NULL model, backend or texts, or a bad text count");
    if (!m->tokenizer)
        return pclip__err(x->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "search: model '%s' was loaded without its tokenizer", m->dir);
    pclip_status st = pclip_index_check_model(x, m);
    if (st) return st;
    int32_t n_ctx = m->config.text.max_position_embeddings;
    int32_t *ids = pclip__malloc((size_t)n * (size_t)n_ctx * sizeof *ids);
    float *emb = pclip__malloc((size_t)n * (size_t)x->dim * sizeof *emb);
    if (!ids || !emb) {
        st = pclip__err(x->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "search: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n && !st; i++)
        if ((st = pclip_tokenizer_encode(m->tokenizer, texts[i], strlen(texts[i]),
                                         ids + (size_t)i * (size_t)n_ctx, n_ctx, NULL))) {
            char why[PCLIP_ERROR_TEXT]; /* a copy: the message may be x's own buffer */
            snprintf(why, sizeof why, "%s", pclip_ctx_last_error(m->ctx));
            st = pclip__err(x->ctx, st, "search: text %lld: %s", (long long)i + 1, why);
        }
    if (!st) st = pclip_model_encode_text(m, b, ids, (int32_t)n, PCLIP_ENCODE_NORMALIZE, emb);
    if (st && m->ctx != x->ctx) pclip__err(x->ctx, st, "%s", pclip_ctx_last_error(m->ctx));
    if (!st) st = search_rows(x, b, emb, n, k, hits, n_hits);
done:
    pclip__free(ids);
    pclip__free(emb);
    return st;
}

typedef struct image_rows {
    float *emb;
} image_rows;

static pclip_status keep_image_rows(void *user, int64_t first, int32_t count, int32_t dim,
                                    const float *rows) {
    image_rows *r = user;
    memcpy(r->emb + (size_t)first * (size_t)dim, rows, (size_t)count * (size_t)dim * sizeof *rows);
    return PCLIP_STATUS_OK;
}

pclip_status pclip_index_search_images(pclip_index_t x, pclip_model_t m, pclip_backend_t b,
                                       const char *const *paths, int64_t n, int64_t k,
                                       pclip_index_hit *hits, int64_t *n_hits) {
    if (!x) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!m || !b || !paths || n < 1)
        return pclip__err(x->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "search: NULL model, backend or images, or no image");
    pclip_status st = pclip_index_check_model(x, m);
    if (st) return st;
    image_rows r = {.emb = pclip__malloc((size_t)n * (size_t)x->dim * sizeof(float))};
    if (!r.emb) return pclip__err(x->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "search: out of memory");
    pclip_embed_options eo = {.preprocess = x->preprocess, .flags = PCLIP_ENCODE_NORMALIZE};
    st = pclip_embed_image_files(m, b, paths, n, &eo, keep_image_rows, &r);
    if (st && m->ctx != x->ctx) pclip__err(x->ctx, st, "%s", pclip_ctx_last_error(m->ctx));
    if (!st) st = search_rows(x, b, r.emb, n, k, hits, n_hits);
    pclip__free(r.emb);
    return st;
}
