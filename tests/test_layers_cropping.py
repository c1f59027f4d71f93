"""Cropping2D (fastconv/layers/cropping.py): its argument forms, shapes, gradient, config and errors."""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import fd_check, roundtrip, x_img  # tests/layercheck.py

from fastconv import layers as L


def test_cropping2d_forms_shapes_and_gradient():
    x = x_img()
    assert L.Cropping2D(((1, 0), (2, 1)))(x).shape == (2, 3, 2, 3)  # Keras's shape for this cropping
    np.testing.assert_array_equal(L.Cropping2D(((1, 0), (2, 1)))(x), x[:, 1:, 2:4])
    np.testing.assert_array_equal(L.Cropping2D(1)(x), x[:, 1:3, 1:4])
    np.testing.assert_array_equal(L.Cropping2D((1, 2))(x), x[:, 1:3, 2:3])
    np.testing.assert_array_equal(L.Cropping2D()(x), x)
    fd_check(L.Cropping2D(((1, 0), (2, 1)), dtype="float64"), x, k=20)
    assert roundtrip(L.Cropping2D(((1, 0), (2, 1)))).cropping == ((1, 0), (2, 1))
    with pytest.raises(ValueError, match="at least one row"):
        L.Cropping2D((2, 0)).build((4, 5, 3))
    with pytest.raises(ValueError, match="cropping"):
        L.Cropping2D((1, 2, 3))
