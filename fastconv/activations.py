"""Element-wise activations by Keras name, each a forward / backward pair.

Design notes
------------
Every activation here has a derivative that can be written from its *output*
``y`` alone (relu: ``y > 0``; sigmoid: ``y (1 - y)``; tanh: ``1 - y^2``;
elu: ``y + alpha`` for ``y < 0``; selu: ``y + scale * alpha``; softmax: the
Jacobian-vector product ``y * (dy - sum(dy * y))``). Layers therefore cache
``y`` only (never the pre-activation), and a fused ``activation=`` on Conv2D or
Dense costs one cached array, like Keras, which counts no extra layer.

``forward(x, out=None)`` may write into ``out`` (layers pass their freshly
allocated pre-activation buffer to avoid a copy; activations that cannot work
in place ignore it, so always use the returned array); ``backward(dy, y)`` never
modifies ``dy`` (a residual block hands the same ``dy`` to two paths).

Sigmoid and softmax are numerically stable for any finite input.

Examples
--------
>>> act = get("relu")
>>> y = act.forward(np.array([-1.0, 2.0]))
>>> act.backward(np.ones(2), y)
array([0., 1.])
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "elu",
    "get",
    "linear",
    "relu",
    "selu",
    "serialize",
    "sigmoid",
    "softmax",
    "tanh",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class Activation:
    """An element-wise activation: ``forward(x, out=None) -> y``, ``backward(dy, y) -> dx``."""

    name = "linear"

    def forward(self, x, out=None):
        return x

    def backward(self, dy, y):
        return dy

    def __call__(self, x):
        return self.forward(np.asarray(x))

    def __repr__(self):
        return f"<activation {self.name}>"


class _Linear(Activation):
    name = "linear"


class _ReLU(Activation):
    name = "relu"

    def forward(self, x, out=None):
        return np.maximum(x, 0, out=out)

    def backward(self, dy, y):
        return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)


class _Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, x, out=None):
        # 1 / (1 + exp(-x)) for x >= 0 and exp(x) / (1 + exp(x)) for x < 0,
        # written as one expression on e = exp(-|x|) so nothing overflows.
        e = np.exp(-np.abs(x))
        num = np.where(x >= 0, 1.0, e).astype(e.dtype, copy=False)
        return np.divide(num, 1.0 + e, out=out)

    def backward(self, dy, y):
        return dy * (y * (1.0 - y))


class _Tanh(Activation):
    name = "tanh"

    def forward(self, x, out=None):
        return np.tanh(x, out=out)

    def backward(self, dy, y):
        return dy * (1.0 - y * y)


class _ELU(Activation):
    name = "elu"

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def forward(self, x, out=None):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def backward(self, dy, y):
        return np.where(y > 0, dy, dy * (y + self.alpha))


class _SELU(Activation):
    name = "selu"

    def forward(self, x, out=None):
        neg = (_SELU_SCALE * _SELU_ALPHA) * np.expm1(np.minimum(x, 0))
        return np.where(x > 0, _SELU_SCALE * x, neg)

    def backward(self, dy, y):
        return np.where(y > 0, _SELU_SCALE * dy, dy * (y + _SELU_SCALE * _SELU_ALPHA))


class _Softmax(Activation):
    """Softmax over the last axis (Keras's default axis=-1)."""

    name = "softmax"

    def forward(self, x, out=None):
        z = np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
        np.exp(z, out=z)
        z /= z.sum(axis=-1, keepdims=True)
        return z

    def backward(self, dy, y):
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


relu = _ReLU()
selu = _SELU()
elu = _ELU()
sigmoid = _Sigmoid()
tanh = _Tanh()
softmax = _Softmax()
linear = _Linear()

#: Activations known by name.
ACTIVATIONS = {a.name: a for a in (relu, selu, elu, sigmoid, tanh, softmax, linear)}


def get(identifier):
    """Return the activation for a name, ``None`` (linear) or an :class:`Activation`.

    Raises
    ------
    ValueError
        For an unknown name, worded as Keras does.
    """
    if identifier is None:
        return linear
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str):
        act = ACTIVATIONS.get(identifier.lower())
        if act is not None:
            return act
    raise ValueError(
        f"Could not interpret activation function identifier: {identifier!r}. "
        f"Valid names are {sorted(ACTIVATIONS)}."
    )


def serialize(activation) -> str:
    """The name under which :func:`get` finds ``activation`` again."""
    return get(activation).name
