"""Buffer reuse across steps (fastconv/engine/trainer.py ``reuse_buffers`` over
fastconv._kernels.buffers, src/buffers_impl.h): during fit / evaluate / predict, NumPy arrays get
their memory from a handler that keeps freed blocks for the next request of the same size; the
handler is scoped to the call, nested calls share one cache, and at the end the most recently freed
blocks, up to FASTCONV_KEEP_BUFFERS MiB, stay parked for the next call (fastconv.release_buffers frees
them)."""

import resource

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv._kernels import buffers
from fastconv.engine import trainer

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name


@pytest.fixture(autouse=True)
def _no_parked_blocks():
    fastconv.release_buffers()  # blocks parked by earlier tests would change the counts below
    yield
    fastconv.release_buffers()


def _faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_blocks_freed_in_a_call_are_reused():
    default = get_handler_name()
    with trainer.reuse_buffers():
        assert get_handler_name() == "fastconv_reuse"
        h0 = buffers.stats()[0]
        a = np.ones(1 << 20)  # 8 MiB, then freed and asked for again below
        del a
        f0 = _faults()
        for i in range(20):
            b = np.empty(1 << 20)
            b.fill(i)  # touch every page
            assert b[-1] == i
            del b
        faults = _faults() - f0
        hits = buffers.stats()[0] - h0
        assert buffers.stats()[2] >= 1  # one block kept
    assert get_handler_name() == default
    assert hits == 20
    assert faults < 100  # 20 x 2048 pages without reuse
    assert buffers.stats()[2:] == (1, 8 << 20)  # the block stays parked for the next call
    assert fastconv.release_buffers() == 1
    assert buffers.stats()[2:] == (0, 0)


def test_only_equal_sizes_are_reused_and_contents_are_independent():
    with trainer.reuse_buffers():
        a = np.full(70000, 3.0)  # 560,000 bytes
        addr = a.__array_interface__["data"][0]
        del a
        b = np.empty(70001)  # another size: a fresh block
        assert b.__array_interface__["data"][0] != addr
        c = np.empty(70000)  # the same size: the kept block
        assert c.__array_interface__["data"][0] == addr
        c[:] = 1.0
        z = np.zeros(70000)  # calloc: never a reused (dirty) block
        assert not z.any()
        del b, c, z


def test_nested_calls_share_the_cache_and_errors_restore_the_handler():
    default = get_handler_name()
    with pytest.raises(RuntimeError, match="boom"), trainer.reuse_buffers():
        with trainer.reuse_buffers():
            assert get_handler_name() == "fastconv_reuse"
        a = np.ones(1 << 16)
        del a
        assert buffers.stats()[2] == 1  # still open after the inner call
        raise RuntimeError("boom")
    assert get_handler_name() == default
    assert buffers.stats()[2] == 1  # parked
    fastconv.release_buffers()
    assert buffers.stats()[2:] == (0, 0)


def test_arrays_outliving_the_call_are_freed_normally():
    with trainer.reuse_buffers():
        keep = np.arange(1 << 17, dtype=np.float64)
    assert get_handler_name() != "fastconv_reuse"
    view = keep[::2].copy()
    np.testing.assert_array_equal(view[:3], [0.0, 2.0, 4.0])
    keep.resize((1 << 18,), refcheck=False)  # realloc through the handler's header
    assert keep[(1 << 17) - 1] == (1 << 17) - 1
    del keep


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("FASTCONV_REUSE_BUFFERS", "0")
    with trainer.reuse_buffers():
        assert get_handler_name() != "fastconv_reuse"


def test_fit_and_predict_run_under_it_with_the_same_results(monkeypatch):
    seen = []

    class Probe(fastconv.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(get_handler_name())

    def train(reuse):
        monkeypatch.setenv("FASTCONV_REUSE_BUFFERS", "1" if reuse else "0")
        fastconv.initializers.set_seed(1)
        model = fastconv.Sequential([L.Conv2D(8, 3, activation="relu", input_shape=(12, 12, 3)),
                                     L.Flatten(), L.Dense(5)])
        model.compile("adam", "mse")
        rng = np.random.default_rng(0)
        x, y = rng.random((64, 12, 12, 3), dtype=np.float32), rng.random((64, 5), dtype=np.float32)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[Probe()])
        return model.predict(x, verbose=0), model.get_weights()

    pa, wa = train(True)
    assert seen and set(seen) == {"fastconv_reuse"}
    seen.clear()
    pb, wb = train(False)
    assert "fastconv_reuse" not in seen
    np.testing.assert_array_equal(pa, pb)
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
    assert buffers.stats()[3] <= trainer.CACHE_KEEP_DEFAULT_MIB << 20  # what is parked is bounded
    fastconv.release_buffers()
    assert buffers.stats()[2:] == (0, 0)


def test_when_full_the_oldest_blocks_make_room(monkeypatch):
    monkeypatch.setattr(trainer, "CACHE_LIMIT", 3 * (1 << 20) + 1000)
    sizes = [(1 << 17) + k for k in range(4)]  # four float64 arrays of about 1 MiB each
    with trainer.reuse_buffers():
        arrays = [np.empty(n) for n in sizes]
        addrs = [a.__array_interface__["data"][0] for a in arrays]
        for i in range(4):  # freed oldest first: the first one is evicted to keep the last three
            arrays[i] = None
        assert buffers.stats()[2] == 3
        hits, misses = buffers.stats()[:2]
        first = np.empty(sizes[0])  # evicted: a fresh block
        assert buffers.stats()[:2] == (hits, misses + 1)
        last = np.empty(sizes[3])  # kept: reused
        assert last.__array_interface__["data"][0] == addrs[3]
        assert buffers.stats()[:2] == (hits + 1, misses + 1)
        assert buffers.stats()[2] == 2
        too_big = np.empty(1 << 19)  # 4 MiB, over the limit: never kept
        del too_big
        assert buffers.stats()[2] == 2
        del first, last
        assert buffers.stats()[2] == 3


def test_public_reuse_buffers_serves_op_loops():
    """fastconv.reuse_buffers around a loop of ops: the second call's output reuses the first's freed
    block (cache hits), the results equal the calls outside the context, and the cache closes after."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 40, 40, 16)).astype(np.float32)
    w = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    want = fastconv.conv2d(x, w, padding="same")
    with fastconv.reuse_buffers():
        h0 = buffers.stats()[0]
        for _ in range(3):
            got = fastconv.conv2d(x, w, padding="same")
            np.testing.assert_array_equal(got, want)
            del got
        hits = buffers.stats()[0] - h0
    assert hits >= 2  # calls 2 and 3 took the block call 1 (then 2) freed
    assert buffers.stats()[2] >= 1  # parked when the context closes
    fastconv.release_buffers()
    assert buffers.stats()[2:] == (0, 0)


def test_parked_blocks_serve_the_next_call_only():
    """A block parked when the context closes is neither handed out nor added to while no context is
    open; the next context reuses it (same address, no page faults)."""
    with trainer.reuse_buffers():
        a = np.ones(1 << 20)  # 8 MiB
        addr = a.__array_interface__["data"][0]
        del a
    assert buffers.stats()[2:] == (1, 8 << 20)
    outside = np.empty(1 << 20)  # NumPy's own allocator: not the parked block
    assert outside.__array_interface__["data"][0] != addr
    del outside
    assert buffers.stats()[2:] == (1, 8 << 20)
    with trainer.reuse_buffers():
        f0 = _faults()
        b = np.empty(1 << 20)
        b.fill(2.0)
        assert b.__array_interface__["data"][0] == addr
        assert _faults() - f0 < 100  # 2048 pages if it were fresh
        del b


def test_parking_is_bounded_oldest_first(monkeypatch):
    monkeypatch.setenv("FASTCONV_KEEP_BUFFERS", "2")  # MiB
    with trainer.reuse_buffers():
        arrays = [np.empty((1 << 17) + k) for k in range(3)]  # three blocks of about 1 MiB
        last = arrays[2].__array_interface__["data"][0]
        for i in range(3):  # freed in order: the last one freed is the one kept
            arrays[i] = None
        assert buffers.stats()[2] == 3
    assert buffers.stats()[2] == 1
    with trainer.reuse_buffers():
        again = np.empty((1 << 17) + 2)
        assert again.__array_interface__["data"][0] == last
        del again
    monkeypatch.setenv("FASTCONV_KEEP_BUFFERS", "0")
    with trainer.reuse_buffers():
        del arrays
    assert buffers.stats()[2:] == (0, 0)


@pytest.mark.parametrize("bad", ["-1", "1.5", "lots"])
def test_keep_buffers_environment_is_checked(monkeypatch, bad):
    monkeypatch.setenv("FASTCONV_KEEP_BUFFERS", bad)
    with pytest.raises(ValueError, match="FASTCONV_KEEP_BUFFERS"), trainer.reuse_buffers():
        pass
    assert get_handler_name() != "fastconv_reuse"  # the handler is restored all the same
