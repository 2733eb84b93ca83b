/* Zero-shot classification with the portclip library, in one page: load a
 * Hugging Face CLIP directory, make one class per label (OpenAI's "a photo
 * of a {}." prompt), and print each image's most probable label.
 *
 *   example_classify MODEL_DIR LABEL,LABEL,... IMAGE...
 *
 * Output, one line per image: "PATH: LABEL (PROB)". Built with the project
 * and run by the tests (check_cli_apps). Errors go to stderr with exit 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portclip.h"

#define MAX_LABELS 256

typedef struct run {
    const char *const *paths;
    const char *const *labels;
} run;

/* Called once per image, in input order. */
static pclip_status print_best(void *user, int64_t index, int32_t count, const float *logits,
                               const float *probs) {
    (void)logits;
    const run *r = user;
    int32_t best = 0;
    for (int32_t j = 1; j < count; j++)
        if (probs[j] > probs[best]) best = j;
    printf("%s: %s (%.4f)\n", r->paths[index], r->labels[best], probs[best]);
    return PCLIP_STATUS_OK;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR LABEL,LABEL,... IMAGE...\n", argv[0]);
        return 2;
    }
    /* the labels: argv[2] split at commas, in place */
    const char *labels[MAX_LABELS];
    int32_t n_labels = 0;
    for (char *p = argv[2]; p && n_labels < MAX_LABELS; n_labels++) {
        labels[n_labels] = p;
        if ((p = strchr(p, ','))) *p++ = '\0';
    }

    pclip_ctx_t ctx = NULL;
    pclip_model_t model = NULL;
    pclip_backend_t backend = NULL;
    pclip_zeroshot_t classes = NULL;
    pclip_status st = pclip_ctx_create(&ctx);
    if (st) return 1;
    /* NULL and -1: the backend and device of PORTCLIP_BACKEND / PORTCLIP_DEVICE, else auto */
    st = pclip_backend_create(ctx, NULL, -1, &backend);
    if (!st) st = pclip_model_load(ctx, argv[1], &model);
    /* templates NULL, 0: PCLIP_ZEROSHOT_TEMPLATE_DEFAULT */
    if (!st) st = pclip_zeroshot_create_labels(model, backend, labels, n_labels, NULL, 0, &classes);
    if (!st) {
        run r = {.paths = (const char *const *)argv + 3, .labels = labels};
        st = pclip_zeroshot_image_files(classes, r.paths, argc - 3, NULL, print_best, &r);
    }
    if (st) fprintf(stderr, "example_classify: %s\n", pclip_ctx_last_error(ctx));
    pclip_zeroshot_destroy(classes);
    pclip_model_destroy(model); /* before the backend it compiled graphs on */
    pclip_backend_destroy(backend);
    pclip_ctx_destroy(ctx);
    return st ? 1 : 0;
}
