"""The flat parameter layout (fastconv/engine/flat.py) and the one-segment optimizer step over it
(fastconv/optimizers/_compiled.py): the weights and gradients really are views of one buffer per
dtype, training is bit for bit the training of separate arrays (FASTCONV_FLAT_PARAMS=0) for every
optimizer and option, float32 and float64, 1 and 2 threads, and everything that touches weights
keeps working: set_weights, freezing and unfreezing after compile, save / load with the optimizer
state, lazily built models, shared layers, weight-decay exclusions, the cached trainable_pairs."""

import numpy as np
import pytest

import fastconv as fc
from fastconv import _dispatch
from fastconv import layers as L
from fastconv import optimizers as O
from fastconv.engine import flat as F
from fastconv.optimizers import _compiled

OPTIMIZERS = [
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"learning_rate": 0.05}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {}),
    ("Adagrad", {"learning_rate": 0.05}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adamax", {}),
    ("Nadam", {}),
    ("Adam", {"weight_decay": 0.05}),
    ("Adam", {"clipvalue": 0.01}),
    ("Adam", {"clipnorm": 0.05}),  # per-weight norms: the table over the views
]


def _model(dtype="float32", wide=False):
    """Odd shapes, a composite-free mix: conv (+bias), BatchNormalization, depthwise, dense."""
    k = 40 if wide else 5
    m = fc.Sequential([
        L.Conv2D(k, 3, activation="relu", input_shape=(9, 7, 3), dtype=dtype),
        L.BatchNormalization(dtype=dtype),
        L.DepthwiseConv2D(3, padding="same", dtype=dtype),
        L.Conv2D(4 if not wide else 200, 3, strides=2, dtype=dtype),
        L.Flatten(dtype=dtype),
        L.Dense(3, dtype=dtype),
    ])
    m.build((None, 9, 7, 3))
    rng = np.random.default_rng(1)
    m.set_weights([(rng.standard_normal(w.shape) * 0.3).astype(dtype) if w.ndim else w for w in m.get_weights()])
    return m


def _data(dtype="float32", n=23):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 9, 7, 3)).astype(dtype), rng.integers(0, 3, n)


def _train(monkeypatch, flat, name, kw, dtype="float32", epochs=2, wide=False, before_fit=None):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1" if flat else "0")
    m = _model(dtype, wide)
    m.compile(getattr(O, name)(**kw), "sparse_categorical_crossentropy")
    if before_fit is not None:
        before_fit(m)
    x, y = _data(dtype)
    m.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False)
    return m


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        assert u.dtype == v.dtype and np.array_equal(u, v), np.max(np.abs(u - v))


def _flat_buffers(model):
    pairs = F.train_pairs(model)
    assert pairs.flat is not None and len(pairs.flat) == 1
    return pairs.flat[0]


def _shares(a, buf):
    return np.shares_memory(a, buf)


# ---- the layout --------------------------------------------------------------------------------

def test_weights_and_grads_are_views_of_one_buffer(monkeypatch):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    m = _model()
    m.compile("adam", "sparse_categorical_crossentropy")
    dtype, pbuf, gbuf, offsets = _flat_buffers(m)
    assert pbuf.__array_interface__["data"][0] % F.ALIGN_BYTES == 0
    pairs = m.trainable_pairs()
    assert len(pairs) == len(offsets) == len(m.trainable_weights)
    ends = []
    for (key, p, g), off in zip(pairs, offsets):
        assert _shares(p, pbuf) and _shares(g, gbuf) and p.flags.c_contiguous
        start = (p.__array_interface__["data"][0] - pbuf.__array_interface__["data"][0]) // pbuf.itemsize
        assert start == off and off % (F.ALIGN_BYTES // pbuf.itemsize) == 0  # each weight 64-byte aligned
        ends.append((off, off + p.size))
    assert all(b0 >= a1 for (_, a1), (b0, _) in zip(ends, ends[1:]))  # disjoint, in order
    # a write through the flat buffer is a write to the layer's weight, and back
    kernel = m.layers[0].params["kernel"]
    pbuf[offsets[0]] = 123.0
    assert kernel.reshape(-1)[0] == 123.0
    m.layers[0].grads["kernel"][...] = 7.0
    assert np.all(gbuf[offsets[0] : offsets[0] + kernel.size] == 7.0)
    # the non-trainable moving statistics are not in it
    bn = m.layers[1]
    assert not any(_shares(s, pbuf) for s in bn.state.values())


def test_off_switch_keeps_separate_arrays(monkeypatch):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "0")
    m = _model()
    m.compile("adam", "sparse_categorical_crossentropy")
    pairs = F.train_pairs(m)
    assert pairs.flat is None
    assert all(p.base is None for _, p, _ in pairs)


# ---- training: bit for bit the separate-array path ------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kw", OPTIMIZERS)
def test_training_equals_separate_arrays(monkeypatch, name, kw, dtype):
    a = _train(monkeypatch, False, name, kw, dtype)
    b = _train(monkeypatch, True, name, kw, dtype)
    _assert_same_weights(a, b)
    seg_rows = b.optimizer._layout.seg.shape[0]
    if kw.get("clipnorm"):
        assert seg_rows == len(b.trainable_weights)  # per-weight norms keep the table
    else:
        assert seg_rows == 1  # one segment: the whole flat buffer
    # the slots are views of flat slot buffers, and get_state gives every key's slots
    meta, arrays = b.optimizer.get_state()
    assert len(arrays) == len(b.trainable_weights) * len(b.optimizer._slot_names)
    meta_a, arrays_a = a.optimizer.get_state()
    assert meta["iterations"] == meta_a["iterations"]
    for u, v in zip(arrays_a, arrays):
        assert np.array_equal(u, v)


def test_global_clipnorm_equal_to_rounding(monkeypatch):
    # the norm is summed over other chunks (the padding adds zeros): equal to rounding, not bits
    a = _train(monkeypatch, False, "Adam", {"global_clipnorm": 0.05}, "float64")
    b = _train(monkeypatch, True, "Adam", {"global_clipnorm": 0.05}, "float64")
    assert b.optimizer._layout.seg.shape[0] == 1
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(v, u, rtol=1e-12, atol=1e-13)


def test_two_threads_large_buffer(monkeypatch):
    # past PARALLEL_MIN elements the one-segment update runs on 2 threads: still equal
    old = _dispatch.get_num_threads()
    _dispatch.set_num_threads(2)
    try:
        a = _train(monkeypatch, False, "Adam", {}, epochs=1, wide=True)
        b = _train(monkeypatch, True, "Adam", {}, epochs=1, wide=True)
    finally:
        _dispatch.set_num_threads(old)
    assert _flat_buffers(b)[1].size >= _compiled.PARALLEL_MIN
    _assert_same_weights(a, b)


def test_weight_decay_exclusions_keep_the_table_and_follow_the_views(monkeypatch):
    def excl_by_array(m):  # ids taken before the layout (a model compiled unbuilt would do this)
        m.optimizer.exclude_from_weight_decay(var_list=[m.layers[0].params["bias"]])

    def excl_by_name(m):
        m.optimizer.exclude_from_weight_decay(var_names=["bias"])

    for hook in (excl_by_array, excl_by_name):
        a = _train(monkeypatch, False, "AdamW", {"weight_decay": 0.2}, before_fit=hook)
        b = _train(monkeypatch, True, "AdamW", {"weight_decay": 0.2}, before_fit=hook)
        _assert_same_weights(a, b)
        assert b.optimizer._layout.seg.shape[0] == len(b.trainable_weights)


def test_var_list_exclusion_before_the_layout_is_carried_over(monkeypatch):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    m = fc.Sequential([L.Dense(3, input_shape=(4,)), L.Dense(2)])  # built by its input_shape
    opt = O.AdamW(weight_decay=0.5)
    bias = m.layers[0].params["bias"]
    opt.exclude_from_weight_decay(var_list=[bias])
    m.compile(opt, "mse")  # lays the weights out: the bias is now a view
    assert m.layers[0].params["bias"] is not bias
    assert opt._wd_exclude_keys == {id(m.layers[0].params["bias"])}


# ---- what touches the weights --------------------------------------------------------------------

def test_set_weights_after_compile_writes_into_the_views(monkeypatch):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    m = _model()
    m.compile("sgd", "sparse_categorical_crossentropy")
    _, pbuf, _, _ = _flat_buffers(m)
    kernel = m.layers[0].params["kernel"]
    new = [np.full(w.shape, i + 0.5, w.dtype) for i, w in enumerate(m.get_weights())]
    m.set_weights(new)
    assert m.layers[0].params["kernel"] is kernel and _shares(kernel, pbuf)
    assert np.all(kernel == 0.5)
    m.layers[0].set_weights([np.ones_like(kernel), np.zeros(kernel.shape[-1], kernel.dtype)])
    assert m.layers[0].params["kernel"] is kernel and np.all(kernel == 1)
    assert F.train_pairs(m) is F.train_pairs(m)  # no re-layout: still the same views


def test_trainable_toggling_after_compile(monkeypatch):
    def run(flat):
        monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1" if flat else "0")
        m = _model()
        m.compile(O.Adam(), "sparse_categorical_crossentropy")
        x, y = _data()
        m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        frozen = m.layers[0]
        frozen.trainable = False
        before = [w.copy() for w in frozen.weights]
        m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        for u, v in zip(before, frozen.weights):
            assert np.array_equal(u, v)  # frozen: not updated
        if flat:
            _, pbuf, _, offsets = _flat_buffers(m)
            assert len(offsets) == len(m.trainable_weights)
            assert not any(_shares(w, pbuf) for w in frozen.weights)  # re-laid out without it
            assert all(w.base is None for w in frozen.params.values())  # its own copies
        frozen.trainable = True
        m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        if flat:
            _, pbuf, _, _ = _flat_buffers(m)
            assert all(_shares(w, pbuf) for w in frozen.params.values())
        return m

    _assert_same_weights(run(False), run(True))


def test_save_load_round_trip_resumes_bit_for_bit(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    x, y = _data()
    m = _model()
    m.compile(O.Adam(), "sparse_categorical_crossentropy")
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "m.npz"
    m.save(path)
    loaded = fc.load_model(path)
    _assert_same_weights(m, loaded)
    assert m.summary_text() .split("\n")[-4:] == loaded.summary_text().split("\n")[-4:]
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    _assert_same_weights(m, loaded)
    _, pbuf, _, _ = _flat_buffers(loaded)
    assert all(_shares(p, pbuf) for _, p, _ in loaded.trainable_pairs())
    # load_weights into the trained model writes through the views
    m.save_weights(tmp_path / "w.weights.npz")
    kernel = loaded.layers[0].params["kernel"]
    loaded.load_weights(tmp_path / "w.weights.npz")
    assert loaded.layers[0].params["kernel"] is kernel
    _assert_same_weights(m, loaded)


def test_optimizer_state_restore_relays_the_slots(monkeypatch):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    x, y = _data()
    a, b = _model(), _model()
    a.compile(O.Adam(), "sparse_categorical_crossentropy")
    b.compile(O.Adam(), "sparse_categorical_crossentropy")
    a.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    b.set_weights(a.get_weights())
    meta, arrays = a.optimizer.get_state()
    rename = {ka: kb for (ka, _, _), (kb, _, _) in zip(a.trainable_pairs(), b.trainable_pairs())}
    meta = {**meta, "slots": [[rename[k], n] for k, n in meta["slots"]]}  # b's layers have other names
    b.optimizer.set_state(meta, [arr.copy() for arr in arrays])
    a.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    b.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    _assert_same_weights(a, b)
    assert b.optimizer._layout.seg.shape[0] == 1


def test_lazily_built_model_is_laid_out_at_the_first_step(monkeypatch):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    m = fc.Sequential([L.Conv2D(3, 3), L.Flatten(), L.Dense(3)])
    m.compile("adam", "sparse_categorical_crossentropy")  # not built: nothing to lay out yet
    assert not m.built
    x, y = _data()
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    _, pbuf, _, offsets = _flat_buffers(m)
    assert len(offsets) == 4 and all(_shares(p, pbuf) for _, p, _ in m.trainable_pairs())
    assert m.count_params() == sum(w.size for w in m.weights)


def test_added_layer_is_laid_out_again(monkeypatch):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    m = fc.Sequential([L.Dense(3, input_shape=(4,))])
    m.compile("sgd", "mse")
    first = F.train_pairs(m)
    m.add(L.Dense(2))
    m.compile("sgd", "mse")
    m.fit(np.ones((4, 4), "float32"), np.ones((4, 2), "float32"), verbose=0)
    pairs = F.train_pairs(m)
    assert pairs is not first and len(pairs.flat[0][3]) == 4


def test_functional_shared_layer(monkeypatch):
    def run(flat):
        monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1" if flat else "0")
        fc.layers.base.reset_name_counters()
        inp = fc.Input((6,))
        shared = L.Dense(6, activation="tanh", kernel_initializer="glorot_uniform")
        h = shared(shared(inp))
        out = L.Dense(2)(L.Concatenate()([h, inp]))
        m = fc.Model(inp, out)
        rng = np.random.default_rng(3)
        m.set_weights([rng.standard_normal(w.shape).astype(w.dtype) for w in m.get_weights()])
        m.compile(O.RMSprop(), "mse")
        x = rng.standard_normal((17, 6)).astype("float32")
        m.fit(x, rng.standard_normal((17, 2)).astype("float32"), batch_size=5, epochs=2, verbose=0,
              shuffle=False)
        if flat:
            assert len(F.train_pairs(m).flat[0][3]) == 4  # the shared layer's weights once
        return m

    _assert_same_weights(run(False), run(True))


def test_mixed_dtypes_fall_back_per_weight(monkeypatch):
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    inp = fc.Input((4,))
    m = fc.Model(inp, L.Dense(2, dtype="float64")(L.Dense(3)(inp)))
    m.compile("adam", "mse")
    pairs = F.train_pairs(m)
    assert sorted(d.name for d, *_ in pairs.flat) == ["float32", "float64"]
    before = [w.copy() for w in m.get_weights()]
    m.fit(np.ones((4, 4), "float32"), np.ones((4, 2)), verbose=0)
    assert all(not np.array_equal(u, v) for u, v in zip(before, m.get_weights()))


# ---- the cached trainable_pairs -----------------------------------------------------------------

def test_trainable_pairs_cache_follows_changes():
    layer = L.Dense(3)
    layer.build((4,))
    first = layer.trainable_pairs()
    assert [k for k, _, _ in first] == [f"{layer.name}/kernel", f"{layer.name}/bias"]
    assert layer.trainable_pairs() == first and layer.trainable_pairs() is not first  # a fresh list
    layer.trainable = False
    assert layer.trainable_pairs() == []
    layer.trainable = True
    layer.name = "renamed"
    assert [k for k, _, _ in layer.trainable_pairs()] == ["renamed/kernel", "renamed/bias"]
    layer.add_weight("extra", (2,), "zeros")
    assert [k for k, _, _ in layer.trainable_pairs()][-1] == "renamed/extra"


def test_address_of_a_buffer():
    from fastconv._kernels import optim

    a = np.zeros(100, np.float32)
    assert optim.address(a) == a.ctypes.data and optim.address(a[3:]) == a.ctypes.data + 12
    assert optim.address(np.zeros((0, 3))) >= 0
    with pytest.raises(ValueError, match="contiguous"):
        optim.address(a[::2])


def test_replica_sums_the_flat_gradient_buffer_in_place(monkeypatch):
    # one process standing in for rank 0 of 2 whose peer sent the same gradients: the flat path
    # (scale and allreduce the gradient buffer in place, in 32 MiB calls) equals the packing path
    from fastconv.engine import replica

    calls = []

    def allreduce(buf):
        assert buf.flags.c_contiguous
        calls.append(buf.size)
        buf *= 2  # the sum over two identical ranks
        return buf

    monkeypatch.setattr(replica._dist, "rank", lambda: 0)
    monkeypatch.setattr(replica._dist, "size", lambda: 2)
    monkeypatch.setattr(replica._dist, "allreduce", allreduce)
    monkeypatch.setattr(replica._dist, "sample_fraction", lambda: 0.375)
    monkeypatch.setattr(replica, "CHUNK_BYTES", 256)  # several calls over one buffer
    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    m = _model()
    m.compile("sgd", "sparse_categorical_crossentropy")
    pairs = F.train_pairs(m)
    rng = np.random.default_rng(5)
    for _, _, g in pairs:
        g[...] = rng.standard_normal(g.shape)
    plain = [(k, p.copy(), g.copy()) for k, p, g in pairs]
    replica._Replica().reduce_gradients(pairs)
    n_flat = len(calls)
    replica._Replica().reduce_gradients(plain)
    gbuf = pairs.flat[0][2]
    assert n_flat == -(-gbuf.size // 64)  # 256 bytes of float32 per call
    for (_, _, g), (_, _, ref) in zip(pairs, plain):
        assert np.array_equal(g, ref) and np.shares_memory(g, gbuf)


def test_pickled_and_copied_models_lay_out_again(monkeypatch):
    import copy
    import pickle

    monkeypatch.setenv("FASTCONV_FLAT_PARAMS", "1")
    x, y = _data()
    m = _model()
    m.compile(O.Adam(), "sparse_categorical_crossentropy")
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert other._flat_pairs.key is None
        other.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        _, pbuf, _, _ = _flat_buffers(other)
        assert all(_shares(p, pbuf) for _, p, _ in other.trainable_pairs())
        assert not any(_shares(p, _flat_buffers(m)[1]) for _, p, _ in other.trainable_pairs())
    ref = copy.deepcopy(m)
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    ref.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    _assert_same_weights(m, ref)


def test_plan_needs_backward_cache_follows_freezing():
    m = fc.Sequential([L.Dense(3, input_shape=(4,)), L.ReLU(), L.Dense(2)])
    m.compile("sgd", "mse")
    plan = m._plan()
    nodes = [n.layer for n in plan.nodes]
    first = nodes.index(m.layers[0])
    before = list(plan._needs_backward())
    assert before[first] and plan._needs_backward() is plan._needs_backward()  # cached
    m.layers[0].trainable = False
    after = plan._needs_backward()
    assert not after[first] and not after[first + 1]  # nothing trainable at or upstream of the ReLU
    m.layers[0].trainable = True
    assert plan._needs_backward() == before
