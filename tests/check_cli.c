/* The command-line contract (CLI.md): `tokenize` and `preprocess` against the
 * fixtures written by the PyTorch script, and the error behaviour: a message
 * naming the bad input, a non-zero exit, nothing on stdout, and no output
 * file (an existing one stays as it was). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define MAX_ARGS 512

typedef struct cli_run {
    int rc;
    char *out, *err;
} cli_run;

/* Runs the CLI with the given arguments (NULL-terminated list). */
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

static const char *tmp_path(const char *name) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 1024, "%s/%s", pclip_test_tmpdir(), name);
    return b;
}

/* ---- tokenize ---- */

/* Marks the captions whose JSON text holds an escaped NUL (they cannot be
 * passed as a command-line argument). captions.json is a flat array of strings. */
static void captions_with_nul(bool *has_nul, int max) {
    char *raw = pclip_test_read_file(pclip_test_fixture("captions.json"), NULL);
    int k = -1;
    bool in_str = false;
    for (char *p = raw; *p; p++) {
        if (!in_str) {
            if (*p == '"') {
                in_str = true;
                if (++k < max) has_nul[k] = false;
            }
        } else if (*p == '\\') {
            if (strncmp(p, "\\u0000", 6) == 0 && k < max) has_nul[k] = true;
            p++;
        } else if (*p == '"') {
            in_str = false;
        }
    }
    free(raw);
}

/* All captions without a newline go through the CLI in one call; each output
 * line must equal the reference ids. */
START_TEST(test_tokenize_matches_reference) {
    cJSON *caps = pclip_test_load_json("captions.json");
    cJSON *ref = pclip_test_load_json("tokens_tiny.json");
    cJSON *ids = cJSON_GetObjectItem(ref, "ids");
    const char *args[MAX_ARGS];
    int idx[MAX_ARGS];
    int n = 0, k = 0;
    args[n++] = "tokenize";
    args[n++] = "--model";
    args[n++] = pclip_test_fixture("tiny-clip");
    args[n++] = "--";
    int first_text = n;
    static bool has_nul[4096];
    captions_with_nul(has_nul, 4096);
    for (cJSON *c = caps->child; c && n < MAX_ARGS - 2; c = c->next, k++) {
        /* a text starting with '-' is fine after "--" */
        if (strchr(c->valuestring, '\n') || strlen(c->valuestring) > 4096 || (k < 4096 && has_nul[k]))
            continue;
        idx[n - first_text] = k;
        args[n++] = c->valuestring;
    }
    args[n] = NULL;
    ck_assert_int_gt(n - first_text, 20);
    cli_run r = cli_v(args);
    ck_assert_msg(r.rc == 0, "exit %d: %s", r.rc, r.err);
    char *line = r.out;
    for (int t = 0; t < n - first_text; t++) {
        char *nl = strchr(line, '\n');
        ck_assert_msg(nl != NULL, "only %d lines of output", t);
        *nl = '\0';
        cJSON *want = cJSON_GetArrayItem(ids, idx[t]);
        char expect[77 * 8] = "";
        size_t u = 0;
        for (cJSON *v = want->child; v; v = v->next)
            u += (size_t)snprintf(expect + u, sizeof expect - u, v == want->child ? "%d" : " %d",
                                  v->valueint);
        ck_assert_msg(strcmp(line, expect) == 0, "caption %d (%s):\n got  %s\n want %s", idx[t],
                      args[first_text + t], line, expect);
        line = nl + 1;
    }
    ck_assert_str_eq(line, "");
    cli_free(&r);
    cJSON_Delete(caps);
    cJSON_Delete(ref);
}
END_TEST

START_TEST(test_tokenize_texts_file) {
    const char *list = tmp_path("texts.txt");
    FILE *f = fopen(list, "wb");
    fputs("a photo of a cat\r\n\nA PHOTO OF A CAT\n", f);
    fclose(f);
    cli_run r = CLI("tokenize", "--model", pclip_test_fixture("tiny-clip"), "--texts-file", list);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    /* three lines: the empty line is an empty text */
    char *l1 = r.out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    ck_assert_int_eq(strncmp(l1, l3, (size_t)(l2 - l1)), 0); /* lower-casing */
    int lines = 0;
    for (char *p = r.out; *p; p++) lines += *p == '\n';
    ck_assert_int_eq(lines, 3);
    int count = 0;
    for (char *p = l2; *p != '\n'; p++) count += *p == ' ';
    ck_assert_int_eq(count, 76);
    cli_free(&r);
}
END_TEST

START_TEST(test_tokenize_errors) {
    cli_run r = CLI("tokenize", "--model", pclip_test_fixture("tiny-clip"), "ok", "bad \xff text");
    ck_assert_int_ne(r.rc, 0);
    ck_assert_str_eq(r.out, "");
    ck_assert_msg(strstr(r.err, "text 2") && strstr(r.err, "UTF-8"), "%s", r.err);
    cli_free(&r);
    r = CLI("tokenize", "--model", "/nonexistent-model", "x");
    ck_assert_int_ne(r.rc, 0);
    ck_assert_msg(strstr(r.err, "/nonexistent-model"), "%s", r.err);
    ck_assert_str_eq(r.out, "");
    cli_free(&r);
    r = CLI("tokenize", "x");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "--model"), "%s", r.err);
    cli_free(&r);
    r = CLI("frobnicate");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "frobnicate"), "%s", r.err);
    cli_free(&r);
    r = CLI("tokenize", "--model", pclip_test_fixture("tiny-clip"), "--bogus", "x");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "--bogus"), "%s", r.err);
    cli_free(&r);
}
END_TEST

START_TEST(test_tokenize_long_text) {
    size_t n = 100 * 1024;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++) text[i] = "abc de"[i % 6];
    text[n] = '\0';
    cli_run r = CLI("tokenize", "--model", pclip_test_fixture("tiny-clip"), text);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    int spaces = 0;
    for (char *p = r.out; *p; p++) spaces += *p == ' ';
    ck_assert_int_eq(spaces, 76);
    /* the last id is end-of-text: the text was truncated, not dropped */
    char *last = strrchr(r.out, ' ') + 1;
    cJSON *vocab = pclip_test_load_json("tiny-clip/vocab.json");
    ck_assert_int_eq(atoi(last), cJSON_GetObjectItem(vocab, "<|endoftext|>")->valueint);
    cJSON_Delete(vocab);
    cli_free(&r);
    free(text);
}
END_TEST

/* ---- preprocess ---- */

/* The names listed in pixels/<cfg>.txt, as full paths. */
static int image_list(const char *cfg, char **paths, int max) {
    char rel[256];
    snprintf(rel, sizeof rel, "pixels/%s.txt", cfg);
    char *text = pclip_test_read_file(pclip_test_fixture(rel), NULL);
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        char img[512];
        snprintf(img, sizeof img, "images/%s", line);
        paths[n++] = strdup(pclip_test_fixture(img));
    }
    free(text);
    return n;
}

static void check_preprocess(const char *mode) {
    char *images[256];
    int n = image_list("s32", images, 256);
    ck_assert_int_gt(n, 10);
    const char *out = tmp_path("pixels.npy");
    const char *args[300];
    int a = 0;
    args[a++] = "preprocess";
    args[a++] = "--model";
    args[a++] = pclip_test_fixture("tiny-clip");
    args[a++] = "--preprocess";
    args[a++] = mode;
    args[a++] = "--output";
    args[a++] = out;
    for (int i = 0; i < n; i++) args[a++] = images[i];
    args[a] = NULL;
    cli_run r = cli_v(args);
    ck_assert_msg(r.rc == 0, "exit %d: %s", r.rc, r.err);
    ck_assert_str_eq(r.out, "");
    pclip_test_npy got, want;
    pclip_test_npy_read(out, &got);
    char rel[64];
    snprintf(rel, sizeof rel, "pixels/s32_%s.npy", mode);
    pclip_test_npy_read(pclip_test_fixture(rel), &want);
    ck_assert_int_eq(got.ndim, 4);
    ck_assert_int_eq(got.shape[0], n);
    ck_assert_int_eq(got.shape[1], 3);
    ck_assert_int_eq(got.shape[2], 32);
    ck_assert_int_eq(got.shape[3], 32);
    ck_assert_uint_eq(got.count, want.count);
    size_t per = got.count / (size_t)n;
    for (size_t i = 0; i < got.count; i++)
        ck_assert_msg(fabsf(got.data[i] - want.data[i]) <= 1e-6f,
                      "%s: image %s, value %zu: %.9g, reference %.9g", mode, images[i / per],
                      i % per, got.data[i], want.data[i]);
    pclip_test_npy_free(&got);
    pclip_test_npy_free(&want);
    cli_free(&r);
    for (int i = 0; i < n; i++) free(images[i]);
}

START_TEST(test_preprocess_openai) { check_preprocess("openai"); }
END_TEST

START_TEST(test_preprocess_hf) { check_preprocess("hf"); }
END_TEST

START_TEST(test_preprocess_bad_image_writes_nothing) {
    const char *out = tmp_path("pixels.npy");
    FILE *f = fopen(out, "wb");
    fputs("previous", f);
    fclose(f);
    static const char *const bad[] = {"bad/truncated.jpg", "bad/garbage.jpg", "bad/huge.png",
                                      "bad/text.txt", "bad/empty.jpg", "no-such-file.png"};
    /* (a folder is an input like a file: check_cli_apps reads one) */
    char *images[4];
    int n_images = image_list("s32", images, 4);
    ck_assert_int_ge(n_images, 2);
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        const char *badpath = pclip_test_fixture(bad[b]);
        cli_run r = CLI("preprocess", "--model", pclip_test_fixture("tiny-clip"), "--output", out,
                        images[0], badpath, images[1]);
        ck_assert_int_eq(r.rc, 1);
        ck_assert_msg(strstr(r.err, badpath), "%s: message does not name the file: %s", bad[b],
                      r.err);
        char *kept = pclip_test_read_file(out, NULL);
        ck_assert_str_eq(kept, "previous");
        free(kept);
        cli_free(&r);
    }
    /* no temp file left in the output's folder */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", out);
    *strrchr(dir, '/') = '\0';
    char cmd[1200], *ls;
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    pclip_test_sh(cmd, &ls, NULL);
    ck_assert_str_eq(ls, "pixels.npy\n");
    free(ls);
    /* a fresh output path is not created at all */
    const char *fresh = tmp_path("new.npy");
    cli_run r = CLI("preprocess", "--model", pclip_test_fixture("tiny-clip"), "--output", fresh,
                    images[0], pclip_test_fixture("bad/truncated.png"));
    ck_assert_int_eq(r.rc, 1);
    ck_assert(!file_exists(fresh));
    cli_free(&r);
    for (int i = 0; i < n_images; i++) free(images[i]);
}
END_TEST

START_TEST(test_preprocess_usage_errors) {
    cli_run r = CLI("preprocess", "--model", pclip_test_fixture("tiny-clip"), "x.png");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "--output"), "%s", r.err);
    cli_free(&r);
    r = CLI("preprocess", "--model", pclip_test_fixture("tiny-clip"), "--preprocess", "torch",
            "--output", "x.npy", "x.png");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "torch"), "%s", r.err);
    cli_free(&r);
    r = CLI("preprocess", "--model", pclip_test_fixture("tiny-clip"), "--output",
            "/nonexistent-dir/x.npy", pclip_test_fixture("images/rgb_37x23.jpg"));
    ck_assert_int_eq(r.rc, 1);
    ck_assert_msg(strstr(r.err, "/nonexistent-dir/x.npy"), "%s", r.err);
    cli_free(&r);
}
END_TEST

/* ---- devices and verify ---- */

START_TEST(test_devices_and_verify) {
    cli_run r = CLI("devices");
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "CPU reference (plain C)"));
    ck_assert_ptr_nonnull(strstr(r.out, "auto -> "));
    cli_free(&r);
    r = CLI("verify", "--backend", "cpu", "--model", pclip_test_fixture("tiny-clip"));
    ck_assert_msg(r.rc == 0, "exit %d: %s\n%s", r.rc, r.err, r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "image encoder"));
    ck_assert_ptr_nonnull(strstr(r.out, "1 device checked, 0 failures"));
    ck_assert_ptr_null(strstr(r.out, "FAIL"));
    cli_free(&r);
    r = CLI("verify", "--backend", "cuda");
    ck_assert_int_eq(r.rc, 1);
    ck_assert_ptr_nonnull(strstr(r.out, "cuda"));
    cli_free(&r);
}
END_TEST

/* ---- embed ---- */

START_TEST(test_embed_matches_reference) {
    /* tiny-clip/reference: image rows of pixels/s32_openai.npy; run the CLI
     * on those images and compare with the PyTorch embeddings. */
    cJSON *ref = pclip_test_load_json("tiny-clip/reference/reference.json");
    cJSON *imgs = cJSON_GetObjectItem(ref, "images");
    const char *args[64];
    int a = 0;
    const char *out = tmp_path("img.npy");
    args[a++] = "embed-image";
    args[a++] = "--model";
    args[a++] = pclip_test_fixture("tiny-clip");
    args[a++] = "--no-normalize";
    args[a++] = "--batch-size";
    args[a++] = "4"; /* several batches: the prefetch path */
    args[a++] = "--output";
    args[a++] = out;
    char paths[32][512];
    int n = 0;
    for (cJSON *i = imgs->child; i && n < 32; i = i->next, n++) {
        snprintf(paths[n], sizeof paths[n], "%s/images/%s", PCLIP_FIXTURES_DIR, i->valuestring);
        args[a++] = paths[n];
    }
    args[a] = NULL;
    cli_run r = cli_v(args);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    pclip_test_npy got, want;
    pclip_test_npy_read(out, &got);
    pclip_test_npy_read(pclip_test_fixture("tiny-clip/reference/image_embeds.npy"), &want);
    ck_assert_uint_eq(got.count, want.count);
    for (int64_t row = 0; row < want.shape[0]; row++) {
        double diff = 0, norm = 0;
        for (int64_t c = 0; c < want.shape[1]; c++) {
            double x = got.data[row * want.shape[1] + c], y = want.data[row * want.shape[1] + c];
            diff += (x - y) * (x - y);
            norm += y * y;
        }
        ck_assert_msg(sqrt(diff / norm) <= 1e-5, "image %s: relative error %g", paths[row],
                      sqrt(diff / norm));
    }
    pclip_test_npy_free(&got);
    pclip_test_npy_free(&want);
    cli_free(&r);
    /* embed-text: rows are unit length */
    r = CLI("embed-text", "--model", pclip_test_fixture("tiny-clip"), "--output", out, "a photo of a cat", "");
    ck_assert_msg(r.rc == 0, "%s", r.err);
    pclip_test_npy_read(out, &got);
    ck_assert_int_eq(got.shape[0], 2);
    for (int row = 0; row < 2; row++) {
        double ss = 0;
        for (int64_t c = 0; c < got.shape[1]; c++) ss += got.data[row * got.shape[1] + c] * got.data[row * got.shape[1] + c];
        ck_assert_double_eq_tol(ss, 1.0, 1e-5);
    }
    pclip_test_npy_free(&got);
    cli_free(&r);
    cJSON_Delete(ref);
}
END_TEST

/* ---- the command table: options, help, version ---- */

/* An option another command takes, an unknown one, a missing value, a flag
 * given a value and bad integers are usage errors (exit 2) that name the
 * option (and the command), with nothing on stdout. */
START_TEST(test_usage_errors_name_option_and_command) {
    const char *model = pclip_test_fixture("tiny-clip");
    const char *img = pclip_test_fixture("images/rgb_37x23.jpg");
    const char *out = tmp_path("never.npy");
    cli_run r = CLI("tokenize", "--model", model, "--batch-size", "3", "x");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "tokenize does not take --batch-size"), "%s", r.err);
    ck_assert_msg(strstr(r.err, "portclip help tokenize"), "%s", r.err);
    ck_assert_str_eq(r.out, "");
    cli_free(&r);
    r = CLI("devices", "--model", model);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "devices") && strstr(r.err, "--model"), "%s", r.err);
    cli_free(&r);
    r = CLI("embed-text", "--model", model, "--output", out, "--batch-size=4", "x");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "embed-text") && strstr(r.err, "--batch-size"), "%s", r.err);
    cli_free(&r);
    /* missing value: the option is last */
    r = CLI("embed-text", "--model", model, "x", "--output");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "--output") && strstr(r.err, "value"), "%s", r.err);
    cli_free(&r);
    r = CLI("embed-image", "--model", model, "--output", out, "--no-normalize=1", img);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "--no-normalize"), "%s", r.err);
    cli_free(&r);
    /* --device is checked the same way by every command that takes it */
    const char *bad_devices[] = {"abc", "-1", "1x", "", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_devices / sizeof bad_devices[0]; i++) {
        r = CLI("verify", "--backend", "cpu", "--device", bad_devices[i]);
        ck_assert_msg(r.rc == 2, "verify --device '%s': exit %d", bad_devices[i], r.rc);
        ck_assert_msg(strstr(r.err, "--device"), "%s", r.err);
        ck_assert_str_eq(r.out, "");
        cli_free(&r);
        r = CLI("embed-image", "--model", model, "--output", out, "--device", bad_devices[i], img);
        ck_assert_msg(r.rc == 2, "embed-image --device '%s': exit %d", bad_devices[i], r.rc);
        ck_assert_msg(strstr(r.err, "--device"), "%s", r.err);
        cli_free(&r);
        char eq[64];
        snprintf(eq, sizeof eq, "--device=%s", bad_devices[i]);
        r = CLI("embed-text", "--model", model, "--output", out, eq, "x");
        ck_assert_msg(r.rc == 2, "embed-text %s: exit %d", eq, r.rc);
        cli_free(&r);
    }
    r = CLI("embed-image", "--model", model, "--output", out, "--batch-size", "0", img);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "--batch-size") && strstr(r.err, "'0'"), "%s", r.err);
    cli_free(&r);
    r = CLI("devices", "extra");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "extra"), "%s", r.err);
    cli_free(&r);
    r = CLI("--model", model, "tokenize", "x");
    ck_assert_int_eq(r.rc, 2);
    cli_free(&r);
    ck_assert(!file_exists(out));
}
END_TEST

/* `--x=V` reads like `--x V`, and list files may be given more than once. */
START_TEST(test_option_forms) {
    const char *model = pclip_test_fixture("tiny-clip");
    const char *list1 = tmp_path("a.txt"), *list2 = tmp_path("b.txt");
    FILE *f = fopen(list1, "wb");
    fputs("a cat\n", f);
    fclose(f);
    f = fopen(list2, "wb");
    fputs("a dog\n", f);
    fclose(f);
    char model_eq[1100];
    snprintf(model_eq, sizeof model_eq, "--model=%s", model);
    char list2_eq[1100];
    snprintf(list2_eq, sizeof list2_eq, "--texts-file=%s", list2);
    cli_run a = CLI("tokenize", model_eq, "--texts-file", list1, "a bird", list2_eq);
    ck_assert_msg(a.rc == 0, "exit %d: %s", a.rc, a.err);
    cli_run b = CLI("tokenize", "--model", model, "a bird", "a cat", "a dog");
    ck_assert_msg(b.rc == 0, "exit %d: %s", b.rc, b.err);
    ck_assert_str_eq(a.out, b.out);
    cli_free(&a);
    cli_free(&b);
}
END_TEST

/* `help CMD`, `CMD --help` and `CMD -h`: that command's synopsis and its own
 * options only, on stdout, exit 0. */
START_TEST(test_help_per_command) {
    static const struct {
        const char *cmd;
        const char *has[4];
        const char *lacks[4];
    } cases[] = {
        {"tokenize", {"--model", "--texts-file"}, {"--batch-size", "--output", "--device"}},
        {"embed-image",
         {"--batch-size", "--images-file", "--device", "--preprocess"},
         {"--texts-file"}},
        {"embed-text", {"--output", "--no-normalize", "--backend"}, {"--batch-size", "--images-file"}},
        {"devices", {"devices"}, {"--model", "--backend"}},
        {"verify", {"--model", "--backend", "--device"}, {"--output"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cli_run runs[3] = {CLI("help", cases[c].cmd), CLI(cases[c].cmd, "--help"),
                           CLI(cases[c].cmd, "-h")};
        for (int k = 0; k < 3; k++) {
            cli_run *r = &runs[k];
            ck_assert_msg(r->rc == 0, "%s (form %d): exit %d: %s", cases[c].cmd, k, r->rc, r->err);
            ck_assert_msg(!strstr(r->err, "portclip: error"), "%s", r->err);
            ck_assert_msg(strstr(r->out, cases[c].cmd), "%s", r->out);
            for (int i = 0; i < 4 && cases[c].has[i]; i++)
                ck_assert_msg(strstr(r->out, cases[c].has[i]), "%s: no %s in\n%s", cases[c].cmd,
                              cases[c].has[i], r->out);
            for (int i = 0; i < 4 && cases[c].lacks[i]; i++)
                ck_assert_msg(!strstr(r->out, cases[c].lacks[i]), "%s: %s in\n%s", cases[c].cmd,
                              cases[c].lacks[i], r->out);
            ck_assert_str_eq(r->out, runs[0].out);
        }
        for (int k = 0; k < 3; k++) cli_free(&runs[k]);
    }
    /* help with no command: every command, short */
    cli_run r = CLI("help");
    ck_assert_int_eq(r.rc, 0);
    static const char *const all[] = {"tokenize", "preprocess", "embed-text", "embed-image",
                                      "devices",  "verify"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ck_assert_msg(strstr(r.out, all[i]), "no %s in\n%s", all[i], r.out);
    cli_run h = CLI("--help");
    ck_assert_int_eq(h.rc, 0);
    ck_assert_str_eq(h.out, r.out);
    cli_free(&h);
    cli_free(&r);
    r = CLI("help", "frobnicate");
    ck_assert_int_eq(r.rc, 2);
    ck_assert_msg(strstr(r.err, "frobnicate"), "%s", r.err);
    cli_free(&r);
}
END_TEST

START_TEST(test_version) {
    cli_run r = CLI("--version");
    ck_assert_msg(r.rc == 0, "%s", r.err);
    char want[64];
    snprintf(want, sizeof want, "portclip %s\n", pclip_version());
    ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
    ck_assert_msg(strstr(r.out, "cpu"), "%s", r.out);
    /* the libraries, through the library's own function */
    char libs[256];
    snprintf(libs, sizeof libs, "libraries: %s\n", pclip_library_versions());
    ck_assert_msg(strstr(r.out, libs), "%s", r.out);
    ck_assert_msg(strstr(libs, "oneDNN ") && strstr(libs, "libjpeg") && strstr(libs, "libpng ") &&
                      strstr(libs, "SQLite "),
                  "%s", libs);
    cli_free(&r);
}
END_TEST

/* The man page holds every command's usage and every option help line that
 * `portclip help CMD` prints (one source: the command table). */
START_TEST(test_man_page_matches_help) {
    cli_run man = CLI("help", "--man");
    ck_assert_msg(man.rc == 0, "%s", man.err);
    ck_assert_msg(strncmp(man.out, ".TH PORTCLIP 1 ", 15) == 0, "%.80s", man.out);
    static const char *const cmds[] = {"tokenize", "preprocess", "embed-text", "embed-image",
                                       "classify", "score", "index", "search", "devices",
                                       "verify"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char head[64] = "\n.SS \"portclip ";
        size_t k = strlen(head);
        for (const char *p = cmds[i]; *p && k + 3 < sizeof head; p++) {
            if (*p == '-') head[k++] = '\\'; /* roff's minus */
            head[k++] = *p;
        }
        head[k] = '\0';
        ck_assert_msg(strstr(man.out, head), "man page lacks %s", cmds[i]);
        cli_run help = CLI("help", cmds[i]);
        ck_assert_msg(help.rc == 0, "%s", help.err);
        /* each option line "  --name VALUE   help": its name, escaped for roff, is there */
        for (char *line = strstr(help.out, "\n  --"); line; line = strstr(line + 1, "\n  --")) {
            char name[64], roff[128];
            if (sscanf(line + 3, "%63s", name) != 1) continue;
            size_t k = 0;
            for (const char *p = name; *p && k + 3 < sizeof roff; p++) {
                if (*p == '-') roff[k++] = '\\';
                roff[k++] = *p;
            }
            roff[k] = '\0';
            ck_assert_msg(strstr(man.out, roff), "man page lacks %s of %s", name, cmds[i]);
        }
        cli_free(&help);
    }
    cli_run comp = CLI("help", "--bash-completion");
    ck_assert_msg(comp.rc == 0, "%s", comp.err);
    ck_assert_msg(strstr(comp.out, "complete -F _portclip portclip"), "%s", comp.out);
    ck_assert_msg(strstr(comp.out, "--top-k"), "%s", comp.out);
    cli_free(&comp);
    cli_free(&man);
}
END_TEST

/* A --model that is no folder but looks like a Hub id says how to download it. */
START_TEST(test_hub_id_hint) {
    cli_run r = CLI("tokenize", "--model", "openai/clip-vit-base-patch32", "a cat");
    ck_assert_int_eq(r.rc, 1);
    ck_assert_msg(strstr(r.err, "Hugging Face Hub id") &&
                      strstr(r.err, "https://huggingface.co/openai/clip-vit-base-patch32") &&
                      strstr(r.err, "huggingface-cli download"),
                  "%s", r.err);
    cli_free(&r);
    /* a path that is not Hub-shaped keeps the plain error */
    r = CLI("tokenize", "--model", "no/such/dir", "a cat");
    ck_assert_int_eq(r.rc, 1);
    ck_assert_msg(!strstr(r.err, "Hub id") && strstr(r.err, "cannot open"), "%s", r.err);
    cli_free(&r);
}
END_TEST

/* A failed write to stdout is an error (exit 1), for output and usage alike. */
START_TEST(test_stdout_full) {
    if (!file_exists("/dev/full")) return;
    static const char *const args[] = {"devices", "--help", "help tokenize", "--version"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        char cmd[1200], *err = NULL;
        snprintf(cmd, sizeof cmd, "'%s' %s > /dev/full", pclip_test_cli(), args[i]);
        int rc = pclip_test_sh(cmd, NULL, &err);
        ck_assert_msg(rc == 1, "%s: exit %d", cmd, rc);
        ck_assert_msg(strstr(err, "stdout"), "%s: %s", cmd, err);
        free(err);
    }
}
END_TEST

int main(void) {
    if (!file_exists(pclip_test_cli())) {
        printf("skipped: the CLI is not built at %s\n", pclip_test_cli());
        return PCLIP_TEST_SKIP;
    }
    Suite *s = suite_create("cli");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 120);
    tcase_add_test(core, test_tokenize_matches_reference);
    tcase_add_test(core, test_tokenize_texts_file);
    tcase_add_test(core, test_preprocess_openai);
    tcase_add_test(core, test_preprocess_hf);
    tcase_add_test(core, test_devices_and_verify);
    tcase_add_test(core, test_embed_matches_reference);
    tcase_add_test(core, test_help_per_command);
    tcase_add_test(core, test_version);
    tcase_add_test(core, test_man_page_matches_help);
    tcase_add_test(core, test_hub_id_hint);
    tcase_add_test(core, test_option_forms);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_set_timeout(limits, 120);
    tcase_add_test(limits, test_tokenize_errors);
    tcase_add_test(limits, test_tokenize_long_text);
    tcase_add_test(limits, test_preprocess_bad_image_writes_nothing);
    tcase_add_test(limits, test_preprocess_usage_errors);
    tcase_add_test(limits, test_usage_errors_name_option_and_command);
    tcase_add_test(limits, test_stdout_full);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
