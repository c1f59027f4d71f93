# cython: language_level=3
"""Pooling kernels: max (with optional int32 argmax), average and global average, forward and
backward (NHWC, float32 and float64).

Design (loops in src/pool_impl.h):
- Vectorised over channels (C innermost); one pass over the input per forward.
- The plan (fastconv/ops/_plan.py PoolPlan) gives the geometry and the split: one contiguous range
  of units per thread, static schedule (run_split, _parallel.pxd); these wrappers fill fc_poolp
  and run the loop.
- Forward: output rows (n, oh).
- Backward: every dx element is written exactly once by the thread owning it (no races, no zero
  fill).  Non-overlapping windows (stride >= pool size): one fused pass over output rows, each
  owning the band of dx rows up to the next window (with a saved argmax: one pass over dx rows).
  Overlapping windows, per dx row: a gather per dx pixel over its covering windows (max pooling:
  their dy where their argmax is the pixel; average: dy / count); max pooling recomputes the argmax of the covering
  output rows from x into a per-thread ring, or reads an argmax saved by the forward (the
  input-plane index ih*W + iw, int32, written by the forward's vector loops; the op refuses a
  saved argmax when H*W > INT32_MAX).
- Dilation (dh, dw: taps start + i*d) and ceil mode (the op's output size; eh, ew = H + bottom,
  W + right padding bound the include_pad divisor, PyTorch's rule) run in the same loops; the
  fused backward is for undilated non-overlapping windows only.
- Sizes: the geometry (fc_poolp) is int; fastconv/ops/pool.py checks every dimension, padded
  extent and window against INT32_MAX before calling (see pool_impl.h); offsets are 64-bit.
- Global average pooling: forward parallel over images, backward over dx rows.
Callers (fastconv/ops/pool.py) validate shapes, plan and allocate outputs; nothing here raises
except MemoryError, and ValueError for a plan that does not match the arrays.
"""
from libc.string cimport memset
from libc.stdint cimport int32_t
from _common cimport floating
from _parallel cimport run_split, stream_ok

cdef extern from "pool_kernels.h" nogil:
    ctypedef struct fc_poolp:
        int N, H, W, C
        int OH, OW, KH, KW
        int sh, sw, ph, pw
        int include_pad
        int dh, dw
        int eh, ew
        int stream
    int fc_pool_vector_bytes(int isa)
    long fc_pool_backward_units(const fc_poolp *p, int saved_argmax)
    size_t fc_pool_scratch_f32(int isa, const fc_poolp *p)
    size_t fc_pool_scratch_f64(int isa, const fc_poolp *p)
    void fc_maxpool_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, int32_t *am, long r0, long r1)
    void fc_maxpool_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, int32_t *am, long r0, long r1)
    void fc_maxpool_backward_f32(int isa, const fc_poolp *p, const float *x, const float *dy, const int32_t *am,
                                 float *dx, long r0, long r1, char *scratch)
    void fc_maxpool_backward_f64(int isa, const fc_poolp *p, const double *x, const double *dy, const int32_t *am,
                                 double *dx, long r0, long r1, char *scratch)
    void fc_avgpool_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, long r0, long r1)
    void fc_avgpool_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, long r0, long r1)
    void fc_avgpool_backward_f32(int isa, const fc_poolp *p, const float *dy, float *dx, long r0, long r1,
                                 char *scratch)
    void fc_avgpool_backward_f64(int isa, const fc_poolp *p, const double *dy, double *dx, long r0, long r1,
                                 char *scratch)
    void fc_gap_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, long n0, long n1, char *scratch)
    void fc_gap_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, long n0, long n1, char *scratch)
    void fc_gap_backward_f32(int isa, const fc_poolp *p, const float *dy, float *dx, long r0, long r1)
    void fc_gap_backward_f64(int isa, const fc_poolp *p, const double *dy, double *dx, long r0, long r1)


# One call of any pooling kernel: chunk j of the plan's split runs units [u0, u1) with the f32 or
# the f64 kernel (f64 says which type the pointers point to).  Unused fields stay NULL.
ctypedef struct _job:
    fc_poolp p
    int isa, f64
    const void *x        # x (max backward: unused when am is given)
    const void *dy
    const int32_t *am    # saved argmax (max backward), or NULL
    int32_t *am_out      # argmax to write (max forward), or NULL
    void *out            # y or dx


cdef void _max_fwd(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_maxpool_forward_f64(b.isa, &b.p, <const double *>b.x, <double *>b.out, b.am_out, r0, r1)
    else:
        fc_maxpool_forward_f32(b.isa, &b.p, <const float *>b.x, <float *>b.out, b.am_out, r0, r1)


cdef void _max_bwd(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_maxpool_backward_f64(b.isa, &b.p, <const double *>b.x, <const double *>b.dy, b.am, <double *>b.out,
                                r0, r1, s)
    else:
        fc_maxpool_backward_f32(b.isa, &b.p, <const float *>b.x, <const float *>b.dy, b.am, <float *>b.out,
                                r0, r1, s)


cdef void _avg_fwd(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_avgpool_forward_f64(b.isa, &b.p, <const double *>b.x, <double *>b.out, r0, r1)
    else:
        fc_avgpool_forward_f32(b.isa, &b.p, <const float *>b.x, <float *>b.out, r0, r1)


cdef void _avg_bwd(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_avgpool_backward_f64(b.isa, &b.p, <const double *>b.dy, <double *>b.out, r0, r1, s)
    else:
        fc_avgpool_backward_f32(b.isa, &b.p, <const float *>b.dy, <float *>b.out, r0, r1, s)


cdef void _gap_fwd(const void *jp, Py_ssize_t j, Py_ssize_t n0, Py_ssize_t n1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_gap_forward_f64(b.isa, &b.p, <const double *>b.x, <double *>b.out, n0, n1, s)
    else:
        fc_gap_forward_f32(b.isa, &b.p, <const float *>b.x, <float *>b.out, n0, n1, s)


cdef void _gap_bwd(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_gap_backward_f64(b.isa, &b.p, <const double *>b.dy, <double *>b.out, r0, r1)
    else:
        fc_gap_backward_f32(b.isa, &b.p, <const float *>b.dy, <float *>b.out, r0, r1)


cdef int _init(_job *b, tuple g, Py_ssize_t *x_shape, Py_ssize_t *y_shape, int y_ndim, bint f64,
               int isa) except -1:
    """The job of a call: fc_poolp from the plan's geometry, which must describe x (N, H, W, C) and
    y (N, OH, OW, C), or (N, C) for global pooling (the kernels trust it)."""
    memset(b, 0, sizeof(_job))
    cdef fc_poolp *p = &b.p
    (p.N, p.H, p.W, p.C, p.OH, p.OW, p.KH, p.KW, p.sh, p.sw, p.ph, p.pw, p.include_pad,
     p.dh, p.dw, p.eh, p.ew) = g
    if p.dh < 1 or p.dw < 1 or p.sh < 1 or p.sw < 1 or p.KH < 1 or p.KW < 1:
        raise ValueError(f"pool: the plan's geometry {g} has a window, stride or dilation below 1")
    if (x_shape[0] != p.N or x_shape[1] != p.H or x_shape[2] != p.W or x_shape[3] != p.C or y_shape[0] != p.N
            or (y_ndim == 4 and (y_shape[1] != p.OH or y_shape[2] != p.OW or y_shape[3] != p.C))
            or (y_ndim == 2 and (y_shape[1] != p.C or p.OH != 1 or p.OW != 1))):
        raise ValueError(f"pool: the plan's geometry {g} does not match the arrays")
    b.f64 = f64
    b.isa = isa
    return 0


cdef int _check_units(tuple split, Py_ssize_t units, tuple g) except -1:
    if split[0] != units:
        raise ValueError(f"pool: the plan's split {split} does not cut the kernel's {units} units of {g}")
    return 0


cdef inline int _stream(const void *out, size_t nbytes, int channels, size_t itemsize, int isa) noexcept nogil:
    return stream_ok(out, nbytes, channels, itemsize, fc_pool_vector_bytes(isa) if itemsize == 4 else 16)


cdef inline size_t _scratch(const _job *b) noexcept nogil:
    return fc_pool_scratch_f64(b.isa, &b.p) if b.f64 else fc_pool_scratch_f32(b.isa, &b.p)


def max_forward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C)
                floating[:, :, :, ::1] y,           # OUT (N, OH, OW, C)
                int32_t[:, :, :, ::1] argmax,       # OUT (N, OH, OW, C) input-plane index, or None
                tuple geometry, tuple split, int isa):
    """y = max_pool2d(x) as PoolPlan planned it (geometry, split = RowSplit.args())."""
    cdef _job b
    _init(&b, geometry, x.shape, y.shape, 4, floating is double, isa)
    cdef long R = <long>b.p.N * b.p.OH
    _check_units(split, R, geometry)
    if R == 0 or b.p.OW == 0 or b.p.C == 0:
        return
    if argmax is not None:
        if argmax.shape[0] != y.shape[0] or argmax.shape[1] != y.shape[1] or argmax.shape[2] != y.shape[2] \
                or argmax.shape[3] != y.shape[3]:
            raise ValueError("max_forward: argmax must have y's shape")
        b.am_out = &argmax[0, 0, 0, 0]
    b.x = &x[0, 0, 0, 0]
    b.out = &y[0, 0, 0, 0]
    b.p.stream = _stream(b.out, <size_t>R * b.p.OW * b.p.C * sizeof(floating), b.p.C, sizeof(floating), isa)
    if b.am_out != NULL and sizeof(floating) == 4:  # float32: the argmax is streamed with y (same size)
        b.p.stream = b.p.stream and _stream(b.am_out, <size_t>R * b.p.OW * b.p.C * 4, b.p.C, 4, isa)
    run_split(_max_fwd, &b, split, 0)


def max_backward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C) (unused when argmax is given)
                 const floating[:, :, :, ::1] dy,    # IN  (N, OH, OW, C)
                 const int32_t[:, :, :, ::1] argmax,  # IN  saved argmax, or None to recompute from x
                 floating[:, :, :, ::1] dx,          # OUT (N, H, W, C)
                 tuple geometry, tuple split, int isa):
    """dx of max_pool2d: dy goes to the first maximum of each window; every dx element is written."""
    cdef _job b
    _init(&b, geometry, dx.shape, dy.shape, 4, floating is double, isa)
    if x.shape[0] != dx.shape[0] or x.shape[1] != dx.shape[1] or x.shape[2] != dx.shape[2] \
            or x.shape[3] != dx.shape[3]:
        raise ValueError("max_backward: x must have dx's shape")
    _check_units(split, fc_pool_backward_units(&b.p, argmax is not None), geometry)
    if b.p.N == 0 or b.p.H == 0 or b.p.W == 0 or b.p.C == 0:
        return
    if argmax is not None:
        if argmax.shape[0] != dy.shape[0] or argmax.shape[1] != dy.shape[1] or argmax.shape[2] != dy.shape[2] \
                or argmax.shape[3] != dy.shape[3]:
            raise ValueError("max_backward: argmax must have dy's shape")
        b.am = &argmax[0, 0, 0, 0]
    b.x = &x[0, 0, 0, 0]
    b.dy = &dy[0, 0, 0, 0]
    b.out = &dx[0, 0, 0, 0]
    b.p.stream = _stream(b.out, <size_t>b.p.N * b.p.H * b.p.W * b.p.C * sizeof(floating), b.p.C,
                         sizeof(floating), isa)
    run_split(_max_bwd, &b, split, _scratch(&b))


def avg_forward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C)
                floating[:, :, :, ::1] y,           # OUT (N, OH, OW, C)
                tuple geometry, tuple split, int isa):
    """y = avg_pool2d(x) as PoolPlan planned it (include_pad is the geometry's last field)."""
    cdef _job b
    _init(&b, geometry, x.shape, y.shape, 4, floating is double, isa)
    cdef long R = <long>b.p.N * b.p.OH
    _check_units(split, R, geometry)
    if R == 0 or b.p.OW == 0 or b.p.C == 0:
        return
    b.x = &x[0, 0, 0, 0]
    b.out = &y[0, 0, 0, 0]
    b.p.stream = _stream(b.out, <size_t>R * b.p.OW * b.p.C * sizeof(floating), b.p.C, sizeof(floating), isa)
    run_split(_avg_fwd, &b, split, 0)


def avg_backward(const floating[:, :, :, ::1] dy,   # IN  (N, OH, OW, C)
                 floating[:, :, :, ::1] dx,         # OUT (N, H, W, C)
                 tuple geometry, tuple split, int isa):
    """dx of avg_pool2d; every dx element is written."""
    cdef _job b
    _init(&b, geometry, dx.shape, dy.shape, 4, floating is double, isa)
    _check_units(split, fc_pool_backward_units(&b.p, 0), geometry)
    if b.p.N == 0 or b.p.H == 0 or b.p.W == 0 or b.p.C == 0:
        return
    b.dy = &dy[0, 0, 0, 0]
    b.out = &dx[0, 0, 0, 0]
    b.p.stream = _stream(b.out, <size_t>b.p.N * b.p.H * b.p.W * b.p.C * sizeof(floating), b.p.C,
                         sizeof(floating), isa)
    run_split(_avg_bwd, &b, split, _scratch(&b))


def global_avg_forward(const floating[:, :, :, ::1] x,   # IN  (N, H, W, C)
                       floating[:, ::1] y,               # OUT (N, C)
                       tuple geometry, tuple split, size_t scratch_bytes, int isa):
    """y[n, c] = mean of x[n, :, :, c]; parallel over images, scratch_bytes per thread (the plan's)."""
    cdef _job b
    _init(&b, geometry, x.shape, y.shape, 2, floating is double, isa)
    if b.p.KH != b.p.H or b.p.KW != b.p.W:
        raise ValueError(f"pool: the plan's geometry {geometry} is not a global window")
    _check_units(split, b.p.N, geometry)
    if b.p.N == 0 or b.p.C == 0:
        return
    b.x = &x[0, 0, 0, 0]
    b.out = &y[0, 0]
    run_split(_gap_fwd, &b, split, scratch_bytes)


def global_avg_backward(const floating[:, ::1] dy,       # IN  (N, C)
                        floating[:, :, :, ::1] dx,       # OUT (N, H, W, C)
                        tuple geometry, tuple split, int isa):
    """dx[n, h, w, c] = dy[n, c] / (H*W); parallel over dx rows."""
    cdef _job b
    _init(&b, geometry, dx.shape, dy.shape, 2, floating is double, isa)
    if b.p.KH != b.p.H or b.p.KW != b.p.W:
        raise ValueError(f"pool: the plan's geometry {geometry} is not a global window")
    cdef long R = <long>b.p.N * b.p.H
    _check_units(split, R, geometry)
    if R == 0 or b.p.W == 0 or b.p.C == 0:
        return
    b.dy = &dy[0, 0]
    b.out = &dx[0, 0, 0, 0]
    run_split(_gap_bwd, &b, split, 0)
