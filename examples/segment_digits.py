"""Per-pixel classification: segnet_small learns to separate each MNIST digit's pixels from the
background. Labels come from the images themselves (pixel > threshold, `models.digit_masks`), so
it runs offline on the bundled data; reported are per-pixel accuracy and mean IoU over the two
classes (the `"mean_iou"` metric: intersection / union per class, counted over all pixels).

    python examples/segment_digits.py --epochs 3
"""

import argparse

from _common import mnist

from fastconv import metrics, models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--threshold", type=float, default=0.5)
    args = p.parse_args(argv)

    (x_train, _), (x_val, _) = mnist(args.limit)
    y_train = models.digit_masks(x_train, args.threshold)  # (N, 28, 28): 1 = digit, 0 = background
    y_val = models.digit_masks(x_val, args.threshold)
    model = models.segnet_small((28, 28, 1), classes=2)  # (N, 28, 28, 2): a class score per pixel
    model.summary()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "mean_iou"])
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, validation_data=(x_val, y_val), verbose=2)

    _, accuracy, iou = model.evaluate(x_val, y_val, verbose=0)
    print(f"validation: per-pixel accuracy {accuracy:.4f}, mean IoU {iou:.4f}")
    # the same figure from the predictions, one class map per image
    pred = model.predict(x_val)
    assert abs(metrics.MeanIoU()(y_val, pred) - iou) < 1e-9
    return accuracy, iou


if __name__ == "__main__":
    main()
