"""Where the explorer's images come from: the shipped real samples and phantoms, and reading a user's image / volume /
.npy / MedMNIST .npz / folder (`load_image`; `prepare.py` then prepares it as its model's dataset pipeline does).
Also `ExplorerError`, the error a user can fix, used by the whole explorer."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfmae.data.registry import SAMPLES_DIR

SAMPLE_DIR = SAMPLES_DIR   # the real samples shipped in the package
# label shown in the widget -> source spec understood by `resolve_source`
SOURCES = {
    "PneumoniaMNIST test image (real, 2D)": "sample:pneumoniamnist",
    "ChestX-ray14 radiograph (real, 2D)": "sample:cxr14",
    "abdominal CT (real, 3D)": "sample:ct",
    "AdrenalMNIST3D test volume (real, 3D)": "sample:adrenalmnist3d",
    "chest X-ray phantom (2D)": "phantom:cxr14",
    "abdominal CT phantom (3D)": "phantom:btcv",
}
SAMPLES = {
    "pneumoniamnist": SAMPLE_DIR / "medmnist" / "pneumoniamnist_subset.npz",
    "cxr14": SAMPLE_DIR / "cxr14-sample" / "images",
    "ct": SAMPLE_DIR / "ct-sample" / "example_ct.nii.gz",
    "adrenalmnist3d": SAMPLE_DIR / "medmnist3d" / "adrenalmnist3d.npz",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_SUFFIXES = (".nii", ".nii.gz")
ARRAY_SUFFIXES = (".npy", ".npz")


class ExplorerError(ValueError):
    """Something the user can fix (a missing checkpoint, an unreadable file); the message says what and where."""


@dataclass
class LoadedImage:
    """One image as read from disk: float32 (C, *spatial) in its own units, before any model preparation."""
    array: np.ndarray
    spatial_dims: int
    name: str
    spacing: tuple[float, ...] | None = None   # mm per voxel (volumes), None when unknown
    count: int = 1                             # images available at this source (for the index control)
    dataset: str | None = None                 # the registry's dataset of a bundle file (MedMNIST .npz), else None
    uint8: bool = False                        # the file holds 8-bit values (0..255)
    path: Path | None = None                   # the file it was read from (a folder's file, a MedMNIST .npz)


def resolve_source(source: str | Path, profile: str = "tiny") -> Path:
    """'sample:<name>', 'phantom:<cxr14|btcv>' (generated once under data/synthetic) or a path -> a path."""
    text = str(source)
    if text.startswith("sample:"):
        name = text.split(":", 1)[1]
        if name not in SAMPLES:
            raise ExplorerError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
        return SAMPLES[name]
    if text.startswith("phantom:"):
        from selfmae.config import load_config
        from selfmae.experiments import resolve_data_dir

        from selfmae.data.registry import REGISTRY

        dataset = text.split(":", 1)[1]
        known = [name for name, spec in REGISTRY.items() if spec.synthetic and spec.image_folder]
        if dataset not in known:
            raise ExplorerError(f"unknown phantom {dataset!r}; known: {', '.join(known)}")
        root = resolve_data_dir(load_config(f"pretrain_{dataset}", profile, {"data.data_dir": None}))
        return root / REGISTRY[dataset].image_folder
    return Path(text).expanduser()


def suffix(path: Path) -> str:
    """'.nii.gz' for gzipped NIfTI, else the lower-case suffix ('.png', '.npy', ...)."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _folder_files(folder: Path) -> list[Path]:
    known = IMAGE_SUFFIXES + VOLUME_SUFFIXES + (".npy",)
    return sorted(p for p in folder.iterdir() if p.is_file() and suffix(p) in known)


def load_image(source: str | Path, index: int = 0, profile: str = "tiny") -> LoadedImage:
    """Read image number `index` of a source (a file, a folder of files, a MedMNIST .npz: its test split).

    Raises ExplorerError naming the file for a missing, unreadable or unsupported file.
    """
    path = resolve_source(source, profile)
    if not path.exists():
        raise ExplorerError(f"{path}: no such file or folder")
    count = 1
    if path.is_dir():
        files = _folder_files(path) or sorted(path.glob("*.npz"))[:1]   # a folder holding a MedMNIST file
        if not files:
            raise ExplorerError(f"{path}: no image files in this folder (looked for "
                                f"{', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES)}, .npy)")
        count, path = len(files), files[min(max(index, 0), len(files) - 1)]
    kind = suffix(path)
    try:
        if kind == ".npz":
            return _load_medmnist(path, index)
        if kind in IMAGE_SUFFIXES:
            from selfmae.data import load_png  # PIL under the hood: any greyscale/RGB(A)/16-bit image

            array = load_png(path)
            return LoadedImage(array.astype(np.float32), 2, path.name, count=count, uint8=array.dtype == np.uint8,
                               path=path)
        if kind in VOLUME_SUFFIXES:
            return _load_nifti(path, count)
        if kind == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.ndim not in (2, 3):
                raise ExplorerError(f"{path}: expected a 2D image or 3D volume, got an array of shape {array.shape}")
            return LoadedImage(array[None].astype(np.float32), array.ndim, path.name, count=count,
                               uint8=array.dtype == np.uint8, path=path)
    except ExplorerError:
        raise
    except Exception as err:  # corrupt, truncated, not really that format: say which file and why
        raise ExplorerError(f"{path}: cannot read this file ({type(err).__name__}: {err})") from None
    raise ExplorerError(f"{path}: unsupported file type {kind or '(none)'}; use "
                        f"{', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES + ARRAY_SUFFIXES)} or a folder of them")


def _load_medmnist(path: Path, index: int) -> LoadedImage:
    from selfmae.data import DataError, load_npz
    from selfmae.data.registry import bundle_dataset

    try:
        arrays = load_npz(path)
    except DataError as err:
        raise ExplorerError("; ".join(str(p) for p in err.problems)) from None
    images = arrays["test_images"]
    i = min(max(index, 0), len(images) - 1)
    image = images[i]
    dims = 3 if image.ndim == 3 and image.shape[-1] != 3 else 2
    array = np.moveaxis(image, -1, 0) if image.ndim == dims + 1 else image[None]
    label = arrays["test_labels"][i].ravel().tolist()
    return LoadedImage(array.astype(np.float32), dims, f"{path.name} test #{i} (label {label})", count=len(images),
                       dataset=bundle_dataset(path), uint8=image.dtype == np.uint8, path=path)


def _load_nifti(path: Path, count: int) -> LoadedImage:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))   # RAS, as the training pipelines' Orientationd
    array = np.asarray(img.dataobj, dtype=np.float32)
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3])
    if array.ndim == 2:
        return LoadedImage(array[None], 2, path.name, count=count, path=path)
    if array.ndim == 4:   # channel-last (e.g. the four BraTS modalities)
        array = np.moveaxis(array, -1, 0)
    elif array.ndim == 3:
        array = array[None]
    else:
        raise ExplorerError(f"{path}: expected a 3D volume (or 4D with channels last), got shape {array.shape}")
    return LoadedImage(array, 3, path.name, spacing=spacing, count=count, path=path)


def source_data_label(source: str | Path, profile: str = "tiny") -> str:
    """The data an explorer source shows, for a stamp: 'synthetic' for a phantom, else the file as
    `selfmae.provenance.data_label` names it (shipped samples by their path in the repository)."""
    from selfmae.provenance import data_label

    if str(source).startswith("phantom:"):
        return "synthetic"
    return data_label(resolve_source(source, profile))
