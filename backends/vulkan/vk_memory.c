/* Vulkan memory: choosing memory types, allocating (with a clear message
 * when the device is out of memory, and the test-only limit
 * PORTCLIP_VK_MAX_ALLOC_MIB), buffers, and the weights.
 *
 * Weights are uploaded once per backend instance into device-local memory,
 * through a host-visible staging buffer, sub-allocated (first fit, offsets
 * aligned to the device's minimum) from a few large blocks of 16 to 256 MiB,
 * each one VkBuffer. The cache is keyed by host byte range: a tensor whose
 * bytes lie inside a resident weight at an aligned offset (the first T rows
 * of a position table, when another graph uploaded all of it) shares it; a
 * different size is a different range, never a stale view. At precision
 * fp16 the weights that only matmuls read as their b operand are resident
 * as IEEE half instead (converted here, into the staging buffer, once): the
 * layout is part of the key, so such bytes never share an fp32 entry.
 * Entries are counted and freed with their last graph; an empty block is
 * freed too.
 *
 * Not here: the arena and I/O staging of a compiled graph (vk_exec.c) use
 * pclip__vk_buffer_create directly. */
#include <stdio.h>
#include <string.h>

#include "vk.h"

#define MiB(x) ((unsigned long long)(((x) + (1u << 20) - 1) >> 20))

/* ---- memory types ---- */

/* The first type in `bits` with every `want` flag, preferring one that also
 * has `prefer`; -1 when none. */
static int32_t find_type(const pclip__vk *s, uint32_t bits, VkMemoryPropertyFlags want,
                         VkMemoryPropertyFlags prefer) {
    const VkPhysicalDeviceMemoryProperties *m = &s->caps.mem;
    int32_t found = -1;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = m->memoryTypes[i].propertyFlags;
        if (!(bits & (1u << i)) || (f & want) != want) continue;
        if ((f & prefer) == prefer) return (int32_t)i;
        if (found < 0) found = (int32_t)i;
    }
    return found;
}

/* What heap h has left: the budget when VK_EXT_memory_budget is there, else
 * its size. */
static VkDeviceSize heap_available(const pclip__vk *s, uint32_t h) {
    VkDeviceSize size = s->caps.mem.memoryHeaps[h].size;
    if (!s->caps.memory_budget) return size;
    VkPhysicalDeviceMemoryBudgetPropertiesEXT budget = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
    VkPhysicalDeviceMemoryProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2, .pNext = &budget};
    vkGetPhysicalDeviceMemoryProperties2(s->phys, &p2);
    return budget.heapBudget[h] > budget.heapUsage[h] ? budget.heapBudget[h] - budget.heapUsage[h]
                                                      : 0;
}

static pclip_status memory_alloc(pclip__vk *s, const VkMemoryRequirements *req, bool host_visible,
                                 const char *what, VkDeviceMemory *out) {
    const VkMemoryPropertyFlags want =
        host_visible ? VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
                     : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    /* readbacks are faster from cached memory */
    const VkMemoryPropertyFlags prefer = host_visible ? VK_MEMORY_PROPERTY_HOST_CACHED_BIT : 0;
    int32_t type = find_type(s, req->memoryTypeBits, want, prefer);
    if (type < 0)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED, "vulkan: no %s memory type for %s",
                          host_visible ? "host-visible" : "device-local", what);
    const uint32_t heap = s->caps.mem.memoryTypes[type].heapIndex;
    if (s->caps.max_alloc && req->size > s->caps.max_alloc)
        return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                          "vulkan: %s needs %llu MiB in one allocation; %s allows %llu MiB", what,
                          MiB(req->size), s->caps.props.deviceName, MiB(s->caps.max_alloc));
    VkResult r;
    if (s->test_max_alloc && req->size > s->test_max_alloc) {
        r = VK_ERROR_OUT_OF_DEVICE_MEMORY; /* PORTCLIP_VK_MAX_ALLOC_MIB: as if the heap were full */
    } else {
        VkMemoryAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = req->size,
            .memoryTypeIndex = (uint32_t)type,
        };
        r = s->vk.vkAllocateMemory(s->dev, &ai, NULL, out);
    }
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) {
        VkDeviceSize avail = heap_available(s, heap);
        if (s->test_max_alloc && avail > s->test_max_alloc) avail = s->test_max_alloc;
        return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "vulkan: vkAllocateMemory: out of %s memory (need %llu MiB for %s, heap "
                          "%u has %llu MiB)",
                          r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? "device" : "host", MiB(req->size),
                          what, heap, (unsigned long long)(avail >> 20));
    }
    return pclip__vk_result(s, r, "vkAllocateMemory");
}

/* ---- buffers ---- */

pclip_status pclip__vk_buffer_create(pclip__vk *s, VkDeviceSize size, VkBufferUsageFlags usage,
                                     bool host_visible, const char *what, pclip__vk_buffer *out) {
    pclip__vk_buffer b = {.size = size};
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = usage,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = s->vk.vkCreateBuffer(s->dev, &bci, NULL, &b.buf);
    if (r) return pclip__vk_result(s, r, "vkCreateBuffer");
    VkMemoryRequirements req;
    s->vk.vkGetBufferMemoryRequirements(s->dev, b.buf, &req);
    pclip_status st = memory_alloc(s, &req, host_visible, what, &b.mem);
    if (!st)
        st = pclip__vk_result(s, s->vk.vkBindBufferMemory(s->dev, b.buf, b.mem, 0),
                              "vkBindBufferMemory");
    if (!st && host_visible)
        st = pclip__vk_result(s, s->vk.vkMapMemory(s->dev, b.mem, 0, VK_WHOLE_SIZE, 0, &b.map),
                              "vkMapMemory");
    if (st) {
        pclip__vk_buffer_destroy(s, &b);
        return st;
    }
    *out = b;
    return PCLIP_STATUS_OK;
}

void pclip__vk_buffer_destroy(pclip__vk *s, pclip__vk_buffer *b) {
    if (b->buf) s->vk.vkDestroyBuffer(s->dev, b->buf, NULL);
    if (b->mem) s->vk.vkFreeMemory(s->dev, b->mem, NULL); /* unmaps too */
    memset(b, 0, sizeof *b);
}

/* ---- weight blocks ---- */

#define BLOCK_MIN ((VkDeviceSize)16 << 20)
#define BLOCK_MAX ((VkDeviceSize)256 << 20)
#define STAGING_MAX ((VkDeviceSize)64 << 20)

static void block_destroy(pclip__vk *s, pclip__vk_block *b) {
    if (!b) return;
    pclip__vk_buffer_destroy(s, &b->b);
    pclip__free(b->free);
    pclip__free(b);
}

/* A new block of `size` bytes (or, when the device cannot give that much,
 * of `need` bytes), added to the backend's list. */
static pclip_status block_create(pclip__vk *s, VkDeviceSize size, VkDeviceSize need,
                                 pclip__vk_block **out) {
    if (s->n_blocks == s->cap_blocks) {
        int32_t cap = s->cap_blocks ? 2 * s->cap_blocks : 8;
        pclip__vk_block **grown = pclip__realloc(s->blocks, (size_t)cap * sizeof *grown);
        if (!grown) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
        s->blocks = grown;
        s->cap_blocks = cap;
    }
    pclip__vk_block *b = pclip__calloc(1, sizeof *b);
    if (b) b->free = pclip__malloc(8 * sizeof *b->free);
    if (!b || !b->free) {
        if (b) pclip__free(b);
        return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    }
    b->cap_free = 8;
    const VkBufferUsageFlags usage =
        VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    pclip_status st = pclip__vk_buffer_create(s, size, usage, false, "weights", &b->b);
    if (st == PCLIP_STATUS_OUT_OF_MEMORY && need < size)
        st = pclip__vk_buffer_create(s, need, usage, false, "weights", &b->b);
    if (st) {
        block_destroy(s, b);
        return st;
    }
    b->free[0] = (pclip__vk_range){0, b->b.size};
    b->n_free = 1;
    s->blocks[s->n_blocks++] = b;
    *out = b;
    return PCLIP_STATUS_OK;
}

/* First fit of `size` bytes at an `align`-ed offset. */
static bool block_alloc(pclip__vk_block *b, VkDeviceSize size, VkDeviceSize align,
                        VkDeviceSize *off) {
    for (int32_t i = 0; i < b->n_free; i++) {
        pclip__vk_range *f = &b->free[i];
        VkDeviceSize at = pclip__align_up(f->off, align);
        if (at + size > f->off + f->size) continue;
        VkDeviceSize tail = f->off + f->size - (at + size);
        if (at > f->off && tail > 0) {
            if (b->n_free == b->cap_free) {
                pclip__vk_range *grown =
                    pclip__realloc(b->free, (size_t)(2 * b->cap_free) * sizeof *grown);
                if (!grown) return false;
                b->free = grown;
                b->cap_free *= 2;
                f = &b->free[i];
            }
            memmove(&b->free[i + 2], &b->free[i + 1], (size_t)(b->n_free - i - 1) * sizeof *f);
            b->free[i + 1] = (pclip__vk_range){at + size, tail};
            f->size = at - f->off;
            b->n_free++;
        } else if (at > f->off) {
            f->size = at - f->off;
        } else if (tail > 0) {
            f->off = at + size;
            f->size = tail;
        } else {
            memmove(f, f + 1, (size_t)(b->n_free - i - 1) * sizeof *f);
            b->n_free--;
        }
        *off = at;
        return true;
    }
    return false;
}

/* Returns [off, off + size) to the block, merging with its neighbours;
 * false when the list cannot grow (the bytes are then lost until the block
 * goes, which a failed allocation here makes the right trade). */
static bool block_free(pclip__vk_block *b, VkDeviceSize off, VkDeviceSize size) {
    int32_t i = 0;
    while (i < b->n_free && b->free[i].off < off) i++;
    bool left = i > 0 && b->free[i - 1].off + b->free[i - 1].size == off;
    bool right = i < b->n_free && off + size == b->free[i].off;
    if (left && right) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], (size_t)(b->n_free - i - 1) * sizeof *b->free);
        b->n_free--;
    } else if (left) {
        b->free[i - 1].size += size;
    } else if (right) {
        b->free[i].off = off;
        b->free[i].size += size;
    } else {
        if (b->n_free == b->cap_free) {
            pclip__vk_range *grown =
                pclip__realloc(b->free, (size_t)(2 * b->cap_free) * sizeof *grown);
            if (!grown) return false;
            b->free = grown;
            b->cap_free *= 2;
        }
        memmove(&b->free[i + 1], &b->free[i], (size_t)(b->n_free - i) * sizeof *b->free);
        b->free[i] = (pclip__vk_range){off, size};
        b->n_free++;
    }
    return true;
}

static bool block_empty(const pclip__vk_block *b) {
    return b->n_free == 1 && b->free[0].off == 0 && b->free[0].size == b->b.size;
}

/* ---- the weight cache ---- */

/* Bytes of w on the device. */
static size_t dev_bytes(const pclip__vk_weight *w) { return w->half ? w->bytes / 2 : w->bytes; }

/* IEEE half of x, rounding to nearest even (as vcvtps2ph with imm 0): too
 * large for half becomes +-inf, too small a signed zero or a subnormal;
 * NaN stays NaN. */
static uint16_t f32_to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (a < 0x38800000u) { /* below 2^-14: a subnormal half (or zero) */
        if (a < 0x33000000u) return (uint16_t)sign; /* below half the smallest: zero */
        const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14..24 */
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((a - 0x38000000u) >> 13); /* rebias 127 -> 15 */
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry into the exponent */
    return (uint16_t)(sign | h);
}

int32_t pclip__vk_weight_count(void *backend_state) {
    return ((const pclip__vk *)backend_state)->n_weights;
}

void pclip__vk_weight_release(pclip__vk *s, pclip__vk_weight *w) {
    if (!w || --w->refs > 0) return;
    pclip__vk_block *b = w->block;
    if (b) {
        block_free(b, w->offset, w->alloc_size);
        if (block_empty(b)) {
            for (int32_t i = 0; i < s->n_blocks; i++)
                if (s->blocks[i] == b) s->blocks[i] = s->blocks[--s->n_blocks];
            block_destroy(s, b);
        }
    }
    for (int32_t i = 0; i < s->n_weights; i++)
        if (s->weights[i] == w) s->weights[i] = s->weights[--s->n_weights];
    pclip__free(w);
}

/* A resident weight in layout `half` holding [p, p + n) at an aligned
 * device offset, or NULL. */
static pclip__vk_weight *weight_find(const pclip__vk *s, const uint8_t *p, size_t n, bool half) {
    for (int32_t i = 0; i < s->n_weights; i++) {
        pclip__vk_weight *w = s->weights[i];
        if (w->half == half && p >= w->host && n <= w->bytes &&
            (size_t)(p - w->host) <= w->bytes - n &&
            (size_t)(p - w->host) % (half ? 2 * s->align : s->align) == 0)
            return w;
    }
    return NULL;
}

/* Places w in a block with room, or in a new block sized for `pending`
 * more bytes of weights still to place. */
static pclip_status weight_place(pclip__vk *s, pclip__vk_weight *w, VkDeviceSize pending) {
    w->alloc_size = pclip__align_up(dev_bytes(w) ? dev_bytes(w) : 4, 4);
    for (int32_t i = 0; i < s->n_blocks; i++)
        if (block_alloc(s->blocks[i], w->alloc_size, s->align, &w->offset)) {
            w->block = s->blocks[i];
            return PCLIP_STATUS_OK;
        }
    VkDeviceSize size =
        pclip__align_up(pending > w->alloc_size ? pending : w->alloc_size, (VkDeviceSize)1 << 20);
    if (size < BLOCK_MIN) size = BLOCK_MIN;
    if (size > BLOCK_MAX) size = BLOCK_MAX;
    if (size < w->alloc_size)
        size = w->alloc_size; /* one weight over 256 MiB: a block of its own */
    if (s->caps.max_alloc && size > s->caps.max_alloc && w->alloc_size <= s->caps.max_alloc)
        size = s->caps.max_alloc;
    pclip__vk_block *b = NULL;
    pclip_status st = block_create(s, size, w->alloc_size, &b);
    if (st) return st;
    if (!block_alloc(b, w->alloc_size, s->align, &w->offset))
        return pclip__err(s->ctx, PCLIP_STATUS_INTERNAL, "vulkan: a new weight block is too small");
    w->block = b;
    return PCLIP_STATUS_OK;
}

/* The barrier that opens an upload. */
static void upload_barrier_before(pclip__vk *s) {
    /* WAR: earlier submissions' dispatches may have read a freed weight whose
     * bytes these copies now overwrite */
    s->vk.vkCmdPipelineBarrier(s->once_cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                               VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0, NULL, 0, NULL, 0, NULL);
}

static pclip_status upload_flush(pclip__vk *s) {
    /* RAW: every later dispatch on this queue reads the weights copied here */
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT,
    };
    s->vk.vkCmdPipelineBarrier(s->once_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                               VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    return pclip__vk_submit_once(s, "the weight upload");
}

/* Copies every not-yet-uploaded weight of new[0..n) through one staging
 * buffer, in as few submissions as its size allows. */
static pclip_status weights_upload(pclip__vk *s, pclip__vk_weight **list, int32_t n) {
    VkDeviceSize total = 0;
    for (int32_t i = 0; i < n; i++) total += dev_bytes(list[i]);
    if (total == 0) return PCLIP_STATUS_OK;
    pclip__vk_buffer stage;
    VkDeviceSize cap = total < STAGING_MAX ? total : STAGING_MAX;
    pclip_status st = pclip__vk_buffer_create(s, cap, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, true,
                                              "the weights' staging buffer", &stage);
    if (st) return st;
    VkDeviceSize used = 0;
    bool open = false;
    for (int32_t i = 0; !st && i < n; i++) {
        pclip__vk_weight *w = list[i];
        const size_t bytes = dev_bytes(w);
        for (size_t done = 0; !st && done < bytes;) {
            if (!open) {
                if ((st = pclip__vk_begin_once(s))) break;
                upload_barrier_before(s);
                open = true;
                used = 0;
            }
            VkDeviceSize piece = bytes - done;
            if (piece > cap - used) piece = cap - used; /* even: every size here is */
            if (w->half) {
                uint16_t *to = (uint16_t *)((uint8_t *)stage.map + used);
                const float *from = (const float *)(const void *)w->host + done / 2;
                for (size_t k = 0; k < (size_t)piece / 2; k++) to[k] = f32_to_f16(from[k]);
            } else {
                memcpy((uint8_t *)stage.map + used, w->host + done, (size_t)piece);
            }
            VkBufferCopy region = {.srcOffset = used, .dstOffset = w->offset + done, .size = piece};
            s->vk.vkCmdCopyBuffer(s->once_cmd, stage.buf, w->block->b.buf, 1, &region);
            used += piece;
            done += (size_t)piece;
            if (used == cap) {
                st = upload_flush(s);
                open = false;
            }
        }
        if (!st) w->uploaded = true;
    }
    if (!st && open)
        st = upload_flush(s);
    else if (open)
        s->vk.vkEndCommandBuffer(s->once_cmd);
    pclip__vk_buffer_destroy(s, &stage);
    return st;
}

pclip_status pclip__vk_weights_acquire(pclip__vk *s, const pclip__tensor *const *w, int32_t n,
                                       const bool *half, pclip__vk_weight **out) {
    pclip__vk_weight **fresh = pclip__calloc((size_t)n + 1, sizeof *fresh);
    if (!fresh) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    int32_t n_fresh = 0, got = 0;
    pclip_status st = PCLIP_STATUS_OK;
    VkDeviceSize pending = 0;
    for (; got < n; got++) {
        const uint8_t *p = w[got]->data;
        if (!p) {
            st = pclip__err(s->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                            "vulkan: weight '%s' has no data", w[got]->name);
            break;
        }
        const bool h = half && half[got];
        if (h && (w[got]->dtype != PCLIP__DTYPE_F32 || (uintptr_t)p % 4 != 0)) {
            st = pclip__err(s->ctx, PCLIP_STATUS_INTERNAL,
                            "vulkan: weight '%s': only aligned fp32 weights convert to fp16",
                            w[got]->name);
            break;
        }
        pclip__vk_weight *e = weight_find(s, p, w[got]->nbytes, h);
        if (e) {
            e->refs++;
            out[got] = e;
            continue;
        }
        if (s->n_weights == s->cap_weights) {
            int32_t cap = s->cap_weights ? 2 * s->cap_weights : 64;
            pclip__vk_weight **grown = pclip__realloc(s->weights, (size_t)cap * sizeof *grown);
            if (!grown) {
                st = pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
                break;
            }
            s->weights = grown;
            s->cap_weights = cap;
        }
        e = pclip__calloc(1, sizeof *e);
        if (!e) {
            st = pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
            break;
        }
        *e = (pclip__vk_weight){.host = p, .bytes = w[got]->nbytes, .half = h, .refs = 1};
        s->weights[s->n_weights++] = e;
        fresh[n_fresh++] = e;
        out[got] = e;
        pending += pclip__align_up(dev_bytes(e), s->align);
    }
    for (int32_t i = 0; !st && i < n_fresh; i++) {
        st = weight_place(s, fresh[i], pending);
        pending -= pclip__align_up(dev_bytes(fresh[i]), s->align);
    }
    if (!st) st = weights_upload(s, fresh, n_fresh);
    if (st)
        for (int32_t i = 0; i < got; i++) pclip__vk_weight_release(s, out[i]);
    pclip__free(fresh);
    return st;
}

/* ---- params ---- */

/* Every access of earlier submissions to params (dispatches and copies)
 * before a copy of this one; then, after it, every later access. */
static void param_barrier(pclip__vk *s, VkAccessFlags src_access, VkPipelineStageFlags src_stage,
                          VkAccessFlags dst_access, VkPipelineStageFlags dst_stage) {
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = src_access,
        .dstAccessMask = dst_access,
    };
    s->vk.vkCmdPipelineBarrier(s->once_cmd, src_stage, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

#define ANY_DEVICE_ACCESS                                                                          \
    (VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |         \
     VK_ACCESS_TRANSFER_WRITE_BIT)
#define ANY_DEVICE_STAGE (VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT)

pclip_status pclip__vk_param_create(void *state, size_t bytes, void **handle) {
    pclip__vk *s = state;
    pclip_status st = pclip__vk_check(s);
    if (st) return st;
    pclip__vk_buffer *b = pclip__calloc(1, sizeof *b);
    if (!b) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    st = pclip__vk_buffer_create(s, pclip__align_up(bytes ? bytes : 4, 4),
                                 VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                     VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                     VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                 false, "a param", b);
    if (!st) st = pclip__vk_begin_once(s);
    if (!st) {
        s->vk.vkCmdFillBuffer(s->once_cmd, b->buf, 0, VK_WHOLE_SIZE, 0);
        /* RAW: later dispatches and copies see the zeros */
        param_barrier(s, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                      ANY_DEVICE_ACCESS, ANY_DEVICE_STAGE);
        st = pclip__vk_submit_once(s, "zeroing a param");
    }
    if (st) {
        pclip__vk_buffer_destroy(s, b);
        pclip__free(b);
        return st;
    }
    *handle = b;
    return PCLIP_STATUS_OK;
}

/* Copies a whole param to or from the host through a staging buffer. */
static pclip_status param_copy(pclip__vk *s, pclip__vk_buffer *b, void *data, size_t bytes,
                               bool write) {
    pclip_status st = pclip__vk_check(s);
    if (st || bytes == 0) return st;
    pclip__vk_buffer stage;
    st = pclip__vk_buffer_create(s, bytes,
                                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                 true, "a param's staging copy", &stage);
    if (st) return st;
    if (write) memcpy(stage.map, data, bytes);
    st = pclip__vk_begin_once(s);
    if (!st) {
        /* WAR/RAW: earlier submissions' dispatches read and wrote the param */
        param_barrier(s, VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                      ANY_DEVICE_STAGE, VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                      VK_PIPELINE_STAGE_TRANSFER_BIT);
        VkBufferCopy c = {0, 0, bytes};
        if (write)
            s->vk.vkCmdCopyBuffer(s->once_cmd, stage.buf, b->buf, 1, &c);
        else
            s->vk.vkCmdCopyBuffer(s->once_cmd, b->buf, stage.buf, 1, &c);
        /* RAW: later dispatches read the new values; or the host reads the copy */
        if (write)
            param_barrier(s, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                          ANY_DEVICE_ACCESS, ANY_DEVICE_STAGE);
        else
            param_barrier(s, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                          VK_ACCESS_HOST_READ_BIT, VK_PIPELINE_STAGE_HOST_BIT);
        st = pclip__vk_submit_once(s, write ? "a param's upload" : "a param's read-back");
    }
    if (!st && !write) memcpy(data, stage.map, bytes);
    pclip__vk_buffer_destroy(s, &stage);
    if (!st) st = pclip__vk_check(s);
    return st;
}

pclip_status pclip__vk_param_write(void *state, void *handle, const void *data, size_t bytes) {
    return param_copy(state, handle, (void *)(uintptr_t)data, bytes, true);
}

pclip_status pclip__vk_param_read(void *state, void *handle, void *data, size_t bytes) {
    return param_copy(state, handle, data, bytes, false);
}

void pclip__vk_param_destroy(void *state, void *handle) {
    pclip__vk *s = state;
    pclip__vk_buffer *b = handle;
    if (!b) return;
    /* a run that timed out may still use it */
    if (s->lost) s->vk.vkQueueWaitIdle(s->queue);
    pclip__vk_buffer_destroy(s, b);
    pclip__free(b);
}

void pclip__vk_memory_destroy(pclip__vk *s) {
    /* normally empty: every exec releases its weights first */
    for (int32_t i = 0; i < s->n_weights; i++) pclip__free(s->weights[i]);
    for (int32_t i = 0; i < s->n_blocks; i++) block_destroy(s, s->blocks[i]);
    pclip__free(s->weights);
    pclip__free(s->blocks);
    s->weights = NULL;
    s->blocks = NULL;
    s->n_weights = s->n_blocks = 0;
}
