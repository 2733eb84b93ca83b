/* Stores of one vector as bf16, for SIMD passes (after simd.h): an op whose
 * result only bf16 matmuls read writes it as bf16 itself (cpu.h, bf16_dst)
 * instead of a conversion pass over it before each matmul.
 *
 *   vstore_bf16(p, v)       VL bf16 values at p
 *   vstore_bf16_n(p, n, v)  the first min(n, VL) of them (n >= 0)
 *   vround_bf16(v)          v rounded to bf16 the same way, widened back to
 *                           fp32 (for kernels that emulate bf16 products)
 *
 * The rounding is pclip__cpu_bf16_round's, lane by lane (round to nearest
 * even, a NaN stays a quiet NaN, a denormal becomes a signed zero: what
 * VCVTNEPS2BF16 gives), in integer operations of the level itself, so every
 * level writes the same bits. No include guard: each SIMD pass of a file
 * includes it once, under its own level's names. */

#if PCLIP_SIMD_LEVEL == 2

/* the bf16 bits of each lane, in the low half of its 32 bits */
static inline __m512i SIMD(bf16_bits)(vf v) {
    const __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
    const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __mmask16 denormal = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_and_epi32(r, denormal, hi, _mm512_set1_epi32(0x8000));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(
        _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
}
static inline void SIMD(vstore_bf16)(uint16_t *p, vf v) {
    _mm256_storeu_si256((__m256i *)(void *)p, _mm512_cvtepi32_epi16(SIMD(bf16_bits)(v)));
}
static inline void SIMD(vstore_bf16_n)(uint16_t *p, int64_t n, vf v) {
    const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
    _mm512_mask_cvtepi32_storeu_epi16(p, m, SIMD(bf16_bits)(v));
}
static inline vf SIMD(vround_bf16)(vf v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(SIMD(bf16_bits)(v), 16));
}

#elif PCLIP_SIMD_LEVEL == 1

/* the bf16 bits of each lane, in the low half of its 32 bits */
static inline __m256i SIMD(bf16_bits)(vf v) {
    const __m256i u = _mm256_castps_si256(v), hi = _mm256_srli_epi32(u, 16);
    const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i denormal = _mm256_cmpeq_epi32(
        _mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)), _mm256_setzero_si256());
    r = _mm256_blendv_epi8(r, _mm256_and_si256(hi, _mm256_set1_epi32(0x8000)), denormal);
    /* |u| > inf as signed 32-bit integers: |u| < 2^31 */
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
}
static inline vf SIMD(vround_bf16)(vf v) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(SIMD(bf16_bits)(v), 16));
}
static inline __m128i SIMD(bf16_pack)(vf v) {
    const __m256i r = SIMD(bf16_bits)(v);
    /* 32 -> 16 bits (every lane is below 2^16): within each 128-bit half,
     * then the two halves' low quadwords together */
    const __m256i p = _mm256_packus_epi32(r, r);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
}
static inline void SIMD(vstore_bf16)(uint16_t *p, vf v) {
    _mm_storeu_si128((__m128i *)(void *)p, SIMD(bf16_pack)(v));
}
static inline void SIMD(vstore_bf16_n)(uint16_t *p, int64_t n, vf v) {
    uint16_t lanes[8];
    _mm_storeu_si128((__m128i *)(void *)lanes, SIMD(bf16_pack)(v));
    for (int64_t i = 0; i < n && i < 8; i++) p[i] = lanes[i];
}

#else

static inline void SIMD(vstore_bf16)(uint16_t *p, vf v) { *p = pclip__cpu_bf16_round(v); }
static inline void SIMD(vstore_bf16_n)(uint16_t *p, int64_t n, vf v) {
    if (n > 0) *p = pclip__cpu_bf16_round(v);
}
static inline vf SIMD(vround_bf16)(vf v) {
    union {
        uint32_t u;
        float f;
    } r = {(uint32_t)pclip__cpu_bf16_round(v) << 16};
    return r.f;
}

#endif
