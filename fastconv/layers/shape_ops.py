"""Shape layers: Reshape, GlobalMaxPooling2D, ChannelShuffle.

Reshape and ChannelShuffle are views / transposes in NumPy (no arithmetic);
GlobalMaxPooling2D is one ``ops.max_pool2d`` whose window is the whole image,
so its gradient (ties to the first maximum, row-major) is ``ops.max_pool2d_grad``.
"""

from __future__ import annotations

import math

import numpy as np

from fastconv import ops
from fastconv.layers.base import Layer, check_data_format, register_layer, shape_str

__all__ = ["ChannelShuffle", "GlobalMaxPooling2D", "Reshape"]


@register_layer
class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (Keras ``Reshape``; one entry may be -1).

    Examples
    --------
    >>> r = Reshape((1, 1, 8)); r.build((8,)); r.output_shape
    (1, 1, 8)
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target = tuple(int(d) for d in target_shape)
        except (TypeError, ValueError):
            raise ValueError(
                f"`target_shape` must be a tuple of integers. Received: target_shape={target_shape!r}"
            ) from None
        if sum(d == -1 for d in target) > 1 or any(d == 0 or d < -1 for d in target):
            raise ValueError(
                "`target_shape` must hold positive sizes and at most one -1. "
                f"Received: target_shape={target_shape!r}"
            )
        self.target_shape = target

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        target = list(self.target_shape)
        if any(d is None for d in input_shape):
            return tuple(None if d == -1 else d for d in target)
        total = math.prod(input_shape)
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if total % known:
                self._size_error(input_shape)
            target[target.index(-1)] = total // known
        elif known != total:
            self._size_error(input_shape)
        return tuple(target)

    def _size_error(self, input_shape):
        raise ValueError(
            f'Layer "{self.name}": the total size of the new array must be unchanged. Received: '
            f"input_shape={shape_str(input_shape)}, target_shape={self.target_shape}"
        )

    def _check_input(self, x):
        self.compute_output_shape(x.shape[1:])

    def call(self, x, training=False):
        if training:
            self._cache = x.shape
        return x.reshape(x.shape[0], *self.target_shape)

    def call_backward(self, dy):
        shape = self._need_cache()
        return dy.reshape(shape) if self.need_input_grad else None

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config


@register_layer
class GlobalMaxPooling2D(Layer):
    """Maximum over H and W (Keras ``GlobalMaxPooling2D``): ``(N, H, W, C)`` -> ``(N, C)``
    (or ``(N, 1, 1, C)`` with ``keepdims=True``). Gradient ties go to the first maximum."""

    input_ndim = 4

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        return (1, 1, input_shape[2]) if self.keepdims else (input_shape[2],)

    def _check_input(self, x):
        self._check_channels(x)

    def call(self, x, training=False):
        if training:
            self._cache = x
        y = ops.max_pool2d(x, x.shape[1:3])
        return y if self.keepdims else y.reshape(y.shape[0], y.shape[3])

    def call_backward(self, dy):
        x = self._need_cache()
        if not self.need_input_grad:
            return None
        dy = dy.reshape(dy.shape[0], 1, 1, dy.shape[-1])
        return ops.max_pool2d_grad(dy, x, x.shape[1:3])

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": "channels_last", "keepdims": self.keepdims})
        return config


@register_layer
class ChannelShuffle(Layer):
    """ShuffleNet's channel shuffle: ``(N, H, W, C)`` seen as ``(N, H, W, groups, C // groups)``,
    transposed to ``(..., C // groups, groups)`` and flattened back, so the next group
    convolution sees channels from every group."""

    input_ndim = 4

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"`groups` must be a positive integer. Received: groups={groups!r}")
        self.groups = int(groups)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        c = input_shape[-1]
        if c is not None and c % self.groups:
            raise ValueError(
                f'Layer "{self.name}": the number of channels must be divisible by groups. '
                f"Received groups={self.groups} and input shape {shape_str(input_shape)}"
            )
        return tuple(input_shape)

    def _check_input(self, x):
        self._check_channels(x)

    @staticmethod
    def _shuffle(x, a, b):
        n, h, w, c = x.shape
        return np.ascontiguousarray(x.reshape(n, h, w, a, b).swapaxes(3, 4)).reshape(n, h, w, c)

    def call(self, x, training=False):
        if training:
            self._cache = True
        return self._shuffle(x, self.groups, x.shape[-1] // self.groups)

    def call_backward(self, dy):
        self._need_cache()
        if not self.need_input_grad:
            return None
        return self._shuffle(dy, dy.shape[-1] // self.groups, self.groups)

    def get_config(self):
        config = super().get_config()
        config["groups"] = self.groups
        return config
