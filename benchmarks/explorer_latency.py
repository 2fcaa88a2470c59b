"""Redraw latency of the mask-ratio explorer: time N slider moves through the widget's own callback.

Each timed update is exactly what a user's slider move does in JupyterLab: the slider's value changes, its
observer runs the MAE (ratio/seed moves) or only re-slices the cached volume (slice moves), renders the five
panels to PNG and updates the image widgets and the status line. The budget is 0.5 s per update for the tiny
models on a 2-core CPU. Results go to benchmarks/results/explorer_latency.json.

    .venv/bin/python benchmarks/explorer_latency.py [--n 40] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from selfmae.explore import explorer_widget
from selfmae.io import atomic_write_text
from selfmae.repro import REPO_ROOT

BUDGET_S = 0.5
# (case name, source, which slider moves, torch threads for the model: 1 = the explorer's default)
CASES = (
    ("2D PneumoniaMNIST, 24 px, 36 patches: mask-ratio slider", "sample:pneumoniamnist", "ratio", 1),
    ("2D ChestX-ray14 radiograph, 64 px, 64 patches: mask-ratio slider", "sample:cxr14", "ratio", 1),
    ("2D PneumoniaMNIST: mask-seed box", "sample:pneumoniamnist", "seed", 1),
    ("3D abdominal CT, 32^3 crop, 64 cubes of 8^3: mask-ratio slider", "sample:ct", "ratio", 1),
    ("3D abdominal CT: slice slider", "sample:ct", "slice", 1),
    # reference, not held to the budget: torch's own thread count (why the explorer pins one thread)
    ("reference: 2D PneumoniaMNIST mask-ratio slider with torch's default threads", "sample:pneumoniamnist",
     "ratio", None),
)


def time_updates(ui, control: str, n: int) -> list[float]:
    """Seconds per update for n successive values of one control (the first, warm-up move is not counted)."""
    widget = getattr(ui, control)
    if control == "ratio":
        values = [5 + (5 * i) % 95 for i in range(1, n + 2)]
    elif control == "seed":
        values = list(range(1, n + 2))
    else:
        values = [(3 * i) % (widget.max + 1) for i in range(1, n + 2)]
    times = []
    for value in values:
        if value == widget.value:
            value = (value + 1) % (widget.max + 1) if control == "slice" else value + 1
        t0 = time.perf_counter()
        widget.value = value   # the observer runs synchronously: compute + render + widget update
        times.append(time.perf_counter() - t0)
        assert ui.message.value == "", ui.message.value
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="timed updates per case")
    parser.add_argument("--threads", type=int, default=2, help="torch's CPU threads outside the explorer (2 cores)")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "explorer_latency.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None   # other work on the machine while timing
    results = []
    with tempfile.TemporaryDirectory() as runs:   # no checkpoints: the untrained tiny MAEs (same size as trained)
        for name, source, control, threads in CASES:
            t0 = time.perf_counter()
            ui = explorer_widget(source, runs_dir=runs, threads=threads)
            first = time.perf_counter() - t0
            times = np.asarray(time_updates(ui, control, args.n if threads else max(5, args.n // 4)))
            row = {"case": name, "control": control, "model_threads": threads or torch.get_num_threads(),
                   "n": len(times), "median_s": float(np.median(times)), "p95_s": float(np.percentile(times, 95)),
                   "max_s": float(times.max()), "open_s": first,
                   "within_budget": bool(np.percentile(times, 95) <= BUDGET_S), "reference": threads is None}
            results.append(row)
            print(f"{name}: median {row['median_s'] * 1000:.1f} ms, p95 {row['p95_s'] * 1000:.1f} ms, "
                  f"max {row['max_s'] * 1000:.1f} ms (open {first:.2f} s)")
    report = {"benchmark": "explorer_latency", "budget_s": BUDGET_S, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
              "python": platform.python_version(), "torch": torch.__version__,
              "load_average_1min_before": load, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cases": results,
              "all_within_budget": all(r["within_budget"] for r in results if not r["reference"])}
    out = Path(args.out)
    atomic_write_text(out, json.dumps(report, indent=2))
    print(f"{'all within' if report['all_within_budget'] else 'NOT all within'} the {BUDGET_S} s budget -> {out}")


if __name__ == "__main__":
    main()
