/* portclip tokenize: one line of token ids per text on stdout. Every text is
 * tokenized before anything is printed, so a bad text leaves stdout empty.
 * Loading the tokenizer and reading the texts is done by cli.c (the command's
 * flags); this file only encodes and prints. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- tokenize ---- */

int cmd_tokenize(cli_run *run) {
    pclip_tokenizer_t tok = pclip_model_tokenizer(run->model);
    size_t n = run->inputs.count;
    size_t n_ctx = (size_t)pclip_model_config(run->model)->text.max_position_embeddings;
    if (n_ctx == 0 || n > SIZE_MAX / sizeof(int32_t) / n_ctx)
        return cli_error(CLI_EXIT_FAILURE, "too many texts");
    int32_t *ids = malloc(n * n_ctx * sizeof *ids);
    if (!ids) return cli_error(CLI_EXIT_FAILURE, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *text = run->inputs.items[i];
        pclip_status st =
            pclip_tokenizer_encode(tok, text, strlen(text), ids + i * n_ctx, (int32_t)n_ctx, NULL);
        if (st) {
            free(ids);
            return cli_error(CLI_EXIT_FAILURE, "text %zu: %s", i + 1,
                             pclip_ctx_last_error(run->ctx));
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n_ctx; j++) printf(j ? " %d" : "%d", (int)ids[i * n_ctx + j]);
        putchar('\n');
    }
    free(ids);
    return CLI_EXIT_OK; /* main.c checks that stdout was written */
}
