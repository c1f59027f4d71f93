"""Functional API: graph gradients (float64 finite differences), shared layers, merge and shape layers,
new activations, build-time errors, activation freeing, summary and config round trips."""

from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest

from fastconv import activations, losses, regularizers
from fastconv import layers as L
from fastconv import Input, Model
from fastconv.layers import InputLayer
from fastconv.layers._symbolic import KerasTensor
from fastconv.layers.base import Layer, register_layer

F64 = {"dtype": "float64"}
EPS = 1e-6


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


def _coords(shape, rng, k):
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= k else rng.choice(size, k, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def model_fd_check(model, x, *, seed=0, k=6, rtol=1e-5, atol=1e-7):
    """Compare ``_backward``'s grads of every trainable weight with central differences of
    ``sum_i sum(out_i * R_i) + regularization_loss``."""
    rng = np.random.default_rng(seed)
    outs = model._forward(x, training=True)
    outs = outs if isinstance(outs, list) else [outs]
    rs = [rng.standard_normal(o.shape) for o in outs]

    def loss():
        ys = model._forward(x, training=True)
        ys = ys if isinstance(ys, list) else [ys]
        return sum(float(np.sum(y * r)) for y, r in zip(ys, rs)) + model.regularization_loss()

    model._forward(x, training=True)
    model._backward(rs if len(rs) > 1 else rs[0])
    pairs = model.trainable_pairs()
    assert pairs
    grads = {key: g.copy() for key, _, g in pairs}
    checked = 0
    for key, p, _ in pairs:
        for idx in _coords(p.shape, rng, k):
            old = p[idx]
            p[idx] = old + EPS
            fp = loss()
            p[idx] = old - EPS
            fm = loss()
            p[idx] = old
            np.testing.assert_allclose(
                grads[key][idx], (fp - fm) / (2 * EPS), rtol=rtol, atol=atol, err_msg=f"d/d{key}{idx}"
            )
            checked += 1
    return checked


def layer_fd_check(layer, xs, *, seed=0, k=10, rtol=1e-5, atol=1e-7):
    """Finite-difference check of a (merge) layer's input gradients; ``xs`` a list or one array."""
    rng = np.random.default_rng(seed)
    as_list = isinstance(xs, list)
    xs = [np.array(a, dtype=np.float64) for a in (xs if as_list else [xs])]

    def fwd():
        return layer.forward(xs if as_list else xs[0], training=True)

    r = rng.standard_normal(fwd().shape)
    dxs = layer.backward(r)
    dxs = dxs if as_list else [dxs]
    for a, d in zip(xs, dxs):
        assert d.shape == a.shape
        for idx in _coords(a.shape, rng, k):
            old = a[idx]
            a[idx] = old + EPS
            fp = float(np.sum(fwd() * r))
            a[idx] = old - EPS
            fm = float(np.sum(fwd() * r))
            a[idx] = old
            np.testing.assert_allclose(d[idx], (fp - fm) / (2 * EPS), rtol=rtol, atol=atol)
    return dxs


# ---------------------------------------------------------------------------
# The graph gradient check: skip (Add), branch (Concatenate), gate (sigmoid SE Multiply)
# ---------------------------------------------------------------------------


def _se_resnet_graph(shared_reg=True):
    inp = Input((6, 6, 3), name="img")
    h = L.Conv2D(4, 3, padding="same", activation="tanh", name="stem", **F64)(inp)
    a = L.Conv2D(2, 1, activation="swish", name="branch_a", **F64)(h)
    b = L.Conv2D(2, 3, padding="same", name="branch_b", **F64)(h)
    b = L.BatchNormalization(name="bn", **F64)(b)
    cat = L.Concatenate(name="cat", **F64)([a, b])
    s = L.GlobalAveragePooling2D(name="gap", **F64)(cat)
    s = L.Reshape((1, 1, 4), name="se_reshape", **F64)(s)
    s = L.Conv2D(2, 1, activation="relu", name="se_reduce", **F64)(s)
    s = L.Conv2D(4, 1, activation="sigmoid", name="se_expand", **F64)(s)
    gated = L.Multiply(name="gate", **F64)([cat, s])
    y = L.Add(name="skip", **F64)([gated, h])
    y = L.Activation("gelu", name="act", **F64)(y)
    f = L.GlobalMaxPooling2D(name="gmp", **F64)(y)
    reg = regularizers.l2(0.01) if shared_reg else None
    shared = L.Dense(4, activation="tanh", kernel_regularizer=reg, name="shared", **F64)
    z = shared(shared(f))  # the same weights twice in a row
    out = L.Dense(3, name="head", **F64)(L.Subtract(name="sub", **F64)([z, f]))
    return Model(inp, out, name="se_resnet")


def test_graph_gradient_skip_branch_gate_float64():
    model = _se_resnet_graph()
    x = rand(2, 6, 6, 3, seed=3)
    n = model_fd_check(model, x, k=5)
    assert n >= 40
    names = {layer.name for layer in model.layers}
    assert {"skip", "cat", "gate", "shared"} <= names


def test_multi_input_multi_output_gradient_and_none_dy():
    a = Input((5,), name="a")
    b = Input((3,), name="b")
    shared = L.Dense(4, activation="tanh", name="d", **F64)
    ha = shared(L.Dense(5, name="pa", **F64)(a))
    hb = shared(L.Dense(5, name="pb", **F64)(b))
    out1 = L.Dense(2, name="o1", **F64)(L.Average(**F64)([ha, hb]))
    out2 = L.Maximum(**F64)([ha, hb])
    model = Model([a, b], [out1, out2])
    x = [rand(3, 5, seed=4), rand(3, 3, seed=5)]
    model_fd_check(model, x)
    # no loss on output 0: its head gets zero grads, the rest still flows
    model._forward(x, training=True)
    model._backward([None, np.ones((3, 4))])
    assert not model.get_layer("o1").grads["kernel"].any()
    assert model.get_layer("pa").grads["kernel"].any()


def test_output_that_is_also_consumed_internally_sums_both_gradients():
    inp = Input((3,))
    h = L.Dense(3, name="h", **F64)(inp)
    out = L.Dense(2, name="out", **F64)(h)
    model = Model(inp, [h, out])
    model_fd_check(model, rand(4, 3))


# ---------------------------------------------------------------------------
# Shared layers
# ---------------------------------------------------------------------------


def test_shared_layer_ties_weights_and_counts_once():
    a, b = Input((4,)), Input((4,))
    d = L.Dense(3, kernel_regularizer=regularizers.l2(0.1))
    model = Model([a, b], L.Add()([d(a), d(b)]))
    assert model.count_params() == 15
    assert len(model.trainable_pairs()) == 2
    assert [la.name for la in model.layers].count(d.name) == 1
    assert model.regularization_loss() == pytest.approx(d.regularization_loss())
    xa, xb = rand(2, 4), rand(2, 4, seed=2)
    y = model.predict([xa, xb])
    np.testing.assert_allclose(y, d(xa) + d(xb), rtol=1e-6)
    d.params["kernel"][...] = 0  # change the one weight: both uses see it
    np.testing.assert_allclose(model.predict([xa, xb]), 2 * d.params["bias"] + 0 * y)


def test_shared_layer_gradient_is_sum_over_uses_with_regularizer_once():
    inp = Input((3,))
    d = L.Dense(3, activation="tanh", kernel_regularizer=regularizers.l2(0.05), name="d", **F64)
    model = Model(inp, d(d(d(inp))))
    model_fd_check(model, rand(4, 3), k=12)


def test_shared_block_and_batchnorm_caches_are_kept_per_call():
    inp = Input((4, 4, 2))
    block = L.ResidualBlock(
        [L.Conv2D(2, 3, padding="same", **F64), L.BatchNormalization(**F64)], activation="tanh", **F64
    )
    model = Model(inp, block(block(inp)))
    model_fd_check(model, rand(2, 4, 4, 2), k=4)


def test_shared_layer_model_trains_with_fit_and_counts_the_penalty_once():
    a, b = Input((4,), name="a"), Input((4,), name="b")
    d = L.Dense(4, activation="tanh", kernel_regularizer=regularizers.l2(0.01), name="tied")
    head = L.Dense(2, activation="softmax", name="head")
    model = Model(a, head(L.Subtract()([d(a), d(L.Multiply()([a, a]))])))
    del b
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = rand(32, 4), np.arange(32) % 2
    ce = losses.get("sparse_categorical_crossentropy")(y, model.predict(x))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(ce + d.regularization_loss(), rel=1e-5)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=15, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


def test_shared_layer_gradient_equals_sum_over_untied_copies():
    def build(tied):
        inp = Input((3,))
        d1 = L.Dense(3, activation="tanh", name="d1", **F64)
        d2 = d1 if tied else L.Dense(3, activation="tanh", name="d2", **F64)
        return Model(inp, L.Dense(2, name="out", **F64)(d2(d1(inp)))), d1, d2

    tied, t1, _ = build(True)
    untied, u1, u2 = build(False)
    u1.set_weights(t1.get_weights())
    u2.set_weights(t1.get_weights())
    untied.get_layer("out").set_weights(tied.get_layer("out").get_weights())
    x, dy = rand(5, 3), rand(5, 2, seed=9)
    for m in (tied, untied):
        m._forward(x, training=True)
        m._backward(dy)
    for key in ("kernel", "bias"):
        np.testing.assert_allclose(t1.grads[key], u1.grads[key] + u2.grads[key], rtol=1e-12)


def test_shared_layer_with_wrong_channels_fails_at_build():
    d = L.Conv2D(4, 3)
    d(Input((8, 8, 3)))
    with pytest.raises(ValueError, match="expected axis -1"):
        d(Input((8, 8, 5)))
    d(Input((16, 16, 3)))  # another image size is fine


# ---------------------------------------------------------------------------
# Build-time errors
# ---------------------------------------------------------------------------


def test_merge_shape_mismatch_raises_when_called():
    with pytest.raises(ValueError, match="incompatible shapes"):
        L.Add()([Input((8, 8, 16)), Input((8, 8, 32))])
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
        L.Concatenate()([Input((8, 8, 4)), Input((4, 4, 4))])
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        L.Subtract()([Input((3,)), Input((3,)), Input((3,))])
    with pytest.raises(ValueError, match="at least 2 inputs"):
        L.Add()([Input((3,))])
    with pytest.raises(ValueError, match="at least 2 inputs"):
        L.Concatenate()([Input((3,))])
    assert L.Dense(2)([Input((3,))]).shape == (None, 2)  # one-element list unwrapped, as Keras does


def test_disconnected_graph_and_unknown_inputs():
    a, b = Input((3,), name="in_a"), Input((3,), name="in_b")
    out = L.Add()([L.Dense(3)(a), b])
    with pytest.raises(ValueError, match=r"Graph disconnected.*in_b"):
        Model(a, out)
    with pytest.raises(ValueError, match="must come from `fastconv.Input`"):
        Model(L.Dense(2)(a), out)
    with pytest.raises(TypeError, match="KerasTensor"):
        Model(np.zeros((1, 3)), out)
    m = Model([a, b], out)
    with pytest.raises(ValueError, match="expects 2 input"):
        m.predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"Input 1 .* expected shape \(None, 3\)"):
        m.predict([np.zeros((1, 3)), np.zeros((1, 4))])


def test_cycle_and_dangling_references_in_config_raise():
    inp = Input((3,), name="x")
    h = L.Dense(3, name="d1")(inp)
    out = L.Dense(3, name="d2")(h)
    config = json.loads(json.dumps(Model(inp, out).get_config()))
    cyc = json.loads(json.dumps(config))
    cyc["layers"][1]["inbound_nodes"][0]["args"] = [["d2", 0, 0]]  # d1 <- d2 <- d1
    with pytest.raises(ValueError, match=r"cycle.*\['d1', 'd2'\]"):
        Model.from_config(cyc)
    bad = json.loads(json.dumps(config))
    bad["layers"][2]["inbound_nodes"][0]["args"] = [["nope", 0, 0]]
    with pytest.raises(ValueError, match='Unknown layer "nope"'):
        Model.from_config(bad)


def test_cycle_in_hand_made_nodes_raises():
    inp = Input((3,))
    d1, d2 = L.Dense(3), L.Dense(3)
    h = d1(inp)
    out = d2(h)
    h.node.inputs = [out]  # rewire by hand: d1 now consumes d2's output
    with pytest.raises(ValueError, match="cycle"):
        Model(inp, out)


def test_duplicate_layer_names_and_input_layer_misuse():
    inp = Input((3,))
    out = L.Dense(2, name="same")(L.Dense(3, name="same")(inp))
    with pytest.raises(ValueError, match="unique"):
        Model(inp, out)
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(inp)
    with pytest.raises(TypeError, match="mix of symbolic"):
        L.Add()([inp, np.zeros((1, 3))])


# ---------------------------------------------------------------------------
# Memory: activations and caches are freed as soon as nothing needs them
# ---------------------------------------------------------------------------

_SEEN: list = []


@register_layer
class _Spy(Layer):
    """Records a weak reference to each output; asserts that only its own input is alive."""

    def call(self, x, training=False):
        gc.collect()
        alive = [r for r in _SEEN if r() is not None and r() is not x]
        assert not alive, f"{len(alive)} earlier activations still alive"
        y = x * 1.0
        _SEEN.append(weakref.ref(y))
        return y


def test_forward_frees_each_activation_after_its_last_consumer():
    _SEEN.clear()
    inp = Input((4,))
    h = _Spy()(inp)
    h = _Spy()(h)
    two = L.Add()([_Spy()(h), h])  # h has two consumers: kept until Add ran
    model = Model(inp, _Spy()(_Spy()(two)))
    model.predict(np.ones((2, 4)))
    assert len(_SEEN) == 5


def test_shared_uses_release_their_saved_caches_after_backward():
    inp = Input((3,))
    d = L.Dense(3, activation="tanh", **F64)
    model = Model(inp, d(d(inp)))
    uses = [n.layer for n in model._plan().nodes]
    model._forward(rand(2, 3), training=True)
    assert all(u._caches is not None for u in uses)
    model._backward(np.ones((2, 3)))
    assert all(u._caches is None for u in uses) and d._cache is None
    with pytest.raises(RuntimeError, match="preceding forward"):
        model._backward(np.ones((2, 3)))


def test_first_layers_skip_input_gradient():
    model = _se_resnet_graph(shared_reg=False)
    model._forward(rand(2, 6, 6, 3), training=True)
    model._backward(np.ones((2, 3)))
    assert model.get_layer("stem").need_input_grad is False
    assert model.get_layer("branch_a").need_input_grad and model.get_layer("cat").need_input_grad


def test_graph_runs_on_the_trainers_execution_plan():
    from fastconv.engine.graph import ExecutionPlan

    model = _se_resnet_graph(shared_reg=False)
    plan = model._plan()
    assert isinstance(plan, ExecutionPlan) and plan is model._plan()
    assert len(plan.nodes) == len(model.nodes) == len(model.layers)  # 13 layers + "shared" twice - input
    assert plan.inputs == (0,) and plan.outputs == (len(plan.nodes),)


# ---------------------------------------------------------------------------
# Summary, config, properties
# ---------------------------------------------------------------------------


def test_summary_has_connected_to_column():
    inp = Input((4, 4, 2), name="input")
    h = L.Conv2D(2, 1, name="conv")(inp)
    out = L.Add(name="add")([h, inp])
    model = Model(inp, out, name="tiny")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert 'Model: "tiny"' in text and "Connected to" in text
    assert "input (InputLayer)" in text and "conv[0][0]" in text and "input[0][0]" in text
    assert "Total params: 6" in text
    header, rows = model._summary_rows()
    assert header[-1] == "Connected to"
    assert rows[2][-1] == "conv[0][0], input[0][0]" and rows[0][-1] == "-"


def test_config_round_trip_shared_multi_io_is_json_and_identical():
    a, b = Input((6, 6, 2), name="a"), Input((6, 6, 2), name="b")
    conv = L.Conv2D(3, 3, padding="same", activation="hard_swish", name="conv")
    h = L.Concatenate(name="cat")([conv(a), conv(b)])
    o1 = L.GlobalMaxPooling2D(name="gmp")(L.ChannelShuffle(2, name="shuffle")(h))
    o2 = L.Reshape((-1,), name="flat")(h)
    model = Model([a, b], [o1, o2], name="two")
    text = model.to_json()
    clone = Model.from_config(json.loads(text)["config"])
    clone.set_weights(model.get_weights())
    assert [la.name for la in clone.layers] == [la.name for la in model.layers]
    x = [rand(2, 6, 6, 2), rand(2, 6, 6, 2, seed=7)]
    for p, q in zip(model.predict(x), clone.predict(x)):
        np.testing.assert_array_equal(p, q)
    assert clone.output_shape == [(None, 6), (None, 216)]
    assert clone._summary_rows()[1][2][-1] == "a[0][0], b[0][0]"  # the shared conv, called twice


def test_layer_output_reads_any_node():
    from fastconv import plot

    model = _se_resnet_graph(shared_reg=False)
    x = rand(3, 6, 6, 3)
    cat = plot.layer_outputs(model, x, "cat")
    assert cat.shape == (3, 6, 6, 4)
    np.testing.assert_array_equal(model.layer_output(x, model.layers.index(model.get_layer("cat"))), cat)
    with pytest.raises(ValueError, match="no node"):
        model.layer_output(x, 0)  # the InputLayer


def test_dict_inputs_keras_tensor_and_get_layer():
    a, b = Input((2,), name="a"), Input((2,), name="b")
    model = Model({"a": a, "b": b}, L.Multiply()([a, b]))
    y = model.predict({"b": np.full((1, 2), 3.0), "a": np.full((1, 2), 2.0)})
    np.testing.assert_allclose(y, 6.0)
    assert isinstance(a, KerasTensor) and a.shape == (None, 2)
    assert isinstance(model.get_layer("a"), InputLayer)
    with pytest.raises(ValueError, match="No such layer"):
        model.get_layer("zzz")


# ---------------------------------------------------------------------------
# Merge and shape layers on arrays
# ---------------------------------------------------------------------------


MERGES = [
    ("add", lambda: L.Add(**F64), [(2, 3, 3, 4), (2, 3, 3, 4), (2, 1, 1, 4)]),
    ("subtract_bcast", lambda: L.Subtract(**F64), [(2, 3, 3, 4), (2, 4)]),
    ("multiply_se_gate", lambda: L.Multiply(**F64), [(2, 3, 3, 4), (2, 1, 1, 4)]),
    ("multiply3", lambda: L.Multiply(**F64), [(2, 3, 4), (2, 3, 4), (2, 1, 4)]),
    ("average", lambda: L.Average(**F64), [(2, 5), (2, 5), (2, 1)]),
    ("maximum", lambda: L.Maximum(**F64), [(2, 3, 3, 2), (2, 3, 3, 2)]),
    ("minimum_bcast", lambda: L.Minimum(**F64), [(2, 3, 3, 2), (2, 1, 3, 2)]),
    ("concat", lambda: L.Concatenate(**F64), [(2, 3, 3, 1), (2, 3, 3, 4)]),
    ("concat_axis1", lambda: L.Concatenate(axis=1, **F64), [(2, 1, 3, 2), (2, 2, 3, 2)]),
]


@pytest.mark.parametrize("name,factory,shapes", MERGES, ids=[m[0] for m in MERGES])
def test_merge_layer_gradients(name, factory, shapes):
    xs = [rand(*s, seed=i + 10) for i, s in enumerate(shapes)]
    layer = factory()
    layer_fd_check(layer, xs)
    sym = factory()([Input(s[1:]) for s in shapes])
    assert sym.shape[1:] == layer.forward(xs).shape[1:]


def test_merge_values_follow_keras_broadcasting():
    x = rand(2, 3, 3, 4)
    gate = rand(2, 4, seed=2)  # (N, C) acts as (N, 1, 1, C)
    np.testing.assert_allclose(L.Multiply()([x, gate]), x * gate[:, None, None, :], rtol=1e-6)
    np.testing.assert_allclose(L.Average()([x, 3 * x]), 2 * x, rtol=1e-6)
    np.testing.assert_allclose(L.Subtract()([x, x]), 0)
    np.testing.assert_allclose(L.Maximum()([x, -x]), np.abs(x), rtol=1e-6)
    assert L.Concatenate(axis=-1)([x, x]).shape == (2, 3, 3, 8)
    layer = L.Add()
    layer.build([(3, 3, 4), (1, 1, 4)])
    assert layer.output_shape == (3, 3, 4)
    assert L.Add().compute_output_shape([(None, None, 4), (1, 1, 4)]) == (None, None, 4)


def test_merge_need_input_grad_false_and_dy_untouched():
    add = L.Add()
    x = rand(2, 3)
    add.forward([x, x], training=True)
    dy = np.ones((2, 3))
    d0, _ = add.backward(dy)
    assert np.shares_memory(d0, dy) or np.array_equal(d0, dy)
    assert np.array_equal(dy, np.ones((2, 3)))
    add.need_input_grad = False
    add.forward([x, x], training=True)
    assert add.backward(dy) is None


SHAPE_LAYERS = [
    ("reshape", lambda: L.Reshape((2, -1), **F64), (2, 3, 4)),
    ("reshape_se", lambda: L.Reshape((1, 1, 6), **F64), (2, 6)),
    ("gmp", lambda: L.GlobalMaxPooling2D(**F64), (2, 3, 4, 3)),
    ("gmp_keepdims", lambda: L.GlobalMaxPooling2D(keepdims=True, **F64), (2, 3, 3, 2)),
    ("shuffle", lambda: L.ChannelShuffle(3, **F64), (2, 2, 2, 6)),
    ("shuffle_wide", lambda: L.ChannelShuffle(2, **F64), (2, 3, 2, 10)),
    ("shuffle_square", lambda: L.ChannelShuffle(3, **F64), (1, 2, 3, 9)),
]


@pytest.mark.parametrize("groups,c", [(1, 4), (2, 12), (3, 6), (4, 4), (5, 15), (6, 12)])
def test_channel_shuffle_is_the_transpose_of_groups(groups, c):
    x = rand(2, 3, 5, c, seed=groups)
    layer = L.ChannelShuffle(groups, **F64)
    y = layer.forward(x, training=True)
    want = x.reshape(2, 3, 5, groups, c // groups).swapaxes(3, 4).reshape(x.shape)
    np.testing.assert_array_equal(y, want)
    assert y.flags.c_contiguous and not np.shares_memory(y, x)
    dy = rand(*x.shape, seed=9)
    dx = layer.backward(dy)  # the inverse permutation
    np.testing.assert_array_equal(dx.reshape(2, 3, 5, groups, c // groups).swapaxes(3, 4).reshape(x.shape), dy)
    np.testing.assert_array_equal(layer.forward(x[:, ::-1]), want[:, ::-1])  # a strided input


@pytest.mark.parametrize("name,factory,shape", SHAPE_LAYERS, ids=[s[0] for s in SHAPE_LAYERS])
def test_shape_layer_gradients(name, factory, shape):
    layer = factory()
    layer_fd_check(layer, rand(*shape, seed=4))
    layer.build(shape[1:])
    assert layer.forward(rand(*shape)).shape[1:] == layer.compute_output_shape(shape[1:])


def test_shape_layer_values_and_errors():
    x = rand(2, 3, 4, 5)
    np.testing.assert_allclose(L.GlobalMaxPooling2D()(x), x.max(axis=(1, 2)), rtol=1e-6)
    y = L.ChannelShuffle(2)(np.arange(6.0).reshape(1, 1, 1, 6))
    np.testing.assert_array_equal(y.ravel(), [0, 3, 1, 4, 2, 5])  # ShuffleNet's interleave
    assert L.Reshape((-1,))(x).shape == (2, 60)
    with pytest.raises(ValueError, match="total size"):
        L.Reshape((7, -1))(Input((3, 4)))
    with pytest.raises(ValueError, match="divisible by groups"):
        L.ChannelShuffle(4)(Input((2, 2, 6)))
    with pytest.raises(ValueError, match="at most one -1"):
        L.Reshape((-1, -1))


def test_new_layers_config_round_trip():
    for layer in [L.Reshape((1, 1, 4)), L.GlobalMaxPooling2D(keepdims=True), L.ChannelShuffle(2),
                  L.Concatenate(axis=2), L.Add(), L.Multiply()]:  # fmt: skip
        cfg = json.loads(json.dumps(L.serialize(layer)))
        clone = L.deserialize(cfg)
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


# ---------------------------------------------------------------------------
# New activations
# ---------------------------------------------------------------------------

NEW_ACTS = ["relu6", "leaky_relu", "hard_sigmoid", "swish", "silu", "hard_swish", "hard_silu", "gelu"]


@pytest.mark.parametrize("name", NEW_ACTS)
def test_new_activation_gradients(name):
    x = rand(3, 7) * 4  # spans the kinks of relu6 / hard_* at -3, 0, 3, 6
    x[0, :4] = [-4.0, 2.5, 7.0, -0.7]
    layer_fd_check(L.Activation(name, **F64), x, k=21)


@pytest.mark.parametrize("name", ["swish", "hard_swish", "gelu", "relu6"])
def test_fused_activation_in_conv_gradient(name):
    from layercheck import fd_check  # tests/ is on sys.path under pytest

    fd_check(L.Conv2D(3, 3, padding="same", activation=name, **F64), rand(2, 4, 4, 2), k=6)


def test_new_activation_values():
    x = np.array([-4.0, -3.0, -1.0, 0.0, 0.5, 3.0, 7.0])
    np.testing.assert_allclose(activations.relu6.forward(x), [0, 0, 0, 0, 0.5, 3, 6])
    np.testing.assert_allclose(activations.get("leaky_relu").forward(x)[:3], [-0.8, -0.6, -0.2])
    np.testing.assert_allclose(activations.hard_sigmoid.forward(x), np.clip(x + 3, 0, 6) / 6)
    np.testing.assert_allclose(activations.get("silu").forward(x), x / (1 + np.exp(-x)))
    np.testing.assert_allclose(activations.hard_swish.forward(x), x * np.clip(x + 3, 0, 6) / 6)
    assert activations.get("silu") is activations.swish
    assert activations.serialize("hard_silu") == "hard_swish"
    import math

    ref = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]
    np.testing.assert_allclose(activations.gelu.forward(x), ref, rtol=1e-14, atol=1e-15)
    grid = np.linspace(-7, 7, 1001)
    np.testing.assert_allclose(activations.erf(grid), [math.erf(v) for v in grid], rtol=0, atol=5e-16)
    assert activations.gelu.forward(grid.astype(np.float32)).dtype == np.float32


def test_activations_needing_x_refuse_a_copied_output():
    y = activations.swish.forward(rand(4))
    with pytest.raises(ValueError, match="carries x"):
        activations.swish.backward(np.ones(4), y.copy())


def test_new_activations_match_torch():
    torch = pytest.importorskip("torch")
    x = rand(200) * 5
    t = torch.tensor(x, requires_grad=True)
    pairs = {
        "relu6": torch.nn.functional.relu6,
        "swish": torch.nn.functional.silu,
        "hard_swish": torch.nn.functional.hardswish,
        "hard_sigmoid": torch.nn.functional.hardsigmoid,
        "gelu": torch.nn.functional.gelu,
        "leaky_relu": lambda v: torch.nn.functional.leaky_relu(v, 0.2),
    }
    for name, fn in pairs.items():
        act = activations.get(name)
        y = act.forward(x)
        ty = fn(t)
        (g,) = torch.autograd.grad(ty.sum(), t)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
        # torch rounds the 1/6 slope of hardsigmoid to float32
        np.testing.assert_allclose(act.backward(np.ones_like(x), y), g.numpy(), rtol=1e-7, atol=1e-12)


# ---------------------------------------------------------------------------
# fit / evaluate / predict with several inputs and outputs
# ---------------------------------------------------------------------------


def _two_in_two_out(dtype="float32", head_softmax="dense"):
    """Inputs a (6,) and b (3,); outputs: "cls" (3-way softmax) and "reg" (1 linear unit)."""
    kw = {"dtype": dtype}
    a, b = Input((6,), name="a", dtype=dtype), Input((3,), name="b", dtype=dtype)
    h = L.Concatenate(name="cat", **kw)([L.Dense(8, activation="tanh", name="enc_a", **kw)(a), b])
    if head_softmax == "dense":
        cls = L.Dense(3, activation="softmax", name="cls", **kw)(h)
    else:
        cls = L.Activation("softmax", name="cls", **kw)(L.Dense(3, name="cls_logits", **kw)(h))
    reg = L.Dense(1, name="reg", **kw)(L.Dense(4, activation="tanh", name="reg_hidden", **kw)(h))
    return Model([a, b], [cls, reg], name="two_heads")


def _two_in_two_out_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    xa = rng.normal(size=(n, 6)).astype(np.float32)
    xb = rng.normal(size=(n, 3)).astype(np.float32)
    y_cls = (xa[:, 0] > 0).astype(np.int64) + (xb[:, 0] > 0)
    y_reg = (0.5 * xa[:, 1] - xb[:, 2])[:, None].astype(np.float32)
    return xa, xb, y_cls, y_reg


def test_multi_io_fit_evaluate_predict_keras_names():
    from fastconv import optimizers

    model = _two_in_two_out()
    model.compile(
        optimizers.Adam(0.02),
        ["sparse_categorical_crossentropy", "mse"],
        metrics=["accuracy"],
        loss_weights=[1.0, 0.5],
    )
    xa, xb, yc, yr = _two_in_two_out_data()
    hist = model.fit([xa, xb], [yc, yr], batch_size=16, epochs=8, validation_split=0.25, verbose=0, seed=0)
    h = hist.history
    assert list(h) == [
        "loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_accuracy",
        "val_loss", "val_cls_loss", "val_reg_loss", "val_cls_accuracy", "val_reg_accuracy",
    ]  # fmt: skip
    # total = sum of weighted output losses (no regularizer here)
    for e in range(8):
        assert h["loss"][e] == pytest.approx(h["cls_loss"][e] + 0.5 * h["reg_loss"][e], rel=1e-6)
    assert h["cls_loss"][-1] < 0.6 * h["cls_loss"][0] and h["reg_loss"][-1] < 0.6 * h["reg_loss"][0]
    assert h["cls_accuracy"][-1] > 0.6  # chance: about 0.4

    res = model.evaluate([xa, xb], [yc, yr], verbose=0)
    by_name = model.evaluate({"a": xa, "b": xb}, {"cls": yc, "reg": yr}, verbose=0, return_dict=True)
    assert list(by_name) == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_accuracy"]
    np.testing.assert_allclose(res, list(by_name.values()))
    p_cls, p_reg = model.predict([xa, xb], batch_size=40)
    assert p_cls.shape == (96, 3) and p_reg.shape == (96, 1)
    np.testing.assert_allclose(p_cls.sum(axis=1), 1.0, rtol=1e-5)  # predict returns probabilities
    assert by_name["cls_loss"] == pytest.approx(losses.sparse_categorical_crossentropy(yc, p_cls), rel=1e-5)
    assert by_name["reg_loss"] == pytest.approx(losses.mse(yr, p_reg), rel=1e-5)
    assert by_name["cls_accuracy"] == pytest.approx(np.mean(p_cls.argmax(1) == yc))
    # train_on_batch / test_on_batch / predict_on_batch speak the same lists
    assert len(model.train_on_batch([xa[:8], xb[:8]], [yc[:8], yr[:8]])) == 5
    assert len(model.test_on_batch([xa[:8], xb[:8]], [yc[:8], yr[:8]])) == 5
    assert [o.shape for o in model.predict_on_batch([xa[:5], xb[:5]])] == [(5, 3), (5, 1)]


def test_multi_output_metrics_per_output_and_loss_dicts():
    model = _two_in_two_out()
    model.compile(
        "adam", {"cls": "sparse_categorical_crossentropy", "reg": "mse"}, metrics={"cls": "accuracy"}
    )
    xa, xb, yc, yr = _two_in_two_out_data(32)
    res = model.evaluate([xa, xb], [yc, yr], verbose=0, return_dict=True)
    assert list(res) == ["loss", "cls_loss", "reg_loss", "cls_accuracy"]
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"], metrics=[["accuracy"], []])
    assert [name for name, _, _ in model._metrics] == ["cls_accuracy"]
    with pytest.raises(ValueError, match="2 output"):
        model.compile("adam", ["mse"])
    with pytest.raises(ValueError, match="unknown outputs"):
        model.compile("adam", {"nope": "mse"})
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="2 outputs"):
        model.fit([xa, xb], yc, verbose=0)
    with pytest.raises(ValueError, match="expects 2 input"):
        model.fit(xa, [yc, yr], verbose=0)


@pytest.mark.parametrize("head", ["dense", "activation"])
def test_multi_output_weighted_gradient_float64(head):
    """The train step's gradients (fused softmax on the classification head, MSE on the other,
    loss weights) equal finite differences of sum_k w_k * loss_k(predict)."""
    from fastconv.engine.objective import _Objective

    model = _two_in_two_out("float64", head)
    model.compile("sgd", ["categorical_crossentropy", "mse"], loss_weights=[0.7, 2.0])
    xa, xb, yc, yr = _two_in_two_out_data(6, seed=3)
    xa, xb, yr = xa.astype(np.float64), xb.astype(np.float64), yr.astype(np.float64)
    obj = _Objective(model)
    assert set(obj.fused) == {0}  # the cross-entropy head runs on logits
    plan = model._plan()
    outs = plan.forward([xa, xb], training=True, fusion=obj.fusion)
    total, _, dys = obj.losses_and_grads([yc, yr], outs)
    plan.backward(dys, fusion=obj.fusion)
    analytic = {k: g.copy() for k, _, g in model.trainable_pairs()}

    def loss():
        p_cls, p_reg = model.predict([xa, xb])
        return 0.7 * losses.categorical_crossentropy(yc, p_cls) + 2.0 * losses.mse(yr, p_reg)

    assert total == pytest.approx(loss(), rel=1e-9)
    rng = np.random.default_rng(0)
    for key, p, _ in model.trainable_pairs():
        for idx in _coords(p.shape, rng, 4):
            old = p[idx]
            p[idx] = old + EPS
            fp = loss()
            p[idx] = old - EPS
            fm = loss()
            p[idx] = old
            np.testing.assert_allclose(analytic[key][idx], (fp - fm) / (2 * EPS), rtol=1e-5, atol=1e-8)


def test_output_without_loss_trains_nothing_on_its_branch():
    from fastconv import optimizers

    model = _two_in_two_out()
    model.compile(optimizers.SGD(0.1), ["sparse_categorical_crossentropy", None], metrics=["accuracy"])
    xa, xb, yc, _ = _two_in_two_out_data(32)
    reg_layers = [model.get_layer("reg"), model.get_layer("reg_hidden")]
    for layer in reg_layers:  # stale gradients from an earlier step must not be applied
        for g in layer.grads.values():
            g[...] = 1.0
    before = [w.copy() for layer in reg_layers for w in layer.get_weights()]
    enc = model.get_layer("enc_a").get_weights()[0].copy()
    hist = model.fit([xa, xb], [yc, None], epochs=2, batch_size=8, verbose=0)
    assert list(hist.history) == ["loss", "cls_loss", "cls_accuracy"]
    after = [w for layer in reg_layers for w in layer.get_weights()]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.get_layer("enc_a").get_weights()[0], enc)


def test_softmax_output_also_consumed_inside_is_not_fused():
    """An output that another layer also reads must stay probabilities in the training forward."""
    from fastconv.engine.objective import _Objective

    inp = Input((4,))
    p = L.Dense(3, activation="softmax", name="probs")(inp)
    q = L.Dense(2, activation="softmax", name="second")(p)
    model = Model(inp, [p, q])
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert set(_Objective(model).fused) == {1}


def test_multi_io_save_load_keeps_compile_settings(tmp_path):
    from fastconv import load_model

    model = _two_in_two_out()
    model.compile(
        "adam", ["sparse_categorical_crossentropy", "mse"], metrics=["accuracy"], loss_weights=[1, 3]
    )
    xa, xb, yc, yr = _two_in_two_out_data(16)
    model.fit([xa, xb], [yc, yr], epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded._loss_weights == [1.0, 3.0]
    assert [n for n, _, _ in loaded._metrics] == ["cls_accuracy", "reg_accuracy"]
    for p, q in zip(model.predict([xa, xb]), loaded.predict([xa, xb])):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_allclose(
        loaded.evaluate([xa, xb], [yc, yr], verbose=0), model.evaluate([xa, xb], [yc, yr], verbose=0)
    )


def test_symbolic_call_is_direct_not_a_hook():
    from fastconv.layers import _symbolic, base

    assert Layer.__call__ is base.Layer.__call__
    assert "functional" not in getattr(Layer.__call__, "__module__", "")
    # Layer.__call__ reaches the symbolic tensors below it directly; nothing is installed from above.
    assert not hasattr(base, "_SYMBOLIC_CALL") and not hasattr(base, "register_symbolic_call")
    assert base._symbolic is _symbolic
    t = L.Dense(2)(Input((3,)))
    assert isinstance(t, KerasTensor) and t.shape == (None, 2)
    y = L.Dense(2)(np.ones((4, 3), np.float32))
    assert isinstance(y, np.ndarray) and y.shape == (4, 2)
