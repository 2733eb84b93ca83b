/* What the model's three encoder files share: the float32 weight store
 * (weights.c), the text and vision graph builders (encoders.c), and the
 * order of the tensors a builder names for its caller (encode.c). */
#ifndef PCLIP_ENCODERS_H
#define PCLIP_ENCODERS_H

#include "graph/graph.h"
#include "model/model.h"

/* ---- float32 weights (weights.c) ---- */

/* Makes the weight store of m if it has none. */
pclip_status pclip__weights_open(struct pclip_model *m);
/* Frees the store and every converted or fused copy. */
void pclip__weights_destroy(struct pclip_model *m);

/* The checkpoint tensor `name` as float32: read in place when the file holds
 * aligned F32, converted once otherwise. *mapped (may be NULL) says whether
 * the data lies in the file map. NULL on failure, with the message in the
 * context and the status kept for pclip__weights_status. Needs
 * pclip__weights_open first. borrowed: valid until the model is destroyed. */
const float *pclip__weight_f32(struct pclip_model *m, const char *name, bool *mapped);
/* q, k and v projections of `layer` stacked into one [3 * width, width]
 * weight (bias: [3 * width]), so that one matmul produces the attention op's
 * qkv input. Made once; the pages of the three parts are given back. */
const float *pclip__weight_qkv(struct pclip_model *m, const char *prefix, int32_t layer,
                               int64_t width, bool bias);
/* The status of the last weight that failed since the last reset, or OK. */
pclip_status pclip__weights_status(const struct pclip_model *m);
void pclip__weights_status_reset(struct pclip_model *m);

/* ---- the encoder graphs (encoders.c) ---- */

/* The tensors a builder names, in io[] of pclip__graph_build_fn order. */
enum {
    PCLIP__ENC_INPUT,       /* text: ids [batch * seq] i32; vision: pixels [batch, C, S, S] */
    PCLIP__ENC_POOL_ROWS,   /* [batch] i32: the row of each sequence that is pooled */
    PCLIP__ENC_POOLED,      /* [batch, hidden] */
    PCLIP__ENC_EMBEDS,      /* [batch, projection_dim] */
    PCLIP__ENC_EMBEDS_NORM, /* [batch, projection_dim], rows L2-normalised */
    PCLIP__ENC_IO_COUNT
};

/* The text tower for `batch` sequences of `seq` tokens (seq <= context). */
pclip_status pclip__encoder_build_text(struct pclip_model *m, pclip__graph *g, int32_t batch,
                                       int32_t seq, pclip__tensor **io);
/* The vision tower for `batch` images. */
pclip_status pclip__encoder_build_vision(struct pclip_model *m, pclip__graph *g, int32_t batch,
                                         pclip__tensor **io);

#endif
