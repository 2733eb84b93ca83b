/* Compiles the SIMD half of a kernel file once per SIMD level.
 *
 * A kernel file with fast kernels defines PCLIP_SIMD_FILE as its own name and
 * includes this header; the file is then included again three times with
 * PCLIP_SIMD_LEVEL set (0 scalar, 1 AVX2+FMA, 2 AVX-512) and the matching
 * target attribute on every function, so the build needs no -march flag and
 * the level is picked at run time. In those passes the file sees the vector
 * vocabulary of simd.h (vf, VL, vload, vfma, vexp, ...) and names its
 * functions SIMD(name), which become name_scalar, name_avx2, name_avx512.
 * Threading (OpenMP) stays outside these passes, in plain functions that
 * call the per-level ones. */

#ifndef PCLIP_SIMD_FILE
#error "define PCLIP_SIMD_FILE before including simd_foreach.h"
#endif

#include <immintrin.h>

/* ---- scalar ---- */
#define PCLIP_SIMD_LEVEL 0
#include "simd.h"
#include PCLIP_SIMD_FILE
#include "simd_end.h"
#undef PCLIP_SIMD_LEVEL

/* ---- AVX2 + FMA ---- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define PCLIP_SIMD_LEVEL 1
#include "simd.h"
#include PCLIP_SIMD_FILE
#include "simd_end.h"
#undef PCLIP_SIMD_LEVEL
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* ---- AVX-512F ---- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif
#define PCLIP_SIMD_LEVEL 2
#include "simd.h"
#include PCLIP_SIMD_FILE
#include "simd_end.h"
#undef PCLIP_SIMD_LEVEL
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#undef PCLIP_SIMD_FILE

/* The per-level variants of `name` in level order, for a dispatch table. */
#define PCLIP_SIMD_VARIANTS(name)                                                                  \
    { name##_scalar, name##_avx2, name##_avx512 }
