"""Pooling layers (fastconv/layers/pooling.py): MaxPooling2D (and its alias MaxPool2D),
AveragePooling2D, GlobalAveragePooling2D. Finite-difference gradients (float64), Keras shapes,
config round trips.
"""

from __future__ import annotations

import pytest
from layercheck import (  # tests/layercheck.py
    F64,
    check_config_round_trip_gives_identical_outputs,
    check_output_shapes_and_param_counts,
    fd_check,
    rand,
)

from fastconv import layers as L


# ---------------------------------------------------------------------------
# Gradient checks (float64 finite differences)
# ---------------------------------------------------------------------------


GRAD_CASES = [
    # Pooling
    ("maxpool", lambda: L.MaxPooling2D(dtype=F64), (2, 4, 6, 3)),
    ("maxpool_same_3s2", lambda: L.MaxPool2D(3, strides=2, padding="same", dtype=F64), (1, 7, 6, 2)),
    ("avgpool_same", lambda: L.AveragePooling2D(3, strides=2, padding="same", dtype=F64), (1, 7, 6, 2)),
    ("avgpool_valid", lambda: L.AveragePooling2D((2, 3), dtype=F64), (2, 4, 6, 2)),
    ("gap", lambda: L.GlobalAveragePooling2D(dtype=F64), (2, 3, 4, 5)),
    ("gap_keepdims", lambda: L.GlobalAveragePooling2D(keepdims=True, dtype=F64), (2, 3, 4, 5)),
]


@pytest.mark.parametrize("name,factory,shape", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_layer_gradients(name, factory, shape):
    layer = factory()
    fd_check(layer, rand(*shape))


# ---------------------------------------------------------------------------
# Output shapes and parameter counts (hand-computed Keras numbers)
# ---------------------------------------------------------------------------


SHAPE_CASES = [
    (lambda: L.MaxPooling2D(), (28, 28, 32), (14, 14, 32), 0),
    (lambda: L.MaxPooling2D(3, strides=2), (13, 13, 4), (6, 6, 4), 0),
    (lambda: L.MaxPool2D(3, strides=2, padding="same"), (13, 13, 4), (7, 7, 4), 0),
    (lambda: L.AveragePooling2D(), (7, 7, 3), (3, 3, 3), 0),
    (lambda: L.AveragePooling2D(padding="same"), (7, 7, 3), (4, 4, 3), 0),
    (lambda: L.GlobalAveragePooling2D(), (7, 7, 64), (64,), 0),
    (lambda: L.GlobalAveragePooling2D(keepdims=True), (7, 7, 64), (1, 1, 64), 0),
]


@pytest.mark.parametrize("case", range(len(SHAPE_CASES)))
def test_output_shapes_and_param_counts(case):
    check_output_shapes_and_param_counts(*SHAPE_CASES[case])


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------


CONFIG_CASES = [
    (lambda: L.MaxPooling2D(3, strides=2, padding="same"), (7, 7, 2)),
    (lambda: L.AveragePooling2D(2), (6, 6, 2)),
    (lambda: L.GlobalAveragePooling2D(keepdims=True), (4, 4, 2)),
]


@pytest.mark.parametrize("case", range(len(CONFIG_CASES)))
def test_config_round_trip_gives_identical_outputs(case):
    check_config_round_trip_gives_identical_outputs(*CONFIG_CASES[case])


def test_max_pool2d_alias_and_registry():
    assert L.MaxPool2D is L.MaxPooling2D
    assert L.deserialize({"class_name": "MaxPool2D", "config": {}}).pool_size == (2, 2)
