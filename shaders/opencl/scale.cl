// y = a * s, elementwise
//
// One IEEE multiply per element: bit-exact with the CPU.

// pclip__scale_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
scale(global const float *a, uint ao, global float *y, uint yo, pclip__scale_params p) {
    const size_t i = get_global_id(0);
    if (i < (size_t)p.n) y[yo + i] = a[ao + i] * p.s;
}
