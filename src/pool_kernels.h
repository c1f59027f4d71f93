/* pool_kernels.h: instantiates pool_impl.h at every element type and SIMD level, with the 1-lane
 * levels (tiny C) below the generic ones (fc_instantiate.h lists them), and exposes one entry per
 * operation taking the SIMD level `isa` (chosen per call in Python).
 * Each level hands channel counts below its vector width to the next narrower one (PL_NARROW).
 */
#ifndef FC_POOL_KERNELS_H
#define FC_POOL_KERNELS_H

#include "fc_common.h"

/* Geometry of one pooling problem (x (N,H,W,C), y (N,OH,OW,C)). */
typedef struct {
    int N, H, W, C;
    int OH, OW, KH, KW;
    int sh, sw, ph, pw;   /* stride, top/left padding */
    int include_pad;      /* average pooling: divide by KH*KW instead of the real pixel count */
    int dh, dw;           /* dilation: the taps of a window are start + i*d, i in [0, K) */
    int eh, ew;           /* extended ends H + bottom, W + right padding: include_pad counts the taps
                           * of a window before them (ceil mode's last window may pass them) */
    int stream;           /* write dx with non-temporal stores (large, vector-aligned outputs) */
} fc_poolp;

/* 1-lane levels below the generic ones take channel counts under 4 (float32) or 2 (float64). */
#define FC_WITH_SCALAR 1
#define FC_IMPL "pool_impl.h"
#include "fc_instantiate.h"

static int fc_pool_vector_bytes(int isa) { return fc_vector_bytes(isa); }

/* Work units of the backward kernels: output rows (N*OH) for the fused pass over non-overlapping
 * windows, else dx rows (N*H); a saved argmax always uses dx rows. */
static long fc_pool_backward_units(const fc_poolp *p, int saved_argmax)
{
    return saved_argmax ? (long)p->N * p->H : fc_pool_backward_units_f32_generic(p);
}

/* ---- float32, SIMD level chosen by `isa` ---- */
static size_t fc_pool_scratch_f32(int isa, const fc_poolp *p) { (void)isa; return fc_pool_scratch_bytes_f32_generic(p); }
static void fc_maxpool_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, int32_t *am, long r0, long r1)
{
    FC_PICK(isa, fc_maxpool_forward_rows, p, x, y, am, r0, r1);
}
static void fc_maxpool_backward_f32(int isa, const fc_poolp *p, const float *x, const float *dy, const int32_t *am,
                                    float *dx, long r0, long r1, char *scratch)
{
    FC_PICK(isa, fc_maxpool_backward_rows, p, x, dy, am, dx, r0, r1, scratch);
}
static void fc_avgpool_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, long r0, long r1)
{
    FC_PICK(isa, fc_avgpool_forward_rows, p, x, y, r0, r1);
}
static void fc_avgpool_backward_f32(int isa, const fc_poolp *p, const float *dy, float *dx, long r0, long r1, char *scratch)
{
    FC_PICK(isa, fc_avgpool_backward_rows, p, dy, dx, r0, r1, scratch);
}
static void fc_gap_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, long n0, long n1, char *scratch)
{
    FC_PICK(isa, fc_gap_forward, p, x, y, n0, n1, scratch);
}
static void fc_gap_backward_f32(int isa, const fc_poolp *p, const float *dy, float *dx, long r0, long r1)
{
    FC_PICK(isa, fc_gap_backward_rows, p, dy, dx, r0, r1);
}

/* ---- float64 (isa ignored) ---- */
static size_t fc_pool_scratch_f64(int isa, const fc_poolp *p) { (void)isa; return fc_pool_scratch_bytes_f64_generic(p); }
static void fc_maxpool_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, int32_t *am, long r0, long r1)
{
    (void)isa;
    fc_maxpool_forward_rows_f64_generic(p, x, y, am, r0, r1);
}
static void fc_maxpool_backward_f64(int isa, const fc_poolp *p, const double *x, const double *dy, const int32_t *am,
                                    double *dx, long r0, long r1, char *scratch)
{
    (void)isa;
    fc_maxpool_backward_rows_f64_generic(p, x, dy, am, dx, r0, r1, scratch);
}
static void fc_avgpool_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, long r0, long r1)
{
    (void)isa;
    fc_avgpool_forward_rows_f64_generic(p, x, y, r0, r1);
}
static void fc_avgpool_backward_f64(int isa, const fc_poolp *p, const double *dy, double *dx, long r0, long r1, char *scratch)
{
    (void)isa;
    fc_avgpool_backward_rows_f64_generic(p, dy, dx, r0, r1, scratch);
}
static void fc_gap_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, long n0, long n1, char *scratch)
{
    (void)isa;
    fc_gap_forward_f64_generic(p, x, y, n0, n1, scratch);
}
static void fc_gap_backward_f64(int isa, const fc_poolp *p, const double *dy, double *dx, long r0, long r1)
{
    (void)isa;
    fc_gap_backward_rows_f64_generic(p, dy, dx, r0, r1);
}

#endif
