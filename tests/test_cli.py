"""Command line: `python -m fastconv` help on every command, `models`, `info`, and a short `train`
run on a subset of the bundled MNIST that saves a loadable model (and a PNG when matplotlib exists)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import sys

import numpy as np
import pytest

import fastconv
from fastconv import cli
from fastconv.saving import load_model

# the fastconv this test imported (installed, or an in-place build): the subprocess must run the same
# one, and must not start in the source tree, whose fastconv/ would shadow an installed package
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def _run(*args):
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-m", "fastconv", *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            cwd=cwd,
            timeout=120,
        )


def test_module_help_and_subcommand_help():
    r = _run("--help")
    assert r.returncode == 0 and "train" in r.stdout and "info" in r.stdout
    for cmd in ("train", "models", "info"):
        with pytest.raises(SystemExit) as e:
            cli.main([cmd, "--help"])
        assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--model", "alexnet"])
    assert e.value.code == 2


def test_models_and_info(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name, count in (
        ("fashion-cnn", "435,306"),
        ("separable-cnn", "184,234"),
        ("cifar-cnn", "122,570"),
        ("mnist-cnn", "232,650"),
        ("lenet5", "61,706"),
    ):
        assert name in out and count in out
    assert cli.main(["info"]) == 0
    assert "fastconv" in capsys.readouterr().out


def test_train_smoke(tmp_path, capsys):
    save = tmp_path / "lenet.npz"
    png = tmp_path / "curves.png"
    code = cli.main(
        [
            "train",
            "--model",
            "lenet5",
            "--epochs",
            "1",
            "--limit",
            "500",
            "--save",
            str(save),
            "--plot",
            str(png),
            "--verbose",
            "1",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Epoch 1/1" in out and "8/8 [" in out and "Validation accuracy: " in out
    acc = float(out.split("Validation accuracy: ")[1].split()[0])
    assert 0.0 <= acc <= 1.0
    model = load_model(save)
    assert model.count_params() == 61_706
    assert model.predict(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in captured.err
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cifar_cnn_runs_on_padded_mnist(capsys):
    assert (
        cli.main(
            [
                "train",
                "--model",
                "cifar-cnn",
                "--dataset",
                "mnist",  # asked for: without CIFAR-10 files, cifar-cnn refuses to fall back to MNIST
                "--epochs",
                "1",
                "--limit",
                "64",
                "--val-limit",
                "32",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    assert "Validation accuracy" in capsys.readouterr().out


def test_help_on_every_command_including_demo():
    r = _run("demo", "--help")
    assert r.returncode == 0 and "reference" in r.stdout
    for cmd in ("train", "models", "demo", "info"):
        with pytest.raises(SystemExit) as e:
            cli.main([cmd, "--help"])
        assert e.value.code == 0


def test_models_lists_the_whole_zoo_with_parameter_counts(capsys):
    from fastconv import models

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name, fn in models.MODELS.items():
        kw = {"classes": 2} if name == "segnet_small" else {}
        count = f"{fn(**kw).count_params():,}"
        assert [line.split()[:2] for line in lines].count([name, count]) == 1, name  # listed once
    assert sum(line.startswith("lenet5 ") for line in lines) == 1
    assert any(line.split()[:2] == ["resnet-mini", "78,426"] for line in lines)
    assert "`" not in out.split("design", 1)[1] and ":func:" not in out  # plain text


def test_train_accepts_every_zoo_name():
    from fastconv import models

    parser = cli.build_parser()
    for name in [
        *models.MODELS,
        "lenet5",
        "mnist-cnn",
        "fashion-cnn",
        "separable-cnn",
        "cifar-cnn",
        "resnet-mini",
    ]:
        assert parser.parse_args(["train", "--model", name]).model == name


def test_train_zoo_classifier_smoke(capsys):
    code = cli.main(
        [
            "train",
            "--model",
            "shufflenet_small",
            "--epochs",
            "1",
            "--limit",
            "64",
            "--val-limit",
            "32",
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    acc = float(out.split("Validation accuracy: ")[1].split()[0])
    assert 0.0 <= acc <= 1.0


def test_train_applies_the_models_learning_rate_decay(capsys, monkeypatch):
    from fastconv import optimizers

    seen = []
    apply = optimizers.Adam.apply

    def spy(self, pairs):
        seen.append(self.learning_rate)
        return apply(self, pairs)

    monkeypatch.setattr(optimizers.Adam, "apply", spy)
    args = ["train", "--model", "resnet_small", "--epochs", "2", "--limit", "32", "--val-limit", "16"]
    assert cli.main([*args, "--verbose", "1", "--batch-size", "16"]) == 0
    assert "learning rate x0.3 per epoch" in capsys.readouterr().out
    assert seen == pytest.approx([1e-3, 1e-3, 3e-4, 3e-4])  # 2 steps per epoch


def test_train_segnet_prints_mean_iou(capsys, tmp_path):
    save = tmp_path / "seg.npz"
    code = cli.main(
        [
            "train", "--model", "segnet_small", "--epochs", "1", "--limit", "64", "--val-limit", "32",
            "--batch-size", "16", "--verbose", "2", "--save", str(save),
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "digit-vs-background masks" in out and "mean_iou" in out
    iou = float(out.split("mean IoU: ")[1].split()[0])
    assert 0.0 <= iou <= 1.0
    model = load_model(save)
    assert model.predict(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 28, 28, 2)


def test_demo_runs_and_agrees_with_the_reference(capsys):
    assert cli.main(["demo", "--batch", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for kernel in ("conv2d 3x3", "conv2d_grad", "depthwise", "max_pool2d"):
        assert kernel in out
    assert "SIMD" in out and "speed-up" in out and "WARNING" not in out
