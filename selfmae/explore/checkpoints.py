"""The explorer's models: discovering MAE checkpoints under a runs folder and describing them, choosing the one an
image opens on (`default_checkpoint`), and building the model (`build_explorer_model`: a checkpoint's MAE, or an
untrained one with fixed weights)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from selfmae.explore.sources import ExplorerError, LoadedImage

UNTRAINED = "untrained"

# where pre-training runs leave their checkpoints (relative to runs/<profile>), in order of preference: the runs on
# the default data, then those on other data (--data-dir / DATA_DIR), which go to data-<name>-<hash>/<experiment>/
_RUN_PATTERNS = ("pretrain_*/last.pt", "pretrain_*/*/last.pt", "ablation_*/mask*/pretrain/last.pt")
CHECKPOINT_PATTERNS = _RUN_PATTERNS + tuple(f"data-*/{pattern}" for pattern in _RUN_PATTERNS)
# the pre-training runs the explorer opens on, best first, by the image's dimensions (notebooks 02/12 for 2D, 03/04
# for 3D), after the one of the image's own dataset (`preferred_experiments`: a MedMNIST file's, notebooks 12/14)
PREFERRED_RUNS = {2: ("pretrain_cxr14", "pretrain_medmnist"), 3: ("pretrain_btcv", "pretrain_brats")}


def preferred_experiments(image: LoadedImage) -> tuple[str, ...]:
    """The pre-training configs whose MAE suits `image`, best first: its own dataset's (the registry's
    `pretrain_config`; a PneumoniaMNIST file -> pretrain_medmnist, a MedMNIST 3D file -> pretrain_medmnist3d), then
    PREFERRED_RUNS of its dimensions. The first is also the config an untrained model is built from."""
    from selfmae.data.registry import dataset_spec

    own = (dataset_spec(image.dataset).pretrain_config(image.spatial_dims),) if image.dataset else ()
    return tuple(dict.fromkeys(own + PREFERRED_RUNS[image.spatial_dims]))


@dataclass
class ModelEntry:
    model: torch.nn.Module
    cfg: dict
    label: str
    trained: bool = False
    description: str = ""   # which model, said in full: checkpoint, epochs, steps, loss, architecture
    short: str = ""         # the same in a few words: 'trained MAE: <checkpoint>' or 'untrained MAE: random weights'

    @property
    def spatial_dims(self) -> int:
        return int(self.cfg["data"]["spatial_dims"])


def _read_run_config(checkpoint: Path) -> dict:
    """The data/model sections of the run that wrote `checkpoint`: config.yaml beside it, else the checkpoint's own
    (`selfmae.train.run_config`)."""
    from selfmae.train import CheckpointError, run_config

    try:
        cfg = run_config(checkpoint)
    except CheckpointError as err:
        raise ExplorerError(str(err)) from None
    if "data" not in cfg or "model" not in cfg:
        raise ExplorerError(f"{checkpoint}: no config.yaml beside it and no data/model config inside it, so the "
                            "explorer cannot tell which model to build")
    if cfg["model"].get("name") != "mae":
        raise ExplorerError(f"{checkpoint}: a {cfg['model'].get('name')!r} checkpoint; the explorer needs an MAE "
                            "pre-training checkpoint (pretrain_*/last.pt)")
    return cfg


def discover_checkpoints(runs_dir: str | Path) -> dict[str, Path]:
    """MAE checkpoints under runs_dir (CHECKPOINT_PATTERNS: pretrain_*/last.pt, ablation_*/mask*/pretrain/last.pt,
    and the same under data-<name>-<hash>/ for runs on other data), labelled with their place under runs_dir, their
    dimensionality and pre-training mask ratio, e.g. 'pretrain_btcv · 3D · mask 12.5 %'."""
    runs_dir = Path(runs_dir)
    found: dict[str, Path] = {}
    for pattern in CHECKPOINT_PATTERNS:
        for path in sorted(runs_dir.glob(pattern)):
            label = str(path.parent.relative_to(runs_dir))
            try:
                cfg = _read_run_config(path)
                label += f" · {cfg['data']['spatial_dims']}D · mask {100 * float(cfg['model']['mask_ratio']):g} %"
            except (ExplorerError, OSError, KeyError, TypeError, ValueError):
                label += " · (no config)"
            found[label] = path
    return found


def checkpoint_dims(checkpoint: str | Path) -> int | None:
    """2 or 3 for a checkpoint with a readable config, None for 'untrained' or an unreadable one."""
    if str(checkpoint) == UNTRAINED:
        return None
    try:
        return int(_read_run_config(Path(checkpoint))["data"]["spatial_dims"])
    except (ExplorerError, OSError, KeyError, TypeError, ValueError):
        return None


def default_checkpoint(image: LoadedImage, runs_dir: str | Path) -> Path | str:
    """The checkpoint the explorer opens on for `image`: the last.pt of the pre-training notebook that fits it
    (`preferred_experiments`: PneumoniaMNIST -> pretrain_medmnist, other 2D -> pretrain_cxr14, MedMNIST 3D volumes ->
    pretrain_medmnist3d, other volumes -> pretrain_btcv, then pretrain_brats), else any other MAE checkpoint of the
    image's dimensions under runs_dir (e.g. an ablation run), else UNTRAINED: untrained only when nothing has run."""
    runs_dir = Path(runs_dir)
    preferred = [runs_dir / name / "last.pt" for name in preferred_experiments(image)]
    others = [p for p in discover_checkpoints(runs_dir).values() if p not in preferred] if runs_dir.is_dir() else []
    for path in preferred + others:
        if path.is_file() and checkpoint_dims(path) == image.spatial_dims:
            return path
    return UNTRAINED


def _shown_path(path: Path) -> str:
    """A checkpoint path as labels show it: relative to the repository when inside it (also through a linked
    runs/ folder), else as given."""
    from selfmae.provenance import repo_relative

    return repo_relative(path) or str(path)


def _trained_description(path: Path, state: Mapping, cfg: Mapping) -> str:
    """'trained MAE: runs/tiny/pretrain_cxr14/last.pt · 8 epochs, 48 optimiser steps · validation masked-patch
    loss 0.412 · MAE (ViT 4x64, patch 8; decoder 2x32), mask 75 %' (what the checkpoint itself records)."""
    from selfmae.models import architecture_name

    history = state.get("history") or []
    losses = [row["val_loss"] for row in history if isinstance(row, Mapping) and row.get("val_loss") is not None]
    parts = [f"trained MAE: {_shown_path(path)}",
             f"{len(history)} epochs, {int(state.get('step') or 0)} optimiser steps"]
    if losses:
        parts.append(f"validation masked-patch loss {float(losses[-1]):.3f}")
    parts.append(f"{architecture_name(cfg['model'])}, mask {100 * float(cfg['model']['mask_ratio']):g} %")
    return " · ".join(parts)


def build_explorer_model(checkpoint: str | Path, image: LoadedImage, profile: str = "tiny") -> ModelEntry:
    """An MAE in eval mode: weights from `checkpoint`, or UNTRAINED (a fixed-seed tiny MAE for the image's kind)."""
    from selfmae.config import load_config
    from selfmae.models import build_model

    if str(checkpoint) == UNTRAINED:
        experiment = preferred_experiments(image)[0]
        cfg = load_config(experiment, profile)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model(cfg["model"], cfg["data"])
        from selfmae.models import architecture_name

        return ModelEntry(model.eval(), cfg, f"untrained ({experiment}, {profile})", trained=False,
                          description=f"untrained: random weights, {architecture_name(cfg['model'])} "
                                      f"({experiment}, {profile})",
                          short="untrained MAE: random weights, no checkpoint")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ExplorerError(f"checkpoint not found: {path} — run the pre-training notebook that writes it "
                            "(02/03/04, 08, 12 or 14) or choose 'untrained'")
    from selfmae.experiments import load_trained
    from selfmae.train import CheckpointError

    cfg = _read_run_config(path)
    try:
        model = load_trained(cfg, path)
    except CheckpointError as err:
        raise ExplorerError(str(err)) from None
    run = path.parent.parent if path.parent.name == "pretrain" else path.parent   # ablation_*/mask*/pretrain
    return ModelEntry(model, cfg, f"{run.name} (MAE, mask {100 * float(cfg['model']['mask_ratio']):g} %)",
                      trained=True, description=_trained_description(path, model.checkpoint_info, cfg),
                      short=f"trained MAE: {_shown_path(path)}")

