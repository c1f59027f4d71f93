/* conv_grouped_impl.h: the group-pair register tile of grouped gather convolutions.
 *
 * Included by conv_impl.h (one element type, one SIMD level; V, VB, LD, ST, BC, FN defined there).
 *
 * The dense tile (fc_ukernel) holds FC_RB pixels x 2 vectors of output channels of ONE group, so a
 * group with Ko = FC_VLEN output channels fills half of it (and the other half is computed for
 * nothing).  Here the two vectors belong to two groups 2g and 2g+1 of FC_VLEN channels each: per
 * reduction step the tile loads one weight vector per group and broadcasts, per pixel, the input
 * value of each vector's own group (vector 1 reads Cr channels further along the pixel), so every
 * lane of every FMA is useful.  Per step: 2 weight loads + 2*FC_RB broadcasts
 * for 2*FC_RB FMAs (the dense tile: 2 + FC_RB).
 *
 * The call's geometry (fc_gconv) describes the PAIRS: p->G pairs, p->Ko = VB output channels per
 * pair (the two groups' outputs are adjacent in the output tensor), p->Cr channels reduced per group;
 * pair g's first group reads input channels [2g*Cr, 2g*Cr + Cr), its second the next Cr.  The
 * weights are packed like a dense block of VB channels (fc_pack with G pairs, Ko = VB): lanes
 * [0, FC_VLEN) the first group's, [FC_VLEN, VB) the second's.  Groups with fewer output channels
 * than FC_VLEN are merged into super-groups of FC_VLEN channels by the caller (block-diagonal
 * weights, fastconv/ops/conv.py) before they come here.
 *
 * Each tile's taps are prepared once (fc_tile_prepare of group 0) and pair g reads them 2*g*Cr
 * channels further: edge taps read `zeros`, a run of ICt + (ntx + 1) * Cr zeros, so that every such
 * offset of it (and the second group's + Cr) is still zeros.
 */

static inline __attribute__((always_inline)) void
FN(fc_gp_ukernel)(const int NP, const int CRC, int ntaps, const FC_T *const *xp, ptrdiff_t coff, const FC_T *w,
                  const ptrdiff_t *woff, int Cr, const FC_T *bias, int relu, FC_T *const *out)
{
    const V z = {0};
    V a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
    V a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
    if (CRC)
        Cr = CRC;
    for (int t = 0; t < ntaps; t++) {
        const FC_T *const *xt = xp + t * FC_RB;
        const FC_T *x0 = xt[0] + coff, *x1 = xt[1] + coff, *x2 = xt[2] + coff, *x3 = xt[3] + coff;
        const FC_T *x4 = xt[4] + coff, *x5 = xt[5] + coff;
        const FC_T *y0 = x0 + Cr, *y1 = x1 + Cr, *y2 = x2 + Cr, *y3 = x3 + Cr, *y4 = x4 + Cr, *y5 = x5 + Cr;
        const FC_T *wq = w + woff[t];
#define FC_GP_STEP                                                                      \
        {                                                                               \
            const V w0 = LD(wq), w1 = LD(wq + FC_VLEN);                                 \
            a00 += BC(x0[c]) * w0; a01 += BC(y0[c]) * w1;                              \
            a10 += BC(x1[c]) * w0; a11 += BC(y1[c]) * w1;                              \
            a20 += BC(x2[c]) * w0; a21 += BC(y2[c]) * w1;                              \
            a30 += BC(x3[c]) * w0; a31 += BC(y3[c]) * w1;                              \
            a40 += BC(x4[c]) * w0; a41 += BC(y4[c]) * w1;                              \
            if (NP > 5) { a50 += BC(x5[c]) * w0; a51 += BC(y5[c]) * w1; }              \
            wq += VB;                                                                   \
        }
        if (CRC) {
            /* a compile-time reduction (one vector of channels per group): fully unrolled, every
             * input read at a constant displacement from the pixel's pointer */
#pragma GCC unroll 16
            for (int c = 0; c < CRC; c++)
                FC_GP_STEP
        } else {
#pragma GCC unroll 4
            for (int c = 0; c < Cr; c++)
                FC_GP_STEP
        }
#undef FC_GP_STEP
    }
#define FC_RELU(v) ((V)((__typeof__((v) < z))(v) & ~((v) < z)))  /* as in fc_ukernel */
    V b0 = z, b1 = z;
    if (bias) { b0 = LD(bias); b1 = LD(bias + FC_VLEN); }
#define FC_OUT(q, lo, hi)                                                        \
    if (out[q]) {                                                                \
        V v0 = lo + b0, v1 = hi + b1;                                            \
        if (relu) { v0 = FC_RELU(v0); v1 = FC_RELU(v1); }                        \
        ST(out[q], v0); ST(out[q] + FC_VLEN, v1);                                \
    }
    FC_OUT(0, a00, a01) FC_OUT(1, a10, a11) FC_OUT(2, a20, a21) FC_OUT(3, a30, a31)
    FC_OUT(4, a40, a41)
    if (NP > 5) FC_OUT(5, a50, a51)
#undef FC_OUT
#undef FC_RELU
}

static size_t FN(fc_gp_scratch_bytes)(const fc_gconv *p, int TB)
{
    const size_t ntap = (size_t)p->nty * p->ntx;
    const size_t per_tile = sizeof(FN(fc_tile)) + ntap * FC_RB * sizeof(FC_T *) + ntap * sizeof(ptrdiff_t) + 3 * 64;
    return (size_t)TB * per_tile + ((size_t)p->ICt + ((size_t)p->ntx + 1) * p->Cr) * sizeof(FC_T) + 2 * 64;
}

/* Tiles [t0, t1) of the pair convolution p (see above), TB tiles at a time: each tile's taps are
 * prepared once for all pairs and each pair's packed weights are reused across the TB tiles.  Requires p->Ko == VB, !p->mergex, !p->rowseg. */
static void FN(fc_gp_tiles)(const fc_gconv *p, const FC_T *in, const FC_T *wp, const FC_T *bias,
                            FC_T *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    const ptrdiff_t wblk = (ptrdiff_t)p->KH * p->KW * p->Cr * VB;
    const size_t ntap = (size_t)p->nty * p->ntx, zrun = (size_t)p->ICt + ((size_t)p->ntx + 1) * p->Cr;
    char *cur = scratch;
    FN(fc_tile) *tiles = (FN(fc_tile) *)FN(fc_carve)(&cur, (size_t)TB * sizeof(FN(fc_tile)));
    for (int i = 0; i < TB; i++) {
        tiles[i].xp = (const FC_T **)FN(fc_carve)(&cur, ntap * FC_RB * sizeof(FC_T *));
        tiles[i].woff = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));
        tiles[i].patch = NULL;
    }
    FC_T *zeros = (FC_T *)FN(fc_carve)(&cur, zrun * sizeof(FC_T));
    FN(fc_zero)(zeros, (int)zrun);
    for (ptrdiff_t tb = t0; tb < t1; tb += TB) {
        const int nt = (int)((t1 - tb) < TB ? (t1 - tb) : TB);
        for (int i = 0; i < nt; i++) {
            FN(fc_tile_pixels)(p, out, tb + i, &tiles[i]);
            FN(fc_tile_prepare)(p, in, 0, &tiles[i], zeros);  /* group 0's taps; pair g reads 2*g*Cr further */
        }
        for (int g = 0; g < p->G; g++) {
            const ptrdiff_t coff = (ptrdiff_t)2 * g * p->Cr;
            const FC_T *wb = wp + (ptrdiff_t)g * wblk;
            const int k0 = g * VB;
            const FC_T *bk = bias ? bias + k0 : NULL;
            for (int i = 0; i < nt; i++) {
                const FN(fc_tile) *tl = &tiles[i];
                FC_T *dst[FC_RB];
                for (int q = 0; q < FC_RB; q++)
                    dst[q] = tl->outp[q] ? tl->outp[q] + k0 : NULL;
                if (p->Cr == FC_VLEN) {
                    if (tl->np == 5)
                        FN(fc_gp_ukernel)(5, FC_VLEN, tl->ntaps, tl->xp, coff, wb, tl->woff, p->Cr, bk, p->relu, dst);
                    else
                        FN(fc_gp_ukernel)(FC_RB, FC_VLEN, tl->ntaps, tl->xp, coff, wb, tl->woff, p->Cr, bk, p->relu, dst);
                } else if (tl->np == 5)
                    FN(fc_gp_ukernel)(5, 0, tl->ntaps, tl->xp, coff, wb, tl->woff, p->Cr, bk, p->relu, dst);
                else
                    FN(fc_gp_ukernel)(FC_RB, 0, tl->ntaps, tl->xp, coff, wb, tl->woff, p->Cr, bk, p->relu, dst);
            }
        }
        if (p->act)
            for (int i = 0; i < nt; i++)
                for (int q = 0; q < FC_RB; q++)
                    if (tiles[i].outp[q])
                        FN(fc_ew_span)(p->act, (FC_T)p->alpha, tiles[i].outp[q], tiles[i].outp[q], p->OCt);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Weight gradient with group pairs (p->pair: Kg == FC_VLEN, G even).  fc_wg_tile's 6 reduction
 * rows x 2 vectors, the vectors of groups 2g and 2g+1: dw[kh, kw, c, 2g*Kg + 0..VB) are adjacent,
 * as are dy's channels, and row c of vector 1 broadcasts x channel (2g+1)*Cg + c, Cg after vector
 * 0's.  (The dense tile would run a half-filled block, fc_wg_tile_any, per group.)
 */
static inline __attribute__((always_inline)) void
FN(fc_wgpair_tile)(const int RC, const FC_T *xb, int Cg, ptrdiff_t xrow, ptrdiff_t xpix,
                const FC_T *dyb, ptrdiff_t dyrow, ptrdiff_t dypix,
                const unsigned char *rowok, int nrows, int OW, FC_T *dst, ptrdiff_t dstride)
{
    const V z = {0};
    V a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
    V a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
    for (int r = 0; r < nrows; r++) {
        if (!rowok[r]) continue;
        const FC_T *xp = xb + r * xrow, *xq = xp + Cg;
        const FC_T *dp = dyb + r * dyrow;
        for (int ow = 0; ow < OW; ow++, xp += xpix, xq += xpix, dp += dypix) {
            const V d0 = LD(dp), d1 = LD(dp + FC_VLEN);
            a00 += BC(xp[0]) * d0; a01 += BC(xq[0]) * d1;
            if (RC > 1) { a10 += BC(xp[1]) * d0; a11 += BC(xq[1]) * d1; }
            if (RC > 2) { a20 += BC(xp[2]) * d0; a21 += BC(xq[2]) * d1; }
            if (RC > 3) { a30 += BC(xp[3]) * d0; a31 += BC(xq[3]) * d1; }
            if (RC > 4) { a40 += BC(xp[4]) * d0; a41 += BC(xq[4]) * d1; }
            if (RC > 5) { a50 += BC(xp[5]) * d0; a51 += BC(xq[5]) * d1; }
        }
    }
#define FC_WG_ADD(row, lo, hi) \
    if (RC > row) { FC_T *d_ = dst + row * dstride; ST(d_, LD(d_) + lo); ST(d_ + FC_VLEN, LD(d_ + FC_VLEN) + hi); }
    FC_WG_ADD(0, a00, a01) FC_WG_ADD(1, a10, a11) FC_WG_ADD(2, a20, a21)
    FC_WG_ADD(3, a30, a31) FC_WG_ADD(4, a40, a41) FC_WG_ADD(5, a50, a51)
#undef FC_WG_ADD
}

/* One kernel position (kh, kw) of every pair over the rows of a block: xs = the padded x rows at
 * column offset kw*dw, dwk = dw[kh, kw] (Cg x K). */
static void FN(fc_wgpair_rows)(const fc_wgrad *p, const FC_T *xs, ptrdiff_t xrow, ptrdiff_t xpix,
                             const FC_T *dys, ptrdiff_t dyrow, const unsigned char *rowok, int ns, FC_T *dwk)
{
    const int Cg = p->Cg, K = p->K;
    for (int g = 0; g < p->G; g += 2) {
        const FC_T *xg = xs + (ptrdiff_t)g * Cg, *dg = dys + (ptrdiff_t)g * p->Kg;
        FC_T *dst = dwk + (ptrdiff_t)g * p->Kg;
        for (int f = 0; f < Cg; f += 6) {
            const FC_T *x0 = xg + f;
            FC_T *d0 = dst + (ptrdiff_t)f * K;
            switch (Cg - f < 6 ? Cg - f : 6) {
            case 6: FN(fc_wgpair_tile)(6, x0, Cg, xrow, xpix, dg, dyrow, K, rowok, ns, p->OW, d0, K); break;
            case 5: FN(fc_wgpair_tile)(5, x0, Cg, xrow, xpix, dg, dyrow, K, rowok, ns, p->OW, d0, K); break;
            case 4: FN(fc_wgpair_tile)(4, x0, Cg, xrow, xpix, dg, dyrow, K, rowok, ns, p->OW, d0, K); break;
            case 3: FN(fc_wgpair_tile)(3, x0, Cg, xrow, xpix, dg, dyrow, K, rowok, ns, p->OW, d0, K); break;
            case 2: FN(fc_wgpair_tile)(2, x0, Cg, xrow, xpix, dg, dyrow, K, rowok, ns, p->OW, d0, K); break;
            default: FN(fc_wgpair_tile)(1, x0, Cg, xrow, xpix, dg, dyrow, K, rowok, ns, p->OW, d0, K); break;
            }
        }
    }
}
