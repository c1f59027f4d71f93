"""Build fastconv's compiled kernels (Cython + OpenMP, one build for every x86-64 / aarch64 CPU).

- OpenMP is found by compiling a tiny test program; without it the kernels build serially and a
  loud warning says so.
- No -march=native: the SIMD variants are compiled with per-function target attributes and picked
  at run time (src/conv_kernels.h), so the same wheel runs on any x86-64.
- FASTCONV_DEBUG=1 turns Cython's bounds checks on (for tests of the kernels themselves).
- FASTCONV_EXTENSIONS=conv,pool builds only those modules (development convenience).
- FASTCONV_NO_OPENMP=1 builds serial kernels without probing for OpenMP (scripts/check_serial.sh).
- Build time (see the README's "Install time"): the modules compile in parallel (build_ext -j defaults
  to every core, biggest module first), with -g0 (CPython's CFLAGS carry -g, ~20% of the compile's
  CPU; the machine code is the same), and Cython regenerates a module's C only when a content stamp of its inputs changes
  (the .pyx, src/*.pxd, Cython's version, the directives), so a second `pip install .` in the same
  tree reuses build/ instead of compiling everything again (a fresh isolated build env gives Cython's
  own .pxd files new mtimes, which made Cython's timestamp check regenerate every time).  A change
  of compile flags (FASTCONV_NO_OPENMP, ...) is stamped too and forces a rebuild.
- MSVC gets its own flags (/O2 /openmp); gcc/clang get -O3 -std=gnu11 -fno-math-errno.  The kernels
  themselves are GCC C (vector extensions): on Windows FASTCONV_COMPILER=mingw32 picks MinGW-w64 gcc.
- FASTCONV_SANITIZE=1 builds the kernels with AddressSanitizer + UndefinedBehaviorSanitizer
  (-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1, and -fno-wrapv to cancel the
  -fwrapv in CPython's CFLAGS so signed overflow is reported).  Build it into its own directory so
  the normal in-place build is untouched, and run it with the sanitizer runtime preloaded;
  scripts/sanitize.sh does both (build + pytest), see the README's "Sanitizer build":
      FASTCONV_SANITIZE=1 python setup.py build_ext --build-lib build/sanitize/lib --build-temp build/sanitize/temp
"""
import glob
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODULES = ["runtime", "conv", "depthwise", "pool", "norm", "winograd", "elementwise"]
MODULES += ["optim", "buffers"]  # the compiled optimizer step (src/optim.pyx), buffer reuse (src/buffers.pyx)


def _serial_warning(reason):
    warnings.warn(
        f"\n\n*** fastconv: {reason}; building SERIAL kernels. ***\n"
        "*** Install a compiler with OpenMP (gcc, or clang + libomp) for multi-core speed. ***\n",
        stacklevel=2,
    )


def openmp_flags(compiler_type="unix"):
    """Compile and link flags for OpenMP, or ([], []) when the compiler has none (or
    FASTCONV_NO_OPENMP=1 asks for a serial build)."""
    if os.environ.get("FASTCONV_NO_OPENMP", "0") not in ("", "0"):
        print("fastconv: FASTCONV_NO_OPENMP is set: building SERIAL kernels (no OpenMP).", file=sys.stderr)
        return [], []
    if compiler_type == "msvc":
        return ["/openmp"], []
    cc = os.environ.get("CC") or ("gcc" if compiler_type == "mingw32" else sysconfig.get_config_var("CC")) or "cc"
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
    _serial_warning("the C compiler has no OpenMP support")
    return [], []


def compile_flags(compiler_type, debug=False, sanitize=False):
    """(compile args, link args) for one compiler family; pure apart from the OpenMP probe."""
    omp_compile, omp_link = openmp_flags(compiler_type)
    if compiler_type == "msvc":
        return ["/O2"] + omp_compile, list(omp_link)
    # -g0 last among the debug options: CPython's CFLAGS say -g (~20% of the compile's CPU).
    compile_args = ["-O3", "-std=gnu11", "-fno-math-errno", "-Wno-unused-function"] + omp_compile
    compile_args += ["-g"] if debug else ["-g0"]
    link_args = list(omp_link)
    if sanitize:
        # These come after sysconfig's CFLAGS on the command line, so -O1 and -fno-wrapv win over
        # CPython's -O3 -fwrapv (with -fwrapv signed overflow is defined and UBSan can't see it).
        # UBSan checks stay recoverable here; scripts/sanitize.sh makes the first report fatal
        # with UBSAN_OPTIONS=halt_on_error=1 (or collects them all with --keep-going).
        sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        compile_args += sanitizers + ["-O1", "-fno-wrapv"]
        link_args += sanitizers
    return compile_args, link_args


def directives(debug):
    return {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": False,
        "cdivision": True,
        "initializedcheck": debug,
        "nonecheck": False,
    }


def cython_stamp(pyx, pxds, cython_version, directive_map):
    """Content stamp of what Cython's output for one .pyx depends on: its text, every src/*.pxd it
    may cimport, Cython's version and the directives.  Equal stamps mean the generated C is the same."""
    h = hashlib.sha256()
    h.update(json.dumps([cython_version, sorted(directive_map.items())]).encode())
    for path in [pyx] + sorted(pxds):
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(fh.read())
        h.update(b"\0")
    return h.hexdigest()


def drop_header_copies(build_dir):
    """Delete C headers under build_dir. Cython copies a module's `depends` there when given them
    (an older setup.py did; this one gives none), and the compiler finds a copy beside the C file
    before src/ on the include path: a stale copy then compiled instead of the edited header (seen:
    a sanitizer build failing on a struct field the real header had). Without copies, -Isrc finds
    the headers in src/ and the extensions' `depends` recompile on any header edit."""
    for path in glob.glob(os.path.join(build_dir, "**", "*.h"), recursive=True):
        os.remove(path)


def plan_cythonize(pyx_files, stamps, build_dir, pxds, cython_version, directive_map):
    """Which .pyx files need Cython: ({pyx: new stamp} for those whose stamp changed or whose C file
    is missing, {pyx: its C file under build_dir} for all).  Pure apart from os.path.exists."""
    todo, c_files = {}, {}
    for pyx in pyx_files:
        c_files[pyx] = os.path.join(build_dir, os.path.splitext(pyx)[0] + ".c")
        stamp = cython_stamp(pyx, pxds, cython_version, directive_map)
        if stamps.get(pyx) != stamp or not os.path.exists(c_files[pyx]):
            todo[pyx] = stamp
    return todo, c_files


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


class BuildExt(build_ext):
    """build_ext that cythonizes by content stamp, compiles in parallel and picks flags per compiler."""

    def initialize_options(self):
        super().initialize_options()
        # FASTCONV_COMPILER=mingw32: MinGW-w64 gcc on Windows (the kernels need GCC; MSVC cannot build them)
        self.compiler = os.environ.get("FASTCONV_COMPILER") or None

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # `-j N` on the command line wins
            jobs = os.environ.get("FASTCONV_BUILD_JOBS") or os.cpu_count() or 1
            self.parallel = max(1, int(jobs))

    def build_extensions(self):
        debug = os.environ.get("FASTCONV_DEBUG") == "1"
        sanitize = os.environ.get("FASTCONV_SANITIZE") == "1"
        self._cythonize(debug, sanitize)
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            warnings.warn("fastconv: MSVC cannot compile the kernels' GCC vector extensions; build with "
                          "MinGW-w64 gcc (FASTCONV_COMPILER=mingw32) or install a binary wheel", stacklevel=1)
        compile_args, link_args = compile_flags(ctype, debug=debug, sanitize=sanitize)
        for ext in self.extensions:
            ext.extra_compile_args = list(compile_args)
            ext.extra_link_args = list(link_args)
        # Flags differ from the last build in this build dir (serial <-> OpenMP, ...): rebuild all.
        flag_stamp = os.path.join(self.build_temp, "fastconv-flags.json")
        flags = {"compiler": ctype, "compile": compile_args, "link": link_args,
                 "cc": os.environ.get("CC", ""), "cflags": os.environ.get("CFLAGS", "")}
        if _read_json(flag_stamp) != flags:
            self.force = True
        # Biggest generated C first, so the longest compile is never started last.
        self.extensions.sort(key=lambda e: -sum(os.path.getsize(s) for s in e.sources if os.path.exists(s)))
        print(f"fastconv: {len(self.extensions)} kernel modules, {self.parallel} parallel jobs "
              f"({'all rebuilt: flags changed' if self.force else 'up-to-date ones skipped'})", file=sys.stderr)
        super().build_extensions()
        _write_json(flag_stamp, flags)

    def _cythonize(self, debug, sanitize):
        from Cython import __version__ as cython_version
        from Cython.Build import cythonize

        build_dir = os.path.join("build", "cython" + ("-debug" if debug else "") + ("-sanitize" if sanitize else ""))
        drop_header_copies(build_dir)
        stamp_path = os.path.join(build_dir, "fastconv-stamps.json")
        stamps = _read_json(stamp_path)
        dirs = directives(debug)
        pyx_files = [s for ext in self.extensions for s in ext.sources if s.endswith(".pyx")]
        todo, c_files = plan_cythonize(pyx_files, stamps, build_dir, glob.glob(os.path.join("src", "*.pxd")),
                                       cython_version, dirs)
        for ext in self.extensions:
            ext.sources = [c_files.get(s, s) for s in ext.sources]
        todo = [(ext, p, st) for ext in self.extensions for p, st in todo.items() if c_files[p] in ext.sources]
        if todo:
            cythonize([Extension(e.name, [p]) for e, p, _ in todo], compiler_directives=dirs,
                      include_path=["src"], build_dir=build_dir, quiet=True, force=True,
                      nthreads=min(len(todo), self.parallel or 1) if sys.platform != "win32" else 0)
            for _, p, st in todo:
                stamps[p] = st
            _write_json(stamp_path, stamps)


def extensions():
    wanted = os.environ.get("FASTCONV_EXTENSIONS")
    names = [m for m in MODULES if not wanted or m in wanted.split(",")]
    names = [m for m in names if os.path.exists(os.path.join("src", m + ".pyx"))]
    return [
        Extension(
            f"fastconv._kernels.{name}",
            [os.path.join("src", name + ".pyx")],
            include_dirs=["src"],
            depends=sorted(glob.glob(os.path.join("src", "*.h")) + glob.glob(os.path.join("src", "*.pxd"))),
        )
        for name in names
    ]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
