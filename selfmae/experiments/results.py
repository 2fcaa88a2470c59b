"""Reading finished runs back: a run's metrics.csv, a study's training curves, the scores at the last epoch."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd


def load_history(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.csv as a DataFrame."""
    return pd.read_csv(Path(run_dir) / "metrics.csv")


def study_histories(out_dir: str | Path, methods: Sequence[str]) -> dict[str, pd.DataFrame]:
    """method -> all seeds' metrics.csv stacked (column `seed`), for training-curve figures."""
    out = {}
    for method in methods:
        frames = [load_history(d).assign(seed=d.name) for d in sorted((Path(out_dir) / method).glob("seed*"))
                  if (d / "metrics.csv").exists()]
        if frames:
            out[method] = pd.concat(frames, ignore_index=True)
    return out


def last_epoch_scores(out_dir: str | Path, methods: Sequence[str], seeds: Sequence[int],
                      metric: str = "dice") -> dict[str, list[dict]]:
    """method -> [{metric: value}] per seed at the last epoch of out_dir/<method>/seed<N>/metrics.csv.

    The end-of-training score of runs validated along the way: the same number as evaluating their last
    checkpoint on the validation split, so a sweep can reuse them instead of training them again.
    """
    out: dict[str, list[dict]] = {}
    for method in methods:
        for seed in seeds:
            run_dir = Path(out_dir) / method / f"seed{seed}"
            history = load_history(run_dir)
            validated = history.dropna(subset=[metric])
            if validated.empty or validated["epoch"].iloc[-1] != history["epoch"].max():
                raise ValueError(f"{run_dir / 'metrics.csv'}: no validated {metric} at the last epoch")
            out.setdefault(method, []).append({metric: float(validated[metric].iloc[-1]), "seed": seed})
    return out

