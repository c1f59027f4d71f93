"""Compiled kernels (built from src/ by setup.py).

Before the first kernel module loads the OpenMP runtime, ask idle OpenMP threads to sleep rather
than spin (unless the user chose otherwise): between two kernel calls Python does the layer
bookkeeping, and spinning threads would take the cores from it, from NumPy and from any other
process. On a busy 2-core machine this was the difference between ~470 and ~2,800 training images/s
for LeNet-5; a sleeping thread wakes in microseconds, small next to a convolution.

`python -m fastconv ...` started inside an unbuilt source checkout imports this source tree (the
current directory comes first on sys.path) while the compiled modules live in the installed copy
(`pip install .`): in that case the installed copy's kernels are used.
"""
import importlib.machinery
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def _has_kernels(directory: str) -> bool:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    try:
        return any(name.startswith("runtime") and name.endswith(suffixes) for name in os.listdir(directory))
    except OSError:
        return False


def _installed_kernels(here: str):
    for entry in sys.path:
        candidate = os.path.abspath(os.path.join(entry or os.getcwd(), "fastconv", "_kernels"))
        if candidate != here and _has_kernels(candidate):
            return candidate
    return None


_here = os.path.dirname(os.path.abspath(__file__))
if not _has_kernels(_here):
    _installed = _installed_kernels(_here)
    if _installed:
        __path__.append(_installed)
