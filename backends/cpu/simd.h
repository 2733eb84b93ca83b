/* The vector vocabulary of one SIMD level, for the kernel passes of
 * simd_foreach.h (which includes this once per level, PCLIP_SIMD_LEVEL set).
 *
 *   vf, VL       a vector of VL floats (16 AVX-512, 8 AVX2, 1 scalar)
 *   vm, vtail(n) a mask of the first min(n, VL) lanes (n >= 0), for row tails
 *   vload/vstore, vload_m/vstore_m (masked lanes read as 0, are not written)
 *   vzero_m(m, v), vsel_m(m, a, b): v or 0, a or b, lane by lane
 *   vadd vsub vmul vdiv vfma(a,b,c)=a*b+c vmax vmin vabs vcopysign vsel_gt
 *   vsum/vhmax   horizontal sum and max
 *   vexp verf    accurate vector exp and erf (max relative error < 1e-7)
 *
 * vmax(a, b) and vmin(a, b) follow x86: when either is NaN the result is b.
 * Clamps are written vmin(limit, x) so a NaN in x goes through.
 * Every name is an alias of a level-suffixed function (vexp -> vexp_avx2);
 * simd_end.h removes the aliases. */

#if PCLIP_SIMD_LEVEL == 2
#define SIMD(name) name##_avx512
#elif PCLIP_SIMD_LEVEL == 1
#define SIMD(name) name##_avx2
#else
#define SIMD(name) name##_scalar
#endif

#define vf SIMD(vf)
#define vm SIMD(vm)
#define vset1 SIMD(vset1)
#define vzero SIMD(vzero)
#define vload SIMD(vload)
#define vstore SIMD(vstore)
#define vtail SIMD(vtail)
#define vload_m SIMD(vload_m)
#define vstore_m SIMD(vstore_m)
#define vzero_m SIMD(vzero_m)
#define vsel_m SIMD(vsel_m)
#define vadd SIMD(vadd)
#define vsub SIMD(vsub)
#define vmul SIMD(vmul)
#define vdiv SIMD(vdiv)
#define vfma SIMD(vfma)
#define vmax SIMD(vmax)
#define vmin SIMD(vmin)
#define vsum SIMD(vsum)
#define vhmax SIMD(vhmax)
#define vabs SIMD(vabs)
#define vcopysign SIMD(vcopysign)
#define vsel_gt SIMD(vsel_gt)
#define vround SIMD(vround)
#define vldexp SIMD(vldexp)
#define vexp SIMD(vexp)
#define verf SIMD(verf)

#if PCLIP_SIMD_LEVEL == 2 /* ---- AVX-512F ---- */

#define VL 16
typedef __m512 vf;
typedef __mmask16 vm;
static inline vf vset1(float x) { return _mm512_set1_ps(x); }
static inline vf vzero(void) { return _mm512_setzero_ps(); }
static inline vf vload(const float *p) { return _mm512_loadu_ps(p); }
static inline void vstore(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vm vtail(int64_t n) { return n >= 16 ? (vm)0xFFFF : (vm)((1u << n) - 1u); }
static inline vf vload_m(const float *p, vm m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void vstore_m(float *p, vm m, vf v) { _mm512_mask_storeu_ps(p, m, v); }
static inline vf vzero_m(vm m, vf v) { return _mm512_maskz_mov_ps(m, v); }
static inline vf vsel_m(vm m, vf a, vf b) { return _mm512_mask_blend_ps(m, b, a); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline float vsum(vf v) { return _mm512_reduce_add_ps(v); }
static inline float vhmax(vf v) { return _mm512_reduce_max_ps(v); }
static inline vf vabs(vf v) { return _mm512_abs_ps(v); }
static inline vf vcopysign(vf mag, vf sgn) {
    const __m512i s = _mm512_set1_epi32(INT32_MIN);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(s, _mm512_castps_si512(mag)),
                                               _mm512_and_si512(s, _mm512_castps_si512(sgn))));
}
static inline vf vsel_gt(vf a, vf b, vf t, vf f) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), f, t);
}
static inline vf vround(vf x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* y * 2^n for integral n: vscalefps handles range and NaN */
static inline vf vldexp(vf y, vf n) { return _mm512_scalef_ps(y, n); }

#elif PCLIP_SIMD_LEVEL == 1 /* ---- AVX2 + FMA ---- */

#define VL 8
typedef __m256 vf;
typedef __m256i vm;
static inline vf vset1(float x) { return _mm256_set1_ps(x); }
static inline vf vzero(void) { return _mm256_setzero_ps(); }
static inline vf vload(const float *p) { return _mm256_loadu_ps(p); }
static inline void vstore(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vm vtail(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n > 8 ? 8 : (int)n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vf vload_m(const float *p, vm m) { return _mm256_maskload_ps(p, m); }
static inline void vstore_m(float *p, vm m, vf v) { _mm256_maskstore_ps(p, m, v); }
static inline vf vzero_m(vm m, vf v) { return _mm256_and_ps(v, _mm256_castsi256_ps(m)); }
static inline vf vsel_m(vm m, vf a, vf b) { return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m)); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline float vsum(vf v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}
static inline float vhmax(vf v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}
static inline vf vabs(vf v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
static inline vf vcopysign(vf mag, vf sgn) {
    const __m256 s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sgn));
}
static inline vf vsel_gt(vf a, vf b, vf t, vf f) {
    return _mm256_blendv_ps(f, t, _mm256_cmp_ps(a, b, _CMP_GT_OQ));
}
static inline vf vround(vf x) {
    return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* y * 2^n for integral n in [-252, 254]: two normal powers of two, so that
 * results in the subnormal range round once, correctly. A NaN n gives
 * garbage scales, but then y is NaN too. */
static inline vf vldexp(vf y, vf n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256i bias = _mm256_set1_epi32(127);
    vf s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    vf s2 =
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

#else /* ---- scalar ---- */

#define VL 1
typedef float vf;
typedef int vm;
static inline vf vset1(float x) { return x; }
static inline vf vzero(void) { return 0.0f; }
static inline vf vload(const float *p) { return *p; }
static inline void vstore(float *p, vf v) { *p = v; }
static inline vm vtail(int64_t n) { return n > 0; }
static inline vf vload_m(const float *p, vm m) { return m ? *p : 0.0f; }
static inline void vstore_m(float *p, vm m, vf v) {
    if (m) *p = v;
}
static inline vf vzero_m(vm m, vf v) { return m ? v : 0.0f; }
static inline vf vsel_m(vm m, vf a, vf b) { return m ? a : b; }
static inline vf vadd(vf a, vf b) { return a + b; }
static inline vf vsub(vf a, vf b) { return a - b; }
static inline vf vmul(vf a, vf b) { return a * b; }
static inline vf vdiv(vf a, vf b) { return a / b; }
/* unfused: a CPU without FMA would emulate fmaf in software */
static inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
static inline float vsum(vf v) { return v; }
static inline float vhmax(vf v) { return v; }
static inline vf vabs(vf v) { return fabsf(v); }
static inline vf vcopysign(vf mag, vf sgn) { return copysignf(mag, sgn); }
static inline vf vsel_gt(vf a, vf b, vf t, vf f) { return a > b ? t : f; }
/* round to nearest even, exact for |x| < 2^22 (vexp's range) */
static inline vf vround(vf x) { return (x + 12582912.0f) - 12582912.0f; }
static inline vf vldexp(vf y, vf n) { return n != n ? n : ldexpf(y, (int)n); }

#endif

/* ---- math shared by every level ---- */

/* e^x: Cephes expf (x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial).
 * Max relative error 8.4e-8 against double exp over all floats. Inputs are
 * clamped to [-110, 89]: e^89 overflows to +inf, e^-110 rounds to 0. */
static inline vf vexp(vf x) {
    x = vmin(vset1(89.0f), x);
    x = vmax(vset1(-110.0f), x);
    vf n = vround(vmul(x, vset1(1.44269504088896341f)));
    vf r = vfma(n, vset1(-0.693359375f), x); /* ln2 in two parts: n * hi is exact */
    r = vfma(n, vset1(2.12194440e-4f), r);
    vf p = vset1(1.9875691500e-4f);
    p = vfma(p, r, vset1(1.3981999507e-3f));
    p = vfma(p, r, vset1(8.3334519073e-3f));
    p = vfma(p, r, vset1(4.1665795894e-2f));
    p = vfma(p, r, vset1(1.6666665459e-1f));
    p = vfma(p, r, vset1(5.0000001201e-1f));
    vf y = vadd(vfma(p, vmul(r, r), r), vset1(1.0f));
    return vldexp(y, n);
}

/* erf(x): N. Juffa's branch-free erff (minimax polynomials, 1 - e^poly for
 * |x| > 0.9277). Max relative error 8.9e-8 against double erf for normal
 * floats; erf(+-inf) = +-1, erf(NaN) = NaN. */
static inline vf verf(vf x) {
    vf t = vabs(x), s = vmul(x, x);
    vf r = vfma(vset1(-1.72853470e-5f), t, vset1(3.83197126e-4f));
    vf u = vfma(vset1(-3.88396438e-3f), t, vset1(2.42546219e-2f));
    r = vfma(r, s, u);
    r = vfma(r, t, vset1(-1.06777877e-1f));
    r = vfma(r, t, vset1(-6.34846687e-1f));
    r = vfma(r, t, vset1(-1.28717512e-1f));
    r = vfma(r, t, vsub(vzero(), t));
    vf big = vcopysign(vsub(vset1(1.0f), vexp(r)), x);
    vf q = vset1(-5.96761703e-4f);
    q = vfma(q, s, vset1(4.99119423e-3f));
    q = vfma(q, s, vset1(-2.67681349e-2f));
    q = vfma(q, s, vset1(1.12819925e-1f));
    q = vfma(q, s, vset1(-3.76125336e-1f));
    q = vfma(q, s, vset1(1.28379166e-1f));
    q = vfma(q, x, x);
    return vsel_gt(t, vset1(0.927734375f), big, q);
}
