"""Optimizers (Keras names, defaults and update formulas), updating weights in place.

Design notes
------------
* ``optimizer.apply(pairs)`` takes ``[(key, param, grad), ...]`` (a model's
  ``trainable_pairs()``, read afresh every step so freezing a layer takes effect
  without recompiling) and updates each ``param`` **in place**; layers and
  savers keep references to the same arrays.
* Slots (momentum, Adam moments) live in dicts keyed by the pair's unique key
  (``"conv2d/kernel"``). A key seen for the first time, or whose shape changed,
  starts from zero slots. A frozen layer sends no pairs, so its slots are left
  untouched until it is unfrozen.
* ``iterations`` counts ``apply`` calls (Keras's global step); Adam's bias
  correction uses it.
* Scratch buffers are allocated once per key so a step allocates nothing but
  what NumPy's ufuncs need for scalars.

Update rules (as Keras 3 writes them)
-------------------------------------
SGD:   ``v = momentum * v - lr * g``; ``w += v`` (``w += momentum * v - lr * g`` with
       Nesterov); plain ``w -= lr * g`` when ``momentum == 0``.
Adam:  ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
       ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``; ``w -= alpha m / (sqrt(v) + eps)``.

Examples
--------
>>> import numpy as np
>>> w = np.array([1.0]); g = np.array([0.5])
>>> SGD(learning_rate=0.1).apply([("w", w, g)]); w
array([0.95])
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SGD", "Adam", "Optimizer", "deserialize", "get", "serialize"]


class Optimizer:
    """Base class: holds ``learning_rate``, the step counter and per-key slots."""

    def __init__(self, learning_rate=0.01, name=None):
        self.learning_rate = float(learning_rate)
        if not self.learning_rate >= 0 or not math.isfinite(self.learning_rate):
            raise ValueError(
                f"Argument `learning_rate` must be a finite number >= 0. Received: learning_rate={learning_rate}"
            )
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots: dict[str, dict[str, np.ndarray]] = {}

    def _slot(self, key, param, names):
        """The slot arrays for ``key`` (zeros on first use or after a shape/dtype change)."""
        slots = self._slots.get(key)
        first = next(iter(slots.values())) if slots else None
        if first is None or first.shape != param.shape or first.dtype != param.dtype:
            slots = {n: np.zeros_like(param) for n in names}
            self._slots[key] = slots
        return slots

    def apply(self, pairs) -> None:
        """One update step for every ``(key, param, grad)``; params are changed in place."""
        self.iterations += 1
        for key, param, grad in pairs:
            self._update(key, param, grad)

    # Keras spelling.
    def apply_gradients(self, grads_and_vars) -> None:
        """Keras-style ``[(grad, param), ...]``; the key is the param's id."""
        self.apply([(str(id(p)), p, g) for g, p in grads_and_vars])

    def _update(self, key, param, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all slots and the step counter."""
        self.iterations = 0
        self._slots.clear()

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum (Keras ``SGD``).

    Parameters
    ----------
    learning_rate : float, default 0.01
    momentum : float, default 0.0
    nesterov : bool, default False
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name=None):
        super().__init__(learning_rate, name)
        self.momentum = float(momentum)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: momentum={momentum}")
        self.nesterov = bool(nesterov)

    def _update(self, key, param, grad):
        lr = self.learning_rate
        if self.momentum == 0.0:
            slots = self._slot(key, param, ("tmp",))
            tmp = slots["tmp"]
            np.multiply(grad, lr, out=tmp)
            param -= tmp
            return
        slots = self._slot(key, param, ("velocity", "tmp"))
        v, tmp = slots["velocity"], slots["tmp"]
        np.multiply(grad, lr, out=tmp)  # tmp = lr * g
        v *= self.momentum
        v -= tmp  # v = momentum * v - lr * g
        if self.nesterov:
            param -= tmp
            np.multiply(v, self.momentum, out=tmp)
            param += tmp
        else:
            param += v

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config


class Adam(Optimizer):
    """Adam (Keras ``Adam`` defaults: ``learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7``)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, name=None):
        super().__init__(learning_rate, name)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        if amsgrad:
            raise NotImplementedError("Adam(amsgrad=True) is not supported.")
        for nm, b in (("beta_1", self.beta_1), ("beta_2", self.beta_2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"`{nm}` must be in [0, 1). Received: {nm}={b}")

    def apply(self, pairs) -> None:
        self.iterations += 1
        t = self.iterations
        self._alpha = self.learning_rate * math.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t)
        for key, param, grad in pairs:
            self._update(key, param, grad)

    def _update(self, key, param, grad):
        slots = self._slot(key, param, ("m", "v", "tmp"))
        m, v, tmp = slots["m"], slots["v"], slots["tmp"]
        b1, b2 = self.beta_1, self.beta_2
        # m = b1 m + (1 - b1) g  ==  m += (1 - b1) (g - m)
        np.subtract(grad, m, out=tmp)
        tmp *= 1.0 - b1
        m += tmp
        # v = b2 v + (1 - b2) g^2
        np.square(grad, out=tmp)
        tmp *= 1.0 - b2
        v *= b2
        v += tmp
        # w -= alpha m / (sqrt(v) + eps)
        np.sqrt(v, out=tmp)
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= self._alpha
        param -= tmp

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config


_BY_NAME = {"sgd": SGD, "adam": Adam}


def get(identifier) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"adam"``: Keras defaults), a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}. Valid names are {sorted(_BY_NAME)}, "
        f"or pass an Optimizer instance."
    )


def serialize(optimizer) -> dict:
    """``{"class_name": ..., "config": ...}`` (JSON-serialisable)."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config) -> Optimizer:
    classes = {"SGD": SGD, "Adam": Adam}
    try:
        cls = classes[config["class_name"]]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown optimizer config: {config!r}. Known classes: {sorted(classes)}") from None
    return cls.from_config(dict(config.get("config", {})))
