"""TensorFlow's CIFAR-10 tutorial CNN (122,570 parameters) on CIFAR-10's binary version.

``--data DIR`` holds ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin`` (from
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, or its ``cifar-10-batches-bin`` folder).

    python examples/cifar10_cnn.py --data ~/cifar-10-batches-bin --epochs 10
"""

import argparse

import numpy as np

from fastconv import datasets
from fastconv.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastconv import Sequential

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, metavar="DIR", help="directory of CIFAR-10 binary batches")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    args = p.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(args.data)
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
        x_test, y_test = x_test[: max(args.limit // 4, 100)], y_test[: max(args.limit // 4, 100)]
    x_train, x_test = x_train.astype(np.float32) / 255.0, x_test.astype(np.float32) / 255.0

    model = cifar_cnn()
    model.summary()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        x_train, y_train, batch_size=64, epochs=args.epochs, validation_data=(x_test, y_test), verbose=2
    )
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    guess = model.predict(x_test[:8]).argmax(axis=-1)
    print(f"test accuracy {acc:.4f}; first predictions: {[CLASSES[g] for g in guess]}")
    return acc


if __name__ == "__main__":
    main()
