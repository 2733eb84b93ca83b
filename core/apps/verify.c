/* The public side of backend parity, for `portclip verify`: the op cases of
 * core/parity.c, and the two encoders of a user's checkpoint on built-in
 * inputs, each compared with a reference backend. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph/parity.h"

size_t pclip_parity_case_count(void) { return pclip__parity_count(); }

pclip_status pclip_parity_run_case(pclip_ctx_t ctx, pclip_backend_t ref, pclip_backend_t test,
                                   size_t i, pclip_parity_row *row) {
    if (!ref || !test || !row)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "parity: NULL argument");
    pclip__parity_result r;
    pclip_status st = pclip__parity_run(ctx, ref, test, i, &r);
    if (st) return st;
    memset(row, 0, sizeof *row);
    snprintf(row->case_name, sizeof row->case_name, "%s", r.name);
    row->error = r.nmse;
    row->tolerance = r.tol;
    row->passed = r.passed;
    snprintf(row->why, sizeof row->why, "%s", r.why);
    return PCLIP_STATUS_OK;
}

/* ---- encoders ---- */

#define VERIFY_ROW_TOL 1e-5

static const char *const verify_texts[] = {
    "a photo of a cat", "", "A diagram of two dogs playing in the snow, drawn in pencil.",
    "東京タワーの夜景 🐱"};
#define N_TEXTS ((int32_t)(sizeof verify_texts / sizeof verify_texts[0]))
#define N_IMAGES 3

/* Largest relative error of a row of `test` against `ref`, [rows, cols]. */
static double max_row_error(const float *ref, const float *test, int32_t rows, int32_t cols) {
    double worst = 0;
    for (int32_t r = 0; r < rows; r++) {
        double diff = 0, norm = 0;
        for (int32_t c = 0; c < cols; c++) {
            double a = ref[(size_t)r * cols + c], b = test[(size_t)r * cols + c];
            diff += (a - b) * (a - b);
            norm += a * a;
        }
        double e = sqrt(diff / (norm > 0 ? norm : 1));
        if (!(e <= worst)) worst = e; /* NaN wins */
    }
    return worst;
}

static void fill_row(pclip_parity_row *row, const char *name, double err) {
    memset(row, 0, sizeof *row);
    snprintf(row->case_name, sizeof row->case_name, "%s", name);
    row->error = err;
    row->tolerance = VERIFY_ROW_TOL;
    row->passed = err <= VERIFY_ROW_TOL;
    if (!row->passed)
        snprintf(row->why, sizeof row->why, "row relative error %.3g over %.0e", err,
                 VERIFY_ROW_TOL);
}

pclip_status pclip_parity_run_model(pclip_ctx_t ctx, pclip_model_t m, pclip_backend_t ref,
                                    pclip_backend_t test, pclip_parity_row rows[2]) {
    if (!m || !ref || !test || !rows)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "parity: NULL argument");
    const pclip_config *c = pclip_model_config(m);
    pclip_tokenizer_t tok = pclip_model_tokenizer(m);
    if (!tok)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "parity: the model was loaded without its tokenizer");
    int32_t n_ctx = c->text.max_position_embeddings, d = pclip_model_embed_dim(m);
    int32_t S = c->vision.image_size;
    size_t per_image = (size_t)3 * S * S;
    int32_t *ids = pclip__malloc((size_t)N_TEXTS * n_ctx * sizeof *ids);
    float *pixels = pclip__malloc(N_IMAGES * per_image * sizeof *pixels);
    float *a = pclip__malloc((size_t)(N_TEXTS + N_IMAGES) * d * sizeof *a);
    float *b = pclip__malloc((size_t)(N_TEXTS + N_IMAGES) * d * sizeof *b);
    pclip_status st = PCLIP_STATUS_OK;
    if (!ids || !pixels || !a || !b) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "parity: out of memory");
        goto done;
    }
    for (int32_t i = 0; i < N_TEXTS && !st; i++)
        st = pclip_tokenizer_encode(tok, verify_texts[i], strlen(verify_texts[i]),
                                    ids + (size_t)i * n_ctx, n_ctx, NULL);
    /* Smooth synthetic images in the normalised range, different per image. */
    for (int32_t k = 0; k < N_IMAGES; k++)
        for (size_t p = 0; p < per_image; p++) {
            size_t ch = p / ((size_t)S * S), y = p / S % S, x = p % S;
            pixels[k * per_image + p] =
                (float)(1.5 * sin(0.07 * (double)(x + 1) * (k + 1) + 0.05 * (double)y) +
                        0.3 * cos(0.11 * (double)(x * y % 97) + (double)ch));
        }
    if (st || (st = pclip_model_encode_text(m, ref, ids, N_TEXTS, PCLIP_ENCODE_NORMALIZE, a)) ||
        (st = pclip_model_encode_text(m, test, ids, N_TEXTS, PCLIP_ENCODE_NORMALIZE, b)) ||
        (st = pclip_model_encode_images(m, ref, pixels, N_IMAGES, PCLIP_ENCODE_NORMALIZE,
                                        a + (size_t)N_TEXTS * d)) ||
        (st = pclip_model_encode_images(m, test, pixels, N_IMAGES, PCLIP_ENCODE_NORMALIZE,
                                        b + (size_t)N_TEXTS * d)))
        goto done;
    char name[192];
    snprintf(name, sizeof name, "text encoder: %d texts, %d-dim embeddings", N_TEXTS, d);
    fill_row(&rows[0], name, max_row_error(a, b, N_TEXTS, d));
    snprintf(name, sizeof name, "image encoder: %d images %dx%d, %d-dim embeddings", N_IMAGES, S, S,
             d);
    fill_row(&rows[1], name,
             max_row_error(a + (size_t)N_TEXTS * d, b + (size_t)N_TEXTS * d, N_IMAGES, d));
done:
    pclip__free(ids);
    pclip__free(pixels);
    pclip__free(a);
    pclip__free(b);
    return st;
}
