"""Core layers: Dense, Flatten, Dropout, Activation, ReLU, Softmax.

Dense is ``x @ kernel + bias`` on the last axis through ``ops.dense`` (the conv kernel as a
1x1 convolution, so training never wakes NumPy's multithreaded BLAS next to the OpenMP
kernels); the element-wise
layers are vectorised NumPy and never modify their input in place (the previous
layer may have cached it).

Fusion (declared, see fastconv.layers.base): Dense can leave its activation out
(``epilogue="linear"``, logits) or apply ``"relu"`` in the kernel's epilogue;
Activation, ReLU and Softmax say which activation they are (``epilogue_name``),
so the execution plan can fold them into the layer before or into the loss.
"""

from __future__ import annotations

import numpy as np

from fastconv import activations as _activations
from fastconv import distributed as _dist
from fastconv import ops
from fastconv import initializers as _initializers
from fastconv import regularizers as _regularizers
from fastconv.layers.base import Layer, prod_or_none, register_layer
from fastconv.layers.conv import fold_affine, kernel_forward

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "ReLU", "Softmax"]


@register_layer
class Dense(Layer):
    """Fully connected layer (Keras ``Dense``) on the last axis.

    x ``(N, ..., F)`` -> y ``(N, ..., units)``; kernel ``(F, units)``, bias ``(units,)``.

    Examples
    --------
    >>> d = Dense(10, activation="softmax"); d.build((128,)); d.count_params()
    1290
    """

    min_ndim = 2
    fusable_epilogues = ("linear", *_activations.KERNEL_EPILOGUES)
    accepts_affine = True

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        if self.units <= 0:
            raise ValueError(
                f"Received an invalid value for `units`, expected a positive integer. Received: units={units}"
            )
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)

    def _build_weights(self, input_shape):
        f = input_shape[-1]
        if f is None:
            raise ValueError(
                f'The last dimension of the input to layer "{self.name}" must be defined. '
                f"Received input shape {(None, *input_shape)}"
            )
        self.add_weight("kernel", (f, self.units), self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        return (*input_shape[:-1], self.units)

    def _check_input(self, x):
        self._check_channels(x)

    @property
    def final_activation(self):
        return self.activation.name

    def call(self, x, training=False, epilogue=None, affine=None):
        act = self.activation if epilogue is None else _activations.get(epilogue)
        f = x.shape[-1]
        x2 = x.reshape(-1, f)
        y_cache = None
        w, b = self.params["kernel"], self.params.get("bias")
        if affine is not None:
            w, b = fold_affine(w, b, affine)
        if act.name in _activations.KERNEL_EPILOGUES:  # applied by the kernel to each tile it stores
            y, y_cache = kernel_forward(ops.dense, act, training, (*x.shape[:-1], self.units), x2.dtype, x2, w, b,
                                        flat=True)
        else:
            y = ops.dense(x2, w, b)
            y = y.reshape(*x.shape[:-1], self.units)
            if act is not _activations.linear:
                y = act.forward(y, out=y)
                y_cache = y
        if training:
            self._cache = (x, y_cache, act)
        return y

    def call_backward(self, dy):
        x, y, act = self._need_cache()
        dz = dy if y is None else act.backward(dy, y)
        f = x.shape[-1]
        x2 = x.reshape(-1, f)
        dz2 = dz.reshape(-1, self.units)
        if not self.trainable:
            if not self.need_input_grad:
                return None
            return ops.dense(dz2, self.params["kernel"].T).reshape(x.shape)
        dx, dw, db = ops.dense_grad(dz2, x2, self.params["kernel"], need_dx=self.need_input_grad)
        self._store_grad("kernel", dw)
        if self.use_bias:
            self._store_grad("bias", db)
        return None if dx is None else dx.reshape(x.shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": _activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            }
        )
        return config


@register_layer
class Flatten(Layer):
    """Flatten all but the batch axis (Keras ``Flatten``): ``(N, H, W, C)`` -> ``(N, H*W*C)``."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten supports channels_last only. Received: {data_format!r}")

    def compute_output_shape(self, input_shape):
        return (prod_or_none(input_shape),)

    def call(self, x, training=False):
        if training:
            self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def call_backward(self, dy):
        shape = self._need_cache()
        return dy.reshape(shape) if self.need_input_grad else None

    def get_config(self):
        config = super().get_config()
        config["data_format"] = "channels_last"
        return config


@register_layer
class Dropout(Layer):
    """Inverted dropout (Keras ``Dropout``): in training, zero each unit with probability
    ``rate`` and scale the rest by ``1 / (1 - rate)``; identity at inference.

    ``noise_shape`` (with ``None`` for "same as input") shares the mask along axes of
    size 1; ``seed`` fixes the layer's generator (else drawn from
    ``fastconv.initializers``'s module generator, see ``set_seed``).
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float, np.floating)) or not 0 <= rate <= 1:
            raise ValueError(
                f"Invalid value received for argument `rate`. Expected a float value between "
                f"0 and 1. Received: rate={rate}"
            )
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._rng = _initializers.make_rng(seed)

    def reseed(self, seed) -> None:
        """Restart the mask generator (tests use it to replay a mask)."""
        self._rng = np.random.default_rng(seed)

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return shape
        return tuple(s if n is None else n for s, n in zip(shape, self.noise_shape))

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            if training:
                self._cache = (None, 1.0)
            return x
        if self.rate >= 1.0:
            if training:
                self._cache = (np.zeros(self._mask_shape(x.shape), bool), 0.0)
            return np.zeros_like(x)
        rdt = np.float32 if x.dtype == np.float32 else np.float64
        shape = self._mask_shape(x.shape)
        if shape[0] == x.shape[0]:  # one mask row per sample: the rows of the global batch's draw
            mask = _dist.draw_rows(shape[0], lambda k: self._rng.random((k, *shape[1:]), dtype=rdt)) >= self.rate
        else:
            mask = self._rng.random(shape, dtype=rdt) >= self.rate
        scale = 1.0 / (1.0 - self.rate)
        y = x * mask
        y *= scale
        self._cache = (mask, scale)
        return y

    def call_backward(self, dy):
        mask, scale = self._need_cache()
        if not self.need_input_grad:
            return None
        if mask is None:
            return dy
        dx = dy * mask
        dx *= scale
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": self.seed,
            }
        )
        return config


@register_layer
class Activation(Layer):
    """Apply an activation by name (Keras ``Activation``): relu, selu, elu, sigmoid, tanh,
    softmax (last axis), linear."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activations.get(activation)

    @property
    def epilogue_name(self):
        """The activation's name when it is the registered one of that name; None for a variant
        with its own parameters (an ELU with another alpha), which a fused epilogue, given the
        name alone, would compute with the default ones."""
        name = self.activation.name
        return name if _activations.ACTIVATIONS.get(name) is self.activation else None

    def _input_kernel(self, x):
        """The compiled kernel's name when the activation's derivative reads x (swish, gelu) and x
        is a float array: the layer then keeps x itself instead of the activation copying it beside
        y (activations.input_buffer: a full copy of x per call, 3 % of an EfficientNet step)."""
        act = self.activation
        if (isinstance(act, _activations._NeedsInput) and act.kernel_name is not None
                and type(x) is np.ndarray and x.dtype in (np.float32, np.float64)):
            return act.kernel_name
        return None

    def call(self, x, training=False):
        kernel = self._input_kernel(x)
        if kernel is not None:
            y = ops.activation(x, kernel, alpha=self.activation.kernel_alpha)
            if training:
                self._cache = (x, kernel)
            return y
        y = self.activation.forward(x)
        if training:
            self._cache = y
        return y

    def call_backward(self, dy):
        cached = self._need_cache()
        if not self.need_input_grad:
            return None
        if isinstance(cached, tuple):
            x, kernel = cached
            return ops.activation_grad(dy, x, kernel, alpha=self.activation.kernel_alpha)
        return self.activation.backward(dy, cached)

    def get_config(self):
        config = super().get_config()
        config["activation"] = _activations.serialize(self.activation)
        return config


@register_layer
class ReLU(Layer):
    """Keras ``ReLU``: ``max_value`` if ``x >= max_value``; ``x`` if ``threshold <= x``;
    else ``negative_slope * (x - threshold)``. Defaults give ``max(x, 0)``."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0:
            raise ValueError(
                f"max_value of a ReLU layer cannot be a negative value. Received: max_value={max_value}"
            )
        if negative_slope is None or negative_slope < 0:
            raise ValueError(
                f"negative_slope of a ReLU layer cannot be a negative value. "
                f"Received: negative_slope={negative_slope}"
            )
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)
        self._plain = self.max_value is None and self.negative_slope == 0 and self.threshold == 0

    @property
    def epilogue_name(self):
        """"relu" for the defaults, "relu6" for ``max_value=6`` alone, else None (no fusion)."""
        if self.negative_slope != 0 or self.threshold != 0:
            return None
        return "relu" if self.max_value is None else "relu6" if self.max_value == 6 else None

    def call(self, x, training=False):
        if self._plain:
            y = np.maximum(x, 0)
        else:
            y = np.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold))
            if self.max_value is not None:
                np.minimum(y, self.max_value, out=y)
            y = y.astype(x.dtype, copy=False)
        if training:
            self._cache = y if self._plain else x
        return y

    def call_backward(self, dy):
        c = self._need_cache()
        if not self.need_input_grad:
            return None
        if self._plain:
            return np.multiply(dy, c > 0, dtype=dy.dtype)
        slope = np.where(c >= self.threshold, 1.0, self.negative_slope)
        if self.max_value is not None:
            slope = np.where(c >= self.max_value, 0.0, slope)
        return (dy * slope).astype(dy.dtype, copy=False)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"max_value": self.max_value, "negative_slope": self.negative_slope, "threshold": self.threshold}
        )
        return config


@register_layer
class Softmax(Layer):
    """Softmax over the last axis (Keras ``Softmax`` with ``axis=-1``)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(f"Softmax supports axis=-1 only. Received: axis={axis}")
        self.axis = -1

    @property
    def epilogue_name(self):
        return "softmax"

    def call(self, x, training=False):
        y = _activations.softmax.forward(x)
        if training:
            self._cache = y
        return y

    def call_backward(self, dy):
        y = self._need_cache()
        return _activations.softmax.backward(dy, y) if self.need_input_grad else None

    def get_config(self):
        config = super().get_config()
        config["axis"] = -1
        return config
