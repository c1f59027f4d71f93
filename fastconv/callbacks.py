"""Training callbacks (Keras names and semantics): History, ModelCheckpoint, EarlyStopping, CSVLogger,
LearningRateScheduler, ReduceLROnPlateau, TerminateOnNaN, BackupAndRestore, TensorBoard.

A callback sees ``self.model`` (set by ``fit``) and ``self.params`` (``epochs``,
``steps``, ``verbose``) and gets ``logs`` dicts: per batch the running
``loss`` / ``accuracy`` of the epoch so far, per epoch also ``val_loss`` /
``val_accuracy``. Setting ``model.stop_training = True`` ends ``fit`` after the
current epoch (after the current batch when set in a batch hook, as in Keras 3).

``LearningRateScheduler`` and ``ReduceLROnPlateau`` put the optimizer's
``learning_rate`` into the epoch logs (so ``History`` and ``CSVLogger`` placed
after them record it), exactly when Keras 3 does.

Examples
--------
>>> stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
>>> # model.fit(x, y, validation_split=0.2, epochs=50, callbacks=[stop])
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
import warnings

import numpy as np

from fastconv.utils import atomic_write

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TensorBoard",
    "TerminateOnNaN",
]


class Callback:
    """Base class; override the hooks you need.

    ``root_only``: in data-parallel training (``fastconv.distributed``) the callback runs on
    rank 0 only (True for the ones that write files); the others run on every rank and see the
    same logs there (losses and metrics over every rank's samples).
    """

    root_only = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...


class LambdaCallback(Callback):
    """Callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise ValueError(f"LambdaCallback: unknown hook {name!r}.")
            setattr(self, name, fn)


class CallbackList:
    """Calls every callback's hook in order; batch hooks are skipped when no callback overrides them."""

    def __init__(self, callbacks, model=None, params=None):
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances. Received: {cb!r}")
            if model is not None:
                cb.set_model(model)
            if params is not None:
                cb.set_params(params)
        self._batch_begin = [cb for cb in self.callbacks if _overrides(cb, "on_train_batch_begin")]
        self._batch_end = [cb for cb in self.callbacks if _overrides(cb, "on_train_batch_end")]

    @property
    def has_batch_hooks(self) -> bool:
        return bool(self._batch_begin or self._batch_end)

    def on_train_batch_begin(self, batch, logs=None):
        for cb in self._batch_begin:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        for cb in self._batch_end:
            cb.on_train_batch_end(batch, logs)

    def __getattr__(self, name):
        if not name.startswith("on_"):
            raise AttributeError(name)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, name)(*args, **kwargs)

        return call


def _overrides(cb, name) -> bool:
    return name in vars(cb) or getattr(type(cb), name, None) is not getattr(Callback, name)


class History(Callback):
    """Records epoch logs: ``history.history = {"loss": [...], "accuracy": [...], ...}``, ``history.epoch``.

    ``fit`` returns it. ``interrupted`` is True when training ended on Ctrl-C.
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.interrupted = False

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}
        self.interrupted = False

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"


def _resolve_mode(mode, monitor, who):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f'{who}: mode must be "auto", "min" or "max". Received: mode={mode!r}')
    if mode == "auto":
        m = monitor.lower()
        mode = "max" if ("acc" in m or m.endswith("auc") or "iou" in m) else "min"
    return mode


class ModelCheckpoint(Callback):
    """Save the model (or its weights) at the end of every epoch, or only when ``monitor`` improves.

    Parameters
    ----------
    filepath : str
        May hold ``str.format`` fields filled from the epoch (1-based) and the logs,
        e.g. ``"ckpt-{epoch:02d}-{val_loss:.2f}.npz"``.
    monitor : str, default "val_loss"
    save_best_only : bool, default False
        Save only when ``monitor`` improves on the best value so far.
    save_weights_only : bool, default False
        Use ``model.save_weights`` instead of ``model.save``.
    mode : {"auto", "min", "max"}
        "auto" maximises metrics named like accuracy, minimises the rest.
    verbose : int
    """

    root_only = True  # writes files: rank 0 only in data-parallel training

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        verbose=0,
        save_best_only=False,
        save_weights_only=False,
        mode="auto",
    ):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _resolve_mode(mode, monitor, "ModelCheckpoint")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved: list[str] = []

    def _better(self, current) -> bool:
        return current < self.best if self.mode == "min" else current > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                import warnings

                warnings.warn(
                    f"ModelCheckpoint: can save best model only with {self.monitor} available; "
                    f"available keys: {sorted(logs)}. Skipping.",
                    stacklevel=2,
                )
                return
            if not self._better(current):
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                    f"saving model to {path}"
                )
            self.best = current
        elif self.verbose:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        self.saved.append(path)


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras semantics).

    Parameters
    ----------
    monitor : str, default "val_loss"
    min_delta : float, default 0
        An improvement must exceed this.
    patience : int, default 0
    mode : {"auto", "min", "max"}
    baseline : float, optional
    restore_best_weights : bool, default False
        On stopping, load the weights of the best epoch.
    start_from_epoch : int, default 0
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _resolve_mode(mode, monitor, "EarlyStopping")
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = 0

    def _is_improvement(self, value, reference) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None or epoch < self.start_from_epoch:
            if current is None:
                import warnings

                warnings.warn(
                    f"EarlyStopping: metric '{self.monitor}' is not available. Available metrics: "
                    f"{sorted(logs or {})}",
                    stacklevel=2,
                )
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                if self.verbose:
                    print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


class CSVLogger(Callback):
    """Append one CSV row per epoch (``epoch`` then the log keys, sorted) to ``filename``."""

    root_only = True  # writes files: rank 0 only in data-parallel training

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115 - closed in on_train_end
        self._append_header = not exists
        self.keys = None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch", *self.keys], delimiter=self.sep)
            if self._append_header:
                self._writer.writeheader()
        row = {"epoch": epoch}
        for k in self.keys:
            v = logs.get(k, "NA")
            row[k] = repr(float(v)) if isinstance(v, (float, np.floating)) else v
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of every epoch to ``schedule(epoch, lr)``
    (``epoch`` 0-based, ``lr`` the current rate; a one-argument ``schedule(epoch)`` works too).
    Adds ``learning_rate`` to the epoch logs.

    Examples
    --------
    >>> cb = LearningRateScheduler(lambda epoch, lr: lr if epoch < 10 else lr * 0.9)
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(opt.learning_rate))
        except TypeError:  # the old one-argument API
            lr = self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, (float, int, np.floating, np.integer)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {lr}")
        opt.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience``
    epochs (Keras 3 semantics). Adds ``learning_rate`` to the epoch logs.

    Parameters
    ----------
    monitor : str, default "val_loss"
    factor : float, default 0.1
        ``new_lr = max(lr * factor, min_lr)``; must be < 1.
    patience : int, default 10
    verbose : int, default 0
    mode : {"auto", "min", "max"}
    min_delta : float, default 1e-4
        An improvement must exceed this.
    cooldown : int, default 0
        Epochs to wait after a reduction before counting again.
    min_lr : float, default 0.0
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if "epsilon" in kwargs:  # Keras 2's name for min_delta
            min_delta = kwargs.pop("epsilon")
            warnings.warn("ReduceLROnPlateau: `epsilon` is deprecated, use `min_delta`.", stacklevel=2)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _resolve_mode(mode, monitor, "ReduceLROnPlateau")
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_improvement(self, current) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return current + self.min_delta < self.best
        return current - self.min_delta > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        opt = self.model.optimizer
        logs["learning_rate"] = float(opt.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(opt.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    opt.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class TerminateOnNaN(Callback):
    """Stop training as soon as the loss is NaN or infinite (after that batch); with
    ``raise_error=True`` raise a ``RuntimeError`` instead."""

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(
                    f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. Terminating training "
                    f"immediately."
                )
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class BackupAndRestore(Callback):
    """Back up the training state at the end of every epoch (or every ``save_freq`` batches) and,
    when ``fit`` is run again after an interruption, resume from the last backup (Keras 3 semantics).

    The backup holds the model's weights and the optimizer's state (slots and step count) in a
    weights file written atomically by ``model.save_weights``, and a small JSON naming that file and
    the number of finished epochs, replaced atomically after the file is complete: a crash at any
    moment leaves the previous consistent backup. ``fit`` then starts at the first unfinished epoch.

    Parameters
    ----------
    backup_dir : str
        Directory for the backup (created when needed). Use one per training run.
    save_freq : "epoch" or int, default "epoch"
        Back up at the end of every epoch, or every ``save_freq`` training batches.
    double_checkpoint : bool, default False
        Keep the previous backup too (fastconv always keeps a consistent one; accepted for Keras).
    delete_checkpoint : bool, default True
        Delete ``backup_dir`` when training finishes normally (not on Ctrl-C or an exception).
    """

    root_only = True  # writes files: rank 0 only in data-parallel training

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(
                f"Invalid value for argument `save_freq`. Received: save_freq={save_freq}. "
                f"Expected either 'epoch' or an integer value."
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._metadata_path = os.path.join(self.backup_dir, "training_metadata.json")
        self._current_epoch = 0
        self._batches_since_save = 0
        self._saves = 0

    def on_train_begin(self, logs=None):
        self._batches_since_save = 0
        if not os.path.exists(self._metadata_path):
            return
        if not self.model.built:
            raise ValueError(
                "To use the BackupAndRestore callback, your model must be built before you call `fit()`."
            )
        with open(self._metadata_path) as f:
            meta = json.load(f)
        self.model.load_weights(os.path.join(self.backup_dir, meta["weights"]))
        self._current_epoch = int(meta["epoch"])
        self._saves = int(meta.get("saves", 0))
        self.model._initial_epoch = self._current_epoch

    def _save(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        old = None
        if os.path.exists(self._metadata_path):
            with open(self._metadata_path) as f:
                old = json.load(f).get("weights")
        self._saves += 1
        name = f"backup-{self._saves:06d}.weights.npz"
        self.model.save_weights(os.path.join(self.backup_dir, name))
        meta = {"epoch": self._current_epoch, "weights": name, "saves": self._saves}
        atomic_write(self._metadata_path, lambda f: f.write(json.dumps(meta)), mode="w")
        keep = {name, old} if self.double_checkpoint else {name}
        for entry in os.listdir(self.backup_dir):
            if entry.startswith("backup-") and entry.endswith(".weights.npz") and entry not in keep:
                try:
                    os.unlink(os.path.join(self.backup_dir, entry))
                except OSError:  # pragma: no cover - best effort
                    pass

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._batches_since_save = 0
        if self.save_freq == "epoch":
            self._save()

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save()

    def on_train_end(self, logs=None):
        if getattr(self.model, "_fit_interrupted", False):
            return
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir, ignore_errors=True)


_TENSORBOARD_MISSING = (
    "TensorBoard needs the `tensorboard` package (TensorBoard's own event writer; no TensorFlow): "
    "pip install 'fastconv[tensorboard]'"
)


class TensorBoard(Callback):
    """Write TensorBoard logs as Keras does: ``tensorboard --logdir LOG_DIR`` shows them.

    Event files (TensorBoard's own writer and protos, no TensorFlow; needs the optional
    ``tensorboard`` package, ``pip install 'fastconv[tensorboard]'``) go to ``log_dir/train`` and
    ``log_dir/validation``, with Keras's tags:

    * at every epoch end, step = the epoch (0-based): ``epoch_<name>`` for every training log
      (``epoch_loss``, ``epoch_accuracy``, ...) and ``epoch_learning_rate`` (the optimizer's
      current rate) in ``train``; the ``val_`` logs without their prefix (``epoch_loss``, ...)
      and ``evaluation_<name>_vs_iterations`` (step = training batches so far) in ``validation``;
    * with ``update_freq="batch"`` or an int N: ``batch_<name>`` (the epoch's running values, as
      in the progress bar) every N batches, step = the count of training batches since the
      callback was made (1-based), written for the batches whose 0-based index in the epoch is a
      multiple of N;
    * every ``histogram_freq`` epochs: a histogram of every weight, tag
      ``<layer>/<weight>/histogram`` (e.g. ``conv2d/kernel/histogram``), and with
      ``write_images`` a picture of every conv kernel, tag ``<layer>/kernel/image`` (each
      output filter a column of its input slices; min black, max white);
    * with ``write_graph``: the model as a graph of its layers (the Graphs tab) and its Keras
      JSON (tag ``keras``) at the start of training.

    Parameters
    ----------
    log_dir : str or os.PathLike, default "logs"
    histogram_freq : int, default 0
        Epochs between weight histograms (0: none).
    write_graph : bool, default True
    write_images : bool, default False
        Kernel pictures, with the histograms.
    write_steps_per_second : bool, default False
        Also ``epoch_steps_per_second`` in ``train``.
    update_freq : "epoch", "batch" or int, default "epoch"
    profile_batch, embeddings_freq, embeddings_metadata
        Accepted for Keras; fastconv has no profiler hook and no ``Embedding`` layer, so a
        non-zero value only warns.

    Examples
    --------
    >>> tb = TensorBoard(log_dir="logs/fit", histogram_freq=1)  # doctest: +SKIP
    >>> # model.fit(x, y, validation_data=(x_val, y_val), callbacks=[tb])
    """

    root_only = True  # under data-parallel training only rank 0 writes

    def __init__(
        self,
        log_dir="logs",
        histogram_freq=0,
        write_graph=True,
        write_images=False,
        write_steps_per_second=False,
        update_freq="epoch",
        profile_batch=0,
        embeddings_freq=0,
        embeddings_metadata=None,
    ):
        super().__init__()
        try:
            from fastconv import _tensorboard
        except ImportError as e:
            raise ImportError(_TENSORBOARD_MISSING) from e
        self._tb = _tensorboard
        if log_dir is None or (isinstance(log_dir, str) and not log_dir):
            raise ValueError(f"TensorBoard: log_dir must be a directory path. Received: log_dir={log_dir!r}")
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"TensorBoard: log_dir must be a str or os.PathLike. Received: log_dir={log_dir!r}")
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, (int, np.integer)) or histogram_freq < 0:
            raise ValueError(
                f"TensorBoard: histogram_freq must be an int >= 0 (epochs between histograms; 0 for none). "
                f"Received: histogram_freq={histogram_freq!r}"
            )
        if update_freq == "batch":
            update_freq = 1
        elif update_freq != "epoch" and (
            isinstance(update_freq, bool) or not isinstance(update_freq, (int, np.integer)) or update_freq < 1
        ):
            raise ValueError(
                f'TensorBoard: update_freq must be "epoch", "batch" or an int >= 1 (batches between writes). '
                f"Received: update_freq={update_freq!r}"
            )
        for name, value in (("profile_batch", profile_batch), ("embeddings_freq", embeddings_freq)):
            if value not in (0, None, (0, 0), [0, 0]):
                warnings.warn(
                    f"TensorBoard: {name}={value!r} is accepted for Keras but does nothing in fastconv "
                    f"(no profiler hook, no Embedding layer).",
                    stacklevel=2,
                )
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.write_graph = bool(write_graph)
        self.write_images = bool(write_images)
        self.write_steps_per_second = bool(write_steps_per_second)
        self.update_freq = update_freq if update_freq == "epoch" else int(update_freq)
        self.profile_batch = profile_batch
        self.embeddings_freq = embeddings_freq
        self.embeddings_metadata = embeddings_metadata
        self._train_dir = os.path.join(self.log_dir, "train")
        self._val_dir = os.path.join(self.log_dir, "validation")
        self._writers = {}
        self._global_train_batch = 0

    def _writer(self, which):
        if which not in self._writers:
            self._writers[which] = self._tb.EventWriter(self._train_dir if which == "train" else self._val_dir)
        return self._writers[which]

    def _close_writers(self):
        for w in self._writers.values():
            w.close()
        self._writers = {}

    def on_train_begin(self, logs=None):
        self._epoch_start = time.perf_counter()
        self._epoch_batches = 0
        if self.write_graph:
            w = self._writer("train")
            model_json = self.model.to_json()
            w.graph(json.loads(model_json), model_json)
            w.flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._epoch_batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        self._epoch_batches += 1

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" or not logs or batch % self.update_freq:
            return
        w = self._writer("train")
        for name, value in logs.items():
            w.scalar("batch_" + name, value, self._global_train_batch)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        opt = getattr(self.model, "optimizer", None)
        if opt is not None and hasattr(opt, "learning_rate"):
            train["learning_rate"] = float(opt.learning_rate)
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._epoch_start
            train["steps_per_second"] = self._epoch_batches / elapsed if elapsed > 0 else 0.0
        w = self._writer("train")
        for name, value in train.items():
            w.scalar("epoch_" + name, value, epoch)
        if val:
            v = self._writer("validation")
            for name, value in val.items():
                v.scalar("epoch_" + name, value, epoch)
                v.scalar(f"evaluation_{name}_vs_iterations", value, self._global_train_batch)
            v.flush()
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._log_weights(w, epoch)
        w.flush()

    def _log_weights(self, w, epoch):
        for tag, array in _named_weights(self.model.layers):
            w.histogram(tag + "/histogram", array, epoch)
            if self.write_images and array.ndim == 4:
                w.image(tag + "/image", self._tb.kernel_grid(array), epoch)

    def on_train_end(self, logs=None):
        self._close_writers()


def _named_weights(layers, prefix=""):
    """``(layer/weight, array)`` for every weight of ``layers``, sublayers under their parent's name."""
    for layer in layers:
        for key, array in [*layer.params.items(), *layer.state.items()]:
            yield f"{prefix}{layer.name}/{key}", array
        yield from _named_weights(layer.sublayers, f"{prefix}{layer.name}/")
