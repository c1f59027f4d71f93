"""Metrics against Keras 3: the same data through two ``update_state`` calls in Keras and two
additive batch states here must give the same epoch value; "accuracy" resolves by the shapes; an
``evaluate`` with fixed weights logs the names the user gave and Keras's values.

Reference numbers computed offline with Keras 3.15.1 (JAX backend, float32) and stored as
literals; the tests never import Keras.
"""

import numpy as np
import pytest

from fastconv import Input, Model, callbacks, losses, metrics, optimizers
from fastconv.layers import Dense

rng = np.random.default_rng(0)  # the same stream the Keras script drew from
yb = (rng.uniform(size=(40, 1)) > 0.5).astype("float32")
pb = np.clip(yb * 0.3 + rng.uniform(size=(40, 1)) * 0.7, 0, 1).astype("float32")
ym = rng.integers(0, 4, size=30)
pm = rng.dirichlet(np.ones(4), size=30).astype("float32")
oh = np.eye(4, dtype="float32")[ym]
yr = rng.normal(size=(30, 3)).astype("float32")
pr = rng.normal(size=(30, 3)).astype("float32")

CASES = {
    "auc": (lambda: metrics.get("auc"), yb, pb, 17),
    "auc_10_minoring": (lambda: metrics.AUC(num_thresholds=10, summation_method="minoring"), yb, pb, 17),
    "auc_logits": (lambda: metrics.AUC(from_logits=True), yb, (pb - 0.5) * 6, 17),
    "auc_multiclass_flat": (lambda: metrics.AUC(), oh, pm, 11),
    "precision": (lambda: metrics.get("precision"), yb, pb, 17),
    "recall": (lambda: metrics.get("recall"), yb, pb, 17),
    "precision_03": (lambda: metrics.Precision(thresholds=0.3), yb, pb, 17),
    "recall_list": (lambda: metrics.Recall(thresholds=[0.2, 0.6]), yb, pb, 17),
    "recall_class1": (lambda: metrics.Recall(thresholds=0.3, class_id=1), oh, pm, 11),
    "precision_top2": (lambda: metrics.Precision(top_k=2), oh, pm, 11),
    "binary_accuracy_07": (lambda: metrics.BinaryAccuracy(threshold=0.7), yb, pb, 17),
    "categorical_accuracy": (lambda: metrics.get("categorical_accuracy"), oh, pm, 11),
    "sparse_categorical_accuracy": (lambda: metrics.get("sparse_categorical_accuracy"), ym, pm, 11),
    "top2": (lambda: metrics.TopKCategoricalAccuracy(k=2), oh, pm, 11),
    "sparse_top2": (lambda: metrics.SparseTopKCategoricalAccuracy(k=2), ym, pm, 11),
    "mae": (lambda: metrics.get("mae"), yr, pr, 11),
    "mse": (lambda: metrics.get("mse"), yr, pr, 11),
}

KERAS = {
    'auc': 0.9440104365348816,
    'auc_10_minoring': 0.9322916865348816,
    'auc_logits': 0.9440104365348816,
    'auc_multiclass_flat': 0.5222222208976746,
    'precision': 0.949999988079071,
    'recall': 0.7916666865348816,
    'precision_03': 0.800000011920929,
    'recall_list': [1.0, 0.625],
    'recall_class1': 0.4000000059604645,
    'precision_top2': 0.30000001192092896,
    'binary_accuracy_07': 0.7250000238418579,
    'categorical_accuracy': 0.20000000298023224,
    'sparse_categorical_accuracy': 0.20000000298023224,
    'top2': 0.6000000238418579,
    'sparse_top2': 0.6000000238418579,
    'mae': 1.0868877172470093,
    'mse': 1.9399820566177368,
}


def test_data_stream_is_the_one_keras_saw():
    assert float(pb.sum()) == pytest.approx(20.9266357421875, rel=1e-6)
    assert float(pm.sum(axis=0)[0]) == pytest.approx(6.8047614097595215, rel=1e-6)
    assert int(ym.sum()) == 50
    assert float(yr.sum()) == pytest.approx(-15.499462127685547, rel=1e-5)
    assert float(pr.sum()) == pytest.approx(-4.069676399230957, rel=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_epoch_value_matches_keras(case):
    make, t, p, cut = CASES[case]
    m = make()
    total = metrics.merge(None, m.update(t[:cut], p[:cut]))
    total = metrics.merge(total, m.update(t[cut:], p[cut:]))
    np.testing.assert_allclose(m.result(total), KERAS[case], rtol=2e-6, atol=1e-7)


def test_accuracy_string_resolves_like_keras():
    # Keras's compile: last axis 1 -> binary; lower-rank or (N, 1) labels -> sparse; else categorical.
    acc = metrics.get("acc")
    assert acc.name == "acc" and metrics.get("accuracy").name == "accuracy"
    assert acc(yb, pb) == pytest.approx(metrics.BinaryAccuracy()(yb, pb))
    assert acc(ym, pm) == pytest.approx(KERAS["sparse_categorical_accuracy"])
    assert acc(ym[:, None], pm) == pytest.approx(KERAS["sparse_categorical_accuracy"])
    assert acc(oh, pm) == pytest.approx(KERAS["categorical_accuracy"])
    # the class Accuracy is Keras's exact match
    assert metrics.Accuracy()(np.array([1, 2, 3]), np.array([1, 0, 3])) == pytest.approx(2 / 3)


def test_names_strings_and_classes():
    for name, cls in [
        ("binary_accuracy", metrics.BinaryAccuracy), ("AUC", metrics.AUC), ("auc", metrics.AUC),
        ("precision", metrics.Precision), ("recall", metrics.Recall), ("mae", metrics.MeanAbsoluteError),
        ("mean_squared_error", metrics.MeanSquaredError),
        ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
        ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
    ]:
        m = metrics.get(name)
        assert type(m) is cls and m.name == name
    assert metrics.AUC().name == "auc" and metrics.MeanAbsoluteError().name == "mean_absolute_error"
    for m in [metrics.AUC(num_thresholds=50, name="auc50"), metrics.Precision(thresholds=0.3),
              metrics.BinaryAccuracy(threshold=0.7), metrics.get("acc"), metrics.Accuracy()]:
        back = metrics.get(metrics.serialize(m))
        assert type(back) is type(m) and back.get_config() == m.get_config()


# ---- evaluate with fixed weights (fused softmax output; sigmoid output) -------------------------
X = np.array(
[[1.5941568613052368, -1.095471978187561, 0.36250248551368713, 0.44399139285087585], [-0.3604401648044586, 0.5835341215133667, -1.4385226964950562, 2.118803024291992], [-1.342044472694397, 0.9198072552680969, -1.1211227178573608, 1.1508830785751343], [-0.38477402925491333, 0.15842290222644806, 0.0533437542617321, 1.1007341146469116], [-0.3215474486351013, -2.967183828353882, -0.7600587606430054, 0.18371231853961945], [-0.4404681921005249, 0.7698208689689636, 1.015326976776123, -0.14777180552482605], [-1.4896453619003296, 1.3841651678085327, 1.083053469657898, -0.2991911470890045], [2.108288526535034, -0.3488754630088806, -1.1371197700500488, -0.15587343275547028], [1.0778337717056274, -0.9374534487724304, 1.9512250423431396, -0.8965262174606323], [0.9544222950935364, 0.5444623827934265, -0.15405705571174622, 1.0805330276489258], [-1.4997987747192383, 1.3575718402862549, -0.06368403136730194, -0.5424352288246155], [0.7491740584373474, 1.0598989725112915, 0.7697954177856445, 1.9995038509368896], [1.0807260274887085, 1.2835066318511963, -0.5398639440536499, 0.1065237745642662], [0.5629825592041016, -0.017742237076163292, 0.3016352355480194, 0.42610475420951843], [0.8442439436912537, -0.10160888731479645, -0.3497992157936096, -0.8283156752586365], [-0.8917323350906372, 1.1724512577056885, -0.08452148735523224, 0.7869443893432617], [-1.2973638772964478, -1.9381680488586426, -1.0490912199020386, 1.1466269493103027], [1.0680774450302124, 0.33203861117362976, -0.8021701574325562, -0.13080264627933502], [-0.2977604866027832, -0.3449733555316925, -2.5060698986053467, -0.8579263687133789], [-0.19010888040065765, 1.516427755355835, 0.16074305772781372, 1.4008883237838745]]
, dtype=np.float32)
W = np.array(
[[-0.39370691776275635, -0.25268858671188354, -3.8994216918945312], [0.46333032846450806, 0.5470956563949585, 1.7637590169906616], [-0.486761212348938, 0.09415415674448013, -0.7055279612541199], [-1.1762570142745972, -0.7131079435348511, -0.3449985384941101]]
, dtype=np.float32)
B = np.array(
[1.355437994003296, 0.0022116026375442743, -0.7905448079109192]
, dtype=np.float32)
Y = np.array(
[0, 0, 1, 0, 1, 1, 0, 0, 2, 2, 1, 2, 1, 2, 0, 1, 0, 1, 2, 2]
)
W1 = np.array(
[[0.45367127656936646], [-1.6901599168777466], [-0.7281950116157532], [1.2323033809661865]]
, dtype=np.float32)
B1 = np.array(
[0.2983352541923523]
, dtype=np.float32)
Y1 = np.array(
[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
, dtype=np.float32)


def _dense_model(units, activation, w, b):
    inp = Input((4,))
    model = Model(inp, Dense(units, activation=activation)(inp))
    model.layers[1].set_weights([w, b])
    return model


def test_evaluate_softmax_model_matches_keras():
    model = _dense_model(3, "softmax", W, B)
    model.compile(
        optimizers.SGD(0.01), "sparse_categorical_crossentropy",
        metrics=["acc", "sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")],
    )
    got = model.evaluate(X, Y, batch_size=7, verbose=0, return_dict=True)
    keras = {'acc': 0.20000000298023224, 'loss': 2.8105242252349854, 'sparse_top_k_categorical_accuracy': 1.0, 'top2': 0.6000000238418579}
    assert set(got) == set(keras)
    for k, v in keras.items():
        assert got[k] == pytest.approx(v, rel=1e-5), k


def test_evaluate_sigmoid_model_matches_keras():
    model = _dense_model(1, "sigmoid", W1, B1)
    model.compile(optimizers.SGD(0.01), "binary_crossentropy", metrics=["acc", "auc", "precision", "recall", "mae"])
    got = model.evaluate(X, Y1, batch_size=6, verbose=0, return_dict=True)
    keras = {'acc': 0.4000000059604645, 'auc': 0.42424243688583374, 'loss': 1.4284290075302124, 'mae': 0.5424929261207581, 'precision': 0.38461539149284363, 'recall': 0.5555555820465088}
    assert set(got) == set(keras)
    for k, v in keras.items():
        assert got[k] == pytest.approx(v, rel=1e-5), k
    model.compile(optimizers.SGD(0.01), losses.BinaryCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
    got = model.evaluate(X, Y1, batch_size=6, verbose=0, return_dict=True)
    keras = {'accuracy': 0.4000000059604645, 'loss': 1.4067811965942383}
    for k, v in keras.items():
        assert got[k] == pytest.approx(v, rel=1e-5), k


def test_fit_logs_acc_and_early_stopping_monitors_val_acc():
    model = _dense_model(3, "softmax", W, B)
    model.compile(optimizers.SGD(0.0), "categorical_crossentropy", metrics=["acc", "auc"])
    stop = callbacks.EarlyStopping(monitor="val_acc", patience=0)
    T = np.eye(3)[Y]
    hist = model.fit(X, T, batch_size=7, epochs=5, verbose=0, validation_data=(X, T), callbacks=[stop])
    assert set(hist.history) == {"loss", "acc", "auc", "val_loss", "val_acc", "val_auc"}
    assert len(hist.history["loss"]) == 2  # learning rate 0: val_acc never improves
    # AUC on a fused softmax output sees probabilities, not logits
    probs = model.predict(X, verbose=0)
    assert hist.history["val_auc"][-1] == pytest.approx(metrics.AUC()(T, probs), rel=1e-6)
