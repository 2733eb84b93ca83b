/* portclip index: builds or updates an image index (pclip_index_update) from
 * files and folders, with a progress bar on a terminal, plain lines
 * otherwise, and the skipped files listed on stderr; `portclip index merge`
 * combines shards (pclip_index_merge). The library does the work; this file
 * parses, reports and draws. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- options ---- */

static const char *const dtype_names[] = {"f32", "f16", "q8", NULL};

static struct {
    const char *output;
    int dtype; /* index into dtype_names; -1: the index's own */
    const char *shard;
    int32_t batch_size, chunk;
    bool strict, quiet;
    int preprocess;
    cli_list images_files;
} opt = {.dtype = -1, .preprocess = PCLIP_PREPROCESS_OPENAI};

const cli_option cmd_index_options[] = {
    CLI_REQUIRED("--output", "INDEX", "the index folder to create or update", &opt.output),
    CLI_CHOICE("--dtype", "TYPE",
               "f32 (default), f16 or q8 (int8 with a scale per row): how\n"
               "vectors are stored; a new index only (an existing one keeps its own)",
               &opt.dtype, dtype_names),
    CLI_STRING("--shard", "K/N",
               "index only the inputs whose path hash falls in share K of N\n"
               "(0 <= K < N); combine the shards with 'portclip index merge'",
               &opt.shard),
    CLI_INT("--batch-size", "B", "images per encoder run (default 32)", &opt.batch_size, 1, 4096),
    CLI_INT("--chunk", "N",
            "images per commit (default 1024): an interrupted run loses at\n"
            "most this many",
            &opt.chunk, 1, 1 << 20),
    CLI_FLAG("--strict", "an unreadable file or a non-image fails the run", &opt.strict),
    CLI_FLAG("--quiet", "no progress and no summary", &opt.quiet),
    CLI_CHOICE("--preprocess", "MODE", "openai (default) or hf, as for preprocess", &opt.preprocess,
               cli_preprocess_names),
    CLI_LIST("--images-file", "FILE",
             "read paths from FILE, one per line, after those given\n"
             "(empty lines skipped; - is stdin; repeatable)",
             &opt.images_files),
    CLI_OPTIONS_END};

/* ---- progress ---- */

typedef struct progress {
    bool tty, quiet;
    double last; /* when the last plain line was printed (0: none yet) */
} progress;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void on_progress(void *user, const pclip_index_progress *p) {
    progress *pg = user;
    if (pg->quiet || p->total == 0) return;
    double rate = p->seconds > 0 ? (double)p->done / p->seconds : 0;
    char eta[32];
    fmt_eta(eta, sizeof eta, rate > 0 ? (double)(p->total - p->done) / rate : -1);
    if (pg->tty) {
        int width = 30, fill = (int)(width * p->done / p->total);
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] %lld/%lld images  %.1f images/s  ETA %s ", bar, (long long)p->done,
                (long long)p->total, rate, eta);
        if (p->done == p->total) fputc('\n', stderr);
    } else {
        double t = now_s();
        if (p->done == 0 || (p->done != p->total && t - pg->last < 5.0)) return;
        pg->last = t;
        fprintf(stderr, "portclip: index: %lld/%lld images, %.1f images/s, ETA %s\n",
                (long long)p->done, (long long)p->total, rate, eta);
    }
    fflush(stderr);
}

static void on_skipped(void *user, const char *path, const char *reason) {
    progress *pg = user;
    if (pg->tty && !pg->quiet) fputc('\n', stderr); /* off the bar's line */
    fprintf(stderr, "portclip: skipped '%s': %s\n", path, reason);
}

/* ---- index ---- */

static void parse_shard(const char *s, int32_t *k, int32_t *n) {
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/') cli_usage_error("--shard must be K/N, not '%s'", s);
    const char *b = end + 1;
    long c = strtol(b, &end, 10);
    if (end == b || *end || c < 1 || c > 1000000 || a < 0 || a >= c)
        cli_usage_error("--shard must be K/N with 0 <= K < N <= 1000000, not '%s'", s);
    *k = (int32_t)a;
    *n = (int32_t)c;
}

static int run_merge(cli_run *run) {
    if (run->inputs.count < 2)
        cli_usage_error(
            "index merge needs at least one SHARD: index merge --output INDEX SHARD...");
    pclip_status st = pclip_index_merge(run->ctx, opt.output, run->inputs.items + 1,
                                        (int64_t)run->inputs.count - 1);
    if (st) return cli_fail(run->ctx, st);
    if (!opt.quiet)
        fprintf(stderr, "portclip: merged %zu shards into '%s'\n", run->inputs.count - 1,
                opt.output);
    return CLI_EXIT_OK;
}

/* What the folder walk left out: non-images only counted (folders hold
 * other files), the rest listed with the reason; with --strict an unreadable
 * entry fails the run. */
static int report_collect_skips(pclip_path_list_t list, progress *pg) {
    int64_t n_other = 0;
    for (int64_t i = 0; i < pclip_path_list_skipped_count(list); i++) {
        pclip_collect_skip why;
        const char *reason;
        const char *p = pclip_path_list_skipped(list, i, &why, &reason);
        if (why == PCLIP_COLLECT_NOT_IMAGE) {
            n_other++;
            continue;
        }
        if (opt.strict && why == PCLIP_COLLECT_UNREADABLE)
            return cli_error(CLI_EXIT_FAILURE, "'%s': %s", p, reason);
        on_skipped(pg, p, reason);
    }
    if (n_other && !opt.quiet)
        fprintf(stderr, "portclip: index: %lld files in the folders are not images (left out)\n",
                (long long)n_other);
    return CLI_EXIT_OK;
}

static int run_index(cli_run *run) {
    for (size_t i = 0; i < opt.images_files.count; i++)
        if (cli_list_read_file(&run->inputs, opt.images_files.items[i], false))
            return CLI_EXIT_FAILURE;
    if (!run->model) cli_usage_error("index needs --model DIR");
    if (run->inputs.count == 0) cli_usage_error("index needs at least one PATH");
    pclip_index_options o = {.dtype = opt.dtype < 0 ? PCLIP_INDEX_DTYPE_DEFAULT
                                                    : (pclip_index_dtype)(opt.dtype + 1),
                             .batch_size = opt.batch_size,
                             .chunk = opt.chunk,
                             .strict = opt.strict,
                             .preprocess = (pclip_preprocess_mode)opt.preprocess};
    if (opt.shard) parse_shard(opt.shard, &o.shard_index, &o.shard_count);
    int rc; /* the backend comes open from cli.c (with --precision) */
    /* files as given, folders recursed (images by content, sorted) */
    pclip_path_list_t list = NULL;
    pclip_status st =
        pclip_collect_images(run->ctx, run->inputs.items, (int64_t)run->inputs.count, 0, &list);
    if (st) return cli_fail(run->ctx, st);
    progress pg = {.tty = isatty(2) == 1, .quiet = opt.quiet};
    if ((rc = report_collect_skips(list, &pg))) {
        pclip_path_list_destroy(list);
        return rc;
    }
    o.progress = on_progress;
    o.skipped = on_skipped;
    o.user = &pg;
    pclip_index_report r;
    st = pclip_index_update(run->ctx, opt.output, run->model, run->backend,
                            pclip_path_list_paths(list), pclip_path_list_count(list), &o, &r);
    pclip_path_list_destroy(list);
    if (st) {
        if (pg.tty && !opt.quiet) fputc('\n', stderr);
        return cli_fail(run->ctx, st);
    }
    if (!opt.quiet) {
        fprintf(stderr,
                "portclip: index '%s': %lld images (%lld added, %lld changed, %lld unchanged, "
                "%lld removed, %lld skipped",
                opt.output, (long long)r.count, (long long)r.added, (long long)r.changed,
                (long long)r.unchanged, (long long)r.removed, (long long)r.skipped);
        if (o.shard_count) fprintf(stderr, ", %lld in other shards", (long long)r.other_shards);
        fputs(")\n", stderr);
    }
    return CLI_EXIT_OK;
}

int cmd_index(cli_run *run) {
    int rc = run->inputs.count > 0 && strcmp(run->inputs.items[0], "merge") == 0 ? run_merge(run)
                                                                                 : run_index(run);
    cli_list_destroy(&opt.images_files);
    return rc;
}
