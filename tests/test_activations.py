"""Activations (fastconv/activations.py): every backward against finite differences, numerical
stability and dtype at extreme inputs, Keras's wording for an unknown name.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import EPS, rand  # tests/layercheck.py

from fastconv import activations
from fastconv import layers as L


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_functions_backward(name):
    act = activations.get(name)
    x = rand(4, 5)
    y = act.forward(x.copy())
    dy = rand(4, 5, seed=9)
    dx = act.backward(dy, y)
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += EPS
        xm[idx] -= EPS
        num[idx] = np.sum((act.forward(xp) - act.forward(xm)) * dy) / (2 * EPS)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-7)


def test_activations_are_stable_and_keep_dtype():
    x = np.array([[-1000.0, 0.0, 1000.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = activations.sigmoid.forward(x)
        sm = activations.softmax.forward(x)
        activations.selu.forward(x)
        activations.elu.forward(x)
    np.testing.assert_allclose(s, [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(sm, [[0.0, 0.0, 1.0]])
    assert s.dtype == sm.dtype == np.float32
    for name in activations.ACTIVATIONS:
        act = activations.get(name)
        y = act.forward(x.copy())
        assert y.dtype == np.float32, name
        assert act.backward(np.ones_like(y), y).dtype == np.float32, name
    np.testing.assert_allclose(activations.softmax.forward(rand(3, 4)).sum(-1), 1.0)


def test_unknown_activation_is_keras_worded():
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        L.Conv2D(2, 3, activation="swishy")
    with pytest.raises(ValueError, match="Could not interpret activation"):
        L.Activation("nope")
