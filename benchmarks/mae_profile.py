"""Where one MAE training step spends its time, ours against MONAI's MaskedAutoEncoderViT (torch.profiler, CPU).

The step is the one of benchmarks/mae_throughput.py (forward + norm-pix MSE on hidden patches + backward +
foreach AdamW, mask 0.75). Every ATen op's self time is put into one category:

    linear       addmm / mm / linear (the projections, MLPs, patch embedding as a matmul, and their gradients)
    attention    the attention kernels: SDPA (flash for CPU) for ours, bmm + softmax for MONAI
    layernorm    LayerNorm forward and backward
    gelu         GELU forward and backward
    optimizer    everything inside AdamW.step
    copies       copy_/cat/stack/gather/index/scatter/clone/fill_ (layout changes, masking, zero-filled buffers)
    other        the rest (elementwise ops of the loss, residual adds, reductions, the autograd engine's own
                 time, ...)

Both models run the same linear, LayerNorm, GELU and AdamW kernels on the same number of tokens (MONAI 1.6 also
encodes only the visible patches), so the share of those categories bounds how far ahead ours can be without
changing what is computed. Writes benchmarks/results/mae_profile_cpu_<kind>.json and prints a Markdown table.

    python benchmarks/mae_profile.py --configs tiny_2d tiny_3d --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mae_throughput as mt  # noqa: E402

CATEGORIES = ("linear", "attention", "layernorm", "gelu", "optimizer", "copies", "other")
_BY_NAME = {
    "linear": ("aten::addmm", "aten::mm", "aten::linear"),
    "attention": ("flash_attention", "aten::bmm", "aten::_softmax", "aten::_softmax_backward_data"),
    "layernorm": ("layer_norm",),
    "gelu": ("gelu",),
    "copies": ("aten::copy_", "aten::cat", "aten::stack", "aten::gather", "aten::index", "aten::scatter",
               "aten::clone", "aten::fill_", "aten::zero_", "aten::index_put", "aten::_index_put_impl_",
               "aten::repeat", "aten::multinomial"),
}


def category(name: str, in_optimizer: bool) -> str:
    if in_optimizer:
        return "optimizer"
    for cat, keys in _BY_NAME.items():
        if any(k in name for k in keys):
            return cat
    return "other"


def profile_config(cfg: tuple, steps: int) -> dict[str, dict[str, float]]:
    """Self time (ms per step) per category, for MONAI and ours profiled in one session, alternating step by
    step (as mae_throughput.py times them) so that a change in machine load hits both alike."""
    variants = {impl: mt.Variant(impl, "fp32", cfg, "cpu", False) for impl in ("monai", "ours")}
    for v in variants.values():
        v.prepare(3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            for impl, v in variants.items():
                with record_function(f"step:{impl}"):
                    v.step()
    events = prof.events()
    windows = [(e.time_range.start, e.time_range.end, e.name.split(":", 1)[1]) for e in events
               if e.name.startswith("step:")]
    totals: dict[str, dict[str, float]] = {impl: defaultdict(float) for impl in variants}
    for e in events:
        if e.name.startswith("step:"):
            continue
        impl = next((w for a, b, w in windows if a <= e.time_range.start <= b), None)
        if impl is None:
            continue
        parent, in_opt = e, False
        while parent is not None:
            if parent.name.startswith("Optimizer.step"):
                in_opt = True
                break
            parent = parent.cpu_parent
        totals[impl][category(e.name, in_opt)] += e.self_cpu_time_total / 1e3 / steps
    return {impl: {c: t.get(c, 0.0) for c in CATEGORIES} for impl, t in totals.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tiny_2d", "tiny_3d"], choices=list(mt.CONFIGS))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    box = mt.cpu_machine(args.threads)
    rows, table = [], ["| config | model | " + " | ".join(CATEGORIES) + " | total (ms/step) |",
                       "|---|---|" + "---:|" * (len(CATEGORIES) + 1)]
    for name in args.configs:
        for impl, ms in profile_config(mt.CONFIGS[name], args.steps).items():
            total = sum(ms.values())
            rows.append({"config": name, "impl": impl, "ms_per_step": ms, "total_ms": total})
            table.append(f"| {name} | {impl} | " + " | ".join(f"{ms[c]:.1f} ({100 * ms[c] / total:.0f} %)"
                                                           for c in CATEGORIES) + f" | {total:.1f} |")
            print(table[-1], flush=True)
    report = {"machine": box,
              "torch": torch.__version__, "steps": args.steps, "loadavg": os.getloadavg(),
              "note": "profiler self time of every recorded op and autograd node (wall clock), ms per step", "results": rows,
              "markdown": "\n".join(table)}
    out = Path(args.out or Path(__file__).parent / "results" / f"mae_profile_cpu_{box['kind']}.json")
    mt.atomic_write_text(out, json.dumps(report, indent=1))
    print("\n" + report["markdown"] + f"\n\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
