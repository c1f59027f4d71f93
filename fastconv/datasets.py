"""Data loaders: IDX files (MNIST / Fashion-MNIST), the bundled MNIST, MNIST-C and CIFAR-10 binaries.

Everything is read locally; nothing is downloaded.

* :func:`load_mnist` with no path reads the real MNIST test set bundled in
  ``fastconv/data`` (10,000 images) and returns a fixed split: the first 8,000
  images for training and the last 2,000 for testing. With a directory holding
  the four standard files it returns the full data set (MNIST or
  Fashion-MNIST: the format is the same).
* :func:`load_idx` reads one IDX file, gzip-compressed or raw, and checks the
  magic number, the dimensions and the exact byte count.
* :func:`load_mnist_c` reads the MNIST-C layout
  ``<dir>/<corruption>/{train,test}_{images,labels}.npy``.
* :func:`load_cifar10` reads CIFAR-10's binary version (``data_batch_{1..5}.bin``,
  ``test_batch.bin``).

Shapes follow Keras's ``load_data``: images ``(N, 28, 28)`` uint8, labels ``(N,)`` uint8.

Paths may start with ``~`` (expanded to the home directory). Only MNIST's test set is bundled:
Fashion-MNIST, the full MNIST, MNIST-C and CIFAR-10 are read from a directory you download them
to; a missing directory or file raises :class:`FileNotFoundError` naming the files expected and
where they come from.

Examples
--------
>>> (x_train, y_train), (x_test, y_test) = load_mnist()
>>> x_train.shape, x_test.shape, x_train.dtype
((8000, 28, 28), (2000, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "BUNDLED_SPLIT",
    "CIFAR10_FILES",
    "FILES",
    "IDX_FILES",
    "SOURCES",
    "bundled_data_dir",
    "load_cifar10",
    "load_fashion_mnist",
    "load_idx",
    "load_mnist",
    "load_mnist_c",
]

#: Bundled MNIST test set split: first 8,000 images train, last 2,000 test.
BUNDLED_SPLIT = 8000

# IDX type codes -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


#: The four IDX files of MNIST and Fashion-MNIST (each may also be gzip-compressed, ``.gz``).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: CIFAR-10's binary batches (the folder ``cifar-10-batches-bin`` of the archive below).
CIFAR10_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)

#: Per data set read from a directory: the files it needs and how to get them (for messages).
FILES = {
    "MNIST": tuple(f + "[.gz]" for f in IDX_FILES),
    "Fashion-MNIST": tuple(f + "[.gz]" for f in IDX_FILES),
    "CIFAR-10": CIFAR10_FILES,
}
SOURCES = {
    "MNIST": "download them from https://yann.lecun.com/exdb/mnist/ (or a mirror)",
    "Fashion-MNIST": (
        "download them from the folder data/fashion of https://github.com/zalandoresearch/fashion-mnist"
    ),
    "CIFAR-10": "unpack https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
}


def _where(name: str) -> str:
    """The files a data set needs and where they come from, for error messages."""
    return (
        f"{name} needs a directory holding {', '.join(FILES[name])}: {SOURCES[name]} and pass that "
        f"directory (fastconv downloads nothing)"
    )


def _expand(path) -> Path:
    """``path`` as a Path with ``~`` expanded (``Path`` does not expand it on its own)."""
    return Path(os.fspath(path)).expanduser()


def bundled_data_dir() -> Path:
    """The directory of the MNIST files shipped with fastconv."""
    return Path(__file__).resolve().parent / "data"


def _read_bytes(path) -> bytes:
    path = os.fspath(_expand(path))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"IDX file not found: {path!r}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path!r} is not a valid gzip file (truncated or corrupted): {e}") from None
    return raw


def load_idx(path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw).

    Parameters
    ----------
    path : str or path-like
        E.g. ``train-images-idx3-ubyte.gz``.

    Returns
    -------
    ndarray
        Shape from the file's header (``(N, 28, 28)`` for images, ``(N,)`` for
        labels), native-endian dtype of the file's type code (uint8 for MNIST).

    Raises
    ------
    ValueError
        Bad magic number, unknown type code, or a size that does not match the header.
    """
    raw = _read_bytes(path)
    name = os.fspath(_expand(path))
    if len(raw) < 4:
        raise ValueError(f"{name!r} is not an IDX file: {len(raw)} bytes, too short for a header.")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{name!r} is not an IDX file: bad magic number 0x{raw[:4].hex()} (expected 0x0000TTDD: "
            f"two zero bytes, a type code and the number of dimensions, e.g. 0x00000803 for images)."
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{name!r}: bad magic number 0x{raw[:4].hex()}: unknown IDX type code 0x{code:02x} "
            f"(known: {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})."
        )
    if ndim == 0:
        raise ValueError(f"{name!r}: bad magic number 0x{raw[:4].hex()}: zero dimensions.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name!r} is truncated: {len(raw)} bytes, the header alone needs {header}.")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(
            f"{name!r} is {what}: header gives shape {dims} of {dtype.newbyteorder('=').name} "
            f"({expected} bytes with the header) but the file holds {len(raw)} bytes."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


_STANDARD_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find(directory: Path, stems) -> Path | None:
    for stem in stems:
        for suffix in (".gz", ""):
            p = directory / (stem + suffix)
            if p.is_file():
                return p
    return None


def _check_pair(x, y, xp, yp):
    if x.ndim != 3:
        raise ValueError(f"{str(xp)!r}: expected images of shape (N, H, W), got {x.shape}.")
    if y.ndim != 1:
        raise ValueError(f"{str(yp)!r}: expected labels of shape (N,), got {y.shape}.")
    if len(x) != len(y):
        raise ValueError(f"{str(xp)!r} holds {len(x)} images but {str(yp)!r} holds {len(y)} labels.")


def load_mnist(path=None):
    """MNIST (or Fashion-MNIST) as ``((x_train, y_train), (x_test, y_test))``.

    Parameters
    ----------
    path : str or path-like, optional
        A directory with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]`` (the dotted
        spelling ``train-images.idx3-ubyte`` is accepted too; ``~`` is expanded). ``None`` uses
        the bundled real MNIST test set: the first 8,000 images for training, the last 2,000
        for testing.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        uint8 images ``(N, 28, 28)`` and uint8 labels ``(N,)``.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a directory or lacks one of the four files (the message names them).
    """
    return _load_idx_dir(path, "MNIST")


def _load_idx_dir(path, name):
    if path is None:
        d = bundled_data_dir()
        xp, yp = _find(d, _STANDARD_NAMES["x_test"]), _find(d, _STANDARD_NAMES["y_test"])
        if xp is None or yp is None:
            raise FileNotFoundError(
                f"The bundled MNIST files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) are "
                f"missing from {str(d)!r}; reinstall fastconv or pass a directory."
            )
        x, y = load_idx(xp), load_idx(yp)
        _check_pair(x, y, xp, yp)
        s = BUNDLED_SPLIT
        return (x[:s], y[:s]), (x[s:], y[s:])
    d = _expand(path)
    if not d.is_dir():
        what = "is a file, not a directory" if d.exists() else "does not exist"
        raise FileNotFoundError(f"{name} directory {str(d)!r} {what}. {_where(name)}.")
    files = {}
    for key, stems in _STANDARD_NAMES.items():
        p = _find(d, stems)
        if p is None:
            raise FileNotFoundError(f"{str(d)!r} does not hold {stems[0]}[.gz]. {_where(name)}.")
        files[key] = p
    arrays = {k: load_idx(p) for k, p in files.items()}
    _check_pair(arrays["x_train"], arrays["y_train"], files["x_train"], files["y_train"])
    _check_pair(arrays["x_test"], arrays["y_test"], files["x_test"], files["y_test"])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def load_fashion_mnist(path=None):
    """Fashion-MNIST from a directory of its four IDX files (same format as :func:`load_mnist`).

    Fashion-MNIST is not bundled and nothing is downloaded: put ``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``
    (from https://github.com/zalandoresearch/fashion-mnist, ``data/fashion/``) in a directory and
    pass it; ``~`` is expanded.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        uint8 images ``(60000, 28, 28)`` / ``(10000, 28, 28)`` and uint8 labels.

    Raises
    ------
    FileNotFoundError
        No ``path`` given, or the directory lacks one of the four files (the message names them).

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist("~/fashion-mnist")  # doctest: +SKIP
    """
    if path is None:
        raise FileNotFoundError(f"Fashion-MNIST is not bundled with fastconv. {_where('Fashion-MNIST')}.")
    return _load_idx_dir(path, "Fashion-MNIST")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"MNIST-C file not found: {str(path)!r}") from None
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{str(path)!r} is not a valid .npy file: {e}") from None


def load_mnist_c(path, corruption="identity"):
    """MNIST-C: ``<path>/<corruption>/{train,test}_{images,labels}.npy``.

    Images are ``(N, 28, 28, 1)`` uint8 in the published files (returned as stored);
    labels ``(N,)``.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
    """
    base = _expand(path)
    if not base.is_dir():
        raise FileNotFoundError(f"MNIST-C directory not found: {str(base)!r}")
    d = base / corruption
    if not d.is_dir():
        available = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"Corruption {corruption!r} not found in {str(base)!r}. Available: {available}"
        )
    out = []
    for split in ("train", "test"):
        xp, yp = d / f"{split}_images.npy", d / f"{split}_labels.npy"
        x, y = _load_npy(xp), _load_npy(yp)
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
        if y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{str(xp)!r} holds {len(x)} images but {str(yp)!r} holds labels of shape {y.shape}."
            )
        out.append((x, y))
    return tuple(out)


_CIFAR_RECORD = 1 + 32 * 32 * 3


def _load_cifar_batch(path: Path):
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"CIFAR-10 file not found: {str(path)!r}") from None
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise ValueError(
            f"{str(path)!r} is not a CIFAR-10 binary batch: {len(raw)} bytes is not a multiple of "
            f"the {_CIFAR_RECORD}-byte record (1 label byte + 32*32*3 pixels)."
        )
    rec = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_RECORD)
    y = rec[:, 0].copy()
    if y.max() > 9:
        raise ValueError(f"{str(path)!r}: label byte {int(y.max())} > 9; not a CIFAR-10 binary batch.")
    x = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return x, y


def load_cifar10(path=None):
    """CIFAR-10 (binary version) from a directory holding ``data_batch_1.bin`` ... ``data_batch_5.bin``
    and ``test_batch.bin`` (or a ``cifar-10-batches-bin`` subdirectory holding them).

    CIFAR-10 is not bundled and nothing is downloaded: unpack
    https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and pass the directory; ``~`` is expanded.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        uint8 images ``(N, 32, 32, 3)`` and uint8 labels ``(N,)``. Missing training
        batches are skipped (at least one is needed).

    Raises
    ------
    FileNotFoundError
        No ``path`` given, or the directory lacks the batches (the message names them).
    """
    if path is None:
        raise FileNotFoundError(f"CIFAR-10 is not bundled with fastconv. {_where('CIFAR-10')}.")
    d = _expand(path)
    if (d / "cifar-10-batches-bin").is_dir():
        d = d / "cifar-10-batches-bin"
    if not d.is_dir():
        what = "is a file, not a directory" if d.exists() else "does not exist"
        raise FileNotFoundError(f"CIFAR-10 directory {str(d)!r} {what}. {_where('CIFAR-10')}.")
    train = [d / f for f in CIFAR10_FILES[:5] if (d / f).is_file()]
    if not train:
        raise FileNotFoundError(f"{str(d)!r} holds no data_batch_N.bin file. {_where('CIFAR-10')}.")
    if not (d / "test_batch.bin").is_file():
        raise FileNotFoundError(f"{str(d)!r} does not hold test_batch.bin. {_where('CIFAR-10')}.")
    parts = [_load_cifar_batch(p) for p in train]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _load_cifar_batch(d / "test_batch.bin")
    return (x_train, y_train), (x_test, y_test)
