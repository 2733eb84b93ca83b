/* y[b, 0] = cls, y[b, 1+t] = x[b*T+t]
 *
 * Prepends the class embedding to each image's patch rows (x [batch * T,
 * W], cls [W], y [batch * (T + 1), W]). Pure data movement: bit-exact. */
#include <string.h>

#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_class_concat_ref(const pclip__cpu_node *n) {
    const pclip__class_concat_params *p = &n->t->params.class_concat;
    const float *x = n->src[0], *cls = n->src[1];
    const int64_t T = p->tokens, W = p->width;
    for (int64_t b = 0; b < p->batch; b++) {
        float *y = n->dst + b * (T + 1) * W;
        for (int64_t w = 0; w < W; w++) y[w] = cls[w];
        for (int64_t t = 0; t < T; t++)
            for (int64_t w = 0; w < W; w++) y[(1 + t) * W + w] = x[(b * T + t) * W + w];
    }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

pclip_status pclip__cpu_class_concat_fast(const pclip__cpu_node *n) {
    const pclip__class_concat_params *p = &n->t->params.class_concat;
    const float *x = n->src[0], *cls = n->src[1];
    const int64_t T = p->tokens, W = p->width;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if ((int64_t)p->batch * T * W >= 4 * PCLIP__CPU_PAR_MIN)
    for (int64_t b = 0; b < p->batch; b++) {
        float *y = n->dst + b * (T + 1) * W;
        memcpy(y, cls, (size_t)W * sizeof *y);
        memcpy(y + W, x + b * T * W, (size_t)(T * W) * sizeof *y);
    }
    return PCLIP_STATUS_OK;
}
