"""The trainer's one seam to data-parallel training: what fit / evaluate / predict do at fixed
points when the process is one replica of an MPI job (``fastconv.distributed``).

Design notes
------------
* :func:`replica_for` gives :data:`SINGLE`, an object whose every method is
  the identity, unless ``fastconv.distributed.init()`` joined a job of 2 or more
  processes; the trainer calls the same methods either way and holds no MPI code.
* Start of ``fit``: rank 0's weights (trainable and not), optimizer state, the
  layers' random generators, the shuffle seed and the epoch to start from
  (``BackupAndRestore`` runs on rank 0) are broadcast, so the replicas start
  identical and draw the same shuffle order and dropout masks.
* Each step: every rank computed the gradient of the mean loss over its shard;
  the gradients are scaled by the shard's share of the global batch and summed
  over the ranks, then each rank runs the same optimizer step. The sum runs in
  place on the model's flat gradient buffer (``fastconv.engine.flat``), 32 MiB per
  allreduce; gradients that are separate arrays (``FASTCONV_FLAT_PARAMS=0``, mixed
  dtypes) are packed into flat buffers of at most 32 MiB in the fixed order of
  ``trainable_pairs()`` and unpacked after.
* Losses and metrics: the sample counts, loss sums and metric states of an
  epoch are gathered and merged in rank order at its end, so logs, History and
  callbacks see the same numbers on every rank (the live progress bar shows rank
  0's shard). ``stop_training`` is agreed by an allreduce (any rank stops: all
  stop) after the batch hooks and at the end of each epoch.
* BatchNormalization's moving statistics (per replica during the epoch) are
  averaged over the ranks at the end of each epoch, before validation, so every
  replica validates and saves the same model.
* Batches from an iterator are read on rank 0 and each rank is sent its shard
  (any generator or augmenter, random or not, gives the one-process batches).
"""

from __future__ import annotations

import numpy as np

from fastconv import distributed as _dist
from fastconv import metrics as _metrics

__all__ = ["SINGLE", "replica_for"]

CHUNK_BYTES = 32 << 20


class _Single:
    """One process: every hook is the identity."""

    active = False
    is_root = True
    size = 1
    rank = 0

    def start_fit(self, model, seed, initial_epoch):
        return seed, initial_epoch

    def sync_model(self, model):
        pass

    def shard(self, n):
        return 0, n

    def batch(self, lo, n_local, total):
        return _NULL

    def counts(self, n_local, total):
        return True

    def reduce_gradients(self, pairs):
        pass

    def reduce_running(self, run):
        pass

    def agree(self, *flags):
        return tuple(bool(f) for f in flags)

    def sync_state(self, model):
        pass

    def gather_rows(self, outs):
        return outs

    def batches(self, source):
        return source


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL = _Null()
SINGLE = _Single()


def replica_for(model):
    """The replica hooks for ``model``: :data:`SINGLE` unless a data-parallel job is active."""
    if not _dist.active():
        return SINGLE
    if _REPLICA[0] is None:
        _REPLICA[0] = _Replica()
    return _REPLICA[0]


_REPLICA = [None]


def _pack_plan(arrays, chunk_bytes=CHUNK_BYTES):
    """Group arrays (in order) into flat buffers: ``[(dtype, [(index, offset, size), ...], length)]``;
    consecutive arrays of one dtype share a buffer up to ``chunk_bytes`` (a larger array goes alone)."""
    plan = []
    cur = None
    for i, a in enumerate(arrays):
        if cur is None or cur[0] != a.dtype or (cur[2] and (cur[2] + a.size) * a.itemsize > chunk_bytes):
            cur = [a.dtype, [], 0]
            plan.append(cur)
        cur[1].append((i, cur[2], a.size))
        cur[2] += a.size
    return [(d, items, n) for d, items, n in plan]


def _pack(arrays, plan, bufs, scale=1.0):
    for (dtype, items, n), buf in zip(plan, bufs):
        for i, off, size in items:
            np.multiply(arrays[i].reshape(-1), scale, out=buf[off : off + size], casting="unsafe")


def _unpack(arrays, plan, bufs):
    for (dtype, items, n), buf in zip(plan, bufs):
        for i, off, size in items:
            arrays[i][...] = buf[off : off + size].reshape(arrays[i].shape)


class _Replica:
    """One rank of a data-parallel job."""

    active = True

    def __init__(self):
        self.rank = _dist.rank()
        self.size = _dist.size()
        self.is_root = self.rank == 0
        self._key = None
        self._plan = None
        self._bufs = None
        self.allreduce_seconds = 0.0

    # ---- start of fit
    def start_fit(self, model, seed, initial_epoch):
        """Rank 0's shuffle seed (a fresh one when ``seed`` is None) and first epoch, on every rank;
        and rank 0's model state when the model is built (else :meth:`sync_model` at the first batch)."""
        if self.is_root and seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        seed, initial_epoch = _dist.broadcast((seed, initial_epoch) if self.is_root else None)
        if model.built:
            self.sync_model(model)
        return seed, initial_epoch

    def sync_model(self, model):
        """Rank 0's weights, optimizer state and the layers' random generators on every rank."""
        state = None
        if self.is_root:
            opt = model.optimizer
            state = {
                "weights": model.get_weights(),
                "optimizer": opt.get_state() if opt is not None else None,
                "rngs": [None if g is None else g.bit_generator.state
                         for g in (getattr(layer, "_rng", None) for layer in _all_layers(model))],
            }
        state = _dist.broadcast(state)
        if not self.is_root:
            model.set_weights(state["weights"])
            if state["optimizer"] is not None:
                model.optimizer.set_state(*state["optimizer"])
            for layer, st in zip(_all_layers(model), state["rngs"]):
                if st is not None and getattr(layer, "_rng", None) is not None:
                    layer._rng.bit_generator.state = st

    # ---- batches
    def shard(self, n):
        return _dist.shard_bounds(n)

    def batch(self, lo, n_local, total):
        """Context of one step: the layers see the shard; the gradient weighs n_local / total
        (1 / size when every rank computes a batch smaller than the job)."""
        frac = (1.0 / self.size) if total < self.size else n_local / max(total, 1)
        return _dist._batch(lo, total, frac)

    def counts(self, n_local, total):
        """Does this rank count the batch's losses and metrics? (not when every rank computes it)"""
        return total >= self.size or self.is_root

    def reduce_gradients(self, pairs):
        import time

        t0 = time.perf_counter()
        flat = getattr(pairs, "flat", None)
        if flat is not None and len(flat) == 1:  # fastconv.engine.flat: the gradients are one buffer
            gbuf = flat[0][2]
            np.multiply(gbuf, _dist.sample_fraction(), out=gbuf, casting="unsafe")
            step = max(1, CHUNK_BYTES // gbuf.itemsize)
            for i0 in range(0, gbuf.size, step):  # in place, 32 MiB per call (MPI counts are ints)
                _dist.allreduce(gbuf[i0 : i0 + step])
            self.allreduce_seconds += time.perf_counter() - t0
            return
        grads = [g for _, _, g in pairs]
        key = tuple((g.shape, g.dtype.str) for g in grads)
        if key != self._key:
            self._key = key
            self._plan = _pack_plan(grads)
            self._bufs = [np.empty(n, dtype) for dtype, _, n in self._plan]
        _pack(grads, self._plan, self._bufs, _dist.sample_fraction())
        for buf in self._bufs:
            _dist.allreduce(buf)
        _unpack(grads, self._plan, self._bufs)
        self.allreduce_seconds += time.perf_counter() - t0

    def reduce_running(self, run):
        """Merge every rank's epoch sums into ``run`` (in rank order; the same on every rank)."""
        parts = _dist.allgather((run.n, run.loss, list(run.per), run.states))
        run.n, run.loss = 0, 0.0
        run.per = [0.0] * len(run.per)
        states = [None] * len(run.states)
        for n, loss, per, sts in parts:
            run.n += n
            run.loss += loss
            run.per = [a + b for a, b in zip(run.per, per)]
            for i, s in enumerate(sts):
                if s is not None:
                    states[i] = _metrics.merge(states[i], s)
        run.states = states

    def agree(self, *flags):
        """Each flag true on any rank -> true on every rank."""
        summed = _dist.allreduce(np.array([1.0 if f else 0.0 for f in flags]))
        return tuple(bool(v > 0) for v in summed)

    def sync_state(self, model):
        """Average the state of the trainable layers (BatchNormalization's moving statistics)."""
        arrays = [
            w
            for layer in _all_layers(model)
            if layer.trainable
            for w in (getattr(layer, "state", None) or {}).values()
            if isinstance(w, np.ndarray) and np.issubdtype(w.dtype, np.floating)
        ]
        if not arrays:
            return
        plan = _pack_plan(arrays)
        bufs = [np.empty(n, dtype) for dtype, _, n in plan]
        _pack(arrays, plan, bufs, 1.0 / self.size)
        for buf in bufs:
            _dist.allreduce(buf)
        _unpack(arrays, plan, bufs)

    def gather_rows(self, outs):
        """Each rank's rows of the outputs -> the whole outputs on every rank, in rank order."""
        parts = _dist.allgather(outs)
        return [np.concatenate([p[k] for p in parts]) for k in range(len(outs))]

    def batches(self, source):
        return _Scattered(source, self)


def _all_layers(model):
    out, stack = [], list(model.layers)
    while stack:
        layer = stack.pop(0)
        out.append(layer)
        stack[:0] = list(getattr(layer, "sublayers", []) or [])
    return out


class _Scattered:
    """Batches read on rank 0 from ``source`` (an object with ``epoch()`` and ``len``) and sent
    to each rank as its shard: ``(xs, ys, sws)`` with ``shard_info = (lo, hi, total)``."""

    def __init__(self, source, rep):
        self.source = source
        self.rep = rep
        self.steps = _dist.broadcast(len(source) if rep.is_root else None)
        self.shard_info = (0, 0, 0)
        self.exhausted = False

    def __len__(self):
        return self.steps

    def epoch(self):
        rep = self.rep
        it = iter(self.source.epoch()) if rep.is_root else None
        while True:
            msgs = None
            if rep.is_root:
                batch = next(it, None)
                if batch is None:
                    msgs = [("end", len(self.source), getattr(self.source, "exhausted", False))] * rep.size
                else:
                    xs, ys, sws = batch
                    total = len(xs[0])
                    msgs = []
                    for r in range(rep.size):
                        lo, hi = _dist.shard_bounds(total, r, rep.size)
                        sl = slice(lo, hi)
                        cut = [None if a is None else a[sl] for a in xs], [None if a is None else a[sl] for a in ys]
                        msgs.append(("batch", *cut, None if sws is None else [
                            None if a is None else a[sl] for a in sws], (lo, hi, total)))
            msg = _dist.scatter(msgs)
            if msg[0] == "end":
                self.steps, self.exhausted = msg[1], msg[2]
                return
            _, xs, ys, sws, info = msg
            self.shard_info = info
            yield xs, ys, sws
