"""BatchNormalization (Keras semantics), per channel on the last axis.

Design notes
------------
* Works on any input ``(N, ..., C)``: NHWC images (statistics over N, H, W per
  channel) and ``(N, features)``. The input is viewed as ``(M, C)``.
* Training (``training=True`` and the layer trainable): normalise with the batch
  mean and the biased batch variance, and update the moving statistics in
  place, ``moving = moving * momentum + batch * (1 - momentum)`` (Keras 3).
* Inference, and also training while ``trainable=False`` (Keras's rule for
  frozen BatchNormalization, so fine-tuning keeps the learned statistics):
  ``y = (x - moving_mean) * a + beta`` with ``a = gamma / sqrt(moving_variance + epsilon)``.
* Weights in Keras order: gamma, beta (trainable; ``scale`` / ``center`` drop
  them), moving_mean, moving_variance (non-trainable, in ``state``).
* Backward of the training mode, with ``xhat`` the normalised input:
  ``dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))``
  (fastconv.reference.batch_norm_train_grad is the plain NumPy version).
* The work is done by the compiled kernels of ``fastconv._kernels.norm``: one
  pass for the statistics (float64 partial sums in a fixed order, so the result
  does not depend on the thread count), one to normalise; backward one pass for
  the two sums and one for dx. Only per-channel coefficients are computed here.
  The training cache holds the input (not a normalised copy) and the mean.
* A ReLU or ReLU6 right after the layer can be fused into it
  (``fused_activation``, set by the training plan for the forward it runs): the
  output is then the activation's, and backward masks ``dy`` with it.
* float16 layers compute in float32.
"""

from __future__ import annotations

import numpy as np

from fastconv import _dispatch
from fastconv import initializers as _initializers
from fastconv import regularizers as _regularizers
from fastconv._kernels import norm as _kn
from fastconv.layers.base import Layer, register_layer

__all__ = ["BatchNormalization"]

_INT32_MAX = 2**31 - 1


@register_layer
class BatchNormalization(Layer):
    """Batch normalisation over the last axis (Keras ``BatchNormalization``).

    Params per channel C: gamma, beta (trainable), moving_mean, moving_variance
    (non-trainable): 4 * C in total, e.g. 256 for 64 channels (128 non-trainable).
    """

    min_ndim = 2
    #: "relu" / "relu6" while the training plan runs this layer fused with the activation after it
    fused_activation = None

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if axis not in (-1, [-1], (-1,)):
            raise ValueError(
                f"BatchNormalization supports the channels axis -1 only (NHWC). Received: axis={axis}"
            )
        self.axis = -1
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.moving_mean_initializer = _initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = _initializers.get(moving_variance_initializer)
        self.beta_regularizer = _regularizers.get(beta_regularizer)
        self.gamma_regularizer = _regularizers.get(gamma_regularizer)

    def _build_weights(self, input_shape):
        c = input_shape[-1]
        if c is None:
            raise ValueError(
                f'Axis -1 of the input to layer "{self.name}" must have a defined dimension. '
                f"Received input shape {(None, *input_shape)}"
            )
        if self.scale:
            self.add_weight("gamma", (c,), self.gamma_initializer, self.gamma_regularizer)
        if self.center:
            self.add_weight("beta", (c,), self.beta_initializer, self.beta_regularizer)
        self.add_weight("moving_mean", (c,), self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", (c,), self.moving_variance_initializer, trainable=False)

    def _check_input(self, x):
        self._check_channels(x)

    def _gamma(self):
        return self.params["gamma"] if self.scale else 1.0

    def _beta(self):
        return self.params["beta"] if self.center else 0.0

    def _work(self, t):
        """``t`` as a C-contiguous (M, C) array of the kernels' dtype (float32 or float64)."""
        if t.shape[-1] > _INT32_MAX:  # the kernels keep the channel count in a C int
            raise ValueError(
                f'Layer "{self.name}" supports at most 2**31 - 1 = {_INT32_MAX} channels (axis -1). '
                f"Received input with shape {t.shape}"
            )
        wd = np.float64 if self.dtype == np.float64 else np.float32
        return np.ascontiguousarray(t.reshape(-1, t.shape[-1]), dtype=wd)

    def _vec(self, v, c, dtype):
        """A per-channel coefficient as a contiguous (C,) array of ``dtype``."""
        if type(v) is np.ndarray:  # already (C,): one cast (a copy, so a kernel never sees a weight)
            return v.astype(dtype)
        return np.full(c, v, dtype=dtype)

    def call(self, x, training=False):
        c = x.shape[-1]
        x2 = self._work(x)
        wd = x2.dtype
        act = _kn.ACT_CODES[self.fused_activation]
        isa = _dispatch.level_for("batch_norm", wd)
        threads = _dispatch.threads_for(x2.size)
        y2 = np.empty_like(x2)
        if training and self.trainable:
            m = x2.shape[0]
            mean = np.zeros(c)
            var = np.ones(c)
            if m:
                _kn.bn_stats(x2, mean, var, isa, threads)
            inv = 1.0 / np.sqrt(var + self.epsilon)
            # the kernels subtract the mean rounded to the data's dtype; its rounding error (large
            # means in float32) is folded into the float64 offset instead
            mean_w = mean.astype(wd)
            resid = mean - mean_w
            a = self._gamma() * inv
            _kn.bn_affine(x2, mean_w, self._vec(a, c, wd), self._vec(self._beta() - resid * a, c, wd),
                          y2, act, isa, threads)
            if m:  # an empty batch has no statistics to learn from
                mom = self.momentum
                mm, mv = self.state["moving_mean"], self.state["moving_variance"]
                mm[...] = mm * mom + (1.0 - mom) * mean
                mv[...] = mv * mom + (1.0 - mom) * var
            self._cache = ("train", x2, y2 if act else None, act, mean_w, (inv, resid))
        else:
            a = self._gamma() / np.sqrt(self.state["moving_variance"].astype(np.float64) + self.epsilon)
            _kn.bn_affine(x2, self._vec(self.state["moving_mean"], c, wd), self._vec(a, c, wd),
                          self._vec(self._beta(), c, wd), y2, act, isa, threads)
            if training:
                self._cache = ("frozen", None, y2 if act else None, act, None, a)
        return y2.reshape(x.shape).astype(self.dtype, copy=False)

    def call_backward(self, dy):
        mode, x2, y2, act, mean_w, u = self._need_cache()
        c = dy.shape[-1]
        dy2 = self._work(dy)
        wd = dy2.dtype
        isa = _dispatch.level_for("batch_norm", wd)
        threads = _dispatch.threads_for(dy2.size)
        if mode == "frozen":
            # Inference-mode normalisation (frozen layer): an affine map per channel.
            if not self.need_input_grad:
                return None
            dx = np.empty_like(dy2)
            _kn.bn_dx(dy2, None, y2, act, None, self._vec(u, c, wd), None, None, dx, isa, threads)
            return dx.reshape(dy.shape).astype(self.dtype, copy=False)
        inv, resid = u
        m = x2.shape[0]
        dbeta, s2 = np.empty(c), np.empty(c)
        _kn.bn_dsums(dy2, x2, y2, act, mean_w, dbeta, s2, isa, threads)
        s2 -= resid * dbeta  # sum g * (x - mean) from the sum around the rounded mean
        dgamma = s2 * inv
        if self.trainable:
            if self.scale:
                self._store_grad("gamma", dgamma)
            if self.center:
                self._store_grad("beta", dbeta)
        if not self.need_input_grad:
            return None
        # dx = p * (g - dbeta / m - (x - mean) * inv^2 * s2 / m), p = gamma * inv, with the kernel's
        # (x - mean_w) * gb + gc for (x - mean) * gb + (-p * dbeta / m)
        p = self._gamma() * inv
        mm = max(m, 1)
        gb = -p * inv * inv * s2 / mm
        dx = np.empty_like(dy2)
        _kn.bn_dx(dy2, x2, y2, act, mean_w, self._vec(p, c, wd), self._vec(gb, c, wd),
                  self._vec(-p * dbeta / mm - resid * gb, c, wd), dx, isa, threads)
        return dx.reshape(dy.shape).astype(self.dtype, copy=False)

    def get_config(self):
        config = super().get_config()
        ser = _initializers.serialize
        config.update(
            {
                "axis": -1,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": ser(self.beta_initializer),
                "gamma_initializer": ser(self.gamma_initializer),
                "moving_mean_initializer": ser(self.moving_mean_initializer),
                "moving_variance_initializer": ser(self.moving_variance_initializer),
                "beta_regularizer": _regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": _regularizers.serialize(self.gamma_regularizer),
            }
        )
        return config
