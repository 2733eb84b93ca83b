/* y = dy * act'(x), elementwise
 *
 * The derivatives of act.c's formulas (torch's):
 *   quick_gelu  s + 1.702 x s (1 - s),               s = sigmoid(1.702 x)
 *   gelu        0.5 (1 + erf(x / sqrt 2)) + x e^(-x^2 / 2) / sqrt(2 pi)
 *   gelu_tanh   s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2),
 *               s = sigmoid(2u) = (1 + tanh u) / 2, u = sqrt(2/pi) (x + 0.044715 x^3)
 * (gelu_tanh through the sigmoid: 1 - tanh^2 u = 4 s (1 - s), without
 * tanh's cancellation). The shaders and kernels use the same expressions.
 * Both paths are the same code (libm's expf and erff); the fast one runs
 * chunks in parallel. */
#include "cpu.h"

static inline float act_grad_element(int32_t kind, float x) {
    switch (kind) {
    case PCLIP_ACT_QUICK_GELU: {
        const float s = 1.0f / (1.0f + expf(-1.702f * x));
        return s + 1.702f * x * s * (1.0f - s);
    }
    case PCLIP_ACT_GELU:
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
               x * expf(-0.5f * x * x) * 0.39894228040143268f;
    case PCLIP_ACT_GELU_TANH: {
        const float c = 0.79788456080286536f;
        const float u = c * (x + 0.044715f * x * x * x);
        const float s = 1.0f / (1.0f + expf(-2.0f * u));
        return s + 2.0f * x * s * (1.0f - s) * c * (1.0f + 0.134145f * x * x);
    }
    default: return 1.0f;
    }
}

static void act_grad_span(int32_t kind, const float *x, const float *dy, float *y, int64_t lo,
                          int64_t hi) {
    for (int64_t i = lo; i < hi; i++) y[i] = dy[i] * act_grad_element(kind, x[i]);
}

/* ---- reference ---- */

pclip_status pclip__cpu_act_grad_ref(const pclip__cpu_node *n) {
    const pclip__act_grad_params *p = &n->t->params.act_grad;
    act_grad_span(p->kind, n->src[0], n->src[1], n->dst, 0, p->n);
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

pclip_status pclip__cpu_act_grad_fast(const pclip__cpu_node *n) {
    const pclip__act_grad_params *p = &n->t->params.act_grad;
    const int64_t count = p->n, chunk = 4096, chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for num_threads(n->threads) schedule(static) if (count >= PCLIP__CPU_PAR_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t lo = c * chunk, hi = count - lo < chunk ? count : lo + chunk;
        act_grad_span(p->kind, n->src[0], n->src[1], n->dst, lo, hi);
    }
    return PCLIP_STATUS_OK;
}
