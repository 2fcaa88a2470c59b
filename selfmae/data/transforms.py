"""The paper's preprocessing as MONAI dictionary transforms: ONE pipeline per dataset for every profile.

Only numbers from data_cfg (resize/crop, spacing, roi_size, num_samples, HU window) differ between tiny and
paper runs. Each pipeline starts with the deterministic part (load, reorient, resample, normalise, crop to
foreground, pad to roi) so `monai.data.CacheDataset` keeps it in memory and later epochs skip NIfTI decoding;
random crops/flips follow.

Output shapes (C = channels): CXR14 image (1, crop, crop) in [0, 1]; BTCV image (1, *roi) in [0, 1] and label
(1, *roi) long for training, whole volumes for evaluation; BraTS image (4, *roi) z-scored on non-zero voxels
and label (3, *roi) float masks TC, WT, ET.
"""
from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, get_track_meta, set_track_meta
from monai.transforms import (
    CenterSpatialCropd, ClassesToIndicesd, Compose, CropForegroundd, DeleteItemsd, EnsureChannelFirstd, EnsureTyped, FgBgToIndicesd,
    HistogramNormalized,
    LoadImaged, MapLabelValued, MapTransform, NormalizeIntensityd, Orientationd, RandCropByPosNegLabeld, RandFlipd,
    RandCropByLabelClassesd, RandRotate90d, RandSpatialCropd, RandSpatialCropSamplesd, Randomizable, Resized, ScaleIntensityRanged, Spacingd,
    SpatialPadd, Transform,
)

from .brats import label_to_regions, region_ids
from .btcv import organ_mapping
from .cxr14 import load_png

TASKS = ("pretrain", "classify", "segment")
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # nibabel world axes (stated: MONAI changes the default)


class LoadPNGd(MapTransform):
    """Load a ChestX-ray14 PNG as uint8 (1, H, W), whatever its stored mode (L, LA, RGB(A), 16-bit)."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = load_png(d[key])
        return d


class ConvertToRegionsd(MapTransform):
    """BraTS labels (1, *spatial) -> float (3, *spatial) masks TC, WT, ET.

    regions: the label ids of each region as the dataset declares them (`brats.region_ids`); default MSD's ids
    0..3 under `et_convention` (see brats.REGION_LABELS)."""

    def __init__(self, keys: KeysCollection, et_convention: str = "dataset_json",
                 regions: Mapping[str, Sequence[int]] | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        label_to_regions(np.zeros((1, 1, 1)), et_convention)  # validates the name early
        self.et_convention = et_convention
        self.regions = {k: tuple(v) for k, v in regions.items()} if regions else None

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            lab = d[key]
            regions = torch.from_numpy(label_to_regions(np.asarray(lab), self.et_convention, self.regions))
            d[key] = MetaTensor(regions, meta=lab.meta) if isinstance(lab, MetaTensor) else regions
        return d


def _flips(keys: Sequence[str], ndim: int, prob: float) -> list:
    return [RandFlipd(keys, prob=prob, spatial_axis=a) for a in range(ndim)]


def _random_crops(keys: Sequence[str], roi: Sequence[int], num_samples: int) -> RandSpatialCropSamplesd:
    return RandSpatialCropSamplesd(keys, roi_size=roi, num_samples=num_samples, random_size=False)


class RequireCropCentres(Transform):
    """DataError naming the image file when a training volume leaves `RandCropByPosNegLabeld` no voxel to centre a
    crop on (no label voxel, and no background voxel whose image is above 0): MONAI's "No sampling location
    available", said with the file, its shape after resampling to `spacing` (mm) and what to change. Happens when
    data.spacing is coarse for the volumes: 16 x 16 x 10 voxels at 1 mm are 3 x 3 x 2 at 7 mm, and a small label
    vanishes. Reads the indices `FgBgToIndicesd` wrote (keys label_fg_indices / label_bg_indices)."""

    def __init__(self, spacing: Sequence[float] | None) -> None:
        self.spacing = spacing

    def __call__(self, item: Mapping) -> Mapping:
        from .common import DataError, DataProblem

        if len(item["label_fg_indices"]) or len(item["label_bg_indices"]):
            return item
        image = item["image"]
        path = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
        spacing = f"data.spacing={list(self.spacing)} mm" if self.spacing else "the files' own spacing"
        raise DataError([DataProblem(str(path or item.get("case_id", "a training volume")),
                                     f"no voxel to centre a training crop on at {spacing}: once resampled "
                                     "and cropped to the foreground, it holds no label voxel and no background "
                                     f"voxel above 0 ({'x'.join(map(str, image.shape[1:]))} voxels once padded "
                                     "to roi_size); use a finer data.spacing (null keeps the files' own) or "
                                     "larger volumes")])


def posneg_crops(keys: Sequence[str], roi: Sequence[int], num_samples: int, spacing: Sequence[float] | None) -> list:
    """Training crops centred on foreground and background voxels 1:1 (the UNETR/SelfMedMAE recipe): the voxel
    lists are computed once (cached by CacheDataset), not for every crop; a volume with none is a DataError
    naming its file (`RequireCropCentres`)."""
    return [FgBgToIndicesd("label", image_key="image", image_threshold=0), RequireCropCentres(spacing),
            RandCropByPosNegLabeld(keys, label_key="label", spatial_size=roi, pos=1, neg=1, num_samples=num_samples,
                                   image_key="image", image_threshold=0, fg_indices_key="label_fg_indices",
                                   bg_indices_key="label_bg_indices"),
            DeleteItemsd(["label_fg_indices", "label_bg_indices"])]


def cxr14_transforms(cfg: Mapping, train: bool) -> Compose:
    """Histogram equalisation on load, resize to `resize`, intensities scaled to [0, 1] and then z-scored per
    image (zero mean, unit variance: the role of MAE's ImageNet mean/std normalisation, so the patch embedding
    sees contrasts of order 1, not 0.1), random crop `crop` + horizontal flip (train) or centre crop (eval).
    Image (1, crop, crop) float32, label (14,) float32 (an item without a label is prepared all the same)."""
    size, crop = int(cfg["resize"]), int(cfg["crop"])
    steps = [
        LoadPNGd("image"),
        HistogramNormalized("image", num_bins=256, min=0, max=255),
        Resized("image", spatial_size=(size, size), mode="area"),
        ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0.0, b_max=1.0, clip=True),
        NormalizeIntensityd("image"),
        EnsureTyped(["image", "label"], dtype=torch.float32, track_meta=False, allow_missing_keys=True),
    ]
    if train:
        steps += [RandSpatialCropd("image", roi_size=(crop, crop), random_size=False),
                  RandFlipd("image", prob=0.5, spatial_axis=1)]
    else:
        steps.append(CenterSpatialCropd("image", roi_size=(crop, crop)))
    return Compose(steps)


def btcv_transforms(cfg: Mapping, task: str, train: bool) -> Compose:
    """Orientation RAS, Spacing, HU window [a_min, a_max] -> [0, 1] (clipped), foreground crop, optionally
    z-scored (`zscore: true`; nnFormer's stem normalises each voxel's channels, which erases the magnitude of a
    non-negative input), pad to roi; then
    random roi crops (pretrain: plain random crops, no labels; segment: pos/neg label sampling), flips, 90°
    rotations. Evaluation: whole volumes (segment) or a centre roi crop (pretrain)."""
    roi = [int(r) for r in cfg["roi_size"]]
    keys = ["image", "label"] if task == "segment" else ["image"]
    steps = [
        LoadImaged(keys, image_only=True),
        EnsureChannelFirstd(keys),
        Orientationd(keys, axcodes="RAS", labels=RAS_LABELS),
        Spacingd(keys, pixdim=cfg["spacing"], mode=("bilinear", "nearest")[: len(keys)]),
        ScaleIntensityRanged("image", a_min=cfg["a_min"], a_max=cfg["a_max"],
                             b_min=0.0, b_max=1.0, clip=True),
    ]
    if task == "segment":
        steps.append(MapLabelValued("label", *organ_mapping(int(cfg["organs"])), dtype=np.uint8))
    steps.append(CropForegroundd(keys, source_key="image"))
    if cfg.get("zscore"):  # nnU-Net/nnFormer-style: zero mean, unit variance over the (foreground-cropped) volume
        steps.append(NormalizeIntensityd("image"))
    steps += [SpatialPadd(keys, spatial_size=roi), EnsureTyped(keys, dtype=torch.float32)]
    if train and task == "segment" and cfg.get("crop_sampling", "posneg") == "classes":
        # every class (background and each organ) equally often at a crop's centre: small organs are seen as
        # often as the liver (`data.crop_sampling: classes`; the paper's pipeline samples pos/neg 1:1)
        n_classes = int(cfg["organs"]) + 1
        steps += [ClassesToIndicesd("label", num_classes=n_classes),
                  RandCropByLabelClassesd(keys, label_key="label", spatial_size=roi, num_classes=n_classes,
                                          num_samples=int(cfg["num_samples"]),
                                          indices_key="label_cls_indices", warn=False),
                  DeleteItemsd(["label_cls_indices"])]
    elif train and task == "segment":  # fg/bg voxel lists are computed once (cached), not for every crop
        steps += posneg_crops(keys, roi, int(cfg["num_samples"]), cfg["spacing"])
    elif train:
        steps.append(_random_crops(keys, roi, int(cfg["num_samples"])))
    elif task == "pretrain":
        steps.append(CenterSpatialCropd(keys, roi_size=roi))
    if train and float(cfg.get("augment_prob", 0.1)) > 0:  # the SelfMedMAE recipe: 0.1 per flip axis and rotation
        p = float(cfg.get("augment_prob", 0.1))
        steps += _flips(keys, 3, p) + [RandRotate90d(keys, prob=p, max_k=3)]
    if task == "segment":
        steps.append(EnsureTyped("label", dtype=torch.long))
    return Compose(steps)


def brats_transforms(cfg: Mapping, task: str, train: bool) -> Compose:
    """Channel-last 4D image -> (4, ...), optional resampling to cfg["spacing"] (MSD is already 1 mm), labels to
    TC/WT/ET, foreground crop, z-score over non-zero voxels per channel, pad to roi; then random roi crops and
    flips for training; whole volumes (segment) or a centre crop (pretrain) for evaluation."""
    roi = [int(r) for r in cfg["roi_size"]]
    keys = ["image", "label"] if task == "segment" else ["image"]
    steps = [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys), Orientationd(keys, axcodes="RAS", labels=RAS_LABELS)]
    if cfg["spacing"]:
        steps.append(Spacingd(keys, pixdim=cfg["spacing"], mode=("bilinear", "nearest")[: len(keys)]))
    if task == "segment":
        convention = cfg["et_convention"]
        steps.append(ConvertToRegionsd("label", convention, region_ids(cfg["data_dir"], convention)))
    steps += [
        CropForegroundd(keys, source_key="image"),
        NormalizeIntensityd("image", nonzero=True, channel_wise=True),
        SpatialPadd(keys, spatial_size=roi),
        EnsureTyped(keys, dtype=torch.float32),
    ]
    if train:
        steps += [_random_crops(keys, roi, int(cfg["num_samples"]))] + _flips(keys, 3, 0.5)
    elif task == "pretrain":
        steps.append(CenterSpatialCropd(keys, roi_size=roi))
    return Compose(steps)


def medmnist_transforms(cfg: Mapping, train: bool) -> Compose:
    """Images arrive as float (C, *spatial) in [0, 1] and are z-scored per image (as CXR14); optional `resize`,
    then `crop` (2D) or `roi_size` (3D): random crop + flip for training, centre crop for evaluation."""
    dims = int(cfg.get("spatial_dims", 2))
    steps: list = [EnsureTyped(["image", "label"], dtype=torch.float32, track_meta=False, allow_missing_keys=True),
                   NormalizeIntensityd("image")]
    if cfg.get("resize"):
        steps.append(Resized("image", spatial_size=[int(cfg["resize"])] * dims, mode="area"))
    crop = cfg.get("crop") if dims == 2 else cfg.get("roi_size")
    if crop:
        crop = [int(crop)] * dims if np.isscalar(crop) else [int(c) for c in crop]
        steps.append(SpatialPadd("image", spatial_size=crop))
        if train:
            steps += [RandSpatialCropd("image", roi_size=crop, random_size=False),
                      RandFlipd("image", prob=0.5, spatial_axis=dims - 1)]
        else:
            steps.append(CenterSpatialCropd("image", roi_size=crop))
    return Compose(steps)


class WithoutMeta(Compose):
    """Transforms run with MONAI's metadata tracking off, returning plain tensors.

    Why: training pipelines' random steps (crops, flips, rotations) run on every item of every epoch, and tracking
    their metadata (affine updates, transform stacks, deep copies) costs 2-4x the transforms themselves; training
    never reads it. Evaluation pipelines keep their metadata (HD95 may read the voxel spacing from the affine).
    """

    def __call__(self, data, *args, **kwargs):
        previous = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(data, *args, **kwargs)
        finally:
            set_track_meta(previous)


class PlainTensors(Transform):
    """MetaTensors of an item -> plain tensors: the last cached step of training pipelines (CacheDataset deep-copies
    the cached item for every draw, and copying metadata costs more than the copy of the voxels)."""

    def __call__(self, item: Mapping) -> dict:
        return {k: v.as_tensor() if isinstance(v, MetaTensor) else v for k, v in item.items()}


def per_epoch_without_meta(pipeline: Compose) -> Compose:
    """`pipeline` with plain tensors from its first random step on, and those steps wrapped in WithoutMeta
    (CacheDataset still caches the deterministic steps before them)."""
    steps = list(pipeline.transforms)
    first = next((i for i, t in enumerate(steps) if isinstance(t, Randomizable)), len(steps))
    return Compose(steps[:first] + [PlainTensors(), WithoutMeta(steps[first:])])


def build_transforms(cfg: Mapping, task: str, train: bool) -> Compose:
    """The pipeline for cfg["dataset"] and `task` (pretrain|classify|segment); training pipelines run their
    random steps without metadata (`WithoutMeta`)."""
    pipeline = _dataset_transforms(cfg, task, train)
    return per_epoch_without_meta(pipeline) if train else pipeline


def _dataset_transforms(cfg: Mapping, task: str, train: bool) -> Compose:
    """The registry entry's pipeline; ValueError for an unknown task, dataset, or a task the dataset does not serve."""
    from .registry import dataset_spec

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    spec = dataset_spec(cfg)
    spec.require_task(task)
    return spec.transforms(cfg, task, train)
