/* The MLP projection head's files: head.json (the sizes and settings) and
 * head.safetensors (13 F32 tensors), written atomically and read back with
 * every check. Running the head is the encoders' job (encoders.c); which
 * model uses it is model.c's (pclip_model_set_head). */
#include "model/head.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json.h"
#include "io/safetensors.h"

/* ---- the tensors ---- */

/* The tensors of one tower, in file-name order of their suffix. */
enum { PART_PROJ_W, PART_PROJ_B, PART_FC_W, PART_FC_B, PART_LN_W, PART_LN_B, PART_COUNT };
static const char *const part_names[PART_COUNT] = {"projection.weight", "projection.bias",
                                                   "fc.weight",         "fc.bias",
                                                   "layer_norm.weight", "layer_norm.bias"};

static float **tower_part(pclip__head_tower *t, int part) {
    switch (part) {
    case PART_PROJ_W: return &t->proj_w;
    case PART_PROJ_B: return &t->proj_b;
    case PART_FC_W: return &t->fc_w;
    case PART_FC_B: return &t->fc_b;
    case PART_LN_W: return &t->ln_w;
    default: return &t->ln_b;
    }
}

/* The shape part `part` of a tower with input width d must have. */
static int part_shape(const pclip__head *h, int part, int64_t d, int64_t shape[2]) {
    shape[0] = h->embed_dim;
    if (part == PART_PROJ_W) {
        shape[1] = d;
        return 2;
    }
    if (part == PART_FC_W) {
        shape[1] = h->embed_dim;
        return 2;
    }
    return 1;
}

/* Calls fn for the 13 tensors: vision's six, text's six, logit_scale. */
typedef struct head_tensor {
    char name[48];
    int ndim;
    int64_t shape[2];
    float **data; /* where the head keeps it */
} head_tensor;

static int head_tensors(pclip__head *h, head_tensor out[2 * PART_COUNT + 1]) {
    int n = 0;
    for (int tw = 0; tw < 2; tw++) {
        pclip__head_tower *t = tw == 0 ? &h->vision : &h->text;
        int64_t d = tw == 0 ? h->vision_dim : h->text_dim;
        for (int p = 0; p < PART_COUNT; p++, n++) {
            snprintf(out[n].name, sizeof out[n].name, "%s.%s", tw == 0 ? "vision" : "text",
                     part_names[p]);
            out[n].ndim = part_shape(h, p, d, out[n].shape);
            out[n].data = tower_part(t, p);
        }
    }
    snprintf(out[n].name, sizeof out[n].name, "logit_scale");
    out[n].ndim = 0;
    out[n].data = NULL;
    return n + 1;
}

static size_t tensor_count(const head_tensor *t) {
    size_t c = 1;
    for (int d = 0; d < t->ndim; d++) c *= (size_t)t->shape[d];
    return c;
}

/* ---- create / destroy ---- */

static bool dims_ok(int64_t v) { return v >= 1 && v <= PCLIP_LIMIT_WIDTH; }

pclip_status pclip__head_create(pclip_ctx_t ctx, int32_t embed_dim, int32_t vision_dim,
                                int32_t text_dim, pclip__head **out) {
    if (!out || !dims_ok(embed_dim) || !dims_ok(vision_dim) || !dims_ok(text_dim))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "head: sizes embed %d, vision %d, text %d must be in 1..%d",
                          (int)embed_dim, (int)vision_dim, (int)text_dim, PCLIP_LIMIT_WIDTH);
    pclip__head *h = pclip__calloc(1, sizeof *h);
    if (!h) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "head: out of memory");
    h->embed_dim = embed_dim;
    h->vision_dim = vision_dim;
    h->text_dim = text_dim;
    h->dropout = 0.0;
    h->layer_norm_eps = 1e-5;
    h->logit_scale = logf(1.0f / 0.07f); /* CLIP's logit_scale_init_value 2.6592 */
    head_tensor ts[2 * PART_COUNT + 1];
    int n = head_tensors(h, ts);
    for (int i = 0; i < n; i++) {
        if (!ts[i].data) continue;
        if (!(*ts[i].data = pclip__calloc(tensor_count(&ts[i]), sizeof(float)))) {
            pclip__head_destroy(h);
            return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "head: out of memory");
        }
    }
    *out = h;
    return PCLIP_STATUS_OK;
}

void pclip__head_destroy(pclip__head *h) {
    if (!h) return;
    head_tensor ts[2 * PART_COUNT + 1];
    int n = head_tensors(h, ts);
    for (int i = 0; i < n; i++)
        if (ts[i].data) pclip__free(*ts[i].data);
    pclip__free(h->dir);
    pclip__free(h);
}

/* ---- saving ---- */

static pclip_status make_dir(pclip_ctx_t ctx, const char *dir) {
    struct stat s;
    if (stat(dir, &s) == 0) {
        if (S_ISDIR(s.st_mode)) return PCLIP_STATUS_OK;
        return pclip__err(ctx, PCLIP_STATUS_IO, "'%s' exists and is not a directory", dir);
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        int e = errno;
        return pclip__err(ctx, PCLIP_STATUS_IO, "cannot create directory '%s': %s", dir,
                          strerror(e));
    }
    return PCLIP_STATUS_OK;
}

pclip_status pclip__head_save(pclip_ctx_t ctx, const char *dir, const pclip__head *head) {
    if (!dir || !head)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "head save: NULL argument");
    pclip_status st = make_dir(ctx, dir);
    if (st) return st;
    pclip__head copy = *head; /* head_tensors wants a mutable head; nothing is written */
    head_tensor ts[2 * PART_COUNT + 1];
    int n = head_tensors(&copy, ts);
    pclip__st_out outs[2 * PART_COUNT + 1];
    memset(outs, 0, sizeof outs);
    for (int i = 0; i < n; i++) {
        outs[i].name = ts[i].name;
        outs[i].dtype = PCLIP__ST_F32;
        outs[i].ndim = ts[i].ndim;
        outs[i].shape[0] = ts[i].shape[0];
        outs[i].shape[1] = ts[i].shape[1];
        outs[i].data = ts[i].data ? (const void *)*ts[i].data : (const void *)&head->logit_scale;
    }
    char *json_path = pclip__path_join(dir, PCLIP__HEAD_JSON);
    char *st_path = pclip__path_join(dir, PCLIP__HEAD_WEIGHTS);
    if (!json_path || !st_path) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "head save: out of memory");
        goto done;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if ((st = pclip__st_write(ctx, st_path, (size_t)n, outs, meta))) goto done;
    /* %.17g keeps every double exactly */
    char json[512];
    int len =
        snprintf(json, sizeof json,
                 "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"kind\": \"mlp\",\n"
                 "  \"embed_dim\": %d,\n  \"vision_dim\": %d,\n  \"text_dim\": %d,\n"
                 "  \"dropout\": %.17g,\n  \"activation\": \"gelu\",\n"
                 "  \"layer_norm_eps\": %.17g\n}\n",
                 PCLIP__HEAD_FORMAT, PCLIP__HEAD_VERSION, (int)head->embed_dim,
                 (int)head->vision_dim, (int)head->text_dim, head->dropout, head->layer_norm_eps);
    pclip__atomic_file f;
    if ((st = pclip__atomic_open(ctx, json_path, &f))) goto done;
    st = pclip__atomic_write(ctx, &f, json, (size_t)len);
    if (st)
        pclip__atomic_abort(&f);
    else
        st = pclip__atomic_commit(ctx, &f);
done:
    pclip__free(json_path);
    pclip__free(st_path);
    return st;
}

/* ---- loading ---- */

/* FNV-1a 64, continued from h: the head's digest for the model's identity. */
static uint64_t fnv1a64(const void *data, size_t n, uint64_t h) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static pclip_status read_json(pclip_ctx_t ctx, const char *path, pclip__head *h, uint64_t *digest) {
    char *text;
    size_t len;
    pclip_status st =
        pclip__read_file(ctx, path, "head config", PCLIP_LIMIT_JSON_BYTES, &text, &len);
    if (st) return st;
    *digest = fnv1a64(text, len, *digest);
    cJSON *root;
    st = pclip__json_parse(ctx, path, text, len, &root);
    pclip__free(text);
    if (st) return st;
    static const char *const known[] = {"format",    "version",    "kind",
                                        "embed_dim", "vision_dim", "text_dim",
                                        "dropout",   "activation", "layer_norm_eps"};
    enum { N_KNOWN = sizeof known / sizeof known[0] };
    if (!cJSON_IsObject(root)) {
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        int k = 0;
        while (k < N_KNOWN && strcmp(e->string, known[k]) != 0) k++;
        if (k == N_KNOWN) {
            st =
                pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: unknown field '%s'", path, e->string);
            goto done;
        }
    }
    for (int k = 0; k < N_KNOWN; k++)
        if (!cJSON_GetObjectItemCaseSensitive(root, known[k]) ||
            cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, known[k]))) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: field '%s' is missing", path,
                            known[k]);
            goto done;
        }
    const char *format = NULL, *kind = NULL, *act = NULL;
    int32_t version = 0;
    if ((st = pclip__json_string(ctx, path, root, "format", &format)) ||
        (st = pclip__json_string(ctx, path, root, "kind", &kind)) ||
        (st = pclip__json_string(ctx, path, root, "activation", &act)) ||
        (st = pclip__json_int(ctx, path, root, "version", 1, 1000000, &version)) ||
        (st = pclip__json_int(ctx, path, root, "embed_dim", 1, PCLIP_LIMIT_WIDTH, &h->embed_dim)) ||
        (st = pclip__json_int(ctx, path, root, "vision_dim", 1, PCLIP_LIMIT_WIDTH,
                              &h->vision_dim)) ||
        (st = pclip__json_int(ctx, path, root, "text_dim", 1, PCLIP_LIMIT_WIDTH, &h->text_dim)) ||
        (st = pclip__json_double(ctx, path, root, "dropout", 0.0, 1.0, &h->dropout)) ||
        (st =
             pclip__json_double(ctx, path, root, "layer_norm_eps", 1e-30, 1.0, &h->layer_norm_eps)))
        goto done;
    if (strcmp(format, PCLIP__HEAD_FORMAT) != 0) {
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: format is '%s', not '%s'", path, format,
                        PCLIP__HEAD_FORMAT);
    } else if (version != PCLIP__HEAD_VERSION) {
        st = pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                        "%s: version %d; this portclip reads head version %d", path, (int)version,
                        PCLIP__HEAD_VERSION);
    } else if (strcmp(kind, "mlp") != 0) {
        st = pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                        "%s: kind is '%s'; only \"mlp\" heads are read (a linear head is a whole "
                        "model directory: give it as --model)",
                        path, kind);
    } else if (strcmp(act, "gelu") != 0) {
        st =
            pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                       "%s: activation is '%s'; only \"gelu\" (exact erf) is supported", path, act);
    } else if (h->dropout >= 1.0) {
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: dropout %g must be below 1", path,
                        h->dropout);
    }
done:
    cJSON_Delete(root);
    return st;
}

static pclip_status read_tensors(pclip_ctx_t ctx, const char *path, pclip__head *h,
                                 uint64_t *digest) {
    pclip__st_file *f;
    pclip_status st = pclip__st_open(ctx, path, &f);
    if (st) return st;
    *digest = fnv1a64(f->map.data, f->map.size, *digest);
    head_tensor ts[2 * PART_COUNT + 1];
    int n = head_tensors(h, ts);
    for (int i = 0; i < n && !st; i++) {
        const pclip__st_tensor *t = pclip__st_find(f, ts[i].name);
        char want[64], got[64];
        pclip__shape_str(want, sizeof want, ts[i].shape, ts[i].ndim);
        if (!t) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR, "%s: tensor '%s' %s is missing", path,
                            ts[i].name, want);
            break;
        }
        pclip__shape_str(got, sizeof got, t->shape, t->ndim);
        bool same = t->ndim == ts[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == ts[i].shape[d];
        if (!same && ts[i].ndim == 0 && t->ndim == 1 && t->shape[0] == 1) same = true;
        if (!same) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR,
                            "%s: tensor '%s' is %s, head.json's sizes (embed_dim %d, "
                            "vision_dim %d, text_dim %d) need %s",
                            path, ts[i].name, got, (int)h->embed_dim, (int)h->vision_dim,
                            (int)h->text_dim, want);
            break;
        }
        if (t->dtype != PCLIP__ST_F32) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR, "%s: tensor '%s' is %s, must be F32",
                            path, ts[i].name, pclip__st_dtype_name(t->dtype));
            break;
        }
        float *dst = ts[i].data ? *ts[i].data : &h->logit_scale;
        if ((st = pclip__st_to_f32(ctx, t, dst))) break;
        for (uint64_t k = 0; k < t->count; k++)
            if (!isfinite(dst[k])) {
                st = pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR,
                                "%s: tensor '%s' holds a NaN or infinite value at element %llu",
                                path, ts[i].name, (unsigned long long)k);
                break;
            }
    }
    if (!st && f->n_tensors != (size_t)n) {
        for (size_t i = 0; i < f->n_tensors; i++) {
            int k = 0;
            while (k < n && strcmp(f->tensors[i].name, ts[k].name) != 0) k++;
            if (k == n) {
                st = pclip__err(ctx, PCLIP_STATUS_BAD_TENSOR,
                                "%s: tensor '%s' is not part of an MLP head", path,
                                f->tensors[i].name);
                break;
            }
        }
    }
    pclip__st_close(f);
    return st;
}

pclip_status pclip__head_load(pclip_ctx_t ctx, const char *dir, pclip__head **out) {
    if (!dir || !out) return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "head: NULL argument");
    struct stat s;
    if (stat(dir, &s) != 0 || !S_ISDIR(s.st_mode))
        return pclip__err(ctx, PCLIP_STATUS_NOT_FOUND,
                          "head '%s': not a directory (a head is a directory with %s and %s)", dir,
                          PCLIP__HEAD_JSON, PCLIP__HEAD_WEIGHTS);
    char *json_path = pclip__path_join(dir, PCLIP__HEAD_JSON);
    char *st_path = pclip__path_join(dir, PCLIP__HEAD_WEIGHTS);
    pclip__head shape = {0}, *h = NULL;
    uint64_t digest = 0xcbf29ce484222325ull;
    pclip_status st;
    if (!json_path || !st_path) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "head: out of memory");
        goto done;
    }
    if ((st = read_json(ctx, json_path, &shape, &digest))) goto done;
    if ((st = pclip__head_create(ctx, shape.embed_dim, shape.vision_dim, shape.text_dim, &h)))
        goto done;
    h->dropout = shape.dropout;
    h->layer_norm_eps = shape.layer_norm_eps;
    if ((st = read_tensors(ctx, st_path, h, &digest))) goto done;
    if (!(h->dir = pclip__strdup(dir))) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "head: out of memory");
        goto done;
    }
    h->digest = digest;
    *out = h;
    h = NULL;
done:
    pclip__head_destroy(h);
    pclip__free(json_path);
    pclip__free(st_path);
    return st;
}
