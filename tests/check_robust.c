/* Robustness across the library: the allocation-failure walk over a whole
 * embedding run (load the tiny model, preprocess one image, encode one image
 * and one text on each CPU device), and the resource limits: images,
 * checkpoints and configs that promise more than any machine holds are
 * refused quickly and without a large allocation, adversarial 100 KB texts
 * are tokenized quickly, and the CLI embeds within a 1 GiB address space.
 *
 * The pixel-limit cases already in check_image (100000x100000 PNG,
 * 60000x60000 JPEG, oversized resizes) and the 100 KB texts of
 * check_tokenizer are not repeated; these add the shapes they miss and the
 * bound on memory and time. The parsers' own malformed-input cases live in
 * their suites and in the fuzzers (tests/fuzz). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "io/safetensors.h"
#include "testutil.h"

/* AddressSanitizer's runtime, when the process has it: ASan builds, and the
 * fuzz build, whose library and programs link it while this file is not
 * instrumented. It reserves terabytes of address space for its shadow
 * memory, so RLIMIT_AS cannot bound such a process; its malloc hook can. The
 * declarations are weak so that other builds link without the runtime
 * (<sanitizer/allocator_interface.h> is clang's; gcc's libasan has the call). */
extern void __asan_init(void) __attribute__((weak));
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *))
    __attribute__((weak));

static bool have_asan(void) { return __asan_init != NULL; }

#define TINY "tiny-clip"
#define CTX_LEN 77
#define N_DEVICES 2 /* the CPU backend's fast path and its plain C reference */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *join(const char *dir, const char *name) {
    static char bufs[4][1024];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text));
}

static void remove_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(pclip_test_sh(cmd, NULL, NULL), 0);
}

/* ---- the allocation-failure walk ---- */

/* One embedding run, split in steps so that a failed step can be retried on
 * the objects the earlier steps made. */
typedef struct run_state {
    int device;
    pclip_ctx_t ctx;
    pclip_model_t model;
    pclip_backend_t backend;
    pclip_image *img;
    float *pixels; /* [3, S, S] */
    int32_t ids[CTX_LEN];
    float img_emb[64]; /* [1, projection_dim]; sentinel-filled until written */
    float txt_emb[64];
} run_state;

enum {
    STEP_CTX,
    STEP_LOAD,
    STEP_BACKEND,
    STEP_IMAGE,
    STEP_PREPROCESS,
    STEP_TOKENIZE,
    STEP_ENCODE_IMAGE,
    STEP_ENCODE_TEXT,
    STEP_COUNT
};
static const char *const step_names[STEP_COUNT] = {
    "ctx_create",       "model_load",       "backend_create", "image_load",
    "image_preprocess", "tokenizer_encode", "encode_images",  "encode_text"};

#define SENTINEL 12345.0f

static pclip_status run_step(run_state *r, int step) {
    static const char text[] = "a photo of a cat &amp; a dog";
    switch (step) {
    case STEP_CTX: return pclip_ctx_create(&r->ctx);
    case STEP_LOAD: return pclip_model_load(r->ctx, pclip_test_fixture(TINY), &r->model);
    case STEP_BACKEND: return pclip_backend_create(r->ctx, "cpu", r->device, &r->backend);
    case STEP_IMAGE:
        return pclip_image_load(r->ctx, pclip_test_fixture("images/j_rgb420_64x48.jpg"), &r->img);
    case STEP_PREPROCESS:
        return pclip_image_preprocess(r->ctx, r->img, pclip_model_image_config(r->model),
                                      PCLIP_PREPROCESS_OPENAI, r->pixels);
    case STEP_TOKENIZE:
        return pclip_tokenizer_encode(pclip_model_tokenizer(r->model), text, sizeof text - 1,
                                      r->ids, CTX_LEN, NULL);
    case STEP_ENCODE_IMAGE:
        return pclip_model_encode_images(r->model, r->backend, r->pixels, 1, PCLIP_ENCODE_NORMALIZE,
                                         r->img_emb);
    case STEP_ENCODE_TEXT:
        return pclip_model_encode_text(r->model, r->backend, r->ids, 1, PCLIP_ENCODE_NORMALIZE,
                                       r->txt_emb);
    }
    return PCLIP_STATUS_INTERNAL;
}

static void run_init(run_state *r, int device) {
    memset(r, 0, sizeof *r);
    r->device = device;
    r->pixels = malloc(3 * 32 * 32 * sizeof *r->pixels); /* tiny-clip: 32x32 */
    ck_assert_ptr_nonnull(r->pixels);
    for (int i = 0; i < 64; i++) r->img_emb[i] = r->txt_emb[i] = SENTINEL;
}

static void run_release(run_state *r) {
    pclip_model_destroy(r->model); /* before the backend: it holds graphs compiled on it */
    pclip_backend_destroy(r->backend);
    pclip_image_destroy(r->img);
    pclip_ctx_destroy(r->ctx);
    free(r->pixels);
}

/* Outputs of a step that failed must be as they were: NULL handles, and the
 * embedding rows still hold the sentinel. */
static void assert_untouched(const run_state *r, int step, long n) {
    switch (step) {
    case STEP_CTX: ck_assert_msg(r->ctx == NULL, "allocation %ld: ctx set on failure", n); break;
    case STEP_LOAD: ck_assert_msg(r->model == NULL, "allocation %ld: model set", n); break;
    case STEP_BACKEND: ck_assert_msg(r->backend == NULL, "allocation %ld: backend set", n); break;
    case STEP_IMAGE: ck_assert_msg(r->img == NULL, "allocation %ld: image set", n); break;
    case STEP_ENCODE_IMAGE:
        for (int i = 0; i < 24; i++)
            ck_assert_msg(r->img_emb[i] == SENTINEL,
                          "allocation %ld: encode_images wrote its output and failed", n);
        break;
    case STEP_ENCODE_TEXT:
        for (int i = 0; i < 24; i++)
            ck_assert_msg(r->txt_emb[i] == SENTINEL,
                          "allocation %ld: encode_text wrote its output and failed", n);
        break;
    default: break;
    }
}

/* Allocation N fails, for N = 1, 2, ... until a run needs fewer than N
 * allocations. Every failure must be a clean OUT_OF_MEMORY with a message,
 * leave the failed step's outputs as they were, and leave the objects made
 * so far usable: the rest of the run is retried on them without failures and
 * must give the embeddings of a clean run. No leak (LeakSanitizer runs when
 * the forked test exits) and no crash. */
START_TEST(test_alloc_fail_walk) {
    int device = _i;
    run_state ref;
    run_init(&ref, device);
    for (int s = 0; s < STEP_COUNT; s++) {
        pclip_status st = run_step(&ref, s);
        ck_assert_msg(st == PCLIP_STATUS_OK, "clean run, cpu device %d, %s: %s: %s", device,
                      step_names[s], pclip_status_name(st), pclip_ctx_last_error(ref.ctx));
    }
    /* Loading does not depend on the device: device 0's walk fails each of
     * its allocations, the other devices' walks start after them. */
    long first = 1;
    if (device > 0) {
        run_state r;
        run_init(&r, device);
        pclip__alloc_fail_at(LONG_MAX);
        ck_assert_int_eq(run_step(&r, STEP_CTX), PCLIP_STATUS_OK);
        ck_assert_int_eq(run_step(&r, STEP_LOAD), PCLIP_STATUS_OK);
        first = LONG_MAX - pclip__alloc_fail_pending() + 1;
        pclip__alloc_fail_at(0);
        run_release(&r);
    }
    long n, failed_runs = 0;
    long per_step[STEP_COUNT] = {0};
    for (n = first; n < 1000000; n++) {
        run_state r;
        run_init(&r, device);
        pclip__alloc_fail_at(n);
        int s = 0;
        pclip_status st = PCLIP_STATUS_OK;
        for (; s < STEP_COUNT && st == PCLIP_STATUS_OK; s++) st = run_step(&r, s);
        bool fired = pclip__alloc_fail_pending() == 0;
        pclip__alloc_fail_at(0);
        if (st == PCLIP_STATUS_OK) {
            /* a run that met the failure and still succeeded swallowed it */
            ck_assert_msg(!fired,
                          "cpu device %d: allocation %ld failed, yet every step returned OK "
                          "(the embeddings %s a clean run's)",
                          device, n,
                          memcmp(r.img_emb, ref.img_emb, sizeof r.img_emb) == 0 &&
                                  memcmp(r.txt_emb, ref.txt_emb, sizeof r.txt_emb) == 0
                              ? "equal"
                              : "differ from");
            run_release(&r);
            break;
        }
        s--; /* the step that failed */
        failed_runs++;
        per_step[s]++;
        ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY,
                      "cpu device %d, allocation %ld fails in %s: %s (%s)", device, n,
                      step_names[s], pclip_status_name(st),
                      r.ctx ? pclip_ctx_last_error(r.ctx) : "");
        if (r.ctx)
            ck_assert_msg(pclip_ctx_last_error(r.ctx)[0] != '\0',
                          "cpu device %d, allocation %ld fails in %s without a message", device, n,
                          step_names[s]);
        assert_untouched(&r, s, n);
        /* The same objects, the rest of the run, no failures. A failed load
         * leaves only the context, so the retries start with the backend. */
        if (s >= STEP_BACKEND) {
            for (; s < STEP_COUNT; s++) {
                st = run_step(&r, s);
                ck_assert_msg(st == PCLIP_STATUS_OK,
                              "cpu device %d, allocation %ld failed; retrying %s: %s (%s)", device,
                              n, step_names[s], pclip_status_name(st), pclip_ctx_last_error(r.ctx));
            }
            ck_assert_msg(memcmp(r.img_emb, ref.img_emb, sizeof r.img_emb) == 0 &&
                              memcmp(r.txt_emb, ref.txt_emb, sizeof r.txt_emb) == 0,
                          "cpu device %d, allocation %ld failed: the retried run's embeddings "
                          "differ from a clean run's",
                          device, n);
        }
        run_release(&r);
    }
    ck_assert_int_lt(n, 1000000);
    fprintf(stderr, "alloc walk, cpu device %d: %ld allocations failed in turn (", device,
            failed_runs);
    for (int s = 0; s < STEP_COUNT; s++)
        fprintf(stderr, "%s%s %ld", s ? ", " : "", step_names[s], per_step[s]);
    fprintf(stderr, ")\n");
    /* the walk reached every step that allocates through the hook */
    if (device == 0) ck_assert_int_gt(per_step[STEP_LOAD], 100);
    ck_assert_int_gt(per_step[STEP_PREPROCESS], 0);
    ck_assert_int_gt(per_step[STEP_ENCODE_IMAGE], 0);
    ck_assert_int_gt(per_step[STEP_ENCODE_TEXT], 0);
    run_release(&ref);
}
END_TEST

/* ---- bounded memory and time ---- */

/* What a bounded call reports back from its child process. */
typedef struct bounded_result {
    int done;
    pclip_status status;
    double seconds;
    size_t largest_alloc; /* ASan builds: the largest malloc seen */
    char msg[PCLIP_ERROR_TEXT];
} bounded_result;

typedef pclip_status (*bounded_fn)(pclip_ctx_t ctx, const void *arg);

static size_t largest_alloc;
static void on_malloc(const volatile void *p, size_t n) {
    (void)p;
    if (n > largest_alloc) largest_alloc = n;
}
static void on_free(const volatile void *p) { (void)p; }

/* Current address-space size, from /proc/self/statm (pages). */
static size_t vm_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

#define HEADROOM ((size_t)64 << 20)

/* Runs fn in a forked child that may use at most HEADROOM more address
 * space (RLIMIT_AS). ASan's runtime reserves terabytes of shadow memory,
 * which rules out RLIMIT_AS: there the child records its largest allocation
 * through the sanitizer's malloc hook instead, and the caller checks it. */
static bounded_result run_bounded(bounded_fn fn, const void *arg) {
    bounded_result *shared =
        mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(shared, MAP_FAILED);
    memset(shared, 0, sizeof *shared);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        pclip_ctx_t ctx;
        if (pclip_ctx_create(&ctx)) _exit(1);
        if (have_asan()) {
            __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
        } else {
            struct rlimit lim = {vm_bytes() + HEADROOM, vm_bytes() + HEADROOM};
            if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(2);
        }
        double t0 = now_s();
        shared->status = fn(ctx, arg);
        shared->seconds = now_s() - t0;
        shared->largest_alloc = largest_alloc;
        snprintf(shared->msg, sizeof shared->msg, "%s", pclip_ctx_last_error(ctx));
        shared->done = 1;
        pclip_ctx_destroy(ctx);
        _exit(0);
    }
    int wstatus = 0;
    ck_assert_int_eq(waitpid(pid, &wstatus, 0), pid);
    bounded_result r = *shared;
    munmap(shared, sizeof *shared);
    ck_assert_msg(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 && r.done,
                  "the bounded child died (wait status 0x%x)", wstatus);
    return r;
}

/* The call returned `want` within a second, without a large allocation,
 * with a message holding `says`. */
static void expect_bounded(const char *what, bounded_fn fn, const void *arg, pclip_status want,
                           const char *says) {
    bounded_result r = run_bounded(fn, arg);
    ck_assert_msg(r.status == want, "%s: %s, expected %s (%s)", what, pclip_status_name(r.status),
                  pclip_status_name(want), r.msg);
    ck_assert_msg(strstr(r.msg, says) != NULL, "%s: message '%s' lacks '%s'", what, r.msg, says);
    ck_assert_msg(r.seconds < 1.0, "%s: took %.2f s", what, r.seconds);
    ck_assert_msg(r.largest_alloc < HEADROOM, "%s: allocated %zu bytes at once", what,
                  r.largest_alloc);
}

/* ---- images ---- */

static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* Appends a chunk (length, type, data, CRC) at buf + *n. */
static void png_chunk(uint8_t *buf, size_t *n, const char *type, const uint8_t *data,
                      uint32_t len) {
    put_be32(buf + *n, len);
    memcpy(buf + *n + 4, type, 4);
    if (len) memcpy(buf + *n + 8, data, len);
    put_be32(buf + *n + 8 + len, crc32_png(buf + *n + 4, len + 4));
    *n += 12 + len;
}

typedef struct image_bytes {
    uint8_t data[4096];
    size_t size;
} image_bytes;

/* An 8-bit grey PNG header claiming width x height, with one short IDAT (a
 * 1-byte zlib stream) and IEND: the claim is all a decoder has to go on. */
static image_bytes png_claiming(uint32_t width, uint32_t height) {
    image_bytes im = {.size = 0};
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(im.data, sig, 8);
    im.size = 8;
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, width);
    put_be32(ihdr + 4, height);
    ihdr[8] = 8; /* depth; colour type 0 (grey), no interlace */
    png_chunk(im.data, &im.size, "IHDR", ihdr, 13);
    static const uint8_t zlib[] = {0x78, 0x01, 0x01, 0x01, 0x00, 0xFE,
                                   0xFF, 0x00, 0x00, 0x01, 0x00, 0x01};
    png_chunk(im.data, &im.size, "IDAT", zlib, sizeof zlib);
    png_chunk(im.data, &im.size, "IEND", NULL, 0);
    return im;
}

/* A fixture JPEG whose frame header (SOF0/SOF2) is patched to claim width x height. */
static image_bytes jpeg_claiming(const char *rel, uint16_t width, uint16_t height) {
    size_t len;
    char *raw = pclip_test_read_file(pclip_test_fixture(rel), &len);
    image_bytes im;
    ck_assert_uint_le(len, sizeof im.data);
    memcpy(im.data, raw, len);
    im.size = len;
    free(raw);
    size_t i = 2;
    bool patched = false;
    while (i + 9 < im.size && !patched) {
        ck_assert_msg(im.data[i] == 0xFF, "%s: no marker at %zu", rel, i);
        uint8_t m = im.data[i + 1];
        size_t seg = (size_t)im.data[i + 2] << 8 | im.data[i + 3];
        if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            im.data[i + 5] = (uint8_t)(height >> 8), im.data[i + 6] = (uint8_t)height;
            im.data[i + 7] = (uint8_t)(width >> 8), im.data[i + 8] = (uint8_t)width;
            patched = true;
        }
        i += 2 + seg;
    }
    ck_assert_msg(patched, "%s: no SOF marker", rel);
    return im;
}

static pclip_status decode_bytes(pclip_ctx_t ctx, const void *arg) {
    const image_bytes *im = arg;
    pclip_image *img = NULL;
    pclip_status st = pclip_image_decode(ctx, im->data, im->size, "claim", &img);
    pclip_image_destroy(img);
    return st;
}

/* Shapes the pixel-limit tests of check_image do not cover: a tall thin PNG
 * (tiny width, huge height) and the reverse, sides at PNG's 2^31 - 1 limit,
 * and JPEGs at 65500 x 65500 (libjpeg's largest side) and just over the
 * limit. */
START_TEST(test_image_claims) {
    static const struct {
        uint32_t w, h;
        pclip_status status;
        const char *says;
    } pngs[] = {
        {1, 200000000, PCLIP_STATUS_LIMIT, "1x200000000"},
        {200000000, 1, PCLIP_STATUS_LIMIT, "200000000x1"},
        {1, 0x7FFFFFFF, PCLIP_STATUS_LIMIT, "1x2147483647"},
        {0x7FFFFFFF, 0x7FFFFFFF, PCLIP_STATUS_LIMIT, "2147483647x2147483647"},
        {13380, 13380, PCLIP_STATUS_LIMIT, "13380x13380"}, /* 179,024,400: just over */
        {1, 0x80000000u, PCLIP_STATUS_BAD_FORMAT, "PNG"},  /* past PNG's own limit */
    };
    for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) {
        image_bytes im = png_claiming(pngs[i].w, pngs[i].h);
        char what[64];
        snprintf(what, sizeof what, "PNG %ux%u", pngs[i].w, pngs[i].h);
        expect_bounded(what, decode_bytes, &im, pngs[i].status, pngs[i].says);
    }
    static const struct {
        const char *rel;
        uint16_t w, h;
        const char *says;
    } jpegs[] = {
        {"images/j_1x1.jpg", 65500, 65500, "65500x65500"},
        {"images/j_progressive_64x48.jpg", 65500, 65500, "65500x65500"},
        {"images/j_grey_64x48.jpg", 65500, 2733, "65500x2733"}, /* 179,011,500: just over */
    };
    for (size_t i = 0; i < sizeof jpegs / sizeof jpegs[0]; i++) {
        image_bytes im = jpeg_claiming(jpegs[i].rel, jpegs[i].w, jpegs[i].h);
        char what[128];
        snprintf(what, sizeof what, "%s as %ux%u", jpegs[i].rel, jpegs[i].w, jpegs[i].h);
        expect_bounded(what, decode_bytes, &im, PCLIP_STATUS_LIMIT, jpegs[i].says);
    }
}
END_TEST

/* ---- checkpoints ---- */

/* A safetensors file: the 8-byte length, `header` (padded to 8 bytes, or
 * given `header_len` when non-zero, to lie about it), then `data_len` zero bytes. */
static void write_safetensors(const char *path, const char *header, uint64_t header_len,
                              size_t data_len) {
    size_t h = strlen(header), padded = (h + 7) / 8 * 8;
    uint64_t claim = header_len ? header_len : padded;
    size_t total = 8 + padded + data_len;
    uint8_t *buf = calloc(1, total);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(claim >> (8 * i));
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, ' ', padded - h);
    write_bytes(path, buf, total);
    free(buf);
}

static pclip_status open_safetensors(pclip_ctx_t ctx, const void *arg) {
    pclip__st_file *f = NULL;
    pclip_status st = pclip__st_open(ctx, arg, &f);
    pclip__st_close(f);
    return st;
}

static pclip_status load_model_dir(pclip_ctx_t ctx, const void *arg) {
    pclip_model_t m = NULL;
    pclip_status st = pclip_model_load(ctx, arg, &m);
    pclip_model_destroy(m);
    return st;
}

/* Headers that promise more than the file holds, or more memory than any
 * machine has: refused from the header alone, quickly, without allocating
 * what they promise (the data is memory-mapped, never copied). */
START_TEST(test_checkpoint_claims) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir()); /* a static buffer, reused */
    static const struct {
        const char *name, *header;
        uint64_t header_len;
        size_t data_len;
        const char *says;
    } cases[] = {
        /* the header length alone: just under the 100 MB limit, in a 4 KiB file */
        {"hlen.safetensors", "{}", 99999999, 4000, "truncated"},
        {"hlen-max.safetensors", "{}", UINT64_MAX, 0, "over the limit"},
        /* a 4 TiB tensor whose span runs past the file */
        {"tib.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],"
         "\"data_offsets\":[0,4398046511104]}}",
         0, 64, "outside the 64 data bytes"},
        /* an element count that overflows 64 bits */
        {"overflow.safetensors",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
         "\"data_offsets\":[0,0]}}",
         0, 0, "overflows"},
        /* shapes at the JSON integer limit, with a span that fits: sizes disagree */
        {"span.safetensors",
         "{\"w\":{\"dtype\":\"BF16\",\"shape\":[9007199254740992],\"data_offsets\":[0,16]}}", 0, 16,
         "needs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = join(dir, cases[i].name);
        write_safetensors(path, cases[i].header, cases[i].header_len, cases[i].data_len);
        expect_bounded(cases[i].name, open_safetensors, path, PCLIP_STATUS_BAD_FORMAT,
                       cases[i].says);
    }

    /* a whole model directory whose only tensor claims 4 TiB */
    char mdir[300];
    snprintf(mdir, sizeof mdir, "%s", pclip_test_tmpdir());
    char *cfg = pclip_test_read_file(pclip_test_fixture(TINY "/config.json"), NULL);
    write_text(join(mdir, "config.json"), cfg);
    free(cfg);
    write_safetensors(join(mdir, "model.safetensors"), cases[2].header, 0, 64);
    for (const char *f = "vocab.json\0merges.txt\0"; *f; f += strlen(f) + 1) {
        char *text = pclip_test_read_file(pclip_test_fixture(join(TINY, f)), NULL);
        write_text(join(mdir, f), text);
        free(text);
    }
    expect_bounded("model with a 4 TiB tensor", load_model_dir, mdir, PCLIP_STATUS_BAD_FORMAT,
                   "outside");
    remove_tree(dir);
    remove_tree(mdir);
}
END_TEST

/* ---- configs ---- */

/* Configs whose weights would need terabytes are refused from the config
 * alone; one that is huge but under the limit (about 58 GiB per tower)
 * loads no further than the first missing tensor, and sizes no allocation
 * from the config on the way. */
START_TEST(test_config_claims) {
    static const struct {
        const char *name, *json;
        pclip_status status;
        const char *says;
    } cases[] = {
        {"terabytes",
         "{\"text_config\": {\"hidden_size\": 16384, \"intermediate_size\": 131072,"
         " \"num_hidden_layers\": 256, \"num_attention_heads\": 128, \"vocab_size\": 1000000}}",
         PCLIP_STATUS_LIMIT, "MiB of fp32 weights"},
        {"vision terabytes",
         "{\"vision_config\": {\"hidden_size\": 16384, \"intermediate_size\": 131072,"
         " \"num_hidden_layers\": 256, \"num_attention_heads\": 16, \"image_size\": 4096,"
         " \"patch_size\": 1}}",
         PCLIP_STATUS_LIMIT, "vision_config"},
        {"one huge embedding",
         "{\"text_config\": {\"hidden_size\": 16384, \"num_attention_heads\": 16,"
         " \"vocab_size\": 1000000, \"num_hidden_layers\": 1}}",
         PCLIP_STATUS_LIMIT, "text_config"},
        {"beyond the field limits", "{\"text_config\": {\"hidden_size\": 1e15}}",
         PCLIP_STATUS_BAD_CONFIG, "hidden_size"},
        {"58 GiB per tower",
         "{\"projection_dim\": 8192,"
         " \"text_config\": {\"hidden_size\": 8192, \"intermediate_size\": 32768,"
         " \"num_hidden_layers\": 18, \"num_attention_heads\": 64},"
         " \"vision_config\": {\"hidden_size\": 8192, \"intermediate_size\": 32768,"
         " \"num_hidden_layers\": 18, \"num_attention_heads\": 64}}",
         PCLIP_STATUS_BAD_TENSOR, "missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[300];
        snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir());
        write_text(join(dir, "config.json"), cases[i].json);
        /* the tiny checkpoint: every tensor of the huge config is missing or misshaped */
        size_t len;
        char *st = pclip_test_read_file(pclip_test_fixture(TINY "/model.safetensors"), &len);
        write_bytes(join(dir, "model.safetensors"), st, len);
        free(st);
        for (const char *f = "vocab.json\0merges.txt\0"; *f; f += strlen(f) + 1) {
            char *text = pclip_test_read_file(pclip_test_fixture(join(TINY, f)), NULL);
            write_text(join(dir, f), text);
            free(text);
        }
        expect_bounded(cases[i].name, load_model_dir, dir, cases[i].status, cases[i].says);
        remove_tree(dir);
    }
}
END_TEST

/* ---- texts ---- */

static char *repeat(const char *unit, size_t total) {
    size_t u = strlen(unit), n = total / u;
    char *s = malloc(n * u + 1);
    for (size_t i = 0; i < n; i++) memcpy(s + i * u, unit, u);
    s[n * u] = '\0';
    return s;
}

/* 100 KB texts built to be slow for each stage: one 100 KB word (BPE on a
 * single word), HTML entity lookalikes (the unescape's 32-character name
 * lookahead), numeric references, whitespace and combining marks
 * (whitespace_clean, the pre-tokenizer's classes), and contractions. check_
 * tokenizer checks these texts' ids; here, that each takes well under a
 * second (the bound is per text, generous for sanitizer builds). */
START_TEST(test_texts_100k_fast) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_tokenizer_t tok;
    ck_assert_status(ctx,
                     pclip_tokenizer_load(ctx, pclip_test_fixture(TINY "/vocab.json"),
                                          pclip_test_fixture(TINY "/merges.txt"), &tok),
                     PCLIP_STATUS_OK);
    const size_t n = 100 * 1024;
    struct {
        const char *what;
        char *text;
    } texts[] = {
        {"one word", repeat("q", n)},
        {"entity names", repeat("&abcdefghijklmnopqrstuvwxyzabcdefgh", n)},
        {"ampersands", repeat("&", n)},
        {"numeric refs", repeat("&#x10FFFF0000000", n)},
        {"nested refs", repeat("&amp;amp;", n)},
        {"whitespace", repeat(" \t\n\xE2\x80\x83", n)},
        {"combining marks", repeat("e\xCC\x81\xCC\x81\xCC\x81", n)},
        {"contractions", repeat("'s'll'", n)},
        {"alternating classes", repeat("a1!", n)},
        {"punctuation", repeat("!?", n)},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t ids[CTX_LEN], nt = 0;
        double t0 = now_s();
        pclip_status st =
            pclip_tokenizer_encode(tok, texts[i].text, strlen(texts[i].text), ids, CTX_LEN, &nt);
        double dt = now_s() - t0;
        ck_assert_msg(st == PCLIP_STATUS_OK, "%s: %s (%s)", texts[i].what, pclip_status_name(st),
                      pclip_ctx_last_error(ctx));
        ck_assert_msg(dt < 1.0, "%s: 100 KB took %.2f s", texts[i].what, dt);
        ck_assert_int_eq(ids[nt - 1], pclip_tokenizer_eos(tok));
        free(texts[i].text);
    }
    pclip_tokenizer_destroy(tok);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- the CLI in a bounded address space ---- */

#define CLI_VM_LIMIT ((rlim_t)1 << 30)

/* Runs the CLI with RLIMIT_AS at 1 GiB; returns its exit status. */
static int cli_limited(char *const argv[], char **err) {
    const char *dir = pclip_test_tmpdir();
    char epath[512];
    snprintf(epath, sizeof epath, "%s/stderr", dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit lim = {CLI_VM_LIMIT, CLI_VM_LIMIT};
        if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(126);
        if (!freopen(epath, "wb", stderr) || !freopen("/dev/null", "wb", stdout)) _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    *err = pclip_test_read_file(epath, NULL);
    unlink(epath);
    rmdir(dir);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

START_TEST(test_cli_in_1gib) {
    char dir[300], out[600], device[8];
    snprintf(dir, sizeof dir, "%s", pclip_test_tmpdir()); /* a static buffer, reused */
    snprintf(out, sizeof out, "%s/out.npy", dir);
    snprintf(device, sizeof device, "%d", _i);
    char *model = strdup(pclip_test_fixture(TINY));
    char *img1 = strdup(pclip_test_fixture("images/j_rgb420_64x48.jpg"));
    char *img2 = strdup(pclip_test_fixture("images/p_rgba_64x48.png"));
    char *cli = (char *)pclip_test_cli();
    char *text_argv[] = {cli,         "embed-text", "--model",  model,  "--output",         out,
                         "--backend", "cpu",        "--device", device, "a photo of a cat", "a dog",
                         NULL};
    char *image_argv[] = {cli,   "embed-image", "--model", model, "--output", out, "--backend",
                          "cpu", "--device",    device,    img1,  img2,       NULL};
    char *const *runs[] = {text_argv, image_argv};
    for (int r = 0; r < 2; r++) {
        char *err = NULL;
        int rc = cli_limited(runs[r], &err);
        ck_assert_msg(rc == 0, "%s on cpu device %d under a 1 GiB RLIMIT_AS: exit %d: %s",
                      runs[r][1], _i, rc, err);
        free(err);
        pclip_test_npy a;
        pclip_test_npy_read(out, &a);
        ck_assert_int_eq(a.shape[0], 2);
        ck_assert_int_eq(a.shape[1], 24);
        for (size_t k = 0; k < a.count; k++) ck_assert(isfinite(a.data[k]));
        pclip_test_npy_free(&a);
        unlink(out);
    }
    free(model);
    free(img1);
    free(img2);
    rmdir(dir);
}
END_TEST

/* `check_robust`: the allocation-failure walk and the size limits.
 * `check_robust cli-1gib`: the CLI under a 1 GiB address-space limit; exits
 * 77 (skipped) in a sanitizer build, where RLIMIT_AS cannot work. */
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "cli-1gib") == 0) {
        if (have_asan()) {
            /* the CLI links ASan too: its shadow memory alone is terabytes of address space */
            printf("skipped: AddressSanitizer rules out RLIMIT_AS (test_cli_in_1gib)\n");
            return PCLIP_TEST_SKIP;
        }
        Suite *s = suite_create("robust-cli-1gib");
        TCase *limits = tcase_create("limits");
        tcase_add_loop_test(limits, test_cli_in_1gib, 0, N_DEVICES);
        suite_add_tcase(s, limits);
        return pclip_test_run(s);
    }
    if (argc > 1) {
        fprintf(stderr, "usage: check_robust [cli-1gib]\n");
        return 2;
    }
    Suite *s = suite_create("robust");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 900);
    tcase_add_loop_test(core, test_alloc_fail_walk, 0, N_DEVICES);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_image_claims);
    tcase_add_test(limits, test_checkpoint_claims);
    tcase_add_test(limits, test_config_claims);
    tcase_add_test(limits, test_texts_100k_fast);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
