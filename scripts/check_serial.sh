#!/usr/bin/env bash
# Build the kernels SERIAL (FASTCONV_NO_OPENMP=1, what a compiler without OpenMP gives) and run the
# kernel tests against that build.
#
#   scripts/check_serial.sh                       # the four kernel families' test files
#   scripts/check_serial.sh tests/test_pool.py -k max   # your own selection / pytest options
#   scripts/check_serial.sh --no-build ...        # reuse the last serial build
#
# How: setup.py with FASTCONV_NO_OPENMP=1 compiles into build/serial/ (the in-place build in
# fastconv/_kernels is not touched); the fastconv/ Python tree plus those .so files are staged in
# build/serial/site and pytest runs from there.  Before any test, the script refuses to go on unless
# the staged copy is what imports and it reports no OpenMP (a pass on the OpenMP build would prove
# nothing about the serial one).
# PYTHON=... chooses the interpreter (default: python); it needs Cython, setuptools>=77, numpy, pytest.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
build=1
if [ "${1:-}" = "--no-build" ]; then build=0; shift; fi
out=$repo/build/serial
site=$out/site
cd "$repo"

if [ $build = 1 ]; then
    echo "== serial build (FASTCONV_NO_OPENMP=1) into $out"
    start=$SECONDS
    mkdir -p "$out"
    if ! FASTCONV_NO_OPENMP=1 "$PYTHON" setup.py -q build_ext --build-lib "$out/lib" --build-temp "$out/temp" \
            >"$out/build.log" 2>&1; then
        tail -n 40 "$out/build.log" >&2
        echo "serial build failed (full log: $out/build.log)" >&2
        exit 2
    fi
    echo "   built in $((SECONDS - start)) s (compiler output: $out/build.log)"
fi
ls "$out"/lib/fastconv/_kernels/*.so >/dev/null 2>&1 || { echo "no serial build in $out/lib (drop --no-build)" >&2; exit 2; }
if grep -q -- "-fopenmp" "$out/build.log" 2>/dev/null; then
    echo "the serial build log shows -fopenmp: FASTCONV_NO_OPENMP was not honoured" >&2
    exit 2
fi

rm -rf "$site"
mkdir -p "$site"
cp -r fastconv "$site/fastconv"
find "$site/fastconv" \( -name '*.so' -o -name '*.pyd' -o -name __pycache__ \) -prune -exec rm -rf {} +
cp "$out"/lib/fastconv/_kernels/*.so "$site/fastconv/_kernels/"

export PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1
cd "$site"   # -m pytest puts the cwd first on sys.path: the staged copy, never the source tree
"$PYTHON" - "$site" <<'EOF'
import os, sys
site = os.path.realpath(sys.argv[1])
import fastconv
from fastconv._kernels import runtime
where = os.path.realpath(fastconv.__file__)
if not where.startswith(site + os.sep):
    sys.exit(f"fastconv was imported from {where}, not from the serial copy in {site}")
if runtime.have_openmp():
    sys.exit("the staged build reports OpenMP: it is not a serial build")
print(f"== serial build in use: {where} (have_openmp() is False)")
EOF

args=()
selected=0
for a in "$@"; do
    if [ "${a#-}" = "$a" ] && [ -e "$repo/${a%%::*}" ]; then a=$repo/$a selected=1; fi
    args+=("$a")
done
if [ $selected = 0 ]; then
    for f in tests/test_conv.py tests/test_depthwise.py tests/test_pool.py tests/test_norm.py tests/test_kernels_import.py; do
        [ -e "$repo/$f" ] && args+=("$repo/$f")
    done
fi
echo "== pytest on the serial build"
exec "$PYTHON" -m pytest -c "$repo/pyproject.toml" --rootdir "$repo" -p no:cacheprovider "${args[@]}"
