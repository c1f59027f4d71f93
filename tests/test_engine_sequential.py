"""Sequential and the model base: the seeds' parameter counts and shapes, summary text, building,
weights, an end-to-end float64 gradient check through the fused softmax + cross-entropy, save/load
(round trip, atomic writes, missing / truncated / corrupted / mismatched files)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fastconv import initializers, losses, models, regularizers, saving
from fastconv import layers as L
from fastconv import Sequential
from fastconv.saving import load_model


@pytest.fixture(autouse=True)
def _seed():
    initializers.set_seed(0)
    L.reset_name_counters()


SEED_COUNTS = {
    "fashion_cnn": (435_306, 0, (None, 10)),
    "separable_cnn": (184_234, 0, (None, 10)),
    "cifar_cnn": (122_570, 0, (None, 10)),
    "mnist_cnn": (232_650, 0, (None, 10)),
    "lenet5": (61_706, 0, (None, 10)),
    "resnet_mini": (78_426, 672, (None, 10)),
}


@pytest.mark.parametrize("name", sorted(SEED_COUNTS))
def test_seed_model_counts(name):
    total, non_trainable, out_shape = SEED_COUNTS[name]
    model = getattr(models, name)()
    assert model.count_params() == total
    assert model.count_params() - model.count_trainable_params() == non_trainable
    assert model.output_shape == out_shape
    text = model.summary_text()
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total - non_trainable:,}" in text
    assert f"Non-trainable params: {non_trainable:,}" in text


def test_seed_model_intermediate_shapes():
    fashion = models.fashion_cnn()
    flat = next(l for l in fashion.layers if isinstance(l, L.Flatten))
    assert flat.output_shape == (1152,)
    cifar = models.cifar_cnn()
    assert [l.output_shape for l in cifar.layers][:5] == [
        (30, 30, 32),
        (15, 15, 32),
        (13, 13, 64),
        (6, 6, 64),
        (4, 4, 64),
    ]


def test_summary_table(capsys):
    model = Sequential(
        [
            L.Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(10, activation="softmax"),
        ],
        name="tiny",
    )
    model.summary()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == 'Model: "tiny"'
    header = lines[2]
    assert header.startswith("Layer (type)") and header.index("Output Shape") == 29
    assert header.index("Param #") == 55
    row = next(ln for ln in lines if ln.startswith(model.layers[0].name + " (Conv2D)"))
    assert "(None, 26, 26, 32)" in row and row.rstrip().endswith("320")
    assert "(None, 5408)" in out and "54,090" in out
    assert "Total params: 54,410" in out and "Non-trainable params: 0" in out


def test_build_add_pop_and_errors():
    model = Sequential()
    model.add(L.Conv2D(4, 3))
    with pytest.raises(ValueError, match="not yet been built"):
        model.summary()
    with pytest.raises(AttributeError):
        _ = model.output_shape
    model.add(L.Flatten())
    model.add(L.Dense(3))
    model.build((None, 8, 8, 2))
    assert model.built and model.output_shape == (None, 3)
    assert model.input_shape == (None, 8, 8, 2)
    assert model.count_params() == 3 * 3 * 2 * 4 + 4 + 6 * 6 * 4 * 3 + 3
    assert isinstance(model.layers[1], L.Flatten) and model.get_layer(model.layers[2].name) is model.layers[2]
    model.add(L.Dense(2))  # built on add once the input shape is known
    assert model.layers[-1].built and model.output_shape == (None, 2)
    assert isinstance(model.pop(), L.Dense) and model.output_shape == (None, 3)
    with pytest.raises(ValueError, match="unique names"):
        model.add(L.Dense(2, name=model.layers[0].name))
    with pytest.raises(TypeError):
        model.add("dense")


def test_lazy_build_from_data():
    model = Sequential([L.Flatten(), L.Dense(2)])
    assert not model.built
    y = model.predict(np.zeros((3, 4, 4, 1)))
    assert y.shape == (3, 2) and model.built and model.count_params() == 34


def test_get_set_weights_and_frozen_counts():
    model = Sequential([L.Dense(4, input_shape=(3,)), L.BatchNormalization(), L.Dense(2)])
    w = model.get_weights()
    assert [a.shape for a in w] == [(3, 4), (4,), (4,), (4,), (4,), (4,), (4, 2), (2,)]
    new = [np.full_like(a, i) for i, a in enumerate(w)]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="length 7"):
        model.set_weights(new[:-1])
    with pytest.raises(ValueError, match="shape"):
        model.set_weights(new[:-1] + [np.zeros(3)])
    assert model.count_params() - model.count_trainable_params() == 8  # moving mean / variance
    model.layers[0].trainable = False
    assert model.count_trainable_params() == 4 + 4 + 10
    assert "Non-trainable params: 24" in model.summary_text()
    assert all(not k.startswith(model.layers[0].name + "/") for k, _, _ in model.trainable_pairs())


# ------------------------------------------------------------------ gradients through the engine


def _ce_from_probs(y, p):
    return -np.log(p[np.arange(len(y)), y]).mean()


@pytest.mark.parametrize("head", ["dense_softmax", "activation_softmax", "no_softmax_mse"])
def test_model_gradient_finite_differences(head):
    dt = "float64"
    layers = [
        L.Conv2D(
            2, 3, activation="tanh", kernel_regularizer=regularizers.l2(0.01), dtype=dt, input_shape=(5, 5, 1)
        ),
        L.Flatten(dtype=dt),
    ]
    if head == "dense_softmax":
        layers.append(L.Dense(3, activation="softmax", dtype=dt))
    elif head == "activation_softmax":
        layers += [L.Dense(3, dtype=dt), L.Activation("softmax", dtype=dt)]
    else:
        layers.append(L.Dense(3, activation="sigmoid", dtype=dt))
    model = Sequential(layers)
    model.compile("sgd", "mse" if head == "no_softmax_mse" else "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5, 5, 1))
    y = np.array([0, 2, 1, 2])
    target = np.eye(3)[y]
    plan = model._plan()
    fused = head != "no_softmax_mse"
    assert (plan.softmax_fusion() is not None) == fused

    out = plan.forward([x], training=True, logits=fused)[0]
    if fused:
        _, dy = model.loss.value_and_gradient_from_logits(y, out)
    else:
        _, dy = model.loss.value_and_gradient(target, out)
    plan.backward([dy], logits=fused)
    analytic = {k: g.copy() for k, _, g in model.trainable_pairs()}

    def total_loss():
        p = model.predict(x)
        data = _ce_from_probs(y, p) if fused else losses.mse(target, p)
        return data + sum(l.regularization_loss() for l in model.layers)

    eps = 1e-6
    for key, param, _ in model.trainable_pairs():
        flat = param.reshape(-1)
        for i in range(0, flat.size, max(1, flat.size // 7)):
            old = flat[i]
            flat[i] = old + eps
            fp = total_loss()
            flat[i] = old - eps
            fm = total_loss()
            flat[i] = old
            assert analytic[key].reshape(-1)[i] == pytest.approx((fp - fm) / (2 * eps), rel=1e-5, abs=1e-8), (
                key
            )
    # the predict path still returns probabilities
    if fused:
        np.testing.assert_allclose(model.predict(x).sum(axis=1), 1.0)


def test_frozen_prefix_skips_backward():
    model = Sequential([L.Conv2D(2, 3, input_shape=(6, 6, 1)), L.Flatten(), L.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.layers[0].trainable = False
    model.train_on_batch(np.ones((2, 6, 6, 1)), np.array([0, 1]))
    assert model.layers[2].need_input_grad is False  # nothing trainable upstream of the head


# ------------------------------------------------------------------ save / load


def _trained_model(tmp_path=None):
    model = Sequential(
        [
            L.Conv2D(3, 3, activation="relu", input_shape=(8, 8, 1)),
            L.BatchNormalization(),
            L.MaxPooling2D(),
            L.Dropout(0.2),
            L.Flatten(),
            L.Dense(4, activation="softmax", kernel_regularizer=regularizers.l2(1e-3)),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((24, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 4, 24)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=0)
    return model, x, y


def test_save_load_round_trip(tmp_path):
    model, x, y = _trained_model()
    path = tmp_path / "model.npz"
    model.save(path)
    back = load_model(path)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert [l.name for l in back.layers] == [l.name for l in model.layers]
    assert back.count_params() == model.count_params()
    assert type(back.optimizer).__name__ == "Adam" and back.optimizer.learning_rate == pytest.approx(1e-3)
    assert back.loss.name == "sparse_categorical_crossentropy" and back.compiled_metrics == ["accuracy"]
    back.fit(x, y, epochs=1, verbose=0)  # compiled and trainable as loaded
    # no pickle anywhere: the file opens with allow_pickle=False and holds plain arrays
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    # a new layer after loading does not clash with loaded names
    back.pop()
    back.add(L.Dense(4, activation="softmax"))
    assert len({l.name for l in back.layers}) == len(back.layers)


def test_save_weights_load_weights(tmp_path):
    model, x, _ = _trained_model()
    model.save_weights(tmp_path / "w.npz")
    initializers.set_seed(1)
    other, _, _ = _trained_model()
    assert not np.array_equal(other.predict(x), model.predict(x))
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="weights only"):
        load_model(tmp_path / "w.npz")


def test_atomic_save_keeps_old_file(tmp_path, monkeypatch):
    model, x, _ = _trained_model()
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()
    expected = model.predict(x)

    def crash(fileobj, arrays):
        fileobj.write(b"PK\x03\x04 partial archive")
        raise RuntimeError("simulated crash mid-write")

    monkeypatch.setattr(saving, "_write_npz", crash)
    model.layers[-1].params["bias"] += 1.0
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    np.testing.assert_array_equal(load_model(path).predict(x), expected)


def test_missing_truncated_corrupt_and_foreign_files(tmp_path):
    model, _, _ = _trained_model()
    path = tmp_path / "model.npz"
    model.save(path)
    raw = path.read_bytes()
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        load_model(tmp_path / "nothere.npz")
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="trunc.npz"):
        load_model(trunc)
    corrupt = tmp_path / "corrupt.npz"
    data = bytearray(raw)
    # weight 6 is the Dense kernel (27 x 4 floats): skip its local header name, zip64 extra field and
    # .npy header, then flip a byte of the array data
    mid = raw.index(b"weight_00006.npy") + 300
    data[mid] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt.npz"):
        load_model(corrupt)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match="garbage.npz"):
        load_model(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastconv one"):
        load_model(foreign)


def test_mismatched_weights_file(tmp_path):
    model, _, _ = _trained_model()
    model.save_weights(tmp_path / "w.npz")
    other = Sequential([L.Conv2D(5, 3, input_shape=(8, 8, 1)), L.Flatten(), L.Dense(4)])
    with pytest.raises(ValueError, match=r"w\.npz.*does not match"):
        other.load_weights(tmp_path / "w.npz")
    same_count = Sequential(
        [
            L.Conv2D(3, 3, input_shape=(8, 8, 1)),
            L.BatchNormalization(),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(5),
        ]
    )
    with pytest.raises(ValueError, match=r"w\.npz' does not match the model: weight 6"):
        same_count.load_weights(tmp_path / "w.npz")


def test_reserve_name_advances_the_auto_name_counter():
    from fastconv.layers.base import reserve_name

    L.reset_name_counters()
    reserve_name("dense_3")
    assert L.Dense(2).name == "dense_4"
    reserve_name("dense_1")  # never moves the counter back
    assert L.Dense(2).name == "dense_5"
    reserve_name("conv2d")
    assert L.Conv2D(2, 3).name == "conv2d_1"
    reserve_name("stage1_block1_conv")  # a hand-written name only reserves itself
    assert L.Conv2D(2, 3).name == "conv2d_2"


def test_loaded_names_are_reserved_for_a_new_head(tmp_path):
    L.reset_name_counters()
    model = Sequential([L.Dense(4, input_shape=(3,)), L.Dense(4), L.Dense(2, activation="softmax")])
    assert [l.name for l in model.layers] == ["dense", "dense_1", "dense_2"]
    model.save(tmp_path / "m.npz")
    L.reset_name_counters()  # a fresh session
    loaded = load_model(tmp_path / "m.npz")
    loaded.pop()
    loaded.add(L.Dense(3, activation="softmax"))  # would clash with "dense" without reserve_name
    assert loaded.layers[-1].name == "dense_3"


def test_model_registry_knows_sequential_and_graph_models():
    import fastconv

    # Models join the registry the layers use; saving resolves class names through it.
    assert L.get_registered_layer("Sequential") is Sequential is fastconv.Sequential
    assert L.get_registered_layer("Model") is fastconv.Model
    assert L.get_registered_layer("Functional") is fastconv.Model
    assert saving._model_class("Sequential", "x.npz") is Sequential
    assert saving._model_class("Functional", "x.npz") is fastconv.Model
    with pytest.raises(ValueError, match="unknown model class 'Nope'"):
        saving._model_class("Nope", "x.npz")
    with pytest.raises(ValueError, match="unknown model class 'Dense'"):  # a layer is no model
        saving._model_class("Dense", "x.npz")
