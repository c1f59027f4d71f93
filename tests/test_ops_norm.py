"""The norm family's ops (fastconv/ops/norm.py): BatchNorm forward / backward and relu / relu6
against the NumPy reference, the kernel variant each reports, and the need_dx flag.

The kernels under these ops (every SIMD path, 1 vs 2 threads, odd shapes, fully written outputs) and
the BatchNormalization layer's modes are tested in test_norm.py."""
import numpy as np
import pytest

from fastconv import _dispatch, ops
from fastconv import reference as ref

F64 = np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 5, 3, 7), (9, 16), (1, 1, 1, 1)])
def test_batch_norm_train_and_grad_match_reference(dtype, shape):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    c = shape[-1]
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    y, mean, var = ops.batch_norm_train(x, gamma, beta, epsilon=1e-3)
    assert _dispatch.last_kernel["batch_norm_train"] == "stats+affine"
    y_ref, mean_ref, var_ref = ref.batch_norm_train(x.astype(F64), gamma, beta, 1e-3)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(mean, mean_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(var, var_ref, rtol=tol, atol=tol)
    dx, dgamma, dbeta = ops.batch_norm_train_grad(dy, x, gamma, epsilon=1e-3, mean=mean, var=var)
    assert _dispatch.last_kernel["batch_norm_train_grad"] == "dsums+dx"
    dx_ref, dgamma_ref, dbeta_ref = ref.batch_norm_train_grad(dy.astype(F64), x.astype(F64), gamma, 1e-3)
    np.testing.assert_allclose(dx, dx_ref, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(dgamma, dgamma_ref, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(dbeta, dbeta_ref, rtol=10 * tol, atol=10 * tol)
    # statistics recomputed from x when not given; need_dx=False skips dx
    dx2, dgamma2, _ = ops.batch_norm_train_grad(dy, x, gamma, epsilon=1e-3, need_dx=False)
    assert dx2 is None and _dispatch.last_kernel["batch_norm_train_grad"] == "dsums"
    np.testing.assert_allclose(dgamma2, dgamma, rtol=1e-12)


@pytest.mark.parametrize("act, fn", [
    ("relu", lambda t: np.maximum(t, 0)), ("relu6", lambda t: np.clip(t, 0, 6)),
])
def test_batch_norm_inference_with_fused_activation(act, fn):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((3, 4, 4, 5)) * 4).astype(np.float32)
    mean, var = rng.standard_normal(5), rng.random(5) + 0.5
    gamma, beta = rng.standard_normal(5) * 3, rng.standard_normal(5)
    y = ops.batch_norm(x, mean, var, gamma, beta, epsilon=1e-3, activation=act)
    assert _dispatch.last_kernel["batch_norm"] == "affine+" + act
    a = gamma / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(y, fn((x - mean) * a + beta), rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = ops.batch_norm_grad(dy, var, gamma, epsilon=1e-3, y=y, activation=act)
    assert _dispatch.last_kernel["batch_norm_grad"] == "dx+" + act
    mask = (y > 0) & (y < 6) if act == "relu6" else y > 0
    np.testing.assert_allclose(dx, np.where(mask, dy, 0) * a, rtol=1e-5, atol=1e-6)
    assert ops.batch_norm_grad(dy, var, gamma, y=y, activation=act, need_dx=False) is None
    with pytest.raises(ValueError, match="y \\(the forward's output\\)"):
        ops.batch_norm_grad(dy, var, gamma, activation=act)
    with pytest.raises(ValueError, match="activation must be"):
        ops.batch_norm(x, mean, var, activation="gelu")


def test_clamp_ops_report_kernel_or_numpy():
    x = np.array([-1.0, 0.5, 7.0, np.nan], np.float32)
    np.testing.assert_array_equal(ops.relu(x), [0, 0.5, 7, np.nan])
    assert _dispatch.last_kernel["relu"] == "kernel"
    np.testing.assert_array_equal(ops.relu6(x), [0, 0.5, 6, np.nan])
    assert _dispatch.last_kernel["relu6"] == "kernel"
    xs = np.arange(-3.0, 9.0).reshape(3, 4)[:, ::2]  # not contiguous: NumPy
    np.testing.assert_array_equal(ops.relu6(xs), np.clip(xs, 0, 6))
    assert _dispatch.last_kernel["relu6"] == "numpy"
    y = ops.relu6(x)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(ops.relu6_grad(dy, y), [0, 1, 0, 0])
    assert _dispatch.last_kernel["relu6_grad"] == "kernel"
    np.testing.assert_array_equal(ops.relu_grad(dy, ops.relu(x)), [0, 1, 1, 0])
    assert ops.relu_grad(dy, y, need_dx=False) is None
