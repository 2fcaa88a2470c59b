"""Tiny end to end on the phantoms, for each task: MAE pre-train -> fine-tune from it -> evaluate.

Real models, real data pipelines, the real engine; only the sizes are tiny and the schedules short. Losses must
fall and the evaluation must write its per-case CSV and summary.
"""
import json

import pandas as pd
import pytest

from selfmae.config import config_hash, load_config
from selfmae.experiments import build_data, run_evaluate, run_finetune, run_pretrain

pytestmark = pytest.mark.slow

CASES = {  # dataset -> (pretrain overrides, finetune overrides, metric keys expected in the summary)
    "cxr14": ({"train.epochs": 6, "train.val_every": 6}, {"train.epochs": 4, "train.val_every": 4}, ["mAUC"]),
    "btcv": ({"train.epochs": 6, "train.val_every": 6}, {"train.epochs": 4, "train.val_every": 4},
             ["dice", "hd95", "dice/Liver", "hd95/Aorta"]),
    "brats": ({"train.epochs": 6, "train.val_every": 6}, {"train.epochs": 4, "train.val_every": 4},
              ["dice", "dice/WT", "dice/TC", "dice/ET", "hd95/WT"]),
}


@pytest.fixture(autouse=True)
def synthetic_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SELFMAE_SYNTHETIC", str(tmp_path_factory.getbasetemp() / "synthetic"))
    monkeypatch.setenv("SELFMAE_PROGRESS", "0")


def _falls(history: pd.DataFrame) -> bool:
    losses = history["train_loss"].to_numpy()
    return losses[-1] < losses[0]


@pytest.mark.parametrize("dataset", sorted(CASES))
def test_pretrain_finetune_evaluate(dataset, tmp_path):
    pre_ov, ft_ov, keys = CASES[dataset]
    pre_cfg = load_config(f"pretrain_{dataset}", "tiny", {**pre_ov, "train.device": "cpu"})
    pre = run_pretrain(pre_cfg, tmp_path / "pre")
    assert _falls(pd.read_csv(tmp_path / "pre" / "metrics.csv")), "MAE loss did not fall"
    assert (tmp_path / "pre" / "config.yaml").exists() and (tmp_path / "pre" / "run.json").exists()

    ft_cfg = load_config(f"finetune_{dataset}", "tiny", {**ft_ov, "train.device": "cpu", "model.init": "mae",
                                                         "model.pretrained": str(pre.last_ckpt)})
    datasets = build_data(ft_cfg)
    summary = run_finetune(ft_cfg, tmp_path / "ft", datasets=datasets)
    history = pd.read_csv(tmp_path / "ft" / "metrics.csv")
    assert _falls(history), "fine-tuning loss did not fall"
    if "dice" in keys:  # validation tracks Dice; HD95 (slow distance transforms) only in the final evaluation
        assert "dice" in history.columns and not any(c.startswith("hd95") for c in history.columns)
    for key in keys:
        assert key in summary, (key, sorted(summary))
    assert summary["init"] == "mae"
    written = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert written[keys[0]] == pytest.approx(summary[keys[0]], nan_ok=True)
    per_case = pd.read_csv(next((tmp_path / "ft").glob("per_case_*.csv")))
    assert len(per_case) > 0
    # a second call returns the stored summary instead of training again
    assert run_finetune(ft_cfg, tmp_path / "ft", datasets=datasets) == written


def test_forced_rerun_archives_the_old_run_with_its_own_record(tmp_path):
    """`--force` moves the finished run, its config.yaml and run.json included, into previous-<timestamp>/ and the
    new run writes its own record; a first run with force=True archives nothing."""
    import yaml

    first = load_config("pretrain_cxr14", "tiny", {"train.epochs": 1, "train.max_steps": 1, "train.device": "cpu"})
    second = load_config("pretrain_cxr14", "tiny", {"train.epochs": 2, "train.max_steps": 1, "train.device": "cpu"})
    out = tmp_path / "pre"
    run_pretrain(first, out, force=True)
    assert not [p for p in out.iterdir() if p.name.startswith("previous-")]
    run_pretrain(second, out, force=True)
    archived = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(archived) == 1
    for folder, cfg in ((archived[0], first), (out, second)):
        assert yaml.safe_load((folder / "config.yaml").read_text())["train"]["epochs"] == cfg["train"]["epochs"]
        assert json.loads((folder / "run.json").read_text())["config_hash"] == config_hash(cfg)
        assert json.loads((folder / "done.json").read_text())["config"]["train"]["epochs"] == cfg["train"]["epochs"]


def test_finetune_is_reused_only_while_its_pretrained_checkpoint_holds_the_same_bytes(tmp_path, monkeypatch):
    """A finished fine-tuning records the SHA-256 of the checkpoint it started from: the same bytes at another path
    are the same run (reused), a re-pre-trained last.pt at the same path is not (refused, naming it; force re-runs)."""
    import shutil

    from selfmae.experiments import stages
    from selfmae.provenance import file_sha256
    from selfmae.train import TrainConfigError

    steps = {"train.epochs": 1, "train.max_steps": 1, "train.device": "cpu"}
    pre = run_pretrain(load_config("pretrain_cxr14", "tiny", steps), tmp_path / "pre")

    def finetune(path, **kw):
        cfg = load_config("finetune_cxr14", "tiny", {**steps, "model.init": "mae", "model.pretrained": str(path)})
        return run_finetune(cfg, tmp_path / "ft", **kw)

    finetune(pre.last_ckpt)
    done = tmp_path / "ft" / "done.json"
    record = done.read_text()
    assert json.loads(record)["config"]["inputs"] == {"pretrained_sha256": file_sha256(pre.last_ckpt),
                                                      "data_listing_sha256": None}   # the default phantoms

    copy = tmp_path / "elsewhere" / "mae.pt"
    copy.parent.mkdir()
    shutil.copy(pre.last_ckpt, copy)
    summary = (tmp_path / "ft" / "summary.json").read_text()
    training_record = (tmp_path / "ft" / "run.json").read_text()
    cfg = load_config("finetune_cxr14", "tiny", steps)
    run_evaluate(cfg, tmp_path / "ft" / "best.pt")                    # into ft/evaluate-best/, with its own record
    assert json.loads((tmp_path / "ft" / "evaluate-best" / "run.json").read_text())["checkpoint"].endswith("best.pt")
    import yaml
    recorded = yaml.safe_load((tmp_path / "ft" / "evaluate-best" / "config.yaml").read_text())
    # what made the weights, as the checkpoint recorded it (the config given says init scratch), and no training
    # settings the evaluation did not use (the config file's epochs, lr)
    assert recorded["model"]["init"] == "mae" and recorded["model"]["pretrained"] == str(pre.last_ckpt)
    assert cfg["model"]["init"] == "scratch" and set(recorded["train"]) == {"device", "batch_size", "seed"}
    assert run_evaluate(cfg, tmp_path / "ft" / "best.pt")["init"] == "mae"        # reused: same settings, bytes
    assert (tmp_path / "ft" / "run.json").read_text() == training_record
    finetune(copy)
    assert done.read_text() == record                                  # same bytes: reused, not trained again
    assert (tmp_path / "ft" / "summary.json").read_text() == summary  # ... nor evaluated again

    run_pretrain(load_config("pretrain_cxr14", "tiny", {**steps, "train.seed": 1}), tmp_path / "pre", force=True)
    with monkeypatch.context() as m:   # refused before any data is read or weights loaded
        m.setattr(stages, "build_data", lambda *a, **k: pytest.fail("data built for a refused run"))
        with pytest.raises(TrainConfigError, match="model.pretrained checkpoint's content"):
            finetune(pre.last_ckpt)
    assert done.read_text() == record                                  # nothing overwritten by the refusal
    finetune(pre.last_ckpt, force=True)
    assert json.loads(done.read_text())["config"]["inputs"]["pretrained_sha256"] == file_sha256(pre.last_ckpt)


def test_a_finished_run_on_real_data_is_reused_only_while_its_data_is_unchanged(tmp_path, monkeypatch):
    """A run on a data folder records its listing digest (names, sizes, split lists): re-running after the split
    lists were edited is refused before any data is read, naming the data (force re-runs it); a copy of the folder
    elsewhere is the same data; a run recorded before the digest existed is still reused; an evaluation folder
    refuses the same way."""
    import shutil

    from _data_helpers import phantom_copy
    from selfmae.experiments import stages
    from selfmae.provenance import data_listing_sha256
    from selfmae.train import OutputDirError, TrainConfigError

    data = phantom_copy("cxr14", tmp_path / "base", tmp_path / "mine")
    steps = {"train.epochs": 1, "train.max_steps": 1, "train.device": "cpu"}

    def finetune(folder, **kw):
        cfg = load_config("finetune_cxr14", "tiny", {**steps, "data.data_dir": str(folder)})
        return run_finetune(cfg, tmp_path / "ft", **kw)

    finetune(data)
    done = tmp_path / "ft" / "done.json"
    record = json.loads(done.read_text())
    assert record["config"]["inputs"]["data_listing_sha256"] == data_listing_sha256(data)
    copied = tmp_path / "copied" / "cxr14"
    shutil.copytree(data, copied)                                       # new mtimes, same files
    summary = tmp_path / "ft" / "summary.json"
    written = summary.read_text()
    assert finetune(copied)["config_hash"] == json.loads(written)["config_hash"]   # reused: nothing re-written
    assert summary.read_text() == written and json.loads(done.read_text()) == record

    test_list = data / "test_list.txt"
    names = test_list.read_text().splitlines()
    test_list.write_text("\n".join(names[: len(names) // 2]) + "\n")   # fewer test images: another test set
    with monkeypatch.context() as m:
        m.setattr(stages, "build_data", lambda *a, **k: pytest.fail("data built for a refused run"))
        with pytest.raises(TrainConfigError, match="data folder's files"):
            finetune(data)
    assert json.loads(done.read_text()) == record                       # nothing overwritten by the refusal

    legacy = {**record, "config": {**record["config"], "inputs": {"pretrained_sha256": None}}}
    done.write_text(json.dumps(legacy))                                 # recorded before the digest existed
    finetune(data)                                                      # compared by settings alone, as before
    assert summary.read_text() == written and json.loads(done.read_text()) == legacy

    cfg = load_config("finetune_cxr14", "tiny", {**steps, "data.data_dir": str(copied)})
    run_evaluate(cfg, tmp_path / "ft" / "best.pt", tmp_path / "ev")
    assert json.loads((tmp_path / "ev" / "run.json").read_text())["data_listing_sha256"] == \
        data_listing_sha256(copied)
    (copied / "test_list.txt").write_text(test_list.read_text())
    with pytest.raises(OutputDirError, match="data folder's files"):
        run_evaluate(cfg, tmp_path / "ft" / "best.pt", tmp_path / "ev")
    finetune(data, force=True)
    assert json.loads(done.read_text())["config"]["inputs"]["data_listing_sha256"] == data_listing_sha256(data)


def test_a_fine_tuning_whose_validations_are_all_nan_evaluates_its_last_checkpoint(tmp_path, monkeypatch, caplog):
    """No validation defined the main metric (e.g. no label both positive and negative in the validation split):
    no best checkpoint, so the last one is evaluated and the warning says so (was: a TypeError on best.pt None)."""
    from selfmae.train.tasks import ClassificationTask

    evaluate = ClassificationTask.evaluate
    calls = []

    def nan_during_training(self, model, loader, device):
        calls.append(1)
        out = evaluate(self, model, loader, device)
        return out if len(calls) > 1 else {**out, "mAUC": float("nan")}   # the engine's one validation: NaN

    monkeypatch.setattr(ClassificationTask, "evaluate", nan_during_training)
    cfg = load_config("finetune_cxr14", "tiny", {"train.epochs": 1, "train.max_steps": 1, "train.device": "cpu"})
    with caplog.at_level("WARNING", logger="selfmae.experiments"):
        summary = run_finetune(cfg, tmp_path / "ft")
    assert summary["checkpoint"].endswith("last.pt") and "no best checkpoint: the last one" in caplog.text
    assert not (tmp_path / "ft" / "best.pt").exists() and len(calls) == 2
