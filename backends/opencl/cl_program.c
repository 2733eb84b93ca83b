/* The OpenCL program: the embedded kernel sources (cl_kernels.h, common.cl
 * first) built by the driver at the backend's first compile, with the
 * tuning as -D options, and the binary cache that spares the second start
 * that build.
 *
 * The cache: one file per (platform, device, driver version, device
 * version, sources, build options), named by the FNV-1a 64 hash of all of
 * them, in $XDG_CACHE_HOME/portclip (else $HOME/.cache/portclip). An entry
 * is a header (magic, format version, the key hash, the payload's size and
 * FNV-1a 64 checksum) followed by the driver's program binary. An entry
 * that is short, has another key, a wrong checksum, or that the driver
 * refuses, is never trusted: the program is built from source and the entry
 * rewritten. Entries are written to a temporary file and renamed into place,
 * so a reader sees a whole entry or none. The cache is an optimisation only:
 * any failure to read or write it falls back to building (cache_note says
 * what happened). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cl.h"

/* ---- hashing ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_SEED 0xcbf29ce484222325ull

/* ---- build options ---- */

static void build_options(const pclip__cl *s, char *buf, size_t n) {
    const pclip__cl_tuning *t = &s->tune;
    const char *extra = getenv("PORTCLIP_CL_BUILD_OPTIONS");
    snprintf(buf, n,
             "-cl-std=CL1.2%s -DELEM_LS=%u -DROW_LS=%u -DMM_BM=%u -DMM_BN=%u -DMM_BK=%u "
             "-DMM_TM=%u -DMM_TN=%u -DMD_TM=%u -DMD_TN=%u -DMD_VW=%u -DMD_LS=%u -DTR_TILE=%u "
             "-DSR_COLS=%u%s%s",
             /* the CPU reference divides and takes square roots correctly rounded */
             s->dev.correct_div_sqrt ? " -cl-fp32-correctly-rounded-divide-sqrt" : "", t->elem_ls,
             t->row_ls, t->bm, t->bn, t->bk, t->tm, t->tn, t->md_tm, t->md_tn, t->md_vw, t->md_ls, t->tr_tile, t->sr_cols, extra && *extra ? " " : "",
             extra && *extra ? extra : "");
}

static uint64_t cache_key(const pclip__cl *s, const char *options) {
    uint64_t h = FNV_SEED;
    const char *parts[] = {s->dev.platform_name, s->dev.name,    s->dev.vendor,
                           s->dev.driver,        s->dev.version, options};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        h = fnv1a(h, parts[i], strlen(parts[i]) + 1);
    for (int i = 0; i < PCLIP__CL_SOURCE_COUNT; i++)
        h = fnv1a(h, pclip__cl_sources[i].text, pclip__cl_sources[i].len + 1);
    return h;
}

/* ---- the cache file ---- */

#define CACHE_MAGIC "PCLIPCLB"
#define CACHE_FORMAT 1u
#define CACHE_MAX_BYTES ((uint64_t)256 << 20)

typedef struct cache_header {
    char magic[8];
    uint32_t format, reserved;
    uint64_t key;
    uint64_t bytes;    /* of the payload */
    uint64_t checksum; /* FNV-1a 64 of the payload */
} cache_header;

/* The cache folder (created) into dir, or false when there is none. */
static bool cache_dir(char *dir, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int w;
    if (xdg && xdg[0] == '/') {
        if (mkdir(xdg, 0700) != 0 && errno != EEXIST) return false;
        w = snprintf(dir, n, "%s/portclip", xdg);
    } else if (home && home[0] == '/') {
        char parent[4096];
        if ((size_t)snprintf(parent, sizeof parent, "%s/.cache", home) >= sizeof parent)
            return false;
        if (mkdir(parent, 0700) != 0 && errno != EEXIST) return false;
        w = snprintf(dir, n, "%s/portclip", parent);
    } else
        return false;
    if (w < 0 || (size_t)w >= n) return false;
    return mkdir(dir, 0700) == 0 || errno == EEXIST;
}

pclip_status pclip__cl_cache_path(pclip__cl *s, char *buf, size_t n) {
    char options[512], dir[4096];
    build_options(s, options, sizeof options);
    buf[0] = '\0';
    if (!s->cache_on || !cache_dir(dir, sizeof dir)) return PCLIP_STATUS_OK;
    if ((size_t)snprintf(buf, n, "%s/opencl-%016llx.bin", dir,
                         (unsigned long long)cache_key(s, options)) >= n)
        buf[0] = '\0';
    return PCLIP_STATUS_OK;
}

/* The entry's payload (malloc'd) when `path` holds a whole, valid entry
 * for `key`; else NULL with the reason in `why`. */
static uint8_t *cache_read(const char *path, uint64_t key, size_t *bytes, char *why, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, n, "no entry");
        return NULL;
    }
    cache_header h;
    uint8_t *data = NULL;
    if (fread(&h, sizeof h, 1, f) != 1)
        snprintf(why, n, "short header");
    else if (memcmp(h.magic, CACHE_MAGIC, 8) != 0 || h.format != CACHE_FORMAT)
        snprintf(why, n, "not a cache entry of this format");
    else if (h.key != key)
        snprintf(why, n, "another key");
    else if (h.bytes == 0 || h.bytes > CACHE_MAX_BYTES)
        snprintf(why, n, "payload size %llu", (unsigned long long)h.bytes);
    else if (!(data = pclip__malloc((size_t)h.bytes)))
        snprintf(why, n, "out of memory");
    else if (fread(data, 1, (size_t)h.bytes, f) != h.bytes || fgetc(f) != EOF) {
        snprintf(why, n, "size does not match its header");
        pclip__free(data);
        data = NULL;
    } else if (fnv1a(FNV_SEED, data, (size_t)h.bytes) != h.checksum) {
        snprintf(why, n, "checksum mismatch");
        pclip__free(data);
        data = NULL;
    }
    fclose(f);
    if (data) *bytes = (size_t)h.bytes;
    return data;
}

/* Writes the program's binary as the entry at `path`, atomically. */
static bool cache_write(pclip__cl *s, const char *path, uint64_t key) {
    size_t size = 0;
    cl_uint ndev = 0;
    if (s->cl->clGetProgramInfo(s->program, CL_PROGRAM_NUM_DEVICES, sizeof ndev, &ndev, NULL) ||
        ndev != 1 ||
        s->cl->clGetProgramInfo(s->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) ||
        size == 0 || size > CACHE_MAX_BYTES)
        return false;
    uint8_t *bin = pclip__malloc(size);
    if (!bin) return false;
    bool ok = false;
    if (!s->cl->clGetProgramInfo(s->program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL)) {
        cache_header h = {.format = CACHE_FORMAT, .key = key, .bytes = size};
        memcpy(h.magic, CACHE_MAGIC, 8);
        h.checksum = fnv1a(FNV_SEED, bin, size);
        /* pclip__atomic_*: the messages of a failed write are not the
         * caller's concern (the cache is optional), so they go to no context */
        pclip__atomic_file af;
        if (!pclip__atomic_open(NULL, path, &af)) {
            ok = !pclip__atomic_write(NULL, &af, &h, sizeof h) &&
                 !pclip__atomic_write(NULL, &af, bin, size) && !pclip__atomic_commit(NULL, &af);
            if (!ok) pclip__atomic_abort(&af);
        }
    }
    pclip__free(bin);
    return ok;
}

/* ---- building ---- */

/* Builds s->program with `options`; a failure carries (the start of) the
 * build log. */
static pclip_status build(pclip__cl *s, const char *options) {
    cl_int err = s->cl->clBuildProgram(s->program, 1, &s->dev.id, options, NULL, NULL);
    if (err == CL_SUCCESS) return PCLIP_STATUS_OK;
    size_t len = 0;
    char *log = NULL;
    if (!s->cl->clGetProgramBuildInfo(s->program, s->dev.id, CL_PROGRAM_BUILD_LOG, 0, NULL, &len) &&
        len > 0 && (log = pclip__malloc(len + 1)) &&
        !s->cl->clGetProgramBuildInfo(s->program, s->dev.id, CL_PROGRAM_BUILD_LOG, len, log, NULL))
        log[len] = '\0';
    else if (log) {
        pclip__free(log);
        log = NULL;
    }
    pclip_status st = pclip__cl_status(s->ctx, err, "clBuildProgram");
    pclip__err(s->ctx, st,
               "opencl: clBuildProgram: %s: the kernels (shaders/opencl/*.cl) failed to build for "
               "%s with options '%s'; build log: %.600s",
               pclip__cl_error_name(err), s->dev.name, options, log && log[0] ? log : "(empty)");
    pclip__free(log);
    return st;
}

static pclip_status from_source(pclip__cl *s, const char *options) {
    const char *texts[PCLIP__CL_SOURCE_COUNT];
    size_t lens[PCLIP__CL_SOURCE_COUNT];
    for (int i = 0; i < PCLIP__CL_SOURCE_COUNT; i++) {
        texts[i] = pclip__cl_sources[i].text;
        lens[i] = pclip__cl_sources[i].len;
    }
    cl_int err = CL_SUCCESS;
    s->program = s->cl->clCreateProgramWithSource(s->context, PCLIP__CL_SOURCE_COUNT, texts, lens,
                                                  &err);
    if (err != CL_SUCCESS || !s->program) {
        s->program = NULL;
        return pclip__cl_status(s->ctx, err ? err : CL_OUT_OF_RESOURCES,
                                "clCreateProgramWithSource");
    }
    return build(s, options);
}

/* The program from a cached binary; false (nothing kept) when the driver
 * refuses it. */
static bool from_binary(pclip__cl *s, const uint8_t *bin, size_t bytes, const char *options) {
    cl_int status = CL_SUCCESS, err = CL_SUCCESS;
    s->program = s->cl->clCreateProgramWithBinary(s->context, 1, &s->dev.id, &bytes, &bin,
                                                  &status, &err);
    if (err == CL_SUCCESS && status == CL_SUCCESS && s->program &&
        s->cl->clBuildProgram(s->program, 1, &s->dev.id, options, NULL, NULL) == CL_SUCCESS)
        return true;
    if (s->program) s->cl->clReleaseProgram(s->program);
    s->program = NULL;
    return false;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

pclip_status pclip__cl_program_get(pclip__cl *s) {
    if (s->program) return PCLIP_STATUS_OK;
    const double t0 = now();
    char options[512], path[4200], why[128] = "";
    build_options(s, options, sizeof options);
    const uint64_t key = cache_key(s, options);
    pclip__cl_cache_path(s, path, sizeof path);
    if (path[0]) {
        size_t bytes = 0;
        uint8_t *bin = cache_read(path, key, &bytes, why, sizeof why);
        bool hit = bin && from_binary(s, bin, bytes, options);
        if (bin && !hit) snprintf(why, sizeof why, "the driver refused the binary");
        pclip__free(bin);
        if (hit) {
            snprintf(s->cache_note, sizeof s->cache_note, "cache hit");
            s->build_seconds = now() - t0;
            return PCLIP_STATUS_OK;
        }
    }
    pclip_status st = from_source(s, options);
    if (st) {
        if (s->program) s->cl->clReleaseProgram(s->program);
        s->program = NULL;
        return st;
    }
    if (!path[0])
        snprintf(s->cache_note, sizeof s->cache_note, "built (cache off or no cache folder)");
    else if (cache_write(s, path, key))
        snprintf(s->cache_note, sizeof s->cache_note, "built (%s), cache entry written",
                 strcmp(why, "no entry") == 0 ? "no entry" : why);
    else
        snprintf(s->cache_note, sizeof s->cache_note, "built (%s), cache entry not written", why);
    s->build_seconds = now() - t0;
    return PCLIP_STATUS_OK;
}
