"""pytest plugin loaded by scripts/sanitize.sh (-p sanitize_plugin): refuse to run unless the
fastconv being tested is the sanitizer build, and say which files were imported.

A sanitizer pass that silently tested the normal build (an in-tree or pip-installed fastconv first
on sys.path) would report "no findings" for nothing, so every check here is fatal.
"""
import os

import pytest

MODULES = ["runtime", "conv", "depthwise", "pool", "norm"]
_lines = []


def _check():
    site = os.path.realpath(os.environ["FASTCONV_SANITIZE_SITE"])
    import importlib

    import fastconv

    problems = []
    pkg = os.path.realpath(fastconv.__file__)
    _lines.append(f"sanitizer build: fastconv from {pkg}")
    if not pkg.startswith(site + os.sep):
        problems.append(f"fastconv was imported from {pkg}, not from the sanitizer copy in {site}")
    for name in MODULES:
        try:
            mod = importlib.import_module(f"fastconv._kernels.{name}")
        except ImportError as err:
            problems.append(f"fastconv._kernels.{name} does not import: {err}")
            continue
        path = os.path.realpath(mod.__file__)
        with open(path, "rb") as fh:
            data = fh.read()
        asan, ubsan = b"__asan_init" in data, b"__ubsan_handle_" in data
        # with -fwrapv in force UBSan emits no signed-overflow checks at all
        overflow = b"__ubsan_handle_add_overflow" in data or b"__ubsan_handle_mul_overflow" in data
        _lines.append(f"  {name}: {path} (ASan {'yes' if asan else 'NO'}, UBSan {'yes' if ubsan else 'NO'}, "
                      f"signed-overflow checks {'yes' if overflow else 'no'})")
        if not overflow:
            problems.append(f"{path} has no signed-overflow checks (was -fwrapv left on?)")
        if not path.startswith(site + os.sep):
            problems.append(f"{name} was imported from {path}, not from {site}")
        if not (asan and ubsan):
            problems.append(f"{path} is not instrumented (no __asan_init / __ubsan_handle_* symbols)")
    with open("/proc/self/maps") as fh:
        runtimes = sorted({line.split()[-1] for line in fh if "libasan" in line or "libubsan" in line})
    _lines.append(f"  sanitizer runtimes mapped: {', '.join(runtimes) or 'NONE'}")
    if not any("libasan" in r for r in runtimes):
        problems.append("libasan is not loaded (LD_PRELOAD missing?)")
    if problems:
        raise pytest.UsageError("not the sanitizer build:\n  " + "\n  ".join(problems))


def pytest_configure(config):
    _check()
    # A child process (a test running python -m pytest or the CLI) inherits LD_PRELOAD, but the test
    # usually captures its stderr and drops it when the child succeeds, and UBSan's log_path is not
    # honoured next to ASan: so a UBSan report must at least kill the child (a nonzero exit the
    # test sees), even under --keep-going.  This process parsed its options at start-up already.
    os.environ["UBSAN_OPTIONS"] = os.environ.get("UBSAN_OPTIONS", "") + ":halt_on_error=1"


def pytest_report_header(config):
    return _lines
