/* elementwise_kernels.h: instantiates elementwise_impl.h at every element type and SIMD level
 * (fc_instantiate.h lists them) and exposes one entry per loop taking the SIMD level `isa`
 * (chosen per call in Python; float64 has the generic level only).
 */
#ifndef FC_ELEMENTWISE_KERNELS_H
#define FC_ELEMENTWISE_KERNELS_H

#include "fc_common.h"

#define FC_IMPL "elementwise_impl.h"
#include "fc_instantiate.h"

static void fc_ew_f32(int isa, int code, float alpha, const float *x, float *y, ptrdiff_t n)
{
    FC_PICK(isa, fc_ew_span, code, alpha, x, y, n);
}
static void fc_ew_add_f32(int isa, int code, float alpha, const float *x, const float *r, float *y, ptrdiff_t n)
{
    FC_PICK(isa, fc_ew_add_span, code, alpha, x, r, y, n);
}
static void fc_ew_grad_f32(int isa, int code, float alpha, const float *dy, const float *t, float *dx, ptrdiff_t n)
{
    FC_PICK(isa, fc_ew_span_grad, code, alpha, dy, t, dx, n);
}
static void fc_softmax_f32(int isa, const float *x, float *y, ptrdiff_t L, ptrdiff_t r0, ptrdiff_t r1)
{
    FC_PICK(isa, fc_softmax_rows, x, y, L, r0, r1);
}
static void fc_softmax_grad_f32(int isa, const float *dy, const float *y, float *dx, ptrdiff_t L, ptrdiff_t r0, ptrdiff_t r1)
{
    FC_PICK(isa, fc_softmax_grad_rows, dy, y, dx, L, r0, r1);
}

static void fc_ew_f64(int isa, int code, double alpha, const double *x, double *y, ptrdiff_t n)
{
    (void)isa;
    fc_ew_span_f64_generic(code, alpha, x, y, n);
}
static void fc_ew_add_f64(int isa, int code, double alpha, const double *x, const double *r, double *y, ptrdiff_t n)
{
    (void)isa;
    fc_ew_add_span_f64_generic(code, alpha, x, r, y, n);
}
static void fc_ew_grad_f64(int isa, int code, double alpha, const double *dy, const double *t, double *dx, ptrdiff_t n)
{
    (void)isa;
    fc_ew_span_grad_f64_generic(code, alpha, dy, t, dx, n);
}
static void fc_softmax_f64(int isa, const double *x, double *y, ptrdiff_t L, ptrdiff_t r0, ptrdiff_t r1)
{
    (void)isa;
    fc_softmax_rows_f64_generic(x, y, L, r0, r1);
}
static void fc_softmax_grad_f64(int isa, const double *dy, const double *y, double *dx, ptrdiff_t L, ptrdiff_t r0, ptrdiff_t r1)
{
    (void)isa;
    fc_softmax_grad_rows_f64_generic(dy, y, dx, L, r0, r1);
}

#endif /* FC_ELEMENTWISE_KERNELS_H */
