/* What the C benchmarks share: a monotonic clock, deterministic random
 * inputs, the best-of-windows timing of a compiled graph (graph/backend.h,
 * for the benchmarks that include it first) and the FMA peak loops (for
 * those built with OpenMP). Benchmarks only; not part of the library. */
#ifndef PCLIP_BENCH_UTIL_H
#define PCLIP_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* n floats uniform in [-amp, amp), the same for the same seed; NULL when out
 * of memory. */
static inline float *bench_random_floats(size_t n, uint64_t seed, float amp) {
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = ((float)((double)(seed >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f) * amp;
    }
    return p;
}

#ifdef PCLIP_BACKEND_H
/* Seconds per run of e: the best of 5 windows of seconds/5 each, so that
 * other work on a shared machine does not drag the figure down; < 0 on
 * failure. */
static inline double bench_best_window(pclip__exec *e, double seconds) {
    double best = -1.0;
    for (int w = 0; w < 5; w++) {
        long iters = 0;
        double t0 = bench_now(), t = 0;
        do {
            if (pclip__exec_run(e)) return -1.0;
            iters++;
            t = bench_now() - t0;
        } while (t < seconds / 5);
        if (best < 0 || t / (double)iters < best) best = t / (double)iters;
    }
    return best;
}
#endif

#if defined(_OPENMP) && defined(__x86_64__)
#include <immintrin.h>

#define BENCH_FMA_ACC512 24
#define BENCH_FMA_ACC256 12

/* `iters` rounds of BENCH_FMA_ACC512 independent 16-wide FMAs, all
 * accumulators in registers; returns a value derived from every accumulator
 * so nothing is optimised away (the chain a = a * m + c cannot be folded
 * without -ffast-math). Values stay near 1: no overflow, no denormals. */
__attribute__((target("avx512f"))) static inline float bench_fma_loop512(long iters) {
    __m512 acc[BENCH_FMA_ACC512];
    for (int k = 0; k < BENCH_FMA_ACC512; k++) acc[k] = _mm512_set1_ps(1.0f + (float)k * 1e-3f);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 24
        for (int k = 0; k < BENCH_FMA_ACC512; k++) acc[k] = _mm512_fmadd_ps(acc[k], m, c);
    }
    __m512 s = acc[0];
    for (int k = 1; k < BENCH_FMA_ACC512; k++) s = _mm512_add_ps(s, acc[k]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static inline float bench_fma_loop256(long iters) {
    __m256 acc[BENCH_FMA_ACC256];
    for (int k = 0; k < BENCH_FMA_ACC256; k++) acc[k] = _mm256_set1_ps(1.0f + (float)k * 1e-3f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < BENCH_FMA_ACC256; k++) acc[k] = _mm256_fmadd_ps(acc[k], m, c);
    }
    __m256 s = acc[0];
    for (int k = 1; k < BENCH_FMA_ACC256; k++) s = _mm256_add_ps(s, acc[k]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

/* FMA GFLOP/s, 16-wide (wide) or 8-wide, of `threads` threads each running
 * the loop for about `seconds`: the best of 5 runs (the machine may be
 * shared). The caller checks that the CPU has the instructions. */
static inline double bench_fma_peak(int wide, int threads, double seconds) {
    const double flops_per_iter = wide ? 2.0 * 16 * BENCH_FMA_ACC512 : 2.0 * 8 * BENCH_FMA_ACC256;
    /* calibrate on one thread */
    long iters = 1000;
    for (;;) {
        double t0 = bench_now();
        volatile float sink = wide ? bench_fma_loop512(iters) : bench_fma_loop256(iters);
        (void)sink;
        double dt = bench_now() - t0;
        if (dt > 0.02) {
            iters = (long)((double)iters * (seconds / 5) / dt) + 1;
            break;
        }
        iters *= 4;
    }
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = bench_now();
        float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        total += wide ? bench_fma_loop512(iters) : bench_fma_loop256(iters);
        double dt = bench_now() - t0;
        volatile float sink = total;
        (void)sink;
        double g = flops_per_iter * (double)iters * threads / dt / 1e9;
        if (g > best) best = g;
    }
    return best;
}
#endif

#endif
