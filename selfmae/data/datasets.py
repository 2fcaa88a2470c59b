"""`build_datasets(data_cfg, task)`: reader + paper transforms + (optional) in-memory cache, per split."""
from __future__ import annotations

from typing import Mapping

from monai.data import CacheDataset, Dataset

from .brats import read_brats
from .btcv import read_btcv
from .cxr14 import read_cxr14
from .medmnist import medmnist_file, read_medmnist
from .transforms import build_transforms


def read_splits(cfg: Mapping, task: str) -> dict[str, list[dict]]:
    """Item lists per split for cfg["dataset"]; pretraining drops segmentation labels it does not need."""
    dataset, seed = cfg["dataset"], int(cfg.get("split_seed", 0))
    if dataset == "cxr14":
        return read_cxr14(cfg["data_dir"], float(cfg.get("val_fraction", 0.1)), seed, cfg.get("max_images"))
    if dataset == "medmnist":
        return read_medmnist(medmnist_file(cfg), cfg.get("spatial_dims"))
    if dataset == "btcv":
        splits = read_btcv(cfg["data_dir"])
    elif dataset == "brats":
        splits = read_brats(cfg["data_dir"], float(cfg.get("val_fraction", 0.2)), seed)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    if task == "pretrain":
        splits = {k: [{kk: vv for kk, vv in it.items() if kk != "label"} for it in v] for k, v in splits.items()}
    return splits


def build_datasets(data_cfg: Mapping, task: str) -> dict[str, Dataset]:
    """{"train", "val"} (+ "test" for cxr14 and medmnist) MONAI datasets of item dicts (see transforms.py).

    With data_cfg["cache"] (default True) the deterministic part of each pipeline is computed once and kept in
    memory (monai CacheDataset), so later epochs skip decoding. 3D training items are lists of num_samples crops:
    load them with monai.data.DataLoader (list_data_collate).
    """
    splits = read_splits(data_cfg, task)
    workers = max(1, int(data_cfg.get("num_workers", 0) or 0))
    out = {}
    for split, items in splits.items():
        transform = build_transforms(data_cfg, task, train=split == "train")
        if data_cfg.get("cache", True):
            out[split] = CacheDataset(items, transform, num_workers=workers, progress=False)
        else:
            out[split] = Dataset(items, transform)
    return out
