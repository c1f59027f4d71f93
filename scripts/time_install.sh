#!/usr/bin/env bash
# Time the README's install from source, old commit against new, in interleaved rounds.
#
#   scripts/time_install.sh [ROUNDS] [REV_A] [REV_B]     # defaults: 3 rounds, A = HEAD, B = main
#
# Each round, for A then B: the commit's files (git archive: no build/, no .so) in a new temp dir, a
# new virtual environment (not timed), then two timed commands in that dir:
#   1. pip install .            a first install from source (build deps, cythonize, compile, install)
#   2. pip install '.[test]'    the README's second quick-start line, after the first
# Output: one line per measurement (wall seconds, and CPU seconds = user + system of pip and all it
# ran: on a machine shared with other work the CPU figure moves less than the wall one), then the
# median of each column.  Wall time is what a user waits; the parallel compile cuts wall, not CPU.
# PYTHON=... chooses the interpreter for the venvs (default python3).  Needs the package index pip
# is configured with (the build dependencies are installed into pip's isolated build env each time).
set -euo pipefail
rounds=${1:-3}
rev_a=${2:-HEAD}
rev_b=${3:-main}
PYTHON=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fastconv-time-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
results=$work/results.txt
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# A=$rev_a ($(git -C "$repo" rev-parse --short "$rev_a"))  B=$rev_b ($(git -C "$repo" rev-parse --short "$rev_b"))"

timed() {  # prints "WALL CPU" seconds of "$@" (its output goes to the log); fails loudly if it fails
    local log=$1; shift
    /usr/bin/time -f "%e %U %S" -o "$log.time" "$@" >>"$log" 2>&1 || { echo "failed: $* (log: $log)" >&2; tail -n 30 "$log" >&2; exit 1; }
    awk '{printf "%.1f %.1f", $1, $2 + $3}' "$log.time"
}

for r in $(seq 1 "$rounds"); do
    for side in A B; do
        rev=$rev_a
        [ $side = B ] && rev=$rev_b
        dir=$work/$side-$r
        mkdir -p "$dir/src"
        git -C "$repo" archive "$rev" | tar -x -C "$dir/src"
        "$PYTHON" -m venv "$dir/venv"
        cd "$dir/src"
        first=$(timed "$dir/log" "$dir/venv/bin/pip" install .)
        second=$(timed "$dir/log" "$dir/venv/bin/pip" install '.[test]')
        cd "$work"
        set -- $first $second
        printf '%s round %d  pip install . %6.1f s wall %6.1f s cpu   then pip install .[test] %6.1f s wall %6.1f s cpu   (load %s)\n' \
            "$side" "$r" "$1" "$2" "$3" "$4" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$results"
        rm -rf "$dir"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
for side in A B; do
    col() { grep "^$side " "$results" | awk -v c="$1" '{print $c}' | median; }
    echo "median $side: pip install . $(col 7) s wall, $(col 10) s cpu; then pip install '.[test]' $(col 17) s wall, $(col 20) s cpu ($rounds rounds)"
done
