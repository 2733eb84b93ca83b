/* Projection-head training on the backend named by argv[1]:
 *   - the training step (heads' forward, contrastive loss, gradients, AdamW)
 *     against the PyTorch reference of tests/fixtures/train (make_fixtures.py:
 *     cached tiny-clip features, full batch, no shuffle, constant rate), for
 *     both head kinds: every loss and every final tensor;
 *   - `portclip train` end to end on the reference's pairs: the log's losses
 *     against the reference, the model directory loads back;
 *   - resume: a run stopped after step 4 and resumed gives the bytes of an
 *     uninterrupted run (log and result); the held-out recall it reports
 *     equals one computed here in double from the written head, the cached
 *     features and the same split;
 *   - a loss that becomes NaN stops the run, keeping the checkpoint; bad data
 *     files are refused, missing images skipped (--strict: refused).
 * Tolerances: losses within 1e-5 relative, each tensor's largest difference
 * within 1e-5 of its largest magnitude (fp32 against fp32; six AdamW steps). */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "testutil.h"
#include "model/head.h"
#include "train/features.h"
#include "train/heads.h"

#define LOSS_REL_TOL 1e-5
#define TENSOR_REL_TOL 1e-5

static const char *backend = "cpu";
static int32_t test_device;
static pclip_ctx_t ctx;
static pclip_backend_t b;

static void setup(void) {
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
}

static void teardown(void) {
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}

/* A whole tensor of a safetensors file as float32 (caller frees). */
static float *st_tensor(pclip__st_file *f, const char *name, int64_t *count) {
    const pclip__st_tensor *t = pclip__st_find(f, name);
    ck_assert_msg(t != NULL, "'%s' has no tensor '%s'", f->path, name);
    float *v = malloc((t->count ? t->count : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    ck_assert_status(ctx, pclip__st_to_f32(ctx, t, v), PCLIP_STATUS_OK);
    if (count) *count = (int64_t)t->count;
    return v;
}

/* Largest |got - want| over the largest |want|. */
static double tensor_rel_err(const float *got, const float *want, int64_t n) {
    double err = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= err)) err = d;
        if (fabs(want[i]) > mag) mag = fabs(want[i]);
    }
    return err / (mag > 0 ? mag : 1);
}

static double json_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "reference has no number '%s'", key);
    return v->valuedouble;
}

/* ---- the training step against PyTorch ---- */

static void check_reference(int kind) {
    const char *what = kind ? "mlp" : "linear";
    char rel[64];
    snprintf(rel, sizeof rel, "train/%s.json", what);
    cJSON *ref = pclip_test_load_json(rel);
    pclip__st_file *feat = NULL, *init = NULL, *fin = NULL;
    ck_assert_status(ctx, pclip__st_open(ctx, pclip_test_fixture("train/features.safetensors"), &feat),
                     PCLIP_STATUS_OK);
    snprintf(rel, sizeof rel, "train/%s_final.safetensors", what);
    ck_assert_status(ctx, pclip__st_open(ctx, pclip_test_fixture(rel), &fin), PCLIP_STATUS_OK);
    if (kind) {
        ck_assert_status(ctx, pclip__st_open(ctx, pclip_test_fixture("train/mlp_init.safetensors"),
                                             &init),
                         PCLIP_STATUS_OK);
    } else {
        ck_assert_status(ctx, pclip__st_open(ctx, pclip_test_fixture("tiny-clip/model.safetensors"),
                                             &init),
                         PCLIP_STATUS_OK);
    }
    const pclip__st_tensor *ti = pclip__st_find(feat, "image_features"),
                           *tt = pclip__st_find(feat, "text_features");
    ck_assert(ti && tt && ti->ndim == 2 && tt->ndim == 2 && ti->shape[0] == tt->shape[0]);
    const int32_t n = (int32_t)ti->shape[0], dv = (int32_t)ti->shape[1],
                  dt = (int32_t)tt->shape[1];
    float *fi = st_tensor(feat, "image_features", NULL), *ft = st_tensor(feat, "text_features", NULL);
    const int32_t e = (int32_t)json_num(ref, "embed_dim");
    pclip__heads *h = NULL;
    ck_assert_status(ctx, pclip__heads_create(ctx, b, kind, dv, dt, e, 0.0f, &h), PCLIP_STATUS_OK);
    for (int32_t i = 0; i < h->n_prm; i++) {
        pclip__head_param *p = &h->prm[i];
        int64_t cnt = 0;
        float *v = st_tensor(init, p->name, &cnt);
        if (!strcmp(p->name, "logit_scale") && !kind) cnt = 1;
        ck_assert_int_eq(cnt, p->n);
        ck_assert_status(ctx, pclip__heads_write(h, p, 0, v), PCLIP_STATUS_OK);
        free(v);
    }
    const double lr = json_num(ref, "lr"), wd = json_num(ref, "weight_decay");
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(ref, "losses");
    ck_assert(cJSON_IsArray(losses) && cJSON_GetArraySize(losses) >= 2);
    const int steps = cJSON_GetArraySize(losses);
    for (int s = 0; s < steps; s++) {
        float loss = 0;
        ck_assert_status(ctx, pclip__heads_step(h, fi, ft, n, lr, wd, s + 1, 0, &loss),
                         PCLIP_STATUS_OK);
        const double want = cJSON_GetArrayItem(losses, s)->valuedouble;
        ck_assert_msg(fabs(loss - want) <= LOSS_REL_TOL * fmax(1.0, fabs(want)),
                      "%s on %s: step %d loss %.9g, PyTorch %.9g", what, backend, s + 1,
                      (double)loss, want);
    }
    for (int32_t i = 0; i < h->n_prm; i++) {
        pclip__head_param *p = &h->prm[i];
        int64_t cnt = 0;
        float *want = st_tensor(fin, p->name, &cnt);
        ck_assert_int_eq(cnt, p->n);
        float *got = malloc((size_t)p->n * sizeof *got);
        ck_assert_status(ctx, pclip__heads_read(h, p, 0, got), PCLIP_STATUS_OK);
        const double err = tensor_rel_err(got, want, p->n);
        ck_assert_msg(err <= TENSOR_REL_TOL, "%s on %s: '%s' after %d steps: error %.3g of its "
                      "largest value (tolerance %.0e)", what, backend, p->name, steps, err,
                      TENSOR_REL_TOL);
        free(got);
        free(want);
    }
    pclip__heads_destroy(h);
    free(fi);
    free(ft);
    pclip__st_close(feat);
    pclip__st_close(init);
    pclip__st_close(fin);
    cJSON_Delete(ref);
}

START_TEST(test_linear_matches_pytorch) { check_reference(0); }
END_TEST

START_TEST(test_mlp_matches_pytorch) { check_reference(1); }
END_TEST

/* ---- the command ---- */

static void env_backend(void) { setenv("PORTCLIP_BACKEND", backend, 1); }

/* Runs the CLI with the backend under test; returns its exit status. */
static int train_cli(char **out, char **err, ...) {
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)pclip_test_cli();
    argv[n++] = "train";
    argv[n++] = "--model";
    argv[n++] = (char *)pclip_test_fixture("tiny-clip");
    va_list ap;
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 62) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    env_backend();
    return pclip_test_exec(argv, out, err);
}

/* The "loss" values of a log, in order (at most max). */
static int log_losses(const char *path, double *loss, int max) {
    size_t len = 0;
    char *text = pclip_test_read_file(path, &len);
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        ck_assert_msg(o != NULL, "log line is not JSON: %s", line);
        ck_assert_int_eq((int)json_num(o, "step"), n + 1);
        loss[n++] = json_num(o, "loss");
        json_num(o, "lr");
        json_num(o, "logit_scale");
        cJSON_Delete(o);
    }
    free(text);
    return n;
}

START_TEST(test_cli_matches_pytorch) {
    cJSON *ref = pclip_test_load_json("train/linear.json");
    char dir[256]; /* pclip_test_exec reuses the helper's buffer */
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    char outdir[512], log[512], lr[32], wd[32];
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    snprintf(log, sizeof log, "%s/log.jsonl", dir);
    snprintf(lr, sizeof lr, "%.17g", json_num(ref, "lr"));
    snprintf(wd, sizeof wd, "%.17g", json_num(ref, "weight_decay"));
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(ref, "losses");
    const int steps = cJSON_GetArraySize(losses);
    char steps_s[16];
    snprintf(steps_s, sizeof steps_s, "%d", steps);
    char *err = NULL;
    int rc = train_cli(NULL, &err, "--data", pclip_test_fixture("train/pairs.tsv"), "--output",
                       outdir, "--steps", steps_s, "--batch-size", "8", "--no-shuffle",
                       "--schedule", "constant", "--lr", lr, "--weight-decay", wd,
                       "--val-fraction", "0", "--log", log, "--quiet", NULL);
    ck_assert_msg(rc == 0, "train exited %d: %s", rc, err);
    free(err);
    double got[64];
    ck_assert_int_eq(log_losses(log, got, 64), steps);
    for (int s = 0; s < steps; s++) {
        const double want = cJSON_GetArrayItem(losses, s)->valuedouble;
        /* features computed here, not read from the fixture: the encoders
         * match PyTorch to about 1e-6, which the loss inherits */
        ck_assert_msg(fabs(got[s] - want) <= LOSS_REL_TOL * fmax(1.0, fabs(want)),
                      "step %d: log loss %.9g, PyTorch %.9g", s + 1, got[s], want);
    }
    /* the result is a model directory portclip loads, with the trained scale */
    pclip_model_t m = NULL;
    ck_assert_status(ctx, pclip_model_load(ctx, outdir, &m), PCLIP_STATUS_OK);
    const cJSON *scales = cJSON_GetObjectItemCaseSensitive(ref, "logit_scale");
    const double want_scale = cJSON_GetArrayItem(scales, cJSON_GetArraySize(scales) - 1)->valuedouble;
    ck_assert_msg(fabs(pclip_model_logit_scale(m) - want_scale) <= 1e-5 * fabs(want_scale),
                  "exported logit_scale %.9g, PyTorch %.9g", (double)pclip_model_logit_scale(m),
                  want_scale);
    char npy[600];
    snprintf(npy, sizeof npy, "%s/t.npy", dir);
    char *argv[] = {(char *)pclip_test_cli(), "embed-text", "--model", outdir, "--output", npy,
                    "a photo of a cat", NULL};
    err = NULL;
    rc = pclip_test_exec(argv, NULL, &err);
    ck_assert_msg(rc == 0, "embed-text with the trained model exited %d: %s", rc, err);
    free(err);
    pclip_model_destroy(m);
    cJSON_Delete(ref);
}
END_TEST

/* Reads a whole file (NULL when absent). */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fclose(f);
    return pclip_test_read_file(path, len);
}

static int cancel_after;
static int64_t steps_seen;
static void count_step(void *user, const pclip_train_step_info *s) {
    (void)user;
    steps_seen = s->step;
}
static int cancel_at(void *user) {
    (void)user;
    return cancel_after > 0 && steps_seen >= cancel_after;
}

static void run_lib(const char *outdir, const char *log, int resume, pclip_train_result *res) {
    pclip_model_t m = NULL;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    pclip_train_options o;
    memset(&o, 0, sizeof o);
    o.data = pclip_test_fixture("train/pairs.tsv");
    o.output = outdir;
    o.log = log;
    o.head = PCLIP_HEAD_MLP;
    o.embed_dim = 12;
    o.dropout = 0.2;
    o.steps = 9;
    o.batch_size = 3;
    o.lr = 3e-3;
    o.weight_decay = 0.05;
    o.warmup = 2;
    o.seed = 7;
    o.val_fraction = 0.25;
    o.checkpoint_every = 2;
    o.resume = resume;
    pclip_train_callbacks cb = {.step = count_step, .cancel = cancel_at};
    steps_seen = 0;
    ck_assert_status(ctx, pclip_train(m, b, &o, &cb, res), PCLIP_STATUS_OK);
    pclip_model_destroy(m);
}


/* ---- the held-out recall, computed again here ---- */

/* One tower of an mlp head on x [d] in double: the embedding, L2-normalised. */
static void head_embed(const pclip__head *hd, int tower, const float *x, double *out) {
    const pclip__head_tower *t = tower ? &hd->text : &hd->vision;
    const int32_t e = hd->embed_dim, d = tower ? hd->text_dim : hd->vision_dim;
    double *p = malloc((size_t)e * sizeof *p), *h = malloc((size_t)e * sizeof *h);
    for (int32_t i = 0; i < e; i++) {
        double s = t->proj_b[i];
        for (int32_t k = 0; k < d; k++) s += (double)t->proj_w[(size_t)i * d + k] * x[k];
        p[i] = s;
    }
    for (int32_t i = 0; i < e; i++) {
        double s = t->fc_b[i];
        for (int32_t k = 0; k < e; k++)
            s += (double)t->fc_w[(size_t)i * e + k] * (0.5 * p[k] * (1.0 + erf(p[k] / sqrt(2.0))));
        h[i] = s + p[i];
    }
    double mean = 0, var = 0, norm = 0;
    for (int32_t i = 0; i < e; i++) mean += h[i] / e;
    for (int32_t i = 0; i < e; i++) var += (h[i] - mean) * (h[i] - mean) / e;
    for (int32_t i = 0; i < e; i++) {
        out[i] = (h[i] - mean) / sqrt(var + hd->layer_norm_eps) * t->ln_w[i] + t->ln_b[i];
        norm += out[i] * out[i];
    }
    for (int32_t i = 0; i < e; i++) out[i] /= sqrt(norm);
    free(p);
    free(h);
}

static double score(const double *ei, const double *et, int32_t e, int64_t im, int64_t c) {
    double s = 0;
    for (int32_t k = 0; k < e; k++) s += ei[im * e + k] * et[c * e + k];
    return s;
}

/* Recall@1/5/10 both ways of the held-out pairs of `sp`, with the head in
 * `outdir`, in double; the same rules as the trainer (ties count for the
 * query). */
static void recall_again(const char *outdir, const pclip__features *f, const pclip__split *sp,
                         pclip_train_recall *r) {
    pclip__head *hd = NULL;
    ck_assert_status(ctx, pclip__head_load(ctx, outdir, &hd), PCLIP_STATUS_OK);
    const int32_t e = hd->embed_dim;
    const int64_t nv = sp->n_val;
    double *ei = calloc((size_t)f->n_images * e, sizeof *ei), *et = calloc((size_t)nv * e, sizeof *et);
    bool *val_img = calloc((size_t)f->n_images, sizeof *val_img);
    for (int64_t c = 0; c < nv; c++) {
        const int64_t pr = sp->val[c], im = f->pair_image[pr];
        if (!val_img[im]) head_embed(hd, 0, f->image_feats + im * f->dv, ei + im * e);
        val_img[im] = true;
        head_embed(hd, 1, f->text_feats + f->pair_text[pr] * f->dt, et + c * e);
    }
    static const int ks[3] = {1, 5, 10};
    memset(r, 0, sizeof *r);
    for (int64_t im = 0; im < f->n_images; im++) {
        if (!val_img[im]) continue;
        r->images++;
        double best = -INFINITY;
        for (int64_t c = 0; c < nv; c++)
            if (f->pair_image[sp->val[c]] == im && score(ei, et, e, im, c) > best) best = score(ei, et, e, im, c);
        int64_t rank = 0;
        for (int64_t c = 0; c < nv; c++) rank += f->pair_image[sp->val[c]] != im && score(ei, et, e, im, c) > best;
        for (int k = 0; k < 3; k++) r->i2t[k] += rank < ks[k];
    }
    for (int64_t c = 0; c < nv; c++) {
        const int64_t own_im = f->pair_image[sp->val[c]];
        const double own = score(ei, et, e, own_im, c);
        int64_t rank = 0;
        for (int64_t im = 0; im < f->n_images; im++) rank += val_img[im] && im != own_im && score(ei, et, e, im, c) > own;
        for (int k = 0; k < 3; k++) r->t2i[k] += rank < ks[k];
    }
    r->captions = nv;
    for (int k = 0; k < 3; k++) {
        r->i2t[k] /= (double)r->images;
        r->t2i[k] /= (double)nv;
    }
    free(ei);
    free(et);
    free(val_img);
    pclip__head_destroy(hd);
}

START_TEST(test_resume_is_bit_exact) {
    char dir[256]; /* pclip_test_exec reuses the helper's buffer */
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    char a[512], la[512], bdir[512], lb[512], p1[600], p2[600];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(la, sizeof la, "%s/a.jsonl", dir);
    snprintf(bdir, sizeof bdir, "%s/b", dir);
    snprintf(lb, sizeof lb, "%s/b.jsonl", dir);
    pclip_train_result r;
    cancel_after = 0;
    run_lib(a, la, 0, &r);
    ck_assert_int_eq(r.steps_done, 9);
    ck_assert_int_eq(r.cancelled, 0);
    ck_assert(r.val_pairs > 0 && r.recall.epoch > 0);
    /* the reported held-out recall, again from the written head, the cached
     * features and the same split */
    {
        pclip_model_t m = NULL;
        ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                         PCLIP_STATUS_OK);
        pclip__dataset *ds = NULL;
        ck_assert_status(ctx, pclip__dataset_read(ctx, pclip_test_fixture("train/pairs.tsv"), NULL, &ds),
                         PCLIP_STATUS_OK);
        char cache[600];
        snprintf(cache, sizeof cache, "%s/training", a);
        pclip__features *f = NULL;
        ck_assert_status(ctx, pclip__features_compute(m, b, ds, cache, NULL, &f), PCLIP_STATUS_OK);
        ck_assert_int_eq(f->cache_hit, 1);
        pclip__split *sp = NULL;
        ck_assert_status(ctx, pclip__features_split(ctx, f, 0.25, 7, &sp), PCLIP_STATUS_OK);
        pclip_train_recall want;
        recall_again(a, f, sp, &want);
        ck_assert_int_eq(r.recall.images, want.images);
        ck_assert_int_eq(r.recall.captions, want.captions);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(r.recall.i2t[k] == want.i2t[k] && r.recall.t2i[k] == want.t2i[k],
                          "recall@%d: reported %g / %g, computed %g / %g", k, r.recall.i2t[k],
                          r.recall.t2i[k], want.i2t[k], want.t2i[k]);
        pclip__split_destroy(sp);
        pclip__features_destroy(f);
        pclip__dataset_destroy(ds);
        pclip_model_destroy(m);
    }
    /* the schedule: 2 warm-up steps from 0, then cosine over the other 7
     * (transformers' get_cosine_schedule_with_warmup at step - 1) */
    {
        size_t len = 0;
        char *text = pclip_test_read_file(la, &len);
        int k = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), k++) {
            cJSON *o = cJSON_Parse(line);
            ck_assert_ptr_nonnull(o);
            const double got = json_num(o, "lr"), cur = k;
            const double want = cur < 2 ? 3e-3 * cur / 2
                                        : 3e-3 * 0.5 * (1 + cos(3.14159265358979323846 * (cur - 2) / 7));
            ck_assert_msg(fabs(got - want) <= 1e-9, "step %d: lr %.9g, want %.9g", k + 1, got, want);
            cJSON_Delete(o);
        }
        ck_assert_int_eq(k, 9);
        free(text);
    }
    cancel_after = 4;
    run_lib(bdir, lb, 0, &r);
    ck_assert_int_eq(r.cancelled, 1);
    ck_assert_int_eq(r.steps_done, 4);
    snprintf(p2, sizeof p2, "%s/head.safetensors", bdir);
    ck_assert_msg(access(p2, F_OK) != 0, "a stopped run wrote its result");
    /* a later step that ran after the checkpoint leaves a log line the resume must drop */
    FILE *f = fopen(lb, "a");
    fputs("{\"step\": 5, \"loss\": 123}\n", f);
    fclose(f);
    cancel_after = 0;
    run_lib(bdir, lb, 1, &r);
    ck_assert_int_eq(r.resumed_from, 4);
    ck_assert_int_eq(r.steps_done, 9);
    ck_assert_int_eq(r.feature_cache_hit, 1);
    size_t n1 = 0, n2 = 0;
    char *x = slurp(la, &n1), *y = slurp(lb, &n2);
    ck_assert_msg(x && y && n1 == n2 && !memcmp(x, y, n1), "resumed log differs:\n%s\n---\n%s", x,
                  y);
    free(x);
    free(y);
    snprintf(p1, sizeof p1, "%s/head.safetensors", a);
    x = slurp(p1, &n1);
    y = slurp(p2, &n2);
    ck_assert_msg(x && y && n1 == n2 && !memcmp(x, y, n1), "resumed head differs");
    free(x);
    free(y);
}
END_TEST

START_TEST(test_nan_stops) {
    char dir[256]; /* pclip_test_exec reuses the helper's buffer */
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    char outdir[512], ck[600], res[600];
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    char *err = NULL;
    /* (1 - lr * wd) = -809999 each step: the weights overflow within a few steps */
    int rc = train_cli(NULL, &err, "--data", pclip_test_fixture("train/pairs.tsv"), "--output",
                       outdir, "--steps", "40", "--batch-size", "8", "--val-fraction", "0",
                       "--lr", "900", "--weight-decay", "900", "--checkpoint-every", "1",
                       "--quiet", NULL);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(err, "loss is") && strstr(err, "checkpoint"), "message: %s", err);
    free(err);
    snprintf(ck, sizeof ck, "%s/training/checkpoint.bin", outdir);
    snprintf(res, sizeof res, "%s/model.safetensors", outdir);
    ck_assert_msg(access(ck, F_OK) == 0, "the last good checkpoint is gone");
    ck_assert_msg(access(res, F_OK) != 0, "a diverged run wrote a model");
}
END_TEST

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_bad_data) {
    char dir[256]; /* pclip_test_exec reuses the helper's buffer */
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    char data[512], outdir[512], img[600], line[4096];
    snprintf(data, sizeof data, "%s/pairs.csv", dir);
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    char *err = NULL;
    /* no caption column */
    write_text(data, "image,text\na.jpg,a cat\n");
    int rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--steps", "1", NULL);
    ck_assert_msg(rc == 1 && strstr(err, "caption") && strstr(err, "pairs.csv"), "exit %d: %s",
                  rc, err);
    free(err);
    /* a missing image is skipped with a message; --strict refuses it */
    snprintf(img, sizeof img, "%s", pclip_test_fixture("images"));
    snprintf(line, sizeof line,
             "image\tcaption\n%s/j_32x32.jpg\ta small square\n%s/p_47x32.png\ta wide picture\n"
             "%s/j_landscape_97x61.jpg\ta landscape\nnot-there.jpg\tnothing\n",
             img, img, img);
    snprintf(data, sizeof data, "%s/pairs.tsv", dir);
    write_text(data, line);
    rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--steps", "2",
                   "--val-fraction", "0", NULL);
    ck_assert_msg(rc == 0 && strstr(err, "skipped") && strstr(err, "not-there.jpg"), "exit %d: %s",
                  rc, err);
    free(err);
    rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--steps", "2", "--strict",
                   NULL);
    ck_assert_msg(rc == 1 && strstr(err, "not-there.jpg"), "exit %d: %s", rc, err);
    free(err);
    /* one readable pair is not enough */
    snprintf(line, sizeof line, "image\tcaption\n%s/j_32x32.jpg\ta small square\n", img);
    write_text(data, line);
    rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--steps", "2", NULL);
    ck_assert_msg(rc == 1 && strstr(err, "at least 2"), "exit %d: %s", rc, err);
    free(err);
    /* a linear head never overwrites its own model; a log that cannot be written is
     * refused before any work */
    rc = train_cli(NULL, &err, "--data", data, "--output", pclip_test_fixture("tiny-clip"),
                   "--steps", "2", NULL);
    ck_assert_msg(rc == 1 && strstr(err, "own folder"), "exit %d: %s", rc, err);
    free(err);
    rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--steps", "2", "--log",
                   "/nonexistent-folder/log.jsonl", NULL);
    ck_assert_msg(rc == 1 && strstr(err, "log.jsonl"), "exit %d: %s", rc, err);
    free(err);
    /* usage errors */
    rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--lr", "fast", NULL);
    ck_assert_msg(rc == 2 && strstr(err, "--lr"), "exit %d: %s", rc, err);
    free(err);
    rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--steps", "3", "--epochs", "2",
                   NULL);
    ck_assert_msg(rc == 2, "exit %d: %s", rc, err);
    free(err);
    /* a resume with other settings is refused, naming the setting */
    snprintf(line, sizeof line,
             "image\tcaption\n%s/j_32x32.jpg\ta small square\n%s/p_47x32.png\ta wide picture\n"
             "%s/j_landscape_97x61.jpg\ta landscape\n",
             img, img, img);
    write_text(data, line);
    rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--steps", "2", "--val-fraction",
                   "0", "--quiet", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(err);
    rc = train_cli(NULL, &err, "--data", data, "--output", outdir, "--steps", "2", "--val-fraction",
                   "0", "--lr", "0.5", "--resume", NULL);
    ck_assert_msg(rc == 1 && strstr(err, "lr="), "exit %d: %s", rc, err);
    free(err);
}
END_TEST

START_TEST(test_sigint_saves) {
    char dir[256]; /* pclip_test_exec reuses the helper's buffer */
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    char outdir[512], log[512], ck[600];
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    snprintf(log, sizeof log, "%s/log.jsonl", dir);
    env_backend();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open("/dev/null", 1);
        dup2(fd, 2);
        execl(pclip_test_cli(), pclip_test_cli(), "train", "--model",
              pclip_test_fixture("tiny-clip"), "--data", pclip_test_fixture("train/pairs.tsv"),
              "--output", outdir, "--steps", "2000000000", "--batch-size", "4", "--log", log,
              (char *)NULL);
        _exit(127);
    }
    struct stat sb;
    for (int i = 0; i < 6000 && !(stat(log, &sb) == 0 && sb.st_size > 0); i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    ck_assert_msg(stat(log, &sb) == 0 && sb.st_size > 0, "no step was logged");
    kill(pid, SIGINT);
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status 0x%x", status);
    snprintf(ck, sizeof ck, "%s/training/checkpoint.bin", outdir);
    ck_assert_msg(access(ck, F_OK) == 0, "no checkpoint after Ctrl-C");
}
END_TEST

int main(int argc, char **argv) {
    int arg = pclip_test_backend_args(argc, argv, &backend, &test_device);
    if (arg < argc) {
        fprintf(stderr, "usage: check_train [cpu|vulkan|opencl]\n");
        return 2;
    }
    pclip_test_probe_backend("check_train", backend, test_device);
    Suite *s = suite_create("train");
    TCase *ref = tcase_create("reference");
    tcase_add_checked_fixture(ref, setup, teardown);
    tcase_set_timeout(ref, 300);
    tcase_add_test(ref, test_linear_matches_pytorch);
    tcase_add_test(ref, test_mlp_matches_pytorch);
    tcase_add_test(ref, test_cli_matches_pytorch);
    tcase_add_test(ref, test_resume_is_bit_exact);
    suite_add_tcase(s, ref);
    if (strcmp(backend, "cpu") == 0) {
        TCase *cli = tcase_create("cli");
        tcase_add_checked_fixture(cli, setup, teardown);
        tcase_set_timeout(cli, 300);
        tcase_add_test(cli, test_nan_stops);
        tcase_add_test(cli, test_bad_data);
        tcase_add_test(cli, test_sigint_saves);
        suite_add_tcase(s, cli);
    }
    return pclip_test_run(s);
}
