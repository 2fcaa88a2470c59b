"""selfmae.parallel: independent runs side by side in forked workers that share the parent's datasets."""
import os

import pytest
import torch

from selfmae.parallel import default_jobs, run_many, threads_per_run

CPU_CFG = {"train": {"device": "cpu", "precision": "fp32"}}


def fake_stage(cfg, out_dir, datasets=None):
    """Stands in for run_finetune: uses the shared datasets (a lambda: it cannot be pickled, only inherited)."""
    if cfg.get("fail"):
        raise RuntimeError(f"run in {out_dir} failed on purpose")
    return {"value": datasets["square"](cfg["x"]), "pid": os.getpid(), "threads": torch.get_num_threads(),
            "out_dir": str(out_dir)}


def test_runs_in_forked_workers_in_order_sharing_unpicklable_datasets(tmp_path):
    runs = [({"x": x, **CPU_CFG}, tmp_path / f"run{x}") for x in range(5)]
    seen = []
    results = run_many(fake_stage, runs, {"square": lambda x: x * x}, jobs=2, on_done=lambda i, r: seen.append(i))
    assert [r["value"] for r in results] == [0, 1, 4, 9, 16]
    assert [r["out_dir"] for r in results] == [str(d) for _, d in runs]
    assert seen == [0, 1, 2, 3, 4]
    assert os.getpid() not in {r["pid"] for r in results}
    assert {r["threads"] for r in results} == {threads_per_run()}  # one, or $OMP_NUM_THREADS


def test_one_job_runs_here_in_order(tmp_path):
    results = run_many(fake_stage, [({"x": 3}, tmp_path), ({"x": 4}, tmp_path)], {"square": lambda x: x * x}, jobs=1)
    assert [r["value"] for r in results] == [9, 16] and {r["pid"] for r in results} == {os.getpid()}
    assert run_many(fake_stage, [], None) == []


def test_a_failing_run_raises_its_error_in_the_parent(tmp_path):
    runs = [({"x": 1, **CPU_CFG}, tmp_path / "ok"), ({"x": 2, "fail": True, **CPU_CFG}, tmp_path / "bad")]
    with pytest.raises(RuntimeError, match="bad failed on purpose"):
        run_many(fake_stage, runs, {"square": lambda x: x * x}, jobs=2)


def test_default_jobs(monkeypatch):
    monkeypatch.delenv("SELFMAE_JOBS", raising=False)
    assert default_jobs(CPU_CFG, 1) == 1
    assert default_jobs(CPU_CFG, 100) == (os.cpu_count() or 1)
    monkeypatch.setenv("SELFMAE_JOBS", "1")
    assert default_jobs(CPU_CFG, 100) == 1
    monkeypatch.setenv("SELFMAE_JOBS", "3")
    assert default_jobs(CPU_CFG, 2) == 2
    monkeypatch.setenv("SELFMAE_JOBS", "two")
    with pytest.raises(ValueError, match="SELFMAE_JOBS='two'"):
        default_jobs(CPU_CFG, 4)


def test_one_thread_per_run_unless_omp_num_threads_says_otherwise(monkeypatch):
    """A run's numbers must not depend on the machine's core count: each run side by side gets one thread."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_run() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_run() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert threads_per_run() == 1
