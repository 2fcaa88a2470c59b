"""Config loading: good files, unknown keys/profiles, overrides, and 'profiles differ only in numbers'."""
import json
from pathlib import Path

import pytest
import yaml

from selfmae.config import ConfigError, available_experiments, load_config, save_run_record


def test_every_experiment_resolves_in_both_profiles():
    names = available_experiments()
    assert {"pretrain_cxr14", "finetune_cxr14", "pretrain_btcv", "finetune_btcv", "pretrain_brats",
            "finetune_brats"} <= set(names)
    for name in names:
        for profile in ("tiny", "paper"):
            cfg = load_config(name, profile)
            assert cfg["profile"] == profile and cfg["experiment"] == name


def _numbers_only(a, b, path=""):
    """Yield the dotted keys where a and b differ in something other than a number (or list of numbers)."""
    def is_num(v):  # None counts: it is the "no limit" value of numeric settings such as train.max_steps
        return v is None or isinstance(v, (int, float)) and not isinstance(v, bool) or (
            isinstance(v, list) and all(isinstance(x, (int, float)) for x in v))
    assert set(a) == set(b), path
    for key in a:
        if isinstance(a[key], dict):
            yield from _numbers_only(a[key], b[key], f"{path}{key}.")
        elif a[key] != b[key] and not (is_num(a[key]) and is_num(b[key])):
            yield f"{path}{key}"


# The non-numeric settings the tiny profile may change, each for a stated reason: class-balanced crops (small
# organs are seen as often as the liver in a short run) and z-scored CT for nnFormer (its stem's LayerNorm erases
# the magnitude of a non-negative input). Everything else differs in numbers only.
TINY_NON_NUMERIC = {"data.crop_sampling", "data.zscore"}


@pytest.mark.parametrize("name", available_experiments())
def test_profiles_differ_only_in_numbers(name):
    tiny, paper = load_config(name, "tiny"), load_config(name, "paper")
    tiny.pop("profile"), paper.pop("profile")
    assert set(_numbers_only(tiny, paper)) <= TINY_NON_NUMERIC


def test_paper_profile_holds_the_papers_numbers():
    assert load_config("pretrain_cxr14", "paper")["train"]["epochs"] == 800
    assert load_config("pretrain_btcv", "paper")["train"]["epochs"] == 10000
    assert load_config("pretrain_brats", "paper")["train"]["epochs"] == 500
    for name, lr in (("finetune_cxr14", 1e-3), ("finetune_btcv", 8e-4), ("finetune_brats", 4e-4)):
        cfg = load_config(name, "paper")
        assert cfg["train"]["lr"] == pytest.approx(lr)
        assert cfg["train"]["layer_decay"] == 0.75 and cfg["model"]["drop_path"] == 0.1
    for name in ("pretrain_cxr14", "pretrain_btcv", "pretrain_brats"):
        t = load_config(name, "paper")["train"]
        assert (t["lr"], t["weight_decay"], t["betas"]) == (1.5e-4, 0.05, [0.9, 0.95])
    assert load_config("pretrain_btcv", "paper")["data"]["roi_size"] == [96, 96, 96]
    assert load_config("pretrain_brats", "paper")["data"]["roi_size"] == [128, 128, 128]


def test_unknown_profile_names_file_and_profile():
    with pytest.raises(ConfigError, match=r"pretrain_btcv\.yaml.*unknown profile 'huge'"):
        load_config("pretrain_btcv", "huge")


def test_unknown_override_key_names_file_and_key():
    with pytest.raises(ConfigError, match=r"pretrain_btcv\.yaml.*unknown key 'train\.epoch'"):
        load_config("pretrain_btcv", "tiny", {"train.epoch": 3})


def test_unknown_key_in_a_profile_is_rejected(tmp_path: Path):
    bad = yaml.safe_load(Path(load_config("pretrain_btcv")["config_file"]).read_text())
    bad["profiles"]["tiny"]["model"]["mask_ration"] = 0.5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*profile 'tiny'.*unknown key 'model\.mask_ration'"):
        load_config(path, "tiny")


def test_unknown_top_level_key_is_rejected(tmp_path: Path):
    bad = yaml.safe_load(Path(load_config("pretrain_btcv")["config_file"]).read_text())
    bad["trian"] = {}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"typo\.yaml.*trian"):
        load_config(path, "tiny")


@pytest.mark.parametrize("experiment,key", [("finetune_decathlon", "a_min"), ("pretrain_brats", "et_convention")])
def test_a_data_key_the_dataset_needs_is_required_from_the_file(tmp_path: Path, experiment, key):
    """No silent default in the pipelines: a file without one of its dataset's keys fails at loading, naming both."""
    raw = yaml.safe_load((Path(__file__).parents[1] / "selfmae" / "configs" / f"{experiment}.yaml").read_text())
    del raw["data"][key]
    path = tmp_path / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"{experiment}\.yaml.*data\.{key}.*{raw['data']['dataset']}"):
        load_config(path)


def test_missing_experiment_file():
    with pytest.raises(ConfigError, match="no such experiment 'nope'"):
        load_config("nope")


def test_overrides_parse_strings_like_cli_values():
    cfg = load_config("finetune_btcv", "tiny", {"train.epochs": "3", "data.roi_size": "[16, 16, 16]",
                                                "train.max_steps": "null", "model.init": "mae"})
    assert cfg["train"]["epochs"] == 3
    assert cfg["data"]["roi_size"] == [16, 16, 16]
    assert cfg["train"]["max_steps"] is None
    assert cfg["model"]["init"] == "mae"
    # the base file is untouched by overrides
    assert load_config("finetune_btcv", "tiny")["train"]["epochs"] != 3


def test_override_cannot_replace_a_section_with_a_scalar():
    with pytest.raises(ConfigError, match="'train' is a section"):
        load_config("finetune_btcv", "tiny", {"train": 3})


def test_run_record_holds_config_commit_versions_hardware(tmp_path: Path):
    cfg = load_config("pretrain_btcv", "tiny")
    save_run_record(cfg, tmp_path, extra={"seed": 7})
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["experiment"] == "pretrain_btcv"
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["seed"] == 7 and record["commit"] and record["hardware"]
    assert record["packages"]["torch"] and record["packages"]["monai"]


def test_config_hash_ignores_where_the_yaml_was_read_from(tmp_path: Path):
    """The same experiment run from another clone or worktree is the same run; a changed setting is not."""
    from selfmae.config import config_hash

    cfg = load_config("finetune_btcv", "tiny")
    moved = dict(cfg, config_file=str(tmp_path / "elsewhere" / "finetune_btcv.yaml"))
    assert config_hash(moved) == config_hash(cfg)
    changed = dict(cfg, train=dict(cfg["train"], epochs=cfg["train"]["epochs"] + 1))
    assert config_hash(changed) != config_hash(cfg)


def test_a_pretrained_file_that_init_scratch_would_not_load_is_refused(tmp_path):
    """model.pretrained with model.init=scratch would train from scratch while the record names the checkpoint."""
    weights = tmp_path / "last.pt"
    weights.write_bytes(b"x")
    with pytest.raises(ConfigError, match="model.init is 'scratch'"):
        load_config("finetune_btcv", "tiny", {"model.pretrained": str(weights)})
    assert load_config("finetune_btcv", "tiny", {"model.pretrained": str(weights), "model.init": "mae"})


@pytest.mark.parametrize("dotted, value, suggestion", [("data.et_convention", "code", "selfmedmae_code"),
                                                       ("data.crop_sampling", "class", "classes"),
                                                       ("model.init", "MAE", "mae"),
                                                       ("train.precision", "fp16", None)])
def test_a_named_setting_outside_its_names_is_refused_naming_them(dotted, value, suggestion):
    """e.g. data.crop_sampling=class sampled crops as posneg without a word; et_convention=code was a traceback."""
    experiment = "finetune_brats" if dotted == "data.et_convention" else "finetune_btcv"
    with pytest.raises(ConfigError, match=f"{dotted}={value!r} is not one of") as err:
        load_config(experiment, "tiny", {dotted: value})
    assert (suggestion is None) or f"did you mean {suggestion!r}" in str(err.value)
    load_config(experiment, "tiny")   # the shipped values are among the names
