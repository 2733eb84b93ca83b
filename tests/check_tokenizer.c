/* Tokenizer: exact ids against OpenAI CLIP's SimpleTokenizer for every caption
 * in fixtures/captions.json (ids written by fixtures/make_fixtures.py) with the
 * tiny vocabularies and, when it is present, the real CLIP vocabulary; BPE
 * merge-order corner cases; the Unicode helpers; malformed files; invalid and
 * huge texts; and an allocation-failure walk over load + encode. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "testutil.h"
#include "text/unicode.h"

#define CTX_LEN 77

/* ---- helpers ---- */

typedef struct text {
    char *s;
    size_t len;
} text;

static void utf8_put(char *out, size_t *k, uint32_t cp) {
    uint8_t u[4];
    size_t n = pclip__utf8_encode((int32_t)cp, u);
    memcpy(out + *k, u, n);
    *k += n;
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* Reads a JSON array of strings, keeping embedded NULs ("a\u0000b"), which
 * cJSON's C strings would cut. */
static size_t read_string_array(const char *path, text **out) {
    char *buf = pclip_test_read_file(path, NULL);
    size_t n = 0, cap = 64;
    text *t = malloc(cap * sizeof *t);
    const char *p = skip_ws(buf);
    ck_assert_msg(*p == '[', "%s: not a JSON array", path);
    p = skip_ws(p + 1);
    while (*p != ']') {
        ck_assert_msg(*p == '"', "%s: string %zu: expected '\"'", path, n);
        p++;
        const char *end = p;
        while (*end && *end != '"') end += *end == '\\' && end[1] ? 2 : 1;
        char *s = malloc((size_t)(end - p) + 1); /* decoding never lengthens */
        size_t k = 0;
        while (p < end) {
            if (*p != '\\') {
                s[k++] = *p++;
                continue;
            }
            char e = p[1];
            p += 2;
            if (e == 'u') {
                uint32_t cp = (uint32_t)strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && p[0] == '\\' && p[1] == 'u') {
                    uint32_t lo =
                        (uint32_t)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
                utf8_put(s, &k, cp);
            } else {
                const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
                const char *f = strchr(from, e);
                ck_assert_msg(f != NULL, "%s: string %zu: bad escape \\%c", path, n, e);
                s[k++] = to[f - from];
            }
        }
        s[k] = '\0';
        if (n == cap) t = realloc(t, (cap *= 2) * sizeof *t);
        t[n++] = (text){s, k};
        p = skip_ws(end + 1);
        if (*p == ',') p = skip_ws(p + 1);
    }
    free(buf);
    *out = t;
    return n;
}

static void free_texts(text *t, size_t n) {
    for (size_t i = 0; i < n; i++) free(t[i].s);
    free(t);
}

/* Reads {"context_length": 77, "ids": [[...], ...]} into rows of CTX_LEN. */
static size_t read_token_rows(const char *path, int32_t (**out)[CTX_LEN]) {
    char *buf = pclip_test_read_file(path, NULL);
    cJSON *root = cJSON_Parse(buf);
    ck_assert_msg(root != NULL, "%s: not JSON", path);
    const cJSON *cl = cJSON_GetObjectItem(root, "context_length");
    ck_assert_msg(cJSON_IsNumber(cl) && cl->valueint == CTX_LEN, "%s: context_length", path);
    const cJSON *rows = cJSON_GetObjectItem(root, "ids");
    size_t n = (size_t)cJSON_GetArraySize(rows);
    int32_t(*r)[CTX_LEN] = calloc(n ? n : 1, sizeof *r);
    size_t i = 0;
    for (const cJSON *row = rows->child; row; row = row->next, i++) {
        ck_assert_msg(cJSON_GetArraySize(row) == CTX_LEN, "%s: row %zu", path, i);
        size_t j = 0;
        for (const cJSON *v = row->child; v; v = v->next) r[i][j++] = (int32_t)v->valueint;
    }
    cJSON_Delete(root);
    free(buf);
    *out = r;
    return n;
}

/* A caption for a failure message: escaped, at most ~80 characters. */
static const char *show(const char *s, size_t len) {
    static char buf[400];
    size_t k = 0;
    for (size_t i = 0; i < len && k < 300; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F || c == '\\')
            k += (size_t)snprintf(buf + k, sizeof buf - k, "\\x%02X", c);
        else
            buf[k++] = (char)c;
    }
    if (len > 300) k += (size_t)snprintf(buf + k, sizeof buf - k, "... (%zu bytes)", len);
    buf[k] = '\0';
    return buf;
}

static pclip_tokenizer_t load_ok(pclip_ctx_t ctx, const char *vocab, const char *merges) {
    pclip_tokenizer_t tok = NULL;
    pclip_status st = pclip_tokenizer_load(ctx, vocab, merges, &tok);
    ck_assert_status(ctx, st, PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(tok);
    return tok;
}

static void encode_ok(pclip_ctx_t ctx, pclip_tokenizer_t tok, const char *s, size_t len,
                      int32_t *ids, int32_t context_len, int32_t *n_tokens) {
    pclip_status st = pclip_tokenizer_encode(tok, s, len, ids, context_len, n_tokens);
    ck_assert_status(ctx, st, PCLIP_STATUS_OK);
}

/* Every caption against the Python ids; prints each difference, then fails. */
static void check_captions(const char *vocab, const char *merges, const char *tokens) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = load_ok(ctx, vocab, merges);
    text *caps;
    int32_t(*want)[CTX_LEN];
    size_t n = read_string_array(pclip_test_fixture("captions.json"), &caps);
    size_t n_rows = read_token_rows(tokens, &want);
    ck_assert_msg(n == n_rows && n > 0, "%zu captions but %zu rows in %s", n, n_rows, tokens);
    size_t bad = 0, first_bad = 0;
    int first_pos = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t ids[CTX_LEN], n_tokens = -1;
        encode_ok(ctx, tok, caps[i].s, caps[i].len, ids, CTX_LEN, &n_tokens);
        int pos = -1, want_n = 0;
        for (int j = 0; j < CTX_LEN; j++) {
            if (want[i][j] != 0) want_n = j + 1; /* eos is the last non-zero id */
            if (pos < 0 && ids[j] != want[i][j]) pos = j;
        }
        if (pos < 0 && n_tokens == want_n) continue;
        if (bad++ == 0) {
            first_bad = i;
            first_pos = pos;
        }
        if (pos >= 0)
            fprintf(stderr, "%s: caption %zu \"%s\": first difference at position %d: got %d, "
                    "expected %d\n", tokens, i, show(caps[i].s, caps[i].len), pos, (int)ids[pos],
                    (int)want[i][pos]);
        else
            fprintf(stderr, "%s: caption %zu \"%s\": n_tokens %d, expected %d\n", tokens, i,
                    show(caps[i].s, caps[i].len), (int)n_tokens, want_n);
    }
    ck_assert_msg(bad == 0, "%zu of %zu captions differ from %s; first: caption %zu \"%s\" at "
                  "position %d (all listed on stderr)", bad, n, tokens, first_bad,
                  show(caps[first_bad].s, caps[first_bad].len), first_pos);
    free_texts(caps, n);
    free(want);
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}

/* Writes dir/name; returns the path, in one of 64 slots kept per (dir, name)
 * so that rewriting a file gives the same pointer back. */
static const char *write_file(const char *dir, const char *name, const char *data, size_t len) {
    static char paths[64][512];
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    size_t slot = 0;
    while (slot < 64 && paths[slot][0] && strcmp(paths[slot], p) != 0) slot++;
    ck_assert_uint_lt(slot, 64);
    memcpy(paths[slot], p, sizeof p);
    FILE *f = fopen(p, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", p);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    return paths[slot];
}

static const char *write_str(const char *dir, const char *name, const char *data) {
    return write_file(dir, name, data, strlen(data));
}

static void assert_ids(const int32_t *got, const int32_t *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s: position %d: got %d, expected %d", what, i,
                      (int)got[i], (int)want[i]);
}

#define TINY(f) pclip_test_fixture("tiny-clip/" f)
#define LEGACY(f) pclip_test_fixture("tiny-clip-legacy/" f)

/* ---- core ---- */

START_TEST(test_tiny_captions) {
    check_captions(TINY("vocab.json"), TINY("merges.txt"), pclip_test_fixture("tokens_tiny.json"));
}
END_TEST

/* Pretty-printed, ASCII-escaped vocab.json; merges without "#version" or a final newline. */
START_TEST(test_tiny_legacy_captions) {
    check_captions(LEGACY("vocab.json"), LEGACY("merges.txt"),
                   pclip_test_fixture("tokens_tiny.json"));
}
END_TEST

/* Merge order: a pair that a merge creates waits for the end of its rank's
 * pass, even when its own rank is lower (Python's loop; a heap that pushed it
 * at once would give "aba b"). */
START_TEST(test_bpe_pass_order) {
    const char *dir = pclip_test_tmpdir();
    const char *v = write_str(dir, "vocab.json",
                              "{\"a\":0,\"b\":1,\"z</w>\":2,\"ab\":3,\"aba\":4,"
                              "\"<|startoftext|>\":5,\"<|endoftext|>\":6}");
    const char *m = write_str(dir, "merges.txt", "#version: 0.2\nab a\na b\n");
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = load_ok(ctx, v, m);
    ck_assert_int_eq(pclip_tokenizer_bos(tok), 5);
    ck_assert_int_eq(pclip_tokenizer_eos(tok), 6);
    int32_t ids[8], n = 0;
    encode_ok(ctx, tok, "ababz", 5, ids, 8, &n);
    assert_ids(ids, (int32_t[]){5, 3, 3, 2, 6, 0, 0, 0}, 8, "ababz");
    ck_assert_int_eq(n, 5);
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* A pair listed twice keeps its later rank (Python's dict); merges naming
 * unknown symbols are accepted; a symbol absent from the vocabulary ("x</w>")
 * becomes <|endoftext|>. Expected ids from Python. */
START_TEST(test_bpe_duplicates_and_unknowns) {
    const char *dir = pclip_test_tmpdir();
    const char *v = write_str(dir, "vocab.json",
                              "{\"a\":0,\"b\":1,\"c\":2,\"z</w>\":3,\"ab\":4,\"bc\":5,"
                              "\"<|startoftext|>\":6,\"<|endoftext|>\":7}");
    const char *m = write_str(dir, "merges.txt", "a b\nb c\nq zz\na b");
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = load_ok(ctx, v, m);
    int32_t ids[10], n = 0;
    const char *s = "abcz abz x";
    encode_ok(ctx, tok, s, strlen(s), ids, 10, &n);
    assert_ids(ids, (int32_t[]){6, 0, 5, 3, 4, 3, 7, 7, 0, 0}, 10, s);
    ck_assert_int_eq(n, 8);
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Any context_len >= 2 keeps bos + the first context_len - 2 ids + eos. */
START_TEST(test_context_lengths) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
    const char *s = "a photo of a cat &amp; a dog, sitting on the beach at night! 2024 "
                    "caf\xC3\xA9 \xF0\x9F\x90\xB1 it's";
    int32_t full[200], n_full = 0;
    encode_ok(ctx, tok, s, strlen(s), full, 200, &n_full);
    ck_assert_int_gt(n_full, 20);
    ck_assert_int_lt(n_full, 200);
    int32_t bos = pclip_tokenizer_bos(tok), eos = pclip_tokenizer_eos(tok);
    ck_assert_int_eq(full[0], bos);
    ck_assert_int_eq(full[n_full - 1], eos);
    for (int32_t len = 2; len < 200; len++) {
        int32_t ids[200], n = -1;
        encode_ok(ctx, tok, s, strlen(s), ids, len, &n);
        int32_t keep = n_full < len ? n_full : len;
        ck_assert_int_eq(n, keep);
        assert_ids(ids, full, keep - 1, "prefix");
        ck_assert_int_eq(ids[keep - 1], eos);
        for (int32_t i = keep; i < len; i++) ck_assert_int_eq(ids[i], 0);
    }
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* The word cache only saves time: thrashing it changes nothing. */
START_TEST(test_cache_is_transparent) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t warm = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
    char s[64];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5000; i++) {
            snprintf(s, sizeof s, "w%dq%x catx%d", i * 7919 % 10007, i, i % 13);
            int32_t a[CTX_LEN], b[CTX_LEN];
            encode_ok(ctx, warm, s, strlen(s), a, CTX_LEN, NULL);
            if (i % 97 == 0) { /* against a fresh tokenizer, whose cache is empty */
                pclip_tokenizer_t cold = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
                encode_ok(ctx, cold, s, strlen(s), b, CTX_LEN, NULL);
                assert_ids(a, b, CTX_LEN, s);
                pclip_tokenizer_destroy(cold);
            }
        }
    }
    pclip_tokenizer_destroy(warm);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Spot checks of the Unicode helpers; unicode.c was compared with Python for
 * every code point when written. */
START_TEST(test_unicode_helpers) {
    ck_assert(pclip__uni_isspace(0x1C) && !pclip__uni_is_white_space(0x1C));
    ck_assert(pclip__uni_isspace(0x85) && pclip__uni_is_white_space(0x85));
    ck_assert(pclip__uni_isspace(0x3000) && !pclip__uni_isspace(0x200B));
    ck_assert(pclip__uni_is_cased(0x2160) && pclip__uni_is_cased(0x24B6));  /* Other_Upper/Lower */
    ck_assert(pclip__uni_is_cased(0x345) && pclip__uni_is_case_ignorable(0x345));
    ck_assert(pclip__uni_is_case_ignorable('\'') && pclip__uni_is_case_ignorable(0x2019));
    ck_assert(pclip__uni_is_case_ignorable(0xAD) && !pclip__uni_is_case_ignorable(','));
    ck_assert_int_eq(pclip__uni_clip_class(0x345), PCLIP__UNI_CLASS_SKIP);
    ck_assert_int_eq(pclip__uni_clip_class(0x1C), PCLIP__UNI_CLASS_OTHER);
    ck_assert_int_eq(pclip__uni_clip_class(0x2167), PCLIP__UNI_CLASS_NUMBER);
    ck_assert_int_eq(pclip__uni_clip_class(0x2C6), PCLIP__UNI_CLASS_LETTER); /* Lm */
    ck_assert(pclip__uni_matches_literal(0x17F, 's') && pclip__uni_matches_literal('S', 's'));
    ck_assert(!pclip__uni_matches_literal(0x17F, 't'));

    struct {
        int32_t in[6];
        int32_t want[6];
    } cases[] = {
        {{0x130}, {'i', 0x307}},
        {{0x3A3}, {0x3C3}},                          /* alone: not final */
        {{0x391, 0x3A3}, {0x3B1, 0x3C2}},            /* end of a word */
        {{0x391, 0x3A3, 0x391}, {0x3B1, 0x3C3, 0x3B1}},
        {{0x391, 0x3A3, '\'', 0x391}, {0x3B1, 0x3C3, '\'', 0x3B1}},
        {{0x391, '\'', 0x3A3, ' '}, {0x3B1, '\'', 0x3C2, ' '}},
        {{0x3A3, 0x3A3}, {0x3C3, 0x3C2}},
        {{0x2C6, 0x3A3}, {0x2C6, 0x3C3}}, /* Lm: case-ignorable, nothing cased before */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = 0;
        while (n < 6 && cases[c].in[n]) n++;
        int32_t out[12] = {0};
        size_t k = pclip__uni_lower(cases[c].in, n, out);
        for (size_t i = 0; i < 6; i++)
            ck_assert_msg(out[i] == cases[c].want[i], "case %zu, position %zu: U+%04X", c, i,
                          (unsigned)out[i]);
        ck_assert_uint_eq(k, c == 0 ? 2 : n);
    }
}
END_TEST

/* ---- limits ---- */

START_TEST(test_invalid_utf8) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
    static const struct {
        const char *s;
        size_t len;
        const char *where;
    } bad[] = {
        {"\x80", 1, "byte offset 0"},                      /* lone continuation byte */
        {"ab\xC3", 3, "byte offset 2"},                    /* truncated at the end */
        {"a\xE2\x82z", 4, "byte offset 1"},                /* truncated in the middle */
        {"photo \xC0\xAF", 8, "byte offset 6"},            /* overlong '/' */
        {"\xED\xA0\x80", 3, "byte offset 0"},              /* UTF-16 surrogate */
        {"xy\xF4\x90\x80\x80", 6, "byte offset 2"},        /* past U+10FFFF */
        {"cat\xFF", 4, "byte offset 3"},                   /* never valid */
        {"\xF0\x9F\x90\xB1\xF8\x88\x80\x80\x80", 9, "byte offset 4"}, /* 5-byte form */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t ids[CTX_LEN], n = -7;
        for (int j = 0; j < CTX_LEN; j++) ids[j] = -5;
        pclip_status st = pclip_tokenizer_encode(tok, bad[i].s, bad[i].len, ids, CTX_LEN, &n);
        ck_assert_status(ctx, st, PCLIP_STATUS_BAD_TEXT);
        ck_assert_msg(strstr(pclip_ctx_last_error(ctx), bad[i].where) != NULL,
                      "case %zu: message \"%s\" lacks \"%s\"", i, pclip_ctx_last_error(ctx),
                      bad[i].where);
        ck_assert_int_eq(n, -7);
        for (int j = 0; j < CTX_LEN; j++) ck_assert_int_eq(ids[j], -5);
    }
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_empty_and_arguments) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
    int32_t bos = pclip_tokenizer_bos(tok), eos = pclip_tokenizer_eos(tok);
    const char *blank[] = {"", " ", "\t\n\r \xE3\x80\x80\xC2\xA0", "&#0000013;", "&Tab;&NewLine;"};
    for (size_t i = 0; i < sizeof blank / sizeof blank[0]; i++) {
        int32_t ids[CTX_LEN], n = -1;
        encode_ok(ctx, tok, blank[i], strlen(blank[i]), ids, CTX_LEN, &n);
        ck_assert_int_eq(n, 2);
        ck_assert_int_eq(ids[0], bos);
        ck_assert_int_eq(ids[1], eos);
        for (int j = 2; j < CTX_LEN; j++) ck_assert_int_eq(ids[j], 0);
    }
    int32_t ids[CTX_LEN];
    encode_ok(ctx, tok, NULL, 0, ids, 2, NULL);
    ck_assert_int_eq(ids[0], bos);
    ck_assert_int_eq(ids[1], eos);
    ck_assert_status(ctx, pclip_tokenizer_encode(tok, "a", 1, ids, 1, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "context_len"));
    ck_assert_status(ctx, pclip_tokenizer_encode(tok, "a", 1, NULL, CTX_LEN, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_tokenizer_encode(tok, NULL, 3, ids, CTX_LEN, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_tokenizer_encode(NULL, "a", 1, ids, CTX_LEN, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_tokenizer_bos(NULL), -1);
    pclip_tokenizer_t none = NULL;
    ck_assert_status(ctx, pclip_tokenizer_load(ctx, NULL, TINY("merges.txt"), &none),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(none);
    pclip_tokenizer_destroy(NULL);
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* 100 KB texts: one word of one letter, many words, one "word" of emoji.
 * The ids themselves are checked against Python with the real vocabulary
 * (test_clip_huge); here the shape, and that a long text's ids are those of
 * its beginning. */
static char *mixed_words(size_t len) {
    static const char *const w[] = {"a", "photo", "of", "the", "cat", "dog", "sitting", "on",
                                    "red", "sofa", "beautiful", "mountain", "landscape", "under",
                                    "blue", "sky"};
    char *s = malloc(len + 32);
    size_t k = 0;
    uint32_t x = 12345;
    while (k < len) {
        x = (x * 1103515245u + 12345u) & 0x7FFFFFFFu;
        k += (size_t)sprintf(s + k, "%s ", w[(x >> 16) % 16]);
    }
    s[len] = '\0';
    return s;
}

static char *repeat(const char *unit, size_t times) {
    size_t u = strlen(unit);
    char *s = malloc(u * times + 1);
    for (size_t i = 0; i < times; i++) memcpy(s + i * u, unit, u);
    s[u * times] = '\0';
    return s;
}

START_TEST(test_huge_texts) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
    int32_t bos = pclip_tokenizer_bos(tok), eos = pclip_tokenizer_eos(tok);
    char *texts[] = {repeat("a", 100000), mixed_words(100000), repeat("\xF0\x9F\x99\x82", 25000),
                     repeat("&amp;", 20000), repeat("a ", 50000)};
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        int32_t ids[CTX_LEN], n = 0;
        encode_ok(ctx, tok, texts[t], strlen(texts[t]), ids, CTX_LEN, &n);
        ck_assert_int_eq(n, CTX_LEN);
        ck_assert_int_eq(ids[0], bos);
        ck_assert_int_eq(ids[CTX_LEN - 1], eos);
        for (int j = 1; j < CTX_LEN - 1; j++) ck_assert_int_ne(ids[j], bos);
    }
    /* words are independent: 100 KB of words start as their first 2 KB do */
    int32_t whole[CTX_LEN], head[CTX_LEN];
    encode_ok(ctx, tok, texts[1], strlen(texts[1]), whole, CTX_LEN, NULL);
    size_t cut = 2000;
    while (texts[1][cut] != ' ') cut--;
    encode_ok(ctx, tok, texts[1], cut, head, CTX_LEN, NULL);
    assert_ids(whole, head, CTX_LEN, "100 KB of words vs their first 2 KB");
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) free(texts[t]);
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Past PCLIP_LIMIT_TEXT_BYTES the text is cut at a character boundary, but
 * it is all checked for UTF-8. */
START_TEST(test_text_over_limit) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
    size_t big = PCLIP_LIMIT_TEXT_BYTES + 1000;
    char *s = mixed_words(big);
    int32_t whole[CTX_LEN], head[CTX_LEN], n = 0;
    encode_ok(ctx, tok, s, big, whole, CTX_LEN, &n);
    ck_assert_int_eq(n, CTX_LEN);
    size_t cut = 2000;
    while (s[cut] != ' ') cut--;
    encode_ok(ctx, tok, s, cut, head, CTX_LEN, NULL);
    assert_ids(whole, head, CTX_LEN, "over the limit vs the first 2 KB");

    /* a 4-byte character across the limit, and one word across it */
    memset(s, 'a', big);
    memcpy(s + PCLIP_LIMIT_TEXT_BYTES - 2, "\xF0\x9F\x99\x82", 4);
    encode_ok(ctx, tok, s, big, whole, CTX_LEN, &n);
    ck_assert_int_eq(whole[CTX_LEN - 1], pclip_tokenizer_eos(tok));

    /* invalid UTF-8 after the limit is still an error */
    s[big - 1] = (char)0xFF;
    ck_assert_status(ctx, pclip_tokenizer_encode(tok, s, big, whole, CTX_LEN, NULL),
                     PCLIP_STATUS_BAD_TEXT);
    char where[64];
    snprintf(where, sizeof where, "byte offset %zu", big - 1);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), where));
    free(s);
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

#define SPECIALS "\"<|startoftext|>\": 7, \"<|endoftext|>\": 8"

START_TEST(test_bad_vocab) {
    static const struct {
        const char *what, *json;
        pclip_status want;
        const char *says;
    } cases[] = {
        {"empty", "", PCLIP_STATUS_BAD_FORMAT, "file is empty"},
        {"not JSON", "vocab", PCLIP_STATUS_BAD_FORMAT, "not valid JSON"},
        {"truncated", "{\"a\": 1, " SPECIALS, PCLIP_STATUS_BAD_FORMAT, "not valid JSON"},
        {"array", "[\"a\", \"b\"]", PCLIP_STATUS_BAD_FORMAT, "found an array"},
        {"string id", "{\"a\": \"1\", " SPECIALS "}", PCLIP_STATUS_BAD_FORMAT,
         "token \"a\": id is a string"},
        {"float id", "{\"a\": 1.5, " SPECIALS "}", PCLIP_STATUS_BAD_FORMAT, "token \"a\": id"},
        {"negative id", "{\"a\": -1, " SPECIALS "}", PCLIP_STATUS_BAD_FORMAT, "token \"a\": id"},
        {"huge id", "{\"a\": 4294967296, " SPECIALS "}", PCLIP_STATUS_BAD_FORMAT,
         "token \"a\": id"},
        {"object id", "{\"a\": {}, " SPECIALS "}", PCLIP_STATUS_BAD_FORMAT, "an object"},
        {"duplicate key", "{\"a\": 1, \"b\": 2, \"a\": 3, " SPECIALS "}",
         PCLIP_STATUS_BAD_FORMAT, "duplicate key 'a'"},
        {"duplicate id", "{\"a\": 1, \"b\": 1, " SPECIALS "}", PCLIP_STATUS_BAD_FORMAT,
         "tokens \"a\" and \"b\" both have id 1"},
        {"no <|startoftext|>", "{\"a\": 1, \"<|endoftext|>\": 2}", PCLIP_STATUS_BAD_FORMAT,
         "no token <|startoftext|>"},
        {"no <|endoftext|>", "{\"a\": 1, \"<|startoftext|>\": 2}", PCLIP_STATUS_BAD_FORMAT,
         "no token <|endoftext|>"},
        {"trailing data", "{" SPECIALS "} {}", PCLIP_STATUS_BAD_FORMAT, "after the JSON value"},
    };
    const char *dir = pclip_test_tmpdir();
    const char *m = write_str(dir, "merges.txt", "#version: 0.2\na b\n");
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *v = write_str(dir, "vocab.json", cases[i].json);
        pclip_tokenizer_t tok = NULL;
        pclip_status st = pclip_tokenizer_load(ctx, v, m, &tok);
        const char *msg = pclip_ctx_last_error(ctx);
        ck_assert_msg(st == cases[i].want, "%s: %s (%s)", cases[i].what, pclip_status_name(st),
                      msg);
        ck_assert_msg(strstr(msg, "vocab.json") && strstr(msg, cases[i].says),
                      "%s: message \"%s\" lacks the file name or \"%s\"", cases[i].what, msg,
                      cases[i].says);
        ck_assert_ptr_null(tok);
    }
    /* ASCII-escaped keys, surrogate pairs included, are the same tokens */
    const char *v = write_str(dir, "vocab.json",
                              "{\"\\u00e9\": 0, \"\\ud83d\\ude42\": 1, " SPECIALS "}");
    pclip_tokenizer_t tok = load_ok(ctx, v, m);
    pclip_tokenizer_destroy(tok);

    /* missing file, directory */
    pclip_tokenizer_t none = NULL;
    char missing[512];
    snprintf(missing, sizeof missing, "%s/nothere/vocab.json", dir);
    ck_assert_status(ctx, pclip_tokenizer_load(ctx, missing, m, &none), PCLIP_STATUS_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "nothere/vocab.json"));
    char sub[512];
    snprintf(sub, sizeof sub, "%s/vocab-dir.json", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    ck_assert_status(ctx, pclip_tokenizer_load(ctx, sub, m, &none), PCLIP_STATUS_IO);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "vocab-dir.json"));
    ck_assert_ptr_null(none);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_bad_merges) {
    static const struct {
        const char *what, *text;
        const char *says;
    } cases[] = {
        {"one symbol", "#version: 0.2\na b\nab\n", "line 3"},
        {"two spaces", "a  b\n", "line 1"},
        {"leading space", "a b\n b\n", "line 2"},
        {"trailing space", "a b\r\nb c\r\nc \r\n", "line 3"},
        {"three symbols", "a b c", "line 1"},
        {"invalid UTF-8", "a b\n\xC3 b\n", "line 2"},
    };
    const char *dir = pclip_test_tmpdir();
    const char *v = write_str(dir, "vocab.json", "{\"a\": 0, " SPECIALS "}");
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *m = write_str(dir, "merges.txt", cases[i].text);
        pclip_tokenizer_t tok = NULL;
        pclip_status st = pclip_tokenizer_load(ctx, v, m, &tok);
        const char *msg = pclip_ctx_last_error(ctx);
        ck_assert_msg(st == PCLIP_STATUS_BAD_FORMAT, "%s: %s (%s)", cases[i].what,
                      pclip_status_name(st), msg);
        ck_assert_msg(strstr(msg, "merges.txt") && strstr(msg, cases[i].says),
                      "%s: message \"%s\" lacks the file name or \"%s\"", cases[i].what, msg,
                      cases[i].says);
        ck_assert_ptr_null(tok);
    }
    pclip_tokenizer_t none = NULL;
    char missing[512];
    snprintf(missing, sizeof missing, "%s/merges-missing.txt", dir);
    ck_assert_status(ctx, pclip_tokenizer_load(ctx, v, missing, &none), PCLIP_STATUS_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "merges-missing.txt"));
    ck_assert_status(ctx, pclip_tokenizer_load(ctx, v, dir, &none), PCLIP_STATUS_IO);
    ck_assert_ptr_null(none);
    /* an empty merges file is valid: every byte is its own token */
    const char *m = write_str(dir, "merges.txt", "");
    pclip_tokenizer_t tok = load_ok(ctx, v, m);
    int32_t ids[4];
    encode_ok(ctx, tok, "aa", 2, ids, 4, NULL);
    assert_ids(ids, (int32_t[]){7, 0, 8, 8}, 4, "aa"); /* "a</w>" is not in the vocabulary */
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* The same merges with CRLF, no "#version", no final newline and blank lines
 * give the same ids as the fixture's file. */
START_TEST(test_merges_layouts) {
    size_t len;
    char *orig = pclip_test_read_file(TINY("merges.txt"), &len);
    ck_assert(strncmp(orig, "#version", 8) == 0);
    char *crlf = malloc(2 * len + 16), *bare = malloc(2 * len + 16);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (orig[i] == '\n') crlf[k++] = '\r';
        crlf[k++] = orig[i];
    }
    const char *body = strchr(orig, '\n') + 1;
    size_t blen = len - (size_t)(body - orig);
    size_t b = 0;
    bare[b++] = '\n'; /* a blank first line is not a header: it is skipped as blank */
    for (size_t i = 0; i < blen; i++) {
        bare[b++] = body[i];
        if (body[i] == '\n' && i % 7 == 0) bare[b++] = '\n';
    }
    while (b > 0 && bare[b - 1] == '\n') b--;
    const char *dir = pclip_test_tmpdir();
    const char *variants[] = {write_file(dir, "crlf.txt", crlf, k),
                              write_file(dir, "bare.txt", bare, b)};
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t ref = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
    const char *s = "two cats sleeping on a red sofa, caf\xC3\xA9 \xE6\x9D\xB1\xE4\xBA\xAC it's 2024";
    int32_t want[CTX_LEN];
    encode_ok(ctx, ref, s, strlen(s), want, CTX_LEN, NULL);
    for (size_t i = 0; i < 2; i++) {
        pclip_tokenizer_t tok = load_ok(ctx, TINY("vocab.json"), variants[i]);
        int32_t ids[CTX_LEN];
        encode_ok(ctx, tok, s, strlen(s), ids, CTX_LEN, NULL);
        assert_ids(ids, want, CTX_LEN, variants[i]);
        pclip_tokenizer_destroy(tok);
    }
    pclip_tokenizer_destroy(ref);
    pclip_ctx_destroy(ctx);
    free(orig);
    free(crlf);
    free(bare);
}
END_TEST

START_TEST(test_size_limits) {
    const char *dir = pclip_test_tmpdir();
    size_t n = (size_t)PCLIP_LIMIT_VOCAB + 1;
    char *json = malloc(n * 24 + 64);
    size_t k = 0;
    json[k++] = '{';
    for (size_t i = 0; i < n; i++) k += (size_t)sprintf(json + k, "\"t%zu\":%zu,", i, i);
    json[k - 1] = '}';
    const char *v = write_file(dir, "vocab.json", json, k);
    free(json);
    const char *m = write_str(dir, "merges.txt", "a b\n");
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok = NULL;
    ck_assert_status(ctx, pclip_tokenizer_load(ctx, v, m, &tok), PCLIP_STATUS_LIMIT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "vocab.json"));

    v = write_str(dir, "vocab.json", "{" SPECIALS "}");
    char *lines = repeat("a b\n", (size_t)PCLIP_LIMIT_MERGES + 1);
    m = write_str(dir, "merges.txt", lines);
    free(lines);
    ck_assert_status(ctx, pclip_tokenizer_load(ctx, v, m, &tok), PCLIP_STATUS_LIMIT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "merges.txt"));
    ck_assert_ptr_null(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* The N-th allocation fails, for N = 1, 2, ... until load + encode succeed:
 * every failure is OUT_OF_MEMORY, leaves the outputs alone and leaks nothing
 * (LeakSanitizer checks the last part under -DPORTCLIP_SANITIZE=ON). */
START_TEST(test_allocation_failures) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    /* entities, Greek sigma, U+0130, emoji, and a 300-letter word that makes
     * the BPE scratch space grow */
    char *s = malloc(1024);
    int k = snprintf(s, 1024, "Fish &amp;amp; chips &lt;3 \xCE\xA3\xCE\x91\xCE\xA3 "
                     "\xC4\xB0stanbul \xF0\x9F\x99\x82\xF0\x9F\x99\x82 it's ");
    memset(s + k, 'q', 300);
    strcpy(s + k + 300, " done");
    pclip_tokenizer_t ref = load_ok(ctx, TINY("vocab.json"), TINY("merges.txt"));
    int32_t want[CTX_LEN];
    encode_ok(ctx, ref, s, strlen(s), want, CTX_LEN, NULL);
    pclip_tokenizer_destroy(ref);

    long n = 1, load_failures = 0, encode_failures = 0;
    for (;; n++) {
        ck_assert_msg(n < 1000000, "no success after %ld allocation failures", n);
        pclip__err_clear(ctx);
        pclip__alloc_fail_at(n);
        pclip_tokenizer_t tok = NULL;
        pclip_status st = pclip_tokenizer_load(ctx, TINY("vocab.json"), TINY("merges.txt"), &tok);
        int32_t ids[CTX_LEN], count = -3;
        for (int j = 0; j < CTX_LEN; j++) ids[j] = -3;
        if (st == PCLIP_STATUS_OK) {
            st = pclip_tokenizer_encode(tok, s, strlen(s), ids, CTX_LEN, &count);
            if (st != PCLIP_STATUS_OK) {
                encode_failures++;
                ck_assert_int_eq(count, -3);
                for (int j = 0; j < CTX_LEN; j++) ck_assert_int_eq(ids[j], -3);
            }
            pclip_tokenizer_destroy(tok);
        } else {
            load_failures++;
            ck_assert_ptr_null(tok);
        }
        pclip__alloc_fail_at(0);
        if (st == PCLIP_STATUS_OK) {
            assert_ids(ids, want, CTX_LEN, "after the walk");
            break;
        }
        ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY, "allocation %ld: %s (%s)", n,
                      pclip_status_name(st), pclip_ctx_last_error(ctx));
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "out of memory"));
    }
    ck_assert_int_gt(load_failures, 100);
    ck_assert_int_gt(encode_failures, 2);
    free(s);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- real CLIP vocabulary ---- */

START_TEST(test_clip_captions) {
    check_captions(pclip_test_shared_bpe("vocab.json"), pclip_test_shared_bpe("merges.txt"),
                   pclip_test_fixture("tokens_clip.json"));
}
END_TEST

/* 100 KB texts; the ids are Python's (SimpleTokenizer, real vocabulary). */
START_TEST(test_clip_huge) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok =
        load_ok(ctx, pclip_test_shared_bpe("vocab.json"), pclip_test_shared_bpe("merges.txt"));
    static const int32_t mixed_want[CTX_LEN] = {
        49406, 5727,  2368,  1929,  1215,  2390,  1798,  1798,  1215,  1215,  1929,  5727,
        3965,  1746,  2390,  518,   320,   15723, 5727,  1798,  320,   2390,  15723, 2390,
        320,   1798,  2368,  5727,  2368,  1798,  539,   3965,  4919,  736,   518,   1215,
        539,   2390,  2390,  1746,  525,   736,   15723, 1125,  1746,  15723, 320,   3965,
        736,   1929,  1929,  5727,  15723, 15723, 1125,  2390,  4919,  4919,  539,   1746,
        2390,  5727,  15723, 1929,  1798,  3965,  2368,  736,   1215,  15723, 5727,  2368,
        518,   539,   1746,  4919,  49407};
    struct {
        char *text;
        int32_t repeated; /* every id between bos and eos, or 0: see mixed_want */
    } cases[] = {
        {repeat("a", 100000), 23126},
        {mixed_words(100000), 0},
        {repeat("\xF0\x9F\x99\x82", 25000), 32006},
    };
    for (size_t c = 0; c < 3; c++) {
        int32_t ids[CTX_LEN], n = 0;
        encode_ok(ctx, tok, cases[c].text, strlen(cases[c].text), ids, CTX_LEN, &n);
        ck_assert_int_eq(n, CTX_LEN);
        int32_t want[CTX_LEN];
        for (int j = 0; j < CTX_LEN; j++)
            want[j] = cases[c].repeated ? (j == 0 ? 49406 : j == CTX_LEN - 1 ? 49407
                                                                            : cases[c].repeated)
                                        : mixed_want[j];
        assert_ids(ids, want, CTX_LEN, c == 0 ? "a * 100000" : c == 1 ? "words" : "emoji");
        free(cases[c].text);
    }
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* `check_tokenizer`: everything with the tiny vocabularies.
 * `check_tokenizer clip`: the captions and huge texts with the real CLIP
 * vocabulary; exits 77 (skipped, with the reason) when it is absent, so that
 * CTest never counts these cases as passed without running them. */
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "clip") == 0) {
        if (!pclip_test_shared_bpe("vocab.json")) {
            printf("skipped: real CLIP vocabulary not found at %s (tests test_clip_captions, "
                   "test_clip_huge)\n",
                   PCLIP_SHARED_BPE_DIR);
            return PCLIP_TEST_SKIP;
        }
        Suite *s = suite_create("tokenizer-clip");
        TCase *clip = tcase_create("clip-vocab");
        tcase_add_test(clip, test_clip_captions);
        tcase_add_test(clip, test_clip_huge);
        suite_add_tcase(s, clip);
        return pclip_test_run(s);
    }
    if (argc > 1) {
        fprintf(stderr, "usage: check_tokenizer [clip]\n");
        return 2;
    }
    Suite *s = suite_create("tokenizer");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_tiny_captions);
    tcase_add_test(core, test_tiny_legacy_captions);
    tcase_add_test(core, test_bpe_pass_order);
    tcase_add_test(core, test_bpe_duplicates_and_unknowns);
    tcase_add_test(core, test_context_lengths);
    tcase_add_test(core, test_cache_is_transparent);
    tcase_add_test(core, test_unicode_helpers);
    suite_add_tcase(s, core);

    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_invalid_utf8);
    tcase_add_test(limits, test_empty_and_arguments);
    tcase_add_test(limits, test_huge_texts);
    tcase_add_test(limits, test_text_over_limit);
    tcase_add_test(limits, test_bad_vocab);
    tcase_add_test(limits, test_bad_merges);
    tcase_add_test(limits, test_merges_layouts);
    tcase_add_test(limits, test_size_limits);
    tcase_add_test(limits, test_allocation_failures);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
