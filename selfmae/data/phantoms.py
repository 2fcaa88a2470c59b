"""Synthetic phantoms written in the REAL on-disk layouts, so the same readers serve a default and a real run.

`prepare_synthetic("btcv", "data/btcv")` writes `RawData/Training/{img,label}/...nii.gz` with the 30 real ids;
"cxr14" writes `images/*.png` + `Data_Entry_2017.csv` + split lists; "brats" writes `Task01_BrainTumour/`;
"medmnist" writes a ChestMNIST-like `.npz`. Deterministic from `seed`; a finished set (stamp file with the same
parameters) is not rewritten.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io import atomic_path, atomic_write_text
from .anatomy import abdomen_ct, brain_mri, chest_anatomy, chest_image
from .brats import BRATS_LABELS, BRATS_MODALITIES
from .btcv import BTCV_IDS
from .common import check_dataset_name, save_nifti
from .cxr14 import CSV_NAMES, CXR14_LABELS, SPLIT_LISTS

SIZES: dict[str, dict[str, dict]] = {
    # tiny: volumes written at the tiny profile's working resolution (no resampling blur), every scored structure
    # at least ~4 voxels wide (BTCV at 7 mm with organs widened 1.25x: aorta ~4.5, pancreas ~6; BraTS at 1 mm:
    # enhancing rim 2-4 voxels); CXR14 PNGs at 64 px, area-resized to the tiny 36 px on load
    "tiny": {
        "cxr14": {"n_images": 1200, "image_size": 64, "test_fraction": 0.2},
        "btcv": {"shape": (48, 36, 32), "spacing": (7.0, 7.0, 7.0), "organ_scale": 1.25},
        "brats": {"n_cases": 24, "n_test": 2, "shape": (40, 40, 32)},
        "medmnist": {"n_images": (200, 40, 60), "image_size": 28},
        "decathlon": {"n_cases": 4, "form": "msd", "modality": "CT", "channel_files": False},
    },
    "paper": {  # paper-scale volumes (minutes to write), a modest number of cases
        "cxr14": {"n_images": 1000, "image_size": 512, "test_fraction": 0.2},  # resized to 256 anyway
        "btcv": {"shape": (256, 256, 110), "spacing": (1.5, 1.5, 3.0), "organ_scale": 1.0},
        "brats": {"n_cases": 40, "n_test": 4, "shape": (240, 240, 155)},
        "medmnist": {"n_images": (2000, 400, 600), "image_size": 64},
        "decathlon": {"n_cases": 10, "form": "msd", "modality": "CT", "channel_files": False},
    },
}
STAMP = ".selfmae_phantom.json"
# how often each CXR14 label is drawn (roughly the real ranking, raised so every class has positives)
CXR14_PREVALENCE = (0.14, 0.1, 0.15, 0.2, 0.1, 0.1, 0.07, 0.08, 0.08, 0.07, 0.07, 0.07, 0.08, 0.05)


def prepare_synthetic(dataset: str, out_dir: str | os.PathLike, size: str = "tiny", seed: int = 0,
                      **overrides) -> Path:
    """Write a phantom `dataset` under `out_dir` and return the dataset root to pass as data_cfg["data_dir"].

    `size` is a profile in SIZES ("tiny", "paper"); keyword `overrides` replace single settings
    (e.g. n_images=50). Re-running with the same parameters returns at once.
    """
    params = {**SIZES[size][check_dataset_name(dataset)], **overrides}
    out = Path(out_dir)
    root = out / "Task01_BrainTumour" if dataset == "brats" else out
    stamp = {"dataset": dataset, "size": size, "seed": seed, **{k: list(v) if isinstance(v, tuple) else v
                                                                    for k, v in params.items()}}
    stamp_path = out / STAMP
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return root
    WRITERS[dataset](root, seed=seed, **params)
    atomic_write_text(stamp_path, json.dumps(stamp, indent=1))
    return root


def _draw_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.random((n, len(CXR14_LABELS))) < np.array(CXR14_PREVALENCE)).astype(np.float32)


def _label_text(row: np.ndarray) -> str:
    return "|".join(CXR14_LABELS[i] for i in np.flatnonzero(row)) or "No Finding"


def write_cxr14(root: Path, n_images: int, image_size: int, test_fraction: float, seed: int = 0) -> None:
    """images/00000001_000.png ... (1-5 images per patient), Data_Entry_2017.csv with the real header, split lists."""
    from PIL import Image

    rng = np.random.default_rng([seed, 14])
    (root / "images").mkdir(parents=True, exist_ok=True)
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    rows, lists = [header], {"train_val": [], "test": []}
    labels = _draw_labels(rng, n_images)
    patient, done = 0, 0
    while done < n_images:
        patient += 1
        n = min(int(rng.integers(1, 6)), n_images - done)
        anatomy = chest_anatomy(rng)
        split = "test" if rng.random() < test_fraction else "train_val"
        age, sex = int(rng.integers(18, 90)), "MF"[int(rng.integers(2))]
        for k in range(n):
            name = f"{patient:08d}_{k:03d}.png"
            img = chest_image(rng, image_size, labels[done], anatomy)
            with atomic_path(root / "images" / name) as tmp:
                Image.fromarray(img).save(tmp, format="PNG")
            view, pix = ("PA", 0.143) if rng.random() < 0.6 else ("AP", 0.139)
            rows.append(f"{name},{_label_text(labels[done])},{k},{patient},{age},{sex},{view},"
                        f"{image_size},{image_size},{pix},{pix}")
            lists[split].append(name)
            done += 1
    atomic_write_text(root / CSV_NAMES[0], "\n".join(rows) + "\n")
    for key, fname in SPLIT_LISTS.items():
        atomic_write_text(root / fname, "\n".join(lists[key]) + "\n")


def write_btcv(root: Path, shape: tuple, spacing: tuple, organ_scale: float = 1.0, noise_hu: float = 0.5,
               seed: int = 0) -> None:
    """RawData/Training/img/imgXXXX.nii.gz (int16 HU) + label/labelXXXX.nii.gz (0..13) for the 30 real ids."""
    for i, case in enumerate(BTCV_IDS):
        rng = np.random.default_rng([seed, 30, i])
        case_spacing = [s * rng.uniform(0.9, 1.1) for s in spacing]
        hu, lab, affine = abdomen_ct(rng, shape, case_spacing, organ_scale, noise_hu)
        save_nifti(root / "RawData" / "Training" / "img" / f"img{case}.nii.gz", hu, affine)
        save_nifti(root / "RawData" / "Training" / "label" / f"label{case}.nii.gz", lab, affine)


def write_brats(root: Path, n_cases: int, n_test: int, shape: tuple, noise: float = 0.01, seed: int = 0) -> None:
    """Task01_BrainTumour: dataset.json (real keys), imagesTr/BRATS_xxx.nii.gz (X,Y,Z,4) float32, labelsTr, imagesTs."""
    training, test = [], []
    for i in range(n_cases + n_test):
        rng = np.random.default_rng([seed, 4, i])
        image, label, affine = brain_mri(rng, shape, noise)
        name = f"BRATS_{i + 1:03d}.nii.gz"
        if i < n_cases:
            save_nifti(root / "imagesTr" / name, image, affine)
            save_nifti(root / "labelsTr" / name, label, affine)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            save_nifti(root / "imagesTs" / name, image, affine)
            test.append(f"./imagesTs/{name}")
    spec = {
        "name": "BRATS", "description": "Synthetic brain tumour phantoms in the MSD Task01 layout (selfmae)",
        "reference": "generated by selfmae.data.prepare_synthetic", "licence": "CC-BY-SA 4.0",
        "release": "synthetic", "tensorImageSize": "4D",
        "modality": {str(i): m for i, m in enumerate(BRATS_MODALITIES)},
        "labels": {str(k): v for k, v in BRATS_LABELS.items()},
        "numTraining": n_cases, "numTest": n_test, "training": training, "test": test,
    }
    atomic_write_text(root / "dataset.json", json.dumps(spec, indent=4))


def write_medmnist(root: Path, n_images: tuple, image_size: int, seed: int = 0) -> None:
    """chestmnist_synthetic.npz: uint8 (N, s, s) chest images + (N, 14) labels per split, MedMNIST keys."""
    rng = np.random.default_rng([seed, 28])
    arrays = {}
    for split, n in zip(("train", "val", "test"), n_images):
        labels = _draw_labels(rng, n)
        arrays[f"{split}_images"] = np.stack([chest_image(rng, image_size, lab) for lab in labels])
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(root / "chestmnist_synthetic.npz") as tmp:
        np.savez_compressed(tmp, **arrays)


# what the decathlon phantoms' labels are: (dataset.json name, ids of the drawn anatomy it covers)
DECATHLON_LABELS = {"CT": (("liver", (6,)), ("spleen", (1,)), ("kidney", (2, 3))),
                    "MRI": (("edema", (1,)), ("tumour", (2, 3)))}


def write_decathlon(root: Path, n_cases: int, form: str = "msd", modality: str = "CT", channel_files: bool = False,
                    seed: int = 0) -> None:
    """A task folder as users keep their own scans: dataset.json in the MSD form ("msd": `modality`, id -> name
    labels, a `training` list) or the nnU-Net v2 form ("nnunet": `channel_names`, name -> id labels,
    `file_ending`, no list), imagesTr/ (one 3D/4D file per case, or one 3D file per channel with channel_files)
    and labelsTr/. CT: one channel of int16 HU at 7 mm (the BTCV phantom's abdomen, 3 organs labelled); MRI:
    FLAIR and T1w float32 at 1 mm (the BraTS phantom's brain, oedema and tumour labelled)."""
    if form not in ("msd", "nnunet") or modality not in DECATHLON_LABELS or (form == "msd" and channel_files):
        raise ValueError(f"form must be 'msd' (4D files) or 'nnunet' and modality 'CT' or 'MRI', got {form!r}, "
                         f"{modality!r}, channel_files={channel_files}")
    names = ("CT",) if modality == "CT" else BRATS_MODALITIES[:2]
    training = []
    for i in range(n_cases):
        rng = np.random.default_rng([seed, 10, i])
        if modality == "CT":
            image, drawn, affine = abdomen_ct(rng, (40, 32, 28), (7.0, 7.0, 7.0), 1.25, 0.5)
        else:
            image, drawn, affine = brain_mri(rng, (32, 32, 24), 0.01)
            image = image[..., : len(names)]
        label = np.zeros(drawn.shape, np.uint8)
        for k, (_, ids) in enumerate(DECATHLON_LABELS[modality], start=1):
            label[np.isin(drawn, ids)] = k
        case = f"case_{i + 1:03d}"
        if channel_files:
            for c in range(len(names)):
                save_nifti(root / "imagesTr" / f"{case}_{c:04d}.nii.gz", image if image.ndim == 3 else image[..., c],
                           affine)
        else:
            save_nifti(root / "imagesTr" / f"{case}.nii.gz", image, affine)
        save_nifti(root / "labelsTr" / f"{case}.nii.gz", label, affine)
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    labels = ("background",) + tuple(name for name, _ in DECATHLON_LABELS[modality])
    if form == "msd":
        spec = {"name": "Phantom", "description": f"Synthetic {modality} phantoms (selfmae)", "tensorImageSize":
                "3D" if len(names) == 1 else "4D", "modality": {str(i): n for i, n in enumerate(names)},
                "labels": {str(i): n for i, n in enumerate(labels)}, "numTraining": n_cases, "numTest": 0,
                "training": training, "test": []}
    else:
        spec = {"channel_names": {str(i): n for i, n in enumerate(names)},
                "labels": {n: i for i, n in enumerate(labels)}, "numTraining": n_cases, "file_ending": ".nii.gz"}
    atomic_write_text(root / "dataset.json", json.dumps(spec, indent=4))


WRITERS = {"cxr14": write_cxr14, "btcv": write_btcv, "brats": write_brats, "medmnist": write_medmnist,
           "decathlon": write_decathlon}
