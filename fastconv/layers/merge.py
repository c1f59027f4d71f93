"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.

Design notes
------------
* A merge layer takes a *list* of inputs: ``build`` / ``compute_output_shape``
  take a list of per-sample shapes, ``forward`` a list of arrays, and
  ``backward(dy)`` returns a list of gradients (one per input, each with its
  input's shape), or ``None`` when ``need_input_grad`` is False.
* Element-wise merges broadcast as Keras's do: inputs of lower rank get axes
  inserted after the batch axis (``(N, C)`` acts as ``(N, 1, 1, C)``), then
  NumPy's rules apply, so a squeeze-and-excitation gate ``(N, 1, 1, C)``
  multiplies ``(N, H, W, C)``. Each input's gradient is summed over the axes it
  was broadcast along. Shape mismatches raise when the layer is built (that
  is, when it is called on symbolic tensors), worded as Keras words them.
* Add, Subtract and Average cache nothing; Multiply caches its inputs
  (``d/dx_i = dy * prod_{j != i} x_j``); Maximum / Minimum cache which input
  won (ties go to the first input). Nothing is modified in place: ``Add``'s
  backward hands the same ``dy`` to every input that has its shape.
"""

from __future__ import annotations

import numpy as np

from fastconv import activations as _activations
from fastconv.layers.base import Layer, _shape_tuple, register_layer, shape_str
from fastconv.ops import elementwise as _ew
from fastconv.ops import norm as _norm_ops

__all__ = ["Add", "Average", "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract"]


def _broadcast_dim(a, b):
    """Keras's rule for one axis: None if either is unknown, else sizes match or one is 1."""
    if a is None or b is None:
        return None
    if a == 1:
        return b
    if b == 1 or a == b:
        return a
    return False


class _Merge(Layer):
    """Base of the merge layers: list in, one array out, list of gradients back."""

    #: Smallest number of inputs.
    min_inputs = 2

    # -- shapes ----------------------------------------------------------------
    def _shape_list(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            raise ValueError(
                f'A merge layer ("{self.name}", {type(self).__name__}) should be called on a list of '
                f"inputs. Received: input_shape={input_shape!r} (not a list of shapes)"
            )
        shapes = [_shape_tuple(s) for s in input_shape]
        if len(shapes) < self.min_inputs:
            raise ValueError(
                f'A merge layer ("{self.name}", {type(self).__name__}) should be called on a list of '
                f"at least {self.min_inputs} inputs. Got {len(shapes)} inputs. Full input_shape "
                f"received: {[shape_str(s) for s in shapes]}"
            )
        return shapes

    def compute_output_shape(self, input_shape):
        shapes = self._shape_list(input_shape)
        rank = max(len(s) for s in shapes)
        out = [1] * rank
        for s in shapes:
            padded = (1,) * (rank - len(s)) + tuple(s)
            for i, d in enumerate(padded):
                b = _broadcast_dim(out[i], d)
                if b is False:
                    raise ValueError(
                        f'Layer "{self.name}" ({type(self).__name__}): inputs have incompatible shapes. '
                        f"Received shapes {[shape_str(s) for s in shapes]} (axis {i + 1} has "
                        f"{out[i]} vs {d}; sizes must match or be 1)"
                    )
                out[i] = b
        return tuple(out)

    def build(self, input_shape) -> None:
        shapes = self._shape_list(input_shape)
        self.output_shape = self.compute_output_shape(shapes)
        self.input_shape = shapes
        self.built = True

    # -- forward / backward --------------------------------------------------------
    def _expand(self, xs):
        """Keras's rank alignment: insert axes after the batch axis up to the largest rank."""
        rank = max(x.ndim for x in xs)
        return [x.reshape(x.shape[0], *(1,) * (rank - x.ndim), *x.shape[1:]) for x in xs]

    #: Add and Concatenate apply a relu / relu6 after them in place on their fresh output when
    #: the plan fuses that activation layer (``epilogue=``), training and inference alike.
    fusable_epilogues = ()
    #: the epilogues ``call(xs, training, epilogue=name)`` applies in its own pass (Add: in the sum's)
    _call_epilogues = ()
    _epilogue = None  # (activation, y) of a training forward that applied one

    @property
    def final_activation(self):
        return "linear" if self.fusable_epilogues else None

    def forward(self, x, training=False, epilogue=None, out=None):
        if epilogue is not None and epilogue not in self.fusable_epilogues:
            raise ValueError(
                f'Layer "{self.name}" cannot apply the epilogue {epilogue!r}: it can apply '
                f"{list(self.fusable_epilogues)}. Received: epilogue={epilogue!r}"
            )
        if out is not None and not self.accepts_out:
            raise ValueError(f'Layer "{self.name}" cannot write its output into a given array. '
                             f"Received: out of shape {getattr(out, 'shape', None)}")
        fused = epilogue if epilogue in self._call_epilogues else None
        y = self._forward(x, training, out, fused)
        act = None if epilogue in (None, "linear") else _activations.get(epilogue)
        if act is not None and fused is None:
            y = act.forward(y, out=y)
        self._epilogue = (act, y) if training and act is not None else None
        return y

    def _forward(self, x, training, out=None, epilogue=None):
        if not isinstance(x, (list, tuple)):
            raise TypeError(
                f'A merge layer ("{self.name}", {type(self).__name__}) should be called on a list of '
                f"inputs. Received: {type(x).__name__}"
            )
        xs = [np.asarray(a, dtype=self.dtype) for a in x]
        if any(a.ndim < 1 for a in xs):
            raise ValueError(
                f'Layer "{self.name}": inputs need a batch axis. Received shapes {[a.shape for a in xs]}'
            )
        shapes = [a.shape[1:] for a in xs]
        if not self.built:
            self.build(shapes)
        else:
            self.compute_output_shape(shapes)  # raises on incompatible shapes
        if len({a.shape[0] for a in xs}) > 1:
            raise ValueError(
                f'Layer "{self.name}": inputs have different batch sizes. Received shapes '
                f"{[a.shape for a in xs]}"
            )
        if not training:
            self._cache = None
        kw = {} if out is None else {"out": out}
        if epilogue is not None:
            kw["epilogue"] = epilogue
        return self.call(xs, training, **kw)

    def backward(self, dy):
        dy = np.asarray(dy, dtype=self.dtype)
        if self._epilogue is not None:
            act, y = self._epilogue
            dy = act.backward(dy, y)
        return self.call_backward(dy)

    def _unbroadcast(self, g, shape):
        """Sum ``g`` (the output's shape) down to an input's ``shape`` (Keras's expansion undone)."""
        rank = g.ndim
        aligned = (shape[0], *(1,) * (rank - len(shape)), *shape[1:])
        axes = tuple(i for i, (a, b) in enumerate(zip(aligned, g.shape)) if a == 1 and b != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
        return g.reshape(shape)


class _Elementwise(_Merge):
    def call(self, xs, training=False):
        ex = self._expand(xs)
        y = self._merge(ex)
        if training:
            self._cache = self._cache_value(xs, ex, y)
        return y

    def _cache_value(self, xs, ex, y):
        return [x.shape for x in xs]


@register_layer
class Add(_Elementwise):
    """Sum of a list of inputs (Keras ``Add``), broadcasting as Keras does.

    Examples
    --------
    >>> Add()([np.ones((2, 3)), np.ones((2, 3))]).shape
    (2, 3)
    """

    fusable_epilogues = ("relu", "relu6")
    _call_epilogues = ("relu", "relu6")

    def call(self, xs, training=False, epilogue=None):
        ex = self._expand(xs)
        y = self._merge(ex, epilogue)
        if training:
            self._cache = self._cache_value(xs, ex, y)
        return y

    def _merge(self, ex, epilogue=None):
        """The sum, then ``epilogue``: same-shape float inputs in one compiled pass per pair (the
        residual sum and its relu, over threads), NumPy's broadcasting sum otherwise."""
        if ex[0].dtype in (np.float32, np.float64) and all(x.shape == ex[0].shape and x.dtype == ex[0].dtype
                                                            for x in ex[1:]):
            last = len(ex) - 2
            y = None
            for k, x in enumerate(ex[1:]):
                name = (epilogue or "linear") if k == last else "linear"
                y = _ew.residual_add(ex[0] if y is None else y, x, name, out=y)
            return y
        y = ex[0] + ex[1]
        for x in ex[2:]:
            y += x
        if epilogue is not None:
            y = _activations.get(epilogue).forward(y, out=y)
        return y

    def call_backward(self, dy):
        shapes = self._need_cache()
        if not self.need_input_grad:
            return None
        return [self._unbroadcast(dy, s) for s in shapes]


@register_layer
class Subtract(_Elementwise):
    """``inputs[0] - inputs[1]`` (Keras ``Subtract``; exactly two inputs)."""

    def _shape_list(self, input_shape):
        shapes = super()._shape_list(input_shape)
        if len(shapes) != 2:
            raise ValueError(
                f'A `Subtract` layer ("{self.name}") should be called on exactly 2 inputs. '
                f"Received: input_shape={[shape_str(s) for s in shapes]}"
            )
        return shapes

    def _merge(self, ex):
        return ex[0] - ex[1]

    def call_backward(self, dy):
        shapes = self._need_cache()
        if not self.need_input_grad:
            return None
        return [self._unbroadcast(dy, shapes[0]), -self._unbroadcast(dy, shapes[1])]


@register_layer
class Average(_Elementwise):
    """Element-wise mean of a list of inputs (Keras ``Average``)."""

    def _merge(self, ex):
        y = ex[0] + ex[1]
        for x in ex[2:]:
            y += x
        y *= 1.0 / len(ex)
        return y

    def call_backward(self, dy):
        shapes = self._need_cache()
        if not self.need_input_grad:
            return None
        g = dy * (1.0 / len(shapes))
        return [self._unbroadcast(g, s) for s in shapes]


@register_layer
class Multiply(_Elementwise):
    """Element-wise product of a list of inputs (Keras ``Multiply``), broadcasting as Keras does:
    a gate ``(N, 1, 1, C)`` (or ``(N, C)``) scales every pixel of ``(N, H, W, C)``."""

    def _merge(self, ex):
        y = ex[0] * ex[1]
        for x in ex[2:]:
            y *= x
        return y

    def _cache_value(self, xs, ex, y):
        return ([x.shape for x in xs], ex)

    def call_backward(self, dy):
        shapes, ex = self._need_cache()
        if not self.need_input_grad:
            return None
        out = []
        for i, s in enumerate(shapes):
            other = ex[1 - i] if len(ex) == 2 else None
            if other is not None and other.shape == dy.shape and ex[i].shape != dy.shape:
                # a gate (squeeze-excitation): its gradient sums dy * x over the broadcast axes
                # in one pass, without the full-size product (2.2 ms against 5.2 for a 64 x 28 x
                # 28 x 96 map, 1 thread)
                out.append(self._product_sum(dy, other, ex[i].shape).reshape(s))
                continue
            g = dy
            for j, x in enumerate(ex):
                if j != i:
                    g = g * x
            out.append(self._unbroadcast(g, s))
        return out

    @staticmethod
    def _product_sum(dy, other, shape):
        """sum(dy * other) down to the (expanded, same-rank) ``shape``."""
        letters = "abcdefghijklmnop"[:dy.ndim]
        keep = "".join(c for c, n in zip(letters, shape) if n != 1)
        g = np.einsum(f"{letters},{letters}->{keep}", dy, other)
        return g.astype(dy.dtype, copy=False).reshape(shape)


class _Extremum(_Merge):
    _pick = None  # np.greater for Maximum, np.less for Minimum (strict: ties keep the earlier input)

    def call(self, xs, training=False):
        ex = self._expand(xs)
        shape = np.broadcast_shapes(*[x.shape for x in ex])
        y = np.array(np.broadcast_to(ex[0], shape), dtype=self.dtype)
        idx = np.zeros(shape, dtype=np.int8)
        for i, x in enumerate(ex[1:], start=1):
            better = self._pick(x, y)
            idx[better] = i
            np.copyto(y, x, where=better)
        if training:
            self._cache = ([x.shape for x in xs], idx)
        return y

    def call_backward(self, dy):
        shapes, idx = self._need_cache()
        if not self.need_input_grad:
            return None
        zero = np.zeros((), dy.dtype)
        return [self._unbroadcast(np.where(idx == i, dy, zero), s) for i, s in enumerate(shapes)]


@register_layer
class Maximum(_Extremum):
    """Element-wise maximum of a list of inputs (Keras ``Maximum``); ties send the gradient to the first."""

    _pick = staticmethod(np.greater)


@register_layer
class Minimum(_Extremum):
    """Element-wise minimum of a list of inputs (Keras ``Minimum``); ties send the gradient to the first."""

    _pick = staticmethod(np.less)


def _same_elements(a, b):
    """True when ``a`` and ``b`` are views of the very same elements (same address, shape, strides)."""
    return a.shape == b.shape and a.strides == b.strides and a.ctypes.data == b.ctypes.data


def _concat_last(xs, out=None):
    """``np.concatenate(xs, axis=-1)`` of same-dtype arrays: each input's rows copied as single
    items of a void dtype one row long (NumPy's own concatenation copies the short channel
    runs element by element: 1.5-2x slower on an Inception module's branches).

    ``out`` (C-contiguous, the result's shape and dtype): written into and returned; an input that
    already is its slice of ``out`` (a producer that wrote there, the plan's copy-free
    concatenation) is not copied."""
    dtype = xs[0].dtype
    total = sum(x.shape[-1] for x in xs)
    shape = (*xs[0].shape[:-1], total)
    if out is not None and (out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous
                            or any(x.dtype != dtype for x in xs)):
        raise ValueError(f"Concatenate: out must be a C-contiguous {dtype} array of shape {shape}. "
                         f"Received: {out.dtype} {out.shape}")
    if out is None and any(x.dtype != dtype or x.shape[-1] == 0 for x in xs):
        return np.concatenate(xs, axis=-1)
    if out is None:
        out = np.empty(shape, dtype)
    rows = out.reshape(-1, total)
    start = 0
    for x in xs:
        c = x.shape[-1]
        if c == 0 or _same_elements(x, out[..., start : start + c]):
            start += c
            continue
        if not _norm_ops._copy_into(out[..., start : start + c], x):  # float32/64: rows over the threads
            run = np.dtype((np.void, c * dtype.itemsize))
            rows[:, start : start + c].view(run)[...] = np.ascontiguousarray(x).reshape(-1, c).view(run)
        start += c
    return out


@register_layer
class Concatenate(_Merge):
    """Concatenate a list of inputs along ``axis`` (Keras ``Concatenate``; ``axis`` counts the batch
    axis, default -1 = channels). All other sizes must match.

    Examples
    --------
    >>> Concatenate()([np.ones((2, 4, 4, 3)), np.ones((2, 4, 4, 5))]).shape
    (2, 4, 4, 8)
    """

    fusable_epilogues = ("relu", "relu6")
    #: ``forward(xs, out=...)`` on the channel axis: the result goes into ``out``, where inputs
    #: already in place (the execution plan's copy-free concatenation, see channel_slices) are
    #: not copied
    accepts_out = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(
                f"Concatenate cannot join along the batch axis; `axis` must be a non-zero integer "
                f"(Keras counts the batch axis). Received: axis={axis!r}"
            )
        self.axis = int(axis)

    def _sample_axis(self, rank):
        """Axis index in a per-sample shape of length ``rank``."""
        a = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= a <= rank:
            raise ValueError(
                f'Layer "{self.name}": axis {self.axis} is out of range for inputs of rank {rank + 1} '
                f"(batch axis included)"
            )
        return a - 1

    def compute_output_shape(self, input_shape):
        shapes = self._shape_list(input_shape)
        rank = len(shapes[0])
        bad = any(len(s) != rank for s in shapes)
        if not bad:
            ax = self._sample_axis(rank)
            rest = [s[:ax] + s[ax + 1 :] for s in shapes]
            for dims in zip(*rest):
                known = {d for d in dims if d is not None}
                if len(known) > 1:
                    bad = True
        if bad:
            raise ValueError(
                f'A `Concatenate` layer ("{self.name}") requires inputs with matching shapes except '
                f"for the concatenation axis. Received: input_shape={[shape_str(s) for s in shapes]}"
            )
        out = []
        for i, dims in enumerate(zip(*shapes)):
            if i == ax:
                out.append(None if any(d is None for d in dims) else sum(dims))
            else:
                known = [d for d in dims if d is not None]
                out.append(known[0] if known else None)
        return tuple(out)

    def channel_slices(self):
        """``[(c0, c1), ...]``: the channels of the output each input fills, when this layer joins
        built NHWC (rank-4) inputs of known channel counts along the channel axis; else None. The
        execution plan lets a producer write its output straight into that slice."""
        shapes = getattr(self, "input_shape", None)
        if not self.built or not shapes or any(len(s) != 3 for s in shapes) or self._sample_axis(3) != 2:
            return None
        sizes = [s[-1] for s in shapes]
        if any(c is None for c in sizes):
            return None
        bounds = np.cumsum([0, *sizes]).tolist()
        return list(zip(bounds[:-1], bounds[1:]))

    def call(self, xs, training=False, out=None):
        ax = self._sample_axis(xs[0].ndim - 1) + 1
        if training:
            self._cache = (ax, [x.shape[ax] for x in xs])
        if ax == xs[0].ndim - 1:
            return _concat_last(xs, out)
        if out is not None:
            return np.concatenate(xs, axis=ax, out=out)
        return np.concatenate(xs, axis=ax)

    def call_backward(self, dy):
        ax, sizes = self._need_cache()
        if not self.need_input_grad:
            return None
        # views of dy, not copies: the execution plan adds most of them into another gradient of
        # the same tensor (a DenseNet layer's input feeds its BatchNormalization too) and copies
        # only those that reach a layer's backward alone (ExecutionPlan.backward)
        cuts = np.cumsum(sizes)[:-1]
        return np.split(dy, cuts, axis=ax)

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config
