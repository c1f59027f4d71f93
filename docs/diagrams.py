#!/usr/bin/env python
"""The register tile of fastconv's gather convolution, drawn from the sizes the compiled kernels report.

    python docs/diagrams.py [--level avx2|avx512|generic] [--out docs/register_tile.png]

The tile is ``RB`` output pixels x two SIMD vectors of output channels (``fastconv.ops._plan.RB`` and
``fastconv._kernels.conv.block_size``, the same numbers the kernels are compiled with, FC_RB and
2*FC_VLEN), so the picture follows the code. One reduction step (one tap, one input channel) loads
two weight vectors, broadcasts one input value per pixel and runs one FMA per accumulator.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def tile_geometry(level: str = "avx2", dtype=np.float32) -> dict:
    """{"level", "rb", "vb", "vlen", "accumulators", "registers", "fma_per_weight_load"} of the tile.

    rb: output pixels per tile; vb: output channels per tile (two vectors of vlen); registers: the
    vector registers one reduction step holds (accumulators + 2 weight vectors + 1 broadcast)."""
    from fastconv import _dispatch
    from fastconv._kernels import conv as kc
    from fastconv.ops import _plan

    if level not in _dispatch.LEVELS:
        raise ValueError(f"level must be one of {sorted(_dispatch.LEVELS)}. Received: level={level!r}")
    vb = int(kc.block_size(_dispatch.LEVELS[level], np.dtype(dtype)))
    rb = int(_plan.RB)
    vlen = vb // 2
    return {
        "level": level,
        "rb": rb,
        "vb": vb,
        "vlen": vlen,
        "accumulators": 2 * rb,
        "registers": 2 * rb + 3,
        "fma_per_weight_load": rb,
    }


def draw_register_tile(out: Path, level: str = "avx2") -> Path:
    """Draw the tile of `level` to the PNG `out` (written atomically); returns `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    g = tile_geometry(level)
    rb, vb, vlen = g["rb"], g["vb"], g["vlen"]
    cw, ch = 0.42, 0.62  # cell width (one channel) and height (one pixel)
    x0, y0 = 2.2, 0.0  # lower left corner of the accumulator block
    colors = ("#4C72B0", "#DD8452")
    fig, ax = plt.subplots(figsize=(max(8.0, 3.6 + vb * cw), 2.6 + rb * ch))
    # accumulators: rb rows (pixels) x 2 vectors of vlen channels
    for p in range(rb):
        yy = y0 + (rb - 1 - p) * ch
        for v in range(2):
            xx = x0 + v * vlen * cw
            ax.add_patch(
                Rectangle((xx, yy), vlen * cw, ch, facecolor=colors[v], alpha=0.35, edgecolor="black", lw=1.2)
            )
            for c in range(1, vlen):
                ax.plot([xx + c * cw] * 2, [yy, yy + ch], color="black", lw=0.3, alpha=0.5)
            ax.text(xx + vlen * cw / 2, yy + ch / 2, f"acc[{p}][{v}]", ha="center", va="center", fontsize=9)
    # broadcast input values: one per pixel, left of the block
    for p in range(rb):
        yy = y0 + (rb - 1 - p) * ch
        ax.add_patch(
            Rectangle((0.2, yy + 0.08), 1.2, ch - 0.16, facecolor="#55A868", alpha=0.4, edgecolor="black")
        )
        ax.text(0.8, yy + ch / 2, f"x[p{p}][c]", ha="center", va="center", fontsize=8)
        ax.add_patch(
            FancyArrowPatch(
                (1.45, yy + ch / 2),
                (x0 - 0.05, yy + ch / 2),
                arrowstyle="->",
                mutation_scale=10,
                color="#55A868",
            )
        )
    # weight vectors: two loads of vlen output channels, above the block
    wy = y0 + rb * ch + 0.35
    for v in range(2):
        xx = x0 + v * vlen * cw
        ax.add_patch(
            Rectangle((xx, wy), vlen * cw, ch * 0.8, facecolor=colors[v], alpha=0.8, edgecolor="black")
        )
        ax.text(
            xx + vlen * cw / 2,
            wy + ch * 0.4,
            f"w[tap, c, {v * vlen}:{(v + 1) * vlen}]",
            ha="center",
            va="center",
            fontsize=9,
            color="white",
        )
    ax.text(
        x0 + vb * cw / 2,
        wy + ch * 0.8 + 0.2,
        f"2 weight-vector loads ({vb} output channels, {vlen} per {level} vector)",
        ha="center",
        fontsize=10,
    )
    ax.text(0.8, wy + ch * 0.4, "1 broadcast\nper pixel", ha="center", va="center", fontsize=9)
    ax.text(
        (x0 + vb * cw) / 2,
        y0 - 0.35,
        f"{rb} output pixels x {vb} output channels = {g['accumulators']} vector accumulators; "
        f"per (tap, input channel): {g['accumulators']} FMAs;\n{g['registers']} vector registers in use "
        f"({g['accumulators']} accumulators + 2 weights + 1 broadcast), each weight load feeds "
        f"{g['fma_per_weight_load']} FMAs",
        ha="center",
        va="top",
        fontsize=9,
    )
    ax.set_xlim(0, x0 + vb * cw + 0.3)
    ax.set_ylim(y0 - 1.4, wy + ch + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(
        f"fastconv's register tile (gather convolution, float32, {level}): RB={rb} pixels x 2 vectors",
        fontsize=11,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", default="avx2", help="SIMD level to draw (default: avx2, 8 floats per vector)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "register_tile.png")
    args = ap.parse_args(argv)
    path = draw_register_tile(args.out, args.level)
    g = tile_geometry(args.level)
    print(
        f"wrote {path}: {g['rb']} pixels x {g['vb']} channels ({g['level']}), {g['accumulators']} accumulators"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
