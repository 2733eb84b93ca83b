/* Zero-shot classification and scoring (pclip_zeroshot_*) against the
 * PyTorch references in fixtures/zeroshot/tiny-clip.json (make_fixtures.py:
 * HF CLIPModel's logits_per_image and its softmax, with CLIP's prompt
 * ensemble), on the backend named by argv[1]; the bad-input refusals; and
 * --skip-bad's path through the batcher and the embed pipeline.
 *
 * Tolerance (fp32 against PyTorch's fp32, which agrees with fp64 to 1.1e-6):
 * |logit - ref| <= 1e-5 * max |ref logit| of the row + 1e-6, and
 * |prob - ref| <= 1e-5; the ranking must equal the reference's wherever two
 * reference probabilities differ by more than 2e-5. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h" /* pclip__alloc_fail_at */
#include "testutil.h"

#define LOGIT_REL_TOL 1e-5
#define PROB_ABS_TOL 1e-5
#define RANK_GAP 2e-5
#define MAX_IMAGES 16
#define MAX_CLASSES 16

static const char *backend = "cpu";
static int32_t test_device;
static pclip_ctx_t ctx;
static pclip_backend_t b;
static pclip_model_t model;
static cJSON *ref;

static void setup(void) {
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &model),
                     PCLIP_STATUS_OK);
    ref = pclip_test_load_json("zeroshot/tiny-clip.json");
}

static void teardown(void) {
    cJSON_Delete(ref);
    pclip_model_destroy(model);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}

/* ---- the reference ---- */

static int ref_strings(const char *key, const cJSON *obj, const char **out, int max) {
    const cJSON *a = cJSON_GetObjectItem(obj, key);
    int n = cJSON_GetArraySize(a);
    ck_assert_int_le(n, max);
    for (int i = 0; i < n; i++) out[i] = cJSON_GetArrayItem(a, i)->valuestring;
    return n;
}

/* Image paths of the reference, in a static store. */
static int ref_images(const char **paths) {
    static char store[MAX_IMAGES][512];
    const char *names[MAX_IMAGES];
    int n = ref_strings("images", ref, names, MAX_IMAGES);
    for (int i = 0; i < n; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "images/%s", names[i]);
        snprintf(store[i], sizeof store[i], "%s", pclip_test_fixture(rel));
        paths[i] = store[i];
    }
    return n;
}

/* What a zeroshot run gave, per input image. */
typedef struct results {
    int32_t count;
    int64_t n_calls, last_index;
    bool seen[MAX_IMAGES];
    float logits[MAX_IMAGES][MAX_CLASSES], probs[MAX_IMAGES][MAX_CLASSES];
} results;

static pclip_status collect(void *user, int64_t index, int32_t count, const float *logits,
                            const float *probs) {
    results *r = user;
    ck_assert_int_lt(index, MAX_IMAGES);
    ck_assert_int_le(count, MAX_CLASSES);
    ck_assert_msg(index > r->last_index, "images out of order: %lld after %lld", (long long)index,
                  (long long)r->last_index);
    r->last_index = index;
    r->count = count;
    r->n_calls++;
    r->seen[index] = true;
    memcpy(r->logits[index], logits, (size_t)count * sizeof *logits);
    memcpy(r->probs[index], probs, (size_t)count * sizeof *probs);
    return PCLIP_STATUS_OK;
}

/* Compares image `got_i` of r with reference row `ref_i` of {logits, probs}. */
static void check_row(const char *what, const results *r, int got_i, const cJSON *logits,
                      const cJSON *probs, int ref_i) {
    const cJSON *lrow = cJSON_GetArrayItem(logits, ref_i), *prow = cJSON_GetArrayItem(probs, ref_i);
    int n = cJSON_GetArraySize(lrow);
    ck_assert_int_eq(n, r->count);
    double lmax = 0.0;
    for (int j = 0; j < n; j++) lmax = fmax(lmax, fabs(cJSON_GetArrayItem(lrow, j)->valuedouble));
    double rsum = 0.0;
    for (int j = 0; j < n; j++) {
        double wl = cJSON_GetArrayItem(lrow, j)->valuedouble;
        double wp = cJSON_GetArrayItem(prow, j)->valuedouble;
        ck_assert_msg(fabs(r->logits[got_i][j] - wl) <= LOGIT_REL_TOL * lmax + 1e-6,
                      "%s on %s: image %d class %d: logit %.9g, reference %.9g", what, backend,
                      ref_i, j, r->logits[got_i][j], wl);
        ck_assert_msg(fabs(r->probs[got_i][j] - wp) <= PROB_ABS_TOL,
                      "%s on %s: image %d class %d: prob %.9g, reference %.9g", what, backend,
                      ref_i, j, r->probs[got_i][j], wp);
        rsum += r->probs[got_i][j];
    }
    ck_assert_double_eq_tol(rsum, 1.0, 1e-5);
    /* the ranking */
    int32_t order[MAX_CLASSES];
    pclip_zeroshot_rank(r->probs[got_i], n, order);
    for (int k = 1; k < n; k++) {
        double hi = cJSON_GetArrayItem(prow, order[k - 1])->valuedouble;
        double lo = cJSON_GetArrayItem(prow, order[k])->valuedouble;
        ck_assert_msg(hi >= lo - RANK_GAP, "%s on %s: image %d ranks class %d before %d", what,
                      backend, ref_i, order[k - 1], order[k]);
        ck_assert(r->probs[got_i][order[k - 1]] >= r->probs[got_i][order[k]]);
    }
}

/* ---- classify and score against PyTorch ---- */

START_TEST(test_classify_matches_pytorch) {
    const cJSON *cases = cJSON_GetObjectItem(ref, "classify");
    const cJSON *c = cJSON_GetArrayItem(cases, _i);
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const char *labels[MAX_CLASSES], *templates[8], *paths[MAX_IMAGES];
    int n_labels = ref_strings("labels", ref, labels, MAX_CLASSES);
    int n_templates = ref_strings("templates", c, templates, 8);
    int n = ref_images(paths);
    pclip_zeroshot_t z;
    /* "default" goes through the library's default template */
    bool use_default = strcmp(name, "default") == 0;
    if (use_default) ck_assert_str_eq(templates[0], PCLIP_ZEROSHOT_TEMPLATE_DEFAULT);
    ck_assert_status(ctx,
                     pclip_zeroshot_create_labels(model, b, labels, n_labels,
                                                  use_default ? NULL : templates,
                                                  use_default ? 0 : n_templates, &z),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip_zeroshot_class_count(z), n_labels);
    results *r = calloc(1, sizeof *r);
    r->last_index = -1;
    /* batches of 4: 9 images make three batches, the last one short */
    pclip_embed_options eo = {.batch_size = 4};
    ck_assert_status(ctx, pclip_zeroshot_image_files(z, paths, n, &eo, collect, r),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(r->n_calls, n);
    for (int i = 0; i < n; i++)
        check_row(name, r, i, cJSON_GetObjectItem(c, "logits"), cJSON_GetObjectItem(c, "probs"), i);
    /* the class embeddings are unit rows */
    const float *cls = pclip_zeroshot_class_embeddings(z);
    int32_t dim = pclip_model_config(model)->projection_dim;
    for (int j = 0; j < n_labels; j++) {
        double ss = 0.0;
        for (int k = 0; k < dim; k++) ss += (double)cls[j * dim + k] * cls[j * dim + k];
        ck_assert_double_eq_tol(ss, 1.0, 1e-5);
    }
    free(r);
    pclip_zeroshot_destroy(z);
}
END_TEST

static pclip_status keep_rows(void *user, int64_t first, int32_t count, int32_t dim,
                              const float *rows) {
    memcpy((float *)user + (size_t)first * dim, rows, (size_t)count * dim * sizeof *rows);
    return PCLIP_STATUS_OK;
}

START_TEST(test_score_matches_pytorch) {
    const cJSON *sc = cJSON_GetObjectItem(ref, "score");
    const char *texts[MAX_CLASSES], *paths[MAX_IMAGES];
    int n_texts = ref_strings("texts", sc, texts, MAX_CLASSES);
    int n = ref_images(paths);
    pclip_zeroshot_t z;
    ck_assert_status(ctx, pclip_zeroshot_create_texts(model, b, texts, n_texts, &z),
                     PCLIP_STATUS_OK);
    results *r = calloc(1, sizeof *r);
    r->last_index = -1;
    ck_assert_status(ctx, pclip_zeroshot_image_files(z, paths, n, NULL, collect, r),
                     PCLIP_STATUS_OK);
    for (int i = 0; i < n; i++)
        check_row("score", r, i, cJSON_GetObjectItem(sc, "logits"),
                  cJSON_GetObjectItem(sc, "probs"), i);
    /* the same text twice (texts 0 and 4) scores the same */
    for (int i = 0; i < n; i++) ck_assert_float_eq(r->logits[i][0], r->logits[i][4]);

    /* pclip_zeroshot_logits on embeddings gives the same numbers, whether the
     * rows are raw projections or normalised */
    int32_t dim = pclip_model_config(model)->projection_dim;
    float *emb = malloc((size_t)n * dim * sizeof *emb);
    float *logits = malloc((size_t)n * n_texts * sizeof *logits);
    float *probs = malloc((size_t)n * n_texts * sizeof *probs);
    for (int pass = 0; pass < 2; pass++) {
        pclip_embed_options eo = {.flags = pass ? PCLIP_ENCODE_NORMALIZE : 0};
        ck_assert_status(ctx, pclip_embed_image_files(model, b, paths, n, &eo, keep_rows, emb),
                         PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip_zeroshot_logits(z, emb, n, logits, probs), PCLIP_STATUS_OK);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n_texts; j++) {
                float l = logits[i * n_texts + j], p = probs[i * n_texts + j];
                ck_assert_float_eq_tol(l, r->logits[i][j], 1e-5f * (fabsf(l) + 1.0f));
                ck_assert_float_eq_tol(p, r->probs[i][j], 1e-6f);
            }
    }
    ck_assert_status(ctx, pclip_zeroshot_logits(z, emb, 0, NULL, NULL), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_zeroshot_logits(z, NULL, 1, logits, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    free(emb);
    free(logits);
    free(probs);
    free(r);
    pclip_zeroshot_destroy(z);
}
END_TEST

/* ---- bad input ---- */

START_TEST(test_bad_labels_and_templates) {
    pclip_zeroshot_t z = (pclip_zeroshot_t)&z; /* must stay untouched on failure */
    pclip_zeroshot_t before = z;
    const char *two[] = {"cat", "dog"}, *dup[] = {"cat", "dog", "cat"}, *empty[] = {"cat", ""};
    const char *none[] = {"a photo"}, *twice[] = {"a {} and a {}"}, *ok[] = {"a {}"};
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, b, two, 0, NULL, 0, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "label list is empty"));
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, b, dup, 3, NULL, 0, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "\"cat\" is given twice (labels 1 and 3)"));
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, b, empty, 2, NULL, 0, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "label 2 is empty"));
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, b, two, 2, none, 1, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "\"a photo\" has no {}"));
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, b, two, 2, twice, 1, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "more than one {}"));
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, b, two, 2, ok, 0, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "template list is empty"));
    ck_assert_status(ctx, pclip_zeroshot_create_texts(model, b, two, 0, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    const char *bad_utf8[] = {"caf\xe9"};
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, b, bad_utf8, 1, ok, 1, &z),
                     PCLIP_STATUS_BAD_TEXT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "prompt 1"));
    ck_assert_ptr_eq(z, before);
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, NULL, two, 2, NULL, 0, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(pclip_zeroshot_create_labels(NULL, b, two, 2, NULL, 0, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    /* a model without weights */
    pclip_model_t tok_only;
    ck_assert_status(ctx,
                     pclip_model_load_parts(ctx, pclip_test_fixture("tiny-clip"),
                                            PCLIP_MODEL_PART_TOKENIZER, &tok_only),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_zeroshot_create_texts(tok_only, b, two, 2, &z),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "without its weights"));
    pclip_model_destroy(tok_only);
    ck_assert_ptr_eq(z, before);
    pclip_zeroshot_destroy(NULL);
    ck_assert_int_eq(pclip_zeroshot_class_count(NULL), 0);
}
END_TEST

/* ---- bad files: stop, or skip with --skip-bad ---- */

typedef struct skips {
    int n;
    int64_t index[MAX_IMAGES];
    char message[MAX_IMAGES][256];
} skips;

static void on_skip(void *user, const pclip_image_failure *f) {
    skips *s = user;
    ck_assert_int_lt(s->n, MAX_IMAGES);
    s->index[s->n] = f->index;
    snprintf(s->message[s->n], sizeof s->message[0], "%s", f->message);
    ck_assert_ptr_nonnull(strstr(f->message, f->path));
    ck_assert_int_ne(f->status, PCLIP_STATUS_OK);
    s->n++;
}

START_TEST(test_skip_bad_files) {
    const char *texts[] = {"a photo of a cat", "a dog"};
    pclip_zeroshot_t z;
    ck_assert_status(ctx, pclip_zeroshot_create_texts(model, b, texts, 2, &z), PCLIP_STATUS_OK);
    const char *good[MAX_IMAGES];
    ck_assert_int_ge(ref_images(good), 3);
    char g0[512], g1[512], g2[512], bad0[512], bad1[512], bad2[512];
    snprintf(g0, sizeof g0, "%s", good[0]);
    snprintf(g1, sizeof g1, "%s", good[1]);
    snprintf(g2, sizeof g2, "%s", good[2]);
    snprintf(bad0, sizeof bad0, "%s", pclip_test_fixture("bad/text.txt"));
    snprintf(bad1, sizeof bad1, "%s", pclip_test_fixture("bad/truncated.jpg"));
    snprintf(bad2, sizeof bad2, "%s", pclip_test_fixture("no-such-file.png"));
    /* batches of 2: [bad0 g0] [bad1 bad2] (every file fails) [g1 g2] */
    const char *paths[] = {bad0, g0, bad1, bad2, g1, g2};
    /* without skip: the first bad file stops the run, naming it */
    results *r = calloc(1, sizeof *r);
    r->last_index = -1;
    pclip_embed_options eo = {.batch_size = 2};
    pclip_status st = pclip_zeroshot_image_files(z, paths, 6, &eo, collect, r);
    ck_assert_int_ne(st, PCLIP_STATUS_OK);
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), bad0), "%s", pclip_ctx_last_error(ctx));
    ck_assert_int_eq(r->n_calls, 0);
    /* with skip: the good ones, at their input index, equal to a clean run */
    skips s = {0};
    memset(r, 0, sizeof *r);
    r->last_index = -1;
    eo.skip = on_skip;
    eo.skip_user = &s;
    ck_assert_status(ctx, pclip_zeroshot_image_files(z, paths, 6, &eo, collect, r),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(s.n, 3);
    ck_assert_int_eq(s.index[0], 0);
    ck_assert_int_eq(s.index[1], 2);
    ck_assert_int_eq(s.index[2], 3);
    ck_assert_int_eq(r->n_calls, 3);
    ck_assert(r->seen[1] && r->seen[4] && r->seen[5]);
    results *clean = calloc(1, sizeof *clean);
    clean->last_index = -1;
    const char *good3[] = {g0, g1, g2};
    ck_assert_status(ctx, pclip_zeroshot_image_files(z, good3, 3, NULL, collect, clean),
                     PCLIP_STATUS_OK);
    const int at[] = {1, 4, 5};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            ck_assert_float_eq_tol(r->logits[at[i]][j], clean->logits[i][j], 1e-5f);
            ck_assert_float_eq_tol(r->probs[at[i]][j], clean->probs[i][j], 1e-6f);
        }
    free(clean);
    free(r);
    pclip_zeroshot_destroy(z);
}
END_TEST

/* The batcher on its own with skip_bad: packed rows, their indices, the
 * failures, and a batch where every file fails (count 0, pixels not NULL). */
START_TEST(test_batcher_skip_bad) {
    const char *good[MAX_IMAGES];
    ck_assert_int_ge(ref_images(good), 2);
    char g0[512], g1[512], bad[512];
    snprintf(g0, sizeof g0, "%s", good[0]);
    snprintf(g1, sizeof g1, "%s", good[1]);
    snprintf(bad, sizeof bad, "%s", pclip_test_fixture("bad/garbage.jpg"));
    const char *paths[] = {bad, g0, bad, bad, g1};
    const pclip_image_config *ic = pclip_model_image_config(model);
    size_t per = (size_t)3 * ic->crop_height * ic->crop_width;
    /* the reference pixels of g0 and g1, one at a time */
    float *want = malloc(2 * per * sizeof *want);
    for (int i = 0; i < 2; i++) {
        pclip_image *img;
        ck_assert_status(ctx, pclip_image_load(ctx, i ? g1 : g0, &img), PCLIP_STATUS_OK);
        ck_assert_status(ctx,
                         pclip_image_preprocess(ctx, img, ic, PCLIP_PREPROCESS_OPENAI,
                                                want + i * per),
                         PCLIP_STATUS_OK);
        pclip_image_destroy(img);
    }
    pclip_image_batcher_options bo = {.batch_size = 2, .threads = 2, .skip_bad = 1};
    pclip_image_batcher_t bt;
    ck_assert_status(ctx, pclip_image_batcher_create(ctx, paths, 5, ic, &bo, &bt),
                     PCLIP_STATUS_OK);
    int64_t first;
    int32_t count, nf;
    const float *px;
    /* [bad g0] */
    ck_assert_status(ctx, pclip_image_batcher_next(bt, &first, &count, &px), PCLIP_STATUS_OK);
    ck_assert_int_eq(first, 0);
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(pclip_image_batcher_indices(bt)[0], 1);
    const pclip_image_failure *f = pclip_image_batcher_failures(bt, &nf);
    ck_assert_int_eq(nf, 1);
    ck_assert_int_eq(f[0].index, 0);
    ck_assert_str_eq(f[0].path, bad);
    ck_assert_ptr_nonnull(strstr(f[0].message, bad));
    ck_assert_mem_eq(px, want, per * sizeof *px);
    /* [bad bad]: nothing kept, not the end */
    ck_assert_status(ctx, pclip_image_batcher_next(bt, &first, &count, &px), PCLIP_STATUS_OK);
    ck_assert_int_eq(first, 2);
    ck_assert_int_eq(count, 0);
    ck_assert_ptr_nonnull(px);
    pclip_image_batcher_failures(bt, &nf);
    ck_assert_int_eq(nf, 2);
    /* [g1] */
    ck_assert_status(ctx, pclip_image_batcher_next(bt, &first, &count, &px), PCLIP_STATUS_OK);
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(pclip_image_batcher_indices(bt)[0], 4);
    ck_assert_ptr_null(pclip_image_batcher_failures(bt, &nf));
    ck_assert_int_eq(nf, 0);
    ck_assert_mem_eq(px, want + per, per * sizeof *px);
    /* the end */
    ck_assert_status(ctx, pclip_image_batcher_next(bt, &first, &count, &px), PCLIP_STATUS_OK);
    ck_assert_int_eq(count, 0);
    ck_assert_ptr_null(px);
    pclip_image_batcher_destroy(bt);
    free(want);
}
END_TEST

START_TEST(test_lines_write) {
    char path[1024];
    snprintf(path, sizeof path, "%s/lines.txt", pclip_test_tmpdir());
    const char *lines[] = {"a", "", "caf\xc3\xa9 \"x\""};
    ck_assert_status(ctx, pclip_lines_write(ctx, path, lines, 3), PCLIP_STATUS_OK);
    char *got = pclip_test_read_file(path, NULL);
    ck_assert_str_eq(got, "a\n\ncaf\xc3\xa9 \"x\"\n");
    free(got);
    const char *broken[] = {"ok", "two\nlines"};
    ck_assert_status(ctx, pclip_lines_write(ctx, path, broken, 2), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(pclip_ctx_last_error(ctx), "line 2"));
    got = pclip_test_read_file(path, NULL); /* left as it was */
    ck_assert_str_eq(got, "a\n\ncaf\xc3\xa9 \"x\"\n");
    free(got);
}
END_TEST

/* Allocation N fails, for N = 1, 2, ... while making the classes of an
 * ensemble and scoring embeddings (single-threaded; the image pipeline's
 * walk is check_robust's): each failure is a clean OUT_OF_MEMORY with a
 * message and no object; the first run that meets no failure gives the
 * clean run's classes. No leak (LeakSanitizer) and no crash. */
START_TEST(test_alloc_fail_walk) {
    const char *labels[] = {"cat", "dog", "tree"};
    const char *templates[] = {"a photo of a {}.", "a drawing of a {}."};
    pclip_zeroshot_t clean;
    ck_assert_status(ctx, pclip_zeroshot_create_labels(model, b, labels, 3, templates, 2, &clean),
                     PCLIP_STATUS_OK);
    int32_t dim = pclip_model_config(model)->projection_dim;
    long n, failures = 0;
    for (n = 1; n < 100000; n++) {
        pclip_zeroshot_t z = NULL;
        pclip__alloc_fail_at(n);
        pclip_status st = pclip_zeroshot_create_labels(model, b, labels, 3, templates, 2, &z);
        bool fired = pclip__alloc_fail_pending() == 0;
        pclip__alloc_fail_at(0);
        if (st == PCLIP_STATUS_OK) {
            ck_assert_msg(!fired, "allocation %ld failed, yet create_labels returned OK", n);
            ck_assert_mem_eq(pclip_zeroshot_class_embeddings(z),
                             pclip_zeroshot_class_embeddings(clean), (size_t)3 * dim * sizeof(float));
            pclip_zeroshot_destroy(z);
            break;
        }
        failures++;
        ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY, "allocation %ld: %s (%s)", n,
                      pclip_status_name(st), pclip_ctx_last_error(ctx));
        ck_assert_msg(pclip_ctx_last_error(ctx)[0], "allocation %ld: no message", n);
        ck_assert_ptr_null(z);
    }
    ck_assert_int_lt(n, 100000);
    ck_assert_int_gt(failures, 3);
    pclip_zeroshot_destroy(clean);
}
END_TEST

int main(int argc, char **argv) {
    int arg = pclip_test_backend_args(argc, argv, &backend, &test_device);
    if (arg < argc) {
        fprintf(stderr, "usage: check_classify [cpu|vulkan|opencl]\n");
        return 2;
    }
    pclip_test_probe_backend("check_classify", backend, test_device);
    Suite *s = suite_create("classify");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_set_timeout(core, 300);
    tcase_add_loop_test(core, test_classify_matches_pytorch, 0, 3);
    tcase_add_test(core, test_score_matches_pytorch);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_set_timeout(limits, 300);
    tcase_add_test(limits, test_bad_labels_and_templates);
    tcase_add_test(limits, test_skip_bad_files);
    if (strcmp(backend, "cpu") == 0) {
        tcase_add_test(limits, test_batcher_skip_bad);
        tcase_add_test(limits, test_lines_write);
        tcase_add_test(limits, test_alloc_fail_walk);
    }
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
