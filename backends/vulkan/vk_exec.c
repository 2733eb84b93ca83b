/* Vulkan compiled graphs, and the backend's function table.
 *
 * compile() takes core's plan (graph/backend.h: the ops that run, where each
 * tensor is, the staging layout; every argument is checked there) and does
 * the device work once: the weights are made resident (the backend's cache,
 * vk_memory.c), the arena is one device-local buffer laid out by the
 * planner, inputs and outputs get one host-visible staging buffer, every op
 * gets its pipeline and a descriptor set written with its tensors as ranges
 * (params bind their own buffers), and the whole run is recorded into one
 * command buffer:
 *   input copies (staging -> arena), the dispatches in tensor order, output
 *   copies (arena -> staging),
 * with a pipeline barrier wherever a command touches arena or param bytes
 * that an earlier command since the last barrier wrote (read-after-write,
 * write-after-write) or read (write-after-read: the planner reuses bytes, and
 * in-place ops write their sources).
 * Each barrier is recorded with its reason (pclip__vk_exec_barrier_reason).
 * run() is one vkQueueSubmit and a fence wait with a finite timeout;
 * nothing is created or allocated per run. A timeout or a lost device is
 * sticky: the backend refuses every later call. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, CLOCK_PROCESS_CPUTIME_ID */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vk.h"

/* ---- compiled graphs ---- */

enum { ON_COMPUTE = 1, ON_TRANSFER = 2 };

typedef struct vk_access {
    VkBuffer buf;        /* the arena or a param; VK_NULL_HANDLE: every buffer */
    VkDeviceSize lo, hi; /* bytes of buf */
    bool write;
    uint8_t by_stage;   /* ON_COMPUTE (a dispatch), ON_TRANSFER (a copy), or both */
    const char *tensor; /* names, for the barrier's reason */
    const char *by;
} vk_access;

typedef struct vk_exec {
    pclip__vk *s;
    const pclip__exec_plan *plan;
    const pclip__graph *g;      /* = plan->g */
    pclip__vk_buffer arena;     /* [arena_bytes], device-local */
    pclip__vk_buffer io;        /* host-visible: the plan's staging layout */
    pclip__vk_weight **weights; /* [n_tensors]: the resident weight of each weight tensor */
    pclip__vk_node *nodes;
    int32_t n_nodes;
    VkDescriptorPool dpool;
    VkCommandBuffer cmd;
    VkFence fence;
    bool in_flight; /* submitted and not seen complete (a timeout) */
    uint64_t timeout_ns;
    /* hazard tracking while recording */
    vk_access *pending;
    int32_t n_pending, cap_pending;
    char (*reasons)[192];
    int32_t n_barriers, cap_barriers;
} vk_exec;

int32_t pclip__vk_exec_barriers(void *exec) { return ((vk_exec *)exec)->n_barriers; }

const char *pclip__vk_exec_barrier_reason(void *exec, int32_t i) {
    const vk_exec *x = exec;
    return i >= 0 && i < x->n_barriers ? x->reasons[i] : "";
}

static void vk_release(void *exec) {
    vk_exec *x = exec;
    if (!x) return;
    pclip__vk *s = x->s;
    if (x->in_flight) s->vk.vkQueueWaitIdle(s->queue); /* never free what the device still uses */
    if (x->cmd) s->vk.vkFreeCommandBuffers(s->dev, s->pool, 1, &x->cmd);
    if (x->fence) s->vk.vkDestroyFence(s->dev, x->fence, NULL);
    if (x->dpool) s->vk.vkDestroyDescriptorPool(s->dev, x->dpool, NULL);
    pclip__vk_buffer_destroy(s, &x->arena);
    pclip__vk_buffer_destroy(s, &x->io);
    if (x->weights)
        for (int32_t i = 0; i < x->g->n_tensors; i++) pclip__vk_weight_release(s, x->weights[i]);
    pclip__free(x->weights);
    pclip__free(x->nodes);
    pclip__free(x->pending);
    pclip__free(x->reasons);
    pclip__free(x);
}

/* Bits of a weight's uses among the plan's nodes. */
enum { USE_MATMUL_B = 1, USE_OTHER = 2 };

/* The weights of the plan, made resident: at precision fp16, the F32
 * weights that the plan's ops read only as a matmul's b operand (the linear
 * layers, the patch embedding, the projections) in fp16; every other weight
 * (LayerNorm, biases, embedding tables, position tables) as it is. */
static pclip_status acquire_weights(vk_exec *x) {
    const pclip__exec_plan *plan = x->plan;
    pclip__vk_weight **got = pclip__calloc((size_t)plan->n_weights + 1, sizeof *got);
    x->weights = pclip__calloc((size_t)x->g->n_tensors + 1, sizeof *x->weights);
    uint8_t *use = pclip__calloc((size_t)x->g->n_tensors + 1, 1);
    bool *half = pclip__calloc((size_t)plan->n_weights + 1, sizeof *half);
    pclip_status st = PCLIP_STATUS_OK;
    if (!got || !x->weights || !use || !half)
        st = pclip__err(x->s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    if (!st && plan->precision == PCLIP_PRECISION_FP16) {
        for (int32_t i = 0; i < plan->n_nodes; i++) {
            const pclip__tensor *t = plan->nodes[i].t;
            for (int32_t k = 0; k < t->n_src; k++) {
                const pclip__tensor *w = pclip__storage(t->src[k]);
                if (w && w->kind == PCLIP__TENSOR_WEIGHT)
                    use[w->id] |= t->op == PCLIP__OP_MATMUL && k == 1 ? USE_MATMUL_B : USE_OTHER;
            }
        }
        for (int32_t k = 0; k < plan->n_weights; k++)
            half[k] = use[plan->weights[k]->id] == USE_MATMUL_B &&
                      plan->weights[k]->dtype == PCLIP__DTYPE_F32;
    }
    for (int32_t i = 0; !st && i < plan->n_weights; i++)
        if (plan->weights[i]->dtype != PCLIP__DTYPE_F32 &&
            plan->weights[i]->dtype != PCLIP__DTYPE_I32)
            st = pclip__err(x->s->ctx, PCLIP_STATUS_UNSUPPORTED, "vulkan: weight '%s' dtype",
                            plan->weights[i]->name);
    if (!st && plan->n_weights)
        st = pclip__vk_weights_acquire(x->s, plan->weights, plan->n_weights, half, got);
    for (int32_t k = 0; !st && k < plan->n_weights; k++) x->weights[plan->weights[k]->id] = got[k];
    pclip__free(got);
    pclip__free(use);
    pclip__free(half);
    return st;
}

/* Where a tensor's bytes are on the device. */
static pclip__vk_binding bind_tensor(const vk_exec *x, const pclip__tensor *t) {
    if (!t)
        return (pclip__vk_binding){.buf = x->s->dummy.buf, .offset = 0, .range = x->s->dummy.size};
    const pclip__tensor *st = pclip__storage(t);
    if (st->kind == PCLIP__TENSOR_WEIGHT) {
        const pclip__vk_weight *w = x->weights[st->id];
        const VkDeviceSize at = (VkDeviceSize)((const uint8_t *)st->data - w->host);
        return (pclip__vk_binding){.buf = w->block->b.buf,
                                   .offset = w->offset + (w->half ? at / 2 : at),
                                   .range = w->half ? t->nbytes / 2 : t->nbytes};
    }
    if (st->kind == PCLIP__TENSOR_PARAM) {
        const pclip__vk_buffer *pb = st->param->handle;
        return (pclip__vk_binding){.buf = pb->buf, .offset = 0, .range = t->nbytes, .tracked = true};
    }
    return (pclip__vk_binding){
        .buf = x->arena.buf, .offset = st->offset, .range = t->nbytes, .tracked = true};
}

static pclip_status build_nodes(vk_exec *x) {
    pclip__vk *s = x->s;
    const pclip__exec_plan *plan = x->plan;
    const VkDeviceSize max_range = s->max_range;
    x->nodes = pclip__calloc((size_t)plan->n_nodes + 1, sizeof *x->nodes);
    if (!x->nodes) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    for (int32_t i = 0; i < plan->n_nodes; i++) {
        const pclip__tensor *t = plan->nodes[i].t;
        const uint32_t writes = pclip__op_get(t->op)->writes;
        pclip__vk_node *n = &x->nodes[x->n_nodes++];
        n->t = t;
        for (int32_t k = 0; k < PCLIP__VK_BINDING_DST; k++) {
            n->bind[k] = bind_tensor(x, k < t->n_src ? t->src[k] : NULL);
            n->bind[k].written = (writes >> k & 1) != 0;
        }
        n->bind[PCLIP__VK_BINDING_DST] = bind_tensor(x, t);
        n->bind[PCLIP__VK_BINDING_DST].written = true;
        if (t->op == PCLIP__OP_MATMUL) {
            const pclip__tensor *b = pclip__storage(t->src[1]);
            n->half_b = b->kind == PCLIP__TENSOR_WEIGHT && x->weights[b->id]->half;
        }
        pclip_status st = pclip__vk_prepare(s, n);
        if (st) return st;
        for (int32_t k = 0; k < PCLIP__VK_BINDINGS; k++)
            if (n->bind[k].range > max_range) {
                const pclip__tensor *big = k == PCLIP__VK_BINDING_DST ? t : t->src[k];
                return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                                  "vulkan: op '%s': tensor '%s' is %llu MiB, more than one binding "
                                  "of %s can hold (maxStorageBufferRange %llu MiB); use a smaller "
                                  "batch",
                                  t->name, big ? big->name : "?",
                                  (unsigned long long)(n->bind[k].range >> 20),
                                  s->caps.props.deviceName, (unsigned long long)(max_range >> 20));
            }
    }
    /* a finite wait that a slow device (lavapipe at ~1 GFLOP/s) still meets */
    x->timeout_ns = s->timeout_ms >= 0 ? (uint64_t)s->timeout_ms * 1000000ull
                                       : (uint64_t)(60e9 + plan->flops) /* 60 s + 1 ns per flop */;
    return PCLIP_STATUS_OK;
}

static pclip_status write_descriptors(vk_exec *x) {
    pclip__vk *s = x->s;
    if (x->n_nodes == 0) return PCLIP_STATUS_OK;
    VkDescriptorPoolSize size = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                 (uint32_t)x->n_nodes * PCLIP__VK_BINDINGS};
    VkDescriptorPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = (uint32_t)x->n_nodes,
        .poolSizeCount = 1,
        .pPoolSizes = &size,
    };
    VkResult r = s->vk.vkCreateDescriptorPool(s->dev, &pci, NULL, &x->dpool);
    if (r) return pclip__vk_result(s, r, "vkCreateDescriptorPool");
    for (int32_t i = 0; i < x->n_nodes; i++) {
        pclip__vk_node *n = &x->nodes[i];
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = x->dpool,
            .descriptorSetCount = 1,
            .pSetLayouts = &s->set_layout,
        };
        if ((r = s->vk.vkAllocateDescriptorSets(s->dev, &ai, &n->set)))
            return pclip__vk_result(s, r, "vkAllocateDescriptorSets");
        VkDescriptorBufferInfo info[PCLIP__VK_BINDINGS];
        VkWriteDescriptorSet w[PCLIP__VK_BINDINGS];
        for (uint32_t k = 0; k < PCLIP__VK_BINDINGS; k++) {
            info[k] = (VkDescriptorBufferInfo){n->bind[k].buf, n->bind[k].offset, n->bind[k].range};
            w[k] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = n->set,
                .dstBinding = k,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .pBufferInfo = &info[k],
            };
        }
        s->vk.vkUpdateDescriptorSets(s->dev, PCLIP__VK_BINDINGS, w, 0, NULL);
    }
    return PCLIP_STATUS_OK;
}

/* ---- recording, with hazard-tracked barriers ---- */

static bool overlaps(const vk_access *a, const vk_access *b) {
    if (a->buf && b->buf && a->buf != b->buf) return false;
    return a->lo < b->hi && b->lo < a->hi;
}

/* Records `acc` (the arena bytes one command touches) and, first, a barrier
 * when one of them conflicts with an access since the last barrier. */
static pclip_status track(vk_exec *x, const vk_access *acc, int32_t n) {
    pclip__vk *s = x->s;
    const vk_access *hit_a = NULL, *hit_p = NULL;
    for (int32_t i = 0; i < n && !hit_a; i++)
        for (int32_t j = 0; j < x->n_pending && !hit_a; j++)
            if ((acc[i].write || x->pending[j].write) && overlaps(&acc[i], &x->pending[j]))
                hit_a = &acc[i], hit_p = &x->pending[j];
    if (hit_a) {
        /* The first scope is every access since the last barrier; the second
         * every later arena access (dispatches and copies), so that after it
         * nothing pending needs ordering again. */
        VkPipelineStageFlags src_stage = 0;
        VkAccessFlags src_access = 0;
        for (int32_t j = 0; j < x->n_pending; j++) {
            const vk_access *p = &x->pending[j];
            if (p->by_stage & ON_COMPUTE) {
                src_stage |= VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT;
                if (p->write) src_access |= VK_ACCESS_SHADER_WRITE_BIT;
            }
            if (p->by_stage & ON_TRANSFER) {
                src_stage |= VK_PIPELINE_STAGE_TRANSFER_BIT;
                if (p->write) src_access |= VK_ACCESS_TRANSFER_WRITE_BIT;
            }
        }
        const VkPipelineStageFlags dst_stage =
            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
        const VkAccessFlags dst_access = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = src_access,
            .dstAccessMask = dst_access,
        };
        s->vk.vkCmdPipelineBarrier(x->cmd, src_stage, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
        if (x->n_barriers == x->cap_barriers) {
            int32_t cap = x->cap_barriers ? 2 * x->cap_barriers : 64;
            void *grown = pclip__realloc(x->reasons, (size_t)cap * sizeof *x->reasons);
            if (!grown)
                return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
            x->reasons = grown;
            x->cap_barriers = cap;
        }
        const char *kind = hit_p->write ? (hit_a->write ? "WAW" : "RAW") : "WAR";
        snprintf(x->reasons[x->n_barriers++], sizeof x->reasons[0],
                 "%s: %s%s%s %s '%s' [%llu, %llu) after %s%s%s %s '%s'", kind,
                 hit_a->by_stage == ON_COMPUTE ? "op '" : "", hit_a->by,
                 hit_a->by_stage == ON_COMPUTE ? "'" : "", hit_a->write ? "writes" : "reads",
                 hit_a->tensor, (unsigned long long)hit_a->lo, (unsigned long long)hit_a->hi,
                 hit_p->by_stage == ON_COMPUTE ? "op '" : "", hit_p->by,
                 hit_p->by_stage == ON_COMPUTE ? "'" : "", hit_p->write ? "wrote" : "read",
                 hit_p->tensor);
        x->n_pending = 0; /* a global barrier orders everything before it */
    }
    if (x->n_pending + n > x->cap_pending) {
        int32_t cap = 2 * (x->n_pending + n) + 16;
        vk_access *grown = pclip__realloc(x->pending, (size_t)cap * sizeof *grown);
        if (!grown) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
        x->pending = grown;
        x->cap_pending = cap;
    }
    memcpy(x->pending + x->n_pending, acc, (size_t)n * sizeof *acc);
    x->n_pending += n;
    return PCLIP_STATUS_OK;
}

static pclip_status record(vk_exec *x) {
    pclip__vk *s = x->s;
    VkCommandBufferAllocateInfo cai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = s->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VkResult r = s->vk.vkAllocateCommandBuffers(s->dev, &cai, &x->cmd);
    if (r) {
        x->cmd = VK_NULL_HANDLE;
        return pclip__vk_result(s, r, "vkAllocateCommandBuffers");
    }
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    if ((r = s->vk.vkBeginCommandBuffer(x->cmd, &bi)))
        return pclip__vk_result(s, r, "vkBeginCommandBuffer");

    /* Earlier submissions (this graph's previous run, another graph's run, a
     * param's upload) read and wrote the arena and the params: the first
     * command that touches any of them waits. */
    const vk_access previous = {VK_NULL_HANDLE, 0, ~(VkDeviceSize)0, true, ON_COMPUTE | ON_TRANSFER,
                                "the arena and the params", "earlier submissions"};
    pclip_status st = track(x, &previous, 1);
    vk_access acc[PCLIP__VK_BINDINGS];

    /* inputs: staging -> arena */
    for (int32_t i = 0; !st && i < x->plan->n_inputs; i++) {
        const pclip__tensor *t = x->plan->inputs[i];
        acc[0] = (vk_access){x->arena.buf, t->offset, t->offset + t->nbytes, true, ON_TRANSFER,
                             t->name,      "the input copy"};
        if ((st = track(x, acc, 1))) break;
        VkBufferCopy c = {x->plan->io_offset[t->id], t->offset, t->nbytes};
        s->vk.vkCmdCopyBuffer(x->cmd, x->io.buf, x->arena.buf, 1, &c);
    }
    /* the ops */
    VkPipeline bound = VK_NULL_HANDLE;
    for (int32_t i = 0; !st && i < x->n_nodes; i++) {
        const pclip__vk_node *n = &x->nodes[i];
        int32_t na = 0;
        for (int32_t k = 0; k < PCLIP__VK_BINDINGS; k++) {
            const pclip__vk_binding *b = &n->bind[k];
            if (!b->tracked) continue;
            const pclip__tensor *t = k == PCLIP__VK_BINDING_DST ? n->t
                                     : k < n->t->n_src          ? n->t->src[k]
                                                                : n->t->src[0];
            acc[na++] = (vk_access){b->buf,     b->offset,         b->offset + b->range,
                                    b->written, ON_COMPUTE,        t ? t->name : "?",
                                    n->t->name};
        }
        if ((st = track(x, acc, na))) break;
        if (n->pl->pipeline != bound) {
            s->vk.vkCmdBindPipeline(x->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, n->pl->pipeline);
            bound = n->pl->pipeline;
        }
        s->vk.vkCmdBindDescriptorSets(x->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, s->layout, 0, 1,
                                      &n->set, 0, NULL);
        s->vk.vkCmdPushConstants(x->cmd, s->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                                 PCLIP__VK_PUSH_BYTES, n->push);
        s->vk.vkCmdDispatch(x->cmd, n->groups[0], n->groups[1], n->groups[2]);
    }
    /* outputs: arena -> staging, then made visible to the host */
    bool any_output = false;
    for (int32_t i = 0; !st && i < x->plan->n_outputs; i++) {
        const pclip__tensor *t = x->plan->outputs[i];
        const size_t at = pclip__storage(t)->offset;
        acc[0] = (vk_access){x->arena.buf, at,     at + t->nbytes,   false,
                             ON_TRANSFER,  t->name, "the output copy"};
        if ((st = track(x, acc, 1))) break;
        VkBufferCopy c = {at, x->plan->io_offset[t->id], t->nbytes};
        s->vk.vkCmdCopyBuffer(x->cmd, x->arena.buf, x->io.buf, 1, &c);
        any_output = true;
    }
    if (!st && any_output) {
        /* RAW: the host reads the outputs' staging copies after the fence */
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
        };
        s->vk.vkCmdPipelineBarrier(x->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                   VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    }
    r = s->vk.vkEndCommandBuffer(x->cmd);
    if (!st && r) st = pclip__vk_result(s, r, "vkEndCommandBuffer");
    pclip__free(x->pending);
    x->pending = NULL;
    x->n_pending = x->cap_pending = 0;
    return st;
}

static pclip_status vk_compile(void *state, const pclip__exec_plan *plan, void **out) {
    pclip__vk *s = state;
    pclip_status st = pclip__vk_check(s);
    if (st) return st;
    vk_exec *x = pclip__calloc(1, sizeof *x);
    if (!x) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    *out = x; /* on failure core releases what was made */
    x->s = s;
    x->plan = plan;
    x->g = plan->g;
    st = acquire_weights(x);
    if (!st)
        st = pclip__vk_buffer_create(s, plan->arena_bytes ? plan->arena_bytes : 256,
                                     VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                         VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                         VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                     false, "the graph's activations", &x->arena);
    if (!st)
        st = pclip__vk_buffer_create(
            s, plan->io_bytes ? plan->io_bytes : 64,
            VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT, true,
            "the graph's input/output staging", &x->io);
    if (!st) st = build_nodes(x);
    if (!st) st = write_descriptors(x);
    if (!st) {
        VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        st = pclip__vk_result(s, s->vk.vkCreateFence(s->dev, &fci, NULL, &x->fence),
                              "vkCreateFence");
    }
    if (!st) st = record(x);
    if (!st) st = pclip__vk_check(s);
    return st;
}

/* ---- running ---- */

static pclip_status vk_write_input(void *exec, const pclip__tensor *t, const void *data) {
    vk_exec *x = exec;
    pclip_status st = pclip__vk_check(x->s);
    if (st) return st;
    memcpy((uint8_t *)x->io.map + x->plan->io_offset[t->id], data, t->nbytes);
    return PCLIP_STATUS_OK;
}

static pclip_status vk_read_output(void *exec, const pclip__tensor *t, void *data) {
    vk_exec *x = exec;
    pclip_status st = pclip__vk_check(x->s);
    if (st) return st;
    memcpy(data, (const uint8_t *)x->io.map + x->plan->io_offset[t->id], t->nbytes);
    return PCLIP_STATUS_OK;
}

/* ---- waiting ---- */

static double process_cpu_s(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define WAIT_SLICE_NS (5ull * 1000 * 1000 * 1000)

/* Waits for the run's fence, telling slow from hung. The estimate
 * (x->timeout_ns) assumes a device of its own; a CPU device (lavapipe) on a
 * busy machine can be many times slower without being hung, and its work is
 * this process's own threads. So past the estimate, a CPU device is given
 * further 5 s slices as long as the process used at least 5 % of a core in
 * the last one (progress), up to 10x the estimate; a slice without progress
 * means hung. A timeout set explicitly (PORTCLIP_VK_TIMEOUT_MS) is kept
 * exactly. *waited_ns is the time given. */
static VkResult wait_run(vk_exec *x, uint64_t *waited_ns) {
    pclip__vk *s = x->s;
    VkResult r = s->vk.vkWaitForFences(s->dev, 1, &x->fence, VK_TRUE, x->timeout_ns);
    *waited_ns = x->timeout_ns;
    if (r != VK_TIMEOUT || s->timeout_ms >= 0 ||
        s->caps.props.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU)
        return r;
    const uint64_t cap = x->timeout_ns * 10;
    while (r == VK_TIMEOUT && *waited_ns < cap) {
        double c0 = process_cpu_s();
        r = s->vk.vkWaitForFences(s->dev, 1, &x->fence, VK_TRUE, WAIT_SLICE_NS);
        *waited_ns += WAIT_SLICE_NS;
        if (r == VK_TIMEOUT && process_cpu_s() - c0 < 0.05 * (double)WAIT_SLICE_NS * 1e-9) break;
    }
    return r;
}

static pclip_status vk_run(void *exec) {
    vk_exec *x = exec;
    pclip__vk *s = x->s;
    pclip_status st = pclip__vk_check(s);
    if (st) return st;
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &x->cmd,
    };
    VkResult r = s->vk.vkQueueSubmit(s->queue, 1, &si, x->fence);
    if (r) return pclip__vk_result(s, r, "vkQueueSubmit");
    x->in_flight = true;
    uint64_t waited_ns;
    r = wait_run(x, &waited_ns);
    if (r == VK_TIMEOUT) {
        pclip__vk_result(s, r, "vkWaitForFences");
        return pclip__err(s->ctx, PCLIP_STATUS_DEVICE_LOST,
                          "vulkan: the graph did not finish within %.3f s on %s; the device is "
                          "treated as lost (hung, or far slower than expected)",
                          (double)waited_ns * 1e-9, s->caps.props.deviceName);
    }
    if (r) return pclip__vk_result(s, r, "vkWaitForFences");
    x->in_flight = false;
    if ((r = s->vk.vkResetFences(s->dev, 1, &x->fence)))
        return pclip__vk_result(s, r, "vkResetFences");
    return pclip__vk_check(s);
}

/* The whole arena to or from the host, for the parity tests' guard bytes. */
static pclip_status arena_copy(void *exec, void *data, bool write) {
    vk_exec *x = exec;
    pclip__vk *s = x->s;
    const size_t bytes = x->g->arena_bytes;
    pclip_status st = pclip__vk_check(s);
    if (st || bytes == 0) return st;
    pclip__vk_buffer tmp;
    st = pclip__vk_buffer_create(
        s, bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT, true,
        "a debug copy of the arena", &tmp);
    if (st) return st;
    if (write) memcpy(tmp.map, data, bytes);
    st = pclip__vk_begin_once(s);
    if (!st) {
        /* WAR/WAW: earlier runs (earlier submissions) read and wrote the arena */
        VkMemoryBarrier before = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        };
        s->vk.vkCmdPipelineBarrier(
            s->once_cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &before, 0, NULL, 0, NULL);
        VkBufferCopy c = {0, 0, bytes};
        if (write)
            s->vk.vkCmdCopyBuffer(s->once_cmd, tmp.buf, x->arena.buf, 1, &c);
        else
            s->vk.vkCmdCopyBuffer(s->once_cmd, x->arena.buf, tmp.buf, 1, &c);
        /* RAW: later runs read what was written here; or the host reads the copy */
        VkMemoryBarrier after = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = write ? VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT
                                   : VK_ACCESS_HOST_READ_BIT,
        };
        s->vk.vkCmdPipelineBarrier(s->once_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                   write ? VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                                               VK_PIPELINE_STAGE_TRANSFER_BIT
                                         : VK_PIPELINE_STAGE_HOST_BIT,
                                   0, 1, &after, 0, NULL, 0, NULL);
        st = pclip__vk_submit_once(s, "the arena copy");
    }
    if (!st && !write) memcpy(data, tmp.map, bytes);
    pclip__vk_buffer_destroy(s, &tmp);
    if (!st) st = pclip__vk_check(s);
    return st;
}

static pclip_status vk_arena_read(void *exec, void *data) { return arena_copy(exec, data, false); }

static pclip_status vk_arena_write(void *exec, const void *data) {
    return arena_copy(exec, (void *)(uintptr_t)data, true);
}

/* ---- the table ---- */

const pclip__backend_ops pclip__vulkan_backend_ops = {
    .version = PCLIP__BACKEND_VERSION,
    .name = "vulkan",
    .list_devices = pclip__vk_list_devices,
    .create = pclip__vk_create,
    .destroy = pclip__vk_destroy,
    .compile = vk_compile,
    .write_input = vk_write_input,
    .run = vk_run,
    .read_output = vk_read_output,
    .release = vk_release,
    .param_create = pclip__vk_param_create,
    .param_write = pclip__vk_param_write,
    .param_read = pclip__vk_param_read,
    .param_destroy = pclip__vk_param_destroy,
    .arena_read = vk_arena_read,
    .arena_write = vk_arena_write,
    .precision_check = pclip__vk_precision_check,
};
