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

relu and relu6 are the ops ``fastconv.ops.relu`` / ``relu6`` (and their ``_grad``): the compiled
element-wise kernels of the norm family for C-contiguous float32 / float64 arrays, NumPy otherwise;
the backward passes ``dy`` where the mask holds and writes 0 elsewhere.

selu, elu, sigmoid, tanh, swish, gelu (exact and ``gelu_tanh``), softplus, leaky_relu and softmax
run on the compiled kernels of ``fastconv.ops.elementwise`` (a vector exp, OpenMP over chunks);
float16 and integer inputs are computed in float32. ``KERNEL_EPILOGUES`` lists the activations
the conv and Dense kernels can apply in their epilogue (``ops.conv2d(activation=...)``), with the
kernel name and alpha of each: the one table a kernel path reads to know what it may fuse.

Activations whose derivative needs the input
--------------------------------------------
relu6, leaky_relu and hard_sigmoid still follow the "derivative from ``y``" rule.
swish (= silu), hard_swish (= hard_silu) and gelu cannot (they are not
invertible), but the layers cache only ``y``. Their ``forward`` therefore
returns ``y`` as the view ``buf[0]`` of a ``(2, *x.shape)`` buffer whose
``buf[1]`` holds a copy of ``x``; ``backward(dy, y)`` reads ``x`` back from
``y.base``. The cached array costs what caching ``x`` and ``y`` separately
would, and every existing layer keeps working unchanged. Callers must pass back
the very array ``forward`` returned (not a copy); those three ignore ``out=``.

Examples
--------
>>> act = get("relu")
>>> y = act.forward(np.array([-1.0, 2.0]))
>>> act.backward(np.ones(2), y)
array([0., 1.])
"""

from __future__ import annotations

import numpy as np

from fastconv.ops import elementwise as _ew
from fastconv.ops import norm as _norm_ops

__all__ = [
    "ACTIVATIONS",
    "KERNEL_EPILOGUES",
    "Activation",
    "elu",
    "gelu",
    "get",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "leaky_relu",
    "linear",
    "relu",
    "relu6",
    "selu",
    "serialize",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "swish",
    "tanh",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class Activation:
    """An element-wise activation: ``forward(x, out=None) -> y``, ``backward(dy, y) -> dx``."""

    name = "linear"
    #: the name of the compiled kernel (ops.elementwise.CODES) computing it, or None
    kernel_name = None
    #: the kernel's alpha (elu's alpha, leaky_relu's slope); None for the kernel's default
    kernel_alpha = None

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
    kernel_name = "relu"

    def forward(self, x, out=None):
        return _norm_ops.relu(x, out)

    def backward(self, dy, y):
        return _norm_ops.relu_grad(dy, y)


def _usable_out(out, x):
    """``out`` when the kernel can write the activation of ``x`` there, else None (a fresh array)."""
    if (type(out) is np.ndarray and type(x) is np.ndarray and out.shape == x.shape and out.dtype == x.dtype
            and out.dtype in (np.float32, np.float64) and out.flags.c_contiguous and out.flags.writeable):
        return out
    return None


class _Compiled(Activation):
    """An activation on the compiled kernels of ops.elementwise; its derivative from ``y``."""

    def forward(self, x, out=None):
        return _ew.activation(x, self.kernel_name, alpha=self.kernel_alpha, out=_usable_out(out, x))

    def backward(self, dy, y):
        return _ew.activation_grad(dy, y, self.kernel_name, alpha=self.kernel_alpha)


class _Sigmoid(_Compiled):
    """``1 / (1 + exp(-x))``, stable for any input (computed from ``exp(-|x|)``)."""

    name = "sigmoid"
    kernel_name = "sigmoid"


class _Tanh(_Compiled):
    name = "tanh"
    kernel_name = "tanh"


class _Softplus(_Compiled):
    """``log(1 + exp(x))``, stable for any input; its derivative ``sigmoid(x) = 1 - exp(-y)``."""

    name = "softplus"
    kernel_name = "softplus"


class _ELU(_Compiled):
    """``x`` for ``x > 0`` else ``alpha * expm1(x)``; derivative ``y + alpha`` on the negative side
    (alpha > 0)."""

    name = "elu"
    kernel_name = "elu"

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    @property
    def kernel_alpha(self):
        return self.alpha


class _SELU(_Compiled):
    """``scale * elu(x, alpha)`` with Klambauer et al.'s constants."""

    name = "selu"
    kernel_name = "selu"


class _Softmax(Activation):
    """Softmax over the last axis (Keras's default axis=-1), on the compiled row kernel."""

    name = "softmax"

    def forward(self, x, out=None):
        return _ew.softmax(x, out=_usable_out(out, x))

    def backward(self, dy, y):
        return _ew.softmax_grad(dy, y)


class _ReLU6(Activation):
    """``min(max(x, 0), 6)`` (MobileNet's ReLU6)."""

    name = "relu6"
    kernel_name = "relu6"

    def forward(self, x, out=None):
        return _norm_ops.relu6(x, out)

    def backward(self, dy, y):
        return _norm_ops.relu6_grad(dy, y)


class _LeakyReLU(_Compiled):
    """``x`` for ``x > 0`` else ``negative_slope * x`` (Keras 3 default slope 0.2)."""

    name = "leaky_relu"
    kernel_name = "leaky_relu"

    def __init__(self, negative_slope=0.2):
        self.negative_slope = negative_slope

    @property
    def kernel_alpha(self):
        return self.negative_slope


class _HardSigmoid(Activation):
    """Keras 3's ``relu6(x + 3) / 6`` (slope 1/6 on (-3, 3))."""

    name = "hard_sigmoid"

    def forward(self, x, out=None):
        y = np.add(x, 3.0, out=out)
        np.clip(y, 0.0, 6.0, out=y)
        y *= 1.0 / 6.0
        return y

    def backward(self, dy, y):
        return np.where((y > 0) & (y < 1), dy * (1.0 / 6.0), 0).astype(dy.dtype, copy=False)


def input_buffer(x) -> np.ndarray:
    """A fresh ``(2, *x.shape)`` buffer whose ``[1]`` holds ``x`` (floating: float16 and integers in
    float32), for an activation whose derivative needs ``x``: write ``y`` into ``[0]`` and return
    it; its ``backward`` reads ``x`` back from ``y.base``. Layers that compute the pre-activation
    themselves (a conv into ``buf[1]``) use it too."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    buf = np.empty((2, *x.shape), dtype=dtype)
    buf[1] = x
    return buf


class _NeedsInput(Activation):
    """Base of activations whose derivative needs ``x``: ``y`` is ``buf[0]``, ``x`` is ``buf[1]``."""

    def _value(self, x):  # y = f(x), a fresh array
        raise NotImplementedError

    def _derivative(self, x):  # f'(x)
        raise NotImplementedError

    def forward(self, x, out=None):
        buf = input_buffer(x)
        self.forward_into(buf)
        return buf[0]

    def forward_into(self, buf):
        """buf[0] = f(buf[1]) (buf from input_buffer)."""
        if self.kernel_name is not None:
            _ew.activation(buf[1], self.kernel_name, alpha=self.kernel_alpha, out=buf[0])
        else:
            buf[0] = self._value(buf[1])

    def _x_of(self, y):
        buf = y.base
        if (
            buf is None
            or buf.shape != (2, *y.shape)
            or buf.__array_interface__["data"][0] != y.__array_interface__["data"][0]
        ):
            raise ValueError(
                f"{self.name}.backward(dy, y) needs the array its forward returned (it carries x); "
                f"received an array of shape {y.shape} without it."
            )
        return buf[1]

    def backward(self, dy, y):
        x = self._x_of(y)
        if self.kernel_name is not None:
            return _ew.activation_grad(dy, x, self.kernel_name, alpha=self.kernel_alpha)
        return (dy * self._derivative(x)).astype(dy.dtype, copy=False)


class _Swish(_NeedsInput):
    """``x * sigmoid(x)`` (swish / SiLU; EfficientNet), on the compiled kernel."""

    name = "swish"
    kernel_name = "swish"


class _HardSwish(_NeedsInput):
    """``x * relu6(x + 3) / 6`` (hard swish / hard SiLU; MobileNetV3)."""

    name = "hard_swish"

    def _value(self, x):
        return x * hard_sigmoid.forward(x)

    def _derivative(self, x):
        d = (2.0 * x + 3.0) * (1.0 / 6.0)
        d = np.where(x >= 3.0, 1.0, d)
        return np.where(x <= -3.0, 0.0, d)


# Chebyshev coefficients of erfc on [0, inf) (Numerical Recipes 3rd ed., Erf::erfccheb);
# |erf error| < 5e-16 against scipy.special.erf, so no SciPy dependency.
_ERFC_COF = (
    -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3,
    -9.46595344482036e-4, 3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5,
    -1.624290004647e-6, 1.303655835580e-6, 1.5626441722e-8, -8.5238095915e-8, 6.529054439e-9,
    5.059343495e-9, -9.91364156e-10, -2.27365122e-10, 9.6467911e-11, 2.394038e-12, -6.886027e-12,
    8.94487e-13, 3.13092e-13, -1.12708e-13, 3.81e-16, 7.106e-15, -1.523e-15, -9.4e-17, 1.21e-16,
    -2.8e-17,
)  # fmt: skip


def erf(x):
    """The error function, element-wise, in ``x``'s floating dtype (double precision for float64)."""
    x = np.asarray(x)
    z = np.abs(x)
    t = 2.0 / (2.0 + z)
    ty = 4.0 * t - 2.0
    d = np.zeros_like(z)
    dd = np.zeros_like(z)
    for c in _ERFC_COF[:0:-1]:
        d, dd = ty * d - dd + c, d
    r = 1.0 - t * np.exp(-z * z + 0.5 * (_ERFC_COF[0] + ty * d) - dd)
    return np.copysign(r, x).astype(x.dtype, copy=False)


class _GELU(_NeedsInput):
    """``x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))`` (exact, Keras's default ``approximate=False``);
    ``approximate=True`` (name ``gelu_tanh``, PyTorch's ``approximate="tanh"``) is
    ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``. Both on the compiled kernel."""

    def __init__(self, approximate=False):
        self.approximate = bool(approximate)
        self.name = self.kernel_name = "gelu_tanh" if self.approximate else "gelu"


relu = _ReLU()
selu = _SELU()
elu = _ELU()
sigmoid = _Sigmoid()
tanh = _Tanh()
softmax = _Softmax()
linear = _Linear()
relu6 = _ReLU6()
leaky_relu = _LeakyReLU()
hard_sigmoid = _HardSigmoid()
swish = _Swish()
silu = swish
hard_swish = _HardSwish()
hard_silu = hard_swish
gelu = _GELU()
gelu_tanh = _GELU(approximate=True)
softplus = _Softplus()

#: Activations known by name (aliases ``silu`` -> swish, ``hard_silu`` -> hard_swish).
ACTIVATIONS = {
    a.name: a
    for a in (relu, selu, elu, sigmoid, tanh, softmax, linear, relu6, leaky_relu, hard_sigmoid, swish,
              hard_swish, gelu, gelu_tanh, softplus)
}  # fmt: skip
ACTIVATIONS["silu"] = swish
ACTIVATIONS["hard_silu"] = hard_swish

#: activation name -> (kernel name, alpha): what the conv / Dense kernels can apply in their epilogue
#: (``ops.conv2d(activation=kernel name, alpha=alpha)``). The one table of fusable activations;
#: a kernel path that fuses fewer (Winograd: relu only) checks the kernel name against its own set.
KERNEL_EPILOGUES = {
    name: (act.kernel_name, act.kernel_alpha)
    for name, act in ACTIVATIONS.items()
    if act.kernel_name is not None and act.kernel_name in _ew.CODES
}


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
