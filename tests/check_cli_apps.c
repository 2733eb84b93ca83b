/* The CLI's applications (CLI.md): classify and score against the PyTorch
 * references in fixtures/zeroshot/tiny-clip.json, in every output format;
 * their usage errors; JSON strings for awkward paths; embed-image's
 * OUT.paths.txt and --skip-bad; and the example program under examples/.
 *
 * Tolerance (printed values, fp32 against PyTorch fp32): |logit - ref| <=
 * 1e-5 * max |ref logit| of the row + 1e-6, |prob - ref| <= 1e-5. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define MAX_ARGS 64
#define LOGIT_REL_TOL 1e-5
#define PROB_ABS_TOL 1e-5

typedef struct cli_run {
    int rc;
    char *out, *err;
} cli_run;

static cli_run cli_v(const char *const *args) {
    char *argv[MAX_ARGS];
    int n = 0;
    argv[n++] = (char *)pclip_test_cli();
    for (; *args && n < MAX_ARGS - 1; args++) argv[n++] = (char *)*args;
    argv[n] = NULL;
    cli_run r;
    r.rc = pclip_test_exec(argv, &r.out, &r.err);
    return r;
}
#define CLI(...) cli_v((const char *const[]){__VA_ARGS__, NULL})

static void cli_free(cli_run *r) {
    free(r->out);
    free(r->err);
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* One fresh folder per test (Check forks each test; pclip_test_tmpdir makes a
 * new folder per call). */
static const char *tmp_dir(void) {
    static char dir[256];
    if (!dir[0]) snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    return dir;
}

static const char *tmp_path(const char *name) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 1024, "%s/%s", tmp_dir(), name);
    return b;
}

/* ---- the reference ---- */

static cJSON *ref;
static char ref_paths[16][512];
static int n_ref;

static void load_ref(void) {
    ref = pclip_test_load_json("zeroshot/tiny-clip.json");
    n_ref = 0;
    for (cJSON *i = cJSON_GetObjectItem(ref, "images")->child; i && n_ref < 16; i = i->next)
        snprintf(ref_paths[n_ref++], sizeof ref_paths[0], "%s/images/%s", PCLIP_FIXTURES_DIR,
                 i->valuestring);
}
static void free_ref(void) { cJSON_Delete(ref); }

static const cJSON *ref_case(const char *name) {
    for (cJSON *c = cJSON_GetObjectItem(ref, "classify")->child; c; c = c->next)
        if (strcmp(cJSON_GetObjectItem(c, "name")->valuestring, name) == 0) return c;
    ck_abort_msg("no case %s", name);
    return NULL;
}

/* args + the reference images, run */
static cli_run run_on_images(const char *const *args) {
    const char *all[MAX_ARGS];
    int n = 0;
    for (; *args; args++) all[n++] = *args;
    for (int i = 0; i < n_ref; i++) all[n++] = ref_paths[i];
    all[n] = NULL;
    return cli_v(all);
}

static double row_max(const cJSON *row) {
    double m = 0;
    for (const cJSON *v = row->child; v; v = v->next) m = fmax(m, fabs(v->valuedouble));
    return m;
}

/* Each stdout line a JSON object; returns them in an array. */
static cJSON *json_lines(const char *out) {
    cJSON *arr = cJSON_CreateArray();
    char *copy = strdup(out);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        ck_assert_msg(o != NULL, "not JSON: %s", line);
        cJSON_AddItemToArray(arr, o);
    }
    free(copy);
    return arr;
}

/* classify's JSON lines against case `name`: every label (or the top k),
 * sorted by prob, values within the tolerance. */
static void check_classify_json(const char *out, const char *name, int top_k) {
    const cJSON *c = ref_case(name);
    const cJSON *labels = cJSON_GetObjectItem(ref, "labels");
    int n_labels = cJSON_GetArraySize(labels);
    cJSON *lines = json_lines(out);
    ck_assert_int_eq(cJSON_GetArraySize(lines), n_ref);
    int i = 0;
    for (cJSON *o = lines->child; o; o = o->next, i++) {
        ck_assert_str_eq(cJSON_GetObjectItem(o, "image")->valuestring, ref_paths[i]);
        const cJSON *preds = cJSON_GetObjectItem(o, "predictions");
        int want_n = top_k && top_k < n_labels ? top_k : n_labels;
        ck_assert_int_eq(cJSON_GetArraySize(preds), want_n);
        const cJSON *lrow = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "logits"), i);
        const cJSON *prow = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "probs"), i);
        double lmax = row_max(lrow), prev = 2.0;
        for (const cJSON *p = preds->child; p; p = p->next) {
            const char *label = cJSON_GetObjectItem(p, "label")->valuestring;
            int j = 0;
            while (j < n_labels && strcmp(cJSON_GetArrayItem(labels, j)->valuestring, label)) j++;
            ck_assert_msg(j < n_labels, "unknown label %s", label);
            double prob = cJSON_GetObjectItem(p, "prob")->valuedouble;
            double logit = cJSON_GetObjectItem(p, "logit")->valuedouble;
            double wp = cJSON_GetArrayItem(prow, j)->valuedouble;
            double wl = cJSON_GetArrayItem(lrow, j)->valuedouble;
            ck_assert_msg(fabs(prob - wp) <= PROB_ABS_TOL, "%s image %d %s: prob %.9g, ref %.9g",
                          name, i, label, prob, wp);
            ck_assert_msg(fabs(logit - wl) <= LOGIT_REL_TOL * lmax + 1e-6,
                          "%s image %d %s: logit %.9g, ref %.9g", name, i, label, logit, wl);
            ck_assert_msg(prob <= prev, "%s image %d: not sorted by prob", name, i);
            prev = prob;
        }
        /* the top label is the reference's (the tiny model's rows are not ties) */
        int best = 0;
        for (int j = 1; j < n_labels; j++)
            if (cJSON_GetArrayItem(prow, j)->valuedouble > cJSON_GetArrayItem(prow, best)->valuedouble)
                best = j;
        ck_assert_str_eq(cJSON_GetObjectItem(preds->child, "label")->valuestring,
                         cJSON_GetArrayItem(labels, best)->valuestring);
    }
    cJSON_Delete(lines);
}

/* ---- classify ---- */

START_TEST(test_classify_matches_reference) {
    load_ref();
    const char *model = pclip_test_fixture("tiny-clip");
    const char *labels = "cat,dog,beach at sunset,red car,tree";
    /* the default template, in two batches of 5 and 4 */
    cli_run r = run_on_images((const char *const[]){"classify", "--model", model, "--labels",
                                                     labels, "--format", "json", "--batch-size",
                                                     "5", NULL});
    ck_assert_msg(r.rc == 0, "%s", r.err);
    check_classify_json(r.out, "default", 0);
    cli_free(&r);
    /* the ensemble, from --template and --templates-file */
    const char *tf = tmp_path("templates.txt");
    FILE *f = fopen(tf, "w");
    fputs("a drawing of a {}.\n\na blurry photo of the {}.\n", f);
    fclose(f);
    r = run_on_images((const char *const[]){"classify", "--model", model, "--labels", labels,
                                            "--template", "a photo of a {}.", "--templates-file",
                                            tf, "--format", "json", NULL});
    ck_assert_msg(r.rc == 0, "%s", r.err);
    check_classify_json(r.out, "ensemble", 0);
    cli_free(&r);
    /* labels as they are, from a file; top 2; then a top-k past the label count: all */
    const char *lf = tmp_path("labels.txt");
    f = fopen(lf, "w");
    fputs("cat\ndog\r\n\nbeach at sunset\nred car\ntree\n", f);
    fclose(f);
    r = run_on_images((const char *const[]){"classify", "--model", model, "--labels-file", lf,
                                            "--template", "{}", "--top-k", "2", "--format",
                                            "json", NULL});
    ck_assert_msg(r.rc == 0, "%s", r.err);
    check_classify_json(r.out, "raw", 2);
    cli_free(&r);
    r = run_on_images((const char *const[]){"classify", "--model", model, "--labels", labels,
                                            "--top-k", "99", "--format", "json", NULL});
    ck_assert_msg(r.rc == 0, "%s", r.err);
    check_classify_json(r.out, "default", 0);
    cli_free(&r);
    free_ref();
}
END_TEST

START_TEST(test_classify_text_and_tsv) {
    load_ref();
    const char *model = pclip_test_fixture("tiny-clip");
    cli_run r = CLI("classify", "--model", model, "--labels", "cat,dog,tree", "--format", "tsv",
                    ref_paths[0], ref_paths[1]);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    /* image, rank, label, prob, logit: 3 lines per image, ranks 1..3, probs falling */
    char *line = r.out;
    for (int i = 0; i < 2; i++)
        for (int k = 1; k <= 3; k++) {
            char path[512], label[64];
            int rank;
            double prob, logit;
            ck_assert_int_eq(sscanf(line, "%511[^\t]\t%d\t%63[^\t]\t%lf\t%lf", path, &rank, label,
                                    &prob, &logit),
                             5);
            ck_assert_str_eq(path, ref_paths[i]);
            ck_assert_int_eq(rank, k);
            ck_assert(prob > 0 && prob < 1);
            line = strchr(line, '\n') + 1;
        }
    ck_assert_str_eq(line, "");
    cli_free(&r);
    /* text: a table per image, headed by the path, best label first */
    r = CLI("classify", "--model", model, "--labels", "cat,dog,tree", ref_paths[0], ref_paths[1]);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, ref_paths[0]));
    ck_assert_ptr_nonnull(strstr(r.out, ref_paths[1]));
    ck_assert_ptr_nonnull(strstr(r.out, "prob"));
    ck_assert_ptr_nonnull(strstr(r.out, "%"));
    cli_free(&r);
    free_ref();
}
END_TEST

/* Usage errors (exit 2) name the argument; nothing on stdout. */
START_TEST(test_classify_usage_errors) {
    const char *model = pclip_test_fixture("tiny-clip");
    const char *img = pclip_test_fixture("images/p_32x32.png");
    struct {
        const char *args[8];
        const char *says;
    } cases[] = {
        {{"--labels", "", NULL}, "--labels: the label list is empty"},
        {{"--labels", ",cat", NULL}, "--labels: label 1 is empty"},
        {{"--labels", "cat,,dog", NULL}, "--labels: label 2 is empty"},
        {{"--labels", "cat,dog,cat", NULL}, "--labels: label 'cat' is given twice (labels 1 and 3)"},
        {{"--labels", "cat,dog", "--template", "a photo", NULL}, "--template 'a photo' has no {}"},
        {{"--labels", "cat,dog", "--template", "{} and {}", NULL}, "more than one {}"},
        {{"--labels", "cat,dog", "--top-k", "0", NULL}, "--top-k must be an integer from 1"},
        {{"--labels", "cat", "--labels-file", "x", NULL}, "--labels A,B,... or --labels-file"},
        {{"--format", "json", NULL}, "--labels A,B,... or --labels-file"},
        {{"--labels", "cat", "--format", "xml", NULL}, "--format must be"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *args[16] = {"classify", "--model", model};
        int n = 3;
        for (int k = 0; cases[c].args[k]; k++) args[n++] = cases[c].args[k];
        args[n++] = img;
        args[n] = NULL;
        cli_run r = cli_v(args);
        ck_assert_msg(r.rc == 2, "case %zu: exit %d: %s", c, r.rc, r.err);
        ck_assert_msg(strstr(r.err, cases[c].says), "case %zu: %s", c, r.err);
        ck_assert_str_eq(r.out, "");
        cli_free(&r);
    }
    /* an empty labels file is the same usage error; a missing one a bad input */
    const char *empty = tmp_path("empty.txt");
    fclose(fopen(empty, "w"));
    cli_run r = CLI("classify", "--model", model, "--labels-file", empty, img);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "--labels-file: the label list is empty"));
    cli_free(&r);
    r = CLI("classify", "--model", model, "--labels-file", tmp_path("nope.txt"), img);
    ck_assert_int_eq(r.rc, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "nope.txt"));
    cli_free(&r);
    /* a bad image: exit 1, naming it */
    const char *bad = pclip_test_fixture("bad/truncated.jpg");
    r = CLI("classify", "--model", model, "--labels", "cat,dog", img, bad);
    ck_assert_int_eq(r.rc, 1);
    ck_assert_ptr_nonnull(strstr(r.err, bad));
    cli_free(&r);
    /* ... skipped with --skip-bad */
    r = CLI("classify", "--model", model, "--labels", "cat,dog", "--format", "json", "--skip-bad",
            bad, img);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, bad));
    ck_assert_ptr_nonnull(strstr(r.err, "1 of 2 images skipped"));
    cJSON *lines = json_lines(r.out);
    ck_assert_int_eq(cJSON_GetArraySize(lines), 1);
    ck_assert_str_eq(cJSON_GetObjectItem(lines->child, "image")->valuestring, img);
    cJSON_Delete(lines);
    cli_free(&r);
}
END_TEST

/* JSON output of awkward paths: quotes, backslashes, control characters and
 * a byte that is not UTF-8 (written as U+FFFD) all come out as valid JSON. */
START_TEST(test_json_strings) {
    const char *model = pclip_test_fixture("tiny-clip");
    char *png = pclip_test_read_file(pclip_test_fixture("images/p_32x32.png"), NULL);
    size_t len;
    free(png);
    png = pclip_test_read_file(pclip_test_fixture("images/p_32x32.png"), &len);
    const char *name = "a \"q\" \\ b\tc\x01 \xff \xc3\xa9.png";
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp_dir(), name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(png, 1, len, f);
    fclose(f);
    free(png);
    cli_run r = CLI("classify", "--model", model, "--labels", "caf\xc3\xa9,\"dog\"", "--format",
                    "json", path);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    cJSON *o = cJSON_Parse(r.out);
    ck_assert_msg(o != NULL, "not JSON: %s", r.out);
    char want[1024];
    snprintf(want, sizeof want, "%s/a \"q\" \\ b\tc\x01 \xef\xbf\xbd \xc3\xa9.png",
             tmp_dir());
    ck_assert_str_eq(cJSON_GetObjectItem(o, "image")->valuestring, want);
    ck_assert_ptr_nonnull(strstr(r.out, "\\u0001"));
    const cJSON *preds = cJSON_GetObjectItem(o, "predictions");
    bool saw_dog = false;
    for (const cJSON *p = preds->child; p; p = p->next)
        saw_dog |= strcmp(cJSON_GetObjectItem(p, "label")->valuestring, "\"dog\"") == 0;
    ck_assert(saw_dog);
    cJSON_Delete(o);
    cli_free(&r);
    /* score --format json too, and tsv escapes the tab */
    r = CLI("score", "--model", model, "--text", "a\"b", "--format", "json", path);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    o = cJSON_Parse(r.out);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(cJSON_GetObjectItem(o, "image")->valuestring, want);
    cJSON_Delete(o);
    cli_free(&r);
    r = CLI("classify", "--model", model, "--labels", "x", "--format", "tsv", path);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "\\\\ b\\tc"));
    cli_free(&r);
    unlink(path);
}
END_TEST

/* ---- score ---- */

START_TEST(test_score_matches_reference) {
    load_ref();
    const cJSON *sc = cJSON_GetObjectItem(ref, "score");
    const cJSON *texts = cJSON_GetObjectItem(sc, "texts");
    int n_texts = cJSON_GetArraySize(texts);
    /* the first two as --text, the others from a file (in order after them) */
    const char *tf = tmp_path("texts.txt");
    FILE *f = fopen(tf, "w");
    for (int j = 2; j < n_texts; j++) fprintf(f, "%s\n", cJSON_GetArrayItem(texts, j)->valuestring);
    fclose(f);
    cli_run r = run_on_images((const char *const[]){
        "score", "--model", pclip_test_fixture("tiny-clip"), "--text",
        cJSON_GetArrayItem(texts, 0)->valuestring, "--text",
        cJSON_GetArrayItem(texts, 1)->valuestring, "--texts-file", tf, "--format", "json", NULL});
    ck_assert_msg(r.rc == 0, "%s", r.err);
    cJSON *lines = json_lines(r.out);
    ck_assert_int_eq(cJSON_GetArraySize(lines), n_ref);
    int i = 0;
    for (cJSON *o = lines->child; o; o = o->next, i++) {
        ck_assert_str_eq(cJSON_GetObjectItem(o, "image")->valuestring, ref_paths[i]);
        const cJSON *logits = cJSON_GetObjectItem(o, "logits"), *probs = cJSON_GetObjectItem(o, "probs");
        const cJSON *lrow = cJSON_GetArrayItem(cJSON_GetObjectItem(sc, "logits"), i);
        const cJSON *prow = cJSON_GetArrayItem(cJSON_GetObjectItem(sc, "probs"), i);
        ck_assert_int_eq(cJSON_GetArraySize(logits), n_texts);
        ck_assert_int_eq(cJSON_GetArraySize(probs), n_texts);
        double lmax = row_max(lrow);
        for (int j = 0; j < n_texts; j++) {
            double l = cJSON_GetArrayItem(logits, j)->valuedouble;
            double p = cJSON_GetArrayItem(probs, j)->valuedouble;
            ck_assert_msg(fabs(l - cJSON_GetArrayItem(lrow, j)->valuedouble) <=
                              LOGIT_REL_TOL * lmax + 1e-6,
                          "image %d text %d: logit %.9g", i, j, l);
            ck_assert_msg(fabs(p - cJSON_GetArrayItem(prow, j)->valuedouble) <= PROB_ABS_TOL,
                          "image %d text %d: prob %.9g", i, j, p);
        }
    }
    cJSON_Delete(lines);
    cli_free(&r);
    /* the table: every text, in order */
    r = CLI("score", "--model", pclip_test_fixture("tiny-clip"), "--text", "zebra one", "--text",
            "apple two", ref_paths[0]);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    char *a = strstr(r.out, "zebra one"), *b = strstr(r.out, "apple two");
    ck_assert(a && b && a < b);
    cli_free(&r);
    /* no texts: a usage error */
    r = CLI("score", "--model", pclip_test_fixture("tiny-clip"), ref_paths[0]);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "--text"));
    cli_free(&r);
    free_ref();
}
END_TEST

/* ---- embed-image: OUT.paths.txt and --skip-bad ---- */

START_TEST(test_embed_paths_and_skip_bad) {
    load_ref();
    const char *model = pclip_test_fixture("tiny-clip");
    const char *out = tmp_path("emb.npy"), *paths_txt = tmp_path("emb.npy.paths.txt");
    const char *bad = pclip_test_fixture("bad/text.txt");
    cli_run r = CLI("embed-image", "--model", model, "--output", out, ref_paths[0], ref_paths[1]);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    cli_free(&r);
    char want_list[2048];
    snprintf(want_list, sizeof want_list, "%s\n%s\n", ref_paths[0], ref_paths[1]);
    char *list = pclip_test_read_file(paths_txt, NULL);
    ck_assert_str_eq(list, want_list);
    free(list);
    pclip_test_npy clean;
    pclip_test_npy_read(out, &clean);
    /* a bad file without --skip-bad: exit 1 naming it; both outputs stay as they were */
    r = CLI("embed-image", "--model", model, "--output", out, ref_paths[0], bad, ref_paths[1]);
    ck_assert_int_eq(r.rc, 1);
    ck_assert_ptr_nonnull(strstr(r.err, bad));
    cli_free(&r);
    list = pclip_test_read_file(paths_txt, NULL);
    ck_assert_str_eq(list, want_list);
    free(list);
    /* with --skip-bad: the good rows, in order, equal to the clean run's */
    const char *out2 = tmp_path("skip.npy");
    r = CLI("embed-image", "--model", model, "--output", out2, "--skip-bad", "--batch-size", "2",
            bad, ref_paths[0], bad, ref_paths[1]);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "skipped"));
    ck_assert_ptr_nonnull(strstr(r.err, bad));
    ck_assert_ptr_nonnull(strstr(r.err, "2 of 4 images skipped"));
    cli_free(&r);
    pclip_test_npy got;
    pclip_test_npy_read(out2, &got);
    ck_assert_int_eq(got.shape[0], 2);
    ck_assert_uint_eq(got.count, clean.count);
    for (size_t k = 0; k < got.count; k++)
        ck_assert_float_eq_tol(got.data[k], clean.data[k], 1e-6f);
    pclip_test_npy_free(&got);
    list = pclip_test_read_file(tmp_path("skip.npy.paths.txt"), NULL);
    ck_assert_str_eq(list, want_list);
    free(list);
    /* nothing readable: exit 1 and no output */
    const char *out3 = tmp_path("none.npy");
    r = CLI("embed-image", "--model", model, "--output", out3, "--skip-bad", bad);
    ck_assert_int_eq(r.rc, 1);
    ck_assert(!file_exists(out3));
    ck_assert(!file_exists(tmp_path("none.npy.paths.txt")));
    cli_free(&r);
    pclip_test_npy_free(&clean);
    free_ref();
}
END_TEST

/* ---- folders ---- */

static void copy_file(const char *from, const char *to) {
    size_t len;
    char *data = pclip_test_read_file(from, &len);
    FILE *f = fopen(to, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(data, 1, len, f);
    fclose(f);
    free(data);
}

/* A folder of images (nested, a PNG without its extension, a text file, a
 * symlink loop) as input to embed-image, preprocess, classify and score: rows
 * in the byte order of the paths, OUT.paths.txt lists them, and the rows
 * equal those of the same files given one by one. */
START_TEST(test_folders) {
    load_ref();
    const char *model = pclip_test_fixture("tiny-clip");
    char root[600], sub[700], p[4][800];
    snprintf(root, sizeof root, "%s", tmp_path("photos"));
    snprintf(sub, sizeof sub, "%s/b-sub", root);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    snprintf(p[0], sizeof p[0], "%s/a.jpg", root);
    snprintf(p[1], sizeof p[1], "%s/no-extension", sub);
    snprintf(p[2], sizeof p[2], "%s/c.png", root);
    copy_file(ref_paths[0], p[0]);
    copy_file(ref_paths[1], p[1]);
    copy_file(ref_paths[4], p[2]);
    char txt[800], loop[800];
    snprintf(txt, sizeof txt, "%s/notes.txt", root);
    FILE *f = fopen(txt, "w");
    fputs("not an image\n", f);
    fclose(f);
    snprintf(loop, sizeof loop, "%s/b-sub/loop", root);
    ck_assert_int_eq(symlink("..", loop), 0);
    /* the folder, then one of its files again */
    const char *out = tmp_path("dir.npy");
    cli_run r = CLI("embed-image", "--model", model, "--output", out, root, ref_paths[2]);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_msg(strstr(r.err, "loop"), "the loop is not reported: %s", r.err);
    ck_assert_ptr_null(strstr(r.err, "notes.txt")); /* not an image: no error, no noise */
    cli_free(&r);
    char want[4096];
    snprintf(want, sizeof want, "%s\n%s\n%s\n%s\n", p[0], p[1], p[2], ref_paths[2]);
    char *list = pclip_test_read_file(tmp_path("dir.npy.paths.txt"), NULL);
    ck_assert_str_eq(list, want);
    free(list);
    const char *out1 = tmp_path("files.npy");
    r = CLI("embed-image", "--model", model, "--output", out1, ref_paths[0], ref_paths[1],
            ref_paths[4], ref_paths[2]);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    cli_free(&r);
    pclip_test_npy a, b;
    pclip_test_npy_read(out, &a);
    pclip_test_npy_read(out1, &b);
    ck_assert_int_eq(a.shape[0], 4);
    ck_assert_uint_eq(a.count, b.count);
    ck_assert_mem_eq(a.data, b.data, a.count * sizeof *a.data);
    pclip_test_npy_free(&a);
    pclip_test_npy_free(&b);
    /* preprocess reads folders the same way */
    r = CLI("preprocess", "--model", model, "--output", out, root);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    cli_free(&r);
    pclip_test_npy_read(out, &a);
    ck_assert_int_eq(a.shape[0], 3);
    pclip_test_npy_free(&a);
    snprintf(want, sizeof want, "%s\n%s\n%s\n", p[0], p[1], p[2]);
    list = pclip_test_read_file(tmp_path("dir.npy.paths.txt"), NULL);
    ck_assert_str_eq(list, want);
    free(list);
    /* classify and score: one result per image, in the same order */
    r = CLI("classify", "--model", model, "--labels", "cat,dog", "--format", "json", root);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    cJSON *lines = json_lines(r.out);
    ck_assert_int_eq(cJSON_GetArraySize(lines), 3);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(lines, i), "image")->valuestring,
                         p[i]);
    cJSON_Delete(lines);
    cli_free(&r);
    r = CLI("score", "--model", model, "--text", "x", "--format", "json", root);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    lines = json_lines(r.out);
    ck_assert_int_eq(cJSON_GetArraySize(lines), 3);
    cJSON_Delete(lines);
    cli_free(&r);
    /* a folder without images: exit 1 */
    char empty[800];
    snprintf(empty, sizeof empty, "%s", tmp_path("empty-dir"));
    ck_assert_int_eq(mkdir(empty, 0755), 0);
    r = CLI("classify", "--model", model, "--labels", "cat,dog", empty);
    ck_assert_int_eq(r.rc, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "no image files"));
    ck_assert_str_eq(r.out, "");
    cli_free(&r);
    free_ref();
}
END_TEST

/* ---- the example program ---- */

START_TEST(test_example_classify) {
#ifdef PCLIP_EXAMPLE_CLASSIFY
    load_ref();
    const cJSON *c = ref_case("default");
    const cJSON *labels = cJSON_GetObjectItem(ref, "labels");
    char labels_arg[256] = "";
    for (const cJSON *l = labels->child; l; l = l->next)
        snprintf(labels_arg + strlen(labels_arg), sizeof labels_arg - strlen(labels_arg), "%s%s",
                 l == labels->child ? "" : ",", l->valuestring);
    char *argv[] = {PCLIP_EXAMPLE_CLASSIFY, (char *)pclip_test_fixture("tiny-clip"), labels_arg,
                    ref_paths[0], ref_paths[1], NULL};
    char *out, *err;
    int rc = pclip_test_exec(argv, &out, &err);
    ck_assert_msg(rc == 0, "%s", err);
    /* one line per image: PATH: LABEL (PROB) with the reference's best label */
    char *line = out;
    for (int i = 0; i < 2; i++) {
        const cJSON *prow = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "probs"), i);
        int best = 0;
        for (int j = 1; j < cJSON_GetArraySize(prow); j++)
            if (cJSON_GetArrayItem(prow, j)->valuedouble >
                cJSON_GetArrayItem(prow, best)->valuedouble)
                best = j;
        char want[8192 + 256];
        snprintf(want, sizeof want, "%s: %s (", ref_paths[i],
                 cJSON_GetArrayItem(labels, best)->valuestring);
        ck_assert_msg(strncmp(line, want, strlen(want)) == 0, "got %s, want %s", line, want);
        line += strlen(want);
        char *end;
        double prob = strtod(line, &end);
        ck_assert_msg(fabs(prob - cJSON_GetArrayItem(prow, best)->valuedouble) <= 1e-4,
                      "image %d: printed prob %.4f", i, prob);
        ck_assert_int_eq(strncmp(end, ")\n", 2), 0);
        line = end + 2;
    }
    ck_assert_str_eq(line, "");
    free(out);
    free(err);
    free_ref();
#else
    ck_abort_msg("the example program was not built");
#endif
}
END_TEST

int main(void) {
    if (!file_exists(pclip_test_cli())) {
        printf("skipped: the CLI is not built at %s\n", pclip_test_cli());
        return PCLIP_TEST_SKIP;
    }
    Suite *s = suite_create("cli_apps");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 120);
    tcase_add_test(core, test_classify_matches_reference);
    tcase_add_test(core, test_classify_text_and_tsv);
    tcase_add_test(core, test_score_matches_reference);
    tcase_add_test(core, test_embed_paths_and_skip_bad);
    tcase_add_test(core, test_example_classify);
    tcase_add_test(core, test_folders);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_set_timeout(limits, 120);
    tcase_add_test(limits, test_classify_usage_errors);
    tcase_add_test(limits, test_json_strings);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
