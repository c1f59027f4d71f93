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


def _run_import(code, tmp_path, **env_changes):
    # the fastconv this process imported (an in-place build, or the installed one: run from a
    # folder of its own, so a source checkout's fastconv/ without a build cannot shadow it)
    here = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "FASTCONV_SPINCOUNT")}
    env["PYTHONPATH"] = here
    env.update(env_changes)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)


_SHOW_WAIT_ENV = ("import os, fastconv; "
                  "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))")


def test_wait_policy_is_fastconvs_own_and_the_environment_is_put_back(tmp_path):
    # the variables are set only while fastconv's OpenMP runtime loads: a library loading its own runtime
    # later (PyTorch) must see the environment the user had, not fastconv's choice
    r = _run_import(_SHOW_WAIT_ENV, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["None", "None"]
    r = _run_import(_SHOW_WAIT_ENV, tmp_path, FASTCONV_SPINCOUNT="5000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["None", "None"]


def test_users_wait_policy_is_kept(tmp_path):
    r = _run_import(_SHOW_WAIT_ENV, tmp_path, OMP_WAIT_POLICY="active")
    assert r.stdout.split() == ["active", "None"], r.stderr
    r = _run_import(_SHOW_WAIT_ENV, tmp_path, GOMP_SPINCOUNT="100")
    assert r.stdout.split() == ["None", "100"], r.stderr


def test_bad_spincount_warns_and_uses_the_default(tmp_path):
    r = _run_import(_SHOW_WAIT_ENV, tmp_path, FASTCONV_SPINCOUNT="-3")
    assert r.returncode == 0, r.stderr
    assert "FASTCONV_SPINCOUNT must be a non-negative integer" in r.stderr and "'-3'" in r.stderr
    assert r.stdout.split() == ["None", "None"]


def test_openmp_runtime_reads_fastconvs_wait_policy(tmp_path):
    # libgomp prints the settings it read at load with OMP_DISPLAY_ENV=verbose (on stderr)
    r = _run_import("import fastconv", tmp_path, OMP_DISPLAY_ENV="verbose", FASTCONV_SPINCOUNT="5000")
    assert r.returncode == 0, r.stderr
    if "OPENMP DISPLAY ENVIRONMENT" not in r.stderr:  # a serial build (FASTCONV_NO_OPENMP=1) has no runtime
        from fastconv._kernels import runtime
        assert not runtime.have_openmp()
        return
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in r.stderr
    assert "GOMP_SPINCOUNT = '5000'" in r.stderr
    r = _run_import("import fastconv", tmp_path, OMP_DISPLAY_ENV="verbose")
    assert "GOMP_SPINCOUNT = '0'" in r.stderr
