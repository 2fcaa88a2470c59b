"""Checkpoints that resume a run exactly: weights, optimiser, schedule, RNG states and position in the data.

Layout (a plain dict, loadable with torch.load(weights_only=True)):
    format        "selfmae-ckpt-1"
    model         state_dict of the bare model (never the DDP wrapper, so keys have no "module." prefix)
    optimizer     AdamW state_dict;  scheduler: LambdaLR state_dict (no fp16 GradScaler state: fp16 is not offered;
                  checkpoints written before held "scaler": None, which resuming ignores)
    rng           one entry per process (rank order): {"python", "numpy", "torch", "cuda"} (numpy's as a tensor)
    epoch         the epoch in progress (0-based); batch_in_epoch: micro-batches of it already consumed
                  (0 = the epoch has not started, i.e. the previous one finished and was validated)
    epoch_acc     one entry per process: running sums of the epoch in progress (loss_sum, n_samples, seconds)
    (the data loader's shuffling and augmentation seeds are a function of (seed, epoch, rank): nothing to store)
    step          optimiser steps taken in total
    config        {"train": resolved train_cfg, plus the caller's data/model sections when given}
    best_metric, best_epoch, main_metric, history (per-epoch rows, the same as metrics.csv), world_size
Writes go through `selfmae.io.atomic_torch_save` (temp file + rename), so a kill never leaves a torn file.

`CheckpointWriter` assembles that dict from a run's model, optimiser, schedule and `Progress` (every rank calls it,
rank 0 writes); `resume_state` puts a last.pt back into them after checking that it was written with the same
settings and fits the model.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from selfmae.io import atomic_torch_save
from selfmae.torchfile import load_torch_file

from . import distributed as D
from .errors import CheckpointError, TrainConfigError
from .settings import incompatible_keys

log = logging.getLogger("selfmae.train")

FORMAT = "selfmae-ckpt-1"


def capture_rng() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) RNG states, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(x: Any) -> Any:
    """random.setstate wants nested tuples; a round trip may give lists."""
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    return atomic_torch_save({"format": FORMAT, **state}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; CheckpointError naming the file if it is unreadable."""
    path = Path(path)
    try:
        state = load_torch_file(path)
    except (OSError, ValueError) as err:  # missing, corrupt, truncated, or not a torch file (said which)
        raise CheckpointError(f"cannot read checkpoint: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a selfmae training checkpoint (format {FORMAT!r} expected)")
    return state


def run_config(checkpoint: str | Path) -> dict[str, Any]:
    """The config of the run that wrote `checkpoint`: its config.yaml beside it, else the one saved inside it ({}
    when neither holds one). Raises CheckpointError for an unreadable checkpoint, OSError / yaml.YAMLError for an
    unreadable config.yaml."""
    import yaml

    beside = Path(checkpoint).parent / "config.yaml"
    if beside.is_file():
        return yaml.safe_load(beside.read_text(encoding="utf-8")) or {}
    return load_checkpoint(checkpoint).get("config") or {}


def check_state_fits(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise CheckpointError listing missing/unexpected keys and every key whose shape differs (both shapes)."""
    own = model.state_dict()
    problems = [f"'{k}' has shape {tuple(v.shape)} in the checkpoint but {tuple(own[k].shape)} in the model"
                for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append(f"not in the model: {', '.join(unexpected[:10])}" + (" ..." if len(unexpected) > 10 else ""))
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not fit the model: " + "; ".join(problems))



# ----------------------------------------------------------------------------------------------- a run's state
def _fresh_epoch_acc() -> dict[str, float]:
    return {"loss_sum": 0.0, "n_samples": 0.0, "seconds": 0.0}


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint. epoch: the epoch in progress (0-based); batch_in_epoch:
    micro-batches of it consumed; step: optimiser steps in total; best_metric / best_epoch (1-based) of the task's
    main metric; history: the finished epochs' rows; epoch_acc: this rank's sums of the epoch in progress."""
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_acc: dict[str, float] = field(default_factory=_fresh_epoch_acc)

    def next_epoch(self) -> None:
        """The epoch in progress is finished: move to the start of the next one."""
        self.epoch, self.batch_in_epoch, self.epoch_acc = self.epoch + 1, 0, _fresh_epoch_acc()


@dataclass
class Resumed:
    """What `resume_state` found: the progress, this rank's RNG state to restore once the resumed epoch's
    consumed batches are replayed (None: keep the seeded streams), and the precision of each earlier segment."""
    progress: Progress = field(default_factory=Progress)
    rng: dict[str, Any] | None = None
    segments: list[str] = field(default_factory=list)


def resume_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 config: Mapping[str, Any], info: D.DistInfo) -> Resumed:
    """Load the checkpoint at `path` into `model`, `optimizer` and `scheduler`; a fresh `Resumed` when there is none.

    Raises TrainConfigError listing the settings that differ from `config` (settings.incompatible_keys), and
    CheckpointError when the file is unreadable, its weights do not fit `model` (keys and shapes named) or its
    optimiser/scheduler state does not fit the parameter groups. A checkpoint written by another number of
    processes resumes with the RNG streams restarted from the seed (warned)."""
    if not path.exists():
        return Resumed()
    ck = load_checkpoint(path)
    diffs = incompatible_keys(ck["config"], config)
    if diffs:
        raise TrainConfigError(f"{path}: cannot resume, the stored run used different settings for "
                               f"{', '.join(diffs)} (use another out_dir, or force=True (CLI: --force) to archive it)")
    check_state_fits(model, ck["model"], path)
    model.load_state_dict(ck["model"])
    # the AdamW implementation is this run's choice (fused for bf16, foreach for fp32), not the stored run's
    implementation = [{k: g.get(k) for k in ("fused", "foreach")} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(ck["optimizer"])
        for group, chosen in zip(optimizer.param_groups, implementation):
            group.update(chosen)
        scheduler.load_state_dict(ck["scheduler"])
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: optimizer/scheduler state does not fit this model's parameter "
                              f"groups ({err})") from err
    prog = Progress(ck["epoch"], ck["batch_in_epoch"], ck["step"], ck["best_metric"], ck["best_epoch"],
                    list(ck["history"]))
    out = Resumed(prog, None, list((ck.get("precision") or {}).get("segments", ["unknown"])))
    if len(ck["rng"]) == info.world_size:
        out.rng, prog.epoch_acc = ck["rng"][info.rank], dict(ck["epoch_acc"][info.rank])
    else:
        log.warning("%s was written by %d process(es), this run has %d: RNG streams restart from the seed "
                    "and the partial epoch's loss is not carried over", path, len(ck["rng"]), info.world_size)
    log.info("resuming %s at epoch %d, batch %d, step %d", path.parent, prog.epoch + 1, prog.batch_in_epoch,
             prog.step)
    return out


@dataclass
class CheckpointWriter:
    """Writes a run's checkpoints (the layout above). Every rank must call it: the RNG states and epoch sums
    are gathered from all ranks, and rank 0 writes."""
    model: nn.Module                  # the bare model, never the DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    config: Mapping[str, Any]
    main_metric: str
    precision: Mapping[str, Any]      # PrecisionChoice.record() plus the `segments` of a resumed run
    info: D.DistInfo

    def __call__(self, path: Path, prog: Progress) -> None:
        """Write the state at `prog` to `path` (atomically, rank 0 only)."""
        per_rank = D.gather_objects((capture_rng(), dict(prog.epoch_acc)), self.info)
        if self.info.is_main:
            save_checkpoint({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                             "scheduler": self.scheduler.state_dict(),
                             "rng": [r for r, _ in per_rank], "epoch_acc": [a for _, a in per_rank],
                             "epoch": prog.epoch, "batch_in_epoch": prog.batch_in_epoch,
                             "step": prog.step, "config": self.config,
                             "best_metric": prog.best_metric, "best_epoch": prog.best_epoch,
                             "main_metric": self.main_metric, "history": prog.history,
                             "world_size": self.info.world_size, "precision": self.precision}, path)
