"""The residual sum and its activation in one compiled pass (ops.elementwise.residual_add,
src/elementwise_impl.h fc_ew_add_span), as Add (with a fused relu / relu6) and ResidualBlock run it:
equal bit for bit to NumPy's sum followed by the separate activation pass, every activation, both
float dtypes, every SIMD level, 1 and 2 threads, odd sizes (vector tails), out aliasing an input or
pre-filled with NaN, inputs never modified, bad arguments named, and offsets past 2**31."""

import sys

import numpy as np
import pytest
from gradcheck import numeric_grad
from large import INT32_MAX, tail_mapped

from fastconv import _dispatch, models
from fastconv import layers as L
from fastconv.ops import elementwise as ew

NAMES = sorted(ew.CODES)
LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
ALPHA = {"elu": 0.7, "leaky_relu": 0.15}


@pytest.fixture(params=LEVELS)
def level(request):
    _dispatch.set_simd(request.param)
    yield request.param
    _dispatch.set_simd(None)


@pytest.fixture(params=[1, 2])
def threads(request):
    old = _dispatch._state["threads"]
    _dispatch.set_num_threads(request.param)
    yield request.param
    _dispatch._state["threads"] = old


def _pair(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 4).astype(dtype)
    r = (rng.standard_normal(n) * 4).astype(dtype)
    if n >= 8:  # specials: infinities, NaN, signed zeros, sums that overflow
        x[:8] = [np.inf, -np.inf, np.nan, -0.0, 0.0, 3e38, -1e30, 5.0]
        r[:8] = [1.0, np.inf, 2.0, -0.0, -0.0, 3e38, 1e30, -5.0]
    return x, r


def _separate(x, r, name):
    """NumPy's sum, then the activation's own pass (the path the fused one replaces)."""
    return ew.activation(x + r, name, alpha=ALPHA.get(name))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 16, 17, 255, 4099, 70001])
def test_equals_sum_then_activation(level, threads, dtype, n):
    for k, name in enumerate(NAMES):
        x, r = _pair(n, dtype, seed=k)
        x0, r0 = x.copy(), r.copy()
        with np.errstate(all="ignore"):
            want = _separate(x, r, name)
            got = ew.residual_add(x, r, name, alpha=ALPHA.get(name))
        assert got.dtype == dtype and got.shape == x.shape
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=name)  # (a NaN's sign bit may differ)
        np.testing.assert_array_equal(got[~nan].view(np.uint8), want[~nan].view(np.uint8), err_msg=name)  # bit for bit
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(r, r0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_aliasing_and_nan_prefilled(level, threads, dtype):
    x, r = _pair(1003, dtype, seed=5)
    shape = (17, 59)
    x, r = x.reshape(shape), r.reshape(shape)
    with np.errstate(all="ignore"):
        want = _separate(x, r, "relu6")
        out = np.full(shape, np.nan, dtype)
        assert ew.residual_add(x, r, "relu6", out=out) is out
        np.testing.assert_array_equal(out, want)
        xa = x.copy()
        assert ew.residual_add(xa, r, "relu6", out=xa) is xa  # y in x's buffer
        np.testing.assert_array_equal(xa, want)
        ra = r.copy()
        assert ew.residual_add(x, ra, "relu6", out=ra) is ra  # y in r's buffer
        np.testing.assert_array_equal(ra, want)


def test_bad_arguments_are_named():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"residual_add: x and r must have the same shape.*\(2, 3\).*\(3, 2\)"):
        ew.residual_add(x, np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="residual_add: activation must be one of"):
        ew.residual_add(x, x, "nope")
    with pytest.raises(ValueError, match="residual_add: out must be a writeable C-contiguous float32 array"):
        ew.residual_add(x, x, out=np.ones((2, 3), np.float64))
    with pytest.raises(TypeError, match="residual_add: r must be a real numeric array"):
        ew.residual_add(x, np.array([["a"] * 3] * 2))
    got = ew.residual_add(x, x.astype(np.float64))  # r comes to x's dtype
    assert got.dtype == np.float32 and (got == 2).all()
    assert ew.residual_add(np.ones((0, 3)), np.ones((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("epilogue", [None, "relu", "relu6"])
@pytest.mark.parametrize("k", [2, 3])
def test_add_layer_fused_epilogue(level, threads, epilogue, k):
    rng = np.random.default_rng(k)
    xs = [(rng.standard_normal((3, 5, 7, 9)) * 5).astype(np.float32) for _ in range(k)]
    copies = [x.copy() for x in xs]
    def act(v):
        return v if epilogue is None else np.clip(v, 0, 6 if epilogue == "relu6" else None)

    want = xs[0] + xs[1]
    for x in xs[2:]:
        want = want + x
    want = act(want)
    got = L.Add().forward(xs, epilogue=epilogue)
    np.testing.assert_array_equal(got, want)
    for x, c in zip(xs, copies):
        np.testing.assert_array_equal(x, c)
    # broadcast inputs keep NumPy's sum (and the epilogue after it)
    b = L.Add().forward([xs[0], xs[1][:, :1, :1, :]], epilogue=epilogue)
    np.testing.assert_array_equal(b, act(xs[0] + xs[1][:, :1, :1, :]))


@pytest.mark.parametrize("epilogue", ["relu", "relu6"])
def test_add_layer_fused_gradient(epilogue):
    """Training through the fused pass: the input gradients match central differences (float64)."""
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((2, 3, 5, 4)) * 4 for _ in range(3)]
    xs = [np.where(np.abs(x) < 0.05, 0.5, x) for x in xs]  # keep the sums off relu's kinks
    layer = L.Add(dtype="float64")
    dy = rng.standard_normal(xs[0].shape)

    def f():
        return float((layer.forward(xs, training=False, epilogue=epilogue) * dy).sum())

    layer.forward(xs, training=True, epilogue=epilogue)
    layer.need_input_grad = True
    grads = layer.backward(dy)
    for x, g in zip(xs, grads):
        np.testing.assert_allclose(g, numeric_grad(f, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("activation", ["relu", "linear", "tanh"])
def test_residual_block_sum(threads, activation):
    """ResidualBlock's forward (fused sum for relu / linear, the separate pass for tanh) against
    its main path and shortcut run layer by layer, predict and a training forward alike."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 9, 7, 5)).astype(np.float32)
    block = L.ResidualBlock([L.Conv2D(6, 3, padding="same", activation="relu"), L.Conv2D(6, 3, padding="same")],
                            shortcut=[L.Conv2D(6, 1)], activation=activation)
    block.build(x.shape[1:])
    h = x
    for layer in block.layers:
        h = layer.forward(h, False)
    s = block.shortcut[0].forward(x, False)
    want = ew.activation(h + s, activation)
    for training in (False, True):
        np.testing.assert_array_equal(block.forward(x, training), want)


def test_predict_resnet_small_matches_unfused_call():
    """A whole zoo net with residual sums: predict (folded BatchNorm, fused sums) against the
    unfused training-mode-free call, float64 so only rounding differs."""
    m = models.MODELS["resnet_small"](input_shape=(15, 13, 3), classes=5)
    x = np.random.default_rng(2).random((4, 15, 13, 3), dtype=np.float32)
    got = m.predict(x, batch_size=3)
    want = m(x)  # the plan without inference fusions
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.skipif(sys.maxsize <= 2**32, reason="needs a 64-bit address space")
def test_past_32_bit_element_count():
    """2**31 + 2**22 elements (tests/large.py tail_mapped): chunk offsets and span lengths past
    2**31; the tail matches the separate passes, the head (zeros + zeros) stays relu(0) = 0."""
    M, C = 2**25 + 2**16, 64
    tail = M * C - 2**31
    x, h = tail_mapped((M, C), np.float32, tail_elems=tail, populate=True)
    r, _ = tail_mapped((M, C), np.float32, tail_elems=tail, populate=True)
    assert x.size > INT32_MAX and h <= 2**31
    rng = np.random.default_rng(4)
    xt = rng.standard_normal(x.size - h).astype(np.float32)
    rt = rng.standard_normal(x.size - h).astype(np.float32)
    x.reshape(-1)[h:] = xt
    r.reshape(-1)[h:] = rt
    y, _ = tail_mapped((M, C), np.float32, tail_elems=tail, fill=np.nan, populate=True)
    assert ew.residual_add(x, r, "relu", out=y) is y
    np.testing.assert_array_equal(y.reshape(-1)[h:], ew.activation(xt + rt, "relu"))
    assert (y.reshape(-1)[: h : 1 << 20] == 0).all()
