/* The two CLIP encoders as op graphs, built from any CLIP config: the text
 * transformer (causal, end-of-text pooling) and the vision transformer (patch
 * embedding, class token, pre/post LayerNorm), each followed by its
 * projection. This is the file to read for what the model computes.
 *
 * Numbers follow Hugging Face's CLIPModel (= OpenAI CLIP). The builders only
 * describe the graph: the weights come from weights.c, and compiling,
 * caching and running the graphs is encode.c's job. */
#include <stdio.h>
#include <string.h>

#include "model/encoders.h"
#include "model/head.h"

/* ---- weights and names ---- */

/* The checkpoint tensor `name` as a weight of graph g with shape [a] (ndim 1)
 * or [a, b]. NULL when the weight cannot be read (the reason is kept by the
 * weight store). */
static pclip__tensor *checkpoint_weight(pclip__graph *g, struct pclip_model *m, const char *name,
                                        int32_t ndim, int64_t a, int64_t b) {
    bool mapped = false;
    const float *data = pclip__weight_f32(m, name, &mapped);
    if (!data) return NULL;
    const int64_t ne[2] = {a, b};
    pclip__tensor *t = pclip__weight(g, name, ndim, ne, data);
    if (t) t->data_mapped = mapped;
    return t;
}

/* The checkpoint tensor "<prefix>.encoder.layers.<layer>.<what>" as a weight
 * of shape [a] or [a, b]. */
static pclip__tensor *layer_weight(pclip__graph *g, struct pclip_model *m, const char *prefix,
                                   int layer, const char *what, int32_t ndim, int64_t a,
                                   int64_t b) {
    char name[160];
    snprintf(name, sizeof name, "%s.encoder.layers.%d.%s", prefix, layer, what);
    return checkpoint_weight(g, m, name, ndim, a, b);
}

/* The name of a computed tensor of one layer, "<prefix>.<layer>.<what>",
 * written to buf (which the builder copies). */
static const char *layer_node(char *buf, size_t size, const char *prefix, int layer,
                              const char *what) {
    snprintf(buf, size, "%s.%d.%s", prefix, layer, what);
    return buf;
}


/* Why a chain of builder calls ended in NULL: the graph's first failure, or
 * a weight that could not be read. */
static pclip_status graph_status(const pclip__graph *g, const struct pclip_model *m) {
    if (g->status) return g->status;
    pclip_status st = pclip__weights_status(m);
    return st ? st : PCLIP_STATUS_INTERNAL;
}

/* ---- the transformer ---- */

/* Pre-LayerNorm transformer layers on x [batch * seq, width]; returns the
 * final hidden state's pooled rows [batch, width] (rows `pool` of it).
 *
 * Only the pooled rows of the last layer's output are used, and after its
 * attention every op works row by row: the last layer gathers those rows
 * right after attention (keys and values still come from every token), so
 * its out-projection, LayerNorm and MLP run on `batch` rows instead of
 * batch * seq. The pooled rows get exactly the arithmetic they would get in
 * the full layer; for ViT-B/32 this skips about 6 % of the model's FLOPs. */
static pclip__tensor *encoder_layers(pclip__graph *g, struct pclip_model *m, const char *prefix,
                                     const pclip_tower_config *c, pclip__tensor *x,
                                     pclip__tensor *pool, int32_t batch, int32_t seq, bool causal) {
    int64_t w = c->hidden_size, ff = c->intermediate_size;
    char node[128];
    for (int l = 0; l < c->num_layers && x; l++) {
        const float *qkv_w = pclip__weight_qkv(m, prefix, l, w, false);
        const float *qkv_b = pclip__weight_qkv(m, prefix, l, w, true);
        if (!qkv_w || !qkv_b) return NULL;
        const int64_t qkv_wne[2] = {3 * w, w}, qkv_bne[1] = {3 * w};
        pclip__tensor *wqkv = pclip__weight(
            g, layer_node(node, sizeof node, prefix, l, "qkv.weight"), 2, qkv_wne, qkv_w);
        pclip__tensor *bqkv = pclip__weight(
            g, layer_node(node, sizeof node, prefix, l, "qkv.bias"), 1, qkv_bne, qkv_b);
        /* HF CLIPEncoderLayer: x = x + attn(layer_norm1(x)) */
        pclip__tensor *ln1_g = layer_weight(g, m, prefix, l, "layer_norm1.weight", 1, w, 0);
        pclip__tensor *ln1_b = layer_weight(g, m, prefix, l, "layer_norm1.bias", 1, w, 0);
        pclip__tensor *h = pclip__layer_norm(g, layer_node(node, sizeof node, prefix, l, "ln1"),
                                             x, ln1_g, ln1_b, c->layer_norm_eps);
        pclip__tensor *qkv = pclip__linear(g, layer_node(node, sizeof node, prefix, l, "qkv"), h,
                                           wqkv, bqkv, PCLIP_ACT_NONE, NULL);
        /* HF CLIP: softmax(q * head_dim^-0.5 @ k^T + causal mask) @ v */
        pclip__tensor *a = pclip__attention(g, layer_node(node, sizeof node, prefix, l, "attn"),
                                            qkv, batch, seq, c->num_heads, causal);
        if (l == c->num_layers - 1) {
            a = pclip__gather_rows(g, layer_node(node, sizeof node, prefix, l, "attn_pooled"), a,
                                   pool);
            x = pclip__gather_rows(g, layer_node(node, sizeof node, prefix, l, "pooled_in"), x,
                                   pool);
        }
        pclip__tensor *out_w = layer_weight(g, m, prefix, l, "self_attn.out_proj.weight", 2, w, w);
        pclip__tensor *out_b = layer_weight(g, m, prefix, l, "self_attn.out_proj.bias", 1, w, 0);
        x = pclip__linear(g, layer_node(node, sizeof node, prefix, l, "attn_out"), a, out_w, out_b,
                          PCLIP_ACT_NONE, x);
        /* HF CLIPEncoderLayer: x = x + fc2(act(fc1(layer_norm2(x)))) */
        pclip__tensor *ln2_g = layer_weight(g, m, prefix, l, "layer_norm2.weight", 1, w, 0);
        pclip__tensor *ln2_b = layer_weight(g, m, prefix, l, "layer_norm2.bias", 1, w, 0);
        h = pclip__layer_norm(g, layer_node(node, sizeof node, prefix, l, "ln2"), x, ln2_g, ln2_b,
                              c->layer_norm_eps);
        pclip__tensor *fc1_w = layer_weight(g, m, prefix, l, "mlp.fc1.weight", 2, ff, w);
        pclip__tensor *fc1_b = layer_weight(g, m, prefix, l, "mlp.fc1.bias", 1, ff, 0);
        pclip__tensor *f = pclip__linear(g, layer_node(node, sizeof node, prefix, l, "fc1"), h,
                                         fc1_w, fc1_b, c->act, NULL); /* [rows, ff] */
        pclip__tensor *fc2_w = layer_weight(g, m, prefix, l, "mlp.fc2.weight", 2, w, ff);
        pclip__tensor *fc2_b = layer_weight(g, m, prefix, l, "mlp.fc2.bias", 1, w, 0);
        x = pclip__linear(g, layer_node(node, sizeof node, prefix, l, "fc2"), f, fc2_w, fc2_b,
                          PCLIP_ACT_NONE, x);
    }
    if (c->num_layers == 0) x = pclip__gather_rows(g, "pooled_raw", x, pool);
    return x;
}

/* ---- the two towers ---- */

/* The MLP head of one tower (head.h) on pooled [batch, width]:
 * LayerNorm(fc(gelu(p)) + p) with p = projection(pooled). */
static pclip__tensor *head_graph(pclip__graph *g, const pclip__head *h, const char *tower,
                                 const pclip__head_tower *t, pclip__tensor *pooled,
                                 int64_t width) {
    int64_t e = h->embed_dim;
    const int64_t ew[2] = {e, width}, ee[2] = {e, e}, e1[1] = {e};
    char name[64];
#define HEAD_NAME(what) (snprintf(name, sizeof name, "%s.%s", tower, what), name)
    pclip__tensor *proj_w = pclip__weight(g, HEAD_NAME("projection.weight"), 2, ew, t->proj_w);
    pclip__tensor *proj_b = pclip__weight(g, HEAD_NAME("projection.bias"), 1, e1, t->proj_b);
    pclip__tensor *fc_w = pclip__weight(g, HEAD_NAME("fc.weight"), 2, ee, t->fc_w);
    pclip__tensor *fc_b = pclip__weight(g, HEAD_NAME("fc.bias"), 1, e1, t->fc_b);
    pclip__tensor *ln_w = pclip__weight(g, HEAD_NAME("layer_norm.weight"), 1, e1, t->ln_w);
    pclip__tensor *ln_b = pclip__weight(g, HEAD_NAME("layer_norm.bias"), 1, e1, t->ln_b);
    pclip__tensor *p = pclip__linear(g, HEAD_NAME("projected"), pooled, proj_w, proj_b,
                                     PCLIP_ACT_NONE, NULL); /* [batch, E] */
    pclip__tensor *a = pclip__act(g, HEAD_NAME("gelu"), p, PCLIP_ACT_GELU);
    /* dropout is the identity at inference; the residual adds the projection */
    pclip__tensor *x = pclip__linear(g, HEAD_NAME("fc"), a, fc_w, fc_b, PCLIP_ACT_NONE, p);
    return pclip__layer_norm(g, "embeds", x, ln_w, ln_b, (float)h->layer_norm_eps);
#undef HEAD_NAME
}

/* Projection (or the MLP head) and the three outputs shared by both towers. */
static pclip_status finish_graph(pclip__graph *g, struct pclip_model *m, pclip__tensor **io,
                                 pclip__tensor *pooled, const char *proj, int64_t width) {
    pclip__tensor *emb;
    if (m->head) {
        bool text = strncmp(proj, "text", 4) == 0;
        const pclip__head_tower *tower = text ? &m->head->text : &m->head->vision;
        emb = head_graph(g, m->head, text ? "text" : "vision", tower, pooled,
                         width); /* [batch, embed_dim] */
    } else {
        /* HF CLIP: embeds = projection(pooled), no bias */
        emb = pclip__linear(
            g, "embeds", pooled, checkpoint_weight(g, m, proj, 2, m->config.projection_dim, width),
            NULL, PCLIP_ACT_NONE, NULL); /* [batch, projection_dim] */
    }
    /* torch: x / x.norm(dim=-1, keepdim=True), no epsilon */
    pclip__tensor *norm = pclip__l2_norm(g, "embeds_norm", emb, 0.0f);
    if (!norm) return graph_status(g, m);
    pclip_status st;
    if ((st = pclip__graph_output(g, pooled)) || (st = pclip__graph_output(g, emb)) ||
        (st = pclip__graph_output(g, norm)))
        return st;
    io[PCLIP__ENC_POOLED] = pooled;
    io[PCLIP__ENC_EMBEDS] = emb;
    io[PCLIP__ENC_EMBEDS_NORM] = norm;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__encoder_build_text(struct pclip_model *m, pclip__graph *g, int32_t batch,
                                       int32_t seq, pclip__tensor **io) {
    const pclip_tower_config *c = &m->config.text;
    int32_t B = batch, T = seq;
    int64_t w = c->hidden_size;
    const int64_t ids_ne[1] = {(int64_t)B * T}, pool_ne[1] = {B};
    pclip__tensor *ids = pclip__input(g, "input_ids", PCLIP__DTYPE_I32, 1, ids_ne);
    pclip__tensor *pool = pclip__input(g, "pool_rows", PCLIP__DTYPE_I32, 1, pool_ne);
    io[PCLIP__ENC_INPUT] = ids;
    io[PCLIP__ENC_POOL_ROWS] = pool;
    pclip__tensor *x = pclip__gather_rows(
        g, "token_embeds",
        checkpoint_weight(g, m, "text_model.embeddings.token_embedding.weight", 2, c->vocab_size,
                          w),
        ids); /* [B * T, w] */
    /* the first T rows of the position table */
    const int64_t bt_w[3] = {B, T, w}, flat[2] = {(int64_t)B * T, w};
    x = pclip__reshape(g, x, 3, bt_w);
    x = pclip__add(
        g, "embeds_pos", x,
        checkpoint_weight(g, m, "text_model.embeddings.position_embedding.weight", 2, T, w));
    x = pclip__reshape(g, x, 2, flat);
    /* HF CLIP: pooled = final_layer_norm(hidden)[b, eos position]; LayerNorm
     * is per row, so gathering first is exact and skips the other rows. */
    pclip__tensor *pooled = encoder_layers(g, m, "text_model", c, x, pool, B, T, true);
    pooled = pclip__layer_norm(
        g, "pooled", pooled, checkpoint_weight(g, m, "text_model.final_layer_norm.weight", 1, w, 0),
        checkpoint_weight(g, m, "text_model.final_layer_norm.bias", 1, w, 0),
        c->layer_norm_eps); /* [B, w] */
    if (!pooled) return graph_status(g, m);
    return finish_graph(g, m, io, pooled, "text_projection.weight", w);
}

pclip_status pclip__encoder_build_vision(struct pclip_model *m, pclip__graph *g, int32_t batch,
                                         pclip__tensor **io) {
    const pclip_tower_config *c = &m->config.vision;
    int32_t B = batch, S = c->image_size, P = c->patch_size, G = S / P;
    int32_t T = G * G + 1;
    int64_t w = c->hidden_size;
    const int64_t px_ne[4] = {B, c->num_channels, S, S}, pool_ne[1] = {B};
    pclip__tensor *pixels = pclip__input(g, "pixel_values", PCLIP__DTYPE_F32, 4, px_ne);
    pclip__tensor *pool = pclip__input(g, "class_rows", PCLIP__DTYPE_I32, 1, pool_ne);
    io[PCLIP__ENC_INPUT] = pixels;
    io[PCLIP__ENC_POOL_ROWS] = pool;
    pclip__tensor *patches = pclip__patches(g, "patches", pixels, P); /* [B * G * G, C * P * P] */
    /* the conv weight [W, C, P, P] is a [W, C*P*P] matrix in im2col's order */
    pclip__tensor *x = pclip__linear(
        g, "patch_embeds", patches,
        checkpoint_weight(g, m, "vision_model.embeddings.patch_embedding.weight", 2, w,
                          (int64_t)c->num_channels * P * P),
        NULL, PCLIP_ACT_NONE, NULL);
    /* HF CLIP: embeddings = cat([class_embedding, patch_embeds]) + position_embedding */
    x = pclip__class_concat(
        g, "with_class", x,
        checkpoint_weight(g, m, "vision_model.embeddings.class_embedding", 1, w, 0),
        B); /* [B * T, w] */
    const int64_t bt_w[3] = {B, T, w}, flat[2] = {(int64_t)B * T, w};
    x = pclip__reshape(g, x, 3, bt_w);
    x = pclip__add(
        g, "embeds_pos", x,
        checkpoint_weight(g, m, "vision_model.embeddings.position_embedding.weight", 2, T, w));
    x = pclip__reshape(g, x, 2, flat);
    x = pclip__layer_norm(g, "pre_layrnorm", x,
                          checkpoint_weight(g, m, "vision_model.pre_layrnorm.weight", 1, w, 0),
                          checkpoint_weight(g, m, "vision_model.pre_layrnorm.bias", 1, w, 0),
                          c->layer_norm_eps);
    /* HF CLIP: pooled = post_layernorm(hidden[:, 0]) */
    pclip__tensor *pooled = encoder_layers(g, m, "vision_model", c, x, pool, B, T, false);
    pooled = pclip__layer_norm(
        g, "pooled", pooled,
        checkpoint_weight(g, m, "vision_model.post_layernorm.weight", 1, w, 0),
        checkpoint_weight(g, m, "vision_model.post_layernorm.bias", 1, w, 0),
        c->layer_norm_eps); /* [B, w] */
    if (!pooled) return graph_status(g, m);
    return finish_graph(g, m, io, pooled, "visual_projection.weight", w);
}
