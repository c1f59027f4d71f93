"""Reshaping layers (fastconv/layers/reshaping.py): ZeroPadding2D and UpSampling2D (nearest and
bilinear). Finite-difference gradients (float64), Keras shapes, TensorFlow's half-pixel bilinear
values, config round trips.
"""

from __future__ import annotations

import numpy as np
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
    # Reshaping
    ("zeropad", lambda: L.ZeroPadding2D(((1, 2), (0, 3)), dtype=F64), (2, 3, 2, 2)),
    ("up_nearest", lambda: L.UpSampling2D((2, 3), dtype=F64), (2, 3, 2, 2)),
    ("up_bilinear", lambda: L.UpSampling2D((2, 3), interpolation="bilinear", dtype=F64), (2, 3, 4, 2)),
]


@pytest.mark.parametrize("name,factory,shape", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_layer_gradients(name, factory, shape):
    layer = factory()
    fd_check(layer, rand(*shape))


# ---------------------------------------------------------------------------
# Output shapes and parameter counts (hand-computed Keras numbers)
# ---------------------------------------------------------------------------


SHAPE_CASES = [
    (lambda: L.ZeroPadding2D(((1, 2), (3, 4))), (5, 5, 3), (8, 12, 3), 0),
    (lambda: L.ZeroPadding2D(2), (5, 5, 3), (9, 9, 3), 0),
    (lambda: L.UpSampling2D((2, 3)), (5, 5, 3), (10, 15, 3), 0),
    (lambda: L.UpSampling2D(interpolation="bilinear"), (5, 5, 3), (10, 10, 3), 0),
]


@pytest.mark.parametrize("case", range(len(SHAPE_CASES)))
def test_output_shapes_and_param_counts(case):
    check_output_shapes_and_param_counts(*SHAPE_CASES[case])


# ---------------------------------------------------------------------------
# Behaviour details
# ---------------------------------------------------------------------------


def test_bilinear_upsampling_matches_tensorflow_half_pixel_values():
    x = np.array([0.0, 1.0]).reshape(1, 1, 2, 1)
    y = L.UpSampling2D((1, 2), interpolation="bilinear", dtype=F64)(x)
    np.testing.assert_allclose(y.ravel(), [0.0, 0.25, 0.75, 1.0])
    x = rand(2, 3, 3, 2).astype(np.float32)
    np.testing.assert_array_equal(L.UpSampling2D(2)(x), x.repeat(2, 1).repeat(2, 2))
    # Bilinear of a constant image is constant; of a linear ramp, a ramp inside.
    c = L.UpSampling2D(3, interpolation="bilinear")(np.full((1, 4, 4, 1), 2.5, np.float32))
    np.testing.assert_allclose(c, 2.5, rtol=1e-6)


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------


CONFIG_CASES = [
    (lambda: L.ZeroPadding2D(((1, 0), (2, 3))), (3, 3, 2)),
    (lambda: L.UpSampling2D((2, 1), interpolation="bilinear"), (3, 3, 2)),
]


@pytest.mark.parametrize("case", range(len(CONFIG_CASES)))
def test_config_round_trip_gives_identical_outputs(case):
    check_config_round_trip_gives_identical_outputs(*CONFIG_CASES[case])
