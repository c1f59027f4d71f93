"""Time per training step spent outside the compiled kernels (Python, NumPy glue), on one thread.

Every function of the compiled modules (``fastconv._kernels``: conv, winograd, depthwise, pool, norm,
elementwise, optim) is wrapped by a timer; a ``model.fit`` of ``--steps`` steps of the network's
recipe (``fastconv.models.TRAINING``) is timed with ``time.thread_time`` (CPU time of this thread:
with one thread every kernel runs on it, and other processes on a loaded host do not count). Per
step: the total, the time inside the kernels and the rest ("outside"), minus the wrappers' own cost
(calibrated on a no-op builtin, times the number of kernel calls). NumPy's own loops count as
outside. Compare two trees by running this script from each, interleaved, several times.

Usage::

    PYTHONPATH=. python bench/step_overhead.py --models lenet5,densenet_small,resnet_small --steps 6
"""

from __future__ import annotations

import argparse
import functools
import importlib
import statistics
import time

import numpy as np

MODULES = ("conv", "winograd", "depthwise", "pool", "norm", "elementwise", "optim")


class _Timer:
    def __init__(self):
        self.seconds = 0.0
        self.calls = 0


def _wrap(fn, timer):
    clock = time.thread_time

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            timer.seconds += clock() - t0
            timer.calls += 1

    return timed


_TIMER = _Timer()


def instrument(timer=_TIMER):
    """Wrap every kernel function once (later calls do nothing)."""
    if getattr(instrument, "done", False):
        return
    instrument.done = True
    for name in MODULES:
        try:
            mod = importlib.import_module(f"fastconv._kernels.{name}")
        except ImportError:
            continue
        for attr in dir(mod):
            fn = getattr(mod, attr)
            if type(fn).__name__ in ("cython_function_or_method", "fused_cython_function", "builtin_function_or_method") and not attr.startswith("_"):
                setattr(mod, attr, _wrap(fn, timer))


def wrapper_cost(n=20000):
    """Seconds a wrapper adds to one call (outside the timed region), measured on ``abs``."""
    t = _Timer()
    f = _wrap(abs, t)
    clock = time.thread_time
    best = []
    for _ in range(5):
        t0 = clock()
        for _ in range(n):
            f(1)
        wrapped = clock() - t0
        t0 = clock()
        for _ in range(n):
            abs(1)
        plain = clock() - t0
        best.append((wrapped - plain) / n)
    return max(0.0, statistics.median(best))


def measure(name, steps, rounds):
    from fastconv import _dispatch, initializers, models, optimizers

    _dispatch.set_num_threads(1)
    recipe = dict(models.TRAINING[name])
    batch = recipe["batch_size"]
    shape = (32, 32, 3) if name.startswith("cifar") else (28, 28, 1)
    segment = recipe.get("task") == "segment"
    classes = 2 if segment else 10
    initializers.set_seed(0)
    model = models.MODELS[name](input_shape=shape, classes=classes)
    opt = (optimizers.SGD(learning_rate=recipe["lr"], momentum=recipe.get("momentum", 0.0))
           if recipe["optimizer"] == "sgd" else optimizers.Adam(learning_rate=recipe["lr"]))
    model.compile(opt, "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    n = steps * batch
    x = rng.random((n, *shape), dtype=np.float32)
    y = (rng.random((n, *shape[:2])) > 0.5).astype(np.int64) if segment else rng.integers(0, classes, n)
    model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)  # warm up
    timer = _TIMER
    instrument()
    rows = []
    cost = wrapper_cost()
    for _ in range(rounds):
        timer.seconds, timer.calls = 0.0, 0
        t0 = time.thread_time()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        total = time.thread_time() - t0
        inside = timer.seconds
        outside = total - inside - timer.calls * cost
        rows.append((total / steps, inside / steps, outside / steps, timer.calls / steps))
    return [statistics.median(c) for c in zip(*rows)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="lenet5,densenet_small,resnet_small")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        total, inside, outside, calls = measure(name, args.steps, args.rounds)
        print(f"{name:16s} step {total * 1e3:8.2f} ms  kernels {inside * 1e3:8.2f} ms  "
              f"outside {outside * 1e3:7.2f} ms  ({calls:.0f} kernel calls/step)", flush=True)


if __name__ == "__main__":
    main()
