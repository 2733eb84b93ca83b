#version 450
// p -= lr[0] * g, in place
//
// One multiply and one subtract per element, kept apart (`precise`: no FMA
// contraction), as the CPU computes them: bit-exact with the CPU.
#include "common.glsl"

// pclip__sgd_params
layout(push_constant) uniform Params {
    int n;
} p;

layout(binding = 0) buffer P { float w[]; }; // written in place: the op's result
layout(binding = 1) readonly buffer G { float g[]; };
layout(binding = 2) readonly buffer LR { float lr[]; };

void main() {
    uint i = pclip_global_index();
    if (i < uint(p.n)) {
        precise float step = lr[0] * g[i];
        precise float next = w[i] - step;
        w[i] = next;
    }
}
