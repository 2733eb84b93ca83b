/* Fuzz target: the tokenizer loader (pclip__tokenizer_parse, behind
 * pclip_tokenizer_load). The input is vocab.json's bytes, the separator
 * below, then merges.txt's bytes; without a separator it is all vocabulary
 * and the merges are empty. A tokenizer that loads then encodes the start of
 * the merges text and a fixed sentence. */
#include <string.h>

#include "fuzz.h"

#define SEPARATOR "\n#--merges--#\n"

static void encode(pclip_tokenizer_t tok, const char *text, size_t len) {
    int32_t ids[77], n = -1;
    pclip_status st = pclip_tokenizer_encode(tok, text, len, ids, 77, &n);
    FUZZ_CHECK(st == PCLIP_STATUS_OK || st == PCLIP_STATUS_BAD_TEXT);
    if (st) return;
    FUZZ_CHECK(n >= 2 && n <= 77);
    FUZZ_CHECK(ids[0] == pclip_tokenizer_bos(tok) && ids[n - 1] == pclip_tokenizer_eos(tok));
    for (int i = 0; i < 77; i++) FUZZ_CHECK(ids[i] >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size) {
    const uint8_t *data = fuzz_guarded(input, size);
    const char *text = (const char *)data;
    const char *sep = NULL;
    size_t k = strlen(SEPARATOR);
    for (size_t i = 0; i + k <= size && !sep; i++)
        if (memcmp(text + i, SEPARATOR, k) == 0) sep = text + i;
    size_t vlen = sep ? (size_t)(sep - text) : size;
    const char *merges = sep ? sep + k : text + size;
    size_t mlen = size - vlen - (sep ? k : 0);

    pclip_tokenizer_t tok = NULL;
    pclip_status st = pclip__tokenizer_parse(fuzz_ctx(), "vocab.json", text, vlen, "merges.txt",
                                             merges, mlen, &tok);
    FUZZ_CHECK(fuzz_status_ok(st));
    if (st) {
        FUZZ_CHECK(tok == NULL);
        return 0;
    }
    encode(tok, merges, mlen < 256 ? mlen : 256);
    static const char sentence[] = "A photo of a cat &amp; 2 dogs, isn't it? <|endoftext|>";
    encode(tok, sentence, sizeof sentence - 1);
    pclip_tokenizer_destroy(tok);
    return 0;
}
