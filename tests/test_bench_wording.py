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


def _row(kind, name, mode, fc, torch, ref):
    return {"case": SimpleNamespace(kind=kind, name=name), "mode": mode, "fc": fc, "torch": torch, "ref": ref}


def test_summary_says_met_or_not_met_and_ends_in_a_sentence(bench_ops):
    rows = [
        _row("dense", "conv3x3", "fwd", 1.0, 0.9, 5.0),  # torch/fc 0.9 >= 0.5: met; ref/fc 5 >= 3: met
        _row("dense", "conv3x3", "fwdbwd", 1.0, 0.8, 4.0),  # ref/fc 4 < 20: not met
        _row("pool", "maxpool", "fwd", 1.0, 0.5, 30.0),  # torch/fc 0.5 < 1: not met
    ]
    scal = [{"mode": "fwd", "n": 2, "fc1": 2.0, "fcN": 1.0}]
    summ = bench_ops.summary(rows, scal, {"ratio": 0.7}, True, 2, set())
    text = "\n".join(summ)
    assert "PASS" not in text and "FAIL" not in text
    assert all(line.split("  ")[0].strip() in {"met", "NOT MET", "n/a"} for line in summ), text
    verdict = bench_ops.verdict(summ)
    assert verdict.startswith("5 of 7 speed targets met in this run; not met: ")
    assert "depthwise / first-layer / transposed / pooling >= 1.0x PyTorch (worst case)" in verdict
    assert "fwd+bwd of every op >= 20x the NumPy reference" in verdict
    assert verdict.endswith("nothing here is asserted.")
    assert bench_ops.verdict(["n/a      x: PyTorch not importable"]).startswith("No speed target")
