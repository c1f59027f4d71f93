"""Learning-rate schedules against Keras 3: the values of every schedule at steps 0..12, computed
offline with Keras 3.15.1 (JAX backend, float32) and stored here; plus their config round trip and
how an optimizer reads them (at ``iterations``, before the increment)."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import optimizers
from fastconv.optimizers import schedules as S

CASES = {
    "exp": lambda: S.ExponentialDecay(0.1, 3, 0.5),
    "exp_stair": lambda: S.ExponentialDecay(0.1, 3, 0.5, staircase=True),
    "piecewise": lambda: S.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1]),
    "poly": lambda: S.PolynomialDecay(0.1, 6, end_learning_rate=0.01, power=2.0),
    "poly_cycle": lambda: S.PolynomialDecay(0.1, 4, cycle=True),
    "inverse": lambda: S.InverseTimeDecay(0.1, 2, 0.5),
    "inverse_stair": lambda: S.InverseTimeDecay(0.1, 2, 0.5, staircase=True),
    "cosine": lambda: S.CosineDecay(0.1, 8, alpha=0.2),
    "cosine_warmup": lambda: S.CosineDecay(0.0, 6, warmup_target=0.1, warmup_steps=3),
    "restarts": lambda: S.CosineDecayRestarts(0.1, 3, t_mul=2.0, m_mul=0.5, alpha=0.1),
    "restarts_t1": lambda: S.CosineDecayRestarts(0.1, 3, t_mul=1.0),
}

# Keras 3.15.1: schedule(step) for step = 0..12, rounded to 9 decimals.
KERAS_VALUES = {
    "exp": [0.100000001, 0.079370052, 0.062996052, 0.050000001, 0.039685026, 0.031498026, 0.025, 0.019842515, 0.015749013, 0.0125, 0.009921257, 0.007874507, 0.00625],
    "exp_stair": [0.100000001, 0.100000001, 0.100000001, 0.050000001, 0.050000001, 0.050000001, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.0125, 0.00625],
    "piecewise": [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.100000001, 0.100000001, 0.100000001, 0.100000001, 0.100000001, 0.100000001, 0.100000001],
    "poly": [0.100000001, 0.072499998, 0.049999997, 0.032499999, 0.02, 0.0125, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01],
    "poly_cycle": [0.100000001, 0.075025, 0.050050002, 0.025075, 0.0001, 0.037562501, 0.025075, 0.0125875, 0.0001, 0.025075, 0.016750002, 0.008424998, 0.0001],
    "inverse": [0.100000001, 0.079999998, 0.06666667, 0.057142857, 0.050000001, 0.044444446, 0.039999999, 0.036363635, 0.033333335, 0.030769231, 0.028571429, 0.026666667, 0.025],
    "inverse_stair": [0.100000001, 0.100000001, 0.06666667, 0.06666667, 0.050000001, 0.050000001, 0.039999999, 0.039999999, 0.033333335, 0.033333335, 0.028571429, 0.028571429, 0.025],
    "cosine": [0.100000001, 0.09695518, 0.088284276, 0.075307332, 0.059999999, 0.044692662, 0.031715732, 0.023044815, 0.020000001, 0.020000001, 0.020000001, 0.020000001, 0.020000001],
    "cosine_warmup": [0.0, 0.033333335, 0.06666667, 0.100000001, 0.093301274, 0.075000003, 0.049999997, 0.024999997, 0.006698731, 0.0, 0.0, 0.0, 0.0],
    "restarts": [0.100000001, 0.077500001, 0.032499995, 0.055000003, 0.051985573, 0.043749999, 0.032499999, 0.021250004, 0.013014427, 0.032499999, 0.032116666, 0.030992785, 0.029204953],
    "restarts_t1": [0.100000001, 0.075000003, 0.024999997, 0.100000001, 0.074999996, 0.025000006, 0.100000001, 0.07500001, 0.024999989, 0.100000001, 0.07500001, 0.024999989, 0.100000001],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_match_keras(name):
    s = CASES[name]()
    got = [s(step) for step in range(13)]
    np.testing.assert_allclose(got, KERAS_VALUES[name], rtol=1e-6, atol=1e-8)
    assert all(isinstance(v, float) for v in got)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_round_trip(name):
    s = CASES[name]()
    back = S.deserialize(S.serialize(s))
    assert type(back) is type(s) and back.get_config() == s.get_config()
    assert [back(i) for i in range(13)] == [s(i) for i in range(13)]


def test_keras_argument_checks():
    with pytest.raises(ValueError, match="decay_steps"):
        S.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="1 less than the length of values"):
        S.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="Unknown learning rate schedule"):
        S.deserialize({"class_name": "Nope", "config": {}})


def test_optimizer_reads_the_schedule_at_its_step():
    opt = optimizers.SGD(S.ExponentialDecay(0.1, 1, 0.5))
    assert opt.learning_rate == pytest.approx(0.1)  # step 0: the first update uses the initial rate
    w = np.zeros(1, np.float32)
    seen = []
    for _ in range(3):
        seen.append(opt.learning_rate)
        opt.apply([("w", w, np.ones(1, np.float32))])
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert w[0] == pytest.approx(-0.175)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.3
    assert optimizers.schedules is S  # keras.optimizers.schedules spelling


def test_schedule_survives_optimizer_serialization():
    opt = optimizers.Adam(S.CosineDecay(0.01, 100, warmup_target=0.02, warmup_steps=10))
    cfg = optimizers.serialize(opt)
    assert cfg["config"]["learning_rate"]["class_name"] == "CosineDecay"
    back = optimizers.deserialize(cfg)
    assert isinstance(back._learning_rate, S.CosineDecay)
    assert back.get_config() == opt.get_config()
