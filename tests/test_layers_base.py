"""The Layer contract (fastconv/layers/base.py), checked on concrete layers: None dimensions,
need_input_grad, the training cache, inputs and dy left untouched, dtypes, weight names and
set_weights errors, the layer registry, trainable flags and live trainable pairs, Keras's automatic
names and error wording.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import F64, rand, resnet_block  # tests/layercheck.py

from fastconv import layers as L


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------


def test_none_spatial_dims_propagate():
    conv = L.Conv2D(4, 3, strides=2, padding="same")
    assert conv.compute_output_shape((None, None, 3)) == (None, None, 4)
    assert L.Flatten().compute_output_shape((None, 4, 3)) == (None,)
    conv.build((None, None, 3))
    assert conv.forward(np.zeros((1, 9, 7, 3))).shape == (1, 5, 4, 4)


# ---------------------------------------------------------------------------
# Behaviour details
# ---------------------------------------------------------------------------


def test_need_input_grad_false_skips_dx_but_fills_grads():
    for layer, shape in [
        (L.Conv2D(2, 3, dtype=F64), (1, 5, 5, 2)),
        (L.Dense(3, dtype=F64), (2, 4)),
        (L.BatchNormalization(dtype=F64), (4, 3)),
        (resnet_block(), (1, 4, 4, 2)),
    ]:
        x = rand(*shape)
        y = layer.forward(x, training=True)
        dx = layer.backward(np.ones_like(y))
        ref = {k: g.copy() for k, _, g in layer.trainable_pairs()}
        layer.need_input_grad = False
        layer.forward(x, training=True)
        for _, _, g in layer.trainable_pairs():
            g[...] = np.nan
        assert layer.backward(np.ones_like(y)) is None and dx is not None
        for k, _, g in layer.trainable_pairs():
            np.testing.assert_allclose(g, ref[k], rtol=1e-12)


def test_cache_only_in_training():
    conv = L.Conv2D(2, 3)
    x = np.ones((1, 5, 5, 1), np.float32)
    conv.forward(x, training=True)
    assert conv._cache is not None
    conv.forward(x)
    assert conv._cache is None
    with pytest.raises(RuntimeError, match="forward"):
        conv.backward(np.ones((1, 3, 3, 2), np.float32))


def test_inputs_are_not_modified_and_dy_is_not_modified():
    x = rand(2, 5, 5, 3)
    x.setflags(write=False)
    for layer in [
        L.Conv2D(3, 3, padding="same", activation="relu", dtype=F64),
        L.BatchNormalization(dtype=F64),
        L.ReLU(dtype=F64),
        L.Activation("softmax"),
        L.Dropout(0.5, dtype=F64),
        resnet_block(),
    ]:
        if isinstance(layer, L.ResidualBlock):
            x2 = rand(1, 4, 4, 2)
            x2.setflags(write=False)
            y = layer.forward(x2, training=True)
        else:
            y = layer.forward(x, training=True)
        dy = rand(*y.shape, seed=4)
        dy.setflags(write=False)
        layer.backward(dy)


def test_float32_is_the_default_dtype_and_uint8_is_converted():
    conv = L.Conv2D(2, 3)
    y = conv(np.zeros((1, 5, 5, 1), np.uint8))
    assert conv.dtype == np.float32 and y.dtype == np.float32
    assert all(w.dtype == np.float32 for w in conv.get_weights())


# ---------------------------------------------------------------------------
# Weights, config, trainable
# ---------------------------------------------------------------------------


def test_weight_names_follow_keras():
    sep = L.SeparableConv2D(4, 3)
    sep.build((5, 5, 2))
    assert list(sep.params) == ["depthwise_kernel", "pointwise_kernel", "bias"]
    dw = L.DepthwiseConv2D(3)
    dw.build((5, 5, 2))
    assert list(dw.params) == ["depthwise_kernel", "bias"]
    bn = L.BatchNormalization()
    bn.build((3,))
    assert list(bn.params) == ["gamma", "beta"] and list(bn.state) == ["moving_mean", "moving_variance"]


def test_set_weights_errors_name_layer_and_shapes():
    conv = L.Conv2D(32, 3, name="myconv")
    conv.build((28, 28, 1))
    with pytest.raises(
        ValueError,
        match=r'"myconv" weight shape \(3, 3, 1, 32\) is not compatible '
        r"with provided weight shape \(3, 3, 32\)",
    ):
        conv.set_weights([np.zeros((3, 3, 32)), np.zeros(32)])
    with pytest.raises(ValueError, match="weight list of length 1, but the layer was expecting 2"):
        conv.set_weights([np.zeros((3, 3, 1, 32))])


def test_unknown_layer_class_in_deserialize():
    with pytest.raises(ValueError, match="Unknown layer: 'Conv3D'"):
        L.deserialize({"class_name": "Conv3D", "config": {}})


def test_trainable_false_reports_non_trainable_and_no_pairs():
    conv = L.Conv2D(32, 3, trainable=False)
    conv.build((28, 28, 1))
    assert conv.count_params() == 320
    assert conv.count_trainable_params() == 0 and conv.count_non_trainable_params() == 320
    assert conv.trainable_pairs() == []
    conv.trainable = True
    assert [k for k, _, _ in conv.trainable_pairs()] == [f"{conv.name}/kernel", f"{conv.name}/bias"]
    # Frozen layers still pass gradients through.
    conv.trainable = False
    x = np.ones((1, 28, 28, 1), np.float32)
    conv.forward(x, training=True)
    before = conv.grads["kernel"].copy()
    dx = conv.backward(np.ones((1, 26, 26, 32), np.float32))
    assert dx.shape == x.shape
    np.testing.assert_array_equal(conv.grads["kernel"], before)


def test_trainable_pairs_are_live_references():
    dense = L.Dense(3)
    dense.build((4,))
    (k1, p, g), (k2, _, gb) = dense.trainable_pairs()
    assert (k1, k2) == (f"{dense.name}/kernel", f"{dense.name}/bias")
    assert p is dense.params["kernel"] and g is dense.grads["kernel"]
    dense.forward(np.ones((2, 4), np.float32), training=True)
    dense.backward(np.ones((2, 3), np.float32))
    assert g is dense.grads["kernel"]  # grads are overwritten in place
    np.testing.assert_allclose(gb, 2.0)


# ---------------------------------------------------------------------------
# Names and errors
# ---------------------------------------------------------------------------


def test_auto_names_like_keras():
    L.reset_name_counters()
    names = [
        L.Conv2D(1, 1).name,
        L.Conv2D(1, 1).name,
        L.MaxPooling2D().name,
        L.MaxPool2D().name,
        L.BatchNormalization().name,
        L.ReLU().name,
        L.GlobalAveragePooling2D().name,
        L.SeparableConv2D(1, 1).name,
        L.Conv2DTranspose(1, 1).name,
        L.Dense(1).name,
    ]
    assert names == [
        "conv2d",
        "conv2d_1",
        "max_pooling2d",
        "max_pooling2d_1",
        "batch_normalization",
        "re_lu",
        "global_average_pooling2d",
        "separable_conv2d",
        "conv2d_transpose",
        "dense",
    ]
    assert L.Dense(1, name="head").name == "head"


def test_wrong_input_rank_is_keras_worded():
    conv = L.Conv2D(2, 3, name="c")
    with pytest.raises(
        ValueError,
        match=r'Input 0 of layer "c" is incompatible with the layer: '
        r"expected ndim=4, found ndim=3. Full shape received: "
        r"\(None, 28, 28\)",
    ):
        conv.build((28, 28))
    conv.build((28, 28, 1))
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        conv(np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 1"):
        conv(np.zeros((2, 28, 28, 3)))
    with pytest.raises(ValueError, match="min_ndim=2"):
        L.Dense(3).build(())
    with pytest.raises(ValueError, match="Computed output size would be negative"):
        L.Conv2D(2, 5).build((3, 3, 1))
    with pytest.raises(ValueError, match="incompatible shapes"):
        L.ResidualBlock([L.Conv2D(4, 3)], shortcut="identity").build((8, 8, 4))
    with pytest.raises(ValueError, match="no strided 1x1 projection"):
        L.ResidualBlock([L.Conv2D(4, 3)]).build((8, 8, 4))
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
        L.Branches([[L.Conv2D(2, 3)], []]).build((5, 5, 2))
    with pytest.raises(ValueError, match="isn't built"):
        L.Dense(3).count_params()
    with pytest.raises(ValueError, match="padding"):
        L.Conv2D(2, 3, padding="full")
    with pytest.raises(ValueError, match="divisible by the number of groups"):
        L.Conv2D(3, 3, groups=2)
    with pytest.raises(ValueError, match="output padding"):
        L.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(TypeError, match="Unrecognized keyword arguments"):
        L.Dense(3, unitz=4)
