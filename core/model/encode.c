/* The public encode calls: argument checks, splitting the input into graph
 * runs of the caller's batch size, end-of-text pooling positions for text,
 * and the compiled graphs, kept per (backend, tower, batch, length) in the
 * model's exec cache (graph/exec_cache.c).
 *
 * It does not build the graphs (encoders.c) or read weights (weights.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph/exec_cache.h"
#include "model/encoders.h"
#include "model/head.h"

/* Graphs a model keeps compiled: the vision graphs of one or two batch sizes
 * (full and last) and a few text lengths fit. */
#define MODEL_CACHED_GRAPHS 12

/* ---- compiled graphs ---- */

typedef struct build_args {
    struct pclip_model *m;
    bool text;
    int32_t batch, seq;
} build_args;

static pclip_status build_graph(void *user, pclip__graph *g, pclip__tensor **io) {
    const build_args *a = user;
    pclip__weights_status_reset(a->m);
    pclip_status st = a->text ? pclip__encoder_build_text(a->m, g, a->batch, a->seq, io)
                              : pclip__encoder_build_vision(a->m, g, a->batch, io);
    /* A weight that failed to load can leave a builder with an optional
     * source missing (a bias) yet a result: check the weight store too. */
    return st ? st : pclip__weights_status(a->m);
}

static pclip_status get_graph(struct pclip_model *m, struct pclip_backend *b, bool text,
                              int32_t batch, int32_t seq, pclip__cached_graph **out) {
    pclip_status st;
    if (!m->graphs && (st = pclip__exec_cache_create(m->ctx, MODEL_CACHED_GRAPHS, &m->graphs)))
        return st;
    if ((st = pclip__weights_open(m))) return st;
    char key[PCLIP__EXEC_KEY_MAX];
    if (text)
        snprintf(key, sizeof key, "text b%d s%d", (int)batch, (int)seq);
    else
        snprintf(key, sizeof key, "vision b%d", (int)batch);
    build_args args = {m, text, batch, seq};
    return pclip__exec_cache_get(m->graphs, b, key, build_graph, &args, out);
}

void pclip__encoders_destroy(struct pclip_model *m) {
    /* graphs first: they borrow the weights */
    pclip__exec_cache_destroy(m->graphs);
    m->graphs = NULL;
    pclip__weights_destroy(m);
}

/* ---- running ---- */

static pclip_status run_graph(pclip__cached_graph *cg, const void *input, const int32_t *pool,
                              uint32_t flags, float *out) {
    pclip_status st;
    if ((st = pclip__exec_write(cg->exec, cg->io[PCLIP__ENC_INPUT], input)) ||
        (st = pclip__exec_write(cg->exec, cg->io[PCLIP__ENC_POOL_ROWS], pool)) ||
        (st = pclip__exec_run(cg->exec)))
        return st;
    const pclip__tensor *o = (flags & PCLIP_ENCODE_POOLED)      ? cg->io[PCLIP__ENC_POOLED]
                             : (flags & PCLIP_ENCODE_NORMALIZE) ? cg->io[PCLIP__ENC_EMBEDS_NORM]
                                                                : cg->io[PCLIP__ENC_EMBEDS];
    if ((st = pclip__exec_read(cg->exec, o, out))) return st;
    if (flags & PCLIP_ENCODE_POOLED && flags & PCLIP_ENCODE_NORMALIZE) {
        /* normalised pooled features are not a graph output: compute here */
        int64_t rows = o->ne[0], cols = o->ne[1];
        for (int64_t r = 0; r < rows; r++) {
            float *v = out + r * cols; /* [cols] */
            float ss = 0;
            for (int64_t i = 0; i < cols; i++) ss += v[i] * v[i];
            float inv = ss > 0 ? 1.0f / sqrtf(ss) : 0.0f;
            for (int64_t i = 0; i < cols; i++) v[i] *= inv;
        }
    }
    return PCLIP_STATUS_OK;
}

/* Checks the arguments every encode call shares and resolves batch_size 0. */
static pclip_status check_call(struct pclip_model *m, pclip_backend_t b, const void *in, int32_t n,
                               int32_t *batch_size, float *out, const char *what) {
    if (!m) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!b || !in || !out || n < 0)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s: NULL argument or n < 0", what);
    if (*batch_size == 0) *batch_size = PCLIP_ENCODE_BATCH_DEFAULT;
    if (*batch_size < 1 || *batch_size > PCLIP_ENCODE_BATCH_MAX)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s: batch size %d is outside 1..%d", what, (int)*batch_size,
                          PCLIP_ENCODE_BATCH_MAX);
    if (m->n_shards == 0)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "model '%s' was loaded without its weights", m->dir);
    return PCLIP_STATUS_OK;
}

/* ---- text ---- */

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

pclip_status pclip_model_encode_text_batched(pclip_model_t m, pclip_backend_t b,
                                             const int32_t *ids, int32_t n, int32_t batch_size,
                                             uint32_t flags, float *out) {
    pclip_status st = check_call(m, b, ids, n, &batch_size, out, "encode text");
    if (st || n == 0) return st;
    const pclip_tower_config *c = &m->config.text;
    int32_t ctx_len = c->max_position_embeddings;
    for (int64_t i = 0; i < (int64_t)n * ctx_len; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "text %lld: token id %d at position %lld is outside the vocabulary "
                              "(vocab_size %d)",
                              (long long)(i / ctx_len + 1), ids[i], (long long)(i % ctx_len),
                              c->vocab_size);
    int32_t max_batch = n < batch_size ? n : batch_size;
    int64_t out_cols = (flags & PCLIP_ENCODE_POOLED) ? c->hidden_size : pclip_model_embed_dim(m);
    int32_t *chunk = pclip__malloc((size_t)max_batch * (size_t)ctx_len * sizeof *chunk);
    int32_t *pool = pclip__malloc((size_t)max_batch * sizeof *pool); /* [batch] */
    if (!chunk || !pool) {
        pclip__free(chunk);
        pclip__free(pool);
        return pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "encode text: out of memory");
    }
    for (int32_t start = 0; start < n && !st; start += batch_size) {
        int32_t batch = n - start < batch_size ? n - start : batch_size;
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
            const int32_t *row = ids + (int64_t)(start + r) * ctx_len; /* [ctx_len] */
            memcpy(chunk + (int64_t)r * seq, row, (size_t)seq * sizeof *chunk);
            pool[r] = r * seq + eos_position(c, row, ctx_len);
        }
        pclip__cached_graph *cg;
        if (!(st = get_graph(m, b, true, batch, seq, &cg)))
            st = run_graph(cg, chunk, pool, flags, out + (int64_t)start * out_cols);
    }
    pclip__free(chunk);
    pclip__free(pool);
    return st;
}

pclip_status pclip_model_encode_text(pclip_model_t m, pclip_backend_t b, const int32_t *ids,
                                     int32_t n, uint32_t flags, float *out) {
    return pclip_model_encode_text_batched(m, b, ids, n, PCLIP_ENCODE_BATCH_DEFAULT, flags, out);
}

/* ---- images ---- */

pclip_status pclip_model_encode_images_batched(pclip_model_t m, pclip_backend_t b,
                                               const float *pixels, int32_t n, int32_t batch_size,
                                               uint32_t flags, float *out) {
    pclip_status st = check_call(m, b, pixels, n, &batch_size, out, "encode images");
    if (st || n == 0) return st;
    const pclip_tower_config *c = &m->config.vision;
    int64_t per_image = (int64_t)c->num_channels * c->image_size * c->image_size;
    int64_t out_cols = (flags & PCLIP_ENCODE_POOLED) ? c->hidden_size : pclip_model_embed_dim(m);
    int32_t tokens = (c->image_size / c->patch_size) * (c->image_size / c->patch_size) + 1;
    int32_t max_batch = n < batch_size ? n : batch_size;
    int32_t *pool = pclip__malloc((size_t)max_batch * sizeof *pool); /* [batch] */
    if (!pool) return pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "encode images: out of memory");
    for (int32_t r = 0; r < max_batch; r++) pool[r] = r * tokens; /* HF CLIP: the class token */
    for (int32_t start = 0; start < n && !st; start += batch_size) {
        int32_t batch = n - start < batch_size ? n - start : batch_size;
        pclip__cached_graph *cg;
        if (!(st = get_graph(m, b, false, batch, tokens, &cg)))
            st = run_graph(cg, pixels + (int64_t)start * per_image, pool, flags,
                           out + (int64_t)start * out_cols);
    }
    pclip__free(pool);
    return st;
}

pclip_status pclip_model_encode_images(pclip_model_t m, pclip_backend_t b, const float *pixels,
                                       int32_t n, uint32_t flags, float *out) {
    return pclip_model_encode_images_batched(m, b, pixels, n, PCLIP_ENCODE_BATCH_DEFAULT, flags,
                                             out);
}

float pclip_model_logit_scale(pclip_model_t m) {
    if (m && m->head) return m->head->logit_scale;
    const pclip__st_tensor *t = m ? pclip__model_find(m, "logit_scale") : NULL;
    float v = m ? m->config.logit_scale_init : 0.0f;
    if (t && t->count == 1) pclip__st_to_f32(NULL, t, &v);
    return v;
}
