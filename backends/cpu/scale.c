/* y = a * s, elementwise
 *
 * One IEEE multiply per element, so the fast path is bit-exact with the
 * reference. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include "cpu.h"

/* ---- reference ---- */

pclip_status pclip__cpu_scale_ref(const pclip__cpu_node *n) {
    const pclip__scale_params *p = &n->t->params.scale;
    const float *a = n->src[0];
    for (int32_t i = 0; i < p->n; i++) n->dst[i] = a[i] * p->s;
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

#define PCLIP_SIMD_FILE "scale.c"
#include "simd_foreach.h"

typedef void (*scale_span_fn)(const float *a, float s, float *y, int64_t n);
static const scale_span_fn scale_span[] = PCLIP_SIMD_VARIANTS(scale_span);
_Static_assert(sizeof scale_span / sizeof scale_span[0] == PCLIP__CPU_SIMD_COUNT, "one per level");

pclip_status pclip__cpu_scale_fast(const pclip__cpu_node *n) {
    const pclip__scale_params *p = &n->t->params.scale;
    const scale_span_fn fn = scale_span[n->simd];
    const float *a = n->src[0];
    const int64_t count = p->n, chunk = 16384, chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (count >= 8 * PCLIP__CPU_PAR_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * chunk, len = count - lo < chunk ? count - lo : chunk;
        fn(a + lo, p->s, n->dst + lo, len);
    }
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

static void SIMD(scale_span)(const float *a, float s, float *y, int64_t n) {
    const vf vs = vset1(s);
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, vmul(vload(a + i), vs));
    if (i < n) {
        vm m = vtail(n - i);
        vstore_m(y + i, m, vmul(vload_m(a + i, m), vs));
    }
}

#endif
