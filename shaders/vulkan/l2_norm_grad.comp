#version 450
// y = dy / n - x (x . dy) / n^3, n = max(||x||, eps), per row
//
// The gradient of l2_norm.comp with the same eps, as backends/cpu/
// l2_norm_grad.c: below eps, y = dy / eps; otherwise (a NaN norm included)
// y = (dy - x (x . dy) / n^2) / n. One workgroup per row; the two sums are
// common.glsl's workgroup reductions.
#define PCLIP_REDUCE
#include "common.glsl"

// pclip__l2_norm_grad_params
layout(push_constant) uniform Params {
    int rows, cols;
    float eps;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer DY { float dy[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint row = pclip_group_index();
    if (row >= uint(p.rows)) return; // the whole workgroup leaves together
    const uint lid = gl_LocalInvocationID.x, ls = PCLIP_LS, cols = uint(p.cols);
    const uint base = row * cols;
    float q = 0.0, d = 0.0;
    for (uint j = lid; j < cols; j += ls) {
        q += x[base + j] * x[base + j];
        d += x[base + j] * dy[base + j];
    }
    const float norm = sqrt(pclip_sum(q));
    const float dot = pclip_sum(d);
    if (norm < p.eps) {
        for (uint j = lid; j < cols; j += ls) y[base + j] = dy[base + j] / p.eps;
    } else {
        const float c = dot / (norm * norm);
        for (uint j = lid; j < cols; j += ls) y[base + j] = (dy[base + j] - x[base + j] * c) / norm;
    }
}
