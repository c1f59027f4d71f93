"""The BatchNormalization layer (fastconv/layers/normalization.py): finite-difference gradients
(float64, trainable and frozen), shapes and trainable / non-trainable counts, training and
inference statistics, weights and config round trips. Its kernels and their modes are tested in
tests/test_norm.py, its ops in tests/test_ops_norm.py.
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

from fastconv import layers as L


# ---------------------------------------------------------------------------
# Gradient checks (float64 finite differences)
# ---------------------------------------------------------------------------


GRAD_CASES = [
    # Normalisation
    ("bn_nhwc", lambda: L.BatchNormalization(dtype=F64), (3, 3, 2, 4)),
    ("bn_2d", lambda: L.BatchNormalization(dtype=F64, gamma_regularizer="l2"), (5, 3)),
    ("bn_no_scale", lambda: L.BatchNormalization(scale=False, dtype=F64), (4, 3)),
]


@pytest.mark.parametrize("name,factory,shape", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_layer_gradients(name, factory, shape):
    layer = factory()
    fd_check(layer, rand(*shape))


def test_bn_frozen_gradient_uses_moving_statistics():
    layer = L.BatchNormalization(dtype=F64)
    layer.build((4,))
    layer.set_weights([rand(4, seed=2), rand(4, seed=3), rand(4, seed=4), 1 + rand(4, seed=5) ** 2])
    layer.trainable = False
    x = rand(5, 4)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, layer.forward(x, training=False))
    fd_check(layer, x)
    assert layer.trainable_pairs() == []


# ---------------------------------------------------------------------------
# Output shapes and parameter counts (hand-computed Keras numbers)
# ---------------------------------------------------------------------------


SHAPE_CASES = [
    (lambda: L.BatchNormalization(), (5, 5, 64), (5, 5, 64), 256),
    (lambda: L.BatchNormalization(), (100,), (100,), 400),
]


@pytest.mark.parametrize("case", range(len(SHAPE_CASES)))
def test_output_shapes_and_param_counts(case):
    check_output_shapes_and_param_counts(*SHAPE_CASES[case])


def test_bn_trainable_and_non_trainable_counts():
    bn = L.BatchNormalization()
    bn.build((5, 5, 64))
    assert (bn.count_params(), bn.count_trainable_params(), bn.count_non_trainable_params()) == (
        256,
        128,
        128,
    )
    assert [w.shape for w in bn.get_weights()] == [(64,)] * 4


# ---------------------------------------------------------------------------
# Behaviour details
# ---------------------------------------------------------------------------


def test_batchnorm_training_and_inference_statistics():
    bn = L.BatchNormalization(dtype=F64)
    x = 3.0 + 2.0 * rand(8, 4, 4, 3)
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-10)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, rtol=1e-3)
    _, _, mm, mv = bn.get_weights()
    np.testing.assert_allclose(mm, 0.01 * x.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(mv, 0.99 + 0.01 * x.var(axis=(0, 1, 2)))
    y_inf = bn.forward(x, training=False)
    np.testing.assert_allclose(y_inf, (x - mm) / np.sqrt(mv + 1e-3))
    assert bn.momentum == 0.99 and bn.epsilon == 1e-3


# ---------------------------------------------------------------------------
# Weights, config
# ---------------------------------------------------------------------------


WEIGHT_CASES = [
    (lambda: L.BatchNormalization(), (4, 4, 6), [(6,)] * 4),
    (lambda: L.BatchNormalization(center=False), (6,), [(6,)] * 3),
]


@pytest.mark.parametrize("case", range(len(WEIGHT_CASES)))
def test_get_set_weights_round_trip_keras_order(case):
    check_get_set_weights_round_trip_keras_order(*WEIGHT_CASES[case])


CONFIG_CASES = [
    (lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False), (3, 3, 2)),
]


@pytest.mark.parametrize("case", range(len(CONFIG_CASES)))
def test_config_round_trip_gives_identical_outputs(case):
    check_config_round_trip_gives_identical_outputs(*CONFIG_CASES[case])
