"""show_config(): what this build of fastconv runs with."""
from __future__ import annotations

from fastconv import _dispatch
from fastconv._kernels import runtime as _rt

__version__ = "0.1.0"


def config() -> dict:
    """Build and run-time facts as a dict (what show_config prints)."""
    return {
        "version": __version__,
        "compiler": _rt.compiler(),
        "openmp": _rt.have_openmp(),
        "simd_cpu": _dispatch.LEVEL_NAMES[_dispatch.cpu_level()],
        "simd_in_use": _dispatch.LEVEL_NAMES[_dispatch.simd_level()],
        "threads": _dispatch.get_num_threads(),
        "cores": _rt.num_procs(),
    }


def show_config() -> str:
    """Print and return the version, compiler, OpenMP on/off, SIMD level in use and threads."""
    c = config()
    text = "\n".join([
        f"fastconv {c['version']}",
        f"  compiler     : {c['compiler']}",
        f"  OpenMP       : {'on' if c['openmp'] else 'off (serial build)'}",
        f"  SIMD in use  : {c['simd_in_use']} (CPU supports up to {c['simd_cpu']})",
        f"  threads      : {c['threads']} of {c['cores']} cores",
    ])
    print(text)
    return text
