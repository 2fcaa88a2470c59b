"""Notebook 14: the paper's 3D questions asked of a real MedMNIST 3D file, as tables and figures.

    name = medmnist_name(path)                         # "adrenalmnist3d" (also for adrenalmnist3d_64.npz)
    published = published_baselines(name)               # MedMNIST v2's test AUC/ACC for that file, [] if none
    scratch_vs_mae_table(results, labels, published)    # ours (test AUC/ACC, mean ± 95 % CI) beside theirs
    sweep = mask_ratio_rows(results_by_ratio, losses)    # one row per pre-training mask ratio
    mask_ratio_table(sweep)                             # the same, formatted; chosen_on_validation(sweep)

The figures take the same results (run summaries, `finetune_study` / `ablation_study` output) and draw them;
nothing here trains. "Validation AUC" is the best epoch's validation AUC, the one that picked the checkpoint
evaluated on the test split (`validation_score`), so a choice made on it never looks at the test split.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from selfmae.report import format_ci, mean_ci, paper_results

Runs = Mapping[str, Sequence[Mapping[str, float]]]   # method -> one fine-tuning summary per seed


def medmnist_name(path: str | Path) -> str:
    """The MedMNIST flag of a file: 'adrenalmnist3d' for adrenalmnist3d.npz and adrenalmnist3d_64.npz."""
    return re.sub(r"_(28|64|128|224)$", "", Path(path).stem.lower())


def published_baselines(name: str) -> list[dict]:
    """MedMNIST v2's baselines for the file `name` ({"method", "auc", "acc"}, fractions; selfmae/paper_results.yaml),
    [] when none are transcribed for it."""
    return list(paper_results()["medmnist_v2"]["table_3d"].get(name, []))


def published_note() -> str:
    """The table footnote: where the published rows come from, and whether they were checked against the paper."""
    p = paper_results()["medmnist_v2"]
    return f"published rows: {p['source']}; {p['note']}"


def validation_score(summary: Mapping, metric: str = "mAUC") -> float:
    """The best validation `metric` of a fine-tuning run (the epoch whose checkpoint the test split scored), read
    from the metrics.csv beside the summary's checkpoint; NaN when the run has no validated epoch."""
    history = pd.read_csv(Path(summary["checkpoint"]).parent / "metrics.csv")
    values = history[metric].dropna() if metric in history else pd.Series(dtype=float)
    return float(values.max()) if len(values) else float("nan")


def _cell(values: Sequence[float]) -> str:
    return format_ci(values, 100.0, digits=1)


def majority_reference(dataset) -> dict:
    """{"name", "mAUC", "acc"} of predicting the most frequent class for every item of `dataset` (its labels (L,)
    as the reader gives them: one 0/1 column, one-hot classes, or 0/1 labels): AUC 0.5 by construction, and the
    accuracy that an ACC must beat to say anything (MedMNIST's ACC thresholds at 0.5)."""
    labels = np.stack([np.asarray(dataset[i]["label"], dtype=float).reshape(-1) for i in range(len(dataset))])
    freq = labels.mean(0)
    onehot = labels.shape[1] > 1 and np.allclose(labels.sum(1), 1)
    acc = float(freq.max()) if onehot else float(np.maximum(freq, 1 - freq).mean())
    return {"name": "the most frequent class for every volume", "mAUC": 0.5, "acc": acc}


def difference_text(results: Runs, a: str, b: str, metric: str = "mAUC") -> str:
    """'b - a: +2.5 points of test AUC (b 73.5 ± 1.9, a 71.0 ± 14.9): the 95 % intervals overlap, no difference
    shown' (or 'do not overlap'), for the notebook's conclusion."""
    (ma, ha, _), (mb, hb, _) = (mean_ci([100 * r[metric] for r in results[m]]) for m in (a, b))
    overlap = np.isnan(ha) or np.isnan(hb) or abs(mb - ma) <= ha + hb
    verdict = "the 95 % intervals overlap: no difference shown" if overlap else "the 95 % intervals do not overlap"
    return f"{b} - {a}: {mb - ma:+.1f} points of test AUC ({b} {mb:.1f} ± {hb:.1f}, {a} {ma:.1f} ± {ha:.1f}); {verdict}"


def scratch_vs_mae_table(results: Runs, labels: Mapping[str, str], published: Sequence[Mapping] = (),
                         architecture: str = "–", references: Sequence[Mapping[str, float]] = (),
                         label: str = "ours") -> pd.DataFrame:
    """Question (1): test AUC and ACC (%) of each of our methods (mean ± 95 % CI over seeds, and each seed's AUC),
    their validation AUC, beside the published baselines for the same file (Source "paper": MedMNIST v2, named in
    the footnote `published_note`) and references computed in this run (`references`: {"name", "mAUC"[, "acc"]},
    e.g. the voxel logistic regression, `majority_reference`). `label` is our rows' Source (e.g. "ours (tiny)")."""
    rows = [{"Method": r["method"], "Architecture": r["method"].split(" (")[0], "Source": "paper",
             "seeds": "–", "test AUC (%)": f"{100 * r['auc']:.1f}", "test ACC (%)": f"{100 * r['acc']:.1f}",
             "val AUC (%)": "–", "test AUC per seed (%)": "–"} for r in published]
    for method, runs in results.items():
        rows.append({"Method": labels.get(method, method), "Architecture": architecture, "Source": label,
                     "seeds": len(runs), "test AUC (%)": _cell([r.get("mAUC") for r in runs]),
                     "test ACC (%)": _cell([r.get("acc") for r in runs]),
                     "val AUC (%)": _cell([validation_score(r) for r in runs]),
                     "test AUC per seed (%)": ", ".join(f"{100 * r['mAUC']:.1f}" for r in runs)})
    for ref in references:
        rows.append({"Method": ref["name"], "Architecture": "–", "Source": "reference (this run)", "seeds": "–",
                     "test AUC (%)": f"{100 * ref['mAUC']:.1f}",
                     "test ACC (%)": f"{100 * ref['acc']:.1f}" if ref.get("acc") is not None else "–",
                     "val AUC (%)": "–", "test AUC per seed (%)": "–"})
    df = pd.DataFrame(rows)
    df.attrs["note"] = (f"{published_note() if published else 'no published baselines transcribed for this file'}. "
                        "ACC: binary labels at probability 0.5, class ids by the largest output (MedMNIST v2's "
                        "definitions); ours are each seed's checkpoint with the best validation AUC, scored once "
                        "on the test split.")
    return df


def mask_ratio_rows(results: Mapping[float, Sequence[Mapping]], pretrain_losses: Mapping[float, float],
                    flat_guess: float) -> pd.DataFrame:
    """Question (2), one row per mask ratio (numbers, for figures and the choice): the pre-training's final
    validation masked-patch loss beside the flat-patch guess, and each seed's fine-tuned validation and test AUC.

    results: mask ratio -> fine-tuning summaries (one per seed); pretrain_losses: mask ratio -> loss."""
    rows = []
    for ratio in sorted(results, reverse=True):
        for summary in results[ratio]:
            rows.append({"mask ratio (%)": 100 * ratio, "seed": summary.get("seed"),
                         "pre-training val loss": pretrain_losses.get(ratio, float("nan")), "flat guess": flat_guess,
                         "val AUC (%)": 100 * validation_score(summary), "test AUC (%)": 100 * summary["mAUC"],
                         "test ACC (%)": 100 * summary.get("acc", float("nan"))})
    return pd.DataFrame(rows)


def chosen_on_validation(rows: pd.DataFrame) -> float:
    """The mask ratio (%) with the highest mean validation AUC over seeds (ties: the lower ratio)."""
    means = rows.groupby("mask ratio (%)")["val AUC (%)"].mean()
    return float(means[means == means.max()].index.min())


def mask_ratio_table(rows: pd.DataFrame, reference_ratio: float | None = None) -> pd.DataFrame:
    """`mask_ratio_rows` as a table: mean ± 95 % CI over seeds per ratio, the validation's choice marked, and
    `reference_ratio` (%) (the config's, run in question (1)) named."""
    chosen = chosen_on_validation(rows)
    out = []
    for ratio, group in rows.groupby("mask ratio (%)", sort=False):
        own = reference_ratio is not None and ratio == reference_ratio
        mark = [text for text, on in (("chosen on validation", ratio == chosen), ("the config's ratio", own)) if on]
        out.append({"Mask ratio": f"{ratio:g}%",
                    "pre-training val loss": f"{group['pre-training val loss'].iloc[0]:.3f}",
                    "flat-patch guess": f"{group['flat guess'].iloc[0]:.3f}", "seeds": len(group),
                    "val AUC (%)": _cell(group["val AUC (%)"] / 100),
                    "test AUC (%)": _cell(group["test AUC (%)"] / 100),
                    "test ACC (%)": _cell(group["test ACC (%)"] / 100), "note": ", ".join(mark) or "–"})
    df = pd.DataFrame(out)
    df.attrs["note"] = ("one MAE pre-training per ratio (same length and seed), each fine-tuned with every seed; "
                        "the choice is made on the validation AUC, the test AUC is reported for every row.")
    return df


def mask_ratio_sweep(profile: str, ratios: Sequence[float], seeds: Sequence[int], out_dir: str | Path,
                     overrides: Mapping[str, Mapping], reuse: tuple[Path, Path] | None = None
                     ) -> tuple[dict[float, list[dict]], dict[float, float]]:
    """Question (2): `selfmae.experiments.ablation_study` of pretrain/finetune_medmnist3d over `ratios`, every
    pre-training as long as the profile's (the paper profile's length is the grid's "paper epochs").

    overrides: {"pretrain": ..., "finetune": ...} (the notebook's run overrides); reuse: (pre-training run dir,
    fine-tuning study dir) already run at the config's own mask ratio. Pre-trainings land in
    out_dir/mask<r>_ep<epochs>/pretrain, fine-tunings beside them in mae/seed<N>. Returns (ratio -> fine-tuning
    summaries, one per seed; ratio -> the pre-training's final validation masked-patch loss)."""
    from selfmae.config import load_config
    from selfmae.experiments import ablation_study, load_history

    epochs = load_config("pretrain_medmnist3d", "paper")["train"]["epochs"]
    own = load_config("pretrain_medmnist3d", profile, overrides.get("pretrain"))["model"]["mask_ratio"]
    reused = {(own, epochs): reuse} if reuse and own in ratios else {}
    results = ablation_study("medmnist3d", profile, [(r, epochs) for r in ratios], seeds, out_dir,
                             overrides=overrides, reuse=reused)
    losses = {}
    for ratio in ratios:
        pre_dir = reused[(ratio, epochs)][0] if (ratio, epochs) in reused else \
            Path(out_dir) / f"mask{ratio:g}_ep{epochs}" / "pretrain"
        history = load_history(pre_dir)
        val = history["val_loss"].dropna() if "val_loss" in history else []
        losses[ratio] = float(val.iloc[-1]) if len(val) else float("nan")
    return {ratio: results[(ratio, epochs)] for ratio in ratios}, losses


# ---------------------------------------------------------------------------------------------- figures -------
def plot_scratch_vs_mae(results: Runs, labels: Mapping[str, str], published: Sequence[Mapping] = (),
                        title: str = ""):
    """Each seed's test AUC (dots) and the mean ± 95 % CI (diamond and bar) per method, and in a last column the
    published baselines of the same file (grey), each named; the axis is clipped to the AUC's 0-100 %."""
    import matplotlib.pyplot as plt

    from selfmae.viz import set_style

    set_style()
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    for i, (method, runs) in enumerate(results.items()):
        values = [100 * r["mAUC"] for r in runs]
        mean, half, _ = mean_ci(values)
        ax.scatter(np.full(len(values), i - 0.12) + np.linspace(-0.06, 0.06, len(values)), values, s=22,
                   alpha=0.7, color=f"C{i}", zorder=3)
        ax.errorbar(i + 0.12, mean, yerr=0 if np.isnan(half) else half, fmt="D", color=f"C{i}", capsize=5, zorder=3)
        ax.annotate(f"{mean:.1f}", (i + 0.2, mean), va="center", fontsize=8)
    ticks = [labels.get(m, m) for m in results]
    if published:
        x = len(results)
        values = sorted(100 * row["auc"] for row in published)
        names = [row["method"] for row in sorted(published, key=lambda row: row["auc"])]
        ax.scatter(np.full(len(values), x - 0.15), values, marker="_", s=200, color="0.45", zorder=3)
        gap = max((values[-1] - values[0]) / max(len(values) - 1, 1), 1.6)   # names one per line, in order
        start = (values[0] + values[-1]) / 2 - gap * (len(values) - 1) / 2
        for k, (value, name) in enumerate(zip(values, names)):
            ax.annotate(f"{name} {value:.1f}", xy=(x - 0.1, value), xytext=(x + 0.05, start + k * gap), fontsize=6.5,
                        color="0.3", va="center", arrowprops={"arrowstyle": "-", "color": "0.7", "lw": 0.5})
        ax.update_datalim([(x, start - gap), (x, start + len(values) * gap)])
        ax.autoscale_view()
        ticks.append("MedMNIST v2\n(published)")
    ax.set_xticks(range(len(ticks)), ticks, fontsize=9)
    ax.set_xlim(-0.5, len(ticks) + 0.2)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 100.0))
    ax.set_ylabel("test AUC (%)")
    ax.set_title(title or "scratch vs MAE self pre-training (dots: seeds; diamond: mean ± 95 % CI)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_mask_ratio(rows: pd.DataFrame, scratch: Sequence[Mapping] = (), title: str = ""):
    """Two panels against the pre-training mask ratio: (a) the MAE's final validation masked-patch loss beside the
    flat-patch guess; (b) the fine-tuned AUC on validation and test (mean, 95 % Student-t band over seeds, as the
    table's ±), scratch's test AUC as a dotted line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from selfmae.viz import set_style, t_interval

    set_style()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    losses = rows.drop_duplicates("mask ratio (%)")
    ax1.plot(losses["mask ratio (%)"], losses["pre-training val loss"], "o-", label="MAE, validation")
    ax1.plot(losses["mask ratio (%)"], losses["flat guess"], ":", color="0.4", label="flat-patch guess")
    ax1.set_xlabel("mask ratio during pre-training (%)"), ax1.set_ylabel("masked-patch loss (norm-pix)")
    ax1.set_title("(a) pre-training", fontsize=10)
    ax1.legend(fontsize=8)
    long = rows.melt(id_vars=["mask ratio (%)", "seed"], value_vars=["val AUC (%)", "test AUC (%)"],
                     var_name="split", value_name="AUC (%)")
    long["split"] = long["split"].str.replace(" AUC (%)", "", regex=False)
    sns.lineplot(data=long, x="mask ratio (%)", y="AUC (%)", hue="split", style="split", markers=True, dashes=False,
                 errorbar=t_interval, ax=ax2)
    if scratch:
        value = float(np.mean([100 * r["mAUC"] for r in scratch]))
        ax2.axhline(value, ls=":", color="0.4")
        ax2.text(ax2.get_xlim()[0], value, " scratch (test)", va="bottom", fontsize=7, color="0.3")
    ax2.set_xlabel("mask ratio during pre-training (%)"), ax2.set_ylabel("fine-tuned AUC (%)")
    ax2.set_title("(b) after fine-tuning", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_examples(datasets: Mapping, label_names: Sequence[str], n_per_class: int = 2, split: str = "val"):
    """Middle slices along the three axes of a few volumes of each label value (the first label column), one row
    per volume, titled with its case id and label; volumes as the training pipeline prepares them (z-scored)."""
    import matplotlib.pyplot as plt

    ds = datasets[split]
    picked: dict[int, list] = {}
    for i in range(len(ds)):
        item = ds[i]
        label = np.asarray(item["label"], dtype=float)
        key = int(label.argmax()) if label.size > 1 else int(label[0] > 0.5)
        if len(picked.setdefault(key, [])) < n_per_class:
            picked[key].append(item)
        if len(picked) >= min(2, len(label_names) + 1) and all(len(v) >= n_per_class for v in picked.values()):
            break
    items = [it for key in sorted(picked) for it in picked[key]]
    fig, axes = plt.subplots(len(items), 3, figsize=(6.0, 2.0 * len(items)), squeeze=False)
    for r, item in enumerate(items):
        volume = np.asarray(item["image"])[0]
        label = np.asarray(item["label"], dtype=float)
        text = (label_names[int(label.argmax())] if label.size > 1
                else f"{label_names[0]} = {int(label[0] > 0.5)}")
        for c, axis in enumerate(("x", "y", "z")):
            ax = axes[r, c]
            ax.imshow(np.rot90(np.take(volume, volume.shape[c] // 2, axis=c)), cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"middle slice, axis {axis}", fontsize=8)
        axes[r, 0].set_ylabel(f"{item.get('case_id', r)}\n{text}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_volume_slices(explorer, slices: Sequence[int] | None = None, title: str = ""):
    """An MAE reconstruction of one volume at several slices (the explorer's slice slider, frozen): one row per
    slice along the explorer's axis, columns original / masked input (hidden cubes tinted) / reconstruction /
    + visible / |error|."""
    from selfmae.explore import PANELS
    from selfmae.explore.render import tinted_panels
    from selfmae.viz import plot_reconstructions

    n = explorer.n_slices
    slices = list(slices) if slices is not None else sorted({round(f * (n - 1)) for f in (0.3, 0.45, 0.55, 0.7)})
    rows = {}
    for index in slices:
        explorer.set_slice(index)
        view = explorer.update()
        rows[f"slice {index}"] = tinted_panels(view)
    fig = plot_reconstructions(rows, columns=PANELS)
    default = (f"{explorer.image.name} · {view.n_hidden} of {view.n_patches} cubes hidden "
               f"({round(100 * view.mask_ratio, 1):g} %, mask seed {view.seed}) · {view.error_text()} · "
               f"slices along axis {view.axis}\n{explorer.entry.label}")
    fig.suptitle(title or default, fontsize=9, y=1.04)
    return fig
