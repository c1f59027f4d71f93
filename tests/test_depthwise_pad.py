"""depthwise_conv2d on the small maps whose input rows the kernels read from the zero-padded row
cache (src/depthwise_impl.h dw_pads): forward and weight gradient against the NumPy reference at
every SIMD level, thread-count invariance on NaN-filled outputs, finite differences in float64.

The cache is used when the edge columns are a large enough share of the work and the KH padded
rows are small (forward: 24 KiB, weight gradient: 512 KiB); the shapes below sit on both sides of
each limit: both passes padded, only the weight gradient padded (256 channels @14), neither (a
padding past 64 columns, a long row), and the tile overhang past a row shorter than 8 pixels.
"""
import numpy as np
import pytest
from test_depthwise import _check, _close, _data, simd  # noqa: F401  (tests/test_depthwise.py; simd is a fixture)

from fastconv import _dispatch
from fastconv import reference as ref
from fastconv._kernels import depthwise as _k
from fastconv.ops import _plan
from fastconv.ops.depthwise import depthwise_conv2d, depthwise_conv2d_grad

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]

# (N, H, W, C, M, KH, KW, stride, padding, dilation)
PADDED = [
    (2, 7, 7, 128, 1, 3, 3, 1, 1, 1),                  # MobileNet's 7x7: both passes padded
    (2, 14, 14, 256, 1, 3, 3, 1, "same", 1),           # forward cache > 24 KiB: only the weight gradient
    (3, 5, 6, 24, 1, 3, 3, 1, "same", 1),              # OW < 8: the tile runs into the right pad
    (2, 14, 13, 20, 1, 5, 5, 2, 1, 1),                 # EfficientNet's 5x5 stride 2, odd width
    (2, 9, 10, 16, 2, 3, 3, 1, 1, 1),                  # depth multiplier: padded expanded rows
    (2, 8, 9, 16, 1, 3, 3, 1, 2, 2),                   # dilation 2: the generic tile on padded rows
    (1, 6, 7, 12, 1, 3, 5, (1, 2), ((1, 1), (2, 2)), 1),
    (1, 4, 5, 16, 1, 3, 9, 1, 4, 1),                   # 9 taps: weight-gradient tiles of 7 + 2 columns
    (2, 9, 9, 17, 1, 7, 7, 1, 3, 1),                   # channel tail (17) on padded rows
    (1, 5, 3, 8, 1, 2, 4, 3, ((0, 1), (3, 0)), 1),     # stride 3, one-sided padding
]
UNPADDED = [
    (1, 4, 6, 16, 1, 3, 3, 1, ((1, 1), (70, 70)), 1),  # left padding past 64 columns
    (1, 3, 600, 64, 1, 3, 3, 1, 1, 1),                 # long rows: few edge columns per row
    (1, 6, 40, 32, 1, 3, 3, 2, 1, 1),                  # stride 2 @40: the copy costs more than it saves
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("cfg", PADDED + UNPADDED)
def test_matches_reference(simd, level, cfg):
    simd(level)
    n, h, w, c, m, kh, kw, s, p, d = cfg
    for dtype in (np.float32, np.float64):
        x, wt, b = _data(np.random.default_rng(c + h), n, h, w, c, m, kh, kw, dtype)
        kws = {"stride": s, "padding": p, "dilation": d}
        x0, w0 = x.copy(), wt.copy()
        _check(x, wt, b, dtype, **kws)
        np.testing.assert_array_equal(x, x0)  # the cache copies rows, never writes x
        np.testing.assert_array_equal(wt, w0)


def _raw(x, w, b, s, p, d, isa, nthreads):
    """The kernels with the plan's split for nthreads threads, on NaN-filled outputs."""
    pads = ref.resolve_padding(p, x.shape[1:3], w.shape[:2], s, d)
    yshape = ref.depthwise_conv2d(x[:1], w, None, stride=s, padding=pads, dilation=d).shape[1:]
    geo = (*x.shape, w.shape[3], *yshape[:2], *w.shape[:2], *s, pads[0][0], pads[1][0], *d)
    fwd = _plan.depthwise_plan(geo, x.dtype.itemsize, False, nthreads)
    bwd = _plan.depthwise_plan(geo, x.dtype.itemsize, True, nthreads)
    y = np.full((x.shape[0],) + yshape, np.nan, x.dtype)
    _k.forward(x, w, b, y, geo, fwd.split.args(), isa)
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(x.dtype)
    dx = np.full(x.shape, np.nan, x.dtype)
    dw = np.full(w.shape, np.nan, x.dtype)
    db = np.full(b.shape, np.nan, x.dtype)
    _k.backward(x, dy, w, dx, dw, db, geo, bwd.block_rows, bwd.split.args(), isa)
    return y, dx, dw, db


@pytest.mark.parametrize("level", LEVELS)
def test_threads_agree_and_outputs_fully_written(level):
    isa = _dispatch.LEVELS[level]
    rng = np.random.default_rng(11)
    for n, h, w, c, m, k, s, p, d in [(4, 7, 7, 32, 1, 3, (1, 1), 1, (1, 1)),
                                      (3, 14, 13, 16, 2, 5, (2, 2), 1, (1, 1)),
                                      (5, 6, 5, 24, 1, 3, (1, 1), "same", (2, 1))]:
        x, wt, b = _data(rng, n, h, w, c, m, k, k)
        one = _raw(x, wt, b, s, p, d, isa, 1)
        for nt in (2, 3):
            many = _raw(x, wt, b, s, p, d, isa, nt)
            for a in many:
                assert np.isfinite(a).all()
            np.testing.assert_array_equal(one[0], many[0])
            np.testing.assert_array_equal(one[1], many[1])
            np.testing.assert_allclose(one[2], many[2], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(one[3], many[3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg", [(2, 7, 7, 4, 1, 3, 3, 1, 1, 1), (1, 9, 8, 3, 2, 5, 5, 2, 1, 1)])
def test_finite_differences_float64(cfg):
    n, h, w, c, m, kh, kw, s, p, d = cfg
    rng = np.random.default_rng(3)
    x, wt, b = _data(rng, n, h, w, c, m, kh, kw, np.float64)
    kws = {"stride": s, "padding": p, "dilation": d}
    dy = rng.standard_normal(depthwise_conv2d(x, wt, b, **kws).shape)
    grads = depthwise_conv2d_grad(dy, x, wt, **kws)
    eps = 1e-6

    def loss(xx, ww, bb):
        return float(np.sum(depthwise_conv2d(xx, ww, bb, **kws) * dy))

    for grad, which in zip(grads, range(3)):
        v = rng.standard_normal(grad.shape)
        args_p, args_m = [x, wt, b], [x, wt, b]
        args_p[which] = args_p[which] + eps * v
        args_m[which] = args_m[which] - eps * v
        fd = (loss(*args_p) - loss(*args_m)) / (2 * eps)
        assert abs(fd - float(np.sum(grad * v))) < 1e-6 * (1 + abs(fd))


@pytest.mark.parametrize("shape", [(1, 3, 3, 5), (2, 7, 7, 128)])
def test_outputs_are_cache_line_aligned(shape):
    """y and dx start on a 64-byte boundary at every size (whole-line vector stores)."""
    rng = np.random.default_rng(2)
    x, wt, b = _data(rng, *shape, 1, 3, 3)
    y = depthwise_conv2d(x, wt, b, padding="same")
    dx = depthwise_conv2d_grad(np.ones_like(y), x, wt, padding="same")[0]
    assert y.ctypes.data % 64 == 0 and dx.ctypes.data % 64 == 0
    assert y.flags.c_contiguous and dx.flags.c_contiguous
