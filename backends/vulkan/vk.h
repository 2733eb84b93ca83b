/* The Vulkan backend's private interface, shared by its files: the backend
 * state (one instance, one device, one compute queue), device capabilities,
 * the per-device tuning of the shaders, memory (weight blocks and the weight
 * cache, plain buffers), the pipeline cache and compiled dispatches.
 *
 *   vk_device.c   loader, instance, validation messages, devices, open/close,
 *                 VkResult -> pclip_status, one-shot submissions
 *   vk_memory.c   memory types and allocation (with the test-only limit),
 *                 buffers, weight blocks, the weight cache and its uploads
 *   vk_ops.c      pipelines (created lazily, cached per backend) and one
 *                 "prepare" function per op: variant, specialization
 *                 constants, push constants, workgroup counts
 *   vk_exec.c     compiled graphs: descriptor sets, the recorded command
 *                 buffer with its hazard-tracked barriers, run, I/O; and the
 *                 backend's function table
 *
 * The loader (libvulkan.so.1) is opened at run time through volk, so the
 * library runs on machines without Vulkan. Instance-level entry points are
 * volk's loader trampolines (valid for every instance); device-level ones
 * come from a VolkDeviceTable per device. A backend instance is used by one
 * thread at a time, like the context it reports to.
 *
 * Environment: every PORTCLIP_VK_* variable, read when a device is opened
 * through the core's strict reader (a value it does not accept fails the
 * open, naming the variable; unset or empty means the default):
 *
 *   variable                     value             effect
 *   PORTCLIP_VK_VALIDATION       0|1               the Khronos validation layer, synchronization
 *                                                  validation included; any message it
 *                                                  reports fails the next backend call
 *   PORTCLIP_VK_LOADER           path              another loader than libvulkan.so.1 (tests)
 *   PORTCLIP_VK_MAX_ALLOC_MIB    n                 allocations above n MiB fail as the driver's
 *                                                  out-of-device-memory would (tests; 0: off)
 *   PORTCLIP_VK_MAX_BINDING_MIB  n                 bind at most n MiB per descriptor (tests)
 *   PORTCLIP_VK_TIMEOUT_MS       n                 the run's fence timeout (tests; default 60 s
 *                                                  + 1 ns per flop of the graph, extended up to
 *                                                  10x on a CPU device while it makes progress)
 *   tuning of the shaders (vk_ops.c, pclip__vk_tuning_init):
 *   PORTCLIP_VK_NO_SUBGROUP      0|1               shared-memory reductions only
 *   PORTCLIP_VK_KERNELS          auto|tiled|direct|swap  the matmul and attention kernels:
 *                                                  shared-memory tiled (GPUs) or direct
 *                                                  (CPU implementations); swap: the kind
 *                                                  this device would not get
 *   PORTCLIP_VK_MATMUL_TILE      BM,BN,BK,TM,TN    block and per-invocation tile of the matmul
 *   PORTCLIP_VK_MATMUL_SG_TILE   TM,TN             per-invocation tile of matmul_direct_sg
 *                                                  (TM a multiple of the subgroup size;
 *                                                  ignored where that kernel does not run)
 *   PORTCLIP_VK_ATTN_KT          n                 keys per attention tile (forces the tiled
 *                                                  shared-memory kernel; 0: fit the sequence)
 *   PORTCLIP_VK_ATTN_QR          1..8              query rows per attention_direct invocation
 *   PORTCLIP_VK_FP16_ARITH       0|1               precision fp16: 1 multiplies in fp16
 *                                                  where the device has shaderFloat16; 0 keeps
 *                                                  fp16 to the weights (storage only); default
 *                                                  1 on GPUs, 0 on CPU-type devices
 *   PORTCLIP_VK_FP16_RUN         1..16             products summed in fp16 before each add
 *                                                  into the fp32 accumulator (default 4)
 *
 * Nothing here is seen outside backends/vulkan/ except by tests that look
 * inside the backend (tests/check_vulkan.c). */
#ifndef PCLIP_VK_H
#define PCLIP_VK_H

#include <volk.h>

#include "graph/backend.h"
#include "vk_shaders.h"

/* ---- the descriptor-set layout shared by every pipeline ---- */

#define PCLIP__VK_BINDINGS 7 /* 0..5: the op's sources in order; 6: its result */
#define PCLIP__VK_BINDING_DST 6
_Static_assert(PCLIP__VK_BINDING_DST == PCLIP__MAX_SRC, "a binding per source, then the result");
#define PCLIP__VK_PUSH_BYTES 128 /* the push-constant range: Vulkan's guaranteed minimum */
#define PCLIP__VK_MAX_SPEC 8 /* specialization constants per pipeline; 0 is the workgroup size */

/* ---- device capabilities ---- */

typedef struct pclip__vk_caps {
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem;
    uint32_t api;          /* min(device, instance) API version */
    uint32_t queue_family; /* the first family with compute */
    uint32_t subgroup_size;
    bool subgroup_arith;  /* subgroup arithmetic in compute shaders */
    bool subgroup_ballot; /* subgroupBroadcast in compute shaders */
    bool fp16_arith;   /* shaderFloat16: enabled at open with fp16_storage; the *_f16a
                          matmuls of precision fp16 (fp16 products, fp32 sums) */
    bool fp16_storage; /* storageBuffer16BitAccess: enabled at open, precision fp16 */
    bool coopmat_khr, coopmat_nv;
    bool memory_budget;      /* VK_EXT_memory_budget */
    bool portability_subset; /* VK_KHR_portability_subset must be enabled */
    VkDeviceSize max_alloc;  /* maxMemoryAllocationSize */
    char driver_name[VK_MAX_DRIVER_NAME_SIZE];
    char driver_info[VK_MAX_DRIVER_INFO_SIZE];
} pclip__vk_caps;

/* ---- shader tuning, chosen per device at open ---- */

typedef struct pclip__vk_mm_tile {
    uint32_t bm, bn, bk, tm, tn; /* workgroup size = (bm / tm) * (bn / tn) */
} pclip__vk_mm_tile;

typedef struct pclip__vk_tuning {
    uint32_t elem_ls;        /* elementwise and data-movement ops */
    uint32_t row_ls;         /* layer_norm, softmax, l2_norm: a power of two */
    bool direct;             /* the *_direct matmul and attention (no shared memory), for
                                CPU implementations; else the shared-memory tiled kernels */
    pclip__vk_mm_tile mm;    /* matmul */
    pclip__vk_mm_tile mm_sg; /* matmul_direct_sg<subgroup size> (bn = subgroup size * tn);
                                bm = 0: not used */
    uint32_t attn_ls;        /* attention: a power of two, raised to >= head_dim */
    uint32_t attn_qb;        /* attention: query rows per workgroup, a power of two */
    uint32_t attn_kt;        /* attention: keys per tile; 0 = fit the sequence (fused) */
    uint32_t attn_direct_ls; /* attention_direct: invocations per workgroup */
    uint32_t attn_direct_qr; /* attention_direct: query rows per invocation */
    bool subgroups;          /* the *_sg reduction variants */
    bool fp16_arith;         /* precision fp16 multiplies in fp16 (the *_f16a matmuls):
                                the device has shaderFloat16 and 16-bit storage, and
                                PORTCLIP_VK_FP16_ARITH is 1 (its default on GPUs) */
    uint32_t fp16_run;       /* products per fp16 partial sum of the *_f16a matmuls */
    uint32_t mm_f16a_bk;     /* matmul_f16a's BK: its tiles hold half, so 2 x mm.bk fits
                                the same shared bytes (PORTCLIP_VK_MATMUL_TILE: its BK) */
} pclip__vk_tuning;

/* ---- memory ---- */

typedef struct pclip__vk_buffer {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;
    void *map; /* host-visible buffers: mapped for their whole life */
} pclip__vk_buffer;

typedef struct pclip__vk_range {
    VkDeviceSize off, size;
} pclip__vk_range;

/* One large device-local allocation that weights are sub-allocated from. */
typedef struct pclip__vk_block {
    pclip__vk_buffer b;
    pclip__vk_range *free; /* sorted by offset, coalesced */
    int32_t n_free, cap_free;
} pclip__vk_block;

/* A weight resident on the device: the host bytes [host, host + bytes) at
 * `offset` in `block`, as they are (fp32, i32) or, with `half`, each fp32
 * converted to IEEE half (round to nearest even) at upload, taking bytes / 2
 * on the device: the layout is part of the cache key, so the fp32 and fp16
 * copies of the same bytes are two entries. Shared by every graph compiled
 * on the backend that uses those bytes (or a prefix or aligned sub-range of
 * them) in that layout; freed with its last user, so a later model whose
 * weights reuse the same addresses never sees stale data. */
typedef struct pclip__vk_weight {
    const uint8_t *host;
    size_t bytes; /* host bytes */
    bool half;    /* fp16 on the device (precision fp16, a matmul's b operand) */
    pclip__vk_block *block;
    VkDeviceSize offset, alloc_size;
    int32_t refs;
    bool uploaded;
} pclip__vk_weight;

/* ---- pipelines ---- */

typedef struct pclip__vk_pipeline {
    pclip__vk_shader shader;
    uint32_t spec[PCLIP__VK_MAX_SPEC];
    int32_t n_spec;
    uint32_t local_size; /* = spec[0]: the dispatch code's only copy of the workgroup size */
    VkPipeline pipeline;
} pclip__vk_pipeline;

/* ---- the backend state ---- */

typedef struct pclip__vk {
    pclip_ctx_t ctx;
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger;
    VkPhysicalDevice phys;
    pclip__vk_caps caps;
    VkDevice dev;
    struct VolkDeviceTable vk; /* device-level entry points of `dev` */
    VkQueue queue;
    VkCommandPool pool;
    VkCommandBuffer once_cmd; /* uploads and debug copies */
    VkFence once_fence;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    pclip__vk_buffer dummy; /* bound where an op has no source */
    pclip__vk_tuning tune;
    VkDeviceSize align; /* offsets of bound ranges: the device's minimum, >= 16 */

    pclip__vk_pipeline **pipes; /* pointers: nodes keep them */
    int32_t n_pipes, cap_pipes;
    pclip__vk_block **blocks;
    int32_t n_blocks, cap_blocks;
    pclip__vk_weight **weights;
    int32_t n_weights, cap_weights;

    uint64_t test_max_alloc; /* PORTCLIP_VK_MAX_ALLOC_MIB (tests): larger allocations fail */
    int64_t timeout_ms;      /* PORTCLIP_VK_TIMEOUT_MS (tests); -1: estimated per graph */
    VkDeviceSize max_range;  /* bytes one binding may hold: maxStorageBufferRange, or
                                less with PORTCLIP_VK_MAX_BINDING_MIB (tests) */

    bool lost; /* sticky: every later call fails */
    char lost_why[256];

    /* validation messages, written by the debug callback */
    bool validation;
    int32_t n_messages;
    char message[768];
} pclip__vk;

/* ---- vk_device.c ---- */

/* The table's device entries (see backend.h). */
pclip_status pclip__vk_list_devices(pclip_ctx_t ctx, pclip__device_info *out, int32_t max,
                                    int32_t *count);
pclip_status pclip__vk_create(pclip_ctx_t ctx, int32_t device, void **out);
void pclip__vk_destroy(void *state);
/* The table's precision_check: fp32 always, fp16 with 16-bit storage
 * buffers (weights in fp16; products in fp16 too where the device also has
 * shaderFloat16, see tune.fp16_arith), never bf16. */
pclip_status pclip__vk_precision_check(void *state, pclip_precision p);

/* The one mapping from VkResult to pclip_status; records "vulkan: <what>:
 * <result name>" in the context. VK_ERROR_DEVICE_LOST makes the device lost
 * for good. VK_SUCCESS returns OK and records nothing. */
pclip_status pclip__vk_result(pclip__vk *s, VkResult r, const char *what);
const char *pclip__vk_result_name(VkResult r);
/* Fails (DEVICE_LOST) once the device is lost, and (INTERNAL) when the
 * validation layer has reported something since the last check, with its
 * message. Called at the start and end of every backend entry point. */
pclip_status pclip__vk_check(pclip__vk *s);
/* Records cmd (begun with begin_once) and submits it alone, waiting with a
 * finite timeout. */
pclip_status pclip__vk_begin_once(pclip__vk *s);
pclip_status pclip__vk_submit_once(pclip__vk *s, const char *what);
/* Validation messages seen by every backend instance of this process (tests). */
int32_t pclip__vk_validation_total(void);

/* ---- vk_memory.c ---- */

/* A buffer with its own memory: device-local (host_visible false) or
 * host-visible, coherent and mapped. `what` names it in errors. */
pclip_status pclip__vk_buffer_create(pclip__vk *s, VkDeviceSize size, VkBufferUsageFlags usage,
                                     bool host_visible, const char *what, pclip__vk_buffer *out);
void pclip__vk_buffer_destroy(pclip__vk *s, pclip__vk_buffer *b);
/* Makes every weight of `w` (n tensors of kind WEIGHT) resident, uploading
 * the ones not cached yet; out[i] gets a reference to w[i]'s entry, in fp16
 * where half (NULL: none) has half[i] (an F32 weight). On failure nothing
 * stays acquired. */
pclip_status pclip__vk_weights_acquire(pclip__vk *s, const pclip__tensor *const *w, int32_t n,
                                       const bool *half, pclip__vk_weight **out);
void pclip__vk_weight_release(pclip__vk *s, pclip__vk_weight *w);
/* PARAM storage (the table's param entries): a device-local buffer of its
 * own, zero-filled at creation, copied whole through a staging buffer. */
pclip_status pclip__vk_param_create(void *state, size_t bytes, void **handle);
pclip_status pclip__vk_param_write(void *state, void *handle, const void *data, size_t bytes);
pclip_status pclip__vk_param_read(void *state, void *handle, void *data, size_t bytes);
void pclip__vk_param_destroy(void *state, void *handle);
/* Frees every block and weight (close). */
void pclip__vk_memory_destroy(pclip__vk *s);

/* ---- vk_ops.c ---- */

/* One bound range of a dispatch. */
typedef struct pclip__vk_binding {
    VkBuffer buf;
    VkDeviceSize offset, range;
    bool tracked; /* the arena or a param (written by ops): tracked for hazards */
    bool written; /* the result, or a source the op writes in place */
} pclip__vk_binding;

/* One op of a compiled graph, ready to record. */
typedef struct pclip__vk_node {
    const pclip__tensor *t;
    const pclip__vk_pipeline *pl;
    uint32_t groups[3];
    uint32_t push_bytes;
    uint8_t push[PCLIP__VK_PUSH_BYTES];
    pclip__vk_binding bind[PCLIP__VK_BINDINGS];
    bool half_b; /* matmul: b is a weight resident as fp16 (the *_f16 variants) */
    VkDescriptorSet set;
} pclip__vk_node;

/* Chooses the node's pipeline (created if new), push constants and
 * workgroup counts; the bindings are filled by the caller (gather_rows
 * re-splits its table). */
pclip_status pclip__vk_prepare(pclip__vk *s, pclip__vk_node *n);
/* The pipeline for (shader, spec constants), created on first use. */
pclip_status pclip__vk_pipeline_get(pclip__vk *s, pclip__vk_shader shader, const uint32_t *spec,
                                    int32_t n_spec, const pclip__vk_pipeline **out);
void pclip__vk_pipelines_destroy(pclip__vk *s);
/* The default tuning for the device, and the environment's overrides (the
 * table at the top); INVALID_ARGUMENT naming a variable it cannot use. */
pclip_status pclip__vk_tuning_init(pclip__vk *s);

/* ---- test hooks (vk_exec.c, vk_memory.c) ---- */

/* The barriers recorded in a compiled graph and why each one is there. */
int32_t pclip__vk_exec_barriers(void *exec);
const char *pclip__vk_exec_barrier_reason(void *exec, int32_t i);
/* Weights resident on a backend instance (tests of the cache). */
int32_t pclip__vk_weight_count(void *backend_state);

extern const pclip__backend_ops pclip__vulkan_backend_ops;

#endif
