/* y = quick_gelu(x) | gelu(x) | gelu_tanh(x), elementwise
 *
 * Reference: torch's formulas with libm (pclip__cpu_act_ref_element in cpu.h).
 * Fast: the same functions on vectors with simd.h's vexp and verf;
 * gelu_tanh is written x * sigmoid(2u), which equals 0.5 x (1 + tanh u)
 * without tanh's cancellation near -1, and costs one exp. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_act_ref(const pclip__cpu_node *n) {
    const pclip__act_params *p = &n->t->params.act;
    const float *x = n->src[0];
    for (int32_t i = 0; i < p->n; i++) n->dst[i] = pclip__cpu_act_ref_element(p->kind, x[i]);
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

#define PCLIP_SIMD_FILE "act.c"
#include "simd_foreach.h"

typedef void (*act_span_fn)(int32_t kind, const float *x, float *y, int64_t n);
static const act_span_fn act_span[] = PCLIP_SIMD_VARIANTS(act_span);
_Static_assert(sizeof act_span / sizeof act_span[0] == PCLIP__CPU_SIMD_COUNT, "one per level");

pclip_status pclip__cpu_act_fast(const pclip__cpu_node *n) {
    const pclip__act_params *p = &n->t->params.act;
    const act_span_fn fn = act_span[n->simd];
    const float *x = n->src[0];
    const int64_t count = p->n, chunk = 4096, chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for num_threads(n->threads) schedule(static) if (count >= PCLIP__CPU_PAR_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * chunk, len = count - lo < chunk ? count - lo : chunk;
        fn(p->kind, x + lo, n->dst + lo, len);
    }
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

#include "act_vec.h"

static void SIMD(act_span)(int32_t kind, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, SIMD(act_vec)(kind, vload(x + i)));
    if (i < n) {
        vm m = vtail(n - i);
        vstore_m(y + i, m, SIMD(act_vec)(kind, vload_m(x + i, m)));
    }
}

#endif
