"""MedMNIST `.npz` reader (2D and 3D; binary, multi-class and multi-label): real data at laptop scale.

Items are `{"image": float32 (C, *spatial) in [0, 1], "label": float32 (n_outputs,), "case_id": "train_00012"}`.
The file decides what it holds (`file_spatial_dims`, `label_spec`): 2D images (N, H, W[, 3]) or 3D volumes
(N, D, H, W); one binary label column (1 output), one column of class ids 0..K-1 with K > 2 (multi-class, one-hot
to K outputs, as MedMNIST scores them one class against the rest), or several 0/1 columns (multi-label).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
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


def load_npz(path: str | os.PathLike, keys: tuple[str, ...] = ("images", "labels")) -> dict[str, np.ndarray]:
    """The arrays of a MedMNIST file (`keys`: "images" and/or "labels" of every split); DataError naming the file
    when it is missing, corrupt or incomplete."""
    path = Path(path)
    wanted = [f"{s}_{k}" for s in SPLITS for k in keys]
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in wanted if k in npz.files}
    except FileNotFoundError:
        raise DataError([DataProblem(str(path), "file not found")]) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError([DataProblem(str(path), f"cannot read .npz ({err})")]) from None
    missing = [k for k in wanted if k not in arrays]
    if missing:
        raise DataError([DataProblem(str(path), f"missing key(s) {missing}")])
    return arrays


def file_spatial_dims(images: np.ndarray) -> int:
    """3 for volumes (N, D, H, W), 2 for images (N, H, W) or colour images (N, H, W, 3)."""
    return 3 if images.ndim == 4 and images.shape[-1] != 3 else 2


@dataclass(frozen=True)
class LabelSpec:
    """What a file's labels are: kind "binary" | "multi-class" | "multi-label", the model outputs they need, and
    a name per output ("label"; "class 0".."class K-1"; "label 0".."label L-1")."""
    kind: str
    n_outputs: int
    names: tuple[str, ...]


def label_spec(arrays: Mapping[str, np.ndarray], path: str | os.PathLike = "") -> LabelSpec:
    """The LabelSpec of a file's `*_labels` arrays (all splits together, so a class absent from one split still
    counts). DataError naming the file when labels are not non-negative integers."""
    labels = [np.asarray(arrays[f"{s}_labels"]).reshape(len(arrays[f"{s}_labels"]), -1) for s in SPLITS]
    values = np.concatenate([lab.ravel() for lab in labels]) if labels else np.zeros(0)
    if values.size and (not np.all(np.isfinite(values)) or values.min() < 0 or np.any(values != np.round(values))):
        raise DataError([DataProblem(str(path), "labels must be non-negative integers (0/1 per label column, or "
                                                "class ids 0..K-1 in one column)")])
    width = labels[0].shape[1]
    top = int(values.max()) if values.size else 0
    if width > 1:
        if top > 1:
            raise DataError([DataProblem(str(path), f"{width} label columns hold values up to {top}; several "
                                                    "columns must be 0/1 labels (multi-label)")])
        return LabelSpec("multi-label", width, tuple(f"label {i}" for i in range(width)))
    if top <= 1:
        return LabelSpec("binary", 1, ("label",))
    return LabelSpec("multi-class", top + 1, tuple(f"class {i}" for i in range(top + 1)))


def read_label_spec(npz: str | os.PathLike) -> LabelSpec:
    """`label_spec` of a file, reading only its label arrays."""
    return label_spec(load_npz(npz, ("labels",)), npz)


def to_items(images: np.ndarray, labels: np.ndarray, split: str, spatial_dims: int,
             spec: LabelSpec | None = None) -> list[dict]:
    """uint8 (N,H,W[,3]) or (N,D,H,W) + (N,L) -> item dicts with channel-first float images in [0, 1] and float
    labels (n_outputs,): class ids one-hot when `spec` is multi-class."""
    imgs = images.astype(np.float32) / 255.0
    if imgs.ndim == spatial_dims + 2:  # trailing colour channel
        imgs = np.moveaxis(imgs, -1, 1)
    else:
        imgs = imgs[:, None]
    labs = labels.reshape(len(labels), -1).astype(np.float32)
    if spec is not None and spec.kind == "multi-class":
        labs = np.eye(spec.n_outputs, dtype=np.float32)[labs[:, 0].astype(np.int64)]
    return [{"image": imgs[i], "label": labs[i], "case_id": f"{split}_{i:05d}"} for i in range(len(imgs))]


def read_medmnist(npz: str | os.PathLike, spatial_dims: int | None = None) -> dict[str, list[dict]]:
    """{"train", "val", "test"} item lists; spatial_dims (2|3) is the file's (`file_spatial_dims`), and a config
    that says otherwise is refused with a DataError naming the file and what it holds."""
    arrays = load_npz(npz)
    found = file_spatial_dims(arrays["train_images"])
    if spatial_dims is not None and int(spatial_dims) != found:
        configs = "pretrain_medmnist3d / finetune_medmnist3d" if found == 3 else "pretrain_medmnist / finetune_medmnist"
        raise DataError([DataProblem(str(npz), f"holds {found}D images (train_images of shape "
                                               f"{arrays['train_images'].shape}) but the config says "
                                               f"data.spatial_dims={spatial_dims}; use the {found}D configs "
                                               f"({configs})")])
    spec = label_spec(arrays, npz)
    return {s: to_items(arrays[f"{s}_images"], arrays[f"{s}_labels"], s, found, spec) for s in SPLITS}
