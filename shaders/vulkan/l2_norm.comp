#version 450
// y = x / max(||x||, eps), per row
//
// As torch.nn.functional.normalize (eps 1e-12) and x / x.norm() (eps 0: an
// all-zero row gives NaN, as in torch). A NaN norm stays NaN (the clamp is a
// comparison that NaN fails). One workgroup per row; reductions as in
// common.glsl.
#define PCLIP_REDUCE
#include "common.glsl"

// pclip__l2_norm_params
layout(push_constant) uniform Params {
    int rows, cols;
    float eps;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint row = pclip_group_index();
    if (row >= uint(p.rows)) return; // the whole workgroup leaves together
    const uint lid = gl_LocalInvocationID.x, ls = PCLIP_LS, cols = uint(p.cols);
    const uint base = row * cols;
    float q = 0.0;
    for (uint j = lid; j < cols; j += ls) q += x[base + j] * x[base + j];
    const float norm = sqrt(pclip_sum(q));
    const float d = norm < p.eps ? p.eps : norm;
    for (uint j = lid; j < cols; j += ls) y[base + j] = x[base + j] / d;
}
