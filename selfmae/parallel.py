"""Independent runs (seeds, methods, grid points) side by side on a multi-core CPU.

Why: the tiny models are too small to keep two cores busy from one process (small matmuls, Python overhead);
two processes with one thread each train ~1.3-1.6x more steps per second than one process with two threads
(benchmarks/parallel_runs.py). On a GPU, or with one core, runs go one after another in this process.

Workers are forked, so they share the parent's cached datasets without copying or pickling them, and each
run seeds itself (`run_training`), so its numbers do not depend on which worker ran it or when. A failing run
re-raises its exception here, with the child's traceback attached.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

_SHARED: dict[str, Any] = {}  # what forked workers inherit: the stage and the cached datasets


def default_jobs(cfg: Mapping, n_runs: int) -> int:
    """How many runs at once: $SELFMAE_JOBS when set, else one per CPU core when training on the CPU of a Linux
    machine, else 1 (on a GPU runs take turns; macOS and Windows can't fork a process that has used torch safely)."""
    from selfmae.train import resolve_device

    env = os.environ.get("SELFMAE_JOBS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"SELFMAE_JOBS={env!r}: expected a positive integer")
        jobs = int(env)
    elif sys.platform.startswith("linux") and resolve_device(cfg["train"]["device"]).type == "cpu":
        jobs = os.cpu_count() or 1
    else:
        jobs = 1  # one GPU: runs in turn (and never fork a process that may hold a CUDA context)
    return max(1, min(jobs, n_runs))


def threads_per_run() -> int:
    """Intra-op threads of each run side by side: $OMP_NUM_THREADS when set, else 1, whatever the core count.

    CPU reductions split differently with the thread count, so the same seed gives other numbers at 2 threads than
    at 1 (the tiny BraTS MAE: validation loss 0.519 against 0.547). One thread per run keeps a run's numbers the same
    on a 2-core and a 16-core machine of one CPU kind; the cores are filled by running more runs at once.
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else 1


def _run_one(cfg: Mapping, out_dir: Path, threads: int) -> Any:
    torch.set_num_threads(threads)
    os.environ["SELFMAE_PROGRESS"] = "0"  # two progress bars in one output would garble each other
    return _SHARED["stage"](cfg, out_dir, datasets=_SHARED["datasets"])


def run_many(stage: Callable[..., Any], runs: Sequence[tuple[Mapping, Path]], datasets: Mapping | None,
             jobs: int | None = None, on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """[stage(cfg, out_dir, datasets=datasets) for cfg, out_dir in runs], `jobs` at a time.

    stage: run_finetune or run_pretrain. jobs: None = default_jobs(first config). on_done(i, result) is called
    here, in the parent, as results arrive in order (for progress lines). Returns the results in `runs` order.
    """
    if not runs:
        return []
    jobs = jobs or default_jobs(runs[0][0], len(runs))
    results: list[Any] = []
    if jobs == 1 or torch.cuda.is_initialized():
        for i, (cfg, out_dir) in enumerate(runs):
            results.append(stage(cfg, out_dir, datasets=datasets))
            if on_done:
                on_done(i, results[-1])
        return results
    from selfmae.train import resolve_device, resolve_precision

    threads = threads_per_run()
    # say a precision fallback once, here, rather than once in every worker
    resolve_precision(runs[0][0]["train"]["precision"], resolve_device(runs[0][0]["train"]["device"]))
    # torch's first use_deterministic_algorithms() imports torch._inductor (~1 s): pay that once, before forking
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled(),
                                       warn_only=torch.is_deterministic_algorithms_warn_only_enabled())
    _SHARED.update(stage=stage, datasets=datasets)
    try:
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_run_one, cfg, Path(out_dir), threads) for cfg, out_dir in runs]
            try:
                for i, future in enumerate(futures):
                    results.append(future.result())
                    if on_done:
                        on_done(i, results[-1])
            except BaseException:
                for future in futures:  # a failed run stops the study: don't start the runs still queued
                    future.cancel()
                raise
    finally:
        _SHARED.clear()
    return results
