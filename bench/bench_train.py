"""End-to-end training throughput: the tutorial's Fashion-MNIST CNN, fastconv vs PyTorch.

fastconv: ``fastconv.models.fashion_cnn()``, ``compile(optimizer="sgd",
loss="sparse_categorical_crossentropy", metrics=["accuracy"])``, ``fit(x, y, batch_size=32, epochs=1,
verbose=0)``.  PyTorch: the same layers, translated from the fastconv model's ``get_config()`` (so the two
cannot drift apart), SGD (lr 0.01, Keras's default), batch 32, shuffled, cross-entropy on logits (the
final softmax folded into the loss, as fastconv fuses it), in NCHW and channels_last; the faster is
reported.  Images per second over one epoch of ``--train-images`` bundled MNIST images, median of rounds
run interleaved after a warm-up epoch.  Skipped with a message while the model or fit API is missing.
"""

from __future__ import annotations

import gzip
import importlib
import statistics
import time
from pathlib import Path

import numpy as np
from torch_twins import torch_twin


def _read_idx(path: Path) -> np.ndarray:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as f:
            raw = f.read()
    else:
        raw = path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_images(fastconv) -> tuple[np.ndarray, np.ndarray, str]:
    """(x (N, 28, 28, 1) float32 in [0, 1], y (N,) int64, source)."""
    try:
        datasets = importlib.import_module("fastconv.datasets")
        data = datasets.load_mnist()
        x, y = data[0] if isinstance(data[0], (tuple, list)) else data[:2]
        source = "fastconv.datasets.load_mnist() (train split)"
    except (ImportError, AttributeError):
        folder = Path(fastconv.__file__).parent / "data"
        imgs = sorted(folder.glob("*images-idx3-ubyte*"))
        labels = sorted(folder.glob("*labels-idx1-ubyte*"))
        if not imgs or not labels:
            raise FileNotFoundError(f"no MNIST IDX files under {folder}")
        x, y = _read_idx(imgs[0]), _read_idx(labels[0])
        source = f"{imgs[0].name} (raw gzip IDX; fastconv.datasets not available)"
    x = np.asarray(x)
    x = x.astype(np.float32) / 255.0 if x.dtype.kind in "uib" else x.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    return x, np.asarray(y).reshape(-1).astype(np.int64), source


def _torch_epoch(torch, net, opt, xt, yt, mf, batch=32):
    net.train()
    lossf = torch.nn.functional.cross_entropy
    perm = torch.randperm(xt.shape[0])
    correct = 0
    for i in range(0, xt.shape[0], batch):
        idx = perm[i : i + batch]
        xb, yb = xt[idx].contiguous(memory_format=mf), yt[idx]
        opt.zero_grad(set_to_none=True)
        out = net(xb)
        loss = lossf(out, yb)
        loss.backward()
        opt.step()
        correct += int((out.argmax(1) == yb).sum())
    return correct


def run_training(fastconv, torch, threads, args):
    """Returns (result dict or None, report lines)."""
    try:
        seeds = importlib.import_module("fastconv.models")
        make = seeds.fashion_cnn
    except (ImportError, AttributeError) as exc:
        msg = f"skipped: fastconv.models.fashion_cnn is not available yet ({exc})"
        print(f"\nEnd-to-end training {msg}")
        return None, [msg]
    try:
        x, y, source = load_images(fastconv)
    except (OSError, ValueError) as exc:
        return None, [f"skipped: no MNIST data ({exc})"]
    n = min(args.train_images, len(x))
    x, y = np.ascontiguousarray(x[:n]), y[:n]
    try:
        model = make()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[:256], y[:256], batch_size=32, epochs=1, verbose=0)  # warm-up
    except Exception as exc:  # noqa: BLE001  (the model / fit API is being written concurrently)
        msg = f"skipped: fastconv model could not be built or fit ({type(exc).__name__}: {exc})"
        print(f"\nEnd-to-end training {msg}")
        return None, [msg]
    n_params = model.count_params() if hasattr(model, "count_params") else None

    fns = {}

    def fc_epoch():
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)

    fns["fastconv"] = fc_epoch
    head = (
        f"Fashion-MNIST CNN ({n_params if n_params is not None else '?'} params), {n} images of {source}, "
        f"batch 32, SGD, 1 epoch per round, {threads} threads"
    )
    lines = [head]
    if torch is not None:
        try:
            net0 = torch_twin(model, torch)
        except NotImplementedError as exc:
            lines.append(f"PyTorch translation not available: {exc}")
            net0 = None
        if net0 is not None:
            t_params = sum(p.numel() for p in net0.parameters())
            if n_params is not None and t_params != n_params:
                lines.append(f"WARNING: PyTorch model has {t_params} params, fastconv {n_params}")
            xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
            yt = torch.from_numpy(y)
            for fmt, mf in (("NCHW", torch.contiguous_format), ("CL", torch.channels_last)):
                net = torch_twin(model, torch).to(memory_format=mf)
                opt = torch.optim.SGD(net.parameters(), lr=0.01)
                _torch_epoch(torch, net, opt, xt[:256], yt[:256], mf)  # warm-up
                fns[f"torch-{fmt}"] = lambda net=net, opt=opt, mf=mf: _torch_epoch(
                    torch, net, opt, xt, yt, mf
                )
    rounds = 1 if args.quick else 3
    times = {k: [] for k in fns}
    for r in range(rounds):
        for name in list(fns)[r % len(fns) :] + list(fns)[: r % len(fns)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    ips = {k: n / v for k, v in med.items()}
    result = {"fastconv_ips": ips["fastconv"], "ratio": None}
    line = f"fastconv {ips['fastconv']:.0f} img/s ({med['fastconv']:.2f} s/epoch)"
    if "torch-NCHW" in ips:
        best = max(("torch-NCHW", "torch-CL"), key=ips.get)
        result["torch_ips"] = ips[best]
        result["ratio"] = ips["fastconv"] / ips[best]
        line += (
            f"; PyTorch {ips[best]:.0f} img/s ({best[6:]}; other format {ips[min(('torch-NCHW', 'torch-CL'), key=ips.get)]:.0f});"
            f" fastconv/PyTorch {result['ratio']:.2f}x (target: >= 0.5x)"
        )
    lines.append(line + f"; median of {rounds} round(s)")
    return result, lines
