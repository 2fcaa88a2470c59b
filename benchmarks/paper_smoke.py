"""Paper-scale smoke test: every `paper` config builds, trains a few steps at full size, and how fast/big it is.

For each experiment config this builds the model of its `paper` profile, feeds synthetic batches of the paper's
input size (batch = train.batch_size x data.num_samples crops for 3D), and times forward + backward + AdamW steps
under the config's precision. It writes benchmarks/results/steps_<profile>_<device>.json and prints a Markdown
table (seconds per step, samples/s, peak memory). The step times `make plan` turns into GPU-hours
(results/paper_steps.json) come from benchmarks/gpu_paper.py alone, and only from a paper-profile run on a GPU, so a
CPU check of this script can never replace them.

    python benchmarks/paper_smoke.py --device cuda            # on a GPU (benchmarks/gpu_paper.py does more: graphs, MFU)
    python benchmarks/paper_smoke.py --device cpu --profile tiny --steps 3   # a CPU check of the script itself
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from selfmae.config import load_config
from selfmae.io import atomic_write_text
from selfmae.models import build_model
from selfmae.repro import hardware_summary, run_metadata
from selfmae.train import choose_precision

EXPERIMENTS = ["pretrain_cxr14", "finetune_cxr14", "pretrain_btcv", "finetune_btcv", "pretrain_brats",
               "finetune_brats", "pretrain_nnformer_btcv", "finetune_nnformer_btcv", "finetune_swinunetr_btcv"]


def batch_for(cfg: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    data, train = cfg["data"], cfg["train"]
    if data["spatial_dims"] == 2:
        n, size = train["batch_size"], [data["crop"]] * 2
    else:
        n, size = train["batch_size"] * data.get("num_samples", 1), list(data["roi_size"])
    x = torch.randn(n, data["in_channels"], *size, device=device)
    if cfg["task"] == "classify":
        return x, (torch.rand(n, cfg["model"]["num_classes"], device=device) > 0.8).float()
    if cfg["task"] == "segment":
        out = cfg["model"]["out_channels"]
        if data["dataset"] == "brats":
            return x, (torch.rand(n, out, *size, device=device) > 0.5).float()
        return x, torch.randint(0, out, (n, *size), device=device)
    return x, None


def loss_of(cfg: dict, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    if cfg["task"] == "pretrain":
        return model(x)[0]
    out = model(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    if cfg["task"] == "classify":
        return F.binary_cross_entropy_with_logits(out.float(), y)
    if y.dtype == torch.long:
        return F.cross_entropy(out.float(), y)
    return F.binary_cross_entropy_with_logits(out.float(), y)


def measure(experiment: str, profile: str, device: torch.device, steps: int, compile_model: bool) -> dict:
    cfg = load_config(experiment, profile)
    model = build_model(dict(cfg["model"], pretrained=None), cfg["data"]).to(device)
    if compile_model:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["train"]["lr"], betas=tuple(cfg["train"]["betas"]))
    x, y = batch_for(cfg, device)
    dtype = choose_precision(cfg["train"]["precision"], device, model).dtype
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_of(cfg, model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # the first steps include allocator warm-up / compilation
            times.append(time.perf_counter() - t0)
    sec = sorted(times)[len(times) // 2]
    return {"experiment": experiment, "batch": int(x.shape[0]), "input": list(x.shape[1:]),
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "s_per_step": round(sec, 4), "samples_per_s": round(x.shape[0] / sec, 2),
            "peak_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
            "loss": round(float(loss.detach()), 4), "finite": bool(torch.isfinite(loss.detach()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", type=Path, default=None, help="default: results/steps_<profile>_<device>.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    for experiment in args.only or EXPERIMENTS:
        try:
            rows.append(measure(experiment, args.profile, device, args.steps, args.compile))
        except Exception as exc:  # record and go on: one failing config must not hide the others
            rows.append({"experiment": experiment, "error": f"{type(exc).__name__}: {exc}"[:300]})
        print(json.dumps(rows[-1]), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = {"device": hardware_summary(), "profile": args.profile, "compile": args.compile, "meta": run_metadata(),
              "steps": {r["experiment"]: r["s_per_step"] for r in rows if "s_per_step" in r}, "rows": rows}
    results = Path(__file__).parent / "results"
    out = args.out or results / f"steps_{args.profile}_{device.type}.json"
    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"\n| experiment | batch × input | params (M) | s/step | samples/s | peak GiB |\n|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['experiment']} | error: {r['error'][:80]} | | | | |")
        else:
            print(f"| {r['experiment']} | {r['batch']} × {r['input']} | {r['params_M']} | {r['s_per_step']} | "
                  f"{r['samples_per_s']} | {r['peak_mem_GiB']} |")


if __name__ == "__main__":
    main()
