"""Pre-trained and checkpoint files as users bring them (issue #13): MONAI-named UNETRs, files that provide too
little of the encoder, and files that are not PyTorch files at all."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from selfmae.models import UNETR, load_pretrained_encoder, read_state_dict
from selfmae.models.transfer import LoadReport, PretrainedWeightsError
from selfmae.torchfile import WeightsFileError, load_torch_file
from selfmae.train import CheckpointError, load_checkpoint

TINY = dict(patch_size=4, embed_dim=64, depth=4, num_heads=4)


def monai_unetr_state(depth: int = 4, perceptron: bool = False) -> tuple[dict, torch.nn.Module]:
    """A state dict of MONAI's own ViT (as UNETR holds it under `vit.`), and that ViT."""
    from monai.networks.nets import ViT as MonaiViT

    vit = MonaiViT(1, 16, 4, hidden_size=64, mlp_dim=256, num_layers=depth, num_heads=4,
                   proj_type="perceptron" if perceptron else "conv", qkv_bias=True).eval()
    sd = {f"vit.{k}": v for k, v in vit.state_dict().items()}
    sd["encoder1.layer.conv1.conv.weight"] = torch.zeros(8, 1, 3, 3, 3)   # a UNETR decoder-side key
    return {"epoch": 10, "state_dict": sd}, vit


@pytest.mark.parametrize("perceptron", [False, True])
def test_monai_named_unetr_loads_and_computes_what_monai_computes(tmp_path, perceptron):
    ckpt, vit = monai_unetr_state(perceptron=perceptron)
    torch.save(ckpt, tmp_path / "model_best.pt")
    ours = UNETR(3, 1, 14, 16, feature_size=8, **TINY).eval()
    report = load_pretrained_encoder(ours, tmp_path / "model_best.pt", source="mae")
    assert "names: MONAI ViT/UNETR naming read as timm's" in report.adapted
    # MONAI >= 1.3 blocks hold an unused cross-attention norm; the decoder side of a UNETR is not ours to load
    assert all(k == "encoder1.layer.conv1.conv.weight" or ".norm_cross_attn." in k for k in report.unexpected)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        theirs = vit.patch_embedding(x)
        mine = ours.encoder.embed(x)[:, 1:]
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.encoder.blocks[2](theirs), vit.blocks[2](theirs), rtol=1e-3, atol=1e-3)  # LayerNorm eps 1e-6 vs 1e-5


def test_a_file_whose_names_match_nothing_stops_the_run_naming_file_keys_and_expectation(tmp_path):
    torch.save({"state_dict": {"net.conv.weight": torch.zeros(3), "net.fc.bias": torch.zeros(2)}}, tmp_path / "w.pt")
    with pytest.raises(PretrainedWeightsError) as err:
        load_pretrained_encoder(UNETR(3, 1, 14, 16, **TINY), tmp_path / "w.pt", source="mae")
    text = str(err.value)
    assert str(tmp_path / "w.pt") in text and "net.conv.weight" in text and "0 of the 25 encoder weights" in text
    assert "encoder.patch_embed.proj.weight" in text and "vit.patch_embedding" in text


def test_a_file_with_too_few_blocks_is_refused(tmp_path):
    ckpt, _ = monai_unetr_state(depth=2)
    torch.save(ckpt, tmp_path / "shallow.pt")
    with pytest.raises(PretrainedWeightsError, match=r"missing e\.g\. encoder\.blocks\.2\."):
        load_pretrained_encoder(UNETR(3, 1, 14, 16, **TINY), tmp_path / "shallow.pt", source="imagenet")


def test_build_model_for_never_records_an_init_it_did_not_load(tmp_path):
    from selfmae.config import load_config
    from selfmae.experiments import build_model_for

    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "w.pt")
    cfg = load_config("finetune_btcv", "tiny", {"model.init": "mae", "model.pretrained": str(tmp_path / "w.pt")})
    with pytest.raises(PretrainedWeightsError):
        build_model_for(cfg)


def test_imagenet_weights_that_do_not_exist_are_an_error_and_none_given_a_stated_skip(tmp_path):
    from selfmae.experiments import init_methods

    with pytest.raises(FileNotFoundError, match="vit_b16_typo.pth"):
        init_methods(tmp_path / "mae.pt", str(tmp_path / "vit_b16_typo.pth"))
    assert "skip" in init_methods(tmp_path / "mae.pt", "")["imagenet"]


# ------------------------------------------------------------------------------------ not a PyTorch file
def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weights/readme.txt", "hello")


NOT_TORCH = {
    "html": (lambda p: p.write_text("<!DOCTYPE html><html><head><title>Quota exceeded</title></head></html>"),
             "starts like an HTML page"),
    "empty": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "lfs": (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n"),
            "git-LFS pointer"),
    "zip": (_zip, "zip archive but not a PyTorch file"),
    "npy": (lambda p: np.save(open(p, "wb"), np.zeros(3)), "NumPy"),
    "text": (lambda p: p.write_text('{"error": "not found"}'), "holds text"),
    "truncated": (lambda p: (torch.save({"w": torch.zeros(1000)}, p), p.write_bytes(p.read_bytes()[:300])),
                  "corrupt or truncated"),
    # random bytes fail the weights-only load with torch's advice to unpickle fully; read_state_dict then does,
    # and that fails too (was: a raw UnpicklingError traceback)
    "random": (lambda p: p.write_bytes(bytes([0xA6]) + np.random.default_rng(0).bytes(2047)), "corrupt or truncated"),
}


@pytest.mark.parametrize("kind", sorted(NOT_TORCH))
def test_a_file_that_is_not_weights_says_what_it_holds(tmp_path, kind):
    write, phrase = NOT_TORCH[kind]
    path = tmp_path / "vit_b16.pth"
    write(path)
    for load in (load_torch_file, read_state_dict):
        with pytest.raises(WeightsFileError, match=re.escape(phrase)) as err:
            load(path)
        assert str(path) in str(err.value)
    with pytest.raises(CheckpointError, match=re.escape(phrase)):
        load_checkpoint(path)


def test_every_torch_load_goes_through_load_torch_file():
    import ast

    def calls_torch_load(tree: ast.AST) -> bool:
        return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "load"
                   and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch" for n in ast.walk(tree))

    package = Path(__file__).resolve().parents[1] / "selfmae"
    callers = [p.relative_to(package).as_posix() for p in package.rglob("*.py")
               if calls_torch_load(ast.parse(p.read_text()))]
    assert callers == ["torchfile.py"], callers


# ----- load_trained: a finished run's model, in one call (issue #14) ------------------------------------------------
@pytest.fixture(scope="module")
def finished_pretraining(tmp_path_factory):
    """A finished 2-step tiny MedMNIST pre-training through the engine; returns (config, RunResult)."""
    from torch.utils.data import Subset

    from selfmae.config import load_config
    from selfmae.experiments import build_data, run_pretrain

    cfg = load_config("pretrain_medmnist", "tiny", {"train.max_steps": 2, "train.epochs": 1, "train.device": "cpu",
                                                     "train.batch_size": 8, "train.val_every": 1})
    data = build_data(cfg, check=False)
    small = {"train": Subset(data["train"], range(16)), "val": Subset(data["val"], range(8))}
    return cfg, run_pretrain(cfg, tmp_path_factory.mktemp("runs") / "pretrain_medmnist", datasets=small)


def test_load_trained_gives_the_runs_weights_bit_exactly_in_eval_mode(finished_pretraining):
    from selfmae.experiments import load_trained

    cfg, result = finished_pretraining
    model = load_trained(cfg, result.last_ckpt)
    stored = load_checkpoint(result.last_ckpt)["model"]
    mine = model.state_dict()
    assert set(mine) == set(stored)
    assert all(torch.equal(mine[k], stored[k]) for k in stored)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert model.checkpoint_info["step"] == 2 and "optimizer" not in model.checkpoint_info


def test_load_trained_names_the_file_that_is_missing_or_does_not_fit(finished_pretraining, tmp_path):
    from selfmae.experiments import load_trained

    cfg, result = finished_pretraining
    wider = dict(cfg, model=dict(cfg["model"], embed_dim=2 * cfg["model"]["embed_dim"]))
    with pytest.raises(CheckpointError) as err:
        load_trained(wider, result.last_ckpt)
    text = str(err.value)
    assert str(result.last_ckpt) in text and "does not fit the model" in text and "'encoder.pos_embed'" in text
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "gone.pt"))):
        load_trained(cfg, tmp_path / "gone.pt")


def test_segmentation_figure_predicts_as_evaluation_does(tmp_path, monkeypatch):
    """Fig. 3's helper loads each checkpoint with load_trained and predicts with `selfmae.eval.sliding_window_predict`
    under the config's roi_size / eval.overlap / eval.sw_batch_size (not settings of its own)."""
    import selfmae.eval
    from selfmae.config import load_config
    from selfmae.experiments import build_model_for, segmentation_examples
    from selfmae.train.checkpoint import save_checkpoint
    from _data_helpers import phantom

    cfg = load_config("finetune_btcv", "tiny", {"data.data_dir": str(phantom("btcv", tmp_path)), "eval.overlap": 0.25,
                                                 "eval.sw_batch_size": 3})
    save_checkpoint({"model": build_model_for(cfg).state_dict()}, tmp_path / "best.pt")
    calls, predict = [], selfmae.eval.sliding_window_predict
    monkeypatch.setattr(selfmae.eval, "sliding_window_predict",
                        lambda *a, **kw: calls.append(kw) or predict(*a, **kw))
    case = segmentation_examples(cfg, {"scratch": tmp_path / "best.pt"}, n_cases=1)[0]
    assert calls == [{"roi_size": cfg["data"]["roi_size"], "sw_batch_size": 3, "overlap": 0.25}]
    assert case["scratch"].shape == case["ground truth"].shape == case["image"].shape


def test_a_fine_tuning_records_what_its_pretrained_file_gave(finished_pretraining, tmp_path):
    """run.json's `pretrained_load` holds the load report (file, counts, unused keys), not only `init: mae`."""
    import json

    from torch.utils.data import Subset

    from selfmae.config import load_config
    from selfmae.experiments import build_data, run_training

    _, pre = finished_pretraining
    cfg = load_config("finetune_medmnist", "tiny", {"train.max_steps": 1, "train.epochs": 1, "train.device": "cpu",
                                                     "train.batch_size": 8, "model.init": "mae",
                                                     "model.pretrained": str(pre.last_ckpt)})
    data = build_data(cfg, check=False)
    run_training(cfg, tmp_path / "ft", datasets={"train": Subset(data["train"], range(8)),
                                                 "val": Subset(data["val"], range(8))})
    loaded = json.loads((tmp_path / "ft" / "run.json").read_text())["pretrained_load"]
    assert loaded["source"] == f"{pre.last_ckpt} (mae)" and loaded["n_loaded"] > 0
    assert any(k.startswith("decoder") for k in loaded["unexpected"])      # the MAE decoder is not used
    assert loaded["n_missing"] == len(loaded["missing"]) and all(not k.startswith("encoder.blocks")
                                                                   for k in loaded["missing"])


def test_cli_says_in_one_line_that_weights_do_not_fit_the_model(finished_pretraining, tmp_path, capsys):
    from selfmae.cli import main

    cfg, pre = finished_pretraining
    code = main(["finetune", "--config", "finetune_medmnist", "--out-dir", str(tmp_path / "ft"),
                 "--set", "model.init=mae", "--set", f"model.pretrained={pre.last_ckpt}",
                 "--set", f"model.embed_dim={2 * cfg['model']['embed_dim']}", "--set", "train.device=cpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {pre.last_ckpt}: ") and "model.embed_dim" in err
    assert not (tmp_path / "ft" / "run.json").exists()


def test_load_report_tells_encoder_tensors_the_file_lacks_apart_from_a_new_head():
    """Encoder tensors missing from the file are said to stay un-pre-trained, except biases whose weights were
    loaded (a file whose layers have no bias: said apart, so that a whole pre-trained encoder does not read as
    untrained); a new head is listed apart; file tensors outside the encoder are listed as unused."""
    text = str(LoadReport(loaded=["encoder.blocks.0.attn.qkv.weight"], source="x.pt (mae)", encoder_prefix="encoder.",
                          missing=["encoder.blocks.0.attn.qkv.bias", "encoder.blocks.1.mlp.fc1.weight",
                                   "encoder.blocks.1.mlp.fc1.bias", "head.weight"],
                          unexpected=["decoder_embed.weight"]))
    encoder_line, bias_line, head_line, unused_line = text.splitlines()[1:]
    assert "encoder tensors not in the file (2" in encoder_line and "not pre-trained" in encoder_line
    assert encoder_line.endswith("blocks.1.mlp.fc1.weight, encoder.blocks.1.mlp.fc1.bias")
    assert "encoder biases not in the file (1" in bias_line and bias_line.endswith("encoder.blocks.0.attn.qkv.bias")
    assert "outside the encoder" in head_line and head_line.endswith("head.weight")
    assert "unused (1" in unused_line and unused_line.endswith("decoder_embed.weight")


def test_a_file_holding_python_objects_is_refused_by_name_or_read_fully_when_allowed(tmp_path):
    """The official MAE checkpoints keep their argparse.Namespace beside the weights: a weights-only load refuses
    it saying so, a load allowed to unpickle fully reads it; random bytes are corrupt either way."""
    import argparse

    path = tmp_path / "mae_pretrain.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(WeightsFileError, match="holds Python objects besides tensors"):
        load_torch_file(path)
    assert torch.equal(load_torch_file(path, allow_full_unpickle=True)["model"]["w"], torch.ones(2))
    junk = tmp_path / "junk.pth"
    NOT_TORCH["random"][0](junk)
    with pytest.raises(WeightsFileError, match="corrupt or truncated"):
        load_torch_file(junk, allow_full_unpickle=True)
