"""docs/conf.py: it imports, its API_PAGES gives every public module of fastconv a page, and the pages
it writes at build time (API pages, op / layer tables, kernel design notes, worked examples) cover
what exists. The Sphinx build itself (warnings as errors) runs in .ci/run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "fastconv"


@pytest.fixture(scope="module")
def conf():
    spec = importlib.util.spec_from_file_location("fastconv_docs_conf", ROOT / "docs" / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # no side effect: pages are written by setup(app) only
    return module


def public_modules(pkg: Path = PKG) -> set[str]:
    """Every module of the package whose dotted name has no part starting with "_" (from the files, so
    a module that fails to import still counts)."""
    mods = set()
    for path in pkg.rglob("*.py"):
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not any(p.startswith("_") for p in parts):
            mods.add(".".join(parts))
    return mods


def test_public_modules_found_here_are_the_ones_expected():
    mods = public_modules()
    assert {"fastconv", "fastconv.ops.conv", "fastconv.layers.conv", "fastconv.engine.trainer"} <= mods
    assert not any(m.startswith("fastconv._") or ".__" in m for m in mods)


def test_every_public_module_has_an_api_page(conf):
    listed = [m for m, _ in conf.API_PAGES]
    assert len(listed) == len(set(listed)), "a module is listed twice in API_PAGES"
    missing = sorted(public_modules() - set(listed))
    assert not missing, f"docs/conf.py API_PAGES lacks a line for: {missing}"
    gone = sorted(set(listed) - public_modules())
    assert not gone, f"docs/conf.py API_PAGES lists modules that do not exist: {gone}"


def test_api_pages_automodule_their_module(conf):
    pages = conf.api_sources()
    index = pages["api/index.rst"]
    for mod, about in conf.API_PAGES:
        assert f".. automodule:: {mod}\n" in pages[f"api/{mod}.rst"]
        assert f"{about} <{mod}>" in index
        assert importlib.util.find_spec(mod) is not None, mod


def test_package_page_documents_names_defined_in_private_modules(conf):
    text = conf.api_sources()["api/fastconv.rst"]
    assert ".. autofunction:: fastconv.show_config" in text  # defined in fastconv._config
    assert ":py:obj:`conv2d <fastconv.ops.conv.conv2d>`" in text  # documented on its own page


def test_tables_list_every_op_and_layer(conf):
    import fastconv.layers
    import fastconv.ops

    text = conf.tables_source()
    for name in ("conv2d", "depthwise_conv2d", "max_pool2d", "batch_norm"):
        assert f"{{py:func}}`{name} <{getattr(fastconv.ops, name).__module__}.{name}>`" in text
        assert f"`{name}_grad`" in text
    for name in ("Conv2D", "SeparableConv2D", "BatchNormalization", "Dense"):
        cls = getattr(fastconv.layers, name)
        assert f"{{py:class}}`{name} <{cls.__module__}.{name}>`" in text
    assert "`MaxPooling2D <fastconv.layers.pooling.MaxPooling2D>` (also MaxPool2D)" in text
    assert "(also AvgPool2D)" in text


def test_design_notes_hold_every_kernel_header(conf):
    text = conf.design_notes_source()
    headers = sorted((ROOT / "src").glob("*_impl.h"))
    assert headers
    for h in headers:
        assert f"## `src/{h.name}`" in text
    assert "Register tile" in text


def test_examples_page_has_every_program(conf):
    text = conf.examples_source()
    for path in (ROOT / "examples").glob("*.py"):
        if not path.stem.startswith("_"):
            assert f".. literalinclude:: ../../examples/{path.name}\n" in text


def test_generate_writes_atomically_and_removes_stale_pages(conf, tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "fastconv.gone.rst").write_text("old")
    conf.generate(tmp_path)
    assert not (tmp_path / "api" / "fastconv.gone.rst").exists()
    assert (tmp_path / "api" / "fastconv.ops.conv.rst").exists()
    assert (tmp_path / "_generated" / "tables.md").read_text() == conf.tables_source()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.fixture(scope="module")
def diagrams():
    spec = importlib.util.spec_from_file_location("fastconv_docs_diagrams", ROOT / "docs" / "diagrams.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_register_tile_geometry_is_the_kernels(diagrams):
    from fastconv._kernels import conv as kc
    from fastconv.ops import _plan

    # float32 lanes per vector: 128-bit generic vectors, 256-bit AVX2, 512-bit AVX-512
    for level, vlen in (("generic", 4), ("avx2", 8), ("avx512", 16)):
        g = diagrams.tile_geometry(level)
        assert g["rb"] == _plan.RB == kc.RB
        assert (g["vlen"], g["vb"]) == (vlen, 2 * vlen)
        assert g["accumulators"] == 2 * g["rb"] and g["registers"] == g["accumulators"] + 3
    # float64 has its own instantiation (src/fc_instantiate.h), read from the kernels too
    assert diagrams.tile_geometry("avx2", "float64")["vb"] == kc.block_size(1, "float64")
    with pytest.raises(ValueError, match="level='sse9'"):
        diagrams.tile_geometry("sse9")


def test_register_tile_picture_is_written(diagrams, tmp_path):
    out = diagrams.draw_register_tile(tmp_path / "tile.png", "avx512")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["tile.png"]
