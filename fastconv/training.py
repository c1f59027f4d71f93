"""The training engine: forward/backward over an ordered plan of layer nodes, the train step,
and the fit / evaluate / predict loops with a Keras-style progress bar.

Design notes
------------
* One engine for every model kind. A model hands the engine an
  :class:`ExecutionPlan`: nodes in topological order, each ``(layer, input
  tensor ids, output tensor id)``. ``Sequential`` is the chain
  ``0 -> layer0 -> 1 -> layer1 -> 2 ...``; a later functional ``Model(inputs,
  outputs)`` builds a DAG plan and reuses everything here unchanged
  (multi-input layers take a list and return a list of input gradients).
* Backward runs the nodes in reverse, sums a tensor's gradient over its
  consumers, drops each gradient as soon as it has been used, and skips every
  node that has no trainable weight upstream (frozen leading layers cost no
  backward at all). ``need_input_grad`` is set per step from the *current*
  ``trainable`` flags, so freezing takes effect without recompiling.
* Fused softmax + cross-entropy: when the loss is a cross-entropy and the last
  node ends in a softmax, the training forward produces logits instead
  (a ``Softmax`` / ``Activation("softmax")`` output node is skipped; a layer
  with ``activation="softmax"`` runs with a linear activation for that call),
  the loss takes ``(loss, p - onehot)`` from the logits, and backward starts
  from there. ``predict`` always returns probabilities.
* The loops are lean: the data are converted to the model's dtype once, each
  shuffled batch is one ``np.take`` into a reused buffer (a view when not
  shuffling), the metric is an argmax count, and logs for batch callbacks are
  built only when some callback listens.
* Ctrl-C during ``fit`` (main thread) sets a flag; the current step finishes and
  training returns the History with the weights of that last finished step. A
  second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time

import numpy as np

from fastconv import activations as _activations
from fastconv.callbacks import CallbackList, History

__all__ = [
    "ExecutionPlan",
    "History",
    "Node",
    "Progbar",
    "evaluate",
    "fit",
    "predict",
    "test_on_batch",
    "train_on_batch",
]


# ---------------------------------------------------------------------------
# Execution plan: the graph engine (Sequential is a chain)
# ---------------------------------------------------------------------------


class Node:
    """One layer call: ``tensors[output] = layer(tensors[inputs])``."""

    __slots__ = ("inputs", "layer", "output")

    def __init__(self, layer, inputs, output):
        self.layer = layer
        self.inputs = tuple(inputs)
        self.output = int(output)

    def __repr__(self):
        return f"Node({self.layer.name}, inputs={self.inputs}, output={self.output})"


_FUSABLE = None


def _fusable_classes():
    global _FUSABLE
    if _FUSABLE is None:
        from fastconv import layers as _layers

        skip = (_layers.Softmax,)
        attr = (
            _layers.Dense,
            _layers.Conv2D,
            _layers.DepthwiseConv2D,
            _layers.SeparableConv2D,
            _layers.Conv2DTranspose,
            _layers.ResidualBlock,
        )
        _FUSABLE = (skip, _layers.Activation, attr)
    return _FUSABLE


def _fusable_softmax_mode(layer):
    """How the softmax at the end of ``layer`` can be folded into the loss: "skip", "attr" or None.

    "skip": the layer *is* the softmax (``Softmax``, ``Activation("softmax")``), so the training
    forward stops before it. "attr": the layer applies ``activation="softmax"`` last (Dense, the
    conv layers, ResidualBlock), so it runs once with a linear activation instead.
    """
    skip, activation_cls, attr = _fusable_classes()
    if isinstance(layer, skip):
        return "skip"
    if isinstance(layer, activation_cls) and layer.activation is _activations.softmax:
        return "skip"
    if isinstance(layer, attr) and getattr(layer, "activation", None) is _activations.softmax:
        return "attr"
    return None


class ExecutionPlan:
    """Nodes in topological order over integer tensor ids.

    Parameters
    ----------
    nodes : list of Node
    inputs : tuple of int
        Tensor ids fed by the model inputs.
    outputs : tuple of int
        Tensor ids returned as model outputs.
    """

    def __init__(self, nodes, inputs=(0,), outputs=None):
        self.nodes = list(nodes)
        self.inputs = tuple(inputs)
        if outputs is None:
            outputs = (self.nodes[-1].output,) if self.nodes else self.inputs
        self.outputs = tuple(outputs)
        # Last node index reading each tensor, to free activations early.
        last_use = {}
        for i, node in enumerate(self.nodes):
            for t in node.inputs:
                last_use[t] = i
        self._last_use = last_use
        self._producer = {node.output: i for i, node in enumerate(self.nodes)}

    @classmethod
    def chain(cls, layers):
        """The plan of a ``Sequential`` model."""
        return cls([Node(layer, (i,), i + 1) for i, layer in enumerate(layers)], (0,), (len(layers),))

    # -- fused softmax ---------------------------------------------------------
    def softmax_fusion(self):
        """``(node_index, mode)`` of a single-output plan whose output ends in a softmax, else None."""
        if len(self.outputs) != 1 or not self.nodes:
            return None
        idx = self._producer.get(self.outputs[0])
        if idx is None:
            return None
        mode = _fusable_softmax_mode(self.nodes[idx].layer)
        return None if mode is None else (idx, mode)

    # -- forward -----------------------------------------------------------------
    def forward(self, inputs, training=False, logits=False, upto=None, fusion=None):
        """Run the nodes; ``inputs`` is a list matching ``self.inputs``.

        ``logits=True`` returns the pre-softmax output when the plan ends in a fusable
        softmax. ``upto`` (a node index) stops after that node and returns its output.
        Returns the list of outputs.
        """
        tensors = dict(zip(self.inputs, inputs))
        if fusion is None and logits:
            fusion = self.softmax_fusion()
        last_use = self._last_use
        keep = set(self.outputs) | set(self.inputs)
        stop = len(self.nodes) - 1 if upto is None else upto
        for i, node in enumerate(self.nodes):
            if i > stop:
                break
            layer = node.layer
            if fusion is not None and i == fusion[0]:
                if fusion[1] == "skip":
                    return [tensors[node.inputs[0]]]
                saved = layer.activation
                layer.activation = _activations.linear
                try:
                    y = layer.forward(tensors[node.inputs[0]], training)
                finally:
                    layer.activation = saved
            elif len(node.inputs) == 1:
                y = layer.forward(tensors[node.inputs[0]], training)
            else:
                y = layer.forward([tensors[t] for t in node.inputs], training)
            tensors[node.output] = y
            if upto is None:
                for t in node.inputs:
                    if last_use.get(t) == i and t not in keep:
                        del tensors[t]
        if upto is not None:
            return [tensors[self.nodes[stop].output]]
        return [tensors[t] for t in self.outputs]

    # -- backward ----------------------------------------------------------------
    def backward(self, output_grads, logits=False, fusion=None):
        """Backpropagate ``output_grads`` (list matching ``self.outputs``) after a training forward.

        Nodes with no trainable weight upstream are skipped; every layer's ``grads`` are written.
        """
        needs = self._needs_backward()
        grads = dict(zip(self.outputs, output_grads))
        if fusion is None and logits:
            fusion = self.softmax_fusion()
        if fusion is not None and fusion[1] == "skip":
            node = self.nodes[fusion[0]]
            grads[node.inputs[0]] = grads.pop(node.output)
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            if fusion is not None and fusion[1] == "skip" and i == fusion[0]:
                continue
            dy = grads.pop(node.output, None)
            if dy is None or not needs[i]:
                continue
            layer = node.layer
            need_dx = any(needs_t for needs_t in (self._tensor_needs(needs, t) for t in node.inputs))
            layer.need_input_grad = need_dx
            dx = layer.backward(dy)
            if not need_dx or dx is None:
                continue
            if len(node.inputs) == 1:
                dx = (dx,)
            for t, g in zip(node.inputs, dx):
                if g is None or not self._tensor_needs(needs, t):
                    continue
                prev = grads.get(t)
                grads[t] = g if prev is None else prev + g

    def _tensor_needs(self, needs, t):
        i = self._producer.get(t)
        return False if i is None else needs[i]

    def _needs_backward(self):
        """Per node: True when the node or a node upstream has trainable weights (read now)."""
        needs = []
        for node in self.nodes:
            mine = bool(node.layer.trainable_pairs())
            up = any(self._tensor_needs(needs, t) for t in node.inputs)
            needs.append(mine or up)
        return needs

    @property
    def layers(self):
        seen, out = set(), []
        for node in self.nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                out.append(node.layer)
        return out


# ---------------------------------------------------------------------------
# Train / test steps
# ---------------------------------------------------------------------------


def _loss_and_grad(model, yb, out, fused, need_grad=True):
    loss_fn = model.loss
    if fused:
        return loss_fn.value_and_gradient_from_logits(yb, out, need_grad=need_grad)
    return loss_fn.value_and_gradient(yb, out, need_grad=need_grad)


def _uses_fusion(model):
    """The plan's softmax fusion ``(node index, mode)`` when the loss can take logits, else None."""
    if not getattr(model.loss, "fuses_softmax", False):
        return None
    return model._plan().softmax_fusion()


def _regularization_loss(layers):
    total = 0.0
    for layer in layers:
        total += layer.regularization_loss()
    return total


def _train_step(model, plan, xb, yb, fused, metric_fns):
    """One optimizer step on a batch; returns ``(loss, [(correct, total), ...])``."""
    out = plan.forward([xb], training=True, fusion=fused)[0]
    loss, dy = _loss_and_grad(model, yb, out, fused)
    loss += _regularization_loss(plan.layers)
    plan.backward([dy], fusion=fused)
    model.optimizer.apply(model.trainable_pairs())
    counts = [fn(yb, out) for _, fn in metric_fns]
    return loss, counts


def _test_step(model, plan, xb, yb, fused, metric_fns):
    out = plan.forward([xb], training=False, fusion=fused)[0]
    loss, _ = _loss_and_grad(model, yb, out, fused, need_grad=False)
    counts = [fn(yb, out) for _, fn in metric_fns]
    return loss, counts


def train_on_batch(model, x, y):
    """One step on one batch; returns ``[loss, *metrics]`` for that batch (before the update's effect)."""
    model._require_compiled("train_on_batch")
    x = model._prepare_x(x)
    plan = model._plan()
    fused = _uses_fusion(model)
    loss, counts = _train_step(model, plan, x, np.asarray(y), fused, model._metric_fns)
    return _pack(loss, counts)


def test_on_batch(model, x, y):
    model._require_compiled("test_on_batch")
    x = model._prepare_x(x)
    plan = model._plan()
    loss, counts = _test_step(model, plan, x, np.asarray(y), _uses_fusion(model), model._metric_fns)
    loss += _regularization_loss(plan.layers)
    return _pack(loss, counts)


def _pack(loss, counts):
    if not counts:
        return float(loss)
    return [float(loss)] + [c / t if t else 0.0 for c, t in counts]


# ---------------------------------------------------------------------------
# Progress bar
# ---------------------------------------------------------------------------


def _format_time(seconds):
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


def _format_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 or v == 0 else f"{v:.4e}"


class Progbar:
    """Keras-style progress bar: ``  12/125 [==>...........] - ETA: 3s - loss: 0.4000 - accuracy: 0.9000``.

    ``verbose=1`` redraws one line (at most every ``interval`` seconds) when the
    stream is a terminal or a notebook, and prints only the final line otherwise;
    ``verbose=2`` prints one summary line per call to :meth:`finish`.
    """

    def __init__(self, target, width=30, verbose=1, interval=0.05, stream=None, unit_name="step"):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.stream = stream if stream is not None else sys.stdout
        self.unit_name = unit_name
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool((isatty and isatty()) or "ipykernel" in sys.modules)
        self.start = time.perf_counter()
        self._last_update = 0.0
        self._last_width = 0

    def _bar(self, current):
        target = self.target
        if target is None or target <= 0:
            return f"{current:7d}/Unknown"
        digits = int(math.log10(target)) + 1
        prog = min(current / target, 1.0)
        done = int(self.width * prog)
        bar = f"{current:{digits}d}/{target} ["
        if done > 0:
            bar += "=" * (done - 1) + (">" if current < target else "=")
        bar += "." * (self.width - done) + "]"
        return bar

    def _values(self, values):
        return "".join(f" - {k}: {_format_value(v)}" for k, v in values)

    def update(self, current, values=()):
        """Redraw at step ``current`` (1-based) with ``values`` = [(name, running value), ...]."""
        if self.verbose != 1 or not self.dynamic:
            return
        now = time.perf_counter()
        if now - self._last_update < self.interval and (self.target is None or current < self.target):
            return
        self._last_update = now
        elapsed = now - self.start
        line = self._bar(current)
        if self.target and current < self.target and current > 0:
            eta = elapsed / current * (self.target - current)
            line += f" - ETA: {_format_time(eta)}"
        line += self._values(values)
        pad = max(0, self._last_width - len(line))
        self._last_width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def finish(self, current, values=()):
        """Print the final line of an epoch (``verbose`` 1 or 2)."""
        if self.verbose not in (1, 2):
            return
        elapsed = time.perf_counter() - self.start
        per = elapsed / max(current, 1)
        if per >= 1 or per == 0:
            per_s = f"{per:.0f}s/{self.unit_name}"
        elif per >= 1e-3:
            per_s = f"{per * 1e3:.0f}ms/{self.unit_name}"
        else:
            per_s = f"{per * 1e6:.0f}us/{self.unit_name}"
        if self.verbose == 1:
            line = f"{self._bar(current)} - {elapsed:.0f}s {per_s}{self._values(values)}"
            pad = max(0, self._last_width - len(line))
            prefix = "\r" if self.dynamic else ""
            self.stream.write(prefix + line + " " * pad + "\n")
        else:
            t = self.target if self.target else current
            self.stream.write(f"{current}/{t} - {elapsed:.0f}s - {per_s}{self._values(values)}\n")
        self.stream.flush()


# ---------------------------------------------------------------------------
# Data handling
# ---------------------------------------------------------------------------


def _is_array_like(x):
    return isinstance(x, (np.ndarray, list, tuple)) or hasattr(x, "__array__")


def _check_xy(x, y, who):
    if y is None:
        raise ValueError(f"{who}: y is required when x is an array.")
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(
            f"{who}: x and y must have the same number of samples. Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    return y


class _ArrayBatches:
    """Batches of arrays: views when not shuffling, one ``np.take`` into reused buffers when shuffling."""

    def __init__(self, x, y, batch_size, shuffle, rng, steps=None):
        self.x, self.y = x, y
        self.n = len(x)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = rng
        full = -(-self.n // batch_size) if self.n else 0
        self.steps = full if steps is None else int(steps)
        self._xbuf = self._ybuf = None
        self._perm = None
        self._pos = self.n  # start a fresh pass on the first batch

    def __len__(self):
        return self.steps

    def epoch(self):
        """Yield this epoch's ``(xb, yb)`` batches."""
        bs = self.batch_size
        for _ in range(self.steps):
            if self._pos >= self.n:  # a new pass over the data (reshuffled)
                self._perm = self.rng.permutation(self.n) if self.shuffle else None
                self._pos = 0
            start, stop = self._pos, min(self._pos + bs, self.n)
            self._pos = stop
            if self._perm is None:
                yield self.x[start:stop], self.y[start:stop]
                continue
            idx = self._perm[start:stop]
            if len(idx) == bs:
                if self._xbuf is None:
                    self._xbuf = np.empty((bs, *self.x.shape[1:]), self.x.dtype)
                    self._ybuf = np.empty((bs, *self.y.shape[1:]), self.y.dtype)
                # The buffers are reused: a layer's training cache only lives until this step's backward.
                np.take(self.x, idx, axis=0, out=self._xbuf)
                np.take(self.y, idx, axis=0, out=self._ybuf)
                yield self._xbuf, self._ybuf
            else:
                yield np.take(self.x, idx, axis=0), np.take(self.y, idx, axis=0)


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
            yield self.model._prepare_x(batch[0]), np.asarray(batch[1])


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------


class _InterruptGuard:
    """Turns the first SIGINT into a flag checked between steps (main thread only)."""

    def __init__(self):
        self.requested = False
        self._old = None
        self._installed = False

    def _handler(self, signum, frame):
        if self.requested:
            signal.signal(signal.SIGINT, self._old)
            raise KeyboardInterrupt
        self.requested = True
        sys.stdout.write("\nInterrupted: stopping after this step (Ctrl-C again to abort at once).\n")
        sys.stdout.flush()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                old = signal.getsignal(signal.SIGINT)
                if old is signal.default_int_handler:
                    self._old = old
                    signal.signal(signal.SIGINT, self._handler)
                    self._installed = True
            except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                self._installed = False
        return self

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, self._old)
        return False


# ---------------------------------------------------------------------------
# fit / evaluate / predict
# ---------------------------------------------------------------------------


def _running(loss_sum, n_loss, counts, names):
    values = [("loss", loss_sum / max(n_loss, 1))]
    for name, (c, t) in zip(names, counts):
        values.append((name, c / t if t else 0.0))
    return values


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
):
    """Train ``model`` (see :meth:`fastconv.model.Model.fit`). Returns a :class:`History`."""
    model._require_compiled("fit")
    if verbose == "auto":
        verbose = 1
    rng = np.random.default_rng(seed)
    if batch_size is None:
        batch_size = 32
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"fit: batch_size must be >= 1. Received: batch_size={batch_size}")

    # ---- training data
    if _is_array_like(x):
        x = np.asarray(x)
        y = _check_xy(x, y, "fit")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(
                f"validation_split must be in [0, 1). Received: validation_split={validation_split}"
            )
        if validation_split and validation_data is None:
            split_at = int(len(x) * (1.0 - validation_split))
            x, x_val = x[:split_at], x[split_at:]
            y, y_val = y[:split_at], y[split_at:]
            validation_data = (x_val, y_val)
        if len(x) == 0:
            raise ValueError("fit: no training samples (x is empty after validation_split).")
        model._ensure_built(x.shape)
        x = model._prepare_x(x)
        train = _ArrayBatches(x, y, batch_size, shuffle, rng, steps_per_epoch)
    elif x is not None and (hasattr(x, "__iter__") or hasattr(x, "__next__")):
        if validation_split:
            raise ValueError("validation_split is not supported when x is a generator; pass validation_data.")
        train = _GeneratorBatches(x, steps_per_epoch, model)
    else:
        raise TypeError(
            f"fit: x must be an array or an iterator of (x, y) batches. Received: {type(x).__name__}"
        )

    # ---- validation data
    val = None
    if validation_data is not None:
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            xv = np.asarray(validation_data[0])
            yv = _check_xy(xv, validation_data[1], "fit(validation_data)")
            model._ensure_built(xv.shape)
            val = ("arrays", model._prepare_x(xv), yv)
        elif hasattr(validation_data, "__iter__") or hasattr(validation_data, "__next__"):
            val = ("gen", validation_data, validation_steps)
        else:
            raise ValueError("validation_data must be a tuple (x_val, y_val) or an iterator of batches.")
    val_bs = int(validation_batch_size or batch_size)

    history = History()
    cbs = CallbackList(
        [history, *(callbacks or [])],
        model=model,
        params={"epochs": epochs, "steps": len(train) or None, "verbose": verbose},
    )
    metric_names = [name for name, _ in model._metric_fns]
    plan = model._plan()
    fused = _uses_fusion(model)
    model.stop_training = False
    logs = {}
    epoch = initial_epoch
    step_in_epoch = 0
    interrupted = False
    cbs.on_train_begin()
    try:
        with _InterruptGuard() as guard:
            for epoch in range(initial_epoch, epochs):
                cbs.on_epoch_begin(epoch)
                if verbose:
                    print(f"Epoch {epoch + 1}/{epochs}")
                bar = Progbar(len(train) or None, verbose=verbose)
                loss_sum, n_loss = 0.0, 0
                counts = [[0, 0] for _ in metric_names]
                step_in_epoch = 0
                batch_hooks = cbs.has_batch_hooks
                for xb, yb in train.epoch():
                    if batch_hooks:
                        cbs.on_train_batch_begin(step_in_epoch)
                    loss, bc = _train_step(model, plan, xb, yb, fused, model._metric_fns)
                    nb = len(xb)
                    loss_sum += loss * nb
                    n_loss += nb
                    for acc, (c, t) in zip(counts, bc):
                        acc[0] += c
                        acc[1] += t
                    step_in_epoch += 1
                    if verbose == 1 and bar.dynamic:
                        bar.update(step_in_epoch, _running(loss_sum, n_loss, counts, metric_names))
                    if batch_hooks:
                        cbs.on_train_batch_end(
                            step_in_epoch - 1, dict(_running(loss_sum, n_loss, counts, metric_names))
                        )
                    if guard.requested:
                        raise KeyboardInterrupt
                if step_in_epoch == 0:
                    import warnings

                    warnings.warn("fit: the input ran out of data; stopping training.", stacklevel=2)
                    break
                logs = dict(_running(loss_sum, n_loss, counts, metric_names))
                if val is not None:
                    if val[0] == "arrays":
                        vres = _evaluate_arrays(model, plan, val[1], val[2], val_bs, fused)
                    else:
                        vres = _evaluate_generator(model, plan, val[1], val[2], fused)
                    for k, v in vres.items():
                        logs["val_" + k] = v
                bar.finish(step_in_epoch, list(logs.items()))
                cbs.on_epoch_end(epoch, logs)
                if guard.requested:
                    raise KeyboardInterrupt
                if model.stop_training:
                    break
    except KeyboardInterrupt:
        interrupted = True
        history.interrupted = True
        if verbose:
            print(
                f"\nTraining interrupted (Ctrl-C) in epoch {epoch + 1} after step {step_in_epoch}; "
                f"the model keeps the weights of the last finished step."
            )
    finally:
        cbs.on_train_end(logs)
    history.interrupted = interrupted
    model.history = history
    return history


def _evaluate_arrays(model, plan, x, y, batch_size, fused, bar=None):
    n = len(x)
    if n == 0:
        raise ValueError("evaluate: no samples.")
    metric_fns = model._metric_fns
    loss_sum = 0.0
    counts = [[0, 0] for _ in metric_fns]
    steps = -(-n // batch_size)
    for s in range(steps):
        xb = x[s * batch_size : (s + 1) * batch_size]
        yb = y[s * batch_size : (s + 1) * batch_size]
        loss, bc = _test_step(model, plan, xb, yb, fused, metric_fns)
        loss_sum += loss * len(xb)
        for acc, (c, t) in zip(counts, bc):
            acc[0] += c
            acc[1] += t
        if bar is not None:
            bar.update(
                s + 1, _running(loss_sum, (s * batch_size + len(xb)), counts, [m for m, _ in metric_fns])
            )
    res = {"loss": loss_sum / n + _regularization_loss(plan.layers)}
    for (name, _), (c, t) in zip(metric_fns, counts):
        res[name] = c / t if t else 0.0
    return res


def _evaluate_generator(model, plan, data, steps, fused):
    if steps is None:
        try:
            steps = len(data)
        except TypeError:
            steps = None
    it = iter(data)
    metric_fns = model._metric_fns
    loss_sum, n = 0.0, 0
    counts = [[0, 0] for _ in metric_fns]
    k = 0
    while steps is None or k < steps:
        try:
            batch = next(it)
        except StopIteration:
            break
        xb, yb = model._prepare_x(batch[0]), np.asarray(batch[1])
        loss, bc = _test_step(model, plan, xb, yb, fused, metric_fns)
        loss_sum += loss * len(xb)
        n += len(xb)
        for acc, (c, t) in zip(counts, bc):
            acc[0] += c
            acc[1] += t
        k += 1
    if n == 0:
        raise ValueError("evaluate: the validation generator yielded no batches.")
    res = {"loss": loss_sum / n + _regularization_loss(plan.layers)}
    for (name, _), (c, t) in zip(metric_fns, counts):
        res[name] = c / t if t else 0.0
    return res


def evaluate(model, x=None, y=None, batch_size=None, verbose=1, steps=None, return_dict=False):
    """Loss and metrics on ``x, y`` in batches (``training=False``); see :meth:`Model.evaluate`."""
    model._require_compiled("evaluate")
    batch_size = int(batch_size or 32)
    plan = model._plan()
    fused = _uses_fusion(model)
    if _is_array_like(x):
        x = np.asarray(x)
        y = _check_xy(x, y, "evaluate")
        model._ensure_built(x.shape)
        x = model._prepare_x(x)
        bar = Progbar(-(-len(x) // batch_size), verbose=verbose) if verbose else None
        res = _evaluate_arrays(model, plan, x, y, batch_size, fused, bar=bar)
        if bar is not None:
            bar.finish(bar.target, list(res.items()))
    else:
        res = _evaluate_generator(model, plan, x, steps, fused)
        if verbose:
            print(" - ".join(f"{k}: {_format_value(v)}" for k, v in res.items()))
    if return_dict:
        return res
    vals = list(res.values())
    return vals[0] if len(vals) == 1 else vals


def predict(model, x, batch_size=None, verbose=0):
    """Outputs for ``x`` computed in batches with ``training=False``."""
    batch_size = int(batch_size or 32)
    if not _is_array_like(x):
        outs = [model.predict_on_batch(b[0] if isinstance(b, (tuple, list)) else b) for b in x]
        return np.concatenate(outs) if outs else np.empty((0,))
    x = np.asarray(x)
    model._ensure_built(x.shape)
    x = model._prepare_x(x)
    plan = model._plan()
    n = len(x)
    steps = -(-n // batch_size)
    bar = Progbar(steps, verbose=verbose) if verbose else None
    out = None
    for s in range(steps):
        sl = slice(s * batch_size, min((s + 1) * batch_size, n))
        yb = plan.forward([x[sl]], training=False)[0]
        if out is None:
            out = np.empty((n, *yb.shape[1:]), yb.dtype)
        out[sl] = yb
        if bar is not None:
            bar.update(s + 1)
    if bar is not None:
        bar.finish(steps)
    if out is None:
        shape = model.output_shape if model.output_shape is not None else ()
        return np.empty((0, *shape), model.dtype)
    return out
