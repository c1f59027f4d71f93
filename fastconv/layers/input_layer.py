"""``Input`` and ``InputLayer``: where a graph of layer calls starts (Keras's ``layers.Input``).

An ``InputLayer`` has no weights; creating it records its one input node
(:class:`fastconv.layers._symbolic.Node` with no input tensors), whose output
tensor is what :func:`Input` returns. The graph model classes live in
``fastconv.engine.functional``.
"""

from __future__ import annotations

import numpy as np

from fastconv.layers._symbolic import Node, is_symbolic
from fastconv.layers.base import Layer, _shape_tuple, register_layer

__all__ = ["Input", "InputLayer"]


@register_layer
class InputLayer(Layer):
    """The layer behind :func:`Input`: no weights, output = the model's input."""

    def __init__(self, shape=None, batch_size=None, dtype="float32", batch_shape=None, name=None, **kwargs):
        if batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None:
            raise ValueError("An Input needs a `shape` (per sample, without the batch axis).")
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        kwargs.pop("input_shape", None)
        super().__init__(name=name, dtype=dtype, **kwargs)
        shape = _shape_tuple(shape)
        if any(d is not None and d < 1 for d in shape):
            raise ValueError(f"Input sizes must be positive or None. Received: shape={shape}")
        self.batch_size = batch_size
        self.input_shape = self.output_shape = shape
        self.built = True
        Node(self, [], False, shape)

    def __call__(self, x, training=False, **kwargs):
        if is_symbolic(x):
            raise TypeError(
                f'InputLayer "{self.name}" cannot be called; use `Input(shape)` to start a graph.'
            )
        return super().__call__(x, training=training, **kwargs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            "name": self.name,
            "batch_shape": [self.batch_size, *self.input_shape],
            "dtype": self.dtype.name,
        }


def Input(shape=None, batch_size=None, name=None, dtype="float32", batch_shape=None):
    """A symbolic model input (Keras ``Input``).

    Parameters
    ----------
    shape : tuple
        Per-sample shape, e.g. ``(28, 28, 1)``; sizes may be ``None``.
    name : str, optional
        Layer name (default ``input_layer``, ``input_layer_1``, ...).
    dtype : str
        Informational; each layer casts its input to its own dtype.

    Returns
    -------
    KerasTensor
    """
    return InputLayer(
        shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name
    ).output
