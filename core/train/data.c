/* Reading image-caption data files: CSV (RFC 4180, with ',' or '|'), plain
 * TSV, and JSON Lines. The whole file is read, checked once for NUL bytes
 * and UTF-8, then split into records; every caption and resolved image path
 * is copied into one string block owned by the dataset, and each image is
 * listed once (a hash table on the resolved path).
 *
 * It does not open images or tokenize captions: features.c does both. */
#include "train/data.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "apps/index.h" /* pclip__hash64 */
#include "io/json.h"

/* ---- growing buffers ---- */

/* Grows *p (elements of `size` bytes) to hold at least `need`; false on
 * overflow or no memory. */
static bool grow(void **p, size_t size, int64_t *cap, int64_t need) {
    if (need <= *cap) return true;
    int64_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > INT64_MAX / 2) return false;
        c *= 2;
    }
    size_t bytes;
    if ((uint64_t)c > SIZE_MAX || !pclip__mul_size((size_t)c, size, &bytes)) return false;
    void *q = pclip__realloc(*p, bytes);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* The string block: NUL-terminated strings, addressed by offset while the
 * block may still move. */
typedef struct sblock {
    char *p;
    int64_t len, cap;
} sblock;

static bool sb_add(sblock *b, const char *s, size_t n, size_t *off) {
    if ((uint64_t)n >= (uint64_t)(INT64_MAX - b->len)) return false;
    if (!grow((void **)&b->p, 1, &b->cap, b->len + (int64_t)n + 1)) return false;
    *off = (size_t)b->len;
    memcpy(b->p + b->len, s, n);
    b->p[b->len + (int64_t)n] = '\0';
    b->len += (int64_t)n + 1;
    return true;
}

/* ---- the reader ---- */

typedef struct raw_pair {
    int64_t image, line;
    size_t caption; /* offset in the block */
} raw_pair;

typedef struct raw_bad {
    int64_t line;
    size_t why;
} raw_bad;

typedef struct reader {
    pclip_ctx_t ctx;
    const char *path; /* for messages */
    const char *base; /* relative image paths are joined to base[0..base_len) */
    size_t base_len;  /* (the data file's folder with its '/', or image_root + '/') */
    char *base_buf;   /* image_root + '/' when it has none */
    pclip__dataset_options o;
    sblock str;
    raw_pair *pairs;
    int64_t n_pairs, cap_pairs;
    size_t *img_off; /* [n_images] offsets of the resolved paths */
    int64_t *img_line;
    int64_t n_images, cap_images, cap_img_line;
    int64_t *slots; /* hash table of image indices, -1 empty; n_slots a power of two */
    size_t n_slots;
    raw_bad *bad;
    int64_t n_bad, cap_bad;
    char *tmp; /* resolved-path scratch */
    int64_t tmp_cap;
} reader;

static pclip_status oom(reader *r) {
    return pclip__err(r->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory reading the data",
                      r->path);
}

/* The 1-based line of byte `off` of buf. */
static int64_t line_of(const char *buf, size_t off) {
    int64_t line = 1;
    for (const char *p = buf, *end = buf + off; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        line++;
    return line;
}

/* A row that is wrong in itself: left out and listed under skip_bad_rows,
 * else the read's error. */
static pclip_status bad_row(reader *r, int64_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static pclip_status bad_row(reader *r, int64_t line, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (!r->o.skip_bad_rows)
        return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT, "%s:%lld: %s", r->path,
                          (long long)line, why);
    size_t off;
    if (!grow((void **)&r->bad, sizeof *r->bad, &r->cap_bad, r->n_bad + 1) ||
        !sb_add(&r->str, why, strlen(why), &off))
        return oom(r);
    r->bad[r->n_bad++] = (raw_bad){line, off};
    return PCLIP_STATUS_OK;
}

static bool valid_utf8(const char *s, size_t n, size_t *bad_at) {
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int32_t cp;
        size_t k = pclip__utf8_decode(u + i, n - i, &cp);
        if (k == 0) {
            *bad_at = i;
            return false;
        }
        i += k;
    }
    return true;
}

static bool all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return false;
    return true;
}

/* The index of the image `path` (resolved), added when new. */
static pclip_status image_index(reader *r, const char *path, size_t n, int64_t line,
                                int64_t *out) {
    /* keep the table at most half full */
    if ((size_t)(r->n_images + 1) * 2 > r->n_slots) {
        size_t ns = r->n_slots ? r->n_slots * 2 : 1024;
        size_t bytes;
        if (!pclip__mul_size(ns, sizeof(int64_t), &bytes)) return oom(r);
        int64_t *slots = pclip__malloc(bytes);
        if (!slots) return oom(r);
        for (size_t i = 0; i < ns; i++) slots[i] = -1;
        for (int64_t k = 0; k < r->n_images; k++) {
            const char *s = r->str.p + r->img_off[k];
            size_t h = (size_t)pclip__hash64(s, strlen(s), 0) & (ns - 1);
            while (slots[h] >= 0) h = (h + 1) & (ns - 1);
            slots[h] = k;
        }
        pclip__free(r->slots);
        r->slots = slots;
        r->n_slots = ns;
    }
    size_t h = (size_t)pclip__hash64(path, n, 0) & (r->n_slots - 1);
    for (; r->slots[h] >= 0; h = (h + 1) & (r->n_slots - 1)) {
        const char *s = r->str.p + r->img_off[r->slots[h]];
        if (strncmp(s, path, n) == 0 && s[n] == '\0') {
            *out = r->slots[h];
            return PCLIP_STATUS_OK;
        }
    }
    size_t off;
    if (!grow((void **)&r->img_off, sizeof *r->img_off, &r->cap_images, r->n_images + 1) ||
        !grow((void **)&r->img_line, sizeof *r->img_line, &r->cap_img_line, r->n_images + 1) ||
        !sb_add(&r->str, path, n, &off))
        return oom(r);
    r->img_off[r->n_images] = off;
    r->img_line[r->n_images] = line;
    r->slots[h] = r->n_images;
    *out = r->n_images++;
    return PCLIP_STATUS_OK;
}

/* One (image, caption) of the record starting at `line`. The strings need
 * not be NUL-terminated; JSON's may hold anything its escapes can write. */
static pclip_status add_pair(reader *r, int64_t line, const char *image, size_t image_len,
                             const char *caption, size_t caption_len) {
    const char *ic = r->o.image_column, *cc = r->o.caption_column;
    if (image_len == 0) return bad_row(r, line, "empty image (column '%s')", ic);
    if (all_space(caption, caption_len))
        return bad_row(r, line, "empty caption (column '%s')", cc);
    size_t at;
    if (memchr(image, '\0', image_len) || memchr(caption, '\0', caption_len))
        return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT, "%s:%lld: a NUL character in the %s",
                          r->path, (long long)line,
                          memchr(image, '\0', image_len) ? "image path" : "caption");
    if (!valid_utf8(image, image_len, &at) || !valid_utf8(caption, caption_len, &at))
        return pclip__err(r->ctx, PCLIP_STATUS_BAD_TEXT,
                          "%s:%lld: the %s is not valid UTF-8 (an escape that writes a lone "
                          "surrogate?)",
                          r->path, (long long)line,
                          valid_utf8(image, image_len, &at) ? "caption" : "image path");
    if (r->n_pairs >= PCLIP__DATA_LIMIT_PAIRS)
        return pclip__err(r->ctx, PCLIP_STATUS_LIMIT, "%s:%lld: more than %lld pairs", r->path,
                          (long long)line, (long long)PCLIP__DATA_LIMIT_PAIRS);
    /* relative to the data file's folder; absolute paths as they are */
    const char *resolved = image;
    size_t n = image_len;
    if (image[0] != '/' && r->base_len > 0) {
        n = r->base_len + image_len;
        if (!grow((void **)&r->tmp, 1, &r->tmp_cap, (int64_t)n + 1)) return oom(r);
        memcpy(r->tmp, r->base, r->base_len);
        memcpy(r->tmp + r->base_len, image, image_len);
        resolved = r->tmp;
    }
    int64_t img = -1;
    pclip_status st = image_index(r, resolved, n, line, &img);
    if (st) return st;
    size_t off;
    if (!grow((void **)&r->pairs, sizeof *r->pairs, &r->cap_pairs, r->n_pairs + 1) ||
        !sb_add(&r->str, caption, caption_len, &off))
        return oom(r);
    r->pairs[r->n_pairs++] = (raw_pair){img, line, off};
    return PCLIP_STATUS_OK;
}

/* ---- separated values ---- */

typedef struct field {
    size_t off, len; /* in the record scratch, NUL-terminated there */
} field;

typedef struct record {
    char *p; /* the fields' bytes, unquoted */
    int64_t len, cap;
    field *f;
    int64_t n, cap_f;
} record;

static bool rec_push(record *rec, const char *s, size_t n) {
    if (!grow((void **)&rec->p, 1, &rec->cap, rec->len + (int64_t)n + 1)) return false;
    memcpy(rec->p + rec->len, s, n);
    rec->len += (int64_t)n;
    return true;
}

static bool is_eol(const char *buf, size_t len, size_t p) {
    return buf[p] == '\n' || (buf[p] == '\r' && p + 1 < len && buf[p + 1] == '\n');
}

/* Splits the record at *pos (blank lines before it skipped) into rec's
 * fields; *line is the line at *pos and moves with it. rec->n is 0 at the
 * end of the file. *start_line gets the record's first line. */
static pclip_status sv_record(reader *r, const char *buf, size_t len, size_t *pos, int64_t *line,
                              char sep, bool quoting, record *rec, int64_t *start_line) {
    size_t p = *pos;
    while (p < len && is_eol(buf, len, p)) {
        p += buf[p] == '\r' ? 2 : 1;
        ++*line;
    }
    rec->len = 0;
    rec->n = 0;
    *start_line = *line;
    if (p >= len) {
        *pos = p;
        return PCLIP_STATUS_OK;
    }
    size_t start = p;
    for (;;) {
        if (rec->n >= PCLIP__DATA_LIMIT_COLUMNS)
            return pclip__err(r->ctx, PCLIP_STATUS_LIMIT, "%s:%lld: more than %d fields",
                              r->path, (long long)*start_line, PCLIP__DATA_LIMIT_COLUMNS);
        field f = {(size_t)rec->len, 0};
        if (quoting && buf[p] == '"') {
            int64_t qline = *line;
            p++;
            for (;;) {
                /* the span up to the next quote, copied at once */
                const char *q = p < len ? memchr(buf + p, '"', len - p) : NULL;
                size_t stop = q ? (size_t)(q - buf) : len;
                if (stop - start > PCLIP__DATA_LIMIT_RECORD_BYTES) {
                    p = stop;
                    break;
                }
                for (const char *nl = buf + p; (nl = memchr(nl, '\n', (size_t)(buf + stop - nl)));
                     nl++)
                    ++*line;
                if (!rec_push(rec, buf + p, stop - p)) return oom(r);
                if (!q)
                    return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                                      "%s:%lld: a quoted field is never closed (its quote opens "
                                      "on this line)",
                                      r->path, (long long)qline);
                p = stop + 1;
                if (p < len && buf[p] == '"') { /* "" is one quote */
                    if (!rec_push(rec, "\"", 1)) return oom(r);
                    p++;
                    continue;
                }
                break;
            }
            if (p - start > PCLIP__DATA_LIMIT_RECORD_BYTES) break;
            if (p < len && buf[p] != sep && !is_eol(buf, len, p))
                return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                                  "%s:%lld: text after the closing quote of field %lld (a quote "
                                  "inside a quoted field is written \"\")",
                                  r->path, (long long)*line, (long long)rec->n + 1);
        } else {
            /* '|': the one space after the separator is part of it */
            if (sep == '|' && rec->n > 0 && buf[p] == ' ') p++;
            size_t e = p;
            while (e < len && buf[e] != sep && buf[e] != '\n' && buf[e] != '\r') e++;
            if (e - start > PCLIP__DATA_LIMIT_RECORD_BYTES) {
                p = e;
                break;
            }
            if (e < len && buf[e] == '\r' && !is_eol(buf, len, e))
                return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                                  "%s:%lld: a carriage return not followed by a line feed "
                                  "(line ends must be LF or CR LF)",
                                  r->path, (long long)*line);
            if (!rec_push(rec, buf + p, e - p)) return oom(r);
            p = e;
        }
        f.len = (size_t)rec->len - f.off;
        if (!rec_push(rec, "", 1) ||
            !grow((void **)&rec->f, sizeof *rec->f, &rec->cap_f, rec->n + 1))
            return oom(r);
        rec->p[rec->len - 1] = '\0';
        rec->f[rec->n++] = f;
        if (p >= len) break;
        if (buf[p] == sep) {
            p++;
            if (p >= len) { /* a separator at the very end: one more, empty field */
                if (!rec_push(rec, "", 1) ||
                    !grow((void **)&rec->f, sizeof *rec->f, &rec->cap_f, rec->n + 1))
                    return oom(r);
                rec->p[rec->len - 1] = '\0';
                rec->f[rec->n++] = (field){(size_t)rec->len - 1, 0};
                break;
            }
            if (is_eol(buf, len, p)) { /* "a,\n": the empty last field */
                if (!rec_push(rec, "", 1) ||
                    !grow((void **)&rec->f, sizeof *rec->f, &rec->cap_f, rec->n + 1))
                    return oom(r);
                rec->p[rec->len - 1] = '\0';
                rec->f[rec->n++] = (field){(size_t)rec->len - 1, 0};
                p += buf[p] == '\r' ? 2 : 1;
                ++*line;
                break;
            }
            continue;
        }
        p += buf[p] == '\r' ? 2 : 1; /* the line end */
        ++*line;
        break;
    }
    if (p - start > PCLIP__DATA_LIMIT_RECORD_BYTES)
        return pclip__err(r->ctx, PCLIP_STATUS_LIMIT,
                          "%s:%lld: a record longer than %zu bytes (an unterminated quote?)",
                          r->path, (long long)*start_line, PCLIP__DATA_LIMIT_RECORD_BYTES);
    *pos = p;
    return PCLIP_STATUS_OK;
}

static const char *sep_name(char sep) {
    return sep == '\t' ? "tab" : sep == ',' ? "','" : sep == '|' ? "'|'" : "?";
}

/* Header names lose surrounding spaces ("image_name| comment"). */
static void trim(char **s, size_t *n) {
    while (*n && ((*s)[0] == ' ' || (*s)[0] == '\t')) ++*s, --*n;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) --*n;
    (*s)[*n] = '\0';
}

/* The column called `name`, or an error listing the columns present. */
static pclip_status find_column(reader *r, const record *hdr, const char *name, const char *role,
                                char sep, int64_t *out) {
    int64_t found = -1;
    for (int64_t i = 0; i < hdr->n; i++) {
        if (strcmp(hdr->p + hdr->f[i].off, name) != 0) continue;
        if (found >= 0)
            return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                              "%s:1: the %s column '%s' appears twice in the header (columns %lld "
                              "and %lld)",
                              r->path, role, name, (long long)found + 1, (long long)i + 1);
        found = i;
    }
    if (found >= 0) {
        *out = found;
        return PCLIP_STATUS_OK;
    }
    char list[640];
    size_t used = 0;
    list[0] = '\0';
    for (int64_t i = 0; i < hdr->n; i++) {
        int k = snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "",
                         hdr->p + hdr->f[i].off);
        if (k < 0 || (size_t)k >= sizeof list - used) {
            snprintf(list + (used < sizeof list - 6 ? used : sizeof list - 6), 6, ", ...");
            break;
        }
        used += (size_t)k;
    }
    return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                      "%s:1: no %s column '%s' in the header; its columns (separator %s) are: %s",
                      r->path, role, name, sep_name(sep), list);
}

/* The separator of a CSV/TSV file from its first line (see data.h). */
static char sniff_sep(const char *buf, size_t len, pclip__data_format fmt) {
    const char *nl = memchr(buf, '\n', len);
    size_t n = nl ? (size_t)(nl - buf) : len;
    bool tab = memchr(buf, '\t', n) != NULL, comma = memchr(buf, ',', n) != NULL,
         bar = memchr(buf, '|', n) != NULL;
    if (bar && !tab && !comma) return '|';
    if (fmt == PCLIP__DATA_TSV) return tab || !comma ? '\t' : ',';
    if (fmt == PCLIP__DATA_CSV) return comma || !tab ? ',' : '\t';
    return tab ? '\t' : ',';
}

static pclip_status read_sv(reader *r, const char *buf, size_t len, char sep) {
    bool quoting = sep != '\t';
    record hdr = {0}, rec = {0};
    size_t pos = 0;
    int64_t line = 1, first;
    pclip_status st = sv_record(r, buf, len, &pos, &line, sep, quoting, &hdr, &first);
    if (!st && hdr.n == 0)
        st = pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT, "%s: no header line (only blank lines)",
                        r->path);
    if (!st && first != 1)
        st = pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                        "%s:1: a blank first line; the header must be the first line", r->path);
    int64_t ci = -1, ki = -1;
    if (!st) {
        for (int64_t i = 0; i < hdr.n; i++) {
            char *s = hdr.p + hdr.f[i].off;
            size_t n = hdr.f[i].len;
            trim(&s, &n);
            hdr.f[i] = (field){(size_t)(s - hdr.p), n};
        }
        if (!(st = find_column(r, &hdr, r->o.image_column, "image", sep, &ci)))
            st = find_column(r, &hdr, r->o.caption_column, "caption", sep, &ki);
    }
    while (!st) {
        if ((st = sv_record(r, buf, len, &pos, &line, sep, quoting, &rec, &first)) || rec.n == 0)
            break;
        if (rec.n != hdr.n) {
            st = bad_row(r, first, "%lld field%s, the header has %lld (separator %s)",
                         (long long)rec.n, rec.n == 1 ? "" : "s", (long long)hdr.n,
                         sep_name(sep));
            continue;
        }
        st = add_pair(r, first, rec.p + rec.f[ci].off, rec.f[ci].len, rec.p + rec.f[ki].off,
                      rec.f[ki].len);
    }
    pclip__free(hdr.p);
    pclip__free(hdr.f);
    pclip__free(rec.p);
    pclip__free(rec.f);
    return st;
}

/* ---- JSON Lines ---- */

/* True when s[0..n) holds the JSON escape \u0000 (which cJSON would turn
 * into a string cut short). */
static bool has_nul_escape(const char *s, size_t n) {
    for (size_t i = 0; i + 6 <= n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0) return true;
        i++; /* the escaped character is not an escape start */
    }
    return false;
}

static pclip_status json_key(reader *r, int64_t line, const cJSON *obj, const char *key,
                             const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v) return bad_row(r, line, "no key \"%s\"", key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return bad_row(r, line, "the value of \"%s\" is not a string", key);
    *out = v->valuestring;
    return PCLIP_STATUS_OK;
}

static pclip_status read_jsonl(reader *r, const char *buf, size_t len) {
    pclip_status st = PCLIP_STATUS_OK;
    int64_t line = 1;
    char label[1100];
    for (size_t p = 0; p < len && !st; line++) {
        const char *nl = memchr(buf + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - buf) : len;
        size_t s = p;
        p = nl ? e + 1 : len;
        if (all_space(buf + s, e - s)) continue;
        if (e - s > PCLIP__DATA_LIMIT_RECORD_BYTES)
            return pclip__err(r->ctx, PCLIP_STATUS_LIMIT, "%s:%lld: a line longer than %zu bytes",
                              r->path, (long long)line, PCLIP__DATA_LIMIT_RECORD_BYTES);
        if (has_nul_escape(buf + s, e - s))
            return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                              "%s:%lld: a \\u0000 escape (NUL characters are not allowed)",
                              r->path, (long long)line);
        snprintf(label, sizeof label, "%s:%lld", r->path, (long long)line);
        cJSON *obj = NULL;
        if ((st = pclip__json_parse(r->ctx, label, buf + s, e - s, &obj))) return st;
        if (!cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                              "%s:%lld: not a JSON object (each line must be one object with "
                              "\"%s\" and \"%s\")",
                              r->path, (long long)line, r->o.image_column, r->o.caption_column);
        }
        const char *image = NULL, *caption = NULL;
        size_t had_bad = (size_t)r->n_bad;
        if (!(st = json_key(r, line, obj, r->o.image_column, &image)) &&
            (size_t)r->n_bad == had_bad &&
            !(st = json_key(r, line, obj, r->o.caption_column, &caption)) &&
            (size_t)r->n_bad == had_bad)
            st = add_pair(r, line, image, strlen(image), caption, strlen(caption));
        cJSON_Delete(obj);
    }
    return st;
}

/* ---- the file ---- */

const char *pclip__data_format_name(pclip__data_format f) {
    static const char *const names[PCLIP__DATA_FORMAT_COUNT] = {"auto", "csv", "tsv", "jsonl"};
    return (unsigned)f < PCLIP__DATA_FORMAT_COUNT ? names[f] : "?";
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    if (k > n) return false;
    for (size_t i = 0; i < k; i++) {
        char c = s[n - k + i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != suffix[i]) return false;
    }
    return true;
}

/* The format by extension; AUTO when the name says nothing, or JSONL when
 * then the first non-blank byte is '{'. (AUTO goes on as separated values,
 * the separator sniffed.) */
static pclip__data_format format_of(const char *path, const char *buf, size_t len) {
    if (ends_with(path, ".csv")) return PCLIP__DATA_CSV;
    if (ends_with(path, ".tsv") || ends_with(path, ".tab")) return PCLIP__DATA_TSV;
    if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson") || ends_with(path, ".json"))
        return PCLIP__DATA_JSONL;
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
    return i < len && buf[i] == '{' ? PCLIP__DATA_JSONL : PCLIP__DATA_AUTO;
}

/* The whole text: no NUL byte, valid UTF-8. */
static pclip_status check_text(reader *r, const char *buf, size_t len) {
    const char *nul = memchr(buf, '\0', len);
    if (nul)
        return pclip__err(r->ctx, PCLIP_STATUS_BAD_FORMAT,
                          "%s:%lld: a NUL byte (a binary or UTF-16 file? data files are UTF-8 "
                          "text)",
                          r->path, (long long)line_of(buf, (size_t)(nul - buf)));
    size_t at;
    if (!valid_utf8(buf, len, &at)) {
        const char *ls = buf + at;
        while (ls > buf && ls[-1] != '\n') ls--;
        return pclip__err(r->ctx, PCLIP_STATUS_BAD_TEXT,
                          "%s:%lld: invalid UTF-8 (byte 0x%02x at column %lld; data files are "
                          "UTF-8 text)",
                          r->path, (long long)line_of(buf, at), (unsigned)(uint8_t)buf[at],
                          (long long)(buf + at - ls) + 1);
    }
    return PCLIP_STATUS_OK;
}

static void reader_free(reader *r) {
    pclip__free(r->str.p);
    pclip__free(r->pairs);
    pclip__free(r->img_off);
    pclip__free(r->img_line);
    pclip__free(r->slots);
    pclip__free(r->bad);
    pclip__free(r->tmp);
    pclip__free(r->base_buf);
}

/* The dataset from the reader's arrays: pointers into the final block. */
static pclip_status finish(reader *r, pclip__data_format fmt, char sep, pclip__dataset **out) {
    pclip__dataset *ds = pclip__calloc(1, sizeof *ds);
    if (!ds) return oom(r);
    ds->path = pclip__strdup(r->path);
    ds->pairs = pclip__calloc((size_t)r->n_pairs, sizeof *ds->pairs);
    ds->images = pclip__calloc((size_t)r->n_images, sizeof *ds->images);
    ds->image_line = pclip__calloc((size_t)r->n_images, sizeof *ds->image_line);
    ds->bad_rows = r->n_bad ? pclip__calloc((size_t)r->n_bad, sizeof *ds->bad_rows) : NULL;
    if (!ds->path || !ds->pairs || !ds->images || !ds->image_line || (r->n_bad && !ds->bad_rows)) {
        pclip__dataset_destroy(ds);
        return oom(r);
    }
    /* the block no longer moves: hand it over */
    ds->strings = r->str.p;
    r->str = (sblock){0};
    ds->format = fmt;
    ds->sep = sep;
    ds->n_images = r->n_images;
    for (int64_t i = 0; i < r->n_images; i++) {
        ds->images[i] = ds->strings + r->img_off[i];
        ds->image_line[i] = r->img_line[i];
    }
    ds->n_pairs = r->n_pairs;
    for (int64_t i = 0; i < r->n_pairs; i++)
        ds->pairs[i] = (pclip__pair){.image = r->pairs[i].image,
                                     .path = ds->images[r->pairs[i].image],
                                     .caption = ds->strings + r->pairs[i].caption,
                                     .line = r->pairs[i].line};
    ds->n_bad_rows = r->n_bad;
    for (int64_t i = 0; i < r->n_bad; i++)
        ds->bad_rows[i] = (pclip__bad_row){r->bad[i].line, ds->strings + r->bad[i].why};
    *out = ds;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__dataset_read(pclip_ctx_t ctx, const char *path,
                                 const pclip__dataset_options *opts, pclip__dataset **out) {
    if (!path || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "dataset: NULL path or output");
    reader r = {.ctx = ctx, .path = path};
    if (opts) r.o = *opts;
    if (!r.o.image_column) r.o.image_column = "image";
    if (!r.o.caption_column) r.o.caption_column = "caption";
    if ((unsigned)r.o.format >= PCLIP__DATA_FORMAT_COUNT)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "%s: unknown data format %d", path,
                          (int)r.o.format);
    if (r.o.sep && r.o.sep != ',' && r.o.sep != '\t' && r.o.sep != '|')
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s: separator 0x%02x: the separator is ',', tab or '|'", path,
                          (unsigned)(uint8_t)r.o.sep);
    if (!*r.o.image_column || !*r.o.caption_column)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "%s: an empty column name", path);
    if (strcmp(r.o.image_column, r.o.caption_column) == 0)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s: the image and caption columns are both '%s'", path,
                          r.o.image_column);
    const char *slash = strrchr(path, '/');
    r.base = path;
    r.base_len = slash ? (size_t)(slash - path) + 1 : 0;
    if (r.o.image_root) {
        const size_t len = strlen(r.o.image_root);
        if (len == 0)
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "%s: an empty image folder", path);
        r.base = r.o.image_root;
        r.base_len = len;
        if (r.o.image_root[len - 1] != '/') {
            if (!(r.base_buf = pclip__malloc(len + 2)))
                return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
            memcpy(r.base_buf, r.o.image_root, len);
            r.base_buf[len] = '/';
            r.base = r.base_buf;
            r.base_len = len + 1;
        }
    }

    char *text = NULL;
    size_t len = 0;
    pclip_status st =
        pclip__read_file(ctx, path, "data file", PCLIP__DATA_LIMIT_FILE_BYTES, &text, &len);
    if (st) {
        pclip__free(r.base_buf);
        return st;
    }
    const char *buf = text;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) buf += 3, len -= 3; /* a BOM */
    pclip__data_format fmt = r.o.format ? r.o.format : format_of(path, buf, len);
    char sep = 0;
    if (len == 0)
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: the file is empty", path);
    if (!st) st = check_text(&r, buf, len);
    if (!st && fmt == PCLIP__DATA_JSONL) {
        size_t i = 0;
        while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
            i++;
        if (i < len && buf[i] == '[')
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "%s:%lld: a JSON array; the data must be JSON Lines (one object "
                            "{\"%s\": ..., \"%s\": ...} per line)",
                            path, (long long)line_of(buf, i), r.o.image_column,
                            r.o.caption_column);
        if (!st) st = read_jsonl(&r, buf, len);
    } else if (!st) {
        sep = r.o.sep ? r.o.sep : sniff_sep(buf, len, fmt);
        fmt = sep == '\t' ? PCLIP__DATA_TSV : PCLIP__DATA_CSV;
        st = read_sv(&r, buf, len, sep);
    }
    if (!st && r.n_pairs == 0) {
        if (r.n_bad)
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "%s: no usable rows (all %lld were left out; the first, line %lld: "
                            "%s)",
                            path, (long long)r.n_bad, (long long)r.bad[0].line,
                            r.str.p + r.bad[0].why);
        else if (fmt == PCLIP__DATA_JSONL)
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: no records (only blank lines)",
                            path);
        else
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s: a header but no rows", path);
    }
    pclip__free(text);
    if (!st) st = finish(&r, fmt, sep, out);
    reader_free(&r);
    return st;
}

void pclip__dataset_destroy(pclip__dataset *ds) {
    if (!ds) return;
    pclip__free(ds->path);
    pclip__free(ds->pairs);
    pclip__free(ds->images);
    pclip__free(ds->image_line);
    pclip__free(ds->bad_rows);
    pclip__free(ds->strings);
    pclip__free(ds);
}
