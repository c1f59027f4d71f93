"""Losses (Keras names and definitions): a value and its gradient with respect to the model output.

Design notes
------------
* A loss is an object with ``__call__(y_true, y_pred, sample_weight=None) -> float``
  and ``value_and_gradient(y_true, y_pred, need_grad=True, sample_weight=None)
  -> (value, dy)``, which the training loop calls: one pass gives the value and
  ``dy = d value / d y_pred`` (the ``1 / N`` of the mean is already in ``dy``).
* Every loss first computes one value per *position* (Keras's per-sample loss:
  the output without its last axis, ``(N,)`` for ``(N, K)``, ``(N, H, W)`` for
  per-pixel outputs) and its derivative, then reduces as Keras's
  ``sum_over_batch_size`` does: ``sum(sample_weight * values) / values.size``.
  The element-wise losses (binary cross-entropy, MSE, MAE, Huber) take the mean
  over the last axis, KL divergence the sum, the cross-entropies the sum over the
  class axis, as in Keras.
* Shapes: ``y_true`` one rank below ``y_pred`` whose last axis is 1 (``(N,)``
  against ``(N, 1)``), or one rank above with a last axis of 1, is reshaped to
  ``y_pred``'s shape (Keras's ``squeeze_or_expand_to_same_rank``).
* The cross-entropies take integer labels shaped like the output without its
  class axis (``(N,)``), with a trailing 1 (``(N, 1)``), or one-hot /
  probability targets shaped like the output; sparse and categorical differ only
  in which form Keras *expects* (both accept both here).
* Keras's clipping, with its fuzz factor ``EPSILON = 1e-7``: on probabilities
  the categorical cross-entropies first renormalise ``p / sum(p)`` and clip to
  ``[1e-7, 1 - 1e-7]``; binary cross-entropy clips to ``[1e-7, 1 - 1e-7]``; KL
  divergence clips both arguments to ``[1e-7, 1]``. The gradient is that of the
  clipped function (zero where a value was clipped).
* ``from_logits=True``: the loss takes the raw scores (``log_softmax`` /
  ``log_sigmoid``, computed stably; the gradient is ``softmax - targets`` /
  ``sigmoid - targets``). ``label_smoothing`` follows Keras: categorical
  ``t * (1 - s) + s / K``, binary ``t * (1 - s) + s / 2``.
* Fused softmax + cross-entropy: when the model's last activation is a softmax
  and the loss takes probabilities (``from_logits=False``), the trainer hands
  the *logits* to :meth:`value_and_gradient_from_logits` (stable
  ``log softmax``, gradient ``(softmax - targets) / N``). The value then equals
  the unclipped cross-entropy (Keras's TensorFlow backend does the same).

Examples
--------
>>> import numpy as np
>>> loss = get("sparse_categorical_crossentropy")
>>> p = np.array([[0.9, 0.1], [0.2, 0.8]])
>>> round(loss(np.array([0, 1]), p), 4)
0.1643
>>> round(BinaryCrossentropy(from_logits=True)(np.array([[1.0], [0.0]]), np.array([[2.0], [-1.0]])), 4)
0.2201
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "EPSILON",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Huber",
    "KLDivergence",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "deserialize",
    "get",
    "huber",
    "kl_divergence",
    "kld",
    "mae",
    "mean_absolute_error",
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


def _one_hot(labels, k, dtype):
    out = np.zeros((*labels.shape, k), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out


def _aligned_targets(y_true, p, who):
    """``y_true`` as floats shaped like ``p`` (Keras's ``squeeze_or_expand_to_same_rank``)."""
    t = np.asarray(y_true)
    if t.dtype.kind not in "fiub":
        raise TypeError(f"{who}: y_true must hold numbers. Received dtype {t.dtype}.")
    if t.shape != p.shape:
        if p.ndim and p.shape[-1] == 1 and t.shape == p.shape[:-1]:
            t = t.reshape(p.shape)
        elif t.ndim == p.ndim + 1 and t.shape[-1] == 1 and t.shape[:-1] == p.shape:
            t = t.reshape(p.shape)
        else:
            raise ValueError(
                f"{who}: y_true and y_pred must have the same shape. "
                f"Received: y_true.shape={t.shape}, y_pred.shape={p.shape}"
            )
    return t.astype(p.dtype, copy=False)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _weights_for(sample_weight, shape, who):
    """Per-position weights broadcast to ``shape`` (the per-position loss shape); ``(N,)`` weights
    apply to every position of a sample."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape == shape:
        return w
    if w.ndim == len(shape) + 1 and w.shape[-1] == 1:
        w = w.reshape(w.shape[:-1])
    if w.ndim <= len(shape) and w.shape == shape[: w.ndim]:
        return w.reshape(w.shape + (1,) * (len(shape) - w.ndim))
    raise ValueError(
        f"{who}: sample_weight of shape {np.shape(sample_weight)} does not match the per-sample loss "
        f"of shape {shape}."
    )


class Loss:
    """Base class. Subclasses implement :meth:`_per_position` (Keras's per-sample loss values and
    their derivative with respect to ``y_pred``); the base class reduces them."""

    name = "loss"
    #: True when the loss can take logits of a softmax output (fused softmax + CE).
    fuses_softmax = False

    def __init__(self, name=None):
        if name is not None:
            self.name = str(name)

    def __call__(self, y_true, y_pred, sample_weight=None) -> float:
        return self.value_and_gradient(y_true, y_pred, need_grad=False, sample_weight=sample_weight)[0]

    def gradient(self, y_true, y_pred, sample_weight=None):
        return self.value_and_gradient(y_true, y_pred, sample_weight=sample_weight)[1]

    def value_and_gradient(self, y_true, y_pred, need_grad=True, sample_weight=None):
        """``(loss, dloss/dy_pred)``: the weighted per-position values summed and divided by their
        number (Keras's ``sum_over_batch_size``); ``dy`` is None when ``need_grad`` is False."""
        p = _float_array(y_pred)
        values, dvalues = self._per_position(y_true, p, need_grad)
        return self._reduce(values, dvalues, sample_weight, p.shape, need_grad)

    def _reduce(self, values, dvalues, sample_weight, shape, need_grad):
        n = max(1, values.size)
        if sample_weight is not None:
            w = _weights_for(sample_weight, values.shape, self.name)
            loss = float((values * w).sum() / n)
        else:
            w = None
            loss = float(values.sum() / n)
        if not need_grad:
            return loss, None
        scale = 1.0 / n if w is None else (w * (1.0 / n))[..., None].astype(dvalues.dtype)
        dvalues *= scale
        return loss, dvalues.reshape(shape)

    def _per_position(self, y_true, p, need_grad):  # pragma: no cover - abstract
        """``(values, dvalues)``: per-position loss ``p.shape[:-1]`` and its derivative (shaped like
        ``p``, a fresh array the caller may scale in place), or ``(values, None)``."""
        raise NotImplementedError

    def _options(self) -> dict:
        return {}

    def get_config(self) -> dict:
        return {"name": self.name, **self._options()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({opts})"


class _Elementwise(Loss):
    """A loss that is the mean over the last axis of an element-wise function ``e(t, p)``."""

    def _per_position(self, y_true, p, need_grad):
        if p.ndim == 0:
            p = p.reshape(1)
        t = _aligned_targets(y_true, p, self.name)
        e, de = self._elements(t, p, need_grad)
        k = p.shape[-1] if p.ndim else 1
        values = e.mean(axis=-1) if p.ndim else e
        if de is not None:
            de = np.asarray(de * (1.0 / max(k, 1)), dtype=p.dtype)
        return values, de

    def _elements(self, t, p, need_grad):  # pragma: no cover - abstract
        raise NotImplementedError


class MeanSquaredError(_Elementwise):
    """``mean((y_true - y_pred) ** 2, axis=-1)`` per sample (Keras's ``MeanSquaredError``, "mse")."""

    name = "mean_squared_error"

    def _elements(self, t, p, need_grad):
        d = p - t
        return d * d, (2.0 * d if need_grad else None)


class MeanAbsoluteError(_Elementwise):
    """``mean(|y_true - y_pred|, axis=-1)`` per sample (Keras's ``MeanAbsoluteError``, "mae").
    The gradient at ``y_pred == y_true`` is 0."""

    name = "mean_absolute_error"

    def _elements(self, t, p, need_grad):
        d = p - t
        return np.abs(d), (np.sign(d) if need_grad else None)


class Huber(_Elementwise):
    """Keras's ``Huber(delta=1.0)``: per element ``0.5 * e**2`` where ``|e| <= delta``, else
    ``delta * |e| - 0.5 * delta**2`` (``e = y_pred - y_true``), mean over the last axis."""

    name = "huber_loss"

    def __init__(self, delta=1.0, name=None):
        super().__init__(name=name)
        self.delta = float(delta)

    def _elements(self, t, p, need_grad):
        d = p - t
        a = np.abs(d)
        small = a <= self.delta
        e = np.where(small, 0.5 * d * d, self.delta * a - 0.5 * self.delta**2)
        de = np.where(small, d, self.delta * np.sign(d)) if need_grad else None
        return e, de

    def _options(self):
        return {"delta": self.delta}


class BinaryCrossentropy(_Elementwise):
    """Keras's ``BinaryCrossentropy(from_logits=False, label_smoothing=0.0)``: per element
    ``-(t log p + (1 - t) log(1 - p))`` with ``p`` clipped to ``[1e-7, 1 - 1e-7]`` (or
    ``log_sigmoid`` of logits), mean over the last axis."""

    name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name=name)
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def _elements(self, t, p, need_grad):
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            # softplus(z) - t z, written stably
            e = np.maximum(p, 0) - t * p + np.log1p(np.exp(-np.abs(p)))
            return e, (_sigmoid(p) - t if need_grad else None)
        pc = np.clip(p, EPSILON, 1.0 - EPSILON)
        e = -(t * np.log(pc) + (1.0 - t) * np.log(1.0 - pc))
        if not need_grad:
            return e, None
        inside = (p > EPSILON) & (p < 1.0 - EPSILON)
        return e, (-(t / pc) + (1.0 - t) / (1.0 - pc)) * inside

    def _options(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class KLDivergence(Loss):
    """Keras's ``KLDivergence`` ("kld", "kl_divergence"): ``sum(t * log(t / p), axis=-1)`` with both
    clipped to ``[1e-7, 1]``."""

    name = "kl_divergence"

    def _per_position(self, y_true, p, need_grad):
        t = _aligned_targets(y_true, p, self.name)
        tc = np.clip(t, EPSILON, 1.0)
        pc = np.clip(p, EPSILON, 1.0)
        values = (tc * np.log(tc / pc)).sum(axis=-1)
        if not need_grad:
            return values, None
        inside = (p > EPSILON) & (p < 1.0)
        return values, np.asarray(-(tc / pc) * inside, dtype=p.dtype)


class _CrossentropyBase(Loss):
    """Categorical cross-entropy over the last axis (see the module notes)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, ignore_class=None, name=None):
        super().__init__(name=name)
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    @property
    def fuses_softmax(self):
        return not self.from_logits

    def _targets(self, y_true, p):
        """``(kind, targets, mask)``: Keras's label smoothing applied, ``ignore_class`` labels
        replaced by 0 and reported in ``mask`` (per position, or None)."""
        mask = None
        if self.ignore_class is not None:
            y = np.asarray(y_true)
            if y.shape == p.shape[:-1] or y.shape == (*p.shape[:-1], 1):
                ignored = (y == self.ignore_class).reshape(p.shape[:-1])
                if ignored.any():
                    mask = ~ignored
                    y_true = np.where(y == self.ignore_class, 0, y)
        kind, t = _as_targets(y_true, p, self.name)
        if self.label_smoothing:
            if kind == "sparse":
                t = _one_hot(t, p.shape[-1], p.dtype)
                kind = "dense"
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / p.shape[-1]
        return kind, t, mask

    def _masked(self, values, dvalues, mask):
        """Keras's mask: ignored positions count 0 and the mean runs over the valid ones only."""
        if mask is None:
            return values, dvalues
        m = mask * (mask.size / (mask.sum() + EPSILON))
        values = values * m
        if dvalues is not None:
            dvalues *= m[..., None].astype(dvalues.dtype)
        return values, dvalues

    def _per_position(self, y_true, p, need_grad):
        if self.from_logits:
            return self._from_logits(y_true, p, need_grad)
        kind, t, mask = self._targets(y_true, p)
        s = p.sum(axis=-1, keepdims=True)
        q = p / s
        qc = np.clip(q, EPSILON, 1.0 - EPSILON)
        if kind == "sparse":
            values = -np.log(_take_class(qc, t))
        else:
            values = -(t * np.log(qc)).sum(axis=-1)
        if not need_grad:
            return self._masked(values, None, mask)
        inside = (q > EPSILON) & (q < 1.0 - EPSILON)
        if kind == "sparse":
            g = np.zeros_like(p)
            np.put_along_axis(g, t[..., None], (-1.0 / _take_class(qc, t))[..., None].astype(p.dtype), axis=-1)
        else:
            g = (-t / qc).astype(p.dtype, copy=False)
        g *= inside
        # through the renormalisation q = p / sum(p): dq_i/dp_j = (delta_ij - q_i) / s
        g -= (g * q).sum(axis=-1, keepdims=True)
        g /= s
        return self._masked(values, g, mask)

    def _from_logits(self, y_true, z, need_grad, softmax=None):
        kind, t, mask = self._targets(y_true, z)
        if softmax is not None and kind == "sparse" and z.size:
            return self._sparse_from_softmax(z, t, mask, need_grad, softmax)
        shifted = z - z.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=-1, keepdims=True)
        log_s = np.log(s)
        if kind == "sparse":
            values = log_s[..., 0] - _take_class(shifted, t)
        else:
            values = (t * (log_s - shifted)).sum(axis=-1)
        if not need_grad:
            return self._masked(values, None, mask)
        e /= s  # softmax probabilities, in place
        if kind == "sparse":
            flat = e.reshape(-1, z.shape[-1])
            flat[np.arange(flat.shape[0]), t.reshape(-1)] -= 1.0
        else:
            e *= t.sum(axis=-1, keepdims=True)  # general targets: d/dz sum(t * -log softmax) = p * sum(t) - t
            e -= t
        return self._masked(values, e, mask)

    def _sparse_from_softmax(self, z, t, mask, need_grad, softmax):
        """Integer labels with a given (compiled) softmax: the loss is -log p[label] and the gradient
        p - onehot, written into p. Positions whose p[label] is near the smallest normal number
        (logits ~87 apart in float32) take the log-sum-exp form, so the value stays exact there too.
        Several times faster than the NumPy form for a segmentation net's few classes per pixel
        (small reductions along a short last axis cost NumPy ~10 ns a row each)."""
        e = softmax(z)
        k = z.shape[-1]
        labels = t.reshape(-1)
        at = np.arange(0, labels.size * k, k, dtype=np.intp)   # flat index of each position's label
        at += labels
        flat = e.reshape(-1)
        pt = flat.take(at)
        with np.errstate(divide="ignore"):
            values = -np.log(pt)
        tiny = pt < np.finfo(z.dtype).tiny * 1e8
        if tiny.any():
            zs = z.reshape(-1, k)[tiny]
            m = zs.max(axis=-1)
            lse = m + np.log(np.exp(zs - m[:, None]).sum(axis=-1))
            values[tiny] = lse - zs[np.arange(zs.shape[0]), labels[tiny]]
        values = values.reshape(t.shape)
        if not need_grad:
            return self._masked(values, None, mask)
        flat[at] -= 1.0
        return self._masked(values, e, mask)

    def value_and_gradient_from_logits(self, y_true, logits, need_grad=True, sample_weight=None,
                                       softmax=None):
        """Fused softmax + cross-entropy on ``logits (..., K)`` (the output before its softmax).

        Returns ``(loss, dlogits)`` with ``dlogits = (softmax(logits) - targets) / N``, computed
        without forming ``log(softmax)`` from probabilities (stable for any finite logits).
        softmax: a function computing the softmax over the last axis into a fresh array (the
        trainer passes the compiled one); None uses NumPy.
        """
        z = _float_array(logits)
        values, dvalues = self._from_logits(y_true, z, need_grad, softmax)
        return self._reduce(values, dvalues, sample_weight, z.shape, need_grad)

    def _options(self):
        opts = {"from_logits": self.from_logits}
        if not isinstance(self, SparseCategoricalCrossentropy) or self.label_smoothing:
            opts["label_smoothing"] = self.label_smoothing
        if self.ignore_class is not None:
            opts["ignore_class"] = self.ignore_class
        return opts


class SparseCategoricalCrossentropy(_CrossentropyBase):
    """Keras's ``SparseCategoricalCrossentropy(from_logits=False, ignore_class=None)`` for integer
    labels ``(N,)`` / ``(N, 1)`` (one-hot targets are accepted too). ``ignore_class``: positions
    with that label add nothing and the mean runs over the others (Keras's mask)."""

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, name=None, label_smoothing=0.0):
        super().__init__(
            from_logits=from_logits, label_smoothing=label_smoothing, ignore_class=ignore_class, name=name
        )


class CategoricalCrossentropy(_CrossentropyBase):
    """Keras's ``CategoricalCrossentropy(from_logits=False, label_smoothing=0.0)`` for one-hot
    targets ``(N, K)`` (integer labels are accepted too)."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, name=name)


sparse_categorical_crossentropy = SparseCategoricalCrossentropy()
categorical_crossentropy = CategoricalCrossentropy()
binary_crossentropy = BinaryCrossentropy()
mean_squared_error = mse = MeanSquaredError()
mean_absolute_error = mae = MeanAbsoluteError()
huber = Huber()
kl_divergence = kld = KLDivergence()

_CLASSES = (
    SparseCategoricalCrossentropy,
    CategoricalCrossentropy,
    BinaryCrossentropy,
    MeanSquaredError,
    MeanAbsoluteError,
    Huber,
    KLDivergence,
)
# Keras's string names (function names, class names and the short aliases), matched case-insensitively.
_BY_NAME = {cls.__name__.lower(): cls for cls in _CLASSES}
_BY_NAME.update(
    {
        "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
        "categorical_crossentropy": CategoricalCrossentropy,
        "binary_crossentropy": BinaryCrossentropy,
        "bce": BinaryCrossentropy,
        "mean_squared_error": MeanSquaredError,
        "mse": MeanSquaredError,
        "mean_absolute_error": MeanAbsoluteError,
        "mae": MeanAbsoluteError,
        "huber": Huber,
        "huber_loss": Huber,
        "kl_divergence": KLDivergence,
        "kld": KLDivergence,
    }
)


def get(identifier) -> Loss:
    """A loss from its Keras name (``"binary_crossentropy"`` / ``"bce"``,
    ``"categorical_crossentropy"``, ``"sparse_categorical_crossentropy"``, ``"mse"``, ``"mae"``,
    ``"huber"``, ``"kld"`` / ``"kl_divergence"``, or a class name such as ``"Huber"``), a config
    dict (:func:`serialize`), a class or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            cls = _BY_NAME.get(str(identifier["class_name"]).lower())
            if cls is not None:
                return cls.from_config(dict(identifier.get("config") or {}))
            identifier = identifier["class_name"]
        else:
            identifier = identifier.get("name")
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is not None:
            return cls()
    raise ValueError(
        f"Could not interpret loss identifier: {identifier!r}. Valid names are {sorted(_BY_NAME)}."
    )


def serialize(loss):
    """The name :func:`get` finds ``loss`` under, or ``{"class_name", "config"}`` when it has options
    other than the defaults or another name."""
    loss = get(loss)
    cls = type(loss)
    if cls in _CLASSES and loss.get_config() == cls().get_config():
        return loss.name
    return {"class_name": cls.__name__, "config": loss.get_config()}


def deserialize(config) -> Loss:
    return get(config)
