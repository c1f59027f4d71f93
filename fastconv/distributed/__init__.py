"""Data-parallel training on MPI (mpi4py): the process group, its collectives, and the shard of
the current batch that this process works on.

Design notes
------------
* One process per replica. :func:`init` joins the MPI job when the process was
  started by a launcher (``mpirun``/``mpiexec`` of Open MPI or MPICH, Slurm's
  ``srun``); a process started without one runs alone (``size() == 1``) and
  does not even load MPI. After ``init()`` in a job of 2 or more processes,
  ``fit`` / ``evaluate`` / ``predict`` of every model run data-parallel
  (``fastconv.engine.replica``); nothing else in a script changes.
* ``batch_size`` stays GLOBAL: each rank takes its contiguous shard of every
  global batch (rank r of p gets rows ``[r*n//p, (r+1)*n//p)``), so training
  on p ranks follows the same data order and the same arithmetic as one process.
* This module sits on floor 1 (it imports only ``fastconv._dispatch``) so that
  layers can read the shard of the current batch (``shard_rows``: Dropout draws
  the global batch's mask and keeps its rows) and synchronised
  BatchNormalization can sum its statistics (``allreduce``).
* Faults: in a job of 2 or more, an uncaught exception prints its traceback with
  the rank and calls ``MPI_Abort``, which ends every rank (none waits forever
  in a collective).
* Without mpi4py, :func:`init` raises ImportError naming ``pip install 'fastconv[mpi]'``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback

from fastconv import _dispatch

__all__ = [
    "abort",
    "active",
    "allgather",
    "allreduce",
    "barrier",
    "broadcast",
    "draw_rows",
    "init",
    "is_root",
    "launched",
    "local_rank",
    "local_size",
    "rank",
    "sample_fraction",
    "scatter",
    "shard_bounds",
    "shard_rows",
    "size",
]

_INSTALL_HINT = "pip install 'fastconv[mpi]'"

# The job size as a launcher tells every process it starts: Open MPI, MPICH / Intel MPI (Hydra's
# PMI), Slurm's srun.
_LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")

_state = {"comm": None, "rank": 0, "size": 1, "local_rank": 0, "local_size": 1, "mpi": None,
          "initialized": False, "blas_limit": None}
# The shard of the batch being computed: (first row, global rows, sample fraction), set by the engine.
_shard = {"lo": 0, "total": None, "fraction": 1.0}


def launched() -> bool:
    """Was this process started by an MPI launcher in a job of 2 or more processes? (Open MPI's
    ``OMPI_COMM_WORLD_SIZE``, MPICH / Intel MPI's ``PMI_SIZE``, a Slurm step's ``SLURM_STEP_NUM_TASKS``.)"""
    for var in _LAUNCH_VARS:
        val = os.environ.get(var, "").strip()
        if val.isdigit() and int(val) > 1:
            return True
    return False


def _mpi():
    """``mpi4py.MPI``, or ImportError naming the extra."""
    if _state["mpi"] is None:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise ImportError(
                f"fastconv.distributed needs mpi4py and an MPI runtime: {_INSTALL_HINT} "
                f"(mpi4py + the mpich wheel), or pip install mpi4py against a system MPI. ({e})"
            ) from None
        _state["mpi"] = MPI
    return _state["mpi"]


def _require_mpi4py():
    try:
        import mpi4py  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"fastconv.distributed needs mpi4py and an MPI runtime: {_INSTALL_HINT} "
            f"(mpi4py + the mpich wheel), or pip install mpi4py against a system MPI. ({e})"
        ) from None


def init(threads="auto") -> int:
    """Join the MPI job (when launched by mpirun / mpiexec / srun) and return this process's rank.

    ``threads="auto"``: kernels use the cores of the node divided by the ranks on it, unless
    ``FASTCONV_NUM_THREADS`` / ``OMP_NUM_THREADS`` or ``set_num_threads`` chose already; an int
    sets it. Without a launcher the process runs alone (``size() == 1``). Calling it again is a
    no-op. Raises ImportError naming ``pip install 'fastconv[mpi]'`` without mpi4py.
    """
    _require_mpi4py()
    if _state["initialized"]:
        return _state["rank"]
    if launched():
        MPI = _mpi()
        comm = MPI.COMM_WORLD
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, comm.Get_rank())
        _state.update(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(),
                      local_rank=local.Get_rank(), local_size=local.Get_size())
        local.Free()
        if _state["size"] > 1:
            _install_excepthook()
    _state["initialized"] = True
    _set_threads(threads)
    return _state["rank"]


def _set_threads(threads):
    if threads == "auto":
        if _dispatch._state.get("threads") is not None or _dispatch._env_threads() is not None:
            return
        from fastconv._kernels import runtime as _rt

        n = max(1, _rt.num_procs() // _state["local_size"])
    else:
        n = threads
    _dispatch.set_num_threads(n)
    if _state["local_size"] > 1:
        try:  # NumPy's BLAS (the few matmuls outside our kernels) gets the same share
            from threadpoolctl import threadpool_limits

            _state["blas_limit"] = threadpool_limits(limits=n, user_api="blas")
        except ImportError:
            pass


def _install_excepthook():
    def hook(kind, value, tb):
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"[fastconv rank {_state['rank']} of {_state['size']}] uncaught exception; "
                         f"aborting the MPI job (MPI_Abort) so that no rank waits for this one:\n{text}")
        sys.stderr.flush()
        sys.stdout.flush()
        # the launcher forwards a rank's output through its own process, which MPI_Abort tears down:
        # a moment for the message to pass (on a loaded machine it was lost without this)
        time.sleep(1.0)
        _state["comm"].Abort(1)
        os._exit(1)  # pragma: no cover - MPI_Abort does not return

    sys.excepthook = hook


def rank() -> int:
    """This process's rank in the job (0 without a launcher)."""
    return _state["rank"]


def size() -> int:
    """Number of processes in the job (1 without a launcher)."""
    return _state["size"]


def local_rank() -> int:
    """Rank among the processes on this node."""
    return _state["local_rank"]


def local_size() -> int:
    """Processes on this node."""
    return _state["local_size"]


def is_root() -> bool:
    """Rank 0: the one that prints and writes files."""
    return _state["rank"] == 0


def active() -> bool:
    """``init()`` joined a job of 2 or more processes (the engine then trains data-parallel)."""
    return _state["size"] > 1


def barrier() -> None:
    if active():
        _state["comm"].Barrier()


def abort(code=1) -> None:
    """End every rank of the job now (``MPI_Abort``); a plain exit on one process."""
    if active():
        _state["comm"].Abort(code)
    raise SystemExit(code)


def allreduce(buf):
    """Sum a float NumPy array over all ranks, in place (contiguous); returns it."""
    if active():
        if not buf.flags.c_contiguous:
            raise ValueError(f"allreduce: buf must be C-contiguous. Received strides {buf.strides}")
        _state["comm"].Allreduce(_mpi().IN_PLACE, buf, op=_mpi().SUM)
    return buf


def broadcast(obj, root=0):
    """Rank ``root``'s Python object (pickled) on every rank."""
    return _state["comm"].bcast(obj, root=root) if active() else obj


def allgather(obj):
    """Every rank's object, in rank order."""
    return _state["comm"].allgather(obj) if active() else [obj]


def scatter(objs, root=0):
    """Rank ``root`` hands ``objs[r]`` to rank r (the others pass None)."""
    return _state["comm"].scatter(objs, root=root) if active() else objs[0]


def shard_bounds(n, r=None, p=None):
    """Rows ``[lo, hi)`` of a global batch of ``n`` rows that rank ``r`` of ``p`` computes.

    Contiguous shards of ``n // p`` or ``n // p + 1`` rows. A batch smaller than the job
    (``n < p``) is computed whole by every rank (an empty shard would have no statistics);
    the engine then weighs each rank's gradient by ``1 / p`` and counts metrics on rank 0.
    """
    r = _state["rank"] if r is None else r
    p = _state["size"] if p is None else p
    if n < p:
        return 0, n
    return r * n // p, (r + 1) * n // p


def shard_rows(n):
    """``(lo, total)``: the rows this process holds of the current global batch, whose local
    part has ``n`` rows; ``(0, n)`` outside data-parallel training. A layer drawing random
    numbers per sample draws ``total`` rows and keeps ``[lo, lo + n)`` so every rank reproduces
    the one-process draw."""
    total = _shard["total"]
    if total is None or n + _shard["lo"] > total:
        return 0, n
    return _shard["lo"], total


def sample_fraction() -> float:
    """This rank's share of the current global batch's samples (the weight of its gradient)."""
    return _shard["fraction"]


@contextlib.contextmanager
def _batch(lo, total, fraction):
    """The engine's: the current batch is rows ``[lo, ...)`` of ``total``, weighing ``fraction``."""
    saved = dict(_shard)
    _shard.update(lo=lo, total=total, fraction=fraction)
    try:
        yield
    finally:
        _shard.update(saved)


def draw_rows(n, draw):
    """Rows ``[lo, lo + n)`` of ``draw(total)`` for the current shard (``draw(n)`` outside
    data-parallel training): a layer's per-sample random numbers, the same as on one process."""
    lo, total = shard_rows(n)
    if total == n:
        return draw(n)
    return draw(total)[lo : lo + n]
