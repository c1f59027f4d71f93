"""The flat parameter layout: every trainable weight of a model in one contiguous buffer per dtype
(each layer's ``params[k]`` a view of it), every gradient a view of a second one.

Design notes
------------
* Why: the optimizer then updates all weights in one compiled pass over one segment per dtype
  (``fastconv.optimizers._compiled``), and a data-parallel step sums the gradients with one
  allreduce per dtype straight from the gradient buffer (``fastconv.engine.replica``), with no
  packing into a separate buffer and back.
* Layout: the weights of ``model.trainable_pairs()`` in that order, each starting on a 64-byte
  boundary (its size rounded up to 64 bytes; the padding is zero in both buffers and stays zero
  under every update rule: a zero gradient moves neither a zero weight nor its slots).
* Rebinding: ``layer.params[k]`` / ``layer.grads[k]`` become views holding the same values;
  nothing else changes. Layers and the optimizer read weights through ``params`` at each call,
  and ``set_weights`` / ``load_weights`` copy *into* the arrays, so they write through the views.
  A reference to a weight taken *before* the layout is made (before ``compile`` of a built model or
  the first training step) no longer aliases it; ``exclude_from_weight_decay(var_list=...)`` ids
  are carried over.
* When: ``compile`` of a built model and every training step ask for :func:`train_pairs`; it is
  cached under the layers' weights generation (``fastconv.layers.base.weights_generation``: a
  weight added, ``trainable`` set anywhere) and the model's layer list, so freezing, unfreezing,
  adding a layer or building a lazily built model lays the weights out again at the next step.
  Weights left out of a new layout (a frozen layer) get their own copies.
* ``FASTCONV_FLAT_PARAMS=0`` (read at each re-layout) keeps the weights as separate arrays: the
  reference path a training run is checked against bit for bit.
"""

from __future__ import annotations

import os

import numpy as np

from fastconv.layers import base as _layer_base
from fastconv.layers.base import weights_generation

__all__ = ["FlatPairs", "enabled", "relayout", "train_pairs", "weights_generation"]

ALIGN_BYTES = 64


class FlatPairs(list):
    """``model.trainable_pairs()`` plus the flat buffers behind them.

    ``flat``: ``[(dtype, params buffer, grads buffer, offsets)]`` (one per dtype, ``offsets[i]`` the
    element offset of pair ``i`` in its dtype's buffers; ``None`` entries for pairs of another
    dtype), or None when the weights are separate arrays. ``key``: the cache key."""

    __slots__ = ("flat", "key")

    def __reduce__(self):
        # a pickled or deep-copied model gets its arrays back as separate copies (not views of a
        # copied buffer): it lays them out again at its first step
        return (_stale, ())


def _stale():
    pairs = FlatPairs()
    pairs.flat = pairs.key = None
    return pairs


def enabled() -> bool:
    """Whether models lay their weights out flat (``FASTCONV_FLAT_PARAMS``, default on)."""
    return os.environ.get("FASTCONV_FLAT_PARAMS", "1").strip() != "0"


def _key(model):
    return (_layer_base.weights_generation(), tuple(map(id, model.layers)))


def train_pairs(model) -> FlatPairs:
    """The model's trainable ``(key, param, grad)`` pairs, laid out flat first when they are not."""
    cached = model.__dict__.get("_flat_pairs")
    if cached is not None and cached.key == _key(model):
        return cached
    return relayout(model)


def _walk(layer, out):
    """``(layer, name)`` of every trainable weight, in ``Layer.trainable_pairs`` order."""
    if not layer.trainable:
        return
    for k in layer.params:
        out.append((layer, k))
    for sub in layer.sublayers:
        _walk(sub, out)


def _aligned_zeros(n, dtype):
    dtype = np.dtype(dtype)
    raw = np.zeros(n * dtype.itemsize + ALIGN_BYTES, np.uint8)
    off = -raw.__array_interface__["data"][0] % ALIGN_BYTES
    return raw[off : off + n * dtype.itemsize].view(dtype)


def _is_view_at(a, buf, offset):
    return (a.base is buf or a.base is getattr(buf, "base", None)) and (
        a.__array_interface__["data"][0] == buf.__array_interface__["data"][0] + offset * buf.itemsize
    )


def relayout(model, flat=None) -> FlatPairs:
    """Lay the trainable weights out (again) and return the pairs; ``flat=False``: separate arrays."""
    if flat is None:
        flat = enabled()
    owners = []
    if model.built:
        for layer in model.layers:
            _walk(layer, owners)
    old = model.__dict__.get("_flat_pairs")
    buffers = None
    ids = [id(layer.params[k]) for layer, k in owners]
    if flat and owners and len(set(ids)) == len(ids):
        buffers = _lay_out(model, owners, old)
    elif old is not None and old.flat:
        _detach(model, [], old)  # back to separate arrays
    pairs = FlatPairs(model.trainable_pairs())
    pairs.flat = buffers
    pairs.key = _key(model)
    model._flat_pairs = pairs
    return pairs


def _lay_out(model, owners, old):
    """Rebind ``owners``'s weights to views of flat buffers (reusing ``old``'s when they already
    are laid out so); returns ``FlatPairs.flat``."""
    by_dtype = {}
    for i, (layer, k) in enumerate(owners):
        by_dtype.setdefault(layer.params[k].dtype, []).append(i)
    offsets = [None] * len(owners)
    flat = []
    rebound = {}
    step = {}
    for dtype, idx in by_dtype.items():
        per = max(1, ALIGN_BYTES // dtype.itemsize)
        off, offs = 0, []
        for i in idx:
            offs.append(off)
            off += -(-owners[i][0].params[owners[i][1]].size // per) * per
        total = max(off, 1)
        reuse = None
        for entry in (old.flat or []) if old is not None else []:
            if entry[0] == dtype and entry[1].size == total:
                reuse = entry
        if reuse is not None and all(
            _is_view_at(owners[i][0].params[owners[i][1]], reuse[1], o)
            and _is_view_at(owners[i][0].grads[owners[i][1]], reuse[2], o)
            for i, o in zip(idx, offs)
        ):
            pbuf, gbuf = reuse[1], reuse[2]
        else:
            pbuf, gbuf = _aligned_zeros(total, dtype), _aligned_zeros(total, dtype)
            for i, o in zip(idx, offs):
                layer, k = owners[i]
                p, g = layer.params[k], layer.grads[k]
                pv = pbuf[o : o + p.size].reshape(p.shape)
                gv = gbuf[o : o + p.size].reshape(p.shape)
                pv[...] = p
                if g.shape == p.shape:
                    gv[...] = g
                rebound[id(p)] = pv
                layer.params[k], layer.grads[k] = pv, gv
        for i, o in zip(idx, offs):
            offsets[i] = o
        step[dtype] = (pbuf, gbuf)
    for dtype, (pbuf, gbuf) in step.items():
        flat.append((dtype, pbuf, gbuf, [o if owners[i][0].params[owners[i][1]].dtype == dtype else None
                                          for i, o in enumerate(offsets)]))
    if old is not None and old.flat:
        _detach(model, [b for _, b, _, _ in flat], old)
    if rebound:
        opt = getattr(model, "optimizer", None)
        excl = getattr(opt, "_wd_exclude_keys", None)
        if excl:
            opt._wd_exclude_keys = {id(rebound[i]) if i in rebound else i for i in excl}
        _layer_base.bump_weights_generation()
    return flat


def _detach(model, keep, old):
    """Give every weight still viewing one of ``old``'s buffers (and not one of ``keep``) its own
    copy, so a frozen layer's weights do not keep a stale flat buffer alive (nor alias it)."""
    stale = [b for _, b, _, _ in old.flat if all(b is not k for k in keep)]
    if not stale:
        return
    stale_g = [g for _, b, g, _ in old.flat if any(b is s for s in stale)]
    changed = False
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        stack.extend(layer.sublayers)
        for k in list(layer.params):
            p, g = layer.params[k], layer.grads.get(k)
            if any(p.base is s or p.base is s.base for s in stale):
                layer.params[k] = p.copy()
                changed = True
            if g is not None and any(g.base is s or g.base is s.base for s in stale_g):
                layer.grads[k] = g.copy()
                changed = True
    if changed:
        _layer_base.bump_weights_generation()
