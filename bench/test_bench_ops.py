"""pytest-benchmark timings of every fastconv op, forward and backward, beside PyTorch.

    pytest bench/ --benchmark-only                      # ~40 benchmarks, under a minute on 2 cores
    pytest bench/ --benchmark-only -k "dw3x3 and fastconv"

Small batches of the benchmark shapes (bench_cases.CASES); one benchmark group per shape, holding
fastconv and PyTorch (channels_last, same thread count) for the forward op and for the gradient op
alone (dy given; PyTorch: autograd backward of a recorded forward, retain_graph).  bench_ops.py is the
full comparison with the NumPy reference, GFLOP/s and the speed targets.
"""

import pytest

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")
ops = pytest.importorskip(
    "fastconv.ops", reason="fastconv is not built (python setup.py build_ext --inplace)"
)

from bench_cases import CASES, Problem

try:
    import torch
except ImportError:  # PyTorch is optional: its benchmarks skip
    torch = None

# (case name, batch): small enough that the whole file runs in well under a minute
SHAPES = [
    ("conv3x3 32->32 @28", 4),
    ("conv3x3 s2 64->128 @56", 1),
    ("conv1x1 64->128 @28", 4),
    ("first 3x3 1->32 @28", 8),
    ("dw3x3 64ch @28", 4),
    ("dw5x5 s2 96ch @56", 1),
    ("convT4x4 s2 64->32 @28", 1),
    ("maxpool2x2 32ch @28", 8),
    ("avgpool2x2 32ch @28", 8),
    ("maxpool3x3 s2 64ch @112", 1),
]
_BY_NAME = {c.name: c for c in CASES}

# Keep each benchmark short; the warm-up lets PyTorch create its oneDNN primitives first.
pytestmark = pytest.mark.benchmark(max_time=0.1, min_rounds=3, warmup=True, warmup_iterations=1)


@pytest.fixture(scope="module")
def problems():
    return {}


@pytest.fixture(scope="module", autouse=True)
def _same_threads():
    from fastconv import _dispatch

    if torch is not None:
        old = torch.get_num_threads()
        torch.set_num_threads(_dispatch.get_num_threads())
        yield
        torch.set_num_threads(old)
    else:
        yield


def _torch_backward(p: Problem):
    """Gradient-only PyTorch timing: backward through one recorded forward graph."""
    x0, w0, dy = p._torch_arrays("cl")
    x = x0.detach().clone().requires_grad_(True)
    w = None if w0 is None else w0.detach().clone().requires_grad_(True)
    inputs = (x,) if w is None else (x, w)
    y = p._torch_op()(x, w)
    return lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True)


def _id(name, batch):
    return f"{name.replace(' ', '_')}-b{batch}"


@pytest.mark.parametrize("impl", ["fastconv", "torch"])
@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("name,batch", SHAPES, ids=[_id(*s) for s in SHAPES])
def test_op(benchmark, problems, name, batch, pass_, impl):
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not importable")
    key = (name, batch)
    if key not in problems:
        problems[key] = Problem(_BY_NAME[name].with_batch(batch))
    p = problems[key]
    benchmark.group = f"{name} b{batch}: {p.case.label()}"
    benchmark.name = f"{pass_} {impl}"
    if impl == "fastconv":
        fn = p.np_forward(ops) if pass_ == "forward" else p.np_backward(ops)
        fwd, grad = p._np_ops(ops)
        benchmark.extra_info["module"] = (fwd if pass_ == "forward" else grad).__module__
    else:
        fn = p.torch_forward("cl") if pass_ == "forward" else _torch_backward(p)
    if p.case.flops:
        benchmark.extra_info["gflop"] = p.case.flops * (2 if pass_ == "backward" else 1) / 1e9
    benchmark(fn)
