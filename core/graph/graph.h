/* The op graph: fp32 (and int32 index) tensors up to 4-D with names, the op
 * list, one parameter struct per op, graph building with shape checks, and
 * the buffer planner. A graph is built once per model and batch size,
 * compiled for one backend, and run many times.
 *
 * Tensors are created in topological order (an op's sources exist before it),
 * so creation order is execution order. Weights are resident tensors whose
 * host data the graph borrows; inputs are written before each run; every
 * other tensor is an activation placed in one arena by the planner, which
 * reuses a tensor's bytes once its last reader has run. */
#ifndef PCLIP_GRAPH_H
#define PCLIP_GRAPH_H

#include "internal.h"

#define PCLIP__MAX_DIMS 4
#define PCLIP__MAX_SRC 4
#define PCLIP__ALIGN 256 /* byte alignment of every planned tensor (>= any GPU's min offset) */

/* ---- the op list ---- */

/* X(ENUM, name, formula). The parameter struct of op `name` is
 * pclip__<name>_params. Sources are listed per op below. */
#define PCLIP_OP_LIST(X)                                                                           \
    /* src: a [batch?, M, K], b [batch?, N, K] (trans_b) or [batch?, K, N],                        \
       bias [N]?, residual [M, N]? */                                                              \
    X(MATMUL, matmul, "y = act(a @ op(b) + bias) + residual")                                      \
    X(ADD, add, "y = a + b, b broadcast over dims where it has size 1")                            \
    X(MUL, mul, "y = a * b, b broadcast over dims where it has size 1")                            \
    X(SCALE, scale, "y = a * s")                                                                   \
    X(LAYER_NORM, layer_norm, "y = (x - mean) / sqrt(var + eps) * g + b, per row")                 \
    X(ACT, act, "y = quick_gelu(x) | gelu(x) | gelu_tanh(x)")                                      \
    X(SOFTMAX, softmax, "y = softmax(x * scale + causal mask), per row")                           \
    X(ATTENTION, attention, "y = softmax(q k^T * scale + mask) v, per sequence and head")          \
    X(PATCHES, patches, "y[b*G+g, c*p*p+i*p+j] = x[b, c, gy*p+i, gx*p+j] (im2col)")                \
    X(CLASS_CONCAT, class_concat, "y[b, 0] = cls, y[b, 1+t] = x[b*T+t]")                           \
    X(GATHER_ROWS, gather_rows, "y[i] = table[idx[i]]")                                            \
    X(L2_NORM, l2_norm, "y = x / max(||x||, eps), per row")

typedef enum pclip__op {
    PCLIP__OP_NONE = 0, /* weights and inputs */
#define PCLIP__X_OP_ENUM(E, n, f) PCLIP__OP_##E,
    PCLIP_OP_LIST(PCLIP__X_OP_ENUM)
#undef PCLIP__X_OP_ENUM
        PCLIP__OP_COUNT
} pclip__op;

const char *pclip__op_name(pclip__op op);
const char *pclip__op_formula(pclip__op op);

/* ---- op parameters ----
 * 4-byte scalars only: the GLSL push-constant blocks and OpenCL kernel
 * arguments mirror these field for field. */

typedef enum pclip__act_kind {
    PCLIP__ACT_NONE = 0,
    PCLIP__ACT_QUICK_GELU = 1, /* x * sigmoid(1.702 x) */
    PCLIP__ACT_GELU = 2,       /* 0.5 x (1 + erf(x / sqrt 2)) */
    PCLIP__ACT_GELU_TANH = 3,  /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    PCLIP__ACT_KIND_COUNT
} pclip__act_kind;

typedef struct pclip__matmul_params {
    int32_t batch; /* number of independent products */
    int32_t M, N, K;
    int32_t trans_b;        /* 1: b is [N, K] (a weight as nn.Linear stores it) */
    int32_t b_batch_stride; /* elements between b matrices; 0 = one b shared by all */
    int32_t has_bias, has_residual;
    int32_t act; /* pclip__act_kind, applied before the residual add */
} pclip__matmul_params;

typedef struct pclip__binary_params { /* add, mul */
    int32_t ne[4];   /* output (= a) sizes, innermost last, padded with 1 at the front */
    int32_t ne_b[4]; /* b sizes, each equal to ne[i] or 1 */
} pclip__binary_params;
typedef pclip__binary_params pclip__add_params;
typedef pclip__binary_params pclip__mul_params;

typedef struct pclip__scale_params {
    int32_t n;
    float s;
} pclip__scale_params;

typedef struct pclip__layer_norm_params {
    int32_t rows, cols;
    float eps;
} pclip__layer_norm_params;

typedef struct pclip__act_params {
    int32_t n;
    int32_t kind; /* pclip__act_kind */
} pclip__act_params;

typedef struct pclip__softmax_params {
    int32_t rows, cols;
    int32_t causal; /* row r of each block of `cols` rows sees columns <= r % cols */
    float scale;
} pclip__softmax_params;

/* src: qkv [batch * seq, 3 * heads * head_dim] with q, k, v side by side
 * (HF CLIP's q_proj, k_proj, v_proj outputs); dst [batch * seq, heads * head_dim]. */
typedef struct pclip__attention_params {
    int32_t batch, seq, heads, head_dim;
    int32_t causal;
    float scale; /* 1 / sqrt(head_dim) */
} pclip__attention_params;

/* src: pixels [batch, channels, size, size]; dst [batch * grid * grid, channels * patch * patch]
 * in the order of a flattened conv weight [width, channels, patch, patch]. */
typedef struct pclip__patches_params {
    int32_t batch, channels, size, patch;
} pclip__patches_params;

/* src: x [batch * tokens, width], cls [width]; dst [batch * (tokens + 1), width]. */
typedef struct pclip__class_concat_params {
    int32_t batch, tokens, width;
} pclip__class_concat_params;

/* src: table [table_rows, cols], idx [rows] (int32); dst [rows, cols]. An
 * index outside the table gives a row of zeros (checked before runs, too). */
typedef struct pclip__gather_rows_params {
    int32_t rows, cols, table_rows;
} pclip__gather_rows_params;

typedef struct pclip__l2_norm_params {
    int32_t rows, cols;
    float eps; /* 0 for torch's x / x.norm(); F.normalize uses 1e-12 */
} pclip__l2_norm_params;

typedef union pclip__op_params {
#define PCLIP__X_OP_PARAMS(E, n, f) pclip__##n##_params n;
    PCLIP_OP_LIST(PCLIP__X_OP_PARAMS)
#undef PCLIP__X_OP_PARAMS
} pclip__op_params;

/* ---- tensors and graphs ---- */

typedef enum pclip__dtype { PCLIP__DTYPE_F32, PCLIP__DTYPE_I32, PCLIP__DTYPE_COUNT } pclip__dtype;

typedef enum pclip__tensor_kind {
    PCLIP__TENSOR_WEIGHT,     /* resident, host data borrowed */
    PCLIP__TENSOR_INPUT,      /* written before each run */
    PCLIP__TENSOR_ACTIVATION, /* computed, placed by the planner */
    PCLIP__TENSOR_KIND_COUNT
} pclip__tensor_kind;

typedef struct pclip__tensor {
    char name[96];
    int32_t id; /* index in the graph: creation (= execution) order */
    pclip__dtype dtype;
    pclip__tensor_kind kind;
    int32_t ndim;
    int64_t ne[PCLIP__MAX_DIMS]; /* sizes, innermost last */
    size_t nbytes;
    pclip__op op;
    int32_t n_src;
    struct pclip__tensor *src[PCLIP__MAX_SRC];
    pclip__op_params params;
    bool is_output;
    const void *data; /* weights: host data, borrowed */
    /* weights: data lies in a read-only file map (pclip__mmap), so a backend
     * that keeps its own copy may give the pages back (pclip__mmap_release) */
    bool data_mapped;
    /* set by the planner */
    size_t offset;    /* inputs and activations: byte offset in the arena */
    int32_t last_use; /* id of the last op that reads it */
} pclip__tensor;

typedef struct pclip__graph {
    pclip_ctx_t ctx;
    pclip__tensor **tensors;
    int32_t n_tensors, cap;
    bool planned;
    size_t arena_bytes;  /* planned peak of inputs + activations */
    size_t naive_bytes;  /* the same without reuse, for reporting */
    pclip_status status; /* the first builder failure (sticky); OK while there is none */
} pclip__graph;

pclip_status pclip__graph_create(pclip_ctx_t ctx, pclip__graph **out);
void pclip__graph_destroy(pclip__graph *g);

/* Builders. Each returns NULL on a shape error or allocation failure, and
 * records the reason (naming the op, the tensor and the shapes) in the
 * context; a NULL source makes the builder return NULL at once, so a chain of
 * calls can be checked once at its end. */
pclip__tensor *pclip__weight(pclip__graph *g, const char *name, int32_t ndim, const int64_t *ne,
                             const float *data);
pclip__tensor *pclip__input(pclip__graph *g, const char *name, pclip__dtype dtype, int32_t ndim,
                            const int64_t *ne);
/* y = act(a @ b^T + bias) + residual for a [.., K] and b a weight [N, K];
 * bias and residual may be NULL. a's leading dims are flattened into M. */
pclip__tensor *pclip__linear(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b,
                             pclip__tensor *bias, pclip__act_kind act, pclip__tensor *residual);
/* Batched: a [batch, M, K] with b [batch, N, K] (trans_b) or [batch, K, N]. */
pclip__tensor *pclip__matmul(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b,
                             bool trans_b);
pclip__tensor *pclip__add(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b);
pclip__tensor *pclip__mul(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b);
pclip__tensor *pclip__scale(pclip__graph *g, const char *name, pclip__tensor *a, float s);
pclip__tensor *pclip__layer_norm(pclip__graph *g, const char *name, pclip__tensor *x,
                                 pclip__tensor *gamma, pclip__tensor *beta, float eps);
pclip__tensor *pclip__act(pclip__graph *g, const char *name, pclip__tensor *x,
                          pclip__act_kind kind);
pclip__tensor *pclip__softmax(pclip__graph *g, const char *name, pclip__tensor *x, float scale,
                              bool causal);
pclip__tensor *pclip__attention(pclip__graph *g, const char *name, pclip__tensor *qkv,
                                int32_t batch, int32_t seq, int32_t heads, bool causal);
pclip__tensor *pclip__patches(pclip__graph *g, const char *name, pclip__tensor *pixels,
                              int32_t patch);
pclip__tensor *pclip__class_concat(pclip__graph *g, const char *name, pclip__tensor *x,
                                   pclip__tensor *cls, int32_t batch);
pclip__tensor *pclip__gather_rows(pclip__graph *g, const char *name, pclip__tensor *table,
                                  pclip__tensor *idx);
pclip__tensor *pclip__l2_norm(pclip__graph *g, const char *name, pclip__tensor *x, float eps);

/* Gives t a new shape with the same element count, for the ops built after
 * this call (ops already built keep their parameters). Returns t, or NULL if
 * the counts differ. */
pclip__tensor *pclip__reshape(pclip__graph *g, pclip__tensor *t, int32_t ndim, const int64_t *ne);

/* Marks a tensor as an output: its bytes are not reused, and it can be read
 * after a run. */
pclip_status pclip__graph_output(pclip__graph *g, pclip__tensor *t);

/* Computes last uses and arena offsets (first fit, PCLIP__ALIGN-aligned).
 * Idempotent. */
pclip_status pclip__graph_plan(pclip__graph *g);

/* Elements of a tensor, and its rows/cols view (cols = innermost size). */
int64_t pclip__nelements(const pclip__tensor *t);
int64_t pclip__nrows(const pclip__tensor *t);

#endif
