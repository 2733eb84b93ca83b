#version 450
// y[b, 0] = cls, y[b, 1+t] = x[b*T+t]
//
// x [batch * T, W], cls [W], y [batch * (T + 1), W]; one invocation per
// output element; pure data movement, bit-exact.
#include "common.glsl"

// pclip__class_concat_params
layout(push_constant) uniform Params {
    int batch, tokens, width;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer Cls { float cls[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint e = pclip_global_index();
    uint T = uint(p.tokens), W = uint(p.width);
    if (e >= uint(p.batch) * (T + 1u) * W) return;
    uint row = e / W, w = e % W;
    uint b = row / (T + 1u), t = row % (T + 1u);
    y[e] = t == 0u ? cls[w] : x[(b * T + t - 1u) * W + w];
}
