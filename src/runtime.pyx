# cython: language_level=3
"""Build and CPU facts: which SIMD levels the CPU has, whether OpenMP is compiled in."""
from _common cimport fc_cpu_isa, fc_have_openmp, fc_num_procs, fc_compiler_version
from _parallel cimport STREAM_MIN_BYTES
import os

# Outputs at least this large may take non-temporal stores (defined once, in _parallel.pxd);
# fastconv/ops/_validate.py aligns them to 64 bytes.
STREAM_BYTES = STREAM_MIN_BYTES


def cpu_isa():
    """Best SIMD level of this CPU: 0 generic, 1 AVX2+FMA, 2 AVX-512."""
    return fc_cpu_isa()


def have_openmp():
    return bool(fc_have_openmp())


def num_procs():
    """Cores OpenMP may use (1 in a serial build)."""
    return fc_num_procs() if fc_have_openmp() else (os.cpu_count() or 1)


def compiler():
    return fc_compiler_version().decode()
