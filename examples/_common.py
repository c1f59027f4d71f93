"""Shared by the examples: load a subset of the bundled MNIST as float32 images in [0, 1]."""

import numpy as np

from fastconv import datasets


def mnist(limit=None, val_limit=None, path=None):
    """``(x_train, y_train), (x_val, y_val)``: images ``(N, 28, 28, 1)`` float32 in [0, 1].

    ``path`` is a directory of the four IDX files (MNIST or Fashion-MNIST); by default the
    MNIST bundled with fastconv (8,000 training / 2,000 validation images)."""
    (x_train, y_train), (x_val, y_val) = datasets.load_mnist(path)
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        n_val = val_limit or max(limit // 4, 50)
        x_val, y_val = x_val[:n_val], y_val[:n_val]
    return (_prep(x_train), y_train), (_prep(x_val), y_val)


def _prep(x):
    return (x.astype(np.float32) / 255.0)[..., None]
