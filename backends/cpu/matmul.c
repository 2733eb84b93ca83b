/* y = act(a @ op(b) + bias) + residual
 *
 * a [batch, M, K]; b [batch or 1, N, K] with trans_b (a weight as nn.Linear
 * stores it) or [batch or 1, K, N]; bias [N] and residual [batch, M, N] are
 * optional (src[2], src[3] may be NULL); act is applied before the residual.
 * The reference is the plain triple loop with a float accumulator. The fast
 * path is a oneDNN matmul primitive made at compile time (cpu_dnnl.c), with
 * bias, activation and residual fused into it. */
#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_matmul_ref(const pclip__cpu_node *n) {
    const pclip__matmul_params *p = &n->t->params.matmul;
    const int64_t M = p->M, N = p->N, K = p->K;
    const float *bias = n->src[2];
    for (int64_t bi = 0; bi < p->batch; bi++) {
        const float *a = (const float *)n->src[0] + bi * M * K;
        const float *b = (const float *)n->src[1] + bi * p->b_batch_stride;
        const float *res = n->src[3] ? (const float *)n->src[3] + bi * M * N : NULL;
        float *y = n->dst + bi * M * N;
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N; j++) {
                float acc = 0.0f;
                for (int64_t k = 0; k < K; k++)
                    acc += a[m * K + k] * (p->trans_b ? b[j * K + k] : b[k * N + j]);
                if (bias) acc += bias[j];
                acc = pclip__cpu_act_ref1(p->act, acc);
                if (res) acc += res[m * N + j];
                y[m * N + j] = acc;
            }
    }
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

pclip_status pclip__cpu_matmul_fast(const pclip__cpu_node *n) {
    return pclip__cpu_matmul_execute(n);
}
