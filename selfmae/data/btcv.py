"""BTCV (Synapse multi-atlas abdomen) reader: the raw `RawData/Training` layout or a Decathlon-style JSON list.

Items are `{"image": path, "label": path, "case_id": "img0001"}`; the 13->8 organ mapping is a transform
(`organ_mapping`), so the files are never rewritten.
"""
from __future__ import annotations

import os
from pathlib import Path

from .common import DataError, DataProblem, decathlon_items, read_json, seeded_holdout
from .dataset_json import training_items

BTCV_IDS = tuple(f"{i:04d}" for i in (*range(1, 11), *range(21, 41)))
BTCV_VAL_IDS = ("0001", "0002", "0003", "0004", "0008", "0022", "0025", "0029", "0032", "0035", "0036", "0038")
BTCV_LABELS = {
    0: "background", 1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gallbladder", 5: "esophagus",
    6: "liver", 7: "stomach", 8: "aorta", 9: "inferior vena cava", 10: "portal and splenic veins",
    11: "pancreas", 12: "right adrenal gland", 13: "left adrenal gland",
}
# The paper's 8 organs in the order of its Table 1, and their ids in the BTCV files.
BTCV_ORGANS = ("Aorta", "Gallbladder", "Kidney(L)", "Kidney(R)", "Liver", "Pancreas", "Spleen", "Stomach")
BTCV_ORGAN_IDS = (8, 4, 3, 2, 6, 11, 1, 7)
JSON_NAMES = ("dataset_0.json", "dataset.json")


def organ_mapping(organs: int = 8) -> tuple[list[int], list[int]]:
    """(original ids 0..13, target ids): organs=8 maps the paper's organs to 1..8 (Table 1 order), others to 0."""
    orig = list(range(14))
    if organs == 13:
        return orig, orig
    if organs != 8:
        raise ValueError(f"organs must be 8 or 13, got {organs}")
    target = [BTCV_ORGAN_IDS.index(i) + 1 if i in BTCV_ORGAN_IDS else 0 for i in orig]
    return orig, target


def _raw_root(data_dir: Path) -> Path | None:
    for cand in (data_dir / "RawData" / "Training", data_dir / "Training", data_dir):
        if (cand / "img").is_dir():
            return cand
    return None


def _json_list(data_dir: Path) -> Path | None:
    if data_dir.is_file() and data_dir.suffix == ".json":
        return data_dir
    return next((data_dir / n for n in JSON_NAMES if (data_dir / n).is_file()), None)


RAW_LAYOUT_HINT = (f"the raw layout takes only the 30 BTCV training ids (img{BTCV_IDS[0]}-{BTCV_IDS[9]}, "
                   f"img{BTCV_IDS[10]}-{BTCV_IDS[-1]}; validation ids {', '.join(BTCV_VAL_IDS)}); for other scans "
                   "use the dataset-JSON layout (dataset_0.json with \"training\" and \"validation\" lists)")


def raw_layout_extras(raw: Path) -> list[Path]:
    """Files in the raw layout's img/ and label/ folders that it does not take (not one of the 30 standard ids)."""
    taken = {f"{kind}{case}.nii.gz" for case in BTCV_IDS for kind in ("img", "label")}
    return [p for sub in ("img", "label") if (raw / sub).is_dir() for p in sorted((raw / sub).iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name not in taken]


def extras_problem(raw: Path, extras: list[Path]) -> DataProblem:
    """One problem naming the raw-layout files that are not taken (the first 10) and how to use them."""
    names = ", ".join(p.name for p in extras[:10]) + (f", ... (+{len(extras) - 10})" if len(extras) > 10 else "")
    return DataProblem(str(raw), f"{len(extras)} file(s) not taken: {names}; {RAW_LAYOUT_HINT}")


def read_btcv(data_dir: str | os.PathLike) -> dict[str, list[dict]]:
    """{"train", "val"} item lists: the paper's 18/12 split for the raw layout, the JSON's own lists otherwise.

    A JSON in nnU-Net v2 form (no "training" list) takes the cases of imagesTr/; without a "validation" list,
    12 of every 30 cases are held out (seeded). Raises DataError naming the folder when neither layout is found
    or a split is empty (saying which files were not taken and why).
    """
    data_dir = Path(data_dir)
    raw = _raw_root(data_dir)
    hints: list[DataProblem] = []
    if raw is not None:
        splits: dict[str, list[dict]] = {"train": [], "val": []}
        for case in BTCV_IDS:
            img = raw / "img" / f"img{case}.nii.gz"
            if img.exists() or (raw / "label" / f"label{case}.nii.gz").exists():
                item = {"image": str(img), "label": str(raw / "label" / f"label{case}.nii.gz"), "case_id": f"img{case}"}
                splits["val" if case in BTCV_VAL_IDS else "train"].append(item)
        source = raw / "img"
        extras = raw_layout_extras(raw)
        hints = [extras_problem(raw, extras)] if extras else []
        why = {"train": f"the {len(splits['val'])} case(s) found all carry validation ids",
               "val": f"none of the {len(splits['train'])} case(s) found carries a validation id"}
    else:
        listing = _json_list(data_dir)
        if listing is None:
            raise DataError([DataProblem(str(data_dir), "neither RawData/Training/img/ nor a dataset JSON list found")])
        spec = read_json(listing)
        train = training_items(listing.parent, spec)
        if "validation" in spec:
            splits = {"train": train, "val": decathlon_items(listing.parent, spec["validation"])}
        else:
            held = seeded_holdout([it["case_id"] for it in train], 12 / 30, 0)
            splits = {"train": [it for it in train if it["case_id"] not in held],
                      "val": [it for it in train if it["case_id"] in held]}
        source = listing
        why = {"train": "no training cases listed or found", "val": "no validation cases listed or held out"}
    empty = [DataProblem(str(source), f"split {k!r} is empty ({why[k]})") for k, v in splits.items() if not v]
    if empty:
        raise DataError(empty + hints, "btcv", data_dir)
    return splits
