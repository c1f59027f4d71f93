"""What ``import fastconv`` gives a user: the model zoo is reachable as ``fastconv.models`` without
importing it by name (checked in a fresh interpreter, where no other test has imported it)."""

from __future__ import annotations

import os
import subprocess
import sys

import fastconv

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def test_models_reachable_after_import_fastconv():
    code = (
        "import fastconv\n"
        "m = fastconv.models.resnet_small()\n"
        "print(m.count_params(), 'models' in fastconv.__all__, sorted(fastconv.models.MODELS)[0])\n"
    )
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=os.sep
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["78426", "True", "alexnet_small"]
