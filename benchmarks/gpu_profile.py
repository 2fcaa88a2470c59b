"""Where the GPU time of a paper training step goes: kernel time per category (matmul, attention, fused/elementwise,
optimizer, copies) from torch.profiler, against the step's wall time and the model FLOPs of each category.

Companion of benchmarks/gpu_paper.py (issue #15: why the 3D ViT-B MAE step stays under 45 % MFU). For each
(experiment, variant) it warms the step up as gpu_paper does, then profiles `--steps` steps with CUDA activity and
reports per step: wall time, summed kernel time (wall minus this is the GPU idling on the host), each category's
kernel time and share, and the matmul kernels' achieved TFLOP/s (matmul + convolution FLOPs from
torch.utils.flop_counter over their kernel time). CUDA-graph variants are not profiled (their kernels hide in one
replay); profile `compile` instead: the same kernels, with launch gaps.

    python benchmarks/gpu_profile.py --device cuda --out $OUT/gpu_profile.json
    python benchmarks/gpu_profile.py --device cpu --profile tiny --steps 1 --out /tmp/p.json   # a CPU check
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
from gpu_paper import Step, matmul_tflops  # noqa: E402

from selfmae.config import load_config  # noqa: E402
from selfmae.io import atomic_write_text  # noqa: E402

CATEGORIES = [  # first match wins; kernel names of cuBLAS/cuDNN/CUTLASS/flash/inductor/PyTorch
    ("attention", r"flash|fmha|attention|sdpa|efficient_attention"),
    ("matmul", r"gemm|nvjet|sm90_xmma|cutlass|cublas|conv|implicit|wgrad|dgrad|winograd|xmma|::(add)?mm$|::bmm$"),
    ("optimizer", r"multi_tensor|adam|foreach"),
    ("fused (inductor/triton)", r"^triton|triton_"),
    ("copy", r"memcpy|memset|copy|cat|index|gather|scatter|sort|radix"),
    ("norm/elementwise/reduce", r"."),
]
MATMUL_OPS = ("mm", "addmm", "bmm", "convolution", "convolution_backward", "_convolution")


def category(name: str) -> str:
    low = name.lower()
    return next(c for c, pattern in CATEGORIES if re.search(pattern, low))


def matmul_flops(flop_counts: dict[str, int]) -> float:
    """FLOPs of the matmuls and convolutions (attention excluded) among a step's per-op counts."""
    name = lambda op: (op.split(".") + [""])[1]  # noqa: E731  (aten.mm / aten.mm.default -> mm)
    return float(sum(n for op, n in flop_counts.items() if name(op) in MATMUL_OPS))


def profile_step(experiment: str, profile_name: str, variant: str, device: torch.device, steps: int) -> dict:
    cfg = load_config(experiment, profile_name)
    step = Step(cfg, variant, device)
    total = step.count_flops()
    mm = matmul_flops(step.flop_counts)
    step.warm_up()
    cuda = device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=acts) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            step.run()
        if cuda:
            torch.cuda.synchronize()
        wall = (time.perf_counter() - t) / steps
    per_cat: dict[str, float] = {}
    kernels = []
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0) if cuda \
            else e.self_cpu_time_total
        if not us or (not cuda and not e.key.startswith("aten::")):
            continue
        if "#" in e.key or e.key.startswith("ProfilerStep"):  # annotations (Optimizer.step#AdamW.step) span kernels
            continue
        if cuda and getattr(e, "device_type", None) is not None and str(e.device_type).endswith("CPU"):
            continue
        ms = us / 1e3 / steps
        cat = category(e.key)
        per_cat[cat] = per_cat.get(cat, 0.0) + ms
        kernels.append({"kernel": e.key[:120], "category": cat, "ms_per_step": ms, "calls_per_step": e.count / steps})
    busy = sum(per_cat.values())
    kernels.sort(key=lambda k: -k["ms_per_step"])
    mm_ms = per_cat.get("matmul", 0.0)
    return {"experiment": experiment, "variant": variant, "batch": step.batch, "wall_ms_per_step": wall * 1e3,
            "kernel_ms_per_step": busy, "gpu_idle_share": max(0.0, 1 - busy / (wall * 1e3)) if cuda else None,
            "categories_ms": dict(sorted(per_cat.items(), key=lambda kv: -kv[1])),
            "categories_share": {k: v / busy for k, v in per_cat.items()} if busy else {},
            "gflop_per_step": total / 1e9, "matmul_gflop_per_step": mm / 1e9,
            "matmul_tflops_in_kernels": mm / (mm_ms / 1e3) / 1e12 if mm_ms else None,
            "model_tflops_if_no_idle": total / (busy / 1e3) / 1e12 if busy else None,
            "kernel_launches_per_step": sum(k["calls_per_step"] for k in kernels),
            "top_kernels": kernels[:15]}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--runs", nargs="*", default=["pretrain_btcv:eager", "pretrain_btcv:compile", "pretrain_brats:compile"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu_profile.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    peak = matmul_tflops(device, torch.bfloat16, 8192 if device.type == "cuda" else 256, 10 if device.type == "cuda" else 1)
    rows = []
    for run in args.runs:
        experiment, variant = run.split(":")
        try:
            rows.append(profile_step(experiment, args.profile, variant, device, args.steps))
        except Exception as exc:
            rows.append({"experiment": experiment, "variant": variant, "error": f"{type(exc).__name__}: {exc}"[:300]})
        r = rows[-1]
        print(json.dumps({k: v for k, v in r.items() if k != "top_kernels"}, default=str), flush=True)
        for k in r.get("top_kernels", [])[:8]:
            print(f"   {k['ms_per_step']:8.3f} ms x{k['calls_per_step']:5.0f}  {k['category']:24s} {k['kernel'][:90]}")
        atomic_write_text(args.out, json.dumps({"matmul_peak_bf16_tflops": peak, "rows": rows}, indent=1))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    main()
