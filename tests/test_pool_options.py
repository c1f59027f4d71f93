"""PyTorch's pooling options on max_pool2d / avg_pool2d and their gradients: dilation and
ceil_mode, against the NumPy reference on odd shapes and every option combination, on
every SIMD level and thread count, by float64 finite differences, against PyTorch, on the layers,
and the arguments' errors.  The output size rule is fastconv._shapes.pool_output_size."""
import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastconv import _dispatch, ops
from fastconv import layers as L
from fastconv import reference as ref
from fastconv._shapes import pool_output_size

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
F32, F64 = np.float32, np.float64


@pytest.fixture
def simd():
    yield _dispatch.set_simd
    _dispatch.set_simd(None)


def _tied(rng, shape, dtype=F32):
    """Values on a coarse grid, so windows hold many equal maxima."""
    return (rng.integers(-3, 4, shape) * 0.5).astype(dtype)


def _close(got, want, dtype, exact=False):
    assert got.shape == want.shape and got.dtype == want.dtype
    if exact:
        np.testing.assert_array_equal(got, want)
        return
    scale = 1.0 + float(np.abs(want).max(initial=0.0))
    np.testing.assert_allclose(got, want, rtol=0, atol=(1e-5 if dtype == F32 else 1e-12) * scale)


def _check_all(x, k, kw, dtype=F32):
    """Every op of the family (max with recomputed and saved argmax, average with both divisors)
    against the reference, for one geometry kw (stride, padding, dilation, ceil_mode)."""
    y = ref.max_pool2d(x, k, **kw)
    got, am = ops.max_pool2d(x, k, return_argmax=True, **kw)
    _close(got, y, dtype, exact=True)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    want = ref.max_pool2d_grad(dy, x, k, **kw)
    _close(ops.max_pool2d_grad(dy, x, k, **kw), want, dtype)
    _close(ops.max_pool2d_grad(dy, x, k, argmax=am, **kw), want, dtype)
    for cip in (False, True):
        _close(ops.avg_pool2d(x, k, count_include_pad=cip, **kw), ref.avg_pool2d(x, k, count_include_pad=cip, **kw),
               dtype)
        _close(ops.avg_pool2d_grad(dy, x, k, count_include_pad=cip, **kw),
               ref.avg_pool2d_grad(dy, x, k, count_include_pad=cip, **kw), dtype)


# ---- the output size rule ------------------------------------------------------------------------

@pytest.mark.parametrize("n, k, s, d, lo, hi, ceil, want", [
    (5, 2, 2, 1, 0, 0, False, 2), (5, 2, 2, 1, 0, 0, True, 3),   # ceil keeps the half window
    (4, 2, 2, 1, 0, 0, True, 2),                                 # exact: ceil = floor
    (5, 2, 2, 1, 1, 1, True, 3),    # ceil(5/2) + 1 = 4, but window 4 would start at 6 >= 5 + 1: dropped
    (4, 3, 2, 1, 1, 1, True, 3),    # ceil(3/2) + 1 = 3: window 3 starts at 4 < 4 + 1, kept
    (7, 3, 2, 2, 0, 0, False, 2), (7, 3, 2, 2, 0, 0, True, 2), (8, 3, 2, 2, 0, 0, True, 3),
    (3, 3, 1, 2, 1, 1, True, 1),    # the dilated window (5) fits once
    (3, 3, 2, 2, 0, 1, False, 0),   # the dilated window (5) is one past the padded input (4) ...
    (3, 3, 2, 2, 0, 1, True, 1),    # ... which ceil mode rounds up to one window, as PyTorch
])
def test_pool_output_size_follows_pytorch(n, k, s, d, lo, hi, ceil, want):
    assert pool_output_size(n, k, s, d, lo, hi, ceil) == want


def test_pool_output_size_matches_torch_rule_on_a_sweep():
    """PyTorch's pooling_output_shape, written out here: (L + 2p - d(k-1) - 1 + (s-1 if ceil)) //
    s + 1, minus one when the last window would start at or past L + p."""
    for n, k, s, d, p, ceil in itertools.product(range(1, 12), range(1, 5), range(1, 5), range(1, 4), range(3),
                                                 (False, True)):
        if p > k // 2 or n + 2 * p < (k - 1) * d + 1:
            continue
        out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
        if ceil and (out - 1) * s >= n + p:
            out -= 1
        assert pool_output_size(n, k, s, d, p, p, ceil) == out, (n, k, s, d, p, ceil)


# ---- against the reference -----------------------------------------------------------------------

PADS = [0, 1, ((0, 2), (1, 0)), "same", "valid"]
GEOMS = [((2, 2), None), (3, 2), ((2, 3), (1, 2)), (3, 1), (1, 3)]  # (pool_size, stride)


@pytest.mark.parametrize("dilation", [1, 2, (1, 3), (3, 2)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_every_option_combination_against_the_reference(dilation, ceil_mode):
    """Odd shapes and channel counts (vector tails), every padding form, overlapping and
    non-overlapping windows: each geometry the reference accepts matches; the others are refused
    by both."""
    rng = np.random.default_rng(0)
    ran = 0
    for (k, s), p, (h, w, c) in itertools.product(GEOMS, PADS, [(7, 9, 5), (10, 8, 17)]):
        x = _tied(rng, (2, h, w, c))
        kw = {"stride": s, "padding": p, "dilation": dilation, "ceil_mode": ceil_mode}
        try:
            ref.max_pool2d(x, k, **kw)
        except ValueError:
            with pytest.raises(ValueError):
                ops.max_pool2d(x, k, **kw)
            with pytest.raises(ValueError):
                ops.avg_pool2d_grad(np.ones((2, 1, 1, c)), x, k, **kw)
            continue
        _check_all(x, k, kw)
        ran += 1
    assert ran >= 30


def test_float64_and_the_ceil_window_past_the_padding():
    """float64, and windows that ceil mode lets reach past the bottom/right padding: the max
    ignores them, the include-pad divisor counts only the taps before the padding's end."""
    x = np.arange(1, 37, dtype=F64).reshape(1, 6, 6, 1)
    kw = {"stride": 2, "padding": 1, "ceil_mode": True}
    y = ops.avg_pool2d(x, 3, count_include_pad=True, **kw)
    assert y.shape == (1, 4, 4, 1)  # floor mode: 3
    # the last window starts on input row/column 5: taps 5 (input), 6 (padding), 7 (past the
    # padded input: not counted), so 36 / (2 * 2); the first one counts its padding: 18 / 9
    np.testing.assert_allclose(y[0, 3, 3, 0], 36 / 4)
    np.testing.assert_allclose(y[0, 0, 0, 0], (1 + 2 + 7 + 8) / 9)
    np.testing.assert_allclose(ops.avg_pool2d(x, 3, **kw)[0, 3, 3, 0], 36)
    np.testing.assert_array_equal(ops.max_pool2d(-x, 3, **kw)[0, 3, :, 0], [-31, -32, -34, -36])
    _check_all(np.random.default_rng(1).standard_normal((2, 9, 6, 3)), 3, {**kw, "dilation": (2, 1)}, F64)
    _check_all(np.random.default_rng(1).standard_normal((1, 11, 13, 2)), (2, 3),
               {"stride": (3, 2), "padding": ((1, 0), (0, 1)), "dilation": 3, "ceil_mode": True}, F64)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 2), h=st.integers(1, 11), w=st.integers(1, 11),
       c=st.sampled_from([1, 3, 8, 9, 17]),
       k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       s=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))),
       d=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       ceil=st.booleans(),
       p=st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 2),
                   st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.tuples(st.integers(0, 3), st.integers(0, 3)))),
       seed=st.integers(0, 2**16))
def test_random_geometries(n, h, w, c, k, s, d, ceil, p, seed):
    x = _tied(np.random.default_rng(seed), (n, h, w, c))
    kw = {"stride": s, "padding": p, "dilation": d, "ceil_mode": ceil}
    try:
        ref.max_pool2d(x, k, **kw)
    except ValueError:
        for f in (ops.max_pool2d, ops.avg_pool2d):
            with pytest.raises(ValueError):
                f(x, k, **kw)
        assume(False)
    _check_all(x, k, kw)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("c", [1, 3, 5, 8, 16, 19, 40])
def test_every_simd_level_and_channel_tail(simd, level, c):
    simd(level)
    rng = np.random.default_rng(c)
    x = _tied(rng, (2, 11, 10, c))
    for k, kw in [(3, {"stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
                  (2, {"stride": 2, "dilation": (1, 2), "ceil_mode": True}),    # interior 2x2, dilated
                  (3, {"stride": 1, "padding": 2, "dilation": 2}),               # interior 3x3, dilated
                  ((2, 2), {"stride": 3, "ceil_mode": True})]:                   # fused backward, ceil
        _check_all(x, k, kw)
    x64 = rng.standard_normal((1, 9, 8, c))
    _check_all(x64, 3, {"stride": 2, "padding": 1, "dilation": (2, 3), "ceil_mode": True}, F64)


def test_kernel_variants_with_the_options():
    x = np.random.default_rng(0).standard_normal((1, 9, 9, 4)).astype(F32)
    y = ops.max_pool2d(x, 2, ceil_mode=True)
    ops.max_pool2d_grad(y, x, 2, ceil_mode=True)
    assert _dispatch.last_kernel["max_pool2d_grad"] == "fused"    # non-overlapping, undilated
    y = ops.avg_pool2d(x, 2, dilation=2)
    ops.avg_pool2d_grad(y, x, 2, dilation=2)
    assert _dispatch.last_kernel["avg_pool2d_grad"] == "gather"   # dilated windows interleave


@pytest.mark.parametrize("dtype", [F32, F64])
def test_bit_identical_at_1_and_2_threads(dtype, monkeypatch):
    rng = np.random.default_rng(9)
    x = _tied(rng, (4, 65, 63, 24), dtype)
    monkeypatch.setattr(_dispatch, "_MIN_BYTES_PER_THREAD", 1 << 16)  # these small pools split too
    cases = [(3, {"stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
             (2, {"stride": 2, "ceil_mode": True}), (3, {"stride": 1, "dilation": (1, 3)})]
    old = _dispatch.get_num_threads()
    runs = []
    try:
        for nt in (1, 2):
            _dispatch.set_num_threads(nt)
            outs = []
            for i, (k, kw) in enumerate(cases):
                y, am = ops.max_pool2d(x, k, return_argmax=True, **kw)
                dy = rng.standard_normal(y.shape).astype(dtype) if nt == 1 else runs[0][i][0]
                outs.append((dy, y, am, ops.max_pool2d_grad(dy, x, k, **kw),
                             ops.max_pool2d_grad(dy, x, k, argmax=am, **kw),
                             ops.avg_pool2d(x, k, count_include_pad=True, **kw),
                             ops.avg_pool2d_grad(dy, x, k, count_include_pad=True, **kw)))
            runs.append(outs)
        assert _dispatch.threads_for_bytes(x.nbytes) == 2
    finally:
        _dispatch.set_num_threads(old)
    for a, b in zip(runs[0], runs[1]):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_finite_differences_float64():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 9, 8, 3))
    eps = 1e-6
    geoms = [(3, {"stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
             ((2, 3), {"stride": (2, 1), "padding": ((0, 1), (1, 1)), "dilation": (3, 1), "ceil_mode": True}),
             (2, {"stride": 3, "ceil_mode": True})]
    for k, kw in geoms:
        cases = [(lambda xx, k=k, kw=kw: ops.max_pool2d(xx, k, **kw),
                  lambda dy, k=k, kw=kw: ops.max_pool2d_grad(dy, x, k, **kw))]
        for cip in (False, True):
            cases.append((lambda xx, k=k, kw=kw, cip=cip: ops.avg_pool2d(xx, k, count_include_pad=cip, **kw),
                          lambda dy, k=k, kw=kw, cip=cip: ops.avg_pool2d_grad(dy, x, k, count_include_pad=cip, **kw)))
        for f, g in cases:
            dy = rng.standard_normal(f(x).shape)
            v = rng.standard_normal(x.shape)
            fd = (np.sum(f(x + eps * v) * dy) - np.sum(f(x - eps * v) * dy)) / (2 * eps)
            assert abs(fd - np.sum(g(dy) * v)) < 1e-6 * (1 + abs(fd)), (k, kw)


# ---- against PyTorch -----------------------------------------------------------------------------

def _nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def test_matches_pytorch():
    """torch.nn.functional.max_pool2d (dilation, ceil_mode) and avg_pool2d (ceil_mode,
    count_include_pad), values and input gradients, float64, on every (k, s, d, p) PyTorch
    accepts in a small sweep (PyTorch pads symmetrically, at most half the window)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    ran = 0
    for (h, w), k, s, d, p, ceil in itertools.product([(7, 8)], [2, 3, (2, 3)], [1, 2, 3], [1, 2], [0, 1],
                                                      [False, True]):
        kk = (k, k) if isinstance(k, int) else k
        if p > min(kk) // 2 or min(h, w) + 2 * p < (max(kk) - 1) * d + 1:
            continue
        x = rng.standard_normal((2, h, w, 3))
        xt = torch.tensor(_nchw(x), requires_grad=True)
        yt = F.max_pool2d(xt, kk, s, p, d, ceil_mode=ceil)
        dy = rng.standard_normal(yt.shape)
        yt.backward(torch.tensor(dy))
        kw = {"stride": s, "padding": p, "dilation": d, "ceil_mode": ceil}
        np.testing.assert_array_equal(ops.max_pool2d(x, kk, **kw), _nhwc(yt.detach().numpy()))
        np.testing.assert_allclose(ops.max_pool2d_grad(_nhwc(dy), x, kk, **kw), _nhwc(xt.grad.numpy()),
                                   rtol=1e-12, atol=1e-12)
        if d == 1:
            for cip in (False, True):
                xt.grad = None
                at = F.avg_pool2d(xt, kk, s, p, ceil_mode=ceil, count_include_pad=cip)
                at.backward(torch.tensor(dy))
                kwa = {"stride": s, "padding": p, "ceil_mode": ceil, "count_include_pad": cip}
                np.testing.assert_allclose(ops.avg_pool2d(x, kk, **kwa), _nhwc(at.detach().numpy()),
                                           rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(ops.avg_pool2d_grad(_nhwc(dy), x, kk, **kwa), _nhwc(xt.grad.numpy()),
                                           rtol=1e-12, atol=1e-12)
        ran += 1
    assert ran >= 50


def test_layers_match_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).standard_normal((2, 9, 10, 4)).astype(F32)
    mp = L.MaxPooling2D(3, strides=2, dilation_rate=2, ceil_mode=True)
    want = torch.nn.MaxPool2d(3, 2, dilation=2, ceil_mode=True)(torch.tensor(_nchw(x)))
    np.testing.assert_array_equal(mp(x), _nhwc(want.numpy()))
    ap = L.AveragePooling2D(2, strides=3, ceil_mode=True)
    want = torch.nn.AvgPool2d(2, 3, ceil_mode=True)(torch.tensor(_nchw(x)))
    np.testing.assert_allclose(ap(x), _nhwc(want.numpy()), rtol=1e-6, atol=1e-6)  # float32 sums


# ---- layers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("factory, in_shape, out_shape", [
    (lambda: L.MaxPooling2D(2, ceil_mode=True), (7, 9, 3), (4, 5, 3)),
    (lambda: L.MaxPooling2D(3, strides=2, dilation_rate=2), (11, 12, 3), (4, 4, 3)),
    (lambda: L.MaxPool2D(3, strides=2, dilation_rate=2, ceil_mode=True), (11, 12, 3), (4, 5, 3)),
    (lambda: L.AveragePooling2D(3, strides=3, ceil_mode=True), (7, 9, 2), (3, 3, 2)),
    (lambda: L.AveragePooling2D(2, strides=2, padding="same", dilation_rate=(2, 1), ceil_mode=True),
     (7, 9, 2), (4, 5, 2)),
    (lambda: L.AvgPool2D((2, 3), dilation_rate=(1, 2)), (6, 9, 2), (3, 2, 2)),
])
def test_layers_shapes_run_gradients_and_config(factory, in_shape, out_shape):
    from layercheck import F64 as LF64
    from layercheck import fd_check, rand

    layer = factory()
    assert layer.compute_output_shape(in_shape) == out_shape
    x = np.random.default_rng(0).standard_normal((2, *in_shape)).astype(F32)
    assert layer(x).shape == (2, *out_shape)
    config = layer.get_config()
    assert config.get("ceil_mode", False) == layer.ceil_mode
    assert tuple(config.get("dilation_rate", (1, 1))) == layer.dilation_rate
    clone = type(layer).from_config(config)
    np.testing.assert_array_equal(clone(x), layer(x))
    assert (clone.ceil_mode, clone.dilation_rate) == (layer.ceil_mode, layer.dilation_rate)
    cfg = {k: v for k, v in config.items() if k not in ("name", "dtype")}
    fd_check(type(layer)(**cfg, dtype=LF64), rand(2, *in_shape))


def test_default_layer_config_stays_keras():
    """A layer without the options writes Keras's config keys (Keras refuses unknown ones)."""
    config = L.MaxPooling2D(2).get_config()
    assert "ceil_mode" not in config and "dilation_rate" not in config
    layer = L.MaxPooling2D(2, ceil_mode=True, dilation_rate=(2, 1))
    assert layer.ceil_mode is True and layer.dilation_rate == (2, 1)


# ---- global max pooling ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64])
def test_global_max_pool_against_the_reference(dtype):
    rng = np.random.default_rng(4)
    x = _tied(rng, (3, 7, 5, 19), dtype)       # ties: the first maximum takes the gradient
    import fastconv

    assert fastconv.global_max_pool2d is ops.global_max_pool2d and "global_max_pool2d_grad" in fastconv.__all__
    _close(ops.global_max_pool2d(x), ref.global_max_pool2d(x), dtype, exact=True)
    dy = rng.standard_normal((3, 19)).astype(dtype)
    _close(ops.global_max_pool2d_grad(dy, x), ref.global_max_pool2d_grad(dy, x), dtype)
    with pytest.raises(ValueError, match="dy"):
        ops.global_max_pool2d_grad(dy[:, :3], x)


# ---- bad arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda x: ops.max_pool2d(x, 2, dilation=0), "dilation"),
    (lambda x: ops.avg_pool2d(x, 2, dilation=(1, 2, 3)), "dilation"),
    (lambda x: ops.max_pool2d_grad(np.ones((2, 3, 3, 3)), x, 2, dilation=(2, -1)), "dilation"),
    (lambda x: ops.avg_pool2d(x, 2, dilation=1.5), "dilation"),
    (lambda x: ops.max_pool2d(x, 2, ceil_mode="yes"), "ceil_mode"),
    (lambda x: ops.avg_pool2d_grad(np.ones((2, 3, 3, 3)), x, 2, ceil_mode=1), "ceil_mode"),
    (lambda x: ops.max_pool2d(x, 3, dilation=3), "dilated pool window"),       # 7 > 6
    (lambda x: ops.max_pool2d(x[:, :, :1], 2, dilation=(1, 3), stride=1, padding=((0, 0), (2, 1))),
     "entirely in the padding"),   # W = 1: the one window's taps -2 and 1 both miss the input
    (lambda x: ops.max_pool2d_grad(np.ones((2, 3, 3, 3)), x, 2, ceil_mode=True, stride=2, padding=1), "dy"),
    (lambda x: L.MaxPooling2D(2, ceil_mode="no"), "ceil_mode"),
    (lambda x: L.AveragePooling2D(2, dilation_rate=0), "dilation_rate"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.ones((2, 6, 6, 3), F32))


def test_the_empty_window_check_is_exact():
    """With a dilation larger than the input, a window starting in the padding may jump over the
    input: refused exactly when the reference finds a window with no real tap."""
    for w, k, s, d, lo in itertools.product(range(1, 5), range(1, 4), range(1, 4), range(1, 6), range(5)):
        x = np.ones((1, 1, w, 1), F32)
        kw = {"stride": (1, s), "padding": ((0, 0), (lo, 2)), "dilation": (1, d)}
        try:
            want = ref.avg_pool2d(x, (1, k), **kw)
        except ValueError:
            with pytest.raises(ValueError):
                ops.avg_pool2d(x, (1, k), **kw)
            continue
        np.testing.assert_array_equal(ops.avg_pool2d(x, (1, k), **kw), want)
