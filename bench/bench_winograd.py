#!/usr/bin/env python
"""fastconv's Winograd 3x3 convs vs its direct kernel vs PyTorch (CPU), forward and forward+backward.

    PYTHONPATH=. python bench/bench_winograd.py [--threads N] [--quick] [--only SUBSTR]

The method of bench_ops.py (its `measure`: interleaved rounds in rotating order after a warm-up, the
median of per-round ratios with the interquartile range): per shape of bench_cases.WINOGRAD_CASES,
fastconv with FASTCONV_CONV_ALGO's settings "direct", "winograd" (F(4x4) / F(2x2) by map size) and
"auto" (the rule of fastconv/ops/_plan.py conv_algo), and PyTorch in channels_last and NCHW with
torch.set_num_threads(same threads), the better layout per round.  GFLOP/s are effective (the
direct conv's FLOP count, forward+backward = 3x the forward) and shown as a share of the machine's
FMA peak measured now (bench/fma_peak.py).  Forward+backward is conv2d + conv2d_grad (y, dx, dw;
Winograd runs the forward and dx, dw stays direct).  Nothing is asserted; it prints a table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_cases import WINOGRAD_CASES, Problem
from bench_ops import measure, ratio_cell, ratio_stats, round_ratios

ALGOS = ("direct", "winograd", "auto")


def _with_algo(dispatch, algo, fn):
    def run():
        dispatch.set_conv_algo(algo)
        return fn()

    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="~0.15 s per measurement instead of ~0.5 s")
    ap.add_argument("--only", default=None, metavar="SUBSTR")
    args = ap.parse_args(argv)

    import torch
    from fma_peak import peak as fma_peak

    import fastconv
    from fastconv import _dispatch, ops

    threads = args.threads or _dispatch.get_num_threads()
    fastconv.set_num_threads(threads)
    torch.set_num_threads(threads)
    pk = fma_peak(threads)
    peak = pk["gflops"].get(threads) or max(pk["gflops"].values())
    target = 0.15 if args.quick else 0.5
    print(f"fastconv {fastconv.__version__}, torch {torch.__version__}, {threads} threads, "
          f"SIMD {_dispatch.LEVEL_NAMES[_dispatch.simd_level()]}, CPU {pk['cpu']}, FMA peak {peak:.0f} GFLOP/s")
    head = ("case", "mode", "direct ms", "wino ms", "auto ms", "torch ms", "wino speedup vs direct", "wino speedup vs torch",
            "auto speedup vs torch", "wino GFLOP/s (% peak)", "direct GFLOP/s (% peak)", "auto picks")
    rows = []
    for case in WINOGRAD_CASES:
        if args.only and args.only.lower() not in case.name.lower():
            continue
        p = Problem(case)
        for mode in ("fwd", "fwdbwd"):
            base = p.np_forward(ops) if mode == "fwd" else p.np_fwdbwd(ops)
            fns = {a: _with_algo(_dispatch, a, base) for a in ALGOS}
            for fmt in ("cl", "nchw"):
                fns[f"torch-{fmt}"] = p.torch_forward(fmt) if mode == "fwd" else p.torch_fwdbwd(fmt)
            per = {}
            res = measure(fns, target, None, per_round=per)
            _dispatch.set_conv_algo("auto")
            base()
            picked = _dispatch.last_kernel["conv2d"]
            _dispatch.set_conv_algo(None)
            torch_rounds = [per["torch-cl"], per["torch-nchw"]]
            flops = case.flops * (3 if mode == "fwdbwd" else 1)
            gw, gd = flops / res["winograd"][0] / 1e9, flops / res["direct"][0] / 1e9
            rows.append((case.name, mode, f"{res['direct'][0] * 1e3:.2f}", f"{res['winograd'][0] * 1e3:.2f}",
                         f"{res['auto'][0] * 1e3:.2f}",
                         f"{min(res['torch-cl'][0], res['torch-nchw'][0]) * 1e3:.2f}",
                         ratio_cell(ratio_stats(round_ratios(per["direct"], per["winograd"]))),
                         ratio_cell(ratio_stats(round_ratios(torch_rounds, per["winograd"]))),
                         ratio_cell(ratio_stats(round_ratios(torch_rounds, per["auto"]))),
                         f"{gw:.0f} ({100 * gw / peak:.0f} %)", f"{gd:.0f} ({100 * gd / peak:.0f} %)", picked))
            print(" | ".join(rows[-1]), flush=True)
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("\nspeedups: median of per-round time ratios [interquartile range]; > 1: fastconv (Winograd or auto) faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
