#!/usr/bin/env python
"""fastconv vs the NumPy reference vs PyTorch (CPU): every op, forward and forward+backward.

    PYTHONPATH=. python bench/bench_ops.py [--threads N] [--repeat R] [--quick] [--only SUBSTR]
                                           [--train] [--out bench/RESULTS.md | --no-write]

Method (the machines are noisy and shared):
* every implementation of one shape runs interleaved in one process, in rotating order, after a warm-up;
* a sample is enough back-to-back calls to last >= 2 ms; the number of samples is chosen so a measurement
  takes ~0.5 s (0.15 s with --quick), or is fixed with --repeat; the time reported is the median sample;
* one round = one sample of each implementation (fastconv, PyTorch NCHW, PyTorch channels_last, ONNX
  Runtime when installed, the reference while its samples last), in an order that rotates each round;
  fastconv, PyTorch and ONNX Runtime get the same number of rounds;
* a speed ratio is taken per round (PyTorch: the better of its two layouts in that round, divided by
  fastconv's sample of the same round) and the median of the per-round ratios is reported, with their
  interquartile range: a load spike hits both sides of one round, not one side of a ratio of medians;
* PyTorch runs with torch.set_num_threads(same threads), in NCHW and channels_last; the better is reported;
* ONNX Runtime (forward only, when `onnxruntime` and `onnx` import): PyTorch's forward exported by
  torch.onnx.export, run by an InferenceSession with intra_op_num_threads = the same threads;
* the float32 FMA peak of the machine is measured at start (bench/fma_peak.py: a compiled loop of
  independent FMAs, 1 and N threads); each row's GFLOP/s is also shown as a share of it;
* forward+backward is op + op_grad for fastconv and the reference, autograd forward + backward for PyTorch
  (x and w requiring grad), so every implementation computes y, dx and dw;
* the reference's idle OpenBLAS threads sleep instead of spinning (OPENBLAS_THREAD_TIMEOUT=4), so they do
  not compete with the call measured after them;
* the NumPy reference gets fewer samples where one run is slow; its forward+backward is skipped where a
  single forward already takes > 3 s.
Nothing here asserts: the summary reports, per speed target, whether this run met it.
"""

from __future__ import annotations

import os
import sys


def _preset_blas_threads(argv) -> None:
    """--threads N also limits the reference's BLAS; that must happen before NumPy is imported.

    OpenBLAS's idle threads also go to sleep at once (OPENBLAS_THREAD_TIMEOUT=4): by default they
    spin after every reference call and take the cores from the fastconv or PyTorch call measured
    next, which made single measurements of both 20-40 % slower at random."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    for i, a in enumerate(argv):
        val = (
            a.split("=", 1)[1]
            if a.startswith("--threads=")
            else (argv[i + 1] if a == "--threads" and i + 1 < len(argv) else None)
        )
        if val and val.isdigit():
            for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ.setdefault(var, val)


if __name__ == "__main__":
    _preset_blas_threads(sys.argv[1:])

import argparse
import datetime
import platform
import shlex
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_cases import CASES, SCALING_CASE, Problem, check_against, ort_available, ort_forward

REF_SLOW_S = 3.0  # a reference run longer than this is measured once; its fwd+bwd is skipped
MIN_SAMPLE_S = 2e-3  # back-to-back calls per sample until a sample lasts this long
MAX_SAMPLES = 300
TRAIN_RATIO = 1.5  # target: fastconv training (--train: the Fashion-MNIST CNN) at least 1.5x PyTorch


def _dense_3x3_s1(case) -> bool:
    """A dense 3x3 stride-1 undilated ungrouped conv: the shapes Winograd serves."""
    return (
        case.kind == "dense"
        and case.kernel == 3
        and case.stride == 1
        and case.dilation == 1
        and case.groups == 1
    )


# Speed targets: (rule id, text, which cases (a predicate), passes, impl compared, minimum ratio)
RULES = [
    (
        "dense3x3-vs-torch",
        "dense 3x3 stride-1 convs >= 1.3x PyTorch (fwd and fwd+bwd, every shape)",
        _dense_3x3_s1,
        ("fwd", "fwdbwd"),
        "torch",
        1.3,
    ),
    (
        "dense-other-vs-torch",
        "other dense convs (stride 2, dilated, 1x1, grouped) >= 1.0x PyTorch (fwd and fwd+bwd, every shape)",
        lambda case: case.kind == "dense" and not _dense_3x3_s1(case),
        ("fwd", "fwdbwd"),
        "torch",
        1.0,
    ),
    (
        "other-vs-torch",
        "depthwise / first-layer / transposed / pooling >= 1.5x PyTorch (worst case)",
        lambda case: case.kind in ("depthwise", "first", "transposed", "pool"),
        ("fwd", "fwdbwd"),
        "torch",
        1.5,
    ),
]
SCALING_MIN = 1.8  # all threads (2 on the reference machine) over 1, large conv forward+backward


# ---------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------
def _time_once(fn, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def measure(
    fns: dict, target_s: float, repeat: int | None, slow_ok: set | None = None, per_round: dict | None = None
) -> dict:
    """Median seconds per call of each zero-argument callable, interleaved in rotating order.

    fns: name -> callable.  Names in ``slow_ok`` (the reference) that take > REF_SLOW_S per call are
    measured by their warm-up call alone.  Names not in ``slow_ok`` all run the same number of rounds
    (the smallest any of them asked for, at least 5), so their samples pair up round by round.
    Returns name -> (median seconds, samples, calls per sample); when ``per_round`` is a dict, it is
    filled with name -> list of per-call seconds, one per round in round order (empty for a slow
    reference measured by its warm-up alone).
    """
    slow_ok = slow_ok or set()
    est, plan, samples = {}, {}, {}
    for name, fn in fns.items():  # warm-up (first calls create oneDNN primitives, fault pages in, ...)
        t = _time_once(fn, 1)
        if not (name in slow_ok and t > 0.3):
            t = min(t, _time_once(fn, 1))
        est[name] = t
    for name, t in est.items():
        if name in slow_ok and t > REF_SLOW_S:
            t2 = _time_once(fns[name], 1)  # one slow call may be a load spike: look once more
            if t2 > REF_SLOW_S:
                plan[name] = (0, 1)
                samples[name] = [t, t2]
                continue
            t = t2
        inner = max(1, int(np.ceil(MIN_SAMPLE_S / max(t, 1e-9))))
        if repeat:
            runs = repeat
        else:
            runs = round(target_s / (t * inner))
            runs = max(3 if name in slow_ok else 5, min(MAX_SAMPLES, runs))
            if name in slow_ok:  # keep the reference to about REF_SLOW_S in total
                runs = max(1, min(runs, int(REF_SLOW_S / (t * inner)) or 1))
        plan[name] = (runs, inner)
        samples[name] = []
    paired = [n for n in fns if n not in slow_ok]
    if paired and not repeat:
        common = min(plan[n][0] for n in paired)
        for n in paired:
            plan[n] = (common, plan[n][1])
    names = list(fns)
    rounds = max(r for r, _ in plan.values())
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            runs, inner = plan[name]
            if r < runs:
                samples[name].append(_time_once(fns[name], inner))
    if per_round is not None:
        per_round.update({n: (samples[n] if plan[n][0] else []) for n in names})
    return {n: (statistics.median(samples[n]), len(samples[n]), plan[n][1]) for n in names}


def round_ratios(num: list, den: list) -> list[float]:
    """Per-round speed ratios: num[r] / den[r] for every round both sides have.

    ``num`` is a list of per-round times, or a list of such lists (several layouts of one library):
    then the best (smallest) of them in each round is used.  A ratio > 1 means ``den`` was faster."""
    if num and isinstance(num[0], (list, tuple)):
        num = [min(ts) for ts in zip(*num)]
    return [a / b for a, b in zip(num, den) if b > 0]


def ratio_stats(ratios: list) -> dict | None:
    """The median of per-round ratios and its spread: quartiles (q1, q3), min, max and n rounds."""
    if not ratios:
        return None
    xs = sorted(ratios)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {"median": statistics.median(xs), "q1": q1, "q3": q3, "min": xs[0], "max": xs[-1], "n": len(xs)}


def ratio_cell(st: dict | None, fallback: float | None = None) -> str:
    """'1.23x [1.10-1.31]': median of per-round ratios [interquartile range]; '-' when not measured."""
    if st is None:
        return "-" if fallback is None else f"{fallback:.2f}x"
    if st["n"] < 3:
        return f"{st['median']:.2f}x (n={st['n']})"
    return f"{st['median']:.2f}x [{st['q1']:.2f}-{st['q3']:.2f}]"


# ---------------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags)
    except OSError:
        pass
    return "?"


def _git(*args) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _busy_note(cores) -> str:
    """A warning when other processes already occupy a good part of the cores."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return ""
    if cores and load1 >= 0.5 * cores:
        return (
            f"machine busy before the run (1-min load {load1:.2f} on {cores} cores): multi-thread timings "
            f"include waits for threads the OS has descheduled; compare ratios, not absolute speed"
        )
    return ""


def _openmp_runtimes() -> str:
    """Which libgomp/libiomp copies this process has mapped (two runtimes would fight over the cores)."""
    try:
        libs = {
            ln.split()[-1]
            for ln in Path("/proc/self/maps").read_text().splitlines()
            if "omp" in ln.rsplit("/", 1)[-1] and ".so" in ln
        }
        return ", ".join(sorted(libs)) or "none mapped"
    except OSError:
        return "?"


def environment(fastconv, torch, threads: int, argv) -> dict:
    from fastconv import _dispatch

    simd = _dispatch.LEVEL_NAMES.get(_dispatch.simd_level(), "?")
    config = ""
    show = getattr(fastconv, "show_config", None)
    if show is not None:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            show()
        config = buf.getvalue().strip()
    commit = _git("rev-parse", "--short", "HEAD") or "?"
    if _git("status", "--porcelain"):
        commit += " (working tree has uncommitted changes)"
    from fastconv import ops

    ref_backed = sorted(
        {
            name
            for name in (
                "depthwise_conv2d",
                "depthwise_conv2d_grad",
                "max_pool2d",
                "max_pool2d_grad",
                "avg_pool2d",
                "avg_pool2d_grad",
                "conv2d",
                "conv2d_grad",
                "conv_transpose2d",
                "conv_transpose2d_grad",
            )
            if getattr(getattr(ops, name), "__module__", "") == "fastconv.reference"
        }
    )
    return {
        "cpu": f"{_cpu_model()} ({_cpu_flags()})",
        "cores": os.cpu_count(),
        "simd": simd,
        "config": config,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else "not importable",
        "threads": threads,
        "command": "python " + " ".join(shlex.quote(a) for a in ["bench/bench_ops.py", *argv]),
        "load_start": _load(),
        "ref_backed": ref_backed,
    }


# ---------------------------------------------------------------------------------------------------
# One shape
# ---------------------------------------------------------------------------------------------------
def run_case(case, ops, ref, torch, args, target_s, ort_threads=None) -> tuple[list[dict], list[str]]:
    """Time one case forward and forward+backward; returns table rows and warnings.

    ort_threads: run ONNX Runtime's forward beside the others with that many threads (None: not)."""
    p = Problem(case)
    warnings = []
    ort_fn, ort_note = None, "n/a"
    if ort_threads and torch is not None:
        try:
            ort_fn = ort_forward(p, ort_threads)
        except Exception as exc:  # noqa: BLE001  (an export ONNX refuses must not end the benchmark)
            ort_note = "export failed"
            warnings.append(f"{case.name}: ONNX Runtime not measured: {type(exc).__name__}: {str(exc)[:120]}")
    other = "torch" if torch is not None else ref
    try:
        warnings += [
            f"{case.name}: fastconv vs {'torch' if torch else 'reference'}: {w}"
            for w in check_against(p, ops, other)
        ]
    except Exception as exc:  # noqa: BLE001  (a broken op must not end the benchmark)
        warnings.append(f"{case.name}: result check failed to run: {exc!r}")
    rows = []
    ref_fwd_s = None
    for mode in ("fwd", "fwdbwd"):
        fns = {"fastconv": p.np_forward(ops) if mode == "fwd" else p.np_fwdbwd(ops)}
        if torch is not None:
            for fmt in ("nchw", "cl"):
                fns[f"torch-{fmt}"] = p.torch_forward(fmt) if mode == "fwd" else p.torch_fwdbwd(fmt)
        ref_note = ""
        if mode == "fwdbwd" and ref_fwd_s is not None and ref_fwd_s > REF_SLOW_S:
            ref_note = f"skipped (forward alone {ref_fwd_s:.1f} s)"
        else:
            fns["ref"] = p.np_forward(ref) if mode == "fwd" else p.np_fwdbwd(ref)
        if mode == "fwd" and ort_fn is not None:
            fns["ort"] = ort_fn
        per = {}
        res = measure(fns, target_s, args.repeat, slow_ok={"ref"}, per_round=per)
        fc_rounds = per["fastconv"]
        row = {"case": case, "mode": mode, "fc": res["fastconv"][0], "fc_n": res["fastconv"][1]}
        row["ort_note"] = ort_note if mode == "fwd" else "-"
        if "ort" in res:
            row["ort"] = res["ort"][0]
            row["ort_stats"] = ratio_stats(round_ratios(per["ort"], fc_rounds))
        if torch is not None:
            fmt = min(("nchw", "cl"), key=lambda f: res[f"torch-{f}"][0])
            row.update(
                torch=res[f"torch-{fmt}"][0],
                torch_fmt="CL" if fmt == "cl" else "NCHW",
                torch_other=res[f"torch-{'nchw' if fmt == 'cl' else 'cl'}"][0],
                torch_stats=ratio_stats(round_ratios([per["torch-nchw"], per["torch-cl"]], fc_rounds)),
            )
            row["torch_ratio"] = row["torch_stats"]["median"] if row["torch_stats"] else None
        if "ref" in res:
            row["ref"], row["ref_n"] = res["ref"][0], res["ref"][1]
            row["ref_stats"] = ratio_stats(round_ratios(per["ref"], fc_rounds))
            if row["ref_stats"]:
                row["ref_ratio"] = row["ref_stats"]["median"]
            if mode == "fwd":
                ref_fwd_s = res["ref"][0]
        row["ref_note"] = ref_note
        if case.family in ("maxpool", "avgpool"):
            row["rate"] = f"{case.bytes_moved(mode == 'fwdbwd') / row['fc'] / 1e9:.1f} GB/s"
        else:
            row["gflops"] = case.flops * (3 if mode == "fwdbwd" else 1) / row["fc"] / 1e9
            row["rate"] = f"{row['gflops']:.1f}"
        rows.append(row)
    return rows, warnings


def run_scaling(ops, torch, threads, n_all, args, target_s) -> list[dict]:
    """The large conv on 1 thread vs `n_all` (all cores), fastconv (interleaved) and PyTorch.

    Restores `threads` (the run's thread count) afterwards."""
    from fastconv import _dispatch

    p = Problem(SCALING_CASE)
    out = []
    for mode in ("fwd", "fwdbwd"):
        base = p.np_forward(ops) if mode == "fwd" else p.np_fwdbwd(ops)

        def on(n, fn=base):
            def run():
                _dispatch.set_num_threads(n)
                return fn()

            return run

        res = measure({"fc1": on(1), "fcN": on(n_all)}, target_s, args.repeat)
        _dispatch.set_num_threads(threads)
        row = {"mode": mode, "n": n_all, "fc1": res["fc1"][0], "fcN": res["fcN"][0]}
        if torch is not None:  # torch.set_num_threads is not free: measure each count in its own block
            tf = {}
            for n in (1, n_all):
                torch.set_num_threads(n)
                fns = {
                    fmt: (p.torch_forward(fmt) if mode == "fwd" else p.torch_fwdbwd(fmt))
                    for fmt in ("nchw", "cl")
                }
                r = measure(fns, target_s, args.repeat)
                tf[n] = min(v[0] for v in r.values())
            torch.set_num_threads(threads)
            row.update(t1=tf[1], tN=tf[n_all])
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------------
# Tables and summary
# ---------------------------------------------------------------------------------------------------
HEADER = [
    "op",
    "shape (N x H x W x C -> out, kernel, padding)",
    "pass",
    "fastconv ms",
    "GFLOP/s",
    "% peak",
    "torch ms (fmt)",
    "torch/fc [IQR]",
    "ort ms",
    "ort/fc [IQR]",
    "numpy-ref ms",
    "ref/fc",
]


def _ms(s) -> str:
    return (
        "-"
        if s is None
        else (f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:.0f}")
    )


def table_rows(rows, ref_backed_ops: set, peak_gflops: float | None = None) -> list[list[str]]:
    """Table cells; ratios are medians of per-round ratios [interquartile range] (> 1: fastconv faster)."""
    out = []
    for r in rows:
        c = r["case"]
        name = c.name + (" *" if _is_ref_backed(c, ref_backed_ops) else "")
        t = r.get("torch")
        torch_cell = "-" if t is None else f"{_ms(t)} ({r['torch_fmt']})"
        ref = r.get("ref")
        ref_cell = r["ref_note"] or (
            "-" if ref is None else _ms(ref) + (f" (n={r['ref_n']})" if r["ref_n"] < 3 else "")
        )
        out.append(
            [
                name,
                c.label(),
                "fwd" if r["mode"] == "fwd" else "fwd+bwd",
                _ms(r["fc"]),
                r["rate"],
                "-" if not (peak_gflops and r.get("gflops")) else f"{100 * r['gflops'] / peak_gflops:.0f}%",
                torch_cell,
                "-" if t is None else ratio_cell(r.get("torch_stats"), t / r["fc"]),
                _ms(r["ort"]) if r.get("ort") is not None else r.get("ort_note", "n/a"),
                ratio_cell(r.get("ort_stats")) if r.get("ort") is not None else "-",
                ref_cell,
                "-" if ref is None else f"{r.get('ref_ratio', ref / r['fc']):.1f}x",
            ]
        )
    return out


def _is_ref_backed(case, ref_backed_ops: set) -> bool:
    names = {
        "conv": "conv2d",
        "depthwise": "depthwise_conv2d",
        "transposed": "conv_transpose2d",
        "maxpool": "max_pool2d",
        "avgpool": "avg_pool2d",
    }
    base = names[case.family]
    return base in ref_backed_ops or base + "_grad" in ref_backed_ops


def text_table(header, body) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    num = [i >= 3 for i in range(len(header))]
    fmt = lambda row: "  ".join(
        str(v).rjust(w) if n else str(v).ljust(w) for v, w, n in zip(row, widths, num)
    )
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def md_table(header, body) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def scaling_lines(scal) -> list[str]:
    out = []
    for r in scal:
        s = (
            f"{SCALING_CASE.name} {'fwd' if r['mode'] == 'fwd' else 'fwd+bwd'}: fastconv 1 thread {_ms(r['fc1'])} ms, "
            f"{r['n']} threads {_ms(r['fcN'])} ms, speed-up {r['fc1'] / r['fcN']:.2f}x"
        )
        if "t1" in r:
            s += f"; PyTorch {_ms(r['t1'])} -> {_ms(r['tN'])} ms ({r['t1'] / r['tN']:.2f}x)"
        out.append(s)
    return out


def summary(rows, scal, train, has_torch, threads, ref_backed_ops) -> list[str]:
    lines = []
    for rid, text, kinds, modes, impl, minimum in RULES:
        sel = [r for r in rows if kinds(r["case"]) and r["mode"] in modes]
        if impl == "torch" and not has_torch:
            lines.append(f"n/a      {text}: PyTorch not importable")
            continue
        if not sel:
            lines.append(f"n/a      {text}: no matching shapes run")
            continue
        measured = [
            (r.get(impl + "_ratio") or r[impl] / r["fc"], r) for r in sel if r.get(impl) is not None
        ]
        missing = [r for r in sel if r.get(impl) is None]
        if not measured:
            lines.append(f"n/a      {text}: not measured")
            continue
        worst, wr = min(measured, key=lambda t: t[0])
        fails = [
            f"{r['case'].name} {'fwd' if r['mode'] == 'fwd' else 'fwd+bwd'} {v:.2f}x"
            for v, r in measured
            if v < minimum
        ]
        status = "met    " if not fails else "NOT MET"
        s = (
            f"{status}  {text}: worst {worst:.2f}x ({wr['case'].name} "
            f"{'fwd' if wr['mode'] == 'fwd' else 'fwd+bwd'})"
        )
        if fails:
            s += f"; below {minimum:g}x: " + ", ".join(fails)
        if missing:
            s += f"; not measured: {len(missing)} row(s)"
        lines.append(s)
    for r in scal:
        if r["mode"] == "fwdbwd":
            sp = r["fc1"] / r["fcN"]
            ok = "n/a    " if r["n"] == 1 else "met    " if sp >= SCALING_MIN else "NOT MET"
            lines.append(
                f"{ok}  {r['n']} threads >= {SCALING_MIN}x faster than 1 for a large conv "
                f"({SCALING_CASE.name} fwd+bwd): {sp:.2f}x" + (" (1 core)" if r["n"] == 1 else "")
            )
    if train and train.get("ratio") is not None:
        ok = "met    " if train["ratio"] >= TRAIN_RATIO else "NOT MET"
        lines.append(
            f"{ok}  Fashion-MNIST CNN training >= {TRAIN_RATIO}x PyTorch: {train['ratio']:.2f}x"
        )
    if ref_backed_ops:
        lines.append(
            "note     rows marked * run fastconv.reference (NumPy), not compiled kernels: "
            + ", ".join(sorted(ref_backed_ops))
        )
    return lines


def verdict(summ) -> str:
    """One sentence a reader can act on: how many speed targets this run met, and which it did not."""
    met = sum(line.startswith("met") for line in summ)
    missed = [line.split("  ", 1)[1].split(":")[0].strip() for line in summ if line.startswith("NOT MET")]
    checked = met + len(missed)
    if not checked:
        return "No speed target could be checked in this run (see the n/a lines above)."
    text = f"{met} of {checked} speed targets met in this run"
    if missed:
        text += "; not met: " + "; ".join(missed)
    return text + ". Timings on a busy or shared machine vary; nothing here is asserted."


def write_markdown(path: Path, env, body, scal_lines, summ, warnings, train_lines, threads) -> None:
    ref_note = (
        "\n**Rows marked \\*: `fastconv.ops` still exports the NumPy reference for "
        + ", ".join(f"`{n}`" for n in env["ref_backed"])
        + " (compiled kernels not wired in).**\n"
        if env["ref_backed"]
        else ""
    )
    text = f"""# fastconv benchmark results

Written by `bench/bench_ops.py`: fastconv vs the NumPy reference (`fastconv.reference`) and PyTorch on the CPU,
interleaved round by round in one process after a warm-up; times are median samples, ratios the median of
per-round ratios [interquartile range].

| | |
|---|---|
| machine | {env["cpu"]}, {env["cores"]} cores |
| SIMD path | {env["simd"]} |
| float32 FMA peak (measured) | {env.get("peak", "not measured")} |
| ONNX Runtime | {env.get("ort", "not measured")} |
| date | {env["date"]} |
| commit | {env["commit"]} |
| Python / NumPy / PyTorch | {env["python"]} / {env["numpy"]} / {env["torch"]} |
| threads | {threads} (fastconv `set_num_threads`, `torch.set_num_threads`, BLAS of the reference) |
| load average (1/5/15 min) | start {env["load_start"]}, end {env["load_end"]} |
| OpenMP runtimes mapped | {env["openmp"]} |
| OPENBLAS_THREAD_TIMEOUT | {os.environ.get("OPENBLAS_THREAD_TIMEOUT", "(unset)")} (idle BLAS threads of the reference sleep instead of spinning) |
| command | `{env["command"]}` |

```
{env["config"] or "(fastconv.show_config not available)"}
```
{ref_note}{("**Warning: " + env["busy"] + ".**" + chr(10)) if env.get("busy") else ""}
GFLOP/s = 2·N·OH·OW·K·KH·KW·C/groups per forward (x3 for fwd+bwd) at fastconv's time; pooling shows GB/s
(float32 bytes of x and y, plus dy, dx and the argmax for backward); % peak = GFLOP/s / the FMA peak above.
torch/fc, ort/fc and ref/fc > 1 mean fastconv is faster: each is the median over rounds of (the other's
sample / fastconv's sample in the same round), with the interquartile range of those per-round ratios. PyTorch: better of NCHW and channels_last (CL), forward under `no_grad`, fwd+bwd by autograd with x and
w requiring grad. fastconv fwd+bwd = op + op_grad (max pooling passes the forward's argmax to the grad op). NumPy arrays are allocated inside `fastconv.reuse_buffers()` (freed
blocks serve the next call, as in fit / predict); PyTorch's tensors use its own allocator.
Padding is symmetric (PyTorch style); "(same)"/"(valid)" give the Keras reading.

{md_table(HEADER, body)}

## Thread scaling

{chr(10).join("- " + s for s in scal_lines) or "- not run"}

## End-to-end training

{chr(10).join("- " + s for s in train_lines) or "- not run (use --train)"}

## Speed targets (one run; met or not, nothing asserted)

```
{chr(10).join(summ)}
```

{verdict(summ)}
"""
    if warnings:
        text += "\n## Warnings\n\n" + "\n".join(f"- {w}" for w in warnings) + "\n"
    path.write_text(text)


# ---------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0]
        + " Prints a table of times (fastconv, the NumPy reference, PyTorch when installed), the "
        "thread scaling of a large convolution, and which speed targets this run met; writes the same "
        "to bench/RESULTS.md unless --no-write. Every measurement takes about 0.5 s per implementation "
        "(--quick: 0.15 s). Nothing is asserted: a target not met is reported, not an error.",
        epilog="Speed targets: "
        + "; ".join(text for _, text, *_ in RULES)
        + f"; {SCALING_MIN}x from 1 thread to all for a large conv's forward+backward; with --train, Fashion-MNIST CNN "
        f"training at least {TRAIN_RATIO}x PyTorch's speed.",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="threads for every library (default: all cores)"
    )
    ap.add_argument("--repeat", type=int, default=None, help="fixed number of timed samples per measurement")
    ap.add_argument("--quick", action="store_true", help="~0.15 s per measurement instead of ~0.5 s")
    ap.add_argument(
        "--only",
        default=None,
        metavar="SUBSTR",
        help="only shapes whose name or kind contains SUBSTR ('scaling' for the scaling line)",
    )
    ap.add_argument("--train", action="store_true", help="also time end-to-end Fashion-MNIST CNN training")
    ap.add_argument("--train-images", type=int, default=4096, help="images per training epoch (--train)")
    ap.add_argument(
        "--out", default=str(HERE / "RESULTS.md"), help="markdown output (default bench/RESULTS.md)"
    )
    ap.add_argument("--no-write", action="store_true", help="print only, do not write --out")
    args = ap.parse_args(argv)

    import fastconv
    import fastconv.reference as ref
    from fastconv import _dispatch, ops

    try:
        import torch
    except ImportError:
        torch = None
    threads = args.threads or _dispatch.get_num_threads()
    _dispatch.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    target_s = 0.15 if args.quick else 0.5
    env = environment(fastconv, torch, threads, argv)
    env["openmp"] = _openmp_runtimes()
    ref_backed = set(env["ref_backed"])
    from fma_peak import peak as fma_peak

    pk = fma_peak(threads)
    peak_gflops = pk["gflops"].get(threads) or max(pk["gflops"].values())
    env["peak"] = (
        f"{peak_gflops:.0f} GFLOP/s on {threads} thread(s) ("
        + ", ".join(f"{n} thread(s) {g:.0f}" for n, g in sorted(pk["gflops"].items()))
        + f"; {pk['method']})"
    )
    ort_version = ort_available() if torch is not None else None
    env["ort"] = (
        f"onnxruntime {ort_version}, forward only, intra_op_num_threads={threads}"
        if ort_version
        else "not measured (onnxruntime / onnx not importable, or no PyTorch to export from)"
    )

    print(
        f"fastconv benchmark: {env['cpu']}, {env['cores']} cores, SIMD {env['simd']}, {threads} threads, "
        f"torch {env['torch']}, commit {env['commit']}, load {env['load_start']}"
    )
    busy = _busy_note(env["cores"])
    print(f"FMA peak (float32, measured now): {env['peak']}")
    print(f"ONNX Runtime: {env['ort']}")
    if busy:
        print("WARNING: " + busy)
    env["busy"] = busy
    if ref_backed:
        print(
            "NOTE: fastconv.ops still exports the NumPy reference for: "
            + ", ".join(sorted(ref_backed))
            + "  (rows marked *)"
        )

    sel = args.only.lower() if args.only else None
    cases = [c for c in CASES if sel is None or sel in c.name.lower() or sel in c.kind]
    rows, warnings = [], []
    t_start = time.perf_counter()
    # NumPy arrays (fastconv's outputs, and the reference's) come from fastconv's buffer cache, as
    # inside fit / predict: a freed output's pages serve the next call instead of being returned to
    # the system and faulted in again (PyTorch's tensors use its own allocator, untouched)
    reuse = fastconv.reuse_buffers()
    reuse.__enter__()
    for case in cases:
        print(f"  {case.name:26s} {case.label()}", end="", flush=True)
        t0 = time.perf_counter()
        r, w = run_case(case, ops, ref, torch, args, target_s, threads if ort_version else None)
        rows += r
        warnings += w
        print(
            f"  [{time.perf_counter() - t0:.1f} s]" + ("  WARNING: results differ" if w else ""), flush=True
        )
        for msg in w:
            print(f"    WARNING {msg}")

    scal = []
    if sel is None or sel == "scaling" or sel in SCALING_CASE.name.lower():
        scal = run_scaling(ops, torch, threads, max(threads, os.cpu_count() or 1), args, target_s)
    train, train_lines = None, []
    if args.train:
        from bench_train import run_training

        train, train_lines = run_training(fastconv, torch, threads, args)
    reuse.__exit__(None, None, None)

    env["load_end"] = _load()
    body = table_rows(rows, ref_backed, peak_gflops)
    print()
    print(text_table(HEADER, body))
    scal_lines = scaling_lines(scal)
    if scal_lines:
        print("\nThread scaling:\n  " + "\n  ".join(scal_lines))
    if train_lines:
        print("\nEnd-to-end training:\n  " + "\n  ".join(train_lines))
    summ = summary(rows, scal, train, torch is not None, threads, ref_backed)
    print("\nSpeed targets (this run; nothing asserted):\n  " + "\n  ".join(summ))
    print("\n" + verdict(summ))
    if warnings:
        print(f"\n{len(warnings)} result warning(s) (see above)")
    print(
        f"\nload average start {env['load_start']}, end {env['load_end']}; "
        f"{time.perf_counter() - t_start:.0f} s"
    )
    if not args.no_write:
        out = Path(args.out)
        write_markdown(out, env, body, scal_lines, summ, warnings, train_lines, threads)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
