"""Shared helpers for the data tests: small phantoms (generated once per session) and the real samples."""
from __future__ import annotations

import shutil
from pathlib import Path

from selfmae.data import prepare_synthetic
from selfmae.data.registry import SAMPLES_DIR

SAMPLES = SAMPLES_DIR   # the real samples shipped inside the package
# smaller than the "tiny" profile so the whole data suite stays fast; same layouts and code paths
TEST_SIZES = {
    "cxr14": {"n_images": 60, "image_size": 64},
    "btcv": {"shape": (40, 40, 24), "spacing": (9.6, 9.6, 13.0)},
    "brats": {"n_cases": 8, "n_test": 1, "shape": (32, 32, 24)},
    "medmnist": {"n_images": (20, 6, 8)},
}


def phantom(dataset: str, base: Path) -> Path:
    """Dataset root of a small phantom under `base` (re-used when already there: prepare_synthetic is idempotent)."""
    return prepare_synthetic(dataset, base / dataset, "tiny", seed=0, **TEST_SIZES[dataset])


def phantom_copy(dataset: str, base: Path, dest: Path) -> Path:
    """A private, writable copy of the phantom for tests that damage it; returns the copied dataset root."""
    src_root = phantom(dataset, base)
    shutil.copytree(base / dataset, dest / dataset)
    return dest / dataset / src_root.relative_to(base / dataset)


def sample_copy(name: str, dest: Path) -> Path:
    """A writable copy of a real sample folder (the readers may write an index beside the data)."""
    shutil.copytree(SAMPLES / name, dest / name)
    return dest / name
