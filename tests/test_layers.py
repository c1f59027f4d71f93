"""Layers: finite-difference gradients (float64), Keras shapes and parameter counts,
weights and config round trips, trainable flags, errors.

Gradient checks use the scalar loss ``sum(forward(x) * R) + regularization_loss()``
with a fixed random R, and compare ``backward(R)`` (dx) and every grad from
``trainable_pairs()`` with central differences on a few random coordinates (all
coordinates for tiny arrays).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastconv import activations, initializers, ops, regularizers
from fastconv import layers as L

F64 = "float64"
EPS = 1e-6


# ---------------------------------------------------------------------------
# Finite-difference machinery
# ---------------------------------------------------------------------------


def _coords(shape, rng, k):
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= k else rng.choice(size, k, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def fd_check(layer, x, *, seed=0, k=8, before=None, rtol=1e-5, atol=1e-7, check_dx=True):
    """Check backward's dx and every trainable grad of ``layer`` against central differences."""
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)

    def loss():
        if before is not None:
            before(layer)
        y = layer.forward(x, training=True)
        return float(np.sum(y * r)) + layer.regularization_loss()

    if before is not None:
        before(layer)
    y = layer.forward(x, training=True)
    r = rng.standard_normal(y.shape)
    dx = layer.backward(r)
    pairs = layer.trainable_pairs()
    grads = {key: g.copy() for key, _, g in pairs}

    targets = [("x", x, dx)] if check_dx else []
    targets += [(key, p, grads[key]) for key, p, _ in pairs]
    assert targets
    for name, arr, analytic in targets:
        assert analytic is not None and analytic.shape == arr.shape, name
        for idx in _coords(arr.shape, rng, k):
            old = arr[idx]
            arr[idx] = old + EPS
            fp = loss()
            arr[idx] = old - EPS
            fm = loss()
            arr[idx] = old
            num = (fp - fm) / (2 * EPS)
            np.testing.assert_allclose(
                analytic[idx], num, rtol=rtol, atol=atol, err_msg=f"{layer.name}: d/d{name}{idx}"
            )
    return dx


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------
# Gradient checks for every layer type
# ---------------------------------------------------------------------------

GRAD_CASES = [
    # Conv2D
    ("conv_valid", lambda: L.Conv2D(3, 3, dtype=F64), (2, 6, 5, 2)),
    ("conv_same_s2", lambda: L.Conv2D(3, 3, strides=2, padding="same", dtype=F64), (2, 7, 6, 2)),
    ("conv_dil2", lambda: L.Conv2D(2, 3, dilation_rate=2, padding="same", dtype=F64), (1, 7, 7, 3)),
    ("conv_groups", lambda: L.Conv2D(4, (2, 3), groups=2, strides=(1, 2), dtype=F64), (2, 5, 7, 4)),
    ("conv_relu", lambda: L.Conv2D(3, 3, padding="same", activation="relu", dtype=F64), (2, 5, 5, 2)),
    ("conv_tanh_nobias", lambda: L.Conv2D(3, 2, activation="tanh", use_bias=False, dtype=F64), (2, 4, 4, 2)),
    (
        "conv_l2",
        lambda: L.Conv2D(
            2, 3, kernel_regularizer=regularizers.l2(0.1), bias_regularizer=regularizers.l1(0.05), dtype=F64
        ),
        (1, 5, 5, 2),
    ),
    # DepthwiseConv2D
    (
        "dw_same_s2_m2",
        lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, dtype=F64),
        (2, 7, 6, 3),
    ),
    (
        "dw_valid_dil",
        lambda: L.DepthwiseConv2D(2, dilation_rate=2, activation="sigmoid", dtype=F64),
        (1, 6, 6, 2),
    ),
    # SeparableConv2D
    (
        "sep_same",
        lambda: L.SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="selu", dtype=F64),
        (2, 5, 5, 3),
    ),
    (
        "sep_valid_s2",
        lambda: L.SeparableConv2D(3, 3, strides=2, dtype=F64, pointwise_regularizer="l2"),
        (1, 7, 7, 2),
    ),
    # Conv2DTranspose
    ("convT_valid_s2", lambda: L.Conv2DTranspose(3, 3, strides=2, dtype=F64), (2, 3, 4, 2)),
    ("convT_same_s2", lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same", dtype=F64), (1, 4, 3, 3)),
    (
        "convT_same_op",
        lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1, dtype=F64),
        (1, 3, 3, 2),
    ),
    (
        "convT_valid_op",
        lambda: L.Conv2DTranspose(2, 3, strides=(2, 3), output_padding=(1, 2), dtype=F64),
        (1, 3, 3, 2),
    ),
    (
        "convT_dil_groups",
        lambda: L.Conv2DTranspose(4, 2, dilation_rate=2, groups=2, dtype=F64, activation="elu"),
        (1, 3, 3, 4),
    ),
    # Pooling
    ("maxpool", lambda: L.MaxPooling2D(dtype=F64), (2, 4, 6, 3)),
    ("maxpool_same_3s2", lambda: L.MaxPool2D(3, strides=2, padding="same", dtype=F64), (1, 7, 6, 2)),
    ("avgpool_same", lambda: L.AveragePooling2D(3, strides=2, padding="same", dtype=F64), (1, 7, 6, 2)),
    ("avgpool_valid", lambda: L.AveragePooling2D((2, 3), dtype=F64), (2, 4, 6, 2)),
    ("gap", lambda: L.GlobalAveragePooling2D(dtype=F64), (2, 3, 4, 5)),
    ("gap_keepdims", lambda: L.GlobalAveragePooling2D(keepdims=True, dtype=F64), (2, 3, 4, 5)),
    # Core
    ("flatten", lambda: L.Flatten(dtype=F64), (2, 3, 2, 2)),
    ("dense", lambda: L.Dense(4, dtype=F64), (3, 5)),
    ("dense_3d", lambda: L.Dense(3, activation="tanh", dtype=F64), (2, 4, 5)),
    (
        "dense_softmax_l1l2",
        lambda: L.Dense(
            4, activation="softmax", dtype=F64, kernel_regularizer=regularizers.l1_l2(0.01, 0.02)
        ),
        (3, 5),
    ),
    ("relu_layer", lambda: L.ReLU(dtype=F64), (2, 3, 3, 2)),
    ("relu_params", lambda: L.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.2, dtype=F64), (3, 10)),
    ("softmax_layer", lambda: L.Softmax(dtype=F64), (3, 6)),
    # Normalisation
    ("bn_nhwc", lambda: L.BatchNormalization(dtype=F64), (3, 3, 2, 4)),
    ("bn_2d", lambda: L.BatchNormalization(dtype=F64, gamma_regularizer="l2"), (5, 3)),
    ("bn_no_scale", lambda: L.BatchNormalization(scale=False, dtype=F64), (4, 3)),
    # Reshaping
    ("zeropad", lambda: L.ZeroPadding2D(((1, 2), (0, 3)), dtype=F64), (2, 3, 2, 2)),
    ("up_nearest", lambda: L.UpSampling2D((2, 3), dtype=F64), (2, 3, 2, 2)),
    ("up_bilinear", lambda: L.UpSampling2D((2, 3), interpolation="bilinear", dtype=F64), (2, 3, 4, 2)),
]


@pytest.mark.parametrize("name,factory,shape", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_layer_gradients(name, factory, shape):
    layer = factory()
    fd_check(layer, rand(*shape))


@pytest.mark.parametrize("act", sorted(activations.ACTIVATIONS))
def test_activation_layer_gradients(act):
    fd_check(L.Activation(act, dtype=F64), rand(3, 5), k=15)


def test_dropout_gradient_with_fixed_mask():
    layer = L.Dropout(0.4, seed=3, dtype=F64)
    fd_check(layer, rand(4, 6), before=lambda lay: lay.reseed(7), k=24)
    spatial = L.Dropout(0.5, noise_shape=(None, 1, 1, None), dtype=F64)
    dx = fd_check(spatial, rand(2, 3, 3, 4), before=lambda lay: lay.reseed(1))
    # One mask value per (sample, channel), shared over the pixels.
    zero = dx == 0
    assert (zero == zero[:, :1, :1, :]).all()


def test_bn_frozen_gradient_uses_moving_statistics():
    layer = L.BatchNormalization(dtype=F64)
    layer.build((4,))
    layer.set_weights([rand(4, seed=2), rand(4, seed=3), rand(4, seed=4), 1 + rand(4, seed=5) ** 2])
    layer.trainable = False
    x = rand(5, 4)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, layer.forward(x, training=False))
    fd_check(layer, x)
    assert layer.trainable_pairs() == []


def _resnet_block():
    return L.ResidualBlock(
        [
            L.Conv2D(4, 3, strides=2, padding="same", activation="relu", dtype=F64),
            L.BatchNormalization(dtype=F64),
            L.Conv2D(4, 3, padding="same", dtype=F64),
        ],
        projection_batchnorm=True,
        activation="relu",
        dtype=F64,
    )


BLOCK_CASES = [
    (
        "res_identity",
        lambda: L.ResidualBlock(
            [L.Conv2D(3, 3, padding="same", activation="tanh"), L.Conv2D(3, 1)], activation="relu", dtype=F64
        ),
        (2, 4, 4, 3),
    ),
    ("res_projection_bn", _resnet_block, (2, 5, 5, 2)),
    (
        "res_custom_shortcut",
        lambda: L.ResidualBlock([L.Conv2D(2, 3)], shortcut=[L.Conv2D(2, 3)], dtype=F64),
        (1, 5, 5, 2),
    ),
    (
        "inception",
        lambda: L.Branches(
            [
                [L.Conv2D(2, 1)],
                [L.Conv2D(2, 1, activation="relu"), L.Conv2D(3, 3, padding="same")],
                [L.MaxPooling2D(3, strides=1, padding="same"), L.Conv2D(2, 1)],
                [],
            ],
            dtype=F64,
        ),
        (2, 4, 4, 3),
    ),
    (
        "nested",
        lambda: L.ResidualBlock(
            [L.Branches([[L.Conv2D(2, 1)], [L.DepthwiseConv2D(3, padding="same")]]), L.Conv2D(3, 1)],
            dtype=F64,
        ),
        (1, 4, 4, 3),
    ),
]


@pytest.mark.parametrize("name,factory,shape", BLOCK_CASES, ids=[c[0] for c in BLOCK_CASES])
def test_block_gradients(name, factory, shape):
    block = factory()
    fd_check(block, rand(*shape), k=5)
    assert len(block.trainable_pairs()) == sum(len(s.params) for s in _all_sublayers(block))


def _all_sublayers(layer):
    out = []
    for sub in layer.sublayers:
        out.append(sub)
        out.extend(_all_sublayers(sub))
    return out


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_functions_backward(name):
    act = activations.get(name)
    x = rand(4, 5)
    y = act.forward(x.copy())
    dy = rand(4, 5, seed=9)
    dx = act.backward(dy, y)
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += EPS
        xm[idx] -= EPS
        num[idx] = np.sum((act.forward(xp) - act.forward(xm)) * dy) / (2 * EPS)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-7)


def test_activations_are_stable_and_keep_dtype():
    x = np.array([[-1000.0, 0.0, 1000.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = activations.sigmoid.forward(x)
        sm = activations.softmax.forward(x)
        activations.selu.forward(x)
        activations.elu.forward(x)
    np.testing.assert_allclose(s, [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(sm, [[0.0, 0.0, 1.0]])
    assert s.dtype == sm.dtype == np.float32
    for name in activations.ACTIVATIONS:
        act = activations.get(name)
        y = act.forward(x.copy())
        assert y.dtype == np.float32, name
        assert act.backward(np.ones_like(y), y).dtype == np.float32, name
    np.testing.assert_allclose(activations.softmax.forward(rand(3, 4)).sum(-1), 1.0)


def test_unknown_activation_is_keras_worded():
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        L.Conv2D(2, 3, activation="swishy")
    with pytest.raises(ValueError, match="Could not interpret activation"):
        L.Activation("nope")


# ---------------------------------------------------------------------------
# Output shapes and parameter counts (hand-computed Keras numbers)
# ---------------------------------------------------------------------------

SHAPE_CASES = [
    (lambda: L.Conv2D(32, 3), (28, 28, 1), (26, 26, 32), 320),
    (lambda: L.Conv2D(64, 3, strides=2, padding="same"), (28, 28, 32), (14, 14, 64), 18496),
    (lambda: L.Conv2D(8, 3, strides=2, padding="same"), (7, 7, 3), (4, 4, 8), 224),
    (lambda: L.Conv2D(16, 5, strides=3), (28, 28, 1), (8, 8, 16), 416),
    (lambda: L.Conv2D(8, 3, dilation_rate=2), (10, 10, 4), (6, 6, 8), 296),
    (lambda: L.Conv2D(8, 3, groups=2), (10, 10, 4), (8, 8, 8), 152),
    (lambda: L.Conv2D(8, 3, use_bias=False, padding="same"), (5, 5, 2), (5, 5, 8), 144),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (10, 10, 8), (8, 8, 16), 160),
    (lambda: L.DepthwiseConv2D(3, strides=2, padding="same"), (9, 9, 4), (5, 5, 4), 40),
    (lambda: L.SeparableConv2D(64, 3), (12, 12, 32), (10, 10, 64), 2400),
    (
        lambda: L.SeparableConv2D(64, 3, strides=2, padding="same", depth_multiplier=2),
        (12, 12, 32),
        (6, 6, 64),
        9 * 32 * 2 + 64 * 64 + 64,
    ),
    (lambda: L.Conv2DTranspose(16, 3, strides=2), (7, 7, 8), (15, 15, 16), 1168),
    (lambda: L.Conv2DTranspose(16, 3, strides=2, padding="same"), (7, 7, 8), (14, 14, 16), 1168),
    (
        lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1),
        (7, 7, 8),
        (14, 14, 4),
        292,
    ),
    (lambda: L.Conv2DTranspose(4, 3, strides=2, output_padding=1), (7, 7, 8), (16, 16, 4), 292),
    (lambda: L.Conv2DTranspose(4, 2, strides=2), (7, 7, 8), (14, 14, 4), 132),
    (lambda: L.Conv2DTranspose(4, 3, dilation_rate=2), (5, 5, 2), (9, 9, 4), 76),
    (lambda: L.MaxPooling2D(), (28, 28, 32), (14, 14, 32), 0),
    (lambda: L.MaxPooling2D(3, strides=2), (13, 13, 4), (6, 6, 4), 0),
    (lambda: L.MaxPool2D(3, strides=2, padding="same"), (13, 13, 4), (7, 7, 4), 0),
    (lambda: L.AveragePooling2D(), (7, 7, 3), (3, 3, 3), 0),
    (lambda: L.AveragePooling2D(padding="same"), (7, 7, 3), (4, 4, 3), 0),
    (lambda: L.GlobalAveragePooling2D(), (7, 7, 64), (64,), 0),
    (lambda: L.GlobalAveragePooling2D(keepdims=True), (7, 7, 64), (1, 1, 64), 0),
    (lambda: L.Flatten(), (7, 7, 64), (3136,), 0),
    (lambda: L.Dense(128), (3136,), (128,), 401536),
    (lambda: L.Dense(10, activation="softmax"), (128,), (10,), 1290),
    (lambda: L.Dropout(0.5), (128,), (128,), 0),
    (lambda: L.Activation("relu"), (5, 5, 3), (5, 5, 3), 0),
    (lambda: L.BatchNormalization(), (5, 5, 64), (5, 5, 64), 256),
    (lambda: L.BatchNormalization(), (100,), (100,), 400),
    (lambda: L.ZeroPadding2D(((1, 2), (3, 4))), (5, 5, 3), (8, 12, 3), 0),
    (lambda: L.ZeroPadding2D(2), (5, 5, 3), (9, 9, 3), 0),
    (lambda: L.UpSampling2D((2, 3)), (5, 5, 3), (10, 15, 3), 0),
    (lambda: L.UpSampling2D(interpolation="bilinear"), (5, 5, 3), (10, 10, 3), 0),
    # Main 8->16 (3x3 s2 same: 1168; BN: 64; 3x3: 2320) + projection 1x1 s2 without bias (128)
    # + BN (64).
    (
        lambda: L.ResidualBlock(
            [
                L.Conv2D(16, 3, strides=2, padding="same"),
                L.BatchNormalization(),
                L.Conv2D(16, 3, padding="same"),
            ],
            projection_batchnorm=True,
        ),
        (28, 28, 8),
        (14, 14, 16),
        1168 + 64 + 2320 + 128 + 64,
    ),
    (lambda: L.ResidualBlock([L.Conv2D(8, 3, padding="same")]), (6, 6, 8), (6, 6, 8), 584),
    (lambda: L.ResidualBlock([L.Conv2D(12, 1)]), (6, 6, 8), (6, 6, 12), 108 + 108),
    # Inception: 1x1 (16*8+8) | 1x1 (16*4+4) -> 3x3 (9*4*8+8) | pool -> 1x1 (16*4+4) | identity.
    (
        lambda: L.Branches(
            [
                [L.Conv2D(8, 1)],
                [L.Conv2D(4, 1), L.Conv2D(8, 3, padding="same")],
                [L.MaxPooling2D(3, strides=1, padding="same"), L.Conv2D(4, 1)],
                [],
            ]
        ),
        (14, 14, 16),
        (14, 14, 36),
        136 + 68 + 296 + 68,
    ),
]


@pytest.mark.parametrize("case", range(len(SHAPE_CASES)))
def test_output_shapes_and_param_counts(case):
    factory, in_shape, out_shape, params = SHAPE_CASES[case]
    layer = factory()
    assert layer.compute_output_shape(in_shape) == out_shape
    layer.build(in_shape)
    assert layer.output_shape == out_shape
    assert layer.input_shape == in_shape
    assert layer.count_params() == params
    y = layer.forward(np.ones((2, *in_shape), np.float32))
    assert y.shape == (2, *out_shape) and y.dtype == np.float32


def test_bn_trainable_and_non_trainable_counts():
    bn = L.BatchNormalization()
    bn.build((5, 5, 64))
    assert (bn.count_params(), bn.count_trainable_params(), bn.count_non_trainable_params()) == (
        256,
        128,
        128,
    )
    assert [w.shape for w in bn.get_weights()] == [(64,)] * 4


def test_none_spatial_dims_propagate():
    conv = L.Conv2D(4, 3, strides=2, padding="same")
    assert conv.compute_output_shape((None, None, 3)) == (None, None, 4)
    assert L.Flatten().compute_output_shape((None, 4, 3)) == (None,)
    conv.build((None, None, 3))
    assert conv.forward(np.zeros((1, 9, 7, 3))).shape == (1, 5, 4, 4)


# ---------------------------------------------------------------------------
# Behaviour details
# ---------------------------------------------------------------------------


def test_conv_layer_matches_functional_op_and_fused_activation():
    x = rand(2, 6, 6, 3).astype(np.float32)
    conv = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")
    y = conv(x)
    w, b = conv.get_weights()
    ref = np.maximum(ops.conv2d(x, w, b, stride=2, padding="same"), 0)
    np.testing.assert_allclose(y, ref, rtol=1e-6)


def test_separable_is_depthwise_then_pointwise():
    x = rand(1, 6, 6, 3)
    sep = L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", dtype=F64)
    sep.build((6, 6, 3))
    sep.set_weights([rand(3, 3, 3, 2), rand(1, 1, 6, 5), rand(5)])
    dk, pk, b = sep.get_weights()
    ref = ops.conv2d(ops.depthwise_conv2d(x, dk, padding="same"), pk, b)
    np.testing.assert_allclose(sep(x), ref, rtol=1e-12)


def test_conv_transpose_with_output_padding_is_adjoint_of_same_conv():
    # Keras/TF: Conv2DTranspose(padding="same", output_padding=1) with stride 2 is the adjoint of
    # a stride-2 "same" conv of the (2H)-sized output (TF pads top = total // 2).
    layer = L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1, use_bias=False, dtype=F64)
    x = rand(1, 4, 4, 3)
    y = layer(x)
    assert y.shape == (1, 8, 8, 2)
    (w,) = layer.get_weights()  # (KH, KW, C_out=2, C_in=3): conv2d weight for 2 -> 3 channels
    z = rand(1, 8, 8, 2, seed=5)
    lhs = np.sum(ops.conv2d(z, w, stride=2, padding="same") * x)
    np.testing.assert_allclose(lhs, np.sum(z * y), rtol=1e-10)


def test_bilinear_upsampling_matches_tensorflow_half_pixel_values():
    x = np.array([0.0, 1.0]).reshape(1, 1, 2, 1)
    y = L.UpSampling2D((1, 2), interpolation="bilinear", dtype=F64)(x)
    np.testing.assert_allclose(y.ravel(), [0.0, 0.25, 0.75, 1.0])
    x = rand(2, 3, 3, 2).astype(np.float32)
    np.testing.assert_array_equal(L.UpSampling2D(2)(x), x.repeat(2, 1).repeat(2, 2))
    # Bilinear of a constant image is constant; of a linear ramp, a ramp inside.
    c = L.UpSampling2D(3, interpolation="bilinear")(np.full((1, 4, 4, 1), 2.5, np.float32))
    np.testing.assert_allclose(c, 2.5, rtol=1e-6)


def test_batchnorm_training_and_inference_statistics():
    bn = L.BatchNormalization(dtype=F64)
    x = 3.0 + 2.0 * rand(8, 4, 4, 3)
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-10)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, rtol=1e-3)
    _, _, mm, mv = bn.get_weights()
    np.testing.assert_allclose(mm, 0.01 * x.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(mv, 0.99 + 0.01 * x.var(axis=(0, 1, 2)))
    y_inf = bn.forward(x, training=False)
    np.testing.assert_allclose(y_inf, (x - mm) / np.sqrt(mv + 1e-3))
    assert bn.momentum == 0.99 and bn.epsilon == 1e-3


def test_dropout_is_inverted_and_training_only():
    x = np.ones((200, 50), np.float32)
    d = L.Dropout(0.25, seed=0)
    assert d(x, training=False) is not None
    np.testing.assert_array_equal(d(x), x)
    y = d(x, training=True)
    assert y.dtype == np.float32
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    d2 = L.Dropout(0.25, seed=0)
    np.testing.assert_array_equal(d2(x, training=True), y)  # seedable
    np.testing.assert_array_equal(L.Dropout(1.0)(x, training=True), 0)


def test_need_input_grad_false_skips_dx_but_fills_grads():
    for layer, shape in [
        (L.Conv2D(2, 3, dtype=F64), (1, 5, 5, 2)),
        (L.Dense(3, dtype=F64), (2, 4)),
        (L.BatchNormalization(dtype=F64), (4, 3)),
        (_resnet_block(), (1, 4, 4, 2)),
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
        _resnet_block(),
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

WEIGHT_CASES = [
    (lambda: L.Conv2D(4, 3), (6, 6, 2), [(3, 3, 2, 4), (4,)]),
    (lambda: L.Conv2D(4, 3, use_bias=False), (6, 6, 2), [(3, 3, 2, 4)]),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 3), [(3, 3, 3, 2), (6,)]),
    (lambda: L.SeparableConv2D(5, 3, depth_multiplier=2), (6, 6, 3), [(3, 3, 3, 2), (1, 1, 6, 5), (5,)]),
    (lambda: L.Conv2DTranspose(5, 3), (6, 6, 3), [(3, 3, 5, 3), (5,)]),
    (lambda: L.Dense(7), (3,), [(3, 7), (7,)]),
    (lambda: L.BatchNormalization(), (4, 4, 6), [(6,)] * 4),
    (lambda: L.BatchNormalization(center=False), (6,), [(6,)] * 3),
]


@pytest.mark.parametrize("case", range(len(WEIGHT_CASES)))
def test_get_set_weights_round_trip_keras_order(case):
    factory, in_shape, shapes = WEIGHT_CASES[case]
    layer = factory()
    layer.build(in_shape)
    weights = layer.get_weights()
    assert [w.shape for w in weights] == shapes
    new = [rand(*s, seed=i).astype(np.float32) for i, s in enumerate(shapes)]
    refs = layer.weights
    layer.set_weights(new)
    for got, want, ref in zip(layer.get_weights(), new, refs):
        np.testing.assert_array_equal(got, want)
    assert all(a is b for a, b in zip(layer.weights, refs))  # updated in place
    got = layer.get_weights()
    got[0][...] = 123.0  # get_weights returns copies
    assert not np.any(layer.weights[0] == 123.0)


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


def _config_round_trip(layer, in_shape):
    layer.build(in_shape)
    d = json.loads(json.dumps(L.serialize(layer)))
    clone = L.deserialize(d)
    clone.build(in_shape)
    clone.set_weights(layer.get_weights())
    assert clone.name == layer.name and type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    x = rand(2, *in_shape).astype(layer.dtype)
    np.testing.assert_array_equal(clone(x), layer(x))
    return clone


CONFIG_CASES = [
    (
        lambda: L.Conv2D(
            4,
            (3, 2),
            strides=(2, 1),
            padding="same",
            dilation_rate=1,
            groups=2,
            activation="elu",
            kernel_initializer="he_normal",
            kernel_regularizer=regularizers.l2(1e-3),
            input_shape=(6, 6, 2),
        ),
        (6, 6, 2),
    ),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, dilation_rate=2, activation="relu"), (7, 7, 2)),
    (
        lambda: L.SeparableConv2D(
            3, 3, padding="same", depth_multiplier=2, activation="sigmoid", depthwise_regularizer="l1"
        ),
        (5, 5, 2),
    ),
    (lambda: L.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1), (4, 4, 2)),
    (lambda: L.MaxPooling2D(3, strides=2, padding="same"), (7, 7, 2)),
    (lambda: L.AveragePooling2D(2), (6, 6, 2)),
    (lambda: L.GlobalAveragePooling2D(keepdims=True), (4, 4, 2)),
    (lambda: L.Flatten(), (3, 3, 2)),
    (lambda: L.Dense(4, activation="softmax", use_bias=False, kernel_initializer="lecun_normal"), (5,)),
    (lambda: L.Dropout(0.3, noise_shape=[None, 1], seed=2), (5,)),
    (lambda: L.Activation("selu"), (5,)),
    (lambda: L.ReLU(max_value=6.0), (5,)),
    (lambda: L.Softmax(), (5,)),
    (lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False), (3, 3, 2)),
    (lambda: L.ZeroPadding2D(((1, 0), (2, 3))), (3, 3, 2)),
    (lambda: L.UpSampling2D((2, 1), interpolation="bilinear"), (3, 3, 2)),
    (_resnet_block, (5, 5, 2)),
    (lambda: L.Branches([[L.Conv2D(2, 1)], [L.MaxPooling2D(3, 1, "same")], []]), (4, 4, 3)),
]


@pytest.mark.parametrize("case", range(len(CONFIG_CASES)))
def test_config_round_trip_gives_identical_outputs(case):
    factory, in_shape = CONFIG_CASES[case]
    layer = factory()
    if layer.params or layer.sublayers or isinstance(layer, L.BatchNormalization):
        pass
    _config_round_trip(layer, in_shape)


def test_block_config_keeps_auto_projection_and_sublayer_names():
    block = _resnet_block()
    block.build((5, 5, 2))
    clone = _config_round_trip(block, (5, 5, 2))
    assert [s.name for s in clone.sublayers] == [s.name for s in block.sublayers]
    assert isinstance(clone.sublayers[-2], L.Conv2D) and clone.sublayers[-2].kernel_size == (1, 1)
    assert clone.sublayers[-2].strides == (2, 2)


def test_unknown_layer_class_in_deserialize():
    with pytest.raises(ValueError, match="Unknown layer: 'Conv3D'"):
        L.deserialize({"class_name": "Conv3D", "config": {}})


def test_max_pool2d_alias_and_registry():
    assert L.MaxPool2D is L.MaxPooling2D
    assert L.deserialize({"class_name": "MaxPool2D", "config": {}}).pool_size == (2, 2)


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


def test_trainable_false_on_blocks_propagates():
    block = _resnet_block()
    block.build((5, 5, 2))
    total = block.count_params()
    bn_stats = sum(
        s.state["moving_mean"].size * 2 for s in block.sublayers if isinstance(s, L.BatchNormalization)
    )
    assert block.count_non_trainable_params() == bn_stats
    block.trainable = False
    assert block.trainable_pairs() == [] and block.count_trainable_params() == 0
    assert block.count_non_trainable_params() == total
    assert all(not s.trainable for s in block.sublayers)
    frozen = L.Branches([[L.Conv2D(2, 1)]], trainable=False)
    frozen.build((3, 3, 2))
    assert frozen.trainable_pairs() == [] and frozen.count_non_trainable_params() == 6


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


def test_block_pair_keys_are_unique():
    block = _resnet_block()
    block.build((5, 5, 2))
    keys = [k for k, _, _ in block.trainable_pairs()]
    assert len(keys) == len(set(keys)) and all(k.startswith(block.name + "/") for k in keys)


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


# ---------------------------------------------------------------------------
# Initializers and regularizers
# ---------------------------------------------------------------------------


def test_initializers_fans_and_distributions():
    assert initializers.compute_fans((3, 3, 16, 32)) == (144, 288)
    assert initializers.compute_fans((100, 10)) == (100, 10)
    initializers.set_seed(0)
    w = initializers.get("glorot_uniform")((3, 3, 64, 64), "float64")
    limit = np.sqrt(6 / (576 + 576))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    w = initializers.get("he_normal")((3, 3, 64, 128))
    assert w.dtype == np.float32
    std = np.sqrt(2 / 576)
    assert abs(w.std() / std - 1) < 0.05 and np.abs(w).max() <= 2 * std / 0.8796 + 1e-6
    w = initializers.get("lecun_normal")((400, 300))
    assert abs(w.std() / np.sqrt(1 / 400) - 1) < 0.05
    w = initializers.get("glorot_normal")((400, 300))
    assert abs(w.std() / np.sqrt(2 / 700) - 1) < 0.05
    w = initializers.get("he_uniform")((400, 300))
    assert np.abs(w).max() <= np.sqrt(6 / 400)
    assert not initializers.get("zeros")((3,)).any() and initializers.get("ones")((3,)).all()


def test_initializers_are_seedable():
    a = initializers.HeNormal(seed=5)((4, 4))
    np.testing.assert_array_equal(a, initializers.get(initializers.HeNormal(seed=5))((4, 4)))
    initializers.set_seed(11)
    c1 = L.Conv2D(3, 3)
    c1.build((5, 5, 2))
    initializers.set_seed(11)
    c2 = L.Conv2D(3, 3)
    c2.build((5, 5, 2))
    np.testing.assert_array_equal(c1.get_weights()[0], c2.get_weights()[0])
    with pytest.raises(ValueError, match="Could not interpret initializer identifier"):
        L.Conv2D(3, 3, kernel_initializer="glorot_unifrom")


def test_regularizer_loss_and_gradient():
    r = regularizers.l2(0.01)
    w = np.array([1.0, -2.0])
    assert r(w) == pytest.approx(0.05)
    np.testing.assert_allclose(r.gradient(w), [0.02, -0.04])
    r = regularizers.l1_l2(0.1, 0.2)
    assert r(w) == pytest.approx(0.1 * 3 + 0.2 * 5)
    np.testing.assert_allclose(r.gradient(w), [0.1 + 0.4, -0.1 - 0.8])
    dense = L.Dense(2, kernel_regularizer=regularizers.l2(0.5), dtype=F64)
    dense.build((3,))
    k = dense.params["kernel"]
    assert dense.regularization_loss() == pytest.approx(0.5 * np.sum(k**2))
    block = L.ResidualBlock([dense, L.Dense(3, kernel_regularizer="l2", dtype=F64)])
    block.build((3,))
    assert block.regularization_loss() > dense.regularization_loss()
    mlp = L.ResidualBlock([L.Dense(5, activation="relu")], projection_batchnorm=True, dtype=F64)
    mlp.build((3,))
    assert mlp.output_shape == (5,) and mlp.count_params() == 20 + 15 + 20
    fd_check(mlp, rand(4, 3))
    # Zero upstream gradient: the grad is the regularizer's gradient alone.
    dense.forward(np.ones((1, 3)), training=True)
    dense.backward(np.zeros((1, 2)))
    np.testing.assert_allclose(dense.grads["kernel"], 2 * 0.5 * k)
    assert regularizers.deserialize(regularizers.serialize(r)).get_config() == r.get_config()


# ---------------------------------------------------------------------------
# Cross-checks against PyTorch (skipped when it is not installed)
# ---------------------------------------------------------------------------


def test_against_torch_bilinear_transpose_and_batchnorm():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand(2, 5, 4, 3)
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # NCHW
    # Bilinear upsampling: TF half-pixel centres == PyTorch align_corners=False.
    up = L.UpSampling2D((2, 3), interpolation="bilinear", dtype=F64)(x)
    ref = F.interpolate(tx, scale_factor=(2, 3), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(up, ref.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    # Conv2DTranspose "valid" (K >= stride) == PyTorch padding 0; also K < stride (Keras pads).
    for k, s in [(3, 2), (2, 3)]:
        layer = L.Conv2DTranspose(4, k, strides=s, dtype=F64, bias_initializer="ones")
        y = layer(x)
        w, b = layer.get_weights()
        ref = (
            F.conv_transpose2d(
                tx, torch.from_numpy(w.transpose(3, 2, 0, 1).copy()), torch.from_numpy(b), stride=s
            )
            .numpy()
            .transpose(0, 2, 3, 1)
        )
        assert y.shape == (2, 5 * s + max(k - s, 0), 4 * s + max(k - s, 0), 4)
        np.testing.assert_allclose(y[:, : ref.shape[1], : ref.shape[2]], ref, rtol=1e-10)
        np.testing.assert_allclose(y[:, ref.shape[1] :], 1.0)  # Keras's extra rows: bias only
    # BatchNormalization training output and gradient.
    bn = L.BatchNormalization(dtype=F64)
    y = bn.forward(x, training=True)
    dx = bn.backward(x**2)
    tx.requires_grad_(True)
    ty = F.batch_norm(
        tx,
        None,
        None,
        torch.ones(3, dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
        training=True,
        eps=1e-3,
    )
    ty.backward(torch.from_numpy((x**2).transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-8, atol=1e-12)
    # selu / elu values.
    t = torch.from_numpy(x)
    np.testing.assert_allclose(activations.selu.forward(x), F.selu(t).numpy(), rtol=1e-12)
    np.testing.assert_allclose(activations.elu.forward(x), F.elu(t).numpy(), rtol=1e-12)
