"""The plan step of the convolution family: from validated shapes to kernel geometry.

A plan is plain Python data (tap offsets, output grids, packing strides), computed once per call and
unit-tested on its own; the kernels in src/conv_impl.h trust it.

Every member of the family is a *gather convolution* (src/conv_geom.h): output grid pixel (oy, ox)
reads input position (oy*ay + by[i], ox*ax + bx[j]) through tap (i, j) with kernel index (ky[i], kx[j]).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

MAX_TAPS = 64  # kernel extent per axis that the C geometry holds

# The kernels keep the geometry of a call in 32-bit ints (src/conv_geom.h: extents, positions, tap
# offsets, channel counts, reduction lengths) and form every product of two of them in 64-bit
# (ptrdiff_t).  Each such quantity stays below INT_GEOMETRY_LIMIT, so that a position plus a tap
# offset, a tile width or another extent cannot pass 2**31 either.  The batch size only ever enters
# products, so it may take any int value.
INT_GEOMETRY_LIMIT = 2**30
BATCH_LIMIT = 2**31


def check_int_geometry(op: str, quantities, context: str = "") -> None:
    """Refuse, before any kernel runs, a call whose geometry the kernels' int fields cannot hold.

    quantities: (name, value) pairs, each to be below INT_GEOMETRY_LIMIT; a name starting with
    "batch" is held to BATCH_LIMIT instead.
    """
    for name, value in quantities:
        limit = BATCH_LIMIT if name.startswith("batch") else INT_GEOMETRY_LIMIT
        if value >= limit:
            exp = 31 if limit == BATCH_LIMIT else 30
            raise ValueError(f"{op}: the {name} must be below 2**{exp} (the kernels index it in 32 bits). "
                             f"Received: {name}={value}{context}")


@dataclass(frozen=True)
class GatherPlan:
    grid: tuple            # (OH, OW, oy0, ox0, out_ay, out_ax, ay, ax)
    taps_y: tuple          # ((by, ky), ...)
    taps_x: tuple

    def as_tuple(self) -> tuple:
        """(grid, taps_y, taps_x), the form the kernel wrapper takes."""
        return self.grid, self.taps_y, self.taps_x


# The plans depend on shapes only and are immutable: cached, since building them in Python cost
# ~20 us per call, a few per cent of a small conv.
@lru_cache(maxsize=256)
def forward_plan(out_hw, k_hw, stride, pad_tl, dilation) -> GatherPlan:
    """conv2d forward: y[oy, ox] gathers x[oy*s - p + kh*d, ...]."""
    taps_y = tuple((kh * dilation[0] - pad_tl[0], kh) for kh in range(k_hw[0]))
    taps_x = tuple((kw * dilation[1] - pad_tl[1], kw) for kw in range(k_hw[1]))
    grid = (out_hw[0], out_hw[1], 0, 0, 1, 1, stride[0], stride[1])
    return GatherPlan(grid, taps_y, taps_x)


def _phase_taps(r: int, k: int, s: int, p: int, d: int):
    """Taps of stride phase r of the input gradient: kernel rows with (r + p - kh*d) % s == 0."""
    return tuple(((r + p - kh * d) // s, kh) for kh in range(k) if (r + p - kh * d) % s == 0)


def flips_columns(stride, dilation) -> bool:
    """Whether the input-gradient plans read the weight with its columns reversed.

    With stride 1 and dilation 1 along W, dx column iw reads dy columns iw + pw - kw: reversing kw
    makes the taps consecutive input columns in kernel order, which the kernel merges into one
    long reduction per kernel row (conv_impl.h, mergex).
    """
    return stride[1] == 1 and dilation[1] == 1


@lru_cache(maxsize=256)
def input_grad_plans(in_hw, k_hw, stride, pad_tl, dilation) -> tuple[GatherPlan, ...]:
    """conv2d input gradient as one gather conv per stride phase (no zero-stuffing of dy).

    dx rows ih = rh + sh*j read dy rows j + (rh + ph - kh*dh) / sh for the kernel rows of phase rh.
    Phases with no taps still get a plan: their pixels are written with zeros.  When
    flips_columns(), kernel column index j of a tap refers to the column-reversed weight.
    """
    if flips_columns(stride, dilation):
        taps_x = tuple((pad_tl[1] - (k_hw[1] - 1 - j), j) for j in range(k_hw[1]))
        return tuple(GatherPlan((in_hw[0] if stride[0] == 1 else len(range(rh, in_hw[0], stride[0])), in_hw[1],
                                 rh, 0, stride[0], 1, 1, 1),
                                _phase_taps(rh, k_hw[0], stride[0], pad_tl[0], dilation[0]), taps_x)
                     for rh in range(min(stride[0], in_hw[0])))
    plans = []
    for rh in range(min(stride[0], in_hw[0])):
        jh = len(range(rh, in_hw[0], stride[0]))
        ty = _phase_taps(rh, k_hw[0], stride[0], pad_tl[0], dilation[0])
        for rw in range(min(stride[1], in_hw[1])):
            jw = len(range(rw, in_hw[1], stride[1]))
            tx = _phase_taps(rw, k_hw[1], stride[1], pad_tl[1], dilation[1])
            plans.append(GatherPlan((jh, jw, rh, rw, stride[0], stride[1], 1, 1), ty, tx))
    return tuple(plans)


def forward_packing(KH, KW, Cg, K, G):
    """Packing arguments (Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko) of a (KH, KW, Cg, K) weight, forward."""
    Kg = K // G
    return Cg, Kg, KW * Cg * K, Cg * K, Kg, K, 1


def input_grad_packing(KH, KW, Cg, K, G):
    """Same weight packed for the input gradient: reduce over k, produce c."""
    Kg = K // G
    return Kg, Cg, KW * Cg * K, Cg * K, Kg, 1, K
