"""Command line: ``python -m fastconv {train,models,demo,info}``.

``train`` trains a network of the model zoo (``fastconv.models``: the
paper networks and the seeds' tutorial CNNs) on its data set, shows the Keras-style progress
bar, prints the validation accuracy (``segnet_small``: per-pixel accuracy and
mean IoU on the digit-segmentation task), and optionally saves the model and a
learning-curve PNG::

    python -m fastconv train --model lenet5 --epochs 2
    python -m fastconv train --model mnist-cnn --epochs 2 --save mnist.npz --plot curves.png
    python -m fastconv train --model resnet_small --epochs 3
    python -m fastconv train --model segnet_small --epochs 3
    python -m fastconv train --model fashion-cnn --data ~/fashion-mnist --epochs 5
    python -m fastconv train --model cifar-cnn --data ~/cifar-10-batches-bin --epochs 10
    python -m fastconv train --model resnet_small --dataset cifar10 --data ~/cifar-10-batches-bin

The data set is the network's own (``DATASET_OF``): Fashion-MNIST for ``fashion-cnn`` and
``separable-cnn``, CIFAR-10 for ``cifar-cnn``, MNIST for the others; ``--dataset`` picks
another. Only MNIST is bundled (its 10,000 test images, split 8,000 train / 2,000 validation);
Fashion-MNIST and CIFAR-10 are read from ``--data DIR`` and a missing directory is an error,
never a silent switch to MNIST (``--dataset mnist`` asks for that switch: the digits are then
zero-padded to 32x32 and copied to three channels for ``cifar-cnn``). A network whose default
input is 28x28x1 is built for 32x32x3 when it trains on CIFAR-10.

``models`` lists every network ``train`` accepts with its parameter count and data set;
``demo`` times the compiled kernels against the NumPy reference in a few
seconds; ``info`` prints ``show_config()``.

A mistake on the command line (a missing data directory, a data set that is not there, a
``--save`` directory that does not exist) is one line on stderr and exit status 2, before any
training starts.
"""

from __future__ import annotations

import argparse
import builtins
import os
import sys
import time

import numpy as np

__all__ = ["DATASETS", "DATASET_OF", "build_parser", "main"]

PROG = "python -m fastconv"

#: ``--dataset`` choices -> the name a user reads.
DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}

#: The data set each network trains on when ``--dataset`` is not given (its tutorial's);
#: every network not listed trains on MNIST.
DATASET_OF = {"fashion-cnn": "fashion-mnist", "separable-cnn": "fashion-mnist", "cifar-cnn": "cifar10"}


class UsageError(Exception):
    """A mistake in what the user asked for: reported as one line and exit status 2."""


def _dataset_of(model: str) -> str:
    return DATASET_OF.get(model, "mnist")


def _positive_int(text: str) -> int:
    """argparse type: an int of at least 1 (0 or a negative count is a typo, not 'the default')."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a float > 0 (a learning rate or decay factor of 0 or less is a typo)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _zoo():
    from fastconv import models

    return models


def _model_names():
    """Every ``--model`` choice, in the zoo's order."""
    return list(_zoo().MODELS)


def _resolve(name):
    """``(builder(input_shape) -> model, input_shape, defaults, task)`` for a ``--model`` name;
    input_shape is the network's default, task "classify" or "segment"."""
    import inspect

    zoo = _zoo()
    fn = zoo.MODELS[name]
    defaults = dict(zoo.TRAINING[name])
    task = defaults.pop("task", "classify")
    classes = 2 if task == "segment" else 10
    shape = inspect.signature(fn).parameters["input_shape"].default

    def build(input_shape):
        return fn(input_shape=input_shape, classes=classes)

    build.__doc__ = fn.__doc__
    return build, shape, defaults, task


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="fastconv: fast CPU convolutions and a Keras-like trainer.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{train,models,demo,info}")
    sub.required = True

    names = _model_names()
    t = sub.add_parser(
        "train",
        help="train a network of the model zoo on its data set (MNIST is bundled)",
        description="Train a network of fastconv.models on its data set with a progress bar and print "
        "the validation accuracy. fashion-cnn and separable-cnn train on Fashion-MNIST, cifar-cnn on "
        "CIFAR-10, every other network on MNIST; --dataset picks another. MNIST is bundled (8,000 "
        "training images; 2,000 others validate); Fashion-MNIST and CIFAR-10 are read from --data. "
        "segnet_small learns to segment each digit from the background (labels: pixels brighter than "
        "--threshold) and reports per-pixel accuracy and mean IoU.",
    )
    t.add_argument(
        "--model",
        choices=names,
        default="lenet5",
        metavar="NAME",
        help="network to train (default: lenet5); one of: " + ", ".join(names),
    )
    t.add_argument(
        "--dataset",
        choices=list(DATASETS),
        default=None,
        help="data set to train on (default: the network's own: fashion-mnist for fashion-cnn and "
        "separable-cnn, cifar10 for cifar-cnn, mnist for the others); mnist without --data is the "
        "bundled one",
    )
    t.add_argument("--epochs", type=_positive_int, default=2, help="number of epochs (default: 2)")
    t.add_argument(
        "--batch-size", type=_positive_int, default=None, help="batch size (default: per model, e.g. 64 for lenet5)"
    )
    t.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="directory holding the data set's files: the four IDX files of MNIST / Fashion-MNIST "
        "(train-images-idx3-ubyte.gz, ...), or CIFAR-10's binary batches (data_batch_1.bin ... "
        "test_batch.bin); needed for Fashion-MNIST and CIFAR-10, optional for MNIST (default: bundled)",
    )
    t.add_argument("--save", default=None, metavar="PATH", help="save the trained model to PATH (.npz)")
    t.add_argument(
        "--plot", default=None, metavar="PNG", help="write the learning curves to PNG (needs matplotlib)"
    )
    t.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="train on the first N training images only (and validate on max(N // 4, 200))",
    )
    t.add_argument(
        "--val-limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="validate on the first N test images",
    )
    t.add_argument(
        "--optimizer", choices=["sgd", "adam"], default=None, help="optimizer (default: per model)"
    )
    t.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default: per model)")
    t.add_argument(
        "--lr-decay",
        type=_positive_float,
        default=None,
        help="multiply the learning rate by this after every epoch (default: per model, 0.3 for "
        "resnet_small, else 1)",
    )
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    t.add_argument("--seed", type=int, default=0, help="seed for weights, dropout and shuffling (default: 0)")
    t.add_argument("--threads", type=_positive_int, default=None, help="number of threads for the kernels")
    t.add_argument(
        "--verbose",
        type=int,
        choices=[0, 1, 2],
        default=1,
        help="0 silent, 1 progress bar, 2 one line per epoch",
    )
    t.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="segnet_small: a pixel is 'digit' when brighter than this fraction of full intensity "
        "(default: 0.5)",
    )
    t.set_defaults(func=cmd_train)

    m = sub.add_parser(
        "models",
        help="list every network `train` accepts with its parameter count and data set",
        description="List the networks `train --model` accepts (the zoo of fastconv.models: paper "
        "networks and the seeds' tutorial CNNs), with parameter counts, input shapes and the data set "
        "each trains on.",
    )
    m.set_defaults(func=cmd_models)

    d = sub.add_parser(
        "demo",
        help="time the compiled kernels against the NumPy reference (a few seconds)",
        description="Quick kernel demo: print show_config(), then time conv2d, conv2d_grad, "
        "depthwise_conv2d and max_pool2d on a few small shapes against fastconv.reference "
        "(median of a few runs; milliseconds and speed-up), checking that the results agree.",
    )
    d.add_argument(
        "--repeats",
        type=_positive_int,
        default=5,
        help="timed runs per kernel (default: 5; the median is shown)",
    )
    d.add_argument("--threads", type=_positive_int, default=None, help="number of threads for the kernels")
    d.add_argument(
        "--batch", type=_positive_int, default=8, help="images per batch in the timed shapes (default: 8)"
    )
    d.add_argument(
        "--budget",
        type=float,
        default=12.0,
        help="stop adding runs once this many seconds have passed (default: 12)",
    )
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser(
        "info",
        help="print build and runtime configuration",
        description="Print fastconv's version, compiler, OpenMP, SIMD level and threads.",
    )
    i.set_defaults(func=cmd_info)
    return parser


_SHAPE_OF = {"mnist": (28, 28, 1), "fashion-mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def _count(n, total):
    return f"{n:,}" if n == total else f"{n:,} of {total:,}"


def _load_data(args, default_shape, kind="classify"):
    """``(x, y, xv, yv, source, counts, input_shape)``: the data set ``--model`` / ``--dataset``
    name, read from ``--data`` (MNIST: bundled without it), limited, shaped for the network.

    Raises UsageError when the data set is not there; never substitutes another one."""
    from fastconv import datasets

    dataset = args.dataset or _dataset_of(args.model)
    name = DATASETS[dataset]
    own = _dataset_of(args.model)
    if kind == "segment" and _SHAPE_OF[dataset][2] != 1:
        raise UsageError(
            f"{args.model} segments grey images: --dataset {dataset} is not supported (use mnist)"
        )
    if args.data is None and dataset != "mnist":
        why = f"--dataset {dataset}: {name}" if args.dataset else f"{args.model} trains on {name}, which"
        instead = (
            "" if args.dataset else f", or --dataset mnist to train {args.model} on the bundled MNIST digits"
        )
        raise UsageError(
            f"{why} is not bundled with fastconv: pass --data DIR, a directory holding "
            f"{', '.join(datasets.FILES[name])} ({datasets.SOURCES[name]}){instead}"
        )
    loader = {
        "mnist": datasets.load_mnist,
        "fashion-mnist": datasets.load_fashion_mnist,
        "cifar10": datasets.load_cifar10,
    }[dataset]
    try:
        loaded = loader(args.data)
        (x, y), (xv, yv) = loaded
    except (OSError, ValueError) as e:  # a missing directory or file, or not the format expected
        raise UsageError(f"--data: {e}") from None
    if args.data is None:  # the bundled MNIST, or Keras's download when there is one
        loaded_from = getattr(loaded, "source", None)
        bundled = loaded_from is None or loaded_from == str(datasets.bundled_data_dir())
        source = "the bundled MNIST" if bundled else f"{name} from {loaded_from}"
    else:
        source = f"{name} from {os.path.expanduser(args.data)}"
    if dataset != own:
        source += f" (instead of {args.model}'s {DATASETS[own]}: --dataset {dataset})"

    n_train, n_val = len(x), len(xv)
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    val_limit = args.val_limit
    if val_limit is None and args.limit is not None:
        val_limit = max(args.limit // 4, 200)
    if val_limit is not None:
        xv, yv = xv[:val_limit], yv[:val_limit]
    counts = f"{_count(len(x), n_train)} train / {_count(len(xv), n_val)} validation images"
    if len(x) < n_train or len(xv) < n_val:
        given = (("--limit", args.limit), ("--val-limit", args.val_limit))
        flags = [f"{flag} {v}" for flag, v in given if v is not None]
        counts += f" ({', '.join(flags)})"

    data_shape = (*x.shape[1:3], x.shape[3] if x.ndim == 4 else 1)
    input_shape = tuple(default_shape)
    h, w, c = input_shape
    if data_shape[0] > h or data_shape[1] > w or (data_shape[2] != c and data_shape[2] != 1):
        input_shape = data_shape  # e.g. a 28x28x1 network on CIFAR-10: built for 32x32x3
        source += f", network built for {'x'.join(map(str, input_shape))} input"
    elif data_shape != input_shape:
        source += (
            f", images zero-padded to {h}x{w}" if data_shape[:2] != (h, w) else ""
        ) + (f" and copied to {c} channels" if data_shape[2] != c else "")
    x, xv = _to_input(x, input_shape), _to_input(xv, input_shape)
    if kind == "segment":
        from fastconv.models import digit_masks

        y, yv = digit_masks(x, args.threshold), digit_masks(xv, args.threshold)
        what = "digit" if dataset == "mnist" else "foreground"
        source += f", {what}-vs-background masks (pixel > {args.threshold:g})"
    return x, y, xv, yv, source, counts, input_shape


def _to_input(x, input_shape):
    """uint8 images -> float32 in [0, 1] shaped ``(N, *input_shape)`` (padding / channel copies for
    28x28 grey digits fed to a 32x32x3 network; the caller checked that they fit)."""
    x = np.asarray(x, dtype=np.float32) / 255.0
    if x.ndim == 3:
        x = x[..., None]
    h, w, c = input_shape
    if x.shape[1:3] != (h, w):
        ph, pw = h - x.shape[1], w - x.shape[2]
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    if x.shape[-1] != c:
        x = np.repeat(x, c, axis=-1)
    return np.ascontiguousarray(x)


def _check_output_paths(args):
    """--save / --plot into a directory that does not exist would fail after training: say so now."""
    for flag in ("save", "plot"):
        path = getattr(args, flag)
        if path:
            path = os.path.expanduser(path)
            setattr(args, flag, path)
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise UsageError(f"--{flag} {path}: directory {parent!r} does not exist")


def _silent(*args, **kwargs):
    pass


def cmd_train(args) -> int:
    from fastconv import distributed, initializers, optimizers

    # Under mpirun / mpiexec / srun: one data-parallel replica per process, rank 0 prints and saves.
    jobs = ""
    if distributed.launched():
        distributed.init(threads=args.threads if args.threads is not None else "auto")
        jobs = f", {distributed.size()} processes (global batch split between them)"
    root = distributed.is_root()
    print = builtins.print if root else _silent
    _check_output_paths(args)
    builder, default_shape, defaults, kind = _resolve(args.model)
    x, y, xv, yv, source, counts, input_shape = _load_data(args, default_shape, kind)
    if args.threads is not None:
        from fastconv import set_num_threads

        set_num_threads(args.threads)
    initializers.set_seed(args.seed)
    model = builder(input_shape=input_shape)
    opt_name = args.optimizer or defaults["optimizer"]
    lr = args.lr if args.lr is not None else (defaults["lr"] if opt_name == defaults["optimizer"] else None)
    if opt_name == "sgd":
        opt = optimizers.SGD(learning_rate=lr if lr is not None else 0.01, momentum=args.momentum)
    else:
        opt = optimizers.Adam(learning_rate=lr if lr is not None else 1e-3)
    batch_size = args.batch_size if args.batch_size is not None else defaults["batch_size"]
    decay = args.lr_decay if args.lr_decay is not None else defaults.get("lr_decay", 1.0)
    metrics = ["accuracy", "mean_iou"] if kind == "segment" else ["accuracy"]
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=metrics)
    callbacks = []
    if decay != 1.0:
        from fastconv.callbacks import LambdaCallback

        base_lr = opt.learning_rate

        def set_lr(epoch, logs=None):
            opt.learning_rate = base_lr * decay**epoch

        callbacks.append(LambdaCallback(on_epoch_begin=set_lr))
    if args.verbose:
        schedule = f", learning rate x{decay:g} per epoch" if decay != 1.0 else ""
        print(
            f"Training {args.model} ({model.count_params():,} params) on {source}: "
            f"{counts}, {opt!r}{schedule}, batch {batch_size}{jobs}"
        )
    t0 = time.perf_counter()
    history = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=args.epochs,
        validation_data=(xv, yv),
        verbose=args.verbose,
        callbacks=callbacks,
        seed=args.seed,
    )
    elapsed = time.perf_counter() - t0
    if not history.epoch:
        print("No epoch finished; nothing to report.")
        return 1
    val_acc = history.history["val_accuracy"][-1]
    n_epochs = len(history.epoch)
    timing = (
        f"after {n_epochs} epoch{'s' if n_epochs > 1 else ''} "
        f"({elapsed:.1f}s, {len(x) * n_epochs / elapsed:,.0f} images/s including validation)"
    )
    if kind == "segment":
        iou = history.history["val_mean_iou"][-1]
        print(f"Validation per-pixel accuracy: {val_acc:.4f}, mean IoU: {iou:.4f} {timing}")
    else:
        print(f"Validation accuracy: {val_acc:.4f} {timing}")
    if args.save and root:
        model.save(args.save)
        print(f"Saved model to {args.save}")
    if args.plot and root:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: skipping --plot (pip install matplotlib)", file=sys.stderr)
        else:
            from fastconv.plot import plot_history

            plot_history(history, args.plot, title=f"{args.model} on {source}")
            print(f"Wrote learning curves to {args.plot}")
    return 0


def cmd_models(args) -> int:
    zoo = _zoo()
    rows = []
    for name, fn in zoo.MODELS.items():
        builder, shape = _resolve(name)[:2]
        rows.append((name, builder(shape), DATASETS[_dataset_of(name)], _design(fn.__doc__)))
    print(
        f"{len(rows)} networks of fastconv.models: small versions of the papers' CNNs (functional) and the "
        "seeds' tutorial CNNs (Sequential, hyphenated names).\n`train --model NAME` takes each name and "
        "trains it on the data set shown (MNIST is bundled; the others need --data DIR; --dataset picks "
        "another).\n"
    )
    header = ("name", "params", "input", "output", "data", "design")
    cells = [
        (name, f"{m.count_params():,}", str(m.input_shape), str(m.output_shape), data, doc)
        for name, m, data, doc in rows
    ]
    w = [max(len(header[i]), *(len(c[i]) for c in cells)) for i in range(5)]

    def line(c):
        return (
            f"{c[0]:<{w[0]}}  {c[1]:>{w[1]}}  {c[2]:<{w[2]}}  {c[3]:<{w[3]}}  {c[4]:<{w[4]}}  {c[5]}".rstrip()
        )

    print(line(header))
    for c in cells:
        print(line(c))
    return 0


def _design(doc):
    """The network a docstring's first line names, as plain text (no citation, count or markup)."""
    import re

    line = (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""
    return re.sub(r":\w+:`([^`]*)`", r"\1", line).split(" (")[0].split(": ")[0].rstrip(".")


# ---------------------------------------------------------------------------
# demo: compiled kernels vs the NumPy reference
# ---------------------------------------------------------------------------


def _demo_cases(rng, n=8):
    """``(label, fastconv fn, reference fn)`` on small shapes with batch ``n`` (same arguments for both)."""
    import fastconv
    from fastconv import reference as ref

    def arr(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    cases = []
    x = arr(n, 28, 28, 16)
    w = arr(3, 3, 16, 32)
    cases.append(
        (
            f"conv2d 3x3 16->32, {n}x28x28 same",
            lambda: fastconv.conv2d(x, w, padding="same"),
            lambda: ref.conv2d(x, w, padding="same"),
        )
    )
    ng = max(1, n // 2)
    xg = np.ascontiguousarray(x[:ng])
    dy = arr(ng, 28, 28, 32)
    cases.append(
        (
            f"conv2d_grad (dx, dw, db), {ng}x28x28 16->32",
            lambda: fastconv.conv2d_grad(dy, xg, w, padding="same"),
            lambda: ref.conv2d_grad(dy, xg, w, padding="same"),
        )
    )
    x1 = arr(2 * n, 28, 28, 1)
    w1 = arr(5, 5, 1, 8)
    cases.append(
        (
            f"conv2d 5x5 1->8 (first layer), {2 * n}x28x28",
            lambda: fastconv.conv2d(x1, w1, padding="same"),
            lambda: ref.conv2d(x1, w1, padding="same"),
        )
    )
    xd = arr(n, 28, 28, 32)
    wd = arr(3, 3, 32, 1)
    cases.append(
        (
            f"depthwise 3x3 32ch, {n}x28x28 same",
            lambda: fastconv.depthwise_conv2d(xd, wd, padding="same"),
            lambda: ref.depthwise_conv2d(xd, wd, padding="same"),
        )
    )
    cases.append(
        (
            f"max_pool2d 2x2, {n}x28x28x32",
            lambda: fastconv.max_pool2d(xd, 2),
            lambda: ref.max_pool2d(xd, 2),
        )
    )
    return cases


def _max_diff(a, b):
    if isinstance(a, (tuple, list)):
        return max(_max_diff(p, q) for p, q in zip(a, b) if p is not None and q is not None)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b)))) if a.size else 0.0


def cmd_demo(args) -> int:
    import statistics

    from fastconv import get_num_threads, set_num_threads, show_config

    if args.threads is not None:
        set_num_threads(args.threads)
    show_config()
    print()
    t_start = time.perf_counter()
    cases = _demo_cases(np.random.default_rng(0), args.batch)
    print(f"float32, {get_num_threads()} thread(s); median of up to {args.repeats} runs after a warm-up\n")
    header = f"{'kernel':<40} {'fastconv ms':>11} {'reference ms':>13} {'speed-up':>9}  {'max rel diff':>12}"
    print(header)
    print("-" * len(header))
    ok = True
    for label, fast, slow in cases:
        out_fast = fast()  # warm-up (and the result to compare)
        t0 = time.perf_counter()
        out_ref = slow()
        ref_times = [time.perf_counter() - t0]
        fast_times = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            fast()
            fast_times.append(time.perf_counter() - t0)
            over = time.perf_counter() - t_start > args.budget
            if i + 1 < min(args.repeats, 3) and not over:
                t0 = time.perf_counter()
                slow()
                ref_times.append(time.perf_counter() - t0)
            if over:
                break
        f_ms = statistics.median(fast_times) * 1e3
        r_ms = statistics.median(ref_times) * 1e3
        diff = _max_diff(out_fast, out_ref)
        ok &= diff < 1e-3
        speedup = r_ms / f_ms if f_ms > 0 else float("inf")
        sp = f"{speedup:.2f}x" if speedup < 10 else f"{speedup:.1f}x"
        print(f"{label:<40} {f_ms:>11.3f} {r_ms:>13.3f} {sp:>9}  {diff:>12.1e}")
    print(f"\n{time.perf_counter() - t_start:.1f}s in total. The reference is fastconv.reference (NumPy).")
    if not ok:
        print("WARNING: a kernel disagrees with the reference by more than 1e-3 (relative).")
        return 1
    return 0


def cmd_info(args) -> int:
    try:
        from fastconv import show_config
    except ImportError:
        show_config = None
    if show_config is None:
        import platform

        print(
            f"fastconv (configuration report unavailable in this build)\n  Python {platform.python_version()}, "
            f"NumPy {np.__version__}"
        )
        return 0
    text = show_config()
    if text is not None and not isinstance(text, str):  # pragma: no cover - a dict-returning variant
        print(text)
    return 0


def main(argv=None) -> int:
    """Run the command line; a usage mistake found after parsing (a data set that is not there,
    an output directory that does not exist) prints one line, ``python -m fastconv train: error:
    ...``, and exits with status 2 as argparse does for the mistakes it finds."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
