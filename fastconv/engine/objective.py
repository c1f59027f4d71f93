"""The objective of a compiled model: each output's loss (their weighted sum is the training loss),
the loss gradients the plan's backward starts from, and the metrics, with their running totals
over an epoch.

Design notes
------------
* Several inputs and outputs (graph models): each output has its own loss
  (``compile(loss=...)``: one reused, a list, a dict; ``None`` = no loss); the
  training loss is the weighted sum plus the regularization penalty. Logs follow
  Keras: ``loss``, then ``<output>_loss`` and ``<output>_<metric>`` per output
  (the producing layer's name). Every output whose loss is a cross-entropy and
  whose last layer is a softmax read by nothing else is fused (the plan runs it
  as logits; see ``fastconv.engine.graph``). An output without a loss sends no
  gradient; layers that only feed it get zero gradients, never stale ones.
* Metrics keep additive state (``fastconv.metrics``): ``(correct, total)`` for
  accuracy, per-class intersection/union counts for ``mean_iou``, confusion
  counts per threshold for ``auc`` / ``precision`` / ``recall``; the state is
  summed over batches and turned into the value at the end, so the values are
  exact over the whole epoch. A metric is logged under the name it was given
  (``"acc"`` logs ``acc``, Keras's rule). On a fused output (logits), metrics
  that need probabilities get the softmax of the logits.
* Sample weights (``fit(sample_weight=, class_weight=)``, ``evaluate(sample_weight=)``)
  follow Keras 3's ``sum_over_batch_size`` reduction: a batch's loss is
  ``sum_i(w_i * loss_i) / batch_size`` (per-pixel outputs: ``loss_i`` is the
  sample's mean over its positions, as Keras broadcasts ``(N,)`` weights over
  them). The gradient of each sample is its unweighted gradient times ``w_i``.
  The value is computed from the loss's own mean contract, one call per distinct
  weight in the batch (class weights: at most one per class), so every loss
  object works unchanged. Metrics are not weighted (Keras's ``metrics=``; Keras's
  ``weighted_metrics=`` has no fastconv counterpart yet).
"""

from __future__ import annotations

import numpy as np

from fastconv import metrics as _metrics
from fastconv.ops.elementwise import softmax as _compiled_softmax


def _weighted_value(fn, fused, y, out, sw, value):
    """``sum_i(sw_i * loss_i) / N`` from ``fn``'s mean over a subset, one call per distinct weight."""
    uniq = np.unique(sw)
    if len(uniq) == 1:
        return float(uniq[0]) * value
    call = fn.value_and_gradient_from_logits if fused else fn.value_and_gradient
    n = len(sw)
    total = 0.0
    for u in uniq:
        if u == 0:
            continue
        sel = sw == u
        total += float(u) * call(y[sel], out[sel], need_grad=False)[0] * int(sel.sum())
    return total / n


class _Objective:
    """What a compiled model computes per batch: the loss of each output (weighted sum = the
    training loss), their gradients, and the metrics, each on its output.

    Several outputs log ``<output>_loss`` per output (unweighted) and ``<output>_<metric>``; the
    total ``loss`` also holds the regularization penalty. Outputs whose loss is a cross-entropy
    and that end in a softmax are fused (logits in, ``softmax - onehot`` out).
    """

    def __init__(self, model):
        plan = model._plan()
        self.plan = plan
        self.n_out = len(plan.outputs)
        self.losses = list(model._losses)
        if len(self.losses) != self.n_out:
            raise RuntimeError(
                f"The model was compiled for {len(self.losses)} output(s) but now has {self.n_out}: "
                f"compile it again."
            )
        self.weights = list(model._loss_weights)
        self.metrics = list(model._metrics)
        self.loss_index = [k for k, fn in enumerate(self.losses) if fn is not None]
        names = model._output_names() if self.n_out > 1 else []
        self.output_names = names
        self.loss_names = [f"{names[k]}_loss" for k in self.loss_index] if self.n_out > 1 else []
        self.metric_names = [name for name, _, _ in self.metrics]
        self.names = ["loss", *self.loss_names, *self.metric_names]
        self.fused = {}
        for k in self.loss_index:
            if getattr(self.losses[k], "fuses_softmax", False):
                f = plan.output_fusion(k)
                if f is not None:
                    self.fused[k] = f
        self.fusion = {idx: mode for idx, mode in self.fused.values()}
        self.fusion.update(plan.activation_fusion())
        self.fusion = self.fusion or None

    def check_targets(self, ys, who):
        for k in self.loss_index:
            if ys[k] is None:
                name = self.output_names[k] if self.output_names else "the output"
                raise ValueError(f"{who}: no targets (y) for {name}, which has a loss.")
        for _, k, _ in self.metrics:
            if ys[k] is None:
                raise ValueError(f"{who}: no targets (y) for output {k}, which has metrics.")

    def losses_and_grads(self, ys, outs, need_grad=True, sws=None):
        """``(weighted total, [loss per output with a loss], [dy per output or None])``;
        ``sws``: per output, None or the batch's sample weights ``(N,)``."""
        total = 0.0
        per = []
        dys = [None] * self.n_out
        for k in self.loss_index:
            fn = self.losses[k]
            fused = k in self.fused
            if fused:
                value, dy = fn.value_and_gradient_from_logits(ys[k], outs[k], need_grad=need_grad,
                                                              softmax=_compiled_softmax)
            else:
                value, dy = fn.value_and_gradient(ys[k], outs[k], need_grad=need_grad)
            sw = None if sws is None else sws[k]
            if sw is not None:
                value = _weighted_value(fn, fused, ys[k], outs[k], sw, value)
                if dy is not None:
                    dy *= sw.reshape((-1,) + (1,) * (dy.ndim - 1)).astype(dy.dtype, copy=False)
            w = self.weights[k]
            if w != 1.0 and dy is not None:
                dy *= w
            total += w * value
            per.append(value)
            dys[k] = dy
        return total, per, dys

    def metric_states(self, ys, outs):
        """Each metric's state for this batch. A fused output holds logits: metrics that read
        more than the argmax get its softmax (computed once per output, only when needed)."""
        probs = {}
        states = []
        for _, k, metric in self.metrics:
            out = outs[k]
            if k in self.fused and getattr(metric, "uses_probabilities", True):
                if k not in probs:
                    probs[k] = _compiled_softmax(out)
                out = probs[k]
            states.append(metric.update(ys[k], out))
        return states


class _Running:
    """Sample-weighted running means of the losses and summed metric states over an epoch."""

    def __init__(self, objective):
        self.obj = objective
        self.n = 0
        self.loss = 0.0
        self.per = [0.0] * len(objective.loss_names)
        self.states = [None] * len(objective.metrics)

    def add(self, nb, loss, per, states):
        self.n += nb
        self.loss += loss * nb
        if self.per:
            for i, v in enumerate(per):
                self.per[i] += v * nb
        for i, s in enumerate(states):
            self.states[i] = _metrics.merge(self.states[i], s)

    def values(self, extra_loss=0.0):
        """``[(name, value), ...]`` in log order: loss, per-output losses, metrics."""
        n = max(self.n, 1)
        out = [("loss", self.loss / n + extra_loss)]
        out += [(name, v / n) for name, v in zip(self.obj.loss_names, self.per)]
        for (name, _, metric), state in zip(self.obj.metrics, self.states):
            out.append((name, metric.result(state) if state is not None else 0.0))
        return out


def _regularization_loss(layers):
    total = 0.0
    for layer in layers:
        total += layer.regularization_loss()
    return total
