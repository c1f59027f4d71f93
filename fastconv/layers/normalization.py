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
* The work is done by the ops of ``fastconv.ops.norm`` (``batch_norm_train``,
  ``batch_norm`` and their ``_grad``) on the compiled kernels: one pass for the
  statistics (float64 partial sums in a fixed order, so the result does not
  depend on the thread count), one to normalise; backward one pass for the two
  sums and one for dx. The training cache holds the input (not a normalised
  copy) and the batch statistics.
* A ReLU or ReLU6 right after the layer can be fused into it: the layer
  declares ``fusable_epilogues``, the execution plan calls
  ``forward(x, training, epilogue="relu")``; the output is then the
  activation's, applied in the normalisation pass, and backward masks ``dy``
  with it (the training cache records which activation ran).
* float16 layers compute in float32.
* ``synchronized=True`` (Keras's argument): in data-parallel training
  (``fastconv.distributed``) the batch statistics are those of the global
  batch: the per-channel sums (forward: sum, then sum of squared deviations;
  backward: the sums of ``dy`` and ``dy * xhat``, each weighted by the rank's
  share of the batch) are summed over the ranks. On one process it computes
  what the default does (in NumPy, float64 sums). Default False: per-replica
  statistics, as Horovod and PyTorch's DDP.
"""

from __future__ import annotations

import numpy as np

from fastconv import distributed as _dist
from fastconv import initializers as _initializers
from fastconv import ops
from fastconv import regularizers as _regularizers
from fastconv.layers.base import Layer, register_layer
from fastconv.ops import norm as _norm_ops

__all__ = ["BatchNormalization"]

_INT32_MAX = 2**31 - 1


@register_layer
class BatchNormalization(Layer):
    """Batch normalisation over the last axis (Keras ``BatchNormalization``).

    Params per channel C: gamma, beta (trainable), moving_mean, moving_variance
    (non-trainable): 4 * C in total, e.g. 256 for 64 channels (128 non-trainable).
    """

    min_ndim = 2
    fusable_epilogues = ("linear", "relu", "relu6")
    final_activation = "linear"
    fresh_input_grad = True  # every backward path allocates dx

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
        synchronized=False,
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
        if not isinstance(synchronized, (bool, np.bool_)):
            raise TypeError(f"BatchNormalization: synchronized must be a bool. Received: {synchronized!r}")
        self.synchronized = bool(synchronized)

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

    def inference_affine(self):
        """``(a, b)``, float64 per channel, with inference-mode output ``x * a + b``
        (``a = gamma / sqrt(moving_variance + epsilon)``, ``b = beta - moving_mean * a``), read
        from the current weights; None before the layer is built. The execution plan folds it
        into the layer before (``accepts_affine``) in predict / evaluate."""
        if not self.built:
            return None
        var = self.state["moving_variance"].astype(np.float64)
        a = 1.0 / np.sqrt(var + self.epsilon)
        if self.scale:
            a = a * self.params["gamma"]
        b = -self.state["moving_mean"] * a
        if self.center:
            b = b + self.params["beta"]
        return a, b

    def _check_channels_fit(self, t):
        if t.shape[-1] > _INT32_MAX:  # the kernels keep the channel count in a C int
            raise ValueError(
                f'Layer "{self.name}" supports at most 2**31 - 1 = {_INT32_MAX} channels (axis -1). '
                f"Received input with shape {t.shape}"
            )

    def _work_dtype(self):
        return np.float64 if self.dtype == np.float64 else np.float32

    def _opt(self, key):
        """gamma / beta, or None when ``scale`` / ``center`` dropped it (the op then uses 1 / 0)."""
        return self.params.get(key)

    def call(self, x, training=False, epilogue=None):
        self._check_channels_fit(x)
        x = np.asarray(x, dtype=self._work_dtype())
        act = None if epilogue in (None, "linear") else epilogue
        if training and self.trainable and self.synchronized:
            return self._call_synchronized(x, act)
        if training and self.trainable:
            y, mean, var = ops.batch_norm_train(
                x, self._opt("gamma"), self._opt("beta"), epsilon=self.epsilon, activation=act
            )
            if x.size:  # an empty batch has no statistics to learn from
                mom = self.momentum
                mm, mv = self.state["moving_mean"], self.state["moving_variance"]
                mm[...] = mm * mom + (1.0 - mom) * mean
                mv[...] = mv * mom + (1.0 - mom) * var
            self._cache = ("train", x, y if act else None, act, mean, var)
        else:
            y = ops.batch_norm(
                x,
                self.state["moving_mean"],
                self.state["moving_variance"],
                self._opt("gamma"),
                self._opt("beta"),
                epsilon=self.epsilon,
                activation=act,
            )
            if training:
                self._cache = ("frozen", None, y if act else None, act, None, None)
        return y.astype(self.dtype, copy=False)

    def _call_synchronized(self, x, act):
        """Training step with the global batch's statistics (sums over every rank)."""
        c = x.shape[-1]
        x2 = x.reshape(-1, c)
        sums = np.empty(c + 1)
        sums[:c] = x2.sum(axis=0, dtype=np.float64)
        sums[c] = x2.shape[0]
        _dist.allreduce(sums)
        count = sums[c]
        if count == 0:
            raise ValueError(f'Layer "{self.name}": synchronized BatchNormalization on an empty batch.')
        mean = sums[:c] / count
        dev = np.empty(c)
        dev[:] = ((x2 - mean) ** 2).sum(axis=0)
        var = _dist.allreduce(dev) / count
        wd = self._work_dtype()
        mean_w, var_w = mean.astype(wd), var.astype(wd)
        y = ops.batch_norm(x, mean_w, var_w, self._opt("gamma"), self._opt("beta"), epsilon=self.epsilon,
                           activation=act)
        mom = self.momentum
        mm, mv = self.state["moving_mean"], self.state["moving_variance"]
        mm[...] = mm * mom + (1.0 - mom) * mean
        mv[...] = mv * mom + (1.0 - mom) * var
        self._cache = ("sync", x, y if act else None, act, mean, var, count)
        return y.astype(self.dtype, copy=False)

    def _backward_synchronized(self, dy, x, y, act, mean, var, count):
        c = x.shape[-1]
        if act == "relu":
            dy = dy * (y > 0)
        elif act == "relu6":
            dy = dy * ((y > 0) & (y < 6))
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        dy2 = dy.reshape(-1, c)
        xhat = (x.reshape(-1, c) - mean) * inv_std
        local = np.empty(2 * c)
        local[:c] = dy2.sum(axis=0, dtype=np.float64)
        local[c:] = (dy2 * xhat).sum(axis=0)
        if self.trainable:
            if self.scale:
                self._store_grad("gamma", local[c:])
            if self.center:
                self._store_grad("beta", local[:c])
        if not self.need_input_grad:
            return None
        # This rank's dy is the gradient of its own mean loss; the global sums weigh each rank's
        # by its share w of the batch, and dx comes back in this rank's scale (1 / w).
        w = _dist.sample_fraction()
        glob = _dist.allreduce(local * w) / (w * count)
        gamma = self._opt("gamma")
        g = inv_std if gamma is None else gamma * inv_std
        dx = g * (dy2 - glob[:c] - xhat * glob[c:])
        return dx.reshape(x.shape).astype(self.dtype, copy=False)

    def call_backward(self, dy):
        cache = self._need_cache()
        if cache[0] == "sync":
            self._check_channels_fit(dy)
            return self._backward_synchronized(np.asarray(dy, dtype=self._work_dtype()), *cache[1:])
        mode, x, y, act, mean, var = cache
        self._check_channels_fit(dy)
        dy = np.asarray(dy, dtype=self._work_dtype())
        if mode == "frozen":
            # Inference-mode normalisation (frozen layer): an affine map per channel.
            dx = ops.batch_norm_grad(
                dy,
                self.state["moving_variance"],
                self._opt("gamma"),
                epsilon=self.epsilon,
                y=y,
                activation=act,
                need_dx=self.need_input_grad,
            )
        else:
            # a fused activation's mask from x (the forward's statistics and weights): y not read
            dx, dgamma, dbeta = _norm_ops._train_grad(
                dy, x, self._opt("gamma"), self.epsilon, mean, var, y, act, self.need_input_grad,
                beta=self._opt("beta"), mask_from_x=True,
            )
            if self.trainable:
                if self.scale:
                    self._store_grad("gamma", dgamma)
                if self.center:
                    self._store_grad("beta", dbeta)
        return None if dx is None else dx.astype(self.dtype, copy=False)

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
        if self.synchronized:  # only when set, so the files of earlier versions keep their header
            config["synchronized"] = True
        return config
