"""Compiled kernels (built from src/ by setup.py).

Before the first kernel module loads the OpenMP runtime, ask idle OpenMP threads to sleep rather
than spin (unless the user chose otherwise): between two kernel calls Python does the layer
bookkeeping, and spinning threads would take the cores from it, from NumPy and from any other
process. On a busy 2-core machine this was the difference between ~470 and ~2,800 training images/s
for LeNet-5; a sleeping thread wakes in microseconds, small next to a convolution.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
