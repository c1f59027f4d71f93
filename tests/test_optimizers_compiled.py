"""The compiled optimizer step (fastconv/optimizers/_compiled.py, src/optim.pyx, src/optim_impl.h)
against the NumPy per-weight update it replaces (the reference, ``_compiled = False``): every
optimizer and option, weight decay with exclusions, every clipping, float32 and float64, 1 and 2
threads, NaN and inf gradients, slot save/restore, and the cases that must fall back to NumPy."""

import numpy as np
import pytest

from fastconv import _dispatch
from fastconv import optimizers as O
from fastconv.optimizers import _compiled

SHAPES = [(3, 3, 2, 5), (5,), (_compiled.PARALLEL_MIN + 37,), (7, 11), (1,)]  # past PARALLEL_MIN: 2 threads

CASES = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {}),
    ("Adagrad", {}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adamax", {}),
    ("Nadam", {}),
]
EXTRAS = [{}, {"weight_decay": 0.1}, {"clipnorm": 0.5}, {"global_clipnorm": 0.7}, {"clipvalue": 0.01}]


def _pairs(ws, gs):
    return [(f"layer{i}/w", w, g) for i, (w, g) in enumerate(zip(ws, gs))]


def _run(name, kw, dtype, steps=3, compiled=True, grads=None, seed=0, excl=True):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    opt = getattr(O, name)(**kw)
    opt._compiled = compiled
    if excl and kw.get("weight_decay"):
        opt.exclude_from_weight_decay(var_names=["layer1/"])
    for t in range(steps):
        gs = grads[t] if grads is not None else [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        opt.apply(_pairs(ws, gs))
    return ws, opt


def _tol(dtype, kw):
    if dtype == np.float32:
        return 2e-6
    return 1e-10 if ("clipnorm" in kw or "global_clipnorm" in kw) else 1e-14


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", CASES)
def test_compiled_matches_numpy_reference(name, kw, dtype):
    for extra in EXTRAS:
        args = {**kw, **extra}
        a, oa = _run(name, args, dtype)
        b, ob = _run(name, args, dtype, compiled=False)
        assert oa._layout is not None, "the compiled step did not run"
        assert ob._layout is None
        tol = _tol(dtype, args)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol * 1e-3, err_msg=f"{name} {args}")
        # the slots too (what a saved model resumes from)
        (ma, sa), (mb, sb) = oa.get_state(), ob.get_state()
        assert ma == mb
        for x, y in zip(sa, sb):
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol * 1e-3)
        assert oa.iterations == ob.iterations == 3


def test_float64_without_clipnorm_is_bit_identical():
    """Same arithmetic in the same order: without a norm (whose sum order differs) the float64 and
    float32 steps equal NumPy's bit for bit on x86-64 (no FMA contraction in a baseline build)."""
    for name, kw in CASES:
        for dtype in (np.float64, np.float32):
            a, _ = _run(name, {**kw, "weight_decay": 0.05, "clipvalue": 0.5}, dtype)
            b, _ = _run(name, {**kw, "weight_decay": 0.05, "clipvalue": 0.5}, dtype, compiled=False)
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_do_not_change_the_result(threads):
    old = _dispatch.get_num_threads()
    try:
        _dispatch.set_num_threads(threads)
        a, _ = _run("Adam", {"clipnorm": 0.3, "weight_decay": 0.01}, np.float32, steps=2)
        _dispatch.set_num_threads(1)
        b, _ = _run("Adam", {"clipnorm": 0.3, "weight_decay": 0.01}, np.float32, steps=2)
    finally:
        _dispatch.set_num_threads(old)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name,kw", CASES)
def test_nan_and_inf_gradients_propagate_like_numpy(name, kw):
    rng = np.random.default_rng(3)
    grads = []
    for _ in range(2):
        gs = [rng.standard_normal(s) for s in SHAPES]
        gs[0].flat[[0, 5]] = [np.nan, np.inf]
        gs[2].flat[[1, _compiled.CHUNK + 3]] = [-np.inf, np.nan]
        grads.append(gs)
    for extra in ({}, {"clipvalue": 0.1}, {"clipnorm": 1.0}, {"global_clipnorm": 1.0}):
        with np.errstate(all="ignore"):
            a, _ = _run(name, {**kw, **extra}, np.float64, steps=2, grads=grads)
            b, _ = _run(name, {**kw, **extra}, np.float64, steps=2, grads=grads, compiled=False)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
            np.testing.assert_allclose(x, y, rtol=1e-10, equal_nan=True)


def test_layout_is_cached_and_rebuilt_when_the_weights_change():
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal(s) for s in SHAPES]
    gs = [rng.standard_normal(s) for s in SHAPES]
    opt = O.Adam(weight_decay=0.1)
    ref = O.Adam(weight_decay=0.1)
    ref._compiled = False
    wr = [w.copy() for w in ws]
    opt.apply(_pairs(ws, gs))
    ref.apply(_pairs(wr, gs))
    lay = opt._layout
    opt.apply(_pairs(ws, gs))
    ref.apply(_pairs(wr, gs))
    assert opt._layout is lay  # same arrays: the tables are reused
    # a frozen weight leaves the pairs; exclusions change: rebuilt, and still the reference
    for o in (opt, ref):
        o.exclude_from_weight_decay(var_names=["layer3"])
    opt.apply(_pairs(ws, gs)[1:])
    ref.apply(_pairs(wr, gs)[1:])
    assert opt._layout is not lay
    # a new gradient array (same key): rebuilt
    gs2 = [g * 0.5 for g in gs]
    opt.apply(_pairs(ws, gs2))
    ref.apply(_pairs(wr, gs2))
    for x, y in zip(ws, wr):
        np.testing.assert_allclose(x, y, rtol=1e-14)


def test_state_restore_then_compiled_steps_resume():
    a, oa = _run("Nadam", {}, np.float64, steps=2)
    meta, arrays = oa.get_state()
    ob = O.Nadam()
    ob.set_state(meta, [x.copy() for x in arrays])
    oc = O.Nadam()
    oc._compiled = False
    oc.set_state(meta, [x.copy() for x in arrays])
    b, c = [w.copy() for w in a], [w.copy() for w in a]
    rng = np.random.default_rng(9)
    for _ in range(2):
        gs = [rng.standard_normal(s) for s in SHAPES]
        ob.apply(_pairs(b, gs))
        oc.apply(_pairs(c, gs))
    assert ob._layout is not None
    for x, y in zip(b, c):
        np.testing.assert_allclose(x, y, rtol=1e-14)
    assert ob._u_product == oc._u_product


def _fallback_case(make):
    rng = np.random.default_rng(1)
    pairs_a, pairs_b, opt_a, opt_b = make(rng)
    opt_b._compiled = False
    for _ in range(2):
        opt_a.apply(pairs_a)
        opt_b.apply(pairs_b)
    assert opt_a._layout is None, "expected the NumPy path"
    for (_, x, _), (_, y, _) in zip(pairs_a, pairs_b):
        np.testing.assert_array_equal(x, y)


def test_falls_back_for_non_contiguous_mixed_dtype_and_aliased_weights():
    def strided(rng):
        base = rng.standard_normal((6, 8))
        g = rng.standard_normal((6, 4))
        a, b = base.copy(), base.copy()
        return [("w", a[:, ::2], g)], [("w", b[:, ::2], g)], O.Adam(), O.Adam()

    def mixed(rng):
        w32, w64 = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5)
        g32, g64 = np.ones(5, np.float32), np.ones(5)
        a = [("a", w32.copy(), g32), ("b", w64.copy(), g64)]
        b = [("a", w32.copy(), g32), ("b", w64.copy(), g64)]
        return a, b, O.SGD(momentum=0.9), O.SGD(momentum=0.9)

    def aliased(rng):  # one weight passed twice: updated twice, as the NumPy loop does
        w, g = rng.standard_normal(7), rng.standard_normal(7)
        a, b = w.copy(), w.copy()
        return [("x", a, g), ("y", a, g)], [("x", b, g), ("y", b, g)], O.SGD(), O.SGD()

    def grad_is_param(rng):  # a gradient aliasing a written array
        w = rng.standard_normal(7)
        a, b = w.copy(), w.copy()
        return [("x", a, a)], [("x", b, b)], O.SGD(), O.SGD()

    for make in (strided, mixed, aliased, grad_is_param):
        _fallback_case(make)


def test_subclass_overriding_the_update_keeps_its_own():
    class Halving(O.SGD):
        def _update(self, key, param, grad, lr):
            param *= 0.5

    w = np.ones(4)
    opt = Halving()
    opt.apply([("w", w, np.ones(4))])
    np.testing.assert_array_equal(w, 0.5)
    assert opt._layout is None
    opt = O.SGD()
    opt._update = lambda key, param, grad, lr: param.__imul__(0.25)  # replaced on the instance
    opt.apply([("w", w, np.ones(4))])
    np.testing.assert_array_equal(w, 0.125)
    assert opt._layout is None


def test_training_a_model_matches_the_reference_step():
    import fastconv
    from fastconv import layers as L

    def train(compiled):
        fastconv.initializers.set_seed(4)
        model = fastconv.Sequential([L.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 2), dtype="float64"),
                                     L.Flatten(dtype="float64"), L.Dense(4, dtype="float64")])
        opt = O.Adam(learning_rate=0.01, clipnorm=1.0)
        opt._compiled = compiled
        model.compile(opt, "mse")
        rng = np.random.default_rng(0)
        x, y = rng.random((10, 6, 6, 2)), rng.random((10, 4))
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
        model.layers[0].trainable = False  # frozen: fewer pairs, the layout follows
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        return model.get_weights(), opt

    a, oa = train(True)
    b, _ = train(False)
    assert oa._layout is not None
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-14)
