"""RandomFlip, RandomRotation, RandomTranslation, RandomZoom, RandomContrast: Keras 3's transform
for fixed parameters, training-only behaviour, seeds, exact adjoints, configs.

The ``KERAS`` images were computed offline with Keras 3.15.1 (JAX backend) on the 5x6 image
``arange(30)``, with factors whose range is one value (so the transform is fixed):
RandomRotation((0.1, 0.1)) (36 degrees) for every fill mode and interpolation with
fill_value=-1; RandomTranslation((0.2, 0.2), (-0.25, -0.25)) reflect; RandomTranslation((-0.3,
-0.3), (0.1, 0.1), "constant", nearest, fill_value=0.5); RandomZoom((0.3, 0.3)) reflect;
RandomZoom((-0.4, -0.4), (0.2, 0.2)) wrap. The tests do not import Keras.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import roundtrip  # tests/layercheck.py

from fastconv import layers as L

IMG = np.arange(30, dtype=np.float32).reshape(1, 5, 6, 1)

# fmt: off
KERAS = {
    'rot_reflect_bilinear': [[2.178011, 2.462045, 3.799502, 8.135231, 12.470961, 16.108574], [1.065243, 3.73009, 8.065819, 12.401546, 16.737278, 20.962677], [3.660679, 7.996407, 12.332135, 16.667864, 21.003592, 25.339321], [8.037324, 12.262725, 16.598452, 20.934179, 25.269911, 27.934759], [12.891426, 16.529041, 20.864767, 25.2005, 26.537956, 26.821989]],
    'rot_reflect_nearest': [[2.0, 2.0, 3.0, 10.0, 11.0, 17.0], [1.0, 2.0, 9.0, 9.0, 16.0, 23.0], [6.0, 7.0, 14.0, 15.0, 22.0, 23.0], [6.0, 13.0, 20.0, 20.0, 27.0, 28.0], [12.0, 18.0, 19.0, 26.0, 27.0, 27.0]],
    'rot_wrap_bilinear': [[25.128044, 14.455131, 3.799502, 8.135231, 12.470961, 12.61801], [7.748765, 3.73009, 8.065819, 12.401546, 16.737278, 20.411037], [3.660679, 7.996407, 12.332135, 16.667864, 21.003592, 25.339321], [8.588963, 12.262725, 16.598452, 20.934179, 25.269911, 21.251236], [16.38199, 16.529041, 20.864767, 25.2005, 14.544879, 3.871955]],
    'rot_wrap_nearest': [[26.0, 2.0, 3.0, 10.0, 11.0, 12.0], [1.0, 2.0, 9.0, 9.0, 16.0, 23.0], [6.0, 7.0, 14.0, 15.0, 22.0, 23.0], [6.0, 13.0, 20.0, 20.0, 27.0, 28.0], [17.0, 18.0, 19.0, 26.0, 27.0, 3.0]],
    'rot_constant_bilinear': [[-1.0, 0.73202, 3.799502, 8.135231, 12.470961, 4.164857], [0.490114, 3.73009, 8.065819, 12.401546, 16.737278, 18.539583], [3.660679, 7.996407, 12.332135, 16.667864, 21.003592, 25.339321], [7.040257, 12.262725, 16.598452, 20.934179, 25.269911, 19.877005], [3.193641, 16.529041, 20.864767, 25.2005, 12.776921, -1.0]],
    'rot_constant_nearest': [[-1.0, 2.0, 3.0, 10.0, 11.0, -1.0], [1.0, 2.0, 9.0, 9.0, 16.0, 23.0], [6.0, 7.0, 14.0, 15.0, 22.0, 23.0], [6.0, 13.0, 20.0, 20.0, 27.0, 28.0], [-1.0, 18.0, 19.0, 26.0, 27.0, -1.0]],
    'rot_nearest_bilinear': [[1.653028, 2.462045, 3.799502, 8.135231, 12.470961, 16.108574], [1.065243, 3.73009, 8.065819, 12.401546, 16.737278, 20.962677], [3.660679, 7.996407, 12.332135, 16.667864, 21.003592, 25.339321], [8.037324, 12.262725, 16.598452, 20.934179, 25.269911, 27.934759], [12.891426, 16.529041, 20.864767, 25.2005, 26.537956, 27.346972]],
    'rot_nearest_nearest': [[2.0, 2.0, 3.0, 10.0, 11.0, 17.0], [1.0, 2.0, 9.0, 9.0, 16.0, 23.0], [6.0, 7.0, 14.0, 15.0, 22.0, 23.0], [6.0, 13.0, 20.0, 20.0, 27.0, 28.0], [12.0, 18.0, 19.0, 26.0, 27.0, 27.0]],
    'trans': [[1.5, 2.5, 3.5, 4.5, 5.0, 4.5], [1.5, 2.5, 3.5, 4.5, 5.0, 4.5], [7.5, 8.5, 9.5, 10.5, 11.0, 10.5], [13.5, 14.5, 15.5, 16.5, 17.0, 16.5], [19.5, 20.5, 21.5, 22.5, 23.0, 22.5]],
    'trans_const': [[0.5, 12.0, 13.0, 14.0, 15.0, 16.0], [0.5, 18.0, 19.0, 20.0, 21.0, 22.0], [0.5, 24.0, 25.0, 26.0, 27.0, 28.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]],
    'zoom': [[0.0, 0.55, 1.85, 3.15, 4.45, 5.0], [4.2, 4.75, 6.05, 7.35, 8.65, 9.200001], [12.0, 12.55, 13.85, 15.15, 16.450001, 17.0], [19.800001, 20.35, 21.65, 22.949999, 24.25, 24.799999], [24.0, 24.550001, 25.849998, 27.15, 28.449999, 29.0]],
    'zoom2': [[7.3, 5.5, 6.699999, 7.9, 9.1, 7.299999], [10.900001, 9.099999, 10.299999, 11.5, 12.7, 10.9], [14.5, 12.7, 13.9, 15.1, 16.299999, 14.5], [18.1, 16.299999, 17.5, 18.699999, 19.9, 18.099998], [21.700001, 19.9, 21.099998, 22.300001, 23.5, 21.700001]],
}
# fmt: on

CASES = [
    *[
        (f"rot_{fill}_{interp}",
         lambda fill=fill, interp=interp: L.RandomRotation((0.1, 0.1), fill_mode=fill, interpolation=interp,
                                                           fill_value=-1.0))
        for fill in ("reflect", "wrap", "constant", "nearest") for interp in ("bilinear", "nearest")
    ],
    ("trans", lambda: L.RandomTranslation((0.2, 0.2), (-0.25, -0.25), fill_mode="reflect")),
    ("trans_const", lambda: L.RandomTranslation((-0.3, -0.3), (0.1, 0.1), fill_mode="constant", fill_value=0.5,
                                                interpolation="nearest")),
    ("zoom", lambda: L.RandomZoom((0.3, 0.3), fill_mode="reflect")),
    ("zoom2", lambda: L.RandomZoom((-0.4, -0.4), (0.2, 0.2), fill_mode="wrap")),
]  # fmt: skip


@pytest.mark.parametrize("key,factory", CASES, ids=[c[0] for c in CASES])
def test_affine_layers_match_keras(key, factory):
    layer = factory()
    y = layer(IMG, training=True)
    np.testing.assert_allclose(y[0, :, :, 0], KERAS[key], atol=2e-4)


@pytest.mark.parametrize("key,factory", CASES, ids=[c[0] for c in CASES])
def test_affine_backward_is_the_adjoint(key, factory):
    layer = factory()
    layer.dtype = np.dtype("float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 6, 2))
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    # y = T x + c (c: the constant fill); <T x, dy> = <x, T^T dy>
    c = layer.forward(np.zeros_like(x), training=True)
    np.testing.assert_allclose(np.sum((y - c) * dy), np.sum(x * dx), rtol=1e-10)


@pytest.mark.parametrize(
    "factory",
    [
        lambda s: L.RandomFlip(seed=s),
        lambda s: L.RandomRotation(0.2, seed=s),
        lambda s: L.RandomTranslation(0.2, 0.3, seed=s),
        lambda s: L.RandomZoom(0.3, seed=s),
        lambda s: L.RandomContrast(0.4, value_range=(0, 1), seed=s),
    ],
)
def test_random_layers_identity_at_inference_and_seeded(factory):
    x = np.random.default_rng(1).uniform(0, 1, (6, 5, 6, 3)).astype(np.float32)
    layer = factory(7)
    np.testing.assert_array_equal(layer(x, training=False), x)
    a = layer(x)  # direct calls default to training=True, as in Keras
    assert not np.array_equal(a, x)
    np.testing.assert_array_equal(factory(7)(x), a)  # same seed, same augmentation
    layer.reseed(7)
    np.testing.assert_array_equal(layer(x, training=True), a)
    assert not np.array_equal(layer(x, training=True), a)  # the stream moves on
    clone = roundtrip(layer)
    assert clone.seed == 7


def test_random_flip_modes_and_backward():
    x = np.random.default_rng(2).standard_normal((32, 3, 4, 1)).astype(np.float32)
    seen = set()
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        layer = L.RandomFlip(mode, seed=0)
        y = layer.forward(x, training=True)
        for b in range(len(x)):
            if np.array_equal(y[b], x[b]):
                kind = "none"
            elif np.array_equal(y[b], x[b, :, ::-1]):
                kind = "horizontal"
            elif np.array_equal(y[b], x[b, ::-1]):
                kind = "vertical"
            else:
                assert np.array_equal(y[b], x[b, ::-1, ::-1])
                kind = "horizontal_and_vertical"
            assert kind in ("none", mode)
            seen.add((mode, kind))
        dy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
        np.testing.assert_allclose(np.sum(y * dy), np.sum(x * layer.backward(dy)), rtol=1e-5)
    assert len(seen) == 6  # every mode both flips some images and leaves others
    with pytest.raises(ValueError, match="mode"):
        L.RandomFlip("diagonal")


def test_random_contrast_formula_clip_and_gradient():
    layer = L.RandomContrast((0.5, 0.5), value_range=(0, 1), dtype="float64")
    x = np.random.default_rng(4).uniform(0.2, 0.8, (3, 4, 4, 2))
    y, _ = layer.adjust(x, [0.5, 1.0, 1.5])
    m = x.mean(axis=(1, 2), keepdims=True)
    f = np.array([0.5, 1.0, 1.5]).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(y, np.clip((x - m) * f + m, 0, 1))
    # float factor f gives contrast factors in [1 - f, 1 + f] (Keras's documented range)
    layer = L.RandomContrast(0.5, seed=0, value_range=(-1e9, 1e9))
    xs = np.random.default_rng(5).uniform(0, 255, (400, 3, 3, 1))
    ratio = layer(xs).std(axis=(1, 2, 3)) / xs.std(axis=(1, 2, 3))
    assert 0.5 <= ratio.min() < 0.6 and 1.4 < ratio.max() <= 1.5
    # backward: finite differences through the clip (inputs chosen so a few outputs clip)
    layer = L.RandomContrast(0.9, value_range=(0, 1), seed=3, dtype="float64")
    x = np.random.default_rng(6).uniform(0.0, 1.0, (2, 3, 3, 2))
    y = layer.forward(x, training=True)
    dy = np.random.default_rng(7).standard_normal(y.shape)
    dx = layer.backward(dy)
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (1, 2, 1, 1), (0, 1, 2, 1), (1, 0, 0, 0)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        layer.reseed(3)
        fp = np.sum(layer.forward(xp, training=True) * dy)
        layer.reseed(3)
        fm = np.sum(layer.forward(xm, training=True) * dy)
        np.testing.assert_allclose(dx[idx], (fp - fm) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_factor_validation_is_keras_worded():
    with pytest.raises(ValueError, match="factor"):
        L.RandomRotation(1.5)
    with pytest.raises(ValueError, match="height_factor"):
        L.RandomZoom(-1.0)
    with pytest.raises(ValueError, match="factor"):
        L.RandomContrast(-0.1)
    with pytest.raises(NotImplementedError, match="fill_mode"):
        L.RandomTranslation(0.1, 0.1, fill_mode="mirror")


def test_config_round_trips_every_argument():
    layers = [
        L.RandomRotation([-0.1, 0.2], fill_mode="constant", interpolation="nearest", seed=3, fill_value=0.5),
        L.RandomTranslation(0.1, [-0.2, 0.1], fill_mode="wrap", seed=1),
        L.RandomZoom(0.2, width_factor=[-0.1, 0.3], fill_mode="nearest"),
        L.RandomZoom(0.2),
        L.RandomContrast([0.1, 0.3], value_range=(0, 1), seed=9),
        L.RandomFlip("vertical", seed=4),
    ]
    for layer in layers:
        roundtrip(layer)


def test_augmentation_in_a_model_trains_and_saves(tmp_path):
    import fastconv

    model = fastconv.Sequential(
        [
            L.RandomFlip("horizontal", seed=1, input_shape=(8, 8, 1)),
            L.RandomRotation(0.05, seed=2),
            L.RandomZoom(0.1, seed=3),
            L.RandomTranslation(0.1, 0.1, seed=4),
            L.RandomContrast(0.2, value_range=(0, 1), seed=5),
            L.Conv2D(2, 3, activation="relu"),
            L.Flatten(),
            L.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    y = np.arange(16) % 2
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    p = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), p)  # inference is deterministic
    model.save(tmp_path / "aug.npz")
    np.testing.assert_array_equal(fastconv.load_model(tmp_path / "aug.npz").predict(x, verbose=0), p)
