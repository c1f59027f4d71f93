"""Input-handling gaps found in use (issue 10, item 5), one test or group each:

- batch_size: 0, negatives, floats and bools raise a ValueError naming the argument in fit, evaluate
  and predict (and fit's validation_batch_size); None means 32.
- FASTCONV_SIMD with a typo warns naming the variable, the value and the levels, and the CPU's
  best level is used; set_simd with a bad name still raises.
- FASTCONV_NUM_THREADS / OMP_NUM_THREADS of 0, -1 or 'abc' warn naming the variable and value.
- Geometry: a stride larger than the input has an answer (the reference's) for every op and
  gradient; stride, dilation, padding, pool_size, output_padding of 2**31 or more, padded extents
  and transposed outputs of 2**31 or more raise a ValueError naming the argument, never an
  OverflowError; NumPy integers are ints, bools and floats are refused.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from fastconv import _dispatch, initializers
from fastconv import layers as L
from fastconv import ops as F
from fastconv import reference as R
from fastconv._kernels import runtime as _rt
from fastconv._shapes import kernel_stride, window_output_size
from fastconv.engine.sequential import Sequential

BIG = 2**31  # the first value the kernels' C int geometry cannot hold
TOP = 2**31 - 1


# ---------------------------------------------------------------------------------------------
# batch_size
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled():
    initializers.set_seed(0)
    model = Sequential([L.Conv2D(2, 3, input_shape=(5, 5, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(0)
    return model, rng.standard_normal((10, 5, 5, 1)).astype(np.float32), rng.integers(0, 3, 10)


BAD_BATCH_SIZES = [0, -1, -32, 2.5, 32.0, True, np.bool_(True), "32", np.float32(4)]


@pytest.mark.parametrize("bad", BAD_BATCH_SIZES, ids=repr)
@pytest.mark.parametrize("entry", ["fit", "evaluate", "predict"])
def test_bad_batch_size_raises_naming_it(compiled, entry, bad):
    model, x, y = compiled
    call = {
        "fit": lambda: model.fit(x, y, batch_size=bad, epochs=1, verbose=0),
        "evaluate": lambda: model.evaluate(x, y, batch_size=bad, verbose=0),
        "predict": lambda: model.predict(x, batch_size=bad),
    }[entry]
    pattern = rf"{entry}: batch_size must be a positive int.*Received: batch_size="
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    assert str(info.value).endswith(f"batch_size={bad!r}")


@pytest.mark.parametrize("bad", [0, -1, 1.5, False])
def test_bad_validation_batch_size_raises(compiled, bad):
    model, x, y = compiled
    with pytest.raises(ValueError, match=r"validation_batch_size must be a positive int.*Received"):
        model.fit(x, y, validation_split=0.2, validation_batch_size=bad, verbose=0)


def test_batch_size_none_is_32_and_numpy_ints_work(compiled):
    model, x, y = compiled
    full = model.predict(x)
    np.testing.assert_allclose(model.predict(x, batch_size=np.int64(3)), full, rtol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=1), full, rtol=1e-6)
    assert model.evaluate(x, y, batch_size=None, verbose=0)[0] == pytest.approx(
        model.evaluate(x, y, batch_size=np.int32(4), verbose=0)[0], rel=1e-6)
    model.fit(x, y, batch_size=np.int16(5), validation_split=0.2, verbose=0)


# ---------------------------------------------------------------------------------------------
# FASTCONV_SIMD and the thread-count variables
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_dispatch(monkeypatch):
    """Forget the SIMD level and thread count, so the next call reads the environment again."""
    for var in ("FASTCONV_SIMD", "FASTCONV_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    saved = dict(_dispatch._state)
    _dispatch._state.update(isa=None, threads=None)
    yield monkeypatch
    _dispatch._state.update(saved)


@pytest.mark.parametrize("value", ["avx3", "AVX-512", "sse", "1"])
def test_simd_env_typo_warns_and_uses_the_cpu_best(fresh_dispatch, value):
    fresh_dispatch.setenv("FASTCONV_SIMD", value)
    x = np.ones((1, 4, 4, 8), np.float32)
    w = np.ones((3, 3, 8, 8), np.float32)
    with pytest.warns(RuntimeWarning, match=r"FASTCONV_SIMD") as rec:
        y = F.conv2d(x, w)
    text = str(rec[0].message)
    assert repr(value) in text and all(level in text for level in ("generic", "avx2", "avx512"))
    np.testing.assert_allclose(y, 72.0)
    assert _dispatch.simd_level() == _dispatch.cpu_level()
    assert _dispatch.last_used["conv2d"] == _dispatch.LEVEL_NAMES[_dispatch.cpu_level()]
    with warnings.catch_warnings():  # warned once, not on every op
        warnings.simplefilter("error")
        F.conv2d(x, w)


def test_simd_env_valid_levels_still_apply(fresh_dispatch):
    fresh_dispatch.setenv("FASTCONV_SIMD", " Generic ")
    assert _dispatch.simd_level() == 0


def test_set_simd_with_a_bad_name_still_raises():
    with pytest.raises(ValueError, match=r"must be one of.*Received: 'avx3'"):
        _dispatch.set_simd("avx3")


@pytest.mark.parametrize("var", ["FASTCONV_NUM_THREADS", "OMP_NUM_THREADS"])
@pytest.mark.parametrize("value", ["0", "-1", "abc", "0,2"])
def test_bad_thread_variables_warn_alike_and_fall_back(fresh_dispatch, var, value):
    fresh_dispatch.setenv(var, value)
    with pytest.warns(RuntimeWarning, match=rf"{var}={value!r}"):
        n = _dispatch.get_num_threads()
    assert n == _rt.num_procs()


def test_bad_fastconv_threads_falls_back_to_omp(fresh_dispatch):
    fresh_dispatch.setenv("FASTCONV_NUM_THREADS", "0")
    fresh_dispatch.setenv("OMP_NUM_THREADS", "3,1")
    with pytest.warns(RuntimeWarning, match=r"FASTCONV_NUM_THREADS='0'"):
        assert _dispatch.get_num_threads() == 3


def test_good_thread_variable_does_not_warn(fresh_dispatch):
    fresh_dispatch.setenv("FASTCONV_NUM_THREADS", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _dispatch.get_num_threads() == 2


# ---------------------------------------------------------------------------------------------
# Geometry: strides larger than the input have an answer
# ---------------------------------------------------------------------------------------------

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 5, 7, 4))
W_CONV = rng.standard_normal((3, 3, 4, 6))
W_T = rng.standard_normal((3, 3, 6, 4))  # conv_transpose2d: (KH, KW, C_out, C_in)
W_DW = rng.standard_normal((3, 3, 4, 2))
X1 = rng.standard_normal((2, 1, 1, 4))  # one pixel: a transposed conv of any stride is small

STRIDES = [10, 1000, TOP, (1, TOP), (TOP, 1), (TOP, 3), (np.int64(TOP), np.int32(1000))]
PADS = [0, 1, "same", ((0, 2), (1, 0))]

# The depthwise and pooling ops hand the kernels fastconv._shapes.kernel_stride: an axis with one
# output gets the smallest stride with the same answer, so the scratch the depthwise kernel sizes
# by the stride and the pooling gradient's ceildiv(iw + pw - KW + 1, sw) in C int stay small.


def _close(got, want):
    if isinstance(want, tuple):
        for g, w_ in zip(got, want):
            _close(g, w_)
        return
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def _sid(s):
    return str(tuple(int(v) for v in s)) if isinstance(s, tuple) else str(int(s))


def _stride_cases():
    return [pytest.param(s, id=_sid(s)) for s in STRIDES]


def _col_stride(s):
    return int(s[1]) if isinstance(s, tuple) else int(s)


def _row_stride(s):
    return int(s[0]) if isinstance(s, tuple) else int(s)


@pytest.mark.parametrize("pad", PADS, ids=repr)
@pytest.mark.parametrize("stride", _stride_cases())
def test_conv2d_and_grad_large_stride_match_reference(stride, pad):
    want = R.conv2d(X, W_CONV, stride=stride, padding=pad)
    _close(F.conv2d(X, W_CONV, stride=stride, padding=pad), want)
    dy = rng.standard_normal(want.shape)
    _close(F.conv2d_grad(dy, X, W_CONV, stride=stride, padding=pad),
           R.conv2d_grad(dy, X, W_CONV, stride=stride, padding=pad))


# 'valid' gives H * stride output rows: only the moderate strides ('valid' with TOP would be a real
# 2**31-pixel output; 100 rather than 1000 keeps the float64 reference at a second, not 40).
# Strides beyond 1000 run on a one-pixel input, whose output is the kernel.
@pytest.mark.parametrize("stride,pad", [(s, p) for s in (10, 100, TOP, (1, TOP), (TOP, 2))
                                        for p in (0, 1, "valid", ((1, 0), (0, 1)))
                                        if p != "valid" or max(_row_stride(s), _col_stride(s)) <= 1000],
                         ids=lambda v: _sid(v) if not isinstance(v, str) and np.ndim(v) <= 1 else repr(v))
def test_conv_transpose2d_and_grad_large_stride_match_reference(stride, pad):
    x = X1 if _row_stride(stride) > 1000 or _col_stride(stride) > 1000 else X[:, :2, :3]
    want = R.conv_transpose2d(x, W_T, stride=stride, padding=pad)
    _close(F.conv_transpose2d(x, W_T, stride=stride, padding=pad), want)
    dy = rng.standard_normal(want.shape)
    _close(F.conv_transpose2d_grad(dy, x, W_T, stride=stride, padding=pad),
           R.conv_transpose2d_grad(dy, x, W_T, stride=stride, padding=pad))


@pytest.mark.parametrize("pad", PADS, ids=repr)
@pytest.mark.parametrize("stride", _stride_cases())
def test_depthwise_and_grad_large_stride_match_reference(stride, pad):
    want = R.depthwise_conv2d(X, W_DW, stride=stride, padding=pad)
    _close(F.depthwise_conv2d(X, W_DW, stride=stride, padding=pad), want)
    dy = rng.standard_normal(want.shape)
    _close(F.depthwise_conv2d_grad(dy, X, W_DW, stride=stride, padding=pad),
           R.depthwise_conv2d_grad(dy, X, W_DW, stride=stride, padding=pad))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pad", [0, 1, "same"], ids=repr)
@pytest.mark.parametrize("stride", _stride_cases())
def test_pool_large_stride_matches_reference(stride, pad, kind):
    fwd = getattr(F, f"{kind}_pool2d")
    want = getattr(R, f"{kind}_pool2d")(X, 3, stride=stride, padding=pad)
    _close(fwd(X, 3, stride=stride, padding=pad), want)


@pytest.mark.parametrize("pad", [0, 1, "same"], ids=repr)
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("stride", _stride_cases())
def test_pool_grad_large_stride_matches_reference(stride, pad, kind):
    want = getattr(R, f"{kind}_pool2d")(X, 3, stride=stride, padding=pad)
    dy = rng.standard_normal(want.shape)
    _close(getattr(F, f"{kind}_pool2d_grad")(dy, X, 3, stride=stride, padding=pad),
           getattr(R, f"{kind}_pool2d_grad")(dy, X, 3, stride=stride, padding=pad))


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 5, 10, 1000, TOP])
@pytest.mark.parametrize("size,k,d,before,after", [(5, 3, 1, 0, 0), (7, 3, 2, 1, 1), (1, 1, 1, 0, 0),
                                                   (4, 2, 1, 0, 3)])
def test_kernel_stride_bounds_the_stride_without_changing_the_output(size, k, d, before, after, stride):
    ks = kernel_stride(size, k, stride, d, before, after)
    assert 1 <= ks <= stride and ks <= size + before + after
    n = window_output_size(size, k, stride, d, before, after)
    assert window_output_size(size, k, ks, d, before, after) == n
    assert ks == stride or n == 1


# ---------------------------------------------------------------------------------------------
# Geometry: values of 2**31 and more are refused with a ValueError naming them
# ---------------------------------------------------------------------------------------------

XS = np.ones((1, 5, 5, 2), np.float32)
WS = np.ones((3, 3, 2, 2), np.float32)
WDS = np.ones((3, 3, 2, 1), np.float32)
DY = np.ones((1, 1, 1, 2), np.float32)  # only shape-checked after the arguments: never reached


def _ops_with(**kw):
    """Every windowed op and gradient called with the geometry arguments kw."""
    pool_kw = {k: v for k, v in kw.items() if k in ("stride", "padding", "pool_size")}
    pool_kw.setdefault("pool_size", 3)
    conv_kw = {k: v for k, v in kw.items() if k in ("stride", "padding", "dilation")}
    t_kw = {k: v for k, v in kw.items() if k in ("stride", "padding", "dilation", "output_padding")}
    return {
        "conv2d": lambda: F.conv2d(XS, WS, **conv_kw),
        "conv2d_grad": lambda: F.conv2d_grad(DY, XS, WS, **conv_kw),
        "conv_transpose2d": lambda: F.conv_transpose2d(XS, WS, **t_kw),
        "conv_transpose2d_grad": lambda: F.conv_transpose2d_grad(DY, XS, WS, **t_kw),
        "depthwise_conv2d": lambda: F.depthwise_conv2d(XS, WDS, **conv_kw),
        "depthwise_conv2d_grad": lambda: F.depthwise_conv2d_grad(DY, XS, WDS, **conv_kw),
        "max_pool2d": lambda: F.max_pool2d(XS, **pool_kw),
        "max_pool2d_grad": lambda: F.max_pool2d_grad(DY, XS, **pool_kw),
        "avg_pool2d": lambda: F.avg_pool2d(XS, **pool_kw),
        "avg_pool2d_grad": lambda: F.avg_pool2d_grad(DY, XS, **pool_kw),
    }


CONV_OPS = ["conv2d", "conv2d_grad", "conv_transpose2d", "conv_transpose2d_grad", "depthwise_conv2d",
            "depthwise_conv2d_grad"]
POOL_OPS = ["max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad"]
ALL_OPS = CONV_OPS + POOL_OPS


def _refused(call, op, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    assert str(info.value).startswith(f"{op}: ")
    assert not isinstance(info.value.__cause__, OverflowError)


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("stride", [BIG, (BIG, 1), (1, np.int64(BIG)), np.uint64(2**63), 10**30], ids=repr)
def test_stride_of_2_31_or_more_is_refused_by_name(op, stride):
    _refused(_ops_with(stride=stride)[op], op,
             rf"stride must be below 2\*\*31.*Received: stride={re.escape(repr(stride))}$")


def test_stride_message_reads_as_documented():
    with pytest.raises(ValueError) as info:
        F.conv2d(XS, WS, stride=(BIG, 1))
    assert str(info.value) == ("conv2d: stride must be below 2**31 (the kernels index in 32-bit ints). "
                               "Received: stride=(2147483648, 1)")


@pytest.mark.parametrize("op", CONV_OPS)
@pytest.mark.parametrize("dilation", [BIG, (1, BIG)], ids=repr)
def test_dilation_of_2_31_or_more_is_refused_by_name(op, dilation):
    _refused(_ops_with(dilation=dilation)[op], op, r"dilation must be below 2\*\*31.*Received: dilation=")


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("padding", [BIG, (0, BIG), ((BIG, 0), (0, 0)), ((0, 0), (0, np.int64(BIG)))],
                         ids=repr)
def test_padding_of_2_31_or_more_is_refused_by_name(op, padding):
    _refused(_ops_with(padding=padding)[op], op, r"padding must be below 2\*\*31.*Received: padding=")


@pytest.mark.parametrize("op", [o for o in ALL_OPS if "transpose" not in o])
@pytest.mark.parametrize("padding", [2**30, ((0, TOP - 4), (0, 0)), ((0, 0), (TOP, 0))], ids=repr)
def test_padded_extent_of_2_31_or_more_is_refused(op, padding):
    kw = {"padding": padding, "stride": TOP}
    _refused(_ops_with(**kw)[op], op, r"padded input must be below 2\*\*31.*Received: padding=")


@pytest.mark.parametrize("op", POOL_OPS)
def test_pool_size_of_2_31_or_more_is_refused_by_name(op):
    _refused(_ops_with(pool_size=(BIG, 1))[op], op, r"pool_size must be below 2\*\*31.*Received: pool_size=")


@pytest.mark.parametrize("op", ["conv_transpose2d", "conv_transpose2d_grad"])
@pytest.mark.parametrize("kw", [{"stride": TOP}, {"stride": (1, 2**30), "padding": "same"},
                                {"stride": 2**29, "dilation": 2**29, "output_padding": 2**29 - 1}], ids=repr)
def test_transposed_output_of_2_31_or_more_is_refused(op, kw):
    _refused(_ops_with(**kw)[op], op, r"the output would be \d+ pixels along [HW]; it must be below 2\*\*31. "
                                      r"Received: stride=")


@pytest.mark.parametrize("op", ["conv_transpose2d", "conv_transpose2d_grad"])
def test_output_padding_of_2_31_or_more_is_refused_by_name(op):
    _refused(_ops_with(stride=2, output_padding=(0, BIG))[op], op,
             r"output_padding must be below 2\*\*31.*Received: output_padding=")


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("name,value", [
    ("stride", True), ("stride", (True, 1)), ("stride", (np.True_, 1)), ("stride", 2.0), ("stride", (2.0, 1)),
    ("stride", "2"), ("stride", (1, 2, 3)), ("padding", True), ("padding", (np.False_, 1)),
    ("padding", ((True, 0), (0, 0))), ("padding", ((1.0, 0), (0, 0))), ("padding", 1.5),
], ids=repr)
def test_bools_and_floats_are_refused(op, name, value):
    _refused(_ops_with(**{name: value})[op], op, rf"{name}.*Received: {name}=")


@pytest.mark.parametrize("op", ALL_OPS)
def test_numpy_integers_are_ints(op):
    np_kw = {"stride": (np.int64(2), np.uint8(1)), "padding": np.int16(1)}
    py_kw = {"stride": (2, 1), "padding": 1}
    if not op.endswith("_grad"):
        _close(_ops_with(**np_kw)[op](), _ops_with(**py_kw)[op]())
        return
    dy = np.ones_like(_ops_with(**py_kw)[op[:-len("_grad")]]())
    fn = getattr(F, op)
    if "pool" in op:
        args, extra = (dy, XS), {"pool_size": np.int32(3)}
    else:
        args, extra = (dy, XS, WDS if "depthwise" in op else WS), {}
    _close(fn(*args, **np_kw, **extra), fn(*args, **py_kw, **extra))


def test_layer_output_and_cli_refuse_a_zero_batch_size(tmp_path):
    """layer_output read batch_size=0 as 256 and the CLI's --batch-size 0 as the model's default."""
    from fastconv import cli

    model = Sequential([L.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="batch_size"):
        model.layer_output(np.ones((4, 3), np.float32), 0, batch_size=0)
    for flag in ("--batch-size", "--epochs"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "--model", "lenet5", flag, "0"])
        assert exit_info.value.code == 2
