"""BatchNormalization's compiled kernels (fastconv._kernels.norm) and the layer on top: against the
NumPy reference (fastconv.reference.batch_norm_train*), finite differences in float64, training,
inference and frozen modes, moving statistics, every SIMD path, 1 vs 2 threads, odd channel counts,
batch 1, large means, empty batches, fused ReLU / ReLU6 and fully written outputs."""
import numpy as np
import pytest
from gradcheck import numeric_grad

from fastconv import _dispatch
from fastconv import layers as L
from fastconv import reference as ref
from fastconv._kernels import norm as _kn


def _nc(a, reduce):
    """Chunks of the norm plan for a kernel call on a ((M, C) or flat) array."""
    from fastconv.ops._plan import norm_plan

    rows, cols = (a.shape[0], a.shape[1]) if a.ndim == 2 else (a.size, 1)
    return norm_plan(rows, cols, reduce, 1).nchunks

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
F64 = np.float64
# channel counts around every vector width (4, 8, 16 floats; 2 doubles), a prime and a small one
CHANNELS = [1, 3, 7, 8, 9, 16, 17, 24, 33]


@pytest.fixture
def simd():
    yield _dispatch.set_simd
    _dispatch.set_simd(None)


def _bn(shape, dtype, rng, **kw):
    bn = L.BatchNormalization(dtype=dtype, **kw)
    bn.build(shape[1:])
    if bn.scale:
        bn.params["gamma"][:] = rng.uniform(0.5, 2.0, shape[-1])
    if bn.center:
        bn.params["beta"][:] = rng.standard_normal(shape[-1])
    return bn


def _tol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-11


def _close(got, want, dtype, scale=None):
    scale = 1.0 + float(np.abs(want).max(initial=0.0)) if scale is None else scale
    np.testing.assert_allclose(got, want, rtol=0, atol=_tol(dtype) * scale)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", CHANNELS)
def test_training_forward_backward_match_reference(level, dtype, c, simd):
    simd(level)
    rng = np.random.default_rng(c)
    shape = (3, 5, 4, c)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    bn = _bn(shape, dtype, rng)
    gamma, beta = bn.params["gamma"].astype(F64), bn.params["beta"].astype(F64)
    y = bn.forward(x, training=True)
    assert _dispatch.last_used["batch_norm_train"] == (level if dtype == np.float32 else "generic")
    assert _dispatch.last_kernel["batch_norm_train"] == "stats+affine"
    y_ref, mean, var = ref.batch_norm_train(x.astype(F64), gamma, beta, bn.epsilon)
    assert y.dtype == dtype and y.shape == shape
    _close(y, y_ref, dtype)
    dx = bn.backward(dy)
    assert _dispatch.last_kernel["batch_norm_train_grad"] == "dsums+dx"
    dx_ref, dgamma, dbeta = ref.batch_norm_train_grad(dy.astype(F64), x.astype(F64), gamma, bn.epsilon)
    _close(dx, dx_ref, dtype)
    _close(bn.grads["gamma"], dgamma, dtype)
    _close(bn.grads["beta"], dbeta, dtype)


@pytest.mark.parametrize("kw", [{}, {"scale": False}, {"center": False}, {"scale": False, "center": False}])
@pytest.mark.parametrize("shape", [(4, 3, 3, 5), (6, 3), (1, 2, 2, 3)])
def test_training_gradients_by_finite_differences(kw, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 1.5 + 0.3
    w = rng.standard_normal(shape)  # loss = sum(w * y)
    bn = _bn(shape, F64, rng, **kw)
    moving = {k: v.copy() for k, v in bn.state.items()}

    def loss():
        out = float((w * bn.forward(x, training=True)).sum())
        for k, v in moving.items():  # the moving statistics do not enter the loss
            bn.state[k][...] = v
        return out

    loss()
    dx = bn.backward(w)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    for name in bn.params:
        loss()
        bn.backward(w)
        g = bn.grads[name].copy()
        np.testing.assert_allclose(g, numeric_grad(loss, bn.params[name]), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("act, fn", [("relu", lambda t: np.maximum(t, 0)), ("relu6", lambda t: np.clip(t, 0, 6))])
@pytest.mark.parametrize("level", LEVELS)
def test_fused_activation_matches_separate_layers(act, fn, level, simd):
    simd(level)
    rng = np.random.default_rng(3)
    shape = (2, 6, 5, 19)
    x = rng.standard_normal(shape).astype(np.float32) * 4
    dy = rng.standard_normal(shape).astype(np.float32)
    plain, fused = _bn(shape, np.float32, rng), _bn(shape, np.float32, rng)
    fused.set_weights(plain.get_weights())
    actl = L.Activation(act)
    for training in (True, False):
        y_sep = actl.forward(plain.forward(x, training=training), training=training)
        y_fused = fused.forward(x, training=training, epilogue=act)
        np.testing.assert_allclose(y_fused, y_sep, rtol=0, atol=1e-5)
        if training:
            dx_sep = plain.backward(actl.backward(dy))
            dx_fused = fused.backward(dy)
            np.testing.assert_allclose(dx_fused, dx_sep, rtol=0, atol=1e-5)
            for k in plain.grads:
                np.testing.assert_allclose(fused.grads[k], plain.grads[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.state["moving_mean"], plain.state["moving_mean"], rtol=1e-6)


def test_fused_activation_gradients_by_finite_differences():
    rng = np.random.default_rng(4)
    shape = (3, 4, 4, 5)
    x = rng.standard_normal(shape) * 2
    w = rng.standard_normal(shape)
    for act in ("relu", "relu6"):
        bn = _bn(shape, F64, rng)
        bn.params["gamma"][:] *= 4  # some outputs above 6
        state = {k: v.copy() for k, v in bn.state.items()}

        def loss(act=act, bn=bn):
            out = float((w * bn.forward(x, training=True, epilogue=act)).sum())
            for k, v in state.items():
                bn.state[k][...] = v
            return out

        loss()
        dx = bn.backward(w)
        np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)


def test_moving_statistics_and_inference_mode():
    rng = np.random.default_rng(5)
    shape = (8, 3, 3, 6)
    bn = _bn(shape, F64, rng, momentum=0.8, epsilon=1e-3)
    mm0, mv0 = bn.state["moving_mean"].copy(), bn.state["moving_variance"].copy()
    ids = (id(bn.state["moving_mean"]), id(bn.state["moving_variance"]))
    x = rng.standard_normal(shape) * 3 + 2
    bn.forward(x, training=True)
    _, mean, var = ref.batch_norm_train(x, 1.0, 0.0, bn.epsilon)
    np.testing.assert_allclose(bn.state["moving_mean"], 0.8 * mm0 + 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.state["moving_variance"], 0.8 * mv0 + 0.2 * var, rtol=1e-12)
    assert (id(bn.state["moving_mean"]), id(bn.state["moving_variance"])) == ids  # updated in place
    # inference uses the moving statistics and changes nothing
    mm, mv = bn.state["moving_mean"].copy(), bn.state["moving_variance"].copy()
    y = bn.forward(x, training=False)
    want = (x - mm) / np.sqrt(mv + 1e-3) * bn.params["gamma"] + bn.params["beta"]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(bn.state["moving_mean"], mm)


def test_frozen_layer_trains_in_inference_mode():
    rng = np.random.default_rng(6)
    shape = (4, 3, 3, 5)
    bn = _bn(shape, F64, rng)
    bn.state["moving_mean"][:] = rng.standard_normal(5)
    bn.state["moving_variance"][:] = rng.uniform(0.5, 2, 5)
    bn.trainable = False
    x = rng.standard_normal(shape)
    w = rng.standard_normal(shape)
    mm = bn.state["moving_mean"].copy()
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y, bn.forward(x, training=False), rtol=1e-14)
    np.testing.assert_array_equal(bn.state["moving_mean"], mm)
    bn.forward(x, training=True)
    dx = bn.backward(w)
    np.testing.assert_allclose(dx, numeric_grad(lambda: float((w * bn.forward(x, training=True)).sum()), x),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_mean_is_stable(dtype):
    rng = np.random.default_rng(7)
    shape = (16, 8, 8, 9)
    x = (1e4 + rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    bn = _bn(shape, dtype, rng)
    gamma, beta = bn.params["gamma"].astype(F64), bn.params["beta"].astype(F64)
    y = bn.forward(x, training=True)
    y_ref, _, var = ref.batch_norm_train(x.astype(F64), gamma, beta, bn.epsilon)
    np.testing.assert_allclose(bn.state["moving_variance"], 0.99 + 0.01 * var, rtol=1e-5)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=5e-4 if dtype == np.float32 else 1e-9)
    dx = bn.backward(dy)
    dx_ref, _, _ = ref.batch_norm_train_grad(dy.astype(F64), x.astype(F64), gamma, bn.epsilon)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=5e-4 if dtype == np.float32 else 1e-9)


def test_batch_of_one_and_empty_batch():
    rng = np.random.default_rng(8)
    bn = _bn((1, 3, 3, 4), np.float32, rng)
    x = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    y = bn.forward(x, training=True)
    assert np.isfinite(y).all()
    assert np.isfinite(bn.backward(np.ones_like(x))).all()
    # (1, C): every value is its channel's mean -> output beta, input gradient 0
    bn2 = _bn((1, 5), np.float64, rng)
    np.testing.assert_allclose(bn2.forward(np.arange(5.0)[None], training=True), bn2.params["beta"][None])
    np.testing.assert_array_equal(bn2.backward(np.ones((1, 5))), np.zeros((1, 5)))
    # empty batch: empty output, moving statistics untouched, zero parameter gradients
    mm = bn.state["moving_mean"].copy()
    for training in (False, True):
        y0 = bn.forward(np.zeros((0, 3, 3, 4), np.float32), training=training)
        assert y0.shape == (0, 3, 3, 4) and y0.dtype == np.float32
    np.testing.assert_array_equal(bn.state["moving_mean"], mm)
    assert bn.backward(np.zeros((0, 3, 3, 4), np.float32)).shape == (0, 3, 3, 4)
    np.testing.assert_array_equal(bn.grads["gamma"], 0)
    np.testing.assert_array_equal(bn.grads["beta"], 0)


def test_float16_layer_computes_in_float32():
    rng = np.random.default_rng(9)
    bn = L.BatchNormalization(dtype="float16")
    x = rng.standard_normal((4, 3, 3, 5)).astype(np.float16)
    y = bn.forward(x, training=True)
    assert y.dtype == np.float16
    y_ref, _, _ = ref.batch_norm_train(x.astype(F64), 1.0, 0.0, bn.epsilon)
    np.testing.assert_allclose(y.astype(F64), y_ref, atol=1e-2)
    assert bn.backward(np.ones_like(x)).dtype == np.float16


def test_non_contiguous_input():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 6, 6, 10))[:, ::2, :, ::2]
    bn = _bn(x.shape, F64, rng)
    y = bn.forward(x, training=True)
    y_ref, _, _ = ref.batch_norm_train(np.ascontiguousarray(x), bn.params["gamma"], bn.params["beta"], bn.epsilon)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)


# ---- the kernels directly: thread-count invariance and fully written outputs ---------------------


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_identical_for_one_and_two_threads(level, dtype):
    isa = _dispatch.LEVELS[level] if dtype == np.float32 else 0
    rng = np.random.default_rng(11)
    M, C = 9000, 17  # several reduction chunks
    x = (rng.standard_normal((M, C)) * 3 + 7).astype(dtype)
    dy = rng.standard_normal((M, C)).astype(dtype)
    coef = [rng.standard_normal(C).astype(dtype) for _ in range(4)]
    outs = []
    for threads in (1, 2):
        mean, var, s1, s2 = (np.full(C, np.nan) for _ in range(4))
        _kn.bn_stats(x, mean, var, _nc(x, True), isa, threads)
        y = np.full_like(x, np.nan)
        _kn.bn_affine(x, coef[0], coef[1], coef[2], y, 2, _nc(x, False), isa, threads)
        _kn.bn_dsums(dy, x, y, 2, coef[0], s1, s2, _nc(dy, True), isa, threads)
        dx = np.full_like(x, np.nan)
        _kn.bn_dx(dy, x, y, 2, coef[0], coef[1], coef[2], coef[3], dx, _nc(dy, False), isa, threads)
        outs.append((mean, var, y, s1, s2, dx))
    for a, b in zip(*outs):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)
    mean, var = outs[0][:2]
    rtol = 1e-6 if dtype == np.float32 else 1e-12  # float32: x - shift is rounded to float32
    np.testing.assert_allclose(mean, x.astype(F64).mean(axis=0), rtol=rtol)
    np.testing.assert_allclose(var, x.astype(F64).var(axis=0), rtol=100 * rtol)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("c", CHANNELS)
def test_kernels_against_numpy_every_simd_level(level, c):
    isa = _dispatch.LEVELS[level]
    rng = np.random.default_rng(c + 100)
    M = 37
    x = rng.standard_normal((M, c)).astype(np.float32) * 5
    dy = rng.standard_normal((M, c)).astype(np.float32)
    mean, a, b, gb, gc = (rng.standard_normal(c).astype(np.float32) for _ in range(5))
    for act, fn in ((0, lambda t: t), (1, lambda t: np.maximum(t, 0)), (2, lambda t: np.clip(t, 0, 6))):
        y = np.full_like(x, np.nan)
        _kn.bn_affine(x, mean, a, b, y, act, _nc(x, False), isa, 2)
        y_ref = fn((x.astype(F64) - mean) * a + b)
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5)
        mask = {0: np.ones_like(x, bool), 1: y > 0, 2: (y > 0) & (y < 6)}[act]
        g = np.where(mask, dy, 0).astype(F64)
        s1, s2 = np.empty(c), np.empty(c)
        _kn.bn_dsums(dy, x, y if act else None, act, mean, s1, s2, _nc(dy, True), isa, 2)
        np.testing.assert_allclose(s1, g.sum(0), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(s2, (g * (x - mean.astype(F64))).sum(0), rtol=1e-6, atol=1e-4)
        dx = np.full_like(x, np.nan)
        _kn.bn_dx(dy, x, y if act else None, act, mean, a, gb, gc, dx, _nc(dy, False), isa, 2)
        np.testing.assert_allclose(dx, g * a + (x - mean.astype(F64)) * gb + gc, rtol=0, atol=1e-5)
        _kn.bn_dx(dy, None, y if act else None, act, None, a, None, None, dx, _nc(dy, False), isa, 2)
        np.testing.assert_allclose(dx, g * a, rtol=0, atol=1e-6)
    # in place: y may be x's buffer
    x2 = x.copy()
    _kn.bn_affine(x2, mean, a, b, x2, 1, _nc(x2, False), isa, 2)
    np.testing.assert_allclose(x2, np.maximum((x.astype(F64) - mean) * a + b, 0), rtol=0, atol=1e-5)


# ---- BatchNormalization + ReLU / ReLU6 fused by the training plan -----------------------------


def _fusion_model(dtype):
    from fastconv import Input, Model

    inp = Input((6, 6, 3))
    h = L.Conv2D(5, 3, padding="same", use_bias=False, dtype=dtype)(inp)
    h = L.BatchNormalization(dtype=dtype)(h)
    h = L.Activation("relu6", dtype=dtype)(h)
    s = L.Conv2D(5, 1, use_bias=False, dtype=dtype)(h)
    s = L.BatchNormalization(dtype=dtype)(s)
    s = L.Activation("relu", dtype=dtype)(s)
    t = L.BatchNormalization(dtype=dtype)(h)  # feeds an Add too: not fused
    a = L.Activation("relu", dtype=dtype)(t)
    y = L.Add(dtype=dtype)([s, a, t])
    y = L.BatchNormalization(dtype=dtype)(y)
    y = L.Activation("tanh", dtype=dtype)(y)  # not relu: not fused
    y = L.GlobalAveragePooling2D(dtype=dtype)(y)
    return Model(inp, L.Dense(4, dtype=dtype)(y))


def test_plan_fuses_bn_relu_and_matches_unfused():
    model = _fusion_model(F64)
    plan = model._plan()
    fusion = plan.activation_fusion()
    assert sorted(fusion.values()) == ["relu", "relu6", "skip", "skip"]
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 6, 6, 3))
    runs = []
    for fz in (None, fusion):
        for layer in plan.layers:  # the same moving statistics for both runs
            for k, v in layer.state.items():
                v[...] = 0.0 if "mean" in k else 1.0
        (out,) = plan.forward([x], training=True, fusion=fz)
        dy = np.cos(np.arange(out.size)).reshape(out.shape)
        plan.backward([dy], fusion=fz)
        runs.append((out, [g.copy() for layer in plan.layers for g in layer.grads.values()],
                     [s.copy() for layer in plan.layers for s in layer.state.values()]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(runs[1][1] + runs[1][2], runs[0][1] + runs[0][2]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_fit_uses_the_fusion_and_learns():
    model = _fusion_model(np.float32)
    model.compile("adam", "mse")
    rng = np.random.default_rng(13)
    x = rng.standard_normal((32, 6, 6, 3)).astype(np.float32)
    # a target the model can learn (random targets made the loss curve a coin toss): a linear map
    # of the per-channel means
    y = (x.mean(axis=(1, 2)) @ rng.standard_normal((3, 4))).astype(np.float32)
    hist = model.fit(x, y, batch_size=8, epochs=8, verbose=0)
    assert hist.history["loss"][-1] < 0.9 * hist.history["loss"][0]
    # the fusion is passed into the calls: no layer carries fused state
    assert not any(hasattr(layer, "fused_activation") for layer in model._plan().layers)


# ---- relu / relu6 kernels (fastconv.activations) -----------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, fn, mask", [
    ("relu", lambda t: np.maximum(t, 0), lambda y: y > 0),
    ("relu6", lambda t: np.clip(t, 0, 6), lambda y: (y > 0) & (y < 6)),
])
def test_relu_kernels_every_level(level, dtype, name, fn, mask, simd):
    from fastconv import activations

    simd(level)
    act = activations.get(name)
    rng = np.random.default_rng(14)
    for shape in [(0,), (1,), (7,), (3, 5, 5, 17), (70001,)]:
        x = (rng.standard_normal(shape) * 5).astype(dtype)
        if x.size > 3:
            x.flat[:4] = [0.0, 6.0, np.nan, -0.0]
        y = act.forward(x)
        np.testing.assert_array_equal(y, fn(x))
        assert y.dtype == dtype
        if x.size:
            assert _dispatch.last_used[name] == (level if dtype == np.float32 else "generic")
            assert _dispatch.last_kernel[name] == "kernel"
        dy = rng.standard_normal(shape).astype(dtype)
        np.testing.assert_array_equal(act.backward(dy, y), np.where(mask(y), dy, 0))
        buf = np.full_like(x, np.nan)  # out=: every element written
        assert act.forward(x, out=buf) is buf
        np.testing.assert_array_equal(buf, fn(x))
        xc = x.copy()  # in place
        act.forward(xc, out=xc)
        np.testing.assert_array_equal(xc, fn(x))


def test_relu_kernels_threads_and_fallbacks():
    from fastconv import activations

    rng = np.random.default_rng(15)
    x = rng.standard_normal((300000,)).astype(np.float32) * 7
    dy = rng.standard_normal(x.shape).astype(np.float32)
    outs = []
    for threads in (1, 2):
        y, dx = np.empty_like(x), np.empty_like(x)
        _kn.act_forward(x, y, 2, _nc(x, False), _dispatch.simd_level(), threads)
        _kn.act_backward(dy, y, dx, 2, _nc(dy, False), _dispatch.simd_level(), threads)
        outs.append((y, dx))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    # non-contiguous, float16 and read-only inputs take NumPy and give the same values
    xs = x.reshape(600, 500)[:, ::3]
    np.testing.assert_array_equal(activations.relu.forward(xs), np.maximum(xs, 0))
    h = x[:1000].astype(np.float16)
    np.testing.assert_array_equal(activations.relu6.forward(h), np.clip(h, 0, 6))
    ro = x[:1000].copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(activations.relu.forward(ro), np.maximum(ro, 0))
    assert ro.flags.writeable is False
