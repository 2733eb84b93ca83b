/* The op graph: fp32 (and int32 index) tensors up to 4-D with names, the op
 * list, one parameter struct per op, graph building with shape checks, views,
 * the backward table, and the buffer planner. A graph is built once per model
 * and batch size, compiled for one backend, and run many times.
 *
 * Tensors are created in topological order (an op's sources exist before it),
 * so creation order is execution order.
 *
 * The rules of the op model:
 *   - Kinds: WEIGHT (host data the graph borrows, read-only, shared between
 *     graphs through a backend's resident-weight cache), PARAM (storage that
 *     lives on the backend across runs and graphs and may be written by ops:
 *     trainable heads, optimiser state; never shared through that cache),
 *     INPUT (written before each run) and ACTIVATION (computed; placed in one
 *     arena by the planner, which reuses bytes once their last reader ran).
 *   - Op params are compile-time constants on every backend. Anything that
 *     changes from one run to the next (a learning rate, a step count) is an
 *     input tensor.
 *   - A tensor's shape never changes after creation. A reshape is a view: a
 *     new tensor over the same bytes (view_src).
 *   - The op list says per op how many sources it has, which of them it
 *     writes in place (its result is then a view of that source) and whether
 *     it has side effects. An op is run when its result is an output, is read
 *     by an op that runs, or has side effects; every other op is pruned.
 *   - Every differentiable op has a backward builder in one table
 *     (pclip__op_backward, autograd.c), checked by finite differences. */
#ifndef PCLIP_GRAPH_H
#define PCLIP_GRAPH_H

#include "internal.h"

#define PCLIP__MAX_DIMS 4
#define PCLIP__MAX_SRC 6
#define PCLIP__ALIGN 256 /* byte alignment of every planned tensor (>= any GPU's min offset) */

/* ---- the op list ---- */

/* Op flags (the list's `flags` column). */
#define PCLIP__OPF_SIDE_EFFECT 1 /* never pruned: it writes a source in place */

/* X(ENUM, name, n_src, writes, flags, formula)
 *   n_src    the op's source slots (absent optional sources are NULL); a
 *            backend binds exactly these
 *   writes   bit i set: source i is written in place
 *   flags    PCLIP__OPF_*
 * The parameter struct of op `name` is pclip__<name>_params. Sources, in
 * order:
 *   matmul        a, b, bias?, residual?
 *   add, mul      a, b (broadcast)
 *   scale, act, softmax, l2_norm, attention (qkv), patches (pixels)   x
 *   layer_norm    x, gamma, beta
 *   class_concat  x, cls
 *   gather_rows   table, idx (int32)
 *   sgd           p (PARAM, written), g (same shape), lr ([1], an input)
 *   topk, transpose, sum_rows   x
 *   act_grad      x, dy
 *   layer_norm_grad  x, gamma, dy
 *   l2_norm_grad  x, dy
 *   clip_loss     s, t
 *   clip_loss_grad   s, t, dy
 *   adamw         p (PARAM, written), g, m (PARAM, written), v (PARAM, written),
 *                 h ([3], an input) */
#define PCLIP_OP_LIST(X)                                                                           \
    X(MATMUL, matmul, 4, 0, 0, "y = act(a @ op(b) + bias) + residual")                             \
    X(ADD, add, 2, 0, 0, "y = a + b, b broadcast over dims where it has size 1")                   \
    X(MUL, mul, 2, 0, 0, "y = a * b, b broadcast over dims where it has size 1")                   \
    X(SCALE, scale, 1, 0, 0, "y = a * s")                                                          \
    X(LAYER_NORM, layer_norm, 3, 0, 0, "y = (x - mean) / sqrt(var + eps) * g + b, per row")        \
    X(ACT, act, 1, 0, 0, "y = quick_gelu(x) | gelu(x) | gelu_tanh(x)")                             \
    X(SOFTMAX, softmax, 1, 0, 0, "y = softmax(x * scale + causal mask), per row")                  \
    X(ATTENTION, attention, 1, 0, 0, "y = softmax(q k^T * scale + mask) v, per sequence and head") \
    X(PATCHES, patches, 1, 0, 0, "y[b*G+g, c*p*p+i*p+j] = x[b, c, gy*p+i, gx*p+j] (im2col)")       \
    X(CLASS_CONCAT, class_concat, 2, 0, 0, "y[b, 0] = cls, y[b, 1+t] = x[b*T+t]")                  \
    X(GATHER_ROWS, gather_rows, 2, 0, 0, "y[i] = table[idx[i]]")                                   \
    X(L2_NORM, l2_norm, 1, 0, 0, "y = x / max(||x||, eps), per row")                               \
    X(SGD, sgd, 3, 0x1, PCLIP__OPF_SIDE_EFFECT, "p -= lr[0] * g, in place")                       \
    X(TOPK, topk, 1, 0, 0, "y[r] = the k largest x[r, j] then their j (as float), per row")     \
    X(TRANSPOSE, transpose, 1, 0, 0, "y[j, i] = x[i, j]")                                          \
    X(SUM_ROWS, sum_rows, 1, 0, 0, "y[j] = sum_i x[i, j]")                                         \
    X(ACT_GRAD, act_grad, 2, 0, 0, "y = dy * act'(x)")                                             \
    X(LAYER_NORM_GRAD, layer_norm_grad, 3, 0, 0,                                                   \
      "y = d layer_norm / d x (mode 0) | dy * xhat (mode 1), per row")                             \
    X(L2_NORM_GRAD, l2_norm_grad, 2, 0, 0, "y = dy / n - x (x . dy) / n^3, n = max(||x||, eps)") \
    X(CLIP_LOSS, clip_loss, 2, 0, 0,                                                               \
      "y = (CE of rows + CE of columns of exp(t[0]) s, labels i = i) / 2, mean over i")            \
    X(CLIP_LOSS_GRAD, clip_loss_grad, 3, 0, 0, "which 0: dy[0] d clip_loss / d s; 1: / d t")       \
    X(ADAMW, adamw, 5, 0xD, PCLIP__OPF_SIDE_EFFECT, "one torch.optim.AdamW step on p, m, v")

typedef enum pclip__op {
    PCLIP__OP_NONE = 0, /* weights and inputs */
#define PCLIP__X_OP_ENUM(E, n, ns, w, fl, f) PCLIP__OP_##E,
    PCLIP_OP_LIST(PCLIP__X_OP_ENUM)
#undef PCLIP__X_OP_ENUM
        PCLIP__OP_COUNT
} pclip__op;

/* The op's row of the list. */
typedef struct pclip__op_info {
    const char *name;
    const char *formula;
    int32_t n_src;
    uint32_t writes; /* bit i: source i is written in place */
    uint32_t flags;  /* PCLIP__OPF_* */
} pclip__op_info;

/* NULL for an op outside the list. */
const pclip__op_info *pclip__op_get(pclip__op op);
const char *pclip__op_name(pclip__op op);

/* ---- op parameters ----
 * 4-byte scalars only: the GLSL push-constant blocks and OpenCL kernel
 * arguments mirror these field for field. */

/* Activations are the public pclip_act (portclip/model.h): PCLIP_ACT_NONE (0,
 * only inside graphs), QUICK_GELU x * sigmoid(1.702 x), GELU
 * 0.5 x (1 + erf(x / sqrt 2)), GELU_TANH
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). The shaders and kernels
 * switch on these values. */

typedef struct pclip__matmul_params {
    int32_t batch; /* number of independent products */
    int32_t M, N, K;
    int32_t trans_b;        /* 1: b is [N, K] (a weight as nn.Linear stores it) */
    int32_t b_batch_stride; /* elements between b matrices; 0 = one b shared by all */
    int32_t has_bias, has_residual;
    int32_t act; /* pclip_act, applied before the residual add */
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
    int32_t kind; /* pclip_act */
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

/* src: p [n] (PARAM), g [n], lr [1]; the result is p itself (a view). */
typedef struct pclip__sgd_params {
    int32_t n;
} pclip__sgd_params;

/* src: x [rows, cols]; dst [rows, 2 k]: per row the k largest values in
 * descending order (columns 0..k-1), then their column indices as floats
 * (columns k..2k-1; exact since cols <= 2^24). Order: larger value first,
 * equal values by the lower column; -0 equals +0; NaN ranks below every
 * number (-inf included) and is returned as NaN. 1 <= k <= min(cols,
 * PCLIP__TOPK_MAX). Not differentiable. */
#define PCLIP__TOPK_MAX 256
#define PCLIP__TOPK_MAX_COLS (1 << 24)
typedef struct pclip__topk_params {
    int32_t rows, cols, k;
} pclip__topk_params;

/* ---- training ops (backward helpers, the contrastive loss, AdamW) ---- */

/* src: x [rows, cols]; dst [cols, rows]. */
typedef struct pclip__transpose_params {
    int32_t rows, cols;
} pclip__transpose_params;

/* src: x [rows, cols]; dst [cols]: the sum of each column (a bias gradient). */
typedef struct pclip__sum_rows_params {
    int32_t rows, cols;
} pclip__sum_rows_params;

/* src: x, dy (n elements each); dst = dy * act'(x) for act pclip_act `kind`
 * (the derivative of the act op's formula for that kind). */
typedef struct pclip__act_grad_params {
    int32_t n;
    int32_t kind;
} pclip__act_grad_params;

/* src: x [rows, cols], gamma [cols], dy [rows, cols]; per row with
 * xhat = (x - mean) / sqrt(var + eps) (var biased, as layer_norm):
 *   mode 0: dst = (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)) / sqrt(var + eps)
 *           (d layer_norm / d x)
 *   mode 1: dst = dy * xhat (its sum over rows is d layer_norm / d gamma; gamma unused) */
typedef struct pclip__layer_norm_grad_params {
    int32_t rows, cols;
    float eps;
    int32_t mode;
} pclip__layer_norm_grad_params;

/* src: x [rows, cols], dy [rows, cols]; per row with n = max(||x||, eps):
 * dst = dy / n - x (x . dy) / n^3 where ||x|| >= eps (or is NaN), else
 * dy / eps (the gradient of l2_norm with the same eps; at ||x|| = eps the
 * clamp passes the gradient, as torch's clamp_min does). */
typedef struct pclip__l2_norm_grad_params {
    int32_t rows, cols;
    float eps;
} pclip__l2_norm_grad_params;

/* The symmetric contrastive loss of CLIP over a batch of n pairs.
 * src: s [n, n] (cosine similarities: image i against text j), t [1] (the
 * logit scale's log, a PARAM); with L = exp(t[0]) * s,
 *   dst [1] = (mean_i CE(L[i, :], i) + mean_j CE(L[:, j], j)) / 2,
 * CE(z, c) = logsumexp(z) - z[c]. fp32 with the maximum subtracted. */
typedef struct pclip__clip_loss_params {
    int32_t n;
} pclip__clip_loss_params;

/* src: s [n, n], t [1], dy [1] (the loss's gradient, usually 1). With
 * P = row softmax of L, Q = column softmax of L, dL = dy[0] (P + Q - 2 I) / (2 n):
 *   which 0: dst [n, n] = exp(t[0]) dL      (d loss / d s)
 *   which 1: dst [1] = sum(dL * L)          (d loss / d t) */
typedef struct pclip__clip_loss_grad_params {
    int32_t n;
    int32_t which;
} pclip__clip_loss_grad_params;

/* One step of torch.optim.AdamW (torch 1.13's single-tensor code) on n
 * elements, in place. src: p, g, m, v, h with h = {1 - lr * weight_decay,
 * lr / (1 - beta1^step), sqrt(1 - beta2^step)} (per-step values, an input;
 * the host computes them in double and rounds once). Per element, in fp32:
 *   p = p * h[0]
 *   m = m * beta1 + g * omb1
 *   v = v * beta2 + g * g * omb2
 *   p = p - h[1] * m / (sqrt(v) / h[2] + eps)
 *   p = min(p, clamp_max)       when has_clamp (logit_scale <= ln 100)
 * omb1, omb2 = 1 - beta1, 1 - beta2 rounded once from double. The result is
 * a view of v (the op writes p, m and v). */
typedef struct pclip__adamw_params {
    int32_t n;
    float beta1, beta2, omb1, omb2, eps;
    int32_t has_clamp;
    float clamp_max;
} pclip__adamw_params;

typedef union pclip__op_params {
#define PCLIP__X_OP_PARAMS(E, n, ns, w, fl, f) pclip__##n##_params n;
    PCLIP_OP_LIST(PCLIP__X_OP_PARAMS)
#undef PCLIP__X_OP_PARAMS
} pclip__op_params;

/* ---- tensors and graphs ---- */

typedef enum pclip__dtype { PCLIP__DTYPE_F32, PCLIP__DTYPE_I32, PCLIP__DTYPE_COUNT } pclip__dtype;

typedef enum pclip__tensor_kind {
    PCLIP__TENSOR_WEIGHT,     /* host data borrowed, read-only, cached by backends */
    PCLIP__TENSOR_INPUT,      /* written before each run */
    PCLIP__TENSOR_ACTIVATION, /* computed, placed by the planner */
    PCLIP__TENSOR_PARAM,      /* backend-resident and mutable (a pclip__param) */
    PCLIP__TENSOR_KIND_COUNT
} pclip__tensor_kind;

/* Backend-resident storage of a PARAM tensor: created on one backend,
 * used by every graph compiled there (graph/backend.h creates, writes, reads
 * and destroys it). */
typedef struct pclip__param {
    char name[96];
    struct pclip_backend *backend; /* borrowed */
    void *handle;                  /* the backend's */
    int32_t ndim;
    int64_t ne[PCLIP__MAX_DIMS];
    size_t nbytes;
} pclip__param;

typedef struct pclip__tensor {
    char name[96];
    int32_t id; /* index in the graph: creation (= execution) order */
    pclip__dtype dtype;
    pclip__tensor_kind kind; /* a view has its storage's kind */
    int32_t ndim;
    int64_t ne[PCLIP__MAX_DIMS]; /* sizes, innermost last; fixed at creation */
    size_t nbytes;
    pclip__op op;
    int32_t n_src; /* = the op's n_src */
    struct pclip__tensor *src[PCLIP__MAX_SRC];
    pclip__op_params params;
    bool is_output;
    /* A view (a reshape, or the result of an op that writes a source in
     * place) has no bytes of its own: it is the bytes of view_src, which is
     * never itself a view. NULL for every other tensor. */
    struct pclip__tensor *view_src;
    const void *data; /* weights: host data, borrowed */
    /* weights: data lies in the checkpoint's private read-only copy
     * (pclip__mmap), valid and unchanged while the model lives */
    bool data_mapped;
    struct pclip__param *param; /* PARAM: its storage on the backend, borrowed */
    /* set by the planner */
    size_t offset;    /* inputs and activations: byte offset in the arena */
    int32_t last_use; /* id of the last op that reads it (or a view of it) */
} pclip__tensor;

/* The tensor whose bytes t is: t itself, or what it views. */
static inline const pclip__tensor *pclip__storage(const pclip__tensor *t) {
    return t && t->view_src ? t->view_src : t;
}

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
                             pclip__tensor *bias, pclip_act act, pclip__tensor *residual);
/* Batched: a [batch, M, K] with b [batch, N, K] (trans_b) or [batch, K, N]. */
pclip__tensor *pclip__matmul(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b,
                             bool trans_b);
pclip__tensor *pclip__add(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b);
pclip__tensor *pclip__mul(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b);
pclip__tensor *pclip__scale(pclip__graph *g, const char *name, pclip__tensor *a, float s);
pclip__tensor *pclip__layer_norm(pclip__graph *g, const char *name, pclip__tensor *x,
                                 pclip__tensor *gamma, pclip__tensor *beta, float eps);
pclip__tensor *pclip__act(pclip__graph *g, const char *name, pclip__tensor *x,
                          pclip_act kind);
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
/* Per row of x [rows, cols]: the k largest values, then their column indices
 * as floats: [rows, 2 k] (pclip__topk_params has the order and limits). */
pclip__tensor *pclip__topk(pclip__graph *g, const char *name, pclip__tensor *x, int32_t k);

/* A view of t with another shape and the same element count (t keeps its
 * own shape). NULL if the counts differ. */
pclip__tensor *pclip__reshape(pclip__graph *g, pclip__tensor *t, int32_t ndim, const int64_t *ne);

/* A PARAM tensor over `p` (graph/param.h), with p's shape. */
pclip__tensor *pclip__param_tensor(pclip__graph *g, struct pclip__param *p);
/* p -= lr[0] * g in place, for p a PARAM and lr a [1] tensor (an input, so
 * that every run may use another rate). Returns the op's result, a view of
 * p; the op has side effects, so it runs whether or not anything reads it. */
pclip__tensor *pclip__sgd(pclip__graph *g, const char *name, pclip__tensor *p,
                          pclip__tensor *grad, pclip__tensor *lr);

/* Training ops (their params above have the formulas). x of transpose and
 * sum_rows: 2-D; the row ops take any shape as [nrows, innermost]. */
pclip__tensor *pclip__transpose(pclip__graph *g, const char *name, pclip__tensor *x);
pclip__tensor *pclip__sum_rows(pclip__graph *g, const char *name, pclip__tensor *x);
pclip__tensor *pclip__act_grad(pclip__graph *g, const char *name, pclip__tensor *x,
                               pclip__tensor *dy, pclip_act kind);
pclip__tensor *pclip__layer_norm_grad(pclip__graph *g, const char *name, pclip__tensor *x,
                                      pclip__tensor *gamma, pclip__tensor *dy, float eps,
                                      int32_t mode);
pclip__tensor *pclip__l2_norm_grad(pclip__graph *g, const char *name, pclip__tensor *x,
                                   pclip__tensor *dy, float eps);
/* s [n, n], t [1] -> [1]. */
pclip__tensor *pclip__clip_loss(pclip__graph *g, const char *name, pclip__tensor *s,
                                pclip__tensor *t);
/* s [n, n], t [1], dy [1] -> [n, n] (which 0) or [1] (which 1). */
pclip__tensor *pclip__clip_loss_grad(pclip__graph *g, const char *name, pclip__tensor *s,
                                     pclip__tensor *t, pclip__tensor *dy, int32_t which);
/* p, m, v: PARAMs of one shape; g: the gradient (same element count); h: a
 * [3] tensor (pclip__adamw_params). clamp_max INFINITY: no clamp. Returns a
 * view of v; the op has side effects. */
pclip__tensor *pclip__adamw(pclip__graph *g, const char *name, pclip__tensor *p,
                            pclip__tensor *grad, pclip__tensor *m, pclip__tensor *v,
                            pclip__tensor *h, double beta1, double beta2, float eps,
                            float clamp_max);

/* ---- the backward table (autograd.c) ---- */

/* Builds, in g, the gradient of a loss with respect to t->src[k], given dy,
 * its gradient with respect to t (t's shape). Returns NULL when the op is not
 * differentiable with respect to that source (or on a builder error, then
 * recorded in g->status). */
typedef pclip__tensor *(*pclip__backward_fn)(pclip__graph *g, const pclip__tensor *t, int32_t k,
                                             pclip__tensor *dy);
/* Indexed by op; NULL: not differentiable. Written only here (and by the
 * test that proves the gradient check can fail). */
extern pclip__backward_fn pclip__op_backward[PCLIP__OP_COUNT];
pclip__tensor *pclip__backward(pclip__graph *g, const pclip__tensor *t, int32_t k,
                               pclip__tensor *dy);

/* Reverse mode over the backward table: builds in g the gradients of
 * `loss` (a [1] tensor) with respect to each of wrt[0..n) (params, inputs
 * or activations that loss depends on), summing the contributions of
 * every path (add). grads[i] gets wrt[i]'s shape, or NULL when loss does
 * not depend on wrt[i]. An op on a path without a backward builder for
 * that source is an error naming it; on any error the graph is left as it
 * was. d loss / d loss is a one-element WEIGHT over static storage (nothing
 * for the caller to keep or fill); a reshape passes its gradient, reshaped,
 * to the tensor it views. */
pclip_status pclip__gradients(pclip__graph *g, pclip__tensor *loss, int32_t n,
                              pclip__tensor *const *wrt, pclip__tensor **grads);

/* Marks a tensor computed in the arena (an activation, or a view of one) as
 * an output: its bytes are not reused, and it can be read after a run. */
pclip_status pclip__graph_output(pclip__graph *g, pclip__tensor *t);

/* Computes last uses and arena offsets (first fit, PCLIP__ALIGN-aligned) of
 * inputs and activations; views take their storage's offset. Idempotent. */
pclip_status pclip__graph_plan(pclip__graph *g);

/* Elements of a tensor, and its rows/cols view (cols = innermost size). */
int64_t pclip__nelements(const pclip__tensor *t);
int64_t pclip__nrows(const pclip__tensor *t);

#endif
