"""depthwise_conv2d and its gradients: kernels against the NumPy reference, finite differences,
every SIMD path, thread-count invariance, fully written outputs, argument errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fastconv import _dispatch
from fastconv import reference as ref
from fastconv._kernels import depthwise as _k
from fastconv.ops import _plan
from fastconv.ops._validate import STREAM_BYTES
from fastconv.ops.depthwise import depthwise_conv2d, depthwise_conv2d_grad

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]


@pytest.fixture
def simd():
    """Set a SIMD level for the test; restores the default afterwards."""
    yield _dispatch.set_simd
    _dispatch.set_simd(None)


def _data(rng, n, h, w, c, m, kh, kw, dtype=np.float32):
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    wt = rng.standard_normal((kh, kw, c, m)).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype)
    return x, wt, b


def _close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = 1.0 + float(np.abs(want).max(initial=0.0))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale * 4)


def _check(x, w, b, dtype=np.float32, **kw):
    """Forward and backward against the reference computed in float64."""
    y = depthwise_conv2d(x, w, b, **kw)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    _close(y, ref.depthwise_conv2d(x64, w64, b64, **kw).astype(dtype), dtype)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    got = depthwise_conv2d_grad(dy, x, w, **kw)
    want = ref.depthwise_conv2d_grad(dy.astype(np.float64), x64, w64, **kw)
    for g, r in zip(got, want):
        _close(g, r.astype(dtype), dtype)


# (N, H, W, C, M, KH, KW, stride, padding, dilation)
GRID = [
    (2, 7, 9, 8, 1, 3, 3, 1, 1, 1),
    (1, 8, 8, 17, 1, 3, 3, 2, "same", 1),
    (1, 9, 9, 16, 1, 3, 3, 2, "same", 1),           # same, stride 2, odd size
    (3, 11, 6, 7, 2, 5, 3, (2, 1), ((2, 1), (0, 3)), (2, 1)),
    (2, 9, 13, 3, 3, 1, 1, (3, 2), 0, 1),           # stride > kernel
    (1, 12, 12, 33, 1, 7, 7, 1, 3, (1, 2)),
    (2, 6, 6, 9, 2, 2, 4, 3, "same", 1),
    (1, 5, 5, 16, 1, 5, 5, 1, 4, 1),                # padding wider than the kernel reach
    (2, 10, 11, 1, 1, 3, 3, 2, "same", 2),          # dilation with stride
    (1, 4, 20, 24, 1, 3, 9, 1, 0, 1),               # 9 taps along W (generic tile)
    (1, 3, 3, 8, 1, 3, 3, 1, 0, 1),                 # 1x1 output
    (2, 28, 28, 32, 1, 3, 3, 1, "same", 1),
    (1, 20, 19, 96, 1, 5, 5, 2, "same", 1),
    (1, 8, 10, 64, 1, 3, 3, 2, ((0, 1), (1, 0)), 1),
    (5, 6, 7, 8, 2, 4, 2, (1, 3), "valid", (1, 2)),
    (1, 15, 3, 9, 1, 1, 3, (4, 1), ((3, 0), (2, 2)), 1),
]


@pytest.mark.parametrize("cfg", GRID)
def test_grid_float32(cfg):
    n, h, w, c, m, kh, kw, s, p, d = cfg
    x, wt, b = _data(np.random.default_rng(0), n, h, w, c, m, kh, kw)
    _check(x, wt, b, stride=s, padding=p, dilation=d)


@pytest.mark.parametrize("cfg", GRID[:8])
def test_grid_float64(cfg):
    n, h, w, c, m, kh, kw, s, p, d = cfg
    x, wt, b = _data(np.random.default_rng(0), n, h, w, c, m, kh, kw, np.float64)
    _check(x, wt, b, np.float64, stride=s, padding=p, dilation=d)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("c", [1, 3, 4, 7, 8, 9, 15, 16, 17, 33])
def test_every_simd_path_and_channel_tail(simd, level, c):
    used = simd(level)
    rng = np.random.default_rng(c)
    for m, k, s, p in [(1, 3, 1, "same"), (2, 5, 2, "same"), (1, (2, 4), (1, 3), 1)]:
        kh, kw = (k, k) if isinstance(k, int) else k
        x, wt, b = _data(rng, 2, 11, 13, c, m, kh, kw)
        _check(x, wt, b, stride=s, padding=p)
        assert _dispatch.last_used["depthwise_conv2d"] == used
        assert _dispatch.last_used["depthwise_conv2d_grad"] == used


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kw, s", [(3, 1), (5, 2), (1, 1), (7, 1), (4, 2)])
def test_row_tail_tiles(simd, level, kw, s):
    """Rows of every width 1..26: the consecutive-tap tile runs 8-pixel tiles and one tail of 4, 6
    or 8 pixels shifted back to the row's end (rows under 8 pixels write the rest to a dummy row);
    the input gradient's phases run the same tiles at their own widths."""
    used = simd(level)
    rng = np.random.default_rng(kw * 10 + s)
    for w in range(1, 27):
        for p in ("same", "valid"):
            if p == "valid" and w < kw:
                continue
            x, wt, b = _data(rng, 1, 3, w, 20, 1, 3, kw)
            _check(x, wt, b, stride=(1, s), padding=p)
    assert _dispatch.last_used["depthwise_conv2d"] == used


_pad = st.one_of(
    st.sampled_from(["valid", "same"]),
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 3), h=st.integers(1, 12), w=st.integers(1, 12),
       c=st.sampled_from([1, 2, 3, 7, 8, 9, 16, 17, 33]), m=st.integers(1, 3),
       kh=st.integers(1, 7), kw=st.integers(1, 7), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 3)), p=_pad, seed=st.integers(0, 2**16))
def test_random_configs(n, h, w, c, m, kh, kw, s, d, p, seed):
    x, wt, b = _data(np.random.default_rng(seed), n, h, w, c, m, kh, kw)
    try:
        want = ref.depthwise_conv2d(x, wt, b, stride=s, padding=p, dilation=d)
    except ValueError:
        with pytest.raises(ValueError):
            depthwise_conv2d(x, wt, b, stride=s, padding=p, dilation=d)
        assume(False)
    assert depthwise_conv2d(x, wt, b, stride=s, padding=p, dilation=d).shape == want.shape
    _check(x, wt, b, stride=s, padding=p, dilation=d)


@pytest.mark.parametrize("cfg", [(2, 6, 7, 3, 2, 3, 3, 2, "same", 1), (1, 7, 6, 4, 1, 2, 3, 1, ((1, 0), (2, 1)), 2)])
def test_finite_differences_float64(cfg):
    n, h, w, c, m, kh, kw, s, p, d = cfg
    rng = np.random.default_rng(3)
    x, wt, b = _data(rng, n, h, w, c, m, kh, kw, np.float64)
    kw_ = {"stride": s, "padding": p, "dilation": d}
    dy = rng.standard_normal(depthwise_conv2d(x, wt, b, **kw_).shape)
    dx, dw, db = depthwise_conv2d_grad(dy, x, wt, **kw_)
    eps = 1e-6

    def loss(xx, ww, bb):
        return float(np.sum(depthwise_conv2d(xx, ww, bb, **kw_) * dy))

    for grad, which in [(dx, 0), (dw, 1), (db, 2)]:
        v = rng.standard_normal(grad.shape)
        args_p, args_m = [x, wt, b], [x, wt, b]
        args_p[which] = args_p[which] + eps * v
        args_m[which] = args_m[which] - eps * v
        fd = (loss(*args_p) - loss(*args_m)) / (2 * eps)
        assert abs(fd - float(np.sum(grad * v))) < 1e-6 * (1 + abs(fd))


def _raw(x, w, b, s, p, d, isa, nthreads):
    """Call the kernels directly, with the plan's split for nthreads threads, on NaN-filled outputs
    (every element must be written)."""
    pads = ref.resolve_padding(p, x.shape[1:3], w.shape[:2], s, d)
    yshape = ref.depthwise_conv2d(x[:1], w, None, stride=s, padding=pads, dilation=d).shape[1:]
    geo = (*x.shape, w.shape[3], *yshape[:2], *w.shape[:2], *s, pads[0][0], pads[1][0], *d)
    fwd = _plan.depthwise_plan(geo, x.dtype.itemsize, False, nthreads)
    bwd = _plan.depthwise_plan(geo, x.dtype.itemsize, True, nthreads)
    assert fwd.split.threads == min(nthreads, x.shape[0] * yshape[0])
    y = np.full((x.shape[0],) + yshape, np.nan, x.dtype)
    _k.forward(x, w, b, y, geo, fwd.split.args(), isa)
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(x.dtype)
    dx = np.full(x.shape, np.nan, x.dtype)
    dw = np.full(w.shape, np.nan, x.dtype)
    db = np.full(b.shape, np.nan, x.dtype)
    # the one backward pass (blocks of dy rows, both gradients); without dx it writes the same dw, db
    _k.backward(x, dy, w, dx, dw, db, geo, bwd.block_rows, bwd.split.args(), isa)
    dw2 = np.full(w.shape, np.nan, x.dtype)
    db2 = np.full(b.shape, np.nan, x.dtype)
    _k.backward(x, dy, w, None, dw2, db2, geo, bwd.block_rows, bwd.split.args(), isa)
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)
    return y, dx, dw, db


def test_a_plan_that_does_not_match_the_arrays_is_refused():
    rng = np.random.default_rng(3)
    x, wt, b = _data(rng, 2, 6, 6, 4, 1, 3, 3)
    geo = (2, 6, 6, 4, 1, 4, 4, 3, 3, 1, 1, 0, 0, 1, 1)
    y = np.empty((2, 4, 4, 4), np.float32)
    good = _plan.depthwise_plan(geo, 4, False, 2)
    _k.forward(x, wt, b, y, geo, good.split.args(), 0)
    with pytest.raises(ValueError, match="geometry"):
        _k.forward(x, wt, b, y, (3,) + geo[1:], good.split.args(), 0)
    with pytest.raises(ValueError, match="split"):
        _k.forward(x, wt, b, y, geo, (9, 2, 2, False), 0)
    bwd = _plan.depthwise_plan(geo, 4, True, 2)
    dw, db = np.empty_like(wt), np.empty_like(b)
    with pytest.raises(ValueError, match="split"):
        assert bwd.block_rows == 4  # the whole map in one block
        _k.backward(x, y, wt, None, dw, db, geo, 1, bwd.split.args(), 0)


@pytest.mark.parametrize("level", LEVELS)
def test_threads_agree_and_outputs_fully_written(level):
    isa = _dispatch.LEVELS[level]
    rng = np.random.default_rng(7)
    for n, h, w, c, m, k, s, p, d in [(3, 9, 10, 9, 1, 3, (1, 1), 1, (1, 1)),
                                      (2, 13, 7, 17, 2, 5, (2, 2), "same", (1, 1)),
                                      (5, 6, 6, 4, 1, 3, (2, 1), 0, (2, 1))]:
        x, wt, b = _data(rng, n, h, w, c, m, k, k)
        one = _raw(x, wt, b, s, p, d, isa, 1)
        for nt in (2, 3):
            many = _raw(x, wt, b, s, p, d, isa, nt)
            for a, bb in zip(one, many):
                assert np.isfinite(bb).all()
            np.testing.assert_array_equal(one[0], many[0])   # forward: same arithmetic per element
            np.testing.assert_array_equal(one[1], many[1])   # dx: one owner per row
            np.testing.assert_allclose(one[2], many[2], rtol=1e-5, atol=1e-5)  # dw: partials
            np.testing.assert_allclose(one[3], many[3], rtol=1e-5, atol=1e-5)


def test_op_thread_settings_agree():
    rng = np.random.default_rng(8)
    x, wt, b = _data(rng, 4, 40, 40, 32, 1, 3, 3)
    dy = rng.standard_normal((4, 40, 40, 32)).astype(np.float32)
    old = _dispatch.get_num_threads()
    try:
        _dispatch.set_num_threads(1)
        y1, g1 = depthwise_conv2d(x, wt, b, padding=1), depthwise_conv2d_grad(dy, x, wt, padding=1)
        _dispatch.set_num_threads(2)
        y2, g2 = depthwise_conv2d(x, wt, b, padding=1), depthwise_conv2d_grad(dy, x, wt, padding=1)
    finally:
        _dispatch.set_num_threads(old)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(g1[0], g2[0])
    np.testing.assert_allclose(g1[1], g2[1], rtol=1e-5, atol=1e-4)


def test_need_dx_false_skips_the_input_gradient():
    rng = np.random.default_rng(13)
    x, wt, _ = _data(rng, 2, 7, 7, 9, 2, 3, 3)
    dy = rng.standard_normal((2, 7, 7, 18)).astype(np.float32)
    dx, dw, db = depthwise_conv2d_grad(dy, x, wt, padding=1, need_dx=False)
    assert dx is None
    full = depthwise_conv2d_grad(dy, x, wt, padding=1)
    np.testing.assert_array_equal(dw, full[1])
    np.testing.assert_array_equal(db, full[2])


def test_empty_batch():
    x = np.zeros((0, 5, 5, 3), np.float32)
    w = np.ones((3, 3, 3, 2), np.float32)
    y = depthwise_conv2d(x, w, np.zeros(6), padding=1)
    assert y.shape == (0, 5, 5, 6) and y.dtype == np.float32
    dx, dw, db = depthwise_conv2d_grad(np.zeros((0, 5, 5, 6), np.float32), x, w, padding=1)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (6,)
    assert not dw.any() and not db.any()


def test_dtypes_layouts_and_inputs_untouched():
    rng = np.random.default_rng(9)
    x, wt, b = _data(rng, 2, 8, 9, 5, 2, 3, 3, np.float64)
    want = ref.depthwise_conv2d(x, wt, b, padding="same")
    assert depthwise_conv2d(x, wt, b, padding="same").dtype == np.float64
    xf = np.asfortranarray(x)
    ro = x.copy()
    ro.setflags(write=False)
    wide = np.zeros((2, 8, 18, 5))
    wide[:, :, ::2] = x
    view = wide[:, :, ::2]
    copies = [a.copy() for a in (xf, ro, wide)]
    for xx in (xf, ro, view, x.tolist()):
        _close(depthwise_conv2d(xx, wt, b, padding="same"), want, np.float64)
    for a, c in zip((xf, ro, wide), copies):
        np.testing.assert_array_equal(a, c)
    u8 = rng.integers(0, 255, (1, 6, 6, 5), dtype=np.uint8)
    y = depthwise_conv2d(u8, wt.astype(np.float32), padding=1)
    assert y.dtype == np.float32
    _close(y, ref.depthwise_conv2d(u8.astype(np.float64), wt, padding=1).astype(np.float32), np.float32)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dyc = dy.copy()
    depthwise_conv2d_grad(dy, u8, wt, padding=1)
    np.testing.assert_array_equal(dy, dyc)


@pytest.mark.parametrize("call, match", [
    (lambda x, w: depthwise_conv2d(x[0], w), "4-D"),
    (lambda x, w: depthwise_conv2d(x, w[0]), "4-D"),
    (lambda x, w: depthwise_conv2d(x, w[:, :, :2]), "channels"),
    (lambda x, w: depthwise_conv2d(x, w, np.ones(5)), "bias"),
    (lambda x, w: depthwise_conv2d(x, w, stride=0), "stride"),
    (lambda x, w: depthwise_conv2d(x, w, dilation=(1, 0)), "dilation"),
    (lambda x, w: depthwise_conv2d(x, w, padding=-1), "padding"),
    (lambda x, w: depthwise_conv2d(x, w, padding="full"), "padding"),
    (lambda x, w: depthwise_conv2d(x, np.ones((9, 3, 3, 2))), "larger"),
    (lambda x, w: depthwise_conv2d(x, w, dilation=5), "larger"),
    (lambda x, w: depthwise_conv2d_grad(np.ones((2, 5, 5, 6)), x, w), "dy"),
    (lambda x, w: depthwise_conv2d_grad(np.ones((2, 4, 4, 5)), x, w), "dy"),
])
def test_bad_arguments_raise_value_error(call, match):
    x = np.ones((2, 6, 6, 3), np.float32)
    w = np.ones((3, 3, 3, 2), np.float32)
    with pytest.raises(ValueError, match=match):
        call(x, w)


def test_bad_dtypes_raise_type_error():
    x = np.ones((1, 4, 4, 2), np.float32)
    w = np.ones((3, 3, 2, 1), np.float32)
    with pytest.raises(TypeError, match="x"):
        depthwise_conv2d(x.astype(np.complex64), w)
    with pytest.raises(TypeError, match="w"):
        depthwise_conv2d(x, np.array([["a"]], dtype=object))


@pytest.mark.parametrize("level", LEVELS)
def test_large_outputs_streamed(simd, level):
    """y and dx of at least STREAM_BYTES take the non-temporal store path (aligned by the op)."""
    simd(level)
    rng = np.random.default_rng(12)
    x, wt, b = _data(rng, 2, 100, 100, 128, 1, 3, 3)           # 10 MB
    assert x.nbytes >= STREAM_BYTES
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    for s in (1, 2):        # stride 2: dx rows are assembled from two phases, then streamed
        y = depthwise_conv2d(x, wt, b, padding="same", stride=s)
        assert y.ctypes.data % 64 == 0 or y.nbytes < STREAM_BYTES
        want = ref.depthwise_conv2d(x64, w64, b.astype(np.float64), padding="same", stride=s)
        _close(y, want.astype(np.float32), np.float32)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = depthwise_conv2d_grad(dy, x, wt, padding="same", stride=s)[0]
        assert dx.ctypes.data % 64 == 0
        want = ref.depthwise_conv2d_grad(dy.astype(np.float64), x64, w64, padding="same", stride=s)[0]
        _close(dx, want.astype(np.float32), np.float32)


@pytest.mark.parametrize("c, m, dtype, variant", [
    (3, 1, np.float32, "scalar"), (8, 1, np.float32, "vector"),
    (4, 2, np.float32, "multiplier"), (2, 1, np.float64, "vector"),
])
def test_reports_the_kernel_variant(c, m, dtype, variant):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, c)).astype(dtype)
    w = rng.standard_normal((3, 3, c, m)).astype(dtype)
    y = depthwise_conv2d(x, w, padding="same")
    assert _dispatch.last_kernel["depthwise_conv2d"] == variant
    dx, dw, db = depthwise_conv2d_grad(np.ones_like(y), x, w, padding="same", need_dx=False)
    assert dx is None and _dispatch.last_kernel["depthwise_conv2d_grad"] == variant
