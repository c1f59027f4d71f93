"""Property tests at wide ranges (issue 10, "Correct at every size", item 4).

Every op and gradient of the functional API (conv2d, conv_transpose2d, depthwise_conv2d, max / avg /
global-avg pooling, dense, each with its _grad) and the BatchNormalization layer's training
forward / backward, against the NumPy reference (fastconv.reference, run in float64 on the same
values), in float32 and float64, at every SIMD level this CPU has and at 1, 2 and 3 threads (also
with the "too small to split" threshold off, so small calls do run on several threads).

What is drawn (tests/test_property_wide.py strategies):

- images: rows of up to 4200 pixels (H 1..3), columns of up to 4200 (W 1..3), squares up to 48,
  48..400 and 4..64 x 16..1100 (plus first-layer convs: 1-3 channels, 3/5/7-wide kernels), and
  tiny inputs (1..4) that kernels overhang; batch 0..3 (0: an empty, correctly shaped result);
- channels from {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 47, 64, 97}: primes and the vector
  widths +-1 (8 floats AVX2, 16 floats AVX-512); groups dividing them, up to groups == channels;
- kernels 1..11 per axis (often larger than input + padding: then the op must raise ValueError
  exactly when the reference does), strides 1..13 (larger than the kernel), dilation 1..4,
  padding int / (ph, pw) / ((t, b), (l, r)) up to 6 / "same" / "valid"; output_padding up to
  max(stride, dilation) (the last value is invalid);
- values either standard normal or small integers (sums of integers are exact in float32, so those
  cases demand the exact answer; ties exercise max pooling's first-maximum rule).

A case costs at most MAC_CAP multiply-adds and ELEM_CAP elements per tensor, so the reference stays
fast (tens of ms). float32 tolerance scales with the reduction length, float64 is tight.

Profiles (tests/conftest.py): "ci" is the default, derandomized, ~60-90 s for this file on 2 cores;
"wide" runs 10x the examples (~10 min) with random seeds and keeps failures in .hypothesis/:

    pytest tests/test_property_wide.py                                  # ci
    FASTCONV_HYPOTHESIS=wide pytest tests/test_property_wide.py         # long, on demand
    pytest tests/test_property_wide.py --hypothesis-profile=wide        # same
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import _dispatch
from fastconv import layers as L
from fastconv import reference as ref

CHANNELS = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 47, 64, 97]
PER_GROUP = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 33]  # output channels per group
LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
MAC_CAP = 2_000_000  # multiply-adds of one forward
ELEM_CAP = 400_000  # elements of any one tensor
# Depthwise and pooling cost one multiply-add per tap and output, in the reference too: they may
# reach outputs past the 4 MiB at which their kernels stream (non-temporal stores, STREAM_BYTES).
CHEAP_MAC_CAP = 6_000_000
CHEAP_ELEM_CAP = 1_600_000
F64 = np.float64


def _examples(weight: float) -> settings:
    """The loaded profile's max_examples scaled by a test's weight (cheap tests run more)."""
    return settings(max_examples=max(1, int(weight * settings.default.max_examples)))


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------

SHAPES = {  # (H range, W range)
    "row": ((1, 3), (1, 4200)),
    "column": ((1, 4200), (1, 3)),
    "square": ((1, 48), (1, 48)),
    "tiny": ((1, 4), (1, 4)),
    "large": ((48, 400), (48, 400)),
    "medium": ((4, 64), (16, 1100)),  # rows the row-tiled conv paths take (OW <= 1024)
}
_pad = st.integers(0, 6)
PADDING = st.one_of(st.sampled_from(["same", "valid"]), _pad, st.tuples(_pad, _pad),
                    st.tuples(st.tuples(_pad, _pad), st.tuples(_pad, _pad)))
STRIDE = st.one_of(st.integers(1, 3), st.integers(1, 13))
def KERNEL(max_k):  # noqa: N802 (a strategy, like the constants around it)
    return st.one_of(st.integers(1, 5), st.integers(1, max_k))


DILATION = st.one_of(st.just(1), st.integers(1, 4))
DTYPES = st.sampled_from([np.float32, np.float64])
VALUES = st.sampled_from(["normal", "int"])
SEEDS = st.integers(0, 2**16)
BATCH = st.sampled_from([1, 2, 3, 1, 2, 3, 0])  # 1 in 7 empty


@st.composite
def machines(draw):
    """(SIMD level, threads, split small calls too, offset of the inputs in elements)."""
    return (draw(st.sampled_from(LEVELS)), draw(st.sampled_from([1, 2, 3])), draw(st.booleans()),
            draw(st.sampled_from([0, 0, 1, 3, 7])))


@contextmanager
def machine(m):
    level, threads, split, _ = m
    old = dict(_dispatch._state), _dispatch._MIN_WORK_PER_THREAD
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every level drawn exists on this CPU
            _dispatch.set_simd(level)
        fastconv.set_num_threads(threads)
        if split:
            _dispatch._MIN_WORK_PER_THREAD = 1
        yield
    finally:
        _dispatch._state.update(old[0])
        _dispatch._MIN_WORK_PER_THREAD = old[1]


def _pair_or_int(draw, a, b):
    return a if a == b and draw(st.booleans()) else (a, b)


@st.composite
def windows(draw, dilation=True, max_k=11):
    """Input size and window geometry of a conv or pool: a dict of H, W, k, stride, dilation, padding."""
    kind = draw(st.sampled_from(list(SHAPES)))
    (h0, h1), (w0, w1) = SHAPES[kind]
    g = dict(H=draw(st.integers(h0, h1)), W=draw(st.integers(w0, w1)),
             k=(draw(KERNEL(max_k)), draw(KERNEL(max_k))))
    g["stride"] = _pair_or_int(draw, draw(STRIDE), draw(STRIDE))
    g["dilation"] = _pair_or_int(draw, draw(DILATION), draw(DILATION)) if dilation else 1
    g["padding"] = draw(PADDING)
    return g


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def out_hw(g):
    """Output size by the reference's rules; (0, 0) when the kernel does not fit."""
    s, d = _pair(g["stride"]), _pair(g["dilation"])
    pads = ref.resolve_padding(g["padding"], (g["H"], g["W"]), g["k"], s, d)
    out = []
    for n, k, ss, dd, (lo, hi) in zip((g["H"], g["W"]), g["k"], s, d, pads):
        o = (n + lo + hi - ((k - 1) * dd + 1)) // ss + 1
        out.append(max(o, 0))
    return (out[0], out[1]) if min(out) > 0 else (0, 0)


def _fits(n_elems, macs=0, cheap=False):
    return n_elems <= (CHEAP_ELEM_CAP if cheap else ELEM_CAP) and macs <= (CHEAP_MAC_CAP if cheap else MAC_CAP)


def _divisors(c):
    return [d for d in range(1, c + 1) if c % d == 0]


@st.composite
def conv_cases(draw):
    g = draw(windows())
    first_layer = draw(st.integers(0, 4)) == 0
    if first_layer:  # 1-3 channels, an odd kernel row, stride 1-2: the merged-tap row kernel (rowk)
        (h0, h1), (w0, w1) = SHAPES["medium"]
        g.update(H=draw(st.integers(h0, h1)), W=draw(st.integers(w0, w1)),
                 k=(draw(st.integers(1, 7)), draw(st.sampled_from([3, 5, 7]))))
        g["stride"] = (_pair(g["stride"])[0], draw(st.sampled_from([1, 2])))
        g["dilation"] = (_pair(g["dilation"])[0], 1)
    N = draw(BATCH)
    OH, OW = out_hw(g)
    base = N * OH * OW * g["k"][0] * g["k"][1]
    C = draw(st.sampled_from([c for c in (CHANNELS[:3] if first_layer else CHANNELS)
                              if _fits(N * g["H"] * g["W"] * c, base * c)] or [None]))
    assume(C is not None)
    groups = draw(st.sampled_from(_divisors(C)))
    kgs = [k for k in PER_GROUP if _fits(N * OH * OW * groups * k, base * C * k)]
    assume(kgs)
    g.update(N=N, C=C, groups=groups, K=groups * draw(st.sampled_from(kgs)))
    return g


@st.composite
def transpose_cases(draw):
    """conv_transpose2d: x (N, H, W, C_in), w (KH, KW, C_out // groups, C_in)."""
    g = draw(windows())
    N = draw(BATCH)
    s, d = _pair(g["stride"]), _pair(g["dilation"])
    g["output_padding"] = _pair_or_int(draw, draw(st.integers(0, max(s[0], d[0]))),
                                       draw(st.integers(0, max(s[1], d[1]))))
    op = _pair(g["output_padding"])
    crops = ref.conv_transpose_padding(g["padding"], (g["H"], g["W"]), g["k"], s, d)
    out = [(n - 1) * ss + (k - 1) * dd + 1 - lo - hi + o
           for n, k, ss, dd, (lo, hi), o in zip((g["H"], g["W"]), g["k"], s, d, crops, op)]
    OH, OW = max(out[0], 0), max(out[1], 0)
    canvas = N * ((g["H"] - 1) * s[0] + (g["k"][0] - 1) * d[0] + 1) * ((g["W"] - 1) * s[1] + (g["k"][1] - 1) * d[1] + 1)
    base = N * g["H"] * g["W"] * g["k"][0] * g["k"][1]
    C = draw(st.sampled_from([c for c in CHANNELS if _fits(N * g["H"] * g["W"] * c, base * c)] or [None]))
    assume(C is not None)
    groups = draw(st.sampled_from(_divisors(C)))
    kgs = [k for k in PER_GROUP if _fits(max(N * OH * OW, canvas) * groups * k, base * C * k)]
    assume(kgs)
    g.update(N=N, C=C, groups=groups, K=groups * draw(st.sampled_from(kgs)))
    return g


@st.composite
def depthwise_cases(draw):
    g = draw(windows())
    N = draw(BATCH)
    OH, OW = out_hw(g)
    base = N * OH * OW * g["k"][0] * g["k"][1]
    M = draw(st.sampled_from([1, 2, 3]))
    C = draw(st.sampled_from([c for c in CHANNELS if _fits(N * g["H"] * g["W"] * c, base * c * M, True)
                              and _fits(N * OH * OW * c * M, 0, True)] or [None]))
    assume(C is not None)
    g.update(N=N, C=C, M=M)
    return g


@st.composite
def pool_cases(draw):
    g = draw(windows(dilation=False))
    if draw(st.booleans()):  # Keras-like padding below the window, most of it valid
        g["padding"] = _pair_or_int(draw, draw(st.integers(0, (g["k"][0] - 1) // 2 + 1)),
                                    draw(st.integers(0, (g["k"][1] - 1) // 2 + 1)))
    if draw(st.booleans()):
        g["stride"] = None  # stride = pool_size
    gg = dict(g, stride=g["k"] if g["stride"] is None else g["stride"])
    N = draw(BATCH)
    OH, OW = out_hw(gg)
    base = N * max(OH * OW * g["k"][0] * g["k"][1], g["H"] * g["W"])
    C = draw(st.sampled_from([c for c in CHANNELS if _fits(N * g["H"] * g["W"] * c, base * c, True)] or [None]))
    assume(C is not None)
    g.update(N=N, C=C)
    return g


def values(rng, shape, dtype, kind, offset=0):
    """Random values; offset > 0 places the (C-contiguous) array that many elements past an
    allocation's start, so it is not vector-aligned (the op uses it without a copy)."""
    n = math.prod(shape)
    buf = np.empty(n + offset, dtype)
    a = buf[offset:].reshape(shape)
    a[...] = rng.integers(-3, 4, size=shape) if kind == "int" else rng.standard_normal(shape)
    return a


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------


def check(name, got, want, dtype, reduction, kind="normal", term=1.0):
    """got (fastconv, dtype) against want (reference in float64).

    reduction: the longest sum behind one output; term: the typical size of one summand.  With
    integer values a sum is exact in float32 while its partial sums stay below 2**24.
    """
    assert got is not None, name
    assert got.shape == want.shape, f"{name}: shape {got.shape}, reference {want.shape}"
    assert got.dtype == dtype, f"{name}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    if got.size == 0:
        return
    assert np.isfinite(got).all(), f"{name}: non-finite values in the output"
    eps = np.finfo(dtype).eps
    if kind == "int" and 9 * reduction < 2**24:
        atol, rtol = 0.0, 0.0
    else:
        atol, rtol = 4 * eps * (reduction + 4) * term, 16 * eps
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def _size(a):
    """A coarse size class of an output, for hypothesis' statistics (--hypothesis-show-statistics)."""
    n = a.size
    return "empty" if n == 0 else f"output < 10^{max(1, math.ceil(math.log10(n + 1)))}"


def f64(*arrays):
    return [None if a is None else a.astype(F64) for a in arrays]


def _kw(g, *names):
    return {n: g[n] for n in names}


# ---------------------------------------------------------------------------------------------
# conv2d, conv2d_grad
# ---------------------------------------------------------------------------------------------


@_examples(1.0)
@given(g=conv_cases(), m=machines(), dtype=DTYPES, kind=VALUES, bias=st.booleans(), need_dx=st.booleans(),
       seed=SEEDS)
def test_conv2d_wide(g, m, dtype, kind, bias, need_dx, seed):
    rng = np.random.default_rng(seed)
    kh, kw = g["k"]
    x = values(rng, (g["N"], g["H"], g["W"], g["C"]), dtype, kind, m[3])
    w = values(rng, (kh, kw, g["C"] // g["groups"], g["K"]), dtype, kind, m[3])
    b = values(rng, (g["K"],), dtype, kind, m[3]) if bias else None
    kw_ = _kw(g, "stride", "padding", "dilation", "groups")
    x0, w0 = x.copy(), w.copy()
    try:
        want = ref.conv2d(*f64(x, w, b), **kw_)
    except ValueError:
        event("invalid: ValueError expected")  # the kernel does not fit: fastconv must refuse too, forward and backward
        with machine(m):
            with pytest.raises(ValueError):
                fastconv.conv2d(x, w, b, **kw_)
            with pytest.raises(ValueError):
                fastconv.conv2d_grad(np.zeros((g["N"], 1, 1, g["K"]), dtype), x, w, **kw_)
        return
    event(f"valid, {_size(want)}")
    with machine(m):
        y = fastconv.conv2d(x, w, b, **kw_)
    event(f"conv2d kernel: {_dispatch.last_kernel.get('conv2d')}")
    check("y", y, want, dtype, kh * kw * g["C"] // g["groups"] + 1, kind)
    dy = values(rng, want.shape, dtype, kind, m[3])
    rdx, rdw, rdb = ref.conv2d_grad(*f64(dy, x, w), **kw_)
    with machine(m):
        dx, dw, db = fastconv.conv2d_grad(dy, x, w, need_dx=need_dx, **kw_)
    if need_dx:
        event(f"conv2d_grad dx kernel: {_dispatch.last_kernel.get('conv2d_grad')}")
    if need_dx:
        check("dx", dx, rdx, dtype, kh * kw * g["K"] // g["groups"], kind)
    else:
        assert dx is None
    pixels = max(1, want.shape[0] * want.shape[1] * want.shape[2])
    check("dw", dw, rdw, dtype, pixels, kind)
    check("db", db, rdb, dtype, pixels, kind)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


# ---------------------------------------------------------------------------------------------
# conv_transpose2d, conv_transpose2d_grad
# ---------------------------------------------------------------------------------------------


@_examples(1.0)
@given(g=transpose_cases(), m=machines(), dtype=DTYPES, kind=VALUES, bias=st.booleans(), seed=SEEDS)
def test_conv_transpose2d_wide(g, m, dtype, kind, bias, seed):
    rng = np.random.default_rng(seed)
    kh, kw = g["k"]
    x = values(rng, (g["N"], g["H"], g["W"], g["C"]), dtype, kind, m[3])
    w = values(rng, (kh, kw, g["K"] // g["groups"], g["C"]), dtype, kind, m[3])
    b = values(rng, (g["K"],), dtype, kind, m[3]) if bias else None
    kw_ = _kw(g, "stride", "padding", "output_padding", "dilation", "groups")
    try:
        want = ref.conv_transpose2d(*f64(x, w, b), **kw_)
    except ValueError:
        event("invalid: ValueError expected")
        with machine(m):
            with pytest.raises(ValueError):
                fastconv.conv_transpose2d(x, w, b, **kw_)
            with pytest.raises(ValueError):
                fastconv.conv_transpose2d_grad(np.zeros((g["N"], 1, 1, g["K"]), dtype), x, w, **kw_)
        return
    event(f"valid, {_size(want)}")
    with machine(m):
        y = fastconv.conv_transpose2d(x, w, b, **kw_)
    check("y", y, want, dtype, kh * kw * g["C"] // g["groups"] + 1, kind)
    dy = values(rng, want.shape, dtype, kind, m[3])
    rdx, rdw, rdb = ref.conv_transpose2d_grad(*f64(dy, x, w), **kw_)
    with machine(m):
        dx, dw, db = fastconv.conv_transpose2d_grad(dy, x, w, **kw_)
    check("dx", dx, rdx, dtype, kh * kw * g["K"] // g["groups"], kind)
    check("dw", dw, rdw, dtype, max(1, g["N"] * g["H"] * g["W"]), kind)
    check("db", db, rdb, dtype, max(1, want.shape[0] * want.shape[1] * want.shape[2]), kind)


# ---------------------------------------------------------------------------------------------
# depthwise_conv2d, depthwise_conv2d_grad
# ---------------------------------------------------------------------------------------------


@_examples(1.0)
@given(g=depthwise_cases(), m=machines(), dtype=DTYPES, kind=VALUES, bias=st.booleans(), need_dx=st.booleans(),
       seed=SEEDS)
def test_depthwise_conv2d_wide(g, m, dtype, kind, bias, need_dx, seed):
    rng = np.random.default_rng(seed)
    kh, kw = g["k"]
    x = values(rng, (g["N"], g["H"], g["W"], g["C"]), dtype, kind, m[3])
    w = values(rng, (kh, kw, g["C"], g["M"]), dtype, kind, m[3])
    b = values(rng, (g["C"] * g["M"],), dtype, kind, m[3]) if bias else None
    kw_ = _kw(g, "stride", "padding", "dilation")
    try:
        want = ref.depthwise_conv2d(*f64(x, w, b), **kw_)
    except ValueError:
        event("invalid: ValueError expected")
        with machine(m):
            with pytest.raises(ValueError):
                fastconv.depthwise_conv2d(x, w, b, **kw_)
            with pytest.raises(ValueError):
                fastconv.depthwise_conv2d_grad(np.zeros((g["N"], 1, 1, g["C"] * g["M"]), dtype), x, w, **kw_)
        return
    event(f"valid, {_size(want)}")
    with machine(m):
        y = fastconv.depthwise_conv2d(x, w, b, **kw_)
    check("y", y, want, dtype, kh * kw + 1, kind)
    dy = values(rng, want.shape, dtype, kind, m[3])
    rdx, rdw, rdb = ref.depthwise_conv2d_grad(*f64(dy, x, w), **kw_)
    with machine(m):
        dx, dw, db = fastconv.depthwise_conv2d_grad(dy, x, w, need_dx=need_dx, **kw_)
    if need_dx:
        check("dx", dx, rdx, dtype, kh * kw * g["M"], kind)
    else:
        assert dx is None
    pixels = max(1, want.shape[0] * want.shape[1] * want.shape[2])
    check("dw", dw, rdw, dtype, pixels, kind)
    check("db", db, rdb, dtype, pixels, kind)


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------


def _overlap(g):
    """How many windows can cover one input pixel (the length of a sum in a pooling gradient)."""
    s = _pair(g["k"] if g["stride"] is None else g["stride"])
    return math.ceil(g["k"][0] / s[0]) * math.ceil(g["k"][1] / s[1])


@_examples(1.0)
@given(g=pool_cases(), m=machines(), dtype=DTYPES, kind=VALUES, seed=SEEDS)
def test_max_pool2d_wide(g, m, dtype, kind, seed):
    rng = np.random.default_rng(seed)
    x = values(rng, (g["N"], g["H"], g["W"], g["C"]), dtype, kind, m[3])  # "int": many ties
    kw_ = dict(pool_size=g["k"], stride=g["stride"], padding=g["padding"])
    try:
        want = ref.max_pool2d(x.astype(F64), **kw_)
    except ValueError:
        event("invalid: ValueError expected")
        with machine(m):
            with pytest.raises(ValueError):
                fastconv.max_pool2d(x, **kw_)
            with pytest.raises(ValueError):
                fastconv.max_pool2d_grad(np.zeros((g["N"], 1, 1, g["C"]), dtype), x, **kw_)
        return
    event(f"valid, {_size(want)}")
    with machine(m):
        y, am = fastconv.max_pool2d(x, return_argmax=True, **kw_)
    check("y", y, want, dtype, 0, "int")  # a maximum is exact
    dy = values(rng, want.shape, dtype, kind, m[3])
    rdx = ref.max_pool2d_grad(dy.astype(F64), x.astype(F64), **kw_)
    with machine(m):
        dx = fastconv.max_pool2d_grad(dy, x, **kw_)
        dx_am = fastconv.max_pool2d_grad(dy, x, argmax=am, **kw_)
    check("dx", dx, rdx, dtype, _overlap(g), kind)
    check("dx(argmax)", dx_am, rdx, dtype, _overlap(g), kind)


@_examples(1.0)
@given(g=pool_cases(), m=machines(), dtype=DTYPES, kind=VALUES, include=st.booleans(), seed=SEEDS)
def test_avg_pool2d_wide(g, m, dtype, kind, include, seed):
    rng = np.random.default_rng(seed)
    x = values(rng, (g["N"], g["H"], g["W"], g["C"]), dtype, kind, m[3])
    kw_ = dict(pool_size=g["k"], stride=g["stride"], padding=g["padding"], count_include_pad=include)
    try:
        want = ref.avg_pool2d(x.astype(F64), **kw_)
    except ValueError:
        event("invalid: ValueError expected")
        with machine(m):
            with pytest.raises(ValueError):
                fastconv.avg_pool2d(x, **kw_)
            with pytest.raises(ValueError):
                fastconv.avg_pool2d_grad(np.zeros((g["N"], 1, 1, g["C"]), dtype), x, **kw_)
        return
    event(f"valid, {_size(want)}")
    with machine(m):
        y = fastconv.avg_pool2d(x, **kw_)
    # a mean of k values: k roundings of terms of size ~1/k, plus the division
    check("y", y, want, dtype, g["k"][0] * g["k"][1] + 4, "normal", term=1.0 / (g["k"][0] * g["k"][1]) + 0.5)
    dy = values(rng, want.shape, dtype, kind, m[3])
    rdx = ref.avg_pool2d_grad(dy.astype(F64), x.astype(F64), **kw_)
    with machine(m):
        dx = fastconv.avg_pool2d_grad(dy, x, **kw_)
    check("dx", dx, rdx, dtype, _overlap(g) + 4, "normal")


@_examples(0.7)
@given(N=BATCH, shape=st.sampled_from(list(SHAPES)), data=st.data(), m=machines(), dtype=DTYPES,
       kind=VALUES, seed=SEEDS)
def test_global_avg_pool2d_wide(N, shape, data, m, dtype, kind, seed):
    (h0, h1), (w0, w1) = SHAPES[shape]
    H, W = data.draw(st.integers(h0, h1), "H"), data.draw(st.integers(w0, w1), "W")
    if data.draw(st.integers(0, 9), "no pixels") == 0:
        H = 0
    C = data.draw(st.sampled_from([c for c in CHANNELS if _fits(N * H * W * c, 0, True)] or [None]), "C")
    assume(C is not None)
    rng = np.random.default_rng(seed)
    x = values(rng, (N, H, W, C), dtype, kind, m[3])
    try:
        want = ref.global_avg_pool2d(x.astype(F64))
    except ValueError:
        event("invalid: ValueError expected")
        with machine(m):
            with pytest.raises(ValueError):
                fastconv.global_avg_pool2d(x)
            with pytest.raises(ValueError):
                fastconv.global_avg_pool2d_grad(np.zeros((N, C), dtype), x)
        return
    with machine(m):
        y = fastconv.global_avg_pool2d(x)
    check("y", y, want, dtype, H * W + 4, "normal", term=1.0 / (H * W) + 0.01)
    dy = values(rng, want.shape, dtype, kind, m[3])
    with machine(m):
        dx = fastconv.global_avg_pool2d_grad(dy, x)
    check("dx", dx, ref.global_avg_pool2d_grad(dy.astype(F64), x.astype(F64)), dtype, 4, "normal")


# ---------------------------------------------------------------------------------------------
# dense
# ---------------------------------------------------------------------------------------------

WIDE_FEATURES = CHANNELS + [127, 128, 129, 255, 257, 511, 1000, 1031]


@_examples(0.7)
@given(N=st.one_of(st.integers(1, 5000), st.just(0)), C=st.sampled_from(WIDE_FEATURES),
       K=st.sampled_from(WIDE_FEATURES), m=machines(), dtype=DTYPES, kind=VALUES, bias=st.booleans(),
       need_dx=st.booleans(), seed=SEEDS)
def test_dense_wide(N, C, K, m, dtype, kind, bias, need_dx, seed):
    assume(_fits(max(N * C, N * K, C * K), N * C * K))
    rng = np.random.default_rng(seed)
    x, w = values(rng, (N, C), dtype, kind, m[3]), values(rng, (C, K), dtype, kind, m[3])
    b = values(rng, (K,), dtype, kind, m[3]) if bias else None
    with machine(m):
        y = fastconv.ops.dense(x, w, b)
    want = x.astype(F64) @ w.astype(F64) + (0 if b is None else b.astype(F64))
    check("y", y, want, dtype, C + 1, kind)
    dy = values(rng, (N, K), dtype, kind, m[3])
    with machine(m):
        dx, dw, db = fastconv.ops.dense_grad(dy, x, w, need_dx=need_dx)
    # dense is conv2d on 1x1 images: the reference is conv2d_grad on that view
    rdx, rdw, rdb = ref.conv2d_grad(*f64(dy.reshape(N, 1, 1, K), x.reshape(N, 1, 1, C), w.reshape(1, 1, C, K)))
    if need_dx:
        check("dx", dx, rdx.reshape(N, C), dtype, K, kind)
    else:
        assert dx is None
    check("dw", dw, rdw.reshape(C, K), dtype, max(N, 1), kind)
    check("db", db, rdb, dtype, max(N, 1), kind)


# ---------------------------------------------------------------------------------------------
# BatchNormalization (no functional form: the layer's training forward / backward)
# ---------------------------------------------------------------------------------------------


@_examples(0.7)
@given(N=st.integers(1, 3), shape=st.sampled_from(list(SHAPES) + ["flat"]), data=st.data(), m=machines(),
       dtype=DTYPES, loc=st.sampled_from([0.0, 3.0, -40.0]), scale=st.sampled_from([1.0, 0.1, 10.0]),
       seed=SEEDS)
def test_batch_norm_wide(N, shape, data, m, dtype, loc, scale, seed):
    if shape == "flat":
        dims = (data.draw(st.integers(1, 5000), "rows"),)
    else:
        (h0, h1), (w0, w1) = SHAPES[shape]
        dims = (data.draw(st.integers(h0, h1), "H"), data.draw(st.integers(w0, w1), "W"))
    C = data.draw(st.sampled_from([c for c in CHANNELS if _fits(N * math.prod(dims) * c)] or [None]), "C")
    assume(C is not None)
    xs = (N, *dims, C)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(xs) * scale + loc).astype(dtype)
    dy = rng.standard_normal(xs).astype(dtype)
    bn = L.BatchNormalization(dtype=dtype)
    bn.build(xs[1:])
    bn.params["gamma"][:] = rng.uniform(0.5, 2.0, C)
    bn.params["beta"][:] = rng.standard_normal(C)
    gamma, beta = bn.params["gamma"].astype(F64), bn.params["beta"].astype(F64)
    with machine(m):
        y = bn.forward(x, training=True)
        dx = bn.backward(dy)
    want, _, var = ref.batch_norm_train(x.astype(F64), gamma, beta, bn.epsilon)
    rdx, rdgamma, rdbeta = ref.batch_norm_train_grad(dy.astype(F64), x.astype(F64), gamma, bn.epsilon)
    rows = N * math.prod(dims)
    # x's rounding is the reference's input too; what the kernels lose is (x - mean) relative to
    # the spread, i.e. eps * |loc| / scale, and float32 sums of `rows` terms
    cond = 1.0 + abs(loc) / scale
    check("y", y, want, dtype, 16 * cond, "normal", term=1 + float(np.abs(want).max()))
    # dx = p * (dy - mean(dy) - xhat * mean(dy * xhat)), p = gamma / std: terms of size |p * dy|,
    # which cancel exactly for a single row (dx = 0)
    p = float(np.max(np.abs(gamma) / np.sqrt(var + bn.epsilon)))
    check("dx", dx, rdx, dtype, 16 * cond, "normal", term=1 + 3 * p * float(np.abs(dy).max()))
    check("dgamma", bn.grads["gamma"], rdgamma.astype(bn.grads["gamma"].dtype), bn.grads["gamma"].dtype,
          rows * cond, "normal")
    check("dbeta", bn.grads["beta"], rdbeta.astype(bn.grads["beta"].dtype), bn.grads["beta"].dtype, rows, "normal")


# ---------------------------------------------------------------------------------------------
# invalid arguments: a clean ValueError / TypeError, never a crash or a result
# ---------------------------------------------------------------------------------------------

_BAD = {
    "stride": [0, -1, (1, 0), 1.5, (2, 2, 2), "2", True],
    "dilation": [0, -2, (0, 1), 2.5],
    "padding": [-1, (1, -1), ((1, 1), (1, -1)), "full", ((1,), (1, 1)), 1.5, (1, 2, 3)],
    "groups": [0, -1, 3, 2.0, True],
    "pool_size": [0, -1, (2, 0), 1.5],
    "output_padding": [-1, 5, (0, 7)],
    "x": ["rank3", "complex", "object", "strings", "channels"],
    "dy": ["shape"],
}


@_examples(1.0)
@given(op=st.sampled_from(["conv2d", "depthwise_conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d"]),
       grad=st.booleans(), data=st.data())
def test_invalid_arguments_raise(op, grad, data):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 9, 4)).astype(np.float32)
    kw_, args = {"stride": 2, "padding": 1}, []
    if op in ("conv2d", "conv_transpose2d"):
        kw_.update(groups=2, dilation=1)
        args = [rng.standard_normal((3, 3, 2, 4)).astype(np.float32)]
        if op == "conv_transpose2d":
            kw_["output_padding"] = 1
    elif op == "depthwise_conv2d":
        kw_["dilation"] = 1
        args = [rng.standard_normal((3, 3, 4, 2)).astype(np.float32)]
    else:
        kw_["pool_size"] = 3
    fwd, bwd = getattr(fastconv, op), getattr(fastconv, op + "_grad")
    dy = np.ones(fwd(x, *args, **kw_).shape, np.float32)
    names = [n for n in _BAD if n in kw_ or n == "x" or (n == "dy" and grad)]
    name = data.draw(st.sampled_from(names), "argument")
    bad = data.draw(st.sampled_from(_BAD[name]), "value")
    if name == "x":
        assume(bad != "channels" or args)  # pooling takes any channel count
        x = {"rank3": x[0], "complex": x.astype(np.complex64), "object": x.astype(object),
             "strings": x.astype(str), "channels": x[..., :3]}[bad]
    elif name == "dy":
        dy = dy[:, :-1]
    else:
        kw_[name] = bad
    with pytest.raises((ValueError, TypeError)):
        if grad:
            bwd(dy, x, *args, **kw_)
        else:
            fwd(x, *args, **kw_)


# ---------------------------------------------------------------------------------------------
# huge geometry on tiny tensors: stride, dilation and padding near 2**31
# ---------------------------------------------------------------------------------------------

_INT32 = [1, 2, 3, 2**16, 2**30 - 1, 2**30, 2**30 + 1, 2**31 - 4, 2**31 - 3, 2**31 - 2, 2**31 - 1]
_PAST_INT32 = [2**31, 2**31 + 1, 2**32 + 1]


def _direct_conv(x, w, s, d, pads):
    """conv2d by one Python-int index per output pixel and tap (no padded copy: any padding works)."""
    N, H, W, _ = x.shape
    KH, KW, _, K = w.shape
    (t, b), (l, r) = pads
    OH = (H + t + b - (KH - 1) * d[0] - 1) // s[0] + 1
    OW = (W + l + r - (KW - 1) * d[1] - 1) // s[1] + 1
    if OH < 1 or OW < 1:
        return None
    y = np.zeros((N, OH, OW, K))
    for oy, ox, kh, kw in np.ndindex(OH, OW, KH, KW):
        iy, ix = oy * s[0] - t + kh * d[0], ox * s[1] - l + kw * d[1]
        if 0 <= iy < H and 0 <= ix < W:
            y[:, oy, ox] += x[:, iy, ix] @ w[kh, kw]
    return y


@st.composite
def huge_cases(draw, past_int32):
    """At least one of stride, dilation, padding past 2**31 - 1 when past_int32, else all below."""
    big = st.sampled_from(_INT32 + _PAST_INT32) if past_int32 else st.sampled_from(_INT32)
    _HUGE, _HUGE_OR_ZERO = big, st.one_of(st.just(0), big)
    g = dict(H=draw(st.integers(1, 4)), W=draw(st.integers(1, 4)),
             k=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
             stride=(draw(_HUGE), draw(_HUGE)), dilation=(draw(_HUGE), draw(_HUGE)),
             padding=((draw(_HUGE_OR_ZERO), draw(_HUGE_OR_ZERO)), (draw(_HUGE_OR_ZERO), draw(_HUGE_OR_ZERO))))
    OH, OW = out_hw(g)
    assume(OH * OW <= 64)  # only the output is allocated: the padding is never materialised
    flat = [*g["stride"], *g["dilation"], *g["padding"][0], *g["padding"][1]]
    assume((max(flat) >= 2**31) == past_int32)
    return g


@pytest.mark.skipif(not os.environ.get("FASTCONV_HUGE_CHILD"),
                    reason="runs in a child process: test_huge_geometry_in_a_child_process")
@pytest.mark.parametrize("past_int32", [False, True])
@_examples(0.3)
@given(data=st.data(), op=st.sampled_from(["conv2d", "depthwise_conv2d"]), seed=SEEDS)
def test_huge_geometry(past_int32, data, op, seed):
    """Tiny tensors whose stride, dilation or padding is near or past 2**31: the right answer, or a
    ValueError (a documented limit); never an OverflowError, a MemoryError or a crash."""
    g = data.draw(huge_cases(past_int32), "geometry")
    rng = np.random.default_rng(seed)
    C = 2 if op == "conv2d" else 1  # depthwise with one channel is conv2d
    x = rng.integers(-3, 4, (1, g["H"], g["W"], C)).astype(np.float32)
    w = rng.integers(-3, 4, (*g["k"], C, 2 if op == "conv2d" else 1)).astype(np.float32)
    pads = g["padding"]
    want = _direct_conv(x.astype(F64), w.astype(F64), g["stride"], g["dilation"], pads)
    print(f"{op}(x.shape={x.shape}, w.shape={w.shape}, stride={g['stride']}, dilation={g['dilation']}, "
          f"padding={pads})", file=sys.stderr, flush=True)  # the last line before a crash
    try:
        y = getattr(fastconv, op)(x, w, stride=g["stride"], dilation=g["dilation"], padding=pads)
    except ValueError:
        return
    assert want is not None, "a result where the kernel does not fit"
    check("y", y, want, np.float32, 0, "int")


@pytest.mark.parametrize("past_int32", [False, True])
def test_huge_geometry_in_a_child_process(past_int32):
    """test_huge_geometry in a child process, so that a crash fails this test, not the whole run;
    the child's last stderr line names the call that crashed it."""
    # the child imports the fastconv this process imported (installed, or an in-place build), and
    # starts outside the source tree, whose unbuilt fastconv/ would shadow an installed package
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env = dict(os.environ, FASTCONV_HUGE_CHILD="1",
               PYTHONPATH=package_parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
           f"{__file__}::test_huge_geometry[{past_int32}]"]
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)
    out = [ln for ln in r.stdout.splitlines() if not ln.startswith(("conv2d(", "depthwise_conv2d("))]
    last = (r.stderr.strip().splitlines() or [""])[-1]
    assert r.returncode == 0, (f"child exit code {r.returncode}; its last call: {last}\n"
                               + "\n".join(out[-40:]))
