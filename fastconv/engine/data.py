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

    def __init__(self, xs, ys, batch_size, shuffle, rng, steps=None):
        self.xs, self.ys = list(xs), list(ys)
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
        """Yield this epoch's ``(xs, ys)`` batches."""
        bs = self.batch_size
        nx = len(self.xs)
        arrays = self.xs + self.ys
        for _ in range(self.steps):
            if self._pos >= self.n:  # a new pass over the data (reshuffled)
                self._perm = self.rng.permutation(self.n) if self.shuffle else None
                self._pos = 0
            start, stop = self._pos, min(self._pos + bs, self.n)
            self._pos = stop
            if self._perm is None:
                yield _slice(self.xs, slice(start, stop)), _slice(self.ys, slice(start, stop))
                continue
            idx = self._perm[start:stop]
            if len(idx) == bs:
                if self._bufs is None:
                    self._bufs = [
                        None if a is None else np.empty((bs, *a.shape[1:]), a.dtype) for a in arrays
                    ]
                # The buffers are reused: a layer's training cache only lives until this step's backward.
                out = self._take(arrays, idx, self._bufs)
            else:
                out = self._take(arrays, idx, [None] * len(arrays))
            yield out[:nx], out[nx:]


class _GeneratorBatches:
    """Batches from an iterator of ``(xb, yb)`` (e.g. ``ImageAugmenter.flow``)."""

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
            yield _batch_xy(self.model, batch[0], batch[1], "fit")
