"""MSD Task01_BrainTumour reader: `dataset.json` + 4D channel-last NIfTI, and the label -> region conversion.

Items are `{"image": path (H,W,D,4 on disk), "label": path (H,W,D), "case_id": "BRATS_001"}`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .common import DataError, DataProblem, decathlon_items, read_json, seeded_holdout

BRATS_REGIONS = ("TC", "WT", "ET")
BRATS_MODALITIES = ("FLAIR", "T1w", "t1gd", "T2w")
BRATS_LABELS = {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}
# label ids making up each region, per convention (see data-formats.md, MONAI tutorials issue #1355)
REGION_LABELS = {
    "dataset_json": {"TC": (2, 3), "WT": (1, 2, 3), "ET": (3,)},
    "selfmedmae_code": {"TC": (2, 3), "WT": (1, 2, 3), "ET": (2,)},
}
DATASET_JSON_KEYS = ("name", "description", "tensorImageSize", "modality", "labels", "numTraining", "numTest",
                     "training", "test")


def find_root(data_dir: Path) -> Path:
    """The folder holding dataset.json: data_dir itself or data_dir/Task01_BrainTumour."""
    for cand in (data_dir, data_dir / "Task01_BrainTumour"):
        if (cand / "dataset.json").is_file():
            return cand
    raise DataError([DataProblem(str(data_dir / "Task01_BrainTumour" / "dataset.json"), "file not found")])


def label_to_regions(label: np.ndarray, et_convention: str = "dataset_json") -> np.ndarray:
    """MSD labels (1, *spatial) or (*spatial) with values 0..3 -> float32 (3, *spatial) masks TC, WT, ET."""
    if et_convention not in REGION_LABELS:
        raise ValueError(f"et_convention must be one of {list(REGION_LABELS)}, got {et_convention!r}")
    lab = np.asarray(label)
    lab = lab[0] if lab.ndim == 4 else lab
    ids = REGION_LABELS[et_convention]
    return np.stack([np.isin(lab, ids[r]) for r in BRATS_REGIONS]).astype(np.float32)


def read_brats(data_dir: str | os.PathLike, val_fraction: float = 0.2, split_seed: int = 0) -> dict[str, list[dict]]:
    """{"train", "val"} from dataset.json's "training" list, split at random (seeded) by case.

    `._*` resource files are skipped. Raises DataError naming dataset.json when it is missing or its list empty.
    """
    root = find_root(Path(data_dir))
    spec = read_json(root / "dataset.json")
    items = decathlon_items(root, spec.get("training", []))
    if not items:
        raise DataError([DataProblem(str(root / "dataset.json"), "split 'training' is empty")], "brats", data_dir)
    held = seeded_holdout([it["case_id"] for it in items], val_fraction, split_seed)
    return {"train": [it for it in items if it["case_id"] not in held],
            "val": [it for it in items if it["case_id"] in held]}


def modalities(data_dir: str | os.PathLike) -> tuple[str, ...]:
    """Channel names in file order, from dataset.json's "modality" map."""
    spec = read_json(find_root(Path(data_dir)) / "dataset.json")
    mod = spec.get("modality", {})
    return tuple(mod[k] for k in sorted(mod, key=int))
