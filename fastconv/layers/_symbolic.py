"""Symbolic tensors and the graph node: what a layer call records instead of computing.

This module is the bottom of the layer package (it imports nothing from fastconv), so that
``Layer.__call__`` (``layers/base.py``) can recognise a :class:`KerasTensor` and record a
:class:`Node` directly; the graph model classes (``fastconv.engine.functional``) read the
nodes back, from above.

Design notes
------------
* Calling a layer on a :class:`KerasTensor` (or a list of them, for merge
  layers) builds the layer for that shape and records a :class:`Node`
  ``(layer, input tensors, output tensor)``; nothing is computed. Shape errors
  (a merge of incompatible shapes, a conv on the wrong channel count) therefore
  raise while the graph is written, before any ``fit``. Calling the same layer
  instance again adds a second node that shares its weights.
* A node's ``serial`` is its creation order, which is always a topological
  order (a node is created after its inputs exist); the graph model sorts by it.
* A node without input tensors is an input node (as in Keras 3): the one node
  of an ``InputLayer``. Every layer call has at least one input tensor.
* Each layer lists its nodes in ``layer._fc_nodes`` (creation order), so a
  tensor can be named Keras's way, ``(layer, node_index, tensor_index)``.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["KerasTensor", "Node", "is_symbolic", "symbolic_call"]

_NODE_SERIAL = itertools.count()


def _as_shape(shape) -> tuple:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(None if s is None else int(s) for s in shape)


class KerasTensor:
    """A symbolic tensor: a shape and dtype, and the node that produces it.

    ``shape`` includes the batch axis as ``None`` (Keras); ``sample_shape`` does not.
    """

    __slots__ = ("dtype", "name", "node", "sample_shape")

    def __init__(self, sample_shape, dtype="float32", node=None, name=None):
        self.sample_shape = _as_shape(sample_shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.name = name

    @property
    def shape(self) -> tuple:
        return (None, *self.sample_shape)

    @property
    def ndim(self) -> int:
        return len(self.sample_shape) + 1

    @property
    def _keras_history(self):
        """``(layer, node_index, tensor_index)`` as Keras names it."""
        node = self.node
        return node.layer, node.layer._fc_nodes.index(node), 0

    def __array__(self, *args, **kwargs):
        raise TypeError(
            f"{self!r} is symbolic: it has no values. Build a `Model(inputs, outputs)` and call it "
            "(or `predict`) on arrays."
        )

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype.name}, name={self.name}>"


class Node:
    """One call of ``layer`` on symbolic ``inputs`` (a list of tensors), giving ``outputs`` (one tensor).

    ``as_list`` records whether the layer received a list (merge layers) or one tensor.
    """

    __slots__ = ("as_list", "inputs", "layer", "outputs", "serial")

    def __init__(self, layer, inputs, as_list, output_shape):
        self.layer = layer
        self.inputs = list(inputs)
        self.as_list = bool(as_list)
        self.serial = next(_NODE_SERIAL)
        nodes = layer_nodes(layer)
        name = layer.name if not nodes else f"{layer.name}_{len(nodes)}"
        self.outputs = [KerasTensor(output_shape, layer.dtype, node=self, name=name)]
        nodes.append(self)

    @property
    def is_input(self) -> bool:
        """True for the node of an ``InputLayer``: the only kind of node with no input tensor."""
        return not self.inputs

    def __repr__(self):
        return f"<Node {self.layer.name}({', '.join(t.name for t in self.inputs)})>"


def layer_nodes(layer) -> list:
    """The nodes of ``layer`` in creation order (created empty on first use)."""
    nodes = layer.__dict__.get("_fc_nodes")
    if nodes is None:
        nodes = layer._fc_nodes = []
    return nodes


def is_symbolic(x) -> bool:
    """True for a :class:`KerasTensor` or a list / tuple holding one."""
    if isinstance(x, KerasTensor):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(t, KerasTensor) for t in x)


def symbolic_call(layer, x, **kwargs) -> KerasTensor:
    """``layer(x)`` for symbolic ``x``: build the layer for ``x``'s shape and record a node."""
    as_list = isinstance(x, (list, tuple))
    tensors = list(x) if as_list else [x]
    if as_list and len(tensors) == 1 and not getattr(layer, "min_inputs", 0):
        as_list = False  # Keras unwraps a one-element list for single-input layers
    if not all(isinstance(t, KerasTensor) for t in tensors):
        raise TypeError(
            f'Layer "{layer.name}" was called on a mix of symbolic tensors and arrays: '
            f"{[type(t).__name__ for t in tensors]}. Wrap constant arrays in an Input."
        )
    shapes = [t.sample_shape for t in tensors]
    arg = shapes if as_list else shapes[0]
    if not layer.built:
        layer.build(arg)
    elif not as_list and all(d is not None for d in arg):
        # a shared layer: its weights must fit the new input (channels, features)
        layer._check_input(np.empty((0, *arg), dtype=layer.dtype))
    out_shape = layer.compute_output_shape(arg)
    return Node(layer, tensors, as_list, out_shape).outputs[0]
