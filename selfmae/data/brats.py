"""MSD Task01_BrainTumour reader: `dataset.json` + 4D channel-last NIfTI, and the label -> region conversion.

Items are `{"image": path (H,W,D,4 on disk), "label": path (H,W,D), "case_id": "BRATS_001"}` (an nnU-Net v2
folder stored one file per channel gives "image" as the list of its channel files).

Regions are built from the label ids the folder's dataset.json DECLARES, found by their names: MSD numbers
edema 1, non-enhancing tumour 2, enhancing tumour 3; BraTS 2018-2020 releases use 4 for the enhancing tumour
(and 1/2 for necrotic core and edema). TC = tumour core labels + enhancing, WT = every foreground label, ET =
enhancing (dataset.json convention) or the non-enhancing label (the SelfMedMAE code's ET, label 2 in MSD).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from .common import DataError, DataProblem, read_json, seeded_holdout
from .dataset_json import MSD_KEYS, channel_names, label_ids, training_items

BRATS_REGIONS = ("TC", "WT", "ET")
BRATS_MODALITIES = ("FLAIR", "T1w", "t1gd", "T2w")
BRATS_LABELS = {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}
# label ids making up each region for MSD's ids, per convention (see data-formats.md, MONAI tutorials issue #1355)
REGION_LABELS = {
    "dataset_json": {"TC": (2, 3), "WT": (1, 2, 3), "ET": (3,)},
    "selfmedmae_code": {"TC": (2, 3), "WT": (1, 2, 3), "ET": (2,)},
}
DATASET_JSON_KEYS = MSD_KEYS
# what a label's name says it is (checked in this order)
_ROLES = (("core", re.compile(r"non[-_ ]?enhanc|necro|\bncr\b|\bnet\b|ncr/net", re.I)),
          ("enhancing", re.compile(r"enhanc|^et$", re.I)),
          ("edema", re.compile(r"o?edema|^ed$", re.I)),
          ("background", re.compile(r"^(background|bg)$", re.I)))


def find_root(data_dir: Path) -> Path:
    """The folder holding dataset.json: data_dir itself or data_dir/Task01_BrainTumour."""
    for cand in (data_dir, data_dir / "Task01_BrainTumour"):
        if (cand / "dataset.json").is_file():
            return cand
    raise DataError([DataProblem(str(data_dir / "Task01_BrainTumour" / "dataset.json"), "file not found")])


def _role(name: str) -> str | None:
    return next((role for role, pattern in _ROLES if pattern.search(name.strip())), None)


def regions_from_spec(spec: Mapping, et_convention: str = "dataset_json",
                      path: str | Path = "dataset.json") -> dict[str, tuple[int, ...]]:
    """{"TC": ids, "WT": ids, "ET": ids} from the labels a dataset.json declares (MSD or nnU-Net v2 form).

    Each declared label is recognised by its name (edema, non-enhancing / necrotic core, enhancing tumour); with
    names that say nothing, only MSD's own ids 0..3 are accepted. Raises DataError naming `path` when the
    enhancing-tumour label cannot be told apart, and ValueError for an unknown `et_convention`.
    """
    if et_convention not in REGION_LABELS:
        raise ValueError(f"et_convention must be one of {list(REGION_LABELS)}, got {et_convention!r}")
    ids, declared = label_ids(spec, path)
    if declared:  # nnU-Net v2 region-based labels: whole tumour, tumour core, enhancing tumour
        named = {r: next((v for k, v in declared.items() if re.search(p, k, re.I)), None)
                 for r, p in (("WT", "whole"), ("TC", "core"), ("ET", "enhanc"))}
        et = named["ET"] or tuple(i for i, n in ids.items() if _role(n) == "enhancing")
        if named["WT"] and named["TC"] and et:
            code_et = tuple(sorted(set(named["TC"]) - set(et)))
            return {"TC": named["TC"], "WT": named["WT"], "ET": et if et_convention == "dataset_json" else code_et}
    roles: dict[str, list[int]] = {}
    for i, name in sorted(ids.items()):
        roles.setdefault(_role(name) or ("background" if i == 0 else "unknown"), []).append(i)
    foreground = tuple(i for i in sorted(ids) if i not in roles.get("background", []))
    if len(roles.get("enhancing", [])) == 1 and len(roles.get("core", [])) == 1 and not roles.get("unknown"):
        et, core = roles["enhancing"][0], roles["core"][0]
        return {"TC": tuple(sorted((core, et))), "WT": foreground,
                "ET": (et,) if et_convention == "dataset_json" else (core,)}
    if set(ids) == set(BRATS_LABELS):
        return dict(REGION_LABELS[et_convention])
    raise DataError([DataProblem(str(path), f"cannot tell the tumour regions from the declared labels {ids}: "
                                            "expected MSD's ids 0-3 or names saying edema / non-enhancing "
                                            "(necrotic) tumour / enhancing tumour")])


def region_ids(data_dir: str | os.PathLike | None, et_convention: str = "dataset_json") -> dict[str, tuple[int, ...]]:
    """The region definitions for the dataset at `data_dir` (from its dataset.json); MSD's when data_dir is None."""
    if not data_dir:
        return dict(REGION_LABELS[et_convention])
    path = find_root(Path(data_dir)) / "dataset.json"
    return regions_from_spec(read_json(path), et_convention, path)


def label_to_regions(label: np.ndarray, et_convention: str = "dataset_json",
                     regions: Mapping[str, tuple[int, ...]] | None = None) -> np.ndarray:
    """Labels (1, *spatial) or (*spatial) -> float32 (3, *spatial) masks TC, WT, ET.

    regions: the ids of each region (`region_ids` of the dataset); default MSD's ids under `et_convention`.
    """
    if et_convention not in REGION_LABELS:
        raise ValueError(f"et_convention must be one of {list(REGION_LABELS)}, got {et_convention!r}")
    lab = np.asarray(label)
    lab = lab[0] if lab.ndim == 4 else lab
    ids = regions or REGION_LABELS[et_convention]
    return np.stack([np.isin(lab, ids[r]) for r in BRATS_REGIONS]).astype(np.float32)


def read_brats(data_dir: str | os.PathLike, val_fraction: float = 0.2, split_seed: int = 0) -> dict[str, list[dict]]:
    """{"train", "val"} from dataset.json's "training" list (or nnU-Net v2's imagesTr/), split at random (seeded)
    by case.

    `._*` resource files are skipped. Raises DataError naming dataset.json when it is missing, its list is empty,
    or a split would be empty (fewer than 2 cases with val_fraction > 0).
    """
    root = find_root(Path(data_dir))
    spec = read_json(root / "dataset.json")
    items = training_items(root, spec)
    if not items:
        raise DataError([DataProblem(str(root / "dataset.json"), "split 'training' is empty")], "brats", data_dir)
    held = seeded_holdout([it["case_id"] for it in items], val_fraction, split_seed)
    splits = {"train": [it for it in items if it["case_id"] not in held],
              "val": [it for it in items if it["case_id"] in held]}
    if val_fraction > 0:
        empty = [DataProblem(str(root / "dataset.json"), f"split {k!r} is empty: {len(items)} training case(s) "
                                                         f"cannot be split {1 - val_fraction:g}/{val_fraction:g} "
                                                         "into train and val (at least 2 are needed)")
                 for k, v in splits.items() if not v]
        if empty:
            raise DataError(empty, "brats", data_dir)
    return splits


def modalities(data_dir: str | os.PathLike) -> tuple[str, ...]:
    """Channel names in file order, from dataset.json's "modality" (MSD) or "channel_names" (nnU-Net v2)."""
    return channel_names(read_json(find_root(Path(data_dir)) / "dataset.json"))
