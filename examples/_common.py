"""Shared by the examples: load MNIST (bundled) or Fashion-MNIST as float32 images in [0, 1]."""

import os

import numpy as np

from fastconv import datasets


def mnist(limit=None, val_limit=None, path=None):
    """``(x_train, y_train), (x_val, y_val)``: images ``(N, 28, 28, 1)`` float32 in [0, 1].

    ``path`` is a directory of the four IDX files (MNIST or Fashion-MNIST); by default the
    MNIST bundled with fastconv (8,000 training / 2,000 validation images)."""
    (x_train, y_train), (x_val, y_val) = datasets.load_mnist(path)
    return _limit(x_train, y_train, x_val, y_val, limit, val_limit)


def fashion_mnist(path, limit=None, val_limit=None):
    """``((x_train, y_train), (x_val, y_val)), description``: Fashion-MNIST from ``path``; with
    ``path=None`` the bundled MNIST digits as a stand-in (Fashion-MNIST is not bundled), and the
    description says which one was loaded."""
    if path is None:
        data = mnist(limit, val_limit)
        return data, (
            "the bundled MNIST digits as a stand-in: Fashion-MNIST is not bundled with fastconv "
            "(pass --data DIR, a directory holding its four IDX files, to train on it)"
        )
    (x_train, y_train), (x_val, y_val) = datasets.load_fashion_mnist(path)
    data = _limit(x_train, y_train, x_val, y_val, limit, val_limit)
    return data, f"Fashion-MNIST from {os.path.expanduser(path)}"


def _limit(x_train, y_train, x_val, y_val, limit, val_limit):
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        n_val = val_limit or max(limit // 4, 50)
        x_val, y_val = x_val[:n_val], y_val[:n_val]
    return (_prep(x_train), y_train), (_prep(x_val), y_val)


def _prep(x):
    return (x.astype(np.float32) / 255.0)[..., None]
