"""Small helpers with Keras names.

Examples
--------
>>> to_categorical([0, 2, 1])
array([[1., 0., 0.],
       [0., 0., 1.],
       [0., 1., 0.]], dtype=float32)
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

__all__ = ["atomic_write", "to_categorical"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, mode: str = "wb", what: str = "write") -> None:
    """Write a file so that readers see the old file or the whole new one, never a half-written one.

    ``write(fileobj)`` fills a temporary file in the same directory, which is flushed to disk, given
    the old file's permissions (or the umask's), and renamed over ``path``; the rename is made
    durable too.  On any error the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cannot {what} {path!r}: directory {directory!r} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            perms = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o666 & ~_umask()
            os.chmod(tmp, perms)
        except OSError:  # pragma: no cover - exotic file systems
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - not possible on some platforms
        pass


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
