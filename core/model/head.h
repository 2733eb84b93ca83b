/* The MLP projection head (`--head DIR`): its files, DIR/head.json and
 * DIR/head.safetensors, read and written with every check, and what the
 * encoders need to run it in place of CLIP's linear projections.
 *
 * Per tower, on the pooled features x [batch, D]:
 *   projected = x @ projection.weight^T + projection.bias         [batch, E]
 *   h = gelu_erf(projected) @ fc.weight^T + fc.bias + projected   (dropout: identity)
 *   out = LayerNorm(h; layer_norm.weight, layer_norm.bias, eps)
 * then L2 normalisation as for CLIP's embeddings; logit_scale replaces the
 * checkpoint's. Training the head is not here (core/train). */
#ifndef PCLIP_HEAD_H
#define PCLIP_HEAD_H

#include "internal.h"

#define PCLIP__HEAD_JSON "head.json"
#define PCLIP__HEAD_WEIGHTS "head.safetensors"
#define PCLIP__HEAD_FORMAT "portclip-head"
#define PCLIP__HEAD_VERSION 1

/* One tower's weights, float32, row-major. */
typedef struct pclip__head_tower {
    float *proj_w; /* [E, D]  "<tower>.projection.weight" */
    float *proj_b; /* [E]     "<tower>.projection.bias" */
    float *fc_w;   /* [E, E]  "<tower>.fc.weight" */
    float *fc_b;   /* [E]     "<tower>.fc.bias" */
    float *ln_w;   /* [E]     "<tower>.layer_norm.weight" */
    float *ln_b;   /* [E]     "<tower>.layer_norm.bias" */
} pclip__head_tower;

typedef struct pclip__head {
    int32_t embed_dim;  /* E */
    int32_t vision_dim; /* D of the vision tower: its hidden_size */
    int32_t text_dim;   /* D of the text tower */
    double dropout;     /* training only; identity at inference */
    double layer_norm_eps;
    float logit_scale; /* "logit_scale" [] */
    pclip__head_tower vision, text;
    char *dir;       /* where it was loaded from (NULL for a head made in memory) */
    uint64_t digest; /* of head.json's and head.safetensors' bytes as loaded (0 in memory) */
} pclip__head;

/* A head with zero-filled weights of these sizes (dropout 0, eps 1e-5,
 * logit_scale ln(1/0.07), as CLIP initialises it). */
pclip_status pclip__head_create(pclip_ctx_t ctx, int32_t embed_dim, int32_t vision_dim,
                                int32_t text_dim, pclip__head **out);
void pclip__head_destroy(pclip__head *h);

/* Writes DIR/head.json and DIR/head.safetensors (F32 tensors), each
 * atomically; DIR is created when absent (its parent must exist). */
pclip_status pclip__head_save(pclip_ctx_t ctx, const char *dir, const pclip__head *head);

/* Reads DIR/head.json and DIR/head.safetensors and checks them: the JSON's
 * fields (format, version, kind "mlp", integer dims, dropout in [0, 1),
 * activation "gelu", eps > 0; no unknown field), every tensor present with
 * the shape the dims ask for, F32, finite values, nothing extra. Errors name
 * the file and the field or tensor (expected against found shape). */
pclip_status pclip__head_load(pclip_ctx_t ctx, const char *dir, pclip__head **out);

#endif
