"""Metrics (Keras names and definitions) computed on a batch as additive state that the training
loop sums over an epoch.

Design notes
------------
* A metric is an object with ``update(y_true, y_pred) -> state`` (a tuple of
  numbers or NumPy arrays for one batch) and ``result(state) -> float``. The
  loops add batch states element by element (``merge``), so values over batches
  of different sizes are exact over the epoch: the accuracies keep
  ``(correct, total)``, the mean-error metrics ``(sum of per-sample values,
  samples)``, ``AUC`` / ``Precision`` / ``Recall`` the confusion counts per
  threshold, ``mean_iou`` per-class ``(intersection, union)`` pixel counts,
  which a mean of per-batch values could not reproduce.
* Names: a metric given as a string is logged under that string (Keras's rule),
  so ``metrics=["acc"]`` logs ``acc`` / ``val_acc``; an object under its
  ``name`` (Keras's defaults: ``binary_accuracy``, ``auc``, ``precision``, ...).
* ``"accuracy"`` / ``"acc"`` resolve as Keras's ``compile`` does, by the shapes
  of the targets and the output: an output whose last axis is 1 gets
  ``BinaryAccuracy`` (threshold 0.5); targets of lower rank, or with a last
  axis of 1 against several classes, ``SparseCategoricalAccuracy``; otherwise
  ``CategoricalAccuracy``. The class ``Accuracy`` is Keras's exact-match
  accuracy (``y_true == y_pred``).
* ``AUC`` is Keras's: ``num_thresholds`` thresholds ``[-1e-7, 1/(n-1), ...,
  (n-2)/(n-1), 1 + 1e-7]``, a prediction counts as positive when it is *above* a
  threshold, every label and prediction is one binary decision
  (``multi_label=False``), and the ROC curve is integrated with Keras's
  trapezoids (``summation_method="interpolation"``; "minoring" and
  "majoring" too).
* ``mean_iou`` is Keras's ``MeanIoU``: per class ``IoU = TP / (TP + FP + FN)``
  from the confusion counts accumulated over all batches, averaged over the
  classes that occur in the labels or the predictions.
* Fused softmax outputs: the trainer computes the loss from logits; metrics
  that read only the argmax (the accuracies, ``mean_iou``) get the logits, the
  others (``uses_probabilities``) get the softmax of them.

Examples
--------
>>> import numpy as np
>>> m = get("mean_iou")
>>> y_true = np.array([[0, 0], [1, 1]])              # labels of one 2x2 image
>>> scores = np.eye(2)[np.array([[0, 1], [1, 1]])]   # predictions 0 1 / 1 1 as one-hot scores
>>> state = m.update(y_true[None], scores[None])
>>> round(m.result(state), 4)                        # class 0: 1/2, class 1: 2/3
0.5833
>>> auc = get("auc")
>>> round(auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 4)
0.75
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AUC",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "MeanAbsoluteError",
    "MeanIoU",
    "MeanSquaredError",
    "Metric",
    "Precision",
    "Recall",
    "SparseCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "accuracy_counts",
    "deserialize",
    "get",
    "merge",
    "serialize",
]

EPSILON = 1e-7


def _same_rank(t, p):
    """Keras's ``squeeze_or_expand_to_same_rank`` for targets against predictions: a trailing axis
    of 1 on one side only is dropped or added so both have the same shape where they can."""
    t = np.asarray(t)
    p = np.asarray(p)
    if t.ndim == p.ndim + 1 and t.shape[-1] == 1:
        t = t.reshape(t.shape[:-1])
    elif p.ndim == t.ndim + 1 and p.shape[-1] == 1:
        t = t.reshape(p.shape)
    return t, p


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


def _kind(y_true, y_pred):
    """Keras's ``is_binary_or_sparse_categorical``: "binary", "sparse" or "categorical"."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    p_last = p.shape[-1] if p.ndim else 1
    t_last = t.shape[-1] if t.ndim else 1
    if p_last == 1:
        return "binary"
    if t.ndim < p.ndim or (t_last == 1 and p_last > 1):
        return "sparse"
    return "categorical"


def _binary_counts(y_true, y_pred, threshold=0.5):
    t, p = _same_rank(y_true, y_pred)
    pred = (p > threshold).astype(np.float64)
    if t.shape != pred.shape:
        t = t.reshape(pred.shape)
    return int(np.count_nonzero(t.astype(np.float64) == pred)), int(pred.size)


def accuracy_counts(y_true, y_pred):
    """``(number correct, number of positions)`` for one batch, with the accuracy Keras picks for
    the string ``"accuracy"`` (binary, sparse or categorical, by the shapes)."""
    p = np.asarray(y_pred)
    kind = _kind(y_true, p)
    if kind == "binary":
        return _binary_counts(y_true, p)
    pred = p.argmax(axis=-1)
    t = np.asarray(y_true)
    t = t.argmax(axis=-1) if kind == "categorical" else t.reshape(pred.shape)
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
    into the reported value. ``name`` is the log name."""

    name = "metric"
    #: False for metrics that read only the argmax of the output (they may be given logits).
    uses_probabilities = True

    def __init__(self, name=None):
        if name is not None:
            self.name = str(name)

    def update(self, y_true, y_pred) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self, state) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, y_true, y_pred) -> float:
        """The metric on one batch."""
        return self.result(self.update(y_true, y_pred))

    def _options(self) -> dict:
        return {}

    def get_config(self) -> dict:
        return {"name": self.name, **self._options()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({opts})"


class _Ratio(Metric):
    """A metric whose state is ``(sum, count)`` and whose value is their ratio."""

    def result(self, state):
        total, count = state
        return float(total) / count if count else 0.0


class _AutoAccuracy(_Ratio):
    """The strings ``"accuracy"`` / ``"acc"``: Keras's choice of binary, sparse or categorical
    accuracy by the shapes (see the module notes), logged under the string given."""

    name = "accuracy"
    uses_probabilities = False  # binary outputs are never fused (one sigmoid unit)

    def update(self, y_true, y_pred):
        return accuracy_counts(y_true, y_pred)


class Accuracy(_Ratio):
    """Keras's ``Accuracy``: the fraction of elements where ``y_true == y_pred`` exactly (for class
    scores use ``"accuracy"``, ``CategoricalAccuracy`` or ``SparseCategoricalAccuracy``)."""

    name = "accuracy"

    def update(self, y_true, y_pred):
        t, p = _same_rank(y_true, y_pred)
        t = np.broadcast_to(t, p.shape) if t.shape != p.shape else t
        return int(np.count_nonzero(t == p)), int(p.size)


class BinaryAccuracy(_Ratio):
    """Keras's ``BinaryAccuracy(threshold=0.5)``: predictions above ``threshold`` count as 1 and are
    compared with the targets element by element."""

    name = "binary_accuracy"

    def __init__(self, threshold=0.5, name=None):
        super().__init__(name=name)
        self.threshold = float(threshold)

    def update(self, y_true, y_pred):
        return _binary_counts(y_true, y_pred, self.threshold)

    def _options(self):
        return {"threshold": self.threshold}


class CategoricalAccuracy(_Ratio):
    """Keras's ``CategoricalAccuracy``: ``argmax(y_true) == argmax(y_pred)`` for one-hot targets."""

    name = "categorical_accuracy"
    uses_probabilities = False

    def update(self, y_true, y_pred):
        p = np.asarray(y_pred)
        t = np.asarray(y_true)
        if t.shape != p.shape:
            raise ValueError(
                f"{self.name}: one-hot y_true of shape {p.shape} expected (integer labels: use "
                f"sparse_categorical_accuracy). Received: y_true.shape={t.shape}"
            )
        pred = p.argmax(axis=-1)
        return int(np.count_nonzero(pred == t.argmax(axis=-1))), int(pred.size)


class SparseCategoricalAccuracy(_Ratio):
    """Keras's ``SparseCategoricalAccuracy``: integer labels ``(N,)`` / ``(N, 1)`` against
    ``argmax(y_pred)``."""

    name = "sparse_categorical_accuracy"
    uses_probabilities = False

    def update(self, y_true, y_pred):
        p = np.asarray(y_pred)
        pred = p.argmax(axis=-1)
        t = np.asarray(y_true)
        if t.size != pred.size:
            raise ValueError(
                f"{self.name}: integer labels of shape {pred.shape} expected. Received: y_true.shape={t.shape}"
            )
        return int(np.count_nonzero(pred == t.reshape(pred.shape))), int(pred.size)


def _in_top_k(labels, p, k):
    """Keras's ``in_top_k``: the label's score has fewer than ``k`` scores strictly above it (ties
    count for the label; a NaN score never counts)."""
    at = np.take_along_axis(p, labels[..., None].astype(np.int64), axis=-1)
    at = np.where(np.isnan(at), -np.inf, at)
    return (p > at).sum(axis=-1) < k


class TopKCategoricalAccuracy(_Ratio):
    """Keras's ``TopKCategoricalAccuracy(k=5)``: the one-hot target's class is among the ``k``
    highest scores."""

    name = "top_k_categorical_accuracy"

    def __init__(self, k=5, name=None):
        super().__init__(name=name)
        self.k = int(k)

    def _labels(self, y_true, p):
        return np.asarray(y_true).argmax(axis=-1)

    def update(self, y_true, y_pred):
        p = np.asarray(y_pred)
        hit = _in_top_k(self._labels(y_true, p).reshape(p.shape[:-1]), p, self.k)
        return int(np.count_nonzero(hit)), int(hit.size)

    def _options(self):
        return {"k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Keras's ``SparseTopKCategoricalAccuracy(k=5)``: the integer label is among the ``k`` highest
    scores."""

    name = "sparse_top_k_categorical_accuracy"

    def _labels(self, y_true, p):
        return _labels_for(y_true, p, self.name)


class _MeanOfPerSample(Metric):
    """Keras's ``MeanMetricWrapper`` of a per-sample function: state ``(sum of the per-sample
    values, number of samples)``."""

    def update(self, y_true, y_pred):
        p = np.asarray(y_pred, dtype=np.float64)
        t, p = _same_rank(y_true, p)
        t = t.astype(np.float64).reshape(p.shape) if t.size == p.size else t.astype(np.float64)
        e = self._elements(t, p)
        per_sample = e.reshape(len(e), -1).mean(axis=1) if e.ndim > 1 else e
        return float(per_sample.sum()), int(per_sample.size)

    def result(self, state):
        total, count = state
        return float(total) / count if count else 0.0


class MeanAbsoluteError(_MeanOfPerSample):
    """Keras's ``MeanAbsoluteError`` metric ("mae")."""

    name = "mean_absolute_error"

    def _elements(self, t, p):
        return np.abs(t - p)


class MeanSquaredError(_MeanOfPerSample):
    """Keras's ``MeanSquaredError`` metric ("mse")."""

    name = "mean_squared_error"

    def _elements(self, t, p):
        return np.square(t - p)


def _confusion(y_true, y_pred, thresholds):
    """``(tp, fp, tn, fn)`` per threshold (int64 arrays): a prediction is positive when it is above
    the threshold; a target is positive when it is not 0."""
    t, p = _same_rank(y_true, y_pred)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    t = np.asarray(t).reshape(-1)
    if t.size != p.size:
        raise ValueError(
            f"y_true has {t.size} values but y_pred has {p.size}: they must have the same shape. "
            f"Received: y_true.shape={np.shape(y_true)}, y_pred.shape={np.shape(y_pred)}"
        )
    pos = t != 0
    thr = np.asarray(thresholds, dtype=np.float64)
    sp = np.sort(p[pos])
    sn = np.sort(p[~pos])
    tp = sp.size - np.searchsorted(sp, thr, side="right")
    fp = sn.size - np.searchsorted(sn, thr, side="right")
    return tp.astype(np.int64), fp.astype(np.int64), (sn.size - fp).astype(np.int64), (sp.size - tp).astype(np.int64)


def _top_k_mask(p, k):
    """Keep the ``k`` highest scores per row, others become -inf (Keras's ``_filter_top_k``)."""
    idx = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    out = np.full_like(p, -np.inf, dtype=np.float64)
    np.put_along_axis(out, idx, np.take_along_axis(p, idx, axis=-1), axis=-1)
    return out


class _ThresholdMetric(Metric):
    """Precision / Recall: confusion counts at ``thresholds`` (default 0.5; -inf with ``top_k``)."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        super().__init__(name=name)
        self._scalar = thresholds is None or np.ndim(thresholds) == 0
        if thresholds is None:
            thresholds = -np.inf if top_k is not None else 0.5
        self.thresholds = [float(v) for v in np.atleast_1d(thresholds)]
        self.top_k = None if top_k is None else int(top_k)
        self.class_id = None if class_id is None else int(class_id)

    def update(self, y_true, y_pred):
        p = np.asarray(y_pred, dtype=np.float64)
        t, p = _same_rank(y_true, p)
        if self.top_k is not None:
            p = _top_k_mask(p, self.top_k)
        if self.class_id is not None:
            t, p = np.asarray(t)[..., self.class_id], p[..., self.class_id]
        tp, fp, _, fn = _confusion(t, p, self.thresholds)
        return tp, fp, fn

    def _value(self, num, den):
        v = np.where(den > 0, num / np.maximum(den, 1), 0.0)
        return float(v[0]) if self._scalar else v

    def _options(self):
        opts = {}
        if not (self._scalar and self.thresholds[0] in (0.5, -np.inf)):
            opts["thresholds"] = self.thresholds[0] if self._scalar else list(self.thresholds)
        if self.top_k is not None:
            opts["top_k"] = self.top_k
        if self.class_id is not None:
            opts["class_id"] = self.class_id
        return opts


class Precision(_ThresholdMetric):
    """Keras's ``Precision(thresholds=None, top_k=None, class_id=None)``: ``TP / (TP + FP)`` over
    every element (0 when nothing is predicted positive). A list of thresholds gives an array."""

    name = "precision"

    def result(self, state):
        tp, fp, _ = (np.asarray(s) for s in state)
        return self._value(tp, tp + fp)


class Recall(_ThresholdMetric):
    """Keras's ``Recall(thresholds=None, top_k=None, class_id=None)``: ``TP / (TP + FN)``."""

    name = "recall"

    def result(self, state):
        tp, _, fn = (np.asarray(s) for s in state)
        return self._value(tp, tp + fn)


class AUC(Metric):
    """Keras's ``AUC(num_thresholds=200, curve="ROC", summation_method="interpolation",
    thresholds=None, from_logits=False)``, area under the ROC curve from confusion counts at fixed
    thresholds (see the module notes). ``multi_label=True`` and the "PR" curve are not available."""

    name = "auc"

    def __init__(
        self,
        num_thresholds=200,
        curve="ROC",
        summation_method="interpolation",
        name=None,
        thresholds=None,
        multi_label=False,
        from_logits=False,
    ):
        super().__init__(name=name)
        if str(curve).upper() != "ROC":
            raise NotImplementedError(f'AUC: only curve="ROC" is available. Received: curve={curve!r}')
        if multi_label:
            raise NotImplementedError("AUC: multi_label=True is not available.")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(
                'AUC: summation_method must be "interpolation", "minoring" or "majoring". '
                f"Received: summation_method={summation_method!r}"
            )
        if thresholds is not None:
            inner = sorted(float(v) for v in thresholds)
            self.num_thresholds = len(inner) + 2
        else:
            if int(num_thresholds) <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. Received: num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)]
        self._given_thresholds = None if thresholds is None else inner
        self.thresholds = np.array([0.0 - EPSILON, *inner, 1.0 + EPSILON])
        self.curve = "ROC"
        self.summation_method = summation_method
        self.from_logits = bool(from_logits)

    def update(self, y_true, y_pred):
        p = np.asarray(y_pred, dtype=np.float64)
        if self.from_logits:
            p = 0.5 * (1.0 + np.tanh(0.5 * p))
        return _confusion(y_true, p, self.thresholds)

    def result(self, state):
        tp, fp, tn, fn = (np.asarray(s, dtype=np.float64) for s in state)
        tpr = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
        fpr = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=(fp + tn) > 0)
        if self.summation_method == "interpolation":
            heights = (tpr[:-1] + tpr[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(tpr[:-1], tpr[1:])
        else:
            heights = np.maximum(tpr[:-1], tpr[1:])
        return float(np.sum((fpr[:-1] - fpr[1:]) * heights))

    def _options(self):
        opts = {}
        if self._given_thresholds is not None:
            opts["thresholds"] = list(self._given_thresholds)
        elif self.num_thresholds != 200:
            opts["num_thresholds"] = self.num_thresholds
        if self.summation_method != "interpolation":
            opts["summation_method"] = self.summation_method
        if self.from_logits:
            opts["from_logits"] = True
        return opts


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
    uses_probabilities = False

    def __init__(self, num_classes=None, name=None):
        super().__init__(name=name)
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

    def _options(self):
        return {} if self.num_classes is None else {"num_classes": self.num_classes}


_CLASSES = (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    AUC,
    Precision,
    Recall,
    MeanAbsoluteError,
    MeanSquaredError,
    MeanIoU,
)
# Keras's string names: each class's default name (its snake-case name) and the short aliases;
# "accuracy" / "acc" are resolved by shape (``_AutoAccuracy``). Matched case-insensitively.
_METRICS = {cls.name: cls for cls in _CLASSES if cls is not Accuracy}
_METRICS.update(
    {
        "accuracy": _AutoAccuracy,
        "acc": _AutoAccuracy,
        "mae": MeanAbsoluteError,
        "mse": MeanSquaredError,
        "meaniou": MeanIoU,
        "iou": MeanIoU,
    }
)
_BY_CLASS_NAME = {cls.__name__.lower(): cls for cls in _CLASSES}


def get(identifier) -> Metric:
    """A metric from its Keras name (logged under that name: ``"accuracy"`` / ``"acc"``,
    ``"binary_accuracy"``, ``"categorical_accuracy"``, ``"sparse_categorical_accuracy"``,
    ``"top_k_categorical_accuracy"``, ``"sparse_top_k_categorical_accuracy"``, ``"auc"``,
    ``"precision"``, ``"recall"``, ``"mae"`` / ``"mean_absolute_error"``, ``"mse"`` /
    ``"mean_squared_error"``, ``"mean_iou"``), a class name (``"AUC"``), a config dict
    (:func:`serialize`), a class or an instance."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            cname = str(identifier["class_name"])
            cls = _BY_CLASS_NAME.get(cname.lower()) or (_AutoAccuracy if cname == "_AutoAccuracy" else None)
            if cls is not None:
                return cls.from_config(dict(identifier.get("config") or {}))
            raise ValueError(f"Unknown metric class: {cname!r}. Supported: {sorted(c.__name__ for c in _CLASSES)}")
        config = dict(identifier)  # older files: {"name": "mean_iou", "num_classes": 3}
        name = str(config.pop("name", ""))
        cls = _METRICS.get(name.lower())
        if cls is not None:
            return cls(name=name, **config)
    if isinstance(identifier, str):
        cls = _METRICS.get(identifier.lower()) or _BY_CLASS_NAME.get(identifier.lower())
        if cls is not None:
            return cls(name=identifier)
    raise ValueError(f"Unknown metric: {identifier!r}. Supported: {sorted(_METRICS)}")


def serialize(metric):
    """A JSON-able form :func:`get` reads back: the name when that alone rebuilds the metric,
    else ``{"class_name", "config"}``."""
    m = get(metric)
    cls = _METRICS.get(m.name.lower())
    if type(m) is cls and not m._options():
        return m.name
    return {"class_name": type(m).__name__, "config": m.get_config()}


def deserialize(config) -> Metric:
    return get(config)
