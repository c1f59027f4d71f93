"""Reshaping layers: ZeroPadding2D and UpSampling2D (nearest and bilinear).

UpSampling2D's bilinear mode matches Keras (``ops.image.resize``, i.e.
TensorFlow's ``tf.image.resize`` with half-pixel centres, no antialiasing):
output pixel ``o`` samples input coordinate ``(o + 0.5) / size - 0.5``, clamped
to the image. Interpolation is separable, so it is two small matrices
``A_h (OH, H)`` and ``A_w (OW, W)`` applied with batched matmuls; the backward
pass applies their transposes. Nearest mode is a broadcast (forward) and a
reshape-and-sum (backward).
"""

from __future__ import annotations

import functools

import numpy as np

from fastconv.layers.base import Layer, normalize_tuple, register_layer

__all__ = ["UpSampling2D", "ZeroPadding2D"]


def _normalize_padding2d(padding):
    """int, (ph, pw) or ((top, bottom), (left, right)) -> ((t, b), (l, r))."""
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        out = ((p, p), (p, p))
    else:
        try:
            a, b = padding
            if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
                out = ((int(a), int(a)), (int(b), int(b)))
            else:
                out = (normalize_tuple(a, 2, "padding", True), normalize_tuple(b, 2, "padding", True))
        except (TypeError, ValueError):
            raise ValueError(
                "`padding` should be either an int, a tuple of 2 ints (symmetric_height_pad, "
                "symmetric_width_pad), or a tuple of 2 tuples of 2 ints ((top_pad, bottom_pad), "
                f"(left_pad, right_pad)). Received: padding={padding!r}"
            ) from None
    if min(out[0] + out[1]) < 0:
        raise ValueError(f"`padding` must be non-negative. Received: padding={padding!r}")
    return out


@register_layer
class ZeroPadding2D(Layer):
    """Zero rows/columns around an image (Keras ``ZeroPadding2D``):
    ``(N, H, W, C)`` -> ``(N, H + top + bottom, W + left + right, C)``."""

    input_ndim = 4

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"ZeroPadding2D supports channels_last only. Received: {data_format!r}")
        self.padding = _normalize_padding2d(padding)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        (t, b), (l, r) = self.padding
        h, w, c = input_shape
        return (None if h is None else h + t + b, None if w is None else w + l + r, c)

    def call(self, x, training=False):
        (t, b), (l, r) = self.padding
        n, h, w, c = x.shape
        y = np.zeros((n, h + t + b, w + l + r, c), x.dtype)
        y[:, t : t + h, l : l + w] = x
        if training:
            self._cache = (h, w)
        return y

    def call_backward(self, dy):
        h, w = self._need_cache()
        if not self.need_input_grad:
            return None
        (t, _), (l, _) = self.padding
        return dy[:, t : t + h, l : l + w]

    def get_config(self):
        config = super().get_config()
        config.update({"padding": [list(p) for p in self.padding], "data_format": "channels_last"})
        return config


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(n_in: int, scale: int, dtype_str: str) -> np.ndarray:
    """``A (n_in * scale, n_in)`` with ``y = A @ x`` the half-pixel bilinear resize of one axis."""
    n_out = n_in * scale
    src = (np.arange(n_out) + 0.5) / scale - 0.5
    lo = np.floor(src)
    frac = src - lo
    lo = lo.astype(np.int64)
    lo_c = np.clip(lo, 0, n_in - 1)
    hi_c = np.clip(lo + 1, 0, n_in - 1)
    a = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(a, (rows, lo_c), 1.0 - frac)
    np.add.at(a, (rows, hi_c), frac)
    a = a.astype(dtype_str)
    a.setflags(write=False)
    return a


@register_layer
class UpSampling2D(Layer):
    """Repeat (``"nearest"``) or interpolate (``"bilinear"``) by integer factors (Keras
    ``UpSampling2D``): ``(N, H, W, C)`` -> ``(N, H * sh, W * sw, C)``."""

    input_ndim = 4

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"UpSampling2D supports channels_last only. Received: {data_format!r}")
        self.size = normalize_tuple(size, 2, "size")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(
                f'`interpolation` argument should be one of: "nearest", "bilinear". '
                f"Received: interpolation={interpolation!r}"
            )
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        h, w, c = input_shape
        sh, sw = self.size
        return (None if h is None else h * sh, None if w is None else w * sw, c)

    def call(self, x, training=False):
        n, h, w, c = x.shape
        sh, sw = self.size
        if training:
            self._cache = (h, w)
        if self.interpolation == "nearest":
            y = np.broadcast_to(x[:, :, None, :, None, :], (n, h, sh, w, sw, c))
            return y.reshape(n, h * sh, w * sw, c)
        ah = _bilinear_matrix(h, sh, x.dtype.str)
        aw = _bilinear_matrix(w, sw, x.dtype.str)
        t = np.matmul(ah, x.reshape(n, h, w * c))  # (N, OH, W*C)
        y = np.matmul(aw, t.reshape(n * h * sh, w, c))  # (N*OH, OW, C)
        return y.reshape(n, h * sh, w * sw, c)

    def call_backward(self, dy):
        h, w = self._need_cache()
        if not self.need_input_grad:
            return None
        n, c = dy.shape[0], dy.shape[-1]
        sh, sw = self.size
        if self.interpolation == "nearest":
            return dy.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4))
        ah = _bilinear_matrix(h, sh, dy.dtype.str)
        aw = _bilinear_matrix(w, sw, dy.dtype.str)
        t = np.matmul(aw.T, dy.reshape(n * h * sh, w * sw, c))  # (N*OH, W, C)
        dx = np.matmul(ah.T, t.reshape(n, h * sh, w * c))  # (N, H, W*C)
        return dx.reshape(n, h, w, c)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"size": list(self.size), "data_format": "channels_last", "interpolation": self.interpolation}
        )
        return config
