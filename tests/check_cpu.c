/* The CPU backend's internals: its device list and index checks, its
 * environment variables, the packed-weight cache, the panel kernel against
 * the reference, an arena larger than memory, and the CLI's OpenMP wait
 * policy. CTest runs it again with
 * PORTCLIP_CPU_SIMD=avx2|scalar (check_cpu_avx2, check_cpu_scalar; exit 77
 * when the CPU lacks the level). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "testutil.h"

#define ck_assert_err_has(ctx, needle)                                                             \
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), needle) != NULL, "message '%s' lacks '%s'",    \
                  pclip_ctx_last_error(ctx), needle)

/* ---- devices ---- */

/* The backend's own open refuses indices outside 0..1, as
 * pclip_backend_create does. */
START_TEST(test_cpu_device_index) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    void *state = NULL;
    ck_assert_int_eq(pclip__cpu_backend_ops.create(ctx, 2, &state), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "cpu: device 2 does not exist (0: fast, 1: reference)");
    ck_assert_int_eq(pclip__cpu_backend_ops.create(ctx, -1, &state), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(state);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* The CPU backend's own device list (not pclip_devices_list, which would
 * also load other backends' drivers into this test). */
START_TEST(test_cpu_devices) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip__device_info d[4];
    int32_t count = 0;
    ck_assert_status(ctx, pclip__cpu_backend_ops.list_devices(ctx, d, 4, &count), PCLIP_STATUS_OK);
    ck_assert_int_eq(count, 2);
    for (int32_t i = 0; i < count; i++) {
        ck_assert_str_eq(d[i].type, "cpu");
        ck_assert(!d[i].software);
        ck_assert_uint_gt(d[i].memory_bytes, (uint64_t)64 << 20);
        ck_assert_int_gt(strlen(d[i].vendor), 0);
    }
    ck_assert_msg(strncmp(d[0].name, "CPU (fast: ", 11) == 0, "name '%s'", d[0].name);
    ck_assert_msg(strstr(d[0].name, "AVX-512") || strstr(d[0].name, "AVX2+FMA") ||
                      strstr(d[0].name, "scalar"),
                  "name '%s' lacks the SIMD level", d[0].name);
    ck_assert_str_eq(d[1].name, "CPU reference (plain C)");
    /* a short table gets the count anyway */
    ck_assert_status(ctx, pclip__cpu_backend_ops.list_devices(ctx, d, 1, &count), PCLIP_STATUS_OK);
    ck_assert_int_eq(count, 2);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_cpu_environment) {
    pclip_ctx_t ctx;
    pclip_backend_t b = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    setenv("PORTCLIP_THREADS", "many", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(pclip_ctx_last_error(ctx),
                     "cpu: PORTCLIP_THREADS='many' is not an integer in 1..1024");
    setenv("PORTCLIP_THREADS", "0", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    setenv("PORTCLIP_THREADS", "1", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(strstr(pclip_backend_device_name(b), "1 thread)"));
    pclip_backend_destroy(b);
    b = NULL;
    unsetenv("PORTCLIP_THREADS");
    setenv("PORTCLIP_CPU_SIMD", "sse9", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "PORTCLIP_CPU_SIMD='sse9' is not one of scalar, avx2, avx512");
    setenv("PORTCLIP_CPU_SIMD", "scalar", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(strstr(pclip_backend_device_name(b), "scalar"));
    pclip_backend_destroy(b);
    b = NULL;
    unsetenv("PORTCLIP_CPU_SIMD");
    setenv("PORTCLIP_CPU_PANELS", "2", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "PORTCLIP_CPU_PANELS='2' is not an integer in 0..1");
    unsetenv("PORTCLIP_CPU_PANELS");
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Packed weights are shared by graphs on one device and freed with the last. */
START_TEST(test_cpu_weight_cache) {
    pclip_ctx_t ctx;
    pclip_backend_t b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    float *w = pclip_test_ramp(64 * 96, 0.5f), *in = pclip_test_ramp(50 * 96, 1.0f), y1[50 * 64],
          y2[50 * 64];
    pclip__graph *g[3];
    pclip__exec *e[3];
    pclip__tensor *x[3], *y[3];
    const int32_t rows[3] = {50, 50, 7};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(pclip__graph_create(ctx, &g[i]), PCLIP_STATUS_OK);
        const int64_t xne[2] = {rows[i], 96}, wne[2] = {64, 96};
        x[i] = pclip__input(g[i], "x", PCLIP__DTYPE_F32, 2, xne);
        y[i] = pclip__linear(g[i], "y", x[i], pclip__weight(g[i], "w", 2, wne, w), NULL,
                             PCLIP_ACT_NONE, NULL);
        ck_assert_int_eq(pclip__graph_output(g[i], y[i]), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip__exec_create(b, g[i], &e[i]), PCLIP_STATUS_OK);
        if (i == 1) ck_assert_int_eq(pclip__cpu_packed_weights(b->state), 1);
    }
    ck_assert_int_le(pclip__cpu_packed_weights(b->state), 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pclip__exec_write(e[i], x[i], in), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_run(e[i]), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_read(e[i], y[i], i ? y2 : y1), PCLIP_STATUS_OK);
    }
    ck_assert_mem_eq(y1, y2, sizeof y1);
    for (int i = 0; i < 3; i++) {
        pclip__exec_destroy(e[i]);
        pclip__graph_destroy(g[i]);
    }
    ck_assert_int_eq(pclip__cpu_packed_weights(b->state), 0);
    free(w), free(in);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* The panel kernel (matmul.c) takes the linear layers it fits, and only
 * those: a few dozen rows, AVX-512, N of at least two 64-column panels per
 * thread. Its results match the reference with the full epilogue, over row
 * blocks with a tail (50 = 8 x 6 + 2) and K chunks with a short last one
 * (784 = 3 x 256 + 16). */
START_TEST(test_cpu_panel_kernel) {
    pclip_ctx_t ctx;
    pclip_backend_t fast, ref;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    setenv("PORTCLIP_THREADS", "2", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &fast), PCLIP_STATUS_OK);
    unsetenv("PORTCLIP_THREADS");
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    const bool avx512 = strstr(pclip_backend_device_name(fast), "AVX-512") != NULL;
    if (!avx512) fprintf(stderr, "test_cpu_panel_kernel: no AVX-512 here, checks results only\n");
    /* the benchmark hook turns it off */
    pclip_backend_t off;
    setenv("PORTCLIP_CPU_PANELS", "0", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &off), PCLIP_STATUS_OK);
    unsetenv("PORTCLIP_CPU_PANELS");
    static const int32_t shapes[][4] = {/* M, N, K, panel kernel expected */
                                        {50, 256, 784, 1}, {16, 512, 64, 1},  {160, 384, 96, 1},
                                        {15, 256, 64, 0},  {161, 256, 64, 0}, {50, 192, 64, 0},
                                        {50, 250, 64, 0},  {50, 256, 72, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *w = pclip_test_ramp((size_t)(N * K), 0.1f), *bias = pclip_test_ramp((size_t)N, 0.5f);
        float *in = pclip_test_ramp((size_t)(M * K), 1.0f),
              *res = pclip_test_ramp((size_t)(M * N), 2.0f);
        float *y[2] = {malloc((size_t)(M * N) * sizeof(float)),
                       malloc((size_t)(M * N) * sizeof(float))};
        for (int dev = 0; dev < 2; dev++) {
            pclip__graph *g;
            pclip__exec *e;
            ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
            const int64_t xne[2] = {M, K}, wne[2] = {N, K}, bne[1] = {N}, rne[2] = {M, N};
            pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
            pclip__tensor *r = pclip__input(g, "r", PCLIP__DTYPE_F32, 2, rne);
            pclip__tensor *out =
                pclip__linear(g, "y", x, pclip__weight(g, "w", 2, wne, w),
                              pclip__weight(g, "b", 1, bne, bias), PCLIP_ACT_QUICK_GELU, r);
            ck_assert_int_eq(pclip__graph_output(g, out), PCLIP_STATUS_OK);
            if (dev == 0) { /* the same graph on the backend without the kernel */
                ck_assert_status(ctx, pclip__exec_create(off, g, &e), PCLIP_STATUS_OK);
                ck_assert_int_eq(pclip__cpu_panel_nodes(e->state), 0);
                pclip__exec_destroy(e);
            }
            ck_assert_status(ctx, pclip__exec_create(dev ? ref : fast, g, &e), PCLIP_STATUS_OK);
            if (dev == 0)
                ck_assert_msg(pclip__cpu_panel_nodes(e->state) == (avx512 ? shapes[s][3] : 0),
                              "M %lld N %lld K %lld: panel kernel %s expected", (long long)M,
                              (long long)N, (long long)K, shapes[s][3] ? "" : "not");
            ck_assert_int_eq(pclip__exec_write(e, x, in), PCLIP_STATUS_OK);
            ck_assert_int_eq(pclip__exec_write(e, r, res), PCLIP_STATUS_OK);
            ck_assert_int_eq(pclip__exec_run(e), PCLIP_STATUS_OK);
            ck_assert_int_eq(pclip__exec_read(e, out, y[dev]), PCLIP_STATUS_OK);
            pclip__exec_destroy(e);
            pclip__graph_destroy(g);
        }
        double err = 0, norm = 0;
        for (int64_t i = 0; i < M * N; i++) {
            err += ((double)y[0][i] - y[1][i]) * ((double)y[0][i] - y[1][i]);
            norm += (double)y[1][i] * y[1][i];
        }
        ck_assert_msg(err <= 1e-12 * norm, "M %lld N %lld K %lld: NMSE %.3g", (long long)M,
                      (long long)N, (long long)K, err / norm);
        free(w), free(bias), free(in), free(res), free(y[0]), free(y[1]);
    }
    pclip_backend_destroy(fast);
    pclip_backend_destroy(ref);
    pclip_backend_destroy(off);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* An arena bigger than memory: OUT_OF_MEMORY naming its size. (Where the
 * kernel overcommits without limit the allocation may succeed: then there is
 * nothing to check.) ASan aborts on such a request instead of failing it. */
START_TEST(test_cpu_arena_too_large) {
#if defined(__SANITIZE_ADDRESS__)
    return;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return;
#endif
#endif
    pclip_ctx_t ctx;
    pclip_backend_t b;
    pclip__graph *g;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    /* 64 inputs of 4 GiB, all live at once: an arena of 256 GiB and more */
    const int64_t ne[1] = {(int64_t)1 << 30};
    pclip__tensor *y = pclip__input(g, "x0", PCLIP__DTYPE_F32, 1, ne);
    for (int i = 1; i < 64; i++) {
        char name[16], sum[16];
        snprintf(name, sizeof name, "x%d", i);
        snprintf(sum, sizeof sum, "sum%d", i);
        y = pclip__add(g, sum, y, pclip__input(g, name, PCLIP__DTYPE_F32, 1, ne));
    }
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_plan(g), PCLIP_STATUS_OK);
    pclip__exec *e = NULL;
    pclip_status st = pclip__exec_create(b, g, &e);
    if (st) {
        char want[96];
        snprintf(want, sizeof want, "cpu: cannot allocate the graph's arena (%zu MiB)",
                 (g->arena_bytes + ((size_t)1 << 20) - 1) >> 20);
        ck_assert_status(ctx, st, PCLIP_STATUS_OUT_OF_MEMORY);
        ck_assert_err_has(ctx, want);
    }
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- the CLI's OpenMP wait policy ---- */

/* Runs the CLI's --version with `env` (assignments and -u options for
 * env(1)) and OMP_DISPLAY_ENV=VERBOSE, so that the OpenMP runtime prints its
 * settings each time a process loads it. Returns how many processes printed
 * them and the spin counts libgomp showed, in order, in spins[0..*n_spins). */
static int omp_runs(const char *env, unsigned long long *spins, int *n_spins) {
    char cmd[4096], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd,
             "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT %s OMP_DISPLAY_ENV=VERBOSE '%s' --version",
             env, pclip_test_cli());
    int rc = pclip_test_sh(cmd, &out, &err);
    ck_assert_msg(rc == 0, "`%s` exited %d: %s", cmd, rc, err ? err : "");
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(strstr(out, "portclip") != NULL, "`%s` printed '%s'", cmd, out);
    int blocks = 0;
    *n_spins = 0;
    for (const char *p = err; p && (p = strstr(p, "DISPLAY ENVIRONMENT BEGIN")); p++) blocks++;
    for (const char *p = err; p && (p = strstr(p, "GOMP_SPINCOUNT = '")) && *n_spins < 4; p++)
        spins[(*n_spins)++] = strtoull(p + strlen("GOMP_SPINCOUNT = '"), NULL, 10);
    free(out);
    free(err);
    return blocks;
}

/* With neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT set, the CLI runs itself
 * once more with GOMP_SPINCOUNT=3000 (libgomp's default is 300000); with
 * either set, even empty, it runs once with the user's setting. */
START_TEST(test_cpu_cli_wait_policy) {
    unsigned long long spins[4];
    int n;
    ck_assert_int_eq(omp_runs("", spins, &n), 2);
    if (n) { /* libgomp shows its spin count; other runtimes do not */
        ck_assert_int_eq(n, 2);
        ck_assert_uint_gt(spins[0], 3000);
        ck_assert_uint_eq(spins[1], 3000);
    }
    ck_assert_int_eq(omp_runs("OMP_WAIT_POLICY=ACTIVE", spins, &n), 1);
    if (n) ck_assert_uint_gt(spins[0], 1000000);
    ck_assert_int_eq(omp_runs("OMP_WAIT_POLICY=passive", spins, &n), 1);
    if (n) ck_assert_uint_eq(spins[0], 0);
    ck_assert_int_eq(omp_runs("GOMP_SPINCOUNT=5000", spins, &n), 1);
    if (n) ck_assert_uint_eq(spins[0], 5000);
    ck_assert_int_eq(omp_runs("OMP_WAIT_POLICY=", spins, &n), 1);
    ck_assert_int_eq(omp_runs("GOMP_SPINCOUNT=", spins, &n), 1);
}
END_TEST

/* ---- the suite ---- */

int main(void) {
    pclip_test_probe_backend("check_cpu", "cpu", 0);
    Suite *s = suite_create("cpu");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 300);
    tcase_add_test(core, test_cpu_devices);
    tcase_add_test(core, test_cpu_weight_cache);
    tcase_add_test(core, test_cpu_panel_kernel);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_set_timeout(limits, 300);
    tcase_add_test(limits, test_cpu_device_index);
    tcase_add_test(limits, test_cpu_environment);
    tcase_add_test(limits, test_cpu_arena_too_large);
    tcase_add_test(limits, test_cpu_cli_wait_policy);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
