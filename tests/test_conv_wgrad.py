"""conv2d's weight gradient on both kernels: the channel tile and the few-channel column kernel
(src/conv_wgrad_planar_impl.h), against the NumPy reference on every option, SIMD level, dtype and
thread count, by finite differences in float64, and the rule that chooses between them."""

import numpy as np
import pytest
from gradcheck import numeric_grad  # tests/gradcheck.py

import fastconv
from fastconv import _dispatch, ops
from fastconv import reference as ref
from fastconv.ops import _plan
from fastconv.ops import conv as conv_ops

RNG = np.random.default_rng(21)
LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]

# (N, H, W, C, K, KH, KW, stride, dilation, groups, padding): LeNet's two layers, first layers,
# strides and dilations that give several column phases, groups, asymmetric explicit padding,
# 1x1, kernels wider than a tile (7, 11 columns), odd widths around the vector lengths
CASES = [
    (2, 9, 11, 1, 6, 5, 5, 1, 1, 1, "same"),
    (3, 14, 14, 6, 16, 5, 5, 1, 1, 1, "valid"),
    (2, 13, 17, 3, 5, 3, 3, 2, 1, 1, "same"),
    (2, 12, 20, 4, 8, 3, 4, 2, 2, 2, "valid"),
    (1, 7, 40, 2, 3, 7, 7, 3, 1, 1, ((2, 1), (3, 0))),
    (2, 6, 33, 4, 4, 1, 1, 1, 1, 4, "valid"),
    (2, 10, 18, 6, 9, 2, 3, 1, 3, 3, "same"),
    (1, 5, 64, 1, 40, 3, 11, 1, 1, 1, "same"),
    (3, 4, 15, 5, 7, 3, 3, (2, 1), (1, 2), 1, 1),
    (1, 3, 1, 2, 3, 3, 1, 1, 1, 1, "same"),
    # a last channel block holding one whole vector (48 on AVX-512, 24 on AVX2) or a vector and a
    # scalar rest (58): fc_wg_tile1, 12 reduction rows at a time (15 = 12 + 3), and the scalar tail
    (2, 5, 9, 5, 48, 3, 3, 1, 1, 1, "same"),
    (2, 4, 7, 3, 24, 3, 3, 2, 1, 1, "same"),
    (2, 4, 7, 3, 58, 3, 3, 1, 1, 1, "same"),
    # DenseNet's channel counts: a whole vector and a masked rest (20, 22 and 12 on AVX2; 20 and 22 on
    # AVX-512), or only a masked rest (12 on AVX-512), 1x1 and 3x3
    (2, 6, 7, 40, 20, 1, 1, 1, 1, 1, "valid"),
    (1, 4, 5, 44, 22, 1, 1, 1, 1, 1, "valid"),
    (2, 5, 9, 24, 12, 3, 3, 1, 1, 1, "same"),
    # odd groups of 16 and 8 outputs (no group pairs): each group's block is one vector
    (2, 5, 6, 6, 48, 3, 3, 1, 1, 3, "same"),
    (1, 5, 7, 4, 16, 3, 3, 1, 2, 2, "same"),
]


def rand(shape, dtype):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.fixture(autouse=True)
def _direct_algorithm():
    """The direct kernels: Winograd's weight gradient (tests/test_winograd.py) stays off."""
    _dispatch.set_conv_algo("direct")
    yield
    _dispatch.set_conv_algo(None)


@pytest.fixture(params=["planar", "tiles"])
def kernel(request, monkeypatch):
    monkeypatch.setattr(conv_ops, "_force_planar_wgrad", request.param == "planar")
    return request.param


@pytest.fixture(params=LEVELS)
def level(request):
    yield _dispatch.set_simd(request.param)
    _dispatch.set_simd(None)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:7])))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_against_the_reference(kernel, level, case, dtype):
    N, H, W, C, K, KH, KW, stride, dilation, groups, padding = case
    x, w = rand((N, H, W, C), dtype), rand((KH, KW, C // groups, K), dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    dy = rand(ref.conv2d(x, w, **kw).shape, dtype)
    x0, dy0 = x.copy(), dy.copy()
    _, dw, db = ops.conv2d_grad(dy, x, w, need_dx=False, **kw)
    assert _dispatch.last_kernel["conv2d_grad:weight"] == kernel
    _, dw_ref, db_ref = ref.conv2d_grad(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), **kw)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    scale = max(1.0, float(np.abs(dw_ref).max()))
    np.testing.assert_allclose(dw, dw_ref, rtol=tol, atol=tol * scale * np.sqrt(N * H * W))
    np.testing.assert_allclose(db, db_ref, rtol=tol, atol=tol * max(1.0, float(np.abs(db_ref).max())) * np.sqrt(N * H * W))
    np.testing.assert_array_equal(x, x0)  # inputs untouched
    np.testing.assert_array_equal(dy, dy0)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_give_bit_identical_results(kernel, threads):
    """Rows are cut into a fixed number of chunks whatever the thread count: same bits."""
    x, w = rand((5, 23, 29, 6), np.float32), rand((5, 5, 6, 16), np.float32)
    dy = rand((5, 19, 25, 16), np.float32)
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        want = ops.conv2d_grad(dy, x, w, need_dx=False)[1:]
        fastconv.set_num_threads(threads)
        got = ops.conv2d_grad(dy, x, w, need_dx=False)[1:]
    finally:
        fastconv.set_num_threads(before)
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)


def test_kernels_agree_on_a_block_that_ends_short(monkeypatch):
    """Rows not a multiple of the block: the last block's stale planes must not add in."""
    x, w = rand((3, 31, 21, 2), np.float64), rand((3, 3, 2, 6), np.float64)
    dy = rand((3, 31, 21, 6), np.float64)
    monkeypatch.setattr(_plan, "WGRAD_BLOCK_BYTES", 1)  # one row per block ...
    one = ops.conv2d_grad(dy, x, w, padding="same", need_dx=False)[1]
    monkeypatch.setattr(_plan, "WGRAD_BLOCK_BYTES", 7 * 1024)  # ... then blocks of a few rows
    _plan.wgrad_plan.cache_clear()
    several = ops.conv2d_grad(dy, x, w, padding="same", need_dx=False)[1]
    _plan.wgrad_plan.cache_clear()
    want = ref.conv2d_grad(dy, x, w, padding="same")[1]
    np.testing.assert_allclose(one, want, rtol=1e-11, atol=1e-10)
    np.testing.assert_allclose(several, want, rtol=1e-11, atol=1e-10)


def test_finite_differences_float64(kernel):
    x, w = rand((2, 6, 9, 2), np.float64), rand((3, 5, 1, 4), np.float64)
    kw = dict(stride=(1, 2), padding="same", dilation=(2, 1), groups=2)
    dy = rand(ops.conv2d(x, w, **kw).shape, np.float64)

    def loss():
        return float((ops.conv2d(x, w, **kw) * dy).sum())

    _, dw, _ = ops.conv2d_grad(dy, x, w, need_dx=False, **kw)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("Kg, vlen, planar", [(6, 16, True), (16, 16, True), (31, 16, True), (32, 16, False),
                                              (16, 8, False), (15, 8, True), (64, 4, False), (7, 4, True)])
def test_rule_picks_the_column_kernel_below_two_vectors_of_channels(Kg, vlen, planar):
    assert _plan.use_planar_wgrad(Kg, vlen) is planar


@pytest.mark.parametrize("Kg, vlen, planar", [(7, 8, True), (8, 8, False), (12, 8, False), (20, 8, False),
                                              (6, 16, True), (16, 16, True), (31, 16, True), (32, 16, False)])
def test_rule_with_masked_tails_takes_the_channel_tile_from_one_avx2_vector(Kg, vlen, planar):
    assert _plan.use_planar_wgrad(Kg, vlen, masked_tail=True) is planar


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_densenet_growth_layer_picks_by_level_and_dtype(level, dtype):
    x, w = rand((2, 6, 6, 16), dtype), rand((3, 3, 16, 8), dtype)
    ops.conv2d_grad(rand((2, 6, 6, 8), dtype), x, w, padding="same", need_dx=False)
    level = _dispatch.simd_level()
    masked_avx2 = dtype == np.float32 and level == _dispatch.LEVELS["avx2"]
    vlen = conv_ops._k.narrow_vlen(level, dtype)
    want = "tiles" if masked_avx2 or 8 >= 2 * vlen else "planar"
    assert _dispatch.last_kernel["conv2d_grad:weight"] == want


def test_lenet_layers_run_the_column_kernel():
    x, w = rand((4, 14, 14, 6), np.float32), rand((5, 5, 6, 16), np.float32)
    ops.conv2d_grad(rand((4, 10, 10, 16), np.float32), x, w, need_dx=False)
    wide = _dispatch.simd_level() >= _dispatch.LEVELS["avx512"]
    # 16 output channels: two AVX2 vectors (the channel tile), one AVX-512 vector (the column kernel)
    assert _dispatch.last_kernel["conv2d_grad:weight"] == ("planar" if wide else "tiles")
