"""Shared layers in a plan: one proxy per node of a layer that a graph calls at several nodes.

Design notes
------------
* A layer keeps one ``_cache`` and ``backward`` overwrites its ``grads``. A
  layer called at several nodes therefore enters the execution plan as one
  :class:`_SharedUse` per node: it saves the caches of the layer (and its
  sublayers) after that node's training forward, restores them before that
  node's backward, and keeps the layer's ``grads`` equal to the running sum
  over the uses, minus the extra copies of the regularizer gradient (the
  penalty counts once per weight, as in ``regularization_loss``).
* The proxy exposes ``wrapped_layer``; the plan (``fastconv.engine.graph``)
  uses it to reset the grads of a shared layer none of whose uses got a
  gradient in a step.
"""

from __future__ import annotations

import numpy as np


def _all_sublayers(layer):
    yield layer
    for sub in layer.sublayers:
        yield from _all_sublayers(sub)



def _clear_caches(layer) -> None:
    for sub in _all_sublayers(layer):
        sub._cache = None


def _written_grad_keys(layer) -> list:
    """``(sublayer, key)`` of every grad a backward of ``layer`` writes (trainable weights only)."""
    return [(sub, key) for sub in _all_sublayers(layer) if sub.trainable for key in sub.grads]


class _SharedState:
    """What the uses of one shared layer have in common: the running gradient sum of a step."""

    __slots__ = ("calls", "fresh", "layer", "owner", "sums")

    def __init__(self, layer):
        self.layer = layer
        self.sums = None
        self.calls = 0
        self.fresh = True
        self.owner = None  # the use that reports the regularization loss


class _SharedUse:
    """One node of a layer that runs at several nodes of a graph, as the ExecutionPlan sees it.

    Behaves like the layer for the plan (``forward``, ``backward``, ``need_input_grad``,
    ``trainable``, ``trainable_pairs``, ``regularization_loss``, ``name``) but keeps this
    node's training caches and sums the layer's gradients over its uses (see module notes).
    """

    def __init__(self, layer, state):
        self.layer = layer
        self.state = state
        self.need_input_grad = True
        self._caches = None
        if state.owner is None:
            state.owner = self

    @property
    def wrapped_layer(self):
        """The shared layer (the plan resets its grads when none of its uses got a gradient)."""
        return self.layer

    @property
    def name(self):
        return self.layer.name

    @property
    def trainable(self):
        return self.layer.trainable

    @property
    def activation(self):
        return getattr(self.layer, "activation", None)

    def trainable_pairs(self):
        return self.layer.trainable_pairs()

    def regularization_loss(self):
        return self.layer.regularization_loss() if self.state.owner is self else 0.0

    def forward(self, x, training=False):
        y = self.layer.forward(x, training=training)
        self._caches = [sub._cache for sub in _all_sublayers(self.layer)] if training else None
        self.state.fresh = True
        return y

    def backward(self, dy):
        if self._caches is None:
            raise RuntimeError(
                f'Layer "{self.layer.name}": backward() needs a preceding forward(x, training=True).'
            )
        layer, st = self.layer, self.state
        for sub, cache in zip(_all_sublayers(layer), self._caches):
            sub._cache = cache
        self._caches = None
        layer.need_input_grad = self.need_input_grad
        dx = layer.backward(dy)
        _clear_caches(layer)
        keys = _written_grad_keys(layer)
        if st.fresh or st.sums is None or len(st.sums) != len(keys):
            st.sums = [sub.grads[key].copy() for sub, key in keys]
            st.calls = 1
            st.fresh = False
            return dx
        st.calls += 1
        for total, (sub, key) in zip(st.sums, keys):
            grad = sub.grads[key]
            total += grad
            np.copyto(grad, total, casting="same_kind")
            reg = sub._regularizers.get(key)
            if reg is not None:  # each use added the penalty's gradient; it counts once
                grad -= (st.calls - 1) * reg.gradient(sub.params[key])
        return dx

    def __repr__(self):
        return f"<shared use of {self.layer!r}>"
