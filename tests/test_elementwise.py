"""fastconv.ops.elementwise (src/elementwise.pyx over src/elementwise_impl.h, elementwise_math.h)
against the float64 reference: every activation and its gradient, softmax and its gradient, at
every SIMD level, 1 and 2 threads, extreme inputs, odd sizes, non-contiguous inputs, finite
differences; the reference itself checked by finite differences."""
import sys

import numpy as np
import pytest
from gradcheck import numeric_grad
from large import INT32_MAX, tail_mapped

from fastconv import _dispatch, reference
from fastconv.ops import elementwise as ew

NAMES = sorted(n for n in ew.CODES if n != "linear")
LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
ALPHA = {"elu": 0.7, "leaky_relu": 0.15}
# Tolerance: C ulp times (1 + the condition number |x h'(x) / h(x)| of the function h checked),
# the error any evaluation from a rounded input and rounded intermediates has; plus, in the
# backward, a few ulp of |dy| absolute (derivatives written from a rounded output y: sigmoid's
# y (1 - y) near y = 1).  EPS is the unit roundoff of each dtype.
EPS = {np.float32: 2.0**-24, np.float64: 2.0**-53}
ULPS = 8
SPECIAL = [np.inf, -np.inf, np.nan, -0.0, 0.0, 1e-40, -1e-40, 5e-324, -5e-324, 1e-30, -1e-30, 88.5, -88.5,
           89.0, -104.0, -110.0, 709.0, -745.0, 800.0, -800.0, 1e30, -1e30, 3.0e38, -3.0e38, 20.0, -20.0]


@pytest.fixture(params=LEVELS)
def level(request):
    _dispatch.set_simd(request.param)
    yield request.param
    _dispatch.set_simd(None)


@pytest.fixture(params=[1, 2])
def threads(request):
    old = _dispatch._state["threads"]
    _dispatch.set_num_threads(request.param)
    yield request.param
    _dispatch._state["threads"] = old


def _inputs(dtype, n=4099, seed=0):
    """Normal and wide-range values, a dense sweep through the interesting range, the specials."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal(n) * 3, np.linspace(-40, 40, 2001), rng.standard_normal(97) * 1e-4,
                        np.exp(rng.uniform(-80, 80, 500)) * rng.choice([-1, 1], 500),
                        np.array(SPECIAL)])
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def _cond(h, x):
    """|x h'(x) / h(x)| by a central difference in float64 (0 where h vanishes or at +-inf / NaN)."""
    x = x.astype(np.float64)
    d = 1e-6
    with np.errstate(all="ignore"):
        hx = h(x)
        c = np.abs((h(x * (1 + d)) - h(x * (1 - d))) / (2 * d * hx))
    return np.where(np.isfinite(c), c, 0.0)


def _check(got, ref, dtype, cond, atol=0.0):
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(got[~fin], ref[~fin])  # +-inf exactly
    tiny = np.finfo(dtype).tiny
    with np.errstate(all="ignore"):
        err = np.abs(got[fin].astype(np.float64) - ref[fin])
    allowed = ULPS * EPS[dtype] * (1 + cond[fin]) * np.abs(ref[fin]) + np.broadcast_to(atol, ref.shape)[fin] + tiny
    bad = np.flatnonzero(err > allowed)
    assert bad.size == 0, (f"{bad.size} values off, e.g. got {got[fin][bad[:4]]} expected {ref[fin][bad[:4]]} "
                           f"(allowed error {allowed[bad[:4]]})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_match_reference(name, dtype, level, threads):
    x = _inputs(dtype)
    a = ALPHA.get(name)
    y = ew.activation(x, name, alpha=a)
    assert _dispatch.last_used["activation"] == (level if dtype == np.float32 else "generic")
    assert _dispatch.last_kernel["activation"] == name
    ref = reference.activation(x, name, a)
    _check(y, ref, dtype, _cond(lambda v: reference.activation(v, name, a), x))
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    t = x if name in ew.GRAD_FROM_INPUT else y
    dx = ew.activation_grad(dy, t, name, alpha=a)
    one = np.ones(x.shape)
    _check(dx, reference.activation_grad(dy, x, name, a), dtype,
           _cond(lambda v: reference.activation_grad(one, v, name, a), x), 16 * EPS[dtype] * np.abs(dy))


@pytest.mark.parametrize("name", NAMES)
def test_signed_zero_and_specials(name):
    x = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan], np.float32)
    y = ew.activation(x, name)
    ref = reference.activation(x, name)
    np.testing.assert_array_equal(y, ref.astype(np.float32))
    # the odd functions keep -0.0's sign, as the reference does
    np.testing.assert_array_equal(np.signbit(y[:2]), np.signbit(ref[:2]))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_by_finite_differences(name):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(400) * 3
    x = x[np.abs(x) > 1e-3]  # away from the kinks at 0
    x = x[np.abs(x - 6) > 1e-3]
    a = ALPHA.get(name)
    h = 1e-6
    num = (ew.activation(x + h, name, alpha=a) - ew.activation(x - h, name, alpha=a)) / (2 * h)
    t = x if name in ew.GRAD_FROM_INPUT else ew.activation(x, name, alpha=a)
    np.testing.assert_allclose(ew.activation_grad(np.ones_like(x), t, name, alpha=a), num, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_reference_gradient_by_finite_differences(name):
    x = np.random.default_rng(3).standard_normal(64) * 3
    x = x[(np.abs(x) > 1e-3) & (np.abs(x - 6) > 1e-3)]
    h = 1e-6
    num = (reference.activation(x + h, name) - reference.activation(x - h, name)) / (2 * h)
    np.testing.assert_allclose(reference.activation_grad(np.ones_like(x), x, name), num, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("n", list(range(1, 34)) + [63, 65, 1000])
def test_every_size_and_position_gives_the_same_values(n):
    """The tail of a span runs the vector code in a padded vector: an element's value does not
    depend on where it sits (what makes a fused epilogue equal to the separate pass)."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32) * 4
    for name in NAMES:
        full = ew.activation(np.concatenate([np.zeros(5, np.float32), x]), name)[5:]
        np.testing.assert_array_equal(ew.activation(x, name), full)
        _check(ew.activation(x, name), reference.activation(x, name), np.float32,
               _cond(lambda v, name=name: reference.activation(v, name), x))


def test_threads_are_bit_identical():
    x = np.random.default_rng(4).standard_normal(600_001).astype(np.float32)
    old = _dispatch._state["threads"]
    try:
        out = {}
        for t in (1, 2):
            _dispatch.set_num_threads(t)
            out[t] = [ew.activation(x, "selu"), ew.activation_grad(x, x, "gelu"), ew.softmax(x[:-1].reshape(-1, 8))]
    finally:
        _dispatch._state["threads"] = old
    for a, b in zip(out[1], out[2]):
        np.testing.assert_array_equal(a, b)


def test_non_contiguous_input_is_not_modified():
    x = np.random.default_rng(5).standard_normal((6, 10)).astype(np.float32)
    before = x.copy()
    view = x[:, ::3]
    y = ew.activation(view, "tanh")
    np.testing.assert_array_equal(y, ew.activation(np.ascontiguousarray(view), "tanh"))
    dx = ew.activation_grad(view, view.T.T, "swish")
    np.testing.assert_array_equal(dx, ew.activation_grad(np.ascontiguousarray(view), np.ascontiguousarray(view),
                                                         "swish"))
    np.testing.assert_array_equal(ew.softmax(x.T), ew.softmax(np.ascontiguousarray(x.T)))
    np.testing.assert_array_equal(x, before)


def test_in_place_and_out():
    x = np.random.default_rng(6).standard_normal(1001)
    y = ew.activation(x, "elu")
    z = x.copy()
    assert ew.activation(z, "elu", out=z) is z
    np.testing.assert_array_equal(z, y)
    out = np.full_like(x, np.nan)
    assert ew.softmax(x.reshape(7, 143), out=out.reshape(7, 143)).base is out
    np.testing.assert_allclose(out.reshape(7, 143), reference.softmax(x.reshape(7, 143)), rtol=1e-14)


def test_integer_and_float16_inputs_compute_in_float32():
    assert ew.activation(np.arange(-3, 3), "sigmoid").dtype == np.float32
    y = ew.activation(np.linspace(-3, 3, 11, dtype=np.float16), "tanh")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np.tanh(np.linspace(-3, 3, 11, dtype=np.float16).astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("L", [1, 3, 8, 17, 1000])
def test_softmax_matches_reference(L, dtype, level):
    rng = np.random.default_rng(L)
    x = (rng.standard_normal((13, L)) * 10).astype(dtype)
    x[0, 0] = 80 if dtype == np.float32 else 700  # exp would overflow without the max shift
    x[1, :] = -1e30
    if L > 1:
        x[2, 1] = -np.inf
    y = ew.softmax(x)
    assert _dispatch.last_used["softmax"] == (level if dtype == np.float32 else "generic")
    ref = reference.softmax(x)
    # exp(x - max) carries the rounding of x - max: a relative error of |x - max| ulp
    with np.errstate(invalid="ignore"):
        cond = np.abs(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    _check(y, ref, dtype, np.where(np.isfinite(cond), cond, 0.0) + L)
    tol = {"rtol": 2e-6, "atol": 1e-30} if dtype == np.float32 else {"rtol": 1e-14, "atol": 1e-300}
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-14)
    dy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_allclose(ew.softmax_grad(dy, y), reference.softmax_grad(dy, y),
                               rtol=tol["rtol"] * 10, atol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("L", [1, 2, 3, 5, 8, 9])
def test_softmax_short_rows_equal_the_row_path(L, dtype, threads, level):
    """Rows of at most 8 elements go a vector of rows at a time (transposed): every row equals the
    same row run alone (the one-row path) bit for bit, NaN, -inf and +inf rows included, with a
    remainder of rows that do not fill a vector, and agrees with the reference."""
    rng = np.random.default_rng(100 + L)
    x = (rng.standard_normal((67, L)) * 10).astype(dtype)
    x[3, 0] = np.nan
    x[20, :] = -np.inf
    x[21, L - 1] = np.inf
    x[40, 0] = 80 if dtype == np.float32 else 700
    with np.errstate(invalid="ignore"):
        y = ew.softmax(x)
        rows = np.concatenate([ew.softmax(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(y, rows)
    assert np.isnan(y[[3, 20, 21]]).all()
    ok = np.ones(len(x), bool)
    ok[[3, 20, 21]] = False
    xs = x[ok]
    cond = np.abs(xs.astype(np.float64) - xs.max(axis=-1, keepdims=True))  # as in the test above
    _check(y[ok], reference.softmax(xs), dtype, cond + L)


def test_softmax_nan_row_and_4d():
    x = np.random.default_rng(7).standard_normal((2, 3, 4, 5))
    x[0, 1, 2, 3] = np.nan
    y = ew.softmax(x)
    assert np.isnan(y[0, 1, 2]).all() and not np.isnan(np.delete(y.reshape(-1, 5), 6, axis=0)).any()
    np.testing.assert_allclose(np.nan_to_num(y), np.nan_to_num(reference.softmax(x)), rtol=1e-14)


def test_softmax_grad_by_finite_differences():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 6))
    dy = rng.standard_normal((3, 6))
    num = numeric_grad(lambda: float((ew.softmax(x) * dy).sum()), x)
    np.testing.assert_allclose(ew.softmax_grad(dy, ew.softmax(x)), num, rtol=1e-7, atol=1e-9)


def test_alpha():
    x = np.array([-2.0, -0.5, 1.0])
    np.testing.assert_allclose(ew.activation(x, "leaky_relu"), [-0.4, -0.1, 1.0])  # Keras's 0.2
    np.testing.assert_allclose(ew.activation(x, "leaky_relu", alpha=0.5), [-1.0, -0.25, 1.0])
    np.testing.assert_allclose(ew.activation(x, "elu", alpha=2.0), 2.0 * np.expm1(np.minimum(x, 0)) + np.maximum(x, 0),
                               rtol=1e-15)


def test_bad_arguments_are_named():
    x = np.zeros(3)
    with pytest.raises(ValueError, match=r"activation must be one of .*Received: activation='mish'"):
        ew.activation(x, "mish")
    with pytest.raises(TypeError, match="alpha must be a real number. Received: alpha='a'"):
        ew.activation(x, "elu", alpha="a")
    with pytest.raises(ValueError, match="alpha must be finite"):
        ew.activation(x, "elu", alpha=np.inf)
    with pytest.raises(ValueError, match=r"out must be a writeable C-contiguous float64 array of shape \(3,\)"):
        ew.activation(x, "elu", out=np.zeros(4))
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(3,\). Received: dy.shape=\(4,\)"):
        ew.activation_grad(np.zeros(4), x, "tanh")
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        ew.activation(np.array(["a"]), "tanh")
    with pytest.raises(ValueError, match=r"x must have at least one axis. Received: x.shape=\(\)"):
        ew.softmax(np.float64(1.0))


def test_empty():
    assert ew.activation(np.zeros((0, 3)), "selu").shape == (0, 3)
    assert ew.softmax(np.zeros((4, 0))).shape == (4, 0)
    assert ew.softmax_grad(np.zeros((0, 5)), np.zeros((0, 5))).shape == (0, 5)


@pytest.mark.large
@pytest.mark.skipif(sys.maxsize <= 2**32, reason="needs a 64-bit address space")
def test_past_32_bit_element_count():
    """An activation, its gradient and a softmax over 2**31 + 2**22 elements (tests/large.py
    tail_mapped: the head aliases one small zeroed block, the tail past 2**31 is memory of its
    own): the chunk offsets and span lengths pass 2**31; the tails match the reference."""
    M, C = 2**25 + 2**16, 64
    tail = M * C - 2**31
    x, h = tail_mapped((M, C), np.float32, tail_elems=tail, populate=True)
    assert x.size > INT32_MAX and h <= 2**31  # the tail holds every offset past 2**31
    rng = np.random.default_rng(9)
    xt = rng.standard_normal(x.size - h).astype(np.float32) * 3
    x.reshape(-1)[h:] = xt
    y, _ = tail_mapped((M, C), np.float32, tail_elems=tail, fill=np.nan, populate=True)
    assert ew.activation(x, "selu", out=y) is y
    _check(y.reshape(-1)[h:], reference.activation(xt, "selu"), np.float32,
           _cond(lambda v: reference.activation(v, "selu"), xt))
    assert (y.reshape(-1)[:h:1 << 20] == 0).all()  # selu(0) in the head
    # the gradient in place in x's buffer (dx may alias dy), from y
    dyt = rng.standard_normal(xt.size).astype(np.float32)
    x.reshape(-1)[h:] = dyt
    ew.activation_grad(x, y, "selu", out=x)
    _check(x.reshape(-1)[h:], reference.activation_grad(dyt, xt, "selu"), np.float32,
           _cond(lambda v: reference.activation_grad(np.ones(xt.shape), v, "selu"), xt), 16 * EPS[np.float32] * np.abs(dyt))
    # softmax rows past 2**31 (row r of 64 starts at r * 64)
    x.reshape(-1)[h:] = xt
    ew.softmax(x, out=y)
    r0 = -(-h // C)
    np.testing.assert_allclose(y[r0:], reference.softmax(x[r0:]), rtol=2e-5, atol=1e-30)
