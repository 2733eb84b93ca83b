/* The OpenCL backend's private interface, shared by its files: the entry
 * points of the ICD loader, the backend state (one device, one context, one
 * in-order queue, the program), the kernel tuning, and the weight cache.
 *
 *   cl_device.c   the loader (libOpenCL.so.1, opened with dlopen), cl_int ->
 *                 pclip_status, platforms and devices, open/close
 *   cl_program.c  the program: built from the embedded sources at the first
 *                 compile, with the binary cache on disk
 *   cl_exec.c     weights (the resident-weight cache), params, compiled
 *                 graphs (a kernel object per op with its arguments set
 *                 once), run, I/O; and the backend's function table
 *
 * OpenCL 1.2 is the baseline: nothing newer is called. A backend instance is
 * used by one thread at a time, like the context it reports to.
 *
 * Environment, read when a device is opened through the core's strict reader
 * (a value it does not accept fails the open, naming the variable):
 *
 *   variable                     value            effect
 *   PORTCLIP_CL_LOADER           path             another ICD loader than libOpenCL.so.1 (tests)
 *   PORTCLIP_CL_CACHE            0|1              the program binary cache (default 1)
 *   PORTCLIP_CL_MAX_ALLOC_MIB    n                buffers above n MiB fail as the driver's
 *                                                 CL_MEM_OBJECT_ALLOCATION_FAILURE would
 *                                                 (tests; 0: off)
 *   PORTCLIP_CL_MATMUL_TILE      BM,BN,BK,TM,TN   the tiled matmul's block and per-work-item tile
 *   PORTCLIP_CL_DIRECT_TILE      TM,TN,VW         matmul_direct's rows, columns and vector width
 *                                                 (VW 4, 8 or 16)
 *   PORTCLIP_CL_KERNELS          auto|tiled|direct|swap  the matmul kernel for b [N, K]:
 *                                                 local-memory tiled (GPUs) or direct (CPU
 *                                                 implementations); swap: the one this device
 *                                                 would not get
 *   PORTCLIP_CL_FAIL_RUN         n                the n-th run's final wait fails as a driver's
 *                                                 does when the device is lost (tests; 0: off)
 *   PORTCLIP_CL_BUILD_OPTIONS    text             appended to the program's build options
 *                                                 (tests: a bad option fails the build)
 *
 * The cache lives in $XDG_CACHE_HOME/portclip (else $HOME/.cache/portclip).
 * Nothing here is seen outside backends/opencl/ except by tests that look
 * inside the backend (tests/check_opencl.c). */
#ifndef PCLIP_CL_H
#define PCLIP_CL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "cl_kernels.h"
#include "graph/backend.h"

/* ---- the loader's entry points (OpenCL 1.2) ---- */

#define PCLIP__CL_FUNCTIONS(X)                                                                     \
    X(clGetPlatformIDs)                                                                            \
    X(clGetPlatformInfo)                                                                           \
    X(clGetDeviceIDs)                                                                              \
    X(clGetDeviceInfo)                                                                             \
    X(clCreateContext)                                                                             \
    X(clReleaseContext)                                                                            \
    X(clCreateCommandQueue)                                                                        \
    X(clReleaseCommandQueue)                                                                       \
    X(clCreateBuffer)                                                                              \
    X(clReleaseMemObject)                                                                          \
    X(clCreateProgramWithSource)                                                                   \
    X(clCreateProgramWithBinary)                                                                   \
    X(clBuildProgram)                                                                              \
    X(clGetProgramBuildInfo)                                                                       \
    X(clGetProgramInfo)                                                                            \
    X(clReleaseProgram)                                                                            \
    X(clCreateKernel)                                                                              \
    X(clReleaseKernel)                                                                             \
    X(clSetKernelArg)                                                                              \
    X(clGetKernelWorkGroupInfo)                                                                    \
    X(clEnqueueNDRangeKernel)                                                                      \
    X(clEnqueueWriteBuffer)                                                                        \
    X(clEnqueueReadBuffer)                                                                         \
    X(clEnqueueCopyBuffer)                                                                         \
    X(clEnqueueFillBuffer)                                                                         \
    X(clFlush)                                                                                     \
    X(clFinish)

typedef struct pclip__cl_api {
#define PCLIP__X_CL_FN(name) __typeof__(&name) name;
    PCLIP__CL_FUNCTIONS(PCLIP__X_CL_FN)
#undef PCLIP__X_CL_FN
} pclip__cl_api;

/* ---- kernel tuning, chosen per device at open ---- */

typedef struct pclip__cl_tuning {
    uint32_t elem_ls; /* elementwise and data-movement ops (ELEM_LS) */
    uint32_t row_ls;  /* layer_norm, softmax, l2_norm, attention: a power of two (ROW_LS) */
    uint32_t bm, bn, bk, tm, tn; /* matmul (MM_*): work-group (bm / tm) * (bn / tn) */
    bool direct;                 /* matmul_direct for b [N, K] (CPU devices) */
    uint32_t md_tm, md_tn, md_vw, md_ls; /* matmul_direct (MD_*) */
    uint32_t tr_tile; /* transpose: TR_TILE x TR_TILE blocks, TR_TILE <= elem_ls */
    uint32_t sr_cols; /* sum_rows: SR_COLS columns per work-group, SR_COLS <= elem_ls */
} pclip__cl_tuning;

/* ---- a device as found ---- */

typedef struct pclip__cl_dev {
    cl_platform_id platform;
    cl_device_id id;
    cl_device_type type;
    char platform_name[128];
    char name[128], vendor[64], driver[64], version[64], c_version[64];
    cl_uint compute_units;
    cl_ulong global_mem, local_mem, max_alloc;
    size_t max_wg;
    cl_uint float_width; /* CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT */
    bool correct_div_sqrt; /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT */
    bool unified_memory;   /* CL_DEVICE_HOST_UNIFIED_MEMORY: an integrated GPU */
} pclip__cl_dev;

/* ---- the weight cache ---- */

/* A weight resident on the device: the host bytes [host, host + bytes) in
 * its own buffer. Shared by every graph compiled on the backend that reads
 * those bytes (or a 4-byte aligned sub-range of them); freed with its last
 * user. */
typedef struct pclip__cl_weight {
    const uint8_t *host;
    size_t bytes;
    cl_mem buf;
    int32_t refs;
} pclip__cl_weight;

/* ---- the backend state ---- */

typedef struct pclip__cl {
    pclip_ctx_t ctx;
    const pclip__cl_api *cl;
    pclip__cl_dev dev;
    cl_context context;
    cl_command_queue queue; /* the one in-order queue */
    cl_program program;     /* built at the first compile */
    cl_mem dummy;           /* passed where an op has no source */
    pclip__cl_tuning tune;
    uint64_t test_max_alloc; /* PORTCLIP_CL_MAX_ALLOC_MIB (tests) */
    int64_t test_fail_run;   /* PORTCLIP_CL_FAIL_RUN (tests): runs left before one fails */
    bool cache_on;           /* PORTCLIP_CL_CACHE */
    char cache_note[256];    /* how the program was obtained (tests, bench) */
    double build_seconds;    /* of the program (bench) */
    pclip__cl_weight **weights;
    int32_t n_weights, cap_weights;
    bool lost; /* sticky: every later call fails */
    char lost_why[256];
} pclip__cl;

/* ---- cl_device.c ---- */

pclip_status pclip__cl_list_devices(pclip_ctx_t ctx, pclip__device_info *out, int32_t max,
                                    int32_t *count);
pclip_status pclip__cl_create(pclip_ctx_t ctx, int32_t device, void **out);
void pclip__cl_destroy(void *state);

/* The one mapping from cl_int to pclip_status; records "opencl: <what>:
 * <code name>" in the context. CL_SUCCESS returns OK and records nothing. */
pclip_status pclip__cl_status(pclip_ctx_t ctx, cl_int err, const char *what);
const char *pclip__cl_error_name(cl_int err);
/* Fails (DEVICE_LOST) once the device is lost. */
pclip_status pclip__cl_check(pclip__cl *s);
/* Marks the device lost (a run that failed in the queue) and returns
 * DEVICE_LOST with the message. */
pclip_status pclip__cl_lose(pclip__cl *s, cl_int err, const char *what);
/* A buffer of `bytes` (>= 1) with a clear message naming `what` when the
 * device refuses it (too large for CL_DEVICE_MAX_MEM_ALLOC_SIZE, or out of
 * memory). `host`: initial contents (CL_MEM_COPY_HOST_PTR), or NULL. */
pclip_status pclip__cl_buffer_create(pclip__cl *s, size_t bytes, cl_mem_flags flags,
                                     const void *host, const char *what, cl_mem *out);

/* ---- cl_program.c ---- */

/* Builds s->program (once) from the embedded sources with the tuning's
 * options, or loads it from the binary cache. */
pclip_status pclip__cl_program_get(pclip__cl *s);
/* The cache file for the current device and options ("" when the cache is
 * off or has no folder), for tests. */
pclip_status pclip__cl_cache_path(pclip__cl *s, char *buf, size_t n);

/* ---- test hooks (cl_exec.c) ---- */

/* Weights resident on a backend instance. */
int32_t pclip__cl_weight_count(void *backend_state);
/* How the program was obtained: "built", "cache hit", "cache entry rejected
 * (...), rebuilt", ... */
const char *pclip__cl_cache_note(void *backend_state);

extern const pclip__backend_ops pclip__opencl_backend_ops;

#endif
