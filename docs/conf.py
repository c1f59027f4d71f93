"""Sphinx configuration of fastconv's documentation site.

    sphinx-build -W --keep-going -b html docs docs/_build/html

Why Sphinx + autodoc + numpydoc (and not MkDocs + mkdocstrings): fastconv's docstrings are in the
NumPy style (STYLE.md asks for it: ``Parameters`` / ``Returns`` sections in 19 modules, none in the
Google style, the rest short paragraphs opening with the array shapes), which numpydoc parses as
written; autodoc imports the built package, so the compiled ops are
documented from the same objects users call; and ``-W`` turns every broken reference or malformed
docstring into a build failure that CI catches. MyST lets the narrative pages (and the existing
``docs/kernels.md``) stay Markdown, like the README; furo gives a searchable, readable theme.

Pages written at build time (into ``docs/api/`` and ``docs/_generated/``, both git-ignored), so
that they cannot drift from the code:

* one API page per entry of :data:`API_PAGES` (``tests/test_docs.py`` fails when a public module
  of fastconv has none: adding a module is one line below);
* the op and layer tables, read from ``fastconv.ops`` and ``fastconv.layers``;
* the kernels' design notes, the opening comment of each ``src/*_impl.h``;
* the worked examples, one section per ``examples/*.py`` with its picture when
  ``docs/examples/<name>.png`` exists (``python docs/make_pictures.py`` draws them).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# autodoc documents the fastconv that imports: the installed one (CI: `pip install .`), else this
# checkout when it is built in place. The checkout is not put first: unbuilt, it would shadow the
# installed package.
if importlib.util.find_spec("fastconv") is None:
    sys.path.insert(0, str(ROOT))

# -- the API reference: one line per public module ---------------------------------------------------
# (module, what the page is about).  A public module is every module of fastconv whose dotted name
# has no part starting with "_" (tests/test_docs.py lists them from the files).
API_PAGES = [
    ("fastconv", "the public names"),
    ("fastconv.cli", "the command line"),
    ("fastconv.ops", "functional ops"),
    ("fastconv.ops.conv", "conv2d, conv_transpose2d, dense"),
    ("fastconv.ops.depthwise", "depthwise convolution"),
    ("fastconv.ops.pool", "pooling"),
    ("fastconv.ops.norm", "batch normalization and ReLU"),
    ("fastconv.ops.winograd", "Winograd 3x3 convolution"),
    ("fastconv.ops.elementwise", "compiled element-wise activations and softmax"),
    ("fastconv.reference", "the NumPy reference"),
    ("fastconv.activations", "activations"),
    ("fastconv.filters", "classic image filters"),
    ("fastconv.layers", "layers"),
    ("fastconv.layers.base", "the Layer contract"),
    ("fastconv.layers.conv", "convolution layers"),
    ("fastconv.layers.core", "Dense, Dropout, Flatten, activations"),
    ("fastconv.layers.pooling", "pooling layers"),
    ("fastconv.layers.normalization", "BatchNormalization"),
    ("fastconv.layers.layer_normalization", "LayerNormalization"),
    ("fastconv.layers.activation", "LeakyReLU, PReLU, ELU"),
    ("fastconv.layers.reshaping", "padding, upsampling, reshaping"),
    ("fastconv.layers.cropping", "Cropping2D"),
    ("fastconv.layers.merge", "merge layers"),
    ("fastconv.layers.shape_ops", "shape layers"),
    ("fastconv.layers.blocks", "ResidualBlock, Branches"),
    ("fastconv.layers.input_layer", "Input, InputLayer"),
    ("fastconv.layers.lambda_layer", "Lambda"),
    ("fastconv.layers.preprocessing", "Rescaling, Normalization"),
    ("fastconv.layers.random_image", "random image augmentation layers"),
    ("fastconv.layers.regularization", "SpatialDropout2D, GaussianNoise"),
    ("fastconv.engine", "models"),
    ("fastconv.engine.base", "the model base class"),
    ("fastconv.engine.sequential", "Sequential"),
    ("fastconv.engine.functional", "Model (functional API)"),
    ("fastconv.engine.graph", "the execution graph and fusion"),
    ("fastconv.engine.trainer", "fit, evaluate, predict"),
    ("fastconv.engine.data", "batching"),
    ("fastconv.engine.objective", "losses and metrics of a model"),
    ("fastconv.engine.progbar", "the progress bar"),
    ("fastconv.engine.interrupt", "the Ctrl-C guard"),
    ("fastconv.engine.shared", "layers called at several nodes"),
    ("fastconv.engine.replica", "the data-parallel hooks of the trainer"),
    ("fastconv.engine.onnx_export", "the ONNX converter"),
    ("fastconv.engine.flat", "the flat parameter and gradient buffers"),
    ("fastconv.models", "the model zoo"),
    ("fastconv.onnx", "ONNX export"),
    ("fastconv.distributed", "data-parallel training on MPI"),
    ("fastconv.saving", "save and load"),
    ("fastconv.losses", "losses"),
    ("fastconv.metrics", "metrics"),
    ("fastconv.optimizers", "optimizers"),
    ("fastconv.optimizers.schedules", "learning-rate schedules"),
    ("fastconv.callbacks", "callbacks"),
    ("fastconv.initializers", "initializers"),
    ("fastconv.regularizers", "regularizers"),
    ("fastconv.datasets", "data sets"),
    ("fastconv.data", "the bundled MNIST files"),
    ("fastconv.augment", "ImageAugmenter"),
    ("fastconv.utils", "utilities"),
    ("fastconv.plot", "plots"),
]

# -- project -------------------------------------------------------------------------------------------
project = "fastconv"
author = "the fastconv authors"
copyright = "the fastconv authors"
try:
    import fastconv

    release = version = fastconv.__version__
except ImportError as exc:  # the compiled kernels are needed for autodoc: say how to get them
    raise ImportError(
        "docs/conf.py: fastconv does not import (build it first: `pip install .` or "
        f"`python setup.py build_ext --inplace`). Received: {exc}"
    ) from exc

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "_generated/*.md"]  # included by pages
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
    "member-order": "bysource",
    # each object is documented once, on the page of the module that defines it (the packages
    # re-export names through __all__; documenting them there too would describe them twice)
    "ignore-module-all": True,
}
autodoc_typehints = "none"  # the numpydoc sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "furo"
html_title = f"fastconv {release}"
html_static_path = []
nitpicky = False


# -- pages written at build time -----------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    """Write only when the text changed (Sphinx rebuilds what is newer), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def api_sources() -> dict[str, str]:
    """{relative path: reST text}: the API index and one page per module of API_PAGES."""
    pages = {}
    lines = [
        _title("API reference"),
        "One page per public module, generated from its docstrings.\n",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    for mod, about in API_PAGES:
        lines.append(f"   {about} <{mod}>")
        body = _title(f"``{mod}``") + f"\n.. automodule:: {mod}\n" + _reexports(mod)
        pages[f"api/{mod}.rst"] = body
    pages["api/index.rst"] = "\n".join(lines) + "\n"
    return pages


def _reexports(mod: str) -> str:
    """For a package with ``__all__``: where each of its names is documented (the page of the module
    that defines it), and the documentation itself of names defined in a private module."""
    import importlib

    m = importlib.import_module(mod)
    names = getattr(m, "__all__", None)
    if not names or not hasattr(m, "__path__"):
        return ""
    links, here = [], []
    for n in names:
        obj = getattr(m, n)
        if inspect.ismodule(obj):
            links.append(f"* :py:mod:`{n} <{obj.__name__}>`")
            continue
        home = getattr(obj, "__module__", None)
        if not home or not (inspect.isclass(obj) or callable(obj)):
            links.append(f"* ``{n}``")
        elif any(part.startswith("_") for part in home.split(".")):
            links.append(f"* :py:obj:`{n} <{mod}.{n}>`")
            kind = "autoclass" if inspect.isclass(obj) else "autofunction"
            here.append(f".. {kind}:: {mod}.{n}\n")
        else:
            links.append(f"* :py:obj:`{n} <{home}.{getattr(obj, '__qualname__', n)}>`")
    out = "\nNames\n-----\n\n" + "\n".join(links) + "\n"
    if here:
        out += "\nDefined here\n------------\n\n" + "\n".join(here)
    return out


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    line = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return line.replace("|", "\\|")


def tables_source() -> str:
    """The op and layer tables (Markdown), read from the packages so they list what exists."""
    from fastconv import layers, ops, reference

    out = [
        "| op | gradient | twin in `fastconv.reference` | module | what it computes |",
        "|---|---|---|---|---|",
    ]
    names = [
        n
        for n in dir(ops)
        if not n.startswith("_")
        and callable(getattr(ops, n))
        and not n.endswith("_grad")
        and not inspect.isclass(getattr(ops, n))
    ]
    for n in sorted(names, key=lambda n: (getattr(ops, n).__module__, n)):
        fn = getattr(ops, n)
        mod = fn.__module__
        grad = f"`{n}_grad`" if hasattr(ops, f"{n}_grad") else ""
        ref = "yes" if hasattr(reference, n) else ""
        out.append(f"| {{py:func}}`{n} <{mod}.{n}>` | {grad} | {ref} | `{mod}` | {_first_line(fn)} |")
    out += [
        "",
        "## Layers",
        "",
        "Generated from `fastconv.layers`; arguments and weight orders are Keras's.",
        "",
        "| layer | module | what it is |",
        "|---|---|---|",
    ]
    names_of: dict = {}  # layer class -> the names fastconv.layers gives it (aliases such as MaxPool2D)
    for n in sorted(getattr(layers, "__all__", dir(layers))):
        cls = getattr(layers, n, None)
        if inspect.isclass(cls) and issubclass(cls, layers.Layer):
            names_of.setdefault(cls, []).append(n)
    for cls in sorted(names_of, key=lambda c: c.__name__):
        also = [n for n in names_of[cls] if n != cls.__name__]
        alias = f" (also {', '.join(also)})" if also else ""
        out.append(
            f"| {{py:class}}`{cls.__name__} <{cls.__module__}.{cls.__name__}>`{alias} "
            f"| `{cls.__module__}` | {_first_line(cls)} |"
        )
    return "\n".join(out) + "\n"


_HEADER_COMMENT = re.compile(r"\A\s*/\*(.*?)\*/", re.DOTALL)


def design_notes_source() -> str:
    """The opening comment of each kernel header (src/*_impl.h), where each family's design lives."""
    out = []
    for path in sorted((ROOT / "src").glob("*_impl.h")):
        m = _HEADER_COMMENT.match(path.read_text())
        if not m:
            continue
        text = "\n".join(re.sub(r"^ ?\* ?", "", ln.strip()) for ln in m.group(1).splitlines()).strip()
        out.append(f"## `src/{path.name}`\n\n```text\n{text}\n```\n")
    return "\n".join(out)


def _picture_command(name: str) -> str:
    """The command line docs/make_pictures.py runs for example `name` (its shortened arguments)."""
    sys.path.insert(0, str(DOCS))
    try:
        import make_pictures
    finally:
        sys.path.remove(str(DOCS))
    return " ".join([f"python examples/{name}.py", *make_pictures.PICTURES.get(name, [])])


def examples_source() -> str:
    """reST: one section per example program, its docstring, picture and source."""
    out = [
        _title("Worked examples"),
        (
            "The tutorials' programs in ``examples/``, each runnable as shown on the bundled MNIST. "
            "Pictures are drawn by ``python docs/make_pictures.py`` (short runs of the programs).\n"
        ),
    ]
    for path in sorted((ROOT / "examples").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        import ast

        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out.append(_title(f"``{path.name}``", "-"))
        out.append(doc + "\n")
        png = DOCS / "examples" / f"{path.stem}.png"
        if png.exists():
            out.append(
                f".. figure:: ../examples/{png.name}\n   :alt: output of {path.name}\n   :width: 90%\n\n"
                f"   Drawn by ``{_picture_command(path.stem)}`` (``docs/make_pictures.py``).\n"
            )
        out.append(
            f".. literalinclude:: ../../examples/{path.name}\n   :language: python\n"
            f"   :caption: examples/{path.name}\n"
        )
    return "\n".join(out)


def generate(docs: Path = DOCS) -> None:
    for rel, text in api_sources().items():
        _write(docs / rel, text)
    _write(docs / "_generated" / "tables.md", tables_source())
    _write(docs / "_generated" / "design_notes.md", design_notes_source())
    _write(docs / "_generated" / "examples.rst", examples_source())
    # a stale page of a module taken out of API_PAGES would be built as an orphan: remove it
    keep = {f"{m}.rst" for m, _ in API_PAGES} | {"index.rst"}
    for old in (docs / "api").glob("*.rst"):
        if old.name not in keep:
            old.unlink()


def setup(app):
    """Sphinx's hook, run as the configuration loads (before any source is read)."""
    generate()
    return {"parallel_read_safe": True}
