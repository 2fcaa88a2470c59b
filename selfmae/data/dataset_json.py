"""`dataset.json` in both of its common forms, read in one place.

* Medical Segmentation Decathlon (MSD): `"modality": {"0": "FLAIR", ...}`, `"labels": {"0": "background", ...}`
  (id -> name), `"training": [{"image": ..., "label": ...}]`.
* nnU-Net v2: `"channel_names": {"0": "FLAIR", ...}`, `"labels": {"background": 0, ...}` (name -> id, or name ->
  [ids] for a region), `"file_ending": ".nii.gz"`, and usually no file list: cases are the files of `imagesTr/`
  (`<case><file_ending>`, or one file per channel `<case>_0000<file_ending>`, ...) with `labelsTr/<case><ending>`.
Every reader of a dataset.json goes through these functions, so both forms work everywhere.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from .common import DataError, DataProblem, decathlon_items, is_resource_fork

MSD_KEYS = ("name", "description", "tensorImageSize", "modality", "labels", "numTraining", "numTest", "training",
            "test")
NNUNET_V2_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def is_nnunet_v2(spec: Mapping) -> bool:
    """True for the nnU-Net v2 form (it has `channel_names` or `file_ending`; MSD has neither)."""
    return "channel_names" in spec or "file_ending" in spec


def missing_keys(spec: Mapping) -> list[str]:
    """The keys its form requires that `spec` lacks (MSD_KEYS or NNUNET_V2_KEYS)."""
    return [k for k in (NNUNET_V2_KEYS if is_nnunet_v2(spec) else MSD_KEYS) if k not in spec]


def channel_names(spec: Mapping) -> tuple[str, ...]:
    """Input channel names in file order, from `modality` (MSD) or `channel_names` (nnU-Net v2); () if neither."""
    names = spec.get("channel_names") or spec.get("modality") or {}
    return tuple(str(names[k]) for k in sorted(names, key=int))


def label_ids(spec: Mapping, path: str | Path = "dataset.json") -> tuple[dict[int, str], dict[str, tuple[int, ...]]]:
    """(id -> name, region name -> ids) from `labels` in either form; the second is non-empty only for nnU-Net
    v2 region-based labels (`"whole_tumor": [1, 2, 3]`). Raises DataError naming `path` when an id is not an
    integer."""
    ids: dict[int, str] = {}
    regions: dict[str, tuple[int, ...]] = {}
    try:
        for key, value in (spec.get("labels") or {}).items():
            if isinstance(value, (list, tuple)):
                regions[str(key)] = tuple(int(v) for v in value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):   # nnU-Net v2: name -> id
                ids[int(value)] = str(key)
            else:                                                                    # MSD: "id" -> name
                ids[int(key)] = str(value)
    except (TypeError, ValueError) as err:
        raise DataError([DataProblem(str(path), f"'labels' must map ids to names (MSD) or names to ids "
                                                f"(nnU-Net v2): {err}")]) from None
    return ids, regions


def training_items(root: Path, spec: Mapping) -> list[dict]:
    """Image/label items of the training cases: the `training` list when there is one, else (nnU-Net v2) the
    files of imagesTr/ paired with labelsTr/<case><file_ending>. A case stored one file per channel gets the
    list of its channel files, in channel order, as "image"."""
    if spec.get("training"):
        return decathlon_items(root, spec["training"])
    ending = spec.get("file_ending", ".nii.gz")
    cases: dict[str, list[Path]] = {}
    for path in sorted((root / "imagesTr").glob(f"*{ending}")):
        if is_resource_fork(path):
            continue
        stem = path.name[: -len(ending)]
        match = _CHANNEL_FILE.match(stem)
        cases.setdefault(match["case"] if match else stem, []).append(path)
    items = []
    for case, files in sorted(cases.items()):
        per_channel = files[0].name[: -len(ending)] != case
        image: Any = [str(f.resolve()) for f in files] if per_channel else str(files[0].resolve())
        items.append({"image": image, "label": str((root / "labelsTr" / f"{case}{ending}").resolve()), "case_id": case})
    return items
