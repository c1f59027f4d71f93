"""Noise layers active in training only: SpatialDropout2D and GaussianNoise (Keras 3 semantics).

Both are the identity at inference. Each layer owns an ``np.random.Generator`` made from
``seed`` (``None``: derived from ``fastconv.initializers``'s module generator, so
``initializers.set_seed`` makes a run reproducible); ``reseed(seed)`` restarts it.
"""

from __future__ import annotations

import numpy as np

from fastconv import distributed as _dist
from fastconv import initializers as _initializers
from fastconv.layers.base import Layer, check_data_format, register_layer

__all__ = ["GaussianNoise", "SpatialDropout2D"]


class _Seeded(Layer):
    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._rng = _initializers.make_rng(seed)

    def reseed(self, seed) -> None:
        """Restart the layer's generator (replays the same noise)."""
        self._rng = np.random.default_rng(seed)


@register_layer
class SpatialDropout2D(_Seeded):
    """Dropout of whole feature maps (Keras ``SpatialDropout2D``): in training each channel of each
    sample is zeroed with probability ``rate`` and the kept ones are scaled by ``1 / (1 - rate)``;
    identity at inference. ``(N, H, W, C)``, the mask is ``(N, 1, 1, C)``."""

    input_ndim = 4

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        check_data_format(data_format)
        if not isinstance(rate, (int, float, np.integer, np.floating)) or not 0 <= rate <= 1:
            raise ValueError(
                f"Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                f"Received: rate={rate}"
            )
        self.rate = float(rate)

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            if training:
                self._cache = (None,)
            return x
        n, _, _, c = x.shape
        if self.rate >= 1.0:
            scale = np.zeros((n, 1, 1, c), x.dtype)
        else:
            keep = _dist.draw_rows(n, lambda k: self._rng.random((k, 1, 1, c))) >= self.rate
            scale = (keep / (1.0 - self.rate)).astype(x.dtype)
        self._cache = (scale,)
        return x * scale

    def call_backward(self, dy):
        (scale,) = self._need_cache()
        if not self.need_input_grad:
            return None
        return dy if scale is None else dy * scale

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "data_format": "channels_last", "seed": self.seed})
        return config


@register_layer
class GaussianNoise(_Seeded):
    """Add zero-mean Gaussian noise of standard deviation ``stddev`` in training (Keras
    ``GaussianNoise``; ``0 <= stddev <= 1`` as Keras checks); identity at inference. The gradient
    passes through unchanged."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(stddev, (int, float, np.integer, np.floating)) or not 0 <= stddev <= 1:
            raise ValueError(
                "Invalid value received for argument `stddev`. Expected a float value between 0 and 1. "
                f"Received: stddev={stddev}"
            )
        self.stddev = float(stddev)

    def call(self, x, training=False):
        if training:
            self._cache = True
            if self.stddev > 0:
                rdt = np.float32 if x.dtype == np.float32 else np.float64
                noise = _dist.draw_rows(x.shape[0], lambda k: self._rng.standard_normal((k, *x.shape[1:]), dtype=rdt))
                noise *= self.stddev
                return x + noise.astype(x.dtype, copy=False)
        return x

    def call_backward(self, dy):
        self._need_cache()
        return dy if self.need_input_grad else None

    def get_config(self):
        config = super().get_config()
        config.update({"stddev": self.stddev, "seed": self.seed})
        return config
