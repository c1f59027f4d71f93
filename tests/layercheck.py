"""Layer checks shared by the layer tests (tests/ is on sys.path under pytest): finite-difference
gradients, random inputs (``x_img()``: the image the Keras references were computed on), a small
ResNet block, config round trips, and the shape / weight / config contracts each
tests/test_layers_<module>.py runs over its own table of cases.

Gradient checks use the scalar loss ``sum(forward(x) * R) + regularization_loss()``
with a fixed random R, and compare ``backward(R)`` (dx) and every grad from
``trainable_pairs()`` with central differences on a few random coordinates (all
coordinates for tiny arrays).
"""

from __future__ import annotations

import json

import numpy as np

from fastconv import layers as L

F64 = "float64"
EPS = 1e-6


# ---------------------------------------------------------------------------
# Finite-difference machinery
# ---------------------------------------------------------------------------


def _coords(shape, rng, k):
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= k else rng.choice(size, k, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def fd_check(layer, x, *, seed=0, k=8, before=None, rtol=1e-5, atol=1e-7, check_dx=True):
    """Check backward's dx and every trainable grad of ``layer`` against central differences."""
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)

    def loss():
        if before is not None:
            before(layer)
        y = layer.forward(x, training=True)
        return float(np.sum(y * r)) + layer.regularization_loss()

    if before is not None:
        before(layer)
    y = layer.forward(x, training=True)
    r = rng.standard_normal(y.shape)
    dx = layer.backward(r)
    pairs = layer.trainable_pairs()
    grads = {key: g.copy() for key, _, g in pairs}

    targets = [("x", x, dx)] if check_dx else []
    targets += [(key, p, grads[key]) for key, p, _ in pairs]
    assert targets
    for name, arr, analytic in targets:
        assert analytic is not None and analytic.shape == arr.shape, name
        for idx in _coords(arr.shape, rng, k):
            old = arr[idx]
            arr[idx] = old + EPS
            fp = loss()
            arr[idx] = old - EPS
            fm = loss()
            arr[idx] = old
            num = (fp - fm) / (2 * EPS)
            np.testing.assert_allclose(
                analytic[idx], num, rtol=rtol, atol=atol, err_msg=f"{layer.name}: d/d{name}{idx}"
            )
    return dx


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------
# Shared layers and cases
# ---------------------------------------------------------------------------


def resnet_block():
    return L.ResidualBlock(
        [
            L.Conv2D(4, 3, strides=2, padding="same", activation="relu", dtype=F64),
            L.BatchNormalization(dtype=F64),
            L.Conv2D(4, 3, padding="same", dtype=F64),
        ],
        projection_batchnorm=True,
        activation="relu",
        dtype=F64,
    )


def config_round_trip(layer, in_shape):
    layer.build(in_shape)
    d = json.loads(json.dumps(L.serialize(layer)))
    clone = L.deserialize(d)
    clone.build(in_shape)
    clone.set_weights(layer.get_weights())
    assert clone.name == layer.name and type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    x = rand(2, *in_shape).astype(layer.dtype)
    np.testing.assert_array_equal(clone(x), layer(x))
    return clone


def x_img():
    """The (2, 4, 5, 3) input the Keras references were computed on."""
    return (np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3) % 7 - 3.0) * 0.7


def roundtrip(layer):
    """Config-only round trip (no weights, no build): the clone's config equals the layer's."""
    clone = L.deserialize(L.serialize(layer))
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    return clone


def check_output_shapes_and_param_counts(factory, in_shape, out_shape, params):
    layer = factory()
    assert layer.compute_output_shape(in_shape) == out_shape
    layer.build(in_shape)
    assert layer.output_shape == out_shape
    assert layer.input_shape == in_shape
    assert layer.count_params() == params
    y = layer.forward(np.ones((2, *in_shape), np.float32))
    assert y.shape == (2, *out_shape) and y.dtype == np.float32


def check_get_set_weights_round_trip_keras_order(factory, in_shape, shapes):
    layer = factory()
    layer.build(in_shape)
    weights = layer.get_weights()
    assert [w.shape for w in weights] == shapes
    new = [rand(*s, seed=i).astype(np.float32) for i, s in enumerate(shapes)]
    refs = layer.weights
    layer.set_weights(new)
    for got, want, ref in zip(layer.get_weights(), new, refs):
        np.testing.assert_array_equal(got, want)
    assert all(a is b for a, b in zip(layer.weights, refs))  # updated in place
    got = layer.get_weights()
    got[0][...] = 123.0  # get_weights returns copies
    assert not np.any(layer.weights[0] == 123.0)


def check_config_round_trip_gives_identical_outputs(factory, in_shape):
    layer = factory()
    if layer.params or layer.sublayers or isinstance(layer, L.BatchNormalization):
        pass
    config_round_trip(layer, in_shape)
