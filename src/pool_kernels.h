/* pool_kernels.h: instantiates pool_impl.h for every element type and SIMD level and exposes one
 * entry per operation taking the SIMD level `isa` (chosen per call in Python).
 *
 *   float32: 1-lane (tiny C), generic (4-wide), AVX2 (8-wide), AVX-512 (16-wide)
 *   float64: 1-lane (tiny C), generic (2-wide)
 * Each level hands channel counts below its vector width to the next narrower one (PL_NARROW).
 */
#ifndef FC_POOL_KERNELS_H
#define FC_POOL_KERNELS_H

#include <stdint.h>
#include "fc_common.h"

/* Geometry of one pooling problem (x (N,H,W,C), y (N,OH,OW,C)). */
typedef struct {
    int N, H, W, C;
    int OH, OW, KH, KW;
    int sh, sw, ph, pw;   /* stride, top/left padding */
    int include_pad;      /* average pooling: divide by KH*KW instead of the real pixel count */
    int stream;           /* write dx with non-temporal stores (large, vector-aligned outputs) */
} fc_poolp;

/* Non-temporal store of one vector (FC_NT(p, v)), chosen per instantiation; plain elsewhere. */
#if FC_X86
#define FC_SFENCE() __builtin_ia32_sfence()
#else
#define FC_SFENCE() ((void)0)
#endif

#define FC_T float
#define FC_IT int32_t
#define FC_VLEN 1
#define FC_SFX _f32_scalar
#include "pool_impl.h"
#undef FC_VLEN
#undef FC_SFX
#if FC_X86
#define FC_NT(p, v) __builtin_ia32_movntps((p), (v))
#define FC_MAXV(a, b) __builtin_ia32_maxps((a), (b))
#define FC_UNORDV(a, b) __builtin_ia32_cmpunordps((a), (b))
#endif

#define FC_VLEN 4
#define FC_SFX _f32_generic
#define PL_NARROW(name) name##_f32_scalar
#include "pool_impl.h"
#undef PL_NARROW
#undef FC_VLEN
#undef FC_SFX
#undef FC_NT
#undef FC_MAXV
#undef FC_UNORDV

#if FC_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FC_VLEN 8
#define FC_SFX _f32_avx2
#define FC_NT(p, v) __builtin_ia32_movntps256((p), (v))
#define FC_MAXV(a, b) __builtin_ia32_maxps256((a), (b))
#define FC_UNORDV(a, b) __builtin_ia32_cmpps256((a), (b), 3 /* _CMP_UNORD_Q */)
#define PL_NARROW(name) name##_f32_generic
#include "pool_impl.h"
#undef PL_NARROW
#undef FC_VLEN
#undef FC_SFX
#undef FC_NT
#undef FC_MAXV
#undef FC_UNORDV
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define FC_VLEN 16
#define FC_SFX _f32_avx512
#define FC_NT(p, v) __builtin_ia32_movntps512((p), (v))
#define FC_MAXV(a, b) __builtin_ia32_maxps512_mask((a), (b), (a), (unsigned short)0xFFFF, 4)
#define PL_NARROW(name) name##_f32_avx2
#include "pool_impl.h"
#undef PL_NARROW
#undef FC_VLEN
#undef FC_SFX
#undef FC_NT
#undef FC_MAXV
#undef FC_UNORDV
#pragma GCC pop_options
#endif
#undef FC_T
#undef FC_IT

#define FC_T double
#define FC_IT int64_t
#define FC_VLEN 1
#define FC_SFX _f64_scalar
#include "pool_impl.h"
#undef FC_VLEN
#undef FC_SFX
#define FC_VLEN 2
#define FC_SFX _f64_generic
#define PL_NARROW(name) name##_f64_scalar
#if FC_X86
#define FC_NT(p, v) __builtin_ia32_movntpd((p), (v))
#define FC_MAXV(a, b) __builtin_ia32_maxpd((a), (b))
#define FC_UNORDV(a, b) __builtin_ia32_cmpunordpd((a), (b))
#endif
#include "pool_impl.h"
#undef FC_NT
#undef FC_MAXV
#undef FC_UNORDV
#undef PL_NARROW
#undef FC_VLEN
#undef FC_SFX
#undef FC_T
#undef FC_IT

#ifndef FC_PICK
#if FC_X86
#define FC_PICK(isa, name, ...)                                                        \
    ((isa) == FC_ISA_AVX512 ? name##_f32_avx512(__VA_ARGS__)                           \
     : (isa) == FC_ISA_AVX2 ? name##_f32_avx2(__VA_ARGS__) : name##_f32_generic(__VA_ARGS__))
#else
#define FC_PICK(isa, name, ...) name##_f32_generic(__VA_ARGS__)
#endif
#endif

/* Work units of the backward kernels: output rows (N*OH) for the fused pass over non-overlapping
 * windows, else dx rows (N*H); a saved argmax always uses dx rows. */
/* Vector width in bytes of a level (alignment the non-temporal stores need). */
static int fc_pool_vector_bytes(int isa) { return isa == FC_ISA_AVX512 ? 64 : isa == FC_ISA_AVX2 ? 32 : 16; }

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
