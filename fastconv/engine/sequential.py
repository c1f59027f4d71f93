"""``Sequential``: a linear stack of layers (Keras ``Sequential``), run as the chain plan
``0 -> layer0 -> 1 -> layer1 -> 2 ...``; everything else comes from
:class:`fastconv.engine.base.BaseModel`.

Once the input shape is known (``input_shape`` on the first layer, a leading ``Input(...)`` /
``InputLayer(shape=...)``, or ``build``), the model also calls its layers on a symbolic input, as
Keras does, so ``model.inputs`` / ``model.outputs`` and every ``layer.output`` exist and a feature
extractor is one line: ``Model(model.inputs, model.get_layer("conv2").output)`` (it shares the
layers, hence the weights). The numeric path never uses that graph.

Examples
--------
>>> from fastconv.layers import Conv2D, MaxPooling2D, Flatten, Dense
>>> model = Sequential([Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1)),
...                     MaxPooling2D(), Flatten(), Dense(10, activation="softmax")])
>>> model.count_params()
13610
"""

from __future__ import annotations

from fastconv.engine.base import BaseModel
from fastconv.engine.graph import ExecutionPlan
from fastconv.layers._symbolic import KerasTensor
from fastconv.layers.base import Layer, deserialize, register_layer, serialize
from fastconv.layers.input_layer import InputLayer

__all__ = ["Sequential"]


# load_model finds Sequential models by their class name in the layer registry.
@register_layer
class Sequential(BaseModel):
    """A linear stack of layers (Keras ``Sequential``).

    Parameters
    ----------
    layers : list of Layer, optional
        The first may carry ``input_shape=(H, W, C)``; then every layer is built at once.
    name : str, optional

    Examples
    --------
    >>> from fastconv.layers import Dense
    >>> m = Sequential([Dense(4, input_shape=(3,))]); m.add(Dense(2))
    >>> m.output_shape, m.count_params()
    ((None, 2), 26)
    """

    def __init__(self, layers=None, name=None):
        super().__init__(name=name)
        self._layers: list[Layer] = []
        self._input_shape = None  # per-sample, once known
        self._input_layer = None  # the InputLayer given by the user or made for the symbolic graph
        self._graph = None  # (layers, input tensor, output tensor) of the symbolic graph
        self._graph_error = None
        self._plan_cache = None
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        """Append a layer (built at once when the input shape is known). ``Input(shape)`` or
        ``InputLayer(shape=...)`` may come first: it sets the input shape (and is not listed in
        ``layers``, as in Keras)."""
        if isinstance(layer, KerasTensor) and layer.node is not None and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(
                    f"Sequential model '{self.name}' has already been configured to use input shape "
                    f"{self.input_shape}. You cannot add a different Input layer to it."
                )
            self._input_layer = layer
            self._input_shape = tuple(layer.input_shape)
            return
        if not isinstance(layer, Layer):
            raise TypeError(
                f"The added layer must be an instance of class Layer. Received: layer={layer!r} "
                f"of type {type(layer)}."
            )
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(
                f'All layers added to a Sequential model should have unique names. Name "{layer.name}" is '
                f"already the name of a layer in this model. Update the `name` argument to pass a unique name."
            )
        if not self._layers and layer._input_shape_arg is not None:
            self._input_shape = tuple(layer._input_shape_arg)
        self._layers.append(layer)
        self._plan_cache = None
        if self._input_shape is not None:
            self._build_from(len(self._layers) - 1)

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        self._plan_cache = None
        return layer

    def _build_from(self, start):
        self._build_layers(start)
        self._make_graph()

    def _build_layers(self, start):
        shape = self._input_shape
        for i, layer in enumerate(self._layers):
            if i >= start and not layer.built:
                layer.build(shape)
            elif i >= start and layer.input_shape is not None and tuple(layer.input_shape) != tuple(shape):
                raise ValueError(
                    f'Layer "{layer.name}" was built for input shape {(None, *layer.input_shape)} but '
                    f"receives {(None, *shape)} in this model."
                )
            shape = layer.compute_output_shape(shape)

    def build(self, input_shape=None):
        """Build every layer for Keras's batch-inclusive ``input_shape``, e.g. ``(None, 28, 28, 1)``."""
        if input_shape is None:
            if self._input_shape is None:
                raise ValueError(
                    "You must provide an `input_shape` argument, e.g. model.build((None, 28, 28, 1))."
                )
        else:
            shape = tuple(input_shape)
            if len(shape) < 2:
                raise ValueError(
                    f"build() expects a batch-inclusive shape such as (None, 28, 28, 1). Received: {input_shape}"
                )
            per_sample = tuple(None if d is None else int(d) for d in shape[1:])
            if self._input_shape is not None and self._input_shape != per_sample and self.built:
                raise ValueError(
                    f"Model was built for input shape {(None, *self._input_shape)}; cannot rebuild it for "
                    f"{(None, *per_sample)}."
                )
            self._input_shape = per_sample
            if self._input_layer is not None and tuple(self._input_layer.input_shape) != per_sample:
                self._input_layer = None  # the graph starts from a new input
                self._graph = None
        if not self._layers:
            raise ValueError("Sequential model has no layers to build.")
        self._build_from(0)

    # -- the symbolic graph (Keras builds one for a Sequential with a known input shape) ---------
    def _make_graph(self):
        """Call the layers on a symbolic input (reusing a layer's node when it already reads the
        same tensor, so rebuilding adds no nodes)."""
        if self._input_shape is None or not self._layers:
            return
        if self._graph is not None and self._graph[0] == tuple(id(l) for l in self._layers):
            return
        if self._input_layer is None:
            self._input_layer = InputLayer(shape=self._input_shape)
        x = inputs = self._input_layer.output
        try:
            for layer in self._layers:
                node = next(
                    (n for n in layer.__dict__.get("_fc_nodes", ()) if len(n.inputs) == 1 and n.inputs[0] is x),
                    None,
                )
                x = node.outputs[0] if node is not None else layer(x)
        except (TypeError, ValueError, NotImplementedError) as e:  # a layer without a symbolic call
            self._graph, self._graph_error = None, e
            return
        self._graph = (tuple(id(l) for l in self._layers), inputs, x)
        self._graph_error = None

    def _symbolic(self, what):
        self._make_graph()
        if self._graph is None:
            why = f" ({self._graph_error})" if self._graph_error is not None else ""
            raise AttributeError(f"Sequential model '{self.name}' has no defined {what} yet{why}.")
        return self._graph

    @property
    def inputs(self) -> list:
        """``[input tensor]`` of the symbolic graph (Keras's ``model.inputs``)."""
        return [self._symbolic("inputs")[1]]

    @property
    def outputs(self) -> list:
        """``[output tensor]`` of the symbolic graph (Keras's ``model.outputs``)."""
        return [self._symbolic("outputs")[2]]

    @property
    def input(self):
        return self._symbolic("input")[1]

    @property
    def output(self):
        return self._symbolic("output")[2]

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None, *self._input_shape)

    @property
    def output_shape(self):
        """Keras's batch-inclusive output shape, e.g. ``(None, 10)``."""
        if self._input_shape is None or not self._layers:
            raise AttributeError(
                "The model has not been built yet (no input shape): output_shape is undefined. "
                "Call model.build((None, H, W, C)) or pass input_shape to the first layer."
            )
        shape = self._input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
        return (None, *shape)

    def _plan(self):
        plan = self._plan_cache
        if (
            plan is None
            or len(plan.nodes) != len(self._layers)
            or any(n.layer is not l for n, l in zip(plan.nodes, self._layers))
        ):
            plan = ExecutionPlan.chain(self._layers)
            self._plan_cache = plan
        return plan

    def _summary_rows(self):
        rows = []
        shape = self._input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
            rows.append(
                (f"{layer.name} ({type(layer).__name__})", str((None, *shape)), f"{layer.count_params():,}")
            )
        return ("Layer (type)", "Output Shape", "Param #"), rows

    def get_config(self):
        config = {"name": self.name, "layers": [serialize(layer) for layer in self._layers]}
        if self._input_shape is not None:
            config["build_input_shape"] = [None, *self._input_shape]
        return config

    @classmethod
    def from_config(cls, config):
        model = cls(name=config.get("name"))
        for d in config.get("layers", []):
            model.add(deserialize(d))
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            model.build(tuple(shape))
        return model
