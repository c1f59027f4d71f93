"""Losses: values against hand formulas, float64 finite-difference gradients (incl. the fused
softmax + cross-entropy on logits), label forms, numerical stability; metrics and to_categorical."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numeric_grad  # tests/gradcheck.py

from fastconv import losses, metrics
from fastconv.utils import to_categorical


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_sparse_ce_value_matches_formula():
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert losses.get("sparse_categorical_crossentropy")(np.array([0, 1]), p) == pytest.approx(
        -(np.log(0.9) + np.log(0.8)) / 2
    )


@pytest.mark.parametrize("form", ["int", "col", "onehot"])
@pytest.mark.parametrize("name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_crossentropy_label_forms_agree(form, name):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4))
    labels = np.array([0, 3, 1, 2, 2, 0])
    y = {"int": labels, "col": labels[:, None].astype(np.uint8), "onehot": to_categorical(labels, 4)}[form]
    loss = losses.get(name)
    ref = -np.log(_softmax(z)[np.arange(6), labels]).mean()
    assert loss(y, _softmax(z)) == pytest.approx(ref, rel=1e-6)
    val, g = loss.value_and_gradient_from_logits(y, z)
    assert val == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(g, (_softmax(z) - to_categorical(labels, 4)) / 6, atol=1e-15)


@pytest.mark.parametrize("name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_fused_gradient_finite_differences(name):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(5, 7)) * 3
    y = rng.integers(0, 7, 5)
    loss = losses.get(name)
    _, g = loss.value_and_gradient_from_logits(y, z)
    fd = numeric_grad(lambda: loss.value_and_gradient_from_logits(y, z, need_grad=False)[0], z)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_fused_per_pixel_and_soft_targets():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(2, 3, 3, 4))
    y = rng.integers(0, 4, (2, 3, 3))
    loss = losses.get("sparse_categorical_crossentropy")
    _, g = loss.value_and_gradient_from_logits(y, z)
    fd = numeric_grad(lambda: loss.value_and_gradient_from_logits(y, z, need_grad=False)[0], z)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    t = _softmax(rng.normal(size=(4, 5)))  # soft targets
    z2 = rng.normal(size=(4, 5))
    cce = losses.get("categorical_crossentropy")
    _, g2 = cce.value_and_gradient_from_logits(t, z2)
    fd2 = numeric_grad(lambda: cce.value_and_gradient_from_logits(t, z2, need_grad=False)[0], z2)
    np.testing.assert_allclose(g2, fd2, rtol=1e-6, atol=1e-9)


def test_probability_gradient_finite_differences():
    rng = np.random.default_rng(3)
    p = _softmax(rng.normal(size=(4, 3)))
    y = np.array([0, 2, 1, 1])
    loss = losses.get("sparse_categorical_crossentropy")
    _, g = loss.value_and_gradient(y, p)
    np.testing.assert_allclose(g, numeric_grad(lambda: loss(y, p), p), rtol=1e-6, atol=1e-9)


def test_fused_is_stable_for_huge_logits():
    z = np.array([[1000.0, -1000.0, 0.0], [-5e4, 5e4, 1.0]], dtype=np.float32)
    val, g = losses.get("sparse_categorical_crossentropy").value_and_gradient_from_logits(np.array([1, 0]), z)
    assert np.isfinite(val) and np.all(np.isfinite(g))
    assert val == pytest.approx((2000.0 + 1e5) / 2, rel=1e-5)
    np.testing.assert_allclose(g, np.array([[0.5, -0.5, 0], [-0.5, 0.5, 0]]), atol=1e-6)
    assert g.dtype == np.float32


def test_probabilities_are_clipped_like_keras():
    p = np.array([[0.0, 1.0]])
    val = losses.get("sparse_categorical_crossentropy")(np.array([0]), p)
    assert val == pytest.approx(-np.log(1e-7), rel=1e-6)


def test_mse_value_and_gradient():
    rng = np.random.default_rng(4)
    p = rng.normal(size=(3, 4))
    t = rng.normal(size=(3, 4))
    loss = losses.get("mse")
    assert loss(t, p) == pytest.approx(((p - t) ** 2).mean())
    _, g = loss.value_and_gradient(t, p)
    np.testing.assert_allclose(g, numeric_grad(lambda: loss(t, p), p), rtol=1e-6, atol=1e-9)
    assert losses.get("mean_squared_error").name == "mean_squared_error"


def test_label_errors():
    loss = losses.get("sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        loss(np.array([0, 3]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="y_true"):
        loss(np.zeros((2, 2)), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="same shape"):
        losses.get("mse")(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="Could not interpret loss"):
        losses.get("hinge")


def test_accuracy_counts():
    p = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert metrics.accuracy_counts(np.array([1, 0, 0]), p) == (2, 3)
    assert metrics.accuracy_counts(np.array([[1], [0], [0]]), p) == (2, 3)
    assert metrics.accuracy_counts(to_categorical([1, 0, 0], 2), p) == (2, 3)
    assert metrics.accuracy_counts(np.array([1, 0]), np.array([[0.7], [0.6]])) == (1, 2)


def test_to_categorical():
    out = to_categorical(np.array([[2], [0]]), 3)
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0]])
    assert out.dtype == np.float32
    assert to_categorical([1, 3]).shape == (2, 4)
    with pytest.raises(ValueError):
        to_categorical([0, 5], 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 10), (3, 5, 6, 2), (4, 1)])
@pytest.mark.parametrize("ignore_class", [None, 1])
def test_sparse_crossentropy_with_the_compiled_softmax_matches_numpys(dtype, shape, ignore_class):
    """The trainer hands the compiled softmax to the fused loss: the same values and gradients as the
    NumPy form, logits far apart (a probability below the smallest normal number) included."""
    from fastconv.ops.elementwise import softmax
    rng = np.random.default_rng(5)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    z.reshape(-1, shape[-1])[0, 0] = 200.0   # the other classes of this position underflow
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    labels.reshape(-1)[0] = shape[-1] - 1 if shape[-1] > 1 else 0
    loss = losses.SparseCategoricalCrossentropy(ignore_class=ignore_class)
    z0 = z.copy()
    want_v, want_g = loss.value_and_gradient_from_logits(labels, z)
    got_v, got_g = loss.value_and_gradient_from_logits(labels, z, softmax=softmax)
    np.testing.assert_array_equal(z, z0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.isfinite(got_v) and abs(got_v - want_v) <= tol * max(1.0, abs(want_v))
    assert got_g.dtype == dtype and got_g.shape == z.shape
    np.testing.assert_allclose(got_g, want_g, rtol=tol, atol=tol)
    v_only, g_none = loss.value_and_gradient_from_logits(labels, z, need_grad=False, softmax=softmax)
    assert g_none is None and abs(v_only - want_v) <= tol * max(1.0, abs(want_v))
