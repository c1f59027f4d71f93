"""bench/torch_twins.py: the PyTorch network the benchmarks compare against is the same network.

For every network of the zoo, the exact twin with fastconv's weights copied in reproduces
``model.predict`` (BatchNormalization statistics set away from their identity defaults, so a
dropped or misplaced layer shows), and the benchmark twin has the same parameters and output shape.
PyTorch is an optional oracle: without it these tests skip."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fastconv import initializers, models

torch = pytest.importorskip("torch")
BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def twins():
    spec = importlib.util.spec_from_file_location("torch_twins_under_test", BENCH / "torch_twins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shape(name):
    return (32, 32, 3) if name.startswith("cifar") else (28, 28, 1)


def _stir_batchnorm(model, rng):
    layers = list(model.layers)
    while layers:
        layer = layers.pop()
        layers.extend(getattr(layer, "sublayers", []))
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                (1 + 0.3 * rng.standard_normal(gamma.shape)).astype(gamma.dtype),
                (0.2 * rng.standard_normal(beta.shape)).astype(beta.dtype),
                (0.2 * rng.standard_normal(mean.shape)).astype(mean.dtype),
                (0.5 + rng.random(var.shape)).astype(var.dtype),
            ])


@pytest.mark.parametrize("name", list(models.MODELS))
def test_exact_twin_reproduces_predict(twins, name):
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    initializers.set_seed(1)
    model = models.MODELS[name](input_shape=_shape(name))
    _stir_batchnorm(model, rng)
    head = [layer for layer in model.layers if layer.get_weights()][-1]
    head.set_weights([w * 30 for w in head.get_weights()])  # spread the softmax so differences show
    x = rng.random((2, *_shape(name)), dtype=np.float32)
    net = twins.torch_twin(model, torch, exact=True).eval()
    twins.copy_weights(model, net, torch)
    with torch.no_grad():
        logits = net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    if logits.ndim == 4:
        logits = logits.permute(0, 2, 3, 1)
    got = torch.softmax(logits, dim=-1).numpy()  # every zoo network ends in a softmax
    want = model.predict(x, verbose=0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert want.std() > 1e-3  # the outputs are not all alike (a check that can fail)


@pytest.mark.parametrize("name", ["shufflenet_small", "alexnet_small", "segnet_small", "separable-cnn"])
def test_benchmark_twin_has_the_same_parameters_and_output_shape(twins, name):
    model = models.MODELS[name](input_shape=_shape(name))
    net = twins.torch_twin(model, torch).eval()
    assert sum(p.numel() for p in net.parameters()) == model.count_trainable_params()
    x = np.zeros((1, *_shape(name)), np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(x).permute(0, 3, 1, 2))
    want = model.predict(x, verbose=0).shape
    assert tuple(out.permute(0, 2, 3, 1).shape if out.ndim == 4 else out.shape) == want


def _identity(t):
    return t


def test_untranslatable_layer_is_refused_by_name(twins):
    from fastconv import Sequential, layers

    model = Sequential([layers.Input((8, 8, 2)), layers.Conv2D(4, 3), layers.Lambda(_identity)])
    with pytest.raises(NotImplementedError, match="Lambda"):
        twins.torch_twin(model, torch)

