/* The two CLIP encoders as op graphs, built from any CLIP config: the text
 * transformer (causal, end-of-text pooling) and the vision transformer (patch
 * embedding, class token, pre/post LayerNorm), each followed by its
 * projection. Graphs are compiled per backend, tower, batch size and (for
 * text) sequence length, and cached on the model.
 *
 * Numbers follow Hugging Face's CLIPModel (= OpenAI CLIP). Weights come from
 * the checkpoint as float32: read in place when the file stores aligned F32,
 * converted once otherwise. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph/backend.h"
#include "model/model.h"

/* ---- weights as float32 ---- */

typedef struct weight_entry {
    char name[96];
    const float *data;
    float *owned; /* converted or fused copy */
} weight_entry;

#define MAX_CACHED_GRAPHS 12

typedef enum tower { TOWER_TEXT, TOWER_VISION } tower;

typedef struct cached_graph {
    struct pclip_backend *backend;
    tower which;
    int32_t batch, seq;
    uint64_t last_used;
    pclip__graph *graph;
    pclip__exec *exec;
    pclip__tensor *input, *pool_idx, *pooled, *embeds, *embeds_norm;
} cached_graph;

struct pclip__encoders {
    weight_entry *weights;
    size_t n_weights, cap;
    cached_graph graphs[MAX_CACHED_GRAPHS];
    uint64_t clock;
    struct pclip_backend *backends[PCLIP__MAX_BACKEND_USERS]; /* registered with */
    int32_t n_backends;
    pclip_status weight_status; /* why the last weight() failed */
};

static pclip_status enc_state(struct pclip_model *m, struct pclip__encoders **out) {
    if (!m->enc && !(m->enc = pclip__calloc(1, sizeof *m->enc)))
        return pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "model: out of memory");
    *out = m->enc;
    return PCLIP_STATUS_OK;
}

static weight_entry *weight_slot(struct pclip__encoders *e, const char *name) {
    for (size_t i = 0; i < e->n_weights; i++)
        if (strcmp(e->weights[i].name, name) == 0) return &e->weights[i];
    if (e->n_weights == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 256;
        weight_entry *grown = pclip__realloc(e->weights, cap * sizeof *grown);
        if (!grown) return NULL;
        e->weights = grown;
        e->cap = cap;
    }
    weight_entry *w = &e->weights[e->n_weights++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    return w;
}

/* The checkpoint tensor `name` as float32. */
static const float *weight(struct pclip_model *m, const char *name) {
    weight_entry *w = weight_slot(m->enc, name);
    if (!w) {
        m->enc->weight_status =
            pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "model: out of memory");
        return NULL;
    }
    if (w->data) return w->data;
    const pclip__st_tensor *t = pclip__model_find(m, name);
    if (!t) {
        m->enc->weight_status = pclip__err(m->ctx, PCLIP_STATUS_BAD_TENSOR,
                                           "model '%s': tensor '%s' is missing", m->dir, name);
        m->enc->n_weights--;
        return NULL;
    }
    if (t->dtype == PCLIP__ST_F32 && ((uintptr_t)t->data & 3) == 0) {
        w->data = (const float *)(const void *)t->data;
        return w->data;
    }
    size_t bytes;
    if (!pclip__mul_size(t->count, sizeof(float), &bytes) || !(w->owned = pclip__malloc(bytes))) {
        m->enc->weight_status = pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                                           "model: out of memory converting '%s'", name);
        m->enc->n_weights--;
        return NULL;
    }
    if ((m->enc->weight_status = pclip__st_to_f32(m->ctx, t, w->owned))) {
        pclip__free(w->owned);
        m->enc->n_weights--;
        return NULL;
    }
    w->data = w->owned;
    return w->data;
}

static weight_entry *weight_find(struct pclip__encoders *e, const char *name) {
    for (size_t i = 0; i < e->n_weights; i++)
        if (strcmp(e->weights[i].name, name) == 0) return &e->weights[i];
    return NULL;
}

/* q, k and v projections stacked into one [3W, W] weight (and [3W] bias), so
 * one matmul produces the attention op's qkv input. */
static const float *fused_qkv(struct pclip_model *m, const char *prefix, int layer, int64_t w,
                              bool bias) {
    char name[128];
    snprintf(name, sizeof name, "%s.encoder.layers.%d.self_attn.qkv.%s", prefix, layer,
             bias ? "bias" : "weight");
    weight_entry *slot = weight_find(m->enc, name);
    if (slot) return slot->data;
    size_t n = (size_t)(bias ? w : w * w);
    float *fused = pclip__malloc(3 * n * sizeof *fused);
    if (!fused) {
        m->enc->weight_status = pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                                           "model: out of memory fusing '%s'", name);
        return NULL;
    }
    static const char *const parts[3] = {"q_proj", "k_proj", "v_proj"};
    for (int p = 0; p < 3; p++) {
        char part[128];
        snprintf(part, sizeof part, "%s.encoder.layers.%d.self_attn.%s.%s", prefix, layer, parts[p],
                 bias ? "bias" : "weight");
        const float *src = weight(m, part);
        if (!src) {
            pclip__free(fused);
            return NULL;
        }
        memcpy(fused + (size_t)p * n, src, n * sizeof *fused);
        /* only the fused copy is read from now on */
        const weight_entry *pe = weight_find(m->enc, part);
        if (pe && !pe->owned) pclip__mmap_release(src, n * sizeof *fused);
    }
    if (!(slot = weight_slot(m->enc, name))) {
        pclip__free(fused);
        m->enc->weight_status =
            pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "model: out of memory");
        return NULL;
    }
    slot->owned = fused;
    slot->data = fused;
    return fused;
}

static pclip__act_kind act_kind(pclip_act a) {
    switch (a) {
    case PCLIP_ACT_GELU: return PCLIP__ACT_GELU;
    case PCLIP_ACT_GELU_TANH: return PCLIP__ACT_GELU_TANH;
    default: return PCLIP__ACT_QUICK_GELU;
    }
}

/* ---- graph building ---- */

/* A weight tensor in graph g for checkpoint tensor `name` (shape given). */
static pclip__tensor *W(pclip__graph *g, struct pclip_model *m, const char *name, int32_t ndim,
                        int64_t a, int64_t b) {
    const float *data = weight(m, name);
    if (!data) return NULL;
    const int64_t ne[2] = {a, b};
    pclip__tensor *t = pclip__weight(g, name, ndim, ne, data);
    const weight_entry *w = weight_find(m->enc, name);
    if (t && w && !w->owned) t->data_mapped = true;
    return t;
}

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
    char n[160];
#define NM(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
    for (int l = 0; l < c->num_layers && x; l++) {
        const float *qkv_w = fused_qkv(m, prefix, l, w, false);
        const float *qkv_b = fused_qkv(m, prefix, l, w, true);
        if (!qkv_w || !qkv_b) return NULL;
        const int64_t qkv_wne[2] = {3 * w, w}, qkv_bne[1] = {3 * w};
        pclip__tensor *wqkv =
            pclip__weight(g, NM("%s.%d.qkv.weight", prefix, l), 2, qkv_wne, qkv_w);
        pclip__tensor *bqkv = pclip__weight(g, NM("%s.%d.qkv.bias", prefix, l), 1, qkv_bne, qkv_b);
        pclip__tensor *h = pclip__layer_norm(
            g, NM("%s.%d.ln1", prefix, l), x,
            W(g, m, NM("%s.encoder.layers.%d.layer_norm1.weight", prefix, l), 1, w, 0),
            W(g, m, NM("%s.encoder.layers.%d.layer_norm1.bias", prefix, l), 1, w, 0),
            c->layer_norm_eps);
        pclip__tensor *qkv =
            pclip__linear(g, NM("%s.%d.qkv", prefix, l), h, wqkv, bqkv, PCLIP__ACT_NONE, NULL);
        /* HF CLIP: softmax(q * head_dim^-0.5 @ k^T + causal mask) @ v */
        pclip__tensor *a =
            pclip__attention(g, NM("%s.%d.attn", prefix, l), qkv, batch, seq, c->num_heads, causal);
        if (l == c->num_layers - 1) {
            a = pclip__gather_rows(g, NM("%s.%d.attn_pooled", prefix, l), a, pool);
            x = pclip__gather_rows(g, NM("%s.%d.pooled_in", prefix, l), x, pool);
        }
        x = pclip__linear(
            g, NM("%s.%d.attn_out", prefix, l), a,
            W(g, m, NM("%s.encoder.layers.%d.self_attn.out_proj.weight", prefix, l), 2, w, w),
            W(g, m, NM("%s.encoder.layers.%d.self_attn.out_proj.bias", prefix, l), 1, w, 0),
            PCLIP__ACT_NONE, x);
        h = pclip__layer_norm(
            g, NM("%s.%d.ln2", prefix, l), x,
            W(g, m, NM("%s.encoder.layers.%d.layer_norm2.weight", prefix, l), 1, w, 0),
            W(g, m, NM("%s.encoder.layers.%d.layer_norm2.bias", prefix, l), 1, w, 0),
            c->layer_norm_eps);
        pclip__tensor *f =
            pclip__linear(g, NM("%s.%d.fc1", prefix, l), h,
                          W(g, m, NM("%s.encoder.layers.%d.mlp.fc1.weight", prefix, l), 2, ff, w),
                          W(g, m, NM("%s.encoder.layers.%d.mlp.fc1.bias", prefix, l), 1, ff, 0),
                          act_kind(c->act), NULL);
        x = pclip__linear(g, NM("%s.%d.fc2", prefix, l), f,
                          W(g, m, NM("%s.encoder.layers.%d.mlp.fc2.weight", prefix, l), 2, w, ff),
                          W(g, m, NM("%s.encoder.layers.%d.mlp.fc2.bias", prefix, l), 1, w, 0),
                          PCLIP__ACT_NONE, x);
    }
    if (c->num_layers == 0) x = pclip__gather_rows(g, "pooled_raw", x, pool);
#undef NM
    return x;
}

/* Why a chain of builder calls ended in NULL: the graph's first failure, or
 * a weight that could not be read (recorded in the context by weight()). */
static pclip_status graph_status(const pclip__graph *g, const struct pclip_model *m) {
    if (g->status) return g->status;
    return m->enc->weight_status ? m->enc->weight_status : PCLIP_STATUS_INTERNAL;
}

/* Projection and the three outputs shared by both towers. */
static pclip_status finish_graph(pclip__graph *g, struct pclip_model *m, cached_graph *cg,
                                 pclip__tensor *pooled, const char *proj, int64_t width) {
    pclip__tensor *emb =
        pclip__linear(g, "embeds", pooled, W(g, m, proj, 2, m->config.projection_dim, width), NULL,
                      PCLIP__ACT_NONE, NULL);
    /* torch: x / x.norm(dim=-1, keepdim=True), no epsilon */
    pclip__tensor *norm = pclip__l2_norm(g, "embeds_norm", emb, 0.0f);
    if (!norm) return graph_status(g, m);
    pclip_status st;
    if ((st = pclip__graph_output(g, pooled)) || (st = pclip__graph_output(g, emb)) ||
        (st = pclip__graph_output(g, norm)))
        return st;
    cg->pooled = pooled;
    cg->embeds = emb;
    cg->embeds_norm = norm;
    return PCLIP_STATUS_OK;
}

static pclip_status build_text(struct pclip_model *m, cached_graph *cg) {
    const pclip_tower_config *c = &m->config.text;
    int32_t B = cg->batch, T = cg->seq;
    int64_t w = c->hidden_size;
    pclip__graph *g = cg->graph;
    const int64_t ids_ne[1] = {(int64_t)B * T}, pool_ne[1] = {B};
    cg->input = pclip__input(g, "input_ids", PCLIP__DTYPE_I32, 1, ids_ne);
    cg->pool_idx = pclip__input(g, "pool_rows", PCLIP__DTYPE_I32, 1, pool_ne);
    pclip__tensor *x = pclip__gather_rows(
        g, "token_embeds",
        W(g, m, "text_model.embeddings.token_embedding.weight", 2, c->vocab_size, w), cg->input);
    /* the first T rows of the position table */
    const int64_t bt_w[3] = {B, T, w}, flat[2] = {(int64_t)B * T, w};
    x = pclip__reshape(g, x, 3, bt_w);
    x = pclip__add(g, "embeds_pos", x,
                   W(g, m, "text_model.embeddings.position_embedding.weight", 2, T, w));
    x = pclip__reshape(g, x, 2, flat);
    /* HF CLIP: pooled = final_layer_norm(hidden)[b, eos position]; LayerNorm
     * is per row, so gathering first is exact and skips the other rows. */
    pclip__tensor *pooled = encoder_layers(g, m, "text_model", c, x, cg->pool_idx, B, T, true);
    pooled = pclip__layer_norm(
        g, "pooled", pooled, W(g, m, "text_model.final_layer_norm.weight", 1, w, 0),
        W(g, m, "text_model.final_layer_norm.bias", 1, w, 0), c->layer_norm_eps);
    if (!pooled) return graph_status(g, m);
    return finish_graph(g, m, cg, pooled, "text_projection.weight", w);
}

static pclip_status build_vision(struct pclip_model *m, cached_graph *cg) {
    const pclip_tower_config *c = &m->config.vision;
    int32_t B = cg->batch, S = c->image_size, P = c->patch_size, G = S / P;
    int32_t T = G * G + 1;
    int64_t w = c->hidden_size;
    pclip__graph *g = cg->graph;
    const int64_t px_ne[4] = {B, c->num_channels, S, S}, pool_ne[1] = {B};
    cg->input = pclip__input(g, "pixel_values", PCLIP__DTYPE_F32, 4, px_ne);
    cg->pool_idx = pclip__input(g, "class_rows", PCLIP__DTYPE_I32, 1, pool_ne);
    pclip__tensor *patches = pclip__patches(g, "patches", cg->input, P);
    /* the conv weight [W, C, P, P] is a [W, C*P*P] matrix in im2col's order */
    pclip__tensor *x = pclip__linear(g, "patch_embeds", patches,
                                     W(g, m, "vision_model.embeddings.patch_embedding.weight", 2, w,
                                       (int64_t)c->num_channels * P * P),
                                     NULL, PCLIP__ACT_NONE, NULL);
    x = pclip__class_concat(g, "with_class", x,
                            W(g, m, "vision_model.embeddings.class_embedding", 1, w, 0), B);
    const int64_t bt_w[3] = {B, T, w}, flat[2] = {(int64_t)B * T, w};
    x = pclip__reshape(g, x, 3, bt_w);
    x = pclip__add(g, "embeds_pos", x,
                   W(g, m, "vision_model.embeddings.position_embedding.weight", 2, T, w));
    x = pclip__reshape(g, x, 2, flat);
    x = pclip__layer_norm(g, "pre_layrnorm", x,
                          W(g, m, "vision_model.pre_layrnorm.weight", 1, w, 0),
                          W(g, m, "vision_model.pre_layrnorm.bias", 1, w, 0), c->layer_norm_eps);
    /* HF CLIP: pooled = post_layernorm(hidden[:, 0]) */
    pclip__tensor *pooled = encoder_layers(g, m, "vision_model", c, x, cg->pool_idx, B, T, false);
    pooled = pclip__layer_norm(
        g, "pooled", pooled, W(g, m, "vision_model.post_layernorm.weight", 1, w, 0),
        W(g, m, "vision_model.post_layernorm.bias", 1, w, 0), c->layer_norm_eps);
    if (!pooled) return graph_status(g, m);
    return finish_graph(g, m, cg, pooled, "visual_projection.weight", w);
}

/* ---- the graph cache ---- */

static void drop_graph(cached_graph *cg) {
    pclip__exec_destroy(cg->exec);
    pclip__graph_destroy(cg->graph);
    memset(cg, 0, sizeof *cg);
}

/* Called by pclip_backend_destroy: forget every graph compiled on it. */
static void drop_backend(void *owner, struct pclip_backend *b) {
    struct pclip__encoders *e = ((struct pclip_model *)owner)->enc;
    for (int i = 0; i < MAX_CACHED_GRAPHS; i++)
        if (e->graphs[i].backend == b) drop_graph(&e->graphs[i]);
    for (int32_t i = 0; i < e->n_backends; i++)
        if (e->backends[i] == b) e->backends[i--] = e->backends[--e->n_backends];
}

static pclip_status use_backend(struct pclip_model *m, struct pclip_backend *b) {
    struct pclip__encoders *e = m->enc;
    for (int32_t i = 0; i < e->n_backends; i++)
        if (e->backends[i] == b) return PCLIP_STATUS_OK;
    if (e->n_backends == PCLIP__MAX_BACKEND_USERS)
        return pclip__err(m->ctx, PCLIP_STATUS_LIMIT, "model: used on more than %d backends",
                          PCLIP__MAX_BACKEND_USERS);
    pclip_status st = pclip__backend_add_user(b, m, drop_backend);
    if (!st) e->backends[e->n_backends++] = b;
    return st;
}

static pclip_status get_graph(struct pclip_model *m, struct pclip_backend *b, tower which,
                              int32_t batch, int32_t seq, cached_graph **out) {
    struct pclip__encoders *e = m->enc;
    cached_graph *victim = &e->graphs[0];
    for (int i = 0; i < MAX_CACHED_GRAPHS; i++) {
        cached_graph *cg = &e->graphs[i];
        if (cg->graph && cg->backend == b && cg->which == which && cg->batch == batch &&
            cg->seq == seq) {
            cg->last_used = ++e->clock;
            *out = cg;
            return PCLIP_STATUS_OK;
        }
        if (!cg->graph)
            victim = cg;
        else if (victim->graph && cg->last_used < victim->last_used)
            victim = cg;
    }
    pclip_status st = use_backend(m, b);
    if (st) return st;
    drop_graph(victim);
    cached_graph cg = {.backend = b, .which = which, .batch = batch, .seq = seq};
    if ((st = pclip__graph_create(m->ctx, &cg.graph))) return st;
    e->weight_status = PCLIP_STATUS_OK;
    st = which == TOWER_TEXT ? build_text(m, &cg) : build_vision(m, &cg);
    /* A weight that failed to load can leave a builder with an optional
     * source missing (a bias) yet a result: check the sticky statuses too. */
    if (!st) st = cg.graph->status ? cg.graph->status : e->weight_status;
    if (!st) st = pclip__exec_create(b, cg.graph, &cg.exec);
    if (st) {
        pclip__graph_destroy(cg.graph);
        return st;
    }
    cg.last_used = ++e->clock;
    *victim = cg;
    *out = victim;
    return PCLIP_STATUS_OK;
}

void pclip__encoders_destroy(struct pclip_model *m) {
    struct pclip__encoders *e = m->enc;
    if (!e) return;
    for (int i = 0; i < MAX_CACHED_GRAPHS; i++)
        if (e->graphs[i].graph) drop_graph(&e->graphs[i]);
    for (int32_t i = 0; i < e->n_backends; i++) pclip__backend_remove_user(e->backends[i], m);
    for (size_t i = 0; i < e->n_weights; i++) pclip__free(e->weights[i].owned);
    pclip__free(e->weights);
    pclip__free(e);
    m->enc = NULL;
}

/* ---- running ---- */

static pclip_status run_graph(cached_graph *cg, const void *input, const int32_t *pool,
                              uint32_t flags, float *out) {
    pclip_status st;
    if ((st = pclip__exec_write(cg->exec, cg->input, input)) ||
        (st = pclip__exec_write(cg->exec, cg->pool_idx, pool)) || (st = pclip__exec_run(cg->exec)))
        return st;
    const pclip__tensor *o = (flags & PCLIP_ENCODE_POOLED)      ? cg->pooled
                             : (flags & PCLIP_ENCODE_NORMALIZE) ? cg->embeds_norm
                                                                : cg->embeds;
    if (flags & PCLIP_ENCODE_POOLED && flags & PCLIP_ENCODE_NORMALIZE) {
        /* normalised pooled features are not a graph output: compute here */
        if ((st = pclip__exec_read(cg->exec, o, out))) return st;
        int64_t rows = o->ne[0], cols = o->ne[1];
        for (int64_t r = 0; r < rows; r++) {
            float *v = out + r * cols;
            float ss = 0;
            for (int64_t i = 0; i < cols; i++) ss += v[i] * v[i];
            float inv = ss > 0 ? 1.0f / sqrtf(ss) : 0.0f;
            for (int64_t i = 0; i < cols; i++) v[i] *= inv;
        }
        return PCLIP_STATUS_OK;
    }
    return pclip__exec_read(cg->exec, o, out);
}

static pclip_status check_call(struct pclip_model *m, pclip_backend_t b, const void *in, int32_t n,
                               float *out, bool weights) {
    if (!m) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!b || !in || !out || n < 0)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "encode: NULL argument or n < 0");
    if (weights && m->n_shards == 0)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "model '%s' was loaded without its weights", m->dir);
    return PCLIP_STATUS_OK;
}

/* Rows per graph run: large enough to keep a GPU busy, small enough to bound
 * activation memory (B * seq * width floats per tensor). */
#define ENCODE_BATCH 32

/* HF CLIP: the row of the end-of-text token: argmax(ids) for the legacy
 * eos_token_id 2, else the first eos_token_id (0 when there is none, as
 * argmax of an all-false mask gives). */
static int32_t eos_position(const pclip_tower_config *c, const int32_t *ids, int32_t len) {
    int32_t best = 0;
    if (c->eos_token_id == 2) {
        for (int32_t t = 1; t < len; t++)
            if (ids[t] > ids[best]) best = t;
        return best;
    }
    for (int32_t t = 0; t < len; t++)
        if (ids[t] == c->eos_token_id) return t;
    return 0;
}

pclip_status pclip_model_encode_text(pclip_model_t m, pclip_backend_t b, const int32_t *ids,
                                     int32_t n, uint32_t flags, float *out) {
    pclip_status st = check_call(m, b, ids, n, out, true);
    if (st) return st;
    const pclip_tower_config *c = &m->config.text;
    int32_t ctx_len = c->max_position_embeddings;
    for (int64_t i = 0; i < (int64_t)n * ctx_len; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "text %lld: token id %d at position %lld is outside the vocabulary "
                              "(vocab_size %d)",
                              (long long)(i / ctx_len + 1), ids[i], (long long)(i % ctx_len),
                              c->vocab_size);
    struct pclip__encoders *e;
    if ((st = enc_state(m, &e))) return st;
    int64_t out_cols = (flags & PCLIP_ENCODE_POOLED) ? c->hidden_size : m->config.projection_dim;
    int32_t *chunk = pclip__malloc((size_t)ENCODE_BATCH * (size_t)ctx_len * sizeof *chunk);
    int32_t pool[ENCODE_BATCH];
    if (!chunk) return pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "encode: out of memory");
    for (int32_t start = 0; start < n && !st; start += ENCODE_BATCH) {
        int32_t batch = n - start < ENCODE_BATCH ? n - start : ENCODE_BATCH;
        /* Attention is causal, so positions after the last end-of-text token
         * of the batch cannot change any pooled row: encode only up to it,
         * rounded up to 8 so that few distinct graphs are compiled. */
        int32_t seq = 1;
        for (int32_t r = 0; r < batch; r++) {
            int32_t p = eos_position(c, ids + (int64_t)(start + r) * ctx_len, ctx_len);
            if (p + 1 > seq) seq = p + 1;
        }
        seq = (seq + 7) / 8 * 8;
        if (seq > ctx_len) seq = ctx_len;
        for (int32_t r = 0; r < batch; r++) {
            const int32_t *row = ids + (int64_t)(start + r) * ctx_len;
            memcpy(chunk + (int64_t)r * seq, row, (size_t)seq * sizeof *chunk);
            pool[r] = r * seq + eos_position(c, row, ctx_len);
        }
        cached_graph *cg;
        if (!(st = get_graph(m, b, TOWER_TEXT, batch, seq, &cg)))
            st = run_graph(cg, chunk, pool, flags, out + (int64_t)start * out_cols);
    }
    pclip__free(chunk);
    return st;
}

pclip_status pclip_model_encode_images(pclip_model_t m, pclip_backend_t b, const float *pixels,
                                       int32_t n, uint32_t flags, float *out) {
    pclip_status st = check_call(m, b, pixels, n, out, true);
    if (st) return st;
    const pclip_tower_config *c = &m->config.vision;
    struct pclip__encoders *e;
    if ((st = enc_state(m, &e))) return st;
    int64_t per_image = (int64_t)c->num_channels * c->image_size * c->image_size;
    int64_t out_cols = (flags & PCLIP_ENCODE_POOLED) ? c->hidden_size : m->config.projection_dim;
    int32_t tokens = (c->image_size / c->patch_size) * (c->image_size / c->patch_size) + 1;
    int32_t pool[ENCODE_BATCH];
    for (int32_t start = 0; start < n && !st; start += ENCODE_BATCH) {
        int32_t batch = n - start < ENCODE_BATCH ? n - start : ENCODE_BATCH;
        for (int32_t r = 0; r < batch; r++) pool[r] = r * tokens; /* the class token */
        cached_graph *cg;
        if (!(st = get_graph(m, b, TOWER_VISION, batch, tokens, &cg)))
            st = run_graph(cg, pixels + (int64_t)start * per_image, pool, flags,
                           out + (int64_t)start * out_cols);
    }
    return st;
}

float pclip_model_logit_scale(pclip_model_t m) {
    const pclip__st_tensor *t = m ? pclip__model_find(m, "logit_scale") : NULL;
    float v = m ? m->config.logit_scale_init : 0.0f;
    if (t && t->count == 1) pclip__st_to_f32(NULL, t, &v);
    return v;
}
