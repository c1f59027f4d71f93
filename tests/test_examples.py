"""Every script in examples/ runs end to end on a small subset of the bundled data (CIFAR-10 on a
small synthetic file in its binary format)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def example(monkeypatch, tmp_path):
    """Load ``examples/<name>.py`` as a module (its directory on sys.path, cwd = tmp_path)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.chdir(tmp_path)

    def load(name):
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def test_every_example_is_tested():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    tested = {name[len("test_") :] for name in globals() if name.startswith("test_")}
    assert scripts <= tested, scripts - tested


def test_functional_api(example, capsys):
    model = example("functional_api").main(["--limit", "96", "--epochs", "1", "--out", "."])
    assert "identical predictions: True" in capsys.readouterr().out
    assert {"Add", "Concatenate", "Multiply"} <= {type(la).__name__ for la in model.layers}


def test_mnist_cnn_finetune(example, capsys, tmp_path):
    before, after = example("mnist_cnn_finetune").main(
        ["--limit", "128", "--epochs", "1", "--finetune-epochs", "1", "--out", "run"]
    )
    out = capsys.readouterr().out
    assert "frozen conv weights unchanged: True" in out
    assert (tmp_path / "run" / "mnist_cnn_best.npz").is_file()
    for corruption in ("gaussian_noise", "gaussian_blur", "shift"):
        for f in ("train_images", "train_labels", "test_images", "test_labels"):
            assert (tmp_path / "run" / "mnist_c" / corruption / f"{f}.npy").is_file()
    images = np.load(tmp_path / "run" / "mnist_c" / "shift" / "train_images.npy")
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 1)
    assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0


def test_fashion_selu_cnn(example, tmp_path):
    results = example("fashion_selu_cnn").main(["--limit", "64", "--epochs", "1", "--logdir", "runs"])
    assert results["selu_cnn"][0] == 435_306
    assert results["separable_cnn"][0] == 184_234
    for name in ("selu_cnn", "separable_cnn"):  # TensorBoard(logdir), one run per network
        for run in ("train", "validation"):
            assert any(f.name.startswith("events.out.tfevents") for f in (tmp_path / "runs" / name / run).iterdir())


def _write_cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, size=(n, 1 + 32 * 32 * 3), dtype=np.uint8)
    records[:, 0] = np.arange(n) % 10
    path.write_bytes(records.tobytes())


def test_cifar10_cnn(example, tmp_path):
    data = tmp_path / "cifar-10-batches-bin"
    data.mkdir()
    _write_cifar_batch(data / "data_batch_1.bin", 96, 0)
    _write_cifar_batch(data / "test_batch.bin", 40, 1)
    acc = example("cifar10_cnn").main(["--data", str(tmp_path), "--epochs", "1", "--logdir", "logs"])
    assert 0.0 <= acc <= 1.0
    for run in ("train", "validation"):  # TensorBoard(log_dir=log_dir, histogram_freq=1)
        assert any(f.name.startswith("events.out.tfevents") for f in (tmp_path / "logs" / run).iterdir())


def test_edge_filters(example, tmp_path):
    maps = example("edge_filters").main(["--index", "3", "--out", "edges.png"])
    assert set(maps) == {"digit", "Sobel x", "Sobel y", "Laplacian", "high-pass"}
    assert all(m.shape == (28, 28) for m in maps.values())
    assert all(m.min() >= 0 for m in maps.values())  # after ReLU
    assert maps["Sobel x"].max() > 0.5
    pytest.importorskip("matplotlib")
    assert (tmp_path / "edges.png").stat().st_size > 1000


def test_feature_maps(example, tmp_path):
    maps = example("feature_maps").main(["--limit", "96", "--out", "maps.png"])
    assert maps.shape == (10, 26, 26, 16)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "maps.png").is_file()


def test_resnet_vs_plain(example, tmp_path):
    histories = example("resnet_vs_plain").main(["--limit", "96", "--epochs", "1", "--out", "curves.png"])
    assert set(histories) == {"resnet_small", "plain_small"}
    assert all(len(h["val_accuracy"]) == 1 for h in histories.values())
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").is_file()


def test_segment_digits(example):
    mod = example("segment_digits")
    accuracy, iou = mod.main(["--limit", "96", "--epochs", "1"])  # checks evaluate's IoU = predict's
    assert 0.0 <= accuracy <= 1.0 and 0.0 <= iou <= 1.0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
