"""Which data a run used (issue #13): runs on other data get their own folders, stamps never carry absolute
paths, the explorer's figures say which real sample they show, notebook 12 refuses a folder without a .npz."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _data_helpers import phantom
from selfmae.config import load_config
from selfmae.experiments import MEDMNIST_SAMPLE, default_run_dir
from selfmae.explore import source_data_label
from selfmae.quickstart import medmnist_description, medmnist_source
from selfmae.notebook import NotebookContext
from selfmae.provenance import data_label, data_tag
from selfmae.repro import REPO_ROOT

SAMPLE_LABEL = "selfmae/data/samples/medmnist/pneumoniamnist_subset.npz"


def test_data_labels_are_repository_relative_or_the_dataset_name(tmp_path):
    assert data_label("") == "synthetic" and data_label(None) == "synthetic"
    assert data_label(MEDMNIST_SAMPLE) == SAMPLE_LABEL
    assert data_label(tmp_path / "ChestX-ray14") == "ChestX-ray14"


def test_a_data_folder_linked_into_the_repository_is_named_by_its_place_there(tmp_path, monkeypatch):
    """data/ may be a link to a shared disk (a worktree, a cluster): the table names data/..., not the target."""
    import selfmae.provenance as provenance

    repo, target = tmp_path / "repo", tmp_path / "shared"
    (target / "synthetic" / "btcv").mkdir(parents=True)
    repo.mkdir()
    (repo / "data").symlink_to(target)
    monkeypatch.setattr(provenance, "REPO_ROOT", repo)
    assert provenance.data_label(repo / "data" / "synthetic" / "btcv") == "data/synthetic/btcv"
    assert provenance.data_label(target / "synthetic" / "btcv") == "btcv"   # outside the repository: its name
    (repo / "runs").symlink_to(target)    # the explorer's captions name checkpoints the same way
    assert provenance.repo_relative(repo / "runs" / "tiny" / "last.pt") == "runs/tiny/last.pt"
    assert provenance.repo_relative(tmp_path / "elsewhere.pt") is None


def test_stamps_name_the_data_without_machine_paths(tmp_path):
    ctx = NotebookContext("tiny", medmnist_source(""), str(tmp_path / "runs"), str(tmp_path))
    stamp = str(ctx.stamp("medmnist"))
    assert f"data={SAMPLE_LABEL}" in stamp and str(REPO_ROOT) not in stamp
    assert "data=synthetic" in str(NotebookContext("tiny", "", str(tmp_path / "r"), str(tmp_path)).stamp("btcv"))
    # the explorer's figures on shipped real samples are not "synthetic"
    assert source_data_label("sample:pneumoniamnist") == SAMPLE_LABEL
    assert source_data_label("sample:ct") == "selfmae/data/samples/ct-sample/example_ct.nii.gz"
    assert str(ctx.stamp("medmnist", data=source_data_label("sample:ct"))).count("example_ct.nii.gz") == 1


def test_shipped_samples_are_package_data_and_runs_record_no_machine_path(tmp_path):
    """The samples the package reads at run time live inside it (not in tests/), and a notebook on a shipped sample
    keeps `data_dir: null` in its run configs: a finished run is reused from another clone or install."""
    from selfmae.data.registry import MEDMNIST3D_SAMPLE, SAMPLES_DIR

    import selfmae
    assert SAMPLES_DIR.is_relative_to(Path(selfmae.__file__).parent) and MEDMNIST3D_SAMPLE.is_file()
    assert "data/samples/**/*" in (REPO_ROOT / "pyproject.toml").read_text()
    for dims, experiment in ((2, "pretrain_medmnist"), (3, "finetune_medmnist3d")):
        ctx = NotebookContext("tiny", medmnist_source("", spatial_dims=dims), str(tmp_path / "runs"), str(tmp_path))
        assert ctx.config(experiment)["data"]["data_dir"] is None
        assert ctx.runs == tmp_path / "runs"
    other = phantom("medmnist", tmp_path / "other")
    ctx = NotebookContext("tiny", medmnist_source(other), str(tmp_path / "runs"), str(tmp_path))
    assert ctx.config("pretrain_medmnist")["data"]["data_dir"] == medmnist_source(other)


def test_notebook_12_refuses_a_folder_without_npz(tmp_path):
    assert medmnist_source("") == str(MEDMNIST_SAMPLE)
    with pytest.raises(FileNotFoundError, match="no MedMNIST .npz"):
        medmnist_source(tmp_path)
    (tmp_path / "medmnist").mkdir()
    shutil.copy(MEDMNIST_SAMPLE, tmp_path / "medmnist" / "pneumoniamnist.npz")
    assert medmnist_source(tmp_path) == str(tmp_path / "medmnist")


def test_captions_describe_the_file_used(tmp_path):
    assert "shipped with selfmae" in medmnist_description(MEDMNIST_SAMPLE)
    from selfmae.data.medmnist import medmnist_file

    folder = phantom("medmnist", tmp_path)
    text = medmnist_description(folder)
    assert text == f"{medmnist_file({'data_dir': folder}).name}: 20/6/8 train/val/test images"


def test_runs_on_other_data_get_their_own_folders(tmp_path):
    assert data_tag("") == "" and data_tag(MEDMNIST_SAMPLE) == ""
    a, b = tmp_path / "a" / "chestmnist.npz", tmp_path / "b" / "chestmnist.npz"
    assert data_tag(a).startswith("chestmnist.npz-") and data_tag(a) != data_tag(b)
    default = NotebookContext("tiny", str(MEDMNIST_SAMPLE), str(tmp_path / "runs"), str(tmp_path))
    other = NotebookContext("tiny", str(a), str(tmp_path / "runs"), str(tmp_path))
    assert default.runs == tmp_path / "runs" and other.runs == tmp_path / "runs" / f"data-{data_tag(a)}"
    cfg = load_config("pretrain_btcv", "tiny", {"data.data_dir": str(tmp_path / "BTCV")})
    assert default_run_dir(cfg).parent.name == f"data-{data_tag(tmp_path / 'BTCV')}"
    assert default_run_dir(load_config("pretrain_btcv", "tiny")) == REPO_ROOT / "runs" / "tiny" / "pretrain_btcv"


@pytest.mark.slow
def test_switching_data_just_works(tmp_path):
    """The issue's case: a finished pre-training on one .npz, then the same notebook step on another."""
    from selfmae.experiments import run_pretrain

    from selfmae.data.medmnist import medmnist_file

    first = medmnist_file({"data_dir": phantom("medmnist", tmp_path / "one")})
    second = tmp_path / "two" / first.name
    second.parent.mkdir()
    shutil.copy(first, second)
    dirs = []
    for npz in (first, second):
        ctx = NotebookContext("tiny", str(npz), str(tmp_path / "runs"), str(tmp_path), device="cpu", max_steps=1)
        cfg = ctx.config("pretrain_medmnist", {"train.epochs": 1, "train.warmup_epochs": 0})
        dirs.append(run_pretrain(cfg, ctx.runs / "pretrain_medmnist").out_dir)
    assert dirs[0] != dirs[1] and all((d / "done.json").exists() for d in dirs)
