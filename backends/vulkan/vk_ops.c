/* Vulkan pipelines and the per-op dispatch choices.
 *
 * A pipeline is one shader variant (the table in cmake/vulkan.cmake) with
 * its specialization constants; constant 0 is always the workgroup size, and
 * the pipeline record keeps it, so the workgroup counts below are computed
 * from the record and nowhere else. Pipelines are created on first use and
 * cached per backend instance.
 *
 * Each op has one prepare function (the table is indexed by op and checked
 * against PCLIP__OP_COUNT): it picks the variant and its constants from the
 * device's tuning, copies the op's parameter struct into the push constants
 * (the shaders' push-constant blocks mirror them), and sets the workgroup
 * counts. The tuning is chosen per device type at open; the PORTCLIP_VK_*
 * tuning variables override it for tests and benchmarks (the table of every
 * Vulkan variable is in vk.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"

_Static_assert(sizeof(pclip__op_params) <= PCLIP__VK_PUSH_BYTES,
               "every op's parameters fit the push constants");

/* ---- pipelines ---- */

pclip_status pclip__vk_pipeline_get(pclip__vk *s, pclip__vk_shader shader, const uint32_t *spec,
                                    int32_t n_spec, const pclip__vk_pipeline **out) {
    for (int32_t i = 0; i < s->n_pipes; i++) {
        const pclip__vk_pipeline *p = s->pipes[i];
        if (p->shader == shader && p->n_spec == n_spec &&
            memcmp(p->spec, spec, (size_t)n_spec * sizeof *spec) == 0) {
            *out = p;
            return PCLIP_STATUS_OK;
        }
    }
    const pclip__vk_spirv *src = &pclip__vk_spirv_table[shader];
    const VkPhysicalDeviceLimits *lim = &s->caps.props.limits;
    if (n_spec < 1 || n_spec > PCLIP__VK_MAX_SPEC || spec[0] == 0 ||
        spec[0] > lim->maxComputeWorkGroupSize[0] || spec[0] > lim->maxComputeWorkGroupInvocations)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                          "vulkan: shader %s: workgroup size %u exceeds the device's limit %u",
                          src->name, n_spec > 0 ? spec[0] : 0, lim->maxComputeWorkGroupInvocations);
    if (s->n_pipes == s->cap_pipes) {
        int32_t cap = s->cap_pipes ? 2 * s->cap_pipes : 16;
        pclip__vk_pipeline **grown = pclip__realloc(s->pipes, (size_t)cap * sizeof *grown);
        if (!grown) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
        s->pipes = grown;
        s->cap_pipes = cap;
    }
    pclip__vk_pipeline *p = pclip__calloc(1, sizeof *p);
    if (!p) return pclip__err(s->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    p->shader = shader;
    p->n_spec = n_spec;
    memcpy(p->spec, spec, (size_t)n_spec * sizeof *spec);
    p->local_size = spec[0];

    VkShaderModuleCreateInfo mci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = src->bytes,
        .pCode = src->code,
    };
    VkShaderModule module;
    VkResult r = s->vk.vkCreateShaderModule(s->dev, &mci, NULL, &module);
    if (r == VK_SUCCESS) {
        VkSpecializationMapEntry map[PCLIP__VK_MAX_SPEC];
        for (int32_t i = 0; i < n_spec; i++)
            map[i] = (VkSpecializationMapEntry){(uint32_t)i, (uint32_t)i * 4, 4};
        VkSpecializationInfo si = {
            .mapEntryCount = (uint32_t)n_spec,
            .pMapEntries = map,
            .dataSize = (size_t)n_spec * 4,
            .pData = p->spec,
        };
        VkComputePipelineCreateInfo ci = {
            .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            .stage =
                {
                    .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                    .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                    .module = module,
                    .pName = "main",
                    .pSpecializationInfo = &si,
                },
            .layout = s->layout,
        };
        r = s->vk.vkCreateComputePipelines(s->dev, VK_NULL_HANDLE, 1, &ci, NULL, &p->pipeline);
        s->vk.vkDestroyShaderModule(s->dev, module, NULL);
    }
    if (r != VK_SUCCESS) {
        pclip__free(p);
        char what[160];
        snprintf(what, sizeof what, "creating the pipeline of shader %s (shaders/vulkan/%s)",
                 src->name, src->source);
        return pclip__vk_result(s, r, what);
    }
    s->pipes[s->n_pipes++] = p;
    *out = p;
    return PCLIP_STATUS_OK;
}

void pclip__vk_pipelines_destroy(pclip__vk *s) {
    for (int32_t i = 0; i < s->n_pipes; i++) {
        s->vk.vkDestroyPipeline(s->dev, s->pipes[i]->pipeline, NULL);
        pclip__free(s->pipes[i]);
    }
    pclip__free(s->pipes);
    s->pipes = NULL;
    s->n_pipes = s->cap_pipes = 0;
}

/* ---- tuning ---- */

static uint32_t pow2_floor(uint32_t x) {
    uint32_t p = 1;
    while (p * 2 <= x) p *= 2;
    return p;
}

static uint32_t pow2_ceil(uint32_t x) {
    uint32_t p = 1;
    while (p < x) p *= 2;
    return p;
}

pclip_status pclip__vk_tuning_init(pclip__vk *s) {
    const VkPhysicalDeviceLimits *lim = &s->caps.props.limits;
    pclip__vk_tuning *t = &s->tune;
    const uint32_t max_ls =
        pow2_floor(lim->maxComputeWorkGroupInvocations < lim->maxComputeWorkGroupSize[0]
                       ? lim->maxComputeWorkGroupInvocations
                       : lim->maxComputeWorkGroupSize[0]);
    if (s->caps.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
        /* lavapipe and other CPU implementations: a workgroup runs on one
         * thread, SIMD across invocations; barriers are costly and the
         * registers many (measured in bench/bench_vulkan.c) */
        *t = (pclip__vk_tuning){.elem_ls = 64,
                                .row_ls = 64,
                                .direct = true,
                                .attn_ls = 64,
                                .attn_qb = 8,
                                .attn_direct_ls = 8,
                                .attn_direct_qr = 8};
    } else {
        *t = (pclip__vk_tuning){.elem_ls = 256,
                                .row_ls = 256,
                                .attn_ls = 128,
                                .attn_qb = 8,
                                .attn_direct_ls = 64,
                                .attn_direct_qr = 1};
    }
    /* the tuning variables of the table above; a bad value fails the open */
    static const char *const kernel_words[] = {"auto", "tiled", "direct", "swap"};
    int kernels;
    int64_t no_subgroups, qr, kt, sg_tile[2], tile[5], fp16_arith, fp16_run;
    bool sg_tile_set, tile_set;
    pclip_ctx_t ctx = s->ctx;
    pclip_status st = pclip__env_choice(ctx, "PORTCLIP_VK_KERNELS", kernel_words, 4, 0, &kernels);
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_VK_NO_SUBGROUP", 0, 1, 0, &no_subgroups);
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_VK_ATTN_QR", 1, 8, t->attn_direct_qr, &qr);
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_VK_ATTN_KT", 0, 1 << 16, 0, &kt);
    if (!st)
        st = pclip__env_ints(ctx, "PORTCLIP_VK_MATMUL_SG_TILE", 2, 1, 1024, sg_tile, &sg_tile_set);
    if (!st) st = pclip__env_ints(ctx, "PORTCLIP_VK_MATMUL_TILE", 5, 1, 1024, tile, &tile_set);
    /* fp16 products by default on GPUs only: a CPU implementation (lavapipe)
     * has no fp16 hardware and converts each half value, 0.28x of fp32 there
     * against 0.99x for storage only (bench/RESULTS.md) */
    const bool cpu_device = s->caps.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_VK_FP16_ARITH", 0, 1, !cpu_device, &fp16_arith);
    /* 4 products per fp16 sum: chosen from the loss measured for 1, 2, 4
     * and 8 (README, "fp16 on Vulkan") */
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_VK_FP16_RUN", 1, 16, 4, &fp16_run);
    if (st) {
        pclip__err_prefix(ctx, "vulkan");
        return st;
    }
    if (kernels == 3 || kernels == (t->direct ? 1 : 2)) t->direct = !t->direct;
    /* direct: TM x TN = 8 x 16 per invocation, 8 invocations (measured best on
     * lavapipe); tiled: 64 x 64 blocks, 4 x 4 per invocation */
    t->mm =
        t->direct ? (pclip__vk_mm_tile){8, 128, 4, 8, 16} : (pclip__vk_mm_tile){64, 64, 16, 4, 4};
    t->subgroups = s->caps.subgroup_arith && !no_subgroups;
    /* direct with a's rows shared across the subgroup (one subgroup per
     * workgroup): TM x TN = 16 x 8 per invocation (measured on lavapipe) */
    const uint32_t sg = s->caps.subgroup_size;
    if (t->direct && !no_subgroups && s->caps.subgroup_ballot && (sg == 4 || sg == 8 || sg == 16) &&
        sg <= max_ls)
        t->mm_sg = (pclip__vk_mm_tile){16, sg * 8, 4, 16, 8};
    if (sg_tile_set && t->mm_sg.bm) { /* ignored where matmul_direct_sg does not run */
        const uint32_t tm = (uint32_t)sg_tile[0], tn = (uint32_t)sg_tile[1];
        if (tm % sg || tm * tn > 1024)
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "vulkan: PORTCLIP_VK_MATMUL_SG_TILE=%u,%u: TM must be a multiple of "
                              "the subgroup size %u and TM x TN at most 1024",
                              tm, tn, sg);
        t->mm_sg = (pclip__vk_mm_tile){tm, sg * tn, 4, tm, tn};
    }
    if (tile_set) {
        const uint32_t bm = (uint32_t)tile[0], bn = (uint32_t)tile[1], bk = (uint32_t)tile[2],
                       tm = (uint32_t)tile[3], tn = (uint32_t)tile[4];
        if (bm % tm || bn % tn || (bm / tm) * (bn / tn) > max_ls)
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "vulkan: PORTCLIP_VK_MATMUL_TILE=%u,%u,%u,%u,%u: BM and BN must be "
                              "multiples of TM and TN, with (BM/TM) x (BN/TN) at most %u "
                              "invocations",
                              bm, bn, bk, tm, tn, max_ls);
        t->mm = (pclip__vk_mm_tile){bm, bn, bk, tm, tn};
    }
    t->mm_f16a_bk = tile_set ? t->mm.bk : 2 * t->mm.bk;
    t->fp16_arith = s->caps.fp16_arith && s->caps.fp16_storage && fp16_arith;
    t->fp16_run = (uint32_t)fp16_run;
    t->attn_direct_qr = (uint32_t)qr;
    t->attn_kt = (uint32_t)kt;
    if (t->elem_ls > max_ls) t->elem_ls = max_ls;
    if (t->row_ls > max_ls) t->row_ls = max_ls;
    if (t->attn_ls > max_ls) t->attn_ls = max_ls;
    while ((t->mm.bm / t->mm.tm) * (t->mm.bn / t->mm.tn) > max_ls)
        t->mm.bm /= 2; /* >= 128 anyway */
    return PCLIP_STATUS_OK;
}

/* ---- workgroup counts ---- */

/* `groups` workgroups of a 1-D problem, folded into (x, y) past the x limit. */
static pclip_status grid_fold(pclip__vk *s, pclip__vk_node *n, uint64_t groups) {
    const uint32_t *mx = s->caps.props.limits.maxComputeWorkGroupCount;
    uint64_t gx = groups < mx[0] ? groups : mx[0];
    if (gx == 0) gx = 1;
    uint64_t gy = (groups + gx - 1) / gx;
    if (gy > mx[1])
        return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                          "vulkan: op '%s' needs %llu workgroups, more than the device allows",
                          n->t->name, (unsigned long long)groups);
    n->groups[0] = (uint32_t)gx;
    n->groups[1] = (uint32_t)gy;
    n->groups[2] = 1;
    return PCLIP_STATUS_OK;
}

static pclip_status grid_3d(pclip__vk *s, pclip__vk_node *n, uint64_t x, uint64_t y, uint64_t z) {
    const uint32_t *mx = s->caps.props.limits.maxComputeWorkGroupCount;
    if (x > mx[0] || y > mx[1] || z > mx[2])
        return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                          "vulkan: op '%s' needs %llu x %llu x %llu workgroups, more than the "
                          "device allows (%u x %u x %u)",
                          n->t->name, (unsigned long long)x, (unsigned long long)y,
                          (unsigned long long)z, mx[0], mx[1], mx[2]);
    n->groups[0] = (uint32_t)x;
    n->groups[1] = (uint32_t)y;
    n->groups[2] = (uint32_t)z;
    return PCLIP_STATUS_OK;
}

static void push(pclip__vk_node *n, const void *params, size_t bytes) {
    memcpy(n->push, params, bytes);
    n->push_bytes = (uint32_t)bytes;
}

/* An elementwise op over `items` outputs, one invocation each. */
static pclip_status elementwise(pclip__vk *s, pclip__vk_node *n, pclip__vk_shader shader,
                                uint64_t items) {
    const uint32_t spec[1] = {s->tune.elem_ls};
    pclip_status st = pclip__vk_pipeline_get(s, shader, spec, 1, &n->pl);
    if (st) return st;
    return grid_fold(s, n, (items + n->pl->local_size - 1) / n->pl->local_size);
}

/* A row op: one workgroup per row. */
static pclip_status rowwise(pclip__vk *s, pclip__vk_node *n, pclip__vk_shader plain,
                            pclip__vk_shader subgroup, int64_t rows) {
    const uint32_t spec[1] = {s->tune.row_ls};
    pclip_status st =
        pclip__vk_pipeline_get(s, s->tune.subgroups ? subgroup : plain, spec, 1, &n->pl);
    if (st) return st;
    return grid_fold(s, n, (uint64_t)rows);
}

/* ---- the ops ---- */

static pclip_status prep_matmul(pclip__vk *s, pclip__vk_node *n) {
    const pclip__matmul_params *p = &n->t->params.matmul;
    pclip__vk_mm_tile mt = s->tune.mm;
    /* A skinny product (one image's 50 tokens) gives a 64 x 64 grid too few
     * workgroups to fill a GPU: halve the block's rows (2 x 4 per invocation,
     * still 256 invocations). An untuned guess until measured on a GPU. */
    if (!s->tune.direct && mt.bm == 64 && mt.tm == 4 &&
        ((uint64_t)p->M + 63) / 64 * (((uint64_t)p->N + 63) / 64) * (uint64_t)p->batch < 64)
        mt = (pclip__vk_mm_tile){32, 64, mt.bk, 2, 4};
    /* fp16 products (*_f16a): the tiled kernel's tiles hold half, two k per
     * word, so BK is even, and twice the fp32 kernel's BK fits the same
     * shared bytes (an untuned guess until measured on a GPU) */
    const bool f16a = n->half_b && s->tune.fp16_arith;
    if (f16a && !s->tune.direct) mt.bk = s->tune.mm_f16a_bk;
    if (f16a && mt.bk % 2) mt.bk++;
    const uint32_t max_shared = s->caps.props.limits.maxComputeSharedMemorySize;
    const uint32_t elem_bytes = f16a ? 2 : 4;
    while (!s->tune.direct && mt.bk > 4 &&
           mt.bk * (mt.bm + 1 + mt.bn + 1) * elem_bytes > max_shared)
        mt.bk /= 2;
    /* matmul_direct's loop (its PATH constant): vec4 loads where the sizes
     * allow; *_f16a has no vec4 loop for b [K, N] (not a layer of CLIP's) */
    uint32_t path = p->trans_b ? (p->K % 4 == 0 ? 0 : 1)
                               : (p->K % 4 == 0 && p->N % 4 == 0 && mt.tn % 4 == 0 ? 2 : 3);
    if (f16a && path == 2) path = 3;
    pclip__vk_shader shader =
        s->tune.direct ? PCLIP__VK_SHADER_MATMUL_DIRECT : PCLIP__VK_SHADER_MATMUL;
    if (s->tune.direct && path == 0 && s->tune.mm_sg.bm) {
        mt = s->tune.mm_sg;
        const uint32_t sg = mt.bn / mt.tn;
        shader = sg == 4   ? PCLIP__VK_SHADER_MATMUL_DIRECT_SG4
                 : sg == 8 ? PCLIP__VK_SHADER_MATMUL_DIRECT_SG8
                           : PCLIP__VK_SHADER_MATMUL_DIRECT_SG16;
    }
    if (f16a) /* precision fp16 with fp16 products: b fp16, a rounded to fp16 */
        shader = shader == PCLIP__VK_SHADER_MATMUL          ? PCLIP__VK_SHADER_MATMUL_F16A
                 : shader == PCLIP__VK_SHADER_MATMUL_DIRECT ? PCLIP__VK_SHADER_MATMUL_DIRECT_F16A
                 : shader == PCLIP__VK_SHADER_MATMUL_DIRECT_SG4
                     ? PCLIP__VK_SHADER_MATMUL_DIRECT_SG4_F16A
                 : shader == PCLIP__VK_SHADER_MATMUL_DIRECT_SG8
                     ? PCLIP__VK_SHADER_MATMUL_DIRECT_SG8_F16A
                     : PCLIP__VK_SHADER_MATMUL_DIRECT_SG16_F16A;
    else if (n->half_b) /* precision fp16: the same kernel reading b as fp16 */
        shader = shader == PCLIP__VK_SHADER_MATMUL          ? PCLIP__VK_SHADER_MATMUL_F16
                 : shader == PCLIP__VK_SHADER_MATMUL_DIRECT ? PCLIP__VK_SHADER_MATMUL_DIRECT_F16
                 : shader == PCLIP__VK_SHADER_MATMUL_DIRECT_SG4
                     ? PCLIP__VK_SHADER_MATMUL_DIRECT_SG4_F16
                 : shader == PCLIP__VK_SHADER_MATMUL_DIRECT_SG8
                     ? PCLIP__VK_SHADER_MATMUL_DIRECT_SG8_F16
                     : PCLIP__VK_SHADER_MATMUL_DIRECT_SG16_F16;
    /* constant 6 (PATH) exists in the direct kernels only, 7 (RUN) in *_f16a */
    const uint32_t spec[8] = {(mt.bm / mt.tm) * (mt.bn / mt.tn),
                              mt.bm,
                              mt.bn,
                              mt.bk,
                              mt.tm,
                              mt.tn,
                              path,
                              s->tune.fp16_run};
    pclip_status st = pclip__vk_pipeline_get(s, shader, spec, f16a ? 8 : s->tune.direct ? 7 : 6,
                                             &n->pl);
    if (st) return st;
    push(n, p, sizeof *p);
    return grid_3d(s, n, ((uint64_t)p->N + mt.bn - 1) / mt.bn, ((uint64_t)p->M + mt.bm - 1) / mt.bm,
                   (uint64_t)p->batch);
}

static uint64_t binary_items(const pclip__binary_params *p) {
    return (uint64_t)p->ne[0] * (uint64_t)p->ne[1] * (uint64_t)p->ne[2] * (uint64_t)p->ne[3];
}

static pclip_status prep_add(pclip__vk *s, pclip__vk_node *n) {
    push(n, &n->t->params.add, sizeof n->t->params.add);
    return elementwise(s, n, PCLIP__VK_SHADER_BINARY_ADD, binary_items(&n->t->params.add));
}

static pclip_status prep_mul(pclip__vk *s, pclip__vk_node *n) {
    push(n, &n->t->params.mul, sizeof n->t->params.mul);
    return elementwise(s, n, PCLIP__VK_SHADER_BINARY_MUL, binary_items(&n->t->params.mul));
}

static pclip_status prep_scale(pclip__vk *s, pclip__vk_node *n) {
    push(n, &n->t->params.scale, sizeof n->t->params.scale);
    return elementwise(s, n, PCLIP__VK_SHADER_SCALE, (uint64_t)n->t->params.scale.n);
}

static pclip_status prep_act(pclip__vk *s, pclip__vk_node *n) {
    push(n, &n->t->params.act, sizeof n->t->params.act);
    return elementwise(s, n, PCLIP__VK_SHADER_ACT, (uint64_t)n->t->params.act.n);
}

static pclip_status prep_layer_norm(pclip__vk *s, pclip__vk_node *n) {
    const pclip__layer_norm_params *p = &n->t->params.layer_norm;
    push(n, p, sizeof *p);
    return rowwise(s, n, PCLIP__VK_SHADER_LAYER_NORM, PCLIP__VK_SHADER_LAYER_NORM_SG, p->rows);
}

static pclip_status prep_softmax(pclip__vk *s, pclip__vk_node *n) {
    const pclip__softmax_params *p = &n->t->params.softmax;
    push(n, p, sizeof *p);
    return rowwise(s, n, PCLIP__VK_SHADER_SOFTMAX, PCLIP__VK_SHADER_SOFTMAX_SG, p->rows);
}

static pclip_status prep_l2_norm(pclip__vk *s, pclip__vk_node *n) {
    const pclip__l2_norm_params *p = &n->t->params.l2_norm;
    push(n, p, sizeof *p);
    return rowwise(s, n, PCLIP__VK_SHADER_L2_NORM, PCLIP__VK_SHADER_L2_NORM_SG, p->rows);
}

/* Shared floats of attention.comp for these choices (its layout comment). */
static uint64_t attention_shared(uint32_t ls, uint32_t qb, uint32_t kt, uint32_t d) {
    uint64_t parts = ls / d ? ls / d : 1;
    uint64_t s_region = (uint64_t)qb * kt > parts * qb * d ? (uint64_t)qb * kt : parts * qb * d;
    return (uint64_t)qb * d + s_region + ls + 3ull * qb;
}

static pclip_status prep_attention(pclip__vk *s, pclip__vk_node *n) {
    const pclip__attention_params *p = &n->t->params.attention;
    const VkPhysicalDeviceLimits *lim = &s->caps.props.limits;
    if (s->tune.direct && !s->tune.attn_kt && p->head_dim % 4 == 0) {
        /* QR rows of q and output in registers: at most 128 vec4 of them, so
         * that the JIT's code stays reasonable for wide heads */
        uint32_t qr = s->tune.attn_direct_qr;
        while (qr > 1 && qr * (uint32_t)p->head_dim / 4 > 128) qr /= 2;
        const uint32_t spec[3] = {s->tune.attn_direct_ls, (uint32_t)p->head_dim / 4, qr};
        pclip_status st =
            pclip__vk_pipeline_get(s, PCLIP__VK_SHADER_ATTENTION_DIRECT, spec, 3, &n->pl);
        if (st) return st;
        push(n, p, sizeof *p);
        const uint64_t rows = (uint64_t)n->pl->local_size * qr;
        return grid_3d(s, n, ((uint64_t)p->seq + rows - 1) / rows, (uint64_t)p->heads,
                       (uint64_t)p->batch);
    }
    const uint64_t max_floats = lim->maxComputeSharedMemorySize / 4;
    const uint32_t D = (uint32_t)p->head_dim, S = (uint32_t)p->seq;
    /* one output column per invocation in the p v step: LS >= D */
    uint32_t ls = s->tune.attn_ls > pow2_ceil(D) ? s->tune.attn_ls : pow2_ceil(D);
    uint32_t qb = s->tune.attn_qb < pow2_ceil(S) ? s->tune.attn_qb : pow2_ceil(S);
    if (qb > ls) qb = ls;
    /* keys per tile: the whole sequence (rounded up so that nearby lengths
     * share a pipeline) when it fits, else the most that fit */
    uint32_t kt = 0;
    const uint32_t whole = (S + 31) / 32 * 32;
    for (; qb >= 1; qb /= 2) {
        kt = s->tune.attn_kt ? s->tune.attn_kt : whole;
        while (kt > 32 && attention_shared(ls, qb, kt, D) > max_floats)
            kt = kt > 64 ? kt / 64 * 32 : 32;
        if (attention_shared(ls, qb, kt, D) <= max_floats) break;
        if (qb == 1) break;
    }
    if (ls > lim->maxComputeWorkGroupInvocations || attention_shared(ls, qb, kt, D) > max_floats)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                          "vulkan: attention '%s': head_dim %u needs more workgroup memory or "
                          "invocations than the device has",
                          n->t->name, D);
    const uint32_t spec[4] = {ls, qb, kt, (uint32_t)attention_shared(ls, qb, kt, D)};
    pclip_status st = pclip__vk_pipeline_get(s, PCLIP__VK_SHADER_ATTENTION, spec, 4, &n->pl);
    if (st) return st;
    push(n, p, sizeof *p);
    return grid_3d(s, n, (S + qb - 1) / qb, (uint64_t)p->heads, (uint64_t)p->batch);
}

static pclip_status prep_patches(pclip__vk *s, pclip__vk_node *n) {
    const pclip__patches_params *p = &n->t->params.patches;
    push(n, p, sizeof *p);
    return elementwise(s, n, PCLIP__VK_SHADER_PATCHES, (uint64_t)pclip__nelements(n->t));
}

static pclip_status prep_class_concat(pclip__vk *s, pclip__vk_node *n) {
    const pclip__class_concat_params *p = &n->t->params.class_concat;
    push(n, p, sizeof *p);
    return elementwise(s, n, PCLIP__VK_SHADER_CLASS_CONCAT, (uint64_t)pclip__nelements(n->t));
}

static uint64_t gcd(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The table may exceed maxStorageBufferRange (ViT-L's token embedding on
 * lavapipe): it is bound in up to three parts (bindings 0, 2, 3) of
 * part_rows rows each, every part starting at an aligned offset. */
static pclip_status prep_gather_rows(pclip__vk *s, pclip__vk_node *n) {
    const pclip__gather_rows_params *p = &n->t->params.gather_rows;
    const uint64_t row = (uint64_t)p->cols * 4, max_range = s->max_range;
    pclip__vk_binding table = n->bind[0];
    if (table.range > max_range) {
        uint64_t part_rows = max_range / row;
        uint64_t step = s->align / gcd(s->align, row); /* rows per aligned offset */
        part_rows -= part_rows % step;
        uint64_t parts = part_rows ? ((uint64_t)p->table_rows + part_rows - 1) / part_rows : 0;
        if (part_rows == 0 || parts > 3)
            return pclip__err(s->ctx, PCLIP_STATUS_LIMIT,
                              "vulkan: gather_rows '%s': the %llu MiB table needs more than three "
                              "bindings of the device's %llu MiB maxStorageBufferRange",
                              n->t->name, (unsigned long long)(table.range >> 20),
                              (unsigned long long)(max_range >> 20));
        const int slot[3] = {0, 2, 3};
        for (uint64_t k = 0; k < parts; k++) {
            uint64_t first = k * part_rows, rows = (uint64_t)p->table_rows - first;
            if (rows > part_rows) rows = part_rows;
            n->bind[slot[k]] = table;
            n->bind[slot[k]].offset = table.offset + first * row;
            n->bind[slot[k]].range = rows * row;
        }
    }
    push(n, p, sizeof *p);
    return elementwise(s, n, PCLIP__VK_SHADER_GATHER_ROWS, (uint64_t)p->rows * (uint64_t)p->cols);
}

static pclip_status prep_sgd(pclip__vk *s, pclip__vk_node *n) {
    push(n, &n->t->params.sgd, sizeof n->t->params.sgd);
    return elementwise(s, n, PCLIP__VK_SHADER_SGD, (uint64_t)n->t->params.sgd.n);
}

/* One workgroup per row (topk.comp); its size is the row ops' one. */
static pclip_status prep_topk(pclip__vk *s, pclip__vk_node *n) {
    const pclip__topk_params *p = &n->t->params.topk;
    push(n, p, sizeof *p);
    const uint32_t spec[1] = {s->tune.row_ls};
    pclip_status st = pclip__vk_pipeline_get(s, PCLIP__VK_SHADER_TOPK, spec, 1, &n->pl);
    if (st) return st;
    return grid_fold(s, n, (uint64_t)p->rows);
}

/* ---- training ops ---- */

/* A CPU implementation (lavapipe) runs a workgroup as one thread with SIMD
 * across invocations: shared memory is ordinary memory and barriers cost, so
 * it gets whole columns per invocation where a GPU splits work for
 * coalescing. */
static bool cpu_device(const pclip__vk *s) {
    return s->caps.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
}

/* TILE x TILE blocks (transpose.comp): 32 on GPUs (one block row per warp),
 * 16 on CPU devices; the workgroup is the elementwise one, at least TILE. */
static pclip_status prep_transpose(pclip__vk *s, pclip__vk_node *n) {
    const pclip__transpose_params *p = &n->t->params.transpose;
    const uint32_t ls = s->tune.elem_ls;
    uint32_t tile = cpu_device(s) ? 16 : 32;
    while (tile > 1 && (tile > ls || tile * tile < ls)) tile = tile > ls ? tile / 2 : tile * 2;
    const uint32_t spec[2] = {ls, tile};
    pclip_status st = pclip__vk_pipeline_get(s, PCLIP__VK_SHADER_TRANSPOSE, spec, 2, &n->pl);
    if (st) return st;
    push(n, p, sizeof *p);
    const uint32_t t = n->pl->spec[1];
    return grid_3d(s, n, ((uint64_t)p->cols + t - 1) / t, ((uint64_t)p->rows + t - 1) / t, 1);
}

/* SC columns per workgroup (sum_rows.comp): 32 with LS / 32 slices of rows
 * on GPUs; on CPU devices one slice (every invocation a whole column). */
static pclip_status prep_sum_rows(pclip__vk *s, pclip__vk_node *n) {
    const pclip__sum_rows_params *p = &n->t->params.sum_rows;
    const uint32_t ls = s->tune.elem_ls;
    const uint32_t spec[2] = {ls, cpu_device(s) || ls < 32 ? ls : 32};
    pclip_status st = pclip__vk_pipeline_get(s, PCLIP__VK_SHADER_SUM_ROWS, spec, 2, &n->pl);
    if (st) return st;
    push(n, p, sizeof *p);
    const uint32_t sc = n->pl->spec[1];
    return grid_fold(s, n, ((uint64_t)p->cols + sc - 1) / sc);
}

static pclip_status prep_act_grad(pclip__vk *s, pclip__vk_node *n) {
    push(n, &n->t->params.act_grad, sizeof n->t->params.act_grad);
    return elementwise(s, n, PCLIP__VK_SHADER_ACT_GRAD, (uint64_t)n->t->params.act_grad.n);
}

static pclip_status prep_layer_norm_grad(pclip__vk *s, pclip__vk_node *n) {
    const pclip__layer_norm_grad_params *p = &n->t->params.layer_norm_grad;
    push(n, p, sizeof *p);
    return rowwise(s, n, PCLIP__VK_SHADER_LAYER_NORM_GRAD, PCLIP__VK_SHADER_LAYER_NORM_GRAD_SG,
                   p->rows);
}

static pclip_status prep_l2_norm_grad(pclip__vk *s, pclip__vk_node *n) {
    const pclip__l2_norm_grad_params *p = &n->t->params.l2_norm_grad;
    push(n, p, sizeof *p);
    return rowwise(s, n, PCLIP__VK_SHADER_L2_NORM_GRAD, PCLIP__VK_SHADER_L2_NORM_GRAD_SG, p->rows);
}

/* One workgroup for the whole n x n problem (clip_loss.comp says why), as
 * wide as the device allows up to 1024 invocations; the gradient keeps the
 * columns' statistics in shared memory (spec constant 1: n rounded up to
 * 64, so that nearby batches share a pipeline). */
static pclip_status clip_loss_common(pclip__vk *s, pclip__vk_node *n, pclip__vk_shader shader,
                                     int32_t count) {
    const VkPhysicalDeviceLimits *lim = &s->caps.props.limits;
    uint32_t ls = lim->maxComputeWorkGroupInvocations < lim->maxComputeWorkGroupSize[0]
                      ? lim->maxComputeWorkGroupInvocations
                      : lim->maxComputeWorkGroupSize[0];
    ls = pow2_floor(ls < 1024 ? ls : 1024);
    const uint32_t nmax = ((uint32_t)count + 63) / 64 * 64;
    const bool grad = shader == PCLIP__VK_SHADER_CLIP_LOSS_GRAD;
    const uint64_t shared = ((grad ? (uint64_t)nmax : 0) + ls) * 4;
    if (shared > lim->maxComputeSharedMemorySize)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                          "vulkan: %s '%s': a batch of %d needs %llu bytes of workgroup memory; "
                          "%s has %u",
                          pclip__op_name(n->t->op), n->t->name, count, (unsigned long long)shared,
                          s->caps.props.deviceName, lim->maxComputeSharedMemorySize);
    /* lavapipe (and llvmpipe's other users) stop an invocation's loops after
     * 65535 iterations in all, silently: count them (both phases, the
     * reductions' loops included) and refuse a batch past that */
    uint64_t log_ls = 0;
    while ((1u << log_ls) < ls) log_ls++;
    const uint64_t per = ((uint64_t)count + ls - 1) / ls, rows = (uint64_t)count;
    const uint64_t iterations =
        per * (2 * rows + 1) + rows * ((grad ? 3 : 2) * per + 2 * log_ls + 2);
    if (s->caps.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU && iterations > 60000)
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                          "vulkan: %s '%s': a batch of %d needs about %llu loop iterations per "
                          "invocation; %s (a CPU implementation) stops loops after 65535",
                          pclip__op_name(n->t->op), n->t->name, count,
                          (unsigned long long)iterations, s->caps.props.deviceName);
    const uint32_t spec[2] = {ls, nmax};
    pclip_status st = pclip__vk_pipeline_get(s, shader, spec, 2, &n->pl);
    if (st) return st;
    return grid_fold(s, n, 1);
}

static pclip_status prep_clip_loss(pclip__vk *s, pclip__vk_node *n) {
    const pclip__clip_loss_params *p = &n->t->params.clip_loss;
    push(n, p, sizeof *p);
    return clip_loss_common(s, n, PCLIP__VK_SHADER_CLIP_LOSS, p->n);
}

static pclip_status prep_clip_loss_grad(pclip__vk *s, pclip__vk_node *n) {
    const pclip__clip_loss_grad_params *p = &n->t->params.clip_loss_grad;
    push(n, p, sizeof *p);
    return clip_loss_common(s, n, PCLIP__VK_SHADER_CLIP_LOSS_GRAD, p->n);
}

static pclip_status prep_adamw(pclip__vk *s, pclip__vk_node *n) {
    push(n, &n->t->params.adamw, sizeof n->t->params.adamw);
    return elementwise(s, n, PCLIP__VK_SHADER_ADAMW, (uint64_t)n->t->params.adamw.n);
}

typedef pclip_status (*prepare_fn)(pclip__vk *s, pclip__vk_node *n);

static const prepare_fn prepare[] = {[PCLIP__OP_NONE] = NULL,
#define PCLIP__X_PREP(E, name, ns, w, fl, f) [PCLIP__OP_##E] = prep_##name,
                                     PCLIP_OP_LIST(PCLIP__X_PREP)
#undef PCLIP__X_PREP
};
_Static_assert(sizeof prepare / sizeof prepare[0] == PCLIP__OP_COUNT,
               "one prepare function per op");

pclip_status pclip__vk_prepare(pclip__vk *s, pclip__vk_node *n) {
    if ((unsigned)n->t->op >= PCLIP__OP_COUNT || !prepare[n->t->op])
        return pclip__err(s->ctx, PCLIP_STATUS_INTERNAL, "vulkan: tensor '%s' has op %d",
                          n->t->name, (int)n->t->op);
    return prepare[n->t->op](s, n);
}
