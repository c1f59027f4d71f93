"""Learning-rate callbacks, TerminateOnNaN, BackupAndRestore, and training that resumes after
save/load. The learning rates History records are compared with Keras 3.15.1's (computed offline,
JAX backend, same callbacks and arguments; stored here)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastconv as fc
from fastconv import callbacks as C
from fastconv import layers as L
from fastconv import optimizers

x = (np.sin(np.arange(40).reshape(10, 4) * 0.37) * 2).astype("float32")
y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 1])
W = (np.cos(np.arange(12).reshape(4, 3) * 0.9) * 0.5).astype("float32")
b = np.array([0.1, -0.2, 0.05], "float32")

# Keras 3.15.1: history["learning_rate"] and the history keys for the same fits.
KERAS_LRS_HISTORY_LR = [0.1, 0.05, 0.025, 0.0125]
KERAS_LRS_KEYS = ["learning_rate", "loss"]
KERAS_PLATEAU_HISTORY_LR = [0.1, 0.1, 0.05, 0.025, 0.02, 0.02]
KERAS_PLAIN_KEYS = ["loss"]


def clf(opt=None):
    m = fc.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
    m.set_weights([W, b])
    m.compile(optimizer=opt or optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return m


def test_learning_rate_scheduler_matches_keras_history():
    h = clf().fit(x, y, batch_size=5, epochs=4, shuffle=False, verbose=0,
                  callbacks=[C.LearningRateScheduler(lambda e, lr: lr * 0.5 if e > 0 else lr)])
    np.testing.assert_allclose(h.history["learning_rate"], KERAS_LRS_HISTORY_LR, rtol=1e-6)
    assert sorted(h.history) == KERAS_LRS_KEYS


def test_learning_rate_scheduler_old_one_argument_api_and_verbose(capsys):
    m = clf()
    m.fit(x, y, epochs=2, verbose=0, callbacks=[C.LearningRateScheduler(lambda e: 0.01 * (e + 1), verbose=1)])
    assert m.optimizer.learning_rate == pytest.approx(0.02)
    assert "LearningRateScheduler setting learning rate to 0.02" in capsys.readouterr().out
    with pytest.raises(ValueError, match="should be a float"):
        clf().fit(x, y, epochs=1, verbose=0, callbacks=[C.LearningRateScheduler(lambda e, lr: "fast")])


def test_reduce_lr_on_plateau_matches_keras_history():
    cb = C.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0, cooldown=1, min_lr=0.02)
    h = clf().fit(x, y, batch_size=5, epochs=6, shuffle=False, verbose=0, callbacks=[cb])
    np.testing.assert_allclose(h.history["learning_rate"], KERAS_PLATEAU_HISTORY_LR, rtol=1e-6)


def test_reduce_lr_on_plateau_arguments():
    with pytest.raises(ValueError, match="factor >= 1.0"):
        C.ReduceLROnPlateau(factor=1.0)
    cb = C.ReduceLROnPlateau()
    assert (cb.monitor, cb.factor, cb.patience, cb.min_delta, cb.cooldown, cb.min_lr) == (
        "val_loss", 0.1, 10, 1e-4, 0, 0.0)
    assert C.ReduceLROnPlateau(monitor="val_accuracy").mode == "max"


def test_no_learning_rate_key_without_lr_callbacks_as_in_keras():
    h = clf().fit(x, y, batch_size=5, epochs=2, verbose=0)
    assert sorted(h.history) == KERAS_PLAIN_KEYS


def test_learning_rate_is_readable_and_settable_on_the_compiled_model():
    m = clf(optimizers.Adam(0.003))
    assert m.optimizer.learning_rate == pytest.approx(0.003)
    m.optimizer.learning_rate = 0.0005
    m.fit(x, y, epochs=1, verbose=0)
    assert m.optimizer.learning_rate == pytest.approx(0.0005)
    m.compile(loss="sparse_categorical_crossentropy")  # Keras's default optimizer
    assert type(m.optimizer).__name__ == "RMSprop"
    m.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    assert m.optimizer.learning_rate == pytest.approx(0.001)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_terminate_on_nan_stops_after_the_batch(capsys):
    m = clf(optimizers.SGD(1e30))
    seen = []
    h = m.fit(x * 1e6, y, batch_size=2, epochs=3, shuffle=False, verbose=0,
              callbacks=[C.TerminateOnNaN(), C.LambdaCallback(on_train_batch_end=lambda b_, logs: seen.append(b_))])
    assert len(h.epoch) == 1 and len(seen) < 5
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        clf(optimizers.SGD(1e30)).fit(x * 1e6, y, batch_size=2, epochs=3, verbose=0,
                                      callbacks=[C.TerminateOnNaN(raise_error=True)])


def _fit(model, epochs, **kw):
    return model.fit(x, y, batch_size=4, epochs=epochs, shuffle=False, verbose=0, **kw)


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta", "adamax", "nadam"])
def test_fit_two_epochs_equals_fit_save_load_fit(tmp_path, name):
    """The optimizer state (slots, step count) is saved with the model: resuming after load_model gives
    the weights of an uninterrupted run (float32 tolerance)."""
    def make():
        return clf(optimizers.SGD(0.1, momentum=0.9, nesterov=True) if name == "sgd" else optimizers.get(name))

    ref = make()
    _fit(ref, 2)
    first = make()
    _fit(first, 1)
    path = tmp_path / "m.npz"
    first.save(path)
    back = fc.load_model(path)
    assert back.optimizer.iterations == first.optimizer.iterations == 3
    _fit(back, 1)
    for a, c in zip(ref.get_weights(), back.get_weights()):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)


def test_schedule_resumes_after_load(tmp_path):
    def make():
        return clf(optimizers.Adam(optimizers.schedules.ExponentialDecay(0.05, 2, 0.5)))

    ref = make()
    _fit(ref, 2)
    first = make()
    _fit(first, 1)
    first.save(tmp_path / "m.npz")
    back = fc.load_model(tmp_path / "m.npz")
    assert isinstance(back.optimizer._learning_rate, optimizers.schedules.ExponentialDecay)
    assert back.optimizer.learning_rate == pytest.approx(first.optimizer.learning_rate)
    _fit(back, 1)
    for a, c in zip(ref.get_weights(), back.get_weights()):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)


def test_load_weights_restores_the_optimizer_state_of_the_same_class(tmp_path):
    m = clf(optimizers.Adam(0.01))
    _fit(m, 1)
    m.save_weights(tmp_path / "w.npz")
    fresh = clf(optimizers.Adam(0.01))
    fresh.load_weights(tmp_path / "w.npz")
    assert fresh.optimizer.iterations == 3
    other = clf(optimizers.SGD(0.1))
    other.load_weights(tmp_path / "w.npz")  # another optimizer class: its state is left alone
    assert other.optimizer.iterations == 0


class _Boom(C.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("power cut")


def test_backup_and_restore_resumes_an_interrupted_fit(tmp_path):
    backup = tmp_path / "backup"
    ref = clf(optimizers.Adam(0.01))
    h_ref = _fit(ref, 4)

    m = clf(optimizers.Adam(0.01))
    with pytest.raises(RuntimeError, match="power cut"):
        _fit(m, 4, callbacks=[C.BackupAndRestore(backup), _Boom(2)])
    assert os.path.exists(backup / "training_metadata.json")  # kept: training did not finish

    resumed = clf(optimizers.Adam(0.01))  # a fresh process: same model, initial weights
    h = _fit(resumed, 4, callbacks=[C.BackupAndRestore(backup)])
    assert h.epoch == [2, 3]
    np.testing.assert_allclose(h.history["loss"], h_ref.history["loss"][2:], rtol=1e-6)
    for a, c in zip(ref.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)
    assert resumed.optimizer.iterations == ref.optimizer.iterations
    assert not backup.exists()  # delete_checkpoint=True after a normal end


def test_backup_and_restore_batch_frequency_and_files(tmp_path):
    backup = tmp_path / "b"
    m = clf()
    _fit(m, 2, callbacks=[C.BackupAndRestore(backup, save_freq=2, delete_checkpoint=False)])
    files = sorted(os.listdir(backup))
    assert files[-1] == "training_metadata.json" and len(files) == 2  # one consistent backup kept
    with pytest.raises(ValueError, match="save_freq"):
        C.BackupAndRestore(backup, save_freq="batch")
    with pytest.raises(ValueError, match="backup_dir"):
        C.BackupAndRestore("")
