// y = quick_gelu(x) | gelu(x) | gelu_tanh(x), elementwise
//
// The formulas of common.cl's pclip_act (accurate exp and erf; gelu_tanh
// written x / (1 + e^(-2u)), as the CPU fast path).

// pclip__act_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
act(global const float *x, uint xo, global float *y, uint yo, pclip__act_params p) {
    const size_t i = get_global_id(0);
    if (i < (size_t)p.n) y[yo + i] = pclip_act(p.kind, x[xo + i]);
}
