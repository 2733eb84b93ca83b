/* Ops: every parity case of core/graph/parity.c on one backend against the
 * CPU reference. Whole graphs are in check_graph, the CPU backend's
 * internals in check_cpu.
 *
 *   check_ops cpu        CPU fast path (device 0) against the reference (device 1)
 *   check_ops vulkan     Vulkan device PORTCLIP_DEVICE (default 0) against it, and
 *                        likewise opencl once those backends exist
 *
 * The backend under test comes from argv[1] (or PCLIP_TEST_BACKEND; "cpu" by
 * default). CTest registers one test per backend (check_ops_cpu, ...); a
 * backend this machine cannot open prints "skipped: <backend>: <reason>" and
 * exits 77. It is probed in a child process: devices are only ever opened
 * after Check's fork. PORTCLIP_CPU_SIMD=avx2|scalar runs the CPU fast path at
 * a lower SIMD level (check_ops_cpu_avx2, check_ops_cpu_scalar).
 *
 * To replay outside Check: `check_ops cpu --list` names every case,
 * `--case N` runs one and prints its errors, `--summary` runs them all and
 * prints the largest errors per op. `--shard K/N` (1 <= K <= N) runs the
 * K-th of N shares of the chunks below (CTest: check_ops_vulkan_1of2 ...). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/parity.h"
#include "testutil.h"

static const char *backend = "cpu"; /* under test */
static int32_t test_device = 0;

static void open_pair(pclip_ctx_t ctx, pclip_backend_t *ref, pclip_backend_t *test) {
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, ref), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, test), PCLIP_STATUS_OK);
}

static void print_result(size_t i, const pclip__parity_result *r) {
    printf("%4zu %-64s nmse %9.3g (tol %7.1g) max_abs %9.3g max_rel %9.3g guard %lld/%lld %s\n", i,
           r->name, r->nmse, r->tol, r->max_abs, r->max_rel, (long long)r->guard_ref,
           (long long)r->guard_test, r->passed ? "ok" : r->why);
}

/* ---- parity: one loop test per op, one iteration per chunk of cases ----
 *
 * Each iteration (a forked child) opens the CPU reference and the backend
 * under test once and runs up to CHUNK cases of one op on them: a Vulkan
 * instance under the validation layer costs more to open than most cases
 * cost to run, and a backend that stays open reuses its pipelines and
 * compiled kernels across cases, as a model's graphs do. Every case of the
 * chunk runs even after one fails; each failure is printed (case number,
 * name, errors: enough to replay it with --case N) and the iteration fails
 * naming the first. A case that could not run (an error status) also has
 * both backends reopened, so that the next case starts from fresh devices. */

#define CHUNK 32
#define MAX_CHUNKS 256

static struct {
    int32_t lo, hi;
} chunks[MAX_CHUNKS];
static int n_chunks;

static bool open_pair_status(pclip_ctx_t ctx, pclip_backend_t *ref, pclip_backend_t *test) {
    *ref = *test = NULL;
    if (pclip_backend_create(ctx, "cpu", 1, ref)) return false;
    return pclip_backend_create(ctx, backend, test_device, test) == PCLIP_STATUS_OK;
}

START_TEST(test_parity) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    open_pair(ctx, &ref, &test);
    const int32_t lo = chunks[_i].lo, hi = chunks[_i].hi;
    char first[2048] = "";
    int failed = 0;
    for (int32_t i = lo; i < hi; i++) {
        pclip__parity_result r;
        char msg[2048];
        pclip_status st = pclip__parity_run(ctx, ref, test, (size_t)i, &r);
        if (st != PCLIP_STATUS_OK) {
            snprintf(msg, sizeof msg, "case %d on %s: %s: %s", (int)i, backend,
                     pclip_status_name(st), pclip_ctx_last_error(ctx));
            fprintf(stderr, "check_ops: FAILED %s\n", msg);
            if (!failed++) snprintf(first, sizeof first, "%s", msg);
            pclip_backend_destroy(test);
            pclip_backend_destroy(ref);
            ck_assert_msg(open_pair_status(ctx, &ref, &test), "%s; reopening the backends: %s", msg,
                          pclip_ctx_last_error(ctx));
            continue;
        }
        if (getenv("PCLIP_PARITY_VERBOSE")) print_result((size_t)i, &r);
        if (r.passed) continue;
        snprintf(msg, sizeof msg,
                 "case %d '%s' on %s (%s): %s[NMSE %.3g, tolerance %.3g, max abs %.3g, max "
                 "rel %.3g; worst element %zu: test %.9g, reference %.9g]",
                 (int)i, r.name, backend, pclip_backend_device_name(test), r.why, r.nmse,
                 r.tol, r.max_abs, r.max_rel, r.worst, (double)r.worst_test,
                 (double)r.worst_ref);
        fprintf(stderr, "check_ops: FAILED %s\n", msg);
        if (!failed++) snprintf(first, sizeof first, "%s", msg);
    }
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
    ck_assert_msg(failed == 0, "%d of cases %d..%d failed (each printed above); the first: %s",
                  failed, (int)lo, (int)hi - 1, first);
}
END_TEST

/* ---- the suite ---- */

/* Shard k of n (0 <= k < n) keeps the chunks numbered k, k + n, k + 2n...
 * in the order of the case list, so that the shards of a suite, run as CTest
 * tests side by side, take about the same time. */
static Suite *ops_suite(int shard_k, int shard_n) {
    Suite *s = suite_create("ops");
    /* one TCase per op, one iteration per chunk (cases come grouped by op) */
    size_t count = pclip__parity_count(), lo = 0;
    int numbered = 0;
    while (lo < count) {
        pclip__parity_case c;
        pclip__parity_get(lo, &c);
        size_t hi = lo + 1;
        pclip__parity_case d;
        while (hi < count && pclip__parity_get(hi, &d) && d.op == c.op) hi++;
        const int first = n_chunks;
        for (size_t k = lo; k < hi; k += CHUNK) {
            if (numbered++ % shard_n != shard_k) continue;
            if (n_chunks == MAX_CHUNKS) {
                fprintf(stderr, "check_ops: more than %d chunks of cases\n", MAX_CHUNKS);
                exit(1);
            }
            chunks[n_chunks].lo = (int32_t)k;
            chunks[n_chunks].hi = (int32_t)(k + CHUNK < hi ? k + CHUNK : hi);
            n_chunks++;
        }
        if (n_chunks > first) {
            TCase *tc = tcase_create(pclip__op_name(c.op));
            tcase_set_timeout(tc, 600);
            tcase_add_loop_test(tc, test_parity, first, n_chunks);
            suite_add_tcase(s, tc);
        }
        lo = hi;
    }
    return s;
}

/* ---- main: backend choice, skip probe, replay modes ---- */

/* --case N, --summary: run in this process and print the errors. */
static int replay(long only) {
    pclip_ctx_t ctx;
    pclip_backend_t ref, test;
    if (pclip_ctx_create(&ctx) || pclip_backend_create(ctx, "cpu", 1, &ref) ||
        pclip_backend_create(ctx, backend, test_device, &test)) {
        fprintf(stderr, "check_ops: %s\n", pclip_ctx_last_error(ctx));
        return 1;
    }
    printf("%s device %d (%s) against the CPU reference\n", backend, test_device,
           pclip_backend_device_name(test));
    size_t count = pclip__parity_count(), failed = 0;
    double worst[PCLIP__OP_COUNT] = {0}, worst_rel[PCLIP__OP_COUNT] = {0};
    size_t cases[PCLIP__OP_COUNT] = {0};
    for (size_t i = only >= 0 ? (size_t)only : 0; i < count && (only < 0 || i == (size_t)only);
         i++) {
        pclip__parity_case c;
        pclip__parity_result r;
        pclip__parity_get(i, &c);
        if (pclip__parity_run(ctx, ref, test, i, &r)) {
            printf("%4zu error: %s\n", i, pclip_ctx_last_error(ctx));
            failed++;
            continue;
        }
        if (only >= 0 || !r.passed) print_result(i, &r);
        failed += !r.passed;
        cases[c.op]++;
        if (r.nmse > worst[c.op]) worst[c.op] = r.nmse;
        if (r.max_rel > worst_rel[c.op]) worst_rel[c.op] = r.max_rel;
    }
    if (only < 0) {
        printf("%-14s %6s %12s %12s\n", "op", "cases", "max NMSE", "max rel");
        for (int op = 1; op < PCLIP__OP_COUNT; op++)
            printf("%-14s %6zu %12.3g %12.3g\n", pclip__op_name((pclip__op)op), cases[op],
                   worst[op], worst_rel[op]);
        printf("%zu of %zu cases failed\n", failed, count);
    }
    pclip_backend_destroy(test);
    pclip_backend_destroy(ref);
    pclip_ctx_destroy(ctx);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    int arg = pclip_test_backend_args(argc, argv, &backend, &test_device);
    if (arg < argc && strcmp(argv[arg], "--list") == 0) {
        size_t count = pclip__parity_count();
        for (size_t i = 0; i < count; i++) {
            pclip__parity_case c;
            char name[192];
            pclip__parity_get(i, &c);
            pclip__parity_name(&c, name, sizeof name);
            printf("%4zu %-64s tol %g\n", i, name, c.tol);
        }
        return 0;
    }
    pclip_test_probe_backend("check_ops", backend, test_device);
    if (arg < argc && strcmp(argv[arg], "--summary") == 0) return replay(-1);
    if (arg + 1 < argc && strcmp(argv[arg], "--case") == 0) return replay(atol(argv[arg + 1]));
    int shard_k = 0, shard_n = 1;
    if (arg + 1 < argc && strcmp(argv[arg], "--shard") == 0) {
        char end;
        if (sscanf(argv[arg + 1], "%d/%d%c", &shard_k, &shard_n, &end) != 2 || shard_n < 1 ||
            shard_k < 1 || shard_k > shard_n) {
            fprintf(stderr, "check_ops: --shard %s: expected K/N with 1 <= K <= N\n",
                    argv[arg + 1]);
            return 2;
        }
        shard_k--;
        arg += 2;
    }
    if (arg < argc) {
        fprintf(stderr, "usage: check_ops [cpu|vulkan|opencl] [--list | --summary | --case N | "
                        "--shard K/N]\n");
        return 2;
    }
    return pclip_test_run(ops_suite(shard_k, shard_n));
}
