"""Did the default run learn? Every experiment's headline number beside its floor and a simple reference.

The floors are issue #12's (the tiny profile on phantoms); the references are computed in the same run
(`selfmae.baselines`): the flat-patch guess for MAEs, a pixel logistic regression for CXR14, an intensity-only
voxel classifier for BTCV/BraTS. Values are means over the seeds run; a NaN mean never meets a floor. A floor
missed is reported as missed, never hidden.

Results reach this module as the JSON files the notebooks write with `NotebookContext.save_results`:
{"runs": {method: [summary per seed]}, "reference": {...}} (fine-tuning) or {"val_loss": ..., "flat_guess": ...}
(pre-training).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

MAE_FLOOR = 0.6                                 # final validation masked-patch loss, norm-pix units (at most)
CXR14_FLOORS = {"mae": 0.75, "other": 0.50}     # mAUC (at least; "other" must be exceeded)
BTCV_FLOORS = {"dice": 0.70, "min_organ": 0.40}
BRATS_FLOORS = {"dice/WT": 0.80, "dice/TC": 0.60, "dice/ET": 0.50}
NNFORMER_FLOOR = 0.70                           # average DSC at 100 % labels


@dataclass
class Row:
    """One line of the learning check (values as fractions; the table prints them as they are)."""
    experiment: str
    what: str
    metric: str
    value: float
    floor: str
    met: bool
    reference: str = ""
    reference_value: float = float("nan")
    n: int = 0
    ran: bool = True        # False: the notebook that makes this experiment has not run (never counts as met)

    @property
    def status(self) -> str:
        """How the table prints this row's outcome: yes / MISSED / NOT RUN."""
        return ("yes" if self.met else "MISSED") if self.ran else "NOT RUN"


def _mean(summaries: Sequence[Mapping[str, Any]], key: str) -> float:
    """Mean of `key` over seeds; NaN (never met) when a seed lacks it or holds NaN."""
    values = [float(s.get(key, np.nan)) for s in summaries]
    return float(np.mean(values)) if values else float("nan")


def _at_least(value: float, floor: float) -> bool:
    return bool(np.isfinite(value) and value >= floor)


def mae_row(experiment: str, val_loss: float, flat_guess: float) -> Row:
    """A pre-training: final validation masked-patch loss <= MAE_FLOOR; reference = the flat-patch guess."""
    met = bool(np.isfinite(val_loss) and val_loss <= MAE_FLOOR)
    return Row(experiment, "MAE pre-training", "val masked-patch loss (norm-pix)", val_loss, f"<= {MAE_FLOOR}",
               met, "flat patch at its mean", flat_guess, 1)


def classification_rows(experiment: str, runs: Mapping[str, Sequence[Mapping]], reference: Mapping | None) -> list[Row]:
    """Table 2: the MAE row >= CXR14_FLOORS['mae'] mAUC, every other ViT row > CXR14_FLOORS['other']."""
    rows = []
    ref = float(reference["mAUC"]) if reference else float("nan")
    for method, summaries in runs.items():
        if not summaries:   # a method not run (e.g. ImageNet without a weights file) has no floor to meet
            continue
        value = _mean(summaries, "mAUC")
        if method == "mae":
            floor, met = f">= {CXR14_FLOORS['mae']}", _at_least(value, CXR14_FLOORS["mae"])
        else:
            floor = f"> {CXR14_FLOORS['other']}"
            met = bool(np.isfinite(value) and value > CXR14_FLOORS["other"])
        rows.append(Row(experiment, method, "mAUC", value, floor, met, "logistic regression on pixels", ref,
                        len(summaries)))
    return rows


def btcv_rows(experiment: str, runs: Mapping[str, Sequence[Mapping]], organs: Sequence[str],
              reference: Mapping | None) -> list[Row]:
    """Table 1 (and its ablation): average DSC over the organs and the weakest organ's DSC, per method."""
    rows = []
    for method, summaries in runs.items():
        if not summaries:   # a method not run (e.g. ImageNet without a weights file) has no floor to meet
            continue
        avg = _mean(summaries, "dice")
        worst_name, worst = min(((o, _mean(summaries, f"dice/{o}")) for o in organs),
                                key=lambda kv: kv[1] if np.isfinite(kv[1]) else -1.0)
        ref_avg = float(reference["dice"]) if reference else float("nan")
        ref_worst = float(reference.get(f"dice/{worst_name}", np.nan)) if reference else float("nan")
        rows.append(Row(experiment, method, "avg DSC", avg, f">= {BTCV_FLOORS['dice']}",
                        _at_least(avg, BTCV_FLOORS["dice"]), "intensity-only voxel classifier", ref_avg,
                        len(summaries)))
        rows.append(Row(experiment, method, f"worst organ DSC ({worst_name})", worst,
                        f">= {BTCV_FLOORS['min_organ']}", _at_least(worst, BTCV_FLOORS["min_organ"]),
                        "intensity-only voxel classifier", ref_worst, len(summaries)))
    return rows


def brats_rows(experiment: str, runs: Mapping[str, Sequence[Mapping]], reference: Mapping | None) -> list[Row]:
    """Table 3 (and its ablation): WT, TC, ET (label 3) DSC against BRATS_FLOORS, per method."""
    rows = []
    for method, summaries in runs.items():
        if not summaries:   # a method not run (e.g. ImageNet without a weights file) has no floor to meet
            continue
        for key, floor in BRATS_FLOORS.items():
            value = _mean(summaries, key)
            ref = float(reference.get(key, np.nan)) if reference else float("nan")
            rows.append(Row(experiment, method, f"{key.split('/')[1]} DSC", value, f">= {floor}",
                            _at_least(value, floor), "intensity-only voxel classifier", ref, len(summaries)))
    return rows


def nnformer_rows(runs: Mapping[str, Sequence[Mapping]], by_fraction: Mapping[float, Mapping[str, Sequence[Mapping]]],
                  reference: Mapping | None) -> list[Row]:
    """nnFormer at 100 % labels >= NNFORMER_FLOOR average DSC, and for each init the label-fraction curve rises:
    its mean DSC at every larger fraction is at least that of the one before (value = the smallest rise)."""
    ref = float(reference["dice"]) if reference else float("nan")
    runs = {m: s for m, s in runs.items() if s}
    rows = [Row("nnformer_btcv", method, "avg DSC, 100 % labels", _mean(s, "dice"), f">= {NNFORMER_FLOOR}",
                _at_least(_mean(s, "dice"), NNFORMER_FLOOR), "intensity-only voxel classifier", ref, len(s))
            for method, s in runs.items()]
    fractions = sorted(by_fraction)
    for method in runs:
        curve = [_mean(by_fraction[f].get(method, []), "dice") for f in fractions]
        steps = np.diff(curve) if len(curve) > 1 else np.array([np.nan])
        rise = float(np.min(steps))
        label = ", ".join(f"{100 * f:g}%: {v:.3f}" for f, v in zip(fractions, curve))
        rows.append(Row("nnformer_btcv", method, f"label-fraction curve ({label}), smallest step", rise,
                        "rises (>= 0 at every step)", bool(np.isfinite(rise) and rise >= 0.0), "", float("nan"),
                        len(runs[method])))
    return rows


def not_run_row(experiment: str) -> Row:
    """The one row of an experiment whose notebook has not run: no value, never met, printed as NOT RUN."""
    return Row(experiment, "–", "(its notebook has not run)", float("nan"), "–", False, n=0, ran=False)


def table(rows: Sequence[Row]) -> pd.DataFrame:
    """The learning-check table: one row per experiment and metric, `met` printed as yes / MISSED / NOT RUN."""
    df = pd.DataFrame([r.__dict__ for r in rows])
    if df.empty:
        return df
    df["met"] = [r.status for r in rows]
    df = df.drop(columns="ran")
    for col in ("value", "reference_value"):
        df[col] = df[col].map(lambda v: "–" if not np.isfinite(v) else f"{v:.3f}")
    return df.rename(columns={"reference_value": "reference value", "what": "run"})


def missed(rows: Sequence[Row]) -> list[Row]:
    """The rows whose floor was not met."""
    return [r for r in rows if not r.met]


MAE_RUNS = ("pretrain_cxr14", "pretrain_btcv", "pretrain_brats", "pretrain_nnformer_btcv", "pretrain_medmnist")


def collect_rows(load: Callable[[str], Mapping | None], organs: Sequence[str]) -> list[Row]:
    """Every learning-check row from the results the notebooks saved. `load(name)` returns the results saved
    under `name` (`NotebookContext.load_results`) or None when that notebook has not run; missing results are
    reported on stdout and give one `not_run_row` each, so a table never looks complete when it is not. `organs`: the
    BTCV organs scored (Table 1's 8)."""
    from selfmae.data.registry import dataset_spec

    rows: list[Row] = []

    def results(name: str) -> Mapping | None:
        found = load(name)
        if found is None:
            print(f"{name}: no results (its notebook has not run in this profile)")
            rows.append(not_run_row(name))
        return found

    for name in MAE_RUNS:
        if r := results(name):
            rows.append(mae_row(name, r["val_loss"], r["flat_guess"]))
    if r := results("table2_cxr14"):
        rows += classification_rows("table2_cxr14", r["runs"], r.get("reference"))
    if r := results("table1_btcv"):
        rows += btcv_rows("table1_btcv", r["runs"], organs, r.get("reference"))
    if r := results("table3_brats"):
        rows += brats_rows("table3_brats", r["runs"], r.get("reference"))
    for dataset in ("btcv", "brats"):
        if r := results(f"table3_ablation_{dataset}"):
            for point, summaries in r["runs"].items():
                runs = {f"mask {point}": summaries}
                rows += (brats_rows(f"ablation_{dataset}", runs, r.get("reference")) if dataset_spec(dataset).regions
                         else btcv_rows(f"ablation_{dataset}", runs, organs, r.get("reference")))
    if r := results("nnformer_btcv"):
        rows += nnformer_rows(r["runs"], {float(f): runs for f, runs in r["fractions"].items()}, r.get("reference"))
    return rows
