"""LeakyReLU, PReLU, ELU against Keras 3 and finite differences; Softmax and GlobalMaxPooling2D
(already in fastconv) checked against Keras's numbers.

The reference values were computed offline with Keras 3.15.1 (JAX backend) on the inputs below
and are stored as literals (``x_img()`` is in tests/layercheck.py); the tests do not import Keras.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from layercheck import fd_check, roundtrip, x_img  # tests/layercheck.py

from fastconv import layers as L

X2 = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])


def test_leaky_relu_matches_keras_default_slope_03():
    layer = L.LeakyReLU()
    assert layer.negative_slope == 0.3
    np.testing.assert_allclose(layer(X2), [[-0.6, -0.15, 0.0, 0.5, 3.0]], rtol=1e-6)
    assert roundtrip(L.LeakyReLU(negative_slope=0.1)).negative_slope == 0.1


def test_leaky_relu_accepts_keras_deprecated_alpha_and_rejects_negative():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert L.LeakyReLU(alpha=0.25).negative_slope == 0.25
    assert any("deprecated" in str(m.message) for m in w)
    with pytest.raises(ValueError, match="negative_slope"):
        L.LeakyReLU(negative_slope=-1)


def test_elu_matches_keras():
    layer = L.ELU(alpha=0.5)
    np.testing.assert_allclose(layer(X2), [[-0.432332, -0.196735, 0.0, 0.5, 3.0]], atol=1e-6)
    assert roundtrip(layer).alpha == 0.5


def test_prelu_shared_axes_weights_and_output_match_keras():
    layer = L.PReLU(shared_axes=[1, 2])
    layer.build((4, 5, 3))
    assert [w.shape for w in layer.get_weights()] == [(1, 1, 3)]  # Keras: alpha (1, 1, 3)
    assert np.all(layer.get_weights()[0] == 0)  # alpha_initializer="Zeros"
    layer.set_weights([np.array([[[0.1, -0.2, 0.3]]], np.float32)])
    expect = [[1.4, 2.1, -0.63], [-0.14, 0.14, 0.0], [0.7, 1.4, 2.1], [-0.21, 0.28, -0.21], [0.0, 0.7, 1.4]]
    np.testing.assert_allclose(layer(x_img())[1, 1], expect, atol=1e-6)
    clone = roundtrip(layer)
    assert clone.shared_axes == [1, 2]


def test_prelu_unshared_alpha_has_sample_shape():
    layer = L.PReLU()
    layer.build((4, 5, 3))
    assert layer.count_params() == 60


@pytest.mark.parametrize(
    "factory",
    [
        lambda: L.LeakyReLU(negative_slope=0.2, dtype="float64"),
        lambda: L.ELU(alpha=0.7, dtype="float64"),
        lambda: L.PReLU(alpha_initializer="random_normal", dtype="float64"),
        lambda: L.PReLU(alpha_initializer="random_normal", shared_axes=[1, 2], dtype="float64"),
        lambda: L.PReLU(alpha_initializer="random_normal", shared_axes=2, alpha_regularizer="l2",
                        dtype="float64"),
    ],
)
def test_activation_layers_gradients(factory):
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 2))
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences away from the kink
    fd_check(factory(), x, k=12)


def test_softmax_matches_keras():
    np.testing.assert_allclose(
        L.Softmax()(X2), [[0.005765, 0.025836, 0.042596, 0.07023, 0.855573]], atol=1e-6
    )


def test_global_max_pooling_matches_keras():
    np.testing.assert_allclose(L.GlobalMaxPooling2D()(x_img()), [[2.1] * 3, [2.1] * 3], rtol=1e-6)


def test_activation_layers_save_and_load(tmp_path):
    import fastconv

    model = fastconv.Sequential(
        [
            L.Conv2D(3, 1, input_shape=(4, 5, 3)),
            L.PReLU(shared_axes=[1, 2], alpha_initializer="random_uniform"),
            L.LeakyReLU(0.1),
            L.ELU(0.5),
        ]
    )
    x = x_img()
    y = model.predict(x, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = fastconv.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), y)
