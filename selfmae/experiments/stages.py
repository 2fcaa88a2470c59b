"""The stages of one run: train a config (pre-training or fine-tuning) into its run folder, fine-tune then
evaluate, evaluate a checkpoint (`summary.json`, per-case CSV), and read back a finished run's summary."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from selfmae.config import config_hash, save_run_record
from selfmae.data.registry import dataset_spec
from selfmae.experiments.build import (build_data, build_model_for, eval_classes, load_trained, make_task,
                                      resolve_data_dir, sliding_window_settings)
from selfmae.io import atomic_write_text
from selfmae.repro import REPO_ROOT, seed_everything

log = logging.getLogger("selfmae.experiments")


def default_run_dir(cfg: Mapping) -> Path:
    """Where the notebooks put this run: runs/<profile>/<experiment> for pre-training,
    runs/<profile>/<experiment>/<init>/seed<N> for fine-tuning (the CLI uses the same places); runs on other
    than the default data go under runs/<profile>/data-<tag>/ (`selfmae.provenance.data_tag`)."""
    from selfmae.provenance import data_tag

    tag = data_tag(cfg["data"].get("data_dir"))
    root = REPO_ROOT / "runs" / cfg["profile"] / (f"data-{tag}" if tag else "") / cfg["experiment"]
    if cfg["task"] == "pretrain":
        return root
    return root / cfg["model"].get("init", "scratch") / f"seed{cfg['train']['seed']}"


def run_training(cfg: Mapping, out_dir: str | Path | None = None, force: bool = False,
                 datasets: Mapping | None = None, inputs: Mapping | None = None):
    """Train one config (pre-training or fine-tuning) into `out_dir`; returns the engine's RunResult.

    `datasets` lets a study reuse cached datasets across methods and seeds (built here when None). A finished
    run folder is not trained again (the engine returns the stored result) unless `force`, which moves it into
    `previous-<timestamp>/` with its own config.yaml and run.json. The run record (config.yaml: the resolved
    config; run.json: config hash, commit, packages, hardware, seed) is written when training starts from its first
    step; a resumed run keeps the record of its start. With model.init mae/imagenet, run.json's `pretrained_load`
    says what the file gave (`LoadReport.record()`: counts, adapted names, missing and unused keys); where the
    config alone does not say how labels became targets (BraTS: each region's label ids), run.json's `labels` does.
    """
    from selfmae.train import fit, refuse_changed_inputs

    cfg = copy.deepcopy(dict(cfg))
    out_dir = Path(out_dir or default_run_dir(cfg))
    inputs = dict(inputs) if inputs is not None else run_inputs(cfg)   # a caller that read them passes them
    if not force:
        refuse_changed_inputs(out_dir, inputs)   # before reading data or weights: a refusal costs nothing
    seed_record = seed_everything(cfg["train"]["seed"])
    datasets = datasets or build_data(cfg)
    model = build_model_for(cfg)
    loaded = getattr(model, "load_report", None)
    record = {**seed_record, **({"pretrained_load": loaded.record()} if loaded is not None else {})}
    record.update(label_record(cfg))
    # config.yaml + run.json are written when training starts from its first step, after the engine's folder
    # rules: never over a finished run's (force archives it first) nor over an unfinished one's
    return fit(model, make_task(cfg), datasets["train"], datasets["val"], cfg["train"], out_dir, force=force,
               run_config={"data": cfg["data"], "model": cfg["model"], "inputs": inputs},
               on_new_run=lambda folder: _start_record(cfg, folder, record))



run_pretrain = run_training


def _start_record(cfg: Mapping, folder: Path, record: Mapping) -> None:
    """config.yaml + run.json of a run that starts training (after the engine's folder rules), saying how its
    labels became targets where the config alone does not (BraTS regions)."""
    if "labels" in record:
        log.info("labels: %s", record["labels"])
    save_run_record(cfg, folder, extra=record)


def label_record(cfg: Mapping) -> dict:
    """{"labels": ...} for run.json where the config alone does not say how labels became targets (BraTS: the label
    ids of each region, `DatasetSpec.label_record`); {} for pre-training and for other datasets."""
    labels = None if cfg["task"] == "pretrain" else dataset_spec(cfg["data"]).label_record(cfg["data"])
    return {} if labels is None else {"labels": labels}


def run_inputs(cfg: Mapping) -> dict:
    """The files a run starts from, by content: {"pretrained_sha256": SHA-256 of `model.pretrained`, or None when
    model.init is scratch; "data_listing_sha256": the digest of data.data_dir's files
    (`selfmae.provenance.data_listing_sha256`: names, sizes, split lists and metadata), or None for the default
    data (phantoms and samples the code writes or ships)}. Stored with the run (done.json, checkpoints) so that a
    finished run is reused only while what it started from is unchanged: a re-written pre-training `last.pt` at the
    same path, or an edited CXR14 `test_list.txt`, makes the engine refuse the stale run (force re-runs it).
    Runs recorded before a key existed are compared without it (`selfmae.train.rundir.changed_inputs`).
    Raises FileNotFoundError naming data.data_dir when it is set and does not exist."""
    from selfmae.provenance import file_sha256

    path = cfg["model"].get("pretrained")
    use = cfg["model"].get("init", "scratch") != "scratch" and path and Path(path).is_file()
    return {"pretrained_sha256": file_sha256(path) if use else None, "data_listing_sha256": data_listing(cfg)}


def data_listing(cfg: Mapping) -> str | None:
    """`selfmae.provenance.data_listing_sha256` of data.data_dir; None when it is null (the default data).
    Raises FileNotFoundError naming data.data_dir when it does not exist."""
    from selfmae.provenance import data_listing_sha256

    return data_listing_sha256(resolve_data_dir(cfg)) if cfg["data"].get("data_dir") else None


def run_finetune(cfg: Mapping, out_dir: str | Path | None = None, force: bool = False,
                 datasets: Mapping | None = None) -> dict:
    """Fine-tune, then evaluate the best checkpoint on the evaluation split (the last, with a warning, when no
    validation gave a defined main metric); returns (and stores) the summary."""
    out_dir = Path(out_dir or default_run_dir(cfg))
    inputs = run_inputs(cfg)   # read once: a data folder's digest walks every file
    stored = None if force else stored_summary(cfg, out_dir, inputs)
    if stored is not None:
        log.info("%s: a finished fine-tuning with these settings is there: its summary is reused (force=True, "
                 "CLI --force, re-runs)", out_dir)
        return stored
    # a changed config falls through: the engine refuses a finished run with other settings unless forced
    if not force:
        from selfmae.train import refuse_changed_inputs

        refuse_changed_inputs(out_dir, inputs)   # a re-written model.pretrained, edited data: refused before any work
    datasets = datasets or build_data(cfg)
    result = run_training(cfg, out_dir, force=force, datasets=datasets, inputs=inputs)
    if result.best_ckpt is None:   # every validation gave NaN (e.g. no label both positive and negative there)
        log.warning("%s: no validation gave a defined %s (e.g. the %d validation item(s) give no label both positive "
                    "and negative examples), so there is no best checkpoint: the last one, %s, is evaluated; a "
                    "larger data.val_fraction gives a validation split that can pick one", out_dir,
                    result.main_metric, len(datasets["val"]), result.last_ckpt.name)
    return run_evaluate(cfg, result.best_ckpt or result.last_ckpt, out_dir, datasets=datasets)


def stored_summary(cfg: Mapping, out_dir: str | Path, inputs: Mapping | None = None) -> dict | None:
    """The summary.json of a finished fine-tuning of exactly this config in `out_dir`, else None (also when the
    run recorded the pre-trained checkpoint's content or its data folder's digest and they changed since:
    `run_inputs`; the same checkpoint bytes or data files now at another path still answer).

    A summary written under another train.precision setting still answers when the finished training run trained in
    what this config's setting resolves to there (the engine's rule, `selfmae.train.finished_run_precision_diff`;
    e.g. `bf16` that fell back to fp32 on an AVX2 CPU answers `auto`): evaluation itself always runs in fp32.
    `inputs`: `run_inputs(cfg)` when the caller has read them already."""
    from selfmae.train.rundir import changed_inputs, same_content

    path = Path(out_dir) / "summary.json"
    if not path.exists():
        return None
    stored = read_summary(path)
    done = Path(out_dir) / "done.json"
    record = json.loads(done.read_text()) if done.exists() else {}
    recorded_inputs = record.get("config", {}).get("inputs")
    inputs = run_inputs(cfg) if inputs is None else inputs
    if changed_inputs(recorded_inputs, inputs):
        return None   # model.pretrained re-written or data edited since: the engine refuses the stale run, naming why
    if stored.get("config_hash") == config_hash(cfg):
        return stored
    if recorded_inputs:   # the same checkpoint bytes, the same data files, now at other paths
        at_recorded_paths = copy.deepcopy(dict(cfg))
        for section, key, digest in (("model", "pretrained", "pretrained_sha256"),
                                     ("data", "data_dir", "data_listing_sha256")):
            if same_content(record["config"], {"inputs": inputs}, digest):
                at_recorded_paths[section][key] = record["config"][section][key]
        if stored.get("config_hash") == config_hash(at_recorded_paths):
            return stored
    from selfmae.train import finished_run_precision_diff, resolve_device

    was = record.get("config", {}).get("train", {}).get("precision", "bf16")
    same_but_precision = {**cfg, "train": {**cfg["train"], "precision": was}}
    if not record or stored.get("config_hash") != config_hash(same_but_precision):
        return None
    device = resolve_device(cfg["train"]["device"])
    return stored if finished_run_precision_diff(out_dir, cfg["train"]["precision"], device) is None else None


SUMMARY_FIELDS = ("experiment", "config_hash", "split", "checkpoint", "seed", "init")   # the rest are metrics


def summary_json(summary: Mapping[str, Any]) -> str:
    """A summary (or any flat result dict) as strict JSON text: a metric that is NaN (e.g. the AUC of a label with
    one value in the split) is null, which `read_summary` reads back as NaN; numpy/torch scalars are numbers and
    other objects (paths) strings."""
    def plain(value):
        value = float(value) if isinstance(value, (np.floating, torch.Tensor)) else value
        return None if isinstance(value, float) and value != value else value

    return json.dumps({k: plain(v) for k, v in summary.items()}, indent=2, allow_nan=False, default=str)


def write_summary(path: Path, summary: Mapping[str, Any]) -> Path:
    """summary.json in strict JSON (`summary_json`)."""
    return atomic_write_text(path, summary_json(summary))


def read_summary(path: Path) -> dict:
    """A summary.json as `run_evaluate` returned it: metrics written as null are NaN again (older files with a
    bare NaN read the same). Raises OSError / ValueError when the file is missing or not JSON."""
    stored = json.loads(Path(path).read_text())
    return {k: (float("nan") if v is None and k not in SUMMARY_FIELDS else v) for k, v in stored.items()}


def eval_split(datasets: Mapping) -> str:
    """CXR14 is scored on the official test list; BTCV/BraTS on their validation split (as the paper)."""
    return "test" if "test" in datasets else "val"


def evaluation_dir(checkpoint: str | Path, out_dir: str | Path | None = None) -> Path:
    """Where `run_evaluate` writes: `out_dir`, by default `<checkpoint's folder>/evaluate-<checkpoint name>/`."""
    return Path(out_dir or Path(checkpoint).parent / f"evaluate-{Path(checkpoint).stem}")


def run_evaluate(cfg: Mapping, checkpoint: str | Path, out_dir: str | Path | None = None,
                 datasets: Mapping | None = None, force: bool = False) -> dict:
    """Evaluate `checkpoint` on the evaluation split: a per-case (per-label for CXR14) CSV and a flat
    summary.json (`dice`, `hd95`, `dice/<organ>`, ... or `mAUC`, `auc/<label>`) in `evaluation_dir(checkpoint,
    out_dir)` (a run's own summary is written by `run_finetune` alone).

    A folder of its own also gets the run record (config.yaml: `evaluation_record`, the settings used and the
    checkpoint's recorded init; run.json: the given config's hash, the checkpoint and its SHA-256, the data folder's
    digest, commit, packages, hardware); a training run's folder keeps its training record.
    Such a folder is never silently overwritten: an earlier evaluation of the same config and checkpoint bytes is
    reused (its summary returned, nothing re-computed); another one raises OutputDirError unless `force`, which
    moves it into `previous-<timestamp>/`. A model trained with other label settings than `cfg`'s (BraTS
    data.et_convention, BTCV data.organs) is evaluated, with a warning: its channels are scored against other labels.
    The summary's `init` is the one the checkpoint's training recorded (this config's when it recorded none)."""
    from monai.data import DataLoader

    from selfmae.eval import evaluate_segmentation
    from selfmae.provenance import file_sha256
    from selfmae.train import resolve_device

    out_dir = evaluation_dir(checkpoint, out_dir)
    own_folder = not any((out_dir / name).exists() for name in ("done.json", "last.pt"))   # not a training run's
    # only an evaluation folder of its own records (and compares) the checkpoint's bytes
    checkpoint_sha256 = file_sha256(checkpoint) if own_folder and Path(checkpoint).is_file() else None
    data_sha256 = data_listing(cfg)   # compared with an earlier evaluation's and the training's records
    if own_folder:
        stored = _earlier_evaluation(out_dir, cfg, checkpoint, checkpoint_sha256, data_sha256, force)
        if stored is not None:
            return stored
    datasets = datasets or build_data(cfg)
    device = resolve_device(cfg["train"]["device"])
    model = load_trained(cfg, checkpoint).to(device)
    _warn_other_label_settings(model, cfg, checkpoint)
    _warn_other_data(model, cfg, checkpoint, data_sha256)
    out_dir.mkdir(parents=True, exist_ok=True)   # only once data and checkpoint are accepted: a refusal leaves none
    split = eval_split(datasets)
    csv_path = out_dir / f"per_case_{split}.csv"
    with torch.no_grad():
        if cfg["task"] == "segment":
            names, indices = eval_classes(cfg["data"])
            loader = DataLoader(datasets[split], batch_size=1, num_workers=0)
            metrics = evaluate_segmentation(
                model, loader, kind=dataset_spec(cfg["data"]).segmentation_kind, class_names=names,
                class_indices=indices, spacing=cfg["data"].get("spacing"), device=device, out_csv=csv_path,
                **sliding_window_settings(cfg)).summary
        else:
            loader = DataLoader(datasets[split], batch_size=cfg["train"]["batch_size"], num_workers=0)
            metrics = make_task(cfg).evaluate(model, loader, device)
            metrics.update(auc_coverage(metrics, split, len(datasets[split]), cfg))
            per_label = [{"label": k.split("/", 1)[1], "auc": v} for k, v in metrics.items() if k.startswith("auc/")]
            atomic_write_text(csv_path, pd.DataFrame(per_label).to_csv(index=False))
    summary = {"experiment": cfg["experiment"], "config_hash": config_hash(cfg), "split": split,
               "checkpoint": str(checkpoint), "seed": _trained_seed(model, cfg), "init": _trained_init(model, cfg),
               **metrics}
    write_summary(out_dir / "summary.json", summary)
    if own_folder:
        save_run_record(evaluation_record(cfg, model), out_dir, extra={
            "config_hash": summary["config_hash"], "checkpoint": str(checkpoint),
            "checkpoint_sha256": checkpoint_sha256, "data_listing_sha256": data_sha256, "split": split,
            **label_record(cfg)})
    return summary


def auc_coverage(metrics: Mapping[str, float], split: str, n_images: int, cfg: Mapping) -> dict:
    """{"mAUC_labels": how many labels the mAUC averages} of a classification evaluation (`auc/<label>` keys).
    A label whose images in `split` are all positive or all negative has no ROC AUC (NaN in its column): as
    `selfmae.eval.metrics.mean_auc` (sklearn's roc_auc_score needs both) it is left out of the mean, with a warning
    naming it. Raises DataError naming the data when no label is left (the mAUC would be NaN)."""
    from selfmae.data import DataError

    aucs = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("auc/")}
    undefined = [name for name, v in aucs.items() if v != v]
    if aucs and len(undefined) == len(aucs):
        raise DataError(f"the {split} split's {n_images} image(s) give no label both positive and negative images: "
                        "the AUC of every label, so the mAUC, is undefined; evaluate on more images",
                        cfg["data"]["dataset"], resolve_data_dir(cfg))
    if undefined:
        log.warning("mAUC is the mean over %d of %d labels: %s have only positive or only negative images among the "
                    "%d %s image(s), so no AUC", len(aucs) - len(undefined), len(aucs), ", ".join(undefined),
                    n_images, split)
    return {"mAUC_labels": len(aucs) - len(undefined)}


def evaluation_record(cfg: Mapping, model: torch.nn.Module) -> dict:
    """The config an evaluation folder's config.yaml records: what the evaluation used (data, model architecture,
    eval settings, train.device / train.batch_size) and how the evaluated weights came to be as the checkpoint
    recorded it (model.init, model.pretrained and train.seed of its training; absent when it recorded none). The
    rest of `cfg`'s train section (epochs, lr, ...) and its description are the config file's, not the
    checkpoint's training: left out. run.json's config_hash is summary.json's (the config given)."""
    record = {k: v for k, v in copy.deepcopy(dict(cfg)).items() if k != "description"}   # the training's words
    trained = _trained_config(model)
    trained_model, trained_train = trained.get("model") or {}, trained.get("train") or {}
    record["model"] = {k: v for k, v in record["model"].items() if k not in ("init", "pretrained")}
    record["model"].update({k: trained_model[k] for k in ("init", "pretrained") if k in trained_model})
    record["train"] = {k: cfg["train"][k] for k in ("device", "batch_size") if k in cfg["train"]}
    if trained_train.get("seed") is not None:
        record["train"]["seed"] = trained_train["seed"]   # the training's, as summary.json says
    return record


def _evaluated(cfg: Mapping) -> dict:
    """The sections of an evaluation's config that decide its numbers (data, eval, the model architecture; the
    checkpoint's bytes are compared apart): what a reused evaluation must share with the one asked for."""
    model = {k: v for k, v in (cfg.get("model") or {}).items() if k not in ("init", "pretrained")}
    return {"data": cfg.get("data") or {}, "eval": cfg.get("eval") or {}, "model": model}


def _earlier_evaluation(out_dir: Path, cfg: Mapping, checkpoint: str | Path, checkpoint_sha256: str | None,
                        data_sha256: str | None, force: bool) -> dict | None:
    """The stored summary when `out_dir` holds an evaluation of this config, these checkpoint bytes and this data
    (`data_listing`; an evaluation recorded without it is compared without it); None when it holds none (or
    `force` moved another one into previous-<timestamp>/). OutputDirError for another one."""
    import yaml

    from selfmae.train import OutputDirError
    from selfmae.train.device import read_json_record
    from selfmae.train.rundir import archive, changed_inputs
    from selfmae.train.settings import incompatible_keys

    if not out_dir.is_dir() or all(p.name.startswith("previous-") for p in out_dir.iterdir()):
        return None
    record = read_json_record(out_dir / "run.json") or {}
    try:
        stored = read_summary(out_dir / "summary.json")
    except (OSError, ValueError):   # missing or unreadable: not an evaluation to reuse
        stored = None
    try:
        earlier = yaml.safe_load((out_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        earlier = {}
    diffs = incompatible_keys(_evaluated(earlier), _evaluated(cfg), strict=True) if earlier else \
        ["its config.yaml is missing"]
    if checkpoint_sha256 is None or record.get("checkpoint_sha256") != checkpoint_sha256:
        diffs.append(f"the checkpoint: {record.get('checkpoint', 'not recorded')} holding SHA-256 "
                     f"{str(record.get('checkpoint_sha256'))[:12]}..., now {checkpoint} holding "
                     f"{str(checkpoint_sha256)[:12]}...")
    if "data_listing_sha256" in record:
        diffs += changed_inputs({"data_listing_sha256": record["data_listing_sha256"]},
                                {"data_listing_sha256": data_sha256})
    if not diffs and stored is not None:
        log.info("%s: an evaluation of this checkpoint with these settings is there: reused, not evaluated again "
                 "(force=True, CLI --force, re-runs)", out_dir)
        return stored
    if force:
        archive(out_dir)
        return None
    raise OutputDirError(f"{out_dir} holds another evaluation ({'; '.join(diffs) or 'no summary.json'}): evaluating "
                         f"here would overwrite it; use another out_dir (CLI: --out-dir) or force=True (CLI: "
                         f"--force), which moves it into previous-<timestamp>/")


def _warn_other_label_settings(model: torch.nn.Module, cfg: Mapping, checkpoint: str | Path) -> None:
    """Warn when the checkpoint was trained with other label settings (`DatasetSpec.label_keys`) than `cfg`'s:
    its output channels would be scored against labels they were not trained on (e.g. ET = label 2 or 3)."""
    trained = _trained_config(model).get("data") or {}
    diffs = {k: trained[k] for k in dataset_spec(cfg["data"]).label_keys
             if k in trained and trained[k] != cfg["data"].get(k)}
    if diffs:
        log.warning("%s was trained with %s, this evaluation uses %s: its outputs are scored against labels they "
                    "were not trained on (to score them as trained: %s)", checkpoint,
                    ", ".join(f"data.{k}={v}" for k, v in diffs.items()),
                    ", ".join(f"data.{k}={cfg['data'].get(k)}" for k in diffs),
                    " ".join(f"--set data.{k}={v}" for k, v in diffs.items()))


def _warn_other_data(model: torch.nn.Module, cfg: Mapping, checkpoint: str | Path, data_sha256: str | None) -> None:
    """Warn when the checkpoint was trained on other data than this evaluation reads. When the training recorded
    its data folder's digest (`run_inputs`' data_listing_sha256) the files decide: a copy elsewhere is the same
    data, the same folder edited since (e.g. test_list.txt) is not. Otherwise the folders are compared resolved
    (data.data_dir; null means the synthetic phantoms), e.g. `evaluate` without --data-dir scores a model trained
    on real scans on the phantoms. `data_sha256`: `data_listing(cfg)`."""
    trained = _trained_config(model)
    trained_dir = (trained.get("data") or {}).get("data_dir", "unrecorded")
    if trained_dir == "unrecorded":
        return

    def where(data_dir) -> str:
        return str(Path(data_dir).expanduser().resolve()) if data_dir else "the synthetic phantoms"

    digest = (trained.get("inputs") or {}).get("data_listing_sha256")
    now = where(cfg["data"].get("data_dir"))
    if digest is not None and cfg["data"].get("data_dir"):
        if digest != data_sha256:
            changed = " (the same folder, changed since)" if where(trained_dir) == now else ""
            log.warning("%s was trained on other data files than %s holds now%s: its scores are on data it was "
                        "not trained and validated with", checkpoint, now, changed)
        return
    if where(trained_dir) != now:
        hint = f" (to score it on its own data: --data-dir {trained_dir})" if trained_dir else ""
        log.warning("%s was trained on %s; this evaluation reads %s%s", checkpoint, where(trained_dir), now, hint)


def _trained_seed(model: torch.nn.Module, cfg: Mapping) -> int:
    """The train.seed the checkpoint's training recorded (this config's when it recorded none)."""
    return (_trained_config(model).get("train") or {}).get("seed", cfg["train"]["seed"])


def _trained_init(model: torch.nn.Module, cfg: Mapping) -> str:
    """How the evaluated weights were initialised before training: the checkpoint's recorded model.init."""
    return (_trained_config(model).get("model") or {}).get("init") or cfg["model"].get("init", "scratch")


def _trained_config(model: torch.nn.Module) -> dict:
    """The config a loaded checkpoint recorded for its training (`load_trained`'s `.checkpoint_info`); {} if none."""
    return (getattr(model, "checkpoint_info", None) or {}).get("config") or {}


def summary(result: Any) -> dict:
    """A printable summary of a RunResult (CLI output)."""
    return {"out_dir": str(result.out_dir), "best_metric": result.best_metric, "last_ckpt": str(result.last_ckpt),
            "best_ckpt": str(result.best_ckpt), "epochs": len(result.history)}

