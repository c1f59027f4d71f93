"""The norm family's element-wise sums (src/norm_impl.h fc_add_act, src/norm.pyx add_act / add_rows)
and their ops (fastconv/ops/norm.py _sum_into, _sum), which the execution plan's gradient sums run
on: NumPy's sum bit for bit on every SIMD level, 1 and 2 threads, odd sizes, NaN and infinities,
in place (y aliasing a or b), a channel slice as the added operand, outputs pre-filled with NaN,
the fallbacks (False / None, nothing written) and offsets past 2**31 (tests/large.py)."""

import sys

import numpy as np
import pytest
from large import INT32_MAX, tail_mapped

from fastconv import _dispatch
from fastconv._kernels import norm as _kn
from fastconv.ops import norm as _norm_ops

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
SIZES = [1, 3, 7, 8, 15, 16, 17, 33, 1000, 4099]


def _data(n, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(n).astype(dtype) * 4 for _ in range(2))
    if n > 5:
        a[1], b[2], a[3], b[3], a[4] = np.nan, np.inf, np.inf, -np.inf, -0.0
    return a, b


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", [1, 2])
def test_add_act_equals_numpy(level, dtype, n, threads):
    isa = _dispatch.LEVELS[level]
    a, b = _data(n, dtype, n)
    nchunks = max(1, min(n // 3, 5))
    with np.errstate(invalid="ignore"):
        want = {0: a + b, 1: np.maximum(a + b, 0), 2: np.clip(a + b, 0, 6)}
    for act in (0, 1, 2):
        y = np.full_like(a, np.nan)
        _kn.add_act(a, b, y, act, nchunks, isa, threads)
        np.testing.assert_array_equal(y, want[act])
    for into in ("a", "b"):  # in place
        a2, b2 = a.copy(), b.copy()
        y = a2 if into == "a" else b2
        _kn.add_act(a2, b2, y, 1, nchunks, isa, threads)
        np.testing.assert_array_equal(y, want[1])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c0, c1, total", [(0, 1, 3), (2, 9, 11), (0, 16, 24), (16, 24, 24), (5, 38, 40)])
@pytest.mark.parametrize("threads", [1, 2])
def test_add_rows_equals_numpy(level, dtype, c0, c1, total, threads):
    isa = _dispatch.LEVELS[level]
    rng = np.random.default_rng(c1)
    wide = rng.standard_normal((3, 5, 7, total)).astype(dtype)
    before = wide.copy()
    s = wide[..., c0:c1]
    d = rng.standard_normal(s.shape).astype(dtype)
    want = d + s
    rows = s.reshape(-1, c1 - c0) if s.ndim == 2 else _norm_ops.pixel_rows(s)
    _kn.add_rows(d.reshape(rows.shape), rows, 4, isa, threads)
    np.testing.assert_array_equal(d, want)
    np.testing.assert_array_equal(wide, before)


def test_kernel_arguments_are_checked():
    a = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="sizes differ"):
        _kn.add_act(a, np.ones(4, np.float32), a, 0, 1, 0, 1)
    d = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="shapes differ"):
        _kn.add_rows(d, np.ones((4, 6), np.float32)[:, :2], 1, 0, 1)
    with pytest.raises(ValueError, match="contiguous"):
        _kn.add_rows(d, np.ones((4, 6), np.float32)[:, ::2], 1, 0, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_into_and_sum(dtype):
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((2, 4, 5, 13)).astype(dtype)
    dst = rng.standard_normal((2, 4, 5, 6)).astype(dtype)
    for src in (wide[..., 3:9], np.ascontiguousarray(wide[..., 3:9])):
        d = dst.copy()
        assert _norm_ops._sum_into(d, src) is True
        np.testing.assert_array_equal(d, dst + src)
    y = _norm_ops._sum(dst, wide[..., :6].copy())
    np.testing.assert_array_equal(y, dst + wide[..., :6])
    assert not np.shares_memory(y, dst)


def test_sum_into_declines_what_it_cannot_do():
    dst = np.ones((4, 6), np.float32)
    kept = dst.copy()
    assert not _norm_ops._sum_into(dst, np.ones((4, 6), np.float64))  # dtype
    assert not _norm_ops._sum_into(dst, np.ones((4, 5), np.float32))  # shape
    assert not _norm_ops._sum_into(dst, np.ones((4, 12), np.float32)[:, ::2])  # no channel run
    assert not _norm_ops._sum_into(dst, [[1.0] * 6] * 4)  # not an array
    assert not _norm_ops._sum_into(np.ones((6, 4), np.float32).T, np.ones((4, 6), np.float32))  # dst strided
    ro = np.ones((4, 6), np.float32)
    ro.flags.writeable = False
    assert not _norm_ops._sum_into(ro, dst)
    np.testing.assert_array_equal(dst, kept)
    assert _norm_ops._sum(np.ones(3, np.float32), np.ones(3, np.float64)) is None
    assert _norm_ops._sum(np.ones((3, 4), np.float32)[:, :2], np.ones((3, 2), np.float32)) is None


@pytest.mark.large
@pytest.mark.skipif(sys.maxsize <= 2**32, reason="needs a 64-bit address space")
def test_add_rows_past_2_31_elements():
    """add_rows reading pixels spaced so far apart that their offsets pass 2**31 elements (a tensor
    of 2**31 + 2**22 elements whose head aliases one zeroed block, tests/large.py): the rows in the
    tail match NumPy's sums. (add_act's flat offsets are the C longs of act_forward's loop.)"""
    M, C = 2**25 + 2**16, 64
    b, h = tail_mapped((M, C), np.float32, tail_elems=M * C - 2**31, populate=True)
    assert b.size > INT32_MAX and h <= 2**31
    rng = np.random.default_rng(4)
    b.reshape(-1)[h:] = rng.standard_normal(b.size - h).astype(np.float32)
    step = 8191  # 4100 pixels 8191 * 64 elements apart: the last ones past 2**31
    s = b[::step, 16:]
    assert (s.shape[0] - 1) * step * C > INT32_MAX
    d = rng.standard_normal(s.shape).astype(np.float32)
    want = d + s
    _kn.add_rows(d, s, 8, _dispatch.simd_level(), 2)
    np.testing.assert_array_equal(d, want)
    assert (s.shape[0] - 1) * step * C >= h and np.abs(s[-1]).sum() > 0  # the last row: tail data


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_layer_on_the_compiled_sum(dtype):
    from fastconv import layers as L

    rng = np.random.default_rng(5)
    a, b, c = (rng.standard_normal((3, 5, 4, 7)).astype(dtype) for _ in range(3))
    kept = [t.copy() for t in (a, b, c)]
    np.testing.assert_array_equal(L.Add(dtype=dtype)([a, b]), a + b)
    np.testing.assert_array_equal(L.Add(dtype=dtype)([a, b, c]), a + b + c)
    np.testing.assert_array_equal(L.Add(dtype=dtype).forward([a, b], epilogue="relu"), np.maximum(a + b, 0))
    np.testing.assert_array_equal(L.Add(dtype=dtype)([a, b[:, :1]]), a + b[:, :1])  # broadcast: NumPy
    for t, k in zip((a, b, c), kept):
        np.testing.assert_array_equal(t, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c0, c1, total", [(0, 1, 3), (2, 9, 11), (0, 16, 24), (16, 24, 24), (5, 38, 40)])
def test_copy_rows_into_and_out_of_channel_slices(dtype, threads, c0, c1, total):
    rng = np.random.default_rng(c0 + c1)
    wide = rng.standard_normal((3, 5, 7, total)).astype(dtype)
    kept = wide.copy()
    part = np.full(wide[..., c0:c1].shape, np.nan, dtype)
    _kn.copy_rows(part.reshape(-1, c1 - c0), _norm_ops.pixel_rows(wide[..., c0:c1]), 4, threads)
    np.testing.assert_array_equal(part, wide[..., c0:c1])
    np.testing.assert_array_equal(wide, kept)
    other = np.full_like(wide, np.nan)
    src = rng.standard_normal(part.shape).astype(dtype)
    assert _norm_ops._copy_into(other[..., c0:c1], src)
    np.testing.assert_array_equal(other[..., c0:c1], src)
    assert np.isnan(np.delete(other, np.s_[c0:c1], axis=-1)).all()  # nothing else written


def test_copy_into_declines_what_it_cannot_do():
    a = np.ones((4, 6), np.float32)
    assert not _norm_ops._copy_into(a, np.ones((4, 6), np.float64))
    assert not _norm_ops._copy_into(a, np.ones((4, 12), np.float32)[:, ::2])
    assert not _norm_ops._copy_into(a, a[::-1])  # overlaps
    assert not _norm_ops._copy_into(np.ones((4, 6), np.int32), np.ones((4, 6), np.int32))
    with pytest.raises(ValueError, match="shapes differ"):
        _kn.copy_rows(a, np.ones((4, 5), np.float32), 1, 1)
    with pytest.raises(ValueError, match="contiguous"):
        _kn.copy_rows(a, np.ones((4, 12), np.float32)[:, ::2], 1, 1)


@pytest.mark.large
@pytest.mark.skipif(sys.maxsize <= 2**32, reason="needs a 64-bit address space")
def test_copy_rows_past_2_31_elements():
    """copy_rows reading rows whose byte offsets pass 2**31 elements (as test_add_rows_past_2_31)."""
    M, C = 2**25 + 2**16, 64
    b, h = tail_mapped((M, C), np.float32, tail_elems=M * C - 2**31, populate=True)
    b.reshape(-1)[h:] = np.random.default_rng(6).standard_normal(b.size - h).astype(np.float32)
    step = 8191
    s = b[::step, 16:]
    assert (s.shape[0] - 1) * step * C > INT32_MAX and np.abs(s[-1]).sum() > 0
    d = np.full(s.shape, np.nan, np.float32)
    _kn.copy_rows(d, s, 8, 2)
    np.testing.assert_array_equal(d, s)
