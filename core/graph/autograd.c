/* The backward table: for each op, the builder of the ops that compute the
 * gradient of a loss with respect to one of its sources, given the gradient
 * with respect to its result. NULL where the op (or that source) is not
 * differentiable yet; the training issue adds the rest (activations, layer
 * and L2 norms, broadcasting adds through a row reduction, weight gradients
 * of matmul through a transposed operand).
 *
 * Every builder here is checked against finite differences by the parity
 * harness (pclip__parity_grad_run), on every backend. */
#include "graph/graph.h"

/* y = a * s: da = dy * s */
static pclip__tensor *scale_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                     pclip__tensor *dy) {
    if (k != 0) return NULL;
    return pclip__scale(g, "d_scale", dy, t->params.scale.s);
}

static bool same_shape(const pclip__tensor *a, const pclip__tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

/* y = a + b (b not broadcast): da = db = dy */
static pclip__tensor *add_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                   pclip__tensor *dy) {
    if (k > 1 || !same_shape(t->src[0], t->src[1])) return NULL;
    return pclip__scale(g, k ? "d_add_b" : "d_add_a", dy, 1.0f);
}

/* y = a * b (b not broadcast): da = dy * b, db = dy * a */
static pclip__tensor *mul_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                   pclip__tensor *dy) {
    if (k > 1 || !same_shape(t->src[0], t->src[1])) return NULL;
    return pclip__mul(g, k ? "d_mul_b" : "d_mul_a", dy, t->src[1 - k]);
}

/* y = a @ w^T + bias + residual (a linear layer without activation):
 * da = dy @ w, dresidual = dy. */
static pclip__tensor *matmul_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                      pclip__tensor *dy) {
    const pclip__matmul_params *p = &t->params.matmul;
    if (p->batch != 1 || !p->trans_b || p->act != 0 || t->src[1]->ndim != 2) return NULL;
    if (k == 3) return p->has_residual ? pclip__scale(g, "d_residual", dy, 1.0f) : NULL;
    if (k != 0) return NULL;
    const int64_t dne[3] = {1, p->M, p->N}, wne[3] = {1, p->N, p->K};
    pclip__tensor *da = pclip__matmul(g, "d_linear_a", pclip__reshape(g, dy, 3, dne),
                                      pclip__reshape(g, t->src[1], 3, wne), false);
    return da ? pclip__reshape(g, da, t->src[0]->ndim, t->src[0]->ne) : NULL;
}

/* loss = clip_loss(s, t): d s and d t by one op each (clip_loss_grad which
 * 0 and 1); dy is the loss's [1] gradient. */
static pclip__tensor *clip_loss_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                         pclip__tensor *dy) {
    if (k > 1) return NULL;
    return pclip__clip_loss_grad(g, k ? "d_clip_loss_t" : "d_clip_loss_s", t->src[0], t->src[1], dy,
                                 k);
}

pclip__backward_fn pclip__op_backward[PCLIP__OP_COUNT] = {
    [PCLIP__OP_MATMUL] = matmul_backward,
    [PCLIP__OP_ADD] = add_backward,
    [PCLIP__OP_MUL] = mul_backward,
    [PCLIP__OP_SCALE] = scale_backward,
    [PCLIP__OP_CLIP_LOSS] = clip_loss_backward,
};

pclip__tensor *pclip__backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                               pclip__tensor *dy) {
    if (!t || !dy || (unsigned)t->op >= PCLIP__OP_COUNT || k < 0 || k >= t->n_src || !t->src[k] ||
        !pclip__op_backward[t->op])
        return NULL;
    return pclip__op_backward[t->op](g, t, k, dy);
}
