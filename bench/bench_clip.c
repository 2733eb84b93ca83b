/* bench_clip: times portclip's CLIP encoders on a checkpoint directory, one
 * workload per process, and prints one JSON line per run. bench/run.sh
 * drives it beside bench/torch_clip.py (the PyTorch side) and prints the
 * table; see bench/RESULTS.md. Not a test.
 *
 *   bench_clip vision --model DIR --batch N [--seconds S] [--min-iters N]
 *   bench_clip text   --model DIR --batch N --caption full|short [...]
 *   bench_clip load   --model DIR
 *   bench_clip check  --model DIR --out DIR
 *   bench_clip precision --model DIR [--batch N]
 *   bench_clip peak   [--seconds S]
 *
 * vision: random pixels of the model's input shape [N, 3, S, S] (image
 *   preprocessing is not timed). text: token rows from the model's own
 *   tokenizer (tokenizing is not timed); "full" captions fill all 77
 *   positions, "short" is "a photo of a cat". One encode call per sample:
 *   a first call (graph compile and weight packing, reported as first_s),
 *   warm-up calls for ~1 s, then timed calls until --seconds have passed and
 *   at least --min-iters were taken. Outputs are projected embeddings
 *   (flags 0, no normalisation) on backend cpu, device 0 (the fast path),
 *   or --backend NAME's device 0; PORTCLIP_THREADS and PORTCLIP_CPU_SIMD
 *   apply as usual.
 * load: pclip_model_load (open, validate, mmap), backend creation, then the
 *   first vision (batch 1) and first text (batch 1, full row) encodes, each
 *   timed once: run it in a fresh process per sample.
 * check: writes images.npy (2 images of deterministic pixels, see
 *   fill_pixels) and text.npy (one full caption, one short) to --out, for
 *   torch_clip.py to compare with PyTorch.
 * precision: the loss of --precision P (default bf16) on --backend B
 *   (default cpu), device 0: N images (deterministic pixels, default 32) and
 *   N full plus N short captions encoded there at P and at fp32 on cpu
 *   device 0, L2-normalised; prints the worst cosine between a P row and
 *   its fp32 row and the largest |difference| of an element.
 * --precision fp32|bf16|fp16 (default fp32) sets the precision of vision,
 *   text, load and check runs.
 * peak: the FMA throughput of this CPU, AVX-512 and AVX2, one thread and
 *   all threads (OpenMP, PORTCLIP_THREADS or the processor count).
 *
 * Every run reports ru_maxrss, the peak resident set of its process. */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "portclip.h"

#include "bench_util.h"

static long maxrss_kb(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* Busy CPU seconds of the whole machine (all CPUs, /proc/stat) and of this
 * process (all its threads): their difference over a timed phase is the
 * work of other processes, reported as `others_cpu` (a share of all CPUs),
 * because on a shared machine that is what drags figures down. */
static double machine_busy_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    if (!f) return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8) return -1;
    /* user nice system idle iowait irq softirq steal (guest is inside user) */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / 100.0; /* USER_HZ */
}

static double self_cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return -1;
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static void die(const char *what, pclip_ctx_t ctx, pclip_status st) {
    fprintf(stderr, "bench_clip: %s: %s: %s\n", what, pclip_status_name(st),
            ctx ? pclip_ctx_last_error(ctx) : "");
    exit(1);
}

/* Deterministic pixels in [-2, 2): x_i = LCG(i) / 2^31 * 4 - 2, computed in
 * double and rounded to float (torch_clip.py computes the same values). */
static void fill_pixels(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t v = ((uint64_t)i * 1103515245u + 12345u) & 0x7fffffffu;
        p[i] = (float)((double)v / 2147483648.0 * 4.0 - 2.0);
    }
}

/* The benchmark's captions (torch_clip.py builds the same): a long sentence
 * repeated past 77 tokens, prefixed by r copies of "photo " so rows differ. */
#define LONG_SENTENCE                                                                              \
    "a photo of a small orange cat sitting on a wooden table next to a cup of coffee "             \
    "while the morning sun shines through the window "
static const char *const SHORT_CAPTION = "a photo of a cat";

static char *full_caption(int r) {
    size_t n = (size_t)(r % 5) * 6 + 4 * strlen(LONG_SENTENCE) + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    s[0] = '\0';
    for (int i = 0; i < r % 5; i++) strcat(s, "photo ");
    for (int i = 0; i < 4; i++) strcat(s, LONG_SENTENCE);
    return s;
}

/* ids[n, ctx_len]; returns the largest token count of a row. */
static int32_t tokenize_rows(pclip_ctx_t ctx, pclip_tokenizer_t tok, int full, int32_t n,
                             int32_t ctx_len, int32_t *ids) {
    int32_t most = 0;
    for (int32_t r = 0; r < n; r++) {
        char *cap = full ? full_caption(r) : NULL;
        const char *text = full ? cap : SHORT_CAPTION;
        if (!text) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
        int32_t count = 0;
        pclip_status st = pclip_tokenizer_encode(tok, text, strlen(text), ids + (size_t)r * ctx_len,
                                                 ctx_len, &count);
        free(cap);
        if (st) die("tokenize", ctx, st);
        if (full && count != ctx_len) {
            fprintf(stderr, "bench_clip: a full caption gave %d tokens, not %d\n", count, ctx_len);
            exit(1);
        }
        if (count > most) most = count;
    }
    return most;
}

typedef struct opts {
    const char *mode, *model, *caption, *out, *label, *backend;
    pclip_precision precision;
    int32_t batch, min_iters;
    double seconds, warmup;
} opts;

static void usage(void) {
    fprintf(stderr,
            "usage: bench_clip vision|text|load|check|precision|peak --model DIR [--batch N]\n"
            "       [--caption full|short] [--seconds S] [--min-iters N] [--warmup S]\n"
            "       [--out DIR] [--label NAME] [--precision fp32|bf16|fp16] [--backend B]\n");
    exit(2);
}

static opts parse(int argc, char **argv) {
    opts o = {.batch = 1,
              .precision = PCLIP_PRECISION_FP32,
              .min_iters = 5,
              .seconds = 4.0,
              .warmup = 1.0,
              .caption = "full",
              .label = "default",
              .backend = "cpu"};
    if (argc < 2) usage();
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--model"))
            o.model = v;
        else if (!strcmp(a, "--batch"))
            o.batch = atoi(v);
        else if (!strcmp(a, "--caption"))
            o.caption = v;
        else if (!strcmp(a, "--seconds"))
            o.seconds = atof(v);
        else if (!strcmp(a, "--warmup"))
            o.warmup = atof(v);
        else if (!strcmp(a, "--min-iters"))
            o.min_iters = atoi(v);
        else if (!strcmp(a, "--out"))
            o.out = v;
        else if (!strcmp(a, "--label"))
            o.label = v;
        else if (!strcmp(a, "--backend"))
            o.backend = v;
        else if (!strcmp(a, "--precision")) {
            if (pclip_precision_parse(NULL, v, "--precision", &o.precision)) usage();
        } else
            usage();
    }
    if (o.batch < 1 || o.min_iters < 1 || o.seconds < 0) usage();
    if (strcmp(o.caption, "full") && strcmp(o.caption, "short")) usage();
    if (strcmp(o.mode, "peak") && !o.model) usage();
    return o;
}

/* ---- FMA peak ---- */

static int run_peak(const opts *o) {
    int threads = omp_get_num_procs();
    const char *env = getenv("PORTCLIP_THREADS");
    if (env && atoi(env) > 0) threads = atoi(env);
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f");
    int has256 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    double s = o->seconds > 0 ? o->seconds : 1.0;
    double p512_1 = has512 ? bench_fma_peak(1, 1, s) : 0,
           p512_n = has512 ? bench_fma_peak(1, threads, s) : 0;
    double p256_1 = has256 ? bench_fma_peak(0, 1, s) : 0,
           p256_n = has256 ? bench_fma_peak(0, threads, s) : 0;
    printf("{\"impl\":\"portclip\",\"kind\":\"peak\",\"threads\":%d,"
           "\"avx512_gflops_1\":%.1f,\"avx512_gflops_all\":%.1f,"
           "\"avx2_gflops_1\":%.1f,\"avx2_gflops_all\":%.1f,\"maxrss_kb\":%ld}\n",
           threads, p512_1, p512_n, p256_1, p256_n, maxrss_kb());
    return 0;
}

/* ---- encoders ---- */

typedef struct session {
    pclip_ctx_t ctx;
    pclip_model_t model;
    pclip_backend_t backend;
    double load_s, backend_s;
} session;

static session open_session(const opts *o) {
    session s = {0};
    pclip_status st = pclip_ctx_create(&s.ctx);
    if (st) die("context", NULL, st);
    double t0 = bench_now();
    if ((st = pclip_model_load(s.ctx, o->model, &s.model))) die("load", s.ctx, st);
    double t1 = bench_now();
    if ((st = pclip_backend_create(s.ctx, o->backend, 0, &s.backend))) die("backend", s.ctx, st);
    if ((st = pclip_backend_set_precision(s.backend, o->precision))) die("precision", s.ctx, st);
    double t2 = bench_now();
    s.load_s = t1 - t0;
    s.backend_s = t2 - t1;
    return s;
}

static void close_session(session *s) {
    pclip_backend_destroy(s->backend);
    pclip_model_destroy(s->model);
    pclip_ctx_destroy(s->ctx);
}

static void json_str(const char *k, const char *v) {
    printf("\"%s\":\"", k);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    printf("\",");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef pclip_status (*encode_fn)(session *s, const void *in, int32_t n, float *out);

static pclip_status enc_images(session *s, const void *in, int32_t n, float *out) {
    return pclip_model_encode_images(s->model, s->backend, in, n, 0, out);
}
static pclip_status enc_text(session *s, const void *in, int32_t n, float *out) {
    return pclip_model_encode_text(s->model, s->backend, in, n, 0, out);
}

static int run_timed(const opts *o) {
    int text = !strcmp(o->mode, "text");
    session s = open_session(o);
    const pclip_config *cfg = pclip_model_config(s.model);
    int32_t n = o->batch, tokens = 0;
    void *in;
    if (text) {
        pclip_tokenizer_t tok = pclip_model_tokenizer(s.model);
        if (!tok) die("the model has no tokenizer", NULL, PCLIP_STATUS_NOT_FOUND);
        int32_t L = cfg->text.max_position_embeddings;
        in = malloc((size_t)n * L * sizeof(int32_t));
        if (!in) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
        tokens = tokenize_rows(s.ctx, tok, !strcmp(o->caption, "full"), n, L, in);
    } else {
        int32_t S = cfg->vision.image_size;
        size_t count = (size_t)n * cfg->vision.num_channels * S * S;
        in = malloc(count * sizeof(float));
        if (!in) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
        fill_pixels(in, count);
    }
    float *out = malloc((size_t)n * cfg->projection_dim * sizeof(float));
    if (!out) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
    encode_fn enc = text ? enc_text : enc_images;

    pclip_status st;
    double t0 = bench_now();
    if ((st = enc(&s, in, n, out))) die("encode", s.ctx, st);
    double first_s = bench_now() - t0;
    /* warm-up */
    int warm_iters = 0;
    t0 = bench_now();
    do {
        if ((st = enc(&s, in, n, out))) die("encode", s.ctx, st);
        warm_iters++;
    } while (bench_now() - t0 < o->warmup);
    /* timed */
    size_t cap = 64, count = 0;
    double *samples = malloc(cap * sizeof *samples), total = 0;
    double busy0 = machine_busy_s(), self0 = self_cpu_s(), wall0 = bench_now();
    if (!samples) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
    while ((total < o->seconds || (int32_t)count < o->min_iters) && count < 100000) {
        double a = bench_now();
        if ((st = enc(&s, in, n, out))) die("encode", s.ctx, st);
        double dt = bench_now() - a;
        if (count == cap) {
            double *p = realloc(samples, (cap *= 2) * sizeof *samples);
            if (!p) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
            samples = p;
        }
        samples[count++] = dt;
        total += dt;
    }
    double wall = bench_now() - wall0;
    double others =
        (machine_busy_s() - busy0 - (self_cpu_s() - self0)) / (wall * (double)omp_get_num_procs());
    if (others < 0) others = 0;
    double sum = 0;
    for (int32_t i = 0; i < n * cfg->projection_dim; i++) sum += out[i];
    long rss = maxrss_kb();

    printf("{\"impl\":\"portclip\",\"kind\":\"timed\",");
    json_str("config", o->label);
    json_str("workload",
             text ? (!strcmp(o->caption, "full") ? "text-full" : "text-short") : "vision");
    json_str("backend", o->backend);
    json_str("device", pclip_backend_device_name(s.backend));
    json_str("precision", pclip_precision_name(o->precision));
    printf("\"batch\":%d,\"tokens\":%d,\"first_s\":%.6f,\"load_s\":%.6f,\"warmup_iters\":%d,"
           "\"checksum\":%.6g,\"others_cpu\":%.3f,\"maxrss_kb\":%ld,\"samples_s\":[",
           n, tokens, first_s, s.load_s, warm_iters, sum, others, rss);
    for (size_t i = 0; i < count; i++) printf("%s%.6f", i ? "," : "", samples[i]);
    qsort(samples, count, sizeof *samples, cmp_double);
    printf("],\"median_s\":%.6f}\n",
           count % 2 ? samples[count / 2] : 0.5 * (samples[count / 2 - 1] + samples[count / 2]));
    free(samples);
    free(out);
    free(in);
    close_session(&s);
    return 0;
}

static int run_load(const opts *o) {
    session s = open_session(o);
    const pclip_config *cfg = pclip_model_config(s.model);
    int32_t S = cfg->vision.image_size, L = cfg->text.max_position_embeddings;
    size_t count = (size_t)cfg->vision.num_channels * S * S;
    float *px = malloc(count * sizeof *px), *out = malloc((size_t)cfg->projection_dim * 4);
    int32_t *ids = malloc((size_t)L * sizeof *ids);
    if (!px || !out || !ids) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
    fill_pixels(px, count);
    tokenize_rows(s.ctx, pclip_model_tokenizer(s.model), 1, 1, L, ids);
    pclip_status st;
    double t0 = bench_now();
    if ((st = enc_images(&s, px, 1, out))) die("encode", s.ctx, st);
    double t1 = bench_now();
    if ((st = enc_images(&s, px, 1, out))) die("encode", s.ctx, st);
    double t2 = bench_now();
    if ((st = enc_text(&s, ids, 1, out))) die("encode", s.ctx, st);
    double t3 = bench_now();
    if ((st = enc_text(&s, ids, 1, out))) die("encode", s.ctx, st);
    double t4 = bench_now();
    printf("{\"impl\":\"portclip\",\"kind\":\"load\",");
    json_str("config", o->label);
    json_str("device", pclip_backend_device_name(s.backend));
    printf("\"load_s\":%.6f,\"backend_s\":%.6f,\"first_vision_s\":%.6f,\"second_vision_s\":%.6f,"
           "\"first_text_s\":%.6f,\"second_text_s\":%.6f,\"maxrss_kb\":%ld}\n",
           s.load_s, s.backend_s, t1 - t0, t2 - t1, t3 - t2, t4 - t3, maxrss_kb());
    free(px);
    free(out);
    free(ids);
    close_session(&s);
    return 0;
}

static int run_check(const opts *o) {
    if (!o->out) usage();
    session s = open_session(o);
    const pclip_config *cfg = pclip_model_config(s.model);
    int32_t S = cfg->vision.image_size, L = cfg->text.max_position_embeddings,
            P = cfg->projection_dim;
    size_t count = (size_t)2 * cfg->vision.num_channels * S * S;
    float *px = malloc(count * sizeof *px), *out = malloc((size_t)2 * P * sizeof *out);
    int32_t *ids = malloc((size_t)2 * L * sizeof *ids);
    if (!px || !out || !ids) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
    fill_pixels(px, count);
    pclip_tokenizer_t tok = pclip_model_tokenizer(s.model);
    tokenize_rows(s.ctx, tok, 1, 1, L, ids);
    tokenize_rows(s.ctx, tok, 0, 1, L, ids + L);
    char path[4096];
    int64_t shape[2] = {2, P};
    pclip_status st;
    if ((st = enc_images(&s, px, 2, out))) die("encode", s.ctx, st);
    snprintf(path, sizeof path, "%s/images.npy", o->out);
    if ((st = pclip_npy_write_f32(s.ctx, path, out, shape, 2))) die("write", s.ctx, st);
    if ((st = enc_text(&s, ids, 2, out))) die("encode", s.ctx, st);
    snprintf(path, sizeof path, "%s/text.npy", o->out);
    if ((st = pclip_npy_write_f32(s.ctx, path, out, shape, 2))) die("write", s.ctx, st);
    printf("{\"impl\":\"portclip\",\"kind\":\"check\",");
    json_str("config", o->label);
    json_str("out", o->out);
    printf("\"maxrss_kb\":%ld}\n", maxrss_kb());
    free(px);
    free(out);
    free(ids);
    close_session(&s);
    return 0;
}

/* Worst cosine of a's rows to b's rows (both L2-normalised) and the
 * largest |a - b| of an element. */
static void row_loss(const float *a, const float *b, int32_t rows, int32_t cols, double *worst_cos,
                     double *max_err) {
    for (int32_t r = 0; r < rows; r++) {
        double dot = 0;
        for (int32_t i = 0; i < cols; i++) {
            size_t k = (size_t)r * cols + i;
            dot += (double)a[k] * b[k];
            double e = a[k] > b[k] ? a[k] - b[k] : b[k] - a[k];
            if (e > *max_err) *max_err = e;
        }
        if (dot < *worst_cos) *worst_cos = dot;
    }
}

static int run_precision(const opts *o) {
    opts under = *o; /* the precision under test: bf16 unless given */
    if (under.precision == PCLIP_PRECISION_FP32) under.precision = PCLIP_PRECISION_BF16;
    session s = open_session(&under);
    pclip_backend_t cpu; /* the fp32 reference: cpu device 0 */
    pclip_status st = pclip_backend_create(s.ctx, "cpu", 0, &cpu);
    if (st) die("backend cpu 0", s.ctx, st);
    const pclip_config *cfg = pclip_model_config(s.model);
    int32_t n = o->batch, S = cfg->vision.image_size, L = cfg->text.max_position_embeddings,
            P = cfg->projection_dim;
    size_t count = (size_t)n * cfg->vision.num_channels * S * S;
    float *px = malloc(count * sizeof *px);
    int32_t *ids = malloc((size_t)2 * n * L * sizeof *ids);
    float *ref = malloc((size_t)2 * n * P * sizeof *ref), *got = malloc((size_t)2 * n * P * 4);
    if (!px || !ids || !ref || !got) die("out of memory", NULL, PCLIP_STATUS_OUT_OF_MEMORY);
    fill_pixels(px, count);
    pclip_tokenizer_t tok = pclip_model_tokenizer(s.model);
    tokenize_rows(s.ctx, tok, 1, n, L, ids);
    tokenize_rows(s.ctx, tok, 0, n, L, ids + (size_t)n * L);
    double cos[2] = {1, 1}, err[2] = {0, 0};
    for (int text = 0; text < 2; text++) {
        int32_t rows = text ? 2 * n : n;
        for (int k = 0; k < 2; k++) {
            pclip_backend_t b = k ? s.backend : cpu;
            float *dst = k ? got : ref;
            st = text
                     ? pclip_model_encode_text(s.model, b, ids, rows, PCLIP_ENCODE_NORMALIZE, dst)
                     : pclip_model_encode_images(s.model, b, px, rows, PCLIP_ENCODE_NORMALIZE, dst);
            if (st) die("encode", s.ctx, st);
        }
        row_loss(got, ref, rows, P, &cos[text], &err[text]);
    }
    printf("{\"impl\":\"portclip\",\"kind\":\"precision\",");
    json_str("model", o->model);
    json_str("backend", o->backend);
    json_str("device", pclip_backend_device_name(s.backend));
    json_str("precision", pclip_precision_name(under.precision));
    printf("\"images\":%d,\"texts\":%d,\"vision_worst_cos\":%.7f,\"vision_max_err\":%.3g,"
           "\"text_worst_cos\":%.7f,\"text_max_err\":%.3g}\n",
           n, 2 * n, cos[0], err[0], cos[1], err[1]);
    free(px);
    free(ids);
    free(ref);
    free(got);
    pclip_backend_destroy(cpu);
    close_session(&s);
    return 0;
}

int main(int argc, char **argv) {
    opts o = parse(argc, argv);
    if (!strcmp(o.mode, "peak")) return run_peak(&o);
    if (!strcmp(o.mode, "vision") || !strcmp(o.mode, "text")) return run_timed(&o);
    if (!strcmp(o.mode, "load")) return run_load(&o);
    if (!strcmp(o.mode, "check")) return run_check(&o);
    if (!strcmp(o.mode, "precision")) return run_precision(&o);
    usage();
    return 2;
}
