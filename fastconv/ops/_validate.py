"""Argument checks shared by every op: dtypes, ranks, shapes. Errors quote what was received."""
from __future__ import annotations

import math

import numpy as np

from fastconv._kernels import runtime as _rt
from fastconv._kernels.optim import address as _address

# outputs this large are 64-byte aligned so kernels may stream them (STREAM_MIN_BYTES, src/_parallel.pxd)
STREAM_BYTES = _rt.STREAM_BYTES

_FLOATS = (np.float32, np.float64)


def as_float_array(op: str, name: str, x, dtype=None) -> np.ndarray:
    """C-contiguous float32/float64 view or copy of x, never x itself modified.

    Integer and bool arrays become float32; complex, object and string arrays raise TypeError.
    With dtype given, the result has that dtype (used to bring w and bias to x's dtype).
    """
    a = np.asarray(x)
    kind = a.dtype.kind
    if kind in "cOSUVMm":
        raise TypeError(f"{op}: {name} must be a real numeric array. Received: {name}.dtype={a.dtype}")
    if dtype is None:
        dtype = a.dtype if a.dtype in _FLOATS else np.float32
        if kind == "f" and a.dtype not in _FLOATS:  # float16 and friends
            dtype = np.float32
    return np.ascontiguousarray(a, dtype=dtype)


def check_rank(op: str, name: str, a: np.ndarray, rank: int, layout: str) -> None:
    if a.ndim != rank:
        raise ValueError(f"{op}: {name} must be {rank}-D {layout}. Received: {name}.shape={a.shape}")


def check_bias(op: str, bias: np.ndarray, channels: int, w_shape) -> None:
    if bias.shape != (channels,):
        raise ValueError(f"{op}: bias must have shape ({channels},) to match w.shape={tuple(w_shape)}. "
                         f"Received: bias.shape={bias.shape}")


def check_dy(op: str, dy: np.ndarray, expected: tuple) -> None:
    if dy.shape != tuple(expected):
        raise ValueError(f"{op}: dy must have the output's shape {tuple(expected)}. Received: dy.shape={dy.shape}")


def check_output(op: str, out_hw, in_shape, k_hw, what: str = "kernel") -> None:
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise ValueError(f"{op}: the {what} {tuple(k_hw)} is larger than the padded input "
                         f"(x.shape={tuple(in_shape)}); the output would be empty ({out_hw[0]}x{out_hw[1]})")


def aligned_empty(shape, dtype) -> np.ndarray:
    """Uninitialised C-contiguous array starting on a 64-byte (cache line) boundary.

    np.empty only guarantees 16 bytes: then every other 32-byte vector load or store of a kernel
    whose rows are a multiple of 64 bytes splits across two cache lines.
    """
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize * math.prod(shape)
    buf = np.empty(nbytes + 64, np.uint8)
    off = -_address(buf) % 64  # not buf.ctypes.data: that builds a ctypes object (~1.5 us a call)
    return buf[off:off + nbytes].view(dtype).reshape(shape)


def empty_output(shape, dtype) -> np.ndarray:
    """Uninitialised output, 64-byte aligned when large enough for the kernels to stream it."""
    if np.dtype(dtype).itemsize * math.prod(shape) < STREAM_BYTES:
        return np.empty(shape, dtype)
    return aligned_empty(shape, dtype)


def pixel_rows(t) -> np.ndarray | None:
    """``t`` (..., C) as a (P, C) view when its pixels are evenly spaced with contiguous channels (a
    channel slice ``a[..., c0:c1]`` of a C-contiguous ``a``: a copy-free concatenation's producer
    output), else None. Rows are then ``strides[0]`` bytes apart."""
    if type(t) is not np.ndarray or t.ndim < 2 or t.size == 0:
        return None
    c, item = t.shape[-1], t.itemsize
    if c > 1 and t.strides[-1] != item:
        return None
    lead = t.shape[:-1]
    ps, span = c * item, 1  # the pixel stride, from the innermost leading axis longer than 1
    for i in range(len(lead) - 1, -1, -1):
        if lead[i] > 1:
            ps = t.strides[i] // span
            break
        span *= lead[i]
    want = ps
    for i in range(len(lead) - 1, -1, -1):
        if lead[i] > 1 and t.strides[i] != want:
            return None
        want *= lead[i]
    if ps < c * item or ps % item:
        return None
    return np.lib.stride_tricks.as_strided(t, (t.size // c, c), (ps, item), writeable=False)
