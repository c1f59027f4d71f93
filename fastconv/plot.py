"""Pictures: learning curves, feature-map and filter grids, confusion matrix.

matplotlib is an optional dependency, imported inside the functions only (and
through its object-oriented API with the Agg canvas, so no display or pyplot
state is needed). Every function returns the matplotlib ``Figure`` and, given a
``path``, writes it there (PNG, SVG, PDF: by extension).

:func:`layer_outputs` and :func:`confusion_matrix` need only NumPy.

Examples
--------
>>> history = model.fit(x, y, validation_split=0.2, epochs=5)   # doctest: +SKIP
>>> plot_history(history, "curves.png")                         # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "confusion_matrix",
    "layer_outputs",
    "plot_confusion_matrix",
    "plot_feature_maps",
    "plot_filters",
    "plot_history",
]


def _figure(figsize):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fastconv.plot needs matplotlib, an optional dependency: pip install matplotlib"
        ) from e
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def plot_history(history, path=None, metrics=("loss", "accuracy"), title=None):
    """Learning curves: one panel per metric, train and validation per epoch.

    Parameters
    ----------
    history : History or dict
        ``model.fit``'s return value (or its ``.history`` dict).
    path : str, optional
        Write the figure there.
    """
    h = history.history if hasattr(history, "history") else dict(history)
    present = [m for m in metrics if m in h or f"val_{m}" in h]
    if not present:
        raise ValueError(f"plot_history: none of {list(metrics)} in the history (keys: {sorted(h)}).")
    from matplotlib.ticker import MaxNLocator

    fig = _figure((5 * len(present), 3.6))
    for i, m in enumerate(present):
        ax = fig.add_subplot(1, len(present), i + 1)
        for key, label, style in ((m, "train", "-o"), (f"val_{m}", "validation", "-s")):
            if key in h and len(h[key]):
                epochs = np.arange(1, len(h[key]) + 1)
                ax.plot(epochs, h[key], style, label=label, markersize=4)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def layer_outputs(model, x, layer):
    """The output of ``layer`` (index, name or the Layer itself) of ``model`` for the batch ``x``,
    computed in inference mode: ``(N, OH, OW, C)`` feature maps for a conv layer."""
    return model.layer_output(x, layer)


def _grid(n):
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def plot_feature_maps(model, layer, images, n_filters=10, path=None, cmap="viridis"):
    """Grid of feature maps: one row per image, one column per filter of ``layer``'s output
    (the seeds draw 10 MNIST digits x 10 filters). The first column shows the input image."""
    images = np.asarray(images)
    maps = layer_outputs(model, images, layer)
    if maps.ndim != 4:
        raise ValueError(f"plot_feature_maps: layer output must be (N, H, W, C). Received shape {maps.shape}")
    n_img = len(images)
    n_f = min(int(n_filters), maps.shape[-1])
    fig = _figure((1.2 * (n_f + 1), 1.2 * n_img))
    for r in range(n_img):
        ax = fig.add_subplot(n_img, n_f + 1, r * (n_f + 1) + 1)
        img = images[r]
        ax.imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img, cmap="gray")
        ax.axis("off")
        if r == 0:
            ax.set_title("input", fontsize=8)
        for c in range(n_f):
            ax = fig.add_subplot(n_img, n_f + 1, r * (n_f + 1) + c + 2)
            ax.imshow(maps[r, :, :, c], cmap=cmap)
            ax.axis("off")
            if r == 0:
                ax.set_title(f"filter {c}", fontsize=8)
    return _save(fig, path)


def plot_filters(layer, path=None, max_filters=64, cmap="gray"):
    """Grid of a conv layer's learned kernels (first input channel of each output filter;
    RGB when the layer has 3 input channels)."""
    weights = layer.get_weights() if hasattr(layer, "get_weights") else [np.asarray(layer)]
    if not weights or np.asarray(weights[0]).ndim != 4:
        raise ValueError("plot_filters: expected a conv layer whose first weight is (KH, KW, C_in, C_out).")
    k = np.asarray(weights[0], dtype=np.float64)
    n = min(k.shape[-1], int(max_filters))
    rows, cols = _grid(n)
    fig = _figure((1.3 * cols, 1.3 * rows))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        if k.shape[2] == 3:
            f = k[:, :, :, i]
            f = (f - f.min()) / (np.ptp(f) or 1.0)
            ax.imshow(f)
        else:
            ax.imshow(k[:, :, 0, i], cmap=cmap)
        ax.set_title(str(i), fontsize=7)
        ax.axis("off")
    return _save(fig, path)


def confusion_matrix(y_true, y_pred, num_classes=None):
    """Counts ``(K, K)``: rows are true classes, columns predicted. ``y_pred`` may be class
    scores ``(N, K)`` (argmax is taken) or labels ``(N,)``."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim == 2 and t.shape[1] > 1:
        t = t.argmax(axis=1)
    if p.ndim == 2 and p.shape[1] > 1:
        if num_classes is None:
            num_classes = p.shape[1]
        p = p.argmax(axis=1)
    t = t.reshape(-1).astype(np.int64)
    p = p.reshape(-1).astype(np.int64)
    if len(t) != len(p):
        raise ValueError(f"confusion_matrix: {len(t)} true labels but {len(p)} predictions.")
    k = int(num_classes or (max(t.max(initial=-1), p.max(initial=-1)) + 1))
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def plot_confusion_matrix(y_true, y_pred, path=None, class_names=None, normalize=False, cmap="Blues"):
    """Heat map of :func:`confusion_matrix` with the counts written in the cells."""
    cm = confusion_matrix(y_true, y_pred, None if class_names is None else len(class_names))
    k = cm.shape[0]
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig = _figure((0.6 * k + 2.5, 0.6 * k + 2))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(values, cmap=cmap)
    fig.colorbar(im, ax=ax, fraction=0.046)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=45 if max(len(n) for n in names) > 2 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = values.max() / 2 if values.size else 0
    for i in range(k):
        for j in range(k):
            txt = f"{values[i, j]:.2f}" if normalize else str(cm[i, j])
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if values[i, j] > thresh else "black",
            )
    return _save(fig, path)
