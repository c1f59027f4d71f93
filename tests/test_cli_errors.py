"""The command line when something is wrong or implicit: a mistake is one line on stderr and exit
status 2 (no traceback, nothing trained); a network trains on its own data set and says which,
never falling back to MNIST unless asked (--dataset mnist); the header's image counts agree with
--limit; ``models`` lists each network once, in plain text, with its data set."""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fastconv
from fastconv import cli

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def _run(*args):
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-m", "fastconv", *args],
            capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=120,
        )  # fmt: skip


def _usage_error(capsys, argv):
    """Run ``cli.main(argv)``; it must exit with status 2 before training. Returns stderr's one line."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert "Epoch" not in out and "Training" not in out
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    return lines[-1]


def _idx(arr):
    arr = np.asarray(arr, np.uint8)
    return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _fashion_dir(d, n=40):
    d.mkdir()
    rng = np.random.default_rng(0)
    for stem, a in (
        ("train-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28))),
        ("train-labels-idx1-ubyte", np.arange(n) % 10),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (n // 2, 28, 28))),
        ("t10k-labels-idx1-ubyte", np.arange(n // 2) % 10),
    ):
        (d / f"{stem}.gz").write_bytes(gzip.compress(_idx(a)))
    return d


def _cifar_dir(d, n=24):
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, m in (("data_batch_1.bin", n), ("test_batch.bin", n // 2)):
        rec = rng.integers(0, 256, (m, 1 + 32 * 32 * 3), dtype=np.uint8)
        rec[:, 0] = np.arange(m) % 10
        (d / name).write_bytes(rec.tobytes())
    return d


def test_missing_data_directory_is_one_line_exit_2_no_traceback():
    r = _run("train", "--data", "/missing-fastconv-data", "--epochs", "1")
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(
        "python -m fastconv train: error: --data: MNIST directory '/missing-fastconv-data' does not exist"
    )
    assert "t10k-images-idx3-ubyte" in lines[0]


def test_data_directory_with_a_corrupt_file(capsys, tmp_path):
    d = _fashion_dir(tmp_path / "fm")
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip, not idx")
    line = _usage_error(capsys, ["train", "--model", "fashion-cnn", "--data", str(d)])
    assert "error: --data: " in line and "t10k-labels-idx1-ubyte.gz" in line


@pytest.mark.parametrize(
    "model, name, needs",
    [
        ("fashion-cnn", "Fashion-MNIST", "train-images-idx3-ubyte"),
        ("separable-cnn", "Fashion-MNIST", "t10k-labels-idx1-ubyte"),
        ("cifar-cnn", "CIFAR-10", "data_batch_1.bin"),
    ],
)
def test_a_network_refuses_to_swap_its_data_set_for_mnist(capsys, model, name, needs):
    line = _usage_error(capsys, ["train", "--model", model, "--epochs", "1", "--limit", "32"])
    assert f"{model} trains on {name}, which is not bundled" in line
    assert "--data DIR" in line and needs in line and "https://" in line
    assert f"--dataset mnist to train {model} on the bundled MNIST" in line


def test_an_explicit_dataset_without_files_and_other_refusals(capsys, tmp_path):
    line = _usage_error(capsys, ["train", "--dataset", "cifar10"])
    assert "--dataset cifar10: CIFAR-10 is not bundled" in line and "--dataset mnist" not in line
    line = _usage_error(capsys, ["train", "--model", "segnet_small", "--dataset", "cifar10"])
    assert "segnet_small segments grey images" in line
    line = _usage_error(capsys, ["train", "--save", str(tmp_path / "no" / "m.npz")])
    assert f"--save {tmp_path / 'no' / 'm.npz'}: directory" in line and "does not exist" in line
    line = _usage_error(capsys, ["train", "--plot", str(tmp_path / "no" / "c.png")])
    assert "--plot" in line
    for bad in (["--limit", "0"], ["--val-limit", "-3"], ["--lr", "0"], ["--lr-decay", "-1"]):
        line = _usage_error(capsys, ["train", *bad])
        assert f"argument {bad[0]}: expected a positive" in line
    for bad in (["--repeats", "0"], ["--batch", "0"]):
        assert "expected a positive integer" in _usage_error(capsys, ["demo", *bad])


def test_dataset_mnist_is_the_asked_for_fallback_and_the_header_says_so(capsys):
    argv = ["train", "--model", "fashion-cnn", "--dataset", "mnist", "--epochs", "1", "--limit", "32",
            "--val-limit", "16", "--batch-size", "16"]  # fmt: skip
    assert cli.main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith(
        "Training fashion-cnn (435,306 params) on the bundled MNIST (instead of fashion-cnn's "
        "Fashion-MNIST: --dataset mnist): 32 of 8,000 train / 16 of 2,000"
    )


def test_fashion_cnn_trains_on_fashion_mnist_from_data_and_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _fashion_dir(tmp_path / "fashion")
    argv = ["train", "--model", "fashion-cnn", "--data", "~/fashion", "--epochs", "1", "--batch-size", "20"]
    assert cli.main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert f"on Fashion-MNIST from {tmp_path / 'fashion'}: 40 train / 20 validation images" in header


def test_a_28x28_network_on_cifar10_is_built_for_32x32x3(capsys, tmp_path):
    d = _cifar_dir(tmp_path / "cifar")
    argv = ["train", "--model", "lenet5", "--dataset", "cifar10", "--data", str(d), "--epochs", "1"]
    assert cli.main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert (
        f"on CIFAR-10 from {d} (instead of lenet5's MNIST: --dataset cifar10), network built for 32x32x3"
    ) in header
    argv = ["train", "--model", "cifar-cnn", "--data", str(d), "--epochs", "1", "--verbose", "2"]
    assert cli.main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith(
        f"Training cifar-cnn (122,570 params) on CIFAR-10 from {d}: 24 train / 12 validation"
    )


def _counts(**kw):
    args = dict(model="lenet5", dataset=None, data=None, limit=None, val_limit=None, threshold=0.5)
    args = argparse.Namespace(**{**args, **kw})
    return cli._load_data(args, (28, 28, 1))[4:6]


def test_header_counts_agree_with_limit():
    source, counts = _counts()
    assert (source, counts) == ("the bundled MNIST", "8,000 train / 2,000 validation images")
    source, counts = _counts(limit=1000)
    assert counts == "1,000 of 8,000 train / 250 of 2,000 validation images (--limit 1000)"
    assert "8,000 train" not in source  # the finding: "(8,000 train / 2,000 validation): 1,000 train"
    assert _counts(limit=100, val_limit=50)[1] == (
        "100 of 8,000 train / 50 of 2,000 validation images (--limit 100, --val-limit 50)"
    )
    assert _counts(val_limit=300)[1] == "8,000 train / 300 of 2,000 validation images (--val-limit 300)"
    assert _counts(limit=20_000)[1] == "8,000 train / 2,000 validation images"  # nothing was cut


def test_models_lists_each_network_once_in_plain_text_with_its_data_set():
    from fastconv import models

    r = _run("models")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("name "))) + 1 :]
    assert [line.split()[0] for line in table] == list(models.MODELS)  # each once, zoo order
    for bad in (":func:", ":class:", ":mod:", "``"):
        assert bad not in r.stdout
    data = {line.split()[0]: line for line in table}
    assert "Fashion-MNIST" in data["fashion-cnn"] and "Fashion-MNIST" in data["separable-cnn"]
    assert "CIFAR-10" in data["cifar-cnn"] and " MNIST " in data["lenet5"]
