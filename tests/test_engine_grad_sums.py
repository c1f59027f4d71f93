"""The execution plan's gradient sums: a tensor's gradients from several consumers are added in
place into an array the backward pass owns (a sum it allocated, or the fresh dx of a layer declaring
``fresh_input_grad``), Concatenate's input gradients are views of its dy, and a view that reaches a
layer's backward alone is copied to a C-contiguous array first.

Checked here: gradients by central differences in float64 on DenseNet / Inception / ResNet-like
graphs (concatenation of concatenations, a tensor twice in one concatenation, an identity branch),
bit-equality in float32 with the allocating sum ``prev + g`` (the behaviour before), the caller's
output gradients never written, and BatchNormalization's dx sharing memory with nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_engine_functional import model_fd_check

from fastconv import Input, Model, initializers
from fastconv import layers as L
from fastconv.engine import graph as _graph

F64 = {"dtype": "float64"}


def _dense_graph(dtype="float64", relu_fused=True):
    """Two DenseNet layers (BN-ReLU-conv, concatenated onto their input), a concatenation of a
    tensor with itself, a 1x1 branch summed with an identity, and a classifier."""
    kw = {"dtype": dtype}
    inp = Input((5, 7, 3), **kw)
    x = L.Conv2D(5, 3, padding="same", use_bias=False, name="stem", **kw)(inp)
    for i in range(2):
        h = L.BatchNormalization(name=f"bn{i}", **kw)(x)
        h = L.Activation("relu", name=f"relu{i}", **kw)(h) if relu_fused else L.Activation("tanh", **kw)(h)
        h = L.Conv2D(3, 3, padding="same", name=f"conv{i}", **kw)(h)
        x = L.Concatenate(name=f"cat{i}", **kw)([x, h])  # 8, then 11 channels
    twice = L.Concatenate(name="twice", **kw)([x, x])  # one tensor in both slices
    b = L.Conv2D(22, 1, name="branch", **kw)(twice)
    y = L.Add(name="add", **kw)([b, twice])  # the identity's gradient is Add's dy
    y = L.BatchNormalization(name="bn_last", **kw)(y)
    y = L.GlobalAveragePooling2D(**kw)(y)
    out = L.Dense(4, name="head", **kw)(y)
    return Model(inp, out)


def _inception_graph(dtype="float64"):
    kw = {"dtype": dtype}
    inp = Input((6, 5, 4), **kw)
    x = L.Conv2D(6, 3, padding="same", name="stem", **kw)(inp)
    a = L.Conv2D(3, 1, name="a", **kw)(x)
    b = L.Conv2D(2, 3, padding="same", name="b", **kw)(x)
    c = L.MaxPooling2D(3, strides=1, padding="same", **kw)(x)
    c = L.Conv2D(1, 1, name="c", **kw)(c)
    y = L.Concatenate(**kw)([a, b, c])  # each slice reaches a conv's backward alone
    y = L.Concatenate(**kw)([y, x])  # ... and x's gradient sums four contributions
    y = L.GlobalAveragePooling2D(**kw)(y)
    return Model(inp, L.Dense(3, name="head", **kw)(y))


@pytest.mark.parametrize("build", [_dense_graph, _inception_graph])
def test_gradients_by_finite_differences_float64(build):
    initializers.set_seed(5)
    model = build()
    x = np.random.default_rng(1).standard_normal((3, *model.input_shape[1:]))
    assert model_fd_check(model, x, k=5) > 20


def test_untrained_activation_graph_by_finite_differences():
    initializers.set_seed(6)
    model = _dense_graph(relu_fused=False)
    x = np.random.default_rng(2).standard_normal((2, 5, 7, 3))
    model_fd_check(model, x, k=4)


def _grads(model, x, dy):
    model._forward(x, training=True)
    model._backward(dy)
    return {key: g.copy() for key, _, g in model.trainable_pairs()}


@pytest.mark.parametrize("build", [_dense_graph, _inception_graph])
def test_in_place_sums_equal_the_allocating_sum_bit_for_bit(build, monkeypatch):
    initializers.set_seed(7)
    model = build("float32")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, *model.input_shape[1:])).astype(np.float32)
    dy = rng.standard_normal((4, model.output_shape[-1])).astype(np.float32)
    got = _grads(model, x, dy)

    def allocating(grads, owned, t, g, g_owned):  # the plan's sum before in-place accumulation
        prev = grads.get(t)
        grads[t] = g if prev is None else prev + g

    monkeypatch.setattr(_graph, "_add_grad", allocating)
    want = _grads(model, x, dy)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_output_gradients_given_are_not_written():
    """An output that other nodes read too: its gradient (the caller's array) is summed with theirs."""
    initializers.set_seed(8)
    inp = Input((4, 4, 2), **F64)
    h = L.Conv2D(3, 3, padding="same", name="h", **F64)(inp)
    cat = L.Concatenate(**F64)([h, h])
    n = L.BatchNormalization(**F64)(cat)
    s = L.Conv2D(6, 1, name="s", **F64)(n)
    model = Model(inp, [cat, s])
    x = np.random.default_rng(4).standard_normal((2, 4, 4, 2))
    rng = np.random.default_rng(5)
    dys = [rng.standard_normal((2, 4, 4, 6)) for _ in range(2)]
    kept = [d.copy() for d in dys]
    model._forward(x, training=True)
    model._backward(dys)
    for d, k in zip(dys, kept):
        np.testing.assert_array_equal(d, k)
    model_fd_check(model, x, k=4)


def test_concatenate_backward_returns_views_of_dy():
    cat = L.Concatenate()
    xs = [np.ones((2, 3, 3, c), np.float32) for c in (2, 5, 1)]
    cat.forward(xs, training=True)
    dy = np.arange(2 * 3 * 3 * 8, dtype=np.float32).reshape(2, 3, 3, 8)
    gs = cat.backward(dy)
    assert [g.shape[-1] for g in gs] == [2, 5, 1]
    assert all(np.shares_memory(g, dy) for g in gs)
    np.testing.assert_array_equal(np.concatenate(gs, axis=-1), dy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, sl", [
    ((2, 3, 5, 9), np.s_[..., 2:7]),
    ((1, 1, 1, 4), np.s_[..., :1]),
    ((3, 11), np.s_[:, 3:]),
    ((2, 2, 3, 2, 6), np.s_[..., 1:4]),
    ((0, 4, 4, 6), np.s_[..., :3]),
    ((2, 4, 4, 6), np.s_[..., ::2]),  # not a run per pixel: NumPy's copy
    ((2, 4, 4, 6), np.s_[:, ::-1, :, 1:3]),
])
def test_contiguous_copy_of_a_slice(dtype, shape, sl):
    a = np.random.default_rng(6).standard_normal(shape).astype(dtype)
    before = a.copy()
    v = a[sl]
    c = _graph._contiguous(v)
    assert c.flags.c_contiguous and c.dtype == v.dtype and c.shape == v.shape
    assert not np.shares_memory(c, a)
    np.testing.assert_array_equal(c, v)
    np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("mode", ["train", "relu", "frozen"])
def test_batch_normalization_dx_is_fresh(mode):
    assert L.BatchNormalization.fresh_input_grad is True
    rng = np.random.default_rng(9)
    bn = L.BatchNormalization(**F64)
    x = rng.standard_normal((3, 4, 4, 5))
    bn.build(x.shape[1:])
    if mode == "frozen":
        bn.trainable = False
    bn.forward(x, training=True, **({"epilogue": "relu"} if mode == "relu" else {}))
    dy = rng.standard_normal(x.shape)
    dx = bn.backward(dy)
    held = [dy, x, *bn.params.values(), *bn.state.values(), *bn.grads.values()]
    held += [a for a in (bn._cache or ()) if isinstance(a, np.ndarray)]
    assert not any(np.shares_memory(dx, a) for a in held)
    assert dx.flags.c_contiguous and dx.flags.writeable
