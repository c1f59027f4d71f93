"""Issue 12 item 3: compiled element-wise kernels, fused epilogues, folded BatchNorm - what they buy.

Two measurements, both printed with the machine's CPU model and thread count:

1. Kernels (this tree only): selu forward + backward and softmax forward + backward on a
   feature-map-sized float32 array, the compiled kernels (fastconv.ops.elementwise) against the
   NumPy code fastconv.activations ran before (copied below), GB/s counted as the bytes each pass
   must move (read x, write y; read dy and y, write dx), interleaved rounds, median per-round ratio.
2. Networks, one tree against another (default: /work/main, i.e. the build before this change,
   against this tree): the Fashion-MNIST selu CNN (fastconv.models.fashion_cnn) training img/s
   (batch 32, SGD, model.fit) and predict img/s (batch 256). Each round runs one worker process
   per tree, alternating which goes first; the ratio is taken per round and the median reported
   with its spread. Workers of the other tree run with PYTHONDONTWRITEBYTECODE=1 (nothing is
   written into it).

    python bench/bench_elementwise.py [--base /work/main] [--rounds 5] [--kernels-only]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


# ---- the NumPy code activations.py ran before the compiled kernels (for the kernel comparison) ----
_SA, _SS = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def np_selu(x):
    neg = np.minimum(x, 0)
    np.exp(neg, out=neg)
    neg -= 1
    neg *= _SS * _SA
    pos = np.maximum(x, 0)
    pos *= _SS
    pos += neg
    return pos


def np_selu_grad(dy, y):
    g = np.minimum(y, 0)
    g += _SS * _SA
    g += np.multiply(y > 0, _SS - _SS * _SA, dtype=g.dtype)
    g *= dy
    return g


def np_softmax(x):
    z = np.subtract(x, x.max(axis=-1, keepdims=True))
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def np_softmax_grad(dy, y):
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def _best(fn, reps):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


def kernels(rounds):
    from fastconv.ops import elementwise as ew

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 28, 28, 32)).astype(np.float32)  # the selu CNN's first feature map
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = ew.activation(x, "selu")
    logits = rng.standard_normal((4096, 10)).astype(np.float32) * 3
    dl = rng.standard_normal(logits.shape).astype(np.float32)
    p = ew.softmax(logits)
    cases = {
        "selu forward": (lambda: ew.activation(x, "selu"), lambda: np_selu(x), 2 * x.nbytes),
        "selu backward": (lambda: ew.activation_grad(dy, y, "selu"), lambda: np_selu_grad(dy, y), 3 * x.nbytes),
        "softmax forward (4096 x 10)": (lambda: ew.softmax(logits), lambda: np_softmax(logits), 2 * logits.nbytes),
        "softmax backward (4096 x 10)": (lambda: ew.softmax_grad(dl, p), lambda: np_softmax_grad(dl, p),
                                         3 * logits.nbytes),
    }
    print(f"kernels: float32, {x.size:,} elements (softmax {logits.shape}), {rounds} interleaved rounds, "
          "best of 5 per round")
    for name, (ours, theirs, nbytes) in cases.items():
        ratios, gb_ours, gb_np = [], [], []
        for _ in range(rounds):
            to, tn = _best(ours, 5), _best(theirs, 5)
            ratios.append(tn / to)
            gb_ours.append(nbytes / to / 1e9)
            gb_np.append(nbytes / tn / 1e9)
        print(f"  {name:30s} compiled {statistics.median(gb_ours):6.2f} GB/s   NumPy {statistics.median(gb_np):6.2f} GB/s"
              f"   speed-up median {statistics.median(ratios):5.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})")


def worker(steps, predict_n):
    """One round in this process's tree: training img/s and predict img/s of fashion_cnn."""
    from fastconv.models import fashion_cnn

    rng = np.random.default_rng(0)
    model = fashion_cnn()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    n = 32 * steps
    x = rng.standard_normal((n, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, n)
    model.fit(x[:96], y[:96], batch_size=32, epochs=1, verbose=0)  # warm-up
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    train = n / (time.perf_counter() - t0)
    xp = rng.standard_normal((predict_n, 28, 28, 1)).astype(np.float32)
    model.predict(xp[:256], batch_size=256, verbose=0)
    t0 = time.perf_counter()
    model.predict(xp, batch_size=256, verbose=0)
    pred = predict_n / (time.perf_counter() - t0)
    print(json.dumps({"train": train, "predict": pred}))


def _run(tree, steps, predict_n, own):
    env = dict(os.environ, PYTHONPATH=tree)
    if not own:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", str(steps), str(predict_n)],
                         env=env, cwd="/", capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def networks(base, rounds, steps, predict_n):
    print(f"fashion_cnn (selu CNN, 435,306 params): training batch 32 SGD ({steps} steps per round), predict "
          f"batch 256 ({predict_n} images); base {base} vs this tree {HERE}; {rounds} rounds, order alternating")
    res = {"train": [], "predict": []}
    raw = []
    for r in range(rounds):
        order = [(base, False), (HERE, True)] if r % 2 == 0 else [(HERE, True), (base, False)]
        got = {}
        for tree, own in order:
            got[own] = _run(tree, steps, predict_n, own)
        raw.append(got)
        for k in res:
            res[k].append(got[True][k] / got[False][k])
        print(f"  round {r + 1}: train {got[False]['train']:7.1f} -> {got[True]['train']:7.1f} img/s, "
              f"predict {got[False]['predict']:7.1f} -> {got[True]['predict']:7.1f} img/s")
    for k, v in res.items():
        base_med = statistics.median(g[False][k] for g in raw)
        ours_med = statistics.median(g[True][k] for g in raw)
        print(f"  {k:8s} median {base_med:7.1f} -> {ours_med:7.1f} img/s; per-round ratio median "
              f"{statistics.median(v):.2f}x (range {min(v):.2f}-{max(v):.2f})")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="/work/main", help="the tree to compare against (its built fastconv)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30, help="training steps per round")
    ap.add_argument("--predict", type=int, default=2048, help="images predicted per round")
    ap.add_argument("--kernels-only", action="store_true")
    args = ap.parse_args()
    from fastconv import _dispatch

    print(f"{_cpu_model()}, {_dispatch.get_num_threads()} threads, SIMD {_dispatch.LEVEL_NAMES[_dispatch.simd_level()]}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    kernels(args.rounds)
    if not args.kernels_only:
        networks(args.base, args.rounds, args.steps, args.predict)


if __name__ == "__main__":
    main()
