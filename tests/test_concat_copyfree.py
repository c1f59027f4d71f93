"""Copy-free concatenation: ops.conv2d writing into a channel slice (every forward kernel path, SIMD
level, thread count, float32/64, NaN around the slice), and the execution plan handing a
Concatenate's producers their slices (fastconv/engine/graph.py concat_placements), against the
copying path (FASTCONV_COPYFREE_CONCAT=0): outputs, gradients, fit and predict of the zoo's
Inception and DenseNet."""

import numpy as np
import pytest

from fastconv import Input, Model, _dispatch, initializers, models, ops
from fastconv import layers as L
from fastconv import reference as ref
from fastconv.engine import graph as _graph
from fastconv.ops import conv as conv_ops

LEVELS = [name for name, lvl in _dispatch.LEVELS.items() if lvl <= _dispatch.cpu_level()]
F64 = {"dtype": "float64"}


@pytest.fixture(autouse=True)
def _restore():
    threads = _dispatch.get_num_threads()
    yield
    _dispatch.set_conv_algo(None)
    _dispatch.set_simd(None)
    _dispatch.set_num_threads(threads)


def rand(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def into_slice(x, w, b, before, after, **kw):
    """conv2d into channels [before, before + K) of a NaN-filled (N, OH, OW, before + K + after)
    tensor -> (that tensor, the returned array)."""
    fresh = ops.conv2d(x, w, b, **kw)
    K = fresh.shape[3]
    big = np.full((*fresh.shape[:3], before + K + after), np.nan, fresh.dtype)
    y = ops.conv2d(x, w, b, **kw, out=big[..., before:before + K])
    return fresh, big, y


# (N, H, W, C, K, kernel, options, algorithm, kernel path it should take)
CASES = [
    ((2, 9, 11, 5, 7, 3, {"padding": "same"}, "direct")),
    ((2, 9, 11, 3, 13, 3, {"padding": "same"}, "direct")),           # few input channels (rowk)
    ((1, 13, 10, 6, 9, 5, {"stride": 2}, "direct")),
    ((2, 7, 8, 17, 3, 1, {}, "direct")),                             # pointwise, one pixel row
    ((1, 8, 9, 8, 12, 3, {"groups": 4, "padding": "same"}, "direct")),
    ((2, 11, 9, 6, 33, 3, {"padding": "same"}, "winograd4")),
    ((1, 10, 7, 9, 5, 3, {"padding": "same", "dilation": 2}, "winograd2")),
    ((3, 5, 6, 7, 4, 3, {"dilation": (1, 2), "padding": "valid"}, "direct")),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}-k{c[5]}-{c[7]}")
def test_conv2d_into_channel_slice(case, dtype):
    N, H, W, C, K, k, opts, algo = case
    x = rand((N, H, W, C), dtype, 1)
    w = rand((k, k, C // opts.get("groups", 1), K), dtype, 2)
    b = rand((K,), dtype, 3)
    _dispatch.set_conv_algo(algo)
    paths = set()
    for level in LEVELS if dtype == np.float32 else LEVELS[:1]:
        _dispatch.set_simd(level)
        for threads in (1, 2):
            _dispatch.set_num_threads(threads)
            for relu in (False, True):
                for before, after in ((0, 5), (3, 0), (2, 9)):
                    fresh, big, y = into_slice(x, w, b if relu else None, before, after, relu=relu, **opts)
                    paths.add(_dispatch.last_kernel["conv2d"])
                    assert y.ctypes.data == big[..., before:].ctypes.data
                    np.testing.assert_array_equal(big[..., before:before + K], fresh)
                    assert np.isnan(big[..., :before]).all() and np.isnan(big[..., before + K:]).all()
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **opts)
    np.testing.assert_allclose(np.maximum(fresh, 0), np.maximum(want, 0), rtol=1e-4, atol=1e-4)
    assert algo == "direct" or paths == {algo}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_narrow_kernel_into_slice(monkeypatch, dtype):
    monkeypatch.setattr(conv_ops, "_force_narrow", True)
    _dispatch.set_conv_algo("direct")
    x, w, b = rand((2, 7, 10, 11), dtype, 4), rand((3, 3, 11, 5), dtype, 5), rand((5,), dtype, 6)
    for threads in (1, 2):
        _dispatch.set_num_threads(threads)
        fresh, big, _ = into_slice(x, w, b, 4, 3, padding="same", relu=True)
        assert _dispatch.last_kernel["conv2d"] == "narrow"
        np.testing.assert_array_equal(big[..., 4:9], fresh)
        assert np.isnan(big[..., :4]).all() and np.isnan(big[..., 9:]).all()


@pytest.mark.parametrize("activation", ["selu", "gelu", "sigmoid"])
@pytest.mark.parametrize("algo", ["direct", "winograd4"])
def test_conv2d_into_slice_with_activation(activation, algo):
    """An activation after the tile (or a second pass): the slice gets act(conv) and nothing else."""
    _dispatch.set_conv_algo(algo)
    x, w, b = rand((2, 9, 8, 6), np.float64, 7), rand((3, 3, 6, 10), np.float64, 8), rand((10,), np.float64, 9)
    fresh = ops.conv2d(x, w, b, padding="same", activation=activation)
    big = np.full((2, 9, 8, 15), np.nan)
    ops.conv2d(x, w, b, padding="same", activation=activation, out=big[..., 2:12])
    np.testing.assert_array_equal(big[..., 2:12], fresh)
    assert np.isnan(big[..., :2]).all() and np.isnan(big[..., 12:]).all()


def test_conv2d_out_must_be_a_channel_slice():
    x, w = rand((2, 6, 6, 3), np.float32), rand((3, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="channel slice"):  # images 5 rows apart
        ops.conv2d(x, w, out=np.zeros((2, 5, 4, 4), np.float32)[:, :4])
    with pytest.raises(ValueError, match="channel slice"):  # channels not contiguous
        ops.conv2d(x, w, out=np.zeros((2, 4, 4, 8), np.float32)[..., ::2])
    with pytest.raises(ValueError, match="channel slice"):  # a transposed view
        ops.conv2d(x, w, out=np.zeros((2, 4, 4, 4), np.float32).transpose(0, 2, 1, 3))
    with pytest.raises(ValueError, match="shape"):
        ops.conv2d(x, w, out=np.zeros((2, 4, 4, 5), np.float32)[..., :3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("grad", ["relu_grad", "relu6_grad"])
def test_clamp_gradient_over_a_channel_slice(grad, dtype):
    """The backward of a ReLU producer whose cached output is its slice of the concatenation."""
    big = rand((3, 5, 7, 19), dtype, 1) * 4
    y = big[..., 4:13]
    dy = rand(y.shape, dtype, 2)
    want = getattr(ops, grad)(dy, np.ascontiguousarray(y))
    for level in LEVELS if dtype == np.float32 else LEVELS[:1]:
        _dispatch.set_simd(level)
        for threads in (1, 2):
            _dispatch.set_num_threads(threads)
            got = getattr(ops, grad)(dy, y)
            assert _dispatch.last_kernel[grad] == "kernel_rows"
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, dy * ((y > 0) & (y < (6 if grad == "relu6_grad" else np.inf))))


def test_pixel_rows():
    from fastconv.ops._validate import pixel_rows

    a = np.arange(2 * 3 * 4 * 10, dtype=np.float32).reshape(2, 3, 4, 10)
    rows = pixel_rows(a[..., 2:7])
    assert rows.shape == (24, 5) and rows.strides == (40, 4)
    np.testing.assert_array_equal(rows, a[..., 2:7].reshape(24, 5))
    np.testing.assert_array_equal(pixel_rows(a[:, :1, :1, 3:5]), a[:, 0, 0, 3:5])  # unit axes: any strides
    assert pixel_rows(a[:, :2]) is None  # images 3 rows apart, 2 rows each
    assert pixel_rows(a[..., ::2]) is None
    assert pixel_rows(a[:, :, ::2, :3]).shape == (12, 3)  # every other pixel: still evenly spaced


# ---- the plan ----------------------------------------------------------------------------------


def branchy():
    """Every producer kind into one channel concatenation, odd channel counts, float64."""
    inp = Input((7, 9, 5), name="x")
    a = L.Conv2D(3, 1, activation="relu", name="a_1x1_relu", **F64)(inp)
    b = L.Conv2D(5, 3, padding="same", name="b_3x3", **F64)(inp)
    c = L.Conv2D(4, 3, padding="same", activation="selu", name="c_selu", **F64)(inp)
    d = L.MaxPooling2D(3, strides=1, padding="same", name="d_pool", **F64)(inp)
    e = L.Conv2D(6, 1, name="e_shared", **F64)(inp)  # also read by f: must not be placed
    g = L.Conv2D(7, 5, padding="same", activation="swish", name="g_swish", **F64)(inp)
    h = L.Conv2D(3, 3, padding="same", name="h_pre_bn", **F64)(inp)
    h = L.BatchNormalization(name="h_bn", **F64)(h)
    cat = L.Concatenate(name="cat", **F64)([a, b, c, d, e, g, h])
    f = L.Conv2D(2, 1, name="f", **F64)(e)
    k = L.Conv2D(9, 3, padding="same", activation="relu", name="k", **F64)(cat)
    m = L.Conv2D(4, 1, name="m", **F64)(cat)
    cat2 = L.Concatenate(name="cat2", **F64)([k, f, m])
    cat2 = L.Activation("relu", name="cat2_relu", **F64)(cat2)  # fused into cat2: its inputs stay copied
    n = L.Conv2D(5, 3, padding="same", activation="relu", name="n", **F64)(cat2)
    o = L.Conv2D(3, 1, name="o", **F64)(cat2)
    cat3 = L.Concatenate(name="cat3", **F64)([n, o])
    pooled = L.GlobalAveragePooling2D(name="gap", **F64)(cat3)
    out = L.Dense(4, name="head", **F64)(pooled)
    model = Model(inp, [out, cat], name="branchy")
    bn = model.get_layer("h_bn")
    bn.params["gamma"][...] = [0.5, 2.0, -1.0]
    bn.state["moving_mean"][...] = [0.1, -0.2, 0.3]
    bn.state["moving_variance"][...] = [0.5, 1.5, 2.0]
    return model


def _names(plan, placements):
    return {plan.nodes[i].layer.name: plan.nodes[j].layer.name for i, (j, *_) in placements.items()}


def test_placements_follow_the_rules(monkeypatch):
    monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", "1")
    model = branchy()
    plan = model._plan()
    fusion = plan.activation_fusion()
    placed = _names(plan, plan.concat_placements(fusion))
    # cat is a model output: its producers still write into it (the output is the buffer)
    assert placed == {"a_1x1_relu": "cat", "b_3x3": "cat", "c_selu": "cat", "g_swish": "cat",
                      "n": "cat3", "o": "cat3"}
    # not placed: the pooling (no out=), e (also read by f), h_bn (not a conv), cat2's producers
    # (cat2 applies the fused relu in place on its output)
    assert placed == _names(plan, plan.concat_placements(plan.inference_fusion(fusion)))


def test_placements_off_by_environment(monkeypatch):
    plan = branchy()._plan()
    monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", "0")
    assert plan.concat_placements() == {}
    monkeypatch.delenv("FASTCONV_COPYFREE_CONCAT", raising=False)
    assert bool(plan.concat_placements()) == _graph.COPYFREE_CONCAT_DEFAULT
    monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", "1")
    assert plan.concat_placements()


def _run(model, x, mode, monkeypatch, nan=True):
    monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", mode)
    if nan:
        monkeypatch.setattr(_graph, "_concat_buffer", lambda shape, dtype: np.full(shape, np.nan, dtype))
    outs = model._forward(x, training=True)
    rng = np.random.default_rng(5)
    dys = [rng.standard_normal(o.shape) for o in outs]
    model._backward(dys)
    grads = {key: g.copy() for key, _, g in model.trainable_pairs()}
    pred = model._forward(x, training=False)
    return [o.copy() for o in outs], grads, [p.copy() for p in pred]


def test_plan_outputs_and_gradients_equal_the_copying_path(monkeypatch):
    model = branchy()
    x = rand((3, 7, 9, 5), np.float64, 11)
    start = [w.copy() for w in model.get_weights()]
    copied = _run(model, x, "0", monkeypatch)
    model.set_weights(start)  # the training forward moved the BatchNormalization statistics
    free = _run(model, x, "1", monkeypatch)
    for a, b in zip(copied[0] + copied[2], free[0] + free[2]):
        assert not np.isnan(b).any()
        np.testing.assert_array_equal(a, b)
    assert copied[1].keys() == free[1].keys()
    for key in copied[1]:
        np.testing.assert_array_equal(copied[1][key], free[1][key], err_msg=key)


def test_plan_gradient_by_finite_differences(monkeypatch):
    from test_engine_functional import model_fd_check

    monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", "1")
    model = branchy()
    x = rand((2, 7, 9, 5), np.float64, 12)
    assert model_fd_check(model, x, k=3) > 0


def test_producer_read_elsewhere_is_not_aliased(monkeypatch):
    """e feeds cat and f: it keeps its own array, so f sees e and cat holds a copy."""
    monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", "1")
    model = branchy()
    x = rand((2, 7, 9, 5), np.float64, 13)
    plan = model._plan()
    e_node = next(i for i, n in enumerate(plan.nodes) if n.layer.name == "e_shared")
    seen = {}
    layer = plan.nodes[e_node].layer
    forward = layer.forward

    def spy(*args, **kw):
        seen["out"] = kw.get("out")
        return forward(*args, **kw)

    monkeypatch.setattr(layer, "forward", spy)
    model._forward(x)
    assert "out" in seen and seen["out"] is None


def test_concatenate_out_copies_only_inputs_not_in_place():
    cat = L.Concatenate(**F64)
    a, b = rand((2, 3, 4, 3), np.float64, 1), rand((2, 3, 4, 5), np.float64, 2)
    out = np.full((2, 3, 4, 8), np.nan)
    out[..., :3] = a
    y = cat.forward([out[..., :3], b], out=out)
    assert y is out
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=-1))
    with pytest.raises(ValueError, match="shape"):
        cat.forward([a, b], out=np.empty((2, 3, 4, 9)))
    with pytest.raises(ValueError, match="cannot write its output"):
        L.Add(**F64).forward([a, a], out=np.empty_like(a))


@pytest.mark.parametrize("make", [models.inception_small, models.densenet_small])
def test_zoo_fit_and_predict_equal(make, monkeypatch):
    x = rand((6, 16, 16, 1), np.float32, 21)
    y = np.eye(10, dtype=np.float32)[np.arange(6) % 10]
    results = []
    for mode in ("0", "1"):
        monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", mode)
        initializers.set_seed(7)  # the same dropout masks in both runs
        model = make(input_shape=(16, 16, 1))
        rng = np.random.default_rng(3)
        for layer in model.layers:  # trainable weights away from the initial zeros and ones
            for w in layer.params.values():
                w[...] = rng.standard_normal(w.shape) * 0.2
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        if mode == "1":
            assert model._plan().concat_placements(model._plan().activation_fusion())
        model.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
        results.append((model.get_weights(), model.predict(x, batch_size=4, verbose=0)))
    (w0, p0), (w1, p1) = results
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(p1).all()
    np.testing.assert_array_equal(p0, p1)


@pytest.mark.large
@pytest.mark.parametrize("k, algo, narrow", [(1, "direct", None), (3, "direct", None), (3, "direct", True),
                                             (3, "winograd4", None)])
def test_slice_of_a_tensor_past_2_31_elements(monkeypatch, k, algo, narrow):
    """Pixels 2**27 + 16 channels apart: the slice's last pixels sit past element 2**31 of the
    8.6 GB (lazily mapped) tensor, so a 32-bit pixel address would wrap. Few pixels: each first
    touch of a page far from the others costs a fault (a huge page's zeroing)."""
    from large import INT32_MAX, lazy_zeros  # tests/large.py

    monkeypatch.setattr(conv_ops, "_force_narrow", narrow)
    _dispatch.set_conv_algo(algo)
    total, c0, K = 2**27 + 16, 2**27 - 3, 5
    big = lazy_zeros((1, 4, 4, total))
    assert 15 * total + c0 > INT32_MAX  # the last pixel's first element
    x, w, b = rand((1, 4, 4, 7), np.float32, 1), rand((k, k, 7, K), np.float32, 2), rand((K,), np.float32, 3)
    fresh = ops.conv2d(x, w, b, padding="same", relu=True)
    ops.conv2d(x, w, b, padding="same", relu=True, out=big[..., c0:c0 + K])
    np.testing.assert_array_equal(big[..., c0:c0 + K], fresh)
    assert not big[..., c0 - 1].any() and not big[..., c0 + K].any()
