#version 450
// y = softmax(q k^T * scale + mask) v, per sequence and head
//
// As Hugging Face's CLIPAttention (and the CPU backend): q is scaled first,
// scores q k^T (+ -inf above the diagonal when causal), softmax in fp32,
// y = p v, heads side by side. qkv is [batch * seq, 3 * heads * head_dim]
// with the q, k and v blocks next to each other; head h uses columns
// h*D .. h*D+D-1 of each block.
//
// One workgroup per (query block of QB rows, head, sequence): workgroup
// (x, y, z). Keys are visited in tiles of KT with an online softmax (running
// max m and sum l per row, the accumulators rescaled by e^(m_old - m_new)).
// For CLIP's short sequences the dispatch code makes KT cover the whole
// sequence (ViT-L/14@336's 577 tokens fit in lavapipe's 32 KiB): one tile,
// the scores of the block held in shared memory, a fused softmax. Longer
// sequences take several tiles.
//
// Shared memory (SHARED floats, sized by the dispatch code):
//   q   [QB][D]        the block's queries, times scale
//   s   [QB][KT]       one tile's scores, then e^(s - m); after the last
//                      tile, the partial outputs [P][QB][D]
//   red [LS]           row reductions
//   m, l, alpha [QB]   the online softmax state
// Thread roles: scores, one key per invocation for all QB rows; row stats,
// G = LS / QB invocations per row (QB and LS powers of two); p v, one output
// column d per invocation over one of P = LS / D interleaved key subsets
// (the dispatch code makes LS >= D), combined at the end.
//
// ATTN_DIRECT (variant attention_direct) is for CPU implementations of
// Vulkan (lavapipe), where shared memory and barriers cost more than they
// save (see matmul.comp): one invocation per QR query rows (workgroup x:
// blocks of LS * QR rows), their q and output rows in registers as
// HD4 = head_dim / 4 vec4 each (head_dim a multiple of 4), each key and value
// read four floats at a time and used for all QR rows, the online softmax
// updated once per chunk of 8 keys.
#include "common.glsl"

#if ATTN_DIRECT
layout(constant_id = 1) const int HD4 = 16; // head_dim / 4
layout(constant_id = 2) const int QR = 2;   // query rows per invocation
#else
layout(constant_id = 1) const int QB = 8;
layout(constant_id = 2) const int KT = 64;
layout(constant_id = 3) const int SHARED = 2048;
#endif

// pclip__attention_params
layout(push_constant) uniform Params {
    int batch, seq, heads, head_dim;
    int causal;
    float scale; // 1 / sqrt(head_dim)
} p;

layout(binding = 0) readonly buffer QKV { float qkv[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

#if ATTN_DIRECT

// the same bindings seen four floats at a time (offsets are 256-aligned)
layout(binding = 0) readonly buffer QKV4 { vec4 qkv4[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y4 { vec4 y4[]; };

#define CHUNK 8

void main() {
    const int S = p.seq, H = p.heads;
    const int i0 = int(gl_WorkGroupID.x * PCLIP_LS + gl_LocalInvocationID.x) * QR;
    const int h = int(gl_WorkGroupID.y);
    const uint b = gl_WorkGroupID.z;
    if (i0 >= S) return; // no barriers here: whole invocations may leave
    const uint ld4 = 3u * uint(H * HD4), base = b * uint(S) * ld4;
    const uint koff = uint(H * HD4 + h * HD4), voff = uint(2 * H * HD4 + h * HD4);
    const float NEG_INF = -1.0 / 0.0;
    // QR query rows per invocation (rows past the end repeat the last one)
    vec4 q[QR * HD4], o[QR * HD4];
    float m[QR], l[QR];
    int kend[QR];
    int kmax = 0;
    [[unroll]] for (int r = 0; r < QR; r++) {
        const int i = min(i0 + r, S - 1);
        [[unroll]] for (int d = 0; d < HD4; d++) {
            q[r * HD4 + d] = qkv4[base + uint(i) * ld4 + uint(h * HD4 + d)] * p.scale;
            o[r * HD4 + d] = vec4(0.0);
        }
        m[r] = NEG_INF;
        l[r] = 0.0;
        kend[r] = p.causal != 0 ? i + 1 : S; // keys row i sees
        kmax = max(kmax, kend[r]);
    }
    for (int j0 = 0; j0 < kmax; j0 += CHUNK) {
        float s[QR * CHUNK];
        [[unroll]] for (int c = 0; c < CHUNK; c++) {
            const uint kr = base + uint(min(j0 + c, kmax - 1)) * ld4 + koff;
            float acc[QR];
            [[unroll]] for (int r = 0; r < QR; r++) acc[r] = 0.0;
            [[unroll]] for (int d = 0; d < HD4; d++) {
                const vec4 kv = qkv4[kr + uint(d)];
                [[unroll]] for (int r = 0; r < QR; r++) acc[r] += dot(q[r * HD4 + d], kv);
            }
            [[unroll]] for (int r = 0; r < QR; r++) s[r * CHUNK + c] = j0 + c < kend[r] ? acc[r] : NEG_INF;
        }
        float pc[QR * CHUNK];
        [[unroll]] for (int r = 0; r < QR; r++) {
            float mc = m[r];
            [[unroll]] for (int c = 0; c < CHUNK; c++) mc = max(mc, s[r * CHUNK + c]);
            // a chunk wholly past this row's last key keeps m = -inf: guard the exps
            const float alpha = m[r] == NEG_INF ? 0.0 : pclip_exp(m[r] - mc);
            l[r] *= alpha;
            [[unroll]] for (int d = 0; d < HD4; d++) o[r * HD4 + d] *= alpha;
            [[unroll]] for (int c = 0; c < CHUNK; c++) {
                const float sv = s[r * CHUNK + c];
                pc[r * CHUNK + c] = sv == NEG_INF ? 0.0 : pclip_exp(sv - mc);
                l[r] += pc[r * CHUNK + c];
            }
            m[r] = mc;
        }
        [[unroll]] for (int c = 0; c < CHUNK; c++) {
            const uint vr = base + uint(min(j0 + c, kmax - 1)) * ld4 + voff;
            [[unroll]] for (int d = 0; d < HD4; d++) {
                const vec4 vv = qkv4[vr + uint(d)];
                [[unroll]] for (int r = 0; r < QR; r++) o[r * HD4 + d] += pc[r * CHUNK + c] * vv;
            }
        }
    }
    [[unroll]] for (int r = 0; r < QR; r++) {
        if (i0 + r >= S) break;
        const uint yrow = (b * uint(S) + uint(i0 + r)) * uint(H * HD4) + uint(h * HD4);
        [[unroll]] for (int d = 0; d < HD4; d++) y4[yrow + uint(d)] = o[r * HD4 + d] / l[r];
    }
}

#else // the shared-memory kernel

shared float sh[SHARED];

void main() {
    const int LS = int(PCLIP_LS), tid = int(gl_LocalInvocationID.x);
    const int S = p.seq, H = p.heads, D = p.head_dim;
    const uint ld = 3u * uint(H) * uint(D); // a row of qkv
    const int q0 = int(gl_WorkGroupID.x) * QB, h = int(gl_WorkGroupID.y);
    const uint b = gl_WorkGroupID.z;
    const int nq = min(QB, S - q0);
    const uint base = b * uint(S) * ld;
    const uint qoff = uint(h * D), koff = uint(H * D + h * D), voff = uint(2 * H * D + h * D);
    const int P = max(1, LS / D);
    const int Q_ = 0, S_ = QB * D, RED = S_ + max(QB * KT, P * QB * D);
    const int M_ = RED + LS, L_ = M_ + QB, AL = L_ + QB;
    const float NEG_INF = -1.0 / 0.0;

    for (int e = tid; e < QB * D; e += LS) {
        int i = e / D, d = e % D;
        sh[Q_ + e] = i < nq ? qkv[base + uint(q0 + i) * ld + qoff + uint(d)] * p.scale : 0.0;
    }
    for (int i = tid; i < QB; i += LS) {
        sh[M_ + i] = NEG_INF;
        sh[L_ + i] = 0.0;
    }
    // p v: this invocation's output column and key subset
    const int part = tid / D, dcol = tid % D;
    const bool pv = part < P;
    float acc[QB];
    [[unroll]] for (int i = 0; i < QB; i++) acc[i] = 0.0;
    // row stats: this invocation's row and place in the row's group
    const int G = LS / QB, row = tid / G, g = tid % G;
    // keys any row of the block sees
    const int kend = p.causal != 0 ? min(S, q0 + nq) : S;
    barrier(); // q, m and l are in place

    for (int k0 = 0; k0 < kend; k0 += KT) {
        const int kn = min(KT, kend - k0);
        for (int j = tid; j < KT; j += LS) {
            float s[QB];
            [[unroll]] for (int i = 0; i < QB; i++) s[i] = 0.0;
            if (j < kn) {
                const uint kp = base + uint(k0 + j) * ld + koff;
                for (int d = 0; d < D; d++) {
                    float kv = qkv[kp + uint(d)];
                    [[unroll]] for (int i = 0; i < QB; i++) s[i] += sh[Q_ + i * D + d] * kv;
                }
            }
            [[unroll]] for (int i = 0; i < QB; i++) {
                bool masked = j >= kn || i >= nq || (p.causal != 0 && k0 + j > q0 + i);
                sh[S_ + i * KT + j] = masked ? NEG_INF : s[i];
            }
        }
        barrier(); // the tile's scores are complete

        // row max over the tile, G invocations per row
        float mx = NEG_INF;
        for (int j = g; j < kn; j += G) mx = max(mx, sh[S_ + row * KT + j]);
        sh[RED + tid] = mx;
        barrier();
        for (int st = G / 2; st > 0; st >>= 1) {
            if (g < st) sh[RED + tid] = max(sh[RED + tid], sh[RED + tid + st]);
            barrier();
        }
        const float m_old = sh[M_ + row];
        const float m_new = max(m_old, sh[RED + row * G]);
        barrier(); // everyone has read red before it is reused
        // e^(s - m_new), and its row sum (a row masked so far keeps 0)
        float sum = 0.0;
        for (int j = g; j < kn; j += G) {
            float sv = sh[S_ + row * KT + j];
            float e = sv == NEG_INF ? 0.0 : pclip_exp(sv - m_new);
            sh[S_ + row * KT + j] = e;
            sum += e;
        }
        sh[RED + tid] = sum;
        barrier();
        for (int st = G / 2; st > 0; st >>= 1) {
            if (g < st) sh[RED + tid] += sh[RED + tid + st];
            barrier();
        }
        if (g == 0) {
            float alpha = m_old == NEG_INF ? 0.0 : pclip_exp(m_old - m_new);
            sh[L_ + row] = sh[L_ + row] * alpha + sh[RED + tid];
            sh[M_ + row] = m_new;
            sh[AL + row] = alpha;
        }
        barrier(); // e^(s - m), alpha and l are complete

        if (pv) {
            [[unroll]] for (int i = 0; i < QB; i++) acc[i] *= sh[AL + i];
            for (int j = part; j < kn; j += P) {
                float vv = qkv[base + uint(k0 + j) * ld + voff + uint(dcol)];
                [[unroll]] for (int i = 0; i < QB; i++) acc[i] += sh[S_ + i * KT + j] * vv;
            }
        }
        barrier(); // the tile is consumed before the next one overwrites it
    }

    // combine the P partial sums of each output and divide by the row sum
    if (pv)
        [[unroll]] for (int i = 0; i < QB; i++) sh[S_ + (part * QB + i) * D + dcol] = acc[i];
    barrier(); // the partial outputs are complete
    for (int e = tid; e < nq * D; e += LS) {
        int i = e / D, d = e % D;
        float v = 0.0;
        for (int pp = 0; pp < P; pp++) v += sh[S_ + (pp * QB + i) * D + d];
        y[(b * uint(S) + uint(q0 + i)) * uint(H * D) + uint(h * D + d)] = v / sh[L_ + i];
    }
}

#endif
