"""The Fashion-MNIST selu CNN (435,306 parameters) and its SeparableConv2D variant (184,234):
a VGG-style stack of "same" 3x3 convolutions with selu and lecun_normal initialisation.

Reads Fashion-MNIST's four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, from the folder data/fashion of
https://github.com/zalandoresearch/fashion-mnist) from ``--data DIR``. Without it, the same
networks train on the bundled MNIST digits as a stand-in, and the first line of output says so.

    python examples/fashion_selu_cnn.py                       # bundled MNIST stand-in
    python examples/fashion_selu_cnn.py --data ~/fashion-mnist --epochs 5
    python examples/fashion_selu_cnn.py --logdir runs && tensorboard --logdir runs

``--logdir DIR`` writes TensorBoard logs as the tutorial does (``TensorBoard(logdir)``, one run
per network: ``DIR/selu_cnn`` and ``DIR/separable_cnn``; needs ``pip install 'fastconv[tensorboard]'``).
"""

import argparse
import os

from _common import fashion_mnist

from fastconv.callbacks import TensorBoard
from fastconv.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, SeparableConv2D
from fastconv import Sequential


def selu_cnn(separable=False):
    def conv(filters):
        if separable:
            return SeparableConv2D(filters, 3, padding="same", activation="selu")
        return Conv2D(filters, 3, padding="same", activation="selu", kernel_initializer="lecun_normal")

    return Sequential([
        Conv2D(32, 3, padding="same", activation="selu", kernel_initializer="lecun_normal",
               input_shape=(28, 28, 1)),
        conv(32), MaxPooling2D(2),
        conv(64), conv(64), MaxPooling2D(2),
        conv(128), conv(128), MaxPooling2D(2),
        Flatten(),
        Dense(128, activation="selu", kernel_initializer="lecun_normal"),
        Dropout(0.3),
        Dense(10, activation="softmax"),
    ], name="separable_cnn" if separable else "selu_cnn")  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="directory of Fashion-MNIST's four IDX files (default: the bundled MNIST digits as a stand-in)",
    )
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--logdir", default=None, metavar="DIR", help="write TensorBoard logs there (default: none)")
    args = p.parse_args(argv)

    try:
        ((x_train, y_train), (x_val, y_val)), source = fashion_mnist(args.data, args.limit)
    except (FileNotFoundError, ValueError) as e:  # one line and exit status 2, not a traceback
        p.error(f"--data: {e}")
    print(f"Training on {source}: {len(x_train):,} train / {len(x_val):,} validation images")
    results = {}
    for separable in (False, True):
        model = selu_cnn(separable)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        print(f"{model.name}: {model.count_params():,} parameters")
        callbacks = []
        if args.logdir:
            logdir = os.path.join(args.logdir, model.name)
            callbacks.append(TensorBoard(logdir))
        history = model.fit(x_train, y_train, batch_size=32, epochs=args.epochs,
                            validation_data=(x_val, y_val), verbose=2, callbacks=callbacks)  # fmt: skip
        results[model.name] = (model.count_params(), history.history["val_accuracy"][-1])
    for name, (params, acc) in results.items():
        print(f"{name:14s} {params:>9,} params   validation accuracy {acc:.4f}")
    return results


if __name__ == "__main__":
    main()
