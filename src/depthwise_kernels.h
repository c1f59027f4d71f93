/* depthwise_kernels.h: instantiates depthwise_impl.h at every element type and SIMD level
 * (fc_instantiate.h lists them) and exposes one entry per operation taking the SIMD level `isa`
 * (chosen per call in Python).
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

#define FC_IMPL "depthwise_impl.h"
#include "fc_instantiate.h"

static int fc_dw_vector_bytes(int isa) { return fc_vector_bytes(isa); }

/* ---- float32, SIMD level chosen by `isa` ---- */
static size_t fc_dw_scratch_f32(int isa, const fc_dwp *p, int backward)
{
    (void)isa;
    return fc_dw_scratch_bytes_f32_generic(p, backward); /* layout does not depend on the level */
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
static size_t fc_dw_scratch_f64(int isa, const fc_dwp *p, int backward)
{
    (void)isa;
    return fc_dw_scratch_bytes_f64_generic(p, backward);
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
