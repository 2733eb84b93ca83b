/* The activations on one vector, for SIMD passes (after simd.h): shared by
 * the ACT kernel and the matmul epilogue. Same formulas as act.c's
 * reference, written with simd.h's vexp and verf. No include guard: each
 * SIMD pass of a file includes it once, under its own level's names. */

static inline vf SIMD(act_vec)(int32_t kind, vf x) {
    switch (kind) {
    case PCLIP_ACT_QUICK_GELU: /* x / (1 + e^(-1.702 x)) */
        return vdiv(x, vadd(vset1(1.0f), vexp(vmul(vset1(-1.702f), x))));
    case PCLIP_ACT_GELU: /* 0.5 x (1 + erf(x / sqrt 2)) */
        return vmul(vmul(vset1(0.5f), x),
                    vadd(vset1(1.0f), verf(vmul(x, vset1(0.70710678118654752f)))));
    case PCLIP_ACT_GELU_TANH: { /* x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
        vf inner = vfma(vmul(vset1(0.044715f), vmul(x, x)), x, x);
        vf e = vexp(vmul(vset1(-2.0f * 0.79788456080286536f), inner));
        return vdiv(x, vadd(vset1(1.0f), e));
    }
    default: return x;
    }
}
