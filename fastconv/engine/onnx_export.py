"""ONNX export of a fastconv model: its execution plan, node by node, as an ONNX graph (inference).

Design notes
------------
* The graph is built with the ``onnx`` package's ``helper`` / ``numpy_helper`` API (never by hand
  on the protobuf) and checked with ``onnx.checker.check_model`` before it is returned. ``onnx`` is
  an optional dependency (the ``fastconv[onnx]`` extra), imported when an export runs.
* What is exported is the model's :class:`~fastconv.engine.graph.ExecutionPlan` (the same nodes
  ``predict`` runs), in inference mode: BatchNormalization uses its moving statistics, dropout,
  noise and augmentation layers are the identity. Composite layers (``ResidualBlock``,
  ``Branches``) are expanded into their sublayers; a layer a graph calls at several nodes is
  exported once per call, on the same weight initializers.
* Layout: the model's inputs and outputs are NHWC (and any other rank as the model takes them).
  ONNX's convolutions and pools are NCHW, so every value carries its layout, "native" (the layout
  fastconv computes in) or "NCHW" (4-D values only), and a ``Transpose`` is inserted only where a
  consumer needs the other one (a conv after a conv stays NCHW; ``Flatten``, ``Dense`` and
  ``Reshape`` read native NHWC, so the flatten order is fastconv's; element-wise layers and merges
  work in whichever layout their inputs have). Outputs are returned native.
* Sizes are static except the batch: window padding ("same", asymmetric) is resolved to explicit
  ONNX ``pads`` by :mod:`fastconv._shapes`, the same arithmetic the ops use. Pools read
  ``dilation_rate`` and ``ceil_mode`` with ``getattr`` (defaults 1 / False); a ceil-mode output is
  reached by extra bottom/right padding that no window counts (max pads with -inf; average pooling
  excludes pads, and with ``count_include_pad`` the counted padding is an explicit zero ``Pad``).
* BatchNormalization is one scale and shift per channel (``Mul``, ``Add``); right after a
  convolution whose output nothing else reads it is folded into the convolution's weights and
  bias (:func:`_fold_batchnorm`), as inference runtimes do.
* Weights and inputs are float32 (ONNX Runtime's fast path) whatever the model's dtype.
* A layer without a converter is refused with a ``ValueError`` naming the layer and its class:
  the converters are keyed by exact class, so a user's subclass (which may change ``call``) is
  refused rather than exported with its parent's meaning.
"""

from __future__ import annotations

import math
import os

import numpy as np

from fastconv import activations as _activations
from fastconv._shapes import effective_kernel, resolve_padding, transpose_geometry
from fastconv.layers import activation as _act_layers
from fastconv.layers import blocks as _blocks
from fastconv.layers import conv as _conv
from fastconv.layers import core as _core
from fastconv.layers import cropping as _cropping
from fastconv.layers import layer_normalization as _ln
from fastconv.layers import merge as _merge
from fastconv.layers import normalization as _norm
from fastconv.layers import pooling as _pool
from fastconv.layers import preprocessing as _pre
from fastconv.layers import random_image as _rand
from fastconv.layers import regularization as _reg
from fastconv.layers import reshaping as _reshaping
from fastconv.layers import shape_ops as _shape_ops
from fastconv.layers.input_layer import InputLayer
from fastconv.utils import atomic_write

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export", "to_onnx"]

#: The opset written unless asked otherwise, and the oldest one the converters know.
DEFAULT_OPSET = 17
MIN_OPSET = 13

_NATIVE, _NCHW = "native", "NCHW"
_TO_NCHW, _TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


def _require_onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is in the test extra
        raise ImportError(
            "ONNX export needs the `onnx` package: pip install 'fastconv[onnx]' (or pip install onnx)."
        ) from e
    return onnx


class _Value:
    """One tensor of the ONNX graph: its name, per-sample shape (fastconv's, NHWC) and layout."""

    __slots__ = ("layout", "name", "shape")

    def __init__(self, name, shape, layout=_NATIVE):
        self.name = name
        self.shape = tuple(shape)
        self.layout = layout


class _Graph:
    """The nodes and initializers being written, with the helpers the converters share."""

    def __init__(self, onnx, opset):
        self.onnx = onnx
        self.helper = onnx.helper
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self._names = set()
        self._consts = {}  # id(weight array) -> initializer name, so shared layers share weights
        self._other = {}  # (value name, layout) -> value: one Transpose per value and direction

    def fresh(self, hint):
        hint = "".join(ch if ch.isalnum() or ch in "_./-" else "_" for ch in str(hint)) or "t"
        name, k = hint, 1
        while name in self._names:
            name, k = f"{hint}_{k}", k + 1
        self._names.add(name)
        return name

    def const(self, array, hint, dtype=np.float32, key=None):
        """An initializer holding ``array`` (cast to ``dtype``); ``key`` lets a reused weight share it."""
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh(hint)
        arr = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        if key is not None:
            self._consts[key] = name
        return name

    def ints(self, values, hint):
        return self.const(np.asarray(values, np.int64), hint, dtype=np.int64)

    def op(self, op_type, inputs, hint, **attrs):
        out = self.fresh(hint)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    # -- layouts ----------------------------------------------------------------------------------
    def nchw(self, v):
        if v.layout == _NCHW:
            return v
        if len(v.shape) != 3:
            raise ValueError(f"internal: NCHW asked for a value of per-sample shape {v.shape}")
        return self._transposed(v, _NCHW, _TO_NCHW)

    def native(self, v):
        return v if v.layout == _NATIVE else self._transposed(v, _NATIVE, _TO_NHWC)

    def _transposed(self, v, layout, perm):
        key = (v.name, layout)
        if key not in self._other:
            name = self.op(
                "Transpose", [v.name], f"{v.name}_{'nchw' if layout == _NCHW else 'nhwc'}", perm=list(perm)
            )
            self._other[key] = _Value(name, v.shape, layout)
        return self._other[key]

    def like(self, v, name, shape=None):
        return _Value(name, v.shape if shape is None else shape, v.layout)

    def per_sample_const(self, v, array, hint):
        """A constant that broadcasts against one sample of ``v`` in fastconv's layout (shape
        ``(..., C)`` or ``(1, *sample)``), laid out for ``v``'s layout."""
        a = np.asarray(array, np.float64)
        if v.layout == _NCHW and a.ndim:
            a = a.reshape((1,) * (4 - a.ndim) + a.shape).transpose(_TO_NCHW)
        return self.const(a, hint)

    def channel_axis(self, v):
        return 1 if v.layout == _NCHW else len(v.shape)

    # -- pieces several layers use ---------------------------------------------------------------
    def unsqueeze(self, name, axes, hint):
        return self.op("Unsqueeze", [name, self.ints(axes, f"{hint}_axes")], hint)  # axes: an input (13+)

    def reduce_mean(self, name, axes, hint):
        if self.opset >= 18:
            return self.op("ReduceMean", [name, self.ints(axes, f"{hint}_axes")], hint, keepdims=1)
        return self.op("ReduceMean", [name], hint, axes=list(axes), keepdims=1)


def _refuse(layer, why):
    raise ValueError(f'ONNX export: layer "{layer.name}" ({type(layer).__name__}) cannot be exported: {why}')


# ---- activations ----------------------------------------------------------------------------------


def _activation(g, v, act, hint, layer):
    """``act`` (a :mod:`fastconv.activations` object) applied to ``v``."""
    name = getattr(act, "name", None)
    if act is _activations.linear or name == "linear":
        return v
    if type(act) not in _ACT_TYPES:
        _refuse(layer, f"its activation {act!r} is not one ONNX export knows (a custom Activation)")
    x = v.name
    if name == "relu":
        out = g.op("Relu", [x], hint)
    elif name == "relu6":
        out = g.op("Clip", [x, g.const(0.0, f"{hint}_lo"), g.const(6.0, f"{hint}_hi")], hint)
    elif name in ("sigmoid", "tanh"):
        out = g.op(name.capitalize(), [x], hint)
    elif name == "elu":
        out = g.op("Elu", [x], hint, alpha=float(act.alpha))
    elif name == "selu":
        out = g.op(
            "Selu", [x], hint, alpha=float(_activations._SELU_ALPHA), gamma=float(_activations._SELU_SCALE)
        )
    elif name == "softmax":
        out = g.op("Softmax", [x], hint, axis=g.channel_axis(v))
    elif name == "leaky_relu":
        out = g.op("LeakyRelu", [x], hint, alpha=float(act.negative_slope))
    elif name == "hard_sigmoid":
        out = g.op("HardSigmoid", [x], hint, alpha=1.0 / 6.0, beta=0.5)
    elif name == "swish":
        out = g.op("Mul", [x, g.op("Sigmoid", [x], f"{hint}_sigmoid")], hint)
    elif name == "hard_swish":
        out = g.op("Mul", [x, g.op("HardSigmoid", [x], f"{hint}_hsig", alpha=1.0 / 6.0, beta=0.5)], hint)
    elif name == "gelu":  # exact: 0.5 x (1 + erf(x / sqrt 2)); ONNX's Gelu op needs opset 20
        e = g.op(
            "Erf",
            [g.op("Mul", [x, g.const(math.sqrt(0.5), f"{hint}_rsqrt2")], f"{hint}_scaled")],
            f"{hint}_erf",
        )
        h = g.op("Mul", [x, g.op("Add", [e, g.const(1.0, f"{hint}_one")], f"{hint}_1perf")], f"{hint}_xp")
        out = g.op("Mul", [h, g.const(0.5, f"{hint}_half")], hint)
    elif name == "gelu_tanh":  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        x3 = g.op("Mul", [x, g.op("Mul", [x, x], f"{hint}_x2")], f"{hint}_x3")
        inner = g.op("Add", [x, g.op("Mul", [x3, g.const(0.044715, f"{hint}_c3")], f"{hint}_cx3")], f"{hint}_in")
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(math.sqrt(2.0 / math.pi), f"{hint}_k")], f"{hint}_arg")],
                 f"{hint}_tanh")
        h = g.op("Mul", [x, g.op("Add", [t, g.const(1.0, f"{hint}_one")], f"{hint}_1pt")], f"{hint}_xp")
        out = g.op("Mul", [h, g.const(0.5, f"{hint}_half")], hint)
    elif name == "softplus":
        out = g.op("Softplus", [x], hint)
    else:  # pragma: no cover - every class in _ACT_TYPES is handled above
        _refuse(layer, f"activation {name!r} has no ONNX form")
    return g.like(v, out)


_ACT_TYPES = {type(a) for a in _activations.ACTIVATIONS.values()}


# ---- convolutions ---------------------------------------------------------------------------------


def _conv_node(g, x, w_onnx, bias, out_shape, hint, *, layer=None, group=1, key=None):
    """An ONNX ``Conv`` on the NCHW value ``x`` (weights already in ONNX's layout). With ``layer``:
    its strides, dilation and padding (resolved for ``x``'s size); without: a 1x1 pointwise conv."""
    inputs = [x.name, g.const(w_onnx, f"{hint}_W", key=key)]
    if bias is not None:
        inputs.append(g.const(bias, f"{hint}_B", key=None if key is None else (key, "bias")))
    window = {"strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0]}
    if layer is not None:
        (t, b), (l, r) = resolve_padding(
            layer.padding, x.shape[:2], layer.kernel_size, layer.strides, layer.dilation_rate, layer.name
        )
        window = {"strides": list(layer.strides), "dilations": list(layer.dilation_rate)}
        window["pads"] = [t, l, b, r]
    out = g.op("Conv", inputs, hint, kernel_shape=list(w_onnx.shape[2:]), group=int(group), **window)
    return _Value(out, out_shape, _NCHW)


def _export_conv2d(g, layer, ins, out_shape):
    w = layer.params["kernel"]
    y = _conv_node(
        g, g.nchw(ins[0]), w.transpose(3, 2, 0, 1), layer.params.get("bias"), out_shape, layer.name,
        layer=layer, group=layer.groups, key=id(w),
    )  # fmt: skip
    return _activation(g, y, layer.activation, f"{layer.name}_act", layer)


def _depthwise_weight(w):
    """Keras's depthwise ``(KH, KW, C, M)`` as ONNX's grouped ``(C*M, 1, KH, KW)`` (channel c*M+m)."""
    kh, kw, c, m = w.shape
    return w.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]


def _export_depthwise(g, layer, ins, out_shape):
    w = layer.params["depthwise_kernel"]
    y = _conv_node(
        g, g.nchw(ins[0]), _depthwise_weight(w), layer.params.get("bias"), out_shape, layer.name,
        layer=layer, group=w.shape[2], key=id(w),
    )  # fmt: skip
    return _activation(g, y, layer.activation, f"{layer.name}_act", layer)


def _export_separable(g, layer, ins, out_shape):
    dw, pw = layer.params["depthwise_kernel"], layer.params["pointwise_kernel"]
    mid = (*out_shape[:2], dw.shape[2] * dw.shape[3])
    t = _conv_node(
        g, g.nchw(ins[0]), _depthwise_weight(dw), None, mid, f"{layer.name}_depthwise",
        layer=layer, group=dw.shape[2], key=id(dw),
    )  # fmt: skip
    pw_onnx = pw.transpose(3, 2, 0, 1)
    y = _conv_node(g, t, pw_onnx, layer.params.get("bias"), out_shape, f"{layer.name}_pointwise", key=id(pw))
    return _activation(g, y, layer.activation, f"{layer.name}_act", layer)


def _export_conv_transpose(g, layer, ins, out_shape):
    """ONNX ``ConvTranspose`` computes the full ``(H - 1) * stride + k_eff`` rows, minus ``pads``,
    plus ``output_padding`` at the end; the layer's crop (its op arguments) is mapped onto those."""
    v = ins[0]
    x = g.nchw(v)
    kw = layer._transpose_kwargs(v.shape[:2])
    (oh, ow), tops = transpose_geometry(
        kw["padding"],
        v.shape[:2],
        layer.kernel_size,
        kw["stride"],
        kw["dilation"],
        kw.get("output_padding", (0, 0)),
        layer.name,
    )
    begin, end, extra = [], [], []
    for n, k, s, d, o, top in zip(
        v.shape[:2], layer.kernel_size, layer.strides, layer.dilation_rate, (oh, ow), tops
    ):
        full = (n - 1) * s + effective_kernel(k, d)
        delta = o - (full - top)  # rows past the full output (> 0) or cropped at the end (< 0)
        begin.append(top)
        end.append(max(-delta, 0))
        extra.append(max(delta, 0))
    w = layer.params["kernel"]
    inputs = [x.name, g.const(w.transpose(3, 2, 0, 1), f"{layer.name}_W", key=id(w))]
    if layer.params.get("bias") is not None:
        inputs.append(g.const(layer.params["bias"], f"{layer.name}_B"))
    out = g.op(
        "ConvTranspose",
        inputs,
        layer.name,
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        dilations=list(layer.dilation_rate),
        pads=[begin[0], begin[1], end[0], end[1]],
        output_padding=extra,
        group=int(layer.groups),
    )
    return _activation(g, _Value(out, out_shape, _NCHW), layer.activation, f"{layer.name}_act", layer)


# ---- pooling --------------------------------------------------------------------------------------


def _export_pool(g, layer, ins, out_shape):
    """Max / average pooling. ``dilation_rate`` and ``ceil_mode`` are read with getattr (defaults 1
    and False) and ``count_include_pad`` likewise (default False, TensorFlow's "same" rule); the
    output size is the layer's own ``compute_output_shape``, reached with extra bottom/right padding
    that no window counts (a ceil-mode last window)."""
    v = ins[0]
    x = g.nchw(v)
    is_max = isinstance(layer, _pool.MaxPooling2D)
    k, s = tuple(layer.pool_size), tuple(layer.strides)
    d = getattr(layer, "dilation_rate", 1)
    d = (int(d), int(d)) if isinstance(d, (int, np.integer)) else tuple(int(i) for i in d)
    include_pad = bool(getattr(layer, "count_include_pad", False))
    (t, b), (l, r) = resolve_padding(layer.padding, v.shape[:2], k, s, d, layer.name)
    extra = []
    for n, kk, ss, dd, before, after, o in zip(v.shape[:2], k, s, d, (t, l), (b, r), out_shape[:2]):
        extra.append(max((o - 1) * ss + effective_kernel(kk, dd) - (n + before + after), 0))
    attrs = {"kernel_shape": list(k), "strides": list(s)}
    if d != (1, 1):
        if not is_max and g.opset < 19:
            _refuse(layer, f"average pooling with dilation_rate={d} needs opset >= 19 (asked for {g.opset})")
        attrs["dilations"] = list(d)
    if is_max:
        out = g.op("MaxPool", [x.name], layer.name, pads=[t, l, b + extra[0], r + extra[1]], **attrs)
    else:
        name = x.name
        if include_pad and (t or b or l or r):  # the real padding is counted: zeros in the input
            pads = g.ints([0, 0, t, l, 0, 0, b, r], f"{layer.name}_pads")
            name = g.op("Pad", [name, pads], f"{layer.name}_pad", mode="constant")
            t = b = l = r = 0
        out = g.op(
            "AveragePool",
            [name],
            layer.name,
            pads=[t, l, b + extra[0], r + extra[1]],
            count_include_pad=0,
            **attrs,
        )
    return _Value(out, out_shape, _NCHW)


def _export_global_pool(g, layer, ins, out_shape):
    x = g.nchw(ins[0])
    op = "GlobalMaxPool" if isinstance(layer, _pool.GlobalMaxPooling2D) else "GlobalAveragePool"
    out = g.op(op, [x.name], layer.name)
    if layer.keepdims:
        return _Value(out, out_shape, _NCHW)
    return _Value(g.op("Flatten", [out], f"{layer.name}_flat", axis=1), out_shape)


# ---- normalisation and element-wise layers ---------------------------------------------------------


def _export_batchnorm(g, layer, ins, out_shape):
    """Inference BatchNormalization as one scale and shift per channel (float64 arithmetic, as the
    op): ``y = x * a + (beta - mean * a)``, ``a = gamma / sqrt(moving_variance + epsilon)``."""
    v = ins[0]
    mean = np.asarray(layer.state["moving_mean"], np.float64)
    var = np.asarray(layer.state["moving_variance"], np.float64)
    gamma = layer.params.get("gamma")
    beta = layer.params.get("beta")
    a = (1.0 if gamma is None else np.asarray(gamma, np.float64)) / np.sqrt(var + layer.epsilon)
    shift = (0.0 if beta is None else np.asarray(beta, np.float64)) - mean * a
    if len(v.shape) == 3 or v.layout == _NCHW:
        v = g.nchw(v) if len(v.shape) == 3 else v
        a, shift = a.reshape(-1, 1, 1), shift.reshape(-1, 1, 1)
    y = g.op("Mul", [v.name, g.const(a, f"{layer.name}_scale")], f"{layer.name}_mul")
    y = g.op("Add", [y, g.const(shift, f"{layer.name}_shift")], layer.name)
    return g.like(v, y)


def _export_dense(g, layer, ins, out_shape):
    v = g.native(ins[0])
    w = layer.params["kernel"]
    y = g.op("MatMul", [v.name, g.const(w, f"{layer.name}_W", key=id(w))], f"{layer.name}_matmul")
    if layer.params.get("bias") is not None:
        y = g.op("Add", [y, g.const(layer.params["bias"], f"{layer.name}_B")], layer.name)
    return _activation(g, _Value(y, out_shape), layer.activation, f"{layer.name}_act", layer)


def _export_activation_layer(g, layer, ins, out_shape):
    return _activation(g, ins[0], layer.activation, layer.name, layer)


def _export_softmax(g, layer, ins, out_shape):
    return _activation(g, ins[0], _activations.softmax, layer.name, layer)


def _export_relu(g, layer, ins, out_shape):
    """Keras's ReLU: ``x >= threshold``: x, else ``negative_slope * (x - threshold)``; then at
    most ``max_value``."""
    v = ins[0]
    x = v.name
    if layer.negative_slope == 0 and layer.threshold == 0:
        y = g.op("Relu", [x], f"{layer.name}_relu")
    else:
        th = g.const(layer.threshold, f"{layer.name}_threshold")
        low = g.op(
            "Mul",
            [
                g.op("Sub", [x, th], f"{layer.name}_shift"),
                g.const(layer.negative_slope, f"{layer.name}_slope"),
            ],
            f"{layer.name}_low",
        )
        y = g.op(
            "Where", [g.op("GreaterOrEqual", [x, th], f"{layer.name}_ge"), x, low], f"{layer.name}_where"
        )
    if layer.max_value is not None:
        y = g.op("Min", [y, g.const(layer.max_value, f"{layer.name}_max")], f"{layer.name}_min")
    return g.like(v, g.op("Identity", [y], layer.name))


def _export_leaky_relu(g, layer, ins, out_shape):
    return g.like(ins[0], g.op("LeakyRelu", [ins[0].name], layer.name, alpha=float(layer.negative_slope)))


def _export_elu(g, layer, ins, out_shape):
    return g.like(ins[0], g.op("Elu", [ins[0].name], layer.name, alpha=float(layer.alpha)))


def _export_prelu(g, layer, ins, out_shape):
    v = ins[0]
    if len(v.shape) == 3:
        v = g.nchw(v)
    slope = g.per_sample_const(v, layer.params["alpha"][None], f"{layer.name}_alpha")
    return g.like(v, g.op("PRelu", [v.name, slope], layer.name))


def _export_rescaling(g, layer, ins, out_shape):
    v = ins[0]
    y = g.op("Mul", [v.name, g.per_sample_const(v, layer.scale, f"{layer.name}_scale")], f"{layer.name}_mul")
    y = g.op("Add", [y, g.per_sample_const(v, layer.offset, f"{layer.name}_offset")], layer.name)
    return g.like(v, y)


def _export_normalization(g, layer, ins, out_shape):
    v = ins[0]
    mean, std = layer._stats(np.float64)
    m = g.per_sample_const(v, mean, f"{layer.name}_mean")
    sd = g.per_sample_const(v, std, f"{layer.name}_std")
    if layer.invert:
        y = g.op("Add", [g.op("Mul", [v.name, sd], f"{layer.name}_mul"), m], layer.name)
    else:
        y = g.op("Div", [g.op("Sub", [v.name, m], f"{layer.name}_sub"), sd], layer.name)
    return g.like(v, y)


def _export_layer_norm(g, layer, ins, out_shape):
    """Per-sample statistics over ``axis``, in native layout (float32 in ONNX; fastconv computes in
    float64, well inside the export's tolerance)."""
    v = g.native(ins[0])
    axes = layer._axes(v.shape)
    n = layer.name
    mean = g.reduce_mean(v.name, axes, f"{n}_mean")
    xc = g.op("Sub", [v.name, mean], f"{n}_centred")
    var = g.reduce_mean(g.op("Mul", [xc, xc], f"{n}_sq"), axes, f"{n}_var")
    std = g.op("Sqrt", [g.op("Add", [var, g.const(layer.epsilon, f"{n}_eps")], f"{n}_vareps")], f"{n}_std")
    y = g.op("Div", [xc, std], f"{n}_xhat")
    rank = len(v.shape) + 1
    for key, op in (("gamma", "Mul"), ("beta", "Add")):
        if key in layer.params:
            p = np.asarray(layer._param_view(key, rank, axes))
            y = g.op(op, [y, g.const(p, f"{n}_{key}")], f"{n}_{key}_{op.lower()}")
    return _Value(g.op("Identity", [y], n), out_shape)


def _identity(g, layer, ins, out_shape):
    return ins[0]


# ---- shapes ---------------------------------------------------------------------------------------


def _export_flatten(g, layer, ins, out_shape):
    v = g.native(ins[0])  # fastconv flattens NHWC: the channel index runs fastest
    return _Value(g.op("Flatten", [v.name], layer.name, axis=1), out_shape)


def _export_reshape(g, layer, ins, out_shape):
    v = g.native(ins[0])
    target = [0] + [-1 if d is None else int(d) for d in out_shape]  # 0: keep the batch size
    return _Value(g.op("Reshape", [v.name, g.ints(target, f"{layer.name}_shape")], layer.name), out_shape)


def _export_zero_padding(g, layer, ins, out_shape):
    x = g.nchw(ins[0])
    (t, b), (l, r) = layer.padding
    pads = g.ints([0, 0, t, l, 0, 0, b, r], f"{layer.name}_pads")
    return _Value(g.op("Pad", [x.name, pads], layer.name, mode="constant"), out_shape, _NCHW)


def _export_cropping(g, layer, ins, out_shape):
    x = g.nchw(ins[0])
    (t, b), (l, r) = layer.cropping
    h, w = ins[0].shape[:2]
    args = [
        x.name,
        g.ints([t, l], f"{layer.name}_starts"),
        g.ints([h - b, w - r], f"{layer.name}_ends"),
        g.ints([2, 3], f"{layer.name}_axes"),
    ]
    return _Value(g.op("Slice", args, layer.name), out_shape, _NCHW)


def _export_upsampling(g, layer, ins, out_shape):
    """Nearest: row ``i`` reads ``floor(i / size)``; bilinear: half-pixel centres, edges clamped
    (the layer's interpolation matrix)."""
    x = g.nchw(ins[0])
    sh, sw = layer.size
    scales = g.const([1.0, 1.0, float(sh), float(sw)], f"{layer.name}_scales")
    if layer.interpolation == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    return _Value(g.op("Resize", [x.name, "", scales], layer.name, **attrs), out_shape, _NCHW)


def _export_channel_shuffle(g, layer, ins, out_shape):
    v = ins[0]
    h, w, c = v.shape
    a = layer.groups
    n = layer.name
    if v.layout == _NCHW:
        split, perm, back = [0, a, c // a, h, w], [0, 2, 1, 3, 4], [0, c, h, w]
    else:
        split, perm, back = [0, h, w, a, c // a], [0, 1, 2, 4, 3], [0, h, w, c]
    y = g.op("Reshape", [v.name, g.ints(split, f"{n}_split")], f"{n}_split")
    y = g.op("Transpose", [y], f"{n}_swap", perm=perm)
    return g.like(v, g.op("Reshape", [y, g.ints(back, f"{n}_back")], n))


# ---- merges ---------------------------------------------------------------------------------------


def _aligned(g, ins, hint):
    """The inputs of a merge in one layout: NCHW when all are 4-D and one already is; else native
    with Keras's rank alignment (axes of size 1 inserted after the batch axis)."""
    ranks = {len(v.shape) for v in ins}
    if ranks == {3} and any(v.layout == _NCHW for v in ins):
        return [g.nchw(v) for v in ins], _NCHW
    rank = max(ranks)
    out = []
    for i, v in enumerate(ins):
        v = g.native(v)
        missing = rank - len(v.shape)
        if missing:
            v = _Value(
                g.unsqueeze(v.name, list(range(1, missing + 1)), f"{hint}_expand{i}"),
                (1,) * missing + v.shape,
            )
        out.append(v)
    return out, _NATIVE


def _chain(g, op, names, hint):
    y = names[0]
    for i, name in enumerate(names[1:], start=1):
        y = g.op(op, [y, name], hint if i == len(names) - 1 else f"{hint}_{i}")
    return y


def _export_merge(g, layer, ins, out_shape):
    vs, layout = _aligned(g, ins, layer.name)
    names = [v.name for v in vs]
    n = layer.name
    if isinstance(layer, _merge.Add):
        y = g.op("Sum", names, n)
    elif isinstance(layer, _merge.Subtract):
        y = g.op("Sub", names, n)
    elif isinstance(layer, _merge.Multiply):
        y = _chain(g, "Mul", names, n)
    elif isinstance(layer, _merge.Average):
        y = g.op("Mul", [g.op("Sum", names, f"{n}_sum"), g.const(1.0 / len(names), f"{n}_inv")], n)
    elif isinstance(layer, _merge.Maximum):
        y = g.op("Max", names, n)
    else:
        y = g.op("Min", names, n)
    return _Value(y, out_shape, layout)


def _export_concatenate(g, layer, ins, out_shape):
    vs, layout = _aligned(g, ins, layer.name)
    axis = layer._sample_axis(len(vs[0].shape)) + 1
    if layout == _NCHW:
        axis = _TO_NCHW.index(axis)
    return _Value(g.op("Concat", [v.name for v in vs], layer.name, axis=axis), out_shape, layout)


# ---- composite blocks -------------------------------------------------------------------------------


def _export_path(g, layers, v):
    for layer in layers:
        v = _export_layer(g, layer, [v])
    return v


def _export_residual(g, layer, ins, out_shape):
    v = ins[0]
    h = _export_path(g, layer.layers, v)
    s = _export_path(g, layer.shortcut, v) if layer.shortcut else v
    (a, b), layout = _aligned(g, [h, s], layer.name)
    y = _Value(g.op("Add", [a.name, b.name], f"{layer.name}_add"), out_shape, layout)
    return _activation(g, y, layer.activation, f"{layer.name}_act", layer)


def _export_branches(g, layer, ins, out_shape):
    outs = [_export_path(g, branch, ins[0]) for branch in layer.branches]
    vs, layout = _aligned(g, outs, layer.name)
    axis = g.channel_axis(vs[0])
    return _Value(g.op("Concat", [v.name for v in vs], layer.name, axis=axis), out_shape, layout)


_CONVERTERS = {
    _conv.Conv2D: _export_conv2d,
    _conv.DepthwiseConv2D: _export_depthwise,
    _conv.SeparableConv2D: _export_separable,
    _conv.Conv2DTranspose: _export_conv_transpose,
    _pool.MaxPooling2D: _export_pool,
    _pool.AveragePooling2D: _export_pool,
    _pool.GlobalAveragePooling2D: _export_global_pool,
    _pool.GlobalMaxPooling2D: _export_global_pool,
    _norm.BatchNormalization: _export_batchnorm,
    _ln.LayerNormalization: _export_layer_norm,
    _core.Dense: _export_dense,
    _core.Flatten: _export_flatten,
    _core.Dropout: _identity,
    _core.Activation: _export_activation_layer,
    _core.ReLU: _export_relu,
    _core.Softmax: _export_softmax,
    _act_layers.LeakyReLU: _export_leaky_relu,
    _act_layers.ELU: _export_elu,
    _act_layers.PReLU: _export_prelu,
    _pre.Rescaling: _export_rescaling,
    _pre.Normalization: _export_normalization,
    _reg.SpatialDropout2D: _identity,
    _reg.GaussianNoise: _identity,
    _rand.RandomFlip: _identity,
    _rand.RandomRotation: _identity,
    _rand.RandomTranslation: _identity,
    _rand.RandomZoom: _identity,
    _rand.RandomContrast: _identity,
    _reshaping.ZeroPadding2D: _export_zero_padding,
    _reshaping.UpSampling2D: _export_upsampling,
    _cropping.Cropping2D: _export_cropping,
    _shape_ops.Reshape: _export_reshape,
    _shape_ops.ChannelShuffle: _export_channel_shuffle,
    _merge.Add: _export_merge,
    _merge.Subtract: _export_merge,
    _merge.Multiply: _export_merge,
    _merge.Average: _export_merge,
    _merge.Maximum: _export_merge,
    _merge.Minimum: _export_merge,
    _merge.Concatenate: _export_concatenate,
    _blocks.ResidualBlock: _export_residual,
    _blocks.Branches: _export_branches,
}

#: Why the layers without a converter have none (the refusal's wording).
_WHY_NOT = {
    "Lambda": "a Lambda runs an arbitrary Python function, which has no ONNX form; "
    "write the computation with fastconv layers",
}


def _export_layer(g, layer, ins):
    layer = getattr(layer, "wrapped_layer", layer)  # a shared layer's per-use proxy
    convert = _CONVERTERS.get(type(layer))
    if convert is None:
        why = _WHY_NOT.get(type(layer).__name__, "ONNX export has no converter for this class")
        _refuse(layer, why)
    shapes = [v.shape for v in ins]
    out_shape = tuple(layer.compute_output_shape(shapes if len(ins) > 1 else shapes[0]))
    if len(ins) == 1 and len(ins[0].shape) == 3 and any(d is None for d in ins[0].shape[:2]):
        _refuse(
            layer,
            f"its input size {(None, *ins[0].shape)} is not fixed; export a model built for fixed H and W",
        )
    return convert(g, layer, ins, out_shape)


# ---- the model ------------------------------------------------------------------------------------


def _model_io(model):
    """(input names, per-sample input shapes, output names) of a built model."""
    shapes = model.input_shape
    shapes = list(shapes) if isinstance(shapes, list) else [shapes]
    try:
        names = [t.node.layer.name for t in model.inputs]
    except AttributeError:
        names = []
    if len(names) != len(shapes):
        names = ["input"] if len(shapes) == 1 else [f"input_{i}" for i in range(len(shapes))]
    return names, [tuple(s[1:]) for s in shapes], model._output_names()


def to_onnx(model, opset=DEFAULT_OPSET):
    """The model as an ``onnx.ModelProto`` (inference mode, float32, NHWC in and out).

    Parameters
    ----------
    model : fastconv.Sequential or fastconv.Model
        A built model (fixed H and W; the batch size stays free).
    opset : int, default 17
        The ONNX opset to write (13 up to what the installed ``onnx`` knows).

    Raises
    ------
    ValueError
        For an unbuilt model, an opset out of range, or a layer that cannot be exported
        (the message names the layer and its class).
    ImportError
        Without the ``onnx`` package (``pip install 'fastconv[onnx]'``).
    """
    onnx = _require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if (
        not isinstance(opset, (int, np.integer))
        or isinstance(opset, bool)
        or not MIN_OPSET <= opset <= newest
    ):
        raise ValueError(
            f"opset must be an int from {MIN_OPSET} to {newest} (the installed onnx). "
            f"Received: opset={opset!r}"
        )
    if not getattr(model, "built", False) or not hasattr(model, "_plan"):
        raise ValueError(
            f"to_onnx needs a built fastconv model (give the first layer input_shape, or call "
            f"model.build((None, H, W, C))). Received: {model!r}"
        )
    g = _Graph(onnx, int(opset))
    helper = onnx.helper
    plan = model._plan()
    in_names, in_shapes, out_names = _model_io(model)
    g._names.update(in_names)
    g._names.update(out_names)  # reserved: the graph's outputs carry the output layers' names
    values, graph_inputs = {}, []
    for tid, name, shape in zip(plan.inputs, in_names, in_shapes):
        values[tid] = _Value(name, shape)
        dims = ["batch", *shape]
        graph_inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims))
    for node in plan.nodes:
        layer = getattr(node.layer, "wrapped_layer", node.layer)
        if isinstance(layer, InputLayer):
            values[node.output] = values[node.inputs[0]]
            continue
        values[node.output] = _export_layer(g, layer, [values[t] for t in node.inputs])
    graph_outputs = []
    for tid, name in zip(plan.outputs, out_names):
        v = g.native(values[tid])
        if v.name in in_names or name in [o.name for o in graph_outputs]:  # an input returned as is, or twice
            name = g.fresh(name)
        g.nodes.append(helper.make_node("Identity", [v.name], [name], name=f"{name}_output"))
        graph_outputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", *v.shape]))
    _fold_batchnorm(g)
    graph = helper.make_graph(g.nodes, model.name, graph_inputs, graph_outputs, initializer=g.initializers)
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", int(opset))],
        producer_name="fastconv",
        producer_version=_version(),
    )
    proto.ir_version = min(proto.ir_version, _IR_FOR_OPSET.get(int(opset), proto.ir_version))
    onnx.checker.check_model(proto)
    return proto


def _fold_batchnorm(g):
    """Fold each BatchNormalization that directly follows a convolution into it: ``Conv -> Mul(a)
    -> Add(shift)`` (the pattern :func:`_export_batchnorm` writes on NCHW values) becomes one
    ``Conv`` (or ``ConvTranspose``) with weights ``W * a`` (per output channel) and bias
    ``B * a + shift``, computed in float64. Only when the conv's output feeds nothing else and no
    other node uses its weights (a shared layer keeps its BatchNormalization as Mul and Add)."""
    nh = g.onnx.numpy_helper
    inits = {t.name: t for t in g.initializers}
    consumers, producer = {}, {}
    for node in g.nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node

    def channel_const(name, c):
        t = inits.get(name)
        a = None if t is None else nh.to_array(t)
        return a.reshape(-1).astype(np.float64) if a is not None and a.shape == (c, 1, 1) else None

    folded, dropped = {}, set()
    for mul in g.nodes:
        if mul.op_type != "Mul":
            continue
        conv = producer.get(mul.input[0])
        if (
            conv is None
            or conv.op_type not in ("Conv", "ConvTranspose")
            or len(consumers[conv.output[0]]) != 1
        ):
            continue
        adds = consumers.get(mul.output[0], [])
        if len(adds) != 1 or adds[0].op_type != "Add" or adds[0].input[0] != mul.output[0]:
            continue
        add = adds[0]
        if any(len(consumers[name]) != 1 or name not in inits for name in conv.input[1:]):
            continue
        w = nh.to_array(inits[conv.input[1]]).astype(np.float64)
        groups = next((a.i for a in conv.attribute if a.name == "group"), 1)
        # Conv: (C_out, C_in / groups, KH, KW); ConvTranspose: (C_in, C_out / groups, KH, KW) with
        # output channel group * (C_out / groups) + j
        c_out = w.shape[0] if conv.op_type == "Conv" else w.shape[1] * groups
        scale = channel_const(mul.input[1], c_out)
        shift = channel_const(add.input[1], c_out)
        if scale is None or shift is None:
            continue
        if conv.op_type == "Conv":
            w = w * scale[:, None, None, None]
        else:
            cin, cg = w.shape[0] // groups, w.shape[1]
            w = (w.reshape(groups, cin, cg, *w.shape[2:]) * scale.reshape(groups, 1, cg, 1, 1)).reshape(
                w.shape
            )
        bias = nh.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 else 0.0
        inputs = [
            conv.input[0],
            g.const(w, f"{conv.name}_W_bn"),
            g.const(bias * scale + shift, f"{conv.name}_B_bn"),
        ]
        node = g.helper.make_node(conv.op_type, inputs, [add.output[0]], name=conv.name)
        node.attribute.extend(conv.attribute)
        folded[id(conv)] = node
        dropped.update((id(mul), id(add)))
    if not folded:
        return
    g.nodes = [folded.get(id(n), n) for n in g.nodes if id(n) not in dropped]
    used = {name for n in g.nodes for name in n.input}
    g.initializers = [t for t in g.initializers if t.name in used]


# The IR version each opset came with (so a file of an older opset loads in older runtimes).
_IR_FOR_OPSET = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastconv")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree, not installed
        return ""


def export(model, path, opset=DEFAULT_OPSET):
    """Write ``model`` to ``path`` as an ONNX file (atomically: a temporary file renamed over it)
    and return the path. See :func:`to_onnx`."""
    proto = to_onnx(model, opset=opset)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data), what="write the ONNX file")
    return os.fspath(path)
