"""The training loops: fit, evaluate, predict, train_on_batch and test_on_batch, and the train and
test steps they repeat.

Design notes
------------
* A step is: the plan's forward (``fastconv.engine.graph``) with the
  objective's fusion, the objective's losses and gradients
  (``fastconv.engine.objective``), the plan's backward, and the optimizer's
  update of ``model.trainable_pairs()`` (cached, laid out again when a layer is
  frozen or unfrozen, so freezing takes effect without recompiling; the weights and
  gradients are views of flat buffers, ``fastconv.engine.flat``).
* The loops are lean: the data are converted to the model's dtype once
  (``fastconv.engine.data``), a metric is an additive state summed over the
  epoch, and logs for batch callbacks are built only when some callback listens.
* ``verbose``: 0 silent, 1 a progress bar (``fastconv.engine.progbar``), 2 one
  line per epoch. Ctrl-C during ``fit`` ends it after the current step
  (``fastconv.engine.interrupt``); the History says ``interrupted``.
* Sample weights (``sample_weight``, ``class_weight``, a third element of
  ``validation_data`` or of a generator's batches) weight each sample's loss and
  gradient (``fastconv.engine.objective``). With ``validation_split`` the user's
  sample weights are split with the data; class weights apply to training only
  (as in Keras).
* Callbacks run in the order given, then the History (Keras's order), so what a
  callback adds to the epoch logs (``learning_rate`` from ``ReduceLROnPlateau``
  or ``LearningRateScheduler``) is recorded and shown on the epoch's bar.
  A callback may set ``model._initial_epoch`` in ``on_train_begin`` to resume
  (``BackupAndRestore``).
* Memory is reused across steps: a step frees and allocates again arrays of the same sizes
  (activations, gradients, scratch), and glibc returns large blocks to the system and faults
  every page in again on first touch (measured: ~800 page faults per LeNet-5 step, ~30% of its
  wall time in the kernel). fit / evaluate / predict / train_on_batch / test_on_batch therefore
  run under ``reuse_buffers`` (public as ``fastconv.reuse_buffers``): NumPy's data-memory handler, for the calling context only, is
  ``fastconv._kernels.buffers``, which keeps freed blocks of 256 KiB and more for the next request
  of the same size; when the call returns, the most recently freed blocks, up to CACHE_KEEP bytes
  (``FASTCONV_KEEP_BUFFERS`` in MiB), stay parked for the next call and the rest are freed
  (``FASTCONV_REUSE_BUFFERS=0``: off). Without the parking each ``predict`` faulted all its activations
  in again: measured on 1 thread, 1.40-1.48x the time for resnet_small, densenet_small and
  separable-cnn at batch 256. ``fastconv.release_buffers()`` frees the parked blocks.
* Data-parallel training (``fastconv.distributed``): the loops call the hooks
  of ``fastconv.engine.replica`` at fixed points (start of fit, the shard of
  each batch, the gradients before the optimizer step, the epoch's sums, the
  stop flags); on one process they do nothing. Only rank 0 prints and runs the
  callbacks marked ``root_only`` (the ones that write files).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import warnings

import numpy as np

from fastconv import _dispatch
from fastconv._kernels import buffers as _buffers
from fastconv.callbacks import CallbackList, History
from fastconv.engine import flat as _flat
from fastconv.engine.data import (
    _ArrayBatches,
    _arrays_xy,
    _batch_size,
    _batch_xy,
    _GeneratorBatches,
    _is_array_like,
    _sample_weights,
    _slice,
)
from fastconv.engine.interrupt import _InterruptGuard
from fastconv.engine.objective import _Objective, _regularization_loss, _Running
from fastconv.engine.progbar import Progbar, _format_value
from fastconv.engine.replica import SINGLE, replica_for

__all__ = ["evaluate", "fit", "predict", "test_on_batch", "train_on_batch"]


CACHE_LIMIT = 1 << 30  # bytes of freed blocks kept at most
CACHE_MIN_BYTES = 1 << 18  # smaller blocks are left to malloc (its heap reuses them without faults)
CACHE_KEEP_DEFAULT_MIB = 512  # parked between calls at most (FASTCONV_KEEP_BUFFERS overrides, in MiB)
_REUSE = {"depth": 0}


@contextlib.contextmanager
def reuse_buffers():
    """Reuse freed NumPy buffers while the context is open (``fastconv.reuse_buffers``).

    NumPy arrays allocated in this context (on this thread / context) get their memory from
    ``fastconv._kernels.buffers``, which keeps blocks of 256 KiB and more freed inside it for the next
    allocation of the same size, instead of returning them to the system and faulting every page in
    again (see the module notes). When the outermost context closes, the most recently freed blocks,
    up to 512 MiB (``FASTCONV_KEEP_BUFFERS``, in MiB), stay parked for the next context (the next
    ``predict`` finds its activations' pages already faulted in) and the rest are freed;
    ``fastconv.release_buffers()`` frees the parked ones. fit / evaluate / predict / train_on_batch /
    test_on_batch open it themselves; open it around a loop of ``fastconv.ops`` calls for the same
    effect. ``FASTCONV_REUSE_BUFFERS=0`` turns it off.

    >>> import numpy as np, fastconv
    >>> with fastconv.reuse_buffers():
    ...     for _ in range(3):
    ...         y = fastconv.conv2d(np.ones((2, 64, 64, 16), np.float32), np.ones((3, 3, 16, 16), np.float32))
    >>> y.shape
    (2, 62, 62, 16)
    """
    if os.environ.get("FASTCONV_REUSE_BUFFERS", "1").strip() == "0":
        yield
        return
    keep = _keep_bytes() if _REUSE["depth"] == 0 else 0  # checked before anything is installed
    old = _buffers.set_handler(_buffers.handler())
    if _REUSE["depth"] == 0:
        _buffers.open_cache(CACHE_LIMIT, CACHE_MIN_BYTES)
    _REUSE["depth"] += 1
    try:
        yield
    finally:
        _REUSE["depth"] -= 1
        if _REUSE["depth"] == 0:
            _buffers.close_cache(keep)
        _buffers.set_handler(old)


def _keep_bytes():
    raw = os.environ.get("FASTCONV_KEEP_BUFFERS", "").strip()
    try:
        mib = CACHE_KEEP_DEFAULT_MIB if raw == "" else int(raw)
    except ValueError:
        raise ValueError(f"FASTCONV_KEEP_BUFFERS must be a whole number of MiB. Received: {raw!r}") from None
    if mib < 0:
        raise ValueError(f"FASTCONV_KEEP_BUFFERS must be >= 0 MiB. Received: {raw!r}")
    return min(mib, CACHE_LIMIT >> 20) << 20


def release_buffers():
    """Free the buffers ``reuse_buffers`` keeps parked between calls (``fastconv.release_buffers``).

    Returns the number of blocks freed. Inside an open ``reuse_buffers`` context it frees the blocks
    cached so far (later frees are kept again until the context closes).
    """
    return _buffers.trim_cache(0)


def _train_step(model, plan, xs, ys, obj, sws=None, rep=SINGLE):
    """One optimizer step on a batch; returns ``(loss, per-output losses, metric states)``."""
    outs = plan.forward(xs, training=True, fusion=obj.fusion)
    loss, per, dys = obj.losses_and_grads(ys, outs, sws=sws)
    loss += _regularization_loss(plan.layers)
    plan.backward(dys, fusion=obj.fusion)
    pairs = _flat.train_pairs(model)  # cached; views of the flat buffers (fastconv.engine.flat)
    rep.reduce_gradients(pairs)  # data-parallel: the global batch's gradient on every rank
    model.optimizer.apply(pairs)
    return loss, per, obj.metric_states(ys, outs)


def _test_step(model, plan, xs, ys, obj, sws=None):
    outs = plan.forward(xs, training=False, fusion=plan.inference_fusion(obj.fusion))
    loss, per, _ = obj.losses_and_grads(ys, outs, need_grad=False, sws=sws)
    return loss, per, obj.metric_states(ys, outs)


@reuse_buffers()
def train_on_batch(model, x, y, sample_weight=None, class_weight=None):
    """One step on one batch; returns ``[loss, *metrics]`` for that batch (before the update's effect)."""
    model._require_compiled("train_on_batch")
    xs, ys = _batch_xy(model, x, y, "train_on_batch")
    obj = _Objective(model)
    obj.check_targets(ys, "train_on_batch")
    sws = _sample_weights(model, sample_weight, class_weight, ys, len(xs[0]), "train_on_batch")
    run = _Running(obj)
    run.add(len(xs[0]), *_train_step(model, obj.plan, xs, ys, obj, sws))
    return _pack(run.values())


@reuse_buffers()
def test_on_batch(model, x, y, sample_weight=None):
    model._require_compiled("test_on_batch")
    xs, ys = _batch_xy(model, x, y, "test_on_batch")
    obj = _Objective(model)
    obj.check_targets(ys, "test_on_batch")
    sws = _sample_weights(model, sample_weight, None, ys, len(xs[0]), "test_on_batch")
    run = _Running(obj)
    run.add(len(xs[0]), *_test_step(model, obj.plan, xs, ys, obj, sws))
    return _pack(run.values(_regularization_loss(obj.plan.layers)))


def _pack(values):
    vals = [float(v) for _, v in values]
    return vals[0] if len(vals) == 1 else vals


@reuse_buffers()
def fit(
    model,
    x=None,
    y=None,
    batch_size=None,
    epochs=1,
    verbose=1,
    callbacks=None,
    validation_split=0.0,
    validation_data=None,
    shuffle=True,
    initial_epoch=0,
    steps_per_epoch=None,
    validation_steps=None,
    validation_batch_size=None,
    seed=None,
    sample_weight=None,
    class_weight=None,
):
    """Train ``model`` (see :meth:`fastconv.engine.base.BaseModel.fit`). Returns a :class:`History`."""
    model._require_compiled("fit")
    if verbose == "auto":
        verbose = 1
    rep = replica_for(model)
    if not rep.is_root:
        verbose = 0
    rng = np.random.default_rng(seed)
    batch_size = _batch_size(batch_size, "fit")
    val_bs = _batch_size(validation_batch_size, "fit", "validation_batch_size", default=batch_size)
    val_lists = None  # (inputs, targets, sample weights) held out by validation_split
    gen_class_weight = None

    # ---- training data
    if _is_array_like(x):
        xs, ys = _arrays_xy(model, x, y, "fit")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(
                f"validation_split must be in [0, 1). Received: validation_split={validation_split}"
            )
        sws = _sample_weights(model, sample_weight, None, ys, len(xs[0]), "fit")
        if validation_split and validation_data is None:
            split_at = int(len(xs[0]) * (1.0 - validation_split))
            tail, head = slice(split_at, None), slice(None, split_at)
            val_lists = (_slice(xs, tail), _slice(ys, tail), None if sws is None else _slice(sws, tail))
            xs, ys = _slice(xs, head), _slice(ys, head)
            sws = None if sws is None else _slice(sws, head)
        if len(xs[0]) == 0:
            raise ValueError("fit: no training samples (x is empty after validation_split).")
        if class_weight is not None:  # training samples only, as Keras does
            cws = _sample_weights(model, None, class_weight, ys, len(xs[0]), "fit")
            sws = cws if sws is None else [a if b is None else a * b for a, b in zip(cws, sws)]
        model._ensure_built(xs[0].shape)
        xs = model._cast_inputs(xs)
        train = _ArrayBatches(xs, ys, batch_size, shuffle, rng, steps_per_epoch, sws=sws,
                              shard=rep.shard if rep.active else None)
    elif x is not None and (hasattr(x, "__iter__") or hasattr(x, "__next__")):
        if validation_split:
            raise ValueError("validation_split is not supported when x is a generator; pass validation_data.")
        if sample_weight is not None:
            raise ValueError("fit: sample_weight is not supported when x is a generator; yield (x, y, sw) batches.")
        gen_class_weight = class_weight
        train = rep.batches(_GeneratorBatches(x, steps_per_epoch, model))
    else:
        raise TypeError(
            f"fit: x must be an array or an iterator of (x, y) batches. Received: {type(x).__name__}"
        )
    obj = _Objective(model)
    if isinstance(train, _ArrayBatches):
        obj.check_targets(train.ys, "fit")

    # ---- validation data
    val = None
    if val_lists is not None:
        if len(val_lists[0][0]):
            val = ("arrays", model._cast_inputs(val_lists[0]), val_lists[1], val_lists[2])
    elif validation_data is not None:
        if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
            xv, yv = _arrays_xy(model, validation_data[0], validation_data[1], "fit(validation_data)")
            model._ensure_built(xv[0].shape)
            obj.check_targets(yv, "fit(validation_data)")
            swv = validation_data[2] if len(validation_data) == 3 else None
            swv = _sample_weights(model, swv, None, yv, len(xv[0]), "fit(validation_data)")
            val = ("arrays", model._cast_inputs(xv), yv, swv)
        elif hasattr(validation_data, "__iter__") or hasattr(validation_data, "__next__"):
            val = ("gen", validation_data, validation_steps)
        else:
            raise ValueError(
                "validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight), "
                "or an iterator of batches."
            )

    history = History()
    callbacks = [cb for cb in callbacks or [] if rep.is_root or not getattr(cb, "root_only", False)]
    cbs = CallbackList(
        [*callbacks, history],
        model=model,
        params={"epochs": epochs, "steps": len(train) or None, "verbose": verbose},
    )
    plan = obj.plan
    model.stop_training = False
    logs = {}
    epoch = initial_epoch
    step_in_epoch = 0
    interrupted = False
    model._initial_epoch = None
    completed = False
    cbs.on_train_begin()
    if model._initial_epoch is not None:  # a callback resumes an interrupted fit (BackupAndRestore)
        initial_epoch = max(initial_epoch, int(model._initial_epoch))
    model._initial_epoch = None
    unsynced = False
    if rep.active:  # rank 0's weights, optimizer state, generators, shuffle seed and first epoch
        seed, initial_epoch = rep.start_fit(model, seed, initial_epoch)
        unsynced = not model.built  # a model built by its first batch (from a generator) syncs then
        if isinstance(train, _ArrayBatches):
            train.rng = np.random.default_rng(seed)
    try:
        with _InterruptGuard() as guard:
            for epoch in range(initial_epoch, epochs):
                cbs.on_epoch_begin(epoch)
                if verbose:
                    print(f"Epoch {epoch + 1}/{epochs}")
                bar = Progbar(len(train) or None, verbose=verbose)
                run = _Running(obj)
                step_in_epoch = 0
                batch_hooks = cbs.has_batch_hooks
                for xb, yb, swb in train.epoch():
                    if gen_class_weight is not None:
                        cwb = _sample_weights(model, None, gen_class_weight, yb, len(xb[0]), "fit")
                        swb = cwb if swb is None else [cwb[0] * swb[0]]
                    if batch_hooks:
                        cbs.on_train_batch_begin(step_in_epoch)
                    nb = len(xb[0])
                    if unsynced:
                        model._ensure_built(xb[0].shape)
                        rep.sync_model(model)
                        unsynced = False
                    lo, _, total = getattr(train, "shard_info", None) or (0, nb, nb)
                    with rep.batch(lo, nb, total):
                        step = _train_step(model, plan, xb, yb, obj, swb, rep)
                    if rep.counts(nb, total):
                        run.add(nb, *step)
                    step_in_epoch += 1
                    if verbose == 1 and bar.dynamic:
                        bar.update(step_in_epoch, run.values())
                    if batch_hooks:
                        cbs.on_train_batch_end(step_in_epoch - 1, dict(run.values()))
                    if rep.active:  # every rank stops (or is interrupted) when one does
                        model.stop_training, guard.requested = rep.agree(model.stop_training, guard.requested)
                    if guard.requested:
                        raise KeyboardInterrupt
                    if model.stop_training:  # set by a batch hook (TerminateOnNaN): end the epoch now
                        break
                if step_in_epoch == 0:
                    warnings.warn("fit: the input ran out of data; stopping training.", stacklevel=2)
                    break
                rep.reduce_running(run)  # every rank's samples
                rep.sync_state(model)  # the moving statistics averaged over the replicas
                logs = dict(run.values())
                if val is not None:
                    if val[0] == "arrays":
                        vres = _evaluate_arrays(model, obj, val[1], val[2], val_bs, sws=val[3], rep=rep)
                    else:
                        vres = _evaluate_generator(model, obj, val[1], val[2], rep=rep)
                    for k, v in vres.items():
                        logs["val_" + k] = v
                cbs.on_epoch_end(epoch, logs)
                bar.finish(step_in_epoch, list(logs.items()))
                if rep.active:
                    model.stop_training, guard.requested = rep.agree(model.stop_training, guard.requested)
                if guard.requested:
                    raise KeyboardInterrupt
                if model.stop_training:
                    break
        completed = True
    except KeyboardInterrupt:
        interrupted = True
        history.interrupted = True
        if verbose:
            print(
                f"\nTraining interrupted (Ctrl-C) in epoch {epoch + 1} after step {step_in_epoch}; "
                f"the model keeps the weights of the last finished step."
            )
    finally:
        model._fit_interrupted = not completed
        cbs.on_train_end(logs)
        model._fit_interrupted = False
    history.interrupted = interrupted
    model.history = history
    return history


def _evaluate_arrays(model, obj, xs, ys, batch_size, bar=None, sws=None, rep=SINGLE):
    n = len(xs[0])
    if n == 0:
        raise ValueError("evaluate: no samples.")
    run = _Running(obj)
    steps = -(-n // batch_size)
    for s in range(steps):
        start = s * batch_size
        total = min(n, start + batch_size) - start
        lo, hi = rep.shard(total)  # data-parallel: this rank's rows of the batch
        sl = slice(start + lo, start + hi)
        xb, yb = _slice(xs, sl), _slice(ys, sl)
        swb = None if sws is None else _slice(sws, sl)
        step = _test_step(model, obj.plan, xb, yb, obj, swb)
        if rep.counts(hi - lo, total):
            run.add(hi - lo, *step)
        if bar is not None:
            bar.update(s + 1, run.values())
    rep.reduce_running(run)
    return dict(run.values(_regularization_loss(obj.plan.layers)))


class _EvalBatches:
    """``(xs, ys, sws)`` batches of an evaluation iterator, at most ``steps`` of them."""

    def __init__(self, model, data, steps):
        if steps is None:
            try:
                steps = len(data)
            except TypeError:
                steps = None
        self.model, self.data, self.steps = model, data, steps

    def __len__(self):
        return self.steps or 0

    def epoch(self):
        it = iter(self.data)
        k = 0
        while self.steps is None or k < self.steps:
            try:
                batch = next(it)
            except StopIteration:
                return
            xb, yb = _batch_xy(self.model, batch[0], batch[1], "evaluate")
            swb = None
            if len(batch) > 2 and batch[2] is not None:
                swb = _sample_weights(self.model, batch[2], None, yb, len(xb[0]), "evaluate")
            k += 1
            yield xb, yb, swb


def _evaluate_generator(model, obj, data, steps, rep=SINGLE):
    batches = rep.batches(_EvalBatches(model, data, steps))  # data-parallel: rank 0 reads, sends shards
    run = _Running(obj)
    for xb, yb, swb in batches.epoch():
        nb = len(xb[0])
        _, _, total = getattr(batches, "shard_info", None) or (0, nb, nb)
        step = _test_step(model, obj.plan, xb, yb, obj, swb)
        if rep.counts(nb, total):
            run.add(nb, *step)
    rep.reduce_running(run)
    if run.n == 0:
        raise ValueError("evaluate: the validation generator yielded no batches.")
    return dict(run.values(_regularization_loss(obj.plan.layers)))


@reuse_buffers()
def evaluate(model, x=None, y=None, batch_size=None, verbose=1, steps=None, return_dict=False, sample_weight=None):
    """Loss and metrics on ``x, y`` in batches (``training=False``); see :meth:`Model.evaluate`.

    Returns ``loss`` alone when there is nothing else to report, else the list ``[loss,
    *per-output losses (several outputs), *metrics]`` (or the dict with ``return_dict=True``).
    """
    model._require_compiled("evaluate")
    batch_size = _batch_size(batch_size, "evaluate")
    rep = replica_for(model)
    if not rep.is_root:
        verbose = 0
    obj = _Objective(model)
    if _is_array_like(x):
        xs, ys = _arrays_xy(model, x, y, "evaluate")
        model._ensure_built(xs[0].shape)
        obj.check_targets(ys, "evaluate")
        sws = _sample_weights(model, sample_weight, None, ys, len(xs[0]), "evaluate")
        xs = model._cast_inputs(xs)
        bar = Progbar(-(-len(xs[0]) // batch_size), verbose=verbose) if verbose else None
        res = _evaluate_arrays(model, obj, xs, ys, batch_size, bar=bar, sws=sws, rep=rep)
        if bar is not None:
            bar.finish(bar.target, list(res.items()))
    else:
        if sample_weight is not None:
            raise ValueError("evaluate: sample_weight is not supported when x is a generator; yield (x, y, sw).")
        res = _evaluate_generator(model, obj, x, steps, rep=rep)
        if verbose:
            print(" - ".join(f"{k}: {_format_value(v)}" for k, v in res.items()))
    if return_dict:
        return res
    vals = list(res.values())
    return vals[0] if len(vals) == 1 else vals


#: ``FASTCONV_PREDICT_CONCURRENT=1``: predict runs the parts of a batch side by side, one per thread of
#: ``fastconv.set_num_threads`` and each kernel on one thread, when every part gets at least
#: PREDICT_MIN_ROWS_PER_THREAD rows: independent streams with no barrier between them, where the
#: kernels' own threads meet at every op. Off by default: on the loaded 2-core host (load 6-12) predict
#: of 256 on 2 threads took 0.80x the time for regnet_small but 1.04x for resnet_small and 0.99-1.42x
#: for alexnet_small (interleaved rounds), and 1.17-1.20x the CPU time for alexnet / resnet_small
#: (half batches per forward); not resolved on a quiet machine.
PREDICT_MIN_ROWS_PER_THREAD = 16


def _predict_workers(plan, rows):
    threads = _dispatch.get_num_threads()
    if threads < 2 or os.environ.get("FASTCONV_PREDICT_CONCURRENT", "0").strip() in ("", "0"):
        return 1
    workers = min(threads, rows // PREDICT_MIN_ROWS_PER_THREAD)
    return workers if workers > 1 and plan.concurrent_inference() else 1


def _on_one_thread(fn, arg):
    """``fn(arg)`` on a worker thread: its kernels on one thread, NumPy's buffers from the cache the
    calling predict opened (the data-memory handler is per thread / context)."""
    if _REUSE["depth"] == 0:  # FASTCONV_REUSE_BUFFERS=0: NumPy's own allocator
        with _dispatch.limit_threads(1):
            return fn(arg)
    old = _buffers.set_handler(_buffers.handler())
    try:
        with _dispatch.limit_threads(1):
            return fn(arg)
    finally:
        _buffers.set_handler(old)


@reuse_buffers()
def predict(model, x, batch_size=None, verbose=0):
    """Outputs for ``x`` computed in batches with ``training=False``: one array, or a list with
    one array per output for several outputs.

    Data-parallel (arrays): each rank computes its contiguous share of the rows and every rank
    returns all of them, in order. An iterator is run whole on every rank."""
    batch_size = _batch_size(batch_size, "predict")
    rep = replica_for(model)
    if not rep.is_root:
        verbose = 0
    if not _is_array_like(x):
        chunks = [model._predict_batch_list(b[0] if isinstance(b, tuple) else b) for b in x]
        if not chunks:
            return np.empty((0,))
        return model._pack_outputs([np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))])
    xs = model._split_inputs(x)
    model._ensure_built(xs[0].shape)
    xs = model._cast_inputs(xs)
    plan = model._plan()
    n = len(xs[0])
    shared = rep.active and n >= rep.size
    if shared:  # this rank's rows; gathered below
        lo, hi = rep.shard(n)
        xs = _slice(xs, slice(lo, hi))
        n = hi - lo
    steps = -(-n // batch_size)
    bar = Progbar(steps, verbose=verbose) if verbose else None
    outs = None
    fusion = plan.inference_fusion(plan.activation_fusion())  # folded BatchNorm, fused activations

    def forward(part):
        return plan.forward(_slice(xs, part), training=False, fusion=fusion)

    pool = None
    try:
        for s in range(steps):
            sl = slice(s * batch_size, min((s + 1) * batch_size, n))
            rows = sl.stop - sl.start
            sub = plan.inference_rows(rows)  # a batch of large activations in cache-sized parts
            workers = _predict_workers(plan, rows)
            if workers > 1:
                sub = min(sub, -(-rows // workers))
            parts = [slice(lo, min(lo + sub, sl.stop)) for lo in range(sl.start, sl.stop, sub)]
            if workers > 1 and len(parts) > 1:
                if pool is None:
                    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fastconv-predict")
                results = pool.map(_on_one_thread, [forward] * len(parts), parts)
            else:
                results = map(forward, parts)
            for part, ybs in zip(parts, results):
                if outs is None:
                    outs = [np.empty((n, *yb.shape[1:]), yb.dtype) for yb in ybs]
                for out, yb in zip(outs, ybs):
                    out[part] = yb
            if bar is not None:
                bar.update(s + 1)
    finally:
        if pool is not None:
            pool.shutdown()
    if bar is not None:
        bar.finish(steps)
    if outs is None:
        shapes = model.output_shape if model._num_outputs() > 1 else [model.output_shape]
        outs = [np.empty((0, *tuple(sh)[1:]), model.dtype) for sh in shapes]
    if shared:
        outs = rep.gather_rows(outs)
    return model._pack_outputs(outs)
