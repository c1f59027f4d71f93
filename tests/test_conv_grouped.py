"""Grouped convolution on the group-pair tile (src/conv_grouped_impl.h): forward, input gradient,
transposed conv and weight gradient against the NumPy reference on every SIMD level, dtype and
option, by finite differences in float64, across thread counts, with NaN-filled outputs and past
2**31 input elements; and the plan's rule that chooses it (fastconv/ops/_plan.py group_pairing)."""

import numpy as np
import pytest
from gradcheck import numeric_grad  # tests/gradcheck.py
from large import INT32_MAX, lazy_zeros  # tests/large.py

import fastconv
from fastconv import _dispatch, ops
from fastconv import reference as ref
from fastconv._kernels import conv as _k
from fastconv.ops import _plan
from fastconv.ops import conv as conv_ops

RNG = np.random.default_rng(12)
LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]


def rand(shape, dtype):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.fixture(autouse=True)
def _direct_tiles(monkeypatch):
    """Direct kernels, and the narrow-output kernel off (few-channel groups would take it)."""
    _dispatch.set_conv_algo("direct")
    monkeypatch.setattr(conv_ops, "_force_narrow", False)
    yield
    _dispatch.set_conv_algo(None)


@pytest.fixture(params=LEVELS)
def level(request):
    yield _dispatch.set_simd(request.param)
    _dispatch.set_simd(None)


def vlen(dtype, op="conv2d"):
    """Elements per vector of the tile at the level in use."""
    return _k.block_size(_dispatch.level_for(op, np.dtype(dtype)), np.dtype(dtype)) // 2


def check(got, want, dtype, terms):
    tol = 1e-11 if dtype == np.float64 else 3e-5
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale * np.sqrt(terms))


# (N, H, W, KH, KW, stride, dilation, padding): same and valid 3x3, strides (several input-gradient
# phases), dilation, asymmetric explicit padding, 1x1, maps narrower than a tile (flattened tiles)
GEOMS = [
    (2, 9, 13, 3, 3, 1, 1, "same"),
    (2, 11, 26, 3, 3, 1, 1, "valid"),
    (1, 10, 9, 3, 3, 2, 1, "same"),
    (2, 8, 11, 3, 2, (1, 2), (2, 1), ((2, 1), (0, 3))),
    (3, 5, 7, 1, 1, 1, 1, "valid"),
    (2, 4, 3, 3, 3, 1, 1, 1),
]


@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g[:5])))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("merge", [1, 2])
def test_forward_and_input_gradient_against_the_reference(level, geom, dtype, merge):
    """Groups of one vector of channels (merge=1) and of half a vector (merge=2: super-groups of
    two with block-diagonal weights), on both passes; odd channel counts on the other side."""
    N, H, W, KH, KW, stride, dilation, padding = geom
    v = vlen(dtype)
    assert v % merge == 0  # every level has 2+ lanes
    kg = v // merge
    G = 2 * merge * (2 if N == 2 else 1)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=G)
    # forward: Kg = kg (the tile's side), 3 input channels per group
    x, w, b = rand((N, H, W, 3 * G), dtype), rand((KH, KW, 3, kg * G), dtype), rand((kg * G,), dtype)
    y = ops.conv2d(x, w, b, **kw)
    assert _dispatch.last_kernel["conv2d"] == "grouped"
    check(y, ref.conv2d(x, w, b, **kw), dtype, KH * KW * 3)
    yr = ops.conv2d(x, w, b, relu=True, **kw)
    np.testing.assert_array_equal(yr, np.where(y < 0, 0, y))
    ys = ops.conv2d(x, w, b, activation="selu", **kw)
    assert _dispatch.last_kernel["conv2d_epilogue"] == "tile"
    np.testing.assert_array_equal(ys, ops.activation(y, "selu"))
    # input gradient: Cg = kg (now the produced side), 5 output channels per group
    x, w = rand((N, H, W, kg * G), dtype), rand((KH, KW, kg, 5 * G), dtype)
    dy = rand(ref.conv2d(x, w, **kw).shape, dtype)
    dx, dw, db = ops.conv2d_grad(dy, x, w, **kw)
    assert _dispatch.last_kernel["conv2d_grad"] == "grouped"
    dx_ref, dw_ref, db_ref = ref.conv2d_grad(dy, x, w, **kw)
    check(dx, dx_ref, dtype, KH * KW * 5)
    check(dw, dw_ref, dtype, dy.size // dy.shape[3])
    check(db, db_ref, dtype, dy.size // dy.shape[3])


@pytest.mark.parametrize("geom", [GEOMS[0], GEOMS[2], GEOMS[5]], ids=lambda g: "x".join(map(str, g[:5])))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduction_of_one_vector_per_group(level, geom, dtype):
    """Groups reducing exactly one vector of channels (the tile's compile-time reduction, fully
    unrolled): forward with Cg = Kg = vlen, input gradient with Kg = vlen, odd maps and strides,
    outputs pre-filled with NaN."""
    N, H, W, KH, KW, stride, dilation, padding = geom
    v, G = vlen(dtype), 4
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=G)
    x, w, b = rand((N, H, W, v * G), dtype), rand((KH, KW, v, v * G), dtype), rand((v * G,), dtype)
    want = ref.conv2d(x, w, b, **kw)
    out = np.full(want.shape, np.nan, dtype)
    y = ops.conv2d(x, w, b, out=out, **kw)
    assert _dispatch.last_kernel["conv2d"] == "grouped"
    check(y, want, dtype, KH * KW * v)
    np.testing.assert_array_equal(ops.conv2d(x, w, b, relu=True, **kw), np.where(y < 0, 0, y))
    # input gradient: reduces over Kg = v outputs per group into Cg = v inputs
    dy = rand(want.shape, dtype)
    dx, dw, _ = ops.conv2d_grad(dy, x, w, **kw)
    assert _dispatch.last_kernel["conv2d_grad"] == "grouped"
    dx_ref, dw_ref, _ = ref.conv2d_grad(dy, x, w, **kw)
    check(dx, dx_ref, dtype, KH * KW * v)
    check(dw, dw_ref, dtype, dy.size // dy.shape[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_are_not_modified(level, dtype):
    G, v = 4, vlen(dtype)
    x, w, b = rand((2, 7, 8, 2 * G), dtype), rand((3, 3, 2, v * G), dtype), rand((v * G,), dtype)
    dy = rand((2, 7, 8, v * G), dtype)
    copies = [a.copy() for a in (x, w, b, dy)]
    ops.conv2d(x, w, b, padding=1, groups=G)
    ops.conv2d_grad(dy, x, w, padding=1, groups=G)
    assert _dispatch.last_kernel["conv2d_grad:weight"] == "grouped"
    for a, c in zip((x, w, b, dy), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_transposed_conv_against_the_reference(level, dtype, stride):
    """conv_transpose2d is conv2d's input gradient: its output groups of one vector take the tile."""
    G, v = 4, vlen(dtype, "conv_transpose2d")
    x, w, b = rand((2, 5, 6, 3 * G), dtype), rand((3, 3, v, 3 * G), dtype), rand((v * G,), dtype)
    y = ops.conv_transpose2d(x, w, b, stride=stride, padding=1, groups=G)
    assert _dispatch.last_kernel["conv_transpose2d"] == "grouped"
    check(y, ref.conv_transpose2d(x, w, b, stride=stride, padding=1, groups=G), dtype, 27)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [(2, 9, 10, 5, 3, 3, 1, 1, "same", 4), (1, 12, 13, 7, 3, 2, 2, 1, "valid", 2),
                                  (2, 8, 9, 1, 2, 3, 1, 2, ((1, 0), (2, 2)), 6), (3, 6, 30, 13, 1, 1, 1, 1, 0, 2)],
                         ids=["3x3same", "3x2s2", "2x3d2", "1x1"])
def test_weight_gradient_against_the_reference(level, dtype, case):
    N, H, W, cg, KH, KW, stride, dilation, padding, G = case
    v = vlen(dtype, "conv2d_grad")
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=G)
    x, w = rand((N, H, W, cg * G), dtype), rand((KH, KW, cg, v * G), dtype)
    dy = rand(ref.conv2d(x, w, **kw).shape, dtype)
    _, dw, db = ops.conv2d_grad(dy, x, w, need_dx=False, **kw)
    assert _dispatch.last_kernel["conv2d_grad:weight"] == "grouped"
    _, dw_ref, db_ref = ref.conv2d_grad(dy, x, w, **kw)
    terms = dy.size // dy.shape[3]
    check(dw, dw_ref, dtype, terms)
    check(db, db_ref, dtype, terms)


def test_finite_differences_float64():
    """Every gradient of a conv whose three passes all run the pair tile (float64: 2 lanes)."""
    G, v = 4, vlen(np.float64)
    x, w = rand((2, 5, 6, v * G), np.float64), rand((3, 3, v, v * G), np.float64)
    kw = dict(stride=(1, 2), padding="same", dilation=(2, 1), groups=G)
    dy = rand(ops.conv2d(x, w, **kw).shape, np.float64)

    def loss():
        return float((ops.conv2d(x, w, **kw) * dy).sum())

    loss()
    assert _dispatch.last_kernel["conv2d"] == "grouped"
    dx, dw, _ = ops.conv2d_grad(dy, x, w, **kw)
    assert _dispatch.last_kernel["conv2d_grad"] == "grouped"
    assert _dispatch.last_kernel["conv2d_grad:weight"] == "grouped"
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_give_bit_identical_results(threads):
    G = 4
    v = vlen(np.float32)
    x, w = rand((5, 17, 23, v * G), np.float32), rand((3, 3, v, v * G), np.float32)
    dy = rand((5, 17, 23, v * G), np.float32)
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        one = [ops.conv2d(x, w, padding=1, groups=G)] + list(ops.conv2d_grad(dy, x, w, padding=1, groups=G))
        fastconv.set_num_threads(threads)
        more = [ops.conv2d(x, w, padding=1, groups=G)] + list(ops.conv2d_grad(dy, x, w, padding=1, groups=G))
    finally:
        fastconv.set_num_threads(before)
    assert _dispatch.last_kernel["conv2d_grad:weight"] == "grouped"
    for a, b in zip(one, more):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def nan_empty(monkeypatch):
    """np.empty hands out NaN bytes, so an output element the pair tile does not write shows up."""
    real_empty = np.empty

    def empty(shape, dtype=float, **kw):
        a = real_empty(shape, dtype=dtype, **kw)
        a.reshape(-1).view(np.uint8).fill(0xFF)
        return a

    monkeypatch.setattr(np, "empty", empty)


def test_every_output_element_is_written(nan_empty, level):
    G, v = 4, vlen(np.float32)
    x, w = rand((2, 9, 8, 3 * G), np.float32), rand((2, 3, 3, v * G), np.float32)
    for kwargs in (dict(stride=3), dict(stride=2, padding="same"), dict(padding=1, dilation=2)):
        y = ops.conv2d(x, w, groups=G, **kwargs)
        assert _dispatch.last_kernel["conv2d"] == "grouped"
        assert np.isfinite(y).all()
        assert all(np.isfinite(a).all() for a in ops.conv2d_grad(np.ones_like(y), x, w, groups=G, **kwargs)[1:])
        wt = rand((2, 3, v, 3 * G), np.float32)
        t = ops.conv_transpose2d(x, wt, stride=3, groups=G)
        assert _dispatch.last_kernel["conv_transpose2d"] == "grouped"
        assert np.isfinite(t).all()


def test_dense_tile_kept_when_pairs_do_not_apply():
    """An odd number of (super-)groups, groups wider than a vector, or _force_grouped=False: the
    dense tile, with the same results as the pair tile."""
    v = vlen(np.float32)
    x = rand((2, 6, 7, 3 * 3), np.float32)
    ops.conv2d(x, rand((3, 3, 3, v * 3), np.float32), padding=1, groups=3)
    assert _dispatch.last_kernel["conv2d"] != "grouped"
    ops.conv2d(x[..., :6], rand((3, 3, 3, (v + 1) * 2), np.float32), padding=1, groups=2)
    assert _dispatch.last_kernel["conv2d"] != "grouped"
    x4, w4 = rand((2, 6, 7, 8), np.float32), rand((3, 3, 2, v * 4), np.float32)
    pair = ops.conv2d(x4, w4, padding=1, groups=4)
    assert _dispatch.last_kernel["conv2d"] == "grouped"
    conv_ops._force_grouped = False
    try:
        dense = ops.conv2d(x4, w4, padding=1, groups=4)
        assert _dispatch.last_kernel["conv2d"] != "grouped"
    finally:
        conv_ops._force_grouped = None
    np.testing.assert_allclose(pair, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("G, Cr, Ko, vlen_, s", [
    (4, 16, 16, 16, 1), (2, 3, 16, 16, 1), (4, 8, 8, 16, 2), (8, 4, 4, 16, 4), (2, 8, 8, 16, 0),
    (6, 5, 8, 8, 1), (3, 16, 16, 16, 0), (1, 16, 16, 16, 0), (4, 16, 24, 16, 0), (4, 16, 32, 16, 0),
    (4, 7, 6, 16, 0), (16, 2, 1, 2, 2)])
def test_rule_pairs_groups_of_a_vector_or_its_divisors(G, Cr, Ko, vlen_, s):
    assert _plan.group_pairing(G, Cr, Ko, vlen_) == s


def test_rule_weight_gradient_and_tile_plan():
    assert _plan.use_pair_wgrad(4, 16, 16) and _plan.use_pair_wgrad(2, 8, 8)
    assert not _plan.use_pair_wgrad(3, 16, 16) and not _plan.use_pair_wgrad(4, 8, 16)
    assert not _plan.use_pair_wgrad(1, 16, 16)
    g = _plan.forward_plan((28, 28), (3, 3), (1, 1), (1, 1), (1, 1))
    t = _plan.pair_tile_plan(g, 32, 3, 16, 4)
    assert (t.rowseg, t.mergex, t.path, t.rowtiles) == (False, False, "grouped", True)
    assert t.ntiles == 32 * 28 * 5 and 1 <= t.tb <= _plan.TILE_MAX_TB
    small = _plan.pair_tile_plan(_plan.forward_plan((7, 7), (3, 3), (1, 1), (1, 1), (1, 1)), 3, 3, 16, 4)
    assert not small.rowtiles and small.ntiles == -(-3 * 49 // _plan.RB)
    assert _plan.pair_tile_plan(_plan.forward_plan((0, 5), (3, 3), (1, 1), (1, 1), (1, 1)), 2, 3, 4, 4).path is None


@pytest.mark.large
def test_input_past_2_31_elements():
    """An input of more than 2**31 elements (lazily mapped zeros): a strided window reads its first
    and last rows, whose offsets pass 2**31; forward and weight gradient on the pair tile."""
    G, v = 4, vlen(np.float32)
    C = 4 * G
    H = -(-(INT32_MAX + 1) // (64 * C)) + 4
    x = lazy_zeros((1, H, 64, C))
    x[0, :3] = rand((3, 64, C), np.float32)
    x[0, -3:] = rand((3, 64, C), np.float32)
    w = rand((3, 3, 4, v * G), np.float32)
    s = H - 3
    y = ops.conv2d(x, w, stride=(s, 1), groups=G)
    assert _dispatch.last_kernel["conv2d"] == "grouped" and y.shape[1] == 2
    xs = np.concatenate([x[:, :3], x[:, -3:]], axis=1)
    want = ref.conv2d(xs, w, stride=(3, 1), groups=G)
    np.testing.assert_allclose(y, want, rtol=3e-5, atol=3e-4)
    dy = rand(y.shape, np.float32)
    _, dw, _ = ops.conv2d_grad(dy, x, w, stride=(s, 1), groups=G, need_dx=False)
    assert _dispatch.last_kernel["conv2d_grad:weight"] == "grouped"
    np.testing.assert_allclose(dw, ref.conv2d_grad(dy, xs, w, stride=(3, 1), groups=G)[1], rtol=3e-5, atol=3e-4)


@pytest.mark.parametrize("stride", [1, 2])
def test_groups_of_one_vector_take_the_pair_tile_over_the_narrow_kernel(monkeypatch, level, stride):
    """With the narrow kernel allowed: groups of exactly one vector of outputs (more than
    NARROW_MAX_KO; RegNet's group width 8 on AVX2) run the pair tile, forward and input gradient;
    groups of at most NARROW_MAX_KO outputs keep the narrow kernel."""
    monkeypatch.setattr(conv_ops, "_force_narrow", None)
    v = vlen(np.float32)
    x, w = rand((2, 9, 10, 4 * v), np.float32), rand((3, 3, v, 4 * v), np.float32)
    kw = dict(stride=stride, padding="same", groups=4)
    y = ops.conv2d(x, w, **kw)
    want = "grouped" if v > _plan.NARROW_MAX_KO else None
    if want:
        assert _dispatch.last_kernel["conv2d"] == want
    check(y, ref.conv2d(x, w, **kw), np.float32, 9 * v)
    dy = rand(y.shape, np.float32)
    dx = ops.conv2d_grad(dy, x, w, **kw)[0]
    if want:
        assert _dispatch.last_kernel["conv2d_grad"] == want
    check(dx, ref.conv2d_grad(dy, x, w, **kw)[0], np.float32, 9 * v)
    x4, w4 = rand((2, 9, 10, 4 * 8), np.float32), rand((3, 3, 8, 4 * _plan.NARROW_MAX_KO), np.float32)
    ops.conv2d(x4, w4, padding="same", groups=4)
    assert _dispatch.last_kernel["conv2d"] in ("narrow", "tiles")
