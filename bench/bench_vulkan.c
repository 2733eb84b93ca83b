/* bench_vulkan: GFLOP/s of the Vulkan backend's matmul beside the CPU's, on
 * the GEMMs of one ViT-B/32 encoder layer (qkv 768->2304, out 768->768, fc1
 * 768->3072, fc2 3072->768, bias fused) at batch 1 (M = 50 tokens) and batch
 * 32 (M = 1600), and on the text encoder's qkv at 77 tokens. It runs the
 * real path: a one-op graph compiled on each backend (weights uploaded or
 * packed at compile time), timed over repeated runs, inputs and outputs
 * included. The summary line per batch is the total GFLOP over the four
 * layer GEMMs divided by their total time, the figure ggml's anchor uses.
 *
 *   bench_vulkan [--device N] [--cpu-device N] [--seconds S] [--no-cpu]
 *                [--shape M,N,K]   (one shape only, for tuning)
 *                [--model DIR]     (also embed-image / embed-text throughput, and
 *                                   the largest row error of Vulkan against the CPU)
 *
 * Not a test; the numbers go in bench/RESULTS.md. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include "graph/backend.h"

#include "bench_util.h"

/* CPU time of the whole process (all threads: lavapipe's included). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU-seconds per run of the last bench() call: on a shared machine the wall
 * time follows the load, the CPU time per run much less. */
static double last_cpu_per_run;

/* Times y = a w^T + bias for a [M, K], w [N, K]; returns seconds per run
 * (< 0 on failure). */
static double bench(pclip_ctx_t ctx, pclip_backend_t b, int64_t M, int64_t N, int64_t K,
                    double seconds) {
    double result = -1.0;
    pclip__graph *g = NULL;
    pclip__exec *e = NULL;
    float *a = bench_random_floats((size_t)(M * K), 1, 1.0f),
          *w = bench_random_floats((size_t)(N * K), 2, 1.0f);
    float *bias = bench_random_floats((size_t)N, 3, 1.0f), *y = malloc((size_t)(M * N) * sizeof *y);
    if (!a || !w || !bias || !y || pclip__graph_create(ctx, &g)) goto done;
    const int64_t ane[2] = {M, K}, wne[2] = {N, K}, bne[1] = {N};
    pclip__tensor *ta = pclip__input(g, "a", PCLIP__DTYPE_F32, 2, ane);
    pclip__tensor *tw = pclip__weight(g, "w", 2, wne, w);
    pclip__tensor *tb = pclip__weight(g, "bias", 1, bne, bias);
    pclip__tensor *ty = pclip__linear(g, "y", ta, tw, tb, PCLIP_ACT_NONE, NULL);
    if (!ty || pclip__graph_output(g, ty) || pclip__exec_create(b, g, &e) ||
        pclip__exec_write(e, ta, a))
        goto done;
    if (pclip__exec_run(e)) goto done; /* warm-up */
    long iters = 0;
    double t0 = bench_now(), c0 = cpu_now(), t = 0;
    do {
        if (pclip__exec_run(e)) goto done;
        iters++;
        t = bench_now() - t0;
    } while (t < seconds || iters < 2);
    last_cpu_per_run = (cpu_now() - c0) / (double)iters;
    if (pclip__exec_read(e, ty, y)) goto done;
    result = t / (double)iters;
done:
    if (result < 0) fprintf(stderr, "bench_vulkan: %s\n", pclip_ctx_last_error(ctx));
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    free(a), free(w), free(bias), free(y);
    return result;
}

/* Relative error of the worst row of got [rows, cols] against want. */
static double worst_row(const float *got, const float *want, int64_t rows, int64_t cols) {
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double d = 0, n = 0;
        for (int64_t c = 0; c < cols; c++) {
            double e = (double)got[r * cols + c] - want[r * cols + c];
            d += e * e;
            n += (double)want[r * cols + c] * want[r * cols + c];
        }
        double rel = sqrt(d / (n > 0 ? n : 1));
        if (!(rel <= worst)) worst = rel;
    }
    return worst;
}

/* Encodes n rows on b (images, or text) repeatedly; seconds per call, < 0 on failure. */
static double embed(pclip_ctx_t ctx, pclip_model_t m, pclip_backend_t b, int text, int32_t n,
                    const void *in, float *out, double seconds) {
    pclip_status st = text ? pclip_model_encode_text(m, b, in, n, 0, out)
                           : pclip_model_encode_images(m, b, in, n, 0, out);
    long iters = 0;
    double t0 = bench_now(), t = 0;
    while (!st && (t < seconds || iters < 2)) {
        st = text ? pclip_model_encode_text(m, b, in, n, 0, out)
                  : pclip_model_encode_images(m, b, in, n, 0, out);
        iters++;
        t = bench_now() - t0;
    }
    if (st) {
        fprintf(stderr, "bench_vulkan: %s\n", pclip_ctx_last_error(ctx));
        return -1;
    }
    return t / (double)iters;
}

static void bench_model(pclip_ctx_t ctx, const char *dir, pclip_backend_t vk, pclip_backend_t cpu,
                        double seconds) {
    pclip_model_t m;
    if (pclip_model_load(ctx, dir, &m)) {
        fprintf(stderr, "bench_vulkan: %s\n", pclip_ctx_last_error(ctx));
        return;
    }
    const pclip_config *c = pclip_model_config(m);
    const int32_t S = c->vision.image_size, T = c->text.max_position_embeddings,
                  P = c->projection_dim;
    printf("\nmodel %s: embeddings per second (vulkan, cpu), worst row error vulkan vs cpu\n", dir);
    printf("%-12s %6s %12s %12s %8s %12s\n", "workload", "batch", "vulkan/s", "cpu/s", "ratio",
           "row error");
    const int32_t batches[] = {1, 8};
    for (int text = 0; text < 2; text++)
        for (int bi = 0; bi < 2; bi++) {
            int32_t n = batches[bi];
            size_t per = text ? (size_t)T : (size_t)3 * S * S;
            void *in = malloc(per * (size_t)n * 4);
            float *ov = malloc((size_t)n * P * 4), *oc = malloc((size_t)n * P * 4);
            if (!in || !ov || !oc) break;
            uint64_t seed = 7;
            for (size_t i = 0; i < per * (size_t)n; i++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                if (text) /* full rows of token ids, the last the end of text */
                    ((int32_t *)in)[i] =
                        (int32_t)((seed >> 33) % (uint64_t)(c->text.vocab_size - 2));
                else
                    ((float *)in)[i] =
                        (float)((double)(seed >> 40) / (double)(1ull << 24)) * 4.0f - 2.0f;
            }
            if (text)
                for (int32_t r = 0; r < n; r++)
                    ((int32_t *)in)[(size_t)r * T + T - 1] = c->text.vocab_size - 1;
            double tv = embed(ctx, m, vk, text, n, in, ov, seconds);
            double tc = cpu ? embed(ctx, m, cpu, text, n, in, oc, seconds) : -1;
            printf("%-12s %6d %12.2f %12.2f %8.3f %12.3g\n", text ? "embed-text" : "embed-image", n,
                   tv > 0 ? n / tv : 0.0, tc > 0 ? n / tc : 0.0, tv > 0 && tc > 0 ? tc / tv : 0.0,
                   tv > 0 && tc > 0 ? worst_row(ov, oc, n, P) : 0.0);
            free(in), free(ov), free(oc);
        }
    pclip_model_destroy(m);
}

static const struct {
    const char *name;
    int64_t N, K;
} layer[] = {{"qkv", 2304, 768}, {"out", 768, 768}, {"fc1", 3072, 768}, {"fc2", 768, 3072}};

int main(int argc, char **argv) {
    int device = 0, cpu_device = 0, run_cpu = 1;
    long long sm = 0, sn = 0, sk = 0;
    const char *model = NULL;
    double seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cpu-device") == 0 && i + 1 < argc)
            cpu_device = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--no-cpu") == 0)
            run_cpu = 0;
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc &&
                 sscanf(argv[i + 1], "%lld,%lld,%lld", &sm, &sn, &sk) == 3 && sm > 0 && sn > 0 &&
                 sk > 0)
            i++;
        else {
            fprintf(stderr, "usage: bench_vulkan [--device N] [--cpu-device N] [--seconds S] "
                            "[--no-cpu] [--shape M,N,K] [--model DIR]\n");
            return 2;
        }
    }
    pclip_ctx_t ctx;
    if (pclip_ctx_create(&ctx)) return 1;
    pclip_backend_t vk = NULL, cpu = NULL;
    if (pclip_backend_create(ctx, "vulkan", device, &vk)) {
        fprintf(stderr, "bench_vulkan: %s\n", pclip_ctx_last_error(ctx));
        pclip_ctx_destroy(ctx);
        return 1;
    }
    if (run_cpu && pclip_backend_create(ctx, "cpu", cpu_device, &cpu)) {
        fprintf(stderr, "bench_vulkan: %s\n", pclip_ctx_last_error(ctx));
        run_cpu = 0;
    }
    printf("vulkan: %s\n", pclip_backend_device_name(vk));
    if (run_cpu) printf("cpu:    %s\n", pclip_backend_device_name(cpu));
    /* GF/s: wall clock; GF/cpu-s: per CPU-second of the process (all its
     * threads), which a busy machine disturbs much less */
    printf("%-10s %6s %6s %6s %12s %12s %12s %12s %8s\n", "gemm", "M", "N", "K", "vulkan GF/s",
           "GF/cpu-s", "cpu GF/s", "GF/cpu-s", "ratio");
    const int64_t Ms[] = {50, 1600};
    int rc = 0;
    if (sm) {
        const double f = 2.0 * (double)sm * (double)sn * (double)sk;
        double tv = bench(ctx, vk, sm, sn, sk, seconds), cv = last_cpu_per_run;
        double tc = run_cpu ? bench(ctx, cpu, sm, sn, sk, seconds) : -1;
        printf("%-10s %6lld %6lld %6lld %12.2f %12.2f %8.3f   (vulkan %.2f GFLOP per CPU-second)\n",
               "shape", sm, sn, sk, f / tv * 1e-9, tc > 0 ? f / tc * 1e-9 : 0.0,
               tc > 0 ? tc / tv : 0.0, f / cv * 1e-9);
        pclip_backend_destroy(cpu);
        pclip_backend_destroy(vk);
        pclip_ctx_destroy(ctx);
        return tv < 0;
    }
    for (int m = 0; m < 2; m++) {
        double flops = 0, t_vk = 0, t_cpu = 0, c_vk = 0, c_cpu = 0;
        for (size_t l = 0; l < sizeof layer / sizeof layer[0]; l++) {
            const int64_t M = Ms[m], N = layer[l].N, K = layer[l].K;
            const double f = 2.0 * (double)M * (double)N * (double)K;
            double tv = bench(ctx, vk, M, N, K, seconds), cv = last_cpu_per_run;
            double tc = run_cpu ? bench(ctx, cpu, M, N, K, seconds) : -1, cc = last_cpu_per_run;
            if (tv < 0) rc = 1;
            flops += f, t_vk += tv, t_cpu += tc, c_vk += cv, c_cpu += cc;
            printf("%-10s %6lld %6lld %6lld %12.2f %12.2f %12.2f %12.2f %8.3f\n", layer[l].name,
                   (long long)M, (long long)N, (long long)K, f / tv * 1e-9, f / cv * 1e-9,
                   tc > 0 ? f / tc * 1e-9 : 0.0, tc > 0 ? f / cc * 1e-9 : 0.0,
                   tc > 0 ? tc / tv : 0.0);
        }
        printf("%-10s %6lld %6s %6s %12.2f %12.2f %12.2f %12.2f %8.3f\n", "layer", (long long)Ms[m],
               "", "", flops / t_vk * 1e-9, flops / c_vk * 1e-9,
               run_cpu ? flops / t_cpu * 1e-9 : 0.0, run_cpu ? flops / c_cpu * 1e-9 : 0.0,
               run_cpu ? t_cpu / t_vk : 0.0);
    }
    /* text encoder qkv: 77 tokens */
    {
        const int64_t M = 77, N = 1536, K = 512;
        const double f = 2.0 * (double)M * (double)N * (double)K;
        double tv = bench(ctx, vk, M, N, K, seconds), cv = last_cpu_per_run;
        double tc = run_cpu ? bench(ctx, cpu, M, N, K, seconds) : -1, cc = last_cpu_per_run;
        printf("%-10s %6lld %6lld %6lld %12.2f %12.2f %12.2f %12.2f %8.3f\n", "text-qkv",
               (long long)M, (long long)N, (long long)K, f / tv * 1e-9, f / cv * 1e-9,
               tc > 0 ? f / tc * 1e-9 : 0.0, tc > 0 ? f / cc * 1e-9 : 0.0, tc > 0 ? tc / tv : 0.0);
    }
    if (model) bench_model(ctx, model, vk, run_cpu ? cpu : NULL, seconds);
    pclip_backend_destroy(cpu);
    pclip_backend_destroy(vk);
    pclip_ctx_destroy(ctx);
    return rc;
}
