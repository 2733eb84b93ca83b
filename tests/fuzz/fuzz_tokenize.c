/* Fuzz target: pclip_tokenizer_encode on arbitrary bytes, with the tiny
 * fixture vocabulary (tests/fixtures/tiny-clip), or the one in the directory
 * PCLIP_FUZZ_VOCAB_DIR names (vocab.json, merges.txt: the real CLIP
 * vocabulary, for longer runs). Each input is encoded with CLIP's 77 ids and
 * with a context length taken from its size, then once more: the second pass
 * goes through the word cache and must give the same ids. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#ifndef PCLIP_FIXTURES_DIR
#error "PCLIP_FIXTURES_DIR must name tests/fixtures"
#endif

static pclip_tokenizer_t tokenizer(void) {
    static pclip_tokenizer_t tok;
    if (!tok) {
        const char *dir = getenv("PCLIP_FUZZ_VOCAB_DIR");
        char vocab[4096], merges[4096];
        snprintf(vocab, sizeof vocab, "%s/vocab.json", dir ? dir : PCLIP_FIXTURES_DIR "/tiny-clip");
        snprintf(merges, sizeof merges, "%s/merges.txt",
                 dir ? dir : PCLIP_FIXTURES_DIR "/tiny-clip");
        pclip_status st = pclip_tokenizer_load(fuzz_ctx(), vocab, merges, &tok);
        FUZZ_CHECK(st == PCLIP_STATUS_OK);
    }
    return tok;
}

static void encode_twice(const uint8_t *data, size_t size, int32_t context_len) {
    pclip_tokenizer_t tok = tokenizer();
    int32_t a[300], b[300], na = -1, nb = -1;
    pclip_status st = pclip_tokenizer_encode(tok, (const char *)data, size, a, context_len, &na);
    FUZZ_CHECK(st == PCLIP_STATUS_OK || st == PCLIP_STATUS_BAD_TEXT);
    pclip_status st2 = pclip_tokenizer_encode(tok, (const char *)data, size, b, context_len, &nb);
    FUZZ_CHECK(st2 == st);
    if (st) return;
    FUZZ_CHECK(na == nb && na >= 2 && na <= context_len);
    FUZZ_CHECK(memcmp(a, b, (size_t)context_len * sizeof *a) == 0);
    FUZZ_CHECK(a[0] == pclip_tokenizer_bos(tok) && a[na - 1] == pclip_tokenizer_eos(tok));
    /* both vocabularies end with <|startoftext|>, <|endoftext|> */
    for (int32_t i = 0; i < context_len; i++) {
        FUZZ_CHECK(a[i] >= 0 && a[i] <= pclip_tokenizer_eos(tok));
        if (i >= na) FUZZ_CHECK(a[i] == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size) {
    const uint8_t *data = fuzz_guarded(input, size);
    encode_twice(data, size, 77);
    encode_twice(data, size, 2 + (int32_t)(size % 299));
    return 0;
}
