"""The MNIST CNN with l2 weight decay, dropout, augmentation and a best-model checkpoint, then
fine-tuned with its convolutional layers frozen on corrupted digits in the MNIST-C layout.

The MNIST-C folder (``<out>/mnist_c/<corruption>/{train,test}_{images,labels}.npy``) is made here
from the bundled validation digits with real corruptions: Gaussian noise, Gaussian blur and
random shifts (the real MNIST-C works the same way with ``--mnist-c DIR``).

    python examples/mnist_cnn_finetune.py --epochs 3 --out runs/mnist
"""

import argparse
import os

import numpy as np
from _common import mnist

from fastconv import datasets, filters, regularizers
from fastconv.augment import ImageAugmenter
from fastconv.callbacks import ModelCheckpoint
from fastconv.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastconv import Sequential
from fastconv.saving import load_model


def build_model(l2=1e-4, dropout=0.25):
    return Sequential([
        Conv2D(32, 3, activation="relu", kernel_regularizer=regularizers.l2(l2), input_shape=(28, 28, 1)),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu", kernel_regularizer=regularizers.l2(l2)),
        MaxPooling2D(2),
        Flatten(),
        Dropout(dropout),
        Dense(128, activation="relu", kernel_regularizer=regularizers.l2(l2)),
        Dropout(dropout),
        Dense(64, activation="relu", kernel_regularizer=regularizers.l2(l2)),
        Dense(10, activation="softmax", kernel_regularizer=regularizers.l2(l2)),
    ])  # fmt: skip


def make_mnist_c(images, labels, root, seed=0):
    """Write corrupted copies of ``images`` (N, 28, 28, 1) in [0, 1] in the MNIST-C layout (uint8)."""
    rng = np.random.default_rng(seed)
    shifted = np.empty_like(images)
    for i, img in enumerate(images):  # each digit moved by up to 4 pixels, like MNIST-C's translate
        dy, dx = rng.integers(-4, 5, size=2)
        shifted[i] = np.roll(img, (dy, dx), axis=(0, 1))
    corrupted = {
        "gaussian_noise": images + rng.normal(0.0, 0.35, images.shape),
        "gaussian_blur": filters.apply_filter(images, filters.gaussian(5, 1.2)),
        "shift": shifted,
    }
    split = len(images) * 3 // 4
    for name, x in corrupted.items():
        x = (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for part, sl in (("train", slice(0, split)), ("test", slice(split, None))):
            np.save(os.path.join(root, name, f"{part}_images.npy"), x[sl])
            np.save(os.path.join(root, name, f"{part}_labels.npy"), labels[sl])
    return root


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument(
        "--corruption", default="gaussian_noise", choices=["gaussian_noise", "gaussian_blur", "shift"]
    )
    p.add_argument("--mnist-c", default=None, metavar="DIR", help="a real MNIST-C directory instead")
    p.add_argument("--out", default="runs/mnist_cnn")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    (x_train, y_train), (x_val, y_val) = mnist(args.limit)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    augment = ImageAugmenter(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1,
                             zoom_range=0.1, seed=0)  # fmt: skip
    best = os.path.join(args.out, "mnist_cnn_best.npz")
    checkpoint = ModelCheckpoint(best, monitor="val_accuracy", save_best_only=True)
    model.fit(augment.flow(x_train, y_train, batch_size=128, seed=0), epochs=args.epochs,
              validation_data=(x_val, y_val), callbacks=[checkpoint], verbose=2)  # fmt: skip

    # Fine-tuning: reload the best checkpoint, freeze the convolutions, train the dense head.
    root = args.mnist_c or make_mnist_c(x_val, y_val, os.path.join(args.out, "mnist_c"))
    (xc_train, yc_train), (xc_test, yc_test) = datasets.load_mnist_c(root, args.corruption)
    xc_train, xc_test = xc_train.astype(np.float32) / 255.0, xc_test.astype(np.float32) / 255.0
    model = load_model(best)
    before = model.evaluate(xc_test, yc_test, verbose=0)[1]
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            layer.trainable = False
    frozen = [w.copy() for w in model.layers[0].get_weights()]
    model.fit(xc_train, yc_train, batch_size=64, epochs=args.finetune_epochs, verbose=2)
    after = model.evaluate(xc_test, yc_test, verbose=0)[1]
    unchanged = all(np.array_equal(a, b) for a, b in zip(frozen, model.layers[0].get_weights()))
    print(f"{args.corruption}: accuracy {before:.4f} before fine-tuning, {after:.4f} after "
          f"(frozen conv weights unchanged: {unchanged})")  # fmt: skip
    return before, after


if __name__ == "__main__":
    main()
