"""ONNX's operator conformance cases for MaxPool and AveragePool, run through fastconv's ops.

Each case is one node (attributes kernel_shape, strides, pads, auto_pad, dilations, ceil_mode,
count_include_pad, a second "Indices" output) with its input and expected output in NCHW.  The
test translates the attributes to max_pool2d / avg_pool2d arguments (its own arithmetic for
SAME_LOWER), runs the op on the NHWC transpose and compares with the case's tolerances.
Cases fastconv cannot express (1-D and 3-D pooling) are skipped with that reason.

Where the onnx package ships its test data (onnx/backend/test/data/node/test_*pool*/model.onnx
and test_data_set_0/*.pb) the files are read; the wheels on PyPI leave that directory out, and
then the cases come from the generators the files are made from (onnx/backend/test/case/node/
maxpool.py and averagepool.py, which build every case when imported, seeded as for the files).
Collection only lists names (a directory listing or the generators' source); onnx is imported
by the first test that runs.
"""
from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import pytest

from fastconv import ops


def _onnx_dir():
    spec = importlib.util.find_spec("onnx")
    return None if spec is None or not spec.submodule_search_locations else spec.submodule_search_locations[0]


ONNX_DIR = _onnx_dir()
DATA_DIR = os.path.join(ONNX_DIR, "backend", "test", "data", "node") if ONNX_DIR else None
GEN_DIR = os.path.join(ONNX_DIR, "backend", "test", "case", "node") if ONNX_DIR else None
PREFIXES = ("test_maxpool_", "test_averagepool_")


def _case_names():
    """Names of the MaxPool / AveragePool cases, without importing onnx."""
    if ONNX_DIR is None:
        return []
    if os.path.isdir(DATA_DIR):
        return sorted(n for n in os.listdir(DATA_DIR) if n.startswith(PREFIXES))
    names = set()
    for mod in ("maxpool.py", "averagepool.py"):
        path = os.path.join(GEN_DIR, mod)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                names.update(re.findall(r'name="(test_(?:maxpool|averagepool)_\w+)"', f.read()))
    return sorted(names)


NAMES = _case_names()


@pytest.fixture(scope="module")
def cases():
    """name -> (node, inputs, outputs, rtol, atol) for every case (files or generators)."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    out = {}
    if os.path.isdir(DATA_DIR):
        for name in NAMES:
            model = onnx.load(os.path.join(DATA_DIR, name, "model.onnx"))
            ds = os.path.join(DATA_DIR, name, "test_data_set_0")

            def read(kind, ds=ds):
                arrays = []
                for i in range(len(os.listdir(ds))):
                    path = os.path.join(ds, f"{kind}_{i}.pb")
                    if not os.path.exists(path):
                        break
                    t = onnx.TensorProto()
                    with open(path, "rb") as f:
                        t.ParseFromString(f.read())
                    arrays.append(numpy_helper.to_array(t))
                return arrays

            out[name] = (model.graph.node[0], read("input"), read("output"), 1e-3, 1e-7)
        return out
    import onnx.backend.test.case.node as gen
    from onnx.backend.test.case.node import averagepool, maxpool  # noqa: F401  (importing builds the cases)

    for c in gen._NodeTestCases:
        if c.name.startswith(PREFIXES) and c.model is not None:
            ins, outs = c.data_sets[0]
            out[c.name] = (c.model.graph.node[0], list(ins), list(outs), c.rtol, c.atol)
    return out


def _attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _same_pads(n, k, s, d, lower):
    """ONNX SAME_UPPER / SAME_LOWER for one axis: out = ceil(n / s), the odd pixel of the total
    padding at the end (UPPER) or the beginning (LOWER)."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if lower else (small, big)


def _arguments(node, x_shape):
    """max_pool2d / avg_pool2d keyword arguments of a 2-D ONNX pooling node."""
    a = _attrs(node)
    k = tuple(a["kernel_shape"])
    s = tuple(a.get("strides", (1, 1)))
    d = tuple(a.get("dilations", (1, 1)))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        padding = tuple(_same_pads(x_shape[2 + i], k[i], s[i], d[i], auto == "SAME_LOWER") for i in range(2))
    elif auto == "VALID":
        padding = "valid"
    else:
        p = tuple(a.get("pads", (0, 0, 0, 0)))
        padding = ((p[0], p[2]), (p[1], p[3]))
    kw = {"stride": s, "padding": padding, "dilation": d, "ceil_mode": bool(a.get("ceil_mode", 0))}
    if node.op_type == "AveragePool":
        kw["count_include_pad"] = bool(a.get("count_include_pad", 0))
    return k, kw, int(a.get("storage_order", 0))


@pytest.mark.parametrize("name", NAMES or [pytest.param("none", marks=pytest.mark.skip(reason="onnx not installed"))])
def test_onnx_pool_case(cases, name):
    node, inputs, outputs, rtol, atol = cases[name]
    x = inputs[0]
    if x.ndim != 4:
        pytest.skip(f"{x.ndim - 2}-D pooling: fastconv pools 2-D images (NHWC) only")
    k, kw, storage_order = _arguments(node, x.shape)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if node.op_type == "MaxPool":
        y, am = ops.max_pool2d(xh, k, return_argmax=True, **kw)
    else:
        y, am = ops.avg_pool2d(xh, k, **kw), None
    want = outputs[0]
    got = y.transpose(0, 3, 1, 2)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol)
    if len(outputs) > 1:
        # MaxPool's Indices: flat NCHW offsets (n*C + c)*H*W + h*W + w, or with storage_order=1
        # (column-major planes) (n*C + c)*H*W + w*H + h; fastconv's argmax is h*W + w
        n, h, w, c = xh.shape
        am = am.astype(np.int64)
        plane = am if storage_order == 0 else (am % w) * h + am // w
        flat = (np.arange(n)[:, None, None, None] * c + np.arange(c)) * (h * w) + plane
        np.testing.assert_array_equal(flat.transpose(0, 3, 1, 2), outputs[1])


def test_the_cases_that_use_pytorchs_options_are_here():
    """The 2-D cases this module exists for are among the names (a renamed case would otherwise
    drop out silently)."""
    if ONNX_DIR is None:
        pytest.skip("onnx not installed")
    for name in ("test_maxpool_2d_ceil", "test_maxpool_2d_dilations", "test_maxpool_2d_ceil_output_size_reduce_by_one",
                 "test_averagepool_2d_ceil", "test_averagepool_2d_dilations"):
        assert name in NAMES


def test_every_2d_case_has_a_name_here(cases):
    """Every 2-D MaxPool / AveragePool case onnx has is parametrized above (names built at run
    time, as the 3-D dilation cases' are, escape the source scan: no 2-D case may)."""
    missing = sorted(n for n, c in cases.items() if c[1][0].ndim == 4 and n not in NAMES)
    assert not missing, missing
    assert sum(c[1][0].ndim == 4 for c in cases.values()) >= 20
