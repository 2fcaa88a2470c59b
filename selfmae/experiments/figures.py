"""Figure data as 2D arrays: MAE reconstructions (Fig. 2), segmentation label maps per checkpoint (Fig. 3) and the
data notebook's gallery of preprocessed validation items."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from selfmae.data.registry import dataset_spec
from selfmae.experiments.build import build_data, eval_classes, load_trained, sliding_window_settings


@torch.no_grad()
def reconstruction_examples(cfg: Mapping, checkpoint: str | Path, mask_ratio: float = 0.75, n: int = 1,
                            seed: int = 0, datasets: Mapping | None = None, channel: int = 0) -> list[dict]:
    """MAE reconstructions of `n` validation images for Fig. 2: dicts of 2D arrays original/masked/recon/pasted/error.

    The images are pre-training's validation items (`datasets`, default `build_data(cfg, "pretrain")`): the
    registry's `inspect_transforms`, already the MAE's input size. 3D volumes are shown at their middle axial slice;
    multi-channel inputs at `channel` (BraTS: 0 = FLAIR).
    """
    datasets = datasets or build_data(cfg, "pretrain", check=False)
    model = load_trained(cfg, checkpoint)
    out = []
    for i in range(n):
        item = datasets["val"][i]
        item = item[0] if isinstance(item, list) else item
        x = torch.as_tensor(item["image"])[None].float()
        torch.manual_seed(seed + i)
        loss, pred, mask = model(x, mask_ratio=mask_ratio)
        images = {"original": x, **model.reconstruct(x, pred, mask)}
        out.append({k: _display_slice(v[0, channel]) for k, v in images.items()} | {"loss": float(loss)})
    return out


def _display_slice(t: torch.Tensor) -> np.ndarray:
    """(H, W) or (X, Y, Z) -> a 2D array for display (middle axial slice, rotated so anterior is up)."""
    a = t.float().cpu().numpy()
    if a.ndim == 3:
        a = np.rot90(a[:, :, a.shape[2] // 2])
    return np.ascontiguousarray(a)


@torch.no_grad()
def segmentation_examples(cfg: Mapping, checkpoints: Mapping[str, str | Path], n_cases: int = 2,
                          datasets: Mapping | None = None) -> list[dict]:
    """Fig. 3: for `n_cases` validation volumes, the axial slice with most foreground: image, ground truth and
    each checkpoint's prediction as label maps (BTCV organ ids; BraTS 1 = WT only, 2 = TC, 3 = ET).

    Predictions are made as evaluation makes them: `selfmae.eval.sliding_window_predict` with the config's
    `sliding_window_settings` (data.roi_size, eval.sw_batch_size, eval.overlap), on the CPU."""
    from selfmae.eval import postprocess, sliding_window_predict

    datasets = datasets or build_data(cfg, check=False)
    models = {name: load_trained(cfg, path) for name, path in checkpoints.items()}
    window = sliding_window_settings(cfg)
    spec = dataset_spec(cfg["data"])
    kind, brats = spec.segmentation_kind, spec.regions   # regions: sigmoid TC/WT/ET channels, not class ids
    _, indices = eval_classes(cfg["data"])
    cases = []
    for i in range(min(n_cases, len(datasets["val"]))):
        item = datasets["val"][i]
        image = torch.as_tensor(item["image"])[None].float()
        label = torch.as_tensor(item["label"])
        maps = {"ground truth": _label_map(label, brats, indices)}
        for name, model in models.items():
            binary = postprocess(sliding_window_predict(model, image, **window), kind)[0]   # as evaluation scores it
            maps[name] = _label_map(binary if brats else binary.argmax(0, keepdim=True), brats, indices)
        z = int(np.argmax((maps["ground truth"] > 0).sum(axis=(0, 1))))
        case = {"image": np.rot90(image[0, 0, :, :, z].numpy()), "title": str(item.get("case_id", i))}
        case.update({k: np.rot90(v[:, :, z]) for k, v in maps.items()})
        cases.append(case)
    return cases


def _label_map(label: torch.Tensor, brats: bool, indices: Sequence[int] | None = None) -> np.ndarray:
    """(1, X, Y, Z) ids, or BraTS (3, X, Y, Z) TC/WT/ET channels -> (X, Y, Z) display ids: the evaluated classes
    numbered 1..K in `indices` order (other labels 0), or for BraTS WT 1, TC 2, ET 3."""
    label = torch.as_tensor(label)
    if not brats:
        ids = label[0].cpu().numpy().astype(np.int16)
        out = np.zeros_like(ids)
        for k, index in enumerate(indices or range(1, int(ids.max()) + 1)):
            out[ids == index] = k + 1
        return out
    tc, wt, et = (label[c].bool().cpu().numpy() for c in range(3))
    out = np.zeros(wt.shape, np.int16)
    out[wt], out[tc], out[et] = 1, 2, 3
    return out


def example_gallery(cfg: Mapping, n: int = 4, datasets: Mapping | None = None) -> dict:
    """A few preprocessed validation items as 2D images + label overlays + titles, for the data notebook.

    Returns {"images": [...], "masks": [... or None], "titles": [...], "n_labels": int}.
    """
    datasets = datasets or build_data(cfg, check=False)
    names, indices = eval_classes(cfg["data"])
    brats = dataset_spec(cfg["data"]).regions   # sigmoid region channels (TC/WT/ET), not class ids
    out = {"images": [], "masks": [], "titles": [], "n_labels": len(names)}
    for i in range(min(n, len(datasets["val"]))):
        item = datasets["val"][i]
        image = torch.as_tensor(item["image"]).float()
        label = torch.as_tensor(item["label"])
        case = str(item.get("case_id", i))
        if cfg["task"] == "classify":
            found = [names[j] for j in np.flatnonzero(label.numpy() > 0.5)] or ["No Finding"]
            out["images"].append(image[0].numpy())
            out["masks"].append(None)
            out["titles"].append(f"{case}\n{', '.join(found)}")
            continue
        ids = _label_map(label, brats, indices)
        z = int(np.argmax((ids > 0).sum(axis=(0, 1))))
        for c in range(image.shape[0]) if brats else (0,):
            out["images"].append(np.rot90(image[c, :, :, z].numpy()))
            out["masks"].append(np.rot90(ids[:, :, z]))
            channel = f" · channel {c}" if brats else ""
            out["titles"].append(f"{case} · slice {z}{channel}")
    return out

