// p -= lr[0] * g, in place
//
// One multiply and one subtract per element, kept apart (FP_CONTRACT is off
// in common.cl), as the CPU computes them: bit-exact with the CPU.

// pclip__sgd_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
sgd(global float *w, uint wo, global const float *g, uint go, global const float *lr, uint lo,
    global float *unused, uint uo, pclip__sgd_params p) {
    // `unused`: the result argument, a view of w (the op writes w in place)
    const size_t i = get_global_id(0);
    if (i < (size_t)p.n) {
        float step = lr[lo] * g[go + i];
        w[wo + i] = w[wo + i] - step;
    }
}
