"""bench/bench_ops.py's speed statistic (the median of per-round ratios and its spread) and
bench/fma_peak.py's reading of its C program's output.  Pure functions only: nothing is timed here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name + "_method", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def bench_ops():
    return _load("bench_ops")


@pytest.fixture(scope="module")
def fma_peak():
    return _load("fma_peak")


def test_ratio_is_taken_per_round_then_the_median(bench_ops):
    fc = [1.0, 2.0, 1.0, 1.0, 1.0]  # round 2: a load spike slowed fastconv only
    torch = [2.0, 2.0, 2.0, 2.0, 2.0]
    ratios = bench_ops.round_ratios(torch, fc)
    assert ratios == [2.0, 1.0, 2.0, 2.0, 2.0]
    st = bench_ops.ratio_stats(ratios)
    assert st["median"] == 2.0 and st["min"] == 1.0 and st["max"] == 2.0 and st["n"] == 5
    assert st["q1"] <= st["median"] <= st["q3"]


def test_best_layout_is_chosen_in_each_round(bench_ops):
    fc = [1.0, 1.0, 1.0, 1.0]
    nchw = [3.0, 1.5, 3.0, 1.5]
    cl = [2.0, 2.0, 2.0, 2.0]
    assert bench_ops.round_ratios([nchw, cl], fc) == [2.0, 1.5, 2.0, 1.5]


def test_rounds_only_where_both_sides_ran(bench_ops):
    # the reference gets fewer samples: only the rounds it ran pair up
    assert bench_ops.round_ratios([10.0, 12.0], [1.0, 2.0, 1.0, 1.0]) == [10.0, 6.0]
    assert bench_ops.ratio_stats([]) is None


def test_quartiles_and_cell(bench_ops):
    st = bench_ops.ratio_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (st["q1"], st["median"], st["q3"]) == (2.0, 3.0, 4.0)
    assert bench_ops.ratio_cell(st) == "3.00x [2.00-4.00]"
    assert bench_ops.ratio_cell(bench_ops.ratio_stats([1.5])) == "1.50x (n=1)"
    assert bench_ops.ratio_cell(None) == "-"
    assert bench_ops.ratio_cell(None, 0.5) == "0.50x"


def test_fma_peak_parser(fma_peak):
    text = (
        "isa=avx512f threads=1 seconds=0.006123 gflops=251.30\n"
        "noise the parser skips\n"
        "isa=avx512f threads=2 seconds=0.006200 gflops=500.40\n"
    )
    res = fma_peak.parse_output(text)
    assert res["isa"] == "avx512f"
    assert res["gflops"] == {1: 251.30, 2: 500.40}
    assert fma_peak.parse_output("")["gflops"] == {}


def test_fma_peak_compile_flags_follow_the_cpu(fma_peak):
    assert fma_peak._isa_flags({"avx2", "fma", "avx512f"}) == ["-mavx512f", "-mfma"]
    assert fma_peak._isa_flags({"avx2", "fma"}) == ["-mavx2", "-mfma"]
    assert fma_peak._isa_flags({"sse4_2"}) is None
