"""Weight initializers with Keras names, fans and distributions.

Design notes
------------
* Fans follow Keras's ``compute_fans``: for a 2-D kernel ``(fan_in, fan_out)``;
  for a conv kernel ``(KH, KW, C_in, C_out)`` the receptive field ``KH * KW``
  multiplies both, ``fan_in = KH*KW*C_in``, ``fan_out = KH*KW*C_out``.
* The ``*_normal`` variance-scaling initializers draw from a normal truncated
  at two standard deviations, with Keras's correction factor ``0.8796...`` so
  the variance is ``scale / fan``.
* Randomness: an initializer with ``seed=None`` draws from one module-level
  ``np.random.Generator`` (reset it with :func:`set_seed`); with an int seed it
  draws from a fresh generator with that seed on every call (the same values
  each call, as Keras 3 does for seeded initializers).

Examples
--------
>>> set_seed(0)
>>> w = get("glorot_uniform")((3, 3, 1, 32), "float32")
>>> w.shape, w.dtype
((3, 3, 1, 32), dtype('float32'))
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "RandomNormal",
    "RandomUniform",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "deserialize",
    "get",
    "make_rng",
    "serialize",
    "set_seed",
]

_rng = np.random.default_rng()


def set_seed(seed) -> None:
    """Reseed the module-level generator used by unseeded initializers (and layers' RNGs)."""
    global _rng
    _rng = np.random.default_rng(seed)


def make_rng(seed=None) -> np.random.Generator:
    """A generator for ``seed``; with ``seed=None`` one derived from the module generator,
    so :func:`set_seed` makes everything downstream reproducible."""
    if seed is None:
        return np.random.default_rng(int(_rng.integers(2**63)))
    return np.random.default_rng(seed)


def _generator(seed):
    return _rng if seed is None else np.random.default_rng(seed)


def compute_fans(shape):
    """``(fan_in, fan_out)`` of a weight shape, as Keras computes them."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: ``init(shape, dtype="float32") -> np.ndarray``."""

    def __call__(self, shape, dtype="float32"):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def __call__(self, shape, dtype="float32"):
        rng = _generator(self.seed)
        return rng.normal(self.mean, self.stddev, size=shape).astype(dtype, copy=False)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = float(minval), float(maxval), seed

    def __call__(self, shape, dtype="float32"):
        rng = _generator(self.seed)
        return rng.uniform(self.minval, self.maxval, size=shape).astype(dtype, copy=False)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


def _truncated_normal(rng, stddev, shape):
    """Normal(0, stddev) truncated to +-2 stddev (resampling outliers)."""
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


class VarianceScaling(Initializer):
    """Keras's VarianceScaling: variance ``scale / n`` with ``n`` from ``mode``."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if scale <= 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(
                f'Invalid `mode` argument: expected one of {{"fan_in", "fan_out", "fan_avg"}}. '
                f"Received: mode={mode}"
            )
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(
                'Invalid `distribution` argument: expected one of {"truncated_normal", '
                f'"untruncated_normal", "uniform"}}. Received: distribution={distribution}'
            )
        self.scale, self.mode, self.distribution, self.seed = float(scale), mode, distribution, seed

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        var = self.scale / max(1.0, n)
        rng = _generator(self.seed)
        if self.distribution == "truncated_normal":
            w = _truncated_normal(rng, math.sqrt(var) / 0.87962566103423978, shape)
        elif self.distribution == "untruncated_normal":
            w = rng.normal(0.0, math.sqrt(var), size=shape)
        else:
            limit = math.sqrt(3.0 * var)
            w = rng.uniform(-limit, limit, size=shape)
        return np.asarray(w).astype(dtype, copy=False)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


class _Preset(VarianceScaling):
    _args: tuple = ()

    def __init__(self, seed=None):
        super().__init__(*self._args, seed=seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_Preset):
    _args = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    _args = (1.0, "fan_avg", "truncated_normal")


class HeNormal(_Preset):
    _args = (2.0, "fan_in", "truncated_normal")


class HeUniform(_Preset):
    _args = (2.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    _args = (1.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    _args = (1.0, "fan_in", "uniform")


_CLASSES = {
    c.__name__: c
    for c in (
        GlorotUniform,
        GlorotNormal,
        HeNormal,
        HeUniform,
        LecunNormal,
        LecunUniform,
        Zeros,
        Ones,
        Constant,
        RandomNormal,
        RandomUniform,
        VarianceScaling,
    )
}
_NAMES = {
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_normal": HeNormal,
    "he_uniform": HeUniform,
    "lecun_normal": LecunNormal,
    "lecun_uniform": LecunUniform,
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "variance_scaling": VarianceScaling,
}


def get(identifier) -> Initializer:
    """An initializer from a name (``"he_normal"``), an instance, a class or a config dict."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is not None:
            return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return deserialize(identifier)
    raise ValueError(
        f"Could not interpret initializer identifier: {identifier!r}. Valid names are {sorted(_NAMES)}."
    )


def serialize(initializer) -> dict:
    init = get(initializer)
    return {"class_name": type(init).__name__, "config": init.get_config()}


def deserialize(config: dict) -> Initializer:
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"Could not interpret initializer identifier: {config!r}")
    return cls.from_config(dict(config.get("config", {})))
