/* The Vulkan backend beyond the per-op parity cases (check_ops vulkan) and
 * the encoders (check_encoders vulkan): devices and `auto`, the weight cache,
 * barriers, tables and tensors larger than one binding, the fused and tiled
 * attention at ViT-L/14@336's 577 tokens, the environment, and the errors: no
 * loader, no driver, out of device memory,
 * a device that stops answering (a run past its timeout). Everything runs
 * with the Khronos validation layer (PORTCLIP_VK_VALIDATION=1, set in main),
 * so any validation message fails the call it follows, and each test checks
 * at the end that none was reported, also while destroying.
 *
 * Devices are opened only inside the tests (after Check's fork). With no
 * Vulkan device the suite prints "skipped: vulkan: <reason>" and exits 77.
 * The encoders against PyTorch run on every backend in check_encoders. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "graph/backend.h"
#include "testutil.h"
#ifdef PCLIP_HAVE_VULKAN
#include "vk.h"
#endif

#define ck_assert_err_has(ctx, needle)                                                             \
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), needle) != NULL, "message '%s' lacks '%s'",    \
                  pclip_ctx_last_error(ctx), needle)

#ifdef PCLIP_HAVE_VULKAN

static pclip_ctx_t ctx;
static int validation_before;

static void setup(void) {
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    validation_before = pclip__vk_validation_total();
}

/* Every validation message fails the call it follows; this catches the ones
 * reported while destroying (leaked objects). */
static void teardown(void) {
    pclip_ctx_destroy(ctx);
    ck_assert_msg(pclip__vk_validation_total() == validation_before,
                  "the validation layer reported %d message(s)",
                  pclip__vk_validation_total() - validation_before);
}

static pclip_backend_t open_vulkan(void) {
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "vulkan", 0, &b), PCLIP_STATUS_OK);
    return b;
}

/* ---- the encoders ---- */

/* Batches of several sizes (separate graphs on one backend sharing the
 * weights) agree with each other; the weights are uploaded once. */
START_TEST(test_batches_share_weights) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    pclip_backend_t b = open_vulkan();
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
    int32_t resident = pclip__vk_weight_count(b->state);
    ck_assert_int_gt(resident, 0);
    ck_assert_status(ctx, pclip_model_encode_text(m, b, ids, 3, 0, three), PCLIP_STATUS_OK);
    /* the batch-3 graph reuses every resident weight; only a longer slice
     * of the position table (a different byte range) may be new */
    ck_assert_int_le(pclip__vk_weight_count(b->state), resident + 1);
    for (int32_t j = 0; j < d; j++)
        ck_assert_float_eq_tol(one[j], three[d + j], 1e-6f * (fabsf(one[j]) + 1e-3f));
    pclip_model_destroy(m); /* drops its graphs, and with them every weight */
    ck_assert_int_eq(pclip__vk_weight_count(b->state), 0);
    pclip_backend_destroy(b);
}
END_TEST

/* ---- devices ---- */

START_TEST(test_devices_and_auto) {
    pclip_device_desc d[32];
    int32_t n = 0;
    ck_assert_status(ctx, pclip_devices_list(ctx, d, 32, &n), PCLIP_STATUS_OK);
    int found = 0, hardware = 0;
    for (int32_t i = 0; i < n && i < 32; i++) {
        if (strcmp(d[i].backend, "vulkan") != 0) continue;
        found++;
        ck_assert_int_eq(d[i].usable, 1);
        ck_assert_int_eq(d[i].index, found - 1);
        ck_assert_msg(d[i].name[0] && d[i].vendor[0] && d[i].driver[0], "empty fields");
        ck_assert_msg(strncmp(d[i].api_version, "Vulkan 1.", 9) == 0, "api '%s'", d[i].api_version);
        ck_assert_int_gt(d[i].subgroup_size, 0);
        ck_assert_uint_gt(d[i].memory_bytes, 0);
        ck_assert_msg(strstr(d[i].features, "max-binding="), "features '%s'", d[i].features);
        ck_assert_int_eq(d[i].software, strcmp(d[i].type, "cpu") == 0);
        if (strstr(d[i].name, "llvmpipe")) ck_assert_int_eq(d[i].software, 1);
        hardware += !d[i].software;
    }
    ck_assert_int_ge(found, 1);
    /* `auto` never takes a CPU implementation such as lavapipe... */
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "auto", 0, &b), PCLIP_STATUS_OK);
    if (!hardware) {
        ck_assert_str_eq(pclip_backend_name(b), "cpu");
        ck_assert_msg(strstr(pclip_backend_fallback_reason(b), "vulkan: only software devices"),
                      "fallback reason '%s'", pclip_backend_fallback_reason(b));
    } else {
        ck_assert_str_eq(pclip_backend_name(b), "vulkan");
    }
    pclip_backend_destroy(b);
    /* ...but naming vulkan does */
    b = open_vulkan();
    ck_assert_str_eq(pclip_backend_name(b), "vulkan");
    pclip_backend_destroy(b);
    ck_assert_int_eq(pclip_backend_create(ctx, "vulkan", 99, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has(ctx, "vulkan: device 99 does not exist");
}
END_TEST

/* ---- graphs ---- */

/* Every barrier in a recorded graph comes from a hazard and says which. */
START_TEST(test_barrier_reasons) {
    pclip_backend_t b = open_vulkan();
    pclip__graph *g;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t ne[2] = {16, 40};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, ne);
    pclip__tensor *a = pclip__scale(g, "a", x, 2.0f);
    pclip__tensor *c = pclip__act(g, "c", a, PCLIP_ACT_GELU);
    pclip__tensor *y = pclip__l2_norm(g, "y", c, 1e-12f);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    pclip__exec *e;
    ck_assert_status(ctx, pclip__exec_create(b, g, &e), PCLIP_STATUS_OK);
    int32_t n = pclip__vk_exec_barriers(e->state);
    /* copy in, 3 dependent dispatches, copy out: each waits for the one before */
    ck_assert_int_eq(n, 5);
    for (int32_t i = 0; i < n; i++) {
        const char *r = pclip__vk_exec_barrier_reason(e->state, i);
        ck_assert_msg(!strncmp(r, "RAW: ", 5) || !strncmp(r, "WAR: ", 5) || !strncmp(r, "WAW: ", 5),
                      "barrier %d: '%s'", i, r);
    }
    ck_assert_msg(strstr(pclip__vk_exec_barrier_reason(e->state, 2), "'c' reads 'a'"), "'%s'",
                  pclip__vk_exec_barrier_reason(e->state, 2));
    /* runs again and again from the one recording */
    float *in = pclip_test_ramp(16 * 40, 1.0f), out1[16 * 40], out2[16 * 40];
    for (int r = 0; r < 3; r++) {
        ck_assert_int_eq(pclip__exec_write(e, x, in), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip__exec_run(e), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_read(e, y, r ? out2 : out1), PCLIP_STATUS_OK);
    }
    ck_assert_mem_eq(out1, out2, sizeof out1);
    free(in);
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    pclip_backend_destroy(b);
}
END_TEST

/* Attention over ViT-L/14@336's 577 tokens: fused (scores of a query block
 * in shared memory), and with the key loop tiled (_i = 1). */
START_TEST(test_attention_577) {
    if (_i == 1) setenv("PORTCLIP_VK_ATTN_KT", "64", 1);
    pclip_backend_t b = open_vulkan(), ref;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    pclip__graph *g;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int32_t S = 577, H = 4, D = 64;
    const int64_t ne[2] = {S, 3 * H * D};
    pclip__tensor *qkv = pclip__input(g, "qkv", PCLIP__DTYPE_F32, 2, ne);
    pclip__tensor *y = pclip__attention(g, "attn", qkv, 1, S, H, _i == 1);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    size_t n = (size_t)S * H * D;
    float *in = pclip_test_ramp((size_t)S * 3 * H * D, 2.0f), *yt = malloc(n * 4), *yr = malloc(n * 4);
    ck_assert_status(ctx, pclip_test_run_graph(b, g, 1, &qkv, (const void *[]){in}, y, yt), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_test_run_graph(ref, g, 1, &qkv, (const void *[]){in}, y, yr), PCLIP_STATUS_OK);
    ck_assert_msg(pclip_test_nmse(yt, yr, n) < 1e-10, "nmse %g", pclip_test_nmse(yt, yr, n));
    free(in), free(yt), free(yr);
    pclip__graph_destroy(g);
    pclip_backend_destroy(b);
    pclip_backend_destroy(ref);
    unsetenv("PORTCLIP_VK_ATTN_KT");
}
END_TEST

/* Every matmul kernel against the CPU reference on odd and CLIP-like
 * shapes, whichever the device picks by default: (0) the device's choice,
 * (1) without subgroup operations (matmul_direct without shared rows on a
 * CPU device), (2) the other family (PORTCLIP_VK_KERNELS=swap: the GPUs'
 * shared-memory tiled kernel on lavapipe, the direct ones on a GPU). Linear
 * layers with every epilogue and batched products both ways. */
START_TEST(test_matmul_variants) {
    if (_i == 1) setenv("PORTCLIP_VK_NO_SUBGROUP", "1", 1);
    if (_i == 2) setenv("PORTCLIP_VK_KERNELS", "swap", 1);
    pclip_backend_t b = open_vulkan(), ref;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    static const int32_t shapes[][5] = {
        /* batch (0: linear), M, N, K, trans_b */
        {0, 50, 2304, 768, 1}, {0, 77, 96, 64, 1}, {0, 129, 257, 96, 1},
        {0, 7, 17, 63, 1},     {0, 1, 5, 3, 1},    {3, 50, 64, 50, 0},
        {2, 13, 20, 12, 0},    {2, 7, 9, 5, 0},    {4, 33, 40, 64, 1}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int32_t B = shapes[k][0], M = shapes[k][1], N = shapes[k][2], K = shapes[k][3];
        const bool tb = shapes[k][4];
        pclip__graph *g;
        ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
        const int32_t nb = B ? B : 1;
        float *av = pclip_test_ramp((size_t)nb * M * K, 1.0f), *bv = pclip_test_ramp((size_t)nb * N * K, 0.5f);
        float *bias = pclip_test_ramp((size_t)N, 0.25f), *res = pclip_test_ramp((size_t)M * N, 0.75f);
        pclip__tensor *a, *y;
        if (B == 0) {
            const int64_t ane[2] = {M, K}, bne[2] = {N, K}, nne[1] = {N}, rne[2] = {M, N};
            a = pclip__input(g, "a", PCLIP__DTYPE_F32, 2, ane);
            pclip__tensor *r = pclip__weight(g, "res", 2, rne, res);
            y = pclip__linear(g, "y", a, pclip__weight(g, "w", 2, bne, bv),
                              pclip__weight(g, "bias", 1, nne, bias), PCLIP_ACT_GELU, r);
        } else {
            const int64_t ane[3] = {B, M, K}, bne[3] = {B, tb ? N : K, tb ? K : N};
            a = pclip__input(g, "a", PCLIP__DTYPE_F32, 3, ane);
            y = pclip__matmul(g, "y", a, pclip__weight(g, "b", 3, bne, bv), tb);
        }
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
        const size_t n = (size_t)pclip__nelements(y);
        float *yt = malloc(n * 4), *yr = malloc(n * 4);
        ck_assert_status(ctx, pclip_test_run_graph(b, g, 1, &a, (const void *[]){av}, y, yt), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip_test_run_graph(ref, g, 1, &a, (const void *[]){av}, y, yr), PCLIP_STATUS_OK);
        ck_assert_msg(pclip_test_nmse(yt, yr, n) < 1e-10,
                      "variant %d, batch %d M %d N %d K %d trans_b %d: nmse %g", _i, B, M, N, K, tb,
                      pclip_test_nmse(yt, yr, n));
        free(av), free(bv), free(bias), free(res), free(yt), free(yr);
        pclip__graph_destroy(g);
    }
    pclip_backend_destroy(b);
    pclip_backend_destroy(ref);
    unsetenv("PORTCLIP_VK_NO_SUBGROUP");
    unsetenv("PORTCLIP_VK_KERNELS");
}
END_TEST

/* A table larger than one binding is gathered from in parts (lavapipe binds
 * 128 MiB, less than ViT-L's 152 MB token embedding; here the limit is
 * lowered to 1 MiB so that a 2.4 MiB table needs three); a tensor that
 * cannot be split is a clear LIMIT error. */
START_TEST(test_binding_limit) {
    setenv("PORTCLIP_VK_MAX_BINDING_MIB", "1", 1);
    pclip_backend_t b = open_vulkan(), ref;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 1, &ref), PCLIP_STATUS_OK);
    pclip__graph *g;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int32_t rows = 4001, cols = 150; /* 2.4 MB: parts of 1747 rows */
    float *table = pclip_test_ramp((size_t)rows * cols, 1.0f);
    const int64_t tne[2] = {rows, cols}, ine[1] = {8};
    pclip__tensor *t = pclip__weight(g, "table", 2, tne, table);
    pclip__tensor *idx = pclip__input(g, "idx", PCLIP__DTYPE_I32, 1, ine);
    pclip__tensor *y = pclip__gather_rows(g, "rows", t, idx);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    const int32_t want[8] = {0, 1746, 1747, 3493, 3494, 4000, -1, 4001};
    float *yt = malloc(8 * cols * 4), *yr = malloc(8 * cols * 4);
    ck_assert_status(ctx, pclip_test_run_graph(b, g, 1, &idx, (const void *[]){want}, y, yt), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_test_run_graph(ref, g, 1, &idx, (const void *[]){want}, y, yr), PCLIP_STATUS_OK);
    ck_assert_mem_eq(yt, yr, (size_t)8 * cols * 4);
    pclip__graph_destroy(g);

    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t big[1] = {300000}; /* 1.2 MB > 1 MiB */
    pclip__tensor *x = pclip__input(g, "big", PCLIP__DTYPE_F32, 1, big);
    y = pclip__scale(g, "scaled", x, 2.0f);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    pclip__exec *e = NULL;
    ck_assert_int_eq(pclip__exec_create(b, g, &e), PCLIP_STATUS_LIMIT);
    ck_assert_err_has(ctx, "maxStorageBufferRange");
    ck_assert_err_has(ctx, "'big'");
    ck_assert_int_eq(pclip__vk_weight_count(b->state), 0);
    pclip__graph_destroy(g);
    free(table), free(yt), free(yr);
    pclip_backend_destroy(b);
    pclip_backend_destroy(ref);
    unsetenv("PORTCLIP_VK_MAX_BINDING_MIB");
}
END_TEST

/* ---- errors ---- */

/* The loader is missing: BACKEND_UNAVAILABLE naming it, and the CPU works.
 * (Needs a process that has not loaded Vulkan yet: Check's fork.) */
START_TEST(test_no_loader) {
    setenv("PORTCLIP_VK_LOADER", "/nonexistent/libvulkan.so.1", 1);
    pclip_backend_t b = NULL;
    ck_assert_int_eq(pclip_backend_create(ctx, "vulkan", 0, &b), PCLIP_STATUS_BACKEND_UNAVAILABLE);
    ck_assert_ptr_null(b);
    ck_assert_err_has(ctx, "vulkan: no Vulkan loader (/nonexistent/libvulkan.so.1) found");
    ck_assert_status(ctx, pclip_backend_create(ctx, "auto", 0, &b), PCLIP_STATUS_OK);
    ck_assert_str_eq(pclip_backend_name(b), "cpu");
    ck_assert_msg(strstr(pclip_backend_fallback_reason(b), "vulkan: no Vulkan loader") &&
                          !strstr(pclip_backend_fallback_reason(b), "vulkan: vulkan:"), "'%s'",
                  pclip_backend_fallback_reason(b));
    pclip_backend_destroy(b);
    unsetenv("PORTCLIP_VK_LOADER");
}
END_TEST

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

/* No driver (the loader pointed at an ICD list with nothing in it), in a
 * forked child: BACKEND_UNAVAILABLE with the message, `devices` says why,
 * and the CPU path works in that same process. */
START_TEST(test_no_driver) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("VK_ICD_FILENAMES", "/nonexistent.json", 1);
        setenv("VK_DRIVER_FILES", "/nonexistent.json", 1);
        pclip_backend_t b = NULL;
        pclip_status st = pclip_backend_create(ctx, "vulkan", 0, &b);
        if (st != PCLIP_STATUS_BACKEND_UNAVAILABLE || b) _exit(10);
        if (!strstr(pclip_ctx_last_error(ctx), "vulkan: no Vulkan device (driver) found"))
            _exit(11);
        pclip_device_desc d[16];
        int32_t n = 0;
        if (pclip_devices_list(ctx, d, 16, &n)) _exit(12);
        int seen = 0;
        for (int32_t i = 0; i < n && i < 16; i++)
            if (!strcmp(d[i].backend, "vulkan"))
                seen += !d[i].usable && strstr(d[i].why, "no Vulkan device (driver) found");
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

/* Out of device memory (simulated: allocations above 1 MiB fail as the
 * driver's VK_ERROR_OUT_OF_DEVICE_MEMORY would): the arena and the weights
 * each give OUT_OF_MEMORY saying how much was needed and what the heap has;
 * nothing stays allocated; the backend still runs what fits, and the CPU
 * path works. */
START_TEST(test_out_of_device_memory) {
    setenv("PORTCLIP_VK_MAX_ALLOC_MIB", "1", 1);
    pclip_backend_t b = open_vulkan();
    unsetenv("PORTCLIP_VK_MAX_ALLOC_MIB");
    pclip__graph *g;
    pclip__exec *e = NULL;
    /* an arena of 4 MiB */
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t ne[1] = {(int64_t)1 << 19};
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 1, ne);
    pclip__tensor *y = pclip__scale(g, "y", x, 2.0f);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_create(b, g, &e), PCLIP_STATUS_OUT_OF_MEMORY);
    ck_assert_ptr_null(e);
    ck_assert_err_has(ctx, "vulkan: vkAllocateMemory: out of device memory (need 4 MiB for the "
                           "graph's activations, heap ");
    ck_assert_err_has(ctx, "has 1 MiB)");
    pclip__graph_destroy(g);
    /* a 2 MiB weight */
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    float *w = pclip_test_ramp((size_t)512 * 1024, 1.0f);
    const int64_t wne[2] = {1024, 512}, xne[2] = {2, 512};
    x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, xne);
    y = pclip__linear(g, "y", x, pclip__weight(g, "w", 2, wne, w), NULL, PCLIP_ACT_NONE, NULL);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_create(b, g, &e), PCLIP_STATUS_OUT_OF_MEMORY);
    ck_assert_err_has(ctx, "out of device memory (need 2 MiB for weights");
    ck_assert_int_eq(pclip__vk_weight_count(b->state), 0);
    pclip__graph_destroy(g);
    free(w);
    /* what fits still runs */
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t small[1] = {1000};
    x = pclip__input(g, "x", PCLIP__DTYPE_F32, 1, small);
    y = pclip__scale(g, "y", x, 2.0f);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    float *in = pclip_test_ramp(1000, 1.0f), out[1000];
    ck_assert_status(ctx, pclip_test_run_graph(b, g, 1, &x, (const void *[]){in}, y, out), PCLIP_STATUS_OK);
    for (int i = 0; i < 1000; i++) ck_assert_float_eq(out[i], 2.0f * in[i]);
    free(in);
    pclip__graph_destroy(g);
    pclip_backend_destroy(b);
    float emb[64];
    ck_assert_status(ctx, encode_once("cpu", 0, emb), PCLIP_STATUS_OK);
}
END_TEST

/* A run that does not finish in time (PORTCLIP_VK_TIMEOUT_MS=0: the fence is
 * polled once) makes the device lost, and that is sticky: every later call
 * says so; destroying still works (and waits for the device). */
START_TEST(test_device_lost_is_sticky) {
    setenv("PORTCLIP_VK_TIMEOUT_MS", "0", 1);
    pclip_backend_t b = open_vulkan();
    unsetenv("PORTCLIP_VK_TIMEOUT_MS");
    pclip__graph *g;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    const int64_t ne[2] = {512, 512};
    float *w = pclip_test_ramp(512 * 512, 0.1f), *in = pclip_test_ramp(512 * 512, 1.0f);
    pclip__tensor *x = pclip__input(g, "x", PCLIP__DTYPE_F32, 2, ne), *y = x;
    for (int i = 0; i < 4; i++)
        y = pclip__linear(g, "y", y, pclip__weight(g, "w", 2, ne, w), NULL, PCLIP_ACT_NONE, NULL);
    ck_assert_int_eq(pclip__graph_output(g, y), PCLIP_STATUS_OK);
    pclip__exec *e;
    ck_assert_status(ctx, pclip__exec_create(b, g, &e), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_write(e, x, in), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__exec_run(e), PCLIP_STATUS_DEVICE_LOST);
    ck_assert_err_has(ctx, "did not finish within");
    ck_assert_int_eq(pclip__exec_run(e), PCLIP_STATUS_DEVICE_LOST);
    ck_assert_err_has(ctx, "the device was lost earlier");
    ck_assert_int_eq(pclip__exec_write(e, x, in), PCLIP_STATUS_DEVICE_LOST);
    pclip__exec *e2 = NULL;
    ck_assert_int_eq(pclip__exec_create(b, g, &e2), PCLIP_STATUS_DEVICE_LOST);
    ck_assert_ptr_null(e2);
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    pclip_backend_destroy(b);
    free(w), free(in);
    float emb[64];
    ck_assert_status(ctx, encode_once("cpu", 1, emb), PCLIP_STATUS_OK);
}
END_TEST

/* A garbage value for a Vulkan variable fails the open, naming it, where it
 * used to be read as 0; and a tuning variable likewise. */
START_TEST(test_environment) {
    pclip_backend_t b = NULL;
    setenv("PORTCLIP_VK_TIMEOUT_MS", "abc", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "vulkan", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    unsetenv("PORTCLIP_VK_TIMEOUT_MS");
    ck_assert_ptr_null(b);
    ck_assert_err_has(ctx, "vulkan: PORTCLIP_VK_TIMEOUT_MS='abc' is not an integer in 0..");
    setenv("PORTCLIP_VK_MATMUL_TILE", "64,64,16,4", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "vulkan", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    unsetenv("PORTCLIP_VK_MATMUL_TILE");
    ck_assert_ptr_null(b);
    ck_assert_err_has(ctx, "PORTCLIP_VK_MATMUL_TILE='64,64,16,4' is not 5 comma-separated");
    setenv("PORTCLIP_VK_KERNELS", "fast", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "vulkan", 0, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    unsetenv("PORTCLIP_VK_KERNELS");
    ck_assert_err_has(ctx, "PORTCLIP_VK_KERNELS='fast' is not one of auto, tiled, direct, swap");
    /* what is accepted still opens */
    setenv("PORTCLIP_VK_ATTN_QR", "4", 1);
    b = open_vulkan();
    unsetenv("PORTCLIP_VK_ATTN_QR");
    pclip_backend_destroy(b);
}
END_TEST

#endif /* PCLIP_HAVE_VULKAN */

/* ---- main: skip when there is no Vulkan device ---- */

int main(void) {
    /* every test runs under the validation layer; any message fails it */
    setenv("PORTCLIP_VK_VALIDATION", "1", 1);
    pclip_test_probe_backend("check_vulkan", "vulkan", 0);
#ifdef PCLIP_HAVE_VULKAN
    Suite *s = suite_create("vulkan");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_set_timeout(core, 600);
    tcase_add_test(core, test_batches_share_weights);
    tcase_add_test(core, test_devices_and_auto);
    tcase_add_test(core, test_barrier_reasons);
    tcase_add_loop_test(core, test_attention_577, 0, 2);
    tcase_add_loop_test(core, test_matmul_variants, 0, 3);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_set_timeout(limits, 300);
    tcase_add_test(limits, test_binding_limit);
    tcase_add_test(limits, test_no_loader);
    tcase_add_test(limits, test_no_driver);
    tcase_add_test(limits, test_out_of_device_memory);
    tcase_add_test(limits, test_device_lost_is_sticky);
    tcase_add_test(limits, test_environment);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
#else
    return 1; /* unreachable: the probe says "not built into this library" (77) */
#endif
}
