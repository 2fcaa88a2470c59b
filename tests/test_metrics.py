"""Paper metrics on hand-made cases with known answers: AUC, Dice, HD95 in mm, sliding-window evaluation."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from selfmae.eval import dice_hd95, evaluate_segmentation, mean_auc, sliding_window_predict, summarize_segmentation
from selfmae.eval.metrics import worst_hd95


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


def test_missed_false_positive_and_absent_structures_follow_the_stated_conventions():
    """Missed or spurious: Dice 0 and HD95 = the image diagonal in mm; absent from both: Dice 1, HD95 0."""
    gt = torch.cat([cube(), cube(), torch.zeros_like(cube()), torch.zeros_like(cube())], 1)
    pred = torch.cat([cube(), torch.zeros_like(cube()), cube(), torch.zeros_like(cube())], 1)
    v = dice_hd95(pred, gt, spacing=(1, 1, 2), names=["hit", "missed", "spurious", "absent"])
    diagonal = math.sqrt(12 ** 2 + 12 ** 2 + 24 ** 2)
    assert v["status"][0].tolist() == ["present", "missed", "false_positive", "absent"]
    assert v["dice"][0].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert v["hd95"][0].tolist() == pytest.approx([0.0, diagonal, diagonal, 0.0])
    s = summarize_segmentation(v)
    assert s["dice"] == pytest.approx(0.5) and s["hd95"] == pytest.approx(diagonal / 2)
    assert (s["n_missed"], s["n_false_positive"], s["n_absent"], s["n_missed/missed"]) == (1, 1, 1, 1)


def test_brats_worst_hd95_is_the_image_diagonal():
    assert worst_hd95((240, 240, 155), (1, 1, 1)) == pytest.approx(373.13, abs=0.005)


def test_missing_an_organ_never_scores_better_than_finding_it():
    """The issue's four cases: found every time 2 voxels off vs exact once and missed three times."""
    gt = cube(lo=(4, 4, 2))
    near = dice_hd95(torch.cat([cube(lo=(4, 4, 4))] * 4), torch.cat([gt] * 4))
    flaky = dice_hd95(torch.cat([gt] + [torch.zeros_like(gt)] * 3), torch.cat([gt] * 4))
    s_near, s_flaky = summarize_segmentation(near), summarize_segmentation(flaky)
    assert s_near["hd95"] == pytest.approx(2.0)
    assert s_flaky["hd95"] == pytest.approx(3 * worst_hd95((12, 12, 12)) / 4) and s_flaky["hd95"] > s_near["hd95"]
    assert s_flaky["n_missed"] == 3


def test_excluding_empty_structures_is_counted_and_never_silent():
    gt = torch.cat([cube(), torch.zeros_like(cube())], 1)
    v = dice_hd95(gt, gt, names=["organ", "never"], empty="exclude")
    assert math.isnan(v["dice"][0, 1]) and math.isnan(v["hd95"][0, 1])
    s = summarize_segmentation(v)
    assert s["n_excluded"] == 1 and math.isnan(s["dice/never"]) and math.isnan(s["dice"])   # not dropped
    with pytest.raises(ValueError, match="empty must be"):
        dice_hd95(gt, gt, empty="ignore")


def test_an_unexplained_nan_in_a_mean_is_an_error():
    values = {"names": ["a", "b"], "dice": np.array([[1.0, np.nan]])}
    with pytest.raises(ValueError, match="without a stated convention"):
        summarize_segmentation(values)


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
    res = evaluate_segmentation(model, loader, kind="classes", roi_size=(8, 8, 8), class_names=["spleen", "liver"],
                                spacing=(1.5, 1.5, 2.0), out_csv=tmp_path / "cases.csv")
    assert res.summary["dice"] == pytest.approx(1.0) and res.summary["hd95"] == pytest.approx(0.0)
    rows = list(csv.DictReader(open(tmp_path / "cases.csv")))
    assert [(r["case_id"], r["class"]) for r in rows] == [("p1", "spleen"), ("p1", "liver"), ("p,2", "spleen"),
                                                          ("p,2", "liver")]
    assert float(rows[0]["dice"]) == 1.0 and rows[0]["status"] == "present"

    # validation's Dice-only mode: the same Dice, no HD95 keys or column
    quick = evaluate_segmentation(model, loader, kind="classes", roi_size=(8, 8, 8), class_names=["spleen", "liver"],
                                  spacing=(1.5, 1.5, 2.0), out_csv=tmp_path / "quick.csv", hd95=False)
    assert quick.summary == {k: v for k, v in res.summary.items() if not k.startswith("hd95")}
    assert list(csv.DictReader(open(tmp_path / "quick.csv")))[0].keys() == {"case_id", "class", "dice", "status"}


def test_brats_regions_are_thresholded_sigmoids():
    target = torch.cat([cube(), cube(size=6, lo=(3, 3, 1)), torch.zeros_like(cube())], 1)
    model = lambda x: (target * 2 - 1) * 10     # noqa: E731 (logits agreeing with the target)
    res = evaluate_segmentation(model, [{"image": torch.zeros(1, 4, 12, 12, 12), "label": target}], kind="regions",
                                roi_size=(12, 12, 12), class_names=["TC", "WT", "ET"], spacing=(1, 1, 1))
    assert res.summary["dice/TC"] == 1.0 and res.summary["dice/WT"] == 1.0
    assert res.summary["dice/ET"] == 1.0 and res.summary["n_absent/ET"] == 1    # absent from both: stated, counted


def test_the_mauc_says_how_many_labels_it_averages_and_an_undefined_one_is_an_error(caplog, tmp_path):
    """A label with one value in the split has no AUC: left out of the mean, named in a warning, counted in
    mAUC_labels; no label left is a DataError (was: mAUC NaN, exit status 0). summary.json is strict JSON: NaN is
    written as null and read back as NaN."""
    import json
    import math

    from selfmae.data import DataError
    from selfmae.experiments.stages import auc_coverage, read_summary, write_summary

    cfg = {"data": {"dataset": "cxr14", "data_dir": str(tmp_path)}}
    metrics = {"mAUC": 1.0, "auc/Mass": 1.0, "auc/Effusion": float("nan"), "auc/Hernia": float("nan")}
    with caplog.at_level("WARNING", logger="selfmae.experiments"):
        assert auc_coverage(metrics, "test", 3, cfg) == {"mAUC_labels": 1}
    assert "mean over 1 of 3 labels: Effusion, Hernia" in caplog.text and "3 test image(s)" in caplog.text
    with pytest.raises(DataError, match="give no label both positive and negative"):
        auc_coverage({"mAUC": float("nan"), "auc/Mass": float("nan")}, "test", 1, cfg)

    path = write_summary(tmp_path / "summary.json", {"split": "test", "init": None, **metrics, "mAUC_labels": 1})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))["auc/Hernia"] is None
    back = read_summary(path)
    assert math.isnan(back["auc/Hernia"]) and back["init"] is None and back["mAUC"] == 1.0
