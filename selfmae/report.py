"""Tables as files: mean ± 95 % CI over seeds, written as CSV, Markdown and LaTeX with a caption, a footnote and a
stamp (profile, dataset, commit, date, hardware), so a reader always knows what produced them; the papers'
transcribed numbers (`paper_results.yaml`); epochs to converge. The papers' tables themselves, ours beside, are
built in `selfmae.paper_tables`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import yaml

from selfmae.io import atomic_write_text


@functools.lru_cache(maxsize=1)
def paper_results() -> dict:
    """The transcribed numbers of both papers (see selfmae/paper_results.yaml)."""
    return yaml.safe_load((resources.files("selfmae") / "paper_results.yaml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Stamp:
    """Provenance printed under every table and figure."""
    profile: str
    dataset: str          # "synthetic" or the real data path
    commit: str
    date: str
    hardware: str

    @classmethod
    def collect(cls, profile: str, dataset: str) -> "Stamp":
        from selfmae.repro import git_commit, hardware_summary

        return cls(profile, dataset, git_commit(short=True),
                   datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), hardware_summary())

    def __str__(self) -> str:
        return (f"profile={self.profile} | data={self.dataset} | commit={self.commit} | {self.date} | "
                f"{self.hardware}")


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """Mean and half-width of the Student-t confidence interval over seeds; NaNs are dropped.

    Returns (mean, half_width, n); half_width is NaN when n < 2 (no interval from one run).
    """
    from scipy import stats

    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = arr.size
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(arr[0]), float("nan"), 1
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * arr.std(ddof=1) / np.sqrt(n)
    return float(arr.mean()), float(half), n


def format_ci(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """'81.20 ± 3.40' (n seeds), '81.20 (n=1)' or 'n/a'; seeds whose value is missing or NaN are not averaged
    silently: the cell says how many were left out, e.g. '81.20 ± 3.40 (1 of 3 NaN)'."""
    values = list(values)
    mean, half, n = mean_ci([v * scale for v in values if v is not None])
    dropped = f" ({len(values) - n} of {len(values)} NaN)" if 0 < n < len(values) else ""
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{mean:.{digits}f} (n=1){dropped}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}{dropped}"


def write_table(df: pd.DataFrame, name: str, out_dir: str | Path, stamp: Stamp, caption: str,
                note: str | None = None) -> dict[str, Path]:
    """Write `name`.csv/.md/.tex atomically; each holds the caption, the footnote and the stamp. Returns the paths.

    note: a footnote (e.g. how a metric was computed); default `df.attrs["note"]`, which the table builders below
    set for segmentation tables (the Dice/HD95 conventions of `selfmae.eval.metrics.SEGMENTATION_CONVENTION`).
    """
    out_dir = Path(out_dir)
    stamp_line = f"stamp: {stamp}"
    note = note or df.attrs.get("note") or ""
    paths = {
        "csv": atomic_write_text(out_dir / f"{name}.csv", f"# {caption}\n" + (f"# note: {note}\n" if note else "")
                                 + f"# {stamp_line}\n" + df.to_csv(index=False)),
        "md": atomic_write_text(out_dir / f"{name}.md", f"**{caption}**\n\n{to_markdown(df)}\n\n"
                                + (f"Note: {note}\n\n" if note else "") + f"_{stamp_line}_\n"),
        "tex": atomic_write_text(out_dir / f"{name}.tex", f"% {stamp_line}\n" + (f"% note: {note}\n" if note else "")
                                 + df.to_latex(index=False, caption=f"{caption} {note}".strip(), label=f"tab:{name}",
                                               escape=True).replace("±", r"$\pm$")),
    }
    return paths


def segmentation_note(df: pd.DataFrame, extra: str = "") -> pd.DataFrame:
    """`df` with its footnote (`df.attrs["note"]`, written by `write_table`): the Dice/HD95 conventions
    (`selfmae.eval.metrics`; the Dice-only ones when no column holds HD95), then how our means are taken, then
    `extra` (what only this table needs said)."""
    from selfmae.eval.metrics import DICE_CONVENTION, SEGMENTATION_CONVENTION

    hd95 = any("HD95" in str(c) for c in df.columns)
    parts = [SEGMENTATION_CONVENTION if hd95 else DICE_CONVENTION,
             "Our rows: each seed's value is the mean over its evaluation cases, the cell the mean over seeds "
             "± the 95% Student-t half-width (Source gives seeds x cases); with few seeds a half-width wider than "
             "the metric's range means the seeds disagree, not that the metric left its range.", extra]
    df.attrs["note"] = " ".join(p for p in parts if p)
    return df


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' own needs the optional `tabulate` package)."""
    cells = [[str(c) for c in df.columns]] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("---" for _ in df.columns) + "|")
    return "\n".join(lines)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table CSV written by `write_table` (skips the caption/stamp comment lines)."""
    return pd.read_csv(path, comment="#")


def epochs_to_reach(history: pd.DataFrame, metric: str, fraction: float = 0.95) -> float:
    """First epoch whose validation `metric` reaches `fraction` of the run's final value (NaN if never)."""
    h = history.dropna(subset=[metric])
    if h.empty:
        return float("nan")
    target = fraction * h[metric].iloc[-1]
    reached = h[h[metric] >= target]
    return float(reached["epoch"].iloc[0]) if len(reached) else float("nan")
