"""check_data / require_valid: every kind of bad input is reported, each problem naming its file."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from _data_helpers import phantom, phantom_copy
from selfmae.data import DataError, check_data, require_valid
from selfmae.data.common import save_nifti


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "phantoms"


def problems_text(dataset, root):
    return "\n".join(str(p) for p in check_data(dataset, root))


def assert_reported(dataset, root, filename, *phrases):
    """The check finds a problem whose text names `filename` and contains every phrase; require_valid raises it."""
    problems = [str(p) for p in check_data(dataset, root) if filename in p.path]
    assert any(all(ph in p for ph in phrases) for p in problems), (filename, phrases, problems_text(dataset, root))
    with pytest.raises(DataError) as err:
        require_valid(dataset, root)
    assert isinstance(err.value, ValueError) and filename in str(err.value)


@pytest.mark.parametrize("dataset", ["cxr14", "btcv", "brats", "medmnist"])
def test_phantoms_are_clean(base, dataset):
    assert check_data(dataset, phantom(dataset, base)) == []
    require_valid(dataset, phantom(dataset, base))


def _btcv(base, tmp_path):
    root = phantom_copy("btcv", base, tmp_path)
    return root, root / "RawData" / "Training"


def test_missing_label_file(base, tmp_path):
    root, raw = _btcv(base, tmp_path)
    (raw / "label" / "label0005.nii.gz").unlink()
    assert_reported("btcv", root, "label0005.nii.gz", "file not found")


def test_truncated_nifti(base, tmp_path):
    root, raw = _btcv(base, tmp_path)
    path = raw / "img" / "img0007.nii.gz"
    path.write_bytes(path.read_bytes()[:2000])
    assert_reported("btcv", root, "img0007.nii.gz", "corrupt or truncated")


def test_corrupt_png(base, tmp_path):
    root = phantom_copy("cxr14", base, tmp_path)
    name = sorted((root / "images").iterdir())[3].name
    data = (root / "images" / name).read_bytes()
    (root / "images" / name).write_bytes(data[: len(data) // 2])
    assert_reported("cxr14", root, name, "corrupt")


def test_not_a_png(base, tmp_path):
    root = phantom_copy("cxr14", base, tmp_path)
    name = sorted((root / "images").iterdir())[0].name
    (root / "images" / name).write_text("<html>404 Not Found</html>")
    assert_reported("cxr14", root, name, "corrupt or unreadable PNG")


def test_wrong_channel_count(base, tmp_path):
    root = phantom_copy("brats", base, tmp_path)
    path = root / "imagesTr" / "BRATS_003.nii.gz"
    img = nib.load(path)
    save_nifti(path, np.asarray(img.dataobj)[..., :3], img.affine)
    assert_reported("brats", root.parent, "BRATS_003.nii.gz", "expected 4 channels", "found 3")


def test_3d_image_where_4d_expected(base, tmp_path):
    root = phantom_copy("brats", base, tmp_path)
    path = root / "imagesTr" / "BRATS_002.nii.gz"
    img = nib.load(path)
    save_nifti(path, np.asarray(img.dataobj)[..., 0], img.affine)
    assert_reported("brats", root.parent, "BRATS_002.nii.gz", "expected a 4D volume")


def test_image_label_shape_mismatch(base, tmp_path):
    root, raw = _btcv(base, tmp_path)
    lab = nib.load(raw / "label" / "label0022.nii.gz")
    save_nifti(raw / "label" / "label0022.nii.gz", np.asarray(lab.dataobj)[:, :, :-2], lab.affine)
    assert_reported("btcv", root, "label0022.nii.gz", "does not match image img0022")


def test_affine_mismatch(base, tmp_path):
    root, raw = _btcv(base, tmp_path)
    lab = nib.load(raw / "label" / "label0023.nii.gz")
    save_nifti(raw / "label" / "label0023.nii.gz", np.asarray(lab.dataobj), lab.affine @ np.diag([2, 1, 1, 1]))
    assert_reported("btcv", root, "label0023.nii.gz", "affine differs")


def test_label_id_out_of_range(base, tmp_path):
    root, raw = _btcv(base, tmp_path)
    lab = nib.load(raw / "label" / "label0030.nii.gz")
    data = np.asarray(lab.dataobj).copy()
    data[0, 0, 0] = 20
    save_nifti(raw / "label" / "label0030.nii.gz", data, lab.affine)
    assert_reported("btcv", root, "label0030.nii.gz", "label values [20]")


def test_nan_voxels(base, tmp_path):
    root = phantom_copy("brats", base, tmp_path)
    path = root / "imagesTr" / "BRATS_004.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj).copy()
    data[1:3, 5, 5, 2] = np.nan
    save_nifti(path, data, img.affine)
    assert_reported("brats", root.parent, "BRATS_004.nii.gz", "2 NaN/inf voxels")


def test_empty_split_list(base, tmp_path):
    root = phantom_copy("cxr14", base, tmp_path)
    (root / "test_list.txt").write_text("\n")
    assert_reported("cxr14", root, "test_list.txt", "empty")


def test_empty_split_json(base, tmp_path):
    raw = phantom("btcv", base) / "RawData" / "Training"
    spec = {"training": [{"image": str(raw / "img" / "img0021.nii.gz"), "label": str(raw / "label" / "label0021.nii.gz")}],
            "validation": []}
    (tmp_path / "dataset_0.json").write_text(json.dumps(spec))
    assert_reported("btcv", tmp_path, "dataset_0.json", "'val' is empty")


def test_csv_without_needed_columns(base, tmp_path):
    root = phantom_copy("cxr14", base, tmp_path)
    csv = root / "Data_Entry_2017.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0].replace("Patient ID", "PatientID")] + lines[1:]) + "\n")
    assert_reported("cxr14", root, "Data_Entry_2017.csv", "missing column", "Patient ID")


def test_split_list_names_absent_images(base, tmp_path):
    root = phantom_copy("cxr14", base, tmp_path)
    names = (root / "train_val_list.txt").read_text().split()
    (root / "images" / names[0]).unlink()
    (root / "train_val_list.txt").write_text("\n".join(names + ["99999999_000.png"]) + "\n")
    assert_reported("cxr14", root, names[0], "listed in train_val_list.txt but not found")
    assert_reported("cxr14", root, "train_val_list.txt", "99999999_000.png has no row")


def test_test_list_sharing_images_or_patients_with_train_val_is_leakage(base, tmp_path):
    """The test set must not hold training images, nor images of patients trained on (the official split is
    disjoint by patient); the phantoms (test_phantoms_are_clean) and the shipped sample are."""
    root = phantom_copy("cxr14", base, tmp_path)
    train = (root / "train_val_list.txt").read_text().split()
    test_list = root / "test_list.txt"
    test = test_list.read_text().split()
    test_list.write_text("\n".join(test + train[:2]) + "\n")
    assert_reported("cxr14", root, "test_list.txt", "2 image(s) also listed in train_val_list.txt", train[0])

    test_list.write_text("\n".join(test) + "\n")
    csv = root / "Data_Entry_2017.csv"
    rows = [r.split(",") for r in csv.read_text().splitlines()]
    patient_of = {r[0]: r[3] for r in rows[1:]}
    for r in rows[1:]:
        if r[0] == test[0]:
            r[3] = patient_of[train[0]]          # the first test image now belongs to a training patient
    csv.write_text("\n".join(",".join(r) for r in rows) + "\n")
    assert_reported("cxr14", root, "test_list.txt", "images of 1 patient(s) also in train_val_list.txt",
                    f"Patient ID {int(patient_of[train[0]])}")


def test_a_test_list_whose_labels_give_no_auc_is_refused(base, tmp_path):
    """One test image: every label is all-positive or all-negative there, so the test mAUC is undefined."""
    root = phantom_copy("cxr14", base, tmp_path)
    test_list = root / "test_list.txt"
    test_list.write_text(test_list.read_text().split()[0] + "\n")
    assert_reported("cxr14", root, "test_list.txt", "no finding is both present in one and absent",
                    "test mAUC a fine-tuning reports is undefined", "check-data --task pretrain")


def test_dataset_json_missing_keys(base, tmp_path):
    root = phantom_copy("brats", base, tmp_path)
    spec = json.loads((root / "dataset.json").read_text())
    del spec["modality"], spec["numTest"]
    (root / "dataset.json").write_text(json.dumps(spec))
    assert_reported("brats", root.parent, "dataset.json", "missing key(s)", "modality")


def test_medmnist_length_mismatch_and_empty_split(tmp_path):
    arrays = {f"{s}_{k}": np.zeros((4, 8, 8) if k == "images" else (4, 1), np.uint8)
              for s in ("train", "val", "test") for k in ("images", "labels")}
    arrays["val_labels"] = np.zeros((3, 1), np.uint8)
    arrays["test_images"], arrays["test_labels"] = np.zeros((0, 8, 8), np.uint8), np.zeros((0, 1), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    assert_reported("medmnist", tmp_path, "bad.npz", "val_images has 4 items but val_labels 3")
    assert_reported("medmnist", tmp_path, "bad.npz", "split 'test' is empty")


def test_every_problem_is_reported_not_just_the_first(base, tmp_path):
    root, raw = _btcv(base, tmp_path)
    (raw / "img" / "img0001.nii.gz").write_bytes(b"garbage")
    (raw / "label" / "label0040.nii.gz").unlink()
    lab = nib.load(raw / "label" / "label0010.nii.gz")
    data = np.asarray(lab.dataobj).copy()
    data[1, 1, 1] = 99
    save_nifti(raw / "label" / "label0010.nii.gz", data, lab.affine)
    text = problems_text("btcv", root)
    for name in ("img0001.nii.gz", "label0040.nii.gz", "label0010.nii.gz"):
        assert name in text
    with pytest.raises(ValueError, match=r"3 problem\(s\)"):
        require_valid("btcv", root)


def test_a_passed_check_is_remembered_until_a_file_changes(base, tmp_path, monkeypatch):
    import selfmae.data.checks as checks_mod

    root = phantom_copy("btcv", base, tmp_path)
    memo, calls, real = tmp_path / "memo", [], checks_mod.check_data
    monkeypatch.setattr(checks_mod, "check_data", lambda *a: calls.append(a) or real(*a))
    assert require_valid("btcv", root, memo) is False   # checked now
    assert require_valid("btcv", root, memo) is True    # unchanged data: remembered, not read again
    assert len(calls) == 1 and len(list(memo.glob("btcv-*.ok"))) == 1
    # settings its check does not depend on (BTCV's check reads no split setting) keep the remembered pass
    assert require_valid("btcv", root, memo, data_cfg={"val_fraction": 0.5, "split_seed": 3}) is True
    assert len(calls) == 1
    calls.clear()
    volume = sorted(root.rglob("*.nii.gz"))[0]
    volume.write_bytes(volume.read_bytes()[:200])  # truncated: the listing changes, so it is checked again
    with pytest.raises(DataError, match=volume.name):
        require_valid("btcv", root, memo)
    assert len(calls) == 1
    with pytest.raises(DataError):  # a failed check is never remembered
        require_valid("btcv", root, memo)
    assert len(calls) == 2


def test_a_remembered_cxr14_check_is_keyed_on_the_split_it_carved(base, tmp_path, monkeypatch):
    """CXR14's check carves the run's patient-wise validation split (`DatasetSpec.check_keys`): other split
    settings are checked again and remembered apart; a setting the check does not read changes nothing."""
    import selfmae.data.checks as checks_mod

    root = phantom_copy("cxr14", base, tmp_path)
    memo, calls, real = tmp_path / "memo", [], checks_mod.check_data
    monkeypatch.setattr(checks_mod, "check_data", lambda *a: calls.append(a) or real(*a))
    defaults = {"val_fraction": 0.1, "split_seed": 0, "resize": 256}
    assert require_valid("cxr14", root, memo, data_cfg=defaults) is False
    assert require_valid("cxr14", root, memo, data_cfg={**defaults, "resize": 128}) is True
    other = {**defaults, "split_seed": 3}
    assert require_valid("cxr14", root, memo, data_cfg=other) is False
    assert require_valid("cxr14", root, memo, data_cfg=other) is True
    assert len(calls) == 2 and len(list(memo.glob("cxr14-*.ok"))) == 2


def test_passed_checks_are_remembered_in_the_user_cache_not_the_repository(base, tmp_path, monkeypatch):
    """The memo lives under $SELFMAE_CACHE (else $XDG_CACHE_HOME/selfmae); a cache that cannot be written warns
    and the run goes on (the next run checks again)."""
    from selfmae.experiments.build import data_check_memo_dir

    monkeypatch.delenv("SELFMAE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_check_memo_dir() == tmp_path / "xdg" / "selfmae" / "data-checks"
    monkeypatch.setenv("SELFMAE_CACHE", str(tmp_path / "cache"))
    assert data_check_memo_dir() == tmp_path / "cache" / "data-checks"

    root = phantom_copy("btcv", base, tmp_path)
    (tmp_path / "a-file").write_text("")
    with pytest.warns(UserWarning, match="not remembered"):
        require_valid("btcv", root, tmp_path / "a-file" / "memo")
