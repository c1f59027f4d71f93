"""Deterministic preprocessing layers: Rescaling and Normalization (Keras 3 semantics).

Design notes
------------
* Both are affine maps fixed before training, so they sit at a model's input where no input
  gradient is needed; ``backward`` still returns the exact adjoint (``dy * scale``,
  ``dy / std``) so they work anywhere in a model.
* ``Normalization`` follows Keras: ``axis`` names the axes that *keep* their own statistics
  (counted with the batch axis; default -1, one mean per channel), every other axis is reduced;
  ``(x - mean) / max(sqrt(variance), 1e-7)``, or ``mean + x * max(sqrt(variance), 1e-7)`` with
  ``invert=True``. Given ``mean`` and ``variance`` the layer has no weights (as Keras); otherwise
  it has the non-trainable weights ``mean``, ``variance`` (shaped like the kept axes) and
  ``count`` (an int64 scalar), in that order, filled by ``adapt(data)``.
* ``adapt`` computes in float64 and merges batches of an iterable with the parallel
  mean/variance update (Chan et al.), so one array and the same data in batches agree.
"""

from __future__ import annotations

import math

import numpy as np

from fastconv.layers.base import Layer, register_layer, shape_str

__all__ = ["Normalization", "Rescaling"]

_KERAS_EPSILON = 1e-7  # keras.config.epsilon(), the floor of the standard deviation


def _to_config_value(v):
    """A scalar or an array-like as JSON (float or nested list)."""
    a = np.asarray(v, dtype=np.float64)
    return float(a) if a.ndim == 0 else a.tolist()


@register_layer
class Rescaling(Layer):
    """``x * scale + offset`` (Keras ``Rescaling``), e.g. ``Rescaling(1 / 255)`` for [0, 1] pixels
    or ``Rescaling(1 / 127.5, offset=-1)`` for [-1, 1].

    ``scale`` and ``offset`` are floats or arrays that broadcast against one sample (a
    per-channel ``scale`` of shape ``(C,)``, for instance). Integer inputs (uint8 images) are
    converted to the layer's dtype first.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _to_config_value(scale)
        self.offset = _to_config_value(offset)

    def _coeffs(self, dtype):
        return np.asarray(self.scale, dtype), np.asarray(self.offset, dtype)

    def compute_output_shape(self, input_shape):
        shape = np.broadcast_shapes(
            tuple(1 if s is None else s for s in input_shape), np.shape(self.scale), np.shape(self.offset)
        )
        if len(shape) != len(input_shape):
            raise ValueError(
                f'Layer "{self.name}": `scale` and `offset` must broadcast against one sample. '
                f"Received: scale shape {np.shape(self.scale)}, offset shape {np.shape(self.offset)}, "
                f"input shape {shape_str(input_shape)}"
            )
        return tuple(input_shape)

    def call(self, x, training=False):
        scale, offset = self._coeffs(x.dtype)
        y = x * scale
        y += offset
        if training:
            self._cache = x.shape
        return y

    def call_backward(self, dy):
        shape = self._need_cache()
        if not self.need_input_grad:
            return None
        scale, _ = self._coeffs(dy.dtype)
        dx = dy * scale
        return dx if dx.shape == shape else np.broadcast_to(dx, shape).copy()

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "offset": self.offset})
        return config


@register_layer
class Normalization(Layer):
    """Feature-wise standardisation (Keras ``Normalization``): ``(x - mean) / sqrt(variance)``.

    Parameters
    ----------
    axis : int, tuple of ints or None
        The axes that keep separate statistics (counted with the batch axis; -1 is the last,
        the channels). ``None`` gives one scalar mean and variance.
    mean, variance : float or array-like, optional
        Fixed statistics (both or neither), broadcast over the kept axes. Without them call
        ``adapt(data)`` before use (the layer then owns the weights mean, variance, count).
    invert : bool
        Apply the inverse map ``mean + x * sqrt(variance)`` (to undo a normalisation).

    Examples
    --------
    >>> norm = Normalization(); norm.adapt(np.array([[0.0], [2.0]]))
    >>> norm(np.array([[1.0], [3.0]]))[:, 0]
    array([0., 2.], dtype=float32)
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, (int, np.integer)):
            axis = (int(axis),)
        else:
            axis = tuple(int(a) for a in axis)
        self.axis = axis
        if (mean is None) != (variance is None):
            raise ValueError(
                "When setting values directly, both `mean` and `variance` must be set. "
                f"Received: mean={mean} and variance={variance}"
            )
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(
                    "When setting values directly, `mean` and `variance` must have the same shape. "
                    f"Received: mean shape {np.shape(mean)} and variance shape {np.shape(variance)}"
                )
            if np.ndim(mean) > len(self.axis):
                raise ValueError(
                    "The rank of `mean` must be less than or equal to the number of axes "
                    f"({len(self.axis)}). Received: mean shape {np.shape(mean)} for axis {self.axis}"
                )
        self.input_mean = None if mean is None else np.asarray(mean, np.float64)
        self.input_variance = None if variance is None else np.asarray(variance, np.float64)
        self.invert = bool(invert)

    # -- axes and weights -----------------------------------------------------
    def _axes(self, input_shape):
        """(kept axes, reduced axes, broadcast shape) for a per-sample shape, axes with the batch."""
        ndim = len(input_shape) + 1
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(
                f"All `axis` values must be in the range [-ndim, ndim). Received inputs with "
                f"ndim={ndim}, while axis={self.axis}"
            )
        keep = tuple(sorted({a % ndim for a in self.axis}))
        full = (None, *input_shape)
        for d in keep:
            if full[d] is None:
                raise ValueError(
                    f"All `axis` values to be kept must have a known shape. Received axis={self.axis}, "
                    f"inputs.shape={shape_str(input_shape)}, with unknown axis at index {d}"
                )
        reduce = tuple(d for d in range(ndim) if d not in keep)
        bshape = tuple(full[d] if d in keep else 1 for d in range(ndim))
        return keep, reduce, bshape

    def _build_weights(self, input_shape):
        keep, _, _ = self._axes(input_shape)
        if self.input_mean is None:
            shape = tuple(input_shape[d - 1] for d in keep)
            # set directly: add_weight's contiguous copy would turn axis=None's 0-d weights into 1-d
            self.state["mean"] = np.zeros(shape, self.dtype)
            self.state["variance"] = np.ones(shape, self.dtype)
            self.state["count"] = np.zeros((), np.int64)

    def _stats(self, dtype):
        """mean and the floored standard deviation, shaped to broadcast against a batch."""
        keep, _, bshape = self._axes(self.input_shape)
        if self.input_mean is None:
            mean = self.state["mean"].reshape(bshape)
            var = self.state["variance"].reshape(bshape)
        else:
            mean, var = self.input_mean, self.input_variance
            if mean.ndim:  # trailing dims of mean go to the last kept axes (Keras)
                expanded = [1] * len(bshape)
                for i in range(1, mean.ndim + 1):
                    expanded[keep[-i]] = mean.shape[-i]
                mean, var = mean.reshape(expanded), var.reshape(expanded)
            mean = np.broadcast_to(mean, bshape)
            var = np.broadcast_to(var, bshape)
        std = np.maximum(np.sqrt(np.asarray(var, np.float64)), _KERAS_EPSILON)
        return np.asarray(mean, dtype), std.astype(dtype)

    # -- adapt ------------------------------------------------------------------
    def adapt(self, data) -> None:
        """Set ``mean`` and ``variance`` from ``data``: an array ``(N, ...)`` or an iterable of
        such batches (statistics over every axis not in ``axis``, variance biased as Keras)."""
        if self.input_mean is not None:
            raise ValueError(
                f'Layer "{self.name}" was given `mean` and `variance`; adapt() has nothing to learn.'
            )
        if isinstance(data, np.ndarray) or not hasattr(data, "__iter__"):
            batches = [np.asarray(data)]
        else:
            batches = (np.asarray(b[0] if isinstance(b, tuple) else b) for b in data)
        total_mean = total_var = None
        total = 0
        for batch in batches:
            if not self.built:
                self.build(batch.shape[1:])
            keep, reduce, _ = self._axes(self.input_shape)
            if any(batch.shape[d] != self.input_shape[d - 1] for d in keep) or batch.ndim != len(
                self.input_shape
            ) + 1:
                raise ValueError(
                    f"The layer was built with input_shape={shape_str(self.input_shape)}, but adapt() "
                    f"is being called with data with an incompatible shape, data.shape={batch.shape}"
                )
            b = np.asarray(batch, np.float64)
            n = math.prod(b.shape[d] for d in reduce)
            if n == 0:
                continue
            bm = b.mean(axis=reduce)
            bv = b.var(axis=reduce)
            if total_mean is None:
                total_mean, total_var, total = bm, bv, n
                continue
            t = total + n
            delta = bm - total_mean
            total_var = (total * total_var + n * bv) / t + delta * delta * (total * n / (t * t))
            total_mean = total_mean + delta * (n / t)
            total = t
        if total_mean is None:
            raise ValueError("adapt() received no data (an empty array or an empty iterable of batches).")
        self.state["mean"][...] = total_mean
        self.state["variance"][...] = total_var
        self.state["count"][...] = total

    # -- forward / backward -------------------------------------------------------
    def call(self, x, training=False):
        mean, std = self._stats(x.dtype)
        y = mean + x * std if self.invert else (x - mean) / std
        if training:
            self._cache = True
        return y.astype(x.dtype, copy=False)

    def call_backward(self, dy):
        self._need_cache()
        if not self.need_input_grad:
            return None
        _, std = self._stats(dy.dtype)
        return dy * std if self.invert else dy / std

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": list(self.axis),
                "invert": self.invert,
                "mean": None if self.input_mean is None else self.input_mean.tolist(),
                "variance": None if self.input_variance is None else self.input_variance.tolist(),
            }
        )
        return config
