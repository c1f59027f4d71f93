"""Lambda (fastconv/layers/lambda_layer.py): forward, output shape, arguments and gradient, training
with and without a gradient, saving module-level functions by import path, refusing lambdas."""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import fd_check, roundtrip  # tests/layercheck.py

import fastconv
from fastconv import layers as L


# Module-level functions: a Lambda saves its function by import path.
def scale_and_shift(x, scale=2.0, shift=0.0):
    return x * scale + shift


def scale_and_shift_grad(dy, x, scale=2.0, shift=0.0):
    return dy * scale


def channel_sum(x):
    return x.sum(axis=-1, keepdims=True)


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
