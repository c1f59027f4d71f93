"""``Sequential``: a linear stack of layers (Keras ``Sequential``), run as the chain plan
``0 -> layer0 -> 1 -> layer1 -> 2 ...``; everything else comes from
:class:`fastconv.engine.base.BaseModel`.

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
from fastconv.layers.base import Layer, deserialize, register_layer, serialize

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
        self._plan_cache = None
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        """Append a layer (built at once when the input shape is known)."""
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
        if not self._layers:
            raise ValueError("Sequential model has no layers to build.")
        self._build_from(0)

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
