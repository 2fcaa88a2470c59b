"""fp32 against bf16 for every model a profile trains, on this CPU: the measurement behind `train.precision: auto`.

For each experiment config of the profile (default `tiny`, the models `make reproduce` trains) it builds the model
and a synthetic batch of the config's size (benchmarks/paper_smoke.py's `batch_for` / `loss_of`), and times the
engine's training step - forward + loss + backward + AdamW as `selfmae.train` builds it (foreach for fp32, fused for
bf16) - in fp32 and under bf16 autocast, the two alternating step by step. It reports parameters, median ms per
step and the bf16 speed-up. A size sweep of our MAE (benchmarks/mae_throughput.py's step, widths 64-768) fills the
gap between the tiny models (0.2-4 M parameters) and ViT-B; `selfmae.train.device.AUTO_CPU_BF16_MIN_PARAMS` is set
from these rows. Meaningful only on a CPU with native bf16 (elsewhere bf16 is emulated
and `auto` never picks it); it refuses to run elsewhere unless --force.

    python benchmarks/precision_cpu.py                      # writes results/precision_cpu_<kind>.json
    python benchmarks/precision_cpu.py --profile paper --one-sample --no-sweep --warmup 1 --iters 3 \
        --only pretrain_btcv finetune_btcv finetune_nnformer_btcv finetune_swinunetr_btcv \
        --out benchmarks/results/precision_cpu_<kind>_paper.json   # the paper's 3D models, one 96^3 crop
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import mae_throughput as mt  # noqa: E402
from paper_smoke import batch_for, loss_of  # noqa: E402

from selfmae.config import load_config  # noqa: E402
from selfmae.models import build_model  # noqa: E402
from selfmae.train.device import count_params  # noqa: E402
from selfmae.train.schedule import build_optimizer  # noqa: E402

EXPERIMENTS = ["pretrain_cxr14", "finetune_cxr14", "pretrain_btcv", "finetune_btcv", "pretrain_brats",
               "finetune_brats", "pretrain_nnformer_btcv", "finetune_nnformer_btcv", "finetune_swinunetr_btcv",
               "pretrain_medmnist", "finetune_medmnist", "pretrain_medmnist3d", "finetune_medmnist3d"]


class Step:
    """One config's model, optimizer and batch in one precision; `run()` is one training step."""

    def __init__(self, cfg: dict, bf16: bool) -> None:
        torch.manual_seed(0)
        self.cfg, self.bf16 = cfg, bf16
        self.model = build_model(dict(cfg["model"], pretrained=None), cfg["data"])
        self.opt = build_optimizer(self.model, cfg["train"], fused=bf16)
        self.x, self.y = batch_for(cfg, torch.device("cpu"))
        self.times: list[float] = []

    def run(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = loss_of(self.cfg, self.model, self.x, self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def timed(self) -> None:
        t = time.perf_counter()
        self.run()
        self.times.append(time.perf_counter() - t)


def row(name: str, model_name: str, timed: dict) -> dict:
    """One result row from the fp32 and bf16 runs in `timed` (each with `.model`, `.x` and step `.times` in s)."""
    ms = {p: 1e3 * statistics.median(t.times) for p, t in timed.items()}
    return {"experiment": name, "model": model_name, "params": count_params(timed["fp32"].model),
            "batch": list(timed["fp32"].x.shape), "fp32_ms": ms["fp32"], "bf16_ms": ms["bf16"],
            "bf16_speedup": ms["fp32"] / ms["bf16"]}


ONE_SAMPLE = {"train.batch_size": 1, "data.num_samples": 1}   # --one-sample: the paper's sizes within a CPU's reach


def measure(experiment: str, profile: str, warmup: int, iters: int, one_sample: bool = False) -> dict:
    cfg = load_config(experiment, profile, ONE_SAMPLE if one_sample else None)
    if cfg["model"].get("num_classes", 0) is None:   # MedMNIST3D: from the file; AdrenalMNIST3D has one label
        cfg = dict(cfg, model=dict(cfg["model"], num_classes=1))
    steps = {"fp32": Step(cfg, False), "bf16": Step(cfg, True)}
    for _ in range(warmup):
        for s in steps.values():
            s.run()
    for _ in range(iters):
        for s in steps.values():
            s.timed()
    return row(experiment, cfg["model"]["name"], steps)


SWEEP = {  # name: benchmarks/mae_throughput.py configuration (dims, img, patch, encoder, decoder, batch)
    "mae_w64_d4_64px": (2, 64, 8, (64, 4, 4), (32, 2, 4), 32),
    "mae_w128_d6_64px": (2, 64, 8, (128, 6, 4), (64, 2, 4), 32),
    "mae_w192_d12_224px": (2, 224, 16, (192, 12, 3), (128, 4, 4), 16),
    "mae_w384_d12_224px": (2, 224, 16, (384, 12, 6), (256, 4, 8), 8),
    "mae_w512_d12_96vox": (3, 96, 16, (512, 12, 8), (256, 4, 8), 2),
    "mae_w768_d12_224px": mt.CONFIGS["vitb_2d"],
}


def sweep_row(name: str, cfg: tuple, warmup: int, iters: int) -> dict:
    """Our MAE at one size, fp32 against bf16, as benchmarks/mae_throughput.py times it."""
    variants = {p: mt.Variant("ours", p, cfg, "cpu", False) for p in ("fp32", "bf16")}
    for v in variants.values():
        v.prepare(warmup)
    no_memory = mt.RssSampler(enabled=False)
    for _ in range(iters):
        for v in variants.values():
            v.timed_step(no_memory)
    return row(name, "mae", variants)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-sweep", action="store_true", help="skip the MAE size sweep")
    ap.add_argument("--one-sample", action="store_true",
                    help="batch 1, one crop per volume (e.g. --profile paper: the paper's models and crops on a CPU)")
    ap.add_argument("--force", action="store_true", help="run even where bf16 is emulated (slow, meaningless)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    box = mt.cpu_machine(args.threads)
    if not box["cpu_native_bf16"] and not args.force:
        ap.error("this CPU has no native bf16: `auto` trains in fp32 here whatever the size (--force to time it)")
    rows = []
    table = ["| experiment | model | parameters (M) | input | fp32 ms/step | bf16 ms/step | bf16 speed-up |",
             "|---|---|---:|---|---:|---:|---:|"]
    for name in args.only or EXPERIMENTS:
        r = measure(name, args.profile, args.warmup, args.iters, args.one_sample)
        rows.append(r)
        table.append(f"| {name} | {r['model']} | {r['params'] / 1e6:.2f} | {'x'.join(map(str, r['batch']))} | "
                     f"{r['fp32_ms']:.1f} | {r['bf16_ms']:.1f} | {r['bf16_speedup']:.2f}x |")
        print(table[-1], flush=True)
    if not args.no_sweep:
        table += ["", "| MAE size sweep | parameters (M) | input | fp32 ms/step | bf16 ms/step | bf16 speed-up |",
                  "|---|---:|---|---:|---:|---:|"]
        for name, cfg in SWEEP.items():
            r = sweep_row(name, cfg, args.warmup, args.iters)
            rows.append(r)
            table.append(f"| {name} | {r['params'] / 1e6:.2f} | {'x'.join(map(str, r['batch']))} | "
                         f"{r['fp32_ms']:.1f} | {r['bf16_ms']:.1f} | {r['bf16_speedup']:.2f}x |")
            print(table[-1], flush=True)
    report = {"machine": box,
              "torch": torch.__version__, "profile": args.profile, "warmup": args.warmup, "iters": args.iters,
              "overrides": ONE_SAMPLE if args.one_sample else {},
              "note": "median wall ms of one training step (forward, loss, backward, AdamW), fp32 and bf16 alternating",
              "results": rows, "markdown": "\n".join(table)}
    out = Path(args.out or HERE / "results" / f"precision_cpu_{box['kind']}.json")
    mt.atomic_write_text(out, json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
