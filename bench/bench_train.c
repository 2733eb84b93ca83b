/* Training steps per second from cached features: the whole step (both
 * heads' forward, L2 normalisation, the contrastive loss, its gradients and
 * the AdamW updates with the clamp of logit_scale) as the trainer runs it,
 * on random features, after a warm-up. bench/train.sh runs it beside the
 * same step in PyTorch (bench/torch_train.py).
 *
 *   bench_train [--backend NAME] [--head linear|mlp] [--batch B] [--dv 768]
 *               [--dt 512] [--embed 512] [--seconds S]
 *
 * Prints one JSON line: {"impl": "portclip", "backend", "head", "batch",
 * "steps_per_s", "steps", "seconds", "loss"}. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/heads.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *randn_like(size_t n, uint64_t seed, float scale) {
    float *v = malloc(n * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = scale * ((float)(seed >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *backend = "cpu";
    int kind = 0, batch = 256, dv = 768, dt = 512, e = 512;
    double seconds = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_train: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--head")) kind = !strcmp(v, "mlp");
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--dv")) dv = atoi(v);
        else if (!strcmp(a, "--dt")) dt = atoi(v);
        else if (!strcmp(a, "--embed")) e = atoi(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else {
            fprintf(stderr, "bench_train: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    pclip_ctx_t ctx = NULL;
    pclip_backend_t b = NULL;
    pclip__heads *h = NULL;
    if (pclip_ctx_create(&ctx) || pclip_backend_create(ctx, backend, -1, &b) ||
        pclip__heads_create(ctx, b, kind, dv, dt, e, 0.0f, &h)) {
        fprintf(stderr, "bench_train: %s\n", ctx ? pclip_ctx_last_error(ctx) : "no context");
        return 1;
    }
    for (int32_t i = 0; i < h->n_prm; i++) {
        pclip__head_param *p = &h->prm[i];
        float *v = randn_like((size_t)p->n, 1000 + (uint64_t)i, p->ndim == 2 ? 0.04f : 0.0f);
        if (strstr(p->name, "layer_norm.weight"))
            for (int64_t k = 0; k < p->n; k++) v[k] = 1.0f;
        if (!strcmp(p->name, "logit_scale")) v[0] = 2.6592600f;
        pclip__heads_write(h, p, 0, v);
        free(v);
    }
    float *fi = randn_like((size_t)batch * dv, 1, 1.0f), *ft = randn_like((size_t)batch * dt, 2, 1.0f);
    float loss = 0;
    pclip_status st = PCLIP_STATUS_OK;
    for (int s = 1; s <= 5 && !st; s++) /* warm-up: compile, caches, thread pool */
        st = pclip__heads_step(h, fi, ft, batch, 1e-4, 0.01, s, 0, &loss);
    long steps = 0;
    const double t0 = now_s();
    double t = t0;
    while (!st && t - t0 < seconds) {
        st = pclip__heads_step(h, fi, ft, batch, 1e-4, 0.01, 6 + steps, 0, &loss);
        steps++;
        t = now_s();
    }
    if (st) {
        fprintf(stderr, "bench_train: %s\n", pclip_ctx_last_error(ctx));
        return 1;
    }
    printf("{\"impl\": \"portclip\", \"backend\": \"%s\", \"head\": \"%s\", \"batch\": %d, "
           "\"dims\": [%d, %d, %d], \"steps_per_s\": %.3f, \"steps\": %ld, \"seconds\": %.3f, "
           "\"loss\": %.6f}\n",
           backend, kind ? "mlp" : "linear", batch, dv, dt, e, (double)steps / (t - t0), steps,
           t - t0, (double)loss);
    pclip__heads_destroy(h);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
    free(fi);
    free(ft);
    return 0;
}
