"""Lambda: wrap a NumPy function as a layer (Keras ``Lambda``).

Design notes
------------
* Forward: ``function(x, **arguments)``. fastconv has no automatic differentiation, so the
  backward pass needs help: ``gradient(dy, x, **arguments) -> dx`` (a fastconv extra). Without
  it a Lambda still trains wherever no input gradient is asked of it (the first layer of a
  model, e.g. input preprocessing); anywhere else ``backward`` raises and says what to do.
* Saving. Keras serialises a Python lambda as its bytecode: tied to one Python version, and
  loading it runs arbitrary code (Keras 3 refuses unless ``safe_mode=False``). fastconv saves
  named **module-level functions by import path** instead (``{"module": "mypkg.ops",
  "function_name": "center"}``), which is readable, survives Python upgrades and loads wherever
  the module is importable; ``get_config`` refuses lambdas, closures and nested functions with
  an error that says how to make them saveable (define the function at module level, or write a
  ``Layer`` subclass registered with ``register_layer``). Loading imports the named module, so
  load only files you trust, as with any format that names code.
"""

from __future__ import annotations

import importlib

import numpy as np

from fastconv.layers.base import Layer, register_layer

__all__ = ["Lambda"]


def _function_path(fn, what, layer_name):
    """``{"module", "function_name"}`` for a module-level function, else ValueError."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    ok = isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname
    if ok:
        try:
            found = _resolve(module, qualname)
        except (ImportError, AttributeError):
            found = None
        ok = found is fn
    if not ok:
        raise ValueError(
            f'Layer "{layer_name}": cannot save the Lambda `{what}` {fn!r}. fastconv saves a Lambda\'s '
            "function by its import path, so it must be a named function defined at the top level of an "
            "importable module (not a lambda, a closure or a nested function). Define it with `def` at "
            "module level, or write a Layer subclass and register it with fastconv.layers.register_layer."
        )
    return {"class_name": "function", "module": module, "function_name": qualname}


def _resolve(module, qualname):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _load_function(spec, what):
    if spec is None or callable(spec):
        return spec
    if not (isinstance(spec, dict) and "module" in spec and "function_name" in spec):
        raise ValueError(
            f"Lambda `{what}` must be a callable or a saved import path "
            f'{{"module": ..., "function_name": ...}}. Received: {what}={spec!r}'
        )
    try:
        fn = _resolve(spec["module"], spec["function_name"])
    except (ImportError, AttributeError) as e:
        raise ValueError(
            f"Could not load the Lambda `{what}` {spec['module']}.{spec['function_name']}: {e}. "
            "The module that defines it must be importable when the model is loaded."
        ) from None
    if not callable(fn):
        raise ValueError(f"Lambda `{what}` {spec['module']}.{spec['function_name']} is not callable.")
    return fn


@register_layer
class Lambda(Layer):
    """Apply ``function(x, **arguments)`` to the batch (Keras ``Lambda``).

    Parameters
    ----------
    function : callable
        Takes and returns a NumPy array (batch axis first).
    output_shape : tuple, callable or None
        Per-sample output shape (no batch axis), or a function of the full input shape (with
        the batch axis) returning the full output shape (Keras). ``None``: found by running
        ``function`` on one sample of zeros when the input shape is known, else the input shape.
    mask : None
        Keras's masking; fastconv has no masks, so only ``None`` is accepted.
    arguments : dict, optional
        Keyword arguments passed to ``function`` (and ``gradient``); JSON values to be saveable.
    gradient : callable, optional
        fastconv extra: ``gradient(dy, x, **arguments) -> dx``, the input gradient.

    Examples
    --------
    >>> double = Lambda(np.negative); double(np.ones((1, 2)))
    array([[-1., -1.]], dtype=float32)
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, gradient=None, **kwargs):
        super().__init__(**kwargs)
        self.function = _load_function(function, "function")
        if not callable(self.function):
            raise ValueError(f"Lambda `function` must be callable. Received: function={function!r}")
        self.gradient = _load_function(gradient, "gradient")
        if mask is not None:
            raise ValueError(
                f"fastconv layers have no masks; Lambda `mask` must be None. Received: mask={mask!r}"
            )
        if isinstance(output_shape, dict):  # a saved import path
            output_shape = _load_function(output_shape, "output_shape")
        elif output_shape is not None and not callable(output_shape):
            output_shape = tuple(None if d is None else int(d) for d in output_shape)
        self.output_shape_arg = output_shape
        self.arguments = dict(arguments or {})

    def compute_output_shape(self, input_shape):
        spec = self.output_shape_arg
        if spec is None:
            if any(d is None for d in input_shape):
                return tuple(input_shape)
            probe = np.zeros((1, *input_shape), self.dtype)
            return tuple(np.shape(self.function(probe, **self.arguments))[1:])
        if callable(spec):
            return tuple(spec((None, *input_shape)))[1:]
        return spec

    def call(self, x, training=False):
        y = np.asarray(self.function(x, **self.arguments))
        if y.dtype != x.dtype and y.dtype.kind in "fiub":
            y = y.astype(x.dtype)
        if training:
            self._cache = x
        return y

    def call_backward(self, dy):
        x = self._need_cache()
        if not self.need_input_grad:
            return None
        if self.gradient is None:
            raise NotImplementedError(
                f'Layer "{self.name}" (Lambda) cannot compute its input gradient: fastconv does not '
                "differentiate arbitrary Python. Pass `gradient=fn(dy, x) -> dx`, put the Lambda first in "
                "the model (no input gradient is needed there), or write a Layer subclass with a backward."
            )
        dx = np.asarray(self.gradient(dy, x, **self.arguments), dtype=dy.dtype)
        if dx.shape != x.shape:
            raise ValueError(
                f'Layer "{self.name}": the Lambda gradient returned shape {dx.shape}, expected the input '
                f"shape {x.shape}."
            )
        return dx

    def get_config(self):
        config = super().get_config()
        spec = self.output_shape_arg
        if callable(spec):
            spec = _function_path(spec, "output_shape", self.name)
        elif spec is not None:
            spec = list(spec)
        config.update(
            {
                "function": _function_path(self.function, "function", self.name),
                "output_shape": spec,
                "mask": None,
                "arguments": self.arguments,
                "gradient": None
                if self.gradient is None
                else _function_path(self.gradient, "gradient", self.name),
            }
        )
        return config
