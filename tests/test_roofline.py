"""bench/roofline.py: the work / traffic / intensity arithmetic of each kind of op against hand
counts, the roof and its ridge, the bandwidth measurement's contract, and a tiny run that writes a
PNG. Nothing timed is asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def rl():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("roofline_under_test", BENCH / "roofline.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_conv_work_bytes_intensity_by_hand(rl):
    case = rl.Case("c", "dense", "conv", 1, 4, 4, 2, 3, 3, padding=1)  # 1x4x4x2 -> 4x4x3, 3x3
    assert rl.work(case) == 2 * (4 * 4 * 3) * (3 * 3 * 2)  # 1728 FLOPs
    assert rl.min_bytes(case) == 4 * (4 * 4 * 2 + 4 * 4 * 3 + 3 * 3 * 2 * 3)  # x + y + w floats
    assert rl.intensity(case) == pytest.approx(1728 / 536)
    assert rl.min_bytes(case, itemsize=8) == 2 * rl.min_bytes(case)


def test_grouped_strided_depthwise_and_transposed_by_hand(rl):
    g = rl.Case("g", "dense", "conv", 2, 5, 5, 4, 6, 3, stride=2, groups=2)  # 5x5 -> 2x2, valid
    assert rl.work(g) == 2 * 2 * (2 * 2 * 6) * (3 * 3 * 4 // 2)
    assert rl.min_bytes(g) == 4 * (2 * 5 * 5 * 4 + 2 * 2 * 2 * 6 + 3 * 3 * 2 * 6)
    dw = rl.Case("d", "depthwise", "depthwise", 1, 6, 6, 3, 2, 3, padding=1)  # M=2: 6 output channels
    assert rl.work(dw) == 2 * (6 * 6 * 6) * 9
    assert rl.min_bytes(dw) == 4 * (6 * 6 * 3 + 6 * 6 * 6 + 3 * 3 * 3 * 2)
    t = rl.Case("t", "transposed", "transposed", 1, 3, 3, 4, 2, 2, stride=2)  # 3x3x4 -> 6x6x2
    assert t.out_hw == (6, 6)
    assert rl.work(t) == 2 * (3 * 3 * 4) * (2 * 2 * 2)
    assert rl.min_bytes(t) == 4 * (3 * 3 * 4 + 6 * 6 * 2 + 2 * 2 * 2 * 4)


def test_pooling_counts_one_op_per_window_element(rl):
    case = rl.Case("p", "pool", "maxpool", 1, 4, 4, 2, 0, 2, stride=2)  # 4x4x2 -> 2x2x2
    assert rl.work(case) == 2 * 2 * 2 * 4
    assert rl.min_bytes(case) == 4 * (4 * 4 * 2 + 2 * 2 * 2)  # no weights
    assert rl.intensity(case) == pytest.approx(32 / 160)


def test_every_benchmark_case_has_a_positive_finite_intensity(rl):
    for case in rl.CASES:
        i = rl.intensity(case)
        assert np.isfinite(i) and i > 0, case.name
    # depthwise and pooling sit left of the dense convolutions: memory-bound vs compute-bound
    by_kind = {}
    for case in rl.CASES:
        by_kind.setdefault(case.kind, []).append(rl.intensity(case))
    assert max(by_kind["pool"]) < min(by_kind["dense"])
    assert max(by_kind["depthwise"]) < min(by_kind["dense"])


def test_roof_and_ridge(rl):
    assert rl.ridge(100.0, 20.0) == 5.0
    got = rl.roof([0.5, 5.0, 50.0], 100.0, 20.0)
    np.testing.assert_allclose(got, [10.0, 100.0, 100.0])
    assert float(rl.roof(1.0, 100.0, 20.0)) == 20.0


def test_measure_bandwidth_contract(rl):
    res = rl.measure_bandwidth(threads=2, mib=2, repeats=2)
    assert res["gbs"] > 0 and res["threads"] == 2 and res["mib"] == 2
    assert "2 threads" in res["method"]
    with pytest.raises(ValueError, match="threads=0"):
        rl.measure_bandwidth(threads=0)


def test_draw_writes_a_png_atomically(rl, tmp_path):
    points = [
        {"case": "a", "kind": "dense", "intensity": 40.0, "fastconv": 80.0, "torch": 70.0},
        {"case": "b", "kind": "pool", "intensity": 0.2, "fastconv": 3.0},
    ]
    out = rl.draw(points, {"gflops": 200.0}, {"gbs": 20.0}, tmp_path / "sub" / "r.png", "t")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["r.png"]


def test_tiny_run_writes_a_png(rl, tmp_path, capsys):
    out = tmp_path / "roof.png"
    argv = [
        "--only",
        "first 3x3 1->32",
        "--batch",
        "1",
        "--target-s",
        "0.01",
        "--no-torch",
        "--peak",
        "100",
        "--bandwidth",
        "10",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert rl.main(argv) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    text = capsys.readouterr().out
    assert "FMA peak: 100.0 GFLOP/s (given (--peak))" in text
    assert "ridge point: 10.0 FLOPs/byte" in text
    assert "first 3x3 1->32 @28" in text and "fastconv" in text
    data = json.loads(out.with_suffix(".json").read_text())
    (pt,) = data["points"]
    case = next(c for c in rl.CASES if c.name == "first 3x3 1->32 @28").with_batch(1)
    assert pt["intensity"] == pytest.approx(rl.intensity(case)) and pt["fastconv"] > 0
    assert data["peak"]["gflops"] == 100 and data["bandwidth"]["gbs"] == 10
    replot = tmp_path / "again.png"
    assert rl.main(["--replot", str(out.with_suffix(".json")), "--out", str(replot)]) == 0
    assert replot.read_bytes()[:8] == PNG_MAGIC


def test_tiny_run_with_pytorch(rl, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "roof.png"
    argv = [
        "--only",
        "maxpool2x2",
        "--batch",
        "1",
        "--target-s",
        "0.01",
        "--peak",
        "100",
        "--bandwidth",
        "10",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert rl.main(argv) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "PyTorch (" in capsys.readouterr().out


def test_only_matching_nothing_is_refused(rl, tmp_path):
    with pytest.raises(SystemExit):
        rl.main(
            ["--only", "no such case", "--peak", "1", "--bandwidth", "1", "--out", str(tmp_path / "x.png")]
        )
