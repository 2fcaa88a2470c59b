"""Paper metrics: mean AUC over labels (CXR14), Dice and HD95 in mm per class (BTCV, BraTS).

Thin wrappers over scikit-learn and MONAI that fix the paper's conventions and the awkward cases:
- AUC is undefined for a label with one value only in the evaluated set: that label is reported as excluded
  (value NaN) and left out of the mean, never an exception.
- Dice is NaN when the ground truth of a class is empty (MONAI's ignore_empty). HD95 is NaN when the prediction
  or the ground truth is empty (no surface to measure from). NaNs are reported per case and left out of means.
- HD95 is in millimetres: MONAI's HausdorffDistanceMetric gets the voxel spacing.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from sklearn.metrics import roc_auc_score


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


def dice_hd95(pred_onehot: torch.Tensor, target_onehot: torch.Tensor, spacing: Any = None,
              names: Sequence[str] | None = None, hd95: bool = True) -> dict[str, Any]:
    """Dice and HD95 (mm) per case and class (hd95=False: Dice only; HD95's distance transforms cost more than
    the rest of an evaluation, so validation during training skips them).

    pred_onehot, target_onehot: binary (B, C, *spatial), one channel per evaluated class (no background unless
    you include it). spacing: voxel size per spatial axis in mm (array axis order), one sequence for all cases
    or one per case; None = 1 mm. Returns {"names": [...], "dice": (B, C) array, "hd95": (B, C) array (when
    asked)} with NaN where a value is undefined (see module docstring).
    """
    if pred_onehot.shape != target_onehot.shape:
        raise ValueError(f"prediction {tuple(pred_onehot.shape)} and target {tuple(target_onehot.shape)} differ")
    names = list(names) if names is not None else [str(i) for i in range(pred_onehot.shape[1])]
    if len(names) != pred_onehot.shape[1]:
        raise ValueError(f"{len(names)} names for {pred_onehot.shape[1]} channels")
    pred, target = pred_onehot.float(), target_onehot.float()
    with warnings.catch_warnings():  # MONAI warns on empty masks; those values are NaN by design here
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)  # MONAI-internal deprecation notices
        dice = _numpy(DiceMetric(include_background=True, reduction="none", ignore_empty=True)(pred, target))
        if not hd95:
            return {"names": names, "dice": dice.astype(np.float64)}
        hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
            pred, target, spacing=_spacing_arg(spacing))
    dice, hd = dice.astype(np.float64), _numpy(hd).astype(np.float64)
    empty = (pred.flatten(2).sum(-1) == 0) | (target.flatten(2).sum(-1) == 0)
    hd[_numpy(empty).astype(bool) | ~np.isfinite(hd)] = np.nan
    return {"names": names, "dice": dice, "hd95": hd}


def _spacing_arg(spacing: Any) -> Any:
    if spacing is None:
        return None
    arr = np.asarray(spacing, dtype=float)
    return arr.tolist()


def summarize_segmentation(values: dict[str, Any]) -> dict[str, float]:
    """Means over cases per class (NaN ignored), then over classes: keys dice, hd95, dice/<name>, hd95/<name>
    (the hd95 keys only when `values` holds HD95)."""
    out: dict[str, float] = {}
    for metric in [m for m in ("dice", "hd95") if m in values]:
        per_class = [_nanmean(values[metric][:, c]) for c in range(len(values["names"]))]
        out[metric] = _nanmean(np.asarray(per_class))
        out.update({f"{metric}/{n}": v for n, v in zip(values["names"], per_class)})
    return out


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
