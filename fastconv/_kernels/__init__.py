"""Compiled kernels (built from src/ by setup.py).

Before the first kernel module loads the OpenMP runtime, ask idle OpenMP threads to sleep rather
than spin (unless the user chose otherwise): between two kernel calls Python does the layer
bookkeeping, and spinning threads would take the cores from it, from NumPy and from any other
process. On a busy 2-core machine this was the difference between ~470 and ~2,800 training images/s
for LeNet-5. The price is the wake-up: on a quiet 2-core virtual machine a sleeping thread took
60-90 us to join the next parallel region (a small 2-thread conv: 135-169 us against 57 us with
GOMP_SPINCOUNT=20000), which a short spin count would save; not changed yet (README, "Benchmarks").

The compiled modules must sit beside this file. When they do not (a source checkout that was never
built, or `python -m fastconv` started from inside the checkout, whose fastconv/ then shadows the
installed one), importing fails here with the remedy, rather than borrowing another copy's modules,
which could be stale and run under newer signatures.
"""
import importlib.machinery
import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

_here = os.path.dirname(os.path.abspath(__file__))
_suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
if not any(name.startswith("runtime") and name.endswith(_suffixes) for name in os.listdir(_here)):
    raise ImportError(
        f"fastconv's compiled kernels are missing from {_here}. This is a source tree without a build: "
        "install it (`pip install .`) and run from outside the source tree (or use the `fastconv` "
        "command), or build it in place with `python setup.py build_ext --inplace`."
    )
