"""The mask-ratio explorer: hide a fraction of an image's patches, let an MAE fill them in, and look.

Two layers, so tests and notebooks can drive everything without a browser:

    ex = MaskExplorer("sample:pneumoniamnist")      # the trained MAE of notebooks 02-04/12/14 if one has run
    ex.model_description                            # which model: checkpoint, epochs and steps, or "untrained: ..."
    ex.set_mask_ratio(0.25)
    view = ex.update()          # view.images: original / masked / recon / pasted / error (2D arrays)
    view.mse, view.n_hidden, view.n_patches
    fig = ex.plot_error_vs_ratio()                  # masked-patch MSE against the mask ratio, this image

    ui = explorer_widget(runs_dir="runs/tiny")      # ipywidgets controls over one MaskExplorer (JupyterLab)
    ui                                              # last expression of a cell: shows the controls

Images come from the shipped real samples (PneumoniaMNIST, a ChestX-ray14 radiograph, an abdominal CT, an
AdrenalMNIST3D volume), the synthetic phantoms, or a file of the user's (.png/.jpg/.tif, .nii/.nii.gz, .npy,
MedMNIST .npz 2D or 3D, or a folder of them). Each is prepared as the training pipelines prepare it: 2D images
resized (short side to `data.resize`) and centre-cropped to `data.crop`; volumes reoriented to RAS, resampled to
`data.spacing` and centre-cropped/padded to `data.roi_size`; MedMNIST 3D volumes resized to `data.resize` and
z-scored, as `pretrain_medmnist3d` trains on them. Models are MAE checkpoints found under a runs folder (their
`config.yaml` beside them says how to build them), or "untrained": a tiny MAE built from the profile's config with
fixed weights, to show what a model that has learnt nothing produces. The explorer opens on the trained MAE that
fits the image (`default_checkpoint`: notebook 02's or 12's for 2D images, 03's or 04's for volumes, 14's for
MedMNIST 3D volumes) and on "untrained" only when none has run; it says which (`MaskExplorer.model_description`,
the widget's model line).
"""
from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from selfmae.repro import REPO_ROOT

UNTRAINED = "untrained"
SAMPLE_DIR = REPO_ROOT / "tests" / "data"
# label shown in the widget -> source spec understood by `resolve_source`
SOURCES = {
    "PneumoniaMNIST test image (real, 2D)": "sample:pneumoniamnist",
    "ChestX-ray14 radiograph (real, 2D)": "sample:cxr14",
    "abdominal CT (real, 3D)": "sample:ct",
    "AdrenalMNIST3D test volume (real, 3D)": "sample:adrenalmnist3d",
    "chest X-ray phantom (2D)": "phantom:cxr14",
    "abdominal CT phantom (3D)": "phantom:btcv",
}
SAMPLES = {
    "pneumoniamnist": SAMPLE_DIR / "medmnist" / "pneumoniamnist_subset.npz",
    "cxr14": SAMPLE_DIR / "cxr14-sample" / "images",
    "ct": SAMPLE_DIR / "ct-sample" / "example_ct.nii.gz",
    "adrenalmnist3d": SAMPLE_DIR / "medmnist3d" / "adrenalmnist3d.npz",
}
# the config an "untrained" model is built from, by image kind (`image_kind`)
UNTRAINED_EXPERIMENT = {"medmnist": "pretrain_medmnist", "medmnist3d": "pretrain_medmnist3d", 2: "pretrain_cxr14",
                        3: "pretrain_btcv"}
# where pre-training runs leave their checkpoints (relative to runs/<profile>)
CHECKPOINT_PATTERNS = ("pretrain_*/last.pt", "pretrain_*/*/last.pt", "ablation_*/mask*/pretrain/last.pt")
# the pre-training runs the explorer opens on, best first, by image kind (notebooks 12/02 for 2D, 03/04 for 3D,
# 14 for MedMNIST 3D volumes)
PREFERRED_RUNS = {"medmnist": ("pretrain_medmnist", "pretrain_cxr14"), 2: ("pretrain_cxr14", "pretrain_medmnist"),
                  "medmnist3d": ("pretrain_medmnist3d", "pretrain_btcv", "pretrain_brats"),
                  3: ("pretrain_btcv", "pretrain_brats")}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_SUFFIXES = (".nii", ".nii.gz")
ARRAY_SUFFIXES = (".npy", ".npz")
PANELS = ("original", "masked", "recon", "pasted", "error")
PANEL_TITLES = {"original": "original", "masked": "masked input", "recon": "reconstruction",
                "pasted": "+ visible pasted", "error": "|error| (hidden)"}
DEFAULT_RATIOS = tuple(round(r / 100, 2) for r in range(5, 100, 5))
AXES = {"sagittal (x)": 0, "coronal (y)": 1, "axial (z)": 2}


class ExplorerError(ValueError):
    """Something the user can fix (a missing checkpoint, an unreadable file); the message says what and where."""


# ----------------------------------------------------------------------------------------------- images -------
@dataclass
class LoadedImage:
    """One image as read from disk: float32 (C, *spatial) in its own units, before any model preparation."""
    array: np.ndarray
    spatial_dims: int
    name: str
    spacing: tuple[float, ...] | None = None   # mm per voxel (volumes), None when unknown
    count: int = 1                             # images available at this source (for the index control)
    kind: str = "file"                         # "medmnist" for MedMNIST files (their own untrained config)
    uint8: bool = False


def image_kind(image: LoadedImage) -> str | int:
    """What decides an image's default model: "medmnist" / "medmnist3d" for MedMNIST files, else 2 or 3."""
    if image.kind == "medmnist":
        return "medmnist3d" if image.spatial_dims == 3 else "medmnist"
    return image.spatial_dims


def resolve_source(source: str | Path, profile: str = "tiny") -> Path:
    """'sample:<name>', 'phantom:<cxr14|btcv>' (generated once under data/synthetic) or a path -> a path."""
    text = str(source)
    if text.startswith("sample:"):
        name = text.split(":", 1)[1]
        if name not in SAMPLES:
            raise ExplorerError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
        return SAMPLES[name]
    if text.startswith("phantom:"):
        from selfmae.config import load_config
        from selfmae.experiments import resolve_data_dir

        from selfmae.data.registry import REGISTRY

        dataset = text.split(":", 1)[1]
        known = [name for name, spec in REGISTRY.items() if spec.synthetic and spec.image_folder]
        if dataset not in known:
            raise ExplorerError(f"unknown phantom {dataset!r}; known: {', '.join(known)}")
        root = resolve_data_dir(load_config(f"pretrain_{dataset}", profile, {"data.data_dir": None}))
        return root / REGISTRY[dataset].image_folder
    return Path(text).expanduser()


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _folder_files(folder: Path) -> list[Path]:
    known = IMAGE_SUFFIXES + VOLUME_SUFFIXES + (".npy",)
    return sorted(p for p in folder.iterdir() if p.is_file() and _suffix(p) in known)


def load_image(source: str | Path, index: int = 0, profile: str = "tiny") -> LoadedImage:
    """Read image number `index` of a source (a file, a folder of files, a MedMNIST .npz: its test split).

    Raises ExplorerError naming the file for a missing, unreadable or unsupported file.
    """
    path = resolve_source(source, profile)
    if not path.exists():
        raise ExplorerError(f"{path}: no such file or folder")
    count = 1
    if path.is_dir():
        files = _folder_files(path) or sorted(path.glob("*.npz"))[:1]   # a folder holding a MedMNIST file
        if not files:
            raise ExplorerError(f"{path}: no image files in this folder (looked for "
                                f"{', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES)}, .npy)")
        count, path = len(files), files[min(max(index, 0), len(files) - 1)]
    suffix = _suffix(path)
    try:
        if suffix == ".npz":
            return _load_medmnist(path, index)
        if suffix in IMAGE_SUFFIXES:
            from selfmae.data import load_png  # PIL under the hood: any greyscale/RGB(A)/16-bit image

            array = load_png(path)
            return LoadedImage(array.astype(np.float32), 2, path.name, count=count, uint8=array.dtype == np.uint8)
        if suffix in VOLUME_SUFFIXES:
            return _load_nifti(path, count)
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.ndim not in (2, 3):
                raise ExplorerError(f"{path}: expected a 2D image or 3D volume, got an array of shape {array.shape}")
            return LoadedImage(array[None].astype(np.float32), array.ndim, path.name, count=count,
                               uint8=array.dtype == np.uint8)
    except ExplorerError:
        raise
    except Exception as err:  # corrupt, truncated, not really that format: say which file and why
        raise ExplorerError(f"{path}: cannot read this file ({type(err).__name__}: {err})") from None
    raise ExplorerError(f"{path}: unsupported file type {suffix or '(none)'}; use "
                        f"{', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES + ARRAY_SUFFIXES)} or a folder of them")


def _load_medmnist(path: Path, index: int) -> LoadedImage:
    from selfmae.data import DataError, load_npz

    try:
        arrays = load_npz(path)
    except DataError as err:
        raise ExplorerError("; ".join(str(p) for p in err.problems)) from None
    images = arrays["test_images"]
    i = min(max(index, 0), len(images) - 1)
    image = images[i]
    dims = 3 if image.ndim == 3 and image.shape[-1] != 3 else 2
    array = np.moveaxis(image, -1, 0) if image.ndim == dims + 1 else image[None]
    label = arrays["test_labels"][i].ravel().tolist()
    return LoadedImage(array.astype(np.float32), dims, f"{path.name} test #{i} (label {label})", count=len(images),
                       kind="medmnist", uint8=image.dtype == np.uint8)


def _load_nifti(path: Path, count: int) -> LoadedImage:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))   # RAS, as the training pipelines' Orientationd
    array = np.asarray(img.dataobj, dtype=np.float32)
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3])
    if array.ndim == 2:
        return LoadedImage(array[None], 2, path.name, count=count)
    if array.ndim == 4:   # channel-last (e.g. the four BraTS modalities)
        array = np.moveaxis(array, -1, 0)
    elif array.ndim == 3:
        array = array[None]
    else:
        raise ExplorerError(f"{path}: expected a 3D volume (or 4D with channels last), got shape {array.shape}")
    return LoadedImage(array, 3, path.name, spacing=spacing, count=count)


def normalise(image: LoadedImage, data_cfg: Mapping) -> np.ndarray:
    """Intensities to [0, 1] as the pipelines do: 8-bit /255, CT in HU through the config's window
    (a_min..a_max, default -175..250), anything else by its 0.5-99.5 percentiles."""
    a = image.array
    if image.uint8:
        return a / 255.0
    if a.min() < -500:   # Hounsfield units
        lo, hi = float(data_cfg.get("a_min", -175)), float(data_cfg.get("a_max", 250))
    else:
        lo, hi = (float(v) for v in np.percentile(a, [0.5, 99.5]))
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def model_input_size(data_cfg: Mapping) -> list[int]:
    """The network's input size (`selfmae.data.registry.input_size`)."""
    from selfmae.data.registry import input_size

    return list(input_size(data_cfg))


def prepare_input(image: LoadedImage, data_cfg: Mapping) -> torch.Tensor:
    """(1, C, *model size): normalised; 2D resized (short side to resize, else crop), z-scored and centre-cropped;
    3D for a MedMNIST model z-scored and resized to resize^3 (as `pretrain_medmnist3d` trains), other 3D resampled
    to data.spacing (when both spacings are known); volumes then centre-cropped/padded to roi_size."""
    import torch.nn.functional as F
    from monai.transforms import ResizeWithPadOrCrop

    from selfmae.data.registry import spec_of

    size = model_input_size(data_cfg)
    x = torch.from_numpy(normalise(image, data_cfg))[None]
    shape = x.shape[2:]
    if image.spatial_dims == 2:
        short = int(data_cfg.get("resize") or size[0])
        new = [max(1, round(s * short / min(shape))) for s in shape]
        x = F.interpolate(x, size=new, mode="bilinear", antialias=True, align_corners=False)
        x = (x - x.mean()) / x.std().clamp_min(1e-6)   # z-scored per image, as the 2D training pipelines do
    elif spec_of(data_cfg).resizes_volumes:              # MedMNIST volumes: z-scored per volume, then resized
        x = (x - x.mean()) / x.std().clamp_min(1e-6)
        if data_cfg.get("resize"):
            x = F.interpolate(x, size=[int(data_cfg["resize"])] * 3, mode="area")
    elif image.spacing and data_cfg.get("spacing"):
        new = [max(1, round(s * sp / tsp)) for s, sp, tsp in zip(shape, image.spacing, data_cfg["spacing"])]
        x = F.interpolate(x, size=new, mode="trilinear", align_corners=False)
    x = ResizeWithPadOrCrop(spatial_size=size)(x[0])
    x = (x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x))[None]   # plain tensor: MetaTensor is slow
    channels = spec_of(data_cfg).in_channels(data_cfg)
    if x.shape[1] != channels:   # a 1-channel image into a 4-channel model: repeat; otherwise the first channel
        x = x[:, :1].repeat(1, channels, *([1] * len(size)))
    return x.float().contiguous()


# ------------------------------------------------------------------------------------------------ models -------
@dataclass
class ModelEntry:
    model: torch.nn.Module
    cfg: dict
    label: str
    trained: bool = False
    description: str = ""   # which model, said in full: checkpoint, epochs, steps, loss, architecture

    @property
    def spatial_dims(self) -> int:
        return int(self.cfg["data"]["spatial_dims"])


def _read_run_config(checkpoint: Path) -> dict:
    """The data/model sections of the run that wrote `checkpoint`: config.yaml beside it, else the checkpoint's own."""
    import yaml

    cfg_path = checkpoint.parent / "config.yaml"
    if cfg_path.is_file():
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    else:
        from selfmae.train import CheckpointError, load_checkpoint

        try:
            cfg = load_checkpoint(checkpoint).get("config") or {}
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
    """MAE checkpoints under runs_dir (pretrain_*/last.pt, ablation_*/mask*/pretrain/last.pt), labelled with
    their dimensionality and pre-training mask ratio, e.g. 'pretrain_btcv · 3D · mask 12.5 %'."""
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
    (PREFERRED_RUNS: PneumoniaMNIST -> pretrain_medmnist, other 2D -> pretrain_cxr14, MedMNIST 3D volumes ->
    pretrain_medmnist3d, other volumes -> pretrain_btcv, then pretrain_brats), else any other MAE checkpoint of the
    image's dimensions under runs_dir (e.g. an ablation run), else UNTRAINED: untrained only when nothing has run."""
    runs_dir = Path(runs_dir)
    preferred = [runs_dir / name / "last.pt" for name in PREFERRED_RUNS[image_kind(image)]]
    others = [p for p in discover_checkpoints(runs_dir).values() if p not in preferred] if runs_dir.is_dir() else []
    for path in preferred + others:
        if path.is_file() and checkpoint_dims(path) == image.spatial_dims:
            return path
    return UNTRAINED


def _shown_path(path: Path) -> str:
    """A checkpoint path as labels show it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


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
        experiment = UNTRAINED_EXPERIMENT[image_kind(image)]
        cfg = load_config(experiment, profile)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model(cfg["model"], cfg["data"])
        from selfmae.models import architecture_name

        return ModelEntry(model.eval(), cfg, f"untrained ({experiment}, {profile})", trained=False,
                          description=f"untrained: random weights, {architecture_name(cfg['model'])} "
                                      f"({experiment}, {profile})")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ExplorerError(f"checkpoint not found: {path} — run the pre-training notebook that writes it "
                            "(02/03/04, 08, 12 or 14) or choose 'untrained'")
    from selfmae.train import CheckpointError, check_state_fits, load_checkpoint

    try:
        state = load_checkpoint(path)
        cfg = _read_run_config(path)
        model = build_model({k: v for k, v in cfg["model"].items() if k not in ("init", "pretrained")}, cfg["data"])
        check_state_fits(model, state["model"], path)
    except CheckpointError as err:
        raise ExplorerError(str(err)) from None
    model.load_state_dict(state["model"])
    run = path.parent.parent if path.parent.name == "pretrain" else path.parent   # ablation_*/mask*/pretrain
    return ModelEntry(model.eval(), cfg, f"{run.name} (MAE, mask {100 * float(cfg['model']['mask_ratio']):g} %)",
                      trained=True, description=_trained_description(path, state, cfg))


# ------------------------------------------------------------------------------------------------- core -------
@dataclass
class ExplorerView:
    """What one update shows: 2D panels (PANELS), the masked-patch MSE and the patch counts."""
    images: dict[str, np.ndarray]
    hidden: np.ndarray          # 2D bool, True where the shown slice is hidden from the encoder
    mse: float                  # mean squared error over the hidden patches' pixels (whole image/volume)
    n_hidden: int
    n_patches: int
    mask_ratio: float
    seed: int
    slice_index: int | None = None
    axis: int | None = None
    seconds: float = 0.0        # model time of this update (0 when served from the cache)

    def summary(self) -> str:
        where = "" if self.slice_index is None else f" · slice {self.slice_index} on axis {self.axis}"
        return (f"{self.n_hidden} of {self.n_patches} patches hidden ({round(100 * self.mask_ratio, 1):g} %), "
                f"mask seed {self.seed}{where} · masked-patch MSE {self.mse:.4f}")


def _display(volume: np.ndarray, axis: int, index: int | None) -> np.ndarray:
    """A 2D array as the figures show it: 2D as is; 3D the slice `index` along `axis`, rotated anterior-up."""
    if volume.ndim == 2:
        return volume
    return np.ascontiguousarray(np.rot90(np.take(volume, index, axis=axis)))


@contextlib.contextmanager
def _threads(n: int | None):
    """Run torch on `n` CPU threads inside the block (None: leave as is). A tiny MAE is latency-bound: on a busy
    2-core machine one thread is ~100x faster than two spinning on each other."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


class MaskExplorer:
    """Plain-Python core of the explorer: choose an image, a model, a mask ratio and seed; `update()` draws.

    checkpoint: None (default) opens on the trained MAE that fits the image (`default_checkpoint`; UNTRAINED only
    when no pre-training has run under runs_dir) and keeps following the image until a model is chosen; or a
    checkpoint file, or UNTRAINED. `model_description` says which model is shown.
    The model runs once per (image, model, ratio, seed); moving the slice or axis only re-slices the cached result.
    `threads`: torch CPU threads for the model (1 suits the tiny models; None keeps torch's setting).
    """

    def __init__(self, source: str | Path = "sample:pneumoniamnist", checkpoint: str | Path | None = None,
                 mask_ratio: float = 0.75, seed: int = 0, index: int = 0, profile: str = "tiny",
                 runs_dir: str | Path | None = None, axis: int = 2, threads: int | None = 1):
        self.profile, self.threads = profile, threads
        self.runs_dir = Path(runs_dir) if runs_dir else REPO_ROOT / "runs" / profile
        self.mask_ratio, self.seed, self.axis = 0.75, int(seed), int(axis)
        self.slice_index: int | None = None
        self._models: dict[tuple, ModelEntry] = {}
        self._result: dict[str, Any] | None = None
        self._result_key: tuple | None = None
        self.checkpoint: str | Path = UNTRAINED
        self.follows_default = checkpoint is None   # the trained default for each image, until a model is chosen
        self.set_mask_ratio(mask_ratio)
        self.set_source(source, index)
        if checkpoint is not None:
            self.set_checkpoint(checkpoint)

    # -- choices ----------------------------------------------------------------------------------------------
    def set_source(self, source: str | Path, index: int = 0) -> LoadedImage:
        """Load an image. The default model follows the image (`default_checkpoint`); a chosen trained model that
        does not fit its dimensions is replaced by the default for it; an untrained one follows the image's kind."""
        image = load_image(source, index, self.profile)
        self.source, self.index, self.image = source, int(index), image
        mismatch = getattr(self, "entry", None) is not None and self.entry.spatial_dims != image.spatial_dims
        if self.follows_default or (str(self.checkpoint) != UNTRAINED and mismatch):
            self.checkpoint = default_checkpoint(image, self.runs_dir)
        self._load_model()
        return image

    def set_checkpoint(self, checkpoint: str | Path) -> None:
        """Show this model (a checkpoint file or UNTRAINED) from now on, whatever the image."""
        previous = self.checkpoint
        self.checkpoint = checkpoint
        try:
            self._load_model()
        except ExplorerError:
            self.checkpoint = previous
            raise
        self.follows_default = False

    @property
    def model_description(self) -> str:
        """Which model is shown, in full: 'trained MAE: <checkpoint> · N epochs, M optimiser steps · validation
        masked-patch loss L · <architecture>', or 'untrained: random weights ...' with what to run to train one."""
        return self._model_description

    def _describe_model(self) -> str:
        text = self.entry.description or self.entry.label
        if not self.entry.trained and default_checkpoint(self.image, self.runs_dir) == UNTRAINED:
            text += (f" · no {self.image.spatial_dims}D MAE checkpoint under {_shown_path(self.runs_dir)}: "
                     "run notebooks 02-04 (or 12, 14) first")
        return text

    def _load_model(self) -> None:
        key = (str(self.checkpoint), self.image.spatial_dims, self.image.kind)
        if key not in self._models:
            self._models[key] = build_explorer_model(self.checkpoint, self.image, self.profile)
        entry = self._models[key]
        if entry.spatial_dims != self.image.spatial_dims:
            raise ExplorerError(f"{entry.label} is a {entry.spatial_dims}D model but {self.image.name} is "
                                f"{self.image.spatial_dims}D; choose a matching image or checkpoint")
        self.entry = entry
        self._model_description = self._describe_model()
        self.x = prepare_input(self.image, entry.cfg["data"])
        if self.image.spatial_dims == 3:
            self.slice_index = self.x.shape[2 + self.axis] // 2
        self._result_key = None

    def set_mask_ratio(self, ratio: float) -> None:
        """Fraction of patches hidden, strictly between 0 and 1 (the slider's 5-95 % / 100)."""
        ratio = float(ratio)
        if not 0.0 < ratio < 1.0:
            raise ExplorerError(f"mask ratio must be between 0 and 1 (exclusive), got {ratio}")
        self.mask_ratio = ratio

    def set_seed(self, seed: int) -> None:
        self.seed = int(seed)

    def set_axis(self, axis: int) -> None:
        """Slicing axis of a volume (0 sagittal, 1 coronal, 2 axial); the slice moves to the middle."""
        if axis not in (0, 1, 2):
            raise ExplorerError(f"axis must be 0, 1 or 2, got {axis}")
        self.axis = int(axis)
        if self.image.spatial_dims == 3:
            self.slice_index = self.x.shape[2 + self.axis] // 2

    def set_slice(self, index: int) -> None:
        if self.image.spatial_dims != 3:
            raise ExplorerError("slices apply to volumes only; this image is 2D")
        self.slice_index = int(np.clip(index, 0, self.n_slices - 1))

    @property
    def n_slices(self) -> int:
        return int(self.x.shape[2 + self.axis]) if self.image.spatial_dims == 3 else 1

    @property
    def n_patches(self) -> int:
        return int(self.entry.model.encoder.num_patches)

    # -- computing --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _run(self, x: torch.Tensor, ratio: float, seed: int) -> dict[str, torch.Tensor]:
        """MAE forward + reconstruction with a seeded mask; adds the hidden-pixel mask and per-sample MSE."""
        model = self.entry.model
        with _threads(self.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, pred, mask = model(x, mask_ratio=ratio)
            out = {"original": x, **model.reconstruct(x, pred, mask)}
        hidden = self._hidden_pixels(mask, x)
        sq = (out["recon"].float() - x) ** 2 * hidden
        out["hidden"] = hidden[:, 0] > 0
        out["mse"] = sq.flatten(1).sum(1) / hidden.flatten(1).sum(1).clamp_min(1)
        out["mask"] = mask
        return out

    def _hidden_pixels(self, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, N) patch mask -> (B, C, *spatial), 1.0 on hidden pixels (the model's own patch layout)."""
        model = self.entry.model
        return model.unpatchify(mask.float().unsqueeze(-1).expand(-1, -1, x.shape[1] * math.prod(model.patch_size)))

    def update(self) -> ExplorerView:
        """Run the model if ratio/seed/image/model changed, then cut the panels for the current slice."""
        key = (id(self.entry), id(self.x), self.mask_ratio, self.seed)
        seconds = 0.0
        if key != self._result_key:
            t0 = time.perf_counter()
            self._result = self._run(self.x, self.mask_ratio, self.seed)
            self._result_key, seconds = key, time.perf_counter() - t0
        r = self._result
        channel, axis, index = 0, self.axis, self.slice_index
        images = {k: _display(r[k][0, channel].float().numpy(), axis, index) for k in PANELS}
        hidden = _display(r["hidden"][0].numpy(), axis, index)
        n_hidden = int(r["mask"][0].sum())
        return ExplorerView(images, hidden, float(r["mse"][0]), n_hidden, int(r["mask"].shape[1]),
                            self.mask_ratio, self.seed, index if self.image.spatial_dims == 3 else None,
                            axis if self.image.spatial_dims == 3 else None, seconds)

    def error_vs_ratio(self, ratios: Sequence[float] = DEFAULT_RATIOS, seeds: Sequence[int] = (0, 1, 2),
                       checkpoints: Sequence[str | Path] | None = None):
        """Masked-patch MSE of this image at each ratio and mask seed, for each checkpoint (default: the current).

        Returns a DataFrame with columns model, mask ratio (%), seed, MSE.
        """
        import pandas as pd

        rows = []
        for ckpt in checkpoints or [self.checkpoint]:
            key = (str(ckpt), self.image.spatial_dims, self.image.kind)
            if key not in self._models:
                self._models[key] = build_explorer_model(ckpt, self.image, self.profile)
            entry = self._models[key]
            if entry.spatial_dims != self.image.spatial_dims:
                raise ExplorerError(f"{entry.label} is {entry.spatial_dims}D; the image is {self.image.spatial_dims}D")
            current, self.entry = self.entry, entry
            try:
                x = prepare_input(self.image, entry.cfg["data"])
                for ratio in ratios:
                    for seed in seeds:
                        mse = float(self._run(x, float(ratio), int(seed))["mse"][0])
                        rows.append({"model": entry.label, "mask ratio (%)": 100 * float(ratio),
                                     "seed": int(seed), "MSE": mse})
            finally:
                self.entry = current
        return pd.DataFrame(rows)

    def plot_error_vs_ratio(self, df=None, title: str | None = None):
        """Masked-patch MSE against the mask ratio (mean and 95 % CI over mask seeds), one line per model."""
        from selfmae.viz import plot_metric_lines

        df = self.error_vs_ratio() if df is None else df
        fig = plot_metric_lines(df, x="mask ratio (%)", y="MSE", hue="model", xlabel="mask ratio (% of patches hidden)",
                                ylabel="MSE on hidden patches",
                                title=title or f"{self.image.name}: error vs mask ratio")
        fig.axes[0].axvline(100 * self.mask_ratio, ls="--", color="0.6", lw=1)
        return fig


# ---------------------------------------------------------------------------------------------- drawing -------
_LUTS: dict[str, np.ndarray] = {}
HIDDEN_TINT = np.array([70, 110, 170], np.float32)   # the colour of hidden patches in the masked-input panel


def _lut(cmap: str) -> np.ndarray:
    if cmap not in _LUTS:
        import matplotlib

        _LUTS[cmap] = (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return _LUTS[cmap]


def to_png(image: np.ndarray, vmin: float, vmax: float, cmap: str = "gray", size: int = 192,
           tint: np.ndarray | None = None) -> bytes:
    """A 2D array as PNG bytes, colour-mapped and enlarged (nearest neighbour, patches stay sharp) to ~size px.
    `tint`: bool mask of pixels to blend with HIDDEN_TINT (hidden patches)."""
    from PIL import Image

    idx = np.clip((np.asarray(image, np.float32) - vmin) / max(vmax - vmin, 1e-8) * 255, 0, 255).astype(np.uint8)
    rgb = _lut(cmap)[idx]
    if tint is not None:
        rgb = rgb.astype(np.float32)
        rgb[tint] = 0.35 * rgb[tint] + 0.65 * HIDDEN_TINT
        rgb = rgb.astype(np.uint8)
    scale = max(1, size // max(rgb.shape[:2]))
    if scale > 1:
        rgb = rgb.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def render_panels(view: ExplorerView, size: int = 192) -> dict[str, bytes]:
    """PNG bytes per panel: the image panels share the original's 1-99 % range, the error map its own."""
    lo, hi = (float(v) for v in np.percentile(view.images["original"], [1, 99]))
    hi = hi if hi > lo else lo + 1.0
    err_hi = float(np.percentile(view.images["error"], 99.5)) or 1.0
    out = {}
    for name in PANELS:
        if name == "error":
            out[name] = to_png(view.images[name], 0.0, err_hi, "magma", size)
        else:
            out[name] = to_png(view.images[name], lo, hi, "gray", size, tint=view.hidden if name == "masked" else None)
    return out


def plot_view(view: ExplorerView, title: str = ""):
    """The five panels as one matplotlib figure (for notebooks and papers rather than the live widget)."""
    from selfmae.viz import plot_reconstructions

    fig = plot_reconstructions({title or "": view.images}, columns=PANELS)
    fig.suptitle(view.summary(), fontsize=9, y=1.1)
    return fig


# ---------------------------------------------------------------------------------------------- widget --------
@dataclass
class ExplorerWidget:
    """ipywidgets controls over one MaskExplorer. Every control's callback ends in `refresh()`; errors the user
    can fix appear in `message` (red text), never as a traceback. Attributes are public for tests/benchmarks."""
    core: MaskExplorer
    checkpoints: dict[str, Path] = field(default_factory=dict)
    last_figure: Any = None

    def __post_init__(self) -> None:
        import ipywidgets as W

        core = self.core
        self.source = W.Dropdown(options=list(SOURCES) + ["a file of mine (path below)"], description="image",
                                 value=_source_label(core.source), layout=W.Layout(width="420px"))
        self.path = W.Text(value="" if str(core.source) in SOURCES.values() else str(core.source),
                           placeholder="/path/to/image.png | volume.nii.gz | file.npz | folder",
                           description="file", continuous_update=False, layout=W.Layout(width="420px"))
        self.index = W.BoundedIntText(value=core.index, min=0, max=max(core.image.count - 1, 0), description="image #",
                                      layout=W.Layout(width="180px"))
        self.checkpoint = W.Dropdown(description="model", layout=W.Layout(width="420px"))
        self.checkpoint_path = W.Text(placeholder="or a checkpoint file: runs/.../last.pt", description="checkpoint",
                                      continuous_update=False, layout=W.Layout(width="420px"))
        self.ratio = W.IntSlider(value=round(100 * core.mask_ratio), min=5, max=95, step=5,
                                 description="mask ratio (%)", continuous_update=True, layout=W.Layout(width="420px"))
        self.seed = W.BoundedIntText(value=core.seed, min=0, max=10**6, description="mask seed",
                                     layout=W.Layout(width="180px"))
        self.slice = W.IntSlider(value=0, min=0, max=1, description="slice", continuous_update=True,
                                 layout=W.Layout(width="420px"))
        self.axis = W.Dropdown(options=list(AXES.items()), value=core.axis, description="axis",
                               layout=W.Layout(width="240px"))
        self.plot_button = W.Button(description="plot error vs mask ratio", icon="line-chart",
                                    layout=W.Layout(width="240px"))
        self.status = W.HTML(layout=W.Layout(margin="6px 0 2px 0"))
        self.model_line = W.HTML()   # which model: trained (checkpoint, epochs, steps) or untrained
        self.message = W.HTML()
        self.images = {name: W.Image(format="png", layout=W.Layout(width="180px", height="180px"))
                       for name in PANELS}
        self.curve = W.Output()
        panels = [W.VBox([W.HTML(f"<b>{PANEL_TITLES[n]}</b>"), self.images[n]], layout=W.Layout(width="190px"))
                  for n in PANELS]
        for control in (self.source, self.path, self.index, self.checkpoint, self.checkpoint_path, self.ratio,
                        self.seed, self.slice, self.axis):
            control.style.description_width = "105px"
        self.volume_controls = W.HBox([self.slice, self.axis])
        self.box = W.VBox([
            W.HBox([W.VBox([self.source, self.path, self.index]), W.VBox([self.checkpoint, self.checkpoint_path])]),
            W.HBox([self.ratio, self.seed]), self.volume_controls, self.message, self.model_line, self.status,
            W.HBox(panels), self.plot_button, self.curve,
        ])
        self.box.add_class("selfmae-explorer")
        self._sync_controls()
        self.refresh()
        callbacks = {self.ratio: self.on_ratio, self.seed: self.on_seed, self.slice: self.on_slice,
                     self.axis: self.on_axis, self.source: self.on_source, self.path: self.on_path,
                     self.index: self.on_index, self.checkpoint: self.on_checkpoint,
                     self.checkpoint_path: self.on_checkpoint_path}
        for control, callback in callbacks.items():
            control.observe(self._guard(callback), "value")
        self.plot_button.on_click(self._guard(self.on_plot))

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _guard(self, callback):
        """Wrap a callback: a problem becomes a red message in the widget; the last good picture stays."""
        def run(*args):
            if getattr(self, "_syncing", False):
                return
            try:
                self.message.value = ""
                callback(*args)
            except Exception as err:  # shown, not raised: the widget must keep working
                known = isinstance(err, (ExplorerError, FileNotFoundError))
                text = str(err) if known else f"{type(err).__name__}: {err}"
                self.message.value = f"<span style='color:#b00020'>⚠ {_escape(text)}</span>"
        return run

    def _sync_controls(self) -> None:
        """Controls follow the core (checkpoint list for the image's dimensions, slice range, index range)."""
        core = self.core
        self._syncing = True
        try:
            dims = core.image.spatial_dims
            options = [(f"untrained MAE ({dims}D, random weights)", UNTRAINED)]
            options += [(label, str(path)) for label, path in self.checkpoints.items()
                        if checkpoint_dims(path) in (dims, None)]
            current = str(core.checkpoint)
            if current not in [v for _, v in options]:
                options.append((current, current))
            self.checkpoint.options = options
            self.checkpoint.value = current
            self.index.max = max(core.image.count - 1, 0)
            self.index.value = min(core.index, self.index.max)
            is_volume = dims == 3
            self.volume_controls.layout.display = "" if is_volume else "none"
            if is_volume:
                self.slice.max = core.n_slices - 1
                self.slice.value = core.slice_index
                self.axis.value = core.axis
        finally:
            self._syncing = False

    def refresh(self) -> ExplorerView:
        """Recompute (if needed) and redraw the five panels, the model line and the status line."""
        view = self.core.update()
        for name, png in render_panels(view).items():
            self.images[name].value = png
        colour = "#1b5e20" if self.core.entry.trained else "#b35c00"
        self.model_line.value = (f"<span class='selfmae-model' style='color:{colour}'><b>model:</b> "
                                 f"{_escape(self.core.model_description)}</span>")
        self.status.value = (f"<span class='selfmae-status'>{_escape(self.core.image.name)} · "
                             f"{_escape(self.core.entry.label)} · hidden patches in blue"
                             f"<br><b>{_escape(view.summary())}</b></span>")
        self.view = view
        return view

    # -- callbacks (also called directly by tests and the latency benchmark) ----------------------------------
    def on_ratio(self, change=None) -> None:
        self.core.set_mask_ratio(self.ratio.value / 100)
        self.refresh()

    def on_seed(self, change=None) -> None:
        self.core.set_seed(self.seed.value)
        self.refresh()

    def on_slice(self, change=None) -> None:
        self.core.set_slice(self.slice.value)
        self.refresh()

    def on_axis(self, change=None) -> None:
        self.core.set_axis(self.axis.value)
        self._sync_controls()
        self.refresh()

    def _set_source(self, source: str | Path, index: int = 0) -> None:
        self.core.set_source(source, index)
        self._sync_controls()
        self.refresh()

    def on_source(self, change=None) -> None:
        spec = SOURCES.get(self.source.value)
        if spec is None:   # "a file of mine": wait for the path box
            if self.path.value:
                self._set_source(self.path.value)
            else:
                self.message.value = "<span>type the path of an image, volume, .npz or folder in the file box</span>"
            return
        self._set_source(spec)

    def on_path(self, change=None) -> None:
        if self.path.value.strip():
            self._set_source(self.path.value.strip())

    def on_index(self, change=None) -> None:
        self._set_source(self.core.source, self.index.value)

    def on_checkpoint(self, change=None) -> None:
        self.core.set_checkpoint(self.checkpoint.value)
        self.refresh()

    def on_checkpoint_path(self, change=None) -> None:
        if self.checkpoint_path.value.strip():
            self.core.set_checkpoint(self.checkpoint_path.value.strip())
            self._sync_controls()
            self.refresh()

    def on_plot(self, button=None) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = self.core.plot_error_vs_ratio()
        self.last_figure = fig
        with self.curve:
            self.curve.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


def _source_label(source: str | Path) -> str:
    for label, spec in SOURCES.items():
        if spec == str(source):
            return label
    return "a file of mine (path below)"


def explorer_widget(source: str | Path = "sample:pneumoniamnist", checkpoint: str | Path | None = None,
                    runs_dir: str | Path | None = None, profile: str = "tiny", mask_ratio: float = 0.75,
                    seed: int = 0, threads: int | None = 1) -> ExplorerWidget:
    """The explorer for JupyterLab: image / model / mask-ratio / seed / slice controls, five panels, the error
    curve button. Checkpoints are discovered under runs_dir (default runs/<profile>); it opens on the trained MAE
    that fits the image (checkpoint=None, see `default_checkpoint`), untrained only when none has run, and its
    model line says which."""
    core = MaskExplorer(source, checkpoint, mask_ratio=mask_ratio, seed=seed, profile=profile, runs_dir=runs_dir,
                        threads=threads)
    return ExplorerWidget(core, discover_checkpoints(core.runs_dir))


# ------------------------------------------------------------------------------------------ quickstart --------
def quickstart_table(results: Mapping[str, Sequence[Mapping[str, float]]], metric: str = "mAUC",
                     labels: Mapping[str, str] | None = None, scale: float = 100.0,
                     architecture: str | Mapping[str, str] | None = None):
    """Scratch vs MAE (or any methods) on one dataset: mean ± 95 % CI over seeds and the per-seed values.

    results: method -> list of run summaries (finetune_study's output); architecture: the model built (a name, or
    method -> name, see `selfmae.models.architecture_name`). Returns a DataFrame, one row per method.
    """
    import pandas as pd

    from selfmae.report import format_ci, our_architecture

    rows = []
    for method, runs in results.items():
        values = [float(r[metric]) for r in runs if r.get(metric) is not None]
        rows.append({"method": (labels or {}).get(method, method),
                     "Architecture": our_architecture(architecture, method), "seeds": len(values),
                     f"{metric} (%)": format_ci(values, scale=scale),
                     "per seed": ", ".join(f"{scale * v:.2f}" for v in values)})
    return pd.DataFrame(rows)


def medmnist_source(data_dir: str | Path = "", spatial_dims: int = 2) -> str:
    """The MedMNIST file notebook 12 (2D) or 14 (3D) trains on: `data_dir` when it is a .npz or holds one
    (directly, or in a `medmnist3d/` (3D only) or `medmnist/` sub-folder); the real file shipped in tests/data for
    `spatial_dims` (PneumoniaMNIST subset, AdrenalMNIST3D) when `data_dir` is "".

    Raises FileNotFoundError naming the folder when `data_dir` is given but holds no .npz (a run on the shipped
    file would look like the user's own result).
    """
    from selfmae.experiments import medmnist_sample

    if not data_dir:
        return str(medmnist_sample(spatial_dims))
    root = Path(data_dir).expanduser()
    subfolders = ("medmnist3d", "medmnist") if int(spatial_dims) == 3 else ("medmnist",)
    for candidate in (root, *(root / sub for sub in subfolders)):
        if candidate.is_file() and candidate.suffix == ".npz":
            return str(candidate)
        if candidate.is_dir() and any(candidate.glob("*.npz")):
            return str(candidate)
    shipped = "AdrenalMNIST3D file" if int(spatial_dims) == 3 else "PneumoniaMNIST subset"
    raise FileNotFoundError(f"data_dir={str(data_dir)!r}: no MedMNIST .npz there (nor in its "
                            f"{' or '.join(f'{sub}/' for sub in subfolders)} folder); give a .npz file or a folder "
                            f"holding one, or leave data_dir empty for the shipped {shipped}")


def medmnist_description(source: str | Path) -> str:
    """How captions name a MedMNIST source: a shipped file, or the file used with its split sizes
    (e.g. 'pneumoniamnist.npz: 4708/524/624 train/val/test images', 'organmnist3d.npz: 971/161/610 ... volumes')."""
    from selfmae.data import load_npz
    from selfmae.data.medmnist import file_spatial_dims, medmnist_file
    from selfmae.experiments import MEDMNIST3D_SAMPLE, MEDMNIST_SAMPLE

    path = medmnist_file({"data_dir": str(source)})
    if path.resolve() == MEDMNIST_SAMPLE.resolve():
        return "PneumoniaMNIST (real, the balanced subset shipped in tests/data)"
    if path.resolve() == MEDMNIST3D_SAMPLE.resolve():
        return "AdrenalMNIST3D (real, the MedMNIST v2 file shipped in tests/data)"
    arrays = load_npz(path)
    sizes = "/".join(str(len(arrays[f"{s}_images"])) for s in ("train", "val", "test"))
    kind = "volumes" if file_spatial_dims(arrays["train_images"]) == 3 else "images"
    return f"{path.name}: {sizes} train/val/test {kind}"


def source_data_label(source: str | Path, profile: str = "tiny") -> str:
    """The data an explorer source shows, for a stamp: 'synthetic' for a phantom, else the file as
    `selfmae.provenance.data_label` names it (shipped samples by their path in the repository)."""
    from selfmae.provenance import data_label

    if str(source).startswith("phantom:"):
        return "synthetic"
    return data_label(resolve_source(source, profile))
