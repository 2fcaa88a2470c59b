"""The paper profile on a GPU: every config's training step at the paper's batch, eager, as a whole-step CUDA
graph and under torch.compile, with model FLOPs and MFU; MONAI's MaskedAutoEncoderViT beside our MAE.

One prepared script for a short GPU lease (issue #15). For each `paper` experiment config it builds the model,
feeds a synthetic batch of the paper's size (train.batch_size x data.num_samples crops for 3D), and times
forward + loss + backward + AdamW exactly as the engine does (`selfmae.train.schedule.build_optimizer`: fused for
bf16 runs; bf16 autocast on CUDA as `train.precision: auto` chooses), in these variants:

* `eager`      - what `selfmae train` runs today; its times go to results/paper_steps.json (read by `make plan`).
* `graph`      - the same step captured once as one CUDA graph (forward, backward and a capturable AdamW) and
                 replayed: no per-kernel launch cost on the host (PyTorch "whole network capture").
* `compile`    - torch.compile (inductor, default mode) of the model, eager optimizer.
* `compile+graph` - the compiled model inside a whole-step CUDA graph.
* `monai-fp32` / `monai-tf32` - MONAI's MaskedAutoEncoderViT with the config's sizes and mask ratio, fp32 (it
                 cannot run under bf16 autocast: "Index put requires the source and destination dtypes match"),
                 with TF32 matmuls off / on. Only for the MAE configs.

Timing: CUDA events around blocks of consecutive steps (no host sync inside a block, as in training), the median
of the blocks' mean step time. FLOPs: torch.utils.flop_counter on one eager step (matmuls, convolutions and
attention; elementwise work is not counted, as usual for MFU). MFU = model FLOP/s / the GPU's dense bf16 peak,
both the datasheet's (H100/H200 SXM: 989.4 TFLOP/s) and an 8192^3 bf16 matmul measured in the same run.
Peak memory: torch.cuda.max_memory_allocated over the variant (weights, AdamW state, activations, graph pool) minus
what was allocated when the row started.

    python benchmarks/gpu_paper.py --device cuda --budget-s 420        # on the GPU (one call)
    python benchmarks/gpu_paper.py --device cpu --profile tiny --steps 2 --out /tmp/g.json   # a CPU check

Writes results/gpu_paper.json (every row, written again after each one so a time-out keeps what ran) and, for
the paper profile on CUDA, results/paper_steps.json (eager rows), and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
from mae_throughput import monai_loss  # noqa: E402
from paper_smoke import EXPERIMENTS, batch_for, loss_of  # noqa: E402

from selfmae.config import load_config  # noqa: E402
from selfmae.io import atomic_write_text  # noqa: E402
from selfmae.models import build_model  # noqa: E402
from selfmae.repro import hardware_summary, run_metadata  # noqa: E402
from selfmae.train import choose_precision  # noqa: E402
from selfmae.train.schedule import build_optimizer  # noqa: E402

DATASHEET_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4}  # dense, SXM (NVIDIA datasheets)
MAE_TARGETS = ["pretrain_btcv", "pretrain_brats"]  # the 3D ViT-B MAE steps issue #15 asks >= 45 % MFU of


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, iters: int) -> float:
    """Dense n^3 matmul rate on random data (never zeros: they run faster than real data)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t) / 1e12


def monai_for(cfg: dict) -> torch.nn.Module:
    """MONAI's MaskedAutoEncoderViT with the config's encoder/decoder sizes, channels and mask ratio."""
    from monai.networks.nets import MaskedAutoEncoderViT

    m, d = cfg["model"], cfg["data"]
    dims = d["spatial_dims"]
    img = d["crop"] if dims == 2 else d["roi_size"]
    ok = lambda w: w % (2 * dims) == 0  # noqa: E731  (MONAI's sin-cos needs width % 4 in 2D, % 6 in 3D)
    return MaskedAutoEncoderViT(
        in_channels=d["in_channels"], img_size=img, patch_size=m["patch_size"], hidden_size=m["embed_dim"],
        mlp_dim=int(m["mlp_ratio"] * m["embed_dim"]), num_layers=m["depth"], num_heads=m["num_heads"],
        masking_ratio=m["mask_ratio"], decoder_hidden_size=m["decoder_embed_dim"],
        decoder_mlp_dim=int(m["mlp_ratio"] * m["decoder_embed_dim"]), decoder_num_layers=m["decoder_depth"],
        decoder_num_heads=m["decoder_num_heads"], pos_embed_type="sincos" if ok(m["embed_dim"]) else "learnable",
        decoder_pos_embed_type="sincos" if ok(m["decoder_embed_dim"]) else "learnable", spatial_dims=dims,
        qkv_bias=True)


class Step:
    """One variant of one experiment's training step: model, optimizer, a fixed synthetic batch, `run()`."""

    def __init__(self, cfg: dict, variant: str, device: torch.device, batch_scale: int = 1) -> None:
        torch.manual_seed(0)
        self.cfg, self.variant, self.device = cfg, variant, device
        monai = variant.startswith("monai")
        self.model = (monai_for(cfg) if monai else build_model(dict(cfg["model"], pretrained=None), cfg["data"]))
        self.model = self.model.to(device)
        self.dtype = None if monai else choose_precision(cfg["train"]["precision"], device, self.model).dtype
        # the engine's AdamW: fused for bf16 runs, foreach for fp32; graph rows keep the capturable foreach AdamW
        # they were first measured with
        self.opt = build_optimizer(self.model, cfg["train"], fused=self.dtype is not None and "graph" not in variant)
        x, y = batch_for(cfg, device)
        if batch_scale > 1:
            x, y = (None if t is None else t.repeat(batch_scale, *[1] * (t.ndim - 1)) for t in (x, y))
        self.x, self.y, self.batch = x, y, int(x.shape[0])
        fwd = torch.compile(self.model) if "compile" in variant else self.model
        patch = cfg["model"].get("patch_size", 16)
        self._loss = (lambda m: monai_loss(m, self.x, patch)) if monai else (lambda m: loss_of(cfg, m, self.x, self.y))
        self.fwd, self.graph, self.loss = fwd, None, None
        if "graph" in variant:
            for g in self.opt.param_groups:  # the AdamW step count and lr stay on the GPU inside the graph
                g["capturable"] = True

    def _eager_step(self, model: torch.nn.Module, cache: bool = True) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None,
                            cache_enabled=cache):
            loss = self._loss(model)
        loss.backward()
        self.opt.step()
        return loss

    def count_flops(self) -> float:
        """Model FLOPs of one step (forward + backward), counted on the eager model; per op in `.flop_counts`."""
        from torch.utils.flop_counter import FlopCounterMode

        self.opt.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as counter:
            with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                loss = self._loss(self.model)
            loss.backward()
        self.opt.zero_grad(set_to_none=True)
        self.flop_counts = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
        return float(counter.get_total_flops())

    def warm_up(self, steps: int = 3) -> None:
        """Run `steps` steps (compilation, AdamW state, allocator); for graph variants then capture the step."""
        if "graph" not in self.variant:
            for _ in range(steps):
                self.opt.zero_grad(set_to_none=True)
                self.loss = self._eager_step(self.fwd)
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graph's docs require
            for _ in range(steps):
                self.opt.zero_grad(set_to_none=True)
                self._eager_step(self.fwd, cache=False)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)  # backward inside the capture allocates the grads in the graph's pool
        with torch.cuda.graph(self.graph):
            self.loss = self._eager_step(self.fwd, cache=False)  # autocast's weight cache cannot live in a graph

    def run(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.opt.zero_grad(set_to_none=True)
            self.loss = self._eager_step(self.fwd)


def time_steps(step: Step, blocks: int, per_block: int) -> list[float]:
    """Mean seconds per step of each block of consecutive steps (CUDA events; perf_counter on CPU)."""
    out = []
    for _ in range(blocks):
        if step.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(per_block):
                step.run()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3 / per_block)
        else:
            t = time.perf_counter()
            for _ in range(per_block):
                step.run()
            out.append((time.perf_counter() - t) / per_block)
    return out


def measure(experiment: str, profile: str, variant: str, device: torch.device, blocks: int, per_block: int,
            batch_scale: int = 1) -> dict:
    cfg = load_config(experiment, profile)
    cuda = device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = variant == "monai-tf32"
    torch.backends.cudnn.allow_tf32 = variant == "monai-tf32"
    base = 0
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()  # left by earlier rows (should be ~0): not this variant's
    t0 = time.perf_counter()
    step = Step(cfg, variant, device, batch_scale)
    flops = step.count_flops()
    step.warm_up()
    step.run()  # a graph's loss tensor holds a value only once it has been replayed
    first = float(step.loss.detach())
    setup_s = time.perf_counter() - t0
    times = time_steps(step, blocks, per_block)
    sec = statistics.median(times)
    row = {"experiment": experiment, "variant": variant, "batch_scale": batch_scale, "batch": step.batch,
           "input": list(step.x.shape[1:]),
           "precision": "bf16" if step.dtype == torch.bfloat16 else ("tf32" if variant == "monai-tf32" else "fp32"),
           "params_M": round(sum(p.numel() for p in step.model.parameters()) / 1e6, 2),
           "s_per_step": sec, "block_s_per_step": times, "samples_per_s": step.batch / sec,
           "gflop_per_step": flops / 1e9, "model_tflops": flops / sec / 1e12, "setup_s": round(setup_s, 1),
           "peak_mem_GiB": (torch.cuda.max_memory_allocated() - base) / 2**30 if cuda else None,
           "loss_after_warmup": first, "loss_last": float(step.loss.detach()),
           "finite": bool(math.isfinite(float(step.loss.detach())))}
    return row


def markdown(rows: list[dict], peak: float, sheet: float | None) -> str:
    head = ("| experiment | variant | batch x input | prec. | s/step | samples/s | x eager | x MONAI fp32 | TFLOP/s | "
            f"MFU (measured {peak:.0f}) | MFU (datasheet {sheet or 'n/a'}) | peak GiB |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['experiment']} | {r['variant']} | {r['error'][:100]} |" + " |" * 9)
            continue
        mfu2 = f"{100 * r['model_tflops'] / sheet:.1f} %" if sheet else "n/a"
        mem = f"{r['peak_mem_GiB']:.1f}" if r["peak_mem_GiB"] is not None else "n/a"
        fmt = lambda v: f"{v:.2f}" if v else "—"  # noqa: E731
        lines.append(
            f"| {r['experiment']} | {r['variant']} | {r['batch']} x {r['input']} | {r['precision']} | "
            f"{r['s_per_step']:.4f} | {r['samples_per_s']:.1f} | {fmt(r.get('x_eager'))} | {fmt(r.get('x_monai_fp32'))} | "
            f"{r['model_tflops']:.1f} | {100 * r['model_tflops'] / peak:.1f} % | {mfu2} | {mem} |")
    return "\n".join(lines)


def plan(experiments: list[str], cuda: bool, compile_all: bool) -> list[tuple[str, str, int]]:
    """(experiment, variant, batch scale) in the order run: the issue's 3D MAE targets first (eager, graph, MONAI,
    then graph at 2x / 4x the batch: MFU against batch size), every other config eager and as a graph, the MONAI
    2D MAE, and the slow torch.compile rows last, so a spent time budget drops the least needed."""
    graph = ["graph"] if cuda else []
    targets = [e for e in MAE_TARGETS if e in experiments]
    todo = [(e, v, 1) for e in targets for v in ["eager", *graph, "monai-fp32", *(["monai-tf32"] if cuda else [])]]
    todo += [(e, "graph", s) for e in targets if cuda for s in (2, 4)]
    todo += [(e, v, 1) for e in experiments if e not in MAE_TARGETS for v in ["eager", *graph]]
    todo += [("pretrain_cxr14", v, 1) for v in ["monai-fp32", "monai-tf32"] if "pretrain_cxr14" in experiments and cuda]
    todo += [(e, v, 1) for e in targets for v in [*(["compile+graph"] if cuda else []), "compile"]]
    if compile_all:
        todo += [(e, "compile", 1) for e in experiments if e not in MAE_TARGETS]
    return todo


def add_ratios(rows: list[dict]) -> None:
    for r in rows:
        if "error" in r:
            continue
        same = [o for o in rows if "error" not in o and o["experiment"] == r["experiment"] and o["batch"] == r["batch"]]
        eager = next((o["s_per_step"] for o in same if o["variant"] == "eager"), None)
        monai = next((o["s_per_step"] for o in same if o["variant"] == "monai-fp32"), None)
        r["x_eager"] = eager / r["s_per_step"] if eager else None
        r["x_monai_fp32"] = monai / r["s_per_step"] if monai else None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--only", nargs="*", default=None, help="experiments (default: every paper config)")
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block (3 blocks)")
    ap.add_argument("--budget-s", type=float, default=None, help="start no new row after this many seconds")
    ap.add_argument("--compile-all", action="store_true", help="also torch.compile the non-MAE configs")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu_paper.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    t_start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False
    n = 8192 if cuda else 512
    peaks = {"bf16": matmul_tflops(device, torch.bfloat16, n, 10 if cuda else 1),
             "fp32": matmul_tflops(device, torch.float32, n, 10 if cuda else 2)}
    name = torch.cuda.get_device_name(0) if cuda else hardware_summary()
    sheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)
    print(f"{name}: matmul {n}^3 bf16 {peaks['bf16']:.1f} TFLOP/s, fp32 {peaks['fp32']:.1f}; datasheet bf16 {sheet}",
          flush=True)
    report = {"device": hardware_summary(), "gpu": name, "profile": args.profile, "meta": run_metadata(),
              "matmul_peak_tflops": peaks, "matmul_peak_size": n, "datasheet_bf16_tflops": sheet,
              "steps_per_block": args.steps, "blocks": 3, "rows": []}
    rows = report["rows"]
    for experiment, variant, scale in plan(args.only or EXPERIMENTS, cuda, args.compile_all):
        if args.budget_s and time.perf_counter() - t_start > args.budget_s:
            rows.append({"experiment": experiment, "variant": variant, "error": "skipped: time budget spent"})
            continue
        try:
            rows.append(measure(experiment, args.profile, variant, device, 3, args.steps, scale))
        except Exception as exc:  # record and go on: one failing variant must not hide the others
            rows.append({"experiment": experiment, "variant": variant, "batch_scale": scale,
                         "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]})
        gc.collect()  # Step's loss lambdas make it a reference cycle (and a failed row's traceback holds tensors):
        # collect it now, so its CUDA graph's private memory pool is freed before the next row
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        r = rows[-1]
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                          if k not in ("block_s_per_step", "input")}), flush=True)
        add_ratios(rows)
        report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        atomic_write_text(args.out, json.dumps(report, indent=1))
    report["markdown"] = markdown(rows, peaks["bf16"] if cuda else max(peaks.values()), sheet)
    atomic_write_text(args.out, json.dumps(report, indent=1))
    if cuda and args.profile == "paper":  # what the engine runs (eager) -> make plan's GPU-hours
        at_paper_batch = [r for r in rows if "error" not in r and r["batch_scale"] == 1]
        eager = [r for r in at_paper_batch if r["variant"] == "eager"]
        steps = {r["experiment"]: round(r["s_per_step"], 4) for r in eager}
        graph = {r["experiment"]: round(r["s_per_step"], 4) for r in at_paper_batch if r["variant"] == "graph"}
        atomic_write_text(args.out.parent / "paper_steps.json", json.dumps(
            {"device": hardware_summary(), "profile": "paper", "source": "benchmarks/gpu_paper.py (eager rows)",
             "meta": report["meta"], "steps": steps, "steps_cuda_graph": graph, "rows": eager}, indent=2))
    print(f"\n{report['markdown']}\n\nwrote {args.out} in {report['elapsed_s']} s")
    return report


if __name__ == "__main__":
    main()
