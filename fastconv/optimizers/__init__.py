"""Optimizers (Keras 3's names, defaults and update formulas), updating weights in place.

Design notes
------------
* ``optimizer.apply(pairs)`` takes ``[(key, param, grad), ...]`` (a model's
  ``trainable_pairs()``, read every step, cached until a layer is frozen or unfrozen, so
  freezing takes effect without recompiling) and updates each ``param`` **in place**; layers and
  savers keep references to the same arrays. A model's pairs are views of one flat buffer per
  dtype (``fastconv.engine.flat``); the compiled step then runs over one segment per dtype.
* One step follows Keras 3's ``BaseOptimizer.apply``: gradients are clipped
  (``clipnorm`` per weight, ``global_clipnorm`` over all, or ``clipvalue``), the
  decoupled weight decay ``w -= w * weight_decay * lr`` is applied, then the
  optimizer's own update with ``lr``; ``iterations`` is incremented last. ``lr``
  is the learning rate at the step *before* the increment (a schedule sees 0 on
  the first update).
* ``learning_rate`` is a float, a :mod:`fastconv.optimizers.schedules` schedule
  or any callable; ``optimizer.learning_rate`` reads the current value as a
  float and can be assigned (not when it is a schedule, as in Keras).
* The step runs compiled: every weight's clip, weight decay and update in one
  OpenMP pass of ``fastconv._kernels.optim`` over a segment table cached while the
  arrays stay the same (``fastconv.optimizers._compiled``). The NumPy update of each
  class (``_update``, weight by weight) is the reference it is tested against (equal
  bit for bit in float32 and float64 but for the norm-based clips' summation order)
  and the path taken when the step cannot be compiled (a subclass with its own
  update, mixed dtypes, non-contiguous or aliased arrays).
* Slots (momentum, moments, accumulators) live in dicts keyed by the pair's key
  (``"conv2d/kernel"``). A key seen for the first time, or whose shape changed,
  starts from fresh slots. A frozen layer sends no pairs, so its slots are left
  untouched until it is unfrozen. ``get_state`` / ``set_state`` give the slots and
  the step count to ``fastconv.saving``, so a loaded model resumes training.

Update rules (Keras 3, ``t = iterations + 1``)
------------------------------------------------
SGD:      ``m = momentum m - lr g``; ``w += m`` (Nesterov: ``w += momentum m - lr g``); ``w -= lr g`` without momentum.
RMSprop:  ``v = rho v + (1 - rho) g^2``; ``w -= lr g / sqrt(v + eps)`` (centered: ``v - mg^2``; with momentum, through ``m``).
Adam:     ``m += (1 - b1)(g - m)``; ``v += (1 - b2)(g^2 - v)``; ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``.
AdamW:    Adam with ``weight_decay=0.004``.
Adagrad:  ``a += g^2`` (``a`` starts at 0.1); ``w -= lr g / sqrt(a + eps)``.
Adadelta: ``a = rho a + (1 - rho) g^2``; ``d = -sqrt(s + eps) g / sqrt(a + eps)``; ``s = rho s + (1 - rho) d^2``; ``w += lr d``.
Adamax:   ``m += (1 - b1)(g - m)``; ``u = max(b2 u, |g|)``; ``w -= lr m / ((1 - b1^t)(u + eps))``.
Nadam:    Adam with Nesterov momentum and Keras's momentum schedule ``b1 (1 - 0.5 * 0.96^t)``.

Examples
--------
>>> import numpy as np
>>> w = np.array([1.0]); g = np.array([0.5])
>>> SGD(learning_rate=0.1).apply([("w", w, g)]); w
array([0.95])
"""

from __future__ import annotations

import inspect
import math
import re
import warnings

import numpy as np

from fastconv.optimizers import _compiled, schedules

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Nadam",
    "Optimizer",
    "RMSprop",
    "deserialize",
    "get",
    "schedules",
    "serialize",
]

# Keras 3 arguments fastconv does not implement: accepted at their defaults (so Keras configs load),
# refused otherwise.
_UNSUPPORTED_DEFAULTS = {
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}


def _check_number(value, name, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"Argument `{name}` must be a number. Received: {name}={value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"Argument `{name}` must be in {lo}{low}, {high}{hi}. Received: {name}={value!r}")
    return v


def _takes_step(fn) -> bool:
    """Whether a learning-rate callable takes the step (Keras 3 calls it with no argument)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) and p.default is p.empty
        for p in params
    )


class Optimizer:
    """Base class: the learning rate (float, schedule or callable), Keras 3's common arguments,
    the step counter and per-key slots.

    Parameters
    ----------
    learning_rate : float, a ``LearningRateSchedule`` or a callable
        A callable is called with the step (``iterations``) when it takes an argument, else with
        none (Keras 3 calls it with none).
    weight_decay : float, optional
        Decoupled weight decay: ``w -= w * weight_decay * lr`` before each update.
    clipnorm, clipvalue, global_clipnorm : float, optional
        Clip each gradient to this L2 norm, each element to ``[-clipvalue, clipvalue]``, or all
        gradients together to this global norm. At most one may be set.
    name : str, optional
    """

    _slot_names: tuple = ()
    #: The slots in the order the compiled step (src/optim_impl.h) reads them as s0, s1, s2.
    _c_slots: tuple = ()
    #: Whether ``apply`` may take the compiled step (False: always the NumPy reference update).
    _compiled = True

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        name=None,
        **kwargs,
    ):
        if "lr" in kwargs:
            raise ValueError(
                f"Argument `lr` is not supported (Keras 3 removed it): use `learning_rate`, e.g. "
                f"{type(self).__name__}(learning_rate={kwargs['lr']!r}). Received: lr={kwargs['lr']!r}"
            )
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=3)
        for key, default in _UNSUPPORTED_DEFAULTS.items():
            if key in kwargs:
                value = kwargs.pop(key)
                if value != default:
                    raise NotImplementedError(
                        f"{type(self).__name__}: `{key}` is not supported by fastconv. Received: {key}={value!r}"
                    )
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots: dict[str, dict[str, np.ndarray]] = {}
        self._tmp: dict[str, np.ndarray] = {}
        self._slot_version = 0  # bumped whenever slots are created, dropped or restored
        self._layout = None  # the compiled step's tables (fastconv.optimizers._compiled)
        self._set_learning_rate(learning_rate, initial=True)
        self.weight_decay = None if weight_decay is None else _check_number(weight_decay, "weight_decay", 0.0)
        self.clipnorm = None if clipnorm is None else _check_number(clipnorm, "clipnorm", 0.0)
        self.clipvalue = None if clipvalue is None else _check_number(clipvalue, "clipvalue", 0.0)
        self.global_clipnorm = (
            None if global_clipnorm is None else _check_number(global_clipnorm, "global_clipnorm", 0.0)
        )
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self._wd_exclude_keys: set = set()
        self._wd_exclude_pattern = None

    # ---- the learning rate ------------------------------------------------------------------
    def _set_learning_rate(self, value, initial=False):
        if isinstance(value, dict):
            value = schedules.deserialize(value)
        if isinstance(value, schedules.LearningRateSchedule) or callable(value):
            self._learning_rate = value
            self._lr_takes_step = isinstance(value, schedules.LearningRateSchedule) or _takes_step(value)
            return
        if not initial and isinstance(self._learning_rate, schedules.LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its `learning_rate` "
                "constructor argument, hence its learning rate is not settable. If you need the learning "
                "rate to be settable, you should instantiate the optimizer with a float `learning_rate`."
            )
        self._learning_rate = _check_number(value, "learning_rate", 0.0)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update, as a float (a schedule is evaluated at ``iterations``)."""
        lr = self._learning_rate
        if isinstance(lr, float):
            return lr
        return float(lr(self.iterations) if self._lr_takes_step else lr())

    @learning_rate.setter
    def learning_rate(self, value):
        self._set_learning_rate(value)

    # ---- weight decay --------------------------------------------------------------------------
    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Exclude weights from ``weight_decay``: the arrays in ``var_list``, or every weight whose
        key (``"layer/name"``, e.g. ``"dense/bias"``) contains one of the strings in ``var_names``."""
        self._wd_exclude_keys = {id(v) for v in var_list or []}
        self._wd_exclude_pattern = re.compile("|".join(map(re.escape, set(var_names)))) if var_names else None
        self._slot_version += 1

    def _use_weight_decay(self, key, param) -> bool:
        if id(param) in self._wd_exclude_keys:
            return False
        return not (self._wd_exclude_pattern is not None and self._wd_exclude_pattern.search(key))

    # ---- one step ------------------------------------------------------------------------------
    def _clip(self, grads):
        if self.clipnorm:
            c = self.clipnorm
            out = []
            for g in grads:
                norm = math.sqrt(float(np.sum(np.square(g, dtype=np.float64))))
                out.append(g * (c / max(norm, c)) if norm > c else g)
            return out
        if self.global_clipnorm:
            c = self.global_clipnorm
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
            scale = c * min(1.0 / norm, 1.0 / c) if norm > 0 else 1.0
            if not math.isfinite(norm):
                scale = math.nan
            return [g * scale for g in grads] if scale != 1.0 else grads
        if self.clipvalue:
            v = self.clipvalue
            return [np.clip(g, -v, v) for g in grads]
        return grads

    def apply(self, pairs) -> None:
        """One update step for every ``(key, param, grad)``; params are changed in place.
        Pairs whose ``grad`` is None are skipped.

        All weights are updated by one compiled pass (``fastconv.optimizers._compiled``) when they
        can be, else by the NumPy per-weight update (the reference; same arithmetic, same order)."""
        flat = getattr(pairs, "flat", None)  # fastconv.engine.flat.FlatPairs: views of flat buffers
        if flat is None:  # (a FlatPairs has a gradient for every weight)
            pairs = [(k, p, g) for k, p, g in pairs if g is not None]
        lr = self.learning_rate
        if self._compiled and self._compilable():
            self._begin_step(lr)
            if _compiled.step(self, pairs, lr, flat=flat):
                self.iterations += 1
                return
            self._undo_begin_step()
        self._apply_numpy(pairs, lr)

    def _compilable(self) -> bool:
        """Whether this class's update, clipping and weight-decay choice are the ones compiled."""
        cls = type(self)
        if not _REPLACEABLE.isdisjoint(self.__dict__):
            return False  # replaced on the instance
        return (cls._update in _COMPILED_UPDATES and cls._clip is Optimizer._clip
                and cls._use_weight_decay is Optimizer._use_weight_decay
                and cls._begin_step in _COMPILED_BEGINS)

    def _undo_begin_step(self):
        """Undo what ``_begin_step`` changed beyond per-step scalars (Nadam's running product)."""

    def _compiled_step(self, lr):  # pragma: no cover - every compiled class defines it
        """``(kind, flags, scalars)`` of this step for ``fastconv._kernels.optim.update``."""
        raise NotImplementedError

    def _apply_numpy(self, pairs, lr) -> None:
        """The reference step: NumPy, weight by weight."""
        grads = self._clip([g for _, _, g in pairs])
        if self.weight_decay:
            wd = self.weight_decay * lr
            for key, param, _ in pairs:
                if self._use_weight_decay(key, param):
                    param -= param * wd
        self._begin_step(lr)
        for (key, param, _), grad in zip(pairs, grads):
            self._update(key, param, grad, lr)
        self.iterations += 1

    # Keras spelling.
    def apply_gradients(self, grads_and_vars) -> None:
        """Keras-style ``[(grad, param), ...]``; the key is the param's id."""
        self.apply([(str(id(p)), p, g) for g, p in grads_and_vars])

    def _begin_step(self, lr):
        """Per-step scalars shared by every weight (bias corrections)."""

    def _update(self, key, param, grad, lr):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- slots -------------------------------------------------------------------------------
    def _slot_init(self, name) -> float:
        return 0.0

    def _slot(self, key, param):
        """The slot arrays for ``key`` (fresh on first use or after a shape/dtype change)."""
        slots = self._slots.get(key)
        first = next(iter(slots.values())) if slots else None
        if slots is None or (first is not None and (first.shape != param.shape or first.dtype != param.dtype)):
            slots = {n: np.full_like(param, self._slot_init(n), order="C") for n in self._slot_names}
            self._slots[key] = slots
            self._slot_version += 1
        return slots

    def _scratch(self, key, param):
        tmp = self._tmp.get(key)
        if tmp is None or tmp.shape != param.shape or tmp.dtype != param.dtype:
            tmp = self._tmp[key] = np.empty_like(param)
        return tmp

    def reset(self) -> None:
        """Forget all slots and the step counter."""
        self.iterations = 0
        self._slots.clear()
        self._tmp.clear()
        self._slot_version += 1
        self._layout = None

    def get_state(self):
        """``(meta, arrays)``: the step count, optimizer scalars and the slot arrays (for saving)."""
        index, arrays = [], []
        for key, slots in self._slots.items():
            for name, arr in slots.items():
                index.append([key, name])
                arrays.append(arr)
        return {"iterations": int(self.iterations), "slots": index, "scalars": self._state_scalars()}, arrays

    def set_state(self, meta, arrays) -> None:
        """Restore what :meth:`get_state` gave (slots of unknown names are ignored)."""
        self.reset()
        self.iterations = int(meta.get("iterations", 0))
        for (key, name), arr in zip(meta.get("slots", []), arrays):
            if name in self._slot_names:
                self._slots.setdefault(key, {})[name] = np.array(arr)
        for key, slots in list(self._slots.items()):
            if set(slots) != set(self._slot_names):
                del self._slots[key]  # incomplete: start that key afresh
        self._slot_version += 1
        self._set_state_scalars(meta.get("scalars", {}))

    def _state_scalars(self) -> dict:
        return {}

    def _set_state_scalars(self, scalars) -> None:
        pass

    # ---- config ------------------------------------------------------------------------------
    def _learning_rate_config(self):
        lr = self._learning_rate
        if isinstance(lr, float):
            return lr
        if isinstance(lr, schedules.LearningRateSchedule):
            return schedules.serialize(lr)
        warnings.warn(
            f"{type(self).__name__}: a learning_rate callable cannot be serialized; its current value "
            f"{self.learning_rate} is saved instead.",
            stacklevel=3,
        )
        return self.learning_rate

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "learning_rate": self._learning_rate_config(),
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name" and v is not None)
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum (Keras ``SGD``).

    Parameters
    ----------
    learning_rate : float or schedule, default 0.01
    momentum : float in [0, 1], default 0.0
    nesterov : bool, default False
    weight_decay, clipnorm, clipvalue, global_clipnorm, name : see :class:`Optimizer`
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.number)) or not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: momentum={momentum}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._slot_names = ("momentum",) if self.momentum != 0 else ()
        self._c_slots = self._slot_names

    def _compiled_step(self, lr):
        flags = (1 if self.momentum != 0 else 0) | (2 if self.nesterov else 0)
        return 0, flags, (lr, self.momentum)

    def _update(self, key, param, grad, lr):
        tmp = self._scratch(key, param)
        np.multiply(grad, lr, out=tmp)  # lr * g
        if self.momentum == 0:
            param -= tmp
            return
        m = self._slot(key, param)["momentum"]
        m *= self.momentum
        m -= tmp  # m = momentum m - lr g
        if self.nesterov:
            param -= tmp
            np.multiply(m, self.momentum, out=tmp)
            param += tmp
        else:
            param += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """RMSprop (Keras ``RMSprop``, the default optimizer of ``compile``).

    Parameters
    ----------
    learning_rate : float or schedule, default 0.001
    rho : float, default 0.9
        Discount of the running mean of squared gradients.
    momentum : float, default 0.0
    epsilon : float, default 1e-7
    centered : bool, default False
        Normalise by the variance (mean square minus squared mean) instead of the mean square.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.rho = _check_number(rho, "rho", 0.0, 1.0)
        self.momentum = _check_number(momentum, "momentum", 0.0)
        self.epsilon = _check_number(epsilon, "epsilon", 0.0)
        self.centered = bool(centered)
        names = ["velocity"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        self._slot_names = tuple(names)
        self._c_slots = ("velocity", "momentum", "average_gradient")

    def _compiled_step(self, lr):
        flags = (1 if self.momentum > 0 else 0) | (4 if self.centered else 0)
        return 1, flags, (lr, self.rho, 1 - self.rho, self.epsilon, self.momentum)

    def _update(self, key, param, grad, lr):
        slots = self._slot(key, param)
        tmp = self._scratch(key, param)
        v, rho = slots["velocity"], self.rho
        np.square(grad, out=tmp)
        tmp *= 1 - rho
        v *= rho
        v += tmp  # v = rho v + (1 - rho) g^2
        if self.centered:
            a = slots["average_gradient"]
            a *= rho
            a += (1 - rho) * grad
            np.square(a, out=tmp)
            np.subtract(v, tmp, out=tmp)
            tmp += self.epsilon
        else:
            np.add(v, self.epsilon, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(lr * grad, tmp, out=tmp)  # increment = lr g / sqrt(denominator)
        if self.momentum > 0:
            m = slots["momentum"]
            m *= self.momentum
            m += tmp
            param -= m
        else:
            param -= tmp

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adam(Optimizer):
    """Adam (Keras ``Adam``: ``learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False``).

    ``amsgrad=True`` keeps the running maximum of the second moment (Keras's AMSGrad variant).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.beta_1 = _check_number(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _check_number(beta_2, "beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = _check_number(epsilon, "epsilon", 0.0)
        self.amsgrad = bool(amsgrad)
        self._slot_names = ("momentum", "velocity", "velocity_hat") if self.amsgrad else ("momentum", "velocity")
        self._c_slots = ("momentum", "velocity", "velocity_hat")

    def _begin_step(self, lr):
        t = self.iterations + 1
        self._alpha = lr * math.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t)

    def _compiled_step(self, lr):
        return 2, 8 if self.amsgrad else 0, (1.0 - self.beta_1, 1.0 - self.beta_2, self._alpha, self.epsilon)

    def _update(self, key, param, grad, lr):
        slots = self._slot(key, param)
        tmp = self._scratch(key, param)
        m, v = slots["momentum"], slots["velocity"]
        np.subtract(grad, m, out=tmp)
        tmp *= 1.0 - self.beta_1
        m += tmp  # m += (1 - b1)(g - m)
        np.square(grad, out=tmp)
        tmp -= v
        tmp *= 1.0 - self.beta_2
        v += tmp  # v += (1 - b2)(g^2 - v)
        if self.amsgrad:
            v = np.maximum(slots["velocity_hat"], v, out=slots["velocity_hat"])
        np.sqrt(v, out=tmp)
        tmp += self.epsilon
        np.divide(m * self._alpha, tmp, out=tmp)
        param -= tmp

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras ``AdamW``: ``weight_decay=0.004``)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name, **kwargs)


class Adagrad(Optimizer):
    """Adagrad (Keras ``Adagrad``: ``learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7``)."""

    _slot_names = ("accumulator",)
    _c_slots = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.initial_accumulator_value = _check_number(initial_accumulator_value, "initial_accumulator_value", 0.0)
        self.epsilon = _check_number(epsilon, "epsilon", 0.0)

    def _slot_init(self, name):
        return self.initial_accumulator_value

    def _compiled_step(self, lr):
        return 3, 0, (lr, self.epsilon)

    def _update(self, key, param, grad, lr):
        acc = self._slot(key, param)["accumulator"]
        tmp = self._scratch(key, param)
        np.square(grad, out=tmp)
        acc += tmp
        np.add(acc, self.epsilon, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(lr * grad, tmp, out=tmp)
        param -= tmp

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta (Keras ``Adadelta``: ``learning_rate=0.001, rho=0.95, epsilon=1e-7``)."""

    _slot_names = ("accumulated_grad", "accumulated_delta_var")
    _c_slots = _slot_names

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.rho = _check_number(rho, "rho", 0.0, 1.0)
        self.epsilon = _check_number(epsilon, "epsilon", 0.0)

    def _compiled_step(self, lr):
        return 4, 0, (self.rho, 1 - self.rho, self.epsilon, lr)

    def _update(self, key, param, grad, lr):
        slots = self._slot(key, param)
        ag, ad = slots["accumulated_grad"], slots["accumulated_delta_var"]
        rho, eps = self.rho, self.epsilon
        ag *= rho
        ag += (1 - rho) * np.square(grad)
        delta = -(np.sqrt(ad + eps) * grad) / np.sqrt(ag + eps)
        ad *= rho
        ad += (1 - rho) * np.square(delta)
        delta *= lr
        param += delta

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adamax(Optimizer):
    """Adamax, Adam with the infinity norm (Keras ``Adamax``: ``learning_rate=0.001, beta_1=0.9,
    beta_2=0.999, epsilon=1e-7``)."""

    _slot_names = ("momentum", "norm")
    _c_slots = _slot_names

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.beta_1 = _check_number(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _check_number(beta_2, "beta_2", 0.0, 1.0)
        self.epsilon = _check_number(epsilon, "epsilon", 0.0)

    def _compiled_step(self, lr):
        t = self.iterations + 1
        return 5, 0, (1 - self.beta_1, self.beta_2, lr, 1 - self.beta_1**t, self.epsilon)

    def _update(self, key, param, grad, lr):
        slots = self._slot(key, param)
        m, u = slots["momentum"], slots["norm"]
        t = self.iterations + 1
        m += (grad - m) * (1 - self.beta_1)
        np.maximum(u * self.beta_2, np.abs(grad), out=u)
        param -= (lr * m) / ((1 - self.beta_1**t) * (u + self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Nadam(Optimizer):
    """Nadam, Adam with Nesterov momentum (Keras ``Nadam``: ``learning_rate=0.001, beta_1=0.9,
    beta_2=0.999, epsilon=1e-7``), with Keras's momentum schedule ``beta_1 (1 - 0.5 * 0.96^t)``."""

    _slot_names = ("momentum", "velocity")
    _c_slots = _slot_names

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.beta_1 = _check_number(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _check_number(beta_2, "beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = _check_number(epsilon, "epsilon", 0.0)
        self._u_product = 1.0

    def _begin_step(self, lr):
        t = self.iterations + 1
        b1 = self.beta_1
        u_t = b1 * (1.0 - 0.5 * 0.96**t)
        u_t1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        self._u_before = self._u_product
        self._u_product *= u_t
        u_prod_t1 = self._u_product * u_t1
        self._c_m = u_t1 / (1.0 - u_prod_t1)  # weight of the momentum in m_hat
        self._c_g = (1.0 - u_t) / (1.0 - self._u_product)  # weight of the gradient in m_hat
        self._v_corr = 1.0 / (1.0 - self.beta_2**t)

    def _undo_begin_step(self):
        self._u_product = self._u_before

    def _compiled_step(self, lr):
        return 6, 0, (1 - self.beta_1, 1 - self.beta_2, self._c_m, self._c_g, self._v_corr, self.epsilon, lr)

    def _update(self, key, param, grad, lr):
        slots = self._slot(key, param)
        m, v = slots["momentum"], slots["velocity"]
        m += (grad - m) * (1 - self.beta_1)
        v += (np.square(grad) - v) * (1 - self.beta_2)
        m_hat = m * self._c_m + grad * self._c_g
        param -= (m_hat * lr) / (np.sqrt(v * self._v_corr) + self.epsilon)

    def reset(self):
        super().reset()
        self._u_product = 1.0

    def _state_scalars(self):
        return {"u_product": self._u_product}

    def _set_state_scalars(self, scalars):
        self._u_product = float(scalars.get("u_product", 1.0))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


_CLASSES = {c.__name__: c for c in (SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Adamax, Nadam)}
_REPLACEABLE = frozenset(("_update", "_clip", "_use_weight_decay", "_begin_step"))
_COMPILED_UPDATES = frozenset(c._update for c in _CLASSES.values())
_COMPILED_BEGINS = frozenset(c._begin_step for c in (Optimizer, *_CLASSES.values()))
_BY_NAME = {name.lower(): cls for name, cls in _CLASSES.items()}


def get(identifier) -> Optimizer:
    """An optimizer from a Keras string identifier (``"sgd"``, ``"rmsprop"``, ``"adam"``,
    ``"adamw"``, ``"adagrad"``, ``"adadelta"``, ``"adamax"``, ``"nadam"``: Keras defaults),
    a config dict or an instance."""
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
    """``{"class_name": ..., "config": ...}`` (JSON-serialisable; a schedule is nested the same way)."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config) -> Optimizer:
    try:
        cls = _CLASSES[config["class_name"]]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown optimizer config: {config!r}. Known classes: {sorted(_CLASSES)}") from None
    return cls.from_config(dict(config.get("config", {})))
