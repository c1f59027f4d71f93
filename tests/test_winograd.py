"""Winograd F(4x4, 3x3) / F(2x2, 3x3) (src/winograd_impl.h, fastconv/ops/winograd.py): forward and
input gradient against the float64 reference, finite differences, the adjoint identity, threads,
SIMD levels, odd shapes, every output written, and the algorithm choice (FASTCONV_CONV_ALGO).

Float32 error Winograd adds (max |got - ref| / max |ref| against the float64 reference, measured on
the tutorials' 3x3 shapes, y, dx and dw, He-scaled weights): direct 1e-7 to 1.4e-6; F(2x2) 2e-7 to
7e-7; F(4x4) 2e-6 to 6.4e-6 (its transforms multiply by up to 8 and 1/24), about 5x direct's but 30x
inside the tolerance every conv test uses (2e-4 of the scale).  Table in bench/WINOGRAD.md.
test_float32_error_inside_tolerance asserts that bound per shape with margin.
"""
import numpy as np
import pytest
from gradcheck import numeric_grad  # tests/gradcheck.py

import fastconv
from fastconv import _dispatch, ops
from fastconv import reference as ref
from fastconv.ops import _plan
from fastconv.ops import conv as conv_op
from fastconv.ops import winograd as wino

RNG = np.random.default_rng(2024)
TOL = {np.float32: {"rtol": 2e-4, "atol": 2e-4}, np.float64: {"rtol": 1e-10, "atol": 1e-10}}
LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
WINO = ["winograd4", "winograd2"]


def rand(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def close(a, b, dtype):
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale)


@pytest.fixture
def algo(request):
    _dispatch.set_conv_algo(request.param)
    yield request.param
    _dispatch.set_conv_algo(None)


@pytest.fixture
def simd_level(request):
    yield _dispatch.set_simd(request.param)
    _dispatch.set_simd(None)


def check(N, H, W, C, K, padding, dtype, algo, bias=True, relu=False):
    x, w = rand((N, H, W, C), dtype), rand((3, 3, C, K), dtype)
    b = rand((K,), dtype) if bias else None
    y = ops.conv2d(x, w, b, padding=padding, relu=relu)
    assert _dispatch.last_kernel["conv2d"] == algo
    want = ref.conv2d(x, w, b, padding=padding)
    close(y, np.maximum(want, 0) if relu else want, dtype)
    dy = rand(y.shape, dtype)
    dx, dw, db = ops.conv2d_grad(dy, x, w, padding=padding)
    assert _dispatch.last_kernel["conv2d_grad"] == algo
    assert _dispatch.last_kernel["conv2d_grad:weight"] == algo
    rdx, rdw, rdb = ref.conv2d_grad(dy, x, w, padding=padding)
    for got, want in ((dx, rdx), (dw, rdw), (db, rdb)):
        assert got.dtype == dtype
        close(got, want, dtype)


SHAPES = [
    # N, H, W, C, K, padding: H, W not multiples of 4 or 2, channels at vector widths +-1, primes
    (2, 9, 11, 5, 7, 1),
    (1, 8, 8, 16, 32, "same"),
    (3, 13, 6, 17, 9, "valid"),
    (2, 7, 10, 15, 16, ((2, 0), (1, 3))),     # explicit, asymmetric, a pad of 3 (> kernel - 1)
    (1, 4, 4, 31, 33, "same"),
    (2, 5, 3, 8, 1, 0),                       # one output channel
    (1, 3, 3, 1, 3, "valid"),                 # one output pixel, one input channel
    (1, 12, 19, 9, 23, 2),
]


@pytest.mark.parametrize("algo", WINO, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_against_reference(algo, dtype, shape):
    check(*shape, dtype=dtype, algo=algo)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_bias_relu_epilogue_and_no_bias(algo):
    check(2, 10, 9, 12, 20, "same", np.float32, algo, bias=True, relu=True)
    check(2, 10, 9, 12, 20, "same", np.float32, algo, bias=False, relu=True)
    check(1, 6, 7, 4, 5, 1, np.float64, algo, bias=False)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_relu_passes_nan_like_direct(algo):
    x, w = rand((1, 6, 6, 4)), rand((3, 3, 4, 8))
    x[0, 2, 2, 1] = np.nan
    y = ops.conv2d(x, w, padding=1, relu=True)
    _dispatch.set_conv_algo("direct")
    yd = ops.conv2d(x, w, padding=1, relu=True)
    # Winograd spreads a NaN input over its whole tile; every output the direct conv makes NaN is NaN
    assert np.isnan(y[np.isnan(yd)]).all()


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_input_gradient_by_finite_differences(algo):
    x, w = rand((2, 6, 7, 3), np.float64), rand((3, 3, 3, 4), np.float64)
    y = ops.conv2d(x, w, padding=((1, 0), (2, 1)))
    dy = rand(y.shape, np.float64)

    def loss():
        return float(np.vdot(ops.conv2d(x, w, padding=((1, 0), (2, 1))), dy))

    dx, _, _ = ops.conv2d_grad(dy, x, w, padding=((1, 0), (2, 1)))
    assert _dispatch.last_kernel["conv2d_grad"] == algo
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_weight_and_bias_gradient_by_finite_differences(algo):
    x, w, b = rand((2, 7, 6, 3), np.float64), rand((3, 3, 3, 4), np.float64), rand((4,), np.float64)
    y = ops.conv2d(x, w, b, padding=((2, 0), (1, 1)))
    dy = rand(y.shape, np.float64)

    def loss():
        return float(np.vdot(ops.conv2d(x, w, b, padding=((2, 0), (1, 1))), dy))

    _, dw, db = ops.conv2d_grad(dy, x, w, padding=((2, 0), (1, 1)))
    assert _dispatch.last_kernel["conv2d_grad:weight"] == algo
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("algo", WINO, indirect=True)
@pytest.mark.parametrize("padding", ["same", "valid", 2])
def test_adjoint(algo, padding):
    """<conv(x), dy> = <x, dx(dy)>: the input gradient is the forward's adjoint."""
    x, w = rand((2, 11, 9, 6), np.float64), rand((3, 3, 6, 5), np.float64)
    y = ops.conv2d(x, w, padding=padding)
    dy = rand(y.shape, np.float64)
    dx, _, _ = ops.conv2d_grad(dy, x, w, padding=padding)
    np.testing.assert_allclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_one_and_two_threads_agree_bit_for_bit(algo):
    x, w, b = rand((4, 21, 18, 16)), rand((3, 3, 16, 24)), rand((24,))
    dy = rand((4, 21, 18, 24))
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        one = [ops.conv2d(x, w, b, padding=1), *ops.conv2d_grad(dy, x, w, padding=1)]
        fastconv.set_num_threads(2)
        two = [ops.conv2d(x, w, b, padding=1), *ops.conv2d_grad(dy, x, w, padding=1)]
    finally:
        fastconv.set_num_threads(before)
    for a, c in zip(one, two):
        # y, dx: each tile's arithmetic does not depend on its block; dw, db: max(2, threads)
        # chunks of tiles summed in chunk order, whichever thread ran them
        np.testing.assert_array_equal(a, c)
    close(one[0], ref.conv2d(x, w, b, padding=1), np.float32)


@pytest.mark.parametrize("simd_level", LEVELS, indirect=True)
@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_every_simd_level(simd_level, algo):
    vlen = {"generic": 4, "avx2": 8, "avx512": 16}[simd_level]
    # (vlen, 3 * vlen) and (3 * vlen, vlen): a last block of exactly one vector of channels (the half
    # GEMM and weight-gradient tiles) in the forward / weight gradient and in the input gradient
    for C, K in ((vlen - 1, vlen + 1), (vlen + 1, 2 * vlen - 1), (2 * vlen, 4 * vlen + 1), (vlen, 3 * vlen),
                 (3 * vlen, vlen)):
        check(2, 9, 7, C, K, "same", np.float32, algo)
        assert _dispatch.last_used["conv2d"] == simd_level
        assert _dispatch.last_used["conv2d_grad"] == simd_level


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_transposed_conv_stride_one(algo):
    x, w, b = rand((2, 7, 6, 9)), rand((3, 3, 5, 9)), rand((5,))
    for padding in (0, 1, "same"):
        y = ops.conv_transpose2d(x, w, b, padding=padding)
        assert _dispatch.last_kernel["conv_transpose2d"] == algo
        close(y, ref.conv_transpose2d(x, w, b, padding=padding), np.float32)
        dy = rand(y.shape)
        got = ops.conv_transpose2d_grad(dy, x, w, padding=padding)
        for g, want in zip(got, ref.conv_transpose2d_grad(dy, x, w, padding=padding)):
            close(g, want, np.float32)


@pytest.fixture
def nan_empty(monkeypatch):
    """np.empty (and so aligned_empty) hands out all-NaN arrays: an output element no kernel writes
    stays NaN."""
    real_empty = np.empty

    def empty(shape, dtype=float, **kw):
        a = real_empty(shape, dtype=dtype, **kw)
        a.reshape(-1).view(np.uint8).fill(0xFF)
        return a

    monkeypatch.setattr(np, "empty", empty)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_every_output_element_is_written(algo, nan_empty):
    for N, H, W, C, K, padding in SHAPES[:5]:
        x, w = rand((N, H, W, C)), rand((3, 3, C, K))
        y = ops.conv2d(x, w, padding=padding)
        assert np.isfinite(y).all()
        dx, dw, db = ops.conv2d_grad(np.ones_like(y), x, w, padding=padding)
        assert np.isfinite(dx).all() and np.isfinite(dw).all() and np.isfinite(db).all()
        assert _dispatch.last_kernel["conv2d"] == _dispatch.last_kernel["conv2d_grad:weight"] == algo


@pytest.mark.parametrize("shape", [(8, 28, 28, 32, 64), (8, 14, 14, 64, 64), (4, 32, 32, 32, 64), (8, 7, 7, 64, 64)])
def test_float32_error_inside_tolerance(shape):
    """The float32 error Winograd adds: max relative error against the float64 reference stays
    below 2e-5 for F(4x4) (measured 2e-6 to 6e-6) and 2e-6 for F(2x2) (direct: up to 1.4e-6),
    ten times inside the tests' 2e-4."""
    N, H, W, C, K = shape
    x, w, b = rand((N, H, W, C)), rand((3, 3, C, K)), rand((K,))
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=1)
    scale = np.abs(want).max()
    errs = {}
    try:
        for a in ["direct"] + WINO:
            _dispatch.set_conv_algo(a)
            errs[a] = float(np.abs(ops.conv2d(x, w, b, padding=1) - want).max() / scale)
    finally:
        _dispatch.set_conv_algo(None)
    assert errs["winograd4"] < 2e-5 and errs["winograd2"] < 2e-6 and errs["direct"] < 5e-6, errs


# ---- the choice of algorithm ----

def test_auto_rule_and_recorded_variant():
    _dispatch.set_conv_algo("auto")
    try:
        x, w = rand((2, 16, 16, 16)), rand((3, 3, 16, 32))
        ops.conv2d(x, w, padding=1)
        assert _dispatch.last_kernel["conv2d"] == _plan.conv_algo(2, 16, 16, 16, 32, 4) == "winograd4"
        ops.conv2d_grad(rand((2, 16, 16, 32)), x, w, padding=1)
        assert _dispatch.last_kernel["conv2d_grad"] == "winograd4"
        # few channels, float64, stride 2, dilation 2, groups, 5x5, small maps: direct
        assert _plan.conv_algo(2, 16, 16, 8, 32, 4) == "direct"
        assert _plan.conv_algo(2, 16, 16, 16, 32, 8) == "direct"
        assert _plan.conv_algo(2, 3, 3, 64, 64, 4) == "direct"
        # up to 256 x 256 channels where the L3 holds the transformed weight (_plan.size_for_cpu)
        assert _plan.conv_algo(2, 14, 14, 256, 256, 4) == (
            "winograd4" if 256 * 256 <= _plan.WINO_MAX_CHANNEL_PRODUCT else "direct")
        assert _plan.conv_algo(2, 14, 14, 512, 512, 4) == "direct"
        for kwargs, wshape in (({"stride": 2}, (3, 3, 16, 32)),
                               ({"groups": 2}, (3, 3, 8, 32)), ({}, (5, 5, 16, 32))):
            ops.conv2d(x, rand(wshape), padding="same", **kwargs)
            assert _dispatch.last_kernel["conv2d"] not in WINO
        ops.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
        assert _dispatch.last_kernel["conv2d"] not in WINO
    finally:
        _dispatch.set_conv_algo(None)


def test_winograd_picks_the_tile_by_map_size():
    _dispatch.set_conv_algo("winograd")
    try:
        ops.conv2d(rand((1, 9, 9, 3)), rand((3, 3, 3, 4)), padding=1)
        assert _dispatch.last_kernel["conv2d"] == "winograd4"
        ops.conv2d(rand((1, 3, 9, 3)), rand((3, 3, 3, 4)), padding=1)
        assert _dispatch.last_kernel["conv2d"] == "winograd2"
        ops.conv2d(rand((1, 9, 9, 3)), rand((3, 3, 3, 4)), padding=1, stride=2)  # ineligible
        assert _dispatch.last_kernel["conv2d"] not in WINO
    finally:
        _dispatch.set_conv_algo(None)


def test_direct_forced():
    _dispatch.set_conv_algo("direct")
    try:
        ops.conv2d(rand((2, 16, 16, 32)), rand((3, 3, 32, 32)), padding=1)
        assert _dispatch.last_kernel["conv2d"] not in WINO
    finally:
        _dispatch.set_conv_algo(None)


def test_environment_variable(monkeypatch):
    # FASTCONV_CONV_ALGO is read once and kept; set_conv_algo(None) reads it again
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "winograd2")
    _dispatch.set_conv_algo(None)
    assert _dispatch.get_conv_algo() == "winograd2"
    ops.conv2d(rand((1, 8, 8, 4)), rand((3, 3, 4, 4)), padding=1)
    assert _dispatch.last_kernel["conv2d"] == "winograd2"
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "Direct")
    assert _dispatch.get_conv_algo() == "winograd2"  # cached until refreshed
    assert _dispatch.set_conv_algo(None) == "direct"
    assert _dispatch.get_conv_algo() == "direct"
    _dispatch.set_conv_algo("winograd4")  # the function overrides the variable
    try:
        assert _dispatch.get_conv_algo() == "winograd4"
    finally:
        _dispatch.set_conv_algo(None)
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "fastest")
    with pytest.warns(RuntimeWarning, match="FASTCONV_CONV_ALGO"):
        assert _dispatch.set_conv_algo(None) == "auto"
    monkeypatch.delenv("FASTCONV_CONV_ALGO")
    assert _dispatch.set_conv_algo(None) == "auto"


def test_bad_algorithm_name_raises():
    with pytest.raises(ValueError, match="winograd4"):
        _dispatch.set_conv_algo("wino")
    assert _dispatch.get_conv_algo() in _dispatch.CONV_ALGOS


@pytest.mark.parametrize("epilogue", [False, True, "none", "relu"])
def test_epilogues_winograd_runs(epilogue):
    x, w = rand((1, 8, 8, 16)), rand((3, 3, 16, 16))
    a = conv_op._conv_args("conv2d", x, w, 1, 1, 1, 1)
    _dispatch.set_conv_algo("winograd4")
    try:
        assert conv_op._conv_algo(a, a.out_hw, epilogue) == "winograd4"
    finally:
        _dispatch.set_conv_algo(None)


@pytest.mark.parametrize("epilogue", ["selu", "gelu", 2, 7, "swish", np.array(1)])
def test_other_epilogues_fall_back_to_direct(epilogue):
    """Any epilogue other than none and ReLU (codes other helpers add) runs the direct kernel."""
    x, w = rand((1, 8, 8, 16)), rand((3, 3, 16, 16))
    a = conv_op._conv_args("conv2d", x, w, 1, 1, 1, 1)
    _dispatch.set_conv_algo("winograd4")
    try:
        assert conv_op._conv_algo(a, a.out_hw, epilogue) == "direct"
    finally:
        _dispatch.set_conv_algo(None)


def test_plan_blocks():
    p = _plan.wino_plan(32, 28, 28, 4, 36 * 96 * 4, 2)
    assert p.ntiles == 32 * 7 * 7 and p.tb % 6 == 0 and 6 <= p.tb <= _plan.WINO_MAX_TB
    assert p.nchunks == -(-p.ntiles // p.tb) and p.threads == 2
    small = _plan.wino_plan(1, 4, 4, 4, 100, 2)
    assert (small.ntiles, small.tb, small.nchunks, small.threads) == (1, 6, 1, 1)


def test_weight_transform_matches_the_matrices():
    w = rand((3, 3, 5, 19), np.float64)
    for m in (2, 4):
        vb = 8
        U = wino.transform_weight(w, m, vb).reshape((m + 2) ** 2, 3, 5, vb)
        want = np.einsum("ai,bj,ijck->abck", wino.G[m], wino.G[m], w).reshape((m + 2) ** 2, 5, 19)
        got = U.transpose(0, 2, 1, 3).reshape((m + 2) ** 2, 5, 3 * vb)
        np.testing.assert_allclose(got[:, :, :19], want, rtol=1e-14, atol=1e-14)
        assert not got[:, :, 19:].any()


# ---- sizes past 16- and 24-bit tile indices, long columns ----

@pytest.mark.large
def test_tile_index_past_2_24():
    """N = 2**24 + 5 one-pixel images: 16,777,221 tiles, each its own image (the tile -> image
    division and offsets past 2**24 tiles), against the closed form x * w[1, 1] + b."""
    N = 2**24 + 5
    x = np.ones((N, 1, 1, 1), np.float32)
    x[-1] = 3.0
    # its own generator: the values must not depend on which tests ran before (the transforms' float32
    # rounding of w[1, 1] + b stays within rtol 1e-6 for these; a draw where they cancel need not)
    rng = np.random.default_rng(355)
    w, b = rng.standard_normal((3, 3, 1, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    _dispatch.set_conv_algo("winograd2")
    try:
        y = ops.conv2d(x, w, b, padding=1)
    finally:
        _dispatch.set_conv_algo(None)
    want = w[1, 1, 0] + b
    np.testing.assert_allclose(y[:-1].reshape(-1, 2)[[0, 2**16 + 1, 2**24 - 1, N - 2]], np.tile(want, (4, 1)),
                               rtol=1e-6)
    np.testing.assert_allclose(y[-1, 0, 0], 3 * w[1, 1, 0] + b, rtol=1e-6)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_tiles_past_2_16_and_thousands_of_rows(algo):
    """3001 rows x 47 columns x 2 images: 2 * 751 * 12 = 18,024 F(4x4) tiles (72,096 F(2x2) ones,
    past 2**16), against the reference."""
    x, w, b = rand((2, 3001, 47, 5)), rand((3, 3, 5, 6)), rand((6,))
    y = ops.conv2d(x, w, b, padding="same")
    close(y, ref.conv2d(x, w, b, padding="same"), np.float32)
    dy = rand(y.shape)
    for got, want in zip(ops.conv2d_grad(dy, x, w, padding="same"), ref.conv2d_grad(dy, x, w, padding="same")):
        close(got, want, np.float32)
    assert _dispatch.last_kernel["conv2d_grad:weight"] == algo


def test_auto_weight_gradient_needs_enough_tiles():
    """auto runs the weight gradient with Winograd only from WINO_WGRAD_MIN_TILES output tiles in the
    batch (few tiles do not repay its fixed work per channel pair); a forced algorithm still runs."""
    assert _plan.wino_wgrad_pays(32, 7, 7) and _plan.wino_wgrad_pays(4, 14, 14) and not _plan.wino_wgrad_pays(8, 7, 7)
    x, w = rand((2, 8, 8, 16)), rand((3, 3, 16, 16))  # 2 x 2x2 tiles
    dy = rand((2, 8, 8, 16))
    _dispatch.set_conv_algo("auto")
    try:
        _, dw, db = ops.conv2d_grad(dy, x, w, padding=1)
        assert _dispatch.last_kernel["conv2d_grad:weight"] in ("tiles", "planar")
        assert _dispatch.last_kernel["conv2d_grad"] == "winograd4"  # the input gradient still does
        _dispatch.set_conv_algo("winograd4")
        _, dw4, db4 = ops.conv2d_grad(dy, x, w, padding=1)
        assert _dispatch.last_kernel["conv2d_grad:weight"] == "winograd4"
    finally:
        _dispatch.set_conv_algo(None)
    np.testing.assert_allclose(dw4, dw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db4, db, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["selu", "elu", "gelu", "tanh"])
def test_other_activations_run_winograd_then_a_pass(activation):
    """conv2d(activation=...) other than ReLU: Winograd with the bias, then the activation's compiled
    pass over y; equal to the activation of the reference conv."""
    x, w, b = rand((2, 9, 10, 16)), rand((3, 3, 16, 24)), rand((24,))
    _dispatch.set_conv_algo("winograd4")
    try:
        y = ops.conv2d(x, w, b, padding="same", activation=activation)
        assert _dispatch.last_kernel["conv2d"] == "winograd4"
        assert _dispatch.last_kernel["conv2d_epilogue"] == "pass"
    finally:
        _dispatch.set_conv_algo(None)
    z = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding="same")
    want = ops.activation(z, activation)
    # Winograd's float32 error is relative to the conv's scale (|z|), passed on with slope <= ~1.1
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5 * float(np.abs(z).max()))


# ---- dilated convs: the polyphase sub-convs (fc_wino dh, dw) ----

def check_dilated(N, H, W, C, K, padding, dilation, dtype, algo, bias=True, relu=False):
    x, w = rand((N, H, W, C), dtype), rand((3, 3, C, K), dtype)
    b = rand((K,), dtype) if bias else None
    y = ops.conv2d(x, w, b, padding=padding, dilation=dilation, relu=relu)
    assert _dispatch.last_kernel["conv2d"] == algo
    want = ref.conv2d(x, w, b, padding=padding, dilation=dilation)
    close(y, np.maximum(want, 0) if relu else want, dtype)
    dy = rand(y.shape, dtype)
    got = ops.conv2d_grad(dy, x, w, padding=padding, dilation=dilation)
    assert _dispatch.last_kernel["conv2d_grad"] == _dispatch.last_kernel["conv2d_grad:weight"] == algo
    for g, want in zip(got, ref.conv2d_grad(dy, x, w, padding=padding, dilation=dilation)):
        assert g.dtype == dtype
        close(g, want, dtype)


DILATED = [
    # N, H, W, C, K, padding, dilation: phases of unequal length (odd extents), unequal dilations,
    # explicit pads past the dilated kernel, a phase with no output row
    (2, 13, 11, 5, 7, "same", 2),
    (1, 17, 9, 16, 20, "valid", (2, 3)),
    (3, 12, 12, 17, 33, ((2, 1), (0, 3)), (3, 2)),
    (2, 9, 10, 4, 3, ((4, 5), (1, 1)), 2),
    (1, 7, 8, 3, 5, "valid", (3, 1)),          # 1 output row: phases 1, 2 of rows are empty
    (2, 30, 29, 8, 16, 4, 4),
]


@pytest.mark.parametrize("algo", WINO, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", DILATED)
def test_dilated_against_reference(algo, dtype, shape):
    check_dilated(*shape, dtype=dtype, algo=algo)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_dilated_relu_no_bias_and_transposed(algo):
    check_dilated(2, 11, 10, 12, 20, "same", 2, np.float32, algo, bias=False, relu=True)
    x, w, b = rand((2, 7, 6, 9)), rand((3, 3, 5, 9)), rand((5,))
    y = ops.conv_transpose2d(x, w, b, padding=1, dilation=2)
    assert _dispatch.last_kernel["conv_transpose2d"] == algo
    close(y, ref.conv_transpose2d(x, w, b, padding=1, dilation=2), np.float32)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_dilated_gradients_by_finite_differences(algo):
    x, w, b = rand((2, 8, 7, 3), np.float64), rand((3, 3, 3, 4), np.float64), rand((4,), np.float64)
    kw = {"padding": ((2, 1), (3, 0)), "dilation": (2, 3)}
    dy = rand(ops.conv2d(x, w, b, **kw).shape, np.float64)

    def loss():
        return float(np.vdot(ops.conv2d(x, w, b, **kw), dy))

    dx, dw, db = ops.conv2d_grad(dy, x, w, **kw)
    assert _dispatch.last_kernel["conv2d_grad"] == _dispatch.last_kernel["conv2d_grad:weight"] == algo
    for got, arr in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(got, numeric_grad(loss, arr), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("simd_level", LEVELS, indirect=True)
@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_dilated_every_simd_level_and_thread_count(simd_level, algo):
    vlen = {"generic": 4, "avx2": 8, "avx512": 16}[simd_level]
    x, w, b = rand((3, 15, 14, vlen + 1)), rand((3, 3, vlen + 1, 2 * vlen + 3)), rand((2 * vlen + 3,))
    dy = rand((3, 15, 14, 2 * vlen + 3))
    before = fastconv.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            fastconv.set_num_threads(n)
            runs.append([ops.conv2d(x, w, b, padding="same", dilation=2),
                         *ops.conv2d_grad(dy, x, w, padding="same", dilation=2)])
            assert _dispatch.last_used["conv2d_grad"] == simd_level
    finally:
        fastconv.set_num_threads(before)
    for a, c in zip(*runs):
        np.testing.assert_array_equal(a, c)
    close(runs[0][0], ref.conv2d(x, w, b, padding="same", dilation=2), np.float32)


@pytest.mark.parametrize("algo", WINO, indirect=True)
def test_dilated_every_output_element_is_written(algo, nan_empty):
    for N, H, W, C, K, padding, dilation in DILATED:
        x, w = rand((N, H, W, C)), rand((3, 3, C, K))
        y = ops.conv2d(x, w, padding=padding, dilation=dilation)
        assert np.isfinite(y).all()
        dx, dw, db = ops.conv2d_grad(np.ones_like(y), x, w, padding=padding, dilation=dilation)
        assert np.isfinite(dx).all() and np.isfinite(dw).all() and np.isfinite(db).all()


def test_auto_runs_dilated_convs_by_their_sub_maps():
    """auto sizes a dilated conv by its polyphase sub-convs: 8 x 56x56 with dilation 2 is 32 sub-images
    of 28x28 (Winograd F(4x4)); a dilation that leaves sub-maps below 4x4 runs direct."""
    assert wino.phase_geometry(8, 56, 56, (2, 2)) == (32, 28, 28)
    assert wino.phase_geometry(2, 13, 11, (2, 3)) == (12, 7, 4)
    _dispatch.set_conv_algo("auto")
    try:
        x, w = rand((2, 16, 16, 16)), rand((3, 3, 16, 32))
        ops.conv2d(x, w, padding="same", dilation=2)
        assert _dispatch.last_kernel["conv2d"] == "winograd4"
        ops.conv2d(x, w, padding="same", dilation=6)  # 6 x 6 sub-maps of 3x3 or less
        assert _dispatch.last_kernel["conv2d"] not in WINO
    finally:
        _dispatch.set_conv_algo(None)


# ---- the float32 weight transform, compiled per SIMD level ----

@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("flip", [False, True])
def test_float32_weight_transform_on_every_level(level, flip):
    """U of a float32 weight at each level's block width (partial last block, zeros past K), forward
    and flipped (the input gradient's weight), against the matrices in float64."""
    isa = _dispatch.LEVELS[level]
    vb = {"generic": 8, "avx2": 16, "avx512": 32}[level]
    w = rand((3, 3, 7, vb + 5))             # (3, 3, C, K); flipped: a conv from K to C channels
    g = wino.input_grad_weight(w.astype(np.float64)) if flip else w.astype(np.float64)
    C, K = g.shape[2:]
    for m in (2, 4):
        al = m + 2
        nkb = -(-K // vb)
        U = wino.transform_weight(w, m, vb, flip, 2, isa).reshape(al * al, nkb, C, vb)
        want = np.einsum("ai,bj,ijck->abck", wino.G[m], wino.G[m], g).reshape(al * al, C, K)
        got = U.transpose(0, 2, 1, 3).reshape(al * al, C, nkb * vb)
        np.testing.assert_allclose(got[:, :, :K], want, rtol=1e-6, atol=1e-6)
        assert not got[:, :, K:].any()


@pytest.mark.large
def test_dilated_tile_index_past_2_24():
    """N = 2**22 + 5 images of 3x3, dilation 2, "same": 4 phases of one F(2x2) tile each, 16,777,236
    tiles (the phase decode of tiles past 2**24), against the closed forms of the centre and corner
    pixels: only the centre tap reaches x at the centre, the four lower-right taps at (0, 0)."""
    N = 2**22 + 5
    x = np.ones((N, 3, 3, 1), np.float32)
    x[-1] = 3.0
    # its own generator: the values must not depend on which tests ran before (the transforms' float32
    # rounding of w[1, 1] + b stays within rtol 1e-6 for these; a draw where they cancel need not)
    rng = np.random.default_rng(355)
    w, b = rng.standard_normal((3, 3, 1, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    _dispatch.set_conv_algo("winograd2")
    try:
        y = ops.conv2d(x, w, b, padding="same", dilation=2)
        assert _dispatch.last_kernel["conv2d"] == "winograd2"
    finally:
        _dispatch.set_conv_algo(None)
    centre = w[1, 1, 0] + b
    corner = w[1, 1, 0] + w[1, 2, 0] + w[2, 1, 0] + w[2, 2, 0] + b
    for n in (0, 2**20 + 1, 2**22 - 1, N - 2):
        np.testing.assert_allclose(y[n, 1, 1], centre, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(y[n, 0, 0], corner, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[-1, 1, 1], 3 * w[1, 1, 0] + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[-1, 0, 0], 3 * (corner - b) + b, rtol=1e-5, atol=1e-5)


def test_weight_gradient_plan_cuts_chunks_into_equal_blocks():
    """wino_wgrad_plan: max(WINO_WGRAD_MIN_CHUNKS, threads) chunks (the same for 1 and 2 threads),
    each of equal blocks of at most WINO_WGRAD_TB tiles whose transforms fit WINO_WGRAD_BLOCK_BYTES."""
    for N, H, W, tile_bytes in ((32, 7, 7, 36 * 256 * 4), (32, 28, 28, 36 * 64 * 4), (1, 3, 3, 0), (3, 9, 5, 10 ** 9)):
        plans = [_plan.wino_wgrad_plan(N, H, W, 4, t, tile_bytes) for t in (1, 2)]
        p = plans[0]
        assert all((q.tb, q.nchunks) == (p.tb, p.nchunks) for q in plans)
        assert p.ntiles == N * -(-H // 4) * -(-W // 4)
        assert 1 <= p.tb <= min(_plan.WINO_WGRAD_TB, max(1, _plan.WINO_WGRAD_BLOCK_BYTES // max(1, tile_bytes)))
        assert p.nchunks <= max(1, min(p.ntiles, _plan.WINO_WGRAD_MIN_CHUNKS))
        blocks = -(-p.ntiles // p.tb)
        assert p.nchunks <= blocks and blocks * p.tb - p.ntiles < p.tb
    p = _plan.wino_wgrad_plan(32, 7, 7, 4, 1, 36 * 256 * 4)  # 128 tiles, 64 a chunk, 28 a block at most
    assert (p.nchunks, p.tb) == (2, 22)
    assert _plan.wino_wgrad_plan(32, 7, 7, 4, 4, 36 * 256 * 4).nchunks == 4


@pytest.mark.parametrize("algo", WINO, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tb", [1, 5, 7])
def test_weight_gradient_with_several_blocks_a_chunk(algo, dtype, tb, monkeypatch):
    """Chunks of several blocks (the first stores its sums, the later ones add, a short last one):
    against the reference at every SIMD level (float32; float64 has one), and bit for bit on 1 and 2
    threads."""
    monkeypatch.setattr(_plan, "WINO_WGRAD_TB", tb)
    _plan.wino_wgrad_plan.cache_clear()
    x, w, dy = rand((3, 11, 13, 7), dtype), rand((3, 3, 7, 19), dtype), rand((3, 11, 13, 19), dtype)
    _, rdw, rdb = ref.conv2d_grad(dy, x, w, padding="same")
    before = fastconv.get_num_threads()
    try:
        for level in LEVELS if dtype == np.float32 else [None]:
            _dispatch.set_simd(level)
            got = []
            for t in (1, 2):
                fastconv.set_num_threads(t)
                got.append(ops.conv2d_grad(dy, x, w, padding="same")[1:])
                assert _dispatch.last_kernel["conv2d_grad:weight"] == algo
            for (dw, db) in got:
                close(dw, rdw, dtype)
                close(db, rdb, dtype)
            np.testing.assert_array_equal(got[0][0], got[1][0])
            np.testing.assert_array_equal(got[0][1], got[1][1])
    finally:
        fastconv.set_num_threads(before)
        _dispatch.set_simd(None)
        _plan.wino_wgrad_plan.cache_clear()
