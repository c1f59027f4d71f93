"""BatchNormalization's backward with a fused ReLU / ReLU6 whose mask is recomputed from x.

The kernels' backward sums and dx take the forward's scale and shift (``fa``, ``fb``) instead of
its output y and mask dy with ``(x - mean) * fa + fb`` computed as the forward computed it: checked
against the y-masked path (the sums bit for bit) on every SIMD level, odd channel counts (the masked vector
tail of float32 AVX2 / AVX-512, the scalar tails elsewhere), inputs placed exactly on the kinks
(pre-activation 0 and 6), NaN-filled outputs, 1 and 2 threads; the layer's gradients against the
NumPy reference and by finite differences in float64.
"""

import numpy as np
import pytest
from gradcheck import numeric_grad

from fastconv import _dispatch
from fastconv import layers as L
from fastconv import reference as ref
from fastconv._kernels import norm as _kn
from fastconv.ops import norm as _norm_ops

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
CHANNELS = [1, 5, 8, 12, 16, 20, 24, 33, 44]


def _nc(rows, cols, reduce):
    from fastconv.ops._plan import norm_plan

    return norm_plan(rows, cols, reduce, 1).nchunks


def _data(m, c, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, c)) * 3).astype(dtype)
    mean = rng.standard_normal(c).astype(dtype)
    fa = (rng.standard_normal(c) + 0.5).astype(dtype)
    fb = rng.standard_normal(c).astype(dtype)
    x[::5] = mean  # pre-activation exactly fb: put 0 and 6 there below
    fb[::3] = 0
    fb[1::3] = 6
    dy = rng.standard_normal((m, c)).astype(dtype)
    return x, dy, mean, fa, fb


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("threads", [1, 2])
def test_mask_from_x_equals_mask_from_y_bit_for_bit(level, dtype, c, threads):
    isa = _dispatch.LEVELS[level]
    m = 61
    x, dy, mean, fa, fb = _data(m, c, dtype, c)
    rng = np.random.default_rng(c + 1)
    gb, gc = (rng.standard_normal(c).astype(dtype) for _ in range(2))
    for act in (1, 2):
        y = np.full_like(x, np.nan)
        _kn.bn_affine(x, mean, fa, fb, y, act, _nc(m, c, False), isa, threads)
        assert (y == 0).any() and (act == 1 or c < 2 or (y == 6).any())  # the kinks are hit
        s = {}
        for key, yy, a, b in (("y", y, None, None), ("x", None, fa, fb)):
            s1, s2 = np.full(c, np.nan), np.full(c, np.nan)
            _kn.bn_dsums(dy, x, yy, act, mean, s1, s2, _nc(m, c, True), isa, threads, a, b)
            dx = np.full_like(x, np.nan)
            _kn.bn_dx(dy, x, yy, act, mean, fa, gb, gc, dx, _nc(m, c, False), isa, threads, a, b)
            s[key] = (s1, s2, dx)
        # the same mask: the sums bit for bit; dx to rounding (the compiler may contract its
        # multiply-adds differently in the two loops), far below a flipped lane's |dy * fa|
        np.testing.assert_array_equal(s["x"][0], s["y"][0])
        np.testing.assert_array_equal(s["x"][1], s["y"][1])
        np.testing.assert_allclose(s["x"][2], s["y"][2], rtol=1e-6, atol=1e-6)
        g = np.where({1: y > 0, 2: (y > 0) & (y < 6)}[act], dy, 0).astype(np.float64)
        np.testing.assert_allclose(s["x"][0], g.sum(0), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(s["x"][2], g * fa + (x - mean.astype(np.float64)) * gb + gc, rtol=0, atol=1e-5)


def test_kernels_need_y_or_the_forward_map():
    x = np.ones((4, 3), np.float32)
    s1, s2, v = np.empty(3), np.empty(3), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="y or"):
        _kn.bn_dsums(x, x, None, 1, v, s1, s2, 1, 0, 1)
    with pytest.raises(ValueError, match="y or"):
        _kn.bn_dx(x, x, None, 1, v, v, v, v, np.empty_like(x), 1, 0, 1)
    with pytest.raises(ValueError, match="y or"):  # no x: nothing to recompute from
        _kn.bn_dx(x, None, None, 1, None, v, None, None, np.empty_like(x), 1, 0, 1, v, v)


@pytest.mark.parametrize("act", ["relu", "relu6"])
@pytest.mark.parametrize("kw", [{}, {"center": False}, {"scale": False}])
def test_ops_grad_from_x_equals_from_y(act, kw):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((3, 5, 4, 19)) * 4).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma = None if kw.get("scale") is False else (rng.standard_normal(19) * 2).astype(np.float32)
    beta = None if kw.get("center") is False else (rng.standard_normal(19) * 3).astype(np.float32)
    y, mean, var = _norm_ops.batch_norm_train(x, gamma, beta, activation=act)
    want = _norm_ops.batch_norm_train_grad(dy, x, gamma, mean=mean, var=var, y=y, activation=act)
    got = _norm_ops._train_grad(dy, x, gamma, 1e-3, mean, var, None, act, True, beta=beta, mask_from_x=True)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("act, fn", [("relu", lambda t: np.maximum(t, 0)), ("relu6", lambda t: np.clip(t, 0, 6))])
def test_layer_backward_matches_reference(level, act, fn):
    _dispatch.set_simd(level)
    try:
        rng = np.random.default_rng(12)
        shape = (2, 5, 3, 21)
        x = rng.standard_normal(shape) * 3 + 1
        dy = rng.standard_normal(shape)
        bn = L.BatchNormalization(dtype="float32")
        bn.build(shape[1:])
        bn.params["gamma"][...] = rng.standard_normal(21) * 2
        bn.params["beta"][...] = rng.standard_normal(21) * 2
        y = bn.forward(x.astype(np.float32), training=True, epilogue=act)
        dx = bn.backward(dy.astype(np.float32))
        g, b = bn.params["gamma"].astype(np.float64), bn.params["beta"].astype(np.float64)
        z, _, _ = ref.batch_norm_train(x.astype(np.float32).astype(np.float64), g, b, epsilon=bn.epsilon)
        mask = (z > 0) if act == "relu" else (z > 0) & (z < 6)
        dz = np.where(mask, dy.astype(np.float32), 0)
        dx_ref, dg_ref, db_ref = ref.batch_norm_train_grad(dz, x.astype(np.float32).astype(np.float64), g,
                                                           epsilon=bn.epsilon)
        np.testing.assert_allclose(y, fn(z), rtol=0, atol=2e-5)
        np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=2e-4)
        np.testing.assert_allclose(bn.grads["gamma"], dg_ref, rtol=1e-4, atol=2e-4)
        np.testing.assert_allclose(bn.grads["beta"], db_ref, rtol=1e-4, atol=2e-4)
    finally:
        _dispatch.set_simd(None)


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_layer_gradients_by_finite_differences_float64(act):
    rng = np.random.default_rng(13)
    shape = (3, 4, 3, 7)
    x = rng.standard_normal(shape) * 3
    w = rng.standard_normal(shape)
    bn = L.BatchNormalization(dtype="float64")
    bn.build(shape[1:])
    bn.params["gamma"][...] = rng.standard_normal(7) + 2
    bn.params["beta"][...] = rng.standard_normal(7) + 1

    def loss(xx=None):
        return float(np.sum(bn.forward(x if xx is None else xx, training=True, epilogue=act) * w))

    loss()
    dx = bn.backward(w)
    grads = {k: g.copy() for k, g in bn.grads.items()}
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    for name in bn.params:
        np.testing.assert_allclose(grads[name], numeric_grad(loss, bn.params[name]), rtol=1e-5, atol=1e-7)
