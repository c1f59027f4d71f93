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
  ``y = x * a + b`` with ``a = gamma / sqrt(moving_variance + epsilon)``.
* Weights in Keras order: gamma, beta (trainable; ``scale`` / ``center`` drop
  them), moving_mean, moving_variance (non-trainable, in ``state``).
* Backward of the training mode, with ``xhat`` the normalised input:
  ``dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))``.
"""

from __future__ import annotations

import numpy as np

from fastconv import initializers as _initializers
from fastconv import regularizers as _regularizers
from fastconv.layers.base import Layer, register_layer

__all__ = ["BatchNormalization"]


@register_layer
class BatchNormalization(Layer):
    """Batch normalisation over the last axis (Keras ``BatchNormalization``).

    Params per channel C: gamma, beta (trainable), moving_mean, moving_variance
    (non-trainable): 4 * C in total, e.g. 256 for 64 channels (128 non-trainable).
    """

    min_ndim = 2

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

    def call(self, x, training=False):
        c = x.shape[-1]
        if training and self.trainable:
            x2 = x.reshape(-1, c)
            m = x2.shape[0]
            mean = x2.mean(axis=0)
            xhat = x - mean
            xh2 = xhat.reshape(-1, c)
            var = np.einsum("ij,ij->j", xh2, xh2) / m
            inv = 1.0 / np.sqrt(var + self.epsilon)
            xhat *= inv
            y = xhat * self._gamma() if self.scale else xhat.copy()
            if self.center:
                y += self.params["beta"]
            mom = self.momentum
            mm, mv = self.state["moving_mean"], self.state["moving_variance"]
            mm *= mom
            mm += (1.0 - mom) * mean
            mv *= mom
            mv += (1.0 - mom) * var
            self._cache = ("train", xhat, inv)
            return y
        a = self._gamma() / np.sqrt(self.state["moving_variance"] + self.epsilon)
        b = self._beta() - self.state["moving_mean"] * a
        y = x * a.astype(x.dtype, copy=False)
        y += np.asarray(b, dtype=x.dtype)
        if training:
            self._cache = ("frozen", x, a)
        return y

    def call_backward(self, dy):
        mode, t, u = self._need_cache()
        c = dy.shape[-1]
        dy2 = dy.reshape(-1, c)
        if mode == "frozen":
            # Inference-mode normalisation (frozen layer): an affine map per channel.
            if not self.need_input_grad:
                return None
            return dy * u.astype(dy.dtype, copy=False)
        xhat, inv = t, u
        xh2 = xhat.reshape(-1, c)
        m = xh2.shape[0]
        dbeta = dy2.sum(axis=0)
        dgamma = np.einsum("ij,ij->j", dy2, xh2)
        if self.trainable:
            if self.scale:
                self._store_grad("gamma", dgamma)
            if self.center:
                self._store_grad("beta", dbeta)
        if not self.need_input_grad:
            return None
        dx = xhat * (-dgamma / m)
        dx += dy
        dx -= dbeta / m
        dx *= self._gamma() * inv
        return dx

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
