"""The kernel headers also compile where only the generic path exists (aarch64 and other non-x86).

The x86 build is what the rest of the suite runs; this check compiles each `*_kernels.h` once more
with the x86 multi-versioning switched off (FC_X86 0, as fc_common.h sets it off x86-64), so a
declaration that only the x86 branch provides, or one defined in both branches, shows up here.
"""
from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
KERNEL_HEADERS = sorted(p.name for p in SRC.glob("*_kernels.h"))


def _compiler() -> str:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("cc") or shutil.which("gcc")


def test_every_kernel_family_has_a_header():
    assert {"conv_kernels.h", "depthwise_kernels.h", "pool_kernels.h", "norm_kernels.h"} <= set(KERNEL_HEADERS)


@pytest.mark.parametrize("header", KERNEL_HEADERS)
def test_header_compiles_with_generic_path_only(header, tmp_path):
    cc = _compiler()
    assert cc, "no C compiler found (the package itself needs one to build)"
    src = tmp_path / "src"
    shutil.copytree(SRC, src)
    common = src / "fc_common.h"
    text = common.read_text()
    assert "#define FC_X86 1" in text
    common.write_text(text.replace("#define FC_X86 1", "#define FC_X86 0", 1))
    unit = tmp_path / "unit.c"
    unit.write_text(f'#include "{header}"\n')
    run = subprocess.run([cc, "-std=gnu11", "-fsyntax-only", "-Wall", "-Wno-unused-function", f"-I{src}", str(unit)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr, run.stderr


def test_levels_are_instantiated_in_one_place():
    """The SIMD levels, their target pragmas and the pick macro are written once (fc_instantiate.h,
    fc_common.h); a family header names its impl header and includes the driver."""
    for header in KERNEL_HEADERS:
        text = (SRC / header).read_text()
        assert "#pragma GCC target" not in text, header
        assert "#define FC_PICK" not in text and "_PICK(isa, name" not in text, header
        assert '#include "fc_instantiate.h"' in text, header
    assert (SRC / "fc_common.h").read_text().count("#define FC_PICK(") == 2  # x86 and elsewhere
