"""Metrics computed on a batch: counts that the training loop sums over an epoch.

A metric here returns ``(correct, total)`` so running values over batches of
different sizes are exact (Keras's running mean weighted by sample count).

``accuracy`` follows Keras's choice by shape: class scores ``(..., K)`` with
``K > 1`` compare ``argmax`` with the integer label (or the one-hot target's
``argmax``); a single output ``(..., 1)`` is thresholded at 0.5 (binary).
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy_counts", "get"]


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


_METRICS = {"accuracy": accuracy_counts, "acc": accuracy_counts}


def get(identifier):
    """``(name, fn)`` for a metric identifier (``"accuracy"`` / ``"acc"``)."""
    if isinstance(identifier, str) and identifier.lower() in _METRICS:
        name = "accuracy"
        return name, _METRICS[identifier.lower()]
    raise ValueError(f"Unknown metric: {identifier!r}. Supported: {sorted(_METRICS)}")
