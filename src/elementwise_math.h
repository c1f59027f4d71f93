/* elementwise_math.h: vector exp / expm1 / log1p / erfc and the activations built on them, for ONE
 * element type and ONE SIMD level (included by elementwise_impl.h inside fc_instantiate.h's regions;
 * FC_T, FC_IT, FC_IS_F32, FC_VLEN, FC_SFX as there).  No include guard below the code table, on
 * purpose: one copy per level.
 *
 * exp(x): clamp x to the range where the result is finite or underflows, n = round(x / ln 2) (the
 *   1.5 * 2^mant "magic" addition, whose bits then hold n), r = x - n ln2 in two parts (Cody-Waite:
 *   n * ln2_hi is exact), exp(r) by its Taylor series on |r| <= ln2 / 2 (degree 7 in float32, error
 *   below 0.1 ulp; degree 13 in float64, below 1e-17), times 2^n built in the exponent bits as
 *   2^(n/2) * 2^(n - n/2), so results in the subnormal range and overflow to inf are rounded once by
 *   the hardware.  Measured against float64 / long double: <= 1 ulp float32, <= 2 ulp float64.
 * expm1(x) for x <= 0: the same reduction, 2^n * expm1(r) + (2^n - 1) (2^n - 1 is exact for the n
 *   where it matters), so small |x| keeps full relative precision (elu, selu, tanh).
 * log1p(u) for 0 <= u <= 1 (softplus): log(1 + u) by s = f / (2 + f), log = 2 atanh(s), with the
 *   rounding of 1 + u added back.
 * erfc(a / sqrt 2) for a >= 0: the Chebyshev fit of Numerical Recipes (3rd ed., Erf::erfccheb,
 *   the one fastconv/activations.py used in NumPy), evaluated by Clenshaw's recurrence, its
 *   Gaussian factor from a^2 split in two parts (gelu's tail keeps its relative precision).
 * NaN passes through every function; +-inf give the limits; -0.0 keeps its sign where the
 *   function is odd (tanh, elu, selu, leaky_relu, gelu's x * Phi(x)).
 */
#ifndef FC_EW_CODES_H
#define FC_EW_CODES_H
/* The activation codes of the element-wise kernels and of the conv epilogue.  The one Python copy
 * is fastconv/_kernels/elementwise (CODES), read by fastconv/ops/elementwise.py. */
enum {
    FC_EW_LINEAR = 0, FC_EW_RELU = 1, FC_EW_RELU6 = 2, FC_EW_ELU = 3, FC_EW_SELU = 4, FC_EW_SIGMOID = 5,
    FC_EW_TANH = 6, FC_EW_SWISH = 7, FC_EW_GELU = 8, FC_EW_GELU_TANH = 9, FC_EW_SOFTPLUS = 10,
    FC_EW_LEAKY_RELU = 11, FC_EW_NCODES = 12
};
/* Whether the backward of a code reads the forward's input x (else its output y). */
static inline int fc_ew_grad_from_input(int code)
{
    return code == FC_EW_SWISH || code == FC_EW_GELU || code == FC_EW_GELU_TANH;
}
#define FC_SELU_ALPHA 1.6732632423543772848170429916717
#define FC_SELU_SCALE 1.0507009873554804934193349852946
#endif

#define EW_CAT_(a, b) a##b
#define EW_CAT(a, b) EW_CAT_(a, b)
#define EWF(name) EW_CAT(name, FC_SFX)
#define EWV EWF(fc_ewv)
#define EWVU EWF(fc_ewvu)
#define EWI EWF(fc_ewi)
#define EW_LD(p) (*(const EWVU *)(p))
#define EW_ST(p, v) (*(EWVU *)(p) = (v))

typedef FC_T EWV __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
typedef FC_T EWVU __attribute__((vector_size(FC_VLEN * sizeof(FC_T)), aligned(sizeof(FC_T)), may_alias));
typedef FC_IT EWI __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));

#if FC_IS_F32
#define EW_MAGIC 12582912.0f /* 1.5 * 2^23 */
#define EW_MANT 23
#define EW_BIAS 127
#define EW_EXP_LO -104.0f /* exp underflows to 0 below about -103.97 */
#define EW_EXP_HI 89.0f   /* and overflows above 88.72 */
#define EW_EXPM1_LO -88.0f
#define EW_LN2_HI 0.693359375f
#define EW_LN2_LO -2.12194440e-4f
#define EW_DEG 7
#define EW_LOG_TERMS 6
#define EW_BIG 1e4f
#else
#define EW_MAGIC 6755399441055744.0 /* 1.5 * 2^52 */
#define EW_MANT 52
#define EW_BIAS 1023
#define EW_EXP_LO -746.0
#define EW_EXP_HI 710.0
#define EW_EXPM1_LO -709.0
#define EW_LN2_HI 6.93147180369123816490e-01
#define EW_LN2_LO 1.90821492927058770002e-10
#define EW_DEG 13
#define EW_LOG_TERMS 11
#define EW_BIG 1e8
#endif

static inline __attribute__((always_inline)) EWV EWF(ew_splat)(FC_T s)
{
    const EWV z = {0};
    return z + s;
}

/* m ? a : b lane by lane (vector ?: is C++ only) */
static inline __attribute__((always_inline)) EWV EWF(ew_sel)(EWI m, EWV a, EWV b)
{
    return (EWV)((m & (EWI)a) | (~m & (EWI)b));
}

/* the sign bit in every lane (a splat of -0.0 would be +0.0: 0 + -0.0) */
static inline __attribute__((always_inline)) EWI EWF(ew_signbit)(void)
{
    const EWI z = {0};
    return z + (FC_IT)((uint64_t)1 << (8 * sizeof(FC_T) - 1));
}

static inline __attribute__((always_inline)) EWV EWF(ew_abs)(EWV x)
{
    const EWI sign = EWF(ew_signbit)();
    return (EWV)((EWI)x & ~sign);
}

/* |a| with the sign of b */
static inline __attribute__((always_inline)) EWV EWF(ew_copysign)(EWV a, EWV b)
{
    const EWI sign = EWF(ew_signbit)();
    return (EWV)(((EWI)a & ~sign) | ((EWI)b & sign));
}

/* x * g, 0 where g is 0 (the limit of x * g(x) at +-inf when g decays faster than x grows) */
static inline __attribute__((always_inline)) EWV EWF(ew_xmul)(EWV x, EWV g)
{
    const EWV zero = {0};
    return EWF(ew_sel)(g == zero, zero, x * g);
}

/* Inverse factorials 1/k!, k = 0..13 */
static const double EWF(ew_ifact)[14] = {
    1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320, 1.0 / 362880,
    1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};

/* expm1(r) for |r| <= ln2 / 2: r + r^2 (1/2! + r/3! + ... + r^(DEG-2)/DEG!) */
static inline __attribute__((always_inline)) EWV EWF(ew_expm1_poly)(EWV r)
{
    EWV p = EWF(ew_splat)((FC_T)EWF(ew_ifact)[EW_DEG]);
    for (int k = EW_DEG - 1; k >= 2; k--)
        p = p * r + (FC_T)EWF(ew_ifact)[k];
    return r + (r * r) * p;
}

/* x = n ln2 + r, |r| <= ln2 / 2 (x finite, clamped) */
static inline __attribute__((always_inline)) EWV EWF(ew_reduce)(EWV x, EWI *n)
{
    const EWV t = x * (FC_T)1.4426950408889634074 + (FC_T)EW_MAGIC;
    const EWV nf = t - (FC_T)EW_MAGIC;
    *n = (EWI)t - (EWI)EWF(ew_splat)((FC_T)EW_MAGIC);
    return (x - nf * (FC_T)EW_LN2_HI) - nf * (FC_T)EW_LN2_LO;
}

static inline __attribute__((always_inline)) EWV EWF(ew_pow2)(EWI n)
{
    return (EWV)((n + EW_BIAS) << EW_MANT);
}

static inline EWV EWF(ew_exp)(EWV x)
{
    const EWI nan = x != x;
    const EWV lo = EWF(ew_splat)(EW_EXP_LO), hi = EWF(ew_splat)(EW_EXP_HI), zero = {0};
    EWV xc = EWF(ew_sel)(x > hi, hi, x);
    xc = EWF(ew_sel)(xc < lo, lo, xc);
    xc = EWF(ew_sel)(nan, zero, xc);
    EWI n;
    const EWV r = EWF(ew_reduce)(xc, &n);
    const EWV p = EWF(ew_expm1_poly)(r) + (FC_T)1;
    const EWI n1 = n >> 1;
    const EWV y = p * EWF(ew_pow2)(n1) * EWF(ew_pow2)(n - n1);
    return EWF(ew_sel)(nan, x, y);
}

/* expm1(x) for x <= 0 (NaN passes; -0.0 stays -0.0) */
static inline EWV EWF(ew_expm1_neg)(EWV x)
{
    const EWI nan = x != x;
    const EWV lo = EWF(ew_splat)(EW_EXPM1_LO), zero = {0};
    EWV xc = EWF(ew_sel)(x < lo, lo, x);
    xc = EWF(ew_sel)(nan, zero, xc);
    EWI n;
    const EWV r = EWF(ew_reduce)(xc, &n);
    const EWV q = EWF(ew_expm1_poly)(r);
    const EWV s = EWF(ew_pow2)(n);
    const EWV y = s * q + (s - (FC_T)1);
    return EWF(ew_sel)(nan | (x == zero), x, y);
}

/* log1p(u) for 0 <= u <= 1 (NaN passes) */
static inline EWV EWF(ew_log1p_unit)(EWV u)
{
    const EWV one = EWF(ew_splat)(1), zero = {0};
    const EWV u1 = u + one;                      /* in [1, 2] */
    const EWV c = (u - (u1 - one)) / u1;         /* the rounding of 1 + u, to first order */
    const EWI big = u1 > (FC_T)1.41421356237309504880;
    const EWV m = EWF(ew_sel)(big, u1 * (FC_T)0.5, u1);
    const EWV k = EWF(ew_sel)(big, one, zero);
    const EWV f = m - one;
    const EWV s = f / (f + (FC_T)2);
    const EWV z = s * s;
    EWV p = EWF(ew_splat)((FC_T)(1.0 / (2 * EW_LOG_TERMS - 1)));
    for (int j = EW_LOG_TERMS - 2; j >= 1; j--)
        p = p * z + (FC_T)(1.0 / (2 * j + 1));
    const EWV R = (s + s) + (s + s) * z * p;
    return k * (FC_T)EW_LN2_HI + (R + (k * (FC_T)EW_LN2_LO + c));
}

/* Numerical Recipes' erfc Chebyshev coefficients (fastconv/activations.py _ERFC_COF) */
static const double EWF(ew_erfc_cof)[28] = {
    -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3,
    -9.46595344482036e-4, 3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5,
    -1.624290004647e-6, 1.303655835580e-6, 1.5626441722e-8, -8.5238095915e-8, 6.529054439e-9,
    5.059343495e-9, -9.91364156e-10, -2.27365122e-10, 9.6467911e-11, 2.394038e-12, -6.886027e-12,
    8.94487e-13, 3.13092e-13, -1.12708e-13, 3.81e-16, 7.106e-15, -1.523e-15, -9.4e-17, 1.21e-16,
    -2.8e-17};

/* erfc(a / sqrt 2) for a >= 0 (NaN passes).  The Gaussian factor exp(-a^2 / 2) takes a^2 split in
 * two (Dekker: a = ah + al with ah's square exact), exp(-ah^2 / 2) * exp(the rest): one rounding of
 * a^2 would otherwise cost a relative error of a^2 ulp in the tail. */
static inline EWV EWF(ew_erfc_scaled)(EWV a)
{
    const EWV z = a * (FC_T)0.70710678118654752440;
    const EWV t = (FC_T)2 / (z + (FC_T)2);
    const EWV ty = t * (FC_T)4 - (FC_T)2;
    EWV d = {0}, dd = {0};
    /* float32 needs the first 17 coefficients (the rest are below 1e-10) */
    const int last = FC_IS_F32 ? 16 : 27;
    for (int j = last; j >= 1; j--) {
        const EWV tmp = d;
        d = ty * d - dd + (FC_T)EWF(ew_erfc_cof)[j];
        dd = tmp;
    }
    const EWI lowbits = (EWI)EWF(ew_splat)(0) + (FC_IT)(FC_IS_F32 ? 0xFFF : 0x7FFFFFF);
    const EWV zero = {0};
    const EWV as = EWF(ew_sel)(a == (FC_T)__builtin_inf(), zero, a); /* erfc(inf) = 0 comes from t = 0 */
    const EWV ah = (EWV)((EWI)as & ~lowbits), al = as - ah;
    const EWV rest = (FC_T)-0.5 * (al * (ah + ah + al)) + (FC_T)0.5 * ((FC_T)EWF(ew_erfc_cof)[0] + ty * d) - dd;
    return t * EWF(ew_exp)((FC_T)-0.5 * (ah * ah)) * EWF(ew_exp)(rest);
}

/* sigmoid(x) = 1 / (1 + exp(-x)), from e = exp(-|x|) so nothing overflows */
static inline __attribute__((always_inline)) EWV EWF(ew_sigmoid)(EWV x)
{
    const EWV zero = {0};
    const EWV e = EWF(ew_exp)(-EWF(ew_abs)(x));
    const EWV r = (FC_T)1 / (e + (FC_T)1);
    return EWF(ew_sel)(x >= zero, r, e * r);
}

/* tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)) with x's sign */
static inline __attribute__((always_inline)) EWV EWF(ew_tanh)(EWV x)
{
    const EWV e = EWF(ew_expm1_neg)((FC_T)-2 * EWF(ew_abs)(x));
    return EWF(ew_copysign)(-e / (e + (FC_T)2), x);
}

/* Phi(x), the standard normal CDF: erfc(|x| / sqrt 2) / 2 on the negative side (no cancellation) */
static inline __attribute__((always_inline)) EWV EWF(ew_phi)(EWV x)
{
    const EWV zero = {0};
    const EWV h = (FC_T)0.5 * EWF(ew_erfc_scaled)(EWF(ew_abs)(x));
    return EWF(ew_sel)(x >= zero, (FC_T)1 - h, h);
}

#define EW_SQRT_2_OVER_PI 0.79788456080286535588
#define EW_GELU_C 0.044715

/* f(x) of one code (alpha: elu's alpha, leaky_relu's slope) */
static inline __attribute__((always_inline)) EWV EWF(ew_fwd)(int code, EWV x, FC_T alpha)
{
    const EWV zero = {0};
    switch (code) {
    case FC_EW_RELU:
        return EWF(ew_sel)(x < zero, zero, x);
    case FC_EW_RELU6: {
        const EWV six = EWF(ew_splat)(6);
        x = EWF(ew_sel)(x < zero, zero, x);
        return EWF(ew_sel)(x > six, six, x);
    }
    case FC_EW_ELU:
        return EWF(ew_sel)(x > zero, x, alpha * EWF(ew_expm1_neg)(x));
    case FC_EW_SELU:
        return EWF(ew_sel)(x > zero, (FC_T)FC_SELU_SCALE * x,
                           (FC_T)(FC_SELU_SCALE * FC_SELU_ALPHA) * EWF(ew_expm1_neg)(x));
    case FC_EW_SIGMOID:
        return EWF(ew_sigmoid)(x);
    case FC_EW_TANH:
        return EWF(ew_tanh)(x);
    case FC_EW_SWISH:
        return EWF(ew_xmul)(x, EWF(ew_sigmoid)(x));
    case FC_EW_GELU:
        return EWF(ew_xmul)(x, EWF(ew_phi)(x));
    case FC_EW_GELU_TANH: {
        /* 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation for negative x */
        const EWV u = (FC_T)(2 * EW_SQRT_2_OVER_PI) * (x + (FC_T)EW_GELU_C * x * x * x);
        return EWF(ew_xmul)(x, EWF(ew_sigmoid)(u));
    }
    case FC_EW_SOFTPLUS: {
        const EWV pos = EWF(ew_sel)(x > zero, x, zero);
        return pos + EWF(ew_log1p_unit)(EWF(ew_exp)(-EWF(ew_abs)(x)));
    }
    case FC_EW_LEAKY_RELU:
        return EWF(ew_sel)(x > zero, x, alpha * x);
    default:
        return x;
    }
}

/* dx = dy * f'(.) from t: the forward's output y, or its input x where fc_ew_grad_from_input */
static inline __attribute__((always_inline)) EWV EWF(ew_bwd)(int code, EWV dy, EWV t, FC_T alpha)
{
    const EWV zero = {0}, one = EWF(ew_splat)(1);
    switch (code) {
    case FC_EW_RELU:
        return (EWV)((EWI)dy & (t > zero));
    case FC_EW_RELU6:
        return (EWV)((EWI)dy & (t > zero) & (t < (FC_T)6));
    case FC_EW_ELU:
        return dy * EWF(ew_sel)(t > zero, one, t + alpha);
    case FC_EW_SELU:
        return dy * EWF(ew_sel)(t > zero, EWF(ew_splat)((FC_T)FC_SELU_SCALE),
                                t + (FC_T)(FC_SELU_SCALE * FC_SELU_ALPHA));
    case FC_EW_SIGMOID:
        return dy * (t * (one - t));
    case FC_EW_TANH:
        return dy * (one - t * t);
    case FC_EW_SWISH: {
        /* s + x s (1 - s), s (1 - s) = e / (1 + e)^2 with e = exp(-|x|) */
        const EWV e = EWF(ew_exp)(-EWF(ew_abs)(t));
        const EWV r = one / (e + one);
        const EWV s = EWF(ew_sel)(t >= zero, r, e * r);
        return dy * (s + EWF(ew_xmul)(t, e * r * r));
    }
    case FC_EW_GELU: {
        const EWV pdf = EWF(ew_exp)((FC_T)-0.5 * t * t) * (FC_T)0.39894228040143267794;
        return dy * (EWF(ew_phi)(t) + EWF(ew_xmul)(t, pdf));
    }
    case FC_EW_GELU_TANH: {
        /* d/dx x s(2u) = s + x 2 s (1 - s) u' */
        const EWV x2 = t * t;
        const EWV u2 = (FC_T)(2 * EW_SQRT_2_OVER_PI) * (t + (FC_T)EW_GELU_C * x2 * t);
        const EWV e = EWF(ew_exp)(-EWF(ew_abs)(u2));
        const EWV r = one / (e + one);
        const EWV s = EWF(ew_sel)(u2 >= zero, r, e * r);
        const EWV du = (FC_T)(2 * EW_SQRT_2_OVER_PI) * (one + (FC_T)(3 * EW_GELU_C) * x2);
        EWV g = e * r * r * du;
        g = EWF(ew_sel)(EWF(ew_abs)(t) > (FC_T)EW_BIG, zero, g);
        return dy * (s + EWF(ew_xmul)(t, g));
    }
    case FC_EW_SOFTPLUS:
        /* sigmoid(x) = 1 - exp(-y) */
        return dy * -EWF(ew_expm1_neg)(-t);
    case FC_EW_LEAKY_RELU:
        return EWF(ew_sel)(t > zero, dy, alpha * dy);
    default:
        return dy;
    }
}
