"""Batching for the trainer: ``x`` / ``y`` split into one array per model input / output and
checked, the batch size checked, and the batches of an epoch from arrays or from an iterator.

Design notes
------------
* ``x`` is one array, or for graph models a list (or a dict by input name) of
  arrays; ``y`` likewise per output (``None`` for an output without a loss).
  The model splits them (``_split_inputs`` / ``_split_targets``); this module
  checks sample counts and makes the batches.
* The loops are lean: the data are converted to the model's dtype once, each
  shuffled batch is one ``np.take`` per array into reused buffers (views when
  not shuffling).
* Sample weights ride along as a third list, one ``(N,)`` float array (or None)
  per output: ``sample_weight`` as Keras takes it (one array for every output,
  a list, or a dict by output name) times the weights ``class_weight`` maps each
  sample's class to (Keras's rule: the argmax of one-hot targets, else the
  rounded label; classes missing from the dict weigh 1).
"""

from __future__ import annotations

import numpy as np

def _batch_xy(model, x, y, who):
    xs = model._split_inputs(x)
    model._ensure_built(xs[0].shape)
    return model._cast_inputs(xs), model._split_targets(y, who)


def _is_array_like(x):
    return isinstance(x, (np.ndarray, list, tuple, dict)) or hasattr(x, "__array__")


def _check_xy(xs, ys, who):
    """Every target array (one per output; None = no target) has as many samples as the inputs."""
    if all(y is None for y in ys):
        raise ValueError(f"{who}: y is required when x is an array.")
    n = len(xs[0])
    for y in ys:
        if y is not None and len(y) != n:
            raise ValueError(
                f"{who}: x and y must have the same number of samples. Received: x.shape={xs[0].shape}, "
                f"y.shape={y.shape}"
            )
    return ys


def _arrays_xy(model, x, y, who):
    """Split ``x`` / ``y`` into per-input / per-output arrays (checked, not yet converted)."""
    xs = model._split_inputs(x)
    ys = _check_xy(xs, model._split_targets(y, who), who)
    return xs, ys


def _weight_vector(w, n, who, what="sample_weight"):
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or len(w) != n:
        raise ValueError(
            f"{who}: {what} must hold one weight per sample, shape ({n},). Received: shape {w.shape}"
        )
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{who}: {what} must be finite.")
    return w


def _class_weights(y, class_weight, who):
    """Keras's ``class_weight`` -> per-sample weights: one-hot targets by their argmax, integer
    labels (``(N,)`` or ``(N, 1)``) by their rounded value; a class missing from the dict weighs 1."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"{who}: class_weight must be a dict {{class index: weight}}. Received: {class_weight!r}")
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y[..., 0]
    if y.ndim != 1:
        raise ValueError(
            f"{who}: class_weight needs one class per sample (labels (N,) or one-hot (N, K)). Received "
            f"targets of shape {np.shape(y)}; pass per-sample weights as sample_weight instead."
        )
    classes = np.round(y).astype(np.int64)
    table = {int(k): float(v) for k, v in class_weight.items()}
    return np.array([table.get(int(c), 1.0) for c in classes], dtype=np.float64)


def _sample_weights(model, sample_weight, class_weight, ys, n, who):
    """One ``(n,)`` float64 array (or None) per output, or None when neither argument is given."""
    if sample_weight is None and class_weight is None:
        return None
    k = len(ys)
    sws = [None] * k
    if sample_weight is not None:
        if isinstance(sample_weight, dict):
            names = model._output_names()
            unknown = sorted(set(sample_weight) - set(names))
            if unknown:
                raise ValueError(f"{who}: unknown outputs {unknown} in sample_weight; the outputs are {names}.")
            per = [sample_weight.get(name) for name in names]
        elif isinstance(sample_weight, (list, tuple)) and k > 1:
            if len(sample_weight) != k:
                raise ValueError(
                    f"{who}: sample_weight has {len(sample_weight)} entries but the model has {k} outputs."
                )
            per = list(sample_weight)
        else:
            per = [sample_weight] * k  # Keras: one per-sample array is used for every output
        sws = [None if w is None else _weight_vector(w, n, who) for w in per]
    if class_weight is not None:
        if k > 1:
            raise ValueError("`class_weight` is only supported for Models with a single output.")
        cw = _class_weights(ys[0], class_weight, who)
        sws[0] = cw if sws[0] is None else sws[0] * cw
    return sws


def _batch_size(value, who, name="batch_size", default=32):
    """``value`` as a positive int; None means ``default``.  The one check of every batch size the
    trainer accepts (0, negatives, floats and bools raise rather than being read as the default)."""
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive int (or None for {default}). "
                         f"Received: {name}={value!r}")
    return int(value)


def _slice(arrays, sl):
    return [None if a is None else a[sl] for a in arrays]


class _ArrayBatches:
    """Batches of arrays (lists: one per model input / output): views when not shuffling, one
    ``np.take`` per array into reused buffers when shuffling."""

    def __init__(self, xs, ys, batch_size, shuffle, rng, steps=None, sws=None, shard=None):
        self.xs, self.ys = list(xs), list(ys)
        self.shard = shard  # data-parallel: n -> rows [lo, hi) of a global batch this rank takes
        self.shard_info = (0, 0, 0)  # (lo, hi, global rows) of the last batch
        self.sws = None if sws is None else list(sws)
        self.n = len(self.xs[0])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = rng
        full = -(-self.n // batch_size) if self.n else 0
        self.steps = full if steps is None else int(steps)
        self._bufs = None
        self._perm = None
        self._pos = self.n  # start a fresh pass on the first batch

    def __len__(self):
        return self.steps

    def _take(self, arrays, idx, bufs):
        out = []
        for a, buf in zip(arrays, bufs):
            if a is None:
                out.append(None)
            elif buf is None:
                out.append(np.take(a, idx, axis=0))
            else:
                np.take(a, idx, axis=0, out=buf)
                out.append(buf)
        return out

    def epoch(self):
        """Yield this epoch's ``(xs, ys, sws)`` batches (``sws`` None without sample weights)."""
        bs = self.batch_size
        nx, ny = len(self.xs), len(self.ys)
        arrays = self.xs + self.ys + (self.sws or [])
        for _ in range(self.steps):
            if self._pos >= self.n:  # a new pass over the data (reshuffled)
                self._perm = self.rng.permutation(self.n) if self.shuffle else None
                self._pos = 0
            start, stop = self._pos, min(self._pos + bs, self.n)
            self._pos = stop
            total = stop - start
            lo, hi = (0, total) if self.shard is None else self.shard(total)
            self.shard_info = (lo, hi, total)
            start, stop = start + lo, start + hi
            if self._perm is None:
                out = _slice(arrays, slice(start, stop))
                yield out[:nx], out[nx : nx + ny], (out[nx + ny :] if self.sws is not None else None)
                continue
            idx = self._perm[start:stop]
            if total == bs:  # a full batch (its shard has the same rows every time)
                if self._bufs is None:
                    self._bufs = [
                        None if a is None else np.empty((len(idx), *a.shape[1:]), a.dtype) for a in arrays
                    ]
                # The buffers are reused: a layer's training cache only lives until this step's backward.
                out = self._take(arrays, idx, self._bufs)
            else:
                out = self._take(arrays, idx, [None] * len(arrays))
            yield out[:nx], out[nx : nx + ny], (out[nx + ny :] if self.sws is not None else None)


class _GeneratorBatches:
    """Batches from an iterator of ``(xb, yb)`` or ``(xb, yb, sample_weight_b)`` (e.g. ``ImageAugmenter.flow``)."""

    def __init__(self, data, steps, model):
        self.data = data
        if steps is None:
            try:
                steps = len(data)
            except TypeError:
                steps = None
        self.steps = steps
        self.model = model
        self._it = iter(data)
        self.exhausted = False

    def __len__(self):
        return self.steps if self.steps is not None else 0

    def epoch(self):
        count = 0
        while self.steps is None or count < self.steps:
            try:
                batch = next(self._it)
            except StopIteration:
                if self.steps is None and count > 0:
                    self._it = iter(self.data)  # re-iterable inputs restart next epoch
                    if self.steps is None:
                        self.steps = count
                    return
                self.exhausted = True
                return
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError(
                    f"fit: a generator must yield (x_batch, y_batch) tuples. Received: {type(batch).__name__}"
                )
            count += 1
            xs, ys = _batch_xy(self.model, batch[0], batch[1], "fit")
            sws = None
            if len(batch) > 2 and batch[2] is not None:
                sws = _sample_weights(self.model, batch[2], None, ys, len(xs[0]), "fit")
            yield xs, ys, sws
