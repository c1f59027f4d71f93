# cython: language_level=3
"""BatchNorm and element-wise activation kernels (channels-last, float32 and float64).

Design (loops in src/norm_impl.h):
- A tensor (N, ..., C) is viewed as M = N*H*W rows of C channels, vectorised over channels.
- Reductions (batch statistics; the backward's sum(dy) and sum(dy * (x - mean))) cut the rows into
  the plan's chunks (fastconv/ops/_plan.py norm_plan: their number depends on the shape only), each
  summed in float64 into its own partial; the partials are added in chunk order, so the result is
  bit-identical for any thread count.  Chunks are handed out dynamically: a thread that shares its
  core with another process takes fewer of them.
- Statistics are shifted by the first row (see norm_impl.h): one pass, no loss to a large mean.
- Element-wise passes (normalise, input gradient, activations) run over the plan's chunks of rows
  with the same dynamic schedule; they may write in place.
- `act`: 0 none, 1 relu, 2 relu6 fused after the normalisation (backward masks with the output).
- Sizes: rows, element counts, offsets (r * C) and chunk bounds are 64-bit; the channel count C is
  an int, which fastconv/ops/norm.py checks (C <= INT32_MAX); 2 * C, the partials' stride, is
  taken in size_t.
Every wrapper fills a job struct and hands it to run_chunks (_parallel.pxd).  Callers
(fastconv/ops/norm.py) check dtypes, contiguity and shapes; nothing here raises except MemoryError.
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from _common cimport floating
from _parallel cimport run_chunks, sum_partials

cdef extern from "norm_kernels.h" nogil:
    void fc_bn_stats_f32(int isa, const float *x, int C, long r0, long r1, const float *k, double *s1, double *s2)
    void fc_bn_stats_f64(int isa, const double *x, int C, long r0, long r1, const double *k, double *s1,
                         double *s2)
    void fc_bn_dsums_f32(int isa, const float *dy, const float *x, const float *y, int act, int C, long r0,
                         long r1, const float *mean, const float *fa, const float *fb, double *s1, double *s2)
    void fc_bn_dsums_f64(int isa, const double *dy, const double *x, const double *y, int act, int C, long r0,
                         long r1, const double *mean, const double *fa, const double *fb, double *s1, double *s2)
    void fc_bn_affine_f32(int isa, const float *x, const float *mean, const float *a, const float *b, int act,
                          int C, long r0, long r1, float *y)
    void fc_bn_affine_f64(int isa, const double *x, const double *mean, const double *a, const double *b,
                          int act, int C, long r0, long r1, double *y)
    void fc_bn_dx_f32(int isa, const float *dy, const float *x, const float *y, int act, const float *mean,
                      const float *fa, const float *fb,
                      const float *ga, const float *gb, const float *gc, int C, long r0, long r1, float *dx)
    void fc_bn_dx_f64(int isa, const double *dy, const double *x, const double *y, int act, const double *mean,
                      const double *fa, const double *fb,
                      const double *ga, const double *gb, const double *gc, int C, long r0, long r1, double *dx)
    void fc_act_forward_f32(int isa, const float *x, int act, long i0, long i1, float *y)
    void fc_act_forward_f64(int isa, const double *x, int act, long i0, long i1, double *y)
    void fc_act_backward_f32(int isa, const float *dy, const float *y, int act, long i0, long i1, float *dx)
    void fc_act_backward_f64(int isa, const double *dy, const double *y, int act, long i0, long i1, double *dx)
    void fc_add_act_f32(int isa, const float *a, const float *b, int act, long i0, long i1, float *y)
    void fc_add_act_f64(int isa, const double *a, const double *b, int act, long i0, long i1, double *y)

ACT_CODES = {None: 0, "linear": 0, "relu": 1, "relu6": 2}


# One job of any kernel of the family: the pointers it reads and writes, as void (the f64 flag says
# which type they point to).  Unused fields stay NULL.
ctypedef struct _job:
    int f64, isa, act, C
    const void *a        # x, or dy
    const void *b        # x (dsums, dx), or y (act backward)
    const void *y        # the forward's output (fused activation masks), or NULL
    const void *mean
    const void *ca       # per-channel coefficients
    const void *cb
    const void *cc
    const void *k        # stats shift (the first row)
    const void *fa       # the forward's scale and shift (backward masks from x), or NULL
    const void *fb
    void *out
    double *part         # reductions: 2*C float64 partials per chunk


cdef void _stats(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    cdef double *pd = b.part + j * 2 * <size_t>b.C
    if b.f64:
        fc_bn_stats_f64(b.isa, <const double *>b.a, b.C, r0, r1, <const double *>b.k, pd, pd + b.C)
    else:
        fc_bn_stats_f32(b.isa, <const float *>b.a, b.C, r0, r1, <const float *>b.k, pd, pd + b.C)


cdef void _dsums(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    cdef double *pd = b.part + j * 2 * <size_t>b.C
    if b.f64:
        fc_bn_dsums_f64(b.isa, <const double *>b.a, <const double *>b.b, <const double *>b.y, b.act, b.C, r0, r1,
                        <const double *>b.mean, <const double *>b.fa, <const double *>b.fb, pd, pd + b.C)
    else:
        fc_bn_dsums_f32(b.isa, <const float *>b.a, <const float *>b.b, <const float *>b.y, b.act, b.C, r0, r1,
                        <const float *>b.mean, <const float *>b.fa, <const float *>b.fb, pd, pd + b.C)


cdef void _affine(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_bn_affine_f64(b.isa, <const double *>b.a, <const double *>b.mean, <const double *>b.ca,
                         <const double *>b.cb, b.act, b.C, r0, r1, <double *>b.out)
    else:
        fc_bn_affine_f32(b.isa, <const float *>b.a, <const float *>b.mean, <const float *>b.ca,
                         <const float *>b.cb, b.act, b.C, r0, r1, <float *>b.out)


cdef void _dx(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_bn_dx_f64(b.isa, <const double *>b.a, <const double *>b.b, <const double *>b.y, b.act,
                     <const double *>b.mean, <const double *>b.fa, <const double *>b.fb, <const double *>b.ca, <const double *>b.cb, <const double *>b.cc,
                     b.C, r0, r1, <double *>b.out)
    else:
        fc_bn_dx_f32(b.isa, <const float *>b.a, <const float *>b.b, <const float *>b.y, b.act,
                     <const float *>b.mean, <const float *>b.fa, <const float *>b.fb, <const float *>b.ca, <const float *>b.cb, <const float *>b.cc,
                     b.C, r0, r1, <float *>b.out)


cdef void _act_fwd(const void *jp, Py_ssize_t j, Py_ssize_t i0, Py_ssize_t i1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_act_forward_f64(b.isa, <const double *>b.a, b.act, i0, i1, <double *>b.out)
    else:
        fc_act_forward_f32(b.isa, <const float *>b.a, b.act, i0, i1, <float *>b.out)


cdef void _act_bwd(const void *jp, Py_ssize_t j, Py_ssize_t i0, Py_ssize_t i1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_act_backward_f64(b.isa, <const double *>b.a, <const double *>b.b, b.act, i0, i1, <double *>b.out)
    else:
        fc_act_backward_f32(b.isa, <const float *>b.a, <const float *>b.b, b.act, i0, i1, <float *>b.out)


cdef inline void _init(_job *b, bint f64, int isa, int act, int C) noexcept nogil:
    memset(b, 0, sizeof(_job))
    b.f64 = f64; b.isa = isa; b.act = act; b.C = C


cdef double *_partials(long nchunks, int C) except NULL:
    cdef double *p = <double *>malloc(<size_t>nchunks * 2 * C * sizeof(double) + 8)
    if p == NULL:
        raise MemoryError()
    memset(p, 0, <size_t>nchunks * 2 * C * sizeof(double))
    return p


def bn_stats(const floating[:, ::1] x,      # IN  (M, C), M >= 1
             double[::1] mean,              # OUT (C,) batch mean
             double[::1] var,               # OUT (C,) biased batch variance
             long nchunks, int isa, int nthreads):
    """Per-channel mean and biased variance of x over its rows (float64 results)."""
    cdef long M = x.shape[0]
    cdef int C = x.shape[1], c
    if M == 0 or C == 0:
        return
    cdef _job b
    _init(&b, floating is double, isa, 0, C)
    b.a = &x[0, 0]
    b.k = &x[0, 0]  # shift: the first row
    b.part = _partials(nchunks, C)
    cdef double s1, s2
    try:
        run_chunks(_stats, &b, M, nchunks, nthreads, True, 0)
        with nogil:
            # per chunk: C sums of d, then C sums of d*d; added in chunk order
            sum_partials(b.part, 2 * <size_t>C, nchunks, C, &mean[0])
            sum_partials(b.part + C, 2 * <size_t>C, nchunks, C, &var[0])
            for c in range(C):
                s1 = mean[c]
                s2 = var[c]
                mean[c] = <double>x[0, c] + s1 / M
                s2 = (s2 - s1 * s1 / M) / M
                var[c] = s2 if s2 > 0 else 0.0
    finally:
        free(b.part)


def bn_dsums(const floating[:, ::1] dy,     # IN  (M, C)
             const floating[:, ::1] x,      # IN  (M, C) the forward's input
             const floating[:, ::1] y,      # IN  (M, C) the forward's output, or None when act == 0
             int act,
             const floating[::1] mean,      # IN  (C,) the batch mean used by the forward
             double[::1] s1,                # OUT (C,) sum of g (g = dy through the fused activation)
             double[::1] s2,                # OUT (C,) sum of g * (x - mean)
             long nchunks, int isa, int nthreads,
             const floating[::1] fa=None,   # IN  (C,) the forward's scale and shift: the mask from
             const floating[::1] fb=None):  #     (x - mean) * fa + fb, y not read (may be None)
    """The two per-channel sums of BatchNorm's backward (float64)."""
    cdef long M = x.shape[0]
    cdef int C = x.shape[1]
    if C == 0:
        return
    if M == 0:
        s1[:] = 0
        s2[:] = 0
        return
    cdef _job b
    _init(&b, floating is double, isa, act, C)
    b.a = &dy[0, 0]
    b.b = &x[0, 0]
    b.y = &y[0, 0] if y is not None else NULL
    b.mean = &mean[0]
    if act and fa is not None and fb is not None:
        b.fa = &fa[0]; b.fb = &fb[0]
    elif act and y is None:
        raise ValueError("bn_dsums: a fused activation needs y or (fa, fb)")
    b.part = _partials(nchunks, C)
    try:
        run_chunks(_dsums, &b, M, nchunks, nthreads, True, 0)
        with nogil:
            sum_partials(b.part, 2 * <size_t>C, nchunks, C, &s1[0])
            sum_partials(b.part + C, 2 * <size_t>C, nchunks, C, &s2[0])
    finally:
        free(b.part)


def bn_affine(const floating[:, ::1] x,     # IN  (M, C)
              const floating[::1] mean,     # IN  (C,)
              const floating[::1] a,        # IN  (C,) scale
              const floating[::1] b,        # IN  (C,) shift
              floating[:, ::1] y,           # OUT (M, C), may be x's buffer
              int act, long nchunks, int isa, int nthreads):
    """y = act((x - mean) * a + b) per channel."""
    cdef long M = x.shape[0]
    cdef int C = x.shape[1]
    if M == 0 or C == 0:
        return
    cdef _job jb
    _init(&jb, floating is double, isa, act, C)
    jb.a = &x[0, 0]; jb.mean = &mean[0]; jb.ca = &a[0]; jb.cb = &b[0]; jb.out = &y[0, 0]
    run_chunks(_affine, &jb, M, nchunks, nthreads, True, 0)


def bn_dx(const floating[:, ::1] dy,        # IN  (M, C)
          const floating[:, ::1] x,         # IN  (M, C) the forward's input, or None (scale only)
          const floating[:, ::1] y,         # IN  (M, C) the forward's output, or None when act == 0
          int act,
          const floating[::1] mean,         # IN  (C,) (None with x None)
          const floating[::1] ga,           # IN  (C,)
          const floating[::1] gb,           # IN  (C,) (None with x None)
          const floating[::1] gc,           # IN  (C,) (None with x None)
          floating[:, ::1] dx,              # OUT (M, C), may be dy's buffer
          long nchunks, int isa, int nthreads,
          const floating[::1] fa=None,      # IN  (C,) with x: the mask from (x - mean) * fa + fb,
          const floating[::1] fb=None):     #     y not read (may be None)
    """dx = g * ga + (x - mean) * gb + gc per channel, g = dy through the fused activation."""
    cdef long M = dy.shape[0]
    cdef int C = dy.shape[1]
    if M == 0 or C == 0:
        return
    cdef _job b
    _init(&b, floating is double, isa, act, C)
    b.a = &dy[0, 0]
    b.y = &y[0, 0] if y is not None else NULL
    b.ca = &ga[0]
    if x is not None:
        b.b = &x[0, 0]; b.mean = &mean[0]; b.cb = &gb[0]; b.cc = &gc[0]
        if act and fa is not None and fb is not None:
            b.fa = &fa[0]; b.fb = &fb[0]
    if act and y is None and b.fa == NULL:
        raise ValueError("bn_dx: a fused activation needs y or (x, fa, fb)")
    b.out = &dx[0, 0]
    run_chunks(_dx, &b, M, nchunks, nthreads, True, 0)


def act_forward(const floating[::1] x,      # IN  (n,) flat
                floating[::1] y,            # OUT (n,), may be x's buffer
                int act, long nchunks, int isa, int nthreads):
    """y = relu(x) (act 1) or relu6(x) (act 2), NaN passing through."""
    cdef long n = x.shape[0]
    if n == 0:
        return
    cdef _job b
    _init(&b, floating is double, isa, act, 1)
    b.a = &x[0]; b.out = &y[0]
    run_chunks(_act_fwd, &b, n, nchunks, nthreads, True, 0)


def act_backward(const floating[::1] dy,    # IN  (n,) flat
                 const floating[::1] y,     # IN  (n,) the forward's output
                 floating[::1] dx,          # OUT (n,)
                 int act, long nchunks, int isa, int nthreads):
    """dx = dy where the activation let the gradient through (relu: y > 0; relu6: 0 < y < 6), else 0."""
    cdef long n = dy.shape[0]
    if n == 0:
        return
    cdef _job b
    _init(&b, floating is double, isa, act, 1)
    b.a = &dy[0]; b.b = &y[0]; b.out = &dx[0]
    run_chunks(_act_bwd, &b, n, nchunks, nthreads, True, 0)


# ---- relu / relu6 gradient over a forward output y whose pixels are evenly spaced (a channel slice
# of a wider NHWC tensor: a producer of a copy-free concatenation, fastconv/engine/graph.py) ----------
ctypedef struct _rows_job:
    int f64, isa, act, C
    Py_ssize_t ys         # elements from one pixel of y to the next
    const void *dy
    const void *y
    void *dx


cdef void _act_bwd_rows(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _rows_job *b = <const _rows_job *>jp
    cdef Py_ssize_t r
    for r in range(r0, r1):
        if b.f64:
            fc_act_backward_f64(b.isa, <const double *>b.dy + r * b.C, <const double *>b.y + r * b.ys, b.act,
                                0, b.C, <double *>b.dx + r * b.C)
        else:
            fc_act_backward_f32(b.isa, <const float *>b.dy + r * b.C, <const float *>b.y + r * b.ys, b.act,
                                0, b.C, <float *>b.dx + r * b.C)


def act_backward_rows(const floating[:, ::1] dy,   # IN  (P, C)
                      const floating[:, :] y,      # IN  (P, C), channels contiguous, pixels y.strides[0] apart
                      floating[:, ::1] dx,         # OUT (P, C)
                      int act, long nchunks, int isa, int nthreads):
    """act_backward pixel by pixel, for a y whose pixels are not C apart."""
    cdef Py_ssize_t P = dy.shape[0]
    cdef int C = dy.shape[1]
    if P == 0 or C == 0:
        return
    if y.shape[0] != P or y.shape[1] != C or dx.shape[0] != P or dx.shape[1] != C:
        raise ValueError(f"act_backward_rows: shapes differ: dy {(P, C)}, y {(y.shape[0], y.shape[1])}, "
                         f"dx {(dx.shape[0], dx.shape[1])}")
    if C > 1 and y.strides[1] != sizeof(floating) or y.strides[0] % sizeof(floating):
        raise ValueError(f"act_backward_rows: y's channels must be contiguous. Received: strides "
                         f"{(y.strides[0], y.strides[1])}")
    cdef _rows_job b
    b.f64 = floating is double
    b.isa = isa; b.act = act; b.C = C
    b.ys = y.strides[0] // sizeof(floating)
    b.dy = &dy[0, 0]; b.y = &y[0, 0]; b.dx = &dx[0, 0]
    run_chunks(_act_bwd_rows, &b, P, min(nchunks, P), nthreads, True, 0)


# ---- sums: the execution plan's gradient sums and Add (fastconv/ops/norm.py _add) ----------------
cdef void _add_flat(const void *jp, Py_ssize_t j, Py_ssize_t i0, Py_ssize_t i1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_add_act_f64(b.isa, <const double *>b.a, <const double *>b.b, b.act, i0, i1, <double *>b.out)
    else:
        fc_add_act_f32(b.isa, <const float *>b.a, <const float *>b.b, b.act, i0, i1, <float *>b.out)


def add_act(const floating[::1] a,          # IN  (n,) flat
            const floating[::1] b,          # IN  (n,) flat
            floating[::1] y,                # OUT (n,), may be a's or b's buffer
            int act, long nchunks, int isa, int nthreads):
    """y = a + b, then relu (act 1) or relu6 (act 2) when asked, NaN passing through."""
    cdef long n = a.shape[0]
    if b.shape[0] != n or y.shape[0] != n:
        raise ValueError(f"add_act: sizes differ: a {n}, b {b.shape[0]}, y {y.shape[0]}")
    if n == 0:
        return
    cdef _job j
    _init(&j, floating is double, isa, act, 1)
    j.a = &a[0]; j.b = &b[0]; j.out = &y[0]
    run_chunks(_add_flat, &j, n, nchunks, nthreads, True, 0)


cdef void _add_rows(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _rows_job *b = <const _rows_job *>jp
    cdef Py_ssize_t r
    for r in range(r0, r1):
        if b.f64:
            fc_add_act_f64(b.isa, <const double *>b.dx + r * b.C, <const double *>b.y + r * b.ys, 0, 0, b.C,
                           <double *>b.dx + r * b.C)
        else:
            fc_add_act_f32(b.isa, <const float *>b.dx + r * b.C, <const float *>b.y + r * b.ys, 0, 0, b.C,
                           <float *>b.dx + r * b.C)


def add_rows(floating[:, ::1] d,            # IN/OUT (P, C)
             const floating[:, :] s,        # IN  (P, C), channels contiguous, pixels s.strides[0] apart
             long nchunks, int isa, int nthreads):
    """d += s pixel by pixel, for an s whose pixels are not C apart (a channel slice)."""
    cdef Py_ssize_t P = d.shape[0]
    cdef int C = d.shape[1]
    if s.shape[0] != P or s.shape[1] != C:
        raise ValueError(f"add_rows: shapes differ: d {(P, C)}, s {(s.shape[0], s.shape[1])}")
    if P == 0 or C == 0:
        return
    if C > 1 and s.strides[1] != sizeof(floating) or s.strides[0] % sizeof(floating):
        raise ValueError(f"add_rows: s's channels must be contiguous. Received: strides "
                         f"{(s.strides[0], s.strides[1])}")
    cdef _rows_job b
    b.f64 = floating is double
    b.isa = isa; b.act = 0; b.C = C
    b.ys = s.strides[0] // sizeof(floating)
    b.dy = NULL; b.y = &s[0, 0]; b.dx = &d[0, 0]
    run_chunks(_add_rows, &b, P, min(nchunks, P), nthreads, True, 0)


# ---- row copies (a concatenation's inputs into their channel slices, a slice of a gradient out of
# its wider array: fastconv/ops/norm.py _copy_into) ---------------------------------------------------
ctypedef struct _copy_job:
    size_t nbytes         # bytes of one row
    Py_ssize_t ds, ss     # bytes from one row of d (of s) to the next
    char *d
    const char *s


cdef void _copy_rows(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *scratch) noexcept nogil:
    cdef const _copy_job *b = <const _copy_job *>jp
    cdef Py_ssize_t r
    for r in range(r0, r1):
        memcpy(b.d + r * b.ds, b.s + r * b.ss, b.nbytes)


def copy_rows(floating[:, :] d,             # OUT (P, C), channels contiguous, rows d.strides[0] apart
              const floating[:, :] s,       # IN  (P, C), channels contiguous, rows s.strides[0] apart
              long nchunks, int nthreads):
    """d[p, :] = s[p, :] for every row p (each row one memcpy); d and s must not overlap."""
    cdef Py_ssize_t P = d.shape[0]
    cdef Py_ssize_t C = d.shape[1]
    if s.shape[0] != P or s.shape[1] != C:
        raise ValueError(f"copy_rows: shapes differ: d {(P, C)}, s {(s.shape[0], s.shape[1])}")
    if P == 0 or C == 0:
        return
    if C > 1 and (d.strides[1] != sizeof(floating) or s.strides[1] != sizeof(floating)):
        raise ValueError(f"copy_rows: channels must be contiguous. Received: strides d {(d.strides[0], d.strides[1])}, "
                         f"s {(s.strides[0], s.strides[1])}")
    cdef _copy_job b
    b.nbytes = <size_t>C * sizeof(floating)
    b.ds = d.strides[0]; b.ss = s.strides[0]
    b.d = <char *>&d[0, 0]; b.s = <const char *>&s[0, 0]
    run_chunks(_copy_rows, &b, P, min(nchunks, P), nthreads, True, 0)
