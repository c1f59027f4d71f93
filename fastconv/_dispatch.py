"""Run-time choices for every kernel call: SIMD level and thread count.

- SIMD: the best level the CPU has, unless FASTCONV_SIMD=generic|avx2|avx512 (or set_simd) asks for
  another; asking for a level the CPU lacks falls back to the best it has, with a warning.  A
  FASTCONV_SIMD that names no level warns and is ignored (set_simd with such a name raises: the
  environment is read lazily inside some later op, where an error would not point at its cause).
- Threads: FASTCONV_NUM_THREADS, else OMP_NUM_THREADS, else all cores; set_num_threads overrides.
  A variable that is not a positive integer (0, -1, "abc") warns and is ignored.
  Calls too small to pay for waking a second thread run on one.
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings

from fastconv._kernels import runtime as _rt

LEVELS = {"generic": 0, "avx2": 1, "avx512": 2}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}
_MIN_WORK_PER_THREAD = 200_000  # multiply-adds below which a second thread costs more than it saves
# bytes read and written below which a memory-bound call (pooling) runs on one thread: a sleeping
# OpenMP thread wakes 20-90 us late on the 2-core VM, most of what a second thread saves on
# ~0.1-0.2 ms of work (32x28x28x32 2x2 pools, 4 MB: 1 thread 0.15-0.19 ms of CPU, 2 threads
# 0.27-0.41 ms wall in bench_ops)
_MIN_BYTES_PER_THREAD = 4 << 20

_state = {"isa": None, "threads": None, "algo": None, "algo_env": None}
last_used: dict[str, str] = {}  # op name -> SIMD level name of the last call (tests assert on it)
# op name -> kernel variant of the last call's main pass (tests assert on it): conv "rowk" / "rowseg" /
# "tiles" / "narrow" / "grouped" / "winograd4" / "winograd2" (conv2d_grad's weight gradient under
# "conv2d_grad:weight": "tiles" / "planar" / "grouped" / "winograd4" / "winograd2"); depthwise "vector" /
# "multiplier" / "scalar"; pooling "window" (forward),
# "fused" / "gather" / "argmax" (backward), "global"; norm "stats+affine", "affine", "dsums+dx", "dsums",
# "dx" (+ "+relu" / "+relu6"), relu / relu6 "kernel" / "numpy"; activation / activation_grad: the
# activation's name, softmax / softmax_grad "softmax"; conv2d_epilogue: where conv2d applied its
# activation ("register" relu, "tile" after each tile, "pass" after the narrow kernel, "none")
last_kernel: dict[str, str] = {}


def cpu_level() -> int:
    return _rt.cpu_isa()


def set_simd(name: str | None) -> str:
    """Force a SIMD level ('generic', 'avx2', 'avx512'); None returns to the default. Returns the level used."""
    if name is None:
        _state["isa"] = None
        return LEVEL_NAMES[simd_level()]
    key = str(name).lower()
    if key not in LEVELS:
        raise ValueError(f"SIMD level must be one of {sorted(LEVELS)}. Received: {name!r}")
    want, have = LEVELS[key], cpu_level()
    if want > have:
        warnings.warn(f"fastconv: this CPU has no {key} support; using {LEVEL_NAMES[have]} instead",
                      RuntimeWarning, stacklevel=2)
        want = have
    _state["isa"] = want
    return LEVEL_NAMES[want]


def simd_level() -> int:
    if _state["isa"] is None:
        env = os.environ.get("FASTCONV_SIMD", "").strip()
        if env and env.lower() not in LEVELS:
            warnings.warn(f"fastconv: ignoring FASTCONV_SIMD={env!r}: it must be one of {sorted(LEVELS)}; "
                          f"using {LEVEL_NAMES[cpu_level()]}, the best level this CPU has",
                          RuntimeWarning, stacklevel=3)
            env = ""
        if env:
            set_simd(env)
        else:
            _state["isa"] = cpu_level()
    return _state["isa"]


def record(op: str, isa: int) -> None:
    last_used[op] = LEVEL_NAMES[isa]


def level_for(op: str, dtype) -> int:
    """SIMD level for a call of `op` on `dtype` (float64 runs the generic path), recorded for tests."""
    isa = simd_level() if dtype.itemsize == 4 else 0
    record(op, isa)
    return isa


def _env_threads() -> int | None:
    for var in ("FASTCONV_NUM_THREADS", "OMP_NUM_THREADS"):
        val = os.environ.get(var, "").strip()
        if val:
            try:
                n = int(val.split(",")[0])  # OMP_NUM_THREADS may list one count per nesting level
            except ValueError:
                n = 0
            if n >= 1:
                return n
            warnings.warn(f"fastconv: ignoring {var}={val!r} (not a positive integer)", RuntimeWarning,
                          stacklevel=3)
    return None


def set_num_threads(n: int) -> None:
    """Threads every kernel may use (default: all cores)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int. Received: n={n!r}")
    _state["threads"] = n


_local = threading.local()  # .threads: this Python thread's own limit (limit_threads), else unset


@contextlib.contextmanager
def limit_threads(n: int):
    """Kernels called from this Python thread use at most ``n`` threads while the context is open
    (predict's concurrent parts: one per Python thread, each kernel on one)."""
    old = getattr(_local, "threads", None)
    _local.threads = int(n)
    try:
        yield
    finally:
        _local.threads = old


def get_num_threads() -> int:
    mine = getattr(_local, "threads", None)
    if mine is not None:
        return mine
    if _state["threads"] is None:
        _state["threads"] = _env_threads() or _rt.num_procs()
    return _state["threads"]


def _threads_for(amount: float, per_thread: float) -> int:
    """Threads for a call of `amount` units, at least `per_thread` of them a thread (1 when too small)."""
    if not _rt.have_openmp():
        return 1
    return max(1, min(get_num_threads(), int(amount // per_thread) or 1))


def threads_for(work: float) -> int:
    """Threads for a call doing `work` multiply-adds (1 when too small to split)."""
    return _threads_for(work, _MIN_WORK_PER_THREAD)


def threads_for_bytes(nbytes: float) -> int:
    """Threads for a memory-bound call moving `nbytes` (1 when too small to split)."""
    return _threads_for(nbytes, _MIN_BYTES_PER_THREAD)


# ---- convolution algorithm: FASTCONV_CONV_ALGO or set_conv_algo ----
# "auto": Winograd where ops/_plan.py conv_algo's rule says it beats the direct kernel, else direct;
# "direct": never Winograd; "winograd": Winograd on every eligible conv (3x3, stride 1, any dilation,
# groups 1, epilogue none or ReLU), the tile by map size; "winograd4" / "winograd2": that tile.
CONV_ALGOS = ("auto", "direct", "winograd", "winograd4", "winograd2")


def set_conv_algo(name: str | None) -> str:
    """Force the 3x3 convolution algorithm (one of CONV_ALGOS); None returns to FASTCONV_CONV_ALGO,
    else "auto".  Returns the setting now in force.  Ineligible convs always run direct.

    FASTCONV_CONV_ALGO is read once (every conv call asks) and kept: after changing it in a running
    process (a test's monkeypatch.setenv), call ``set_conv_algo(None)`` to read it again."""
    if name is None:
        _state["algo"] = None
        _state["algo_env"] = None
        return get_conv_algo()
    key = str(name).lower()
    if key not in CONV_ALGOS:
        raise ValueError(f"conv algorithm must be one of {list(CONV_ALGOS)}. Received: {name!r}")
    _state["algo"] = key
    return key


def get_conv_algo() -> str:
    """The 3x3 convolution algorithm setting in force (set_conv_algo, else FASTCONV_CONV_ALGO, else "auto")."""
    algo = _state["algo"]
    if algo is not None:
        return algo
    algo = _state.get("algo_env")
    if algo is None:  # read once; set_conv_algo(None) reads it again
        env = os.environ.get("FASTCONV_CONV_ALGO", "").strip().lower()
        if env and env not in CONV_ALGOS:
            warnings.warn(f"fastconv: ignoring FASTCONV_CONV_ALGO={env!r}: it must be one of {list(CONV_ALGOS)}; "
                          f"using 'auto'", RuntimeWarning, stacklevel=3)
            env = ""
        algo = _state["algo_env"] = env or "auto"
    return algo


# ---- the CPU the plans size their blocks for (docs/kernels.md, "Tiles per CPU") ----
# Read once from Linux's /proc/cpuinfo (vendor, family, model: what cpuid reports) and sysfs (cache
# sizes); where they cannot be read, DEFAULT_CPU (a 1 MiB L2, 32 MiB L3: the development host).
# set_cpu_info overrides it (tests, and a user sizing blocks for another machine).

class CpuInfo:
    """vendor ("AuthenticAMD", "GenuineIntel", ...), family and model (decimal, as cpuid gives
    them), and the data caches one core sees in bytes: l1d, l2 (private per core on every x86 CPU
    fastconv targets) and l3 (shared by the cores of one complex / die)."""

    __slots__ = ("family", "l1d", "l2", "l3", "model", "vendor")

    def __init__(self, vendor="", family=0, model=0, l1d=48 << 10, l2=1 << 20, l3=32 << 20):
        for name, value in (("l1d", l1d), ("l2", l2), ("l3", l3)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"CpuInfo: {name} must be a positive number of bytes. Received: {name}={value!r}")
        self.vendor, self.family, self.model = str(vendor), int(family), int(model)
        self.l1d, self.l2, self.l3 = l1d, l2, l3

    def __repr__(self):
        return (f"CpuInfo(vendor={self.vendor!r}, family={self.family}, model={self.model}, "
                f"l1d={self.l1d}, l2={self.l2}, l3={self.l3})")


DEFAULT_CPU = CpuInfo()


def _parse_size(text: str) -> int | None:
    """A sysfs cache size ("48K", "1024K", "32M") in bytes; None when it is not one."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in "KMG" else text
    return int(digits) * scale if digits.isdigit() and int(digits) > 0 else None


def read_cpu_info(root: str = "/") -> CpuInfo:
    """The CpuInfo of this machine (root: where proc/ and sys/ are, for tests); fields that cannot
    be read keep DEFAULT_CPU's values."""
    vendor, family, model = "", 0, 0
    try:
        with open(os.path.join(root, "proc/cpuinfo"), encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "vendor_id" and not vendor:
                    vendor = val
                elif key == "cpu family" and not family and val.isdigit():
                    family = int(val)
                elif key == "model" and not model and val.isdigit():
                    model = int(val)
                elif not line.strip() and vendor:
                    break  # the first processor's block is enough
    except OSError:
        pass
    sizes = {"l1d": DEFAULT_CPU.l1d, "l2": DEFAULT_CPU.l2, "l3": DEFAULT_CPU.l3}
    base = os.path.join(root, "sys/devices/system/cpu/cpu0/cache")
    try:
        entries = sorted(e for e in os.listdir(base) if e.startswith("index"))
    except OSError:
        entries = []
    for entry in entries:
        try:
            def field(name, entry=entry):
                with open(os.path.join(base, entry, name), encoding="utf-8") as f:
                    return f.read().strip()
            level, kind, size = field("level"), field("type"), _parse_size(field("size"))
        except OSError:
            continue
        if size is None or kind == "Instruction":
            continue
        key = {"1": "l1d", "2": "l2", "3": "l3"}.get(level)
        if key:
            sizes[key] = size
    return CpuInfo(vendor, family, model, **sizes)


def cpu_info() -> CpuInfo:
    """The CPU the plans size for: set_cpu_info's, else this machine's (read once)."""
    if _state.get("cpu") is None:
        _state["cpu"] = read_cpu_info()
    return _state["cpu"]


def set_cpu_info(info: CpuInfo | None) -> CpuInfo:
    """Size the plans for `info` (None: this machine again); returns the CpuInfo now in force.
    Plans built before the call keep their sizes: fastconv.ops._plan reads it when imported
    (call _plan.size_for_cpu() to redo the derived sizes)."""
    if info is not None and not isinstance(info, CpuInfo):
        raise TypeError(f"set_cpu_info: info must be a CpuInfo or None. Received: {type(info).__name__}")
    _state["cpu"] = info
    return cpu_info()
