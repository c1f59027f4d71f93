"""Max pooling's saved argmax: the int32 input-plane index ih*W + iw the forward writes (vectorised,
the same window loops as the value) against a NumPy derivation of the first maximum, and the
backward that reads it (a pass over dx rows for non-overlapping windows, the gather for
overlapping ones) against the reference and the recomputing backward.  Every SIMD level, float32
and float64, channel tails, 1 and 2 threads, outputs pre-filled with NaN / junk."""
import numpy as np
import pytest

from fastconv import _dispatch
from fastconv import reference as ref
from fastconv._kernels import pool as _k
from fastconv.ops import _plan
from fastconv.ops import pool as P

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]


@pytest.fixture
def simd():
    yield _dispatch.set_simd
    _dispatch.set_simd(None)


def _tied(rng, shape, dtype):
    """Values on a coarse grid, so windows hold many equal maxima."""
    return (rng.integers(-3, 4, shape) * 0.5).astype(dtype)


def _want_argmax(x, g):
    """The first maximum of each window over its real taps (row-major (kh, kw) order) as the
    input-plane index ih*W + iw; g is the op's fc_poolp geometry."""
    N, H, W, C, OH, OW, KH, KW, sh, sw, ph, pw, _, dh, dw = g[:15]
    best = np.full((N, OH, OW, C), -np.inf, x.dtype)
    arg = np.full((N, OH, OW, C), -1, np.int64)
    oh = np.arange(OH)[:, None]
    ow = np.arange(OW)[None, :]
    for kh in range(KH):
        for kw in range(KW):
            ih = oh * sh - ph + kh * dh
            iw = ow * sw - pw + kw * dw
            real = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)  # (OH, OW)
            v = x[:, np.clip(ih, 0, H - 1), np.clip(iw, 0, W - 1)]  # (N, OH, OW, C)
            take = real[None, :, :, None] & ((v > best) | (arg < 0))
            best = np.where(take, v, best)
            arg = np.where(take, (ih * W + iw)[None, :, :, None], arg)
    assert (arg >= 0).all()
    return arg.astype(np.int32)


# (pool, geometry keywords): interior 2x2 / 3x3 windows (unrolled), dilated, non-square, gaps between
# windows (stride > pool), ceil mode's clipped last window, "same" padding, a 1-wide window
CASES = [
    (2, {}),
    (3, {"stride": 2, "padding": 1}),
    (3, {"stride": 2, "padding": "same"}),
    (2, {"stride": 3}),
    (3, {"stride": 3, "padding": 1, "ceil_mode": True}),
    (2, {"stride": 2, "ceil_mode": True}),
    (3, {"stride": 1, "dilation": 2, "padding": 2}),
    (2, {"stride": 2, "dilation": (2, 1)}),
    ((2, 3), {"stride": (2, 4), "padding": ((1, 0), (1, 1))}),
    ((1, 3), {"stride": (1, 3)}),
    (4, {"stride": 1}),
    (3, {"stride": 1, "padding": 1}),  # up to 9 covering windows per dx pixel (the gather's list)
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saved_argmax_and_its_gradient_match_the_reference(level, dtype, simd):
    simd(level)
    rng = np.random.default_rng(11)
    for c in (1, 3, 5, 17, 40):  # 1-lane levels, narrow levels, channel tails, several blocks
        x = _tied(rng, (2, 11, 13, c), dtype)
        for k, kw in CASES:
            g = P._geometry("max_pool2d", x, k, kw.get("stride"), kw.get("padding", 0), False,
                            kw.get("dilation", 1), kw.get("ceil_mode", False))
            y, am = P.max_pool2d(x, k, return_argmax=True, **kw)
            np.testing.assert_array_equal(y, ref.max_pool2d(x, k, **kw))
            np.testing.assert_array_equal(am, _want_argmax(x, g), err_msg=f"{k} {kw} C={c}")
            dy = rng.standard_normal(y.shape).astype(dtype)
            want = ref.max_pool2d_grad(dy, x, k, **kw)
            got = P.max_pool2d_grad(dy, x, k, argmax=am, **kw)
            # overlapping windows add their dy in the kernel's order: equal up to rounding
            tol = (1e-6 if dtype == np.float32 else 1e-14) * (1 + np.abs(want).max())
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=0, atol=tol)
            np.testing.assert_array_equal(got, P.max_pool2d_grad(dy, x, k, **kw))


@pytest.mark.parametrize("level", LEVELS)
def test_every_element_written_at_1_and_2_threads(level):
    """The kernels straight from a plan: y, the argmax and dx pre-filled with NaN / -7 come out
    fully written and identical at 1 and 2 threads; gap rows and columns of dx are zeros."""
    isa = _dispatch.LEVELS[level]
    rng = np.random.default_rng(12)
    # (n, h, w, c, k, s, ph, pw): 2x2 tiling, gaps (stride 3), odd overlap, padding with gaps
    for n, h, w, c, k, s, ph, pw in [(3, 10, 12, 16, 2, 2, 0, 0), (2, 11, 10, 9, 2, 3, 0, 1),
                                     (2, 9, 9, 21, 3, 2, 1, 1), (2, 8, 11, 7, 3, 4, 1, 2)]:
        x = _tied(rng, (n, h, w, c), np.float32)
        oh, ow = (h + 2 * ph - k) // s + 1, (w + 2 * pw - k) // s + 1
        geo = (n, h, w, c, oh, ow, k, k, s, s, ph, pw, 0, 1, 1, h + ph, w + pw)
        dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
        runs = []
        for nt in (1, 2):
            y = np.full((n, oh, ow, c), np.nan, np.float32)
            am = np.full((n, oh, ow, c), -7, np.int32)
            _k.max_forward(x, y, am, geo, _plan.pool_plan(geo, False, False, nt).split.args(), isa)
            dx = np.full(x.shape, np.nan, np.float32)
            _k.max_backward(x, dy, am, dx, geo, _plan.pool_plan(geo, True, True, nt).split.args(), isa)
            assert np.isfinite(y).all() and (am >= 0).all() and np.isfinite(dx).all()
            np.testing.assert_allclose(dx, ref.max_pool2d_grad(dy, x, k, stride=s, padding=(ph, pw)),
                                       rtol=0, atol=1e-5)
            runs.append((y, am, dx))
        for a, b in zip(*runs):
            np.testing.assert_array_equal(a, b)


def test_nan_and_inf_windows_follow_the_recomputing_kernel():
    """A NaN wins its window and -inf inputs still pick a real tap: the saved argmax's gradient is
    the recomputing backward's, bit for bit, for non-overlapping and overlapping windows."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 9, 10, 19)).astype(np.float32)
    x[0, 2, 3, 4] = x[1, 5, 5, 0] = x[0, 8, 9, 18] = np.nan
    x[0, 1, 1, 2] = np.nan
    x[1, :4, :4, 7] = -np.inf
    for k, kw in [(2, {}), (3, {"stride": 2, "padding": 1}), (2, {"stride": 3, "padding": 1})]:
        y, am = P.max_pool2d(x, k, return_argmax=True, **kw)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(P.max_pool2d(x, k, **kw)))
        np.testing.assert_array_equal(P.max_pool2d_grad(dy, x, k, argmax=am, **kw),
                                      P.max_pool2d_grad(dy, x, k, **kw))


@pytest.mark.parametrize("epilogue", [None, "relu"])
def test_the_layer_keeps_the_argmax_in_training(epilogue):
    """MaxPooling2D saves the forward's argmax in training (the gradient reads it: variant
    "argmax") and its gradient is the op's, through a commuted relu too."""
    from fastconv import layers as L
    from fastconv import ops

    rng = np.random.default_rng(14)
    x = _tied(rng, (3, 13, 11, 6), np.float32)
    for kw in ({"pool_size": 3, "strides": 2, "padding": "same"}, {"pool_size": 2}):
        layer = L.MaxPooling2D(**kw)
        y = layer.call(x, training=True, epilogue=epilogue)
        opkw = {"stride": kw.get("strides"), "padding": kw.get("padding", "valid")}
        want_y = ops.max_pool2d(x, kw["pool_size"], **opkw)
        if epilogue == "relu":
            want_y = np.maximum(want_y, 0)
        np.testing.assert_array_equal(y, want_y)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.call_backward(dy)
        assert _dispatch.last_kernel["max_pool2d_grad"] == "argmax"
        dz = dy * (want_y > 0) if epilogue == "relu" else dy
        np.testing.assert_array_equal(dx, ops.max_pool2d_grad(dz, x, kw["pool_size"], **opkw))


@pytest.mark.parametrize("level", LEVELS)
def test_large_argmax_streamed(simd, level):
    """An argmax of at least STREAM_BYTES is allocated aligned and written with non-temporal stores
    alongside y (float32); the values and the gradient are unchanged."""
    from fastconv.ops._validate import STREAM_BYTES

    simd(level)
    rng = np.random.default_rng(15)
    x = _tied(rng, (2, 130, 130, 128), np.float32)
    for k, kw in [(2, {}), (3, {"stride": 2, "padding": 1})]:
        y, am = P.max_pool2d(x, k, return_argmax=True, **kw)
        assert am.nbytes >= STREAM_BYTES and am.ctypes.data % 64 == 0
        g = P._geometry("max_pool2d", x, k, kw.get("stride"), kw.get("padding", 0))
        np.testing.assert_array_equal(am, _want_argmax(x, g))
        np.testing.assert_array_equal(y, ref.max_pool2d(x, k, **kw))
        dy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(P.max_pool2d_grad(dy, x, k, argmax=am, **kw),
                                      P.max_pool2d_grad(dy, x, k, **kw))
