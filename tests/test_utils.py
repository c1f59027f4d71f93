"""fastconv/utils.py: atomic_write (used by saving and BackupAndRestore) and to_categorical."""
import os

import numpy as np
import pytest

from fastconv.utils import atomic_write, to_categorical


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write(path, lambda f: f.write("old"), mode="w")
    os.chmod(path, 0o640)

    def broken(f):
        f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken, mode="w")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]  # no temporary left
    atomic_write(path, lambda f: f.write("new"), mode="w")
    assert path.read_text() == "new" and (os.stat(path).st_mode & 0o777) == 0o640  # permissions kept
    with pytest.raises(FileNotFoundError, match="Cannot save to .*does not exist"):
        atomic_write(tmp_path / "missing" / "f", lambda f: None, what="save to")


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([0, 2], 3), [[1, 0, 0], [0, 0, 1]])
