/* Fuzz target: config.json (pclip__config_parse, the parser behind
 * pclip_config_load). A config it accepts must be within the limits, and
 * listing the checkpoint tensors it implies must stay bounded. */
#include "fuzz.h"
#include "model/model.h"

static int count_tensor(const char *name, const int64_t *shape, int ndim, void *user) {
    (void)name;
    FUZZ_CHECK(ndim >= 0 && ndim <= 4);
    for (int i = 0; i < ndim; i++) FUZZ_CHECK(shape[i] > 0);
    (*(size_t *)user)++;
    return 0;
}

static void check_tower(const pclip_tower_config *t, int text) {
    FUZZ_CHECK(t->hidden_size >= 1 && t->hidden_size <= PCLIP_LIMIT_WIDTH);
    FUZZ_CHECK(t->num_layers >= 1 && t->num_layers <= PCLIP_LIMIT_LAYERS);
    FUZZ_CHECK(t->num_heads >= 1 && t->hidden_size % t->num_heads == 0);
    FUZZ_CHECK(t->act > PCLIP_ACT_NONE && t->act < PCLIP_ACT_COUNT);
    if (text) {
        FUZZ_CHECK(t->max_position_embeddings >= 2 &&
                   t->max_position_embeddings <= PCLIP_LIMIT_CONTEXT);
        FUZZ_CHECK(t->eos_token_id < t->vocab_size && t->bos_token_id < t->vocab_size);
    } else {
        FUZZ_CHECK(t->patch_size >= 1 && t->image_size % t->patch_size == 0);
        FUZZ_CHECK(t->num_channels == 3);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size) {
    const uint8_t *data = fuzz_guarded(input, size);
    pclip_config c;
    pclip_status st = pclip__config_parse(fuzz_ctx(), "config.json", (const char *)data, size, &c);
    FUZZ_CHECK(fuzz_status_ok(st));
    if (st) return 0;
    check_tower(&c.text, 1);
    check_tower(&c.vision, 0);
    size_t n = 0;
    pclip__clip_tensors(&c, count_tensor, &n);
    FUZZ_CHECK(n == 16 * (size_t)(c.text.num_layers + c.vision.num_layers) + 14);
    return 0;
}
