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
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selfmae.io import atomic_torch_save
from selfmae.torchfile import load_torch_file

from .errors import CheckpointError

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


def load_model_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load `path`'s weights into `model` after checking every key and shape; returns the whole checkpoint."""
    state = load_checkpoint(path)
    check_state_fits(model, state["model"], path)
    model.load_state_dict(state["model"])
    return state
