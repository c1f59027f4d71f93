"""Model surgery as Keras 3 does it: layer.input / layer.output, feature extractors from a
Sequential or a functional model (sharing weights), Input / InputLayer inside Sequential,
get_layer, to_json / model_from_json, and save() refusing Keras's file suffixes.

Keras's behaviour mirrored here (read from Keras 3.15 source): ``layer.output`` is the output of
the layer's first call (AttributeError "has never been called" before any call); a Sequential with
a known input shape has ``inputs`` / ``outputs`` and called layers; ``get_layer`` errors.
"""

import json

import numpy as np
import pytest

import fastconv
from fastconv import Input, Model, Sequential
from fastconv import layers as L


def _cnn(first):
    return Sequential(
        [first, L.Conv2D(4, 3, activation="relu", name="conv1"), L.Conv2D(6, 3, name="conv2"),
         L.Flatten(name="flat"), L.Dense(10, activation="softmax", name="head")]
    )


@pytest.mark.parametrize("first", ["Input", "InputLayer", "input_shape"])
def test_feature_extractor_from_sequential_shares_weights(first):
    if first == "input_shape":
        model = Sequential([L.Conv2D(4, 3, activation="relu", name="conv1", input_shape=(12, 12, 1)),
                            L.Conv2D(6, 3, name="conv2"), L.Flatten(name="flat"), L.Dense(10, name="head")])
    else:
        model = _cnn(Input((12, 12, 1)) if first == "Input" else L.InputLayer(shape=(12, 12, 1)))
    assert [l.name for l in model.layers] == ["conv1", "conv2", "flat", "head"]  # no InputLayer, as Keras
    assert model.inputs[0].shape == (None, 12, 12, 1) and model.outputs[0].shape == (None, 10)
    assert model.get_layer("conv2").output.shape == (None, 8, 8, 6)
    ext = Model(inputs=model.inputs, outputs=model.get_layer("conv2").output)
    x = np.random.default_rng(0).normal(size=(3, 12, 12, 1)).astype(np.float32)
    np.testing.assert_allclose(ext.predict(x, verbose=0), model.layer_output(x, "conv2"), rtol=1e-6)
    assert ext.get_layer("conv1") is model.get_layer("conv1")  # the same layer objects
    model.get_layer("conv1").set_weights([w + 1.0 for w in model.get_layer("conv1").get_weights()])
    np.testing.assert_allclose(ext.predict(x, verbose=0), model.layer_output(x, "conv2"), rtol=1e-6)
    # several outputs, and training the original keeps serving the extractor
    multi = Model(model.inputs, [model.get_layer("conv1").output, model.get_layer("conv2").output])
    assert [o.shape for o in multi.predict(x, verbose=0)] == [(3, 10, 10, 4), (3, 8, 8, 6)]


def test_rebuilding_adds_no_nodes_and_add_after_build():
    model = Sequential([Input((5,)), L.Dense(3, name="d1")])
    model.add(L.Dense(2, name="d2"))
    _ = model.outputs, model.inputs, model.outputs
    assert len(model.get_layer("d1")._fc_nodes) == 1
    assert model.outputs[0].shape == (None, 2)
    assert Model(model.inputs, model.get_layer("d1").output).output_shape == (None, 3)


def test_layer_input_output_like_keras():
    with pytest.raises(AttributeError, match="has never been called and thus has no defined output"):
        _ = L.Dense(3, name="lonely").output
    with pytest.raises(AttributeError, match="no defined input"):
        _ = L.Dense(3).input
    inp = Input((4,))
    dense = L.Dense(3)
    first = dense(inp)
    second = dense(Input((4,)))  # a shared layer: Keras 3 keeps answering with the first call
    assert dense.output is first and dense.input is inp and second is not first
    a, b = Input((2,)), Input((2,))
    add = L.Add()
    add([a, b])
    assert add.input == [a, b]
    with pytest.raises(AttributeError, match="no defined inputs"):
        _ = Sequential([L.Dense(2)]).inputs


def test_get_layer_like_keras():
    model = _cnn(Input((12, 12, 1)))
    assert model.get_layer("conv2") is model.layers[1] and model.get_layer(index=0) is model.layers[0]
    with pytest.raises(ValueError, match="Provide only a layer name or a layer index"):
        model.get_layer("conv2", 1)
    with pytest.raises(ValueError, match="Was asked to retrieve layer at index 9 but model only has 4 layers"):
        model.get_layer(index=9)
    with pytest.raises(ValueError, match=r"No such layer: nope. Existing layers are: \['conv1'"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="Provide either a layer name or layer index"):
        model.get_layer()


def test_input_twice_refused():
    with pytest.raises(ValueError, match="cannot add a different Input layer"):
        Sequential([Input((3,)), Input((3,))])


def test_to_json_model_from_json_round_trip():
    x = np.random.default_rng(1).normal(size=(2, 12, 12, 1)).astype(np.float32)
    seq = _cnn(Input((12, 12, 1)))
    text = seq.to_json()
    assert json.loads(text)["class_name"] == "Sequential"
    back = fastconv.model_from_json(text)
    assert type(back) is Sequential and [l.name for l in back.layers] == [l.name for l in seq.layers]
    assert back.count_params() == seq.count_params() and back.input_shape == (None, 12, 12, 1)
    back.set_weights(seq.get_weights())  # architecture only, as Keras: weights are fresh
    np.testing.assert_allclose(back.predict(x, verbose=0), seq.predict(x, verbose=0), rtol=1e-6)
    inp = Input((12, 12, 1))
    h = L.Conv2D(3, 3, name="c")(inp)
    out = L.Add(name="sum")([L.Conv2D(3, 1, name="p")(h), h])
    fn = Model(inp, out)
    back = fastconv.saving.model_from_json(fn.to_json())
    assert type(back) is Model and [l.name for l in back.layers] == [l.name for l in fn.layers]
    back.set_weights(fn.get_weights())
    np.testing.assert_allclose(back.predict(x, verbose=0), fn.predict(x, verbose=0), rtol=1e-6)
    with pytest.raises(ValueError, match="model_from_json"):
        fastconv.model_from_json("not json")


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "M.H5", "m.weights.h5"])
def test_save_refuses_keras_suffixes(tmp_path, name):
    model = Sequential([Input((3,)), L.Dense(2)])
    path = tmp_path / name
    with pytest.raises(ValueError, match=r"cannot write .*\.npz format.*Use a '\.npz' suffix"):
        model.save(path)
    with pytest.raises(ValueError, match=r"save_weights: cannot write"):
        model.save_weights(path)
    assert not path.exists()
    model.save(tmp_path / "m.npz")
    assert fastconv.load_model(tmp_path / "m.npz").count_params() == 8
