#version 450
// y = softmax(x * scale + causal mask), per row
//
// With the causal mask, row r of each block of `cols` rows sees columns
// 0..r % cols; masked columns are 0. The row maximum is subtracted first, as
// torch does; a row with NaN or +inf gives NaN everywhere it sees. One
// workgroup per row; reductions as in common.glsl.
#define PCLIP_REDUCE
#include "common.glsl"

// pclip__softmax_params
layout(push_constant) uniform Params {
    int rows, cols;
    int causal;
    float scale;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = PCLIP_BINDING_DST) buffer Y { float y[]; };

void main() {
    uint row = pclip_group_index();
    if (row >= uint(p.rows)) return; // the whole workgroup leaves together
    const uint lid = gl_LocalInvocationID.x, ls = PCLIP_LS, cols = uint(p.cols);
    const uint base = row * cols, seen = p.causal != 0 ? row % cols + 1u : cols;
    float m = -1.0 / 0.0;
    for (uint j = lid; j < seen; j += ls) m = max(m, x[base + j] * p.scale);
    m = pclip_max(m);
    float s = 0.0;
    for (uint j = lid; j < seen; j += ls) {
        float e = pclip_exp(x[base + j] * p.scale - m);
        y[base + j] = e; // read back below by this same invocation
        s += e;
    }
    const float inv = 1.0 / pclip_sum(s);
    for (uint j = lid; j < seen; j += ls) y[base + j] *= inv;
    for (uint j = seen + lid; j < cols; j += ls) y[base + j] = 0.0;
}
