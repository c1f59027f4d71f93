"""The benchmark shapes (a CNN's typical layers), as problems that every implementation can run.

Shared by ``bench_ops.py`` (the comparison script) and ``test_bench_ops.py`` (pytest-benchmark).
A :class:`Case` is a pure description (NHWC input, kernel, stride, padding, ...); a
:class:`Problem` holds the random arrays for one case and hands out zero-argument callables:

* ``np_forward(lib)`` / ``np_fwdbwd(lib)`` for ``lib`` = ``fastconv.ops`` or ``fastconv.reference``
  (same signatures, NHWC, Keras weight layouts);
* ``torch_forward(fmt)`` / ``torch_fwdbwd(fmt)`` for ``fmt`` = ``"nchw"`` or ``"cl"`` (channels_last).
  Forward runs under ``torch.no_grad()``; forward+backward is autograd with x and w requiring grad,
  ``torch.autograd.grad(y, (x, w), dy)``.

Weight layouts (checked by ``check_against``): conv ``(KH, KW, C/g, K)`` -> torch ``(K, C/g, KH, KW)``;
depthwise ``(KH, KW, C, M)`` -> torch ``(C*M, 1, KH, KW)`` with ``groups=C`` (output channel ``c*M+m``);
transposed ``(KH, KW, K/g, C)`` -> torch ``(C, K/g, KH, KW)``.  The same transpose ``(3, 2, 0, 1)``
serves conv and transposed conv.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np

KINDS = ("dense", "first", "depthwise", "transposed", "pool")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # unique id shown in the table
    kind: str  # one of KINDS (selects the speed target)
    family: str  # conv | depthwise | transposed | maxpool | avgpool
    n: int
    h: int
    w: int
    c: int  # input channels
    out: int  # output channels (conv, transposed); multiplier M (depthwise); unused (pools)
    kernel: int
    stride: int = 1
    padding: int = 0  # symmetric, PyTorch style
    dilation: int = 1
    groups: int = 1
    output_padding: int = 0
    pad_note: str = ""  # how the padding reads in Keras terms ("same", "valid")

    def with_batch(self, n: int) -> Case:
        return dataclasses.replace(self, n=n)

    @property
    def out_hw(self) -> tuple[int, int]:
        k, s, p, d = self.kernel, self.stride, self.padding, self.dilation
        if self.family == "transposed":
            f = lambda i: (i - 1) * s - 2 * p + d * (k - 1) + self.output_padding + 1
        else:
            f = lambda i: (i + 2 * p - d * (k - 1) - 1) // s + 1
        return f(self.h), f(self.w)

    @property
    def out_channels(self) -> int:
        if self.family in ("conv", "transposed"):
            return self.out
        if self.family == "depthwise":
            return self.c * self.out
        return self.c

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, *self.out_hw, self.out_channels)

    @property
    def w_shape(self) -> tuple[int, ...] | None:
        k = self.kernel
        if self.family == "conv":
            return (k, k, self.c // self.groups, self.out)
        if self.family == "depthwise":
            return (k, k, self.c, self.out)
        if self.family == "transposed":
            return (k, k, self.out // self.groups, self.c)
        return None

    @property
    def flops(self) -> float:
        """Forward FLOPs, 2 * multiply-adds (0 for pooling)."""
        oh, ow = self.out_hw
        k2 = self.kernel**2
        if self.family == "conv":
            return 2.0 * self.n * oh * ow * self.out * k2 * self.c / self.groups
        if self.family == "depthwise":
            return 2.0 * self.n * oh * ow * self.c * self.out * k2
        if self.family == "transposed":  # each input pixel scatters KH*KW*K/g products per input channel
            return 2.0 * self.n * self.h * self.w * self.c * k2 * self.out / self.groups
        return 0.0

    def bytes_moved(self, fwdbwd: bool) -> float:
        """Minimal float32 bytes a pooling pass reads and writes (x, y; then dy, dx, argmax or x)."""
        xs = self.n * self.h * self.w * self.c
        ys = self.n * self.out_hw[0] * self.out_hw[1] * self.c
        fwd = xs + ys
        bwd = ys + xs + (ys if self.family == "maxpool" else 0)  # dy, dx (+ argmax for max)
        return 4.0 * (fwd + (bwd if fwdbwd else 0))

    def label(self) -> str:
        oh, ow = self.out_hw
        k = f"{self.kernel}x{self.kernel}"
        parts = [f"{self.n}x{self.h}x{self.w}x{self.c} -> {oh}x{ow}x{self.out_channels}", k]
        if self.stride != 1:
            parts.append(f"s{self.stride}")
        if self.dilation != 1:
            parts.append(f"d{self.dilation}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if self.family == "depthwise":
            parts.append(f"M{self.out}")
        pad = f"p{self.padding}"
        if self.output_padding:
            pad += f" op{self.output_padding}"
        if self.pad_note:
            pad += f" ({self.pad_note})"
        parts.append(pad)
        return " ".join(parts)


def _conv(name, kind, n, hw, c, k_out, kernel, **kw):
    return Case(name, kind, "conv", n, hw, hw, c, k_out, kernel, **kw)


# The shapes.  3x3 convs use padding 1 ("same" at stride 1) as a CNN would; the stride-2 conv uses
# PyTorch's symmetric padding 1 (56 -> 28; TF "same" would pad 0 top / 1 bottom); dilation 2 pads 2.
CASES: list[Case] = [
    _conv("conv3x3 32->32 @28", "dense", 32, 28, 32, 32, 3, padding=1, pad_note="same"),
    _conv("conv3x3 64->64 @14", "dense", 32, 14, 64, 64, 3, padding=1, pad_note="same"),
    _conv("conv3x3 128->128 @7", "dense", 32, 7, 128, 128, 3, padding=1, pad_note="same"),
    _conv("conv3x3 64->64 @56", "dense", 8, 56, 64, 64, 3, padding=1, pad_note="same"),
    _conv("conv3x3 s2 64->128 @56", "dense", 8, 56, 64, 128, 3, stride=2, padding=1),
    _conv("conv3x3 d2 64->64 @56", "dense", 8, 56, 64, 64, 3, padding=2, dilation=2, pad_note="same"),
    _conv("conv1x1 64->128 @28", "dense", 32, 28, 64, 128, 1, padding=0),
    _conv("conv3x3 g4 64->64 @28", "dense", 32, 28, 64, 64, 3, padding=1, groups=4, pad_note="same"),
    _conv("first 3x3 1->32 @28", "first", 32, 28, 1, 32, 3, padding=1, pad_note="same"),
    _conv("first 3x3 3->32 @32", "first", 32, 32, 3, 32, 3, padding=0, pad_note="valid"),
    Case("dw3x3 32ch @112", "depthwise", "depthwise", 8, 112, 112, 32, 1, 3, padding=1, pad_note="same"),
    Case("dw3x3 64ch @28", "depthwise", "depthwise", 32, 28, 28, 64, 1, 3, padding=1, pad_note="same"),
    Case("dw5x5 s2 96ch @56", "depthwise", "depthwise", 8, 56, 56, 96, 1, 5, stride=2, padding=2),
    Case("convT4x4 s2 64->32 @28", "transposed", "transposed", 8, 28, 28, 64, 32, 4, stride=2, padding=1),
    Case(
        "convT3x3 s2 128->64 @14",
        "transposed",
        "transposed",
        8,
        14,
        14,
        128,
        64,
        3,
        stride=2,
        padding=1,
        output_padding=1,
    ),
    Case("maxpool2x2 32ch @28", "pool", "maxpool", 32, 28, 28, 32, 0, 2, stride=2, pad_note="valid"),
    Case("avgpool2x2 32ch @28", "pool", "avgpool", 32, 28, 28, 32, 0, 2, stride=2, pad_note="valid"),
    Case("maxpool3x3 s2 64ch @112", "pool", "maxpool", 8, 112, 112, 64, 0, 3, stride=2, padding=1),
]

# The large conv of the thread-scaling line.
SCALING_CASE = next(c for c in CASES if c.name == "conv3x3 64->64 @56")


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class Problem:
    """Random float32 arrays for one case and the callables that time it."""

    def __init__(self, case: Case, seed: int = 0):
        self.case = case
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((case.n, case.h, case.w, case.c), dtype=np.float32)
        self.dy = rng.standard_normal(case.y_shape, dtype=np.float32)
        self.wt = None
        if case.w_shape is not None:
            fan_in = (
                case.w_shape[0] * case.w_shape[1] * (1 if case.family == "depthwise" else case.w_shape[2])
            )
            self.wt = rng.standard_normal(case.w_shape, dtype=np.float32) * np.float32((2.0 / fan_in) ** 0.5)
        self._torch = {}

    # -- NumPy-API implementations (fastconv.ops or fastconv.reference) ----------------------------
    def _kwargs(self) -> dict:
        c = self.case
        if c.family == "conv":
            return {"stride": c.stride, "padding": c.padding, "dilation": c.dilation, "groups": c.groups}
        if c.family == "depthwise":
            return {"stride": c.stride, "padding": c.padding, "dilation": c.dilation}
        if c.family == "transposed":
            return {
                "stride": c.stride,
                "padding": c.padding,
                "output_padding": c.output_padding,
                "dilation": c.dilation,
                "groups": c.groups,
            }
        return {"stride": c.stride, "padding": c.padding}

    def _np_ops(self, lib):
        fam = self.case.family
        if fam == "conv":
            return lib.conv2d, lib.conv2d_grad
        if fam == "depthwise":
            return lib.depthwise_conv2d, lib.depthwise_conv2d_grad
        if fam == "transposed":
            return lib.conv_transpose2d, lib.conv_transpose2d_grad
        if fam == "maxpool":
            return lib.max_pool2d, lib.max_pool2d_grad
        return lib.avg_pool2d, lib.avg_pool2d_grad

    def np_forward(self, lib):
        fwd, _ = self._np_ops(lib)
        x, w, kw = self.x, self.wt, self._kwargs()
        if w is None:
            k = self.case.kernel
            return lambda: fwd(x, k, **kw)
        return lambda: fwd(x, w, **kw)

    def np_backward(self, lib):
        """The gradient op alone (dy given); for max pooling without a saved argmax."""
        _, grad = self._np_ops(lib)
        x, w, dy, kw = self.x, self.wt, self.dy, self._kwargs()
        if w is None:
            k = self.case.kernel
            return lambda: grad(dy, x, k, **kw)
        return lambda: grad(dy, x, w, **kw)

    def uses_argmax(self, lib) -> bool:
        fwd, grad = self._np_ops(lib)
        return self.case.family == "maxpool" and _accepts(fwd, "return_argmax") and _accepts(grad, "argmax")

    def np_fwdbwd(self, lib):
        """op + op_grad; max pooling keeps the argmax when the op offers it (as a layer would)."""
        fwd, grad = self._np_ops(lib)
        x, w, dy, kw = self.x, self.wt, self.dy, self._kwargs()
        if w is not None:

            def run():
                y = fwd(x, w, **kw)
                return y, grad(dy, x, w, **kw)

            return run
        k = self.case.kernel
        if self.uses_argmax(lib):

            def run():
                y, am = fwd(x, k, return_argmax=True, **kw)
                return y, grad(dy, x, k, argmax=am, **kw)

            return run

        def run():
            y = fwd(x, k, **kw)
            return y, grad(dy, x, k, **kw)

        return run

    def np_results(self, lib):
        """(y, dx, dw) in fastconv layouts (dw None for pooling)."""
        y, g = self.np_fwdbwd(lib)()
        if isinstance(g, tuple):
            return y, g[0], g[1]
        return y, g, None

    # -- PyTorch ---------------------------------------------------------------------------------
    def _torch_arrays(self, fmt: str):
        """x, w, dy as torch tensors in NCHW or channels_last memory format (cached)."""
        if fmt in self._torch:
            return self._torch[fmt]
        import torch

        mf = torch.channels_last if fmt == "cl" else torch.contiguous_format
        x = torch.from_numpy(self.x).permute(0, 3, 1, 2).contiguous(memory_format=mf)
        dy = torch.from_numpy(self.dy).permute(0, 3, 1, 2).contiguous(memory_format=mf)
        w = None
        if self.wt is not None:
            if self.case.family == "depthwise":
                kh, kw, c, m = self.wt.shape
                wn = self.wt.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]
            else:  # conv (KH,KW,C/g,K) -> (K,C/g,KH,KW); transposed (KH,KW,K/g,C) -> (C,K/g,KH,KW)
                wn = self.wt.transpose(3, 2, 0, 1)
            w = torch.from_numpy(np.ascontiguousarray(wn)).contiguous(memory_format=mf)
        self._torch[fmt] = (x, w, dy)
        return self._torch[fmt]

    def _torch_op(self):
        import torch.nn.functional as F

        c = self.case
        if c.family == "conv":
            return lambda x, w: F.conv2d(x, w, None, c.stride, c.padding, c.dilation, c.groups)
        if c.family == "depthwise":
            return lambda x, w: F.conv2d(x, w, None, c.stride, c.padding, c.dilation, c.c)
        if c.family == "transposed":
            return lambda x, w: F.conv_transpose2d(
                x, w, None, c.stride, c.padding, c.output_padding, c.groups, c.dilation
            )
        if c.family == "maxpool":
            return lambda x, w: F.max_pool2d(x, c.kernel, c.stride, c.padding)
        return lambda x, w: F.avg_pool2d(x, c.kernel, c.stride, c.padding, count_include_pad=False)

    def torch_forward(self, fmt: str):
        import torch

        x, w, _ = self._torch_arrays(fmt)
        op = self._torch_op()

        def run():
            with torch.no_grad():
                return op(x, w)

        return run

    def torch_fwdbwd(self, fmt: str):
        import torch

        x0, w0, dy = self._torch_arrays(fmt)
        x = x0.detach().clone().requires_grad_(True)
        w = None if w0 is None else w0.detach().clone().requires_grad_(True)
        inputs = (x,) if w is None else (x, w)
        op = self._torch_op()

        def run():
            y = op(x, w)
            return y, torch.autograd.grad(y, inputs, dy)

        return run

    def torch_results(self, fmt: str = "nchw"):
        """(y, dx, dw) converted back to NHWC and fastconv weight layouts."""
        y, grads = self.torch_fwdbwd(fmt)()
        y = y.detach().permute(0, 2, 3, 1).numpy()
        dx = grads[0].permute(0, 2, 3, 1).numpy()
        dw = None
        if len(grads) > 1:
            g = grads[1].numpy()
            if self.case.family == "depthwise":
                kh, kw, c, m = self.wt.shape
                dw = g[:, 0].transpose(1, 2, 0).reshape(kh, kw, c, m)
            else:
                dw = g.transpose(2, 3, 1, 0)
        return y, dx, dw


def compare(got, want, what: str, rtol: float = 1e-3, atol_frac: float = 1e-4) -> str | None:
    """None when allclose(got, want, rtol, atol=atol_frac*max|want|), else a one-line description."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"{what}: shape {got.shape} != {want.shape}"
    scale = float(np.abs(want).max()) if want.size else 0.0
    atol = atol_frac * scale
    if np.allclose(got, want, rtol=rtol, atol=atol):
        return None
    err = np.abs(got.astype(np.float64) - want)
    bad = int((err > atol + rtol * np.abs(want)).sum())
    return (
        f"{what}: {bad}/{got.size} elements off, max |diff| {err.max():.3g} "
        f"(max |ref| {scale:.3g}, rtol {rtol:g}, atol {atol:.3g})"
    )


def check_against(problem: Problem, lib, other) -> list[str]:
    """Compare fastconv-API ``lib`` with ``other`` ('torch' or a NumPy-API module) on y, dx and dw."""
    y, dx, dw = problem.np_results(lib)
    if other == "torch":
        ry, rdx, rdw = problem.torch_results("nchw")
    else:
        ry, rdx, rdw = problem.np_results(other)
    problems = [compare(y, ry, "forward y")]
    # Gradients sum over many more terms (dw over N*OH*OW), so their absolute floor is larger.
    problems.append(compare(dx, rdx, "dx", atol_frac=1e-3))
    if dw is not None:
        problems.append(compare(dw, rdw, "dw", atol_frac=1e-3))
    return [p for p in problems if p]


# -- ONNX Runtime (optional): the same PyTorch forward exported to ONNX ------------------------------
def ort_available() -> str | None:
    """onnxruntime's version when it and the exporter's `onnx` dependency import; else None."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def ort_forward(problem: Problem, threads: int):
    """A callable running the case's forward in an ONNX Runtime session (NCHW, `threads` intra-op).

    The model is PyTorch's own forward (same op and arguments as torch_forward) exported with
    torch.onnx.export (TorchScript exporter, opset 17), weights as initializers."""
    import io
    import warnings

    import onnxruntime as ort
    import torch

    x_t, w_t, _ = problem._torch_arrays("nchw")
    op = problem._torch_op()

    class Forward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if w_t is not None:
                self.register_buffer("w", w_t.contiguous())
            else:
                self.w = None

        def forward(self, x):
            return op(x, self.w)

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Forward().eval(), (x_t.contiguous(),), buf, dynamo=False, opset_version=17)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # idle ONNX Runtime threads otherwise spin on the cores the next library in the round
    # needs (measured: fastconv's convT4x4 forward 2.26 -> 1.36 ms, PyTorch's 2.87 -> 1.68)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(x_t.numpy())}
    return lambda: sess.run(None, feed)


# ---- the 3x3 stride-1 convs of the tutorials' CNNs, for bench/bench_winograd.py ----
# (LeNet-like MNIST CNN at 28 and 14, the Fashion-MNIST CNN's 32/64-channel layers at batch 32 and
# 128, a CIFAR CNN's 32x32 layer; padding 1 = "same")
WINOGRAD_CASES: list[Case] = [
    _conv("mnist 3x3 32->64 @28 b32", "dense", 32, 28, 32, 64, 3, padding=1, pad_note="same"),
    _conv("mnist 3x3 32->64 @28 b128", "dense", 128, 28, 32, 64, 3, padding=1, pad_note="same"),
    _conv("mnist 3x3 32->32 @28 b32", "dense", 32, 28, 32, 32, 3, padding=1, pad_note="same"),
    _conv("mnist 3x3 64->64 @14 b32", "dense", 32, 14, 64, 64, 3, padding=1, pad_note="same"),
    _conv("mnist 3x3 64->64 @14 b128", "dense", 128, 14, 64, 64, 3, padding=1, pad_note="same"),
    _conv("cifar 3x3 32->64 @32 b32", "dense", 32, 32, 32, 64, 3, padding=1, pad_note="same"),
    _conv("conv3x3 128->128 @7 b32", "dense", 32, 7, 128, 128, 3, padding=1, pad_note="same"),
    _conv("conv3x3 64->64 @56 b8", "dense", 8, 56, 64, 64, 3, padding=1, pad_note="same"),
]
