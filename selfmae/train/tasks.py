"""What each kind of run trains and measures; the engine is the same for all of them.

A task is any object with
    main_metric: str, higher_is_better: bool   -- picks best.pt
    val_batch_size: int | None                 -- None: the engine uses train.batch_size
    step(model, batch, device) -> (loss, n_samples)   -- mean loss over the micro-batch, called under autocast
    evaluate(model, loader, device) -> dict[str, float]  -- called under no_grad/autocast with the bare model
Batches are MONAI-collated dicts: "image" (B, C, *spatial), "label" ((B, L) floats for classification, (B, 1, ...)
class indices for btcv, (B, 3, ...) regions for brats).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

import torch
from monai.data import MetaTensor
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from selfmae.eval import evaluate_segmentation, mean_auc
from selfmae.eval.inference import CLASSES, check_kind


class Task(Protocol):
    main_metric: str
    higher_is_better: bool
    val_batch_size: int | None

    def step(self, model: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, int]: ...

    def evaluate(self, model: nn.Module, loader: Iterable[dict], device: torch.device) -> dict[str, float]: ...


def _tensor(x: Any, device: torch.device) -> torch.Tensor:
    """A plain tensor on `device` (MONAI MetaTensors carry metadata the losses do not need)."""
    x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return x.to(device, non_blocking=True)


def _image(batch: dict, device: torch.device) -> torch.Tensor:
    return _tensor(batch["image"], device)


@dataclass
class MAETask:
    """MAE pre-training: the model's forward(x) returns (loss, pred, mask); val = mean masked MSE (val_loss)."""
    main_metric: str = "val_loss"
    higher_is_better: bool = False
    val_batch_size: int | None = None

    def step(self, model: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, int]:
        x = _image(batch, device)
        loss, _, _ = model(x)
        return loss.float(), x.shape[0]

    def evaluate(self, model: nn.Module, loader: Iterable[dict], device: torch.device) -> dict[str, float]:
        total, n = 0.0, 0
        for batch in loader:
            loss, b = self.step(model, batch, device)
            total += float(loss) * b
            n += b
        return {"val_loss": total / max(n, 1)}


@dataclass
class ClassificationTask:
    """Image-level classification: val = mean AUC over labels (mAUC), accuracy (acc) and val_loss.

    Multi-label or binary (CXR14, MedMNIST binary files): BCE-with-logits on (B, L) 0/1 targets, sigmoid scores,
    acc = mean over labels of the accuracy at 0.5. `multiclass` (MedMNIST class ids, one-hot (B, K) targets):
    softmax cross-entropy, softmax scores, acc = argmax accuracy; the AUC of each class is one-vs-rest (the
    MedMNIST v2 definitions of AUC and ACC).
    """
    num_classes: int
    label_names: Sequence[str] | None = None
    multiclass: bool = False
    main_metric: str = "mAUC"
    higher_is_better: bool = True
    val_batch_size: int | None = None
    loss_fn: nn.Module | None = None

    def __post_init__(self) -> None:
        if self.loss_fn is None:
            self.loss_fn = nn.CrossEntropyLoss() if self.multiclass else nn.BCEWithLogitsLoss()

    def step(self, model: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, int]:
        x = _image(batch, device)
        y = _tensor(batch["label"], device).float()
        return self.loss_fn(model(x).float(), y), x.shape[0]

    def evaluate(self, model: nn.Module, loader: Iterable[dict], device: torch.device) -> dict[str, float]:
        scores, labels, total = [], [], 0.0
        for batch in loader:
            x = _image(batch, device)
            y = _tensor(batch["label"], device).float()
            logits = model(x).float()
            total += float(self.loss_fn(logits, y)) * x.shape[0]
            scores.append((torch.softmax(logits, 1) if self.multiclass else torch.sigmoid(logits)).cpu())
            labels.append(y.cpu())
        names = list(self.label_names) if self.label_names else [str(i) for i in range(self.num_classes)]
        y, p = torch.cat(labels), torch.cat(scores)
        auc = mean_auc(y, p, names)
        hits = (p.argmax(1) == y.argmax(1)) if self.multiclass else ((p > 0.5) == (y > 0.5))
        acc = hits.float().mean()
        out = {"mAUC": auc["mean"], "acc": float(acc), "val_loss": total / max(len(y), 1)}
        out.update({f"auc/{k}": v for k, v in auc["per_class"].items()})
        return out


@dataclass
class SegmentationTask:
    """3D segmentation with UNETR-like models.

    kind (the label convention, `selfmae.eval.inference`): "classes": DiceCE on softmax outputs (labels (B,1,...)
    class indices); "regions": Dice on sigmoid region outputs (labels (B,R,...)); ValueError for another. Val: sliding-window inference on whole volumes (overlap 0.5), Dice per class ->
    means; main metric "dice" (HD95 is left to the final evaluation: its distance transforms would cost more
    than the rest of each validation). class_indices: output channels to evaluate (classes: default 1..K).
    """
    kind: str
    roi_size: Sequence[int]
    spacing: Sequence[float] | None
    class_names: Sequence[str]
    sw_batch_size: int = 1
    overlap: float = 0.5
    class_indices: Sequence[int] | None = None
    main_metric: str = "dice"
    higher_is_better: bool = True
    val_batch_size: int | None = 1
    loss_fn: nn.Module | None = None

    def __post_init__(self) -> None:
        if self.loss_fn is None:
            self.loss_fn = (DiceCELoss(to_onehot_y=True, softmax=True) if check_kind(self.kind) == CLASSES
                            else DiceLoss(sigmoid=True))

    def step(self, model: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, int]:
        x = _image(batch, device)
        y = _tensor(batch["label"], device)
        return self.loss_fn(model(x).float(), y), x.shape[0]

    def evaluate(self, model: nn.Module, loader: Iterable[dict], device: torch.device,
                 out_csv: Any = None) -> dict[str, float]:
        summary = evaluate_segmentation(model, loader, kind=self.kind, roi_size=self.roi_size,
                                        class_names=self.class_names, class_indices=self.class_indices,
                                        spacing=self.spacing, sw_batch_size=self.sw_batch_size,
                                        overlap=self.overlap, device=device, out_csv=out_csv, hd95=False).summary
        # per-class status counts stay in the final evaluation's summary; validation rows keep the totals
        return {k: v for k, v in summary.items() if not (k.startswith("n_") and "/" in k)}
