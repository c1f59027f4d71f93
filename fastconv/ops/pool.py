"""Pooling ops, forward and backward: validate -> plan -> allocate -> kernel.

x (N, H, W, C) -> y (N, OH, OW, C).  Windows may be dilated (taps start + i*dilation) and
ceil_mode=True sizes the output as PyTorch does (fastconv._shapes.pool_output_size).  Max pooling pads with -inf and sends each output's gradient
to the first maximum of its window in row-major order (PyTorch's rule; a NaN counts as a
maximum); max_pool2d_grad recomputes the argmax from x inside the kernel, so the op keeps no
state, or reads one saved by max_pool2d(return_argmax=True) (MaxPooling2D does that in training:
the forward writes it at little cost and the gradient of overlapping windows then skips the
recomputation).  Average pooling
divides by the real pixel count, or by KH*KW with count_include_pad=True.  The plan (geometry, thread
split, variant) is fastconv/ops/_plan.py pool_plan / global_pool_plan.  All arithmetic runs in
fastconv._kernels.pool (src/pool_impl.h) with the GIL released.
"""
from __future__ import annotations

import numpy as np

from fastconv import _dispatch
from fastconv._kernels import pool as _k
import math

from fastconv._shapes import effective_kernel, kernel_stride, pool_output_size, positive_pair, resolve_padding
from fastconv.ops import _plan as _plans
from fastconv.ops._plan import cached_geometry as _cached_geometry
from fastconv.ops._validate import as_float_array, check_dy, check_output, check_rank, empty_output


# The kernels keep the geometry in C ints (fc_poolp in src/pool_kernels.h) and the argmax in int32;
# every size that stays int is checked against this once, here, and offsets are 64-bit in C.
_INT32_MAX = 2**31 - 1


def _check_dims(op, x_shape) -> None:
    """Every dimension of x fits the kernels' int geometry."""
    if max(x_shape) > _INT32_MAX:
        raise ValueError(f"{op}: every dimension of x must be at most 2**31 - 1 = {_INT32_MAX}. "
                         f"Received: x.shape={x_shape}")


def _check_int_geometry(op, x_shape, k, s, pads, pool_size, stride, padding) -> None:
    """The window geometry fits the kernels' ints: window starts and ends (o*s - pad, start + k)
    are bounded by the padded extent, so that, the window and the stride are checked."""
    for axis, (n, kk, ss, (lo, hi)) in enumerate(zip(x_shape[1:3], k, s, pads)):
        if n + lo + hi > _INT32_MAX or kk > _INT32_MAX or ss > _INT32_MAX:
            raise ValueError(
                f"{op}: the padded input, the window and the stride must each be at most 2**31 - 1 = "
                f"{_INT32_MAX} along axis {axis + 1} (padded size {n + lo + hi}, window {kk}, stride {ss}). "
                f"Received: pool_size={pool_size!r}, stride={stride!r}, padding={padding!r}, x.shape={x_shape}")


def _geometry(op, x, pool_size, stride, padding, count_include_pad=False, dilation=1, ceil_mode=False) -> tuple:
    """The checked fc_poolp geometry (N, H, W, C, OH, OW, KH, KW, sh, sw, ph, pw, include_pad, dh, dw,
    eh, ew)."""
    check_rank(op, "x", x, 4, "NHWC (N, H, W, C)")
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise ValueError(f"{op}: ceil_mode must be True or False. Received: ceil_mode={ceil_mode!r}")
    return _cached_geometry(_geometry_of, op, x.shape, pool_size, stride, padding, count_include_pad,
                            dilation, bool(ceil_mode))


def _empty_window(n: int, k: int, s: int, d: int, lo: int, out: int) -> bool:
    """Whether some window of an axis (n pixels, window k, stride s, dilation d, before-padding lo,
    out windows) has no tap inside the input.  A window starting in [0, n) has one (its first);
    windows starting at or past n are last, so the last one is checked; a window starting at
    st < 0 has its first real tap at index ceil(-st / d), pixel st mod d: empty when that index
    is k or more (worst for the first window) or that pixel is n or more (only when n < d; the
    pixel repeats with period d / gcd(s, d) in the window index, so at most that many are checked)."""
    if (out - 1) * s - lo >= n or -(-lo // d) >= k:
        return True
    if n >= d:
        return False
    c = min(out, -(-lo // s), d // math.gcd(s, d))  # windows starting before 0, one period at most
    for o0 in range(0, c, 1 << 20):
        o = np.arange(o0, min(c, o0 + (1 << 20)), dtype=np.int64)
        if (np.mod(o * s - lo, d) >= n).any():
            return True
    return False


def _geometry_of(op, x_shape, pool_size, stride, padding, count_include_pad, dilation, ceil_mode) -> tuple:
    _check_dims(op, x_shape)
    k = positive_pair("pool_size", pool_size, op)
    s = k if stride is None else positive_pair("stride", stride, op)
    d = positive_pair("dilation", dilation, op)
    pads = resolve_padding(padding, x_shape[1:3], k, s, d, op)
    out_hw = tuple(pool_output_size(x_shape[1 + a], k[a], s[a], d[a], *pads[a], ceil_mode) for a in range(2))
    keff = tuple(effective_kernel(k[a], d[a]) for a in range(2))
    check_output(op, out_hw, x_shape, keff, "pool window" if d == (1, 1) else "dilated pool window")
    if any(_empty_window(x_shape[1 + a], k[a], s[a], d[a], pads[a][0], out_hw[a]) for a in range(2)):
        raise ValueError(f"{op}: some pooling windows lie entirely in the padding (no tap on the input). "
                         f"Received: pool_size={pool_size!r}, stride={stride!r}, dilation={dilation!r}, "
                         f"padding={padding!r}, ceil_mode={ceil_mode!r}, x.shape={x_shape}")
    # one window along an axis: any stride past the input gives that answer, the smallest is passed
    s = tuple(kernel_stride(x_shape[1 + a], k[a], s[a], d[a], *pads[a]) if out_hw[a] == 1 else s[a]
              for a in range(2))
    _check_int_geometry(op, x_shape, k, s, pads, pool_size, stride, padding)
    return (*x_shape, *out_hw, *k, *s, pads[0][0], pads[1][0], int(bool(count_include_pad)), *d,
            x_shape[1] + pads[0][1], x_shape[2] + pads[1][1])


def _check_max_window(op, g: tuple, pool_size) -> None:
    """Max pooling tracks the first maximum as the tap kh*KW + kw in int32 lanes."""
    if g[6] * g[7] > _INT32_MAX:
        raise ValueError(f"{op}: a max pooling window may hold at most 2**31 - 1 = {_INT32_MAX} taps "
                         f"(KH*KW = {g[6] * g[7]}). Received: pool_size={pool_size!r}, x.shape={g[:4]}")


def _check_argmax_plane(op, g: tuple, name) -> None:
    """A saved argmax is the int32 input-plane index ih*W + iw."""
    h, w = g[1], g[2]
    if h * w > _INT32_MAX:
        raise ValueError(f"{op}: the int32 argmax cannot index an input plane of H*W = {h * w} > 2**31 - 1 "
                         f"pixels; leave {name} out (the gradient then recomputes the argmax from x). "
                         f"Received: x.shape={g[:4]}")


def _plan(g: tuple, itemsize: int, backward: bool, saved_argmax: bool = False) -> _plans.PoolPlan:
    """The plan of a window pooling call: threads by the bytes it moves (x and y forward; x or the
    argmax, dy and dx backward), the windows' reads being from cache."""
    n_in, n_out = g[0] * g[1] * g[2] * g[3], g[0] * g[4] * g[5] * g[3]
    nbytes = itemsize * ((2 * n_in + n_out) if backward else (n_in + n_out))
    return _plans.pool_plan(g, backward, saved_argmax, _dispatch.threads_for_bytes(nbytes))


def max_pool2d(x, pool_size=2, *, stride=None, padding=0, dilation=1, ceil_mode=False, return_argmax=False):
    """Max pooling in NHWC; padding is filled with -inf.

    x (N, H, W, C) -> y (N, OH, OW, C).  pool_size, stride: int or (h, w) (stride None = pool_size);
    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (TensorFlow's rule).
    dilation: int or (h, w), the window's taps are start + i*dilation (PyTorch's dilation).
    ceil_mode: size the output with ceil instead of floor, dropping a last window that would start
    inside the bottom/right padding (PyTorch's rule, fastconv._shapes.pool_output_size).
    return_argmax=True also returns the int32 input-plane index ih*W + iw of each output's first
    maximum, which max_pool2d_grad(..., argmax=...) accepts instead of recomputing it (refused
    when H*W > 2**31 - 1, where int32 cannot hold it).  Every dimension, padded extent and window
    side must be at most 2**31 - 1, and a max window at most 2**31 - 1 taps (ValueError).

    >>> max_pool2d(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    op = "max_pool2d"
    x = as_float_array(op, "x", x)
    g = _geometry(op, x, pool_size, stride, padding, False, dilation, ceil_mode)
    _check_max_window(op, g, pool_size)
    if return_argmax:
        _check_argmax_plane(op, g, "return_argmax")
    p = _plan(g, x.itemsize, False)
    y = empty_output(p.out_shape, x.dtype)
    am = empty_output(p.out_shape, np.int32) if return_argmax else None  # aligned: streamed like y
    _dispatch.last_kernel[op] = p.variant
    if y.size:
        _k.max_forward(x, y, am, p.geometry, p.split.args(), _dispatch.level_for(op, x.dtype))
    return (y, am) if return_argmax else y


def max_pool2d_grad(dy, x, pool_size=2, *, stride=None, padding=0, dilation=1, ceil_mode=False, argmax=None,
                    need_dx=True):
    """Gradient of max_pool2d with respect to x: dy (N, OH, OW, C), x (N, H, W, C) -> dx (N, H, W, C).

    Each output's gradient goes to the first maximum of its window in row-major (kh, kw) order.
    argmax: optional int32 array from max_pool2d(..., return_argmax=True) for the same x.
    need_dx=False returns None (the op family's common flag; pooling has no other gradient).
    """
    op = "max_pool2d_grad"
    if not need_dx:
        return None
    x = as_float_array(op, "x", x)
    dy = as_float_array(op, "dy", dy, x.dtype)
    g = _geometry(op, x, pool_size, stride, padding, False, dilation, ceil_mode)
    p = _plan(g, x.itemsize, True, argmax is not None)
    check_dy(op, dy, p.out_shape)
    _check_max_window(op, g, pool_size)
    if argmax is not None:
        _check_argmax_plane(op, g, "argmax")
        argmax = np.ascontiguousarray(argmax, dtype=np.int32)
        if argmax.shape != p.out_shape:
            raise ValueError(f"{op}: argmax must have the output's shape {p.out_shape}. "
                             f"Received: argmax.shape={argmax.shape}")
    dx = empty_output(x.shape, x.dtype)
    _dispatch.last_kernel[op] = p.variant
    if dx.size:
        _k.max_backward(x, dy, argmax, dx, p.geometry, p.split.args(), _dispatch.level_for(op, x.dtype))
    return dx


def avg_pool2d(x, pool_size=2, *, stride=None, padding=0, count_include_pad=False, dilation=1, ceil_mode=False):
    """Average pooling in NHWC: x (N, H, W, C) -> y (N, OH, OW, C).

    count_include_pad=False divides by the number of real input pixels in each window, True by
    KH*KW (padding zeros count); with ceil_mode a last window passing the bottom/right padding
    counts only its taps up to the padding's end (PyTorch's divisor).  dilation and ceil_mode as
    in max_pool2d.

    >>> avg_pool2d(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))[0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    op = "avg_pool2d"
    x = as_float_array(op, "x", x)
    p = _plan(_geometry(op, x, pool_size, stride, padding, count_include_pad, dilation, ceil_mode), x.itemsize,
              False)
    y = empty_output(p.out_shape, x.dtype)
    _dispatch.last_kernel[op] = p.variant
    if y.size:
        _k.avg_forward(x, y, p.geometry, p.split.args(), _dispatch.level_for(op, x.dtype))
    return y


def avg_pool2d_grad(dy, x, pool_size=2, *, stride=None, padding=0, count_include_pad=False, dilation=1,
                    ceil_mode=False, need_dx=True):
    """Gradient of avg_pool2d: dy (N, OH, OW, C), x (N, H, W, C) -> dx (N, H, W, C) (None when
    need_dx=False)."""
    op = "avg_pool2d_grad"
    if not need_dx:
        return None
    x = as_float_array(op, "x", x)
    dy = as_float_array(op, "dy", dy, x.dtype)
    p = _plan(_geometry(op, x, pool_size, stride, padding, count_include_pad, dilation, ceil_mode), x.itemsize,
              True)
    check_dy(op, dy, p.out_shape)
    dx = empty_output(x.shape, x.dtype)
    _dispatch.last_kernel[op] = p.variant
    if dx.size:
        _k.avg_backward(dy, dx, p.geometry, p.split.args(), _dispatch.level_for(op, x.dtype))
    return dx


def _check_pixels(op, x):
    check_rank(op, "x", x, 4, "NHWC (N, H, W, C)")
    _check_dims(op, x.shape)
    if x.shape[1] * x.shape[2] == 0:
        raise ValueError(f"{op}: x has no pixels to average. Received: x.shape={x.shape}")


def global_avg_pool2d(x):
    """Mean over the spatial axes: x (N, H, W, C) -> y (N, C).

    >>> global_avg_pool2d(np.ones((2, 3, 3, 4), np.float32)).shape
    (2, 4)
    """
    op = "global_avg_pool2d"
    x = as_float_array(op, "x", x)
    _check_pixels(op, x)
    p = _plans.global_pool_plan(x.shape, False, x.dtype.itemsize, _dispatch.threads_for(x.size))
    y = np.empty((x.shape[0], x.shape[3]), dtype=x.dtype)
    _dispatch.last_kernel[op] = p.variant
    if y.size:
        _k.global_avg_forward(x, y, p.geometry, p.split.args(), p.scratch_bytes,
                              _dispatch.level_for(op, x.dtype))
    return y


def global_avg_pool2d_grad(dy, x, *, need_dx=True):
    """Gradient of global_avg_pool2d: dy (N, C), x (N, H, W, C) -> dx = dy / (H*W) on every pixel
    (None when need_dx=False)."""
    op = "global_avg_pool2d_grad"
    if not need_dx:
        return None
    x = as_float_array(op, "x", x)
    dy = as_float_array(op, "dy", dy, x.dtype)
    _check_pixels(op, x)
    check_dy(op, dy, (x.shape[0], x.shape[3]))
    p = _plans.global_pool_plan(x.shape, True, x.dtype.itemsize, _dispatch.threads_for(x.size))
    dx = empty_output(x.shape, x.dtype)  # like every other dx: aligned for streamed stores
    _dispatch.last_kernel[op] = p.variant
    if dx.size:
        _k.global_avg_backward(dy, dx, p.geometry, p.split.args(), _dispatch.level_for(op, x.dtype))
    return dx


def global_max_pool2d(x):
    """Maximum over the spatial axes: x (N, H, W, C) -> y (N, C); max_pool2d with the whole image
    as its window.

    >>> global_max_pool2d(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
    array([[6., 7.]], dtype=float32)
    """
    x = as_float_array("global_max_pool2d", "x", x)
    check_rank("global_max_pool2d", "x", x, 4, "NHWC (N, H, W, C)")
    y = max_pool2d(x, x.shape[1:3])
    return y.reshape(y.shape[0], y.shape[3])


def global_max_pool2d_grad(dy, x, *, need_dx=True):
    """Gradient of global_max_pool2d: dy (N, C), x (N, H, W, C) -> dx, dy at the first maximum of
    each channel (row-major), 0 elsewhere (None when need_dx=False)."""
    if not need_dx:
        return None
    x = as_float_array("global_max_pool2d_grad", "x", x)
    check_rank("global_max_pool2d_grad", "x", x, 4, "NHWC (N, H, W, C)")
    dy = np.asarray(dy)
    check_dy("global_max_pool2d_grad", dy, (x.shape[0], x.shape[3]))
    return max_pool2d_grad(dy.reshape(dy.shape[0], 1, 1, dy.shape[1]), x, x.shape[1:3])
