"""Figures: seaborn styling, colour-blind-safe palettes, labelled axes; saved as PNG + PDF with a stamp.

Each function takes arrays/tables (never models) so notebooks and tests can draw from cached results instantly.
Images are (H, W) or (C, H, W); volumes are shown as one slice chosen by the caller.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap

from selfmae.io import atomic_path

PALETTE = "colorblind"


def set_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)


def label_colormap(n_labels: int) -> ListedColormap:
    """Colour-blind-safe colours for label ids 1..n (0 = transparent background)."""
    colours = sns.color_palette(PALETTE, max(n_labels, 1))
    return ListedColormap([(0, 0, 0, 0)] + [(*c, 1.0) for c in colours[:n_labels]])


def save_figure(fig: plt.Figure, name: str, out_dir: str | Path, stamp: object | None = None) -> dict[str, Path]:
    """Save `name`.png and `name`.pdf atomically, with the provenance stamp printed along the bottom edge."""
    out_dir = Path(out_dir)
    if stamp is not None:
        fig.text(0.995, 0.002, str(stamp), ha="right", va="bottom", fontsize=6, color="0.4")
    paths = {}
    for ext in ("png", "pdf"):
        with atomic_path(out_dir / f"{name}.{ext}") as tmp:
            fig.savefig(tmp, dpi=150 if ext == "png" else None, bbox_inches="tight", format=ext)
        paths[ext] = out_dir / f"{name}.{ext}"
    return paths


def _show(ax: plt.Axes, image: np.ndarray, title: str | None = None, cmap: str = "gray", **kw) -> None:
    ax.imshow(np.asarray(image).T if kw.pop("transpose", False) else np.asarray(image), cmap=cmap, **kw)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_reconstructions(rows: Mapping[str, Mapping[str, np.ndarray]],
                         columns: Sequence[str] = ("original", "masked", "recon", "pasted")) -> plt.Figure:
    """Fig. 2: one row per dataset, columns original / masked input / reconstruction / visible pasted back.

    rows: dataset name -> {column: 2D image (H, W)}.
    """
    titles = {"original": "original", "masked": "masked input", "recon": "reconstruction",
              "pasted": "reconstruction + visible", "error": "|error|"}
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.3 * len(columns), 2.4 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        lo, hi = np.percentile(images["original"], [1, 99])
        for c, col in enumerate(columns):
            cmap = "magma" if col == "error" else "gray"
            _show(axes[r, c], images[col], titles[col] if r == 0 else None, cmap=cmap,
                  **({} if col == "error" else {"vmin": lo, "vmax": hi}))
        axes[r, 0].set_ylabel(name, fontsize=10)
    fig.tight_layout()
    return fig


def plot_segmentation_overlays(cases: Sequence[Mapping[str, np.ndarray]], n_labels: int,
                               label_names: Sequence[str],
                               columns: Sequence[str] = ("image", "ground truth", "scratch", "MAE")) -> plt.Figure:
    """Fig. 3: rows of cases; columns image / ground truth / predictions, label maps overlaid on the image.

    Each case: {"image": (H, W), "ground truth": (H, W) int, "scratch": (H, W) int, "MAE": (H, W) int, "title": str}.
    """
    cmap = label_colormap(n_labels)
    fig, axes = plt.subplots(len(cases), len(columns), figsize=(2.4 * len(columns) + 1.6, 2.4 * len(cases)),
                             squeeze=False)
    for r, case in enumerate(cases):
        for c, col in enumerate(columns):
            ax = axes[r, c]
            _show(ax, case["image"], col if r == 0 else None)
            if col != "image":
                ax.imshow(np.ma.masked_equal(case[col], 0), cmap=cmap, vmin=0, vmax=n_labels, alpha=0.6,
                          interpolation="nearest")
        axes[r, 0].set_ylabel(case.get("title", ""), fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i + 1)) for i in range(n_labels)]
    fig.legend(handles, label_names, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    return fig


def plot_training_curves(histories: Mapping[str, pd.DataFrame], metric: str | None = None,
                         title: str = "") -> plt.Figure:
    """Training loss (and a validation metric when given) per epoch, one line per run (mean ± sd over seeds).

    histories: run label -> metrics.csv as a DataFrame with columns epoch, train_loss, [metric], [seed].
    """
    set_style()
    panels = ["train_loss"] + ([metric] if metric else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    long = pd.concat([df.assign(run=label) for label, df in histories.items()], ignore_index=True)
    for ax, col in zip(axes[0], panels):
        data = long.dropna(subset=[col]) if col in long else long.iloc[0:0]
        if len(data):
            sns.lineplot(data=data, x="epoch", y=col, hue="run", errorbar="sd", ax=ax, marker="o", markersize=3)
            if ax.get_legend() is not None and data.groupby(["run", "epoch"]).size().max() > 1:
                ax.get_legend().set_title("run (band: ± 1 s.d. over seeds)", prop={"size": 8})
        ax.set_xlabel("epoch"), ax.set_ylabel(col.replace("_", " "))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def t_interval(values) -> tuple[float, float]:
    """(low, high) of the 95 % Student-t interval of the mean (`selfmae.report.mean_ci`, the tables' ± column), for
    seaborn's `errorbar=`; one value gives no band (low = high)."""
    from selfmae.report import mean_ci

    mean, half, _ = mean_ci(values)
    half = 0.0 if not np.isfinite(half) else half
    return mean - half, mean + half


def plot_metric_lines(df: pd.DataFrame, x: str, y: str, hue: str, xlabel: str, ylabel: str, title: str = "",
                      reference: Mapping[str, float] | None = None, style: str | None = None) -> plt.Figure:
    """A line plot of the mean over seeds with its 95 % Student-t band (`t_interval`: the same interval as the
    tables' '±'), e.g. Dice vs label fraction, error vs mask ratio. style: a column drawn as solid / dashed lines
    (default: one marker per `hue`, all solid)."""
    set_style()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(data=df, x=x, y=y, hue=hue, style=style or hue, markers=True, dashes=bool(style),
                 errorbar=t_interval, ax=ax)
    for label, value in (reference or {}).items():
        ax.axhline(value, ls=":", color="0.5")
        ax.text(ax.get_xlim()[0], value, f" {label}", va="bottom", fontsize=7, color="0.4")
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_examples(images: Sequence[np.ndarray], titles: Sequence[str], masks: Sequence[np.ndarray | None] | None = None,
                  n_labels: int = 0, ncols: int = 4) -> plt.Figure:
    """A grid of example images (2D) with optional label maps overlaid, for the data notebook."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    cmap = label_colormap(max(n_labels, 1))
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        _show(ax, images[i])
        ax.set_title(titles[i], fontsize=7)
        if masks is not None and masks[i] is not None:
            ax.imshow(np.ma.masked_equal(masks[i], 0), cmap=cmap, vmin=0, vmax=max(n_labels, 1), alpha=0.55,
                      interpolation="nearest")
    fig.tight_layout()
    return fig
