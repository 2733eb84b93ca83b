#version 450
// y = (CE of rows + CE of columns of exp(t[0]) s, labels i = i) / 2, mean over i (GRAD=0)
// and its gradient (GRAD=1): which 0: dy[0] d y / d s, which 1: d y / d t.
//
// As backends/cpu/clip_loss.c (its comment has the formulas): L = e s with
// e = exp(t[0]); log-sum-exps with the maximum subtracted; the gradient is
// dL = dy (P + Q - 2 I) / (2 n), P the row and Q the column softmax of L.
// One workgroup does the whole n x n problem, because the result needs
// every row's and every column's statistics:
//   1. column j's log-sum-exp by invocation j mod LS, streaming the rows
//      (adjacent invocations read adjacent columns): the loss adds up its
//      columns' CE; the gradient keeps them in shared memory (NMAX >= n
//      floats, specialization constant 1);
//   2. row by row, the row's max and sum by shared-memory reductions, then
//      the row's part of the loss, or of the gradient.
// The column sums run in row order as on the CPU; the row sums and the
// final ones are tree reductions (the parity tolerance covers the order).
// The per-element arithmetic is `precise` (no contraction), as the CPU
// rounds it. vk_ops.c bounds the loop iterations of one invocation where
// the device needs it (lavapipe ends any invocation's loops after 65535).
#define PCLIP_REDUCE
#define USE_SUBGROUP 0
#include "common.glsl"

layout(constant_id = 1) const uint NMAX = 4096;

#if GRAD
// pclip__clip_loss_grad_params
layout(push_constant) uniform Params {
    int n;
    int which;
} p;
#else
// pclip__clip_loss_params
layout(push_constant) uniform Params {
    int n;
} p;
#endif

layout(binding = 0) readonly buffer S { float s[]; };
layout(binding = 1) readonly buffer T { float t[]; };
#if GRAD
layout(binding = 2) readonly buffer DY { float dy[]; };
#endif
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

#if GRAD
shared float col_lse[NMAX];
#endif

void main() {
    const uint lid = gl_LocalInvocationID.x, ls = PCLIP_LS, n = uint(p.n);
    const float e = pclip_exp(t[0]);
    const float neg_inf = uintBitsToFloat(0xff800000u);
#if !GRAD
    precise float col_part = 0.0; // this invocation's columns' CE
#endif
    for (uint c = lid; c < n; c += ls) {
        float m = neg_inf;
        for (uint r = 0; r < n; r++) {
            precise float x = e * s[r * n + c];
            m = x > m ? x : m;
        }
        precise float sum = 0.0;
        for (uint r = 0; r < n; r++) {
            precise float x = e * s[r * n + c];
            sum += pclip_exp(x - m);
        }
        precise float lse = m + log(sum);
#if GRAD
        col_lse[c] = lse;
#else
        precise float diag = e * s[c * n + c];
        col_part += lse - diag;
#endif
    }
    barrier();
#if GRAD
    const float dyv = dy[0], two_n = float(2 * n);
    precise float acc = 0.0;
#else
    precise float rows = 0.0;
#endif
    for (uint r = 0; r < n; r++) {
        const uint base = r * n;
        float m = neg_inf;
        for (uint c = lid; c < n; c += ls) {
            precise float x = e * s[base + c];
            m = x > m ? x : m;
        }
        m = pclip_max(m);
        precise float part = 0.0;
        for (uint c = lid; c < n; c += ls) {
            precise float x = e * s[base + c];
            part += pclip_exp(x - m);
        }
        precise float lse = m + log(pclip_sum(part));
#if GRAD
        for (uint c = lid; c < n; c += ls) {
            precise float x = e * s[base + c];
            precise float g =
                (pclip_exp(x - lse) + pclip_exp(x - col_lse[c])) - (r == c ? 2.0 : 0.0);
            precise float dl = dyv * g / two_n;
            if (p.which == 0)
                y[base + c] = e * dl;
            else
                acc += dl * x;
        }
#else
        precise float diag = e * s[base + r];
        rows += lse - diag;
#endif
    }
#if GRAD
    if (p.which == 1) {
        precise float total = pclip_sum(acc);
        if (lid == 0) y[0] = total;
    }
#else
    precise float cols = pclip_sum(col_part);
    if (lid == 0) {
        precise float loss = 0.5 * (rows / float(n) + cols / float(n));
        y[0] = loss;
    }
#endif
}
