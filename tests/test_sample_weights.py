"""Sample and class weights against Keras 3: evaluate and fit of a small softmax classifier and a
linear regressor with ``sample_weight``, ``class_weight`` (sparse and one-hot targets),
``validation_data=(x, y, sw)`` and ``validation_split``. The expected numbers were computed offline
with Keras 3.15.1 (JAX backend, float32, SGD, shuffle=False) from the same data and initial weights
and are stored here; the tests do not import Keras."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import layers as L
from fastconv import optimizers

x = (np.sin(np.arange(40).reshape(10, 4) * 0.37) * 2).astype("float32")
y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 1])
sw = np.array([1.0, 0.5, 2.0, 0.0, 1.5, 1.0, 0.25, 3.0, 1.0, 0.5], "float32")
W = (np.cos(np.arange(12).reshape(4, 3) * 0.9) * 0.5).astype("float32")
b = np.array([0.1, -0.2, 0.05], "float32")
yoh = np.eye(3, dtype="float32")[y]
yr = (np.cos(np.arange(20).reshape(10, 2) * 0.5)).astype("float32")

# Keras 3.15.1 results (rounded to 7 decimals).
K = {
    "eval_sw": [1.2530751, 0.3],
    "eval_plain": [1.2077714, 0.3],
    "fit_cw_loss": [1.927569],
    "fit_cw_weights": [[[0.3233865, 0.4082956, -0.0344782], [-0.6031768, -0.3362365, -0.0663999], [0.2121345, 0.6115462, 0.2977706], [-0.1668151, -0.359581, -0.4955367]], [0.0190535, 0.0050441, -0.0740975]],
    "fit_sw_onehot_loss": [1.3689011, 1.1387154],
    "fit_sw_onehot_weights": [[[0.3140301, 0.2536697, 0.1295042], [-0.5336816, -0.5336478, 0.0615162], [0.3510757, 0.398068, 0.3723076], [0.0227669, -0.5602326, -0.4844671]], [0.0962089, -0.1367011, -0.0095078]],
    "fit_cw_onehot_loss": [2.4387348],
    "fit_cw_onehot_weights": [[[0.2970775, 0.4180226, -0.0178961], [-0.6256799, -0.3151886, -0.0649447], [0.1964833, 0.6410662, 0.283902], [-0.1734964, -0.3255842, -0.5228522]], [-0.0132336, 0.0434437, -0.0802102]],
    "val3_val_loss": [1.2727736],
    "split_loss": [0.9818527],
    "split_val_loss": [1.8862123],
    "mse_eval_sw": 0.6565827,
    "mse_fit_loss": [0.75431],
    "mse_fit_weights": [[[0.3718803, 0.2277715], [-0.5874622, -0.5029935], [0.1929432, 0.481126], [-0.218315, -0.4360125]], [0.1151374, -0.1567316]],
    "lrs_history_lr": [0.1, 0.05, 0.025, 0.0125],
    "lrs_keys": ["learning_rate", "loss"],
    "plateau_history_lr": [0.1, 0.1, 0.05, 0.025, 0.02, 0.02],
    "plain_keys": ["loss"],
}


def clf(loss="sparse_categorical_crossentropy", metrics=None):
    m = fc.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
    m.set_weights([W, b])
    m.compile(optimizer=optimizers.SGD(0.1), loss=loss, metrics=metrics)
    return m


def reg():
    m = fc.Sequential([L.Dense(2, input_shape=(4,))])
    m.set_weights([W[:, :2], b[:2]])
    m.compile(optimizer=optimizers.SGD(0.05), loss="mse")
    return m


def _close(got, expected, rtol=2e-5, atol=2e-6):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(expected), rtol=rtol, atol=atol)


def _weights_close(model, expected):
    for w, e in zip(model.get_weights(), expected):
        _close(w, e)


def test_evaluate_with_sample_weight_matches_keras():
    m = clf(metrics=["accuracy"])
    _close(m.evaluate(x, y, batch_size=4, sample_weight=sw, verbose=0), K["eval_sw"])
    _close(m.evaluate(x, y, batch_size=4, verbose=0), K["eval_plain"])
    # Keras's metrics= are not weighted: the accuracy is the same with and without weights.
    assert K["eval_sw"][1] == K["eval_plain"][1]


def test_fit_class_weight_sparse_matches_keras():
    m = clf()
    h = m.fit(x, y, batch_size=4, epochs=1, shuffle=False, class_weight={0: 1.0, 1: 2.5, 2: 0.5}, verbose=0)
    _close(h.history["loss"], K["fit_cw_loss"])
    _weights_close(m, K["fit_cw_weights"])


def test_fit_sample_weight_one_hot_two_epochs_matches_keras():
    m = clf("categorical_crossentropy")
    h = m.fit(x, yoh, batch_size=4, epochs=2, shuffle=False, sample_weight=sw, verbose=0)
    _close(h.history["loss"], K["fit_sw_onehot_loss"])
    _weights_close(m, K["fit_sw_onehot_weights"])


def test_fit_class_weight_one_hot_missing_classes_weigh_one():
    m = clf("categorical_crossentropy")
    h = m.fit(x, yoh, batch_size=4, epochs=1, shuffle=False, class_weight={1: 3.0}, verbose=0)
    _close(h.history["loss"], K["fit_cw_onehot_loss"])
    _weights_close(m, K["fit_cw_onehot_weights"])


def test_validation_data_with_sample_weights_matches_keras():
    m = clf()
    h = m.fit(x[:6], y[:6], batch_size=4, epochs=1, shuffle=False, validation_data=(x[6:], y[6:], sw[6:]),
              verbose=0)
    _close(h.history["val_loss"], K["val3_val_loss"])


def test_validation_split_splits_the_sample_weights_like_keras():
    m = clf()
    h = m.fit(x, y, batch_size=4, epochs=1, shuffle=False, sample_weight=sw, validation_split=0.3, verbose=0)
    _close(h.history["loss"], K["split_loss"])
    _close(h.history["val_loss"], K["split_val_loss"])


def test_mse_with_sample_weight_matches_keras():
    m = reg()
    _close(m.evaluate(x, yr, batch_size=3, sample_weight=sw, verbose=0), K["mse_eval_sw"])
    h = m.fit(x, yr, batch_size=3, epochs=1, shuffle=False, sample_weight=sw, verbose=0)
    _close(h.history["loss"], K["mse_fit_loss"])
    _weights_close(m, K["mse_fit_weights"])


def test_class_and_sample_weight_together_multiply():
    # Keras 3 refuses the pair; fastconv multiplies them (tf.keras 2's rule), which equals passing the product.
    cw = {0: 1.0, 1: 2.5, 2: 0.5}
    a, c = clf(), clf()
    a.fit(x, y, batch_size=4, shuffle=False, sample_weight=sw, class_weight=cw, verbose=0)
    prod = sw * np.array([cw[int(k)] for k in y], "float32")
    c.fit(x, y, batch_size=4, shuffle=False, sample_weight=prod, verbose=0)
    for wa, wc in zip(a.get_weights(), c.get_weights()):
        np.testing.assert_allclose(wa, wc, rtol=1e-6, atol=1e-7)


def test_weights_one_equal_no_weights_and_train_on_batch():
    a, c = clf(), clf()
    la = a.train_on_batch(x, y, sample_weight=np.ones(10))
    lc = c.train_on_batch(x, y)
    assert la == pytest.approx(lc, rel=1e-6)
    assert clf().test_on_batch(x, y, sample_weight=sw) == pytest.approx(
        float(np.sum(sw * _per_sample_ce(x, y)) / 10), rel=1e-5
    )


def _per_sample_ce(xx, yy):
    z = xx.astype(np.float64) @ W + b
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(yy)), yy]


def test_generator_batches_may_carry_sample_weights():
    def gen():
        for s in range(0, 10, 4):
            yield x[s : s + 4], y[s : s + 4], sw[s : s + 4]

    m = clf()
    h = m.fit(gen(), epochs=1, verbose=0)
    c = clf()
    c.fit(x, y, batch_size=4, shuffle=False, sample_weight=sw, verbose=0)
    for wa, wc in zip(m.get_weights(), c.get_weights()):
        np.testing.assert_allclose(wa, wc, rtol=1e-6, atol=1e-7)
    assert len(h.history["loss"]) == 1


def test_bad_weights_are_refused_with_the_argument_named():
    m = clf()
    with pytest.raises(ValueError, match=r"sample_weight must hold one weight per sample"):
        m.fit(x, y, sample_weight=np.ones(9), verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        m.evaluate(x, y, sample_weight=np.ones((10, 2)), verbose=0)
    with pytest.raises(TypeError, match="class_weight must be a dict"):
        m.fit(x, y, class_weight=[1.0, 2.0], verbose=0)
