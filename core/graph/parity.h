/* Backend parity: the shared list of one-op cases, and the runner that
 * compares two backends on one of them. The test suites (check_ops for each
 * backend) and the `portclip verify` command use it; it knows backends only
 * through the backend interface, so any pair can be compared (the CPU
 * reference is the usual tie-breaker).
 *
 * A case is one op with fixed sizes and flags. The runner builds a one-op
 * graph, fills its inputs and weights with uniform random numbers from a
 * seed derived from the case's name (so a case replays the same data however
 * the list grows), runs it on both backends and compares the outputs:
 *   - normalised mean squared error, NMSE = sum((t - r)^2) / sum(r^2), against
 *     the case's tolerance; a tolerance of 0 means bit-exact (data movement
 *     and single IEEE operations);
 *   - NaN and +-inf must sit in the same places on both backends;
 *   - guard bytes: before the run the whole arena is filled with a sentinel
 *     (debug_arena), and afterwards every byte outside the inputs and the
 *     output [offset, offset + nbytes) must still hold it. */
#ifndef PCLIP_PARITY_H
#define PCLIP_PARITY_H

#include "graph/backend.h"

enum {
    PCLIP__PARITY_BIAS = 1 << 0,         /* matmul: + bias */
    PCLIP__PARITY_RESIDUAL = 1 << 1,     /* matmul: + residual */
    PCLIP__PARITY_TRANS_B = 1 << 2,      /* batched matmul: b is [N, K] */
    PCLIP__PARITY_SHARED_B = 1 << 3,     /* batched matmul: one b for every product */
    PCLIP__PARITY_B_WEIGHT = 1 << 4,     /* matmul: b is a weight (fast paths pack it) */
    PCLIP__PARITY_CAUSAL = 1 << 5,       /* softmax, attention */
    PCLIP__PARITY_NAN_INF = 1 << 6,      /* a NaN, a +inf and a -inf among the inputs */
    PCLIP__PARITY_WIDE = 1 << 7,         /* act: inputs over [-12, 12] */
    PCLIP__PARITY_ZERO_ROW = 1 << 8,     /* l2_norm: row 0 is all zeros */
    PCLIP__PARITY_OUT_OF_RANGE = 1 << 9, /* gather_rows: indices -1 and table_rows too */
    PCLIP__PARITY_TWICE = 1 << 10,       /* sgd: two steps in one graph */
    PCLIP__PARITY_TIES = 1 << 11,        /* topk: values on a grid of 1/4 (ties), -0 and +0 */
};

/* One case. The sizes d[] per op:
 *   matmul        batch (0: a linear layer a [M, K] @ b [N, K]^T), M, N, K
 *   add, mul      a's shape in d[0..3], b's in d[4..7], right-aligned, 0 = no dim
 *   scale, act    n
 *   layer_norm, softmax, l2_norm   rows, cols
 *   attention     batch, seq, heads, head_dim
 *   patches       batch, channels, size, patch
 *   class_concat  batch, tokens, width
 *   gather_rows   table_rows, cols, number of indices
 *   topk          rows, cols, k
 *   transpose, sum_rows   rows, cols
 *   act_grad      n (act: the kind; x and dy each n elements)
 *   layer_norm_grad  rows, cols, mode (f: eps)
 *   l2_norm_grad  rows, cols (f: eps)
 *   sgd           n (the PARAM is made on each backend from the same data; the
 *                 output is the updated param, read through scale(., 1)) */
typedef struct pclip__parity_case {
    pclip__op op;
    int32_t d[8];
    int32_t flags; /* PCLIP__PARITY_* */
    int32_t act;   /* matmul, act: pclip_act */
    float f;       /* layer_norm, l2_norm: eps; softmax, scale: scale */
    double tol;    /* NMSE tolerance; 0: bit-exact */
} pclip__parity_case;

size_t pclip__parity_count(void);
/* Case i; false when i >= pclip__parity_count(). */
bool pclip__parity_get(size_t i, pclip__parity_case *out);
/* "matmul linear M=7 N=17 K=64 b=weight bias act=gelu residual": the op and
 * every parameter, enough to replay the case. */
void pclip__parity_name(const pclip__parity_case *c, char *buf, size_t n);

typedef struct pclip__parity_result {
    char name[192];
    size_t count;            /* output elements */
    double tol, nmse;        /* over the elements finite on both sides */
    double max_abs, max_rel; /* max_rel over elements with |ref| >= 1e-3 max |ref| */
    size_t worst;            /* element with the largest absolute error */
    float worst_ref, worst_test;
    size_t nonfinite_mismatch; /* elements NaN or +-inf on one side only, or inf of other sign */
    size_t bit_diff;           /* elements whose bits differ (NaNs of any payload are equal) */
    int64_t guard_ref,
        guard_test; /* arena bytes changed outside the op's tensors; -1: not checked */
    bool passed;
    char why[256]; /* what failed, when !passed */
} pclip__parity_result;

/* Runs case i on `ref` and `test` and compares. Returns OK when both ran,
 * whether or not they agree (see out->passed); an error status when a case
 * could not be built, compiled or run, with the case and backend named in
 * the context's message. */
pclip_status pclip__parity_run(pclip_ctx_t ctx, pclip_backend_t ref, pclip_backend_t test, size_t i,
                               pclip__parity_result *out);

/* ---- gradient mode: backward builders against finite differences ---- */

/* One gradient case: the gradient of L = sum(w * op(sources)) with respect
 * to source `src`, for random sources and weights w. The sizes d[]:
 *   scale   n (f: the scale)
 *   add, mul  rows, cols, then for add 1 when b is [cols] (broadcast over the
 *           rows; else a and b have the same shape)
 *   matmul  M, N, K, form: 0 a linear layer a [M, K] @ b [N, K]^T + bias + residual;
 *           1 a [1, M, K] @ b [1, N, K]^T; 2 a [1, M, K] @ b [1, K, N]
 *   transpose  rows, cols
 *   act     rows, cols, kind (pclip_act); f: the inputs' range [-f, f]
 *   layer_norm, l2_norm  rows, cols (f: eps; layer_norm's sources x, gamma, beta)
 *   clip_loss  n (s [n, n] in [-1, 1], t [1] in [-1, 1]; f: the finite-difference
 *              step, a power of two, as the loss is not linear) */
typedef struct pclip__grad_case {
    pclip__op op;
    int32_t src;
    int32_t d[4];
    float f; /* scale: the scale; clip_loss: the step (else 1/16) */
    double tol; /* max |analytic - numeric| / max |numeric| */
} pclip__grad_case;

typedef struct pclip__grad_result {
    char name[128];
    size_t count;            /* elements of the source */
    double max_err, max_abs; /* max |analytic - numeric|, max |numeric| */
    bool passed;
    char why[192];
} pclip__grad_result;

size_t pclip__parity_grad_count(void);
bool pclip__parity_grad_get(size_t i, pclip__grad_case *out);
void pclip__parity_grad_name(const pclip__grad_case *c, char *buf, size_t n);
/* Builds the gradient with the op's backward builder and runs it on `test`;
 * the numeric gradient comes from central differences of L computed on
 * `ref`. Returns OK when both ran (see out->passed). */
pclip_status pclip__parity_grad_run(pclip_ctx_t ctx, pclip_backend_t ref, pclip_backend_t test,
                                    size_t i, pclip__grad_result *out);

#endif
