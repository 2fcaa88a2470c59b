"""Integrity checks: find EVERY problem in a dataset on disk before training starts, each naming its file.

`check_data` returns the list (empty = fine); `require_valid` raises DataError listing them all. PNGs are
checked from their chunks (`PIL.Image.verify`, no decoding); NIfTI volumes are read in full because NaN and
label-value checks need the voxels.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from selfmae.io import atomic_write_text

from .brats import BRATS_REGIONS, find_root, read_brats, regions_from_spec
from .btcv import _raw_root, extras_problem, raw_layout_extras, read_btcv
from .common import DataError, DataProblem, check_dataset_name, load_nifti, read_json, seeded_holdout
from .cxr14 import SPLIT_LISTS, empty_split_problems, find_csv, image_index, read_entries
from .dataset_json import channel_names, label_ids, missing_keys
from .medmnist import SPLITS, label_spec, load_npz, medmnist_file

PNG_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "I;16": 1, "I;16B": 1, "I": 1, "P": 1}


def _check_png(path: Path) -> list[DataProblem]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = im.mode
            im.verify()
    except (OSError, SyntaxError, UnidentifiedImageError, ValueError) as err:
        return [DataProblem(str(path), f"corrupt or unreadable PNG ({err})")]
    if mode not in PNG_MODES:
        return [DataProblem(str(path), f"unsupported PNG mode {mode!r} (expected 1-4 channels: {sorted(PNG_MODES)})")]
    return []


def check_cxr14(data_dir: Path, val_fraction: float = 0.1, split_seed: int = 0,
                scored: bool = True) -> list[DataProblem]:
    """CSV present with its needed columns, split lists present and non-empty, every listed PNG found and sound,
    no split left empty by the patient-wise validation split the reader carves (`val_fraction`, `split_seed`:
    the run's data.val_fraction / data.split_seed), no image or patient in both train_val and test lists, and
    (`scored`: a fine-tuning, whose test mAUC is reported; False for pre-training) a test list that defines an AUC."""
    try:
        csv_path = find_csv(data_dir)
    except DataError as err:
        return list(err.problems)
    entries, problems = read_entries(csv_path)
    lists = {}
    for key, fname in SPLIT_LISTS.items():
        path = data_dir / fname
        if not path.is_file():
            problems.append(DataProblem(str(path), "split list not found"))
            continue
        lists[fname] = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not lists[fname]:
            problems.append(DataProblem(str(path), "split list is empty"))
    index = image_index(data_dir, {n for names in lists.values() for n in names})
    for fname, names in lists.items():
        for name in names:
            if entries and name not in entries:
                problems.append(DataProblem(str(data_dir / fname), f"{name} has no row in {csv_path.name}"))
            if name not in index:
                problems.append(DataProblem(str(data_dir / "images" / name), f"listed in {fname} but not found"))
            else:
                problems += _check_png(data_dir / index[name])
    problems += _leakage(data_dir, lists, entries) + (_auc_undefined(data_dir, lists, entries) if scored else [])
    if "train_val_list.txt" in lists and entries:   # the validation split the readers will carve, by patient
        patients = [entries[n][1] for n in lists["train_val_list.txt"] if n in entries]
        held = seeded_holdout(patients, float(val_fraction), int(split_seed))
        sizes = {"train": sum(p not in held for p in patients), "val": sum(p in held for p in patients),
                 "test": len(lists.get("test_list.txt", [None]))}
        problems += empty_split_problems(data_dir, sizes, set(patients), float(val_fraction))
    return problems


def _leakage(data_dir: Path, lists: dict[str, list[str]], entries: dict) -> list[DataProblem]:
    """A problem naming test_list.txt when it shares images, or patients (the CSV's Patient ID), with
    train_val_list.txt: the test set would score images of people the model trained on. The official ChestX-ray14
    split is disjoint by patient (Wang et al. 2017), as the validation split the reader carves is."""
    train_val, test = lists.get(SPLIT_LISTS["train_val"]), lists.get(SPLIT_LISTS["test"])
    if not train_val or not test:
        return []
    where = str(data_dir / SPLIT_LISTS["test"])
    shared = sorted(set(train_val) & set(test))
    if shared:
        return [DataProblem(where, f"{len(shared)} image(s) also listed in {SPLIT_LISTS['train_val']} "
                                   f"(e.g. {', '.join(shared[:3])}): the test set must not hold training images")]
    patients = {entries[n][1] for n in train_val if n in entries}
    both = sorted({entries[n][1] for n in test if n in entries} & patients)
    if both:
        return [DataProblem(where, f"images of {len(both)} patient(s) also in {SPLIT_LISTS['train_val']} "
                                   f"(e.g. Patient ID {', '.join(map(str, both[:3]))}): the official split is "
                                   "disjoint by patient, so the test set must not hold patients trained on")]
    return []


def _auc_undefined(data_dir: Path, lists: dict[str, list[str]], entries: dict) -> list[DataProblem]:
    """A problem naming test_list.txt when no finding label has both a positive and a negative image in it: the
    ROC AUC of every label, and so the mAUC the test set is scored by, would be undefined (sklearn's
    roc_auc_score needs both). Labels undefined for a few findings only are left to the evaluation, which says
    how many labels its mAUC averages."""
    test = [entries[n][0] for n in lists.get(SPLIT_LISTS["test"]) or [] if n in entries]
    if not test or np.ptp(np.stack(test), axis=0).any():
        return []
    return [DataProblem(str(data_dir / SPLIT_LISTS["test"]), f"among its {len(test)} image(s) no finding is both "
                        "present in one and absent from another, so no finding has an ROC AUC and the test mAUC a "
                        "fine-tuning reports is undefined; list test images with and without some finding "
                        "(pre-training needs no scorable test list: check-data --task pretrain)")]


def _check_volume(path: str, ndim: int, channels: int | None = None) -> tuple[list[DataProblem], tuple | None]:
    """Open a NIfTI image; problems for unreadable data, wrong dimensionality/channels, NaN/inf voxels.
    Returns (problems, (shape, affine) when readable)."""
    if not Path(path).is_file():
        return [DataProblem(path, "file not found")], None
    try:
        data, affine, shape = load_nifti(path)
    except Exception as err:  # nibabel/gzip/zlib raise many types for a truncated or corrupt file
        return [DataProblem(path, f"cannot read NIfTI, corrupt or truncated ({type(err).__name__}: {err})")], None
    problems = []
    if len(shape) != ndim:
        problems.append(DataProblem(path, f"expected a {ndim}D volume, found shape {shape}"))
    elif channels is not None and shape[-1] != channels:
        problems.append(DataProblem(path, f"expected {channels} channels (last axis), found {shape[-1]} in shape {shape}"))
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        problems.append(DataProblem(path, f"{int((~np.isfinite(data)).sum())} NaN/inf voxels"))
    return problems, (shape, affine, data)


def _check_image(image: str | list[str], ndim: int, channels: int | None) -> tuple[list[DataProblem], tuple | None]:
    """_check_volume of one image file, or of each channel file of a case stored one file per channel."""
    if isinstance(image, str):
        return _check_volume(image, ndim, channels)
    if channels is not None and len(image) != channels:
        return [DataProblem(image[0], f"expected {channels} channel files, found {len(image)}")], None
    found = [_check_volume(path, ndim - 1) for path in image]
    problems = [p for f, _ in found for p in f]
    return problems, (None if problems else found[0][1])


def _check_pairs(items: Iterable[dict], ndim: int, channels: int | None, label_values: set[int],
                 seen: set[int] | None = None) -> list[DataProblem]:
    """Each image and its label: readable, shapes and affines agree, label values within `label_values`.
    Label values found are added to `seen` when given."""
    problems: list[DataProblem] = []
    for item in items:
        found, img = _check_image(item["image"], ndim, channels)
        problems += found
        if "label" not in item:
            continue
        found, lab = _check_volume(item["label"], 3)
        problems += found
        if img is None or lab is None:
            continue
        image_name = Path(item["image"] if isinstance(item["image"], str) else item["image"][0]).name
        if tuple(img[0][:3]) != tuple(lab[0]):
            problems.append(DataProblem(item["label"], f"shape {lab[0]} does not match image {image_name} {img[0][:3]}"))
        elif not np.allclose(img[1], lab[1], atol=1e-3):
            problems.append(DataProblem(item["label"], f"affine differs from image {image_name}"))
        values = np.unique(lab[2])
        if seen is not None:
            seen.update(int(v) for v in values.tolist())
        bad = [v for v in values.tolist() if v not in label_values]
        if bad:
            problems.append(DataProblem(item["label"], f"label values {bad[:10]} outside the expected {sorted(label_values)}"))
    return problems


def check_btcv(data_dir: Path) -> list[DataProblem]:
    """Both splits non-empty; no file of the raw layout left untaken; each CT 3D, finite, with a 3D label of the
    same shape/affine, values 0..13."""
    raw = _raw_root(Path(data_dir))
    extras = raw_layout_extras(raw) if raw is not None else []
    try:
        splits = read_btcv(data_dir)
    except DataError as err:
        return list(err.problems)           # holds the untaken files' problem too
    problems = [extras_problem(raw, extras)] if extras else []
    return problems + _check_pairs(splits["train"] + splits["val"], 3, None, set(range(14)))


def check_brats(data_dir: Path) -> list[DataProblem]:
    """dataset.json (MSD or nnU-Net v2 form): its keys, labels the tumour regions can be built from; both splits
    of the default 80/20 split non-empty; each image 4D with one channel per declared channel (or one file per
    channel); labels match their image, hold only declared ids, and every region is present in some case."""
    try:
        root = find_root(data_dir)
        spec = read_json(root / "dataset.json")
        splits = read_brats(data_dir, 0.2)
    except DataError as err:
        return list(err.problems)
    path = root / "dataset.json"
    problems = []
    missing = missing_keys(spec)
    if missing:
        problems.append(DataProblem(str(path), f"missing key(s) {missing}"))
    try:
        ids, declared = label_ids(spec, path)
        regions = regions_from_spec(spec, "dataset_json", path)
    except DataError as err:
        return problems + list(err.problems)
    channels = len(channel_names(spec)) or 4
    labels = set(ids) | {i for r in declared.values() for i in r} or {0, 1, 2, 3}
    seen: set[int] = set()
    problems += _check_pairs(splits["train"] + splits["val"], 4, channels, labels, seen)
    for region in BRATS_REGIONS:
        if seen and not seen & set(regions[region]):
            problems.append(DataProblem(str(path), f"region {region} (label id(s) {list(regions[region])} as "
                                                   f"dataset.json declares) is empty in every label file"))
    return problems


def check_medmnist(data_dir: Path) -> list[DataProblem]:
    """All six keys; images and labels agree in length; no empty split; no NaN; labels are non-negative integers
    (0/1 columns, or class ids in one column: `medmnist.label_spec`)."""
    try:
        path = medmnist_file({"data_dir": data_dir})
        arrays = load_npz(path)
    except DataError as err:
        return list(err.problems)
    problems = []
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) == 0:
            problems.append(DataProblem(str(path), f"split {split!r} is empty ({split}_images has 0 items)"))
        if len(images) != len(labels):
            problems.append(DataProblem(str(path), f"{split}_images has {len(images)} items but {split}_labels {len(labels)}"))
        if images.ndim not in (3, 4, 5):
            problems.append(DataProblem(str(path), f"{split}_images has shape {images.shape}, expected (N,H,W[,3]) or (N,D,H,W)"))
        for key, arr in ((f"{split}_images", images), (f"{split}_labels", labels)):
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                problems.append(DataProblem(str(path), f"{key} holds NaN/inf values"))
    if not problems:
        try:
            label_spec(arrays, path)
        except DataError as err:
            problems += err.problems
    return problems


def check_data(dataset: str, data_dir: str | os.PathLike, task: str | None = None,
               data_cfg: Mapping | None = None) -> list[DataProblem]:
    """Every problem found in `dataset` (a registry name: cxr14|btcv|brats|medmnist|decathlon) at `data_dir`;
    [] when it is usable. task (pretrain | classify | segment, None = not known) lets a dataset whose labels
    are optional (decathlon) check them only when they are needed; data_cfg (the run's data section, None: the
    defaults) the settings a check depends on (the validation split). ValueError for an unknown dataset."""
    from .registry import dataset_spec

    return dataset_spec(dataset).check(Path(data_dir), task, data_cfg)


def _check_settings_tag(dataset: str, data_cfg: Mapping | None) -> str:
    """The data settings `dataset`'s check depends on (`DatasetSpec.check_keys`), as a short tag for the
    remembered check's name ('' for none, or when the run sets none of them)."""
    from .registry import dataset_spec

    settings = {k: data_cfg.get(k) for k in dataset_spec(dataset).check_keys} if data_cfg else {}
    if not any(v is not None for v in settings.values()):
        return ""
    return "-" + hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def require_valid(dataset: str, data_dir: str | os.PathLike, memo_dir: str | os.PathLike | None = None,
                  task: str | None = None, data_cfg: Mapping | None = None) -> bool:
    """Raise DataError (a ValueError) listing every problem, each with its file; when all is well return whether
    the pass was remembered from an earlier check (True) or checked now (False).

    memo_dir: remember a passed check there, keyed on the dataset's file listing (paths, sizes, modification
    times) and this checker's code, so that later runs on unchanged data skip re-reading every volume (minutes
    on the real datasets). Any change to the files, the checker or the settings its check depends on (the
    entries of `data_cfg` named by the dataset's `DatasetSpec.check_keys`; other settings do not matter) checks
    again; failures are never remembered.
    """
    marker = None
    if memo_dir is not None:
        name = check_dataset_name(dataset) + (f"-{task}" if task else "") + _check_settings_tag(dataset, data_cfg)
        marker = Path(memo_dir) / f"{name}-{data_fingerprint(data_dir)}.ok"
        if marker.exists():
            return True
    problems = check_data(dataset, data_dir, task, data_cfg)
    if problems:
        raise DataError(problems, dataset, data_dir)
    if marker is not None:
        try:
            atomic_write_text(marker, f"{Path(data_dir).resolve()}\n")
        except OSError as err:   # a cache that cannot be written only costs the next run a full check
            warnings.warn(f"passed data check not remembered in {memo_dir}: {err.strerror or err}", stacklevel=2)
    return False


def data_fingerprint(data_dir: str | os.PathLike) -> str:
    """sha1 of (relative path, size, mtime) of every file under `data_dir` (or of the file itself) and of the
    checker's source (this module and the readers it calls): what a remembered check depends on."""
    root = Path(data_dir).resolve()
    digest = hashlib.sha1()
    for module in ("checks", "common", "dataset_json", "brats", "btcv", "cxr14", "medmnist", "decathlon"):
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    digest.update(str(root).encode())
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        name, st = (path.name if path == root else path.relative_to(root)), path.stat()
        digest.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
