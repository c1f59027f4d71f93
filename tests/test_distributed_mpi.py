"""Data-parallel training under ``mpirun -np 2`` (``fastconv.distributed``, the engine's replica
hooks): equal to one process with the global batch, files on rank 0 only, stops agreed, faults
end the job. The jobs run ``tests/mpi_scenarios.py``; the one-process references run here."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import mpi_scenarios as S
import numpy as np
import pytest

import fastconv

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
SCRIPT = pathlib.Path(__file__).resolve().parent / "mpi_scenarios.py"
BIN = pathlib.Path(sys.executable).parent


def _mpirun():
    for name in ("mpirun", "mpiexec"):
        path = BIN / name
        if path.exists():
            return str(path)
    raise AssertionError(f"no mpirun next to {sys.executable}: pip install 'fastconv[mpi]' (mpi4py, mpich)")


def _launch(args, timeout=120):
    mpirun = _mpirun()
    version = subprocess.run([mpirun, "--version"], check=False, capture_output=True, text=True).stdout
    flags = ["--allow-run-as-root", "--oversubscribe"] if "Open MPI" in version else []
    env = {k: v for k, v in os.environ.items() if k not in ("FASTCONV_NUM_THREADS", "OMP_NUM_THREADS")}
    # the fastconv these tests import (the built checkout, or the installed package under CI), and a
    # working directory outside the source tree, whose unbuilt fastconv/ would shadow it for `-m`
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT, env.get("PYTHONPATH", "")])
    return subprocess.run([mpirun, *flags, "-np", "2", sys.executable, *args], check=False, capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=tempfile.gettempdir())


def _load(path):
    d = np.load(path)
    n = sum(1 for k in d.files if k.startswith("arr_"))
    return [d[f"arr_{i}"] for i in range(n)], d


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi")
    res = _launch([str(SCRIPT), "train", str(out)])
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def _same(a, b, tol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_cnn_with_sync_bn_and_dropout_equals_one_process(trained):
    model, hist, ev, pred = S.run_cnn(2 * S.B)
    ranks = [_load(trained / f"cnn_rank{r}.npz") for r in (0, 1)]
    for a, b in zip(ranks[0][0], ranks[1][0]):
        np.testing.assert_array_equal(a, b)  # the replicas hold the same weights, bit for bit
    for got, want in zip(ranks[0][0], model.get_weights()):
        _same(got, want)
    got_hist = json.loads(str(ranks[0][1]["history"]))
    assert set(got_hist) == set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for k, v in hist.history.items():  # losses and metrics over both ranks' samples
        _same(got_hist[k], v)
    _same(ranks[0][1]["ev"], ev)  # evaluate sharded
    _same(ranks[1][1]["pred"], pred)  # predict gathered in order, on every rank


def test_functional_resnet_block_from_a_generator_equals_one_process(trained):
    model, hist, ev = S.run_resnet(2 * S.B)
    for r in (0, 1):
        ws, d = _load(trained / f"resnet_rank{r}.npz")
        for got, want in zip(ws, model.get_weights()):
            _same(got, want)
        _same(json.loads(str(d["history"]))["loss"], hist.history["loss"])
        _same(d["ev"], ev)


def test_augmenter_flow_into_a_model_built_by_its_first_batch_equals_one_process(trained):
    model, hist, ev = S.run_augmented(2 * S.B)
    for r in (0, 1):
        ws, d = _load(trained / f"augmented_rank{r}.npz")
        for got, want in zip(ws, model.get_weights()):
            _same(got, want)
        for k, v in hist.history.items():
            _same(json.loads(str(d["history"]))[k], v)
        _same(d["ev"], ev)


def test_per_replica_batch_norm_replicas_agree_after_the_epoch(trained):
    a, _ = _load(trained / "perreplica_rank0.npz")
    b, _ = _load(trained / "perreplica_rank1.npz")
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    ref = S.cnn(sync=False).get_weights()
    assert any(not np.allclose(u, v) for u, v in zip(a, ref))  # it trained


def test_files_are_written_on_rank_0_only(trained):
    assert (trained / "log_rank0.csv").exists() and (trained / "ckpt_rank0.npz").exists()
    assert not (trained / "log_rank1.csv").exists() and not (trained / "ckpt_rank1.npz").exists()
    rows = (trained / "log_rank0.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header + the two epochs before EarlyStopping


def test_early_stopping_and_a_stop_on_one_rank_are_agreed(trained):
    stops = [json.loads((trained / f"stop_rank{r}.json").read_text()) for r in (0, 1)]
    assert stops[0] == stops[1]
    # EarlyStopping after 2 epochs (patience 0, nothing improves by 10); then rank 1 alone sets
    # stop_training after step 3 of the next fit: both ranks stop there (2 * 6 + 3 steps).
    assert stops[0] == {"early": 2, "stopped": 1, "iterations": 15}


def test_threads_per_rank_default_to_the_cores_of_the_node_over_its_ranks(trained):
    from fastconv._kernels import runtime

    for r in (0, 1):
        got = json.loads((trained / f"threads_rank{r}.json").read_text())
        assert got == {"threads": max(1, runtime.num_procs() // 2), "local_size": 2, "local_rank": r, "size": 2}


def test_an_exception_on_one_rank_ends_the_job_with_the_error(tmp_path):
    res = _launch([str(SCRIPT), "error", str(tmp_path)], timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "boom on rank 1" in out and "rank 1 of 2" in out and "MPI_Abort" in out


def test_a_killed_rank_ends_the_job_with_a_message(tmp_path):
    res = _launch([str(SCRIPT), "kill", str(tmp_path)], timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert re.search(r"signal 9|Killed|BAD TERMINATION|exited on signal", out), out


def test_cli_train_under_mpirun_one_bar_same_accuracy():
    args = ["-m", "fastconv", "train", "--model", "lenet5", "--epochs", "1", "--limit", "512",
            "--verbose", "2"]
    res = _launch(args)
    assert res.returncode == 0, res.stdout + res.stderr
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    one = subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir(), timeout=120)
    assert one.returncode == 0, one.stderr
    pattern = r"Validation accuracy: ([0-9.]+)"
    assert len(re.findall(pattern, res.stdout)) == 1  # rank 0 prints, once
    assert res.stdout.count("Epoch 1/1") == 1
    assert "2 processes" in res.stdout
    acc2 = float(re.search(pattern, res.stdout).group(1))
    acc1 = float(re.search(pattern, one.stdout).group(1))
    # the same training to float32 rounding: at most one of the 200 validation images may flip
    assert abs(acc2 - acc1) <= 1 / 200 + 1e-9, (acc1, acc2)
