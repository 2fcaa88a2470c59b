"""The train_cfg keys the engine accepts, their defaults, and which of them a resumed run may not change.

Why a closed list: a misspelt key (`warmup_epoch`) would otherwise be ignored silently and the run would use the
default. `resolve_train_cfg` fills defaults and raises `TrainConfigError` naming any unknown key.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from .errors import TrainConfigError

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "warmup_epochs": 0,
    "batch_size": 2,            # per process; global batch = batch_size x world_size x accum_steps
    "lr": 1e-4,                 # absolute lr at the global batch (not a base lr per 256)
    "weight_decay": 0.05,
    "betas": [0.9, 0.95],
    "layer_decay": None,        # None = no layer-wise lr decay
    "accum_steps": 1,
    "clip_grad": None,          # max grad norm, None = no clipping
    "precision": "auto",        # auto | bf16 | fp32 (device.choose_precision: auto = bf16 where measured faster)
    "max_steps": None,          # stop after this many optimiser steps in total (smoke runs)
    "val_every": 1,             # epochs; the last epoch (and a max_steps stop) is always validated
    "seed": 0,
    "device": "auto",           # auto | cpu | cuda | cuda:N
    "num_workers": 0,
    "ckpt_every_steps": None,   # also write last.pt every N optimiser steps (mid-epoch resume)
    "val_batch_size": None,     # None = the task's choice (1 for segmentation volumes) else batch_size
    "deterministic": True,      # torch.use_deterministic_algorithms(warn_only=True)
    "tensorboard": True,        # write TensorBoard events when tensorboard is importable
}

# Keys a resumed run may change: they do not alter what is computed, only where/how fast/how far.
VOLATILE_TRAIN_KEYS = frozenset({"device", "num_workers", "max_steps", "val_every", "ckpt_every_steps",
                                 "tensorboard", "val_batch_size", "clip_grad", "precision", "deterministic"})
# Keys that can never change a result (ignored even when comparing with a finished run).
HARMLESS_KEYS = {"train": frozenset({"device", "num_workers", "tensorboard"}),
                 "data": frozenset({"num_workers", "cache"})}
# Data keys that fix tensor shapes or label meaning; every model key matters.
SHAPE_DATA_KEYS = frozenset({"dataset", "spatial_dims", "in_channels", "roi_size", "crop", "resize", "spacing",
                             "organs", "num_samples", "et_convention", "a_min", "a_max"})


def resolve_train_cfg(train_cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults + `train_cfg`, validated. Raises TrainConfigError naming unknown keys or bad values."""
    train_cfg = dict(train_cfg or {})
    unknown = sorted(set(train_cfg) - set(TRAIN_DEFAULTS))
    if unknown:
        raise TrainConfigError(f"unknown train setting(s) {', '.join('train.' + k for k in unknown)}; "
                               f"accepted: {', '.join(sorted(TRAIN_DEFAULTS))}")
    cfg = {**TRAIN_DEFAULTS, **train_cfg}
    for key in ("epochs", "batch_size", "accum_steps", "val_every"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise TrainConfigError(f"train.{key} must be a positive integer, got {cfg[key]!r}")
    for key in ("max_steps", "ckpt_every_steps", "val_batch_size"):
        if cfg[key] is not None and (not isinstance(cfg[key], int) or cfg[key] < 1):
            raise TrainConfigError(f"train.{key} must be null or a positive integer, got {cfg[key]!r}")
    if cfg["precision"] not in ("auto", "bf16", "fp32"):
        raise TrainConfigError(f"train.precision must be 'auto', 'bf16' or 'fp32', got {cfg['precision']!r}")
    if len(cfg["betas"]) != 2:
        raise TrainConfigError(f"train.betas must hold two numbers, got {cfg['betas']!r}")
    cfg["betas"] = [float(b) for b in cfg["betas"]]
    return cfg


def stored_config(train_cfg: Mapping[str, Any], run_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint records: the resolved train section plus the caller's data/model sections (if given)."""
    out = {k: v for k, v in (run_config or {}).items() if k != "train"}
    out["train"] = dict(train_cfg)
    # plain JSON values only (Paths -> str, tuples -> lists): checkpoints load with weights_only=True
    return json.loads(json.dumps(out, default=str))


def incompatible_keys(stored: Mapping[str, Any], new: Mapping[str, Any], *, strict: bool = False) -> list[str]:
    """Dotted keys whose values differ between two stored configs and matter for resuming.

    strict=True compares every key but those that cannot change a result (device, workers, caching, logging):
    used for a finished run, so that a different request never silently returns the old result.
    Sections present on one side only are not compared (a caller that passed no model section).
    """
    diffs: list[str] = []
    for section in sorted(set(stored) & set(new)):
        a, b = stored[section], new[section]
        if not isinstance(a, Mapping) or not isinstance(b, Mapping):
            if a != b:
                diffs.append(section)
            continue
        for key in sorted(set(a) | set(b)):
            if _ignored(section, key, strict):
                continue
            if _norm(a.get(key)) != _norm(b.get(key)):
                diffs.append(f"{section}.{key}")
    return diffs


def _ignored(section: str, key: str, strict: bool) -> bool:
    if strict:
        return key in HARMLESS_KEYS.get(section, ())
    if section == "train":
        return key in VOLATILE_TRAIN_KEYS
    if section == "data":
        return key not in SHAPE_DATA_KEYS
    return section != "model"


def _norm(value: Any) -> Any:
    """Tuples and lists compare equal (YAML gives lists, code often passes tuples)."""
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _norm(v) for k, v in value.items()}
    return value
