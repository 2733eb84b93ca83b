/* JSON parsing with duplicate-key checks and typed, range-checked field
 * readers. cJSON's allocations are routed through the library's allocator so
 * that the allocation-failure tests reach them too. */
#include "io/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Set when an allocation inside cJSON fails, so that a NULL parse result can
 * be told apart from bad syntax. */
static _Thread_local bool json_alloc_failed;

static void *json_malloc(size_t n) {
    void *p = pclip__malloc(n);
    if (!p) json_alloc_failed = true;
    return p;
}
static void json_free(void *p) { pclip__free(p); }

static void json_init_hooks(void) {
    static bool done;
    if (!done) {
        cJSON_Hooks hooks = {json_malloc, json_free};
        cJSON_InitHooks(&hooks);
        done = true;
    }
}

/* Finds a key that occurs twice in any object of the tree. Small objects are
 * checked pairwise, large ones (vocab.json: 49k keys) by sorting the keys. */
static pclip_status find_duplicate_key(const cJSON *node, const char **dup) {
    size_t n = 0;
    for (const cJSON *a = node->child; a; a = a->next) n++;
    if (cJSON_IsObject(node) && n > 1) {
        if (n <= 64) {
            for (const cJSON *a = node->child; a; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                    if (strcmp(a->string, b->string) == 0) {
                        *dup = a->string;
                        return PCLIP_STATUS_OK;
                    }
        } else {
            const char **keys = pclip__malloc(n * sizeof *keys);
            if (!keys) return PCLIP_STATUS_OUT_OF_MEMORY;
            size_t i = 0;
            for (const cJSON *a = node->child; a; a = a->next) keys[i++] = a->string;
            qsort(keys, n, sizeof *keys, pclip__cmp_str_ptr);
            for (i = 1; i < n && !*dup; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) *dup = keys[i];
            pclip__free(keys);
            if (*dup) return PCLIP_STATUS_OK;
        }
    }
    for (const cJSON *a = node->child; a && !*dup; a = a->next) {
        if (cJSON_IsObject(a) || cJSON_IsArray(a)) {
            pclip_status st = find_duplicate_key(a, dup);
            if (st) return st;
        }
    }
    return PCLIP_STATUS_OK;
}

/* The deepest nesting of [ and { outside strings, counted in one flat pass
 * before cJSON (which recurses per level, up to its own limit of 1000) sees
 * the text: a deep file is refused without using any stack. Returns the byte
 * offset where the limit is passed, or (size_t)-1. */
static size_t json_too_deep(const char *text, size_t len, int limit) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return i;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return (size_t)-1;
}

pclip_status pclip__json_parse(pclip_ctx_t ctx, const char *file, const char *text, size_t len,
                               cJSON **out) {
    json_init_hooks();
    if (len == 0) return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: file is empty", file);
    size_t deep = json_too_deep(text, len, PCLIP_LIMIT_JSON_DEPTH);
    if (deep != (size_t)-1)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: JSON nested deeper than %d levels (at byte %zu)", file,
                          PCLIP_LIMIT_JSON_DEPTH, deep);
    const char *end = NULL;
    json_alloc_failed = false;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root && json_alloc_failed)
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory parsing JSON", file);
    if (!root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        const char *err = cJSON_GetErrorPtr();
        if (err && err >= text && err <= text + len) off = (size_t)(err - text);
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: not valid JSON (error near byte %zu)",
                          file, off);
    }
    for (const char *p = end; p && p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
            cJSON_Delete(root);
            return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                              "%s: unexpected data after the JSON value at byte %zu", file,
                              (size_t)(p - text));
        }
    }
    const char *dup = NULL;
    pclip_status st = find_duplicate_key(root, &dup);
    if (st || dup) {
        st = st ? pclip__err(ctx, st, "%s: out of memory checking keys", file)
                : pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: duplicate key '%s'", file, dup);
        cJSON_Delete(root);
        return st;
    }
    *out = root;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__json_load(pclip_ctx_t ctx, const char *path, const char *what, cJSON **out) {
    char *text;
    size_t len;
    pclip_status st = pclip__read_file(ctx, path, what, PCLIP_LIMIT_JSON_BYTES, &text, &len);
    if (st) return st;
    st = pclip__json_parse(ctx, path, text, len, out);
    pclip__free(text);
    return st;
}

bool pclip__json_is_int(const cJSON *item, int64_t min, int64_t max) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    return isfinite(v) && v == floor(v) && v >= (double)min && v <= (double)max;
}

static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

pclip_status pclip__json_int64(pclip_ctx_t ctx, const char *file, const cJSON *obj,
                               const char *key, int64_t min, int64_t max, int64_t *out) {
    const cJSON *v = field(obj, key);
    if (!v) return PCLIP_STATUS_OK;
    if (!pclip__json_is_int(v, min, max)) {
        if (cJSON_IsNumber(v))
            return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                              "%s: '%s' is %g; expected an integer in [%lld, %lld]", file, key,
                              v->valuedouble, (long long)min, (long long)max);
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "%s: '%s' must be an integer", file, key);
    }
    *out = (int64_t)v->valuedouble;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__json_int(pclip_ctx_t ctx, const char *file, const cJSON *obj, const char *key,
                             int64_t min, int64_t max, int32_t *out) {
    int64_t v = *out;
    if (min < INT32_MIN) min = INT32_MIN;
    if (max > INT32_MAX) max = INT32_MAX;
    pclip_status st = pclip__json_int64(ctx, file, obj, key, min, max, &v);
    if (st == PCLIP_STATUS_OK) *out = (int32_t)v;
    return st;
}

pclip_status pclip__json_double(pclip_ctx_t ctx, const char *file, const cJSON *obj,
                                const char *key, double min, double max, double *out) {
    const cJSON *v = field(obj, key);
    if (!v) return PCLIP_STATUS_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max)
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG,
                          "%s: '%s' must be a number in [%g, %g]", file, key, min, max);
    *out = v->valuedouble;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__json_bool(pclip_ctx_t ctx, const char *file, const cJSON *obj, const char *key,
                              int32_t *out) {
    const cJSON *v = field(obj, key);
    if (!v) return PCLIP_STATUS_OK;
    if (!cJSON_IsBool(v))
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "%s: '%s' must be true or false", file,
                          key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__json_string(pclip_ctx_t ctx, const char *file, const cJSON *obj,
                                const char *key, const char **out) {
    const cJSON *v = field(obj, key);
    if (!v) return PCLIP_STATUS_OK;
    if (!cJSON_IsString(v))
        return pclip__err(ctx, PCLIP_STATUS_BAD_CONFIG, "%s: '%s' must be a string", file, key);
    *out = v->valuestring;
    return PCLIP_STATUS_OK;
}
