"""Losses (Keras names): a value and its gradient with respect to the model output.

Design notes
------------
* A loss is an object with ``__call__(y_true, y_pred) -> float`` (mean over the
  samples, Keras's ``sum_over_batch_size`` reduction) and
  ``gradient(y_true, y_pred) -> dy`` (the gradient of that mean, so the
  ``1 / N`` is already in ``dy``); ``value_and_gradient`` returns both from one
  pass, which is what the training loop calls.
* The class axis is the last one. Any leading axes are samples: ``(N, K)`` for
  classifiers, ``(N, H, W, K)`` for per-pixel classifiers (the mean is taken
  over every position, as Keras does).
* Labels: the cross-entropies take integer labels shaped like the output
  without its class axis (``(N,)``), with a trailing 1 (``(N, 1)``), or
  one-hot / probability targets shaped like the output. Sparse and
  categorical cross-entropy differ only in which form Keras *expects*; both
  accept both here.
* Fused softmax + cross-entropy: when the model's last activation is softmax,
  the trainer hands the *logits* ``z`` to :meth:`value_and_gradient_from_logits`,
  which computes ``log softmax(z)`` stably (``z - max - log sum exp``) and the
  gradient ``(softmax(z) - onehot) / N`` directly, never dividing by a
  probability. Without fusion (probabilities in), Keras's rule is followed:
  probabilities are clipped to ``[1e-7, 1 - 1e-7]`` before the log.

Examples
--------
>>> import numpy as np
>>> loss = get("sparse_categorical_crossentropy")
>>> p = np.array([[0.9, 0.1], [0.2, 0.8]])
>>> round(loss(np.array([0, 1]), p), 4)
0.1643
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "EPSILON",
    "CategoricalCrossentropy",
    "Loss",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "categorical_crossentropy",
    "deserialize",
    "get",
    "mean_squared_error",
    "mse",
    "serialize",
    "sparse_categorical_crossentropy",
]

#: Keras's fuzz factor for clipping probabilities.
EPSILON = 1e-7


def _float_array(a):
    a = np.asarray(a)
    if a.dtype.kind != "f":
        a = a.astype(np.float32)
    return a


def _as_targets(y_true, y_pred, who):
    """Return ``("sparse", labels_int)`` or ``("dense", targets_float)`` for the class axis of ``y_pred``.

    ``y_pred`` is ``(..., K)``. Integer labels are shaped ``(...)`` or ``(..., 1)``;
    dense targets are shaped ``(..., K)``.
    """
    y = np.asarray(y_true)
    lead = y_pred.shape[:-1]
    k = y_pred.shape[-1]
    if y.shape == y_pred.shape and not (k == 1 and y.dtype.kind in "iub"):
        return "dense", y
    if y.shape == lead or (y.shape == (*lead, 1)):
        if y.shape != lead:
            y = y.reshape(lead)
        if y.dtype.kind == "f":
            yi = y.astype(np.int64)
            if not np.array_equal(yi, y):
                raise ValueError(
                    f"{who}: integer class labels expected. Received non-integer values in y_true."
                )
            y = yi
        elif y.dtype.kind not in "iub":
            raise TypeError(f"{who}: y_true must hold numbers. Received dtype {y.dtype}.")
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(
                f"{who}: labels must be in [0, {k}) for an output with {k} classes. "
                f"Received labels in [{int(y.min())}, {int(y.max())}]."
            )
        return "sparse", y
    raise ValueError(
        f"{who}: y_true must be integer labels of shape {lead} (or {(*lead, 1)}) or one-hot targets of "
        f"shape {y_pred.shape}. Received: y_true.shape={y.shape}, y_pred.shape={y_pred.shape}"
    )


def _take_class(a, labels):
    """``a[..., labels]`` per position: ``(..., K), (...) -> (...)``."""
    if a.ndim == 2:  # the common (N, K) case: plain fancy indexing is several times faster
        return a[np.arange(a.shape[0]), labels]
    return np.take_along_axis(a, labels[..., None], axis=-1)[..., 0]


def _n_positions(y_pred) -> int:
    return max(1, int(np.prod(y_pred.shape[:-1], dtype=np.int64)))


class Loss:
    """Base class. Subclasses implement :meth:`value_and_gradient`."""

    name = "loss"
    #: True when the loss can take logits of a softmax output (fused softmax + CE).
    fuses_softmax = False

    def __call__(self, y_true, y_pred) -> float:
        return self.value_and_gradient(y_true, y_pred, need_grad=False)[0]

    def gradient(self, y_true, y_pred):
        return self.value_and_gradient(y_true, y_pred)[1]

    def value_and_gradient(self, y_true, y_pred, need_grad=True):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}()"


class _CrossentropyBase(Loss):
    fuses_softmax = True

    def value_and_gradient(self, y_true, y_pred, need_grad=True):
        """Cross-entropy of probabilities ``y_pred (..., K)`` (clipped as Keras does)."""
        p = _float_array(y_pred)
        kind, t = _as_targets(y_true, p, self.name)
        n = _n_positions(p)
        pc = np.clip(p, EPSILON, 1.0 - EPSILON)
        if kind == "sparse":
            loss = -np.log(_take_class(pc, t)).sum() / n
        else:
            loss = -(t * np.log(pc)).sum() / n
        if not need_grad:
            return float(loss), None
        inside = (p > EPSILON) & (p < 1.0 - EPSILON)
        if kind == "sparse":
            dy = np.zeros_like(p)
            sel = _take_class(pc, t)
            np.put_along_axis(dy, t[..., None], (-1.0 / (n * sel))[..., None].astype(p.dtype), axis=-1)
        else:
            dy = (-t / (n * pc)).astype(p.dtype, copy=False)
        dy *= inside
        return float(loss), dy

    def value_and_gradient_from_logits(self, y_true, logits, need_grad=True):
        """Fused softmax + cross-entropy on ``logits (..., K)``.

        Returns ``(loss, dlogits)`` with ``dlogits = (softmax(logits) - onehot) / N``,
        computed without forming ``log(softmax)`` from probabilities (stable for
        any finite logits).
        """
        z = _float_array(logits)
        kind, t = _as_targets(y_true, z, self.name)
        n = _n_positions(z)
        shifted = z - z.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=-1, keepdims=True)
        log_s = np.log(s)
        if kind == "sparse":
            loss = (log_s[..., 0] - _take_class(shifted, t)).sum() / n
        else:
            loss = (t * (log_s - shifted)).sum() / n
        if not need_grad:
            return float(loss), None
        e /= s  # softmax probabilities, in place
        if kind == "sparse":
            flat = e.reshape(-1, z.shape[-1])
            flat[np.arange(flat.shape[0]), t.reshape(-1)] -= 1.0
        else:
            tsum = t.sum(axis=-1, keepdims=True)
            e *= tsum  # general targets: d/dz sum(t * -log softmax) = p * sum(t) - t
            e -= t
        e *= 1.0 / n
        return float(loss), e


class SparseCategoricalCrossentropy(_CrossentropyBase):
    """Cross-entropy for integer labels ``(N,)`` / ``(N, 1)`` (one-hot targets are accepted too)."""

    name = "sparse_categorical_crossentropy"


class CategoricalCrossentropy(_CrossentropyBase):
    """Cross-entropy for one-hot targets ``(N, K)`` (integer labels are accepted too)."""

    name = "categorical_crossentropy"


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true) ** 2)`` over all elements (Keras's mean over the last axis, then the batch)."""

    name = "mean_squared_error"

    def value_and_gradient(self, y_true, y_pred, need_grad=True):
        p = _float_array(y_pred)
        t = np.asarray(y_true)
        if t.shape != p.shape:
            if t.ndim == p.ndim - 1 and p.shape[-1] == 1 and t.shape == p.shape[:-1]:
                t = t.reshape(p.shape)
            else:
                raise ValueError(
                    f"mean_squared_error: y_true and y_pred must have the same shape. "
                    f"Received: y_true.shape={t.shape}, y_pred.shape={p.shape}"
                )
        diff = p - t.astype(p.dtype, copy=False)
        loss = float(np.square(diff).mean()) if diff.size else 0.0
        if not need_grad:
            return loss, None
        diff *= 2.0 / max(1, diff.size)
        return loss, diff


sparse_categorical_crossentropy = SparseCategoricalCrossentropy()
categorical_crossentropy = CategoricalCrossentropy()
mean_squared_error = MeanSquaredError()
mse = mean_squared_error

_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(identifier) -> Loss:
    """A loss from its name (``"sparse_categorical_crossentropy"``, ``"categorical_crossentropy"``,
    ``"mse"`` / ``"mean_squared_error"``), a class or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, dict):
        identifier = identifier.get("name")
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is not None:
            return cls()
    raise ValueError(
        f"Could not interpret loss identifier: {identifier!r}. Valid names are {sorted(_BY_NAME)}."
    )


def serialize(loss) -> str:
    """The name :func:`get` finds ``loss`` under."""
    return get(loss).name


def deserialize(config) -> Loss:
    return get(config)
