"""Feature maps of a convolutional layer: 10 MNIST digits (rows) x 10 filters (columns) of the first
conv layer of a small CNN after a short training, as the tutorials draw them.

    python examples/feature_maps.py --epochs 1 --out feature_maps.png
"""

import argparse

import numpy as np
from _common import mnist

from fastconv import plot
from fastconv.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastconv import Sequential


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--out", default="feature_maps.png")
    args = p.parse_args(argv)

    (x_train, y_train), (x_val, y_val) = mnist(args.limit)
    model = Sequential([
        Conv2D(16, 3, activation="relu", input_shape=(28, 28, 1)),
        MaxPooling2D(2),
        Conv2D(32, 3, activation="relu"),
        MaxPooling2D(2),
        Flatten(),
        Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, validation_data=(x_val, y_val), verbose=2)

    digits = np.stack([x_val[np.flatnonzero(y_val == d)[0]] for d in range(10)])  # one of each digit
    maps = model.layer_output(digits, 0)
    print(f"first conv layer output for 10 digits: {maps.shape}")
    try:
        plot.plot_feature_maps(model, 0, digits, n_filters=10, path=args.out)
        print(f"wrote {args.out}")
    except ImportError as e:
        print(e)
    return maps


if __name__ == "__main__":
    main()
