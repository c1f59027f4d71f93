"""Rescaling and Normalization against Keras 3 (numbers computed offline with Keras 3.15.1, JAX
backend, stored as literals) and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import fd_check, roundtrip, x_img  # tests/layercheck.py

from fastconv import layers as L


def test_rescaling_matches_keras_and_round_trips():
    layer = L.Rescaling(1 / 127.5, offset=-1)
    np.testing.assert_allclose(layer(np.array([[0.0, 127.5, 255.0]])), [[-1.0, 0.0, 1.0]], atol=1e-6)
    assert layer(np.array([[0, 255]], np.uint8)).dtype == np.float32
    clone = roundtrip(layer)
    assert (clone.scale, clone.offset) == (1 / 127.5, -1.0)


def test_rescaling_per_channel_scale_and_gradient():
    layer = L.Rescaling([1.0, 2.0, -0.5], offset=[0.0, 1.0, 2.0], dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 3))
    np.testing.assert_allclose(layer(x), x * [1.0, 2.0, -0.5] + [0.0, 1.0, 2.0])
    fd_check(layer, x)
    assert roundtrip(layer).scale == [1.0, 2.0, -0.5]


def test_normalization_adapt_matches_keras_weights_and_output():
    layer = L.Normalization()
    layer.adapt(x_img())
    mean, var, count = layer.get_weights()
    # Keras: weights mean, variance, count, in that order
    np.testing.assert_allclose(mean, [0.0175, -0.0175, -0.0525], atol=1e-6)
    np.testing.assert_allclose(var, [1.996444, 1.996444, 1.944994], atol=1e-6)
    assert count.shape == () and count == 40  # Keras leaves its count at 0; fastconv stores the count
    expect = [[-1.498631, -0.978445, -0.464281], [-0.012385, 0.507801, 1.041495],
              [1.473861, -1.473861, -0.966206], [-0.507801, 0.012385, 0.539569],
              [0.978445, 1.498631, -1.468131]]  # fmt: skip
    np.testing.assert_allclose(layer(x_img())[0, 0], expect, atol=1e-5)


def test_normalization_axis_none_and_two_kept_axes_match_keras():
    layer = L.Normalization(axis=None)
    layer.adapt(x_img())
    mean, var, _ = layer.get_weights()
    np.testing.assert_allclose([mean, var], [-0.0175, 1.98011], atol=1e-6)
    layer = L.Normalization(axis=(1, 3))
    layer.adapt(x_img())
    mean, var, _ = layer.get_weights()
    np.testing.assert_allclose(
        mean, [[0.07, -0.21, 0.0], [-0.21, 0.0, 0.21], [0.0, 0.21, -0.07], [0.21, -0.07, -0.35]], atol=1e-6
    )
    np.testing.assert_allclose(
        var,
        [[2.1021, 1.9649, 1.862], [1.9649, 1.862, 1.9649], [1.862, 1.9649, 2.1021], [1.9649, 2.1021, 1.6905]],
        atol=1e-5,
    )


def test_normalization_adapt_in_batches_equals_one_array():
    x = np.random.default_rng(1).standard_normal((37, 3, 2, 4)) * 3 + 1
    one, many = L.Normalization(), L.Normalization()
    one.adapt(x)
    many.adapt([x[:10], x[10:11], x[11:]])
    for a, b in zip(one.get_weights(), many.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_normalization_given_mean_variance_and_invert_match_keras():
    layer = L.Normalization(mean=2.0, variance=4.0, invert=True)
    np.testing.assert_allclose(layer(np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])), [[-2.0, 1.0, 2.0, 3.0, 8.0]])
    assert layer.get_weights() == []  # Keras: no weights when mean and variance are given
    clone = roundtrip(L.Normalization(axis=-1, mean=[1.0, 2.0], variance=[4.0, 9.0]))
    np.testing.assert_allclose(clone(np.array([[3.0, 5.0]])), [[1.0, 1.0]])
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        L.Normalization(mean=1.0)


@pytest.mark.parametrize("invert", [False, True])
def test_normalization_gradient(invert):
    layer = L.Normalization(invert=invert, dtype="float64")
    x = np.random.default_rng(2).standard_normal((3, 2, 2, 3))
    layer.adapt(x * 2 + 1)
    fd_check(layer, x)


def test_normalization_save_and_load(tmp_path):
    import fastconv

    norm = L.Normalization(input_shape=(4, 5, 3))
    norm.adapt(x_img())
    model = fastconv.Sequential([norm, L.Conv2D(2, 3)])
    y = model.predict(x_img(), verbose=0)
    model.save(tmp_path / "n.npz")
    loaded = fastconv.load_model(tmp_path / "n.npz")
    np.testing.assert_array_equal(loaded.predict(x_img(), verbose=0), y)
    assert loaded.layers[0].get_weights()[2] == 40
