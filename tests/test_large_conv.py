"""The convolution family at sizes past the points where a 32-bit index would wrap.

Each test names the quantity it pushes past its limit.  Tensors of more than 2**31 elements come
from lazy_zeros (tests/large.py): only the rows an op reads are ever touched, so a strided window
that reads a few rows near the end of an 8.6 GB tensor costs a few MB.  Results are checked against
the NumPy reference on the rows involved, or against a closed form.
"""
import numpy as np
import pytest
from large import INT32_MAX, lazy_zeros  # tests/large.py

import fastconv as fc
from fastconv import _dispatch, ops
from fastconv import reference as ref

pytestmark = pytest.mark.large
RNG = np.random.default_rng(10)


def rand(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def close(got, want, tol=2e-4):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def test_pointwise_row_past_the_tile_split_product():
    """1x1 stride-1 convs run as one row of N*H*W = 131,072 pixels; the row-tile split formed
    j * OW (tile index times row length) in 32 bits, which wraps past 2**31 from ~113,510 pixels."""
    x = np.ones((32, 64, 64, 8), np.float32)
    y = fc.conv2d(x, np.ones((1, 1, 8, 16), np.float32))
    assert _dispatch.last_kernel["conv2d"] == "tiles"
    assert np.count_nonzero(y != 8.0) == 0
    xr, wr, br = rand((32, 64, 64, 8)), rand((1, 1, 8, 16)), rand((16,))
    yr = fc.conv2d(xr, wr, br).reshape(-1, 16)
    close(yr, xr.reshape(-1, 8) @ wr[0, 0] + br)


def test_pointwise_gradients_on_a_long_row():
    """The input gradient of a 1x1 conv on 131,072 pixels (relative errors of 1e18 before), and its
    weight gradient, against the matrix products they are."""
    x, w, dy = rand((32, 64, 64, 8)), rand((1, 1, 8, 16)), rand((32, 64, 64, 16))
    dx, dw, db = fc.conv2d_grad(dy, x, w)
    x2, dy2 = x.reshape(-1, 8).astype(np.float64), dy.reshape(-1, 16).astype(np.float64)
    close(dx.reshape(-1, 8), dy2 @ w[0, 0].T.astype(np.float64))
    close(dw[0, 0], x2.T @ dy2, tol=1e-3)
    close(db, dy2.sum(0), tol=1e-3)


def test_dense_on_131072_rows():
    """Dense is a 1x1 conv over one row of N pixels: N = 131,072 passes the same tile-split limit."""
    x, w, b = rand((131072, 24)), rand((24, 10)), rand((10,))
    close(ops.dense(x, w, b), x @ w + b)
    dy = rand((131072, 10))
    dx, dw, db = ops.dense_grad(dy, x, w)
    close(dx, dy @ w.T)
    close(dw, x.astype(np.float64).T @ dy.astype(np.float64), tol=1e-3)
    close(db, dy.astype(np.float64).sum(0), tol=1e-3)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c_in, c_out, path", [(8, 16, "tiles"), (32, 2, "narrow")])
def test_transposed_conv_on_rows_past_the_tile_split_product(c_in, c_out, path, stride):
    """conv_transpose2d on a row of 120,000 input pixels (heap corruption before): each stride
    phase is a gather conv over a row of 120,000+ pixels, past the ~113,510 pixels where the
    32-bit j * OW of the row-tile split wrapped and tiles wrote before the output."""
    # 32 reduction channels fill the narrow kernel's vector at every SIMD level (4, 8 or 16 floats)
    x, w = rand((1, 1, 120000, c_in)), rand((3, 3, c_out, c_in))
    y = fc.conv_transpose2d(x, w, stride=stride)
    assert y.shape == (1, 3, 119999 * stride + 3, c_out)
    assert _dispatch.last_kernel["conv_transpose2d"] == path
    close(y, ref.conv_transpose2d(x, w, stride=stride))


def _rows_past_int32(row_elems):
    """First image row whose element offset is past 2**31 - 1 (rows of row_elems elements)."""
    return -(-(INT32_MAX + 1) // row_elems)


def test_forward_tiles_read_past_2_31_elements():
    """Gather tiles reading rows at element offsets past 2**31 of a 2.15e9-element input: the
    third output row's window starts at row 16,384, offset exactly 2**31."""
    shape = (1, 16400, 16384, 8)
    x = lazy_zeros(shape)
    first = _rows_past_int32(16384 * 8)
    assert first == 16384 and x.size > INT32_MAX
    for r0 in (0, 8192, 16384):
        x[0, r0:r0 + 3] = rand((3, 16384, 8))
    w = rand((3, 3, 8, 16))
    y = fc.conv2d(x, w, stride=(8192, 1))
    assert y.shape == (1, 3, 16382, 16) and _dispatch.last_kernel["conv2d"] == "tiles"
    for oy, r0 in enumerate((0, 8192, 16384)):
        close(y[:, oy], ref.conv2d(np.array(x[:, r0:r0 + 3]), w)[:, 0])


@pytest.mark.parametrize("planar, k", [(True, 16), (False, 16), (False, 20)],
                         ids=["planar", "tiles", "tiles-masked-tail"])
def test_weight_gradient_reads_past_2_31_elements(monkeypatch, planar, k):
    """The weight gradient reduces over x rows at element offsets past 2**31 (same input), on both
    of its kernels; 20 output channels end in a masked vector (float32 AVX2 / AVX-512)."""
    from fastconv.ops import conv as conv_ops
    monkeypatch.setattr(conv_ops, "_force_planar_wgrad", planar)
    x = lazy_zeros((1, 16400, 16384, 8))
    for r0 in (0, 8192, 16384):
        x[0, r0:r0 + 3] = rand((3, 16384, 8))
    w, dy = rand((3, 3, 8, k)), rand((1, 3, 16382, k))
    _, dw, db = fc.conv2d_grad(dy, x, w, stride=(8192, 1), need_dx=False)
    want = sum(ref.conv2d_grad(dy[:, oy:oy + 1], np.array(x[:, r0:r0 + 3]), w)[1]
               for oy, r0 in enumerate((0, 8192, 16384)))
    close(dw, want, tol=1e-3)
    close(db, dy.astype(np.float64).sum((0, 1, 2)), tol=1e-3)


def test_few_channel_rows_read_past_2_31_elements():
    """First-layer rows (one channel, the constant-shape fc_rowk tile) reading rows at offsets
    past 2**31 of a 2.15e9-element image: the fifth window starts at row 2**21, offset 2**31."""
    x = lazy_zeros((1, 2_100_000, 1024, 1))
    starts = [k * 524288 for k in range(5)]
    assert starts[-1] * 1024 == INT32_MAX + 1
    for r0 in starts:
        x[0, r0:r0 + 3] = rand((3, 1024, 1))
    w = rand((3, 3, 1, 32))
    y = fc.conv2d(x, w, stride=(524288, 1))
    assert y.shape == (1, 5, 1022, 32) and _dispatch.last_kernel["conv2d"] == "rowk"
    for oy, r0 in enumerate(starts):
        close(y[:, oy], ref.conv2d(np.array(x[:, r0:r0 + 3]), w)[:, 0])


def test_narrow_output_reads_past_2_31_elements():
    """The narrow-output kernel (2 output channels, vectors over 16 input channels) reading rows
    at offsets past 2**31 of a 2.15e9-element input: the last window starts at row 8,192."""
    x = lazy_zeros((1, 8200, 16384, 16))
    for r0 in (0, 4096, 8192):
        x[0, r0:r0 + 3] = rand((3, 16384, 16))
    assert 8192 * 16384 * 16 == INT32_MAX + 1
    w, b = rand((3, 3, 16, 2)), rand((2,))
    y = fc.conv2d(x, w, b, stride=(4096, 1))
    assert y.shape == (1, 3, 16382, 2) and _dispatch.last_kernel["conv2d"] == "narrow"
    for oy, r0 in enumerate((0, 4096, 8192)):
        close(y[:, oy], ref.conv2d(np.array(x[:, r0:r0 + 3]), w, b)[:, 0])


def test_geometry_past_the_int_fields_is_refused():
    """Sizes the kernels' 32-bit geometry cannot hold are refused before any kernel runs, naming
    the quantity; a stride past the input is not refused but answered (it changes nothing)."""
    x, w = rand((1, 5, 5, 2)), rand((3, 3, 2, 4))
    for stride in (7, 2**30, 2**31 - 1):
        close(fc.conv2d(x, w, stride=stride), ref.conv2d(x, w, stride=3))
        dx, dw, db = fc.conv2d_grad(np.ones((1, 1, 1, 4), np.float32), x, w, stride=stride)
        for got, want in zip((dx, dw, db), ref.conv2d_grad(np.ones((1, 1, 1, 4), np.float32), x, w, stride=3)):
            close(got, want)
    with pytest.raises(ValueError, match="padded height"):
        fc.conv2d(x, w, padding=((2**30, 0), (0, 0)), stride=(2**31 - 1, 1))
    with pytest.raises(ValueError, match="input width"):
        fc.conv2d(lazy_zeros((1, 1, 2**30, 1)), rand((1, 1, 1, 1)))


def test_narrow_output_channel_tail_past_2_31_elements():
    """The narrow kernel's reduction tail (24 input channels: one full vector and a masked 8-lane
    load on AVX-512, FC_LD_TAIL) reading rows at offsets past 2**31: the last window starts at row
    5,462 of a 16,384 x 24 row, element 2,147,745,792."""
    x = lazy_zeros((1, 5470, 16384, 24))
    starts = (0, 2731, 5462)
    assert starts[-1] * 16384 * 24 > INT32_MAX
    for r0 in starts:
        x[0, r0:r0 + 3] = rand((3, 16384, 24))
    w, b = rand((3, 3, 24, 2)), rand((2,))
    y = fc.conv2d(x, w, b, stride=(2731, 1))
    assert y.shape == (1, 3, 16382, 2) and _dispatch.last_kernel["conv2d"] == "narrow"
    for oy, r0 in enumerate(starts):
        close(y[:, oy], ref.conv2d(np.array(x[:, r0:r0 + 3]), w, b)[:, 0])


def test_pointwise_pixel_row_writes_past_2_31_elements():
    """A 1x1 conv runs as one row of N*H*W pixels (fc_gconv_pixel_row): with 24 outputs per pixel
    (a full block and a partial one: tile pairs on AVX2) y passes 2**31 elements.  y's head is one
    small block mapped over and over (x is zero there, so every alias gets zeros), its tail is its
    own memory, prefilled with NaN and checked against the matrix product."""
    from large import tail_mapped
    k, pixels = 24, (INT32_MAX // 24) + 4096
    x = lazy_zeros((1, 1, pixels, 1))
    tail = 4096 + 64
    x[0, 0, -tail:] = rand((tail, 1))
    w, b = rand((1, 1, 1, k)), np.zeros(k, np.float32)
    y, h = tail_mapped((1, 1, pixels, k), np.float32, tail_elems=tail * k, fill=np.nan, populate=True)
    assert y.size > INT32_MAX
    fc.conv2d(x, w, b, out=y)
    assert _dispatch.last_kernel["conv2d"] == "tiles"
    got = y.reshape(-1, k)[-tail:]
    close(got, np.array(x[0, 0, -tail:]) @ w[0, 0])
    assert (y.reshape(-1)[h:y.size - tail * k] == 0).all()   # own memory before the checked tail
