"""fastconv.distributed and fastconv.engine.replica in one process: the shards of a batch, the
packing of gradients into flat buffers, per-sample random draws, synchronised BatchNormalization
on one process, the no-op path, and the ImportError without mpi4py. The same code under
``mpirun -np 2`` is tested in test_distributed_mpi.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fastconv
from fastconv import callbacks, distributed, layers
from fastconv.engine import replica


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 64, 65])
@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_shards_cover_the_batch_contiguously(n, p):
    bounds = [distributed.shard_bounds(n, r, p) for r in range(p)]
    if n < p:  # a batch smaller than the job: every rank computes all of it
        assert bounds == [(0, n)] * p
        return
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    for (lo, hi), (lo2, _) in zip(bounds, bounds[1:]):
        assert hi == lo2
    sizes = [hi - lo for lo, hi in bounds]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_pack_plan_groups_in_order_by_dtype_and_chunk():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(5, np.float32), np.full(4, 2.0),
              np.arange(3, dtype=np.float32), np.arange(40, dtype=np.float32)]
    plan = replica._pack_plan(arrays, chunk_bytes=64)  # 16 float32 per buffer
    assert [(str(d), [i for i, _, _ in items], n) for d, items, n in plan] == [
        ("float32", [0, 1], 11), ("float64", [2], 4), ("float32", [3], 3), ("float32", [4], 40)]
    bufs = [np.empty(n, d) for d, _, n in plan]
    replica._pack(arrays, plan, bufs, scale=0.5)
    np.testing.assert_array_equal(bufs[0], np.concatenate([np.arange(6) * 0.5, np.full(5, 0.5)]))
    outs = [np.zeros_like(a) for a in arrays]
    replica._unpack(outs, plan, bufs)
    for a, o in zip(arrays, outs):
        np.testing.assert_array_equal(o, a * 0.5)


def test_one_process_uses_the_no_op_replica():
    assert not distributed.active() and distributed.size() == 1 and distributed.rank() == 0
    model = fastconv.Sequential([layers.Dense(2, input_shape=(3,))])
    rep = replica.replica_for(model)
    assert rep is replica.SINGLE and not rep.active and rep.is_root
    assert rep.shard(5) == (0, 5) and rep.agree(True, False) == (True, False)
    assert rep.start_fit(model, 4, 1) == (4, 1)
    outs = [np.ones(3)]
    assert rep.gather_rows(outs) is outs


def test_fit_on_one_process_is_unchanged_by_the_seam():
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    y = np.arange(10) % 2
    weights = []
    for _ in range(2):
        fastconv.initializers.set_seed(1)
        m = fastconv.Sequential([layers.Dense(2, activation="softmax", input_shape=(3,))])
        m.compile("sgd", "sparse_categorical_crossentropy")
        m.fit(x, y, batch_size=3, epochs=2, verbose=0, seed=2)
        weights.append(m.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(distributed._state, "initialized", False)
    with pytest.raises(ImportError, match=r"pip install 'fastconv\[mpi\]'"):
        distributed.init()


@pytest.mark.parametrize(
    "env, expected",
    [({}, False), ({"OMPI_COMM_WORLD_SIZE": "2"}, True), ({"PMI_SIZE": "4"}, True),
     ({"PMI_SIZE": "1"}, False), ({"SLURM_STEP_NUM_TASKS": "8"}, True), ({"SLURM_NTASKS": "8"}, False)],
)
def test_launched_reads_the_launchers_environment(monkeypatch, env, expected):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert distributed.launched() is expected


def test_init_without_a_launcher_is_one_process(monkeypatch):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(distributed, "_state", dict(distributed._state, initialized=False))
    monkeypatch.setitem(fastconv._dispatch._state, "threads", 3)  # chosen by the user: kept
    assert distributed.init() == 0
    assert distributed.size() == 1 and not distributed.active() and distributed.is_root()
    assert fastconv.get_num_threads() == 3
    assert distributed.allgather("a") == ["a"] and distributed.broadcast(5) == 5


@pytest.mark.parametrize("make", [
    lambda: layers.Dropout(0.4, seed=3),
    lambda: layers.SpatialDropout2D(0.4, seed=3),
    lambda: layers.GaussianNoise(0.5, seed=3),
    lambda: layers.RandomFlip(seed=3),
    lambda: layers.RandomContrast(0.5, seed=3),
    lambda: layers.RandomTranslation(0.2, 0.3, seed=3),
])
def test_random_layers_draw_the_one_process_rows_of_the_global_batch(make):
    x = np.random.default_rng(1).random((8, 5, 6, 3)).astype(np.float32)
    whole = make()(x, training=True)
    for lo, hi in [(0, 3), (3, 8)]:
        layer = make()
        with distributed._batch(lo, 8, (hi - lo) / 8):
            part = layer(x[lo:hi], training=True)
        np.testing.assert_array_equal(part, whole[lo:hi])


@pytest.mark.parametrize("epilogue", [None, "relu", "relu6"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_synchronized_batch_norm_on_one_process_is_the_default(epilogue, dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((5, 3, 4, 7)) * 3 + 1).astype(dtype)
    dy = rng.standard_normal((5, 3, 4, 7)).astype(dtype)
    res = []
    for sync in (False, True):
        bn = layers.BatchNormalization(synchronized=sync, dtype=np.dtype(dtype).name)
        bn.build((3, 4, 7))
        bn.params["gamma"][...] = np.linspace(0.5, 2, 7)
        bn.params["beta"][...] = np.linspace(-1, 1, 7)
        bn.need_input_grad = True
        y = bn.forward(x, training=True, epilogue=epilogue)
        dx = bn.backward(dy)
        res.append((y, dx, bn.grads["gamma"].copy(), bn.grads["beta"].copy(),
                    bn.state["moving_mean"].copy(), bn.state["moving_variance"].copy()))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


def test_synchronized_is_a_keras_argument_round_tripped():
    bn = layers.BatchNormalization(synchronized=True)
    assert bn.get_config()["synchronized"] is True
    assert layers.BatchNormalization.from_config(bn.get_config()).synchronized
    with pytest.raises(TypeError, match="synchronized"):
        layers.BatchNormalization(synchronized="yes")


def test_file_writing_callbacks_are_root_only():
    assert callbacks.ModelCheckpoint.root_only and callbacks.CSVLogger.root_only
    assert callbacks.BackupAndRestore.root_only
    assert not callbacks.EarlyStopping.root_only and not callbacks.History.root_only
    assert not callbacks.Callback.root_only
