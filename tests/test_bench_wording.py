"""bench/bench_ops.py speaks to users: its --help names no issue numbers and explains what a run
prints, and a run's summary says which speed targets were met / not met and ends with one readable
sentence, instead of bare PASS / FAIL lines. (The measurements themselves are not run here.)"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench_ops():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_ops_wording", BENCH / "bench_ops.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_help_speaks_of_targets_not_issues(bench_ops, capsys):
    with pytest.raises(SystemExit) as e:
        bench_ops.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert not re.search(r"issue|#\d", text, re.IGNORECASE), text
    assert "Speed targets:" in text and "Nothing is asserted" in text and "RESULTS.md" in text


def _row(kind, name, mode, fc, torch, ref, kernel=3, stride=1, dilation=1, groups=1):
    case = SimpleNamespace(kind=kind, name=name, kernel=kernel, stride=stride, dilation=dilation, groups=groups)
    return {"case": case, "mode": mode, "fc": fc, "torch": torch, "ref": ref}


def test_summary_says_met_or_not_met_and_ends_in_a_sentence(bench_ops):
    rows = [
        _row("dense", "conv3x3", "fwd", 1.0, 1.4, 5.0),  # 3x3 stride 1: torch/fc 1.4 >= 1.3
        _row("dense", "conv3x3", "fwdbwd", 1.0, 1.2, 4.0),  # 1.2 < 1.3: not met
        _row("dense", "conv3x3 s2", "fwd", 1.0, 1.1, 5.0, stride=2),  # other dense: 1.1 >= 1.0
        _row("dense", "conv1x1", "fwdbwd", 1.0, 1.0, 5.0, kernel=1),  # 1.0 >= 1.0: met
        _row("pool", "maxpool", "fwd", 1.0, 1.4, 30.0),  # torch/fc 1.4 < 1.5: not met
    ]
    scal = [{"mode": "fwd", "n": 2, "fc1": 2.0, "fcN": 1.0}, {"mode": "fwdbwd", "n": 2, "fc1": 1.9, "fcN": 1.0}]
    summ = bench_ops.summary(rows, scal, {"ratio": 1.6}, True, 2, set())
    text = "\n".join(summ)
    assert "PASS" not in text and "FAIL" not in text
    assert "NumPy reference" not in text  # the targets compare with PyTorch only
    assert all(line.split("  ")[0].strip() in {"met", "NOT MET", "n/a"} for line in summ), text
    verdict = bench_ops.verdict(summ)
    assert verdict.startswith("3 of 5 speed targets met in this run; not met: "), verdict
    assert "dense 3x3 stride-1 convs >= 1.3x PyTorch" in verdict
    assert "depthwise / first-layer / transposed / pooling >= 1.5x PyTorch (worst case)" in verdict
    assert "other dense" not in verdict and "threads" not in verdict and "training" not in verdict
    assert "conv3x3 fwd+bwd 1.20x" in text and "(conv3x3 s2 fwd)" not in verdict
    assert "2 threads >= 1.8x faster than 1 for a large conv" in text and "fwd+bwd): 1.90x" in text
    assert bench_ops.verdict(summ).endswith("nothing here is asserted.")
    assert bench_ops.verdict(["n/a      x: PyTorch not importable"]).startswith("No speed target")


def test_bench_models_prints_the_network_targets_met_or_not():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_models_wording", BENCH / "bench_models.py")
        bm = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bm)
    finally:
        sys.path.remove(str(BENCH))
    results = [
        {"name": "lenet5", "train_median": 1.6, "predict_median": 2.0},
        {"name": "fashion-cnn", "train_median": 1.4, "predict_median": 1.5},
        {"name": "vgg_small", "train_median": 1.25, "predict_median": 1.49},
        {"name": "regnet_small", "error": "ValueError: x"},
    ]
    lines = bm.targets(results)
    assert lines[0].startswith("NOT MET  training of the tutorial CNNs") and "fashion-cnn 1.40x" in lines[0]
    assert "lenet5" not in lines[0].split("below")[1]
    assert lines[1].startswith("met      training of every other network >= 1.2x") and "(vgg_small)" in lines[1]
    assert lines[2].startswith("NOT MET  predict (batch 256)") and lines[2].endswith("below 1.5x: vgg_small 1.49x")
    assert lines[3] == "n/a      not measured (error): regnet_small"
    assert bm.targets([])[0].startswith("n/a")
