"""Composite blocks: ResidualBlock (ResNet add) and Branches (Inception concat).

Design notes
------------
* A block is a Layer whose ``sublayers`` run inside its forward/backward; it
  owns no weights itself. Weights, parameter counts, ``trainable_pairs``,
  regularization losses and ``get_weights`` order all come from the sublayers
  in ``sublayers`` order (main path then shortcut; branch by branch).
* ``get_config`` embeds ``serialize(sublayer)`` dicts; a built ResidualBlock
  stores its automatically created projection as explicit shortcut layers, so
  ``from_config`` gives the same weight list for ``set_weights``.
* A block's dtype governs its sublayers (set on unbuilt sublayers at build).
* ``need_input_grad`` of a block is passed on to the first layer of each path.
"""

from __future__ import annotations

import numpy as np

from fastconv import activations as _activations
from fastconv.layers.base import Layer, deserialize, register_layer, serialize, shape_str
from fastconv.layers.conv import Conv2D
from fastconv.layers.core import Dense
from fastconv.layers.normalization import BatchNormalization
from fastconv.ops import elementwise as _ew

#: the activations a ResidualBlock applies in its sum's pass (ops.elementwise.residual_add)
_FUSED_SUM = ("linear", "relu", "relu6")

__all__ = ["Branches", "ResidualBlock"]


def _as_layer_list(layers, what) -> list:
    if layers is None:
        return []
    if isinstance(layers, (Layer, dict)):
        layers = [layers]
    out = [deserialize(item) for item in layers]
    for item in out:
        if not isinstance(item, Layer):
            raise TypeError(f"{what} must hold Layer instances. Received: {item!r}")
    return out


def _build_path(block, layers, shape):
    for layer in layers:
        if not layer.built:
            layer.dtype = block.dtype
            layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


def _forward_path(layers, x, training):
    if not training:
        return _inference_path(layers, x)
    for layer in layers:
        x = layer.forward(x, training)
    return x


def _epilogue_after(layer, nxt):
    """The name of the activation layer ``nxt`` when ``layer`` can apply it as its epilogue, else None."""
    name = getattr(nxt, "epilogue_name", None)
    if name in (None, "linear") or name not in layer.fusable_epilogues or nxt.dtype != layer.dtype:
        return None
    return name


def _inference_path(layers, x):
    """A path's inference forward with the execution plan's fusions (``fastconv.engine.graph``),
    which cannot see inside a block: a layer with ``accepts_affine`` and a linear activation
    followed by a BatchNormalization runs with its affine map folded into the weights, and an
    activation layer after them (or right after a layer with a linear activation) that the
    layer lists in its ``fusable_epilogues`` becomes its epilogue."""
    i, n = 0, len(layers)
    while i < n:
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < n else None
        if nxt is None or layer.final_activation != "linear":
            x = layer.forward(x, False)
            i += 1
            continue
        affine = None
        if layer.accepts_affine and nxt.dtype == layer.dtype and callable(getattr(nxt, "inference_affine", None)):
            affine = nxt.inference_affine()
        i += 1 if affine is None else 2  # past the layer (and its BatchNormalization)
        epilogue = _epilogue_after(layer, layers[i]) if i < n else None
        if epilogue is not None:
            i += 1  # past the activation layer
        x = layer.forward(x, False, epilogue=epilogue, affine=affine)
    return x


def _backward_path(layers, dy, need_input_grad):
    if layers:
        layers[0].need_input_grad = need_input_grad
    for layer in reversed(layers):
        dy = layer.backward(dy)
    return dy


class _Block(Layer):
    def _adopt(self, layers):
        """Register sublayers and apply the block's trainable flag to them."""
        self.sublayers = list(layers)
        if not self.trainable:
            for sub in self.sublayers:
                sub.trainable = False


@register_layer
class ResidualBlock(_Block):
    """``y = activation(main(x) + shortcut(x))`` (a ResNet block).

    Parameters
    ----------
    layers : list of Layer
        The main path, run in order.
    shortcut : "auto", "identity", "projection" or list of Layer
        "auto" (default): identity when the main path keeps the shape, else a
        projection. "projection": always a 1x1 Conv2D with the stride that
        matches the main path's output size (``ceil(H / stride) = OH``), no
        bias when followed by BatchNormalization (a Dense for ``(N, features)``
        inputs). A list: a custom shortcut path.
    projection_batchnorm : bool
        Follow the projection conv with BatchNormalization (ResNet v1 style).
    activation : str or None
        Applied after the addition (e.g. "relu").

    Examples
    --------
    >>> block = ResidualBlock([Conv2D(16, 3, strides=2, padding="same", activation="relu"),
    ...                        Conv2D(16, 3, padding="same")], activation="relu")
    >>> block.build((28, 28, 8)); block.output_shape
    (14, 14, 16)
    """

    input_ndim = None
    min_ndim = 2

    def __init__(self, layers, shortcut="auto", projection_batchnorm=False, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.layers = _as_layer_list(layers, "ResidualBlock(layers=...)")
        if not self.layers:
            raise ValueError("ResidualBlock needs at least one layer on its main path.")
        if isinstance(shortcut, str):
            if shortcut not in ("auto", "identity", "projection"):
                raise ValueError(
                    f'`shortcut` must be "auto", "identity", "projection" or a list of layers. '
                    f"Received: shortcut={shortcut!r}"
                )
            self.shortcut_mode = shortcut
            self.shortcut = []
        else:
            self.shortcut_mode = "layers"
            self.shortcut = _as_layer_list(shortcut, "ResidualBlock(shortcut=...)")
        self.projection_batchnorm = bool(projection_batchnorm)
        self.activation = _activations.get(activation)
        self._adopt(self.layers + self.shortcut)

    def _projection_strides(self, in_shape, out_shape):
        strides = []
        for n_in, n_out in zip(in_shape[:-1], out_shape[:-1]):
            if n_in is None or n_out is None or n_in == n_out:
                strides.append(1)
                continue
            s = -(-n_in // n_out)
            if s < 1 or -(-n_in // s) != n_out:
                raise ValueError(
                    f'ResidualBlock "{self.name}": the main path maps {shape_str(in_shape)} to '
                    f"{shape_str(out_shape)}, a size change no strided 1x1 projection reproduces "
                    f'(use padding="same" on the main path, or pass shortcut=[...]).'
                )
            strides.append(s)
        return tuple(strides)

    def _build_weights(self, input_shape):
        out = _build_path(self, self.layers, input_shape)
        mode = self.shortcut_mode
        if mode == "auto":
            mode = "identity" if tuple(out) == tuple(input_shape) else "projection"
        if mode == "projection":
            bn = self.projection_batchnorm
            if len(input_shape) == 3:
                strides = self._projection_strides(input_shape, out)
                conv = Conv2D(out[-1], 1, strides=strides, use_bias=not bn, dtype=self.dtype)
            elif len(input_shape) == 1:
                conv = Dense(out[-1], use_bias=not bn, dtype=self.dtype)
            else:
                raise ValueError(
                    f'ResidualBlock "{self.name}": a projection shortcut needs inputs (N, H, W, C) '
                    f"or (N, features). Received input shape {shape_str(input_shape)}"
                )
            self.shortcut = [conv, BatchNormalization(dtype=self.dtype)] if bn else [conv]
            self.shortcut_mode = "layers"
            self._adopt(self.layers + self.shortcut)
        sc = _build_path(self, self.shortcut, input_shape)
        if tuple(sc) != tuple(out):
            raise ValueError(
                f'ResidualBlock "{self.name}": inputs to the addition have incompatible shapes. '
                f"Received shapes {shape_str(out)} (main path) and {shape_str(sc)} (shortcut)"
            )

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
        return shape

    #: the block can leave its activation out for one call (logits for a fused softmax cross-entropy)
    fusable_epilogues = ("linear",)

    @property
    def final_activation(self):
        return self.activation.name

    def call(self, x, training=False, epilogue=None):
        act = self.activation if epilogue is None else _activations.get(epilogue)
        h = _forward_path(self.layers, x, training)
        s = _forward_path(self.shortcut, x, training) if self.shortcut else x
        y_cache = None
        name = getattr(act, "name", None)
        if (name in _FUSED_SUM and act is _activations.get(name) and isinstance(h, np.ndarray)
                and isinstance(s, np.ndarray) and h.shape == s.shape and h.dtype == s.dtype
                and h.dtype in (np.float32, np.float64)):
            y = _ew.residual_add(h, s, name)  # the sum and its activation in one compiled pass
        else:
            y = np.add(h, s)
            if act is not _activations.linear:
                y = act.forward(y, out=y)
        if act is not _activations.linear:
            y_cache = y
        if training:
            self._cache = (y_cache, act)
        return y

    def call_backward(self, dy):
        y, act = self._need_cache()
        dz = dy if y is None else act.backward(dy, y)
        need = self.need_input_grad
        d_main = _backward_path(self.layers, dz, need)
        d_short = _backward_path(self.shortcut, dz, need) if self.shortcut else dz
        if not need:
            return None
        return d_main + d_short

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layers": [serialize(layer) for layer in self.layers],
                "shortcut": (
                    [serialize(layer) for layer in self.shortcut]
                    if self.shortcut_mode == "layers"
                    else self.shortcut_mode
                ),
                "projection_batchnorm": self.projection_batchnorm,
                "activation": _activations.serialize(self.activation),
            }
        )
        return config


@register_layer
class Branches(_Block):
    """Parallel paths on the same input, concatenated on the channel axis (an Inception block).

    Parameters
    ----------
    branches : list
        Each item is a Layer or a list of Layers run in order; an empty list is an
        identity branch. All branches must give the same shape except channels.

    Examples
    --------
    >>> block = Branches([[Conv2D(8, 1)], [Conv2D(4, 1), Conv2D(8, 3, padding="same")],
    ...                   [MaxPooling2D(3, strides=1, padding="same"), Conv2D(4, 1)]])
    >>> block.build((14, 14, 16)); block.output_shape
    (14, 14, 20)
    """

    input_ndim = None
    min_ndim = 2

    def __init__(self, branches, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(f"Branches concatenates on the channel axis -1 only. Received: {axis}")
        if not branches:
            raise ValueError("Branches needs at least one branch.")
        self.branches = [_as_layer_list(b, "Branches(branches=...)") for b in branches]
        self._adopt([layer for branch in self.branches for layer in branch])

    def _branch_shapes(self, input_shape):
        shapes = []
        for branch in self.branches:
            shape = tuple(input_shape)
            for layer in branch:
                shape = layer.compute_output_shape(shape)
            shapes.append(shape)
        return shapes

    def _check_shapes(self, shapes):
        first = shapes[0]
        if any(len(s) != len(first) or tuple(s[:-1]) != tuple(first[:-1]) for s in shapes):
            raise ValueError(
                f'A `Concatenate` layer ("{self.name}") requires inputs with matching shapes '
                f"except for the concatenation axis. Received: input_shape="
                f"{[shape_str(s) for s in shapes]}"
            )

    def _build_weights(self, input_shape):
        shapes = [_build_path(self, branch, input_shape) for branch in self.branches]
        self._check_shapes(shapes)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        shapes = self._branch_shapes(input_shape)
        self._check_shapes(shapes)
        channels = [s[-1] for s in shapes]
        total = None if any(c is None for c in channels) else sum(channels)
        return (*shapes[0][:-1], total)

    def call(self, x, training=False):
        outs = [_forward_path(branch, x, training) for branch in self.branches]
        if training:
            self._cache = [o.shape[-1] for o in outs]
        return np.concatenate(outs, axis=-1)

    def call_backward(self, dy):
        sizes = self._need_cache()
        need = self.need_input_grad
        dx = None
        start = 0
        for branch, size in zip(self.branches, sizes):
            d = _backward_path(branch, dy[..., start : start + size], need)
            start += size
            if need:
                dx = d if dx is None else dx + d  # never in place: d may be a view of dy
        return dx

    def get_config(self):
        config = super().get_config()
        config["branches"] = [[serialize(layer) for layer in branch] for branch in self.branches]
        return config
