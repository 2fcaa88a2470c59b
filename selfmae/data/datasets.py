"""`build_datasets(data_cfg, task)`: reader + paper transforms + (optional) in-memory cache, per split."""
from __future__ import annotations

from typing import Mapping

from monai.data import CacheDataset, Dataset

from .registry import dataset_spec
from .transforms import build_transforms


def read_splits(cfg: Mapping, task: str) -> dict[str, list[dict]]:
    """Item lists per split for cfg["dataset"] (its registry entry's reader); pretraining drops segmentation
    labels it does not need. Raises ValueError for an unknown dataset."""
    return dataset_spec(cfg).read(cfg, task)


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
