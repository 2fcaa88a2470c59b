"""Pinned numbers of four tiny engine runs: a change to the training loop must not change a result.

Finished runs are reused by their settings, so the same seed has to give the same weights and metrics as the code
that trained them. The numbers below were computed by the engine of commit b571d0c (before `_train` was split into
resume / epoch / save pieces). Runs cover the MAE task with augmentation, gradient accumulation, clipping, warm-up
and mid-epoch checkpoints, a classifier, and segmentation under both label conventions (classes and regions).

Like the MIM golden losses (test_mim_frozen.py), the comparison is 1e-4 relative: another CPU kind's kernels move
the last bits of every step, while a changed data order, RNG stream, schedule or accumulation moves these numbers
by far more. Regenerate (only for an intended change of results) with `python tests/test_engine_golden.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine import (_quiet_single_thread, base_cfg, cls_data, make_mae, mae_data, seg_data,  # noqa: E402,F401
                         tiny_classifier, tiny_segmenter)

from selfmae.train import ClassificationTask, MAETask, SegmentationTask, fit  # noqa: E402


def run_case(name: str, out_dir: Path):
    """Train case `name` in `out_dir`; returns (RunResult, the trained model)."""
    if name == "mae":
        model, task = make_mae(), MAETask()
        train, val = mae_data(12, 0, noise=True), mae_data(4, 1)
        cfg = base_cfg(epochs=3, batch_size=2, accum_steps=2, ckpt_every_steps=2)
    elif name == "classify":
        torch.manual_seed(0)
        model, task = tiny_classifier(), ClassificationTask(3, ["a", "b", "c"])
        train, val, cfg = cls_data(16, 0), cls_data(8, 1), base_cfg(epochs=2)
    else:
        torch.manual_seed(0)
        kind = name.removeprefix("seg_")
        model = tiny_segmenter(1, 3)
        task = SegmentationTask(kind, roi_size=(8, 8, 8), spacing=(1.5, 1.5, 2.0),
                                class_names=["one", "two"] if kind == "classes" else ["TC", "WT", "ET"])
        train, val = seg_data(4, 0, kind, crops=True), seg_data(2, 1, kind, crops=False)
        cfg = base_cfg(epochs=2, batch_size=2, lr=3e-2)
    return fit(model, task, train, val, cfg, out_dir), model


def summary(name: str, out_dir: Path) -> dict:
    """What is pinned: per-epoch train loss, lr and main metric, the step count, and sum |w| of the weights."""
    res, model = run_case(name, out_dir)
    return {"train_loss": [r["train_loss"] for r in res.history], "lr": [r["lr"] for r in res.history],
            res.main_metric: [r.get(res.main_metric) for r in res.history], "steps": res.steps,
            "abs_weights": float(sum(p.detach().double().abs().sum() for p in model.parameters()))}


GOLDEN: dict[str, dict] = {
    'mae': {'train_loss': [1.7822037562727928, 1.6197168938815594, 1.4894116918245952],
            'lr': [0.003, 0.0022500000000000003, 0.00020096189432334193],
            'val_loss': [0.7468665689229965, 0.7475482225418091, 0.7489720582962036], 'steps': 9,
            'abs_weights': 316.3053073027331},
    'classify': {'train_loss': [0.6743119060993195, 0.5856199413537979], 'lr': [0.003, 0.0004393398282201788],
                 'mAUC': [0.8333333333333334, 1.0], 'steps': 8, 'abs_weights': 32.01425523890066},
    'seg_classes': {'train_loss': [1.7480913996696472, 1.5145156383514404], 'lr': [0.03, 0.015],
                    'dice': [0.30034731266822956, 0.2967548351899759], 'steps': 4, 'abs_weights': 28.634936211979948},
    'seg_regions': {'train_loss': [0.7662402093410492, 0.6972916424274445], 'lr': [0.03, 0.015],
                    'dice': [0.3368202610314874, 0.26830048182463245], 'steps': 4, 'abs_weights': 29.47316643560771},
}


@pytest.mark.parametrize("name", ["mae", "classify", "seg_classes", "seg_regions"])
def test_engine_results_are_pinned(name, tmp_path):
    got, want = summary(name, tmp_path / name), GOLDEN[name]
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key


if __name__ == "__main__":   # print the table above, computed by the code of this tree
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("mae", "classify", "seg_classes", "seg_regions"):
            print(f"    {case!r}: {summary(case, Path(tmp) / case)!r},")
