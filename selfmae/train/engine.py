"""One training loop for every task: fit(model, task, train_ds, val_ds, train_cfg, out_dir) -> RunResult.

A run folder holds:
    last.pt / best.pt   full checkpoints (see checkpoint.py), written atomically; best by task.main_metric
    metrics.csv         one row per epoch: epoch, step, train_loss, lr, validation metrics, seconds, samples_per_s
    run_config.json     the resolved train settings (+ the data/model sections passed as run_config)
    tensorboard/        events, when tensorboard is importable and train.tensorboard is true
    done.json           written last: the RunResult of a finished run, and `precision`: what train.precision
                        became (device.PrecisionChoice.record(): setting, used, reason, ...; `segments` lists the
                        precision of every resumed segment)
Re-running fit on a finished folder returns the stored result (skipped=True) without training, unless force=True,
which first archives the folder (the rules: rundir.py). A folder with a checkpoint but no done.json is resumed
(resume=True; checkpoint.resume_state) and continues exactly as if never stopped: the data order and
augmentations are a pure function of (seed, epoch, rank), a mid-epoch checkpoint replays the data of the batches
already consumed (no compute) and then restores every RNG. The lr schedule spans train.epochs; train.max_steps
only stops early (smoke runs), validating at the stop. Validation runs on rank 0 with the RNG forked and seeded,
so it neither depends on nor perturbs the training RNG.

The pieces: `fit` (folder rules, processes) -> `_train` (set up, resume, epochs, done.json) -> `_train_epoch` (the
step loop: accumulation, optimiser steps, mid-epoch checkpoints) and `_finish_epoch` (loss over ranks,
validation, the history row).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from monai.data import DataLoader
from monai.data.utils import worker_init_fn
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from selfmae.repro import seed_everything

from . import distributed as D
from .checkpoint import CheckpointWriter, Progress, restore_rng, resume_state
from .device import PrecisionChoice, announce, autocast, choose_precision, resolve_device
from .logs import RunLog, progress_bar, progress_enabled
from .rundir import RunResult, prepare_out_dir, write_done, write_run_config
from .schedule import build_optimizer, build_scheduler
from .settings import resolve_train_cfg, stored_config
from .tasks import Task

__all__ = ["RunResult", "fit"]

log = logging.getLogger("selfmae.train")


# ----------------------------------------------------------------------------------------------- data
def _loader_seed(seed: int, epoch: int, rank: int) -> int:
    return ((seed * 100_003 + epoch) * 1_009 + rank) % (2**63)


def _train_loader(ds: Dataset, cfg: dict, info: D.DistInfo, epoch: int) -> DataLoader:
    """Epoch `epoch`'s loader: shuffled by DistributedSampler(seed, epoch), augmentations seeded per epoch/rank."""
    sampler = DistributedSampler(ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg["seed"], drop_last=False)
    sampler.set_epoch(epoch)
    gen = torch.Generator().manual_seed(_loader_seed(cfg["seed"], epoch, info.rank))
    return DataLoader(ds, batch_size=cfg["batch_size"], sampler=sampler, num_workers=cfg["num_workers"],
                      generator=gen, worker_init_fn=worker_init_fn, drop_last=False)


def _val_loader(ds: Dataset, cfg: dict, task: Task) -> DataLoader:
    bs = cfg["val_batch_size"] or getattr(task, "val_batch_size", None) or cfg["batch_size"]
    # a generator must be passed: without one MONAI's DataLoader re-seeds torch's global RNG
    return DataLoader(ds, batch_size=bs, shuffle=False, num_workers=cfg["num_workers"],
                      generator=torch.Generator().manual_seed(cfg["seed"]), worker_init_fn=worker_init_fn)


def batches_per_epoch(n_items: int, cfg: Mapping, world_size: int = 1) -> int:
    """Batches one rank draws per epoch from `n_items` training items (DistributedSampler pads to equal shares,
    drop_last is off): ceil(ceil(n_items / world_size) / train.batch_size)."""
    return math.ceil(math.ceil(n_items / world_size) / cfg["batch_size"])


def optimizer_steps_per_epoch(n_items: int, cfg: Mapping, world_size: int = 1) -> int:
    """Optimiser steps per epoch (`batches_per_epoch` over train.accum_steps, rounded up); the lr schedule spans
    train.epochs times this, its warm-up train.warmup_epochs times this."""
    return math.ceil(batches_per_epoch(n_items, cfg, world_size) / cfg["accum_steps"])


# ----------------------------------------------------------------------------------------------- validation
def _validate(task: Task, model: nn.Module, val_ds: Dataset | None, cfg: dict, info: D.DistInfo,
              device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
    """task.evaluate on rank 0 under no_grad/autocast with a forked, seeded RNG; result shared with all ranks."""
    metrics: dict[str, float] = {}
    if val_ds is not None and info.is_main:
        devices = [device.index if device.index is not None else 0] if device.type == "cuda" else []
        was_training = model.training
        model.eval()
        with torch.random.fork_rng(devices=devices), torch.no_grad(), autocast(device, dtype):
            torch.manual_seed(cfg["seed"])
            metrics = {k: float(v) for k, v in task.evaluate(model, _val_loader(val_ds, cfg, task), device).items()}
        model.train(was_training)
    return D.broadcast_object(metrics, info)


def _improved(value: float | None, best: float | None, higher: bool) -> bool:
    if value is None or math.isnan(value):
        return False
    return best is None or (value > best if higher else value < best)


# ----------------------------------------------------------------------------------------------- fit
def fit(model: nn.Module, task: Task, train_ds: Dataset, val_ds: Dataset | None, train_cfg: Mapping[str, Any],
        out_dir: str | os.PathLike, *, force: bool = False, resume: bool = True,
        run_config: Mapping[str, Any] | None = None,
        on_step: Callable[[int], None] | None = None,
        on_new_run: Callable[[Path], None] | None = None) -> RunResult:
    """Train `model` on `train_ds` for `task`, validating on `val_ds`; see the module docstring for the folder.

    train_cfg: the `train` section (keys and defaults in settings.TRAIN_DEFAULTS; unknown keys are an error).
    run_config: optional {"data": ..., "model": ...} sections, stored in checkpoints so a resume with a different
        model or data shape is refused with the differing keys listed.
    on_step: called with the global step after every optimiser step (and its checkpoint, if one is due);
        an exception raised there stops the run like a crash would (tests use it to simulate a kill).
    on_new_run: called once, on rank 0, with `out_dir` when a run starts from its first step there, after the
        folder rules: force=True has already archived the old contents (so a run record written here does not
        overwrite the archived run's), and a resumed run (a last.pt there) keeps the record of its start.
    Under torchrun (WORLD_SIZE > 1) the model is wrapped in DDP; global batch = batch_size x world x accum_steps.
    """
    cfg = resolve_train_cfg(train_cfg)
    out_dir = Path(out_dir)
    config = stored_config(cfg, run_config)
    info = D.env_dist_info()
    device = resolve_device(cfg["device"], info.local_rank)
    precision = choose_precision(cfg["precision"], device, model)
    info = D.init_distributed(info, device)
    try:
        decision: tuple[str, Any] = ("ok", None)
        if info.is_main:
            try:
                decision = ("ok", prepare_out_dir(out_dir, config, force=force, resume=resume, precision=precision))
                if decision[1] is None and on_new_run is not None and not (out_dir / "last.pt").exists():
                    on_new_run(out_dir)
            except Exception as err:  # every rank must raise, not wait for rank 0
                decision = ("error", err)
        decision = D.broadcast_object(decision, info)
        if decision[0] == "error":
            raise decision[1]
        if decision[1] is not None:
            return decision[1]
        return _train(model, task, train_ds, val_ds, cfg, config, out_dir, info, device, on_step, precision)
    finally:
        D.shutdown(info)




@dataclass
class _Loop:
    """What every epoch of one run uses: the model bare and as trained (DDP-wrapped under torchrun), the optimiser
    and schedule, the settings, where and in which autocast dtype it runs, the logs, the checkpoint writer."""
    task: Task
    model: nn.Module
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    cfg: dict
    info: D.DistInfo
    device: torch.device
    dtype: torch.dtype | None
    runlog: RunLog
    show: bool                                  # draw progress bars
    on_step: Callable[[int], None] | None
    save: CheckpointWriter
    last_path: Path


def _train(model: nn.Module, task: Task, train_ds: Dataset, val_ds: Dataset | None, cfg: dict, config: dict,
           out_dir: Path, info: D.DistInfo, device: torch.device,
           on_step: Callable[[int], None] | None, precision: PrecisionChoice) -> RunResult:
    """Train from scratch or from out_dir/last.pt to the end (or train.max_steps); writes done.json last.

    Raises ValueError for an empty training set; TrainConfigError / CheckpointError from `resume_state`."""
    seed_everything(cfg["seed"] + info.rank, cfg["deterministic"])   # per-rank streams: different masks/dropout
    if info.is_main:
        announce(precision)
    model.to(device)
    optimizer = build_optimizer(model, cfg, fused=precision.dtype is not None)   # fused AdamW for bf16 runs
    n_batches = batches_per_epoch(len(train_ds), cfg, info.world_size)
    if n_batches == 0:
        raise ValueError("the training dataset is empty")
    steps_per_epoch = optimizer_steps_per_epoch(len(train_ds), cfg, info.world_size)
    scheduler = build_scheduler(optimizer, cfg["warmup_epochs"] * steps_per_epoch, cfg["epochs"] * steps_per_epoch)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"

    resumed = resume_state(last_path, model, optimizer, scheduler, config, info)
    prog, rng_to_restore, segments = resumed.progress, resumed.rng, resumed.segments
    segments += [] if segments[-1:] == [precision.used] else [precision.used]   # the precision of each segment
    precision_record = {**precision.record(), "segments": segments}
    if info.is_main:
        write_run_config(out_dir, config)

    loop = _Loop(task, model, D.wrap_model(model, info, device), optimizer, scheduler, cfg, info, device,
                 precision.dtype, RunLog(out_dir, info.is_main, cfg["tensorboard"]), progress_enabled(info.is_main),
                 on_step, CheckpointWriter(model, optimizer, scheduler, config, task.main_metric, precision_record,
                                           info), last_path)
    stopped = cfg["max_steps"] is not None and prog.step >= cfg["max_steps"]
    try:
        while prog.epoch < cfg["epochs"] and not stopped:
            epoch = prog.epoch
            last_lr, stopped = _train_epoch(loop, train_ds, prog, n_batches, rng_to_restore)
            rng_to_restore = None
            _finish_epoch(loop, val_ds, prog, last_lr, stopped)
            if prog.best_epoch == epoch + 1:
                loop.save(best_path, prog)
            loop.save(last_path, prog)
            loop.runlog.epoch(prog.history)
    finally:
        loop.runlog.close()

    result = RunResult(out_dir=out_dir, history=prog.history, best_metric=prog.best_metric, last_ckpt=last_path,
                       best_ckpt=best_path if prog.best_epoch is not None else None, main_metric=task.main_metric,
                       best_epoch=prog.best_epoch, steps=prog.step)
    if info.is_main:
        write_done(out_dir, config, precision_record, result)
    D.barrier(info)
    return result


def _train_epoch(loop: _Loop, train_ds: Dataset, prog: Progress, n_batches: int,
                 rng_to_restore: dict | None) -> tuple[float, bool]:
    """Train the rest of epoch `prog.epoch` (from micro-batch `prog.batch_in_epoch`, replaying the data of those
    before it, then restoring `rng_to_restore` if given); advances `prog` and its epoch sums, writes last.pt every
    train.ckpt_every_steps steps. Returns (the lr of the last optimiser step, NaN if none; whether train.max_steps
    was reached)."""
    cfg, info, device, model = loop.cfg, loop.info, loop.device, loop.model
    epoch, accum = prog.epoch, cfg["accum_steps"]
    it = iter(_train_loader(train_ds, cfg, info, epoch))
    for _ in range(prog.batch_in_epoch):   # replay the data of batches already trained on
        next(it)
    if rng_to_restore is not None:
        restore_rng(rng_to_restore)
    model.train()
    acc = prog.epoch_acc
    loss_sum = torch.tensor(acc["loss_sum"], dtype=torch.float64, device=device)
    t0, last_lr, stopped = time.perf_counter(), float("nan"), False
    bar = progress_bar(n_batches, prog.batch_in_epoch, f"epoch {epoch + 1}/{cfg['epochs']}", loop.show)
    for i in range(prog.batch_in_epoch, n_batches):
        batch = next(it)
        group_start = (i // accum) * accum
        group_size = min(accum, n_batches - group_start)
        sync = i + 1 == group_start + group_size
        no_sync = loop.ddp_model.no_sync() if (info.enabled and not sync) else contextlib.nullcontext()
        with no_sync:
            with autocast(device, loop.dtype):
                loss, n = loop.task.step(loop.ddp_model, batch, device)
            (loss / group_size).backward()
        loss_sum += loss.detach().double() * n
        acc["n_samples"] += n
        bar.update(1)
        if not sync:
            continue
        if cfg["clip_grad"] is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
        last_lr = max(g["lr"] for g in loop.optimizer.param_groups)
        loop.optimizer.step()
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scheduler.step()
        prog.step += 1
        prog.batch_in_epoch = i + 1
        if loop.show or loop.runlog.writer is not None:
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{last_lr:.2e}", refresh=False)
            loop.runlog.step(prog.step, loss.item(), last_lr)
        stopped = cfg["max_steps"] is not None and prog.step >= cfg["max_steps"]
        if cfg["ckpt_every_steps"] and prog.step % cfg["ckpt_every_steps"] == 0 and i + 1 < n_batches \
                and not stopped:
            acc.update(loss_sum=float(loss_sum), seconds=acc["seconds"] + time.perf_counter() - t0)
            t0 = time.perf_counter()
            loop.save(loop.last_path, prog)
        if loop.on_step is not None:
            loop.on_step(prog.step)
        if stopped:
            break
    bar.close()
    acc.update(loss_sum=float(loss_sum), seconds=acc["seconds"] + time.perf_counter() - t0)
    return last_lr, stopped


def _finish_epoch(loop: _Loop, val_ds: Dataset | None, prog: Progress, last_lr: float, stopped: bool) -> None:
    """Reduce the epoch's loss over ranks, validate when due, append the history row, advance `prog`."""
    cfg, info, epoch = loop.cfg, loop.info, prog.epoch
    acc = prog.epoch_acc
    loss_sum, n_samples, seconds = D.all_reduce_sum([acc["loss_sum"], acc["n_samples"], acc["seconds"]], info,
                                                    loop.device)
    seconds /= info.world_size
    row: dict[str, Any] = {"epoch": epoch + 1, "step": prog.step, "train_loss": loss_sum / max(n_samples, 1),
                           "lr": last_lr}
    due = (epoch + 1) % cfg["val_every"] == 0 or epoch + 1 == cfg["epochs"] or stopped
    if due:
        task = loop.task
        metrics = _validate(task, loop.model, val_ds, cfg, info, loop.device, loop.dtype)
        row.update(metrics)
        if _improved(metrics.get(task.main_metric), prog.best_metric, task.higher_is_better):
            prog.best_metric, prog.best_epoch = metrics[task.main_metric], epoch + 1
    row.update(seconds=seconds, samples_per_s=n_samples / seconds if seconds > 0 else float("nan"))
    prog.history.append(row)
    prog.next_epoch()
