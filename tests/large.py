"""Shared by the large-shape tests (tests/ is on sys.path under pytest).

These tests push one size past a point where a 32-bit index would wrap (a row of more than
2**31 / 6 pixels split into tiles, a tensor of more than 2**31 elements, ...) and check the op
against the reference on a sample of outputs or a closed form.  They are marked ``large``, so
``pytest -m "not large"`` leaves them out; each stays within a few GiB resident and seconds.
"""
import numpy as np
import pytest

INT32_MAX = 2**31 - 1


def lazy_zeros(shape, dtype=np.float32):
    """np.zeros(shape): its pages are mapped on first touch, so an op that reads a few rows of an
    8 GiB tensor costs only those rows.  Where the operating system refuses the address space the
    test is skipped, with the reason in the report (never silently)."""
    try:
        return np.zeros(shape, dtype)
    except MemoryError as err:  # overcommit disabled or an address-space limit (ulimit -v)
        gib = np.prod(shape, dtype=np.float64) * np.dtype(dtype).itemsize / 2**30
        pytest.skip(f"the OS refused {gib:.1f} GiB of address space for {shape}: {err}")
