/* conv_kernels.h: instantiates conv_impl.h at every element type and SIMD level (fc_instantiate.h
 * lists them), and exposes one entry per operation that takes the SIMD level as an argument
 * (chosen once per call in Python).
 */
#ifndef FC_CONV_KERNELS_H
#define FC_CONV_KERNELS_H

#include "fc_common.h"
#include "conv_geom.h"

#define FC_IMPL "conv_impl.h"
#include "fc_instantiate.h"

/* ---- float32, SIMD level chosen by `isa` ---- */
static int fc_block_f32(int isa) { return FC_PICK(isa, fc_block); }
static void fc_pack_f32(int isa, const float *src, int KH, int KW, int G, int Cr, int Ko, ptrdiff_t s_kh,
                        ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko, float *dst)
{
    FC_PICK(isa, fc_pack, src, KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, dst);
}
static size_t fc_gconv_scratch_f32(int isa, const fc_gconv *p, int TB) { return FC_PICK(isa, fc_gconv_scratch_bytes, p, TB); }
static void fc_gconv_tiles_f32(int isa, const fc_gconv *p, const float *in, const float *wp, const float *bias,
                               float *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    FC_PICK(isa, fc_gconv_tiles, p, in, wp, bias, out, t0, t1, TB, scratch);
}
static size_t fc_wgrad_scratch_f32(int isa, const fc_wgrad *p, int RBLK) { return FC_PICK(isa, fc_wgrad_scratch_bytes, p, RBLK); }
static void fc_wgrad_rows_f32(int isa, const fc_wgrad *p, const float *x, const float *dy, ptrdiff_t r0, ptrdiff_t r1,
                              int RBLK, float *dw, float *db, char *scratch)
{
    FC_PICK(isa, fc_wgrad_rows, p, x, dy, r0, r1, RBLK, dw, db, scratch);
}

/* Narrow-output gather convolution (conv_narrow_impl.h); work units depend on geometry only. */
static ptrdiff_t fc_nk_count(const fc_gconv *p) { return fc_nk_units_f32_generic(p); }
static int fc_nk_vlen_f32(int isa) { return FC_PICK(isa, fc_nk_vlen); }
static size_t fc_nk_wsize_f32(int isa, int KH, int KW, int G, int Cr, int Ko) { return FC_PICK(isa, fc_nk_wsize, KH, KW, G, Cr, Ko); }
static void fc_nk_pack_f32(int isa, const float *src, int KH, int KW, int G, int Cr, int Ko, ptrdiff_t s_kh,
                           ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko, float *dst)
{
    FC_PICK(isa, fc_nk_pack, src, KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, dst);
}
static size_t fc_nk_scratch_f32(int isa, const fc_gconv *p) { return FC_PICK(isa, fc_nk_scratch_bytes, p); }
static void fc_nk_run_f32(int isa, const fc_gconv *p, const float *in, const float *wn, const float *bias,
                            float *out, ptrdiff_t u0, ptrdiff_t u1, char *scratch)
{
    FC_PICK(isa, fc_nk_units_run, p, in, wn, bias, out, u0, u1, scratch);
}

/* Group-pair tile of grouped convolutions (conv_grouped_impl.h). */
static size_t fc_gp_scratch_f32(int isa, const fc_gconv *p, int TB) { return FC_PICK(isa, fc_gp_scratch_bytes, p, TB); }
static void fc_gp_tiles_f32(int isa, const fc_gconv *p, const float *in, const float *wp, const float *bias,
                            float *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    FC_PICK(isa, fc_gp_tiles, p, in, wp, bias, out, t0, t1, TB, scratch);
}

/* ---- float64 (isa ignored) ---- */
static int fc_block_f64(int isa) { (void)isa; return fc_block_f64_generic(); }
static void fc_pack_f64(int isa, const double *src, int KH, int KW, int G, int Cr, int Ko, ptrdiff_t s_kh,
                        ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko, double *dst)
{
    (void)isa;
    fc_pack_f64_generic(src, KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, dst);
}
static size_t fc_gconv_scratch_f64(int isa, const fc_gconv *p, int TB) { (void)isa; return fc_gconv_scratch_bytes_f64_generic(p, TB); }
static void fc_gconv_tiles_f64(int isa, const fc_gconv *p, const double *in, const double *wp, const double *bias,
                               double *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    (void)isa;
    fc_gconv_tiles_f64_generic(p, in, wp, bias, out, t0, t1, TB, scratch);
}
static size_t fc_wgrad_scratch_f64(int isa, const fc_wgrad *p, int RBLK) { (void)isa; return fc_wgrad_scratch_bytes_f64_generic(p, RBLK); }
static void fc_wgrad_rows_f64(int isa, const fc_wgrad *p, const double *x, const double *dy, ptrdiff_t r0, ptrdiff_t r1,
                              int RBLK, double *dw, double *db, char *scratch)
{
    (void)isa;
    fc_wgrad_rows_f64_generic(p, x, dy, r0, r1, RBLK, dw, db, scratch);
}

static int fc_nk_vlen_f64(int isa) { (void)isa; return fc_nk_vlen_f64_generic(); }
static size_t fc_nk_wsize_f64(int isa, int KH, int KW, int G, int Cr, int Ko)
{
    (void)isa;
    return fc_nk_wsize_f64_generic(KH, KW, G, Cr, Ko);
}
static void fc_nk_pack_f64(int isa, const double *src, int KH, int KW, int G, int Cr, int Ko, ptrdiff_t s_kh,
                           ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko, double *dst)
{
    (void)isa;
    fc_nk_pack_f64_generic(src, KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, dst);
}
static size_t fc_nk_scratch_f64(int isa, const fc_gconv *p) { (void)isa; return fc_nk_scratch_bytes_f64_generic(p); }
static void fc_nk_run_f64(int isa, const fc_gconv *p, const double *in, const double *wn, const double *bias,
                            double *out, ptrdiff_t u0, ptrdiff_t u1, char *scratch)
{
    (void)isa;
    fc_nk_units_run_f64_generic(p, in, wn, bias, out, u0, u1, scratch);
}

static size_t fc_gp_scratch_f64(int isa, const fc_gconv *p, int TB) { (void)isa; return fc_gp_scratch_bytes_f64_generic(p, TB); }
static void fc_gp_tiles_f64(int isa, const fc_gconv *p, const double *in, const double *wp, const double *bias,
                            double *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    (void)isa;
    fc_gp_tiles_f64_generic(p, in, wp, bias, out, t0, t1, TB, scratch);
}

#endif
