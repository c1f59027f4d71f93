/* elementwise_impl.h: element-wise activation loops for ONE element type and ONE SIMD level.
 *
 * Included once per level by elementwise_kernels.h (through fc_instantiate.h) and by conv_impl.h
 * (the conv epilogue applies fc_ew_span to each output tile right after computing it).
 *
 * - fc_ew_span(code, alpha, x, y, n): y = f(x) on n contiguous elements (y may be x).
 * - fc_ew_span_grad(code, alpha, dy, t, dx, n): dx = dy * f'(.), t the forward's output or input
 *   (fc_ew_grad_from_input).
 * - fc_ew_add_span(code, alpha, x, r, y, n): y = f(x + r) (a residual sum and its activation).
 * - fc_softmax_rows / fc_softmax_grad_rows: rows [r0, r1) of an (M, L) array, L contiguous.
 * The last n % FC_VLEN elements go through the same vector code in a padded local vector, so every
 * element's result is the same wherever it sits: a fused epilogue equals the separate pass bit for
 * bit.  Element counts and offsets are 64-bit (ptrdiff_t).
 */
#include "elementwise_math.h"

/* y = f(x) on n elements, the code's switch once per span */
static void EWF(fc_ew_span)(int code, FC_T alpha, const FC_T *x, FC_T *y, ptrdiff_t n)
{
    ptrdiff_t i = 0;
#define EW_CASE(c)                                                                  \
    case c:                                                                         \
        for (; i + FC_VLEN <= n; i += FC_VLEN)                                      \
            EW_ST(y + i, EWF(ew_fwd)(c, EW_LD(x + i), alpha));                      \
        break;
    switch (code) {
        EW_CASE(FC_EW_RELU) EW_CASE(FC_EW_RELU6) EW_CASE(FC_EW_ELU) EW_CASE(FC_EW_SELU)
        EW_CASE(FC_EW_SIGMOID) EW_CASE(FC_EW_TANH) EW_CASE(FC_EW_SWISH) EW_CASE(FC_EW_GELU)
        EW_CASE(FC_EW_GELU_TANH) EW_CASE(FC_EW_SOFTPLUS) EW_CASE(FC_EW_LEAKY_RELU)
    default:
        if (y != x)
            memmove(y, x, (size_t)n * sizeof(FC_T));
        return;
    }
#undef EW_CASE
    if (i < n) {
        FC_T buf[FC_VLEN] = {0};
        for (ptrdiff_t j = i; j < n; j++)
            buf[j - i] = x[j];
        EWV v = EW_LD(buf);
        v = EWF(ew_fwd)(code, v, alpha);
        EW_ST(buf, v);
        for (ptrdiff_t j = i; j < n; j++)
            y[j] = buf[j - i];
    }
}

/* y = f(x + r) on n elements in one pass (y may be x or r): a residual sum and its activation */
static void EWF(fc_ew_add_span)(int code, FC_T alpha, const FC_T *x, const FC_T *r, FC_T *y, ptrdiff_t n)
{
    ptrdiff_t i = 0;
#define EW_CASE(c)                                                                  \
    case c:                                                                         \
        for (; i + FC_VLEN <= n; i += FC_VLEN)                                      \
            EW_ST(y + i, EWF(ew_fwd)(c, EW_LD(x + i) + EW_LD(r + i), alpha));       \
        break;
    switch (code) {
        EW_CASE(FC_EW_RELU) EW_CASE(FC_EW_RELU6) EW_CASE(FC_EW_ELU) EW_CASE(FC_EW_SELU)
        EW_CASE(FC_EW_SIGMOID) EW_CASE(FC_EW_TANH) EW_CASE(FC_EW_SWISH) EW_CASE(FC_EW_GELU)
        EW_CASE(FC_EW_GELU_TANH) EW_CASE(FC_EW_SOFTPLUS) EW_CASE(FC_EW_LEAKY_RELU)
    default:
        for (; i + FC_VLEN <= n; i += FC_VLEN)
            EW_ST(y + i, EW_LD(x + i) + EW_LD(r + i));
        break;
    }
#undef EW_CASE
    for (; i < n; i++)  /* the sum is exact per element; the activation of the tail as fc_ew_span's */
        y[i] = x[i] + r[i];
    if (code != FC_EW_LINEAR && n % FC_VLEN)
        EWF(fc_ew_span)(code, alpha, y + (n - n % FC_VLEN), y + (n - n % FC_VLEN), n % FC_VLEN);
}

/* dx = dy * f'(t) on n elements (dx may be dy) */
static void EWF(fc_ew_span_grad)(int code, FC_T alpha, const FC_T *dy, const FC_T *t, FC_T *dx, ptrdiff_t n)
{
    ptrdiff_t i = 0;
#define EW_CASE(c)                                                                  \
    case c:                                                                         \
        for (; i + FC_VLEN <= n; i += FC_VLEN)                                      \
            EW_ST(dx + i, EWF(ew_bwd)(c, EW_LD(dy + i), EW_LD(t + i), alpha));      \
        break;
    switch (code) {
        EW_CASE(FC_EW_RELU) EW_CASE(FC_EW_RELU6) EW_CASE(FC_EW_ELU) EW_CASE(FC_EW_SELU)
        EW_CASE(FC_EW_SIGMOID) EW_CASE(FC_EW_TANH) EW_CASE(FC_EW_SWISH) EW_CASE(FC_EW_GELU)
        EW_CASE(FC_EW_GELU_TANH) EW_CASE(FC_EW_SOFTPLUS) EW_CASE(FC_EW_LEAKY_RELU)
    default:
        if (dx != dy)
            memmove(dx, dy, (size_t)n * sizeof(FC_T));
        return;
    }
#undef EW_CASE
    if (i < n) {
        FC_T bd[FC_VLEN] = {0}, bt[FC_VLEN] = {0};
        for (ptrdiff_t j = i; j < n; j++) {
            bd[j - i] = dy[j];
            bt[j - i] = t[j];
        }
        EWV v = EWF(ew_bwd)(code, EW_LD(bd), EW_LD(bt), alpha);
        EW_ST(bd, v);
        for (ptrdiff_t j = i; j < n; j++)
            dx[j] = bd[j - i];
    }
}

/* Horizontal sum of a vector (lane order fixed) */
static inline FC_T EWF(ew_hsum)(EWV v)
{
    FC_T s = 0;
    for (int k = 0; k < FC_VLEN; k++)
        s += v[k];
    return s;
}

#ifndef FC_SM_SHORT
#define FC_SM_SHORT 8  /* rows of at most this many elements take the transposed path */
#endif

/* y = softmax(x) over each row of L elements, rows [r0, r1); stable: exp(x - max) / sum */
static void EWF(fc_softmax_rows)(const FC_T *x, FC_T *y, ptrdiff_t L, ptrdiff_t r0, ptrdiff_t r1)
{
    const ptrdiff_t LV = L - L % FC_VLEN;
    /* Short rows (a segmentation net's few classes per pixel): a row would pay a whole padded vector
     * exp of its own, so FC_VLEN rows go at once, transposed through a buffer (lane k = row r + k):
     * the max, exp and sum run across the row's L column vectors.  Same operations per element in
     * the same order as below (the sum from element 0 up), so the results are the same. */
    if (L > 0 && L <= FC_SM_SHORT && L < FC_VLEN) {
        for (; r0 + FC_VLEN <= r1; r0 += FC_VLEN) {
            FC_T buf[FC_SM_SHORT][FC_VLEN];
            const FC_T *xr = x + r0 * L;
            FC_T *yr = y + r0 * L;
            for (int k = 0; k < FC_VLEN; k++)
                for (ptrdiff_t j = 0; j < L; j++)
                    buf[j][k] = xr[k * L + j];
            /* NaN-ignoring max, as below (a NaN element makes its row NaN through its exp) */
            EWV m = -(FC_T)__builtin_inf() + (EWV){0};
            for (ptrdiff_t j = 0; j < L; j++) {
                const EWV v = EW_LD(buf[j]);
                m = EWF(ew_sel)(v > m, v, m);
            }
            EWV sum = {0};
            for (ptrdiff_t j = 0; j < L; j++) {
                const EWV e = EWF(ew_exp)(EW_LD(buf[j]) - m);
                EW_ST(buf[j], e);
                sum += e;
            }
            const EWV inv = (FC_T)1 / sum;
            for (ptrdiff_t j = 0; j < L; j++)
                EW_ST(buf[j], EW_LD(buf[j]) * inv);
            for (int k = 0; k < FC_VLEN; k++)
                for (ptrdiff_t j = 0; j < L; j++)
                    yr[k * L + j] = buf[j][k];
        }
    }
    for (ptrdiff_t r = r0; r < r1; r++) {
        const FC_T *xr = x + r * L;
        FC_T *yr = y + r * L;
        /* the max, NaN-ignoring (a NaN makes the row NaN through its exp below) */
        FC_T m = -(FC_T)__builtin_inf();
        if (LV) {
            EWV mv = EW_LD(xr);
            for (ptrdiff_t i = FC_VLEN; i < LV; i += FC_VLEN) {
                const EWV v = EW_LD(xr + i);
                mv = EWF(ew_sel)(v > mv, v, mv);
            }
            for (int k = 0; k < FC_VLEN; k++)
                m = mv[k] > m ? mv[k] : m;
        }
        for (ptrdiff_t i = LV; i < L; i++)
            m = xr[i] > m ? xr[i] : m;
        EWV sv = {0};
        ptrdiff_t i = 0;
        for (; i < LV; i += FC_VLEN) {
            const EWV e = EWF(ew_exp)(EW_LD(xr + i) - m);
            EW_ST(yr + i, e);
            sv += e;
        }
        if (i < L) {
            FC_T buf[FC_VLEN];
            for (int k = 0; k < FC_VLEN; k++)
                buf[k] = i + k < L ? xr[i + k] - m : -(FC_T)__builtin_inf();
            const EWV e = EWF(ew_exp)(EW_LD(buf));
            sv += e;
            EW_ST(buf, e);
            for (ptrdiff_t j = i; j < L; j++)
                yr[j] = buf[j - i];
        }
        const FC_T inv = (FC_T)1 / EWF(ew_hsum)(sv);
        for (i = 0; i < LV; i += FC_VLEN)
            EW_ST(yr + i, EW_LD(yr + i) * inv);
        for (; i < L; i++)
            yr[i] *= inv;
    }
}

/* dx = y * (dy - sum(dy * y)) per row of L, rows [r0, r1) (dx may be dy) */
static void EWF(fc_softmax_grad_rows)(const FC_T *dy, const FC_T *y, FC_T *dx, ptrdiff_t L, ptrdiff_t r0, ptrdiff_t r1)
{
    const ptrdiff_t LV = L - L % FC_VLEN;
    for (ptrdiff_t r = r0; r < r1; r++) {
        const FC_T *dr = dy + r * L, *yr = y + r * L;
        FC_T *xr = dx + r * L;
        EWV sv = {0};
        ptrdiff_t i = 0;
        for (; i < LV; i += FC_VLEN)
            sv += EW_LD(dr + i) * EW_LD(yr + i);
        FC_T s = EWF(ew_hsum)(sv);
        for (; i < L; i++)
            s += dr[i] * yr[i];
        for (i = 0; i < LV; i += FC_VLEN)
            EW_ST(xr + i, EW_LD(yr + i) * (EW_LD(dr + i) - s));
        for (; i < L; i++)
            xr[i] = yr[i] * (dr[i] - s);
    }
}

#undef EW_CAT_
#undef EW_CAT
#undef EWF
#undef EWV
#undef EWVU
#undef EWI
#undef EW_LD
#undef EW_ST
#undef EW_MAGIC
#undef EW_MANT
#undef EW_BIAS
#undef EW_EXP_LO
#undef EW_EXP_HI
#undef EW_EXPM1_LO
#undef EW_LN2_HI
#undef EW_LN2_LO
#undef EW_DEG
#undef EW_LOG_TERMS
#undef EW_BIG
#undef EW_SQRT_2_OVER_PI
#undef EW_GELU_C
