"""Shared by the large-shape tests (tests/ is on sys.path under pytest).

These tests push one size past a point where a 32-bit index would wrap (a row of more than
2**31 / 6 pixels split into tiles, a tensor of more than 2**31 elements, ...) and check the op
against the reference on a sample of outputs or a closed form.  They are marked ``large``, so
``pytest -m "not large"`` leaves them out; each stays within a few GiB resident and seconds.
"""
import ctypes
import mmap
import os
import sys

import numpy as np
import pytest

INT32_MAX = 2**31 - 1


def lazy_zeros(shape, dtype=np.float32):
    """np.zeros(shape): its pages are mapped on first touch, so an op that reads a few rows of an
    8 GiB tensor costs only those rows.  Where the operating system refuses the address space the
    test is skipped, with the reason in the report (never silently)."""
    try:
        return np.zeros(shape, dtype)
    except MemoryError as err:  # overcommit disabled or an address-space limit (ulimit -v)
        gib = np.prod(shape, dtype=np.float64) * np.dtype(dtype).itemsize / 2**30
        pytest.skip(f"the OS refused {gib:.1f} GiB of address space for {shape}: {err}")


# ---- tensors whose head aliases one small block (moved here from test_large_pool_norm.py, whose
# docstring explains them; test_elementwise.py uses them too) --------------------------------------

_PAGE = mmap.PAGESIZE
_PERIOD = 3 << 20  # bytes of the aliased block (3 MiB: a few stay in cache; 2**34 is not a multiple)
_MAP_FIXED, _MAP_NORESERVE, _MAP_POPULATE = 0x10, 0x4000, 0x8000
_RW = mmap.PROT_READ | mmap.PROT_WRITE


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


class _TailMapped:
    """Owner of the mapping behind a _tail_mapped array (numpy keeps it alive as the array's base)."""

    base = None

    def __init__(self, shape, dtype, tail_elems, populate):
        if not sys.platform.startswith("linux") or not hasattr(os, "memfd_create"):
            pytest.skip("_tail_mapped needs Linux (memfd_create, MAP_FIXED)")
        self._libc = libc = _libc()
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        tail = min(nbytes, -(-tail_elems * dtype.itemsize // _PAGE) * _PAGE)
        head = (nbytes - tail) // _PAGE * _PAGE
        self.size = _PAGE + head + -(-(nbytes - head) // _PAGE) * _PAGE + _PAGE  # guard pages both ends
        base = libc.mmap(None, self.size, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            pytest.skip(f"the OS refused {self.size / 2**30:.1f} GiB of address space")
        self.base = base
        start = base + _PAGE
        # populate: fill the page tables now (one call) rather than by a fault per 4 KiB page written
        flags = mmap.MAP_SHARED | _MAP_FIXED | (_MAP_POPULATE if populate else 0)
        fd = os.memfd_create("fastconv-test-head")
        try:
            os.ftruncate(fd, _PERIOD)
            for off in range(0, head, _PERIOD):
                if libc.mmap(start + off, min(_PERIOD, head - off), _RW, flags, fd, 0) != start + off:
                    raise OSError(ctypes.get_errno(), "mmap of the head block failed")
        finally:
            os.close(fd)
        own = self.size - 2 * _PAGE - head
        if libc.mmap(start + head, own, _RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED, -1, 0) != start + head:
            raise OSError(ctypes.get_errno(), "mmap of the tail failed")
        self.head_elems = head // dtype.itemsize
        self.__array_interface__ = {"shape": tuple(shape), "typestr": dtype.str, "data": (start, False),
                                    "version": 3}

    def __del__(self):
        if self.base is not None:
            self._libc.munmap(self.base, self.size)


def tail_mapped(shape, dtype=np.float32, *, tail_elems, fill=0.0, populate=False):
    """(a, h): a C-contiguous ndarray of `shape` whose flat elements [h, size) (at least the last
    tail_elems) are its own memory, filled with `fill`; elements [0, h) alias one zeroed block of
    _PERIOD bytes.  populate=True for a tensor that will be written in full."""
    owner = _TailMapped(shape, dtype, tail_elems, populate)
    a = np.asarray(owner)
    a.reshape(-1)[owner.head_elems:] = fill
    return a, owner.head_elems
