"""Inference in cache-sized parts (fastconv/engine/graph.py ExecutionPlan.inference_rows, used by
predict) and whole copy-free concatenations (FASTCONV_COPYFREE_CONCAT=full): the rows per forward
follow the rule, and predict's outputs do not depend on the split or the placements."""

import numpy as np
import pytest

import fastconv.engine.graph as G
from fastconv import initializers, models
from fastconv import layers as L


def _net():
    """Branches joined by a concatenation of conv outputs only, then a pooling and a conv joined
    (partly placeable), a BatchNormalization to fold."""
    inp = L.Input((11, 9, 3))
    a = L.Conv2D(5, 3, padding="same", activation="relu")(inp)
    b = L.Conv2D(4, 1, activation="relu")(inp)
    c = L.Concatenate()([a, b])
    p = L.MaxPooling2D(3, strides=1, padding="same")(c)
    d = L.Conv2D(6, 3, padding="same", activation="relu")(c)
    e = L.Concatenate()([p, d])
    f = L.Conv2D(4, 1, use_bias=False)(e)
    f = L.BatchNormalization()(f)
    out = L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(f))
    return models.Model(inp, out)


def test_inference_rows_rule(monkeypatch):
    initializers.set_seed(0)
    plan = _net()._plan()
    per = 11 * 9 * 15 * 4  # the largest output: the second concatenation, float32
    assert plan._largest_output_bytes() == per
    assert plan.inference_rows(256) == 256  # far under the threshold
    monkeypatch.setattr(G, "INFERENCE_SPLIT_BYTES", 100 * per)
    monkeypatch.setattr(G, "INFERENCE_TARGET_BYTES", 40 * per)
    monkeypatch.setattr(G, "INFERENCE_MIN_ROWS", 4)
    assert plan.inference_rows(100) == 100  # at the threshold: one forward
    assert plan.inference_rows(101) == 32  # the power of two of rows within the target
    monkeypatch.setattr(G, "INFERENCE_MIN_ROWS", 64)
    assert plan.inference_rows(101) == 64
    assert plan.inference_rows(101) <= 101


def test_unbuilt_or_unknown_shapes_never_split():
    seq = models.Sequential([L.Dense(3)])  # not built: no shapes to count
    assert seq._plan()._largest_output_bytes() == 0
    assert seq._plan().inference_rows(10**6) == 10**6


@pytest.mark.parametrize("copyfree", ["", "0", "1", "full"])
def test_predict_does_not_depend_on_the_split(monkeypatch, copyfree):
    initializers.set_seed(1)
    model = _net()
    rng = np.random.default_rng(0)
    for layer in model.layers:  # BatchNormalization statistics away from 0 / 1
        for w in layer.params.values():
            w[...] = rng.standard_normal(w.shape) * 0.3 + (1.0 if w.ndim == 1 else 0.0)
    x = rng.standard_normal((37, 11, 9, 3)).astype(np.float32)
    x0 = x.copy()
    monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", "0")
    want = model.predict(x, batch_size=37)  # one forward, every concatenation copied
    plain = model(x)  # no inference fusion at all
    np.testing.assert_allclose(want, plain, rtol=1e-5, atol=1e-6)
    if copyfree:
        monkeypatch.setenv("FASTCONV_COPYFREE_CONCAT", copyfree)
    else:
        monkeypatch.delenv("FASTCONV_COPYFREE_CONCAT", raising=False)
    plan = model._plan()
    placed = plan.concat_placements(plan.inference_fusion(plan.activation_fusion()), inference=True)
    names = sorted(plan.nodes[i].layer.name for i in placed)
    # "full": the first concatenation only (every input a conv); "1": also d's conv into the second;
    # unset: COPYFREE_CONCAT_INFERENCE_FULL (off)
    full = G.COPYFREE_CONCAT_INFERENCE_FULL
    assert len(names) == {"": 2 if full else 0, "0": 0, "1": 3, "full": 2}[copyfree]
    # training forwards: as the environment says, off when it is unset (COPYFREE_CONCAT_DEFAULT)
    assert len(plan.concat_placements(plan.activation_fusion())) == {"": 0, "0": 0, "1": 3, "full": 2}[copyfree]
    monkeypatch.setattr(G, "INFERENCE_SPLIT_BYTES", 0)
    monkeypatch.setattr(G, "INFERENCE_MIN_ROWS", 4)
    monkeypatch.setattr(G, "INFERENCE_TARGET_BYTES", 5 * plan._largest_output_bytes())
    assert plan.inference_rows(37) == 4
    for bs in (37, 10, 3):
        np.testing.assert_array_equal(model.predict(x, batch_size=bs), want)
    np.testing.assert_array_equal(x, x0)


def test_limit_threads_is_per_python_thread():
    import threading

    from fastconv import _dispatch

    old = _dispatch._state["threads"]
    _dispatch.set_num_threads(2)
    try:
        seen = {}
        with _dispatch.limit_threads(1):
            assert _dispatch.get_num_threads() == 1
            t = threading.Thread(target=lambda: seen.setdefault("other", _dispatch.get_num_threads()))
            t.start()
            t.join()
        assert seen["other"] == 2  # another thread keeps the process-wide count
        assert _dispatch.get_num_threads() == 2
    finally:
        _dispatch._state["threads"] = old


@pytest.mark.parametrize("reuse", ["1", "0"])
def test_concurrent_parts_equal_one_forward(monkeypatch, reuse):
    """FASTCONV_PREDICT_CONCURRENT=1 on 2 threads: parts on Python threads give the outputs of one
    forward bit for bit; a model with a Lambda layer never runs concurrently."""
    from fastconv import _dispatch
    from fastconv.engine import trainer

    monkeypatch.setenv("FASTCONV_REUSE_BUFFERS", reuse)
    monkeypatch.setattr(_dispatch, "_state", dict(_dispatch._state, threads=2))
    initializers.set_seed(2)
    model = _net()
    x = np.random.default_rng(1).standard_normal((70, 11, 9, 3)).astype(np.float32)
    monkeypatch.setenv("FASTCONV_PREDICT_CONCURRENT", "0")
    want = model.predict(x, batch_size=70)
    assert trainer._predict_workers(model._plan(), 70) == 1
    monkeypatch.setenv("FASTCONV_PREDICT_CONCURRENT", "1")
    assert trainer._predict_workers(model._plan(), 70) == 2
    assert trainer._predict_workers(model._plan(), 31) == 1  # parts under PREDICT_MIN_ROWS_PER_THREAD
    for bs in (70, 33, 5):
        np.testing.assert_array_equal(model.predict(x, batch_size=bs), want)
    inp = L.Input((4,))
    lam = models.Model(inp, L.Dense(2)(L.Lambda(lambda t: t * 2)(inp)))
    assert not lam._plan().concurrent_inference()
    assert trainer._predict_workers(lam._plan(), 1000) == 1
