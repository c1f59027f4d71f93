"""Command line: ``python -m fastconv {train,models,info}``.

``train`` trains one of the seeds' CNNs on the MNIST bundled with fastconv
(8,000 training / 2,000 validation images) or on a data directory, shows the
Keras-style progress bar, prints the validation accuracy, and optionally saves
the model and a learning-curve PNG::

    python -m fastconv train --model lenet5 --epochs 2
    python -m fastconv train --model mnist-cnn --epochs 2 --save mnist.npz --plot curves.png
    python -m fastconv train --model fashion-cnn --data ~/fashion-mnist --epochs 5

``cifar-cnn`` reads CIFAR-10's binary batches from ``--data``; without it, it
trains on the bundled MNIST digits zero-padded to 32x32 and copied to three
channels (so the same network runs offline).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

__all__ = ["build_parser", "main"]


def _seed_models():
    from fastconv._seed_models import SEED_MODELS

    return SEED_MODELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastconv",
        description="fastconv: fast CPU convolutions and a Keras-like trainer.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{train,models,info}")
    sub.required = True

    names = list(_seed_models())
    t = sub.add_parser(
        "train",
        help="train one of the seeds' CNNs (bundled MNIST by default)",
        description="Train one of the seeds' CNNs on the bundled MNIST (first 8,000 images; the last "
        "2,000 validate) or on --data, with a progress bar; prints the validation accuracy.",
    )
    t.add_argument("--model", choices=names, default="lenet5", help="network to train (default: lenet5)")
    t.add_argument("--epochs", type=int, default=2, help="number of epochs (default: 2)")
    t.add_argument(
        "--batch-size", type=int, default=None, help="batch size (default: per model, e.g. 64 for lenet5)"
    )
    t.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="directory with the four MNIST / Fashion-MNIST IDX files (CIFAR-10 binary batches for "
        "cifar-cnn); default: the bundled MNIST",
    )
    t.add_argument("--save", default=None, metavar="PATH", help="save the trained model to PATH (.npz)")
    t.add_argument(
        "--plot", default=None, metavar="PNG", help="write the learning curves to PNG (needs matplotlib)"
    )
    t.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training images only (and validate on max(N // 4, 200))",
    )
    t.add_argument(
        "--val-limit", type=int, default=None, metavar="N", help="validate on the first N test images"
    )
    t.add_argument(
        "--optimizer", choices=["sgd", "adam"], default=None, help="optimizer (default: per model)"
    )
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: per model)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    t.add_argument("--seed", type=int, default=0, help="seed for weights, dropout and shuffling (default: 0)")
    t.add_argument("--threads", type=int, default=None, help="number of threads for the kernels")
    t.add_argument(
        "--verbose",
        type=int,
        choices=[0, 1, 2],
        default=1,
        help="0 silent, 1 progress bar, 2 one line per epoch",
    )
    t.set_defaults(func=cmd_train)

    m = sub.add_parser(
        "models",
        help="list the seed models with their parameter counts",
        description="List the networks `train --model` accepts, with parameter counts.",
    )
    m.set_defaults(func=cmd_models)

    i = sub.add_parser(
        "info",
        help="print build and runtime configuration",
        description="Print fastconv's version, compiler, OpenMP, SIMD level and threads.",
    )
    i.set_defaults(func=cmd_info)
    return parser


def _load_data(args, input_shape):
    from fastconv import datasets

    if args.model == "cifar-cnn" and args.data is not None:
        (x, y), (xv, yv) = datasets.load_cifar10(args.data)
        source = f"CIFAR-10 from {args.data}"
    else:
        (x, y), (xv, yv) = datasets.load_mnist(args.data)
        source = (
            f"IDX files from {args.data}" if args.data else "bundled MNIST (8,000 train / 2,000 validation)"
        )
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    val_limit = args.val_limit
    if val_limit is None and args.limit is not None:
        val_limit = max(args.limit // 4, 200)
    if val_limit is not None:
        xv, yv = xv[:val_limit], yv[:val_limit]
    return _to_input(x, input_shape), y, _to_input(xv, input_shape), yv, source


def _to_input(x, input_shape):
    """uint8 images -> float32 in [0, 1] shaped ``(N, *input_shape)`` (padding / channel copies for
    28x28 grey digits fed to a 32x32x3 network)."""
    x = np.asarray(x, dtype=np.float32) / 255.0
    if x.ndim == 3:
        x = x[..., None]
    h, w, c = input_shape
    if x.shape[1:3] != (h, w):
        ph, pw = h - x.shape[1], w - x.shape[2]
        if ph < 0 or pw < 0:
            raise SystemExit(f"error: images {x.shape[1:3]} are larger than the network input {(h, w)}")
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    if x.shape[-1] != c:
        if x.shape[-1] != 1:
            raise SystemExit(f"error: images have {x.shape[-1]} channels, the network expects {c}")
        x = np.repeat(x, c, axis=-1)
    return np.ascontiguousarray(x)


def cmd_train(args) -> int:
    from fastconv import initializers, optimizers

    if args.epochs < 1:
        raise SystemExit("error: --epochs must be >= 1")
    if args.threads is not None:
        try:
            from fastconv import set_num_threads

            set_num_threads(args.threads)
        except ImportError:
            print("note: --threads ignored (this build has no thread control)", file=sys.stderr)
    builder, input_shape, defaults = _seed_models()[args.model]
    initializers.set_seed(args.seed)
    x, y, xv, yv, source = _load_data(args, input_shape)
    model = builder(input_shape=input_shape)
    opt_name = args.optimizer or defaults["optimizer"]
    lr = args.lr if args.lr is not None else (defaults["lr"] if opt_name == defaults["optimizer"] else None)
    if opt_name == "sgd":
        opt = optimizers.SGD(learning_rate=lr if lr is not None else 0.01, momentum=args.momentum)
    else:
        opt = optimizers.Adam(learning_rate=lr if lr is not None else 1e-3)
    batch_size = args.batch_size or defaults["batch_size"]
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if args.verbose:
        print(
            f"Training {args.model} ({model.count_params():,} params) on {source}: "
            f"{len(x):,} train / {len(xv):,} validation images, {opt!r}, batch {batch_size}"
        )
    t0 = time.perf_counter()
    history = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=args.epochs,
        validation_data=(xv, yv),
        verbose=args.verbose,
        seed=args.seed,
    )
    elapsed = time.perf_counter() - t0
    if not history.epoch:
        print("No epoch finished; nothing to report.")
        return 1
    val_acc = history.history["val_accuracy"][-1]
    n_epochs = len(history.epoch)
    print(
        f"Validation accuracy: {val_acc:.4f} after {n_epochs} epoch{'s' if n_epochs > 1 else ''} "
        f"({elapsed:.1f}s, {len(x) * n_epochs / elapsed:,.0f} images/s including validation)"
    )
    if args.save:
        model.save(args.save)
        print(f"Saved model to {args.save}")
    if args.plot:
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
    rows = []
    for name, (builder, shape, defaults) in _seed_models().items():
        model = builder(input_shape=shape)
        rows.append(
            (name, f"{model.count_params():,}", str((None, *shape)), builder.__doc__.strip().splitlines()[0])
        )
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
