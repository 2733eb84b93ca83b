/* one torch.optim.AdamW step on p, m, v
 *
 * torch 1.13's _single_tensor_adamw, per element in fp32, each operation
 * rounded on its own (the build has -ffp-contract=off, so gcc fuses nothing):
 *   p = p * h[0]                               param.mul_(1 - lr * wd)
 *   m = m * beta1 + g * omb1                   exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
 *   v = v * beta2 + g * g * omb2               exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1-beta2)
 *   p = p - h[1] * m / (sqrt(v) / h[2] + eps)  param.addcdiv_(exp_avg, denom, value=-step_size)
 *   p = clamp_max < p ? clamp_max : p          when has_clamp (NaN stays NaN)
 * with h = {1 - lr wd, lr / (1 - beta1^step), sqrt(1 - beta2^step)} from the
 * host. The op writes p (src 0), m (src 2) and v (src 3, its result) in
 * place. The fast path is the same operations on simd.h vectors (IEEE add,
 * mul, div and sqrt, no FMA) in chunks over threads: bit-exact. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include "cpu.h"

static inline void adamw_element(const pclip__adamw_params *a, const float *h, float *p,
                                 const float *g, float *m, float *v) {
    const float gi = *g;
    float pi = *p * h[0];
    const float mi = *m * a->beta1 + gi * a->omb1;
    const float vi = *v * a->beta2 + gi * gi * a->omb2;
    const float denom = sqrtf(vi) / h[2] + a->eps;
    pi = pi - h[1] * mi / denom;
    if (a->has_clamp && a->clamp_max < pi) pi = a->clamp_max;
    *p = pi;
    *m = mi;
    *v = vi;
}

/* ---- reference ---- */

pclip_status pclip__cpu_adamw_ref(const pclip__cpu_node *n) {
    const pclip__adamw_params *a = &n->t->params.adamw;
    float *p = (float *)(uintptr_t)n->src[0], *m = (float *)(uintptr_t)n->src[2];
    float *v = n->dst; /* = src[3] */
    const float *g = n->src[1], *h = n->src[4];
    for (int32_t i = 0; i < a->n; i++) adamw_element(a, h, p + i, g + i, m + i, v + i);
    return PCLIP_STATUS_OK;
}

/* ---- fast: the same operations on vectors, chunks over threads ---- */

#define PCLIP_SIMD_FILE "adamw.c"
#include "simd_foreach.h"

typedef void (*adamw_span_fn)(const pclip__adamw_params *a, const float *h, float *p,
                              const float *g, float *m, float *v, int64_t n);
static const adamw_span_fn adamw_span[] = PCLIP_SIMD_VARIANTS(adamw_span);
_Static_assert(sizeof adamw_span / sizeof adamw_span[0] == PCLIP__CPU_SIMD_COUNT,
               "one per level");

pclip_status pclip__cpu_adamw_fast(const pclip__cpu_node *n) {
    const pclip__adamw_params *a = &n->t->params.adamw;
    const adamw_span_fn fn = adamw_span[n->simd];
    float *p = (float *)(uintptr_t)n->src[0], *m = (float *)(uintptr_t)n->src[2];
    float *v = n->dst;
    const float *g = n->src[1], *h = n->src[4];
    const int64_t count = a->n, chunk = 8192, chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (count >= 8 * PCLIP__CPU_PAR_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t lo = c * chunk, len = count - lo < chunk ? count - lo : chunk;
        fn(a, h, p + lo, g + lo, m + lo, v + lo, len);
    }
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

#if PCLIP_SIMD_LEVEL == 2
static inline vf SIMD(vsqrt)(vf x) { return _mm512_sqrt_ps(x); }
#elif PCLIP_SIMD_LEVEL == 1
static inline vf SIMD(vsqrt)(vf x) { return _mm256_sqrt_ps(x); }
#else
static inline vf SIMD(vsqrt)(vf x) { return sqrtf(x); }
#endif

/* adamw_element on VL lanes, operation for operation */
static inline void SIMD(adamw_vec)(const pclip__adamw_params *a, vf h0, vf h1, vf h2, float *p,
                                   const float *g, float *m, float *v, vm mask, bool full) {
    const vf gi = full ? vload(g) : vload_m(g, mask);
    vf pi = vmul(full ? vload(p) : vload_m(p, mask), h0);
    const vf mi = vadd(vmul(full ? vload(m) : vload_m(m, mask), vset1(a->beta1)),
                       vmul(gi, vset1(a->omb1)));
    const vf vi = vadd(vmul(full ? vload(v) : vload_m(v, mask), vset1(a->beta2)),
                       vmul(vmul(gi, gi), vset1(a->omb2)));
    const vf denom = vadd(vdiv(SIMD(vsqrt)(vi), h2), vset1(a->eps));
    pi = vsub(pi, vdiv(vmul(h1, mi), denom));
    if (a->has_clamp) {
        const vf c = vset1(a->clamp_max);
        pi = vsel_gt(pi, c, c, pi); /* clamp_max < p: a NaN p stays */
    }
    if (full) {
        vstore(p, pi), vstore(m, mi), vstore(v, vi);
    } else {
        vstore_m(p, mask, pi), vstore_m(m, mask, mi), vstore_m(v, mask, vi);
    }
}

static void SIMD(adamw_span)(const pclip__adamw_params *a, const float *h, float *p,
                             const float *g, float *m, float *v, int64_t n) {
    const vf h0 = vset1(h[0]), h1 = vset1(h[1]), h2 = vset1(h[2]);
    const vm all = vtail(VL);
    int64_t i = 0;
    for (; i + VL <= n; i += VL) SIMD(adamw_vec)(a, h0, h1, h2, p + i, g + i, m + i, v + i, all, true);
    if (i < n) SIMD(adamw_vec)(a, h0, h1, h2, p + i, g + i, m + i, v + i, vtail(n - i), false);
}

#endif
