"""The explorer's plain-Python core: `MaskExplorer` (image, model, mask ratio and seed in; `update()` out) and
`ExplorerView` (the five 2D panels, the masked-patch MSE and the patch counts of one update)."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from selfmae.explore.checkpoints import (UNTRAINED, ModelEntry, _shown_path, build_explorer_model,
                                         default_checkpoint)
from selfmae.explore.prepare import prepare_input
from selfmae.explore.sources import ExplorerError, LoadedImage, load_image
from selfmae.models.mim import flat_guess
from selfmae.repro import REPO_ROOT

PANELS = ("original", "masked", "recon", "pasted", "error")
DEFAULT_RATIOS = tuple(round(r / 100, 2) for r in range(5, 100, 5))


@dataclass
class ExplorerView:
    """What one update shows: 2D panels (PANELS), the masked-patch MSE and the patch counts."""
    images: dict[str, np.ndarray]
    hidden: np.ndarray          # 2D bool, True where the shown slice is hidden from the encoder
    mse: float                  # mean squared error over the hidden patches' pixels (whole image/volume), in the
                                # model's input units (the intensities after its preprocessing, e.g. z-scored)
    n_hidden: int
    n_patches: int
    mask_ratio: float
    seed: int
    slice_index: int | None = None
    axis: int | None = None
    seconds: float = 0.0        # model time of this update (0 when served from the cache)
    model: str = ""             # which model, in short: 'trained MAE: <checkpoint>' or 'untrained MAE: ...'
    flat_mse: float = float("nan")   # the same error for `mim.flat_guess` (hidden patches flat at their visible
                                     # neighbours' mean): the reference that says what `mse` is worth

    def summary(self) -> str:
        where = "" if self.slice_index is None else f" · slice {self.slice_index} on axis {self.axis}"
        return (f"{self.n_hidden} of {self.n_patches} patches hidden ({round(100 * self.mask_ratio, 1):g} %), "
                f"mask seed {self.seed}{where} · {self.error_text(4)}")

    def error_text(self, digits: int = 3) -> str:
        """'masked-patch MSE 0.0455 (flat guess 0.0612)': the model's error beside the reference's."""
        return f"masked-patch MSE {self.mse:.{digits}f} (flat guess {self.flat_mse:.{digits}f})"


def _hidden_mse(image: torch.Tensor, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared error of image against x over the hidden pixels (hidden: (B, C, *spatial) 1.0 there)."""
    sq = (image.float() - x) ** 2 * hidden
    return sq.flatten(1).sum(1) / hidden.flatten(1).sum(1).clamp_min(1)


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
    when no pre-training has run under runs_dir, or when that one cannot prepare the image, e.g. a run whose task
    folder has moved: `model_description` says why) and keeps following the image until a model is chosen; or a
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
            try:
                self._load_model()
            except ExplorerError as err:   # e.g. a run on a task folder that has since moved: open untrained
                if str(self.checkpoint) == UNTRAINED:
                    raise
                skipped, self.checkpoint = Path(self.checkpoint), UNTRAINED
                self._load_model()
                self._model_description += f" · {_shown_path(skipped)} was not opened: {err}"
            return image
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
        key = (str(self.checkpoint), self.image.spatial_dims, self.image.dataset)
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
        out["hidden"] = hidden[:, 0] > 0
        out["mse"] = _hidden_mse(out["recon"], x, hidden)
        out["flat_mse"] = _hidden_mse(flat_guess(x, mask, model.patch_size, model.grid), x, hidden)
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
                            axis if self.image.spatial_dims == 3 else None, seconds, self.entry.short,
                            float(r["flat_mse"][0]))

    def error_vs_ratio(self, ratios: Sequence[float] = DEFAULT_RATIOS, seeds: Sequence[int] = (0, 1, 2),
                       checkpoints: Sequence[str | Path] | None = None):
        """Masked-patch MSE of this image at each ratio and mask seed, for each checkpoint (default: the current).

        Returns a DataFrame with columns model, guess ("MAE" or "flat guess": `mim.flat_guess` under that model's
        preprocessing and patch grid, the reference), mask ratio (%), seed, MSE (the model's input units).
        """
        import pandas as pd

        rows = []
        for ckpt in checkpoints or [self.checkpoint]:
            key = (str(ckpt), self.image.spatial_dims, self.image.dataset)
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
                        out = self._run(x, float(ratio), int(seed))
                        for guess, key in (("MAE", "mse"), ("flat guess", "flat_mse")):
                            rows.append({"model": entry.label, "guess": guess, "mask ratio (%)": 100 * float(ratio),
                                         "seed": int(seed), "MSE": float(out[key][0])})
            finally:
                self.entry = current
        return pd.DataFrame(rows)

    def plot_error_vs_ratio(self, df=None, title: str | None = None):
        """Masked-patch MSE against the mask ratio (mean and 95 % CI over mask seeds), one colour per model, solid
        for its reconstruction and dashed for the flat guess under the same masks (the reference)."""
        from selfmae.viz import plot_metric_lines

        df = self.error_vs_ratio() if df is None else df
        fig = plot_metric_lines(df, x="mask ratio (%)", y="MSE", hue="model", style="guess",
                                xlabel="mask ratio (% of patches hidden)",
                                ylabel="MSE on hidden patches (input units)",
                                title=title or f"{self.image.name}: error vs mask ratio")
        ax = fig.axes[0]
        ax.axvline(100 * self.mask_ratio, ls="--", color="0.6", lw=1)
        ax.title.set_fontsize(9)   # image names are long
        if ax.get_legend() is not None:   # beside the axes: inside, it hid the lines
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        fig.set_size_inches(8.0, 3.6)
        fig.tight_layout()
        return fig

