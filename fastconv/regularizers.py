"""Weight regularizers (Keras names): a loss term and its gradient.

A layer's ``regularization_loss()`` sums ``reg(w)`` over its regularized
weights, and its ``backward`` adds ``reg.gradient(w)`` into the matching grad,
so the optimizer sees the gradient of ``loss + sum(penalties)`` as Keras does.

Examples
--------
>>> r = l2(0.01)
>>> w = np.array([1.0, -2.0])
>>> float(r(w)), r.gradient(w)
(0.05, array([ 0.02, -0.04]))
"""

from __future__ import annotations

import numpy as np

__all__ = ["L1", "L1L2", "L2", "Regularizer", "deserialize", "get", "l1", "l1_l2", "l2", "serialize"]


class Regularizer:
    """Base class: ``reg(w) -> float`` penalty and ``reg.gradient(w) -> array``."""

    def __call__(self, w) -> float:
        return 0.0

    def gradient(self, w):
        return np.zeros_like(w)

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)
        if self.l1 < 0 or self.l2 < 0:
            raise ValueError(f"Regularization factors must be >= 0. Received: l1={l1}, l2={l2}")

    def __call__(self, w) -> float:
        loss = 0.0
        if self.l1:
            loss += self.l1 * float(np.abs(w).sum())
        if self.l2:
            loss += self.l2 * float(np.square(w).sum())
        return loss

    def gradient(self, w):
        g = (2.0 * self.l2) * w if self.l2 else np.zeros_like(w)
        if self.l1:
            g = g + self.l1 * np.sign(w)
        return g.astype(w.dtype, copy=False)

    def add_gradient(self, w, grad) -> None:
        """``grad += gradient(w)`` without a temporary where possible."""
        if self.l2:
            grad += (2.0 * self.l2) * w
        if self.l1:
            grad += self.l1 * np.sign(w)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def l1(l1=0.01) -> L1:
    return L1(l1)


def l2(l2=0.01) -> L2:
    return L2(l2)


def l1_l2(l1=0.01, l2=0.01) -> L1L2:
    return L1L2(l1, l2)


_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2}


def get(identifier):
    """A regularizer from ``None``, an instance, a name (``"l2"``) or a config dict."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is not None:
            return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return deserialize(identifier)
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}")


def serialize(regularizer):
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


def deserialize(config):
    if config is None:
        return None
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"Could not interpret regularizer identifier: {config!r}")
    return cls.from_config(dict(config.get("config", {})))
