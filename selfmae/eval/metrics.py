"""Paper metrics: mean AUC over labels (CXR14), Dice and HD95 in mm per class (BTCV, BraTS).

Thin wrappers over scikit-learn and MONAI that fix the paper's conventions and state every awkward case:
- AUC is undefined for a label with one value only in the evaluated set: that label is reported as excluded
  (value NaN) and left out of the mean, never an exception.
- Dice and HD95 of a structure that is missing from the truth or from the prediction of a case (the BraTS
  challenge's conventions, see `SEGMENTATION_CONVENTION`):
    * present in the truth, missed by the prediction:   Dice 0, HD95 = the worst value (status "missed")
    * absent from the truth, predicted (false positive): Dice 0, HD95 = the worst value (status "false_positive")
    * absent from both:                                  Dice 1, HD95 0 (status "absent"); with
      empty="exclude" both are NaN instead and that case is left out of that class's mean, and counted.
  The worst HD95 is the diagonal of the case's image in mm, sqrt(sum((n_i * spacing_i)^2)): 373.13 mm for a
  240 x 240 x 155 volume at 1 mm, the value the BraTS challenge uses.
- HD95 is in millimetres: MONAI's HausdorffDistanceMetric gets the voxel spacing.
No NaN ever leaves a segmentation mean silently: only excluded "absent" cases may be NaN, a class excluded in
every case makes the class mean and the overall mean NaN, and the counts of each status are in the summary.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from monai.metrics import HausdorffDistanceMetric
from sklearn.metrics import roc_auc_score

log = logging.getLogger("selfmae.eval")

STATUSES = ("present", "missed", "false_positive", "absent")
EMPTY_CONVENTIONS = ("perfect", "exclude")
SEGMENTATION_CONVENTION = (
    "Dice/HD95 conventions (the BraTS challenge's): a structure in the truth but missed by the prediction, or "
    "predicted but absent from the truth, scores Dice 0 and HD95 = that case's image diagonal in mm (e.g. 373.13 mm "
    "for a 240x240x155 volume at 1 mm); one absent from both scores Dice 1 and HD95 0. Every case counts in every "
    "mean; the per-case CSV gives each case's status (present / missed / false_positive / absent).")
DICE_CONVENTION = (   # the same rules for a table without HD95
    "Dice conventions (the BraTS challenge's): a structure in the truth but missed by the prediction, or predicted "
    "but absent from the truth, scores Dice 0; one absent from both scores Dice 1. Every case counts in every mean; "
    "the per-case CSV gives each case's status (present / missed / false_positive / absent).")


def _numpy(x: Any) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def mean_auc(y_true: Any, y_score: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-label ROC AUC and their mean.

    y_true, y_score: (N, C) arrays or tensors (labels 0/1, scores any monotone value such as probabilities).
    Returns {"mean": float, "per_class": {name: auc or NaN}, "excluded": [names with a single label value]}.
    """
    y_true, y_score = _numpy(y_true), _numpy(y_score)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None]
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must have the same (N, C) shape")
    names = list(names) if names is not None else [str(i) for i in range(y_true.shape[1])]
    if len(names) != y_true.shape[1]:
        raise ValueError(f"{len(names)} names for {y_true.shape[1]} label columns")
    per_class: dict[str, float] = {}
    excluded: list[str] = []
    for c, name in enumerate(names):
        if np.unique(y_true[:, c]).size < 2:
            per_class[name] = float("nan")
            excluded.append(name)
        else:
            per_class[name] = float(roc_auc_score(y_true[:, c], y_score[:, c]))
    kept = [v for v in per_class.values() if not np.isnan(v)]
    return {"mean": float(np.mean(kept)) if kept else float("nan"), "per_class": per_class, "excluded": excluded}


def worst_hd95(shape: Sequence[int], spacing: Any = None) -> float:
    """The HD95 given to a missed or false-positive structure: the image diagonal in mm.

    shape: spatial size in voxels; spacing: voxel size per axis in mm (None = 1 mm). BraTS challenge convention:
    240 x 240 x 155 at 1 mm gives 373.13 mm.
    """
    size = np.asarray(shape, dtype=float) * (np.ones(len(shape)) if spacing is None else np.asarray(spacing, float))
    return float(math.sqrt(float((size ** 2).sum())))


def dice_hd95(pred_onehot: torch.Tensor, target_onehot: torch.Tensor, spacing: Any = None,
              names: Sequence[str] | None = None, hd95: bool = True, empty: str = "perfect") -> dict[str, Any]:
    """Dice and HD95 (mm) per case and class, with the empty-structure conventions of the module docstring
    (hd95=False: Dice only; HD95's distance transforms cost more than the rest of an evaluation, so validation
    during training skips them).

    pred_onehot, target_onehot: binary (B, C, *spatial), one channel per evaluated class (no background unless
    you include it). spacing: voxel size per spatial axis in mm (array axis order), one sequence for all cases
    or one per case; None = 1 mm. empty: "perfect" (absent from both = Dice 1, HD95 0) or "exclude" (NaN, left
    out of the class mean). Returns {"names": [...], "dice": (B, C), "hd95": (B, C) (when asked), "status":
    (B, C) array of STATUSES, "empty": empty}. Raises ValueError on mismatched shapes or names.
    """
    if pred_onehot.shape != target_onehot.shape:
        raise ValueError(f"prediction {tuple(pred_onehot.shape)} and target {tuple(target_onehot.shape)} differ")
    if empty not in EMPTY_CONVENTIONS:
        raise ValueError(f"empty must be one of {EMPTY_CONVENTIONS}, got {empty!r}")
    names = list(names) if names is not None else [str(i) for i in range(pred_onehot.shape[1])]
    if len(names) != pred_onehot.shape[1]:
        raise ValueError(f"{len(names)} names for {pred_onehot.shape[1]} channels")
    pred, target = pred_onehot.float() > 0.5, target_onehot.float() > 0.5
    p_sum = _numpy(pred.flatten(2).sum(-1)).astype(np.float64)
    t_sum = _numpy(target.flatten(2).sum(-1)).astype(np.float64)
    inter = _numpy((pred & target).flatten(2).sum(-1)).astype(np.float64)
    status = np.full(p_sum.shape, "present", dtype=object)
    status[(t_sum > 0) & (p_sum == 0)] = "missed"
    status[(t_sum == 0) & (p_sum > 0)] = "false_positive"
    status[(t_sum == 0) & (p_sum == 0)] = "absent"
    absent = status == "absent"
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(absent, 1.0, 2.0 * inter / (p_sum + t_sum))
    out = {"names": names, "dice": dice, "status": status, "empty": empty}
    if hd95:
        out["hd95"] = _hd95(pred, target, status, spacing)
    if empty == "exclude":
        for key in ("dice", "hd95"):
            if key in out:
                out[key] = np.where(absent, np.nan, out[key])
    return out


def _hd95(pred: torch.Tensor, target: torch.Tensor, status: np.ndarray, spacing: Any) -> np.ndarray:
    """HD95 (B, C) in mm: MONAI's where both masks hold voxels, the worst value or 0 by `status` elsewhere."""
    b = pred.shape[0]
    spacings = _per_case_spacing(spacing, b)
    hd = np.zeros(status.shape, dtype=np.float64)
    for i in range(b):
        worst = worst_hd95(pred.shape[2:], spacings[i])
        hd[i][(status[i] == "missed") | (status[i] == "false_positive")] = worst
        both = np.flatnonzero(status[i] == "present")
        if both.size == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)  # MONAI-internal deprecation notices
            value = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
                pred[i:i + 1, both].float(), target[i:i + 1, both].float(), spacing=spacings[i])
        value = _numpy(value)[0].astype(np.float64)
        hd[i, both] = np.where(np.isfinite(value), value, worst)
    return hd


def _per_case_spacing(spacing: Any, n: int) -> list[list[float] | None]:
    if spacing is None:
        return [None] * n
    arr = np.asarray(spacing, dtype=float)
    return [arr[i].tolist() for i in range(n)] if arr.ndim == 2 else [arr.tolist()] * n


def summarize_segmentation(values: dict[str, Any]) -> dict[str, float]:
    """Means over cases per class, then over classes, with the counts that say how they were made.

    Keys: dice, hd95, dice/<name>, hd95/<name> (the hd95 keys only when `values` holds HD95), and the number
    of cases per status: n_cases, n_missed, n_false_positive, n_absent, n_excluded (totals over classes) and
    n_missed/<name> etc. A NaN is allowed only for a case excluded under empty="exclude"; any other NaN raises
    ValueError. A class excluded in every case has a NaN mean, and so has the overall mean (never dropped).
    """
    names, status = list(values["names"]), values.get("status")
    if status is None:
        status = np.full(np.asarray(values["dice"]).shape, "present", dtype=object)
    excluded = (status == "absent") & (values.get("empty") == "exclude")
    out: dict[str, float] = {}
    for metric in [m for m in ("dice", "hd95") if m in values]:
        arr = np.asarray(values[metric], dtype=np.float64)
        stray = ~np.isfinite(arr) & ~excluded
        if stray.any():
            b, c = np.argwhere(stray)[0]
            raise ValueError(f"{metric} of class {names[c]!r} in case {b} is {arr[b, c]} without a stated convention")
        per_class = [float(arr[~excluded[:, c], c].mean()) if (~excluded[:, c]).any() else float("nan")
                     for c in range(len(names))]
        out[metric] = float(np.mean(per_class)) if per_class else float("nan")
        out.update({f"{metric}/{n}": v for n, v in zip(names, per_class)})
    out["n_cases"] = int(status.shape[0])
    for kind in ("missed", "false_positive", "absent"):
        counts = (status == kind).sum(0)
        out[f"n_{kind}"] = int(counts.sum())
        out.update({f"n_{kind}/{n}": int(k) for n, k in zip(names, counts)})
    out["n_excluded"] = int(excluded.sum())
    never = [n for c, n in enumerate(names) if status.shape[0] and np.isin(status[:, c], ("false_positive", "absent")).all()]
    if never:
        log.warning("class(es) %s absent from the ground truth of all %d cases: their scores measure only false "
                    "positives (check the label ids)", never, status.shape[0])
    return out
