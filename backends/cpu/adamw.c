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
 * place. The fast path is the same loop over threads: bit-exact. */
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

/* ---- fast: the same loop over threads ---- */

pclip_status pclip__cpu_adamw_fast(const pclip__cpu_node *n) {
    const pclip__adamw_params *a = &n->t->params.adamw;
    float *p = (float *)(uintptr_t)n->src[0], *m = (float *)(uintptr_t)n->src[2];
    float *v = n->dst;
    const float *g = n->src[1], *h = n->src[4];
    const int64_t count = a->n;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (count >= 8 * PCLIP__CPU_PAR_MIN)
    for (int64_t i = 0; i < count; i++) adamw_element(a, h, p + i, g + i, m + i, v + i);
    return PCLIP_STATUS_OK;
}
