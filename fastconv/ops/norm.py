"""BatchNorm and the clamp activations (relu, relu6): validate -> plan -> allocate -> kernel.

A tensor (N, ..., C) is seen as M = N*H*W rows of C channels.  The ops compute the per-channel
coefficients (C values, in float64) here and leave every pass over the data to
fastconv._kernels.norm (src/norm_impl.h) with the GIL released: the statistics, the affine
normalisation (with relu / relu6 fused after it on request), the backward's two sums and dx.
The row split of every pass is ops/_plan.norm_plan.

Each op records the kernel variant it ran in fastconv._dispatch.last_kernel[op]:
"stats+affine" (training forward), "affine" (inference forward), "dsums+dx" / "dsums" (training
backward with / without dx), "dx" (inference backward), each with "+relu" / "+relu6" when an
activation is fused; the clamp activations report "kernel" or "numpy" (the NumPy fallback for
arrays the kernel does not take).
"""
from __future__ import annotations

import numpy as np

from fastconv import _dispatch
from fastconv._kernels import norm as _k
from fastconv.ops import _plan
from fastconv.ops._validate import as_float_array, check_dy, pixel_rows

_INT32_MAX = 2**31 - 1
ACT_CODES = _k.ACT_CODES  # None / "linear" 0, "relu" 1, "relu6" 2: the kernels' enumeration


def _rows(op: str, name: str, t, dtype=None) -> np.ndarray:
    """``t`` as a C-contiguous (M, C) float32/float64 array (a view when it already is one)."""
    a = as_float_array(op, name, t, dtype)
    if a.ndim < 1:
        raise ValueError(f"{op}: {name} must have a channels axis (..., C). Received: {name}.shape={a.shape}")
    if a.shape[-1] > _INT32_MAX:  # the kernels keep the channel count in a C int
        raise ValueError(f"{op}: at most 2**31 - 1 = {_INT32_MAX} channels (axis -1) are supported. "
                         f"Received: {name}.shape={a.shape}")
    return a.reshape(-1, a.shape[-1]) if a.ndim != 2 else a


def _act(op: str, activation) -> int:
    try:
        return ACT_CODES[activation]
    except (KeyError, TypeError):
        raise ValueError(f"{op}: activation must be None, 'relu' or 'relu6'. Received: "
                         f"activation={activation!r}") from None


def _vec(v, c: int, dtype) -> np.ndarray:
    """A per-channel coefficient (scalar or (C,)) as a fresh contiguous (C,) array of ``dtype``."""
    if type(v) is np.ndarray:
        return v.astype(dtype)
    return np.full(c, v, dtype=dtype)


def _one(v):
    return 1.0 if v is None else np.asarray(v, dtype=np.float64)


def _zero(v):
    return 0.0 if v is None else np.asarray(v, dtype=np.float64)


def _variant(name: str, act: int) -> str:
    return name + ("", "+relu", "+relu6")[act]


def _split(m: int, c: int, reduce: bool) -> _plan.RowSplit:
    return _plan.norm_plan(m, c, reduce, _dispatch.threads_for(m * c))


def batch_norm_train(x, gamma=None, beta=None, *, epsilon=1e-3, activation=None):
    """Batch normalisation with the batch statistics (training mode), per channel (last axis).

    x (N, ..., C), gamma / beta (C,) or None (1 / 0) -> (y like x, mean (C,), var (C,)): y =
    act((x - mean) / sqrt(var + epsilon) * gamma + beta) with the batch mean and the biased batch
    variance (float64, returned for the moving averages and for batch_norm_train_grad).
    activation: None, "relu" or "relu6", fused after the normalisation.

    >>> y, mean, var = batch_norm_train(np.arange(8, dtype=np.float32).reshape(4, 2))
    >>> mean
    array([3., 4.])
    """
    op = "batch_norm_train"
    shape = np.shape(x)
    x2 = _rows(op, "x", x)
    m, c = x2.shape
    act = _act(op, activation)
    wd = x2.dtype
    isa = _dispatch.level_for(op, wd)
    mean, var = np.zeros(c), np.ones(c)
    if m:
        split = _split(m, c, True)
        _k.bn_stats(x2, mean, var, split.nchunks, isa, split.threads)
    inv = 1.0 / np.sqrt(var + epsilon)
    # the kernels subtract the mean rounded to the data's dtype; its rounding error (large means in
    # float32) is folded into the float64 offset instead
    mean_w = mean.astype(wd)
    resid = mean - mean_w
    a = _one(gamma) * inv
    y2 = np.empty_like(x2)
    split = _split(m, c, False)
    shift = _vec(_zero(beta) - resid * a, c, wd)
    _k.bn_affine(x2, mean_w, _vec(a, c, wd), shift, y2, act, split.nchunks, isa, split.threads)
    _dispatch.last_kernel[op] = _variant("stats+affine", act)
    return y2.reshape(shape), mean, var


def batch_norm_train_grad(dy, x, gamma=None, *, epsilon=1e-3, mean=None, var=None, y=None, activation=None,
                          need_dx=True):
    """Gradients of batch_norm_train: dy like x -> (dx like x or None, dgamma (C,), dbeta (C,)).

    mean, var: the batch statistics batch_norm_train returned (recomputed from x when None).
    y: batch_norm_train's output, needed when an activation was fused (backward masks dy with it).
    dgamma and dbeta are float64.  need_dx=False skips the input gradient and returns dx=None.
    """
    return _train_grad(dy, x, gamma, epsilon, mean, var, y, activation, need_dx)


def _train_grad(dy, x, gamma, epsilon, mean, var, y, activation, need_dx, *, beta=None, mask_from_x=False):
    """batch_norm_train_grad; ``mask_from_x`` (BatchNormalization's backward, which passes the
    forward's ``beta`` and its batch statistics): the fused activation's mask comes from the
    forward's pre-activation recomputed from x with the scale and shift batch_norm_train used, so
    the kernels do not read y (one stream less in each backward pass)."""
    op = "batch_norm_train_grad"
    x2 = _rows(op, "x", x)
    wd = x2.dtype
    dy2 = _rows(op, "dy", dy, wd)
    check_dy(op, dy2, x2.shape)
    act = _act(op, activation)
    mask_from_x = bool(act and mask_from_x and mean is not None and var is not None)
    if act and y is None and not mask_from_x:
        raise ValueError(f"{op}: y (the forward's output) is needed with activation={activation!r}")
    y2 = _rows(op, "y", y, wd) if act and not mask_from_x else None
    if y2 is not None:
        check_dy(op, y2, x2.shape)
    m, c = x2.shape
    isa = _dispatch.level_for(op, wd)
    if mean is None or var is None:
        mean, var = np.zeros(c), np.ones(c)
        if m:
            split = _split(m, c, True)
            _k.bn_stats(x2, mean, var, split.nchunks, isa, split.threads)
    mean = np.asarray(mean, dtype=np.float64)
    inv = 1.0 / np.sqrt(np.asarray(var, dtype=np.float64) + epsilon)
    mean_w = mean.astype(wd)
    resid = mean - mean_w
    dbeta, s2 = np.empty(c), np.empty(c)
    p = _one(gamma) * inv
    fa = fb = None
    if mask_from_x:  # batch_norm_train's scale and shift, computed as it computed them
        fa, fb = _vec(p, c, wd), _vec(_zero(beta) - resid * p, c, wd)
    split = _split(m, c, True)
    _k.bn_dsums(dy2, x2, y2, act, mean_w, dbeta, s2, split.nchunks, isa, split.threads, fa, fb)
    s2 -= resid * dbeta  # sum g * (x - mean) from the sum around the rounded mean
    dgamma = s2 * inv
    if not need_dx:
        _dispatch.last_kernel[op] = _variant("dsums", act)
        return None, dgamma, dbeta
    # dx = p * (g - dbeta / m - (x - mean) * inv^2 * s2 / m), p = gamma * inv, with the kernel's
    # (x - mean_w) * gb + gc for (x - mean) * gb + (-p * dbeta / m)
    mm = max(m, 1)
    gb = -p * inv * inv * s2 / mm
    dx = np.empty_like(dy2)
    split = _split(m, c, False)
    gc = _vec(-p * dbeta / mm - resid * gb, c, wd)
    _k.bn_dx(dy2, x2, y2, act, mean_w, _vec(p, c, wd) if fa is None else fa, _vec(gb, c, wd), gc, dx, split.nchunks,
             isa, split.threads, fa, fb)
    _dispatch.last_kernel[op] = _variant("dsums+dx", act)
    return dx.reshape(np.shape(dy)), dgamma, dbeta


def _inference_scale(gamma, var, epsilon):
    return _one(gamma) / np.sqrt(np.asarray(var).astype(np.float64) + epsilon)


def batch_norm(x, mean, var, gamma=None, beta=None, *, epsilon=1e-3, activation=None):
    """Batch normalisation with given statistics (inference mode, and frozen layers in training).

    x (N, ..., C), mean / var (C,) (the moving statistics), gamma / beta (C,) or None ->
    y = act((x - mean) / sqrt(var + epsilon) * gamma + beta), like x.

    >>> batch_norm(np.ones((2, 3), np.float32), np.ones(3), np.ones(3), epsilon=0.0)
    array([[0., 0., 0.],
           [0., 0., 0.]], dtype=float32)
    """
    op = "batch_norm"
    shape = np.shape(x)
    x2 = _rows(op, "x", x)
    m, c = x2.shape
    act = _act(op, activation)
    wd = x2.dtype
    isa = _dispatch.level_for(op, wd)
    a = _inference_scale(gamma, var, epsilon)
    y2 = np.empty_like(x2)
    split = _split(m, c, False)
    _k.bn_affine(x2, _vec(np.asarray(mean), c, wd), _vec(a, c, wd), _vec(_zero(beta), c, wd), y2, act,
                 split.nchunks, isa, split.threads)
    _dispatch.last_kernel[op] = _variant("affine", act)
    return y2.reshape(shape)


def batch_norm_grad(dy, var, gamma=None, *, epsilon=1e-3, y=None, activation=None, need_dx=True):
    """Input gradient of batch_norm (an affine map per channel): dy (N, ..., C) -> dx like dy.

    y: batch_norm's output, needed when an activation was fused.  need_dx=False returns None.
    """
    op = "batch_norm_grad"
    if not need_dx:
        return None
    dy2 = _rows(op, "dy", dy)
    wd = dy2.dtype
    act = _act(op, activation)
    if act and y is None:
        raise ValueError(f"{op}: y (the forward's output) is needed with activation={activation!r}")
    y2 = _rows(op, "y", y, wd) if act else None
    m, c = dy2.shape
    isa = _dispatch.level_for(op, wd)
    dx = np.empty_like(dy2)
    split = _split(m, c, False)
    _k.bn_dx(dy2, None, y2, act, None, _vec(_inference_scale(gamma, var, epsilon), c, wd), None, None, dx,
             split.nchunks, isa, split.threads)
    _dispatch.last_kernel[op] = _variant("dx", act)
    return dx.reshape(np.shape(dy))


# ---- relu / relu6 (the element-wise kernels of the family) ----

def _kernel_ok(*arrays) -> bool:
    """Whether the compiled element-wise kernels take these arrays: float32 / float64 ndarrays of
    one dtype and shape, C-contiguous."""
    a0 = arrays[0]
    return all(
        type(a) is np.ndarray and a.dtype == a0.dtype and a.shape == a0.shape and a.flags.c_contiguous
        for a in arrays
    ) and a0.dtype in (np.float32, np.float64)


def _clamp(op: str, x, out, code: int):
    if out is None:
        ok = _kernel_ok(x)
    else:
        ok = _kernel_ok(x, out) and out.flags.writeable
    if not ok:
        _dispatch.last_kernel[op] = "numpy"
        return np.maximum(x, 0, out=out) if code == 1 else np.clip(x, 0, 6, out=out)
    if out is None:
        out = np.empty_like(x)
    split = _plan.norm_plan(x.size, 1, False, _dispatch.threads_for(x.size))
    _k.act_forward(x.reshape(-1), out.reshape(-1), code, split.nchunks, _dispatch.level_for(op, x.dtype),
                   split.threads)
    _dispatch.last_kernel[op] = "kernel"
    return out


def _clamp_grad(op: str, dy, y, code: int, need_dx: bool):
    if not need_dx:
        return None
    if not _kernel_ok(dy, y):
        rows = pixel_rows(y) if _kernel_ok(dy) and y.shape == dy.shape and y.dtype == dy.dtype else None
        if rows is not None:  # y a channel slice of a wider tensor (a copy-free concatenation's input)
            dx = np.empty_like(dy)
            split = _plan.norm_plan(dy.size, 1, False, _dispatch.threads_for(dy.size))
            _k.act_backward_rows(dy.reshape(rows.shape), rows, dx.reshape(rows.shape), code, split.nchunks,
                                 _dispatch.level_for(op, dy.dtype), split.threads)
            _dispatch.last_kernel[op] = "kernel_rows"
            return dx
        _dispatch.last_kernel[op] = "numpy"
        mask = y > 0 if code == 1 else (y > 0) & (y < 6)
        # a multiply by the 0/1 mask is several times faster than np.where on large maps
        return np.multiply(dy, mask, dtype=dy.dtype)
    dx = np.empty_like(dy)
    split = _plan.norm_plan(dy.size, 1, False, _dispatch.threads_for(dy.size))
    _k.act_backward(dy.reshape(-1), y.reshape(-1), dx.reshape(-1), code, split.nchunks,
                    _dispatch.level_for(op, dy.dtype), split.threads)
    _dispatch.last_kernel[op] = "kernel"
    return dx


def relu(x, out=None):
    """max(x, 0) element-wise (NaN passes through); out may be x itself.

    >>> relu(np.array([-1.0, 2.0]))
    array([0., 2.])
    """
    return _clamp("relu", x, out, 1)


def relu_grad(dy, y, *, need_dx=True):
    """dy where the relu output y > 0, else 0."""
    return _clamp_grad("relu_grad", dy, y, 1, need_dx)


def relu6(x, out=None):
    """min(max(x, 0), 6) element-wise (NaN passes through); out may be x itself.

    >>> relu6(np.array([-1.0, 2.0, 7.0]))
    array([0., 2., 6.])
    """
    return _clamp("relu6", x, out, 2)


def relu6_grad(dy, y, *, need_dx=True):
    """dy where the relu6 output is inside (0, 6), else 0."""
    return _clamp_grad("relu6_grad", dy, y, 2, need_dx)


# ---- sums (the execution plan's gradient sums; the family's element-wise add kernel) ----

def _sum_into(dst, src) -> bool:
    """``dst += src`` on the compiled kernels (both threads, like every element-wise pass; NumPy's
    add runs on one): ``dst`` a writeable C-contiguous float32/float64 array, ``src`` of its shape
    and dtype, C-contiguous or with evenly spaced pixels of contiguous channels (a Concatenate's
    slice of its dy). The same sum as NumPy's, bit for bit. False, nothing written, otherwise."""
    if (type(src) is not np.ndarray or not _kernel_ok(dst) or not dst.flags.writeable or src.shape != dst.shape
            or src.dtype != dst.dtype or dst.size == 0):
        return False
    n = dst.size
    split = _plan.norm_plan(n, 1, False, _dispatch.threads_for(n))
    isa = _dispatch.level_for("add", dst.dtype)
    if src.flags.c_contiguous:
        flat = dst.reshape(-1)
        _k.add_act(flat, src.reshape(-1), flat, 0, split.nchunks, isa, split.threads)
        return True
    rows = pixel_rows(src)
    if rows is None or np.shares_memory(dst, src):
        return False
    _k.add_rows(dst.reshape(rows.shape), rows, split.nchunks, isa, split.threads)
    return True


def _sum(a, b):
    """``a + b`` as a new array on the compiled kernels (both C-contiguous, one float dtype and
    shape), or None when they do not qualify."""
    if not _kernel_ok(a, b) or a.size == 0:
        return None
    y = np.empty_like(a)
    split = _plan.norm_plan(a.size, 1, False, _dispatch.threads_for(a.size))
    _k.add_act(a.reshape(-1), b.reshape(-1), y.reshape(-1), 0, split.nchunks, _dispatch.level_for("add", a.dtype),
               split.threads)
    return y


def _copy_into(dst, src) -> bool:
    """``dst[...] = src`` one pixel row (its run of channels) per memcpy, rows split over the threads:
    ``dst`` and ``src`` float32/float64 arrays of one shape and dtype, each C-contiguous or with
    evenly spaced pixels of contiguous channels (a channel slice of a wider NHWC array), not
    overlapping, ``dst`` writeable. False, nothing written, otherwise."""
    if (type(dst) is not np.ndarray or type(src) is not np.ndarray or dst.shape != src.shape
            or dst.dtype != src.dtype or dst.dtype not in (np.float32, np.float64) or not dst.flags.writeable
            or dst.size == 0):
        return False
    d, s = pixel_rows(dst), pixel_rows(src)
    if d is None or s is None or np.shares_memory(dst, src):
        return False
    d = np.lib.stride_tricks.as_strided(dst, d.shape, d.strides)  # (pixel_rows' view is read-only)
    split = _plan.norm_plan(dst.size, 1, False, _dispatch.threads_for(dst.size))
    _k.copy_rows(d, s, split.nchunks, split.threads)
    return True
