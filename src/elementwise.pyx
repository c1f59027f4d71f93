# cython: language_level=3
"""Element-wise activation kernels and softmax (float32 and float64), forward and backward.

Design (loops in src/elementwise_impl.h, math in src/elementwise_math.h):
- The element-wise ops see a flat C-contiguous array of n elements (Py_ssize_t / ptrdiff_t count,
  never `long`: docs/kernels.md), cut into the
  chunks of the plan (fastconv/ops/_plan.py norm_plan over n rows of one element), dynamic
  schedule; every element's arithmetic is the same whichever chunk or thread computes it.
- Softmax sees (M, L) rows, L contiguous (the last axis), chunks of whole rows.
- `add` is a residual sum and its activation in one pass, y = f(x + r).
- `code`: the activation (CODES below, the C enum FC_EW_* in elementwise_math.h); `alpha` is elu's
  alpha or leaky_relu's slope, ignored by the others.
Callers (fastconv/ops/elementwise.py) check dtypes, contiguity and shapes; nothing here raises
except MemoryError.
"""
from _common cimport floating
from _parallel cimport run_chunks

cdef extern from "elementwise_kernels.h" nogil:
    int FC_EW_NCODES
    int fc_ew_grad_from_input(int code)
    void fc_ew_f32(int isa, int code, float alpha, const float *x, float *y, Py_ssize_t n)
    void fc_ew_f64(int isa, int code, double alpha, const double *x, double *y, Py_ssize_t n)
    void fc_ew_add_f32(int isa, int code, float alpha, const float *x, const float *r, float *y, Py_ssize_t n)
    void fc_ew_add_f64(int isa, int code, double alpha, const double *x, const double *r, double *y, Py_ssize_t n)
    void fc_ew_grad_f32(int isa, int code, float alpha, const float *dy, const float *t, float *dx, Py_ssize_t n)
    void fc_ew_grad_f64(int isa, int code, double alpha, const double *dy, const double *t, double *dx, Py_ssize_t n)
    void fc_softmax_f32(int isa, const float *x, float *y, Py_ssize_t L, Py_ssize_t r0, Py_ssize_t r1)
    void fc_softmax_f64(int isa, const double *x, double *y, Py_ssize_t L, Py_ssize_t r0, Py_ssize_t r1)
    void fc_softmax_grad_f32(int isa, const float *dy, const float *y, float *dx, Py_ssize_t L, Py_ssize_t r0, Py_ssize_t r1)
    void fc_softmax_grad_f64(int isa, const double *dy, const double *y, double *dx, Py_ssize_t L, Py_ssize_t r0, Py_ssize_t r1)

#: activation name -> kernel code (the order of the C enum FC_EW_*)
CODES = {"linear": 0, "relu": 1, "relu6": 2, "elu": 3, "selu": 4, "sigmoid": 5, "tanh": 6, "swish": 7,
         "gelu": 8, "gelu_tanh": 9, "softplus": 10, "leaky_relu": 11}
#: codes whose backward reads the forward's input x (the others read its output y)
GRAD_FROM_INPUT = frozenset(c for c in CODES.values() if fc_ew_grad_from_input(c))
assert len(CODES) == FC_EW_NCODES


ctypedef struct _job:
    int f64, isa, code
    double alpha
    Py_ssize_t L
    const void *a       # x, or dy
    const void *b       # t (y or x), or y
    void *out


cdef void _fwd(const void *jp, Py_ssize_t j, Py_ssize_t i0, Py_ssize_t i1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_ew_f64(b.isa, b.code, b.alpha, <const double *>b.a + i0, <double *>b.out + i0, i1 - i0)
    else:
        fc_ew_f32(b.isa, b.code, <float>b.alpha, <const float *>b.a + i0, <float *>b.out + i0, i1 - i0)


cdef void _bwd(const void *jp, Py_ssize_t j, Py_ssize_t i0, Py_ssize_t i1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_ew_grad_f64(b.isa, b.code, b.alpha, <const double *>b.a + i0, <const double *>b.b + i0,
                       <double *>b.out + i0, i1 - i0)
    else:
        fc_ew_grad_f32(b.isa, b.code, <float>b.alpha, <const float *>b.a + i0, <const float *>b.b + i0,
                       <float *>b.out + i0, i1 - i0)


cdef void _smax(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_softmax_f64(b.isa, <const double *>b.a, <double *>b.out, b.L, r0, r1)
    else:
        fc_softmax_f32(b.isa, <const float *>b.a, <float *>b.out, b.L, r0, r1)


cdef void _smax_grad(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_softmax_grad_f64(b.isa, <const double *>b.a, <const double *>b.b, <double *>b.out, b.L, r0, r1)
    else:
        fc_softmax_grad_f32(b.isa, <const float *>b.a, <const float *>b.b, <float *>b.out, b.L, r0, r1)


cdef void _add(const void *jp, Py_ssize_t j, Py_ssize_t i0, Py_ssize_t i1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_ew_add_f64(b.isa, b.code, b.alpha, <const double *>b.a + i0, <const double *>b.b + i0,
                      <double *>b.out + i0, i1 - i0)
    else:
        fc_ew_add_f32(b.isa, b.code, <float>b.alpha, <const float *>b.a + i0, <const float *>b.b + i0,
                      <float *>b.out + i0, i1 - i0)


def add(const floating[::1] x,          # IN  (n,) flat
        const floating[::1] r,          # IN  (n,) flat
        floating[::1] y,                # OUT (n,), may be x's or r's buffer
        int code, double alpha, Py_ssize_t nchunks, int isa, int nthreads):
    """y = f(x + r) element-wise (a residual sum and its activation in one pass)."""
    cdef Py_ssize_t n = x.shape[0]
    if n == 0:
        return
    cdef _job b
    b.f64 = floating is double; b.isa = isa; b.code = code; b.alpha = alpha; b.L = 0
    b.a = &x[0]; b.b = &r[0]; b.out = &y[0]
    run_chunks(_add, &b, n, nchunks, nthreads, True, 0)


def forward(const floating[::1] x,      # IN  (n,) flat
            floating[::1] y,            # OUT (n,), may be x's buffer
            int code, double alpha, Py_ssize_t nchunks, int isa, int nthreads):
    """y = f(x) element-wise for the activation `code`."""
    cdef Py_ssize_t n = x.shape[0]
    if n == 0:
        return
    cdef _job b
    b.f64 = floating is double; b.isa = isa; b.code = code; b.alpha = alpha; b.L = 0
    b.a = &x[0]; b.b = NULL; b.out = &y[0]
    run_chunks(_fwd, &b, n, nchunks, nthreads, True, 0)


def backward(const floating[::1] dy,    # IN  (n,) flat
             const floating[::1] t,     # IN  (n,) the forward's output y, or its input x (GRAD_FROM_INPUT)
             floating[::1] dx,          # OUT (n,), may be dy's buffer
             int code, double alpha, Py_ssize_t nchunks, int isa, int nthreads):
    """dx = dy * f'(x) element-wise, f' written from t."""
    cdef Py_ssize_t n = dy.shape[0]
    if n == 0:
        return
    cdef _job b
    b.f64 = floating is double; b.isa = isa; b.code = code; b.alpha = alpha; b.L = 0
    b.a = &dy[0]; b.b = &t[0]; b.out = &dx[0]
    run_chunks(_bwd, &b, n, nchunks, nthreads, True, 0)


def softmax(const floating[:, ::1] x,   # IN  (M, L)
            floating[:, ::1] y,         # OUT (M, L), may be x's buffer
            Py_ssize_t nchunks, int isa, int nthreads):
    """y = softmax over each row of x (numerically stable)."""
    cdef Py_ssize_t M = x.shape[0]
    if M == 0 or x.shape[1] == 0:
        return
    cdef _job b
    b.f64 = floating is double; b.isa = isa; b.code = 0; b.alpha = 0; b.L = x.shape[1]
    b.a = &x[0, 0]; b.b = NULL; b.out = &y[0, 0]
    run_chunks(_smax, &b, M, nchunks, nthreads, True, 0)


def softmax_grad(const floating[:, ::1] dy,   # IN  (M, L)
                 const floating[:, ::1] y,    # IN  (M, L) the forward's output
                 floating[:, ::1] dx,         # OUT (M, L), may be dy's buffer
                 Py_ssize_t nchunks, int isa, int nthreads):
    """dx = y * (dy - sum(dy * y)) per row."""
    cdef Py_ssize_t M = dy.shape[0]
    if M == 0 or dy.shape[1] == 0:
        return
    cdef _job b
    b.f64 = floating is double; b.isa = isa; b.code = 0; b.alpha = 0; b.L = dy.shape[1]
    b.a = &dy[0, 0]; b.b = &y[0, 0]; b.out = &dx[0, 0]
    run_chunks(_smax_grad, &b, M, nchunks, nthreads, True, 0)
