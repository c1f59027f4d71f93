"""Build fastconv's compiled kernels (Cython + OpenMP, one build for every x86-64 / aarch64 CPU).

- OpenMP is found by compiling a tiny test program; without it the kernels build serially and a
  loud warning says so.
- No -march=native: the SIMD variants are compiled with per-function target attributes and picked
  at run time (src/conv_kernels.h), so the same wheel runs on any x86-64.
- FASTCONV_DEBUG=1 turns Cython's bounds checks on (for tests of the kernels themselves).
- FASTCONV_EXTENSIONS=conv,pool builds only those modules (development convenience).
- FASTCONV_SANITIZE=1 builds the kernels with AddressSanitizer + UndefinedBehaviorSanitizer
  (-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1, and -fno-wrapv to cancel the
  -fwrapv in CPython's CFLAGS so signed overflow is reported).  Build it into its own directory so
  the normal in-place build is untouched, and run it with the sanitizer runtime preloaded;
  scripts/sanitize.sh does both (build + pytest), see the README's "Sanitizer build":
      FASTCONV_SANITIZE=1 python setup.py build_ext --build-lib build/sanitize/lib --build-temp build/sanitize/temp
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

MODULES = ["runtime", "conv", "depthwise", "pool", "norm", "winograd", "elementwise"]


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
    sanitize = os.environ.get("FASTCONV_SANITIZE") == "1"
    wanted = os.environ.get("FASTCONV_EXTENSIONS")
    names = [m for m in MODULES if not wanted or m in wanted.split(",")]
    names = [m for m in names if os.path.exists(os.path.join("src", m + ".pyx"))]
    omp_compile, omp_link = openmp_flags()
    compile_args = ["-O3", "-std=gnu11", "-fno-math-errno", "-Wno-unused-function"] + omp_compile
    link_args = list(omp_link)
    if sanitize:
        # These come after sysconfig's CFLAGS on the command line, so -O1 and -fno-wrapv win over
        # CPython's -O3 -fwrapv (with -fwrapv signed overflow is defined and UBSan can't see it).
        # UBSan checks stay recoverable here; scripts/sanitize.sh makes the first report fatal
        # with UBSAN_OPTIONS=halt_on_error=1 (or collects them all with --keep-going).
        sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        compile_args += sanitizers + ["-O1", "-fno-wrapv"]
        link_args += sanitizers
    exts = [
        Extension(
            f"fastconv._kernels.{name}",
            [os.path.join("src", name + ".pyx")],
            include_dirs=["src"],
            depends=sorted(glob.glob(os.path.join("src", "*.h")) + glob.glob(os.path.join("src", "*.pxd"))),
            extra_compile_args=compile_args,
            extra_link_args=link_args,
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
                     build_dir=os.path.join("build", "cython" + ("-debug" if debug else "") + ("-sanitize" if sanitize else "")),
                     quiet=True)


setup(ext_modules=extensions())
