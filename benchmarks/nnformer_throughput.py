"""NnFormerMAE (and NnFormer segmenter) training-step throughput: forward + backward + AdamW, fp32 and bf16.

The reference is MONAI's BasicUNet (a plain 3D U-Net; MONAI's SwinUNETR would need einops, which is not a project
dependency) doing the same masked-reconstruction step: the hidden cells of the input are zeroed and an MSE on those
voxels is minimised.  Its widths scale with embed_dim (MONAI's defaults at the paper's 96).  Ratios (ours / reference)
are what to compare across machines; absolute numbers depend on the card or CPU.

    python benchmarks/nnformer_throughput.py                       # tiny size on CPU
    python benchmarks/nnformer_throughput.py --device cuda         # paper size (64x128x128) on a GPU

Writes benchmarks/results/nnformer_throughput_<device>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet

from selfmae.config import load_config
from selfmae.io import atomic_write_text
from selfmae.models import nnformer_size
from selfmae.models.nnformer import NnFormer
from selfmae.models.nnformer_mae import NnFormerMAE

RESULTS = Path(__file__).parent / "results"


def sizes() -> dict[str, dict]:
    """The NnFormer constructor sizes benchmarked. `paper` is the paper profile of finetune_nnformer_btcv.yaml
    (nnFormer's Synapse setting: crop 64x128x128, patch 2x4x4, token grids 32/16/8/4 with windows 4/4/8/4, the last
    two stages attend globally); `official` the width of nnFormer's released Synapse model (embed 192, heads
    6/12/24/48, about 4x the parameters of `paper`); `tiny` runs a fwd+bwd in well under a second on CPU at batch 2
    (32^3 volumes, bottleneck grid 4x4x4)."""
    cfg = load_config("finetune_nnformer_btcv", "paper")
    paper = nnformer_size(cfg["model"], cfg["data"])
    return {"tiny": dict(img_size=(32, 32, 32), patch_size=(2, 2, 2), embed_dim=24, depths=(2, 2, 2),
                         num_heads=(1, 2, 4), window_sizes=(4, 4, 4)),
            "paper": paper,
            "official": dict(paper, embed_dim=2 * paper["embed_dim"],
                             num_heads=tuple(2 * h for h in paper["num_heads"]))}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


REFERENCE = "MONAI BasicUNet (reference)"


def _unet_reference(mae: NnFormerMAE, in_channels: int, size: dict) -> Callable[[torch.Tensor], torch.Tensor]:
    """BasicUNet reconstructing the hidden cells chosen by `mae.draw_mask` (loss on hidden voxels only)."""
    features = tuple(f * size["embed_dim"] // 96 for f in (32, 32, 64, 128, 256, 32))
    unet = BasicUNet(3, in_channels, in_channels, features=features)

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        mask = mae.draw_mask(x.shape[0], mae.mask_ratio, x.device)
        hidden = mae._upsample(mask, mae.cell).unsqueeze(1).to(x.dtype)
        err = (unet(x * (1 - hidden)).float() - x.float()).pow(2) * hidden
        return err.sum() / (hidden.sum() * x.shape[1])

    loss_fn.module = unet  # type: ignore[attr-defined]
    return loss_fn


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def time_steps(module: torch.nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               precision: str, steps: int, warmup: int) -> dict:
    """Mean seconds per optimiser step after `warmup` steps, volumes/s, and peak CUDA memory."""
    device = x.device
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        with autocast:
            loss = loss_fn(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    sec = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return dict(step_s=sec, volumes_per_s=x.shape[0] / sec, peak_mem_gib=peak, final_loss=loss.item())


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--size", choices=("official", "paper", "tiny"), help="default: tiny on cpu, paper on cuda")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5 cpu, 20 cuda)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--no-reference", action="store_true", help="skip the MONAI BasicUNet reference")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    size_name = args.size or ("paper" if device.type == "cuda" else "tiny")
    size = sizes()[size_name]
    steps = args.steps or (20 if device.type == "cuda" else 5)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.in_channels, *size["img_size"], device=device)

    rows = []
    for precision in args.precisions.split(","):
        mae = NnFormerMAE(args.in_channels, **size).to(device)
        seg = NnFormer(args.in_channels, 14, **size).to(device)
        labels = torch.randint(0, 14, (args.batch, *size["img_size"]), device=device)
        models = [("NnFormerMAE", mae, lambda v, m=mae: m(v)[0]),
                  ("NnFormer (segmenter, CE)", seg, lambda v, m=seg: F.cross_entropy(m(v).float(), labels))]
        if not args.no_reference:
            ref = _unet_reference(mae, args.in_channels, size)
            models.append((REFERENCE, ref.module.to(device), ref))
        timed = {name: time_steps(module, fn, x, precision, steps, args.warmup) for name, module, fn in models}
        base = timed.get(REFERENCE)
        for name, module, _ in models:
            r = timed[name]
            rows.append(dict(model=name, size=size_name, precision=precision, device=str(device), batch=args.batch,
                             params_m=sum(p.numel() for p in module.parameters()) / 1e6, **r,
                             speed_vs_reference=base and base["step_s"] / r["step_s"]))
        del models, mae, seg

    info = dict(torch=torch.__version__, python=platform.python_version(), threads=torch.get_num_threads(),
                device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
                img_size=size["img_size"], steps=steps, warmup=args.warmup)
    out = args.out or RESULTS / f"nnformer_throughput_{device.type}.json"
    atomic_write_text(out, json.dumps(dict(info=info, results=rows), indent=2))
    print(f"{info['device_name']}, torch {info['torch']}, img {size['img_size']}, batch {args.batch}\n")
    print("| model | size | precision | params (M) | step (s) | volumes/s | peak GiB | x reference |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.1f}"
        ratio = "-" if r["speed_vs_reference"] is None else f"{r['speed_vs_reference']:.2f}"
        print(f"| {r['model']} | {r['size']} | {r['precision']} | {r['params_m']:.1f} | {r['step_s']:.3f} | "
              f"{r['volumes_per_s']:.2f} | {peak} | {ratio} |")
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    main()
