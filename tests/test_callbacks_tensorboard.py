"""callbacks.TensorBoard and fastconv/_tensorboard.py: the event files are read back the way
TensorBoard's server reads them (its event multiplexer and data provider, plugin by plugin), and
the tags, steps and values checked against History, the batch logs, the weights and the model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.compat.proto import graph_pb2
from tensorboard.context import RequestContext

import fastconv as fc
from fastconv import _tensorboard
from fastconv import callbacks as C
from fastconv import layers as L

rng = np.random.default_rng(15)
X = rng.standard_normal((10, 7, 6, 2)).astype("float32")
Y = np.arange(10) % 3
XV = rng.standard_normal((5, 7, 6, 2)).astype("float32")
YV = np.arange(5) % 3


def cnn():
    m = fc.Sequential([
        L.Conv2D(3, (3, 2), activation="relu", input_shape=(7, 6, 2)),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ])  # fmt: skip
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


class Logs:
    """One log directory as TensorBoard's server sees it."""

    def __init__(self, logdir):
        mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0, "histograms": 0, "images": 0})
        mux.AddRunsFromDirectory(str(logdir))
        mux.Reload()
        self.mux = mux
        self.dp = data_provider.MultiplexerDataProvider(mux, str(logdir))

    def runs(self):
        return sorted(self.mux.Runs())

    def wall_times(self, run):
        got = self.dp.read_scalars(RequestContext(), experiment_id="", plugin_name="scalars", downsample=10**6)
        return [d.wall_time for data in got[run].values() for d in data]

    def scalars(self, run):
        """{tag: [(step, value), ...]} of the scalars plugin."""
        got = self.dp.read_scalars(RequestContext(), experiment_id="", plugin_name="scalars", downsample=10**6)
        return {tag: [(d.step, d.value) for d in data] for tag, data in got.get(run, {}).items()}

    def tensors(self, run, plugin):
        got = self.dp.read_tensors(RequestContext(), experiment_id="", plugin_name=plugin, downsample=10**6)
        return {tag: [(d.step, d.numpy) for d in data] for tag, data in got.get(run, {}).items()}


def f32(values):
    return [float(np.float32(v)) for v in values]


def test_the_fashion_mnist_tutorial_line_logs_train_and_validation_scalars_equal_to_history(tmp_path):
    logdir = str(tmp_path / "logs")
    model = cnn()
    h = model.fit(X, Y, batch_size=4, epochs=3, validation_data=(XV, YV), verbose=0,
                  callbacks=[C.TensorBoard(logdir)])  # fmt: skip
    logs = Logs(logdir)
    assert logs.runs() == ["train", "validation"]
    train, val = logs.scalars("train"), logs.scalars("validation")
    assert sorted(train) == ["epoch_accuracy", "epoch_learning_rate", "epoch_loss"]
    assert sorted(val) == ["epoch_accuracy", "epoch_loss", "evaluation_accuracy_vs_iterations",
                           "evaluation_loss_vs_iterations"]  # fmt: skip
    for name in ("loss", "accuracy"):
        assert train["epoch_" + name] == list(zip([0, 1, 2], f32(h.history[name])))
        assert val["epoch_" + name] == list(zip([0, 1, 2], f32(h.history["val_" + name])))
        # 3 batches per epoch (10 samples, batch 4): the validation value against the batches so far
        assert val[f"evaluation_{name}_vs_iterations"] == list(zip([3, 6, 9], f32(h.history["val_" + name])))
    assert train["epoch_learning_rate"] == [(e, float(np.float32(0.001))) for e in range(3)]
    start = os.path.getmtime(tmp_path) - 3600
    assert all(t > start for run in ("train", "validation") for t in logs.wall_times(run))  # real clock times
    assert "learning_rate" not in h.history  # TensorBoard reads the rate, it does not add it to the logs
    assert logs.tensors("train", "histograms") == {}
    assert not any(t.startswith("batch_") for t in train)


def test_the_cifar10_tutorial_line_writes_a_histogram_of_every_weight_every_epoch(tmp_path):
    log_dir = str(tmp_path / "fit")
    model = cnn()
    seen = []
    record = C.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append([w.copy() for w in model.weights]))
    tensorboard_callback = C.TensorBoard(log_dir=log_dir, histogram_freq=1)
    model.fit(X, Y, epochs=2, validation_data=(XV, YV), callbacks=[record, tensorboard_callback], verbose=0)
    hist = Logs(log_dir).tensors("train", "histograms")
    conv, dense = model.layers[0].name, model.layers[3].name
    names = [f"{conv}/kernel", f"{conv}/bias", f"{dense}/kernel", f"{dense}/bias"]
    assert sorted(hist) == sorted(n + "/histogram" for n in names)
    for i, name in enumerate(names):
        steps = [s for s, _ in hist[name + "/histogram"]]
        assert steps == [0, 1]
        for epoch, (_, buckets) in enumerate(hist[name + "/histogram"]):
            w = seen[epoch][i]
            assert buckets.shape == (30, 3)  # (left edge, right edge, count)
            assert buckets[:, 2].sum() == w.size
            np.testing.assert_allclose([buckets[0, 0], buckets[-1, 1]], [w.min(), w.max()], rtol=1e-6)
            np.testing.assert_allclose(buckets[1:, 0], buckets[:-1, 1])
            inner = np.histogram(w, bins=np.append(buckets[:, 0], buckets[-1, 1]))[0]
            # np.histogram closes the last bucket on the right as TensorBoard does; an edge value
            # may fall either side of a shared edge, so compare the cumulative counts loosely by one
            assert np.abs(np.cumsum(inner) - np.cumsum(buckets[:, 2])).max() <= 1


def test_histogram_freq_counts_epochs_from_zero_and_sublayers_are_named_under_their_block(tmp_path):
    inp = fc.Input((7, 6, 2))
    x = L.Conv2D(4, 3, padding="same", name="stem")(inp)
    x = fc.layers.ResidualBlock([L.Conv2D(4, 3, padding="same", name="inner")], name="res")(x)
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x))
    model = fc.Model(inp, out)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=5, verbose=0, callbacks=[C.TensorBoard(tmp_path, histogram_freq=2)])
    hist = Logs(tmp_path).tensors("train", "histograms")
    assert "res/inner/kernel/histogram" in hist and "stem/kernel/histogram" in hist
    assert all([s for s, _ in v] == [0, 2, 4] for v in hist.values())
    assert len(hist) == len(model.weights)


@pytest.mark.parametrize(("update_freq", "indices"), [("batch", [0, 1, 2]), (1, [0, 1, 2]), (2, [0, 2]),
                                                       (5, [0]), ("epoch", [])])  # fmt: skip
def test_update_freq_writes_the_running_batch_logs_at_the_global_batch_count(tmp_path, update_freq, indices):
    batch_logs = []
    record = C.LambdaCallback(on_train_batch_end=lambda batch, logs: batch_logs.append(dict(logs)))
    model = cnn()
    tb = C.TensorBoard(tmp_path, update_freq=update_freq, write_graph=False)
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[record, tb])
    assert len(batch_logs) == 6
    expect = [(epoch * 3 + i + 1, batch_logs[epoch * 3 + i]) for epoch in range(2) for i in indices]
    got = Logs(tmp_path).scalars("train")
    for name in ("loss", "accuracy"):
        if not indices:
            assert "batch_" + name not in got
            continue
        assert got["batch_" + name] == [(step, float(np.float32(logs[name]))) for step, logs in expect]
    # the batch counter runs on over a second fit, as Keras's does
    if indices == [0, 1, 2]:
        model.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[tb])
        assert [s for s, _ in Logs(tmp_path).scalars("train")["batch_loss"]][-3:] == [7, 8, 9]


def test_write_graph_gives_the_layer_graph_and_the_keras_json(tmp_path):
    inp = fc.Input((4,), name="x")
    a = L.Dense(3, name="a")(inp)
    b = L.Dense(3, name="b")(inp)
    model = fc.Model(inp, L.Add(name="sum")([a, b]))
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 4), "float32"), np.zeros((4, 3), "float32"), epochs=1, verbose=0,
              callbacks=[C.TensorBoard(tmp_path)])  # fmt: skip
    logs = Logs(tmp_path)
    acc = logs.mux.GetAccumulator("train")
    graph = graph_pb2.GraphDef.FromString(acc.SerializedGraph())
    nodes = {n.name: (n.op, list(n.input)) for n in graph.node}
    assert nodes == {"x": ("InputLayer", []), "a": ("Dense", ["x"]), "b": ("Dense", ["x"]),
                     "sum": ("Add", ["a", "b"])}  # fmt: skip
    assert json.loads(graph.node[1].attr["config"].s)["units"] == 3
    # the Graphs tab's conceptual graph reads the Keras JSON as a blob, as tf.keras wrote it
    keras = logs.dp.read_blob_sequences(RequestContext(), experiment_id="", plugin_name="graph_keras_model",
                                        downsample=10)["train"]["keras"]  # fmt: skip
    assert [d.step for d in keras] == [0]
    text = logs.dp.read_blob(RequestContext(), blob_key=keras[0].values[0].blob_key)
    assert json.loads(text) == json.loads(model.to_json())


def test_sequential_graph_is_a_chain_and_write_graph_false_writes_none(tmp_path):
    model = cnn()
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[C.TensorBoard(tmp_path / "a")])
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[C.TensorBoard(tmp_path / "b", write_graph=False)])
    graph = graph_pb2.GraphDef.FromString(Logs(tmp_path / "a").mux.GetAccumulator("train").SerializedGraph())
    names = [layer.name for layer in model.layers]
    assert [(n.name, n.op, list(n.input)) for n in graph.node] == [
        (names[0], "Conv2D", []), (names[1], "MaxPooling2D", names[:1]), (names[2], "Flatten", names[1:2]),
        (names[3], "Dense", names[2:3])]
    assert Logs(tmp_path / "b").mux.GetAccumulator("train").Tags()["graph"] is False


def test_write_images_draws_every_conv_kernel_with_the_histograms(tmp_path):
    model = cnn()
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[C.TensorBoard(tmp_path, histogram_freq=1, write_images=True)])
    blobs = Logs(tmp_path).dp.read_blob_sequences(RequestContext(), experiment_id="", plugin_name="images", downsample=100)["train"]
    tag = model.layers[0].name + "/kernel/image"
    assert list(blobs) == [tag]  # only 4-D kernels
    assert [d.step for d in blobs[tag]] == [0, 1]
    last = blobs[tag][-1].values
    width, height = (int(Logs(tmp_path).dp.read_blob(RequestContext(), blob_key=b.blob_key)) for b in last[:2])
    picture = mpimg.imread(io.BytesIO(Logs(tmp_path).dp.read_blob(RequestContext(), blob_key=last[2].blob_key)), format="png")
    k = model.layers[0].get_weights()[0]  # (3, 2, 2, 3)
    assert (height, width) == picture.shape[:2] == (2 * 4 - 1, 3 * 3 - 1)
    expect = _tensorboard.kernel_grid(k)
    np.testing.assert_array_equal(np.round(picture * 255).astype(np.uint8), expect)
    scaled = (k - k.min()) / (k.max() - k.min())
    np.testing.assert_allclose(expect[4:7, 3:5] / 255, scaled[:, :, 1, 1], atol=0.5 / 255)  # input 1, filter 1
    assert expect[3, :].max() == 0 and expect[:, [2, 5]].max() == 0  # the gaps
    assert expect.min() == 0 and expect.max() == 255


def test_png_round_trips_grey_rgb_and_rgba():
    img = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4) * 4
    for c in (1, 3, 4):
        back = mpimg.imread(io.BytesIO(_tensorboard.png(img[:, :, :c])), format="png")
        np.testing.assert_array_equal(np.round(back * 255).astype(np.uint8).reshape(5, 3, c), img[:, :, :c])
    back = mpimg.imread(io.BytesIO(_tensorboard.png(img[:, :, 0])), format="png")
    np.testing.assert_array_equal(np.round(back * 255).astype(np.uint8), img[:, :, 0])


def test_steps_per_second_and_initial_epoch_steps(tmp_path):
    model = cnn()
    tb = C.TensorBoard(tmp_path, write_steps_per_second=True, write_graph=False)
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[tb])
    model.fit(X, Y, epochs=4, initial_epoch=2, verbose=0, callbacks=[tb])
    train = Logs(tmp_path).scalars("train")
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2, 3]
    assert [s for s, _ in train["epoch_steps_per_second"]] == [0, 1, 2, 3]
    assert all(v > 0 for _, v in train["epoch_steps_per_second"])
    assert len([f for f in os.listdir(tmp_path / "train") if f.startswith("events.out.tfevents")]) == 2


def test_learning_rate_follows_the_scheduler(tmp_path):
    model = cnn()
    sched = C.LearningRateScheduler(lambda epoch, lr: 0.5 ** epoch)
    model.fit(X, Y, epochs=3, verbose=0, callbacks=[sched, C.TensorBoard(tmp_path)])
    assert Logs(tmp_path).scalars("train")["epoch_learning_rate"] == [(0, 1.0), (1, 0.5), (2, 0.25)]


def test_keras_arguments_defaults_and_root_only(tmp_path):
    tb = C.TensorBoard()
    assert (tb.log_dir, tb.histogram_freq, tb.write_graph, tb.write_images, tb.update_freq) == (
        "logs", 0, True, False, "epoch")
    assert C.TensorBoard(tmp_path, update_freq="batch").update_freq == 1
    assert C.TensorBoard.root_only is True and tb.root_only is True
    C.TensorBoard(tmp_path)
    assert not (tmp_path / "train").exists()  # constructing writes nothing
    with pytest.warns(UserWarning, match="profile_batch"):
        C.TensorBoard(tmp_path, profile_batch=2)
    with pytest.warns(UserWarning, match="embeddings_freq"):
        C.TensorBoard(tmp_path, embeddings_freq=1)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"histogram_freq": -1}, "histogram_freq=-1"),
    ({"histogram_freq": 1.5}, "histogram_freq=1.5"),
    ({"histogram_freq": True}, "histogram_freq=True"),
    ({"update_freq": 0}, "update_freq=0"),
    ({"update_freq": "step"}, "update_freq='step'"),
    ({"update_freq": 2.0}, "update_freq=2.0"),
    ({"log_dir": ""}, "log_dir=''"),
    ({"log_dir": None}, "log_dir=None"),
])  # fmt: skip
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.TensorBoard(**kwargs)


def test_log_dir_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="log_dir=3"):
        C.TensorBoard(3)


def test_without_tensorboard_construction_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: "import" raises ImportError
    monkeypatch.delitem(sys.modules, "fastconv._tensorboard")
    monkeypatch.delattr(fc, "_tensorboard")  # as if it had never been imported
    with pytest.raises(ImportError, match=r"pip install 'fastconv\[tensorboard\]'"):
        C.TensorBoard("logs")


def test_import_fastconv_never_imports_tensorboard():
    code = ("import sys; sys.modules['tensorboard'] = None; import fastconv, fastconv.callbacks; "
            "assert 'fastconv._tensorboard' not in sys.modules; print('ok')")  # fmt: skip
    # the fastconv under test (the built checkout, or the installed package), from outside the source
    # tree, whose unbuilt fastconv/ would shadow it
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    env = dict(os.environ, PYTHONPATH=parent)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env,
                         timeout=120, cwd=os.sep)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
