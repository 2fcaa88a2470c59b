"""The pipeline of the generic Decathlon / nnU-Net dataset (`decathlon.py`): the paper's BTCV recipe for CT, its
BraTS recipe for MRI, one set of steps for both.

Deterministic part (cached by CacheDataset): load (a 4D channel-last file or the list of a case's channel files)
-> (C, X, Y, Z), orientation RAS, optional resampling to `spacing` (mm; null keeps the files' voxels), then
  * CT: HU clipped to [a_min, a_max] and scaled to [0, 1], crop to the foreground (> 0), as BTCV;
  * MRI: crop to the foreground, z-score per channel over non-zero voxels, as BraTS;
labels mapped to 0..K-1 when their declared ids have gaps, pad to `roi_size`. Training then draws `num_samples`
crops of roi_size (fine-tuning: foreground/background centres 1:1; pre-training: uniform) with flips and 90°
rotations of probability `augment_prob` each; evaluation gives whole volumes (segment) or a centre crop (pretrain).

Output: image float32 (C, *roi) for training, label long (1, *roi) with values 0..K-1.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from monai.transforms import (
    CenterSpatialCropd, Compose, CropForegroundd, EnsureChannelFirstd, EnsureTyped, LoadImaged, MapLabelValued,
    NormalizeIntensityd, Orientationd, RandRotate90d, ScaleIntensityRanged, Spacingd, SpatialPadd,
)

from .decathlon import classes, intensity, read_spec
from .transforms import RAS_LABELS, _flips, _random_crops, posneg_crops


def decathlon_transforms(cfg: Mapping, task: str, train: bool) -> Compose:
    """The pipeline for the task folder at cfg["data_dir"] (its dataset.json decides CT or MRI and the labels).

    Reads the keys the config defines (pretrain/finetune_decathlon.yaml; `Decathlon.data_keys`): data_dir,
    roi_size, spacing (null: the files' voxels), intensity, a_min/a_max (HU), num_samples, augment_prob.
    Raises DataError naming dataset.json when it cannot be read, ValueError for a bad `intensity` setting,
    KeyError for a missing key."""
    _, spec = read_spec(cfg["data_dir"])
    roi = [int(r) for r in cfg["roi_size"]]
    keys = ["image", "label"] if task == "segment" else ["image"]
    steps: list = [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys),
                   Orientationd(keys, axcodes="RAS", labels=RAS_LABELS)]
    if cfg["spacing"]:
        steps.append(Spacingd(keys, pixdim=cfg["spacing"], mode=("bilinear", "nearest")[: len(keys)]))
    if task == "segment":
        ids = list(classes(spec, cfg["data_dir"])[0])
        if ids != list(range(len(ids))):
            steps.append(MapLabelValued("label", ids, list(range(len(ids))), dtype=np.uint8))
    if intensity(spec, cfg["intensity"]) == "ct":
        steps += [ScaleIntensityRanged("image", a_min=cfg["a_min"], a_max=cfg["a_max"],
                                       b_min=0.0, b_max=1.0, clip=True),
                  CropForegroundd(keys, source_key="image")]
    else:
        steps += [CropForegroundd(keys, source_key="image"),
                  NormalizeIntensityd("image", nonzero=True, channel_wise=True)]
    steps += [SpatialPadd(keys, spatial_size=roi), EnsureTyped(keys, dtype=torch.float32)]
    n = int(cfg["num_samples"])
    if train and task == "segment":
        steps += posneg_crops(keys, roi, n, cfg["spacing"])
    elif train:
        steps.append(_random_crops(keys, roi, n))
    elif task == "pretrain":
        steps.append(CenterSpatialCropd(keys, roi_size=roi))
    p = float(cfg["augment_prob"])
    if train and p > 0:
        steps += _flips(keys, 3, p) + [RandRotate90d(keys, prob=p, max_k=3)]
    if task == "segment":
        steps.append(EnsureTyped("label", dtype=torch.long))
    return Compose(steps)
