"""Your own scans: any Medical Segmentation Decathlon task or nnU-Net v2 raw dataset, read from its dataset.json.

Layout (either form, see `dataset_json`): `<root>/dataset.json`, `imagesTr/` and, for fine-tuning, `labelsTr/`.
An image is one NIfTI per case (3D, or 4D with the channels on the LAST axis, as MSD ships them) or one 3D file
per channel (`<case>_0000.nii.gz`, `<case>_0001.nii.gz`, ..., nnU-Net's convention). Labels are 3D integer maps
with the ids `labels` declares.

Items are `{"image": path or [channel paths], "label": path, "case_id": str}`. Pre-training needs no labels (the
label paths are dropped, and never opened). Intensities follow the paper's two recipes: CT (every channel named
"CT" in dataset.json, as nnU-Net decides its CT normalisation) is clipped to [a_min, a_max] HU and scaled to
[0, 1] like BTCV; anything else (MRI) is z-scored per channel over its non-zero voxels like BraTS.

Every error is a DataError naming the file (dataset.json, a listed image, imagesTr/) and what is wrong.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from .common import DataError, DataProblem, decathlon_items, read_json, seeded_holdout
from .checks import _check_pairs
from .dataset_json import channel_names, label_ids, training_items

INTENSITIES = ("auto", "ct", "mri")


def find_root(data_dir: str | os.PathLike) -> Path:
    """The folder holding dataset.json: `data_dir` itself, or its only `Task*` / `Dataset*` subfolder.

    Raises DataError naming `data_dir/dataset.json` when there is none."""
    data_dir = Path(data_dir)
    if (data_dir / "dataset.json").is_file():
        return data_dir
    found = sorted(p.parent for p in data_dir.glob("*/dataset.json") if re.match(r"(Task|Dataset)\d", p.parent.name))
    if len(found) == 1:
        return found[0]
    extra = f" (several task folders inside: {', '.join(p.name for p in found)}; name one)" if found else ""
    raise DataError([DataProblem(str(data_dir / "dataset.json"), f"file not found{extra}: a Decathlon / nnU-Net "
                                                                  "task folder holds dataset.json, imagesTr/, labelsTr/")],
                    "decathlon", data_dir)


def read_spec(data_dir: str | os.PathLike) -> tuple[Path, dict]:
    """(task root, parsed dataset.json); DataError naming the file when it is missing or not valid JSON."""
    root = find_root(data_dir)
    return root, read_json(root / "dataset.json")


def channels(spec: Mapping) -> tuple[str, ...]:
    """Input channel names in file order (`modality` / `channel_names`); ("image",) when neither is given."""
    return channel_names(spec) or ("image",)


def intensity(spec: Mapping, setting: str = "auto") -> str:
    """"ct" or "mri": `setting` unless "auto", else "ct" when every declared channel is named CT.

    Raises ValueError for a setting outside INTENSITIES."""
    if setting not in INTENSITIES:
        raise ValueError(f"data.intensity must be one of {INTENSITIES}, got {setting!r}")
    if setting != "auto":
        return setting
    names = channel_names(spec)
    return "ct" if names and all(n.strip().upper() == "CT" for n in names) else "mri"


def classes(spec: Mapping, path: str | Path = "dataset.json") -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(label ids in file order with background 0 first, names of the foreground ids).

    The network's output channel c holds ids[c] (labels are mapped to 0..K-1 when the ids have gaps). Raises
    DataError naming `path` for nnU-Net region-based labels (not supported here) or no foreground label."""
    ids, regions = label_ids(spec, path)
    if regions:
        raise DataError([DataProblem(str(path), f"region-based labels {sorted(regions)} are not supported by the "
                                                "decathlon dataset: declare one id per label (BraTS regions: use "
                                                "--dataset brats)")])
    ids = {0: "background", **ids}
    if len(ids) < 2:
        raise DataError([DataProblem(str(path), "'labels' declares no foreground label to segment")])
    order = tuple(sorted(ids))
    return order, tuple(ids[i] for i in order[1:])


def case_items(root: Path, spec: Mapping) -> list[dict]:
    """Items of the training cases (the `training` list, or nnU-Net v2's imagesTr/ files).

    Raises DataError naming dataset.json (or imagesTr/) when there are none."""
    items = training_items(root, spec)
    if not items:
        problem = (DataProblem(str(root / "dataset.json"), "lists no training images") if "training" in spec else
                   DataProblem(str(root / "imagesTr"), f"holds no image files ending in "
                                                      f"{spec.get('file_ending', '.nii.gz')}"))
        raise DataError([problem], "decathlon", root)
    # a one-channel case stored as <case>_0000.nii.gz is simply its 3D file
    return [dict(it, image=it["image"][0]) if isinstance(it["image"], list) and len(it["image"]) == 1 else it
            for it in items]


def read_decathlon(data_dir: str | os.PathLike, val_fraction: float = 0.2, split_seed: int = 0,
                   with_labels: bool = True) -> dict[str, list[dict]]:
    """{"train", "val"}: the JSON's own `validation` list when it has one, else `val_fraction` of the cases held
    out at random (seeded, by case id). with_labels=False drops the label paths (pre-training).

    Raises DataError naming dataset.json when a split would be empty (fewer than 2 cases)."""
    root, spec = read_spec(data_dir)
    items = case_items(root, spec)
    if spec.get("validation"):
        splits = {"train": items, "val": decathlon_items(root, spec["validation"])}
    else:
        held = seeded_holdout([it["case_id"] for it in items], val_fraction, split_seed)
        splits = {"train": [it for it in items if it["case_id"] not in held],
                  "val": [it for it in items if it["case_id"] in held]}
    empty = [DataProblem(str(root / "dataset.json"), f"split {k!r} is empty: {len(items)} case(s) cannot be split "
                                                     f"{1 - val_fraction:g}/{val_fraction:g} into train and val "
                                                     "(at least 2 are needed)") for k, v in splits.items() if not v]
    if empty:
        raise DataError(empty, "decathlon", data_dir)
    if not with_labels:
        splits = {k: [{kk: vv for kk, vv in it.items() if kk != "label"} for it in v] for k, v in splits.items()}
    return splits


def check_decathlon(data_dir: Path, task: str | None = None) -> list[DataProblem]:
    """Every problem of a task folder: dataset.json (found, valid JSON, for "segment" labels with a foreground
    id), at least 2 cases, each listed image found, readable, finite, with the declared number of channels; each
    label (required for task "segment", checked where present otherwise, skipped for "pretrain") of the image's
    shape and affine with only declared ids. Only the keys it reads are required (a hand-written MSD-form file
    without `test` or `numTest` is fine)."""
    try:
        root, spec = read_spec(data_dir)
        splits = read_decathlon(data_dir, 0.2, 0, with_labels=task != "pretrain")
    except DataError as err:
        return list(err.problems)
    path = root / "dataset.json"
    problems = [DataProblem(str(path), f"case {it['case_id']} lists no label file") for it in
                splits["train"] + splits["val"] if task == "segment" and "label" not in it]
    try:
        ids = set(classes(spec, path)[0]) if task != "pretrain" else set()
    except DataError as err:
        if task == "segment":
            return problems + list(err.problems)
        ids = set()
    n = len(channel_names(spec)) or 1
    items = splits["train"] + splits["val"]
    if task != "segment":   # labels are optional: check the ones that exist
        items = [it if "label" in it and Path(it["label"]).is_file() else
                 {k: v for k, v in it.items() if k != "label"} for it in items]
    ndim = 4 if n > 1 else 3
    return problems + _check_pairs(items, ndim, n if n > 1 else None, ids or set(range(256)))
