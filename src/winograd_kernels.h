/* winograd_kernels.h: instantiates winograd_impl.h at every element type and SIMD level
 * (fc_instantiate.h) and exposes one entry per operation taking the SIMD level (chosen in Python).
 */
#ifndef FC_WINOGRAD_KERNELS_H
#define FC_WINOGRAD_KERNELS_H

#include "fc_common.h"

#define FC_WINO_RB 6  /* tile rows of the GEMM register tile (6 rows x 2 vectors, as conv_impl.h) */

/* One Winograd F(m x m, 3x3) convolution (winograd_impl.h): input (N, IH, IW, C), output
 * (N, OH, OW, K), input row of output row oy at oy - pt (columns: ox - pl); th x tw tiles of m x m
 * output pixels per image.  Every field is checked against the int geometry by the op. */
typedef struct {
    int N, IH, IW, C;
    int OH, OW, K;
    int pt, pl;
    int m;          /* 4: F(4x4, 3x3), 2: F(2x2, 3x3) */
    int th, tw;     /* tiles per image column and row: ceil(OH / m), ceil(OW / m) */
    int relu;
} fc_wino;

#define FC_IMPL "winograd_impl.h"
#include "fc_instantiate.h"

/* ---- float32, SIMD level chosen by `isa` ---- */
static int fc_wino_block_f32(int isa) { return FC_PICK(isa, fc_wino_block); }
static size_t fc_wino_scratch_f32(int isa, const fc_wino *p, int TB) { return FC_PICK(isa, fc_wino_scratch_bytes, p, TB); }
static void fc_wino_tiles_f32(int isa, const fc_wino *p, const float *in, const float *U, const float *bias,
                              float *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    FC_PICK(isa, fc_wino_tiles, p, in, U, bias, out, t0, t1, TB, scratch);
}

/* ---- float64 (isa ignored) ---- */
static int fc_wino_block_f64(int isa) { (void)isa; return fc_wino_block_f64_generic(); }
static size_t fc_wino_scratch_f64(int isa, const fc_wino *p, int TB) { (void)isa; return fc_wino_scratch_bytes_f64_generic(p, TB); }
static void fc_wino_tiles_f64(int isa, const fc_wino *p, const double *in, const double *U, const double *bias,
                              double *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    (void)isa;
    fc_wino_tiles_f64_generic(p, in, U, bias, out, t0, t1, TB, scratch);
}

#endif
