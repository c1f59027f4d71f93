/* depthwise_kernels.h: instantiates depthwise_impl.h for every element type and SIMD level and
 * exposes one entry per operation taking the SIMD level `isa` (chosen per call in Python).
 *
 *   float32: generic (4-wide), AVX2+FMA (8-wide), AVX-512 (16-wide)
 *   float64: generic only (gradient checks)
 * Each level hands channel counts below its vector width to the next narrower level
 * (DW_NARROW), and the generic level to scalar code.
 */
#ifndef FC_DEPTHWISE_KERNELS_H
#define FC_DEPTHWISE_KERNELS_H

#include "fc_common.h"

/* Geometry of one depthwise problem (x (N,H,W,C), w (KH,KW,C,M), y (N,OH,OW,K=C*M)). */
typedef struct {
    int N, H, W, C, M, K;
    int OH, OW, KH, KW;
    int sh, sw, ph, pw, dh, dw; /* stride, top/left padding, dilation */
    int stream;                 /* write y / dx with non-temporal stores (large, vector-aligned) */
} fc_dwp;

#if FC_X86
#define FC_SFENCE() __builtin_ia32_sfence()
#else
#define FC_SFENCE() ((void)0)
#endif

#define FC_T float
#define FC_VLEN 4
#define FC_SFX _f32_generic
#if FC_X86
#define FC_NT(p, v) __builtin_ia32_movntps((p), (v))
#endif
#include "depthwise_impl.h"
#undef FC_NT
#undef FC_T
#undef FC_VLEN
#undef FC_SFX

#define FC_T double
#define FC_VLEN 2
#define FC_SFX _f64_generic
#if FC_X86
#define FC_NT(p, v) __builtin_ia32_movntpd((p), (v))
#endif
#include "depthwise_impl.h"
#undef FC_NT
#undef FC_T
#undef FC_VLEN
#undef FC_SFX

#if FC_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FC_T float
#define FC_VLEN 8
#define FC_SFX _f32_avx2
#define DW_NARROW(name) name##_f32_generic
#define FC_NT(p, v) __builtin_ia32_movntps256((p), (v))
#include "depthwise_impl.h"
#undef FC_NT
#undef DW_NARROW
#undef FC_T
#undef FC_VLEN
#undef FC_SFX
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define FC_T float
#define FC_VLEN 16
#define FC_SFX _f32_avx512
#define DW_NARROW(name) name##_f32_avx2
#define FC_NT(p, v) __builtin_ia32_movntps512((p), (v))
#include "depthwise_impl.h"
#undef FC_NT
#undef DW_NARROW
#undef FC_T
#undef FC_VLEN
#undef FC_SFX
#pragma GCC pop_options
#endif

#ifndef FC_PICK
#if FC_X86
#define FC_PICK(isa, name, ...)                                                        \
    ((isa) == FC_ISA_AVX512 ? name##_f32_avx512(__VA_ARGS__)                           \
     : (isa) == FC_ISA_AVX2 ? name##_f32_avx2(__VA_ARGS__) : name##_f32_generic(__VA_ARGS__))
#else
#define FC_PICK(isa, name, ...) name##_f32_generic(__VA_ARGS__)
#endif
#endif

/* Vector width in bytes of a level (alignment the non-temporal stores need). */
static int fc_dw_vector_bytes(int isa) { return isa == FC_ISA_AVX512 ? 64 : isa == FC_ISA_AVX2 ? 32 : 16; }

/* ---- float32, SIMD level chosen by `isa` ---- */
static size_t fc_dw_scratch_f32(int isa, const fc_dwp *p)
{
    (void)isa;
    return fc_dw_scratch_bytes_f32_generic(p); /* layout does not depend on the level */
}
static void fc_dw_forward_f32(int isa, const fc_dwp *p, const float *x, const float *w, const float *bias,
                              float *y, ptrdiff_t r0, ptrdiff_t r1, char *scratch)
{
    FC_PICK(isa, fc_dw_forward_rows, p, x, w, bias, y, r0, r1, scratch);
}
static void fc_dw_backward_input_f32(int isa, const fc_dwp *p, const float *dy, const float *w, float *dx,
                                     ptrdiff_t r0, ptrdiff_t r1, char *scratch)
{
    FC_PICK(isa, fc_dw_backward_input_rows, p, dy, w, dx, r0, r1, scratch);
}
static void fc_dw_backward_weight_f32(int isa, const fc_dwp *p, const float *x, const float *dy, ptrdiff_t r0, ptrdiff_t r1,
                                      float *dwp, float *dbp, char *scratch)
{
    FC_PICK(isa, fc_dw_backward_weight_rows, p, x, dy, r0, r1, dwp, dbp, scratch);
}

/* Input and weight gradient together, by blocks b = (n, block of BR dy rows) in [b0, b1): the dw
 * rows of the block, then (dx != NULL) the dx rows of the same image from oh0*sh to oh1*sh (the
 * first block of an image starts at 0, the last ends at H), so the dy rows one pass reads are
 * still in cache for the other.  dwp/dbp: the calling thread's partials. */
#define FC_DW_BLOCKS(SFX, T)                                                                          \
    static void fc_dw_backward_blocks_##SFX(int isa, const fc_dwp *p, const T *x, const T *dy, const T *w, \
                                            T *dx, ptrdiff_t b0, ptrdiff_t b1, int BR, T *dwp, T *dbp,   \
                                            char *scratch)                                           \
    {                                                                                                \
        /* OH + BR - 1 and oh0 + BR may pass INT_MAX when OH is near it (BR is up to 24576), so */   \
        /* block bounds are formed in 64-bit; they end up <= OH and fit an int again */              \
        const ptrdiff_t nbi = ((ptrdiff_t)p->OH + BR - 1) / BR;                                      \
        for (ptrdiff_t b = b0; b < b1; b++) {                                                        \
            const ptrdiff_t n = b / nbi, blk = b - n * nbi, oh0 = blk * BR;                          \
            const ptrdiff_t oh1 = oh0 + BR < p->OH ? oh0 + BR : p->OH;                               \
            fc_dw_backward_weight_##SFX(isa, p, x, dy, n * p->OH + oh0, n * p->OH + oh1, dwp, dbp, scratch); \
            if (dx) {                                                                                \
                const ptrdiff_t ih0 = blk == 0 ? 0 : (oh0 * p->sh > p->H ? p->H : oh0 * p->sh);     \
                const ptrdiff_t ih1 = blk == nbi - 1 ? p->H : (oh1 * p->sh > p->H ? p->H : oh1 * p->sh); \
                if (ih1 > ih0)                                                                       \
                    fc_dw_backward_input_##SFX(isa, p, dy, w, dx, n * p->H + ih0, n * p->H + ih1, scratch); \
            }                                                                                        \
        }                                                                                            \
    }
/* ---- float64 (isa ignored) ---- */
static size_t fc_dw_scratch_f64(int isa, const fc_dwp *p)
{
    (void)isa;
    return fc_dw_scratch_bytes_f64_generic(p);
}
static void fc_dw_forward_f64(int isa, const fc_dwp *p, const double *x, const double *w, const double *bias,
                              double *y, ptrdiff_t r0, ptrdiff_t r1, char *scratch)
{
    (void)isa;
    fc_dw_forward_rows_f64_generic(p, x, w, bias, y, r0, r1, scratch);
}
static void fc_dw_backward_input_f64(int isa, const fc_dwp *p, const double *dy, const double *w, double *dx,
                                     ptrdiff_t r0, ptrdiff_t r1, char *scratch)
{
    (void)isa;
    fc_dw_backward_input_rows_f64_generic(p, dy, w, dx, r0, r1, scratch);
}
static void fc_dw_backward_weight_f64(int isa, const fc_dwp *p, const double *x, const double *dy, ptrdiff_t r0,
                                      ptrdiff_t r1, double *dwp, double *dbp, char *scratch)
{
    (void)isa;
    fc_dw_backward_weight_rows_f64_generic(p, x, dy, r0, r1, dwp, dbp, scratch);
}

FC_DW_BLOCKS(f32, float)
FC_DW_BLOCKS(f64, double)
#undef FC_DW_BLOCKS

#endif
