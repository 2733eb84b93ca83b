#version 450
#if WEIGHT_F16
#extension GL_EXT_shader_16bit_storage : require
#endif
#if F16_ARITH
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif
// y = act(a @ op(b) + bias) + residual
//
// a [batch, M, K]; b [batch or 1, N, K] (trans_b: a weight as nn.Linear
// stores it) or [batch or 1, K, N]; bias [N] and residual [batch, M, N] are
// optional (has_bias, has_residual; their bindings then hold a dummy). The
// activation is applied before the residual add, as the CPU does.
//
// Tiled: a workgroup computes a BM x BN block of y for one product
// (workgroup z), walking K in steps of BK through shared memory; each
// invocation keeps TM x TN outputs in registers, strided by the thread grid
// (rows ty + i * BM/TM, columns tx + j * BN/TN) so that a subgroup reads
// consecutive shared words and writes consecutive columns. Tile sizes are
// specialization constants chosen per device by the dispatch code, which
// also checks LS = (BM / TM) * (BN / TN). Interior tiles (the whole BM x BN
// block inside y and a whole BK step of K) load without bounds checks; edge
// tiles and odd sizes take the general path, which checks every index and
// pads with zeros.
//
// MATMUL_DIRECT (variant matmul_direct) is the same product for CPU
// implementations of Vulkan (lavapipe): there a workgroup is one thread
// running SIMD across invocations, every buffer or shared-memory load costs
// a loop over the lanes, and barriers switch coroutines, so staging tiles
// through shared memory costs more than it saves. Each invocation instead
// loads its TM rows of a and TN rows (or columns) of b straight from the
// buffers, four floats per load when K (and N, for b [K, N]) is a multiple
// of 4, and keeps a TM x TN block of y in registers (BM = TM * BM/TM rows per
// workgroup as above; rows and columns are contiguous per invocation).
// Rows and columns past the edge are clamped to the last one for loading and
// not stored, so the inner loop has no branches.
//
// With SG = 4, 8 or 16 (variants matmul_direct_sg4/8/16, chosen when the
// device's subgroup size is SG and the workgroup is one subgroup), the SG
// invocations of a workgroup share its TM rows of a (BM = TM): each loads
// TM / SG of them and the others come by subgroupBroadcast, a register move
// on a CPU, instead of a load of their own. Only the b [N, K], K % 4 == 0
// loop (every linear layer) does this; no invocation leaves early there.
//
// WEIGHT_F16 (the *_f16 variants, precision fp16): b is a weight resident
// as IEEE half (vk_memory.c converts it once at upload; 16-bit storage
// buffers). Each element, or f16vec4, is widened to fp32 as it is loaded:
// the products and the accumulation stay fp32, as do a, bias, residual and
// y.
//
// F16_ARITH (the *_f16a variants, precision fp16 on a device with
// shaderFloat16): the products are fp16 as well. a is rounded to half as it
// is loaded (the tiled kernel stages it in shared memory as half, two k
// values per 32-bit word, f16vec2, halving the tile's bytes; the direct
// kernels convert each vec4 to f16vec4), products are f16vec2 / f16vec4
// FMAs, and every fp16 partial sum adds RUN products (spec constant 7:
// consecutive ones along k in each vector lane) before it is widened and
// added into the fp32 accumulator; bias, activation, residual and y stay
// fp32. RUN = 1 rounds each product to half and sums in fp32. An activation
// beyond half's range (65504) becomes inf. Only the b [N, K] loops have
// vector forms (PATH 0 and the tiled kernel, every linear layer); PATH 1
// and 3 are scalar and PATH 2 is not compiled (the dispatch code takes
// PATH 3 instead).
#include "common.glsl"

layout(constant_id = 1) const int BM = 64;
layout(constant_id = 2) const int BN = 64;
layout(constant_id = 3) const int BK = 16;
layout(constant_id = 4) const int TM = 4;
layout(constant_id = 5) const int TN = 4;
#if MATMUL_DIRECT
// which loop, fixed per pipeline so that the others are not compiled:
// 0 b [N, K], K % 4 == 0 (vec4 loads); 1 b [N, K], any K;
// 2 b [K, N], K % 4 == 0 and N % 4 == 0 (vec4 loads); 3 b [K, N], any sizes
layout(constant_id = 6) const int PATH = 0;
#endif
#if F16_ARITH
layout(constant_id = 7) const int RUN = 4; // products per fp16 partial sum
#endif

// pclip__matmul_params
layout(push_constant) uniform Params {
    int batch; // number of independent products (workgroup z)
    int M, N, K;
    int trans_b;
    int b_batch_stride; // elements between b matrices; 0 = one b shared by all
    int has_bias, has_residual;
    int act; // pclip__act_kind
} p;

layout(binding = 0) readonly buffer A { float a[]; };
#if WEIGHT_F16
layout(binding = 1) readonly buffer B { float16_t b[]; };
#define BF(i) float(b[i])
#else
layout(binding = 1) readonly buffer B { float b[]; };
#define BF(i) b[i]
#endif
layout(binding = 2) readonly buffer Bias { float bias[]; };
layout(binding = 3) readonly buffer Res { float res[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

// y = act(acc + bias) + residual at (m, n)
void epilogue(uint y_off, int m, int n, float acc) {
    float v = acc;
    if (p.has_bias != 0) v += bias[n];
    v = pclip_act(p.act, v);
    uint at = y_off + uint(m) * uint(p.N) + uint(n);
    if (p.has_residual != 0) v += res[at];
    y[at] = v;
}

#if MATMUL_DIRECT

// the same bindings seen four floats at a time (offsets are 256-aligned)
layout(binding = 0) readonly buffer A4 { vec4 a4[]; };
#if WEIGHT_F16
layout(binding = 1) readonly buffer B4 { f16vec4 b4[]; };
#define BF4(i) vec4(b4[i])
#define BH4(i) b4[i]
#else
layout(binding = 1) readonly buffer B4 { vec4 b4[]; };
#define BF4(i) b4[i]
#endif

#if SG
#if F16_ARITH
// row i = g * SG + l of the block: lane l's a, broadcast (l must be a
// constant) as fp32 and rounded to half here (broadcasting half would need
// shaderSubgroupExtendedTypes), into the fp16 partial sums s
#define ROW(g, l)                                                                  \
    {                                                                              \
        const f16vec4 ar = f16vec4(subgroupBroadcast(mine[g], l));                 \
        const int i = (g) * SG + (l);                                              \
        [[unroll]] for (int j = 0; j < TN; j++) s[i * TN + j] = fma(ar, br[j], s[i * TN + j]); \
    }
#else
// row i = g * SG + l of the block: lane l's a, broadcast (l must be a constant)
#define ROW(g, l)                                                                  \
    {                                                                              \
        const vec4 ar = subgroupBroadcast(mine[g], l);                             \
        const int i = (g) * SG + (l);                                              \
        [[unroll]] for (int j = 0; j < TN; j++) {                                  \
            float t = acc[i * TN + j];                                             \
            t = fma(ar.x, br[j].x, t);                                             \
            t = fma(ar.y, br[j].y, t);                                             \
            t = fma(ar.z, br[j].z, t);                                             \
            acc[i * TN + j] = fma(ar.w, br[j].w, t);                               \
        }                                                                          \
    }
#endif
#define ROWS4(g, o) ROW(g, o) ROW(g, o + 1) ROW(g, o + 2) ROW(g, o + 3)
#if SG == 4
#define ROWS(g) ROWS4(g, 0)
#elif SG == 8
#define ROWS(g) ROWS4(g, 0) ROWS4(g, 4)
#elif SG == 16
#define ROWS(g) ROWS4(g, 0) ROWS4(g, 4) ROWS4(g, 8) ROWS4(g, 12)
#else
#error "SG must be 4, 8 or 16"
#endif
#endif

#if F16_ARITH
// the fp16 partial sums s of the PATH 0 loop: cleared, and widened into acc
#define ZERO_S [[unroll]] for (int q = 0; q < TM * TN; q++) s[q] = f16vec4(0.0);
#define WIDEN_S                                                                    \
    [[unroll]] for (int q = 0; q < TM * TN; q++) {                                 \
        const vec4 w = vec4(s[q]);                                                 \
        acc[q] += (w.x + w.y) + (w.z + w.w);                                       \
    }
// one vec4 step k4 of PATH 0 into s
#if SG
#define STEP0(k4)                                                                  \
    {                                                                              \
        vec4 mine[GR];                                                             \
        f16vec4 br[TN];                                                            \
        [[unroll]] for (int g = 0; g < GR; g++) mine[g] = a4[mine_row[g] / 4u + (k4)]; \
        [[unroll]] for (int j = 0; j < TN; j++) br[j] = BH4(bcol[j] / 4u + (k4));  \
        [[unroll]] for (int g = 0; g < GR; g++) { ROWS(g) }                        \
    }
#else
#define STEP0(k4)                                                                  \
    {                                                                              \
        f16vec4 ar[TM], br[TN];                                                    \
        [[unroll]] for (int i = 0; i < TM; i++) ar[i] = f16vec4(a4[arow[i] / 4u + (k4)]); \
        [[unroll]] for (int j = 0; j < TN; j++) br[j] = BH4(bcol[j] / 4u + (k4));  \
        [[unroll]] for (int i = 0; i < TM; i++)                                    \
            [[unroll]] for (int j = 0; j < TN; j++)                                \
                s[i * TN + j] = fma(ar[i], br[j], s[i * TN + j]);                  \
    }
#endif
#endif

void main() {
    const int WN = BN / TN;
    const int tid = int(gl_LocalInvocationID.x), tx = tid % WN, ty = tid / WN;
    const int M = p.M, N = p.N, K = p.K;
    const int m0 = int(gl_WorkGroupID.y) * BM + ty * TM, n0 = int(gl_WorkGroupID.x) * BN + tx * TN;
    const uint bi = gl_WorkGroupID.z;
    const uint a_off = bi * uint(M) * uint(K), y_off = bi * uint(M) * uint(N);
    const uint b_off = bi * uint(p.b_batch_stride);
#if !SG
    if (m0 >= M || n0 >= N) return; // no barriers here: whole invocations may leave
#endif

    // rows and columns past the edge load the last one and are not stored
    uint arow[TM], bcol[TN];
    [[unroll]] for (int i = 0; i < TM; i++) arow[i] = a_off + uint(min(m0 + i, M - 1)) * uint(K);
    float acc[TM * TN];
    [[unroll]] for (int i = 0; i < TM * TN; i++) acc[i] = 0.0;

#if F16_ARITH
    if (PATH == 0) {
        [[unroll]] for (int j = 0; j < TN; j++) bcol[j] = b_off + uint(min(n0 + j, N - 1)) * uint(K);
#if SG
        const int GR = TM / SG; // rows of a this invocation loads: l, l + SG, ...
        uint mine_row[GR];
        [[unroll]] for (int g = 0; g < GR; g++)
            mine_row[g] = a_off + uint(min(m0 + g * SG + int(gl_SubgroupInvocationID), M - 1)) * uint(K);
#endif
        // whole runs of RUN steps, then the rest as one shorter run
        const uint K4 = uint(K / 4);
        f16vec4 s[TM * TN];
        uint k4 = 0;
        for (; k4 + uint(RUN) <= K4; k4 += uint(RUN)) {
            ZERO_S
            [[unroll]] for (int r = 0; r < RUN; r++) STEP0(k4 + uint(r))
            WIDEN_S
        }
        if (k4 < K4) {
            ZERO_S
            for (; k4 < K4; k4++) STEP0(k4)
            WIDEN_S
        }
    } else {
        // PATH 1 (b [N, K]) or 3 (b [K, N]), one element at a time
        const uint kstride = PATH == 1 ? 1u : uint(N);
        [[unroll]] for (int j = 0; j < TN; j++)
            bcol[j] = b_off + uint(min(n0 + j, N - 1)) * (PATH == 1 ? uint(K) : 1u);
        float16_t s[TM * TN];
        for (uint k0 = 0; k0 < uint(K); k0 += uint(RUN)) {
            const uint kend = min(k0 + uint(RUN), uint(K));
            [[unroll]] for (int q = 0; q < TM * TN; q++) s[q] = float16_t(0.0);
            for (uint k = k0; k < kend; k++) {
                float16_t ar[TM], br[TN];
                [[unroll]] for (int i = 0; i < TM; i++) ar[i] = float16_t(a[arow[i] + k]);
                [[unroll]] for (int j = 0; j < TN; j++) br[j] = b[bcol[j] + k * kstride];
                [[unroll]] for (int i = 0; i < TM; i++)
                    [[unroll]] for (int j = 0; j < TN; j++)
                        s[i * TN + j] = fma(ar[i], br[j], s[i * TN + j]);
            }
            [[unroll]] for (int q = 0; q < TM * TN; q++) acc[q] += float(s[q]);
        }
    }
#else
    if (PATH == 0) {
        [[unroll]] for (int j = 0; j < TN; j++) bcol[j] = b_off + uint(min(n0 + j, N - 1)) * uint(K);
#if SG
        const int GR = TM / SG; // rows of a this invocation loads: l, l + SG, ...
        uint mine_row[GR];
        [[unroll]] for (int g = 0; g < GR; g++)
            mine_row[g] = a_off + uint(min(m0 + g * SG + int(gl_SubgroupInvocationID), M - 1)) * uint(K);
        for (uint k4 = 0; k4 < uint(K / 4); k4++) {
            vec4 mine[GR], br[TN];
            [[unroll]] for (int g = 0; g < GR; g++) mine[g] = a4[mine_row[g] / 4u + k4];
            [[unroll]] for (int j = 0; j < TN; j++) br[j] = BF4(bcol[j] / 4u + k4);
            [[unroll]] for (int g = 0; g < GR; g++) { ROWS(g) }
        }
#else
        for (uint k4 = 0; k4 < uint(K / 4); k4++) {
            vec4 ar[TM], br[TN];
            [[unroll]] for (int i = 0; i < TM; i++) ar[i] = a4[arow[i] / 4u + k4];
            [[unroll]] for (int j = 0; j < TN; j++) br[j] = BF4(bcol[j] / 4u + k4);
            [[unroll]] for (int i = 0; i < TM; i++)
                [[unroll]] for (int j = 0; j < TN; j++) {
                    float t = acc[i * TN + j];
                    t = fma(ar[i].x, br[j].x, t);
                    t = fma(ar[i].y, br[j].y, t);
                    t = fma(ar[i].z, br[j].z, t);
                    acc[i * TN + j] = fma(ar[i].w, br[j].w, t);
                }
        }
#endif
    } else if (PATH == 1) {
        [[unroll]] for (int j = 0; j < TN; j++) bcol[j] = b_off + uint(min(n0 + j, N - 1)) * uint(K);
        for (uint k = 0; k < uint(K); k++) {
            float ar[TM], br[TN];
            [[unroll]] for (int i = 0; i < TM; i++) ar[i] = a[arow[i] + k];
            [[unroll]] for (int j = 0; j < TN; j++) br[j] = BF(bcol[j] + k);
            [[unroll]] for (int i = 0; i < TM; i++)
                [[unroll]] for (int j = 0; j < TN; j++)
                    acc[i * TN + j] = fma(ar[i], br[j], acc[i * TN + j]);
        }
    } else if (PATH == 2) {
        // TN consecutive columns are TN / 4 vec4 of a row of b; a vec4 past N
        // (N % 4 == 0: wholly past it) loads the last one and is not stored
        const int TN4 = (TN + 3) / 4;
        [[unroll]] for (int j = 0; j < TN4; j++) bcol[j] = b_off + uint(min(n0 + 4 * j, N - 4));
        for (uint k4 = 0; k4 < uint(K / 4); k4++) {
            vec4 ar[TM];
            [[unroll]] for (int i = 0; i < TM; i++) ar[i] = a4[arow[i] / 4u + k4];
            [[unroll]] for (int kk = 0; kk < 4; kk++) {
                const uint krow = (4u * k4 + uint(kk)) * uint(N);
                vec4 br[TN4];
                [[unroll]] for (int j = 0; j < TN4; j++) br[j] = BF4((bcol[j] + krow) / 4u);
                [[unroll]] for (int i = 0; i < TM; i++)
                    [[unroll]] for (int j = 0; j < TN; j++)
                        acc[i * TN + j] = fma(ar[i][kk], br[j / 4][j % 4], acc[i * TN + j]);
            }
        }
    } else {
        [[unroll]] for (int j = 0; j < TN; j++) bcol[j] = b_off + uint(min(n0 + j, N - 1));
        for (uint k = 0; k < uint(K); k++) {
            float ar[TM], br[TN];
            [[unroll]] for (int i = 0; i < TM; i++) ar[i] = a[arow[i] + k];
            [[unroll]] for (int j = 0; j < TN; j++) br[j] = BF(bcol[j] + k * uint(N));
            [[unroll]] for (int i = 0; i < TM; i++)
                [[unroll]] for (int j = 0; j < TN; j++)
                    acc[i * TN + j] = fma(ar[i], br[j], acc[i * TN + j]);
        }
    }
#endif
    [[unroll]] for (int i = 0; i < TM; i++)
        [[unroll]] for (int j = 0; j < TN; j++)
            if (m0 + i < M && n0 + j < N) epilogue(y_off, m0 + i, n0 + j, acc[i * TN + j]);
}

#elif F16_ARITH // the tiled kernel, fp16 products

// Two k values per 32-bit word, half the fp32 tiles' bytes: As[k / 2][m],
// Bs[k / 2][n], +1 word per row as below. BK is even (the dispatch code
// makes it so); a run of RUN words (RUN products per lane) does not cross
// a K tile.
const int AST = BM + 1, BST = BN + 1, BK2 = BK / 2;
shared f16vec2 As[BK2 * AST];
shared f16vec2 Bs[BK2 * BST];

void main() {
    const int LS = int(PCLIP_LS);
    const int WN = BN / TN, WM = BM / TM; // the thread grid: WN columns, WM rows
    const int tid = int(gl_LocalInvocationID.x), tx = tid % WN, ty = tid / WN;
    const int M = p.M, N = p.N, K = p.K;
    const int m0 = int(gl_WorkGroupID.y) * BM, n0 = int(gl_WorkGroupID.x) * BN;
    const uint bi = gl_WorkGroupID.z;
    const uint a_off = bi * uint(M) * uint(K), y_off = bi * uint(M) * uint(N);
    const uint b_off = bi * uint(p.b_batch_stride);
    const bool interior = m0 + BM <= M && n0 + BN <= N;
    const float16_t zero = float16_t(0.0);

    float acc[TM * TN];
    [[unroll]] for (int i = 0; i < TM * TN; i++) acc[i] = 0.0;

    for (int k0 = 0; k0 < K; k0 += BK) {
        if (interior && k0 + BK <= K) {
            // fast path: no bounds checks; a rounded to half here
            for (int e = tid; e < BM * BK2; e += LS) {
                int r = e / BK2, c = e % BK2;
                uint at = a_off + uint(m0 + r) * uint(K) + uint(k0 + 2 * c);
                As[c * AST + r] = f16vec2(a[at], a[at + 1u]);
            }
            if (p.trans_b != 0)
                for (int e = tid; e < BN * BK2; e += LS) {
                    int r = e / BK2, c = e % BK2;
                    uint at = b_off + uint(n0 + r) * uint(K) + uint(k0 + 2 * c);
                    Bs[c * BST + r] = f16vec2(b[at], b[at + 1u]);
                }
            else
                for (int e = tid; e < BN * BK2; e += LS) {
                    int r = e / BN, c = e % BN;
                    uint at = b_off + uint(k0 + 2 * r) * uint(N) + uint(n0 + c);
                    Bs[r * BST + c] = f16vec2(b[at], b[at + uint(N)]);
                }
        } else {
            // general path: edge tiles and the K tail, zero padded
            for (int e = tid; e < BM * BK2; e += LS) {
                int r = e / BK2, c = e % BK2, k = k0 + 2 * c;
                bool row = m0 + r < M;
                uint at = a_off + uint(m0 + r) * uint(K) + uint(k);
                As[c * AST + r] = f16vec2(row && k < K ? float16_t(a[at]) : zero,
                                          row && k + 1 < K ? float16_t(a[at + 1u]) : zero);
            }
            if (p.trans_b != 0)
                for (int e = tid; e < BN * BK2; e += LS) {
                    int r = e / BK2, c = e % BK2, k = k0 + 2 * c;
                    bool col = n0 + r < N;
                    uint at = b_off + uint(n0 + r) * uint(K) + uint(k);
                    Bs[c * BST + r] = f16vec2(col && k < K ? b[at] : zero,
                                              col && k + 1 < K ? b[at + 1u] : zero);
                }
            else
                for (int e = tid; e < BN * BK2; e += LS) {
                    int r = e / BN, c = e % BN, k = k0 + 2 * r;
                    bool col = n0 + c < N;
                    uint at = b_off + uint(k) * uint(N) + uint(n0 + c);
                    Bs[r * BST + c] = f16vec2(col && k < K ? b[at] : zero,
                                              col && k + 1 < K ? b[at + uint(N)] : zero);
                }
        }
        barrier(); // the tiles are complete before anyone reads them

        for (int w0 = 0; w0 < BK2; w0 += RUN) {
            f16vec2 s[TM * TN];
            [[unroll]] for (int q = 0; q < TM * TN; q++) s[q] = f16vec2(0.0);
            const int wend = min(w0 + RUN, BK2);
            for (int w = w0; w < wend; w++) {
                f16vec2 ar[TM], br[TN];
                [[unroll]] for (int i = 0; i < TM; i++) ar[i] = As[w * AST + ty + i * WM];
                [[unroll]] for (int j = 0; j < TN; j++) br[j] = Bs[w * BST + tx + j * WN];
                [[unroll]] for (int i = 0; i < TM; i++)
                    [[unroll]] for (int j = 0; j < TN; j++)
                        s[i * TN + j] = fma(ar[i], br[j], s[i * TN + j]);
            }
            [[unroll]] for (int q = 0; q < TM * TN; q++) acc[q] += float(s[q].x) + float(s[q].y);
        }
        barrier(); // everyone is done with the tiles before the next load
    }

    // epilogue: bias, activation, residual, as the CPU reference orders them
    [[unroll]] for (int i = 0; i < TM; i++) {
        int m = m0 + ty + i * WM;
        if (m >= M) continue;
        [[unroll]] for (int j = 0; j < TN; j++) {
            int n = n0 + tx + j * WN;
            if (n < N) epilogue(y_off, m, n, acc[i * TN + j]);
        }
    }
}

#else // the tiled kernel

// +1 word per row so that the transposing stores below hit distinct banks
const int AST = BM + 1, BST = BN + 1;
shared float As[BK * AST]; // [k][m]
shared float Bs[BK * BST]; // [k][n]

void main() {
    const int LS = int(PCLIP_LS);
    const int WN = BN / TN, WM = BM / TM; // the thread grid: WN columns, WM rows
    const int tid = int(gl_LocalInvocationID.x), tx = tid % WN, ty = tid / WN;
    const int M = p.M, N = p.N, K = p.K;
    const int m0 = int(gl_WorkGroupID.y) * BM, n0 = int(gl_WorkGroupID.x) * BN;
    const uint bi = gl_WorkGroupID.z;
    const uint a_off = bi * uint(M) * uint(K), y_off = bi * uint(M) * uint(N);
    const uint b_off = bi * uint(p.b_batch_stride);
    const bool interior = m0 + BM <= M && n0 + BN <= N;

    float acc[TM * TN];
    [[unroll]] for (int i = 0; i < TM * TN; i++) acc[i] = 0.0;

    for (int k0 = 0; k0 < K; k0 += BK) {
        if (interior && k0 + BK <= K) {
            // fast path: no bounds checks
            for (int e = tid; e < BM * BK; e += LS) {
                int r = e / BK, c = e % BK;
                As[c * AST + r] = a[a_off + uint(m0 + r) * uint(K) + uint(k0 + c)];
            }
            if (p.trans_b != 0)
                for (int e = tid; e < BN * BK; e += LS) {
                    int r = e / BK, c = e % BK;
                    Bs[c * BST + r] = BF(b_off + uint(n0 + r) * uint(K) + uint(k0 + c));
                }
            else
                for (int e = tid; e < BN * BK; e += LS) {
                    int r = e / BN, c = e % BN;
                    Bs[r * BST + c] = BF(b_off + uint(k0 + r) * uint(N) + uint(n0 + c));
                }
        } else {
            // general path: edge tiles and the K tail, zero padded
            for (int e = tid; e < BM * BK; e += LS) {
                int r = e / BK, c = e % BK;
                bool in_ = m0 + r < M && k0 + c < K;
                As[c * AST + r] = in_ ? a[a_off + uint(m0 + r) * uint(K) + uint(k0 + c)] : 0.0;
            }
            if (p.trans_b != 0)
                for (int e = tid; e < BN * BK; e += LS) {
                    int r = e / BK, c = e % BK;
                    bool in_ = n0 + r < N && k0 + c < K;
                    Bs[c * BST + r] = in_ ? BF(b_off + uint(n0 + r) * uint(K) + uint(k0 + c)) : 0.0;
                }
            else
                for (int e = tid; e < BN * BK; e += LS) {
                    int r = e / BN, c = e % BN;
                    bool in_ = k0 + r < K && n0 + c < N;
                    Bs[r * BST + c] = in_ ? BF(b_off + uint(k0 + r) * uint(N) + uint(n0 + c)) : 0.0;
                }
        }
        barrier(); // the tiles are complete before anyone reads them

        [[unroll]] for (int k = 0; k < BK; k++) {
            float ar[TM], br[TN];
            [[unroll]] for (int i = 0; i < TM; i++) ar[i] = As[k * AST + ty + i * WM];
            [[unroll]] for (int j = 0; j < TN; j++) br[j] = Bs[k * BST + tx + j * WN];
            [[unroll]] for (int i = 0; i < TM; i++)
                [[unroll]] for (int j = 0; j < TN; j++)
                    acc[i * TN + j] = fma(ar[i], br[j], acc[i * TN + j]);
        }
        barrier(); // everyone is done with the tiles before the next load
    }

    // epilogue: bias, activation, residual, as the CPU reference orders them
    [[unroll]] for (int i = 0; i < TM; i++) {
        int m = m0 + ty + i * WM;
        if (m >= M) continue;
        [[unroll]] for (int j = 0; j < TN; j++) {
            int n = n0 + tx + j * WN;
            if (n < N) epilogue(y_off, m, n, acc[i * TN + j]);
        }
    }
}

#endif
