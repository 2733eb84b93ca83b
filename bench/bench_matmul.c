/* bench_matmul: GFLOP/s of a CPU device's matmul on the GEMMs of one
 * ViT-B/32 encoder layer (qkv 768->2304, out 768->768, fc1 768->3072,
 * fc2 3072->768, bias fused), at batch 1 (M = 50 tokens) and batch 32
 * (M = 1600). It runs the real path: a one-op graph compiled on the backend
 * (weights packed at compile time), timed over repeated runs, the best of
 * five windows (the machine may be shared). Then it times one whole encoder
 * block (layer norms, fused qkv, attention, residuals, quick_gelu MLP) to
 * show what the other ops cost beside the GEMMs. Last, "streamed weights":
 * the batch-1 GEMMs over 24 distinct weights per run (more than the L3
 * cache holds, as in a whole model, where every weight comes from memory
 * once per image), with the panel kernel and with oneDNN alone
 * (PORTCLIP_CPU_PANELS=0), in the same run.
 *
 *   bench_matmul [--device N] [--seconds S]
 *
 * Device 0 is the fast path (default), 1 the plain C reference;
 * PORTCLIP_THREADS sets the threads. Not a test; the numbers go in
 * DESIGN.md / the README when they change. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph/backend.h"

#include "bench_util.h"

/* Times `copies` linear layers y = a w^T + bias, a [M, K], w [N, K], each
 * with its own weight, all reading one input, in one graph (copies 1: one
 * weight, which then stays in cache); returns GFLOP/s, or < 0. */
static double bench(pclip_ctx_t ctx, pclip_backend_t b, int64_t M, int64_t N, int64_t K, int copies,
                    double seconds) {
    double result = -1.0;
    pclip__graph *g = NULL;
    pclip__exec *e = NULL;
    float *a = bench_random_floats((size_t)(M * K), 1, 1.0f),
          *bias = bench_random_floats((size_t)N, 3, 1.0f);
    float **w = calloc((size_t)copies, sizeof *w);
    if (!a || !bias || !w || pclip__graph_create(ctx, &g)) goto done;
    const int64_t ane[2] = {M, K}, wne[2] = {N, K}, bne[1] = {N};
    pclip__tensor *ta = pclip__input(g, "a", PCLIP__DTYPE_F32, 2, ane);
    for (int c = 0; c < copies; c++) {
        char name[32];
        snprintf(name, sizeof name, "w%d", c);
        if (!(w[c] = bench_random_floats((size_t)(N * K), 10 + (uint64_t)c, 1.0f))) goto done;
        pclip__tensor *ty =
            pclip__linear(g, name, ta, pclip__weight(g, name, 2, wne, w[c]),
                          pclip__weight(g, "bias", 1, bne, bias), PCLIP_ACT_NONE, NULL);
        if (!ty || pclip__graph_output(g, ty)) goto done;
    }
    if (pclip__exec_create(b, g, &e) || pclip__exec_write(e, ta, a)) goto done;
    for (int i = 0; i < 2; i++)
        if (pclip__exec_run(e)) goto done;
    double best = bench_best_window(e, seconds);
    if (best > 0) result = 2.0 * (double)M * (double)N * (double)K * copies / best * 1e-9;
done:
    if (result < 0) fprintf(stderr, "bench_matmul: %s\n", pclip_ctx_last_error(ctx));
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    for (int c = 0; w && c < copies; c++) free(w[c]);
    free(w), free(a), free(bias);
    return result;
}

/* One ViT-B/32 pre-LayerNorm block on B images (T = 50, W = 768, 12 heads);
 * returns ms per run, or < 0. */
static double bench_block(pclip_ctx_t ctx, pclip_backend_t be, int32_t B, double seconds) {
    const int64_t T = 50, W = 768, H = 12;
    double result = -1.0;
    pclip__graph *g = NULL;
    pclip__exec *e = NULL;
    float *w[12] = {0}, *x = NULL;
    const size_t sizes[12] = {W, W, 3 * W * W, 3 * W, W * W,     W,
                              W, W, 4 * W * W, 4 * W, 4 * W * W, W};
    for (int i = 0; i < 12; i++)
        if (!(w[i] = bench_random_floats(sizes[i], 10 + (uint64_t)i, 1.0f))) goto done;
    for (size_t i = 0; i < W; i++) w[0][i] = w[6][i] = 1.0f;
    x = bench_random_floats((size_t)(B * T * W), 9, 1.0f);
    if (!x || pclip__graph_create(ctx, &g)) goto done;
    const int64_t xne[2] = {B * T, W}, v[1] = {W}, qkv_w[2] = {3 * W, W}, qkv_b[1] = {3 * W};
    const int64_t o_w[2] = {W, W}, f1_w[2] = {4 * W, W}, f1_b[1] = {4 * W}, f2_w[2] = {W, 4 * W};
    pclip__tensor *in = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
    pclip__tensor *h = pclip__layer_norm(g, "ln1", in, pclip__weight(g, "ln1.g", 1, v, w[0]),
                                         pclip__weight(g, "ln1.b", 1, v, w[1]), 1e-5f);
    pclip__tensor *qkv =
        pclip__linear(g, "qkv", h, pclip__weight(g, "qkv.w", 2, qkv_w, w[2]),
                      pclip__weight(g, "qkv.b", 1, qkv_b, w[3]), PCLIP_ACT_NONE, NULL);
    pclip__tensor *a = pclip__attention(g, "attn", qkv, B, (int32_t)T, (int32_t)H, false);
    pclip__tensor *r = pclip__linear(g, "out", a, pclip__weight(g, "out.w", 2, o_w, w[4]),
                                     pclip__weight(g, "out.b", 1, v, w[5]), PCLIP_ACT_NONE, in);
    h = pclip__layer_norm(g, "ln2", r, pclip__weight(g, "ln2.g", 1, v, w[6]),
                          pclip__weight(g, "ln2.b", 1, v, w[7]), 1e-5f);
    pclip__tensor *f =
        pclip__linear(g, "fc1", h, pclip__weight(g, "fc1.w", 2, f1_w, w[8]),
                      pclip__weight(g, "fc1.b", 1, f1_b, w[9]), PCLIP_ACT_QUICK_GELU, NULL);
    pclip__tensor *y = pclip__linear(g, "fc2", f, pclip__weight(g, "fc2.w", 2, f2_w, w[10]),
                                     pclip__weight(g, "fc2.b", 1, v, w[11]), PCLIP_ACT_NONE, r);
    if (g->status || pclip__graph_output(g, y) || pclip__exec_create(be, g, &e) ||
        pclip__exec_write(e, in, x))
        goto done;
    for (int i = 0; i < 2; i++)
        if (pclip__exec_run(e)) goto done;
    double best = bench_best_window(e, seconds);
    if (best <= 0) goto done;
    result = best * 1e3;
done:
    if (result < 0) fprintf(stderr, "bench_matmul: %s\n", pclip_ctx_last_error(ctx));
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    for (int i = 0; i < 12; i++) free(w[i]);
    free(x);
    return result;
}

int main(int argc, char **argv) {
    int device = 0;
    double seconds = 1.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_matmul [--device N] [--seconds S]\n");
            return 2;
        }
    }
    pclip_ctx_t ctx;
    pclip_backend_t b;
    if (pclip_ctx_create(&ctx)) return 1;
    if (pclip_backend_create(ctx, "cpu", device, &b)) {
        fprintf(stderr, "bench_matmul: %s\n", pclip_ctx_last_error(ctx));
        pclip_ctx_destroy(ctx);
        return 1;
    }
    printf("device: %s\n", pclip_backend_device_name(b));
    static const int64_t shapes[][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};
    static const int64_t batches[] = {1, 32};
    int status = 0;
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        int64_t M = 50 * batches[bi];
        double flops = 0, secs = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t K = shapes[s][0], N = shapes[s][1];
            double gf = bench(ctx, b, M, N, K, 1, seconds);
            if (gf < 0) {
                status = 1;
                continue;
            }
            double f = 2.0 * (double)M * (double)N * (double)K;
            flops += f;
            secs += f / (gf * 1e9);
            printf("batch %2lld  M %5lld  K %4lld  N %4lld  %8.1f GFLOP/s  %8.3f ms\n",
                   (long long)batches[bi], (long long)M, (long long)K, (long long)N, gf,
                   f / (gf * 1e9) * 1e3);
        }
        if (secs > 0)
            printf("batch %2lld  layer GEMMs               %8.1f GFLOP/s  %8.3f ms\n",
                   (long long)batches[bi], flops / secs * 1e-9, secs * 1e3);
        double ms = bench_block(ctx, b, (int32_t)batches[bi], seconds);
        if (ms < 0)
            status = 1;
        else
            printf("batch %2lld  whole block (+ LN, attention, act, residual)  %8.3f ms"
                   "  (GEMMs %.0f%%)\n",
                   (long long)batches[bi], ms, secs > 0 ? 100.0 * secs * 1e3 / ms : 0.0);
    }
    pclip_backend_destroy(b);
    if (device == 0) {
        /* streamed weights: panel kernel (the default) against oneDNN alone */
        pclip_backend_t dn;
        setenv("PORTCLIP_CPU_PANELS", "0", 1);
        pclip_status st = pclip_backend_create(ctx, "cpu", 0, &dn);
        unsetenv("PORTCLIP_CPU_PANELS");
        if (st || pclip_backend_create(ctx, "cpu", 0, &b)) {
            fprintf(stderr, "bench_matmul: %s\n", pclip_ctx_last_error(ctx));
            pclip_ctx_destroy(ctx);
            return 1;
        }
        printf("streamed weights (24 per run), M 50: panel kernel vs oneDNN alone\n");
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t K = shapes[s][0], N = shapes[s][1];
            double gp = bench(ctx, b, 50, N, K, 24, seconds);
            double gd = bench(ctx, dn, 50, N, K, 24, seconds);
            if (gp < 0 || gd < 0) {
                status = 1;
                continue;
            }
            printf("  K %4lld  N %4lld  panel %6.1f GFLOP/s  oneDNN %6.1f GFLOP/s  ratio %.2f\n",
                   (long long)K, (long long)N, gp, gd, gp / gd);
        }
        pclip_backend_destroy(dn);
        pclip_backend_destroy(b);
    }
    pclip_ctx_destroy(ctx);
    return status;
}
