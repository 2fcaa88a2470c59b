"""Pieces every reader shares: the error types, seeded splits, Decathlon-style lists and NIfTI loading.

Kept in one place so the three volume readers differ only in what is really dataset-specific.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

@dataclass(frozen=True)
class DataProblem:
    """One thing wrong with a dataset on disk: which file, and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DataError(ValueError):
    """Raised when a dataset cannot be used; the message lists every problem found, one per line."""

    def __init__(self, problems: Sequence[DataProblem] | str, dataset: str = "", data_dir: str | os.PathLike = ""):
        if isinstance(problems, str):
            problems = [DataProblem(str(data_dir), problems)]
        self.problems = list(problems)
        head = f"{dataset} data at {data_dir}: " if dataset else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}{len(self.problems)} problem(s):\n{lines}")


def check_dataset_name(dataset: str) -> str:
    """`dataset` when the registry knows it; ValueError naming the known datasets otherwise."""
    from .registry import dataset_spec

    return dataset_spec(dataset).name


def seeded_holdout(keys: Sequence[Any], fraction: float, seed: int) -> set:
    """The subset of `keys` (ceil(fraction*n), at least 1 when fraction>0) held out, from a seeded shuffle.

    Keys are sorted first so the result depends only on the set of keys and the seed, not on file order.
    """
    uniq = sorted(set(keys))
    if fraction <= 0 or not uniq:
        return set()
    n_out = min(len(uniq) - 1, max(1, int(np.ceil(fraction * len(uniq))))) if len(uniq) > 1 else 0
    order = np.random.default_rng(seed).permutation(len(uniq))
    return {uniq[i] for i in order[:n_out]}


def read_json(path: Path) -> dict:
    """Load a JSON file, raising DataError naming the file when it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError([DataProblem(str(path), "file not found")]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError([DataProblem(str(path), f"not valid JSON ({err})")]) from None


def is_resource_fork(path: str | Path) -> bool:
    """macOS `._name` files shipped inside some tarballs (e.g. MSD Task01): never data."""
    return Path(path).name.startswith("._")


def decathlon_items(root: Path, entries: Sequence[Any], with_label: bool = True) -> list[dict]:
    """Resolve a Decathlon list (`[{"image": "./imagesTr/x.nii.gz", "label": ...}, ...]` or plain paths).

    Returns dicts with absolute "image" (and "label") paths and "case_id" (file name without .nii.gz),
    skipping macOS resource files.
    """
    items = []
    for entry in entries:
        entry = {"image": entry} if isinstance(entry, str) else dict(entry)
        if is_resource_fork(entry["image"]):
            continue
        item = {"image": str((root / entry["image"]).resolve())}
        if with_label and "label" in entry:
            item["label"] = str((root / entry["label"]).resolve())
        item["case_id"] = nifti_stem(entry["image"])
        items.append(item)
    return items


def nifti_stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def load_nifti(path: str | Path, with_data: bool = True) -> tuple[np.ndarray | None, np.ndarray, tuple[int, ...]]:
    """(data or None, affine 4x4, shape) of a NIfTI file, with its scaling applied (HU for CT)."""
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj) if with_data else None
    return data, np.asarray(img.affine), tuple(int(s) for s in img.shape)


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write `data` as a gzipped NIfTI with `affine` (atomically, so a reader never sees half a file)."""
    import nibabel as nib

    from ..io import atomic_path

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
