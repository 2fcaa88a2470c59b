"""The tiny models LEARN on the phantoms, and each check fails when there is nothing to learn.

Every test trains a tiny-profile model for a few hundred steps (well under a minute on 2 CPU cores) and pairs it
with a control that must stay at chance: shuffled labels for the classifier and the segmenters, white noise for
the MAE. A change that stops the pipeline from learning (data, model, loss, optimiser) fails here, in CI.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.utils import set_rnd

from selfmae.config import load_config
from selfmae.data import build_datasets, prepare_synthetic
from selfmae.eval import dice_hd95, mean_auc
from selfmae.models import build_model
from selfmae.train.device import cpu_has_native_bf16
from selfmae.train.schedule import build_optimizer

pytestmark = pytest.mark.slow


def _stack(dataset, n=None):
    items = []
    for i in range(len(dataset) if n is None else min(n, len(dataset))):
        item = dataset[i]
        items += item if isinstance(item, list) else [item]
    return (torch.stack([torch.as_tensor(it["image"]).float() for it in items]),
            torch.stack([torch.as_tensor(it["label"]).float() for it in items]))


def _fit(model, cfg, steps, batch_fn, loss_fn, seed=0, bf16=False, **train_overrides):
    """`steps` AdamW steps; `bf16`: under CPU bf16 autocast with the fused AdamW, as the engine trains bf16 runs."""
    torch.manual_seed(seed)
    opt = build_optimizer(model, dict(cfg["train"], layer_decay=None, **train_overrides), fused=bf16)
    model.train()
    for _ in range(steps):
        x, y = batch_fn()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = loss_fn(out.float() if torch.is_tensor(out) else out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def cxr14(tmp_path_factory):
    root = prepare_synthetic("cxr14", tmp_path_factory.mktemp("cxr14"), n_images=320)
    cfg = load_config("finetune_cxr14", "tiny", {"data.data_dir": str(root)})
    ds = build_datasets(dict(cfg["data"]), "classify")
    set_rnd(ds["train"], 0)   # the same crops and flips whatever ran before in the session (as baselines.py does)
    return cfg, _stack(ds["train"]), _stack(ds["test"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["labels", "shuffled-labels"])
def test_tiny_classifier_learns_cxr14_phantoms(cxr14, shuffle, precision):
    """Real labels: the tiny ViT fits a training set of 64 phantoms (train mAUC >= 0.9). Shuffled labels (each
    image gets another image's label row): the test mAUC stays at chance. (64 images, plain AdamW at 1e-3: the
    tiny ViT fits slowly, see the README's learning check; this is the regime it fits in a test's time.)
    bf16: the same under CPU bf16 autocast (the matmul attention, the fused AdamW), on CPUs that compute bf16
    natively; where it is emulated the engine never trains in it, and the case is skipped."""
    if precision == "bf16" and not cpu_has_native_bf16():
        pytest.skip("this CPU emulates bf16 (slow); the engine trains fp32 here")
    cfg, (x, y), (x_test, y_test) = cxr14
    x, y = x[:64], y[:64]
    gen = torch.Generator().manual_seed(0)
    if shuffle:
        y = y[torch.randperm(len(y), generator=gen)]
    torch.manual_seed(0)
    model = build_model(dict(cfg["model"], drop_path=0.0), cfg["data"])

    def batch():
        idx = torch.randint(0, len(x), (32,), generator=gen)
        return x[idx], y[idx]

    _fit(model, cfg, 600, batch, torch.nn.functional.binary_cross_entropy_with_logits, bf16=precision == "bf16",
         lr=1e-3, weight_decay=0.0)
    with torch.no_grad():
        train_auc = mean_auc(y, model(x))["mean"]
        test_auc = mean_auc(y_test, model(x_test))["mean"]
    if shuffle:
        assert abs(test_auc - 0.5) < 0.1, f"shuffled labels should leave the test mAUC at chance, got {test_auc:.3f}"
    else:
        assert train_auc >= 0.9, f"the tiny ViT does not fit the CXR14 phantoms: train mAUC {train_auc:.3f}"


@pytest.fixture(scope="module")
def brats_volume(tmp_path_factory):
    root = prepare_synthetic("brats", tmp_path_factory.mktemp("brats"), n_cases=5, n_test=0)
    cfg = load_config("finetune_brats", "tiny", {"data.data_dir": str(root)})
    ds = build_datasets(dict(cfg["data"]), "segment")
    item = ds["val"][0]
    return cfg, torch.as_tensor(item["image"]).float()[None], torch.as_tensor(item["label"]).float()[None]


def _overfit_dice(model_cfg_overrides, brats_volume, shuffle, steps, lr=None):
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceLoss

    cfg, image, label = brats_volume
    cfg = dict(cfg, model={**cfg["model"], **model_cfg_overrides})
    target = label
    if shuffle:  # every voxel gets the label of a random other voxel: nothing to learn from the image
        perm = torch.randperm(label[0, 0].numel(), generator=torch.Generator().manual_seed(0))
        target = label.flatten(2)[:, :, perm].reshape(label.shape)
    torch.manual_seed(0)
    model = build_model(cfg["model"], cfg["data"])
    roi = cfg["data"]["roi_size"]
    gen = torch.Generator().manual_seed(0)

    def batch():
        starts = [[int(torch.randint(0, s - r + 1, (1,), generator=gen)) for s, r in zip(image.shape[2:], roi)]
                  for _ in range(4)]
        crop = lambda t, s: t[:, :, s[0]:s[0] + roi[0], s[1]:s[1] + roi[1], s[2]:s[2] + roi[2]]
        return torch.cat([crop(image, s) for s in starts]), torch.cat([crop(target, s) for s in starts])

    _fit(model, cfg, steps, batch, DiceLoss(sigmoid=True), **({"lr": lr} if lr else {}))
    with torch.no_grad():
        pred = sliding_window_inference(image, roi, 8, model, overlap=0.5).sigmoid() > 0.5
    return float(np.mean(dice_hd95(pred, label.bool(), hd95=False)["dice"]))


@pytest.mark.parametrize("shuffle", [False, True], ids=["labels", "shuffled-labels"])
def test_unetr_overfits_one_phantom_volume(brats_volume, shuffle):
    """The tiny UNETR overfits one BraTS phantom (mean DSC over TC/WT/ET >= 0.8 on it); trained on spatially
    shuffled labels it scores far below (no better than painting the whole brain)."""
    dice = _overfit_dice({}, brats_volume, shuffle, steps=150)
    if shuffle:
        assert dice < 0.4, f"shuffled labels should not be learnable, got DSC {dice:.3f}"
    else:
        assert dice >= 0.8, f"UNETR does not overfit one phantom volume: DSC {dice:.3f}"


@pytest.mark.parametrize("shuffle", [False, True], ids=["labels", "shuffled-labels"])
def test_nnformer_overfits_one_phantom_volume(brats_volume, shuffle):
    """The same for the tiny nnFormer (its tiny BTCV architecture and learning rate, built for 4 channels and
    3 regions). It learns more slowly than the UNETR (no full-resolution convolutions), hence more steps."""
    nn = load_config("finetune_nnformer_btcv", "tiny")
    dice = _overfit_dice({**nn["model"], "out_channels": 3}, brats_volume, shuffle, steps=300, lr=nn["train"]["lr"])
    if shuffle:
        assert dice < 0.4, f"shuffled labels should not be learnable, got DSC {dice:.3f}"
    else:
        assert dice >= 0.8, f"nnFormer does not overfit one phantom volume: DSC {dice:.3f}"


@pytest.mark.parametrize("noise", [False, True], ids=["phantoms", "white-noise"])
def test_mae_loss_falls_below_floor_on_phantoms(cxr14, noise):
    """The tiny CXR14 MAE's masked-patch loss (norm-pix) falls below 0.6 on held-out phantoms; on white noise,
    where a hidden patch cannot be predicted from the visible ones, it stays near the flat guess (>= 0.9)."""
    cfg, (x, _), (x_test, _) = cxr14
    pre = load_config("pretrain_cxr14", "tiny", {"data.data_dir": cfg["data"]["data_dir"]})
    if noise:
        gen = torch.Generator().manual_seed(1)
        x, x_test = torch.randn(x.shape, generator=gen), torch.randn(x_test.shape, generator=gen)
    torch.manual_seed(0)
    model = build_model(pre["model"], pre["data"])
    gen = torch.Generator().manual_seed(0)

    def batch():
        idx = torch.randint(0, len(x), (32,), generator=gen)
        return x[idx], None

    _fit(model, pre, 600, batch, lambda out, _: out[0])
    with torch.no_grad():
        torch.manual_seed(0)
        loss = float(model(x_test)[0])
    if noise:
        assert loss >= 0.9, f"an MAE cannot predict white noise; loss {loss:.3f} means the check is broken"
    else:
        assert loss < 0.6, f"the tiny MAE does not learn the phantoms: masked-patch loss {loss:.3f}"
