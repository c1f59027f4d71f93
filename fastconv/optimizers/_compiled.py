"""The compiled optimizer step: every weight's update in one call of ``fastconv._kernels.optim``.

Design notes
------------
* ``Optimizer.apply`` asks :func:`step` first; it returns False (and the NumPy per-weight update,
  the reference, runs instead) when the step cannot be compiled: a subclass that overrides the update,
  the clipping or the weight-decay choice, weights of mixed or non-float dtypes, non-contiguous or
  read-only arrays, one array passed twice or overlapping another.
* A *segment table* (per weight: the addresses of the param, its gradient and its slots, whether weight
  decay applies) and a *chunk table* (runs of at most ``CHUNK`` elements) are built once and reused
  while the step sees the same arrays: the cache key is the weights' keys and array identities and the
  optimizer's slot version (bumped when slots are created, reset or restored, or the weight-decay
  exclusions change). The cache holds the arrays, so their addresses stay valid while it is in use.
* Per step only the scalars are computed in Python (learning rate, bias corrections, clip scales);
  ``clipnorm`` needs each weight's norm first: one compiled pass of per-chunk sums of squares, added up
  per weight in chunk order (so they do not depend on the threads).
* Flat weights (``fastconv.engine.flat``: the model's weights and gradients are views of one
  buffer per dtype, handed over as ``flat``): the step runs over ONE segment, the whole buffers,
  with the slots laid out the same way (each key's slot arrays become views of one slot buffer per
  slot name, holding the values they had). Not with ``clipnorm`` (a norm per weight) or weight decay
  on some weights only: those keep the per-weight table (over the same views). The update is the
  same element by element, so a flat step equals the table step bit for bit (``global_clipnorm``'s
  norm is summed in other chunks: equal to rounding).
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from fastconv import _dispatch

__all__ = ["step"]

CHUNK = 16384  # elements per chunk (64 KiB of float32: the param, grad and slots of a chunk stay in L2)
PARALLEL_MIN = 1 << 16  # fewer elements in all run on one thread (an OpenMP region costs microseconds)

_kernel = None


def _k():
    global _kernel
    if _kernel is None:
        from fastconv._kernels import optim

        _kernel = optim
    return _kernel


class _Layout:
    """The segment and chunk tables of one list of weights (and references keeping them alive)."""

    __slots__ = ("chunk_seg", "chunks", "f64", "keep", "key", "nthreads", "ones", "seg", "size", "wd_on")

    def __init__(self, key, seg, wd_on, chunks, f64, keep, size):
        self.key, self.seg, self.wd_on, self.chunks, self.f64, self.keep = key, seg, wd_on, chunks, f64, keep
        self.size = size
        self.chunk_seg = np.ascontiguousarray(chunks[:, 0])
        self.ones = np.ones(len(seg), np.float64)


def _addr(a):
    return _k().address(a)


def _usable(a, dtype):
    return (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous
            and a.flags.writeable and a.size > 0)


def _build(opt, pairs, key):
    """The layout of ``pairs``, or None when they cannot go through the compiled step."""
    dtype = pairs[0][1].dtype if isinstance(pairs[0][1], np.ndarray) else None
    if dtype not in (np.float32, np.float64):
        return None
    rows, wd_on, keep = [], [], []
    written, read = [], []
    for k, p, g in pairs:
        if not (_usable(p, dtype) and isinstance(g, np.ndarray) and g.dtype == dtype
                and g.flags.c_contiguous and g.shape == p.shape):
            return None
        slots = opt._slot(k, p) if opt._slot_names else {}
        arrs = [slots.get(n) for n in opt._c_slots]
        if any(a is not None and not (_usable(a, dtype) and a.shape == p.shape) for a in arrs):
            return None
        row = [_addr(p), _addr(g)] + [0 if a is None else _addr(a) for a in arrs]
        rows.append(row + [0] * (5 - len(row)))
        wd_on.append(bool(opt.weight_decay) and opt._use_weight_decay(k, p))
        keep.extend([p, g, *(a for a in arrs if a is not None)])
        nbytes = p.size * p.itemsize
        written.extend((r, r + nbytes) for r in row[:1] + row[2:] if r)
        read.append((row[1], row[1] + nbytes))
    # The arrays written (params and slots) must not overlap one another nor any gradient (a weight
    # passed twice, or views of one buffer): the NumPy path then gives the reference behaviour.
    written.sort()
    if any(b0 < a1 for (_, a1), (b0, _) in zip(written, written[1:])):
        return None
    starts = [w[0] for w in written]
    for g0, g1 in read:
        i = bisect.bisect_left(starts, g1)  # written spans are disjoint and sorted: only i-1 can overlap
        if i and written[i - 1][1] > g0:
            return None
    chunks = []
    for s, (_, p, _) in enumerate(pairs):
        n = p.size
        for i0 in range(0, n, CHUNK):
            chunks.append((s, i0, min(n, i0 + CHUNK)))
    seg = np.array(rows, dtype=np.int64).reshape(len(rows), 5)
    size = sum(p.size for _, p, _ in pairs)
    return _Layout(key, seg, np.array(wd_on, np.uint8), np.array(chunks, np.int64).reshape(-1, 3),
                   dtype == np.float64, keep, size)


def _clip(opt, lay, nthreads):
    """``(clip mode, per-segment scale, clipvalue)`` of this step (the rules of ``Optimizer._clip``)."""
    if opt.clipnorm:
        c = opt.clipnorm
        part = np.empty(len(lay.chunks), np.float64)
        _k().sumsq(lay.seg, lay.chunks, part, lay.f64, nthreads)
        norm = np.sqrt(np.bincount(lay.chunk_seg, weights=part, minlength=len(lay.seg)))
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(norm > c, c / np.maximum(norm, c), 1.0)
        return 1, np.ascontiguousarray(scale, np.float64), 0.0
    if opt.global_clipnorm:
        c = opt.global_clipnorm
        part = np.empty(len(lay.chunks), np.float64)
        _k().sumsq(lay.seg, lay.chunks, part, lay.f64, nthreads)
        norm = math.sqrt(float(np.sum(part)))
        s = c * min(1.0 / norm, 1.0 / c) if norm > 0 else 1.0
        if not math.isfinite(norm):
            s = math.nan
        if s == 1.0:
            return 0, lay.ones, 0.0
        return 1, np.full(len(lay.seg), s, np.float64), 0.0
    if opt.clipvalue:
        return 2, lay.ones, float(opt.clipvalue)
    return 0, lay.ones, 0.0


def _flat_slots(opt, pairs, offsets, pbuf):
    """Each pair's slots as views of one buffer per slot name laid out like ``pbuf`` (values kept,
    fresh slots at their initial value); returns the buffers."""
    bufs = {}
    for name in opt._slot_names:
        buf = np.empty_like(pbuf)
        buf[...] = opt._slot_init(name)  # the padding too (it stays unchanged under a zero gradient)
        bufs[name] = buf
    for (k, p, _), off in zip(pairs, offsets):
        old = opt._slots.get(k)
        views = {n: bufs[n][off : off + p.size].reshape(p.shape) for n in opt._slot_names}
        if old is not None and set(old) == set(views) and all(
            a.shape == p.shape and a.dtype == p.dtype for a in old.values()
        ):
            for n, v in views.items():
                v[...] = old[n]
        opt._slots[k] = views
    opt._slot_version += 1
    return bufs


def _build_flat(opt, pairs, flat, key):
    """The one-segment layout of flat ``pairs``, or None (then the per-weight table is used)."""
    if len(flat) != 1 or opt.clipnorm:
        return None
    dtype, pbuf, gbuf, offsets = flat[0]
    if dtype not in (np.float32, np.float64) or len(offsets) != len(pairs) or not pbuf.flags.writeable:
        return None
    wd_on = {bool(opt.weight_decay) and opt._use_weight_decay(k, p) for k, p, _ in pairs}
    if len(wd_on) != 1:
        return None
    for (_, p, g), off in zip(pairs, offsets):  # the pairs really are the views the offsets say
        if not (isinstance(p, np.ndarray) and isinstance(g, np.ndarray) and p.flags.c_contiguous
                and g.flags.c_contiguous and off is not None):
            return None
        at = _addr(pbuf) + off * pbuf.itemsize
        if (_addr(p) != at or _addr(g) != at - _addr(pbuf) + _addr(gbuf) or p.dtype != dtype
                or g.shape != p.shape):
            return None
    slots = _flat_slots(opt, pairs, offsets, pbuf) if opt._slot_names else {}
    arrs = [slots.get(n) for n in opt._c_slots]
    row = [_addr(pbuf), _addr(gbuf)] + [0 if a is None else _addr(a) for a in arrs]
    seg = np.array([row + [0] * (5 - len(row))], dtype=np.int64)
    n = pbuf.size
    chunks = np.array([(0, i0, min(n, i0 + CHUNK)) for i0 in range(0, n, CHUNK)], np.int64).reshape(-1, 3)
    keep = [pbuf, gbuf, flat, *slots.values()]
    return _Layout(key, seg, np.array([wd_on.pop()], np.uint8), chunks, dtype == np.float64, keep, n)


def step(opt, pairs, lr, flat=None) -> bool:
    """One compiled update of ``pairs`` (``[(key, param, grad)]``, no None grads) with learning rate
    ``lr``; ``opt._begin_step(lr)`` has run. False when this step must take the NumPy path.
    ``flat``: the ``FlatPairs.flat`` buffers behind ``pairs`` (then one segment per dtype)."""
    if not pairs:
        return False
    lay = opt._layout
    if flat is not None:
        key = ("flat", opt._slot_version, id(flat), bool(opt.clipnorm), bool(opt.weight_decay))
        if lay is not None and lay.key == key:
            return _run(opt, lay, lr)
        if opt.__dict__.get("_flat_refused") != key:
            lay = _build_flat(opt, pairs, flat, key)
            if lay is not None:
                lay.key = ("flat", opt._slot_version, *key[2:])  # _flat_slots bumped the version
                opt._layout = lay
                return _run(opt, lay, lr)
            opt._flat_refused = key
    key = (opt._slot_version, tuple(k for k, _, _ in pairs), tuple(id(p) for _, p, _ in pairs),
           tuple(id(g) for _, _, g in pairs))
    if lay is None or lay.key != key:
        lay = opt._layout = _build(opt, pairs, key)
        if lay is None:
            return False
        # _slot() may have created slots (bumping the version): key the layout on the version now
        lay.key = key = (opt._slot_version,) + key[1:]
    return _run(opt, lay, lr)


def _run(opt, lay, lr) -> bool:
    nthreads = _dispatch.get_num_threads() if lay.size >= PARALLEL_MIN else 1
    clip, scale, clipvalue = _clip(opt, lay, nthreads)
    wd = opt.weight_decay * lr if opt.weight_decay else 0.0
    kind, flags, coefs = opt._compiled_step(lr)
    _k().update(lay.seg, lay.wd_on, scale, lay.chunks, lay.f64, kind, flags, clip, clipvalue, wd, coefs,
                nthreads)
    return True
