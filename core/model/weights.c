/* The checkpoint's weights as float32 for the graph builders: aligned F32
 * tensors are read in place from the checkpoint's copy, F16/BF16 (and unaligned F32)
 * are converted once and kept, and each layer's q/k/v projections are fused
 * into one qkv weight. The checkpoint is a private in-memory copy (fileio.c),
 * so nothing here reads the file again after load.
 *
 * It does not build graphs or check shapes against the config (model.c did
 * that at load). */
#include <stdio.h>
#include <string.h>

#include "model/encoders.h"

/* ---- the store ---- */

typedef struct weight_entry {
    char name[128];
    const float *data;
    float *owned;      /* converted or fused copy; NULL when data lies in the file map */
} weight_entry;

struct pclip__weight_store {
    weight_entry *entries;
    size_t count, cap;
    pclip_status status; /* why the last weight failed since the last reset */
};

pclip_status pclip__weights_open(struct pclip_model *m) {
    if (!m->weights && !(m->weights = pclip__calloc(1, sizeof *m->weights)))
        return pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "model: out of memory");
    return PCLIP_STATUS_OK;
}

void pclip__weights_destroy(struct pclip_model *m) {
    struct pclip__weight_store *s = m->weights;
    if (!s) return;
    for (size_t i = 0; i < s->count; i++) pclip__free(s->entries[i].owned);
    pclip__free(s->entries);
    pclip__free(s);
    m->weights = NULL;
}

pclip_status pclip__weights_status(const struct pclip_model *m) {
    return m->weights ? m->weights->status : PCLIP_STATUS_OK;
}

void pclip__weights_status_reset(struct pclip_model *m) {
    if (m->weights) m->weights->status = PCLIP_STATUS_OK;
}

static weight_entry *entry_find(struct pclip__weight_store *s, const char *name) {
    for (size_t i = 0; i < s->count; i++)
        if (strcmp(s->entries[i].name, name) == 0) return &s->entries[i];
    return NULL;
}

/* A new empty entry (the caller fills it or takes it back with count--). */
static weight_entry *entry_add(struct pclip__weight_store *s, const char *name) {
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        weight_entry *grown = pclip__realloc(s->entries, cap * sizeof *grown);
        if (!grown) return NULL;
        s->entries = grown;
        s->cap = cap;
    }
    weight_entry *w = &s->entries[s->count++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    return w;
}

static const float *fail(struct pclip_model *m, pclip_status st) {
    m->weights->status = st;
    return NULL;
}

/* ---- reading ---- */

const float *pclip__weight_f32(struct pclip_model *m, const char *name, bool *mapped) {
    struct pclip__weight_store *s = m->weights;
    PCLIP_ASSERT(s != NULL);
    weight_entry *w = entry_find(s, name);
    if (w) {
        if (mapped) *mapped = !w->owned;
        return w->data;
    }
    const pclip__st_tensor *t = pclip__model_find(m, name);
    if (!t)
        return fail(m, pclip__err(m->ctx, PCLIP_STATUS_BAD_TENSOR,
                                  "model '%s': tensor '%s' is missing", m->dir, name));
    if (!(w = entry_add(s, name)))
        return fail(m, pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "model: out of memory"));
    if (t->dtype == PCLIP__ST_F32 && ((uintptr_t)t->data & 3) == 0) {
        w->data = (const float *)(const void *)t->data;
        if (mapped) *mapped = true;
        return w->data;
    }
    size_t bytes;
    if (!pclip__mul_size(t->count, sizeof(float), &bytes) || !(w->owned = pclip__malloc(bytes))) {
        s->count--;
        return fail(m, pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                                  "model: out of memory converting '%s'", name));
    }
    pclip_status st = pclip__st_to_f32(m->ctx, t, w->owned);
    if (st) {
        pclip__free(w->owned);
        s->count--;
        return fail(m, st);
    }
    w->data = w->owned;
    if (mapped) *mapped = false;
    return w->data;
}

const float *pclip__weight_qkv(struct pclip_model *m, const char *prefix, int32_t layer,
                               int64_t width, bool bias) {
    struct pclip__weight_store *s = m->weights;
    PCLIP_ASSERT(s != NULL);
    const char *suffix = bias ? "bias" : "weight";
    char name[128];
    snprintf(name, sizeof name, "%s.encoder.layers.%d.self_attn.qkv.%s", prefix, (int)layer,
             suffix);
    const weight_entry *done = entry_find(s, name);
    if (done) return done->data;
    size_t n = (size_t)(bias ? width : width * width); /* floats per part */
    float *fused = pclip__malloc(3 * n * sizeof *fused); /* [3 * width, width] or [3 * width] */
    if (!fused)
        return fail(m, pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                                  "model: out of memory fusing '%s'", name));
    /* HF CLIP: q, k, v = q_proj(x), k_proj(x), v_proj(x), stacked in that order */
    static const char *const parts[3] = {"q_proj", "k_proj", "v_proj"};
    for (int p = 0; p < 3; p++) {
        char part[128];
        snprintf(part, sizeof part, "%s.encoder.layers.%d.self_attn.%s.%s", prefix, (int)layer,
                 parts[p], suffix);
        bool mapped;
        const float *src = pclip__weight_f32(m, part, &mapped);
        if (!src) {
            pclip__free(fused);
            return NULL;
        }
        (void)mapped;
        memcpy(fused + (size_t)p * n, src, n * sizeof *fused);
    }
    weight_entry *w = entry_add(s, name);
    if (!w) {
        pclip__free(fused);
        return fail(m, pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "model: out of memory"));
    }
    w->owned = fused;
    w->data = fused;
    return fused;
}
