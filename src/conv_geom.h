/* conv_geom.h: the type- and ISA-independent description of one "gather convolution".
 *
 * Forward convolution, its input gradient (per stride phase) and transposed convolution are all the
 * same computation: every output pixel (n, oy, ox) of a grid gathers taps from an input tensor
 *
 *     out[n, oy, ox, g*Ko + k] = sum_{tap (i, j), c < Cr} In[n, oy*ay + by[i], ox*ax + bx[j], g*Cr + c]
 *                                                      * W[ky[i], kx[j], g, c, k]          (+ bias)
 *
 * with taps whose input position falls outside In contributing zero (that is the padding).  The
 * output grid may be a strided sub-grid of the output tensor (the stride phases of an input
 * gradient), so its pixel address is
 *
 *     ((n*out_H + oy0 + oy*out_ay) * out_W + ox0 + ox*out_ax) * OPS
 *
 * (OPS = OCt, or the channel count of a wider tensor whose channel slice the output is).
 */
#ifndef FC_CONV_GEOM_H
#define FC_CONV_GEOM_H

#define FC_MAXT 64      /* taps per axis: kernel extent limit checked in Python */
#define FC_RB 6         /* output pixels per register tile (see conv_impl.h for the budget) */

/* (run length KW*Cr, pixel stride ax*Cr) of the few-channel rows compiled with constants (fc_rowk in
 * conv_impl.h): 3x3, 5x5 and 7x7 kernels on 1-4 channels at stride 1 and 2. */
#define FC_ROWK_SHAPES(X) \
    X(3, 1) X(3, 2) X(6, 2) X(6, 4) X(9, 3) X(9, 6) X(12, 4) X(12, 8) \
    X(5, 1) X(5, 2) X(15, 3) X(15, 6) X(7, 1) X(7, 2) X(21, 3) X(21, 6)

static inline int fc_rowk_shape(int cr, int ps)
{
#define FC_ROWK_IS(c, s) if (cr == (c) && ps == (s)) return 1;
    FC_ROWK_SHAPES(FC_ROWK_IS)
#undef FC_ROWK_IS
    return 0;
}

typedef struct {
    int N, IH, IW, ICt;           /* input tensor In[N][IH][IW][ICt] */
    int OH, OW;                   /* output grid computed by this call */
    int out_H, out_W, OCt;        /* output tensor extent and channel count */
    int OPS;                      /* output pixel stride in elements: OCt, or more when the output is a
                                   * channel slice of a wider NHWC tensor (a concatenation's branch) */
    int oy0, ox0, out_ay, out_ax; /* grid -> tensor position */
    int ay, ax;                   /* grid -> input position (stride, or 1 for phases) */
    int nty, ntx;                 /* taps along rows and columns */
    int by[FC_MAXT], bx[FC_MAXT]; /* input offset of each tap */
    int ky[FC_MAXT], kx[FC_MAXT]; /* kernel row/column index of each tap */
    int KH, KW;                   /* kernel extent of the packed weights */
    int G, Cr, Ko;                /* groups, reduced channels per group, output channels per group */
    int relu;                     /* fused ReLU in the epilogue */
    int rowtiles;                 /* tiles never straddle output rows (wide maps) */
    int mergex;                   /* column taps are kernel columns 0..KW-1 at consecutive input columns */
    int rowseg;                   /* each call covers one whole output row, read from a padded copy */
    /* an element-wise activation (FC_EW_* of elementwise_math.h, 0 none) applied to each
     * output pixel right after its tile is stored (while it is in L1), alpha its parameter */
    int act;
    double alpha;
} fc_gconv;

/* Backward-weight problem: dw[kh, kw, c, g*Kg + k] = sum_{n,oh,ow} x[n, ih, iw, g*Cg + c] dy[n, oh, ow, g*Kg + k]
 * with ih = oh*sh - ph + kh*dh, iw = ow*sw - pw + kw*dw. */
typedef struct {
    int N, H, W, C;
    int OH, OW, K;
    int KH, KW, sh, sw, ph, pw, dh, dw;
    int G, Cg, Kg;
    int planar;                   /* 1: conv_wgrad_planar_impl.h's column-vectorised kernel (few channels) */
    int pair;                     /* 1: group-pair tiles (conv_grouped_impl.h; Kg = one vector, G even) */
} fc_wgrad;

#endif
