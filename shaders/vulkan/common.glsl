// Shared helpers for the Vulkan compute shaders: exp and erf as accurate as
// the CPU's (GLSL's exp() may be off by 3 + 2|x| ulp and it has no erf), the
// activations, the 2-D workgroup grid, and workgroup reductions.
//
// Conventions of every shader (backends/vulkan/vk.h has the C side):
//   - one descriptor-set layout: bindings 0..5 the op's sources in order
//     (inputs first), binding 6 its result (outputs last); an op that writes
//     a source in place (its result is that source) writes through the
//     source's binding;
//   - the push-constant block mirrors the op's pclip__<op>_params in
//     core/graph/graph.h field for field;
//   - the workgroup size is specialization constant 0 (local_size_x_id,
//     declared here); shaders read it as PCLIP_LS, never as
//     gl_WorkGroupSize.x in an expression (glslang folds that to the
//     default size);
//   - grids wider than 65535 workgroups fold into y: pclip_group_index().
// This file does not declare bindings or push constants.

#extension GL_EXT_control_flow_attributes : enable
#if defined(USE_SUBGROUP) && USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
#if defined(SG) && SG
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_ballot : enable
#endif

#define PCLIP_BINDING_DST 6

layout(local_size_x_id = 0) in;
const uint PCLIP_LS = gl_WorkGroupSize.x; // an OpSpecConstantOp: specialized

// ---- grid ----

// The linear workgroup index of a (gx, gy) grid.
uint pclip_group_index() {
    return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
}

// The linear invocation index of a 1-D problem folded into (gx, gy) groups.
uint pclip_global_index() {
    return pclip_group_index() * PCLIP_LS + gl_LocalInvocationID.x;
}

// ---- math ----

// e^x: Cephes expf (x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial), as the
// CPU backend's vexp (max relative error ~1e-7). 2^n is applied as two exact
// power-of-two factors so that overflow gives +inf and underflow 0, as IEEE
// arithmetic does; NaN goes through.
float pclip_exp(float x) {
    if (isnan(x)) return x;
    x = clamp(x, -110.0, 89.0);
    float n = roundEven(x * 1.44269504088896341);
    float r = fma(n, -0.693359375, x); // ln2 in two parts: n * hi is exact
    r = fma(n, 2.12194440e-4, r);
    float p = 1.9875691500e-4;
    p = fma(p, r, 1.3981999507e-3);
    p = fma(p, r, 8.3334519073e-3);
    p = fma(p, r, 4.1665795894e-2);
    p = fma(p, r, 1.6666665459e-1);
    p = fma(p, r, 5.0000001201e-1);
    float y = fma(p, r * r, r) + 1.0;
    int ni = int(n), n1 = ni / 2, n2 = ni - n1; // each in [-80, 65]: a normal float
    return y * intBitsToFloat((n1 + 127) << 23) * intBitsToFloat((n2 + 127) << 23);
}

// erf(x): N. Juffa's branch-free erff (minimax polynomials, 1 - e^poly for
// |x| > 0.9277), as the CPU backend's verf: max relative error ~1e-7;
// erf(+-inf) = +-1, erf(NaN) = NaN.
float pclip_erf(float x) {
    float t = abs(x), s = x * x;
    float r = fma(-1.72853470e-5, t, 3.83197126e-4);
    float u = fma(-3.88396438e-3, t, 2.42546219e-2);
    r = fma(r, s, u);
    r = fma(r, t, -1.06777877e-1);
    r = fma(r, t, -6.34846687e-1);
    r = fma(r, t, -1.28717512e-1);
    r = fma(r, t, -t);
    float big = 1.0 - pclip_exp(r);
    big = x < 0.0 ? -big : big;
    float q = -5.96761703e-4;
    q = fma(q, s, 4.99119423e-3);
    q = fma(q, s, -2.67681349e-2);
    q = fma(q, s, 1.12819925e-1);
    q = fma(q, s, -3.76125336e-1);
    q = fma(q, s, 1.28379166e-1);
    q = fma(q, x, x);
    return t > 0.927734375 ? big : q;
}

// pclip__act_kind: 0 none, 1 quick_gelu, 2 gelu (erf), 3 gelu_tanh
float pclip_act(int kind, float x) {
    if (kind == 1) // x * sigmoid(1.702 x)
        return x / (1.0 + pclip_exp(-1.702 * x));
    if (kind == 2) // 0.5 x (1 + erf(x / sqrt 2))
        return 0.5 * x * (1.0 + pclip_erf(x * 0.70710678118654752));
    if (kind == 3) { // 0.5 x (1 + tanh u) = x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3)
        float u = fma(0.044715 * x * x, x, x);
        return x / (1.0 + pclip_exp(-2.0 * 0.79788456080286536 * u));
    }
    return x;
}

// ---- workgroup reductions ----
// A shader that defines PCLIP_REDUCE gets pclip_sum() and pclip_max() over
// the whole workgroup; every invocation must call them (they hold barriers)
// and every invocation gets the result. USE_SUBGROUP=1 reduces within each
// subgroup first (GL_KHR_shader_subgroup_arithmetic, chosen only when the
// device reports it for compute); USE_SUBGROUP=0 is a shared-memory tree and
// needs a power-of-two workgroup size.
#ifdef PCLIP_REDUCE
shared float pclip_red[PCLIP_LS];

float pclip_add_(float a, float b) { return a + b; }

#if USE_SUBGROUP
#define PCLIP_REDUCER(name, sg_op, op)                                   \
    float name(float v) {                                                \
        v = sg_op(v);                                                    \
        barrier(); /* pclip_red may still be read by the last call */    \
        if (subgroupElect()) pclip_red[gl_SubgroupID] = v;               \
        barrier();                                                       \
        float r = pclip_red[0];                                          \
        for (uint i = 1; i < gl_NumSubgroups; i++) r = op(r, pclip_red[i]); \
        return r;                                                        \
    }
PCLIP_REDUCER(pclip_sum, subgroupAdd, pclip_add_)
PCLIP_REDUCER(pclip_max, subgroupMax, max)
#else
#define PCLIP_REDUCER(name, sg_op, op)                                   \
    float name(float v) {                                                \
        const uint lid = gl_LocalInvocationID.x;                         \
        barrier(); /* pclip_red may still be read by the last call */    \
        pclip_red[lid] = v;                                              \
        barrier();                                                       \
        for (uint s = PCLIP_LS / 2; s > 0; s >>= 1) {          \
            if (lid < s) pclip_red[lid] = op(pclip_red[lid], pclip_red[lid + s]); \
            barrier();                                                   \
        }                                                                \
        return pclip_red[0];                                             \
    }
PCLIP_REDUCER(pclip_sum, unused, pclip_add_)
PCLIP_REDUCER(pclip_max, unused, max)
#endif
#endif
