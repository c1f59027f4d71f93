"""LayerNormalization (fastconv/layers/layer_normalization.py): values against Keras, gradients,
config and errors.

LayerNormalization's numbers were computed offline with Keras 3.15.1 (JAX backend) on
``layercheck.x_img()`` with the weights set below, and are stored as literals; the
tests do not import Keras.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import fd_check, roundtrip, x_img  # tests/layercheck.py

from fastconv import layers as L


def test_layer_normalization_matches_keras():
    layer = L.LayerNormalization()
    layer.build((4, 5, 3))
    assert [w.shape for w in layer.get_weights()] == [(3,), (3,)]  # Keras: gamma, beta
    layer.set_weights([np.array([1.5, 0.5, -1.0]), np.array([0.1, 0.2, 0.3])])
    expect = [[-1.734312, 0.2, -0.922875]] * 4 + [[2.195192, -0.244435, 0.807925]]
    np.testing.assert_allclose(layer(x_img())[0, 1], expect, atol=1e-5)


def test_layer_normalization_over_all_axes_matches_keras():
    layer = L.LayerNormalization(axis=[1, 2, 3], epsilon=1e-5, center=False)
    y = layer(x_img())
    assert [w.shape for w in layer.get_weights()] == [(4, 5, 3)]  # Keras: gamma only
    expect = [[1.454387, -1.503688, -1.010676], [-0.517663, -0.024651, 0.468362],
              [0.961374, 1.454387, -1.503688], [-1.010676, -0.517663, -0.024651],
              [0.468362, 0.961374, 1.454387]]  # fmt: skip
    np.testing.assert_allclose(y[1, 2], expect, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,shape",
    [
        ({}, (3, 6)),
        ({}, (2, 3, 2, 4)),
        ({"axis": [1, 3]}, (2, 3, 2, 4)),
        ({"axis": (2, -1), "center": False}, (2, 3, 2, 4)),
        ({"scale": False, "gamma_regularizer": "l2"}, (2, 5)),
        ({"gamma_regularizer": "l2", "beta_regularizer": "l1"}, (2, 2, 2, 3)),
    ],
)
def test_layer_normalization_gradients(kwargs, shape):
    layer = L.LayerNormalization(
        **kwargs, gamma_initializer="random_normal", beta_initializer="random_normal", dtype="float64"
    )
    fd_check(layer, np.random.default_rng(1).standard_normal(shape), k=12)


def test_layer_normalization_config_and_errors():
    layer = L.LayerNormalization(axis=[1, 2], epsilon=1e-5, center=False, gamma_initializer="he_normal")
    clone = roundtrip(layer)
    assert (clone.axis, clone.epsilon, clone.center, clone.scale) == ([1, 2], 1e-5, False, True)
    with pytest.raises(ValueError, match="batch axis"):
        L.LayerNormalization(axis=0).build((3,))
    with pytest.raises(ValueError, match="out of bounds"):
        L.LayerNormalization(axis=4).build((3, 3))
