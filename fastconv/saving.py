"""Saving and loading models: one ``.npz`` file, no pickle, written atomically.

File layout
-----------
A NumPy ``.npz`` (zip) archive holding

* ``__fastconv__``: the UTF-8 bytes (uint8 array) of a JSON document::

      {"format": "fastconv.model" | "fastconv.weights", "format_version": 1,
       "fastconv_version": "...", "class_name": "Sequential",
       "config": model.get_config(),            # layers via fastconv.layers.serialize
       "compile_config": {"optimizer": {...}, "loss": "...", "metrics": [...]} | null,
       "weights": [{"layer": "conv2d", "index": 0, "shape": [3, 3, 1, 32], "dtype": "float32"}, ...]}

* ``weight_00000``, ``weight_00001``, ...: the arrays of ``model.get_weights()``.
* ``optimizer_00000``, ...: the optimizer's slot arrays (moments, accumulators) when the model is
  compiled (``save_model(include_optimizer=True)`` and ``save_weights``, as Keras 3 does); the JSON
  document's ``"optimizer_state"`` names them (``{"class_name", "iterations", "slots": [[weight key,
  slot name], ...], "scalars"}``). Loading restores them, so training resumes where it stopped.

The model class is found by its name (``class_name``) in the registry that layers and models share
(``fastconv.layers.register_layer``), so this module imports no model module.

Everything is read with ``np.load(allow_pickle=False)``. The zip CRC of every
member is checked on read, so a corrupted byte is reported rather than loaded.

Atomic writes: the archive is written to a temporary file in the target's
directory, flushed and fsync'ed, then ``os.replace``'d over the target (and the
directory fsync'ed where the OS allows), so a crash or an exception mid-save
leaves the previous file intact and no temporary file behind.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib

import numpy as np

from fastconv import optimizers
from fastconv.layers.base import Layer, register_layer, registered_classes, reserve_name
from fastconv.utils import atomic_write

__all__ = [
    "load_model",
    "load_weights",
    "model_from_json",
    "register_model_class",
    "save_model",
    "save_weights",
]

FORMAT_VERSION = 1
_META_KEY = "__fastconv__"


def register_model_class(cls, name=None):
    """Make a model class loadable by :func:`load_model` under ``name`` (default: its class name).

    The same as ``fastconv.layers.register_layer``: layers and models share one registry."""
    return register_layer(cls, name=name)


def _model_class(name, path):
    """The model class saved as ``name``: a registered class that is not a Layer. The built-in ones
    (``Sequential``; ``Model`` and Keras 3's ``Functional``) register when ``fastconv`` is imported,
    which importing this module always does first."""
    cls = registered_classes().get(name) if isinstance(name, str) else None
    if not isinstance(cls, type) or issubclass(cls, Layer):
        known = sorted(
            n for n, c in registered_classes().items() if isinstance(c, type) and not issubclass(c, Layer)
        )
        raise ValueError(f"{path!r}: unknown model class {name!r} (known: {known}).")
    return cls


def _version():
    try:
        from fastconv._config import __version__

        return __version__
    except ImportError:  # pragma: no cover - during development
        return "unknown"


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _weights_meta(model):
    meta = []
    for layer in model.layers:
        for i, w in enumerate(layer.weights):
            meta.append({"layer": layer.name, "index": i, "shape": list(w.shape), "dtype": w.dtype.name})
    return meta


def _write_npz(fileobj, arrays):
    """Write ``arrays`` (dict name -> array) as an uncompressed npz to an open binary file."""
    np.savez(fileobj, **arrays)


def _atomic_write(path, arrays):
    atomic_write(path, lambda f: _write_npz(f, arrays), what="save to")


def _pack(doc, weights, optimizer=None, model=None):
    opt_arrays = []
    if optimizer is not None and hasattr(optimizer, "get_state"):
        meta, opt_arrays = optimizer.get_state()
        # Slots are keyed by "layer/weight"; the position among the trainable weights is stored too,
        # so the state finds its weights in a rebuilt model whose layers got other automatic names.
        position = {k: i for i, (k, _, _) in enumerate(model.trainable_pairs())} if model is not None else {}
        meta["slots"] = [[key, name, position.get(key)] for key, name in meta["slots"]]
        doc["optimizer_state"] = {"class_name": type(optimizer).__name__, **meta}
    arrays = {_META_KEY: np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)}
    for i, w in enumerate(weights):
        arrays[f"weight_{i:05d}"] = np.asarray(w, order="C")  # keeps 0-d weights 0-d (Normalization)
    for i, a in enumerate(opt_arrays):
        arrays[f"optimizer_{i:05d}"] = np.ascontiguousarray(a)
    return arrays


def _restore_optimizer(model, arc):
    """Set the optimizer state stored in ``arc`` when ``model``'s optimizer is of the same class."""
    meta = arc.doc.get("optimizer_state")
    opt = getattr(model, "optimizer", None)
    if not isinstance(meta, dict) or opt is None or meta.get("class_name") != type(opt).__name__:
        return
    slots = meta.get("slots", [])
    arrays = [arc._read(f"optimizer_{i:05d}") for i in range(len(slots))]
    pairs = model.trainable_pairs()
    keyed = []
    for entry, arr in zip(slots, arrays):
        key, name = entry[0], entry[1]
        pos = entry[2] if len(entry) > 2 else None
        if pos is not None and 0 <= pos < len(pairs) and pairs[pos][1].shape == arr.shape:
            key = pairs[pos][0]
        keyed.append([key, name])
    opt.set_state({**meta, "slots": keyed}, arrays)


_FOREIGN_SUFFIXES = (".keras", ".h5", ".hdf5")


def _check_suffix(filepath, what):
    """Refuse names of Keras's formats (``.keras``, ``.h5``): fastconv writes only its ``.npz``."""
    path = os.fspath(filepath)
    lower = str(path).lower()
    for suffix in _FOREIGN_SUFFIXES:
        if lower.endswith(suffix):
            stem = str(path)[: -len(suffix)]
            if stem.lower().endswith(".weights"):
                stem = stem[: -len(".weights")]
            raise ValueError(
                f"{what}: cannot write {path!r}: fastconv saves its own .npz format, not Keras's "
                f"'.keras' or HDF5 '.h5' formats. Use a '.npz' suffix, e.g. {stem + '.npz'!r}."
            )


def save_model(model, filepath, include_optimizer=True):
    """Save architecture, weights and compile settings of ``model`` to ``filepath`` (one ``.npz``)."""
    _check_suffix(filepath, "save")
    model._require_built("save")
    doc = {
        "format": "fastconv.model",
        "format_version": FORMAT_VERSION,
        "fastconv_version": _version(),
        "class_name": type(model).__name__,
        "config": model.get_config(),
        "compile_config": model._compile_config() if include_optimizer else None,
        "weights": _weights_meta(model),
    }
    optimizer = model.optimizer if include_optimizer and model.compiled else None
    _atomic_write(filepath, _pack(doc, model.get_weights(), optimizer, model))


def save_weights(model, filepath):
    """Save the weights of ``model`` (with their layer names and shapes for checking) to ``filepath``."""
    _check_suffix(filepath, "save_weights")
    model._require_built("save_weights")
    doc = {
        "format": "fastconv.weights",
        "format_version": FORMAT_VERSION,
        "fastconv_version": _version(),
        "class_name": type(model).__name__,
        "weights": _weights_meta(model),
    }
    _atomic_write(filepath, _pack(doc, model.get_weights(), model.optimizer if model.compiled else None, model))


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


class _Archive:
    """An opened fastconv file: its JSON document and a reader for the weights; errors name the file."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"No such fastconv file: {self.path!r}")
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{self.path!r} is a directory, not a fastconv .npz file.")
        try:
            self.npz = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(
                f"{self.path!r} is not a readable fastconv file (truncated or corrupted?): {e}"
            ) from None
        if not isinstance(self.npz, np.lib.npyio.NpzFile):
            raise ValueError(  # noqa: TRY004 - a bad file is a ValueError, as everywhere in this module
                f"{self.path!r} is a single .npy array, not a fastconv .npz model/weights file."
            )
        try:
            if _META_KEY not in self.npz.files:
                raise ValueError(
                    f"{self.path!r} is an .npz file but not a fastconv one (no {_META_KEY!r} entry)."
                )
            raw = self._read(_META_KEY)
            self.doc = json.loads(raw.tobytes().decode("utf-8"))
            if not isinstance(self.doc, dict) or "format" not in self.doc:
                raise ValueError("missing 'format'")
        except ValueError as e:
            self.close()
            if str(e).startswith(repr(self.path)):
                raise
            raise ValueError(f"{self.path!r}: corrupted fastconv header: {e}") from None
        except Exception:
            self.close()
            raise
        version = self.doc.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            self.close()
            raise ValueError(
                f"{self.path!r} has format version {version!r}; this fastconv reads versions up to {FORMAT_VERSION}."
            )

    def _read(self, key):
        try:
            return self.npz[key]
        except KeyError:
            raise ValueError(
                f"{self.path!r} is missing the entry {key!r} (truncated or corrupted)."
            ) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ValueError(f"{self.path!r}: entry {key!r} is corrupted: {e}") from None

    def weights(self):
        meta = self.doc.get("weights")
        if not isinstance(meta, list):
            raise ValueError(f"{self.path!r}: corrupted header (no weight list).")  # noqa: TRY004
        out = []
        for i, m in enumerate(meta):
            w = self._read(f"weight_{i:05d}")
            if list(w.shape) != list(m.get("shape", [])):
                raise ValueError(
                    f"{self.path!r}: weight {i} ({m.get('layer')}) has shape {w.shape}, header says {m.get('shape')} "
                    f"(corrupted file)."
                )
            out.append(w)
        return out, meta

    def close(self):
        self.npz.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _assign(model, weights, meta, path):
    """Check count and shapes against the model, then set the weights."""
    mine = model.weights
    if len(weights) != len(mine):
        raise ValueError(
            f"{path!r} holds {len(weights)} weight arrays (layers {sorted({m.get('layer') for m in meta})}) but "
            f'model "{model.name}" has {len(mine)} (layers {[l.name for l in model.layers]}): the file does not '
            f"match this model."
        )
    for i, (ref, w, m) in enumerate(zip(mine, weights, meta)):
        if ref.shape != w.shape:
            raise ValueError(
                f"{path!r} does not match the model: weight {i} (layer {m.get('layer')!r} in the file) has "
                f"shape {w.shape}, the model expects {ref.shape}."
            )
    model.set_weights(weights)


def _reserve_layer_names(model):
    """After loading, advance the layer auto-name counters past the loaded names so that new layers
    (e.g. a head added for fine-tuning) do not clash with them."""
    for layer in model.layers:
        stack = [layer]
        while stack:
            lyr = stack.pop()
            stack.extend(getattr(lyr, "sublayers", []))
            reserve_name(lyr.name)


def load_model(filepath, compile=True):
    """Rebuild a model saved with :meth:`Model.save`: architecture, weights and (if it was compiled)
    the optimizer configuration, loss and metrics.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Truncated, corrupted or not a fastconv model file (the message names the file).
    """
    path = os.fspath(filepath)
    with _Archive(path) as arc:
        doc = arc.doc
        if doc.get("format") == "fastconv.weights":
            raise ValueError(
                f"{path!r} holds weights only (save_weights); build the model and call load_weights."
            )
        if doc.get("format") != "fastconv.model":
            raise ValueError(f"{path!r} is not a fastconv model file (format {doc.get('format')!r}).")
        cls = _model_class(doc.get("class_name"), path)
        try:
            model = cls.from_config(doc["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path!r}: cannot rebuild the architecture: {e}") from None
        weights, meta = arc.weights()
        if not model.built:
            raise ValueError(f"{path!r}: the saved model has no input shape, so it cannot be rebuilt.")
        _assign(model, weights, meta, path)
        _reserve_layer_names(model)
        cc = doc.get("compile_config")
        if compile and cc:
            model.compile(
                optimizer=optimizers.deserialize(cc["optimizer"]),
                loss=cc["loss"],
                metrics=cc.get("metrics"),
                loss_weights=cc.get("loss_weights"),
            )
            _restore_optimizer(model, arc)
    return model


def model_from_json(json_string, custom_objects=None):
    """Rebuild a model's architecture (fresh weights) from ``model.to_json()`` (Keras's
    ``model_from_json``; fastconv's home for it, also ``fastconv.model_from_json``).

    ``custom_objects`` (``{name: class}``) registers extra layer or model classes first."""
    for name, cls in (custom_objects or {}).items():
        register_layer(cls, name=name)
    try:
        doc = json.loads(json_string)
        class_name, config = doc["class_name"], doc["config"]
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(
            f"model_from_json: expected the JSON text of model.to_json() "
            f'({{"class_name": ..., "config": ...}}). Received: {str(json_string)[:80]!r} ({e})'
        ) from None
    model = _model_class(class_name, "model_from_json").from_config(config)
    _reserve_layer_names(model)
    return model


def load_weights(model, filepath):
    """Load weights saved by :func:`save_weights` or :func:`save_model` into the built ``model``."""
    path = os.fspath(filepath)
    with _Archive(path) as arc:
        if arc.doc.get("format") not in ("fastconv.weights", "fastconv.model"):
            raise ValueError(f"{path!r} is not a fastconv weights file (format {arc.doc.get('format')!r}).")
        weights, meta = arc.weights()
        if not model.built:
            raise ValueError(
                f"Cannot load weights from {path!r} into an unbuilt model: build it first "
                f"(model.build((None, H, W, C)) or input_shape on the first layer)."
            )
        _assign(model, weights, meta, path)
        if model.compiled:
            _restore_optimizer(model, arc)
