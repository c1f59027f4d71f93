"""Output sizes and padding resolution, written once for every op and layer.

Padding forms accepted everywhere: int, (ph, pw), ((top, bottom), (left, right)), "valid", "same".
"same" follows TensorFlow: out = ceil(in / stride); total = max((out - 1) * stride + eff_k - in, 0);
top = total // 2 and the extra pixel goes to the bottom / right.

The kernels do their geometry in C int: every stride, dilation, padding and output_padding, every
padded extent (size + before + after) and every transposed-convolution output extent must stay
below 2**31.  The checks are here, where the arguments are normalised, so every op refuses larger
values with a ValueError naming the argument instead of an OverflowError from the kernel call.
An int is a Python int or a NumPy integer; bools (Python or NumPy) and floats are refused.
"""
from __future__ import annotations

import numpy as np

INT_LIMIT = 2**31  # C int geometry: every value and extent must be below this


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_range(op: str, name: str, value, values, low: int) -> None:
    if min(values) < low:
        bound = "-2**31" if low == -INT_LIMIT else str(low)
        raise ValueError(f"{op}: {name} must be >= {bound}. Received: {name}={value!r}")
    if max(values) >= INT_LIMIT:
        raise ValueError(f"{op}: {name} must be below 2**31 (the kernels index in 32-bit ints). "
                         f"Received: {name}={value!r}")


def pair(name: str, value, op: str, low: int = -INT_LIMIT) -> tuple[int, int]:
    """Normalise an int (Python or NumPy) or a 2-sequence of ints to (h, w), each in [low, 2**31)."""
    if _is_int(value):
        h = w = int(value)
    else:
        try:
            h, w = value
        except (TypeError, ValueError):
            h = w = None
        if not (_is_int(h) and _is_int(w)):
            raise ValueError(f"{op}: {name} must be an int or a pair of ints. Received: {name}={value!r}")
        h, w = int(h), int(w)
    _check_range(op, name, value, (h, w), low)
    return h, w


def positive_pair(name: str, value, op: str) -> tuple[int, int]:
    return pair(name, value, op, low=1)


def effective_kernel(k: int, dilation: int) -> int:
    return (k - 1) * dilation + 1


def same_padding(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "same" split (before, after) for one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + effective_kernel(k, dilation) - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, in_hw, k_hw, stride_hw, dil_hw, op: str):
    """Return ((top, bottom), (left, right)) for a forward window op (conv or pool)."""
    if isinstance(padding, str):
        word = padding.lower()
        if word == "valid":
            pads = (0, 0), (0, 0)
        elif word == "same":
            pads = (same_padding(in_hw[0], k_hw[0], stride_hw[0], dil_hw[0]),
                    same_padding(in_hw[1], k_hw[1], stride_hw[1], dil_hw[1]))
        else:
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or pairs. "
                             f"Received: padding={padding!r}")
    else:
        pads = explicit_padding(padding, op)
    for axis, name in ((0, "H"), (1, "W")):
        extent = in_hw[axis] + pads[axis][0] + pads[axis][1]
        if extent >= INT_LIMIT:
            raise ValueError(f"{op}: the padded input must be below 2**31 pixels per axis; {name} + padding "
                             f"= {extent}. Received: padding={padding!r}, input {name}={in_hw[axis]}")
    return pads


def explicit_padding(padding, op: str):
    """((top, bottom), (left, right)) from int, (ph, pw) or pairs; each in [0, 2**31)."""
    if _is_int(padding):
        _check_range(op, "padding", padding, (int(padding),), 0)
        return (int(padding), int(padding)), (int(padding), int(padding))
    try:
        a, b = padding
    except (TypeError, ValueError):
        raise ValueError(f"{op}: padding must be 'valid', 'same', an int, (ph, pw) or "
                         f"((top, bottom), (left, right)). Received: padding={padding!r}") from None
    if not (isinstance(a, (tuple, list)) or isinstance(b, (tuple, list))):
        ph, pw = pair("padding", padding, op, low=0)
        return (ph, ph), (pw, pw)
    try:
        (t, bo), (le, ri) = a, b
    except (TypeError, ValueError):
        t = bo = le = ri = None
    if not all(_is_int(v) for v in (t, bo, le, ri)):
        raise ValueError(f"{op}: padding pairs must be ((top, bottom), (left, right)) of ints. "
                         f"Received: padding={padding!r}")
    pads = (int(t), int(bo)), (int(le), int(ri))
    _check_range(op, "padding", padding, pads[0] + pads[1], 0)
    return pads


def window_output_size(size: int, k: int, stride: int, dilation: int, before: int, after: int) -> int:
    """Output length of a conv / pool axis (may be <= 0 when the kernel does not fit)."""
    return (size + before + after - effective_kernel(k, dilation)) // stride + 1


def pool_output_size(size: int, k: int, stride: int, dilation: int = 1, before: int = 0, after: int = 0,
                     ceil_mode: bool = False) -> int:
    """Output length of a pooling axis (may be <= 0 when the window does not fit).

    Floor mode is window_output_size.  ceil_mode follows PyTorch: the division rounds up, and a
    last window that would start inside the after-padding (at or past size + before in padded
    coordinates) is dropped, so every window starts inside the padded input before its end.
    """
    span = size + before + after - effective_kernel(k, dilation)
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + before:
        out -= 1
    return out


def kernel_stride(size: int, k: int, stride: int, dilation: int, before: int, after: int) -> int:
    """The stride to hand a kernel for one axis: `stride` itself, except that when the axis has a
    single output (stride beyond the padded input) any stride from size + before + after - k_eff + 1
    up gives the same answer, and the smallest one not below the window is passed.  Kernels that size scratch by the stride or
    compute (o + 1) * stride in C int then see a value bounded by the padded input."""
    if window_output_size(size, k, stride, dilation, before, after) != 1:
        return stride
    # at least the window, so windows never overlap (the pooling gradient sizes its scratch by
    # ceil(window / stride)), and at most the padded input
    keff = effective_kernel(k, dilation)
    return min(stride, max(keff, size + before + after - keff + 1))


def transpose_geometry(padding, in_hw, k_hw, stride_hw, dil_hw, out_pad_hw, op: str):
    """Output size and the matching conv2d's top/left padding for a transposed convolution.

    Returns ((H_out, W_out), (pad_top, pad_left)).  Integer padding follows PyTorch; "same" gives
    H * stride and is the adjoint of conv2d(padding="same") on an input of that size; "valid" gives
    H * stride + max(k_eff - stride, 0) (Keras).  output_padding extends the bottom / right.
    """
    out, tops = [], []
    for axis in range(2):
        size, k, s, d, op_ = in_hw[axis], k_hw[axis], stride_hw[axis], dil_hw[axis], out_pad_hw[axis]
        keff = effective_kernel(k, d)
        if isinstance(padding, str) and padding.lower() == "same":
            o = size * s + op_
            top = same_padding(size * s, k, s, d)[0]
        elif isinstance(padding, str) and padding.lower() == "valid":
            o = size * s + max(keff - s, 0) + op_
            top = 0
        else:
            pads = explicit_padding(padding, op)
            before, after = pads[axis]
            o = (size - 1) * s - before - after + keff + op_
            top = before
        # o + top + bottom: the extent of the matching conv2d's padded input (before output_padding
        # it is (size - 1) * s + keff); the kernels walk it in C int.
        extent = (size - 1) * s + keff + op_
        if max(o, extent) >= INT_LIMIT:
            raise ValueError(
                f"{op}: the output would be {max(o, extent)} pixels along {'HW'[axis]}; "
                f"it must be below 2**31. "
                f"Received: stride={tuple(stride_hw)}, dilation={tuple(dil_hw)}, padding={padding!r}, "
                f"output_padding={tuple(out_pad_hw)}, input {'HW'[axis]}={size}, kernel {'HW'[axis]}={k}")
        out.append(o)
        tops.append(top)
    return (out[0], out[1]), (tops[0], tops[1])


# ---- the layers' output shapes (Keras's words "valid" / "same"; a None size stays None) ----

def layer_output_size(size, k: int, padding: str, stride: int, dilation: int = 1):
    """Keras's ``compute_conv_output_shape`` for one axis of a conv or pooling layer: "same"
    ceil(size / stride), "valid" window_output_size without padding (<= 0 when the window does not
    fit; the layer refuses that)."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    return window_output_size(size, k, stride, dilation, 0, 0)


def layer_transpose_output_size(size, k: int, padding: str, output_padding=None, stride: int = 1,
                                dilation: int = 1):
    """Keras's ``deconv_output_length`` for one axis of Conv2DTranspose (None stays None).

    Without output_padding: "valid" size*stride + max(k_eff - stride, 0), "same" size*stride (what
    transpose_geometry gives the op); with it, (size - 1)*stride + k_eff - 2*pad + output_padding,
    pad = k_eff // 2 for "same", 0 for "valid".
    """
    if size is None:
        return None
    keff = effective_kernel(k, dilation)
    if output_padding is None:
        if padding == "valid":
            return size * stride + max(keff - stride, 0)
        return size * stride
    pad = keff // 2 if padding == "same" else 0
    return (size - 1) * stride + keff - 2 * pad + output_padding
