#version 450
// y = quick_gelu(x) | gelu(x) | gelu_tanh(x), elementwise
//
// The formulas of common.glsl's pclip_act (accurate exp and erf; gelu_tanh
// written x / (1 + e^(-2u)), as the CPU fast path).
#include "common.glsl"

// pclip__act_params
layout(push_constant) uniform Params {
    int n;
    int kind; // pclip__act_kind
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint i = pclip_global_index();
    if (i < uint(p.n)) y[i] = pclip_act(p.kind, x[i]);
}
