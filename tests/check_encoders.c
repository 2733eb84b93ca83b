/* The CLIP encoders end to end on one backend against the PyTorch references
 * written by tests/fixtures/make_fixtures.py: pooled features, projections
 * and logits_per_image of the tiny checkpoints (F32, legacy pooling, F16,
 * BF16, GELU, and the image sizes users run: 224 px with 32 px patches, 50
 * tokens; 336 px with 14 px patches, 577 tokens, GELU, F16), and every output
 * kind against the CPU reference device.
 * Tolerance: relative error per row <= 1e-5 (so cosine >= 0.99999), the
 * issue's bound for fp32.
 *
 *   check_encoders cpu|vulkan|opencl
 *
 * On the CPU both devices (fast and reference) are tested; elsewhere device
 * PORTCLIP_DEVICE (default 0). CTest registers check_encoders_<backend>; a
 * backend this machine cannot open prints "skipped: <backend>: <reason>" and
 * exits 77. The CPU's weight release and backend selection run with cpu. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

#define ROW_REL_TOL 1e-5

static const char *const variants[] = {"tiny-clip",      "tiny-clip-legacy", "tiny-clip-f16",
                                       "tiny-clip-bf16", "tiny-clip-gelu",   "tiny-clip-224",
                                       "tiny-clip-336"};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

static const char *backend = "cpu"; /* under test */
static int32_t test_device = 0;
/* devices tested: on the CPU the fast path (0) and the reference (1) */
static int n_devices = 1;

static pclip_ctx_t ctx;
static void setup(void) { ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK); }
static void teardown(void) { pclip_ctx_destroy(ctx); }

static void load_ref(const char *variant, const char *file, pclip_test_npy *out) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/reference/%s", variant, file);
    pclip_test_npy_read(pclip_test_fixture(rel), out);
}

/* Compares got [rows, cols] with want row by row; `against` names want. */
static void expect_rows(const char *what, const char *variant, int device, const char *against,
                        const float *got, const float *want, int64_t rows, int64_t cols) {
    int64_t row;
    double rel = pclip_test_row_error(got, want, rows, cols, &row);
    ck_assert_msg(rel <= ROW_REL_TOL,
                  "%s, %s device %d, %s row %lld against %s: relative error %.3g", variant, backend,
                  device, what, (long long)row, against, rel);
}

/* Compares got with the PyTorch reference <variant>/reference/<file>. */
static void expect_ref(const char *what, const char *variant, int device, const float *got,
                       const char *file) {
    pclip_test_npy want;
    load_ref(variant, file, &want);
    expect_rows(what, variant, device, "PyTorch", got, want.data, want.shape[0], want.shape[1]);
    pclip_test_npy_free(&want);
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

/* Both encoders on the reference captions and images, every output kind:
 * against PyTorch where it wrote the output, and against the CPU reference
 * device; logits_per_image from the normalised embeddings. */
START_TEST(test_matches_pytorch) {
    const char *variant = variants[_i / n_devices];
    int device = strcmp(backend, "cpu") == 0 ? _i % n_devices : test_device;
    char rel[256];
    snprintf(rel, sizeof rel, "%s/reference/reference.json", variant);
    cJSON *ref = pclip_test_load_json(rel);
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture(variant), &m), PCLIP_STATUS_OK);
    pclip_backend_t b, cpu;
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, device, &b), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &cpu), PCLIP_STATUS_OK);
    const pclip_config *c = pclip_model_config(m);
    int32_t nt, ni;
    int32_t *ids = reference_ids(m, ref, &nt);
    float *pixels = reference_pixels(m, ref, &ni);

    const int32_t P = c->projection_dim, WT = c->text.hidden_size, WV = c->vision.hidden_size;
    struct {
        const char *what, *file;
        int text;
        uint32_t flags;
        int32_t width;
    } outs[] = {{"text_pooled", "text_pooled.npy", 1, PCLIP_ENCODE_POOLED, WT},
                {"text_embeds", "text_embeds.npy", 1, 0, P},
                {"text_normalized", NULL, 1, PCLIP_ENCODE_NORMALIZE, P},
                {"image_pooled", "image_pooled.npy", 0, PCLIP_ENCODE_POOLED, WV},
                {"image_embeds", "image_embeds.npy", 0, 0, P},
                {"image_normalized", NULL, 0, PCLIP_ENCODE_NORMALIZE, P}};
    float *tn = NULL, *in = NULL; /* [nt, P], [ni, P] */
    for (size_t o = 0; o < sizeof outs / sizeof outs[0]; o++) {
        int32_t n = outs[o].text ? nt : ni;
        float *got = malloc((size_t)n * outs[o].width * sizeof(float));
        float *want = malloc((size_t)n * outs[o].width * sizeof(float));
        for (int be = 0; be < 2; be++) {
            pclip_backend_t on = be ? cpu : b;
            float *dst = be ? want : got;
            pclip_status st = outs[o].text
                                  ? pclip_model_encode_text(m, on, ids, n, outs[o].flags, dst)
                                  : pclip_model_encode_images(m, on, pixels, n, outs[o].flags, dst);
            ck_assert_status(ctx, st, PCLIP_STATUS_OK);
        }
        if (outs[o].file) expect_ref(outs[o].what, variant, device, got, outs[o].file);
        expect_rows(outs[o].what, variant, device, "the CPU reference", got, want, n,
                    outs[o].width);
        free(want);
        if (outs[o].flags == PCLIP_ENCODE_NORMALIZE)
            *(outs[o].text ? &tn : &in) = got;
        else
            free(got);
    }

    /* logits_per_image = exp(logit_scale) * cos(image, text) */
    float scale = expf(pclip_model_logit_scale(m));
    ck_assert_float_eq_tol(pclip_model_logit_scale(m),
                           (float)cJSON_GetObjectItem(ref, "logit_scale")->valuedouble, 1e-6f);
    float *logits = malloc((size_t)ni * nt * sizeof(float));
    for (int32_t i = 0; i < ni; i++)
        for (int32_t t = 0; t < nt; t++) {
            float dot = 0;
            for (int32_t k = 0; k < P; k++) dot += in[(size_t)i * P + k] * tn[(size_t)t * P + k];
            logits[(size_t)i * nt + t] = scale * dot;
        }
    expect_ref("logits_per_image", variant, device, logits, "logits_per_image.npy");

    free(logits);
    free(ids);
    free(pixels);
    free(tn), free(in);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    pclip_backend_destroy(cpu);
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
    ck_assert_status(
        ctx, pclip_backend_create(ctx, backend, strcmp(backend, "cpu") ? test_device : 1, &b),
        PCLIP_STATUS_OK);
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
    cJSON *ref = pclip_test_load_json("tiny-clip/reference/reference.json");
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
        expect_rows("text_embeds", "tiny-clip", step == 1, "PyTorch", te, want_t.data,
                    want_t.shape[0], want_t.shape[1]);
        expect_rows("image_embeds", "tiny-clip", step == 1, "PyTorch", ie, want_i.data,
                    want_i.shape[0], want_i.shape[1]);
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
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
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
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
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

int main(int argc, char **argv) {
    int arg = pclip_test_backend_args(argc, argv, &backend, &test_device);
    if (arg < argc) {
        fprintf(stderr, "usage: check_encoders [cpu|vulkan|opencl]\n");
        return 2;
    }
    const bool cpu = strcmp(backend, "cpu") == 0;
    if (cpu) n_devices = 2;
    pclip_test_probe_backend("check_encoders", backend, test_device);
    Suite *s = suite_create("encoders");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_set_timeout(core, 600);
    tcase_add_loop_test(core, test_matches_pytorch, 0, N_VARIANTS * n_devices);
    tcase_add_test(core, test_truncation_and_batching_exact);
    if (cpu) tcase_add_test(core, test_weights_after_release);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_add_test(limits, test_encode_errors);
    if (cpu) tcase_add_test(limits, test_backend_selection);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
