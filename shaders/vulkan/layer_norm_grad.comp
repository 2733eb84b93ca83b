#version 450
// y = d layer_norm / d x (mode 0) | dy * xhat (mode 1), per row
//
// With xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) (the two passes
// of layer_norm.comp) and a = gamma * dy:
//   mode 0: y = (a - mean(a) - xhat mean(a xhat)) * rstd
//   mode 1: y = dy * xhat
// One workgroup per row; the sums are common.glsl's workgroup reductions.
#define PCLIP_REDUCE
#include "common.glsl"

// pclip__layer_norm_grad_params
layout(push_constant) uniform Params {
    int rows, cols;
    float eps;
    int mode;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer G { float g[]; };
layout(binding = 2) readonly buffer DY { float dy[]; };
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
    if (p.mode == 1) { // uniform: no barrier follows
        for (uint j = lid; j < cols; j += ls)
            y[base + j] = dy[base + j] * ((x[base + j] - mean) * rstd);
        return;
    }
    float sa = 0.0, sax = 0.0;
    for (uint j = lid; j < cols; j += ls) {
        const float a = g[j] * dy[base + j];
        sa += a;
        sax += a * ((x[base + j] - mean) * rstd);
    }
    const float ma = pclip_sum(sa) / float(p.cols);
    const float mean_ax = pclip_sum(sax) / float(p.cols);
    for (uint j = lid; j < cols; j += ls)
        y[base + j] = (g[j] * dy[base + j] - ma - (x[base + j] - mean) * rstd * mean_ax) * rstd;
}
