/* Trainable projection heads on one backend: their PARAM tensors with the
 * AdamW moments, the training step as one graph (forward of both heads, L2
 * normalisation, the contrastive loss, the backward ops, the AdamW updates)
 * and the forward alone for evaluation, each compiled per batch size.
 *
 * Tensor names are the export names: linear heads use the checkpoint's
 * (visual_projection.weight [E, Dv], text_projection.weight [E, Dt]), mlp
 * heads the head format's (vision.projection.weight ... text.layer_norm.bias,
 * core/model/head.h); both have logit_scale [1]. */
#ifndef PCLIP_TRAIN_HEADS_H
#define PCLIP_TRAIN_HEADS_H

#include "graph/backend.h"

#define PCLIP__HEADS_MAX_PARAMS 13
#define PCLIP__HEADS_TRAIN_SLOTS 2 /* training graphs kept compiled (batch sizes) */
#define PCLIP__HEADS_EVAL_SLOTS 4  /* embedding graphs kept compiled (tower, batch size) */

typedef struct pclip__head_param {
    char name[64];
    pclip__param *p, *m, *v; /* value, AdamW's first and second moments */
    int32_t ndim;
    int64_t ne[2];
    int64_t n;
    int32_t tower; /* 0 vision, 1 text, -1 logit_scale */
    bool decay;    /* in the weight-decay group (every head tensor, not logit_scale) */
} pclip__head_param;

typedef struct pclip__heads_graph {
    int32_t batch;
    bool train;
    pclip__graph *g;
    pclip__exec *e;
    pclip__tensor *fi, *ft;         /* inputs: pooled features */
    pclip__tensor *mask_i, *mask_t; /* inputs: dropout masks (mlp with dropout), else NULL */
    pclip__tensor *h_decay, *h_plain; /* inputs: AdamW's per-step values */
    pclip__tensor *loss;              /* output (train) */
    pclip__tensor *emb_i, *emb_t;     /* outputs (eval): L2-normalised embeddings */
} pclip__heads_graph;

typedef struct pclip__heads {
    pclip_ctx_t ctx;
    struct pclip_backend *b;
    int32_t kind; /* pclip_head_kind */
    int32_t dv, dt, e;
    float dropout, ln_eps, norm_eps;
    double beta1, beta2;
    float adam_eps, clamp_max;
    pclip__head_param prm[PCLIP__HEADS_MAX_PARAMS];
    int32_t n_prm;
    pclip__heads_graph graphs[PCLIP__HEADS_TRAIN_SLOTS + PCLIP__HEADS_EVAL_SLOTS]; /* train, then eval */
    float *mask_buf;
    int64_t mask_cap;
} pclip__heads;

/* Heads of `kind` for pooled features of dv (vision) and dt (text) values,
 * embedding to e, with their params made (zero) on b. */
pclip_status pclip__heads_create(pclip_ctx_t ctx, struct pclip_backend *b, int32_t kind,
                                 int32_t dv, int32_t dt, int32_t e, float dropout,
                                 pclip__heads **out);
void pclip__heads_destroy(pclip__heads *h);

/* The param `name`; NULL when there is none. */
pclip__head_param *pclip__heads_find(pclip__heads *h, const char *name);
/* Value (which 0), first moment (1) or second moment (2) of a param, whole. */
pclip_status pclip__heads_write(pclip__heads *h, pclip__head_param *p, int which,
                                const float *data);
pclip_status pclip__heads_read(pclip__heads *h, pclip__head_param *p, int which, float *data);

/* One optimiser step on n pairs (rows of fi [n, dv] and ft [n, dt]), n >= 2:
 * *loss is the loss before the update. step is 1-based (AdamW's bias
 * correction); dropout_seed picks the step's dropout masks. */
pclip_status pclip__heads_step(pclip__heads *h, const float *fi, const float *ft, int32_t n,
                               double lr, double weight_decay, int64_t step,
                               uint64_t dropout_seed, float *loss);

/* L2-normalised embeddings of n rows of either tower (fi or ft may be NULL
 * with its output), in batches of at most `batch`. */
pclip_status pclip__heads_embed(pclip__heads *h, const float *fi, const float *ft, int64_t n,
                                int32_t batch, float *emb_i, float *emb_t);

#endif
