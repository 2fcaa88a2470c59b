"""Studies of many runs: fine-tuning methods x seeds side by side (`finetune_study`, `finetune_many`, the paper's
three starting points `init_methods`) and the mask-ratio x pre-training-length ablation (`ablation_study`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from selfmae.config import load_config
from selfmae.experiments.build import build_data, label_subset
from selfmae.experiments.stages import run_finetune, run_pretrain, stored_summary
from selfmae.parallel import run_many


def init_methods(mae_ckpt: str | Path, imagenet_weights: str | Path | None = "") -> dict[str, dict]:
    """The paper's three starting points as `finetune_study` methods: scratch, ImageNet (only with a local weights
    file; when none is given, a `skip` reason, since nothing is downloaded) and the MAE encoder at `mae_ckpt`.

    Raises FileNotFoundError when `imagenet_weights` names a file that does not exist (a typo must not turn the
    ImageNet rows into "not run")."""
    if imagenet_weights and not Path(imagenet_weights).expanduser().is_file():
        raise FileNotFoundError(f"imagenet_weights={str(imagenet_weights)!r}: no such file (give a local timm-style "
                                "ViT-B/16 .pth, or leave it empty to skip the ImageNet rows)")
    imagenet = ({"model.init": "imagenet", "model.pretrained": str(Path(imagenet_weights).expanduser())}
                if imagenet_weights else {"skip": "no ImageNet weights file given (imagenet_weights='')"})
    return {"scratch": {}, "imagenet": imagenet, "mae": {"model.init": "mae", "model.pretrained": str(mae_ckpt)}}


def finetune_study(experiment: str, profile: str, methods: Mapping[str, Mapping[str, Any]], seeds: Sequence[int],
                   out_dir: str | Path, data_dir: str | None = None, overrides: Mapping[str, Any] | None = None,
                   datasets: Mapping | None = None) -> dict[str, list[dict]]:
    """Fine-tune every method (a dict of config overrides, e.g. {"model.init": "mae", ...}) for every seed.

    Datasets are built once and shared (or given, when a caller runs several studies on the same data); on a
    multi-core CPU the runs go side by side (`selfmae.parallel`). A method whose overrides hold `skip` (a
    reason) is not run; one whose overrides hold `seeds` (a list) runs those seeds instead of `seeds`. Returns
    method -> list of summaries (one per seed); runs land in out_dir/<method>/seed<N>.
    """
    base = dict(overrides or {})
    if data_dir:
        base["data.data_dir"] = data_dir
    runs, names = [], []
    for method, method_overrides in methods.items():
        method_overrides = dict(method_overrides)
        reason = method_overrides.pop("skip", None)
        if reason:
            print(f"{method}: skipped — {reason}")
            continue
        for seed in method_overrides.pop("seeds", seeds):
            runs.append((load_config(experiment, profile, {**base, **method_overrides, "train.seed": seed}),
                         Path(out_dir) / method / f"seed{seed}"))
            names.append((method, seed))
    summaries = finetune_many(runs, datasets, label=lambda i: f"{names[i][0]} seed {names[i][1]}")
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for (method, _), summary in zip(names, summaries):
        results[method].append(summary)
    return results


def label_fraction_overrides(cfg: Mapping, fraction: float) -> dict[str, Any]:
    """Overrides that fine-tune `cfg` on `fraction` of its labelled training cases for as many optimiser steps (and
    warm-up steps) as `cfg` trains on all of them, so that a label-efficiency curve measures labels, not training
    length (nnU-Net and nnFormer count training in fixed-size epochs of iterations for the same reason).

    An epoch over a subset of n cases is ceil(n / batch) steps (`selfmae.train.optimizer_steps_per_epoch`; the
    subset is `label_subset`'s, at least one case), so its epochs are the full run's steps over that, rounded to
    whole epochs: e.g. BTCV tiny, 18 cases at batch 2 for 240 epochs = 2,160 steps -> 50 % (9 cases, 5 steps per
    epoch) 432 epochs, 25 % (4 cases) 1,080, 10 % (2 cases) 2,160 — 2,160 steps each. (Multiplying the epochs by
    1 / fraction instead gives 2,400 / 1,920 / 2,400 steps.) Validation runs once, at the end. Reads only the split
    lists (no images); ValueError for a fraction outside (0, 1] or an empty training split.
    """
    from selfmae.train import optimizer_steps_per_epoch

    train_cfg = cfg["train"]
    listing = dict(cfg, data=dict(cfg["data"], cache=False, label_fraction=1.0))
    n_all = len(build_data(listing, check=False)["train"])
    n_subset = len(label_subset(range(n_all), fraction, cfg["data"].get("split_seed", 0)))
    full, subset = (optimizer_steps_per_epoch(n, train_cfg) for n in (n_all, n_subset))
    epochs = max(1, round(train_cfg["epochs"] * full / subset))
    return {"data.label_fraction": fraction, "train.epochs": epochs, "train.val_every": epochs,
            "train.warmup_epochs": round(train_cfg["warmup_epochs"] * full / subset)}


def finetune_many(runs: Sequence[tuple[Mapping, Path]], datasets: Mapping | None = None,
                  label: Callable[[int], str] = str) -> list[dict]:
    """run_finetune for each (config, run dir), side by side where the CPU allows; finished runs are read back.

    All runs must share one dataset config (built once here, if not given and any run is unfinished); a progress
    line `label(i): metrics` is printed per run, in order.
    """
    if datasets is None and any(stored_summary(cfg, d) is None for cfg, d in runs):
        datasets = build_data(runs[0][0])
    return run_many(run_finetune, runs, datasets, on_done=lambda i, s: print(f"{label(i)}: {_headline(s)}"))


def _headline(summary: Mapping) -> str:
    keys = [k for k in ("mAUC", "dice", "hd95") if k in summary]
    return ", ".join(f"{k}={summary[k]:.4f}" for k in keys)


def ablation_study(dataset: str, profile: str, grid: Sequence[tuple[float, int]], seeds: Sequence[int],
                   out_dir: str | Path, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                   reuse: Mapping[tuple[float, int], tuple[Path, Path]] | None = None) -> dict:
    """Table 3 (lower): for each (mask ratio, paper pre-training epochs), MAE pre-train then fine-tune per seed.

    Our pre-training length is the profile's epochs scaled by paper_epochs / the paper's base length, so the
    tiny profile keeps the paper's ratios (e.g. 2x and 4x longer). `overrides` holds the notebook's overrides for
    "pretrain" and "finetune"; `reuse` maps a grid point to (pre-train run dir, fine-tune study dir) already run by
    notebooks 03/04 and 06/07 with the same settings. Returns (ratio, epochs) -> list of fine-tune summaries.
    Pre-training runs land in out_dir/mask<r>_ep<e>/pretrain; fine-tuning in .../mae/seed<N>.
    """
    overrides = overrides or {}
    pre_name, ft_name = f"pretrain_{dataset}", f"finetune_{dataset}"
    paper_base = load_config(pre_name, "paper")["train"]["epochs"]
    base_cfg = load_config(pre_name, profile, overrides.get("pretrain"))
    base = base_cfg["train"]
    dirs, pretrains = {}, []
    for ratio, paper_epochs in grid:
        point = (ratio, paper_epochs)
        if reuse and point in reuse:
            dirs[point] = reuse[point]
            continue
        pre_dir = Path(out_dir) / f"mask{ratio:g}_ep{paper_epochs}" / "pretrain"
        dirs[point] = (pre_dir, pre_dir.parent)
        scale = paper_epochs / paper_base
        pretrains.append((load_config(pre_name, profile, {
            **(overrides.get("pretrain") or {}), "model.mask_ratio": ratio,
            "train.epochs": round(base["epochs"] * scale),
            "train.warmup_epochs": round(base["warmup_epochs"] * scale)}), pre_dir))
    # every grid point trains on the same data (mask ratio and length don't touch it): check and cache it once
    unfinished = any(not (d / "done.json").exists() for _, d in pretrains)
    pretrains.sort(key=lambda run: -run[0]["train"]["epochs"])  # longest first: side by side, they end together
    run_many(run_pretrain, pretrains, build_data(base_cfg) if unfinished else None)
    runs, points = [], []
    for point, (pre_dir, ft_dir) in dirs.items():
        mae = {"model.init": "mae", "model.pretrained": str(pre_dir / "last.pt")}
        for seed in seeds:
            runs.append((load_config(ft_name, profile, {**(overrides.get("finetune") or {}), **mae,
                                                          "train.seed": seed}), ft_dir / "mae" / f"seed{seed}"))
            points.append(point)
    summaries = finetune_many(runs, label=lambda i: f"{dataset} mask {points[i][0]:g}, {points[i][1]} paper "
                                                    f"epochs, seed {runs[i][0]['train']['seed']}")
    results: dict = {point: [] for point in dirs}
    for point, summary in zip(points, summaries):
        results[point].append(summary)
    return results


def ablation_epochs(dataset: str, profile: str, grid: Sequence[tuple[float, int]],
                    overrides: Mapping[str, Any] | None = None) -> dict[int, int]:
    """Paper pre-training epochs -> the epochs this profile ran for that grid point (for the table)."""
    paper_base = load_config(f"pretrain_{dataset}", "paper")["train"]["epochs"]
    base = load_config(f"pretrain_{dataset}", profile, overrides)["train"]["epochs"]
    return {e: round(base * e / paper_base) for _, e in grid}

