"""Every CLI subcommand answers --help; bad arguments fail with a message."""
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
