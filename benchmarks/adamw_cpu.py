"""AdamW implementations on this CPU: foreach (the engine's for fp32), the per-parameter loop and fused (bf16 runs).

Times `optimizer.step()` alone over the parameters of our MAE at a benchmarks/mae_throughput.py configuration
(default ViT-B/16 2D, 92 M parameters), the three implementations alternating step by step, random gradients.
The measurement behind `selfmae.train.schedule.build_optimizer`'s choice of the fused AdamW for bf16 runs.

    python benchmarks/adamw_cpu.py                 # writes benchmarks/results/adamw_cpu_<kind>.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mae_throughput as mt  # noqa: E402

from selfmae.train.schedule import adamw_implementation  # noqa: E402

IMPLEMENTATIONS = {"foreach": adamw_implementation(False), "loop": {"foreach": False},
                   "fused": adamw_implementation(True)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="vitb_2d", choices=list(mt.CONFIGS))
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    box = mt.cpu_machine(args.threads)
    torch.manual_seed(0)
    params = [p for p in mt.our_mae(mt.CONFIGS[args.config]).parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    opts = {name: torch.optim.AdamW(params, lr=1e-4, **kw) for name, kw in IMPLEMENTATIONS.items()}
    times: dict[str, list[float]] = {name: [] for name in opts}
    for i in range(args.iters + 2):
        for name, opt in opts.items():
            t = time.perf_counter()
            opt.step()
            if i >= 2:
                times[name].append(time.perf_counter() - t)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    n = sum(p.numel() for p in params)
    table = "\n".join(["| AdamW | ms per step | × foreach |", "|---|---:|---:|"] +
                      [f"| {name} | {v:.1f} | {ms['foreach'] / v:.2f} |" for name, v in ms.items()])
    print(f"{args.config}: {n / 1e6:.1f} M parameters\n{table}")
    return mt.save_cpu_report("adamw_cpu", box, args.out, config=args.config, params=n, iters=args.iters,
                              note="median wall ms of optimizer.step() alone, the implementations alternating",
                              ms=ms, markdown=table)


if __name__ == "__main__":
    main()
