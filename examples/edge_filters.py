"""Classic edge filters on an MNIST digit with fastconv's conv2d: Sobel x / y, Laplacian and a
high-pass kernel, each followed by a ReLU, drawn side by side (needs matplotlib for the picture).

    python examples/edge_filters.py --index 0 --out edges.png
"""

import argparse

import numpy as np

import fastconv
from fastconv import datasets, filters


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=int, default=0, help="which bundled digit")
    p.add_argument("--out", default="edges.png", help="PNG to write (skipped without matplotlib)")
    args = p.parse_args(argv)

    (x_train, y_train), _ = datasets.load_mnist()
    digit = x_train[args.index].astype(np.float32)[None, :, :, None] / 255.0  # (1, 28, 28, 1)
    kernels = {"Sobel x": filters.sobel_x(), "Sobel y": filters.sobel_y(),
               "Laplacian": filters.laplacian(), "high-pass": filters.high_pass()}  # fmt: skip
    maps = {"digit": digit[0, :, :, 0]}
    for name, k in kernels.items():
        edges = fastconv.conv2d(digit, k, padding="same")  # k: (3, 3, 1, 1)
        relu = np.maximum(edges, 0.0)
        maps[name] = relu[0, :, :, 0]
        print(f"{name:10s} kernel {np.round(k[:, :, 0, 0], 3).tolist()}  response range [{edges.min():+.2f}, "
              f"{edges.max():+.2f}], {np.count_nonzero(relu) / relu.size:.0%} pixels kept by ReLU")  # fmt: skip

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no picture written")
        return maps
    fig = Figure(figsize=(2.2 * len(maps), 2.6))
    FigureCanvasAgg(fig)
    for i, (name, img) in enumerate(maps.items()):
        ax = fig.add_subplot(1, len(maps), i + 1)
        ax.imshow(img, cmap="gray")
        ax.set_title(name if i == 0 else f"ReLU({name})", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"digit {y_train[args.index]}")
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}")
    return maps


if __name__ == "__main__":
    main()
