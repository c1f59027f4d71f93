"""Element-wise activations and softmax on compiled kernels: validate -> plan -> allocate -> kernel.

``activation(x, name)`` / ``activation_grad(dy, t, name)`` run one of ``CODES`` (selu, elu,
swish, sigmoid, tanh, gelu, gelu_tanh, softplus, leaky_relu, relu, relu6) over a C-contiguous
float32 / float64 array in fastconv._kernels.elementwise (src/elementwise_impl.h, a vector exp in
src/elementwise_math.h) with the GIL released, in chunks of ops/_plan.norm_plan over OpenMP threads.
The backward reads the forward's output ``y``, or its input ``x`` for the names in
``GRAD_FROM_INPUT`` (swish, gelu, gelu_tanh). ``softmax`` / ``softmax_grad`` work on the last axis; ``residual_add``
is ``f(x + r)`` in one pass (a merge layer's sum and its fused activation).

Inputs are never modified (a non-contiguous one is copied first); ``out`` may be the input itself.
Each op records its variant in fastconv._dispatch.last_kernel[op]: the activation's name
("softmax" for softmax), and its SIMD level in last_used.
"""
from __future__ import annotations

import math

import numpy as np

from fastconv import _dispatch
from fastconv._kernels import elementwise as _k
from fastconv.ops import _plan
from fastconv.ops._validate import as_float_array, check_dy

#: activation name -> kernel code (the conv epilogue takes the same codes)
CODES = dict(_k.CODES)
#: names whose backward reads the forward's input x instead of its output y
GRAD_FROM_INPUT = frozenset(n for n, c in CODES.items() if c in _k.GRAD_FROM_INPUT)
#: the alpha a name uses when none is given (elu's alpha, leaky_relu's negative slope, Keras's defaults)
DEFAULT_ALPHA = {"elu": 1.0, "leaky_relu": 0.2}
# rough cost in multiply-adds per element (threads_for counts multiply-adds)
_COST = {"linear": 1, "relu": 1, "relu6": 1, "leaky_relu": 1, "elu": 12, "selu": 12, "sigmoid": 14,
         "tanh": 14, "swish": 16, "softplus": 30, "gelu": 60, "gelu_tanh": 18}


def check_activation(op: str, name, alpha=None) -> tuple[int, float]:
    """(code, alpha) for an activation name of CODES; a clear ValueError otherwise."""
    if not isinstance(name, str) or name not in CODES:
        raise ValueError(f"{op}: activation must be one of {sorted(CODES)}. Received: activation={name!r}")
    if alpha is None:
        alpha = DEFAULT_ALPHA.get(name, 0.0)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: alpha must be a real number. Received: alpha={alpha!r}") from None
    if not np.isfinite(alpha):
        raise ValueError(f"{op}: alpha must be finite. Received: alpha={alpha!r}")
    return CODES[name], alpha


def _split(n: int, cost: int) -> _plan.RowSplit:
    return _plan.norm_plan(n, 1, False, _dispatch.threads_for(n * cost))


def _out(op: str, out, like: np.ndarray) -> np.ndarray:
    if out is None:
        return np.empty_like(like)
    if (type(out) is not np.ndarray or out.dtype != like.dtype or out.shape != like.shape
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"{op}: out must be a writeable C-contiguous {like.dtype} array of shape {like.shape}. "
                         f"Received: out of type {type(out).__name__}"
                         + (f", dtype {out.dtype}, shape {out.shape}" if isinstance(out, np.ndarray) else ""))
    return out


def activation(x, name: str, *, alpha=None, out=None) -> np.ndarray:
    """y = f(x) element-wise for the activation ``name`` (one of CODES); ``alpha`` is elu's alpha or
    leaky_relu's negative slope (Keras's defaults 1.0 and 0.2), ignored by the others.

    >>> activation(np.array([-1.0, 0.0, 2.0]), "leaky_relu")
    array([-0.2,  0. ,  2. ])
    """
    op = "activation"
    code, a = check_activation(op, name, alpha)
    x = as_float_array(op, "x", x).reshape(np.shape(x))  # (a 0-d x stays 0-d)
    y = _out(op, out, x)
    split = _split(x.size, _COST[name])
    _k.forward(x.reshape(-1), y.reshape(-1), code, a, split.nchunks, _dispatch.level_for(op, x.dtype), split.threads)
    _dispatch.last_kernel[op] = name
    return y


def activation_grad(dy, t, name: str, *, alpha=None, out=None) -> np.ndarray:
    """dx = dy * f'(x) for the activation ``name``; ``t`` is the forward's output y, or its input x
    for the names in GRAD_FROM_INPUT (swish, gelu, gelu_tanh)."""
    op = "activation_grad"
    code, a = check_activation(op, name, alpha)
    dy = as_float_array(op, "dy", dy).reshape(np.shape(dy))
    t = as_float_array(op, "t", t, dy.dtype).reshape(np.shape(t))
    check_dy(op, dy, t.shape)
    dx = _out(op, out, dy)
    split = _split(dy.size, _COST[name])
    _k.backward(dy.reshape(-1), t.reshape(-1), dx.reshape(-1), code, a, split.nchunks,
                _dispatch.level_for(op, dy.dtype), split.threads)
    _dispatch.last_kernel[op] = name
    return dx


def residual_add(x, r, name: str = "linear", *, alpha=None, out=None) -> np.ndarray:
    """y = f(x + r) element-wise in one pass (a residual sum and its activation ``name``, one of
    CODES); ``x`` and ``r`` of one shape and float dtype. ``out`` may be ``x`` or ``r`` itself.
    The sum is NumPy's ``x + r`` bit for bit, the activation :func:`activation`'s.

    >>> residual_add(np.array([-1.0, 0.5]), np.array([0.5, 1.0]), "relu")
    array([0. , 1.5])
    """
    op = "residual_add"
    code, a = check_activation(op, name, alpha)
    x = as_float_array(op, "x", x).reshape(np.shape(x))
    r = as_float_array(op, "r", r, x.dtype).reshape(np.shape(r))
    if r.shape != x.shape:
        raise ValueError(f"{op}: x and r must have the same shape. Received: x {x.shape}, r {r.shape}")
    y = _out(op, out, x)
    split = _split(x.size, 1 + _COST[name])
    _k.add(x.reshape(-1), r.reshape(-1), y.reshape(-1), code, a, split.nchunks, _dispatch.level_for(op, x.dtype),
           split.threads)
    _dispatch.last_kernel[op] = name
    return y


def apply_code(y: np.ndarray, code: int, alpha: float, isa: int, threads: int) -> None:
    """y = f(y) in place for a kernel code, at a SIMD level chosen by the caller (the conv epilogue's
    second pass after a kernel that cannot apply it per tile)."""
    split = _plan.norm_plan(y.size, 1, False, threads)
    _k.forward(y.reshape(-1), y.reshape(-1), code, alpha, split.nchunks, isa if y.dtype.itemsize == 4 else 0,
               split.threads)


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def softmax(x, *, out=None) -> np.ndarray:
    """softmax over the last axis, numerically stable (exp(x - max) / sum); a NaN in a row makes the
    row NaN.

    >>> softmax(np.array([[0.0, 0.0]]))
    array([[0.5, 0.5]])
    """
    op = "softmax"
    if np.ndim(x) < 1:
        raise ValueError(f"{op}: x must have at least one axis. Received: x.shape={np.shape(x)}")
    x = as_float_array(op, "x", x)
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have at least one axis. Received: x.shape={x.shape}")
    y = _out(op, out, x)
    rows = _rows(x)
    split = _plan.norm_plan(rows.shape[0], rows.shape[1], False, _dispatch.threads_for(x.size * 16))
    _k.softmax(rows, _rows(y), split.nchunks, _dispatch.level_for(op, x.dtype), split.threads)
    _dispatch.last_kernel[op] = "softmax"
    return y


def softmax_grad(dy, y, *, out=None) -> np.ndarray:
    """dx = y * (dy - sum(dy * y, axis=-1)): the gradient of softmax over the last axis from its output."""
    op = "softmax_grad"
    if np.ndim(dy) < 1:
        raise ValueError(f"{op}: dy must have at least one axis. Received: dy.shape={np.shape(dy)}")
    dy = as_float_array(op, "dy", dy)
    y = as_float_array(op, "y", y, dy.dtype)
    check_dy(op, dy, y.shape)
    dx = _out(op, out, dy)
    rows = _rows(dy)
    split = _plan.norm_plan(rows.shape[0], rows.shape[1], False, _dispatch.threads_for(dy.size * 3))
    _k.softmax_grad(rows, _rows(y), _rows(dx), split.nchunks, _dispatch.level_for(op, dy.dtype), split.threads)
    _dispatch.last_kernel[op] = "softmax"
    return dx
