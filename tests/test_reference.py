"""Tests of the NumPy reference ops (the first link of the chain of trust).

* finite-difference gradient checks in float64 on tiny shapes for every *_grad;
* output shapes of the padding rules in API.md;
* the adjoint identity, conv_transpose2d == conv2d's input gradient, depthwise ==
  grouped conv;
* hand-computed small cases and a direct per-pixel loop oracle;
* argument checking and dtypes.
"""

import numpy as np
import pytest

from fastconv import reference as ref

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def numerical_grad(f, a, eps=1e-6):
    """Central-difference gradient of the scalar function f at array a (float64)."""
    a = np.array(a, dtype=np.float64)
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(a)
        flat[i] = old - eps
        fm = f(a)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def assert_close(actual, expected, what=""):
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7, err_msg=what)


def check_param_grads(forward, grad, x, w, kwargs, seed):
    """Check dx, dw, db of forward(x, w, bias, **kwargs) against finite differences."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(ref_out_channels(forward, x, w, kwargs))
    y = forward(x, w, b, **kwargs)
    r = rng.standard_normal(y.shape)
    dx, dw, db = grad(r, x, w, **kwargs)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    assert dx.dtype == dw.dtype == db.dtype == np.float64

    def loss(x_, w_, b_):
        return float(np.sum(forward(x_, w_, b_, **kwargs) * r))

    assert_close(dx, numerical_grad(lambda a: loss(a, w, b), x), "dx")
    assert_close(dw, numerical_grad(lambda a: loss(x, a, b), w), "dw")
    assert_close(db, numerical_grad(lambda a: loss(x, w, a), b), "db")


def ref_out_channels(forward, x, w, kwargs):
    if forward is ref.conv2d:
        return w.shape[3]
    if forward is ref.depthwise_conv2d:
        return w.shape[2] * w.shape[3]
    return w.shape[2] * kwargs.get("groups", 1)  # conv_transpose2d


def randn(rng, *shape):
    return rng.standard_normal(shape)


# ---------------------------------------------------------------------------
# finite-difference gradient checks
# ---------------------------------------------------------------------------

CONV_CASES = [
    # (x shape, w shape, kwargs)
    ((2, 5, 6, 3), (3, 3, 3, 4), {}),
    ((2, 6, 5, 2), (3, 3, 2, 3), {"stride": 2, "padding": 1}),
    ((1, 7, 7, 2), (3, 3, 2, 2), {"dilation": 2, "padding": "same"}),
    ((1, 5, 6, 4), (3, 3, 2, 6), {"groups": 2, "stride": (2, 1)}),
    ((2, 5, 5, 2), (2, 3, 2, 3), {"padding": ((1, 0), (2, 1))}),
    ((1, 6, 6, 2), (3, 3, 2, 2), {"padding": "same", "stride": 2}),
    ((1, 7, 7, 2), (3, 3, 2, 2), {"padding": "same", "stride": 2}),
    ((1, 6, 7, 2), (2, 2, 2, 3), {"padding": "same", "stride": 2}),
    ((1, 5, 5, 4), (1, 1, 4, 2), {"stride": 2}),
    ((1, 8, 6, 4), (2, 3, 1, 4), {"groups": 4, "dilation": (2, 1), "padding": (1, 2), "stride": 2}),
]


@pytest.mark.parametrize("xs, ws, kwargs", CONV_CASES)
def test_conv2d_grad_finite_differences(xs, ws, kwargs):
    rng = np.random.default_rng(1)
    check_param_grads(ref.conv2d, ref.conv2d_grad, randn(rng, *xs), randn(rng, *ws), kwargs, 2)


DEPTHWISE_CASES = [
    ((2, 5, 5, 3), (3, 3, 3, 1), {}),
    ((1, 5, 6, 2), (3, 3, 2, 2), {"padding": 1}),
    ((1, 6, 6, 2), (3, 3, 2, 2), {"stride": 2, "padding": "same"}),
    ((1, 7, 7, 3), (3, 3, 3, 2), {"stride": 2, "padding": "same"}),
    ((1, 7, 6, 2), (3, 2, 2, 1), {"dilation": 2, "padding": ((2, 1), (0, 1))}),
]


@pytest.mark.parametrize("xs, ws, kwargs", DEPTHWISE_CASES)
def test_depthwise_conv2d_grad_finite_differences(xs, ws, kwargs):
    rng = np.random.default_rng(3)
    check_param_grads(
        ref.depthwise_conv2d, ref.depthwise_conv2d_grad, randn(rng, *xs), randn(rng, *ws), kwargs, 4
    )


TRANSPOSE_CASES = [
    # w is (KH, KW, C_out // groups, C_in)
    ((2, 3, 4, 3), (3, 3, 2, 3), {}),
    ((1, 3, 3, 2), (3, 3, 2, 2), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((1, 3, 4, 2), (3, 3, 3, 2), {"stride": 2, "padding": "same"}),
    ((1, 3, 3, 2), (3, 3, 2, 2), {"stride": 2, "padding": "valid"}),
    ((1, 3, 3, 2), (1, 1, 2, 2), {"stride": 2, "padding": "valid"}),  # KH_eff < stride
    ((1, 3, 3, 4), (3, 3, 3, 4), {"groups": 2, "stride": 2}),
    ((1, 3, 4, 2), (3, 3, 2, 2), {"dilation": 2, "output_padding": 1, "padding": 2}),
    ((1, 4, 3, 2), (2, 3, 2, 2), {"stride": (2, 1), "padding": ((1, 0), (0, 2))}),
]


@pytest.mark.parametrize("xs, ws, kwargs", TRANSPOSE_CASES)
def test_conv_transpose2d_grad_finite_differences(xs, ws, kwargs):
    rng = np.random.default_rng(5)
    check_param_grads(
        ref.conv_transpose2d, ref.conv_transpose2d_grad, randn(rng, *xs), randn(rng, *ws), kwargs, 6
    )


MAX_POOL_CASES = [
    ((2, 4, 6, 3), {}),
    ((1, 5, 5, 2), {"pool_size": 2, "padding": 1}),
    ((1, 5, 6, 2), {"pool_size": 3, "stride": 2, "padding": 1}),
    ((1, 7, 6, 2), {"pool_size": 3, "stride": 2, "padding": "same"}),
    ((1, 5, 5, 2), {"pool_size": (2, 3), "stride": 1, "padding": ((1, 0), (0, 1))}),
    ((1, 7, 7, 1), {"pool_size": 2, "padding": "same"}),
]


@pytest.mark.parametrize("xs, kwargs", MAX_POOL_CASES)
def test_max_pool2d_grad_finite_differences(xs, kwargs):
    rng = np.random.default_rng(7)
    x = randn(rng, *xs)  # continuous values: no ties, the max is differentiable
    y = ref.max_pool2d(x, **kwargs)
    r = randn(rng, *y.shape)
    dx = ref.max_pool2d_grad(r, x, **kwargs)
    num = numerical_grad(lambda a: float(np.sum(ref.max_pool2d(a, **kwargs) * r)), x)
    assert_close(dx, num)


AVG_POOL_CASES = [
    ((2, 4, 6, 3), {}),
    ((1, 5, 5, 2), {"pool_size": 2, "padding": 1}),
    ((1, 5, 6, 2), {"pool_size": 3, "stride": 2, "padding": 1}),
    ((1, 7, 6, 2), {"pool_size": 3, "stride": 2, "padding": "same"}),
    ((1, 5, 5, 2), {"pool_size": (2, 3), "stride": 1, "padding": ((1, 0), (0, 1))}),
]


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("xs, kwargs", AVG_POOL_CASES)
def test_avg_pool2d_grad_finite_differences(xs, kwargs, count_include_pad):
    kwargs = dict(kwargs, count_include_pad=count_include_pad)
    rng = np.random.default_rng(9)
    x = randn(rng, *xs)
    y = ref.avg_pool2d(x, **kwargs)
    r = randn(rng, *y.shape)
    dx = ref.avg_pool2d_grad(r, x, **kwargs)
    num = numerical_grad(lambda a: float(np.sum(ref.avg_pool2d(a, **kwargs) * r)), x)
    assert_close(dx, num)


def test_global_avg_pool2d_grad_finite_differences():
    rng = np.random.default_rng(11)
    x = randn(rng, 2, 3, 4, 3)
    r = randn(rng, 2, 3)
    dx = ref.global_avg_pool2d_grad(r, x)
    num = numerical_grad(lambda a: float(np.sum(ref.global_avg_pool2d(a) * r)), x)
    assert_close(dx, num)
    assert_close(ref.global_avg_pool2d(x), x.mean(axis=(1, 2)))


# ---------------------------------------------------------------------------
# output shapes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, k, kwargs, expected",
    [
        (7, 3, {"padding": "same", "stride": 2}, 4),
        (8, 3, {"padding": "same", "stride": 2}, 4),
        (7, 3, {"padding": "same"}, 7),
        (7, 3, {"padding": "valid", "stride": 2}, 3),
        (7, 3, {"padding": 1, "stride": 2}, 4),
        (7, 3, {"dilation": 2}, 3),
        (7, 3, {"padding": ((2, 0), (0, 0))}, 7),
        (28, 5, {"padding": "same", "stride": 3, "dilation": 2}, 10),
    ],
)
def test_conv2d_output_size(size, k, kwargs, expected):
    x = np.zeros((1, size, size, 1))
    y = ref.conv2d(x, np.zeros((k, k, 1, 1)), **kwargs)
    exp_w = expected
    if isinstance(kwargs.get("padding"), tuple) and isinstance(kwargs["padding"][0], tuple):
        exp_w = size - k + 1  # the asymmetric case pads rows only
    assert y.shape == (1, expected, exp_w, 1)


def test_same_padding_split_puts_extra_pixel_bottom_right():
    # size 6, k 3, stride 2: out 3, total pad max(2*2 + 3 - 6, 0) = 1 -> (0, 1)
    assert ref.resolve_padding("same", (6, 6), (3, 3), (2, 2)) == ((0, 1), (0, 1))
    # size 7, k 4, stride 1: total pad 3 -> (1, 2)
    assert ref.resolve_padding("same", (7, 7), (4, 4), (1, 1)) == ((1, 2), (1, 2))
    assert ref.resolve_padding("valid", (7, 7), (4, 4), (1, 1)) == ((0, 0), (0, 0))
    assert ref.resolve_padding((1, 2), (7, 7), (4, 4), (1, 1)) == ((1, 1), (2, 2))


@pytest.mark.parametrize(
    "size, k, kwargs, expected",
    [
        (5, 3, {"padding": "valid", "stride": 2}, 11),
        (5, 1, {"padding": "valid", "stride": 2}, 10),  # KH_eff < stride: H * stride
        (5, 3, {"padding": "valid", "stride": 2, "dilation": 2}, 13),
        (5, 3, {"padding": "same", "stride": 2}, 10),
        (5, 4, {"padding": "same", "stride": 3}, 15),
        (14, 3, {"padding": 1, "stride": 2, "output_padding": 1}, 28),
        (14, 3, {"padding": 1, "stride": 2}, 27),
        (4, 3, {}, 6),
        (4, 3, {"dilation": 2, "padding": 1, "output_padding": 1}, 7),
    ],
)
def test_conv_transpose2d_output_size(size, k, kwargs, expected):
    x = np.zeros((2, size, size, 3))
    y = ref.conv_transpose2d(x, np.zeros((k, k, 4, 3)), **kwargs)
    assert y.shape == (2, expected, expected, 4)


@pytest.mark.parametrize(
    "size, kwargs, expected",
    [
        (7, {}, 3),
        (7, {"padding": "same"}, 4),
        (7, {"pool_size": 3, "stride": 2, "padding": "same"}, 4),
        (8, {"pool_size": 3, "stride": 1, "padding": "same"}, 8),
        (7, {"pool_size": 3, "stride": 2, "padding": 1}, 4),
    ],
)
def test_pool_output_size(size, kwargs, expected):
    x = np.ones((1, size, size, 2))
    assert ref.max_pool2d(x, **kwargs).shape == (1, expected, expected, 2)
    assert ref.avg_pool2d(x, **kwargs).shape == (1, expected, expected, 2)


def test_empty_batch():
    x = np.zeros((0, 5, 5, 2))
    assert ref.conv2d(x, np.zeros((3, 3, 2, 4))).shape == (0, 3, 3, 4)
    assert ref.depthwise_conv2d(x, np.zeros((3, 3, 2, 2))).shape == (0, 3, 3, 4)
    assert ref.conv_transpose2d(x, np.zeros((3, 3, 4, 2)), stride=2).shape == (0, 11, 11, 4)
    assert ref.max_pool2d(x).shape == (0, 2, 2, 2)
    dx, dw, db = ref.conv2d_grad(np.zeros((0, 3, 3, 4)), x, np.zeros((3, 3, 2, 4)))
    assert dx.shape == x.shape and not dw.any() and not db.any()


# ---------------------------------------------------------------------------
# identities between ops
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("xs, ws, kwargs", CONV_CASES)
def test_conv2d_adjoint_identity(xs, ws, kwargs):
    rng = np.random.default_rng(13)
    x, w = randn(rng, *xs), randn(rng, *ws)
    y = ref.conv2d(x, w, **kwargs)
    dy = randn(rng, *y.shape)
    dx, dw, _ = ref.conv2d_grad(dy, x, w, **kwargs)
    # conv2d is bilinear: <conv2d(x, w), dy> = <x, dx> = <w, dw>
    assert np.vdot(y, dy) == pytest.approx(np.vdot(x, dx), rel=1e-12)
    assert np.vdot(y, dy) == pytest.approx(np.vdot(w, dw), rel=1e-12)


@pytest.mark.parametrize("xs, ws, kwargs", DEPTHWISE_CASES)
def test_depthwise_adjoint_identity(xs, ws, kwargs):
    rng = np.random.default_rng(14)
    x, w = randn(rng, *xs), randn(rng, *ws)
    y = ref.depthwise_conv2d(x, w, **kwargs)
    dy = randn(rng, *y.shape)
    dx, dw, _ = ref.depthwise_conv2d_grad(dy, x, w, **kwargs)
    assert np.vdot(y, dy) == pytest.approx(np.vdot(x, dx), rel=1e-12)
    assert np.vdot(y, dy) == pytest.approx(np.vdot(w, dw), rel=1e-12)


@pytest.mark.parametrize("xs, ws, kwargs", TRANSPOSE_CASES)
def test_conv_transpose2d_adjoint_identity(xs, ws, kwargs):
    rng = np.random.default_rng(15)
    x, w = randn(rng, *xs), randn(rng, *ws)
    y = ref.conv_transpose2d(x, w, **kwargs)
    dy = randn(rng, *y.shape)
    dx, dw, _ = ref.conv_transpose2d_grad(dy, x, w, **kwargs)
    assert np.vdot(y, dy) == pytest.approx(np.vdot(x, dx), rel=1e-12)
    assert np.vdot(y, dy) == pytest.approx(np.vdot(w, dw), rel=1e-12)


@pytest.mark.parametrize(
    "h, w_, k, kwargs",
    [
        (3, 4, 3, {}),
        (3, 3, 3, {"stride": 2, "padding": 1, "output_padding": 1}),
        (3, 3, 3, {"stride": 2, "padding": 1}),
        (4, 3, 3, {"stride": 2, "padding": 2, "dilation": 2, "output_padding": 1}),
        (3, 4, 3, {"stride": 2, "padding": "same"}),
        (3, 4, 4, {"stride": 3, "padding": "same"}),
        (3, 3, 3, {"padding": "same", "dilation": 2}),
        (3, 3, 1, {"stride": 2, "padding": "same"}),
        (3, 4, 3, {"stride": 2, "padding": "valid"}),
        (3, 3, 2, {"stride": 3, "padding": "valid"}),
        (3, 3, 3, {"stride": 2, "padding": ((1, 0), (2, 1))}),
        (3, 3, 3, {"stride": 2, "padding": 1, "groups": 2}),
    ],
)
def test_conv_transpose2d_equals_conv2d_input_gradient(h, w_, k, kwargs):
    rng = np.random.default_rng(17)
    groups = kwargs.get("groups", 1)
    c_in, c_out = 2 * groups, 3 * groups  # channels of the transposed conv
    x = randn(rng, 2, h, w_, c_in)
    w = randn(rng, k, k, c_out // groups, c_in)
    y = ref.conv_transpose2d(x, w, **kwargs)
    # The matching conv2d maps (N, OH, OW, c_out) -> (N, h, w_, c_in) with the same w.
    conv_kwargs = {key: v for key, v in kwargs.items() if key != "output_padding"}
    z = np.zeros((2,) + y.shape[1:3] + (c_out,))
    assert ref.conv2d(z, w, **conv_kwargs).shape == x.shape
    dz, dw_conv, _ = ref.conv2d_grad(x, z + randn(rng, *z.shape), w, **conv_kwargs)
    assert_close(y, dz)
    # ... and the weight gradients agree too (roles of x and dy swapped).
    yy = randn(rng, *y.shape)
    _, dw_t, _ = ref.conv_transpose2d_grad(yy, x, w, **kwargs)
    _, dw_c, _ = ref.conv2d_grad(x, yy, w, **conv_kwargs)
    assert_close(dw_t, dw_c)


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize(
    "kwargs", [{}, {"stride": 2, "padding": "same"}, {"dilation": 2, "padding": 1}]
)
def test_depthwise_equals_grouped_conv(m, kwargs):
    rng = np.random.default_rng(19)
    c = 3
    x = randn(rng, 2, 7, 6, c)
    w = randn(rng, 3, 3, c, m)
    b = randn(rng, c * m)
    w_conv = w.reshape(3, 3, 1, c * m)  # output channel c * M + m sits in group c
    y = ref.depthwise_conv2d(x, w, b, **kwargs)
    assert_close(y, ref.conv2d(x, w_conv, b, groups=c, **kwargs))
    dy = randn(rng, *y.shape)
    dx, dw, db = ref.depthwise_conv2d_grad(dy, x, w, **kwargs)
    cdx, cdw, cdb = ref.conv2d_grad(dy, x, w_conv, groups=c, **kwargs)
    assert_close(dx, cdx)
    assert_close(dw, cdw.reshape(w.shape))
    assert_close(db, cdb)


def test_grouped_conv_equals_separate_convs():
    rng = np.random.default_rng(21)
    x = randn(rng, 2, 6, 6, 4)
    w = randn(rng, 3, 3, 2, 6)
    y = ref.conv2d(x, w, groups=2, stride=2, padding="same")
    y0 = ref.conv2d(x[..., :2], w[..., :3], stride=2, padding="same")
    y1 = ref.conv2d(x[..., 2:], w[..., 3:], stride=2, padding="same")
    assert_close(y, np.concatenate([y0, y1], axis=-1))


# ---------------------------------------------------------------------------
# a direct per-pixel loop oracle (straight from the definition)
# ---------------------------------------------------------------------------


def naive_conv2d(x, w, stride, pads, dilation, groups):
    n, h, wd, c = x.shape
    kh_, kw_, cg, c_out = w.shape
    og = c_out // groups
    (top, bottom), (left, right) = pads
    oh = (h + top + bottom - dilation * (kh_ - 1) - 1) // stride + 1
    ow = (wd + left + right - dilation * (kw_ - 1) - 1) // stride + 1
    y = np.zeros((n, oh, ow, c_out))
    for i in range(oh):
        for j in range(ow):
            for o in range(c_out):
                g = o // og
                for kh in range(kh_):
                    for kw in range(kw_):
                        ih = i * stride - top + kh * dilation
                        iw = j * stride - left + kw * dilation
                        if 0 <= ih < h and 0 <= iw < wd:
                            y[:, i, j, o] += x[:, ih, iw, g * cg : (g + 1) * cg] @ w[kh, kw, :, o]
    return y


def naive_conv_transpose2d(x, w, stride, pad, output_padding, dilation):
    n, h, wd, c_in = x.shape
    kh_, kw_, c_out, _ = w.shape
    oh = (h - 1) * stride - 2 * pad + dilation * (kh_ - 1) + output_padding + 1
    ow = (wd - 1) * stride - 2 * pad + dilation * (kw_ - 1) + output_padding + 1
    y = np.zeros((n, oh, ow, c_out))
    for i in range(h):
        for j in range(wd):
            for kh in range(kh_):
                for kw in range(kw_):
                    o_h = i * stride - pad + kh * dilation
                    o_w = j * stride - pad + kw * dilation
                    if 0 <= o_h < oh and 0 <= o_w < ow:
                        y[:, o_h, o_w] += x[:, i, j] @ w[kh, kw].T
    return y


@pytest.mark.parametrize(
    "stride, pads, dilation, groups",
    [
        (1, ((0, 0), (0, 0)), 1, 1),
        (2, ((1, 1), (1, 1)), 1, 2),
        (2, ((2, 0), (1, 2)), 2, 1),
        (3, ((0, 1), (1, 0)), 1, 2),
    ],
)
def test_conv2d_matches_naive_loops(stride, pads, dilation, groups):
    rng = np.random.default_rng(23)
    x = randn(rng, 2, 7, 6, 4)
    w = randn(rng, 3, 2, 4 // groups, 4)
    y = ref.conv2d(x, w, stride=stride, padding=pads, dilation=dilation, groups=groups)
    assert_close(y, naive_conv2d(x, w, stride, pads, dilation, groups))


@pytest.mark.parametrize(
    "stride, pad, output_padding, dilation",
    [(1, 0, 0, 1), (2, 1, 1, 1), (2, 0, 1, 1), (3, 2, 2, 2), (1, 1, 1, 2)],
)
def test_conv_transpose2d_matches_naive_loops(stride, pad, output_padding, dilation):
    rng = np.random.default_rng(25)
    x = randn(rng, 2, 3, 4, 2)
    w = randn(rng, 3, 2, 3, 2)
    y = ref.conv_transpose2d(
        x, w, stride=stride, padding=pad, output_padding=output_padding, dilation=dilation
    )
    assert_close(y, naive_conv_transpose2d(x, w, stride, pad, output_padding, dilation))


# ---------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------


def test_conv2d_hand_computed_3x3():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # [[1 2 3] [4 5 6] [7 8 9]]
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    y = ref.conv2d(x, w, np.array([0.5]))
    # cross-correlation, no kernel flip: 1*1 + 2*2 + 3*4 + 4*5 = 37, ...
    np.testing.assert_array_equal(y[0, :, :, 0], [[37.5, 47.5], [67.5, 77.5]])
    # 3x3 box filter with padding 1 ("same"): neighbourhood sums
    y = ref.conv2d(x, np.ones((3, 3, 1, 1)), padding="same")
    np.testing.assert_array_equal(y[0, :, :, 0], [[12, 21, 16], [27, 45, 33], [24, 39, 28]])
    # stride 2 on the padded input picks the corners
    y = ref.conv2d(x, np.ones((3, 3, 1, 1)), padding=1, stride=2)
    np.testing.assert_array_equal(y[0, :, :, 0], [[12, 16], [24, 28]])


def test_conv2d_grad_hand_computed():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    dx, dw, db = ref.conv2d_grad(np.ones((1, 2, 2, 1)), x, w)
    # each input pixel receives the sum of the kernel taps that touch it
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    # each tap sees a 2x2 block of x
    np.testing.assert_array_equal(dw[:, :, 0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(db, [4.0])


def test_channel_layouts_hand_computed():
    x = np.array([2.0, 3.0]).reshape(1, 1, 1, 2)
    # groups=2, 1x1: each output channel sees only its own input channel
    y = ref.conv2d(x, np.array([5.0, 7.0]).reshape(1, 1, 1, 2), groups=2)
    np.testing.assert_array_equal(y.ravel(), [10.0, 21.0])
    # depthwise, M=2: output channel c * M + m
    y = ref.depthwise_conv2d(x, np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2))
    np.testing.assert_array_equal(y.ravel(), [2.0, 4.0, 9.0, 12.0])
    # transposed conv, w (1, 1, C_out, C_in): y = x @ w.T
    w = np.array([[1.0, 10.0], [100.0, 1000.0], [2.0, 3.0]]).reshape(1, 1, 3, 2)
    y = ref.conv_transpose2d(x, w)
    np.testing.assert_array_equal(y.ravel(), [32.0, 3200.0, 13.0])
    # transposed conv, groups=2: w (1, 1, C_out // 2 = 1, C_in = 2)
    y = ref.conv_transpose2d(x, np.array([5.0, 7.0]).reshape(1, 1, 1, 2), groups=2)
    np.testing.assert_array_equal(y.ravel(), [10.0, 21.0])


def test_conv_transpose2d_hand_computed():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    ones = np.ones((2, 2, 1, 1))
    y = ref.conv_transpose2d(x, ones)
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    y = ref.conv_transpose2d(x, ones, stride=2)  # each pixel becomes a 2x2 block
    np.testing.assert_array_equal(y[0, :, :, 0], np.kron([[1, 2], [3, 4]], np.ones((2, 2))))
    # padding 1 crops one row/column on each side; output_padding adds one at the bottom/right
    y = ref.conv_transpose2d(x, np.ones((3, 3, 1, 1)), stride=2, padding=1, output_padding=1)
    full = np.zeros((5, 5))
    for i in range(2):
        for j in range(2):
            full[2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += x[0, i, j, 0]
    # the 5x5 canvas minus one top row/left column; the output_padding row/column is the
    # canvas's last one (bottom crop 1 - output_padding 1 = 0)
    np.testing.assert_array_equal(y[0, :, :, 0], full[1:5, 1:5])
    # with stride 3 and output_padding 2 the extra rows lie past the canvas: zeros
    y = ref.conv_transpose2d(x, ones, stride=3, output_padding=2)
    assert y.shape == (1, 7, 7, 1)
    np.testing.assert_array_equal(y[0, 5:, :, 0], 0.0)
    np.testing.assert_array_equal(
        y[0, :5, :5, 0], np.kron([[1, 2], [3, 4]], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])[:5, :5]
    )


def test_max_pool2d_hand_computed_and_ties():
    x = np.array([[3.0, 5.0, 1.0, 1.0], [5.0, 1.0, 1.0, 1.0]]).reshape(1, 2, 4, 1)
    y = ref.max_pool2d(x)
    np.testing.assert_array_equal(y.ravel(), [5.0, 1.0])
    dx = ref.max_pool2d_grad(np.array([10.0, 20.0]).reshape(1, 1, 2, 1), x)
    # ties go to the first maximum in row-major window order
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 10, 20, 0], [0, 0, 0, 0]])


def test_max_pool2d_overlapping_windows_accumulate():
    x = np.array([[0.0, 9.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).reshape(1, 3, 3, 1)
    dx = ref.max_pool2d_grad(np.ones((1, 2, 2, 1)), x, 2, stride=1)
    # both top windows pick the 9; the all-zero bottom windows pick their first element
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 2, 0], [1, 1, 0], [0, 0, 0]])


def test_max_pool2d_padding_is_minus_infinity():
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # all negative: zero padding would win
    y = ref.max_pool2d(x, 2, padding=1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, -2], [-4, -5]])
    dx = ref.max_pool2d_grad(np.ones((1, 2, 2, 1)), x, 2, padding=1)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_avg_pool2d_count_include_pad():
    x = np.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    y = ref.avg_pool2d(x, 2, padding=1, count_include_pad=True)
    np.testing.assert_array_equal(y[0, :, :, 0], [[0.25, 0.5], [0.75, 1.0]])
    y = ref.avg_pool2d(x, 2, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 2], [3, 4]])
    # 3x3 stride 1 with padding 1 on a 2x2 input: every window holds all 4 pixels
    y = ref.avg_pool2d(x, 3, stride=1, padding=1)
    np.testing.assert_array_equal(y[0, :, :, 0], np.full((2, 2), 2.5))
    y = ref.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)
    np.testing.assert_array_equal(y[0, :, :, 0], np.full((2, 2), 10 / 9))
    dx = ref.avg_pool2d_grad(np.ones((1, 2, 2, 1)), x, 3, stride=1, padding=1)
    np.testing.assert_array_equal(dx[0, :, :, 0], np.ones((2, 2)))
    # "same" on an odd size pads bottom/right only; the last window has 1 valid pixel
    y = ref.avg_pool2d(np.arange(3.0).reshape(1, 1, 3, 1), (1, 2), padding="same")
    np.testing.assert_array_equal(y.ravel(), [0.5, 2.0])


# ---------------------------------------------------------------------------
# arguments and dtypes
# ---------------------------------------------------------------------------


def test_channel_mismatches_raise():
    x = np.zeros((1, 5, 5, 4))
    with pytest.raises(ValueError, match="channels"):
        ref.conv2d(x, np.zeros((3, 3, 3, 2)))
    with pytest.raises(ValueError, match="channels"):
        ref.conv2d(x, np.zeros((3, 3, 4, 2)), groups=2)  # w.shape[2] must be 2
    with pytest.raises(ValueError, match="groups"):
        ref.conv2d(x, np.zeros((3, 3, 2, 3)), groups=2)  # C_out not divisible
    with pytest.raises(ValueError, match="groups"):
        ref.conv2d(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 1, 2)), groups=2)
    with pytest.raises(ValueError, match="channels"):
        ref.depthwise_conv2d(x, np.zeros((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="channels"):
        ref.conv_transpose2d(x, np.zeros((3, 3, 2, 3)))
    with pytest.raises(ValueError, match="groups"):
        ref.conv_transpose2d(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 2, 3)), groups=2)
    with pytest.raises(ValueError):
        ref.conv2d_grad(np.zeros((1, 3, 3, 3)), x, np.zeros((3, 3, 4, 2)))
    with pytest.raises(ValueError, match="bias"):
        ref.conv2d(x, np.zeros((3, 3, 4, 2)), np.zeros(3))


def test_other_invalid_arguments_raise():
    x = np.zeros((1, 5, 5, 2))
    w = np.zeros((3, 3, 2, 2))
    for kwargs in (
        {"stride": 0},
        {"dilation": 0},
        {"padding": -1},
        {"padding": "full"},
        {"padding": ((1, -1), (0, 0))},
    ):
        with pytest.raises(ValueError):
            ref.conv2d(x, w, **kwargs)
    with pytest.raises(ValueError):
        ref.conv2d(x, np.zeros((7, 7, 2, 2)))  # kernel larger than the input
    with pytest.raises(ValueError):
        ref.conv2d(x[0], w)  # wrong ndim
    with pytest.raises(ValueError, match="output_padding"):
        ref.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError):
        ref.max_pool2d(x, 0)
    with pytest.raises(ValueError):
        ref.max_pool2d(x, 2, padding=2)  # windows entirely in the padding
    with pytest.raises(ValueError):
        ref.max_pool2d_grad(np.zeros((1, 3, 3, 2)), x)
    with pytest.raises(ValueError):
        ref.global_avg_pool2d_grad(np.zeros((1, 3)), x)


def test_dtypes():
    rng = np.random.default_rng(27)
    x64 = randn(rng, 1, 5, 5, 2)
    w64 = randn(rng, 3, 3, 2, 3)
    assert ref.conv2d(x64, w64).dtype == np.float64
    y32 = ref.conv2d(x64.astype(np.float32), w64.astype(np.float32))
    assert y32.dtype == np.float32
    assert_close(y32, ref.conv2d(x64.astype(np.float32).astype(np.float64), w64.astype(np.float32)))
    img = (rng.random((1, 5, 5, 2)) * 255).astype(np.uint8)
    assert ref.max_pool2d(img).dtype == np.float32
    assert ref.avg_pool2d(img).dtype == np.float32
    assert ref.global_avg_pool2d(img).dtype == np.float32
    dy32 = np.ones((1, 3, 3, 3), np.float32)
    assert all(g.dtype == np.float32 for g in ref.conv2d_grad(dy32, img, w64.astype(np.float32)))
    # mixed precision promotes like NumPy: float32 with float64 gives float64
    assert ref.conv2d(x64.astype(np.float32), w64).dtype == np.float64
    with pytest.raises(TypeError):
        ref.conv2d(x64.astype(np.complex128), w64)
    with pytest.raises(TypeError):
        ref.max_pool2d(np.array(x64, dtype=object))


def test_inputs_are_not_modified_and_read_only_ok():
    rng = np.random.default_rng(29)
    x = randn(rng, 1, 6, 6, 2)
    w = randn(rng, 3, 3, 2, 2)
    x.flags.writeable = False
    w.flags.writeable = False
    x0, w0 = x.copy(), w.copy()
    y = ref.conv2d(x, w, padding="same")
    ref.conv2d_grad(y, x, w, padding="same")
    ref.conv_transpose2d(x, w, stride=2)
    ref.max_pool2d_grad(np.ones((1, 3, 3, 2)), x)
    # non-contiguous views and nested lists are accepted too
    assert_close(
        ref.conv2d(x[:, ::2, ::2], w, padding=1), ref.conv2d(x[:, ::2, ::2].copy(), w, padding=1)
    )
    assert ref.avg_pool2d(x.tolist()).shape == (1, 3, 3, 2)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
