"""Regularizers (fastconv/regularizers.py): loss and gradient values, the penalty a layer and a block
add, its gradient through fd_check, config round trip.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import F64, fd_check, rand  # tests/layercheck.py

from fastconv import regularizers
from fastconv import layers as L


def test_regularizer_loss_and_gradient():
    r = regularizers.l2(0.01)
    w = np.array([1.0, -2.0])
    assert r(w) == pytest.approx(0.05)
    np.testing.assert_allclose(r.gradient(w), [0.02, -0.04])
    r = regularizers.l1_l2(0.1, 0.2)
    assert r(w) == pytest.approx(0.1 * 3 + 0.2 * 5)
    np.testing.assert_allclose(r.gradient(w), [0.1 + 0.4, -0.1 - 0.8])
    dense = L.Dense(2, kernel_regularizer=regularizers.l2(0.5), dtype=F64)
    dense.build((3,))
    k = dense.params["kernel"]
    assert dense.regularization_loss() == pytest.approx(0.5 * np.sum(k**2))
    block = L.ResidualBlock([dense, L.Dense(3, kernel_regularizer="l2", dtype=F64)])
    block.build((3,))
    assert block.regularization_loss() > dense.regularization_loss()
    mlp = L.ResidualBlock([L.Dense(5, activation="relu")], projection_batchnorm=True, dtype=F64)
    mlp.build((3,))
    assert mlp.output_shape == (5,) and mlp.count_params() == 20 + 15 + 20
    fd_check(mlp, rand(4, 3))
    # Zero upstream gradient: the grad is the regularizer's gradient alone.
    dense.forward(np.ones((1, 3)), training=True)
    dense.backward(np.zeros((1, 2)))
    np.testing.assert_allclose(dense.grads["kernel"], 2 * 0.5 * k)
    assert regularizers.deserialize(regularizers.serialize(r)).get_config() == r.get_config()
