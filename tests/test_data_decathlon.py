"""Your own scans (issue #14): a Decathlon / nnU-Net v2 task folder pre-trains and fine-tunes through the CLI, in
both dataset.json forms, channels as 4D files or _0000.. files; the real CT sample pre-trains; bad folders are
refused naming the file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from selfmae.cli import main
from selfmae.config import load_config
from selfmae.data import DataError, build_datasets, check_data, dataset_spec
from selfmae.data.decathlon import classes, intensity, read_decathlon
from selfmae.data.phantoms import write_decathlon
from selfmae.data.registry import SAMPLES_DIR

CT_SAMPLE = SAMPLES_DIR / "ct-sample" / "example_ct.nii.gz"
QUICK = ["--profile", "tiny", "--device", "cpu", "--set", "train.max_steps=2", "--set", "train.epochs=1",
         "--set", "train.warmup_epochs=0"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three phantom task folders: MSD form CT, MSD form 2-channel MRI (4D files), nnU-Net v2 form 2-channel MRI
    (one file per channel) of the same cases."""
    root = tmp_path_factory.mktemp("decathlon")
    write_decathlon(root / "Task90_CT", 4, "msd", "CT")
    write_decathlon(root / "Task91_MRI", 4, "msd", "MRI")
    write_decathlon(root / "Dataset092_MRI", 4, "nnunet", "MRI", channel_files=True)
    return root


def test_both_forms_read_channels_labels_and_intensity_recipe(folders):
    spec = dataset_spec("decathlon")
    ct, msd, nnunet = (str(folders / n) for n in ("Task90_CT", "Task91_MRI", "Dataset092_MRI"))
    assert spec.in_channels({"data_dir": ct}) == 1 and spec.in_channels({"data_dir": nnunet}) == 2
    assert spec.eval_classes({"data_dir": ct}) == (("liver", "spleen", "kidney"), [1, 2, 3])
    assert spec.eval_classes({"data_dir": msd}) == spec.eval_classes({"data_dir": nnunet}) == (("edema", "tumour"), [1, 2])
    assert spec.out_channels({"data_dir": ct}) == 4
    item = read_decathlon(nnunet)["train"][0]
    assert [Path(p).name for p in item["image"]] == [f"{item['case_id']}_0000.nii.gz", f"{item['case_id']}_0001.nii.gz"]
    assert "label" not in read_decathlon(nnunet, with_labels=False)["val"][0]
    for path in (ct, msd, nnunet):
        assert check_data("decathlon", path, "segment") == []


def test_check_data_on_the_cli_says_what_it_read(folders, capsys):
    assert main(["check-data", "--dataset", "decathlon", "--data-dir", str(folders / "Dataset092_MRI"),
                 "--task", "segment"]) == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out and "channels: FLAIR, T1w (intensity recipe: mri)" in out
    assert "labels to segment: edema, tumour" in out
    broken = folders.parent / "broken_labels"
    if not broken.exists():
        shutil.copytree(folders / "Task90_CT", broken)
        (broken / "labelsTr" / "case_001.nii.gz").unlink()
    assert main(["check-data", "--dataset", "decathlon", "--data-dir", str(broken), "--task", "segment"]) == 1
    assert str(broken / "labelsTr" / "case_001.nii.gz") in capsys.readouterr().err
    assert main(["check-data", "--dataset", "decathlon", "--data-dir", str(broken), "--task", "pretrain"]) == 0


def test_ct_is_windowed_to_unit_range_and_mri_z_scored_on_nonzero_voxels(folders):
    def val_image(name, experiment, spacing=None):
        cfg = load_config(experiment, "tiny", {"data.data_dir": str(folders / name), "data.spacing": spacing})
        return build_datasets(cfg["data"], cfg["task"])["val"][0]

    ct = val_image("Task90_CT", "finetune_decathlon", [7.0, 7.0, 7.0])
    assert ct["image"].shape[0] == 1 and 0.0 <= float(ct["image"].min()) and float(ct["image"].max()) <= 1.0
    assert set(ct["label"].unique().tolist()) <= {0, 1, 2, 3}
    four_d, per_channel = val_image("Task91_MRI", "finetune_decathlon"), val_image("Dataset092_MRI", "finetune_decathlon")
    image = four_d["image"]
    assert image.shape[0] == 2 and np.allclose(image.numpy(), per_channel["image"].numpy())   # same cases, same tensors
    for c in range(2):
        nonzero = image[c][image[c] != 0]
        assert abs(float(nonzero.mean())) < 0.05 and abs(float(nonzero.std()) - 1) < 0.05


@pytest.mark.parametrize("name,extra", [("Task90_CT", []), ("Dataset092_MRI", ["--set", "data.spacing=null"])])
def test_pretrain_and_finetune_through_the_cli(folders, tmp_path, capsys, name, extra):
    """`python -m selfmae pretrain/finetune --dataset decathlon --data-dir <task folder>`: two steps each, then
    the fine-tuned UNETR is scored on the held-out cases per declared label."""
    data = ["--data-dir", str(folders / name), *QUICK, *extra]
    assert main(["pretrain", "--dataset", "decathlon", "--out-dir", str(tmp_path / "pre"), *data]) == 0
    assert (tmp_path / "pre" / "last.pt").is_file()
    capsys.readouterr()
    assert main(["finetune", "--dataset", "decathlon", "--out-dir", str(tmp_path / "ft"), *data,
                 "--set", "model.init=mae", "--set", f"model.pretrained={tmp_path / 'pre' / 'last.pt'}"]) == 0
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    names = ("liver", "spleen", "kidney") if "CT" in name else ("edema", "tumour")
    assert summary["init"] == "mae" and all(0.0 <= summary[f"dice/{n}"] <= 1.0 for n in names)
    # a later `evaluate` of that checkpoint writes beside the run, never over its summary, and names the init the
    # checkpoint was trained from (not the CLI config's default "scratch")
    before = (tmp_path / "ft" / "summary.json").read_bytes()
    assert main(["evaluate", "--dataset", "decathlon", "--checkpoint", str(tmp_path / "ft" / "best.pt"), *data]) == 0
    assert (tmp_path / "ft" / "summary.json").read_bytes() == before
    again = json.loads((tmp_path / "ft" / "evaluate-best" / "summary.json").read_text())
    assert again["init"] == "mae" and again["dice"] == summary["dice"]


def test_the_real_ct_sample_pretrains_without_labels(tmp_path, capsys):
    """The TotalSegmentator CT (int32 HU, 3 mm) as an nnU-Net v2 folder of images only: no labelsTr/ at all."""
    task = tmp_path / "Dataset001_CT"
    (task / "imagesTr").mkdir(parents=True)
    for case in ("ct_001", "ct_002"):
        shutil.copy(CT_SAMPLE, task / "imagesTr" / f"{case}_0000.nii.gz")
    (task / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0},
                                                   "numTraining": 2, "file_ending": ".nii.gz"}))
    assert check_data("decathlon", task, "pretrain") == []
    assert check_data("decathlon", task, "segment")            # fine-tuning needs the label files: named
    assert main(["pretrain", "--dataset", "decathlon", "--data-dir", str(tmp_path), "--out-dir",
                 str(tmp_path / "pre"), *QUICK]) == 0           # the parent folder: its only Dataset* inside
    assert (tmp_path / "pre" / "last.pt").is_file()
    cfg = load_config("pretrain_decathlon", "tiny", {"data.data_dir": str(task)})
    crop = build_datasets(cfg["data"], "pretrain")["val"][0]["image"]
    assert tuple(crop.shape) == (1, 16, 16, 16) and 0.0 <= float(crop.min()) and float(crop.max()) <= 1.0


def test_bad_folders_are_refused_naming_the_file(folders, tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["pretrain", "--dataset", "decathlon", "--data-dir", str(empty), *QUICK]) == 1
    assert str(empty / "dataset.json") in capsys.readouterr().err
    task = tmp_path / "Task93_Missing"
    shutil.copytree(folders / "Task90_CT", task)
    (task / "imagesTr" / "case_002.nii.gz").unlink()
    problems = check_data("decathlon", task, "pretrain")
    assert [p.message for p in problems if p.path.endswith("case_002.nii.gz")] == ["file not found"]
    no_images = tmp_path / "Dataset094_Empty"
    (no_images / "imagesTr").mkdir(parents=True)
    (no_images / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {"background": 0,
                                                        "lesion": 1}, "numTraining": 0, "file_ending": ".nii.gz"}))
    with pytest.raises(DataError, match=r"imagesTr: holds no image files ending in \.nii\.gz"):
        read_decathlon(no_images)
    with pytest.raises(DataError, match="data_dir"):
        dataset_spec("decathlon").default_data_dir({})


def test_a_hand_written_msd_file_needs_only_the_keys_it_uses(folders, tmp_path):
    task = tmp_path / "Task95_Hand"
    shutil.copytree(folders / "Task90_CT", task)
    spec = json.loads((task / "dataset.json").read_text())
    spec = {"modality": spec["modality"], "labels": spec["labels"], "training": spec["training"]}  # no test, numTest
    spec["training"][0] = {"image": spec["training"][0]["image"]}                                # no label listed
    (task / "dataset.json").write_text(json.dumps(spec))
    assert check_data("decathlon", task, "pretrain") == []
    problems = check_data("decathlon", task, "segment")
    assert [(Path(p.path).name, p.message) for p in problems] == [("dataset.json", "case case_001 lists no label file")]


def test_label_ids_with_gaps_are_renumbered_and_regions_refused():
    assert classes({"labels": {"0": "background", "2": "liver", "5": "tumour"}}) == ((0, 2, 5), ("liver", "tumour"))
    assert classes({"labels": {"tumour": 5, "background": 0}}) == ((0, 5), ("tumour",))
    with pytest.raises(DataError, match="region-based labels"):
        classes({"labels": {"background": 0, "whole": [1, 2]}})
    assert intensity({"modality": {"0": "CT"}}) == "ct" and intensity({"channel_names": {"0": "T2", "1": "ADC"}}) == "mri"
    with pytest.raises(ValueError, match="data.intensity"):
        intensity({}, "pet")


def test_dataset_and_config_must_agree_on_the_cli():
    with pytest.raises(SystemExit, match="reads dataset 'btcv'"):
        main(["pretrain", "--config", "pretrain_btcv", "--dataset", "decathlon"])
