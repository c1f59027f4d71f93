"""The Layer base class, the layer registry, (de)serialisation and shape helpers.

Design notes
------------
* The interface every layer keeps (ARCHITECTURE.md):
  ``params`` / ``grads`` (same keys, trainable weights), ``state`` (non-trainable
  weights), ``sublayers`` (composite blocks), ``forward`` / ``backward`` pairs.
* Subclasses implement three hooks and inherit the rest:
  ``_build_weights(input_shape)`` (create weights with :meth:`Layer.add_weight`),
  ``call(x, training)`` (forward on an array already converted to ``dtype``)
  and ``call_backward(dy)`` (returns dx, writes ``grads``). ``forward`` converts
  and checks the input and builds on first use; ``backward`` converts ``dy``.
* Speed: inputs are converted with ``np.asarray(x, dtype)`` (no copy when
  already right); layers cache only in training; weights and grads are updated
  in place so references held by optimizers and savers stay valid; ``dy`` is
  never modified in place (residual blocks hand one ``dy`` to two paths).
* Fusion is declared, never imposed: ``fusable_epilogues`` lists the
  activations a layer can apply last in place of its own (``final_activation``),
  and ``epilogue_name`` says that a layer is nothing but one activation. The
  execution plan (``fastconv.engine.graph``) reads these and passes its choice
  into the call, ``forward(x, training, epilogue="relu")``; no attribute of the
  layer changes, and ``backward`` follows what that forward ran (its cache).
* ``need_input_grad = False`` (set by the model on the first layer) makes
  ``backward`` return ``None`` and skip computing dx where the op allows it.
* Shapes passed around exclude the batch dimension, e.g. ``(28, 28, 1)``;
  spatial sizes may be ``None`` (unknown) and propagate as ``None``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

from fastconv import initializers as _initializers
from fastconv import regularizers as _regularizers
from fastconv.layers import _symbolic

__all__ = [
    "Layer",
    "bump_weights_generation",
    "deserialize",
    "get_registered_layer",
    "register_layer",
    "registered_classes",
    "reserve_name",
    "reset_name_counters",
    "serialize",
    "to_snake_case",
    "weights_generation",
]

# ---------------------------------------------------------------------------
# Registry and names
# ---------------------------------------------------------------------------

_LAYER_REGISTRY: dict[str, type] = {}
#: Bumped whenever a layer's set of trainable weights may have changed (a weight added, ``trainable``
#: set, weights rebound to views of a flat buffer): the cached ``trainable_pairs`` of every layer,
#: and a model's flat parameter layout (``fastconv.engine.flat``), are rebuilt after a bump.
_WEIGHTS_GENERATION = [0]


def weights_generation() -> int:
    """The counter :func:`bump_weights_generation` advances (cache key of ``trainable_pairs``)."""
    return _WEIGHTS_GENERATION[0]


def bump_weights_generation() -> None:
    """Invalidate every cached ``trainable_pairs`` (call after rebinding ``params`` / ``grads``)."""
    _WEIGHTS_GENERATION[0] += 1
_NAME_COUNTERS: defaultdict[str, int] = defaultdict(int)


def register_layer(cls=None, *, name=None):
    """Class decorator adding a class to the registry used by :func:`deserialize` and ``load_model``.

    ``@register_layer`` or ``@register_layer(name="Alias")``. Layers and the model classes
    (``Sequential``, ``Model``) share this one registry, so ``fastconv.saving`` finds a saved
    model's class by name without importing any model module.
    """

    def deco(c):
        _LAYER_REGISTRY[name or c.__name__] = c
        return c

    return deco(cls) if cls is not None else deco


def get_registered_layer(class_name: str) -> type:
    try:
        return _LAYER_REGISTRY[class_name]
    except KeyError:
        raise ValueError(
            f"Unknown layer: '{class_name}'. Please ensure you are using a registered layer "
            f"class. Known layers: {sorted(_LAYER_REGISTRY)}"
        ) from None


def registered_classes() -> dict:
    """``{registered name: class}`` of every registered layer and model class (a copy)."""
    return dict(_LAYER_REGISTRY)


def to_snake_case(name: str) -> str:
    """Keras's class-name-to-layer-name rule: ``Conv2D -> conv2d``, ``ReLU -> re_lu``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def _unique_name(prefix: str) -> str:
    n = _NAME_COUNTERS[prefix]
    _NAME_COUNTERS[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def reset_name_counters() -> None:
    """Restart auto-naming (``conv2d``, ``conv2d_1``, ...), like Keras's ``clear_session``."""
    _NAME_COUNTERS.clear()


_NUMBERED = re.compile(r"^(.+)_(\d+)$")


def reserve_name(name: str) -> None:
    """Advance the auto-name counter past ``name`` so no later auto-named layer takes it.

    ``reserve_name("dense_3")`` makes the next auto-named ``Dense`` ``dense_4`` (if the counter
    was lower); ``reserve_name("dense")`` makes it at least ``dense_1``. Names outside the
    auto-naming pattern only reserve themselves. ``load_model`` calls this for every loaded
    layer, so a head added for fine-tuning never clashes with a loaded layer's name.
    """
    name = str(name)
    m = _NUMBERED.match(name)
    if m is not None:
        prefix, n = m.group(1), int(m.group(2))
        _NAME_COUNTERS[prefix] = max(_NAME_COUNTERS[prefix], n + 1)
    else:
        _NAME_COUNTERS[name] = max(_NAME_COUNTERS[name], 1)


def serialize(layer) -> dict:
    """``{"class_name": ..., "config": layer.get_config()}`` (JSON-serialisable)."""
    return {"class_name": layer._registered_name(), "config": layer.get_config()}


def deserialize(d) -> Layer:
    """Rebuild a layer from :func:`serialize`'s dict (an unbuilt layer; weights not included)."""
    if isinstance(d, Layer):
        return d
    if not isinstance(d, dict) or "class_name" not in d:
        raise ValueError(f"Expected a dict with keys 'class_name' and 'config'. Received: {d!r}")
    cls = get_registered_layer(d["class_name"])
    return cls.from_config(dict(d.get("config", {})))


# ---------------------------------------------------------------------------
# Argument normalisation and Keras's output-length rules (written once)
# ---------------------------------------------------------------------------


def normalize_tuple(value, n, name, allow_zero=False):
    """An int or a length-``n`` sequence of ints -> tuple of ``n`` ints (Keras's standardize_tuple)."""
    if isinstance(value, (int, np.integer)):
        out = (int(value),) * n
    else:
        try:
            out = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"The `{name}` argument must be a tuple of {n} integers. Received: {name}={value!r}"
            ) from None
        if len(out) != n or any(o != v for o, v in zip(out, value)):
            raise ValueError(
                f"The `{name}` argument must be a tuple of {n} integers. Received: {name}={value!r}"
            )
    lo = 0 if allow_zero else 1
    if any(v < lo for v in out):
        raise ValueError(
            f"The `{name}` argument must be a tuple of {n} integers >= {lo}. Received: {name}={value!r}"
        )
    return out


def normalize_padding(value) -> str:
    if isinstance(value, str) and value.lower() in ("valid", "same"):
        return value.lower()
    raise ValueError(f'The `padding` argument must be one of "valid", "same". Received: padding={value!r}')


def check_data_format(value) -> None:
    if value not in (None, "channels_last"):
        raise ValueError(
            f'fastconv layers support data_format="channels_last" (NHWC) only. '
            f"Received: data_format={value!r}"
        )


def shape_str(shape) -> str:
    """``(None, 28, 28, 1)`` for a per-sample shape ``(28, 28, 1)``."""
    return str((None, *shape))


# ---------------------------------------------------------------------------
# Layer
# ---------------------------------------------------------------------------


class Layer:
    """Base class of all layers (Keras-like; NHWC activations).

    Parameters
    ----------
    name : str, optional
        Defaults to the snake-case class name made unique: ``conv2d``, ``conv2d_1``, ...
    trainable : bool
        False freezes the layer: the optimizer gets no ``trainable_pairs`` from it
        and its weights count as non-trainable. Settable at any time; composite
        layers pass it on to their sublayers.
    input_shape : tuple, optional
        Per-sample shape (no batch axis) for the first layer of a model.
    dtype : str or numpy dtype
        Weights are created in this dtype and inputs are cast to it.
    """

    #: Expected input rank including the batch axis (None: any rank >= ``min_ndim``).
    input_ndim: int | None = None
    min_ndim: int = 1

    #: Activations, by name, that this layer can apply last in place of its ``final_activation``,
    #: requested per call with ``forward(x, training, epilogue=name)`` (the execution plan's
    #: fusion). "linear" leaves the activation out (logits for a fused softmax cross-entropy);
    #: "relu" after a layer whose own activation is linear folds a following ReLU into it.
    #: A layer that lists any must accept ``call(x, training, epilogue=None)``.
    fusable_epilogues: tuple[str, ...] = ()
    #: True for a layer whose output channel k can absorb a per-channel affine map
    #: ``y[..., k] * a[k] + b[k]`` into its weights for one inference call,
    #: ``forward(x, affine=(a, b))`` (the plan folds a following BatchNormalization in predict /
    #: evaluate; the layer's own weights are never modified). Such a layer's ``call`` takes ``affine=``.
    accepts_affine: bool = False
    #: True for a layer whose ``call`` takes ``out=``: an array of its output's shape and dtype,
    #: C-contiguous or a channel slice of a wider NHWC tensor, to write the output into and return
    #: (the plan hands a Concatenate's inputs their slices of its output: no copy to concatenate).
    accepts_out: bool = False
    #: True for a layer whose ``backward`` always returns a new array that nothing else holds (not
    #: dy, not a view of its cache or weights): the execution plan then adds the tensor's other
    #: gradients into it in place instead of allocating their sum.
    fresh_input_grad: bool = False

    def __init__(
        self, name=None, trainable=True, input_shape=None, dtype="float32", batch_input_shape=None, **kwargs
    ):
        if kwargs:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        if batch_input_shape is not None and input_shape is None:
            input_shape = tuple(batch_input_shape)[1:]
        self.name = name if name else _unique_name(to_snake_case(type(self).__name__))
        self.dtype = np.dtype("float32" if dtype is None else dtype)
        if self.dtype.kind != "f":
            raise TypeError(f'Layer "{self.name}" needs a floating dtype. Received: dtype={dtype!r}')
        self.sublayers: list[Layer] = []
        self._trainable = bool(trainable)
        self.built = False
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        self._regularizers: dict[str, object] = {}
        self._input_shape_arg = None if input_shape is None else _shape_tuple(input_shape)
        self.input_shape = self._input_shape_arg
        self.output_shape = None
        self.need_input_grad = True
        self._cache = None

    # -- trainable -----------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        self._trainable = bool(value)
        for sub in self.sublayers:
            sub.trainable = value
        bump_weights_generation()

    # -- building ------------------------------------------------------------
    def _registered_name(self) -> str:
        return type(self).__name__

    def _check_rank(self, input_shape) -> None:
        ndim = len(input_shape) + 1
        if self.input_ndim is not None and ndim != self.input_ndim:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                f"ndim={self.input_ndim}, found ndim={ndim}. Full shape received: "
                f"{shape_str(input_shape)}"
            )
        if ndim < self.min_ndim:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                f"min_ndim={self.min_ndim}, found ndim={ndim}. Full shape received: "
                f"{shape_str(input_shape)}"
            )

    def build(self, input_shape) -> None:
        """Create the weights for per-sample ``input_shape`` (no batch axis)."""
        input_shape = _shape_tuple(input_shape)
        self._check_rank(input_shape)
        if not self.built:
            self._build_weights(input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = input_shape
        self.built = True

    def _build_weights(self, input_shape) -> None:
        """Hook: create weights with :meth:`add_weight`."""

    def compute_output_shape(self, input_shape) -> tuple:
        """Per-sample output shape for a per-sample input shape (Keras's rules)."""
        return _shape_tuple(input_shape)

    def add_weight(self, name, shape, initializer, regularizer=None, trainable=True):
        """Create a weight; trainable ones go to ``params`` (with a zero grad), others to ``state``."""
        value = _initializers.get(initializer)(tuple(shape), self.dtype)
        value = np.ascontiguousarray(value, dtype=self.dtype)
        if trainable:
            self.params[name] = value
            self.grads[name] = np.zeros_like(value)
            reg = _regularizers.get(regularizer)
            if reg is not None:
                self._regularizers[name] = reg
        else:
            self.state[name] = value
        bump_weights_generation()
        return value

    # -- forward / backward ----------------------------------------------------
    def _check_input(self, x) -> None:
        """Hook: raise ValueError for an input incompatible with the built layer."""
        if x.ndim != len(self.input_shape) + 1:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                f"ndim={len(self.input_shape) + 1}, found ndim={x.ndim}. Full shape received: "
                f"{x.shape}"
            )

    def _check_channels(self, x) -> None:
        Layer._check_input(self, x)
        c = self.input_shape[-1]
        if c is not None and x.shape[-1] != c:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected axis -1 '
                f"of input shape to have value {c}, but received input with shape {x.shape}"
            )

    # -- fusion declarations (read by fastconv.engine.graph) ------------------------------------
    @property
    def final_activation(self) -> str | None:
        """Name of the element-wise activation this layer applies last as configured ("linear"
        when none), or None when the layer does not declare one."""
        return None

    @property
    def epilogue_name(self) -> str | None:
        """For a layer that is nothing but an element-wise activation, its name ("relu",
        "relu6", "softmax", ...): the plan may fold it into the layer before it, as that layer's
        epilogue, or into a cross-entropy loss. None for every other layer."""
        return None

    def forward(self, x, training=False, epilogue=None, affine=None, out=None):
        """Forward pass on a batch ``x`` (caches what backward needs only when training).

        ``epilogue`` (one of ``fusable_epilogues``, by name) is applied last in place of the
        layer's own activation, for this call only; a training forward caches what it ran, so
        the following ``backward`` takes the matching gradient. ``affine`` ``(a, b)`` (inference
        only, layers with ``accepts_affine``): the output channels become ``y * a + b`` before
        the epilogue, folded into the weights for this call. ``out`` (layers with ``accepts_out``):
        the array the output is written into and returned as.
        """
        if out is not None and not self.accepts_out:
            raise ValueError(f'Layer "{self.name}" cannot write its output into a given array. '
                             f"Received: out of shape {getattr(out, 'shape', None)}")
        if epilogue is not None and epilogue not in self.fusable_epilogues:
            raise ValueError(
                f'Layer "{self.name}" cannot apply the epilogue {epilogue!r}: it can apply '
                f"{list(self.fusable_epilogues)}. Received: epilogue={epilogue!r}"
            )
        if affine is not None and (training or not self.accepts_affine):
            raise ValueError(
                f'Layer "{self.name}" cannot fold an affine map into its weights'
                + (" in a training call" if self.accepts_affine else "")
                + f". Received: affine of {len(affine)} arrays, training={training}"
            )
        x = np.asarray(x, dtype=self.dtype)
        if not self.built:
            self._check_rank(x.shape[1:])
            self.build(x.shape[1:])
        self._check_input(x)
        if not training:
            self._cache = None
        if out is not None:
            return self.call(x, training, epilogue=epilogue, affine=affine, out=out)
        if affine is not None:
            return self.call(x, training, epilogue=epilogue, affine=affine)
        if epilogue is None:
            return self.call(x, training)
        return self.call(x, training, epilogue=epilogue)

    def call(self, x, training=False):
        return x

    def backward(self, dy):
        """Gradient w.r.t. the input of the last ``forward(..., training=True)``.

        Writes ``self.grads`` (overwritten, regularizer gradients included) and
        returns dx, or ``None`` when ``need_input_grad`` is False.
        """
        dy = np.asarray(dy, dtype=self.dtype)
        return self.call_backward(dy)

    def call_backward(self, dy):
        return dy if self.need_input_grad else None

    def _need_cache(self):
        if self._cache is None:
            raise RuntimeError(
                f'Layer "{self.name}": backward() needs a preceding forward(x, training=True).'
            )
        return self._cache

    def _store_grad(self, key, value) -> None:
        """Overwrite ``grads[key]`` in place and add the regularizer's gradient.

        In place, not by replacing the array: ``trainable_pairs()`` hands out live references
        (tests/test_layers_base.py test_trainable_pairs_are_live_references), which user code and
        optimizers may hold across steps.  The copy costs one pass over a weight-sized array.
        """
        g = self.grads[key]
        np.copyto(g, value, casting="same_kind")
        reg = self._regularizers.get(key)
        if reg is not None:
            reg.add_gradient(self.params[key], g)

    def __call__(self, x, training=False, **kwargs):
        """``forward`` on arrays; on symbolic tensors (``fastconv.Input`` and layer calls on it)
        records a graph node and returns a symbolic tensor (``layers/_symbolic.py``)."""
        if _symbolic.is_symbolic(x):
            return _symbolic.symbolic_call(self, x, **kwargs)
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}.__call__ got unexpected keyword arguments {sorted(kwargs)}"
            )
        return self.forward(x, training=training)

    # -- symbolic tensors of the first call (Keras's ``layer.input`` / ``layer.output``) ----------
    def _first_node(self, what):
        nodes = self.__dict__.get("_fc_nodes")
        if not nodes:
            raise AttributeError(
                f"The layer {self.name} has never been called and thus has no defined {what}."
            )
        return nodes[0]

    @property
    def input(self):
        """The symbolic input of the layer's *first* call (a list for a merge layer), as Keras 3:
        later calls (a shared layer) do not change it. AttributeError before any call."""
        node = self._first_node("input")
        if node.is_input:  # an InputLayer: its input is its output
            return node.outputs[0]
        return list(node.inputs) if node.as_list else node.inputs[0]

    @property
    def output(self):
        """The symbolic output of the layer's *first* call (Keras 3's ``layer.output``), e.g. to
        build a feature extractor ``Model(model.inputs, model.get_layer("conv2").output)``.
        AttributeError before any call (a ``Sequential`` calls its layers once it knows its
        input shape)."""
        return self._first_node("output").outputs[0]

    # -- weights ---------------------------------------------------------------
    @property
    def weights(self) -> list:
        """All weight arrays (not copies) in Keras order, sublayers included."""
        out = list(self.params.values()) + list(self.state.values())
        for sub in self.sublayers:
            out.extend(sub.weights)
        return out

    @property
    def trainable_weights(self) -> list:
        if not self.trainable:
            return []
        out = list(self.params.values())
        for sub in self.sublayers:
            out.extend(sub.trainable_weights)
        return out

    @property
    def non_trainable_weights(self) -> list:
        train = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in train]

    def regularization_loss(self) -> float:
        loss = 0.0
        for key, reg in self._regularizers.items():
            loss += reg(self.params[key])
        for sub in self.sublayers:
            loss += sub.regularization_loss()
        return float(loss)

    def trainable_pairs(self) -> list:
        """``[(key, param, grad), ...]`` for this layer and its sublayers; [] when frozen.

        Cached (a training step asks for it several times) until a weight is added, any layer's
        ``trainable`` is set or weights are rebound (:func:`bump_weights_generation`), or the
        layer is renamed."""
        cached = self.__dict__.get("_pairs_cache")
        if cached is not None and cached[0] == _WEIGHTS_GENERATION[0] and cached[1] == self.name:
            return list(cached[2])
        gen = _WEIGHTS_GENERATION[0]
        if not self.trainable:
            pairs = []
        else:
            pairs = [(f"{self.name}/{k}", p, self.grads[k]) for k, p in self.params.items()]
            for sub in self.sublayers:
                pairs.extend((f"{self.name}/{k}", p, g) for k, p, g in sub.trainable_pairs())
        self._pairs_cache = (gen, self.name, pairs)
        return list(pairs)

    def get_weights(self) -> list:
        """Copies of the weights, in Keras's order and shapes."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights) -> None:
        """Load weights (Keras order and shapes); written in place."""
        mine = self.weights
        weights = list(weights)
        if len(weights) != len(mine):
            raise ValueError(
                f'You called `set_weights(weights)` on layer "{self.name}" with a weight list of '
                f"length {len(weights)}, but the layer was expecting {len(mine)} weights."
            )
        arrays = [np.asarray(w) for w in weights]
        for ref, w in zip(mine, arrays):
            if ref.shape != w.shape:
                raise ValueError(
                    f'Layer "{self.name}" weight shape {ref.shape} is not compatible with provided '
                    f"weight shape {w.shape}."
                )
        for ref, w in zip(mine, arrays):
            np.copyto(ref, w, casting="unsafe")

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f'You tried to call `{what}` on layer "{self.name}", but the layer isn\'t built. '
                f"You can build it manually via: `{self.name}.build(input_shape)`."
            )

    def count_params(self) -> int:
        self._require_built("count_params")
        return int(sum(w.size for w in self.weights))

    def count_trainable_params(self) -> int:
        self._require_built("count_trainable_params")
        return int(sum(w.size for w in self.trainable_weights))

    def count_non_trainable_params(self) -> int:
        return self.count_params() - self.count_trainable_params()

    # -- config ------------------------------------------------------------------
    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        if self._input_shape_arg is not None:
            config["input_shape"] = list(self._input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "input_shape" in config and config["input_shape"] is not None:
            config["input_shape"] = tuple(config["input_shape"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _shape_tuple(shape) -> tuple:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(None if s is None else int(s) for s in shape)


def prod_or_none(dims):
    return None if any(d is None for d in dims) else math.prod(dims)
