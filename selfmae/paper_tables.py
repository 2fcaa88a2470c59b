"""The papers' tables laid out as printed, ours beside (mean ± 95 % CI over seeds), each row naming the
architecture that produced it, plus the simple reference rows computed in the same run (`with_reference`).
Written with `selfmae.report.write_table`; the papers' numbers come from `selfmae.report.paper_results`.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np
import pandas as pd

from selfmae.report import format_ci, paper_results, segmentation_note

# The architecture behind each paper row: the SelfMedMAE UNETR is a ViT-B/16 (16^3 patches) with feature size 16;
# the other rows are the published models, named as the papers name them.
PAPER_UNETR = "UNETR (ViT-B/16)"
PAPER_ARCHITECTURES = {"UNETR": PAPER_UNETR, "UNETR+ImageNet": PAPER_UNETR, "UNETR+MAE": PAPER_UNETR,
                       "nnFormer (baseline)": "nnFormer", "MAE + nnFormer": "nnFormer"}
# Our rows' architecture: one name for every method, or method -> name (see selfmae.models.architecture_name)
Architectures = Union[str, Mapping[object, str], None]


def paper_architecture(row: str) -> str:
    """The architecture a paper row used: 'UNETR (ViT-B/16)' for the UNETR rows, else the row's own model name."""
    return PAPER_ARCHITECTURES.get(row, row)


def our_architecture(architecture: Architectures, method: object) -> str:
    """The cell for one of our rows: `architecture` itself when it is a string, its entry for `method` when it is
    a mapping, '–' when it is not known (the builders are then called without it)."""
    if architecture is None:
        return "–"
    if isinstance(architecture, str):
        return architecture
    return architecture.get(method, "–")


def source_label(label: str, runs: Sequence[Mapping]) -> str:
    """The Source cell of our row: 'ours (tiny) (n=3)' for n seeds, with the evaluation cases behind each seed's
    value when the summaries record them (segmentation: n_cases), e.g. 'ours (tiny) (n=3 seeds x 5 cases)'."""
    cases = sorted({int(r["n_cases"]) for r in runs if isinstance(r.get("n_cases"), (int, float))})
    if not cases:
        return f"{label} (n={len(runs)})"
    shown = str(cases[0]) if len(cases) == 1 else f"{cases[0]}-{cases[-1]}"
    return f"{label} (n={len(runs)} seed{'s' if len(runs) != 1 else ''} x {shown} cases)"


def per_seed_table(ours: Mapping[str, Sequence[Mapping[str, float]]], columns: Sequence[tuple[str, str, float]]
                   ) -> pd.DataFrame:
    """Each seed's values behind a mean ± CI table: one row per (method, seed) with `columns` ((column name, metric
    key, scale) as in `ours_vs_paper`) and the evaluation cases; a missing value prints 'n/a'."""
    records = []
    for method, runs in ours.items():
        for i, r in enumerate(runs):
            row = {"Method": method, "Seed": r.get("seed", i)}
            row.update({c: _fmt(scale * float(r[key])) if r.get(key) is not None else "n/a"
                        for c, key, scale in columns})
            row["Cases"] = r.get("n_cases", "n/a")
            records.append(row)
    return pd.DataFrame.from_records(records)


def ours_vs_paper(paper_rows: Mapping[str, Mapping[str, object]], ours: Mapping[str, Sequence[Mapping[str, float]]],
                  columns: Sequence[tuple[str, str, float]], row_map: Mapping[str, str],
                  our_label: str = "ours", architecture: Architectures = None) -> pd.DataFrame:
    """One table in the paper's layout: every paper row, and under each reproduced row our mean ± CI.

    paper_rows: row name -> {column name: printed value}
    ours: method key (e.g. "mae") -> one dict per seed {metric key: value}
    columns: (column name, our metric key, scale), e.g. ("Aorta", "dice/Aorta", 100)
    row_map: paper row name -> our method key
    architecture: what our rows built (a name, or method key -> name); the `Architecture` column
    """
    records = []
    for name, values in paper_rows.items():
        records.append({"Method": name, "Architecture": paper_architecture(name), "Source": "paper",
                        **{c: _fmt(values.get(c)) for c, _, _ in columns}})
        method = row_map.get(name)
        if method is not None:
            runs = ours.get(method, [])
            cells = {c: format_ci([r.get(key, np.nan) for r in runs], scale) if runs else "not run"
                     for c, key, scale in columns}
            records.append({"Method": name, "Architecture": our_architecture(architecture, method),
                            "Source": source_label(our_label, runs), **cells})
    return pd.DataFrame.from_records(records)


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


# ----- the papers' tables, laid out as printed, ours beside ---------------------------------------------------------
Runs = Mapping[str, Sequence[Mapping[str, float]]]   # method -> one summary per seed


def table1_btcv(ours: Runs, label: str = "ours", architecture: Architectures = None) -> pd.DataFrame:
    """Table 1: average DSC/HD95 and per-organ DSC (%) on BTCV; ours under UNETR / +ImageNet / +MAE.

    architecture: the UNETR we built (a name, or method -> name), for the `Architecture` column."""
    t = paper_results()["selfmedmae"]["table1_btcv"]
    rows = {name: {"Avg DSC": r["avg_dsc"], "Avg HD95": r["avg_hd95"], **dict(zip(t["organs"], r["dsc"]))}
            for name, r in t["rows"].items()}
    cols = [("Avg DSC", "dice", 100.0), ("Avg HD95", "hd95", 1.0)]
    cols += [(organ, f"dice/{organ}", 100.0) for organ in t["organs"]]
    return segmentation_note(ours_vs_paper(rows, ours, cols, t["reproduced_rows"], label, architecture))


def table1_btcv_hd95(ours: Runs, label: str = "ours", architecture: Architectures = None) -> pd.DataFrame:
    """Companion to Table 1: HD95 (mm) per organ (the paper prints only the average)."""
    t = paper_results()["selfmedmae"]["table1_btcv"]
    rows = {name: {"Avg HD95": r["avg_hd95"]} for name, r in t["rows"].items()}
    cols = [("Avg HD95", "hd95", 1.0)] + [(o, f"hd95/{o}", 1.0) for o in t["organs"]]
    return segmentation_note(ours_vs_paper(rows, ours, cols, t["reproduced_rows"], label, architecture))


def table2_cxr14(ours: Runs, epochs: Mapping[str, int], label: str = "ours",
                 architecture: Architectures = None) -> pd.DataFrame:
    """Table 2: mean AUC (%) on the CXR14 test list; `epochs` gives our fine-tuning length per method and
    `architecture` the ViT we built (a name, or method -> name): the paper's rows are ViT-B/16, ours may not be."""
    records = []
    for r in paper_results()["selfmedmae"]["table2_cxr14"]["rows"]:
        base = {"Pre-training": r["pretraining"], "Data": r["data"]}
        records.append({"Architecture": r["model"], **base, "Epochs": _fmt(r["epochs"]), "Source": "paper",
                        "mAUC": f"{r['mauc']:.1f}"})
        method = r.get("reproduced")
        if method:
            runs = ours.get(method, [])
            records.append({"Architecture": our_architecture(architecture, method), **base,
                            "Epochs": str(epochs.get(method, "–")), "Source": source_label(label, runs),
                            "mAUC": format_ci([s.get("mAUC", np.nan) for s in runs], 100.0) if runs else "not run"})
    return pd.DataFrame.from_records(records)


def table3_brats(ours: Runs, ours_code_et: Runs, label: str = "ours", architecture: Architectures = None
                 ) -> pd.DataFrame:
    """Table 3 (upper): WT/ET/TC DSC (%) and HD95 (mm). ET is given under both conventions: label 3 (dataset.json,
    `ours`) and label 2 (the SelfMedMAE code, `ours_code_et`, which is what the paper's ET column measured).
    architecture: the UNETR we built (a name, or method -> name), for the `Architecture` column."""
    t = paper_results()["selfmedmae"]["table3_brats"]
    rows = {}
    for name, r in t["rows"].items():
        d, h = dict(zip(t["regions"], r["dsc"])), dict(zip(t["regions"], r["hd95"]))
        rows[name] = {"Avg DSC (ET=2)": r["avg_dsc"], "Avg HD95 (ET=2)": r["avg_hd95"], "WT DSC": d["WT"],
                      "WT HD95": h["WT"], "ET=2 DSC": d["ET"], "ET=2 HD95": h["ET"], "TC DSC": d["TC"],
                      "TC HD95": h["TC"]}
    merged = _merge_code_et(ours, ours_code_et)
    return segmentation_note(ours_vs_paper(rows, merged, TABLE3_BRATS_COLUMNS, t["reproduced_rows"], label,
                                           architecture), TABLE3_BRATS_NOTE)


# (column, metric key, scale): `code/` keys come from the fine-tunings trained on the SelfMedMAE code's labels
TABLE3_BRATS_COLUMNS = [
    ("Avg DSC (ET=3)", "dice", 100.0), ("Avg DSC (ET=2)", "code/dice", 100.0), ("Avg HD95 (ET=2)", "code/hd95", 1.0),
    ("WT DSC", "dice/WT", 100.0), ("WT HD95", "hd95/WT", 1.0), ("ET=3 DSC", "dice/ET", 100.0),
    ("ET=3 HD95", "hd95/ET", 1.0), ("ET=2 DSC", "code/dice/ET", 100.0), ("ET=2 HD95", "code/hd95/ET", 1.0),
    ("TC DSC", "dice/TC", 100.0), ("TC HD95", "hd95/TC", 1.0),
    ("WT DSC (ET=2 runs)", "code/dice/WT", 100.0), ("TC DSC (ET=2 runs)", "code/dice/TC", 100.0)]
TABLE3_BRATS_NOTE = (
    "Our ET=2 columns and the ET=2 averages come from separate fine-tunings trained on the SelfMedMAE code's labels "
    "(their WT and TC are the two '(ET=2 runs)' columns, so each ET=2 average is the mean of its three cells there); "
    "WT, TC, ET=3 and Avg DSC (ET=3) come from the fine-tunings trained on dataset.json's labels. Each seed's values "
    "are in table3_brats_seeds.")


def table3_brats_seeds(ours: Runs, ours_code_et: Runs) -> pd.DataFrame:
    """Each seed's values behind `table3_brats` (the same columns, `per_seed_table`), methods that ran only."""
    return per_seed_table({m: r for m, r in _merge_code_et(ours, ours_code_et).items() if r}, TABLE3_BRATS_COLUMNS)


def _merge_code_et(ours: Runs, ours_code_et: Runs) -> dict[str, list[dict]]:
    """Per method, each seed's dataset.json-convention summary with the same seed's SelfMedMAE-convention one."""
    return {m: [_with_code_et(a, b) for a, b in zip(runs, ours_code_et.get(m, []))] or list(runs)
            for m, runs in ours.items()}


def _with_code_et(summary: Mapping, code_summary: Mapping) -> dict:
    """One seed's dataset.json-convention summary plus the SelfMedMAE-convention one under `code/` keys."""
    return {**summary, **{f"code/{k}": v for k, v in code_summary.items() if isinstance(v, (int, float))}}


def table3_ablation(dataset: str, ours: Mapping[tuple[float, int], Sequence[Mapping[str, float]]],
                    our_epochs: Mapping[int, int], label: str = "ours", architecture: Architectures = None
                    ) -> pd.DataFrame:
    """Table 3 (lower): fine-tuned DSC by MAE mask ratio and pre-training length, paper beside ours.

    ours: (mask_ratio, paper epochs) -> summaries; our_epochs maps the paper's epoch count to ours (tiny is shorter).
    architecture: the UNETR we fine-tuned (a name, or (mask_ratio, paper epochs) -> name).
    Raises KeyError naming the ablations paper_results.yaml holds when it has none for `dataset`.
    """
    tables = paper_results()["selfmedmae"]
    if f"table3_ablation_{dataset}" not in tables:
        raise KeyError(f"the paper has no Table 3 ablation for dataset {dataset!r} (paper_results.yaml: "
                       f"{', '.join(k for k in tables if k.startswith('table3_ablation_'))})")
    records = []
    for r in tables[f"table3_ablation_{dataset}"]["rows"]:
        base = {"Mask ratio": f"{100 * r['mask_ratio']:g}%", "Pre-train epochs (paper)": r["epochs"]}
        paper = {"Pre-train epochs (ours)": "–", "Architecture": PAPER_UNETR, "Source": "paper",
                 "Avg DSC": f"{r['avg_dsc']:.2f}"}
        if "dsc" in r:
            paper.update({f"{n} DSC": f"{v:.2f}" for n, v in zip(("WT", "ET=2", "TC"), r["dsc"])})
        records.append({**base, **paper})
        runs = ours.get((r["mask_ratio"], r["epochs"]), [])
        mine = {"Pre-train epochs (ours)": our_epochs.get(r["epochs"], "–"),
                "Architecture": our_architecture(architecture, (r["mask_ratio"], r["epochs"])),
                "Source": source_label(label, runs),
                "Avg DSC": format_ci([s["dice"] for s in runs], 100.0) if runs else "not run"}
        if "dsc" in r:  # our ablation runs use ET = label 3 (dataset.json); the paper's ET is label 2
            mine.update({f"{n} DSC": format_ci([s.get(f"dice/{n.split('=')[0]}", np.nan) for s in runs], 100.0)
                         if runs else "not run" for n in ("WT", "ET=3", "TC")})
        records.append({**base, **mine})
    return segmentation_note(pd.DataFrame.from_records(records).fillna("–"))


def nnformer_comparison(ours: Runs, label: str = "ours", architecture: Architectures = None) -> pd.DataFrame:
    """The MAE + nnFormer paper's Table II (average DSC %), ours beside each model we ran.

    architecture: what we built per method key (nnformer_scratch, nnformer_mae, swin_unetr, unetr) -> name."""
    rows = paper_results()["mae_nnformer"]["table2_comparison"]["rows"]
    records = []
    for r in rows:
        records.append({"Model": r["model"], "Architecture": paper_architecture(r["model"]), "Source": "paper",
                        "Avg DSC": f"{r['avg_dsc']:.1f}"})
        runs = ours.get(r["reproduced"], []) if r["reproduced"] else []
        built = our_architecture(architecture, r["reproduced"]) if r["reproduced"] else "–"
        records.append({"Model": r["model"], "Architecture": built, "Source": source_label(label, runs),
                        "Avg DSC": format_ci([s["dice"] for s in runs], 100.0) if runs
                        else f"not run ({r.get('note', 'no runs')})"})
    return segmentation_note(pd.DataFrame.from_records(records))


def with_reference(df: pd.DataFrame, name: str, values: Mapping[str, object], architecture: str = "–",
                   source: str = "reference (this run)") -> pd.DataFrame:
    """`df` with one more row: a simple reference computed in the same run (`selfmae.baselines`), so the table
    itself shows what a model without deep learning scores. `name` fills the table's first column (Method /
    Model / Architecture); `values` maps column -> value (floats printed with 2 decimals); other cells are "–".
    The footnote (`df.attrs`) is kept."""
    row = {col: "–" for col in df.columns}
    row[df.columns[0]] = name
    if "Architecture" in df.columns and df.columns[0] != "Architecture":
        row["Architecture"] = architecture
    row["Source"] = source
    row.update({k: _fmt(v) for k, v in values.items() if k in df.columns})
    out = pd.concat([df, pd.DataFrame([row])], ignore_index=True)
    out.attrs = dict(df.attrs)
    return out
