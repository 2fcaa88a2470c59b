"""Two CPU processes (torchrun, gloo) at batch B follow the same curve as one process at batch 2B.

The classification stand-in has no randomness of its own, so with the same global batches (DistributedSampler
shards one seeded permutation) the only difference is float summation order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfmae.train import ClassificationTask, fit

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_ddp import run
run(json.loads(sys.argv[1]), sys.argv[2])
"""


def run(cfg: dict, out: str):
    """The same run in one process or under torchrun (imported by the torchrun workers)."""
    from test_engine import cls_data, tiny_classifier
    torch.manual_seed(5)
    model = tiny_classifier()
    return fit(model, ClassificationTask(3), cls_data(32, 0), cls_data(16, 1), cfg, out)


def test_two_gloo_processes_match_one_process(tmp_path):
    from test_engine import base_cfg, read_csv
    cfg = base_cfg(epochs=2, batch_size=8, accum_steps=1, lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run(cfg, str(tmp_path / "one"))
    finally:
        torch.set_num_threads(threads)
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SELFMAE_PROGRESS": "0"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), json.dumps({**cfg, "batch_size": 4}), str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = read_csv(tmp_path / "two" / "metrics.csv")
    assert len(two) == len(one.history) == 2
    for a, b in zip(one.history, two):
        assert int(b["step"]) == a["step"] == 4 * int(b["epoch"])     # 32 samples / global batch 8
        for key in ("train_loss", "val_loss", "mAUC", "lr"):
            assert float(b[key]) == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    done = json.loads((tmp_path / "two" / "done.json").read_text())
    assert done["config"]["train"]["batch_size"] == 4
    # only rank 0 wrote files: one metrics.csv, no stray temp files
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        ["best.pt", "last.pt", "metrics.csv", "run_config.json", "done.json"])
