/* The OpenCL backend beyond the per-op parity cases (check_ops opencl) and
 * the encoders (check_encoders opencl): devices and `auto`, the weight
 * cache, the program binary cache (first and second start, a corrupt entry
 * rebuilt), and the errors: no ICD loader, no platform (an empty vendor
 * directory), a kernel build failure with its build log, out of device
 * memory, sizes the device cannot run, a bad tuning variable; after each,
 * the CPU path still works.
 *
 * Devices are opened only inside the tests (after Check's fork); tests that
 * change what the loader sees fork once more, because the loader is opened
 * once per process. With no OpenCL device the suite prints "skipped: opencl:
 * <reason>" and exits 77. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "graph/backend.h"
#include "graph/parity.h"
#include "testutil.h"
#ifdef PCLIP_HAVE_OPENCL
#include "cl.h"
#endif

#define ck_assert_err_has(ctx, needle)                                                             \
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), needle) != NULL, "message '%s' lacks '%s'",    \
                  pclip_ctx_last_error(ctx), needle)

#ifdef PCLIP_HAVE_OPENCL

static pclip_ctx_t ctx;

static void setup(void) { ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK); }
static void teardown(void) { pclip_ctx_destroy(ctx); }

static pclip_backend_t open_opencl(void) {
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "opencl", 0, &b), PCLIP_STATUS_OK);
    return b;
}

/* Encodes one caption on `name`; OK or the failure. */
static pclip_status encode_once(const char *name, int32_t device, float *out) {
    pclip_model_t m;
    pclip_backend_t b;
    pclip_status st = pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m);
    if (st) return st;
    st = pclip_backend_create(ctx, name, device, &b);
    if (!st) {
        int32_t ids[77];
        st =
            pclip_tokenizer_encode(pclip_model_tokenizer(m), "a photo of a cat", 16, ids, 77, NULL);
        if (!st) st = pclip_model_encode_text(m, b, ids, 1, 0, out);
        pclip_backend_destroy(b);
    }
    pclip_model_destroy(m);
    return st;
}

/* y = 2 x over n floats on b: OK and checked, or the failure. */
static pclip_status scale_run(pclip_backend_t b, int64_t n) {
    pclip__graph *g;
    pclip_status st = pclip__graph_create(ctx, &g);
    if (st) return st;
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 1, &n);
    pclip__tensor *y = pclip__scale(g, "y", x, 2.0f);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    float *in = pclip_test_ramp((size_t)n, 1.0f), *out = malloc((size_t)n * 4);
    st = pclip_test_run_graph(b, g, 1, &x, (const void *[]){in}, y, out);
    for (int64_t i = 0; !st && i < n; i++) ck_assert_float_eq(out[i], 2.0f * in[i]);
    free(in), free(out);
    pclip__graph_destroy(g);
    return st;
}

/* ---- devices ---- */

START_TEST(test_devices_and_auto) {
    pclip_device_desc d[32];
    int32_t n = 0;
    ck_assert_status(ctx, pclip_devices_list(ctx, d, 32, &n), PCLIP_STATUS_OK);
    int found = 0, hardware = 0;
    for (int32_t i = 0; i < n && i < 32; i++) {
        if (strcmp(d[i].backend, "opencl") != 0) continue;
        found++;
        ck_assert_int_eq(d[i].usable, 1);
        ck_assert_int_eq(d[i].index, found - 1);
        ck_assert_msg(d[i].name[0] && d[i].vendor[0] && d[i].driver[0], "empty fields");
        ck_assert_msg(strncmp(d[i].api_version, "OpenCL ", 7) == 0, "api '%s'", d[i].api_version);
        ck_assert_uint_gt(d[i].memory_bytes, 0);
        ck_assert_msg(strstr(d[i].features, "OpenCL C ") && strstr(d[i].features, "compute-units=") &&
                          strstr(d[i].features, "local-memory=") &&
                          strstr(d[i].features, "max-alloc="),
                      "features '%s'", d[i].features);
        ck_assert_int_eq(d[i].software, strcmp(d[i].type, "cpu") == 0);
        hardware += !d[i].software;
    }
    ck_assert_int_ge(found, 1);
    /* `auto` never takes a CPU implementation such as PoCL... */
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "auto", 0, &b), PCLIP_STATUS_OK);
    if (!hardware)
        ck_assert_msg(strcmp(pclip_backend_name(b), "opencl") != 0, "auto took %s",
                      pclip_backend_device_name(b));
    if (strcmp(pclip_backend_name(b), "cpu") == 0 && !hardware)
        ck_assert_msg(strstr(pclip_backend_fallback_reason(b), "opencl: only software devices"),
                      "fallback reason '%s'", pclip_backend_fallback_reason(b));
    pclip_backend_destroy(b);
    /* ...but naming opencl does, and PORTCLIP_BACKEND / PORTCLIP_DEVICE too */
    b = open_opencl();
    ck_assert_str_eq(pclip_backend_name(b), "opencl");
    pclip_backend_destroy(b);
    setenv("PORTCLIP_BACKEND", "opencl", 1);
    setenv("PORTCLIP_DEVICE", "0", 1);
    ck_assert_status(ctx, pclip_backend_create(ctx, NULL, -1, &b), PCLIP_STATUS_OK);
    ck_assert_str_eq(pclip_backend_name(b), "opencl");
    pclip_backend_destroy(b);
    unsetenv("PORTCLIP_BACKEND");
    unsetenv("PORTCLIP_DEVICE");
    ck_assert_int_eq(pclip_backend_create(ctx, "opencl", 99, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "opencl: device 99 does not exist");
}
END_TEST

/* Batches of several sizes (separate graphs on one backend) agree and share
 * the resident weights; the weights go with the model's graphs. */
START_TEST(test_batches_share_weights) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    pclip_backend_t b = open_opencl();
    const char *texts[] = {"a photo of a cat", "two dogs playing in the snow", "a red car"};
    int32_t ids[3 * 77];
    for (int i = 0; i < 3; i++)
        ck_assert_status(ctx,
                         pclip_tokenizer_encode(pclip_model_tokenizer(m), texts[i],
                                                strlen(texts[i]), ids + i * 77, 77, NULL),
                         PCLIP_STATUS_OK);
    int32_t d = pclip_model_config(m)->projection_dim;
    float one[64], three[3 * 64];
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids + 77, 1, 0, one), PCLIP_STATUS_OK);
    int32_t resident = pclip__cl_weight_count(b->state);
    ck_assert_int_gt(resident, 0);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 3, 0, three), PCLIP_STATUS_OK);
    ck_assert_int_le(pclip__cl_weight_count(b->state), resident + 1);
    for (int32_t j = 0; j < d; j++)
        ck_assert_float_eq_tol(one[j], three[d + j], 1e-6f * (fabsf(one[j]) + 1e-3f));
    pclip_model_destroy(m);
    ck_assert_int_eq(pclip__cl_weight_count(b->state), 0);
    pclip_backend_destroy(b);
}
END_TEST

/* ---- the program cache ---- */

static const char *cache_note_after_run(pclip_backend_t b) {
    ck_assert_status(ctx, scale_run(b, 1000), PCLIP_STATUS_OK);
    return pclip__cl_cache_note(b->state);
}

/* First start: built and written; second start: loaded from the entry; a
 * truncated entry, one with a flipped byte and one of another key are
 * rejected, rebuilt and rewritten; PORTCLIP_CL_CACHE=0 writes nothing. */
START_TEST(test_program_cache) {
    char home[300], path[4200];
    snprintf(home, sizeof home, "%s", pclip_test_tmpdir());
    setenv("XDG_CACHE_HOME", home, 1);
    pclip_backend_t b = open_opencl();
    ck_assert_msg(strstr(cache_note_after_run(b), "built (no entry), cache entry written"), "'%s'",
                  pclip__cl_cache_note(b->state));
    ck_assert_int_eq(pclip__cl_cache_path(b->state, path, sizeof path), PCLIP_STATUS_OK);
    ck_assert_msg(strncmp(path, home, strlen(home)) == 0 && strstr(path, "/portclip/opencl-"),
                  "cache path '%s'", path);
    pclip_backend_destroy(b);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    const off_t size = sb.st_size;
    ck_assert_int_gt(size, 40);

    b = open_opencl();
    ck_assert_str_eq(cache_note_after_run(b), "cache hit");
    pclip_backend_destroy(b);

    /* truncated: the header promises more than the file has */
    ck_assert_int_eq(truncate(path, size - 7), 0);
    b = open_opencl();
    ck_assert_msg(strstr(cache_note_after_run(b), "size does not match its header"), "'%s'",
                  pclip__cl_cache_note(b->state));
    ck_assert_msg(strstr(pclip__cl_cache_note(b->state), "cache entry written"), "'%s'",
                  pclip__cl_cache_note(b->state));
    pclip_backend_destroy(b);
    /* the rewritten entry is whole again (its size may differ: a driver's
     * binary may carry what it compiled meanwhile) */
    b = open_opencl();
    ck_assert_str_eq(cache_note_after_run(b), "cache hit");
    pclip_backend_destroy(b);
    ck_assert_int_eq(stat(path, &sb), 0);

    /* one byte of the payload changed: the checksum catches it */
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, sb.st_size - 3, SEEK_SET), 0);
    int c = fgetc(f);
    ck_assert_int_eq(fseek(f, sb.st_size - 3, SEEK_SET), 0);
    fputc(c ^ 0x5a, f);
    fclose(f);
    b = open_opencl();
    ck_assert_msg(strstr(cache_note_after_run(b), "checksum mismatch"), "'%s'",
                  pclip__cl_cache_note(b->state));
    pclip_backend_destroy(b);

    /* an empty file and garbage */
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    b = open_opencl();
    ck_assert_msg(strstr(cache_note_after_run(b), "short header"), "'%s'",
                  pclip__cl_cache_note(b->state));
    pclip_backend_destroy(b);
    b = open_opencl();
    ck_assert_str_eq(cache_note_after_run(b), "cache hit");
    pclip_backend_destroy(b);

    /* other build options: another entry */
    setenv("PORTCLIP_CL_MATMUL_TILE", "32,32,8,4,4", 1);
    b = open_opencl();
    ck_assert_msg(strstr(cache_note_after_run(b), "built (no entry)"), "'%s'",
                  pclip__cl_cache_note(b->state));
    pclip_backend_destroy(b);
    unsetenv("PORTCLIP_CL_MATMUL_TILE");

    /* off */
    char home2[300];
    snprintf(home2, sizeof home2, "%s", pclip_test_tmpdir());
    setenv("XDG_CACHE_HOME", home2, 1);
    setenv("PORTCLIP_CL_CACHE", "0", 1);
    b = open_opencl();
    ck_assert_msg(strstr(cache_note_after_run(b), "cache off"), "'%s'",
                  pclip__cl_cache_note(b->state));
    pclip_backend_destroy(b);
    unsetenv("PORTCLIP_CL_CACHE");
    char sub[400];
    snprintf(sub, sizeof sub, "%s/portclip", home2);
    ck_assert_int_ne(stat(sub, &sb), 0);
}
END_TEST

/* ---- errors ---- */

/* The ICD loader is missing: BACKEND_UNAVAILABLE naming it; `auto`, the
 * device list and the CPU path work. */
START_TEST(test_no_loader) {
    setenv("PORTCLIP_CL_LOADER", "/nonexistent/libOpenCL.so.1", 1);
    pclip_backend_t b = NULL;
    ck_assert_int_eq(pclip_backend_create(ctx, "opencl", 0, &b), PCLIP_STATUS_BACKEND_UNAVAILABLE);
    ck_assert_ptr_null(b);
    ck_assert_err_has(ctx, "opencl: no OpenCL ICD loader (/nonexistent/libOpenCL.so.1) found");
    ck_assert_status(ctx, pclip_backend_create(ctx, "auto", 0, &b), PCLIP_STATUS_OK);
    ck_assert_msg(strcmp(pclip_backend_name(b), "opencl") != 0, "auto took opencl");
    if (strcmp(pclip_backend_name(b), "cpu") == 0)
        ck_assert_msg(strstr(pclip_backend_fallback_reason(b), "opencl: no OpenCL ICD loader") &&
                          !strstr(pclip_backend_fallback_reason(b), "opencl: opencl:"), "'%s'",
                      pclip_backend_fallback_reason(b));
    pclip_backend_destroy(b);
    pclip_device_desc d[16];
    int32_t n = 0, seen = 0;
    ck_assert_status(ctx, pclip_devices_list(ctx, d, 16, &n), PCLIP_STATUS_OK);
    for (int32_t i = 0; i < n && i < 16; i++)
        if (!strcmp(d[i].backend, "opencl"))
            seen += !d[i].usable && strstr(d[i].why, "no OpenCL ICD loader") != NULL;
    ck_assert_int_eq(seen, 1);
    float out[64];
    ck_assert_status(ctx, encode_once("cpu", 0, out), PCLIP_STATUS_OK);
    unsetenv("PORTCLIP_CL_LOADER");
}
END_TEST

/* No platform (the loader pointed at an empty vendor directory), in a
 * forked child: BACKEND_UNAVAILABLE with the message, `devices` says why,
 * and the CPU path works in that same process. */
START_TEST(test_no_platform) {
    char empty[300];
    snprintf(empty, sizeof empty, "%s", pclip_test_tmpdir());
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("OCL_ICD_VENDORS", empty, 1);
        pclip_backend_t b = NULL;
        pclip_status st = pclip_backend_create(ctx, "opencl", 0, &b);
        if (st != PCLIP_STATUS_BACKEND_UNAVAILABLE || b) _exit(10);
        if (!strstr(pclip_ctx_last_error(ctx), "opencl: no OpenCL platform (driver) found"))
            _exit(11);
        pclip_device_desc d[16];
        int32_t n = 0;
        if (pclip_devices_list(ctx, d, 16, &n)) _exit(12);
        int seen = 0;
        for (int32_t i = 0; i < n && i < 16; i++)
            if (!strcmp(d[i].backend, "opencl"))
                seen += !d[i].usable && strstr(d[i].why, "no OpenCL platform") != NULL;
        if (seen != 1) _exit(13);
        float out[64];
        if (encode_once("cpu", 0, out) || encode_once("auto", 0, out)) _exit(14);
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}
END_TEST

/* The kernels fail to build (a build option that breaks them): the compile
 * fails with the build log; without it the same backend builds and runs. */
START_TEST(test_build_failure) {
    setenv("PORTCLIP_CL_CACHE", "0", 1);
    pclip_backend_t b = open_opencl();
    setenv("PORTCLIP_CL_BUILD_OPTIONS", "-DROW_LS=pclip_no_such_name", 1);
    pclip_status st = scale_run(b, 100);
    ck_assert_msg(st == PCLIP_STATUS_UNSUPPORTED || st == PCLIP_STATUS_INTERNAL, "status %s",
                  pclip_status_name(st));
    ck_assert_err_has(ctx, "opencl: clBuildProgram: CL_BUILD_PROGRAM_FAILURE");
    ck_assert_err_has(ctx, "build log: ");
    ck_assert_err_has(ctx, "pclip_no_such_name");
    unsetenv("PORTCLIP_CL_BUILD_OPTIONS");
    ck_assert_status(ctx, scale_run(b, 100), PCLIP_STATUS_OK);
    pclip_backend_destroy(b);
    unsetenv("PORTCLIP_CL_CACHE");
    float out[64];
    ck_assert_status(ctx, encode_once("cpu", 0, out), PCLIP_STATUS_OK);
}
END_TEST

/* Out of device memory (simulated: buffers above 1 MiB fail as the driver's
 * CL_MEM_OBJECT_ALLOCATION_FAILURE would): the arena and a weight each give
 * OUT_OF_MEMORY saying how much was needed; nothing stays allocated; what
 * fits still runs, and the CPU path works. */
START_TEST(test_out_of_device_memory) {
    setenv("PORTCLIP_CL_MAX_ALLOC_MIB", "1", 1);
    pclip_backend_t b = open_opencl();
    unsetenv("PORTCLIP_CL_MAX_ALLOC_MIB");
    ck_assert_int_eq(scale_run(b, (int64_t)1 << 19), PCLIP_STATUS_OUT_OF_MEMORY);
    ck_assert_err_has(ctx, "out of device memory (need 4 MiB for the graph's activations");
    pclip__graph *g;
    pclip__exec *e = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    float *w = pclip_test_ramp((size_t)512 * 1024, 1.0f);
    const int64_t wne[2] = {1024, 512}, xne[2] = {2, 512};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
    pclip__tensor *y =
        pclip__linear(g, "y", x, pclip__weight(g, "w", 2, wne, w), NULL, PCLIP_ACT_NONE, NULL);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_create(b, g, &e), PCLIP_STATUS_OUT_OF_MEMORY);
    ck_assert_ptr_null(e);
    ck_assert_err_has(ctx, "need 2 MiB for weight 'w'");
    ck_assert_int_eq(pclip__cl_weight_count(b->state), 0);
    pclip__graph_destroy(g);
    free(w);
    ck_assert_status(ctx, scale_run(b, 1000), PCLIP_STATUS_OK);
    pclip_backend_destroy(b);
    float emb[64];
    ck_assert_status(ctx, encode_once("cpu", 0, emb), PCLIP_STATUS_OK);
}
END_TEST

/* Sizes the device cannot run: a buffer over CL_DEVICE_MAX_MEM_ALLOC_SIZE
 * and an attention row whose scores exceed local memory are LIMIT, naming
 * the tensor or op, before anything runs; the backend still works. */
START_TEST(test_invalid_sizes) {
    pclip_backend_t b = open_opencl();
    const pclip__cl *s = b->state;
    /* activations over the largest buffer: enough outputs of up to 2^31 - 64
     * floats each (ops take no larger tensors); never allocated on the host */
    pclip__graph *g;
    pclip__exec *e = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    int64_t n = (int64_t)(s->dev.max_alloc / 4) + 64;
    if (n > INT32_MAX - 64) n = INT32_MAX - 64;
    const int32_t outputs = (int32_t)(s->dev.max_alloc / ((uint64_t)n * 4)) + 1;
    pclip__tensor *x = pclip__input(g, "huge", PCLIP__DTYPE_F32, 1, &n), *y = NULL;
    for (int32_t i = 0; i < outputs; i++) {
        y = pclip__scale(g, "y", x, 2.0f);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    }
    pclip_status st = pclip__exec_create(b, g, &e);
    ck_assert_msg(st == PCLIP_STATUS_LIMIT, "status %s: %s", pclip_status_name(st),
                  pclip_ctx_last_error(ctx));
    ck_assert_err_has(ctx, "CL_DEVICE_MAX_MEM_ALLOC_SIZE");
    ck_assert_err_has(ctx, "the graph's activations");
    pclip__graph_destroy(g);
    /* attention over a sequence whose scores do not fit local memory */
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int32_t S = (int32_t)(s->dev.local_mem / 4) + 16;
    const int64_t ne[2] = {S, 3};
    x = pclip__input(g, "qkv", PCLIP__DTYPE_F32, 2, ne);
    y = pclip__attention(g, "attn", x, 1, S, 1, false);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_create(b, g, &e), PCLIP_STATUS_LIMIT);
    ck_assert_err_has(ctx, "opencl: attention 'attn'");
    ck_assert_err_has(ctx, "local memory");
    pclip__graph_destroy(g);
    ck_assert_status(ctx, scale_run(b, 1000), PCLIP_STATUS_OK);
    pclip_backend_destroy(b);
}
END_TEST

/* A run that fails in the queue (simulated: the second run's wait reports
 * CL_OUT_OF_RESOURCES, as drivers do when the device is lost) makes the
 * device lost, and that is sticky: every later call says so; destroying
 * still works, and the CPU path too. */
START_TEST(test_device_lost_is_sticky) {
    setenv("PORTCLIP_CL_FAIL_RUN", "2", 1);
    pclip_backend_t b = open_opencl();
    unsetenv("PORTCLIP_CL_FAIL_RUN");
    pclip__graph *g;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t ne[1] = {1000};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 1, ne);
    pclip__tensor *y = pclip__scale(g, "y", x, 2.0f);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    float *in = pclip_test_ramp(1000, 1.0f), out[1000];
    pclip__exec *e;
    ck_assert_status(ctx, pclip__exec_create(b, g, &e), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_write(e, x, in), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__exec_run(e), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_run(e), PCLIP_STATUS_DEVICE_LOST);
    ck_assert_err_has(ctx, "opencl: the graph's run failed on ");
    ck_assert_err_has(ctx, "CL_OUT_OF_RESOURCES");
    ck_assert_int_eq(pclip__exec_run(e), PCLIP_STATUS_DEVICE_LOST);
    ck_assert_err_has(ctx, "the device was lost earlier");
    ck_assert_int_eq(pclip__exec_read(e, y, out), PCLIP_STATUS_DEVICE_LOST);
    ck_assert_int_eq(pclip__exec_write(e, x, in), PCLIP_STATUS_DEVICE_LOST);
    pclip__exec *e2 = NULL;
    ck_assert_int_eq(pclip__exec_create(b, g, &e2), PCLIP_STATUS_DEVICE_LOST);
    ck_assert_ptr_null(e2);
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    pclip_backend_destroy(b);
    free(in);
    float emb[64];
    ck_assert_status(ctx, encode_once("cpu", 1, emb), PCLIP_STATUS_OK);
}
END_TEST

/* A garbage value for an OpenCL variable fails the open, naming it. */
START_TEST(test_environment) {
    pclip_backend_t b = NULL;
    setenv("PORTCLIP_CL_MATMUL_TILE", "64,64,16,4", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "opencl", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(b);
    ck_assert_err_has(ctx, "PORTCLIP_CL_MATMUL_TILE='64,64,16,4' is not 5 comma-separated");
    setenv("PORTCLIP_CL_MATMUL_TILE", "64,64,16,3,4", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "opencl", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "BM and BN must be multiples of TM and TN");
    unsetenv("PORTCLIP_CL_MATMUL_TILE");
    setenv("PORTCLIP_CL_CACHE", "yes", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "opencl", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "opencl: PORTCLIP_CL_CACHE='yes'");
    unsetenv("PORTCLIP_CL_CACHE");
    setenv("PORTCLIP_CL_KERNELS", "fast", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "opencl", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "PORTCLIP_CL_KERNELS='fast' is not one of auto, tiled, direct, swap");
    unsetenv("PORTCLIP_CL_KERNELS");
    setenv("PORTCLIP_CL_DIRECT_TILE", "4,4,3", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "opencl", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "VW must be 4, 8 or 16");
    unsetenv("PORTCLIP_CL_DIRECT_TILE");
    ck_assert_ptr_null(b);
}
END_TEST

/* Every matmul parity case with the kernel this device does not get by
 * default (_i = 0: PORTCLIP_CL_KERNELS=swap, the local-memory tiled kernel
 * on a CPU device, the direct one on a GPU) and with odd tiles of both
 * (_i = 1: a 3 x 5 direct tile of 4-float vectors, a 16 x 32 tiled block). */
START_TEST(test_matmul_kernels) {
    if (_i == 0) setenv("PORTCLIP_CL_KERNELS", "swap", 1);
    if (_i == 1) {
        setenv("PORTCLIP_CL_DIRECT_TILE", "3,5,4", 1);
        setenv("PORTCLIP_CL_MATMUL_TILE", "16,32,8,2,4", 1);
    }
    pclip_backend_t b = open_opencl(), ref;
    unsetenv("PORTCLIP_CL_KERNELS");
    unsetenv("PORTCLIP_CL_DIRECT_TILE");
    unsetenv("PORTCLIP_CL_MATMUL_TILE");
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    size_t ran = 0;
    for (size_t i = 0; i < pclip__parity_count(); i++) {
        pclip__parity_case c;
        pclip__parity_get(i, &c);
        if (c.op != PCLIP__OP_MATMUL) continue;
        pclip__parity_result r;
        ck_assert_status(ctx, pclip__parity_run(ctx, ref, b, i, &r), PCLIP_STATUS_OK);
        ck_assert_msg(r.passed, "variant %d, case %zu '%s': %s", _i, i, r.name, r.why);
        ran++;
    }
    ck_assert_uint_gt(ran, 100);
    pclip_backend_destroy(ref);
    pclip_backend_destroy(b);
}
END_TEST

#endif /* PCLIP_HAVE_OPENCL */

/* ---- main: skip when there is no OpenCL device ---- */

int main(void) {
    pclip_test_probe_backend("check_opencl", "opencl", 0);
#ifdef PCLIP_HAVE_OPENCL
    Suite *s = suite_create("opencl");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_set_timeout(core, 600);
    tcase_add_test(core, test_devices_and_auto);
    tcase_add_test(core, test_batches_share_weights);
    tcase_add_test(core, test_program_cache);
    tcase_add_loop_test(core, test_matmul_kernels, 0, 2);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_set_timeout(limits, 300);
    tcase_add_test(limits, test_no_loader);
    tcase_add_test(limits, test_no_platform);
    tcase_add_test(limits, test_build_failure);
    tcase_add_test(limits, test_out_of_device_memory);
    tcase_add_test(limits, test_invalid_sizes);
    tcase_add_test(limits, test_device_lost_is_sticky);
    tcase_add_test(limits, test_environment);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
#else
    return 1; /* unreachable: the probe says "not built into this library" (77) */
#endif
}
