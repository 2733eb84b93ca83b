/* bench_opencl: GFLOP/s of the OpenCL backend's matmul beside the CPU
 * backend's and CLBlast's SGEMM on the same OpenCL device, on the GEMMs of
 * one ViT-B/32 encoder layer (qkv 768->2304, out 768->768, fc1 768->3072,
 * fc2 3072->768) at batch 1 (M = 50 tokens) and batch 32 (M = 1600), and the
 * text encoder's qkv at 77 tokens. portclip runs its real path: a one-op
 * graph (bias fused) compiled on each backend, timed over repeated runs,
 * input upload and read-back included. CLBlast (libclblast.so.1, opened with
 * dlopen; skipped when absent) runs C = A W^T on buffers already on the
 * device, in the backend's own context and queue; its first call per shape
 * compiles its kernels and is left out of the timing, as is ours. The
 * summary per batch is the total GFLOP over the four layer GEMMs divided by
 * their total time.
 *
 *   bench_opencl [--device N] [--seconds S] [--no-cpu] [--no-clblast]
 *                [--shape M,N,K]   (one shape only, for tuning)
 *   bench_opencl --startup         opens the device, compiles and runs one
 *                                  small graph, and prints how long that took
 *                                  and how the program was obtained (bench/
 *                                  opencl.sh runs it with an empty and then a
 *                                  filled program cache)
 *
 * Not a test; the numbers go in bench/RESULTS.md. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl.h"
#include "graph/backend.h"

#include "bench_util.h"

/* Times y = a w^T + bias for a [M, K], w [N, K] on b; seconds per run (< 0
 * on failure). */
static double bench_backend(pclip_ctx_t ctx, pclip_backend_t b, int64_t M, int64_t N, int64_t K,
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
        pclip__exec_write(e, ta, a) || pclip__exec_run(e)) /* warm-up */
        goto done;
    long iters = 0;
    double t0 = bench_now(), t = 0;
    do {
        if (pclip__exec_write(e, ta, a) || pclip__exec_run(e) || pclip__exec_read(e, ty, y))
            goto done;
        iters++;
        t = bench_now() - t0;
    } while (t < seconds || iters < 2);
    result = t / (double)iters;
done:
    if (result < 0) fprintf(stderr, "bench_opencl: %s\n", pclip_ctx_last_error(ctx));
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    free(a), free(w), free(bias), free(y);
    return result;
}

/* ---- CLBlast, through dlopen ---- */

typedef int (*clblast_sgemm_fn)(int layout, int ta, int tb, size_t m, size_t n, size_t k,
                                float alpha, cl_mem a, size_t ao, size_t lda, cl_mem b, size_t bo,
                                size_t ldb, float beta, cl_mem c, size_t co, size_t ldc,
                                cl_command_queue *queue, cl_event *event);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 }; /* clblast_c.h */

static clblast_sgemm_fn clblast_open(void) {
    void *lib = dlopen("libclblast.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return NULL;
    clblast_sgemm_fn fn;
    *(void **)&fn = dlsym(lib, "CLBlastSgemm");
    return fn;
}

/* Times C = A W^T with CLBlast on the backend's device; seconds per call. */
static double bench_clblast(clblast_sgemm_fn sgemm, pclip__cl *s, int64_t M, int64_t N, int64_t K,
                            double seconds) {
    const pclip__cl_api *cl = s->cl;
    float *a = bench_random_floats((size_t)(M * K), 1, 1.0f),
          *w = bench_random_floats((size_t)(N * K), 2, 1.0f);
    cl_int err = 0;
    cl_mem ba = cl->clCreateBuffer(s->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                   (size_t)(M * K) * 4, a, &err);
    cl_mem bw = cl->clCreateBuffer(s->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                   (size_t)(N * K) * 4, w, &err);
    cl_mem bc = cl->clCreateBuffer(s->context, CL_MEM_READ_WRITE, (size_t)(M * N) * 4, NULL, &err);
    double result = -1.0;
    cl_command_queue q = s->queue;
    if (ba && bw && bc &&
        sgemm(ROW_MAJOR, NO_TRANS, TRANS, (size_t)M, (size_t)N, (size_t)K, 1.0f, ba, 0, (size_t)K,
              bw, 0, (size_t)K, 0.0f, bc, 0, (size_t)N, &q, NULL) == 0 &&
        cl->clFinish(q) == CL_SUCCESS) {
        long iters = 0;
        double t0 = bench_now(), t = 0;
        int bad = 0;
        do {
            bad |= sgemm(ROW_MAJOR, NO_TRANS, TRANS, (size_t)M, (size_t)N, (size_t)K, 1.0f, ba, 0,
                         (size_t)K, bw, 0, (size_t)K, 0.0f, bc, 0, (size_t)N, &q, NULL);
            bad |= cl->clFinish(q);
            iters++;
            t = bench_now() - t0;
        } while (!bad && (t < seconds || iters < 2));
        if (!bad) result = t / (double)iters;
    }
    if (ba) cl->clReleaseMemObject(ba);
    if (bw) cl->clReleaseMemObject(bw);
    if (bc) cl->clReleaseMemObject(bc);
    free(a), free(w);
    return result;
}

/* ---- startup ---- */

static int startup(pclip_ctx_t ctx, int32_t device) {
    const double t0 = bench_now();
    pclip_backend_t b;
    if (pclip_backend_create(ctx, "opencl", device, &b)) {
        fprintf(stderr, "bench_opencl: %s\n", pclip_ctx_last_error(ctx));
        return 1;
    }
    const double t1 = bench_now();
    double run = bench_backend(ctx, b, 50, 64, 64, 0.0);
    const double t2 = bench_now();
    const pclip__cl *s = b->state;
    printf("startup: open %.3f s, first graph (program + compile + 3 runs) %.3f s, program %.3f s "
           "(%s)\n",
           t1 - t0, t2 - t1, s->build_seconds, s->cache_note);
    pclip_backend_destroy(b);
    return run < 0;
}

int main(int argc, char **argv) {
    int32_t device = 0;
    double seconds = 2.0;
    bool cpu = true, clblast = true, only = false, start = false;
    int64_t shape[3] = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--no-cpu"))
            cpu = false;
        else if (!strcmp(argv[i], "--no-clblast"))
            clblast = false;
        else if (!strcmp(argv[i], "--startup"))
            start = true;
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            long long m, n, k;
            if (sscanf(argv[++i], "%lld,%lld,%lld", &m, &n, &k) != 3) return 2;
            shape[0] = m, shape[1] = n, shape[2] = k;
            only = true;
        } else {
            fprintf(stderr, "usage: bench_opencl [--device N] [--seconds S] [--no-cpu] "
                            "[--no-clblast] [--shape M,N,K] | --startup\n");
            return 2;
        }
    }
    pclip_ctx_t ctx;
    if (pclip_ctx_create(&ctx)) return 1;
    if (start) {
        int rc = startup(ctx, device);
        pclip_ctx_destroy(ctx);
        return rc;
    }
    pclip_backend_t b, c = NULL;
    if (pclip_backend_create(ctx, "opencl", device, &b) ||
        (cpu && pclip_backend_create(ctx, "cpu", 0, &c))) {
        fprintf(stderr, "bench_opencl: %s\n", pclip_ctx_last_error(ctx));
        return 1;
    }
    pclip__cl *s = b->state;
    clblast_sgemm_fn sgemm = clblast ? clblast_open() : NULL;
    printf("opencl device %d: %s (%s); matmul %s, tile %u,%u,%u,%u,%u, direct tile %u,%u,%u\n",
           device, pclip_backend_device_name(b), s->dev.driver,
           s->tune.direct ? "direct (b [N, K])" : "tiled", s->tune.bm, s->tune.bn, s->tune.bk,
           s->tune.tm, s->tune.tn, s->tune.md_tm, s->tune.md_tn, s->tune.md_vw);
    if (c) printf("cpu device 0: %s\n", pclip_backend_device_name(c));
    printf("clblast: %s\n", sgemm ? "libclblast.so.1 (CLBlastSgemm)" : "not used");
    static const struct {
        const char *name;
        int64_t M, N, K;
        int group; /* 1: batch 1 layer, 2: batch 32 layer, 0: other */
    } shapes[] = {
        {"vit qkv b1", 50, 2304, 768, 1},    {"vit out b1", 50, 768, 768, 1},
        {"vit fc1 b1", 50, 3072, 768, 1},    {"vit fc2 b1", 50, 768, 3072, 1},
        {"vit qkv b32", 1600, 2304, 768, 2}, {"vit out b32", 1600, 768, 768, 2},
        {"vit fc1 b32", 1600, 3072, 768, 2}, {"vit fc2 b32", 1600, 768, 3072, 2},
        {"text qkv 77", 77, 1536, 512, 0},
    };
    double flop[3] = {0}, t_cl[3] = {0}, t_cpu[3] = {0}, t_blast[3] = {0};
    printf("%-14s %6s %6s %6s %12s %12s %12s %9s %9s\n", "shape", "M", "N", "K", "opencl GF/s",
           "cpu GF/s", "clblast GF/s", "ocl/cpu", "ocl/blast");
    const size_t n_shapes = only ? 1 : sizeof shapes / sizeof shapes[0];
    for (size_t i = 0; i < n_shapes; i++) {
        const char *name = only ? "shape" : shapes[i].name;
        const int64_t M = only ? shape[0] : shapes[i].M, N = only ? shape[1] : shapes[i].N,
                      K = only ? shape[2] : shapes[i].K;
        const int grp = only ? 0 : shapes[i].group;
        const double f = 2.0 * (double)M * (double)N * (double)K;
        double tc = bench_backend(ctx, b, M, N, K, seconds);
        double tp = c ? bench_backend(ctx, c, M, N, K, seconds) : -1;
        double tb = sgemm ? bench_clblast(sgemm, s, M, N, K, seconds) : -1;
        if (tc < 0) return 1;
        printf("%-14s %6lld %6lld %6lld %12.2f %12.2f %12.2f %9.3f %9.3f\n", name, (long long)M,
               (long long)N, (long long)K, f / tc * 1e-9, tp > 0 ? f / tp * 1e-9 : 0,
               tb > 0 ? f / tb * 1e-9 : 0, tp > 0 ? tp / tc : 0, tb > 0 ? tb / tc : 0);
        fflush(stdout);
        if (grp) {
            flop[grp] += f, t_cl[grp] += tc, t_cpu[grp] += tp, t_blast[grp] += tb;
        }
    }
    for (int grp = 1; grp <= 2 && !only; grp++)
        printf("ViT-B/32 layer GEMMs, batch %-2d: opencl %.2f GFLOP/s, cpu %.2f, clblast %.2f "
               "(opencl/clblast %.3f)\n",
               grp == 1 ? 1 : 32, flop[grp] / t_cl[grp] * 1e-9,
               c ? flop[grp] / t_cpu[grp] * 1e-9 : 0, sgemm ? flop[grp] / t_blast[grp] * 1e-9 : 0,
               sgemm ? t_blast[grp] / t_cl[grp] : 0);
    pclip_backend_destroy(b);
    pclip_backend_destroy(c);
    pclip_ctx_destroy(ctx);
    return 0;
}
