"""The run folder's rules: a finished run is reused, force=True archives, an unfinished one needs resume=True.

    stored = prepare_out_dir(out_dir, config, force=..., resume=..., precision=...)   # RunResult or None
    write_run_config(out_dir, config)                                               # run_config.json
    write_done(out_dir, config, precision_record, result)                           # done.json, written last

Re-running on a finished folder returns the stored result (skipped=True) unless force=True, which first moves
everything in the folder into `previous-<timestamp>/` (nothing is deleted). A finished run with another
train.precision setting is reused only when it trained in what that setting resolves to on the machine that ran it
(device.finished_precision_diff). Every other setting is compared strictly (settings.incompatible_keys), the
`inputs` section too: a fine-tuning whose pre-trained checkpoint now holds other bytes is not reused.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from selfmae.io import atomic_write_text

from .device import PrecisionChoice, finished_precision_diff, read_json_record
from .errors import OutputDirError, TrainConfigError
from .settings import incompatible_keys

log = logging.getLogger("selfmae.train")


@dataclass
class RunResult:
    """What `fit` returns and done.json stores: the per-epoch history (metrics.csv rows), the best value of
    `main_metric` and its epoch (1-based; None when never validated), the checkpoints, optimiser steps taken."""
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


def check_writable(out_dir: Path) -> None:
    """Create `out_dir` and write a probe file there; OutputDirError naming the folder (or the file in its way)
    when either fails."""
    blocker = next((p for p in (out_dir, *out_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputDirError(f"{out_dir}: cannot be the output folder, {blocker} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputDirError(f"{out_dir}: output folder is not writable ({err.strerror or err})") from err


def archive(out_dir: Path) -> Path | None:
    """Move the folder's contents (except earlier archives) into previous-<timestamp>/; returns that folder
    (None when there was nothing to move)."""
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


def prepare_out_dir(out_dir: Path, config: dict, *, force: bool, resume: bool,
                    precision: PrecisionChoice | None = None) -> RunResult | None:
    """Apply the finished/force/resume rules; returns the stored RunResult when the run is already done, else None
    (the folder is then writable and empty, archived, or holds a run to resume).

    Raises TrainConfigError when a finished run there used other settings (listing them), OutputDirError when an
    unfinished run is there and resume=False, or when the folder is not writable."""
    done = out_dir / "done.json"
    if done.exists() and not force:
        return _finished(out_dir, json.loads(done.read_text()), config, precision)
    if force and out_dir.is_dir():
        archive(out_dir)
    elif not resume and (out_dir / "last.pt").exists():
        raise OutputDirError(f"{out_dir / 'last.pt'}: an unfinished run is there; pass resume=True to continue "
                             "it or force=True (CLI: --force) to archive it")
    check_writable(out_dir)
    return None


def _finished(out_dir: Path, record: dict, config: dict, precision: PrecisionChoice | None) -> RunResult:
    """The stored result of the finished run `record` (done.json) when it used `config`, else TrainConfigError."""
    diffs = incompatible_keys(record["config"], config, strict=True)
    if "model.pretrained" in diffs and (same_content(record["config"], config, "pretrained_sha256")
                                        or _moved_with_its_runs(record, out_dir, config)):
        diffs.remove("model.pretrained")
    if "data.data_dir" in diffs and same_content(record["config"], config, "data_listing_sha256"):
        diffs.remove("data.data_dir")   # the same files at another place (a copied or moved data folder)
    if "inputs" in config:   # compared by content (a caller of fit that records no inputs compares none)
        diffs = [d for d in diffs if not d.startswith("inputs.")] + changed_inputs(record["config"].get("inputs"),
                                                                                   config["inputs"])
    if precision is not None:  # compared by what it trained in, not by the words of the setting
        why = finished_precision_diff(record, precision, read_json_record(out_dir / "run.json"))
        diffs = [d for d in diffs if d != "train.precision"] + ([why] if why else [])
    if diffs:
        raise _refusal(out_dir, diffs)
    log.info("%s: a finished run with these settings is there: reused, not trained again (force=True, "
             "CLI --force, re-runs)", out_dir)
    stored = RunResult.from_json({**record["result"], "skipped": True})
    # the record names the folder it was written in; a runs folder that was moved or copied (another clone,
    # a worktree, a shared disk) still answers with its own files
    stored.out_dir, stored.last_ckpt = out_dir, out_dir / stored.last_ckpt.name
    stored.best_ckpt = out_dir / stored.best_ckpt.name if stored.best_ckpt else None
    return stored


def refuse_changed_inputs(out_dir: Path, inputs: Mapping[str, Any]) -> None:
    """TrainConfigError when `out_dir` holds a finished run that recorded other `inputs` (`changed_inputs`: the
    pre-trained checkpoint's SHA-256, the data folder's listing digest): the check `prepare_out_dir` makes, made
    before any data or weights are read so that a refusal costs nothing. A run recorded without `inputs`, or no
    finished run, passes."""
    done = Path(out_dir) / "done.json"
    stored = json.loads(done.read_text()).get("config", {}) if done.exists() else {}
    diffs = changed_inputs(stored.get("inputs"), inputs)
    if diffs:
        raise _refusal(Path(out_dir), diffs)


INPUT_CHANGES = {   # input -> (what it is, what a new digest means)
    "pretrained_sha256": ("the model.pretrained checkpoint's content",
                          "was re-written since, e.g. by a new pre-training"),
    "data_listing_sha256": ("the data folder's files (names, sizes, split lists, metadata)",
                            "changed since: files added, removed or resized, or lists edited"),
}


def changed_inputs(stored: Mapping[str, Any] | None, wanted: Mapping[str, Any] | None) -> list[str]:
    """Why a run that recorded the `inputs` `stored` did not start from `wanted` (one phrase per changed input;
    [] when the same). Only the inputs the stored record has are compared: a run recorded before an input was
    tracked (no `inputs`, or no `data_listing_sha256`) is compared by its settings alone.
    Inputs: `pretrained_sha256` (the model.pretrained file's bytes), `data_listing_sha256` (the data folder's
    names, sizes and listing files, `selfmae.provenance.data_listing_sha256`; None for the synthetic phantoms)."""
    stored, wanted = dict(stored or {}), dict(wanted or {})
    diffs = []
    for key in sorted(stored):
        was, now = stored[key], wanted.get(key)
        if was == now:
            continue
        what, change = INPUT_CHANGES.get(key, (f"inputs.{key}", "changed"))
        diffs.append(f"{what}: sha256 {_digest(was)} then, {_digest(now)} now, so it {change}")
    return diffs


def _digest(value: Any) -> str:
    return "none" if value is None else f"{str(value)[:12]}..."


def _refusal(out_dir: Path, diffs: list[str]) -> TrainConfigError:
    return TrainConfigError(f"{out_dir} holds a finished run with different settings ({', '.join(diffs)}); "
                            "use another out_dir or force=True (CLI: --force) to archive it and re-run")


def same_content(stored: Mapping[str, Any], wanted: Mapping[str, Any], key: str) -> bool:
    """True when both configs recorded the digest `key` of their `inputs` section (`pretrained_sha256`,
    `data_listing_sha256`) and it is the same: another path to the same content is the same starting point."""
    digests = [(c.get("inputs") or {}).get(key) for c in (stored, wanted)]
    return digests[0] is not None and digests[0] == digests[1]


def _moved_with_its_runs(record: Mapping[str, Any], out_dir: Path, config: Mapping[str, Any]) -> bool:
    """True when the stored run's `model.pretrained` and the requested one lie at the same place relative to their
    run folders, and the requested file exists: the runs tree moved as a whole (another clone, a worktree, a copied
    disk), so the fine-tuning started from the checkpoint now at the new place. Paths compare lexically, as recorded
    (absolute, links not resolved); a checkpoint elsewhere still counts as another setting."""
    stored = (record["config"].get("model") or {}).get("pretrained")
    wanted = (config.get("model") or {}).get("pretrained")
    stored_run = (record.get("result") or {}).get("out_dir")
    if not (stored and wanted and stored_run) or not Path(wanted).is_file():
        return False
    same = (os.path.relpath(os.path.abspath(stored), os.path.abspath(stored_run))
            == os.path.relpath(os.path.abspath(wanted), os.path.abspath(out_dir)))
    if same:
        log.info("%s: model.pretrained recorded as %s, now %s: the same checkpoint relative to the run folder",
                 out_dir, stored, wanted)
    return same


def write_run_config(out_dir: Path, config: Mapping[str, Any]) -> Path:
    """run_config.json: the stored config (resolved train section + the caller's data/model sections)."""
    return atomic_write_text(out_dir / "run_config.json", json.dumps(config, indent=2, default=str) + "\n")


def write_done(out_dir: Path, config: Mapping[str, Any], precision_record: Mapping[str, Any],
               result: RunResult) -> Path:
    """done.json, written last: when the run finished, its config, what train.precision became, its RunResult."""
    done = {"finished": datetime.now().isoformat(timespec="seconds"), "config": config,
            "precision": precision_record, "result": result.to_json()}
    return atomic_write_text(out_dir / "done.json", json.dumps(done, indent=2, default=str) + "\n")
