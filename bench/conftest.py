"""pytest configuration for bench/ (run as ``pytest bench/ --benchmark-only``; plain ``pytest`` only
collects tests/, see ``testpaths`` in pyproject.toml).

Without pytest-benchmark the test module skips itself; the options below are then accepted and
ignored so that ``pytest bench/ --benchmark-only`` still runs (and reports the skip) instead of failing
on an unknown option.
"""

import importlib.util
import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(_BENCH))  # bench_cases importable in any import mode
if importlib.util.find_spec("fastconv") is None:  # not installed: use this checkout (in-place build)
    sys.path.insert(0, str(_BENCH.parent))

try:
    import pytest_benchmark  # noqa: F401
except ImportError:

    def pytest_addoption(parser):
        group = parser.getgroup("benchmark (pytest-benchmark not installed: options ignored)")
        group.addoption("--benchmark-only", action="store_true", default=False)
        group.addoption("--benchmark-skip", action="store_true", default=False)
        group.addoption("--benchmark-disable", action="store_true", default=False)
