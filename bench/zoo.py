"""The model zoo on the bundled MNIST accuracy per epoch, parameters, training speed.

Every network of ``fastconv.models`` is trained on the MNIST bundled with fastconv
(``fastconv.datasets.load_mnist()``: 8,000 training images; the other 2,000 validate) with the recipe
of ``fastconv.models.TRAINING`` (Adam, learning rate 1e-3, batch 64, unless a model's entry says
otherwise) for ``--epochs`` epochs (default 3). After each epoch the validation accuracy is
recorded; ``segnet_small`` learns the digit-vs-background segmentation task
(``fastconv.models.digit_masks``, pixel > 0.5) and reports mean IoU. Training speed is images per
second of the ``fit`` epochs alone (validation is timed apart, not included).

For ``resnet_small`` and ``mobilenet_small`` (``--torch-models``) the same network is built in PyTorch
from the fastconv model's graph (layer by layer: same widths, kernels, strides, groups, BatchNorm,
activations, dropout; "same" padding as PyTorch's symmetric ``padding=k // 2``, which gives the same
output sizes and FLOPs) and trained on the same images with the same batch size, optimizer,
learning rate and number of threads, in NCHW and channels_last; the better is reported next to
fastconv's images per second. The final softmax is folded into PyTorch's cross-entropy, as fastconv
folds it into its loss. The two are measured interleaved, since the machine may be shared: after
each timed fastconv epoch one PyTorch epoch per layout runs (``--torch-epochs``), and each side's
images per second is the median over its epochs (so ``--epochs 3`` gives three rounds).

Writes a markdown table to ``bench/ZOO.md`` (``--output``) after every network, so a long run that is
interrupted keeps what it measured. Usage::

    python bench/zoo.py                                    # everything, 3 epochs (about an hour on 2 cores)
    python bench/zoo.py --models resnet_small,mobilenet_small --epochs 3
    python bench/zoo.py --limit 500 --epochs 1 --output /tmp/zoo.md   # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from torch_twins import torch_twin

import fastconv
from fastconv import datasets, initializers, models, optimizers

#: The accuracy targets after at most 3 epochs (validation accuracy; segnet_small: mean IoU).
TARGETS = {"resnet_small": 0.97, "mobilenet_small": 0.95, "segnet_small": 0.85}
DEFAULT_TARGET = 0.90
TORCH_DEFAULT = ("resnet_small", "mobilenet_small")


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def load_data(limit=None):
    """``(x, y), (xv, yv)``: float32 images ``(N, 28, 28, 1)`` in [0, 1] and integer labels."""
    (x, y), (xv, yv) = datasets.load_mnist()
    if limit:
        x, y = x[:limit], y[:limit]
        n_val = min(len(xv), max(limit // 4, 200))
        xv, yv = xv[:n_val], yv[:n_val]
    prep = lambda a: np.ascontiguousarray((a.astype(np.float32) / 255.0)[..., None])
    return (prep(x), y.astype(np.int64)), (prep(xv), yv.astype(np.int64))


# ---------------------------------------------------------------------------
# fastconv runs
# ---------------------------------------------------------------------------


def _optimizer(recipe):
    if recipe["optimizer"] == "sgd":
        return optimizers.SGD(learning_rate=recipe["lr"], momentum=recipe.get("momentum", 0.9))
    return optimizers.Adam(learning_rate=recipe["lr"])


def train_fastconv(name, data, epochs, seed=0, verbose=0, batch_size=None, rival=None):
    """Train one zoo network; returns a result dict (per-epoch metric, img/s, params, ...).

    ``rival(model, recipe)``, when given, is called once the model is built and returns a function
    run after every timed epoch (the PyTorch epochs, so both sides see the same machine load).
    """
    recipe = dict(models.TRAINING[name])
    if batch_size:
        recipe["batch_size"] = int(batch_size)
    task = recipe.get("task", "classify")
    (x, y), (xv, yv) = data
    if task == "segment":
        y, yv = models.digit_masks(x), models.digit_masks(xv)
    initializers.set_seed(seed)
    model = models.MODELS[name](input_shape=x.shape[1:], classes=2 if task == "segment" else 10)
    metric = "mean_iou" if task == "segment" else "accuracy"
    metrics = ["accuracy", "mean_iou"] if task == "segment" else ["accuracy"]
    model.compile(_optimizer(recipe), "sparse_categorical_crossentropy", metrics=metrics)
    bs = recipe["batch_size"]
    # warm-up on a throwaway copy (thread pool, first-call allocations), as PyTorch gets one too
    warm = models.MODELS[name](input_shape=x.shape[1:], classes=2 if task == "segment" else 10)
    warm.compile(_optimizer(recipe), "sparse_categorical_crossentropy")
    warm.fit(x[: 2 * bs], y[: 2 * bs], batch_size=bs, epochs=1, verbose=0)
    del warm
    between = rival(model, recipe) if rival is not None else None
    opt = model.optimizer
    scores, train_times, train_acc = [], [], []
    for epoch in range(epochs):
        opt.learning_rate = recipe["lr"] * recipe.get("lr_decay", 1.0) ** epoch
        t0 = time.perf_counter()
        hist = model.fit(x, y, batch_size=bs, epochs=1, verbose=verbose, seed=seed + epoch)
        train_times.append(time.perf_counter() - t0)
        train_acc.append(hist.history["accuracy"][-1])
        res = model.evaluate(xv, yv, batch_size=bs, verbose=0, return_dict=True)
        scores.append(res[metric])
        print(
            f"  {name} epoch {epoch + 1}/{epochs}: val {metric} {res[metric]:.4f}, "
            f"{len(x) / train_times[-1]:.0f} img/s ({train_times[-1]:.1f} s)",
            flush=True,
        )
        if between is not None:
            between()
    return {
        "name": name,
        "params": model.count_params(),
        "trainable": model.count_trainable_params(),
        "metric": metric,
        "scores": scores,
        "train_acc": train_acc,
        "epoch_times": train_times,
        "ips": len(x) / statistics.median(train_times),
        "n_train": len(x),
        "n_val": len(xv),
        "recipe": recipe,
        "model": model,
    }


# ---------------------------------------------------------------------------
# The same network in PyTorch, from the fastconv graph
# ---------------------------------------------------------------------------


def _torch_epoch(torch, net, opt, xt, yt, mf, batch):
    net.train()
    lossf = torch.nn.functional.cross_entropy
    perm = torch.randperm(xt.shape[0])
    for i in range(0, xt.shape[0], batch):
        idx = perm[i : i + batch]
        xb = xt[idx].contiguous(memory_format=mf)
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(xb), yt[idx])
        loss.backward()
        opt.step()


class TorchRival:
    """The PyTorch version of a fastconv model in NCHW and channels_last, timed in rounds.

    Built (and warmed up) from the fastconv model before its timed epochs; ``round()`` runs
    ``epochs`` timed epochs per layout and is called after each fastconv epoch, so fastconv and
    PyTorch alternate on the same (shared, noisy) machine; ``result()`` takes medians per layout.
    """

    LAYOUTS = ("NCHW", "channels_last")

    def __init__(self, torch, model, recipe, data, threads, epochs=1):
        (x, y), _ = data
        self.torch, self.recipe, self.epochs, self.n = torch, recipe, epochs, len(x)
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        self.yt = torch.from_numpy(y)
        self.runs = {}
        self.params = None
        bs = recipe["batch_size"]
        for fmt in self.LAYOUTS:
            mf = torch.contiguous_format if fmt == "NCHW" else torch.channels_last
            net = torch_twin(model, torch).to(memory_format=mf)
            self.params = sum(p.numel() for p in net.parameters())
            if recipe["optimizer"] == "sgd":
                opt = torch.optim.SGD(net.parameters(), lr=recipe["lr"], momentum=recipe.get("momentum", 0.9))
            else:
                opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"], eps=1e-7)
            _torch_epoch(torch, net, opt, self.xt[: 4 * bs], self.yt[: 4 * bs], mf, bs)  # warm-up
            self.runs[fmt] = (net, opt, mf, [])

    def round(self):
        for fmt, (net, opt, mf, times) in self.runs.items():
            for _ in range(self.epochs):
                t0 = time.perf_counter()
                _torch_epoch(self.torch, net, opt, self.xt, self.yt, mf, self.recipe["batch_size"])
                times.append(time.perf_counter() - t0)
            print(f"    PyTorch {fmt}: {self.n / times[-1]:.0f} img/s", flush=True)

    def result(self, name):
        out = {fmt: self.n / statistics.median(times) for fmt, (_, _, _, times) in self.runs.items() if times}
        for fmt, ips in out.items():
            print(f"  {name} PyTorch {fmt}: {ips:.0f} img/s (median of {len(self.runs[fmt][3])})", flush=True)
        best = max(out, key=out.get)
        return {"ips": out[best], "fmt": best, "all": out, "params": self.params}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _git(*args):
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_facts():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (working tree has uncommitted changes)"
    try:
        import torch

        torch_v = torch.__version__
    except ImportError:
        torch_v = "not installed"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "commit": commit,
        "versions": f"{platform.python_version()} / {np.__version__} / {torch_v}",
    }


def _load():
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def write_report(path, results, facts, args, load_start, started, config_text, threads):
    done = [r for r in results if "error" not in r]
    lines = [
        "# fastconv model zoo on the bundled MNIST",
        "",
        "Written by `bench/zoo.py` every network of `fastconv.models` trained on the",
        "MNIST bundled with fastconv, validation after each epoch, training images per second (the `fit`",
        "epochs alone; validation timed apart), and for the networks in `--torch-models` the same network",
        "in PyTorch (same batch size, optimizer, learning rate and threads; the better of NCHW and",
        "channels_last).",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {facts['cpu']} |",
        f"| date | {started} |",
        f"| commit | {facts['commit']} |",
        f"| Python / NumPy / PyTorch | {facts['versions']} |",
        f"| threads | {threads} (fastconv `set_num_threads`, `torch.set_num_threads`) |",
        f"| load average (1/5/15 min) | start {load_start}, end {_load()} |",
        f"| command | `{args.command}` |",
        f"| data | {args.data_note} |",
        "",
        "```",
        config_text.strip(),
        "```",
        "",
    ]
    try:
        busy = float(load_start.split()[0]) > 0.5 * (os.cpu_count() or 1)
    except (ValueError, IndexError):
        busy = False
    if busy:
        lines += [
            (
                f"**Warning: machine busy at the start (1-min load {load_start.split()[0]} on "
                f"{os.cpu_count()} cores): images/s include waits for descheduled threads; compare "
                "ratios, not absolute speed.**"
            ),
            "",
        ]
    lines += [
        (
            "Recipe: `fastconv.models.TRAINING` (Adam, learning rate 1e-3, batch 64 for every network "
            "unless the row says otherwise; why: the model's docstring), sparse categorical cross-entropy, "
            "shuffled with a fixed seed. "
            "Metric: validation accuracy; `segnet_small`: mean IoU of the digit-vs-background task "
            "(labels `models.digit_masks`, pixel > 0.5). Target: the accuracy target after at most 3 epochs."
        ),
        "",
        (
            "| network | params | recipe | metric per epoch | final | target | met | fastconv img/s | "
            "PyTorch img/s | fastconv / PyTorch |"
        ),
        "|---|---:|---|---|---:|---:|:-:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | | | error: {r['error']} | | | ✗ | | | |")
            continue
        rec = r["recipe"]
        recipe = f"{rec['optimizer']} {rec['lr']:g}, batch {rec['batch_size']}"
        if rec.get("lr_decay", 1.0) != 1.0:
            recipe += f", lr x{rec['lr_decay']:g}/epoch"
        per = " / ".join(f"{s:.4f}" for s in r["scores"])
        final = r["scores"][-1]
        target = TARGETS.get(r["name"], DEFAULT_TARGET)
        met = "✓" if final >= target else "✗"
        metric = "mean IoU" if r["metric"] == "mean_iou" else "acc"
        t = r.get("torch")
        if t is None:
            t_ips, ratio = r.get("torch_note", ""), ""
        else:
            t_ips = f"{t['ips']:.0f} ({'CL' if t['fmt'] == 'channels_last' else 'NCHW'})"
            ratio = f"{r['ips'] / t['ips']:.2f}x"
        lines.append(
            f"| {r['name']} | {r['params']:,} | {recipe} | {metric} {per} | {final:.4f} | {target:.2f} | {met} "
            f"| {r['ips']:.0f} | {t_ips} | {ratio} |"
        )
    lines += [
        "",
        (
            "params: as `count_params()` (BatchNorm moving statistics included, as Keras counts them). "
            "img/s: training images per second, median over the epochs. PyTorch: the network rebuilt layer "
            "by layer from the fastconv graph (`torch_graph` in this script; its trainable parameter count "
            "is checked against fastconv's), after a short warm-up one timed epoch per layout after each "
            "fastconv epoch (interleaved rounds), median per layout; the target "
            "is fastconv at least 0.8x PyTorch on resnet_small and mobilenet_small."
        ),
    ]
    for r in done:
        t = r.get("torch")
        if t is not None and t["params"] != r["trainable"]:
            lines.append(
                f"\n**Warning: {r['name']}: PyTorch has {t['params']:,} trainable parameters, fastconv "
                f"{r['trainable']:,}.**"
            )
    Path(path).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated zoo names (default: all)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per network (default: 3)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images (smoke runs)")
    p.add_argument(
        "--torch-models",
        default=",".join(TORCH_DEFAULT),
        help="networks also trained in PyTorch for images/s ('' for none; default: %(default)s)",
    )
    p.add_argument(
        "--torch-epochs", type=int, default=1,
        help="timed PyTorch epochs per layout after each fastconv epoch (default: 1)",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=None, help="threads for fastconv and PyTorch (default: all)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="override every network's batch size (default: fastconv.models.TRAINING's, 64)",
    )
    p.add_argument("--output", default=str(Path(__file__).resolve().parent / "ZOO.md"))
    p.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="fit's progress output")
    args = p.parse_args(argv)
    args.command = (
        "python bench/zoo.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )

    names = (
        list(models.MODELS) if not args.models else [n.strip() for n in args.models.split(",") if n.strip()]
    )
    unknown = [n for n in names if n not in models.MODELS]
    if unknown:
        p.error(f"unknown models {unknown}; choose from {list(models.MODELS)}")
    torch_names = {n.strip() for n in args.torch_models.split(",") if n.strip()}
    if args.threads:
        fastconv.set_num_threads(args.threads)
    threads = fastconv.get_num_threads()
    try:
        import torch
    except ImportError:
        torch = None

    data = load_data(args.limit)
    args.data_note = f"fastconv.datasets.load_mnist(): {len(data[0][0]):,} training / {len(data[1][0]):,} validation images"
    facts = machine_facts()
    load_start = _load()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fastconv.show_config()
    config_text = buf.getvalue()
    print(config_text)
    results = []
    for name in names:
        print(f"{name}: training {args.epochs} epoch(s) on {len(data[0][0]):,} images", flush=True)
        rivals = []

        def make_rival(model, recipe, name=name):
            """The PyTorch side of the comparison, run after each fastconv epoch (interleaved)."""
            if name not in torch_names or torch is None:
                return None
            try:
                rivals.append(TorchRival(torch, model, recipe, data, threads, args.torch_epochs))
            except NotImplementedError as exc:
                rivals.append(f"not translated ({exc})")
                return None
            return rivals[0].round

        try:
            r = train_fastconv(
                name, data, args.epochs, seed=args.seed, verbose=args.verbose, batch_size=args.batch_size,
                rival=make_rival,
            )
        except Exception as exc:  # noqa: BLE001 - one failing network must not lose the others' rows
            traceback.print_exc()
            results.append({"name": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
            write_report(args.output, results, facts, args, load_start, started, config_text, threads)
            continue
        if name in torch_names:
            if torch is None:
                r["torch_note"] = "torch not installed"
            elif rivals and isinstance(rivals[0], str):
                r["torch_note"] = rivals[0]
            elif rivals:
                r["torch"] = rivals[0].result(name)
                r["rounds"] = args.epochs
        r.pop("model", None)
        results.append(r)
        write_report(args.output, results, facts, args, load_start, started, config_text, threads)
    print(f"\nWrote {args.output}")
    print(Path(args.output).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
