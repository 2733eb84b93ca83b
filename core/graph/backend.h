/* The backend interface: one versioned table of function pointers that each
 * backend (backends/cpu, backends/vulkan, backends/opencl) fills with C11
 * designated initializers. A backend knows graphs and ops, nothing of CLIP.
 *
 * Life cycle: list_devices (no side effects) -> open(device) -> compile(graph)
 * -> write_input / run / read_output, many times -> release(exec) -> close.
 * Weights are uploaded or packed once per backend instance, keyed by their
 * host pointer, and shared by every graph compiled on it. */
#ifndef PCLIP_BACKEND_H
#define PCLIP_BACKEND_H

#include "graph/graph.h"

#define PCLIP__BACKEND_VERSION 1

typedef struct pclip__device_info {
    char name[128];
    char vendor[64];
    char type[32];        /* "cpu", "discrete-gpu", "integrated-gpu", "virtual-gpu", "other" */
    char driver[128];     /* driver name and version */
    char api_version[32];
    uint64_t memory_bytes; /* largest device-local heap, or system memory for the CPU */
    int32_t subgroup_size;
    char features[256];   /* space-separated optional features */
    bool software;        /* a CPU implementation (lavapipe, PoCL): `auto` skips it */
} pclip__device_info;

typedef struct pclip__backend_ops {
    int32_t version; /* PCLIP__BACKEND_VERSION */
    const char *name;

    /* Fills up to `max` entries and sets *count to the number of devices.
     * When the API itself is missing (no loader, no driver) it returns
     * BACKEND_UNAVAILABLE with the reason in the context. */
    pclip_status (*list_devices)(pclip_ctx_t ctx, pclip__device_info *out, int32_t max,
                                 int32_t *count);
    pclip_status (*open)(pclip_ctx_t ctx, int32_t device, void **state);
    void (*close)(void *state);

    /* Prepares a planned graph (pclip__graph_plan done): arena, weights,
     * pipelines. The graph must outlive the exec. */
    pclip_status (*compile)(void *state, const pclip__graph *g, void **exec);
    pclip_status (*write_input)(void *exec, const pclip__tensor *t, const void *data);
    pclip_status (*run)(void *exec);
    pclip_status (*read_output)(void *exec, const pclip__tensor *t, void *data);
    void (*release)(void *exec);

    /* Optional (NULL: not supported). Copies the whole arena (arena_bytes)
     * from or to the device, for the guard-byte checks of the parity tests. */
    pclip_status (*debug_arena)(void *exec, void *data, bool write);
} pclip__backend_ops;

extern const pclip__backend_ops pclip__cpu_backend_ops;

/* Something that keeps compiled graphs on a backend (a model's encoder
 * cache): told to drop them before the backend goes away. */
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
    char fallback_reason[512]; /* why `auto` did not pick a GPU */
    pclip__backend_user users[PCLIP__MAX_BACKEND_USERS];
    int32_t n_users;
};

/* Registers `owner` (once); LIMIT when the table is full. */
pclip_status pclip__backend_add_user(struct pclip_backend *b, void *owner,
                                     void (*drop)(void *owner, struct pclip_backend *b));
void pclip__backend_remove_user(struct pclip_backend *b, void *owner);

/* A graph compiled on a backend. */
typedef struct pclip__exec {
    struct pclip_backend *backend;
    pclip__graph *graph; /* borrowed */
    void *state;
} pclip__exec;

pclip_status pclip__exec_create(struct pclip_backend *b, pclip__graph *g, pclip__exec **out);
void pclip__exec_destroy(pclip__exec *e);
pclip_status pclip__exec_write(pclip__exec *e, const pclip__tensor *t, const void *data);
pclip_status pclip__exec_run(pclip__exec *e);
pclip_status pclip__exec_read(pclip__exec *e, const pclip__tensor *t, void *data);

#endif
