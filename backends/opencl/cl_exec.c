/* OpenCL weights, params, compiled graphs, and the backend's function table.
 *
 * compile() takes core's plan (graph/backend.h: the ops that run, where each
 * tensor is, the staging layout; every argument is checked there) and does
 * the device work once: the program is built (or loaded from the cache,
 * cl_program.c) at the backend's first compile; the plan's weights are made
 * resident (the resident-weight cache below); the arena is one buffer laid
 * out by the planner; each op gets its own kernel object with every argument
 * set (tensors as buffer + element offset, then the op's parameter struct),
 * and its NDRange. Nothing is created or allocated per run.
 *
 * run() enqueues on the one in-order queue: a write per input (from the
 * host staging area that write_input filled), the kernels in plan order
 * (the in-order queue orders each after the one before: no events needed),
 * a device copy of each output into one output area, and one blocking read
 * of that area back into the host staging area, where read_output finds it.
 * A failure of that final wait means the device failed while running: it is
 * treated as lost (sticky). */
#include <stdio.h>
#include <string.h>

#include "cl.h"

/* ---- the weight cache ---- */

int32_t pclip__cl_weight_count(void *backend_state) {
    return ((const pclip__cl *)backend_state)->n_weights;
}

const char *pclip__cl_cache_note(void *backend_state) {
    return ((const pclip__cl *)backend_state)->cache_note;
}

static void weight_release(pclip__cl *s, pclip__cl_weight *w) {
    if (!w || --w->refs > 0) return;
    s->cl->clReleaseMemObject(w->buf);
    for (int32_t i = 0; i < s->n_weights; i++)
        if (s->weights[i] == w) s->weights[i] = s->weights[--s->n_weights];
    pclip__free(w);
}

/* A resident weight holding [p, p + n) at a 4-byte aligned offset, or NULL. */
static pclip__cl_weight *weight_find(const pclip__cl *s, const uint8_t *p, size_t n) {
    for (int32_t i = 0; i < s->n_weights; i++) {
        pclip__cl_weight *w = s->weights[i];
        if (p >= w->host && n <= w->bytes && (size_t)(p - w->host) <= w->bytes - n &&
            (size_t)(p - w->host) % 4 == 0)
            return w;
    }
    return NULL;
}

/* The resident weight of t (uploaded now if new), with a reference. */
static pclip_status weight_acquire(pclip__cl *s, const pclip__tensor *t, pclip__cl_weight **out) {
    const uint8_t *p = t->data;
    pclip__cl_weight *w = weight_find(s, p, t->nbytes);
    if (w) {
        w->refs++;
        *out = w;
        return PCLIP_STATUS_OK;
    }
    if (s->n_weights == s->cap_weights) {
        int32_t cap = s->cap_weights ? 2 * s->cap_weights : 64;
        pclip__cl_weight **grown = pclip__realloc(s->weights, (size_t)cap * sizeof *grown);
        if (!grown) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
        s->weights = grown;
        s->cap_weights = cap;
    }
    w = pclip__calloc(1, sizeof *w);
    if (!w) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
    char what[160];
    snprintf(what, sizeof what, "weight '%s'", t->name);
    /* one buffer per weight: each within CL_DEVICE_MAX_MEM_ALLOC_SIZE, and
     * the upload is the copy CL_MEM_COPY_HOST_PTR makes at creation */
    pclip_status st = pclip__cl_buffer_create(s, t->nbytes, CL_MEM_READ_ONLY, p, what, &w->buf);
    if (st) {
        pclip__free(w);
        return st;
    }
    *w = (pclip__cl_weight){.host = p, .bytes = t->nbytes, .buf = w->buf, .refs = 1};
    s->weights[s->n_weights++] = w;
    *out = w;
    return PCLIP_STATUS_OK;
}

/* ---- params ---- */

static pclip_status cl_param_create(void *state, size_t bytes, void **handle) {
    pclip__cl *s = state;
    pclip_status st = pclip__cl_check(s);
    if (st) return st;
    cl_mem m;
    if ((st = pclip__cl_buffer_create(s, bytes, CL_MEM_READ_WRITE, NULL, "a param", &m))) return st;
    const cl_float zero = 0.0f;
    cl_int err = s->cl->clEnqueueFillBuffer(s->queue, m, &zero, sizeof zero, 0,
                                            pclip__align_up(bytes ? bytes : 4, 4), 0, NULL, NULL);
    if (err == CL_SUCCESS) err = s->cl->clFinish(s->queue);
    if (err != CL_SUCCESS) {
        s->cl->clReleaseMemObject(m);
        return pclip__cl_status(s->ctx, err, "clEnqueueFillBuffer (zeroing a param)");
    }
    *handle = m;
    return PCLIP_STATUS_OK;
}

static pclip_status cl_param_write(void *state, void *handle, const void *data, size_t bytes) {
    pclip__cl *s = state;
    pclip_status st = pclip__cl_check(s);
    if (st || bytes == 0) return st;
    /* blocking: the queue runs it after every earlier run that used the param */
    return pclip__cl_status(s->ctx,
                            s->cl->clEnqueueWriteBuffer(s->queue, handle, CL_TRUE, 0, bytes, data,
                                                        0, NULL, NULL),
                            "clEnqueueWriteBuffer (a param)");
}

static pclip_status cl_param_read(void *state, void *handle, void *data, size_t bytes) {
    pclip__cl *s = state;
    pclip_status st = pclip__cl_check(s);
    if (st || bytes == 0) return st;
    return pclip__cl_status(s->ctx,
                            s->cl->clEnqueueReadBuffer(s->queue, handle, CL_TRUE, 0, bytes, data,
                                                       0, NULL, NULL),
                            "clEnqueueReadBuffer (a param)");
}

static void cl_param_destroy(void *state, void *handle) {
    pclip__cl *s = state;
    if (!handle) return;
    s->cl->clFinish(s->queue); /* a run may still use it */
    s->cl->clReleaseMemObject(handle);
}

/* ---- compiled graphs ---- */

typedef struct cl_node {
    const pclip__tensor *t;
    cl_kernel k;
    cl_uint dims;
    size_t global[3], local[3];
} cl_node;

typedef struct cl_exec {
    pclip__cl *s;
    const pclip__exec_plan *plan;
    const pclip__graph *g;       /* = plan->g */
    cl_mem arena;                /* [arena_bytes] */
    cl_mem out_area;             /* the outputs, as in the staging layout (NULL: none) */
    size_t out_base, out_bytes;  /* staging bytes [out_base, out_base + out_bytes) */
    uint8_t *io;                 /* host staging: the plan's layout, io_bytes */
    pclip__cl_weight **weights;  /* [n_tensors]: the resident weight of each weight tensor */
    cl_node *nodes;
    int32_t n_nodes;
} cl_exec;

static void cl_release(void *exec) {
    cl_exec *x = exec;
    if (!x) return;
    pclip__cl *s = x->s;
    s->cl->clFinish(s->queue); /* never release what the device still uses */
    for (int32_t i = 0; i < x->n_nodes; i++)
        if (x->nodes[i].k) s->cl->clReleaseKernel(x->nodes[i].k);
    if (x->arena) s->cl->clReleaseMemObject(x->arena);
    if (x->out_area) s->cl->clReleaseMemObject(x->out_area);
    if (x->weights)
        for (int32_t i = 0; i < x->g->n_tensors; i++) weight_release(s, x->weights[i]);
    pclip__free(x->weights);
    pclip__free(x->nodes);
    pclip__free(x->io);
    pclip__free(x);
}

static pclip_status acquire_weights(cl_exec *x) {
    const pclip__exec_plan *plan = x->plan;
    x->weights = pclip__calloc((size_t)x->g->n_tensors + 1, sizeof *x->weights);
    if (!x->weights) return pclip__err(x->s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
    for (int32_t i = 0; i < plan->n_weights; i++) {
        const pclip__tensor *t = plan->weights[i];
        if (t->dtype != PCLIP__DTYPE_F32 && t->dtype != PCLIP__DTYPE_I32)
            return pclip__err(x->s->ctx, PCLIP_STATUS_UNSUPPORTED, "opencl: weight '%s' dtype %d",
                              t->name, (int)t->dtype);
        pclip_status st = weight_acquire(x->s, t, &x->weights[t->id]);
        if (st) return st;
    }
    return PCLIP_STATUS_OK;
}

/* Where a tensor's bytes are: a buffer and an offset in 4-byte elements. */
static void locate(const cl_exec *x, const pclip__tensor *t, cl_mem *buf, cl_uint *off) {
    if (!t) {
        *buf = x->s->dummy;
        *off = 0;
        return;
    }
    const pclip__tensor *st = pclip__storage(t);
    if (st->kind == PCLIP__TENSOR_WEIGHT) {
        const pclip__cl_weight *w = x->weights[st->id];
        *buf = w->buf;
        *off = (cl_uint)(((const uint8_t *)st->data - w->host) / 4);
    } else if (st->kind == PCLIP__TENSOR_PARAM) {
        *buf = st->param->handle;
        *off = 0;
    } else {
        *buf = x->arena;
        *off = (cl_uint)(st->offset / 4);
    }
}

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* The kernel of an op and the size of its parameter struct. */
static const char *kernel_name(const pclip__cl *s, const pclip__tensor *t, size_t *params_bytes) {
    switch (t->op) {
#define P(name) *params_bytes = sizeof(pclip__##name##_params)
    case PCLIP__OP_MATMUL:
        P(matmul);
        return s->tune.direct && t->params.matmul.trans_b ? "matmul_direct" : "matmul";
    case PCLIP__OP_ADD: P(add); return "binary_add";
    case PCLIP__OP_MUL: P(mul); return "binary_mul";
    case PCLIP__OP_SCALE: P(scale); return "scale";
    case PCLIP__OP_LAYER_NORM: P(layer_norm); return "layer_norm";
    case PCLIP__OP_ACT: P(act); return "act";
    case PCLIP__OP_SOFTMAX: P(softmax); return "softmax";
    case PCLIP__OP_ATTENTION: P(attention); return "attention";
    case PCLIP__OP_PATCHES: P(patches); return "patches";
    case PCLIP__OP_CLASS_CONCAT: P(class_concat); return "class_concat";
    case PCLIP__OP_GATHER_ROWS: P(gather_rows); return "gather_rows";
    case PCLIP__OP_L2_NORM: P(l2_norm); return "l2_norm";
    case PCLIP__OP_SGD: P(sgd); return "sgd";
    case PCLIP__OP_TOPK: P(topk); return "topk";
    case PCLIP__OP_TRANSPOSE: P(transpose); return "transpose";
    case PCLIP__OP_SUM_ROWS: P(sum_rows); return "sum_rows";
    case PCLIP__OP_ACT_GRAD: P(act_grad); return "act_grad";
    case PCLIP__OP_LAYER_NORM_GRAD: P(layer_norm_grad); return "layer_norm_grad";
    case PCLIP__OP_L2_NORM_GRAD: P(l2_norm_grad); return "l2_norm_grad";
    case PCLIP__OP_CLIP_LOSS: P(clip_loss); return "clip_loss";
    case PCLIP__OP_CLIP_LOSS_GRAD: P(clip_loss_grad); return "clip_loss_grad";
    case PCLIP__OP_ADAMW: P(adamw); return "adamw";
#undef P
    default: return NULL;
    }
}

/* The NDRange of node n, from the tuning (the only copy of each work-group
 * size: the program was built with the same values as -D options). */
static pclip_status node_range(cl_exec *x, cl_node *n, size_t *local_bytes) {
    const pclip__cl *s = x->s;
    const pclip__tensor *t = n->t;
    const pclip__op_params *p = &t->params;
    const size_t el = s->tune.elem_ls, rl = s->tune.row_ls;
    size_t items = 0;
    n->dims = 1;
    n->local[0] = el;
    n->local[1] = n->local[2] = 1;
    n->global[1] = n->global[2] = 1;
    *local_bytes = 0;
    switch (t->op) {
    case PCLIP__OP_MATMUL: {
        const pclip__matmul_params *m = &p->matmul;
        n->dims = 3;
        n->global[2] = (size_t)m->batch;
        if (s->tune.direct && m->trans_b) {
            /* work-items along n (dimension 1), work-groups m first (dimension 0):
             * consecutive work-groups reuse one panel of b from the cache
             * while a streams */
            n->local[0] = 1;
            n->local[1] = s->tune.md_ls;
            n->global[0] = ((size_t)m->M + s->tune.md_tm - 1) / s->tune.md_tm;
            n->global[1] = round_up(((size_t)m->N + s->tune.md_tn - 1) / s->tune.md_tn, s->tune.md_ls);
            return PCLIP_STATUS_OK;
        }
        const size_t ls = (size_t)(s->tune.bm / s->tune.tm) * (s->tune.bn / s->tune.tn);
        n->dims = 3;
        n->local[0] = ls;
        n->global[0] = ((size_t)m->N + s->tune.bn - 1) / s->tune.bn * ls;
        n->global[1] = ((size_t)m->M + s->tune.bm - 1) / s->tune.bm;
        n->global[2] = (size_t)m->batch;
        return PCLIP_STATUS_OK;
    }
    case PCLIP__OP_ADD:
    case PCLIP__OP_MUL: {
        const pclip__binary_params *b = &p->add;
        items = (size_t)b->ne[0] * b->ne[1] * b->ne[2] * b->ne[3];
        break;
    }
    case PCLIP__OP_SCALE: items = (size_t)p->scale.n; break;
    case PCLIP__OP_ACT: items = (size_t)p->act.n; break;
    case PCLIP__OP_SGD: items = (size_t)p->sgd.n; break;
    case PCLIP__OP_ACT_GRAD: items = (size_t)p->act_grad.n; break;
    case PCLIP__OP_TRANSPOSE: { /* TR_TILE x TR_TILE blocks, (TR_TILE, ELEM_LS / TR_TILE) items */
        const size_t tile = s->tune.tr_tile;
        n->dims = 2;
        n->local[0] = tile;
        n->local[1] = el / tile;
        n->global[0] = round_up((size_t)p->transpose.cols, tile);
        n->global[1] = ((size_t)p->transpose.rows + tile - 1) / tile * n->local[1];
        return PCLIP_STATUS_OK;
    }
    case PCLIP__OP_SUM_ROWS: { /* SR_COLS columns x ELEM_LS / SR_COLS slices of rows */
        const size_t sc = s->tune.sr_cols;
        n->dims = 2;
        n->local[0] = sc;
        n->local[1] = el / sc;
        n->global[0] = round_up((size_t)p->sum_rows.cols, sc);
        n->global[1] = n->local[1];
        return PCLIP_STATUS_OK;
    }
    case PCLIP__OP_ADAMW: items = (size_t)p->adamw.n; break;
    case PCLIP__OP_PATCHES:
    case PCLIP__OP_CLASS_CONCAT: items = (size_t)pclip__nelements(t); break;
    case PCLIP__OP_GATHER_ROWS: items = (size_t)p->gather_rows.rows * p->gather_rows.cols; break;
    case PCLIP__OP_LAYER_NORM:
    case PCLIP__OP_SOFTMAX:
    case PCLIP__OP_L2_NORM:
    case PCLIP__OP_TOPK:
    case PCLIP__OP_LAYER_NORM_GRAD:
    case PCLIP__OP_L2_NORM_GRAD: {
        const int32_t rows = t->op == PCLIP__OP_LAYER_NORM        ? p->layer_norm.rows
                             : t->op == PCLIP__OP_SOFTMAX         ? p->softmax.rows
                             : t->op == PCLIP__OP_TOPK            ? p->topk.rows
                             : t->op == PCLIP__OP_LAYER_NORM_GRAD ? p->layer_norm_grad.rows
                             : t->op == PCLIP__OP_L2_NORM_GRAD    ? p->l2_norm_grad.rows
                                                                  : p->l2_norm.rows;
        n->local[0] = rl;
        n->global[0] = (size_t)rows * rl;
        return PCLIP_STATUS_OK;
    }
    case PCLIP__OP_CLIP_LOSS:
    case PCLIP__OP_CLIP_LOSS_GRAD: {
        /* one work-group for the whole problem (clip_loss.cl); the gradient
         * keeps the columns' statistics in local memory beside the
         * reduction's ROW_LS floats */
        const bool grad = t->op == PCLIP__OP_CLIP_LOSS_GRAD;
        const int32_t count = grad ? p->clip_loss_grad.n : p->clip_loss.n;
        *local_bytes = grad ? (size_t)count * sizeof(float) : 0;
        if (*local_bytes + rl * sizeof(float) > s->dev.local_mem)
            return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                              "opencl: %s '%s': a batch of %d needs %zu bytes of local memory; "
                              "%s has %llu",
                              pclip__op_name(t->op), t->name, count,
                              *local_bytes + rl * sizeof(float), s->dev.name,
                              (unsigned long long)s->dev.local_mem);
        n->local[0] = rl;
        n->global[0] = rl;
        return PCLIP_STATUS_OK;
    }
    case PCLIP__OP_ATTENTION: {
        const pclip__attention_params *a = &p->attention;
        /* the row's scores in local memory, beside the reduction's ROW_LS floats */
        *local_bytes = (size_t)a->seq * sizeof(float);
        if (*local_bytes + rl * sizeof(float) > s->dev.local_mem)
            return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                              "opencl: attention '%s': a sequence of %d tokens needs %zu bytes of "
                              "local memory; %s has %llu",
                              t->name, a->seq, *local_bytes + rl * sizeof(float), s->dev.name,
                              (unsigned long long)s->dev.local_mem);
        n->dims = 3;
        n->local[0] = rl;
        n->global[0] = (size_t)a->seq * rl;
        n->global[1] = (size_t)a->heads;
        n->global[2] = (size_t)a->batch;
        return PCLIP_STATUS_OK;
    }
    default:
        return pclip__err(s->ctx, PCLIP_STATUS_INTERNAL, "opencl: tensor '%s' has op %d", t->name,
                          (int)t->op);
    }
    n->global[0] = round_up(items, el);
    return PCLIP_STATUS_OK;
}

static pclip_status build_node(cl_exec *x, cl_node *n) {
    pclip__cl *s = x->s;
    const pclip__tensor *t = n->t;
    size_t params_bytes = 0, local_bytes = 0;
    const char *name = kernel_name(s, t, &params_bytes);
    if (!name)
        return pclip__err(s->ctx, PCLIP_STATUS_INTERNAL, "opencl: tensor '%s' has op %d", t->name,
                          (int)t->op);
    pclip_status st = node_range(x, n, &local_bytes);
    if (st) return st;
    cl_int err = CL_SUCCESS;
    n->k = s->cl->clCreateKernel(s->program, name, &err);
    if (err != CL_SUCCESS || !n->k) {
        n->k = NULL;
        char what[256];
        snprintf(what, sizeof what, "clCreateKernel (%s, for op '%s')", name, t->name);
        return pclip__cl_status(s->ctx, err ? err : CL_INVALID_KERNEL, what);
    }
    size_t max_wg = 0;
    err = s->cl->clGetKernelWorkGroupInfo(n->k, s->dev.id, CL_KERNEL_WORK_GROUP_SIZE, sizeof max_wg,
                                          &max_wg, NULL);
    if (err != CL_SUCCESS) return pclip__cl_status(s->ctx, err, "clGetKernelWorkGroupInfo");
    const size_t wg = n->local[0] * n->local[1] * n->local[2];
    if (wg > max_wg)
        return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                          "opencl: kernel %s (op '%s') needs work-groups of %zu work-items; %s "
                          "runs it with at most %zu",
                          name, t->name, wg, s->dev.name, max_wg);
    /* the arguments: each source, the result (buffer, element offset), the params */
    cl_uint arg = 0;
    for (int32_t k = 0; k <= t->n_src && !err; k++) {
        cl_mem buf;
        cl_uint off;
        locate(x, k < t->n_src ? t->src[k] : t, &buf, &off);
        err = s->cl->clSetKernelArg(n->k, arg++, sizeof buf, &buf);
        if (!err) err = s->cl->clSetKernelArg(n->k, arg++, sizeof off, &off);
    }
    if (!err) err = s->cl->clSetKernelArg(n->k, arg++, params_bytes, &t->params);
    if (!err && local_bytes) err = s->cl->clSetKernelArg(n->k, arg++, local_bytes, NULL);
    if (err) {
        char what[256];
        snprintf(what, sizeof what, "clSetKernelArg (%s, argument %u, for op '%s')", name,
                 arg - 1, t->name);
        return pclip__cl_status(s->ctx, err, what);
    }
    return PCLIP_STATUS_OK;
}

static pclip_status cl_compile(void *state, const pclip__exec_plan *plan, void **out) {
    pclip__cl *s = state;
    pclip_status st = pclip__cl_check(s);
    if (st) return st;
    cl_exec *x = pclip__calloc(1, sizeof *x);
    if (!x) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
    *out = x; /* on failure core releases what was made */
    x->s = s;
    x->plan = plan;
    x->g = plan->g;
    st = pclip__cl_program_get(s);
    if (!st) st = acquire_weights(x);
    if (!st)
        st = pclip__cl_buffer_create(s, plan->arena_bytes, CL_MEM_READ_WRITE, NULL,
                                     "the graph's activations", &x->arena);
    /* offsets are passed as 32-bit element counts */
    if (!st && plan->arena_bytes / 4 > UINT32_MAX)
        st = pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                        "opencl: the graph's activations (%zu bytes) exceed 16 GiB", plan->arena_bytes);
    if (!st && !(x->io = pclip__calloc(plan->io_bytes ? plan->io_bytes : 1, 1)))
        st = pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
    if (!st && plan->n_outputs) {
        x->out_base = plan->io_offset[plan->outputs[0]->id];
        x->out_bytes = plan->io_bytes - x->out_base;
        st = pclip__cl_buffer_create(s, x->out_bytes, CL_MEM_READ_WRITE, NULL,
                                     "the graph's outputs", &x->out_area);
    }
    if (!st && !(x->nodes = pclip__calloc((size_t)plan->n_nodes + 1, sizeof *x->nodes)))
        st = pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "opencl: out of memory");
    for (int32_t i = 0; !st && i < plan->n_nodes; i++) {
        cl_node *n = &x->nodes[x->n_nodes++];
        n->t = plan->nodes[i].t;
        st = build_node(x, n);
    }
    return st;
}

/* ---- running ---- */

static pclip_status cl_write_input(void *exec, const pclip__tensor *t, const void *data) {
    cl_exec *x = exec;
    pclip_status st = pclip__cl_check(x->s);
    if (st) return st;
    memcpy(x->io + x->plan->io_offset[t->id], data, t->nbytes);
    return PCLIP_STATUS_OK;
}

static pclip_status cl_read_output(void *exec, const pclip__tensor *t, void *data) {
    cl_exec *x = exec;
    pclip_status st = pclip__cl_check(x->s);
    if (st) return st;
    memcpy(data, x->io + x->plan->io_offset[t->id], t->nbytes);
    return PCLIP_STATUS_OK;
}

static pclip_status cl_run(void *exec) {
    cl_exec *x = exec;
    pclip__cl *s = x->s;
    const pclip__cl_api *cl = s->cl;
    const pclip__exec_plan *plan = x->plan;
    pclip_status st = pclip__cl_check(s);
    if (st) return st;
    cl_int err = CL_SUCCESS;
    const char *what = "";
    /* inputs: host staging -> arena (the staging area stays untouched until
     * the wait below) */
    for (int32_t i = 0; !err && i < plan->n_inputs; i++) {
        const pclip__tensor *t = plan->inputs[i];
        if (t->nbytes == 0) continue;
        err = cl->clEnqueueWriteBuffer(s->queue, x->arena, CL_FALSE, t->offset, t->nbytes,
                                       x->io + plan->io_offset[t->id], 0, NULL, NULL);
        what = "clEnqueueWriteBuffer (an input)";
    }
    for (int32_t i = 0; !err && i < x->n_nodes; i++) {
        const cl_node *n = &x->nodes[i];
        if (!n->global[0] || !n->global[1] || !n->global[2]) continue; /* nothing to do */
        err = cl->clEnqueueNDRangeKernel(s->queue, n->k, n->dims, NULL, n->global, n->local, 0,
                                         NULL, NULL);
        what = "clEnqueueNDRangeKernel";
    }
    for (int32_t i = 0; !err && i < plan->n_outputs; i++) {
        const pclip__tensor *t = plan->outputs[i];
        if (t->nbytes == 0) continue;
        err = cl->clEnqueueCopyBuffer(s->queue, x->arena, x->out_area, pclip__storage(t)->offset,
                                      plan->io_offset[t->id] - x->out_base, t->nbytes, 0, NULL,
                                      NULL);
        what = "clEnqueueCopyBuffer (an output)";
    }
    if (err) {
        char msg[192];
        snprintf(msg, sizeof msg, "%s, running the graph", what);
        st = pclip__cl_status(s->ctx, err, msg);
        pclip__err_kept kept;
        pclip__err_keep(s->ctx, &kept);
        cl->clFinish(s->queue); /* what was enqueued completes before anything is reused */
        pclip__err_restore(s->ctx, &kept);
        return st;
    }
    /* the one read back, which waits for everything before it */
    if (x->out_area)
        err = cl->clEnqueueReadBuffer(s->queue, x->out_area, CL_TRUE, 0, x->out_bytes,
                                      x->io + x->out_base, 0, NULL, NULL);
    else
        err = cl->clFinish(s->queue);
    /* the test hook: this wait fails as a driver's does when the device is lost */
    if (!err && s->test_fail_run > 0 && --s->test_fail_run == 0) err = CL_OUT_OF_RESOURCES;
    if (err) return pclip__cl_lose(s, err, "the graph's run");
    return PCLIP_STATUS_OK;
}

/* The whole arena to or from the host, for the parity tests' guard bytes. */
static pclip_status cl_arena_read(void *exec, void *data) {
    cl_exec *x = exec;
    pclip_status st = pclip__cl_check(x->s);
    if (st || x->plan->arena_bytes == 0) return st;
    return pclip__cl_status(x->s->ctx,
                            x->s->cl->clEnqueueReadBuffer(x->s->queue, x->arena, CL_TRUE, 0,
                                                          x->plan->arena_bytes, data, 0, NULL,
                                                          NULL),
                            "clEnqueueReadBuffer (the arena)");
}

static pclip_status cl_arena_write(void *exec, const void *data) {
    cl_exec *x = exec;
    pclip_status st = pclip__cl_check(x->s);
    if (st || x->plan->arena_bytes == 0) return st;
    return pclip__cl_status(x->s->ctx,
                            x->s->cl->clEnqueueWriteBuffer(x->s->queue, x->arena, CL_TRUE, 0,
                                                           x->plan->arena_bytes, data, 0, NULL,
                                                           NULL),
                            "clEnqueueWriteBuffer (the arena)");
}

/* ---- the table ---- */

const pclip__backend_ops pclip__opencl_backend_ops = {
    .version = PCLIP__BACKEND_VERSION,
    .name = "opencl",
    .list_devices = pclip__cl_list_devices,
    .create = pclip__cl_create,
    .destroy = pclip__cl_destroy,
    .compile = cl_compile,
    .write_input = cl_write_input,
    .run = cl_run,
    .read_output = cl_read_output,
    .release = cl_release,
    .param_create = cl_param_create,
    .param_write = cl_param_write,
    .param_read = cl_param_read,
    .param_destroy = cl_param_destroy,
    .arena_read = cl_arena_read,
    .arena_write = cl_arena_write,
};
