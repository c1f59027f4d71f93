"""Keras's downloads (issue 15, item 4): with no path, load_mnist / load_fashion_mnist / load_cifar10
look where Keras's get_file keeps them ($KERAS_HOME or ~/.keras, then datasets/), in Keras's forms:
mnist.npz, fashion-mnist/*.gz, CIFAR-10's python version extracted or as the tar.gz. The CIFAR
pickles are read by datasets.read_plain_pickle, never unpickled: a hostile pickle is refused without
running. Offline, the errors name the files expected and the folders searched. All files here are
tiny ones written in each format."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from fastconv import datasets


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache: $KERAS_HOME, as Keras reads it."""
    home = tmp_path / "keras-home"
    (home / "datasets").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _idx_gz(arr):
    arr = np.asarray(arr, np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.tobytes())


def _images(n, h, w, c=None, seed=0):
    shape = (n, h, w) if c is None else (n, c, h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _cifar_batch(n, seed):
    """(pickle bytes like the real batches: protocol 2, bytes keys; images (n, 3, 32, 32); labels)."""
    imgs = _images(n, 32, 32, 3, seed)
    labels = [(seed + i) % 10 for i in range(n)]
    d = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": labels,
        b"data": imgs.reshape(n, 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return pickle.dumps(d, protocol=2), imgs, labels


def _cifar_python_files():
    return {name: _cifar_batch(2 if name != "test_batch" else 1, seed) for seed, name in
            enumerate(("data_batch_1", "data_batch_2", "test_batch"))}


def _check_cifar(out, files):
    (x, y), (xt, yt) = out
    assert x.shape == (4, 32, 32, 3) and xt.shape == (1, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.uint8 and y.shape == (4,)
    _, imgs1, labels1 = files["data_batch_1"]
    _, imgs2, labels2 = files["data_batch_2"]
    np.testing.assert_array_equal(x[:2], imgs1.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(x[2:], imgs2.transpose(0, 2, 3, 1))
    assert y.tolist() == labels1 + labels2 and yt.tolist() == files["test_batch"][2]


def _write_tar(path, members, top="cifar-10-batches-py"):
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


# ------------------------------------------------------------------ the cache folder


def test_cache_dir_follows_keras_home_with_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", "~/kh")
    (tmp_path / "kh").mkdir()
    assert datasets.keras_datasets_dirs() == (tmp_path / "kh" / "datasets",)
    monkeypatch.delenv("KERAS_HOME")
    (tmp_path / ".keras").mkdir()
    assert datasets.keras_datasets_dirs()[0] == tmp_path / ".keras" / "datasets"


# ---------------------------------------------------------------------------- MNIST


def test_mnist_npz_from_the_cache_and_bundled_without_it(keras_home):
    data = datasets.load_mnist()  # no mnist.npz: the bundled split, as before
    (x, _), (xt, _) = data
    assert x.shape == (8000, 28, 28) and xt.shape == (2000, 28, 28)
    assert data.source == str(datasets.bundled_data_dir())
    arrays = {"x_train": _images(3, 28, 28), "y_train": np.array([1, 2, 3], np.uint8),
              "x_test": _images(2, 28, 28, seed=1), "y_test": np.array([4, 5], np.uint8)}
    npz = keras_home / "datasets" / "mnist.npz"
    np.savez(npz, **arrays)
    data = datasets.load_mnist()
    (x, y), (xt, yt) = data
    assert data.source == str(npz)
    np.testing.assert_array_equal(x, arrays["x_train"])
    assert y.tolist() == [1, 2, 3] and yt.tolist() == [4, 5] and xt.shape == (2, 28, 28)
    (x2, _), _ = datasets.load_mnist(npz)  # the file itself, or its folder, as a path
    (x3, _), _ = datasets.load_mnist(keras_home / "datasets")
    np.testing.assert_array_equal(x2, x3)


def test_mnist_npz_with_pickles_or_wrong_keys_is_refused(keras_home):
    npz = keras_home / "datasets" / "mnist.npz"
    np.savez(npz, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1), x_test=np.zeros(1),
             y_test=np.zeros(1))
    with pytest.raises(ValueError, match="allow_pickle|pickle"):
        datasets.load_mnist()
    np.savez(npz, images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="not Keras's mnist.npz.*'images'"):
        datasets.load_mnist()


# -------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_gz_files_from_the_cache(keras_home):
    d = keras_home / "datasets" / "fashion-mnist"
    d.mkdir()
    x, y = _images(3, 28, 28), np.array([9, 0, 5], np.uint8)
    for name, arr in {"train-images-idx3-ubyte": x, "train-labels-idx1-ubyte": y,
                      "t10k-images-idx3-ubyte": x[:2], "t10k-labels-idx1-ubyte": y[:2]}.items():
        (d / f"{name}.gz").write_bytes(_idx_gz(arr))
    data = datasets.load_fashion_mnist()
    (xtr, ytr), (xte, yte) = data
    np.testing.assert_array_equal(xtr, x)
    assert ytr.tolist() == [9, 0, 5] and yte.tolist() == [9, 0] and xte.shape == (2, 28, 28)
    assert data.source == str(d)
    (d / "t10k-images-idx3-ubyte.gz").unlink()  # a partial download names the missing file
    with pytest.raises(FileNotFoundError, match="does not hold t10k-images-idx3-ubyte"):
        datasets.load_fashion_mnist()


# ------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("layout", ["keras3", "keras2"])
def test_cifar_python_extracted_in_the_cache(keras_home, layout):
    files = _cifar_python_files()
    root = keras_home / "datasets"
    d = root / "cifar-10-batches-py" if layout == "keras2" else (
        root / "cifar-10-batches-py-target" / "cifar-10-batches-py")
    d.mkdir(parents=True)
    for name, (raw, _, _) in files.items():
        (d / name).write_bytes(raw)
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"]}, protocol=2))
    out = datasets.load_cifar10()
    _check_cifar(out, files)
    assert out.source == str(d)


@pytest.mark.parametrize("name", ["cifar-10-python.tar.gz", "cifar-10-batches-py-target_archive",
                                  "cifar-10-batches-py.tar.gz"])
def test_cifar_python_archive_read_in_place(keras_home, name):
    files = _cifar_python_files()
    archive = keras_home / "datasets" / name
    _write_tar(archive, {n: raw for n, (raw, _, _) in files.items()})
    out = datasets.load_cifar10()
    _check_cifar(out, files)
    assert out.source == str(archive)
    assert sorted(p.name for p in archive.parent.iterdir()) == [name]  # nothing extracted
    _check_cifar(datasets.load_cifar10(archive), files)  # the archive as the path
    _check_cifar(datasets.load_cifar10(archive.parent), files)  # or its folder


def test_python_2_pickle_layout_is_read():
    """The real batches were written by Python 2's cPickle: str as BINSTRING, numpy.core names."""
    data = bytes(range(256)) * 24  # 2 images
    raw = (b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\n"
           b"q\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01"
           b"\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbK\x00T"
           + struct.pack("<I", len(data)) + data + b"tbU\x06labelsq\x07]q\x08(K\x03K\x07eu.")
    out = datasets.read_plain_pickle(raw)
    assert out[b"labels"] == [3, 7] and out[b"data"].shape == (2, 3072)
    assert out[b"data"].tobytes() == data
    x, y = datasets._cifar_python(raw, "py2")
    assert x.shape == (2, 32, 32, 3) and y.tolist() == [3, 7]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_read_plain_pickle_matches_pickle_on_plain_data(protocol):
    d = {b"data": _images(2, 4, 4), "n": [1, -2, 2**40, None, True], "t": ("é", b"", b"\xff")}
    out = datasets.read_plain_pickle(pickle.dumps(d, protocol=protocol))
    assert out.keys() == d.keys() and out["n"] == d["n"] and out["t"] == d["t"]
    np.testing.assert_array_equal(out[b"data"], d[b"data"])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_a_hostile_pickle_is_refused_without_running(keras_home, tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Evil(marker), b"labels": [1]}, protocol=2)
    d = keras_home / "datasets" / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(evil)
    (d / "test_batch").write_bytes(evil)
    with pytest.raises(ValueError, match=r"refused the global (posix|nt|os)\.system") as e:
        datasets.load_cifar10()
    assert "data_batch_1" in str(e.value) and "nothing a file names is imported or called" in str(e.value)
    assert not marker.exists()
    for protocol in (2, 4):
        with pytest.raises(ValueError, match=r"refused the global (__builtin__|builtins)\.eval"):
            datasets.read_plain_pickle(pickle.dumps([_EvalEvil()], protocol=protocol))
    # numpy's own functions are not called either: an object array or a float dtype is refused
    for bad in (np.array([1, "a"], dtype=object), np.zeros(2, np.float64), np.zeros(2, [("a", "u1")])):
        with pytest.raises(ValueError, match="refused"):
            datasets.read_plain_pickle(pickle.dumps({b"data": bad}, protocol=2))
    with pytest.raises(ValueError, match="refused the opcode INST"):
        datasets.read_plain_pickle(b"(ios\nsystem\nS'true'\no.")  # protocol 0's class call
    with pytest.raises(ValueError, match="truncated"):
        datasets.read_plain_pickle(pickle.dumps({b"labels": [1, 2]}, protocol=2)[:-4])


def test_cifar_python_batch_with_the_wrong_content(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}, protocol=2))
    (d / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8),
                                                   b"labels": [12]}, protocol=2))
    with pytest.raises(ValueError, match="'labels' must be a list of ints 0-9"):
        datasets.load_cifar10(tmp_path)


def test_tar_member_with_an_unsafe_name_is_refused(keras_home):
    raw = _cifar_batch(1, 0)[0]
    archive = keras_home / "datasets" / "cifar-10-python.tar.gz"
    for bad in ("../cifar-10-batches-py/test_batch", "/cifar-10-batches-py/data_batch_1",
                "cifar-10-batches-py/../../evil"):
        _write_tar(archive, {bad: raw, "cifar-10-batches-py/test_batch": raw}, top="")
        with pytest.raises(ValueError, match="member name .* is unsafe"):
            datasets.load_cifar10()
    assert not (keras_home.parent / "evil").exists()


def test_binary_version_still_read_and_preferred(tmp_path):
    rec = np.zeros((2, 1 + 3072), np.uint8)
    rec[:, 0] = [3, 7]
    (tmp_path / "data_batch_1.bin").write_bytes(rec.tobytes())
    (tmp_path / "test_batch.bin").write_bytes(rec[:1].tobytes())
    _write_tar(tmp_path / "cifar-10-python.tar.gz", {"test_batch": _cifar_batch(1, 0)[0]})
    out = datasets.load_cifar10(tmp_path)
    assert out[0][1].tolist() == [3, 7] and out.source == str(tmp_path)
    _write_tar(tmp_path / "bin.tar.gz", {"data_batch_1.bin": rec.tobytes(),
                                          "test_batch.bin": rec[:1].tobytes()}, top="cifar-10-batches-bin")
    (x, y), _ = datasets.load_cifar10(tmp_path / "bin.tar.gz")
    assert y.tolist() == [3, 7] and x.shape == (2, 32, 32, 3)


# ------------------------------------------------------------------------ offline


@pytest.mark.parametrize(
    "loader, name, expected",
    [
        (datasets.load_fashion_mnist, "Fashion-MNIST", ["fashion-mnist/train-images-idx3-ubyte.gz",
                                                        "fashion-mnist/t10k-labels-idx1-ubyte.gz"]),
        (datasets.load_cifar10, "CIFAR-10", ["cifar-10-python.tar.gz", "cifar-10-batches-py/",
                                              "data_batch_1.bin"]),
    ],
)
def test_offline_error_names_the_files_and_the_folders(keras_home, loader, name, expected):
    with pytest.raises(FileNotFoundError) as e:
        loader()
    msg = str(e.value)
    assert f"{name} is not bundled" in msg and str(keras_home / "datasets") in msg and "KERAS_HOME" in msg
    assert all(f in msg for f in expected), msg
    assert "https://" in msg and "keras.datasets." in msg


def test_offline_error_with_a_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        datasets.load_cifar10(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "cifar-10-python.tar.gz" in msg and "data_batch_N.bin" in msg


def test_a_pickle_that_multiplies_its_data_is_refused():
    """Memo references let a small pickle ask for many copies of a big string: a budget stops it."""
    big = "a" * 20000
    head = (b"\x80\x02c_codecs\nencode\nq\x00X" + struct.pack("<I", len(big)) + big.encode()
            + b"q\x01X\x06\x00\x00\x00latin1q\x02(h\x01h\x02tq\x03](")
    raw = head + b"h\x00h\x03R" * 5000 + b"e."  # 5000 copies: 100 MB from a 45 kB file
    with pytest.raises(ValueError, match="builds more data than the file holds"):
        datasets.read_plain_pickle(raw)
