"""Readers on the real samples shipped in selfmae/data/samples and on the formats' quirks."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from _data_helpers import SAMPLES, phantom, phantom_copy, sample_copy
from selfmae.data import (
    BTCV_ORGANS, BTCV_VAL_IDS, CXR14_LABELS, DataError, label_to_regions, load_png, organ_mapping, read_brats,
    read_btcv, read_cxr14, read_medmnist,
)
from selfmae.data.common import load_nifti


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "phantoms"


def test_cxr14_real_sample_labels_from_csv(tmp_path):
    root = sample_copy("cxr14-sample", tmp_path)
    splits = read_cxr14(root, val_fraction=0.0)
    items = {it["case_id"]: it for s in splits.values() for it in s}
    assert set(items) == {"00000001_000.png", "00000002_000.png", "00000013_003.png"}
    assert [n for n in CXR14_LABELS if items["00000001_000.png"]["label"][CXR14_LABELS.index(n)]] == ["Cardiomegaly"]
    assert items["00000002_000.png"]["label"].sum() == 0  # "No Finding"
    assert items["00000013_003.png"]["label"][CXR14_LABELS.index("Pleural_Thickening")] == 1
    assert items["00000013_003.png"]["patient"] == "13"
    assert [it["case_id"] for it in splits["test"]] == ["00000013_003.png"]
    img = load_png(items["00000001_000.png"]["image"])
    assert img.shape == (1, 1024, 1024) and img.dtype == np.uint8
    assert (root / ".selfmae_png_index.json").is_file()  # index cached beside the CSV


def test_cxr14_quirks_v2020_trailing_column_nested_folders_rgba(tmp_path):
    root = sample_copy("cxr14-sample", tmp_path)
    csv = (root / "Data_Entry_2017.csv").read_text().splitlines()
    (root / "Data_Entry_2017.csv").unlink()
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join([csv[0] + ","] + [r + "," for r in csv[1:]]) + "\n")
    (root / "images_002" / "images").mkdir(parents=True)
    (root / "images" / "00000002_000.png").rename(root / "images_002" / "images" / "00000002_000.png")
    grey = np.asarray(Image.open(root / "images" / "00000001_000.png"))
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], -1)).save(root / "images" / "00000001_000.png")
    splits = read_cxr14(root, val_fraction=0.0)
    items = {it["case_id"]: it for s in splits.values() for it in s}
    assert "images_002" in items["00000002_000.png"]["image"]
    assert items["00000001_000.png"]["label"][CXR14_LABELS.index("Cardiomegaly")] == 1
    img = load_png(items["00000001_000.png"]["image"])
    assert img.shape == (1, 1024, 1024) and np.array_equal(img[0], grey)


def test_load_png_two_channel(tmp_path):
    arr = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16), np.full((16, 16), 255, np.uint8)], -1)
    Image.fromarray(arr, "LA").save(tmp_path / "la.png")
    out = load_png(tmp_path / "la.png")
    assert out.shape == (1, 16, 16) and np.array_equal(out[0], arr[..., 0])


def test_cxr14_validation_split_is_by_patient(base):
    splits = read_cxr14(phantom("cxr14", base), val_fraction=0.3, split_seed=1)
    train_p = {it["patient"] for it in splits["train"]}
    val_p = {it["patient"] for it in splits["val"]}
    assert val_p and train_p and not train_p & val_p
    again = read_cxr14(phantom("cxr14", base), val_fraction=0.3, split_seed=1)
    assert [it["case_id"] for it in again["val"]] == [it["case_id"] for it in splits["val"]]


def test_real_ct_reads_in_hounsfield_units():
    data, affine, shape = load_nifti(SAMPLES / "ct-sample" / "example_ct.nii.gz")
    assert shape == (122, 101, 112) and np.allclose(np.abs(np.diag(affine)[:3]), 3.0)
    assert data.min() >= -2048 and -1100 <= np.percentile(data, 1) <= -900  # air (reconstruction edge lower)
    assert 1000 < data.max() < 4000  # bone / contrast, not raw unsigned values
    assert ((data > -50) & (data < 100)).mean() > 0.1  # a good share of soft tissue


def test_medmnist_real_subset_shapes():
    splits = read_medmnist(SAMPLES / "medmnist" / "pneumoniamnist_subset.npz")
    assert {k: len(v) for k, v in splits.items()} == {"train": 2428, "val": 270, "test": 468}
    item = splits["train"][0]
    assert item["image"].shape == (1, 28, 28) and item["image"].dtype == np.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["label"].shape == (1,)
    assert set(np.unique([it["label"][0] for it in splits["test"]])) == {0.0, 1.0}


def test_btcv_organ_mapping_follows_table1():
    orig, target = organ_mapping(8)
    assert [BTCV_ORGANS[target[i] - 1] for i in (8, 4, 3, 2, 6, 11, 1, 7)] == [
        "Aorta", "Gallbladder", "Kidney(L)", "Kidney(R)", "Liver", "Pancreas", "Spleen", "Stomach"]
    assert [target[i] for i in (5, 9, 10, 12, 13)] == [0] * 5
    assert organ_mapping(13) == (orig, orig)


def test_btcv_raw_layout_split_18_12(base):
    splits = read_btcv(phantom("btcv", base))
    assert len(splits["train"]) == 18 and len(splits["val"]) == 12
    assert sorted(it["case_id"][3:] for it in splits["val"]) == sorted(BTCV_VAL_IDS)


def test_btcv_decathlon_json_layout(base, tmp_path):
    root = phantom("btcv", base) / "RawData" / "Training"
    spec = {"labels": {"0": "background"},
            "training": [{"image": str(root / "img" / f"img00{i}.nii.gz"), "label": str(root / "label" / f"label00{i}.nii.gz")} for i in (21, 23)],
            "validation": [{"image": str(root / "img" / "img0001.nii.gz"), "label": str(root / "label" / "label0001.nii.gz")}]}
    (tmp_path / "dataset_0.json").write_text(json.dumps(spec))
    splits = read_btcv(tmp_path)
    assert [it["case_id"] for it in splits["train"]] == ["img0021", "img0023"]
    assert splits["val"][0]["label"].endswith("label0001.nii.gz")


def test_brats_reader_skips_resource_forks_and_splits_80_20(base, tmp_path):
    root = phantom_copy("brats", base, tmp_path)
    spec = json.loads((root / "dataset.json").read_text())
    assert spec["modality"] == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    spec["training"].append({"image": "./imagesTr/._BRATS_001.nii.gz", "label": "./labelsTr/._BRATS_001.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(spec))
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
    splits = read_brats(root.parent, val_fraction=0.2, split_seed=0)
    assert len(splits["train"]) + len(splits["val"]) == 8 and len(splits["val"]) == 2
    assert not any(it["case_id"].startswith("._") for s in splits.values() for it in s)
    img = nib.load(splits["train"][0]["image"])
    assert img.shape[-1] == 4 and img.get_data_dtype() == np.float32


def test_brats_regions_both_conventions():
    lab = np.array([0, 1, 2, 3])
    tc, wt, et = label_to_regions(lab, "dataset_json")
    assert tc.tolist() == [0, 0, 1, 1] and wt.tolist() == [0, 1, 1, 1] and et.tolist() == [0, 0, 0, 1]
    assert label_to_regions(lab, "selfmedmae_code")[2].tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="et_convention"):
        label_to_regions(lab, "brats2021")


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="Data_Entry_2017.csv"):
        read_cxr14(tmp_path)
    with pytest.raises(DataError, match="dataset.json"):
        read_brats(tmp_path)
    with pytest.raises(DataError, match="missing.npz"):
        read_medmnist(tmp_path / "missing.npz")
