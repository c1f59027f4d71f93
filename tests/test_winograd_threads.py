"""How the Winograd weight gradient (src/winograd.pyx wino_wgrad) splits its tiles over chunks and
threads: chunk j takes tiles [ntiles*j // nchunks, ntiles*(j+1) // nchunks) in blocks of TB (the last
block of a chunk may be short), chunks beyond the thread count are taken dynamically, and the sums
depend on (nchunks, TB) only, never on the thread count or the schedule.

Checked against the float64 reference on odd tile counts (tiles not a multiple of TB or of nchunks),
every TB / nchunks combination a plan can produce and some it cannot, 1 and 2 threads bit for bit,
outputs pre-filled with NaN, F(4x4) and F(2x2), dilation, float32 at every SIMD level.
"""
import numpy as np
import pytest

from fastconv import _dispatch
from fastconv import reference as ref
from fastconv._kernels import winograd as _k
from fastconv.ops import _plan
from fastconv.ops import winograd as wino

RNG = np.random.default_rng(1313)
LEVELS = [lvl for lvl in _dispatch.LEVELS.values() if lvl <= _dispatch.cpu_level()]


def _wgrad(x, dy, pads, m, tb, nchunks, threads, isa=0, dilation=(1, 1)):
    """dw, db from the kernel directly, outputs pre-filled with NaN (every element must be written)."""
    C, K = x.shape[3], dy.shape[3]
    dw = np.full((3, 3, C, K), np.nan, x.dtype)
    db = np.full((K,), np.nan, x.dtype)
    _k.wino_wgrad(x, dy, dw, db, pads[0], pads[1], m, tb, isa, nchunks, threads, dilation[0], dilation[1])
    return dw, db


def _problem(N, H, W, C, K, dtype, padding=1, dilation=(1, 1)):
    x = RNG.standard_normal((N, H, W, C)).astype(dtype)
    OH = H + 2 * padding - 2 * dilation[0]
    OW = W + 2 * padding - 2 * dilation[1]
    dy = RNG.standard_normal((N, OH, OW, K)).astype(dtype)
    w = np.zeros((3, 3, C, K), dtype)
    _, dw, db = ref.conv2d_grad(dy, x, w, padding=padding, dilation=dilation)
    return x, dy, dw, db


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


# (N, H, W, C, K): tile counts 3*4*4 = 48, 2*3*3 = 18, 5*2*2 = 20, 1*4*5 = 20 (F(4x4), same padding)
SHAPES = [(3, 13, 15, 5, 7), (2, 9, 11, 16, 20), (5, 7, 6, 3, 33), (1, 13, 17, 17, 9)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [4, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_split_matches_the_reference_and_threads_agree(shape, m, dtype):
    x, dy, dw_ref, db_ref = _problem(*shape, dtype)
    OH, OW = dy.shape[1:3]
    ntiles = shape[0] * -(-OH // m) * -(-OW // m)
    # TB not dividing the chunk's tiles, chunks not dividing the tiles, more chunks than threads
    # (the dynamic schedule), as many chunks as tiles
    for tb, nchunks in [(1, 1), (5, 1), (7, 2), (3, 3), (4, 5), (48, 2), (2, ntiles)]:
        one = _wgrad(x, dy, (1, 1), m, tb, nchunks, 1)
        _close(one[0], dw_ref, dtype)
        _close(one[1], db_ref, dtype)
        two = _wgrad(x, dy, (1, 1), m, tb, nchunks, 2)
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)


def test_chunk_boundaries_inside_blocks():
    """Chunks split the tiles, not whole blocks, so a chunk may end inside what would have been a
    block of TB: no tile may be taken twice or dropped at such a boundary (float64, tight)."""
    x, dy, dw_ref, db_ref = _problem(4, 22, 22, 8, 8, np.float64)  # 4 * 6 * 6 = 144 tiles
    for tb in (47, 13, 10, 9):
        for nchunks in (2, 3, 7):
            dw, db = _wgrad(x, dy, (1, 1), 4, tb, nchunks, 2)
            _close(dw, dw_ref, np.float64)
            _close(db, db_ref, np.float64)


def test_plan_chunks_do_not_depend_on_threads():
    """1 and 2 threads plan the same chunks and blocks (so the sums are the same), and the plan's
    chunks share the tiles evenly."""
    for n, oh, ow in [(8, 56, 56), (32, 28, 28), (3, 13, 15), (1, 4, 4), (32, 7, 7)]:
        p1 = _plan.wino_wgrad_plan(n, oh, ow, 4, 1, 18432)
        p2 = _plan.wino_wgrad_plan(n, oh, ow, 4, 2, 18432)
        assert (p1.tb, p1.nchunks) == (p2.tb, p2.nchunks)
        per = [p2.ntiles * (j + 1) // p2.nchunks - p2.ntiles * j // p2.nchunks for j in range(p2.nchunks)]
        assert max(per) - min(per) <= 1
        # every chunk needs the same number of blocks of tb
        assert len({-(-t // p2.tb) for t in per}) == 1


@pytest.mark.parametrize("isa", LEVELS)
def test_every_simd_level_and_dilation(isa):
    for dil in [(1, 1), (2, 3)]:
        x, dy, dw_ref, db_ref = _problem(3, 15, 14, 19, 21, np.float32, padding=2, dilation=dil)
        for tb, nchunks in [(5, 3), (11, 2)]:
            one = _wgrad(x, dy, (2, 2), 4, tb, nchunks, 1, isa, dil)
            _close(one[0], dw_ref, np.float32)
            _close(one[1], db_ref, np.float32)
            two = _wgrad(x, dy, (2, 2), 4, tb, nchunks, 2, isa, dil)
            for a, b in zip(one, two):
                np.testing.assert_array_equal(a, b)


def test_inputs_are_not_modified():
    x, dy, _, _ = _problem(2, 9, 9, 6, 10, np.float32)
    x0, dy0 = x.copy(), dy.copy()
    _wgrad(x, dy, (1, 1), 4, 3, 4, 2)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_large_finish_runs_split_and_matches():
    """Past FINISH_SPLIT_MIN partial elements (5 chunks x 9 x 160 x 160) the finish that adds the
    chunks' partials runs on the threads: same bits as on one, and the reference's values."""
    x, dy, dw_ref, db_ref = _problem(1, 20, 20, 160, 160, np.float32)  # 25 tiles
    one = _wgrad(x, dy, (1, 1), 4, 5, 5, 1)
    _close(one[0], dw_ref, np.float32)
    _close(one[1], db_ref, np.float32)
    two = _wgrad(x, dy, (1, 1), 4, 5, 5, 2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("m", [4, 2])
def test_weight_transform_threads(m, flip):
    """The transform runs on one thread below TRANSFORM_SPLIT_MIN (a woken second thread starts late)
    and on the threads above it; either way its output does not depend on the thread count."""
    small, large = RNG.standard_normal((3, 3, 64, 64)), RNG.standard_normal((3, 3, 256, 257))
    assert wino.transform_threads(small, m) == 1
    before = _dispatch.get_num_threads()
    _dispatch.set_num_threads(2)
    try:
        assert wino.transform_threads(large, 4) == _dispatch.threads_for(large.size * 36 * 4)
        isa = _dispatch.level_for("conv2d", np.dtype(np.float32))
        vb = _k.block_size(isa, np.float32)
        for w in (small.astype(np.float32), large.astype(np.float32)):
            one = wino.transform_weight(w, m, vb, flip, 1, isa)
            two = wino.transform_weight(w, m, vb, flip, 2, isa)
            np.testing.assert_array_equal(one, two)
    finally:
        _dispatch.set_num_threads(before)
