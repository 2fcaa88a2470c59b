"""MedMNIST 3D files (issue #16): the file decides 2D/3D and the outputs; 64^3 and 28^3 volumes, binary and
multi-class labels, pre-train and fine-tune through the CLI and the notebook path; clear errors naming the file."""
from __future__ import annotations

import numpy as np
import pytest

from selfmae.config import load_config
from selfmae.data import DataError, read_medmnist
from selfmae.data.medmnist import label_spec, read_label_spec
from selfmae.experiments import MEDMNIST3D_SAMPLE, build_data, num_outputs

SPLIT_SIZES = {"train": 12, "val": 4, "test": 4}


def write_phantom(path, side: int = 64, classes: int = 2, seed: int = 0):
    """A MedMNIST-form 3D file: uint8 binary shape masks (N, side, side, side) of one ellipsoid each (larger for a
    higher class id), labels (N, 1) of class ids 0..classes-1 (0/1 for binary), every class in every split."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, side)] * 3, indexing="ij"))
    arrays = {}
    for split, n in SPLIT_SIZES.items():
        labels = (np.arange(n) % classes).astype(np.uint8)[:, None]
        images = np.zeros((n, side, side, side), np.uint8)
        for i, label in enumerate(labels[:, 0]):
            radii = (0.3 + 0.15 * label) * rng.uniform(0.8, 1.2, size=3)
            centre = rng.uniform(-0.2, 0.2, size=3)
            inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
            images[i][inside] = 255
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    np.savez_compressed(path, **arrays)
    return path


def test_shipped_adrenalmnist3d_reads_as_volumes_with_a_binary_label():
    splits = read_medmnist(MEDMNIST3D_SAMPLE, spatial_dims=3)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1188, "val": 98, "test": 298}
    item = splits["train"][0]
    assert item["image"].shape == (1, 28, 28, 28) and item["image"].dtype == np.float32
    assert set(np.unique(item["image"])) <= {0.0, 1.0}             # binary shape masks
    spec = read_label_spec(MEDMNIST3D_SAMPLE)
    assert (spec.kind, spec.n_outputs, spec.names) == ("binary", 1, ("label",))
    assert 0.15 < np.mean([it["label"][0] for it in splits["train"]]) < 0.3   # ~22 % adrenal masses


def test_label_kinds_from_the_file():
    def spec(*columns):
        labels = np.array(columns, dtype=np.uint8).T if len(columns) > 1 else np.array(columns[0])[:, None]
        return label_spec({f"{s}_labels": labels for s in ("train", "val", "test")})

    assert spec([0, 1, 1]).kind == "binary"
    multi = spec([0, 2, 10])
    assert (multi.kind, multi.n_outputs, multi.names[-1]) == ("multi-class", 11, "class 10")
    assert spec([0, 1], [1, 1], [0, 0]).kind == "multi-label"
    with pytest.raises(DataError, match="non-negative integers"):
        spec([0, -1, 1])


def test_a_64_cubed_phantom_is_resized_to_the_tiny_input(tmp_path):
    """A 64^3 MedMNIST-form file goes through the same reader and pipeline as the 28^3 one: resized to the tiny
    profile's resize^3, z-scored per volume."""
    npz = write_phantom(tmp_path / "phantom3d_64.npz")
    splits = read_medmnist(npz)
    assert splits["train"][0]["image"].shape == (1, 64, 64, 64) and len(splits["test"]) == 4
    cfg = load_config("finetune_medmnist3d", "tiny", {"data.data_dir": str(npz)})
    data = build_data(cfg)
    side = cfg["data"]["resize"]
    for split in ("train", "val", "test"):
        image = data[split][0]["image"]
        assert tuple(image.shape) == (1, side, side, side), split
    assert abs(float(data["val"][0]["image"].mean())) < 1e-2           # z-scored, then resized
    assert num_outputs(cfg) == 1


def test_pretrain_and_finetune_a_64_cubed_phantom_through_the_cli(tmp_path, capsys):
    """`python -m selfmae pretrain/finetune --config *_medmnist3d --data-dir file.npz`: two steps each."""
    import json

    from selfmae.cli import main

    npz = write_phantom(tmp_path / "phantom3d_64.npz")
    common = ["--profile", "tiny", "--data-dir", str(npz), "--device", "cpu", "--set", "train.max_steps=2",
              "--set", "train.epochs=1", "--set", "train.warmup_epochs=0", "--set", "train.batch_size=4"]
    assert main(["pretrain", "--config", "pretrain_medmnist3d", "--out-dir", str(tmp_path / "pre"), *common]) == 0
    capsys.readouterr()
    assert main(["finetune", "--config", "finetune_medmnist3d", "--out-dir", str(tmp_path / "ft"), *common,
                 "--set", "model.init=mae", "--set", f"model.pretrained={tmp_path / 'pre' / 'last.pt'}"]) == 0
    assert '"mAUC"' in capsys.readouterr().out                        # the CLI prints the summary
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["split"] == "test" and summary["init"] == "mae"
    assert 0.0 <= summary["mAUC"] <= 1.0 and 0.0 <= summary["acc"] <= 1.0 and "auc/label" in summary


def test_multiclass_file_gets_softmax_outputs_from_the_file(tmp_path):
    """Class ids 0..2 in one column: 3 outputs (model.num_classes null), one-hot targets, softmax cross-entropy,
    one AUC per class and the argmax accuracy."""
    from selfmae.experiments import make_task, run_finetune

    npz = write_phantom(tmp_path / "three3d.npz", side=28, classes=3)
    cfg = load_config("finetune_medmnist3d", "tiny", {"data.data_dir": str(npz), "train.max_steps": 2,
                                                      "train.epochs": 1, "train.warmup_epochs": 0,
                                                      "train.batch_size": 4, "train.device": "cpu"})
    assert cfg["model"]["num_classes"] is None and num_outputs(cfg) == 3
    task = make_task(cfg)
    assert task.multiclass and task.num_classes == 3 and list(task.label_names) == ["class 0", "class 1", "class 2"]
    data = build_data(cfg)
    assert data["train"][1]["label"].tolist() == [0.0, 1.0, 0.0]        # one-hot
    summary = run_finetune(cfg, tmp_path / "run", datasets=data)
    assert {"auc/class 0", "auc/class 1", "auc/class 2", "acc", "mAUC"} <= set(summary)


def test_outputs_that_do_not_fit_the_file_are_refused_naming_it(tmp_path):
    npz = write_phantom(tmp_path / "three3d.npz", side=28, classes=3)
    cfg = load_config("finetune_medmnist3d", "tiny", {"data.data_dir": str(npz), "model.num_classes": 1})
    with pytest.raises(DataError, match=r"three3d\.npz.*multi-class with 3 output.*model\.num_classes=3"):
        num_outputs(cfg)


def test_2d_file_in_a_3d_config_is_refused_naming_the_file_and_the_configs(tmp_path):
    images = np.zeros((4, 28, 28), np.uint8)
    labels = np.array([[0], [1], [0], [1]], np.uint8)
    np.savez(tmp_path / "flat.npz", **{f"{s}_{k}": v for s in ("train", "val", "test")
                                      for k, v in (("images", images), ("labels", labels))})
    cfg = load_config("pretrain_medmnist3d", "tiny", {"data.data_dir": str(tmp_path / "flat.npz")})
    with pytest.raises(DataError, match=r"flat\.npz.*holds 2D images.*spatial_dims=3.*pretrain_medmnist / "):
        build_data(cfg)
    cfg2 = load_config("pretrain_medmnist", "tiny", {"data.data_dir": str(MEDMNIST3D_SAMPLE)})
    with pytest.raises(DataError, match=r"adrenalmnist3d\.npz.*holds 3D images.*pretrain_medmnist3d"):
        build_data(cfg2, check=False)


def test_notebook_source_refuses_a_folder_without_npz(tmp_path):
    from selfmae.quickstart import medmnist_description, medmnist_source

    assert medmnist_source("", spatial_dims=3) == str(MEDMNIST3D_SAMPLE)
    assert "AdrenalMNIST3D" in medmnist_description(medmnist_source("", spatial_dims=3))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*no MedMNIST .npz.*AdrenalMNIST3D"):
        medmnist_source(tmp_path, spatial_dims=3)
    (tmp_path / "medmnist3d").mkdir()
    write_phantom(tmp_path / "medmnist3d" / "mine.npz", side=28)
    assert medmnist_source(tmp_path, spatial_dims=3) == str(tmp_path / "medmnist3d")
    assert medmnist_description(tmp_path / "medmnist3d") == "mine.npz: 12/4/4 train/val/test volumes"
