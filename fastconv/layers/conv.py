"""Convolution layers: Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose.

Design notes
------------
Every convolution goes through :mod:`fastconv.ops` (the compiled kernels, or
the NumPy reference while those are missing); these classes only own weights,
normalise Keras's arguments once in ``__init__``, compute Keras's output shapes
and chain the forward / backward ops:

* Conv2D: ``ops.conv2d`` / ``ops.conv2d_grad``; kernel ``(KH, KW, C // groups, filters)``.
* DepthwiseConv2D: ``ops.depthwise_conv2d(_grad)``; ``depthwise_kernel (KH, KW, C, M)``.
* SeparableConv2D: a depthwise op then a 1x1 ``ops.conv2d`` (with the bias), at
  the layer level; ``pointwise_kernel (1, 1, C * M, filters)``.
* Conv2DTranspose: ``ops.conv_transpose2d(_grad)``; kernel ``(KH, KW, filters // groups, C)``.

A fused ``activation=`` is applied in place on the op's fresh output, and the
activated output ``y`` is what backward needs (see fastconv.activations), so a
layer caches ``x`` (and ``y`` when the activation is not linear) in training.
Conv2D and SeparableConv2D with ``activation="relu"`` have the conv kernel apply
it as it stores each output (``ops.conv2d(..., relu=True)``): one pass over ``y``
instead of two; backward masks ``dy`` with ``y > 0`` in one pass before the
conv gradient. Every other activation of ``activations.KERNEL_EPILOGUES`` (selu,
elu, sigmoid, tanh, swish, gelu, softplus, leaky_relu, relu6) is applied by the
conv kernel to each output tile right after storing it
(``ops.conv2d(..., activation=name, alpha=...)``); the backward's first pass is
the compiled ``act.backward``. Activations whose derivative needs the
pre-activation (swish, gelu) keep it: in training the conv writes it into
``buf[1]`` of the activation's buffer and the activation fills ``buf[0]``.

Fusion (declared, see fastconv.layers.base): every conv layer can leave its
activation out for one call (``epilogue="linear"``, logits for a fused softmax
cross-entropy); Conv2D and SeparableConv2D can also apply ``"relu"`` and every
activation of ``activations.KERNEL_EPILOGUES`` (an activation layer after them,
folded in by the execution plan).
"""

from __future__ import annotations

import numpy as np

from fastconv import activations as _activations
from fastconv import initializers as _initializers
from fastconv import ops
from fastconv import regularizers as _regularizers
from fastconv._shapes import effective_kernel, layer_output_size, layer_transpose_output_size
from fastconv.layers.base import (
    Layer,
    check_data_format,
    normalize_padding,
    normalize_tuple,
    register_layer,
)

__all__ = ["Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D"]


def _ser_init(init):
    return _initializers.serialize(init)


#: the epilogues a layer whose forward op takes ``activation=`` can apply (Conv2D, SeparableConv2D, Dense)
KERNEL_FUSABLE = ("linear", *_activations.KERNEL_EPILOGUES)


def fold_affine(w, bias, affine):
    """``(w * a, bias * a + b)`` over the output channels (``w``'s last axis) in ``w``'s dtype: the
    weights of ``y * a + b`` for a layer computing ``y`` (a folded BatchNormalization)."""
    a, b = affine
    wf = (w * a).astype(w.dtype, copy=False)
    bf = (b if bias is None else bias * a + b).astype(w.dtype, copy=False)
    return wf, bf


def kernel_forward(op, act, training, shape, dtype, *args, flat=False, into=None, **kwargs):
    """``act(op(*args, **kwargs))`` with ``act`` in the op's kernel epilogue -> (y of ``shape``, what
    backward needs). ``op`` takes ``activation=``, ``alpha=`` and ``out=`` (ops.conv2d, ops.dense;
    ``flat``: the op's output is ``shape`` flattened to 2-D, Dense on (N, ..., F)). An activation
    whose derivative needs its input keeps it in training (the op writes the pre-activation into
    ``buf[1]``, the activation fills ``buf[0]``). ``into``: the op's ``out=`` otherwise (y is then a
    view of it; not flat)."""
    if training and isinstance(act, _activations._NeedsInput):
        buf = np.empty((2, *shape), dtype=dtype)
        op(*args, **kwargs, out=buf[1].reshape(-1, shape[-1]) if flat else buf[1])
        act.forward_into(buf)
        return buf[0], buf[0]
    if into is not None:
        kwargs["out"] = into
    y = op(*args, **kwargs, activation=act.kernel_name, alpha=act.kernel_alpha).reshape(shape)
    return y, (y if training else None)


def _written_into(y, out):
    """``y`` when it is ``out`` (or a view of the same elements), else ``out`` after a copy of ``y``
    (a path that could not write into ``out`` itself)."""
    if out is None or (y.ctypes.data == out.ctypes.data and y.strides == out.strides and y.shape == out.shape):
        return y
    out[...] = y
    return out


class _BaseConv(Layer):
    """Shared argument handling and the activation / cache plumbing."""

    input_ndim = 4
    fusable_epilogues = ("linear",)
    #: The forward op applies relu in its kernel's epilogue (``relu=True``)
    _kernel_relu = False

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        bias_initializer="zeros",
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size")
        self.strides = normalize_tuple(strides, 2, "strides")
        self.padding = normalize_padding(padding)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate")
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)

    def _check_input(self, x):
        self._check_channels(x)

    @property
    def final_activation(self):
        return self.activation.name

    def _activation_for(self, epilogue):
        """The activation this call applies last: the layer's own, or the plan's ``epilogue``."""
        return self.activation if epilogue is None else _activations.get(epilogue)

    def _in_kernel(self, act):
        """True when the op applies ``act`` in its kernel's epilogue (Conv2D's relu, selu, ...)."""
        return self._kernel_relu and act.name in _activations.KERNEL_EPILOGUES

    @staticmethod
    def _activate(y, training, act):
        """Apply ``act`` in place on the op's fresh output ``y`` -> (y, what backward needs)."""
        if act is not _activations.linear:
            y = act.forward(y, out=y)
            return y, (y if training else None)
        return y, None

    @staticmethod
    def _deactivate(dy, y, act):
        return dy if y is None else act.backward(dy, y)

    def _spatial_out(self, input_shape):
        h, w = input_shape[0], input_shape[1]
        out = [
            layer_output_size(n, k, self.padding, s, d)
            for n, k, s, d in zip((h, w), self.kernel_size, self.strides, self.dilation_rate)
        ]
        if any(o is not None and o <= 0 for o in out):
            raise ValueError(
                f'Computed output size would be negative for layer "{self.name}". Received '
                f"`inputs shape={(None, *input_shape)}`, `kernel shape={self.kernel_size}`, "
                f"`dilation_rate={self.dilation_rate}`, `strides={self.strides}`, "
                f"`padding={self.padding}`."
            )
        return out

    def _conv_kwargs(self):
        return {"stride": self.strides, "padding": self.padding, "dilation": self.dilation_rate}

    # Single-op layers (Conv2D, DepthwiseConv2D, Conv2DTranspose) hold their op pair and weight;
    # forward and backward are then the same here: op + bias, activation, op_grad.
    _forward_op = None
    _grad_op = None
    _kernel_key = "kernel"

    def _op_kwargs(self, x):
        return self._conv_kwargs()

    def _fold(self, w, b, affine):
        """Weights of ``y * a + b`` (a folded BatchNormalization; output channels on w's last axis)."""
        return fold_affine(w, b, affine)

    def call(self, x, training=False, epilogue=None, affine=None, out=None):
        act = self._activation_for(epilogue)
        kw = self._op_kwargs(x)
        w, b = self.params[self._kernel_key], self.params.get("bias")
        if affine is not None:
            w, b = self._fold(w, b, affine)
        if self._in_kernel(act):
            shape = (x.shape[0], *self.compute_output_shape(x.shape[1:]))
            y, y_cache = kernel_forward(self._forward_op, act, training, shape, x.dtype, x, w, b, into=out, **kw)
        elif out is not None and act is _activations.linear:
            y, y_cache = self._forward_op(x, w, b, **kw, out=out), None
        else:
            y = self._forward_op(x, w, b, **kw)
            y, y_cache = self._activate(y, training, act)
        if training:
            self._cache = (x, y_cache, kw, act)
        return _written_into(y, out)

    def call_backward(self, dy):
        x, y, kw, act = self._need_cache()
        if not (self.trainable or self.need_input_grad):
            return None
        dz = self._deactivate(dy, y, act)
        dx, dw, db = self._grad_op(dz, x, self.params[self._kernel_key], **kw, need_dx=self.need_input_grad)
        if self.trainable:
            self._store_grad(self._kernel_key, dw)
            if self.use_bias:
                self._store_grad("bias", db)
        return dx if self.need_input_grad else None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": list(self.kernel_size),
                "strides": list(self.strides),
                "padding": self.padding,
                "data_format": "channels_last",
                "dilation_rate": list(self.dilation_rate),
                "activation": _activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "bias_initializer": _ser_init(self.bias_initializer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            }
        )
        return config


@register_layer
class Conv2D(_BaseConv):
    """2-D convolution layer (Keras ``Conv2D``), NHWC.

    x ``(N, H, W, C)`` -> y ``(N, OH, OW, filters)``; kernel ``(KH, KW, C // groups, filters)``,
    bias ``(filters,)``. ``OH = (H - KH_eff) // s + 1`` ("valid") or ``ceil(H / s)`` ("same").

    Examples
    --------
    >>> layer = Conv2D(32, 3, activation="relu")
    >>> layer.build((28, 28, 1)); layer.output_shape, layer.count_params()
    ((26, 26, 32), 320)
    """

    _forward_op = staticmethod(ops.conv2d)
    _grad_op = staticmethod(ops.conv2d_grad)
    fusable_epilogues = KERNEL_FUSABLE
    _kernel_relu = True
    accepts_affine = True
    accepts_out = True  # ops.conv2d writes into a channel slice (a Concatenate's input, the plan's choice)
    fresh_input_grad = True  # ops.conv2d_grad allocates dx: the graph adds a branch's gradient into it in place

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            bias_initializer,
            bias_regularizer,
            **kwargs,
        )
        self.filters = int(filters)
        self.groups = int(groups)
        if self.filters <= 0:
            raise ValueError(
                f"Invalid value for argument `filters`. Expected a strictly positive value. "
                f"Received filters={filters}."
            )
        if self.groups <= 0 or self.filters % self.groups:
            raise ValueError(
                f"The number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={groups}, filters={filters}."
            )
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)

    def _build_weights(self, input_shape):
        c = input_shape[-1]
        if c is None or c % self.groups:
            raise ValueError(
                f"The number of input channels must be evenly divisible by the number of groups "
                f'(layer "{self.name}"). Received groups={self.groups}, but the input has {c} '
                f"channels (full input shape is {(None, *input_shape)})."
            )
        kh, kw = self.kernel_size
        self.add_weight(
            "kernel",
            (kh, kw, c // self.groups, self.filters),
            self.kernel_initializer,
            self.kernel_regularizer,
        )
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        oh, ow = self._spatial_out(input_shape)
        return (oh, ow, self.filters)

    def _conv_kwargs(self):
        return {**super()._conv_kwargs(), "groups": self.groups}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "groups": self.groups,
                "kernel_initializer": _ser_init(self.kernel_initializer),
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config


@register_layer
class DepthwiseConv2D(_BaseConv):
    """Depthwise 2-D convolution (Keras ``DepthwiseConv2D``), NHWC.

    x ``(N, H, W, C)`` -> y ``(N, OH, OW, C * depth_multiplier)``; output channel ``c * M + m``.
    Weights ``depthwise_kernel (KH, KW, C, M)`` and ``bias (C * M,)``.
    """

    _forward_op = staticmethod(ops.depthwise_conv2d)
    _grad_op = staticmethod(ops.depthwise_conv2d_grad)
    _kernel_key = "depthwise_kernel"
    # inference: a BatchNormalization after it is folded into the kernel (and a relu after that
    # applied in place on the output)
    accepts_affine = True
    fusable_epilogues = ("linear", "relu", "relu6")

    def _fold(self, w, b, affine):
        # output channel c * M + m is kernel[..., c, m]
        a, shift = affine
        wf = (w * np.asarray(a).reshape(w.shape[2:])).astype(w.dtype, copy=False)
        return wf, (shift if b is None else b * a + shift).astype(w.dtype, copy=False)

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            bias_initializer,
            bias_regularizer,
            **kwargs,
        )
        self.depth_multiplier = int(depth_multiplier)
        if self.depth_multiplier <= 0:
            raise ValueError(
                f"Invalid value for argument `depth_multiplier`. Expected a strictly positive "
                f"value. Received depth_multiplier={depth_multiplier}."
            )
        self.depthwise_initializer = _initializers.get(depthwise_initializer)
        self.depthwise_regularizer = _regularizers.get(depthwise_regularizer)

    def _build_weights(self, input_shape):
        c = input_shape[-1]
        kh, kw = self.kernel_size
        self.add_weight(
            "depthwise_kernel",
            (kh, kw, c, self.depth_multiplier),
            self.depthwise_initializer,
            self.depthwise_regularizer,
        )
        if self.use_bias:
            self.add_weight(
                "bias", (c * self.depth_multiplier,), self.bias_initializer, self.bias_regularizer
            )

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        oh, ow = self._spatial_out(input_shape)
        c = input_shape[-1]
        return (oh, ow, None if c is None else c * self.depth_multiplier)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": _ser_init(self.depthwise_initializer),
                "depthwise_regularizer": _regularizers.serialize(self.depthwise_regularizer),
            }
        )
        return config


@register_layer
class SeparableConv2D(_BaseConv):
    """Depthwise-separable 2-D convolution (Keras ``SeparableConv2D``), NHWC.

    A depthwise conv (``depthwise_kernel (KH, KW, C, M)``, strides, padding, dilation) then
    a 1x1 conv (``pointwise_kernel (1, 1, C * M, filters)``) plus ``bias (filters,)``.
    Params: ``KH*KW*C*M + C*M*filters + filters``.
    """

    fusable_epilogues = KERNEL_FUSABLE
    _kernel_relu = True  # the pointwise conv2d's epilogue
    accepts_affine = True  # into the pointwise kernel

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        depth_multiplier=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            bias_initializer,
            bias_regularizer,
            **kwargs,
        )
        self.filters = int(filters)
        self.depth_multiplier = int(depth_multiplier)
        if self.filters <= 0 or self.depth_multiplier <= 0:
            raise ValueError(
                f"`filters` and `depth_multiplier` must be strictly positive. Received "
                f"filters={filters}, depth_multiplier={depth_multiplier}."
            )
        self.depthwise_initializer = _initializers.get(depthwise_initializer)
        self.pointwise_initializer = _initializers.get(pointwise_initializer)
        self.depthwise_regularizer = _regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = _regularizers.get(pointwise_regularizer)

    def _build_weights(self, input_shape):
        c = input_shape[-1]
        kh, kw = self.kernel_size
        m = self.depth_multiplier
        self.add_weight(
            "depthwise_kernel", (kh, kw, c, m), self.depthwise_initializer, self.depthwise_regularizer
        )
        self.add_weight(
            "pointwise_kernel",
            (1, 1, c * m, self.filters),
            self.pointwise_initializer,
            self.pointwise_regularizer,
        )
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        oh, ow = self._spatial_out(input_shape)
        return (oh, ow, self.filters)

    def call(self, x, training=False, epilogue=None, affine=None):
        act = self._activation_for(epilogue)
        t = ops.depthwise_conv2d(x, self.params["depthwise_kernel"], None, **self._conv_kwargs())
        pw, bias = self.params["pointwise_kernel"], self.params.get("bias")
        if affine is not None:
            pw, bias = fold_affine(pw, bias, affine)
        if self._in_kernel(act):
            shape = (*t.shape[:3], self.filters)
            y, y_cache = kernel_forward(ops.conv2d, act, training, shape, t.dtype, t, pw, bias)
        else:
            y = ops.conv2d(t, pw, bias)
            y, y_cache = self._activate(y, training, act)
        if training:
            self._cache = (x, t, y_cache, act)
        return y

    def call_backward(self, dy):
        x, t, y, act = self._need_cache()
        if not (self.trainable or self.need_input_grad):
            return None
        dz = self._deactivate(dy, y, act)
        dt, dpw, db = ops.conv2d_grad(dz, t, self.params["pointwise_kernel"])
        dx, ddw, _ = ops.depthwise_conv2d_grad(
            dt,
            x,
            self.params["depthwise_kernel"],
            **self._conv_kwargs(),
            need_dx=self.need_input_grad,
        )
        if self.trainable:
            self._store_grad("depthwise_kernel", ddw)
            self._store_grad("pointwise_kernel", dpw)
            if self.use_bias:
                self._store_grad("bias", db)
        return dx if self.need_input_grad else None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": _ser_init(self.depthwise_initializer),
                "pointwise_initializer": _ser_init(self.pointwise_initializer),
                "depthwise_regularizer": _regularizers.serialize(self.depthwise_regularizer),
                "pointwise_regularizer": _regularizers.serialize(self.pointwise_regularizer),
            }
        )
        return config


@register_layer
class Conv2DTranspose(_BaseConv):
    """Transposed 2-D convolution (Keras ``Conv2DTranspose``), NHWC.

    x ``(N, H, W, C)`` -> y ``(N, OH, OW, filters)``; kernel ``(KH, KW, filters // groups, C)``.
    ``OH`` follows Keras's ``deconv_output_length`` (``_shapes.layer_transpose_output_size``):
    "valid" ``H*s + max(KH_eff - s, 0)``,
    "same" ``H*s``; with ``output_padding`` ``(H-1)*s + KH_eff - 2*pad + output_padding``
    (``pad = KH_eff // 2`` for "same", 0 for "valid"), aligned as TensorFlow does.
    """

    _forward_op = staticmethod(ops.conv_transpose2d)
    _grad_op = staticmethod(ops.conv_transpose2d_grad)
    fusable_epilogues = ("linear", "relu", "relu6")

    @property
    def accepts_affine(self):
        """Inference folds a BatchNormalization after it into the kernel (ungrouped: output channel f
        is kernel[..., f, :])."""
        return self.groups == 1

    def _fold(self, w, b, affine):
        a, shift = affine
        wf = (w * np.asarray(a)[:, None]).astype(w.dtype, copy=False)
        return wf, (shift if b is None else b * a + shift).astype(w.dtype, copy=False)

    def _op_kwargs(self, x):
        return self._transpose_kwargs(x.shape[1:3])


    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            bias_initializer,
            bias_regularizer,
            **kwargs,
        )
        self.filters = int(filters)
        self.groups = int(groups)
        if self.filters <= 0 or self.groups <= 0 or self.filters % self.groups:
            raise ValueError(
                f"`filters` must be positive and divisible by `groups`. Received: "
                f"filters={filters}, groups={groups}."
            )
        self.output_padding = (
            None
            if output_padding is None
            else normalize_tuple(output_padding, 2, "output_padding", allow_zero=True)
        )
        if self.output_padding is not None:
            for s, p in zip(self.strides, self.output_padding):
                if p >= s:
                    raise ValueError(
                        f"Strides {self.strides} must be greater than output padding {self.output_padding}."
                    )
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)

    def _build_weights(self, input_shape):
        c = input_shape[-1]
        if c is None or c % self.groups:
            raise ValueError(
                f"The number of input channels must be evenly divisible by the number of groups "
                f'(layer "{self.name}"). Received groups={self.groups}, but the input has {c} '
                f"channels (full input shape is {(None, *input_shape)})."
            )
        kh, kw = self.kernel_size
        self.add_weight(
            "kernel",
            (kh, kw, self.filters // self.groups, c),
            self.kernel_initializer,
            self.kernel_regularizer,
        )
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        op = self.output_padding or (None, None)
        out = [
            layer_transpose_output_size(n, k, self.padding, p, s, d)
            for n, k, p, s, d in zip(input_shape[:2], self.kernel_size, op, self.strides, self.dilation_rate)
        ]
        if any(o is not None and o <= 0 for o in out):
            raise ValueError(
                f'Computed output size would be non-positive for layer "{self.name}". '
                f"Received input shape {(None, *input_shape)}."
            )
        return (out[0], out[1], self.filters)

    def _transpose_kwargs(self, hw):
        """Op arguments. Without output_padding the op's "valid"/"same" are Keras's; with it,
        explicit crops reproduce TensorFlow's alignment (SAME pads top = total // 2)."""
        kw = {"stride": self.strides, "dilation": self.dilation_rate, "groups": self.groups}
        if self.output_padding is None:
            kw["padding"] = self.padding
            return kw
        crops, extra = [], []
        for n, k, p, s, d in zip(hw, self.kernel_size, self.output_padding, self.strides, self.dilation_rate):
            full = (n - 1) * s + effective_kernel(k, d)
            total = full - layer_transpose_output_size(n, k, self.padding, p, s, d)
            if total >= 0:
                crops.append((total // 2, total - total // 2))
                extra.append(0)
            else:
                crops.append((0, 0))
                extra.append(-total)
        kw["padding"] = (crops[0], crops[1])
        kw["output_padding"] = tuple(extra)
        return kw

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "output_padding": None if self.output_padding is None else list(self.output_padding),
                "groups": self.groups,
                "kernel_initializer": _ser_init(self.kernel_initializer),
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
