/* portclip train: projection heads trained on image-caption pairs with both
 * encoders frozen (pclip_train). Progress of the feature extraction as a bar
 * on a terminal (plain lines otherwise), one line per epoch's held-out
 * recall, a summary at the end. Once training has begun, the first Ctrl-C
 * (or SIGTERM) saves a checkpoint after the running step and exits with
 * 130; before that (reading the data, computing the features), and at a
 * second one, the process ends at once, as every other command does. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- options ---- */

static const char *const head_names[] = {"linear", "mlp", NULL};
static const char *const schedule_names[] = {"cosine", "constant", NULL};

static struct {
    const char *data, *output, *log;
    const char *image_column, *caption_column, *separator, *image_root;
    int head, schedule, preprocess;
    int32_t steps, epochs, batch_size, warmup, checkpoint_every, embed_dim;
    const char *lr, *weight_decay, *val_fraction, *dropout, *seed;
    bool no_shuffle, resume, strict, quiet;
} opt = {.preprocess = PCLIP_PREPROCESS_OPENAI};

const cli_option cmd_train_options[] = {
    CLI_REQUIRED("--data", "FILE",
                 "image-caption pairs: TSV or CSV with a header, or JSONL; image\n"
                 "paths relative to the file's folder",
                 &opt.data),
    CLI_REQUIRED("--output", "OUTDIR",
                 "the result: a Hugging Face model directory (linear head) or a\n"
                 "head folder for --head (mlp); training state in OUTDIR/training",
                 &opt.output),
    CLI_CHOICE("--head", "KIND",
               "linear (default: CLIP's own projections) or mlp (a new head)", &opt.head,
               head_names),
    CLI_INT("--embed-dim", "E", "mlp: the embedding size (default: the model's)", &opt.embed_dim,
            1, 65536),
    CLI_STRING("--dropout", "P", "mlp: dropout in the head (default 0.1)", &opt.dropout),
    CLI_INT("--steps", "N", "optimiser steps (default: --epochs of them)", &opt.steps, 1,
            INT32_MAX),
    CLI_INT("--epochs", "E", "passes over the training pairs (default 10)", &opt.epochs, 1,
            1000000),
    CLI_INT("--batch-size", "B", "pairs per step (default 64)", &opt.batch_size, 2, 65536),
    CLI_STRING("--lr", "X", "peak learning rate (default 1e-4 linear, 1e-3 mlp)", &opt.lr),
    CLI_STRING("--weight-decay", "W", "AdamW's decoupled weight decay of the head (default 0.01)",
               &opt.weight_decay),
    CLI_CHOICE("--schedule", "S", "cosine (default) or constant, after the warm-up",
               &opt.schedule, schedule_names),
    CLI_INT("--warmup", "STEPS", "linear warm-up steps (default 0)", &opt.warmup, 0, INT32_MAX),
    CLI_STRING("--seed", "S", "shuffling, the held-out split, mlp init, dropout (default 0)",
               &opt.seed),
    CLI_FLAG("--no-shuffle", "every epoch in the file's order", &opt.no_shuffle),
    CLI_STRING("--val-fraction", "F",
               "share of the images held out for recall@1/5/10 after each\n"
               "epoch (default 0.1; 0 turns it off)",
               &opt.val_fraction),
    CLI_STRING("--log", "LOG.jsonl",
               "one JSON object per step: step, epoch, loss (before the\n"
               "step's update), lr, logit_scale",
               &opt.log),
    CLI_INT("--checkpoint-every", "N", "steps between checkpoints (default: each epoch)",
            &opt.checkpoint_every, 1, INT32_MAX),
    CLI_FLAG("--resume", "continue from OUTDIR/training/checkpoint.bin", &opt.resume),
    CLI_STRING("--image-column", "NAME", "the data file's image column (default image)",
               &opt.image_column),
    CLI_STRING("--caption-column", "NAME", "the data file's caption column (default caption)",
               &opt.caption_column),
    CLI_STRING("--image-root", "DIR",
               "relative image paths are in DIR (default: the data file's folder)",
               &opt.image_root),
    CLI_STRING("--separator", "C", "CSV separator: , or tab or | (default: from the file)",
               &opt.separator),
    CLI_FLAG("--strict", "a missing or unreadable image fails the run (default: skipped)",
             &opt.strict),
    CLI_CHOICE("--preprocess", "MODE", "openai (default) or hf, as for preprocess",
               &opt.preprocess, cli_preprocess_names),
    CLI_FLAG("--quiet", "no progress and no per-epoch lines", &opt.quiet),
    CLI_OPTIONS_END};

static double parse_real(const char *name, const char *s, double lo, double hi, bool hi_open) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi || (hi_open && v == hi))
        cli_usage_error("%s must be a number in [%g, %g%c, not '%s'", name, lo, hi,
                        hi_open ? ')' : ']', s);
    return v;
}

/* ---- progress and signals ---- */

static volatile sig_atomic_t stop_requested, training;

static void on_stop(int sig) {
    /* before the first step (reading the data, computing the features) and
     * at the second signal: as every other command */
    if (stop_requested || !training) {
        pclip_output_temps_remove();
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_requested = sig;
}

typedef struct ui {
    bool tty, quiet;
    double last;
    int64_t steps;
} ui;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void on_progress(void *user, const char *what, int64_t done, int64_t total) {
    ui *u = user;
    if (u->quiet || total <= 0) return;
    if (u->tty) {
        const int width = 30, fill = (int)(width * done / total);
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] %lld/%lld %s ", bar, (long long)done, (long long)total, what);
        if (done == total) fputc('\n', stderr);
    } else {
        const double t = now_s();
        if (done != total && t - u->last < 5.0) return;
        u->last = t;
        fprintf(stderr, "portclip: train: features: %lld/%lld %s\n", (long long)done,
                (long long)total, what);
    }
    fflush(stderr);
}

static void on_skipped(void *user, const char *path, const char *reason) {
    (void)user;
    fputs("portclip: skipped '", stderr);
    cli_fputs_escaped(stderr, path);
    fputs("': ", stderr);
    cli_fputs_escaped(stderr, reason);
    fputc('\n', stderr);
}

static void on_step(void *user, const pclip_train_step_info *s) {
    ui *u = user;
    training = 1;
    if (u->quiet) return;
    const double t = now_s();
    if (s->step != s->steps && t - u->last < (u->tty ? 0.2 : 10.0)) return;
    u->last = t;
    fprintf(stderr, "%sportclip: train: step %lld/%lld  epoch %d  loss %.4f  lr %.3g  "
            "logit_scale %.4f%s",
            u->tty ? "\r" : "", (long long)s->step, (long long)s->steps, (int)s->epoch, s->loss,
            s->lr, s->logit_scale, u->tty ? " " : "\n");
    if (u->tty && s->step == s->steps) fputc('\n', stderr);
    fflush(stderr);
}

static void on_recall(void *user, const pclip_train_recall *r) {
    ui *u = user;
    if (u->quiet) return;
    fprintf(stderr,
            "%sportclip: train: epoch %d held-out (%lld images, %lld captions): "
            "image->text R@1 %.3f R@5 %.3f R@10 %.3f  text->image R@1 %.3f R@5 %.3f R@10 %.3f\n",
            u->tty ? "\n" : "", (int)r->epoch, (long long)r->images, (long long)r->captions,
            r->i2t[0], r->i2t[1], r->i2t[2], r->t2i[0], r->t2i[1], r->t2i[2]);
    fflush(stderr);
}

static int on_cancel(void *user) {
    (void)user;
    return stop_requested != 0;
}

/* ---- train ---- */

int cmd_train(cli_run *run) {
    pclip_train_options o;
    memset(&o, 0, sizeof o);
    o.data = opt.data;
    o.output = opt.output;
    o.log = opt.log;
    o.head = opt.head == 1 ? PCLIP_HEAD_MLP : PCLIP_HEAD_LINEAR;
    o.embed_dim = opt.embed_dim;
    o.dropout = -1;
    o.weight_decay = -1;
    o.val_fraction = -1;
    if (opt.embed_dim && o.head != PCLIP_HEAD_MLP)
        cli_usage_error("--embed-dim is for --head mlp (a linear head keeps the model's size)");
    if (opt.dropout) {
        if (o.head != PCLIP_HEAD_MLP) cli_usage_error("--dropout is for --head mlp");
        o.dropout = parse_real("--dropout", opt.dropout, 0, 1, true);
    }
    if (opt.steps && opt.epochs) cli_usage_error("give --steps or --epochs, not both");
    o.steps = opt.steps;
    o.epochs = opt.epochs;
    o.batch_size = opt.batch_size;
    if (opt.lr) {
        o.lr = parse_real("--lr", opt.lr, 0, 1000, true);
        if (o.lr == 0) cli_usage_error("--lr must be above 0");
    }
    if (opt.weight_decay) o.weight_decay = parse_real("--weight-decay", opt.weight_decay, 0, 1000, true);
    o.schedule = opt.schedule == 1 ? PCLIP_SCHEDULE_CONSTANT : PCLIP_SCHEDULE_COSINE;
    o.warmup = opt.warmup;
    if (opt.seed) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(opt.seed, &end, 10);
        if (end == opt.seed || *end || errno || opt.seed[0] == '-')
            cli_usage_error("--seed must be a whole number from 0 to 2^64-1, not '%s'", opt.seed);
        o.seed = v;
    }
    o.no_shuffle = opt.no_shuffle;
    if (opt.val_fraction) o.val_fraction = parse_real("--val-fraction", opt.val_fraction, 0, 1, true);
    o.checkpoint_every = opt.checkpoint_every;
    o.resume = opt.resume;
    o.strict = opt.strict;
    o.image_column = opt.image_column;
    o.caption_column = opt.caption_column;
    o.image_root = opt.image_root;
    if (opt.separator) {
        const char *s = opt.separator;
        if (!strcmp(s, ",") || !strcmp(s, "|")) o.separator = s[0];
        else if (!strcmp(s, "tab") || !strcmp(s, "\\t") || !strcmp(s, "\t")) o.separator = '\t';
        else cli_usage_error("--separator must be ',', '|' or tab, not '%s'", s);
    }
    o.preprocess = (pclip_preprocess_mode)opt.preprocess;

    ui u = {.tty = isatty(2) == 1, .quiet = opt.quiet};
    pclip_train_callbacks cb = {.user = &u,
                                .progress = on_progress,
                                .skipped = on_skipped,
                                .step = on_step,
                                .recall = on_recall,
                                .cancel = on_cancel};
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigfillset(&sa.sa_mask);
    static const int sigs[] = {SIGINT, SIGTERM};
    for (size_t i = 0; i < 2; i++)
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
    pclip_train_result res;
    pclip_status st = pclip_train(run->model, run->backend, &o, &cb, &res);
    if (st) return cli_fail(run->ctx, st);
    if (res.cancelled) {
        fprintf(stderr,
                "portclip: train: stopped after step %lld; the checkpoint is saved: run the same "
                "command with --resume to go on\n",
                (long long)res.steps_done);
        return 130;
    }
    if (!opt.quiet) {
        fprintf(stderr,
                "portclip: train: %lld steps on %lld pairs (%lld held out, %lld images "
                "skipped; features %s); final loss %.4f; wrote '%s'\n",
                (long long)res.steps_done, (long long)res.train_pairs, (long long)res.val_pairs,
                (long long)res.images_skipped, res.feature_cache_hit ? "from the cache" : "computed",
                res.final_loss, opt.output);
    }
    return CLI_EXIT_OK;
}
