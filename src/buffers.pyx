# cython: language_level=3
"""Reuse of freed NumPy buffers across training steps: a NumPy data-memory handler (src/buffers_impl.h)
and the switch that installs it.

- `handler()`: the capsule NumPy's PyDataMem_SetHandler takes (named "mem_handler").
- `set_handler(capsule)`: installs it for the calling context and returns the previous one; the
  function is taken from NumPy's C-API table (slot 304, stable since NumPy 1.22), so the module needs
  no NumPy headers.
- `open_cache(limit, min_bytes)` / `close_cache(keep)`: keep freed blocks (>= min_bytes, <= limit bytes in
  all) for reuse, or stop keeping and serving them, leaving at most `keep` bytes of the most recently
  freed parked for the next open.  `trim_cache(keep)`: free the oldest until at most `keep` bytes stay.  `stats()`: (hits, misses, cached blocks, bytes).
fastconv/engine/trainer.py uses these for the duration of fit / evaluate / predict.
"""
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport uint8_t

cdef extern from "buffers_impl.h" nogil:
    ctypedef struct fc_buf_cache:
        int open, n
        size_t bytes
        long long hits, misses
    fc_buf_cache fc_buf
    void *fc_buf_handler_v1
    void fc_buf_set_open(int open, size_t limit, size_t min_bytes)
    int fc_buf_trim(size_t keep)

ctypedef object (*set_handler_fn)(object)

_API_SLOT = 304  # PyDataMem_SetHandler in NumPy's PyArray_API table (numpy/__multiarray_api.h)
cdef set_handler_fn _set = NULL


def handler():
    """The handler capsule (a new capsule over the one static handler)."""
    return PyCapsule_New(&fc_buf_handler_v1, "mem_handler", NULL)


def set_handler(capsule):
    """Install ``capsule`` (or None: NumPy's default) for the calling context; returns the previous."""
    global _set
    if _set == NULL:
        try:
            from numpy._core import _multiarray_umath as m
        except ImportError:  # NumPy 1.x
            from numpy.core import _multiarray_umath as m
        api = m._ARRAY_API
        if not PyCapsule_IsValid(api, NULL):
            raise RuntimeError("NumPy's C-API capsule is not readable")
        _set = <set_handler_fn>(<void **>PyCapsule_GetPointer(api, NULL))[_API_SLOT]
    return _set(capsule)


def open_cache(size_t limit, size_t min_bytes):
    fc_buf_set_open(1, limit, min_bytes)


def close_cache(size_t keep=0):
    """Stop keeping and serving blocks; free all but the most recently freed ``keep`` bytes of them
    (parked for the next open). Returns how many were freed."""
    fc_buf_set_open(0, 0, 0)
    return fc_buf_trim(keep)


def trim_cache(size_t keep=0):
    """Free the blocks freed longest ago until at most ``keep`` bytes stay; returns how many."""
    return fc_buf_trim(keep)


def stats():
    return (fc_buf.hits, fc_buf.misses, fc_buf.n, fc_buf.bytes)
