"""What every numbered notebook does around its science: paths, stamps, overrides, saving outputs.

    ctx = NotebookContext(profile, data_dir, out_dir, results_dir, device=device, max_steps=max_steps)
    cfg = ctx.config("pretrain_btcv")             # resolved, with data_dir/device/max_steps applied
    ctx.save_table(df, "table1_btcv", "caption")  # tables/<profile>/table1_btcv.{csv,md,tex}, stamped
    ctx.save_figure(fig, "fig2_reconstructions")  # figures/<profile>/fig2_reconstructions.{png,pdf}, stamped
    ctx.save_results("table2_cxr14", {...})       # runs/<profile>/results/table2_cxr14.json (the learning check)

Runs on data other than the default go to runs/<profile>/data-<tag>/ (`selfmae.provenance.data_tag`), so
pointing a notebook at new data never collides with finished runs on other data; stamps name the data by
`selfmae.provenance.data_label` (never an absolute path).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from selfmae.config import load_config
from selfmae.repro import REPO_ROOT


@dataclass
class NotebookContext:
    profile: str = "tiny"
    data_dir: str = ""                  # parent folder of the real datasets ("" = synthetic phantoms)
    out_dir: str = ""                   # runs/<profile> by default
    results_dir: str = ""               # the repository root by default: tables/<profile>, figures/<profile>
    device: str = "auto"
    max_steps: int | None = None        # cap on optimiser steps per training run (smoke tests)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from selfmae.provenance import data_tag

        self.runs = Path(self.out_dir or REPO_ROOT / "runs" / self.profile)
        if data_tag(self.data_dir):
            self.runs = self.runs / f"data-{data_tag(self.data_dir)}"
        results = Path(self.results_dir or REPO_ROOT)
        self.tables = results / "tables" / self.profile
        self.figures = results / "figures" / self.profile
        for path in (self.runs, self.tables, self.figures):
            path.mkdir(parents=True, exist_ok=True)

    def dataset_dir(self, dataset: str) -> str:
        """'' for synthetic data, else <data_dir>/<the dataset's folder> (or data_dir itself if it is that folder)."""
        if not self.data_dir:
            return ""
        from selfmae.data.registry import REGISTRY

        root = Path(self.data_dir).expanduser()   # real datasets: in sub-folders named as they are released
        sub = root / (getattr(REGISTRY.get(dataset), "release_folder", "") or dataset)
        return str(sub if sub.exists() else root)

    def run_overrides(self, experiment: str, extra: Mapping[str, Any] | None = None) -> dict:
        """Overrides shared by every run of this notebook: data folder, device, max_steps, the user's own."""
        from selfmae.provenance import data_tag

        cfg = load_config(experiment, self.profile)
        ov: dict[str, Any] = {"train.device": self.device}
        if data_tag(self.data_dir):   # a shipped sample stays data_dir: null, so run records name no machine's path
            ov["data.data_dir"] = self.dataset_dir(cfg["data"]["dataset"])
        if self.max_steps:
            ov["train.max_steps"] = int(self.max_steps)
        ov.update({k: v for k, v in self.overrides.items() if k.split(".")[0] in ("data", "model", "train", "eval")})
        ov.update(extra or {})
        return ov

    def config(self, experiment: str, extra: Mapping[str, Any] | None = None) -> dict:
        return load_config(experiment, self.profile, self.run_overrides(experiment, extra))

    def stamp(self, dataset: str, data: str | None = None):
        """The provenance stamp; `data` names the data actually shown when it is not `dataset`'s folder (e.g. a
        shipped real sample), else `selfmae.provenance.data_label` of that folder."""
        from selfmae.provenance import data_label
        from selfmae.report import Stamp

        return Stamp.collect(self.profile, data or data_label(self.dataset_dir(dataset)))

    def save_table(self, df, name: str, caption: str, dataset: str, data: str | None = None) -> dict:
        from selfmae.report import write_table

        paths = write_table(df, name, self.tables, self.stamp(dataset, data), caption)
        print(f"table {name}: {', '.join(str(p) for p in paths.values())}")
        return paths

    def save_figure(self, fig, name: str, dataset: str, data: str | None = None) -> dict:
        from selfmae.viz import save_figure

        paths = save_figure(fig, name, self.figures, self.stamp(dataset, data))
        print(f"figure {name}: {', '.join(str(p) for p in paths.values())}")
        return paths

    def save_results(self, name: str, results: Mapping[str, Any]) -> Path:
        """Write `results` (summaries per method, references, losses) to runs/<profile>/results/<name>.json, for
        the learning check (notebook 13). Floats that are NaN are written as NaN (JSON extension, read back)."""
        import json

        from selfmae.io import atomic_write_text

        path = self.runs / "results" / f"{name}.json"
        atomic_write_text(path, json.dumps(results, indent=1, default=float))
        return path

    def load_results(self, name: str) -> dict | None:
        """The results saved under `name` by an earlier notebook, or None when that notebook has not run."""
        import json

        path = self.runs / "results" / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None
