"""`reproduce -p NAME=value` (issue #13): a parameter reaches only the notebooks that declare it; one that none
declares, or a weights file that does not exist, stops the run naming the closest real name; the kernel's
TCP-encryption warning is not printed."""
from __future__ import annotations

import json
import os
import logging

import pytest

from selfmae.quiet_kernel import SHUTDOWN_INTERRUPT, TCP_WARNING, DropRoutineLines
from selfmae.runner import declared_parameters, reproduce

HEAD = '# %% tags=["parameters"]\nprofile = "tiny"\ndata_dir = ""\nout_dir = ""\nresults_dir = ""\n'


@pytest.fixture
def nb_dir(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    (d / "01_plain.py").write_text(HEAD + "\n# %%\nprint('plain', profile)\n")
    (d / "02_weights.py").write_text(HEAD + 'imagenet_weights = ""\n\n# %%\nprint("weights", imagenet_weights)\n')
    return d


def injected(tmp_path, stem):
    nb = json.loads((tmp_path / "runs" / "notebooks" / f"{stem}.ipynb").read_text())
    return "".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in nb["cells"]
                   if "injected-parameters" in c["metadata"].get("tags", []))


def test_declared_parameters_are_read_from_the_parameters_cell(nb_dir):
    assert declared_parameters(nb_dir / "02_weights.py") == {"profile", "data_dir", "out_dir", "results_dir",
                                                             "imagenet_weights"}


@pytest.mark.slow
def test_a_parameter_goes_only_to_the_notebooks_that_declare_it(tmp_path, nb_dir, capfd):
    weights = tmp_path / "vit.pth"
    weights.write_bytes(b"\x80 not read here")
    rc = reproduce("tiny", params={"imagenet_weights": str(weights)}, runs_dir=tmp_path / "runs",
                   results_dir=tmp_path, notebook_dir=nb_dir)
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert "imagenet_weights" in injected(tmp_path, "02_weights") and "imagenet_weights" not in injected(tmp_path, "01_plain")
    assert "unknown parameter" not in (out + err).lower()
    assert TCP_WARNING not in out + err                       # the kernel's start-up warning is silenced
    assert SHUTDOWN_INTERRUPT not in out + err                # and the interrupt its shutdown sends


def test_an_undeclared_parameter_is_an_error_naming_the_closest_name(tmp_path, nb_dir, capsys):
    rc = reproduce("tiny", params={"imagenet_weigths": "x.pth"}, runs_dir=tmp_path / "runs", results_dir=tmp_path,
                   notebook_dir=nb_dir)
    err = capsys.readouterr().err
    assert rc == 2 and "'imagenet_weigths'" in err and "did you mean 'imagenet_weights'" in err
    assert not (tmp_path / "runs" / "notebooks").exists()      # nothing ran
    rc = reproduce("tiny", only=["01"], params={"imagenet_weights": ""}, runs_dir=tmp_path / "runs",
                   results_dir=tmp_path, notebook_dir=nb_dir)
    assert rc == 2 and "only by 02_weights" in capsys.readouterr().err


def test_a_weights_file_that_does_not_exist_is_an_error(tmp_path, nb_dir, capsys):
    rc = reproduce("tiny", params={"imagenet_weights": str(tmp_path / "missing.pth")}, runs_dir=tmp_path / "runs",
                   results_dir=tmp_path, notebook_dir=nb_dir, dry_run=True)
    err = capsys.readouterr().err
    assert rc == 2 and "missing.pth" in err and "no such file" in err


def test_a_weights_file_that_is_a_web_page_is_an_error_before_any_notebook_runs(tmp_path, nb_dir, capsys):
    page = tmp_path / "vit_b16.pth"
    page.write_text("<!DOCTYPE html><html><head><title>Quota exceeded</title></head></html>")
    rc = reproduce("tiny", params={"imagenet_weights": str(page)}, runs_dir=tmp_path / "runs",
                   results_dir=tmp_path, notebook_dir=nb_dir, dry_run=True)
    err = capsys.readouterr().err
    assert rc == 2 and "vit_b16.pth" in err and "HTML page" in err


def test_the_kernel_filter_drops_only_the_two_routine_lines():
    def record(level, text):
        return logging.LogRecord("IPKernelApp", level, "", 0, text, None, None)

    assert DropRoutineLines().filter(record(logging.WARNING, "something else"))
    assert DropRoutineLines().filter(record(logging.ERROR, "Exception in message handler:"))
    assert not DropRoutineLines().filter(record(logging.WARNING, TCP_WARNING + ". All communication ..."))
    assert not DropRoutineLines().filter(record(logging.ERROR, SHUTDOWN_INTERRUPT + "."))


def test_the_tiny_plan_gives_no_gpu_hours_and_points_at_the_cpu_times():
    from selfmae.runner import NOTEBOOK_DIR, numbered_notebooks, plan

    text = plan("tiny", numbered_notebooks(NOTEBOOK_DIR))
    assert "GPU-h" not in text.split("no GPU-hour estimate", 1)[1] and "total" not in text
    assert "--profile paper" in text and "README.md" in text and "2-core CPU" in text
    assert "finetune_cxr14" in text and "nan" not in text


def test_the_paper_plan_names_the_rows_left_out_of_its_total():
    from selfmae.runner import NOTEBOOK_DIR, _step_times, numbered_notebooks, plan

    text = plan("paper", numbered_notebooks(NOTEBOOK_DIR))
    assert "GPU-hours" in text and "nan" not in text
    unmeasured = {"pretrain_medmnist", "finetune_medmnist", "pretrain_medmnist3d", "finetune_medmnist3d"}
    if unmeasured & set(_step_times().get("steps", {})):
        pytest.skip("step times now cover MedMNIST")
    left_out = next(line for line in text.splitlines() if line.startswith("left out of the total"))
    assert all(name in left_out for name in unmeasured) and "no measured step time" in left_out


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, nb_dir, capsys):
    rc = reproduce("tiny", runs_dir=tmp_path / "runs", results_dir=tmp_path, notebook_dir=nb_dir, dry_run=True)
    out = capsys.readouterr().out
    assert rc == 0 and "make reproduce PROFILE=tiny: 2 notebooks" in out and "no GPU-hour estimate" in out
    assert not (tmp_path / "runs").exists()


def test_notebook_kernels_train_on_one_thread_unless_the_caller_chose(monkeypatch):
    """The committed tiny outputs were trained at one intra-op thread; a kernel gets OMP_NUM_THREADS=1 unless the
    caller set it (then the caller's value stays), and the environment is restored afterwards."""
    from selfmae.runner import kernel_env_defaults

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SELFMAE_PROGRESS", raising=False)
    with kernel_env_defaults() as added:
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["SELFMAE_PROGRESS"] == "0"
        assert added == {"SELFMAE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    assert "OMP_NUM_THREADS" not in os.environ and "SELFMAE_PROGRESS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with kernel_env_defaults() as added:
        assert os.environ["OMP_NUM_THREADS"] == "4" and "OMP_NUM_THREADS" not in added
    assert os.environ["OMP_NUM_THREADS"] == "4"
