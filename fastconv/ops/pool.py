"""Pooling ops, forward and backward: validate -> plan -> allocate -> kernel.

x (N, H, W, C) -> y (N, OH, OW, C).  Max pooling pads with -inf and sends each output's gradient
to the first maximum of its window in row-major order (PyTorch's rule; a NaN counts as a
maximum); max_pool2d_grad recomputes the argmax from x inside the kernel, so the op keeps no
state (a layer may save the argmax with return_argmax=True and pass it back).  Average pooling
divides by the real pixel count, or by KH*KW with count_include_pad=True.  All arithmetic runs in
fastconv._kernels.pool (src/pool_impl.h) with the GIL released.
"""
from __future__ import annotations

import numpy as np

from fastconv import _dispatch
from fastconv._kernels import pool as _k
from fastconv._shapes import kernel_stride, positive_pair, resolve_padding, window_output_size
from fastconv.ops import _plan as _plans
from fastconv.ops._validate import as_float_array, check_dy, check_output, check_rank, empty_output


# The kernels keep the geometry in C ints (fc_poolp in src/pool_kernels.h) and the argmax in int32;
# every size that stays int is checked against this once, here, and offsets are 64-bit in C.
_INT32_MAX = 2**31 - 1


def _check_dims(op, x) -> None:
    """Every dimension of x fits the kernels' int geometry."""
    if max(x.shape) > _INT32_MAX:
        raise ValueError(f"{op}: every dimension of x must be at most 2**31 - 1 = {_INT32_MAX}. "
                         f"Received: x.shape={x.shape}")


def _check_int_geometry(op, x_shape, k, s, pads, pool_size, stride, padding) -> None:
    """The window geometry fits the kernels' ints: window starts and ends (o*s - pad, start + k)
    are bounded by the padded extent, so that, the window and the stride are checked."""
    for axis, (n, kk, ss, (lo, hi)) in enumerate(zip(x_shape[1:3], k, s, pads)):
        if n + lo + hi > _INT32_MAX or kk > _INT32_MAX or ss > _INT32_MAX:
            raise ValueError(
                f"{op}: the padded input, the window and the stride must each be at most 2**31 - 1 = "
                f"{_INT32_MAX} along axis {axis + 1} (padded size {n + lo + hi}, window {kk}, stride {ss}). "
                f"Received: pool_size={pool_size!r}, stride={stride!r}, padding={padding!r}, x.shape={x_shape}")


class _PoolPlan:
    """Validated geometry of one pooling problem."""

    __slots__ = ("k", "pads", "stride", "x_shape", "y_shape")

    def __init__(self, x_shape, k, stride, pads, out_hw):
        self.x_shape, self.k, self.stride, self.pads = x_shape, k, stride, pads
        self.y_shape = (x_shape[0], out_hw[0], out_hw[1], x_shape[3])

    def args(self):
        """Kernel geometry arguments: window, stride, top/left padding."""
        return (self.k[0], self.k[1], self.stride[0], self.stride[1], self.pads[0][0], self.pads[1][0])


def _plan(op, x, pool_size, stride, padding) -> _PoolPlan:
    check_rank(op, "x", x, 4, "NHWC (N, H, W, C)")
    _check_dims(op, x)
    k = positive_pair("pool_size", pool_size, op)
    s = k if stride is None else positive_pair("stride", stride, op)
    pads = resolve_padding(padding, x.shape[1:3], k, s, (1, 1), op)
    out_hw = (window_output_size(x.shape[1], k[0], s[0], 1, *pads[0]),
              window_output_size(x.shape[2], k[1], s[1], 1, *pads[1]))
    check_output(op, out_hw, x.shape, k, "pool window")
    # Only the first and the last window of an axis can lie entirely in the padding.
    if (pads[0][0] >= k[0] or pads[1][0] >= k[1] or (out_hw[0] - 1) * s[0] - pads[0][0] >= x.shape[1]
            or (out_hw[1] - 1) * s[1] - pads[1][0] >= x.shape[2]):
        raise ValueError(f"{op}: some pooling windows lie entirely in the padding. Received: "
                         f"pool_size={pool_size!r}, stride={stride!r}, padding={padding!r}, x.shape={x.shape}")
    # one window along an axis: any stride past the input gives that answer, the smallest is passed
    s = tuple(kernel_stride(x.shape[1 + a], k[a], s[a], 1, *pads[a]) for a in range(2))
    _check_int_geometry(op, x.shape, k, s, pads, pool_size, stride, padding)
    return _PoolPlan(x.shape, k, s, pads, out_hw)


def _check_max_window(op, p: _PoolPlan, pool_size) -> None:
    """Max pooling tracks the first maximum as the tap kh*KW + kw in int32 lanes."""
    if p.k[0] * p.k[1] > _INT32_MAX:
        raise ValueError(f"{op}: a max pooling window may hold at most 2**31 - 1 = {_INT32_MAX} taps "
                         f"(KH*KW = {p.k[0] * p.k[1]}). Received: pool_size={pool_size!r}, x.shape={p.x_shape}")


def _check_argmax_plane(op, p: _PoolPlan, name) -> None:
    """A saved argmax is the int32 input-plane index ih*W + iw."""
    h, w = p.x_shape[1], p.x_shape[2]
    if h * w > _INT32_MAX:
        raise ValueError(f"{op}: the int32 argmax cannot index an input plane of H*W = {h * w} > 2**31 - 1 "
                         f"pixels; leave {name} out (the gradient then recomputes the argmax from x). "
                         f"Received: x.shape={p.x_shape}")


def _threads(p: _PoolPlan, n_out: int) -> int:
    return _dispatch.threads_for(n_out * p.k[0] * p.k[1])


def max_pool2d(x, pool_size=2, *, stride=None, padding=0, return_argmax=False):
    """Max pooling in NHWC; padding is filled with -inf.

    x (N, H, W, C) -> y (N, OH, OW, C).  pool_size, stride: int or (h, w) (stride None = pool_size);
    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (TensorFlow's rule).
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
    p = _plan(op, x, pool_size, stride, padding)
    _check_max_window(op, p, pool_size)
    if return_argmax:
        _check_argmax_plane(op, p, "return_argmax")
    y = empty_output(p.y_shape, x.dtype)
    am = np.empty(p.y_shape, dtype=np.int32) if return_argmax else None
    _dispatch.last_kernel[op] = "window"
    if y.size:
        _k.max_forward(x, y, am, *p.args(), _dispatch.level_for(op, x.dtype), _threads(p, y.size))
    return (y, am) if return_argmax else y


def max_pool2d_grad(dy, x, pool_size=2, *, stride=None, padding=0, argmax=None, need_dx=True):
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
    p = _plan(op, x, pool_size, stride, padding)
    check_dy(op, dy, p.y_shape)
    _check_max_window(op, p, pool_size)
    if argmax is not None:
        _check_argmax_plane(op, p, "argmax")
        argmax = np.ascontiguousarray(argmax, dtype=np.int32)
        if argmax.shape != p.y_shape:
            raise ValueError(f"{op}: argmax must have the output's shape {p.y_shape}. "
                             f"Received: argmax.shape={argmax.shape}")
    dx = empty_output(x.shape, x.dtype)
    _dispatch.last_kernel[op] = _plans.pool_backward_variant(p.k, p.stride, argmax is not None)
    if dx.size:
        _k.max_backward(x, dy, argmax, dx, *p.args(), _dispatch.level_for(op, x.dtype), _threads(p, dy.size))
    return dx


def avg_pool2d(x, pool_size=2, *, stride=None, padding=0, count_include_pad=False):
    """Average pooling in NHWC: x (N, H, W, C) -> y (N, OH, OW, C).

    count_include_pad=False divides by the number of real input pixels in each window, True by
    KH*KW (padding zeros count).

    >>> avg_pool2d(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))[0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    op = "avg_pool2d"
    x = as_float_array(op, "x", x)
    p = _plan(op, x, pool_size, stride, padding)
    y = empty_output(p.y_shape, x.dtype)
    _dispatch.last_kernel[op] = "window"
    if y.size:
        _k.avg_forward(x, y, *p.args(), bool(count_include_pad), _dispatch.level_for(op, x.dtype), _threads(p, y.size))
    return y


def avg_pool2d_grad(dy, x, pool_size=2, *, stride=None, padding=0, count_include_pad=False, need_dx=True):
    """Gradient of avg_pool2d: dy (N, OH, OW, C), x (N, H, W, C) -> dx (N, H, W, C) (None when
    need_dx=False)."""
    op = "avg_pool2d_grad"
    if not need_dx:
        return None
    x = as_float_array(op, "x", x)
    dy = as_float_array(op, "dy", dy, x.dtype)
    p = _plan(op, x, pool_size, stride, padding)
    check_dy(op, dy, p.y_shape)
    dx = empty_output(x.shape, x.dtype)
    _dispatch.last_kernel[op] = _plans.pool_backward_variant(p.k, p.stride, False)
    if dx.size:
        _k.avg_backward(dy, dx, *p.args(), bool(count_include_pad), _dispatch.level_for(op, x.dtype), _threads(p, dy.size))
    return dx


def _check_pixels(op, x):
    check_rank(op, "x", x, 4, "NHWC (N, H, W, C)")
    _check_dims(op, x)
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
    y = np.empty((x.shape[0], x.shape[3]), dtype=x.dtype)
    _dispatch.last_kernel[op] = "global"
    if y.size:
        _k.global_avg_forward(x, y, _dispatch.level_for(op, x.dtype), _dispatch.threads_for(x.size))
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
    dx = empty_output(x.shape, x.dtype)  # like every other dx: aligned for streamed stores
    _dispatch.last_kernel[op] = "global"
    if dx.size:
        _k.global_avg_backward(dy, dx, _dispatch.level_for(op, x.dtype), _dispatch.threads_for(x.size))
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
