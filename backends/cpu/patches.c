/* y[b*G+g, c*p*p+i*p+j] = x[b, c, gy*p+i, gx*p+j] (im2col)
 *
 * Each output row is one patch, flattened in the order of a conv weight
 * [width, channels, p, p], so the patch embedding is a plain linear layer.
 * Pure data movement: the fast path copies p floats at a time and must be
 * bit-exact. */
#include <string.h>

#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_patches_ref(const pclip__cpu_node *n) {
    const pclip__patches_params *p = &n->t->params.patches;
    const float *x = n->src[0];
    const int64_t C = p->channels, S = p->size, P = p->patch, G = S / P;
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t gy = 0; gy < G; gy++)
            for (int64_t gx = 0; gx < G; gx++) {
                float *y = n->dst + ((b * G + gy) * G + gx) * C * P * P;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t i = 0; i < P; i++)
                        for (int64_t j = 0; j < P; j++)
                            y[(c * P + i) * P + j] =
                                x[((b * C + c) * S + gy * P + i) * S + gx * P + j];
            }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

/* The input is read in order, a band of P image rows (one row of patches of
 * one channel) at a time, each image row scattered in P-float pieces to the
 * G patches it crosses. */
pclip_status pclip__cpu_patches_fast(const pclip__cpu_node *n) {
    const pclip__patches_params *p = &n->t->params.patches;
    const float *x = n->src[0];
    const int64_t C = p->channels, S = p->size, P = p->patch, G = S / P;
    const int64_t bands = p->batch * C * G, row = C * P * P;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (bands * P * S >= 4 * PCLIP__CPU_PAR_MIN)
    for (int64_t band = 0; band < bands; band++) {
        const int64_t b = band / (C * G), c = band / G % C, gy = band % G;
        for (int64_t i = 0; i < P; i++) {
            const float *src = x + ((b * C + c) * S + gy * P + i) * S;
            float *dst = n->dst + (b * G + gy) * G * row + (c * P + i) * P;
            for (int64_t gx = 0; gx < G; gx++)
                memcpy(dst + gx * row, src + gx * P, (size_t)P * sizeof *dst);
        }
    }
    return PCLIP_STATUS_OK;
}
