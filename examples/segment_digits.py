"""Per-pixel classification: segnet_small learns to separate each MNIST digit's pixels from the
background. Labels come from the images themselves (pixel > threshold), so it runs offline on the
bundled data; reported are per-pixel accuracy and mean IoU over the two classes.

    python examples/segment_digits.py --epochs 3
"""

import argparse

import numpy as np
from _common import mnist

from fastconv import models


def masks(images, threshold=0.5):
    """Per-pixel labels (N, H, W): 1 = digit (intensity > threshold), 0 = background."""
    return (images[..., 0] > threshold).astype(np.int64)


def mean_iou(y_true, y_pred, classes):
    """Mean over classes of |pred & true| / |pred | true| (classes absent from both are skipped)."""
    ious = []
    for c in range(classes):
        inter = np.count_nonzero((y_pred == c) & (y_true == c))
        union = np.count_nonzero((y_pred == c) | (y_true == c))
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--threshold", type=float, default=0.5)
    args = p.parse_args(argv)

    (x_train, _), (x_val, _) = mnist(args.limit)
    y_train, y_val = masks(x_train, args.threshold), masks(x_val, args.threshold)
    model = models.segnet_small((28, 28, 1), classes=2)
    model.summary()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])  # accuracy per pixel
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, validation_data=(x_val, y_val), verbose=2)

    pred = model.predict(x_val).argmax(axis=-1)  # (N, 28, 28)
    accuracy = float(np.mean(pred == y_val))
    iou = mean_iou(y_val, pred, 2)
    print(f"validation: per-pixel accuracy {accuracy:.4f}, mean IoU {iou:.4f}")
    return accuracy, iou


if __name__ == "__main__":
    main()
