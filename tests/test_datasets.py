"""Data: the bundled MNIST split, IDX reading (gzip and raw) and its errors, full-data directories,
MNIST-C and CIFAR-10 layouts, and the augmenter."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from fastconv import datasets
from fastconv.augment import ImageAugmenter


def _idx_bytes(arr, code=0x08):
    arr = np.asarray(arr)
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    dt = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    return header + arr.astype(dt).tobytes()


def test_bundled_mnist_split(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache: no mnist.npz to prefer
    data = datasets.load_mnist()
    assert data.source == str(datasets.bundled_data_dir())
    (x, y), (xt, yt) = data
    assert x.shape == (8000, 28, 28) and xt.shape == (2000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.uint8
    assert y.shape == (8000,) and yt.shape == (2000,)
    np.testing.assert_array_equal(y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])  # the real t10k labels
    assert set(np.unique(yt)) == set(range(10))
    assert x.max() == 255


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_roundtrip(tmp_path, compress):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(a)
    p = tmp_path / ("a.idx.gz" if compress else "a.idx")
    p.write_bytes(gzip.compress(raw) if compress else raw)
    np.testing.assert_array_equal(datasets.load_idx(p), a)
    f = np.array([1.5, -2.0], np.float32)
    (tmp_path / "f.idx").write_bytes(_idx_bytes(f, 0x0D))
    out = datasets.load_idx(tmp_path / "f.idx")
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, f)


def test_load_idx_errors(tmp_path):
    good = _idx_bytes(np.zeros((3, 2, 2), np.uint8))
    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match="bad magic number 0x1234"):
        datasets.load_idx(bad_magic)
    bad_code = tmp_path / "bad_code"
    bad_code.write_bytes(b"\x00\x00\x07\x03" + good[4:])
    with pytest.raises(ValueError, match="unknown IDX type code"):
        datasets.load_idx(bad_code)
    short = tmp_path / "short"
    short.write_bytes(good[:-1])
    with pytest.raises(ValueError, match="truncated"):
        datasets.load_idx(short)
    long = tmp_path / "long"
    long.write_bytes(good + b"\x00")
    with pytest.raises(ValueError, match="longer than its header"):
        datasets.load_idx(long)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(ValueError, match="gzip"):
        datasets.load_idx(broken_gz)
    with pytest.raises(FileNotFoundError, match="nothere"):
        datasets.load_idx(tmp_path / "nothere")


def test_load_mnist_directory(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 5, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    for name, arr in files.items():
        raw = _idx_bytes(arr)
        (tmp_path / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    (x, _), (_, yt) = datasets.load_mnist(tmp_path)
    np.testing.assert_array_equal(x, files["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(yt, files["t10k-labels-idx1-ubyte"])
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="3 images but .* 4 labels"):
        datasets.load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        datasets.load_mnist(tmp_path)


def test_load_mnist_c(tmp_path):
    d = tmp_path / "shot_noise"
    d.mkdir()
    x = np.zeros((4, 28, 28, 1), np.uint8)
    for split, n in (("train", 4), ("test", 2)):
        np.save(d / f"{split}_images.npy", x[:n])
        np.save(d / f"{split}_labels.npy", np.arange(n))
    (xtr, _), (_, yte) = datasets.load_mnist_c(tmp_path, "shot_noise")
    assert xtr.shape == (4, 28, 28, 1) and yte.tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match="Available: \\['shot_noise'\\]"):
        datasets.load_mnist_c(tmp_path, "fog")


def test_load_cifar10_binary(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([3, 7], np.uint8)
    imgs = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)  # channel-major, as the file stores
    rec = np.concatenate([labels[:, None], imgs.reshape(2, -1)], axis=1)
    (tmp_path / "data_batch_1.bin").write_bytes(rec.tobytes())
    (tmp_path / "test_batch.bin").write_bytes(rec[:1].tobytes())
    (x, y), (xt, _) = datasets.load_cifar10(tmp_path)
    assert x.shape == (2, 32, 32, 3) and y.tolist() == [3, 7] and xt.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(x[1, :, :, 2], imgs[1, 2])
    (tmp_path / "test_batch.bin").write_bytes(rec.tobytes()[:-5])
    with pytest.raises(ValueError, match="not a CIFAR-10 binary batch"):
        datasets.load_cifar10(tmp_path)


# ---------------------------------------------------------------- augmenter


def test_augmenter_identity_and_shift():
    (x, _), _ = datasets.load_mnist()
    imgs = x[:4, :, :, None]
    aug = ImageAugmenter()
    np.testing.assert_array_equal(aug.augment(imgs), imgs.astype(np.float32))
    params = aug.random_params(4, 28, 28)
    params["ty"][:] = 3.0  # output row r reads input row r + 3
    out = aug.apply_transform(imgs, params)
    np.testing.assert_array_equal(out[:, :-3], imgs[:, 3:])
    params["ty"][:] = 0.0
    params["theta"][:] = np.pi  # 180 degrees about the centre
    out = aug.apply_transform(imgs, params)
    np.testing.assert_allclose(out, imgs[:, ::-1, ::-1], atol=1e-3)


def test_augmenter_constant_fill_and_zoom():
    img = np.ones((1, 8, 8, 1), np.float32)
    aug = ImageAugmenter(fill_mode="constant", cval=-1.0)
    p = aug.random_params(1, 8, 8)
    p["tx"][:] = 2.0
    out = aug.apply_transform(img, p)
    assert (out[0, :, -2:, 0] == -1).all() and (out[0, :, :-2, 0] == 1).all()
    p["tx"][:] = 0.0
    p["zx"][:] = p["zy"][:] = 2.0  # factor > 1 samples a larger area: zoom out, border filled
    out = aug.apply_transform(img, p)
    assert out[0, 0, 0, 0] == -1 and out[0, 4, 4, 0] == 1


def test_flow_batches_and_determinism():
    x = np.random.default_rng(0).integers(0, 255, (70, 12, 12, 1)).astype(np.uint8)
    y = np.arange(70)
    kw = {"rotation_range": 15, "width_shift_range": 0.1, "height_shift_range": 2, "zoom_range": 0.1}
    f1 = ImageAugmenter(seed=3, **kw).flow(x, y, batch_size=32)
    f2 = ImageAugmenter(seed=3, **kw).flow(x, y, batch_size=32)
    assert len(f1) == 3
    sizes = []
    seen = []
    for _ in range(3):
        xb, yb = next(f1)
        xb2, _ = next(f2)
        np.testing.assert_array_equal(xb, xb2)
        sizes.append(len(xb))
        seen.extend(yb.tolist())
        assert xb.dtype == np.float32 and xb.shape[1:] == (12, 12, 1)
    assert sizes == [32, 32, 6] and sorted(seen) == list(range(70))
    xb, _ = next(f1)  # endless: a new shuffled pass
    assert len(xb) == 32
    with pytest.raises(ValueError):
        ImageAugmenter(fill_mode="mirror")
