"""The model base class: what every fastconv model adds to a plan of layer calls (Keras's ``Model``
API: compile, fit, evaluate, predict, weights, summary, save).

Design notes
------------
* A model is a layer graph plus what the Keras model adds on top. The graph
  part is whatever :meth:`BaseModel._plan` returns (a
  :class:`fastconv.engine.graph.ExecutionPlan`); everything else in this base
  class works on that plan and on ``self.layers``, so ``Sequential``
  (``fastconv.engine.sequential``) and the graph ``Model``
  (``fastconv.engine.functional``) only provide the plan, ``build``, their
  summary rows and config to get compile / fit / evaluate / predict / save /
  load / summary unchanged.
* Why a base class with its own name: the public ``fastconv.Model`` is the
  graph model, ``Model(inputs, outputs)``; ``Sequential`` is not a graph model
  here, so both derive from ``BaseModel`` and each class name is used once.
* Shapes exclude the batch axis inside (the layer contract); ``build`` and
  ``output_shape`` speak Keras's batch-inclusive ``(None, H, W, C)``.
* The loops live in :mod:`fastconv.engine.trainer`, saving in
  :mod:`fastconv.saving` (which knows the model classes only through the
  registry they join with ``register_layer``).
"""

from __future__ import annotations

import json
import typing

import numpy as np

from fastconv import losses as _losses
from fastconv import metrics as _metrics
from fastconv import optimizers as _optimizers
from fastconv import saving as _saving
from fastconv.engine import flat as _flat
from fastconv.engine import trainer as _trainer
from fastconv.engine.data import _batch_size
from fastconv.engine.graph import ExecutionPlan

__all__ = ["BaseModel"]


class BaseModel:
    """Base class of fastconv models (Keras's ``Model`` API on an execution plan).

    Subclasses provide ``layers``, :meth:`_plan`, :meth:`build`, ``input_shape`` /
    ``output_shape`` (per-sample), :meth:`_summary_rows` and ``get_config`` /
    ``from_config``.
    """

    _name_counts: typing.ClassVar[dict[str, int]] = {}

    def __init__(self, name=None):
        if name is None:
            prefix = type(self).__name__.lower()
            n = BaseModel._name_counts.get(prefix, 0)
            BaseModel._name_counts[prefix] = n + 1
            name = prefix if n == 0 else f"{prefix}_{n}"
        self.name = name
        self.optimizer = None
        self.loss = None
        self.compiled_metrics = []
        self._losses = []
        self._loss_weights = []
        self._metrics = []  # [(log name, output index, fastconv.metrics.Metric), ...]
        self.stop_training = False
        self.history = None

    # ---- to be provided by subclasses --------------------------------------
    layers: list

    def _plan(self) -> ExecutionPlan:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, input_shape=None):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def built(self) -> bool:
        return bool(self.layers) and all(layer.built for layer in self.layers)

    # ---- shapes / dtype -------------------------------------------------------
    @property
    def dtype(self):
        return self.layers[0].dtype if self.layers else np.dtype("float32")

    def _ensure_built(self, batch_shape):
        if not self.built:
            self.build((None, *tuple(batch_shape)[1:]))

    def _prepare_x(self, x):
        """``x`` as an array of the model's dtype (no copy when it already is)."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"Model inputs must be numeric arrays. Received dtype {x.dtype}.")
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f"This model has not yet been built. Build the model first by calling `build()` or by "
                f"calling the model on a batch of data (needed for `{what}`)."
            )

    # ---- inputs / outputs ----------------------------------------------------
    def _num_inputs(self) -> int:
        return len(self._plan().inputs)

    def _num_outputs(self) -> int:
        return len(self._plan().outputs)

    def _output_names(self) -> list:
        """One name per output, used in logs (``<name>_loss``, ``<name>_accuracy``) and as keys of
        dict-valued ``loss`` / ``metrics`` / ``y``: the name of the layer producing each output."""
        plan = self._plan()
        producer = {node.output: node.layer.name for node in plan.nodes}
        names = []
        for k, t in enumerate(plan.outputs):
            name = producer.get(t, f"output_{k}")
            names.append(name if name not in names else f"{name}_{k}")
        return names

    def _inputs_listed(self) -> bool:
        """True when ``x`` is always a list of per-input arrays (graph models built with a list of
        inputs), even for a single input."""
        return False

    def _prepare_inputs(self, x) -> list:
        """``x`` as a list of arrays in the model's dtype, one per model input."""
        return self._cast_inputs(self._split_inputs(x))

    def _cast_inputs(self, arrays) -> list:
        """Convert each input array (as :meth:`_split_inputs` returns them) to the model's dtype."""
        return [self._prepare_x(a) for a in arrays]

    def _split_inputs(self, x) -> list:
        """``x`` (one array, or a list / tuple / dict by input name for several inputs) as a list of
        NumPy arrays with a common first axis (not converted)."""
        k = self._num_inputs()
        if (
            k == 1
            and not isinstance(x, dict)
            and not (self._inputs_listed() and isinstance(x, (list, tuple)))
        ):
            return [np.asarray(x)]
        if isinstance(x, dict):
            x = self._inputs_from_dict(x)
        if not isinstance(x, (list, tuple)) or len(x) != k:
            got = f"{len(x)} arrays" if isinstance(x, (list, tuple)) else f"one {type(x).__name__}"
            raise ValueError(
                f'Model "{self.name}" expects {k} input(s), but it received {got}: pass x as a list of '
                f"{k} arrays (or a dict by input name)."
            )
        arrays = [np.asarray(a) for a in x]
        if any(a.ndim == 0 for a in arrays) or len({a.shape[0] for a in arrays}) > 1:
            raise ValueError(
                f"All model inputs need the same number of samples. Received shapes {[a.shape for a in arrays]}"
            )
        return arrays

    def _inputs_from_dict(self, x):  # pragma: no cover - graph models override
        raise ValueError(f'Model "{self.name}" does not take a dict of inputs.')

    def _split_targets(self, y, who) -> list:
        """``y`` as a list with one array (or None) per output."""
        k = self._num_outputs()
        if k == 1 and not isinstance(y, dict):
            if isinstance(y, (list, tuple)) and len(y) == 1 and isinstance(y[0], np.ndarray):
                y = y[0]
            return [None if y is None else np.asarray(y)]
        if isinstance(y, dict):
            names = self._output_names()
            unknown = sorted(set(y) - set(names))
            if unknown:
                raise ValueError(f"{who}: unknown outputs {unknown} in y; the model's outputs are {names}.")
            y = [y.get(n) for n in names]
        if not isinstance(y, (list, tuple)) or len(y) != k:
            got = f"{len(y)} arrays" if isinstance(y, (list, tuple)) else f"one {type(y).__name__}"
            raise ValueError(
                f'{who}: model "{self.name}" has {k} outputs {self._output_names()}: pass y as a list of '
                f"{k} arrays (or a dict by output name). Received {got}."
            )
        return [None if a is None else np.asarray(a) for a in y]

    # ---- compile ------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None):
        """Set the optimizer, loss(es) and metrics.

        Parameters
        ----------
        optimizer : str, an :class:`fastconv.optimizers.Optimizer` or its config dict, default "rmsprop"
            Keras's string identifiers: "sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta",
            "adamax", "nadam" (each with Keras's defaults).
        loss : a Keras loss name ("sparse_categorical_crossentropy", "categorical_crossentropy",
            "binary_crossentropy", "mse", "mae", "huber", "kld") or a :mod:`fastconv.losses` object
            such as ``CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)``
            For several outputs: one loss (used for every output), a list with one per output
            or a dict by output name (``None`` / missing: no loss on that output). The
            training loss is ``sum(loss_weights[k] * loss_k) + regularization``.
        metrics : list, optional
            Keras's names or :mod:`fastconv.metrics` objects: ``"accuracy"`` / ``"acc"`` (binary,
            sparse or categorical by the shapes, as Keras), ``"binary_accuracy"``,
            ``"categorical_accuracy"``, ``"sparse_categorical_accuracy"``,
            ``"top_k_categorical_accuracy"``, ``"sparse_top_k_categorical_accuracy"``, ``"auc"``,
            ``"precision"``, ``"recall"``, ``"mae"``, ``"mse"``, ``"mean_iou"``. A string is logged
            under that string (``"acc"`` -> ``acc``, ``val_acc``), an object under its ``name``.
            Several outputs: a flat list is computed on every output that has a loss and logged
            as ``<output name>_<metric>`` (Keras's naming, output name = the producing layer's
            name); a list of lists or a dict by output name chooses per output.
        loss_weights : list or dict, optional
            Per-output weights of the total loss (default 1.0 each).
        """
        if loss is None:
            raise ValueError("compile: a loss is required, e.g. loss='sparse_categorical_crossentropy'.")
        n_out = self._num_outputs()
        names = self._output_names()
        losses = self._per_output(loss, n_out, names, "loss")
        losses = [None if l is None else _losses.get(l) for l in losses]
        if all(l is None for l in losses):
            raise ValueError("compile: at least one output needs a loss.")
        weights = (
            [1.0] * n_out
            if loss_weights is None
            else self._per_output(loss_weights, n_out, names, "loss_weights")
        )
        weights = [1.0 if w is None else float(w) for w in weights]

        metric_spec = metrics
        if metric_spec is None:
            per_out = [[] for _ in range(n_out)]
        elif isinstance(metric_spec, dict):
            per_out = self._per_output(metric_spec, n_out, names, "metrics")
        elif (
            n_out > 1
            and isinstance(metric_spec, (list, tuple))
            and len(metric_spec) == n_out
            and all(m is None or isinstance(m, (list, tuple)) for m in metric_spec)
        ):
            per_out = list(metric_spec)
        else:
            flat = [metric_spec] if isinstance(metric_spec, (str, _metrics.Metric)) else list(metric_spec)
            per_out = [flat if losses[k] is not None else [] for k in range(n_out)]
        specs = []
        for k, ms in enumerate(per_out):
            if ms is None:
                continue
            for m in [ms] if isinstance(ms, (str, _metrics.Metric, dict)) else ms:
                metric = _metrics.get(m)
                log_name = metric.name if n_out == 1 else f"{names[k]}_{metric.name}"
                specs.append((log_name, k, metric))

        self.optimizer = _optimizers.get(optimizer)
        self.loss = losses[0] if n_out == 1 else losses
        self._losses = losses
        self._loss_weights = weights
        self.compiled_metrics = metrics if metrics is not None else []
        self._metrics = specs
        if self.built:  # the weights become views of flat buffers now (else at the first step)
            _flat.relayout(self)

    @staticmethod
    def _per_output(value, n_out, names, what):
        """One entry per output from a single value, a list of ``n_out`` or a dict by output name."""
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError(
                    f"compile: unknown outputs {unknown} in {what}; the model's outputs are {names}."
                )
            return [value.get(n) for n in names]
        if isinstance(value, (list, tuple)) and what != "metrics":
            if len(value) != n_out:
                raise ValueError(
                    f"compile: {what} has {len(value)} entries but the model has {n_out} output(s) {names}."
                )
            return list(value)
        return [value] * n_out

    @property
    def compiled(self) -> bool:
        return self.optimizer is not None and self.loss is not None

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(
                f"You must compile your model before using `{what}`: call `model.compile(...)`."
            )

    def _compile_config(self):
        if not self.compiled:
            return None
        losses = [None if l is None else _losses.serialize(l) for l in self._losses]
        config = {
            "optimizer": _optimizers.serialize(self.optimizer),
            "loss": losses[0] if len(losses) == 1 else losses,
            "metrics": _serialize_metric_spec(self.compiled_metrics),
        }
        if any(w != 1.0 for w in self._loss_weights):
            config["loss_weights"] = list(self._loss_weights)
        return config

    # ---- training (the loops live in fastconv.engine.trainer) -----------------------
    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose=1,
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        seed=None,
        sample_weight=None,
        class_weight=None,
    ):
        """Train for ``epochs`` passes over ``x, y`` (arrays) or over a batch iterator.

        Parameters
        ----------
        x : array ``(N, H, W, C)`` (any numeric dtype; converted once to the model's dtype)
            or an iterator of ``(x_batch, y_batch)`` such as ``ImageAugmenter.flow(...)``.
            A model with several inputs takes a list of arrays (or a dict by input name).
        y : integer labels ``(N,)`` / ``(N, 1)`` or one-hot ``(N, K)`` (per-pixel: ``(N, H, W)``).
            A model with several outputs takes a list with one target per output (or a dict
            by output name; ``None`` for an output without a loss).
        batch_size : int, default 32
        epochs : int
        verbose : 0 (silent), 1 (progress bar), 2 (one line per epoch)
        callbacks : list of :class:`fastconv.callbacks.Callback`
        validation_split : float
            The *last* fraction of ``x, y`` is held out (as Keras does, before shuffling).
        validation_data : ``(x_val, y_val)``, ``(x_val, y_val, val_sample_weight)`` or a batch iterator
        shuffle : bool
            Reshuffle the training samples every epoch (``seed`` fixes the order).
        steps_per_epoch : int, optional
            Batches per epoch (needed for endless iterators without ``len``).
        seed : int, optional
            Seeds the shuffling.
        sample_weight : array ``(N,)``, optional
            Weights each sample's loss (Keras 3's rule: a batch's loss is ``sum(w_i * loss_i) /
            batch_size``). Several outputs: one array for all, a list or a dict by output name.
            A generator may yield ``(x, y, sample_weight)`` batches instead. Metrics are not weighted.
        class_weight : dict, optional
            ``{class index: weight}`` applied through the labels (the argmax of one-hot targets);
            missing classes weigh 1. Single-output models; multiplies ``sample_weight`` if both are
            given (Keras 3 refuses the pair).

        Returns
        -------
        History
            ``history.history`` holds ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` per epoch
            (several outputs: also ``<output>_loss`` and ``<output>_<metric>``, as Keras names them).
            Ctrl-C ends training after the current step and returns it
            (``history.interrupted`` is True).
        """
        return _trainer.fit(
            self,
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            validation_batch_size=validation_batch_size,
            seed=seed,
            sample_weight=sample_weight,
            class_weight=class_weight,
        )

    def evaluate(self, x=None, y=None, batch_size=None, verbose=1, sample_weight=None, steps=None,
                 return_dict=False):
        """``[loss, *metrics]`` (just ``loss`` without metrics; several outputs: ``[loss, *output
        losses, *metrics]``) on ``x, y``, in batches; a dict with ``return_dict=True``.
        ``sample_weight`` weights the loss as in :meth:`fit`."""
        return _trainer.evaluate(
            self, x, y, batch_size=batch_size, verbose=verbose, steps=steps, return_dict=return_dict,
            sample_weight=sample_weight,
        )

    def predict(self, x, batch_size=None, verbose=0):
        """Model outputs for ``x`` ``(N, ...)``, computed in batches of ``batch_size`` (default 32);
        a list with one array per output for several outputs."""
        return _trainer.predict(self, x, batch_size=batch_size, verbose=verbose)

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None):
        return _trainer.train_on_batch(self, x, y, sample_weight=sample_weight, class_weight=class_weight)

    def test_on_batch(self, x, y, sample_weight=None):
        return _trainer.test_on_batch(self, x, y, sample_weight=sample_weight)

    def predict_on_batch(self, x):
        return self._pack_outputs(self._predict_batch_list(x))

    def _predict_batch_list(self, x):
        xs = self._split_inputs(x)
        self._ensure_built(xs[0].shape)
        plan = self._plan()
        return plan.forward(self._cast_inputs(xs), training=False, fusion=plan.inference_fusion(plan.activation_fusion()))

    def _pack_outputs(self, outs):
        """The plan's list of outputs as the user sees it: one array, or the list for several."""
        return outs[0] if len(outs) == 1 else list(outs)

    def __call__(self, x, training=False):
        xs = self._split_inputs(x)
        self._ensure_built(xs[0].shape)
        return self._pack_outputs(self._plan().forward(self._cast_inputs(xs), training=training))

    def layer_output(self, x, layer, batch_size=None):
        """The output of ``layer`` (index, name or Layer) for ``x``, computed in inference mode."""
        idx = self._node_index(layer)
        xs = self._split_inputs(x)
        self._ensure_built(xs[0].shape)
        xs = self._cast_inputs(xs)
        plan = self._plan()
        bs = _batch_size(batch_size, "layer_output", default=256)
        n = len(xs[0])
        outs = [
            plan.forward([a[i : i + bs] for a in xs], training=False, upto=idx)[0]
            for i in range(0, max(n, 1), bs)
        ]
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def _node_index(self, layer):
        plan = self._plan()
        for i, node in enumerate(plan.nodes):
            if node.layer is layer or (isinstance(layer, str) and node.layer.name == layer):
                return i
        if isinstance(layer, (int, np.integer)):
            n = len(plan.nodes)
            if -n <= layer < n:
                return int(layer) % n
            raise IndexError(f"Layer index {layer} out of range for a model with {n} layers.")
        raise ValueError(f"No such layer: {layer!r}. Existing layers: {[l.name for l in self.layers]}")

    # ---- weights --------------------------------------------------------------
    def get_layer(self, name=None, index=None):
        """A layer by ``name`` or by ``index`` in ``model.layers`` (Keras's ``get_layer``; its errors)."""
        if index is not None and name is not None:
            raise ValueError(
                f"Provide only a layer name or a layer index. Received: index={index}, name={name}."
            )
        if index is not None:
            if len(self.layers) <= index:
                raise ValueError(
                    f"Was asked to retrieve layer at index {index} but model only has {len(self.layers)} layers."
                )
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    @property
    def weights(self):
        out = []
        for layer in self.layers:
            out.extend(layer.weights)
        return out

    @property
    def trainable_weights(self):
        out = []
        for layer in self.layers:
            out.extend(layer.trainable_weights)
        return out

    @property
    def non_trainable_weights(self):
        ids = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in ids]

    def trainable_pairs(self):
        """``[(key, param, grad), ...]`` of every trainable layer, read now (frozen layers give none)."""
        pairs = []
        for layer in self.layers:
            pairs.extend(layer.trainable_pairs())
        return pairs

    def get_weights(self):
        """Copies of all weights, layer by layer in Keras order."""
        out = []
        for layer in self.layers:
            out.extend(layer.get_weights())
        return out

    def set_weights(self, weights):
        """Load a list like :meth:`get_weights` returns (checked for count and shapes first)."""
        self._require_built("set_weights")
        weights = list(weights)
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(
                f'You called `set_weights(weights)` on model "{self.name}" with a weight list of length '
                f"{len(weights)}, but the model was expecting {len(mine)} weights."
            )
        for i, (ref, w) in enumerate(zip(mine, weights)):
            if ref.shape != np.shape(w):
                raise ValueError(
                    f'Model "{self.name}": weight {i} has shape {ref.shape} but the provided weight has shape '
                    f"{np.shape(w)}."
                )
        pos = 0
        for layer in self.layers:
            k = len(layer.weights)
            layer.set_weights(weights[pos : pos + k])
            pos += k

    def count_params(self) -> int:
        self._require_built("count_params")
        return int(sum(layer.count_params() for layer in self.layers))

    def count_trainable_params(self) -> int:
        self._require_built("count_trainable_params")
        return int(sum(layer.count_trainable_params() for layer in self.layers))

    # ---- summary ----------------------------------------------------------------
    def _summary_rows(self):  # pragma: no cover - abstract
        """``(header, rows)``: column titles and one tuple of strings per layer."""
        raise NotImplementedError

    def summary(self, line_length=None, print_fn=None):
        """Print Keras's summary table: layer name and type, output shape, parameter count,
        then total / trainable / non-trainable parameter counts."""
        text = self.summary_text(line_length)
        (print_fn or print)(text)

    def summary_text(self, line_length=None) -> str:
        """The text :meth:`summary` prints."""
        self._require_built("summary")
        header, rows = self._summary_rows()
        base = [29, 26, 10] if len(header) == 3 else [29, 26, 10, 30]
        widths = [max(b, *(len(r[i]) + 1 for r in rows)) if rows else b for i, b in enumerate(base)]
        if line_length is not None and line_length > sum(widths):
            widths[-1] += line_length - sum(widths)
        total_w = sum(widths)

        def fmt(cells):
            return "".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip().ljust(total_w)

        total = self.count_params()
        trainable = self.count_trainable_params()
        lines = [f'Model: "{self.name}"', "_" * total_w, fmt(header), "=" * total_w]
        for i, row in enumerate(rows):
            lines.append(fmt(row))
            lines.append(("=" if i == len(rows) - 1 else "_") * total_w)
        if not rows:
            lines.append("=" * total_w)
        lines += [
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            "_" * total_w,
        ]
        return "\n".join(lines)

    # ---- save / load ---------------------------------------------------------------
    def to_json(self, **kwargs) -> str:
        """The architecture as JSON (no weights), as Keras's ``to_json``; rebuild it with
        ``fastconv.model_from_json`` (fresh weights). ``kwargs`` go to ``json.dumps``."""
        return json.dumps({"class_name": type(self).__name__, "config": self.get_config()}, **kwargs)

    def save(self, filepath, include_optimizer=True):
        """Write the architecture (JSON), weights and compile settings to one ``.npz`` file, atomically.

        fastconv writes its own ``.npz`` format only: a name ending in ``.keras`` or ``.h5`` (Keras's
        formats) raises ValueError naming the path and the suffix to use."""
        _saving.save_model(self, filepath, include_optimizer=include_optimizer)

    def export(self, filepath, format="onnx", verbose=None, input_signature=None, opset_version=None):
        """Export the model for inference elsewhere, with Keras 3's arguments: ``format="onnx"``
        writes an ONNX file (NHWC in and out, float32, the batch size free, the input sizes the
        model was built for) that ONNX Runtime runs, atomically. ``opset_version``: the ONNX opset
        (default 17); ``verbose=True`` prints where the file went; ``input_signature`` must be
        None (the model's own input shapes are used). Needs the ``onnx`` package
        (``pip install 'fastconv[onnx]'``). Returns the path. See :func:`fastconv.onnx.to_onnx`."""
        if format != "onnx":
            raise ValueError(f'fastconv exports format="onnx" only. Received: format={format!r}')
        if input_signature is not None:
            raise ValueError(
                "fastconv exports the input shapes the model was built for; build the model for other "
                f"sizes instead of passing input_signature. Received: input_signature={input_signature!r}"
            )
        from fastconv.engine import onnx_export  # imports onnx: only when an export runs

        opset = onnx_export.DEFAULT_OPSET if opset_version is None else opset_version
        path = onnx_export.export(self, filepath, opset=opset)
        if verbose:
            print(f"Saved artifact at '{path}' (ONNX, opset {opset}).")
        return path

    def save_weights(self, filepath):
        """Write the weights only (``.npz``), atomically."""
        _saving.save_weights(self, filepath)

    def load_weights(self, filepath):
        """Load weights written by :meth:`save_weights` (or a full model file) into this built model."""
        _saving.load_weights(self, filepath)

    def get_config(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, layers={len(self.layers)}, built={self.built}>"


def _serialize_metric_spec(spec, top=True):
    """``compile(metrics=...)`` in a JSON-able form (metric objects by name or config dict).

    A dict at the top level maps output names to metrics; a dict inside a list is a metric config."""
    if spec is None:
        return [] if top else None
    if isinstance(spec, dict) and top:
        return {k: _serialize_metric_spec(v, False) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_serialize_metric_spec(m, False) for m in spec]
    return _metrics.serialize(spec)
