"""Blocks (fastconv/layers/blocks.py): ResidualBlock (identity, projection, custom shortcut) and
Branches (inception). Finite-difference gradients through the sublayers, shapes and parameter
counts, config round trips keeping sublayer names, trainable flags and unique weight keys.
"""

from __future__ import annotations

import pytest
from layercheck import (  # tests/layercheck.py
    F64,
    check_config_round_trip_gives_identical_outputs,
    check_output_shapes_and_param_counts,
    config_round_trip,
    fd_check,
    rand,
    resnet_block,
)

from fastconv import layers as L


# ---------------------------------------------------------------------------
# Gradient checks (float64 finite differences)
# ---------------------------------------------------------------------------


BLOCK_CASES = [
    (
        "res_identity",
        lambda: L.ResidualBlock(
            [L.Conv2D(3, 3, padding="same", activation="tanh"), L.Conv2D(3, 1)], activation="relu", dtype=F64
        ),
        (2, 4, 4, 3),
    ),
    ("res_projection_bn", resnet_block, (2, 5, 5, 2)),
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
# Output shapes and parameter counts (hand-computed Keras numbers)
# ---------------------------------------------------------------------------


SHAPE_CASES = [
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
    check_output_shapes_and_param_counts(*SHAPE_CASES[case])


# ---------------------------------------------------------------------------
# Weights, config, trainable
# ---------------------------------------------------------------------------


CONFIG_CASES = [
    (resnet_block, (5, 5, 2)),
    (lambda: L.Branches([[L.Conv2D(2, 1)], [L.MaxPooling2D(3, 1, "same")], []]), (4, 4, 3)),
]


@pytest.mark.parametrize("case", range(len(CONFIG_CASES)))
def test_config_round_trip_gives_identical_outputs(case):
    check_config_round_trip_gives_identical_outputs(*CONFIG_CASES[case])


def test_block_config_keeps_auto_projection_and_sublayer_names():
    block = resnet_block()
    block.build((5, 5, 2))
    clone = config_round_trip(block, (5, 5, 2))
    assert [s.name for s in clone.sublayers] == [s.name for s in block.sublayers]
    assert isinstance(clone.sublayers[-2], L.Conv2D) and clone.sublayers[-2].kernel_size == (1, 1)
    assert clone.sublayers[-2].strides == (2, 2)


def test_trainable_false_on_blocks_propagates():
    block = resnet_block()
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


def test_block_pair_keys_are_unique():
    block = resnet_block()
    block.build((5, 5, 2))
    keys = [k for k, _, _ in block.trainable_pairs()]
    assert len(keys) == len(set(keys)) and all(k.startswith(block.name + "/") for k in keys)


# ---------------------------------------------------------------------------
# Inference inside blocks: BatchNormalization folded, activation layers as epilogues
# ---------------------------------------------------------------------------


def _run_plain(layers, x):
    for layer in layers:
        x = layer.forward(x, False)
    return x


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_block_inference_folds_batchnorm_and_equals_layer_by_layer(dtype, monkeypatch):
    import numpy as np

    from fastconv.layers import blocks

    rng = np.random.default_rng(3)
    res = L.ResidualBlock(
        [L.Conv2D(6, 3, strides=2, padding="same", use_bias=False), L.BatchNormalization(), L.Activation("relu"),
         L.Conv2D(6, 3, padding="same"), L.BatchNormalization(), L.Activation("tanh"),
         L.DepthwiseConv2D(3, padding="same"), L.BatchNormalization(), L.ReLU(max_value=6.0),
         L.Conv2D(6, 1), L.Activation("selu"), L.MaxPooling2D(1), L.BatchNormalization()],
        projection_batchnorm=True, activation="relu", dtype=dtype,
    )
    branches = L.Branches([[], [L.Conv2D(3, 1, use_bias=False), L.BatchNormalization(), L.Activation("relu")],
                           [L.Conv2D(2, 1, activation="relu"), L.BatchNormalization()]], dtype=dtype)
    for block, shape in ((res, (9, 9, 4)), (branches, (5, 5, 3))):
        block.build(shape)
        for layer in block.sublayers:
            if isinstance(layer, L.BatchNormalization):
                c = layer.state["moving_mean"].shape[0]
                layer.state["moving_mean"][...] = rng.standard_normal(c)
                layer.state["moving_variance"][...] = rng.uniform(0.2, 3.0, c)
                layer.params["gamma"][...] = rng.standard_normal(c)
                layer.params["beta"][...] = rng.standard_normal(c)
        x = rng.standard_normal((3, *shape)).astype(dtype)
        calls = []
        real = blocks._inference_path
        monkeypatch.setattr(blocks, "_inference_path", lambda layers, x: calls.append(len(layers)) or real(layers, x))
        got = block.forward(x, training=False)
        monkeypatch.setattr(blocks, "_inference_path", real)
        assert calls
        if block is res:
            y = _run_plain(res.layers, x) + _run_plain(res.shortcut, x)
            want = np.maximum(y, 0)
        else:
            want = np.concatenate([_run_plain(b, x) for b in branches.branches], axis=-1)
        tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
        np.testing.assert_allclose(got, want, **tol)


def test_block_inference_path_fuses_what_it_can():
    """Which layers run, and with what: the fold, the epilogue, and layers left alone."""
    import numpy as np

    from fastconv.layers import blocks

    layers = [L.Conv2D(4, 1, use_bias=False), L.BatchNormalization(), L.Activation("relu"),
              L.Conv2D(4, 1, activation="relu"), L.BatchNormalization(),  # own activation: no fold
              L.Conv2D(4, 1), L.Activation("selu"),  # epilogue without a fold
              L.MaxPooling2D(1), L.BatchNormalization()]  # nothing to fold into
    shape = (3, 3, 4)
    for layer in layers:
        layer.build(shape)
    seen = []
    for layer in layers:
        real = layer.forward
        layer.forward = (lambda real, layer: lambda x, training=False, epilogue=None, affine=None: (
            seen.append((layer, epilogue, affine is not None)), real(x, training, epilogue=epilogue, affine=affine))[1]
        )(real, layer)
    blocks._inference_path(layers, np.ones((1, *shape), np.float32))
    assert seen == [(layers[0], "relu", True), (layers[3], None, False), (layers[4], None, False),
                    (layers[5], "selu", False), (layers[7], None, False), (layers[8], None, False)]
