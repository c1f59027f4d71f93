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
    if not cc:
        pytest.skip("no C compiler on PATH (a binary-wheel install has none; the header check needs one)")
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


# ---- setup.py: flags, the Cython stamp, build requirements ------------------------------------------
# setup.py calls setup() when run; here it is loaded with setup() stubbed out, so its helpers can be
# checked as plain functions (no compiler, no Cython needed).
ROOT = SRC.parent


@pytest.fixture(scope="module")
def setup_py():
    import runpy

    import setuptools

    saved = setuptools.setup
    setuptools.setup = lambda **kw: None
    try:
        return runpy.run_path(str(ROOT / "setup.py"), run_name="fastconv_setup")
    finally:
        setuptools.setup = saved


def test_modules_is_a_plain_list_of_existing_pyx(setup_py):
    modules = setup_py["MODULES"]
    assert isinstance(modules, list) and all(isinstance(m, str) for m in modules)
    assert len(set(modules)) == len(modules)
    for m in modules:
        assert (SRC / f"{m}.pyx").exists(), m


def test_unix_flags_keep_O3_and_drop_debug_info(setup_py, monkeypatch):
    monkeypatch.setenv("FASTCONV_NO_OPENMP", "1")
    comp, link = setup_py["compile_flags"]("unix")
    assert "-O3" in comp and "-std=gnu11" in comp
    # the last -g option wins: -g0, so CPython's -g (~20% of the compile's CPU) is cancelled
    assert [f for f in comp if f.startswith("-g")][-1] == "-g0"
    assert not any("openmp" in f for f in comp + link)


def test_sanitize_flags_win_over_the_defaults(setup_py, monkeypatch):
    monkeypatch.setenv("FASTCONV_NO_OPENMP", "1")
    comp, link = setup_py["compile_flags"]("unix", sanitize=True)
    assert "-fsanitize=address,undefined" in comp and "-fsanitize=address,undefined" in link
    assert comp.index("-O1") > comp.index("-O3") and "-fno-wrapv" in comp
    assert [f for f in comp if f.startswith("-g")][-1] == "-g"


def test_msvc_flags(setup_py, monkeypatch):
    monkeypatch.delenv("FASTCONV_NO_OPENMP", raising=False)
    comp, link = setup_py["compile_flags"]("msvc")
    assert comp == ["/O2", "/openmp"] and link == []
    monkeypatch.setenv("FASTCONV_NO_OPENMP", "1")
    comp, link = setup_py["compile_flags"]("msvc")
    assert comp == ["/O2"] and link == []
    assert not any(f.startswith("-") for f in comp)


@pytest.mark.parametrize("value, serial", [("1", True), ("0", False), ("", False)])
def test_no_openmp_switch(setup_py, monkeypatch, value, serial):
    monkeypatch.setenv("FASTCONV_NO_OPENMP", value)
    comp, link = setup_py["openmp_flags"]("msvc")  # msvc: no probe, the switch alone decides
    assert (comp == [] and link == []) is serial


def _stamp_tree(tmp_path):
    (tmp_path / "src").mkdir()
    pyx = tmp_path / "src" / "m.pyx"
    pyx.write_text("def f():\n    return 1\n")
    pxd = tmp_path / "src" / "_c.pxd"
    pxd.write_text("cdef int x\n")
    return pyx, pxd


def test_cython_stamp_follows_every_input(setup_py, tmp_path):
    stamp = setup_py["cython_stamp"]
    pyx, pxd = _stamp_tree(tmp_path)
    d = {"boundscheck": False}
    base = stamp(str(pyx), [str(pxd)], "3.1.0", d)
    assert stamp(str(pyx), [str(pxd)], "3.1.0", dict(d)) == base          # deterministic
    pyx.touch()
    assert stamp(str(pyx), [str(pxd)], "3.1.0", d) == base                 # mtimes don't matter
    assert stamp(str(pyx), [str(pxd)], "3.1.1", d) != base                 # Cython's version does
    assert stamp(str(pyx), [str(pxd)], "3.1.0", {"boundscheck": True}) != base
    pxd.write_text("cdef int y\n")
    assert stamp(str(pyx), [str(pxd)], "3.1.0", d) != base                 # a shared .pxd does
    after_pxd = stamp(str(pyx), [str(pxd)], "3.1.0", d)
    pyx.write_text("def f():\n    return 2\n")
    assert stamp(str(pyx), [str(pxd)], "3.1.0", d) != after_pxd            # the .pyx does


def test_plan_cythonize_regenerates_only_what_changed(setup_py, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pyx, pxd = _stamp_tree(tmp_path)
    plan, stamp = setup_py["plan_cythonize"], setup_py["cython_stamp"]
    build_dir = "build/cython"
    args = (build_dir, ["src/_c.pxd"], "3.1.0", {})
    todo, c_files = plan(["src/m.pyx"], {}, *args)
    assert list(todo) == ["src/m.pyx"] and c_files == {"src/m.pyx": str(Path(build_dir) / "src" / "m.c")}
    stamps = dict(todo)
    todo, _ = plan(["src/m.pyx"], stamps, *args)
    assert list(todo) == ["src/m.pyx"], "a stamp without its C file is stale"
    c = tmp_path / c_files["src/m.pyx"]
    c.parent.mkdir(parents=True)
    c.write_text("/* generated */")
    assert plan(["src/m.pyx"], stamps, *args)[0] == {}                     # the second install: nothing
    pyx.write_text("def f():\n    return 3\n")
    assert plan(["src/m.pyx"], stamps, *args)[0] == {"src/m.pyx": stamp("src/m.pyx", ["src/_c.pxd"], "3.1.0", {})}


def test_stamp_files_are_written_atomically(setup_py, tmp_path):
    path = str(tmp_path / "b" / "s.json")
    setup_py["_write_json"](path, {"a": [1, 2]})
    assert setup_py["_read_json"](path) == {"a": [1, 2]}
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["s.json"]
    (tmp_path / "b" / "bad.json").write_text("{not json")
    assert setup_py["_read_json"](str(tmp_path / "b" / "bad.json")) == {}
    assert setup_py["_read_json"](str(tmp_path / "missing.json")) == {}


def test_numpy_is_a_build_requirement_only_if_the_sources_use_its_headers():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    texts = [p.read_text() for p in list(SRC.glob("*.pyx")) + list(SRC.glob("*.pxd")) + list(SRC.glob("*.h"))]
    uses_numpy_c = any("cimport numpy" in t or "numpy/arrayobject.h" in t or "numpy/ndarraytypes.h" in t
                       for t in texts)
    assert any(r.split(">")[0].split("=")[0].strip() == "numpy" for r in requires) == uses_numpy_c


def test_cibuildwheel_config_covers_the_platforms():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert "pytest" in cfg["test-command"] and "test" in cfg["test-extras"]
    assert set(cfg["linux"]["archs"]) == {"x86_64", "aarch64"}
    assert "macos" in cfg and "windows" in cfg


def test_unix_flags_compile(setup_py, tmp_path, monkeypatch):
    """The flags setup.py gives gcc/clang are accepted by this machine's compiler (OpenMP probed)."""
    cc = _compiler()
    if not cc:
        pytest.skip("no C compiler on PATH (a binary-wheel install has none)")
    monkeypatch.delenv("FASTCONV_NO_OPENMP", raising=False)
    comp, link = setup_py["compile_flags"]("unix")
    unit = tmp_path / "t.c"
    unit.write_text('#include "fc_common.h"\nint main(void) { return fc_have_openmp() < 0; }\n')
    run = subprocess.run([cc, *comp, f"-I{SRC}", str(unit), "-o", str(tmp_path / "t"), *link],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert subprocess.run([str(tmp_path / "t")]).returncode == 0


def test_header_copies_in_the_build_dir_are_dropped(setup_py, tmp_path):
    """A header copy beside a generated C file would be compiled instead of the edited src/ one."""
    stale = tmp_path / "build" / "cython" / "src" / "conv_geom.h"
    stale.parent.mkdir(parents=True)
    stale.write_text("/* an old copy */")
    c_file = stale.parent / "conv.c"
    c_file.write_text("/* generated */")
    setup_py["drop_header_copies"](str(tmp_path / "build" / "cython"))
    assert not stale.exists() and c_file.exists()
