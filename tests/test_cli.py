"""Every CLI subcommand answers --help; bad arguments fail with a message."""
import json
import shutil
import subprocess
import sys

import pytest

from selfmae.cli import build_parser, main

SUBCOMMANDS = ("prepare-data", "check-data", "pretrain", "finetune", "evaluate", "reproduce")


def test_top_level_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "selfmae", "--help"], capture_output=True, text=True, check=True).stdout
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([name, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_bad_set_syntax_is_explained():
    with pytest.raises(SystemExit, match="--set expects key=value"):
        main(["pretrain", "--set", "train.epochs"])


def test_unknown_config_key_from_cli_names_the_key(capsys):
    """A setting error is said in one line naming the file and the key (exit status 1, no traceback)."""
    assert main(["pretrain", "--config", "pretrain_btcv", "--set", "train.epochz=3"]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'train.epochz'" in err and "pretrain_btcv.yaml" in err and "Traceback" not in err
    assert "did you mean 'train.epochs'?" in err
    assert main(["pretrain", "--config", "pretrain_btcv", "--set", "epochs=3"]) == 1   # a key without its section
    assert "did you mean 'train.epochs'?" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_says_a_run_is_reused_and_refuses_other_settings_in_one_line(tmp_path, monkeypatch, capsys):
    """A finished run asked again is reused and the command says so; asked with other settings, or into a folder
    that cannot be made, the command prints one `error:` line (naming --force where that is the way out), exit 1."""
    monkeypatch.setenv("SELFMAE_SYNTHETIC", str(tmp_path / "synthetic"))
    monkeypatch.setenv("SELFMAE_PROGRESS", "0")
    run = ["pretrain", "--config", "pretrain_cxr14", "--out-dir", str(tmp_path / "pre"), "--device", "cpu",
           "--set", "train.epochs=1", "--set", "train.max_steps=1"]
    assert main(run) == 0
    first = capsys.readouterr()
    assert "reused, not trained again" not in first.err and "epoch 1:" in first.err   # the epoch line is shown
    assert json.loads(first.out)["epochs"] == 1                    # stdout holds the JSON result alone
    done = (tmp_path / "pre" / "done.json").read_text()

    assert main(run) == 0
    assert "reused, not trained again" in capsys.readouterr().err
    assert (tmp_path / "pre" / "done.json").read_text() == done

    assert main([*run, "--set", "train.lr=0.5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train.lr" in err and "--force" in err and "Traceback" not in err

    # an MAE checkpoint given to evaluate: one line saying to fine-tune from it first (was: its decoder keys listed)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "pre" / "last.pt"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "an MAE pre-training checkpoint" in err and "fine-tune from it first" in err and "Traceback" not in err
    assert "--set model.init=mae" in err and "decoder_blocks" not in err
    assert not (tmp_path / "pre" / "evaluate-last").exists()            # a refusal leaves no folder behind

    (tmp_path / "a-file").write_text("not a folder")
    assert main([*run[:3], "--out-dir", str(tmp_path / "a-file" / "pre"), *run[5:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "a-file is a file, not a folder" in err and "Traceback" not in err


def test_cli_evaluate_names_its_folder_reuses_it_and_never_overwrites_another_evaluation(tmp_path, monkeypatch,
                                                                                         capsys):
    """finetune and evaluate print the folder they wrote (`out_dir`); an evaluation asked again is reused, one with
    other settings into the same folder is refused in one line (its files untouched) and --force moves it into
    previous-<timestamp>/ (was: overwritten without a word)."""
    monkeypatch.setenv("SELFMAE_SYNTHETIC", str(tmp_path / "synthetic"))
    monkeypatch.setenv("SELFMAE_PROGRESS", "0")
    steps = ["--device", "cpu", "--set", "train.epochs=1", "--set", "train.max_steps=1"]
    assert main(["finetune", "--config", "finetune_cxr14", "--out-dir", str(tmp_path / "ft"), *steps]) == 0
    assert json.loads(capsys.readouterr().out)["out_dir"] == str(tmp_path / "ft")
    evaluate = ["evaluate", "--config", "finetune_cxr14", "--checkpoint", str(tmp_path / "ft" / "best.pt"), *steps]
    folder = tmp_path / "ft" / "evaluate-best"
    assert main(evaluate) == 0
    first = json.loads(capsys.readouterr().out)
    summary = (folder / "summary.json").read_text()
    assert first["out_dir"] == str(folder) and json.loads((folder / "run.json").read_text())["checkpoint_sha256"]

    assert main(evaluate) == 0
    again = capsys.readouterr()
    assert "reused, not evaluated again" in again.err and json.loads(again.out)["mAUC"] == first["mAUC"]

    other = [*evaluate, "--set", "data.split_seed=1"]
    assert main(other) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data.split_seed" in err and "--force" in err and "Traceback" not in err
    assert (folder / "summary.json").read_text() == summary
    assert main([*other, "--force"]) == 0
    capsys.readouterr()
    assert [p.read_text() for p in folder.glob("previous-*/summary.json")] == [summary]


def test_cli_evaluate_reads_the_checkpoints_dataset_and_warns_when_the_data_is_not_what_it_trained_on(
        tmp_path, monkeypatch, capsys):
    """Without --config/--dataset, evaluate takes the fine-tuning config of the checkpoint's dataset (was: always
    finetune_btcv, a shape error for any other); without --data-dir a model trained on a folder is scored on the
    phantoms with a warning naming both and the --data-dir that scores it on its own data (was: silent)."""
    monkeypatch.setenv("SELFMAE_SYNTHETIC", str(tmp_path / "synthetic"))
    monkeypatch.setenv("SELFMAE_PROGRESS", "0")
    assert main(["prepare-data", "--synthetic", "--dataset", "cxr14", "--out-dir", str(tmp_path / "mine")]) == 0
    steps = ["--device", "cpu", "--set", "train.epochs=1", "--set", "train.max_steps=1"]
    own = tmp_path / "mine" / "cxr14"
    assert main(["finetune", "--dataset", "cxr14", "--data-dir", str(own), "--out-dir", str(tmp_path / "ft"),
                 *steps, "--set", "train.seed=1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ft" / "best.pt"), *steps]) == 0
    out = capsys.readouterr()
    printed = json.loads(out.out, parse_constant=lambda c: pytest.fail(f"stdout is not strict JSON: {c}"))
    assert "mAUC" in printed and printed["seed"] == 1           # a CXR14 classifier; the checkpoint's seed
    assert f"was trained on {own.resolve()}; this evaluation reads the synthetic phantoms" in out.err
    assert f"--data-dir {own}" in out.err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ft" / "best.pt"), "--data-dir", str(own),
                 "--out-dir", str(tmp_path / "ev"), *steps]) == 0
    assert "was trained on" not in capsys.readouterr().err
    # the data's digest decides where the training recorded it: a copy elsewhere is the same data (no warning),
    # the same folder with an edited test list is not
    shutil.copytree(own, tmp_path / "copy")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ft" / "best.pt"), "--data-dir", str(tmp_path / "copy"),
                 "--out-dir", str(tmp_path / "ev-copy"), *steps]) == 0
    assert "was trained on" not in capsys.readouterr().err
    test_list = own / "test_list.txt"
    test_list.write_text("\n".join(test_list.read_text().split()[:-5]) + "\n")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ft" / "best.pt"), "--data-dir", str(own),
                 "--out-dir", str(tmp_path / "ev-edited"), *steps]) == 0
    assert "was trained on other data files than" in capsys.readouterr().err
