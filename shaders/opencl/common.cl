// Shared helpers for the OpenCL kernels: exp and erf as accurate as the
// CPU's (OpenCL's exp() may be off by 3 ulp and erf() by 16), the
// activations, work-group reductions, and the op parameter structs.
//
// Conventions of every kernel (backends/opencl/cl.h has the C side):
//   - the program is this file followed by every op file, built once per
//     device at run time (nothing is #included at run time);
//   - arguments: each of the op's sources as (global buffer, element
//     offset), in order, then the result likewise, then the op's parameter
//     struct by value; an op that writes a source in place writes through
//     that source's argument;
//   - the parameter structs below mirror pclip__<op>_params in
//     core/graph/graph.h field for field (4-byte scalars only);
//   - work-group sizes are -D defines set by the dispatch code (which keeps
//     the only copy of each value) and declared with reqd_work_group_size;
//     the #ifndef defaults below only let the file compile on its own.
// FP_CONTRACT is off: a * b + c rounds twice, as the CPU reference does
// (sgd, binary and scale are bit-exact with it).
#pragma OPENCL FP_CONTRACT OFF

#ifndef ELEM_LS
#define ELEM_LS 64 // elementwise and data-movement ops
#endif
#ifndef ROW_LS
#define ROW_LS 64 // layer_norm, softmax, l2_norm, attention: a power of two
#endif
#ifndef TR_TILE
#define TR_TILE 16 // transpose blocks; divides ELEM_LS
#endif
#ifndef SR_COLS
#define SR_COLS 64 // sum_rows columns per work-group; divides ELEM_LS
#endif

// ---- the op parameter structs (core/graph/graph.h) ----

typedef struct {
    int batch, M, N, K, trans_b, b_batch_stride, has_bias, has_residual, act;
} pclip__matmul_params;
typedef struct {
    int ne[4], ne_b[4];
} pclip__binary_params;
typedef struct {
    int n;
    float s;
} pclip__scale_params;
typedef struct {
    int rows, cols;
    float eps;
} pclip__layer_norm_params;
typedef struct {
    int n, kind;
} pclip__act_params;
typedef struct {
    int rows, cols, causal;
    float scale;
} pclip__softmax_params;
typedef struct {
    int batch, seq, heads, head_dim, causal;
    float scale;
} pclip__attention_params;
typedef struct {
    int batch, channels, size, patch;
} pclip__patches_params;
typedef struct {
    int batch, tokens, width;
} pclip__class_concat_params;
typedef struct {
    int rows, cols, table_rows;
} pclip__gather_rows_params;
typedef struct {
    int rows, cols;
    float eps;
} pclip__l2_norm_params;
typedef struct {
    int n;
} pclip__sgd_params;
typedef struct {
    int rows, cols, k;
} pclip__topk_params;
typedef struct {
    int rows, cols;
} pclip__transpose_params;
typedef struct {
    int rows, cols;
} pclip__sum_rows_params;
typedef struct {
    int n, kind;
} pclip__act_grad_params;
typedef struct {
    int rows, cols;
    float eps;
    int mode;
} pclip__layer_norm_grad_params;
typedef struct {
    int rows, cols;
    float eps;
} pclip__l2_norm_grad_params;
typedef struct {
    int n;
} pclip__clip_loss_params;
typedef struct {
    int n, which;
} pclip__clip_loss_grad_params;
typedef struct {
    int n;
    float beta1, beta2, omb1, omb2, eps;
    int has_clamp;
    float clamp_max;
} pclip__adamw_params;

// ---- math ----

// e^x: Cephes expf (x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial), as the
// CPU backend's vexp (max relative error ~1e-7). 2^n is applied as two exact
// power-of-two factors so that overflow gives +inf and underflow 0; NaN goes
// through.
float pclip_exp(float x) {
    if (isnan(x)) return x;
    x = clamp(x, -110.0f, 89.0f);
    float n = rint(x * 1.44269504088896341f);
    float r = fma(n, -0.693359375f, x); // ln2 in two parts: n * hi is exact
    r = fma(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fma(p, r, 1.3981999507e-3f);
    p = fma(p, r, 8.3334519073e-3f);
    p = fma(p, r, 4.1665795894e-2f);
    p = fma(p, r, 1.6666665459e-1f);
    p = fma(p, r, 5.0000001201e-1f);
    float y = fma(p, r * r, r) + 1.0f;
    int ni = (int)n, n1 = ni / 2, n2 = ni - n1; // each in [-80, 65]: a normal float
    return y * as_float((n1 + 127) << 23) * as_float((n2 + 127) << 23);
}

// erf(x): N. Juffa's branch-free erff, as the CPU backend's verf: max
// relative error ~1e-7; erf(+-inf) = +-1, erf(NaN) = NaN.
float pclip_erf(float x) {
    float t = fabs(x), s = x * x;
    float r = fma(-1.72853470e-5f, t, 3.83197126e-4f);
    float u = fma(-3.88396438e-3f, t, 2.42546219e-2f);
    r = fma(r, s, u);
    r = fma(r, t, -1.06777877e-1f);
    r = fma(r, t, -6.34846687e-1f);
    r = fma(r, t, -1.28717512e-1f);
    r = fma(r, t, -t);
    float big = 1.0f - pclip_exp(r);
    big = x < 0.0f ? -big : big;
    float q = -5.96761703e-4f;
    q = fma(q, s, 4.99119423e-3f);
    q = fma(q, s, -2.67681349e-2f);
    q = fma(q, s, 1.12819925e-1f);
    q = fma(q, s, -3.76125336e-1f);
    q = fma(q, s, 1.28379166e-1f);
    q = fma(q, x, x);
    return t > 0.927734375f ? big : q;
}

// pclip_act: 0 none, 1 quick_gelu, 2 gelu (erf), 3 gelu_tanh
float pclip_act(int kind, float x) {
    if (kind == 1) // x * sigmoid(1.702 x)
        return x / (1.0f + pclip_exp(-1.702f * x));
    if (kind == 2) // 0.5 x (1 + erf(x / sqrt 2))
        return 0.5f * x * (1.0f + pclip_erf(x * 0.70710678118654752f));
    if (kind == 3) { // x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3)
        float u = fma(0.044715f * x * x, x, x);
        return x / (1.0f + pclip_exp(-2.0f * 0.79788456080286536f * u));
    }
    return x;
}

// ---- work-group reductions ----
// Over the ROW_LS work-items of a work-group (a power of two), through
// `red` [ROW_LS] in local memory. Every work-item must call them (they hold
// barriers) and every work-item gets the result.

float pclip_sum(local float *red, float v) {
    const int lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE); // red may still be read by the last call
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = ROW_LS / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return red[0];
}

float pclip_max(local float *red, float v) {
    const int lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = ROW_LS / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] = fmax(red[lid], red[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return red[0];
}
