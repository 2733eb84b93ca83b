/* config.json (Hugging Face CLIPConfig) and preprocessor_config.json
 * (CLIPImageProcessor / the legacy CLIPFeatureExtractor). Missing fields take
 * Hugging Face's defaults; sizes are range-checked before anything else reads
 * them, so a config that would need terabytes is refused here. */
#include <math.h>
#include <string.h>

#include "io/json.h"

/* ---- config.json ---- */

/* HF CLIPTextConfig defaults (ViT-B/32's text tower). */
static void text_defaults(pclip_tower_config *t) {
    memset(t, 0, sizeof *t);
    t->hidden_size = 512;
    t->intermediate_size = 2048;
    t->num_layers = 12;
    t->num_heads = 8;
    t->layer_norm_eps = 1e-5f;
    t->act = PCLIP_ACT_QUICK_GELU;
    t->vocab_size = 49408;
    t->max_position_embeddings = 77;
    t->pad_token_id = 1;
    t->bos_token_id = 49406;
    t->eos_token_id = 49407;
}

/* HF CLIPVisionConfig defaults (ViT-B/32). */
static void vision_defaults(pclip_tower_config *v) {
    memset(v, 0, sizeof *v);
    v->hidden_size = 768;
    v->intermediate_size = 3072;
    v->num_layers = 12;
    v->num_heads = 12;
    v->layer_norm_eps = 1e-5f;
    v->act = PCLIP_ACT_QUICK_GELU;
    v->image_size = 224;
    v->patch_size = 32;
    v->num_channels = 3;
}

static pclip_status read_act(pclip_ctx_t ctx, const char *file, const char *tower,
                             const cJSON *obj, pclip_act *out) {
    const char *name = NULL;
    pclip_status st = pclip__json_string(ctx, file, obj, "hidden_act", &name);
    if (st || !name) return st;
    if (strcmp(name, "quick_gelu") == 0) *out = PCLIP_ACT_QUICK_GELU;
    else if (strcmp(name, "gelu") == 0) *out = PCLIP_ACT_GELU;
    else if (strcmp(name, "gelu_new") == 0 || strcmp(name, "gelu_pytorch_tanh") == 0 ||
             strcmp(name, "gelu_fast") == 0)
        *out = PCLIP_ACT_GELU_TANH;
    else
        return pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                          "%s: %s hidden_act '%s' is not supported (quick_gelu, gelu, gelu_new, "
                          "gelu_pytorch_tanh)",
                          file, tower, name);
    return PCLIP_STATUS_OK;
}

static pclip_status read_tower(pclip_ctx_t ctx, const char *file, const char *tower,
                               const cJSON *obj, bool text, pclip_tower_config *t) {
    pclip_status st;
    double eps = t->layer_norm_eps;
#define INT_FIELD(key, member, lo, hi)                                                     \
    if ((st = pclip__json_int(ctx, file, obj, key, lo, hi, &t->member))) goto fail;
    INT_FIELD("hidden_size", hidden_size, 1, PCLIP_LIMIT_WIDTH)
    INT_FIELD("intermediate_size", intermediate_size, 1, 8 * PCLIP_LIMIT_WIDTH)
    INT_FIELD("num_hidden_layers", num_layers, 1, PCLIP_LIMIT_LAYERS)
    INT_FIELD("num_attention_heads", num_heads, 1, PCLIP_LIMIT_HEADS)
    if (text) {
        INT_FIELD("vocab_size", vocab_size, 2, PCLIP_LIMIT_VOCAB)
        INT_FIELD("max_position_embeddings", max_position_embeddings, 2, PCLIP_LIMIT_CONTEXT)
        INT_FIELD("bos_token_id", bos_token_id, 0, PCLIP_LIMIT_VOCAB)
        INT_FIELD("eos_token_id", eos_token_id, 0, PCLIP_LIMIT_VOCAB)
        INT_FIELD("pad_token_id", pad_token_id, 0, PCLIP_LIMIT_VOCAB)
    } else {
        INT_FIELD("image_size", image_size, 1, PCLIP_LIMIT_IMAGE_SIDE)
        INT_FIELD("patch_size", patch_size, 1, PCLIP_LIMIT_IMAGE_SIDE)
        INT_FIELD("num_channels", num_channels, 1, 4)
    }
#undef INT_FIELD
    if ((st = pclip__json_double(ctx, file, obj, "layer_norm_eps", 1e-30, 1.0, &eps))) goto fail;
    t->layer_norm_eps = (float)eps;
    if ((st = read_act(ctx, file, tower, obj, &t->act))) return st;
    return PCLIP_STATUS_OK;
fail:
    pclip__err_prefix(ctx, "%s", tower);
    return st;
}

/* Sizes that parse but cannot describe a working model. */
static pclip_status check_tower(pclip_ctx_t ctx, const char *file, const char *tower,
                                const pclip_tower_config *t, bool text) {
    if (t->hidden_size % t->num_heads != 0)
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                          "%s: %s hidden_size %d is not divisible by num_attention_heads %d", file,
                          tower, t->hidden_size, t->num_heads);
    if (text) {
        if (t->eos_token_id >= t->vocab_size || t->bos_token_id >= t->vocab_size)
            return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                              "%s: %s bos/eos token id (%d/%d) outside vocab_size %d", file, tower,
                              t->bos_token_id, t->eos_token_id, t->vocab_size);
    } else {
        if (t->image_size % t->patch_size != 0)
            return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                              "%s: %s image_size %d is not a multiple of patch_size %d", file,
                              tower, t->image_size, t->patch_size);
        if (t->num_channels != 3)
            return pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                              "%s: %s num_channels %d is not supported (only 3, RGB)", file, tower,
                              t->num_channels);
    }
    /* The largest single weight must stay addressable, and the whole tower
     * under the model-size limit: refuse before any allocation is sized. */
    uint64_t w = (uint64_t)t->hidden_size, ff = (uint64_t)t->intermediate_size;
    uint64_t per_layer = 4 * w * w + 2 * w * ff;
    uint64_t rows = text ? (uint64_t)t->vocab_size + (uint64_t)t->max_position_embeddings
                         : (uint64_t)t->patch_size * t->patch_size * 3 +
                               (uint64_t)(t->image_size / t->patch_size) *
                                   (t->image_size / t->patch_size);
    uint64_t params = per_layer * (uint64_t)t->num_layers + rows * w;
    if (params * 4 > PCLIP_LIMIT_MODEL_BYTES)
        return pclip__err(ctx, PCLIP_STATUS_LIMIT,
                          "%s: %s would need %llu MiB of fp32 weights, over the %llu MiB limit",
                          file, tower, (unsigned long long)(params * 4 >> 20),
                          (unsigned long long)(PCLIP_LIMIT_MODEL_BYTES >> 20));
    return PCLIP_STATUS_OK;
}

/* HF accepts the tower dicts under `text_config` and the older
 * `text_config_dict`; when both exist the `_dict` form wins, as in
 * CLIPConfig.__init__. */
static const cJSON *tower_object(const cJSON *root, const char *name, const char *dict_name) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, dict_name);
    if (cJSON_IsObject(d)) return d;
    return cJSON_GetObjectItemCaseSensitive(root, name);
}

static pclip_status config_from_json(pclip_ctx_t ctx, const char *file, const cJSON *root,
                                     pclip_config *c) {
    pclip_status st;
    if (!cJSON_IsObject(root))
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "%s: expected a JSON object", file);
    const char *model_type = NULL;
    if ((st = pclip__json_string(ctx, file, root, "model_type", &model_type))) return st;
    if (model_type && strcmp(model_type, "clip") != 0)
        return pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                          "%s: model_type '%s' is not a CLIP model (expected 'clip')", file,
                          model_type);
    text_defaults(&c->text);
    vision_defaults(&c->vision);
    c->projection_dim = 512;
    double ls = 2.6592;
    if ((st = pclip__json_int(ctx, file, root, "projection_dim", 1, PCLIP_LIMIT_WIDTH,
                              &c->projection_dim)))
        return st;
    if ((st = pclip__json_double(ctx, file, root, "logit_scale_init_value", -100, 100, &ls)))
        return st;
    c->logit_scale_init = (float)ls;
    const cJSON *t = tower_object(root, "text_config", "text_config_dict");
    const cJSON *v = tower_object(root, "vision_config", "vision_config_dict");
    if (t && !cJSON_IsNull(t) && !cJSON_IsObject(t))
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "%s: 'text_config' must be an object",
                          file);
    if (v && !cJSON_IsNull(v) && !cJSON_IsObject(v))
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "%s: 'vision_config' must be an object",
                          file);
    if (cJSON_IsObject(t) && (st = read_tower(ctx, file, "text_config", t, true, &c->text)))
        return st;
    if (cJSON_IsObject(v) && (st = read_tower(ctx, file, "vision_config", v, false, &c->vision)))
        return st;
    if ((st = check_tower(ctx, file, "text_config", &c->text, true))) return st;
    if ((st = check_tower(ctx, file, "vision_config", &c->vision, false))) return st;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__config_parse(pclip_ctx_t ctx, const char *file, const char *text, size_t len,
                                 pclip_config *out) {
    cJSON *root;
    pclip_status st = pclip__json_parse(ctx, file, text, len, &root);
    if (st) return st;
    pclip_config c;
    st = config_from_json(ctx, file, root, &c);
    cJSON_Delete(root);
    if (st == PCLIP_STATUS_OK) *out = c;
    return st;
}

pclip_status pclip_config_load(pclip_ctx_t ctx, const char *path, pclip_config *out) {
    if (!path || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "pclip_config_load: NULL argument");
    char *text;
    size_t len;
    pclip_status st = pclip__read_file(ctx, path, "config", PCLIP_LIMIT_JSON_BYTES, &text, &len);
    if (st) return st;
    st = pclip__config_parse(ctx, path, text, len, out);
    pclip__free(text);
    return st;
}

/* ---- preprocessor_config.json ---- */

void pclip_image_config_default(pclip_image_config *c) {
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memset(c, 0, sizeof *c);
    c->shortest_edge = 224;
    c->crop_height = c->crop_width = 224;
    c->do_resize = c->do_center_crop = c->do_normalize = c->do_rescale = c->do_convert_rgb = 1;
    c->rescale_factor = 1.0 / 255.0;
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
    c->resample = PCLIP_RESAMPLE_BICUBIC;
}

static pclip_status read_triple(pclip_ctx_t ctx, const char *file, const cJSON *root,
                                const char *key, bool positive, float out[3]) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!a || cJSON_IsNull(a)) return PCLIP_STATUS_OK;
    float v[3];
    if (cJSON_IsNumber(a)) { /* HF allows one number for all channels */
        v[0] = v[1] = v[2] = (float)a->valuedouble;
    } else if (cJSON_IsArray(a) && cJSON_GetArraySize(a) == 3) {
        for (int i = 0; i < 3; i++) {
            const cJSON *x = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
                return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                                  "%s: '%s' must hold 3 numbers", file, key);
            v[i] = (float)x->valuedouble;
        }
    } else {
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                          "%s: '%s' must be a number or a list of 3 numbers", file, key);
    }
    for (int i = 0; i < 3; i++)
        if (!isfinite(v[i]) || (positive && !(v[i] > 0)))
            return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                              "%s: '%s' values must be finite%s", file, key,
                              positive ? " and positive" : "");
    memcpy(out, v, sizeof v);
    return PCLIP_STATUS_OK;
}

/* `size` / `crop_size`: an integer (legacy), or {"shortest_edge": N}, or
 * {"height": H, "width": W}. For `size`, a legacy integer means the shortest
 * edge (CLIPFeatureExtractor); for `crop_size` it means a square. */
static pclip_status read_size(pclip_ctx_t ctx, const char *file, const cJSON *root,
                              const char *key, bool is_crop, int32_t *shortest, int32_t *h,
                              int32_t *w) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!s || cJSON_IsNull(s)) return PCLIP_STATUS_OK;
    pclip_status st;
    if (cJSON_IsNumber(s)) {
        if (!pclip__json_is_int(s, 1, PCLIP_LIMIT_IMAGE_SIDE))
            return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                              "%s: '%s' must be an integer in [1, %d]", file, key,
                              PCLIP_LIMIT_IMAGE_SIDE);
        int32_t v = (int32_t)s->valuedouble;
        if (is_crop) *h = *w = v;
        else *shortest = v, *h = *w = 0;
        return PCLIP_STATUS_OK;
    }
    if (!cJSON_IsObject(s))
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                          "%s: '%s' must be an integer or an object", file, key);
    int32_t se = 0, hh = 0, ww = 0;
    if ((st = pclip__json_int(ctx, file, s, "shortest_edge", 1, PCLIP_LIMIT_IMAGE_SIDE, &se)) ||
        (st = pclip__json_int(ctx, file, s, "height", 1, PCLIP_LIMIT_IMAGE_SIDE, &hh)) ||
        (st = pclip__json_int(ctx, file, s, "width", 1, PCLIP_LIMIT_IMAGE_SIDE, &ww)))
        return st;
    if (se && !is_crop) {
        *shortest = se;
        *h = *w = 0;
    } else if (hh && ww) {
        if (!is_crop) *shortest = 0;
        *h = hh;
        *w = ww;
    } else if (se && is_crop) {
        *h = *w = se;
    } else {
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                          "%s: '%s' needs 'shortest_edge' or both 'height' and 'width'", file,
                          key);
    }
    return PCLIP_STATUS_OK;
}

static pclip_status image_config_from_json(pclip_ctx_t ctx, const char *file, const cJSON *root,
                                           pclip_image_config *c) {
    pclip_status st;
    if (!cJSON_IsObject(root))
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "%s: expected a JSON object", file);
    pclip_image_config_default(c);
    int32_t resample = c->resample;
    if ((st = read_size(ctx, file, root, "size", false, &c->shortest_edge, &c->resize_height,
                        &c->resize_width)) ||
        (st = read_size(ctx, file, root, "crop_size", true, NULL, &c->crop_height,
                        &c->crop_width)) ||
        (st = pclip__json_bool(ctx, file, root, "do_resize", &c->do_resize)) ||
        (st = pclip__json_bool(ctx, file, root, "do_center_crop", &c->do_center_crop)) ||
        (st = pclip__json_bool(ctx, file, root, "do_normalize", &c->do_normalize)) ||
        (st = pclip__json_bool(ctx, file, root, "do_rescale", &c->do_rescale)) ||
        (st = pclip__json_bool(ctx, file, root, "do_convert_rgb", &c->do_convert_rgb)) ||
        (st = pclip__json_double(ctx, file, root, "rescale_factor", 1e-12, 1e12,
                                 &c->rescale_factor)) ||
        (st = pclip__json_int(ctx, file, root, "resample", 0, PCLIP_RESAMPLE_COUNT - 1,
                              &resample)) ||
        (st = read_triple(ctx, file, root, "image_mean", false, c->mean)) ||
        (st = read_triple(ctx, file, root, "image_std", true, c->std)))
        return st;
    c->resample = (pclip_resample)resample;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__image_config_parse(pclip_ctx_t ctx, const char *file, const char *text,
                                       size_t len, pclip_image_config *out) {
    cJSON *root;
    pclip_status st = pclip__json_parse(ctx, file, text, len, &root);
    if (st) return st;
    pclip_image_config c;
    st = image_config_from_json(ctx, file, root, &c);
    cJSON_Delete(root);
    if (st == PCLIP_STATUS_OK) *out = c;
    return st;
}

pclip_status pclip_image_config_load(pclip_ctx_t ctx, const char *path, pclip_image_config *out) {
    if (!path || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "pclip_image_config_load: NULL argument");
    char *text;
    size_t len;
    pclip_status st =
        pclip__read_file(ctx, path, "preprocessor config", PCLIP_LIMIT_JSON_BYTES, &text, &len);
    if (st) return st;
    st = pclip__image_config_parse(ctx, path, text, len, out);
    pclip__free(text);
    return st;
}
