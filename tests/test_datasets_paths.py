"""Data-set paths as a user types them: ``~`` is expanded, and a data set that is not there (not
bundled, or a directory missing files) raises FileNotFoundError naming the files and where they
come from, instead of a TypeError for a missing argument."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from fastconv import datasets


def _idx_bytes(arr):
    arr = np.asarray(arr, np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def _write_idx_dir(d, n_train=5, n_test=3):
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test),
    }
    for name, a in arrays.items():
        (d / name).write_bytes(gzip.compress(_idx_bytes(a)))


def _write_cifar_dir(d):
    d.mkdir(parents=True)
    rec = np.zeros((2, 1 + 32 * 32 * 3), np.uint8)
    rec[:, 0] = [3, 7]
    (d / "data_batch_1.bin").write_bytes(rec.tobytes())
    (d / "test_batch.bin").write_bytes(rec[:1].tobytes())


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fake home directory, so ``~/...`` points into tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    return tmp_path


def test_tilde_is_expanded_by_every_loader(home):
    _write_idx_dir(home / "fashion-mnist")
    (x, _), (xt, _) = datasets.load_fashion_mnist("~/fashion-mnist")
    assert x.shape == (5, 28, 28) and xt.shape == (3, 28, 28)
    (x, _), _ = datasets.load_mnist("~/fashion-mnist")
    assert x.shape == (5, 28, 28)
    assert datasets.load_idx("~/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape == (3,)
    _write_cifar_dir(home / "cifar" / "cifar-10-batches-bin")
    (x, y), (xt, _) = datasets.load_cifar10("~/cifar")
    assert x.shape == (2, 32, 32, 3) and y.tolist() == [3, 7] and xt.shape == (1, 32, 32, 3)
    c = home / "mnist_c" / "identity"
    c.mkdir(parents=True)
    for split in ("train", "test"):
        np.save(c / f"{split}_images.npy", np.zeros((2, 28, 28, 1), np.uint8))
        np.save(c / f"{split}_labels.npy", np.arange(2))
    (x, _), _ = datasets.load_mnist_c("~/mnist_c")
    assert x.shape == (2, 28, 28, 1)


@pytest.mark.parametrize(
    "loader, name, files",
    [
        (datasets.load_fashion_mnist, "Fashion-MNIST", datasets.IDX_FILES),
        (datasets.load_cifar10, "CIFAR-10", datasets.CIFAR10_FILES),
    ],
)
def test_no_path_says_what_to_download_and_where_it_goes(loader, name, files, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache (see test_datasets_keras.py)
    with pytest.raises(FileNotFoundError) as e:
        loader()  # was: TypeError, missing a positional argument
    msg = str(e.value)
    assert f"{name} is not bundled" in msg and "https://" in msg and "pass that directory" in msg
    assert all(f in msg for f in files), msg


@pytest.mark.parametrize(
    "loader, name",
    [
        (datasets.load_mnist, "MNIST"),
        (datasets.load_fashion_mnist, "Fashion-MNIST"),
        (datasets.load_cifar10, "CIFAR-10"),
    ],
)
def test_missing_directory_is_named_expanded_with_the_files_expected(home, loader, name):
    with pytest.raises(FileNotFoundError) as e:
        loader("~/not-there")
    msg = str(e.value)
    assert str(home / "not-there") in msg and "~" not in msg.split("does not exist")[0]
    assert f"{name} directory" in msg and "does not exist" in msg and "https://" in msg


def test_a_directory_missing_one_file_names_it_and_all_four(tmp_path):
    d = tmp_path / "fm"
    _write_idx_dir(d)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as e:
        datasets.load_fashion_mnist(d)
    msg = str(e.value)
    assert "does not hold t10k-labels-idx1-ubyte[.gz]" in msg and "Fashion-MNIST needs" in msg
    assert all(f in msg for f in datasets.IDX_FILES)


def test_cifar_directory_without_test_batch(tmp_path):
    d = tmp_path / "c"
    _write_cifar_dir(d)
    (d / "test_batch.bin").unlink()
    with pytest.raises(FileNotFoundError, match="does not hold test_batch.bin"):
        datasets.load_cifar10(d)
    (d / "data_batch_1.bin").unlink()
    with pytest.raises(FileNotFoundError, match="holds no data_batch_N.bin"):
        datasets.load_cifar10(d)
