"""ResNet-small against the same network without its skip connections ("plain"), trained alike on
the bundled MNIST; the learning curves are drawn side by side.

    python examples/resnet_vs_plain.py --epochs 3 --out resnet_vs_plain.png
"""

import argparse

from _common import mnist

from fastconv import initializers, models
from fastconv import layers as L
from fastconv import Input, Model


def plain_small(input_shape=(28, 28, 1), classes=10, widths=(16, 32, 64)):
    """resnet_small's layers (conv-BN-ReLU pairs, stride 2 per stage) without shortcuts."""
    x = inputs = Input(input_shape)
    x = L.Activation("relu")(L.BatchNormalization(momentum=0.9)(L.Conv2D(widths[0], 3, padding="same")(x)))
    for stage, width in enumerate(widths):
        for strides in (1 if stage == 0 else 2, 1):
            x = L.Conv2D(width, 3, strides=strides, padding="same", use_bias=False)(x)
            x = L.BatchNormalization(momentum=0.9)(x)
            x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return Model(inputs, L.Dense(classes, activation="softmax")(x), name="plain_small")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--out", default="resnet_vs_plain.png")
    args = p.parse_args(argv)

    (x_train, y_train), (x_val, y_val) = mnist(args.limit)
    histories = {}
    for build in (models.resnet_small, plain_small):
        initializers.set_seed(0)
        model = build()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        print(f"{model.name}: {model.count_params():,} parameters")
        h = model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, validation_data=(x_val, y_val),
                      verbose=2, seed=0)  # fmt: skip
        histories[model.name] = h.history

    for name, h in histories.items():
        print(f"{name:13s} val_accuracy per epoch: {[round(a, 4) for a in h['val_accuracy']]}")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no picture written")
        return histories
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    for i, metric in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, h in histories.items():
            epochs = range(1, len(h[metric]) + 1)
            ax.plot(epochs, h[metric], "-o", label=f"{name} train")
            ax.plot(epochs, h[f"val_{metric}"], "--s", label=f"{name} validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}")
    return histories


if __name__ == "__main__":
    main()
