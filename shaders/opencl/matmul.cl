// y = act(a @ op(b) + bias) + residual
//
// a [batch, M, K]; b [batch or 1, N, K] (trans_b: a weight as nn.Linear
// stores it) or [batch or 1, K, N]; bias [N] and residual [batch, M, N] are
// optional (has_bias, has_residual; their arguments then hold a placeholder
// buffer). The activation is applied before the residual add, as the CPU
// does.
//
// Tiled in CLBlast's manner: a work-group computes an MM_BM x MM_BN block of
// y for one product (work-group z), walking K in steps of MM_BK through
// local memory; each work-item keeps MM_TM x MM_TN outputs in registers as
// independent accumulators, strided by the work-item grid (rows
// ty + i * MM_BM/MM_TM, columns tx + j * MM_BN/MM_TN) so that neighbouring
// work-items read neighbouring local words and write neighbouring columns
// (and PoCL vectorises across them). The tile sizes are -D defines with
// the defaults below; the dispatch code chooses them per device and checks
// that the work-group (MM_BM/MM_TM) * (MM_BN/MM_TN) fits. Interior tiles
// load without bounds checks; edge tiles and the K tail check every index
// and pad with zeros, so any size works.
//
// matmul_direct is the same product for CPU implementations of OpenCL
// (PoCL), for b [N, K] (every linear layer): there a work-group is a loop
// over its work-items, and anything that lives across a barrier (the tiled
// kernel's accumulators) is kept in memory, so staging tiles costs more than
// it saves. Each work-item instead reads its MD_TM rows of a and MD_TN rows
// of b straight from the buffers, MD_VW floats per load (vloadn: any
// alignment), and keeps MD_TM x MD_TN vector accumulators in registers,
// summed across lanes at the end; rows and columns past the edge are clamped
// to the last one for loading and not stored, so the inner loop has no
// branches, and the K tail is summed one float at a time. Work-items run
// along n (dimension 1, MD_LS per work-group) and work-groups m first
// (dimension 0): consecutive work-groups read the same panel of b, which
// stays in cache while a streams (measured 1.5-2x over n first on PoCL).

#ifndef MM_BM
#define MM_BM 64
#endif
#ifndef MM_BN
#define MM_BN 64
#endif
#ifndef MM_BK
#define MM_BK 16
#endif
#ifndef MM_TM
#define MM_TM 4
#endif
#ifndef MM_TN
#define MM_TN 4
#endif
#define MM_WN (MM_BN / MM_TN) // the work-item grid: MM_WN columns
#define MM_WM (MM_BM / MM_TM) // and MM_WM rows
#define MM_LS (MM_WN * MM_WM)

// pclip__matmul_params
kernel __attribute__((reqd_work_group_size(MM_LS, 1, 1))) void
matmul(global const float *a, uint ao, global const float *b, uint bo, global const float *bias,
       uint biaso, global const float *res, uint reso, global float *y, uint yo,
       pclip__matmul_params p) {
    // +1 word per row so that the transposing stores hit distinct banks
    local float As[MM_BK][MM_BM + 1]; // [k][m]
    local float Bs[MM_BK][MM_BN + 1]; // [k][n]
    const int tid = get_local_id(0), tx = tid % MM_WN, ty = tid / MM_WN;
    const int M = p.M, N = p.N, K = p.K;
    const int m0 = get_group_id(1) * MM_BM, n0 = get_group_id(0) * MM_BN;
    const size_t bi = get_group_id(2);
    global const float *A = a + ao + bi * M * K;
    global const float *B = b + bo + bi * p.b_batch_stride;
    const bool interior = m0 + MM_BM <= M && n0 + MM_BN <= N;

    float acc[MM_TM][MM_TN];
    for (int i = 0; i < MM_TM; i++)
        for (int j = 0; j < MM_TN; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += MM_BK) {
        if (interior && k0 + MM_BK <= K) {
            // fast path: no bounds checks
            for (int e = tid; e < MM_BM * MM_BK; e += MM_LS) {
                const int r = e / MM_BK, c = e % MM_BK;
                As[c][r] = A[(m0 + r) * K + k0 + c];
            }
            if (p.trans_b)
                for (int e = tid; e < MM_BN * MM_BK; e += MM_LS) {
                    const int r = e / MM_BK, c = e % MM_BK;
                    Bs[c][r] = B[(n0 + r) * K + k0 + c];
                }
            else
                for (int e = tid; e < MM_BN * MM_BK; e += MM_LS) {
                    const int r = e / MM_BN, c = e % MM_BN;
                    Bs[r][c] = B[(k0 + r) * N + n0 + c];
                }
        } else {
            // general path: edge tiles and the K tail, zero padded
            for (int e = tid; e < MM_BM * MM_BK; e += MM_LS) {
                const int r = e / MM_BK, c = e % MM_BK;
                As[c][r] = m0 + r < M && k0 + c < K ? A[(m0 + r) * K + k0 + c] : 0.0f;
            }
            if (p.trans_b)
                for (int e = tid; e < MM_BN * MM_BK; e += MM_LS) {
                    const int r = e / MM_BK, c = e % MM_BK;
                    Bs[c][r] = n0 + r < N && k0 + c < K ? B[(n0 + r) * K + k0 + c] : 0.0f;
                }
            else
                for (int e = tid; e < MM_BN * MM_BK; e += MM_LS) {
                    const int r = e / MM_BN, c = e % MM_BN;
                    Bs[r][c] = k0 + r < K && n0 + c < N ? B[(k0 + r) * N + n0 + c] : 0.0f;
                }
        }
        barrier(CLK_LOCAL_MEM_FENCE); // the tiles are complete before anyone reads them

        for (int k = 0; k < MM_BK; k++) {
            float ar[MM_TM], br[MM_TN];
            for (int i = 0; i < MM_TM; i++) ar[i] = As[k][ty + i * MM_WM];
            for (int j = 0; j < MM_TN; j++) br[j] = Bs[k][tx + j * MM_WN];
            for (int i = 0; i < MM_TM; i++)
                for (int j = 0; j < MM_TN; j++) acc[i][j] = fma(ar[i], br[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE); // everyone is done with the tiles before the next load
    }

    // epilogue: bias, activation, residual, as the CPU reference orders them
    global float *Y = y + yo + bi * M * N;
    global const float *R = res + reso + bi * M * N;
    for (int i = 0; i < MM_TM; i++) {
        const int m = m0 + ty + i * MM_WM;
        if (m >= M) continue;
        for (int j = 0; j < MM_TN; j++) {
            const int n = n0 + tx + j * MM_WN;
            if (n >= N) continue;
            float v = acc[i][j];
            if (p.has_bias) v += bias[biaso + n];
            v = pclip_act(p.act, v);
            if (p.has_residual) v += R[m * N + n];
            Y[m * N + n] = v;
        }
    }
}

#ifndef MD_TM
#define MD_TM 4
#endif
#ifndef MD_TN
#define MD_TN 4
#endif
#ifndef MD_VW
#define MD_VW 8
#endif
#ifndef MD_LS
#define MD_LS 16
#endif
#define MD_CAT_(a, b) a##b
#define MD_CAT(a, b) MD_CAT_(a, b)
#define MD_VEC MD_CAT(float, MD_VW)  // floatMD_VW
#define MD_LOAD MD_CAT(vload, MD_VW) // vloadMD_VW

float pclip_hsum(MD_VEC v) {
#if MD_VW == 16
    float8 e = v.lo + v.hi;
    float4 q = e.lo + e.hi;
#elif MD_VW == 8
    float4 q = v.lo + v.hi;
#else
    float4 q = v;
#endif
    return (q.x + q.y) + (q.z + q.w);
}

// pclip__matmul_params (trans_b = 1 only)
kernel __attribute__((reqd_work_group_size(1, MD_LS, 1))) void
matmul_direct(global const float *a, uint ao, global const float *b, uint bo,
              global const float *bias, uint biaso, global const float *res, uint reso,
              global float *y, uint yo, pclip__matmul_params p) {
    const int M = p.M, N = p.N, K = p.K;
    const int m0 = get_global_id(0) * MD_TM, n0 = get_global_id(1) * MD_TN;
    const size_t bi = get_global_id(2);
    if (n0 >= N || m0 >= M) return; // no barriers here: whole work-items may leave
    global const float *A = a + ao + bi * M * K;
    global const float *B = b + bo + bi * p.b_batch_stride;
    global const float *arow[MD_TM], *brow[MD_TN];
    for (int i = 0; i < MD_TM; i++) arow[i] = A + min(m0 + i, M - 1) * K;
    for (int j = 0; j < MD_TN; j++) brow[j] = B + min(n0 + j, N - 1) * K;
    MD_VEC acc[MD_TM][MD_TN];
    for (int i = 0; i < MD_TM; i++)
        for (int j = 0; j < MD_TN; j++) acc[i][j] = (MD_VEC)(0.0f);
    const int KV = K / MD_VW * MD_VW;
    for (int k = 0; k < KV; k += MD_VW) {
        MD_VEC av[MD_TM], bv[MD_TN];
        for (int i = 0; i < MD_TM; i++) av[i] = MD_LOAD(0, arow[i] + k);
        for (int j = 0; j < MD_TN; j++) bv[j] = MD_LOAD(0, brow[j] + k);
        for (int i = 0; i < MD_TM; i++)
            for (int j = 0; j < MD_TN; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
    }
    float sum[MD_TM][MD_TN];
    for (int i = 0; i < MD_TM; i++)
        for (int j = 0; j < MD_TN; j++) sum[i][j] = pclip_hsum(acc[i][j]);
    for (int k = KV; k < K; k++)
        for (int i = 0; i < MD_TM; i++)
            for (int j = 0; j < MD_TN; j++) sum[i][j] = fma(arow[i][k], brow[j][k], sum[i][j]);
    global float *Y = y + yo + bi * M * N;
    global const float *R = res + reso + bi * M * N;
    for (int i = 0; i < MD_TM; i++) {
        const int m = m0 + i;
        if (m >= M) break;
        for (int j = 0; j < MD_TN; j++) {
            const int n = n0 + j;
            if (n >= N) break;
            float v = sum[i][j];
            if (p.has_bias) v += bias[biaso + n];
            v = pclip_act(p.act, v);
            if (p.has_residual) v += R[m * N + n];
            Y[m * N + n] = v;
        }
    }
}
