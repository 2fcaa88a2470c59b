"""From a config to what a run needs: the dataset root (real data, a shipped sample or the generated phantoms), the
checked datasets (with a label fraction), the model initialised as `model.init` says, and the engine task with its
evaluated classes."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from selfmae.data.registry import dataset_spec
from selfmae.io import atomic_write_text
from selfmae.repro import REPO_ROOT

log = logging.getLogger("selfmae.experiments")

SYNTHETIC_ROOT = REPO_ROOT / "data" / "synthetic"


def medmnist_sample(spatial_dims: int = 2) -> Path:
    """The real MedMNIST file shipped with the package for 2D (PneumoniaMNIST subset) or 3D (AdrenalMNIST3D)."""
    return dataset_spec("medmnist").default_data_dir({"spatial_dims": spatial_dims})


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


def data_check_memo_dir() -> Path:
    """Where passed data checks are remembered: $SELFMAE_CACHE/data-checks, else the user's cache folder
    ($XDG_CACHE_HOME or ~/.cache)/selfmae/data-checks; never inside the installed package or the repository."""
    root = os.environ.get("SELFMAE_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "selfmae"
    return Path(root).expanduser() / "data-checks"


def build_data(cfg: Mapping, task: str | None = None, check: bool = True) -> dict:
    """Check the dataset (every problem listed) and build its datasets for `task` (default: the config's)."""
    from selfmae.data import build_datasets, require_valid

    data_cfg = dict(cfg["data"], data_dir=str(resolve_data_dir(cfg)))
    fraction = data_cfg.pop("label_fraction", 1.0)
    if check:
        memo = data_check_memo_dir()
        remembered = require_valid(data_cfg["dataset"], data_cfg["data_dir"], memo_dir=memo,
                                   task=task or cfg["task"], data_cfg=data_cfg)
        log.debug("data check of %s at %s: %s", data_cfg["dataset"], data_cfg["data_dir"],
                 f"passed earlier, files unchanged (remembered in {memo})" if remembered else "passed")
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
        need = {"val": ": training picks its best checkpoint on the validation split, so data.val_fraction must "
                       "carve a non-empty one"}
        raise DataError([DataProblem(str(data_cfg["data_dir"]), f"split {name!r} is empty after splitting "
                                                                f"(settings {settings}){need.get(name, '')}")
                         for name in empty],
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


def build_model_for(cfg: Mapping) -> torch.nn.Module:
    """Model from the config, initialised as `model.init` says (scratch | mae | imagenet), the load reported.
    A classifier's outputs are `num_outputs(cfg)` (for MedMNIST: from the file when model.num_classes is null)."""
    from selfmae.models import build_model

    if cfg.get("task") == "classify":
        cfg = dict(cfg, model=dict(cfg["model"], num_classes=num_outputs(cfg)))
    init, path = cfg["model"].get("init", "scratch"), cfg["model"].get("pretrained")
    if init == "scratch":
        return build_model(dict(cfg["model"], pretrained=None), cfg["data"])
    if not path:
        raise FileNotFoundError(f"model.init={init} needs model.pretrained to name a checkpoint file; got {path!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"model.pretrained={str(path)!r} (model.init={init}): "
                                f"{'a folder, not a checkpoint file' if Path(path).is_dir() else 'no such file'}")
    model = build_model(cfg["model"], cfg["data"])
    print(f"model.init={init}: {model.load_report}")
    return model


def load_trained(cfg: Mapping, checkpoint: str | Path) -> torch.nn.Module:
    """The model `cfg` describes, holding the weights of a checkpoint the engine wrote (`last.pt` / `best.pt`).

    The model is built as from scratch (`model.init` and `model.pretrained` are ignored: the checkpoint holds every
    weight), every key and shape of the checkpoint is checked against it, and it is returned in eval mode, on the
    CPU, in fp32 (move it with `.to(device)`). A config without `task` is read as pre-training (the explorer's
    config.yaml-less checkpoints). What else the checkpoint records (step, epoch, history, best_metric, ...:
    everything but weights, optimiser, scheduler and RNG states) is kept as `.checkpoint_info` (a dict).

    Raises `selfmae.train.CheckpointError` naming the file when it is missing or unreadable, is not an engine
    checkpoint, or does not fit the model (missing/unexpected keys, each key whose shape differs with both shapes);
    for a classifier on a MedMNIST file, the registry's DataError when model.num_classes does not fit the file.
    """
    from selfmae.train import check_state_fits, load_checkpoint

    state = load_checkpoint(checkpoint)   # an unreadable file is said before a model is built
    _refuse_pretraining_for_a_task(cfg, state["model"], checkpoint)
    model = build_model_for(dict(cfg, model=dict(cfg["model"], init="scratch")))
    check_state_fits(model, state["model"], checkpoint)
    model.load_state_dict(state["model"])
    model.checkpoint_info = {k: v for k, v in state.items() if k not in _NOT_INFO}
    return model.eval()


def _refuse_pretraining_for_a_task(cfg: Mapping, weights: Mapping, checkpoint: str | Path) -> None:
    """CheckpointError when a fine-tuning config (classify / segment) is given an MAE pre-training checkpoint (its
    weights hold the MAE's mask token and decoder, no task head): said in one line with the command that turns it
    into a model to evaluate, instead of a list of missing head keys."""
    from selfmae.train import CheckpointError

    if cfg.get("task", "pretrain") != "pretrain" and "mask_token" in weights and any(
            k.startswith("decoder_") for k in weights):
        data = f" --data-dir {cfg['data']['data_dir']}" if cfg["data"].get("data_dir") else ""
        raise CheckpointError(
            f"{checkpoint}: an MAE pre-training checkpoint (encoder, mask token and decoder; no {cfg['task']} head), "
            f"so there is nothing to {'classify' if cfg['task'] == 'classify' else 'segment'} with yet: fine-tune "
            f"from it first (selfmae finetune --config {cfg.get('experiment', '<config>')}{data} --set "
            f"model.init=mae --set model.pretrained={checkpoint}) and evaluate that run's best.pt")


_NOT_INFO = ("model", "optimizer", "scheduler", "rng", "epoch_acc", "scaler")


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
    return SegmentationTask(kind=dataset_spec(cfg["data"]).segmentation_kind, spacing=cfg["data"].get("spacing"),
                            class_names=names, class_indices=indices, **sliding_window_settings(cfg))


def sliding_window_settings(cfg: Mapping) -> dict:
    """How whole volumes are predicted (`selfmae.eval.sliding_window_predict`): {"roi_size": data.roi_size
    (voxels per axis), "sw_batch_size": eval.sw_batch_size (default 1), "overlap": eval.overlap (default 0.5)}."""
    ev = cfg.get("eval") or {}
    return {"roi_size": cfg["data"]["roi_size"], "sw_batch_size": ev.get("sw_batch_size", 1),
            "overlap": ev.get("overlap", 0.5)}

