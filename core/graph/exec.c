/* The layer every backend shares: the compile plan of a graph, the checked
 * wrappers that run a compiled graph through a backend's table, PARAM
 * storage, and the sticky failure state of a backend.
 *
 * A backend never walks a graph to decide what to run or where a tensor is:
 * it compiles the plan built here, and receives only calls whose arguments
 * were checked here. What is pruned, what is written and what counts as a
 * lost device is therefore decided once, for every backend. Device selection
 * and the backend registry live in backend.c. */
#include <stdio.h>
#include <string.h>

#include "graph/backend.h"

/* ---- sticky failure ---- */

pclip_status pclip__backend_check(struct pclip_backend *b) {
    if (!b->failed) return PCLIP_STATUS_OK;
    return pclip__err(b->ctx, b->failed, "%s", b->failed_why);
}

/* Records a backend call's status: a lost device stays lost. */
static pclip_status note(struct pclip_backend *b, pclip_status st) {
    if (st == PCLIP_STATUS_DEVICE_LOST && !b->failed) {
        b->failed = st;
        snprintf(b->failed_why, sizeof b->failed_why, "%s (the device was lost earlier: %s)",
                 b->ops->name, pclip_ctx_last_error(b->ctx));
    }
    return st;
}

/* ---- work estimates ---- */

double pclip__op_flops(const pclip__tensor *t) {
    const pclip__op_params *p = &t->params;
    double n = (double)pclip__nelements(t);
    switch (t->op) {
    case PCLIP__OP_MATMUL:
        return 2.0 * p->matmul.batch * (double)p->matmul.M * p->matmul.N * p->matmul.K;
    case PCLIP__OP_LAYER_NORM:
    case PCLIP__OP_SOFTMAX:
    case PCLIP__OP_L2_NORM: return 8.0 * n;
    case PCLIP__OP_LAYER_NORM_GRAD:
    case PCLIP__OP_L2_NORM_GRAD: return 12.0 * n;
    case PCLIP__OP_ACT_GRAD: return 30.0 * n;
    case PCLIP__OP_SUM_ROWS: return (double)pclip__nelements(t->src[0]);
    case PCLIP__OP_ATTENTION: {
        const pclip__attention_params *a = &p->attention;
        return 4.0 * a->batch * (double)a->heads * a->seq * a->seq * a->head_dim;
    }
    case PCLIP__OP_ACT: return 20.0 * n;
    case PCLIP__OP_SGD: return 2.0 * n;
    case PCLIP__OP_ADAMW: return 12.0 * n;
    case PCLIP__OP_CLIP_LOSS: /* two passes over n x n logits, an exp each */
        return 50.0 * (double)p->clip_loss.n * p->clip_loss.n;
    case PCLIP__OP_CLIP_LOSS_GRAD: return 80.0 * (double)p->clip_loss_grad.n * p->clip_loss_grad.n;
    default: return n;
    }
}

/* ---- the compile plan ---- */

static void plan_free(pclip__exec_plan *p) {
    pclip__free((void *)p->nodes);
    pclip__free((void *)p->live);
    pclip__free((void *)p->inputs);
    pclip__free((void *)p->io_offset);
    memset(p, 0, sizeof *p);
}

/* Every check of a planned tensor's placement, before a backend sees it. */
static pclip_status check_tensor(struct pclip_backend *b, const pclip__graph *g,
                                 const pclip__tensor *t) {
    const pclip__tensor *s = pclip__storage(t);
    if ((unsigned)t->op >= PCLIP__OP_COUNT)
        return pclip__err(b->ctx, PCLIP_STATUS_INTERNAL, "graph: tensor '%s' has op %d", t->name,
                          (int)t->op);
    if (t->view_src && (t->view_src->view_src || t->nbytes != s->nbytes || s->id >= t->id))
        return pclip__err(b->ctx, PCLIP_STATUS_INTERNAL, "graph: view '%s' of '%s' is malformed",
                          t->name, s->name);
    switch (s->kind) {
    case PCLIP__TENSOR_WEIGHT:
        if (!s->data)
            return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "graph: weight '%s' has no data", s->name);
        return PCLIP_STATUS_OK;
    case PCLIP__TENSOR_PARAM:
        if (!s->param || s->param->backend != b || s->param->nbytes != s->nbytes)
            return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "graph: param '%s' does not live on this %s backend", s->name,
                              b->ops->name);
        return PCLIP_STATUS_OK;
    case PCLIP__TENSOR_INPUT:
    case PCLIP__TENSOR_ACTIVATION:
        if (t->offset != s->offset || s->offset % PCLIP__ALIGN || s->offset > g->arena_bytes ||
            s->nbytes > g->arena_bytes - s->offset)
            return pclip__err(b->ctx, PCLIP_STATUS_INTERNAL,
                              "graph: tensor '%s' [%zu, +%zu) is misplaced in the %zu-byte arena",
                              t->name, t->offset, t->nbytes, g->arena_bytes);
        return PCLIP_STATUS_OK;
    default:
        return pclip__err(b->ctx, PCLIP_STATUS_INTERNAL, "graph: tensor '%s' has kind %d",
                          t->name, (int)s->kind);
    }
}

static pclip_status plan_build(struct pclip_backend *b, const pclip__graph *g,
                               pclip__exec_plan *p) {
    const int32_t n = g->n_tensors;
    memset(p, 0, sizeof *p);
    p->g = g;
    p->arena_bytes = g->arena_bytes;
    bool *live = pclip__calloc((size_t)n + 1, sizeof *live);
    pclip__plan_node *nodes = pclip__calloc((size_t)n + 1, sizeof *nodes);
    const pclip__tensor **lists = pclip__calloc(4 * ((size_t)n + 1), sizeof *lists);
    size_t *io = pclip__malloc(((size_t)n + 1) * sizeof *io);
    p->live = live;
    p->nodes = nodes;
    p->inputs = lists;
    p->io_offset = io;
    if (!live || !nodes || !lists || !io) {
        plan_free(p);
        return pclip__err(b->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "graph: out of memory");
    }
    const pclip__tensor **inputs = lists, **outputs = lists + (n + 1),
                        **weights = lists + 2 * (n + 1), **params = lists + 3 * (n + 1);
    pclip_status st = PCLIP_STATUS_OK;
    for (int32_t i = 0; !st && i < n; i++) st = check_tensor(b, g, g->tensors[i]);
    if (st) {
        plan_free(p);
        return st;
    }
    /* Which ops run: walking back from the outputs and the ops with side
     * effects, an op runs when something that runs reads its result (or a
     * view of it). */
    for (int32_t i = n - 1; i >= 0; i--) {
        const pclip__tensor *t = g->tensors[i];
        const pclip__op_info *info = pclip__op_get(t->op);
        if (t->is_output || (t->op != PCLIP__OP_NONE && (info->flags & PCLIP__OPF_SIDE_EFFECT)))
            live[i] = true;
        if (!live[i]) continue;
        if (t->view_src) live[t->view_src->id] = true;
        for (int32_t k = 0; k < t->n_src; k++)
            if (t->src[k]) {
                live[t->src[k]->id] = true;
                live[pclip__storage(t->src[k])->id] = true;
            }
    }
    size_t at = 0;
    for (int32_t i = 0; i < n; i++) io[i] = SIZE_MAX;
    for (int32_t i = 0; i < n; i++) {
        const pclip__tensor *t = g->tensors[i];
        if (t->view_src) continue;
        if (t->kind == PCLIP__TENSOR_INPUT) {
            /* every input, live or not: callers write them all */
            inputs[p->n_inputs++] = t;
            io[i] = at;
            at += (t->nbytes + 63) / 64 * 64;
        } else if (t->kind == PCLIP__TENSOR_WEIGHT && live[i]) {
            weights[p->n_weights++] = t;
        } else if (t->kind == PCLIP__TENSOR_PARAM && live[i]) {
            params[p->n_params++] = t;
        }
    }
    for (int32_t i = 0; i < n; i++) {
        const pclip__tensor *t = g->tensors[i];
        if (!t->is_output) continue;
        outputs[p->n_outputs++] = t;
        io[i] = at;
        at += (t->nbytes + 63) / 64 * 64;
    }
    p->io_bytes = at;
    for (int32_t i = 0; i < n; i++) {
        const pclip__tensor *t = g->tensors[i];
        if (!live[i] || t->op == PCLIP__OP_NONE) continue;
        if (b->ops->supports_op && !b->ops->supports_op(b->state, t)) {
            plan_free(p);
            return pclip__err(b->ctx, PCLIP_STATUS_UNSUPPORTED,
                              "%s: op %s ('%s') is not supported on %s", b->ops->name,
                              pclip__op_name(t->op), t->name, b->info.name);
        }
        nodes[p->n_nodes] = (pclip__plan_node){t, pclip__op_flops(t)};
        p->flops += nodes[p->n_nodes].flops;
        p->n_nodes++;
    }
    p->outputs = outputs;
    p->weights = weights;
    p->params = params;
    return PCLIP_STATUS_OK;
}

/* ---- compiled graphs ---- */

pclip_status pclip__exec_create(struct pclip_backend *b, pclip__graph *g, pclip__exec **out) {
    pclip_status st = pclip__backend_check(b);
    if (st) return st;
    if (g->status)
        return pclip__err(b->ctx, g->status, "graph: it failed to build (%s)",
                          pclip_status_str(g->status));
    if ((st = pclip__graph_plan(g))) return st;
    pclip__exec *e = pclip__calloc(1, sizeof *e);
    if (!e) return pclip__err(b->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "graph: out of memory");
    e->backend = b;
    e->graph = g;
    if ((st = plan_build(b, g, &e->plan))) {
        pclip__free(e);
        return st;
    }
    e->plan.precision = b->precision;
    st = note(b, b->ops->compile(b->state, &e->plan, &e->state));
    if (st) {
        pclip__err_kept kept;
        pclip__err_keep(b->ctx, &kept);
        if (e->state) b->ops->release(e->state);
        pclip__err_restore(b->ctx, &kept);
        plan_free(&e->plan);
        pclip__free(e);
        return st;
    }
    *out = e;
    return PCLIP_STATUS_OK;
}

void pclip__exec_destroy(pclip__exec *e) {
    if (!e) return;
    e->backend->ops->release(e->state);
    plan_free(&e->plan);
    pclip__free(e);
}

/* t, if it is a tensor of this exec's graph. */
static pclip_status own_tensor(const pclip__exec *e, const pclip__tensor *t, const char *what) {
    const pclip__graph *g = e->graph;
    if (!t || t->id < 0 || t->id >= g->n_tensors || g->tensors[t->id] != t)
        return pclip__err(e->backend->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s: %s: tensor '%s' is not part of this graph", e->backend->ops->name,
                          what, t ? t->name : "(null)");
    return PCLIP_STATUS_OK;
}

pclip_status pclip__exec_write(pclip__exec *e, const pclip__tensor *t, const void *data) {
    struct pclip_backend *b = e->backend;
    pclip_status st = pclip__backend_check(b);
    if (!st) st = own_tensor(e, t, "write_input");
    if (st) return st;
    const pclip__tensor *s = pclip__storage(t);
    if (s->kind != PCLIP__TENSOR_INPUT)
        return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "graph: '%s' is not an input",
                          t->name);
    if (!data)
        return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "graph: input '%s': NULL data",
                          t->name);
    return note(b, b->ops->write_input(e->state, s, data));
}

pclip_status pclip__exec_run(pclip__exec *e) {
    struct pclip_backend *b = e->backend;
    pclip_status st = pclip__backend_check(b);
    return st ? st : note(b, b->ops->run(e->state));
}

pclip_status pclip__exec_read(pclip__exec *e, const pclip__tensor *t, void *data) {
    struct pclip_backend *b = e->backend;
    pclip_status st = pclip__backend_check(b);
    if (!st) st = own_tensor(e, t, "read_output");
    if (st) return st;
    if (!t->is_output)
        return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "graph: '%s' is not an output",
                          t->name);
    if (!data)
        return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "graph: output '%s': NULL data",
                          t->name);
    return note(b, b->ops->read_output(e->state, t, data));
}

pclip_status pclip__exec_arena_read(pclip__exec *e, void *data) {
    struct pclip_backend *b = e->backend;
    pclip_status st = pclip__backend_check(b);
    if (st) return st;
    if (!b->ops->arena_read)
        return pclip__err(b->ctx, PCLIP_STATUS_UNSUPPORTED, "%s: no arena access", b->ops->name);
    return note(b, b->ops->arena_read(e->state, data));
}

pclip_status pclip__exec_arena_write(pclip__exec *e, const void *data) {
    struct pclip_backend *b = e->backend;
    pclip_status st = pclip__backend_check(b);
    if (st) return st;
    if (!b->ops->arena_write)
        return pclip__err(b->ctx, PCLIP_STATUS_UNSUPPORTED, "%s: no arena access", b->ops->name);
    return note(b, b->ops->arena_write(e->state, data));
}

/* ---- params ---- */

pclip_status pclip__param_create(struct pclip_backend *b, const char *name, int32_t ndim,
                                 const int64_t *ne, pclip__param **out) {
    pclip_status st = pclip__backend_check(b);
    if (st) return st;
    size_t count = 1;
    if (ndim < 1 || ndim > PCLIP__MAX_DIMS)
        return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "param '%s': %d dimensions",
                          name, ndim);
    for (int32_t i = 0; i < ndim; i++)
        if (ne[i] <= 0 || !pclip__mul_size(count, (size_t)ne[i], &count) ||
            count > ((size_t)1 << 36))
            return pclip__err(b->ctx, PCLIP_STATUS_LIMIT, "param '%s': size %lld in dim %d", name,
                              (long long)ne[i], i);
    pclip__param *p = pclip__calloc(1, sizeof *p);
    if (!p) return pclip__err(b->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "param '%s': out of memory", name);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->backend = b;
    p->ndim = ndim;
    for (int32_t i = 0; i < ndim; i++) p->ne[i] = ne[i];
    p->nbytes = count * sizeof(float);
    if ((st = note(b, b->ops->param_create(b->state, p->nbytes, &p->handle)))) {
        pclip__free(p);
        return st;
    }
    *out = p;
    return PCLIP_STATUS_OK;
}

void pclip__param_destroy(pclip__param *p) {
    if (!p) return;
    p->backend->ops->param_destroy(p->backend->state, p->handle);
    pclip__free(p);
}

pclip_status pclip__param_write(pclip__param *p, const float *data) {
    struct pclip_backend *b = p->backend;
    pclip_status st = pclip__backend_check(b);
    if (st) return st;
    if (!data)
        return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "param '%s': NULL data", p->name);
    return note(b, b->ops->param_write(b->state, p->handle, data, p->nbytes));
}

pclip_status pclip__param_read(pclip__param *p, float *data) {
    struct pclip_backend *b = p->backend;
    pclip_status st = pclip__backend_check(b);
    if (st) return st;
    if (!data)
        return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "param '%s': NULL data", p->name);
    return note(b, b->ops->param_read(b->state, p->handle, data, p->nbytes));
}
