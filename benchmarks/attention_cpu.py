"""Attention kernels on a CPU at the MAE's shapes: PyTorch's fused SDPA against two matmuls around a softmax.

For each attention shape of benchmarks/mae_throughput.py's configurations (encoder on the visible tokens, decoder on
all of them) it times forward + backward of `F.scaled_dot_product_attention` (on a CPU: its flash kernel for CPU)
and of the matmul form softmax(q k^T / sqrt(d)) v, in fp32 and bf16, in one process, alternating the two. This is
the measurement behind `selfmae.models.attention.attention`'s choice (fused kernel in fp32, matmul form for CPU bf16).

    python benchmarks/attention_cpu.py            # writes benchmarks/results/attention_cpu_<kind>.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import mae_throughput as mt  # noqa: E402

from selfmae.models.attention import matmul_attention  # noqa: E402


def shapes() -> list[tuple[str, tuple[int, int, int, int]]]:
    """(label, (B, H, N, head width)) of every attention in the benchmark's MAE configurations."""
    out = []
    for name, (dims, img, patch, (d, _, heads), (dd, _, dheads), batch) in mt.CONFIGS.items():
        n = (img // patch) ** dims
        visible = n - round(n * mt.MASK_RATIO)
        out += [(f"{name} encoder", (batch, heads, 1 + visible, d // heads)),
                (f"{name} decoder", (batch, dheads, 1 + n, dd // dheads))]
    return out


def time_kernels(shape: tuple[int, ...], dtype: torch.dtype, iters: int) -> dict[str, float]:
    """Median ms of forward + backward for each kernel, the two timed alternately."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))
    kernels = {"fused": F.scaled_dot_product_attention, "matmul": matmul_attention}
    times: dict[str, list[float]] = {name: [] for name in kernels}
    for i in range(iters + 3):
        for name, fn in kernels.items():
            t = time.perf_counter()
            fn(q, k, v).sum().backward()
            if i >= 3:
                times[name].append((time.perf_counter() - t) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    box = mt.cpu_machine(args.threads)
    dtypes = [torch.float32] + ([torch.bfloat16] if box["cpu_native_bf16"] else [])
    rows = []
    table = ["| attention | (B, H, N, d) | dtype | fused SDPA (ms) | matmul form (ms) | fused / matmul |",
             "|---|---|---|---:|---:|---:|"]
    for label, shape in shapes():
        for dtype in dtypes:
            ms = time_kernels(shape, dtype, args.iters)
            name = str(dtype).removeprefix("torch.")
            rows.append({"attention": label, "shape": list(shape), "dtype": name, "ms": ms})
            table.append(f"| {label} | {tuple(shape)} | {name} | {ms['fused']:.2f} | {ms['matmul']:.2f} | "
                         f"{ms['fused'] / ms['matmul']:.2f} |")
            print(table[-1], flush=True)
    return mt.save_cpu_report("attention_cpu", box, args.out, iters=args.iters,
                              note="median wall ms of forward + backward; bf16 only where the CPU computes it natively",
                              results=rows, markdown="\n".join(table))


if __name__ == "__main__":
    main()
