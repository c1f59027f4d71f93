"""Output sizes and padding resolution, written once for every op and layer.

Padding forms accepted everywhere: int, (ph, pw), ((top, bottom), (left, right)), "valid", "same".
"same" follows TensorFlow: out = ceil(in / stride); total = max((out - 1) * stride + eff_k - in, 0);
top = total // 2 and the extra pixel goes to the bottom / right.
"""
from __future__ import annotations

import numpy as np


def pair(name: str, value, op: str) -> tuple[int, int]:
    """Normalise an int (Python or NumPy) or a 2-sequence of ints to (h, w)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value), int(value)
    try:
        h, w = value
        if isinstance(h, bool) or isinstance(w, bool) or int(h) != h or int(w) != w:
            raise TypeError
        return int(h), int(w)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints. Received: {name}={value!r}") from None


def positive_pair(name: str, value, op: str) -> tuple[int, int]:
    h, w = pair(name, value, op)
    if h < 1 or w < 1:
        raise ValueError(f"{op}: {name} must be >= 1. Received: {name}={value!r}")
    return h, w


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
            return (0, 0), (0, 0)
        if word == "same":
            return (same_padding(in_hw[0], k_hw[0], stride_hw[0], dil_hw[0]),
                    same_padding(in_hw[1], k_hw[1], stride_hw[1], dil_hw[1]))
        raise ValueError(f"{op}: padding must be 'valid', 'same', an int or pairs. Received: padding={padding!r}")
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, (bool, np.bool_)):
        pads = ((int(padding), int(padding)), (int(padding), int(padding)))
    else:
        try:
            a, b = padding
        except (TypeError, ValueError):
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int, (ph, pw) or "
                             f"((top, bottom), (left, right)). Received: padding={padding!r}") from None
        if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
            try:
                pads = (tuple(int(v) for v in a), tuple(int(v) for v in b))
                if len(pads[0]) != 2 or len(pads[1]) != 2:
                    raise ValueError
            except (TypeError, ValueError):
                raise ValueError(f"{op}: padding pairs must be ((top, bottom), (left, right)). "
                                 f"Received: padding={padding!r}") from None
        else:
            ph, pw = pair("padding", padding, op)
            pads = ((ph, ph), (pw, pw))
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"{op}: padding must be >= 0. Received: padding={padding!r}")
    return pads


def window_output_size(size: int, k: int, stride: int, dilation: int, before: int, after: int) -> int:
    """Output length of a conv / pool axis (may be <= 0 when the kernel does not fit)."""
    return (size + before + after - effective_kernel(k, dilation)) // stride + 1


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
            pads = resolve_padding(padding, (1, 1), (1, 1), (1, 1), (1, 1), op)
            before, after = pads[axis]
            o = (size - 1) * s - before - after + keff + op_
            top = before
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
