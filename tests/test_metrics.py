"""Paper metrics on hand-made cases with known answers: AUC, Dice, HD95 in mm, sliding-window evaluation."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from selfmae.eval import dice_hd95, evaluate_segmentation, mean_auc, sliding_window_predict, summarize_segmentation


def cube(shape=(12, 12, 12), lo=(4, 4, 2), size=4) -> torch.Tensor:
    m = torch.zeros(1, 1, *shape)
    m[0, 0, lo[0]:lo[0] + size, lo[1]:lo[1] + size, lo[2]:lo[2] + size] = 1
    return m


# --------------------------------------------------------------------------------------------- AUC


def test_auc_worked_example():
    # label A: positives score .35 and .8, negatives .1 and .4 -> pairs won: (.35>.1), (.8>.1), (.8>.4) = 3/4
    # label B: positives .9 .7 .2, negative .5 -> 2/3
    y = [[0, 0], [0, 1], [1, 1], [1, 1]]
    s = [[.1, .5], [.4, .9], [.35, .7], [.8, .2]]
    out = mean_auc(y, s, ["A", "B"])
    assert out["per_class"]["A"] == pytest.approx(0.75)
    assert out["per_class"]["B"] == pytest.approx(2 / 3)
    assert out["mean"] == pytest.approx((0.75 + 2 / 3) / 2) and out["excluded"] == []


def test_auc_single_class_column_is_excluded_not_fatal():
    y = np.array([[0, 1, 0], [1, 1, 0], [0, 1, 0], [1, 1, 0]])
    s = np.array([[.2, .3, .1], [.9, .4, .5], [.1, .8, .2], [.7, .6, .3]])
    out = mean_auc(torch.tensor(y), torch.tensor(s), ["a", "always", "never"])
    assert out["excluded"] == ["always", "never"]
    assert math.isnan(out["per_class"]["always"]) and out["mean"] == pytest.approx(1.0)
    assert math.isnan(mean_auc(np.ones((3, 1)), np.zeros((3, 1)))["mean"])


# --------------------------------------------------------------------------------------------- Dice / HD95


def test_perfect_prediction_dice_1_hd95_0():
    m = cube()
    v = dice_hd95(m, m, spacing=(0.8, 0.8, 2.5), names=["organ"])
    assert v["dice"][0, 0] == pytest.approx(1.0) and v["hd95"][0, 0] == pytest.approx(0.0)


def test_shifted_cube_hd95_in_mm_with_anisotropic_spacing():
    """A 4^3 cube moved 2 voxels along the last axis (2.5 mm voxels there, 0.8 mm in-plane).

    The 16 voxels of each cube's far face are 2 voxels = 5.0 mm from the other's surface and every other surface
    voxel is nearer, and 16 of 56 surface voxels is more than 5 %: HD95 = 5.0 mm. Overlap 32 of 64+64: Dice 0.5.
    The same move along the first axis measures 2 x 0.8 = 1.6 mm.
    """
    gt = cube(lo=(4, 4, 2))
    v = dice_hd95(cube(lo=(4, 4, 4)), gt, spacing=(0.8, 0.8, 2.5))
    assert v["dice"][0, 0] == pytest.approx(0.5) and v["hd95"][0, 0] == pytest.approx(5.0)
    v = dice_hd95(cube(lo=(6, 4, 2)), gt, spacing=(0.8, 0.8, 2.5))
    assert v["hd95"][0, 0] == pytest.approx(1.6)


def test_empty_masks_give_nan_and_are_left_out_of_means():
    gt = torch.cat([cube(), cube(), torch.zeros_like(cube())], 1)          # class 3 absent in ground truth
    pred = torch.cat([cube(), torch.zeros_like(cube()), cube()], 1)        # class 2 missed entirely
    v = dice_hd95(pred, gt, spacing=(1, 1, 1), names=["hit", "missed", "absent"])
    assert v["dice"][0].tolist()[:2] == [1.0, 0.0] and math.isnan(v["dice"][0, 2])
    assert v["hd95"][0, 0] == 0.0 and math.isnan(v["hd95"][0, 1]) and math.isnan(v["hd95"][0, 2])
    s = summarize_segmentation(v)
    assert s["dice"] == pytest.approx(0.5) and s["hd95"] == pytest.approx(0.0)
    assert math.isnan(s["dice/absent"])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        dice_hd95(cube(), torch.zeros(1, 2, 12, 12, 12))


# --------------------------------------------------------------------------------------------- whole-volume eval


class Oracle(torch.nn.Module):
    """A perfect segmenter for images that equal their label map: logits 10 for the voxel's own class."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([(x == c).float() * 10 for c in range(self.n_classes)], 1)


def test_sliding_window_evaluation_of_a_perfect_model_and_per_case_csv(tmp_path):
    label = torch.zeros(1, 1, 14, 13, 12)
    label[0, 0, 2:7, 2:7, 2:7] = 1
    label[0, 0, 8:12, 5:11, 3:9] = 2
    model = Oracle(3)
    out = sliding_window_predict(model, label, roi_size=(8, 8, 8), overlap=0.5)
    assert out.shape == (1, 3, 14, 13, 12)
    loader = [{"image": label, "label": label.long(), "case_id": ["p1"]},
              {"image": label, "label": label.long(), "case_id": ["p,2"]}]
    res = evaluate_segmentation(model, loader, kind="btcv", roi_size=(8, 8, 8), class_names=["spleen", "liver"],
                                spacing=(1.5, 1.5, 2.0), out_csv=tmp_path / "cases.csv")
    assert res.summary["dice"] == pytest.approx(1.0) and res.summary["hd95"] == pytest.approx(0.0)
    rows = list(csv.DictReader(open(tmp_path / "cases.csv")))
    assert [(r["case_id"], r["class"]) for r in rows] == [("p1", "spleen"), ("p1", "liver"), ("p,2", "spleen"),
                                                          ("p,2", "liver")]
    assert float(rows[0]["dice"]) == 1.0

    # validation's Dice-only mode: the same Dice, no HD95 keys or column
    quick = evaluate_segmentation(model, loader, kind="btcv", roi_size=(8, 8, 8), class_names=["spleen", "liver"],
                                  spacing=(1.5, 1.5, 2.0), out_csv=tmp_path / "quick.csv", hd95=False)
    assert quick.summary == {k: v for k, v in res.summary.items() if not k.startswith("hd95")}
    assert list(csv.DictReader(open(tmp_path / "quick.csv")))[0].keys() == {"case_id", "class", "dice"}


def test_brats_regions_are_thresholded_sigmoids():
    target = torch.cat([cube(), cube(size=6, lo=(3, 3, 1)), torch.zeros_like(cube())], 1)
    model = lambda x: (target * 2 - 1) * 10     # noqa: E731 (logits agreeing with the target)
    res = evaluate_segmentation(model, [{"image": torch.zeros(1, 4, 12, 12, 12), "label": target}], kind="brats",
                                roi_size=(12, 12, 12), class_names=["TC", "WT", "ET"], spacing=(1, 1, 1))
    assert res.summary["dice/TC"] == 1.0 and res.summary["dice/WT"] == 1.0 and math.isnan(res.summary["dice/ET"])
