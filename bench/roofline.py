#!/usr/bin/env python
"""A roofline picture: each op's measured GFLOP/s against its arithmetic intensity, fastconv and PyTorch.

    PYTHONPATH=. python bench/roofline.py [--threads N] [--out docs/roofline.png] [--only SUBSTR]
                                          [--batch N] [--no-torch] [--peak GFLOPS] [--bandwidth GBS]

The roofline model bounds an op of arithmetic intensity I (FLOPs per byte of memory traffic) by
``min(peak, I * bandwidth)``. Both ceilings are measured on this machine, now:

* peak: the float32 FMA throughput of ``bench/fma_peak.py`` (a compiled loop of independent FMA
  chains on N threads; NumPy's matmul speed when there is no C compiler, and the picture says so);
* bandwidth: a STREAM-style copy of two large arrays (``--stream-mib`` each, well past the caches)
  split across N threads (NumPy releases the GIL while it copies); bytes counted as STREAM counts
  them, one read and one write per element, the best of several copies.

The points are the forward passes of the benchmark shapes (``bench/bench_cases.py``), timed as
``bench_ops.py`` times them: fastconv and PyTorch (NCHW and channels_last, the faster shown) in
interleaved rounds, the median sample. Intensity is the op's FLOPs over its minimal float32 traffic
(input, weights and output each moved once); pooling does no multiply-add, so one comparison or
addition per window element is counted as its "FLOP". An op's point can sit below the roof for
reasons the model leaves out (cache traffic beyond the minimum, short loops, threads), never above
it for long: a point above the memory roof means the data stayed in cache.

``--peak`` and ``--bandwidth`` take given ceilings instead of measuring them (the tests use them).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_cases import CASES, Case, Problem

ITEMSIZE = 4  # float32


# ---------------------------------------------------------------------------------------------------
# The arithmetic: work, traffic, intensity, roof
# ---------------------------------------------------------------------------------------------------
def work(case: Case) -> float:
    """FLOPs of one forward pass: 2 per multiply-add; pooling: 1 per window element read."""
    if case.family in ("maxpool", "avgpool"):
        oh, ow = case.out_hw
        return float(case.n * oh * ow * case.c * case.kernel**2)
    return float(case.flops)


def min_bytes(case: Case, itemsize: int = ITEMSIZE) -> float:
    """The least memory traffic of one forward pass: input, weights and output, each once."""
    x = case.n * case.h * case.w * case.c
    y = int(np.prod(case.y_shape))
    w = int(np.prod(case.w_shape)) if case.w_shape is not None else 0
    return float(itemsize * (x + y + w))


def intensity(case: Case, itemsize: int = ITEMSIZE) -> float:
    """Arithmetic intensity, FLOPs per byte of minimal traffic."""
    return work(case) / min_bytes(case, itemsize)


def roof(intensity_, peak_gflops: float, bandwidth_gbs: float):
    """The attainable GFLOP/s at the given intensity (scalar or array): min(peak, I * bandwidth)."""
    return np.minimum(peak_gflops, np.asarray(intensity_, dtype=float) * bandwidth_gbs)


def ridge(peak_gflops: float, bandwidth_gbs: float) -> float:
    """The intensity where the two roofs meet: below it an op is bound by memory, above by the FMAs."""
    return peak_gflops / bandwidth_gbs


# ---------------------------------------------------------------------------------------------------
# The ceilings, measured
# ---------------------------------------------------------------------------------------------------
def measure_bandwidth(threads: int, mib: int = 256, repeats: int = 7) -> dict:
    """STREAM-style copy bandwidth of this machine: {"gbs", "threads", "mib", "method"}.

    Two arrays of `mib` MiB; each of `threads` threads copies its share with np.copyto (which releases
    the GIL). GB/s = 2 * bytes / seconds (one read + one write per element), best of `repeats`."""
    if threads < 1 or mib < 1:
        raise ValueError(
            f"measure_bandwidth: threads and mib must be >= 1. Received: threads={threads}, mib={mib}"
        )
    n = mib * 2**20 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    best = float("inf")
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda p: np.copyto(*p), parts))  # fault the pages in
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(lambda p: np.copyto(*p), parts))
            best = min(best, time.perf_counter() - t0)
    return {
        "gbs": 2.0 * src.nbytes / best / 1e9,
        "threads": threads,
        "mib": mib,
        "method": f"copy of {mib} MiB, {threads} thread{'s' if threads > 1 else ''}, best of {repeats}",
    }


def measure_peak(threads: int) -> dict:
    """{"gflops", "method"}: the FMA peak on `threads` threads from bench/fma_peak.py."""
    import fma_peak

    res = fma_peak.peak(threads)
    g = res["gflops"]
    n = threads if threads in g else max(g)
    return {"gflops": float(g[n]), "method": res["method"], "cpu": res.get("cpu", "?")}


# ---------------------------------------------------------------------------------------------------
# The points, timed
# ---------------------------------------------------------------------------------------------------
def measure_points(cases, threads: int, target_s: float, torch=None) -> list[dict]:
    """One dict per case: name, kind, intensity, fastconv GFLOP/s and (with torch) PyTorch's."""
    from bench_ops import measure

    from fastconv import ops

    points = []
    for case in cases:
        p = Problem(case)
        fns = {"fastconv": p.np_forward(ops)}
        if torch is not None:
            fns["torch-nchw"] = p.torch_forward("nchw")
            fns["torch-cl"] = p.torch_forward("cl")
        res = measure(fns, target_s, None)
        pt = {
            "case": case.name,
            "kind": case.kind,
            "intensity": intensity(case),
            "work": work(case),
            "fastconv": work(case) / res["fastconv"][0] / 1e9,
        }
        if torch is not None:
            fmt = min(("torch-nchw", "torch-cl"), key=lambda k: res[k][0])
            pt["torch"] = work(case) / res[fmt][0] / 1e9
            pt["torch_fmt"] = "CL" if fmt == "torch-cl" else "NCHW"
        points.append(pt)
        line = f"  {case.name:26s} I={pt['intensity']:7.2f} flop/B  fastconv {pt['fastconv']:7.1f} GFLOP/s"
        if "torch" in pt:
            line += f"  PyTorch ({pt['torch_fmt']}) {pt['torch']:7.1f}"
        print(line, flush=True)
    return points


# ---------------------------------------------------------------------------------------------------
# The picture
# ---------------------------------------------------------------------------------------------------
KIND_COLORS = {
    "dense": "#4C72B0",
    "first": "#8172B3",
    "depthwise": "#55A868",
    "transposed": "#C44E52",
    "pool": "#937860",
}


def draw(points: list[dict], peak: dict, bandwidth: dict, out: Path, title: str = "") -> Path:
    """Write the roofline PNG to `out` (atomically): both roofs, and per case fastconv (filled) and
    PyTorch (hollow) at the case's intensity, joined by a thin line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    P, B = peak["gflops"], bandwidth["gbs"]
    xs = [pt["intensity"] for pt in points] or [1.0]
    lo = min(min(xs) / 2, ridge(P, B) / 8)
    hi = max(max(xs) * 2, ridge(P, B) * 4)
    grid = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(11, 6.2))
    ax.plot(grid, roof(grid, P, B), color="black", lw=2)
    ax.text(hi, P * 1.06, f"FMA peak {P:.0f} GFLOP/s", ha="right", va="bottom", fontsize=9)
    x_text = lo * 1.4  # above the memory line, clear of the y axis
    ax.text(x_text, x_text * B * 3.2, f"memory {B:.1f} GB/s", fontsize=9, va="bottom", ha="left")
    for i, pt in enumerate(points):
        color = KIND_COLORS.get(pt["kind"], "gray")
        x = pt["intensity"]
        ax.scatter([x], [pt["fastconv"]], s=46, color=color, zorder=3)
        if "torch" in pt:
            ax.scatter([x], [pt["torch"]], s=46, facecolors="none", edgecolors=color, lw=1.5, zorder=3)
            ax.plot([x, x], [pt["fastconv"], pt["torch"]], color=color, lw=0.8, alpha=0.6)
        ax.annotate(
            str(i + 1),
            (x, pt["fastconv"]),
            xytext=(4, 2),
            textcoords="offset points",
            fontsize=7.5,
            color=color,
            weight="bold",
        )
    # the numbers' key, beside the plot (names would overlap where shapes share an intensity)
    key = "\n".join(f"{i + 1:2d}  {pt['case']}" for i, pt in enumerate(points))
    ax.text(1.02, 1.0, key, transform=ax.transAxes, va="top", ha="left", fontsize=7.5, family="monospace")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ys = [pt[k] for pt in points for k in ("fastconv", "torch") if k in pt] or [P]
    ax.set_ylim(min(ys) / 2, P * 2)
    ax.set_xlabel("arithmetic intensity (FLOPs per byte of minimal float32 traffic)")
    ax.set_ylabel("GFLOP/s (pooling: window elements / s)")
    handles = [Line2D([], [], marker="o", ls="", color="gray", label="fastconv")]
    if any("torch" in pt for pt in points):
        handles.append(
            Line2D([], [], marker="o", ls="", markerfacecolor="none", color="gray", label="PyTorch")
        )
    handles += [
        Line2D([], [], marker="s", ls="", color=c, label=k)
        for k, c in KIND_COLORS.items()
        if any(pt["kind"] == k for pt in points)
    ]
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    ax.set_title(title or "roofline", fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs" / "roofline.png")
    ap.add_argument("--only", default=None, help="cases whose name contains this")
    ap.add_argument(
        "--batch", type=int, default=None, help="batch size instead of each case's (smaller: quicker)"
    )
    ap.add_argument("--target-s", type=float, default=0.3, help="seconds of timing per case (default 0.3)")
    ap.add_argument("--no-torch", action="store_true", help="fastconv alone")
    ap.add_argument("--peak", type=float, default=None, help="FMA peak in GFLOP/s instead of measuring it")
    ap.add_argument(
        "--bandwidth", type=float, default=None, help="memory bandwidth in GB/s instead of measuring it"
    )
    ap.add_argument("--stream-mib", type=int, default=256, help="MiB per array of the bandwidth copy")
    ap.add_argument(
        "--replot",
        type=Path,
        default=None,
        metavar="JSON",
        help="redraw --out from the numbers a run saved (its .json) instead of measuring",
    )
    args = ap.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.replot is not None:
        data = json.loads(args.replot.read_text())
        print(f"wrote {draw(data['points'], data['peak'], data['bandwidth'], args.out, data['title'])}")
        return 0
    if args.threads < 1:
        ap.error(f"--threads must be >= 1. Received: {args.threads}")

    import fastconv

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch is not installed: fastconv's points only")
    # the thread counts are set for the run and given back after it (main is also called in-process)
    saved = (fastconv.get_num_threads(), torch.get_num_threads() if torch is not None else None)
    fastconv.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, ap, fastconv, torch)
    finally:
        fastconv.set_num_threads(saved[0])
        if torch is not None:
            torch.set_num_threads(saved[1])


def _run(args, ap, fastconv, torch) -> int:
    cases = [c for c in CASES if args.only is None or args.only in c.name]
    if not cases:
        ap.error(f"--only matches no case. Received: {args.only!r}")
    if args.batch:
        cases = [c.with_batch(args.batch) for c in cases]

    peak = (
        {"gflops": args.peak, "method": "given (--peak)", "cpu": "?"}
        if args.peak
        else measure_peak(args.threads)
    )
    bw = (
        {"gbs": args.bandwidth, "method": "given (--bandwidth)"}
        if args.bandwidth
        else measure_bandwidth(args.threads, args.stream_mib)
    )
    print(f"FMA peak: {peak['gflops']:.1f} GFLOP/s ({peak['method']})")
    print(f"memory bandwidth: {bw['gbs']:.1f} GB/s ({bw['method']})")
    print(f"ridge point: {ridge(peak['gflops'], bw['gbs']):.1f} FLOPs/byte")
    load_start = _load()
    points = measure_points(cases, args.threads, args.target_s, torch)
    load_end = _load()
    cpu = peak.get("cpu", "?")
    if cpu == "?":
        cpu = platform.processor() or platform.machine()
    title = (
        f"{cpu}, {args.threads} thread{'s' if args.threads > 1 else ''}, float32 forward, "
        f"fastconv {fastconv.__version__} (SIMD {fastconv._dispatch.LEVEL_NAMES[fastconv._dispatch.simd_level()]})"
        + (f", PyTorch {torch.__version__}" if torch is not None else "")
        + f", {time.strftime('%Y-%m-%d')}\n"
        f"peak: {peak['method']}; bandwidth: {bw['method']}; load {load_start} -> {load_end}"
    )
    path = draw(points, peak, bw, args.out, title)
    data = {
        "title": title,
        "peak": peak,
        "bandwidth": bw,
        "points": points,
        "threads": args.threads,
        "load": [load_start, load_end],
        "argv": args.argv,
    }
    js = path.with_suffix(".json")
    tmp = js.with_name(f".{js.stem}.tmp{os.getpid()}.json")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, js)
    print(f"wrote {path} and {js} (the numbers; --replot {js} redraws the picture)")
    return 0


def _load() -> str:
    """The 1-minute load average, for the record (a shared machine slows every point)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (OSError, AttributeError):
        return "?"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
