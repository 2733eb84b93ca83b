/* Data safety of the CLI: every output file is written to a temp file
 * OUT.tmp.<16 random hex digits> and renamed over OUT only when complete, so a command that fails or is killed
 * leaves the previous OUT exactly as it was, never a partial file.
 *
 * A SIGKILL cannot be cleaned up after: the killed run's OUT.tmp.<hex> stays
 * behind. portclip leaves such files alone (it cannot tell a dead run's temp
 * file from a live one's, on a shared disk least of all) and never reads
 * them; they are safe to delete. A run that fails on its own removes its
 * temp file. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define TINY "tiny-clip"
#define IMAGE "images/j_rgb420_64x48.jpg"
#define N_LIST 30000 /* images in the batch that is killed (seconds of work) */

static const char *join(const char *dir, const char *name) {
    static char bufs[4][1024];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The path of the one file in `dir` whose name starts with `prefix`, into
 * out; false when there is none. */
static bool find_prefixed(const char *dir, const char *prefix, char *out, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(out, cap, "%s/%s", dir, e->d_name);
            found = true;
        }
    closedir(d);
    return found;
}

/* The names in `dir`, sorted, one per line. */
static char *listing(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    char *out = NULL;
    ck_assert_int_eq(pclip_test_sh(cmd, &out, NULL), 0);
    return out;
}

/* Writes a list file naming `path` n times, with `bad` (if not NULL) at line `bad_at`. */
static void write_list(const char *list, const char *path, int n, const char *bad, int bad_at) {
    FILE *f = fopen(list, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++) fprintf(f, "%s\n", bad && i == bad_at ? bad : path);
    fclose(f);
}

/* Runs the CLI to completion; returns its exit status. */
static int cli(char *const argv[], char **err) {
    char *e = NULL;
    int rc = pclip_test_exec(argv, NULL, &e);
    if (err)
        *err = e;
    else
        free(e);
    return rc;
}

/* The previous result that the runs below must not damage: a complete
 * embed-image output of two images. Returns its bytes. */
static char *previous_output(const char *out, size_t *len) {
    char *argv[] = {(char *)pclip_test_cli(),
                    "embed-image",
                    "--model",
                    (char *)pclip_test_fixture(TINY),
                    "--output",
                    (char *)out,
                    "--backend",
                    "cpu",
                    (char *)pclip_test_fixture(IMAGE),
                    (char *)pclip_test_fixture(IMAGE),
                    NULL};
    char *err;
    int rc = cli(argv, &err);
    ck_assert_msg(rc == 0, "embed-image failed: %s", err);
    free(err);
    return pclip_test_read_file(out, len);
}

static void assert_same_file(const char *path, const char *want, size_t want_len, const char *why) {
    size_t len;
    char *got = pclip_test_read_file(path, &len);
    ck_assert_msg(len == want_len && memcmp(got, want, len) == 0,
                  "%s: %s changed (%zu bytes, was %zu)", why, path, len, want_len);
    free(got);
}

/* embed-image over 30000 images, killed with SIGKILL 0.3 s after its first
 * rows reached its temp file: the previous output is intact, the killed run's partial
 * data sits only in OUT.tmp.<hex>, and a later run of the same command
 * completes, replaces OUT, and leaves the stale temp file alone. */
START_TEST(test_kill_embed_image) {
    char dir[300], out[600], list[600], tmp[700];
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir()); /* a static buffer, reused */
    snprintf(out, sizeof out, "%s", join(dir, "out.npy"));
    snprintf(list, sizeof list, "%s", join(dir, "images.txt"));
    size_t prev_len;
    char *prev = previous_output(out, &prev_len);
    write_list(list, pclip_test_fixture(IMAGE), N_LIST, NULL, 0);

    char *argv[] = {(char *)pclip_test_cli(),
                    "embed-image",
                    "--model",
                    (char *)pclip_test_fixture(TINY),
                    "--output",
                    out,
                    "--batch-size",
                    "8",
                    "--backend",
                    "cpu",
                    "--images-file",
                    list,
                    NULL};
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "wb", stdout) || !freopen("/dev/null", "wb", stderr)) _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    /* wait until rows reach the temp file (stdio writes it 4 KiB at a time):
     * the model is loaded and batches are being written */
    double t0 = now_s();
    int status = 0;
    pid_t done = 0;
    struct stat st;
    tmp[0] = '\0';
    while (!(find_prefixed(dir, "out.npy.tmp.", tmp, sizeof tmp) && stat(tmp, &st) == 0 &&
             st.st_size > 0) &&
           (done = waitpid(pid, &status, WNOHANG)) == 0 && now_s() - t0 < 60)
        sleep_s(0.005);
    ck_assert_msg(done == 0, "embed-image ended (status 0x%x) before writing to its temp file",
                  status);
    ck_assert_msg(exists(tmp), "no temp file %s after %.1f s", tmp, now_s() - t0);
    sleep_s(0.3);
    done = waitpid(pid, &status, WNOHANG);
    ck_assert_msg(done == 0,
                  "embed-image finished %d images within 0.3 s of its first write: the "
                  "kill came too late to test anything (status 0x%x)",
                  N_LIST, status);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* the previous output, byte for byte */
    assert_same_file(out, prev, prev_len, "after SIGKILL");
    /* the partial data is only in the killed run's temp file, and is partial:
     * fewer rows than the N_LIST x 24 floats (plus the 128-byte header) */
    ck_assert_int_eq(stat(tmp, &st), 0);
    ck_assert_msg(st.st_size > 0 && (size_t)st.st_size < 128 + (size_t)N_LIST * 24 * 4,
                  "the killed run's temp file holds %lld bytes: it was complete",
                  (long long)st.st_size);
    fprintf(stderr, "test_kill_embed_image: killed after %.2f s; %s holds %lld bytes\n",
            now_s() - t0, tmp, (long long)st.st_size);

    /* the same command again, on a short list, to completion */
    write_list(list, pclip_test_fixture(IMAGE), 20, NULL, 0);
    char *err;
    int rc = cli(argv, &err);
    ck_assert_msg(rc == 0, "rerun failed: %s", err);
    free(err);
    pclip_test_npy a;
    pclip_test_npy_read(out, &a);
    ck_assert_int_eq(a.shape[0], 20);
    ck_assert_int_eq(a.shape[1], 24);
    pclip_test_npy_free(&a);
    /* the stale temp file is left as it was; the rerun left none of its own */
    struct stat st2;
    ck_assert_int_eq(stat(tmp, &st2), 0);
    ck_assert_int_eq(st2.st_size, st.st_size);
    char *names = listing(dir);
    char want[800];
    /* out.npy.paths.txt: embed-image's row order beside its output */
    snprintf(want, sizeof want, "images.txt\nout.npy\nout.npy.paths.txt\n%s\n",
             strrchr(tmp, '/') + 1);
    ck_assert_str_eq(names, want);
    free(names);
    unlink(tmp);
    unlink(join(dir, "out.npy.paths.txt"));
    unlink(out);
    unlink(list);
    rmdir(dir);
    free(prev);
}
END_TEST

/* A run that fails on its own part-way (an unreadable image at line 1500 of
 * 2000, after many batches were written to the temp file) keeps the previous
 * output and removes its temp file; so does an embed-text that fails. */
START_TEST(test_failed_runs_keep_previous) {
    char dir[300], out[600], list[600];
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir()); /* a static buffer, reused */
    snprintf(out, sizeof out, "%s", join(dir, "out.npy"));
    snprintf(list, sizeof list, "%s", join(dir, "images.txt"));
    size_t prev_len;
    char *prev = previous_output(out, &prev_len);

    write_list(list, pclip_test_fixture(IMAGE), 2000, pclip_test_fixture("bad/truncated.png"),
               1500);
    char *img_argv[] = {(char *)pclip_test_cli(),
                        "embed-image",
                        "--model",
                        (char *)pclip_test_fixture(TINY),
                        "--output",
                        out,
                        "--batch-size",
                        "8",
                        "--backend",
                        "cpu",
                        "--images-file",
                        list,
                        NULL};
    char *err;
    int rc = cli(img_argv, &err);
    ck_assert_msg(rc == 1 && strstr(err, "truncated.png"), "exit %d: %s", rc, err);
    free(err);
    assert_same_file(out, prev, prev_len, "embed-image failing at image 1501");

    char *txt_argv[] = {(char *)pclip_test_cli(),
                        "embed-text",
                        "--model",
                        (char *)pclip_test_fixture(TINY),
                        "--output",
                        out,
                        "--backend",
                        "cpu",
                        "a photo",
                        "bad \xFF text",
                        NULL};
    rc = cli(txt_argv, &err);
    ck_assert_msg(rc == 1 && strstr(err, "text 2"), "exit %d: %s", rc, err);
    free(err);
    assert_same_file(out, prev, prev_len, "embed-text failing on text 2");

    char *names = listing(dir);
    ck_assert_str_eq(names, "images.txt\nout.npy\nout.npy.paths.txt\n");
    free(names);
    /* the previous row order too */
    char *paths = pclip_test_read_file(join(dir, "out.npy.paths.txt"), NULL);
    char want_paths[2100];
    snprintf(want_paths, sizeof want_paths, "%s\n%s\n", pclip_test_fixture(IMAGE),
             pclip_test_fixture(IMAGE));
    ck_assert_str_eq(paths, want_paths);
    free(paths);
    unlink(join(dir, "out.npy.paths.txt"));
    unlink(out);
    unlink(list);
    rmdir(dir);
    free(prev);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cli_safety");
    TCase *limits = tcase_create("limits");
    tcase_set_timeout(limits, 300);
    tcase_add_test(limits, test_kill_embed_image);
    tcase_add_test(limits, test_failed_runs_keep_previous);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
