"""Thread scaling of the large conv (bench_cases.SCALING_CASE, conv3x3 64->64 @56, batch 8) pass by
pass, on a machine shared with other jobs.

    PYTHONPATH=. python bench/thread_scaling.py [--seconds 20] [--passes fwd,dgrad,wgrad,fwdbwd]

Each pass (the Winograd weight transform, the forward kernel, the input gradient, the weight
gradient, conv2d + conv2d_grad as bench_ops.py times them) runs on 1 and on all threads in
alternation for --seconds.  Every call is timed on the wall clock and, from /proc/self/task/*/schedstat,
by how long the process's threads waited on the run queue (another process held the core) and how
long they ran.  Printed per pass and thread count:

- all calls: median wall time, and the 1-thread / N-thread ratio of the medians;
- clean calls (no thread waited more than --rq-us on the run queue): the same, so the ratio is
  what the kernels do when they have the cores, not how busy the machine was;
- on-CPU time summed over threads (median): N threads over 1 is the extra work a split costs
  (contention for caches and memory shows here too), and the calling thread's and the busiest
  worker's shares of it (imbalance, or serial work on the calling thread).

Nothing is asserted.  Linux only (schedstat).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_cases import SCALING_CASE

import fastconv
from fastconv import _dispatch
from fastconv._kernels import winograd as _k
from fastconv.ops import _plan
from fastconv.ops import winograd as W


def _sched() -> dict[int, tuple[int, int]]:
    """thread id -> (ns on CPU, ns waiting on the run queue)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                a = f.read().split()
            out[int(tid)] = (int(a[0]), int(a[1]))
        except OSError:
            pass
    return out


def _passes(x, w, dy, isa):
    N, H, Wd, C = x.shape
    K = w.shape[3]
    vb = _k.block_size(isa, x.dtype)
    y, dx = np.empty(dy.shape, x.dtype), np.empty(x.shape, x.dtype)
    dw, db = np.empty(w.shape, x.dtype), np.empty((K,), x.dtype)
    U = W.transform_weight(w, 4, vb, False, 1, isa)
    tile = (_k.scratch_bytes(isa, x.dtype, C, K, 4, 12) - _k.scratch_bytes(isa, x.dtype, C, K, 4, 6)) // 6

    def fwd(n):
        p = _plan.wino_plan(N, H, Wd, 4, tile, n)
        return lambda: _k.wino_conv(x, U, None, y, 1, 1, 4, p.tb, False, isa, p.nchunks, p.threads, 1, 1)

    return {
        "wtrans": lambda n: (lambda: W.transform_weight(w, 4, vb, False, n, isa)),
        "fwd": fwd,
        "dgrad": lambda n: (lambda: W.run(dy, w, None, dx, (1, 1), 4, False, isa, n, flip=True)),
        "wgrad": lambda n: (lambda: W.weight_grad(x, dy, dw, db, (1, 1), 4, isa, n)),
        "fwdbwd": lambda n: (lambda: (fastconv.conv2d(x, w, padding=1), fastconv.conv2d_grad(dy, x, w, padding=1))),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="per pass, both thread counts together")
    ap.add_argument("--passes", default="wtrans,fwd,dgrad,wgrad,fwdbwd")
    ap.add_argument("--threads", type=int, default=0, help="the N of N threads (default: all cores)")
    ap.add_argument("--rq-us", type=float, default=20.0, help="run-queue wait (us) a clean call may have")
    args = ap.parse_args(argv)
    n_all = args.threads or _dispatch.get_num_threads()
    case = SCALING_CASE
    rng = np.random.default_rng(0)
    N, H, Wd, C, K = case.n, case.h, case.w, case.c, case.out
    x = rng.standard_normal((N, H, Wd, C)).astype(np.float32)
    w = (rng.standard_normal((3, 3, C, K)) * 0.1).astype(np.float32)
    dy = rng.standard_normal((N, H, Wd, K)).astype(np.float32)
    isa = _dispatch.level_for("conv2d", x.dtype)
    passes = _passes(x, w, dy, isa)
    main_tid = threading.get_native_id()
    print(f"{case.name} (batch {N}), 1 vs {n_all} threads, load {os.getloadavg()[0]:.2f} at start")
    with fastconv.reuse_buffers():
        for name in args.passes.split(","):
            fns = {n: passes[name](n) for n in (1, n_all)}
            for n in (1, n_all):
                _dispatch.set_num_threads(n)
                fns[n]()
                fns[n]()
            rec = {1: [], n_all: []}
            t_end, i = time.perf_counter() + args.seconds, 0
            while time.perf_counter() < t_end:
                n = (1, n_all)[i % 2]
                i += 1
                _dispatch.set_num_threads(n)
                s0 = _sched()
                c0 = time.thread_time()
                t0 = time.perf_counter()
                fns[n]()
                t1 = time.perf_counter()
                c1 = time.thread_time()
                s1 = _sched()
                # the workers' schedstat is current (they sleep at the end of each region); the
                # calling thread's is only updated at ticks: its CPU time from thread_time
                rq = sum(s1[t][1] - s0[t][1] for t in s1 if t in s0)
                rest = sorted((s1[t][0] - s0[t][0] for t in s1 if t in s0 and t != main_tid), reverse=True)
                rec[n].append((t1 - t0, rq / 1e9, c1 - c0, sum(rest) / 1e9, rest[0] / 1e9 if rest else 0.0))
            _dispatch.set_num_threads(n_all)
            line = [f"{name:7s}"]
            med = {}
            for n in (1, n_all):
                a = np.array(rec[n])
                clean = a[a[:, 1] <= args.rq_us * 1e-6]
                med[n] = (np.median(a[:, 0]), np.median(clean[:, 0]) if len(clean) >= 3 else np.nan,
                          np.median(a[:, 2] + a[:, 3]), np.median(a[:, 2]), np.median(a[:, 4]))
                line.append(f"{n}T all {med[n][0] * 1e3:.3f} ms clean {med[n][1] * 1e3:.3f} ms "
                            f"({len(clean)}/{len(a)})")
            m1, mn = med[1], med[n_all]
            line.append(f"speedup all {m1[0] / mn[0]:.2f}x clean {m1[1] / mn[1]:.2f}x")
            line.append(f"cpu {n_all}T/1T {mn[2] / m1[2]:.3f} (main {mn[3] * 1e3:.3f} ms, "
                        f"busiest worker {mn[4] * 1e3:.3f} ms)")
            print(" | ".join(line), flush=True)
    print(f"load {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
