"""Initializers (fastconv/initializers.py): fans, the distributions' scales and bounds, seeding.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import initializers
from fastconv import layers as L


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
