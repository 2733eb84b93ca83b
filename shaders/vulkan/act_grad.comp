#version 450
// y = dy * act'(x), elementwise
//
// The derivatives of common.glsl's pclip_act, as backends/cpu/act_grad.c
// writes them (gelu_tanh through s = sigmoid(2u): 1 - tanh^2 u = 4 s (1 - s)),
// with common.glsl's accurate exp and erf.
#include "common.glsl"

// pclip__act_grad_params
layout(push_constant) uniform Params {
    int n;
    int kind; // pclip_act
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer DY { float dy[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

float act_grad(int kind, float x) {
    if (kind == 1) { // s + 1.702 x s (1 - s), s = sigmoid(1.702 x)
        const float s = 1.0 / (1.0 + pclip_exp(-1.702 * x));
        return s + 1.702 * x * s * (1.0 - s);
    }
    if (kind == 2) // 0.5 (1 + erf(x / sqrt 2)) + x e^(-x^2 / 2) / sqrt(2 pi)
        return 0.5 * (1.0 + pclip_erf(x * 0.70710678118654752)) +
               x * pclip_exp(-0.5 * x * x) * 0.39894228040143268;
    if (kind == 3) { // s + 2 x s (1 - s) c (1 + 3 * 0.044715 x^2), s = sigmoid(2u)
        const float c = 0.79788456080286536;
        const float u = c * (x + 0.044715 * x * x * x);
        const float s = 1.0 / (1.0 + pclip_exp(-2.0 * u));
        return s + 2.0 * x * s * (1.0 - s) * c * (1.0 + 0.134145 * x * x);
    }
    return 1.0;
}

void main() {
    uint i = pclip_global_index();
    if (i < uint(p.n)) y[i] = dy[i] * act_grad(p.kind, x[i]);
}
