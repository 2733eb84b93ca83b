/* The CLIP encoders end to end against the PyTorch references written by
 * tests/fixtures/make_fixtures.py: pooled features, projections and
 * logits_per_image of the tiny checkpoints (F32, legacy pooling, F16, BF16,
 * GELU), on every CPU device. Tolerance: relative error per row <= 1e-5
 * (so cosine >= 0.99999), the bound for fp32. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

#define ROW_REL_TOL 1e-5

static const char *const variants[] = {"tiny-clip", "tiny-clip-legacy", "tiny-clip-f16",
                                       "tiny-clip-bf16", "tiny-clip-gelu"};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

/* CPU fast path and CPU reference. */
#define N_DEVICES 2

static pclip_ctx_t ctx;
static void setup(void) { ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK); }
static void teardown(void) { pclip_ctx_destroy(ctx); }

static cJSON *load_json(const char *rel) {
    char *text = pclip_test_read_file(pclip_test_fixture(rel), NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "cannot parse %s", rel);
    return j;
}

static void load_ref(const char *variant, const char *file, pclip_test_npy *out) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/reference/%s", variant, file);
    pclip_test_npy_read(pclip_test_fixture(rel), out);
}

/* Compares rows of got [rows, cols] with the reference, row by row. */
static void expect_rows(const char *what, const char *variant, int device, const float *got,
                        const pclip_test_npy *want) {
    int64_t rows = want->shape[0], cols = want->shape[1];
    for (int64_t r = 0; r < rows; r++) {
        double diff = 0, norm = 0, dot = 0, gn = 0;
        for (int64_t c = 0; c < cols; c++) {
            double a = got[r * cols + c], b = want->data[r * cols + c];
            diff += (a - b) * (a - b);
            norm += b * b;
            dot += a * b;
            gn += a * a;
        }
        double rel = sqrt(diff / (norm > 0 ? norm : 1));
        double cos = dot / sqrt((gn > 0 ? gn : 1) * (norm > 0 ? norm : 1));
        ck_assert_msg(rel <= ROW_REL_TOL && isfinite(rel),
                      "%s, cpu device %d, %s row %lld: relative error %.3g (cosine %.9f)", variant,
                      device, what, (long long)r, rel, cos);
    }
}

/* The token rows of the reference captions, from the model's own tokenizer. */
static int32_t *reference_ids(pclip_model_t m, cJSON *ref, int32_t *n_out) {
    cJSON *caps = cJSON_GetObjectItem(ref, "captions");
    int32_t n = cJSON_GetArraySize(caps);
    int32_t ctx_len = pclip_model_config(m)->text.max_position_embeddings;
    int32_t *ids = malloc((size_t)n * (size_t)ctx_len * sizeof *ids);
    int32_t i = 0;
    for (cJSON *c = caps->child; c; c = c->next, i++)
        ck_assert_status(ctx,
                         pclip_tokenizer_encode(pclip_model_tokenizer(m), c->valuestring,
                                                strlen(c->valuestring), ids + (size_t)i * ctx_len,
                                                ctx_len, NULL),
                         PCLIP_STATUS_OK);
    *n_out = n;
    return ids;
}

/* The reference images' pixel rows. */
static float *reference_pixels(pclip_model_t m, cJSON *ref, int32_t *n_out) {
    pclip_test_npy px;
    pclip_test_npy_read(pclip_test_fixture(cJSON_GetObjectItem(ref, "pixels")->valuestring), &px);
    cJSON *rows = cJSON_GetObjectItem(ref, "pixel_rows");
    int32_t n = cJSON_GetArraySize(rows);
    int32_t S = pclip_model_config(m)->vision.image_size;
    size_t per = (size_t)3 * S * S;
    ck_assert_int_eq(px.shape[2], S);
    float *out = malloc((size_t)n * per * sizeof *out);
    int32_t i = 0;
    for (cJSON *r = rows->child; r; r = r->next, i++)
        memcpy(out + (size_t)i * per, px.data + (size_t)r->valueint * per, per * sizeof *out);
    pclip_test_npy_free(&px);
    *n_out = n;
    return out;
}

START_TEST(test_matches_pytorch) {
    const char *variant = variants[_i / N_DEVICES];
    int device = _i % N_DEVICES;
    char rel[256];
    snprintf(rel, sizeof rel, "%s/reference/reference.json", variant);
    cJSON *ref = load_json(rel);
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture(variant), &m), PCLIP_STATUS_OK);
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", device, &b), PCLIP_STATUS_OK);
    const pclip_config *c = pclip_model_config(m);

    int32_t nt, ni;
    int32_t *ids = reference_ids(m, ref, &nt);
    float *pixels = reference_pixels(m, ref, &ni);
    float *tp = malloc((size_t)nt * c->text.hidden_size * sizeof(float));
    float *te = malloc((size_t)nt * c->projection_dim * sizeof(float));
    float *tn = malloc((size_t)nt * c->projection_dim * sizeof(float));
    float *ip = malloc((size_t)ni * c->vision.hidden_size * sizeof(float));
    float *ie = malloc((size_t)ni * c->projection_dim * sizeof(float));
    float *in = malloc((size_t)ni * c->projection_dim * sizeof(float));
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, nt, PCLIP_ENCODE_POOLED, tp),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, nt, 0, te), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, nt, PCLIP_ENCODE_NORMALIZE, tn),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images(m, b, pixels, ni, PCLIP_ENCODE_POOLED, ip),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images(m, b, pixels, ni, 0, ie), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images(m, b, pixels, ni, PCLIP_ENCODE_NORMALIZE, in),
                     PCLIP_STATUS_OK);

    pclip_test_npy want;
    load_ref(variant, "text_pooled.npy", &want);
    expect_rows("text_pooled", variant, device, tp, &want);
    pclip_test_npy_free(&want);
    load_ref(variant, "text_embeds.npy", &want);
    expect_rows("text_embeds", variant, device, te, &want);
    pclip_test_npy_free(&want);
    load_ref(variant, "image_pooled.npy", &want);
    expect_rows("image_pooled", variant, device, ip, &want);
    pclip_test_npy_free(&want);
    load_ref(variant, "image_embeds.npy", &want);
    expect_rows("image_embeds", variant, device, ie, &want);
    pclip_test_npy_free(&want);

    /* logits_per_image = exp(logit_scale) * cos(image, text) */
    float scale = expf(pclip_model_logit_scale(m));
    ck_assert_float_eq_tol(pclip_model_logit_scale(m),
                           (float)cJSON_GetObjectItem(ref, "logit_scale")->valuedouble, 1e-6f);
    float *logits = malloc((size_t)ni * nt * sizeof(float));
    for (int32_t i = 0; i < ni; i++)
        for (int32_t t = 0; t < nt; t++) {
            float dot = 0;
            for (int32_t k = 0; k < c->projection_dim; k++)
                dot +=
                    in[(size_t)i * c->projection_dim + k] * tn[(size_t)t * c->projection_dim + k];
            logits[(size_t)i * nt + t] = scale * dot;
        }
    load_ref(variant, "logits_per_image.npy", &want);
    expect_rows("logits_per_image", variant, device, logits, &want);
    pclip_test_npy_free(&want);

    free(logits);
    free(ids);
    free(pixels);
    free(tp), free(te), free(tn), free(ip), free(ie), free(in);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    cJSON_Delete(ref);
}
END_TEST

/* Encoding a caption alone (short sequence) and beside a long one (full
 * sequence) must agree: the causal truncation is exact. Batch sizes and
 * row positions do not matter either. */
START_TEST(test_truncation_and_batching_exact) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &b), PCLIP_STATUS_OK);
    const char *texts[] = {"a photo of a cat",
                           "a very long caption that goes on and on about many different things "
                           "in a long list of words until the tokenizer has to cut it off at the "
                           "context length of seventy seven tokens which this one surely reaches "
                           "because it keeps going and going and going and going and going"};
    int32_t ids[3 * 77];
    for (int i = 0; i < 2; i++)
        ck_assert_status(ctx,
                         pclip_tokenizer_encode(pclip_model_tokenizer(m), texts[i],
                                                strlen(texts[i]), ids + i * 77, 77, NULL),
                         PCLIP_STATUS_OK);
    memcpy(ids + 2 * 77, ids, 77 * sizeof(int32_t));
    int32_t d = pclip_model_config(m)->projection_dim;
    float alone[64], batch[3 * 64];
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 1, 0, alone), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 3, 0, batch), PCLIP_STATUS_OK);
    for (int32_t k = 0; k < d; k++) {
        ck_assert_float_eq_tol(alone[k], batch[k], 1e-6f * (fabsf(alone[k]) + 1e-3f));
        ck_assert_float_eq_tol(alone[k], batch[2 * d + k], 1e-6f * (fabsf(alone[k]) + 1e-3f));
    }
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
}
END_TEST

/* The fast device packs the weights and gives the checkpoint's pages back;
 * a reference device, a second fast device and new batch sizes compiled
 * afterwards read the weights again from the file map and must agree with
 * PyTorch all the same. */
START_TEST(test_weights_after_release) {
    cJSON *ref = load_json("tiny-clip/reference/reference.json");
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    pclip_backend_t fast, slow, fast2;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &fast), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &slow), PCLIP_STATUS_OK);
    int32_t nt, ni;
    int32_t *ids = reference_ids(m, ref, &nt);
    float *pixels = reference_pixels(m, ref, &ni);
    int32_t d = pclip_model_config(m)->projection_dim;
    float *te = malloc((size_t)nt * d * sizeof(float)),
          *ie = malloc((size_t)ni * d * sizeof(float));
    pclip_test_npy want_t, want_i;
    load_ref("tiny-clip", "text_embeds.npy", &want_t);
    load_ref("tiny-clip", "image_embeds.npy", &want_i);
    for (int step = 0; step < 3; step++) {
        pclip_backend_t b = step == 1 ? slow : fast;
        if (step == 2) { /* the first fast device is gone with its packed weights */
            pclip_backend_destroy(fast);
            ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &fast2), PCLIP_STATUS_OK);
            b = fast2;
        }
        ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, nt, 0, te), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip_model_encode_images(m, b, pixels, ni, 0, ie), PCLIP_STATUS_OK);
        expect_rows("text_embeds", "tiny-clip", step == 1, te, &want_t);
        expect_rows("image_embeds", "tiny-clip", step == 1, ie, &want_i);
        /* one row alone: a graph of another batch size, compiled now */
        ck_assert_status(ctx, pclip_model_encode_images(m, b, pixels, 1, 0, ie), PCLIP_STATUS_OK);
        for (int32_t k = 0; k < d; k++)
            ck_assert_float_eq_tol(ie[k], want_i.data[k], 1e-5f * (fabsf(want_i.data[k]) + 1e-3f));
    }
    pclip_test_npy_free(&want_t);
    pclip_test_npy_free(&want_i);
    free(te);
    free(ie);
    free(ids);
    free(pixels);
    pclip_model_destroy(m);
    pclip_backend_destroy(slow);
    pclip_backend_destroy(fast2);
    cJSON_Delete(ref);
}
END_TEST

START_TEST(test_encode_errors) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    int32_t ids[77] = {864, 5, 100000, 865};
    float out[24];
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 1, 0, out),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), "100000"), "%s", pclip_ctx_last_error(ctx));
    ck_assert_status(ctx, pclip_model_encode_text(m, b, NULL, 1, 0, out),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    /* zero rows is fine and writes nothing */
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 0, 0, out), PCLIP_STATUS_OK);
    /* a model loaded without weights cannot encode */
    pclip_model_t cfg_only;
    ck_assert_status(ctx,
                     pclip_model_load_parts(ctx, pclip_test_fixture("tiny-clip"), 0, &cfg_only),
                     PCLIP_STATUS_OK);
    ids[2] = 7;
    ck_assert_status(ctx, pclip_model_encode_text(cfg_only, b, ids, 1, 0, out),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), "without its weights"), "%s",
                  pclip_ctx_last_error(ctx));
    pclip_model_destroy(cfg_only);
    /* destroying the backend first drops the model's graphs compiled on it */
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 1, 0, out), PCLIP_STATUS_OK);
    pclip_backend_destroy(b);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 1, 0, out), PCLIP_STATUS_OK);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
}
END_TEST

START_TEST(test_backend_selection) {
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 5, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), "device 5"), "%s", pclip_ctx_last_error(ctx));
    ck_assert_status(ctx, pclip_backend_create(ctx, "cuda", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), "cuda"), "%s", pclip_ctx_last_error(ctx));
    ck_assert_status(ctx, pclip_backend_create(ctx, "auto", 0, &b), PCLIP_STATUS_OK);
    pclip_backend_destroy(b);
    setenv("PORTCLIP_BACKEND", "cpu", 1);
    setenv("PORTCLIP_DEVICE", "1", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, NULL, -1, &b), PCLIP_STATUS_OK);
    ck_assert_str_eq(pclip_backend_name(b), "cpu");
    ck_assert_ptr_nonnull(strstr(pclip_backend_device_name(b), "reference"));
    pclip_backend_destroy(b);
    setenv("PORTCLIP_DEVICE", "x", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, NULL, -1, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), "PORTCLIP_DEVICE"), "%s",
                  pclip_ctx_last_error(ctx));
    unsetenv("PORTCLIP_DEVICE");
    setenv("PORTCLIP_BACKEND", "nope", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, NULL, -1, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), "PORTCLIP_BACKEND 'nope'"), "%s",
                  pclip_ctx_last_error(ctx));
    unsetenv("PORTCLIP_BACKEND");
    pclip_device_desc devs[16];
    int32_t n;
    ck_assert_status(ctx, pclip_devices_list(ctx, devs, 16, &n), PCLIP_STATUS_OK);
    ck_assert_int_ge(n, 2);
    ck_assert_str_eq(devs[0].backend, "cpu");
    ck_assert_int_eq(devs[0].usable, 1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("encoders");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_set_timeout(core, 300);
    tcase_add_loop_test(core, test_matches_pytorch, 0, N_VARIANTS * N_DEVICES);
    tcase_add_test(core, test_truncation_and_batching_exact);
    tcase_add_test(core, test_weights_after_release);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_add_test(limits, test_encode_errors);
    tcase_add_test(limits, test_backend_selection);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
