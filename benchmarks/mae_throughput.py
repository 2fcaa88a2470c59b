"""MAE pre-training throughput: selfmae's MAE against MONAI's MaskedAutoEncoderViT, same process, same sizes.

One training step = forward + MSE loss on the hidden patches (norm_pix targets for both) + backward + AdamW step
(foreach, as the engine trains fp32; ours under bf16 uses the fused AdamW, as the engine trains bf16).
For each configuration it times MONAI in fp32, ours in fp32 and ours under bf16 autocast (MONAI under bf16 is
tried too and its failure, if any, recorded), and reports images/s, the ratio to MONAI fp32, model GFLOP/s
(torch.utils.flop_counter on one step, each model's own count: MONAI embeds and encodes nothing less than ours
would, ours only the visible patches), the fraction of a matmul peak measured in the same run, and peak memory
(CUDA: max_memory_allocated; CPU: peak resident memory above the pre-step level, sampled every 2 ms).

The JSON records the machine (`machine`): CPU model, torch's CPU capability, whether the CPU computes bf16
natively (selfmae.train.device.cpu_has_native_bf16), the x86 flags that decide it, threads, and the measured
1024^2 matmul peaks in fp32 and bf16. One file per machine kind: mae_throughput_cpu_<kind>.json with kind
`amx` (native bf16 with AMX tiles, e.g. a Xeon), `avx512bf16` (native bf16 without AMX, e.g. an AMD EPYC), `avx512`
or `avx2` (bf16 emulated), mae_throughput_cuda.json on a GPU (see `machine_kind`).

Ratios to MONAI fp32: `ratio_vs_monai` (ratio of the median step times) and `ratio_vs_monai_paired` (median of
the per-round ratios, steadier where the host's speed drifts; see `paired_ratio`).

On a CPU shared with other work, `--threads 1 --clock cpu` times each step by the CPU time of the timing thread
(time.thread_time) instead of the wall clock: other processes then slow neither model down, and the wall times are
kept beside it (`wall_step_s`).

    python benchmarks/mae_throughput.py --device cpu --quick
    python benchmarks/mae_throughput.py --device cpu --threads 1 --clock cpu
    python benchmarks/mae_throughput.py --device cuda --compile

Writes benchmarks/results/mae_throughput_<device>[_<kind>].json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from selfmae.io import atomic_write_text  # noqa: E402
from selfmae.models import MAE  # noqa: E402
from selfmae.models.vit import to_patches  # noqa: E402
from selfmae.repro import hardware_summary  # noqa: E402
from selfmae.train.device import cpu_has_native_bf16  # noqa: E402
from selfmae.train.schedule import adamw_implementation  # noqa: E402

CONFIGS = {  # name: (spatial_dims, img, patch, (width, depth, heads), (dec width, depth, heads), batch)
    "vitb_2d": (2, 224, 16, (768, 12, 12), (256, 8, 8), 8),
    "vitb_3d": (3, 96, 16, (768, 12, 12), (384, 8, 12), 2),
    "tiny_2d": (2, 64, 8, (64, 4, 4), (32, 2, 4), 32),
    "tiny_3d": (3, 32, 8, (64, 4, 4), (32, 2, 4), 8),
}
MASK_RATIO = 0.75

try:  # the CPU flash-attention kernel has no FLOP formula in torch.utils.flop_counter: give it the CUDA ones
    aten = torch.ops.aten

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(q, k, v)

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _cpu_sdpa_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, q, k, v)
except (AttributeError, RuntimeError):
    pass


def monai_mae(cfg: tuple) -> torch.nn.Module:
    from monai.networks.nets import MaskedAutoEncoderViT

    dims, img, patch, (d, depth, heads), (dd, ddepth, dheads), _ = cfg
    # MONAI's sin-cos needs width % 4 (2D) / % 6 (3D); where that fails (tiny widths) it gets learnable embeddings
    ok = lambda w: w % (2 * dims) == 0  # noqa: E731
    return MaskedAutoEncoderViT(
        in_channels=1, img_size=img, patch_size=patch, hidden_size=d, mlp_dim=4 * d, num_layers=depth, num_heads=heads,
        masking_ratio=MASK_RATIO, decoder_hidden_size=dd, decoder_mlp_dim=4 * dd, decoder_num_layers=ddepth,
        decoder_num_heads=dheads, pos_embed_type="sincos" if ok(d) else "learnable",
        decoder_pos_embed_type="sincos" if ok(dd) else "learnable", spatial_dims=dims, qkv_bias=True,
    )


def our_mae(cfg: tuple) -> MAE:
    dims, img, patch, (d, depth, heads), (dd, ddepth, dheads), _ = cfg
    return MAE(dims, 1, img, patch, d, depth, heads, decoder_embed_dim=dd, decoder_depth=ddepth,
               decoder_num_heads=dheads, mask_ratio=MASK_RATIO)


def monai_loss(model: torch.nn.Module, x: torch.Tensor, patch: int) -> torch.Tensor:
    """The same loss as ours (norm_pix MSE on hidden patches) on MONAI's (pred, mask)."""
    pred, mask = model(x)
    target = to_patches(x, (patch,) * (x.ndim - 2)).float()
    var, mean = torch.var_mean(target, dim=-1, keepdim=True)
    per_patch = (pred.float() - (target - mean) / (var + 1e-6).sqrt()).pow(2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


class RssSampler:
    """Peak resident set size above a baseline, sampled from /proc/self/statm in a thread (CPU runs)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.base = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def reset(self) -> None:
        self.peak = self.base = self.rss()

    def read_peak(self) -> int:
        return max(self.peak, self.rss()) - self.base

    def __enter__(self) -> "RssSampler":
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()
        self.peak = max(self.peak, self.rss())


def cpu_flags() -> dict[str, bool]:
    """The x86 flags that decide the fp32 and bf16 matmul speed, from /proc/cpuinfo (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return {f: f in have for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


def machine_kind(native_bf16: bool, flags: dict[str, bool], capability: str) -> str:
    """The CPU kind a result file is named after: 'amx' (native bf16 on AMX tiles), 'avx512bf16' (native bf16 on
    AVX512-BF16 alone), else torch's capability ('avx512', 'avx2', ...), where bf16 is emulated. AMX and
    AVX512-BF16 alone differ 1.6x in the bf16 matmul peak on the 2-core machines measured, so they are kept apart."""
    if native_bf16:
        return "amx" if flags.get("amx_bf16") or flags.get("amx_tile") else "avx512bf16"
    return capability.lower().replace(" ", "")


def machine(device: str, peaks: dict, n: int) -> dict:
    """What the numbers depend on: the processor, its capability and bf16 support, threads, matmul peaks."""
    native = cpu_has_native_bf16()
    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    return {
        "kind": "cuda" if device == "cuda" else machine_kind(native, flags, capability),
        "name": hardware_summary() if device == "cuda" else hardware_summary().removeprefix("CPU "),
        "cpu_capability": capability, "cpu_native_bf16": native, "cpu_flags": flags,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "matmul_peak_gflops": peaks, "matmul_peak_size": n,
        "platform": platform.platform(),
    }


def cpu_machine(threads: int | None = None) -> dict:
    """`machine` for the CPU benchmarks that measure no matmul peak, after setting torch's threads (when given)."""
    if threads:
        torch.set_num_threads(threads)
    return {k: v for k, v in machine("cpu", {}, 0).items() if k not in ("matmul_peak_gflops", "matmul_peak_size")}


def save_cpu_report(stem: str, box: dict, out: str | None, **fields) -> dict:
    """Write {machine, torch, **fields} as JSON to `out` or results/<stem>_<kind>.json, say where; returns it."""
    report = {"machine": box, "torch": torch.__version__, **fields}
    path = Path(out or Path(__file__).parent / "results" / f"{stem}_{box['kind']}.json")
    atomic_write_text(path, json.dumps(report, indent=1))
    print(f"\nwrote {path}")
    return report


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: torch.dtype, n: int, clock=time.perf_counter, min_s: float = 0.3) -> float:
    """Measured dense n x n matmul throughput (GFLOP/s), the reference for 'fraction of peak': the best of three
    rounds of at least `min_s` seconds each, after a warm-up (oneDNN sets up its AMX kernels on the first calls)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3 if min_s else 1):
        a @ b
    sync(device)
    best = 0.0
    for _ in range(3):
        iters, t = 0, clock()
        while iters == 0 or clock() - t < min_s:
            a @ b
            iters += 1
            sync(device)
        best = max(best, 2 * n**3 * iters / (clock() - t) / 1e9)
    return best


class Variant:
    """One (implementation, precision) at one configuration: model, optimizer, input and a `step()`."""

    def __init__(self, impl: str, precision: str, cfg: tuple, device: str, compile_: bool, clock: str = "wall") -> None:
        torch.manual_seed(0)
        dims, img, patch, *_, batch = cfg
        self.device, self.batch, self.times, self.wall, self.peak = device, batch, [], [], 0
        self.clock = time.thread_time if clock == "cpu" else time.perf_counter
        self.info: dict = {"impl": impl + ("+compile" if compile_ else ""), "precision": precision, "batch": batch}
        self.model = (monai_mae if impl == "monai" else our_mae)(cfg).to(device)
        # AdamW as the engine builds it (selfmae.train.schedule.build_optimizer): foreach for fp32 runs (MONAI's
        # too), fused for ours under bf16
        fused = impl == "ours" and precision == "bf16"
        self.info["adamw"] = "fused" if fused else "foreach"
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-4,
                                     **adamw_implementation(fused))
        self.x = torch.randn(batch, 1, *(img,) * dims, device=device)
        fwd = torch.compile(self.model) if compile_ else self.model
        loss = (lambda m: monai_loss(m, self.x, patch)) if impl == "monai" else (lambda m: m(self.x)[0])
        self.loss, self.eager_loss = (lambda: loss(fwd)), (lambda: loss(self.model))
        self.amp = lambda: torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(self, eager: bool = False) -> None:
        with self.amp():
            loss = self.eager_loss() if eager else self.loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def prepare(self, warmup: int) -> None:
        """Warm up (the first step also allocates AdamW state) and count the FLOPs of one steady-state step."""
        self.step()
        with FlopCounterMode(display=False) as counter:  # eager: the counter does not see compiled kernels
            self.step(eager=True)
        self.info["gflop_per_step"] = counter.get_total_flops() / 1e9
        for _ in range(max(warmup - 2, 0)):
            self.step()

    def timed_step(self, rss: "RssSampler") -> None:
        sync(self.device)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        rss.reset()
        t, w = self.clock(), time.perf_counter()
        self.step()
        sync(self.device)
        self.times.append(self.clock() - t)
        self.wall.append(time.perf_counter() - w)
        used = torch.cuda.max_memory_allocated() - base if self.device == "cuda" else rss.read_peak()
        self.peak = max(self.peak, used)

    def result(self) -> dict:
        sec = statistics.median(self.times)
        return {**self.info, "step_s": sec, "step_times": self.times, "wall_step_s": statistics.median(self.wall),
                "images_per_s": self.batch / sec,
                "gflops": self.info["gflop_per_step"] / sec, "peak_mem_mb": self.peak / 2**20}


def run_config(name: str, variants: list[tuple], device: str, warmup: int, iters: int, clock: str = "wall") -> list[dict]:
    """Time the variants of one configuration round-robin, step by step, so that a change in machine load
    (other processes on a shared CPU) hits all of them alike; each step's time and memory are its own."""
    live, results = [], []
    for impl, prec, comp in variants:
        try:
            v = Variant(impl, prec, CONFIGS[name], device, comp, clock)
            v.prepare(warmup)
            live.append(v)
        except Exception as e:  # MONAI under bf16 autocast, out of memory, ...
            results.append({"impl": impl, "precision": prec, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
    with RssSampler(enabled=device == "cpu") as rss:  # a polling thread would steal the GIL from CUDA launches
        for _ in range(iters):
            for v in live:
                v.timed_step(rss)
    results = [v.result() for v in live] + results
    del live
    if device == "cuda":
        torch.cuda.empty_cache()
    return [{"config": name, **r} for r in results]


def paired_ratio(reference: list[float], times: list[float]) -> float:
    """Median over rounds of reference step time / this step time. The variants run round-robin, so each round's
    two steps met the same machine state; on a shared host whose speed drifts by 10-20 % from round to round this
    pairing is steadier than the ratio of the two medians (`ratio_vs_monai`), which is reported beside it."""
    return statistics.median(a / b for a, b in zip(reference, times))


def markdown(results: list[dict], peaks: dict) -> str:
    rows = ["| config | model | precision | images/s | × MONAI fp32 | paired | GFLOP/step | GFLOP/s | % of matmul peak | "
            "peak mem (MiB) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            what = r["error"] if r["error"].startswith("skipped") else f"failed: {r['error']}"
            rows.append(f"| {r['config']} | {r['impl']} | {r['precision']} | {what[:90]} | | | | | | |")
            continue
        peak = max(peaks.values()) if r["precision"] == "bf16" else peaks["fp32"]  # CPUs may emulate bf16
        ratio = f"{r['ratio_vs_monai']:.2f}" if r.get("ratio_vs_monai") else "—"
        paired = f"{r['ratio_vs_monai_paired']:.2f}" if r.get("ratio_vs_monai_paired") else "—"
        rows.append(f"| {r['config']} | {r['impl']} | {r['precision']} | {r['images_per_s']:.2f} | {ratio} | {paired} | "
                    f"{r['gflop_per_step']:.1f} | {r['gflops']:.1f} | {100 * r['gflops'] / peak:.1f} | {r['peak_mem_mb']:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--iters", type=int, default=None, help="timed steps (default 10 on CUDA, 5 on CPU; 3 with --quick)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps, >= 2 (default 5 on CUDA, 2 on CPU)")
    ap.add_argument("--compile", action="store_true", help="also time ours under torch.compile (inductor)")
    ap.add_argument("--quick", action="store_true", help="3 timed iterations")
    ap.add_argument("--force-bf16", action="store_true", help="run ViT-B under bf16 even where bf16 matmuls are slow")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="time steps by the wall clock or by the timing thread's CPU time (CPU, --threads 1)")
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/results/mae_throughput_cuda.json / _cpu_<kind>.json)")
    args = ap.parse_args(argv)
    dev = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and (dev == "cuda" or torch.get_num_threads() != 1):
        ap.error("--clock cpu times one thread's work: use it with --device cpu --threads 1")
    cuda = dev == "cuda"
    iters = args.iters or (3 if args.quick else 10 if cuda else 5)
    warmup = max(args.warmup or (5 if cuda else 2), 2)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, for both models
    n = 8192 if cuda else 1024
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    peaks = {"fp32": matmul_peak(dev, torch.float32, n, clock),
             "bf16": matmul_peak(dev, torch.bfloat16, n, clock, min_s=0.3 if cuda or cpu_has_native_bf16() else 0.0)}
    slow_bf16 = peaks["bf16"] < 0.5 * peaks["fp32"]  # CPUs without AVX512-BF16/AMX emulate it
    load_before = os.getloadavg()
    results = []
    for name in args.configs:
        variants = [("monai", "fp32", False), ("ours", "fp32", False), ("ours", "bf16", False), ("monai", "bf16", False)]
        if args.compile:
            variants += [("ours", "fp32", True), ("ours", "bf16", True)]
        if slow_bf16 and name.startswith("vitb") and not args.force_bf16:
            variants = [v for v in variants if v[1] != "bf16"]
            results.append({"config": name, "impl": "ours", "precision": "bf16",
                            "error": f"skipped: bf16 matmul here runs at {peaks['bf16']:.1f} GFLOP/s (--force-bf16)"})
        rows = run_config(name, variants, dev, warmup, iters, args.clock)
        monai = next((r for r in rows if r["impl"] == "monai" and r["precision"] == "fp32" and "error" not in r), None)
        for r in rows:
            if "error" not in r:
                r["ratio_vs_monai"] = r["images_per_s"] / monai["images_per_s"] if monai else None
                r["ratio_vs_monai_paired"] = paired_ratio(monai["step_times"], r["step_times"]) if monai else None
                r["fraction_of_peak"] = r["gflops"] / (max(peaks.values()) if r["precision"] == "bf16" else peaks["fp32"])
            print(f"{name:8s} {r['impl']:14s} {r['precision']}: " + (r.get("error") or
                  f"{r['images_per_s']:.2f} img/s, {r['gflops']:.1f} GFLOP/s, x{r['ratio_vs_monai'] or 0:.2f} "
                  f"(paired x{r['ratio_vs_monai_paired'] or 0:.2f})"), flush=True)
        results += rows
    import monai

    box = machine(dev, peaks, n)
    report = {
        "device": box["name"], "machine": box,
        "torch": torch.__version__, "monai": monai.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "matmul_peak_gflops": peaks, "matmul_peak_size": n, "mask_ratio": MASK_RATIO, "iters": iters, "warmup": warmup,
        "clock": "thread CPU time" if args.clock == "cpu" else "wall", "results": results,
    }
    table = markdown(results, peaks)
    print(f"\n{box['name']} ({box['kind']}, native bf16: {box['cpu_native_bf16']}, {box['threads']} threads); "
          f"matmul peak {n}x{n}: fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s; "
          f"load average before/after {load_before[0]:.2f}/{report['loadavg_after'][0]:.2f} on {os.cpu_count()} CPUs\n")
    print(table)
    report["markdown"] = table
    out = Path(args.out or Path(__file__).parent / "results" / f"mae_throughput_{'cuda' if cuda else 'cpu_' + box['kind']}.json")
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
