"""LayerNormalization (Keras semantics): per-sample statistics over ``axis``.

Design notes
------------
* ``axis`` (default -1; an int or a list, counted with the batch axis) names the axes normalised
  together: for each sample, ``mean`` and the biased ``var`` over those axes,
  ``xhat = (x - mean) / sqrt(var + epsilon)``, ``y = gamma * xhat + beta`` with ``gamma`` and
  ``beta`` shaped like those axes (weights in Keras's order: gamma, beta; ``scale`` / ``center``
  drop them). Training and inference compute the same thing.
* Backward, with ``g = dy * gamma`` and means over ``axis``:
  ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + epsilon)``;
  ``dgamma = sum(dy * xhat)``, ``dbeta = sum(dy)`` over the other axes.
* Vectorised NumPy, statistics in float64 for float32 inputs (one extra pass; the layer is not
  on a hot path of fastconv's convolution models). The cache holds ``xhat`` and ``1 / std``.
"""

from __future__ import annotations

import numpy as np

from fastconv import initializers as _initializers
from fastconv import regularizers as _regularizers
from fastconv.layers.base import Layer, register_layer, shape_str

__all__ = ["LayerNormalization"]


@register_layer
class LayerNormalization(Layer):
    """Layer normalisation (Keras ``LayerNormalization``): normalise each sample over ``axis``.

    Parameters
    ----------
    axis : int or list of ints
        Axes to normalise (with the batch axis counted; default -1, the features / channels).
    epsilon : float
        Added to the variance; default 1e-3 (Keras).
    center, scale : bool
        Learn ``beta`` / ``gamma``.
    """

    min_ndim = 2

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        if kwargs.pop("rms_scaling", False):
            raise ValueError(
                "LayerNormalization(rms_scaling=True) is deprecated in Keras and not supported; "
                "use RMS normalisation instead."
            )
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = [int(a) for a in axis]
        elif isinstance(axis, (int, np.integer)):
            self.axis = int(axis)
        else:
            raise TypeError(
                f"Expected an int or a list/tuple of ints for the argument 'axis', but received: {axis!r}"
            )
        for name, c in (("beta_constraint", beta_constraint), ("gamma_constraint", gamma_constraint)):
            if c is not None:
                raise ValueError(
                    f"fastconv has no weight constraints; `{name}` must be None. Received: {c!r}"
                )
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.beta_regularizer = _regularizers.get(beta_regularizer)
        self.gamma_regularizer = _regularizers.get(gamma_regularizer)

    def _axes(self, input_shape):
        """The normalised axes as sorted non-negative indices of the batch (batch axis 0)."""
        ndim = len(input_shape) + 1
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        out = []
        for a in axes:
            if a >= ndim or a < -ndim:
                raise ValueError(
                    f"Axis {a} is out of bounds for input shape {shape_str(input_shape)}. Received: "
                    f"axis={self.axis}"
                )
            out.append(a % ndim)
        if 0 in out:
            raise ValueError(
                f'Layer "{self.name}" cannot normalise over the batch axis 0. Received: axis={self.axis}'
            )
        return tuple(sorted(set(out)))

    def _build_weights(self, input_shape):
        axes = self._axes(input_shape)
        shape = tuple(input_shape[a - 1] for a in axes)
        if any(s is None for s in shape):
            raise ValueError(
                f'Layer "{self.name}": the normalised axes {axes} must have defined sizes. Received input '
                f"shape {shape_str(input_shape)}"
            )
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer)

    def compute_output_shape(self, input_shape):
        self._axes(input_shape)
        return tuple(input_shape)

    def _check_input(self, x):
        Layer._check_input(self, x)
        axes = self._axes(x.shape[1:])
        want = tuple(self.input_shape[a - 1] for a in axes)
        got = tuple(x.shape[a] for a in axes)
        if want != got:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected sizes {want} on '
                f"axes {axes}, but received input with shape {x.shape}"
            )

    def _param_view(self, key, ndim, axes):
        """A weight reshaped to broadcast against the batch."""
        p = self.params[key]
        shape = [1] * ndim
        for a, s in zip(axes, p.shape):
            shape[a] = s
        return p.reshape(shape)

    def call(self, x, training=False):
        axes = self._axes(x.shape[1:])
        wd = np.float64
        xw = x.astype(wd, copy=False)
        mean = xw.mean(axis=axes, keepdims=True)
        xc = xw - mean
        var = np.mean(xc * xc, axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(var + self.epsilon)
        xhat = xc * inv
        y = xhat
        if self.scale:
            y = y * self._param_view("gamma", x.ndim, axes)
        if self.center:
            y = y + self._param_view("beta", x.ndim, axes)
        if training:
            self._cache = (xhat, inv, axes)
        return y.astype(x.dtype, copy=False)

    def call_backward(self, dy):
        xhat, inv, axes = self._need_cache()
        other = tuple(a for a in range(dy.ndim) if a not in axes)
        dyw = dy.astype(np.float64, copy=False)
        if self.trainable:
            if self.scale:
                self._store_grad("gamma", (dyw * xhat).sum(axis=other))
            if self.center:
                self._store_grad("beta", dyw.sum(axis=other))
        if not self.need_input_grad:
            return None
        g = dyw * self._param_view("gamma", dy.ndim, axes) if self.scale else dyw
        dx = (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True)) * inv
        return dx.astype(dy.dtype, copy=False)

    def get_config(self):
        config = super().get_config()
        ser = _initializers.serialize
        config.update(
            {
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": ser(self.beta_initializer),
                "gamma_initializer": ser(self.gamma_initializer),
                "beta_regularizer": _regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": _regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": None,
                "gamma_constraint": None,
            }
        )
        return config
