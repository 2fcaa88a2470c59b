"""Experiment configs: one YAML file per experiment, profiles `tiny` and `paper`, strict keys.

A file holds the full set of keys (`experiment`, `task`, `data`, `model`, `train`, `eval`) and a `profiles`
mapping whose entries override some of those keys with other *numbers*. Resolution is
`base <- profile <- overrides`, where overrides come from CLI flags (`--set train.epochs=5`) or papermill
parameters, through the same function. Any key not in the base file is an error naming the file and the key, so a
typo never silently falls back to a default.
"""
from __future__ import annotations

import copy
import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from selfmae.io import atomic_write_text

SECTIONS = ("data", "model", "train", "eval")


class ConfigError(ValueError):
    """A config file, profile or override that cannot be resolved; the message names the file and the key."""


def config_dir() -> Path:
    return Path(str(resources.files("selfmae") / "configs"))


def available_experiments() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def config_path(experiment: str | Path) -> Path:
    """Resolve an experiment name (`pretrain_btcv`) or a path to a YAML file."""
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    path = config_dir() / f"{experiment}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment {experiment!r}; known: {', '.join(available_experiments())}")
    return path


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def _merge(base: dict, update: Mapping, *, where: str, prefix: str = "") -> dict:
    """Deep-merge `update` into a copy of `base`; every key of `update` must already exist in `base`."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in out:
            nested = [f"{prefix}{name}.{key}" for name, sub in out.items() if isinstance(sub, dict) and key in sub]
            close = nested or [prefix + k for k in difflib.get_close_matches(str(key), [str(k) for k in out], n=1)]
            hint = f" (did you mean {close[0]!r}?)" if close else f" (keys here: {', '.join(map(str, out))})"
            raise ConfigError(f"{where}: unknown key {dotted!r}{hint}")
        if isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: key {dotted!r} is a section; give a mapping, not {value!r}")
            out[key] = _merge(out[key], value, where=where, prefix=f"{dotted}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_value(value: Any) -> Any:
    """CLI values arrive as strings: read them as YAML scalars/lists (`5`, `1e-3`, `[32,32,32]`, `null`)."""
    return yaml.safe_load(value) if isinstance(value, str) else value


def dotted_to_nested(overrides: Mapping[str, Any]) -> dict:
    """{"train.epochs": 5} -> {"train": {"epochs": 5}}; nested mappings pass through."""
    nested: dict = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_value(value)
    return nested


def load_config(experiment: str | Path, profile: str = "tiny",
                overrides: Mapping[str, Any] | None = None) -> dict:
    """Resolve one experiment config: base keys <- profile numbers <- overrides (dotted keys).

    Raises ConfigError naming the file and the offending key for an unknown profile or key, or for a data key
    the dataset needs that the file does not define (`DatasetSpec.data_keys`).
    """
    path = config_path(experiment)
    raw = _read_yaml(path)
    profiles = raw.pop("profiles", None) or {}
    missing = [s for s in ("experiment", "task", "data", "model", "train") if s not in raw]
    if missing:
        raise ConfigError(f"{path}: missing top-level key(s) {missing}")
    unknown_top = set(raw) - {"experiment", "task", "description", *SECTIONS}
    if unknown_top:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown_top)}")
    if profile not in profiles:
        raise ConfigError(f"{path}: unknown profile {profile!r}; this file defines {sorted(profiles)}")
    cfg = _merge(raw, profiles[profile] or {}, where=f"{path} (profile {profile!r})")
    if overrides:
        cfg = _merge(cfg, dotted_to_nested(overrides), where=f"{path} (override)")
    _require_data_keys(cfg["data"], where=str(path))
    _require_used_pretrained(cfg["model"], where=str(path))
    _require_known_choices(cfg, where=str(path))
    cfg["profile"] = profile
    cfg["config_file"] = str(path)
    return cfg


def _require_data_keys(data: Mapping, where: str) -> None:
    """ConfigError naming the file and every key the data section's dataset reads without a default
    (`DatasetSpec.data_keys`) that the section lacks: the YAML is the one place for those values."""
    from selfmae.data.registry import missing_data_keys

    missing = missing_data_keys(data)
    if missing:
        raise ConfigError(f"{where}: the data section lacks {', '.join('data.' + k for k in missing)}, which "
                          f"dataset {data['dataset']!r} needs (its configs in selfmae/configs/ show the values)")


PRECISIONS = ("auto", "bf16", "fp32")   # train.precision (`selfmae.train.device.choose_precision` reads it)


def setting_choices() -> dict[str, tuple[str, ...]]:
    """The settings that take one of a few names, and those names. Only light imports: every load_config runs
    this (importing selfmae.train here made each load pull in torch and MONAI, ~5 s)."""
    from selfmae.data.brats import REGION_LABELS

    return {"data.et_convention": tuple(REGION_LABELS), "data.crop_sampling": ("posneg", "classes"),
            "model.init": ("scratch", "mae", "imagenet"), "train.precision": PRECISIONS}


def _require_known_choices(cfg: Mapping, where: str) -> None:
    """ConfigError naming the setting, its value and the names it takes (and the closest one) when a setting of
    `setting_choices` holds another name: e.g. data.crop_sampling=class would otherwise sample as posneg."""
    for dotted, names in setting_choices().items():
        section, key = dotted.split(".")
        value = (cfg.get(section) or {}).get(key)
        if value is not None and value not in names:
            lower = {n.lower(): n for n in names}
            close = difflib.get_close_matches(str(value).lower(), list(lower), n=1, cutoff=0.3)
            hint = f"; did you mean {lower[close[0]]!r}?" if close else ""
            raise ConfigError(f"{where}: {dotted}={value!r} is not one of {', '.join(names)}{hint}")


def _require_used_pretrained(model: Mapping, where: str) -> None:
    """ConfigError when model.pretrained names weights that model.init says not to load ("scratch"): the run would
    train from scratch while its record names a checkpoint (a setting it did not use)."""
    if model.get("pretrained") and model.get("init", "scratch") == "scratch":
        raise ConfigError(f"{where}: model.pretrained={model['pretrained']!r} is set but model.init is 'scratch', so "
                          "nothing would be loaded; set model.init=mae (an MAE checkpoint of this package) or "
                          "model.init=imagenet (a timm/MONAI ViT) to load it, or drop model.pretrained")


def config_hash(cfg: Mapping) -> str:
    """Stable short hash of a resolved config (used to decide whether a finished step can be skipped).

    `config_file` (where the YAML was read from) is provenance, not a setting: the same experiment run from another
    clone or folder hashes the same."""
    import hashlib

    settings = {k: v for k, v in cfg.items() if k != "config_file"}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_run_record(cfg: Mapping, out_dir: str | Path, extra: Mapping | None = None) -> Path:
    """Write the resolved config plus commit/packages/hardware (and `extra`, e.g. the seed) next to outputs."""
    from selfmae.repro import run_metadata

    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(dict(cfg), sort_keys=False))
    record = {"config_hash": config_hash(cfg), **run_metadata(), **dict(extra or {})}
    return atomic_write_text(out_dir / "run.json", json.dumps(record, indent=2, default=str))
