"""conv2d / conv_transpose2d kernels against the NumPy reference, finite differences and invariants."""
import numpy as np
import pytest
from gradcheck import numeric_grad  # tests/gradcheck.py
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import _dispatch, ops
from fastconv._kernels import conv as conv_kernels
from fastconv import reference as ref
from fastconv.ops import conv as conv_ops

RNG = np.random.default_rng(1234)
TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}
LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]


@pytest.fixture(autouse=True)
def _direct_algorithm():
    """This file tests the direct kernels: Winograd (tests/test_winograd.py) stays off."""
    _dispatch.set_conv_algo("direct")
    yield
    _dispatch.set_conv_algo(None)


def rand(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def close(a, b, dtype):
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale)


def check_conv(N, H, W, C, K, kh, kw, dtype=np.float32, bias=True, **kw_):
    g = kw_.get("groups", 1)
    x, w = rand((N, H, W, C), dtype), rand((kh, kw, C // g, K), dtype)
    b = rand((K,), dtype) if bias else None
    y = ops.conv2d(x, w, b, **kw_)
    close(y, ref.conv2d(x, w, b, **kw_), dtype)
    assert y.dtype == dtype
    dy = rand(y.shape, dtype)
    for got, want in zip(ops.conv2d_grad(dy, x, w, **kw_), ref.conv2d_grad(dy, x, w, **kw_)):
        assert got.dtype == dtype
        close(got, want, dtype)


GRID = [
    # N, H, W, C, K, kh, kw, options
    (2, 9, 9, 3, 5, 3, 3, dict(padding=1)),
    (1, 7, 7, 8, 16, 3, 3, dict(padding="same")),
    (3, 8, 7, 7, 9, 3, 3, dict(padding="same", stride=2)),       # even and odd sizes, same, stride 2
    (2, 7, 8, 9, 17, 3, 3, dict(padding="same", stride=2)),
    (2, 10, 11, 4, 8, 2, 2, dict(stride=3)),                      # stride larger than the kernel
    (2, 13, 12, 5, 6, 3, 3, dict(stride=2, dilation=2, padding=2)),  # dilation with stride
    (2, 9, 10, 6, 7, 3, 2, dict(padding=((1, 2), (0, 3)))),       # asymmetric, non-square kernel
    (2, 8, 8, 8, 8, 3, 3, dict(groups=2, padding=1)),
    (2, 8, 8, 16, 32, 3, 3, dict(groups=4, padding="same")),
    (1, 6, 6, 33, 15, 1, 1, {}),                                  # 1x1, odd channels
    (2, 11, 9, 3, 33, 5, 5, dict(padding="same")),
    (1, 12, 12, 2, 31, 7, 7, dict(padding=3)),
    (1, 14, 29, 16, 24, 3, 3, dict(padding=1)),                   # wide rows: row-aligned tiles
    (1, 4, 31, 20, 40, 3, 3, dict(padding=1)),                    # 31 = 5+5+5+5+5+6 pixel tiles, partial block
    (4, 7, 7, 32, 33, 3, 3, dict(padding=1)),                     # small maps: flattened tiles
    (1, 5, 30, 1, 8, 3, 3, dict(padding="same")),                 # first layer, merged column taps
    (1, 1, 1, 3, 4, 1, 1, {}),
    (1, 4, 4, 2, 3, 4, 4, {}),                                    # kernel as large as the input
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=lambda c: "x".join(map(str, c[:7])) + str(c[7]))
def test_conv2d_grid(case, dtype):
    *dims, options = case
    check_conv(*dims, dtype=dtype, **options)


@pytest.mark.parametrize("channels", [7, 8, 9, 15, 16, 17, 31, 32, 33, 64])
def test_conv2d_channel_tails(channels):
    check_conv(2, 9, 13, channels, channels + 3, 3, 3, padding=1)
    check_conv(1, 6, 6, 5, channels, 3, 3, padding=1, bias=False)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(0, 3), H=st.integers(1, 12), W=st.integers(1, 12), g=st.sampled_from([1, 2, 4]),
       cg=st.integers(1, 5), kg=st.integers(1, 9), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.integers(1, 3), sw=st.integers(1, 3), dh=st.integers(1, 2), dw=st.integers(1, 2),
       padding=st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2),
                         st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                   st.tuples(st.integers(0, 2), st.integers(0, 2)))),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_conv2d_random(N, H, W, g, cg, kg, kh, kw, sh, sw, dh, dw, padding, dtype):
    kwargs = dict(stride=(sh, sw), dilation=(dh, dw), padding=padding, groups=g)
    x = rand((N, H, W, g * cg), dtype)
    w = rand((kh, kw, cg, g * kg), dtype)
    try:
        want = ref.conv2d(x, w, **kwargs)
    except ValueError:  # kernel larger than the padded input: ours must refuse too
        with pytest.raises(ValueError):
            ops.conv2d(x, w, **kwargs)
        return
    y = ops.conv2d(x, w, **kwargs)
    close(y, want, dtype)
    dy = rand(y.shape, dtype)
    for got, exp in zip(ops.conv2d_grad(dy, x, w, **kwargs), ref.conv2d_grad(dy, x, w, **kwargs)):
        close(got, exp, dtype)


TRANSPOSED = [
    (2, 5, 6, 8, 4, 3, dict(stride=2, padding=1, output_padding=1)),
    (2, 7, 7, 6, 4, 4, dict(stride=2, padding="same", groups=2)),
    (1, 5, 5, 3, 5, 3, dict(stride=2, padding="valid")),
    (2, 4, 5, 8, 16, 3, dict(stride=2, dilation=2, output_padding=1)),
    (2, 6, 6, 4, 4, 3, dict(padding=1)),
    (1, 3, 4, 5, 7, 5, dict(stride=3, padding=2, output_padding=2)),
    (2, 6, 5, 16, 9, 2, dict(stride=2)),
    (1, 3, 26, 24, 20, 4, dict(stride=2, padding=1)),            # 4x4 s2: 26-wide phases in 5/6-pixel tiles
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TRANSPOSED, ids=lambda c: "x".join(map(str, c[:6])) + str(c[6]))
def test_conv_transpose2d(case, dtype):
    N, H, W, cin, cout, k, kwargs = case
    g = kwargs.get("groups", 1)
    x, w, b = rand((N, H, W, cin), dtype), rand((k, k, cout // g, cin), dtype), rand((cout,), dtype)
    y = ops.conv_transpose2d(x, w, b, **kwargs)
    close(y, ref.conv_transpose2d(x, w, b, **kwargs), dtype)
    dy = rand(y.shape, dtype)
    for got, want in zip(ops.conv_transpose2d_grad(dy, x, w, **kwargs), ref.conv_transpose2d_grad(dy, x, w, **kwargs)):
        close(got, want, dtype)


@pytest.mark.parametrize("padding", [0, 1, "same", "valid"])
def test_transpose_is_input_gradient_of_conv(padding):
    x = rand((2, 10, 8, 6), np.float64)
    w = rand((3, 3, 6, 5), np.float64)
    y = ops.conv2d(x, w, stride=2, padding=padding)
    dy = rand(y.shape, np.float64)
    dx = ops.conv2d_grad(dy, x, w, stride=2, padding=padding)[0]
    # output_padding gives back the rows the strided conv dropped ("same" on even sizes needs none)
    plain = ops.conv_transpose2d(dy, w, stride=2, padding=padding).shape
    out_pad = (x.shape[1] - plain[1], x.shape[2] - plain[2])
    assert padding != "same" or out_pad == (0, 0)
    t = ops.conv_transpose2d(dy, w, stride=2, padding=padding, output_padding=out_pad)
    assert t.shape == dx.shape
    np.testing.assert_allclose(t, dx, rtol=1e-12, atol=1e-12)


def test_adjoint_identity():
    x, w = rand((3, 11, 10, 6), np.float64), rand((3, 2, 3, 8), np.float64)
    kwargs = dict(stride=2, padding="same", dilation=(1, 2), groups=2)
    y = ops.conv2d(x, w, **kwargs)
    dy = rand(y.shape, np.float64)
    dx, dw, _ = ops.conv2d_grad(dy, x, w, **kwargs)
    assert np.isclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12)
    assert np.isclose(np.vdot(y, dy), np.vdot(w, dw), rtol=1e-12)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_finite_differences(op):
    x, w, b = rand((2, 5, 4, 4), np.float64), rand((3, 2, 2, 4), np.float64), rand((4,), np.float64)
    kwargs = dict(stride=2, padding=1, groups=2)
    if op == "conv_transpose2d":
        kwargs["output_padding"] = 1
    fwd, grad = getattr(ops, op), getattr(ops, op + "_grad")
    dy = rand(fwd(x, w, b, **kwargs).shape, np.float64)

    def loss():
        return float(np.vdot(fwd(x, w, b, **kwargs), dy))

    dx, dw, db = grad(dy, x, w, **kwargs)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-8)


@pytest.fixture
def simd_level(request):
    yield _dispatch.set_simd(request.param)
    _dispatch.set_simd(None)


@pytest.mark.parametrize("simd_level", LEVELS, indirect=True)
def test_every_simd_path(simd_level):
    check_conv(2, 10, 9, 19, 37, 3, 3, padding="same", stride=(1, 2))
    assert _dispatch.last_used["conv2d"] == simd_level
    assert _dispatch.last_used["conv2d_grad"] == simd_level
    x, w = rand((1, 6, 6, 5)), rand((3, 3, 7, 5))
    close(ops.conv_transpose2d(x, w, stride=2), ref.conv_transpose2d(x, w, stride=2), np.float32)


def test_unavailable_simd_level_falls_back_with_warning(monkeypatch):
    # pretend the CPU stops one level below AVX-512, so the fallback runs on every machine
    best = min(_dispatch.cpu_level(), _dispatch.LEVELS["avx2"])
    monkeypatch.setattr(_dispatch, "cpu_level", lambda: best)
    with pytest.warns(RuntimeWarning, match="no avx512"):
        used = _dispatch.set_simd("avx512")
    try:
        assert used == _dispatch.LEVEL_NAMES[best]
        check_conv(1, 6, 6, 3, 9, 3, 3, padding=1)
        assert _dispatch.last_used["conv2d"] == used
    finally:
        _dispatch.set_simd(None)


def test_one_thread_and_all_threads_agree():
    x, w = rand((4, 20, 20, 16)), rand((3, 3, 16, 32))
    dy = rand((4, 20, 20, 32))
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        one = [ops.conv2d(x, w, padding=1)] + list(ops.conv2d_grad(dy, x, w, padding=1))
        fastconv.set_num_threads(2)
        two = [ops.conv2d(x, w, padding=1)] + list(ops.conv2d_grad(dy, x, w, padding=1))
    finally:
        fastconv.set_num_threads(before)
    # forward and dx: the same arithmetic per pixel; dw, db: a fixed number of row chunks summed
    # in a fixed order, whichever thread ran them
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def nan_empty(monkeypatch):
    """np.empty hands out arrays whose bytes are all 0xFF, a NaN in float32 and float64, so an output
    element no kernel writes shows up as NaN: also in outputs carved from a byte buffer
    (fastconv.ops._validate.aligned_empty)."""
    real_empty = np.empty

    def empty(shape, dtype=float, **kw):
        a = real_empty(shape, dtype=dtype, **kw)
        a.reshape(-1).view(np.uint8).fill(0xFF)
        return a

    monkeypatch.setattr(np, "empty", empty)


def test_nan_empty_reaches_aligned_outputs(nan_empty):
    from fastconv.ops._validate import aligned_empty
    assert np.isnan(aligned_empty((3, 5), np.float32)).all()
    assert np.isnan(aligned_empty((2, 7), np.float64)).all()


def test_every_output_element_is_written(nan_empty):
    x, w = rand((2, 9, 8, 5)), rand((2, 3, 5, 7))
    for kwargs in (dict(stride=3), dict(stride=2, padding="same"), dict(padding=1, dilation=2)):
        y = ops.conv2d(x, w, **kwargs)
        assert np.isfinite(y).all()
        assert all(np.isfinite(a).all() for a in ops.conv2d_grad(np.ones_like(y), x, w, **kwargs))
        t = ops.conv_transpose2d(y, w, stride=3)
        assert np.isfinite(t).all()


def test_inputs_not_modified_and_any_layout_accepted():
    x = rand((2, 8, 8, 4))
    w = rand((3, 3, 4, 6))
    x_ro, w_ro = x.copy(), w.copy()
    x_ro.flags.writeable = False
    w_ro.flags.writeable = False
    want = ref.conv2d(x, w, padding=1)
    close(ops.conv2d(x_ro, w_ro, padding=1), want, np.float32)
    close(ops.conv2d(np.asfortranarray(x), np.asfortranarray(w), padding=1), want, np.float32)
    big = np.zeros((2, 8, 16, 8), np.float32)
    big[:, :, ::2, ::2] = x
    close(ops.conv2d(big[:, :, ::2, ::2], w, padding=1), want, np.float32)  # non-contiguous view
    assert np.array_equal(x, x_ro) and np.array_equal(w, w_ro)
    dy = rand(want.shape)
    dy_copy = dy.copy()
    ops.conv2d_grad(dy, x_ro, w_ro, padding=1)
    assert np.array_equal(dy, dy_copy)


def test_dtype_rules():
    img = RNG.integers(0, 255, (1, 6, 6, 1)).astype(np.uint8)
    w = rand((3, 3, 1, 2))
    y = ops.conv2d(img, w)
    assert y.dtype == np.float32
    close(y, ref.conv2d(img.astype(np.float32), w), np.float32)
    assert ops.conv2d(img.astype(np.float64), w).dtype == np.float64
    assert ops.conv2d(img.astype(bool), w).dtype == np.float32
    with pytest.raises(TypeError, match="x"):
        ops.conv2d(img.astype(np.complex64), w)
    with pytest.raises(TypeError):
        ops.conv2d(np.array([[[["a"]]]]), w)


def test_empty_batch():
    y = ops.conv2d(np.zeros((0, 8, 8, 3), np.float32), rand((3, 3, 3, 4)), padding="same", stride=2)
    assert y.shape == (0, 4, 4, 4)
    dx, dw, db = ops.conv2d_grad(np.zeros((0, 4, 4, 4), np.float32), np.zeros((0, 8, 8, 3), np.float32),
                                 rand((3, 3, 3, 4)), padding="same", stride=2)
    assert dx.shape == (0, 8, 8, 3) and not dw.any() and not db.any()
    t = ops.conv_transpose2d(np.zeros((0, 4, 4, 4), np.float32), rand((3, 3, 2, 4)), stride=2)
    assert t.shape == (0, 9, 9, 2)


@pytest.mark.parametrize("call, match", [
    (lambda: ops.conv2d(np.zeros((8, 8, 3)), np.zeros((3, 3, 3, 4))), r"x must be 4-D.*\(8, 8, 3\)"),
    (lambda: ops.conv2d(np.zeros((1, 8, 8, 3)), np.zeros((3, 3, 4, 4))), r"3 channels but w expects 4"),
    (lambda: ops.conv2d(np.zeros((1, 8, 8, 4)), np.zeros((3, 3, 2, 6)), groups=3), r"groups=3"),
    (lambda: ops.conv2d(np.zeros((1, 2, 2, 1)), np.zeros((3, 3, 1, 1))), r"larger than the padded input"),
    (lambda: ops.conv2d(np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 1, 1)), stride=0), r"stride must be >= 1"),
    (lambda: ops.conv2d(np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 1, 1)), dilation=(1, 0)), r"dilation"),
    (lambda: ops.conv2d(np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 1, 1)), padding=-1), r"padding must be >= 0"),
    (lambda: ops.conv2d(np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 1, 1)), padding="full"), r"padding"),
    (lambda: ops.conv2d(np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 1, 2)), np.zeros(3)), r"bias must have shape \(2,\)"),
    (lambda: ops.conv2d_grad(np.zeros((1, 5, 5, 2)), np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 1, 2))),
     r"dy must have the output's shape \(1, 6, 6, 2\)"),
    (lambda: ops.conv_transpose2d(np.zeros((1, 4, 4, 3)), np.zeros((3, 3, 2, 5))), r"3 channels but w expects 5"),
    (lambda: ops.conv_transpose2d(np.zeros((1, 4, 4, 3)), np.zeros((3, 3, 2, 3)), stride=2, output_padding=2),
     r"output_padding"),
])
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("x_shape, k", [((64, 28, 28, 16), 1), ((2, 5, 1500, 8), 3), ((1, 3, 28, 1), 3)])
def test_few_channel_inputs_of_any_size(x_shape, k):
    """Row-segment path: a long pixel row (pointwise conv of a big batch) must not blow up scratch."""
    x, w = rand(x_shape), rand((k, k, x_shape[3], 24))
    close(ops.conv2d(x, w, padding="same"), ref.conv2d(x, w, padding="same"), np.float32)


# ---- few-channel paths: the constant-shape forward rows (fc_rowk) and the narrow-output kernel ----
# (src/conv_impl.h, src/conv_narrow_impl.h).  _dispatch.last_kernel says which one ran.

def run_conv_checks(N, H, W, C, K, kh, dtype, expect_fwd=None, expect_dx=None, **kw_):
    """Forward and all three gradients against the reference, asserting the kernel paths taken."""
    g = kw_.get("groups", 1)
    x, w, b = rand((N, H, W, C), dtype), rand((kh, kh, C // g, K), dtype), rand((K,), dtype)
    y = ops.conv2d(x, w, b, **kw_)
    close(y, ref.conv2d(x, w, b, **kw_), dtype)
    if expect_fwd and y.size:
        assert _dispatch.last_kernel["conv2d"] == expect_fwd
    dy = rand(y.shape, dtype)
    for got, want in zip(ops.conv2d_grad(dy, x, w, **kw_), ref.conv2d_grad(dy, x, w, **kw_)):
        close(got, want, dtype)
    if expect_dx and y.size:
        assert _dispatch.last_kernel["conv2d_grad"] == expect_dx


FEW_CHANNELS = [
    # N, H, W, kernel, options, forward path expected for C = 1..4
    (3, 9, 28, 3, dict(padding="same"), "rowk"),
    (2, 10, 30, 3, dict(padding="valid"), "rowk"),
    (3, 11, 47, 3, dict(padding="same", stride=2), "rowk"),               # odd sizes, stride 2
    (2, 9, 29, 3, dict(padding=((0, 2), (1, 0))), "rowk"),                # asymmetric
    (1, 12, 30, 5, dict(padding=2), "rowk"),
    (3, 13, 47, 7, dict(padding=3, stride=2), "rowk"),                    # ResNet-style stem
    (2, 12, 30, 3, dict(padding=2, dilation=2), "rowseg"),                # dilated: unmerged taps
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 2, 3, 4])
@pytest.mark.parametrize("case", FEW_CHANNELS, ids=lambda c: "x".join(map(str, c[:4])) + str(c[4]))
def test_few_input_channels_forward_and_grads(case, C, dtype):
    N, H, W, k, options, fwd_path = case
    if fwd_path == "rowk" and k != 3 and C not in (1, 3):
        fwd_path = "rowseg"  # 5x5 and 7x7 kernels have constant-shape rows for 1 and 3 channels only
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(2)  # the row path needs N*OH >= 2*threads; the shapes above have it
        for K in (32, 13):   # a full channel block, and a partial one
            run_conv_checks(N, H, W, C, K, k, dtype, expect_fwd=fwd_path, **options)
    finally:
        fastconv.set_num_threads(before)


NARROW = [
    # N, H, W, C (conv input = narrow output), K (conv output = reduction), kernel, options
    (3, 9, 28, 1, 32, 3, dict(padding="same")),
    (2, 10, 30, 3, 32, 3, dict(padding="valid")),
    (1, 11, 13, 2, 33, 3, dict(padding="same", stride=2)),               # tail of 1, odd map
    (3, 9, 10, 4, 5, 3, dict(stride=2, padding=((1, 0), (2, 1)))),       # asymmetric, tail
    (2, 12, 11, 3, 13, 3, dict(dilation=2, padding=2)),
    (2, 13, 12, 1, 9, 5, dict(stride=(2, 1), dilation=(1, 2), padding="same")),
    (2, 8, 9, 4, 26, 3, dict(groups=2, padding=1)),                      # 2 channels per group
    (2, 8, 9, 2, 34, 3, dict(groups=2, stride=2, padding="valid")),      # 1 channel per group
    (1, 5, 203, 1, 16, 3, dict(padding="same")),                         # several column blocks
    (3, 7, 9, 3, 40, 1, {}),                                             # pointwise: one long row
    (1, 3, 3, 2, 8, 3, {}),                                              # a single output pixel
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [0, 1, 3])
@pytest.mark.parametrize("case", NARROW, ids=lambda c: "x".join(map(str, c[:6])) + str(c[6]))
def test_narrow_input_gradient(case, N, dtype):
    _, H, W, C, K, k, options = case
    # the narrow kernel runs when the reduction (K per group) fills at least one vector
    vlen = conv_kernels.narrow_vlen(_dispatch.simd_level() if dtype == np.float32 else 0, dtype)
    expect = "narrow" if K // options.get("groups", 1) >= vlen else "tiles"
    run_conv_checks(N, H, W, C, K, k, dtype, expect_dx=expect, **options)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cout", [1, 2, 3])
@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1, output_padding=1), dict(padding="same"),
                                    dict(stride=2, dilation=2, groups=1), dict(stride=3, padding="valid")])
def test_conv_transpose2d_to_few_channels(kwargs, cout, dtype):
    x, w, b = rand((3, 7, 9, 17), dtype), rand((3, 3, cout, 17), dtype), rand((cout,), dtype)
    y = ops.conv_transpose2d(x, w, b, **kwargs)
    close(y, ref.conv_transpose2d(x, w, b, **kwargs), dtype)
    assert _dispatch.last_kernel["conv_transpose2d"] == "narrow"
    dy = rand(y.shape, dtype)
    for got, want in zip(ops.conv_transpose2d_grad(dy, x, w, **kwargs), ref.conv_transpose2d_grad(dy, x, w, **kwargs)):
        close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [5, 6, 13])
def test_narrow_chosen_for_under_sixteen_outputs(C, dtype):
    """5-15 output channels of the input gradient (LeNet's c3: 16 -> 6) take the narrow kernel
    without forcing it where a vector holds 8 or more reduction channels."""
    isa = _dispatch.simd_level() if dtype == np.float32 else 0
    vlen = conv_kernels.narrow_vlen(isa, dtype)
    expect = "narrow" if vlen >= 8 else "tiles"
    run_conv_checks(3, 13, 11, C, 16, 5, dtype, expect_dx=expect)
    run_conv_checks(2, 9, 10, C, 16, 3, dtype, expect_dx=expect, padding="same", stride=2)


@pytest.mark.parametrize("Ko", [1, 2, 3, 4, 5, 7, 9])
def test_narrow_kernel_forced_for_any_output_width(monkeypatch, Ko):
    """Every register tile (1-4 outputs) and the chunking of wider outputs, forward and transposed."""
    from fastconv.ops import conv as conv_ops
    monkeypatch.setattr(conv_ops, "_force_narrow", True)
    for dtype in (np.float32, np.float64):
        run_conv_checks(2, 9, 27, 11, Ko, 3, dtype, expect_fwd="narrow", expect_dx="narrow", padding="same")
        run_conv_checks(1, 8, 7, 6, 2 * Ko, 3, dtype, expect_fwd="narrow", stride=2, dilation=(2, 1), groups=2)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_few_channel_paths_finite_differences(op):
    """float64 gradients of the row path (forward) and the narrow kernel (input gradient, with a tail)."""
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    try:
        if op == "conv2d":
            x, w, b = rand((2, 5, 6, 2), np.float64), rand((3, 3, 2, 5), np.float64), rand((5,), np.float64)
            kwargs = dict(padding="same")
        else:
            x, w, b = rand((2, 4, 3, 5), np.float64), rand((3, 3, 2, 5), np.float64), rand((2,), np.float64)
            kwargs = dict(stride=2, padding=1, output_padding=1)
        fwd, grad = getattr(ops, op), getattr(ops, op + "_grad")
        dy = rand(fwd(x, w, b, **kwargs).shape, np.float64)
        if op == "conv2d":
            assert _dispatch.last_kernel["conv2d"] == "rowk"
        else:
            assert _dispatch.last_kernel["conv_transpose2d"] == "narrow"

        def loss():
            return float(np.vdot(fwd(x, w, b, **kwargs), dy))

        dx, dw, db = grad(dy, x, w, **kwargs)
        if op == "conv2d":
            assert _dispatch.last_kernel["conv2d_grad"] == "narrow"
        np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-8)
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("simd_level", LEVELS, indirect=True)
def test_few_channel_paths_on_every_simd_path(simd_level):
    # the narrow kernel vectorises over the reduction channels: it needs a vector's worth of them
    # (8 floats on AVX2, 16 on AVX-512), else the input gradient takes the row tiles
    vlen = conv_kernels.narrow_vlen(_dispatch.LEVELS[simd_level], np.float32)
    for C, K, pad in ((1, 32, "same"), (3, 33, "valid"), (4, 13, "same")):
        run_conv_checks(3, 9, 28, C, K, 3, np.float32, expect_fwd="rowk",
                        expect_dx="narrow" if K >= vlen else "rowseg", padding=pad)
        assert _dispatch.last_used["conv2d"] == simd_level
        assert _dispatch.last_used["conv2d_grad"] == simd_level
    x, w = rand((2, 6, 7, 2 * vlen + 1)), rand((3, 3, 2, 2 * vlen + 1))
    close(ops.conv_transpose2d(x, w, stride=2), ref.conv_transpose2d(x, w, stride=2), np.float32)
    assert _dispatch.last_kernel["conv_transpose2d"] == "narrow"


def test_few_channel_paths_one_and_two_threads_agree():
    x1, w1, dy1 = rand((8, 20, 28, 1)), rand((3, 3, 1, 32)), rand((8, 20, 28, 32))
    x3, w3, dy3 = rand((8, 20, 30, 3)), rand((3, 3, 3, 32)), rand((8, 18, 28, 32))
    before = fastconv.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            fastconv.set_num_threads(n)
            results.append([ops.conv2d(x1, w1, padding="same"), *ops.conv2d_grad(dy1, x1, w1, padding="same"),
                            ops.conv2d(x3, w3), *ops.conv2d_grad(dy3, x3, w3),
                            ops.conv_transpose2d(dy1, w1, padding="same")])
    finally:
        fastconv.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_few_channel_paths_write_every_output_element(nan_empty):
    vlen = conv_kernels.narrow_vlen(_dispatch.simd_level(), np.float32)  # K >= vlen: the narrow dx kernel
    for C, K, kwargs in ((1, 32, dict(padding="same")), (3, vlen + 5, dict(stride=2)), (2, vlen + 1, dict(stride=3))):
        x, w = rand((3, 9, 28, C)), rand((3, 3, C, K))
        y = ops.conv2d(x, w, **kwargs)
        assert np.isfinite(y).all()
        assert all(np.isfinite(a).all() for a in ops.conv2d_grad(np.ones_like(y), x, w, **kwargs))
        assert _dispatch.last_kernel["conv2d_grad"] == "narrow"


def test_outputs_start_on_a_cache_line():
    # the kernels store whole 64-byte rows of channels: a 16-byte aligned output splits every other store
    x, w = rand((2, 5, 5, 16)), rand((3, 3, 16, 32))
    y = ops.conv2d(x, w, padding=1)
    dx, dw, db = ops.conv2d_grad(y, x, w, padding=1)
    yt = ops.conv_transpose2d(y, w, stride=1, padding=1)
    for a in (y, dx, yt):
        assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.flags.writeable
    close(y, ref.conv2d(x, w, padding=1), np.float32)


def test_conv_transpose2d_grad_need_dx_false_skips_dx():
    from fastconv import ops

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 6, 4)).astype(np.float32)
    y = ops.conv_transpose2d(x, w, stride=2)
    dx, dw, db = ops.conv_transpose2d_grad(np.ones_like(y), x, w, stride=2)
    dx0, dw0, db0 = ops.conv_transpose2d_grad(np.ones_like(y), x, w, stride=2, need_dx=False)
    assert dx0 is None and dx is not None
    np.testing.assert_array_equal(dw0, dw)
    np.testing.assert_array_equal(db0, db)


# ---- every compiled variant of the dense tile path, on every SIMD level ----
# The register tile (src/conv_impl.h fc_ukernel: 5- or 6-pixel tiles x 2 vectors, stored from
# registers on a full channel block, through acc on a partial one), row-aligned and flattened tiles,
# merged and unmerged column taps, the weight-gradient tile (6 to 1 reduction rows, fc_wg_tile_any
# for a partial block) and the 1x1 pixel row are compiled once per SIMD level; these cases reach each
# of them at each level the CPU has (docs/kernels.md, "Tiles per CPU").

VLEN = {"generic": 4, "avx2": 8, "avx512": 16}


@pytest.mark.parametrize("simd_level", LEVELS, indirect=True)
def test_every_tile_variant_on_every_simd_level(simd_level):
    vb = 2 * VLEN[simd_level]
    assert conv_kernels.block_size(_dispatch.LEVELS[simd_level], np.float32) == vb
    cases = [
        # N, H, W, C, K, k, options: OW 28 = 5+6+5+6+6 pixel row tiles, full and partial channel blocks
        (2, 5, 28, 17, 2 * vb, 3, {"padding": "same"}),
        (2, 5, 28, 17, vb + 3, 3, {"padding": "same", "relu": True}),
        (3, 7, 7, 19, vb + 1, 3, {"padding": "same"}),              # flattened tiles (OW 7)
        (2, 9, 26, 18, vb, 3, {"padding": 2, "dilation": 2}),           # unmerged column taps
        (2, 11, 30, 20, 2 * vb + 5, 3, {"padding": 1, "stride": 2}),   # stride-2 phases in dx
        (2, 6, 31, 23, vb + 1, 1, {}),                                # 1x1: one row of N*H*W pixels
    ]
    for N, H, W, C, K, k, opts in cases:
        relu = opts.pop("relu", False)
        x, w, b = rand((N, H, W, C)), rand((k, k, C, K)), rand((K,))
        y = ops.conv2d(x, w, b, relu=relu, **opts)
        assert _dispatch.last_used["conv2d"] == simd_level and _dispatch.last_kernel["conv2d"] == "tiles"
        want = ref.conv2d(x, w, b, **opts)
        close(y, np.maximum(want, 0) if relu else want, np.float32)
        dy = rand(y.shape)
        got = ops.conv2d_grad(dy, x, w, **opts)
        assert _dispatch.last_kernel["conv2d_grad:weight"] == "tiles"
        for g, r in zip(got, ref.conv2d_grad(dy, x, w, **opts)):
            close(g, r, np.float32)
    # a non-relu activation runs after each tile
    x, w, b = rand((2, 5, 28, 17)), rand((3, 3, 17, vb + 3)), rand((vb + 3,))
    y = ops.conv2d(x, w, b, padding="same", activation="elu")
    assert _dispatch.last_kernel["conv2d_epilogue"] == "tile"
    close(y, ops.activation(ref.conv2d(x, w, b, padding="same"), "elu"), np.float32)


@pytest.mark.parametrize("simd_level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_vector_channel_blocks_run_two_tiles_at_once(simd_level, dtype, monkeypatch):
    """A channel block of at most one vector (K = 16 on AVX-512, the last 16 of 48) runs tiles in
    pairs with the same taps through fc_ukernel2t (vector 0 one tile's pixels, vector 1 the next
    tile's): full vectors stored from registers, shorter blocks through acc, odd tile counts and
    tiles whose taps differ (image edges) on fc_ukernel; forward and input gradient, bias, relu, an
    activation, row-aligned and flattened tiles, merged and unmerged taps, stride phases; every
    output written (NaN-filled out), 1 and 2 threads bit for bit."""
    monkeypatch.setattr(conv_ops, "_force_narrow", False)
    vl = VLEN[simd_level] if dtype == np.float32 else 2   # float64 runs the generic level's 2 lanes
    cases = [
        # N, H, W, C, K, k, options (C > 16 keeps the forward off the few-channel row path; the
        # input gradient's blocks hold C outputs, reduced over K)
        (2, 5, 28, 17, vl, 3, {"padding": "same"}),                    # row tiles
        (2, 5, 28, vl, 20, 3, {"padding": "same"}),                    # dx: vl outputs, row tiles
        (2, 5, 28, 17, 3 * vl, 3, {"padding": "same", "relu": True}),  # blocks of 2 vectors + 1 vector
        (3, 7, 7, 20, vl, 5, {"padding": "same"}),                     # flattened tiles, merged taps
        (3, 7, 7, vl, 20, 5, {"padding": "same"}),
        (2, 9, 13, vl + 1, vl - 1, 3, {"padding": 2, "dilation": 2}),   # partial vector, unmerged taps
        (2, 11, 30, vl, 20, 3, {"padding": 1, "stride": 2}),           # stride-2 phases in dx
        (1, 3, 5, 20, max(1, vl - 3), 3, {"padding": 1}),             # a partial vector, few tiles
        (2, 6, 31, 17, vl, 1, {"activation": "elu"}),                  # 1x1 row, activation after the tile
    ]
    for N, H, W, C, K, k, opts in cases:
        relu, act = opts.pop("relu", False), opts.pop("activation", None)
        x, w, b = rand((N, H, W, C), dtype), rand((k, k, C, K), dtype), rand((K,), dtype)
        want = ref.conv2d(x, w, b, **opts)
        want = np.maximum(want, 0) if relu else ops.activation(want, act) if act else want
        ys, before = [], fastconv.get_num_threads()
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            out = np.full(want.shape, np.nan, dtype)
            ops.conv2d(x, w, b, relu=relu, activation=act, out=out, **opts)
            assert C <= 16 or _dispatch.last_kernel["conv2d"] == "tiles"
            close(out, want, dtype)
            ys.append(out)
        fastconv.set_num_threads(before)
        np.testing.assert_array_equal(ys[0], ys[1])
        dy = rand(want.shape, dtype)
        dx = ops.conv2d_grad(dy, x, w, **opts)[0]
        assert K <= 16 or _dispatch.last_kernel["conv2d_grad"] == "tiles"
        close(dx, ref.conv2d_grad(dy, x, w, **opts)[0], dtype)


@pytest.mark.parametrize("simd_level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_row_of_pointwise_convs(simd_level, dtype, monkeypatch):
    """1x1 stride-1 unpadded convs and Dense run as one row of N*H*W pixels, whose tiles take their
    pointers in place (src/conv_impl.h fc_gconv_pixel_row): row tiles of 5 and 6 pixels and
    flattened tiles with a short last one (rows under 24 pixels), full and partial channel blocks,
    blocks of one vector run two tiles at once, bias, relu and an activation, a channel slice as
    the output, the input gradient; every output written (NaN-filled out), 1 and 2 threads bit for
    bit."""
    monkeypatch.setattr(conv_ops, "_force_narrow", False)
    vl = VLEN[simd_level] if dtype == np.float32 else 2
    cases = [
        # N, H, W, C, K, options
        (2, 5, 7, 13, 2 * vl + 3, {}),                      # 70 pixels: row tiles, a partial block
        (1, 4, 7, 9, 4 * vl, {"relu": True}),               # 28 = 5+6+5+6+6
        (1, 1, 17, 6, vl, {}),                              # 17 pixels: flattened tiles 6+6+5, one vector
        (3, 1, 5, 7, 3 * vl, {"activation": "elu"}),        # 15 pixels: 6+6+3, blocks of 2 vectors + 1
        (2, 3, 9, 5, vl - 1, {}),                           # a partial vector, tiles in pairs
        (1, 1, 1, 3, 2 * vl + 1, {}),                       # one pixel
    ]
    for N, H, W, C, K, opts in cases:
        relu, act = opts.pop("relu", False), opts.pop("activation", None)
        x, w, b = rand((N, H, W, C), dtype), rand((1, 1, C, K), dtype), rand((K,), dtype)
        want = ref.conv2d(x, w, b)
        want = np.maximum(want, 0) if relu else ops.activation(want, act) if act else want
        dy = rand(want.shape, dtype)
        dx_want = ref.conv2d_grad(dy, x, w)[0]
        ys, dxs, before = [], [], fastconv.get_num_threads()
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            wide = np.full(want.shape[:3] + (K + 3,), np.nan, dtype)   # y as channels 1..K of a wider tensor
            ops.conv2d(x, w, b, relu=relu, activation=act, out=wide[..., 1:K + 1])
            assert _dispatch.last_kernel["conv2d"] == "tiles"
            close(wide[..., 1:K + 1], want, dtype)
            assert np.isnan(wide[..., 0]).all() and np.isnan(wide[..., K + 1:]).all()
            ys.append(wide)
            dx = ops.conv2d_grad(dy, x, w)[0]
            close(dx, dx_want, dtype)
            dxs.append(dx)
        fastconv.set_num_threads(before)
        np.testing.assert_array_equal(ys[0], ys[1])
        np.testing.assert_array_equal(dxs[0], dxs[1])
    x, w, b = rand((31, 11), dtype), rand((11, 2 * vl + 5), dtype), rand((2 * vl + 5,), dtype)
    out = np.full((31, 2 * vl + 5), np.nan, dtype)
    ops.dense(x, w, b, out=out)
    close(out, x @ w + b, dtype)


@pytest.mark.parametrize("level", LEVELS)
def test_fastconv_simd_variable_selects_the_tiles(level, tmp_path):
    """FASTCONV_SIMD (read once, in a fresh process) forces the level the tile kernels run at."""
    import os
    import subprocess
    import sys

    import fastconv

    # the child runs the fastconv under test, from outside the source tree (whose unbuilt
    # fastconv/ would otherwise shadow an installed package)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))

    code = ("import numpy as np; from fastconv import ops, _dispatch; _dispatch.set_conv_algo('direct');"
            "x = np.ones((1, 6, 12, 20), np.float32); w = np.ones((3, 3, 20, 20), np.float32);"
            "y = ops.conv2d(x, w, padding='same');"
            "print(_dispatch.last_used['conv2d'], _dispatch.last_kernel['conv2d'], float(y[0, 2, 5, 3]))")
    env = dict(os.environ, FASTCONV_SIMD=level, FASTCONV_CONV_ALGO="direct",
               PYTHONPATH=package_parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         timeout=120, cwd=tmp_path).stdout.split()
    assert out == [level, "tiles", "180.0"]


def test_input_gradient_tiles_read_kernel_rows_top_down():
    """The input gradient's plans list kernel rows in kernel order (dy rows bottom-up); the tiles
    get them sorted by input row (_plan.rows_ascending), the same taps, so the same sums."""
    from fastconv.ops import _plan

    for stride, pad in (((1, 1), (1, 1)), ((2, 2), (1, 1)), ((1, 1), (2, 0))):
        for g in _plan.input_grad_plans((9, 11), (3, 3), stride, pad, (1, 1)):
            s = _plan.rows_ascending(g)
            assert [b for b, _ in s.taps_y] == sorted(b for b, _ in g.taps_y)
            assert sorted(s.taps_y) == sorted(g.taps_y) and s.taps_x == g.taps_x and s.grid == g.grid
    g = _plan.forward_plan((5, 5), (3, 3), (1, 1), (1, 1), (1, 1))
    assert _plan.rows_ascending(g) is g  # the forward's rows already run top-down


def test_validated_geometry_cache_keeps_rejecting_bad_options():
    """conv2d caches the checked geometry by shapes and options: an option equal to a cached one
    (True == 1, 1.0 == 1) must still be checked, and a list still works."""
    x, w = rand((1, 6, 6, 2)), rand((3, 3, 2, 4))
    want = ops.conv2d(x, w, stride=1, padding=1, groups=1)
    with pytest.raises(ValueError, match="groups"):
        ops.conv2d(x, w, stride=1, padding=1, groups=True)
    with pytest.raises((ValueError, TypeError), match="stride"):
        ops.conv2d(x, w, stride=1.0, padding=1, groups=1)
    with pytest.raises((ValueError, TypeError), match="stride"):
        ops.conv2d(x, w, stride=(True, 1), padding=1)
    np.testing.assert_array_equal(ops.conv2d(x, w, stride=[1, 1], padding=[1, 1]), want)
    np.testing.assert_array_equal(ops.conv2d(x, w, stride=1, padding=1, groups=1), want)


RECIPE_CASES = [
    # (op, x shape, w shape, kwargs): first layers (rowk same / valid, 5x5 stride 2), the row path with
    # several channels, a 1x1 (one row of pixels), the tiles; transposed: stride-2 phases, stride 1
    # (column-flipped weight)
    ("conv2d", (3, 11, 13, 1), (3, 3, 1, 32), dict(padding=1)),
    ("conv2d", (2, 12, 9, 3), (3, 3, 3, 32), dict(padding="valid")),
    ("conv2d", (2, 15, 14, 1), (5, 5, 1, 20), dict(padding="same", stride=2)),
    ("conv2d", (2, 9, 10, 5), (3, 3, 5, 19), dict(padding=1, relu=True)),
    ("conv2d", (2, 7, 5, 33), (1, 1, 33, 40), {}),
    ("conv2d", (2, 9, 8, 20), (3, 2, 20, 24), dict(padding=((1, 0), (2, 1)), dilation=(1, 2))),
    ("conv_transpose2d", (2, 7, 6, 64), (4, 4, 32, 64), dict(stride=2, padding=1)),
    ("conv_transpose2d", (2, 5, 7, 40), (3, 3, 24, 40), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d", (2, 6, 5, 24), (3, 3, 17, 24), dict(padding=1)),
]


@pytest.mark.parametrize("simd_level", LEVELS, indirect=True)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op, x_shape, w_shape, kwargs", RECIPE_CASES)
def test_repeated_calls_reuse_the_register_tile_call(simd_level, threads, dtype, op, x_shape, w_shape, kwargs,
                                                     nan_empty):
    """The second call of a shape runs the remembered register-tile call (conv_ops._RECIPES) on its
    own x, w and bias: the reference's answer, every element written, the same variant recorded."""
    before = fastconv.get_num_threads()
    conv_ops._RECIPES.clear()
    fastconv.set_num_threads(threads)
    try:
        fn, ref_fn = getattr(ops, op), getattr(ref, op)
        k_out = w_shape[3] if op == "conv2d" else w_shape[2]
        variants = []
        for call in range(3):
            x, w = rand(x_shape, dtype), rand(w_shape, dtype)
            b = rand((k_out,), dtype) if call != 1 else None
            y = fn(x, w, b, **kwargs)
            want = ref_fn(x, w, b, **{k: v for k, v in kwargs.items() if k != "relu"})
            if kwargs.get("relu"):
                want = np.maximum(want, 0)
            assert y.dtype == dtype and np.isfinite(y).all()
            close(y, want, dtype)
            assert _dispatch.last_used[op] == (simd_level if dtype == np.float32 else "generic")
            variants.append(_dispatch.last_kernel[op])
        assert len(set(variants)) == 1
        assert sum(key[0] == op for key in conv_ops._RECIPES) == 2  # with and without bias
    finally:
        fastconv.set_num_threads(before)


def test_remembered_calls_follow_the_settings():
    """A setting the path reads (threads, SIMD level) is part of the key: changing it runs the full
    path again; `out=`, an activation and the narrow kernel are never remembered."""
    conv_ops._RECIPES.clear()
    x, w = rand((2, 10, 10, 16)), rand((3, 3, 16, 24))
    want = ref.conv2d(x, w, padding=1)
    close(ops.conv2d(x, w, padding=1), want, np.float32)
    assert len(conv_ops._RECIPES) == 1
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1 if before > 1 else 2)
        close(ops.conv2d(x, w, padding=1), want, np.float32)
    finally:
        fastconv.set_num_threads(before)
    assert len(conv_ops._RECIPES) == 2
    _dispatch.set_simd("generic")
    try:
        close(ops.conv2d(x, w, padding=1), want, np.float32)
        assert _dispatch.last_used["conv2d"] == "generic"
    finally:
        _dispatch.set_simd(None)
    assert len(conv_ops._RECIPES) == 3
    out = np.empty(want.shape, np.float32)
    ops.conv2d(x, w, padding=1, out=out)
    close(out, want, np.float32)
    close(ops.conv2d(x, w, padding=1, activation="elu"), ref.activation(want, "elu"), np.float32)
    close(ops.conv2d(x, w, padding=[1, 1]), want, np.float32)  # a list argument: its repr is the key
    assert len(conv_ops._RECIPES) == 4
    w8 = rand((3, 3, 16, 8))
    for _ in range(2):
        close(ops.conv2d(x, w8, padding=1), ref.conv2d(x, w8, padding=1), np.float32)
    assert _dispatch.last_kernel["conv2d"] == "narrow" and len(conv_ops._RECIPES) == 4
