/* norm_kernels.h: instantiates norm_impl.h for every element type and SIMD level and exposes one
 * entry per operation taking the SIMD level `isa` (chosen per call in Python).
 *
 *   float32: generic (4-wide), AVX2+FMA (8-wide), AVX-512 (16-wide)
 *   float64: generic (2-wide; gradient checks)
 * Channels past the last full vector take a scalar loop in every level.
 */
#ifndef FC_NORM_KERNELS_H
#define FC_NORM_KERNELS_H

#include <stdint.h>
#include "fc_common.h"

#define FC_T float
#define FC_IS_F32 1
#define FC_IT int32_t
#define FC_VLEN 4
#define FC_SFX _f32_generic
#include "norm_impl.h"
#undef FC_VLEN
#undef FC_SFX

#if FC_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FC_VLEN 8
#define FC_SFX _f32_avx2
#include "norm_impl.h"
#undef FC_VLEN
#undef FC_SFX
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define FC_VLEN 16
#define FC_SFX _f32_avx512
#include "norm_impl.h"
#undef FC_VLEN
#undef FC_SFX
#pragma GCC pop_options
#endif
#undef FC_T
#undef FC_IS_F32
#undef FC_IT

#define FC_T double
#define FC_IS_F32 0
#define FC_IT int64_t
#define FC_VLEN 2
#define FC_SFX _f64_generic
#include "norm_impl.h"
#undef FC_VLEN
#undef FC_SFX
#undef FC_T
#undef FC_IS_F32
#undef FC_IT

#if FC_X86
#define NM_PICK(isa, name, ...)                                                        \
    ((isa) == FC_ISA_AVX512 ? name##_f32_avx512(__VA_ARGS__)                           \
     : (isa) == FC_ISA_AVX2 ? name##_f32_avx2(__VA_ARGS__) : name##_f32_generic(__VA_ARGS__))
#else
#define NM_PICK(isa, name, ...) name##_f32_generic(__VA_ARGS__)
#endif

/* ---- float32, SIMD level chosen by `isa` ---- */
static void fc_bn_stats_f32(int isa, const float *x, int C, long r0, long r1, const float *k, double *s1, double *s2)
{
    NM_PICK(isa, fc_bn_stats_rows, x, C, r0, r1, k, s1, s2);
}
static void fc_bn_dsums_f32(int isa, const float *dy, const float *x, const float *y, int act, int C, long r0,
                            long r1, const float *mean, double *s1, double *s2)
{
    NM_PICK(isa, fc_bn_dsums_rows, dy, x, y, act, C, r0, r1, mean, s1, s2);
}
static void fc_bn_affine_f32(int isa, const float *x, const float *mean, const float *a, const float *b, int act,
                             int C, long r0, long r1, float *y)
{
    NM_PICK(isa, fc_bn_affine_rows, x, mean, a, b, act, C, r0, r1, y);
}
static void fc_bn_dx_f32(int isa, const float *dy, const float *x, const float *y, int act, const float *mean,
                         const float *ga, const float *gb, const float *gc, int C, long r0, long r1, float *dx)
{
    NM_PICK(isa, fc_bn_dx_rows, dy, x, y, act, mean, ga, gb, gc, C, r0, r1, dx);
}
static void fc_act_forward_f32(int isa, const float *x, int act, long i0, long i1, float *y)
{
    NM_PICK(isa, fc_act_forward, x, act, i0, i1, y);
}
static void fc_act_backward_f32(int isa, const float *dy, const float *y, int act, long i0, long i1, float *dx)
{
    NM_PICK(isa, fc_act_backward, dy, y, act, i0, i1, dx);
}

/* ---- float64 (isa ignored) ---- */
static void fc_bn_stats_f64(int isa, const double *x, int C, long r0, long r1, const double *k, double *s1,
                            double *s2)
{
    (void)isa;
    fc_bn_stats_rows_f64_generic(x, C, r0, r1, k, s1, s2);
}
static void fc_bn_dsums_f64(int isa, const double *dy, const double *x, const double *y, int act, int C, long r0,
                            long r1, const double *mean, double *s1, double *s2)
{
    (void)isa;
    fc_bn_dsums_rows_f64_generic(dy, x, y, act, C, r0, r1, mean, s1, s2);
}
static void fc_bn_affine_f64(int isa, const double *x, const double *mean, const double *a, const double *b,
                             int act, int C, long r0, long r1, double *y)
{
    (void)isa;
    fc_bn_affine_rows_f64_generic(x, mean, a, b, act, C, r0, r1, y);
}
static void fc_bn_dx_f64(int isa, const double *dy, const double *x, const double *y, int act, const double *mean,
                         const double *ga, const double *gb, const double *gc, int C, long r0, long r1, double *dx)
{
    (void)isa;
    fc_bn_dx_rows_f64_generic(dy, x, y, act, mean, ga, gb, gc, C, r0, r1, dx);
}
static void fc_act_forward_f64(int isa, const double *x, int act, long i0, long i1, double *y)
{
    (void)isa;
    fc_act_forward_f64_generic(x, act, i0, i1, y);
}
static void fc_act_backward_f64(int isa, const double *dy, const double *y, int act, long i0, long i1, double *dx)
{
    (void)isa;
    fc_act_backward_f64_generic(dy, y, act, i0, i1, dx);
}

#endif /* FC_NORM_KERNELS_H */
