"""Pooling, BatchNormalization and relu past the 32-bit limits (issue 10): element offsets, pixel
counts and window sizes beyond 2**31 - 1, checked against fastconv.reference or a closed form; and
the op's ValueError where a size must stay a C int.

Two kinds of big tensors keep each test within a few hundred MB of physical memory:
- lazy_zeros (tests/large.py) for inputs an op reads only a few rows of (pooling windows far apart);
- _tail_mapped for tensors an op reads or writes in full (a backward's dx, BatchNorm, relu): its
  first 2**31 elements or so are one small shared-memory block mapped over and over (all zeros to
  start), and only the last few MB, the tail where the offsets have passed 2**31, are memory of
  their own.  Every test makes the true values of the head the same in every alias (zeros, or one
  value per channel), so writes racing through different aliases agree, and checks the tail,
  prefilled with NaN, exactly or to float rounding.  A 32-bit offset that wraps lands in the head
  or in the guard page before the tensor and leaves tail values unwritten (or crashes).
The kernel reads every page of such a tensor through the page tables, so the process's RSS counts
each alias (up to ~9 GiB per tensor) while PSS and the cgroup see the blocks once.
"""
import sys

import numpy as np
import pytest
from large import INT32_MAX, lazy_zeros
from large import tail_mapped as _tail_mapped

from fastconv import _dispatch, activations
from fastconv import reference as ref
from fastconv._kernels import norm as _kn
from fastconv.ops import pool as P


def _nc(a, reduce):
    """Chunks of the norm plan for a kernel call on a ((M, C) or flat) array."""
    from fastconv.ops._plan import norm_plan

    rows, cols = (a.shape[0], a.shape[1]) if a.ndim == 2 else (a.size, 1)
    return norm_plan(rows, cols, reduce, 1).nchunks

pytestmark = pytest.mark.skipif(sys.maxsize <= 2**32, reason="needs a 64-bit address space")

F32 = np.float32

@pytest.fixture
def dx_tail_mapped(monkeypatch):
    """Make the pooling ops allocate outputs past 2**31 elements (dx) as _tail_mapped arrays with a NaN
    tail of info["tail"] elements; the flat index where the tail starts is stored in info["h"]."""
    info = {}
    real = P.empty_output

    def empty_output(shape, dtype):
        if np.prod(shape, dtype=np.int64) <= INT32_MAX:  # y of a forward run by the test
            return real(shape, dtype)
        a, info["h"] = _tail_mapped(shape, dtype, tail_elems=info["tail"], fill=np.nan, populate=True)
        return a

    monkeypatch.setattr(P, "empty_output", empty_output)
    return info


# ---- pooling ------------------------------------------------------------------------------------

# 1 x 16400 x 16384 x 8 float32: 2,149,580,800 elements (> 2**31), 8.6 GB of address space.  Windows
# 8192 rows apart: the last output row reads input rows 16384.. whose offsets (16384*16384*8 + ...)
# all pass 2**31.
BIG = (1, 16400, 16384, 8)
LAST = 16384


def _big_x(rng):
    x = lazy_zeros(BIG, F32)
    assert x.size > INT32_MAX
    x[0, LAST:] = rng.standard_normal((BIG[1] - LAST, BIG[2], BIG[3]), dtype=F32)
    x[0, 8192:8195] = rng.standard_normal((3, BIG[2], BIG[3]), dtype=F32)  # a middle window too
    return x


@pytest.mark.large
def test_max_pool_forward_and_argmax_past_2_31():
    """max_pool2d with return_argmax: the input offset (n*H + ih)*W*C + iw*C + c of the last output
    row passes 2**31 (x has 2.15e9 elements); y and the int32 argmax (ih*W + iw < 2**31) checked
    against the reference on the windows read."""
    rng = np.random.default_rng(0)
    x = _big_x(rng)
    y, am = P.max_pool2d(x, (2, 3), stride=8192, return_argmax=True)
    assert y.shape == (1, 3, 2, 8)
    for oh in (1, 2):
        crop = x[:, oh * 8192:oh * 8192 + 2]
        np.testing.assert_array_equal(y[:, oh], ref.max_pool2d(crop, (2, 3), stride=(2, 8192))[:, 0])
    plane = x.reshape(BIG[1] * BIG[2], BIG[3])
    picked = plane[am[0, 2], np.arange(8)]
    np.testing.assert_array_equal(picked, y[0, 2])
    assert am[0, 2].min() >= LAST * BIG[2]


@pytest.mark.large
def test_avg_pool_forward_past_2_31():
    """avg_pool2d (padding, count_include_pad=False): the input offsets of the last output row pass
    2**31 (x has 2.15e9 elements); checked against the reference on the rows read."""
    rng = np.random.default_rng(1)
    x = _big_x(rng)
    y = P.avg_pool2d(x, 3, stride=8192, padding=((0, 0), (1, 1)))
    np.testing.assert_allclose(y[:, 2], ref.avg_pool2d(x[:, LAST:LAST + 3], 3, stride=(3, 8192),
                                                       padding=((0, 0), (1, 1)))[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.large
@pytest.mark.parametrize("saved_argmax", [False, True], ids=["recomputed", "saved-argmax"])
def test_max_pool_backward_past_2_31(dx_tail_mapped, saved_argmax):
    """max_pool2d_grad: dx has 2.15e9 elements and its last rows sit past offset 2**31 (fused pass over
    output rows when the argmax is recomputed; gather per dx row with a saved argmax).  dy is zero
    but in the last output row, so the head of dx is zeros and its tail matches the reference."""
    rng = np.random.default_rng(2)
    x = _big_x(rng)
    am = P.max_pool2d(x, 2, stride=8192, return_argmax=True)[1] if saved_argmax else None
    dy = np.zeros((1, 3, 2, 8), F32)
    dy[:, 2] = rng.standard_normal((1, 2, 8))
    dx_tail_mapped["tail"] = (BIG[1] - LAST) * BIG[2] * BIG[3]
    dx = P.max_pool2d_grad(dy, x, 2, stride=8192, argmax=am)
    h = dx_tail_mapped["h"]
    assert h <= LAST * BIG[2] * BIG[3] and dx.size > INT32_MAX
    want = ref.max_pool2d_grad(dy[:, 2:], x[:, LAST:], 2, stride=8192)
    np.testing.assert_array_equal(dx[:, LAST:], want)
    assert (dx.reshape(-1)[h:LAST * BIG[2] * BIG[3]] == 0).all()  # tail rows before: the gaps
    assert dx.reshape(-1)[:h:1 << 20].max() == 0  # the head: zeros in every alias


@pytest.mark.large
def test_avg_pool_backward_overlapping_past_2_31(dx_tail_mapped):
    """avg_pool2d_grad, overlapping 3x3 windows at stride 2 (gather per dx row): dx (1, 2056, 16384, 64)
    has 2.16e9 elements, and the last dx rows (offsets past 2**31) match the reference built from
    the dy rows covering them; dy's head is zeros, so is dx's."""
    rng = np.random.default_rng(3)
    shape = (1, 2056, 16384, 64)
    x = lazy_zeros(shape, F32)  # only its shape is used
    oshape = (1, 1027, 8191, 64)
    dy, _ = _tail_mapped(oshape, F32, tail_elems=8 * 8191 * 64)
    dy[:, 1019:] = rng.standard_normal((1, 8, 8191, 64), dtype=F32)
    dx_tail_mapped["tail"] = 20 * 16384 * 64  # from row 2036: the head gets no window fed by dy
    dx = P.avg_pool2d_grad(dy, x, 3, stride=2)
    assert dx.size > INT32_MAX and dx_tail_mapped["h"] <= 2040 * 16384 * 64
    want = ref.avg_pool2d_grad(dy[:, 1019:], np.zeros((1, 18, 16384, 64), F32), 3, stride=2)
    np.testing.assert_allclose(dx[:, 2040:], want[:, 2:], rtol=1e-5, atol=1e-7)
    assert dx[0, 5, :100].max() == 0 and dx[0, 5, :100].min() == 0


@pytest.mark.large
def test_max_pool_backward_overlapping_past_2_31(dx_tail_mapped):
    """max_pool2d_grad, overlapping 3x3 windows at stride 2 (a gather per dx pixel from its covering
    windows, the argmax recomputed from x): dx (1, 2056, 16384, 64) has 2.16e9 elements; its last
    rows (offsets past 2**31) match the reference built from the x and dy rows covering them."""
    rng = np.random.default_rng(4)
    shape = (1, 2056, 16384, 64)
    x = lazy_zeros(shape, F32)
    x[0, 2038:] = rng.standard_normal((18, 16384, 64), dtype=F32)
    oshape = (1, 1027, 8191, 64)
    dy, _ = _tail_mapped(oshape, F32, tail_elems=8 * 8191 * 64)
    dy[:, 1019:] = rng.standard_normal((1, 8, 8191, 64), dtype=F32)
    dx_tail_mapped["tail"] = 20 * 16384 * 64  # from row 2036: the head gets no window fed by dy
    dx = P.max_pool2d_grad(dy, x, 3, stride=2)
    assert _dispatch.last_kernel["max_pool2d_grad"] == "gather"
    assert dx.size > INT32_MAX and dx_tail_mapped["h"] <= 2040 * 16384 * 64
    want = ref.max_pool2d_grad(dy[:, 1019:], np.array(x[:, 2038:]), 3, stride=2)
    np.testing.assert_allclose(dx[:, 2040:], want[:, 2:], rtol=1e-5, atol=1e-6)  # sums of up to 4 dy in float32
    assert dx[0, 5, :100].max() == 0 and dx[0, 5, :100].min() == 0


@pytest.mark.large
def test_global_avg_pool_past_2_31(dx_tail_mapped):
    """global_avg_pool2d and its gradient on x (2, 16400, 32768, 2): 2.15e9 elements, the second
    image's offsets n*H*W*C pass 2**31.  Before the fix its scratch (~40*H*W bytes a thread) failed
    with MemoryError; the means and the tail of dx (prefilled NaN) follow a closed form."""
    rng = np.random.default_rng(4)
    shape = (2, 16400, 32768, 2)
    x, h = _tail_mapped(shape, F32, tail_elems=1 << 22)
    tail = rng.normal(1.0, 0.5, x.size - h).astype(F32)
    x.reshape(-1)[h:] = tail
    y = P.global_avg_pool2d(x)
    hw = shape[1] * shape[2]
    want = tail.reshape(-1, 2).astype(np.float64).sum(0) / hw  # image 1; image 0 is all head zeros
    np.testing.assert_allclose(y[1], want, rtol=1e-5)
    assert (y[0] == 0).all()
    dy = np.array([[3.0, -5.0], [3.0, -5.0]], F32)  # the same per image: the aliased head agrees
    dx_tail_mapped["tail"] = 1 << 22
    dx = P.global_avg_pool2d_grad(dy, x)
    tail_px = dx.reshape(-1, 2)[dx_tail_mapped["h"] // 2:]
    np.testing.assert_allclose(tail_px, np.broadcast_to(dy[1] / hw, tail_px.shape), rtol=1e-6)
    np.testing.assert_allclose(dx[0, 3, :4], np.broadcast_to(dy[0] / hw, (4, 2)), rtol=1e-6)


def test_global_avg_pool_past_2_24_pixels():
    """global_avg_pool2d of an all-ones 8192 x 4096 image (2**25 pixels): one float32 running sum
    stops growing at 2**24 and gave 0.5; blocks of pixels go into float64 totals now."""
    y = P.global_avg_pool2d(np.ones((1, 8192, 4096, 3), F32))
    np.testing.assert_array_equal(y, np.ones((1, 3), F32))


def test_avg_pool_window_of_2_32_taps():
    """avg_pool2d / avg_pool2d_grad with a 65536 x 65536 window (KH*KW = 2**32 taps) and
    count_include_pad: the divisor KH*KW was an int product that wrapped to 0 (inf output)."""
    x = np.full((1, 1, 1, 1), 3.0, F32)
    kw = dict(padding=((65535, 0), (65535, 0)), count_include_pad=True)
    y = P.avg_pool2d(x, 65536, **kw)
    np.testing.assert_allclose(y.ravel(), [3.0 / 2**32], rtol=1e-6)
    dx = P.avg_pool2d_grad(np.ones_like(y), x, 65536, **kw)
    np.testing.assert_allclose(dx.ravel(), [1.0 / 2**32], rtol=1e-6)


def test_max_pool_refuses_window_past_int32():
    """A max window of more than INT32_MAX taps would wrap the int32 local argmax: ValueError."""
    x = np.ones((1, 1, 1, 1), F32)
    with pytest.raises(ValueError, match=r"KH\*KW = 4294967296.*pool_size=65536"):
        P.max_pool2d(x, 65536, padding=((65535, 0), (65535, 0)))
    with pytest.raises(ValueError, match=r"KH\*KW = 4294967296"):
        P.max_pool2d_grad(x, x, 65536, padding=((65535, 0), (65535, 0)))


@pytest.mark.large
def test_pool_refuses_dimension_past_int32():
    """x (1, 1, 2**31 + 64, 1): W does not fit the kernels' int geometry (it used to be truncated
    and pool the wrong columns): ValueError naming x.shape, before any kernel runs."""
    x = lazy_zeros((1, 1, 2**31 + 64, 1), F32)
    for call in (lambda: P.max_pool2d(x, (1, 2), stride=(1, 2**30)), lambda: P.avg_pool2d(x, 2),
                 lambda: P.global_avg_pool2d(x)):
        with pytest.raises(ValueError, match=r"x.shape=\(1, 1, 2147483712, 1\)"):
            call()


@pytest.mark.large
def test_max_pool_argmax_refused_past_int32_plane():
    """H*W = 131074*16384 > INT32_MAX: the int32 argmax ih*W + iw would wrap (it came back negative),
    so return_argmax and argmax= raise ValueError; without it the forward still works."""
    x = lazy_zeros((1, 131074, 16384, 1), F32)
    x[0, -2, 1, 0] = 7.0
    with pytest.raises(ValueError, match=r"H\*W = 2147516416.*return_argmax"):
        P.max_pool2d(x, 2, stride=65536, return_argmax=True)
    y = P.max_pool2d(x, 2, stride=(65536, 8192))
    assert y[0, 2, 0, 0] == 7.0 and y.sum() == 7.0
    with pytest.raises(ValueError, match=r"H\*W = 2147516416.*argmax"):
        P.max_pool2d_grad(y, x, 2, stride=(65536, 8192), argmax=np.zeros(y.shape, np.int32))


# ---- pooling with dilation and ceil_mode ----------------------------------------------

# On BIG: windows of 2 x 2 taps, 8000 rows / 3 columns apart, every 8192 rows / 8190 columns; ceil
# mode gives a third output row (its second tap, row 24384, is past the input) and column (taps
# 16380 and 16383, both inside), which floor mode would drop.
_DIL = {"stride": (8192, 8190), "dilation": (8000, 3), "ceil_mode": True}


def _dilated_taps(o, s, d, n):
    return [o * s + i * d for i in range(2) if o * s + i * d < n]


def _dilated_max(x, oh, ow):
    """(value, input-plane index) of the first maximum of window (oh, ow) per channel."""
    rows, cols = _dilated_taps(oh, 8192, 8000, BIG[1]), _dilated_taps(ow, 8190, 3, BIG[2])
    taps = [(r, c) for r in rows for c in cols]
    vals = np.stack([x[0, r, c] for r, c in taps])  # (taps, C)
    first = vals.argmax(axis=0)                       # argmax returns the first maximum
    return vals.max(axis=0), np.array([taps[t][0] * BIG[2] + taps[t][1] for t in first])


@pytest.mark.large
def test_dilated_ceil_max_pool_forward_past_2_31():
    """max_pool2d with dilation and ceil_mode: the last output row's window starts at input row
    16384 (offsets past 2**31) and its second tap is past the input; values and int32 argmax."""
    x = _big_x(np.random.default_rng(5))
    y, am = P.max_pool2d(x, 2, return_argmax=True, **_DIL)
    assert y.shape == (1, 3, 3, 8)
    for oh in range(3):
        for ow in range(3):
            v, a = _dilated_max(x, oh, ow)
            np.testing.assert_array_equal(y[0, oh, ow], v)
            np.testing.assert_array_equal(am[0, oh, ow], a)
    assert am[0, 2].min() >= LAST * BIG[2]


@pytest.mark.large
def test_dilated_ceil_max_pool_backward_past_2_31(dx_tail_mapped):
    """max_pool2d_grad with dilation and ceil_mode (the gather per dx row, argmax recomputed): dx
    has 2.15e9 elements; only the last output row's dy is non-zero, and it lands at dx offsets
    past 2**31, on the first maximum of each window."""
    rng = np.random.default_rng(6)
    x = _big_x(rng)
    dy = np.zeros((1, 3, 3, 8), F32)
    dy[:, 2] = rng.standard_normal((1, 3, 8))
    dx_tail_mapped["tail"] = (BIG[1] - LAST) * BIG[2] * BIG[3]
    dx = P.max_pool2d_grad(dy, x, 2, **_DIL)
    h = dx_tail_mapped["h"]
    assert h <= LAST * BIG[2] * BIG[3] and dx.size > INT32_MAX
    want = np.zeros((BIG[1] - LAST, BIG[2], BIG[3]), F32)
    for ow in range(3):
        _, a = _dilated_max(x, 2, ow)
        want[a // BIG[2] - LAST, a % BIG[2], np.arange(8)] += dy[0, 2, ow]
    np.testing.assert_array_equal(dx[0, LAST:], want)
    assert (dx.reshape(-1)[h:LAST * BIG[2] * BIG[3]] == 0).all()
    assert dx.reshape(-1)[:h:1 << 20].max() == 0


# ---- BatchNormalization and relu ----------------------------------------------------------------

# (M, C) = (2**25 + 2**16, 64): 2**31 + 2**22 elements; the tail is exactly the elements past 2**31.
M, C = 2**25 + 2**16, 64
TAIL = M * C - 2**31


def _isa():
    return _dispatch.level_for("batch_norm", F32), _dispatch.threads_for(M * C)


def _bn_input(seed, loc):
    x, h = _tail_mapped((M, C), F32, tail_elems=TAIL)
    assert h == 2**31
    rng = np.random.default_rng(seed)
    x.reshape(-1)[h:] = rng.normal(loc, 2.0, TAIL).astype(F32)
    return x, x[h // C:].astype(np.float64)


@pytest.mark.large
def test_batch_norm_training_and_inference_past_2_31():
    """bn_stats and bn_affine as BatchNormalization runs them in training (batch statistics) and in
    inference (moving statistics, fused relu6) on (M, C) with M*C = 2**31 + 2**22: the row offsets
    r*C and the chunk bounds M*j // nchunks pass 2**31.  The rows past 2**31 are random, the others
    zero, so mean, variance and output follow a closed form (the layer's math, reference.py's)."""
    isa, th = _isa()
    x, xt = _bn_input(5, 3.0)
    mean, var = np.empty(C), np.empty(C)
    _kn.bn_stats(x, mean, var, _nc(x, True), isa, th)
    want_mean = xt.sum(0) / M
    np.testing.assert_allclose(mean, want_mean, rtol=1e-9)
    np.testing.assert_allclose(var, (xt * xt).sum(0) / M - want_mean**2, rtol=1e-7)

    y, h = _tail_mapped((M, C), F32, tail_elems=TAIL, fill=np.nan, populate=True)
    for act, mu, sigma2 in ((0, mean, var), (2, np.linspace(-1, 1, C), np.linspace(0.5, 2, C))):
        a = np.linspace(0.5, 1.5, C) / np.sqrt(sigma2 + 1e-3)
        b = np.linspace(-1, 1, C)
        y.reshape(-1)[h:] = np.nan
        _kn.bn_affine(x, mu.astype(F32), a.astype(F32), b.astype(F32), y, act, _nc(x, False), isa, th)
        want = (xt - mu.astype(F32)) * a.astype(F32) + b.astype(F32)
        if act == 2:
            want = np.clip(want, 0, 6)
        np.testing.assert_allclose(y[h // C:], want, rtol=1e-5, atol=1e-5)
        head = -mu.astype(F32) * a.astype(F32) + b.astype(F32)  # x = 0
        if act == 2:
            head = np.clip(head, 0, 6)
        np.testing.assert_allclose(y[5], head, rtol=1e-5, atol=1e-6)


@pytest.mark.large
def test_batch_norm_backward_past_2_31():
    """BatchNormalization's backward (bn_dsums, then bn_dx with the layer's coefficients) on (M, C)
    with M*C = 2**31 + 2**22: offsets and chunk bounds pass 2**31.  dy and x are zero in the first
    2**31 elements, so the sums and dx = gamma*inv*(dy - mean(dy) - xhat*mean(dy*xhat))
    (reference.batch_norm_train_grad's formula) follow in closed form."""
    isa, th = _isa()
    x, xt = _bn_input(6, -1.0)
    dy, h = _tail_mapped((M, C), F32, tail_elems=TAIL)
    dyt = np.random.default_rng(7).standard_normal((TAIL // C, C)).astype(F32)
    dy[h // C:] = dyt
    dyt = dyt.astype(np.float64)
    mean = (xt.sum(0) / M).astype(F32)
    s1, s2 = np.empty(C), np.empty(C)
    _kn.bn_dsums(dy, x, None, 0, mean, s1, s2, _nc(dy, True), isa, th)
    np.testing.assert_allclose(s1, dyt.sum(0), rtol=1e-9)
    # dy is zero wherever x is, so the head adds nothing to sum dy * (x - mean)
    np.testing.assert_allclose(s2, (dyt * (xt.astype(F32) - mean)).sum(0), rtol=1e-9)  # x - mean in float32

    gamma, inv = np.linspace(0.5, 2, C), 1 / np.sqrt(np.linspace(0.5, 3, C))
    p = gamma * inv
    gb = -p * inv * inv * s2 / M
    gc = -p * s1 / M
    dx, h = _tail_mapped((M, C), F32, tail_elems=TAIL, fill=np.nan, populate=True)
    _kn.bn_dx(dy, x, None, 0, mean, p.astype(F32), gb.astype(F32), gc.astype(F32), dx, _nc(dy, False), isa,
              th)
    xhat = (xt - mean) * inv
    want = p * (dyt - s1 / M - xhat * (s2 * inv / M))
    np.testing.assert_allclose(dx[h // C:], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dx[7], p * (-s1 / M + mean * inv * (s2 * inv / M)), rtol=1e-4, atol=1e-6)


@pytest.mark.large
def test_relu_past_2_31():
    """relu forward (activations.relu with out=) and act_backward over 2**31 + 2**22 elements: the
    flat offsets i and the chunk bounds n*j // nchunks pass 2**31; the tail matches np.maximum and
    the mask y > 0."""
    x, h = _tail_mapped((M, C), F32, tail_elems=TAIL, populate=True)
    rng = np.random.default_rng(8)
    xt = rng.standard_normal(TAIL).astype(F32)
    x.reshape(-1)[h:] = xt
    y, _ = _tail_mapped((M, C), F32, tail_elems=TAIL, fill=np.nan, populate=True)
    assert activations.get("relu").forward(x, out=y) is y
    np.testing.assert_array_equal(y.reshape(-1)[h:], np.maximum(xt, 0))
    assert y[3].max() == 0
    # backward in place in x's buffer (dx may alias dy: element i reads dy[i], y[i], then writes)
    dyt = rng.standard_normal(TAIL).astype(F32)
    x.reshape(-1)[h:] = dyt
    _kn.act_backward(x.reshape(-1), y.reshape(-1), x.reshape(-1), 1, _nc(x.reshape(-1), False),
                     _dispatch.level_for("activation", F32), _dispatch.threads_for(M * C))
    np.testing.assert_array_equal(x.reshape(-1)[h:], np.where(xt > 0, dyt, 0))


@pytest.mark.large
def test_batch_norm_backward_relu_mask_from_x_past_2_31():
    """BatchNormalization's backward with a fused relu whose mask is recomputed from x
    ((x - mean) * fa + fb > 0, y not read: the fa / fb arguments) on the same (M, C): the masked sums
    and dx in the tail, and dx of the zero head, in closed form."""
    from fastconv.ops.norm import ACT_CODES

    isa, th = _isa()
    x, xt = _bn_input(8, 0.0)
    dy, h = _tail_mapped((M, C), F32, tail_elems=TAIL)
    dyt = np.random.default_rng(9).standard_normal((TAIL // C, C)).astype(F32)
    dy[h // C:] = dyt
    mean = (xt.sum(0) / M).astype(F32)
    fa = np.linspace(0.5, 1.5, C).astype(F32)
    fb = np.linspace(-0.3, 0.3, C).astype(F32)
    relu = ACT_CODES["relu"]
    g = np.where((xt.astype(F32) - mean) * fa + fb > 0, dyt, 0).astype(np.float64)
    s1, s2 = np.empty(C), np.empty(C)
    _kn.bn_dsums(dy, x, None, relu, mean, s1, s2, _nc(dy, True), isa, th, fa, fb)
    np.testing.assert_allclose(s1, g.sum(0), rtol=1e-9)
    np.testing.assert_allclose(s2, (g * (xt.astype(F32) - mean)).sum(0), rtol=1e-9)

    ga = np.linspace(0.5, 2, C).astype(F32)
    gb = (-1e-3 * s2 / M).astype(F32)
    gc = (-s1 / M).astype(F32)
    dx, h = _tail_mapped((M, C), F32, tail_elems=TAIL, fill=np.nan, populate=True)
    _kn.bn_dx(dy, x, None, relu, mean, ga, gb, gc, dx, _nc(dy, False), isa, th, fa, fb)
    want = g * ga + (xt - mean) * gb + gc
    np.testing.assert_allclose(dx[h // C:], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dx[7], -mean.astype(np.float64) * gb + gc, rtol=1e-4, atol=1e-6)  # g = 0 there
