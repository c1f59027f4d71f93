#!/usr/bin/env python
"""Draw the worked examples' pictures for the docs: short runs of the programs in examples/.

    PYTHONPATH=. python docs/make_pictures.py [--only NAME] [--full]

Each picture is what the program itself draws (its ``--out``), written to ``docs/examples/<name>.png``
where ``docs/conf.py`` finds it. The runs are shortened (``--limit`` / ``--epochs``, listed in
PICTURES) so all of them take a few minutes on 2 cores; ``--full`` runs the programs' defaults.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# program -> the shortening arguments (besides --out)
PICTURES = {
    "edge_filters": [],
    "feature_maps": ["--epochs", "1", "--limit", "4000"],
    "resnet_vs_plain": ["--epochs", "3", "--limit", "3000"],
}


def command(name: str, out: Path, full: bool = False) -> list[str]:
    """The command line that draws example `name` into `out`."""
    if name not in PICTURES:
        raise ValueError(f"no picture is drawn by {name!r}; known: {sorted(PICTURES)}")
    return [
        sys.executable,
        str(ROOT / "examples" / f"{name}.py"),
        *([] if full else PICTURES[name]),
        "--out",
        str(out),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(PICTURES), default=None)
    ap.add_argument("--full", action="store_true", help="the programs' default lengths")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    (DOCS / "examples").mkdir(exist_ok=True)
    for name in PICTURES if args.only is None else [args.only]:
        out = DOCS / "examples" / f"{name}.png"
        tmp = out.with_name(f".{name}.tmp{os.getpid()}.png")
        t0 = time.perf_counter()
        subprocess.run(command(name, tmp, args.full), check=True, env=env, cwd=ROOT)
        os.replace(tmp, out)
        print(f"wrote {out.relative_to(ROOT)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
