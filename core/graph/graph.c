/* Graph building with shape checks, and the buffer planner. Execution lives
 * in the backends; this file only describes the work and where each tensor's
 * bytes go. */
#include "graph/graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- the op list ---- */

static const pclip__op_info op_infos[] = {
    {"none", "", 0, 0, 0},
#define PCLIP__X_OP_INFO(E, n, ns, w, fl, f) {#n, f, ns, w, fl},
    PCLIP_OP_LIST(PCLIP__X_OP_INFO)
#undef PCLIP__X_OP_INFO
};
_Static_assert(sizeof op_infos / sizeof op_infos[0] == PCLIP__OP_COUNT, "one row per op");
#define PCLIP__X_OP_CHECK(E, n, ns, w, fl, f)                                                      \
    _Static_assert((ns) >= 1 && (ns) <= PCLIP__MAX_SRC && ((w) >> (ns)) == 0,                      \
                   #n ": sources within PCLIP__MAX_SRC, written ones among them");                \
    _Static_assert(!(w) || ((fl)&PCLIP__OPF_SIDE_EFFECT), #n ": an in-place op has side effects");
PCLIP_OP_LIST(PCLIP__X_OP_CHECK)
#undef PCLIP__X_OP_CHECK

const pclip__op_info *pclip__op_get(pclip__op op) {
    return (unsigned)op < PCLIP__OP_COUNT ? &op_infos[op] : NULL;
}

const char *pclip__op_name(pclip__op op) {
    return (unsigned)op < PCLIP__OP_COUNT ? op_infos[op].name : "?";
}

/* ---- graphs ---- */

pclip_status pclip__graph_create(pclip_ctx_t ctx, pclip__graph **out) {
    pclip__graph *g = pclip__calloc(1, sizeof *g);
    if (!g) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "graph: out of memory");
    g->ctx = ctx;
    *out = g;
    return PCLIP_STATUS_OK;
}

void pclip__graph_destroy(pclip__graph *g) {
    if (!g) return;
    for (int32_t i = 0; i < g->n_tensors; i++) pclip__free(g->tensors[i]);
    pclip__free(g->tensors);
    pclip__free(g);
}

int64_t pclip__nelements(const pclip__tensor *t) {
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) n *= t->ne[i];
    return n;
}

int64_t pclip__nrows(const pclip__tensor *t) {
    return t->ndim ? pclip__nelements(t) / t->ne[t->ndim - 1] : 1;
}

/* Records "op 'name': <message>" naming the shapes of the sources. */
static void *shape_error(pclip__graph *g, pclip__op op, const char *name, int n_src,
                         pclip__tensor *const *src, const char *fmt, ...) {
    char msg[256], shapes[512] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t u = 0;
    for (int i = 0; i < n_src && src[i] && u < sizeof shapes; i++) {
        char s[96];
        pclip__shape_str(s, sizeof s, src[i]->ne, src[i]->ndim);
        u += (size_t)snprintf(shapes + u, sizeof shapes - u, "%s%s %s", i ? ", " : "",
                              src[i]->name, s);
    }
    pclip_status st = pclip__err(g->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                                 "graph: %s '%s': %s (sources: %s)", pclip__op_name(op), name, msg,
                                 shapes);
    if (!g->status) g->status = st;
    return NULL;
}

static pclip__tensor *new_tensor(pclip__graph *g, const char *name, pclip__dtype dtype,
                                 pclip__tensor_kind kind, int32_t ndim, const int64_t *ne) {
    if (ndim < 0 || ndim > PCLIP__MAX_DIMS) {
        pclip_status st = pclip__err(g->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                                     "graph: tensor '%s': %d dimensions", name, ndim);
        if (!g->status) g->status = st;
        return NULL;
    }
    size_t count = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (ne[i] <= 0 || !pclip__mul_size(count, (size_t)ne[i], &count) ||
            count > ((size_t)1 << 40)) {
            pclip_status st = pclip__err(g->ctx, PCLIP_STATUS_LIMIT,
                                         "graph: tensor '%s': size %lld in dim %d", name,
                                         (long long)ne[i], i);
            if (!g->status) g->status = st;
            return NULL;
        }
    }
    if (g->n_tensors == g->cap) {
        int32_t cap = g->cap ? g->cap * 2 : 64;
        pclip__tensor **grown = pclip__realloc(g->tensors, (size_t)cap * sizeof *grown);
        if (!grown) {
            if (!g->status) g->status = PCLIP_STATUS_OUT_OF_MEMORY;
            pclip__err(g->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "graph: out of memory");
            return NULL;
        }
        g->tensors = grown;
        g->cap = cap;
    }
    pclip__tensor *t = pclip__calloc(1, sizeof *t);
    if (!t) {
        if (!g->status) g->status = PCLIP_STATUS_OUT_OF_MEMORY;
        pclip__err(g->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "graph: out of memory");
        return NULL;
    }
    snprintf(t->name, sizeof t->name, "%s", name);
    t->id = g->n_tensors;
    t->dtype = dtype;
    t->kind = kind;
    t->ndim = ndim;
    for (int32_t i = 0; i < ndim; i++) t->ne[i] = ne[i];
    t->nbytes = count * 4; /* f32 and i32 */
    t->last_use = -1;
    g->tensors[g->n_tensors++] = t;
    g->planned = false;
    return t;
}

/* A new op tensor with the op's source slots (n given, the rest NULL). An
 * op that writes a source in place gets a view of it as its result. */
static pclip__tensor *new_op(pclip__graph *g, const char *name, pclip__op op, int32_t ndim,
                             const int64_t *ne, int n, pclip__tensor *const *src) {
    const pclip__op_info *info = pclip__op_get(op);
    pclip__tensor *t = new_tensor(g, name, PCLIP__DTYPE_F32, PCLIP__TENSOR_ACTIVATION, ndim, ne);
    if (!t) return NULL;
    t->op = op;
    t->n_src = info->n_src;
    for (int i = 0; i < n && i < info->n_src; i++) t->src[i] = src[i];
    for (int i = 0; i < info->n_src; i++)
        if (info->writes >> i & 1) {
            pclip__tensor *base = (pclip__tensor *)pclip__storage(src[i]);
            t->view_src = base;
            t->kind = base->kind;
            t->data = base->data;
            t->param = base->param;
        }
    return t;
}

pclip__tensor *pclip__weight(pclip__graph *g, const char *name, int32_t ndim, const int64_t *ne,
                             const float *data) {
    pclip__tensor *t = new_tensor(g, name, PCLIP__DTYPE_F32, PCLIP__TENSOR_WEIGHT, ndim, ne);
    if (t) t->data = data;
    return t;
}

pclip__tensor *pclip__input(pclip__graph *g, const char *name, pclip__dtype dtype, int32_t ndim,
                            const int64_t *ne) {
    return new_tensor(g, name, dtype, PCLIP__TENSOR_INPUT, ndim, ne);
}

static bool is_f32(const pclip__tensor *t) { return t->dtype == PCLIP__DTYPE_F32; }

#define SRC(...) ((pclip__tensor *const[]){__VA_ARGS__})
#define FAIL(op, n, ...) return shape_error(g, op, name, n, __VA_ARGS__)

pclip__tensor *pclip__linear(pclip__graph *g, const char *name, pclip__tensor *a,
                             pclip__tensor *b, pclip__tensor *bias, pclip_act act,
                             pclip__tensor *residual) {
    pclip__tensor *const src[4] = {a, b, bias, residual};
    if (!a || !b) return NULL;
    int64_t K = a->ne[a->ndim - 1];
    if (b->ndim != 2 || b->ne[1] != K || !is_f32(a) || !is_f32(b) || a->ndim < 1)
        FAIL(PCLIP__OP_MATMUL, 2, src, "a [.., K] needs b [N, K]");
    int64_t N = b->ne[0], M = pclip__nrows(a);
    if (bias && (bias->ndim != 1 || bias->ne[0] != N))
        FAIL(PCLIP__OP_MATMUL, 3, src, "bias must be [%lld]", (long long)N);
    if (residual && (pclip__nrows(residual) != M || residual->ne[residual->ndim - 1] != N))
        FAIL(PCLIP__OP_MATMUL, 4, src, "residual must be [%lld, %lld]", (long long)M,
             (long long)N);
    if ((unsigned)act >= PCLIP_ACT_COUNT) FAIL(PCLIP__OP_MATMUL, 2, src, "bad activation");
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        FAIL(PCLIP__OP_MATMUL, 2, src, "too large");
    int64_t ne[4];
    memcpy(ne, a->ne, sizeof ne);
    ne[a->ndim - 1] = N;
    pclip__tensor *t = new_op(g, name, PCLIP__OP_MATMUL, a->ndim, ne, 4, src);
    if (!t) return NULL;
    /* fixed slots: src[2] bias, src[3] residual, either may be NULL */
    t->params.matmul = (pclip__matmul_params){.batch = 1, .M = (int32_t)M, .N = (int32_t)N,
                                              .K = (int32_t)K, .trans_b = 1, .b_batch_stride = 0,
                                              .has_bias = bias != NULL,
                                              .has_residual = residual != NULL, .act = act};
    return t;
}

pclip__tensor *pclip__matmul(pclip__graph *g, const char *name, pclip__tensor *a,
                             pclip__tensor *b, bool trans_b) {
    pclip__tensor *const src[4] = {a, b, NULL, NULL};
    if (!a || !b) return NULL;
    if (a->ndim != 3 || b->ndim != 3 || !is_f32(a) || !is_f32(b) ||
        (b->ne[0] != a->ne[0] && b->ne[0] != 1))
        FAIL(PCLIP__OP_MATMUL, 2, src, "needs a [batch, M, K] and b [batch or 1, ., .]");
    int64_t batch = a->ne[0], M = a->ne[1], K = a->ne[2];
    int64_t N = trans_b ? b->ne[1] : b->ne[2];
    if ((trans_b ? b->ne[2] : b->ne[1]) != K)
        FAIL(PCLIP__OP_MATMUL, 2, src, "inner sizes differ");
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || batch > INT32_MAX ||
        (b->ne[0] != 1 && N * K > INT32_MAX))
        FAIL(PCLIP__OP_MATMUL, 2, src, "too large");
    int64_t ne[3] = {batch, M, N};
    pclip__tensor *t = new_op(g, name, PCLIP__OP_MATMUL, 3, ne, 4, src);
    if (!t) return NULL;
    t->params.matmul = (pclip__matmul_params){
        .batch = (int32_t)batch, .M = (int32_t)M, .N = (int32_t)N, .K = (int32_t)K,
        .trans_b = trans_b, .b_batch_stride = b->ne[0] == 1 ? 0 : (int32_t)(N * K)};
    return t;
}

static pclip__tensor *binary(pclip__graph *g, const char *name, pclip__op op, pclip__tensor *a,
                             pclip__tensor *b) {
    if (!a || !b) return NULL;
    if (!is_f32(a) || !is_f32(b) || b->ndim > a->ndim)
        FAIL(op, 2, SRC(a, b), "b must have at most a's dimensions");
    pclip__binary_params p;
    int off = 4 - a->ndim, offb = 4 - b->ndim;
    for (int i = 0; i < 4; i++) {
        p.ne[i] = i < off ? 1 : (int32_t)a->ne[i - off];
        p.ne_b[i] = i < offb ? 1 : (int32_t)b->ne[i - offb];
        if (p.ne_b[i] != p.ne[i] && p.ne_b[i] != 1)
            FAIL(op, 2, SRC(a, b), "b's size %d in dim %d neither matches a's %d nor is 1",
                 p.ne_b[i], i - off, p.ne[i]);
    }
    if (pclip__nelements(a) > INT32_MAX) FAIL(op, 2, SRC(a, b), "too large");
    pclip__tensor *t = new_op(g, name, op, a->ndim, a->ne, 2, SRC(a, b));
    if (t) t->params.add = p;
    return t;
}

pclip__tensor *pclip__add(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b) {
    return binary(g, name, PCLIP__OP_ADD, a, b);
}

pclip__tensor *pclip__mul(pclip__graph *g, const char *name, pclip__tensor *a, pclip__tensor *b) {
    return binary(g, name, PCLIP__OP_MUL, a, b);
}

pclip__tensor *pclip__scale(pclip__graph *g, const char *name, pclip__tensor *a, float s) {
    if (!a) return NULL;
    if (!is_f32(a) || pclip__nelements(a) > INT32_MAX)
        FAIL(PCLIP__OP_SCALE, 1, SRC(a), "needs an f32 tensor under 2^31 elements");
    pclip__tensor *t = new_op(g, name, PCLIP__OP_SCALE, a->ndim, a->ne, 1, SRC(a));
    if (t) t->params.scale = (pclip__scale_params){(int32_t)pclip__nelements(a), s};
    return t;
}

pclip__tensor *pclip__layer_norm(pclip__graph *g, const char *name, pclip__tensor *x,
                                 pclip__tensor *gamma, pclip__tensor *beta, float eps) {
    if (!x || !gamma || !beta) return NULL;
    int64_t cols = x->ne[x->ndim - 1];
    if (!is_f32(x) || gamma->ndim != 1 || beta->ndim != 1 || gamma->ne[0] != cols ||
        beta->ne[0] != cols || pclip__nelements(x) > INT32_MAX)
        FAIL(PCLIP__OP_LAYER_NORM, 3, SRC(x, gamma, beta), "gamma and beta must be [%lld]",
             (long long)cols);
    pclip__tensor *t = new_op(g, name, PCLIP__OP_LAYER_NORM, x->ndim, x->ne, 3, SRC(x, gamma, beta));
    if (t)
        t->params.layer_norm =
            (pclip__layer_norm_params){(int32_t)pclip__nrows(x), (int32_t)cols, eps};
    return t;
}

pclip__tensor *pclip__act(pclip__graph *g, const char *name, pclip__tensor *x,
                          pclip_act kind) {
    if (!x) return NULL;
    if (!is_f32(x) || kind <= PCLIP_ACT_NONE || kind >= PCLIP_ACT_COUNT ||
        pclip__nelements(x) > INT32_MAX)
        FAIL(PCLIP__OP_ACT, 1, SRC(x), "bad activation %d", (int)kind);
    pclip__tensor *t = new_op(g, name, PCLIP__OP_ACT, x->ndim, x->ne, 1, SRC(x));
    if (t) t->params.act = (pclip__act_params){(int32_t)pclip__nelements(x), kind};
    return t;
}

pclip__tensor *pclip__softmax(pclip__graph *g, const char *name, pclip__tensor *x, float scale,
                              bool causal) {
    if (!x) return NULL;
    int64_t cols = x->ne[x->ndim - 1];
    if (!is_f32(x) || pclip__nelements(x) > INT32_MAX)
        FAIL(PCLIP__OP_SOFTMAX, 1, SRC(x), "needs an f32 tensor under 2^31 elements");
    pclip__tensor *t = new_op(g, name, PCLIP__OP_SOFTMAX, x->ndim, x->ne, 1, SRC(x));
    if (t)
        t->params.softmax = (pclip__softmax_params){(int32_t)pclip__nrows(x), (int32_t)cols,
                                                    causal, scale};
    return t;
}

pclip__tensor *pclip__attention(pclip__graph *g, const char *name, pclip__tensor *qkv,
                                int32_t batch, int32_t seq, int32_t heads, bool causal) {
    if (!qkv) return NULL;
    if (!is_f32(qkv) || qkv->ndim != 2 || batch <= 0 || seq <= 0 || heads <= 0 ||
        qkv->ne[0] != (int64_t)batch * seq || qkv->ne[1] % (3 * heads) != 0 ||
        pclip__nelements(qkv) > INT32_MAX)
        FAIL(PCLIP__OP_ATTENTION, 1, SRC(qkv), "needs qkv [%d * %d, 3 * heads(%d) * head_dim]",
             batch, seq, heads);
    int32_t head_dim = (int32_t)(qkv->ne[1] / (3 * heads));
    int64_t ne[2] = {qkv->ne[0], (int64_t)heads * head_dim};
    pclip__tensor *t = new_op(g, name, PCLIP__OP_ATTENTION, 2, ne, 1, SRC(qkv));
    if (t)
        t->params.attention = (pclip__attention_params){
            batch, seq, heads, head_dim, causal, 1.0f / sqrtf((float)head_dim)};
    return t;
}

pclip__tensor *pclip__patches(pclip__graph *g, const char *name, pclip__tensor *pixels,
                              int32_t patch) {
    if (!pixels) return NULL;
    if (!is_f32(pixels) || pixels->ndim != 4 || pixels->ne[2] != pixels->ne[3] || patch <= 0 ||
        pixels->ne[2] % patch != 0 || pclip__nelements(pixels) > INT32_MAX)
        FAIL(PCLIP__OP_PATCHES, 1, SRC(pixels),
             "needs square images [batch, channels, S, S] with S a multiple of %d", patch);
    int64_t grid = pixels->ne[2] / patch;
    int64_t ne[2] = {pixels->ne[0] * grid * grid, pixels->ne[1] * patch * patch};
    pclip__tensor *t = new_op(g, name, PCLIP__OP_PATCHES, 2, ne, 1, SRC(pixels));
    if (t)
        t->params.patches = (pclip__patches_params){(int32_t)pixels->ne[0], (int32_t)pixels->ne[1],
                                                    (int32_t)pixels->ne[2], patch};
    return t;
}

pclip__tensor *pclip__class_concat(pclip__graph *g, const char *name, pclip__tensor *x,
                                   pclip__tensor *cls, int32_t batch) {
    if (!x || !cls) return NULL;
    if (!is_f32(x) || x->ndim != 2 || cls->ndim != 1 || cls->ne[0] != x->ne[1] || batch <= 0 ||
        x->ne[0] % batch != 0 || (x->ne[0] + batch) * x->ne[1] > INT32_MAX)
        FAIL(PCLIP__OP_CLASS_CONCAT, 2, SRC(x, cls), "needs x [batch * T, W] and cls [W]");
    int64_t tokens = x->ne[0] / batch;
    int64_t ne[2] = {x->ne[0] + batch, x->ne[1]};
    pclip__tensor *t = new_op(g, name, PCLIP__OP_CLASS_CONCAT, 2, ne, 2, SRC(x, cls));
    if (t)
        t->params.class_concat =
            (pclip__class_concat_params){batch, (int32_t)tokens, (int32_t)x->ne[1]};
    return t;
}

pclip__tensor *pclip__gather_rows(pclip__graph *g, const char *name, pclip__tensor *table,
                                  pclip__tensor *idx) {
    if (!table || !idx) return NULL;
    if (!is_f32(table) || table->ndim != 2 || idx->dtype != PCLIP__DTYPE_I32 || idx->ndim != 1 ||
        table->ne[0] > INT32_MAX || idx->ne[0] * table->ne[1] > INT32_MAX)
        FAIL(PCLIP__OP_GATHER_ROWS, 2, SRC(table, idx), "needs table [rows, cols] and int32 idx [n]");
    int64_t ne[2] = {idx->ne[0], table->ne[1]};
    pclip__tensor *t = new_op(g, name, PCLIP__OP_GATHER_ROWS, 2, ne, 2, SRC(table, idx));
    if (t)
        t->params.gather_rows = (pclip__gather_rows_params){
            (int32_t)idx->ne[0], (int32_t)table->ne[1], (int32_t)table->ne[0]};
    return t;
}

pclip__tensor *pclip__l2_norm(pclip__graph *g, const char *name, pclip__tensor *x, float eps) {
    if (!x) return NULL;
    if (!is_f32(x) || pclip__nelements(x) > INT32_MAX)
        FAIL(PCLIP__OP_L2_NORM, 1, SRC(x), "needs an f32 tensor under 2^31 elements");
    pclip__tensor *t = new_op(g, name, PCLIP__OP_L2_NORM, x->ndim, x->ne, 1, SRC(x));
    if (t)
        t->params.l2_norm = (pclip__l2_norm_params){(int32_t)pclip__nrows(x),
                                                    (int32_t)x->ne[x->ndim - 1], eps};
    return t;
}

pclip__tensor *pclip__topk(pclip__graph *g, const char *name, pclip__tensor *x, int32_t k) {
    if (!x) return NULL;
    if (!is_f32(x) || x->ndim != 2 || x->ne[1] > PCLIP__TOPK_MAX_COLS || x->ne[0] > INT32_MAX ||
        k < 1 || k > PCLIP__TOPK_MAX || k > x->ne[1] || x->ne[0] * 2 * k > INT32_MAX)
        FAIL(PCLIP__OP_TOPK, 1, SRC(x),
             "needs f32 x [rows, cols] with cols <= 2^24 and 1 <= k (%d) <= min(cols, %d)", k,
             PCLIP__TOPK_MAX);
    int64_t ne[2] = {x->ne[0], 2 * (int64_t)k};
    pclip__tensor *t = new_op(g, name, PCLIP__OP_TOPK, 2, ne, 1, SRC(x));
    if (t) t->params.topk = (pclip__topk_params){(int32_t)x->ne[0], (int32_t)x->ne[1], k};
    return t;
}

/* ---- training ops ---- */

static bool same_shape(const pclip__tensor *a, const pclip__tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

pclip__tensor *pclip__transpose(pclip__graph *g, const char *name, pclip__tensor *x) {
    if (!x) return NULL;
    if (!is_f32(x) || x->ndim != 2 || pclip__nelements(x) > INT32_MAX)
        FAIL(PCLIP__OP_TRANSPOSE, 1, SRC(x), "needs f32 x [rows, cols] under 2^31 elements");
    int64_t ne[2] = {x->ne[1], x->ne[0]};
    pclip__tensor *t = new_op(g, name, PCLIP__OP_TRANSPOSE, 2, ne, 1, SRC(x));
    if (t) t->params.transpose = (pclip__transpose_params){(int32_t)x->ne[0], (int32_t)x->ne[1]};
    return t;
}

pclip__tensor *pclip__sum_rows(pclip__graph *g, const char *name, pclip__tensor *x) {
    if (!x) return NULL;
    if (!is_f32(x) || x->ndim != 2 || pclip__nelements(x) > INT32_MAX)
        FAIL(PCLIP__OP_SUM_ROWS, 1, SRC(x), "needs f32 x [rows, cols] under 2^31 elements");
    int64_t ne[1] = {x->ne[1]};
    pclip__tensor *t = new_op(g, name, PCLIP__OP_SUM_ROWS, 1, ne, 1, SRC(x));
    if (t) t->params.sum_rows = (pclip__sum_rows_params){(int32_t)x->ne[0], (int32_t)x->ne[1]};
    return t;
}

pclip__tensor *pclip__act_grad(pclip__graph *g, const char *name, pclip__tensor *x,
                               pclip__tensor *dy, pclip_act kind) {
    if (!x || !dy) return NULL;
    if (!is_f32(x) || !is_f32(dy) || !same_shape(x, dy) || pclip__nelements(x) > INT32_MAX)
        FAIL(PCLIP__OP_ACT_GRAD, 2, SRC(x, dy), "needs f32 x and dy of one shape");
    if (kind <= PCLIP_ACT_NONE || kind >= PCLIP_ACT_COUNT)
        FAIL(PCLIP__OP_ACT_GRAD, 2, SRC(x, dy), "bad activation %d", (int)kind);
    pclip__tensor *t = new_op(g, name, PCLIP__OP_ACT_GRAD, x->ndim, x->ne, 2, SRC(x, dy));
    if (t) t->params.act_grad = (pclip__act_grad_params){(int32_t)pclip__nelements(x), kind};
    return t;
}

pclip__tensor *pclip__layer_norm_grad(pclip__graph *g, const char *name, pclip__tensor *x,
                                      pclip__tensor *gamma, pclip__tensor *dy, float eps,
                                      int32_t mode) {
    if (!x || !gamma || !dy) return NULL;
    const int64_t cols = x->ne[x->ndim - 1];
    if (!is_f32(x) || !is_f32(gamma) || !is_f32(dy) || gamma->ndim != 1 || gamma->ne[0] != cols ||
        !same_shape(x, dy) || pclip__nelements(x) > INT32_MAX)
        FAIL(PCLIP__OP_LAYER_NORM_GRAD, 3, SRC(x, gamma, dy),
             "needs f32 x [.., %lld], gamma [%lld] and dy of x's shape", (long long)cols,
             (long long)cols);
    if ((mode != 0 && mode != 1) || !(eps >= 0.0f))
        FAIL(PCLIP__OP_LAYER_NORM_GRAD, 3, SRC(x, gamma, dy), "mode %d (0 or 1), eps %g (>= 0)",
             mode, (double)eps);
    pclip__tensor *t =
        new_op(g, name, PCLIP__OP_LAYER_NORM_GRAD, x->ndim, x->ne, 3, SRC(x, gamma, dy));
    if (t)
        t->params.layer_norm_grad = (pclip__layer_norm_grad_params){
            (int32_t)pclip__nrows(x), (int32_t)cols, eps, mode};
    return t;
}

pclip__tensor *pclip__l2_norm_grad(pclip__graph *g, const char *name, pclip__tensor *x,
                                   pclip__tensor *dy, float eps) {
    if (!x || !dy) return NULL;
    if (!is_f32(x) || !is_f32(dy) || !same_shape(x, dy) || pclip__nelements(x) > INT32_MAX ||
        !(eps >= 0.0f))
        FAIL(PCLIP__OP_L2_NORM_GRAD, 2, SRC(x, dy), "needs f32 x and dy of one shape, eps %g >= 0",
             (double)eps);
    pclip__tensor *t = new_op(g, name, PCLIP__OP_L2_NORM_GRAD, x->ndim, x->ne, 2, SRC(x, dy));
    if (t)
        t->params.l2_norm_grad = (pclip__l2_norm_grad_params){
            (int32_t)pclip__nrows(x), (int32_t)x->ne[x->ndim - 1], eps};
    return t;
}

pclip__tensor *pclip__reshape(pclip__graph *g, pclip__tensor *t, int32_t ndim, const int64_t *ne) {
    if (!t) return NULL;
    const char *name = t->name;
    int64_t n = 1;
    for (int32_t i = 0; i < ndim && i < PCLIP__MAX_DIMS; i++) n *= ne[i] > 0 ? ne[i] : 0;
    if (ndim < 1 || ndim > PCLIP__MAX_DIMS || n != pclip__nelements(t))
        FAIL(t->op, 1, SRC(t), "cannot reshape to %d dims with %lld elements", ndim, (long long)n);
    pclip__tensor *base = (pclip__tensor *)pclip__storage(t);
    pclip__tensor *v = new_tensor(g, name, t->dtype, base->kind, ndim, ne);
    if (!v) return NULL;
    v->view_src = base;
    v->data = base->data;
    v->data_mapped = base->data_mapped;
    v->param = base->param;
    return v;
}

pclip__tensor *pclip__param_tensor(pclip__graph *g, pclip__param *p) {
    if (!p) return NULL;
    pclip__tensor *t = new_tensor(g, p->name, PCLIP__DTYPE_F32, PCLIP__TENSOR_PARAM, p->ndim, p->ne);
    if (t) t->param = p;
    return t;
}

pclip__tensor *pclip__sgd(pclip__graph *g, const char *name, pclip__tensor *p,
                          pclip__tensor *grad, pclip__tensor *lr) {
    if (!p || !grad || !lr) return NULL;
    int64_t n = pclip__nelements(p);
    if (pclip__storage(p)->kind != PCLIP__TENSOR_PARAM || !is_f32(p) || !is_f32(grad) ||
        !is_f32(lr) || pclip__nelements(grad) != n || pclip__nelements(lr) != 1 || n > INT32_MAX)
        FAIL(PCLIP__OP_SGD, 3, SRC(p, grad, lr),
             "needs a PARAM p, a gradient with p's elements and a [1] learning rate");
    pclip__tensor *t = new_op(g, name, PCLIP__OP_SGD, p->ndim, p->ne, 3, SRC(p, grad, lr));
    if (t) t->params.sgd = (pclip__sgd_params){(int32_t)n};
    return t;
}

/* The largest batch of the contrastive loss: s [n, n] under 2^31 elements. */
#define CLIP_LOSS_MAX_N 46340

/* s [n, n] and a [1] t, the sources of clip_loss and its gradient. */
static bool clip_loss_sources(const pclip__tensor *s, const pclip__tensor *t) {
    return is_f32(s) && is_f32(t) && s->ndim == 2 && s->ne[0] == s->ne[1] &&
           s->ne[0] <= CLIP_LOSS_MAX_N && pclip__nelements(t) == 1;
}

pclip__tensor *pclip__clip_loss(pclip__graph *g, const char *name, pclip__tensor *s,
                                pclip__tensor *t) {
    if (!s || !t) return NULL;
    if (!clip_loss_sources(s, t))
        FAIL(PCLIP__OP_CLIP_LOSS, 2, SRC(s, t),
             "needs f32 similarities s [n, n] (n <= %d) and a [1] logit scale t", CLIP_LOSS_MAX_N);
    const int64_t ne[1] = {1};
    pclip__tensor *y = new_op(g, name, PCLIP__OP_CLIP_LOSS, 1, ne, 2, SRC(s, t));
    if (y) y->params.clip_loss = (pclip__clip_loss_params){(int32_t)s->ne[0]};
    return y;
}

pclip__tensor *pclip__clip_loss_grad(pclip__graph *g, const char *name, pclip__tensor *s,
                                     pclip__tensor *t, pclip__tensor *dy, int32_t which) {
    if (!s || !t || !dy) return NULL;
    if (!clip_loss_sources(s, t) || !is_f32(dy) || pclip__nelements(dy) != 1)
        FAIL(PCLIP__OP_CLIP_LOSS_GRAD, 3, SRC(s, t, dy),
             "needs f32 similarities s [n, n] (n <= %d), a [1] logit scale t and a [1] dy",
             CLIP_LOSS_MAX_N);
    if (which != 0 && which != 1)
        FAIL(PCLIP__OP_CLIP_LOSS_GRAD, 3, SRC(s, t, dy), "which is %d, not 0 (d s) or 1 (d t)",
             which);
    const int64_t one[1] = {1};
    pclip__tensor *y = which == 0 ? new_op(g, name, PCLIP__OP_CLIP_LOSS_GRAD, 2, s->ne, 3,
                                           SRC(s, t, dy))
                                  : new_op(g, name, PCLIP__OP_CLIP_LOSS_GRAD, 1, one, 3,
                                           SRC(s, t, dy));
    if (y) y->params.clip_loss_grad = (pclip__clip_loss_grad_params){(int32_t)s->ne[0], which};
    return y;
}

static bool same_dims(const pclip__tensor *a, const pclip__tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

pclip__tensor *pclip__adamw(pclip__graph *g, const char *name, pclip__tensor *p,
                            pclip__tensor *grad, pclip__tensor *m, pclip__tensor *v,
                            pclip__tensor *h, double beta1, double beta2, float eps,
                            float clamp_max) {
    if (!p || !grad || !m || !v || !h) return NULL;
    pclip__tensor *const src[5] = {p, grad, m, v, h};
    const pclip__tensor *sp = pclip__storage(p), *sm = pclip__storage(m), *sv = pclip__storage(v);
    int64_t n = pclip__nelements(p);
    if (sp->kind != PCLIP__TENSOR_PARAM || sm->kind != PCLIP__TENSOR_PARAM ||
        sv->kind != PCLIP__TENSOR_PARAM)
        FAIL(PCLIP__OP_ADAMW, 5, src, "p, m and v must be PARAMs (backend-resident, written)");
    if (sp == sm || sp == sv || sm == sv)
        FAIL(PCLIP__OP_ADAMW, 5, src, "p, m and v must be three different PARAMs");
    if (!same_dims(p, m) || !same_dims(p, v) || !is_f32(p) || !is_f32(m) || !is_f32(v))
        FAIL(PCLIP__OP_ADAMW, 5, src, "p, m and v must be f32 of one shape");
    if (!is_f32(grad) || pclip__nelements(grad) != n || n > INT32_MAX)
        FAIL(PCLIP__OP_ADAMW, 5, src, "the gradient must have p's %lld elements (f32)",
             (long long)n);
    if (!is_f32(h) || pclip__nelements(h) != 3)
        FAIL(PCLIP__OP_ADAMW, 5, src,
             "h must be an f32 [3] (1 - lr wd, lr / (1 - beta1^step), sqrt(1 - beta2^step))");
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) ||
        !isfinite(eps) || isnan(clamp_max))
        FAIL(PCLIP__OP_ADAMW, 5, src,
             "betas (%g, %g) must lie in [0, 1), eps (%g) be finite and >= 0, clamp_max not NaN",
             beta1, beta2, (double)eps);
    pclip__tensor *y = new_op(g, name, PCLIP__OP_ADAMW, v->ndim, v->ne, 5, src);
    if (y)
        y->params.adamw = (pclip__adamw_params){.n = (int32_t)n,
                                                .beta1 = (float)beta1,
                                                .beta2 = (float)beta2,
                                                .omb1 = (float)(1.0 - beta1),
                                                .omb2 = (float)(1.0 - beta2),
                                                .eps = eps,
                                                .has_clamp = clamp_max != INFINITY,
                                                .clamp_max = clamp_max};
    return y;
}

#undef FAIL
#undef SRC

pclip_status pclip__graph_output(pclip__graph *g, pclip__tensor *t) {
    if (!t) return pclip__err(g->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "graph: NULL output");
    if (t->kind != PCLIP__TENSOR_ACTIVATION || pclip__storage(t)->op == PCLIP__OP_NONE)
        return pclip__err(g->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "graph: output '%s' is not computed by an op in the arena", t->name);
    t->is_output = true;
    g->planned = false;
    return PCLIP_STATUS_OK;
}

/* ---- planning ---- */

typedef struct block {
    size_t offset, size;
} block;


/* First-fit over a sorted list of busy blocks: the lowest offset where
 * `size` bytes fit between live tensors. */
static size_t first_fit(const block *busy, int32_t n, size_t size) {
    size_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        if (busy[i].offset >= at + size) break;
        if (busy[i].offset + busy[i].size > at) at = busy[i].offset + busy[i].size;
    }
    return at;
}

static void busy_insert(block *busy, int32_t *n, size_t offset, size_t size) {
    int32_t i = *n;
    while (i > 0 && busy[i - 1].offset > offset) {
        busy[i] = busy[i - 1];
        i--;
    }
    busy[i] = (block){offset, size};
    (*n)++;
}

static void busy_remove(block *busy, int32_t *n, size_t offset) {
    for (int32_t i = 0; i < *n; i++)
        if (busy[i].offset == offset) {
            memmove(&busy[i], &busy[i + 1], (size_t)(*n - i - 1) * sizeof *busy);
            (*n)--;
            return;
        }
}

pclip_status pclip__graph_plan(pclip__graph *g) {
    if (g->planned) return PCLIP_STATUS_OK;
    int32_t n = g->n_tensors;
    for (int32_t i = 0; i < n; i++) g->tensors[i]->last_use = -1;
    /* last uses are counted on storage: reading a view reads its storage */
    for (int32_t i = 0; i < n; i++) {
        pclip__tensor *t = g->tensors[i];
        for (int32_t s = 0; s < t->n_src; s++)
            if (t->src[s]) ((pclip__tensor *)pclip__storage(t->src[s]))->last_use = i;
    }
    bool *keep = pclip__calloc((size_t)n + 1, sizeof *keep);
    block *busy = pclip__malloc((size_t)(n + 1) * sizeof *busy);
    if (!busy || !keep) {
        pclip__free(busy);
        pclip__free(keep);
        return pclip__err(g->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "graph: out of memory");
    }
    /* an output's storage (the tensor, or what it views) outlives the run */
    for (int32_t i = 0; i < n; i++)
        if (g->tensors[i]->is_output) keep[pclip__storage(g->tensors[i])->id] = true;
    int32_t n_busy = 0;
    size_t peak = 0, naive = 0;
    /* Inputs are written before the run, so they are live from the start. */
    for (int32_t i = 0; i < n; i++) {
        pclip__tensor *t = g->tensors[i];
        if (t->kind != PCLIP__TENSOR_INPUT || t->view_src) continue;
        size_t size = (size_t)pclip__align_up(t->nbytes, PCLIP__ALIGN);
        t->offset = first_fit(busy, n_busy, size);
        busy_insert(busy, &n_busy, t->offset, size);
        if (t->offset + size > peak) peak = t->offset + size;
        naive += size;
    }
    for (int32_t i = 0; i < n; i++) {
        pclip__tensor *t = g->tensors[i];
        if (t->view_src) {
            t->offset = t->view_src->offset; /* placed earlier: views follow their storage */
            continue;
        }
        if (t->kind != PCLIP__TENSOR_ACTIVATION) continue;
        /* Place the result before freeing the sources: an op never writes
         * over what it reads. */
        size_t size = (size_t)pclip__align_up(t->nbytes, PCLIP__ALIGN);
        t->offset = first_fit(busy, n_busy, size);
        busy_insert(busy, &n_busy, t->offset, size);
        if (t->offset + size > peak) peak = t->offset + size;
        naive += size;
        for (int32_t s = 0; s < t->n_src; s++) {
            const pclip__tensor *src = pclip__storage(t->src[s]);
            if (!src || (src->kind != PCLIP__TENSOR_ACTIVATION && src->kind != PCLIP__TENSOR_INPUT) ||
                keep[src->id] || src->last_use != i)
                continue;
            bool dup = false; /* the same storage twice */
            for (int32_t r = 0; r < s; r++) dup |= pclip__storage(t->src[r]) == src;
            if (!dup) busy_remove(busy, &n_busy, src->offset);
        }
        /* A result nobody reads and nobody asked for is freed at once. */
        if (t->last_use < 0 && !keep[i]) busy_remove(busy, &n_busy, t->offset);
    }
    pclip__free(busy);
    pclip__free(keep);
    g->arena_bytes = peak;
    g->naive_bytes = naive;
    g->planned = true;
    return PCLIP_STATUS_OK;
}
