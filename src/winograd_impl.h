/* winograd_impl.h: Winograd F(m x m, 3x3) convolution for ONE element type and ONE SIMD level.
 *
 * Included by winograd_kernels.h through fc_instantiate.h (FC_T, FC_VLEN, FC_SFX as in conv_impl.h),
 * written with GCC vector extensions.  One call computes, for output tiles [t0, t1) of m x m pixels,
 *
 *     out[n, oy, ox, k] = sum_{i, j < 3, c < C} in[n, oy - pt + i, ox - pl + j, c] * w[i, j, c, k] (+ bias)
 *
 * (zeros outside `in`), by Lavin and Gray's algorithm (arXiv 1509.09308): m = 4 (alpha = 6 input
 * tile, 36 products per 16 outputs instead of 144) or m = 2 (alpha = 4, 16 per 4 instead of 36).
 * The input gradient of a 3x3 stride-1 conv is this same computation on dy with the weight rotated
 * by 180 degrees and transposed in (C, K), padding 2 - p (fastconv/ops/winograd.py).
 *
 * Per block of TB tiles (TB a multiple of FC_WINO_RB, the register tile's rows), in the thread's scratch:
 *   1. input transform  V[pos][t][c] = (B^T d B)[pos] of each tile's alpha x alpha input patch,
 *      vectorised over channels (NHWC: C innermost), zeros outside the input;
 *   2. alpha^2 independent GEMMs  M[pos] (TB x Kp) = V[pos] (TB x C) . U[pos] (C x Kp), in the
 *      6-row x 2-vector register tile of the direct kernel (broadcast V, two vectors of U);
 *   3. output transform  y = A^T M A per tile, vectorised over output channels, + bias, optional
 *      ReLU (NaN passes, as in conv_impl.h), stored for the pixels that exist.
 * U (packed by the op): U[pos][kb][c][VB], the transformed weight in blocks of VB = 2*FC_VLEN output
 * channels, zero past K.  TB is chosen (ops/_plan.py wino_plan) so that V and M stay in L2.
 *
 * Index discipline (docs/kernels.md): geometry is int (checked by the op), tile indices, element
 * offsets and scratch sizes are ptrdiff_t / size_t.
 */
#define FC_CAT_(a, b) a##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FN(name) FC_CAT(name, FC_SFX)
#define V FN(fc_wvec)
#define VU FN(fc_wvecu)
#define VB (2 * FC_VLEN)
#define LD(p) (*(const VU *)(p))
#define ST(p, v) (*(VU *)(p) = (v))

typedef FC_T V __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
typedef FC_T VU __attribute__((vector_size(FC_VLEN * sizeof(FC_T)), aligned(sizeof(FC_T)), may_alias));

#if FC_VLEN == 2
#define BC(s) ((V){(s), (s)})
#elif FC_VLEN == 4
#define BC(s) ((V){(s), (s), (s), (s)})
#elif FC_VLEN == 8
#define BC(s) ((V){(s), (s), (s), (s), (s), (s), (s), (s)})
#elif FC_VLEN == 16
#define BC(s) ((V){(s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s)})
#endif

static int FN(fc_wino_block)(void) { return VB; }

/* The weight transform at this level (FC_WINO_TRANSFORM, winograd_kernels.h): double arithmetic,
 * vectorised at this level's width. */
FC_WINO_TRANSFORM(FN(fc_wino_transform4), FC_T, 6, fc_wino_g4)
FC_WINO_TRANSFORM(FN(fc_wino_transform2), FC_T, 4, fc_wino_g2)

static inline int FN(fc_wino_cs)(int C) { return (C + FC_VLEN - 1) / FC_VLEN * FC_VLEN; }
static inline int FN(fc_wino_kp)(int K) { return (K + VB - 1) / VB * VB; }

/* Scratch of one thread: V, M (alpha^2 * TB rows each), the zero row, the padded bias, tile pointers. */
static size_t FN(fc_wino_scratch_bytes)(const fc_wino *p, int TB)
{
    const size_t a2 = (size_t)(p->m + 2) * (p->m + 2);
    const size_t cs = (size_t)FN(fc_wino_cs)(p->C), kp = (size_t)FN(fc_wino_kp)(p->K);
    return (a2 * TB * (cs + kp) + cs + kp) * sizeof(FC_T) + a2 * sizeof(FC_T *) + 6 * 64;
}

static inline char *FN(fc_wino_align)(char *q) { return (char *)(((size_t)q + 63) & ~(size_t)63); }

/* One-dimensional transforms, on named vectors (the compiler keeps them in registers). */
#define WI6(d0, d1, d2, d3, d4, d5, t0, t1, t2, t3, t4, t5)                                             \
    do {                                                                                                \
        const V q4 = BC((FC_T)4), q5 = BC((FC_T)5), q2 = BC((FC_T)2);                                   \
        const V s1 = d4 - q4 * d2, s2 = d3 - q4 * d1, s3 = d4 - d2, s4 = q2 * (d3 - d1);                \
        t0 = q4 * d0 - q5 * d2 + d4;                                                                    \
        t1 = s1 + s2; t2 = s1 - s2;                                                                     \
        t3 = s3 + s4; t4 = s3 - s4;                                                                     \
        t5 = q4 * d1 - q5 * d3 + d5;                                                                    \
    } while (0)
#define WI4(d0, d1, d2, d3, t0, t1, t2, t3)                                                             \
    do { t0 = d0 - d2; t1 = d1 + d2; t2 = d2 - d1; t3 = d1 - d3; } while (0)
#define WO6(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                                                     \
    do {                                                                                                \
        const V q2 = BC((FC_T)2), q4 = BC((FC_T)4), q8 = BC((FC_T)8);                                   \
        const V a = m1 + m2, b = m1 - m2, c = m3 + m4, e = m3 - m4;                                     \
        y0 = m0 + a + c; y1 = b + q2 * e; y2 = a + q4 * c; y3 = b + q8 * e + m5;                        \
    } while (0)
#define WO4(m0, m1, m2, m3, y0, y1)                                                                     \
    do { y0 = m0 + m1 + m2; y1 = m1 - m2 - m3; } while (0)

/* Load VLEN channels from c0 of pixel pointer q, zeros past C (the last, partial block). */
static inline V FN(fc_wino_ld)(const FC_T *q, int c0, int C)
{
    if (c0 + FC_VLEN <= C)
        return LD(q + c0);
#ifdef FC_LD_TAIL
    return (V)FC_LD_TAIL(q + c0, C - c0);  /* one masked load (conv_narrow_impl.h fc_ld_tail) */
#else
    V v = {0};
    for (int l = 0; c0 + l < C; l++)
        v[l] = q[c0 + l];
    return v;
#endif
}

/* Input transform of one tile: xp[alpha*alpha] pixel pointers (the zero row outside the input);
 * V rows of this tile at vt (position stride ps elements). */
static void FN(fc_wino_itrans)(int m, const FC_T *const *xp, int C, int cs, FC_T *vt, ptrdiff_t ps)
{
    if (m == 4) {
        /* In two halves of the column transform's outputs (rows 0-2, then 3-5), each from its own
         * loads: 18 intermediates stay in registers, where all 36 went through the stack (the halves
         * share no subexpression of WI6, so the arithmetic is the same; so is every result's rounding) */
        for (int c0 = 0; c0 < cs; c0 += FC_VLEN) {
#pragma GCC unroll 2
            for (int h = 0; h < 6; h += 3) {
                V t[3][6];
#pragma GCC unroll 6
                for (int j = 0; j < 6; j++) {
                    const V d0 = FN(fc_wino_ld)(xp[0 * 6 + j], c0, C), d1 = FN(fc_wino_ld)(xp[1 * 6 + j], c0, C);
                    const V d2 = FN(fc_wino_ld)(xp[2 * 6 + j], c0, C), d3 = FN(fc_wino_ld)(xp[3 * 6 + j], c0, C);
                    const V d4 = FN(fc_wino_ld)(xp[4 * 6 + j], c0, C), d5 = FN(fc_wino_ld)(xp[5 * 6 + j], c0, C);
                    V e0, e1, e2, e3, e4, e5;
                    WI6(d0, d1, d2, d3, d4, d5, e0, e1, e2, e3, e4, e5);
                    if (h == 0) {
                        t[0][j] = e0; t[1][j] = e1; t[2][j] = e2;
                    } else {
                        t[0][j] = e3; t[1][j] = e4; t[2][j] = e5;
                    }
                }
#pragma GCC unroll 3
                for (int i = 0; i < 3; i++) {
                    V u0, u1, u2, u3, u4, u5;
                    WI6(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], u0, u1, u2, u3, u4, u5);
                    FC_T *o = vt + (ptrdiff_t)((h + i) * 6) * ps + c0;
                    ST(o, u0); ST(o + ps, u1); ST(o + 2 * ps, u2); ST(o + 3 * ps, u3); ST(o + 4 * ps, u4);
                    ST(o + 5 * ps, u5);
                }
            }
        }
    } else {
        for (int c0 = 0; c0 < cs; c0 += FC_VLEN) {
            V t[4][4];
            for (int j = 0; j < 4; j++) {
                const V d0 = FN(fc_wino_ld)(xp[0 * 4 + j], c0, C), d1 = FN(fc_wino_ld)(xp[1 * 4 + j], c0, C);
                const V d2 = FN(fc_wino_ld)(xp[2 * 4 + j], c0, C), d3 = FN(fc_wino_ld)(xp[3 * 4 + j], c0, C);
                WI4(d0, d1, d2, d3, t[0][j], t[1][j], t[2][j], t[3][j]);
            }
            for (int i = 0; i < 4; i++) {
                V u0, u1, u2, u3;
                WI4(t[i][0], t[i][1], t[i][2], t[i][3], u0, u1, u2, u3);
                FC_T *o = vt + (ptrdiff_t)(i * 4) * ps + c0;
                ST(o, u0); ST(o + ps, u1); ST(o + 2 * ps, u2); ST(o + 3 * ps, u3);
            }
        }
    }
}

/* FC_WINO_RB rows of V (stride cs) times one VB-wide block of U (C x VB) into FC_WINO_RB rows of M (stride kp). */
static inline __attribute__((always_inline)) void
FN(fc_wino_ukernel)(const FC_T *v, int cs, int C, const FC_T *u, FC_T *mo, int kp)
{
    const V z = {0};
    V a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
    V a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
    const FC_T *x0 = v, *x1 = v + cs, *x2 = v + 2 * (ptrdiff_t)cs, *x3 = v + 3 * (ptrdiff_t)cs;
    const FC_T *x4 = v + 4 * (ptrdiff_t)cs, *x5 = v + 5 * (ptrdiff_t)cs;
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        const V w0 = LD(u), w1 = LD(u + FC_VLEN);
        V b;
        b = BC(x0[c]); a00 += b * w0; a01 += b * w1;
        b = BC(x1[c]); a10 += b * w0; a11 += b * w1;
        b = BC(x2[c]); a20 += b * w0; a21 += b * w1;
        b = BC(x3[c]); a30 += b * w0; a31 += b * w1;
        b = BC(x4[c]); a40 += b * w0; a41 += b * w1;
        b = BC(x5[c]); a50 += b * w0; a51 += b * w1;
        u += VB;
    }
    ST(mo, a00); ST(mo + FC_VLEN, a01); mo += kp;
    ST(mo, a10); ST(mo + FC_VLEN, a11); mo += kp;
    ST(mo, a20); ST(mo + FC_VLEN, a21); mo += kp;
    ST(mo, a30); ST(mo + FC_VLEN, a31); mo += kp;
    ST(mo, a40); ST(mo + FC_VLEN, a41); mo += kp;
    ST(mo, a50); ST(mo + FC_VLEN, a51);
}

/* The last block of U when it holds at most FC_VLEN real channels (K = 16 or 48 on AVX-512, the
 * zoo's narrow stages): one vector of U instead of two, so no FMA runs on the block's zero half;
 * R rows (12, or 6 at the end) keep enough independent accumulators for the FMA pipes. */
#define FC_WINO_HALF(NAME, R)                                                                       \
static inline __attribute__((always_inline)) void                                                   \
NAME(const FC_T *v, int cs, int C, const FC_T *u, FC_T *mo, int kp)                                 \
{                                                                                                   \
    V acc[R];                                                                                       \
    for (int r = 0; r < R; r++)                                                                     \
        acc[r] = (V){0};                                                                            \
    for (int c = 0; c < C; c++, u += VB) {                                                          \
        const V w0 = LD(u);                                                                         \
        for (int r = 0; r < R; r++)                                                                 \
            acc[r] += BC(v[(ptrdiff_t)r * cs + c]) * w0;                                            \
    }                                                                                               \
    for (int r = 0; r < R; r++)                                                                     \
        ST(mo + (ptrdiff_t)r * kp, acc[r]);                                                         \
}
FC_WINO_HALF(FN(fc_wino_ukernel_h12), 12)
FC_WINO_HALF(FN(fc_wino_ukernel_h6), 6)
#undef FC_WINO_HALF

#define FC_WRELU(v) ((V)((__typeof__((v) < z))(v) & ~((v) < z)))

/* Store VLEN output channels from k0 of one pixel, only the first K - k0 when the block is partial. */
static inline void FN(fc_wino_st)(FC_T *q, int k0, int K, V v)
{
    if (k0 + FC_VLEN <= K) {
        ST(q + k0, v);
        return;
    }
#ifdef FC_ST_TAIL
    FC_ST_TAIL(q + k0, K - k0, v);
#else
    for (int l = 0; k0 + l < K; l++)
        q[k0 + l] = v[l];
#endif
}

/* Output transform of one tile: M rows of this tile at mt (position stride ps elements); out pixel
 * (r, s) of the tile at op[r*m + s] (NULL when past the output's edge). */
static void FN(fc_wino_otrans)(int m, const FC_T *mt, ptrdiff_t ps, int K, int kp, const FC_T *bias, int relu,
                               FC_T *const *op)
{
    const V z = {0};
    for (int k0 = 0; k0 < kp && k0 < K; k0 += FC_VLEN) {
        const V bv = LD(bias + k0);
        if (m == 4) {
            V s[4][6];
            for (int j = 0; j < 6; j++) {
                const FC_T *q = mt + (ptrdiff_t)j * ps + k0;
                WO6(LD(q), LD(q + 6 * ps), LD(q + 12 * ps), LD(q + 18 * ps), LD(q + 24 * ps), LD(q + 30 * ps),
                    s[0][j], s[1][j], s[2][j], s[3][j]);
            }
            for (int r = 0; r < 4; r++) {
                V y[4];
                WO6(s[r][0], s[r][1], s[r][2], s[r][3], s[r][4], s[r][5], y[0], y[1], y[2], y[3]);
                for (int c = 0; c < 4; c++) {
                    if (!op[r * 4 + c])
                        continue;
                    V v = y[c] + bv;
                    if (relu)
                        v = FC_WRELU(v);
                    FN(fc_wino_st)(op[r * 4 + c], k0, K, v);
                }
            }
        } else {
            V s[2][4];
            for (int j = 0; j < 4; j++) {
                const FC_T *q = mt + (ptrdiff_t)j * ps + k0;
                WO4(LD(q), LD(q + 4 * ps), LD(q + 8 * ps), LD(q + 12 * ps), s[0][j], s[1][j]);
            }
            for (int r = 0; r < 2; r++) {
                V y[2];
                WO4(s[r][0], s[r][1], s[r][2], s[r][3], y[0], y[1]);
                for (int c = 0; c < 2; c++) {
                    if (!op[r * 2 + c])
                        continue;
                    V v = y[c] + bv;
                    if (relu)
                        v = FC_WRELU(v);
                    FN(fc_wino_st)(op[r * 2 + c], k0, K, v);
                }
            }
        }
    }
}

/* First output pixel (oy0, ox0) of tile t = (n*th + ty)*tw + tx of image n: phase (ty / thp, tx / twp)
 * of the polyphase split, sub-tile (ty % thp, tx % twp); its pixels are dh (dw) apart (fc_wino).
 * Positions are 64-bit: with a dilation near 2^29 those of pixels past the edge can pass 2^31. */
static inline void FN(fc_wino_origin)(const fc_wino *p, ptrdiff_t g, ptrdiff_t *n, ptrdiff_t *oy0, ptrdiff_t *ox0)
{
    const ptrdiff_t per_img = (ptrdiff_t)p->th * p->tw;
    *n = g / per_img;
    const ptrdiff_t r = g - *n * per_img;
    const int ty = (int)(r / p->tw), tx = (int)(r - (ptrdiff_t)ty * p->tw);
    const int ay = ty / p->thp, ax = tx / p->twp;
    *oy0 = ay + (ptrdiff_t)p->dh * (ty - ay * p->thp) * p->m;
    *ox0 = ax + (ptrdiff_t)p->dw * (tx - ax * p->twp) * p->m;
}

/* Tiles [t0, t1) in blocks of TB (a multiple of FC_WINO_RB).  Tile t is (n, ty, tx) with
 * t = (n*th + ty)*tw + tx; its output pixels are rows oy0 + dh*a, columns ox0 + dw*c (a, c < m) of
 * image n (fc_wino_origin; undilated: rows ty*m.., columns tx*m..). */
static void FN(fc_wino_tiles)(const fc_wino *p, const FC_T *in, const FC_T *U, const FC_T *bias, FC_T *out,
                              ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    const int m = p->m, al = m + 2, a2 = al * al, C = p->C, K = p->K;
    const int cs = FN(fc_wino_cs)(C), kp = FN(fc_wino_kp)(K), nkb = kp / VB;
    const ptrdiff_t vps = (ptrdiff_t)TB * cs, mps = (ptrdiff_t)TB * kp;  /* position strides of V and M */
    char *q = FN(fc_wino_align)(scratch);
    FC_T *Vb = (FC_T *)q;
    q = FN(fc_wino_align)(q + (size_t)a2 * vps * sizeof(FC_T));
    FC_T *Mb = (FC_T *)q;
    q = FN(fc_wino_align)(q + (size_t)a2 * mps * sizeof(FC_T));
    FC_T *zrow = (FC_T *)q;
    q = FN(fc_wino_align)(q + (size_t)cs * sizeof(FC_T));
    FC_T *bp = (FC_T *)q;
    q = FN(fc_wino_align)(q + (size_t)kp * sizeof(FC_T));
    const FC_T **xp = (const FC_T **)q;
    for (int c = 0; c < cs; c++)
        zrow[c] = 0;
    for (int k = 0; k < kp; k++)
        bp[k] = (bias && k < K) ? bias[k] : (FC_T)0;
    for (ptrdiff_t b0 = t0; b0 < t1; b0 += TB) {
        const int nt = (int)(t1 - b0 < TB ? t1 - b0 : TB);
        const int ntr = (nt + FC_WINO_RB - 1) / FC_WINO_RB * FC_WINO_RB;  /* rows the register tile runs over */
        /* 1. input transform */
        for (int t = 0; t < nt; t++) {
            ptrdiff_t n;
            ptrdiff_t oy0, ox0;
            FN(fc_wino_origin)(p, b0 + t, &n, &oy0, &ox0);
            const ptrdiff_t iy0 = oy0 - p->pt, ix0 = ox0 - p->pl, dh = p->dh, dw = p->dw;
            const FC_T *img = in + n * p->IH * (ptrdiff_t)p->IW * C;
            for (int i = 0; i < al; i++) {
                const ptrdiff_t iy = iy0 + dh * i;
                for (int j = 0; j < al; j++) {
                    const ptrdiff_t ix = ix0 + dw * j;
                    xp[i * al + j] = (iy >= 0 && iy < p->IH && ix >= 0 && ix < p->IW)
                                         ? img + ((ptrdiff_t)iy * p->IW + ix) * C : zrow;
                }
            }
            FN(fc_wino_itrans)(m, xp, C, cs, Vb + (ptrdiff_t)t * cs, vps);
        }
        for (int t = nt; t < ntr; t++)  /* the register tile's unused rows: zeros */
            for (int pos = 0; pos < a2; pos++)
                memset(Vb + pos * vps + (ptrdiff_t)t * cs, 0, (size_t)cs * sizeof(FC_T));
        /* 2. alpha^2 GEMMs: each VB-wide block of U (C x VB) is reused over the block's tiles */
        for (int pos = 0; pos < a2; pos++) {
            const FC_T *vpos = Vb + pos * vps;
            FC_T *mpos = Mb + pos * mps;
            for (int kb = 0; kb < nkb; kb++) {
                const FC_T *u = U + ((ptrdiff_t)pos * nkb + kb) * C * VB;
                FC_T *mk = mpos + kb * VB;
                if (K - kb * VB <= FC_VLEN) {  /* a half block: the last, at most one vector of channels */
                    int t = 0;
                    for (; t + 12 <= ntr; t += 12)
                        FN(fc_wino_ukernel_h12)(vpos + (ptrdiff_t)t * cs, cs, C, u, mk + (ptrdiff_t)t * kp, kp);
                    for (; t < ntr; t += FC_WINO_RB)
                        FN(fc_wino_ukernel_h6)(vpos + (ptrdiff_t)t * cs, cs, C, u, mk + (ptrdiff_t)t * kp, kp);
                    continue;
                }
                for (int t = 0; t < ntr; t += FC_WINO_RB)
                    FN(fc_wino_ukernel)(vpos + (ptrdiff_t)t * cs, cs, C, u, mk + (ptrdiff_t)t * kp, kp);
            }
        }
        /* 3. output transform */
        for (int t = 0; t < nt; t++) {
            ptrdiff_t n;
            ptrdiff_t oy0, ox0;
            FN(fc_wino_origin)(p, b0 + t, &n, &oy0, &ox0);
            FC_T *op[16];
            for (int a = 0; a < m; a++)
                for (int c = 0; c < m; c++) {
                    const ptrdiff_t oy = oy0 + (ptrdiff_t)p->dh * a, ox = ox0 + (ptrdiff_t)p->dw * c;
                    op[a * m + c] = (oy < p->OH && ox < p->OW)
                                        ? out + ((n * p->OH + oy) * (ptrdiff_t)p->OW + ox) * p->OPS : NULL;
                }
            FN(fc_wino_otrans)(m, Mb + (ptrdiff_t)t * kp, mps, K, kp, bp, p->relu, op);
        }
    }
}

/* ---- weight gradient: dw = G^T [ sum over tiles of (B^T d B) (x) (A dY A^T) ] G ----
 * The adjoint of the forward's per-tile formula y = A^T [U (x) V] A with respect to U, then U = G g G^T
 * with respect to g.  Per block of TB tiles: V (the input transform of x, as the forward) and
 * D[pos][t][k] = (A dY A^T)[pos] of each tile's m x m dy (zeros past the output's edge); then
 * S[pos] (C x Kp) += V[pos]^T D[pos], a reduction over the block's tiles in a 6-channel x 2-vector
 * register tile (the chunk's first block stores, the later ones add).  S lives in the thread's scratch;
 * at the chunk's end it is folded by G^T . G into the chunk's own partial P (9 x Sc x Kp: a quarter of
 * S), which fc_wino_wgrad_finish sums in chunk order. */

/* dY tile transform (A . A^T), one dimension: m outputs to alpha values. */
#define WD4(d0, d1, d2, d3, t0, t1, t2, t3, t4, t5)                                                   \
    do {                                                                                            \
        const V q2 = BC((FC_T)2), q4 = BC((FC_T)4), q8 = BC((FC_T)8);                                 \
        const V e = d0 + d2, o = d1 + d3, e4 = d0 + q4 * d2, o2 = q2 * d1 + q8 * d3;                 \
        t0 = d0; t1 = e + o; t2 = e - o; t3 = e4 + o2; t4 = e4 - o2; t5 = d3;                        \
    } while (0)
#define WD2(d0, d1, t0, t1, t2, t3)                                                                   \
    do { t0 = d0; t1 = d0 + d1; t2 = d0 - d1; t3 = -d1; } while (0)

/* The weight gradient's G^T . G, one dimension: alpha sums s to 3 values t_j = sum_b s_b G[b][j]
 * (G of fc_wino_g4 / fc_wino_g2, its structure spelled out). */
#define WF6(s0, s1, s2, s3, s4, s5, t0, t1, t2)                                                       \
    do {                                                                                            \
        const V c4 = BC((FC_T)0.25), c6 = BC((FC_T)1 / (FC_T)6), c12 = BC((FC_T)1 / (FC_T)12);     \
        const V c24 = BC((FC_T)1 / (FC_T)24);                                                        \
        const V p12 = (s1) + (s2), m12 = (s2) - (s1), p34 = (s3) + (s4), m34 = (s3) - (s4);         \
        t0 = c4 * (s0) - c6 * p12 + c24 * p34;                                                       \
        t1 = c6 * m12 + c12 * m34;                                                                   \
        t2 = c6 * (p34 - p12) + (s5);                                                                \
    } while (0)
#define WF4(s0, s1, s2, s3, t0, t1, t2)                                                               \
    do {                                                                                            \
        const V h = BC((FC_T)0.5), p12 = h * ((s1) + (s2));                                           \
        t0 = (s0) + p12; t1 = h * ((s1) - (s2)); t2 = p12 + (s3);                                     \
    } while (0)

static void FN(fc_wino_dtrans)(int m, const FC_T *const *yp, int K, int kp, FC_T *dt, ptrdiff_t ps)
{
    /* the vectors that hold channels: a half block's zero vector is never read (fc_wino_wgrad_half) */
    const int kv = (K + FC_VLEN - 1) / FC_VLEN * FC_VLEN;
    (void)kp;
    for (int k0 = 0; k0 < kv; k0 += FC_VLEN) {
        if (m == 4) {
            V t[6][4];
            for (int j = 0; j < 4; j++) {
                const V d0 = FN(fc_wino_ld)(yp[0 * 4 + j], k0, K), d1 = FN(fc_wino_ld)(yp[1 * 4 + j], k0, K);
                const V d2 = FN(fc_wino_ld)(yp[2 * 4 + j], k0, K), d3 = FN(fc_wino_ld)(yp[3 * 4 + j], k0, K);
                WD4(d0, d1, d2, d3, t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j]);
            }
            for (int i = 0; i < 6; i++) {
                V u0, u1, u2, u3, u4, u5;
                WD4(t[i][0], t[i][1], t[i][2], t[i][3], u0, u1, u2, u3, u4, u5);
                FC_T *o = dt + (ptrdiff_t)(i * 6) * ps + k0;
                ST(o, u0); ST(o + ps, u1); ST(o + 2 * ps, u2); ST(o + 3 * ps, u3); ST(o + 4 * ps, u4);
                ST(o + 5 * ps, u5);
            }
        } else {
            V t[4][2];
            for (int j = 0; j < 2; j++) {
                const V d0 = FN(fc_wino_ld)(yp[0 * 2 + j], k0, K), d1 = FN(fc_wino_ld)(yp[1 * 2 + j], k0, K);
                WD2(d0, d1, t[0][j], t[1][j], t[2][j], t[3][j]);
            }
            for (int i = 0; i < 4; i++) {
                V u0, u1, u2, u3;
                WD2(t[i][0], t[i][1], u0, u1, u2, u3);
                FC_T *o = dt + (ptrdiff_t)(i * 4) * ps + k0;
                ST(o, u0); ST(o + ps, u1); ST(o + 2 * ps, u2); ST(o + 3 * ps, u3);
            }
        }
    }
}

/* Rows of S: C rounded up to the register tile's 6 channels. */
static inline int FN(fc_wino_sc)(int C) { return (C + 5) / 6 * 6; }

static size_t FN(fc_wino_wgrad_scratch_bytes)(const fc_wino *p, int TB)
{
    const size_t a2 = (size_t)(p->m + 2) * (p->m + 2);
    const size_t cs = (size_t)FN(fc_wino_cs)(p->C), kp = (size_t)FN(fc_wino_kp)(p->K);
    const size_t sc = (size_t)FN(fc_wino_sc)(p->C);
    /* + 8 elements of slack: the last 6-channel tile of V reads up to 5 past its last row; then the
     * chunk's sums S (alpha^2 x Sc x Kp), in the thread's scratch: reused by its next chunk */
    return (a2 * TB * (cs + kp) + 8 + cs + kp + a2 * sc * kp) * sizeof(FC_T) + a2 * sizeof(FC_T *) + 7 * 64;
}

/* Elements of one partial: the chunk's folded sums P (9 x Sc x Kp), then the bias gradient's Kp sums. */
static ptrdiff_t FN(fc_wino_wgrad_partial)(const fc_wino *p)
{
    return ((ptrdiff_t)9 * FN(fc_wino_sc)(p->C) + 1) * FN(fc_wino_kp)(p->K);
}

/* S[c][0..VLEN) (+)= sum_t V[t][c] D[t][0..VLEN) for c < sc (S, D at the half block's first column;
 * first: the chunk's first block, which stores instead of adding): channels in R-row register tiles
 * of one vector (12, then 6), as fc_wino_ukernel_h*. */
#define FC_WINO_WHALF(R)                                                                            \
    for (; c + R <= sc; c += R) {                                                                   \
        V acc[R];                                                                                   \
        for (int r = 0; r < R; r++)                                                                 \
            acc[r] = first ? (V){0} : (V)LD(S + (ptrdiff_t)(c + r) * kp);                           \
        const FC_T *v = V_ + c, *d = D;                                                             \
        for (int t = 0; t < nt; t++, v += cs, d += kp) {                                            \
            const V w0 = LD(d);                                                                     \
            for (int r = 0; r < R; r++)                                                             \
                acc[r] += BC(v[r]) * w0;                                                            \
        }                                                                                           \
        for (int r = 0; r < R; r++)                                                                 \
            ST(S + (ptrdiff_t)(c + r) * kp, acc[r]);                                                \
    }
static void FN(fc_wino_wgrad_half)(const FC_T *V_, const FC_T *D, FC_T *S, int nt, int cs, int kp, int sc,
                                   int first)
{
    int c = 0;
    FC_WINO_WHALF(12)
    FC_WINO_WHALF(6)
}
#undef FC_WINO_WHALF

static void FN(fc_wino_wgrad_tiles)(const fc_wino *p, const FC_T *in, const FC_T *dy, ptrdiff_t t0, ptrdiff_t t1,
                                    int TB, FC_T *P, char *scratch)
{
    const int m = p->m, al = m + 2, a2 = al * al, C = p->C, K = p->K;
    const int cs = FN(fc_wino_cs)(C), kp = FN(fc_wino_kp)(K), sc = FN(fc_wino_sc)(C), nkb = kp / VB;
    const ptrdiff_t vps = (ptrdiff_t)TB * cs, dps = (ptrdiff_t)TB * kp, sps = (ptrdiff_t)sc * kp;
    char *q = FN(fc_wino_align)(scratch);
    FC_T *Vb = (FC_T *)q;
    q = FN(fc_wino_align)(q + ((size_t)a2 * vps + 8) * sizeof(FC_T));
    FC_T *Db = (FC_T *)q;
    q = FN(fc_wino_align)(q + (size_t)a2 * dps * sizeof(FC_T));
    FC_T *zrow = (FC_T *)q;
    q = FN(fc_wino_align)(q + (size_t)(cs > kp ? cs : kp) * sizeof(FC_T));
    const FC_T **xp = (const FC_T **)q;
    q = FN(fc_wino_align)(q + (size_t)a2 * sizeof(FC_T *));  /* alpha^2 pixel pointers (x), m^2 (dy) */
    FC_T *S = (FC_T *)q;
    for (int c = 0; c < (cs > kp ? cs : kp); c++)
        zrow[c] = 0;
    for (int e = 0; e < 8; e++)
        Vb[(ptrdiff_t)a2 * vps + e] = 0;
    FC_T *dbp = P + 9 * sps;  /* the bias gradient: dy summed over the chunk's pixels */
    for (int k = 0; k < kp; k++)
        dbp[k] = 0;
    /* S is not zeroed: the chunk's first block stores its sums, the later ones add to them */
    for (ptrdiff_t b0 = t0; b0 < t1; b0 += TB) {
        const int first = b0 == t0;
        const int nt = (int)(t1 - b0 < TB ? t1 - b0 : TB);
        for (int t = 0; t < nt; t++) {
            ptrdiff_t n;
            ptrdiff_t oy0, ox0;
            FN(fc_wino_origin)(p, b0 + t, &n, &oy0, &ox0);
            const ptrdiff_t iy0 = oy0 - p->pt, ix0 = ox0 - p->pl, dh = p->dh, dw = p->dw;
            const FC_T *img = in + n * p->IH * (ptrdiff_t)p->IW * C;
            for (int i = 0; i < al; i++)
                for (int j = 0; j < al; j++) {
                    const ptrdiff_t iy = iy0 + dh * i, ix = ix0 + dw * j;
                    xp[i * al + j] = (iy >= 0 && iy < p->IH && ix >= 0 && ix < p->IW)
                                         ? img + ((ptrdiff_t)iy * p->IW + ix) * C : zrow;
                }
            FN(fc_wino_itrans)(m, xp, C, cs, Vb + (ptrdiff_t)t * cs, vps);
            for (int a = 0; a < m; a++)
                for (int c = 0; c < m; c++) {
                    const ptrdiff_t oy = oy0 + dh * a, ox = ox0 + dw * c;
                    xp[a * m + c] = (oy < p->OH && ox < p->OW)
                                        ? dy + ((n * p->OH + oy) * (ptrdiff_t)p->OW + ox) * K : zrow;
                }
            FN(fc_wino_dtrans)(m, xp, K, kp, Db + (ptrdiff_t)t * kp, dps);
            for (int e = 0; e < m * m; e++)
                if (xp[e] != zrow)
                    for (int k0 = 0; k0 < K; k0 += FC_VLEN)
                        ST(dbp + k0, LD(dbp + k0) + FN(fc_wino_ld)(xp[e], k0, K));
        }
        /* S[pos][c..c+6)[kb] += sum_t V[pos][t][c..c+6) (x) D[pos][t][kb] */
        for (int pos = 0; pos < a2; pos++) {
            const FC_T *vpos = Vb + pos * vps, *dpos = Db + pos * dps;
            FC_T *spos = S + pos * sps;
            if (K - (nkb - 1) * VB <= FC_VLEN)  /* the last block is a half one (see above) */
                FN(fc_wino_wgrad_half)(vpos, dpos + (nkb - 1) * VB, spos + (nkb - 1) * VB, nt, cs, kp, sc,
                                       first);
            const int nkf = K - (nkb - 1) * VB <= FC_VLEN ? nkb - 1 : nkb;
            for (int c = 0; c < sc; c += 6)
                for (int kb = 0; kb < nkf; kb++) {
                    FC_T *so = spos + (ptrdiff_t)c * kp + kb * VB;
                    const V z = {0};
                    V a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
                    V a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
                    if (!first) {
                        a00 = LD(so); a01 = LD(so + FC_VLEN);
                        a10 = LD(so + kp); a11 = LD(so + kp + FC_VLEN);
                        a20 = LD(so + 2 * kp); a21 = LD(so + 2 * kp + FC_VLEN);
                        a30 = LD(so + 3 * kp); a31 = LD(so + 3 * kp + FC_VLEN);
                        a40 = LD(so + 4 * kp); a41 = LD(so + 4 * kp + FC_VLEN);
                        a50 = LD(so + 5 * kp); a51 = LD(so + 5 * kp + FC_VLEN);
                    }
                    const FC_T *v = vpos + c, *d = dpos + kb * VB;
#pragma GCC unroll 2
                    for (int t = 0; t < nt; t++, v += cs, d += kp) {
                        const V w0 = LD(d), w1 = LD(d + FC_VLEN);
                        V b;
                        b = BC(v[0]); a00 += b * w0; a01 += b * w1;
                        b = BC(v[1]); a10 += b * w0; a11 += b * w1;
                        b = BC(v[2]); a20 += b * w0; a21 += b * w1;
                        b = BC(v[3]); a30 += b * w0; a31 += b * w1;
                        b = BC(v[4]); a40 += b * w0; a41 += b * w1;
                        b = BC(v[5]); a50 += b * w0; a51 += b * w1;
                    }
                    ST(so, a00); ST(so + FC_VLEN, a01);
                    ST(so + kp, a10); ST(so + kp + FC_VLEN, a11);
                    ST(so + 2 * kp, a20); ST(so + 2 * kp + FC_VLEN, a21);
                    ST(so + 3 * kp, a30); ST(so + 3 * kp + FC_VLEN, a31);
                    ST(so + 4 * kp, a40); ST(so + 4 * kp + FC_VLEN, a41);
                    ST(so + 5 * kp, a50); ST(so + 5 * kp + FC_VLEN, a51);
                }
        }
    }
    /* the chunk's G^T . G into its partial: P[i*3 + j] = sum over a, b of G[a][i] S[a*alpha + b] G[b][j],
     * per row c and vector of k, separably (rows, then columns) */
    for (ptrdiff_t e = 0; e < (ptrdiff_t)sc * kp; e += FC_VLEN) {
        const FC_T *s0 = S + e;
        FC_T *p0 = P + e;
        V r[6][3];
        for (int a = 0; a < al; a++) {
            const FC_T *q = s0 + (ptrdiff_t)(a * al) * sps;
            if (m == 4)
                WF6(LD(q), LD(q + sps), LD(q + 2 * sps), LD(q + 3 * sps), LD(q + 4 * sps), LD(q + 5 * sps),
                    r[a][0], r[a][1], r[a][2]);
            else
                WF4(LD(q), LD(q + sps), LD(q + 2 * sps), LD(q + 3 * sps), r[a][0], r[a][1], r[a][2]);
        }
        for (int j = 0; j < 3; j++) {
            V y0, y1, y2;
            if (m == 4)
                WF6(r[0][j], r[1][j], r[2][j], r[3][j], r[4][j], r[5][j], y0, y1, y2);
            else
                WF4(r[0][j], r[1][j], r[2][j], r[3][j], y0, y1, y2);
            ST(p0 + (ptrdiff_t)j * sps, y0); ST(p0 + (ptrdiff_t)(3 + j) * sps, y1);
            ST(p0 + (ptrdiff_t)(6 + j) * sps, y2);
        }
    }
}

#undef WD4
#undef WD2
#undef WF6
#undef WF4
#undef FC_WRELU
#undef WI6
#undef WI4
#undef WO6
#undef WO4
#undef V
#undef VU
#undef VB
#undef LD
#undef ST
#undef BC
#undef FN
