"""Throughput of each data pipeline (samples/s), with and without the in-memory cache, on tiny phantoms.

    python benchmarks/data_pipeline.py [--epochs 2] [--data-root runs/benchmarks/phantoms]

Writes benchmarks/results/data_pipeline.json and prints a Markdown table. A "sample" is one dataset item
(an image, or one volume giving num_samples crops). The cached run pays its decoding once (`cache_build_s`);
every epoch after that only runs the random part, which is the point of caching 3D training data.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfmae.config import load_config  # noqa: E402
from selfmae.data import build_datasets, prepare_synthetic  # noqa: E402
from selfmae.io import atomic_write_text  # noqa: E402

# (name, dataset, task, data_cfg extras): tiny-profile numbers over the paper profile's data section (its code paths)
PIPELINES = (
    ("cxr14 classify", "cxr14", "classify", {"resize": 128, "crop": 112, "val_fraction": 0.1}),
    ("btcv pretrain", "btcv", "pretrain", {"spacing": [6.0, 6.0, 8.0], "roi_size": [32, 32, 32], "num_samples": 4}),
    ("btcv segment", "btcv", "segment", {"spacing": [6.0, 6.0, 8.0], "roi_size": [32, 32, 32], "num_samples": 4,
                                         "organs": 8}),
    ("brats segment", "brats", "segment", {"roi_size": [32, 32, 32], "num_samples": 1, "spacing": None}),
)


def _epochs(ds, epochs: int) -> tuple[int, float]:
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for i in range(len(ds)):
            ds[i]
            n += 1
    return n, time.perf_counter() - start


def bench(name: str, dataset: str, task: str, extra: dict, data_dir: Path, epochs: int) -> dict:
    paper = load_config(f"{'pretrain' if task == 'pretrain' else 'finetune'}_{dataset}", "paper")["data"]
    cfg = {**paper, "data_dir": str(data_dir), "num_workers": 0, **extra}
    plain = build_datasets({**cfg, "cache": False}, task)["train"]
    n, t_plain = _epochs(plain, epochs)
    start = time.perf_counter()
    cached = build_datasets({**cfg, "cache": True}, task)["train"]
    build = time.perf_counter() - start
    _, t_cached = _epochs(cached, epochs)
    return {"pipeline": name, "items": len(plain), "epochs": epochs,
            "uncached_samples_per_s": n / t_plain, "cached_samples_per_s": n / t_cached,
            "cache_build_s": build, "speedup": t_plain / t_cached}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data-root", default=str(ROOT / "runs" / "benchmarks" / "phantoms"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_pipeline.json"))
    args = ap.parse_args(argv)

    roots, gen_s = {}, {}
    for dataset in ("cxr14", "btcv", "brats"):
        start = time.perf_counter()
        roots[dataset] = prepare_synthetic(dataset, Path(args.data_root) / dataset, "tiny", seed=0)
        gen_s[dataset] = time.perf_counter() - start  # ~0 when the phantom was already there
    rows = [bench(name, ds, task, extra, roots[ds], args.epochs) for name, ds, task, extra in PIPELINES]

    result = {"benchmark": "data_pipeline", "profile": "tiny", "python": platform.python_version(),
              "machine": platform.machine(), "phantom_generation_s": gen_s, "rows": rows}
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print("| pipeline | items | uncached samples/s | cached samples/s | cache build s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pipeline']} | {r['items']} | {r['uncached_samples_per_s']:.1f} | "
              f"{r['cached_samples_per_s']:.1f} | {r['cache_build_s']:.2f} | {r['speedup']:.1f}x |")
    print(f"\nphantom generation (s): {', '.join(f'{k} {v:.1f}' for k, v in gen_s.items())}; wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
