#version 450
// y = (x - mean) / sqrt(var + eps) * g + b, per row
//
// As torch.nn.LayerNorm: the mean, then the biased variance of x - mean (two
// passes, no E[x^2] - E[x]^2 cancellation), then the affine map. One
// workgroup per row; the sums are workgroup reductions (subgroup operations
// when USE_SUBGROUP, else a shared-memory tree).
#define PCLIP_REDUCE
#include "common.glsl"

// pclip__layer_norm_params
layout(push_constant) uniform Params {
    int rows, cols;
    float eps;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer G { float g[]; };
layout(binding = 2) readonly buffer Bt { float beta[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint row = pclip_group_index();
    if (row >= uint(p.rows)) return; // the whole workgroup leaves together
    const uint lid = gl_LocalInvocationID.x, ls = PCLIP_LS, cols = uint(p.cols);
    const uint base = row * cols;
    float s = 0.0;
    for (uint j = lid; j < cols; j += ls) s += x[base + j];
    const float mean = pclip_sum(s) / float(p.cols);
    float q = 0.0;
    for (uint j = lid; j < cols; j += ls) {
        float d = x[base + j] - mean;
        q += d * d;
    }
    const float rstd = 1.0 / sqrt(pclip_sum(q) / float(p.cols) + p.eps);
    for (uint j = lid; j < cols; j += ls)
        y[base + j] = (x[base + j] - mean) * rstd * g[j] + beta[j];
}
