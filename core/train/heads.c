/* Trainable heads as graph ops (heads.h). The training step is one graph:
 *
 *   ei = head_v(fi), et = head_t(ft)          linear: x @ W^T
 *                                             mlp: p = x @ W1^T + b1; h = gelu(p) @ W2^T + b2;
 *                                                  h = dropout(h) + p; LayerNorm(h)
 *   in = ei / ||ei||, tn = et / ||et||
 *   loss = clip_loss(in @ tn^T, logit_scale)
 *   gradients of loss (the backward table), then one adamw op per param
 *
 * The updates are created last, so they run after every read of the values
 * they change; the loss is an output, read after the run (its value before
 * the update). Dropout is a mask input (0 or 1 / (1 - p)) drawn on the host
 * per step from a seed, so a resumed run draws the same masks. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "heads.h"

#define LN100 4.6051702f /* ln(100): the most logit_scale may be (CLIP) */

static void prm_set(pclip__head_param *p, const char *name, int32_t ndim, int64_t d0, int64_t d1,
                    int32_t tower, bool decay) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->ne[0] = d0;
    p->ne[1] = d1;
    p->n = ndim == 2 ? d0 * d1 : d0;
    p->tower = tower;
    p->decay = decay;
}

pclip_status pclip__heads_create(pclip_ctx_t ctx, struct pclip_backend *b, int32_t kind,
                                 int32_t dv, int32_t dt, int32_t e, float dropout,
                                 pclip__heads **out) {
    if (!b || !out || dv < 1 || dt < 1 || e < 1 || (kind != 0 && kind != 1) ||
        !(dropout >= 0.0f && dropout < 1.0f))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "heads: bad arguments (kind %d, dims %d %d %d, dropout %g)", (int)kind,
                          (int)dv, (int)dt, (int)e, (double)dropout);
    pclip__heads *h = pclip__calloc(1, sizeof *h);
    if (!h) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "heads: out of memory");
    h->ctx = ctx;
    h->b = b;
    h->kind = kind;
    h->dv = dv, h->dt = dt, h->e = e;
    h->dropout = kind == 1 ? dropout : 0.0f;
    h->ln_eps = 1e-5f;
    h->norm_eps = 0.0f; /* x / x.norm(), as CLIPModel */
    h->beta1 = 0.9, h->beta2 = 0.999;
    h->adam_eps = 1e-8f;
    h->clamp_max = LN100;
    if (kind == 0) {
        prm_set(&h->prm[h->n_prm++], "visual_projection.weight", 2, e, dv, 0, true);
        prm_set(&h->prm[h->n_prm++], "text_projection.weight", 2, e, dt, 1, true);
    } else {
        static const char *const tw[2] = {"vision", "text"};
        for (int32_t t = 0; t < 2; t++) {
            char nm[64];
            const int32_t d = t ? dt : dv;
            snprintf(nm, sizeof nm, "%s.projection.weight", tw[t]);
            prm_set(&h->prm[h->n_prm++], nm, 2, e, d, t, true);
            snprintf(nm, sizeof nm, "%s.projection.bias", tw[t]);
            prm_set(&h->prm[h->n_prm++], nm, 1, e, 0, t, true);
            snprintf(nm, sizeof nm, "%s.fc.weight", tw[t]);
            prm_set(&h->prm[h->n_prm++], nm, 2, e, e, t, true);
            snprintf(nm, sizeof nm, "%s.fc.bias", tw[t]);
            prm_set(&h->prm[h->n_prm++], nm, 1, e, 0, t, true);
            snprintf(nm, sizeof nm, "%s.layer_norm.weight", tw[t]);
            prm_set(&h->prm[h->n_prm++], nm, 1, e, 0, t, true);
            snprintf(nm, sizeof nm, "%s.layer_norm.bias", tw[t]);
            prm_set(&h->prm[h->n_prm++], nm, 1, e, 0, t, true);
        }
    }
    prm_set(&h->prm[h->n_prm++], "logit_scale", 1, 1, 0, -1, false);
    pclip_status st = PCLIP_STATUS_OK;
    for (int32_t i = 0; !st && i < h->n_prm; i++) {
        pclip__head_param *p = &h->prm[i];
        char nm[96];
        pclip__param **slot[3] = {&p->p, &p->m, &p->v};
        static const char *const suffix[3] = {"", ".exp_avg", ".exp_avg_sq"};
        for (int k = 0; !st && k < 3; k++) {
            snprintf(nm, sizeof nm, "%s%s", p->name, suffix[k]);
            st = pclip__param_create(b, nm, p->ndim, p->ne, slot[k]);
        }
    }
    if (st) {
        pclip__heads_destroy(h);
        return st;
    }
    *out = h;
    return PCLIP_STATUS_OK;
}

static void graph_free(pclip__heads_graph *gr) {
    pclip__exec_destroy(gr->e);
    pclip__graph_destroy(gr->g);
    memset(gr, 0, sizeof *gr);
}

void pclip__heads_destroy(pclip__heads *h) {
    if (!h) return;
    for (int i = 0; i < PCLIP__HEADS_TRAIN_SLOTS + PCLIP__HEADS_EVAL_SLOTS; i++)
        graph_free(&h->graphs[i]);
    for (int32_t i = 0; i < h->n_prm; i++) {
        pclip__param_destroy(h->prm[i].p);
        pclip__param_destroy(h->prm[i].m);
        pclip__param_destroy(h->prm[i].v);
    }
    pclip__free(h->mask_buf);
    pclip__free(h);
}

pclip__head_param *pclip__heads_find(pclip__heads *h, const char *name) {
    for (int32_t i = 0; h && name && i < h->n_prm; i++)
        if (!strcmp(h->prm[i].name, name)) return &h->prm[i];
    return NULL;
}

static pclip__param *prm_which(pclip__head_param *p, int which) {
    return which == 0 ? p->p : which == 1 ? p->m : p->v;
}

pclip_status pclip__heads_write(pclip__heads *h, pclip__head_param *p, int which,
                                const float *data) {
    (void)h;
    return pclip__param_write(prm_which(p, which), data);
}

pclip_status pclip__heads_read(pclip__heads *h, pclip__head_param *p, int which, float *data) {
    (void)h;
    return pclip__param_read(prm_which(p, which), data);
}

/* ---- graphs ---- */

typedef struct tower_tensors {
    pclip__tensor *t[6]; /* the tower's params, in creation order */
} tower_tensors;

/* The head of one tower on x [n, d]: its embedding [n, e], not normalised. */
static pclip__tensor *tower(pclip__heads *h, pclip__graph *g, int32_t tw, pclip__tensor *x,
                            pclip__tensor *mask, pclip__tensor *const *prm) {
    if (h->kind == 0) return pclip__linear(g, tw ? "text_proj" : "visual_proj", x, prm[0], NULL,
                                           PCLIP_ACT_NONE, NULL);
    pclip__tensor *p = pclip__linear(g, "head_projection", x, prm[0], prm[1], PCLIP_ACT_NONE, NULL);
    pclip__tensor *a = pclip__act(g, "head_gelu", p, PCLIP_ACT_GELU);
    pclip__tensor *f = pclip__linear(g, "head_fc", a, prm[2], prm[3], PCLIP_ACT_NONE, NULL);
    if (mask) f = pclip__mul(g, "head_dropout", f, mask);
    pclip__tensor *r = pclip__add(g, "head_residual", f, p);
    return pclip__layer_norm(g, "head_layer_norm", r, prm[4], prm[5], h->ln_eps);
}

/* mode 0: train, 1: embed images, 2: embed texts */
static pclip_status graph_build(pclip__heads *h, int mode, int32_t n, pclip__heads_graph *gr) {
    memset(gr, 0, sizeof *gr);
    pclip_status st = pclip__graph_create(h->ctx, &gr->g);
    if (st) return st;
    pclip__graph *g = gr->g;
    gr->batch = n;
    gr->train = mode == 0;
    pclip__tensor *pt[PCLIP__HEADS_MAX_PARAMS] = {NULL};
    for (int32_t i = 0; i < h->n_prm; i++) pt[i] = pclip__param_tensor(g, h->prm[i].p);
    const int32_t per_tower = h->kind == 0 ? 1 : 6;
    pclip__tensor *emb[2] = {NULL, NULL};
    for (int32_t tw = 0; tw < 2; tw++) {
        if (mode != 0 && mode != tw + 1) continue;
        const int64_t ne[2] = {n, tw ? h->dt : h->dv};
        pclip__tensor *x = pclip__input(g, tw ? "text_features" : "image_features",
                                        PCLIP__DTYPE_F32, 2, ne);
        pclip__tensor *mask = NULL;
        if (mode == 0 && h->dropout > 0.0f) {
            const int64_t me[2] = {n, h->e};
            mask = pclip__input(g, tw ? "text_dropout" : "image_dropout", PCLIP__DTYPE_F32, 2, me);
        }
        if (tw) gr->ft = x, gr->mask_t = mask;
        else gr->fi = x, gr->mask_i = mask;
        emb[tw] = pclip__l2_norm(g, tw ? "text_embeds" : "image_embeds",
                                 tower(h, g, tw, x, mask, pt + tw * per_tower), h->norm_eps);
    }
    if (mode == 0) {
        const int64_t be[3] = {1, n, h->e}, se[2] = {n, n}, he[1] = {3};
        pclip__tensor *s = pclip__matmul(g, "cosine", pclip__reshape(g, emb[0], 3, be),
                                         pclip__reshape(g, emb[1], 3, be), true);
        s = s ? pclip__reshape(g, s, 2, se) : NULL;
        gr->loss = pclip__clip_loss(g, "loss", s, pt[h->n_prm - 1]);
        gr->h_decay = pclip__input(g, "adamw_decay", PCLIP__DTYPE_F32, 1, he);
        gr->h_plain = pclip__input(g, "adamw_plain", PCLIP__DTYPE_F32, 1, he);
        pclip__tensor *grads[PCLIP__HEADS_MAX_PARAMS] = {NULL};
        if (gr->loss && !g->status)
            st = pclip__gradients(g, gr->loss, h->n_prm, pt, grads);
        for (int32_t i = 0; !st && i < h->n_prm; i++) {
            const pclip__head_param *p = &h->prm[i];
            if (!grads[i]) {
                st = pclip__err(h->ctx, PCLIP_STATUS_INTERNAL, "heads: the loss does not depend on '%s'",
                                p->name);
                break;
            }
            pclip__tensor *m = pclip__param_tensor(g, p->m), *v = pclip__param_tensor(g, p->v);
            if (!pclip__adamw(g, "adamw", pt[i], grads[i], m, v, p->decay ? gr->h_decay : gr->h_plain,
                              h->beta1, h->beta2, h->adam_eps,
                              p->tower < 0 ? h->clamp_max : INFINITY))
                break;
        }
        if (!st && !g->status) st = pclip__graph_output(g, gr->loss);
    } else {
        gr->emb_i = emb[0], gr->emb_t = emb[1];
        pclip__tensor *o = mode == 1 ? emb[0] : emb[1];
        if (o && !g->status) st = pclip__graph_output(g, o);
    }
    if (!st && g->status) st = g->status;
    /* the heads train and embed in fp32 whatever the encoders ran at */
    const pclip_precision saved = h->b->precision;
    h->b->precision = PCLIP_PRECISION_FP32;
    if (!st) st = pclip__exec_create(h->b, g, &gr->e);
    h->b->precision = saved;
    if (st) {
        pclip__err_prefix(h->ctx, "heads: %s graph for %d rows", mode ? "embedding" : "training",
                          (int)n);
        graph_free(gr);
    }
    return st;
}

/* The compiled graph for (mode, n): kept, or built in the slot used least recently. */
static pclip_status graph_get(pclip__heads *h, int mode, int32_t n, pclip__heads_graph **out) {
    pclip__heads_graph *slots = h->graphs + (mode == 0 ? 0 : PCLIP__HEADS_TRAIN_SLOTS);
    const int n_slots = mode == 0 ? PCLIP__HEADS_TRAIN_SLOTS : PCLIP__HEADS_EVAL_SLOTS;
    const bool want_train = mode == 0;
    for (int i = 0; i < n_slots; i++) {
        pclip__heads_graph *gr = &slots[i];
        if (gr->g && gr->batch == n && gr->train == want_train &&
            (want_train || (mode == 1) == (gr->fi != NULL))) {
            if (i) { /* most recent first */
                pclip__heads_graph tmp = *gr;
                memmove(slots + 1, slots, (size_t)i * sizeof *slots);
                slots[0] = tmp;
            }
            *out = &slots[0];
            return PCLIP_STATUS_OK;
        }
    }
    graph_free(&slots[n_slots - 1]);
    memmove(slots + 1, slots, (size_t)(n_slots - 1) * sizeof *slots);
    memset(&slots[0], 0, sizeof slots[0]);
    pclip_status st = graph_build(h, mode, n, &slots[0]);
    if (!st) *out = &slots[0];
    return st;
}

/* splitmix64: the dropout masks' generator */
static uint64_t mix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

pclip_status pclip__heads_step(pclip__heads *h, const float *fi, const float *ft, int32_t n,
                               double lr, double weight_decay, int64_t step,
                               uint64_t dropout_seed, float *loss) {
    if (!h || !fi || !ft || !loss || n < 2 || step < 1 || !(lr >= 0) || !(weight_decay >= 0))
        return pclip__err(h ? h->ctx : NULL, PCLIP_STATUS_INVALID_ARGUMENT,
                          "heads: a step needs at least 2 pairs, step >= 1, lr and weight decay >= 0");
    pclip__heads_graph *gr = NULL;
    pclip_status st = graph_get(h, 0, n, &gr);
    if (st) return st;
    /* torch.optim.AdamW: the bias corrections in double, rounded once */
    const double bc1 = 1.0 - pow(h->beta1, (double)step), bc2 = 1.0 - pow(h->beta2, (double)step);
    const float hd[3] = {(float)(1.0 - lr * weight_decay), (float)(lr / bc1), (float)sqrt(bc2)};
    const float hp[3] = {1.0f, hd[1], hd[2]};
    st = pclip__exec_write(gr->e, gr->fi, fi);
    if (!st) st = pclip__exec_write(gr->e, gr->ft, ft);
    if (!st) st = pclip__exec_write(gr->e, gr->h_decay, hd);
    if (!st) st = pclip__exec_write(gr->e, gr->h_plain, hp);
    if (!st && gr->mask_i) {
        const int64_t count = (int64_t)n * h->e;
        if (h->mask_cap < count) {
            pclip__free(h->mask_buf);
            h->mask_cap = 0;
            if (!(h->mask_buf = pclip__malloc((size_t)count * sizeof *h->mask_buf)))
                return pclip__err(h->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "heads: out of memory");
            h->mask_cap = count;
        }
        /* keep with probability 1 - p, scaled by 1 / (1 - p) as torch's dropout */
        const float keep = (float)(1.0 / (1.0 - (double)h->dropout));
        const uint64_t thresh = (uint64_t)((double)h->dropout * 18446744073709551616.0);
        uint64_t s = dropout_seed ^ ((uint64_t)step * 0xD1B54A32D192ED03ull);
        for (int tw = 0; !st && tw < 2; tw++) {
            for (int64_t i = 0; i < count; i++) h->mask_buf[i] = mix64(&s) < thresh ? 0.0f : keep;
            st = pclip__exec_write(gr->e, tw ? gr->mask_t : gr->mask_i, h->mask_buf);
        }
    }
    if (!st) st = pclip__exec_run(gr->e);
    if (!st) st = pclip__exec_read(gr->e, gr->loss, loss);
    return st;
}

pclip_status pclip__heads_embed(pclip__heads *h, const float *fi, const float *ft, int64_t n,
                                int32_t batch, float *emb_i, float *emb_t) {
    if (!h || n < 0 || batch < 1 || (fi && !emb_i) || (ft && !emb_t))
        return pclip__err(h ? h->ctx : NULL, PCLIP_STATUS_INVALID_ARGUMENT, "heads: bad arguments");
    pclip_status st = PCLIP_STATUS_OK;
    for (int tw = 0; !st && tw < 2; tw++) {
        const float *x = tw ? ft : fi;
        float *y = tw ? emb_t : emb_i;
        const int64_t d = tw ? h->dt : h->dv;
        for (int64_t r = 0; x && !st && r < n; r += batch) {
            const int32_t cnt = (int32_t)(n - r < batch ? n - r : batch);
            pclip__heads_graph *gr = NULL;
            st = graph_get(h, 1 + tw, cnt, &gr);
            if (!st) st = pclip__exec_write(gr->e, tw ? gr->ft : gr->fi, x + r * d);
            if (!st) st = pclip__exec_run(gr->e);
            if (!st) st = pclip__exec_read(gr->e, tw ? gr->emb_t : gr->emb_i, y + r * h->e);
        }
    }
    return st;
}
