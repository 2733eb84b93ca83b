/* Loading a Hugging Face CLIP model directory: config.json,
 * preprocessor_config.json, the tokenizer files and the safetensors weights
 * (one file or a sharded index), and the check that the checkpoint holds
 * exactly the tensors the config describes, with the right shapes. Building
 * the encoders from these weights lives elsewhere. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "graph/exec_cache.h"
#include "io/json.h"
#include "model/head.h"
#include "model/model.h"

/* ---- the tensors a CLIP checkpoint holds ---- */

static int emit(pclip__checkpoint_tensor_fn fn, void *user, const char *name, int ndim, int64_t a, int64_t b,
                int64_t c, int64_t d) {
    const int64_t shape[4] = {a, b, c, d};
    return fn(name, shape, ndim, user);
}

static int tower_layers(const char *prefix, const pclip_tower_config *t, pclip__checkpoint_tensor_fn fn,
                        void *user) {
    static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    char name[256];
    int64_t w = t->hidden_size, ff = t->intermediate_size;
    int r = 0;
    for (int l = 0; l < t->num_layers && !r; l++) {
#define TENSOR_NAME(...) (snprintf(name, sizeof name, __VA_ARGS__), name)
        for (int p = 0; p < 4 && !r; p++) {
            r = emit(fn, user, TENSOR_NAME("%s.encoder.layers.%d.self_attn.%s.weight", prefix, l, proj[p]),
                     2, w, w, 0, 0);
            if (!r)
                r = emit(fn, user, TENSOR_NAME("%s.encoder.layers.%d.self_attn.%s.bias", prefix, l, proj[p]),
                         1, w, 0, 0, 0);
        }
        for (int n = 1; n <= 2 && !r; n++) {
            r = emit(fn, user, TENSOR_NAME("%s.encoder.layers.%d.layer_norm%d.weight", prefix, l, n), 1, w,
                     0, 0, 0);
            if (!r)
                r = emit(fn, user, TENSOR_NAME("%s.encoder.layers.%d.layer_norm%d.bias", prefix, l, n), 1,
                         w, 0, 0, 0);
        }
        if (!r) r = emit(fn, user, TENSOR_NAME("%s.encoder.layers.%d.mlp.fc1.weight", prefix, l), 2, ff, w, 0, 0);
        if (!r) r = emit(fn, user, TENSOR_NAME("%s.encoder.layers.%d.mlp.fc1.bias", prefix, l), 1, ff, 0, 0, 0);
        if (!r) r = emit(fn, user, TENSOR_NAME("%s.encoder.layers.%d.mlp.fc2.weight", prefix, l), 2, w, ff, 0, 0);
        if (!r) r = emit(fn, user, TENSOR_NAME("%s.encoder.layers.%d.mlp.fc2.bias", prefix, l), 1, w, 0, 0, 0);
#undef NAME
    }
    return r;
}

/* HF CLIPModel's state_dict, minus the integer position_ids buffers. */
int pclip__clip_tensors(const pclip_config *c, pclip__checkpoint_tensor_fn fn, void *user) {
    const pclip_tower_config *t = &c->text, *v = &c->vision;
    int64_t wt = t->hidden_size, wv = v->hidden_size, p = v->patch_size;
    int64_t grid = v->image_size / v->patch_size;
    int r = 0;
    if (!r) r = emit(fn, user, "text_model.embeddings.token_embedding.weight", 2, t->vocab_size, wt, 0, 0);
    if (!r) r = emit(fn, user, "text_model.embeddings.position_embedding.weight", 2, t->max_position_embeddings, wt, 0, 0);
    if (!r) r = tower_layers("text_model", t, fn, user);
    if (!r) r = emit(fn, user, "text_model.final_layer_norm.weight", 1, wt, 0, 0, 0);
    if (!r) r = emit(fn, user, "text_model.final_layer_norm.bias", 1, wt, 0, 0, 0);
    if (!r) r = emit(fn, user, "vision_model.embeddings.class_embedding", 1, wv, 0, 0, 0);
    if (!r) r = emit(fn, user, "vision_model.embeddings.patch_embedding.weight", 4, wv, v->num_channels, p, p);
    if (!r) r = emit(fn, user, "vision_model.embeddings.position_embedding.weight", 2, grid * grid + 1, wv, 0, 0);
    /* "pre_layrnorm" is Hugging Face's spelling. */
    if (!r) r = emit(fn, user, "vision_model.pre_layrnorm.weight", 1, wv, 0, 0, 0);
    if (!r) r = emit(fn, user, "vision_model.pre_layrnorm.bias", 1, wv, 0, 0, 0);
    if (!r) r = tower_layers("vision_model", v, fn, user);
    if (!r) r = emit(fn, user, "vision_model.post_layernorm.weight", 1, wv, 0, 0, 0);
    if (!r) r = emit(fn, user, "vision_model.post_layernorm.bias", 1, wv, 0, 0, 0);
    if (!r) r = emit(fn, user, "visual_projection.weight", 2, c->projection_dim, wv, 0, 0);
    if (!r) r = emit(fn, user, "text_projection.weight", 2, c->projection_dim, wt, 0, 0);
    if (!r) r = emit(fn, user, "logit_scale", 0, 0, 0, 0, 0);
    return r;
}

const pclip__st_tensor *pclip__model_find(const struct pclip_model *m, const char *name) {
    for (size_t i = 0; i < m->n_shards; i++) {
        const pclip__st_tensor *t = pclip__st_find(m->shards[i], name);
        if (t) return t;
    }
    return NULL;
}

/* ---- checking the checkpoint against the config ---- */

/* Collects names into a bounded list for one error message. */
typedef struct name_list {
    char text[640];
    size_t count;
} name_list;

static void name_list_add(name_list *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void name_list_add(name_list *l, const char *fmt, ...) {
    size_t used = strlen(l->text);
    if (l->count++ < 6 && used + 8 < sizeof l->text) {
        va_list ap;
        va_start(ap, fmt);
        if (used) used += (size_t)snprintf(l->text + used, sizeof l->text - used, "; ");
        if (used < sizeof l->text) vsnprintf(l->text + used, sizeof l->text - used, fmt, ap);
        va_end(ap);
    }
}

typedef struct check_state {
    const struct pclip_model *m;
    name_list missing, misshaped, bad_dtype;
    size_t found;
    char **expected; /* names the config asks for, when collecting */
    size_t n_expected;
    bool oom;
} check_state;

static int check_one(const char *name, const int64_t *shape, int ndim, void *user) {
    check_state *s = user;
    if (s->expected) {
        if (!(s->expected[s->n_expected] = pclip__strdup(name))) {
            s->oom = true;
            return 1;
        }
        s->n_expected++;
    }
    const pclip__st_tensor *t = pclip__model_find(s->m, name);
    if (!t) {
        name_list_add(&s->missing, "%s", name);
        return 0;
    }
    s->found++;
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    /* logit_scale is a 0-d tensor in HF checkpoints; some converters store [1]. */
    if (!same && ndim == 0 && t->ndim == 1 && t->shape[0] == 1) same = true;
    if (!same) {
        char want[96], got[96];
        pclip__shape_str(want, sizeof want, shape, ndim);
        pclip__shape_str(got, sizeof got, t->shape, t->ndim);
        name_list_add(&s->misshaped, "%s is %s, config needs %s", name, got, want);
    }
    if (t->dtype != PCLIP__ST_F32 && t->dtype != PCLIP__ST_F16 && t->dtype != PCLIP__ST_BF16)
        name_list_add(&s->bad_dtype, "%s is %s", name, pclip__st_dtype_name(t->dtype));
    return 0;
}

static int count_one(const char *name, const int64_t *shape, int ndim, void *user) {
    (void)name, (void)shape, (void)ndim;
    (*(size_t *)user)++;
    return 0;
}

/* True for tensors that checkpoints carry but CLIP does not use. */
static bool ignored_tensor(const pclip__st_tensor *t) {
    size_t n = strlen(t->name);
    static const char suffix[] = "position_ids";
    return n >= sizeof suffix - 1 && strcmp(t->name + n - (sizeof suffix - 1), suffix) == 0 &&
           (t->dtype == PCLIP__ST_I64 || t->dtype == PCLIP__ST_I32);
}

#define MORE(l) ((l).count > 6 ? "; ..." : "")

static pclip_status check_weights(pclip_ctx_t ctx, struct pclip_model *m, const char *where) {
    check_state s;
    memset(&s, 0, sizeof s);
    s.m = m;
    size_t n = 0;
    pclip__clip_tensors(&m->config, count_one, &n);
    if (!(s.expected = pclip__calloc(n, sizeof *s.expected)))
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", where);
    pclip__clip_tensors(&m->config, check_one, &s);
    name_list extra;
    memset(&extra, 0, sizeof extra);
    if (!s.oom) {
        qsort(s.expected, s.n_expected, sizeof *s.expected, pclip__cmp_str_ptr);
        for (size_t i = 0; i < m->n_shards; i++) {
            for (size_t j = 0; j < m->shards[i]->n_tensors; j++) {
                const pclip__st_tensor *t = &m->shards[i]->tensors[j];
                const char *key = t->name;
                if (!ignored_tensor(t) &&
                    !bsearch(&key, s.expected, s.n_expected, sizeof *s.expected, pclip__cmp_str_ptr))
                    name_list_add(&extra, "%s", t->name);
            }
        }
    }
    for (size_t i = 0; i < s.n_expected; i++) pclip__free(s.expected[i]);
    pclip__free(s.expected);
    if (s.oom) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", where);
    if (s.missing.count)
        return pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR,
                          "%s: %zu tensor(s) the config needs are missing: %s%s", where,
                          s.missing.count, s.missing.text, MORE(s.missing));
    if (s.misshaped.count)
        return pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR,
                          "%s: %zu tensor(s) do not match config.json: %s%s", where,
                          s.misshaped.count, s.misshaped.text, MORE(s.misshaped));
    if (s.bad_dtype.count)
        return pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR,
                          "%s: %zu tensor(s) are not F32, F16 or BF16: %s%s", where,
                          s.bad_dtype.count, s.bad_dtype.text, MORE(s.bad_dtype));
    if (extra.count)
        return pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR,
                          "%s: %zu tensor(s) that a CLIP model with this config does not have: "
                          "%s%s",
                          where, extra.count, extra.text, MORE(extra));
    m->n_weights = s.found;
    return PCLIP_STATUS_OK;
}

/* ---- opening the weights ---- */

static pclip_status add_shard(pclip_ctx_t ctx, struct pclip_model *m, const char *path) {
    pclip__st_file *f;
    pclip_status st = pclip__st_open(ctx, path, &f);
    if (st) return st;
    pclip__st_file **grown = pclip__realloc(m->shards, (m->n_shards + 1) * sizeof *grown);
    if (!grown) {
        pclip__st_close(f);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    m->shards = grown;
    /* A tensor may live in one shard only. */
    for (size_t j = 0; j < f->n_tensors; j++) {
        const pclip__st_tensor *other = pclip__model_find(m, f->tensors[j].name);
        if (other) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "tensor '%s' is in both %s and %s",
                            f->tensors[j].name, other->file, path);
            pclip__st_close(f);
            return st;
        }
    }
    m->shards[m->n_shards++] = f;
    return PCLIP_STATUS_OK;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: file}}.
 * Each shard named there is opened once; every tensor must be in the shard
 * the map names. Shard names are plain file names inside the directory. */
static pclip_status load_sharded(pclip_ctx_t ctx, struct pclip_model *m, const char *index_path) {
    cJSON *root;
    pclip_status st = pclip__json_load(ctx, index_path, "checkpoint index", &root);
    if (st) return st;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: missing object 'weight_map'",
                        index_path);
        goto done;
    }
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') ||
            strcmp(e->valuestring, "..") == 0 || strcmp(e->valuestring, ".") == 0) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "%s: weight_map entry '%s' must name a file in the model directory",
                            index_path, e->string);
            goto done;
        }
        bool seen = false;
        for (const cJSON *p = map->child; p != e && !seen; p = p->next)
            seen = strcmp(p->valuestring, e->valuestring) == 0;
        if (seen) continue;
        if (m->n_shards >= PCLIP_LIMIT_SHARDS) {
            st = pclip__err(ctx, PCLIP_STATUS_LIMIT, "%s: more than %d shards", index_path,
                            PCLIP_LIMIT_SHARDS);
            goto done;
        }
        char *path = pclip__path_join(m->dir, e->valuestring);
        if (!path) {
            st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", index_path);
            goto done;
        }
        st = add_shard(ctx, m, path);
        pclip__free(path);
        if (st) goto done;
    }
    for (const cJSON *e = map->child; e; e = e->next) {
        const pclip__st_tensor *t = pclip__model_find(m, e->string);
        const char *base = t ? strrchr(t->file, '/') : NULL;
        base = base ? base + 1 : t ? t->file : NULL;
        if (!t || strcmp(base, e->valuestring) != 0) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "%s: weight_map puts tensor '%s' in %s, but it is not there",
                            index_path, e->string, e->valuestring);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return st;
}

static pclip_status load_weights(pclip_ctx_t ctx, struct pclip_model *m) {
    char *single = pclip__path_join(m->dir, "model.safetensors");
    char *index = pclip__path_join(m->dir, "model.safetensors.index.json");
    pclip_status st;
    if (!single || !index) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "out of memory");
    } else if (pclip__file_exists(single)) {
        st = add_shard(ctx, m, single);
        if (!st) st = check_weights(ctx, m, single);
    } else if (pclip__file_exists(index)) {
        st = load_sharded(ctx, m, index);
        if (!st) st = check_weights(ctx, m, index);
    } else {
        char *bin = pclip__path_join(m->dir, "pytorch_model.bin");
        bool has_bin = bin && pclip__file_exists(bin);
        pclip__free(bin);
        st = pclip__err(ctx, PCLIP_STATUS_NOT_FOUND,
                        "model '%s': no model.safetensors or model.safetensors.index.json%s",
                        m->dir,
                        has_bin ? " (pytorch_model.bin is a pickle, which portclip does not "
                                  "read: convert it to safetensors)"
                                : "");
    }
    pclip__free(single);
    pclip__free(index);
    return st;
}

/* ---- the model directory ---- */

static pclip_status load_image_config(pclip_ctx_t ctx, struct pclip_model *m) {
    char *path = pclip__path_join(m->dir, "preprocessor_config.json");
    if (!path) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "out of memory");
    pclip_status st = PCLIP_STATUS_OK;
    if (pclip__file_exists(path)) {
        st = pclip_image_config_load(ctx, path, &m->image_config);
    } else {
        /* No processor file: OpenAI's transform at the model's own image size. */
        pclip_image_config_default(&m->image_config);
        m->image_config.shortest_edge = m->config.vision.image_size;
        m->image_config.crop_height = m->image_config.crop_width = m->config.vision.image_size;
    }
    pclip__free(path);
    return st;
}

static pclip_status load_tokenizer(pclip_ctx_t ctx, struct pclip_model *m) {
    char *vocab = pclip__path_join(m->dir, "vocab.json");
    char *merges = pclip__path_join(m->dir, "merges.txt");
    pclip_status st = vocab && merges
                          ? pclip_tokenizer_load(ctx, vocab, merges, &m->tokenizer)
                          : pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "out of memory");
    pclip__free(vocab);
    pclip__free(merges);
    return st;
}

/* "owner/name" of letters, digits, '-', '_' and '.', not starting with '.':
 * the shape of a Hugging Face Hub id ("openai/clip-vit-base-patch32"). */
static bool looks_like_hub_id(const char *s) {
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/') || s[0] == '.' ||
        slash[1] == '.')
        return false;
    for (const char *p = s; *p; p++)
        if (p != slash && !isalnum((unsigned char)*p) && !strchr("-_.", *p)) return false;
    return true;
}

pclip_status pclip_model_load_parts(pclip_ctx_t ctx, const char *dir, uint32_t parts,
                                    pclip_model_t *out) {
    if (!dir || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "pclip_model_load: NULL argument");
    struct stat dir_st;
    if (stat(dir, &dir_st) != 0 && errno == ENOENT && looks_like_hub_id(dir))
        return pclip__err(ctx, PCLIP_STATUS_NOT_FOUND,
                          "model '%s': no such directory. It looks like a Hugging Face Hub id: "
                          "portclip reads a downloaded model directory. Download it first "
                          "(git lfs install && git clone https://huggingface.co/%s, or "
                          "huggingface-cli download %s --local-dir %s) and give that directory "
                          "(README: Getting a model)",
                          dir, dir, dir, strchr(dir, '/') + 1);
    struct pclip_model *m = pclip__calloc(1, sizeof *m);
    if (!m || !(m->dir = pclip__strdup(dir))) {
        pclip__free(m);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "model '%s': out of memory", dir);
    }
    m->ctx = ctx;
    char *config = pclip__path_join(dir, "config.json");
    pclip_status st = config ? pclip_config_load(ctx, config, &m->config)
                             : pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "out of memory");
    pclip__free(config);
    if (!st && (parts & PCLIP_MODEL_PART_IMAGE_CONFIG)) st = load_image_config(ctx, m);
    if (!st && (parts & PCLIP_MODEL_PART_TOKENIZER)) st = load_tokenizer(ctx, m);
    if (!st && (parts & PCLIP_MODEL_PART_WEIGHTS)) st = load_weights(ctx, m);
    if (st) {
        pclip_model_destroy(m);
        return st;
    }
    *out = m;
    return PCLIP_STATUS_OK;
}

pclip_status pclip_model_load(pclip_ctx_t ctx, const char *dir, pclip_model_t *out) {
    return pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_ALL, out);
}

void pclip_model_destroy(pclip_model_t m) {
    if (!m) return;
    pclip__encoders_destroy(m);
    pclip__head_destroy(m->head);
    for (size_t i = 0; i < m->n_shards; i++) pclip__st_close(m->shards[i]);
    pclip__free(m->shards);
    pclip_tokenizer_destroy(m->tokenizer);
    pclip__free(m->dir);
    pclip__free(m);
}

const pclip_config *pclip_model_config(pclip_model_t m) { return &m->config; }
const pclip_image_config *pclip_model_image_config(pclip_model_t m) { return &m->image_config; }
pclip_tokenizer_t pclip_model_tokenizer(pclip_model_t m) { return m->tokenizer; }
size_t pclip_model_tensor_count(pclip_model_t m) { return m->n_weights; }

/* ---- the MLP projection head ---- */

pclip_status pclip_model_set_head(pclip_model_t m, const char *dir) {
    if (!m) return PCLIP_STATUS_INVALID_ARGUMENT;
    pclip__head *h = NULL;
    if (dir) {
        pclip_status st = pclip__head_load(m->ctx, dir, &h);
        if (st) return st;
        const int32_t want[2] = {m->config.vision.hidden_size, m->config.text.hidden_size};
        const int32_t got[2] = {h->vision_dim, h->text_dim};
        for (int t = 0; t < 2; t++) {
            if (got[t] == want[t]) continue;
            const char *tower = t == 0 ? "vision" : "text";
            st = pclip__err(m->ctx, PCLIP_STATUS_BAD_TENSOR,
                            "head '%s/%s': %s_dim is %d (tensor '%s.projection.weight' is [%d, "
                            "%d]), but model '%s' has a %s hidden_size of %d (needs [%d, %d])",
                            dir, PCLIP__HEAD_JSON, tower, (int)got[t], tower, (int)h->embed_dim,
                            (int)got[t], m->dir, tower, (int)want[t], (int)h->embed_dim,
                            (int)want[t]);
            pclip__head_destroy(h);
            return st;
        }
    }
    /* the compiled graphs hold the old head's weights (or the checkpoint's
     * projections): drop them before the weights they borrow */
    pclip__exec_cache_destroy(m->graphs);
    m->graphs = NULL;
    pclip__head_destroy(m->head);
    m->head = h;
    return PCLIP_STATUS_OK;
}

const char *pclip_model_head(pclip_model_t m) { return m && m->head ? m->head->dir : NULL; }

int32_t pclip_model_embed_dim(pclip_model_t m) {
    return m->head ? m->head->embed_dim : m->config.projection_dim;
}

const char *pclip__model_label(const struct pclip_model *m, char *buf, size_t size) {
    if (m->head && m->head->dir)
        snprintf(buf, size, "%s with head %s", m->dir, m->head->dir);
    else
        snprintf(buf, size, "%s", m->dir);
    return buf;
}
