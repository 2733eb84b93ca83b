/* The backward table and reverse mode.
 *
 * pclip__op_backward[op] builds the ops that compute the gradient of a loss
 * with respect to one source of an op, given the gradient with respect to
 * its result. NULL where the op (or that source) is not differentiable:
 * softmax, attention, patches, class_concat, gather_rows, topk, sgd, the
 * training ops themselves, mul with broadcasting and a linear layer with a
 * fused activation. pclip__gradients walks a graph backwards over this
 * table.
 *
 * Every builder here is checked against finite differences by the parity
 * harness (pclip__parity_grad_run), on every backend. */
#include <stdio.h>
#include <string.h>

#include "graph/graph.h"

/* ---- the backward builders ---- */

static bool same_shape(const pclip__tensor *a, const pclip__tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

/* x viewed as [rows, cols] with cols its innermost size. */
static pclip__tensor *as_2d(pclip__graph *g, pclip__tensor *x) {
    const int64_t ne[2] = {pclip__nrows(x), x->ne[x->ndim - 1]};
    return pclip__reshape(g, x, 2, ne);
}

/* x viewed with t's shape (same element count). */
static pclip__tensor *like(pclip__graph *g, pclip__tensor *x, const pclip__tensor *t) {
    return x ? pclip__reshape(g, x, t->ndim, t->ne) : NULL;
}

/* y = a * s: da = dy * s */
static pclip__tensor *scale_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                     pclip__tensor *dy) {
    if (k != 0) return NULL;
    return pclip__scale(g, "d_scale", dy, t->params.scale.s);
}

/* Whether b [cols] (or [1, .., 1, cols]) is broadcast over the rows of a
 * [.., cols]. */
static bool row_broadcast(const pclip__tensor *a, const pclip__tensor *b) {
    const int64_t cols = a->ne[a->ndim - 1];
    return b->ne[b->ndim - 1] == cols && pclip__nelements(b) == cols;
}

/* y = a + b: da = dy; db = dy (same shape) or sum_rows(dy) (b [cols]
 * broadcast over a's rows). */
static pclip__tensor *add_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                   pclip__tensor *dy) {
    const pclip__tensor *a = t->src[0], *b = t->src[1];
    if (k == 0) return pclip__scale(g, "d_add_a", dy, 1.0f);
    if (k != 1) return NULL;
    if (same_shape(a, b)) return pclip__scale(g, "d_add_b", dy, 1.0f);
    if (!row_broadcast(a, b)) return NULL;
    return like(g, pclip__sum_rows(g, "d_add_b", as_2d(g, dy)), b);
}

/* y = a * b (b not broadcast): da = dy * b, db = dy * a */
static pclip__tensor *mul_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                   pclip__tensor *dy) {
    if (k > 1 || !same_shape(t->src[0], t->src[1])) return NULL;
    return pclip__mul(g, k ? "d_mul_b" : "d_mul_a", dy, t->src[1 - k]);
}

/* [1, r, c] view of a 2-D tensor. */
static pclip__tensor *batch1(pclip__graph *g, pclip__tensor *x, int64_t r, int64_t c) {
    const int64_t ne[3] = {1, r, c};
    return pclip__reshape(g, x, 3, ne);
}

/* Two forms, without activation:
 *   a linear layer y = a @ w^T + bias + residual (a [.., K], w [N, K]):
 *     da = dy @ w, dw = dy^T @ a, dbias = sum_rows(dy), dresidual = dy;
 *   a product of one pair y [1, M, N] = a [1, M, K] @ op(b), both operands
 *   any tensors (CLIP's logits I @ T^T):
 *     trans_b (b [1, N, K]): da = dy @ b,   db = dy^T @ a
 *     else    (b [1, K, N]): da = dy @ b^T, db = a^T @ dy. */
static pclip__tensor *matmul_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                      pclip__tensor *dy) {
    const pclip__matmul_params *p = &t->params.matmul;
    pclip__tensor *a = t->src[0], *b = t->src[1];
    if (p->batch != 1 || p->act != 0) return NULL;
    const int64_t M = p->M, N = p->N, K = p->K;
    if (b->ndim == 2 && p->trans_b) { /* linear */
        pclip__tensor *dy2 = batch1(g, dy, M, N);
        switch (k) {
        case 0: return like(g, pclip__matmul(g, "d_linear_a", dy2, batch1(g, b, N, K), false), a);
        case 1: {
            pclip__tensor *dyt = pclip__transpose(g, "d_linear_dyT", as_2d(g, dy));
            return like(
                g, pclip__matmul(g, "d_linear_w", batch1(g, dyt, N, M), batch1(g, a, M, K), false),
                b);
        }
        case 2: return p->has_bias ? pclip__sum_rows(g, "d_linear_bias", as_2d(g, dy)) : NULL;
        case 3: return p->has_residual ? pclip__scale(g, "d_residual", dy, 1.0f) : NULL;
        default: return NULL;
        }
    }
    if (b->ndim != 3 || a->ndim != 3 || b->ne[0] != 1 || p->has_bias || p->has_residual)
        return NULL;
    if (k == 0) /* [1, M, K] */
        return pclip__matmul(g, "d_matmul_a", dy, b, !p->trans_b);
    if (k != 1) return NULL;
    if (p->trans_b) { /* db [1, N, K] = dy^T [N, M] @ a [M, K] */
        pclip__tensor *dyt = pclip__transpose(g, "d_matmul_dyT", as_2d(g, dy));
        return pclip__matmul(g, "d_matmul_b", batch1(g, dyt, N, M), a, false);
    }
    /* db [1, K, N] = a^T [K, M] @ dy [M, N] */
    pclip__tensor *at = pclip__transpose(g, "d_matmul_aT", as_2d(g, a));
    return pclip__matmul(g, "d_matmul_b", batch1(g, at, K, M), dy, false);
}

/* y = act(x): dx = dy * act'(x) */
static pclip__tensor *act_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                   pclip__tensor *dy) {
    if (k != 0) return NULL;
    return pclip__act_grad(g, "d_act", t->src[0], dy, (pclip_act)t->params.act.kind);
}

/* y = layer_norm(x, gamma, beta): dx = layer_norm_grad mode 0,
 * dgamma = sum_rows(dy * xhat), dbeta = sum_rows(dy) */
static pclip__tensor *layer_norm_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                          pclip__tensor *dy) {
    const float eps = t->params.layer_norm.eps;
    pclip__tensor *x = t->src[0], *gamma = t->src[1];
    switch (k) {
    case 0: return pclip__layer_norm_grad(g, "d_layer_norm_x", x, gamma, dy, eps, 0);
    case 1:
        return pclip__sum_rows(
            g, "d_layer_norm_gamma",
            as_2d(g, pclip__layer_norm_grad(g, "d_layer_norm_dy_xhat", x, gamma, dy, eps, 1)));
    case 2: return pclip__sum_rows(g, "d_layer_norm_beta", as_2d(g, dy));
    default: return NULL;
    }
}

/* y = l2_norm(x): dx = l2_norm_grad(x, dy) */
static pclip__tensor *l2_norm_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                       pclip__tensor *dy) {
    if (k != 0) return NULL;
    return pclip__l2_norm_grad(g, "d_l2_norm", t->src[0], dy, t->params.l2_norm.eps);
}

/* y = x^T: dx = dy^T */
static pclip__tensor *transpose_backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                         pclip__tensor *dy) {
    (void)t;
    return k == 0 ? pclip__transpose(g, "d_transpose", dy) : NULL;
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
    [PCLIP__OP_MATMUL] = matmul_backward,   [PCLIP__OP_ADD] = add_backward,
    [PCLIP__OP_MUL] = mul_backward,         [PCLIP__OP_SCALE] = scale_backward,
    [PCLIP__OP_ACT] = act_backward,         [PCLIP__OP_LAYER_NORM] = layer_norm_backward,
    [PCLIP__OP_L2_NORM] = l2_norm_backward, [PCLIP__OP_TRANSPOSE] = transpose_backward,
    [PCLIP__OP_CLIP_LOSS] = clip_loss_backward,
};

pclip__tensor *pclip__backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                               pclip__tensor *dy) {
    if (!t || !dy || (unsigned)t->op >= PCLIP__OP_COUNT || k < 0 || k >= t->n_src || !t->src[k] ||
        !pclip__op_backward[t->op])
        return NULL;
    return pclip__op_backward[t->op](g, t, k, dy);
}

/* ---- reverse mode ---- */

/* d loss / d loss: a weight over static storage, so that the graph needs no
 * buffer of its own for it (weights borrow their host data; this one lives
 * as long as the program, and backends share it through their weight
 * caches like any other). */
static const float one = 1.0f;

/* Drops every tensor made since `n` (a failed call leaves the graph as it
 * was: nothing else points at them). */
static void rollback(pclip__graph *g, int32_t n, pclip_status status) {
    for (int32_t i = n; i < g->n_tensors; i++) pclip__free(g->tensors[i]);
    if (g->n_tensors > n) g->planned = false;
    g->n_tensors = n;
    g->status = status;
}

static bool owns(const pclip__graph *g, const pclip__tensor *t) {
    return t && t->id >= 0 && t->id < g->n_tensors && g->tensors[t->id] == t;
}

/* The tensor whose value t's value is computed from, for a reshape view
 * (op NONE): its storage; else NULL. */
static pclip__tensor *view_base(const pclip__tensor *t) {
    return t->op == PCLIP__OP_NONE && t->view_src ? t->view_src : NULL;
}

pclip_status pclip__gradients(pclip__graph *g, pclip__tensor *loss, int32_t n,
                              pclip__tensor *const *wrt, pclip__tensor **grads) {
    if (!g) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!owns(g, loss) || pclip__nelements(loss) != 1 || loss->dtype != PCLIP__DTYPE_F32)
        return pclip__err(g->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "graph: gradients: the loss must be an f32 tensor of one element of "
                          "this graph (got '%s')",
                          loss ? loss->name : "NULL");
    if (n < 0 || (n > 0 && (!wrt || !grads)))
        return pclip__err(g->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "graph: gradients: %d tensors with %s", n,
                          wrt ? "no results" : "none given");
    for (int32_t i = 0; i < n; i++)
        if (!owns(g, wrt[i]) || wrt[i]->dtype != PCLIP__DTYPE_F32)
            return pclip__err(g->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "graph: gradients: wrt[%d] ('%s') is not an f32 tensor of this graph",
                              i, wrt[i] ? wrt[i]->name : "NULL");
    if (g->status)
        return pclip__err(g->ctx, g->status, "graph: gradients: the graph has a failed builder");
    const int32_t n0 = g->n_tensors, top = loss->id;
    const pclip_status status0 = g->status;
    /* dep[i]: tensor i depends on a wrt tensor; need[i]: and loss depends on it */
    bool *dep = pclip__calloc((size_t)n0, sizeof *dep),
         *need = pclip__calloc((size_t)n0, sizeof *need);
    pclip__tensor **grad = pclip__calloc((size_t)n0, sizeof *grad);
    pclip_status st = PCLIP_STATUS_OK;
    if (!dep || !need || !grad) {
        st = pclip__err(g->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "graph: out of memory");
        goto done;
    }
    for (int32_t i = 0; i < n; i++) dep[wrt[i]->id] = true;
    for (int32_t i = 0; i <= top; i++) { /* creation order is execution order */
        const pclip__tensor *t = g->tensors[i];
        for (int32_t k = -1; k < t->n_src; k++) {
            const pclip__tensor *s = k < 0 ? view_base(t) : t->src[k];
            if (s && !owns(g, s)) {
                st = pclip__err(g->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                                "graph: gradients: '%s' reads '%s' of another graph", t->name,
                                s->name);
                goto done;
            }
        }
        if (view_base(t)) dep[i] |= dep[view_base(t)->id];
        for (int32_t k = 0; k < t->n_src; k++)
            if (t->src[k]) dep[i] |= dep[t->src[k]->id];
    }
    need[top] = dep[top];
    for (int32_t i = top; i >= 0; i--) {
        const pclip__tensor *t = g->tensors[i];
        if (!need[i]) continue;
        if (view_base(t)) need[view_base(t)->id] |= dep[view_base(t)->id];
        for (int32_t k = 0; k < t->n_src; k++)
            if (t->src[k]) need[t->src[k]->id] |= dep[t->src[k]->id];
    }
    if (need[top]) {
        grad[top] = pclip__weight(g, "d_loss", loss->ndim, loss->ne, &one);
        if (!grad[top]) goto built;
    }
    for (int32_t i = top; i >= 0; i--) {
        pclip__tensor *t = g->tensors[i], *dy = grad[i];
        if (!need[i] || !dy) continue;
        /* contributions to each source: a view's goes to its storage */
        for (int32_t k = view_base(t) ? -1 : 0; k < (view_base(t) ? 0 : t->n_src); k++) {
            pclip__tensor *s = k < 0 ? view_base(t) : t->src[k];
            if (!s || !need[s->id]) continue;
            pclip__tensor *d = k < 0 ? like(g, dy, s) : pclip__backward(g, t, k, dy);
            if (!d) {
                if (g->status) goto built;
                st = pclip__err(g->ctx, PCLIP_STATUS_UNSUPPORTED,
                                "graph: gradients: op %s '%s' has no gradient with respect to "
                                "its source %d ('%s')",
                                pclip__op_name(t->op), t->name, k, s->name);
                goto done;
            }
            if (pclip__nelements(d) != pclip__nelements(s)) {
                st = pclip__err(g->ctx, PCLIP_STATUS_INTERNAL,
                                "graph: gradients: the backward of op %s '%s' gave source %d a "
                                "gradient of another shape",
                                pclip__op_name(t->op), t->name, k);
                goto done;
            }
            if (!same_shape(d, s) && !(d = like(g, d, s))) goto built;
            char name[96];
            snprintf(name, sizeof name, "d_%.90s", s->name);
            grad[s->id] = grad[s->id] ? pclip__add(g, name, grad[s->id], d) : d;
            if (!grad[s->id]) goto built;
        }
    }
built:
    if (g->status) st = g->status;
done:
    if (st) {
        rollback(g, n0, status0);
    } else {
        for (int32_t i = 0; i < n; i++) grads[i] = need[wrt[i]->id] ? grad[wrt[i]->id] : NULL;
    }
    pclip__free(dep);
    pclip__free(need);
    pclip__free(grad);
    return st;
}
