"""Simple references computed in the same run, so a reader sees what "the model learned" means.

- `flat_guess_loss`: the masked-patch loss (norm-pix units) of an MAE that predicts every hidden patch as flat at
  its own mean, i.e. 0 after per-patch normalisation. About 1.0 wherever patches are textured (0 on perfectly
  flat ones); an MAE that learned nothing scores this, one that learned anatomy scores well below it.
- `pixel_logistic_regression`: per-label logistic regression (scikit-learn) on the image pixels, average-pooled
  to 32 x 32 (volumes: voxels pooled to 14 x 14 x 14), trained on the training split and scored by mean AUC on
  the evaluation split.
- `intensity_voxel_classifier`: a per-voxel classifier (scikit-learn's HistGradientBoostingClassifier) on the
  voxel's intensities alone (1 channel for CT, 4 for BraTS), no position or context, scored with the same Dice
  conventions as the networks (`selfmae.eval.metrics`). What intensity alone explains; the network must add
  shape and position.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from selfmae.eval.inference import CLASSES, check_kind

__all__ = ["flat_guess_loss", "pixel_logistic_regression", "intensity_voxel_classifier"]


def _items(dataset) -> Iterable[dict]:
    """Every item of a dataset, random-crop lists flattened (training pipelines return a list per case)."""
    for i in range(len(dataset)):
        item = dataset[i]
        yield from (item if isinstance(item, list) else [item])


@torch.no_grad()
def flat_guess_loss(model: torch.nn.Module, dataset, max_items: int = 256) -> float:
    """Mean over patches of the squared per-patch-normalised target: the norm-pix loss of predicting 0 (a flat
    patch at its own mean) for every hidden patch. `model` is any MAE with `patchify` ((B, C, *img) ->
    (B, N, P)); images are its validation inputs (C, *img), at most `max_items` of them. Unitless."""
    total, n = 0.0, 0
    for k, item in enumerate(_items(dataset)):
        if k >= max_items:
            break
        patches = model.patchify(torch.as_tensor(item["image"]).float()[None])
        var, mean = torch.var_mean(patches, dim=-1, keepdim=True)
        total += float(((patches - mean) ** 2 / (var + 1e-6)).mean())
        n += 1
    if n == 0:
        raise ValueError("flat_guess_loss: the dataset is empty")
    return total / n


def _pixels(dataset, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (C, H, W) or volumes (C, D, H, W) average-pooled to size^2 / size^3, flattened; labels (L,)."""
    xs, ys = [], []
    for item in _items(dataset):
        x = torch.as_tensor(item["image"]).float()[None]
        pool = F.adaptive_avg_pool3d if x.ndim == 5 else F.adaptive_avg_pool2d
        xs.append(pool(x, size).flatten().numpy())
        ys.append(np.asarray(item["label"], dtype=np.float32).reshape(-1))
    return np.stack(xs), np.stack(ys)


def pixel_logistic_regression(train, test, label_names: Sequence[str], size: int | None = None,
                              c: float = 0.1, seed: int = 0) -> dict:
    """Logistic regression per label on pixels average-pooled to `size` x `size` (volumes: `size`^3 voxels;
    default 32 for images, 14 for volumes) (scikit-learn, L2, C=`c`).

    train, test: datasets of {"image": (1, H, W) or (1, D, H, W), "label": (L,)}; the training items are drawn once
    through their pipeline (one random crop/flip each, the pipeline's random state set from `seed`, so the number
    does not depend on what the dataset drew before). Returns {"mAUC": mean AUC over the labels with both classes
    present, "auc/<name>": ...} as `selfmae.eval.mean_auc` computes it.
    """
    from monai.data.utils import set_rnd
    from sklearn.linear_model import LogisticRegression

    from selfmae.eval import mean_auc

    set_rnd(train, seed)

    if size is None:
        size = 14 if torch.as_tensor(next(iter(_items(test)))["image"]).ndim == 4 else 32
    x_train, y_train = _pixels(train, size)
    x_test, y_test = _pixels(test, size)
    scores = np.zeros_like(y_test)
    for c_idx in range(y_train.shape[1]):
        if np.unique(y_train[:, c_idx]).size < 2:
            continue  # a label without positives in training: constant score (AUC 0.5 where defined)
        clf = LogisticRegression(C=c, max_iter=500).fit(x_train, y_train[:, c_idx])
        scores[:, c_idx] = clf.decision_function(x_test)
    auc = mean_auc(y_test, scores, label_names)
    return {"mAUC": auc["mean"], **{f"auc/{k}": v for k, v in auc["per_class"].items()}}


def _voxel_targets(label: torch.Tensor, kind: str) -> torch.Tensor:
    """(1, *S) class ids ("classes") or (3, *S) nested TC/WT/ET masks ("regions", BraTS's) -> (*S) one id per voxel
    (regions: 0 background, 1 WT only, 2 TC not ET, 3 ET), so one multi-class classifier covers both."""
    if check_kind(kind) == CLASSES:
        return label[0].long()
    tc, wt, et = (label[i].bool() for i in range(3))
    out = torch.zeros(wt.shape, dtype=torch.long)
    out[wt], out[tc], out[et] = 1, 2, 3
    return out


def _voxel_onehot(ids: torch.Tensor, kind: str, class_indices: Sequence[int]) -> torch.Tensor:
    """(*S) ids -> (1, K, *S) binary masks of the evaluated classes (regions: TC, WT, ET from the ids above)."""
    if check_kind(kind) == CLASSES:
        return torch.stack([ids == k for k in class_indices])[None]
    return torch.stack([ids >= 2, ids >= 1, ids == 3])[None]


def intensity_voxel_classifier(train, val, kind: str, class_names: Sequence[str],
                               class_indices: Sequence[int] | None = None, max_voxels: int = 60000,
                               seed: int = 0) -> dict:
    """Per-voxel classifier on intensities only (scikit-learn HistGradientBoostingClassifier), scored by Dice.

    train: training crops {"image": (C, *S), "label": ...}, its random transforms seeded with `seed` (MONAI
    `set_rnd`); val: whole validation volumes. Foreground voxels are kept with priority when sub-sampling to
    `max_voxels`. kind: "classes" (labels (1, *S) ids; `class_indices` are the ids scored) or "regions" (labels
    (3, *S) nested TC/WT/ET, as BraTS); ValueError for another. Returns {"dice": mean, "dice/<name>": ..., "n_cases"} under `selfmae.eval.metrics`'
    conventions (a missed structure scores 0).
    """
    from monai.data.utils import set_rnd
    from sklearn.ensemble import HistGradientBoostingClassifier

    from selfmae.eval import dice_hd95, summarize_segmentation

    set_rnd(train, seed)   # the training crops are random: seeded, the reference is the same number every run
    rng = np.random.default_rng(seed)
    feats, targets = [], []
    for item in _items(train):
        image = torch.as_tensor(item["image"]).float()
        feats.append(image.flatten(1).T.numpy())
        targets.append(_voxel_targets(torch.as_tensor(item["label"]), kind).flatten().numpy())
    x, y = np.concatenate(feats), np.concatenate(targets)
    fg, bg = np.flatnonzero(y > 0), np.flatnonzero(y == 0)
    n_fg = min(len(fg), max_voxels // 2)
    keep = np.concatenate([rng.choice(fg, n_fg, replace=False),
                           rng.choice(bg, min(len(bg), max_voxels - n_fg), replace=False)])
    clf = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x[keep], y[keep])
    indices = list(class_indices) if class_indices is not None else list(range(1, len(class_names) + 1))
    preds, truths = [], []
    for item in _items(val):
        image = torch.as_tensor(item["image"]).float()
        ids = torch.from_numpy(clf.predict(image.flatten(1).T.numpy())).reshape(image.shape[1:])
        preds.append(_voxel_onehot(ids, kind, indices))
        truths.append(_voxel_onehot(_voxel_targets(torch.as_tensor(item["label"]), kind), kind, indices))
    values = [dice_hd95(p, t, names=class_names, hd95=False) for p, t in zip(preds, truths)]
    merged = {"names": list(class_names), "dice": np.concatenate([v["dice"] for v in values]),
              "status": np.concatenate([v["status"] for v in values]), "empty": values[0]["empty"]}
    return {**summarize_segmentation(merged), "n_cases": len(values)}


# ------------------------------------------------------------------ from a run's config (what notebooks call) --
def pretrain_reference(cfg: Mapping, run_dir) -> dict:
    """{"val_loss": the run's last validation masked-patch loss, "flat_guess": `flat_guess_loss` on the same
    validation images, "steps": optimiser steps} for the pre-training in `run_dir` (its metrics.csv)."""
    import pandas as pd

    from selfmae.experiments import build_data, build_model_for

    history = pd.read_csv(f"{run_dir}/metrics.csv")
    val = history.dropna(subset=["val_loss"]) if "val_loss" in history else history.iloc[0:0]
    model = build_model_for(dict(cfg, model=dict(cfg["model"], init="scratch")))
    datasets = build_data(cfg, "pretrain", check=False)
    return {"val_loss": float(val["val_loss"].iloc[-1]) if len(val) else float("nan"),
            "flat_guess": flat_guess_loss(model, datasets["val"]), "steps": int(history["step"].iloc[-1])}


def finetune_reference(cfg: Mapping, datasets: Mapping | None = None) -> dict:
    """The simple reference of a fine-tuning config, on its own splits: the pixel logistic regression for a
    classification task, the intensity-only voxel classifier for a segmentation task (summary-like dict)."""
    from selfmae.data.registry import dataset_spec
    from selfmae.experiments import build_data, eval_classes, eval_split

    datasets = datasets or build_data(cfg, check=False)
    names, indices = eval_classes(cfg["data"])
    split = eval_split(datasets)
    if cfg["task"] == "classify":
        return pixel_logistic_regression(datasets["train"], datasets[split], names)
    kind = dataset_spec(cfg["data"]).segmentation_kind   # "classes" (class ids) or "regions"
    return intensity_voxel_classifier(datasets["train"], datasets[split], kind, names, indices)
