// one torch.optim.AdamW step on p, m, v
//
// Per element, as backends/cpu/adamw.c (torch 1.13's _single_tensor_adamw):
//   p = p * h[0]; m = m * beta1 + g * omb1; v = v * beta2 + g * g * omb2;
//   p = p - h[1] * m / (sqrt(v) / h[2] + eps); p = min(p, clamp_max) when has_clamp
// every operation rounded on its own (FP_CONTRACT is off in common.cl); sqrt
// and division are correctly rounded where the device supports
// -cl-fp32-correctly-rounded-divide-sqrt (cl_program.c asks for it), else
// within OpenCL's 3 and 2.5 ulp.

// pclip__adamw_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
adamw(global float *w, uint wo, global const float *g, uint go, global float *m, uint mo,
      global float *v, uint vo, global const float *h, uint ho, global float *unused, uint uo,
      pclip__adamw_params a) {
    // `unused`: the result argument, a view of v (the op writes p, m and v in place)
    const size_t i = get_global_id(0);
    if (i < (size_t)a.n) {
        const float gi = g[go + i];
        float pi = w[wo + i] * h[ho];
        const float mi = m[mo + i] * a.beta1 + gi * a.omb1;
        const float vi = v[vo + i] * a.beta2 + gi * gi * a.omb2;
        const float denom = sqrt(vi) / h[ho + 2] + a.eps;
        pi = pi - h[ho + 1] * mi / denom;
        if (a.has_clamp && a.clamp_max < pi) pi = a.clamp_max;
        w[wo + i] = pi;
        m[mo + i] = mi;
        v[vo + i] = vi;
    }
}
