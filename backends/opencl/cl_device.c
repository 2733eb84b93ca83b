/* The OpenCL backend's devices: the ICD loader (libOpenCL.so.1, opened with
 * dlopen at run time, so the library runs where OpenCL is missing), the one
 * cl_int -> pclip_status mapping, the platforms and devices behind
 * `portclip devices`, the kernel tuning per device, and opening and closing
 * a device (one context, one in-order queue).
 *
 * Not here: the program and its cache (cl_program.c), weights, params and
 * compiled graphs (cl_exec.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl.h"

/* ---- errors ---- */

const char *pclip__cl_error_name(cl_int err) {
    switch (err) {
    // clang-format off
#define N(x) case x: return #x;
    N(CL_SUCCESS)
    N(CL_DEVICE_NOT_FOUND)
    N(CL_DEVICE_NOT_AVAILABLE)
    N(CL_COMPILER_NOT_AVAILABLE)
    N(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    N(CL_OUT_OF_RESOURCES)
    N(CL_OUT_OF_HOST_MEMORY)
    N(CL_PROFILING_INFO_NOT_AVAILABLE)
    N(CL_MEM_COPY_OVERLAP)
    N(CL_IMAGE_FORMAT_MISMATCH)
    N(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    N(CL_BUILD_PROGRAM_FAILURE)
    N(CL_MAP_FAILURE)
    N(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    N(CL_COMPILE_PROGRAM_FAILURE)
    N(CL_LINKER_NOT_AVAILABLE)
    N(CL_LINK_PROGRAM_FAILURE)
    N(CL_DEVICE_PARTITION_FAILED)
    N(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    N(CL_INVALID_VALUE)
    N(CL_INVALID_DEVICE_TYPE)
    N(CL_INVALID_PLATFORM)
    N(CL_INVALID_DEVICE)
    N(CL_INVALID_CONTEXT)
    N(CL_INVALID_QUEUE_PROPERTIES)
    N(CL_INVALID_COMMAND_QUEUE)
    N(CL_INVALID_HOST_PTR)
    N(CL_INVALID_MEM_OBJECT)
    N(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    N(CL_INVALID_IMAGE_SIZE)
    N(CL_INVALID_SAMPLER)
    N(CL_INVALID_BINARY)
    N(CL_INVALID_BUILD_OPTIONS)
    N(CL_INVALID_PROGRAM)
    N(CL_INVALID_PROGRAM_EXECUTABLE)
    N(CL_INVALID_KERNEL_NAME)
    N(CL_INVALID_KERNEL_DEFINITION)
    N(CL_INVALID_KERNEL)
    N(CL_INVALID_ARG_INDEX)
    N(CL_INVALID_ARG_VALUE)
    N(CL_INVALID_ARG_SIZE)
    N(CL_INVALID_KERNEL_ARGS)
    N(CL_INVALID_WORK_DIMENSION)
    N(CL_INVALID_WORK_GROUP_SIZE)
    N(CL_INVALID_WORK_ITEM_SIZE)
    N(CL_INVALID_GLOBAL_OFFSET)
    N(CL_INVALID_EVENT_WAIT_LIST)
    N(CL_INVALID_EVENT)
    N(CL_INVALID_OPERATION)
    N(CL_INVALID_GL_OBJECT)
    N(CL_INVALID_BUFFER_SIZE)
    N(CL_INVALID_MIP_LEVEL)
    N(CL_INVALID_GLOBAL_WORK_SIZE)
    N(CL_INVALID_PROPERTY)
    N(CL_INVALID_IMAGE_DESCRIPTOR)
    N(CL_INVALID_COMPILER_OPTIONS)
    N(CL_INVALID_LINKER_OPTIONS)
    N(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef N
    // clang-format on
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "cl_int (unknown)";
    }
}

pclip_status pclip__cl_status(pclip_ctx_t ctx, cl_int err, const char *what) {
    pclip_status st;
    switch (err) {
    case CL_SUCCESS: return PCLIP_STATUS_OK;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_OUT_OF_RESOURCES:
    case CL_OUT_OF_HOST_MEMORY: st = PCLIP_STATUS_OUT_OF_MEMORY; break;
    case CL_DEVICE_NOT_FOUND:
    case CL_DEVICE_NOT_AVAILABLE:
    case CL_COMPILER_NOT_AVAILABLE:
    case CL_LINKER_NOT_AVAILABLE:
    case -1001 /* CL_PLATFORM_NOT_FOUND_KHR */: st = PCLIP_STATUS_BACKEND_UNAVAILABLE; break;
    case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST: st = PCLIP_STATUS_DEVICE_LOST; break;
    case CL_INVALID_BUFFER_SIZE:
    case CL_INVALID_WORK_GROUP_SIZE:
    case CL_INVALID_WORK_ITEM_SIZE:
    case CL_INVALID_GLOBAL_WORK_SIZE: st = PCLIP_STATUS_LIMIT; break;
    case CL_INVALID_BINARY:
    case CL_BUILD_PROGRAM_FAILURE:
    case CL_INVALID_BUILD_OPTIONS: st = PCLIP_STATUS_UNSUPPORTED; break;
    default: st = PCLIP_STATUS_INTERNAL; break;
    }
    return pclip__err(ctx, st, "opencl: %s: %s (%d)", what, pclip__cl_error_name(err), (int)err);
}

pclip_status pclip__cl_check(pclip__cl *s) {
    if (s->lost)
        return pclip__err(s->ctx, PCLIP_STATUS_DEVICE_LOST,
                          "opencl: the device was lost earlier (%s); destroy the backend",
                          s->lost_why);
    return PCLIP_STATUS_OK;
}

pclip_status pclip__cl_lose(pclip__cl *s, cl_int err, const char *what) {
    if (!s->lost) {
        s->lost = true;
        snprintf(s->lost_why, sizeof s->lost_why, "%s: %s", what, pclip__cl_error_name(err));
    }
    return pclip__err(s->ctx, PCLIP_STATUS_DEVICE_LOST,
                      "opencl: %s failed on %s: %s (%d); the device is treated as lost", what,
                      s->dev.name, pclip__cl_error_name(err), (int)err);
}

#define MiB(x) ((unsigned long long)(((x) + (1u << 20) - 1) >> 20))

pclip_status pclip__cl_buffer_create(pclip__cl *s, size_t bytes, cl_mem_flags flags,
                                     const void *host, const char *what, cl_mem *out) {
    *out = NULL;
    if (bytes == 0) bytes = 4;
    if (bytes > s->dev.max_alloc)
        return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                          "opencl: %s needs one buffer of %llu MiB, more than %s allows "
                          "(CL_DEVICE_MAX_MEM_ALLOC_SIZE %llu MiB); use a smaller batch",
                          what, MiB(bytes), s->dev.name, MiB(s->dev.max_alloc));
    if (s->test_max_alloc && bytes > s->test_max_alloc)
        return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "opencl: clCreateBuffer: CL_MEM_OBJECT_ALLOCATION_FAILURE: out of device "
                          "memory (need %llu MiB for %s; PORTCLIP_CL_MAX_ALLOC_MIB allows %llu MiB)",
                          MiB(bytes), what, MiB(s->test_max_alloc));
    cl_int err = CL_SUCCESS;
    cl_mem m = s->cl->clCreateBuffer(s->context, flags | (host ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                                     (void *)(uintptr_t)host, &err);
    if (err != CL_SUCCESS || !m) {
        if (m) s->cl->clReleaseMemObject(m);
        pclip_status st = pclip__cl_status(s->ctx, err ? err : CL_OUT_OF_RESOURCES, "clCreateBuffer");
        return pclip__err(s->ctx, st,
                          "opencl: clCreateBuffer: %s: could not allocate %llu MiB for %s on %s "
                          "(global memory %llu MiB)",
                          pclip__cl_error_name(err), MiB(bytes), what, s->dev.name,
                          MiB(s->dev.global_mem));
    }
    *out = m;
    return PCLIP_STATUS_OK;
}

/* ---- the loader ---- */

static pthread_mutex_t loader_lock = PTHREAD_MUTEX_INITIALIZER;
static pclip__cl_api loader_api;
static bool loader_ready;
static char loader_failure[384];

/* Opens the ICD loader (PORTCLIP_CL_LOADER names another file, for tests)
 * and resolves every entry point we use, once per process. */
static pclip_status loader_init(pclip_ctx_t ctx, const pclip__cl_api **out) {
    pclip_status st = PCLIP_STATUS_OK;
    pthread_mutex_lock(&loader_lock);
    if (!loader_ready && !loader_failure[0]) {
        const char *name = getenv("PORTCLIP_CL_LOADER");
        if (!name || !*name) name = "libOpenCL.so.1";
        /* kept open for the life of the process: the pointers live in it */
        void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char *why = dlerror();
            snprintf(loader_failure, sizeof loader_failure,
                     "opencl: no OpenCL ICD loader (%s) found: %s (Debian: ocl-icd-libopencl1)",
                     name, why ? why : "dlopen failed");
        } else {
            pclip__cl_api api;
            const char *missing = NULL;
#define PCLIP__X_CL_LOAD(fn)                                                                       \
    *(void **)&api.fn = dlsym(lib, #fn);                                                           \
    if (!api.fn && !missing) missing = #fn;
            PCLIP__CL_FUNCTIONS(PCLIP__X_CL_LOAD)
#undef PCLIP__X_CL_LOAD
            if (missing) {
                snprintf(loader_failure, sizeof loader_failure,
                         "opencl: the OpenCL ICD loader (%s) lacks %s (OpenCL 1.2 needed)", name,
                         missing);
                dlclose(lib);
            } else {
                loader_api = api;
                loader_ready = true;
            }
        }
    }
    if (!loader_ready) st = pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE, "%s", loader_failure);
    pthread_mutex_unlock(&loader_lock);
    *out = &loader_api;
    return st;
}

/* ---- platforms and devices ---- */

#define MAX_PLATFORMS 8
#define MAX_DEVICES 16

static void info_str(const pclip__cl_api *cl, cl_device_id d, cl_device_info what, char *buf,
                     size_t n) {
    char tmp[1024] = "";
    if (cl->clGetDeviceInfo(d, what, sizeof tmp - 1, tmp, NULL) != CL_SUCCESS) tmp[0] = '\0';
    tmp[sizeof tmp - 1] = '\0';
    snprintf(buf, n, "%s", tmp);
    /* drivers pad some strings with spaces */
    size_t len = strlen(buf);
    while (len && buf[len - 1] == ' ') buf[--len] = '\0';
}

/* Every device of every platform, in the loader's order. */
static pclip_status devices_enumerate(pclip_ctx_t ctx, const pclip__cl_api *cl, pclip__cl_dev *out,
                                      int32_t *count) {
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    cl_int err = cl->clGetPlatformIDs(MAX_PLATFORMS, plats, &np);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0))
        return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                          "opencl: no OpenCL platform (driver) found (clGetPlatformIDs: "
                          "CL_PLATFORM_NOT_FOUND_KHR; check the ICD files in "
                          "/etc/OpenCL/vendors or OCL_ICD_VENDORS)");
    if (err != CL_SUCCESS) return pclip__cl_status(ctx, err, "clGetPlatformIDs");
    if (np > MAX_PLATFORMS) np = MAX_PLATFORMS;
    int32_t k = 0;
    for (cl_uint p = 0; p < np && k < MAX_DEVICES; p++) {
        cl_device_id ids[MAX_DEVICES];
        cl_uint nd = 0;
        err = cl->clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, ids, &nd);
        if (err == CL_DEVICE_NOT_FOUND) continue;
        if (err != CL_SUCCESS) return pclip__cl_status(ctx, err, "clGetDeviceIDs");
        if (nd > MAX_DEVICES) nd = MAX_DEVICES;
        char pname[128] = "";
        if (cl->clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL))
            pname[0] = '\0';
        pname[sizeof pname - 1] = '\0';
        for (cl_uint i = 0; i < nd && k < MAX_DEVICES; i++) {
            pclip__cl_dev *d = &out[k];
            memset(d, 0, sizeof *d);
            d->platform = plats[p];
            d->id = ids[i];
            snprintf(d->platform_name, sizeof d->platform_name, "%s", pname);
            info_str(cl, ids[i], CL_DEVICE_NAME, d->name, sizeof d->name);
            info_str(cl, ids[i], CL_DEVICE_VENDOR, d->vendor, sizeof d->vendor);
            info_str(cl, ids[i], CL_DRIVER_VERSION, d->driver, sizeof d->driver);
            info_str(cl, ids[i], CL_DEVICE_VERSION, d->version, sizeof d->version);
            info_str(cl, ids[i], CL_DEVICE_OPENCL_C_VERSION, d->c_version, sizeof d->c_version);
            cl_device_fp_config fp = 0;
            cl_bool avail = CL_FALSE, compiler = CL_FALSE;
            if (cl->clGetDeviceInfo(ids[i], CL_DEVICE_TYPE, sizeof d->type, &d->type, NULL) ||
                cl->clGetDeviceInfo(ids[i], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof d->compute_units,
                                    &d->compute_units, NULL) ||
                cl->clGetDeviceInfo(ids[i], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof d->global_mem,
                                    &d->global_mem, NULL) ||
                cl->clGetDeviceInfo(ids[i], CL_DEVICE_LOCAL_MEM_SIZE, sizeof d->local_mem,
                                    &d->local_mem, NULL) ||
                cl->clGetDeviceInfo(ids[i], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof d->max_alloc,
                                    &d->max_alloc, NULL) ||
                cl->clGetDeviceInfo(ids[i], CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d->max_wg,
                                    &d->max_wg, NULL) ||
                cl->clGetDeviceInfo(ids[i], CL_DEVICE_AVAILABLE, sizeof avail, &avail, NULL) ||
                cl->clGetDeviceInfo(ids[i], CL_DEVICE_COMPILER_AVAILABLE, sizeof compiler,
                                    &compiler, NULL))
                continue; /* a device that cannot describe itself is not listed */
            if (!avail || !compiler) continue; /* nothing could run on it */
            if (cl->clGetDeviceInfo(ids[i], CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT,
                                    sizeof d->float_width, &d->float_width, NULL))
                d->float_width = 4;
            cl_bool unified = CL_FALSE;
            if (!cl->clGetDeviceInfo(ids[i], CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified,
                                     &unified, NULL))
                d->unified_memory = unified == CL_TRUE;
            if (!cl->clGetDeviceInfo(ids[i], CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL))
                d->correct_div_sqrt = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
            k++;
        }
    }
    if (k == 0)
        return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                          "opencl: no usable OpenCL device found (%u platform%s)", np,
                          np == 1 ? "" : "s");
    *count = k;
    return PCLIP_STATUS_OK;
}

static const char *type_name(const pclip__cl_dev *d) {
    if (d->type & CL_DEVICE_TYPE_CPU) return "cpu";
    if (d->type & CL_DEVICE_TYPE_GPU) return d->unified_memory ? "integrated-gpu" : "discrete-gpu";
    return "other"; /* accelerators and custom devices */
}

static void info_fill(const pclip__cl_dev *c, pclip__device_info *d) {
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", c->name);
    snprintf(d->vendor, sizeof d->vendor, "%s", c->vendor);
    snprintf(d->type, sizeof d->type, "%s", type_name(c));
    snprintf(d->driver, sizeof d->driver, "%s %s", c->platform_name, c->driver);
    snprintf(d->api_version, sizeof d->api_version, "%s", c->version);
    d->memory_bytes = c->global_mem;
    snprintf(d->features, sizeof d->features,
             "%s, compute-units=%u local-memory=%lluKiB max-alloc=%lluMiB max-work-group=%zu",
             c->c_version, c->compute_units, (unsigned long long)(c->local_mem >> 10),
             (unsigned long long)(c->max_alloc >> 20), c->max_wg);
    /* a CPU implementation (PoCL and the like): `auto` skips it */
    d->software = (c->type & CL_DEVICE_TYPE_CPU) != 0;
}

pclip_status pclip__cl_list_devices(pclip_ctx_t ctx, pclip__device_info *out, int32_t max,
                                    int32_t *count) {
    const pclip__cl_api *cl;
    pclip_status st = loader_init(ctx, &cl);
    if (st) return st;
    pclip__cl_dev *devs = pclip__calloc(MAX_DEVICES, sizeof *devs);
    if (!devs) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
    int32_t n = 0;
    st = devices_enumerate(ctx, cl, devs, &n);
    for (int32_t i = 0; !st && i < n && i < max; i++) info_fill(&devs[i], &out[i]);
    if (!st) *count = n;
    pclip__free(devs);
    return st;
}

/* ---- tuning ---- */

static uint32_t pow2_floor(uint64_t x) {
    uint32_t p = 1;
    while ((uint64_t)p * 2 <= x && p < (1u << 30)) p *= 2;
    return p;
}

/* The default tuning for the device, and PORTCLIP_CL_MATMUL_TILE. */
static pclip_status tuning_init(pclip__cl *s) {
    pclip__cl_tuning *t = &s->tune;
    const uint32_t max_ls = pow2_floor(s->dev.max_wg);
    if (s->dev.type & CL_DEVICE_TYPE_CPU)
        /* PoCL and other CPU implementations run a work-group as a loop over
         * its work-items, vectorised across them; local memory is ordinary
         * memory (measured in bench/bench_opencl.c) */
        *t = (pclip__cl_tuning){.elem_ls = 64, .row_ls = 64, 64, 64, 16, 4, 4, .direct = true};
    else
        *t = (pclip__cl_tuning){.elem_ls = 256, .row_ls = 256, 64, 64, 16, 4, 4};
    /* matmul_direct: 4 x 6 outputs per work-item, as wide as the device's
     * preferred vectors (16 floats with AVX-512: 24 accumulators and 10 loads
     * in 32 registers); measured with bench_opencl --shape on PoCL */
    t->md_tm = 4, t->md_tn = 6, t->md_ls = 16;
    t->md_vw = s->dev.float_width >= 16 ? 16 : s->dev.float_width >= 8 ? 8 : 4;
    static const char *const kernel_words[] = {"auto", "tiled", "direct", "swap"};
    int kernels = 0;
    int64_t tile[5], dtile[3];
    bool tile_set = false, dtile_set = false;
    pclip_status st =
        pclip__env_ints(s->ctx, "PORTCLIP_CL_MATMUL_TILE", 5, 1, 1024, tile, &tile_set);
    if (!st) st = pclip__env_ints(s->ctx, "PORTCLIP_CL_DIRECT_TILE", 3, 1, 16, dtile, &dtile_set);
    if (!st) st = pclip__env_choice(s->ctx, "PORTCLIP_CL_KERNELS", kernel_words, 4, 0, &kernels);
    if (st) {
        pclip__err_prefix(s->ctx, "opencl");
        return st;
    }
    if (kernels == 3 || kernels == (t->direct ? 1 : 2)) t->direct = !t->direct;
    if (dtile_set) {
        if (dtile[2] != 4 && dtile[2] != 8 && dtile[2] != 16)
            return pclip__err(s->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "opencl: PORTCLIP_CL_DIRECT_TILE=%lld,%lld,%lld: VW must be 4, 8 "
                              "or 16",
                              (long long)dtile[0], (long long)dtile[1], (long long)dtile[2]);
        t->md_tm = (uint32_t)dtile[0], t->md_tn = (uint32_t)dtile[1], t->md_vw = (uint32_t)dtile[2];
    }
    if (tile_set) {
        const uint32_t bm = (uint32_t)tile[0], bn = (uint32_t)tile[1], bk = (uint32_t)tile[2],
                       tm = (uint32_t)tile[3], tn = (uint32_t)tile[4];
        if (bm % tm || bn % tn || (uint64_t)(bm / tm) * (bn / tn) > max_ls ||
            (uint64_t)bk * (bm + 1 + bn + 1) * 4 > s->dev.local_mem)
            return pclip__err(s->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "opencl: PORTCLIP_CL_MATMUL_TILE=%u,%u,%u,%u,%u: BM and BN must be "
                              "multiples of TM and TN, with (BM/TM) x (BN/TN) at most %u "
                              "work-items and BK x (BM + BN + 2) floats in %llu KiB of local "
                              "memory",
                              bm, bn, bk, tm, tn, max_ls,
                              (unsigned long long)(s->dev.local_mem >> 10));
        t->bm = bm, t->bn = bn, t->bk = bk, t->tm = tm, t->tn = tn;
    }
    if (t->elem_ls > max_ls) t->elem_ls = max_ls;
    if (t->row_ls > max_ls) t->row_ls = max_ls;
    if (t->md_ls > max_ls) t->md_ls = max_ls;
    /* transpose and sum_rows work-groups are ELEM_LS work-items as
     * (TR_TILE or SR_COLS) x the rest: a CPU device runs a work-group as one
     * loop, so it gets whole columns per work-item for sum_rows and small
     * blocks for transpose; a GPU gets 32-wide rows (coalesced) */
    const bool cpu = (s->dev.type & CL_DEVICE_TYPE_CPU) != 0;
    t->tr_tile = cpu ? 16 : 32;
    while (t->tr_tile > t->elem_ls) t->tr_tile /= 2;
    t->sr_cols = cpu || t->elem_ls < 32 ? t->elem_ls : 32;
    while ((t->bm / t->tm) * (t->bn / t->tn) > max_ls && t->bm > t->tm) t->bm /= 2;
    while ((uint64_t)t->bk * (t->bm + 1 + t->bn + 1) * 4 > s->dev.local_mem && t->bk > 1)
        t->bk /= 2;
    if ((t->bm / t->tm) * (t->bn / t->tn) > max_ls)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                          "opencl: %s allows work-groups of %zu work-items, too few for the "
                          "matmul kernel",
                          s->dev.name, s->dev.max_wg);
    return PCLIP_STATUS_OK;
}

/* ---- opening a device ---- */

pclip_status pclip__cl_create(pclip_ctx_t ctx, int32_t device, void **out) {
    pclip__cl *s = pclip__calloc(1, sizeof *s);
    if (!s) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
    s->ctx = ctx;
    int64_t max_alloc_mib = 0, cache = 1;
    pclip_status st =
        pclip__env_int(ctx, "PORTCLIP_CL_MAX_ALLOC_MIB", 0, 1 << 24, 0, &max_alloc_mib);
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_CL_CACHE", 0, 1, 1, &cache);
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_CL_FAIL_RUN", 0, 1 << 30, 0, &s->test_fail_run);
    if (st) pclip__err_prefix(ctx, "opencl");
    s->test_max_alloc = (uint64_t)max_alloc_mib << 20;
    s->cache_on = cache == 1;
    pclip__cl_dev *devs = st ? NULL : pclip__calloc(MAX_DEVICES, sizeof *devs);
    int32_t n = 0;
    if (!st && !devs) st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
    if (!st) st = loader_init(ctx, &s->cl);
    if (!st) st = devices_enumerate(ctx, s->cl, devs, &n);
    if (!st && (device < 0 || device >= n))
        st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                        "opencl: device %d does not exist (%d device%s)", device, n,
                        n == 1 ? "" : "s");
    if (!st) s->dev = devs[device];
    pclip__free(devs);
    if (!st) st = tuning_init(s);
    cl_int err = CL_SUCCESS;
    if (!st) {
        cl_context_properties props[3] = {CL_CONTEXT_PLATFORM,
                                          (cl_context_properties)s->dev.platform, 0};
        s->context = s->cl->clCreateContext(props, 1, &s->dev.id, NULL, NULL, &err);
        if (err != CL_SUCCESS || !s->context) {
            s->context = NULL;
            st = pclip__cl_status(ctx, err ? err : CL_OUT_OF_RESOURCES, "clCreateContext");
        }
    }
    if (!st) {
        /* in order: every command sees the results of the ones before it */
        s->queue = s->cl->clCreateCommandQueue(s->context, s->dev.id, 0, &err);
        if (err != CL_SUCCESS || !s->queue) {
            s->queue = NULL;
            st = pclip__cl_status(ctx, err ? err : CL_OUT_OF_RESOURCES, "clCreateCommandQueue");
        }
    }
    if (!st)
        st = pclip__cl_buffer_create(s, 256, CL_MEM_READ_WRITE, NULL, "a placeholder argument",
                                     &s->dummy);
    if (st) {
        pclip__err_kept kept;
        pclip__err_keep(ctx, &kept);
        pclip__cl_destroy(s);
        pclip__err_restore(ctx, &kept);
        return st;
    }
    *out = s;
    return PCLIP_STATUS_OK;
}

void pclip__cl_destroy(void *state) {
    pclip__cl *s = state;
    if (!s) return;
    if (s->queue) s->cl->clFinish(s->queue); /* nothing is released while in use */
    /* normally empty: every exec releases its weights first */
    for (int32_t i = 0; i < s->n_weights; i++) {
        s->cl->clReleaseMemObject(s->weights[i]->buf);
        pclip__free(s->weights[i]);
    }
    pclip__free(s->weights);
    if (s->dummy) s->cl->clReleaseMemObject(s->dummy);
    if (s->program) s->cl->clReleaseProgram(s->program);
    if (s->queue) s->cl->clReleaseCommandQueue(s->queue);
    if (s->context) s->cl->clReleaseContext(s->context);
    pclip__free(s);
}
