#version 450
// y[b*G+g, c*p*p+i*p+j] = x[b, c, gy*p+i, gx*p+j] (im2col)
//
// One invocation per output element; pure data movement, bit-exact.
#include "common.glsl"

// pclip__patches_params
layout(push_constant) uniform Params {
    int batch, channels, size;
    int patch_; // `patch` (a GLSL keyword)
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint e = pclip_global_index();
    uint C = uint(p.channels), S = uint(p.size), P = uint(p.patch_), G = S / P;
    uint row_len = C * P * P;
    if (e >= uint(p.batch) * G * G * row_len) return;
    uint r = e / row_len, k = e % row_len;
    uint b = r / (G * G), gy = r / G % G, gx = r % G;
    uint c = k / (P * P), i = k / P % P, j = k % P;
    y[e] = x[((b * C + c) * S + gy * P + i) * S + gx * P + j];
}
