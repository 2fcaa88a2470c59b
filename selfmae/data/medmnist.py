"""MedMNIST `.npz` reader (2D and 3D, binary and multi-label): real data at laptop scale.

Items are `{"image": float32 (C, *spatial) in [0, 1], "label": float32 (n_labels,), "case_id": "train_00012"}`.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from .common import DataError, DataProblem

SPLITS = ("train", "val", "test")


def medmnist_file(cfg: Mapping) -> Path:
    """cfg["npz"], or data_dir when it is a file, or the only .npz inside data_dir."""
    path = Path(cfg.get("npz") or cfg["data_dir"])
    if path.is_dir():
        found = sorted(path.glob("*.npz"))
        if len(found) != 1:
            raise DataError([DataProblem(str(path), f"expected exactly one .npz file, found {len(found)}")])
        path = found[0]
    return path


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All six arrays of a MedMNIST file; DataError naming the file when it is missing, corrupt or incomplete."""
    path = Path(path)
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError([DataProblem(str(path), "file not found")]) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError([DataProblem(str(path), f"cannot read .npz ({err})")]) from None
    missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in arrays]
    if missing:
        raise DataError([DataProblem(str(path), f"missing key(s) {missing}")])
    return arrays


def to_items(images: np.ndarray, labels: np.ndarray, split: str, spatial_dims: int) -> list[dict]:
    """uint8 (N,H,W[,3]) or (N,D,H,W) + (N,L) -> item dicts with channel-first float images in [0, 1]."""
    imgs = images.astype(np.float32) / 255.0
    if imgs.ndim == spatial_dims + 2:  # trailing colour channel
        imgs = np.moveaxis(imgs, -1, 1)
    else:
        imgs = imgs[:, None]
    labs = labels.reshape(len(labels), -1).astype(np.float32)
    return [{"image": imgs[i], "label": labs[i], "case_id": f"{split}_{i:05d}"} for i in range(len(imgs))]


def read_medmnist(npz: str | os.PathLike, spatial_dims: int | None = None) -> dict[str, list[dict]]:
    """{"train", "val", "test"} item lists; spatial_dims (2|3) is inferred from the shapes when not given."""
    arrays = load_npz(npz)
    if spatial_dims is None:
        spatial_dims = 3 if arrays["train_images"].ndim == 4 and arrays["train_images"].shape[-1] not in (3,) else 2
    return {s: to_items(arrays[f"{s}_images"], arrays[f"{s}_labels"], s, spatial_dims) for s in SPLITS}
