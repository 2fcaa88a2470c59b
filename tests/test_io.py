"""Atomic writes: the renamed file gets the permissions a plain open() would give, not mkstemp's private 0600."""
import os
import stat

import pytest
import torch

from selfmae.io import atomic_torch_save, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_follow_the_umask(tmp_path, umask_022):
    assert _mode(atomic_write_text(tmp_path / "run.json", "{}")) == 0o644
    assert _mode(atomic_torch_save({"w": torch.zeros(1)}, tmp_path / "last.pt")) == 0o644
    os.umask(0o077)
    assert _mode(atomic_write_text(tmp_path / "private.json", "{}")) == 0o600


def test_a_rewritten_file_keeps_its_own_mode(tmp_path, umask_022):
    path = tmp_path / "metrics.csv"
    path.write_text("old")
    path.chmod(0o664)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o664
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary file left behind
