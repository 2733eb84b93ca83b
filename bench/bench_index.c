/* bench_index: the image index's search and build speed (issue 13).
 *
 *   bench_index [--sizes 1e4,1e5,1e6] [--dim 512] [--seconds S] [--queries N]
 *               [--model DIR --images DIR]
 *
 * 1. The machine's memory read bandwidth, measured here (all threads summing
 *    a 1 GiB buffer, best of 5), the ceiling of an exact scan.
 * 2. Search latency (one query, top 10; and 16 queries in one scan) over N
 *    random unit vectors of `dim` per dtype, with the bytes scanned per
 *    second as a share of a plain read of the same bytes timed alternately
 *    with the scans (same cache state, same load from other processes), and
 *    of the 1 GiB figure. The scan is the one every search
 *    runs (pclip__index_scan); a search adds k path look-ups in SQLite.
 * 3. Recall@10 of f16 and q8 against f32 exact over 1e5 rows, for N (1000)
 *    random queries and N queries near a stored row (the row plus noise:
 *    cosine ~0.7), on Gaussian rows and on an anisotropic set; beside them
 *    the q8 of format 1 (one scale per row) on the same rows and queries.
 *    Rows are generated per dtype without an f32 copy, so 1e7 runs where
 *    its bytes fit in 45 % of the available memory.
 * 4. With --model and --images: index build throughput (decode, hash,
 *    encode, commit) against the encoder alone on the same images
 *    (preprocessed beforehand), as images/s and their ratio.
 *
 * Prints Markdown tables; a size and dtype that does not fit is skipped
 * with a note. */
#define _GNU_SOURCE
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "apps/index.h"
#include "portclip.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, pclip_ctx_t ctx) {
    fprintf(stderr, "bench_index: %s: %s\n", what, ctx ? pclip_ctx_last_error(ctx) : "");
    exit(1);
}

static int64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    int64_t kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", (long long *)&kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024;
}

/* ---- 1. bandwidth ---- */

#if defined(__x86_64__)
#include <immintrin.h>
/* 256 bytes per step into four independent accumulators: bound by memory,
 * not by the adds */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a = _mm256_add_epi64(a, _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(p + i)),
                                                 _mm256_loadu_si256((const __m256i *)(p + i + 4))));
        b = _mm256_add_epi64(b,
                             _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(p + i + 8)),
                                              _mm256_loadu_si256((const __m256i *)(p + i + 12))));
        c = _mm256_add_epi64(c,
                             _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(p + i + 16)),
                                              _mm256_loadu_si256((const __m256i *)(p + i + 20))));
        d = _mm256_add_epi64(d,
                             _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(p + i + 24)),
                                              _mm256_loadu_si256((const __m256i *)(p + i + 28))));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, a);
    uint64_t s = t[0] + t[1] + t[2] + t[3];
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

static uint64_t sum_range(const uint64_t *p, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) return sum_avx2(p, n);
#endif
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
}

static double read_bandwidth(void) {
    size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf) die("out of memory for the bandwidth buffer", NULL);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t sum = 0;
        double t0 = now_s();
#pragma omp parallel reduction(+ : sum)
        {
            size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
            size_t lo = n * t / T, hi = n * (t + 1) / T;
            sum += sum_range(buf + lo, hi - lo);
        }
        double t = now_s() - t0;
        sink += sum;
        if ((double)bytes / t > best) best = (double)bytes / t;
    }
    (void)sink;
    free(buf);
    return best;
}

/* ---- data ---- */

static uint64_t rng_state = 0x1234567887654321ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float grand(void) {
    return (float)(sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()));
}

static void unit(float *v, int32_t dim) {
    double s = 0;
    for (int32_t i = 0; i < dim; i++) s += (double)v[i] * v[i];
    float inv = (float)(1 / sqrt(s));
    for (int32_t i = 0; i < dim; i++) v[i] *= inv;
}

/* Row r of the synthetic data set: a random unit vector from a generator
 * seeded by r, so rows can be made in any order, on any thread, in any
 * dtype, without holding the f32 copy. */
static void synth_row(int64_t r, int32_t dim, float *out) {
    uint64_t st = 0x9E3779B97F4A7C15ull * (uint64_t)(r + 1) ^ 0xD1B54A32D192ED03ull;
    for (int32_t i = 0; i < dim; i += 2) {
        double u[2];
        for (int k = 0; k < 2; k++) {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            u[k] = ((double)(st >> 11) + 0.5) / 9007199254740992.0;
        }
        double rad = sqrt(-2 * log(u[0])), a = 6.283185307179586 * u[1];
        out[i] = (float)(rad * cos(a));
        if (i + 1 < dim) out[i + 1] = (float)(rad * sin(a));
    }
    unit(out, dim);
}

static uint8_t *synth_rows(int64_t n, int32_t dim, pclip_index_dtype dt) {
    size_t rb = pclip__index_row_bytes(dt, dim);
    uint8_t *out = malloc((size_t)n * rb);
    if (!out) die("out of memory for the vectors", NULL);
#pragma omp parallel
    {
        float *tmp = malloc((size_t)dim * sizeof *tmp);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n; r++) {
            synth_row(r, dim, tmp);
            pclip__index_encode_row(dt, tmp, dim, out + (size_t)r * rb);
        }
        free(tmp);
    }
    return out;
}

static uint8_t *encode_all(const float *x, int64_t n, int32_t dim, pclip_index_dtype dt) {
    size_t rb = pclip__index_row_bytes(dt, dim);
    uint8_t *out = malloc((size_t)n * rb);
    if (!out) die("out of memory for the encoded vectors", NULL);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++)
        pclip__index_encode_row(dt, x + (size_t)r * dim, dim, out + (size_t)r * rb);
    return out;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of: a plain read of the same bytes (all threads, the
 * bandwidth loop), one scan of 1 query and one of 16, interleaved run by
 * run, so that all three see the same machine (other processes, caches). */
typedef struct timing {
    double read, scan1, scan16;
} timing;

static double read_bytes(const uint8_t *p, size_t bytes) {
    volatile uint64_t sink;
    uint64_t sum = 0;
    size_t n = bytes / 8;
    double t0 = now_s();
#pragma omp parallel reduction(+ : sum)
    {
        size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
        size_t lo = n * t / T, hi = n * (t + 1) / T;
        sum += sum_range((const uint64_t *)(const void *)p + lo, hi - lo);
    }
    double t = now_s() - t0;
    sink = sum;
    (void)sink;
    return t;
}

static timing time_all(pclip_ctx_t ctx, const uint8_t *rows, int64_t n, pclip_index_dtype dt,
                       int32_t dim, const float *q, double secs) {
    pclip__index_cand out[16 * 10];
    static double tr[1000], t1[1000], t16[1000];
    size_t bytes = (size_t)n * pclip__index_row_bytes(dt, dim);
    int runs = 0;
    double t_end = now_s() + secs;
    while (runs < 1000 && (runs < 5 || now_s() < t_end)) {
        tr[runs] = read_bytes(rows, bytes);
        double t0 = now_s();
        if (pclip__index_scan(ctx, rows, n, pclip__index_row_bytes(dt, dim), dt, dim, q, 1, 10,
                              out))
            die("scan", ctx);
        t1[runs] = now_s() - t0;
        t0 = now_s();
        if (pclip__index_scan(ctx, rows, n, pclip__index_row_bytes(dt, dim), dt, dim, q, 16, 10,
                              out))
            die("scan", ctx);
        t16[runs] = now_s() - t0;
        runs++;
    }
    qsort(tr, (size_t)runs, sizeof *tr, cmp_double);
    qsort(t1, (size_t)runs, sizeof *t1, cmp_double);
    qsort(t16, (size_t)runs, sizeof *t16, cmp_double);
    return (timing){tr[runs / 2], t1[runs / 2], t16[runs / 2]};
}

/* ---- 3. recall ---- */

/* Recall@10 of dtype dt against f32 exact; with alt, the rows alt (already
 * dequantised by another scheme) scanned as f32 instead of x encoded as dt. */
static double recall10(pclip_ctx_t ctx, const float *x, const float *alt, int64_t n, int32_t dim,
                       const float *q, int64_t nq, pclip_index_dtype dt) {
    if (alt) dt = PCLIP_INDEX_F32;
    uint8_t *enc = encode_all(alt ? alt : x, n, dim, dt);
    uint8_t *ref = encode_all(x, n, dim, PCLIP_INDEX_F32);
    pclip__index_cand *a = malloc((size_t)nq * 10 * sizeof *a),
                      *b = malloc((size_t)nq * 10 * sizeof *b);
    if (!a || !b) die("out of memory for the recall", NULL);
    if (pclip__index_scan(ctx, ref, n, pclip__index_row_bytes(PCLIP_INDEX_F32, dim),
                          PCLIP_INDEX_F32, dim, q, nq, 10, a) ||
        pclip__index_scan(ctx, enc, n, pclip__index_row_bytes(dt, dim), dt, dim, q, nq, 10, b))
        die("scan", ctx);
    int64_t hit = 0;
    for (int64_t i = 0; i < nq; i++)
        for (int u = 0; u < 10; u++)
            for (int v = 0; v < 10; v++)
                if (a[i * 10 + u].row == b[i * 10 + v].row) hit++;
    free(a);
    free(b);
    free(enc);
    free(ref);
    return (double)hit / (double)(nq * 10);
}

/* The q8 of vector file format 1, for comparison: one least-squares scale
 * per row (x ~ scale * q, q in -127..127 from max|x| / 127), dequantised. */
static float *q8_per_row(const float *x, int64_t n, int32_t dim) {
    float *y = malloc((size_t)n * (size_t)dim * sizeof *y);
    if (!y) die("out of memory for the vectors", NULL);
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim, amax = 0;
        for (int32_t i = 0; i < dim; i++) amax = fabsf(xr[i]) > amax ? fabsf(xr[i]) : amax;
        float step = amax / 127.0f;
        double qq = 0, xq = 0;
        for (int32_t i = 0; i < dim; i++) {
            float v = step > 0 ? nearbyintf(xr[i] / step) : 0.0f;
            yr[i] = v;
            qq += (double)v * v;
            xq += (double)xr[i] * v;
        }
        float scale = qq > 0 ? (float)(xq / qq) : 0.0f;
        for (int32_t i = 0; i < dim; i++) yr[i] *= scale;
    }
    return y;
}

/* The anisotropic set: per-dimension spreads drawn log-normal (sigma 0.5)
 * and two dimensions 6x wider, as a stand-in for real embeddings, whose
 * dimensions differ in spread and which have a few outlying dimensions (a
 * per-row scale then spends its range on those). Gaussian rows are the
 * isotropic worst case for the gaps between neighbours. */
static float *spread = NULL;
static void make_spread(int32_t dim) {
    spread = malloc((size_t)dim * sizeof *spread);
    if (!spread) die("out of memory", NULL);
    for (int32_t i = 0; i < dim; i++) spread[i] = expf(0.5f * grand());
    spread[dim / 3] *= 6;
    spread[2 * dim / 3] *= 6;
}
static void draw(float *v, int32_t dim, bool aniso) {
    for (int32_t j = 0; j < dim; j++) v[j] = grand() * (aniso ? spread[j] : 1.0f);
    unit(v, dim);
}

/* ---- 4. build throughput ---- */

static pclip_status no_rows(void *u, int64_t f, int32_t c, int32_t d, const float *r) {
    (void)u, (void)f, (void)c, (void)d, (void)r;
    return PCLIP_STATUS_OK;
}

static void bench_build(const char *model_dir, const char *images) {
    pclip_ctx_t ctx;
    pclip_model_t m;
    pclip_backend_t b;
    pclip_ctx_create(&ctx);
    if (pclip_model_load(ctx, model_dir, &m)) die("model", ctx);
    if (pclip_backend_create(ctx, "cpu", 0, &b)) die("backend", ctx);
    pclip_path_list_t list;
    if (pclip_collect_images(ctx, &images, 1, 0, &list)) die("images", ctx);
    int64_t n = pclip_path_list_count(list);
    const char *const *paths = pclip_path_list_paths(list);
    const pclip_config *cfg = pclip_model_config(m);
    int32_t S = cfg->vision.image_size;
    size_t per = (size_t)3 * S * S;
    float *px = malloc((size_t)n * per * sizeof *px);
    float *emb = malloc((size_t)n * (size_t)cfg->projection_dim * sizeof *emb);
    if (!px || !emb) die("out of memory for pixels", NULL);
    for (int64_t i = 0; i < n; i++) {
        pclip_image *img;
        if (pclip_image_load(ctx, paths[i], &img) ||
            pclip_image_preprocess(ctx, img, pclip_model_image_config(m), PCLIP_PREPROCESS_OPENAI,
                                   px + (size_t)i * per))
            die("preprocess", ctx);
        pclip_image_destroy(img);
    }
    /* warm-up: compile the graphs, touch the weights */
    if (pclip_model_encode_images_batched(m, b, px, n < 32 ? (int32_t)n : 32, 32,
                                          PCLIP_ENCODE_NORMALIZE, emb))
        die("encode", ctx);
    double t0 = now_s();
    if (pclip_model_encode_images_batched(m, b, px, (int32_t)n, 32, PCLIP_ENCODE_NORMALIZE, emb))
        die("encode", ctx);
    double t_enc = now_s() - t0;
    /* the embed pipeline alone (decode overlapping encode, no index) */
    pclip_embed_options eo = {.flags = PCLIP_ENCODE_NORMALIZE};
    t0 = now_s();
    if (pclip_embed_image_files(m, b, paths, n, &eo, no_rows, NULL)) die("embed", ctx);
    double t_embed = now_s() - t0;
    char dir[] = "/tmp/bench-index-XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp", NULL);
    char index[64];
    snprintf(index, sizeof index, "%s/ix", dir);
    pclip_index_report r;
    t0 = now_s();
    if (pclip_index_update(ctx, index, m, b, paths, n, NULL, &r)) die("index", ctx);
    double t_index = now_s() - t0;
    /* a second run over the same files: nothing to embed */
    t0 = now_s();
    if (pclip_index_update(ctx, index, m, b, paths, n, NULL, &r)) die("index", ctx);
    double t_again = now_s() - t0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_index: could not remove %s\n", dir);
    printf("\n### Index build: %lld images from %s, model %s, cpu device 0, %d threads\n\n",
           (long long)n, images, model_dir, omp_get_max_threads());
    printf("| what | seconds | images/s | share of the encoder alone |\n|---|---|---|---|\n");
    printf("| encoder alone (pixels ready, batch 32) | %.2f | %.2f | 1.000 |\n", t_enc,
           (double)n / t_enc);
    printf("| embed pipeline (decode + preprocess on workers, encode) | %.2f | %.2f | %.3f |\n",
           t_embed, (double)n / t_embed, t_enc / t_embed);
    printf("| `index` (the pipeline + hash + f32 rows + SQLite commits) | %.2f | %.2f | %.3f |\n",
           t_index, (double)n / t_index, t_enc / t_index);
    printf("| `index` again, nothing changed | %.3f | %.0f | - |\n", t_again, (double)n / t_again);
    free(px);
    free(emb);
    pclip_path_list_destroy(list);
    pclip_model_destroy(m);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}

/* ---- main ---- */

int main(int argc, char **argv) {
    const char *sizes = "1e4,1e5,1e6", *model = NULL, *images = NULL;
    int32_t dim = 512;
    double secs = 2.0;
    int64_t nq = 1000; /* recall queries */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
            sizes = argv[++i];
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
            dim = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
            nq = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--images") && i + 1 < argc)
            images = argv[++i];
        else {
            fprintf(stderr, "usage: bench_index [--sizes 1e4,1e5,1e6] [--dim 512] [--seconds S] "
                            "[--queries N] [--model DIR --images DIR]\n");
            return 2;
        }
    }
    if (dim < 1 || dim > 8192 || nq < 1) return 2;
    pclip_ctx_t ctx;
    pclip_ctx_create(&ctx);
    double bw = read_bandwidth();
    printf("### Search: exact top-10 scan, dim %d, %d threads\n\n", (int)dim,
           omp_get_max_threads());
    printf("Memory read bandwidth measured in this run: %.1f GB/s (all threads, 1 GiB, best of "
           "5).\n\n",
           bw / 1e9);
    printf("| vectors | dtype | bytes | read of the same bytes: GB/s | 1 query: ms | GB/s | share "
           "of that read | share of the 1 GiB read | 16 queries: ms per query "
           "|\n|---|---|---|---|---|---|---|---|---|\n");
    float q[16 * 8192];
    for (int i = 0; i < 16; i++) {
        for (int32_t j = 0; j < dim; j++) q[i * dim + j] = grand();
        unit(q + i * dim, dim);
    }
    char *list = strdup(sizes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int64_t n = (int64_t)atof(tok);
        if (n < 10) continue;
        for (int d = PCLIP_INDEX_F32; d <= PCLIP_INDEX_Q8; d++) {
            pclip_index_dtype dt = (pclip_index_dtype)d;
            size_t bytes = (size_t)n * pclip__index_row_bytes(dt, dim);
            int64_t avail = mem_available();
            if ((double)bytes > 0.45 * (double)avail) {
                printf("| %.0e | %s | %.1f MB | skipped: more than 45 %% of the %.1f GB "
                       "available | | | | | |\n",
                       (double)n, pclip_index_dtype_name(dt), (double)bytes / 1e6,
                       (double)avail / 1e9);
                continue;
            }
            uint8_t *rows = synth_rows(n, dim, dt);
            timing tm = time_all(ctx, rows, n, dt, dim, q, secs);
            printf("| %.0e | %s | %.1f MB | %.1f | %.3f | %.1f | %.0f %% | %.0f %% | %.3f |\n",
                   (double)n, pclip_index_dtype_name(dt), (double)bytes / 1e6,
                   (double)bytes / tm.read / 1e9, tm.scan1 * 1e3, (double)bytes / tm.scan1 / 1e9,
                   100.0 * tm.read / tm.scan1, 100.0 * (double)bytes / tm.scan1 / bw,
                   tm.scan16 * 1e3 / 16);
            fflush(stdout);
            free(rows);
        }
    }
    free(list);

    /* recall, at 1e5 vectors: Gaussian rows, then the anisotropic set */
    make_spread(dim);
    for (int set = 0; set < 2; set++) {
        int64_t n = 100000;
        float *x = malloc((size_t)n * (size_t)dim * sizeof *x);
        float *qr = malloc((size_t)nq * dim * sizeof *qr), *qn = malloc((size_t)nq * dim * sizeof *qn);
        if (!x || !qr || !qn) die("out of memory for the vectors", NULL);
        for (int64_t r = 0; r < n; r++) draw(x + (size_t)r * dim, dim, set == 1);
        for (int64_t i = 0; i < nq; i++) {
            draw(qr + i * dim, dim, set == 1);
            const float *row = x + (size_t)((i * 997) % n) * dim;
            for (int32_t j = 0; j < dim; j++)
                qn[i * dim + j] = row[j] + grand() * (set ? spread[j] : 1.0f) / sqrtf((float)dim);
            unit(qn + i * dim, dim);
        }
        printf("\n### Recall@10 against f32 exact (%lld %s unit vectors, dim %d, %lld queries)\n\n",
               (long long)n, set ? "anisotropic" : "Gaussian", (int)dim, (long long)nq);
        printf("| dtype | random queries | queries near a row (cos ~0.7) |\n|---|---|---|\n");
        for (int d = PCLIP_INDEX_F16; d <= PCLIP_INDEX_Q8; d++)
            printf("| %s | %.4f | %.4f |\n", pclip_index_dtype_name((pclip_index_dtype)d),
                   recall10(ctx, x, NULL, n, dim, qr, nq, (pclip_index_dtype)d),
                   recall10(ctx, x, NULL, n, dim, qn, nq, (pclip_index_dtype)d));
        float *y = q8_per_row(x, n, dim);
        printf("| q8, one scale per row (format 1) | %.4f | %.4f |\n",
               recall10(ctx, x, y, n, dim, qr, nq, PCLIP_INDEX_Q8),
               recall10(ctx, x, y, n, dim, qn, nq, PCLIP_INDEX_Q8));
        fflush(stdout);
        free(y);
        free(x);
        free(qr);
        free(qn);
    }
    free(spread);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("\nPeak resident memory of this process: %.1f MB.\n", (double)ru.ru_maxrss / 1024);
    if (model && images) bench_build(model, images);
    pclip_ctx_destroy(ctx);
    return 0;
}
