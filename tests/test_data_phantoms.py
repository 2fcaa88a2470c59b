"""Phantoms: real layouts, read back by the readers, deterministic, plausible values, learnable labels."""
from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np

from _data_helpers import phantom
from selfmae.data import (
    BTCV_VAL_IDS, CXR14_LABELS, load_png, prepare_synthetic, read_brats, read_btcv, read_cxr14, read_medmnist,
)
import pytest


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "phantoms"


def test_cxr14_layout_round_trip(base):
    root = phantom("cxr14", base)
    with open(root / "Data_Entry_2017.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:7] == ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
                           "Patient Gender", "View Position"]
    assert rows[0][7:] == ["OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
    assert len(rows) == 61 and all(len(r) == 11 for r in rows)
    splits = read_cxr14(root, val_fraction=0.1)
    items = [it for s in splits.values() for it in s]
    assert len(items) == 60 and splits["test"]
    by_name = {r[0]: r[1] for r in rows[1:]}
    for it in items[:10]:
        names = [CXR14_LABELS[i] for i in np.flatnonzero(it["label"])] or ["No Finding"]
        assert "|".join(names) == by_name[it["case_id"]]
    img = load_png(items[0]["image"])
    assert img.shape == (1, 64, 64) and img.dtype == np.uint8
    assert len({it["patient"] for it in items}) < len(items)  # several images per patient


def test_btcv_layout_round_trip_and_hu(base):
    root = phantom("btcv", base)
    splits = read_btcv(root)
    assert len(splits["train"]) == 18 and {it["case_id"][3:] for it in splits["val"]} == set(BTCV_VAL_IDS)
    img, lab = nib.load(splits["train"][0]["image"]), nib.load(splits["train"][0]["label"])
    assert img.get_data_dtype() == np.int16 and img.shape == (40, 40, 24)
    assert np.allclose(img.affine, lab.affine) and abs(img.affine[0, 0]) > 8  # spacing in the affine
    hu, ids = np.asarray(img.dataobj), np.asarray(lab.dataobj)
    assert hu.min() <= -950 and hu.max() >= 300  # air and bone (thin cortex partial-volumed at ~8 mm voxels)
    assert abs(np.median(hu[ids == 6]) - 60) < 25  # liver
    assert np.median(hu[ids == 8]) > 110 and np.percentile(hu[ids == 8], 90) > 180  # contrast-filled aorta (partial volume at 9.6 mm)
    assert {1, 2, 3, 4, 6, 7, 8, 11} <= set(np.unique(ids).tolist())


def test_brats_layout_round_trip_contrasts(base):
    root = phantom("brats", base)
    spec = json.loads((root / "dataset.json").read_text())
    assert {"name", "description", "tensorImageSize", "modality", "labels", "numTraining", "numTest", "training",
            "test"} <= set(spec)
    assert spec["numTraining"] == len(spec["training"]) == 8 and spec["tensorImageSize"] == "4D"
    splits = read_brats(root.parent)
    item = splits["train"][0]
    img = np.asarray(nib.load(item["image"]).dataobj)
    lab = np.asarray(nib.load(item["label"]).dataobj)
    assert img.shape == (32, 32, 24, 4) and img.dtype == np.float32
    assert set(np.unique(lab).tolist()) <= {0, 1, 2, 3} and (lab == 1).any() and (lab == 3).any()
    flair, t1gd = img[..., 0], img[..., 2]
    brain = (lab == 0) & (img[..., 1] > 0)
    assert flair[lab == 1].mean() > 1.2 * flair[brain].mean()  # oedema bright on FLAIR
    assert t1gd[lab == 3].mean() > 1.3 * t1gd[brain].mean()  # enhancing rim bright on t1gd
    assert (img[lab == 0].min(axis=0) == 0).all()  # skull-stripped: zero outside the brain


def test_medmnist_phantom_round_trip(base):
    splits = read_medmnist(phantom("medmnist", base) / "chestmnist_synthetic.npz")
    assert [len(splits[s]) for s in ("train", "val", "test")] == [20, 6, 8]
    assert splits["train"][0]["image"].shape == (1, 28, 28) and splits["train"][0]["label"].shape == (14,)


def test_phantoms_are_deterministic(tmp_path):
    a = prepare_synthetic("brats", tmp_path / "a", n_cases=2, n_test=0, shape=(24, 24, 16), seed=3)
    b = prepare_synthetic("brats", tmp_path / "b", n_cases=2, n_test=0, shape=(24, 24, 16), seed=3)
    c = prepare_synthetic("brats", tmp_path / "c", n_cases=2, n_test=0, shape=(24, 24, 16), seed=4)
    read = lambda root: np.asarray(nib.load(root / "imagesTr" / "BRATS_002.nii.gz").dataobj)  # noqa: E731
    assert np.array_equal(read(a), read(b)) and not np.array_equal(read(a), read(c))


def test_cxr14_findings_are_learnable(tmp_path):
    """A linear probe (ridge regression on 32x32 pixels) separates most findings: the labels are visible."""
    from sklearn.metrics import roc_auc_score

    root = prepare_synthetic("cxr14", tmp_path, n_images=400, image_size=64, seed=1)
    items = [it for s in read_cxr14(root, val_fraction=0).values() for it in s]
    x = np.stack([load_png(it["image"])[0, ::2, ::2].ravel() / 255.0 for it in items])
    x = np.c_[x, np.ones(len(x))]
    y = np.stack([it["label"] for it in items])
    n = 280
    w = np.linalg.solve(x[:n].T @ x[:n] + np.eye(x.shape[1]), x[:n].T @ y[:n])
    aucs = {name: roc_auc_score(y[n:, j], x[n:] @ w[:, j]) for j, name in enumerate(CXR14_LABELS)}
    assert np.mean(list(aucs.values())) > 0.8, aucs
    # (Hernia is drawn in 5 % of images: ~6 test positives here, too few for a stable per-finding bound)
    for name in ("Cardiomegaly", "Effusion", "Consolidation", "Edema", "Emphysema"):
        assert aucs[name] > 0.9, (name, aucs)
