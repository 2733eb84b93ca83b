#version 450
// y = a * s, elementwise
//
// One IEEE multiply per element (Vulkan rounds it correctly): bit-exact with
// the CPU.
#include "common.glsl"

// pclip__scale_params
layout(push_constant) uniform Params {
    int n;
    float s;
} p;

layout(binding = 0) readonly buffer A { float a[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint i = pclip_global_index();
    if (i < uint(p.n)) y[i] = a[i] * p.s;
}
