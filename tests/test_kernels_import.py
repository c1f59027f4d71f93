"""fastconv._kernels fails loudly, with the remedy, when its own compiled modules are missing
(it used to borrow another installed copy's, which could be stale)."""
import os
import shutil
import subprocess
import sys

import fastconv


def test_missing_compiled_modules_fail_loudly_with_the_remedy(tmp_path):
    src = os.path.dirname(os.path.abspath(fastconv.__file__))
    shutil.copytree(src, tmp_path / "fastconv",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "data"))
    r = subprocess.run([sys.executable, "-c", "import fastconv"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert r.returncode != 0
    assert "compiled kernels are missing" in r.stderr and "pip install ." in r.stderr
    assert str(tmp_path / "fastconv" / "_kernels") in r.stderr
