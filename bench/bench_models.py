"""Every network of ``fastconv.models`` against the same network in PyTorch: training and inference.

For each network (the zoo and the tutorials' CNNs, ``fastconv.models.MODELS``), with its recipe
from ``fastconv.models.TRAINING`` (optimizer, learning rate, batch size):

- **training**: ``--steps`` optimizer steps of ``model.fit`` (one epoch over ``steps * batch``
  images) against the same steps of its PyTorch twin (``bench/torch_twins.py``: the same layers
  from the model's config, cross-entropy on logits, the same optimizer), images per second;
- **inference**: ``model.predict`` on a batch of 256 against the twin's eval-mode forward under
  ``torch.no_grad()``, and ONNX Runtime's forward of ``fastconv.onnx.to_onnx(model)`` when both
  are installed.

The sides run interleaved, round after round (``--rounds``), the order rotating each round; PyTorch
runs in NCHW and channels_last every round and the faster counts (its better layout). The figure
is the **median of the per-round ratios** fastconv / PyTorch (``bench/bench_ops.py``'s statistic)
with its interquartile range, so a shared, noisy host moves both sides of a ratio together. Beside each speed: GFLOP/s (the
forward's multiply-adds counted on the twin, x2 FLOPs, x3 for a training step) and its share of
this machine's FMA peak measured by ``bench/fma_peak.py`` on the same threads. Inputs are random
images of the network's input shape (speed does not depend on the values).

Usage::

    python bench/bench_models.py                               # every network, ~10 min on 2 cores
    python bench/bench_models.py --models lenet5,fashion-cnn --rounds 7
    python bench/bench_models.py --output bench/MODELS.md      # also write the markdown table
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench_ops import ratio_cell, ratio_stats, round_ratios
from fma_peak import peak
from torch_twins import torch_twin
from zoo import machine_facts

import fastconv
from fastconv import initializers, models, optimizers

LAYOUTS = ("NCHW", "channels_last")
PREDICT_BATCH = 256

# Speed targets (fastconv / PyTorch, the median of the per-round ratios): the four tutorial CNNs
# train at least 1.5x, every other network at least 1.2x; every network predicts at least 1.5x.
TUTORIAL_CNNS = ("lenet5", "mnist-cnn", "fashion-cnn", "separable-cnn")
TRAIN_TUTORIAL_MIN = 1.5
TRAIN_OTHER_MIN = 1.2
PREDICT_MIN = 1.5


def cpu_detail():
    """'family F model M, <best ISA>' from /proc/cpuinfo (the model name alone can be just 'AMD EPYC')."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return "unknown"
    flags = fields.get("flags", "").split()
    isa = "avx512f" if "avx512f" in flags else "avx2+fma" if "avx2" in flags else "no avx2"
    return f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {isa}"


def input_shape(name):
    return (32, 32, 3) if name.startswith("cifar") else (28, 28, 1)


def _optimizer(recipe):
    if recipe["optimizer"] == "sgd":
        return optimizers.SGD(learning_rate=recipe["lr"], momentum=recipe.get("momentum", 0.0))
    return optimizers.Adam(learning_rate=recipe["lr"])


def _torch_optimizer(torch, net, recipe):
    if recipe["optimizer"] == "sgd":
        return torch.optim.SGD(net.parameters(), lr=recipe["lr"], momentum=recipe.get("momentum", 0.0))
    return torch.optim.Adam(net.parameters(), lr=recipe["lr"], eps=1e-7)


def forward_flops(net, torch, shape):
    """FLOPs (2 x multiply-adds) of one sample's forward through conv, transposed conv and Linear."""
    nn = torch.nn
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Linear):
            total[0] += 2 * mod.in_features * mod.out_features
        elif isinstance(mod, nn.ConvTranspose2d):
            kh, kw = mod.kernel_size
            total[0] += 2 * inp[0][0].numel() * mod.out_channels // mod.groups * kh * kw
        elif isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total[0] += 2 * out[0].numel() * mod.in_channels // mod.groups * kh * kw

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.eval()(torch.zeros(1, shape[2], shape[0], shape[1]))
    for h in handles:
        h.remove()
    return total[0]


class Case:
    """One network, built on both sides and ready to run timed rounds."""

    def __init__(self, name, torch, threads, steps, ort):
        self.name, self.torch = name, torch
        recipe = dict(models.TRAINING[name])
        self.batch = recipe["batch_size"]
        shape = input_shape(name)
        segment = recipe.get("task") == "segment"
        classes = 2 if segment else 10
        initializers.set_seed(0)
        self.model = models.MODELS[name](input_shape=shape, classes=classes)
        self.model.compile(_optimizer(recipe), "sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        n = steps * self.batch
        self.x = rng.random((n, *shape), dtype=np.float32)
        self.y = (rng.random((n, *shape[:2])) > 0.5).astype(np.int64) if segment else rng.integers(0, classes, n)
        self.x_pred = np.ascontiguousarray(self.x[:PREDICT_BATCH]) if n >= PREDICT_BATCH else rng.random(
            (PREDICT_BATCH, *shape), dtype=np.float32)
        self.n = n
        self.params = self.model.count_params()
        # PyTorch twins, one per layout
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.xt = torch.from_numpy(self.x).permute(0, 3, 1, 2).contiguous()
        self.yt = torch.from_numpy(np.asarray(self.y, dtype=np.int64))
        self.xpt = torch.from_numpy(self.x_pred).permute(0, 3, 1, 2).contiguous()
        self.twins = {}
        for fmt in LAYOUTS:
            mf = torch.contiguous_format if fmt == "NCHW" else torch.channels_last
            net = torch_twin(self.model, torch).to(memory_format=mf)
            self.twins[fmt] = (net, _torch_optimizer(torch, net, recipe), mf)
        self.flops = forward_flops(self.twins["NCHW"][0], torch, shape)
        twin_params = sum(p.numel() for p in self.twins["NCHW"][0].parameters())
        self.params_match = twin_params == self.model.count_trainable_params()
        self.ort = None
        if ort is not None:
            try:
                from fastconv import onnx as fc_onnx

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                # idle ONNX Runtime threads otherwise spin on the cores the next library in the round
                # needs (measured: fastconv's convT4x4 forward 2.26 -> 1.36 ms, PyTorch's 2.87 -> 1.68)
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                proto = fc_onnx.to_onnx(self.model)
                self.ort = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
                self.ort_input = self.ort.get_inputs()[0].name
            except Exception as exc:  # noqa: BLE001  (report, don't stop the other networks)
                print(f"  {name}: no ONNX Runtime column ({type(exc).__name__}: {exc})", flush=True)
        # warm-up: thread pools, first-call allocations, PyTorch's kernel selection
        self.model.fit(self.x[: 2 * self.batch], self.y[: 2 * self.batch], batch_size=self.batch, epochs=1, verbose=0)
        self.model.predict(self.x_pred, batch_size=PREDICT_BATCH, verbose=0)
        for fmt in LAYOUTS:
            self._torch_train(fmt, 2 * self.batch)
            self._torch_predict(fmt)
        if self.ort is not None:
            self._ort_predict()

    # -- the timed pieces --------------------------------------------------------------------
    def _fc_train(self):
        self.model.fit(self.x, self.y, batch_size=self.batch, epochs=1, verbose=0, shuffle=False)

    def _torch_train(self, fmt, n=None):
        torch = self.torch
        net, opt, mf = self.twins[fmt]
        net.train()
        lossf = torch.nn.functional.cross_entropy
        n = n or self.n
        for i in range(0, n, self.batch):
            xb = self.xt[i : i + self.batch].contiguous(memory_format=mf)
            opt.zero_grad(set_to_none=True)
            lossf(net(xb), self.yt[i : i + self.batch]).backward()
            opt.step()

    def _fc_predict(self):
        self.model.predict(self.x_pred, batch_size=PREDICT_BATCH, verbose=0)

    def _torch_predict(self, fmt):
        net, _, mf = self.twins[fmt]
        net.eval()
        with self.torch.no_grad():
            net(self.xpt.contiguous(memory_format=mf))

    def _ort_predict(self):
        self.ort.run(None, {self.ort_input: self.x_pred})

    def round(self, r):
        """One round: every side once, the order rotating with ``r``; returns seconds per side."""
        sides = [("fc_train", self._fc_train), ("fc_predict", self._fc_predict)]
        for fmt in LAYOUTS:
            sides.append((f"torch_train_{fmt}", lambda fmt=fmt: self._torch_train(fmt)))
            sides.append((f"torch_predict_{fmt}", lambda fmt=fmt: self._torch_predict(fmt)))
        if self.ort is not None:
            sides.append(("ort_predict", self._ort_predict))
        k = r % len(sides)
        out = {}
        for key, fn in sides[k:] + sides[:k]:
            t0 = time.perf_counter()
            fn()
            out[key] = time.perf_counter() - t0
        return out


def summarize(case, rounds_out, peak_gflops):
    """Per-round ratios (fastconv speed / the faster PyTorch layout's speed) and their medians."""
    col = lambda key: [t[key] for t in rounds_out]
    torch_train = [col(f"torch_train_{f}") for f in LAYOUTS]
    torch_pred = [col(f"torch_predict_{f}") for f in LAYOUTS]
    train_st = ratio_stats(round_ratios(torch_train, col("fc_train")))
    pred_st = ratio_stats(round_ratios(torch_pred, col("fc_predict")))
    has_ort = all("ort_predict" in t for t in rounds_out)
    ort_st = ratio_stats(round_ratios(col("ort_predict"), col("fc_predict"))) if has_ort else None
    layouts = [min(LAYOUTS, key=lambda f: t[f"torch_train_{f}"]) for t in rounds_out]
    fc_train = [case.n / t for t in col("fc_train")]
    t_train = [case.n / min(ts) for ts in zip(*torch_train)]
    fc_pred = [PREDICT_BATCH / t for t in col("fc_predict")]
    t_pred = [PREDICT_BATCH / min(ts) for ts in zip(*torch_pred)]
    ort_pred = [PREDICT_BATCH / t for t in col("ort_predict")] if has_ort else []
    med = statistics.median
    train_gf = med(fc_train) * 3 * case.flops / 1e9
    pred_gf = med(fc_pred) * case.flops / 1e9
    return {
        "name": case.name,
        "params": case.params,
        "params_match": case.params_match,
        "batch": case.batch,
        "mflops": case.flops / 1e6,
        "fc_train": med(fc_train),
        "torch_train": med(t_train),
        "layout": max(set(layouts), key=layouts.count),
        "train": ratio_cell(train_st),
        "train_median": train_st["median"],
        "train_gflops": train_gf,
        "train_peak": 100 * train_gf / peak_gflops if peak_gflops else None,
        "fc_predict": med(fc_pred),
        "torch_predict": med(t_pred),
        "predict": ratio_cell(pred_st),
        "predict_median": pred_st["median"],
        "predict_gflops": pred_gf,
        "predict_peak": 100 * pred_gf / peak_gflops if peak_gflops else None,
        "ort_predict": med(ort_pred) if ort_pred else None,
        "ort": ratio_cell(ort_st) if ort_st else None,
    }


def _pct(v):
    return "" if v is None else f" ({v:.0f}%)"


def table(results):
    head = (
        "| network | params | batch | MFLOP/img | train fastconv img/s (GFLOP/s, % peak) | train PyTorch img/s | "
        "train fastconv / PyTorch, median [IQR] | predict fastconv img/s (GFLOP/s, % peak) | "
        "predict PyTorch img/s | predict fastconv / PyTorch | ONNX Runtime img/s | fastconv / ONNX Runtime |"
    )
    rows = [head, "|" + "---|" * 12]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['name']} | error: {r['error']} |" + " |" * 10)
            continue
        ort_ips = "" if r["ort_predict"] is None else f"{r['ort_predict']:,.0f}"
        rows.append(
            f"| {r['name']} | {r['params']:,}{'' if r['params_match'] else ' (twin differs!)'} | {r['batch']} | "
            f"{r['mflops']:.2f} | {r['fc_train']:,.0f} ({r['train_gflops']:.1f}{_pct(r['train_peak'])}) | "
            f"{r['torch_train']:,.0f} ({'CL' if r['layout'] == 'channels_last' else 'NCHW'}) | {r['train']} | "
            f"{r['fc_predict']:,.0f} ({r['predict_gflops']:.1f}{_pct(r['predict_peak'])}) | "
            f"{r['torch_predict']:,.0f} | {r['predict']} | "
            f"{ort_ips} | {r['ort'] or ''} |"
        )
    return "\n".join(rows)


def _target_line(text, values, minimum):
    """'met' / 'NOT MET' / 'n/a' line for one target over ``values`` ((name, ratio) pairs)."""
    if not values:
        return f"n/a      {text}: no such network run"
    worst = min(values, key=lambda v: v[1])
    below = [f"{n} {v:.2f}x" for n, v in values if v < minimum]
    line = f"{'NOT MET' if below else 'met    '}  {text}: worst {worst[1]:.2f}x ({worst[0]})"
    return line + (f"; below {minimum:g}x: " + ", ".join(below) if below else "")


def targets(results):
    """The speed targets, one line each, from the networks this run measured (errors count as n/a)."""
    ok = [r for r in results if "error" not in r]
    tut = [(r["name"], r["train_median"]) for r in ok if r["name"] in TUTORIAL_CNNS]
    other = [(r["name"], r["train_median"]) for r in ok if r["name"] not in TUTORIAL_CNNS]
    pred = [(r["name"], r["predict_median"]) for r in ok]
    lines = [
        _target_line(f"training of the tutorial CNNs ({', '.join(TUTORIAL_CNNS)}) >= {TRAIN_TUTORIAL_MIN:g}x "
                     "PyTorch", tut, TRAIN_TUTORIAL_MIN),
        _target_line(f"training of every other network >= {TRAIN_OTHER_MIN:g}x PyTorch", other, TRAIN_OTHER_MIN),
        _target_line(f"predict (batch {PREDICT_BATCH}) of every network >= {PREDICT_MIN:g}x PyTorch", pred,
                     PREDICT_MIN),
    ]
    failed = [r["name"] for r in results if "error" in r]
    if failed:
        lines.append(f"n/a      not measured (error): {', '.join(failed)}")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(models.MODELS), help="comma-separated names")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8, help="training steps per round and side")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--output", type=Path, default=None, help="write the markdown report here")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: pip install torch==2.13.0 (a CPU build)")
        return 2
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    fastconv.set_num_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in models.MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {list(models.MODELS)}")
    pk = peak(args.threads, HERE / ".fma_peak.json")
    peak_gf = pk["gflops"].get(args.threads)
    facts = machine_facts()
    config_text = fastconv.show_config()
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    print(f"{facts['cpu']}; FMA peak {peak_gf:.0f} GFLOP/s on {args.threads} threads ({pk['method']})", flush=True)
    results = []
    for name in names:
        try:
            case = Case(name, torch, args.threads, args.steps, ort)
            outs = [case.round(r) for r in range(args.rounds)]
            res = summarize(case, outs, peak_gf)
        except Exception as exc:  # noqa: BLE001  (one network's failure is reported in its row)
            res = {"name": name, "error": f"{type(exc).__name__}: {exc}"}
        results.append(res)
        if "error" in res:
            print(f"{name}: {res['error']}", flush=True)
        else:
            print(
                f"{name}: train {res['fc_train']:,.0f} vs {res['torch_train']:,.0f} img/s = {res['train']}; "
                f"predict {res['fc_predict']:,.0f} vs {res['torch_predict']:,.0f} img/s = {res['predict']}"
                + (f"; vs ONNX Runtime {res['ort']}" if res["ort"] else ""),
                flush=True,
            )
    text = table(results)
    print(text)
    ok = [r for r in results if "error" not in r]
    geo = lambda key: float(np.exp(np.mean([np.log(r[key]) for r in ok]))) if ok else float("nan")
    summary = f"Geometric mean of the medians: training {geo('train_median'):.2f}x, predict {geo('predict_median'):.2f}x"
    print(summary)
    target_lines = targets(results)
    print("\nSpeed targets (this run; nothing asserted):\n  " + "\n  ".join(target_lines))
    if args.output:
        load1 = os.getloadavg()
        info = "\n".join([
            "# Every network: fastconv vs PyTorch (training and predict)",
            "",
            "Written by `bench/bench_models.py` (see its docstring for the method: interleaved rounds, the",
            "median of per-round ratios, PyTorch's better layout, random inputs).",
            "",
            "| | |", "|---|---|",
            f"| machine | {facts['cpu']} ({cpu_detail()}) |",
            f"| date | {started:%Y-%m-%d %H:%M} UTC |",
            f"| commit | {facts['commit']} |",
            f"| Python / NumPy / PyTorch | {facts['versions']} |",
            f"| threads | {args.threads} (fastconv, PyTorch and ONNX Runtime alike) |",
            f"| FMA peak | {peak_gf:.0f} GFLOP/s ({pk['method']}) |",
            f"| load average | start {' '.join(f'{v:.2f}' for v in load0)}, end {' '.join(f'{v:.2f}' for v in load1)} |",
            f"| command | `python bench/bench_models.py {' '.join(argv if argv is not None else sys.argv[1:])}` |",
            "",
            "```", config_text.strip(), "```", "",
            text, "", summary, "",
            "Speed targets (this run; nothing asserted):", "",
            *[f"- {line}" for line in target_lines], "",
        ])
        tmp = args.output.with_suffix(args.output.suffix + ".tmp")
        tmp.write_text(info)
        os.replace(tmp, args.output)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
