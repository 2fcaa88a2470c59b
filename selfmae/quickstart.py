"""Helpers of the real-data quickstart notebooks (12 for MedMNIST 2D, 14 for MedMNIST 3D): which MedMNIST file
to train on (`medmnist_source`), how captions name it (`medmnist_description`), and the scratch-vs-MAE table
(`quickstart_table`)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def quickstart_table(results: Mapping[str, Sequence[Mapping[str, float]]], metric: str = "mAUC",
                     labels: Mapping[str, str] | None = None, scale: float = 100.0,
                     architecture: str | Mapping[str, str] | None = None,
                     reference: tuple[str, float] | None = None):
    """Scratch vs MAE (or any methods) on one dataset: mean ± 95 % CI over seeds and the per-seed values.

    results: method -> list of run summaries (finetune_study's output); architecture: the model built (a name, or
    method -> name, see `selfmae.models.architecture_name`); reference: (name, value as a fraction) of a simple
    reference computed in the same run (`selfmae.baselines.finetune_reference`), added as the last row. Returns a
    DataFrame, one row per method.
    """
    import pandas as pd

    from selfmae.report import format_ci
    from selfmae.paper_tables import our_architecture

    rows = []
    for method, runs in results.items():
        values = [float(r[metric]) for r in runs if r.get(metric) is not None]
        rows.append({"method": (labels or {}).get(method, method),
                     "Architecture": our_architecture(architecture, method), "seeds": len(values),
                     f"{metric} (%)": format_ci(values, scale=scale),
                     "per seed": ", ".join(f"{scale * v:.2f}" for v in values)})
    if reference is not None:
        rows.append({"method": reference[0], "Architecture": "–", "seeds": "–",
                     f"{metric} (%)": f"{scale * float(reference[1]):.2f}", "per seed": "–"})
    return pd.DataFrame(rows)


def medmnist_source(data_dir: str | Path = "", spatial_dims: int = 2) -> str:
    """The MedMNIST file notebook 12 (2D) or 14 (3D) trains on: `data_dir` when it is a .npz or holds one
    (directly, or in a `medmnist3d/` (3D only) or `medmnist/` sub-folder); the real file shipped with the package for
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
        return "PneumoniaMNIST (real, the balanced subset shipped with selfmae)"
    if path.resolve() == MEDMNIST3D_SAMPLE.resolve():
        return "AdrenalMNIST3D (real, the MedMNIST v2 file shipped with selfmae)"
    arrays = load_npz(path)
    sizes = "/".join(str(len(arrays[f"{s}_images"])) for s in ("train", "val", "test"))
    kind = "volumes" if file_spatial_dims(arrays["train_images"]) == 3 else "images"
    return f"{path.name}: {sizes} train/val/test {kind}"

