"""fastconv/_shapes.py on its own: output sizes and padding, written once for every op and layer.

The ops' tests check these numbers through the kernels; here each rule is pinned by hand-worked
values (TensorFlow's "same", PyTorch's transposed output, Keras's layer shapes), so a change to a
formula shows up as a change of a number, not as a kernel mismatch somewhere else.
"""
import numpy as np
import pytest

from fastconv import _shapes as S


def test_pair_and_positive_pair_normalise_and_refuse_by_name():
    assert S.pair("stride", 2, "op") == (2, 2)
    assert S.pair("stride", (np.int64(3), 1), "op") == (3, 1)
    assert S.positive_pair("dilation", [1, 2], "op") == (1, 2)
    for bad in (True, (1, True), (1.5, 1), "2", (1, 2, 3)):
        with pytest.raises(ValueError, match="stride"):
            S.positive_pair("stride", bad, "conv2d")
    with pytest.raises(ValueError, match=r"stride.*Received: stride=\(0, 1\)"):
        S.positive_pair("stride", (0, 1), "conv2d")
    with pytest.raises(ValueError, match=r"below 2\*\*31"):
        S.positive_pair("stride", 2**31, "conv2d")


@pytest.mark.parametrize("size, k, stride, dilation, want", [
    (5, 3, 1, 1, (1, 1)),     # out 5: total 2
    (5, 3, 2, 1, (1, 1)),     # out 3: (3-1)*2 + 3 - 5 = 2
    (6, 3, 2, 1, (0, 1)),     # out 3: (3-1)*2 + 3 - 6 = 1, the extra pixel goes after
    (7, 1, 3, 1, (0, 0)),     # 1x1 never pads
    (5, 3, 1, 2, (2, 2)),     # dilated kernel 5
    (2, 5, 4, 1, (1, 2)),     # kernel past the input: out 1, total 3
])
def test_same_padding_is_tensorflows_split(size, k, stride, dilation, want):
    assert S.same_padding(size, k, stride, dilation) == want
    out = S.window_output_size(size, k, stride, dilation, *want)
    assert out == -(-size // stride)


def test_resolve_padding_forms():
    hw, k, s, d = (5, 6), (3, 3), (1, 2), (1, 1)
    assert S.resolve_padding("valid", hw, k, s, d, "op") == ((0, 0), (0, 0))
    assert S.resolve_padding("SAME", hw, k, s, d, "op") == ((1, 1), (0, 1))
    assert S.resolve_padding(2, hw, k, s, d, "op") == ((2, 2), (2, 2))
    assert S.resolve_padding((1, 0), hw, k, s, d, "op") == ((1, 1), (0, 0))
    assert S.resolve_padding(((0, 1), (2, 3)), hw, k, s, d, "op") == ((0, 1), (2, 3))
    for bad in ("full", -1, ((1,), (2, 3)), ((1, 2), (3,))):
        with pytest.raises(ValueError, match="padding"):
            S.resolve_padding(bad, hw, k, s, d, "conv2d")


def test_window_output_size_and_kernel_stride():
    assert S.window_output_size(28, 3, 1, 1, 0, 0) == 26
    assert S.window_output_size(28, 3, 2, 1, 1, 1) == 14
    assert S.window_output_size(4, 5, 1, 1, 0, 0) == 0      # does not fit: the op refuses
    # one output along the axis: the smallest stride with the same answer, never below the window
    assert S.kernel_stride(5, 3, 2**31 - 1, 1, 0, 0) == 3
    assert S.kernel_stride(1, 65536, 65536, 1, 65535, 0) == 65536
    assert S.kernel_stride(10, 3, 4, 1, 0, 0) == 4          # several outputs: unchanged


@pytest.mark.parametrize("padding, size, k, s, d, op, want_out, want_top", [
    (1, 28, 4, 2, 1, 0, 56, 1),          # PyTorch: (28-1)*2 - 2 + 4 = 56
    ("same", 14, 3, 2, 1, 0, 28, 0),     # size*stride; top of conv2d "same" on 28
    ("same", 14, 3, 2, 1, 1, 29, 0),
    ("valid", 14, 3, 2, 1, 0, 29, 0),    # 14*2 + max(3 - 2, 0)
    ("valid", 7, 1, 3, 1, 0, 21, 0),
    (0, 5, 3, 1, 2, 0, 9, 0),            # dilated kernel 5
])
def test_transpose_geometry(padding, size, k, s, d, op, want_out, want_top):
    out, top = S.transpose_geometry(padding, (size, size), (k, k), (s, s), (d, d), (op, op), "op")
    assert out == (want_out, want_out) and top == (want_top, want_top)


def test_layer_output_sizes_follow_keras():
    assert S.layer_output_size(None, 3, "same", 2) is None
    assert S.layer_output_size(28, 3, "same", 2) == 14
    assert S.layer_output_size(28, 3, "valid", 2) == 13
    assert S.layer_output_size(28, 3, "valid", 1, dilation=2) == 24
    assert S.layer_transpose_output_size(14, 3, "same", stride=2) == 28
    assert S.layer_transpose_output_size(14, 3, "valid", stride=2) == 29
    assert S.layer_transpose_output_size(14, 3, "same", output_padding=1, stride=2) == 28
    assert S.layer_transpose_output_size(None, 3, "same", stride=2) is None
