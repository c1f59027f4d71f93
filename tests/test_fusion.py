"""Fusion as data: layers declare what they can fuse, the plan passes its choice into the call.

* ops.conv2d(..., relu=True): the kernel's epilogue equals relu(conv2d(...)) bit for bit on every
  path (tiles, rowk, rowseg, narrow, pointwise) and every SIMD level;
* the layers' ``epilogue=`` gives the same values and gradients as the separate activation layer;
* the execution plan decides from the declarations (a custom layer that declares an epilogue is
  fused) and sets no attribute on a layer around a call.
"""
import ast
import pathlib

import numpy as np
import pytest
from gradcheck import numeric_grad  # tests/gradcheck.py

from fastconv import Input, Model, Sequential, _dispatch, initializers, ops
from fastconv import activations as _activations
from fastconv import layers as L
from fastconv.engine.graph import ExecutionPlan
from fastconv.layers.base import Layer
from fastconv.ops import elementwise

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
F64 = np.float64


@pytest.fixture
def simd(request):
    yield lambda level: _dispatch.set_simd(level)
    _dispatch.set_simd(None)


@pytest.fixture
def nan_empty(monkeypatch):
    """Outputs come pre-filled with NaN (all bytes 0xFF): an element the epilogue skips shows."""
    real_empty = np.empty

    def empty(shape, dtype=float, **kw):
        a = real_empty(shape, dtype=dtype, **kw)
        a.reshape(-1).view(np.uint8).fill(0xFF)
        return a

    monkeypatch.setattr(np, "empty", empty)


# ---- the kernel epilogue -----------------------------------------------------------------------

# (x shape, w shape, options, forward path)
PATHS = [
    ((2, 10, 9, 19), (3, 3, 19, 37), dict(padding="same", stride=(1, 2)), "tiles"),  # channel tail
    ((2, 8, 9, 8), (3, 3, 8, 32), dict(padding=1), "tiles"),  # full channel blocks
    ((2, 9, 11, 16), (3, 3, 16, 37), dict(padding="same", stride=(1, 2)), "rowseg"),
    ((3, 9, 28, 3), (3, 3, 3, 13), dict(padding="same"), "rowk"),
    ((2, 12, 30, 2), (3, 3, 2, 11), dict(padding=2, dilation=2), "rowseg"),
    ((2, 5, 7, 24), (1, 1, 24, 19), {}, "tiles"),  # pointwise: one row of N*H*W pixels
    ((2, 9, 27, 11), (3, 3, 11, 3), dict(padding="same"), "narrow"),  # forced below
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(PATHS)))
def test_conv2d_relu_epilogue_equals_relu_after(case, dtype, level, simd, nan_empty, monkeypatch):
    from fastconv.ops import conv as conv_ops

    simd(level)
    xs, ws, kw, path = PATHS[case]
    monkeypatch.setattr(conv_ops, "_force_narrow", path == "narrow")
    rng = np.random.default_rng(case)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    x[0, 1, 2, 0] = np.nan  # NaN passes through the epilogue as through ops.relu
    for b in (rng.standard_normal(ws[3]).astype(dtype), None):
        want = ops.relu(ops.conv2d(x, w, b, **kw))
        got = ops.conv2d(x, w, b, **kw, relu=True)
        if path:
            assert _dispatch.last_kernel["conv2d"] == path
        assert np.isnan(got).any() and (got == 0).any() and (got > 0).any()
        np.testing.assert_array_equal(got, want)


def test_dense_relu_epilogue_and_argument_check():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((7, 13)), rng.standard_normal((13, 21)), rng.standard_normal(21)
    np.testing.assert_array_equal(ops.dense(x, w, b, relu=True), ops.relu(ops.dense(x, w, b)))
    with pytest.raises(TypeError, match="relu must be True or False"):
        ops.conv2d(x.reshape(7, 1, 1, 13), w.reshape(1, 1, 13, 21), relu="yes")


# ---- layers: epilogue= against the separate activation layer ------------------------------------


def _pair(make, shape, rng):
    a, b = make(), make()
    a.build(shape)
    b.build(shape)
    b.set_weights(a.get_weights())
    return a, b


LAYERS = {
    "conv2d": (lambda act: L.Conv2D(6, 3, padding="same", activation=act, dtype=F64), (5, 6, 3)),
    "separable": (lambda act: L.SeparableConv2D(5, 3, activation=act, dtype=F64), (6, 6, 4)),
    "dense": (lambda act: L.Dense(7, activation=act, dtype=F64), (9,)),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_layer_relu_epilogue_matches_separate_relu(kind):
    """Three ways to get relu(layer(x)): activation="relu" (in the kernel), epilogue="relu" on the
    linear layer (the plan's fusion) and the linear layer then a ReLU layer: equal values, and
    gradients equal to each other and to finite differences (float64)."""
    make, shape = LAYERS[kind]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, *shape))
    own, _ = _pair(lambda: make("relu"), shape, rng)
    lin, sep = _pair(lambda: make(None), shape, rng)
    for layer in (lin, sep):
        layer.set_weights(own.get_weights())
    relu = L.ReLU(dtype=F64)
    y_own = own.forward(x, training=True)
    y_epi = lin.forward(x, training=True, epilogue="relu")
    y_sep = relu.forward(sep.forward(x, training=True), training=True)
    assert (y_sep == 0).any() and (y_sep > 0).any()
    np.testing.assert_array_equal(y_own, y_sep)
    np.testing.assert_array_equal(y_epi, y_sep)
    dy = rng.standard_normal(y_sep.shape)
    dxs = [own.backward(dy), lin.backward(dy), sep.backward(relu.backward(dy))]
    for dx in dxs[:2]:
        np.testing.assert_allclose(dx, dxs[2], rtol=1e-13, atol=1e-13)
    for k in sep.grads:
        np.testing.assert_allclose(own.grads[k], sep.grads[k], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(lin.grads[k], sep.grads[k], rtol=1e-13, atol=1e-13)

    def loss():
        return float(np.vdot(own.forward(x, training=True), dy))

    np.testing.assert_allclose(dxs[0], numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    # inference: the epilogue too, and no cache
    np.testing.assert_array_equal(lin.forward(x, epilogue="relu"), relu.forward(sep.forward(x)))
    assert lin._cache is None


def test_linear_epilogue_leaves_the_activation_out_for_one_call():
    rng = np.random.default_rng(3)
    layer = L.Conv2D(4, 3, activation="softmax", dtype=F64)
    x = rng.standard_normal((2, 5, 5, 2))
    logits = layer.forward(x, training=True, epilogue="linear")
    dy = rng.standard_normal(logits.shape)
    dx_logits = layer.backward(dy)  # the gradient of the linear map the forward ran
    dx_plain = L.Conv2D(4, 3, dtype=F64)
    dx_plain.build((5, 5, 2))
    dx_plain.set_weights(layer.get_weights())
    np.testing.assert_array_equal(logits, dx_plain.forward(x, training=True))
    np.testing.assert_allclose(dx_logits, dx_plain.backward(dy), rtol=1e-14, atol=1e-14)
    # the next plain call applies the layer's own softmax again
    np.testing.assert_allclose(layer.forward(x).sum(axis=-1), 1.0, rtol=1e-12)


def test_undeclared_epilogue_is_refused():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 5, 3))
    # hard_sigmoid has no kernel (activations.KERNEL_EPILOGUES), so no conv applies it
    with pytest.raises(ValueError, match=r"cannot apply the epilogue 'hard_sigmoid'.*Received: epilogue='hard_sigmoid'"):
        L.Conv2D(2, 3).forward(x, epilogue="hard_sigmoid")
    with pytest.raises(ValueError, match="cannot apply the epilogue 'relu'"):
        L.Activation("tanh").forward(x, epilogue="relu")
    with pytest.raises(ValueError, match="cannot apply the epilogue 'tanh'"):
        L.DepthwiseConv2D(3).forward(x, epilogue="tanh")  # it declares linear, relu and relu6 only


def test_declarations():
    assert L.BatchNormalization().fusable_epilogues == ("linear", "relu", "relu6")
    assert L.BatchNormalization().final_activation == "linear"
    assert L.Conv2D(2, 3, activation="relu").final_activation == "relu"
    assert "relu" in L.Conv2D(2, 3).fusable_epilogues
    assert L.Activation("relu").epilogue_name == "relu"
    assert L.Softmax().epilogue_name == "softmax"
    assert L.ReLU().epilogue_name == "relu"
    assert L.ReLU(max_value=6).epilogue_name == "relu6"
    assert L.ReLU(negative_slope=0.1).epilogue_name is None
    assert L.ReLU(max_value=4).epilogue_name is None
    assert L.Dense(3).epilogue_name is None and L.Flatten().fusable_epilogues == ()


# ---- the plan decides from the declarations ----------------------------------------------------


def test_graph_imports_no_layer_class():
    src = pathlib.Path(__file__).parents[1] / "fastconv" / "engine" / "graph.py"
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("fastconv.layers"), node.module
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("fastconv.layers") for a in node.names)


class _Scale(Layer):
    """A layer unknown to the engine that declares a relu epilogue."""

    fusable_epilogues = ("linear", "relu")
    final_activation = "linear"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, x, training=False, epilogue=None):
        self.seen.append(epilogue)
        y = 2.0 * x
        if epilogue == "relu":
            y = np.maximum(y, 0)
        if training:
            self._cache = y if epilogue == "relu" else None
        return y

    def call_backward(self, dy):
        y = self._need_cache()
        return 2.0 * (dy if y is None else dy * (y > 0))


class _MyRelu(Layer):
    """An activation layer unknown to the engine that says it is a relu."""

    epilogue_name = "relu"

    def call(self, x, training=False):
        return np.maximum(x, 0)


def test_custom_layers_declaring_an_epilogue_are_fused():
    plan = ExecutionPlan.chain([_Scale(), L.Activation("relu"), L.Dense(2), L.BatchNormalization(), _MyRelu(),
                                L.Dense(3)])
    assert plan.activation_fusion() == {0: "relu", 1: "skip", 3: "relu", 4: "skip"}
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    (fused,) = plan.forward([x], training=True, fusion=plan.activation_fusion())
    assert plan.nodes[0].layer.seen == ["relu"]
    (plain,) = plan.forward([x], training=True)
    assert plan.nodes[0].layer.seen == ["relu", None]
    np.testing.assert_allclose(fused, plain, rtol=1e-6, atol=1e-6)


def test_custom_softmax_declarations_fold_into_the_loss():
    class _Probs(_Scale):
        final_activation = "softmax"

    class _MySoftmax(Layer):
        epilogue_name = "softmax"

    assert ExecutionPlan.chain([L.Dense(3), _MySoftmax()]).softmax_fusion() == (1, "skip")
    assert ExecutionPlan.chain([L.Dense(3), _Probs()]).softmax_fusion() == (1, "linear")
    assert ExecutionPlan.chain([L.Dense(3, activation="softmax")]).softmax_fusion() == (0, "linear")
    assert ExecutionPlan.chain([L.Dense(3, activation="tanh")]).softmax_fusion() is None


def test_no_fusion_across_a_dtype_change_a_fanout_or_a_model_output():
    # the relu reads a float64 tensor: no fusion
    assert ExecutionPlan.chain([L.Conv2D(2, 3), L.Activation("relu", dtype=F64)]).activation_fusion() == {}
    # a conv that already applies an activation gets no second one
    assert ExecutionPlan.chain([L.Conv2D(2, 3, activation="tanh"), L.ReLU()]).activation_fusion() == {}
    inp = Input((6, 6, 2))
    h = L.Conv2D(3, 3)(inp)
    out = L.Add()([L.ReLU()(h), h])  # h feeds two nodes
    assert Model(inp, out)._plan().activation_fusion() == {}
    h = L.Conv2D(3, 3)(inp)
    model = Model(inp, [h, L.ReLU()(h)])  # h is a model output
    assert model._plan().activation_fusion() == {}


def _net():
    return Sequential([
        L.Conv2D(4, 3, padding="same", dtype=F64, input_shape=(7, 7, 2)),
        L.ReLU(dtype=F64),
        L.Conv2D(5, 3, activation="relu", dtype=F64),
        L.BatchNormalization(dtype=F64),
        L.ReLU(max_value=6, dtype=F64),
        L.SeparableConv2D(4, 3, dtype=F64),
        L.Activation("relu", dtype=F64),
        L.Flatten(dtype=F64),
        L.Dense(3, activation="softmax", dtype=F64),
    ])


def test_fused_training_step_equals_unfused_and_sets_no_attribute(monkeypatch):
    model = _net()
    model.compile("sgd", "sparse_categorical_crossentropy")
    plan = model._plan()
    fusion = {**plan.activation_fusion(), **dict([plan.softmax_fusion()])}
    assert fusion == {0: "relu", 1: "skip", 3: "relu6", 4: "skip", 5: "relu", 6: "skip", 8: "linear"}

    # vars() of every layer, checked inside each call: nothing is set on a layer around a call
    snapshots = {}

    def snap(layer):
        return {k: v for k, v in vars(layer).items() if k != "_cache"}

    def watch(cls):
        real = cls.call

        def call(self, x, training=False, **kw):
            now = snap(self)
            assert now.keys() == snapshots[id(self)].keys()
            assert all(now[k] is snapshots[id(self)][k] for k in now), self.name
            return real(self, x, training, **kw)

        monkeypatch.setattr(cls, "call", call)

    for cls in {type(layer) for layer in plan.layers}:
        watch(cls)

    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 7, 7, 2))
    y = np.array([0, 2, 1, 2, 0])
    state0 = [s.copy() for layer in plan.layers for s in layer.state.values()]
    runs = []
    for fz in (None, fusion):
        for s, s0 in zip([s for layer in plan.layers for s in layer.state.values()], state0):
            s[...] = s0
        snapshots.update({id(layer): snap(layer) for layer in plan.layers})
        (out,) = plan.forward([x], training=True, fusion=fz)
        if fz is None:
            _, dy = model.loss.value_and_gradient(np.eye(3)[y], out)
        else:
            _, dy = model.loss.value_and_gradient_from_logits(y, out)
        plan.backward([dy], fusion=fz)
        after = {id(layer): snap(layer) for layer in plan.layers}
        for layer in plan.layers:
            assert after[id(layer)].keys() == snapshots[id(layer)].keys()
            assert all(after[id(layer)][k] is v for k, v in snapshots[id(layer)].items()
                       if k != "need_input_grad")
        runs.append((out, [g.copy() for layer in plan.layers for g in layer.grads.values()]))
    probs = np.exp(runs[1][0] - runs[1][0].max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(axis=1, keepdims=True), runs[0][0], rtol=1e-12, atol=1e-14)
    for a, b in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_fit_with_fused_conv_relu_learns():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((48, 7, 7, 2))
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype(int) + (x[..., 1].mean(axis=(1, 2)) > 0).astype(int)
    model = _net()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=8, epochs=20, verbose=0)
    assert hist.history["loss"][-1] < 0.8 * hist.history["loss"][0]
    # predict: the layers' own activations (probabilities)
    np.testing.assert_allclose(model.predict(x, verbose=0).sum(axis=1), 1.0, rtol=1e-12)


# ---- every element-wise activation in the conv / Dense epilogue ------------------------

KERNEL_ACTS = sorted(n for n in _activations.KERNEL_EPILOGUES if n != "relu")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("case", range(len(PATHS)))
def test_conv2d_activation_epilogue_equals_activation_after(case, level, simd, nan_empty, monkeypatch):
    """ops.conv2d(activation=name) == ops.elementwise.activation(ops.conv2d(...)) bit for bit on every
    path and level (float32; float64 below), the place recorded ("tile", or "pass" after the
    narrow kernel)."""
    from fastconv.ops import conv as conv_ops

    simd(level)
    xs, ws, kw, path = PATHS[case]
    monkeypatch.setattr(conv_ops, "_force_narrow", path == "narrow")
    rng = np.random.default_rng(case)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[3]).astype(np.float32)
    x[0, 1, 2, 0] = np.nan
    for name in KERNEL_ACTS:
        kname, alpha = _activations.KERNEL_EPILOGUES[name]
        want = elementwise.activation(ops.conv2d(x, w, b, **kw), kname, alpha=alpha)
        got = ops.conv2d(x, w, b, **kw, activation=kname, alpha=alpha)
        assert _dispatch.last_kernel["conv2d_epilogue"] == ("pass" if path == "narrow" else "tile")
        assert np.isnan(got).any() and np.isfinite(got).any()
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", KERNEL_ACTS)
def test_conv2d_and_dense_activation_epilogue_float64(name):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 7, 8, 5)), rng.standard_normal((3, 3, 5, 9)), rng.standard_normal(9)
    kname, alpha = _activations.KERNEL_EPILOGUES[name]
    np.testing.assert_array_equal(ops.conv2d(x, w, b, padding="same", activation=kname, alpha=alpha),
                                  elementwise.activation(ops.conv2d(x, w, b, padding="same"), kname, alpha=alpha))
    x2, w2 = rng.standard_normal((6, 11)), rng.standard_normal((11, 17))
    np.testing.assert_array_equal(ops.dense(x2, w2, b[:1].repeat(17), activation=kname, alpha=alpha),
                                  elementwise.activation(ops.dense(x2, w2, b[:1].repeat(17)), kname, alpha=alpha))


def test_activation_epilogue_arguments():
    x, w = np.ones((1, 3, 3, 2)), np.ones((1, 1, 2, 3))
    with pytest.raises(ValueError, match="conv2d: activation must be one of .*Received: activation='mish'"):
        ops.conv2d(x, w, activation="mish")
    with pytest.raises(ValueError, match="give relu=True or activation, not both"):
        ops.conv2d(x, w, relu=True, activation="selu")
    with pytest.raises(TypeError, match="dense: alpha must be a real number"):
        ops.dense(np.ones((2, 3)), np.ones((3, 4)), activation="elu", alpha=[1, 2])
    with pytest.raises(ValueError, match=r"out must be a writeable C-contiguous float64 array of shape \(1, 3, 3, 3\)"):
        ops.conv2d(x, w, out=np.zeros((1, 3, 3, 2)))
    # relu by name is the in-register relu; linear is no activation
    np.testing.assert_array_equal(ops.conv2d(x - 5, w, activation="relu"), ops.conv2d(x - 5, w, relu=True))
    assert _dispatch.last_kernel["conv2d_epilogue"] == "register"
    np.testing.assert_array_equal(ops.conv2d(x - 5, w, activation="linear"), ops.conv2d(x - 5, w))
    assert _dispatch.last_kernel["conv2d_epilogue"] == "none"
    out = np.full((1, 3, 3, 3), np.nan)
    assert ops.conv2d(x, w, activation="tanh", out=out) is out
    np.testing.assert_allclose(out, np.tanh(np.full((1, 3, 3, 3), 2.0)), rtol=1e-15)


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("name", KERNEL_ACTS)
def test_layer_activation_epilogue_matches_separate_activation(kind, name):
    """activation=name (in the kernel epilogue), epilogue=name on the linear layer (the plan's
    fusion of an Activation layer) and the linear layer then Activation(name): equal values and
    gradients (float64), the fused layer's input gradient checked by finite differences."""
    make, shape = LAYERS[kind]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, *shape))
    own, _ = _pair(lambda: make(name), shape, rng)
    lin, sep = _pair(lambda: make(None), shape, rng)
    for layer in (lin, sep):
        layer.set_weights(own.get_weights())
    act = L.Activation(name, dtype=F64)
    y_own = own.forward(x, training=True)
    y_epi = lin.forward(x, training=True, epilogue=name)
    y_sep = act.forward(sep.forward(x, training=True), training=True)
    np.testing.assert_array_equal(y_own, y_sep)
    np.testing.assert_array_equal(y_epi, y_sep)
    dy = rng.standard_normal(y_sep.shape)
    dxs = [own.backward(dy), lin.backward(dy), sep.backward(act.backward(dy))]
    for dx in dxs[:2]:
        np.testing.assert_allclose(dx, dxs[2], rtol=1e-13, atol=1e-13)
    for k in sep.grads:
        np.testing.assert_allclose(own.grads[k], sep.grads[k], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(lin.grads[k], sep.grads[k], rtol=1e-13, atol=1e-13)

    def loss():
        return float(np.vdot(own.forward(x, training=True), dy))

    np.testing.assert_allclose(dxs[0], numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    # inference: the same values, nothing cached
    np.testing.assert_array_equal(lin.forward(x, epilogue=name), act.forward(sep.forward(x)))
    assert lin._cache is None


def test_plan_fuses_a_selu_activation_layer_into_the_conv():
    model = Sequential([Input((6, 6, 2)), L.Conv2D(4, 3, dtype=F64), L.Activation("selu", dtype=F64),
                        L.Flatten(dtype=F64), L.Dense(3, dtype=F64), L.Activation("gelu", dtype=F64),
                        L.Dense(2, activation="softmax", dtype=F64)])
    model.compile("sgd", "mse")
    plan = model._plan()
    fusion = plan.activation_fusion()
    assert fusion[0] == "selu" and fusion[1] == "skip" and fusion[3] == "gelu" and fusion[4] == "skip"
    x = np.random.default_rng(5).standard_normal((4, 6, 6, 2))
    (fused,) = plan.forward([x], training=False, fusion=fusion)
    (plain,) = plan.forward([x], training=False, fusion=None)
    np.testing.assert_allclose(fused, plain, rtol=1e-14)


# ---- BatchNormalization folded into the layer before it in predict / evaluate ----------


def _bn_net(dtype="float32"):
    return Sequential([
        Input((9, 9, 3)),
        L.Conv2D(8, 3, padding="same", use_bias=False, dtype=dtype), L.BatchNormalization(dtype=dtype),
        L.Activation("selu", dtype=dtype),
        L.SeparableConv2D(6, 3, dtype=dtype), L.BatchNormalization(dtype=dtype), L.ReLU(dtype=dtype),
        L.Conv2D(5, 1, dtype=dtype), L.BatchNormalization(scale=False, center=False, dtype=dtype),
        L.Flatten(dtype=dtype), L.Dense(4, dtype=dtype), L.BatchNormalization(dtype=dtype),
        L.Activation("softmax", dtype=dtype),
    ])


def _perturb_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.state["moving_mean"].shape[0]
            layer.state["moving_mean"][...] = rng.standard_normal(c)
            layer.state["moving_variance"][...] = rng.uniform(0.2, 3.0, c)
            for k in ("gamma", "beta"):
                if k in layer.params:
                    layer.params[k][...] = rng.standard_normal(c)


def test_plan_folds_batchnorm_and_its_activation():
    model = _bn_net()
    model.build((None, 9, 9, 3))
    plan = model._plan()
    fusion = plan.inference_fusion(plan.activation_fusion())
    folds = {i: (m.source.name, m.epilogue) for i, m in fusion.items() if not isinstance(m, str)}
    names = [n.layer.name for n in plan.nodes]
    assert folds == {0: (names[1], "selu"), 3: (names[4], "relu"), 6: (names[7], None), 9: (names[10], None)}
    assert all(fusion[j] == "skip" for j in (1, 2, 4, 5, 7, 10))
    assert 11 not in fusion  # softmax: not an epilogue the Dense kernel applies
    # no fold across a fan-out, into a layer with its own activation, or in another dtype
    x = Input((4,))
    h = L.Dense(3)(x)
    m = Model(x, [L.BatchNormalization()(h), h])
    assert not any(not isinstance(v, str) for v in m._plan().inference_fusion().values())
    m = Sequential([Input((4,)), L.Dense(3, activation="tanh"), L.BatchNormalization()])
    assert m._plan().inference_fusion() == {}
    m = Sequential([Input((4,)), L.Dense(3), L.BatchNormalization(dtype="float64")])
    assert m._plan().inference_fusion() == {}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_folded_predict_and_evaluate_equal_unfolded(dtype):
    rng = np.random.default_rng(9)
    model = _bn_net(dtype)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.standard_normal((37, 9, 9, 3)).astype(dtype)
    y = rng.integers(0, 4, 37)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    _perturb_bn(model, rng)
    weights = [w.copy() for w in model.get_weights()]
    plan = model._plan()
    plain = plan.forward([x], training=False)[0]
    tol = {"rtol": 2e-5, "atol": 2e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-14}
    np.testing.assert_allclose(model.predict(x, batch_size=16, verbose=0), plain, **tol)
    np.testing.assert_allclose(model.predict_on_batch(x), plain, **tol)
    loss = model.loss(np.eye(4, dtype=dtype)[y], plain)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0)[0], loss, rtol=1e-5 if dtype == "float32" else 1e-12)
    for a, b in zip(model.get_weights(), weights):  # the layers' weights are never modified
        np.testing.assert_array_equal(a, b)
    # a change of the weights shows at the next predict (the fold is read per call, nothing stale)
    _perturb_bn(model, rng)
    model.layers[0].params["kernel"][...] *= 1.5
    np.testing.assert_allclose(model.predict(x, verbose=0), plan.forward([x], training=False)[0], **tol)


def test_training_is_unaffected_by_folding():
    """fit never folds: the batch statistics are used and the step equals the unfused plan's."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((16, 9, 9, 3))
    y = rng.integers(0, 4, 16)
    models = [_bn_net("float64") for _ in range(2)]
    for m in models:
        m.compile("sgd", "sparse_categorical_crossentropy")
        m.build((None, 9, 9, 3))
    models[1].set_weights(models[0].get_weights())
    models[0].train_on_batch(x, y)
    plan = models[1]._plan()
    (out,) = plan.forward([x], training=True)
    _, dy = models[1].loss.value_and_gradient(np.eye(4)[y], out)
    plan.backward([dy])
    models[1].optimizer.apply(models[1].trainable_pairs())
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="cannot fold an affine map into its weights in a training call"):
        models[0].layers[0].forward(x, training=True, affine=(np.ones(8), np.zeros(8)))
    with pytest.raises(ValueError, match="cannot fold an affine map into its weights"):
        L.MaxPooling2D().forward(x, affine=(np.ones(3), np.zeros(3)))


def test_an_activation_with_its_own_parameters_is_not_fused_by_name():
    """Activation(ELU(alpha=0.3)) after a conv: fusing it by its name "elu" ran alpha 1.0 in the
    conv epilogue, so predict must keep it a layer of its own."""
    from fastconv import Sequential, activations
    from fastconv import layers as L

    act = activations._ELU(alpha=0.3)
    model = Sequential([L.Input((4, 5, 3)), L.Conv2D(3, 1), L.Activation(act)])
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 3)).astype(np.float32)
    conv = model.layers[0]
    kernel, bias = conv.get_weights()
    want = act.forward(ops.conv2d(x, kernel, bias))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6, atol=1e-6)
    assert model.layers[1].epilogue_name is None and L.Activation("elu").epilogue_name == "elu"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_folds_into_depthwise_and_transposed_convs(dtype):
    """DepthwiseConv2D (depth multiplier 2: output channel c * M + m) and an ungrouped
    Conv2DTranspose take the BatchNormalization after them, and the relu / relu6 after that, in
    predict; the outputs equal the unfolded plan's; a grouped Conv2DTranspose is left alone."""
    rng = np.random.default_rng(11)
    model = Sequential([
        Input((7, 7, 3)),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", dtype=dtype), L.BatchNormalization(dtype=dtype),
        L.Activation("relu6", dtype=dtype),
        L.DepthwiseConv2D(3, strides=2, use_bias=False, dtype=dtype), L.BatchNormalization(dtype=dtype),
        L.Conv2DTranspose(5, 3, strides=2, padding="same", use_bias=False, dtype=dtype),
        L.BatchNormalization(dtype=dtype), L.ReLU(dtype=dtype),
        L.Conv2DTranspose(4, 3, groups=1, dtype=dtype), L.BatchNormalization(dtype=dtype),
        L.Conv2DTranspose(4, 2, groups=2, dtype=dtype), L.BatchNormalization(dtype=dtype),
    ])
    model.build((None, 7, 7, 3))
    _perturb_bn(model, rng)
    for layer in model.layers:
        if "bias" in layer.params:
            layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape)
    plan = model._plan()
    fusion = plan.inference_fusion(plan.activation_fusion())
    folds = {i: m.epilogue for i, m in fusion.items() if not isinstance(m, str)}
    assert folds == {0: "relu6", 3: None, 5: "relu", 8: None}  # not the grouped transposed conv (10)
    assert 10 not in fusion and 11 not in fusion
    x = rng.standard_normal((5, 7, 7, 3)).astype(dtype)
    plain = plan.forward([x], training=False)[0]
    weights = [w.copy() for w in model.get_weights()]
    tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(model.predict(x, verbose=0), plain, **tol)
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_depthwise_and_transposed_take_a_relu_layer_in_training(act):
    """The relu / relu6 layer after a DepthwiseConv2D or Conv2DTranspose runs as its epilogue in
    training too; forward and every gradient equal the unfused plan's."""
    rng = np.random.default_rng(12)
    initializers.set_seed(12)  # the weights too: relu6's cap must be reached whatever ran before
    net = lambda: Sequential([
        Input((6, 6, 2)), L.DepthwiseConv2D(3, depth_multiplier=2, dtype=F64), L.Activation(act, dtype=F64),
        L.Conv2DTranspose(3, 3, strides=2, dtype=F64), L.Activation(act, dtype=F64),
    ])
    a, b = net(), net()
    a.build((None, 6, 6, 2))
    b.build((None, 6, 6, 2))
    b.set_weights([w * 3 for w in a.get_weights()])  # values over 6 for relu6's cap
    a.set_weights(b.get_weights())
    pa, pb = a._plan(), b._plan()
    fusion = pa.activation_fusion()
    assert fusion == {0: act, 1: "skip", 2: act, 3: "skip"}
    x = rng.standard_normal((3, 6, 6, 2))
    (ya,) = pa.forward([x], training=True, fusion=fusion)
    (yb,) = pb.forward([x], training=True)
    np.testing.assert_allclose(ya, yb, rtol=1e-13, atol=1e-13)
    assert (yb == 0).any() and (act == "relu" or (yb == 6).any())
    dy = rng.standard_normal(ya.shape)
    pa.backward([dy], fusion=fusion)
    pb.backward([dy])
    for la, lb in zip(a.layers, b.layers):
        for k in la.grads:
            np.testing.assert_allclose(la.grads[k], lb.grads[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_add_and_concatenate_take_the_activation_after_them(act):
    """Add -> relu and Concatenate -> relu6 (ResNet / ShuffleNet unit ends): the activation layer
    is skipped and the merge applies it in place; training forward and every gradient, and
    predict, equal the unfused plan's."""
    from fastconv import Model

    def net():
        x = Input((5, 5, 3))
        a = L.Conv2D(4, 3, padding="same", dtype=F64)(x)
        b = L.Conv2D(4, 1, dtype=F64)(x)
        s = L.Activation(act, dtype=F64)(L.Add(dtype=F64)([a, b]))
        c = L.Activation(act, dtype=F64)(L.Concatenate(dtype=F64)([s, b]))
        return Model(x, L.Dense(2, dtype=F64)(L.Flatten(dtype=F64)(c)))

    m1, m2 = net(), net()
    m2.set_weights([w * 4 for w in m1.get_weights()])  # past relu6's cap
    m1.set_weights(m2.get_weights())
    p1, p2 = m1._plan(), m2._plan()
    fusion = p1.activation_fusion()
    kinds = {type(p1.nodes[i].layer).__name__: mode for i, mode in fusion.items() if mode != "skip"}
    assert kinds == {"Add": act, "Concatenate": act}
    assert sum(mode == "skip" for mode in fusion.values()) == 2
    x = np.random.default_rng(13).standard_normal((3, 5, 5, 3))
    (y1,) = p1.forward([x], training=True, fusion=fusion)
    (y2,) = p2.forward([x], training=True)
    np.testing.assert_allclose(y1, y2, rtol=1e-13, atol=1e-13)
    dy = np.random.default_rng(14).standard_normal(y1.shape)
    p1.backward([dy], fusion=fusion)
    p2.backward([dy])
    for la, lb in zip(m1.layers, m2.layers):
        for k in la.grads:
            np.testing.assert_allclose(la.grads[k], lb.grads[k], rtol=1e-12, atol=1e-12)
    xm = m1._cast_inputs([x])[0]  # the model input's dtype
    np.testing.assert_allclose(m1.predict(x, verbose=0), p2.forward([xm], training=False)[0], rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="cannot apply the epilogue 'tanh'"):
        L.Add().forward([x, x], epilogue="tanh")
    with pytest.raises(ValueError, match="cannot apply the epilogue 'relu'"):
        L.Multiply().forward([x, x], epilogue="relu")


def test_concatenate_on_channels_equals_numpy():
    """Concatenate's row-run copy on the last axis: every dtype, strided inputs, one-channel and
    empty inputs, other axes unchanged."""
    rng = np.random.default_rng(15)
    for dtype in (np.float32, np.float64):
        xs = [rng.standard_normal((3, 4, 5, c)).astype(dtype) for c in (1, 7, 16)]
        xs.append(rng.standard_normal((3, 5, 4, 2)).astype(dtype).swapaxes(1, 2))  # not contiguous
        want = np.concatenate(xs, axis=-1)
        got = L.Concatenate(dtype=dtype).forward(xs)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == dtype and got.flags.c_contiguous
        empty = [xs[0], np.zeros((3, 4, 5, 0), dtype), xs[1]]
        np.testing.assert_array_equal(L.Concatenate(dtype=dtype).forward(empty), np.concatenate(empty, axis=-1))
        np.testing.assert_array_equal(L.Concatenate(axis=2, dtype=dtype).forward([xs[0], xs[0]]),
                                      np.concatenate([xs[0], xs[0]], axis=2))
    flat = [rng.standard_normal((6, 3)), rng.standard_normal((6, 1))]
    np.testing.assert_array_equal(L.Concatenate(dtype="float64").forward(flat), np.concatenate(flat, axis=-1))


# ---- an activation moved past max pooling (MaxPooling2D.commuting_epilogues) -------------------


def test_relu_moves_past_max_pooling_only_where_it_commutes():
    assert L.MaxPooling2D().commuting_epilogues == ("relu", "relu6")
    assert not getattr(L.AveragePooling2D(), "commuting_epilogues", ())
    plan = ExecutionPlan.chain([L.Conv2D(2, 3, activation="relu"), L.MaxPooling2D(),
                                L.Conv2D(2, 3, activation="relu6"), L.MaxPooling2D(),
                                L.Conv2D(2, 3, activation="selu"), L.MaxPooling2D(),   # selu: not declared
                                L.Conv2D(2, 3, activation="relu"), L.AveragePooling2D(),
                                L.Conv2D(2, 3, activation="relu"), L.MaxPooling2D(dtype=F64)])
    assert plan.activation_fusion() == {0: "linear", 1: "relu", 2: "linear", 3: "relu6"}
    inp = Input((8, 8, 2))
    h = L.Conv2D(3, 3, activation="relu")(inp)
    assert Model(inp, [h, L.MaxPooling2D()(h)])._plan().activation_fusion() == {}  # h is an output
    h = L.Conv2D(3, 3, activation="relu")(inp)
    out = L.Add()([L.MaxPooling2D(1)(h), h])  # h feeds two nodes
    assert Model(inp, out)._plan().activation_fusion() == {}


def _pool_net(dtype, act, pool_kw):
    return Sequential([
        L.Conv2D(4, 3, activation=act, dtype=dtype, input_shape=(9, 11, 2)),
        L.MaxPooling2D(**pool_kw, dtype=dtype),
        L.Conv2D(3, 2, activation=act, padding="same", dtype=dtype),
        L.MaxPooling2D(**pool_kw, dtype=dtype),
        L.Flatten(dtype=dtype),
        L.Dense(3, dtype=dtype),
    ])


@pytest.mark.parametrize("dtype", [np.float32, F64])
@pytest.mark.parametrize("act", ["relu", "relu6"])
@pytest.mark.parametrize("pool_kw", [{}, dict(pool_size=3, strides=2, padding="same"), dict(pool_size=(2, 3), strides=1)])
def test_moved_activation_gives_the_unfused_outputs_and_gradients(dtype, act, pool_kw):
    """Forward bit for bit and every gradient bit for bit, ties included (integer-valued inputs and
    weights give many equal window values, zeros and, for relu6, sixes)."""
    model = _pool_net(dtype, act, pool_kw)
    model.compile("sgd", "mse")
    plan = model._plan()
    fusion = plan.activation_fusion()
    assert fusion == {0: "linear", 1: act, 2: "linear", 3: act}
    rng = np.random.default_rng(3)
    for layer in plan.layers:
        for w in layer.params.values():
            w[...] = rng.integers(-2, 3, w.shape)
    x = rng.integers(-3, 4, (4, 9, 11, 2)).astype(dtype)
    x[0, 1, 2, 0] = np.nan  # NaN goes through either way
    runs = []
    for fz in (None, fusion):
        (out,) = plan.forward([x], training=True, fusion=fz)
        dy = rng.standard_normal(out.shape).astype(dtype) if not runs else runs[0][2]
        plan.backward([dy], fusion=fz)
        runs.append((out, [g.copy() for layer in plan.layers for g in layer.grads.values()], dy))
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    for a, b in zip(runs[1][1], runs[0][1]):
        np.testing.assert_array_equal(a, b)


def test_moved_relu_gradient_against_finite_differences():
    model = _pool_net(F64, "relu", dict(pool_size=3, strides=2, padding="same"))
    model.compile("sgd", "mse")
    plan = model._plan()
    fusion = plan.activation_fusion()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 9, 11, 2))
    dy = rng.standard_normal((2, 3))
    plan.forward([x], training=True, fusion=fusion)
    plan.backward([dy], fusion=fusion)
    layer = plan.layers[0]
    kernel = layer.params["kernel"]
    got = layer.grads["kernel"].copy()

    def f():
        (out,) = plan.forward([x], training=False, fusion=fusion)
        return float((out * dy).sum())

    want = numeric_grad(f, kernel)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
