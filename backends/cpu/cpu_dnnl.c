/* oneDNN for the CPU fast path: a fast device's engine and stream, one
 * matmul primitive per MATMUL op made at compile time, the cache of weights
 * reordered into the layout oneDNN prefers, and the one function that maps
 * dnnl_status_t to pclip_status.
 *
 * A weight b used as nn.Linear stores it ([N, K], trans_b, one product) gets
 * `format_tag_any`, so oneDNN picks its blocked layout; the weight is
 * reordered into it once and shared, keyed by (host pointer, layout), by
 * every primitive of every graph compiled on the device (text and vision
 * graphs, several batch sizes). Entries are counted and freed with their last
 * primitive, so a later model whose weights reuse the same addresses never
 * sees stale data. Bias, activation (where oneDNN has it exactly) and the
 * residual (a binary add post-op) are fused. Everything is created at
 * compile time and bound to fixed arena addresses: running is one
 * dnnl_primitive_execute per op, with a user scratchpad owned by the exec.
 *
 * At precision bf16 (plan->precision) such a weight is packed as bf16 (a
 * cache entry of its own: the layout is part of the key), and each run
 * first converts the fp32 activations to bf16 at the start of the scratch
 * (our own AVX512_BF16 loop: oneDNN 2.6's reorder ran it at a fifth of the
 * speed, 10 % of a bf16 text encode);
 * the product accumulates in fp32 and bias, post-ops and the result stay
 * fp32. Products of two activations stay fp32. Where the backend routes
 * bf16 between ops (cpu.h: bf16_src, bf16_dst) the activations are bf16
 * already and are read as they are, and a result that only bf16 matmuls
 * read is written as bf16 by oneDNN itself (rounded once, after bias,
 * activation and residual in fp32). */
#define _GNU_SOURCE /* madvise, MADV_HUGEPAGE */
#include <dnnl.h>
#include <dnnl_debug.h>
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu.h"

/* ---- errors ---- */

/* The one mapping from oneDNN's status to ours, with `what` naming the op. */
static pclip_status dnnl_error(pclip_ctx_t ctx, dnnl_status_t st, const char *what,
                               const char *step) {
    pclip_status s = PCLIP_STATUS_INTERNAL;
    const char *why = "unexpected status";
    switch (st) {
    case dnnl_success: return PCLIP_STATUS_OK;
    case dnnl_out_of_memory: s = PCLIP_STATUS_OUT_OF_MEMORY, why = "out of memory"; break;
    case dnnl_unimplemented:
        s = PCLIP_STATUS_UNSUPPORTED, why = "no implementation for this case on this CPU";
        break;
    case dnnl_invalid_arguments: why = "invalid arguments"; break;
    case dnnl_runtime_error: why = "runtime error"; break;
    default: break;
    }
    return pclip__err(ctx, s, "cpu: oneDNN %s: %s: %s (dnnl_status_t %d)", what, step, why,
                      (int)st);
}

/* oneDNN's JIT (Xbyak) crashes instead of failing when it cannot map memory
 * for the code it generates (seen with RLIMIT_AS between 56 and 68 MiB on
 * the tiny model). So before any primitive is created this checks that some
 * address space is free, and reports a clean out-of-memory error when it is
 * not. 8 MiB: the crash was seen with less than 6 MiB free, and the RLIMIT_AS
 * sweep in tests/check_hostile.c finds none with this check. */
#define DNNL_HEADROOM ((size_t)8 << 20)
static pclip_status dnnl_headroom(pclip_ctx_t ctx, const char *what) {
    void *p = mmap(NULL, DNNL_HEADROOM, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "cpu: out of memory creating the oneDNN primitive for %s (it needs "
                          "about %zu MiB of address space free)",
                          what, DNNL_HEADROOM >> 20);
    munmap(p, DNNL_HEADROOM);
    return PCLIP_STATUS_OK;
}

#define TRY(call, step)                                                                            \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) {                                                                 \
            status = dnnl_error(ctx, st_, what, step);                                             \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* ---- devices ---- */

typedef struct packed_weight {
    const float *host;     /* the graph's weight data: the key, with md */
    dnnl_memory_desc_t md; /* the layout the primitive asked for */
    dnnl_memory_t mem;
    void *block;  /* pclip__malloc'd; mem's data is 64-byte aligned inside */
    int32_t refs; /* primitives that use it */
} packed_weight;

struct pclip__cpu_dnnl {
    pclip_ctx_t ctx;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    packed_weight **packed;
    int32_t n_packed, cap_packed;
};

pclip_status pclip__cpu_dnnl_create(pclip_ctx_t ctx, struct pclip__cpu_dnnl **out) {
    const char *what = "engine";
    pclip_status status = PCLIP_STATUS_OK;
    struct pclip__cpu_dnnl *d = pclip__calloc(1, sizeof *d);
    if (!d) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "cpu: out of memory");
    d->ctx = ctx;
    TRY(dnnl_engine_create(&d->engine, dnnl_cpu, 0), "dnnl_engine_create");
    TRY(dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags), "dnnl_stream_create");
    *out = d;
    return PCLIP_STATUS_OK;
done:
    pclip__cpu_dnnl_destroy(d);
    return status;
}

static void packed_free(packed_weight *w) {
    if (w->mem) dnnl_memory_destroy(w->mem);
    pclip__free(w->block);
    pclip__free(w);
}

void pclip__cpu_dnnl_destroy(struct pclip__cpu_dnnl *d) {
    if (!d) return;
    /* normally empty: every exec releases its primitives first */
    for (int32_t i = 0; i < d->n_packed; i++) packed_free(d->packed[i]);
    pclip__free(d->packed);
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->engine) dnnl_engine_destroy(d->engine);
    pclip__free(d);
}

void pclip__cpu_dnnl_version(char *buf, size_t n) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, n, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
}

int32_t pclip__cpu_dnnl_packed_count(const struct pclip__cpu_dnnl *d) {
    return d ? d->n_packed : 0;
}

/* ---- bf16 ---- */

/* oneDNN's own view of the CPU decides: it runs bf16 matmul with
 * vdpbf16ps (AVX512_BF16) or AMX tiles, and its ISA limit
 * (ONEDNN_MAX_CPU_ISA) is honoured the same way as for every primitive. On
 * plain AVX-512 it would emulate bf16 slower than fp32, so that is refused. */
bool pclip__cpu_dnnl_has_bf16(char *why, size_t n) {
    const unsigned need = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (((unsigned)isa & need) == need) return true;
    if (!why) return false;
    bool cpu_has = false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    cpu_has = __builtin_cpu_supports("avx512bf16");
#endif
    const char *name = dnnl_cpu_isa2str(isa);
    if (strncmp(name, "cpu_isa_", 8) == 0) name += 8;
    if (cpu_has)
        snprintf(why, n,
                 "needs AVX512_BF16 or AMX: this CPU has AVX512_BF16, but oneDNN is limited to "
                 "%s (ONEDNN_MAX_CPU_ISA)",
                 name);
    else
        snprintf(why, n,
                 "needs AVX512_BF16 or AMX, which this CPU lacks (oneDNN's best instruction set "
                 "here: %s)",
                 name);
    return false;
}

#if defined(__x86_64__)
/* y[i, end) from x: 16 at a time with VCVTNEPS2BF16 (round to nearest
 * even, as pclip__cpu_bf16_round). Its own function, outside the OpenMP
 * region: clang does not give the region's outlined body the target
 * attribute of the function that holds it. */
__attribute__((target("avx512f,avx512bf16"))) static void bf16_convert_range(const float *x,
                                                                             uint16_t *y,
                                                                             int64_t i,
                                                                             int64_t end) {
    for (; i + 16 <= end; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
    for (; i < end; i++) y[i] = pclip__cpu_bf16_round(x[i]);
}

static void bf16_convert(const float *x, uint16_t *y, int64_t n, int32_t threads) {
    const int64_t chunk = 4096; /* elements per task: 16 KiB read */
    const int64_t tasks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= PCLIP__CPU_PAR_MIN)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t i = t * chunk, end = i + chunk < n ? i + chunk : n;
        bf16_convert_range(x, y, i, end);
    }
}
#else
static void bf16_convert(const float *x, uint16_t *y, int64_t n, int32_t threads) {
    (void)threads;
    for (int64_t i = 0; i < n; i++) y[i] = pclip__cpu_bf16_round(x[i]);
}
#endif

/* ---- packed weights ---- */

/* The weight `host` [N, K] in layout `want`: found in the cache, or
 * reordered once and added. */
static pclip_status packed_get(struct pclip__cpu_dnnl *d, const float *host, bool host_mapped,
                               int64_t N, int64_t K, const dnnl_memory_desc_t *want,
                               const char *what, packed_weight **out) {
    pclip_ctx_t ctx = d->ctx;
    for (int32_t i = 0; i < d->n_packed; i++) {
        packed_weight *w = d->packed[i];
        if (w->host == host && dnnl_memory_desc_equal(&w->md, want)) {
            w->refs++;
            *out = w;
            return PCLIP_STATUS_OK;
        }
    }
    pclip_status status = PCLIP_STATUS_OK;
    dnnl_memory_t src = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t reorder = NULL;
    if (d->n_packed == d->cap_packed) {
        int32_t cap = d->cap_packed ? 2 * d->cap_packed : 16;
        packed_weight **grown = pclip__realloc(d->packed, (size_t)cap * sizeof *grown);
        if (!grown) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "cpu: out of memory");
        d->packed = grown;
        d->cap_packed = cap;
    }
    packed_weight *w = pclip__calloc(1, sizeof *w);
    size_t bytes = dnnl_memory_desc_get_size(want);
    /* A weight of 2 MiB or more starts on a huge-page boundary and its whole
     * huge pages are advised as such: at batch 1 every weight is streamed
     * from memory once per image, and 4 KiB pages cost a TLB walk each. */
    const size_t align = bytes >= PCLIP__HUGE_PAGE ? PCLIP__HUGE_PAGE : 64;
    if (w) w->block = pclip__malloc(bytes + align);
    if (!w || !w->block) {
        if (w) pclip__free(w);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "cpu: out of memory packing the weights of %s (%zu MiB)", what,
                          (bytes >> 20) + 1);
    }
    w->host = host;
    w->md = *want;
    void *data = (void *)(((uintptr_t)w->block + align - 1) & ~(uintptr_t)(align - 1));
    if (align == PCLIP__HUGE_PAGE) madvise(data, bytes & ~(PCLIP__HUGE_PAGE - 1), MADV_HUGEPAGE);
    TRY(dnnl_memory_create(&w->mem, want, d->engine, data), "weight memory");
    /* the host weight [N, K] row-major is oneDNN's {K, N} in `ba` order */
    dnnl_memory_desc_t src_md;
    const dnnl_dims_t dims = {K, N};
    TRY(dnnl_memory_desc_init_by_tag(&src_md, 2, dims, dnnl_f32, dnnl_ba), "weight layout");
    TRY(dnnl_memory_create(&src, &src_md, d->engine, (void *)(uintptr_t)host), "weight memory");
    if ((status = dnnl_headroom(ctx, what))) goto done;
    TRY(dnnl_reorder_primitive_desc_create(&pd, &src_md, d->engine, want, d->engine, NULL),
        "weight reorder");
    TRY(dnnl_primitive_create(&reorder, pd), "weight reorder");
    const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, w->mem}};
    TRY(dnnl_primitive_execute(reorder, d->stream, 2, args), "weight reorder");
    TRY(dnnl_stream_wait(d->stream), "weight reorder");
    /* host_mapped: the checkpoint's private copy, which stays as it is while
     * the model lives (a later graph may pack it again): nothing is given back */
    (void)host_mapped;
    w->refs = 1;
    d->packed[d->n_packed++] = w;
    *out = w;
    w = NULL;
done:
    if (reorder) dnnl_primitive_destroy(reorder);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (src) dnnl_memory_destroy(src);
    if (w) packed_free(w);
    return status;
}

static void packed_release(struct pclip__cpu_dnnl *d, packed_weight *w) {
    if (--w->refs > 0) return;
    for (int32_t i = 0; i < d->n_packed; i++)
        if (d->packed[i] == w) {
            d->packed[i] = d->packed[--d->n_packed];
            break;
        }
    packed_free(w);
}

/* ---- matmul primitives ---- */

#define MM_MAX_ARGS 8

struct pclip__cpu_matmul {
    struct pclip__cpu_dnnl *d;
    dnnl_primitive_t prim;
    packed_weight *w;                 /* the packed b, or NULL */
    dnnl_memory_t owned[MM_MAX_ARGS]; /* memory objects made for this primitive */
    int n_owned;
    dnnl_exec_arg_t args[MM_MAX_ARGS];
    int nargs;
    dnnl_memory_t scratch; /* the user scratchpad, bound later; NULL if none */
    const float *panels;   /* w's packed data when the panel kernel runs it (no prim) */
    /* bf16: the fp32 activations (src_f32, src_count of them) are converted
     * into `src_bf16` at the start of the exec's scratch (src_bytes long;
     * oneDNN's scratchpad follows) before each product */
    const float *src_f32;
    int64_t src_count;
    dnnl_memory_t src_bf16;
    size_t src_bytes;
};

const float *pclip__cpu_matmul_panels(const struct pclip__cpu_matmul *mm) {
    return mm ? mm->panels : NULL;
}

/* Whether `md` is w {K, N} in BA16a64b, the layout the panel kernel reads. */
static bool is_panels(const dnnl_memory_desc_t *md, int64_t K, int64_t N) {
    dnnl_memory_desc_t want;
    const dnnl_dims_t dims = {K, N};
    return dnnl_memory_desc_init_by_tag(&want, 2, dims, dnnl_f32, dnnl_BA16a64b) == dnnl_success &&
           dnnl_memory_desc_equal(md, &want);
}

void pclip__cpu_matmul_destroy(struct pclip__cpu_matmul *mm) {
    if (!mm) return;
    for (int i = 0; i < mm->n_owned; i++) dnnl_memory_destroy(mm->owned[i]);
    if (mm->prim) dnnl_primitive_destroy(mm->prim);
    if (mm->w) packed_release(mm->d, mm->w);
    pclip__free(mm);
}

/* Adds an argument backed by a new memory object over `data`. */
static dnnl_status_t add_arg(struct pclip__cpu_matmul *mm, int arg, const dnnl_memory_desc_t *md,
                             const void *data) {
    dnnl_memory_t mem;
    dnnl_status_t st = dnnl_memory_create(&mem, md, mm->d->engine, (void *)(uintptr_t)data);
    if (st != dnnl_success) return st;
    mm->owned[mm->n_owned++] = mem;
    mm->args[mm->nargs++] = (dnnl_exec_arg_t){arg, mem};
    return dnnl_success;
}

/* (x0, x1, x2) for a 3-D descriptor, (x1, x2) for a 2-D one */
static void set_dims(dnnl_dims_t d, int nd, int64_t x0, int64_t x1, int64_t x2) {
    if (nd == 3)
        d[0] = x0, d[1] = x1, d[2] = x2;
    else
        d[0] = x1, d[1] = x2;
}

bool pclip__cpu_matmul_is_bf16(const pclip__tensor *t) {
    const pclip__matmul_params *p = &t->params.matmul;
    return t->op == PCLIP__OP_MATMUL && t->src[1]->kind == PCLIP__TENSOR_WEIGHT && p->trans_b &&
           p->batch == 1;
}

pclip_status pclip__cpu_matmul_create(struct pclip__cpu_dnnl *d, pclip__cpu_node *n,
                                      size_t *scratch_bytes) {
    pclip_ctx_t ctx = d->ctx;
    const pclip__tensor *t = n->t, *bt = t->src[1];
    const pclip__matmul_params *p = &t->params.matmul;
    const bool pack = bt->kind == PCLIP__TENSOR_WEIGHT && p->trans_b && p->batch == 1;
    /* only products against a weight go to bf16 (pclip__cpu_matmul_is_bf16):
     * the weight is stored once in bf16; products of two activations (none
     * in the encoders, whose attention is its own op) stay fp32 */
    const bool bf16 = pack && n->bf16;
    const dnnl_data_type_t ab_type = bf16 ? dnnl_bf16 : dnnl_f32;
    const dnnl_data_type_t dst_type = bf16 && n->bf16_dst ? dnnl_bf16 : dnnl_f32;
    PCLIP_ASSERT(bf16 || (!n->bf16_src && !n->bf16_dst));
    char what[192];
    snprintf(what, sizeof what, "matmul '%s' (batch %d, M %d, N %d, K %d)", t->name, p->batch, p->M,
             p->N, p->K);
    pclip_status status = PCLIP_STATUS_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    struct pclip__cpu_matmul *mm = pclip__calloc(1, sizeof *mm);
    if (!mm) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "cpu: out of memory");
    mm->d = d;

    /* one product is 2-D; a batch is 3-D, b's batch 1 when shared */
    const int nd = p->batch > 1 ? 3 : 2;
    const int64_t B = p->batch, M = p->M, N = p->N, K = p->K;
    const int64_t Bb = p->b_batch_stride ? B : 1;
    dnnl_dims_t src_dims, w_dims, w_strides, dst_dims, bias_dims;
    set_dims(src_dims, nd, B, M, K);
    set_dims(w_dims, nd, Bb, K, N);
    set_dims(w_strides, nd, N * K, p->trans_b ? 1 : N, p->trans_b ? K : 1);
    set_dims(dst_dims, nd, B, M, N);
    set_dims(bias_dims, nd, 1, 1, N);
    const dnnl_format_tag_t plain = nd == 2 ? dnnl_ab : dnnl_abc;
    dnnl_memory_desc_t src_md, w_md, dst_md, res_md, bias_md;
    TRY(dnnl_memory_desc_init_by_tag(&src_md, nd, src_dims, ab_type, plain), "src layout");
    TRY(dnnl_memory_desc_init_by_tag(&dst_md, nd, dst_dims, dst_type, plain), "dst layout");
    TRY(dnnl_memory_desc_init_by_tag(&res_md, nd, dst_dims, dnnl_f32, plain), "residual layout");
    TRY(dnnl_memory_desc_init_by_tag(&bias_md, nd, bias_dims, dnnl_f32, plain), "bias layout");
    if (pack)
        TRY(dnnl_memory_desc_init_by_tag(&w_md, 2, w_dims, ab_type, dnnl_format_tag_any),
            "weights layout");
    else
        TRY(dnnl_memory_desc_init_by_strides(&w_md, nd, w_dims, dnnl_f32, w_strides),
            "weights layout");
    dnnl_matmul_desc_t desc;
    TRY(dnnl_matmul_desc_init(&desc, &src_md, &w_md, n->src[2] ? &bias_md : NULL, &dst_md),
        "dnnl_matmul_desc_init");

    /* post-ops: act, then + residual; scratchpad supplied by the exec */
    TRY(dnnl_primitive_attr_create(&attr), "attributes");
    TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "attributes");
    TRY(dnnl_post_ops_create(&ops), "post-ops");
    int n_ops = 0;
    switch (p->act) {
    case PCLIP_ACT_QUICK_GELU: /* x * sigmoid(1.702 x) is swish with alpha 1.702 */
        TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_swish, 1.702f, 0.0f), "post-ops");
        n_ops++;
        break;
    case PCLIP_ACT_GELU:
        TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f), "post-ops");
        n_ops++;
        break;
    case PCLIP_ACT_GELU_TANH:
        TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_gelu_tanh, 0.0f, 0.0f),
            "post-ops");
        n_ops++;
        break;
    default: break;
    }
    const int residual_op = n_ops;
    if (n->src[3]) {
        TRY(dnnl_post_ops_append_binary(ops, dnnl_binary_add, &res_md), "post-ops");
        n_ops++;
    }
    TRY(dnnl_primitive_attr_set_post_ops(attr, ops), "post-ops");
    if ((status = dnnl_headroom(ctx, what))) goto done;
    TRY(dnnl_primitive_desc_create(&pd, &desc, attr, d->engine, NULL), "primitive descriptor");

    if (pack) {
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        if (!want) TRY(dnnl_runtime_error, "weights layout query");
        status = packed_get(d, bt->data, bt->data_mapped, N, K, want, what, &mm->w);
        if (status) goto done;
        /* our own kernel where it measures faster (matmul.c); the packed
         * weight is the same one, shared with oneDNN's primitives */
        if (!bf16 && n->panels && pclip__cpu_panels_fit(n->simd, M, N, K, n->threads) &&
            is_panels(want, K, N)) {
            void *data = NULL;
            TRY(dnnl_memory_get_data_handle(mm->w->mem, &data), "weights memory");
            mm->panels = data;
            *scratch_bytes = 0;
            n->mm = mm;
            mm = NULL;
            goto done;
        }
    }
    if ((status = dnnl_headroom(ctx, what))) goto done;
    TRY(dnnl_primitive_create(&mm->prim, pd), "dnnl_primitive_create");

    if (n->bf16_src) {
        TRY(add_arg(mm, DNNL_ARG_SRC, &src_md, n->src[0]), "src memory"); /* bf16 already */
    } else if (bf16) {
        /* src_bf16 is bound to the exec's scratch later (bind_scratch) */
        TRY(add_arg(mm, DNNL_ARG_SRC, &src_md, NULL), "src memory");
        mm->src_bf16 = mm->owned[mm->n_owned - 1];
        mm->src_bytes = (dnnl_memory_desc_get_size(&src_md) + 63) / 64 * 64;
        mm->src_f32 = n->src[0];
        mm->src_count = B * M * K;
    } else {
        TRY(add_arg(mm, DNNL_ARG_SRC, &src_md, n->src[0]), "src memory");
    }
    if (pack)
        mm->args[mm->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, mm->w->mem};
    else
        TRY(add_arg(mm, DNNL_ARG_WEIGHTS, &w_md, n->src[1]), "weights memory");
    if (n->src[2]) TRY(add_arg(mm, DNNL_ARG_BIAS, &bias_md, n->src[2]), "bias memory");
    TRY(add_arg(mm, DNNL_ARG_DST, &dst_md, n->dst), "dst memory");
    if (n->src[3])
        TRY(add_arg(mm, DNNL_ARG_ATTR_MULTIPLE_POST_OP(residual_op) | DNNL_ARG_SRC_1, &res_md,
                    n->src[3]),
            "residual memory");
    const dnnl_memory_desc_t *scratch_md =
        dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t bytes = scratch_md ? dnnl_memory_desc_get_size(scratch_md) : 0;
    if (bytes) {
        TRY(add_arg(mm, DNNL_ARG_SCRATCHPAD, scratch_md, NULL), "scratchpad memory");
        mm->scratch = mm->owned[mm->n_owned - 1];
    }
    *scratch_bytes = mm->src_bytes + bytes;
    n->mm = mm;
    mm = NULL;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    pclip__cpu_matmul_destroy(mm);
    return status;
}

pclip_status pclip__cpu_matmul_bind_scratch(struct pclip__cpu_matmul *mm, void *scratch) {
    pclip_ctx_t ctx = mm->d->ctx;
    const char *what = "matmul";
    pclip_status status = PCLIP_STATUS_OK;
    if (mm->src_bf16) TRY(dnnl_memory_set_data_handle(mm->src_bf16, scratch), "bf16 src");
    if (mm->scratch)
        TRY(dnnl_memory_set_data_handle(mm->scratch, (char *)scratch + mm->src_bytes),
            "scratchpad");
done:
    return status;
}

pclip_status pclip__cpu_matmul_execute(const pclip__cpu_node *n) {
    const struct pclip__cpu_matmul *mm = n->mm;
    if (mm->src_f32) bf16_convert(mm->src_f32, n->scratch, mm->src_count, n->threads);
    dnnl_status_t st = dnnl_primitive_execute(mm->prim, mm->d->stream, mm->nargs, mm->args);
    if (st == dnnl_success) st = dnnl_stream_wait(mm->d->stream);
    if (st == dnnl_success) return PCLIP_STATUS_OK;
    char what[128];
    snprintf(what, sizeof what, "matmul '%s'", n->t->name);
    return dnnl_error(n->ctx, st, what, "execute");
}
