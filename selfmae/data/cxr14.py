"""NIH ChestX-ray14 reader: the CSV with its quirks, the official split lists, images found by name.

Layout (see shared data-formats.md): `Data_Entry_2017.csv` (or `_v2020`), `train_val_list.txt`, `test_list.txt`,
and PNGs anywhere below the folder (`images/` or `images_0XX/images/`). Items are dicts
`{"image": path, "label": float32 (14,), "case_id": file name, "patient": str}`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .common import DataError, DataProblem, seeded_holdout

CXR14_LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
CSV_NAMES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
CSV_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
SPLIT_LISTS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
INDEX_NAME = ".selfmae_png_index.json"
NO_FINDING = "No Finding"


def find_csv(data_dir: Path) -> Path:
    """The entry CSV (2017 name preferred, v2020 accepted)."""
    for name in CSV_NAMES:
        if (Path(data_dir) / name).is_file():
            return Path(data_dir) / name
    raise DataError([DataProblem(str(Path(data_dir) / CSV_NAMES[0]), f"file not found (nor {CSV_NAMES[1]})")])


def encode_labels(text: str) -> np.ndarray:
    """'Effusion|Mass' -> float32 (14,) multi-hot in CXR14_LABELS order; 'No Finding' -> zeros."""
    target = np.zeros(len(CXR14_LABELS), np.float32)
    for name in (t.strip() for t in text.split("|")):
        if name and name != NO_FINDING:
            target[CXR14_LABELS.index(name)] = 1.0  # ValueError on an unknown name, caught by the caller
    return target


def read_entries(csv_path: Path) -> tuple[dict[str, tuple[np.ndarray, str]], list[DataProblem]]:
    """{image name: (labels (14,), patient id)} from the entry CSV, plus the problems met on the way.

    Columns are found by header name, so the split `OriginalImage[Width,Height]` columns and any trailing
    empty column do not matter.
    """
    problems: list[DataProblem] = []
    entries: dict[str, tuple[np.ndarray, str]] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        header = [h.strip() for h in next(rows, [])]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            return {}, [DataProblem(str(csv_path), f"missing column(s) {missing}; header is {header}")]
        col = [header.index(c) for c in CSV_COLUMNS]
        for line, row in enumerate(rows, start=2):
            if not any(cell.strip() for cell in row):
                continue
            try:
                name, labels, patient = (row[i].strip() for i in col)
                entries[name] = (encode_labels(labels), patient)
            except (IndexError, ValueError) as err:
                problems.append(DataProblem(str(csv_path), f"line {line}: cannot read {row!r} ({err})"))
    return entries, problems


def read_split_list(path: Path) -> list[str]:
    """Image names, one a line (blank lines skipped)."""
    if not path.is_file():
        raise DataError([DataProblem(str(path), "split list not found")])
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _index_cache_path(data_dir: Path) -> Path:
    beside = data_dir / INDEX_NAME
    if os.access(data_dir, os.W_OK):
        return beside
    key = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "selfmae" / f"cxr14-index-{key}.json"


def image_index(data_dir: Path, needed: set[str] | None = None) -> dict[str, str]:
    """{file name: path relative to data_dir} of every PNG below data_dir, found once and cached as JSON.

    The cache sits beside the CSV (or in ~/.cache/selfmae when the folder is read-only); it is rebuilt when a
    `needed` name is not in it.
    """
    from ..io import atomic_write_text

    data_dir = Path(data_dir)
    cache = _index_cache_path(data_dir)
    if cache.is_file():
        try:
            index = json.loads(cache.read_text(encoding="utf-8"))
            if not needed or needed <= index.keys():
                return index
        except json.JSONDecodeError:
            pass
    index = {}
    for root, _dirs, files in os.walk(data_dir):
        for f in files:
            if f.lower().endswith(".png") and not f.startswith("._"):
                index.setdefault(f, os.path.relpath(os.path.join(root, f), data_dir))
    try:
        atomic_write_text(cache, json.dumps(index, sort_keys=True))
    except OSError:
        pass  # a cache is an optimisation only
    return index


def load_png(path: str | Path) -> np.ndarray:
    """One-channel uint8 image (1, H, W); RGBA/RGB/LA/16-bit PNGs are converted to greyscale."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I"):
            arr = np.asarray(im, dtype=np.float64)
            arr = (255 * arr / max(arr.max(), 1)).astype(np.uint8)
        else:
            arr = np.array(im if im.mode == "L" else im.convert("L"))
    return arr[None]


def empty_split_problems(data_dir: Path, sizes: dict[str, int], patients: set[str],
                         val_fraction: float) -> list[DataProblem]:
    """A problem per split that the patient-wise split leaves empty, naming the list it comes from and why
    (the validation split is carved from train_val by patient, so it needs at least two patients)."""
    why = {"train": f"train_val's {len(patients)} patient(s) all went to the validation split",
           "val": f"{SPLIT_LISTS['train_val']} names images of {len(patients)} patient(s) and the validation "
                  f"split is carved by patient (data.val_fraction={val_fraction:g}): at least 2 patients are "
                  "needed",
           "test": f"{SPLIT_LISTS['test']} names no image"}
    source = {"train": "train_val", "val": "train_val", "test": "test"}
    return [DataProblem(str(Path(data_dir) / SPLIT_LISTS[source[k]]), f"split {k!r} is empty: {why[k]}")
            for k, n in sizes.items() if n == 0 and (k != "val" or val_fraction > 0)]


def read_cxr14(data_dir: str | os.PathLike, val_fraction: float = 0.1, split_seed: int = 0,
               max_images: int | None = None) -> dict[str, list[dict]]:
    """{"train", "val", "test"} item lists; val is carved from train_val BY PATIENT with `split_seed`.

    `max_images` keeps the first n items of each split (for quick runs). Raises DataError naming the file when
    the CSV, a split list or an image is missing.
    """
    data_dir = Path(data_dir)
    csv_path = find_csv(data_dir)
    entries, problems = read_entries(csv_path)
    lists = {k: read_split_list(data_dir / v) for k, v in SPLIT_LISTS.items()}
    index = image_index(data_dir, {n for names in lists.values() for n in names})
    for key, names in lists.items():
        for n in names:
            if n not in entries:
                problems.append(DataProblem(str(data_dir / SPLIT_LISTS[key]), f"{n} has no row in {csv_path.name}"))
            elif n not in index:
                problems.append(DataProblem(str(data_dir / "images" / n), f"listed in {SPLIT_LISTS[key]} but not found"))
    if problems:
        raise DataError(problems, "cxr14", data_dir)

    def item(name: str) -> dict:
        labels, patient = entries[name]
        return {"image": str(data_dir / index[name]), "label": labels, "case_id": name, "patient": patient}

    val_patients = seeded_holdout([entries[n][1] for n in lists["train_val"]], val_fraction, split_seed)
    splits = {
        "train": [item(n) for n in lists["train_val"] if entries[n][1] not in val_patients],
        "val": [item(n) for n in lists["train_val"] if entries[n][1] in val_patients],
        "test": [item(n) for n in lists["test"]],
    }
    empty = empty_split_problems(data_dir, {k: len(v) for k, v in splits.items()},
                                 {entries[n][1] for n in lists["train_val"]}, val_fraction)
    if empty:
        raise DataError(empty, "cxr14", data_dir)
    if max_images:
        splits = {k: v[:max_images] for k, v in splits.items()}
    return splits
