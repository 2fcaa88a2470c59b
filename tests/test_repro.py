import random

import numpy as np
import torch

from selfmae.repro import run_metadata, seed_everything


def _draw():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seeded_draws_are_equal_and_seed_recorded():
    rec = seed_everything(123)
    a = _draw()
    assert rec == {"seed": 123, "deterministic": True}
    seed_everything(123)
    assert _draw() == a
    seed_everything(124)
    assert _draw() != a


def test_run_metadata_fields():
    meta = run_metadata()
    assert {"commit", "date", "hardware", "packages"} <= set(meta)
    assert meta["torch_threads"] == torch.get_num_threads()  # numbers depend on it (CPU reductions)


def test_commit_is_dirty_for_code_changes_not_for_rewritten_outputs(tmp_path, monkeypatch):
    import subprocess

    import selfmae.repro as repro

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.csv").write_text("a\n1\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(repro, "REPO_ROOT", tmp_path)
    clean = repro.git_commit()
    assert len(clean) == 40 and "dirty" not in clean
    (tmp_path / "tables" / "t.csv").write_text("a\n2\n")  # a run rewrote a committed table: still clean
    assert repro.git_commit() == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert repro.git_commit() == clean + "+dirty"
