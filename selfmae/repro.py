"""Reproducibility: one seeding function, and the record of where/how a run happened.

`seed_everything` is called at the start of every run; `run_metadata` is written next to every run's outputs so a
table can always be traced to the code, packages and hardware that produced it.
"""
from __future__ import annotations

import os
import platform
import random
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("selfmae", "torch", "monai", "numpy", "nibabel", "scikit-learn", "papermill", "jupytext")


def seed_everything(seed: int, deterministic: bool = True) -> dict:
    """Seed python, numpy and torch (all devices); ask torch for deterministic kernels where they exist.

    Returns the record to store with the run: {"seed": ..., "deterministic": ...}.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this for deterministic matmuls; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return {"seed": int(seed), "deterministic": bool(deterministic)}


def git_commit(short: bool = False) -> str:
    """The commit of the checked-out code, with '+dirty' when tracked files differ; 'unknown' outside git.

    The committed outputs (tables/, figures/) don't count: a run rewriting them leaves the code as committed.
    """
    try:
        args = ["git", "-C", str(REPO_ROOT), "rev-parse"] + (["--short"] if short else []) + ["HEAD"]
        sha = subprocess.run(args, capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no",
                                "--", ".", ":!tables", ":!figures"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware_summary() -> str:
    """One line naming the accelerator, or the CPU model, the instruction set torch's kernels use there
    (`torch.backends.cpu.get_cpu_capability()`) and the core count, e.g. 'CPU AMD EPYC (AVX512), 2 cores'. The
    instruction set is part of it because fp32 kernels round differently on AVX2 and AVX512: the same seed and
    code can end a long 3D run a little apart on the two."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_metadata() -> dict:
    """Commit, date, package versions, hardware and torch's intra-op thread count: written beside every run's
    outputs. The thread count is recorded because CPU reductions split differently with it, so the same seed can
    give different low-order digits (and, over hundreds of steps, different losses) at 1 and at 2 threads."""
    return {
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware_summary(),
        "packages": package_versions(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }
