"""Core layers (fastconv/layers/core.py): Dense, Flatten, Dropout, Activation, ReLU, Softmax.
Finite-difference gradients (float64), Keras shapes and parameter counts, Dropout's masks,
weights and config round trips.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import (  # tests/layercheck.py
    F64,
    check_config_round_trip_gives_identical_outputs,
    check_get_set_weights_round_trip_keras_order,
    check_output_shapes_and_param_counts,
    fd_check,
    rand,
)

from fastconv import activations, regularizers
from fastconv import layers as L


# ---------------------------------------------------------------------------
# Gradient checks (float64 finite differences)
# ---------------------------------------------------------------------------


GRAD_CASES = [
    # Core
    ("flatten", lambda: L.Flatten(dtype=F64), (2, 3, 2, 2)),
    ("dense", lambda: L.Dense(4, dtype=F64), (3, 5)),
    ("dense_3d", lambda: L.Dense(3, activation="tanh", dtype=F64), (2, 4, 5)),
    (
        "dense_softmax_l1l2",
        lambda: L.Dense(
            4, activation="softmax", dtype=F64, kernel_regularizer=regularizers.l1_l2(0.01, 0.02)
        ),
        (3, 5),
    ),
    ("relu_layer", lambda: L.ReLU(dtype=F64), (2, 3, 3, 2)),
    ("relu_params", lambda: L.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.2, dtype=F64), (3, 10)),
    ("softmax_layer", lambda: L.Softmax(dtype=F64), (3, 6)),
]


@pytest.mark.parametrize("name,factory,shape", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_layer_gradients(name, factory, shape):
    layer = factory()
    fd_check(layer, rand(*shape))


@pytest.mark.parametrize("act", sorted(activations.ACTIVATIONS))
def test_activation_layer_gradients(act):
    fd_check(L.Activation(act, dtype=F64), rand(3, 5), k=15)


@pytest.mark.parametrize("act", ["swish", "gelu", "gelu_tanh"])
def test_activation_layer_keeps_x_instead_of_a_copy(act):
    """Activations whose derivative reads x: the layer keeps x (no (2, ...) buffer with a copy of it)
    and gives the activation's own forward and backward bit for bit."""
    x = rand(4, 5, 3, 6).astype(np.float32)
    dy = rand(4, 5, 3, 6).astype(np.float32)
    layer = L.Activation(act)
    y = layer.forward(x, training=True)
    assert y.base is None or y.base.shape != (2, *x.shape)
    fn = activations.get(act)
    want_y = fn.forward(x)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(layer.backward(dy), fn.backward(dy, want_y))
    np.testing.assert_array_equal(layer.forward(x), want_y)   # inference


def test_dropout_gradient_with_fixed_mask():
    layer = L.Dropout(0.4, seed=3, dtype=F64)
    fd_check(layer, rand(4, 6), before=lambda lay: lay.reseed(7), k=24)
    spatial = L.Dropout(0.5, noise_shape=(None, 1, 1, None), dtype=F64)
    dx = fd_check(spatial, rand(2, 3, 3, 4), before=lambda lay: lay.reseed(1))
    # One mask value per (sample, channel), shared over the pixels.
    zero = dx == 0
    assert (zero == zero[:, :1, :1, :]).all()


# ---------------------------------------------------------------------------
# Output shapes and parameter counts (hand-computed Keras numbers)
# ---------------------------------------------------------------------------


SHAPE_CASES = [
    (lambda: L.Flatten(), (7, 7, 64), (3136,), 0),
    (lambda: L.Dense(128), (3136,), (128,), 401536),
    (lambda: L.Dense(10, activation="softmax"), (128,), (10,), 1290),
    (lambda: L.Dropout(0.5), (128,), (128,), 0),
    (lambda: L.Activation("relu"), (5, 5, 3), (5, 5, 3), 0),
]


@pytest.mark.parametrize("case", range(len(SHAPE_CASES)))
def test_output_shapes_and_param_counts(case):
    check_output_shapes_and_param_counts(*SHAPE_CASES[case])


# ---------------------------------------------------------------------------
# Behaviour details
# ---------------------------------------------------------------------------


def test_dropout_is_inverted_and_training_only():
    x = np.ones((200, 50), np.float32)
    d = L.Dropout(0.25, seed=0)
    assert d(x, training=False) is not None
    np.testing.assert_array_equal(d(x), x)
    y = d(x, training=True)
    assert y.dtype == np.float32
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    d2 = L.Dropout(0.25, seed=0)
    np.testing.assert_array_equal(d2(x, training=True), y)  # seedable
    np.testing.assert_array_equal(L.Dropout(1.0)(x, training=True), 0)


# ---------------------------------------------------------------------------
# Weights, config
# ---------------------------------------------------------------------------


WEIGHT_CASES = [
    (lambda: L.Dense(7), (3,), [(3, 7), (7,)]),
]


@pytest.mark.parametrize("case", range(len(WEIGHT_CASES)))
def test_get_set_weights_round_trip_keras_order(case):
    check_get_set_weights_round_trip_keras_order(*WEIGHT_CASES[case])


CONFIG_CASES = [
    (lambda: L.Flatten(), (3, 3, 2)),
    (lambda: L.Dense(4, activation="softmax", use_bias=False, kernel_initializer="lecun_normal"), (5,)),
    (lambda: L.Dropout(0.3, noise_shape=[None, 1], seed=2), (5,)),
    (lambda: L.Activation("selu"), (5,)),
    (lambda: L.ReLU(max_value=6.0), (5,)),
    (lambda: L.Softmax(), (5,)),
]


@pytest.mark.parametrize("case", range(len(CONFIG_CASES)))
def test_config_round_trip_gives_identical_outputs(case):
    check_config_round_trip_gives_identical_outputs(*CONFIG_CASES[case])
