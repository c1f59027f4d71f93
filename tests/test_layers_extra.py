"""SpatialDropout2D, GaussianNoise, LayerNormalization, Cropping2D and Lambda.

LayerNormalization's numbers were computed offline with Keras 3.15.1 (JAX backend) on
``test_layers_activation.x_img()`` with the weights set below, and are stored as literals; the
tests do not import Keras.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import fd_check  # tests/layercheck.py
from test_layers_activation import roundtrip, x_img

import fastconv
from fastconv import layers as L


# Module-level functions: a Lambda saves its function by import path.
def scale_and_shift(x, scale=2.0, shift=0.0):
    return x * scale + shift


def scale_and_shift_grad(dy, x, scale=2.0, shift=0.0):
    return dy * scale


def channel_sum(x):
    return x.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------
# SpatialDropout2D, GaussianNoise
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# LayerNormalization
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Cropping2D
# ---------------------------------------------------------------------------


def test_cropping2d_forms_shapes_and_gradient():
    x = x_img()
    assert L.Cropping2D(((1, 0), (2, 1)))(x).shape == (2, 3, 2, 3)  # Keras's shape for this cropping
    np.testing.assert_array_equal(L.Cropping2D(((1, 0), (2, 1)))(x), x[:, 1:, 2:4])
    np.testing.assert_array_equal(L.Cropping2D(1)(x), x[:, 1:3, 1:4])
    np.testing.assert_array_equal(L.Cropping2D((1, 2))(x), x[:, 1:3, 2:3])
    np.testing.assert_array_equal(L.Cropping2D()(x), x)
    fd_check(L.Cropping2D(((1, 0), (2, 1)), dtype="float64"), x, k=20)
    assert roundtrip(L.Cropping2D(((1, 0), (2, 1)))).cropping == ((1, 0), (2, 1))
    with pytest.raises(ValueError, match="at least one row"):
        L.Cropping2D((2, 0)).build((4, 5, 3))
    with pytest.raises(ValueError, match="cropping"):
        L.Cropping2D((1, 2, 3))


# ---------------------------------------------------------------------------
# Lambda
# ---------------------------------------------------------------------------


def test_lambda_forward_shape_arguments_and_gradient():
    layer = L.Lambda(scale_and_shift, arguments={"scale": 3.0, "shift": 1.0}, gradient=scale_and_shift_grad,
                     dtype="float64")  # fmt: skip
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 2))
    np.testing.assert_allclose(layer(x), 3 * x + 1)
    fd_check(layer, x)
    summed = L.Lambda(channel_sum)
    summed.build((4, 5, 3))
    assert summed.output_shape == (4, 5, 1)  # inferred by running the function on one sample
    fixed = L.Lambda(channel_sum, output_shape=(4, 5, 1))
    fixed.build((None, None, 3))
    assert fixed.output_shape == (4, 5, 1)


def test_lambda_without_gradient_trains_first_but_refuses_elsewhere():
    model = fastconv.Sequential([L.Lambda(scale_and_shift, input_shape=(4,)), L.Dense(2)])
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 4)), np.zeros((4, 2)), epochs=1, verbose=0)  # first layer: no input gradient
    model = fastconv.Sequential([L.Dense(4, input_shape=(4,)), L.Lambda(scale_and_shift), L.Dense(2)])
    model.compile("sgd", "mse")
    with pytest.raises(NotImplementedError, match="gradient="):
        model.fit(np.ones((4, 4)), np.zeros((4, 2)), epochs=1, verbose=0)


def test_lambda_saves_module_functions_by_import_path(tmp_path):
    layer = L.Lambda(scale_and_shift, arguments={"scale": 0.5}, gradient=scale_and_shift_grad)
    config = layer.get_config()
    assert config["function"] == {"class_name": "function", "module": scale_and_shift.__module__,
                                  "function_name": "scale_and_shift"}  # fmt: skip
    clone = roundtrip(layer)
    assert clone.function is scale_and_shift and clone.gradient is scale_and_shift_grad
    model = fastconv.Sequential([L.Lambda(channel_sum, input_shape=(3, 3, 2)), L.Flatten(), L.Dense(2)])
    x = np.random.default_rng(1).standard_normal((2, 3, 3, 2)).astype(np.float32)
    y = model.predict(x, verbose=0)
    model.save(tmp_path / "lam.npz")
    np.testing.assert_array_equal(fastconv.load_model(tmp_path / "lam.npz").predict(x, verbose=0), y)


def test_lambda_refuses_to_save_lambdas_and_closures(tmp_path):
    offset = 2.0
    for fn in (lambda x: x + 1, lambda x: x + offset):
        layer = L.Lambda(fn)
        np.testing.assert_allclose(layer(np.zeros((1, 2))), np.full((1, 2), fn(0.0)))  # usable in memory
        with pytest.raises(ValueError, match="module level"):
            layer.get_config()
    model = fastconv.Sequential([L.Lambda(lambda x: x * 2, input_shape=(3,)), L.Dense(1)])
    with pytest.raises(ValueError, match="import path"):
        model.save(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()
    with pytest.raises(ValueError, match="mask"):
        L.Lambda(channel_sum, mask=np.ones(2))
