/* Hostile environments: outputs that are not plain files (devices, FIFOs,
 * symlinks, stdout), a temp file name an attacker could plant a link at,
 * file modes, long names, signals mid-run, inputs that would block (FIFOs),
 * a checkpoint that changes while and after it loads, address-space limits,
 * NUL bytes and bad UTF-8 in list files, failed writes to stdout, environment
 * validation, deep JSON and control characters in file names.
 *
 * Most tests run the built CLI in a child with a deadline, so that a hang is
 * a failure with a message rather than a test timeout. Time limits here are
 * about "hung" (tens of seconds), never about "slow". */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "io/json.h"
#include "testutil.h"

#define TINY "tiny-clip"
#define IMAGE "images/j_rgb420_64x48.jpg"
#define HUNG_S 60.0 /* a child still running after this is hung, however busy the machine */

/* AddressSanitizer reserves terabytes of shadow memory at start, so a
 * sanitized CLI cannot run under RLIMIT_AS at all: the limits are left out. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* ---- helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static const char *join(const char *dir, const char *name) {
    static char bufs[8][1400];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *data = pclip_test_read_file(from, &n);
    write_bytes(to, data, n);
    free(data);
}

/* A copy of the tiny model in a new folder; returns the folder. */
static const char *model_copy(void) {
    static char dir[300];
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
    static const char *const files[] = {"config.json", "model.safetensors", "vocab.json",
                                        "merges.txt", "preprocessor_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[600];
        snprintf(from, sizeof from, "%s/%s", pclip_test_fixture(TINY), files[i]);
        copy_file(from, join(dir, files[i]));
    }
    return dir;
}

/* The names in `dir`, sorted, one per line. */
static char *listing(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    char *out = NULL;
    ck_assert_int_eq(pclip_test_sh(cmd, &out, NULL), 0);
    return out;
}

typedef struct run_opts {
    const char *stdout_path; /* NULL: /dev/null */
    const char *stdin_path;  /* NULL: /dev/null */
    long as_limit;           /* RLIMIT_AS in bytes; 0: none */
    int umask_to;            /* -1: as it is */
    const char *env[4];      /* "NAME=VALUE" to set */
} run_opts;

typedef struct run_result {
    int status; /* raw wait status */
    char *err;  /* stderr */
    double seconds;
} run_result;

/* Runs the CLI with argv (argv[0] is filled in) in a child; a child still
 * running after HUNG_S is killed and the test fails as hung. */
static run_result run_cli(char **argv, const run_opts *o) {
    static const run_opts none = {.umask_to = -1};
    if (!o) o = &none;
    argv[0] = (char *)pclip_test_cli();
    /* not pclip_test_tmpdir(): its static buffer holds the caller's folder */
    const char *base = getenv("TMPDIR");
    char errpath[600];
    snprintf(errpath, sizeof errpath, "%s/pclip-stderr-XXXXXX", base && *base ? base : "/tmp");
    int efd = mkstemp(errpath);
    ck_assert_int_ge(efd, 0);
    close(efd);
    fflush(NULL);
    double t0 = now_s();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int in = open(o->stdin_path ? o->stdin_path : "/dev/null", O_RDONLY);
        int out = open(o->stdout_path ? o->stdout_path : "/dev/null", O_WRONLY);
        int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || err < 0) _exit(126);
        dup2(in, 0), dup2(out, 1), dup2(err, 2);
        for (int i = 0; i < 4 && o->env[i]; i++) putenv((char *)o->env[i]);
        if (o->umask_to >= 0) umask((mode_t)o->umask_to);
        if (o->as_limit) {
            struct rlimit rl = {(rlim_t)o->as_limit, (rlim_t)o->as_limit};
            if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(125);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    pid_t done;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && now_s() - t0 < HUNG_S) sleep_s(0.01);
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ck_abort_msg("%s %s hung: still running after %.0f s", argv[1], argv[2] ? argv[2] : "",
                     HUNG_S);
    }
    run_result r = {status, pclip_test_read_file(errpath, NULL), now_s() - t0};
    unlink(errpath);
    return r;
}

static int exit_code(const run_result *r) {
    ck_assert_msg(WIFEXITED(r->status), "killed by signal %d; stderr: %s",
                  WIFSIGNALED(r->status) ? WTERMSIG(r->status) : -1, r->err);
    return WEXITSTATUS(r->status);
}

#define EMBED_TEXT(out) \
    (char *[]) { NULL, "embed-text", "--model", (char *)pclip_test_fixture(TINY), "--backend", "cpu", \
                 "--output", (char *)(out), "a photo", "a cat", NULL }

/* ---- outputs ---- */

START_TEST(test_output_devices) {
    /* /dev/null: written in place, still the device */
    run_result r = run_cli(EMBED_TEXT("/dev/null"), NULL);
    ck_assert_msg(exit_code(&r) == 0, "--output /dev/null: %s", r.err);
    free(r.err);
    struct stat st;
    ck_assert_int_eq(stat("/dev/null", &st), 0);
    ck_assert_msg(S_ISCHR(st.st_mode), "/dev/null is no longer a device");
    /* /dev/full: the failed write is reported, exit 1 */
    r = run_cli(EMBED_TEXT("/dev/full"), NULL);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "/dev/full") &&
                      strstr(r.err, "No space left"),
                  "--output /dev/full: exit %d: %s", exit_code(&r), r.err);
    free(r.err);
    ck_assert_int_eq(stat("/dev/full", &st), 0);
    ck_assert(S_ISCHR(st.st_mode));
    /* "-" and /dev/stdout: the .npy on stdout */
    const char *dir = pclip_test_tmpdir();
    const char *outs[] = {"-", "/dev/stdout"};
    for (int i = 0; i < 2; i++) {
        const char *cap = join(dir, "stdout.npy");
        run_opts o = {.stdout_path = cap, .umask_to = -1};
        int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        close(fd);
        r = run_cli(EMBED_TEXT(outs[i]), &o);
        ck_assert_msg(exit_code(&r) == 0, "--output %s: %s", outs[i], r.err);
        free(r.err);
        pclip_test_npy a;
        pclip_test_npy_read(cap, &a);
        ck_assert_int_eq(a.shape[0], 2);
        pclip_test_npy_free(&a);
        unlink(cap);
    }
    char *names = listing(dir);
    ck_assert_str_eq(names, "");
    free(names);
    rmdir(dir);
}
END_TEST

START_TEST(test_output_symlink) {
    const char *dir = pclip_test_tmpdir();
    char real_dir[700], link_dir[700];
    snprintf(real_dir, sizeof real_dir, "%s", join(dir, "real"));
    snprintf(link_dir, sizeof link_dir, "%s", join(dir, "links"));
    ck_assert_int_eq(mkdir(real_dir, 0755), 0);
    ck_assert_int_eq(mkdir(link_dir, 0755), 0);
    const char *target = join(real_dir, "t.npy");
    write_bytes(target, "old", 3);
    ck_assert_int_eq(symlink("../real/t.npy", join(link_dir, "l.npy")), 0);
    run_result r = run_cli(EMBED_TEXT(join(link_dir, "l.npy")), NULL);
    ck_assert_msg(exit_code(&r) == 0, "%s", r.err);
    free(r.err);
    struct stat st;
    ck_assert_int_eq(lstat(join(link_dir, "l.npy"), &st), 0);
    ck_assert_msg(S_ISLNK(st.st_mode), "the symlink was replaced by a file");
    pclip_test_npy a;
    pclip_test_npy_read(target, &a); /* the target holds the new output */
    ck_assert_int_eq(a.shape[0], 2);
    pclip_test_npy_free(&a);
    char *names = listing(real_dir);
    ck_assert_str_eq(names, "t.npy\n"); /* no temp file left beside the target */
    free(names);
    names = listing(link_dir);
    ck_assert_str_eq(names, "l.npy\n");
    free(names);
    /* a dangling link: its target is created */
    ck_assert_int_eq(symlink("../real/new.npy", join(link_dir, "d.npy")), 0);
    r = run_cli(EMBED_TEXT(join(link_dir, "d.npy")), NULL);
    ck_assert_msg(exit_code(&r) == 0, "%s", r.err);
    free(r.err);
    ck_assert_int_eq(lstat(join(real_dir, "new.npy"), &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(system(NULL) != 0, 1);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_output_fifo) {
    const char *dir = pclip_test_tmpdir();
    const char *fifo = join(dir, "fifo.npy");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    /* no reader: a clear error at once, not a wait */
    run_result r = run_cli(EMBED_TEXT(fifo), NULL);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "no reader"), "%s", r.err);
    free(r.err);
    /* a reader: it gets the whole .npy, and the FIFO stays a FIFO */
    const char *got = join(dir, "got.npy");
    fflush(NULL);
    pid_t reader = fork();
    ck_assert_int_ge(reader, 0);
    if (reader == 0) {
        int in = open(fifo, O_RDONLY), out = open(got, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        char buf[4096];
        ssize_t n;
        while (in >= 0 && (n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n) _exit(1);
        _exit(in < 0);
    }
    /* the reader must have the FIFO open before the writer (O_NONBLOCK) */
    double t0 = now_s();
    int probe;
    while ((probe = open(fifo, O_WRONLY | O_NONBLOCK)) < 0 && now_s() - t0 < HUNG_S) sleep_s(0.01);
    ck_assert_int_ge(probe, 0);
    r = run_cli(EMBED_TEXT(fifo), NULL);
    close(probe);
    int status;
    ck_assert_int_eq(waitpid(reader, &status, 0), reader);
    ck_assert_msg(exit_code(&r) == 0, "%s", r.err);
    free(r.err);
    pclip_test_npy a;
    pclip_test_npy_read(got, &a);
    ck_assert_int_eq(a.shape[0], 2);
    ck_assert_int_eq(a.shape[1], 24);
    pclip_test_npy_free(&a);
    struct stat st;
    ck_assert_int_eq(lstat(fifo, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
    unlink(fifo);
    unlink(got);
    rmdir(dir);
}
END_TEST

/* The temp file's name is random and it is created O_EXCL|O_NOFOLLOW: a link
 * planted at the old predictable name (OUT.tmp.<pid>) or at any name cannot
 * send the bytes elsewhere. */
START_TEST(test_output_planted_link) {
    const char *dir = pclip_test_tmpdir();
    const char *out = join(dir, "out.npy");
    const char *victim = join(dir, "victim");
    write_bytes(victim, "keep", 4);
    char planted[800];
    snprintf(planted, sizeof planted, "%s.tmp.%ld", out, (long)getpid());
    ck_assert_int_eq(symlink(victim, planted), 0);
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip__atomic_file a, b;
    ck_assert_status(ctx, pclip__atomic_open(ctx, out, &a), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__atomic_open(ctx, out, &b), PCLIP_STATUS_OK);
    /* "<out>.tmp." + 16 hex digits, different each time */
    ck_assert_uint_eq(strlen(a.tmp_path), strlen(out) + 5 + 16);
    ck_assert_str_ne(a.tmp_path, b.tmp_path);
    ck_assert_str_ne(a.tmp_path, planted);
    struct stat st;
    ck_assert_int_eq(lstat(a.tmp_path, &st), 0);
    ck_assert_msg(S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600, "temp mode %o",
                  (unsigned)(st.st_mode & 0777));
    ck_assert_status(ctx, pclip__atomic_write(ctx, &a, "new data", 8), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__atomic_commit(ctx, &a), PCLIP_STATUS_OK);
    pclip__atomic_abort(&b);
    char *v = pclip_test_read_file(victim, NULL);
    ck_assert_str_eq(v, "keep");
    free(v);
    v = pclip_test_read_file(out, NULL);
    ck_assert_str_eq(v, "new data");
    free(v);
    ck_assert_int_eq(lstat(planted, &st), 0);
    ck_assert(S_ISLNK(st.st_mode)); /* left alone */
    pclip_ctx_destroy(ctx);
    unlink(planted);
    unlink(victim);
    unlink(out);
    rmdir(dir);
}
END_TEST

START_TEST(test_output_mode_and_long_name) {
    const char *dir = pclip_test_tmpdir();
    const char *out = join(dir, "out.npy");
    static const unsigned modes[] = {0600, 0640, 0604};
    for (int i = 0; i < 3; i++) {
        write_bytes(out, "old", 3);
        ck_assert_int_eq(chmod(out, modes[i]), 0);
        run_result r = run_cli(EMBED_TEXT(out), NULL);
        ck_assert_msg(exit_code(&r) == 0, "%s", r.err);
        free(r.err);
        struct stat st;
        ck_assert_int_eq(stat(out, &st), 0);
        ck_assert_msg((st.st_mode & 07777) == modes[i], "mode %o became %o", modes[i],
                      (unsigned)(st.st_mode & 07777));
    }
    unlink(out);
    /* a new file: 0666 less the umask */
    run_opts o = {.umask_to = 027};
    run_result r = run_cli(EMBED_TEXT(out), &o);
    ck_assert_msg(exit_code(&r) == 0, "%s", r.err);
    free(r.err);
    struct stat st;
    ck_assert_int_eq(stat(out, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0640);
    unlink(out);
    /* a 255-byte name (NAME_MAX) is a valid output */
    char name[256];
    memset(name, 'n', 255);
    memcpy(name + 251, ".npy", 5);
    const char *longp = join(dir, name);
    r = run_cli(EMBED_TEXT(longp), NULL);
    ck_assert_msg(exit_code(&r) == 0, "255-byte name: %s", r.err);
    free(r.err);
    ck_assert_int_eq(stat(longp, &st), 0);
    char *names = listing(dir);
    ck_assert_uint_eq(strlen(names), 256); /* that file alone */
    free(names);
    unlink(longp);
    rmdir(dir);
}
END_TEST

/* A bad --output is refused before the model is even read. */
START_TEST(test_output_refused_first) {
    char *argv[] = {NULL, "embed-image", "--model", "/nonexistent-model", "--output",
                    "/nonexistent-dir/out.npy", (char *)pclip_test_fixture(IMAGE), NULL};
    run_result r = run_cli(argv, NULL);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "/nonexistent-dir") &&
                      !strstr(r.err, "nonexistent-model"),
                  "%s", r.err);
    free(r.err);
    char *argv2[] = {NULL, "preprocess", "--model", "/nonexistent-model", "--output", "/tmp",
                     (char *)pclip_test_fixture(IMAGE), NULL};
    r = run_cli(argv2, NULL);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "is a directory"), "%s", r.err);
    free(r.err);
}
END_TEST

/* ---- signals ---- */

/* SIGINT, SIGTERM and SIGHUP mid-run: the temp file is removed, the previous
 * output is kept, and the process ends by that signal. */
START_TEST(test_signal_removes_temp) {
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    int sig = sigs[_i];
    const char *dir = pclip_test_tmpdir();
    char out[700], list[700];
    snprintf(out, sizeof out, "%s", join(dir, "out.npy"));
    snprintf(list, sizeof list, "%s", join(dir, "images.txt"));
    write_bytes(out, "previous", 8);
    FILE *f = fopen(list, "w");
    for (int i = 0; i < 30000; i++) fprintf(f, "%s\n", pclip_test_fixture(IMAGE));
    fclose(f);
    char *argv[] = {(char *)pclip_test_cli(), "embed-image", "--model",
                    (char *)pclip_test_fixture(TINY), "--output", out, "--batch-size", "8",
                    "--backend", "cpu", "--images-file", list, NULL};
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "wb", stdout) || !freopen("/dev/null", "wb", stderr)) _exit(127);
        signal(sig, SIG_DFL);
        execv(argv[0], argv);
        _exit(127);
    }
    /* wait for the temp file to exist and grow: the run is writing */
    double t0 = now_s();
    bool writing = false;
    int status = 0;
    while (!writing && now_s() - t0 < HUNG_S && waitpid(pid, &status, WNOHANG) == 0) {
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d));) {
            struct stat st;
            if (strncmp(e->d_name, "out.npy.tmp.", 12) == 0 && stat(join(dir, e->d_name), &st) == 0 &&
                st.st_size > 0)
                writing = true;
        }
        if (d) closedir(d);
        if (!writing) sleep_s(0.005);
    }
    ck_assert_msg(writing, "no temp file being written after %.1f s", now_s() - t0);
    ck_assert_int_eq(kill(pid, sig), 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == sig,
                  "signal %d: status 0x%x, not killed by the signal", sig, status);
    char *names = listing(dir);
    ck_assert_str_eq(names, "images.txt\nout.npy\n");
    free(names);
    char *prev = pclip_test_read_file(out, NULL);
    ck_assert_str_eq(prev, "previous");
    free(prev);
    unlink(out);
    unlink(list);
    rmdir(dir);
}
END_TEST

/* ---- inputs ---- */

/* A FIFO as image, config, vocabulary, merges or checkpoint: refused at once,
 * naming the file, whether or not anyone writes to it. */
START_TEST(test_fifo_inputs_refused) {
    static const char *const files[] = {"config.json", "vocab.json", "merges.txt",
                                        "model.safetensors", "preprocessor_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *dir = model_copy();
        const char *p = join(dir, files[i]);
        unlink(p);
        ck_assert_int_eq(mkfifo(p, 0600), 0);
        const char *out = join(dir, "out.npy");
        char *argv[] = {NULL, "embed-text", "--model", (char *)dir, "--backend", "cpu",
                        "--output", (char *)out, "hi", NULL};
        char *iargv[] = {NULL, "preprocess", "--model", (char *)dir, "--output", (char *)out,
                         (char *)pclip_test_fixture(IMAGE), NULL};
        bool image_part = strcmp(files[i], "preprocessor_config.json") == 0;
        run_result r = run_cli(image_part ? iargv : argv, NULL);
        ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, files[i]) &&
                          strstr(r.err, "not a regular file"),
                      "%s as a FIFO: %s", files[i], r.err);
        ck_assert_msg(r.seconds < HUNG_S / 2, "%s as a FIFO took %.1f s", files[i], r.seconds);
        free(r.err);
        char cmd[800];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    /* an image */
    const char *dir = pclip_test_tmpdir();
    const char *fifo = join(dir, "img.jpg");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    char *argv[] = {NULL, "embed-image", "--model", (char *)pclip_test_fixture(TINY), "--backend",
                    "cpu", "--output", (char *)join(dir, "o.npy"), (char *)fifo, NULL};
    run_result r = run_cli(argv, NULL);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "img.jpg") &&
                      strstr(r.err, "not a regular file"),
                  "%s", r.err);
    free(r.err);
    unlink(fifo);
    rmdir(dir);
}
END_TEST

START_TEST(test_list_files_checked) {
    const char *dir = pclip_test_tmpdir();
    const char *list = join(dir, "texts.txt");
    static const char nul[] = "one\ntwo\nthr\0ee\nfour\n";
    write_bytes(list, nul, sizeof nul - 1);
    char *argv[] = {NULL, "tokenize", "--model", (char *)pclip_test_fixture(TINY), "--texts-file",
                    (char *)list, NULL};
    run_result r = run_cli(argv, NULL);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "texts.txt") && strstr(r.err, "line 3") &&
                      strstr(r.err, "NUL"),
                  "%s", r.err);
    free(r.err);
    static const char bad[] = "one\n\xC3\x28 two\n";
    write_bytes(list, bad, sizeof bad - 1);
    r = run_cli(argv, NULL);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "line 2") && strstr(r.err, "UTF-8"), "%s",
                  r.err);
    free(r.err);
    /* an endless stream of NULs on stdin: refused at the first block, with
     * little memory (the address space is capped at 512 MiB) */
    char *sargv[] = {NULL, "tokenize", "--model", (char *)pclip_test_fixture(TINY), "--texts-file",
                     "-", NULL};
    run_opts o = {.stdin_path = "/dev/zero", .umask_to = -1, .as_limit = SANITIZED ? 0 : 512L << 20};
    r = run_cli(sargv, &o);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "line 1") && strstr(r.err, "NUL"), "%s",
                  r.err);
    free(r.err);
    /* a pipe is fine */
    static const char good[] = "a photo\r\nof a cat";
    write_bytes(list, good, sizeof good - 1);
    char *out = NULL;
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "cat '%s' | '%s' tokenize --model '%s' --texts-file -", list,
             pclip_test_cli(), pclip_test_fixture(TINY));
    ck_assert_int_eq(pclip_test_sh(cmd, &out, NULL), 0);
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    ck_assert_int_eq(lines, 2);
    free(out);
    unlink(list);
    rmdir(dir);
}
END_TEST

/* Control characters in a file name reach stderr escaped. */
START_TEST(test_error_escapes_names) {
    char *argv[] = {NULL, "embed-image", "--model", (char *)pclip_test_fixture(TINY), "--backend",
                    "cpu", "--output", "/dev/null", "x\033[2J\x9b\x07y.jpg", NULL};
    run_result r = run_cli(argv, NULL);
    ck_assert_int_eq(exit_code(&r), 1);
    ck_assert_msg(strstr(r.err, "x\\x1b[2J\\x9b\\x07y.jpg"), "%s", r.err);
    for (const char *p = r.err; *p; p++)
        ck_assert_msg((unsigned char)*p >= 0x20 || *p == '\n', "raw control byte 0x%02x", *p);
    free(r.err);
}
END_TEST

/* ---- the checkpoint changing ---- */

/* After load, the file is rewritten with zeros and then truncated: new graphs
 * (another batch size, another device) give the same numbers as before. */
START_TEST(test_checkpoint_changed_after_load) {
    const char *dir = model_copy();
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, dir, &m), PCLIP_STATUS_OK);
    pclip_backend_t b0, b1;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b0), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &b1), PCLIP_STATUS_OK);
    const pclip_config *cfg = pclip_model_config(m);
    int32_t S = cfg->vision.image_size, D = cfg->projection_dim;
    size_t npx = (size_t)3 * S * S;
    float *px = pclip_test_ramp(3 * npx, 2.0f);
    float before[3 * 64], after[3 * 64], ref_after[3 * 64], ref_before[3 * 64];
    ck_assert_int_le(D, 64);
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b0, px, 3, 1, 0, before),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b1, px, 3, 3, 0, ref_before),
                     PCLIP_STATUS_OK);
    /* rewrite in place with zeros, then cut */
    const char *st_path = join(dir, "model.safetensors");
    size_t len;
    char *raw = pclip_test_read_file(st_path, &len);
    memset(raw, 0, len);
    int fd = open(st_path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, raw, len), (ssize_t)len);
    close(fd);
    free(raw);
    ck_assert_int_eq(truncate(st_path, 3), 0);
    /* a graph of a new batch size on each device, and a new backend */
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b0, px, 3, 3, 0, after),
                     PCLIP_STATUS_OK);
    pclip_backend_t b2;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &b2), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_encode_images_batched(m, b2, px, 3, 2, 0, ref_after),
                     PCLIP_STATUS_OK);
    for (int i = 0; i < 3 * D; i++) {
        ck_assert_msg(after[i] == after[i], "NaN at %d", i);
        ck_assert_msg(ref_after[i] == ref_before[i], "reference value %d: %g, was %g", i,
                      (double)ref_after[i], (double)ref_before[i]);
    }
    double e = pclip_test_row_error(after, before, 3, D, NULL);
    ck_assert_msg(e < 1e-5, "rows moved by %g after the file changed", e);
    pclip_model_destroy(m);
    pclip_backend_destroy(b0);
    pclip_backend_destroy(b1);
    pclip_backend_destroy(b2);
    pclip_ctx_destroy(ctx);
    free(px);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The checkpoint is truncated and restored over and over while another
 * process loads it: every load succeeds or fails with a message; none dies
 * by a signal (SIGBUS was the old failure). */
START_TEST(test_checkpoint_truncated_during_load) {
    const char *dir = model_copy();
    const char *st_path = join(dir, "model.safetensors");
    size_t len;
    char *good = pclip_test_read_file(st_path, &len);
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        pclip_ctx_t ctx;
        if (pclip_ctx_create(&ctx)) _exit(3);
        int ok = 0, failed = 0;
        double t0 = now_s();
        while (now_s() - t0 < 2.0) {
            pclip_model_t m;
            pclip_status st = pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m);
            if (st == PCLIP_STATUS_OK) {
                ok++;
                pclip_model_destroy(m);
            } else {
                failed++;
                if (!*pclip_ctx_last_error(ctx)) _exit(4); /* a failure needs its message */
            }
        }
        fprintf(stderr, "test_checkpoint_truncated_during_load: %d loads, %d failed cleanly\n",
                ok, failed);
        _exit(0);
    }
    int status = 0;
    double t0 = now_s();
    for (int k = 0; waitpid(child, &status, WNOHANG) == 0; k++) {
        ck_assert_msg(now_s() - t0 < HUNG_S, "the loading child hung");
        int fd = open(st_path, O_WRONLY);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, (off_t)(len * (size_t)(k % 7) / 8)), 0);
        ck_assert_int_eq(pwrite(fd, good, len, 0), (ssize_t)len);
        close(fd);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the loading child ended with status 0x%x (signal %d)", status,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    free(good);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- memory ---- */

/* embed-image and embed-text under 16 address-space limits: each run exits
 * 0 or 1 with a message, none dies by a signal; --batch-size 4096 with two
 * images works wherever batch 2 does (it allocates for the input only). */
START_TEST(test_rlimit_as_sweep) {
    static const long mib[] = {48, 56, 64, 72, 80, 88, 96, 112, 128, 160, 192, 256, 384, 512, 768, 1024};
    const char *dir = pclip_test_tmpdir();
    const char *out = join(dir, "o.npy");
    /* glibc gives each thread that mallocs its own arena, reserving 64 MiB of
     * address space at a time, in whatever order the threads run: near a
     * limit the same run then works or fails by chance. One arena makes each
     * run's address space the same every time, so batch 2 and batch 4096 can
     * be compared. */
    ck_assert_int_eq(setenv("MALLOC_ARENA_MAX", "1", 1), 0);
    int ok = 0;
    for (size_t i = 0; i < sizeof mib / sizeof mib[0]; i++) {
        run_opts o = {.umask_to = -1, .as_limit = mib[i] << 20};
        int rc[3];
        for (int k = 0; k < 3; k++) {
            char *img[] = {NULL, "embed-image", "--model", (char *)pclip_test_fixture(TINY),
                           "--backend", "cpu", "--output", (char *)out, "--batch-size",
                           k == 0 ? "2" : "4096", (char *)pclip_test_fixture(IMAGE),
                           (char *)pclip_test_fixture(IMAGE), NULL};
            run_result r = k < 2 ? run_cli(img, &o) : run_cli(EMBED_TEXT(out), &o);
            ck_assert_msg(WIFEXITED(r.status), "RLIMIT_AS %ld MiB, run %d: killed by signal %d; %s",
                          mib[i], k, WIFSIGNALED(r.status) ? WTERMSIG(r.status) : -1, r.err);
            rc[k] = WEXITSTATUS(r.status);
            /* 127: the dynamic loader could not map a library */
            ck_assert_msg(rc[k] == 0 || ((rc[k] == 1 || rc[k] == 127) && r.err[0]),
                          "RLIMIT_AS %ld MiB, run %d: exit %d: %s", mib[i], k, rc[k], r.err);
            free(r.err);
        }
        ck_assert_msg(rc[0] != 0 || rc[1] == 0,
                      "RLIMIT_AS %ld MiB: --batch-size 2 works but 4096 fails", mib[i]);
        ok += rc[0] == 0;
    }
    ck_assert_msg(ok > 0, "no limit let embed-image run");
    unlink(out);
    rmdir(dir);
}
END_TEST

/* ---- stdout, environment, JSON ---- */

START_TEST(test_stdout_full) {
    char *cmds[][6] = {
        {NULL, "--help", NULL},
        {NULL, "--version", NULL},
        {NULL, "help", NULL},
        {NULL, "help", "tokenize", NULL},
        {NULL, "tokenize", "--help", NULL},
        {NULL, "devices", NULL},
        {NULL, "verify", "--backend", "cpu", "--device", "0"},
        {NULL, "tokenize", "--model", (char *)pclip_test_fixture(TINY), "hi", NULL},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char *argv[8] = {0};
        for (int k = 0; k < 6 && (k == 0 || cmds[i][k]); k++) argv[k] = cmds[i][k];
        run_opts o = {.stdout_path = "/dev/full", .umask_to = -1};
        run_result r = run_cli(argv, &o);
        ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "stdout"),
                      "'%s %s' to /dev/full: exit %d: %s", argv[1], argv[2] ? argv[2] : "",
                      exit_code(&r), r.err);
        free(r.err);
    }
}
END_TEST

START_TEST(test_env_validated) {
    struct {
        const char *env;
        const char *backend;
        const char *want;
    } cases[] = {
        {"PORTCLIP_THREADS=abc", "cpu", "PORTCLIP_THREADS"},
        {"PORTCLIP_DEVICE=abc", "cpu", "PORTCLIP_DEVICE"},
        {"PORTCLIP_CPU_SIMD=sse9", "cpu", "PORTCLIP_CPU_SIMD"},
        {"PORTCLIP_BACKEND=gpu", NULL, "gpu"},
        {"PORTCLIP_VK_TIMEOUT_MS=abc", "vulkan", "PORTCLIP_VK_TIMEOUT_MS"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {NULL, "embed-text", "--model", (char *)pclip_test_fixture(TINY),
                        "--output", "/dev/null", "hi", cases[i].backend ? "--backend" : NULL,
                        (char *)cases[i].backend, NULL};
        run_opts o = {.umask_to = -1, .env = {cases[i].env}};
        run_result r = run_cli(argv, &o);
        int rc = exit_code(&r);
        if (cases[i].backend && strcmp(cases[i].backend, "vulkan") == 0 && rc == 1 &&
            !strstr(r.err, cases[i].want)) {
            fprintf(stderr, "test_env_validated: %s not checked: vulkan unavailable (%s)\n",
                    cases[i].env, r.err);
            free(r.err);
            continue;
        }
        ck_assert_msg(rc == 1 && strstr(r.err, cases[i].want), "%s: exit %d: %s", cases[i].env,
                      rc, r.err);
        free(r.err);
    }
    char *argv[] = {NULL, "verify", "--device", "abc", NULL};
    run_result r = run_cli(argv, NULL);
    ck_assert_msg(exit_code(&r) == 2 && strstr(r.err, "--device"), "%s", r.err);
    free(r.err);
    char *argv2[] = {NULL, "embed-image", "--model", (char *)pclip_test_fixture(TINY),
                     "--output", "/dev/null", "--batch-size", "12abc",
                     (char *)pclip_test_fixture(IMAGE), NULL};
    r = run_cli(argv2, NULL);
    ck_assert_msg(exit_code(&r) == 2 && strstr(r.err, "--batch-size"), "%s", r.err);
    free(r.err);
}
END_TEST

START_TEST(test_json_depth) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    for (int depth = 63; depth <= 66; depth++) {
        char text[200];
        int n = 0;
        for (int i = 0; i < depth; i++) text[n++] = '[';
        for (int i = 0; i < depth; i++) text[n++] = ']';
        cJSON *root = NULL;
        pclip_status st = pclip__json_parse(ctx, "deep.json", text, (size_t)n, &root);
        if (depth <= PCLIP_LIMIT_JSON_DEPTH) {
            ck_assert_status(ctx, st, PCLIP_STATUS_OK);
            cJSON_Delete(root);
        } else {
            ck_assert_status(ctx, st, PCLIP_STATUS_BAD_FORMAT);
            ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "nested deeper than 64"));
        }
    }
    /* brackets inside strings do not count */
    static const char s[] = "{\"a\": \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[\"}";
    cJSON *root = NULL;
    ck_assert_status(ctx, pclip__json_parse(ctx, "s.json", s, sizeof s - 1, &root), PCLIP_STATUS_OK);
    cJSON_Delete(root);
    /* a config nested 100000 deep, through the CLI: an error, not a crash */
    const char *dir = model_copy();
    size_t n = 200000;
    char *deep = malloc(n + 64);
    size_t k = (size_t)snprintf(deep, 64, "{\"x\": ");
    for (size_t i = 0; i < n / 2; i++) deep[k++] = '[';
    for (size_t i = 0; i < n / 2; i++) deep[k++] = ']';
    deep[k++] = '}';
    write_bytes(join(dir, "config.json"), deep, k);
    free(deep);
    char *argv[] = {NULL, "tokenize", "--model", (char *)dir, "hi", NULL};
    run_result r = run_cli(argv, NULL);
    ck_assert_msg(exit_code(&r) == 1 && strstr(r.err, "nested deeper"), "%s", r.err);
    free(r.err);
    pclip_ctx_destroy(ctx);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("hostile");
    TCase *out = tcase_create("outputs");
    tcase_set_timeout(out, 300);
    tcase_add_test(out, test_output_devices);
    tcase_add_test(out, test_output_symlink);
    tcase_add_test(out, test_output_fifo);
    tcase_add_test(out, test_output_planted_link);
    tcase_add_test(out, test_output_mode_and_long_name);
    tcase_add_test(out, test_output_refused_first);
    tcase_add_loop_test(out, test_signal_removes_temp, 0, 3);
    suite_add_tcase(s, out);
    TCase *in = tcase_create("limits");
    tcase_set_timeout(in, 600);
    tcase_add_test(in, test_fifo_inputs_refused);
    tcase_add_test(in, test_list_files_checked);
    tcase_add_test(in, test_error_escapes_names);
    tcase_add_test(in, test_checkpoint_changed_after_load);
    tcase_add_test(in, test_checkpoint_truncated_during_load);
    if (SANITIZED)
        fprintf(stderr, "skipped: test_rlimit_as_sweep: a sanitizer build cannot run under "
                        "RLIMIT_AS (its shadow memory is reserved at start)\n");
    else
        tcase_add_test(in, test_rlimit_as_sweep);
    tcase_add_test(in, test_stdout_full);
    tcase_add_test(in, test_env_validated);
    tcase_add_test(in, test_json_depth);
    suite_add_tcase(s, in);
    return pclip_test_run(s);
}
