"""The training engine with tiny stand-in models (no dependency on selfmae.models / selfmae.data).

Stand-ins: TinyMAE (forward -> (loss, pred, mask), random masking from torch's RNG), a tiny conv classifier and a
tiny 3D conv segmenter, on synthetic tensors. test_ddp.py imports the builders below.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch
from monai.data import Dataset
from monai.transforms import RandGaussianNoised, RandSpatialCropSamplesd
from torch import nn

from selfmae.train import (CheckpointError, ClassificationTask, MAETask, OutputDirError, SegmentationTask,
                           TrainConfigError, WarmupCosine, build_optimizer, build_scheduler, fit,
                           optimizer_steps_per_epoch, resolve_precision)
from selfmae.train import device as device_mod
from selfmae.train.logs import TIMING

# --------------------------------------------------------------------------------------------- stand-ins


class TinyMAE(nn.Module):
    """MAE-like: 8x8 images in 4 patches of 4x4; half hidden at random; loss = MSE on hidden patches."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 16))
        self.net = nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, 64))

    def patchify(self, x: torch.Tensor) -> torch.Tensor:   # (B,1,8,8) -> (B,4,16)
        return x.unfold(2, 4, 4).unfold(3, 4, 4).reshape(x.shape[0], 4, 16)

    def forward(self, x: torch.Tensor):
        p = self.patchify(x)
        noise = torch.rand(x.shape[0], 4, device=x.device)
        mask = (noise.argsort(1).argsort(1) < 2).float()            # 1 = hidden
        visible = (p + self.pos_embed) * (1 - mask[..., None])
        pred = self.net(visible.flatten(1)).view_as(p)
        loss = (((pred - p) ** 2).mean(-1) * mask).sum() / mask.sum()
        return loss, pred, mask


def tiny_classifier(n_labels: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, n_labels))


def tiny_segmenter(in_ch: int = 1, out_ch: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv3d(in_ch, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, out_ch, 1))


def mae_data(n: int, seed: int, noise: bool = False) -> Dataset:
    """Images a*ramp + b: hidden patches are predictable from visible ones."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-1, 1, 8)[None, :, None] * torch.ones(1, 8, 8)
    items = [{"image": a * ramp + b, "case_id": f"c{i}"}
             for i, (a, b) in enumerate(torch.randn(n, 2, generator=g).tolist())]
    return Dataset(items, transform=RandGaussianNoised(keys="image", prob=1.0, std=0.05) if noise else None)


def cls_data(n: int, seed: int) -> Dataset:
    patterns = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(123))   # shared by all splits
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, 3, generator=g) > 0.5).float()
    images = torch.einsum("nk,kchw->nchw", labels, patterns) + 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    return Dataset([{"image": images[i], "label": labels[i], "case_id": f"c{i}"} for i in range(n)])


def seg_data(n: int, seed: int, kind: str, crops: bool) -> Dataset:
    """12^3 volumes with two cubes (intensity 1 and 2); kind "classes": labels 0/1/2, "regions": (TC, WT, ET)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        lab = torch.zeros(1, 12, 12, 12, dtype=torch.long)
        for cls in (1, 2):
            o = torch.randint(0, 7, (3,), generator=g).tolist()
            lab[0, o[0]:o[0] + 5, o[1]:o[1] + 5, o[2]:o[2] + 5] = cls
        img = lab.float() + 0.2 * torch.randn(1, 12, 12, 12, generator=g)
        if kind == "regions":
            lab = torch.cat([lab == 1, lab > 0, lab == 2]).float()
        items.append({"image": img, "label": lab, "case_id": f"case{i}"})
    t = RandSpatialCropSamplesd(keys=["image", "label"], roi_size=(8, 8, 8), num_samples=2, random_size=False)
    return Dataset(items, transform=t if crops else None)


def base_cfg(**kw) -> dict:
    cfg = {"epochs": 3, "warmup_epochs": 1, "batch_size": 4, "lr": 3e-3, "weight_decay": 0.05,
           "betas": [0.9, 0.95], "layer_decay": None, "accum_steps": 1, "clip_grad": 1.0, "precision": "fp32",
           "max_steps": None, "val_every": 1, "seed": 0, "device": "cpu", "num_workers": 0,
           "tensorboard": False}
    cfg.update(kw)
    return cfg


def make_mae(seed: int = 1, width: int = 32) -> TinyMAE:
    torch.manual_seed(seed)
    return TinyMAE(width)


def read_csv(path: Path, drop_timing: bool = True) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if not (drop_timing and k in TIMING)} for r in rows]


@pytest.fixture(autouse=True)
def _quiet_single_thread(monkeypatch):
    """No progress bars; one intra-op thread (tiny ops on busy shared cores are slower with more)."""
    monkeypatch.setenv("SELFMAE_PROGRESS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------- learning


@pytest.mark.parametrize("kind", ["mae", "classify", "classes", "regions"])
def test_losses_fall(kind, tmp_path):
    torch.manual_seed(0)
    if kind == "mae":
        model, task = TinyMAE(), MAETask()
        train, val, cfg = mae_data(32, 0), mae_data(8, 1), base_cfg(epochs=6)
    elif kind == "classify":
        model, task = tiny_classifier(), ClassificationTask(3, ["a", "b", "c"])
        train, val, cfg = cls_data(48, 0), cls_data(16, 1), base_cfg(epochs=6)
    else:
        out_ch = 3
        model = tiny_segmenter(1, out_ch)
        task = SegmentationTask(kind, roi_size=(8, 8, 8), spacing=(1.5, 1.5, 2.0), class_names=["one", "two"]
                                if kind == "classes" else ["TC", "WT", "ET"])
        train, val = seg_data(8, 0, kind, crops=True), seg_data(2, 1, kind, crops=False)
        cfg = base_cfg(epochs=12, batch_size=2, lr=3e-2, val_every=6)
    res = fit(model, task, train, val, cfg, tmp_path / kind)
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert task.main_metric in res.history[-1] and res.best_ckpt is not None and res.best_ckpt.exists()
    rows = read_csv(tmp_path / kind / "metrics.csv", drop_timing=False)
    assert len(rows) == cfg["epochs"] and {"epoch", "step", "train_loss", "lr", "seconds", "samples_per_s"} <= set(rows[0])
    if kind in ("classes", "regions"):
        assert rows[0]["dice"] == "" and float(rows[5]["dice"]) >= 0     # validated every 6 epochs only
        assert res.history[-1]["dice"] > 0.3
    if kind == "classify":
        assert res.history[-1]["mAUC"] > 0.6


def test_accumulation_matches_larger_batch(tmp_path):
    """batch 4 x accum 1 and batch 2 x accum 2 take the same steps on the same samples."""
    a = fit(make_mae(), MAETask(), mae_data(16, 0), None, base_cfg(epochs=2), tmp_path / "a")
    b = fit(make_mae(), MAETask(), mae_data(16, 0), None, base_cfg(epochs=2, batch_size=2, accum_steps=2),
            tmp_path / "b")
    assert a.steps == b.steps == 8
    for ra, rb in zip(a.history, b.history):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)
        assert ra["lr"] == pytest.approx(rb["lr"], rel=1e-6)


@pytest.mark.parametrize("n_items, batch, accum", [(9, 2, 1), (4, 2, 1), (7, 2, 2), (5, 4, 1)])
def test_steps_per_epoch_is_what_the_engine_takes(tmp_path, n_items, batch, accum):
    """`optimizer_steps_per_epoch` (used to give label-fraction runs equal steps) counts what `fit` does."""
    cfg = base_cfg(epochs=2, batch_size=batch, accum_steps=accum)
    res = fit(make_mae(), MAETask(), mae_data(n_items, 0), None, cfg, tmp_path / "run")
    assert res.steps == 2 * optimizer_steps_per_epoch(n_items, cfg)


# --------------------------------------------------------------------------------------------- optimiser


def test_warmup_cosine_schedule():
    f = WarmupCosine(warmup_steps=4, total_steps=12)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(8) == pytest.approx(0.5) and f(12) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(4, 12))
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, base_cfg(lr=0.1))
    sched = build_scheduler(opt, 4, 12)
    for _ in range(5):
        opt.step()
        sched.step()
    sd = sched.state_dict()
    fresh = build_scheduler(build_optimizer(model, base_cfg(lr=0.1)), 1, 99)
    fresh.load_state_dict(sd)      # the lambda's (warmup, total) travel with the state
    assert fresh.lr_lambdas[0].total_steps == 12 and fresh.last_epoch == 5


def test_param_groups_no_decay_and_layer_decay(monkeypatch):
    model = TinyMAE()
    opt = build_optimizer(model, base_cfg(layer_decay=None, weight_decay=0.05))   # no layer decay: simple split
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.net[0].weight) in decay
    assert id(model.net[0].bias) not in decay and id(model.pos_embed) not in decay
    fake = types.ModuleType("selfmae.models.layer_decay")
    fake.param_groups = lambda m, wd, ld: [{"params": [m.pos_embed], "weight_decay": 0.0, "lr_scale": ld},
                                           {"params": list(m.net.parameters()), "weight_decay": wd}]
    monkeypatch.setitem(sys.modules, "selfmae.models.layer_decay", fake)
    opt = build_optimizer(model, base_cfg(layer_decay=0.5, lr=0.1))
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.05), pytest.approx(0.1)]
    assert opt.defaults["betas"] == (0.9, 0.95)


def test_bf16_falls_back_to_fp32_without_native_support(monkeypatch, caplog):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(device_mod, "_fallback_told", False)
    assert resolve_precision("bf16", torch.device("cpu")) is None
    assert "bf16" in caplog.text
    caplog.clear()
    assert resolve_precision("bf16", torch.device("cpu")) is None
    assert "bf16" not in caplog.text  # said once per process, not once per run
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16
    assert resolve_precision("fp32", torch.device("cpu")) is None


# --------------------------------------------------------------------------------------------- reproducibility


def test_same_seed_gives_identical_metrics(tmp_path):
    runs = [fit(make_mae(), MAETask(), mae_data(12, 0, noise=True), mae_data(4, 1), base_cfg(), tmp_path / n)
            for n in ("a", "b")]
    assert read_csv(tmp_path / "a" / "metrics.csv") == read_csv(tmp_path / "b" / "metrics.csv")
    assert runs[0].best_metric == runs[1].best_metric


class Kill(Exception):
    pass


def test_killed_mid_epoch_then_resumed_equals_uninterrupted(tmp_path):
    """3 batches/epoch, checkpoint every 2 steps: a kill at step 5 resumes from step 4, mid-epoch 2."""
    cfg = base_cfg(epochs=3, batch_size=4, ckpt_every_steps=2)
    ref = fit(make_mae(), MAETask(), mae_data(12, 0, noise=True), mae_data(4, 1), cfg, tmp_path / "ref")

    def kill_at_5(step: int) -> None:
        if step == 5:
            raise Kill

    with pytest.raises(Kill):
        fit(make_mae(), MAETask(), mae_data(12, 0, noise=True), mae_data(4, 1), cfg, tmp_path / "run",
            on_step=kill_at_5)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (ck["step"], ck["epoch"], ck["batch_in_epoch"]) == (4, 1, 1)
    assert not (tmp_path / "run" / "done.json").exists()
    assert "scaler" not in ck        # no GradScaler; checkpoints written before held "scaler": None ...
    torch.save({**ck, "scaler": None}, tmp_path / "run" / "last.pt")   # ... and such a one still resumes
    # a fresh process would build a freshly initialised model: use other weights to prove they are loaded
    res = fit(make_mae(seed=99), MAETask(), mae_data(12, 0, noise=True), mae_data(4, 1), cfg, tmp_path / "run")
    assert read_csv(tmp_path / "ref" / "metrics.csv") == read_csv(tmp_path / "run" / "metrics.csv")
    assert res.best_metric == ref.best_metric and res.steps == ref.steps == 9
    a = torch.load(ref.last_ckpt, weights_only=True)["model"]
    b = torch.load(res.last_ckpt, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------- run folder


def test_finished_run_is_skipped_and_force_archives(tmp_path):
    out = tmp_path / "run"
    cfg = base_cfg(epochs=1, tensorboard=True)
    first = fit(make_mae(), MAETask(), mae_data(8, 0), mae_data(4, 1), cfg, out)
    assert (out / "done.json").exists() and (out / "run_config.json").exists()
    assert any((out / "tensorboard").iterdir())
    calls = []
    again = fit(make_mae(), MAETask(), mae_data(8, 0), mae_data(4, 1), cfg, out, on_step=calls.append)
    assert again.skipped and not calls and again.history == first.history
    with pytest.raises(TrainConfigError, match="train.epochs"):       # a different request is not answered
        fit(make_mae(), MAETask(), mae_data(8, 0), mae_data(4, 1), {**cfg, "epochs": 2}, out)
    forced = fit(make_mae(), MAETask(), mae_data(8, 0), mae_data(4, 1), cfg, out, force=True)
    assert not forced.skipped
    archived = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(archived) == 1 and (archived[0] / "done.json").exists() and (archived[0] / "last.pt").exists()


def test_run_record_hook_runs_only_when_a_run_starts_from_its_first_step(tmp_path):
    """on_new_run (where the stages write config.yaml + run.json) comes after the folder rules: never for a skipped
    run, after force's archive (so the archived run keeps its own record), not for a resumed run, and not when a
    resume is refused (the unfinished run's record stays as it was)."""
    out, cfg = tmp_path / "run", base_cfg(epochs=1, ckpt_every_steps=1)

    def record(tag: str):
        def write(folder: Path) -> None:
            assert not (folder / "done.json").exists() and not (folder / "last.pt").exists()
            (folder / "record.txt").write_text(tag)
        return write

    fit(make_mae(), MAETask(), mae_data(8, 0), None, cfg, out, on_new_run=record("first"))
    assert (out / "record.txt").read_text() == "first"
    fit(make_mae(), MAETask(), mae_data(8, 0), None, cfg, out, on_new_run=record("skipped"))
    assert (out / "record.txt").read_text() == "first"
    fit(make_mae(), MAETask(), mae_data(8, 0), None, cfg, out, force=True, on_new_run=record("forced"))
    archived = next(p for p in out.iterdir() if p.name.startswith("previous-"))
    assert (archived / "record.txt").read_text() == "first" and (out / "record.txt").read_text() == "forced"

    killed = tmp_path / "killed"
    _killed_run(killed, make_mae(), cfg)
    (killed / "record.txt").write_text("killed")
    with pytest.raises(TrainConfigError):          # another batch size: the resume is refused
        fit(make_mae(), MAETask(), mae_data(8, 0), None, {**cfg, "batch_size": 2}, killed,
            on_new_run=record("refused"))
    assert (killed / "record.txt").read_text() == "killed"
    fit(make_mae(), MAETask(), mae_data(8, 0), None, cfg, killed, on_new_run=record("resumed"))
    assert (killed / "record.txt").read_text() == "killed" and (killed / "done.json").exists()


def test_a_finished_run_moved_to_another_folder_answers_with_its_own_files(tmp_path):
    """done.json records the folder it was written in; after the runs folder moves (another clone, a worktree),
    the skipped run must point at the checkpoints where they are now, not where they were."""
    import shutil

    cfg = base_cfg(epochs=1)
    first = fit(make_mae(), MAETask(), mae_data(8, 0), mae_data(4, 1), cfg, tmp_path / "old")
    shutil.move(tmp_path / "old", tmp_path / "new")
    again = fit(make_mae(), MAETask(), mae_data(8, 0), mae_data(4, 1), cfg, tmp_path / "new")
    assert again.skipped and again.history == first.history
    assert again.out_dir == tmp_path / "new" and again.last_ckpt == tmp_path / "new" / "last.pt"
    assert again.best_ckpt is not None and again.best_ckpt.parent == tmp_path / "new" and again.best_ckpt.exists()


def test_a_finished_fine_tuning_moved_with_its_pretraining_is_reused(tmp_path):
    """model.pretrained is recorded as an absolute path; a runs tree moved as a whole (pre-training beside its
    fine-tunings) is still the same setting, a checkpoint at another place is not."""
    import shutil

    def run_config(root: Path) -> dict:
        return {"model": {"name": "mae", "init": "mae", "pretrained": str(root / "pretrain" / "last.pt")}}

    (tmp_path / "old" / "pretrain").mkdir(parents=True)
    (tmp_path / "old" / "pretrain" / "last.pt").write_bytes(b"weights")
    cfg = base_cfg(epochs=1)
    first = fit(make_mae(), MAETask(), mae_data(8, 0), None, cfg, tmp_path / "old" / "finetune",
                run_config=run_config(tmp_path / "old"))
    shutil.move(tmp_path / "old", tmp_path / "new")
    again = fit(make_mae(), MAETask(), mae_data(8, 0), None, cfg, tmp_path / "new" / "finetune",
                run_config=run_config(tmp_path / "new"))
    assert again.skipped and again.history == first.history
    (tmp_path / "elsewhere" / "pretrain").mkdir(parents=True)
    (tmp_path / "elsewhere" / "pretrain" / "last.pt").write_bytes(b"other weights")
    with pytest.raises(TrainConfigError, match="model.pretrained"):
        fit(make_mae(), MAETask(), mae_data(8, 0), None, cfg, tmp_path / "new" / "finetune",
            run_config=run_config(tmp_path / "elsewhere"))


def _killed_run(out: Path, model: nn.Module, cfg: dict, run_config: dict | None = None) -> None:
    def kill(step: int) -> None:
        raise Kill
    with pytest.raises(Kill):
        fit(model, MAETask(), mae_data(8, 0), None, cfg, out, on_step=kill, run_config=run_config)


def test_resume_with_incompatible_config_lists_keys(tmp_path):
    rc = {"model": {"name": "mae", "embed_dim": 32}, "data": {"spatial_dims": 2, "data_dir": Path("/a")}}
    _killed_run(tmp_path, make_mae(), base_cfg(ckpt_every_steps=1), rc)
    other = {"model": {"name": "mae", "embed_dim": 64}, "data": {"spatial_dims": 2, "data_dir": "/b"}}
    with pytest.raises(TrainConfigError) as err:
        fit(make_mae(), MAETask(), mae_data(8, 0), None, base_cfg(ckpt_every_steps=1, batch_size=2), tmp_path,
            run_config=other)
    msg = str(err.value)
    assert "model.embed_dim" in msg and "train.batch_size" in msg and "last.pt" in msg
    assert "data.data_dir" not in msg          # moving the data is allowed
    # volatile settings may change on resume
    fit(make_mae(), MAETask(), mae_data(8, 0), None, base_cfg(ckpt_every_steps=1, val_every=2), tmp_path,
        run_config=rc)


def test_checkpoint_that_does_not_fit_names_key_and_shapes(tmp_path):
    _killed_run(tmp_path, make_mae(width=32), base_cfg(ckpt_every_steps=1))
    with pytest.raises(CheckpointError) as err:
        fit(make_mae(width=16), MAETask(), mae_data(8, 0), None, base_cfg(ckpt_every_steps=1), tmp_path)
    assert "'net.0.weight'" in str(err.value) and "(32, 64)" in str(err.value) and "(16, 64)" in str(err.value)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="last.pt"):
        fit(make_mae(), MAETask(), mae_data(8, 0), None, base_cfg(ckpt_every_steps=1), tmp_path)


def test_unfinished_run_is_not_overwritten_without_resume(tmp_path):
    _killed_run(tmp_path, make_mae(), base_cfg(ckpt_every_steps=1))
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(OutputDirError, match="resume=True"):
        fit(make_mae(), MAETask(), mae_data(8, 0), None, base_cfg(ckpt_every_steps=1), tmp_path, resume=False)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_unwritable_output_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    calls = []
    with pytest.raises(OutputDirError, match="a-file"):
        fit(make_mae(), MAETask(), mae_data(8, 0), None, base_cfg(), blocker / "run", on_step=calls.append)
    assert not calls


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_absent_gpu_names_the_setting(tmp_path):
    with pytest.raises(TrainConfigError, match="train.device"):
        fit(make_mae(), MAETask(), mae_data(8, 0), None, base_cfg(device="cuda"), tmp_path)
    assert not (tmp_path / "last.pt").exists()


def test_unknown_setting_is_named(tmp_path):
    with pytest.raises(TrainConfigError, match="train.warmup_epoch\\b"):
        fit(make_mae(), MAETask(), mae_data(8, 0), None, {**base_cfg(), "warmup_epoch": 3}, tmp_path)


def test_max_steps_stops_and_validates(tmp_path):
    res = fit(make_mae(), MAETask(), mae_data(16, 0), mae_data(4, 1), base_cfg(epochs=5, max_steps=6), tmp_path)
    assert res.steps == 6 and len(res.history) == 2 and "val_loss" in res.history[-1]
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["result"]["steps"] == 6 and math.isfinite(done["result"]["best_metric"])
