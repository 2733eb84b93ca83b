/* The backend interface and the layer every backend shares.
 *
 * Each backend (backends/cpu, backends/vulkan, backends/opencl) fills one
 * versioned table of function pointers with C11 designated initializers. A
 * backend knows graphs and ops, nothing of CLIP, and only allocates, uploads,
 * records and runs: everything else is written once, here and in exec.c:
 *   - the compile plan (pclip__exec_plan): which ops run (side effects kept,
 *     unread results pruned), where each tensor's bytes are (weight, param,
 *     arena), the inputs and outputs with one staging layout, the work of
 *     each op, and every check of the planner's layout;
 *   - argument checks of every call (the tensor belongs to this graph, is an
 *     input, is an output, the param lives on this backend);
 *   - sticky failure: once a backend call reports DEVICE_LOST, every later
 *     call on that backend fails with the first reason (destroy works);
 *   - clean-up that keeps the first error's text.
 *
 * Life cycle: list_devices (no side effects) -> create(device) ->
 * compile(plan) -> write_input / run / read_output, many times ->
 * release(exec) -> destroy.
 *
 * The resident-weight cache, the one contract every backend keeps for the
 * plan's WEIGHT tensors (pclip__exec_plan.weights):
 *   - a weight is made resident (uploaded, or packed into the layout the
 *     device prefers) once per backend instance, keyed by its host bytes
 *     (pointer and size, plus the layout when a backend packs), and shared
 *     by every graph compiled there that reads the same bytes;
 *   - entries are counted and freed with the last exec that uses them, so a
 *     later model whose weights reuse the same addresses never sees stale
 *     data;
 *   - host weight data (data_mapped: the checkpoint's private copy) stays
 *     valid and unchanged while the model lives, and nothing is given back:
 *     a later graph may read it again (the file itself is never re-read);
 *   - PARAM tensors never go through it: a param is the backend's own
 *     mutable copy (the param entries), so a head initialised from a
 *     checkpoint weight never changes the weight the encoders read.
 * The CPU's cache is in backends/cpu/cpu_dnnl.c (packed oneDNN layouts), the
 * Vulkan one in backends/vulkan/vk_memory.c (device blocks). */
#ifndef PCLIP_BACKEND_H
#define PCLIP_BACKEND_H

#include "graph/graph.h"

#define PCLIP__BACKEND_VERSION 2

/* A device as a backend describes it: the public pclip_device_desc. The
 * backend fills name, vendor, type ("cpu", "discrete-gpu",
 * "integrated-gpu", "virtual-gpu", "other"), driver, api_version,
 * memory_bytes (largest device-local heap, or system memory for the CPU),
 * subgroup_size, features (space-separated) and software (1 for a CPU
 * implementation such as lavapipe or PoCL, which `auto` skips); core fills
 * backend, index, usable and why. */
typedef pclip_device_desc pclip__device_info;

/* ---- the compile plan ---- */

/* One op that runs, in execution order. */
typedef struct pclip__plan_node {
    const pclip__tensor *t; /* the op's result; t->src[0..n_src) its sources */
    double flops;           /* work estimate (for timeouts and reports) */
} pclip__plan_node;

/* What a backend compiles: built by core from a planned graph, checked, and
 * valid until the exec is released. A tensor's bytes are found with
 * pclip__storage(t): a WEIGHT's host data, a PARAM's handle, or `offset` in
 * the arena. */
typedef struct pclip__exec_plan {
    const pclip__graph *g;
    const pclip__plan_node *nodes; /* the ops that run */
    int32_t n_nodes;
    const bool *live;       /* [n_tensors]: read by an op that runs, or an output */
    size_t arena_bytes;     /* = g->arena_bytes */
    /* Staging layout, the same on every backend: every input, then every
     * output, each at a 64-byte aligned offset. */
    const pclip__tensor *const *inputs; /* storage tensors (never views) */
    int32_t n_inputs;
    const pclip__tensor *const *outputs; /* as marked (may be views) */
    int32_t n_outputs;
    const size_t *io_offset; /* [n_tensors]: staging offset of an input or output; SIZE_MAX */
    size_t io_bytes;
    const pclip__tensor *const *weights; /* storage tensors of the weights that live ops read */
    int32_t n_weights;
    const pclip__tensor *const *params; /* storage tensors of the params that live ops use */
    int32_t n_params;
    double flops; /* sum over nodes */
    /* The backend's precision when compiled (pclip_backend_set_precision):
     * FP32 unless the backend's precision_check accepted another. */
    pclip_precision precision;
} pclip__exec_plan;

/* Work of one op: multiply-adds count 2. */
double pclip__op_flops(const pclip__tensor *t);

/* ---- the table ---- */

typedef struct pclip__backend_ops {
    int32_t version; /* PCLIP__BACKEND_VERSION */
    const char *name;

    /* Fills up to `max` entries and sets *count to the number of devices.
     * When the API itself is missing (no loader, no driver) it returns
     * BACKEND_UNAVAILABLE with the reason in the context. */
    pclip_status (*list_devices)(pclip_ctx_t ctx, pclip__device_info *out, int32_t max,
                                 int32_t *count);
    pclip_status (*create)(pclip_ctx_t ctx, int32_t device, void **state);
    void (*destroy)(void *state);

    /* Prepares a checked plan: arena, weights, pipelines. On failure *exec
     * may hold what was made so far; core releases it (keeping the error). */
    pclip_status (*compile)(void *state, const pclip__exec_plan *plan, void **exec);
    /* t: an input of the plan (a storage tensor); data: t->nbytes bytes. */
    pclip_status (*write_input)(void *exec, const pclip__tensor *t, const void *data);
    pclip_status (*run)(void *exec);
    /* t: an output of the plan (possibly a view); data: t->nbytes bytes. */
    pclip_status (*read_output)(void *exec, const pclip__tensor *t, void *data);
    void (*release)(void *exec);

    /* PARAM storage: `bytes` bytes resident on the device, zero-filled,
     * written and read whole. */
    pclip_status (*param_create)(void *state, size_t bytes, void **handle);
    pclip_status (*param_write)(void *state, void *handle, const void *data, size_t bytes);
    pclip_status (*param_read)(void *state, void *handle, void *data, size_t bytes);
    void (*param_destroy)(void *state, void *handle);

    /* Optional (NULL: every op is supported). Whether the backend can run
     * op t; compile is refused for a plan with an op it cannot run. */
    bool (*supports_op)(void *state, const pclip__tensor *t);
    /* Optional (NULL: not supported). Copy the whole arena (arena_bytes)
     * from or to the device, for the guard-byte checks of the parity tests. */
    pclip_status (*arena_read)(void *exec, void *data);
    pclip_status (*arena_write)(void *exec, const void *data);
    /* Optional (NULL: FP32 only). OK when this device can compile graphs at
     * precision p (plan->precision), else UNSUPPORTED saying what is missing.
     * list_devices reports the same in precisions / precision_why (core
     * writes "fp32" there when a backend leaves them empty). */
    pclip_status (*precision_check)(void *state, pclip_precision p);
} pclip__backend_ops;

extern const pclip__backend_ops pclip__cpu_backend_ops;

/* Something that keeps compiled graphs on a backend (an exec cache,
 * graph/exec_cache.h): told to drop them before the backend goes away. */
typedef struct pclip__backend_user {
    void *owner;
    void (*drop)(void *owner, struct pclip_backend *b);
} pclip__backend_user;

#define PCLIP__MAX_BACKEND_USERS 16

/* The public pclip_backend_t. */
struct pclip_backend {
    pclip_ctx_t ctx;
    const pclip__backend_ops *ops;
    void *state;
    int32_t device;
    pclip__device_info info;
    pclip_precision precision; /* of graphs compiled from now on */
    char fallback_reason[512]; /* why `auto` did not pick a GPU */
    pclip__backend_user users[PCLIP__MAX_BACKEND_USERS];
    int32_t n_users;
    /* sticky: the first DEVICE_LOST; every later call fails with it */
    pclip_status failed;
    char failed_why[512];
};

/* Registers `owner` (once); LIMIT when the table is full. */
pclip_status pclip__backend_add_user(struct pclip_backend *b, void *owner,
                                     void (*drop)(void *owner, struct pclip_backend *b));
void pclip__backend_remove_user(struct pclip_backend *b, void *owner);

/* ---- compiled graphs (exec.c) ---- */

typedef struct pclip__exec {
    struct pclip_backend *backend;
    pclip__graph *graph; /* borrowed */
    pclip__exec_plan plan;
    void *state;
} pclip__exec;

/* Plans g (if needed), builds and checks the compile plan, and compiles it
 * on b. The graph and every param it uses must outlive the exec. */
pclip_status pclip__exec_create(struct pclip_backend *b, pclip__graph *g, pclip__exec **out);
void pclip__exec_destroy(pclip__exec *e);
/* t: an input of this graph (or a view of one). */
pclip_status pclip__exec_write(pclip__exec *e, const pclip__tensor *t, const void *data);
pclip_status pclip__exec_run(pclip__exec *e);
/* t: an output of this graph. */
pclip_status pclip__exec_read(pclip__exec *e, const pclip__tensor *t, void *data);
/* The arena, for guard-byte checks; UNSUPPORTED when the backend has no such entry. */
pclip_status pclip__exec_arena_read(pclip__exec *e, void *data);
pclip_status pclip__exec_arena_write(pclip__exec *e, const void *data);

/* ---- params ---- */

/* A zero-filled PARAM of shape ne on b. The name is copied. */
pclip_status pclip__param_create(struct pclip_backend *b, const char *name, int32_t ndim,
                                 const int64_t *ne, pclip__param **out);
void pclip__param_destroy(pclip__param *p);
/* Whole-tensor copies from and to the host (p->nbytes bytes). */
pclip_status pclip__param_write(pclip__param *p, const float *data);
pclip_status pclip__param_read(pclip__param *p, float *data);

/* Checks the sticky failure of b: OK, or the first DEVICE_LOST again. */
pclip_status pclip__backend_check(struct pclip_backend *b);

#endif
