"""Activation layers with arguments: LeakyReLU, PReLU (a learned slope) and ELU.

Design notes
------------
* Keras 3's formulas: ``LeakyReLU`` is ``x`` for ``x >= 0`` else ``negative_slope * x``
  (default slope 0.3, not the 0.2 of the ``leaky_relu`` activation function);
  ``PReLU`` is ``relu(x) - alpha * relu(-x)`` with ``alpha`` a weight shaped like one
  sample, of size 1 along ``shared_axes`` (axes counted with the batch axis, as Keras);
  ``ELU`` is ``x`` for ``x > 0`` else ``alpha * (exp(x) - 1)``.
* Vectorised NumPy; none of them sits on a hot path the compiled kernels cover. Each
  caches what its derivative needs in training only: LeakyReLU a boolean mask, PReLU and
  ELU the input (their derivative is not a function of the output for every slope).
* ``dy`` and the input are never modified in place.
"""

from __future__ import annotations

import warnings

import numpy as np

from fastconv import initializers as _initializers
from fastconv import regularizers as _regularizers
from fastconv.layers.base import Layer, register_layer, shape_str

__all__ = ["ELU", "LeakyReLU", "PReLU"]


def _check_constraint(value, name):
    if value is not None:
        raise ValueError(
            f"fastconv has no weight constraints; `{name}` must be None. Received: {name}={value!r}"
        )


@register_layer
class LeakyReLU(Layer):
    """Leaky ReLU (Keras ``LeakyReLU``): ``x`` if ``x >= 0`` else ``negative_slope * x``.

    Parameters
    ----------
    negative_slope : float >= 0
        Slope for negative inputs; Keras 3's default 0.3. The deprecated Keras name
        ``alpha`` is accepted with a warning, as Keras does.

    Examples
    --------
    >>> LeakyReLU()(np.array([[-10.0, 0.0, 5.0]]))
    array([[-3.,  0.,  5.]], dtype=float32)
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError(
                "The negative_slope value of a Leaky ReLU layer cannot be None or negative value. "
                f"Expected a float. Received: negative_slope={negative_slope}"
            )
        self.negative_slope = float(negative_slope)

    def call(self, x, training=False):
        pos = x >= 0
        y = np.where(pos, x, x * x.dtype.type(self.negative_slope))
        if training:
            self._cache = pos
        return y

    def call_backward(self, dy):
        pos = self._need_cache()
        if not self.need_input_grad:
            return None
        return np.where(pos, dy, dy * dy.dtype.type(self.negative_slope))

    def get_config(self):
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config


@register_layer
class PReLU(Layer):
    """Parametric ReLU (Keras ``PReLU``): ``x`` for ``x >= 0``, ``alpha * x`` otherwise, with a
    learned ``alpha``.

    ``alpha`` has the shape of one sample (``(H, W, C)`` for images) with size 1 on each of
    ``shared_axes`` (axes counted with the batch axis: ``shared_axes=[1, 2]`` gives one slope
    per channel, ``(1, 1, C)``). Weights: ``[alpha]``.
    """

    min_ndim = 2

    def __init__(
        self,
        alpha_initializer="Zeros",
        alpha_regularizer=None,
        alpha_constraint=None,
        shared_axes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.alpha_initializer = _initializers.get(alpha_initializer)
        self.alpha_regularizer = _regularizers.get(alpha_regularizer)
        _check_constraint(alpha_constraint, "alpha_constraint")
        if shared_axes is None:
            self.shared_axes = None
        elif isinstance(shared_axes, (list, tuple)):
            self.shared_axes = [int(a) for a in shared_axes]
        else:
            self.shared_axes = [int(shared_axes)]

    def _build_weights(self, input_shape):
        ndim = len(input_shape) + 1
        shape = list(input_shape)
        for a in self.shared_axes or ():
            if not 1 <= a < ndim:
                raise ValueError(
                    f'Layer "{self.name}": `shared_axes` must be axes 1 .. {ndim - 1} of the input '
                    f"(axis 0 is the batch). Received: shared_axes={self.shared_axes}, input shape "
                    f"{shape_str(input_shape)}"
                )
            shape[a - 1] = 1
        if any(s is None for s in shape):
            raise ValueError(
                f'Layer "{self.name}": every axis not in `shared_axes` must have a defined size. '
                f"Received input shape {shape_str(input_shape)}, shared_axes={self.shared_axes}"
            )
        self.add_weight("alpha", tuple(shape), self.alpha_initializer, self.alpha_regularizer)

    def _check_input(self, x):
        Layer._check_input(self, x)
        alpha = self.params["alpha"]
        for size, a in zip(x.shape[1:], alpha.shape):
            if a != 1 and size != a:
                raise ValueError(
                    f'Input 0 of layer "{self.name}" is incompatible with the layer: alpha has shape '
                    f"{alpha.shape}, but received input with shape {x.shape}"
                )

    def call(self, x, training=False):
        alpha = self.params["alpha"]
        y = np.where(x >= 0, x, alpha * x).astype(x.dtype, copy=False)
        if training:
            self._cache = x
        return y

    def call_backward(self, dy):
        x = self._need_cache()
        alpha = self.params["alpha"]
        neg = x < 0
        if self.trainable:
            g = np.where(neg, dy * x, 0)
            axes = (0,) + tuple(i + 1 for i, a in enumerate(alpha.shape) if a == 1 and x.shape[i + 1] != 1)
            self._store_grad("alpha", g.sum(axis=axes).reshape(alpha.shape))
        if not self.need_input_grad:
            return None
        return np.where(neg, alpha * dy, dy).astype(dy.dtype, copy=False)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha_initializer": _initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": _regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": None,
                "shared_axes": None if self.shared_axes is None else list(self.shared_axes),
            }
        )
        return config


@register_layer
class ELU(Layer):
    """Exponential linear unit (Keras ``ELU``): ``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Parameters
    ----------
    alpha : float
        Scale of the negative part; default 1.0.
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, x, training=False):
        a = x.dtype.type(self.alpha)
        y = np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
        if training:
            self._cache = x
        return y

    def call_backward(self, dy):
        x = self._need_cache()
        if not self.need_input_grad:
            return None
        a = dy.dtype.type(self.alpha)
        return np.where(x > 0, dy, dy * (a * np.exp(np.minimum(x, 0)))).astype(dy.dtype, copy=False)

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config
