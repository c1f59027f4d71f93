"""Pictures (matplotlib optional: skipped without it), layer outputs, confusion matrix, classic filters."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import filters, initializers, plot
from fastconv import layers as L
from fastconv import Sequential


def _model():
    initializers.set_seed(0)
    return Sequential(
        [
            L.Conv2D(6, 3, activation="relu", input_shape=(10, 10, 1)),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ]
    )


def test_layer_outputs_match_manual_forward():
    model = _model()
    x = np.random.default_rng(0).random((5, 10, 10, 1)).astype(np.float32)
    maps = plot.layer_outputs(model, x, 0)
    assert maps.shape == (5, 8, 8, 6)
    np.testing.assert_allclose(maps, model.layers[0](x), rtol=1e-6)
    pooled = plot.layer_outputs(model, x, model.layers[1].name)
    assert pooled.shape == (5, 4, 4, 6)
    np.testing.assert_array_equal(plot.layer_outputs(model, x, model.layers[-1]), model.predict(x))


def test_confusion_matrix_counts():
    cm = plot.confusion_matrix([0, 1, 2, 2], np.eye(3)[[0, 2, 2, 1]])
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    model = _model()
    x = np.random.default_rng(0).random((3, 10, 10, 1)).astype(np.float32)
    hist = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7], "val_accuracy": [0.4, 0.7]}
    paths = [tmp_path / f"{n}.png" for n in ("h", "fm", "f", "cm")]
    plot.plot_history(hist, paths[0])
    plot.plot_feature_maps(model, 0, x, n_filters=4, path=paths[1])
    plot.plot_filters(model.layers[0], paths[2])
    plot.plot_confusion_matrix([0, 1, 2], [0, 2, 2], paths[3], class_names=["a", "b", "c"])
    for p in paths:
        assert p.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="none of"):
        plot.plot_history({"foo": [1]})


def test_filter_kernels():
    for k in (
        filters.sobel_x(),
        filters.sobel_y(),
        filters.laplacian(),
        filters.high_pass(),
        filters.sharpen(),
        filters.gaussian(5, 1.0),
        filters.box_blur(),
    ):
        assert k.ndim == 4 and k.shape[2:] == (1, 1) and k.dtype == np.float32
    assert filters.sobel_x().sum() == 0 and filters.laplacian().sum() == 0
    assert filters.high_pass().sum() == pytest.approx(0, abs=1e-6)
    assert filters.gaussian(5, 1.0).sum() == pytest.approx(1.0) and filters.sharpen().sum() == pytest.approx(
        1.0
    )
    img = np.zeros((1, 6, 6), np.float32)
    img[0, :, 3:] = 1.0  # vertical edge between columns 2 and 3
    gx = filters.apply_filter(img, filters.sobel_x())
    gy = filters.apply_filter(img, filters.sobel_y())
    assert gx.shape == (1, 6, 6, 1)
    assert gx[0, 2, 2, 0] == 4 and gx[0, 2, 3, 0] == 4 and gx[0, 2, 0, 0] == 0
    assert np.all(gy[0, 1:-1, :, 0] == 0)
    flat = np.full((1, 5, 5, 1), 3.0, np.float32)
    assert np.allclose(filters.apply_filter(flat, filters.laplacian())[0, 1:-1, 1:-1], 0)
    rgb = np.random.default_rng(0).random((2, 5, 5, 3)).astype(np.float32)
    out = filters.apply_filter(rgb, np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32))
    np.testing.assert_allclose(out, rgb, rtol=1e-6)  # identity kernel per channel
    with pytest.raises(ValueError):
        filters.gaussian(4)
