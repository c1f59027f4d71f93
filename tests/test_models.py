"""The model zoo: every network builds, its parameter count matches a count computed here from the
architecture (independently of the layers' own counting), a few training steps lower the loss, and
config (and file) round trips give identical predictions.  The paper networks are functional Models;
the seeds' tutorial CNNs (hyphenated names) are Sequential stacks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from fastconv import initializers, losses, models, optimizers
from fastconv import layers as L
from fastconv import Model, Sequential

# ---------------------------------------------------------------------------
# Independent parameter counts (Keras's formulas, written from each paper's block layout)
# ---------------------------------------------------------------------------


def conv(k, cin, cout, bias=True, groups=1):
    return k * k * (cin // groups) * cout + (cout if bias else 0)


def bn(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def convbn(k, cin, cout, groups=1):
    return conv(k, cin, cout, bias=False, groups=groups) + bn(cout)


def dwbn(k, c):
    return k * k * c + bn(c)


def dense(i, o):
    return i * o + o


def sep(k, cin, cout):
    return k * k * cin + cin * cout + cout  # depthwise (no bias) + pointwise with bias


def count_lenet5():
    return conv(5, 1, 6) + conv(5, 6, 16) + dense(5 * 5 * 16, 120) + dense(120, 84) + dense(84, 10)


def count_alexnet_small():
    convs = conv(5, 1, 16) + conv(5, 16, 32) + conv(3, 32, 48) + conv(3, 48, 48) + conv(3, 48, 32)
    return convs + dense(4 * 4 * 32, 128) + dense(128, 128) + dense(128, 10)  # 28 -> 14 -> 7 -> 4


def count_vgg_small():
    total, cin = 0, 1
    for w in (16, 32, 64):
        total += conv(3, cin, w) + conv(3, w, w)
        cin = w
    return total + dense(3 * 3 * 64, 128) + dense(128, 10)  # 28 -> 14 -> 7 -> 3


def count_inception_small():
    def module(cin, c1, c3r, c3, c5r, c5, pp):
        p = conv(1, cin, c1) + conv(1, cin, c3r) + conv(3, c3r, c3) + conv(1, cin, c5r) + conv(5, c5r, c5)
        return p + conv(1, cin, pp), c1 + c3 + c5 + pp

    total, c = conv(3, 1, 32), 32
    for spec in [(16, 16, 24, 4, 8, 8), (24, 24, 32, 8, 16, 16), (32, 24, 48, 8, 16, 16)]:
        p, c = module(c, *spec)
        total += p
    return total + dense(c, 10)


def count_resnet_small():
    total = convbn(3, 1, 16)
    total += 2 * convbn(3, 16, 16)  # stage 1: identity shortcut
    total += convbn(3, 16, 32) + convbn(3, 32, 32) + convbn(1, 16, 32)  # projection
    total += convbn(3, 32, 64) + convbn(3, 64, 64) + convbn(1, 32, 64)
    return total + dense(64, 10)


def count_densenet_small():
    total, c = conv(3, 1, 16, bias=False), 16
    for b in range(3):
        for _ in range(3):
            total += bn(c) + conv(3, c, 8, bias=False)
            c += 8
        if b < 2:
            total += bn(c) + conv(1, c, c // 2, bias=False)
            c //= 2
    return total + bn(c) + dense(c, 10)


def count_mobilenet_small():
    total = convbn(3, 1, 16) + dwbn(3, 16) + convbn(1, 16, 24)
    for cin, cout in [(24, 24), (24, 32), (32, 32)]:
        e = 4 * cin
        total += convbn(1, cin, e) + dwbn(3, e) + convbn(1, e, cout)
    return total + convbn(1, 32, 128) + dense(128, 10)


def count_shufflenet_small():
    total, c = convbn(3, 1, 24), 24
    for out in (48, 96):
        for stride in (2, 1):
            b = out // 4
            branch = out - c if stride == 2 else out
            total += convbn(1, c, b, groups=2) + dwbn(3, b) + convbn(1, b, branch, groups=2)
            c = out
    return total + dense(96, 10)


def count_efficientnet_small():
    total, c = convbn(3, 1, 16), 16
    for e, f, k in [(1, 16, 3), (6, 24, 3), (6, 40, 5), (6, 40, 3)]:
        x = c * e
        if e != 1:
            total += convbn(1, c, x)
        r = max(1, int(c * 0.25))
        total += dwbn(k, x) + conv(1, x, r) + conv(1, r, x) + convbn(1, x, f)
        c = f
    return total + convbn(1, 40, 128) + dense(128, 10)


def count_regnet_small():
    total, c = convbn(3, 1, 16), 16
    for w, n in [(16, 1), (32, 1), (64, 2)]:
        for b in range(n):
            stride = 2 if b == 0 else 1
            total += convbn(1, c, w) + convbn(3, w, w, groups=w // 8) + convbn(1, w, w)
            if stride != 1 or c != w:
                total += convbn(1, c, w)
            c = w
    return total + dense(64, 10)


def count_segnet_small():
    enc = convbn(3, 1, 16) + convbn(3, 16, 32)
    dec = 3 * 3 * 32 * 32 + bn(32) + 3 * 3 * 32 * 16 + bn(16)  # Conv2DTranspose, no bias
    return enc + dec + conv(1, 16, 2)


def count_mnist_cnn():
    convs = conv(3, 1, 32) + conv(3, 32, 64)  # 28 -> 26 -> 13 -> 11 -> 5
    return convs + dense(5 * 5 * 64, 128) + dense(128, 64) + dense(64, 10)


def count_fashion_cnn():
    convs = conv(3, 1, 32) + conv(3, 32, 32) + conv(3, 32, 64) + conv(3, 64, 64) + conv(3, 64, 128)
    return convs + conv(3, 128, 128) + dense(3 * 3 * 128, 128) + dense(128, 10)  # 28 -> 14 -> 7 -> 3


def count_separable_cnn():
    convs = conv(3, 1, 32) + sep(3, 32, 32) + sep(3, 32, 64) + sep(3, 64, 64) + sep(3, 64, 128)
    return convs + sep(3, 128, 128) + dense(3 * 3 * 128, 128) + dense(128, 10)


def count_cifar_cnn():
    convs = conv(3, 3, 32) + conv(3, 32, 64) + conv(3, 64, 64)  # 32 -> 30 -> 15 -> 13 -> 6 -> 4
    return convs + dense(4 * 4 * 64, 64) + dense(64, 10)


COUNTS = {
    "lenet5": count_lenet5,
    "alexnet_small": count_alexnet_small,
    "vgg_small": count_vgg_small,
    "inception_small": count_inception_small,
    "resnet_small": count_resnet_small,
    "densenet_small": count_densenet_small,
    "mobilenet_small": count_mobilenet_small,
    "shufflenet_small": count_shufflenet_small,
    "efficientnet_small": count_efficientnet_small,
    "regnet_small": count_regnet_small,
    "segnet_small": count_segnet_small,
    "mnist-cnn": count_mnist_cnn,
    "fashion-cnn": count_fashion_cnn,
    "separable-cnn": count_separable_cnn,
    "cifar-cnn": count_cifar_cnn,
    "resnet-mini": count_resnet_small,  # the same blocks as resnet_small, built as Sequential layers
}
NAMES = list(models.MODELS)
TUTORIAL = {"mnist-cnn", "fashion-cnn", "separable-cnn", "cifar-cnn", "resnet-mini"}


def test_every_network_the_issue_names_is_in_the_zoo():
    assert sorted(models.MODELS) == sorted(COUNTS)
    assert len(set(models.MODELS.values())) == len(models.MODELS)  # one name per network
    assert set(models.TRAINING) == set(models.MODELS)
    for name, fn in models.MODELS.items():
        doc = fn.__doc__
        if name in TUTORIAL:
            assert "tutorial" in doc, name  # names the tutorial it reproduces, at full size
            continue
        assert re.search(r"\(\w.*(19|20)\d\d\)|(19|20)\d\d\)", doc), fn.__name__  # cites the paper
        assert "Scaled down" in doc or "scaled down" in doc or "Kept at full size" in doc, fn.__name__


def test_every_network_has_complete_training_settings():
    for name in models.MODELS:
        recipe = models.TRAINING[name]
        assert set(recipe) == {"optimizer", "lr", "lr_decay", "batch_size", "task"}, name
        assert recipe["optimizer"] in ("adam", "sgd") and recipe["lr"] > 0 and recipe["batch_size"] > 0
    assert models.TRAINING["fashion-cnn"]["optimizer"] == "sgd"  # the tutorial's recipe
    assert models.TRAINING["lenet5"] == {
        "optimizer": "adam", "lr": 1e-3, "lr_decay": 1.0, "batch_size": 64, "task": "classify"
    }  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_zoo_builds_with_independent_parameter_count(name):
    model = models.MODELS[name]()
    expected = COUNTS[name]()
    assert model.count_params() == expected
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    total = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    assert total == expected
    if name == "segnet_small":
        assert model.output_shape == (None, 28, 28, 2)
    else:
        assert model.output_shape == (None, 10)
    if name in TUTORIAL:
        assert isinstance(model, Sequential)
    else:
        assert isinstance(model, Model) and "Connected to" in text


def test_input_shape_and_classes_arguments():
    for name, fn in models.MODELS.items():
        classes = 3 if name == "segnet_small" else 7
        model = fn(input_shape=(32, 32, 3), classes=classes)
        assert model.output_shape[-1] == classes
        assert model.input_shape == (None, 32, 32, 3)
    with pytest.raises(ValueError, match="divisible by 4"):
        models.segnet_small((30, 30, 1))


def _train_steps(model, x, y, steps, lr):
    """``steps`` optimizer steps through the trainer (one batch per epoch)."""
    model.compile(optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == steps


def _training_loss(model, x, y):
    """Training-mode loss (batch statistics) with the same dropout masks every time it is called."""
    for layer in model.layers:
        if isinstance(layer, L.Dropout):
            layer.reseed(123)
    out = model(x, training=True)
    penalty = sum(layer.regularization_loss() for layer in model.layers)  # Sequential has no helper
    return losses.get("sparse_categorical_crossentropy")(y, out) + penalty


def _size(name):
    return 24 if name == "cifar-cnn" else 16  # three unpadded convs and two poolings need 18 or more


def _blob_data(n=8, size=16):
    """Class = the quadrant holding a bright 4x4 square (learnable in a few steps); masks for segnet."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 4
    x = rng.random((n, size, size, 1), dtype=np.float32) * 0.2
    half = size // 2
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * half + 2 : r * half + 6, q * half + 2 : q * half + 6, 0] += 1.0
    return x, y, (x[..., 0] > 0.5).astype(np.int64)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_training_steps_lower_the_loss(name):
    initializers.set_seed(0)
    seg = name == "segnet_small"
    size = _size(name)
    model = models.MODELS[name](input_shape=(size, size, 1), classes=2 if seg else 4)
    x, labels, masks = _blob_data(size=size)
    y = masks if seg else labels
    before = _training_loss(model, x, y)
    # five stacked separable selu convs start at a near-uniform output that 6 steps at 3e-3 barely leave
    _train_steps(model, x, y, steps=6, lr=1e-2 if name == "separable-cnn" else 3e-3)
    after = _training_loss(model, x, y)
    assert np.isfinite(after) and after < 0.97 * before, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip_gives_identical_predictions(name):
    size = _size(name)
    model = models.MODELS[name](input_shape=(size, size, 1))
    x = np.random.default_rng(1).random((3, size, size, 1), dtype=np.float32)
    config = json.loads(json.dumps(model.get_config()))
    clone = type(model).from_config(config)
    clone.set_weights(model.get_weights())
    assert clone.count_params() == model.count_params()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_gives_identical_predictions(name, tmp_path):
    import fastconv
    from fastconv import saving

    load_model = getattr(fastconv, "load_model", saving.load_model)
    size = _size(name)
    model = models.MODELS[name](input_shape=(size, size, 1))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(1).random((3, size, size, 1), dtype=np.float32)
    path = tmp_path / f"{name}.npz"
    model.save(path)
    clone = load_model(path)
    assert type(clone) is type(model) and clone.name == model.name
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))
    assert clone.compiled
