/* norm_kernels.h: instantiates norm_impl.h at every element type and SIMD level (fc_instantiate.h
 * lists them) and exposes one entry per operation taking the SIMD level `isa` (chosen per call in
 * Python).
 * Channels past the last full vector take one masked vector (float32 AVX2 / AVX-512) or a scalar loop.
 */
#ifndef FC_NORM_KERNELS_H
#define FC_NORM_KERNELS_H

#include "fc_common.h"

#define FC_IMPL "norm_impl.h"
#include "fc_instantiate.h"

/* ---- float32, SIMD level chosen by `isa` ---- */
static void fc_bn_stats_f32(int isa, const float *x, int C, long r0, long r1, const float *k, double *s1, double *s2)
{
    FC_PICK(isa, fc_bn_stats_rows, x, C, r0, r1, k, s1, s2);
}
static void fc_bn_dsums_f32(int isa, const float *dy, const float *x, const float *y, int act, int C, long r0,
                            long r1, const float *mean, const float *fa, const float *fb, double *s1, double *s2)
{
    FC_PICK(isa, fc_bn_dsums_rows, dy, x, y, act, C, r0, r1, mean, fa, fb, s1, s2);
}
static void fc_bn_affine_f32(int isa, const float *x, const float *mean, const float *a, const float *b, int act,
                             int C, long r0, long r1, float *y)
{
    FC_PICK(isa, fc_bn_affine_rows, x, mean, a, b, act, C, r0, r1, y);
}
static void fc_bn_dx_f32(int isa, const float *dy, const float *x, const float *y, int act, const float *mean,
                         const float *fa, const float *fb,
                         const float *ga, const float *gb, const float *gc, int C, long r0, long r1, float *dx)
{
    FC_PICK(isa, fc_bn_dx_rows, dy, x, y, act, mean, fa, fb, ga, gb, gc, C, r0, r1, dx);
}
static void fc_act_forward_f32(int isa, const float *x, int act, long i0, long i1, float *y)
{
    FC_PICK(isa, fc_act_forward, x, act, i0, i1, y);
}
static void fc_act_backward_f32(int isa, const float *dy, const float *y, int act, long i0, long i1, float *dx)
{
    FC_PICK(isa, fc_act_backward, dy, y, act, i0, i1, dx);
}
static void fc_add_act_f32(int isa, const float *a, const float *b, int act, long i0, long i1, float *y)
{
    FC_PICK(isa, fc_add_act, a, b, act, i0, i1, y);
}

/* ---- float64 (isa ignored) ---- */
static void fc_bn_stats_f64(int isa, const double *x, int C, long r0, long r1, const double *k, double *s1,
                            double *s2)
{
    (void)isa;
    fc_bn_stats_rows_f64_generic(x, C, r0, r1, k, s1, s2);
}
static void fc_bn_dsums_f64(int isa, const double *dy, const double *x, const double *y, int act, int C, long r0,
                            long r1, const double *mean, const double *fa, const double *fb, double *s1, double *s2)
{
    (void)isa;
    fc_bn_dsums_rows_f64_generic(dy, x, y, act, C, r0, r1, mean, fa, fb, s1, s2);
}
static void fc_bn_affine_f64(int isa, const double *x, const double *mean, const double *a, const double *b,
                             int act, int C, long r0, long r1, double *y)
{
    (void)isa;
    fc_bn_affine_rows_f64_generic(x, mean, a, b, act, C, r0, r1, y);
}
static void fc_bn_dx_f64(int isa, const double *dy, const double *x, const double *y, int act, const double *mean,
                         const double *fa, const double *fb,
                         const double *ga, const double *gb, const double *gc, int C, long r0, long r1, double *dx)
{
    (void)isa;
    fc_bn_dx_rows_f64_generic(dy, x, y, act, mean, fa, fb, ga, gb, gc, C, r0, r1, dx);
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
static void fc_add_act_f64(int isa, const double *a, const double *b, int act, long i0, long i1, double *y)
{
    (void)isa;
    fc_add_act_f64_generic(a, b, act, i0, i1, y);
}

#endif /* FC_NORM_KERNELS_H */
