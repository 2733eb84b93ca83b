/* The CLIP byte-level BPE tokenizer: loads vocab.json and merges.txt and
 * turns UTF-8 text into token ids exactly as OpenAI CLIP's SimpleTokenizer
 * (clip/simple_tokenizer.py) does, without ftfy's text repairs:
 *
 *   text = html.unescape(html.unescape(text)).strip()      basic_clean
 *   text = regex.sub(r'\s+', ' ', text).strip().lower()    whitespace_clean, lower
 *   for each regex.findall(pat, text): byte-level BPE, vocabulary ids
 *   [bos] + ids + [eos], cut to context_len, padded with 0  clip.tokenize(truncate=True)
 *
 * CLIP does `import regex as re`, so both \s above and the one in `pat` are
 * the regex module's (Unicode White_Space), while str.strip() removes
 * str.isspace() characters: the two differ on U+001C..U+001F, which \s does
 * not match. Each chapter names the Python it reproduces. Decoding ids back
 * to text is not implemented.
 *
 * Documented departures from Python (the first never happens with CLIP's own
 * files, the second not with ordinary text):
 * - A token that BPE produces but vocab.json lacks maps to <|endoftext|>'s id
 *   (Python would raise KeyError). With a vocabulary in CLIP's layout every
 *   byte and every merge result is present, so this never happens.
 * - Only the first PCLIP_LIMIT_TEXT_BYTES (1 MiB) of a text are tokenized, cut
 *   at a character boundary; the whole text is still checked for valid UTF-8.
 *   CLIP keeps 75 text ids, which ordinary text yields within its first few
 *   hundred bytes: the cut can only matter when fewer than 75 ids come from a
 *   whole MiB (a MiB of whitespace, or a single word over a MiB long).
 *
 * Tokenization stops once context_len - 2 ids exist; words are tokenized
 * independently of each other, so the ids kept are those of a full run.
 * Encoding uses a word cache inside the tokenizer, so (like the context it
 * borrows for error text) one tokenizer must not encode in two threads at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "text/html_entities.h"
#include "internal.h"
#include "io/json.h"
#include "text/unicode.h"

/* ---- data ---- */

#define TOK_BOS_TEXT "<|startoftext|>"
#define TOK_EOS_TEXT "<|endoftext|>"
#define TOK_END_OF_WORD "</w>"

/* Python's SimpleTokenizer caches every word it has seen, without bound. Ours
 * is direct-mapped and fixed at load (about 250 KiB): a word of up to
 * TOK_CACHE_WORD_MAX bytes hashes to one slot and replaces what was there. It
 * only saves time; results never depend on it. */
#define TOK_CACHE_SLOTS 2048 /* a power of two */
#define TOK_CACHE_WORD_MAX 24

typedef struct tok_cache_slot {
    uint8_t len; /* bytes of `word`; 0 = empty slot */
    uint8_t n_ids;
    uint8_t word[TOK_CACHE_WORD_MAX];
    int32_t ids[TOK_CACHE_WORD_MAX]; /* a word of n bytes gives at most n ids */
} tok_cache_slot;

#define TOK_PAIR_EMPTY UINT64_MAX

/* One merge rule, found by the pair of symbols it joins. */
typedef struct tok_pair {
    uint64_t key;   /* left << 32 | right, or TOK_PAIR_EMPTY */
    int32_t rank;   /* its line among the merges; a pair listed twice keeps the
                       later rank, as Python's dict(zip(merges, range(...))) */
    int32_t merged; /* the symbol left + right */
} tok_pair;

/* Symbols are the strings BPE works on (a byte's character, with or without
 * "</w>", and every merge's parts and result), interned as integers at load so
 * that BPE compares and hashes integers. The strings themselves are not kept. */
struct pclip_tokenizer {
    pclip_ctx_t ctx; /* borrowed */
    int32_t bos, eos;
    int32_t byte_sym[256];     /* symbol of bytes_to_unicode()[b] */
    int32_t byte_sym_end[256]; /* symbol of bytes_to_unicode()[b] + "</w>" */
    int32_t n_syms;
    int32_t *sym_id;    /* [n_syms] vocabulary id of each symbol (eos when absent) */
    tok_pair *pairs;    /* [pair_mask + 1], open addressing */
    size_t pair_mask;
    tok_cache_slot *cache; /* [TOK_CACHE_SLOTS] */
};

/* ---- hashing ---- */

static uint64_t hash_bytes(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull; /* murmur3's finaliser */
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Smallest power of two >= 2 * n (a load factor of at most one half). */
static size_t table_size(size_t n) {
    size_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

static const tok_pair *pair_find(const struct pclip_tokenizer *t, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (size_t i = hash_u64(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        const tok_pair *p = &t->pairs[i];
        if (p->key == key) return p;
        if (p->key == TOK_PAIR_EMPTY) return NULL;
    }
}

static void pair_put(struct pclip_tokenizer *t, int32_t left, int32_t right, int32_t rank,
                     int32_t merged) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (size_t i = hash_u64(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        tok_pair *p = &t->pairs[i];
        if (p->key == key || p->key == TOK_PAIR_EMPTY) {
            p->key = key;
            p->rank = rank;
            p->merged = merged;
            return;
        }
    }
}

/* For messages: `s` quoted, non-printable bytes as \xNN, cut to fit. */
static const char *quote(char *buf, size_t size, const char *s, size_t len) {
    size_t k = 0;
    buf[k++] = '"';
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (k + 8 >= size) {
            memcpy(buf + k, "...", 3);
            k += 3;
            break;
        }
        if (c < 0x20 || c == 0x7F || c == '"' || c == '\\')
            k += (size_t)snprintf(buf + k, size - k, "\\x%02X", c);
        else
            buf[k++] = (char)c;
    }
    buf[k++] = '"';
    buf[k] = '\0';
    return buf;
}

/* ---- vocab.json ---- */

typedef struct vocab_entry {
    const char *key; /* borrowed from the cJSON tree */
    size_t len;
    int32_t id;
} vocab_entry;

typedef struct vocab_map {
    cJSON *root;
    vocab_entry *entries; /* [n] */
    int32_t *index;       /* [mask + 1] entry number, -1 = empty */
    size_t mask, n;
} vocab_map;

static int32_t vocab_find(const vocab_map *v, const char *s, size_t len) {
    for (size_t i = hash_bytes(s, len) & v->mask;; i = (i + 1) & v->mask) {
        int32_t e = v->index[i];
        if (e < 0) return -1;
        if (v->entries[e].len == len && memcmp(v->entries[e].key, s, len) == 0)
            return v->entries[e].id;
    }
}

static void vocab_release(vocab_map *v) {
    cJSON_Delete(v->root);
    pclip__free(v->entries);
    pclip__free(v->index);
    memset(v, 0, sizeof *v);
}

static const char *json_type_name(const cJSON *item) {
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsNumber(item)) return "a number";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    if (cJSON_IsBool(item)) return "a boolean";
    if (cJSON_IsNull(item)) return "null";
    return "an unknown value";
}

typedef struct id_ref {
    int32_t id;
    int32_t entry;
} id_ref;

static int id_ref_cmp(const void *a, const void *b) {
    const id_ref *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

/* Parses `text` (the file's bytes) into a map token -> id. */
static pclip_status vocab_parse(pclip_ctx_t ctx, const char *path, const char *text, size_t len,
                                vocab_map *v) {
    char q1[96], q2[96];
    pclip_status parsed = pclip__json_parse(ctx, path, text, len, &v->root);
    if (parsed) return parsed;
    if (!cJSON_IsObject(v->root))
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                          "vocabulary '%s': expected a JSON object of token -> id, found %s", path,
                          json_type_name(v->root));

    size_t n = 0;
    for (const cJSON *it = v->root->child; it; it = it->next) {
        if (++n > PCLIP_LIMIT_VOCAB)
            return pclip__err(ctx, PCLIP_STATUS_LIMIT,
                              "vocabulary '%s': more than %d entries", path, PCLIP_LIMIT_VOCAB);
    }
    v->n = n;
    size_t slots = table_size(n);
    v->mask = slots - 1;
    v->entries = pclip__calloc(n, sizeof *v->entries);
    v->index = pclip__calloc(slots, sizeof *v->index);
    id_ref *refs = pclip__calloc(n, sizeof *refs);
    if (!v->entries || !v->index || !refs) {
        pclip__free(refs);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "vocabulary '%s': out of memory (%zu entries)", path, n);
    }
    memset(v->index, 0xff, slots * sizeof *v->index);

    pclip_status st = PCLIP_STATUS_OK;
    size_t e = 0;
    for (const cJSON *it = v->root->child; it; it = it->next, e++) {
        const char *key = it->string ? it->string : "";
        size_t klen = strlen(key);
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || !(d >= 0 && d <= INT32_MAX) || (double)(int32_t)d != d) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "vocabulary '%s': token %s: id is %s, expected an integer from 0 to "
                            "2147483647",
                            path, quote(q1, sizeof q1, key, klen),
                            cJSON_IsNumber(it) ? "out of range or not an integer"
                                               : json_type_name(it));
            break;
        }
        if (vocab_find(v, key, klen) >= 0) {
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "vocabulary '%s': token %s appears twice", path,
                            quote(q1, sizeof q1, key, klen));
            break;
        }
        v->entries[e] = (vocab_entry){key, klen, (int32_t)d};
        refs[e] = (id_ref){(int32_t)d, (int32_t)e};
        size_t i = hash_bytes(key, klen) & v->mask;
        while (v->index[i] >= 0) i = (i + 1) & v->mask;
        v->index[i] = (int32_t)e;
    }
    if (st == PCLIP_STATUS_OK && n > 1) {
        qsort(refs, n, sizeof *refs, id_ref_cmp);
        for (size_t i = 1; i < n; i++) {
            if (refs[i].id != refs[i - 1].id) continue;
            const vocab_entry *a = &v->entries[refs[i - 1].entry], *b = &v->entries[refs[i].entry];
            st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                            "vocabulary '%s': tokens %s and %s both have id %d", path,
                            quote(q1, sizeof q1, a->key, a->len),
                            quote(q2, sizeof q2, b->key, b->len), (int)a->id);
            break;
        }
    }
    pclip__free(refs);
    return st;
}

/* ---- merges.txt and the symbol table ---- */

typedef struct sym_entry {
    const char *s; /* borrowed from the merges text or the arena */
    uint32_t len;
} sym_entry;

typedef struct sym_table {
    sym_entry *syms; /* [cap] */
    int32_t *index;  /* [mask + 1] symbol, -1 = empty */
    size_t mask;
    int32_t n, cap;
    char *arena; /* byte characters and merge results */
    size_t arena_used, arena_cap;
} sym_table;

static void sym_release(sym_table *t) {
    pclip__free(t->syms);
    pclip__free(t->index);
    pclip__free(t->arena);
    memset(t, 0, sizeof *t);
}

/* The symbol for s[0..len), added if new. The caller sized the table. */
static int32_t sym_intern(sym_table *t, const char *s, size_t len) {
    size_t i = hash_bytes(s, len) & t->mask;
    for (;; i = (i + 1) & t->mask) {
        int32_t e = t->index[i];
        if (e < 0) break;
        if (t->syms[e].len == len && memcmp(t->syms[e].s, s, len) == 0) return e;
    }
    PCLIP_ASSERT(t->n < t->cap);
    t->syms[t->n] = (sym_entry){s, (uint32_t)len};
    t->index[i] = t->n;
    return t->n++;
}

/* Interns a + b, built in the arena (kept only when the symbol is new). */
static int32_t sym_intern_concat(sym_table *t, const char *a, size_t alen, const char *b,
                                 size_t blen) {
    PCLIP_ASSERT(t->arena_used + alen + blen <= t->arena_cap);
    char *s = t->arena + t->arena_used;
    memcpy(s, a, alen);
    memcpy(s + alen, b, blen);
    int32_t before = t->n;
    int32_t id = sym_intern(t, s, alen + blen);
    if (t->n != before) t->arena_used += alen + blen;
    return id;
}

/* CLIP's bytes_to_unicode(): the printable Latin-1 bytes stand for
 * themselves, the other 68 take U+0100, U+0101, ... in byte order. */
static int32_t byte_to_unicode(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return b;
    int n = 0;
    for (int c = 0; c < b; c++) {
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
            n++;
    }
    return 256 + n;
}

/* One line of merges.txt, without its "\n" or "\r\n". */
typedef struct merges_line {
    const char *s;
    size_t len;
    size_t number; /* 1-based */
} merges_line;

static bool merges_next_line(const char *text, size_t len, size_t *pos, merges_line *line) {
    if (*pos >= len) return false;
    const char *s = text + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t n = nl ? (size_t)(nl - s) : len - *pos;
    *pos += nl ? n + 1 : n;
    if (n > 0 && s[n - 1] == '\r') n--;
    line->s = s;
    line->len = n;
    line->number++;
    return true;
}

/* Walks the merges: with `t` NULL only checks them, counts them and sums the
 * bytes their results need; with `t` it interns them into t and tok. */
static pclip_status merges_walk(pclip_ctx_t ctx, const char *path, const char *text, size_t len,
                                size_t *count, size_t *bytes, sym_table *t,
                                struct pclip_tokenizer *tok) {
    char q[96];
    merges_line line = {0};
    size_t pos = 0, n = 0, sum = 0;
    while (merges_next_line(text, len, &pos, &line)) {
        /* Hugging Face's merges.txt starts with "#version: 0.2"; a file
         * without it starts with a merge. */
        if (line.number == 1 && line.len >= 8 && memcmp(line.s, "#version", 8) == 0) continue;
        if (line.len == 0) continue;
        const char *sp = memchr(line.s, ' ', line.len);
        size_t alen = sp ? (size_t)(sp - line.s) : 0;
        size_t blen = sp ? line.len - alen - 1 : 0;
        if (!t) {
            if (!sp || alen == 0 || blen == 0 || memchr(sp + 1, ' ', blen))
                return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                                  "merges '%s': line %zu: expected two symbols separated by one "
                                  "space, found %s",
                                  path, line.number, quote(q, sizeof q, line.s, line.len));
            for (size_t i = 0; i < line.len;) {
                int32_t cp;
                size_t k = pclip__utf8_decode((const uint8_t *)line.s + i, line.len - i, &cp);
                if (!k)
                    return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT,
                                      "merges '%s': line %zu: invalid UTF-8 at column %zu", path,
                                      line.number, i + 1);
                i += k;
            }
            if (n >= PCLIP_LIMIT_MERGES)
                return pclip__err(ctx, PCLIP_STATUS_LIMIT, "merges '%s': more than %d merges",
                                  path, PCLIP_LIMIT_MERGES);
        } else {
            int32_t a = sym_intern(t, line.s, alen);
            int32_t b = sym_intern(t, sp + 1, blen);
            int32_t ab = sym_intern_concat(t, line.s, alen, sp + 1, blen);
            pair_put(tok, a, b, (int32_t)n, ab);
        }
        n++;
        sum += line.len - 1;
    }
    *count = n;
    if (bytes) *bytes = sum;
    return PCLIP_STATUS_OK;
}

/* Builds the symbols, the merge table and each symbol's vocabulary id. */
static pclip_status tok_build(pclip_ctx_t ctx, const char *merges_path, const char *text,
                              size_t len, const vocab_map *v, struct pclip_tokenizer *tok) {
    size_t n_merges = 0, merge_bytes = 0;
    pclip_status st = merges_walk(ctx, merges_path, text, len, &n_merges, &merge_bytes, NULL, NULL);
    if (st) return st;

    sym_table t = {0};
    /* 512 byte symbols plus at most three per merge; n_merges is limited, so
     * none of these sizes can overflow. */
    t.cap = (int32_t)(512 + 3 * n_merges);
    size_t slots = table_size((size_t)t.cap);
    t.mask = slots - 1;
    /* per byte: its character (at most 2 bytes), and that + "</w>" */
    t.arena_cap = 256 * (2 * 2 + strlen(TOK_END_OF_WORD)) + merge_bytes;
    t.syms = pclip__calloc((size_t)t.cap, sizeof *t.syms);
    t.index = pclip__calloc(slots, sizeof *t.index);
    t.arena = pclip__malloc(t.arena_cap);
    size_t pair_slots = table_size(n_merges);
    tok->pair_mask = pair_slots - 1;
    tok->pairs = pclip__calloc(pair_slots, sizeof *tok->pairs);
    if (!t.syms || !t.index || !t.arena || !tok->pairs) {
        sym_release(&t);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "merges '%s': out of memory (%zu merges)",
                          merges_path, n_merges);
    }
    memset(t.index, 0xff, slots * sizeof *t.index);
    for (size_t i = 0; i < pair_slots; i++) tok->pairs[i].key = TOK_PAIR_EMPTY;

    for (int b = 0; b < 256; b++) {
        uint8_t u[4];
        size_t k = pclip__utf8_encode(byte_to_unicode(b), u);
        tok->byte_sym[b] = sym_intern_concat(&t, (const char *)u, k, "", 0);
        tok->byte_sym_end[b] =
            sym_intern_concat(&t, (const char *)u, k, TOK_END_OF_WORD, strlen(TOK_END_OF_WORD));
    }
    merges_walk(ctx, merges_path, text, len, &n_merges, NULL, &t, tok);

    tok->n_syms = t.n;
    tok->sym_id = pclip__calloc((size_t)t.n, sizeof *tok->sym_id);
    if (!tok->sym_id) {
        sym_release(&t);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "merges '%s': out of memory (%d symbols)",
                          merges_path, (int)t.n);
    }
    for (int32_t i = 0; i < t.n; i++) {
        int32_t id = vocab_find(v, t.syms[i].s, t.syms[i].len);
        tok->sym_id[i] = id >= 0 ? id : tok->eos;
    }
    sym_release(&t);
    return PCLIP_STATUS_OK;
}

/* ---- loading ---- */

pclip_status pclip__tokenizer_parse(pclip_ctx_t ctx, const char *vocab_name, const char *vtext,
                                    size_t vlen, const char *merges_name, const char *mtext,
                                    size_t mlen, pclip_tokenizer_t *out) {
    vocab_map v = {0};
    struct pclip_tokenizer *tok = NULL;
    pclip_status st = vocab_parse(ctx, vocab_name, vtext, vlen, &v);
    if (st) goto done;

    tok = pclip__calloc(1, sizeof *tok);
    if (!tok) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "tokenizer: out of memory");
        goto done;
    }
    tok->ctx = ctx;
    tok->bos = vocab_find(&v, TOK_BOS_TEXT, strlen(TOK_BOS_TEXT));
    tok->eos = vocab_find(&v, TOK_EOS_TEXT, strlen(TOK_EOS_TEXT));
    if (tok->bos < 0 || tok->eos < 0) {
        st = pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "vocabulary '%s': no token %s", vocab_name,
                        tok->bos < 0 ? TOK_BOS_TEXT : TOK_EOS_TEXT);
        goto done;
    }
    st = tok_build(ctx, merges_name, mtext, mlen, &v, tok);
    if (st) goto done;

    tok->cache = pclip__calloc(TOK_CACHE_SLOTS, sizeof *tok->cache);
    if (!tok->cache) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "tokenizer: out of memory (word cache)");
        goto done;
    }
    *out = tok;
    tok = NULL;

done:
    pclip_tokenizer_destroy(tok);
    vocab_release(&v);
    return st;
}

pclip_status pclip_tokenizer_load(pclip_ctx_t ctx, const char *vocab_path, const char *merges_path,
                                  pclip_tokenizer_t *out) {
    if (!vocab_path || !merges_path || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "tokenizer: vocab_path, merges_path and out must not be NULL");
    char *vtext = NULL, *mtext = NULL;
    size_t vlen = 0, mlen = 0;
    pclip_status st =
        pclip__read_file(ctx, vocab_path, "vocabulary", PCLIP_LIMIT_JSON_BYTES, &vtext, &vlen);
    if (!st)
        st = pclip__read_file(ctx, merges_path, "merges", PCLIP_LIMIT_TEXT_FILE_BYTES, &mtext,
                              &mlen);
    if (!st)
        st = pclip__tokenizer_parse(ctx, vocab_path, vtext, vlen, merges_path, mtext, mlen, out);
    pclip__free(vtext);
    pclip__free(mtext);
    return st;
}

void pclip_tokenizer_destroy(pclip_tokenizer_t tok) {
    if (!tok) return;
    pclip__free(tok->sym_id);
    pclip__free(tok->pairs);
    pclip__free(tok->cache);
    pclip__free(tok);
}

int32_t pclip_tokenizer_bos(pclip_tokenizer_t tok) { return tok ? tok->bos : -1; }

int32_t pclip_tokenizer_eos(pclip_tokenizer_t tok) { return tok ? tok->eos : -1; }

/* ---- basic_clean: html.unescape (Lib/html/__init__.py) ---- */

static bool in_ranges2(const int32_t (*r)[2], size_t n, int32_t cp) {
    for (size_t i = 0; i < n; i++) {
        if (cp >= r[i][0] && cp <= r[i][1]) return true;
    }
    return false;
}

/* _replace_charref for "&#NNN;" / "&#xHHH;": writes 0 or 1 code point. */
static size_t numeric_charref(int32_t num, int32_t *out) {
    size_t n_inv = sizeof pclip__html_invalid_charrefs / sizeof pclip__html_invalid_charrefs[0];
    for (size_t i = 0; i < n_inv; i++) {
        if (pclip__html_invalid_charrefs[i][0] == num) {
            out[0] = pclip__html_invalid_charrefs[i][1];
            return 1;
        }
    }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        out[0] = 0xFFFD;
        return 1;
    }
    size_t n_cp = sizeof pclip__html_invalid_codepoints / sizeof pclip__html_invalid_codepoints[0];
    if (in_ranges2(pclip__html_invalid_codepoints, n_cp, num)) return 0;
    out[0] = num;
    return 1;
}

/* html5[name] for name[0..len) (ASCII), or NULL. */
static const pclip__html_entity *entity_find(const char *name, size_t len) {
    size_t lo = 0, hi = sizeof pclip__html_entities / sizeof pclip__html_entities[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *k = pclip__html_entities[mid].name;
        size_t klen = strlen(k);
        int c = memcmp(k, name, klen < len ? klen : len);
        if (c == 0) c = (klen > len) - (klen < len);
        if (c == 0) return &pclip__html_entities[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static size_t entity_value(const pclip__html_entity *e, int32_t *out) {
    out[0] = e->cp[0];
    if (e->cp[1] == 0) return 1;
    out[1] = e->cp[1];
    return 2;
}

static bool is_digit(int32_t c) { return c >= '0' && c <= '9'; }

static int hex_value(int32_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* [^\t\n\f <&#;] */
static bool is_name_char(int32_t c) {
    return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' &&
           c != ';';
}

/* html.unescape(s): replaces each match of
 *   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * by _replace_charref's result, scanning left to right without rescanning
 * replacements. No replacement is longer than what it replaces (a name of at
 * least 2 characters after the '&' gives at most 2 code points), so `out`
 * needs room for n code points. */
static size_t html_unescape(const int32_t *s, size_t n, int32_t *out) {
    size_t k = 0, i = 0;
    while (i < n) {
        if (s[i] != '&') {
            out[k++] = s[i++];
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') {
            /* numeric: the value saturates past U+10FFFF, which gives U+FFFD anyway */
            bool hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
            size_t d = j + (hex ? 2 : 1), e = d;
            int32_t num = 0;
            while (e < n && (hex ? hex_value(s[e]) >= 0 : is_digit(s[e]))) {
                int32_t digit = hex ? hex_value(s[e]) : s[e] - '0';
                num = num > 0x10FFFF ? num : num * (hex ? 16 : 10) + digit;
                e++;
            }
            if (e == d) { /* "&#" without digits matches nothing */
                out[k++] = s[i++];
                continue;
            }
            if (e < n && s[e] == ';') e++;
            k += numeric_charref(num, out + k);
            i = e;
            continue;
        }
        size_t e = j;
        while (e < n && e - j < 32 && is_name_char(s[e])) e++;
        if (e == j) {
            out[k++] = s[i++];
            continue;
        }
        bool semi = e < n && s[e] == ';';
        size_t end = e + (semi ? 1 : 0);
        /* The names are ASCII (and have no NUL): only the leading part of s
         * without other characters can match. */
        char name[PCLIP_HTML_ENTITY_NAME_MAX + 2];
        size_t ascii = 0;
        while (j + ascii < end && s[j + ascii] > 0 && s[j + ascii] < 0x80) {
            name[ascii] = (char)s[j + ascii];
            ascii++;
        }
        size_t len = end - j; /* len(s) in Python, ';' included */
        const pclip__html_entity *ent = ascii == len ? entity_find(name, len) : NULL;
        if (ent) {
            k += entity_value(ent, out + k);
            i = end;
            continue;
        }
        /* the longest prefix s[:x], x from len - 1 down to 2, that is a name */
        size_t x = len - 1 < ascii ? len - 1 : ascii;
        for (; x >= 2; x--) {
            ent = entity_find(name, x);
            if (ent) break;
        }
        size_t from = j;
        if (ent) {
            k += entity_value(ent, out + k);
            from = j + x;
        } else {
            out[k++] = '&';
        }
        while (from < end) out[k++] = s[from++];
        i = end;
    }
    return k;
}

/* ---- whitespace_clean ---- */

/* regex.sub(r'\s+', ' ', s).strip(): runs of White_Space become one space,
 * then str.strip() removes str.isspace() characters at both ends. The two
 * sets differ by U+001C..U+001F (isspace but not White_Space). The .strip()
 * of basic_clean, done before, changes nothing that this strip would not. */
static size_t whitespace_clean(const int32_t *s, size_t n, int32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (pclip__uni_is_white_space(s[i])) {
            while (i < n && pclip__uni_is_white_space(s[i])) i++;
            out[k++] = ' ';
        } else {
            out[k++] = s[i++];
        }
    }
    size_t a = 0, b = k;
    while (a < b && pclip__uni_isspace(out[a])) a++;
    while (b > a && pclip__uni_isspace(out[b - 1])) b--;
    if (a > 0) memmove(out, out + a, (b - a) * sizeof *out);
    return b - a;
}

/* ---- pre-tokenizer: regex.findall(pat, text) ---- */

/* pat = <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * with regex.IGNORECASE. findall tries the alternatives in order at each
 * position, and moves one character on where none matches. */
static const char *const pat_literals[] = {
    TOK_BOS_TEXT, TOK_EOS_TEXT, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
};

/* Length of `lit` if s[i..n) starts with it case-insensitively, else 0. */
static size_t match_literal(const int32_t *s, size_t n, size_t i, const char *lit) {
    size_t k = 0;
    for (; lit[k]; k++) {
        if (i + k >= n || !pclip__uni_matches_literal(s[i + k], lit[k])) return 0;
    }
    return k;
}

typedef enum pretoken_kind {
    PRETOKEN_WORD,
    PRETOKEN_BOS, /* the literal text <|startoftext|> */
    PRETOKEN_EOS, /* the literal text <|endoftext|> */
} pretoken_kind;

/* The end of the match at s[i], or i if no alternative matches there. */
static size_t pretoken_end(const int32_t *s, size_t n, size_t i, pretoken_kind *kind) {
    *kind = PRETOKEN_WORD;
    if (s[i] == '<' || s[i] == '\'') {
        for (size_t a = 0; a < sizeof pat_literals / sizeof pat_literals[0]; a++) {
            size_t len = match_literal(s, n, i, pat_literals[a]);
            if (!len) continue;
            /* Python's cache holds the two special tokens, so only their exact
             * text becomes their ids; "<|ſtartoftext|>" matches the pattern
             * (IGNORECASE) but is a word like any other. */
            if (a < 2) {
                bool exact = true;
                for (size_t c = 0; c < len; c++) exact = exact && s[i + c] == pat_literals[a][c];
                if (exact) *kind = a == 0 ? PRETOKEN_BOS : PRETOKEN_EOS;
            }
            return i + len;
        }
    }
    pclip__uni_class c = pclip__uni_clip_class(s[i]);
    if (c == PCLIP__UNI_CLASS_NUMBER) return i + 1;
    if (c == PCLIP__UNI_CLASS_SKIP) return i;
    size_t e = i + 1;
    while (e < n && pclip__uni_clip_class(s[e]) == c) e++;
    return e;
}

/* ---- byte-level BPE ---- */

/* Scratch space for one word of up to `cap` bytes, grown as needed during
 * one encode call. */
typedef struct tok_ws {
    void *block;
    size_t cap;
    uint64_t *heap;   /* [3 * cap] (rank << 32 | position) */
    int32_t *sym;     /* [cap] symbol at each position, -1 once merged away */
    int32_t *prev;    /* [cap] linked list of the live positions */
    int32_t *next;    /* [cap] */
    int32_t *pending; /* [cap] positions merged in the current pass */
} tok_ws;

static bool ws_reserve(tok_ws *w, size_t m) {
    if (m <= w->cap) return true;
    size_t cap = w->cap ? w->cap : 64, bytes;
    while (cap < m) cap *= 2;
    if (!pclip__mul_size(cap, 3 * sizeof(uint64_t) + 4 * sizeof(int32_t), &bytes)) return false;
    void *block = pclip__malloc(bytes);
    if (!block) return false;
    pclip__free(w->block);
    w->block = block;
    w->cap = cap;
    w->heap = block;
    w->sym = (int32_t *)(w->heap + 3 * cap);
    w->prev = w->sym + cap;
    w->next = w->prev + cap;
    w->pending = w->next + cap;
    return true;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, size = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (size > 0) h[i] = v;
    return top;
}

static void push_pair(const struct pclip_tokenizer *t, tok_ws *w, size_t *hn, int32_t pos) {
    int32_t q = w->next[pos];
    if (q < 0) return;
    const tok_pair *p = pair_find(t, w->sym[pos], w->sym[q]);
    if (p) heap_push(w->heap, hn, (uint64_t)p->rank << 32 | (uint32_t)pos);
}

/* SimpleTokenizer.bpe() on w->sym[0..m): while some adjacent pair has a rank,
 * take the lowest-ranked pair and merge all its occurrences, left to right,
 * without overlaps. Here a heap of (rank, position) holds every adjacent pair
 * that has a rank. All entries of the lowest rank are taken together, in
 * position order, which is Python's left-to-right pass; entries whose pair
 * has changed since are skipped (a rank names one pair, so checking the rank
 * checks the pair). The pairs a pass creates are pushed after it, as Python
 * only sees them on its next loop; none can have the pass's own rank, since
 * a merged symbol is longer than either part. O(m log m) for m bytes instead
 * of Python's O(m^2). */
static void bpe_merge(const struct pclip_tokenizer *t, tok_ws *w, size_t m) {
    int32_t *sym = w->sym, *prev = w->prev, *next = w->next;
    for (size_t i = 0; i < m; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < m; i++) push_pair(t, w, &hn, (int32_t)i);
    while (hn > 0) {
        uint32_t rank = (uint32_t)(w->heap[0] >> 32);
        size_t n_pending = 0;
        while (hn > 0 && (uint32_t)(w->heap[0] >> 32) == rank) {
            int32_t pos = (int32_t)(uint32_t)heap_pop(w->heap, &hn);
            int32_t q = next[pos];
            if (sym[pos] < 0 || q < 0) continue;
            const tok_pair *p = pair_find(t, sym[pos], sym[q]);
            if (!p || (uint32_t)p->rank != rank) continue;
            sym[pos] = p->merged;
            sym[q] = -1;
            next[pos] = next[q];
            if (next[q] >= 0) prev[next[q]] = pos;
            w->pending[n_pending++] = pos;
        }
        for (size_t k = 0; k < n_pending; k++) {
            int32_t pos = w->pending[k];
            if (sym[pos] < 0) continue; /* cannot happen: see above */
            if (prev[pos] >= 0) push_pair(t, w, &hn, prev[pos]);
            push_pair(t, w, &hn, pos);
        }
    }
}

/* Appends the ids of one pre-token s[0..n) to out (at most `room` of them). */
static pclip_status bpe_word(struct pclip_tokenizer *t, tok_ws *w, const int32_t *s, size_t n,
                             int32_t *out, size_t *n_out, size_t room) {
    size_t m = 0;
    uint8_t u[4];
    for (size_t i = 0; i < n; i++) m += pclip__utf8_encode(s[i], u);

    tok_cache_slot *slot = NULL;
    uint8_t key[TOK_CACHE_WORD_MAX];
    if (m <= TOK_CACHE_WORD_MAX) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += pclip__utf8_encode(s[i], key + k);
        slot = &t->cache[hash_bytes(key, m) & (TOK_CACHE_SLOTS - 1)];
        if (slot->len == m && memcmp(slot->word, key, m) == 0) {
            for (size_t i = 0; i < slot->n_ids && *n_out < room; i++) out[(*n_out)++] = slot->ids[i];
            return PCLIP_STATUS_OK;
        }
    }
    if (!ws_reserve(w, m))
        return pclip__err(t->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "tokenizer: out of memory (a word of %zu bytes)", m);
    /* word = tuple(token[:-1]) + (token[-1] + '</w>',) */
    size_t k = 0;
    uint8_t last = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = pclip__utf8_encode(s[i], u);
        for (size_t b = 0; b < len; b++) w->sym[k++] = t->byte_sym[u[b]];
        last = u[len - 1];
    }
    w->sym[m - 1] = t->byte_sym_end[last];
    bpe_merge(t, w, m);

    if (slot) slot->len = 0; /* stays empty unless filled below */
    size_t n_ids = 0;
    for (int32_t pos = 0; pos >= 0; pos = w->next[pos]) {
        int32_t id = t->sym_id[w->sym[pos]];
        if (slot) slot->ids[n_ids] = id;
        n_ids++;
        if (*n_out < room) out[(*n_out)++] = id;
    }
    if (slot) {
        memcpy(slot->word, key, m);
        slot->len = (uint8_t)m;
        slot->n_ids = (uint8_t)n_ids;
    }
    return PCLIP_STATUS_OK;
}

/* ---- encode ---- */

pclip_status pclip_tokenizer_encode(pclip_tokenizer_t tok, const char *text, size_t len,
                                    int32_t *ids, int32_t context_len, int32_t *n_tokens) {
    if (!tok) return PCLIP_STATUS_INVALID_ARGUMENT;
    pclip_ctx_t ctx = tok->ctx;
    if (!ids || (!text && len > 0))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "tokenizer: %s is NULL", ids ? "text" : "ids");
    if (context_len < 2)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "tokenizer: context_len is %d, it must be at least 2", (int)context_len);

    /* Check all of it; keep the characters that end within the limit. */
    size_t keep = 0, n_cp = 0;
    for (size_t off = 0; off < len;) {
        int32_t cp;
        size_t k = pclip__utf8_decode((const uint8_t *)text + off, len - off, &cp);
        if (!k)
            return pclip__err(ctx, PCLIP_STATUS_BAD_TEXT,
                              "tokenizer: text is not valid UTF-8 at byte offset %zu (byte 0x%02X)",
                              off, (unsigned)(uint8_t)text[off]);
        off += k;
        if (off <= PCLIP_LIMIT_TEXT_BYTES) {
            keep = off;
            n_cp++;
        }
    }

    /* [2 * n_cp] a, then [n_cp] b; lower() may double the length */
    size_t bytes;
    if (!pclip__mul_size(n_cp, 3 * sizeof(int32_t), &bytes))
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "tokenizer: text too long");
    int32_t *a = pclip__malloc(bytes);
    if (!a)
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "tokenizer: out of memory (%zu code points)", n_cp);
    int32_t *b = a + 2 * n_cp;
    size_t n = 0;
    for (size_t off = 0; off < keep; n++)
        off += pclip__utf8_decode((const uint8_t *)text + off, keep - off, &a[n]);
    n = html_unescape(a, n, b);
    n = html_unescape(b, n, a);
    n = whitespace_clean(a, n, b);
    n = pclip__uni_lower(b, n, a);

    /* Only the first context_len - 2 ids are kept; a character gives at most 4. */
    size_t room = (size_t)context_len - 2;
    if (room / 4 > n) room = 4 * n;
    int32_t *found = pclip__calloc(room, sizeof *found);
    tok_ws w = {0};
    pclip_status st = PCLIP_STATUS_OK;
    size_t n_found = 0;
    if (!found) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "tokenizer: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n && n_found < room;) {
        pretoken_kind kind;
        size_t e = pretoken_end(a, n, i, &kind);
        if (e == i) { /* skipped, as findall skips what matches nothing */
            i++;
            continue;
        }
        if (kind == PRETOKEN_WORD) {
            st = bpe_word(tok, &w, a + i, e - i, found, &n_found, room);
            if (st) goto done;
        } else {
            found[n_found++] = kind == PRETOKEN_BOS ? tok->bos : tok->eos;
        }
        i = e;
    }

    ids[0] = tok->bos;
    memcpy(ids + 1, found, n_found * sizeof *ids);
    ids[n_found + 1] = tok->eos;
    for (size_t i = n_found + 2; i < (size_t)context_len; i++) ids[i] = 0;
    if (n_tokens) *n_tokens = (int32_t)(n_found + 2);

done:
    pclip__free(w.block);
    pclip__free(found);
    pclip__free(a);
    return st;
}
