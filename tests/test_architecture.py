"""The package imports one way (ARCHITECTURE.md). Every import statement of ``fastconv/`` (top-level or
inside a function) is an edge; there is no cycle, the layers never reach up into the engine,
symbolic tensors sit at the bottom of ``layers/``, and ``saving`` knows no model module."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "fastconv"


def _modules():
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _import_graph():
    mods = _modules()
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = m.split(".") if is_pkg else m.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != m:
                    edges[m].add(t)
    return edges


@pytest.fixture(scope="module")
def graph():
    return _import_graph()


def _cycle(edges):
    """One import cycle as a list of modules, or None."""
    state, path = {}, []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(edges):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_no_import_cycle(graph):
    assert "fastconv.engine.trainer" in graph and "fastconv.layers._symbolic" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_layers_never_import_the_engine_and_symbolic_is_the_bottom(graph):
    for m, deps in graph.items():
        if m.startswith("fastconv.layers"):
            assert not any(d.startswith("fastconv.engine") for d in deps), (m, sorted(deps))
    assert graph["fastconv.layers._symbolic"] == set()
    assert "fastconv.layers._symbolic" in graph["fastconv.layers.base"]


def test_saving_imports_no_model_module(graph):
    deps = graph["fastconv.saving"]
    assert not any(d.startswith("fastconv.engine") for d in deps), sorted(deps)


def test_the_old_modules_are_gone():
    for name in ("training", "model", "functional"):
        assert not (PKG / f"{name}.py").exists()


def _floors():
    """Module name (or package prefix) -> floor, from the table in ARCHITECTURE.md."""
    text = (PKG.parent / "ARCHITECTURE.md").read_text()
    floors = {}
    for floor, cell in re.findall(r"^\| (\d+) \| (.+?) \|", text, flags=re.M):
        for name in re.findall(r"`([\w.*]+)`", cell):
            floors[name.removesuffix(".*")] = int(floor)
    return floors


def _floor_of(module, floors):
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in floors:
            return floors[".".join(parts[:n])]
    return None


def test_every_module_has_a_floor_and_imports_only_downward(graph):
    floors = _floors()
    assert floors["fastconv._kernels"] == 0 and floors["fastconv.engine"] > floors["fastconv.layers"]
    missing = sorted(m for m in graph if _floor_of(m, floors) is None)
    assert not missing, f"modules ARCHITECTURE.md does not place on a floor: {missing}"
    upward = [f"{m} (floor {_floor_of(m, floors)}) imports {d} (floor {_floor_of(d, floors)})"
              for m, deps in graph.items() for d in deps if _floor_of(d, floors) > _floor_of(m, floors)]
    assert not upward, "imports that run up a floor:\n" + "\n".join(sorted(upward))


def test_the_floor_check_catches_an_upward_import():
    edges = {"fastconv.ops.conv": {"fastconv.layers.base"}, "fastconv.layers.base": set()}
    floors = _floors()
    assert _floor_of("fastconv.layers.base", floors) > _floor_of("fastconv.ops.conv", floors)
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"] and _cycle(edges) is None
