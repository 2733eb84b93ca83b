/* Shared helpers for the Check suites; see testutil.h. */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int pclip_test_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- the backend under test ---- */

void pclip_test_probe_backend(const char *suite, const char *backend, int32_t device) {
    char why[1024];
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "%s: pipe failed\n", suite);
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork failed\n", suite);
        exit(1);
    }
    if (pid == 0) {
        close(fds[0]);
        pclip_ctx_t ctx;
        pclip_backend_t b;
        if (pclip_ctx_create(&ctx)) _exit(1);
        pclip_status st = pclip_backend_create(ctx, backend, device, &b);
        if (st) {
            const char *msg = pclip_ctx_last_error(ctx);
            if (write(fds[1], msg, strlen(msg)) < 0) _exit(1);
            _exit(st == PCLIP_STATUS_BACKEND_UNAVAILABLE ? PCLIP_TEST_SKIP : 1);
        }
        pclip_backend_destroy(b);
        pclip_ctx_destroy(ctx);
        _exit(0);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t r;
    while (used + 1 < sizeof why && (r = read(fds[0], why + used, sizeof why - 1 - used)) > 0)
        used += (size_t)r;
    why[used] = '\0';
    close(fds[0]);
    int status;
    int code = waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code == 0) return;
    if (code == PCLIP_TEST_SKIP) {
        /* the message usually starts with the backend's name already */
        size_t k = strlen(backend);
        const char *reason =
            strncmp(why, backend, k) == 0 && strncmp(why + k, ": ", 2) == 0 ? why + k + 2 : why;
        printf("skipped: %s: %s\n", backend, reason);
        exit(PCLIP_TEST_SKIP);
    }
    fprintf(stderr, "%s: cannot open %s device %d: %s\n", suite, backend, (int)device, why);
    exit(1);
}

int pclip_test_backend_args(int argc, char **argv, const char **backend, int32_t *device) {
    const char *env = getenv("PCLIP_TEST_BACKEND");
    *backend = env && *env ? env : "cpu";
    *device = 0;
    int arg = 1;
    if (argc > 1 && argv[1][0] != '-') *backend = argv[arg++];
    env = getenv("PORTCLIP_DEVICE");
    if (strcmp(*backend, "cpu") != 0 && env && *env) *device = (int32_t)atoi(env);
    return arg;
}

/* ---- graphs and numbers ---- */

pclip_status pclip_test_run_graph(pclip_backend_t b, pclip__graph *g, int n_in,
                                  pclip__tensor *const *in, const void *const *data,
                                  pclip__tensor *out, float *y) {
    pclip__exec *e = NULL;
    pclip_status st = pclip__exec_create(b, g, &e);
    for (int i = 0; !st && i < n_in; i++) st = pclip__exec_write(e, in[i], data[i]);
    if (!st) st = pclip__exec_run(e);
    if (!st && out) st = pclip__exec_read(e, out, y);
    pclip__exec_destroy(e);
    return st;
}

float *pclip_test_ramp(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = scale * (float)((int)(i * 37 % 101) - 50) / 50.0f;
    return p;
}

double pclip_test_nmse(const float *t, const float *r, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)t[i] - r[i]) * ((double)t[i] - r[i]);
        den += (double)r[i] * r[i];
    }
    return den > 0 ? num / den : num;
}

double pclip_test_row_error(const float *got, const float *want, int64_t rows, int64_t cols,
                            int64_t *worst_row) {
    double worst = 0;
    if (worst_row) *worst_row = 0;
    for (int64_t r = 0; r < rows; r++) {
        double diff = 0, norm = 0;
        for (int64_t c = 0; c < cols; c++) {
            double a = got[r * cols + c], b = want[r * cols + c];
            diff += (a - b) * (a - b);
            norm += b * b;
        }
        double rel = sqrt(diff / (norm > 0 ? norm : 1));
        if (!isfinite(rel) || rel > worst) {
            worst = rel;
            if (worst_row) *worst_row = r;
            if (!isfinite(rel)) break;
        }
    }
    return worst;
}

/* ---- files ---- */

static char *rotating_buffer(void) {
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next];
    next = (next + 1) % 8;
    return b;
}

const char *pclip_test_fixture(const char *rel) {
    char *b = rotating_buffer();
    snprintf(b, 4096, "%s/%s", PCLIP_FIXTURES_DIR, rel);
    return b;
}

const char *pclip_test_shared_bpe(const char *rel) {
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/vocab.json", PCLIP_SHARED_BPE_DIR);
    struct stat st;
    if (stat(probe, &st) != 0) return NULL;
    char *b = rotating_buffer();
    snprintf(b, 4096, "%s/%s", PCLIP_SHARED_BPE_DIR, rel);
    return b;
}

char *pclip_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_msg(fread(buf, 1, (size_t)n, f) == (size_t)n, "short read on %s", path);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

cJSON *pclip_test_load_json(const char *rel) {
    char *text = pclip_test_read_file(pclip_test_fixture(rel), NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "cannot parse %s", rel);
    return j;
}

void pclip_test_npy_read(const char *path, pclip_test_npy *out) {
    size_t len;
    char *buf = pclip_test_read_file(path, &len);
    ck_assert_msg(len >= 10 && memcmp(buf, "\x93NUMPY", 6) == 0, "%s: not a .npy file", path);
    int major = (unsigned char)buf[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8);
        hoff = 10;
    } else {
        hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8) |
               ((size_t)(unsigned char)buf[10] << 16) | ((size_t)(unsigned char)buf[11] << 24);
        hoff = 12;
    }
    ck_assert_msg(hoff + hlen <= len, "%s: truncated header", path);
    char *hdr = strndup(buf + hoff, hlen);
    ck_assert_msg(strstr(hdr, "'descr': '<f4'") != NULL, "%s: not float32: %s", path, hdr);
    ck_assert_msg(strstr(hdr, "'fortran_order': False") != NULL, "%s: not C order", path);
    char *sh = strstr(hdr, "'shape': (");
    ck_assert_ptr_nonnull(sh);
    sh += strlen("'shape': (");
    memset(out, 0, sizeof *out);
    out->count = 1;
    while (*sh && *sh != ')') {
        char *end;
        long long v = strtoll(sh, &end, 10);
        if (end == sh) {
            sh++;
            continue;
        }
        ck_assert_int_lt(out->ndim, 8);
        out->shape[out->ndim++] = v;
        out->count *= (size_t)v;
        sh = end;
    }
    free(hdr);
    size_t data_off = hoff + hlen;
    ck_assert_msg(len - data_off == out->count * 4, "%s: %zu data bytes for %zu floats", path,
                  len - data_off, out->count);
    out->data = malloc(out->count * 4 + 1);
    memcpy(out->data, buf + data_off, out->count * 4);
    free(buf);
}

void pclip_test_npy_free(pclip_test_npy *a) {
    free(a->data);
    a->data = NULL;
}

const char *pclip_test_tmpdir(void) {
    static char dir[256];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pclip-test-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static char *slurp_fd(FILE *f) {
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t r;
    while ((r = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) s = realloc(s, cap *= 2);
    }
    s[n] = '\0';
    return s;
}

int pclip_test_sh(const char *cmd, char **out, char **err) {
    const char *dir = pclip_test_tmpdir();
    char errpath[512], full[16384];
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    snprintf(full, sizeof full, "(%s) 2>'%s'", cmd, errpath);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    char *o = slurp_fd(p);
    int status = pclose(p);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    FILE *e = fopen(errpath, "r");
    char *es = e ? slurp_fd(e) : strdup("");
    if (e) fclose(e);
    unlink(errpath);
    rmdir(dir);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = es;
    else
        free(es);
    return rc;
}

int pclip_test_exec(char *const argv[], char **out, char **err) {
    const char *dir = pclip_test_tmpdir();
    char opath[512], epath[512];
    snprintf(opath, sizeof opath, "%s/stdout", dir);
    snprintf(epath, sizeof epath, "%s/stderr", dir);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(opath, "wb", stdout) || !freopen(epath, "wb", stderr)) _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    FILE *o = fopen(opath, "rb"), *e = fopen(epath, "rb");
    char *os = o ? slurp_fd(o) : strdup(""), *es = e ? slurp_fd(e) : strdup("");
    if (o) fclose(o);
    if (e) fclose(e);
    unlink(opath);
    unlink(epath);
    rmdir(dir);
    if (out)
        *out = os;
    else
        free(os);
    if (err)
        *err = es;
    else
        free(es);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *pclip_test_cli(void) { return PCLIP_CLI_PATH; }

uint64_t pclip_test_fnv1a64(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
