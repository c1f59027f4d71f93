"""Small helpers with Keras names.

Examples
--------
>>> to_categorical([0, 2, 1])
array([[1., 0., 0.],
       [0., 0., 1.],
       [0., 1., 0.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_categorical"]


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer labels (Keras ``to_categorical``).

    Parameters
    ----------
    y : array-like of int, shape (N,) or (N, 1) (any leading shape; a trailing 1 is dropped)
    num_classes : int, optional
        Defaults to ``max(y) + 1``.

    Returns
    -------
    ndarray, shape (N, num_classes)
    """
    y = np.asarray(y)
    if y.dtype.kind == "f":
        yi = y.astype(np.int64)
        if not np.array_equal(yi, y):
            raise ValueError("to_categorical: y must hold integer class labels.")
        y = yi
    elif y.dtype.kind not in "iub":
        raise TypeError(f"to_categorical: y must hold integers. Received dtype {y.dtype}.")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    y = y.astype(np.int64, copy=False)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    num_classes = int(num_classes)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"to_categorical: labels must be in [0, {num_classes}). "
            f"Received labels in [{int(y.min())}, {int(y.max())}]."
        )
    out = np.zeros((*y.shape, num_classes), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out
