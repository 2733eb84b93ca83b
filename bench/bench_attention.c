/* bench_attention: GFLOP/s of a CPU device's attention op at the shapes of
 * the ViT-B/32 benchmark checkpoint at batch 32: vision (seq 50, 12 heads,
 * head_dim 64, not causal) and text (seq 77, 8 heads, head_dim 64, causal).
 * It runs the real path: a one-op graph compiled on the backend, timed
 * over repeated runs, the best of five windows (the machine may be shared),
 * at fp32 and, where the CPU runs it, at precision bf16 (the result is the
 * graph's output, so it is written as fp32). FLOPs counted: 4 S^2 D per
 * (sequence, head) (q k^T and p v), 2 S (S + 1) D when causal. The share of
 * the FMA peak is against a 16-wide FMA loop (bench_clip peak's) on as many
 * threads as the backend uses.
 *
 *   bench_attention [--seconds S] [--batch N] [--precision fp32|bf16|both]
 *
 * PORTCLIP_THREADS sets the threads, PORTCLIP_CPU_SIMD caps the level. Not a
 * test. */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph/backend.h"

#include "bench_util.h"

/* Seconds per run of one attention op; < 0 on failure. */
static double bench(pclip_ctx_t ctx, pclip_backend_t b, int32_t B, int32_t S, int32_t H, int32_t D,
                    bool causal, double seconds) {
    double result = -1.0;
    pclip__graph *g = NULL;
    pclip__exec *e = NULL;
    const int64_t ne[2] = {(int64_t)B * S, 3 * (int64_t)H * D};
    /* activations of a LayerNorm'd input through qkv: about unit scale */
    float *x = bench_random_floats((size_t)(ne[0] * ne[1]), 7, 2.0f);
    if (!x || pclip__graph_create(ctx, &g)) goto done;
    pclip__tensor *in = pclip__input(g, "qkv", PCLIP__DTYPE_F32, 2, ne);
    pclip__tensor *y = pclip__attention(g, "attn", in, B, S, H, causal);
    if (!y || pclip__graph_output(g, y) || pclip__exec_create(b, g, &e) ||
        pclip__exec_write(e, in, x))
        goto done;
    for (int i = 0; i < 3; i++)
        if (pclip__exec_run(e)) goto done;
    result = bench_best_window(e, seconds);
done:
    if (result < 0) fprintf(stderr, "bench_attention: %s\n", pclip_ctx_last_error(ctx));
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    free(x);
    return result;
}

int main(int argc, char **argv) {
    double seconds = 1.0;
    int32_t batch = 32;
    const char *prec = "both";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc)
            prec = argv[++i];
        else {
            fprintf(stderr, "usage: bench_attention [--seconds S] [--batch N] [--precision "
                            "fp32|bf16|both]\n");
            return 2;
        }
    }
    if (batch < 1 || seconds <= 0 ||
        (strcmp(prec, "fp32") && strcmp(prec, "bf16") && strcmp(prec, "both"))) {
        fprintf(stderr, "bench_attention: bad --batch, --seconds or --precision\n");
        return 2;
    }
    pclip_ctx_t ctx;
    pclip_backend_t b;
    if (pclip_ctx_create(&ctx)) return 1;
    if (pclip_backend_create(ctx, "cpu", 0, &b)) {
        fprintf(stderr, "bench_attention: %s\n", pclip_ctx_last_error(ctx));
        pclip_ctx_destroy(ctx);
        return 1;
    }
    int threads = omp_get_num_procs();
    const char *env = getenv("PORTCLIP_THREADS");
    if (env && atoi(env) > 0) threads = atoi(env);
    __builtin_cpu_init();
    const double peak = __builtin_cpu_supports("avx512f") ? bench_fma_peak(1, threads, 1.0) : 0;
    printf("device: %s\nFMA peak (16-wide, %d thread%s): %.1f GFLOP/s\n",
           pclip_backend_device_name(b), threads, threads == 1 ? "" : "s", peak);
    static const struct {
        const char *name;
        int32_t S, H, D;
        bool causal;
    } shapes[] = {{"vision", 50, 12, 64, false}, {"text", 77, 8, 64, true}};
    int status = 0;
    for (int p = 0; p < 2; p++) {
        const pclip_precision pr = p ? PCLIP_PRECISION_BF16 : PCLIP_PRECISION_FP32;
        if (strcmp(prec, "both") && strcmp(prec, p ? "bf16" : "fp32")) continue;
        if (pclip_backend_set_precision(b, pr)) {
            printf("%s: %s\n", p ? "bf16" : "fp32", pclip_ctx_last_error(ctx));
            continue;
        }
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int32_t S = shapes[s].S, H = shapes[s].H, D = shapes[s].D;
            double t = bench(ctx, b, batch, S, H, D, shapes[s].causal, seconds);
            if (t < 0) {
                status = 1;
                continue;
            }
            const double pairs = (double)batch * H;
            const double flops =
                shapes[s].causal ? pairs * 2.0 * S * (S + 1) * D : pairs * 4.0 * S * S * D;
            const double gf = flops / t * 1e-9;
            printf("%s  %-6s batch %d seq %d heads %d head_dim %d%s  %8.3f ms  %7.1f GFLOP/s",
                   p ? "bf16" : "fp32", shapes[s].name, (int)batch, (int)S, (int)H, (int)D,
                   shapes[s].causal ? " causal" : "", t * 1e3, gf);
            if (peak > 0) printf("  %4.1f %% of peak", 100.0 * gf / peak);
            printf("\n");
        }
    }
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
    return status;
}
