"""Winograd F(4x4, 3x3) and F(2x2, 3x3) for 3x3 stride-1 convs with groups=1 (dilated ones as
their polyphase sub-convs).

The transforms of Lavin and Gray (arXiv 1509.09308): y = A^T [(G g G^T) . (B^T d B)] A per output
tile of m x m pixels, alpha = m + 2.  The weight transform U = G g G^T runs here in float64 (once
per call: the weight changes at every training step) and is packed as the kernel reads it,
U[pos][kb][c][VB] with VB output channels per block (zero past K); src/winograd_impl.h does the
input transform, the alpha^2 GEMMs and the output transform (bias, ReLU) per block of tiles.

The input gradient of a 3x3 stride-1 conv with padding (pt, pl) is the same computation on dy with
the weight rotated by 180 degrees and transposed in (C, K), padding (2*dh - pt, 2*dw - pl), whose
output is x's shape ("full" padding, clipped to x).

This module runs a validated problem; fastconv/ops/conv.py decides whether it runs at all
(eligible(), the algorithm choice in _plan.conv_algo) and records the variant in _dispatch.
"""
from __future__ import annotations

import numpy as np

from fastconv import _dispatch
from fastconv._kernels import winograd as _k
from fastconv.ops import _plan
from fastconv.ops._validate import aligned_empty

# transform matrices: B^T (alpha x alpha), G (alpha x 3), A^T (m x alpha)
_G = {
    4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                 [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
    2: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
}
BT = {
    4: np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
    2: np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
}
AT = {
    4: np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                np.float64),
    2: np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
}
G = _G


def eligible(k_hw, stride, dilation, groups) -> bool:
    """Whether a conv (or the stride-1 input gradient of one) can run as Winograd: 3x3, stride 1,
    one group, any dilation (a dilated conv runs as dh*dw undilated ones on the polyphase
    sub-lattices of its output, src/winograd_kernels.h fc_wino)."""
    return tuple(k_hw) == (3, 3) and tuple(stride) == (1, 1) and groups == 1


def phase_geometry(N: int, OH: int, OW: int, dilation=(1, 1)) -> tuple[int, int, int]:
    """(images, rows, columns) of the undilated convs a dilated one splits into: N*dh*dw sub-images
    of at most ceil(OH/dh) x ceil(OW/dw) outputs (what the algorithm rule and the plans size by)."""
    dh, dw = dilation
    return N * dh * dw, -(-OH // dh), -(-OW // dw)


def transform_weight(w: np.ndarray, m: int, vb: int, flip: bool = False, threads: int = 1, isa: int = 0) -> np.ndarray:
    """U[pos][kb][c][v] = (G w[:, :, c, kb*vb + v] G^T)[pos], zero past K, for w (3, 3, C, K) (float64
    arithmetic, in the kernel module, on `threads` threads, compiled for SIMD level `isa`); flip=True:
    of input_grad_weight(w) without forming it."""
    C, K = (w.shape[3], w.shape[2]) if flip else w.shape[2:]
    al = m + 2
    out = aligned_empty((al * al * -(-K // vb) * C * vb,), w.dtype)
    _k.transform_weight(w, m, vb, flip, out, threads, isa)
    return out


def run(inp: np.ndarray, w: np.ndarray, bias, out: np.ndarray, pads_tl, m: int, relu: bool, isa: int,
        threads: int, flip: bool = False, dilation=(1, 1)) -> None:
    """out (N, OH, OW, K) = 3x3 conv of inp (N, IH, IW, C) with w (3, 3, C, K) (flip=True: with
    input_grad_weight(w)), output pixel (oy, ox) reading inp rows oy - pt + dh*i, columns
    ox - pl + dw*j (zeros outside), + bias, optional ReLU."""
    K = out.shape[3]
    N, OH, OW = phase_geometry(*out.shape[:3], dilation)
    C = inp.shape[3]
    vb = _k.block_size(isa, w.dtype)
    U = transform_weight(w, m, vb, flip, _dispatch.threads_for(w.size * (m + 2) ** 2 * 4), isa)
    tile_bytes = (_k.scratch_bytes(isa, w.dtype, C, K, m, 12) - _k.scratch_bytes(isa, w.dtype, C, K, m, 6)) // 6
    plan = _plan.wino_plan(N, OH, OW, m, tile_bytes, threads)
    _k.wino_conv(inp, U, bias, out, int(pads_tl[0]), int(pads_tl[1]), m, plan.tb, bool(relu), isa,
                 plan.nchunks, plan.threads, int(dilation[0]), int(dilation[1]))


def input_grad_weight(w: np.ndarray) -> np.ndarray:
    """The weight of the input gradient's conv: w rotated 180 degrees in (kh, kw), (C, K) swapped."""
    return np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))


def weight_grad(x: np.ndarray, dy: np.ndarray, dw: np.ndarray, db: np.ndarray, pads_tl, m: int, isa: int,
                threads: int, dilation=(1, 1)) -> None:
    """dw (3, 3, C, K) and db (K,) of the 3x3 conv of x (N, H, W, C) whose output gradient is dy (N, OH, OW, K),
    output pixel (oy, ox) reading x rows oy - pt + i: dw = G^T [sum over tiles of (B^T d B) (x)
    (A dY A^T)] G (src/winograd_impl.h), each chunk of tiles folded by G^T . G, the chunks summed in
    a fixed order; blocks sized by the transformed x and dy of a tile (_plan.wino_wgrad_plan)."""
    N, OH, OW = phase_geometry(*dy.shape[:3], dilation)
    al2, vb = (m + 2) ** 2, _k.block_size(isa, x.dtype)
    tile_bytes = al2 * (-(-x.shape[3] // vb) * vb + -(-dy.shape[3] // vb) * vb) * x.dtype.itemsize
    plan = _plan.wino_wgrad_plan(N, OH, OW, m, threads, tile_bytes)
    _k.wino_wgrad(x, dy, dw, db, int(pads_tl[0]), int(pads_tl[1]), m, plan.tb, isa, plan.nchunks, plan.threads,
                  int(dilation[0]), int(dilation[1]))
