/* y = a + b | a * b, b broadcast over dims where it has size 1 (ADD, MUL)
 *
 * Shapes are 4-D, innermost last, padded with 1 at the front
 * (pclip__binary_params). One IEEE operation per element, so the fast path
 * is bit-exact with the reference; it walks rows of the innermost dim, with
 * b's row either a matching row or one broadcast value. */
#ifndef PCLIP_SIMD_LEVEL /* the file proper; the SIMD passes are at the end */
#include "cpu.h"

/* ---- reference ---- */

static void binary_ref(const pclip__binary_params *p, const float *a, const float *b, float *y,
                       bool mul) {
    const int32_t *ne = p->ne, *nb = p->ne_b;
    int64_t i = 0;
    for (int32_t i0 = 0; i0 < ne[0]; i0++)
        for (int32_t i1 = 0; i1 < ne[1]; i1++)
            for (int32_t i2 = 0; i2 < ne[2]; i2++)
                for (int32_t i3 = 0; i3 < ne[3]; i3++, i++) {
                    int64_t j0 = nb[0] == 1 ? 0 : i0, j1 = nb[1] == 1 ? 0 : i1;
                    int64_t j2 = nb[2] == 1 ? 0 : i2, j3 = nb[3] == 1 ? 0 : i3;
                    float bv = b[((j0 * nb[1] + j1) * nb[2] + j2) * nb[3] + j3];
                    y[i] = mul ? a[i] * bv : a[i] + bv;
                }
}

pclip_status pclip__cpu_add_ref(const pclip__cpu_node *n) {
    binary_ref(&n->t->params.add, n->src[0], n->src[1], n->dst, false);
    return PCLIP_STATUS_OK;
}

pclip_status pclip__cpu_mul_ref(const pclip__cpu_node *n) {
    binary_ref(&n->t->params.mul, n->src[0], n->src[1], n->dst, true);
    return PCLIP_STATUS_OK;
}

/* ---- fast ---- */

#define PCLIP_SIMD_FILE "binary.c"
#include "simd_foreach.h"

/* y[0..n) = a op (b_scalar ? b[0] : b[0..n)) */
typedef void (*binary_span_fn)(const float *a, const float *b, bool b_scalar, float *y, int64_t n,
                               bool mul);
static const binary_span_fn binary_span[] = PCLIP_SIMD_VARIANTS(binary_span);
_Static_assert(sizeof binary_span / sizeof binary_span[0] == PCLIP__CPU_SIMD_COUNT,
               "one per level");

static void binary_fast(const pclip__cpu_node *n, const pclip__binary_params *p, bool mul) {
    const binary_span_fn fn = binary_span[n->simd];
    const float *a = n->src[0], *b = n->src[1];
    const int32_t *ne = p->ne, *nb = p->ne_b;
    const int64_t cols = ne[3], rows = (int64_t)ne[0] * ne[1] * ne[2];
    /* rows split into chunks, so a single long row still uses every thread */
    const int64_t chunk = 8192, per_row = (cols + chunk - 1) / chunk, items = rows * per_row;
    const bool b_scalar = nb[3] == 1 && cols > 1;
#pragma omp parallel for num_threads(n->threads)                                                   \
    schedule(static) if (rows * cols >= 4 * PCLIP__CPU_PAR_MIN)
    for (int64_t it = 0; it < items; it++) {
        int64_t r = it / per_row, lo = (it % per_row) * chunk;
        int64_t len = cols - lo < chunk ? cols - lo : chunk;
        int64_t i2 = r % ne[2], i1 = (r / ne[2]) % ne[1], i0 = r / ((int64_t)ne[2] * ne[1]);
        int64_t j0 = nb[0] == 1 ? 0 : i0, j1 = nb[1] == 1 ? 0 : i1, j2 = nb[2] == 1 ? 0 : i2;
        const float *brow = b + ((j0 * nb[1] + j1) * nb[2] + j2) * nb[3];
        fn(a + r * cols + lo, b_scalar ? brow : brow + lo, b_scalar, n->dst + r * cols + lo, len,
           mul);
    }
}

pclip_status pclip__cpu_add_fast(const pclip__cpu_node *n) {
    binary_fast(n, &n->t->params.add, false);
    return PCLIP_STATUS_OK;
}

pclip_status pclip__cpu_mul_fast(const pclip__cpu_node *n) {
    binary_fast(n, &n->t->params.mul, true);
    return PCLIP_STATUS_OK;
}

#else /* ---- one SIMD pass ---- */

static void SIMD(binary_span)(const float *a, const float *b, bool b_scalar, float *y, int64_t n,
                              bool mul) {
    int64_t i = 0;
    if (b_scalar) {
        const vf vb = vset1(b[0]);
        if (mul)
            for (; i + VL <= n; i += VL) vstore(y + i, vmul(vload(a + i), vb));
        else
            for (; i + VL <= n; i += VL) vstore(y + i, vadd(vload(a + i), vb));
        if (i < n) {
            vm m = vtail(n - i);
            vf va = vload_m(a + i, m);
            vstore_m(y + i, m, mul ? vmul(va, vb) : vadd(va, vb));
        }
        return;
    }
    if (mul)
        for (; i + VL <= n; i += VL) vstore(y + i, vmul(vload(a + i), vload(b + i)));
    else
        for (; i + VL <= n; i += VL) vstore(y + i, vadd(vload(a + i), vload(b + i)));
    if (i < n) {
        vm m = vtail(n - i);
        vf va = vload_m(a + i, m), vb = vload_m(b + i, m);
        vstore_m(y + i, m, mul ? vmul(va, vb) : vadd(va, vb));
    }
}

#endif
