"""Data loaders: IDX files (MNIST / Fashion-MNIST), the bundled MNIST, Keras's downloads, MNIST-C
and CIFAR-10 (binary and python versions).

Everything is read locally; nothing is downloaded.

* :func:`load_mnist` with no path reads Keras's download, ``<Keras cache>/datasets/mnist.npz``,
  when it is there, else the real MNIST test set bundled in ``fastconv/data`` (10,000 images) as
  a fixed split: the first 8,000 images for training and the last 2,000 for testing. The result's
  ``.source`` says which. With a directory holding the four standard files it returns the full
  data set (MNIST or Fashion-MNIST: the format is the same).
* :func:`load_fashion_mnist` and :func:`load_cifar10` with no path look where Keras keeps its
  downloads (:func:`keras_datasets_dirs`: ``$KERAS_HOME`` or ``~/.keras``, then ``datasets/``),
  under the names Keras uses (:data:`KERAS_FILES`).
* :func:`load_idx` reads one IDX file, gzip-compressed or raw, and checks the
  magic number, the dimensions and the exact byte count.
* :func:`load_mnist_c` reads the MNIST-C layout
  ``<dir>/<corruption>/{train,test}_{images,labels}.npy``.
* :func:`load_cifar10` reads CIFAR-10's binary version (``data_batch_{1..5}.bin``,
  ``test_batch.bin``) or its python version, extracted or as the downloaded
  ``cifar-10-python.tar.gz`` (read in place). The python version's batches are pickles: they are
  interpreted by :func:`read_plain_pickle`, which reads plain data only and never runs
  :func:`pickle.load` (see the notes above it).

Shapes follow Keras's ``load_data``: images ``(N, 28, 28)`` uint8, labels ``(N,)`` uint8.

Paths may start with ``~`` (expanded to the home directory). Only MNIST's test set is bundled:
Fashion-MNIST, the full MNIST, MNIST-C and CIFAR-10 are read from a directory you download them
to, or from Keras's cache; a missing directory or file raises :class:`FileNotFoundError` naming
the files expected, the folders searched and where the files come from.

Examples
--------
>>> (x_train, y_train), (x_test, y_test) = load_mnist()
>>> x_train.shape[1:], x_test.dtype
((28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import os
import pickletools
import struct
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

__all__ = [
    "BUNDLED_SPLIT",
    "CIFAR10_FILES",
    "FILES",
    "IDX_FILES",
    "KERAS_FILES",
    "Loaded",
    "SOURCES",
    "bundled_data_dir",
    "load_cifar10",
    "load_fashion_mnist",
    "load_idx",
    "load_mnist",
    "load_mnist_c",
    "keras_datasets_dirs",
    "read_plain_pickle",
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
    "CIFAR-10": (
        "unpack https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, or put the python version "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz there as downloaded"
    ),
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


# ------------------------------------------------------------ Keras's download cache

#: Where Keras keeps each data set under ``<Keras cache>/datasets`` (see :func:`keras_datasets_dirs`).
#: CIFAR-10's python version is there as Keras 3 leaves it (``cifar-10-batches-py-target/`` and the
#: archive ``cifar-10-batches-py-target_archive``) or as Keras 2 / tf.keras leave it
#: (``cifar-10-batches-py/`` and ``cifar-10-batches-py.tar.gz``).
KERAS_FILES = {
    "MNIST": ("mnist.npz",),
    "Fashion-MNIST": tuple(f"fashion-mnist/{f}.gz" for f in IDX_FILES),
    "CIFAR-10": (
        "cifar-10-batches-py-target/cifar-10-batches-py/",
        "cifar-10-batches-py-target_archive",
        "cifar-10-batches-py/",
        "cifar-10-batches-py.tar.gz",
        "cifar-10-python.tar.gz",
    ),
}


def keras_datasets_dirs() -> tuple[Path, ...]:
    """The folders where Keras's ``get_file`` keeps downloaded data sets, in the order searched.

    Keras's rule: the cache is ``$KERAS_HOME`` when that variable is set, else ``~/.keras`` (or
    ``/tmp/.keras`` when the home directory is not writable); files go to its ``datasets`` folder,
    and to ``/tmp/.keras/datasets`` when the cache itself is not writable. ``~`` is expanded.

    Returns
    -------
    tuple of Path
        ``<cache>/datasets``, then ``/tmp/.keras/datasets`` when Keras would have fallen back to it.

    Examples
    --------
    >>> keras_datasets_dirs()  # doctest: +SKIP
    (PosixPath('/home/me/.keras/datasets'),)
    """
    if "KERAS_HOME" in os.environ:
        base = _expand(os.environ["KERAS_HOME"])
    else:
        home = _expand("~")
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    dirs = [base / "datasets"]
    if not os.access(base, os.W_OK):
        tmp = Path("/tmp") if os.path.isdir("/tmp") else Path(tempfile.gettempdir())
        if tmp / ".keras" != base:
            dirs.append(tmp / ".keras" / "datasets")
    return tuple(dirs)


def _not_found(name: str, dirs, what: str) -> FileNotFoundError:
    """The offline error: the files expected, the folders searched, where to get them."""
    looked = ", ".join(repr(str(d)) for d in dirs)
    return FileNotFoundError(
        f"{name} {what}: found none of {', '.join(KERAS_FILES[name])} in Keras's download cache "
        f"({looked}; $KERAS_HOME moves it). Either run keras.datasets."
        f"{_KERAS_MODULE[name]}.load_data() once where there is a network, or put the files in "
        f"{str(dirs[0])!r} yourself, or pass a directory: {_where(name)}."
    )


_KERAS_MODULE = {"MNIST": "mnist", "Fashion-MNIST": "fashion_mnist", "CIFAR-10": "cifar10"}


class Loaded(tuple):
    """``((x_train, y_train), (x_test, y_test))`` as the loaders return it, plus ``source``: the
    file or folder the arrays were read from (``str(bundled_data_dir())`` for the bundled MNIST).

    It unpacks and compares like the plain tuple.
    """

    source: str

    def __new__(cls, train, test, source):
        self = super().__new__(cls, (train, test))
        self.source = str(source)
        return self

    def __getnewargs__(self):  # copy and pickle: tuple's would pass one argument
        return (self[0], self[1], self.source)


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
        spelling ``train-images.idx3-ubyte`` is accepted too), or Keras's ``mnist.npz`` (the file,
        or a directory holding it); ``~`` is expanded. ``None``: Keras's download,
        ``<Keras cache>/datasets/mnist.npz`` (:func:`keras_datasets_dirs`), when it is there
        (60,000 + 10,000 images); else the bundled real MNIST test set: the first 8,000 images for
        training, the last 2,000 for testing. ``.source`` of the result says which was read.

    Returns
    -------
    Loaded
        ``(x_train, y_train), (x_test, y_test)``: uint8 images ``(N, 28, 28)`` and uint8 labels
        ``(N,)``; ``.source`` is the file or folder read (``str(bundled_data_dir())`` for the
        bundled set).

    Raises
    ------
    FileNotFoundError
        ``path`` is not a directory or lacks one of the four files (the message names them).
    ValueError
        A file not in the format expected (``mnist.npz`` is read with ``allow_pickle=False``).

    Examples
    --------
    >>> data = load_mnist()
    >>> (x_train, y_train), (x_test, y_test) = data
    >>> x_train.shape[1:], x_train.dtype
    ((28, 28), dtype('uint8'))
    >>> data.source  # doctest: +SKIP
    '/.../site-packages/fastconv/data'  # or '/home/me/.keras/datasets/mnist.npz' when Keras has it
    """
    if path is None:
        for d in keras_datasets_dirs():
            if (d / "mnist.npz").is_file():
                return Loaded(*_load_npz(d / "mnist.npz"), d / "mnist.npz")
        return Loaded(*_load_bundled(), bundled_data_dir())
    p = _expand(path)
    npz = p if p.is_file() else p / "mnist.npz"
    if p.is_file() or (_find(p, _STANDARD_NAMES["x_train"]) is None and npz.is_file()):
        return Loaded(*_load_npz(npz), npz)
    return Loaded(*_load_idx_dir(p, "MNIST"), p)


def _load_npz(path: Path):
    """Keras's ``mnist.npz``: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``; no pickles."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files") or not set(keys) <= set(f.files):
                got = sorted(f.files) if hasattr(f, "files") else "a single .npy array"
                raise ValueError(
                    f"{str(path)!r} is not Keras's mnist.npz: it holds {got}, expected {list(keys)}."
                )
            a = {k: f[k] for k in keys}
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{str(path)!r} is not a readable .npz file: {e}") from None
    _check_pair(a["x_train"], a["y_train"], f"{path}:x_train", f"{path}:y_train")
    _check_pair(a["x_test"], a["y_test"], f"{path}:x_test", f"{path}:y_test")
    return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])


def _load_bundled():
    d = bundled_data_dir()
    xp, yp = _find(d, _STANDARD_NAMES["x_test"]), _find(d, _STANDARD_NAMES["y_test"])
    if xp is None or yp is None:
        raise FileNotFoundError(
            f"The bundled MNIST files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) are "
            f"missing from {str(d)!r}, and Keras's mnist.npz is not in "
            f"{', '.join(repr(str(k)) for k in keras_datasets_dirs())}; reinstall fastconv or pass a "
            f"directory."
        )
    x, y = load_idx(xp), load_idx(yp)
    _check_pair(x, y, xp, yp)
    s = BUNDLED_SPLIT
    return (x[:s], y[:s]), (x[s:], y[s:])


def _load_idx_dir(d: Path, name):
    if not d.is_dir():
        what = "is a file, not a directory" if d.exists() else "does not exist"
        raise FileNotFoundError(f"{name} directory {str(d)!r} {what}. {_where(name)}.")
    files = {}
    for key, stems in _STANDARD_NAMES.items():
        p = _find(d, stems)
        if p is None:
            also = " (nor Keras's mnist.npz)" if name == "MNIST" and not files else ""
            raise FileNotFoundError(f"{str(d)!r} does not hold {stems[0]}[.gz]{also}. {_where(name)}.")
        files[key] = p
    arrays = {k: load_idx(p) for k, p in files.items()}
    _check_pair(arrays["x_train"], arrays["y_train"], files["x_train"], files["y_train"])
    _check_pair(arrays["x_test"], arrays["y_test"], files["x_test"], files["y_test"])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def load_fashion_mnist(path=None):
    """Fashion-MNIST from its four IDX files (same format as :func:`load_mnist`).

    Parameters
    ----------
    path : str or path-like, optional
        A directory holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (from
        https://github.com/zalandoresearch/fashion-mnist, ``data/fashion/``; uncompressed files
        are read too); ``~`` is expanded. ``None``: where Keras keeps its download,
        ``<Keras cache>/datasets/fashion-mnist/`` (:func:`keras_datasets_dirs`). Fashion-MNIST
        is not bundled and nothing is downloaded.

    Returns
    -------
    Loaded
        ``(x_train, y_train), (x_test, y_test)``: uint8 images ``(60000, 28, 28)`` /
        ``(10000, 28, 28)`` and uint8 labels; ``.source`` is the folder read.

    Raises
    ------
    FileNotFoundError
        The files are not there: the message names them, the folders searched and their source.

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist("~/fashion-mnist")  # doctest: +SKIP
    """
    if path is None:
        dirs = keras_datasets_dirs()
        for d in dirs:
            fm = d / "fashion-mnist"
            if any(_find(fm, stems) for stems in _STANDARD_NAMES.values()):
                return Loaded(*_load_idx_dir(fm, "Fashion-MNIST"), fm)
        raise _not_found("Fashion-MNIST", dirs, "is not bundled with fastconv")
    d = _expand(path)
    return Loaded(*_load_idx_dir(d, "Fashion-MNIST"), d)


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


# ------------------------------------------------------------------------- CIFAR-10

_CIFAR_RECORD = 1 + 32 * 32 * 3
_CIFAR_PY = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
#: Archives read in place, by name (the tar's folder says the version: ``-py`` pickles, ``-bin`` records).
_CIFAR_ARCHIVES = (
    "cifar-10-python.tar.gz",
    "cifar-10-batches-py.tar.gz",
    "cifar-10-batches-py-target_archive",
    "cifar-10-binary.tar.gz",
)
_CIFAR_TAR_DIRS = {"cifar-10-batches-py": "py", "cifar-10-batches-bin": "bin"}
_CIFAR_MEMBER_MAX = 256 << 20  # a batch is 30 MiB; a bigger member is refused, not read into memory


def _cifar_binary(raw: bytes, name: str):
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise ValueError(
            f"{name!r} is not a CIFAR-10 binary batch: {len(raw)} bytes is not a multiple of "
            f"the {_CIFAR_RECORD}-byte record (1 label byte + 32*32*3 pixels)."
        )
    rec = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_RECORD)
    y = rec[:, 0].copy()
    if y.max() > 9:
        raise ValueError(f"{name!r}: label byte {int(y.max())} > 9; not a CIFAR-10 binary batch.")
    x = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return x, y


def _cifar_python(raw: bytes, name: str):
    """One python-version batch: a plain-data pickle of {'data': (N, 3072) uint8, 'labels': [N ints]}."""
    d = read_plain_pickle(raw, name)
    if type(d) is not dict:
        raise ValueError(
            f"{name!r} is not a CIFAR-10 python batch: it holds a {type(d).__name__}, not a dict."
        )
    d = {_text(k): v for k, v in d.items() if isinstance(k, (bytes, str))}
    if "data" not in d or "labels" not in d:
        raise ValueError(
            f"{name!r} is not a CIFAR-10 python batch: keys {sorted(d)}, expected 'data' and 'labels'."
        )
    x, labels = d["data"], d["labels"]
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3072):
        got = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{name!r}: 'data' must be a uint8 array (N, 3072). Received: {got}.")
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not (type(labels) is list and all(type(v) is int and 0 <= v <= 9 for v in labels)):
        raise ValueError(f"{name!r}: 'labels' must be a list of ints 0-9. Received: {labels!r:.80}.")
    if len(labels) != len(x):
        raise ValueError(f"{name!r} holds {len(x)} images but {len(labels)} labels.")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), np.array(labels, np.uint8)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"CIFAR-10 file not found: {str(path)!r}") from None


def _cifar_tar(path: Path):
    """``{batch name: (x, y)}`` read from a CIFAR-10 archive in place: nothing is extracted.

    Only regular members named ``cifar-10-batches-{py,bin}/<batch>`` are read; an archive with a
    member name holding ``..`` or starting with ``/`` is refused whole.
    """
    out = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:  # in order: a gzip stream is read once
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or PurePosixPath(m.name).is_absolute():
                    raise ValueError(f"{str(path)!r}: refused the archive, member name {m.name!r} is unsafe.")
                if len(parts) != 2 or parts[0] not in _CIFAR_TAR_DIRS or not m.isfile():
                    continue
                kind, batch = _CIFAR_TAR_DIRS[parts[0]], parts[1]
                if batch.removesuffix(".bin") not in _CIFAR_PY or (kind == "bin") != batch.endswith(".bin"):
                    continue
                if m.size > _CIFAR_MEMBER_MAX:
                    raise ValueError(f"{str(path)!r}: member {m.name!r} is {m.size} bytes; refused.")
                raw = tar.extractfile(m).read()
                where = f"{path}:{m.name}"
                key = batch.removesuffix(".bin")
                if key in out:
                    raise ValueError(f"{str(path)!r} holds {key} twice (both versions?).")
                out[key] = _cifar_python(raw, where) if kind == "py" else _cifar_binary(raw, where)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{str(path)!r} is not a readable CIFAR-10 archive: {e}") from None
    return out


def _cifar_form(d: Path):
    """The first CIFAR-10 form found in directory ``d``: ``(kind, path)`` or None.

    Order: today's binary batches (in ``d`` or ``d/cifar-10-batches-bin``), the extracted python
    version (``d``, ``d/cifar-10-batches-py``, ``d/cifar-10-batches-py-target/cifar-10-batches-py``),
    then an archive by name (:data:`_CIFAR_ARCHIVES`)."""
    for sub in (d, d / "cifar-10-batches-bin"):
        if any((sub / f).is_file() for f in CIFAR10_FILES):
            return "bin", sub
    for sub in (d, d / "cifar-10-batches-py", d / "cifar-10-batches-py-target" / "cifar-10-batches-py"):
        if any((sub / f).is_file() for f in _CIFAR_PY):
            return "py", sub
    for f in _CIFAR_ARCHIVES:
        if (d / f).is_file():
            return "tar", d / f
    return None


def _cifar_read(kind: str, p: Path):
    if kind == "tar":
        batches = _cifar_tar(p)
        what = f"the archive {str(p)!r}"
    else:
        names = CIFAR10_FILES if kind == "bin" else _CIFAR_PY
        present = [n for n in names if (p / n).is_file()]
        read = _cifar_binary if kind == "bin" else _cifar_python
        batches = {n.removesuffix(".bin"): read(_read_file(p / n), str(p / n)) for n in present}
        what = repr(str(p))
    ext = ".bin" if kind == "bin" else ""
    if "test_batch" not in batches:
        raise FileNotFoundError(f"{what} does not hold test_batch{ext}. {_where('CIFAR-10')}.")
    train = [batches[n] for n in _CIFAR_PY[:5] if n in batches]
    if not train:
        raise FileNotFoundError(f"{what} holds no data_batch_N{ext} file. {_where('CIFAR-10')}.")
    x_train = np.concatenate([b[0] for b in train])
    y_train = np.concatenate([b[1] for b in train])
    return (x_train, y_train), batches["test_batch"]


def load_cifar10(path=None):
    """CIFAR-10 as ``((x_train, y_train), (x_test, y_test))``, from the binary or the python version.

    Parameters
    ----------
    path : str or path-like, optional
        A directory holding one of CIFAR-10's forms, searched in this order: the binary batches
        ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin`` (or a
        ``cifar-10-batches-bin`` subdirectory holding them); the python version extracted
        (``data_batch_1`` ... ``test_batch``, directly or in ``cifar-10-batches-py/``); or its
        archive as downloaded, ``cifar-10-python.tar.gz`` (read in place, never extracted;
        ``cifar-10-binary.tar.gz`` too). ``path`` may also be such an archive file. ``None``
        searches Keras's download cache (:func:`keras_datasets_dirs`; :data:`KERAS_FILES` lists
        the names Keras uses). ``~`` is expanded. Nothing is downloaded.

    Returns
    -------
    Loaded
        ``(x_train, y_train), (x_test, y_test)``: uint8 images ``(N, 32, 32, 3)`` and uint8 labels
        ``(N,)``; ``.source`` is the folder or archive read. Missing training batches are skipped
        (at least one is needed).

    Raises
    ------
    FileNotFoundError
        Nothing found: the message names the files expected, the folders searched and the sources.
    ValueError
        A file not in the format expected; a python batch that is not plain data (the pickles are
        interpreted by :func:`read_plain_pickle`, never unpickled).

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_cifar10("~/cifar-10")  # doctest: +SKIP
    """
    if path is None:
        dirs = keras_datasets_dirs()
        for d in dirs:
            form = _cifar_form(d)
            if form is not None:
                return Loaded(*_cifar_read(*form), form[1])
        raise _not_found("CIFAR-10", dirs, "is not bundled with fastconv")
    d = _expand(path)
    if d.is_file():
        return Loaded(*_cifar_read("tar", d), d)
    if not d.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory {str(d)!r} does not exist. {_where('CIFAR-10')}.")
    form = _cifar_form(d)
    if form is None:
        raise FileNotFoundError(
            f"{str(d)!r} holds no data_batch_N.bin file, nor the python version (data_batch_N, "
            f"cifar-10-batches-py/, {', '.join(_CIFAR_ARCHIVES)}). {_where('CIFAR-10')}."
        )
    return Loaded(*_cifar_read(*form), form[1])


# ------------------------------------------------ plain-data pickles (CIFAR-10 python)
#
# The python version of CIFAR-10 stores each batch as a pickle (Python 2's cPickle, protocol 2) of
# {'batch_label': str, 'labels': [int], 'data': numpy uint8 array (N, 3072), 'filenames': [str]}.
# pickle.load would run whatever a file names: a pickle is a program. Keras restricts
# pickle.Unpickler.find_class to numpy's reconstruction functions, but still calls them with the
# file's arguments. This reader goes further: it interprets the opcodes itself, for the plain
# subset only (dict, list, tuple, int, bool, None, str, bytes; memo put/get). It imports and calls
# nothing that a file names: the four globals a numpy array's or a bytes object's pickle mentions
# (numpy's _reconstruct, ndarray and dtype; _codecs.encode / bytes for bytes pickled by Python 3 at
# protocol 2) are matched by name and replaced by this module's own code, which builds only an
# integer array from a bytes buffer (np.frombuffer) or bytes from a latin-1 str. Any other global,
# any other opcode, an object array, a dtype with fields: ValueError, before anything is built.
# Memory is bounded too: bytes made by the reader may total at most twice the file's size.

_PICKLE_GLOBALS = {
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "bytes",
    ("builtins", "bytes"): "bytes",
    ("numpy.core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy.core.numeric", "_frombuffer"): "_frombuffer",  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): "_frombuffer",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
}
_PICKLE_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"}  # integers only: no object arrays


class _Global:
    def __init__(self, tag):
        self.tag = tag


class _DtypeStub:
    def __init__(self, code):
        self.code, self.dtype = code, None


class _ArrayStub:
    def __init__(self):
        self.array = None


class _Mark:
    pass


def _text(v):
    return v.decode("latin-1") if isinstance(v, bytes) else v


def read_plain_pickle(raw: bytes, name: str = "<bytes>"):
    """Read a pickle of plain data (protocol 2 to 5) without running it: see the notes above.

    Parameters
    ----------
    raw : bytes
        The pickle.
    name : str
        Named in error messages (e.g. the file).

    Returns
    -------
    object
        dicts, lists, tuples, ints, bools, None, str, bytes and integer ndarrays (read-only views
        of ``raw``'s copies).

    Raises
    ------
    ValueError
        Anything outside that subset (the message names the opcode or the global refused), or a
        truncated / malformed pickle.

    Examples
    --------
    >>> import pickle
    >>> read_plain_pickle(pickle.dumps({b"labels": [3, 7]}, protocol=2))
    {b'labels': [3, 7]}
    """
    try:
        return _run_plain_pickle(memoryview(raw), name)
    except (IndexError, KeyError, TypeError, struct.error, UnicodeDecodeError, OverflowError) as e:
        raise ValueError(f"{name!r} is not a valid plain-data pickle ({type(e).__name__}: {e})") from None


def _run_plain_pickle(mv, name):
    pos, n = 0, len(mv)
    budget = [2 * n + 4096]  # bytes the reader may still create (copies out of the file)
    stack, marks, memo = [], [], {}

    def take(k):
        nonlocal pos
        if k < 0 or pos + k > n:
            raise ValueError(f"{name!r} is not a valid pickle: truncated at byte {pos}.")
        out = mv[pos : pos + k]
        pos += k
        return out

    def uint(k):
        return int.from_bytes(take(k), "little")

    def line():
        nonlocal pos
        end = bytes(mv[pos : min(n, pos + 256)]).find(b"\n")
        if end < 0:
            raise ValueError(f"{name!r} is not a valid pickle: a GLOBAL name is not terminated.")
        out = bytes(mv[pos : pos + end]).decode("ascii")
        pos += end + 1
        return out

    def spend(k):
        budget[0] -= k
        if budget[0] < 0:
            raise ValueError(f"{name!r}: the pickle builds more data than the file holds; refused.")

    def pop_mark():
        i = marks.pop()
        items = stack[i:]
        del stack[i:]
        return items

    def refuse(what):
        return ValueError(
            f"{name!r}: refused {what}: only plain data (dict, list, tuple, int, str, bytes and integer "
            f"numpy arrays) is read from pickles; nothing a file names is imported or called."
        )

    def global_(module, attr):
        tag = _PICKLE_GLOBALS.get((module, attr))
        if tag is None:
            raise refuse(f"the global {module}.{attr}")
        return _Global(tag)

    def reduce_(f, args):
        if not isinstance(f, _Global) or not isinstance(args, tuple):
            raise refuse("a call of something that is not a known global")
        if f.tag == "encode" and len(args) == 2 and isinstance(args[0], str):
            if _text(args[1]).replace("-", "") != "latin1":
                raise refuse(f"_codecs.encode with the encoding {args[1]!r}")
            spend(len(args[0]))
            return args[0].encode("latin-1")
        if f.tag == "bytes" and args == ():
            return b""
        if f.tag == "dtype" and len(args) == 3 and _text(args[0]) in _PICKLE_DTYPES:
            return _DtypeStub(_text(args[0]))
        if f.tag == "_frombuffer" and len(args) == 4 and isinstance(args[1], _DtypeStub):
            return array(args[0], args[1], args[2], _text(args[3]) == "F")
        if f.tag == "_reconstruct" and len(args) == 3 and isinstance(args[0], _Global):
            if args[0].tag == "ndarray" and args[1] == (0,) and _text(args[2]) == "b":
                return _ArrayStub()
        raise refuse(f"the call {f.tag}{args!r:.80}")

    def array(data, dt, shape, fortran):
        if not isinstance(data, bytes):
            raise refuse("an array whose data is not a bytes buffer (an object array)")
        if dt.dtype is None:
            raise refuse("an array of a dtype without its state")
        if not isinstance(shape, tuple) or len(shape) > 8 or any(type(s) is not int or s < 0 for s in shape):
            raise refuse(f"the array shape {shape!r:.80}")
        count = int(np.prod(shape, dtype=np.int64))
        if count * dt.dtype.itemsize != len(data):
            raise ValueError(
                f"{name!r}: an array of shape {shape} ({dt.dtype}) needs "
                f"{count * dt.dtype.itemsize} bytes but holds {len(data)}."
            )
        a = np.frombuffer(data, dt.dtype).reshape(shape, order="F" if fortran else "C")
        spend(len(data))
        return a.astype(dt.dtype.newbyteorder("="))  # a writable native-order copy

    def build(obj, state):
        if isinstance(obj, _DtypeStub) and obj.dtype is None and isinstance(state, tuple):
            order = _text(state[1]) if len(state) > 1 else None
            if len(state) == 8 and order in ("<", ">", "|", "=") and state[2:5] == (None,) * 3:
                obj.dtype = np.dtype(obj.code).newbyteorder(order)
                return
            raise refuse(f"the dtype state {state!r:.80} (fields or sub-arrays)")
        if isinstance(obj, _ArrayStub) and obj.array is None and isinstance(state, tuple):
            if len(state) == 5 and isinstance(state[2], _DtypeStub):
                obj.array = array(state[4], state[2], state[1], state[3])
                return
            raise refuse(f"the array state {state!r:.80}")
        raise refuse(f"setting the state of {type(obj).__name__}")

    while True:
        op = take(1)[0]
        if op == 0x80:  # PROTO
            if uint(1) not in (2, 3, 4, 5):
                raise refuse("a pickle protocol other than 2 to 5")
        elif op == 0x95:  # FRAME
            uint(8)
        elif op == 0x2E:  # STOP
            if len(stack) != 1 or marks:
                raise ValueError(f"{name!r} is not a valid pickle: {len(stack)} values at STOP.")
            return _resolve(stack[0], name)
        elif op == 0x28:  # MARK
            marks.append(len(stack))
        elif op == 0x7D:  # EMPTY_DICT
            stack.append({})
        elif op == 0x5D:  # EMPTY_LIST
            stack.append([])
        elif op == 0x29:  # EMPTY_TUPLE
            stack.append(())
        elif op == 0x74:  # TUPLE
            stack.append(tuple(pop_mark()))
        elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
            k = op - 0x84
            if len(stack) < k or (marks and len(stack) - k < marks[-1]):
                raise ValueError(f"{name!r} is not a valid pickle: stack underflow at byte {pos - 1}.")
            items = tuple(stack[len(stack) - k :])
            del stack[len(stack) - k :]
            stack.append(items)
        elif op == 0x6C:  # LIST
            stack.append(pop_mark())
        elif op == 0x64:  # DICT
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif op == 0x61:  # APPEND
            v = stack.pop()
            _target(stack[-1], list, name).append(v)
        elif op == 0x65:  # APPENDS
            items = pop_mark()
            _target(stack[-1], list, name).extend(items)
        elif op == 0x73:  # SETITEM
            v, k = stack.pop(), stack.pop()
            _target(stack[-1], dict, name)[k] = v
        elif op == 0x75:  # SETITEMS
            items = pop_mark()
            d = _target(stack[-1], dict, name)
            for k, v in zip(items[::2], items[1::2]):
                d[k] = v
        elif op == 0x4A:  # BININT
            stack.append(int.from_bytes(take(4), "little", signed=True))
        elif op == 0x4B:  # BININT1
            stack.append(uint(1))
        elif op == 0x4D:  # BININT2
            stack.append(uint(2))
        elif op == 0x8A:  # LONG1
            k = uint(1)
            if k > 16:
                raise refuse(f"a {k}-byte integer")
            stack.append(int.from_bytes(take(k), "little", signed=True))
        elif op == 0x4E:  # NONE
            stack.append(None)
        elif op in (0x88, 0x89):  # NEWTRUE, NEWFALSE
            stack.append(op == 0x88)
        elif op in (0x55, 0x54):  # SHORT_BINSTRING, BINSTRING: Python 2 str, read as bytes
            stack.append(bytes(take(uint(1 if op == 0x55 else 4))))
        elif op in (0x43, 0x42, 0x8E, 0x96):  # SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
            stack.append(bytes(take(uint({0x43: 1, 0x42: 4, 0x8E: 8, 0x96: 8}[op]))))
        elif op in (0x8C, 0x58, 0x8D):  # SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
            stack.append(str(take(uint({0x8C: 1, 0x58: 4, 0x8D: 8}[op])), "utf-8"))
        elif op in (0x71, 0x72):  # BINPUT, LONG_BINPUT
            memo[uint(1 if op == 0x71 else 4)] = stack[-1]
        elif op == 0x94:  # MEMOIZE
            memo[len(memo)] = stack[-1]
        elif op in (0x68, 0x6A):  # BINGET, LONG_BINGET
            stack.append(memo[uint(1 if op == 0x68 else 4)])
        elif op == 0x63:  # GLOBAL
            module = line()
            stack.append(global_(module, line()))
        elif op == 0x93:  # STACK_GLOBAL
            attr, module = stack.pop(), stack.pop()
            if not (isinstance(module, str) and isinstance(attr, str)):
                raise refuse("a STACK_GLOBAL whose names are not str")
            stack.append(global_(module, attr))
        elif op == 0x52:  # REDUCE
            args = stack.pop()
            stack.append(reduce_(stack.pop(), args))
        elif op == 0x62:  # BUILD
            state = stack.pop()
            build(stack[-1], state)
        else:
            what = pickletools.code2op.get(chr(op))
            raise refuse(f"the opcode {what.name if what else hex(op)} at byte {pos - 1}")


def _target(obj, kind, name):
    if type(obj) is not kind:
        raise ValueError(f"{name!r} is not a valid pickle: adds items to a {type(obj).__name__}.")
    return obj


def _resolve(obj, name):
    """The stubs left in the result replaced by their arrays (one level into dicts, lists, tuples)."""

    def one(v):
        if isinstance(v, _ArrayStub):
            if v.array is None:
                raise ValueError(f"{name!r}: an array without its data (no BUILD).")
            return v.array
        if isinstance(v, (_Global, _DtypeStub)):
            raise ValueError(f"{name!r}: refused a bare {type(v).__name__.strip('_')} in the data.")
        return v

    if type(obj) is dict:
        return {one(k): one(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(one(v) for v in obj)
    return one(obj)
