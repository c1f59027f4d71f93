"""Compiled kernels (built from src/ by setup.py).

How idle OpenMP threads wait is set here, for fastconv's OpenMP runtime only: the variables are set
while the first kernel module loads the runtime (which reads them once, at load) and then put back as
they were, so a library that loads its own OpenMP runtime later (PyTorch does) gets its own default.
Between two kernel calls Python does the layer bookkeeping. Idle threads that spin take the cores
from it, from NumPy and from other processes; threads that sleep cost a wake-up per parallel region.
Both were measured: on a busy 2-core machine spinning threads gave ~470 LeNet-5 training images/s
against ~2,800 sleeping, and a small 2-thread conv (~40 us of work) took 4.0 ms a call with
GOMP_SPINCOUNT=20000 against 0.33 ms sleeping (another build using both cores); on the quiet machine
a sleeping thread joined the next region 60-90 us late (that conv: 135-169 us sleeping, 57 us with
GOMP_SPINCOUNT=20000). A slow wake-up costs microseconds, a spin under load milliseconds, so idle
threads sleep at once by default: OMP_WAIT_POLICY=passive with GOMP_SPINCOUNT=FASTCONV_SPINCOUNT
(default 0). On a machine of its own a spin count (e.g. FASTCONV_SPINCOUNT=20000) is faster. A user
who sets OMP_WAIT_POLICY or GOMP_SPINCOUNT keeps that choice, for every library.

The compiled modules must sit beside this file. When they do not (a source checkout that was never
built, or `python -m fastconv` started from inside the checkout, whose fastconv/ then shadows the
installed one), importing fails here with the remedy, rather than borrowing another copy's modules,
which could be stale and run under newer signatures.
"""
import importlib.machinery
import os

SPINCOUNT_DEFAULT = 0  # sleep at once: robust on a shared machine (see above)


def _spincount() -> int:
    raw = os.environ.get("FASTCONV_SPINCOUNT", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value >= 0:
            return value
        import warnings
        warnings.warn(f"FASTCONV_SPINCOUNT must be a non-negative integer; got {raw!r}, using "
                      f"{SPINCOUNT_DEFAULT}", RuntimeWarning, stacklevel=3)
    return SPINCOUNT_DEFAULT


_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

_here = os.path.dirname(os.path.abspath(__file__))
_suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
if not any(name.startswith("runtime") and name.endswith(_suffixes) for name in os.listdir(_here)):
    raise ImportError(
        f"fastconv's compiled kernels are missing from {_here}. This is a source tree without a build: "
        "install it (`pip install .`) and run from outside the source tree (or use the `fastconv` "
        "command), or build it in place with `python setup.py build_ext --inplace`."
    )


def _load_runtime_with_wait_policy() -> None:
    """Load the OpenMP runtime (through `runtime`) with fastconv's wait policy, then restore the env."""
    if any(name in os.environ for name in _WAIT_VARIABLES):
        from . import runtime  # noqa: F401  (the user's choice stands, for every library)
        return
    os.environ["OMP_WAIT_POLICY"] = "passive"
    os.environ["GOMP_SPINCOUNT"] = str(_spincount())
    try:
        from . import runtime  # noqa: F401
    finally:
        for name in _WAIT_VARIABLES:
            os.environ.pop(name, None)


_load_runtime_with_wait_policy()
