#!/usr/bin/env python
"""The machine's float32 FMA peak, measured now: the denominator of every "% of peak" in bench_ops.py.

    python bench/fma_peak.py [--threads N] [--cache FILE]

A short C program is written to a temporary directory, compiled with the system C compiler
(``cc -O2 -fopenmp`` plus ``-mavx512f`` or ``-mavx2 -mfma``, whichever this CPU's /proc/cpuinfo flags
allow), and run on 1 thread and on N threads (OpenMP).  Each thread runs 12 independent vector
accumulators through ``vfmadd`` in a loop (enough chains to hide a 4-5 cycle FMA latency on two
pipes); the loop does nothing else, so FLOPs / second is the core's FMA throughput, which no
convolution can beat.  It takes well under a second, so bench_ops.py measures it again in every run
(the machines are shared: the peak of the day is the fair denominator).  ``--cache FILE`` keeps results
per CPU model, SIMD width and thread count in a JSON file and reads them back instead of measuring.

Without a C compiler the fallback is NumPy's float32 matmul of a large square: that is a BLAS's
speed, not the FMA peak (usually 70-90 % of it), and it is labelled so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


C_SOURCE = r"""
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define STORE _mm512_storeu_ps
#define ISA "avx512f"
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define STORE _mm256_storeu_ps
#define ISA "avx2+fma"
#endif
#define CHAINS 12

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* iters FMAs on each of CHAINS independent accumulators; the sum is returned so nothing is dead. */
static float chains(long iters, float seed) {
    vec a = SET1(0.999999f), b = SET1(1e-7f * seed);
    vec c0 = SET1(seed), c1 = SET1(seed + 1), c2 = SET1(seed + 2), c3 = SET1(seed + 3);
    vec c4 = SET1(seed + 4), c5 = SET1(seed + 5), c6 = SET1(seed + 6), c7 = SET1(seed + 7);
    vec c8 = SET1(seed + 8), c9 = SET1(seed + 9), c10 = SET1(seed + 10), c11 = SET1(seed + 11);
    for (long i = 0; i < iters; i++) {
        c0 = FMA(c0, a, b); c1 = FMA(c1, a, b); c2 = FMA(c2, a, b); c3 = FMA(c3, a, b);
        c4 = FMA(c4, a, b); c5 = FMA(c5, a, b); c6 = FMA(c6, a, b); c7 = FMA(c7, a, b);
        c8 = FMA(c8, a, b); c9 = FMA(c9, a, b); c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);
    }
    vec s = ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7)));
    s = ADD(s, ADD(ADD(c8, c9), ADD(c10, c11)));
    float out[LANES];
    STORE(out, s);
    float r = 0;
    for (int i = 0; i < LANES; i++) r += out[i];
    return r;
}

/* usage: peak ITERS REPEATS; prints one line per thread count measured (1, then OMP's max if > 1). */
int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000000L;
    int repeats = argc > 2 ? atoi(argv[2]) : 3;
    int nmax = 1;
#ifdef _OPENMP
    nmax = omp_get_max_threads();
#endif
    volatile float sink = 0;
    for (int n = 1; n <= nmax; n = (n == nmax ? nmax + 1 : nmax)) {
        double best = 1e30;
        for (int r = 0; r < repeats; r++) {
            double t0 = now();
            float acc = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(n) reduction(+ : acc)
#endif
            acc += chains(iters, (float)r);
            double t = now() - t0;
            sink += acc;
            if (t < best) best = t;
        }
        double flops = 2.0 * LANES * CHAINS * (double)iters * n;
        printf("isa=%s threads=%d seconds=%.6f gflops=%.2f\n", ISA, n, best, flops / best / 1e9);
    }
    return sink == 12345.0f;
}
"""

_LINE = re.compile(r"isa=(\S+)\s+threads=(\d+)\s+seconds=([0-9.eE+-]+)\s+gflops=([0-9.eE+-]+)")


def parse_output(text: str) -> dict:
    """The C program's lines -> {"isa": str, "gflops": {threads: GFLOP/s}}; empty gflops when none."""
    out = {"isa": None, "gflops": {}}
    for line in text.splitlines():
        m = _LINE.search(line)
        if m:
            out["isa"] = m.group(1)
            out["gflops"][int(m.group(2))] = float(m.group(4))
    return out


def _cpuinfo() -> tuple[str, set]:
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def _isa_flags(flags: set) -> list[str] | None:
    if "avx512f" in flags:
        return ["-mavx512f", "-mfma"]
    if "avx2" in flags and "fma" in flags:
        return ["-mavx2", "-mfma"]
    return None


def measure_c(threads: int, iters: int = 4_000_000, repeats: int = 25) -> dict | None:
    """Compile and run the FMA loop; None when there is no compiler or no AVX2+FMA.

    Each thread count is timed `repeats` times (about 6 ms each) and the best is kept: on a shared
    machine another process holding a core for a moment lowers some samples, never raises one."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    _, flags = _cpuinfo()
    isa = _isa_flags(flags)
    if not cc or isa is None:
        return None
    with tempfile.TemporaryDirectory(prefix="fma_peak_") as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(C_SOURCE)
        cmd = [cc, "-O2", *isa, "-fopenmp", str(src), "-o", str(exe)]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:  # no OpenMP: one thread only
            cmd.remove("-fopenmp")
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                return None
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="spread")
        run = subprocess.run(
            [str(exe), str(iters), str(repeats)], capture_output=True, text=True, env=env, timeout=60, check=False
        )
    res = parse_output(run.stdout)
    if not res["gflops"]:
        return None
    res["method"] = f"FMA loop ({res['isa']}, 12 chains, {Path(cc).name} -O2 {' '.join(isa)})"
    return res


def measure_blas(threads: int, n: int = 2048) -> dict:
    """Fallback: NumPy float32 matmul (a BLAS's speed, not the FMA peak). Only `threads` is reported."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(3))
    return {
        "isa": "blas",
        "gflops": {threads: 2.0 * n**3 / best / 1e9},
        "method": f"NumPy float32 matmul {n}x{n} (BLAS speed, not the FMA peak)",
    }


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak(threads: int, cache: Path | None = None) -> dict:
    """{"cpu", "isa", "method", "gflops": {1: .., threads: ..}, "cached": bool}; cached per CPU model."""
    model, flags = _cpuinfo()
    key = f"{model} | {' '.join(_isa_flags(flags) or ['none'])} | threads={threads}"
    if cache is not None:
        try:
            stored = json.loads(cache.read_text()).get(key)
            if stored:
                stored["gflops"] = {int(k): v for k, v in stored["gflops"].items()}
                return {**stored, "cpu": model, "cached": True}
        except (OSError, ValueError):
            pass
    res = measure_c(threads) or measure_blas(threads)
    res.update(cpu=model, measured=time.strftime("%Y-%m-%d %H:%M"))
    if cache is not None:
        try:
            data = json.loads(cache.read_text()) if cache.exists() else {}
        except (OSError, ValueError):
            data = {}
        data[key] = {k: v for k, v in res.items() if k != "cpu"}
        try:
            cache.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        except OSError:
            pass
    return {**res, "cached": False}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cache", type=Path, default=None, help="JSON file to read a stored result from / add to")
    args = ap.parse_args(argv)
    res = peak(args.threads, args.cache)
    print(f"{res['cpu']}: {res['method']}" + (" [cached]" if res["cached"] else ""))
    for n, g in sorted(res["gflops"].items()):
        print(f"  {n} thread{'s' if n > 1 else ''}: {g:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
