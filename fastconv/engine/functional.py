"""The graph model: ``Model(inputs, outputs)`` (Keras's functional ``Model``), built from the nodes
that layer calls on symbolic tensors recorded (``fastconv.layers._symbolic``).

Design notes
------------
* ``Model(inputs, outputs)`` walks back from the outputs to the inputs. A
  tensor that comes from an ``Input`` not listed in ``inputs`` raises "Graph
  disconnected"; a cycle (only possible through a hand-written config) raises
  too. Nodes run in creation order, which is always a topological order (a
  node is created after its inputs exist); ``from_config`` rebuilds nodes in
  dependency order and refuses cycles, unknown layer names and dangling nodes.
* One engine: the graph is compiled once into an
  :class:`fastconv.engine.graph.ExecutionPlan` (tensor ids: model inputs
  ``0..k-1``, then one id per node output in topological order), the same plan
  ``Sequential`` runs as a chain. So compile / fit / evaluate / predict / save
  come unchanged from :class:`fastconv.engine.base.BaseModel`, and the plan
  frees each activation after its last consumer, sums a tensor's gradient over
  all its consumers in the reverse pass, fuses a final softmax into the loss
  and skips input gradients nothing upstream needs.
* Shared layers enter the plan as one proxy per node
  (:mod:`fastconv.engine.shared`).
* Save/load is pickle-free: ``get_config`` lists layers (``serialize``) with
  their inbound nodes as ``[layer_name, node_index, tensor_index]`` triples,
  as Keras does; weights are matched by layer name. ``load_model`` finds this
  class in the layer registry as "Model" or Keras 3's "Functional".

Examples
--------
A ResNet basic block:

>>> from fastconv import Input, layers as L
>>> x = inputs = Input((8, 8, 16))
>>> h = L.Conv2D(16, 3, padding="same", activation="relu")(x)
>>> h = L.Conv2D(16, 3, padding="same")(h)
>>> y = L.Activation("relu")(L.Add()([h, x]))
>>> model = Model(inputs, y)
>>> model.count_params()
4640
"""

from __future__ import annotations

import numpy as np

from fastconv.engine.base import BaseModel
from fastconv.engine.graph import ExecutionPlan, PlanNode
from fastconv.engine.shared import _SharedState, _SharedUse
from fastconv.layers._symbolic import KerasTensor, is_symbolic
from fastconv.layers.base import deserialize, register_layer, serialize, shape_str
from fastconv.layers.input_layer import InputLayer

__all__ = ["Functional", "Model"]


def _as_tensor_list(value, what) -> tuple[list, bool]:
    if isinstance(value, KerasTensor):
        return [value], False
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)) and value and all(isinstance(t, KerasTensor) for t in value):
        return list(value), True
    raise TypeError(
        f"Model `{what}` must be a KerasTensor or a non-empty list of KerasTensors (from `Input` and "
        f"layer calls). Received: {what}={value!r}"
    )


class Functional:
    """The graph engine: plan, ``_forward``, ``_backward`` and the graph's config.

    Subclasses (``Model``) add training on top; this class computes nothing but the
    graph. See the module notes.
    """

    def _init_graph(self, inputs, outputs):
        self.inputs, inputs_listed = _as_tensor_list(inputs, "inputs")
        self.outputs, outputs_listed = _as_tensor_list(outputs, "outputs")
        self._single_input = not inputs_listed
        self._single_output = not outputs_listed
        for i, t in enumerate(self.inputs):
            if t.node is None or not t.node.is_input:
                producer = "no layer" if t.node is None else f'layer "{t.node.layer.name}"'
                raise ValueError(
                    f"Model inputs must come from `fastconv.Input`. Received: inputs[{i}]={t!r}, "
                    f"produced by {producer}"
                )
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError(f"The same Input appears twice in `inputs`: {[t.name for t in self.inputs]}")
        self.nodes = self._collect_nodes()
        self._check_names()
        self._make_plan()

    # -- graph walk ------------------------------------------------------------
    def _collect_nodes(self) -> list:
        """Nodes between inputs and outputs in creation (= topological) order; raises on a
        disconnected graph or a cycle."""
        input_ids = {id(t) for t in self.inputs}
        state = {}  # id(node) -> 1 while on the DFS stack, 2 when done
        order = []
        for out in self.outputs:
            if id(out) in input_ids or state.get(id(out.node)) == 2:
                continue
            self._check_producer(out, order)
            state[id(out.node)] = 1
            stack = [(out.node, iter(out.node.inputs))]
            while stack:
                node, it = stack[-1]
                for t in it:
                    if id(t) in input_ids:
                        continue
                    self._check_producer(t, order)
                    st = state.get(id(t.node), 0)
                    if st == 1:
                        raise ValueError(
                            f'The graph has a cycle through layer "{t.node.layer.name}": a tensor '
                            f"depends on itself."
                        )
                    if st == 0:
                        state[id(t.node)] = 1
                        stack.append((t.node, iter(t.node.inputs)))
                        break
                else:
                    state[id(node)] = 2
                    order.append(node)
                    stack.pop()
        order.sort(key=lambda n: n.serial)
        pos = {id(n): i for i, n in enumerate(order)}
        for i, n in enumerate(order):  # creation order is topological unless nodes were hand-made
            if any(id(t) not in input_ids and pos[id(t.node)] >= i for t in n.inputs):
                raise ValueError(f'The graph has a cycle through layer "{n.layer.name}".')
        return order

    def _check_producer(self, tensor, order):
        if tensor.node is None or tensor.node.is_input:
            self._disconnected(tensor, order)

    def _disconnected(self, tensor, order):
        layer = "an unknown producer" if tensor.node is None else f'layer "{tensor.node.layer.name}"'
        raise ValueError(
            f"Graph disconnected: cannot obtain value for tensor {tensor!r} at {layer}. The model's "
            f"inputs are {[t.node.layer.name for t in self.inputs]}; pass every Input the outputs "
            f"depend on. The following previous layers were accessed without issue: "
            f"{[n.layer.name for n in order]}"
        )

    def _check_names(self):
        layers = [t.node.layer for t in self.inputs]
        seen = {id(layer) for layer in layers}
        for node in self.nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
        names = [layer.name for layer in layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(
                f"All layer names should be unique (weights are saved by name). Duplicated: {dup}"
            )
        self._layers = layers

    @property
    def layers(self) -> list:
        """The model's layers, each once: InputLayers first, then in order of first use."""
        return list(self._layers)

    # -- the execution plan (the trainer's engine) ------------------------------------
    def _make_plan(self):
        """Compile the nodes into an :class:`~fastconv.engine.graph.ExecutionPlan` (once)."""
        ids = {id(t): i for i, t in enumerate(self.inputs)}
        for node in self.nodes:
            ids[id(node.outputs[0])] = len(ids)
        uses = {}
        for node in self.nodes:
            uses.setdefault(id(node.layer), []).append(node)
        states = {}
        plan_nodes = []
        for node in self.nodes:
            layer = node.layer
            if len(uses[id(layer)]) > 1:
                state = states.setdefault(id(layer), _SharedState(layer))
                layer = _SharedUse(layer, state)
            plan_nodes.append(
                PlanNode(layer, [ids[id(t)] for t in node.inputs], ids[id(node.outputs[0])])
            )
        self._execution_plan = ExecutionPlan(
            plan_nodes, tuple(range(len(self.inputs))), tuple(ids[id(t)] for t in self.outputs)
        )

    def _plan(self):
        return self._execution_plan

    # -- running the graph --------------------------------------------------------
    def _inputs_listed(self) -> bool:
        return not self._single_input

    def _inputs_from_dict(self, x) -> list:
        names = [t.node.layer.name for t in self.inputs]
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(f"Missing model inputs {missing}; the model's inputs are {names}.")
        return [x[n] for n in names]

    def _cast_inputs(self, arrays) -> list:
        """Check each input array against its ``Input`` shape and convert it to that input's dtype."""
        if len(arrays) != len(self.inputs):
            raise ValueError(
                f'Model "{self.name}" expects {len(self.inputs)} input(s), but it received {len(arrays)} '
                f"input arrays."
            )
        out = []
        for i, (a, t) in enumerate(zip(arrays, self.inputs)):
            a = np.asarray(a)
            want = t.sample_shape
            ok = a.ndim == len(want) + 1 and all(w is None or w == d for w, d in zip(want, a.shape[1:]))
            if not ok:
                raise ValueError(
                    f'Input {i} of model "{self.name}" is incompatible with the model: expected shape '
                    f"{shape_str(want)}, found shape {a.shape}"
                )
            if a.dtype.kind not in "fiub":
                raise TypeError(
                    f"Model inputs must be numeric arrays. Received dtype {a.dtype} for input {i}."
                )
            dtype = t.node.layer.dtype
            out.append(a if a.dtype == dtype else a.astype(dtype))
        if len({a.shape[0] for a in out}) > 1:
            raise ValueError(
                f"All model inputs need the same batch size. Received shapes {[a.shape for a in out]}"
            )
        return out

    def _pack_outputs(self, outs):
        return outs[0] if self._single_output else list(outs)

    def _forward(self, x, training=False):
        """Run the graph on arrays (``x``: one array, a list in ``inputs`` order, or a dict by input
        name); returns one array, or a list (one per output)."""
        return self._pack_outputs(self._plan().forward(self._prepare_inputs(x), training=training))

    def _backward(self, dy) -> None:
        """Backpropagate ``dy`` = d loss / d output (a list per output; None = no loss on it) after
        ``_forward(x, training=True)``; fills every layer's ``grads`` (summed over shared uses; zeros
        for layers no gradient reaches)."""
        dys = [dy] if self._single_output else list(dy)
        if len(dys) != len(self.outputs):
            raise ValueError(f"Expected {len(self.outputs)} output gradients, received {len(dys)}.")
        self._plan().backward([None if g is None else np.asarray(g) for g in dys])

    def regularization_loss(self) -> float:
        """Sum of the layers' regularization penalties (a shared layer counts once)."""
        return float(sum(layer.regularization_loss() for layer in self._layers))

    # -- shapes ---------------------------------------------------------------------
    @property
    def input(self):
        return self.inputs[0] if self._single_input else list(self.inputs)

    @property
    def output(self):
        return self.outputs[0] if self._single_output else list(self.outputs)

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if self._single_input else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if self._single_output else shapes

    # -- summary ----------------------------------------------------------------------
    def _node_ref(self, tensor) -> str:
        """Keras's ``layer_name[node_index][tensor_index]`` for a tensor, node index within this model."""
        node = tensor.node
        return f"{node.layer.name}[{self._model_nodes(node.layer).index(node)}][0]"

    def _model_nodes(self, layer) -> list:
        if layer.__dict__.get("_fc_nodes") and isinstance(layer, InputLayer):
            return layer._fc_nodes[:1]
        return [n for n in self.nodes if n.layer is layer]

    def _summary_rows(self):
        """Keras's functional summary: one row per layer with a "Connected to" column
        (``layer[node_index][tensor_index]`` of each input; a shared layer lists every call)."""
        rows = []
        for layer in self._layers:
            nodes = self._model_nodes(layer)
            shapes = {t.shape for n in nodes for t in n.outputs}
            shape = str(next(iter(shapes))) if len(shapes) == 1 else "multiple"
            connected = ", ".join(self._node_ref(t) for n in nodes for t in n.inputs) or "-"
            rows.append(
                (f"{layer.name} ({type(layer).__name__})", shape, f"{layer.count_params():,}", connected)
            )
        return ("Layer (type)", "Output Shape", "Param #", "Connected to"), rows

    # -- config -------------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-serialisable architecture (Keras's functional layout, no weights)."""
        layers = []
        for layer in self._layers:
            entry = serialize(layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = [
                {"args": [self._ref_triple(t) for t in n.inputs], "as_list": n.as_list}
                for n in self._model_nodes(layer)
                if not n.is_input
            ]
            layers.append(entry)
        return {
            "name": self.name,
            "layers": layers,
            "input_layers": [self._ref_triple(t) for t in self.inputs],
            "output_layers": [self._ref_triple(t) for t in self.outputs],
            "single_input": self._single_input,
            "single_output": self._single_output,
        }

    def _ref_triple(self, tensor) -> list:
        node = tensor.node
        return [node.layer.name, self._model_nodes(node.layer).index(node), 0]

    @classmethod
    def _graph_from_config(cls, config):
        """``(inputs, outputs)`` rebuilt from :meth:`get_config` (fresh, unbuilt-then-built layers)."""
        try:
            specs = list(config["layers"])
            in_refs, out_refs = config["input_layers"], config["output_layers"]
        except (KeyError, TypeError):
            raise ValueError(
                "A functional model config needs 'layers', 'input_layers' and 'output_layers'. "
                f"Received keys: {sorted(config) if isinstance(config, dict) else type(config).__name__}"
            ) from None
        layers = {}
        for spec in specs:
            layer = deserialize({"class_name": spec["class_name"], "config": spec.get("config", {})})
            name = spec.get("name", layer.name)
            if name in layers:
                raise ValueError(f'Duplicate layer name "{name}" in the model config.')
            layers[name] = layer
        made = {name: [] for name in layers}  # layer name -> output tensor of each node, in order
        for name, layer in layers.items():
            if isinstance(layer, InputLayer):
                made[name].append(layer.output)
        queue = [
            (name, i, node)
            for name, spec in zip(layers, specs)
            for i, node in enumerate(spec.get("inbound_nodes", []))
        ]

        def lookup(ref, where):
            lname, nidx = ref[0], int(ref[1])
            if lname not in layers:
                raise ValueError(f'Unknown layer "{lname}" referenced as an input of layer "{where}".')
            outs = made[lname]
            return outs[nidx] if nidx < len(outs) else None

        while queue:
            left = []
            for name, i, node in queue:
                args = node["args"] if isinstance(node, dict) else node
                tensors = [lookup(ref, name) for ref in args]
                if any(t is None for t in tensors) or len(made[name]) != i:
                    left.append((name, i, node))
                    continue
                as_list = (
                    node.get("as_list", len(tensors) > 1) if isinstance(node, dict) else len(tensors) > 1
                )
                made[name].append(layers[name](tensors if as_list else tensors[0]))
            if len(left) == len(queue):
                cls._stuck_error(left, layers, specs)
            queue = left

        def resolve(refs, what):
            out = []
            for ref in refs:
                t = lookup(ref, what)
                if t is None:
                    raise ValueError(f"Model {what} refers to a node that does not exist: {ref}")
                out.append(t)
            return out

        inputs, outputs = resolve(in_refs, "inputs"), resolve(out_refs, "outputs")
        if config.get("single_input", len(inputs) == 1):
            inputs = inputs[0]
        if config.get("single_output", len(outputs) == 1):
            outputs = outputs[0]
        return inputs, outputs

    @staticmethod
    def _stuck_error(left, layers, specs):
        """Why some nodes of a config can never run: a missing node, else a cycle."""
        n_nodes = {
            name: (1 if isinstance(layer, InputLayer) else len(spec.get("inbound_nodes", [])))
            for (name, layer), spec in zip(layers.items(), specs)
        }
        for name, _, node in left:
            for ref in node["args"] if isinstance(node, dict) else node:
                if int(ref[1]) >= n_nodes[ref[0]]:
                    raise ValueError(
                        f'Layer "{name}" takes node {ref[1]} of layer "{ref[0]}", which has only '
                        f"{n_nodes[ref[0]]} node(s) in the config."
                    )
        stuck = sorted({name for name, _, _ in left})
        raise ValueError(f"The graph has a cycle: layers {stuck} depend on each other's outputs.")


class Model(Functional, BaseModel):
    """A model defined by a graph of layer calls (Keras's functional ``Model``).

    compile / fit / evaluate / predict / summary / save / ``fastconv.load_model`` /
    get_weights / set_weights come from :class:`fastconv.engine.base.BaseModel` (the same
    engine as ``Sequential``); this class supplies the graph.

    Parameters
    ----------
    inputs : KerasTensor or list of KerasTensor
        From :func:`Input`.
    outputs : KerasTensor or list of KerasTensor
        Results of layer calls on the inputs.
    name : str, optional

    Examples
    --------
    >>> from fastconv import Input, layers as L
    >>> inp = Input((28, 28, 1))
    >>> x = L.Conv2D(8, 3, activation="relu")(inp)
    >>> out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    >>> model = Model(inp, out)
    >>> model.count_params()
    170
    """

    def __init__(self, inputs, outputs, name=None):
        BaseModel.__init__(self, name=name)
        self._init_graph(inputs, outputs)

    @property
    def layers(self) -> list:
        return list(self._layers)

    @property
    def built(self) -> bool:
        return True

    @property
    def dtype(self):
        """The dtype inputs are converted to: the first input's (``Input(dtype=...)``)."""
        return self.inputs[0].node.layer.dtype

    def build(self, input_shape=None):
        """A graph model is built when it is created; ``input_shape`` is only checked."""
        if input_shape is not None and self._single_input:
            want = self.inputs[0].sample_shape
            got = tuple(input_shape)[1:]
            if len(got) != len(want) or any(
                w is not None and g is not None and w != g for w, g in zip(want, got)
            ):
                raise ValueError(
                    f'Model "{self.name}" takes inputs {shape_str(want)}; received {tuple(input_shape)}.'
                )

    def _ensure_built(self, batch_shape):
        self.build(batch_shape)

    def __call__(self, x, training=False):
        if is_symbolic(x):
            raise NotImplementedError(
                "Calling a Model on symbolic tensors (nesting models) is not supported yet."
            )
        return self._forward(x, training=training)

    def _node_index(self, layer):
        """Plan index of the (first) node of ``layer`` (a Layer, its name, or its index in ``layers``),
        for ``layer_output`` and the feature-map pictures."""
        if isinstance(layer, (int, np.integer)):
            layer = self._layers[layer]
        elif isinstance(layer, str):
            layer = self.get_layer(layer)
        for i, node in enumerate(self.nodes):
            if node.layer is layer:
                return i
        raise ValueError(
            f'Layer "{getattr(layer, "name", layer)}" has no node to read an output from in model '
            f'"{self.name}" (an InputLayer, or not part of this model).'
        )

    @classmethod
    def from_config(cls, config):
        inputs, outputs = cls._graph_from_config(config)
        return cls(inputs, outputs, name=config.get("name"))

    def __repr__(self):
        return f"<Model name={self.name}, inputs={len(self.inputs)}, outputs={len(self.outputs)}>"




# load_model finds graph models in the layer registry as "Model" (their class name) or Keras 3's
# "Functional".
register_layer(Model)
register_layer(Model, name="Functional")
