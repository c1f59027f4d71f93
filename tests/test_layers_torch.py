"""Cross-checks of several layers against PyTorch (skipped when it is not installed): bilinear
UpSampling2D, Conv2DTranspose, BatchNormalization's training output and gradient, selu / elu.
"""

from __future__ import annotations

import numpy as np
import pytest
from layercheck import F64, rand  # tests/layercheck.py

from fastconv import activations
from fastconv import layers as L


def test_against_torch_bilinear_transpose_and_batchnorm():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand(2, 5, 4, 3)
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # NCHW
    # Bilinear upsampling: TF half-pixel centres == PyTorch align_corners=False.
    up = L.UpSampling2D((2, 3), interpolation="bilinear", dtype=F64)(x)
    ref = F.interpolate(tx, scale_factor=(2, 3), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(up, ref.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    # Conv2DTranspose "valid" (K >= stride) == PyTorch padding 0; also K < stride (Keras pads).
    for k, s in [(3, 2), (2, 3)]:
        layer = L.Conv2DTranspose(4, k, strides=s, dtype=F64, bias_initializer="ones")
        y = layer(x)
        w, b = layer.get_weights()
        ref = (
            F.conv_transpose2d(
                tx, torch.from_numpy(w.transpose(3, 2, 0, 1).copy()), torch.from_numpy(b), stride=s
            )
            .numpy()
            .transpose(0, 2, 3, 1)
        )
        assert y.shape == (2, 5 * s + max(k - s, 0), 4 * s + max(k - s, 0), 4)
        np.testing.assert_allclose(y[:, : ref.shape[1], : ref.shape[2]], ref, rtol=1e-10)
        np.testing.assert_allclose(y[:, ref.shape[1] :], 1.0)  # Keras's extra rows: bias only
    # BatchNormalization training output and gradient.
    bn = L.BatchNormalization(dtype=F64)
    y = bn.forward(x, training=True)
    dx = bn.backward(x**2)
    tx.requires_grad_(True)
    ty = F.batch_norm(
        tx,
        None,
        None,
        torch.ones(3, dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
        training=True,
        eps=1e-3,
    )
    ty.backward(torch.from_numpy((x**2).transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-8, atol=1e-12)
    # selu / elu values.
    t = torch.from_numpy(x)
    np.testing.assert_allclose(activations.selu.forward(x), F.selu(t).numpy(), rtol=1e-12)
    np.testing.assert_allclose(activations.elu.forward(x), F.elu(t).numpy(), rtol=1e-12)
