"""Shape layers: Reshape, ChannelShuffle.

Reshape and ChannelShuffle are views / transposes in NumPy (no arithmetic).
(GlobalMaxPooling2D lives in layers/pooling.py beside GlobalAveragePooling2D.)
"""

from __future__ import annotations

import math

import numpy as np

from fastconv.layers.base import Layer, register_layer, shape_str

__all__ = ["ChannelShuffle", "Reshape"]


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
        # channel i * b + j -> j * a + i, copied as min(a, b) strided slices (NumPy's copy of the
        # transposed view runs element by element over the short inner axes: 2.5-4x slower)
        out = np.empty(x.shape, x.dtype)
        src = x.reshape(-1, a, b)
        dst = out.reshape(-1, b, a)
        if a <= b:
            for i in range(a):
                dst[:, :, i] = src[:, i, :]
        else:
            for j in range(b):
                dst[:, j, :] = src[:, :, j]
        return out

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
