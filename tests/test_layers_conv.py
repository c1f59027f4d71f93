"""Convolution layers (fastconv/layers/conv.py): Conv2D, DepthwiseConv2D, SeparableConv2D and
Conv2DTranspose. Finite-difference gradients (float64), Keras shapes and parameter counts, agreement
with the ops they call, weights and config round trips.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import (  # tests/layercheck.py
    F64,
    check_config_round_trip_gives_identical_outputs,
    check_get_set_weights_round_trip_keras_order,
    check_output_shapes_and_param_counts,
    fd_check,
    rand,
)

from fastconv import ops, regularizers
from fastconv import layers as L


# ---------------------------------------------------------------------------
# Gradient checks (float64 finite differences)
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
]


@pytest.mark.parametrize("name,factory,shape", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_layer_gradients(name, factory, shape):
    layer = factory()
    fd_check(layer, rand(*shape))


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
]


@pytest.mark.parametrize("case", range(len(SHAPE_CASES)))
def test_output_shapes_and_param_counts(case):
    check_output_shapes_and_param_counts(*SHAPE_CASES[case])


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


# ---------------------------------------------------------------------------
# Weights, config, trainable
# ---------------------------------------------------------------------------


WEIGHT_CASES = [
    (lambda: L.Conv2D(4, 3), (6, 6, 2), [(3, 3, 2, 4), (4,)]),
    (lambda: L.Conv2D(4, 3, use_bias=False), (6, 6, 2), [(3, 3, 2, 4)]),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 3), [(3, 3, 3, 2), (6,)]),
    (lambda: L.SeparableConv2D(5, 3, depth_multiplier=2), (6, 6, 3), [(3, 3, 3, 2), (1, 1, 6, 5), (5,)]),
    (lambda: L.Conv2DTranspose(5, 3), (6, 6, 3), [(3, 3, 5, 3), (5,)]),
]


@pytest.mark.parametrize("case", range(len(WEIGHT_CASES)))
def test_get_set_weights_round_trip_keras_order(case):
    check_get_set_weights_round_trip_keras_order(*WEIGHT_CASES[case])


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
]


@pytest.mark.parametrize("case", range(len(CONFIG_CASES)))
def test_config_round_trip_gives_identical_outputs(case):
    check_config_round_trip_gives_identical_outputs(*CONFIG_CASES[case])
