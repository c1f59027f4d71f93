"""depthwise_conv2d and its gradients on inputs whose element offsets pass 2**31 (issue 10).

The depthwise kernels keep rows, columns and channels in int and must form every offset from them
in 64-bit.  Each test builds one tensor of more than 2**31 float32 elements with lazy_zeros (8.6 GB
of address space) and picks a stride or padding under which the op reads only a few rows or
columns near its end, so resident memory stays in the megabytes (the weight gradient of the
padding case also reads, without writing, every page of dy: those map the shared zero page).
Results are compared with fastconv.reference on the equivalent small problem: the same rows or
columns cut out, with the stride or padding shrunk to match.
"""
import numpy as np
import pytest

import fastconv
from fastconv import reference as ref
from large import INT32_MAX, lazy_zeros

pytestmark = pytest.mark.large

W_ROW = 16384  # pixels per row of the many-rows cases


def _rows_past_int32(width, channels):
    """Rows of `width` pixels of `channels` so that the last row starts past element 2**31."""
    return -(-(INT32_MAX + 1) // (width * channels)) + 4


def _fill(a, index, rng):
    """a[index] = random values (touching only those pages); returns the values written."""
    vals = rng.standard_normal(a[index].shape).astype(a.dtype)
    a[index] = vals
    return vals


def _close(got, want):
    """float32 sums of up to 32768 products against the reference's float64: an error scaled by the
    largest value (a wrapped offset reads the wrong rows, far outside this)."""
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


# (C, M): 8x1 runs the vector kernels (AVX-512 hands 8 channels to AVX2), 8x2 the depth-multiplier
# row cache (its source offset is tag*W*C), 3x1 the scalar code for fewer channels than a vector.
CHANNELS = [(8, 1), (8, 2), (3, 1)]


@pytest.mark.parametrize("c,m", CHANNELS)
def test_forward_rows_past_int32(c, m):
    """Forward: the offset of input row ih, (n*H + ih)*W*C, passes 2**31 for the last rows.

    x (1, H, 16384, C) with H*W*C > 2**31; a 3x3 window with stride H-3 reads rows 0..2 and
    H-3..H-1 only, so y (1, 2, W, C*M) equals the reference on those six rows with stride 3."""
    rng = np.random.default_rng(0)
    h = _rows_past_int32(W_ROW, c)
    x = lazy_zeros((1, h, W_ROW, c))
    assert (h - 1) * W_ROW * c > INT32_MAX
    _fill(x, np.s_[:, :3], rng)
    _fill(x, np.s_[:, h - 3:], rng)
    w = rng.standard_normal((3, 3, c, m)).astype(np.float32)
    bias = rng.standard_normal(c * m).astype(np.float32)
    y = fastconv.depthwise_conv2d(x, w, bias, stride=(h - 3, 1), padding=((0, 0), (1, 1)))
    xs = np.concatenate([x[:, :3], x[:, h - 3:]], axis=1)
    _close(y, ref.depthwise_conv2d(xs, w, bias, stride=(3, 1), padding=((0, 0), (1, 1))))


def test_forward_long_row():
    """Forward: column offsets iw*C within one row pass 2**31 (a row of 2**24 + 64 pixels of 128
    channels); a 1x3 window with stride W-3 reads columns 0..2 and W-3..W-1 only."""
    rng = np.random.default_rng(1)
    c, wd = 128, 2**24 + 64
    x = lazy_zeros((1, 1, wd, c))
    assert (wd - 1) * c > INT32_MAX
    _fill(x, np.s_[:, :, :3], rng)
    _fill(x, np.s_[:, :, wd - 3:], rng)
    w = rng.standard_normal((1, 3, c, 1)).astype(np.float32)
    y = fastconv.depthwise_conv2d(x, w, stride=(1, wd - 3))
    xs = np.concatenate([x[:, :, :3], x[:, :, wd - 3:]], axis=2)
    _close(y, ref.depthwise_conv2d(xs, w, stride=(1, 3)))


@pytest.mark.parametrize("c,m", [(8, 1), (4, 2)])
def test_input_gradient_dy_rows_past_int32(c, m):
    """Input gradient: the offset of dy row oh, (n*OH + oh)*OW*K, passes 2**31.

    A 2-row x with P rows of top padding has an output of P rows (3x3 window), P*W*K > 2**31;
    only dy's last two rows reach x, so dx, dw and db equal the reference on those two rows with
    the top padding cut to 2 (every other dy row is zero).  The weight-gradient half of the pass
    reads all of dy, so this also runs its dy row offsets past 2**31."""
    rng = np.random.default_rng(2)
    k = c * m
    p = _rows_past_int32(W_ROW, k)
    x = rng.standard_normal((1, 2, W_ROW, c)).astype(np.float32)
    w = rng.standard_normal((3, 3, c, m)).astype(np.float32)
    dy = lazy_zeros((1, p, W_ROW, k))
    assert (p - 1) * W_ROW * k > INT32_MAX
    _fill(dy, np.s_[:, p - 2:], rng)
    dx, dw, db = fastconv.depthwise_conv2d_grad(dy, x, w, padding=((p, 0), (1, 1)))
    want = ref.depthwise_conv2d_grad(dy[:, p - 2:], x, w, padding=((2, 0), (1, 1)))
    for got, exp in zip((dx, dw, db), want):
        _close(got, exp)


def test_input_gradient_long_dy_row():
    """Input gradient: dy column offsets ow*K within one row pass 2**31 (a 64-pixel x row with
    2**24 + 64 pixels of left padding, 128 channels, so dy's row has 2**24 + 126 pixels); x reads
    only dy's last 66 columns (a stride-1 phase: the register tile that loads each dy column once)."""
    rng = np.random.default_rng(5)
    c, wd, pad = 128, 64, 2**24 + 64
    x = rng.standard_normal((1, 1, wd, c)).astype(np.float32)
    w = rng.standard_normal((1, 3, c, 1)).astype(np.float32)
    ow = wd + pad - 2
    dy = lazy_zeros((1, 1, ow, c))
    assert (pad - 2) * c > INT32_MAX
    _fill(dy, np.s_[:, :, pad - 2:], rng)
    dx, dw, db = fastconv.depthwise_conv2d_grad(dy, x, w, padding=((0, 0), (pad, 0)))
    want = ref.depthwise_conv2d_grad(dy[:, :, pad - 2:], x, w, padding=((0, 0), (2, 0)))
    for got, exp in zip((dx, dw, db), want):
        _close(got, exp)


@pytest.mark.parametrize("c,m", CHANNELS)
def test_weight_gradient_rows_past_int32(c, m):
    """Weight gradient: the offset of x row ih, (n*H + ih)*W*C, passes 2**31 (x as in the forward
    rows test, stride H-3); need_dx=False since dx would be the whole 8.6 GB."""
    rng = np.random.default_rng(3)
    h = _rows_past_int32(W_ROW, c)
    x = lazy_zeros((1, h, W_ROW, c))
    _fill(x, np.s_[:, :3], rng)
    _fill(x, np.s_[:, h - 3:], rng)
    w = rng.standard_normal((3, 3, c, m)).astype(np.float32)
    dy = rng.standard_normal((1, 2, W_ROW, c * m)).astype(np.float32)
    dx, dw, db = fastconv.depthwise_conv2d_grad(dy, x, w, stride=(h - 3, 1), padding=((0, 0), (1, 1)),
                                                need_dx=False)
    assert dx is None
    xs = np.concatenate([x[:, :3], x[:, h - 3:]], axis=1)
    _, dw_ref, db_ref = ref.depthwise_conv2d_grad(dy, xs, w, stride=(3, 1), padding=((0, 0), (1, 1)))
    _close(dw, dw_ref)
    _close(db, db_ref)


def test_weight_gradient_long_row():
    """Weight gradient: column offsets iw*C within one x row pass 2**31 (x as in the forward long
    row test, stride W-3)."""
    rng = np.random.default_rng(4)
    c, wd = 128, 2**24 + 64
    x = lazy_zeros((1, 1, wd, c))
    _fill(x, np.s_[:, :, :3], rng)
    _fill(x, np.s_[:, :, wd - 3:], rng)
    w = rng.standard_normal((1, 3, c, 1)).astype(np.float32)
    dy = rng.standard_normal((1, 1, 2, c)).astype(np.float32)
    _, dw, db = fastconv.depthwise_conv2d_grad(dy, x, w, stride=(1, wd - 3), need_dx=False)
    xs = np.concatenate([x[:, :, :3], x[:, :, wd - 3:]], axis=2)
    _, dw_ref, db_ref = ref.depthwise_conv2d_grad(dy, xs, w, stride=(1, 3))
    _close(dw, dw_ref)
    _close(db, db_ref)


@pytest.mark.parametrize("kwargs,message", [
    # (values of 2**31 and more are refused earlier, by fastconv._shapes, naming the argument; a
    # stride past the input is answered, see tests/test_input_handling.py)
    (dict(x=(1, 4, 4, 2), w=(1, 1, 2, 1), padding=((0, 0), (2**31 - 10, 0))), "along W"),
    (dict(x=(1, 4, 4, 2), w=(3, 1, 2, 1), dilation=(2**29, 1), padding=((2**30 - 8, 2**30 - 8), (0, 0))),
     "along H"),
    (dict(x=(1, 4, 4, 2), w=(1, 1, 2, 1), dilation=(1, 2**31 - 1)), "dilation"),
])
def test_sizes_an_int_cannot_hold_are_refused(kwargs, message):
    """Geometry whose row/column positions would wrap the kernels' int is refused before any kernel
    runs, with the axis and the shapes in the message (these inputs are tiny)."""
    x = np.ones(kwargs.pop("x"), np.float32)
    w = np.ones(kwargs.pop("w"), np.float32)
    with pytest.raises(ValueError, match=message) as err:
        fastconv.depthwise_conv2d(x, w, **kwargs)
    assert f"x.shape={x.shape}" in str(err.value)
    with pytest.raises(ValueError, match=message):
        fastconv.depthwise_conv2d_grad(np.ones((1, 1, 1, 2), np.float32), x, w, **kwargs)


def test_channels_times_multiplier_past_int32_is_refused():
    """K = C*M is an int in the kernels: C*M past 2**31 - 65 is refused (w is 8 GiB of address
    space, never touched)."""
    x = np.ones((1, 1, 1, 2**16), np.float32)
    w = lazy_zeros((1, 1, 2**16, 2**15))
    with pytest.raises(ValueError, match=r"C\*M = 2147483648"):
        fastconv.depthwise_conv2d(x, w)


def test_input_gradient_wide_stride_and_kernel():
    """Input gradient with stride 2**20 and a 2048-wide kernel: the per-phase tap lists were sw*KW
    entries (48 GiB of scratch, indexed ph*KW in int) and built in nph*KW steps; x is 32 MiB."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 1, 2**20, 8)).astype(np.float32)
    w = rng.standard_normal((1, 2048, 8, 1)).astype(np.float32)
    kwargs = dict(stride=(1, 2**20), padding=((0, 0), (5, 0)))
    dy = rng.standard_normal((1, 1, 1, 8)).astype(np.float32)
    got = fastconv.depthwise_conv2d_grad(dy, x, w, **kwargs)
    for g, e in zip(got, ref.depthwise_conv2d_grad(dy, x, w, **kwargs)):
        _close(g, e)
