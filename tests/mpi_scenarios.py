"""Scenarios that ``tests/test_distributed_mpi.py`` runs under ``mpirun -np 2`` (and, for the
reference, in one process): ``python tests/mpi_scenarios.py SCENARIO OUTDIR``.

Holds no test. ``train`` trains two small models (a Sequential CNN with synchronised
BatchNormalization and Dropout, fed from arrays; a functional ResNet block with RandomFlip,
fed from a generator), evaluates and predicts, and writes each rank's results to
``OUTDIR/<name>_rank<r>.npz``; the test trains the same models in its own process with the
global batch and compares. The other scenarios end the job on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np

import fastconv
from fastconv import callbacks, distributed, initializers, layers, optimizers

B = 4  # rows per rank; the one-process reference trains on batches of 2 * B


def data(n=41, shape=(8, 8, 3), classes=5, seed=1):
    """``n`` samples: 41 = 5 full global batches of 8 and a last batch of 1 (smaller than the job)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return x, y


def _seed(seed):
    """Each rank builds its model differently on purpose (a different seed on every rank but 0):
    the replicas must still train rank 0's model, whose seed is the one-process reference's."""
    initializers.set_seed(seed + 1000 * distributed.rank())


def cnn(sync=True):
    _seed(7)
    model = fastconv.Sequential([
        layers.Conv2D(6, 3, use_bias=False, input_shape=(8, 8, 3)),  # a bias before BN has only noise for a gradient
        layers.BatchNormalization(synchronized=sync),
        layers.Activation("relu"),
        layers.Dropout(0.3),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(5, activation="softmax"),
    ])
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def resnet():
    _seed(11)
    inp = fastconv.Input((8, 8, 3))
    x = layers.RandomFlip("horizontal")(inp)
    h = layers.Conv2D(4, 3, padding="same")(x)
    h = layers.BatchNormalization(synchronized=True)(h)
    h = layers.Activation("relu")(h)
    h = layers.Conv2D(4, 3, padding="same")(h)
    h = layers.BatchNormalization(synchronized=True)(h)
    s = layers.Conv2D(4, 1)(x)
    out = layers.Activation("relu")(layers.Add()([h, s]))
    out = layers.Dense(5, activation="softmax")(layers.GlobalAveragePooling2D()(out))
    model = fastconv.Model(inp, out)
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def batches(x, y, bs):
    """A generator of global batches (rank 0 reads it in a data-parallel job)."""
    for i in range(0, len(x), bs):
        yield x[i : i + bs], y[i : i + bs]


def run_cnn(bs):
    x, y = data()
    xv, yv = data(n=13, seed=2)
    model = cnn()
    hist = model.fit(x, y, batch_size=bs, epochs=2, seed=3, validation_data=(xv, yv), verbose=0)
    ev = model.evaluate(xv, yv, batch_size=bs, verbose=0)
    pred = model.predict(xv, batch_size=3)
    return model, hist, ev, pred


def run_resnet(bs):
    x, y = data(n=20, seed=4)
    model = resnet()
    hist = model.fit(batches(x, y, bs), epochs=1, verbose=0, steps_per_epoch=-(-len(x) // bs))
    ev = model.evaluate(batches(x, y, bs), verbose=0)
    return model, hist, ev


def run_augmented(bs):
    """A Sequential built by its first batch, fed by ImageAugmenter.flow (random rotations and flips)."""
    x, y = data(n=30, seed=6)
    _seed(13)
    model = fastconv.Sequential([layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                                 layers.Dense(5, activation="softmax")])
    model.compile(optimizer=optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    flow = fastconv.ImageAugmenter(rotation_range=20, horizontal_flip=True, seed=5).flow(x, y, batch_size=bs, seed=8)
    hist = model.fit(flow, epochs=2, verbose=0)
    return model, hist, model.evaluate(x, y, batch_size=bs, verbose=0)


def _save(outdir, name, model, hist, ev, pred=None):
    path = os.path.join(outdir, f"{name}_rank{distributed.rank()}.npz")
    extra = {} if pred is None else {"pred": pred}
    np.savez(path, *model.get_weights(), history=json.dumps(hist.history), ev=np.asarray(ev, np.float64),
             **extra)


def scenario_train(outdir):
    model, hist, ev, pred = run_cnn(2 * B)
    _save(outdir, "cnn", model, hist, ev, pred)
    model, hist, ev = run_resnet(2 * B)
    _save(outdir, "resnet", model, hist, ev)
    model, hist, ev = run_augmented(2 * B)
    _save(outdir, "augmented", model, hist, ev)
    # per-replica BatchNormalization: the replicas still end the epoch with the same weights
    x, y = data()
    model = cnn(sync=False)
    model.fit(x, y, batch_size=2 * B, epochs=1, verbose=0, seed=5)
    np.savez(os.path.join(outdir, f"perreplica_rank{distributed.rank()}.npz"), *model.get_weights())
    # rank-0-only files; EarlyStopping and a stop on one rank agreed by all
    r = distributed.rank()
    stop_at = callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: setattr(model, "stop_training", r == 1 and b == 2))
    model = cnn()
    cbs = [callbacks.CSVLogger(os.path.join(outdir, f"log_rank{r}.csv")),
           callbacks.ModelCheckpoint(os.path.join(outdir, f"ckpt_rank{r}.npz")),
           callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=0)]
    h1 = model.fit(x, y, batch_size=2 * B, epochs=5, verbose=0, callbacks=cbs)
    h2 = model.fit(x, y, batch_size=2 * B, epochs=3, verbose=0, callbacks=[stop_at])
    steps = model.optimizer.iterations
    with open(os.path.join(outdir, f"stop_rank{r}.json"), "w") as f:
        json.dump({"early": len(h1.epoch), "stopped": len(h2.epoch), "iterations": int(steps)}, f)
    with open(os.path.join(outdir, f"threads_rank{r}.json"), "w") as f:
        json.dump({"threads": fastconv.get_num_threads(), "local_size": distributed.local_size(),
                   "local_rank": distributed.local_rank(), "size": distributed.size()}, f)


def scenario_error(outdir):
    x, y = data()
    r = distributed.rank()

    def boom(batch, logs):
        if r == 1 and batch == 2:
            raise RuntimeError("boom on rank 1")

    cnn().fit(x, y, batch_size=2 * B, epochs=50, verbose=0, callbacks=[callbacks.LambdaCallback(on_train_batch_end=boom)])


def scenario_kill(outdir):
    x, y = data()
    r = distributed.rank()

    def die(batch, logs):
        if r == 1 and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    cnn().fit(x, y, batch_size=2 * B, epochs=50, verbose=0, callbacks=[callbacks.LambdaCallback(on_train_batch_end=die)])


if __name__ == "__main__":
    name, outdir = sys.argv[1], sys.argv[2]
    distributed.init()
    globals()[f"scenario_{name}"](outdir)
