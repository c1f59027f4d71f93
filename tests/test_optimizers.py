"""Optimizers: steps against the Keras formulas computed by hand, in-place updates, per-key slots,
frozen keys left alone, config round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastconv import optimizers


def test_sgd_plain():
    w = np.array([1.0, -2.0])
    ref = w
    optimizers.SGD(learning_rate=0.1).apply([("w", w, np.array([0.5, -1.0]))])
    np.testing.assert_allclose(w, [0.95, -1.9])
    assert w is ref  # updated in place


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_three_steps(nesterov):
    lr, mom = 0.1, 0.9
    opt = optimizers.SGD(learning_rate=lr, momentum=mom, nesterov=nesterov)
    w = np.array([1.0])
    grads = [np.array([0.5]), np.array([-0.2]), np.array([0.3])]
    v, w_ref = 0.0, 1.0
    for g in grads:
        opt.apply([("w", w, g)])
        v = mom * v - lr * g[0]
        w_ref = w_ref + (mom * v - lr * g[0] if nesterov else v)
        assert w[0] == pytest.approx(w_ref, rel=1e-12)


def test_adam_matches_keras_formula():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    opt = optimizers.Adam(learning_rate=lr)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (b1, b2, eps)
    w = np.array([0.5, -0.3])
    ref = w.copy()
    m = np.zeros(2)
    v = np.zeros(2)
    rng = np.random.default_rng(0)
    for t in range(1, 6):
        g = rng.normal(size=2)
        opt.apply([("w", w, g.copy())])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        ref = ref - alpha * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(w, ref, rtol=1e-12)
    assert opt.iterations == 5


def test_defaults_and_names():
    assert optimizers.get("sgd").learning_rate == 0.01
    assert optimizers.get("adam").learning_rate == 0.001
    a = optimizers.Adam(0.1)
    assert optimizers.get(a) is a
    assert type(optimizers.get("rmsprop")).__name__ == "RMSprop"  # Keras's default optimizer
    with pytest.raises(ValueError, match="Could not interpret optimizer"):
        optimizers.get("rmsprop2")
    with pytest.raises(ValueError):
        optimizers.SGD(momentum=1.5)


def test_slots_are_per_key_and_missing_keys_untouched():
    opt = optimizers.SGD(learning_rate=0.1, momentum=0.9)
    a, b = np.array([1.0]), np.array([1.0])
    opt.apply([("a", a, np.array([1.0])), ("b", b, np.array([1.0]))])
    opt.apply([("a", a, np.array([1.0]))])  # b frozen this step: no pair, no change
    assert b[0] == pytest.approx(0.9)
    assert a[0] == pytest.approx(1.0 - 0.1 - (0.9 * 0.1 + 0.1))


def test_float32_stays_float32():
    w = np.ones(3, np.float32)
    optimizers.Adam().apply([("w", w, np.ones(3, np.float32))])
    assert w.dtype == np.float32


def test_config_round_trip():
    opt = optimizers.SGD(learning_rate=0.05, momentum=0.8, nesterov=True)
    back = optimizers.deserialize(optimizers.serialize(opt))
    assert isinstance(back, optimizers.SGD)
    assert back.get_config() == opt.get_config()
