/* p -= lr[0] * g, in place
 *
 * The update of a PARAM by one gradient step; lr is an input tensor, so each
 * run may use another rate. One multiply and one subtract per element, in
 * that order (no FMA contraction: the build has -ffp-contract=off), so the
 * fast path is bit-exact with the reference. */
#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_sgd_ref(const pclip__cpu_node *n) {
    const pclip__sgd_params *p = &n->t->params.sgd;
    float *w = n->dst; /* = src[0]: the op writes its first source */
    const float *g = n->src[1];
    const float lr = *(const float *)n->src[2];
    for (int32_t i = 0; i < p->n; i++) w[i] = w[i] - lr * g[i];
    return PCLIP_STATUS_OK;
}

/* ---- fast: the same loop over threads (the compiler vectorises it) ---- */

pclip_status pclip__cpu_sgd_fast(const pclip__cpu_node *n) {
    const pclip__sgd_params *p = &n->t->params.sgd;
    float *restrict w = n->dst;
    const float *restrict g = n->src[1];
    const float lr = *(const float *)n->src[2];
    const int64_t count = p->n;
#pragma omp parallel for num_threads(n->threads) schedule(static) if (count >= 8 * PCLIP__CPU_PAR_MIN)
    for (int64_t i = 0; i < count; i++) w[i] = w[i] - lr * g[i];
    return PCLIP_STATUS_OK;
}
