/* safetensors: 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {...}}, then the data. Offsets are relative to the end of the header.
 * Everything in the header is untrusted: it is checked before any tensor is
 * handed out. Gaps between tensors are allowed (some writers align); overlaps
 * are not. */
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
#define PCLIP__X(name, size) {#name, size},
    PCLIP__ST_DTYPES(PCLIP__X)
#undef PCLIP__X
};
_Static_assert(sizeof dtype_info / sizeof dtype_info[0] == PCLIP__ST_DTYPE_COUNT, "dtype table");

const char *pclip__st_dtype_name(pclip__st_dtype d) {
    return (unsigned)d < PCLIP__ST_DTYPE_COUNT ? dtype_info[d].name : "?";
}
size_t pclip__st_dtype_size(pclip__st_dtype d) {
    return (unsigned)d < PCLIP__ST_DTYPE_COUNT ? dtype_info[d].size : 0;
}

/* ---- header parsing ---- */

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const pclip__st_tensor *)a)->name, ((const pclip__st_tensor *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const pclip__st_tensor *x = *(const pclip__st_tensor *const *)a;
    const pclip__st_tensor *y = *(const pclip__st_tensor *const *)b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static pclip_status parse_entry(pclip_ctx_t ctx, const char *path, const cJSON *e,
                                const uint8_t *data, uint64_t data_size, pclip__st_tensor *t) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: tensor '%s': entry is not an object",
                          path, name);
    int fields = 0;
    for (const cJSON *c = e->child; c; c = c->next) fields++;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || fields != 3)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: tensor '%s': needs exactly 'dtype' (string), 'shape' and "
                          "'data_offsets' (arrays)",
                          path, name);
    int d;
    for (d = 0; d < PCLIP__ST_DTYPE_COUNT; d++)
        if (strcmp(dt->valuestring, dtype_info[d].name) == 0) break;
    if (d == PCLIP__ST_DTYPE_COUNT)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: tensor '%s': unknown dtype '%s'",
                          path, name, dt->valuestring);
    t->dtype = (pclip__st_dtype)d;
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > PCLIP_LIMIT_TENSOR_DIMS)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: tensor '%s': %d dimensions, more than the %d supported", path,
                          name, ndim, PCLIP_LIMIT_TENSOR_DIMS);
    t->ndim = ndim;
    size_t count = 1;
    int i = 0;
    for (const cJSON *s = shape->child; s; s = s->next, i++) {
        if (!pclip__json_is_int(s, 0, (int64_t)1 << 53))
            return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                              "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                              name, i);
        t->shape[i] = (int64_t)s->valuedouble;
        if (!pclip__mul_size(count, (size_t)t->shape[i], &count))
            return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                              "%s: tensor '%s': element count overflows", path, name);
    }
    size_t nbytes;
    if (!pclip__mul_size(count, dtype_info[d].size, &nbytes))
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: tensor '%s': byte size overflows",
                          path, name);
    if (cJSON_GetArraySize(offs) != 2 ||
        !pclip__json_is_int(cJSON_GetArrayItem(offs, 0), 0, (int64_t)1 << 53) ||
        !pclip__json_is_int(cJSON_GetArrayItem(offs, 1), 0, (int64_t)1 << 53))
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: tensor '%s': data_offsets must be two non-negative integers", path,
                          name);
    uint64_t begin = (uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble;
    uint64_t end = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (begin > end || end > data_size)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes",
                          path, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)data_size);
    if (end - begin != nbytes)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: tensor '%s': %llu bytes in data_offsets, but %s x %zu elements "
                          "needs %zu",
                          path, name, (unsigned long long)(end - begin), dtype_info[d].name,
                          count, nbytes);
    t->count = count;
    t->nbytes = nbytes;
    t->data = data + begin;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__st_parse(pclip_ctx_t ctx, const char *path, const uint8_t *data, size_t size,
                             pclip__st_file **out) {
    if (size < 8)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: %zu bytes, too short for a safetensors header", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
    if (hlen > PCLIP_LIMIT_SAFETENSORS_HEADER)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: header length %llu is over the limit of %llu bytes (not a "
                          "safetensors file?)",
                          path, (unsigned long long)hlen,
                          (unsigned long long)PCLIP_LIMIT_SAFETENSORS_HEADER);
    if (hlen < 2 || hlen > size - 8)
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: header length %llu does not fit the %zu-byte file (truncated?)",
                          path, (unsigned long long)hlen, size);
    if (data[8] != '{')
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s: header does not start with '{' (not a safetensors file?)", path);
    cJSON *root;
    pclip_status st = pclip__json_parse(ctx, path, (const char *)data + 8, (size_t)hlen, &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: header is not a JSON object", path);
    }
    const uint8_t *payload = data + 8 + hlen;
    uint64_t payload_size = size - 8 - hlen;

    pclip__st_file *f = pclip__calloc(1, sizeof *f);
    size_t n = 0;
    for (const cJSON *e = root->child; e; e = e->next) n++;
    pclip__st_tensor **by_offset = NULL;
    if (!f || !(f->path = pclip__strdup(path)) ||
        !(f->tensors = pclip__calloc(n ? n : 1, sizeof *f->tensors)) ||
        !(by_offset = pclip__calloc(n ? n : 1, sizeof *by_offset))) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory reading the header",
                        path);
        goto fail;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                                "%s: '__metadata__' must be an object", path);
                goto fail;
            }
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                                    "%s: '__metadata__' value '%s' is not a string", path,
                                    m->string);
                    goto fail;
                }
            continue;
        }
        pclip__st_tensor *t = &f->tensors[f->n_tensors];
        if ((st = parse_entry(ctx, path, e, payload, payload_size, t))) goto fail;
        if (!(t->name = pclip__strdup(e->string))) {
            st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
            goto fail;
        }
        t->file = f->path;
        by_offset[f->n_tensors++] = t;
    }
    /* Names are unique (the JSON parser refused duplicate keys). Spans must
     * not overlap: sort by start and compare neighbours. */
    qsort(by_offset, f->n_tensors, sizeof *by_offset, cmp_tensor_offset);
    for (size_t i = 1; i < f->n_tensors; i++) {
        const pclip__st_tensor *a = by_offset[i - 1], *b = by_offset[i];
        if (a->nbytes && b->nbytes && a->data + a->nbytes > b->data) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "%s: tensors '%s' and '%s' overlap in the data section", path,
                            a->name, b->name);
            goto fail;
        }
    }
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_tensor_name);
    for (size_t i = 0; i < f->n_tensors; i++) f->tensors[i].file = f->path;
    pclip__free(by_offset);
    cJSON_Delete(root);
    *out = f;
    return PCLIP_STATUS_OK;
fail:
    pclip__free(by_offset);
    cJSON_Delete(root);
    pclip__st_close(f);
    return st;
}

pclip_status pclip__st_open(pclip_ctx_t ctx, const char *path, pclip__st_file **out) {
    pclip__mmap map = {0};
    pclip_status st = pclip__mmap_open(ctx, path, "checkpoint", &map);
    if (st) return st;
    pclip__st_file *f;
    st = pclip__st_parse(ctx, path, map.data, map.size, &f);
    if (st) {
        pclip__mmap_close(&map);
        return st;
    }
    f->map = map;
    *out = f;
    return PCLIP_STATUS_OK;
}

void pclip__st_close(pclip__st_file *f) {
    if (!f) return;
    if (f->tensors)
        for (size_t i = 0; i < f->n_tensors; i++) pclip__free(f->tensors[i].name);
    pclip__free(f->tensors);
    pclip__free(f->path);
    pclip__mmap_close(&f->map);
    pclip__free(f);
}

const pclip__st_tensor *pclip__st_find(const pclip__st_file *f, const char *name) {
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- conversion ---- */

float pclip__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float pclip__bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

pclip_status pclip__st_to_f32(pclip_ctx_t ctx, const pclip__st_tensor *t, float *out) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case PCLIP__ST_F32:
        memcpy(out, p, t->nbytes); /* the data may be unaligned: copy bytes */
        return PCLIP_STATUS_OK;
    case PCLIP__ST_F16:
        for (uint64_t i = 0; i < t->count; i++)
            out[i] = pclip__f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return PCLIP_STATUS_OK;
    case PCLIP__ST_BF16:
        for (uint64_t i = 0; i < t->count; i++)
            out[i] = pclip__bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return PCLIP_STATUS_OK;
    default:
        return pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                          "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                          t->file, t->name, pclip__st_dtype_name(t->dtype));
    }
}

/* ---- writing ---- */

/* A growing text buffer for the header; `oom` sticks once set. */
typedef struct text_buf {
    char *s;
    size_t len, cap;
    bool oom;
} text_buf;

static void buf_add(text_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *grown = pclip__realloc(b->s, cap);
        if (!grown) {
            b->oom = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_str(text_buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_u64(text_buf *b, uint64_t v) {
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    buf_add(b, num, (size_t)n);
}

/* A JSON string: quotes, backslashes and control bytes escaped; other bytes
 * (UTF-8 included) as they are. */
static void buf_json_string(text_buf *b, const char *s) {
    buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            buf_add(b, esc, 2);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, (const char *)p, 1);
        }
    }
    buf_add(b, "\"", 1);
}

static int cmp_out_order(const void *a, const void *b) {
    const pclip__st_out *x = *(const pclip__st_out *const *)a;
    const pclip__st_out *y = *(const pclip__st_out *const *)b;
    size_t sx = pclip__st_dtype_size(x->dtype), sy = pclip__st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

pclip_status pclip__st_write(pclip_ctx_t ctx, const char *path, size_t n, const pclip__st_out *t,
                             const char *const *metadata) {
    if (!path || (n && !t))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "safetensors write: NULL argument");
    const pclip__st_out **order = pclip__calloc(n ? n : 1, sizeof *order);
    size_t *nbytes = pclip__calloc(n ? n : 1, sizeof *nbytes);
    text_buf h = {0};
    pclip_status st = PCLIP_STATUS_OK;
    if (!order || !nbytes) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const pclip__st_out *x = &t[i];
        if (!x->name || !x->name[0]) {
            st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "%s: tensor %zu has no name",
                            path, i);
            goto done;
        }
        if ((unsigned)x->dtype >= PCLIP__ST_DTYPE_COUNT || x->ndim < 0 ||
            x->ndim > PCLIP_LIMIT_TENSOR_DIMS) {
            st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                            "%s: tensor '%s': bad dtype or %d dimensions (0..%d)", path, x->name,
                            (int)x->ndim, PCLIP_LIMIT_TENSOR_DIMS);
            goto done;
        }
        size_t count = 1;
        for (int d = 0; d < x->ndim; d++) {
            if (x->shape[d] < 0 || !pclip__mul_size(count, (size_t)x->shape[d], &count)) {
                st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                                "%s: tensor '%s': shape[%d] = %lld is negative or overflows",
                                path, x->name, d, (long long)x->shape[d]);
                goto done;
            }
        }
        if (!pclip__mul_size(count, pclip__st_dtype_size(x->dtype), &nbytes[i])) {
            st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                            "%s: tensor '%s': byte size overflows", path, x->name);
            goto done;
        }
        if (nbytes[i] && !x->data) {
            st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': NULL data",
                            path, x->name);
            goto done;
        }
        if (strcmp(x->name, "__metadata__") == 0) {
            st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                            "%s: '__metadata__' is not a tensor name", path);
            goto done;
        }
        order[i] = x;
    }
    qsort(order, n, sizeof *order, cmp_out_order);
    /* a few hundred names at most: compare every pair */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(order[i]->name, order[j]->name) == 0) {
                st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                                "%s: tensor '%s' given twice", path, order[i]->name);
                goto done;
            }
    buf_add(&h, "{", 1);
    bool first = true;
    if (metadata) {
        buf_str(&h, "\"__metadata__\":{");
        for (size_t k = 0; metadata[k] && metadata[k + 1]; k += 2) {
            if (k) buf_add(&h, ",", 1);
            buf_json_string(&h, metadata[k]);
            buf_add(&h, ":", 1);
            buf_json_string(&h, metadata[k + 1]);
        }
        buf_add(&h, "}", 1);
        first = false;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const pclip__st_out *x = order[i];
        size_t bytes = nbytes[x - t];
        if (!first) buf_add(&h, ",", 1);
        first = false;
        buf_json_string(&h, x->name);
        buf_str(&h, ":{\"dtype\":\"");
        buf_str(&h, pclip__st_dtype_name(x->dtype));
        buf_str(&h, "\",\"shape\":[");
        for (int d = 0; d < x->ndim; d++) {
            if (d) buf_add(&h, ",", 1);
            buf_u64(&h, (uint64_t)x->shape[d]);
        }
        buf_str(&h, "],\"data_offsets\":[");
        buf_u64(&h, offset);
        buf_add(&h, ",", 1);
        offset += bytes;
        buf_u64(&h, offset);
        buf_str(&h, "]}");
    }
    buf_add(&h, "}", 1);
    while (!h.oom && h.len % 8) buf_add(&h, " ", 1);
    if (h.oom) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    if (h.len > PCLIP_LIMIT_SAFETENSORS_HEADER) {
        st = pclip__err(ctx, PCLIP_STATUS_LIMIT, "%s: header of %zu bytes is over the limit",
                        path, h.len);
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    pclip__atomic_file f;
    if ((st = pclip__atomic_open(ctx, path, &f))) goto done;
    st = pclip__atomic_write(ctx, &f, len8, 8);
    if (!st) st = pclip__atomic_write(ctx, &f, h.s, h.len);
    for (size_t i = 0; i < n && !st; i++)
        st = pclip__atomic_write(ctx, &f, order[i]->data, nbytes[order[i] - t]);
    if (st) pclip__atomic_abort(&f);
    else st = pclip__atomic_commit(ctx, &f);
done:
    pclip__free(h.s);
    pclip__free(order);
    pclip__free(nbytes);
    return st;
}
