"""Plain NumPy reference implementations of fastconv's functional ops.

This module is the oracle the compiled kernels are tested against, so it is
written to be obviously correct rather than fast, and it imports nothing from
the rest of fastconv (it has its own argument normalisation and padding rules).

Design notes
------------
* Layouts follow the README ("Functional API"): activations ``(N, H, W, C)``; conv weight
  ``(KH, KW, C_in // groups, C_out)``; depthwise weight ``(KH, KW, C, M)`` with
  output channel ``c * M + m``; transposed-conv weight
  ``(KH, KW, C_out // groups, C_in)``.
* Every op is vectorised over batch, pixels and channels; the only Python loops
  run over kernel (or pooling-window) offsets ``(kh, kw)``. For one offset the
  input pixels an output pixel reads form a strided slice of the padded input,
  so a convolution is a sum over offsets of ``slice @ w[kh, kw]`` (grouped).
* Backward passes scatter-add into the same slices (``+=`` on a strided slice is
  safe because within one offset every output pixel maps to a distinct input
  pixel) and then crop the padding away.
* ``conv_transpose2d`` is written directly in its scatter-add form and does not
  call ``conv2d_grad``: the tests use the identity between the two as a check.
* Computation happens in float64 when the (promoted) floating input dtype is
  float64, else in float32; results have the promoted input floating dtype
  (integer and bool inputs give float32).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "conv2d",
    "conv2d_grad",
    "depthwise_conv2d",
    "depthwise_conv2d_grad",
    "conv_transpose2d",
    "conv_transpose2d_grad",
    "max_pool2d",
    "max_pool2d_grad",
    "avg_pool2d",
    "avg_pool2d_grad",
    "global_avg_pool2d",
    "global_avg_pool2d_grad",
    "global_max_pool2d",
    "global_max_pool2d_grad",
    "batch_norm_train",
    "batch_norm_train_grad",
    "resolve_padding",
    "conv_transpose_padding",
]


# ---------------------------------------------------------------------------
# Argument normalisation (deliberately independent of fastconv._shapes)
# ---------------------------------------------------------------------------


def _dtypes(*arrays):
    """Return ``(compute_dtype, result_dtype)`` for the given arrays.

    Integer and bool arrays count as float32; complex, object and string arrays
    raise ``TypeError``.
    """
    kinds = []
    for a in arrays:
        if a is None:
            continue
        dt = a.dtype
        if dt.kind == "f":
            kinds.append(dt)
        elif dt.kind in "biu":
            kinds.append(np.dtype(np.float32))
        else:
            raise TypeError(f"expected a real numeric array. Received: dtype={dt}")
    result = np.result_type(*kinds) if kinds else np.dtype(np.float32)
    compute = np.dtype(np.float64) if result.itemsize >= 8 else np.dtype(np.float32)
    return compute, result


def _prepare(*arrays):
    """Convert array-likes to arrays in the compute dtype.

    The result may be the caller's own array: the ops below only read their
    inputs and write into freshly allocated arrays.
    """
    arrays = [None if a is None else np.asarray(a) for a in arrays]
    compute, result = _dtypes(*arrays)
    out = [None if a is None else a.astype(compute, copy=False) for a in arrays]
    return out, compute, result


def _pair(value, name):
    """Normalise an int or a length-2 sequence of ints to a tuple ``(h, w)``."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an int or a pair of ints. Received: {name}={value!r}"
        ) from None
    if not all(isinstance(v, (int, np.integer)) for v in (h, w)):
        raise ValueError(f"{name} must be an int or a pair of ints. Received: {name}={value!r}")
    return int(h), int(w)


def _positive_pair(value, name):
    p = _pair(value, name)
    if min(p) < 1:
        raise ValueError(f"{name} must be >= 1. Received: {name}={value!r}")
    return p


def resolve_padding(padding, in_hw, k_hw, stride, dilation=(1, 1)):
    """Resolve a padding spec to ``((top, bottom), (left, right))``.

    Parameters
    ----------
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        "same" uses TensorFlow's rule: ``out = ceil(in / stride)``, total pad
        ``max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)``, ``top =
        total // 2`` and the extra pixel goes to bottom / right.
    in_hw, k_hw, stride, dilation : (int, int)
        Input size, kernel (or pool) size, stride and dilation.
    """
    if isinstance(padding, str):
        word = padding.lower()
        if word == "valid":
            return (0, 0), (0, 0)
        if word == "same":
            pads = []
            for n, k, s, d in zip(in_hw, k_hw, stride, dilation):
                out = -(-n // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
                pads.append((total // 2, total - total // 2))
            return pads[0], pads[1]
        raise ValueError(
            f'padding must be an int, a pair, a pair of pairs, "valid" or "same". '
            f"Received: padding={padding!r}"
        )
    if isinstance(padding, (int, np.integer)):
        p = ((int(padding),) * 2,) * 2
    else:
        try:
            a, b = padding
        except (TypeError, ValueError):
            raise ValueError(f"invalid padding. Received: padding={padding!r}") from None
        if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
            p = ((int(a), int(a)), (int(b), int(b)))
        else:
            p = (_pair(a, "padding[0]"), _pair(b, "padding[1]"))
    if min(p[0] + p[1]) < 0:
        raise ValueError(f"padding must be non-negative. Received: padding={padding!r}")
    return p


def _out_size(n, k, s, d, lo, hi, what, x_shape):
    k_eff = (k - 1) * d + 1
    out = (n + lo + hi - k_eff) // s + 1
    if n + lo + hi < k_eff or out < 1:
        raise ValueError(
            f"{what}: the (dilated) kernel of size {k_eff} is larger than the padded input "
            f"of size {n + lo + hi}. Received: x.shape={x_shape}"
        )
    return out


def _check_ndim(a, ndim, name, what):
    if a.ndim != ndim:
        raise ValueError(
            f"{what}: {name} must be {ndim}-dimensional. Received: {name}.shape={a.shape}"
        )


def _window(oh, ow, kh, kw, s, d):
    """Slices of the padded input read by offset (kh, kw) for all output pixels."""
    h0, w0 = kh * d[0], kw * d[1]
    return (
        slice(None),
        slice(h0, h0 + (oh - 1) * s[0] + 1, s[0]),
        slice(w0, w0 + (ow - 1) * s[1] + 1, s[1]),
    )


def _pad(x, pads, value=0.0):
    (top, bottom), (left, right) = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _group_matmul(a, b):
    """Grouped matrix product over the last axis.

    a : (..., G * K), b : (G, K, O)  ->  (..., G * O), where group g of the
    result is ``a[..., g*K:(g+1)*K] @ b[g]``.
    """
    g, k, o = b.shape
    lead = a.shape[:-1]
    m = int(np.prod(lead))
    if g == 1:
        return (a.reshape(m, k) @ b[0]).reshape(*lead, o)
    ag = a.reshape(m, g, k).transpose(1, 0, 2)  # (G, M, K)
    return (ag @ b).transpose(1, 0, 2).reshape(*lead, g * o)


def _group_outer(a, b, g):
    """Grouped ``a^T @ b``: a (..., G*K), b (..., G*O) -> (G, K, O)."""
    m = int(np.prod(a.shape[:-1]))
    ag = a.reshape(m, g, a.shape[-1] // g).transpose(1, 2, 0)  # (G, K, M)
    bg = b.reshape(m, g, b.shape[-1] // g).transpose(1, 0, 2)  # (G, M, O)
    return ag @ bg


def _check_bias(bias, c_out, what):
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(
            f"{what}: bias must have shape ({c_out},). Received: bias.shape={bias.shape}"
        )


def _check_dy(dy, expected, what):
    if dy.shape != tuple(expected):
        raise ValueError(
            f"{what}: dy must have the output shape {tuple(expected)}. "
            f"Received: dy.shape={dy.shape}"
        )


# ---------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------


def _conv_plan(x, w, stride, padding, dilation, groups, what):
    _check_ndim(x, 4, "x", what)
    _check_ndim(w, 4, "w", what)
    s = _positive_pair(stride, "stride")
    d = _positive_pair(dilation, "dilation")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{what}: groups must be a positive int. Received: groups={groups!r}")
    n, h, wd, c = x.shape
    kh, kw, cg, c_out = w.shape
    if c % groups or c_out % groups:
        raise ValueError(
            f"{what}: input channels ({c}) and output channels ({c_out}) must be divisible "
            f"by groups. Received: groups={groups}, x.shape={x.shape}, w.shape={w.shape}"
        )
    if cg != c // groups:
        raise ValueError(
            f"{what}: x has {c} channels, so w.shape[2] must be {c // groups} "
            f"(groups={groups}). Received: x.shape={x.shape}, w.shape={w.shape}"
        )
    pads = resolve_padding(padding, (h, wd), (kh, kw), s, d)
    oh = _out_size(h, kh, s[0], d[0], *pads[0], what, x.shape)
    ow = _out_size(wd, kw, s[1], d[1], *pads[1], what, x.shape)
    return s, d, pads, (n, oh, ow, c_out)


def _conv_group_weight(w_k, groups):
    """w[kh, kw] of shape (C_in/G, C_out) -> (G, C_in/G, C_out/G)."""
    cg, c_out = w_k.shape
    return w_k.reshape(cg, groups, c_out // groups).transpose(1, 0, 2)


def conv2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation), NHWC.

    Parameters
    ----------
    x : array (N, H, W, C_in)
    w : array (KH, KW, C_in // groups, C_out)
    bias : array (C_out,) or None
    stride, dilation : int or (h, w)
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
    groups : int

    Returns
    -------
    y : array (N, OH, OW, C_out), ``OH = (H + top + bottom - KH_eff) // stride + 1``

    Examples
    --------
    >>> conv2d(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)))[0, :, :, 0]
    array([[4., 4.],
           [4., 4.]])
    """
    (x, w, bias), compute, result = _prepare(x, w, bias)
    s, d, pads, yshape = _conv_plan(x, w, stride, padding, dilation, groups, "conv2d")
    _check_bias(bias, yshape[3], "conv2d")
    _, oh, ow, c_out = yshape
    xp = _pad(x, pads)
    y = np.zeros(yshape, compute)
    for kh in range(w.shape[0]):
        for kw in range(w.shape[1]):
            xs = xp[_window(oh, ow, kh, kw, s, d)]
            y += _group_matmul(xs, _conv_group_weight(w[kh, kw], groups))
    if bias is not None:
        y += bias
    return y.astype(result, copy=False)


def conv2d_grad(dy, x, w, *, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of :func:`conv2d`.

    Parameters
    ----------
    dy : array (N, OH, OW, C_out)
    x : array (N, H, W, C_in)
    w : array (KH, KW, C_in // groups, C_out)

    Returns
    -------
    dx : array (N, H, W, C_in)
    dw : array (KH, KW, C_in // groups, C_out)
    db : array (C_out,), the sum of dy over N, OH, OW
    """
    (dy, x, w), compute, result = _prepare(dy, x, w)
    s, d, pads, yshape = _conv_plan(x, w, stride, padding, dilation, groups, "conv2d_grad")
    _check_dy(dy, yshape, "conv2d_grad")
    _, oh, ow, _ = yshape
    (top, _), (left, _) = pads
    n, h, wd, _ = x.shape
    xp = _pad(x, pads)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for kh in range(w.shape[0]):
        for kw in range(w.shape[1]):
            win = _window(oh, ow, kh, kw, s, d)
            wg = _conv_group_weight(w[kh, kw], groups)  # (G, Cg, Og)
            dxp[win] += _group_matmul(dy, wg.transpose(0, 2, 1))
            dwg = _group_outer(xp[win], dy, groups)  # (G, Cg, Og)
            dw[kh, kw] = dwg.transpose(1, 0, 2).reshape(w.shape[2], w.shape[3])
    dx = dxp[:, top : top + h, left : left + wd]
    db = dy.sum(axis=(0, 1, 2))
    return tuple(a.astype(result, copy=False) for a in (dx, dw, db))


# ---------------------------------------------------------------------------
# depthwise_conv2d
# ---------------------------------------------------------------------------


def _depthwise_plan(x, w, stride, padding, dilation, what):
    _check_ndim(x, 4, "x", what)
    _check_ndim(w, 4, "w", what)
    s = _positive_pair(stride, "stride")
    d = _positive_pair(dilation, "dilation")
    n, h, wd, c = x.shape
    kh, kw, cw, m = w.shape
    if cw != c:
        raise ValueError(
            f"{what}: x has {c} channels but w expects {cw}. "
            f"Received: x.shape={x.shape}, w.shape={w.shape}"
        )
    pads = resolve_padding(padding, (h, wd), (kh, kw), s, d)
    oh = _out_size(h, kh, s[0], d[0], *pads[0], what, x.shape)
    ow = _out_size(wd, kw, s[1], d[1], *pads[1], what, x.shape)
    return s, d, pads, (n, oh, ow, c * m)


def depthwise_conv2d(x, w, bias=None, *, stride=1, padding=0, dilation=1):
    """Depthwise 2-D convolution, NHWC.

    Parameters
    ----------
    x : array (N, H, W, C)
    w : array (KH, KW, C, M), M the depth multiplier
    bias : array (C * M,) or None

    Returns
    -------
    y : array (N, OH, OW, C * M); output channel ``c * M + m`` is input channel
        ``c`` convolved with ``w[:, :, c, m]``.
    """
    (x, w, bias), compute, result = _prepare(x, w, bias)
    s, d, pads, yshape = _depthwise_plan(x, w, stride, padding, dilation, "depthwise_conv2d")
    _check_bias(bias, yshape[3], "depthwise_conv2d")
    n, oh, ow, _ = yshape
    c, m = w.shape[2], w.shape[3]
    xp = _pad(x, pads)
    y = np.zeros((n, oh, ow, c, m), compute)
    for kh in range(w.shape[0]):
        for kw in range(w.shape[1]):
            xs = xp[_window(oh, ow, kh, kw, s, d)]
            y += xs[..., None] * w[kh, kw]
    y = y.reshape(yshape)
    if bias is not None:
        y += bias
    return y.astype(result, copy=False)


def depthwise_conv2d_grad(dy, x, w, *, stride=1, padding=0, dilation=1):
    """Gradients of :func:`depthwise_conv2d`.

    Parameters
    ----------
    dy : array (N, OH, OW, C * M)
    x : array (N, H, W, C)
    w : array (KH, KW, C, M)

    Returns
    -------
    dx : array (N, H, W, C)
    dw : array (KH, KW, C, M)
    db : array (C * M,)
    """
    (dy, x, w), compute, result = _prepare(dy, x, w)
    s, d, pads, yshape = _depthwise_plan(x, w, stride, padding, dilation, "depthwise_conv2d_grad")
    _check_dy(dy, yshape, "depthwise_conv2d_grad")
    n, oh, ow, _ = yshape
    c, m = w.shape[2], w.shape[3]
    (top, _), (left, _) = pads
    h, wd = x.shape[1:3]
    dy5 = dy.reshape(n, oh, ow, c, m)
    xp = _pad(x, pads)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for kh in range(w.shape[0]):
        for kw in range(w.shape[1]):
            win = _window(oh, ow, kh, kw, s, d)
            dxp[win] += (dy5 * w[kh, kw]).sum(axis=-1)
            dw[kh, kw] = np.einsum("nhwc,nhwcm->cm", xp[win], dy5)
    dx = dxp[:, top : top + h, left : left + wd]
    db = dy.sum(axis=(0, 1, 2))
    return tuple(a.astype(result, copy=False) for a in (dx, dw, db))


# ---------------------------------------------------------------------------
# conv_transpose2d
# ---------------------------------------------------------------------------


def conv_transpose_padding(padding, in_hw, k_hw, stride, dilation=(1, 1)):
    """Crop amounts ``((top, bottom), (left, right))`` of a transposed conv.

    The full ("uncropped") transposed-conv output has ``(H - 1) * stride +
    KH_eff`` rows; the result is that canvas with ``top`` rows removed at the
    top and ``bottom`` rows at the bottom (a negative crop appends zero rows),
    plus ``output_padding`` rows appended at the bottom. Integer padding crops
    ``padding`` on each side (PyTorch). "same" gives ``H * stride`` rows and
    crops exactly as conv2d(padding="same") pads an input of that size; "valid"
    gives ``H * stride + max(KH_eff - stride, 0)`` rows with no top crop (Keras).
    """
    if isinstance(padding, str) and padding.lower() in ("same", "valid"):
        word = padding.lower()
        pads = []
        for n, k, s, d in zip(in_hw, k_hw, stride, dilation):
            k_eff = (k - 1) * d + 1
            full = (n - 1) * s + k_eff
            if word == "same":
                out = n * s
                top = max(k_eff - s, 0) // 2  # TF "same" for conv2d on `out` pixels
            else:
                out = n * s + max(k_eff - s, 0)
                top = 0
            pads.append((top, full - top - out))
        return pads[0], pads[1]
    return resolve_padding(padding, in_hw, k_hw, stride, dilation)


def _transpose_plan(x, w, stride, padding, output_padding, dilation, groups, what):
    _check_ndim(x, 4, "x", what)
    _check_ndim(w, 4, "w", what)
    s = _positive_pair(stride, "stride")
    d = _positive_pair(dilation, "dilation")
    op = _pair(output_padding, "output_padding")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{what}: groups must be a positive int. Received: groups={groups!r}")
    n, h, wd, c_in = x.shape
    kh, kw, cg_out, wc_in = w.shape
    if wc_in != c_in:
        raise ValueError(
            f"{what}: x has {c_in} channels but w expects {wc_in} (w.shape[3]). "
            f"Received: x.shape={x.shape}, w.shape={w.shape}"
        )
    if c_in % groups:
        raise ValueError(
            f"{what}: input channels ({c_in}) must be divisible by groups. "
            f"Received: groups={groups}, x.shape={x.shape}, w.shape={w.shape}"
        )
    for o, ss, dd in zip(op, s, d):
        if o < 0 or o >= max(ss, dd):
            raise ValueError(
                f"{what}: output_padding must satisfy 0 <= output_padding < max(stride, dilation). "
                f"Received: output_padding={output_padding!r}, stride={stride!r}, "
                f"dilation={dilation!r}"
            )
    crops = conv_transpose_padding(padding, (h, wd), (kh, kw), s, d)
    out = []
    for size, k, ss, dd, (lo, hi), o in zip((h, wd), (kh, kw), s, d, crops, op):
        size_out = (size - 1) * ss + (k - 1) * dd + 1 - lo - hi + o
        if size_out < 1:
            raise ValueError(
                f"{what}: the output would be empty (size {size_out}). "
                f"Received: x.shape={x.shape}, w.shape={w.shape}, padding={padding!r}"
            )
        out.append(size_out)
    return s, d, crops, (n, out[0], out[1], cg_out * groups)


def _transpose_group_weight(w_k, groups):
    """w[kh, kw] of shape (C_out/G, C_in) -> (G, C_in/G, C_out/G)."""
    cg_out, c_in = w_k.shape
    return w_k.reshape(cg_out, groups, c_in // groups).transpose(1, 2, 0)


def _canvas_shape(x_hw, k_hw, s, d, crops, out_hw):
    """Rows/cols of the scatter canvas: the full output, extended if needed."""
    dims = []
    for size, k, ss, dd, (lo, _), o in zip(x_hw, k_hw, s, d, crops, out_hw):
        full = (size - 1) * ss + (k - 1) * dd + 1
        dims.append(max(full, lo + o))
    return dims


def conv_transpose2d(
    x, w, bias=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1
):
    """Transposed 2-D convolution ("deconvolution"), NHWC.

    Each input pixel ``(ih, iw)`` scatters ``x[n, ih, iw] @ w[kh, kw].T`` (per
    group) to output pixel ``(ih * stride - top + kh * dilation, iw * stride -
    left + kw * dilation)``.

    Parameters
    ----------
    x : array (N, H, W, C_in)
    w : array (KH, KW, C_out // groups, C_in)
    bias : array (C_out,) or None
    padding : int / pair / pair of pairs (PyTorch crop), "same" or "valid" (Keras)
    output_padding : int or (h, w), extra rows/cols added at the bottom/right

    Returns
    -------
    y : array (N, OH, OW, C_out) with, for integer padding,
        ``OH = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1``;
        ``OH = H * stride`` for "same" and ``H * stride + max(KH_eff - stride, 0)``
        for "valid" (plus output_padding).
    """
    (x, w, bias), compute, result = _prepare(x, w, bias)
    s, d, crops, yshape = _transpose_plan(
        x, w, stride, padding, output_padding, dilation, groups, "conv_transpose2d"
    )
    _check_bias(bias, yshape[3], "conv_transpose2d")
    n, h, wd, _ = x.shape
    _, oh, ow, c_out = yshape
    ch, cw = _canvas_shape((h, wd), w.shape[:2], s, d, crops, (oh, ow))
    canvas = np.zeros((n, ch, cw, c_out), compute)
    for kh in range(w.shape[0]):
        for kw in range(w.shape[1]):
            win = _window(h, wd, kh, kw, s, d)
            canvas[win] += _group_matmul(x, _transpose_group_weight(w[kh, kw], groups))
    (top, _), (left, _) = crops
    y = canvas[:, top : top + oh, left : left + ow]
    if bias is not None:
        y = y + bias
    return y.astype(result, copy=False)


def conv_transpose2d_grad(dy, x, w, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Gradients of :func:`conv_transpose2d`.

    Parameters
    ----------
    dy : array (N, OH, OW, C_out)
    x : array (N, H, W, C_in)
    w : array (KH, KW, C_out // groups, C_in)

    Returns
    -------
    dx : array (N, H, W, C_in)
    dw : array (KH, KW, C_out // groups, C_in)
    db : array (C_out,)
    """
    (dy, x, w), compute, result = _prepare(dy, x, w)
    s, d, crops, yshape = _transpose_plan(
        x, w, stride, padding, output_padding, dilation, groups, "conv_transpose2d_grad"
    )
    _check_dy(dy, yshape, "conv_transpose2d_grad")
    n, h, wd, c_in = x.shape
    _, oh, ow, c_out = yshape
    ch, cw = _canvas_shape((h, wd), w.shape[:2], s, d, crops, (oh, ow))
    (top, _), (left, _) = crops
    canvas = np.zeros((n, ch, cw, c_out), compute)
    canvas[:, top : top + oh, left : left + ow] = dy
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for kh in range(w.shape[0]):
        for kw in range(w.shape[1]):
            dys = canvas[_window(h, wd, kh, kw, s, d)]  # (N, H, W, C_out)
            wg = _transpose_group_weight(w[kh, kw], groups)  # (G, Cin/G, Cout/G)
            dx += _group_matmul(dys, wg.transpose(0, 2, 1))
            dwg = _group_outer(dys, x, groups)  # (G, Cout/G, Cin/G)
            dw[kh, kw] = dwg.transpose(1, 0, 2).reshape(w.shape[2], c_in)
    db = dy.sum(axis=(0, 1, 2))
    return tuple(a.astype(result, copy=False) for a in (dx, dw, db))


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------


def _pool_out_size(n, k, s, d, lo, hi, ceil_mode, what, x_shape):
    """Output length of a pooling axis; ceil_mode as PyTorch: round up, then drop a last window
    that would start at or past n + lo (inside the after-padding)."""
    if not ceil_mode:
        return _out_size(n, k, s, d, lo, hi, what, x_shape)
    k_eff = (k - 1) * d + 1
    out = -(-(n + lo + hi - k_eff) // s) + 1
    if (out - 1) * s >= n + lo:
        out -= 1
    if out < 1:
        raise ValueError(
            f"{what}: the (dilated) window of size {k_eff} does not fit the padded input "
            f"of size {n + lo + hi}. Received: x.shape={x_shape}"
        )
    return out


def _pool_plan(x, pool_size, stride, padding, what, dilation=1, ceil_mode=False):
    """Window geometry of a pooling call.

    Returns k, s, d, pads, the output shape, the real-pixel count of every window, the
    include-pad count of every window (taps before the bottom/right padding's end) and the
    extended pads: pads plus the rows/columns past the padding that ceil mode's last window
    reaches (those count for nothing).
    """
    _check_ndim(x, 4, "x", what)
    k = _positive_pair(pool_size, "pool_size")
    s = k if stride is None else _positive_pair(stride, "stride")
    d = _positive_pair(dilation, "dilation")
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise ValueError(f"{what}: ceil_mode must be True or False. Received: ceil_mode={ceil_mode!r}")
    n, h, wd, c = x.shape
    pads = resolve_padding(padding, (h, wd), k, s, d)
    oh = _pool_out_size(h, k[0], s[0], d[0], *pads[0], ceil_mode, what, x.shape)
    ow = _pool_out_size(wd, k[1], s[1], d[1], *pads[1], ceil_mode, what, x.shape)
    # rows / columns past the padding that the last window reaches (ceil mode only)
    extra = [max(0, (o - 1) * st + (kk - 1) * dd + 1 - (m + lo + hi))
             for o, st, kk, dd, m, (lo, hi) in zip((oh, ow), s, k, d, (h, wd), pads)]
    ext = ((pads[0][0], pads[0][1] + extra[0]), (pads[1][0], pads[1][1] + extra[1]))
    real = _pad(np.ones((1, h, wd, 1)), ext)
    padded = np.pad(np.ones((1, h + sum(pads[0]), wd + sum(pads[1]), 1)),
                    ((0, 0), (0, extra[0]), (0, extra[1]), (0, 0)))
    count = np.zeros((1, oh, ow, 1))
    count_pad = np.zeros((1, oh, ow, 1))
    for kh in range(k[0]):
        for kw in range(k[1]):
            win = _window(oh, ow, kh, kw, s, d)
            count += real[win]
            count_pad += padded[win]
    if count.min() < 1:
        raise ValueError(
            f"{what}: some pooling windows lie entirely in the padding. "
            f"Received: pool_size={pool_size!r}, padding={padding!r}, x.shape={x.shape}"
        )
    return k, s, d, ext, (n, oh, ow, c), count, count_pad


def max_pool2d(x, pool_size=2, *, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling, NHWC; padding is filled with ``-inf``.

    Parameters
    ----------
    x : array (N, H, W, C)
    pool_size, stride : int or (h, w); stride None means pool_size
    padding : int, pair, pair of pairs, "valid" or "same" (TF rule)
    dilation : int or (h, w); the window's taps are start + i * dilation
    ceil_mode : bool; PyTorch's rule (round the output size up, drop a last window that would
        start inside the bottom / right padding)

    Returns
    -------
    y : array (N, OH, OW, C)
    """
    (x,), compute, result = _prepare(x)
    k, s, d, ext, yshape, _, _ = _pool_plan(x, pool_size, stride, padding, "max_pool2d", dilation, ceil_mode)
    _, oh, ow, _ = yshape
    xp = _pad(x, ext, -np.inf)
    y = np.full(yshape, -np.inf, compute)
    for kh in range(k[0]):
        for kw in range(k[1]):
            np.maximum(y, xp[_window(oh, ow, kh, kw, s, d)], out=y)
    return y.astype(result, copy=False)


def max_pool2d_grad(dy, x, pool_size=2, *, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Gradient of :func:`max_pool2d` with respect to x.

    Each output's gradient goes to the first maximum of its window in row-major
    (kh, kw) order, as PyTorch does.

    Parameters
    ----------
    dy : array (N, OH, OW, C)
    x : array (N, H, W, C)

    Returns
    -------
    dx : array (N, H, W, C)
    """
    (dy, x), compute, result = _prepare(dy, x)
    k, s, d, ext, yshape, _, _ = _pool_plan(x, pool_size, stride, padding, "max_pool2d_grad", dilation,
                                            ceil_mode)
    _check_dy(dy, yshape, "max_pool2d_grad")
    _, oh, ow, _ = yshape
    h, wd = x.shape[1:3]
    xp = _pad(x, ext, -np.inf)
    best = np.full(yshape, -np.inf, compute)
    arg = np.full(yshape, -1, np.int64)  # window offset index kh * KW + kw
    for kh in range(k[0]):
        for kw in range(k[1]):
            v = xp[_window(oh, ow, kh, kw, s, d)]
            # Strictly greater keeps the first maximum; `arg < 0` takes the first
            # offset even if x is -inf there.
            take = (v > best) | (arg < 0)
            best = np.where(take, v, best)
            arg = np.where(take, kh * k[1] + kw, arg)
    dxp = np.zeros_like(xp)
    for kh in range(k[0]):
        for kw in range(k[1]):
            dxp[_window(oh, ow, kh, kw, s, d)] += np.where(arg == kh * k[1] + kw, dy, 0.0)
    (top, _), (left, _) = ext
    dx = dxp[:, top : top + h, left : left + wd]
    return dx.astype(result, copy=False)


def avg_pool2d(x, pool_size=2, *, stride=None, padding=0, count_include_pad=False, dilation=1,
               ceil_mode=False):
    """Average pooling, NHWC.

    Parameters
    ----------
    x : array (N, H, W, C)
    pool_size, stride : int or (h, w); stride None means pool_size
    padding : int, pair, pair of pairs, "valid" or "same" (TF rule)
    count_include_pad : bool
        True divides by the window's taps inside the padded input (``KH * KW`` unless ceil
        mode's last window reaches past the padding: PyTorch's rule); False divides by the
        number of real input pixels in the window.
    dilation, ceil_mode : as in :func:`max_pool2d`

    Returns
    -------
    y : array (N, OH, OW, C)
    """
    (x,), compute, result = _prepare(x)
    k, s, d, ext, yshape, count, count_pad = _pool_plan(x, pool_size, stride, padding, "avg_pool2d",
                                                        dilation, ceil_mode)
    _, oh, ow, _ = yshape
    xp = _pad(x, ext)
    y = np.zeros(yshape, compute)
    for kh in range(k[0]):
        for kw in range(k[1]):
            y += xp[_window(oh, ow, kh, kw, s, d)]
    div = (count_pad if count_include_pad else count).astype(compute)
    return (y / div).astype(result, copy=False)


def avg_pool2d_grad(dy, x, pool_size=2, *, stride=None, padding=0, count_include_pad=False, dilation=1,
                    ceil_mode=False):
    """Gradient of :func:`avg_pool2d` with respect to x.

    Parameters
    ----------
    dy : array (N, OH, OW, C)
    x : array (N, H, W, C)

    Returns
    -------
    dx : array (N, H, W, C)
    """
    (dy, x), compute, result = _prepare(dy, x)
    k, s, d, ext, yshape, count, count_pad = _pool_plan(x, pool_size, stride, padding, "avg_pool2d_grad",
                                                        dilation, ceil_mode)
    _check_dy(dy, yshape, "avg_pool2d_grad")
    _, oh, ow, _ = yshape
    h, wd = x.shape[1:3]
    g = dy / (count_pad if count_include_pad else count).astype(compute)
    dxp = np.zeros(_pad(x, ext).shape, compute)
    for kh in range(k[0]):
        for kw in range(k[1]):
            dxp[_window(oh, ow, kh, kw, s, d)] += g
    (top, _), (left, _) = ext
    dx = dxp[:, top : top + h, left : left + wd]
    return dx.astype(result, copy=False)


def global_avg_pool2d(x):
    """Mean over the spatial axes.

    Parameters
    ----------
    x : array (N, H, W, C)

    Returns
    -------
    y : array (N, C)
    """
    (x,), compute, result = _prepare(x)
    _check_ndim(x, 4, "x", "global_avg_pool2d")
    if x.shape[1] * x.shape[2] == 0:
        raise ValueError(f"global_avg_pool2d: x has no pixels. Received: x.shape={x.shape}")
    return x.mean(axis=(1, 2)).astype(result, copy=False)


def global_avg_pool2d_grad(dy, x):
    """Gradient of :func:`global_avg_pool2d`.

    Parameters
    ----------
    dy : array (N, C)
    x : array (N, H, W, C)

    Returns
    -------
    dx : array (N, H, W, C), ``dy / (H * W)`` broadcast over the pixels
    """
    (dy, x), compute, result = _prepare(dy, x)
    _check_ndim(x, 4, "x", "global_avg_pool2d_grad")
    n, h, wd, c = x.shape
    if h * wd == 0:
        raise ValueError(f"global_avg_pool2d_grad: x has no pixels. Received: x.shape={x.shape}")
    _check_dy(dy, (n, c), "global_avg_pool2d_grad")
    dx = np.broadcast_to(dy[:, None, None, :] / (h * wd), x.shape).copy()
    return dx.astype(result, copy=False)


def global_max_pool2d(x):
    """Maximum over the spatial axes: x (N, H, W, C) -> y (N, C)."""
    (x,), compute, result = _prepare(x)
    _check_ndim(x, 4, "x", "global_max_pool2d")
    if x.shape[1] * x.shape[2] == 0:
        raise ValueError(f"global_max_pool2d: x has no pixels. Received: x.shape={x.shape}")
    return x.max(axis=(1, 2)).astype(result, copy=False)


def global_max_pool2d_grad(dy, x):
    """Gradient of :func:`global_max_pool2d`: dy at the first maximum (row-major) of each image
    and channel, 0 elsewhere."""
    (dy, x), compute, result = _prepare(dy, x)
    _check_ndim(x, 4, "x", "global_max_pool2d_grad")
    n, h, wd, c = x.shape
    if h * wd == 0:
        raise ValueError(f"global_max_pool2d_grad: x has no pixels. Received: x.shape={x.shape}")
    _check_dy(dy, (n, c), "global_max_pool2d_grad")
    first = x.reshape(n, h * wd, c).argmax(axis=1)  # argmax returns the first maximum
    dx = np.zeros((n, h * wd, c), compute)
    np.put_along_axis(dx, first[:, None, :], dy[:, None, :], axis=1)
    return dx.reshape(x.shape).astype(result, copy=False)


# ---------------------------------------------------------------------------
# Batch normalisation over the last axis (training mode; inference is x * a + b)
# ---------------------------------------------------------------------------


def batch_norm_train(x, gamma, beta, epsilon):
    """``(y, mean, var)``: x normalised per channel (last axis) with the batch mean and biased
    variance over all other axes, then ``* gamma + beta``."""
    c = x.shape[-1]
    x2 = x.reshape(-1, c)
    mean = x2.mean(axis=0)
    xc = x2 - mean
    var = (xc * xc).mean(axis=0)
    y = xc / np.sqrt(var + epsilon) * gamma + beta
    return y.reshape(x.shape).astype(x.dtype, copy=False), mean, var


def batch_norm_train_grad(dy, x, gamma, epsilon):
    """``(dx, dgamma, dbeta)`` of :func:`batch_norm_train`, with ``xhat`` the normalised input:
    ``dx = gamma / std * (dy - mean(dy) - xhat * mean(dy * xhat))``."""
    c = x.shape[-1]
    x2, dy2 = x.reshape(-1, c), dy.reshape(-1, c)
    mean = x2.mean(axis=0)
    inv = 1.0 / np.sqrt(((x2 - mean) ** 2).mean(axis=0) + epsilon)
    xhat = (x2 - mean) * inv
    dbeta = dy2.sum(axis=0)
    dgamma = (dy2 * xhat).sum(axis=0)
    dx = gamma * inv * (dy2 - dbeta / len(x2) - xhat * dgamma / len(x2))
    return dx.reshape(x.shape).astype(dy.dtype, copy=False), dgamma, dbeta


# ---------------------------------------------------------------------------
# Element-wise activations and softmax (float64; the limits at +-inf, NaN passing)
# ---------------------------------------------------------------------------

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_GELU_C = 0.044715
_SQRT_2_OVER_PI = 0.79788456080286535588


def _phi(x):
    """The standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2, to a few ulp also in the far tail:
    the rounding of -x / sqrt 2 (a relative error of x^2 ulp there) is corrected to first order,
    the exact quotient taken in long double."""
    import math

    z = -x / np.sqrt(2.0)
    with np.errstate(invalid="ignore"):
        dz = (-np.asarray(x, np.longdouble) / np.sqrt(np.longdouble(2)) - z).astype(np.float64)
        dz = np.where(np.isfinite(dz), dz, 0.0)
    e = np.frompyfunc(math.erfc, 1, 1)(z).astype(np.float64)
    return 0.5 * (e - dz * (2.0 / np.sqrt(np.pi)) * np.exp(-z * z))


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _x_times(x, g):
    """x * g with the limit 0 where g vanishes (x * g(x) at +-inf)."""
    return np.where(g == 0, 0.0, x * g)


def activation(x, name, alpha=None):
    """``f(x)`` in float64 for the activations of ``fastconv.ops.elementwise.CODES``: relu, relu6,
    elu (alpha, default 1), selu, sigmoid, tanh, swish, gelu (exact), gelu_tanh (the tanh
    approximation), softplus, leaky_relu (alpha = negative slope, default 0.2), linear."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        if name == "linear":
            return x.copy()
        if name == "relu":
            return np.where(x < 0, 0.0, x)
        if name == "relu6":
            return np.where(x < 0, 0.0, np.where(x > 6, 6.0, x))
        if name == "elu":
            return np.where(x > 0, x, (1.0 if alpha is None else alpha) * np.expm1(x))
        if name == "selu":
            return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(x))
        if name == "sigmoid":
            return _sigmoid(x)
        if name == "tanh":
            return np.tanh(x)
        if name == "swish":
            return _x_times(x, _sigmoid(x))
        if name == "gelu":
            return _x_times(x, _phi(x))
        if name == "gelu_tanh":
            u = _SQRT_2_OVER_PI * (x + _GELU_C * x**3)
            return _x_times(x, _sigmoid(2.0 * u))  # = 0.5 (1 + tanh(u)), without its cancellation
        if name == "softplus":
            return np.logaddexp(0.0, x)
        if name == "leaky_relu":
            return np.where(x > 0, x, (0.2 if alpha is None else alpha) * x)
    raise ValueError(f"reference.activation: unknown activation {name!r}")


def activation_grad(dy, x, name, alpha=None):
    """``dy * f'(x)`` in float64 for :func:`activation` (limits at +-inf)."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    with np.errstate(all="ignore"):
        if name == "linear":
            d = np.ones_like(x)
        elif name == "relu":
            d = (x > 0).astype(np.float64)
        elif name == "relu6":
            d = ((x > 0) & (x < 6)).astype(np.float64)
        elif name == "elu":
            d = np.where(x > 0, 1.0, (1.0 if alpha is None else alpha) * np.exp(x))
        elif name == "selu":
            d = _SELU_SCALE * np.where(x > 0, 1.0, _SELU_ALPHA * np.exp(x))
        elif name == "sigmoid":
            d = _sigmoid(x) * _sigmoid(-x)  # s (1 - s) without 1 - s's cancellation
        elif name == "tanh":
            d = 1.0 - np.tanh(x) ** 2
        elif name == "swish":
            d = _sigmoid(x) + _x_times(x, _sigmoid(x) * _sigmoid(-x))
        elif name == "gelu":
            pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
            d = _phi(x) + _x_times(x, pdf)
        elif name == "gelu_tanh":
            # x sigmoid(2u): sigmoid(2u) + x 2 sigmoid(2u) sigmoid(-2u) u'
            u = _SQRT_2_OVER_PI * (x + _GELU_C * x**3)
            du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x * x)
            g = np.where(np.abs(x) > 1e4, 0.0, 2.0 * _sigmoid(2.0 * u) * _sigmoid(-2.0 * u) * du)
            d = _sigmoid(2.0 * u) + _x_times(x, g)
        elif name == "softplus":
            d = _sigmoid(x)
        elif name == "leaky_relu":
            d = np.where(x > 0, 1.0, 0.2 if alpha is None else alpha)
        else:
            raise ValueError(f"reference.activation_grad: unknown activation {name!r}")
        return dy * d


def softmax(x):
    """Softmax over the last axis in float64: ``exp(x - max) / sum``."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def softmax_grad(dy, y):
    """``y * (dy - sum(dy * y))`` over the last axis, from the forward's output ``y``."""
    dy = np.asarray(dy, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
