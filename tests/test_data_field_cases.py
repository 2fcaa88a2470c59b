"""Datasets as users bring them (issue #13): other label ids, nnU-Net v2 dataset.json, splits that come out
empty, files the raw BTCV layout does not take. Small equivalents of the field cases are generated here."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import SAMPLES, phantom
from selfmae.data import DataError, check_data, label_to_regions, read_brats, read_btcv, read_cxr14
from selfmae.data.brats import region_ids
from selfmae.data.common import save_nifti

AFFINE = np.eye(4)


def brats_folder(root: Path, ids=(0, 1, 2, 3), n_cases: int = 2, form: str = "msd", per_channel: bool = False) -> Path:
    """A tiny MSD BraTS folder whose labels use `ids` (background, edema, non-enhancing, enhancing), its
    dataset.json in MSD or nnU-Net v2 form (v2: no file list; per_channel: one image file per channel)."""
    task = root / "Task01_BrainTumour"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for c in range(1, n_cases + 1):
        lab = np.zeros((8, 8, 6), np.uint8)
        lab[1:7, 1:7, 1:5], lab[2:6, 2:6, 2:4], lab[3:5, 3:5, 2:4] = ids[1], ids[2], ids[3]
        image = rng.random((8, 8, 6, 4)).astype(np.float32)
        if per_channel:
            for ch in range(4):
                save_nifti(task / "imagesTr" / f"BRATS_{c:03d}_{ch:04d}.nii.gz", image[..., ch], AFFINE)
        else:
            save_nifti(task / "imagesTr" / f"BRATS_{c:03d}.nii.gz", image, AFFINE)
        save_nifti(task / "labelsTr" / f"BRATS_{c:03d}.nii.gz", lab, AFFINE)
    names = ("background", "edema", "non-enhancing tumor", "enhancing tumour")
    channels = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    if form == "msd":
        spec = {"name": "BRATS", "description": "test", "tensorImageSize": "4D", "modality": channels,
                "labels": {str(i): n for i, n in zip(ids, names)}, "numTraining": n_cases, "numTest": 0, "test": [],
                "training": [{"image": f"./imagesTr/BRATS_{c:03d}.nii.gz", "label": f"./labelsTr/BRATS_{c:03d}.nii.gz"}
                             for c in range(1, n_cases + 1)]}
    else:
        spec = {"name": "BRATS", "channel_names": channels, "labels": {n: i for i, n in zip(ids, names)},
                "numTraining": n_cases, "file_ending": ".nii.gz"}
    (task / "dataset.json").write_text(json.dumps(spec))
    return root


# ------------------------------------------------------------------------------------- label ids (case 2)
def test_brats_2018_label_ids_declared_in_dataset_json_give_non_empty_regions(tmp_path):
    root = brats_folder(tmp_path, ids=(0, 1, 2, 4))
    assert check_data("brats", root) == []
    regions = region_ids(root)
    assert regions == {"TC": (2, 4), "WT": (1, 2, 4), "ET": (4,)}
    assert region_ids(root, "selfmedmae_code")["ET"] == (2,)
    lab = np.array([0, 1, 2, 4])
    assert label_to_regions(lab, regions=regions)[2].tolist() == [0, 0, 0, 1]     # ET found, not empty


def test_label_ids_that_dataset_json_does_not_declare_are_refused_naming_the_file(tmp_path):
    root = brats_folder(tmp_path, ids=(0, 1, 2, 4))
    spec_path = root / "Task01_BrainTumour" / "dataset.json"
    spec = json.loads(spec_path.read_text())
    spec["labels"] = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    spec_path.write_text(json.dumps(spec))
    text = "\n".join(str(p) for p in check_data("brats", root))
    assert "BRATS_001.nii.gz: label values [4] outside the expected [0, 1, 2, 3]" in text
    assert "region ET (label id(s) [3]" in text and "empty in every label file" in text


def test_labels_whose_names_say_nothing_are_refused(tmp_path):
    root = brats_folder(tmp_path, ids=(0, 1, 2, 4))
    spec_path = root / "Task01_BrainTumour" / "dataset.json"
    spec = json.loads(spec_path.read_text())
    spec["labels"] = {"0": "background", "1": "a", "2": "b", "4": "c"}
    spec_path.write_text(json.dumps(spec))
    problems = check_data("brats", root)
    assert any("dataset.json" in p.path and "cannot tell the tumour regions" in p.message for p in problems)


# ------------------------------------------------------------------------------------- nnU-Net v2 (case 5)
@pytest.mark.parametrize("per_channel", [False, True])
def test_nnunet_v2_dataset_json_is_read(tmp_path, per_channel):
    root = brats_folder(tmp_path, form="nnunet_v2", per_channel=per_channel)
    assert check_data("brats", root) == []
    splits = read_brats(root, val_fraction=0.5)
    assert sorted(it["case_id"] for s in splits.values() for it in s) == ["BRATS_001", "BRATS_002"]
    assert region_ids(root) == {"TC": (2, 3), "WT": (1, 2, 3), "ET": (3,)}
    if per_channel:
        assert [Path(p).name for p in splits["train"][0]["image"]][-1].endswith("_0003.nii.gz")


def test_nnunet_v2_folder_trains_through_the_pipeline(tmp_path):
    """The transforms read per-channel files and the declared regions: (4, *roi) image, (3, *roi) regions."""
    from selfmae.data import build_datasets

    root = brats_folder(tmp_path, ids=(0, 1, 2, 4), form="nnunet_v2", per_channel=True)
    ds = build_datasets({"dataset": "brats", "data_dir": str(root), "roi_size": [8, 8, 8], "val_fraction": 0.5,
                         "split_seed": 0, "spacing": None, "et_convention": "dataset_json", "num_samples": 1,
                         "cache": False}, "segment")
    item = ds["val"][0]
    assert tuple(item["image"].shape[:1]) == (4,) and tuple(item["label"].shape[:1]) == (3,)
    assert item["label"][2].sum() > 0       # ET (label 4 here) is not empty


def test_a_spacing_too_coarse_for_the_volumes_is_a_data_error_naming_the_file(tmp_path, capsys):
    """A head 2 voxels wide in an 8 x 8 x 6 volume at 1 mm is one voxel at the tiny profile's 7 mm: the label is
    gone and the z-scored voxel is 0, so nothing is left to centre a crop on (the brats-label4 field case).
    Was MONAI's "No sampling location available" traceback; now one line naming the image and the spacing, exit
    status 1, nothing trained."""
    import nibabel as nib

    from selfmae.cli import main

    root = brats_folder(tmp_path, ids=(0, 1, 2, 4))
    for path in (root / "Task01_BrainTumour" / "imagesTr").glob("*.nii.gz"):   # a small head, a small tumour
        image, label = np.zeros((8, 8, 6, 4), np.float32), np.zeros((8, 8, 6), np.uint8)
        image[3:5, 3:5, 2:4], label[3, 3, 2] = 1.0 + np.arange(4), 4
        save_nifti(path, image, nib.load(path).affine)
        save_nifti(path.parent.parent / "labelsTr" / path.name, label, nib.load(path).affine)
    rc = main(["finetune", "--config", "finetune_decathlon", "--data-dir", str(root), "--device", "cpu",
               "--out-dir", str(tmp_path / "run"), "--set", "train.epochs=1"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    assert "imagesTr/BRATS_00" in err and "no voxel to centre a training crop on at data.spacing=[7.0" in err
    assert not (tmp_path / "run" / "metrics.csv").exists()


# ------------------------------------------------------------------------------------- empty splits (case 6)
def test_cxr14_with_one_patient_is_refused_before_training(tmp_path, capsys):
    from selfmae.cli import main

    root = tmp_path / "cxr"
    shutil.copytree(SAMPLES / "cxr14-sample", root)
    names = sorted(p.name for p in (root / "images").iterdir())
    lines = (root / "Data_Entry_2017.csv").read_text().splitlines()
    header, rows = lines[0], [ln for ln in lines[1:] if ln.strip()]
    patient = {n: "8" if n == names[2] else "7" for n in names}   # training images: patient 7; the test one: 8
    rows = [",".join(r.split(",", 4)[:2] + ["0", patient.get(r.split(",", 1)[0], "7"), r.split(",", 4)[4]])
            for r in rows]
    (root / "Data_Entry_2017.csv").write_text("\n".join([header] + rows) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(names[:2]) + "\n")
    (root / "test_list.txt").write_text(names[2] + "\n")
    problems = check_data("cxr14", root)
    assert any("train_val_list.txt" in p.path and "split 'val' is empty" in p.message and "1 patient" in p.message
               for p in problems), problems
    with pytest.raises(DataError, match="split 'val' is empty"):
        read_cxr14(root)
    rc = main(["pretrain", "--config", "pretrain_cxr14", "--data-dir", str(root), "--out-dir", str(tmp_path / "run"),
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "split 'val' is empty" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.csv").exists()
    # the check splits as the run would: a changed data.val_fraction is the one the message quotes (was: 0.1
    # whatever the run set), and val_fraction=0 is refused saying training needs a validation split
    for fraction, said in (("0.5", "(data.val_fraction=0.5): at least 2 patients"),
                           ("0", "picks its best checkpoint on the validation split")):
        rc = main(["pretrain", "--config", "pretrain_cxr14", "--data-dir", str(root), "--device", "cpu",
                   "--out-dir", str(tmp_path / f"run{fraction}"), "--set", f"data.val_fraction={fraction}"])
        err = capsys.readouterr().err
        assert rc == 1 and said in err and "Traceback" not in err, err
    # check-data checks the split the run would carve when told its settings, and names the ones it takes
    assert main(["check-data", "--dataset", "cxr14", "--data-dir", str(root), "--set", "data.val_fraction=0.5"]) == 1
    assert "(data.val_fraction=0.5): at least 2 patients" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="for cxr14 takes data.val_fraction, data.split_seed; got train.lr"):
        main(["check-data", "--dataset", "cxr14", "--data-dir", str(root), "--set", "train.lr=1"])
    with pytest.raises(SystemExit, match="for btcv takes no setting: its check depends on none; got data.split_seed"):
        main(["check-data", "--dataset", "btcv", "--data-dir", str(root), "--set", "data.split_seed=1"])


def test_brats_with_one_case_cannot_be_split(tmp_path):
    root = brats_folder(tmp_path, n_cases=1)
    assert any("split 'val' is empty" in p.message and "1 training case" in p.message
               for p in check_data("brats", root))


def test_btcv_raw_folder_with_only_validation_ids(tmp_path):
    raw = tmp_path / "RawData" / "Training"
    src = phantom("btcv", tmp_path / "phantoms") / "RawData" / "Training"
    for kind in ("img", "label"):
        (raw / kind).mkdir(parents=True)
        for case in ("0001", "0002"):
            shutil.copy(src / kind / f"{kind}{case}.nii.gz", raw / kind)
    with pytest.raises(DataError, match=r"split 'train' is empty \(the 2 case\(s\) found all carry validation ids"):
        read_btcv(tmp_path)


def test_a_label_fraction_subset_is_never_empty_and_an_empty_split_stops_the_run(tmp_path):
    from torch.utils.data import Subset

    from selfmae.experiments import label_subset, require_nonempty

    assert len(label_subset(list(range(3)), 0.01, 0)) == 1
    with pytest.raises(ValueError, match="label_fraction"):
        label_subset([], 0.5, 0)
    with pytest.raises(DataError, match="split 'val' is empty after splitting"):
        require_nonempty({"train": [1], "val": Subset([1], [])}, {"dataset": "btcv", "data_dir": "x"}, 0.1)


# ------------------------------------------------------------------------------- BTCV files not taken (case 7)
def test_btcv_files_outside_the_standard_ids_are_named(tmp_path):
    src = phantom("btcv", tmp_path / "phantoms") / "RawData" / "Training"
    raw = tmp_path / "mine" / "RawData" / "Training"
    for kind in ("img", "label"):
        (raw / kind).mkdir(parents=True)
        shutil.copy(src / kind / f"{kind}0005.nii.gz", raw / kind / f"{kind}0101.nii.gz")
        shutil.copy(src / kind / f"{kind}0021.nii.gz", raw / kind / f"{kind}0021.nii.gz")
        shutil.copy(src / kind / f"{kind}0001.nii.gz", raw / kind / f"{kind}0001.nii.gz")
    problems = [str(p) for p in check_data("btcv", tmp_path / "mine")]
    extra = [p for p in problems if "not taken" in p]
    assert len(extra) == 1 and "img0101.nii.gz" in extra[0] and "label0101.nii.gz" in extra[0]
    assert "img0001-0010, img0021-0040" in extra[0] and "dataset_0.json" in extra[0]
