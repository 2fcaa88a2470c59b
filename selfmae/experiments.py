"""The stages as functions: config -> data -> model -> engine -> metrics. The CLI and every notebook call these.

A run folder (default `runs/<profile>/<experiment>/...`) receives the resolved config, the run record (commit,
packages, hardware, seed), `metrics.csv`, checkpoints and, for fine-tuning, `summary.json` with the evaluation
metrics as flat keys (`dice`, `dice/Liver`, `hd95/Liver`, `mAUC`, `auc/Effusion`, ...). Finished runs are
skipped (the engine's `done.json`), so a notebook that is re-run only redraws.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Subset

from selfmae.config import config_hash, load_config, save_run_record
from selfmae.data.registry import MEDMNIST3D_SAMPLE, MEDMNIST_SAMPLE, dataset_spec, input_size  # noqa: F401
from selfmae.io import atomic_write_text
from selfmae.parallel import run_many
from selfmae.repro import REPO_ROOT, seed_everything

SYNTHETIC_ROOT = REPO_ROOT / "data" / "synthetic"


def medmnist_sample(spatial_dims: int = 2) -> Path:
    """The real MedMNIST file shipped in tests/data for 2D (PneumoniaMNIST subset) or 3D (AdrenalMNIST3D)."""
    return dataset_spec("medmnist").default_data_dir({"spatial_dims": spatial_dims})


# ----------------------------------------------------------------------------------------------- data ---------
def resolve_data_dir(cfg: Mapping, synthetic_root: Path | None = None) -> Path:
    """The dataset root: `data.data_dir` when set (real data), else the synthetic phantoms (generated if absent)."""
    from selfmae.data import prepare_synthetic

    data = cfg["data"]
    if data.get("data_dir"):
        path = Path(data["data_dir"]).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data.data_dir={path}: no such file or folder")
        return path
    spec = dataset_spec(data)
    default = spec.default_data_dir(data)     # a shipped sample, or (decathlon) a DataError: no default data
    if default is not None or not spec.synthetic:
        return default
    root = Path(synthetic_root or os.environ.get("SELFMAE_SYNTHETIC", SYNTHETIC_ROOT)) / data["dataset"]
    marker = root / ".selfmae-synthetic.json"
    size = "paper" if cfg.get("profile") == "paper" else "tiny"
    if not marker.exists() or json.loads(marker.read_text()).get("size") != size:
        prepare_synthetic(data["dataset"], root, size=size, seed=0)
        atomic_write_text(marker, json.dumps({"size": size, "seed": 0}))
    return root


def build_data(cfg: Mapping, task: str | None = None, check: bool = True) -> dict:
    """Check the dataset (every problem listed) and build its datasets for `task` (default: the config's)."""
    from selfmae.data import build_datasets, require_valid

    data_cfg = dict(cfg["data"], data_dir=str(resolve_data_dir(cfg)))
    fraction = data_cfg.pop("label_fraction", 1.0)
    if check:
        require_valid(data_cfg["dataset"], data_cfg["data_dir"], memo_dir=REPO_ROOT / "runs" / ".data-checks",
                      task=task or cfg["task"])
    datasets = build_datasets(data_cfg, task or cfg["task"])
    if fraction < 1.0:
        datasets = dict(datasets, train=label_subset(datasets["train"], fraction, data_cfg.get("split_seed", 0)))
    require_nonempty(datasets, data_cfg, fraction)
    return datasets


def require_nonempty(datasets: Mapping, data_cfg: Mapping, fraction: float = 1.0) -> None:
    """Raise DataError naming each split that ended up empty after splitting (and the settings that split it),
    so that no run starts training on data it cannot validate or score."""
    from selfmae.data import DataError, DataProblem

    empty = [name for name, ds in datasets.items() if len(ds) == 0]
    if empty:
        settings = {k: data_cfg[k] for k in ("val_fraction", "split_seed", "max_images") if data_cfg.get(k) is not None}
        settings.update({"label_fraction": fraction} if fraction < 1.0 else {})
        raise DataError([DataProblem(str(data_cfg["data_dir"]), f"split {name!r} is empty after splitting "
                                                                f"(settings {settings})") for name in empty],
                        data_cfg["dataset"], data_cfg["data_dir"])


def label_subset(dataset: Dataset, fraction: float, seed: int) -> Subset:
    """A seeded subset of `fraction` of the labelled training cases (at least one), for label-efficiency sweeps."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data.label_fraction must be in (0, 1], got {fraction}")
    if len(dataset) == 0:
        raise ValueError(f"data.label_fraction={fraction}: the training split to take it from is empty")
    n = max(1, round(fraction * len(dataset)))
    order = np.random.default_rng(seed).permutation(len(dataset))
    return Subset(dataset, sorted(order[:n].tolist()))


def medmnist_labels(data_cfg: Mapping):
    """The `selfmae.data.medmnist.LabelSpec` (kind, outputs, names) of the MedMNIST file a data section names
    (the shipped sample of its dimensions when data_dir is null); only the label arrays are read."""
    return dataset_spec("medmnist").labels(data_cfg)


def num_outputs(cfg: Mapping) -> int:
    """The classifier's outputs: `model.num_classes`, or as the dataset's registry entry decides (for a MedMNIST
    file, null means as many as its labels need; a number that does not fit them is a DataError naming the file)."""
    return dataset_spec(cfg["data"]).num_outputs(cfg["model"], cfg["data"])


# --------------------------------------------------------------------------------------------- models ---------
def build_model_for(cfg: Mapping) -> torch.nn.Module:
    """Model from the config, initialised as `model.init` says (scratch | mae | imagenet), the load reported.
    A classifier's outputs are `num_outputs(cfg)` (for MedMNIST: from the file when model.num_classes is null)."""
    from selfmae.models import build_model

    if cfg["task"] == "classify":
        cfg = dict(cfg, model=dict(cfg["model"], num_classes=num_outputs(cfg)))
    init, path = cfg["model"].get("init", "scratch"), cfg["model"].get("pretrained")
    if init == "scratch":
        return build_model(dict(cfg["model"], pretrained=None), cfg["data"])
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"model.init={init} needs model.pretrained to name a checkpoint file; got {path!r}")
    model = build_model(cfg["model"], cfg["data"])
    print(f"loaded {init} weights from {path}: {model.load_report}")
    return model


def eval_classes(data_cfg: Mapping) -> tuple[tuple[str, ...], list[int] | None]:
    """Names of the evaluated classes and the output channels that hold them (the dataset's registry entry:
    BTCV's 8 organs of Table 1, BraTS's TC/WT/ET, CXR14's 14 labels, a MedMNIST file's or a dataset.json's)."""
    return dataset_spec(data_cfg).eval_classes(data_cfg)


def make_task(cfg: Mapping):
    """The engine task for the config's `task` (pretrain | classify | segment)."""
    from selfmae.train import ClassificationTask, MAETask, SegmentationTask

    if cfg["task"] == "pretrain":
        return MAETask()
    names, indices = eval_classes(cfg["data"])
    if cfg["task"] == "classify":
        multiclass = dataset_spec(cfg["data"]).multiclass(cfg["data"])
        return ClassificationTask(num_classes=num_outputs(cfg), label_names=names, multiclass=multiclass)
    ev = cfg.get("eval") or {}
    return SegmentationTask(kind=dataset_spec(cfg["data"]).segmentation_kind, roi_size=cfg["data"]["roi_size"],
                            spacing=cfg["data"].get("spacing"), class_names=names, class_indices=indices,
                            overlap=ev.get("overlap", 0.5), sw_batch_size=ev.get("sw_batch_size", 1))


# ------------------------------------------------------------------------------------------- the stages -------
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
                 datasets: Mapping | None = None):
    """Train one config (pre-training or fine-tuning) into `out_dir`; returns the engine's RunResult.

    `datasets` lets a study reuse cached datasets across methods and seeds (built here when None). A finished
    run folder is not trained again (the engine returns the stored result) unless `force`.
    """
    from selfmae.train import fit

    cfg = copy.deepcopy(dict(cfg))
    out_dir = Path(out_dir or default_run_dir(cfg))
    seed_record = seed_everything(cfg["train"]["seed"])
    datasets = datasets or build_data(cfg)
    model = build_model_for(cfg)
    if not (out_dir / "done.json").exists() or force:
        save_run_record(cfg, out_dir, extra=seed_record)
    return fit(model, make_task(cfg), datasets["train"], datasets["val"], cfg["train"], out_dir, force=force,
               run_config={"data": cfg["data"], "model": cfg["model"]})


run_pretrain = run_training


def run_finetune(cfg: Mapping, out_dir: str | Path | None = None, force: bool = False,
                 datasets: Mapping | None = None) -> dict:
    """Fine-tune, then evaluate the best checkpoint on the evaluation split; returns (and stores) the summary."""
    out_dir = Path(out_dir or default_run_dir(cfg))
    stored = None if force else stored_summary(cfg, out_dir)
    if stored is not None:
        return stored
    # a changed config falls through: the engine refuses a finished run with other settings unless forced
    datasets = datasets or build_data(cfg)
    result = run_training(cfg, out_dir, force=force, datasets=datasets)
    return run_evaluate(cfg, result.best_ckpt, out_dir, datasets=datasets)


def stored_summary(cfg: Mapping, out_dir: str | Path) -> dict | None:
    """The summary.json of a finished fine-tuning of exactly this config in `out_dir`, else None.

    A summary written under another train.precision setting still answers when the finished training run trained in
    what this config's setting resolves to there (the engine's rule, `selfmae.train.finished_run_precision_diff`;
    e.g. `bf16` that fell back to fp32 on an AVX2 CPU answers `auto`): evaluation itself always runs in fp32."""
    path = Path(out_dir) / "summary.json"
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if stored.get("config_hash") == config_hash(cfg):
        return stored
    from selfmae.train import finished_run_precision_diff, resolve_device

    done = Path(out_dir) / "done.json"
    record = json.loads(done.read_text()) if done.exists() else {}
    was = record.get("config", {}).get("train", {}).get("precision", "bf16")
    same_but_precision = {**cfg, "train": {**cfg["train"], "precision": was}}
    if not record or stored.get("config_hash") != config_hash(same_but_precision):
        return None
    device = resolve_device(cfg["train"]["device"])
    return stored if finished_run_precision_diff(out_dir, cfg["train"]["precision"], device) is None else None


def eval_split(datasets: Mapping) -> str:
    """CXR14 is scored on the official test list; BTCV/BraTS on their validation split (as the paper)."""
    return "test" if "test" in datasets else "val"


def run_evaluate(cfg: Mapping, checkpoint: str | Path, out_dir: str | Path | None = None,
                 datasets: Mapping | None = None) -> dict:
    """Evaluate `checkpoint` on the evaluation split: a per-case (per-label for CXR14) CSV and a flat
    summary.json (`dice`, `hd95`, `dice/<organ>`, ... or `mAUC`, `auc/<label>`) in `out_dir`."""
    from monai.data import DataLoader

    from selfmae.eval import evaluate_segmentation
    from selfmae.train import load_model_weights, resolve_device

    out_dir = Path(out_dir or Path(checkpoint).parent)
    datasets = datasets or build_data(cfg)
    model = build_model_for(dict(cfg, model=dict(cfg["model"], init="scratch")))
    load_model_weights(model, checkpoint)
    device = resolve_device(cfg["train"]["device"])
    model = model.to(device).eval()
    split = eval_split(datasets)
    csv_path = out_dir / f"per_case_{split}.csv"
    with torch.no_grad():
        if cfg["task"] == "segment":
            names, indices = eval_classes(cfg["data"])
            ev = cfg.get("eval") or {}
            loader = DataLoader(datasets[split], batch_size=1, num_workers=0)
            metrics = evaluate_segmentation(
                model, loader, kind=dataset_spec(cfg["data"]).segmentation_kind, roi_size=cfg["data"]["roi_size"], class_names=names,
                class_indices=indices, spacing=cfg["data"].get("spacing"), sw_batch_size=ev.get("sw_batch_size", 1),
                overlap=ev.get("overlap", 0.5), device=device, out_csv=csv_path).summary
        else:
            loader = DataLoader(datasets[split], batch_size=cfg["train"]["batch_size"], num_workers=0)
            metrics = make_task(cfg).evaluate(model, loader, device)
            per_label = [{"label": k.split("/", 1)[1], "auc": v} for k, v in metrics.items() if k.startswith("auc/")]
            atomic_write_text(csv_path, pd.DataFrame(per_label).to_csv(index=False))
    summary = {"experiment": cfg["experiment"], "config_hash": config_hash(cfg), "split": split,
               "checkpoint": str(checkpoint),
               "seed": cfg["train"]["seed"], "init": cfg["model"].get("init", "scratch"), **metrics}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, default=float))
    return summary


def summary(result: Any) -> dict:
    """A printable summary of a RunResult (CLI output)."""
    return {"out_dir": str(result.out_dir), "best_metric": result.best_metric, "last_ckpt": str(result.last_ckpt),
            "best_ckpt": str(result.best_ckpt), "epochs": len(result.history)}


# --------------------------------------------------------------------------------------------- studies --------
def init_methods(mae_ckpt: str | Path, imagenet_weights: str | Path | None = "") -> dict[str, dict]:
    """The paper's three starting points as `finetune_study` methods: scratch, ImageNet (only with a local weights
    file; when none is given, a `skip` reason, since nothing is downloaded) and the MAE encoder at `mae_ckpt`.

    Raises FileNotFoundError when `imagenet_weights` names a file that does not exist (a typo must not turn the
    ImageNet rows into "not run")."""
    if imagenet_weights and not Path(imagenet_weights).expanduser().is_file():
        raise FileNotFoundError(f"imagenet_weights={str(imagenet_weights)!r}: no such file (give a local timm-style "
                                "ViT-B/16 .pth, or leave it empty to skip the ImageNet rows)")
    imagenet = ({"model.init": "imagenet", "model.pretrained": str(Path(imagenet_weights).expanduser())}
                if imagenet_weights else {"skip": "no ImageNet weights file given (imagenet_weights='')"})
    return {"scratch": {}, "imagenet": imagenet, "mae": {"model.init": "mae", "model.pretrained": str(mae_ckpt)}}


def finetune_study(experiment: str, profile: str, methods: Mapping[str, Mapping[str, Any]], seeds: Sequence[int],
                   out_dir: str | Path, data_dir: str | None = None, overrides: Mapping[str, Any] | None = None,
                   datasets: Mapping | None = None) -> dict[str, list[dict]]:
    """Fine-tune every method (a dict of config overrides, e.g. {"model.init": "mae", ...}) for every seed.

    Datasets are built once and shared (or given, when a caller runs several studies on the same data); on a
    multi-core CPU the runs go side by side (`selfmae.parallel`). A method whose overrides hold `skip` (a
    reason) is not run; one whose overrides hold `seeds` (a list) runs those seeds instead of `seeds`. Returns
    method -> list of summaries (one per seed); runs land in out_dir/<method>/seed<N>.
    """
    base = dict(overrides or {})
    if data_dir:
        base["data.data_dir"] = data_dir
    runs, names = [], []
    for method, method_overrides in methods.items():
        method_overrides = dict(method_overrides)
        reason = method_overrides.pop("skip", None)
        if reason:
            print(f"{method}: skipped — {reason}")
            continue
        for seed in method_overrides.pop("seeds", seeds):
            runs.append((load_config(experiment, profile, {**base, **method_overrides, "train.seed": seed}),
                         Path(out_dir) / method / f"seed{seed}"))
            names.append((method, seed))
    summaries = finetune_many(runs, datasets, label=lambda i: f"{names[i][0]} seed {names[i][1]}")
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for (method, _), summary in zip(names, summaries):
        results[method].append(summary)
    return results


def finetune_many(runs: Sequence[tuple[Mapping, Path]], datasets: Mapping | None = None,
                  label: Callable[[int], str] = str) -> list[dict]:
    """run_finetune for each (config, run dir), side by side where the CPU allows; finished runs are read back.

    All runs must share one dataset config (built once here, if not given and any run is unfinished); a progress
    line `label(i): metrics` is printed per run, in order.
    """
    if datasets is None and any(stored_summary(cfg, d) is None for cfg, d in runs):
        datasets = build_data(runs[0][0])
    return run_many(run_finetune, runs, datasets, on_done=lambda i, s: print(f"{label(i)}: {_headline(s)}"))


def _headline(summary: Mapping) -> str:
    keys = [k for k in ("mAUC", "dice", "hd95") if k in summary]
    return ", ".join(f"{k}={summary[k]:.4f}" for k in keys)


def load_history(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.csv as a DataFrame."""
    return pd.read_csv(Path(run_dir) / "metrics.csv")


def study_histories(out_dir: str | Path, methods: Sequence[str]) -> dict[str, pd.DataFrame]:
    """method -> all seeds' metrics.csv stacked (column `seed`), for training-curve figures."""
    out = {}
    for method in methods:
        frames = [load_history(d).assign(seed=d.name) for d in sorted((Path(out_dir) / method).glob("seed*"))
                  if (d / "metrics.csv").exists()]
        if frames:
            out[method] = pd.concat(frames, ignore_index=True)
    return out


def last_epoch_scores(out_dir: str | Path, methods: Sequence[str], seeds: Sequence[int],
                      metric: str = "dice") -> dict[str, list[dict]]:
    """method -> [{metric: value}] per seed at the last epoch of out_dir/<method>/seed<N>/metrics.csv.

    The end-of-training score of runs validated along the way: the same number as evaluating their last
    checkpoint on the validation split, so a sweep can reuse them instead of training them again.
    """
    out: dict[str, list[dict]] = {}
    for method in methods:
        for seed in seeds:
            run_dir = Path(out_dir) / method / f"seed{seed}"
            history = load_history(run_dir)
            validated = history.dropna(subset=[metric])
            if validated.empty or validated["epoch"].iloc[-1] != history["epoch"].max():
                raise ValueError(f"{run_dir / 'metrics.csv'}: no validated {metric} at the last epoch")
            out.setdefault(method, []).append({metric: float(validated[metric].iloc[-1]), "seed": seed})
    return out


# --------------------------------------------------------------------------------------------- figures --------
def _fit_roi(image: torch.Tensor, roi: Sequence[int]) -> torch.Tensor:
    """(C, *spatial) -> (C, *roi): centre crop / pad so a whole validation volume fits the MAE's input size."""
    from monai.transforms import ResizeWithPadOrCrop

    return torch.as_tensor(ResizeWithPadOrCrop(spatial_size=list(roi))(image))


@torch.no_grad()
def reconstruction_examples(cfg: Mapping, checkpoint: str | Path, mask_ratio: float = 0.75, n: int = 1,
                            seed: int = 0, datasets: Mapping | None = None, channel: int = 0) -> list[dict]:
    """MAE reconstructions of `n` validation images for Fig. 2: dicts of 2D arrays original/masked/recon/pasted/error.

    3D volumes are shown at their middle axial slice; multi-channel inputs at `channel` (BraTS: 0 = FLAIR).
    """
    from selfmae.train.checkpoint import load_model_weights

    datasets = datasets or build_data(cfg, "pretrain", check=False)
    model = build_model_for(dict(cfg, model=dict(cfg["model"], init="scratch")))
    load_model_weights(model, checkpoint)
    model.eval()
    out = []
    for i in range(n):
        item = datasets["val"][i]
        item = item[0] if isinstance(item, list) else item
        x = _fit_roi(torch.as_tensor(item["image"]), input_size(cfg["data"]))[None].float()
        torch.manual_seed(seed + i)
        loss, pred, mask = model(x, mask_ratio=mask_ratio)
        images = {"original": x, **model.reconstruct(x, pred, mask)}
        out.append({k: _display_slice(v[0, channel]) for k, v in images.items()} | {"loss": float(loss)})
    return out


def _display_slice(t: torch.Tensor) -> np.ndarray:
    """(H, W) or (X, Y, Z) -> a 2D array for display (middle axial slice, rotated so anterior is up)."""
    a = t.float().cpu().numpy()
    if a.ndim == 3:
        a = np.rot90(a[:, :, a.shape[2] // 2])
    return np.ascontiguousarray(a)


@torch.no_grad()
def segmentation_examples(cfg: Mapping, checkpoints: Mapping[str, str | Path], n_cases: int = 2,
                          datasets: Mapping | None = None) -> list[dict]:
    """Fig. 3: for `n_cases` validation volumes, the axial slice with most foreground: image, ground truth and
    each checkpoint's prediction as label maps (BTCV organ ids; BraTS 1 = WT only, 2 = TC, 3 = ET)."""
    from monai.inferers import sliding_window_inference

    from selfmae.train.checkpoint import load_model_weights

    datasets = datasets or build_data(cfg, check=False)
    models = {}
    for name, path in checkpoints.items():
        model = build_model_for(dict(cfg, model=dict(cfg["model"], init="scratch")))
        load_model_weights(model, path)
        models[name] = model.eval()
    brats = dataset_spec(cfg["data"]).regions   # sigmoid region channels (TC/WT/ET), not class ids
    _, indices = eval_classes(cfg["data"])
    cases = []
    for i in range(min(n_cases, len(datasets["val"]))):
        item = datasets["val"][i]
        image = torch.as_tensor(item["image"])[None].float()
        label = torch.as_tensor(item["label"])
        maps = {"ground truth": _label_map(label, brats, indices)}
        for name, model in models.items():
            logits = sliding_window_inference(image, cfg["data"]["roi_size"], 4, model, overlap=0.5)[0]
            maps[name] = _label_map(logits.sigmoid() > 0.5 if brats else logits.argmax(0, keepdim=True), brats,
                                    indices)
        z = int(np.argmax((maps["ground truth"] > 0).sum(axis=(0, 1))))
        case = {"image": np.rot90(image[0, 0, :, :, z].numpy()), "title": str(item.get("case_id", i))}
        case.update({k: np.rot90(v[:, :, z]) for k, v in maps.items()})
        cases.append(case)
    return cases


def _label_map(label: torch.Tensor, brats: bool, indices: Sequence[int] | None = None) -> np.ndarray:
    """(1, X, Y, Z) ids, or BraTS (3, X, Y, Z) TC/WT/ET channels -> (X, Y, Z) display ids: the evaluated classes
    numbered 1..K in `indices` order (other labels 0), or for BraTS WT 1, TC 2, ET 3."""
    label = torch.as_tensor(label)
    if not brats:
        ids = label[0].cpu().numpy().astype(np.int16)
        out = np.zeros_like(ids)
        for k, index in enumerate(indices or range(1, int(ids.max()) + 1)):
            out[ids == index] = k + 1
        return out
    tc, wt, et = (label[c].bool().cpu().numpy() for c in range(3))
    out = np.zeros(wt.shape, np.int16)
    out[wt], out[tc], out[et] = 1, 2, 3
    return out


def example_gallery(cfg: Mapping, n: int = 4, datasets: Mapping | None = None) -> dict:
    """A few preprocessed validation items as 2D images + label overlays + titles, for the data notebook.

    Returns {"images": [...], "masks": [... or None], "titles": [...], "n_labels": int}.
    """
    datasets = datasets or build_data(cfg, check=False)
    names, indices = eval_classes(cfg["data"])
    brats = dataset_spec(cfg["data"]).regions   # sigmoid region channels (TC/WT/ET), not class ids
    out = {"images": [], "masks": [], "titles": [], "n_labels": len(names)}
    for i in range(min(n, len(datasets["val"]))):
        item = datasets["val"][i]
        image = torch.as_tensor(item["image"]).float()
        label = torch.as_tensor(item["label"])
        case = str(item.get("case_id", i))
        if cfg["task"] == "classify":
            found = [names[j] for j in np.flatnonzero(label.numpy() > 0.5)] or ["No Finding"]
            out["images"].append(image[0].numpy())
            out["masks"].append(None)
            out["titles"].append(f"{case}\n{', '.join(found)}")
            continue
        ids = _label_map(label, brats, indices)
        z = int(np.argmax((ids > 0).sum(axis=(0, 1))))
        for c in range(image.shape[0]) if brats else (0,):
            out["images"].append(np.rot90(image[c, :, :, z].numpy()))
            out["masks"].append(np.rot90(ids[:, :, z]))
            channel = f" · channel {c}" if brats else ""
            out["titles"].append(f"{case} · slice {z}{channel}")
    return out


def ablation_study(dataset: str, profile: str, grid: Sequence[tuple[float, int]], seeds: Sequence[int],
                   out_dir: str | Path, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                   reuse: Mapping[tuple[float, int], tuple[Path, Path]] | None = None) -> dict:
    """Table 3 (lower): for each (mask ratio, paper pre-training epochs), MAE pre-train then fine-tune per seed.

    Our pre-training length is the profile's epochs scaled by paper_epochs / the paper's base length, so the
    tiny profile keeps the paper's ratios (e.g. 2x and 4x longer). `overrides` holds the notebook's overrides for
    "pretrain" and "finetune"; `reuse` maps a grid point to (pre-train run dir, fine-tune study dir) already run by
    notebooks 03/04 and 06/07 with the same settings. Returns (ratio, epochs) -> list of fine-tune summaries.
    Pre-training runs land in out_dir/mask<r>_ep<e>/pretrain; fine-tuning in .../mae/seed<N>.
    """
    overrides = overrides or {}
    pre_name, ft_name = f"pretrain_{dataset}", f"finetune_{dataset}"
    paper_base = load_config(pre_name, "paper")["train"]["epochs"]
    base_cfg = load_config(pre_name, profile, overrides.get("pretrain"))
    base = base_cfg["train"]
    dirs, pretrains = {}, []
    for ratio, paper_epochs in grid:
        point = (ratio, paper_epochs)
        if reuse and point in reuse:
            dirs[point] = reuse[point]
            continue
        pre_dir = Path(out_dir) / f"mask{ratio:g}_ep{paper_epochs}" / "pretrain"
        dirs[point] = (pre_dir, pre_dir.parent)
        scale = paper_epochs / paper_base
        pretrains.append((load_config(pre_name, profile, {
            **(overrides.get("pretrain") or {}), "model.mask_ratio": ratio,
            "train.epochs": round(base["epochs"] * scale),
            "train.warmup_epochs": round(base["warmup_epochs"] * scale)}), pre_dir))
    # every grid point trains on the same data (mask ratio and length don't touch it): check and cache it once
    unfinished = any(not (d / "done.json").exists() for _, d in pretrains)
    pretrains.sort(key=lambda run: -run[0]["train"]["epochs"])  # longest first: side by side, they end together
    run_many(run_pretrain, pretrains, build_data(base_cfg) if unfinished else None)
    runs, points = [], []
    for point, (pre_dir, ft_dir) in dirs.items():
        mae = {"model.init": "mae", "model.pretrained": str(pre_dir / "last.pt")}
        for seed in seeds:
            runs.append((load_config(ft_name, profile, {**(overrides.get("finetune") or {}), **mae,
                                                          "train.seed": seed}), ft_dir / "mae" / f"seed{seed}"))
            points.append(point)
    summaries = finetune_many(runs, label=lambda i: f"{dataset} mask {points[i][0]:g}, {points[i][1]} paper "
                                                    f"epochs, seed {runs[i][0]['train']['seed']}")
    results: dict = {point: [] for point in dirs}
    for point, summary in zip(points, summaries):
        results[point].append(summary)
    return results


def ablation_epochs(dataset: str, profile: str, grid: Sequence[tuple[float, int]],
                    overrides: Mapping[str, Any] | None = None) -> dict[int, int]:
    """Paper pre-training epochs -> the epochs this profile ran for that grid point (for the table)."""
    paper_base = load_config(f"pretrain_{dataset}", "paper")["train"]["epochs"]
    base = load_config(f"pretrain_{dataset}", profile, overrides)["train"]["epochs"]
    return {e: round(base * e / paper_base) for _, e in grid}
