/* The loaded model directory, shared by the model-building code. */
#ifndef PCLIP_MODEL_H
#define PCLIP_MODEL_H

#include "io/safetensors.h"

struct pclip_model {
    pclip_ctx_t ctx; /* borrowed */
    char *dir;
    pclip_config config;
    pclip_image_config image_config;
    pclip_tokenizer_t tokenizer;
    pclip__st_file **shards;
    size_t n_shards;
    size_t n_weights; /* tensors checked against the config */
    struct pclip__weight_store *weights; /* float32 weights, made on first use (weights.c) */
    struct pclip__exec_cache *graphs;    /* compiled encoder graphs, made on first use (encode.c) */
    struct pclip__head *head;            /* MLP projection head, or NULL (head.c) */
};

/* Frees the encoders' weights and graphs (pclip_model_destroy calls it). */
void pclip__encoders_destroy(struct pclip_model *m);

/* "DIR", or "DIR with head HEAD" when an MLP head is set, into buf (cut to
 * size); returns buf. For messages and the index's record of its model. */
#define PCLIP__MODEL_LABEL 2048
const char *pclip__model_label(const struct pclip_model *m, char *buf, size_t size);

/* The weight `name` across all shards; NULL when absent. */
const pclip__st_tensor *pclip__model_find(const struct pclip_model *m, const char *name);

/* Calls fn(name, shape, ndim, user) for every tensor a CLIP checkpoint with
 * this config must hold, in a fixed order; stops early when fn returns non-zero. */
typedef int (*pclip__checkpoint_tensor_fn)(const char *name, const int64_t *shape, int ndim,
                                           void *user);
int pclip__clip_tensors(const pclip_config *c, pclip__checkpoint_tensor_fn fn, void *user);

#endif
