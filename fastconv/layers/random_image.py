"""Random image augmentation layers: RandomFlip, RandomRotation, RandomTranslation, RandomZoom,
RandomContrast (Keras 3 semantics, NHWC batches).

Design notes
------------
* Active only when called with ``training=True`` (``fit``); identity at inference
  (``predict`` / ``evaluate``). As in Keras, calling the layer directly (``layer(x)``) defaults
  to ``training=True``, so it shows an augmented batch.
* Each image of a batch draws its own parameters from the layer's ``np.random.Generator``
  (``seed`` makes a layer reproducible: two layers with the same seed produce the same
  augmentations; ``reseed(seed)`` restarts one). The draws cannot reproduce Keras's random
  streams; the transform for given parameters is Keras's exactly.
* The geometric layers build Keras's affine matrix ``[a0, a1, a2, b0, b1, b2]`` per image: the
  output pixel at ``(row, col)`` samples the input at ``(b0 col + b1 row + b2, a0 col + a1 row + a2)``
  with Keras's (JAX backend's) sampler: bilinear over the 4 neighbours or nearest (rounding half
  away from zero), the neighbour index mapped by ``fill_mode`` ("reflect": ``d c b a | a b c d |
  d c b a``; "wrap"; "nearest": clamp; "constant": a neighbour outside contributes
  ``fill_value``).
* The sampling is stored as 4 (or 1) source indices and weights per output pixel, so the
  forward is a gather and the backward, the exact adjoint, one ``np.bincount`` scatter. These
  layers usually sit at the input where no input gradient is needed; the adjoint is cheap, so
  they return it anyway and work anywhere in a model.
* RandomContrast: ``(x - mean) * f + mean`` with ``mean`` per image and channel over H and W,
  then clipped to ``value_range``; its backward is exact (zero where the output was clipped).
"""

from __future__ import annotations

import math

import numpy as np

from fastconv import distributed as _dist
from fastconv import initializers as _initializers
from fastconv.layers.base import Layer, check_data_format, register_layer

__all__ = ["RandomContrast", "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom"]

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("nearest", "bilinear")


def _factor_pair(factor, name, lo, hi, lo_open=False):
    """Keras's factor rule: a number f -> (-|f|, |f|); a pair -> sorted; every value in [lo, hi]
    (or (lo, hi] with ``lo_open``)."""
    bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
    msg = (
        f"The `{name}` argument should be a number (or a list of two numbers) in the range {bound}. "
        f"Received: {name}={factor!r}"
    )

    def ok(v):
        return (lo < v if lo_open else lo <= v) and v <= hi

    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or not all(isinstance(v, (int, float, np.integer, np.floating)) for v in factor):
            raise ValueError(msg)
        a, b = sorted(float(v) for v in factor)
        if not (ok(a) and ok(b)):
            raise ValueError(msg)
        return a, b
    if isinstance(factor, (int, float, np.integer, np.floating)) and not isinstance(factor, bool):
        f = float(factor)
        if not ok(f):
            raise ValueError(msg)
        f = abs(f)
        return -f, f
    raise ValueError(msg)


def _config_factor(factor):
    return list(factor) if isinstance(factor, (tuple, list)) else factor


# ---------------------------------------------------------------------------
# The affine sampler (forward gather, backward scatter)
# ---------------------------------------------------------------------------


def _fix_index(i, n, mode):
    """JAX's ``map_coordinates`` index fixers (for "constant" the index is clamped and masked)."""
    if mode == "nearest" or mode == "constant":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    j = np.mod(i, 2 * n)  # "reflect": d c b a | a b c d | d c b a
    return np.where(j >= n, 2 * n - 1 - j, j)


def _sampling(mats, h, w, interpolation, fill_mode):
    """Source indices ``(B, H*W, K)`` into one image's H*W pixels, their weights ``(B, H*W, K)``
    and the weight of ``fill_value`` ``(B, H*W)`` (non-zero only for "constant")."""
    mats = np.asarray(mats, np.float64)
    rows = np.arange(h, dtype=np.float64)[:, None]
    cols = np.arange(w, dtype=np.float64)[None, :]
    a0, a1, a2, b0, b1, b2 = (mats[:, i, None, None] for i in range(6))
    src_c = (a0 * cols + a1 * rows + a2).reshape(len(mats), h * w)
    src_r = (b0 * cols + b1 * rows + b2).reshape(len(mats), h * w)
    if interpolation == "nearest":
        corners_r = [(np.sign(src_r) * np.floor(np.abs(src_r) + 0.5), 1.0)]
        corners_c = [(np.sign(src_c) * np.floor(np.abs(src_c) + 0.5), 1.0)]
    else:
        r0, c0 = np.floor(src_r), np.floor(src_c)
        fr, fc = src_r - r0, src_c - c0
        corners_r = [(r0, 1.0 - fr), (r0 + 1, fr)]
        corners_c = [(c0, 1.0 - fc), (c0 + 1, fc)]
    idx, wts = [], []
    fill = np.zeros(src_r.shape)
    for r, wr in corners_r:
        for c, wc in corners_c:
            ri, ci = r.astype(np.int64), c.astype(np.int64)
            wgt = np.broadcast_to(np.asarray(wr * wc, np.float64), src_r.shape)
            if fill_mode == "constant":
                inside = (ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)
                fill = fill + np.where(inside, 0.0, wgt)
                wgt = np.where(inside, wgt, 0.0)
            idx.append(_fix_index(ri, h, fill_mode) * w + _fix_index(ci, w, fill_mode))
            wts.append(wgt)
    return np.stack(idx, -1), np.stack(wts, -1), fill


def _gather(x, idx, wts, fill, fill_value):
    """``y[b, p] = sum_k wts[b, p, k] * x[b, idx[b, p, k]] + fill[b, p] * fill_value``."""
    n, h, w, c = x.shape
    xf = x.reshape(n, h * w, c)
    y = np.zeros((n, h * w, c), x.dtype)
    for k in range(idx.shape[-1]):
        y += np.take_along_axis(xf, idx[:, :, k, None], axis=1) * wts[:, :, k, None].astype(x.dtype)
    if fill_value:
        y += (fill * fill_value).astype(x.dtype)[:, :, None]
    return y.reshape(n, h, w, c)


def _scatter(dy, idx, wts):
    """The adjoint of :func:`_gather` (without the constant term): ``dx[b, idx] += wts * dy``."""
    n, h, w, c = dy.shape
    hw = h * w
    flat = (idx + (np.arange(n, dtype=np.int64) * hw)[:, None, None])[..., None] * c + np.arange(c)
    vals = wts[..., None] * dy.reshape(n, hw, 1, c)
    dx = np.bincount(flat.reshape(-1), weights=vals.reshape(-1), minlength=n * hw * c)
    return dx.reshape(n, h, w, c).astype(dy.dtype, copy=False)


# ---------------------------------------------------------------------------
# Base
# ---------------------------------------------------------------------------


class _RandomImageLayer(Layer):
    """Shared parts: seed and generator, ``training=True`` default on direct calls, identity at
    inference, NHWC input."""

    input_ndim = 4

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.seed = seed
        self._rng = _initializers.make_rng(seed)

    def reseed(self, seed) -> None:
        """Restart the layer's generator (replays the same augmentations)."""
        self._rng = np.random.default_rng(seed)

    def __call__(self, x, training=True, **kwargs):
        return super().__call__(x, training=training, **kwargs)

    def call(self, x, training=False):
        if not training:
            return x
        return self._augment(x)

    def _augment(self, x):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed, "data_format": "channels_last"})
        return config


class _AffineLayer(_RandomImageLayer):
    """A random affine resampling per image (rotation, translation, zoom)."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if fill_mode not in _FILL_MODES:
            raise NotImplementedError(f"Unknown `fill_mode` {fill_mode}. Expected of one {_FILL_MODES}.")
        if interpolation not in _INTERPOLATIONS:
            raise NotImplementedError(
                f"Unknown `interpolation` {interpolation}. Expected of one {_INTERPOLATIONS}."
            )
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)

    def _matrices(self, n, h, w):
        """Draw ``(n, 6)`` affine matrices ``[a0, a1, a2, b0, b1, b2]``."""
        raise NotImplementedError

    def transform(self, x, matrices):
        """Resample the batch ``x (N, H, W, C)`` with the given ``(N, 6)`` matrices (no randomness)."""
        x = np.asarray(x)
        n, h, w, _ = x.shape
        idx, wts, fill = _sampling(matrices, h, w, self.interpolation, self.fill_mode)
        return _gather(x, idx, wts, fill, self.fill_value), (idx, wts)

    def _augment(self, x):
        n, h, w, _ = x.shape
        y, cache = self.transform(x, self._matrices(n, h, w))
        self._cache = cache
        return y

    def call_backward(self, dy):
        cache = self._need_cache()
        if not self.need_input_grad:
            return None
        return _scatter(dy, *cache)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"fill_mode": self.fill_mode, "interpolation": self.interpolation, "fill_value": self.fill_value}
        )
        return config


def _center_matrices(n, h, w, angle=None, zx=None, zy=None, tx=None, ty=None):
    """Keras's affine matrix about the image centre ``((W - 1) / 2, (H - 1) / 2)``: a rotation by
    ``angle`` (radians), then zoom ``(zx, zy)``, then translation ``(tx, ty)`` in pixels."""
    angle = np.zeros(n) if angle is None else angle
    zx = np.ones(n) if zx is None else zx
    zy = np.ones(n) if zy is None else zy
    tx = np.zeros(n) if tx is None else tx
    ty = np.zeros(n) if ty is None else ty
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    cos, sin = np.cos(angle), np.sin(angle)
    a0, a1 = zx * cos, -zx * sin
    b0, b1 = zy * sin, zy * cos
    a2 = tx + cx - cx * a0 - cy * a1
    b2 = ty + cy - cx * b0 - cy * b1
    return np.stack([a0, a1, a2, b0, b1, b2], axis=1)


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


@register_layer
class RandomFlip(_RandomImageLayer):
    """Randomly flip images (Keras ``RandomFlip``).

    ``mode``: "horizontal" (left-right), "vertical" (up-down) or "horizontal_and_vertical"
    (default). Each image is flipped with probability 1/2; with "horizontal_and_vertical" one
    draw decides both flips (as Keras 3 does), so an image is either rotated by 180 degrees or
    left alone. Backward flips ``dy`` the same way.
    """

    _MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if mode not in self._MODES:
            raise ValueError(
                f"RandomFlip layer {self.name} received an unknown mode argument {mode!r}. "
                f"Expected one of {self._MODES}."
            )
        self.mode = mode

    def flip(self, x, flips):
        """``x`` with the images where ``flips (N,)`` is True flipped by the layer's mode."""
        y = np.array(x, copy=True)
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            y[flips] = y[flips][:, :, ::-1]
        if self.mode in ("vertical", "horizontal_and_vertical"):
            y[flips] = y[flips][:, ::-1]
        return y

    def _augment(self, x):
        flips = _dist.draw_rows(x.shape[0], self._rng.random) <= 0.5
        self._cache = flips
        return self.flip(x, flips)

    def call_backward(self, dy):
        flips = self._need_cache()
        if not self.need_input_grad:
            return None
        return self.flip(dy, flips)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


@register_layer
class RandomRotation(_AffineLayer):
    """Rotate each image by a random angle about its centre (Keras ``RandomRotation``).

    ``factor``: a fraction of a full turn; ``f`` gives angles in ``[-f * 360, f * 360]`` degrees,
    ``(lo, hi)`` in ``[lo * 360, hi * 360]`` (values in [-1, 1]). ``fill_mode`` "reflect"
    (default), "wrap", "constant" (``fill_value``) or "nearest"; ``interpolation`` "bilinear"
    (default) or "nearest".
    """

    def __init__(
        self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs
    ):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        self.factor = _factor_pair(factor, "factor", -1.0, 1.0)
        self._factor_arg = _config_factor(factor)

    def _matrices(self, n, h, w):
        deg = _dist.draw_rows(n, lambda k: self._rng.uniform(self.factor[0] * 360.0, self.factor[1] * 360.0, k))
        return _center_matrices(n, h, w, angle=deg * (math.pi / 180.0))

    def get_config(self):
        config = super().get_config()
        config["factor"] = self._factor_arg
        return config


@register_layer
class RandomTranslation(_AffineLayer):
    """Shift each image by a random fraction of its size (Keras ``RandomTranslation``).

    ``height_factor`` / ``width_factor``: ``f`` gives shifts in ``[-f, f] * H`` (resp. ``W``),
    ``(lo, hi)`` in ``[lo, hi] * H`` (values in [-1, 1]); a positive shift moves the content
    down / right.
    """

    def __init__(
        self,
        height_factor,
        width_factor,
        fill_mode="reflect",
        interpolation="bilinear",
        seed=None,
        fill_value=0.0,
        **kwargs,
    ):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        self.height_lower, self.height_upper = _factor_pair(height_factor, "height_factor", -1.0, 1.0)
        self.width_lower, self.width_upper = _factor_pair(width_factor, "width_factor", -1.0, 1.0)
        self.height_factor = _config_factor(height_factor)
        self.width_factor = _config_factor(width_factor)

    def _matrices(self, n, h, w):
        ty = _dist.draw_rows(n, lambda k: self._rng.uniform(self.height_lower, self.height_upper, k)) * h
        tx = _dist.draw_rows(n, lambda k: self._rng.uniform(self.width_lower, self.width_upper, k)) * w
        return np.stack([np.ones(n), np.zeros(n), -tx, np.zeros(n), np.ones(n), -ty], axis=1)

    def get_config(self):
        config = super().get_config()
        config.update({"height_factor": self.height_factor, "width_factor": self.width_factor})
        return config


@register_layer
class RandomZoom(_AffineLayer):
    """Zoom each image about its centre by a random factor (Keras ``RandomZoom``).

    ``height_factor``: ``f`` draws the vertical zoom ``z`` from ``[1 - f, 1 + f]``, ``(lo, hi)``
    from ``[1 + lo, 1 + hi]`` (values in (-1, 1]); the output samples the input over ``z`` times
    the image, so ``z > 1`` zooms out and ``z < 1`` zooms in (Keras). ``width_factor`` likewise
    for the horizontal zoom; ``None`` (default) reuses the vertical one, keeping the aspect ratio.
    """

    def __init__(
        self,
        height_factor,
        width_factor=None,
        fill_mode="reflect",
        interpolation="bilinear",
        seed=None,
        fill_value=0.0,
        **kwargs,
    ):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        self.height_lower, self.height_upper = _factor_pair(
            height_factor, "height_factor", -1.0, 1.0, lo_open=True
        )
        self.height_factor = _config_factor(height_factor)
        self.width_factor = _config_factor(width_factor)
        if width_factor is not None:
            self.width_lower, self.width_upper = _factor_pair(
                width_factor, "width_factor", -1.0, 1.0, lo_open=True
            )

    def _matrices(self, n, h, w):
        zy = _dist.draw_rows(n, lambda k: self._rng.uniform(1.0 + self.height_lower, 1.0 + self.height_upper, k))
        if self.width_factor is None:
            zx = zy
        else:
            zx = _dist.draw_rows(n, lambda k: self._rng.uniform(1.0 + self.width_lower, 1.0 + self.width_upper, k))
        return _center_matrices(n, h, w, zx=zx, zy=zy)

    def get_config(self):
        config = super().get_config()
        config.update({"height_factor": self.height_factor, "width_factor": self.width_factor})
        return config


@register_layer
class RandomContrast(_RandomImageLayer):
    """Scale each image's contrast by a random factor (Keras ``RandomContrast``).

    Per image, ``c`` is drawn from ``[1 - lower, 1 + upper]`` (``factor = f`` gives
    ``lower = upper = f``, as Keras documents; ``(lower, upper)`` as given; values in [0, 1]);
    each channel becomes ``(x - mean) * c + mean`` with its mean over H and W, then the result is
    clipped to ``value_range`` (default ``(0, 255)``: pass ``(0, 1)`` for images scaled to [0, 1]).
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if isinstance(factor, (tuple, list)):
            lower, upper = _factor_pair(factor, "factor", 0.0, 1.0)
        else:
            _, upper = _factor_pair(factor, "factor", 0.0, 1.0)
            lower = upper
        self.lower, self.upper = lower, upper
        self.factor = _config_factor(factor)
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            raise ValueError(
                f"`value_range` must be a pair (low, high). Received: value_range={value_range!r}"
            ) from None
        if lo > hi:
            raise ValueError(f"`value_range` must have low <= high. Received: value_range={value_range!r}")
        self.value_range = (lo, hi)

    def adjust(self, x, factors):
        """Contrast-adjust the batch ``x`` by ``factors (N,)`` (no randomness) -> (y, inside mask)."""
        f = np.asarray(factors, x.dtype).reshape(-1, 1, 1, 1)
        mean = x.mean(axis=(1, 2), keepdims=True)
        z = (x - mean) * f + mean
        lo, hi = self.value_range
        inside = (z >= lo) & (z <= hi)
        return np.clip(z, lo, hi).astype(x.dtype, copy=False), inside

    def _augment(self, x):
        factors = _dist.draw_rows(x.shape[0], lambda k: self._rng.uniform(1.0 - self.lower, 1.0 + self.upper, k))
        y, inside = self.adjust(x, factors)
        self._cache = (factors, inside)
        return y

    def call_backward(self, dy):
        factors, inside = self._need_cache()
        if not self.need_input_grad:
            return None
        f = np.asarray(factors, dy.dtype).reshape(-1, 1, 1, 1)
        g = dy * inside
        return (g * f + g.mean(axis=(1, 2), keepdims=True) * (1 - f)).astype(dy.dtype, copy=False)

    def get_config(self):
        config = super().get_config()
        config.update({"factor": self.factor, "value_range": list(self.value_range)})
        return config
