# cython: language_level=3
"""One optimizer step over every trainable weight in one call (float32 and float64).

Design (loops in src/optim_impl.h):
- The weights are a *segment table*: per weight (segment) the addresses of the param, its gradient and
  up to three slot arrays (int64, C-contiguous arrays of one dtype, made and kept alive by
  fastconv/optimizers/_compiled.py), its length, whether weight decay applies and its clip scale.
- The work is cut into *chunks*, (segment, start, stop) rows of at most a few thousand elements, and
  the chunks run on an OpenMP dynamic schedule: one pass over all weights, whatever their sizes.
- Each element's arithmetic does not depend on the chunking or on the thread that runs it.
Callers check dtypes, contiguity, that no two segments overlap and that the addresses stay valid;
nothing here raises.
"""
from cpython.buffer cimport PyBUF_ANY_CONTIGUOUS, PyBuffer_Release, PyObject_GetBuffer
from cython.parallel cimport prange

cdef extern from "optim_impl.h" nogil:
    ctypedef struct fc_opt_args:
        int kind, flags, clip
        double clipvalue
        double wd
        double c[8]
    int FC_OPT_NKINDS
    void fc_opt_update_f32(const fc_opt_args *a, float *p, const float *g, float *s0, float *s1, float *s2,
                           Py_ssize_t n, double scale, int wd_on)
    void fc_opt_update_f64(const fc_opt_args *a, double *p, const double *g, double *s0, double *s1,
                           double *s2, Py_ssize_t n, double scale, int wd_on)
    double fc_opt_sumsq_f32(const float *g, Py_ssize_t n)
    double fc_opt_sumsq_f64(const double *g, Py_ssize_t n)

#: optimizer kind -> C code (the order of the enum FC_OPT_* in optim_impl.h)
KINDS = {"sgd": 0, "rmsprop": 1, "adam": 2, "adagrad": 3, "adadelta": 4, "adamax": 5, "nadam": 6}
FLAGS = {"momentum": 1, "nesterov": 2, "centered": 4, "amsgrad": 8}
CLIPS = {"none": 0, "scale": 1, "value": 2}
assert len(KINDS) == FC_OPT_NKINDS


def update(const long long[:, ::1] seg,      # IN (S, 5) addresses: param, grad, slot 0..2 (0: none)
           const unsigned char[::1] wd_on,   # IN (S,) weight decay applies to the segment
           const double[::1] scale,          # IN (S,) clip scale (clip "scale")
           const long long[:, ::1] chunks,   # IN (C, 3) segment, start, stop
           bint f64, int kind, int flags, int clip, double clipvalue, double wd, coefs, int nthreads):
    """One update of every chunk: clip, weight decay, the optimizer's slots and the params."""
    cdef fc_opt_args a
    cdef Py_ssize_t j, s, i0, i1, nc = chunks.shape[0]
    a.kind = kind; a.flags = flags; a.clip = clip; a.clipvalue = clipvalue; a.wd = wd
    for j in range(8):
        a.c[j] = float(coefs[j]) if j < len(coefs) else 0.0
    if nc == 0:
        return
    if nthreads < 1:
        nthreads = 1
    if nthreads > nc:
        nthreads = <int>nc
    with nogil:
        for j in prange(nc, num_threads=nthreads, schedule='dynamic'):
            s = chunks[j, 0]; i0 = chunks[j, 1]; i1 = chunks[j, 2]
            if f64:
                fc_opt_update_f64(&a, <double *>seg[s, 0] + i0, <const double *>seg[s, 1] + i0,
                                  (<double *>seg[s, 2] + i0) if seg[s, 2] else NULL,
                                  (<double *>seg[s, 3] + i0) if seg[s, 3] else NULL,
                                  (<double *>seg[s, 4] + i0) if seg[s, 4] else NULL,
                                  i1 - i0, scale[s], wd_on[s])
            else:
                fc_opt_update_f32(&a, <float *>seg[s, 0] + i0, <const float *>seg[s, 1] + i0,
                                  (<float *>seg[s, 2] + i0) if seg[s, 2] else NULL,
                                  (<float *>seg[s, 3] + i0) if seg[s, 3] else NULL,
                                  (<float *>seg[s, 4] + i0) if seg[s, 4] else NULL,
                                  i1 - i0, scale[s], wd_on[s])


def sumsq(const long long[:, ::1] seg,      # IN (S, 5) addresses, column 1: the gradients
          const long long[:, ::1] chunks,   # IN (C, 3) segment, start, stop
          double[::1] out,                  # OUT (C,) each chunk's sum of squared gradients
          bint f64, int nthreads):
    """Per chunk, the sum of the squared gradient elements (in double; the caller adds them up per
    segment in chunk order, so the sums do not depend on the threads)."""
    cdef Py_ssize_t j, s, nc = chunks.shape[0]
    if nc == 0:
        return
    if nthreads < 1:
        nthreads = 1
    if nthreads > nc:
        nthreads = <int>nc
    with nogil:
        for j in prange(nc, num_threads=nthreads, schedule='dynamic'):
            s = chunks[j, 0]
            if f64:
                out[j] = fc_opt_sumsq_f64(<const double *>seg[s, 1] + chunks[j, 1], chunks[j, 2] - chunks[j, 1])
            else:
                out[j] = fc_opt_sumsq_f32(<const float *>seg[s, 1] + chunks[j, 1], chunks[j, 2] - chunks[j, 1])


def address(obj):
    """The data address of a contiguous buffer (a C- or F-contiguous NumPy array; ValueError for
    another), for the segment tables and ``ops._validate.aligned_empty``: a fraction of the cost of
    ``a.ctypes.data`` or ``a.__array_interface__`` (each builds an object, ~1-2 us)."""
    cdef Py_buffer view
    PyObject_GetBuffer(obj, &view, PyBUF_ANY_CONTIGUOUS)
    cdef size_t addr = <size_t>view.buf
    PyBuffer_Release(&view)
    return addr
