// y = dy * act'(x), elementwise
//
// The derivatives of common.cl's pclip_act, as backends/cpu/act_grad.c
// writes them (gelu_tanh through s = sigmoid(2u): 1 - tanh^2 u = 4 s (1 - s)),
// with common.cl's accurate exp and erf.

static float act_grad_of(int kind, float x) {
    if (kind == 1) { // s + 1.702 x s (1 - s), s = sigmoid(1.702 x)
        const float s = 1.0f / (1.0f + pclip_exp(-1.702f * x));
        return s + 1.702f * x * s * (1.0f - s);
    }
    if (kind == 2) // 0.5 (1 + erf(x / sqrt 2)) + x e^(-x^2 / 2) / sqrt(2 pi)
        return 0.5f * (1.0f + pclip_erf(x * 0.70710678118654752f)) +
               x * pclip_exp(-0.5f * x * x) * 0.39894228040143268f;
    if (kind == 3) { // s + 2 x s (1 - s) c (1 + 3 * 0.044715 x^2), s = sigmoid(2u)
        const float c = 0.79788456080286536f;
        const float u = c * (x + 0.044715f * x * x * x);
        const float s = 1.0f / (1.0f + pclip_exp(-2.0f * u));
        return s + 2.0f * x * s * (1.0f - s) * c * (1.0f + 0.134145f * x * x);
    }
    return 1.0f;
}

// pclip__act_grad_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
act_grad(global const float *x, uint xo, global const float *dy, uint dyo, global float *y,
         uint yo, pclip__act_grad_params p) {
    const size_t i = get_global_id(0);
    if (i < (size_t)p.n) y[yo + i] = dy[dyo + i] * act_grad_of(p.kind, x[xo + i]);
}
