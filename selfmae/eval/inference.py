"""Whole-volume evaluation for segmentation: sliding-window inference, post-processing, per-case metrics.

Two label conventions (`kind`, a dataset's `segmentation_kind` in the registry):
    "classes"  mutually exclusive classes: labels (B, 1, *spatial) hold class ids, outputs are one softmax, the
               prediction is their argmax; channels `class_indices` (default 1..K) evaluated one-vs-rest (BTCV).
    "regions"  overlapping regions (nnU-Net's "region-based" training): labels (B, R, *spatial) hold one binary
               mask per region, outputs are independent sigmoids thresholded at 0.5; every channel evaluated
               (BraTS TC, WT, ET).
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from monai.data.utils import affine_to_spacing
from monai.inferers import sliding_window_inference
from monai.networks.utils import one_hot

from selfmae.io import atomic_write_text

from .metrics import dice_hd95, summarize_segmentation

log = logging.getLogger("selfmae.eval")

CLASSES, REGIONS = "classes", "regions"
SEGMENTATION_KINDS = (CLASSES, REGIONS)


def check_kind(kind: str) -> str:
    """`kind` when it is one of SEGMENTATION_KINDS, else ValueError naming both."""
    if kind not in SEGMENTATION_KINDS:
        raise ValueError(f"segmentation kind must be {CLASSES!r} or {REGIONS!r}, got {kind!r}")
    return kind


def sliding_window_predict(model: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                           roi_size: Sequence[int], sw_batch_size: int = 1, overlap: float = 0.5,
                           mode: str = "constant") -> torch.Tensor:
    """Logits (B, C_out, *spatial) for a whole volume (B, C_in, *spatial) from windows of `roi_size`."""
    return sliding_window_inference(image, list(roi_size), sw_batch_size, model, overlap=overlap, mode=mode)


def postprocess(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Logits (B, C_out, *spatial) -> binary (B, C_out, *spatial): one-hot argmax for "classes", sigmoid > 0.5 for
    "regions"; ValueError for another kind."""
    if check_kind(kind) == CLASSES:
        return one_hot(logits.argmax(1, keepdim=True), num_classes=logits.shape[1], dim=1)
    return (torch.sigmoid(logits.float()) > 0.5).float()


def target_onehot(label: torch.Tensor, kind: str, num_channels: int) -> torch.Tensor:
    """"classes" labels (B, 1, *spatial) with values 0..C-1 -> one-hot (B, C, *spatial); "regions" labels
    (B, R, *spatial) -> binary."""
    if check_kind(kind) == CLASSES:
        return one_hot(label.long(), num_classes=num_channels, dim=1)
    return (label > 0.5).float()


def case_spacing(image: Any, index: int, spacing: Sequence[float] | None) -> list[float] | None:
    """The given spacing, else the voxel size from a MetaTensor's affine, else None (1 mm, logged)."""
    if spacing is not None:
        return [float(s) for s in spacing]
    affine = getattr(image, "affine", None)
    if affine is None:
        log.warning("no spacing given and the image has no affine: HD95 computed with 1 mm voxels")
        return None
    affine = affine[index] if affine.ndim == 3 else affine
    return [float(s) for s in affine_to_spacing(affine, r=image.ndim - 2)]


@dataclass
class SegmentationResult:
    summary: dict[str, float]                       # dice, hd95, dice/<name>, hd95/<name>
    rows: list[dict[str, Any]] = field(default_factory=list)   # one per case and class


@torch.no_grad()
def evaluate_segmentation(model: Callable[[torch.Tensor], torch.Tensor], loader: Iterable[dict], *, kind: str,
                          roi_size: Sequence[int], class_names: Sequence[str],
                          class_indices: Sequence[int] | None = None, spacing: Sequence[float] | None = None,
                          sw_batch_size: int = 1, overlap: float = 0.5, mode: str = "constant",
                          device: torch.device | str = "cpu", out_csv: str | Path | None = None,
                          hd95: bool = True, empty: str = "perfect") -> SegmentationResult:
    """Dice/HD95 of `model` on whole volumes from `loader` (items with "image", "label", optional "case_id").

    kind: the label convention, "classes" or "regions" (module docstring); ValueError for another.
    class_indices: output channels to evaluate, in `class_names` order (default: classes 1..K, regions 0..K-1).
    out_csv: also write the per-case rows (case_id, class, dice[, hd95_mm], status) there, atomically; status
    says which convention of `selfmae.eval.metrics` scored the row (present / missed / false_positive / absent).
    hd95: also compute HD95 in mm (False: Dice only, as validation during training does).
    empty: the convention for a class absent from both truth and prediction ("perfect" or "exclude").
    """
    k = len(class_names)
    idx = list(class_indices) if class_indices is not None else list(range(1, k + 1) if check_kind(kind) == CLASSES else range(k))
    if len(idx) != k:
        raise ValueError(f"{len(idx)} class_indices for {k} class_names")
    rows: list[dict[str, Any]] = []
    dice_all, hd_all, status_all = [], [], []
    for n, batch in enumerate(loader):
        image = batch["image"].to(device)
        logits = sliding_window_predict(model, image, roi_size, sw_batch_size, overlap, mode)
        pred = postprocess(logits, kind)[:, idx]
        target = target_onehot(batch["label"].to(device), kind, logits.shape[1])[:, idx]
        ids = batch.get("case_id", [f"case{n}_{b}" for b in range(image.shape[0])])
        for b in range(image.shape[0]):
            v = dice_hd95(pred[b:b + 1], target[b:b + 1], case_spacing(batch["image"], b, spacing), class_names,
                          hd95=hd95, empty=empty)
            dice_all.append(v["dice"][0])
            status_all.append(v["status"][0])
            case_rows = [{"case_id": str(ids[b]), "class": name, "dice": float(v["dice"][0, c])}
                         for c, name in enumerate(class_names)]
            if hd95:
                hd_all.append(v["hd95"][0])
                for c, row in enumerate(case_rows):
                    row["hd95_mm"] = float(v["hd95"][0, c])
            for c, row in enumerate(case_rows):
                row["status"] = str(v["status"][0, c])
            rows += case_rows
    values = {"names": list(class_names), "dice": np.array(dice_all).reshape(-1, k),
              "status": np.array(status_all, dtype=object).reshape(-1, k), "empty": empty}
    if hd95:
        values["hd95"] = np.array(hd_all).reshape(-1, k)
    if out_csv is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["case_id", "class", "dice"] + ["hd95_mm"] * hd95 + ["status"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out_csv, buf.getvalue())
    return SegmentationResult(summarize_segmentation(values), rows)
