"""Pooling layers: MaxPooling2D (alias MaxPool2D), AveragePooling2D (alias AvgPool2D),
GlobalAveragePooling2D, GlobalMaxPooling2D.

All pooling goes through :mod:`fastconv.ops`. Output sizes follow Keras
(``_shapes.layer_output_size``): "valid" ``(H - pool) // stride + 1``, "same"
``ceil(H / stride)``; "same" max pooling pads with ``-inf`` and "same" average
pooling divides by the number of real pixels in each window (TensorFlow's rule,
``count_include_pad=False``). Two of PyTorch's options are extra arguments:
``dilation_rate`` (the window's taps are ``dilation_rate`` pixels apart) and
``ceil_mode`` (round the "valid" output size up, dropping a last window that would
start past the input: ``_shapes.pool_output_size``). The layers cache their input in
training (the ops' backward takes x).

MaxPooling2D can apply a relu or relu6 last (``fusable_epilogues``) and declares that those
commute with it (``commuting_epilogues``): ``max(f(z)) == f(max(z))`` for a non-decreasing ``f``,
and the gradient, which both compute from the activation's output, lands on an input pixel with
the same value (a tie of ``f`` that ``z`` breaks differently has a zero gradient: relu's 0, relu6's
6). The execution plan then moves a preceding layer's relu onto the pooled tensor (a quarter of
the pixels for 2x2 pooling): that layer runs linear, and the relu's forward and gradient passes
over its full-size output are gone (``fastconv.engine.graph``).
"""

from __future__ import annotations

import numpy as np

from fastconv import activations as _activations
from fastconv import ops
from fastconv._shapes import layer_output_size, pool_output_size
from fastconv.layers.base import (
    Layer,
    check_data_format,
    normalize_padding,
    normalize_tuple,
    register_layer,
)

_ARGMAX_PLANE_MAX = 2**31 - 1  # ops.max_pool2d's int32 argmax indexes ih*W + iw

__all__ = [
    "AveragePooling2D",
    "AvgPool2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "MaxPool2D",
    "MaxPooling2D",
]


class _Pooling2D(Layer):
    input_ndim = 4
    _forward_op = None  # ops.max_pool2d / ops.avg_pool2d
    _grad_op = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, ceil_mode=False,
                 dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size")
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, 2, "strides")
        self.padding = normalize_padding(padding)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise ValueError(f"The `ceil_mode` argument must be True or False. Received: ceil_mode={ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate")

    def _output_size(self, n, k, s, d):
        if n is None or self.padding == "same":  # "same": ceil(n / s) in either mode
            return layer_output_size(n, k, self.padding, s, d)
        return pool_output_size(n, k, s, d, 0, 0, self.ceil_mode)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        out = [
            self._output_size(n, k, s, d)
            for n, k, s, d in zip(input_shape[:2], self.pool_size, self.strides, self.dilation_rate)
        ]
        if any(o is not None and o <= 0 for o in out):
            raise ValueError(
                f'Computed output size would be negative for layer "{self.name}". Received: '
                f"input_shape={(None, *input_shape)}, pool_size={self.pool_size}, "
                f"strides={self.strides}, padding={self.padding}, dilation_rate={self.dilation_rate}."
            )
        return (out[0], out[1], input_shape[2])

    def _kw(self):
        return {"stride": self.strides, "padding": self.padding, "dilation": self.dilation_rate,
                "ceil_mode": self.ceil_mode}

    def _forward(self, x, training):
        """(y, saved state for the gradient op's keyword arguments)."""
        return self._forward_op(x, self.pool_size, **self._kw()), {}

    def call(self, x, training=False, epilogue=None):
        y, saved = self._forward(x, training)
        act = None if epilogue in (None, "linear") else _activations.get(epilogue)
        if act is not None:
            y = act.forward(y, out=y)  # the op's fresh output
        if training:
            self._cache = (x, act, y if act is not None else None, saved)
        return y

    def call_backward(self, dy):
        x, act, y, saved = self._need_cache()
        if not self.need_input_grad:
            return None
        if act is not None:
            dy = act.backward(dy, y)
        return self._grad_op(dy, x, self.pool_size, **self._kw(), need_dx=True, **saved)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": list(self.pool_size),
                "strides": list(self.strides),
                "padding": self.padding,
                "data_format": "channels_last",
            }
        )
        # PyTorch's options only when set: a default layer's config stays Keras's (Keras refuses
        # unknown arguments, and files saved before these options are written back unchanged)
        if self.ceil_mode:
            config["ceil_mode"] = True
        if self.dilation_rate != (1, 1):
            config["dilation_rate"] = list(self.dilation_rate)
        return config


@register_layer
@register_layer(name="MaxPool2D")
class MaxPooling2D(_Pooling2D):
    """Max pooling (Keras ``MaxPooling2D``): x ``(N, H, W, C)`` -> ``(N, OH, OW, C)``.

    Gradient ties go to the first maximum of a window (row-major), as PyTorch.
    """

    fusable_epilogues = ("linear", "relu", "relu6")
    #: Activations f with max(f(z)) == f(max(z)) and the same gradient: the plan may move one from
    #: the layer before to this layer's (smaller) output (see the module notes).
    commuting_epilogues = ("relu", "relu6")

    _forward_op = staticmethod(ops.max_pool2d)
    _grad_op = staticmethod(ops.max_pool2d_grad)

    def _forward(self, x, training):
        # Training keeps the argmax (int32, y's size; the forward writes it in the same pass at
        # little cost), so the gradient reads it instead of recomputing every window from x: the
        # gradient of overlapping windows (3x3 stride 2) takes about half the time.  An input
        # plane past 2**31 pixels, which int32 cannot index, recomputes.
        if training and x.ndim == 4 and x.shape[1] * x.shape[2] <= _ARGMAX_PLANE_MAX:
            y, am = self._forward_op(x, self.pool_size, return_argmax=True, **self._kw())
            return y, {"argmax": am}
        return super()._forward(x, training)


@register_layer
@register_layer(name="AvgPool2D")
class AveragePooling2D(_Pooling2D):
    """Average pooling (Keras ``AveragePooling2D``): x ``(N, H, W, C)`` -> ``(N, OH, OW, C)``."""

    _forward_op = staticmethod(ops.avg_pool2d)
    _grad_op = staticmethod(ops.avg_pool2d_grad)


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPooling2D(Layer):
    """``(N, H, W, C)`` -> ``(N, C)`` (or ``(N, 1, 1, C)`` with ``keepdims=True``) by one op."""

    input_ndim = 4
    _forward_op = None  # ops.global_avg_pool2d / ops.global_max_pool2d: (N, H, W, C) -> (N, C)
    _grad_op = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        return (1, 1, input_shape[2]) if self.keepdims else (input_shape[2],)

    def call(self, x, training=False):
        if training:
            self._cache = x
        y = self._forward_op(x)
        return y.reshape(y.shape[0], 1, 1, y.shape[1]) if self.keepdims else y

    def call_backward(self, dy):
        x = self._need_cache()
        dy = dy.reshape(dy.shape[0], dy.shape[-1])
        return self._grad_op(dy, x, need_dx=self.need_input_grad)

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": "channels_last", "keepdims": self.keepdims})
        return config


@register_layer
class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over H and W (Keras ``GlobalAveragePooling2D``): ``(N, H, W, C)`` -> ``(N, C)``
    (or ``(N, 1, 1, C)`` with ``keepdims=True``)."""

    _forward_op = staticmethod(ops.global_avg_pool2d)
    _grad_op = staticmethod(ops.global_avg_pool2d_grad)


@register_layer
class GlobalMaxPooling2D(_GlobalPooling2D):
    """Maximum over H and W (Keras ``GlobalMaxPooling2D``): ``(N, H, W, C)`` -> ``(N, C)``
    (or ``(N, 1, 1, C)`` with ``keepdims=True``). Gradient ties go to the first maximum."""

    _forward_op = staticmethod(ops.global_max_pool2d)
    _grad_op = staticmethod(ops.global_max_pool2d_grad)

    def _check_input(self, x):
        self._check_channels(x)
