"""Regularization layers (fastconv/layers/regularization.py): SpatialDropout2D and GaussianNoise."""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import roundtrip  # tests/layercheck.py

from fastconv import layers as L


def test_spatial_dropout_drops_whole_channels_scaled():
    layer = L.SpatialDropout2D(0.5, seed=0)
    x = np.ones((8, 3, 4, 16), np.float32)
    np.testing.assert_array_equal(layer(x), x)  # inference: identity
    y = layer(x, training=True)
    per_map = y.reshape(8, 12, 16)
    assert np.all(per_map == per_map[:, :1, :])  # each (sample, channel) map is all kept or all dropped
    assert set(np.unique(y)) == {0.0, 2.0}
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dy), dy * y, rtol=1e-6)  # the same mask and scale
    clone = roundtrip(L.SpatialDropout2D(0.3, seed=5))
    assert (clone.rate, clone.seed) == (0.3, 5)
    a = L.SpatialDropout2D(0.5, seed=1)(x, training=True)
    np.testing.assert_array_equal(L.SpatialDropout2D(0.5, seed=1)(x, training=True), a)
    with pytest.raises(ValueError, match="rate"):
        L.SpatialDropout2D(1.5)


def test_gaussian_noise_training_only_and_passes_gradient():
    layer = L.GaussianNoise(0.5, seed=0)
    x = np.zeros((50, 10, 10, 4), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, training=True)
    assert abs(y.std() - 0.5) < 0.01 and abs(y.mean()) < 0.01
    dy = np.ones_like(y)
    np.testing.assert_array_equal(layer.backward(dy), dy)
    np.testing.assert_array_equal(L.GaussianNoise(0.5, seed=0)(x, training=True), y)
    assert roundtrip(layer).stddev == 0.5
    with pytest.raises(ValueError, match="stddev"):
        L.GaussianNoise(2.0)  # Keras 3 checks 0 <= stddev <= 1
