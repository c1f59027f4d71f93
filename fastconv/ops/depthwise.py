"""depthwise_conv2d forward and backward: validate -> plan -> allocate -> kernel.

x (N, H, W, C), w (KH, KW, C, M) (output channel c*M + m), y (N, OH, OW, C*M).  All arithmetic runs
in fastconv._kernels.depthwise (src/depthwise_impl.h) with the GIL released; this module only checks
arguments, resolves the padding (the kernels take top/left, the output size implies bottom/right),
plans the call (fastconv/ops/_plan.py depthwise_plan: block rows, thread split, variant) and
allocates the outputs.
"""
from __future__ import annotations

import math

import numpy as np

from fastconv import _dispatch
from fastconv._kernels import depthwise as _k
from fastconv._shapes import kernel_stride, positive_pair, resolve_padding, window_output_size
from fastconv.ops import _plan as _plans
from fastconv.ops._plan import cached_geometry as _cached_geometry
from fastconv.ops._validate import (
    aligned_empty,
    as_float_array,
    check_bias,
    check_dy,
    check_output,
    check_rank,
)


# The kernels (src/depthwise_impl.h) keep per-axis positions (rows, columns, taps, channels) in
# 32-bit int for speed and compute every offset, row count and size from them in 64-bit.  What
# keeps those ints from wrapping is checked here, once, before any kernel runs:
# - along each axis, size + padding + stride + effective kernel (every position the kernels form,
#   e.g. oh*sh - ph + kh*dh or a floor division's numerator, is a sum of a subset of these);
# - K = C*M (the output channels of a pixel);
# each plus _INT_SLACK, because loops step past a row's or a channel block's end by at most a
# register tile (8 pixels, 16 lanes) or a weight-gradient chunk (32 columns) before they stop.
_INT_MAX = 2**31 - 1
_INT_SLACK = 64


def _check_int_geometry(op, x_shape, w_shape, stride, dilation, pads, out_hw):
    """ValueError, naming the argument and the shapes, when a size would wrap the kernels' int."""
    limit = _INT_MAX - _INT_SLACK
    got = (f"Received: x.shape={tuple(x_shape)}, w.shape={tuple(w_shape)}, stride={stride}, "
           f"padding={pads}, dilation={dilation}")
    k = w_shape[2] * w_shape[3]
    if k > limit:
        raise ValueError(f"{op}: channels * depth multiplier (C*M = {k}) must be at most {limit}. {got}")
    for axis, name in ((0, "H"), (1, "W")):
        size, kk = x_shape[1 + axis], w_shape[axis]
        extent = size + pads[axis][0] + pads[axis][1] + stride[axis] + (kk - 1) * dilation[axis] + 1
        if extent > limit:
            raise ValueError(
                f"{op}: along {name}, input + padding + stride + dilated kernel "
                f"({size} + {pads[axis][0]} + {pads[axis][1]} + {stride[axis]} + "
                f"{(kk - 1) * dilation[axis] + 1} = {extent}) must be at most {limit}: the kernels "
                f"index rows and columns with 32-bit ints. {got}")
    # the other axes are bounded by the extents above (OH, OW, KH, KW) or only ever multiplied in
    # 64-bit (N); N is still passed as an int
    if x_shape[0] > limit:
        raise ValueError(f"{op}: the batch size must be at most {limit}. {got}")
    if max(dilation) > limit:  # a 1-tap axis leaves it out of the extent, but it is still an int
        raise ValueError(f"{op}: dilation must be at most {limit}. {got}")


def _geometry(op, x, w, stride, padding, dilation) -> tuple:
    """The checked fc_dwp geometry (N, H, W, C, M, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw) of a call."""
    check_rank(op, "x", x, 4, "NHWC (N, H, W, C)")
    check_rank(op, "w", w, 4, "(KH, KW, C, M)")
    return _cached_geometry(_geometry_of, op, x.shape, w.shape, stride, padding, dilation)


def _geometry_of(op, x_shape, w_shape, stride, padding, dilation) -> tuple:
    if w_shape[2] != x_shape[3]:
        raise ValueError(f"{op}: x has {x_shape[3]} channels but w expects {w_shape[2]} "
                         f"(w layout (KH, KW, C, M)). Received: x.shape={x_shape}, w.shape={w_shape}")
    if min(w_shape) < 1:
        raise ValueError(f"{op}: w must not be empty. Received: w.shape={w_shape}")
    stride = positive_pair("stride", stride, op)
    dilation = positive_pair("dilation", dilation, op)
    k_hw = w_shape[:2]
    pads = resolve_padding(padding, x_shape[1:3], k_hw, stride, dilation, op)
    out_hw = (window_output_size(x_shape[1], k_hw[0], stride[0], dilation[0], *pads[0]),
              window_output_size(x_shape[2], k_hw[1], stride[1], dilation[1], *pads[1]))
    check_output(op, out_hw, x_shape, k_hw)
    # an axis with one output gives the same answer for every stride past the input: the smallest
    # such stride keeps the kernels' scratch (sized by the stride) and int positions small
    stride = tuple(kernel_stride(x_shape[1 + a], k_hw[a], stride[a], dilation[a], *pads[a]) for a in range(2))
    _check_int_geometry(op, x_shape, w_shape, stride, dilation, pads, out_hw)
    return (*x_shape, w_shape[3], *out_hw, *k_hw, *stride, pads[0][0], pads[1][0], *dilation)


def depthwise_conv2d(x, w, bias=None, *, stride=1, padding=0, dilation=1):
    """Depthwise 2-D convolution in NHWC.

    x (N, H, W, C), w (KH, KW, C, M), bias (C*M,) or None -> y (N, OH, OW, C*M); output channel
    c*M + m is input channel c convolved with w[:, :, c, m].
    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (TensorFlow's rule).

    >>> y = depthwise_conv2d(np.ones((1, 5, 5, 3), np.float32), np.ones((3, 3, 3, 2), np.float32), padding="same")
    >>> y.shape
    (1, 5, 5, 6)
    """
    op = "depthwise_conv2d"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, x.dtype)
    g = _geometry(op, x, w, stride, padding, dilation)
    y_shape = (g[0], g[5], g[6], g[3] * g[4])
    if bias is not None:
        bias = as_float_array(op, "bias", bias, x.dtype)
        check_bias(op, bias, y_shape[3], w.shape)
    threads = _dispatch.threads_for(math.prod(y_shape) * g[7] * g[8])
    p = _plans.depthwise_plan(g, x.dtype.itemsize, False, threads)
    # 64-byte aligned at every size (empty_output aligns only streamed outputs): unaligned AVX-512
    # stores split cache lines (7x7x128, batch 64: 15 % slower), and the next layer reads it
    y = aligned_empty(p.out_shape, x.dtype)
    _dispatch.last_kernel[op] = p.variant
    if y.size:
        _k.forward(x, w, bias, y, p.geometry, p.split.args(), _dispatch.level_for(op, x.dtype))
    return y


def depthwise_conv2d_grad(dy, x, w, *, stride=1, padding=0, dilation=1, need_dx=True):
    """Gradients of depthwise_conv2d.

    dy (N, OH, OW, C*M), x (N, H, W, C), w (KH, KW, C, M) -> (dx (N, H, W, C), dw like w, db (C*M,)).
    db is the sum of dy over N, OH, OW whether or not the forward used a bias.
    need_dx=False skips the input gradient (a network's first layer) and returns dx=None.
    """
    op = "depthwise_conv2d_grad"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, x.dtype)
    dy = as_float_array(op, "dy", dy, x.dtype)
    g = _geometry(op, x, w, stride, padding, dilation)
    check_dy(op, dy, (g[0], g[5], g[6], g[3] * g[4]))
    p = _plans.depthwise_plan(g, x.dtype.itemsize, True, _dispatch.threads_for(2 * dy.size * g[7] * g[8]))
    dx = aligned_empty(x.shape, x.dtype) if need_dx else None
    dw = np.empty(w.shape, dtype=x.dtype)
    db = np.empty(p.out_shape[3], dtype=x.dtype)
    _dispatch.last_kernel[op] = p.variant
    _k.backward(x, dy, w, dx, dw, db, p.geometry, p.block_rows, p.split.args(),
                _dispatch.level_for(op, x.dtype))
    return dx, dw, db
