#version 450
// one torch.optim.AdamW step on p, m, v
//
// Per element, as backends/cpu/adamw.c (torch 1.13's _single_tensor_adamw):
//   p = p * h[0]; m = m * beta1 + g * omb1; v = v * beta2 + g * g * omb2;
//   p = p - h[1] * m / (sqrt(v) / h[2] + eps); p = min(p, clamp_max) when has_clamp
// every operation rounded on its own (`precise`: no FMA contraction). GLSL's
// sqrt and division may differ from the CPU's correctly rounded ones by an
// ulp or two on some devices (the parity tolerance says so).
#include "common.glsl"

// pclip__adamw_params
layout(push_constant) uniform Params {
    int n;
    float beta1, beta2, omb1, omb2, eps;
    int has_clamp;
    float clamp_max;
} a;

layout(binding = 0) buffer P { float w[]; }; // written in place
layout(binding = 1) readonly buffer G { float g[]; };
layout(binding = 2) buffer M { float m[]; }; // written in place
layout(binding = 3) buffer V { float v[]; }; // written in place: the op's result
layout(binding = 4) readonly buffer H { float h[]; };

void main() {
    uint i = pclip_global_index();
    if (i < uint(a.n)) {
        const float gi = g[i];
        precise float pi = w[i] * h[0];
        precise float mi = m[i] * a.beta1 + gi * a.omb1;
        precise float vi = v[i] * a.beta2 + gi * gi * a.omb2;
        precise float denom = sqrt(vi) / h[2] + a.eps;
        precise float step = h[1] * mi / denom;
        pi = pi - step;
        if (a.has_clamp != 0 && a.clamp_max < pi) pi = a.clamp_max;
        w[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}
