"""The label-efficiency sweep (notebook 10) trains every fraction for the full run's optimiser steps."""
from __future__ import annotations

import pytest

from selfmae.config import load_config
from selfmae.experiments import build_data, label_fraction_overrides
from selfmae.train import optimizer_steps_per_epoch


def _steps(cfg: dict, overrides: dict) -> int:
    cases = len(build_data(dict(cfg, data=dict(cfg["data"], cache=False,
                                                label_fraction=overrides["data.label_fraction"])), check=False)["train"])
    return overrides["train.epochs"] * optimizer_steps_per_epoch(cases, cfg["train"])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_every_fraction_trains_the_full_runs_steps(fraction):
    cfg = load_config("finetune_nnformer_btcv", "tiny")
    full = _steps(cfg, {"data.label_fraction": 1.0, "train.epochs": cfg["train"]["epochs"]})
    overrides = label_fraction_overrides(cfg, fraction)
    assert _steps(cfg, overrides) == full == 2160     # 18 cases at batch 2 for 240 epochs
    assert overrides["train.val_every"] == overrides["train.epochs"]
    # the rule it replaced, epochs x 1 / fraction, gives 2,400 / 1,920 / 2,400 steps at 10 / 25 / 50 %
    naive = {"data.label_fraction": fraction, "train.epochs": round(cfg["train"]["epochs"] / fraction)}
    assert _steps(cfg, naive) != full


def test_a_fraction_outside_0_1_is_refused():
    cfg = load_config("finetune_nnformer_btcv", "tiny")
    with pytest.raises(ValueError, match="label_fraction"):
        label_fraction_overrides(cfg, 0.0)
