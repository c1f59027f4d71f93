"""The few-channel row path of the gather convolution (src/conv_impl.h fc_rowk_rows): first layers
and transposed convolutions from a few channels, against the NumPy reference.

fc_rowk_rows reads the kernel rows of an output row in place when every column its real pixels
read lies inside x (the phantom pixels of a partial last tile may read on into the next row, never
past x's end), and otherwise copies the inside columns into a segment whose zero columns are
written once per call.  The cases below reach every branch: in place with and without a partial
last tile, the copy (padding), kernel rows kept in reverse order (the transposed conv, stride 1),
output rows that keep no kernel row at all (padding past the kernel), stride 2, 5x5 and 7x7 rows,
a partial channel block, outputs of at most one vector (fc_rowkh), each epilogue, float32 and float64, every SIMD level, 1 and 2 threads.
"""
import numpy as np
import pytest
from gradcheck import numeric_grad  # tests/gradcheck.py

import fastconv
from fastconv import _dispatch, ops
from fastconv import reference as ref
from fastconv._kernels import conv as conv_kernels
from fastconv.ops import _plan

RNG = np.random.default_rng(20261203)
LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
TOL = {np.float32: 2e-4, np.float64: 1e-10}


@pytest.fixture(autouse=True)
def _direct_algorithm():
    _dispatch.set_conv_algo("direct")
    yield
    _dispatch.set_conv_algo(None)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(request.param)
    yield request.param
    fastconv.set_num_threads(before)


@pytest.fixture(params=LEVELS)
def simd(request):
    yield _dispatch.set_simd(request.param)
    _dispatch.set_simd(None)


def rand(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def close(a, b, dtype):
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * scale)


ROWS = [
    # N, H, W, C, kernel, options; the comment says which branch of fc_rowk_rows the rows take
    (2, 9, 32, 3, 3, dict(padding="valid")),                      # in place, 30 = 5 full tiles
    (2, 9, 31, 1, 3, dict(padding="valid")),                      # in place, partial last tile
    (1, 7, 30, 2, 3, dict(padding="valid")),                      # partial tile, last row copied
    (3, 8, 28, 1, 3, dict(padding="same")),                       # copy (column padding)
    (2, 9, 51, 3, 3, dict(padding="valid", stride=2)),            # in place, stride 2
    (2, 11, 49, 4, 3, dict(padding="same", stride=2)),
    (2, 8, 24, 3, 3, dict(padding=((4, 4), (1, 1)))),             # rows with no kernel row kept
    (2, 10, 36, 3, 5, dict(padding="valid")),                     # 5x5 rows
    (2, 8, 28, 1, 5, dict(padding="same")),                       # LeNet's first layer
    (1, 13, 48, 1, 7, dict(padding=3, stride=2)),                 # 7x7 stem rows
    (2, 9, 27, 3, 3, dict(padding=((0, 2), (0, 3)))),             # in place on the left only
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ROWS, ids=lambda c: "x".join(map(str, c[:5])) + str(c[5]))
def test_rows_match_reference(case, dtype, threads, simd):
    N, H, W, C, k, options = case
    x = rand((N, H, W, C), dtype)
    x0 = x.copy()
    # a full channel block, a partial one, and few channels (fc_rowkh's 12 x 1-vector tile where
    # K <= one vector: 16 / 8 / 4 lanes on the levels, K = 6 as in LeNet's first layer)
    for K in (32, 16, 13, 8, 6, 3):
        w, b = rand((k, k, C, K), dtype), (None if K == 8 else rand((K,), dtype))
        y = ops.conv2d(x, w, b, **options)
        close(y, ref.conv2d(x, w, b, **options), dtype)
        if N * y.shape[1] >= 2 * threads:
            narrow = _plan.use_narrow(C, K, conv_kernels.narrow_vlen(_dispatch.simd_level(), dtype))
            assert _dispatch.last_kernel["conv2d"] == ("narrow" if narrow else "rowk")
    np.testing.assert_array_equal(x, x0)   # the input is never modified


@pytest.mark.parametrize("K", [32, 6])
@pytest.mark.parametrize("epilogue", [dict(relu=True), dict(activation="selu"), dict(activation="elu", alpha=0.5)])
def test_rows_epilogues_into_nan_filled_out(epilogue, K, threads):
    for N, H, W, C, k, options in ROWS[:5]:
        x, w, b = rand((N, H, W, C)), rand((k, k, C, K)), rand((K,))
        want = ref.conv2d(x, w, b, **options)
        act = epilogue.get("activation", "relu")
        want = ref.activation(want, act, epilogue.get("alpha"))
        out = np.full(want.shape, np.nan, np.float32)
        y = ops.conv2d(x, w, b, out=out, **options, **epilogue)
        assert y is out and not np.isnan(out).any()
        close(out, want, np.float32)
        assert _dispatch.last_kernel["conv2d"] == "rowk"


@pytest.mark.parametrize("C_in", [1, 3])
@pytest.mark.parametrize("options", [dict(padding=1), dict(padding=0), dict(padding="same")])
def test_transposed_from_few_channels_reads_rows_in_reverse(C_in, options, threads, simd):
    """conv_transpose2d at stride 1 reduces over C_in with the kernel rows in reverse x order
    (negative row stride in fc_rowk_rows)."""
    x, w, b = rand((2, 9, 30, C_in)), rand((3, 3, 32, C_in)), rand((32,))
    y = ops.conv_transpose2d(x, w, b, **options)
    close(y, ref.conv_transpose2d(x, w, b, **options), np.float32)
    assert _dispatch.last_kernel["conv_transpose2d"] == "rowk"


def test_finite_differences_through_rows():
    """float64: conv_transpose2d_grad's dx is conv2d of dy (3 channels) on the row path; conv2d's
    forward is checked through a loss whose gradient the reference gives."""
    x, w, b = rand((1, 5, 30, 8), np.float64), rand((3, 3, 3, 8), np.float64), rand((3,), np.float64)
    dy = rand(ops.conv_transpose2d(x, w, b, padding=1).shape, np.float64)
    dx, dw, db = ops.conv_transpose2d_grad(dy, x, w, padding=1)
    assert _dispatch.last_kernel["conv_transpose2d_grad"] == "rowk"

    def loss():
        return float((ops.conv_transpose2d(x, w, b, padding=1) * dy).sum())

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-7)
    xv, wv = rand((2, 7, 26, 3), np.float64), rand((3, 3, 3, 16), np.float64)
    g = rand(ops.conv2d(xv, wv).shape, np.float64)
    assert _dispatch.last_kernel["conv2d"] == "rowk"

    def loss2():
        return float((ops.conv2d(xv, wv) * g).sum())

    np.testing.assert_allclose(ops.conv2d_grad(g, xv, wv)[1], numeric_grad(loss2, wv), rtol=1e-6, atol=1e-7)


@pytest.mark.large
@pytest.mark.parametrize("K", [32, 6])
def test_rows_in_place_past_2_31_elements(K):
    """In-place kernel rows (valid padding) and fc_rowkh's 12 x 1-vector tile (K = 6) reading rows
    at offsets past 2**31 of a 2.15e9-element image: the fifth window starts at offset 2**31."""
    from large import INT32_MAX, lazy_zeros  # tests/large.py
    x = lazy_zeros((1, 2_100_000, 1024, 1))
    starts = [k * 524288 for k in range(5)]
    assert starts[-1] * 1024 == INT32_MAX + 1
    for r0 in starts:
        x[0, r0:r0 + 3] = rand((3, 1024, 1))
    w, b = rand((3, 3, 1, K)), rand((K,))
    y = ops.conv2d(x, w, b, stride=(524288, 1))
    assert y.shape == (1, 5, 1022, K) and _dispatch.last_kernel["conv2d"] == "rowk"
    for oy, r0 in enumerate(starts):
        close(y[:, oy], ref.conv2d(np.array(x[:, r0:r0 + 3]), w, b)[:, 0], np.float32)


@pytest.mark.parametrize("C, K, padding", [(1, 32, "same"), (3, 32, "valid"), (1, 6, "same"), (3, 16, "same")])
def test_rows_into_a_channel_slice(C, K, padding):
    """The first-layer rows (fc_rowk_rows) store at the output's pixel stride: a channel slice of a
    wider NaN-filled array (copy-free concatenation) gets the reference, and its neighbours stay NaN."""
    rng = np.random.default_rng(C * 100 + K)
    x = rng.standard_normal((4, 28, 30, C)).astype(np.float32)
    w = rng.standard_normal((3, 3, C, K)).astype(np.float32)
    want = ref.conv2d(x, w, padding=padding)
    wide = np.full(want.shape[:3] + (K + 8,), np.nan, np.float32)
    ops.conv2d(x, w, padding=padding, out=wide[..., 3:3 + K])
    assert _dispatch.last_kernel["conv2d"] == "rowk"
    np.testing.assert_allclose(wide[..., 3:3 + K], want, rtol=1e-5, atol=1e-5)
    assert np.isnan(wide[..., :3]).all() and np.isnan(wide[..., 3 + K:]).all()
