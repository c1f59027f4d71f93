#!/usr/bin/env python
"""Data-parallel training on one machine: 1 process x 2 threads against 2 MPI ranks x 1 thread.

    PYTHONPATH=. python bench/bench_distributed.py [--rounds R] [--steps N] [--models lenet5,resnet_small]
    PYTHONPATH=. python bench/bench_distributed.py --per-sample fashion-cnn   # docs/distributed.md's input

Method (the machine is shared and noisy):
* a worker (``--worker``) trains ``--steps`` optimizer steps of the zoo model on random MNIST-shaped
  data (global batch 64), after 3 warm-up steps, with ``fit(verbose=0)``; it reports images/s and,
  on 2 ranks, the share of the step time spent in the gradient allreduce (which includes waiting for
  the slower rank: load imbalance shows up there);
* one round = one 1-process run and one ``mpirun -np 2`` run of the same model, in an order that
  alternates between rounds; the speed-up is taken per round (2-rank img/s / 1-process img/s) and
  the median of the per-round ratios is reported with its range;
* both sides use the two cores: 1 process with 2 kernel threads, or 2 ranks with 1 thread each.
Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCH = 64


def worker(model_name, steps):
    import numpy as np

    import fastconv
    from fastconv import distributed
    from fastconv.engine import replica

    distributed.init()
    fastconv.initializers.set_seed(0)
    model = fastconv.models.MODELS[model_name]()
    model.compile(fastconv.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((BATCH * steps, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, BATCH * steps)
    model.fit(x[: 3 * BATCH], y[: 3 * BATCH], batch_size=BATCH, verbose=0)  # warm-up
    rep = replica.replica_for(model)
    if rep.active:
        rep.allreduce_seconds = 0.0
    distributed.barrier()
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, verbose=0, shuffle=False)
    elapsed = time.perf_counter() - t0
    share = rep.allreduce_seconds / elapsed if rep.active else 0.0
    shares = distributed.allgather(share)
    if distributed.is_root():
        n_params = model.count_params()
        print(json.dumps({"img_s": BATCH * steps / elapsed, "allreduce_share": max(shares),
                          "params": n_params, "threads": fastconv.get_num_threads(),
                          "ranks": distributed.size()}))


def per_sample(model_name, steps):
    import numpy as np

    import fastconv

    fastconv.initializers.set_seed(0)
    model = fastconv.models.MODELS[model_name]()
    model.compile(fastconv.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    shape = model.input_shape[1:]
    rng = np.random.default_rng(0)
    x = rng.random((BATCH * steps, *shape), dtype=np.float32)
    y = rng.integers(0, 10, BATCH * steps)
    model.fit(x[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, verbose=0)  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=BATCH, verbose=0, shuffle=False)
        times.append((time.perf_counter() - t0) / (BATCH * steps))
    n = sum(w.size for w in model.trainable_weights)
    print(f"{model_name}: {n:,} trainable params ({4 * n:,} gradient bytes in float32); training step "
          f"(forward + backward + SGD update) at batch {BATCH}, {fastconv.get_num_threads()} threads: "
          f"{1e3 * statistics.median(times):.3f} ms/sample (median of 5 runs of {steps} steps; "
          f"range {1e3 * min(times):.3f}-{1e3 * max(times):.3f})")


def _run(cmd, threads):
    env = dict(os.environ, PYTHONPATH=str(ROOT), FASTCONV_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="lenet5,resnet_small")
    ap.add_argument("--per-sample", default=None, metavar="MODEL",
                    help="one process, all cores: compute time per sample of a training step (median of 5)")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    if args.per_sample:
        per_sample(args.per_sample, args.steps or 10)
        return
    mpirun = str(pathlib.Path(sys.executable).parent / "mpirun")
    me = str(pathlib.Path(__file__).resolve())
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs (shared with other jobs while measured)")
    print("| model | params | 1 proc x 2 threads img/s | 2 ranks x 1 thread img/s | speed-up (median, range) "
          "| allreduce share of step time (2 ranks) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        steps = args.steps or (40 if name == "lenet5" else 8)
        one_cmd = [sys.executable, me, "--worker", name, "--steps", str(steps)]
        two_cmd = [mpirun, "-np", "2", *one_cmd]
        ones, twos, ratios = [], [], []
        for r in range(args.rounds):
            if r % 2 == 0:
                a = _run(one_cmd, 2)
                b = _run(two_cmd, 1)
            else:
                b = _run(two_cmd, 1)
                a = _run(one_cmd, 2)
            ones.append(a)
            twos.append(b)
            ratios.append(b["img_s"] / a["img_s"])
        med = statistics.median
        print(f"| {name} | {ones[0]['params']:,} | {med(o['img_s'] for o in ones):.0f} | "
              f"{med(t['img_s'] for t in twos):.0f} | {med(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{100 * med(t['allreduce_share'] for t in twos):.1f}% |", flush=True)


if __name__ == "__main__":
    main()
