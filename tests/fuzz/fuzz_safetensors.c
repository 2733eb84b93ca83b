/* Fuzz target: the safetensors header parser (pclip__st_parse) on a whole
 * file's bytes, then every lookup and F32/F16/BF16 conversion it allows. The
 * conversions read each tensor's data span, so a span the parser let through
 * outside the file is an ASan report here. */
#include <string.h>

#include "fuzz.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size) {
    const uint8_t *data = fuzz_guarded(input, size);
    pclip_ctx_t ctx = fuzz_ctx();
    pclip__st_file *f = NULL;
    pclip_status st = pclip__st_parse(ctx, "fuzz.safetensors", data, size, &f);
    FUZZ_CHECK(fuzz_status_ok(st));
    if (st) {
        FUZZ_CHECK(f == NULL);
        return 0;
    }
    for (size_t i = 0; i < f->n_tensors; i++) {
        const pclip__st_tensor *t = &f->tensors[i];
        FUZZ_CHECK(i == 0 || strcmp(f->tensors[i - 1].name, t->name) < 0);
        FUZZ_CHECK(pclip__st_find(f, t->name) == t);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= PCLIP_LIMIT_TENSOR_DIMS);
        FUZZ_CHECK(t->nbytes == t->count * pclip__st_dtype_size(t->dtype));
        FUZZ_CHECK(t->data >= data && t->nbytes <= size &&
                   (size_t)(t->data - data) <= size - t->nbytes);
        /* the conversion's output is count floats; a fuzzed header may claim
         * up to the file's size in elements, so only small ones are converted */
        if (t->count <= (1u << 16)) {
            float *out = malloc((t->count ? t->count : 1) * sizeof *out);
            FUZZ_CHECK(out != NULL);
            st = pclip__st_to_f32(ctx, t, out);
            FUZZ_CHECK(st == PCLIP_STATUS_OK || st == PCLIP_STATUS_UNSUPPORTED);
            free(out);
        }
    }
    FUZZ_CHECK(pclip__st_find(f, "no such tensor \x01") == NULL);
    pclip__st_close(f);
    return 0;
}
