"""Metrics computed on a batch as additive state that the training loop sums over an epoch.

Design notes
------------
* A metric is an object with ``update(y_true, y_pred) -> state`` (a tuple of
  numbers or NumPy arrays for one batch) and ``result(state) -> float``. The
  loops add batch states element by element (``merge``), so running values over
  batches of different sizes are exact: ``accuracy`` keeps ``(correct, total)``,
  ``mean_iou`` keeps per-class ``(intersection, union)`` pixel counts, which a
  mean of per-batch IoUs could not reproduce.
* ``accuracy`` follows Keras's choice by shape: class scores ``(..., K)`` with
  ``K > 1`` compare ``argmax`` with the integer label (or the one-hot target's
  ``argmax``); a single output ``(..., 1)`` is thresholded at 0.5 (binary).
  Leading axes are all positions: ``(N, H, W, K)`` scores with ``(N, H, W)``
  labels give per-pixel accuracy.
* ``mean_iou`` is Keras's ``MeanIoU``: per class ``IoU = TP / (TP + FP + FN)``
  from the confusion counts accumulated over all batches, averaged over the
  classes that occur in the labels or the predictions (a class absent from both
  is skipped, as Keras divides by the number of valid entries). The class count
  is the last axis of the predictions unless ``num_classes`` is given.
* Metrics read the argmax of the model output, so they work on logits as well as
  on probabilities (the trainer hands them logits when it fuses softmax into the
  loss).

Examples
--------
>>> import numpy as np
>>> m = get("mean_iou")
>>> y_true = np.array([[0, 0], [1, 1]])              # labels of one 2x2 image
>>> scores = np.eye(2)[np.array([[0, 1], [1, 1]])]   # predictions 0 1 / 1 1 as one-hot scores
>>> state = m.update(y_true[None], scores[None])
>>> round(m.result(state), 4)                        # class 0: 1/2, class 1: 2/3
0.5833
"""

from __future__ import annotations

import numpy as np

__all__ = ["Accuracy", "MeanIoU", "Metric", "accuracy_counts", "get", "merge", "serialize"]


def _labels_for(y_true, y_pred, who):
    """Integer labels shaped like ``y_pred`` without its class axis (one-hot targets -> argmax)."""
    t = np.asarray(y_true)
    if t.shape == y_pred.shape and y_pred.shape[-1] > 1:
        return t.argmax(axis=-1)
    lead = y_pred.shape[:-1]
    if t.size != int(np.prod(lead, dtype=np.int64)):
        raise ValueError(
            f"{who}: y_true of shape {t.shape} does not match predictions of shape {y_pred.shape} "
            f"(expected labels {lead}, {(*lead, 1)} or one-hot {y_pred.shape})."
        )
    return t.reshape(lead)


def accuracy_counts(y_true, y_pred):
    """``(number correct, number of positions)`` for one batch."""
    p = np.asarray(y_pred)
    t = np.asarray(y_true)
    k = p.shape[-1] if p.ndim else 1
    if k == 1:
        pred = (p[..., 0] > 0.5) if p.ndim else p > 0.5
        t = t.reshape(pred.shape)
        return int(np.count_nonzero(pred == (t > 0.5))), int(pred.size)
    pred = p.argmax(axis=-1)
    if t.shape == p.shape:
        t = t.argmax(axis=-1)
    else:
        t = t.reshape(pred.shape)
    return int(np.count_nonzero(pred == t)), int(pred.size)


def merge(total, state):
    """Add a batch ``state`` into the running ``total`` (``None`` = nothing yet); returns the new total."""
    if total is None:
        return [np.array(s, copy=True) if isinstance(s, np.ndarray) else s for s in state]
    for i, s in enumerate(state):
        if isinstance(total[i], np.ndarray):
            total[i] += s
        else:
            total[i] = total[i] + s
    return total


class Metric:
    """Base class: ``update`` returns a batch's additive state, ``result`` turns a (summed) state
    into the reported value."""

    name = "metric"

    def update(self, y_true, y_pred) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self, state) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, y_true, y_pred) -> float:
        """The metric on one batch."""
        return self.result(self.update(y_true, y_pred))

    def get_config(self) -> dict:
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """Fraction of positions whose predicted class equals the label (Keras's ``"accuracy"``)."""

    name = "accuracy"

    def update(self, y_true, y_pred):
        return accuracy_counts(y_true, y_pred)

    def result(self, state):
        correct, total = state
        return float(correct) / total if total else 0.0


class MeanIoU(Metric):
    """Mean intersection-over-union over classes (Keras's ``MeanIoU``), name ``"mean_iou"``.

    Parameters
    ----------
    num_classes : int, optional
        Number of classes; default: the last axis of the predictions (2 for a single
        sigmoid output ``(..., 1)``, thresholded at 0.5).

    Works with per-pixel scores ``(N, H, W, K)`` and sparse labels ``(N, H, W)`` (or
    ``(N, H, W, 1)``, or one-hot ``(N, H, W, K)``), and with ``(N, K)`` classifier outputs.
    The state is the per-class ``(intersection, union)`` counts, summed over batches.
    """

    name = "mean_iou"

    def __init__(self, num_classes=None):
        self.num_classes = None if num_classes is None else int(num_classes)

    def update(self, y_true, y_pred):
        p = np.asarray(y_pred)
        if p.ndim == 0:
            raise ValueError("mean_iou: predictions need a class axis (..., K).")
        if p.shape[-1] == 1:
            pred = (p[..., 0] > 0.5).astype(np.int64)
            t = np.asarray(y_true).reshape(pred.shape)
            t = (t > 0.5).astype(np.int64) if t.dtype.kind == "f" else t.astype(np.int64)
            k = self.num_classes or 2
        else:
            pred = p.argmax(axis=-1)
            t = _labels_for(y_true, p, "mean_iou")
            k = self.num_classes or p.shape[-1]
        t = t.reshape(-1).astype(np.int64, copy=False)
        if t.size and (t.min() < 0 or t.max() >= k):
            raise ValueError(
                f"mean_iou: labels must be in [0, {k}). Received labels in [{int(t.min())}, {int(t.max())}]."
            )
        confusion = np.bincount(t * k + pred.reshape(-1).astype(np.int64, copy=False), minlength=k * k)
        confusion = confusion.reshape(k, k)
        inter = np.diagonal(confusion).astype(np.int64)
        union = confusion.sum(axis=0) + confusion.sum(axis=1) - inter
        return inter, union.astype(np.int64)

    def result(self, state):
        inter, union = (np.asarray(s) for s in state)
        valid = union > 0
        if not valid.any():
            return 0.0
        return float(np.mean(inter[valid] / union[valid]))

    def get_config(self):
        config = {"name": self.name}
        if self.num_classes is not None:
            config["num_classes"] = self.num_classes
        return config

    def __repr__(self):
        return f"MeanIoU(num_classes={self.num_classes})"


_METRICS = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "mean_iou": MeanIoU,
    "meaniou": MeanIoU,
    "iou": MeanIoU,
}


def get(identifier) -> Metric:
    """A metric from its name (``"accuracy"`` / ``"acc"``, ``"mean_iou"``), config dict, class or instance."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        config = dict(identifier)
        cls = _METRICS.get(str(config.pop("name", "")).lower())
        if cls is not None:
            return cls(**config)
    if isinstance(identifier, str) and identifier.lower() in _METRICS:
        return _METRICS[identifier.lower()]()
    raise ValueError(f"Unknown metric: {identifier!r}. Supported: {sorted(_METRICS)}")


def serialize(metric):
    """A JSON-able form :func:`get` reads back: the name, or a dict when the metric has options."""
    m = get(metric)
    config = m.get_config()
    return config["name"] if len(config) == 1 else config
