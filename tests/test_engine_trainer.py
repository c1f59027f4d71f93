"""fit / evaluate / predict: a short run on the bundled MNIST that must learn, History and the
progress bar, validation_split, label forms, generators, frozen layers, callbacks (EarlyStopping,
ModelCheckpoint, CSVLogger) and Ctrl-C."""

from __future__ import annotations

import csv
import os
import signal

import numpy as np
import pytest

from fastconv import initializers, optimizers
from fastconv import layers as L
from fastconv.augment import ImageAugmenter
from fastconv.callbacks import CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint
from fastconv.datasets import load_mnist
from fastconv import Sequential
from fastconv.saving import load_model
from fastconv.utils import to_categorical


@pytest.fixture(autouse=True)
def _seed():
    initializers.set_seed(0)
    L.reset_name_counters()


@pytest.fixture(scope="module")
def mnist():
    (x, y), (xt, yt) = load_mnist()
    return (x[..., None] / np.float32(255)), y, (xt[..., None] / np.float32(255)), yt


def small_cnn(input_shape=(28, 28, 1), filters=8):
    return Sequential(
        [
            L.Conv2D(filters, 3, activation="relu", input_shape=input_shape),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(10, activation="softmax"),
        ]
    )


def tiny_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 6, 6, 1)).astype(np.float32)
    x[np.arange(n), y * 2, 2, 0] += 2.0  # learnable: class k lights pixel (2k, 2)
    return x, y


def tiny_model():
    return Sequential(
        [
            L.Conv2D(4, 3, activation="relu", input_shape=(6, 6, 1)),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ]
    )


def test_short_mnist_run_learns(mnist):
    """2,000 bundled MNIST images, 1 epoch, Adam 3e-3, batch 32: validation accuracy > 0.80
    (about 0.86 with these seeds)."""
    x, y, xt, yt = mnist
    model = small_cnn()
    model.compile(
        optimizer=optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    hist = model.fit(
        x[:2000], y[:2000], batch_size=32, epochs=1, validation_data=(xt[:1000], yt[:1000]), verbose=0, seed=0
    )
    assert hist.history["val_accuracy"][0] > 0.80
    loss, acc = model.evaluate(xt[:1000], yt[:1000], verbose=0)
    assert acc == pytest.approx(hist.history["val_accuracy"][0])
    assert loss == pytest.approx(hist.history["val_loss"][0], rel=1e-5)


def test_history_and_progress_bar(capsys):
    x, y = tiny_data()
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    hist = model.fit(x, y, epochs=3, batch_size=16, validation_data=(x[:16], y[:16]), verbose=1)
    assert hist.epoch == [0, 1, 2] and model.history is hist
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in hist.history.values())
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    out = capsys.readouterr().out
    assert "Epoch 1/3" in out and "Epoch 3/3" in out
    assert "4/4 [==============================]" in out
    assert " - loss: " in out and " - accuracy: " in out and " - val_accuracy: " in out
    model.fit(x, y, epochs=2, batch_size=16, verbose=2)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("4/4 - ")]
    assert len(lines) == 2 and "step - loss: " in lines[0]
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_progbar_line_format():
    import io

    from fastconv.engine.progbar import Progbar

    stream = io.StringIO()
    stream.isatty = lambda: True
    bar = Progbar(125, stream=stream, interval=0)
    bar.update(12, [("loss", 0.4), ("accuracy", 0.9)])
    line = stream.getvalue().strip("\r")
    assert line.startswith(" 12/125 [=>............................] - ETA: ")  # int(30 * 12 / 125) = 2
    assert line.endswith(" - loss: 0.4000 - accuracy: 0.9000")


def test_validation_split_is_the_last_fraction():
    x, y = tiny_data(40)
    model = tiny_model()
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    hist = model.fit(x, y, epochs=1, batch_size=8, validation_split=0.25, verbose=0)
    loss, acc = model.evaluate(x[30:], y[30:], verbose=0)
    assert hist.history["val_loss"][0] == pytest.approx(loss)
    assert hist.history["val_accuracy"][0] == pytest.approx(acc)


@pytest.mark.parametrize("form", ["col", "onehot"])
def test_label_forms_train(form):
    x, y = tiny_data()
    labels = y[:, None] if form == "col" else to_categorical(y, 3)
    model = tiny_model()
    model.compile(
        "adam",
        "categorical_crossentropy" if form == "onehot" else "sparse_categorical_crossentropy",
        ["accuracy"],
    )
    hist = model.fit(x, labels, epochs=3, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


def test_mse_loss_trains():
    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizers.SGD(0.5), "mse", ["accuracy"])
    hist = model.fit(x, to_categorical(y, 3), epochs=4, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


def test_same_seed_same_weights():
    x, y = tiny_data()
    weights = []
    for _ in range(2):
        initializers.set_seed(5)
        model = tiny_model()
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=11)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_steps_per_epoch_and_generators():
    x, y = tiny_data(64)
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    seen = []
    cb = LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    model.fit(x, y, batch_size=16, epochs=2, steps_per_epoch=3, verbose=0, callbacks=[cb])
    assert seen == [0, 1, 2, 0, 1, 2]
    flow = ImageAugmenter(rotation_range=5, width_shift_range=0.1, seed=0).flow(x, y, batch_size=16)
    hist = model.fit(flow, epochs=2, validation_data=(x[:16], y[:16]), verbose=0)  # len(flow) = 4 steps
    assert len(hist.epoch) == 2 and "val_accuracy" in hist.history
    hist = model.fit(flow, steps_per_epoch=2, epochs=1, verbose=0)
    assert len(hist.epoch) == 1
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    hist = model.fit(iter(batches), epochs=1, verbose=0)  # a plain one-shot iterator
    assert len(hist.epoch) == 1


def test_predict_and_evaluate_in_batches():
    x, y = tiny_data(50)
    model = tiny_model()
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    full = model.predict(x, batch_size=64)
    np.testing.assert_allclose(model.predict(x, batch_size=7), full, rtol=1e-6)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-5)
    res = model.evaluate(x, y, batch_size=7, verbose=0)
    assert len(res) == 2 and res[1] == pytest.approx((full.argmax(1) == y).mean())
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}
    model2 = tiny_model()
    with pytest.raises(RuntimeError, match="compile"):
        model2.fit(x, y)


def test_frozen_layer_unchanged_and_unfrozen_without_recompile():
    x, y = tiny_data()
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    conv, dense = model.layers[0], model.layers[2]
    conv.trainable = False
    assert model.count_trainable_params() == dense.count_params()
    frozen = conv.get_weights()
    head = dense.get_weights()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(conv.get_weights(), frozen):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(dense.get_weights()[0], head[0])
    conv.trainable = True  # takes effect without compile()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert not np.array_equal(conv.get_weights()[0], frozen[0])


def _feeder(values, key="score"):
    """A callback placed before the one under test that writes a scripted metric into the logs."""
    return LambdaCallback(on_epoch_end=lambda epoch, logs: logs.__setitem__(key, values[epoch]))


def test_early_stopping_patience_and_restore():
    x, y = tiny_data()
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    snaps = []
    snap = LambdaCallback(on_epoch_end=lambda e, logs: snaps.append(model.get_weights()))
    stop = EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    hist = model.fit(
        x,
        y,
        epochs=10,
        batch_size=16,
        verbose=0,
        callbacks=[_feeder([1.0, 0.5, 0.6, 0.7, 0.4, 0.3]), snap, stop],
    )
    assert hist.epoch == [0, 1, 2, 3] and stop.stopped_epoch == 3 and stop.best_epoch == 1
    for a, b in zip(model.get_weights(), snaps[1]):
        np.testing.assert_array_equal(a, b)
    stop2 = EarlyStopping(monitor="score", patience=1, min_delta=0.2, mode="min")
    hist = model.fit(x, y, epochs=10, verbose=0, callbacks=[_feeder([1.0, 0.9, 0.85, 0.1]), stop2])
    assert hist.epoch == [0, 1]  # 0.9 is not an improvement by more than 0.2


def test_model_checkpoint_best_only(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    snaps = []
    snap = LambdaCallback(on_epoch_end=lambda e, logs: snaps.append(model.get_weights()))
    pattern = ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.npz"), monitor="score", save_best_only=True)
    best = ModelCheckpoint(tmp_path / "best.npz", monitor="score", save_best_only=True)
    every = ModelCheckpoint(tmp_path / "last.weights.npz", save_weights_only=True)
    model.fit(
        x,
        y,
        epochs=4,
        batch_size=16,
        verbose=0,
        callbacks=[_feeder([3.0, 2.0, 2.5, 2.2]), snap, pattern, best, every],
    )
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "ckpt-01.npz", "ckpt-02.npz", "last.weights.npz"]
    for a, b in zip(load_model(tmp_path / "best.npz").get_weights(), snaps[1]):
        np.testing.assert_array_equal(a, b)
    other = tiny_model()
    other.load_weights(tmp_path / "last.weights.npz")
    for a, b in zip(other.get_weights(), snaps[3]):
        np.testing.assert_array_equal(a, b)
    acc = ModelCheckpoint(tmp_path / "acc.npz", monitor="val_accuracy", save_best_only=True)
    assert acc.mode == "max"


def test_csv_logger(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, callbacks=[CSVLogger(path)])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}


def test_keyboard_interrupt_keeps_last_finished_step(capsys):
    x, y = tiny_data(64)
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    snaps = {}

    def on_batch_end(batch, logs):
        snaps[batch] = model.get_weights()
        if batch == 2:
            raise KeyboardInterrupt

    hist = model.fit(
        x, y, epochs=3, batch_size=8, verbose=1, callbacks=[LambdaCallback(on_train_batch_end=on_batch_end)]
    )
    assert hist.interrupted and hist.epoch == []
    for a, b in zip(model.get_weights(), snaps[2]):
        np.testing.assert_array_equal(a, b)
    assert "interrupted" in capsys.readouterr().out


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler, as a foreground process has it: a job started in the background
    by a non-interactive shell (nohup, `cmd &`) inherits SIGINT ignored, and fit then rightly leaves
    it alone, so the Ctrl-C test would test nothing."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_signal_finishes_the_step(python_sigint_handler):
    x, y = tiny_data(64)
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    snaps = {}

    def on_batch_end(batch, logs):
        if batch == 1:
            os.kill(os.getpid(), signal.SIGINT)  # handled: the step is already finished
        snaps[batch] = model.get_weights()

    hist = model.fit(
        x, y, epochs=2, batch_size=8, verbose=0, callbacks=[LambdaCallback(on_train_batch_end=on_batch_end)]
    )
    assert hist.interrupted and max(snaps) == 1
    for a, b in zip(model.get_weights(), snaps[1]):
        np.testing.assert_array_equal(a, b)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


# ---------------------------------------------------------------------------
# mean IoU
# ---------------------------------------------------------------------------


def _scores(pred, k):
    """One-hot class scores (..., k) whose argmax is ``pred``."""
    return np.eye(k, dtype=np.float32)[pred]


def test_mean_iou_hand_computed():
    from fastconv import metrics

    # labels / predictions of one 2x3 image, 4 classes (class 3 appears in neither: skipped)
    t = np.array([[[0, 0, 0], [1, 1, 2]]])
    p = np.array([[[0, 0, 1], [1, 1, 1]]])
    # class 0: TP 2, FP 0, FN 1 -> 2/3; class 1: TP 2, FP 2, FN 0 -> 1/2; class 2: TP 0, FN 1 -> 0
    m = metrics.get("mean_iou")
    state = m.update(t, _scores(p, 4))
    np.testing.assert_array_equal(state[0], [2, 2, 0, 0])  # intersections
    np.testing.assert_array_equal(state[1], [3, 4, 1, 0])  # unions
    assert m.result(state) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # label forms: (N, H, W, 1) and one-hot give the same; counts add over batches
    assert m(t[..., None], _scores(p, 4)) == pytest.approx(7 / 18)
    assert m(_scores(t, 4), _scores(p, 4)) == pytest.approx(7 / 18)
    a, b = m.update(t[:, :1], _scores(p[:, :1], 4)), m.update(t[:, 1:], _scores(p[:, 1:], 4))
    assert m.result(metrics.merge(metrics.merge(None, a), b)) == pytest.approx(7 / 18)
    assert (m.result(a) + m.result(b)) / 2 == pytest.approx(1 / 3)  # a mean of batch IoUs differs
    # perfect and disjoint predictions, binary sigmoid output (..., 1)
    y = np.array([[0, 1], [1, 1]])
    assert m(y, _scores(y, 2)) == 1.0 and m(y, _scores(1 - y, 2)) == 0.0
    assert m(np.array([0, 0, 1, 1]), np.array([[0.2], [0.7], [0.9], [0.6]])) == pytest.approx(
        (1 / 2 + 2 / 3) / 2
    )
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        m(np.array([0, 2]), _scores(np.array([0, 1]), 2))


def test_mean_iou_in_compile_fit_evaluate():
    from fastconv import metrics
    from fastconv.models import digit_masks

    rng = np.random.default_rng(0)
    x = rng.random((24, 8, 8, 1), dtype=np.float32)
    y = digit_masks(x, 0.5)
    model = Sequential(
        [
            L.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
            L.Conv2D(2, 1, activation="softmax"),
        ]
    )
    model.compile(optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy", "mean_iou"])
    hist = model.fit(x, y, batch_size=7, epochs=4, validation_data=(x, y), verbose=0)
    assert set(hist.history) == {"loss", "accuracy", "mean_iou", "val_loss", "val_accuracy", "val_mean_iou"}
    assert hist.history["val_mean_iou"][-1] > hist.history["val_mean_iou"][0]
    _, acc, iou = model.evaluate(x, y, batch_size=5, verbose=0)  # counts summed over uneven batches
    pred = model.predict(x)
    assert iou == pytest.approx(metrics.MeanIoU()(y, pred))
    assert acc == pytest.approx(np.mean(pred.argmax(-1) == y))
    assert iou == pytest.approx(hist.history["val_mean_iou"][-1])


def test_digit_masks_threshold():
    from fastconv.models import digit_masks

    img = np.array([[[0, 127, 128, 255]]], np.uint8)
    np.testing.assert_array_equal(digit_masks(img), [[[0, 0, 1, 1]]])
    np.testing.assert_array_equal(digit_masks(img[..., None] / 255.0, 0.3), [[[0, 1, 1, 1]]])
