"""Run logs: metrics.csv (one row per epoch, rewritten atomically), TensorBoard events, tqdm progress bars.

Only the main process logs (`enabled`). metrics.csv is rebuilt from the whole history each epoch, so its
columns can grow when validation adds metrics, and a resumed run rewrites exactly the rows its checkpoint holds.
Floats are written with repr() so two runs compare bitwise. TensorBoard is skipped when not importable.
"""
from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from selfmae.io import atomic_write_text

log = logging.getLogger("selfmae.train")

LEADING = ["epoch", "step", "train_loss", "lr"]
TIMING = ["seconds", "samples_per_s"]   # excluded when comparing runs for determinism


def csv_columns(history: list[dict[str, Any]]) -> list[str]:
    seen = [k for row in history for k in row if k not in LEADING and k not in TIMING]
    return LEADING + list(dict.fromkeys(seen)) + TIMING


def progress_enabled(is_main: bool) -> bool:
    return is_main and os.environ.get("SELFMAE_PROGRESS", "1") != "0"


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


class RunLog:
    """metrics.csv + optional TensorBoard for one run folder."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool):
        self.csv_path = out_dir / "metrics.csv"
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # a dependency, but a bare `pip install --no-deps` may lack it
                log.warning("TensorBoard events not written (%s); metrics.csv has the same numbers", err)
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def step(self, step: int, loss: float, lr: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/loss_step", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, history: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=csv_columns(history), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.csv_path, buf.getvalue())
        row = history[-1]
        log.info("epoch %s: %s", row["epoch"], ", ".join(f"{k}={v:.4g}" for k, v in row.items()
                                                          if isinstance(v, float)))
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key if "/" in key else f"epoch/{key}", value, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
