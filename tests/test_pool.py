"""Max, average and global average pooling and their gradients: kernels against the NumPy
reference, ties, -inf padding, every SIMD path, thread-count invariance, fully written outputs,
finite differences and argument errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fastconv import _dispatch
from fastconv import reference as ref
from fastconv._kernels import pool as _k
from fastconv.ops import _plan
from fastconv.ops import pool as P
from fastconv.ops._validate import STREAM_BYTES
from fastconv.ops.pool import (
    avg_pool2d,
    avg_pool2d_grad,
    global_avg_pool2d,
    global_avg_pool2d_grad,
    max_pool2d,
    max_pool2d_grad,
)

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]


@pytest.fixture
def simd():
    yield _dispatch.set_simd
    _dispatch.set_simd(None)


def _close(got, want, dtype, exact=False):
    assert got.shape == want.shape and got.dtype == want.dtype
    if exact:
        np.testing.assert_array_equal(got, want)
        return
    scale = 1.0 + float(np.abs(want).max(initial=0.0))
    np.testing.assert_allclose(got, want, rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-12) * scale)


def _tied(rng, shape, dtype=np.float32):
    """Values on a coarse grid, so windows hold many equal maxima."""
    return (rng.integers(-3, 4, shape) * 0.5).astype(dtype)


def _check_all(x, k, s, p, dtype=np.float32):
    kw = {"stride": s, "padding": p}
    _close(max_pool2d(x, k, **kw), ref.max_pool2d(x, k, **kw), dtype, exact=True)
    y = ref.max_pool2d(x, k, **kw)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    _close(max_pool2d_grad(dy, x, k, **kw), ref.max_pool2d_grad(dy, x, k, **kw), dtype)
    for cip in (False, True):
        _close(avg_pool2d(x, k, count_include_pad=cip, **kw), ref.avg_pool2d(x, k, count_include_pad=cip, **kw), dtype)
        _close(avg_pool2d_grad(dy, x, k, count_include_pad=cip, **kw),
               ref.avg_pool2d_grad(dy, x, k, count_include_pad=cip, **kw), dtype)


# (N, H, W, C, pool_size, stride, padding)
GRID = [
    (2, 8, 8, 8, 2, None, 0),
    (1, 9, 7, 17, 3, 2, 1),
    (3, 10, 11, 3, (3, 2), (1, 2), "same"),
    (2, 5, 9, 33, (2, 3), 3, ((1, 0), (1, 1))),
    (1, 7, 7, 1, 7, 1, 3),
    (2, 6, 13, 16, 1, (2, 3), 0),                   # stride > window
    (2, 12, 12, 9, 4, 2, 2),
    (1, 6, 6, 7, 3, 1, "same"),
    (1, 9, 9, 16, 3, 2, "same"),                    # same, stride 2, odd size
    (1, 10, 10, 16, 3, 2, "same"),                  # same, stride 2, even size
    (4, 28, 28, 32, 2, 2, 0),
    (1, 20, 17, 64, 3, 2, 1),
    (0, 4, 4, 3, 2, 2, 0),
]


@pytest.mark.parametrize("cfg", GRID)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_with_ties(cfg, dtype):
    n, h, w, c, k, s, p = cfg
    _check_all(_tied(np.random.default_rng(0), (n, h, w, c), dtype), k, s, p, dtype)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("c", [1, 3, 4, 7, 8, 9, 15, 16, 17, 33])
def test_every_simd_path_and_channel_tail(simd, level, c):
    used = simd(level)
    rng = np.random.default_rng(c)
    for k, s, p in [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), "same")]:
        _check_all(_tied(rng, (2, 9, 11, c)), k, s, p)
        x = rng.standard_normal((2, 5, 6, c)).astype(np.float32)
        _close(global_avg_pool2d(x), ref.global_avg_pool2d(x), np.float32)
        g = rng.standard_normal((2, c)).astype(np.float32)
        _close(global_avg_pool2d_grad(g, x), ref.global_avg_pool2d_grad(g, x), np.float32)
    for op in ("max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad", "global_avg_pool2d",
               "global_avg_pool2d_grad"):
        assert _dispatch.last_used[op] == used


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("c", [5, 64, 100, 200, 257, 300])
def test_global_average_register_groups(simd, level, c):
    """The global average forward sums 1, 2, 4 or 8 channel blocks in registers with 8 / G pixel
    sets, and in chunks of 32 pixels past 8 blocks: every group size, pixel counts that leave a
    remainder of each set count, a chunk remainder, and more pixels than a float32 block (4096)."""
    used = simd(level)
    rng = np.random.default_rng(c)
    for h, w in [(1, 1), (3, 5), (7, 9), (6, 11), (33, 1)]:
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((2, h, w, c)).astype(dtype)
            _close(global_avg_pool2d(x), ref.global_avg_pool2d(x), dtype)
    x = (rng.standard_normal((1, 67, 63, 24)) + 3).astype(np.float32)  # 4221 pixels: two blocks
    _close(global_avg_pool2d(x), ref.global_avg_pool2d(x), np.float32)
    assert _dispatch.last_used["global_avg_pool2d"] == used


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 3), h=st.integers(1, 12), w=st.integers(1, 12),
       c=st.sampled_from([1, 2, 3, 7, 8, 9, 16, 17, 33]),
       k=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       s=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))),
       p=st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 2),
                   st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.tuples(st.integers(0, 2), st.integers(0, 2)))),
       seed=st.integers(0, 2**16))
def test_random_configs(n, h, w, c, k, s, p, seed):
    x = _tied(np.random.default_rng(seed), (n, h, w, c))
    try:
        ref.max_pool2d(x, k, stride=s, padding=p)
    except ValueError:
        for f in (max_pool2d, avg_pool2d):
            with pytest.raises(ValueError):
                f(x, k, stride=s, padding=p)
        assume(False)
    _check_all(x, k, s, p)


def test_first_maximum_wins_and_padding_is_minus_infinity():
    x = np.zeros((1, 4, 4, 2), np.float32)      # every window is all ties
    dx = max_pool2d_grad(np.ones((1, 2, 2, 2), np.float32), x, 2)
    want = np.zeros_like(x)
    want[0, ::2, ::2] = 1
    np.testing.assert_array_equal(dx, want)
    neg = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)   # all negative: padding never wins
    y = max_pool2d(neg, 3, stride=1, padding=1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])
    dx = max_pool2d_grad(np.ones_like(y), neg, 3, stride=1, padding=1)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[4, 2, 0], [2, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1), (3, 1, 0), ((2, 3), (2, 3), 0)])
def test_nan_propagates_in_max_pool(simd, level, k, s, p):
    simd(level)
    x = np.random.default_rng(3).standard_normal((1, 7, 8, 16)).astype(np.float32)
    want_finite = max_pool2d(x, k, stride=s, padding=p)
    for ih in range(7):
        for iw in range(8):
            xn = x.copy()
            xn[0, ih, iw, 5] = np.nan
            y = max_pool2d(xn, k, stride=s, padding=p)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(ref.max_pool2d(xn, k, stride=s, padding=p)))
            keep = ~np.isnan(y)
            np.testing.assert_array_equal(y[keep], want_finite[keep])


def test_saved_argmax_gives_the_same_gradient():
    rng = np.random.default_rng(4)
    x = _tied(rng, (2, 11, 9, 12))
    y, am = max_pool2d(x, 3, stride=2, padding=1, return_argmax=True)
    assert am.dtype == np.int32 and am.shape == y.shape
    np.testing.assert_array_equal(y, max_pool2d(x, 3, stride=2, padding=1))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(max_pool2d_grad(dy, x, 3, stride=2, padding=1, argmax=am),
                                  max_pool2d_grad(dy, x, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="argmax"):
        max_pool2d_grad(dy, x, 3, stride=2, padding=1, argmax=am[:1])


def test_finite_differences_float64():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 7, 6, 3))
    eps = 1e-6
    cases = [
        (lambda xx: avg_pool2d(xx, 3, stride=2, padding=1),
         lambda dy: avg_pool2d_grad(dy, x, 3, stride=2, padding=1)),
        (lambda xx: avg_pool2d(xx, (2, 3), stride=1, padding="same", count_include_pad=True),
         lambda dy: avg_pool2d_grad(dy, x, (2, 3), stride=1, padding="same", count_include_pad=True)),
        (lambda xx: max_pool2d(xx, 3, stride=2, padding=1),
         lambda dy: max_pool2d_grad(dy, x, 3, stride=2, padding=1)),
        (global_avg_pool2d, lambda dy: global_avg_pool2d_grad(dy, x)),
    ]
    for f, g in cases:
        dy = rng.standard_normal(f(x).shape)
        v = rng.standard_normal(x.shape)
        fd = (np.sum(f(x + eps * v) * dy) - np.sum(f(x - eps * v) * dy)) / (2 * eps)
        assert abs(fd - np.sum(g(dy) * v)) < 1e-6 * (1 + abs(fd))


@pytest.mark.parametrize("level", LEVELS)
def test_threads_agree_and_outputs_fully_written(level):
    isa = _dispatch.LEVELS[level]
    rng = np.random.default_rng(6)
    for n, h, w, c, k, s, ph, pw in [(3, 9, 10, 9, 3, 2, 1, 1), (2, 13, 7, 17, 2, 3, 0, 1), (5, 6, 6, 4, 4, 1, 2, 0)]:
        x = _tied(rng, (n, h, w, c))
        oh, ow = (h + 2 * ph - k) // s + 1, (w + 2 * pw - k) // s + 1
        dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
        outs = []
        geo = (n, h, w, c, oh, ow, k, k, s, s, ph, pw)
        tail = (1, 1, h + ph, w + pw)  # dilation, extended ends (the fc_poolp fields after include_pad)
        for nt in (1, 2, 3):
            fwd = _plan.pool_plan(geo + (0, *tail), False, False, nt)
            bwd = _plan.pool_plan(geo + (0, *tail), True, False, nt)
            assert fwd.split.threads == min(nt, n * oh)
            y = np.full((n, oh, ow, c), np.nan, np.float32)
            am = np.full((n, oh, ow, c), -5, np.int32)
            _k.max_forward(x, y, am, geo + (0, *tail), fwd.split.args(), isa)
            dxm = np.full(x.shape, np.nan, np.float32)
            _k.max_backward(x, dy, None, dxm, geo + (0, *tail), bwd.split.args(), isa)
            dxs = np.full(x.shape, np.nan, np.float32)  # from the saved argmax
            saved = _plan.pool_plan(geo + (0, *tail), True, True, nt).split.args()
            _k.max_backward(x, dy, am, dxs, geo + (0, *tail), saved, isa)
            np.testing.assert_array_equal(dxs, dxm)
            ya = np.full_like(y, np.nan)
            _k.avg_forward(x, ya, geo + (0, *tail), fwd.split.args(), isa)
            dxa = np.full(x.shape, np.nan, np.float32)
            inc = _plan.pool_plan(geo + (1, *tail), True, False, nt).split.args()
            _k.avg_backward(dy, dxa, geo + (1, *tail), inc, isa)
            g = np.full((n, c), np.nan, np.float32)
            gp = _plan.global_pool_plan(x.shape, False, 4, nt)
            _k.global_avg_forward(x, g, gp.geometry, gp.split.args(), gp.scratch_bytes, isa)
            dxg = np.full(x.shape, np.nan, np.float32)
            gb = _plan.global_pool_plan(x.shape, True, 4, nt)
            _k.global_avg_backward(g, dxg, gb.geometry, gb.split.args(), isa)
            res = (y, am, dxm, ya, dxa, g, dxg)
            for a in res:
                assert np.isfinite(a).all() if a.dtype != np.int32 else (a >= 0).all()
            outs.append(res)
        for other in outs[1:]:
            for a, b in zip(outs[0], other):
                np.testing.assert_array_equal(a, b)


def test_a_plan_that_does_not_match_the_arrays_is_refused():
    x = np.zeros((2, 6, 6, 3), np.float32)
    y = np.empty((2, 3, 3, 3), np.float32)
    geo = (2, 6, 6, 3, 3, 3, 2, 2, 2, 2, 0, 0, 0, 1, 1, 6, 6)
    split = _plan.pool_plan(geo, False, False, 2).split.args()
    _k.max_forward(x, y, None, geo, split, 0)
    with pytest.raises(ValueError, match="geometry"):
        _k.max_forward(x, y, None, (2, 6, 6, 4) + geo[4:], split, 0)
    with pytest.raises(ValueError, match="split"):
        _k.avg_forward(x, y, geo, (5, 2, 2, False), 0)
    # the backward's units are the kernel's own count (fused windows: output rows, not dx rows)
    with pytest.raises(ValueError, match="split"):
        _k.avg_backward(y, np.empty_like(x), geo, _plan.static_split(12, 2).args(), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_bit_identical_at_1_and_2_threads(dtype, monkeypatch):
    """Every element has one owner thread: the ops give the same bits at 1 and 2 threads."""
    monkeypatch.setattr(_dispatch, "_MIN_BYTES_PER_THREAD", 1 << 16)  # these small pools split too
    if not _dispatch._rt.have_openmp():  # scripts/check_serial.sh: a serial build has one thread
        pytest.skip("serial build (no OpenMP): there is no 2-thread run to compare")
    rng = np.random.default_rng(9)
    x = _tied(rng, (4, 65, 63, 24), dtype)
    cases = [(3, 2, 1), (2, 2, 0), (3, 1, 1)]  # overlapping, fused and stride-1 windows
    old = _dispatch.get_num_threads()
    runs = []
    try:
        for nt in (1, 2):
            _dispatch.set_num_threads(nt)
            outs = []
            for k, s, pad in cases:
                y, am = max_pool2d(x, k, stride=s, padding=pad, return_argmax=True)
                dy = rng.standard_normal(y.shape).astype(dtype) if nt == 1 else runs[0][len(outs)][0]
                ya = avg_pool2d(x, k, stride=s, padding=pad)
                outs.append((dy, y, am, max_pool2d_grad(dy, x, k, stride=s, padding=pad),
                             max_pool2d_grad(dy, x, k, stride=s, padding=pad, argmax=am), ya,
                             avg_pool2d_grad(dy, x, k, stride=s, padding=pad, count_include_pad=True)))
            g = global_avg_pool2d(x)
            outs.append((g, global_avg_pool2d_grad(g, x)))
            runs.append(outs)
        # large enough that the 2-thread runs split the rows
        assert _dispatch.threads_for_bytes(x.nbytes) == 2
    finally:
        _dispatch.set_num_threads(old)
    for a, b in zip(runs[0], runs[1]):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_empty_batch_and_dtypes():
    x = np.zeros((0, 6, 6, 3), np.float32)
    assert max_pool2d(x, 2).shape == (0, 3, 3, 3)
    assert avg_pool2d_grad(np.zeros((0, 3, 3, 3)), x, 2).shape == x.shape
    assert global_avg_pool2d(x).shape == (0, 3)
    assert max_pool2d(np.ones((1, 4, 4, 1))).dtype == np.float64
    u8 = np.random.default_rng(0).integers(0, 255, (2, 6, 6, 3), dtype=np.uint8)
    y = max_pool2d(u8, 2)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, ref.max_pool2d(u8, 2))


def test_layouts_and_inputs_untouched():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 9, 5))
    dy = rng.standard_normal((2, 4, 4, 5))
    want_y, want_dx = ref.avg_pool2d(x, 2), ref.max_pool2d_grad(dy, x, 2)
    wide = np.zeros((2, 8, 18, 5))
    wide[:, :, ::2] = x
    ro = x.copy()
    ro.setflags(write=False)
    keep = [a.copy() for a in (wide, ro, dy)]
    for xx in (np.asfortranarray(x), ro, wide[:, :, ::2], x.tolist()):
        _close(avg_pool2d(xx, 2), want_y, np.float64)
        _close(max_pool2d_grad(dy, xx, 2), want_dx, np.float64)
    for a, c in zip((wide, ro, dy), keep):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("call, match", [
    (lambda x: max_pool2d(x[0]), "4-D"),
    (lambda x: avg_pool2d(x, 0), "pool_size"),
    (lambda x: max_pool2d(x, 2, stride=(1, 0)), "stride"),
    (lambda x: max_pool2d(x, 2, padding=-1), "padding"),
    (lambda x: avg_pool2d(x, 2, padding="full"), "padding"),
    (lambda x: max_pool2d(x, 9), "larger"),
    (lambda x: max_pool2d(x, 2, padding=2), "entirely in the padding"),
    (lambda x: avg_pool2d(x, 3, stride=2, padding=((0, 0), (0, 3))), "entirely in the padding"),
    (lambda x: max_pool2d_grad(np.ones((2, 2, 2, 3)), x, 2), "dy"),
    (lambda x: avg_pool2d_grad(np.ones((2, 3, 3, 4)), x, 2), "dy"),
    (lambda x: global_avg_pool2d(x[:, :0]), "pixels"),
    (lambda x: global_avg_pool2d_grad(np.ones((2, 4)), x), "dy"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.ones((2, 6, 6, 3), np.float32))


def test_bad_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="x"):
        max_pool2d(np.ones((1, 4, 4, 1), np.complex128))
    with pytest.raises(TypeError, match="dy"):
        avg_pool2d_grad(np.array([["s"]]), np.ones((1, 4, 4, 1)))


@pytest.mark.parametrize("level", LEVELS)
def test_large_outputs_streamed(simd, level):
    """Outputs of at least STREAM_BYTES take the non-temporal store path (aligned by the op)."""
    simd(level)
    rng = np.random.default_rng(11)
    x = _tied(rng, (2, 96, 96, 128))                   # 9.4 MB: dx is streamed
    assert x.nbytes >= STREAM_BYTES
    for k, s, p in [(2, None, 0), (3, 2, 1)]:
        y = ref.max_pool2d(x, k, stride=s, padding=p)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = max_pool2d_grad(dy, x, k, stride=s, padding=p)
        assert dx.ctypes.data % 64 == 0
        _close(dx, ref.max_pool2d_grad(dy, x, k, stride=s, padding=p), np.float32)
        _close(avg_pool2d_grad(dy, x, k, stride=s, padding=p), ref.avg_pool2d_grad(dy, x, k, stride=s, padding=p),
               np.float32)
    xs = _tied(rng, (1, 130, 130, 128))                # y of a 1x1 pool is streamed too
    _close(max_pool2d(xs, 1), xs, np.float32, exact=True)
    _close(avg_pool2d(xs, 1), xs, np.float32)


def test_reports_the_kernel_variant_and_skips_dx():
    from fastconv import _dispatch, ops

    x = np.random.default_rng(0).standard_normal((2, 8, 8, 5)).astype(np.float32)
    y, am = ops.max_pool2d(x, 2, return_argmax=True)
    assert _dispatch.last_kernel["max_pool2d"] == "window"
    ops.max_pool2d_grad(y, x, 2)
    assert _dispatch.last_kernel["max_pool2d_grad"] == "fused"
    ops.max_pool2d_grad(y, x, 2, argmax=am)
    assert _dispatch.last_kernel["max_pool2d_grad"] == "argmax"
    ops.avg_pool2d_grad(ops.avg_pool2d(x, 3, stride=2), x, 3, stride=2)
    assert _dispatch.last_kernel["avg_pool2d_grad"] == "gather"
    ops.global_avg_pool2d(x)
    assert _dispatch.last_kernel["global_avg_pool2d"] == "global"
    for grad, args in ((ops.max_pool2d_grad, (y, x, 2)), (ops.avg_pool2d_grad, (y, x, 2)),
                       (ops.global_avg_pool2d_grad, (y[:, 0, 0], x)),
                       (ops.global_max_pool2d_grad, (y[:, 0, 0], x))):
        assert grad(*args, need_dx=False) is None
    g = ops.global_max_pool2d(x)
    np.testing.assert_array_equal(g, x.max(axis=(1, 2)))
    dx = ops.global_max_pool2d_grad(np.ones_like(g), x)
    assert dx.sum() == g.size and (dx * x).sum() == pytest.approx(g.sum(), rel=1e-6)


def test_threads_by_bytes_moved():
    """A pool moving a few MB runs on one thread (waking a second costs about what it saves); a large
    one splits.  The bytes: x and y forward, about 2 x and y backward."""
    # a serial build (scripts/check_serial.sh, no OpenMP) runs every call on its one thread
    two = 2 if _dispatch._rt.have_openmp() else 1
    old = _dispatch.get_num_threads()
    try:
        _dispatch.set_num_threads(2)
        small = P._geometry("max_pool2d", np.empty((32, 28, 28, 32), np.float32), 2, None, 0)  # 4 MB
        big = P._geometry("max_pool2d", np.empty((8, 112, 112, 64), np.float32), 3, 2, 1)    # 32 MB
        assert [P._plan(small, 4, b).split.threads for b in (False, True)] == [1, 1]
        assert [P._plan(big, 4, b).split.threads for b in (False, True)] == [two, two]
        assert _dispatch.threads_for_bytes(_dispatch._MIN_BYTES_PER_THREAD * 2) == two
        assert _dispatch.threads_for_bytes(_dispatch._MIN_BYTES_PER_THREAD * 2 - 1) == 1
    finally:
        _dispatch.set_num_threads(old)
