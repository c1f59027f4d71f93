"""The file format is a contract: models saved by earlier fastconv versions still load and compute the
same. ``tests/data/saved_v1/`` holds files written by fastconv before the engine/ split (made
by ``make_fixtures.py`` there): a Sequential model with BatchNormalization, an L2 regularizer and Adam,
its weights-only file, and a two-input two-output graph model with a shared layer and loss weights."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv.saving import load_model

DATA = pathlib.Path(__file__).parent / "data" / "saved_v1"


@pytest.fixture(autouse=True)
def _fresh_names():
    L.reset_name_counters()


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "expected_v1.npz") as f:
        return {k: f[k] for k in f.files}


def test_sequential_v1_loads_with_weights_and_compile_settings(expected):
    model = load_model(DATA / "sequential_v1.npz")
    assert isinstance(model, fastconv.Sequential) and model.name == "seq_fixture"
    assert [type(l).__name__ for l in model.layers] == [
        "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "Flatten", "Dense",
    ]
    assert model.compiled and type(model.optimizer).__name__ == "Adam"
    np.testing.assert_allclose(model.predict(expected["seq_x"]), expected["seq_pred"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        model.evaluate(expected["seq_x"], expected["seq_y"], verbose=0), expected["seq_eval"], rtol=1e-5
    )
    model.fit(expected["seq_x"], expected["seq_y"], epochs=1, batch_size=8, verbose=0)


def test_sequential_v1_weights_file_loads_into_a_fresh_model(expected):
    model = load_model(DATA / "sequential_v1.npz", compile=False)
    fresh = fastconv.Sequential.from_config(model.get_config())
    fresh.load_weights(DATA / "sequential_v1.weights.npz")
    np.testing.assert_allclose(fresh.predict(expected["seq_x"]), expected["seq_pred"], rtol=1e-5, atol=1e-6)


def test_functional_v1_loads_with_shared_layer_and_loss_weights(expected):
    model = load_model(DATA / "functional_v1.npz")
    assert type(model) is fastconv.Model and model.name == "fun_fixture"
    assert model._loss_weights == [1.0, 0.5]
    xs = [expected["fun_xa"], expected["fun_xb"]]
    ys = [expected["fun_yc"], expected["fun_yr"]]
    cls, reg = model.predict(xs)
    np.testing.assert_allclose(cls, expected["fun_pred_cls"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reg, expected["fun_pred_reg"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.evaluate(xs, ys, verbose=0), expected["fun_eval"], rtol=1e-5)


def test_v1_header_is_what_this_version_writes(tmp_path):
    """Saving the loaded model again writes the same header (class name, config, weights list)."""
    for name in ("sequential_v1.npz", "functional_v1.npz"):
        with np.load(DATA / name) as f:
            old = json.loads(f["__fastconv__"].tobytes().decode("utf-8"))
        L.reset_name_counters()
        load_model(DATA / name).save(tmp_path / name)
        with np.load(tmp_path / name) as f:
            new = json.loads(f["__fastconv__"].tobytes().decode("utf-8"))
        for key in ("format", "format_version", "class_name", "config", "weights"):
            assert new[key] == old[key], (name, key)
        # The optimizer config may gain keys (Keras 3's weight_decay, clipnorm, ..., amsgrad); every
        # key the v1 file holds keeps its value.
        old_cc, new_cc = dict(old["compile_config"]), dict(new["compile_config"])
        old_opt, new_opt = old_cc.pop("optimizer"), new_cc.pop("optimizer")
        assert new_cc == old_cc, name
        assert new_opt["class_name"] == old_opt["class_name"], name
        assert {k: new_opt["config"][k] for k in old_opt["config"]} == old_opt["config"], name
