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
