// y = a + b | a * b, b broadcast over dims where it has size 1 (ADD, MUL)
//
// Shapes are 4-D, innermost last, padded with 1 at the front. One IEEE
// operation per element: bit-exact with the CPU.

uint pclip_binary_b_index(size_t i, const pclip__binary_params *p) {
    uint i3 = i % (uint)p->ne[3], r = i / (uint)p->ne[3];
    uint i2 = r % (uint)p->ne[2];
    r /= (uint)p->ne[2];
    uint i1 = r % (uint)p->ne[1], i0 = r / (uint)p->ne[1];
    uint j0 = p->ne_b[0] == 1 ? 0u : i0, j1 = p->ne_b[1] == 1 ? 0u : i1;
    uint j2 = p->ne_b[2] == 1 ? 0u : i2, j3 = p->ne_b[3] == 1 ? 0u : i3;
    return ((j0 * (uint)p->ne_b[1] + j1) * (uint)p->ne_b[2] + j2) * (uint)p->ne_b[3] + j3;
}

// pclip__binary_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
binary_add(global const float *a, uint ao, global const float *b, uint bo, global float *y,
           uint yo, pclip__binary_params p) {
    const size_t i = get_global_id(0);
    const size_t n = (size_t)p.ne[0] * p.ne[1] * p.ne[2] * p.ne[3];
    if (i < n) y[yo + i] = a[ao + i] + b[bo + pclip_binary_b_index(i, &p)];
}

kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
binary_mul(global const float *a, uint ao, global const float *b, uint bo, global float *y,
           uint yo, pclip__binary_params p) {
    const size_t i = get_global_id(0);
    const size_t n = (size_t)p.ne[0] * p.ne[1] * p.ne[2] * p.ne[3];
    if (i < n) y[yo + i] = a[ao + i] * b[bo + pclip_binary_b_index(i, &p)];
}
