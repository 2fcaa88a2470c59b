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
which first moves everything in the folder into `previous-<timestamp>/` (nothing is deleted). A finished run
with another train.precision setting is reused only when it trained in what that setting resolves to on the machine
that ran it (device.finished_precision_diff): a bf16 run that fell back to fp32 answers `auto`/`fp32`. A folder with a
checkpoint but no done.json is resumed (resume=True) and continues exactly as if never stopped: the data order
and augmentations are a pure function of (seed, epoch, rank), a mid-epoch checkpoint replays the data of the
batches already consumed (no compute) and then restores every RNG. The lr schedule spans train.epochs;
train.max_steps only stops early (smoke runs), validating at the stop. Validation runs on rank 0 with the
RNG forked and seeded, so it neither depends on nor perturbs the training RNG.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from monai.data import DataLoader
from monai.data.utils import worker_init_fn
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from selfmae.io import atomic_write_text
from selfmae.repro import seed_everything

from . import distributed as D
from .checkpoint import capture_rng, check_state_fits, load_checkpoint, restore_rng, save_checkpoint
from .device import (PrecisionChoice, announce, autocast, choose_precision, finished_precision_diff, read_json_record,
                     resolve_device)
from .errors import CheckpointError, OutputDirError, TrainConfigError
from .logs import RunLog, progress_bar, progress_enabled
from .schedule import build_optimizer, build_scheduler
from .settings import incompatible_keys, resolve_train_cfg, stored_config
from .tasks import Task

log = logging.getLogger("selfmae.train")


@dataclass
class RunResult:
    out_dir: Path
    history: list[dict[str, Any]]
    best_metric: float | None
    last_ckpt: Path
    best_ckpt: Path | None
    main_metric: str = ""
    best_epoch: int | None = None
    steps: int = 0
    skipped: bool = False          # True when fit found a finished run and did not train

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(out_dir=str(self.out_dir), last_ckpt=str(self.last_ckpt),
                 best_ckpt=str(self.best_ckpt) if self.best_ckpt else None)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RunResult":
        d = dict(d)
        d.update(out_dir=Path(d["out_dir"]), last_ckpt=Path(d["last_ckpt"]),
                 best_ckpt=Path(d["best_ckpt"]) if d.get("best_ckpt") else None)
        return cls(**d)


@dataclass
class _Progress:
    """Where the run stands; saved in every checkpoint."""
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_acc: dict[str, float] = field(default_factory=lambda: {"loss_sum": 0.0, "n_samples": 0.0, "seconds": 0.0})


# ----------------------------------------------------------------------------------------------- run folder
def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputDirError(f"{out_dir}: output folder is not writable ({err.strerror or err})") from err


def _archive(out_dir: Path) -> Path | None:
    """Move the folder's contents (except earlier archives) into previous-<timestamp>/; returns that folder."""
    entries = [p for p in out_dir.iterdir() if not p.name.startswith("previous-")]
    if not entries:
        return None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dest, n = out_dir / f"previous-{stamp}", 1
    while dest.exists():
        dest, n = out_dir / f"previous-{stamp}-{n}", n + 1
    dest.mkdir()
    for p in entries:
        p.rename(dest / p.name)
    log.warning("force=True: moved the previous contents of %s into %s", out_dir, dest)
    return dest


def _prepare_out_dir(out_dir: Path, config: dict, *, force: bool, resume: bool,
                     precision: PrecisionChoice | None = None) -> RunResult | None:
    """Apply the finished/force/resume rules; returns the stored RunResult when the run is already done."""
    done = out_dir / "done.json"
    if done.exists() and not force:
        record = json.loads(done.read_text())
        diffs = incompatible_keys(record["config"], config, strict=True)
        if precision is not None:  # compared by what it trained in, not by the words of the setting
            why = finished_precision_diff(record, precision, read_json_record(out_dir / "run.json"))
            diffs = [d for d in diffs if d != "train.precision"] + ([why] if why else [])
        if diffs:
            raise TrainConfigError(f"{out_dir} holds a finished run with different settings ({', '.join(diffs)}); "
                                   "use another out_dir or force=True to archive it and re-run")
        log.info("%s: finished run found, skipping (force=True re-runs)", out_dir)
        stored = RunResult.from_json({**record["result"], "skipped": True})
        # the record names the folder it was written in; a runs folder that was moved or copied (another clone,
        # a worktree, a shared disk) still answers with its own files
        stored.out_dir, stored.last_ckpt = out_dir, out_dir / stored.last_ckpt.name
        stored.best_ckpt = out_dir / stored.best_ckpt.name if stored.best_ckpt else None
        return stored
    if force and out_dir.is_dir():
        _archive(out_dir)
    elif not resume and (out_dir / "last.pt").exists():
        raise OutputDirError(f"{out_dir / 'last.pt'}: an unfinished run is there; pass resume=True to continue "
                             "it or force=True to archive it")
    _check_writable(out_dir)
    return None


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


def _batches_per_epoch(ds: Dataset, cfg: dict, info: D.DistInfo) -> int:
    per_rank = math.ceil(len(ds) / info.world_size)
    return math.ceil(per_rank / cfg["batch_size"])


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
        on_step: Callable[[int], None] | None = None) -> RunResult:
    """Train `model` on `train_ds` for `task`, validating on `val_ds`; see the module docstring for the folder.

    train_cfg: the `train` section (keys and defaults in settings.TRAIN_DEFAULTS; unknown keys are an error).
    run_config: optional {"data": ..., "model": ...} sections, stored in checkpoints so a resume with a different
        model or data shape is refused with the differing keys listed.
    on_step: called with the global step after every optimiser step (and its checkpoint, if one is due);
        an exception raised there stops the run like a crash would (tests use it to simulate a kill).
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
                decision = ("ok", _prepare_out_dir(out_dir, config, force=force, resume=resume, precision=precision))
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


def _train(model: nn.Module, task: Task, train_ds: Dataset, val_ds: Dataset | None, cfg: dict, config: dict,
           out_dir: Path, info: D.DistInfo, device: torch.device,
           on_step: Callable[[int], None] | None, precision: PrecisionChoice) -> RunResult:
    seed_everything(cfg["seed"] + info.rank, cfg["deterministic"])   # per-rank streams: different masks/dropout
    dtype = precision.dtype
    if info.is_main:
        announce(precision)
    segments: list[str] = []   # the precision of each segment of a resumed run, oldest first
    model.to(device)
    optimizer = build_optimizer(model, cfg)
    n_batches = _batches_per_epoch(train_ds, cfg, info)
    if n_batches == 0:
        raise ValueError("the training dataset is empty")
    steps_per_epoch = math.ceil(n_batches / cfg["accum_steps"])
    scheduler = build_scheduler(optimizer, cfg["warmup_epochs"] * steps_per_epoch, cfg["epochs"] * steps_per_epoch)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"

    prog, rng_to_restore = _Progress(), None
    if last_path.exists():
        ck = load_checkpoint(last_path)
        diffs = incompatible_keys(ck["config"], config)
        if diffs:
            raise TrainConfigError(f"{last_path}: cannot resume, the stored run used different settings for "
                                   f"{', '.join(diffs)} (use another out_dir, or force=True to archive it)")
        check_state_fits(model, ck["model"], last_path)
        model.load_state_dict(ck["model"])
        try:
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{last_path}: optimizer/scheduler state does not fit this model's parameter "
                                  f"groups ({err})") from err
        prog = _Progress(ck["epoch"], ck["batch_in_epoch"], ck["step"], ck["best_metric"], ck["best_epoch"],
                         list(ck["history"]))
        segments = list((ck.get("precision") or {}).get("segments", ["unknown"]))
        if len(ck["rng"]) == info.world_size:
            rng_to_restore, prog.epoch_acc = ck["rng"][info.rank], dict(ck["epoch_acc"][info.rank])
        else:
            log.warning("%s was written by %d process(es), this run has %d: RNG streams restart from the seed "
                        "and the partial epoch's loss is not carried over", last_path, len(ck["rng"]),
                        info.world_size)
        log.info("resuming %s at epoch %d, batch %d, step %d", out_dir, prog.epoch + 1, prog.batch_in_epoch, prog.step)
    segments += [] if segments[-1:] == [precision.used] else [precision.used]
    precision_record = {**precision.record(), "segments": segments}
    if info.is_main:
        atomic_write_text(out_dir / "run_config.json", json.dumps(config, indent=2, default=str) + "\n")

    ddp_model = D.wrap_model(model, info, device)
    runlog = RunLog(out_dir, info.is_main, cfg["tensorboard"])
    show = progress_enabled(info.is_main)

    def checkpoint(path: Path) -> None:
        per_rank = D.gather_objects((capture_rng(), dict(prog.epoch_acc)), info)
        if info.is_main:
            save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(),
                             "rng": [r for r, _ in per_rank], "epoch_acc": [a for _, a in per_rank],
                             "epoch": prog.epoch, "batch_in_epoch": prog.batch_in_epoch,
                             "step": prog.step, "config": config,
                             "best_metric": prog.best_metric, "best_epoch": prog.best_epoch,
                             "main_metric": task.main_metric, "history": prog.history,
                             "world_size": info.world_size, "precision": precision_record}, path)

    stopped = cfg["max_steps"] is not None and prog.step >= cfg["max_steps"]
    accum = cfg["accum_steps"]
    try:
        while prog.epoch < cfg["epochs"] and not stopped:
            epoch = prog.epoch
            it = iter(_train_loader(train_ds, cfg, info, epoch))
            for _ in range(prog.batch_in_epoch):   # replay the data of batches already trained on
                next(it)
            if rng_to_restore is not None:
                restore_rng(rng_to_restore)
                rng_to_restore = None
            model.train()
            acc = prog.epoch_acc
            loss_sum = torch.tensor(acc["loss_sum"], dtype=torch.float64, device=device)
            t0, last_lr = time.perf_counter(), float("nan")
            bar = progress_bar(n_batches, prog.batch_in_epoch, f"epoch {epoch + 1}/{cfg['epochs']}", show)
            for i in range(prog.batch_in_epoch, n_batches):
                batch = next(it)
                group_start = (i // accum) * accum
                group_size = min(accum, n_batches - group_start)
                sync = i + 1 == group_start + group_size
                no_sync = ddp_model.no_sync() if (info.enabled and not sync) else contextlib.nullcontext()
                with no_sync:
                    with autocast(device, dtype):
                        loss, n = task.step(ddp_model, batch, device)
                    (loss / group_size).backward()
                loss_sum += loss.detach().double() * n
                acc["n_samples"] += n
                bar.update(1)
                if not sync:
                    continue
                if cfg["clip_grad"] is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
                last_lr = max(g["lr"] for g in optimizer.param_groups)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                prog.step += 1
                prog.batch_in_epoch = i + 1
                if show or runlog.writer is not None:
                    bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{last_lr:.2e}", refresh=False)
                    runlog.step(prog.step, loss.item(), last_lr)
                stopped = cfg["max_steps"] is not None and prog.step >= cfg["max_steps"]
                if cfg["ckpt_every_steps"] and prog.step % cfg["ckpt_every_steps"] == 0 and i + 1 < n_batches \
                        and not stopped:
                    acc.update(loss_sum=float(loss_sum), seconds=acc["seconds"] + time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    checkpoint(last_path)
                if on_step is not None:
                    on_step(prog.step)
                if stopped:
                    break
            bar.close()
            acc.update(loss_sum=float(loss_sum), seconds=acc["seconds"] + time.perf_counter() - t0)
            _finish_epoch(task, model, val_ds, cfg, info, device, dtype, prog, last_lr, stopped, epoch)
            improved = prog.best_epoch == epoch + 1
            if improved:
                checkpoint(best_path)
            checkpoint(last_path)
            runlog.epoch(prog.history)
    finally:
        runlog.close()

    result = RunResult(out_dir=out_dir, history=prog.history, best_metric=prog.best_metric, last_ckpt=last_path,
                       best_ckpt=best_path if prog.best_epoch is not None else None, main_metric=task.main_metric,
                       best_epoch=prog.best_epoch, steps=prog.step)
    if info.is_main:
        done = {"finished": datetime.now().isoformat(timespec="seconds"), "config": config,
                "precision": precision_record, "result": result.to_json()}
        atomic_write_text(out_dir / "done.json", json.dumps(done, indent=2, default=str) + "\n")
    D.barrier(info)
    return result


def _finish_epoch(task: Task, model: nn.Module, val_ds: Dataset | None, cfg: dict, info: D.DistInfo,
                  device: torch.device, dtype: torch.dtype | None, prog: _Progress, last_lr: float,
                  stopped: bool, epoch: int) -> None:
    """Reduce the epoch's loss over ranks, validate when due, append the history row, advance `prog`."""
    acc = prog.epoch_acc
    loss_sum, n_samples, seconds = D.all_reduce_sum([acc["loss_sum"], acc["n_samples"], acc["seconds"]], info, device)
    seconds /= info.world_size
    row: dict[str, Any] = {"epoch": epoch + 1, "step": prog.step, "train_loss": loss_sum / max(n_samples, 1),
                           "lr": last_lr}
    due = (epoch + 1) % cfg["val_every"] == 0 or epoch + 1 == cfg["epochs"] or stopped
    if due:
        metrics = _validate(task, model, val_ds, cfg, info, device, dtype)
        row.update(metrics)
        if _improved(metrics.get(task.main_metric), prog.best_metric, task.higher_is_better):
            prog.best_metric, prog.best_epoch = metrics[task.main_metric], epoch + 1
    row.update(seconds=seconds, samples_per_s=n_samples / seconds if seconds > 0 else float("nan"))
    prog.history.append(row)
    prog.epoch, prog.batch_in_epoch = epoch + 1, 0
    prog.epoch_acc = {"loss_sum": 0.0, "n_samples": 0.0, "seconds": 0.0}
