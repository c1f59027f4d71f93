"""Per-layer training time, fastconv vs its PyTorch twin, 1 thread (issue 12).

    PYTHONPATH=. python bench/layer_profile.py --models alexnet_small,densenet_small --steps 4

fastconv: each layer's ``forward``/``backward`` is wrapped (per instance) and timed with
``time.thread_time``; PyTorch: forward pre/post hooks and backward pre/post hooks on leaf modules.
Prints per-layer medians over the steps (ms per batch), fastconv layers in plan order and the
twin's leaf modules in execution order (they do not pair one to one: the twin splits padding,
activations and fused epilogues into modules of their own).
"""

import argparse
import os
import sys
import time
from collections import defaultdict

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np


def _wrap(layer, stats):
    fwd, bwd = layer.forward, layer.backward

    def forward(*a, **k):
        t = time.thread_time()
        y = fwd(*a, **k)
        stats[(layer.name, "fwd")].append(time.thread_time() - t)
        return y

    def backward(*a, **k):
        t = time.thread_time()
        dx = bwd(*a, **k)
        stats[(layer.name, "bwd")].append(time.thread_time() - t)
        return dx

    layer.forward, layer.backward = forward, backward


def profile(name, steps):
    import torch
    from bench_models import Case

    torch.set_num_threads(1)
    case = Case(name, torch, 1, steps, None)
    fc = defaultdict(list)
    for node in case.model._plan().nodes if hasattr(case.model, "_plan") else []:
        _wrap(node.layer, fc)
    if not fc:  # fall back to the model's layers
        for layer in case.model.layers:
            _wrap(layer, fc)
    t0 = time.thread_time()
    case._fc_train()
    fc_total = time.thread_time() - t0
    net = case.twins["NCHW"][0]
    th = defaultdict(list)
    start = {}
    for mname, mod in net.named_modules():
        if list(mod.children()):
            continue
        mod.register_forward_pre_hook(lambda m, i, n=mname: start.__setitem__((n, "fwd"), time.thread_time()))
        mod.register_forward_hook(
            lambda m, i, o, n=mname: th[(n, "fwd")].append(time.thread_time() - start[(n, "fwd")])
        )
        mod.register_full_backward_pre_hook(
            lambda m, g, n=mname: start.__setitem__((n, "bwd"), time.thread_time())
        )
        mod.register_full_backward_hook(
            lambda m, gi, go, n=mname: th[(n, "bwd")].append(time.thread_time() - start[(n, "bwd")])
        )
    t0 = time.thread_time()
    case._torch_train("NCHW")
    th_total = time.thread_time() - t0
    print(
        f"\n== {name}: train {steps} steps, fastconv {fc_total * 1e3:.1f} ms, PyTorch {th_total * 1e3:.1f} ms"
    )
    for title, stats in (("fastconv", fc), ("PyTorch", th)):
        print(f"-- {title} (median ms per batch)")
        names = list(dict.fromkeys(k[0] for k in stats))
        for n in names:
            f = np.median(stats[(n, "fwd")]) * 1e3 if stats[(n, "fwd")] else float("nan")
            b = np.median(stats[(n, "bwd")]) * 1e3 if stats[(n, "bwd")] else float("nan")
            print(f"   {n:32s} fwd {f:8.3f}  bwd {b:8.3f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="alexnet_small,densenet_small,segnet_small,inception_small,vgg_small")
    p.add_argument("--steps", type=int, default=4)
    a = p.parse_args(argv)
    for name in a.models.split(","):
        profile(name, a.steps)


if __name__ == "__main__":
    main()
