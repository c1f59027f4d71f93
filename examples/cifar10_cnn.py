"""TensorFlow's CIFAR-10 tutorial CNN (122,570 parameters) on CIFAR-10's binary version.

``--data DIR`` holds ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin`` (unpack
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz; its ``cifar-10-batches-bin`` folder or
the folder above it both work). CIFAR-10 is not bundled with fastconv; without ``--data`` the same
network trains on a stand-in, the bundled MNIST digits zero-padded to 32x32 and copied to three
channels, and the output says so on its first line (its accuracy is MNIST's, not CIFAR-10's).

    python examples/cifar10_cnn.py                                   # stand-in, 2 epochs
    python examples/cifar10_cnn.py --data ~/cifar-10-batches-bin     # CIFAR-10, 10 epochs
    python examples/cifar10_cnn.py --logdir logs/fit && tensorboard --logdir logs/fit

``--logdir DIR`` writes TensorBoard logs as the tutorial does (``TensorBoard(log_dir=log_dir,
histogram_freq=1)``; needs ``pip install 'fastconv[tensorboard]'``).
"""

import argparse
import os

import numpy as np

from fastconv import datasets
from fastconv.callbacks import TensorBoard
from fastconv.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastconv import Sequential

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DIGITS = [str(d) for d in range(10)]


def cifar_cnn():
    return Sequential([
        Conv2D(32, 3, activation="relu", input_shape=(32, 32, 3)),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"),
        Flatten(),
        Dense(64, activation="relu"),
        Dense(10, activation="softmax"),
    ], name="cifar_cnn")  # fmt: skip


def load(path):
    """``(x_train, y_train), (x_test, y_test), class names, description``: CIFAR-10 from ``path``,
    or with ``path=None`` the bundled MNIST digits as 32x32x3 images (a stand-in)."""
    if path is not None:
        (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(path)
        return (x_train, y_train), (x_test, y_test), CLASSES, f"CIFAR-10 from {os.path.expanduser(path)}"
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()

    def as_rgb32(x):  # (N, 28, 28) -> (N, 32, 32, 3): 2 pixels of black border, grey copied to RGB
        return np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1)

    note = (
        "STAND-IN DATA: CIFAR-10 is not bundled with fastconv, so this run trains on the bundled MNIST "
        "digits padded to 32x32x3 (pass --data DIR with CIFAR-10's binary batches for the real thing)"
    )
    return (as_rgb32(x_train), y_train), (as_rgb32(x_test), y_test), DIGITS, note


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="directory of CIFAR-10 binary batches (default: the bundled MNIST digits as a stand-in)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: 10 on CIFAR-10, 2 on the stand-in")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--logdir", default=None, metavar="DIR", help="write TensorBoard logs there (default: none)")
    args = p.parse_args(argv)

    try:
        (x_train, y_train), (x_test, y_test), names, source = load(args.data)
    except (FileNotFoundError, ValueError) as e:  # one line and exit status 2, not a traceback
        p.error(f"--data: {e}")
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
        x_test, y_test = x_test[: max(args.limit // 4, 100)], y_test[: max(args.limit // 4, 100)]
    epochs = args.epochs or (10 if args.data else 2)
    print(source)
    print(f"{len(x_train):,} train / {len(x_test):,} test images, {epochs} epoch{'s' if epochs != 1 else ''}")
    x_train, x_test = x_train.astype(np.float32) / 255.0, x_test.astype(np.float32) / 255.0

    model = cifar_cnn()
    model.summary()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = []
    if args.logdir:
        log_dir = args.logdir
        tensorboard_callback = TensorBoard(log_dir=log_dir, histogram_freq=1)
        callbacks.append(tensorboard_callback)
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, validation_data=(x_test, y_test), verbose=2,
              callbacks=callbacks)  # fmt: skip
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    guess = model.predict(x_test[:8]).argmax(axis=-1)
    what = "test accuracy" if args.data else "test accuracy on the MNIST stand-in"
    print(f"{what} {acc:.4f}; first predictions: {[names[g] for g in guess]}")
    return acc


if __name__ == "__main__":
    main()
