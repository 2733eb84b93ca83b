#version 450
// y = a + b | a * b, b broadcast over dims where it has size 1 (ADD, MUL)
//
// Shapes are 4-D, innermost last, padded with 1 at the front; OP_MUL picks
// the operation at compile time (variants binary_add, binary_mul). One IEEE
// operation per element: bit-exact with the CPU.
#include "common.glsl"

// pclip__binary_params
layout(push_constant) uniform Params {
    int ne[4];   // output (= a) sizes
    int ne_b[4]; // b sizes, each ne[i] or 1
} p;

layout(binding = 0) readonly buffer A { float a[]; };
layout(binding = 1) readonly buffer B { float b[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint i = pclip_global_index();
    uint n = uint(p.ne[0]) * uint(p.ne[1]) * uint(p.ne[2]) * uint(p.ne[3]);
    if (i >= n) return;
    uint i3 = i % uint(p.ne[3]), r = i / uint(p.ne[3]);
    uint i2 = r % uint(p.ne[2]);
    r /= uint(p.ne[2]);
    uint i1 = r % uint(p.ne[1]), i0 = r / uint(p.ne[1]);
    uint j0 = p.ne_b[0] == 1 ? 0u : i0, j1 = p.ne_b[1] == 1 ? 0u : i1;
    uint j2 = p.ne_b[2] == 1 ? 0u : i2, j3 = p.ne_b[3] == 1 ? 0u : i3;
    float bv = b[((j0 * uint(p.ne_b[1]) + j1) * uint(p.ne_b[2]) + j2) * uint(p.ne_b[3]) + j3];
#if OP_MUL
    y[i] = a[i] * bv;
#else
    y[i] = a[i] + bv;
#endif
}
