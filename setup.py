"""Build fastconv's compiled kernels (Cython + OpenMP, one build for every x86-64 / aarch64 CPU).

- OpenMP is found by compiling a tiny test program; without it the kernels build serially and a
  loud warning says so.
- No -march=native: the SIMD variants are compiled with per-function target attributes and picked
  at run time (src/conv_kernels.h), so the same wheel runs on any x86-64.
- FASTCONV_DEBUG=1 turns Cython's bounds checks on (for tests of the kernels themselves).
- FASTCONV_EXTENSIONS=conv,pool builds only those modules (development convenience).
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

from setuptools import Extension, setup

MODULES = ["runtime", "conv", "depthwise", "pool", "norm"]


def openmp_flags():
    """Compile and link flags for OpenMP, or ([], []) when the compiler has none."""
    if os.environ.get("FASTCONV_NO_OPENMP"):
        return [], []
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    code = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel reduction(+:n)\nn+=1;\nreturn n>0?0:1;}\n"
    candidates = [["-fopenmp"], ["-Xpreprocessor", "-fopenmp", "-lomp"]]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as fh:
            fh.write(code)
        for flags in candidates:
            try:
                res = subprocess.run(cc + flags + [src, "-o", os.path.join(tmp, "t")],
                                     capture_output=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if res.returncode == 0:
                link = [f for f in flags if f != "-Xpreprocessor"]
                return [f for f in flags if f != "-lomp"], link
    warnings.warn(
        "\n\n*** fastconv: the C compiler has no OpenMP support; building SERIAL kernels. ***\n"
        "*** Install a compiler with OpenMP (gcc, or clang + libomp) for multi-core speed. ***\n",
        stacklevel=1,
    )
    return [], []


def extensions():
    from Cython.Build import cythonize

    debug = os.environ.get("FASTCONV_DEBUG") == "1"
    wanted = os.environ.get("FASTCONV_EXTENSIONS")
    names = [m for m in MODULES if not wanted or m in wanted.split(",")]
    names = [m for m in names if os.path.exists(os.path.join("src", m + ".pyx"))]
    omp_compile, omp_link = openmp_flags()
    compile_args = ["-O3", "-std=gnu11", "-fno-math-errno", "-Wno-unused-function"] + omp_compile
    exts = [
        Extension(
            f"fastconv._kernels.{name}",
            [os.path.join("src", name + ".pyx")],
            include_dirs=["src"],
            depends=sorted(glob.glob(os.path.join("src", "*.h")) + glob.glob(os.path.join("src", "*.pxd"))),
            extra_compile_args=compile_args,
            extra_link_args=omp_link,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for name in names
    ]
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": False,
        "cdivision": True,
        "initializedcheck": debug,
        "nonecheck": False,
    }
    return cythonize(exts, compiler_directives=directives, include_path=["src"],
                     build_dir=os.path.join("build", "cython-debug" if debug else "cython"), quiet=True)


setup(ext_modules=extensions())
