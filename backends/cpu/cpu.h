/* The CPU backend's private interface, shared by its files: the compiled op
 * ("node") every kernel receives, the kernel prototypes (one reference and
 * one fast kernel per op, named after the op list), the SIMD levels, and the
 * oneDNN matmul records. Nothing here is seen outside backends/cpu/ except
 * by tests that check CPU-only behaviour.
 *
 * Two devices share this code: device 0 runs the fast kernels (oneDNN matmul,
 * our own SIMD for the rest, OpenMP threads); device 1 runs the reference
 * kernels, plain C on one thread, which every other path is checked against. */
#ifndef PCLIP_CPU_H
#define PCLIP_CPU_H

#include <math.h>

#include "graph/backend.h"

/* ---- SIMD levels, chosen at run time ---- */

typedef enum pclip__cpu_simd {
    PCLIP__CPU_SIMD_SCALAR, /* any x86-64 (or other) CPU: the same fast code, 1 lane */
    PCLIP__CPU_SIMD_AVX2,   /* AVX2 + FMA, 8 lanes */
    PCLIP__CPU_SIMD_AVX512, /* AVX-512F, 16 lanes */
    PCLIP__CPU_SIMD_COUNT
} pclip__cpu_simd;

/* "scalar", "AVX2+FMA", "AVX-512" */
const char *pclip__cpu_simd_name(pclip__cpu_simd level);

/* ---- compiled ops ---- */

typedef struct pclip__cpu_node pclip__cpu_node;
typedef pclip_status (*pclip__cpu_kernel)(const pclip__cpu_node *n);

struct pclip__cpu_matmul; /* a oneDNN matmul primitive and its bound memory (cpu_dnnl.c) */
struct pclip__cpu_dnnl;   /* a fast device's oneDNN engine, stream and packed weights */

/* One op of a compiled graph with every pointer resolved, so that running it
 * is one call. */
struct pclip__cpu_node {
    pclip__cpu_kernel run;
    const pclip__tensor *t;          /* the op's result; t->params holds its parameters */
    float *dst;                      /* t's bytes in the arena */
    const void *src[PCLIP__MAX_SRC]; /* arena or weight data; NULL for an absent source */
    pclip__cpu_simd simd;
    int32_t threads; /* OpenMP threads; 1 on the reference device */
    bool panels;     /* a MATMUL may run on the panel kernel (matmul.c) */
    bool bf16;       /* a MATMUL against a packed weight runs in bf16 (fast device only) */
    /* bf16 routes (fast device at bf16 only; cpu_backend.c decides them):
     * bf16_dst: the op writes its result as bf16 (its first t->nbytes / 2
     * bytes), because only bf16 matmuls read it, as their a; bf16_src: a bf16
     * MATMUL whose a is such a result, read as it is (no conversion pass). */
    bool bf16_dst;
    bool bf16_src;
    void *scratch;   /* exec-wide scratch, 64-byte aligned, reused by every op */
    size_t scratch_bytes;
    struct pclip__cpu_matmul *mm; /* fast MATMUL only */
    pclip_ctx_t ctx;
};

/* Kernels: pclip__cpu_<op>_ref (plain C, the tie-breaker) and
 * pclip__cpu_<op>_fast, one pair per op in PCLIP_OP_LIST. ADD and MUL live in
 * binary.c; every other op in <op>.c. */
#define PCLIP__CPU_X_KERNELS(E, n, ns, w, fl, f)                                                              \
    pclip_status pclip__cpu_##n##_ref(const pclip__cpu_node *node);                                \
    pclip_status pclip__cpu_##n##_fast(const pclip__cpu_node *node);
PCLIP_OP_LIST(PCLIP__CPU_X_KERNELS)
#undef PCLIP__CPU_X_KERNELS

/* Scratch bytes clip_loss and clip_loss_grad need (the row and column
 * statistics of n x n logits). */
size_t pclip__cpu_clip_loss_scratch(int32_t n);

/* Scratch bytes an attention op needs (scores, packed keys), per exec. */
size_t pclip__cpu_attention_scratch(const pclip__attention_params *p, bool fast, int32_t threads);

/* The reference activations, as torch writes them (shared by the ACT and
 * MATMUL reference kernels). */
static inline float pclip__cpu_act_ref_element(int32_t kind, float x) {
    switch (kind) {
    case PCLIP_ACT_QUICK_GELU: /* x * torch.sigmoid(1.702 * x) */
        return x * (1.0f / (1.0f + expf(-1.702f * x)));
    case PCLIP_ACT_GELU: /* torch: x * 0.5 * (1 + erf(x / sqrt 2)) */
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case PCLIP_ACT_GELU_TANH: /* torch: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
        return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    default: return x;
    }
}

/* Work (elements) below which a fast kernel stays on one thread: waking the
 * OpenMP team costs a few microseconds. */
#define PCLIP__CPU_PAR_MIN 32768

/* Memory blocks of at least this size are aligned to it and advised as
 * transparent huge pages (the arena, packed weights). */
#define PCLIP__HUGE_PAGE ((size_t)2 << 20)

/* ---- oneDNN (cpu_dnnl.c) ---- */

pclip_status pclip__cpu_dnnl_create(pclip_ctx_t ctx, struct pclip__cpu_dnnl **out);
void pclip__cpu_dnnl_destroy(struct pclip__cpu_dnnl *d);
/* "oneDNN 2.6.3" */
void pclip__cpu_dnnl_version(char *buf, size_t n);
/* Whether oneDNN can run bf16 matmuls on this CPU at full speed: it needs
 * AVX512_BF16 (or AMX, which implies it). When not, `why` (when not NULL)
 * says which instruction set is missing. */
bool pclip__cpu_dnnl_has_bf16(char *why, size_t n);

/* Whether MATMUL t runs in bf16 on the fast device at precision bf16: a
 * product against a weight b stored as nn.Linear stores it (batch 1,
 * trans_b). Products of two activations stay fp32. */
bool pclip__cpu_matmul_is_bf16(const pclip__tensor *t);

/* bf16(x), round to nearest even, as VCVTNEPS2BF16 does it (and oneDNN's
 * conversions on CPUs with AVX512_BF16): a NaN stays a quiet NaN, a
 * denormal input becomes a signed zero. bf16_vec.h has the vector form. */
static inline uint16_t pclip__cpu_bf16_round(float x) {
    union {
        float f;
        uint32_t u;
    } v = {x};
    const uint32_t u = v.u;
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Creates the primitive for a fast MATMUL node whose pointers are resolved:
 * a weight b used as nn.Linear stores it is reordered once into the
 * primitive's preferred layout and shared through the device's cache. Sets
 * n->mm and reports the user scratchpad it needs. With n->bf16 such a weight
 * is packed as bf16 and the activations are converted to bf16 in the scratch
 * before each product (fp32 accumulation, bias, post-ops and result), unless
 * n->bf16_src (a is bf16 already); with n->bf16_dst the result is written as
 * bf16 (after bias, activation and residual in fp32). */
pclip_status pclip__cpu_matmul_create(struct pclip__cpu_dnnl *d, pclip__cpu_node *n,
                                      size_t *scratch_bytes);
/* Points the primitive at the exec's scratch (after it is allocated). */
pclip_status pclip__cpu_matmul_bind_scratch(struct pclip__cpu_matmul *mm, void *scratch);
void pclip__cpu_matmul_destroy(struct pclip__cpu_matmul *mm);
/* Runs it (the fast MATMUL kernel). */
pclip_status pclip__cpu_matmul_execute(const pclip__cpu_node *n);
/* The packed weight when the matmul runs on our panel kernel (matmul.c)
 * instead of a oneDNN primitive, else NULL. */
const float *pclip__cpu_matmul_panels(const struct pclip__cpu_matmul *mm);

/* ---- the panel kernel (matmul.c) ---- */

/* Columns per panel: oneDNN's BA16a64b weight layout, which the kernel reads. */
#define PCLIP__CPU_PANEL 64
/* Rows of a it is used for: below, oneDNN streams the weights faster; above,
 * both are the same (bench/RESULTS.md). */
#define PCLIP__CPU_PANEL_M_MIN 16
#define PCLIP__CPU_PANEL_M_MAX 160
/* Whether y [M, N] = a [M, K] w^T may run on the panel kernel at this SIMD
 * level with this many threads (two panels per thread at least), provided
 * oneDNN packs w as BA16a64b. */
bool pclip__cpu_panels_fit(pclip__cpu_simd simd, int64_t M, int64_t N, int64_t K, int32_t threads);
/* Packed weights currently cached by a device (for tests). */
int32_t pclip__cpu_dnnl_packed_count(const struct pclip__cpu_dnnl *d);

/* The number of packed weights a CPU backend state holds (0 for the
 * reference device); for tests of the cache. */
int32_t pclip__cpu_packed_weights(void *backend_state);
/* The matmuls of a compiled CPU graph that run on the panel kernel; for tests. */
int32_t pclip__cpu_panel_nodes(void *exec_state);
/* The ops of a compiled CPU graph that write their result as bf16 (bf16_dst);
 * for tests. */
int32_t pclip__cpu_bf16_routes(void *exec_state);

#endif
