"""Classic image filters as ready conv kernels (the seeds' edge-detection demo).

Every kernel function returns a float32 array shaped for :func:`fastconv.conv2d`:
``(KH, KW, 1, 1)`` (one input channel, one output channel). :func:`as_kernel`
turns any 2-D kernel into that layout or a per-channel (depthwise) one, and
:func:`apply_filter` runs a kernel over a batch of images with "same" padding.

Examples
--------
>>> import numpy as np
>>> img = np.zeros((1, 5, 5, 1), np.float32); img[0, :, 2:, 0] = 1.0   # a vertical edge
>>> edges = apply_filter(img, sobel_x())
>>> edges[0, 2, :, 0]
array([ 0.,  4.,  4.,  0., -4.], dtype=float32)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "apply_filter",
    "as_kernel",
    "box_blur",
    "gaussian",
    "high_pass",
    "laplacian",
    "sharpen",
    "sobel_x",
    "sobel_y",
]


def as_kernel(k2d, channels=1, depthwise=False, dtype="float32"):
    """A 2-D kernel ``(KH, KW)`` as ``(KH, KW, 1, 1)``; with ``channels=C``:
    ``(KH, KW, C, C)`` applying it to each channel separately (a diagonal conv kernel),
    or ``(KH, KW, C, 1)`` for :func:`fastconv.depthwise_conv2d` when ``depthwise``."""
    k = np.asarray(k2d, dtype=dtype)
    if k.ndim != 2:
        raise ValueError(f"as_kernel: expected a 2-D kernel (KH, KW). Received shape {k.shape}")
    if depthwise:
        return np.ascontiguousarray(np.repeat(k[:, :, None, None], channels, axis=2))
    out = np.zeros((*k.shape, channels, channels), dtype=dtype)
    for c in range(channels):
        out[:, :, c, c] = k
    return out


def sobel_x(dtype="float32"):
    """Sobel derivative along x (columns): responds to vertical edges.

    Written as a cross-correlation kernel (what conv2d computes): left column -1, right +1.
    """
    return as_kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=dtype)


def sobel_y(dtype="float32"):
    """Sobel derivative along y (rows): responds to horizontal edges (top row -1, bottom +1)."""
    return as_kernel([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=dtype)


def laplacian(diagonals=False, dtype="float32"):
    """The 3x3 Laplacian (4-neighbour, or 8-neighbour with ``diagonals``); sums to zero."""
    if diagonals:
        return as_kernel([[1, 1, 1], [1, -8, 1], [1, 1, 1]], dtype=dtype)
    return as_kernel([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=dtype)


def high_pass(dtype="float32"):
    """A 3x3 high-pass filter (identity minus the box mean); sums to zero."""
    k = -np.ones((3, 3)) / 9.0
    k[1, 1] += 1.0
    return as_kernel(k, dtype=dtype)


def sharpen(amount=1.0, dtype="float32"):
    """Sharpening: identity minus ``amount`` times the 4-neighbour Laplacian; sums to one."""
    k = np.zeros((3, 3))
    k[1, 1] = 1.0
    k -= amount * np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    return as_kernel(k, dtype=dtype)


def gaussian(size=5, sigma=1.0, dtype="float32"):
    """A normalised ``size x size`` Gaussian blur (odd ``size``); sums to one."""
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"gaussian: size must be a positive odd integer. Received: size={size}")
    if sigma <= 0:
        raise ValueError(f"gaussian: sigma must be > 0. Received: sigma={sigma}")
    r = np.arange(size) - size // 2
    g = np.exp(-(r**2) / (2.0 * sigma**2))
    k = np.outer(g, g)
    return as_kernel(k / k.sum(), dtype=dtype)


def box_blur(size=3, dtype="float32"):
    """A ``size x size`` mean filter; sums to one."""
    return as_kernel(np.full((size, size), 1.0 / (size * size)), dtype=dtype)


def apply_filter(images, kernel, padding="same"):
    """Convolve images ``(N, H, W)`` or ``(N, H, W, C)`` with a kernel.

    ``kernel`` is ``(KH, KW)`` (applied to every channel separately) or a conv kernel
    ``(KH, KW, C_in, C_out)``. Returns ``(N, OH, OW, C_out)`` float32 (``(N, OH, OW, C)`` for a 2-D
    kernel).
    """
    from fastconv import ops

    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    k = np.asarray(kernel)
    if k.ndim == 2:
        k = as_kernel(k, channels=x.shape[-1], dtype=x.dtype)
    return ops.conv2d(x, k.astype(x.dtype, copy=False), padding=padding)
