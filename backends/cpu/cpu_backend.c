/* The CPU backend: its two devices, compiling a plan (core's compile plan:
 * the ops that run, where each tensor is) into a list of ready-to-run kernel
 * calls over one arena, params in host memory, and the backend function
 * table.
 *
 * Device 0 is the fast path: oneDNN matmul (cpu_dnnl.c) and our own SIMD for
 * every other op, at the best level this CPU has (AVX-512, AVX2+FMA, or
 * scalar; PORTCLIP_CPU_SIMD=avx512|avx2|scalar caps it, for tests), on
 * PORTCLIP_THREADS OpenMP threads (default: the cores we may run on). oneDNN
 * in Debian uses OpenMP too, so there is one thread pool. Device 1 is the
 * reference: plain C kernels on the calling thread, the tie-breaker for
 * every other path.
 *
 * Everything is allocated by compile(): the arena (64-byte aligned, huge
 * pages when large), the oneDNN primitives and packed weights, one scratch
 * buffer shared by the ops. run() calls the kernels in tensor order and
 * allocates nothing of its own. Which ops run, and every check of the
 * arguments, is core's (graph/exec.c). */
#define _GNU_SOURCE
#include <cpuid.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu.h"

/* ---- kernel tables ---- */

/* Both tables come from the op list: an op without its two kernels does not
 * link. */
/* clang-format off */
static const pclip__cpu_kernel ref_kernels[] = {
    [PCLIP__OP_NONE] = NULL,
#define PCLIP__X_REF(E, n, ns, w, fl, f) [PCLIP__OP_##E] = pclip__cpu_##n##_ref,
    PCLIP_OP_LIST(PCLIP__X_REF)
#undef PCLIP__X_REF
};
static const pclip__cpu_kernel fast_kernels[] = {
    [PCLIP__OP_NONE] = NULL,
#define PCLIP__X_FAST(E, n, ns, w, fl, f) [PCLIP__OP_##E] = pclip__cpu_##n##_fast,
    PCLIP_OP_LIST(PCLIP__X_FAST)
#undef PCLIP__X_FAST
};
/* clang-format on */
_Static_assert(sizeof ref_kernels / sizeof ref_kernels[0] == PCLIP__OP_COUNT,
               "one reference kernel per op");
_Static_assert(sizeof fast_kernels / sizeof fast_kernels[0] == PCLIP__OP_COUNT,
               "one fast kernel per op");

/* ---- configuration: SIMD level and threads ---- */

enum { DEVICE_FAST = 0, DEVICE_REFERENCE = 1, DEVICE_COUNT = 2 };

static const char *const simd_names[] = {"scalar", "AVX2+FMA", "AVX-512"};
static const char *const simd_env_names[] = {"scalar", "avx2", "avx512"};
_Static_assert(sizeof simd_names / sizeof simd_names[0] == PCLIP__CPU_SIMD_COUNT, "names");
_Static_assert(sizeof simd_env_names / sizeof simd_env_names[0] == PCLIP__CPU_SIMD_COUNT, "names");

const char *pclip__cpu_simd_name(pclip__cpu_simd level) {
    return (unsigned)level < PCLIP__CPU_SIMD_COUNT ? simd_names[level] : "?";
}

/* The best level this CPU and OS support (libgcc checks the OS saves the
 * vector registers, too). */
static pclip__cpu_simd simd_detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return PCLIP__CPU_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return PCLIP__CPU_SIMD_AVX2;
#endif
    return PCLIP__CPU_SIMD_SCALAR;
}

typedef struct cpu_config {
    pclip__cpu_simd simd;
    int32_t threads;
    bool panels; /* the panel matmul kernel may run (PORTCLIP_CPU_PANELS=0: never) */
} cpu_config;

#define MAX_THREADS 1024

/* The fast device's settings from the CPU and the environment. */
static pclip_status config_read(pclip_ctx_t ctx, cpu_config *c) {
    pclip__cpu_simd best = simd_detect();
    c->simd = best;
    /* PORTCLIP_CPU_SIMD: simd_env_names, in pclip__cpu_simd order */
    int want;
    pclip_status st = pclip__env_choice(ctx, "PORTCLIP_CPU_SIMD", simd_env_names,
                                        PCLIP__CPU_SIMD_COUNT, (int)best, &want);
    if (st) {
        pclip__err_prefix(ctx, "cpu");
        return st;
    }
    if (want > (int)best)
        return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                          "cpu: PORTCLIP_CPU_SIMD=%s, but this CPU has only %s",
                          simd_env_names[want], simd_names[best]);
    c->simd = (pclip__cpu_simd)want;
    int64_t threads, panels;
    int procs = omp_get_num_procs();
    st = pclip__env_int(ctx, "PORTCLIP_THREADS", 1, MAX_THREADS, procs < 1 ? 1 : procs, &threads);
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_CPU_PANELS", 0, 1, 1, &panels);
    if (st) {
        pclip__err_prefix(ctx, "cpu");
        return st;
    }
    c->threads = (int32_t)threads;
    c->panels = panels == 1;
    return PCLIP_STATUS_OK;
}

/* ---- devices ---- */

static void cpu_brand(char *buf, size_t n) {
    unsigned r[12] = {0};
    snprintf(buf, n, "unknown CPU");
#if defined(__x86_64__) || defined(__i386__)
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) < 0x80000004u) return;
    for (unsigned i = 0; i < 3; i++)
        __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    char brand[49];
    memcpy(brand, r, 48);
    brand[48] = '\0';
    char *s = brand, *e = brand + strlen(brand);
    while (*s == ' ') s++;
    while (e > s && e[-1] == ' ') *--e = '\0';
    if (*s) snprintf(buf, n, "%s", s);
#endif
}

static void device_info(pclip__device_info *d, int32_t device, const cpu_config *c) {
    char dnnl[32];
    pclip__cpu_dnnl_version(dnnl, sizeof dnnl);
    memset(d, 0, sizeof *d);
    if (device == DEVICE_FAST) {
        snprintf(d->name, sizeof d->name, "CPU (fast: %s, %s matmul, %d thread%s)",
                 pclip__cpu_simd_name(c->simd), dnnl, c->threads, c->threads == 1 ? "" : "s");
        snprintf(d->driver, sizeof d->driver, "%s + portclip %s kernels, OpenMP", dnnl,
                 pclip__cpu_simd_name(c->simd));
        d->subgroup_size = c->simd == PCLIP__CPU_SIMD_AVX512 ? 16
                           : c->simd == PCLIP__CPU_SIMD_AVX2 ? 8
                                                             : 1;
    } else {
        snprintf(d->name, sizeof d->name, "CPU reference (plain C)");
        snprintf(d->driver, sizeof d->driver, "portclip reference kernels, 1 thread");
        d->subgroup_size = 1;
    }
    cpu_brand(d->vendor, sizeof d->vendor);
    snprintf(d->type, sizeof d->type, "cpu");
    snprintf(d->api_version, sizeof d->api_version, "C11");
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    d->memory_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    pclip__cpu_simd best = simd_detect();
    snprintf(d->features, sizeof d->features, "%s%s%s threads=%d",
             best >= PCLIP__CPU_SIMD_AVX512 ? "avx512f " : "",
             best >= PCLIP__CPU_SIMD_AVX2 ? "avx2 fma " : "",
             device == DEVICE_FAST ? "onednn openmp" : "reference",
             device == DEVICE_FAST ? c->threads : 1);
    d->software = false; /* the CPU itself, not an emulated GPU */
    char why[sizeof d->precision_why - 32]; /* room for "bf16: " and "; fp16: ..." */
    bool bf16 = device == DEVICE_FAST && pclip__cpu_dnnl_has_bf16(why, sizeof why);
    snprintf(d->precisions, sizeof d->precisions, "fp32%s", bf16 ? " bf16" : "");
    if (device != DEVICE_FAST)
        snprintf(d->precision_why, sizeof d->precision_why,
                 "bf16: the reference device runs fp32 only; bf16 runs on cpu device 0; "
                 "fp16: vulkan only");
    else if (!bf16)
        snprintf(d->precision_why, sizeof d->precision_why, "bf16: %s; fp16: vulkan only", why);
    else
        snprintf(d->precision_why, sizeof d->precision_why, "fp16: vulkan only");
}

static pclip_status cpu_list_devices(pclip_ctx_t ctx, pclip__device_info *out, int32_t max,
                                     int32_t *count) {
    cpu_config c;
    pclip_status st = config_read(ctx, &c);
    if (st) return st;
    for (int32_t i = 0; i < DEVICE_COUNT && i < max; i++) device_info(&out[i], i, &c);
    *count = DEVICE_COUNT;
    return PCLIP_STATUS_OK;
}

typedef struct cpu_state {
    pclip_ctx_t ctx;
    bool fast;
    cpu_config config;            /* threads 1 and scalar on the reference device */
    struct pclip__cpu_dnnl *dnnl; /* fast device only */
} cpu_state;

static pclip_status cpu_create(pclip_ctx_t ctx, int32_t device, void **out) {
    if (device < 0 || device >= DEVICE_COUNT)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "cpu: device %d does not exist (0: fast, 1: reference)", device);
    cpu_state *s = pclip__calloc(1, sizeof *s);
    if (!s) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "cpu: out of memory");
    s->ctx = ctx;
    s->fast = device == DEVICE_FAST;
    s->config = (cpu_config){PCLIP__CPU_SIMD_SCALAR, 1, false};
    pclip_status st = PCLIP_STATUS_OK;
    if (s->fast && !(st = config_read(ctx, &s->config))) st = pclip__cpu_dnnl_create(ctx, &s->dnnl);
    if (st) {
        pclip__free(s);
        return st;
    }
    *out = s;
    return PCLIP_STATUS_OK;
}

static void cpu_destroy(void *state) {
    cpu_state *s = state;
    if (!s) return;
    pclip__cpu_dnnl_destroy(s->dnnl);
    pclip__free(s);
}

int32_t pclip__cpu_packed_weights(void *backend_state) {
    const cpu_state *s = backend_state;
    return pclip__cpu_dnnl_packed_count(s->dnnl);
}

/* ---- compiled graphs ---- */

typedef struct cpu_exec {
    cpu_state *s;
    const pclip__exec_plan *plan;
    uint8_t *arena; /* [arena_bytes], 64-byte aligned */
    void *arena_block;
    void *scratch_block; /* the ops' shared scratch */
    pclip__cpu_node *nodes;
    int32_t n_nodes;
} cpu_exec;

int32_t pclip__cpu_panel_nodes(void *exec_state) {
    const cpu_exec *x = exec_state;
    int32_t count = 0;
    for (int32_t i = 0; i < x->n_nodes; i++)
        count += pclip__cpu_matmul_panels(x->nodes[i].mm) != NULL;
    return count;
}

int32_t pclip__cpu_bf16_routes(void *exec_state) {
    const cpu_exec *x = exec_state;
    int32_t count = 0;
    for (int32_t i = 0; i < x->n_nodes; i++) count += x->nodes[i].bf16_dst;
    return count;
}

/* Zeroed memory aligned to `align` (a power of two) inside a block from the
 * library's allocator, so the allocation-failure hook reaches it. */
static void *alloc_aligned(size_t bytes, size_t align, void **block) {
    *block = NULL;
    if (bytes > SIZE_MAX - align) return NULL;
    *block = pclip__calloc(1, bytes + align);
    if (!*block) return NULL;
    return (void *)(((uintptr_t)*block + align - 1) & ~(uintptr_t)(align - 1));
}

/* Sets OpenMP's thread count for oneDNN (which asks omp_get_max_threads())
 * and returns the old one; the setting is per calling thread. */
static int threads_push(const cpu_state *s) {
    int old = omp_get_max_threads();
    if (s->fast) omp_set_num_threads(s->config.threads);
    return old;
}

static void threads_pop(const cpu_state *s, int old) {
    if (s->fast) omp_set_num_threads(old);
}

static void cpu_release(void *exec) {
    cpu_exec *x = exec;
    if (!x) return;
    for (int32_t i = 0; i < x->n_nodes; i++) pclip__cpu_matmul_destroy(x->nodes[i].mm);
    pclip__free(x->nodes);
    pclip__free(x->scratch_block);
    pclip__free(x->arena_block);
    pclip__free(x);
}

/* ---- params: host memory, 64-byte aligned ---- */

typedef struct cpu_param {
    void *block;
    float *data;
} cpu_param;

static pclip_status cpu_param_create(void *state, size_t bytes, void **handle) {
    cpu_state *s = state;
    cpu_param *p = pclip__calloc(1, sizeof *p);
    if (p) p->data = alloc_aligned(bytes ? bytes : 4, 64, &p->block);
    if (!p || !p->data) {
        pclip__free(p);
        return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "cpu: out of memory for a param");
    }
    *handle = p;
    return PCLIP_STATUS_OK;
}

static pclip_status cpu_param_write(void *state, void *handle, const void *data, size_t bytes) {
    (void)state;
    memcpy(((cpu_param *)handle)->data, data, bytes);
    return PCLIP_STATUS_OK;
}

static pclip_status cpu_param_read(void *state, void *handle, void *data, size_t bytes) {
    (void)state;
    memcpy(data, ((const cpu_param *)handle)->data, bytes);
    return PCLIP_STATUS_OK;
}

static void cpu_param_destroy(void *state, void *handle) {
    (void)state;
    cpu_param *p = handle;
    if (!p) return;
    pclip__free(p->block);
    pclip__free(p);
}

/* ---- compiled graphs ---- */

/* Where a tensor's bytes are: weight data, a param's memory, or the arena. */
static void *tensor_data(const cpu_exec *x, const pclip__tensor *t) {
    if (!t) return NULL;
    const pclip__tensor *s = pclip__storage(t);
    switch (s->kind) {
    case PCLIP__TENSOR_WEIGHT: return (void *)(uintptr_t)s->data;
    case PCLIP__TENSOR_PARAM: return ((cpu_param *)s->param->handle)->data;
    default: return x->arena + s->offset;
    }
}

/* The bf16 routes of a plan at precision bf16 (cpu.h: bf16_dst,
 * bf16_src): *routed [n_tensors] is set for each result that its op writes
 * as bf16. Such a result is a LAYER_NORM, ATTENTION or bf16 MATMUL result
 * (fast kernels that can write bf16), not an output, read by at least one
 * op, and every op that reads it is a bf16 matmul reading it (or a view of
 * it, whole) as its a and nowhere else: those matmuls then take it as it is
 * instead of converting it, and the conversion is done once, by the op that
 * computes it, on values still in registers. */
static pclip_status bf16_routes(const cpu_exec *x, bool **routed) {
    const pclip__exec_plan *plan = x->plan;
    const int32_t count = plan->g->n_tensors;
    *routed = pclip__calloc((size_t)count + 1, sizeof **routed);
    /* per storage tensor: 1 while only bf16 matmuls' a read it, 2 once
     * anything else does (or it is an output) */
    uint8_t *readers = pclip__calloc((size_t)count + 1, 1);
    if (!*routed || !readers) {
        pclip__free(readers);
        return pclip__err(x->s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "cpu: out of memory");
    }
    for (int32_t i = 0; i < plan->n_outputs; i++) readers[pclip__storage(plan->outputs[i])->id] = 2;
    for (int32_t i = 0; i < plan->n_nodes; i++) {
        const pclip__tensor *t = plan->nodes[i].t;
        for (int32_t k = 0; k < t->n_src; k++) {
            const pclip__tensor *src = pclip__storage(t->src[k]);
            if (!src) continue;
            const bool as_a = k == 0 && pclip__cpu_matmul_is_bf16(t) &&
                              t->src[0]->nbytes == src->nbytes;
            readers[src->id] = as_a && readers[src->id] != 2 ? 1 : 2;
        }
    }
    for (int32_t i = 0; i < plan->n_nodes; i++) {
        const pclip__tensor *t = plan->nodes[i].t;
        const bool writes_bf16 = t->op == PCLIP__OP_LAYER_NORM || t->op == PCLIP__OP_ATTENTION ||
                                 pclip__cpu_matmul_is_bf16(t);
        (*routed)[t->id] = writes_bf16 && !t->view_src && t->dtype == PCLIP__DTYPE_F32 &&
                           t->kind == PCLIP__TENSOR_ACTIVATION && readers[t->id] == 1;
    }
    pclip__free(readers);
    return PCLIP_STATUS_OK;
}

/* Builds one node per op of the plan; returns the scratch the ops need. */
static pclip_status build_nodes(cpu_exec *x, size_t *scratch) {
    const pclip__exec_plan *plan = x->plan;
    cpu_state *s = x->s;
    x->nodes = pclip__calloc((size_t)plan->n_nodes + 1, sizeof *x->nodes);
    if (!x->nodes) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "cpu: out of memory");
    const bool bf16 = s->fast && plan->precision == PCLIP_PRECISION_BF16;
    bool *routed = NULL;
    pclip_status st = bf16 ? bf16_routes(x, &routed) : PCLIP_STATUS_OK;
    *scratch = 0;
    for (int32_t i = 0; !st && i < plan->n_nodes; i++) {
        const pclip__tensor *t = plan->nodes[i].t;
        pclip__cpu_node *n = &x->nodes[x->n_nodes++];
        n->run = s->fast ? fast_kernels[t->op] : ref_kernels[t->op];
        n->t = t;
        n->dst = tensor_data(x, t);
        for (int32_t k = 0; k < t->n_src; k++) n->src[k] = tensor_data(x, t->src[k]);
        n->simd = s->config.simd;
        n->threads = s->config.threads;
        n->panels = s->config.panels;
        n->bf16 = bf16;
        if (routed) {
            n->bf16_dst = routed[t->id];
            n->bf16_src = pclip__cpu_matmul_is_bf16(t) && routed[pclip__storage(t->src[0])->id];
        }
        n->ctx = s->ctx;
        size_t need = 0;
        if (t->op == PCLIP__OP_ATTENTION)
            need = pclip__cpu_attention_scratch(&t->params.attention, s->fast, s->config.threads);
        else if (t->op == PCLIP__OP_CLIP_LOSS)
            need = pclip__cpu_clip_loss_scratch(t->params.clip_loss.n);
        else if (t->op == PCLIP__OP_CLIP_LOSS_GRAD)
            need = pclip__cpu_clip_loss_scratch(t->params.clip_loss_grad.n);
        else if (t->op == PCLIP__OP_MATMUL && s->fast)
            st = pclip__cpu_matmul_create(s->dnnl, n, &need);
        if (need > *scratch) *scratch = need;
    }
    pclip__free(routed);
    return st;
}

static pclip_status cpu_compile(void *state, const pclip__exec_plan *plan, void **out) {
    cpu_state *s = state;
    cpu_exec *x = pclip__calloc(1, sizeof *x);
    if (!x) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "cpu: out of memory");
    *out = x;
    x->s = s;
    x->plan = plan;
    const size_t bytes = plan->arena_bytes;
    const bool large = bytes >= 4 * PCLIP__HUGE_PAGE;
    x->arena = alloc_aligned(bytes ? bytes : 1, large ? PCLIP__HUGE_PAGE : 64, &x->arena_block);
    if (!x->arena)
        return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "cpu: cannot allocate the graph's arena (%zu MiB)",
                          (bytes + (1u << 20) - 1) >> 20);
    /* transparent huge pages: fewer TLB misses over a large arena (advice only) */
    if (large) madvise(x->arena, bytes, MADV_HUGEPAGE);
    int old_threads = threads_push(s);
    size_t scratch = 0;
    void *scratch_data = NULL;
    pclip_status st = build_nodes(x, &scratch);
    if (!st && scratch) {
        scratch_data = alloc_aligned(scratch, 64, &x->scratch_block);
        if (!scratch_data)
            st = pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                            "cpu: cannot allocate %zu MiB of scratch", (scratch >> 20) + 1);
    }
    for (int32_t i = 0; !st && i < x->n_nodes; i++) {
        x->nodes[i].scratch = scratch_data;
        x->nodes[i].scratch_bytes = scratch;
        if (x->nodes[i].mm) st = pclip__cpu_matmul_bind_scratch(x->nodes[i].mm, scratch_data);
    }
    threads_pop(s, old_threads);
    return st;
}

static pclip_status cpu_write_input(void *exec, const pclip__tensor *t, const void *data) {
    cpu_exec *x = exec;
    memcpy(x->arena + t->offset, data, t->nbytes);
    return PCLIP_STATUS_OK;
}

static pclip_status cpu_read_output(void *exec, const pclip__tensor *t, void *data) {
    cpu_exec *x = exec;
    memcpy(data, x->arena + pclip__storage(t)->offset, t->nbytes);
    return PCLIP_STATUS_OK;
}

static pclip_status cpu_run(void *exec) {
    cpu_exec *x = exec;
    int old_threads = threads_push(x->s);
    pclip_status st = PCLIP_STATUS_OK;
    for (int32_t i = 0; i < x->n_nodes && !st; i++) st = x->nodes[i].run(&x->nodes[i]);
    threads_pop(x->s, old_threads);
    return st;
}

static pclip_status cpu_arena_read(void *exec, void *data) {
    cpu_exec *x = exec;
    memcpy(data, x->arena, x->plan->arena_bytes);
    return PCLIP_STATUS_OK;
}

static pclip_status cpu_arena_write(void *exec, const void *data) {
    cpu_exec *x = exec;
    memcpy(x->arena, data, x->plan->arena_bytes);
    return PCLIP_STATUS_OK;
}

/* ---- precision ---- */

static pclip_status cpu_precision_check(void *state, pclip_precision p) {
    cpu_state *s = state;
    if (p == PCLIP_PRECISION_FP32) return PCLIP_STATUS_OK;
    if (p == PCLIP_PRECISION_FP16)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                          "cpu: precision fp16 is not supported on CPUs (fp16 runs on the vulkan "
                          "backend); use bf16 on a CPU with AVX512_BF16 or AMX");
    if (p != PCLIP_PRECISION_BF16)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED, "cpu: precision %s is not supported",
                          pclip_precision_name(p));
    if (!s->fast)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                          "cpu: precision bf16: device 1 is the fp32 reference; bf16 runs on "
                          "device 0 (the fast path)");
    char why[160];
    if (!pclip__cpu_dnnl_has_bf16(why, sizeof why))
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED, "cpu: precision bf16 %s", why);
    return PCLIP_STATUS_OK;
}

/* ---- the table ---- */

const pclip__backend_ops pclip__cpu_backend_ops = {
    .version = PCLIP__BACKEND_VERSION,
    .name = "cpu",
    .list_devices = cpu_list_devices,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .compile = cpu_compile,
    .write_input = cpu_write_input,
    .run = cpu_run,
    .read_output = cpu_read_output,
    .release = cpu_release,
    .param_create = cpu_param_create,
    .param_write = cpu_param_write,
    .param_read = cpu_param_read,
    .param_destroy = cpu_param_destroy,
    .arena_read = cpu_arena_read,
    .arena_write = cpu_arena_write,
    .precision_check = cpu_precision_check,
};
