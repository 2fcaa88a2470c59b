"""Tables: the paper's numbers beside ours (mean ± 95 % CI over seeds), written as CSV, Markdown and LaTeX.

The paper's numbers live only in `paper_results.yaml`. Ours come from run summaries. Every table carries a stamp
(profile, dataset, commit, date, hardware) so a reader always knows what produced it.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping, Sequence

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
    """'81.20 ± 3.40' (n seeds), '81.20 (n=1)' or 'n/a'."""
    mean, half, n = mean_ci([v * scale for v in values if v is not None])
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def ours_vs_paper(paper_rows: Mapping[str, Mapping[str, object]], ours: Mapping[str, Sequence[Mapping[str, float]]],
                  columns: Sequence[tuple[str, str, float]], row_map: Mapping[str, str],
                  our_label: str = "ours") -> pd.DataFrame:
    """One table in the paper's layout: every paper row, and under each reproduced row our mean ± CI.

    paper_rows: row name -> {column name: printed value}
    ours: method key (e.g. "mae") -> one dict per seed {metric key: value}
    columns: (column name, our metric key, scale), e.g. ("Aorta", "dsc/Aorta", 100)
    row_map: paper row name -> our method key
    """
    records = []
    for name, values in paper_rows.items():
        records.append({"Method": name, "Source": "paper", **{c: _fmt(values.get(c)) for c, _, _ in columns}})
        method = row_map.get(name)
        if method is not None:
            runs = ours.get(method, [])
            cells = {c: format_ci([r.get(key, np.nan) for r in runs], scale) if runs else "not run"
                     for c, key, scale in columns}
            records.append({"Method": name, "Source": f"{our_label} (n={len(runs)})", **cells})
    return pd.DataFrame.from_records(records)


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def write_table(df: pd.DataFrame, name: str, out_dir: str | Path, stamp: Stamp, caption: str) -> dict[str, Path]:
    """Write `name`.csv/.md/.tex atomically; each holds the caption and the stamp. Returns the paths."""
    out_dir = Path(out_dir)
    stamp_line = f"stamp: {stamp}"
    paths = {
        "csv": atomic_write_text(out_dir / f"{name}.csv", f"# {caption}\n# {stamp_line}\n" + df.to_csv(index=False)),
        "md": atomic_write_text(out_dir / f"{name}.md",
                                f"**{caption}**\n\n{to_markdown(df)}\n\n_{stamp_line}_\n"),
        "tex": atomic_write_text(out_dir / f"{name}.tex", f"% {stamp_line}\n" + df.to_latex(
            index=False, caption=caption, label=f"tab:{name}", escape=True).replace("±", r"$\pm$")),
    }
    return paths


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' own needs the optional `tabulate` package)."""
    cells = [[str(c) for c in df.columns]] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("---" for _ in df.columns) + "|")
    return "\n".join(lines)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table CSV written by `write_table` (skips the caption/stamp comment lines)."""
    return pd.read_csv(path, comment="#")


def stamp_dict(stamp: Stamp) -> dict:
    return asdict(stamp)
