"""Why selfmae.parallel runs tiny fine-tunings side by side: training steps per second of the tiny models with
one process using every core, against one forked process per core with one thread each (same machine, same run).

    python benchmarks/parallel_runs.py            # the four tiny fine-tuning configs, 20 timed steps each

Writes benchmarks/results/parallel_runs.json and prints a Markdown table. The gain is the total steps per second of
the side-by-side processes over the single process's.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from selfmae.config import load_config  # noqa: E402
from selfmae.experiments import build_model_for, make_task  # noqa: E402
from selfmae.io import atomic_write_text  # noqa: E402

EXPERIMENTS = ["finetune_cxr14", "finetune_medmnist", "finetune_btcv", "finetune_nnformer_btcv"]


def fake_batch(cfg: dict) -> dict:
    """A batch shaped like the tiny profile's (random values: the step time does not depend on them)."""
    data, b = cfg["data"], cfg["train"]["batch_size"]
    if data["spatial_dims"] == 2:
        c = data["crop"]
        return {"image": torch.randn(b, 1, c, c), "label": torch.randint(0, 2, (b, cfg["model"]["num_classes"])).float()}
    roi = data["roi_size"]
    label = (torch.randint(0, 14, (b, 1, *roi)) if data["dataset"] == "btcv" else torch.randint(0, 2, (b, 3, *roi)))
    return {"image": torch.randn(b, data["in_channels"], *roi), "label": label.float()}


def seconds_per_step(experiment: str, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(experiment, "tiny", {"train.device": "cpu"})
    model, task, batch = build_model_for(cfg), make_task(cfg), fake_batch(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        loss, _ = task.step(model, batch, torch.device("cpu"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def _child(experiment: str, steps: int, queue) -> None:
    queue.put(seconds_per_step(experiment, steps, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--experiments", nargs="+", default=EXPERIMENTS)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    for experiment in args.experiments:
        one = seconds_per_step(experiment, args.steps, cores)
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_child, args=(experiment, args.steps, queue)) for _ in range(cores)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        side = [queue.get() for _ in procs]
        rows.append({"experiment": experiment, "one_process_s_per_step": one, "threads": cores,
                     "side_by_side_s_per_step": side, "gain": sum(one / s for s in side)})
    result = {"cpu_count": cores, "torch": torch.__version__, "loadavg_before_after": os.getloadavg(), "rows": rows}
    out = Path(__file__).resolve().parent / "results" / "parallel_runs.json"
    atomic_write_text(out, json.dumps(result, indent=1))
    print(f"| tiny config | 1 process x {cores} threads (ms/step) | {cores} processes x 1 thread (ms/step each) | "
          "steps/s gain |\n|---|---|---|---|")
    for r in rows:
        each = ", ".join(f"{1e3 * s:.1f}" for s in r["side_by_side_s_per_step"])
        print(f"| {r['experiment']} | {1e3 * r['one_process_s_per_step']:.1f} | {each} | x{r['gain']:.2f} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
