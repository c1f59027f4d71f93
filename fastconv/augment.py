"""Random image augmentation (the part of Keras's ``ImageDataGenerator`` the seeds use).

Design notes
------------
* A whole batch is transformed at once: every image gets its own 2x2 matrix
  and offset (rotation, shear, zoom, shift, flips) mapping **output** pixel
  coordinates to **input** coordinates (the inverse map, as
  ``scipy.ndimage.affine_transform`` uses), and the batch is resampled with
  vectorised bilinear (or nearest) interpolation: four ``take_along_axis``
  gathers over ``(B, H*W, C)``. No Python loop runs per pixel or per image.
* Parameters follow Keras: ``rotation_range`` in degrees (uniform in
  ``[-r, r]``); ``width_shift_range`` / ``height_shift_range`` as a fraction
  of the size when < 1, else pixels; ``zoom_range`` ``z`` means a zoom factor
  drawn per axis from ``[1 - z, 1 + z]`` (a factor < 1 magnifies, as in
  Keras); ``shear_range`` in degrees; ``fill_mode`` "nearest" (default),
  "constant" (``cval``), "reflect" or "wrap"; ``rescale`` multiplies after the
  transform.
* Randomness comes from one ``np.random.Generator`` seeded by ``seed``.

Examples
--------
>>> import numpy as np
>>> aug = ImageAugmenter(rotation_range=10, width_shift_range=0.1, zoom_range=0.1, seed=0)
>>> x = np.zeros((100, 28, 28, 1), np.float32); y = np.arange(100) % 10
>>> xb, yb = next(aug.flow(x, y, batch_size=32))
>>> xb.shape, yb.shape
((32, 28, 28, 1), (32,))
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ImageAugmenter"]

_FILL_MODES = ("nearest", "constant", "reflect", "wrap")


def _range_pair(value, name, center=0.0):
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if v < 0:
            raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")
        return (center - v, center + v)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a float or a pair [lower, upper]. Received: {name}={value!r}"
        ) from None
    if lo > hi:
        raise ValueError(f"`{name}` must be [lower, upper] with lower <= upper. Received: {name}={value!r}")
    return (lo, hi)


def _map_index(i, n, mode):
    """Integer indices ``i`` (any values) -> valid indices in [0, n) for the fill mode (not "constant")."""
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    # "reflect" (scipy's: d c b a | a b c d | d c b a)
    period = 2 * n
    j = np.mod(i, period)
    return np.where(j >= n, period - 1 - j, j)


class ImageAugmenter:
    """Random affine augmentation of image batches (Keras ``ImageDataGenerator`` subset).

    Parameters
    ----------
    rotation_range : float
        Degrees; each image is rotated by an angle uniform in ``[-rotation_range, rotation_range]``.
    width_shift_range, height_shift_range : float
        Fraction of the width / height when < 1, else pixels.
    zoom_range : float or [lower, upper]
        A float ``z`` is ``[1 - z, 1 + z]``; each axis draws its own factor.
    shear_range : float
        Degrees.
    horizontal_flip, vertical_flip : bool
        Flip half of the images.
    fill_mode : {"nearest", "constant", "reflect", "wrap"}
    cval : float
        Fill value for ``fill_mode="constant"``.
    interpolation : {"bilinear", "nearest"}
    rescale : float, optional
        Multiply the output by this factor (e.g. ``1 / 255``).
    seed : int, optional
    dtype : output dtype, default float32.
    """

    def __init__(
        self,
        rotation_range=0.0,
        width_shift_range=0.0,
        height_shift_range=0.0,
        zoom_range=0.0,
        shear_range=0.0,
        horizontal_flip=False,
        vertical_flip=False,
        fill_mode="nearest",
        cval=0.0,
        interpolation="bilinear",
        rescale=None,
        seed=None,
        dtype="float32",
    ):
        self.rotation_range = float(rotation_range)
        self.width_shift_range = float(width_shift_range)
        self.height_shift_range = float(height_shift_range)
        for name in ("rotation_range", "width_shift_range", "height_shift_range"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={getattr(self, name)}")
        self.zoom_range = _range_pair(zoom_range, "zoom_range", center=1.0)
        if self.zoom_range[0] <= 0:
            raise ValueError(f"`zoom_range` must give factors > 0. Received: zoom_range={zoom_range!r}")
        self.shear_range = float(shear_range)
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"`fill_mode` must be one of {_FILL_MODES}. Received: fill_mode={fill_mode!r}")
        self.fill_mode = fill_mode
        self.cval = float(cval)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                f'`interpolation` must be "bilinear" or "nearest". Received: interpolation={interpolation!r}'
            )
        self.interpolation = interpolation
        self.rescale = None if rescale is None else float(rescale)
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------
    def _is_identity(self) -> bool:
        return (
            self.rotation_range == 0
            and self.width_shift_range == 0
            and self.height_shift_range == 0
            and self.zoom_range == (1.0, 1.0)
            and self.shear_range == 0
            and not self.horizontal_flip
            and not self.vertical_flip
        )

    def _shift(self, rng, b, rng_value, size):
        if rng_value == 0:
            return np.zeros(b)
        if rng_value < 1:
            return rng.uniform(-rng_value, rng_value, b) * size
        return rng.uniform(-rng_value, rng_value, b)

    def random_params(self, batch_size, height, width, rng=None):
        """Draw per-image parameters: dict of arrays of length ``batch_size``."""
        rng = self.rng if rng is None else rng
        b = batch_size
        deg = math.pi / 180.0
        theta = (
            rng.uniform(-self.rotation_range, self.rotation_range, b) * deg
            if self.rotation_range
            else np.zeros(b)
        )
        shear = rng.uniform(-self.shear_range, self.shear_range, b) * deg if self.shear_range else np.zeros(b)
        zlo, zhi = self.zoom_range
        if zlo == zhi == 1.0:
            zy = zx = np.ones(b)
        else:
            zy, zx = rng.uniform(zlo, zhi, (2, b))
        return {
            "theta": theta,
            "ty": self._shift(rng, b, self.height_shift_range, height),
            "tx": self._shift(rng, b, self.width_shift_range, width),
            "zy": zy,
            "zx": zx,
            "shear": shear,
            "flip_h": rng.random(b) < 0.5 if self.horizontal_flip else np.zeros(b, bool),
            "flip_v": rng.random(b) < 0.5 if self.vertical_flip else np.zeros(b, bool),
        }

    def apply_transform(self, x, params):
        """Resample a batch ``x (B, H, W, C)`` with the given per-image parameters.

        Returns a new array ``(B, H, W, C)`` of ``self.dtype`` (before ``rescale``).
        """
        x = np.asarray(x)
        b, h, w, c = x.shape
        dt = self.dtype
        # Inverse map (output (row, col) -> input (row, col)) about the image centre:
        # src = A @ (dst - centre) + centre + shift,  A = R(theta) @ Shear @ Zoom  (Keras's order).
        cos, sin = np.cos(params["theta"]), np.sin(params["theta"])
        shear = params["shear"]
        zy, zx = params["zy"], params["zx"]
        # R @ S with S = [[1, -sin(sh)], [0, cos(sh)]], then @ diag(zy, zx)
        a00 = cos * zy
        a01 = (-cos * np.sin(shear) - sin * np.cos(shear)) * zx
        a10 = sin * zy
        a11 = (-sin * np.sin(shear) + cos * np.cos(shear)) * zx
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        rows = np.arange(h, dtype=np.float64) - cy
        cols = np.arange(w, dtype=np.float64) - cx
        rr = np.where(params["flip_v"][:, None], -rows[None, :], rows[None, :])  # (B, H)
        cc = np.where(params["flip_h"][:, None], -cols[None, :], cols[None, :])  # (B, W)
        src_r = (
            a00[:, None, None] * rr[:, :, None]
            + a01[:, None, None] * cc[:, None, :]
            + (cy + params["ty"])[:, None, None]
        )
        src_c = (
            a10[:, None, None] * rr[:, :, None]
            + a11[:, None, None] * cc[:, None, :]
            + (cx + params["tx"])[:, None, None]
        )
        xf = x.reshape(b, h * w, c)
        if self.interpolation == "nearest":
            out = self._gather(
                xf, np.floor(src_r + 0.5).astype(np.int64), np.floor(src_c + 0.5).astype(np.int64), h, w
            )
            return out.reshape(b, h, w, c).astype(dt, copy=False)
        r0f = np.floor(src_r)
        c0f = np.floor(src_c)
        fr = (src_r - r0f).astype(dt)[..., None].reshape(b, h * w, 1)
        fc = (src_c - c0f).astype(dt)[..., None].reshape(b, h * w, 1)
        r0 = r0f.astype(np.int64)
        c0 = c0f.astype(np.int64)
        top = self._gather(xf, r0, c0, h, w) * (1 - fc) + self._gather(xf, r0, c0 + 1, h, w) * fc
        bot = self._gather(xf, r0 + 1, c0, h, w) * (1 - fc) + self._gather(xf, r0 + 1, c0 + 1, h, w) * fc
        out = top * (1 - fr) + bot * fr
        return out.reshape(b, h, w, c).astype(dt, copy=False)

    def _gather(self, xf, r, c, h, w):
        """``xf (B, H*W, C)`` at integer coordinates ``r, c (B, H, W)`` with the fill mode -> ``(B, H*W, C)``."""
        b, hw, ch = xf.shape
        base = (np.arange(b, dtype=np.int64) * hw)[:, None, None]
        if self.fill_mode == "constant":
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            idx = np.clip(r, 0, h - 1) * w + np.clip(c, 0, w - 1)
        else:
            idx = _map_index(r, h, self.fill_mode) * w + _map_index(c, w, self.fill_mode)
        idx += base
        vals = xf.reshape(b * hw, ch)[idx.reshape(-1)].reshape(b, hw, ch)
        if vals.dtype != self.dtype:
            vals = vals.astype(self.dtype)
        if self.fill_mode == "constant":
            vals[~inside.reshape(b, hw)] = self.cval
        return vals

    def augment(self, x, rng=None):
        """A randomly transformed copy of the batch ``x`` ``(B, H, W, C)`` or ``(B, H, W)``."""
        x = np.asarray(x)
        squeeze = x.ndim == 3
        if squeeze:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(
                f"ImageAugmenter expects images (B, H, W, C) or (B, H, W). Received shape {x.shape}"
            )
        if self._is_identity():
            out = x.astype(self.dtype, copy=True)
        else:
            params = self.random_params(x.shape[0], x.shape[1], x.shape[2], rng)
            out = self.apply_transform(x, params)
        if self.rescale is not None:
            out *= self.rescale
        return out[..., 0] if squeeze else out

    def random_transform(self, image, seed=None):
        """One randomly transformed image ``(H, W, C)`` (Keras's per-image call)."""
        rng = None if seed is None else np.random.default_rng(seed)
        return self.augment(np.asarray(image)[None], rng=rng)[0]

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None):
        """Endless iterator of augmented batches ``(xb, yb)`` (or ``xb`` when ``y`` is None).

        ``len(flow)`` is the number of batches in one pass, ``ceil(N / batch_size)``,
        so ``model.fit(flow, epochs=...)`` covers the data once per epoch; it is
        reshuffled each pass when ``shuffle``.
        """
        return _Flow(self, x, y, batch_size, shuffle, seed)


class _Flow:
    """Iterator over augmented batches, forever (Keras's ``NumpyArrayIterator``)."""

    def __init__(self, augmenter, x, y, batch_size, shuffle, seed):
        x = np.asarray(x)
        if x.ndim not in (3, 4):
            raise ValueError(f"flow: x must be images (N, H, W, C) or (N, H, W). Received shape {x.shape}")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"flow: x and y must have the same length. Received: {len(x)} and {len(y)}")
        if int(batch_size) < 1:
            raise ValueError(f"flow: batch_size must be >= 1. Received: batch_size={batch_size}")
        if len(x) == 0:
            raise ValueError("flow: x is empty.")
        self.augmenter = augmenter
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.rng = np.random.default_rng(seed) if seed is not None else augmenter.rng
        self.n = len(x)
        self._order = None
        self._pos = 0

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        return self

    def reset(self):
        self._order = None
        self._pos = 0

    def __next__(self):
        if self._order is None or self._pos >= self.n:
            self._order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += len(idx)
        xb = self.augmenter.augment(self.x[idx], rng=self.rng)
        if self.y is None:
            return xb
        return xb, self.y[idx]
