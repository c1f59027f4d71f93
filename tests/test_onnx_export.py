"""ONNX export (``fastconv/engine/onnx_export.py``, public as ``fastconv.onnx`` and
``model.export(path, format="onnx")``): every zoo model and small models covering every layer kind
and option run through ONNX Runtime and agree with ``model.predict``; the file passes
``onnx.checker``, is written atomically, and layers that cannot be exported are refused by name.

Weights and BatchNormalization statistics are randomised first (fresh statistics are the identity
and would hide a wrong fold), and the zoo's final softmax is compared as logits too (a saturated
softmax would hide an error in everything before it)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import Model, Sequential, activations, models
from fastconv import layers as L
from fastconv.layers.input_layer import Input

onnx = pytest.importorskip("onnx")  # both are in the test extra; skipped only outside it
ort = pytest.importorskip("onnxruntime")
fc_onnx = pytest.importorskip("fastconv.onnx")


# ---- helpers ----------------------------------------------------------------------------------------


def _walk(layer):
    yield layer
    for sub in getattr(layer, "sublayers", ()):
        yield from _walk(sub)


def randomize(model, seed=0):
    """Random weights and BatchNormalization statistics (positive variances, gammas near 1)."""
    rng = np.random.default_rng(seed)
    for top in model.layers:
        for layer in _walk(top):
            for store in (layer.params, getattr(layer, "state", {})):
                for key, a in store.items():
                    if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                        continue
                    if "variance" in key:
                        a[...] = rng.uniform(0.5, 2.0, a.shape)
                    elif key == "gamma":
                        a[...] = rng.uniform(0.5, 1.5, a.shape)
                    else:  # weights keep their scale (activations stay moderate); zeros get 0.1
                        spread = float(a.std()) if a.size > 1 and a.std() > 0 else 0.1
                        a[...] = a + rng.normal(0.0, 0.5 * spread, a.shape)
    return model


def run_onnx(proto, xs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {i.name: np.asarray(x, np.float32) for i, x in zip(sess.get_inputs(), xs)}
    return sess.run(None, feed)


def assert_close(got, want, what):
    want = np.asarray(want, np.float64)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    assert got.shape == want.shape, (what, got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


def check(model, xs=None, batch=3, seed=1, opset=17, randomized=False):
    """Export ``model``, run it in ONNX Runtime and compare with predict; returns the proto."""
    if not randomized:
        randomize(model, seed)
    rng = np.random.default_rng(seed + 100)
    if xs is None:
        shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
        xs = [rng.normal(size=(batch, *s[1:])).astype(np.float32) for s in shapes]
    want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    want = want if isinstance(want, list) else [want]
    proto = fc_onnx.to_onnx(model, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    got = run_onnx(proto, xs)
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, f"{model.name} output {k}")
    return proto


def seq(shape, *layers, name=None):
    return Sequential([Input(shape), *layers], name=name)


def op_types(proto):
    return [n.op_type for n in proto.graph.node]


# ---- the zoo ----------------------------------------------------------------------------------------


def _last_layer_linear(model):
    """Drop the final softmax (logits), wherever the model applies it."""
    last = model.layers[-1]
    if isinstance(last, L.Activation):
        last.activation = activations.linear
    else:
        assert last.activation.name == "softmax", (model.name, last)
        last.activation = activations.linear


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_zoo_model_runs_in_onnx_runtime_as_predict(name):
    model = randomize(models.MODELS[name](), seed=3)
    proto = check(model, randomized=True)
    assert [o.name for o in proto.graph.output] == model._output_names()
    _last_layer_linear(model)
    check(model, randomized=True)  # the logits too


def test_export_keeps_nhwc_at_the_edges_and_the_batch_free():
    model = models.segnet_small()
    proto = check(model, batch=2)
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 28, 28, 1]
    out_dims = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == ["batch", 28, 28, 2]
    x = np.random.default_rng(0).normal(size=(5, 28, 28, 1)).astype(np.float32)
    assert_close(run_onnx(proto, [x])[0], model.predict(x, verbose=0), "batch of 5")
    # a conv chain stays NCHW: one Transpose in, one out
    assert op_types(proto).count("Transpose") == 2


# ---- convolutions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"filters": 4, "kernel_size": 3},
        {"filters": 5, "kernel_size": (3, 2), "strides": 2, "padding": "same"},  # asymmetric "same" pads
        {"filters": 4, "kernel_size": 4, "strides": (2, 3), "padding": "same"},
        {"filters": 3, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
        {"filters": 6, "kernel_size": 3, "groups": 2, "padding": "same", "activation": "relu"},
        {"filters": 4, "kernel_size": 1, "use_bias": False, "activation": "tanh"},
    ],
)
def test_conv2d_options(kw):
    check(seq((9, 8, 4), L.Conv2D(**kw)))


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 3},
        {"kernel_size": 3, "depth_multiplier": 2, "strides": 2, "padding": "same"},
        {"kernel_size": (2, 3), "dilation_rate": 2, "padding": "same", "activation": "relu6"},
    ],
)
def test_depthwise_options(kw):
    check(seq((9, 7, 3), L.DepthwiseConv2D(**kw)))


@pytest.mark.parametrize(
    "kw",
    [
        {"filters": 5, "kernel_size": 3},
        {
            "filters": 4,
            "kernel_size": 3,
            "depth_multiplier": 2,
            "strides": 2,
            "padding": "same",
            "activation": "relu",
        },
        {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "use_bias": False},
    ],
)
def test_separable_options(kw):
    check(seq((9, 8, 3), L.SeparableConv2D(**kw)))


@pytest.mark.parametrize(
    "kw",
    [
        {"filters": 3, "kernel_size": 3},
        {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"},
        {"filters": 2, "kernel_size": 1, "strides": 3},  # kernel smaller than the stride
        {"filters": 2, "kernel_size": 2, "strides": 3, "padding": "same"},
        {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same", "output_padding": 1},
        {"filters": 3, "kernel_size": 4, "strides": 3, "output_padding": 2},
        {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
        {"filters": 4, "kernel_size": 3, "strides": 2, "groups": 2, "activation": "sigmoid"},
    ],
)
def test_conv_transpose_options(kw):
    check(seq((5, 4, 4), L.Conv2DTranspose(**kw)))


# ---- pooling ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [L.MaxPooling2D, L.AveragePooling2D])
@pytest.mark.parametrize(
    "kw",
    [
        {"pool_size": 2},
        {"pool_size": 3, "strides": 2},
        {"pool_size": 3, "strides": 2, "padding": "same"},  # TensorFlow's rule: pads not counted
        {"pool_size": (2, 3), "strides": (1, 2), "padding": "same"},
    ],
)
def test_pools(cls, kw):
    check(seq((9, 8, 3), L.Conv2D(3, 1), cls(**kw)))


@pytest.mark.parametrize("cls", [L.GlobalAveragePooling2D, L.GlobalMaxPooling2D])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pools(cls, keepdims):
    check(seq((5, 6, 3), L.Conv2D(4, 3), cls(keepdims=keepdims)))


# ---- normalisation, dense, shapes -------------------------------------------------------------------


def test_batchnorm_after_conv_dense_and_without_scale_or_center():
    check(seq((6, 6, 3), L.Conv2D(4, 3, use_bias=False), L.BatchNormalization(), L.ReLU()))
    check(seq((6, 6, 3), L.BatchNormalization(center=False, scale=False, epsilon=0.1)))  # native NHWC
    check(seq((7,), L.Dense(5), L.BatchNormalization(), L.Activation("selu")))


@pytest.mark.parametrize(
    "conv",
    [
        lambda: L.Conv2D(4, 3, groups=2, padding="same"),
        lambda: L.Conv2D(4, 1, use_bias=False),
        lambda: L.DepthwiseConv2D(3, depth_multiplier=2),
        lambda: L.SeparableConv2D(3, 3, strides=2),
        lambda: L.Conv2DTranspose(6, 3, strides=2, groups=2),
        lambda: L.Conv2DTranspose(3, 2, padding="same", use_bias=False),
    ],
)
def test_batchnorm_folds_into_the_conv_before_it(conv):
    proto = check(seq((5, 6, 4), conv(), L.BatchNormalization(), L.Activation("relu")))
    types = op_types(proto)
    assert "Mul" not in types and "Add" not in types, types


def test_batchnorm_stays_where_the_conv_output_is_read_twice():
    x = Input((5, 5, 2))
    y = L.Conv2D(3, 3)(x)
    proto = check(Model(x, [L.BatchNormalization()(y), y]))
    assert {"Mul", "Add"} <= set(op_types(proto))
    proto = check(seq((5, 5, 2), L.Conv2D(3, 3, activation="relu"), L.BatchNormalization()))
    assert {"Mul", "Add"} <= set(op_types(proto))


def test_flatten_keeps_fastconvs_nhwc_order():
    proto = check(seq((4, 5, 3), L.Conv2D(6, 2), L.Flatten(), L.Dense(7, activation="softmax")))
    types = op_types(proto)
    assert types.index("Flatten") > types.index("Conv") and types.count("Transpose") == 2


def test_dense_on_images_reshape_and_rank_changes():
    check(seq((4, 5, 3), L.Conv2D(6, 1), L.Dense(4)))  # Dense on the channel axis of (N, H, W, C)
    check(seq((4, 5, 3), L.Conv2D(6, 1), L.Reshape((-1, 6)), L.Dense(2)))
    check(seq((12,), L.Reshape((2, 3, 2)), L.Conv2D(3, 2, padding="same"), L.Flatten()))


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_every_activation_on_images_and_vectors(name):
    check(seq((4, 5, 3), L.Conv2D(4, 1, activation=name), L.Activation(name)))  # NCHW inside
    check(seq((6,), L.Dense(5, activation=name)))


@pytest.mark.parametrize(
    "layer",
    [
        lambda: L.ReLU(),
        lambda: L.ReLU(max_value=6.0),
        lambda: L.ReLU(max_value=0.5, negative_slope=0.1, threshold=-0.2),
        lambda: L.ReLU(negative_slope=0.3, threshold=0.1),
        lambda: L.LeakyReLU(0.15),
        lambda: L.ELU(0.7),
        lambda: L.PReLU(),
        lambda: L.PReLU(shared_axes=[1, 2]),
        lambda: L.Softmax(),
        lambda: L.activation.ELU() if False else L.Activation(activations._ELU(alpha=0.3)),
    ],
)
def test_activation_layers(layer):
    check(seq((4, 5, 3), L.Conv2D(3, 1), layer()))
    check(seq((4, 5, 3), layer()))  # on the native layout


def test_preprocessing_and_inference_identities():
    norm = L.Normalization()
    norm.adapt(np.random.default_rng(0).normal(2.0, 3.0, size=(20, 4, 5, 3)))
    check(
        seq(
            (4, 5, 3),
            L.Rescaling(1 / 255.0, offset=-0.5),
            L.Rescaling(np.array([1.0, 2.0, 3.0])),
            norm,
            L.Conv2D(3, 1),
            L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 4.0, 9.0], invert=True),
            L.Dropout(0.5),
            L.SpatialDropout2D(0.5),
            L.GaussianNoise(0.5),
            L.RandomFlip(),
            L.RandomRotation(0.2),
            L.RandomTranslation(0.1, 0.1),
            L.RandomZoom(0.1),
            L.RandomContrast(0.2),
        )
    )


@pytest.mark.parametrize("axis", [-1, [1, 2, 3], [2]])
@pytest.mark.parametrize("opset", [17, 18])  # ReduceMean's axes: an attribute, then an input
def test_layer_normalization(axis, opset):
    check(seq((4, 5, 3), L.Conv2D(3, 1), L.LayerNormalization(axis=axis)), opset=opset)


def test_spatial_reshaping_layers():
    check(
        seq(
            (5, 4, 4),
            L.Conv2D(4, 1),
            L.ZeroPadding2D(((1, 2), (0, 3))),
            L.Cropping2D(((2, 0), (1, 1))),
            L.UpSampling2D((2, 3)),
            L.ChannelShuffle(2),
            L.Conv2D(4, 1),
            L.UpSampling2D(2, interpolation="bilinear"),
        )
    )
    check(seq((3, 5, 6), L.ChannelShuffle(3), L.UpSampling2D((3, 2), interpolation="bilinear")))


# ---- merges, blocks, graphs ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum])
def test_merges_in_both_layouts_and_with_rank_broadcast(cls):
    x = Input((5, 4, 3))
    a = L.Conv2D(3, 1)(x)  # NCHW inside the graph
    b = L.Conv2D(3, 3, padding="same")(x)
    outs = [cls()([a, b]), cls()([x, L.Activation("tanh")(x)])]  # NCHW, native
    if cls is not L.Subtract:
        g = L.Dense(3)(L.GlobalAveragePooling2D()(a))  # (N, C) against (N, H, W, C), as Keras
        outs.append(cls()([a, g, b]))
    check(Model(x, outs))


@pytest.mark.parametrize("axis", [-1, 1, 2, 3])
def test_concatenate_axes(axis):
    x = Input((4, 4, 3))
    a, b = L.Conv2D(2, 1)(x), L.Conv2D(3 if axis in (-1, 3) else 2, 1)(x)
    check(Model(x, [L.Concatenate(axis=axis)([a, b]), L.Concatenate(axis=axis)([x, x])]))


def test_blocks_multiple_inputs_outputs_and_shared_layers():
    check(
        seq(
            (6, 6, 3),
            L.ResidualBlock([L.Conv2D(3, 3, padding="same"), L.BatchNormalization()], activation="relu"),
            L.ResidualBlock([L.Conv2D(5, 3, strides=2, padding="same")], projection_batchnorm=True),
            L.Branches(
                [[], [L.Conv2D(2, 1)], [L.MaxPooling2D(3, strides=1, padding="same"), L.Conv2D(2, 1)]]
            ),
            L.Flatten(),
            L.ResidualBlock([L.Dense(4)], activation="relu"),
        )
    )
    a, b = Input((5, 5, 2), name="left"), Input((5, 5, 2), name="right")
    shared = L.Conv2D(3, 3, padding="same", name="shared")
    ya, yb = shared(a), shared(b)
    model = Model([a, b], [L.Add()([ya, yb]), L.Flatten()(yb)])
    proto = check(model)
    assert [i.name for i in proto.graph.input] == ["left", "right"]
    assert len([i for i in proto.graph.initializer if i.name.startswith("shared_W")]) == 1


@pytest.mark.parametrize("opset", [13, 19, "newest"])
def test_other_opsets(opset):
    opset = onnx.defs.onnx_opset_version() if opset == "newest" else opset
    model = seq(
        (6, 5, 3),
        L.Conv2D(4, 3, padding="same", activation="gelu"),
        L.AveragePooling2D(2, padding="same"),
        L.UpSampling2D(2, interpolation="bilinear"),
        L.LayerNormalization(axis=[1, 2, 3]),
        L.SeparableConv2D(3, 3, activation="hard_swish"),
        L.BatchNormalization(),
        L.GlobalMaxPooling2D(),
        L.Dense(3, activation="softmax"),
    )
    proto = check(model, opset=opset)
    assert proto.opset_import[0].version == opset


def test_a_float64_model_exports_in_float32_and_sequential_input_names():
    model = seq((5, 5, 2), L.Conv2D(3, 3, dtype="float64"), L.Flatten(dtype="float64"), name="f64")
    assert model.dtype == np.float64
    proto = check(model)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    plain = Sequential([L.Conv2D(2, 1, input_shape=(3, 3, 1)), L.Flatten()])
    names = [i.name for i in check(plain).graph.input]
    assert names == [plain.inputs[0].node.layer.name]


def test_model_export_writes_a_checked_file_atomically(tmp_path, capsys):
    model = randomize(models.lenet5())
    path = tmp_path / "lenet.onnx"
    path.write_bytes(b"old")
    assert model.export(path, format="onnx") == os.fspath(path)
    onnx.checker.check_model(str(path))
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    assert_close(run_onnx(onnx.load(str(path)), [x])[0], model.predict(x, verbose=0), "file")
    assert sorted(os.listdir(tmp_path)) == ["lenet.onnx"]  # no temporary file left behind
    assert fc_onnx.export(model, tmp_path / "again.onnx", opset=13).endswith("again.onnx")
    model.export(tmp_path / "keras.onnx", format="onnx", verbose=True, opset_version=18)
    assert "keras.onnx" in capsys.readouterr().out
    assert onnx.load(str(tmp_path / "keras.onnx")).opset_import[0].version == 18
    assert onnx.load(str(tmp_path / "again.onnx")).opset_import[0].version == 13


# ---- refusals -------------------------------------------------------------------------------------------


def _negate(x):
    return -x


class Doubling(L.Layer):
    def call(self, x, training=False):
        return 2 * x


def test_refusals_name_the_layer_and_leave_the_file_alone(tmp_path):
    model = seq((4, 4, 2), L.Conv2D(2, 1), L.Lambda(_negate, name="negate"))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match=r'layer "negate" \(Lambda\).*Python function'):
        model.export(path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.onnx"]
    with pytest.raises(ValueError, match=r'layer "twice" \(Doubling\).*no converter'):
        fc_onnx.to_onnx(seq((3,), Doubling(name="twice")))
    with pytest.raises(ValueError, match=r'layer "sub" \(Conv2D\).*activation'):
        bad = seq((4, 4, 2), L.Conv2D(2, 1, name="sub"))
        bad.layers[0].activation = type("Custom", (activations.Activation,), {"name": "custom"})()
        fc_onnx.to_onnx(bad)
    with pytest.raises(ValueError, match="not fixed"):
        fc_onnx.to_onnx(seq((None, None, 2), L.Conv2D(2, 1)))
    with pytest.raises(ValueError, match="built"):
        fc_onnx.to_onnx(Sequential([L.Dense(2)]))
    with pytest.raises(ValueError, match="opset"):
        fc_onnx.to_onnx(models.lenet5(), opset=9)
    with pytest.raises(ValueError, match="format"):
        models.lenet5().export(path, format="tf_saved_model")
    with pytest.raises(ValueError, match="input_signature"):
        models.lenet5().export(path, format="onnx", input_signature=[(None, 32, 32, 1)])


def test_every_registered_layer_class_has_a_converter():
    """A new layer class fails here until it gets a converter (or a reason to be refused)."""
    from fastconv.engine import onnx_export
    from fastconv.layers.base import registered_classes

    ours = {n: c for n, c in registered_classes().items() if c.__module__.startswith("fastconv.")}
    missing = {n for n, c in ours.items() if c not in onnx_export._CONVERTERS}  # other tests register too
    assert missing == {"InputLayer", "Lambda", "Sequential", "Model", "Functional"}, missing


def test_the_public_names_and_a_lazy_onnx_import():
    assert fastconv.onnx.to_onnx is fc_onnx.to_onnx and callable(fc_onnx.export)
    assert fc_onnx.DEFAULT_OPSET == 17 and "onnx" in fastconv.__all__
    code = "import sys, fastconv; print('onnx' in sys.modules, callable(fastconv.onnx.export))"
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env = dict(os.environ, PYTHONPATH=parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=os.sep,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True"]  # import fastconv does not load the onnx package


# ---- PyTorch's pooling options (ceil_mode, dilation_rate), read by the exporter with getattr ---------


def _pool_layer(cls, ceil_mode=False, dilation_rate=(1, 1), **kw):
    """A pooling layer with PyTorch's options: the layer's own arguments once it takes them, else
    set on an instance whose output size follows PyTorch's rule (what the layers will compute)."""
    try:
        return cls(**kw, ceil_mode=ceil_mode, dilation_rate=dilation_rate)
    except TypeError:
        layer = cls(**kw)
    layer.ceil_mode, layer.dilation_rate = ceil_mode, dilation_rate  # an int or a pair
    dil = (dilation_rate,) * 2 if isinstance(dilation_rate, int) else tuple(dilation_rate)

    def size(n, k, s, d):
        keff = (k - 1) * d + 1
        if layer.padding == "same":
            return -(-n // s)
        out = (-(-(n - keff) // s) if ceil_mode else (n - keff) // s) + 1
        return out - 1 if ceil_mode and (out - 1) * s >= n else out

    layer.compute_output_shape = lambda shape: (
        *(size(n, k, s, d) for n, k, s, d in zip(shape[:2], layer.pool_size, layer.strides, dil)),
        shape[2],
    )
    return layer


@pytest.mark.parametrize(
    "cls, kw",
    [
        (L.MaxPooling2D, {"pool_size": 3, "strides": 2, "ceil_mode": True}),
        (L.MaxPooling2D, {"pool_size": 2, "strides": (2, 3), "ceil_mode": True, "dilation_rate": (2, 1)}),
        (L.MaxPooling2D, {"pool_size": 3, "strides": 1, "dilation_rate": 2, "padding": "same"}),
        (L.AveragePooling2D, {"pool_size": 3, "strides": 2, "ceil_mode": True}),
        (L.AveragePooling2D, {"pool_size": (2, 3), "strides": (3, 2), "ceil_mode": True}),
    ],
)
def test_pool_ceil_mode_and_dilation_as_pytorch(cls, kw):
    torch = pytest.importorskip("torch")  # not in the test extra: PyTorch is the oracle here
    kw = dict(kw)
    layer = _pool_layer(cls, **kw)
    x = np.random.default_rng(4).normal(size=(2, 10, 9, 3)).astype(np.float32)
    proto = fc_onnx.to_onnx(seq((10, 9, 3), layer))
    got = run_onnx(proto, [x])[0]
    t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    k, s, d = layer.pool_size, layer.strides, layer.dilation_rate
    d = (d, d) if isinstance(d, int) else tuple(d)
    if layer.padding == "same":  # TensorFlow's split, padded with -inf by hand
        pads = []
        for n, kk, ss, dd in zip((10, 9), k, s, d):
            total = max((-(-n // ss) - 1) * ss + (kk - 1) * dd + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        t = torch.nn.functional.pad(t, (*pads[1], *pads[0]), value=-np.inf)
    if cls is L.MaxPooling2D:
        want = torch.nn.functional.max_pool2d(t, k, s, dilation=d, ceil_mode=layer.ceil_mode)
    else:
        want = torch.nn.functional.avg_pool2d(t, k, s, ceil_mode=layer.ceil_mode, count_include_pad=False)
    assert_close(got, want.numpy().transpose(0, 2, 3, 1), f"{cls.__name__} {kw}")


def test_average_pool_dilation_needs_opset_19():
    layer = _pool_layer(L.AveragePooling2D, pool_size=2, strides=1, dilation_rate=(2, 2))
    model = seq((6, 5, 2), layer)
    with pytest.raises(ValueError, match=r"AveragePooling2D.*opset >= 19"):
        fc_onnx.to_onnx(model)
    x = np.random.default_rng(5).normal(size=(2, 6, 5, 2)).astype(np.float32)
    got = run_onnx(fc_onnx.to_onnx(model, opset=19), [x])[0]
    want = (x[:, :-2, :-2] + x[:, 2:, :-2] + x[:, :-2, 2:] + x[:, 2:, 2:]) / 4
    assert_close(got, want, "dilated average")
