"""train.precision = auto | bf16 | fp32: the choice per device and model size, the run record, and which finished
runs a changed setting may reuse (the bf16 detection and the device are monkeypatched; nothing needs a GPU)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from selfmae.train import (MAETask, TrainConfigError, build_optimizer, choose_precision, fit,
                           finished_run_precision_diff, resolve_train_cfg)
from selfmae.train import device as device_mod
from selfmae.train.device import AUTO_CPU_BF16_MIN_PARAMS

from test_engine import base_cfg, mae_data, make_mae  # noqa: E402  (tests/ is on sys.path under pytest)

BIG, SMALL = AUTO_CPU_BF16_MIN_PARAMS, 230_000   # ViT-B MAEs hold 85-119 M parameters, the tiny ones 0.2-0.6 M


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setenv("SELFMAE_PROGRESS", "0")
    monkeypatch.setattr(device_mod, "_fallback_told", False)
    monkeypatch.setattr(device_mod, "_announced", set())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def native(monkeypatch, value: bool) -> None:
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: value)


# --------------------------------------------------------------------------------------------- the choice
@pytest.mark.parametrize("device, has_native, params, used", [
    ("cuda", False, SMALL, "bf16"),     # CUDA: bf16 at every size
    ("cuda", False, BIG, "bf16"),
    ("cpu", False, SMALL, "fp32"),      # AVX2: bf16 is emulated, fp32 at every size
    ("cpu", False, BIG, "fp32"),
    ("cpu", True, SMALL, "fp32"),       # native bf16 but tiny: bf16 0.8-1.8x (AMX, AVX512-BF16), fp32 kept
    ("cpu", True, BIG - 1, "fp32"),
    ("cpu", True, BIG, "bf16"),         # native bf16 and >= 5 M: measured 1.6-3.7x faster
])
def test_auto_chooses_by_device_and_size(monkeypatch, device, has_native, params, used):
    native(monkeypatch, has_native)
    choice = choose_precision("auto", device, params=params)
    assert choice.used == used and choice.setting == "auto"
    assert choice.dtype is (torch.bfloat16 if used == "bf16" else None)
    assert choice.reason and ("CUDA" in choice.reason if device == "cuda" else "bf16" in choice.reason)


def test_auto_counts_the_models_parameters(monkeypatch):
    native(monkeypatch, True)
    small = nn.Linear(10, 10)
    assert choose_precision("auto", "cpu", small).params == 110
    assert choose_precision("auto", "cpu", small).used == "fp32"
    big = nn.Linear(1, 1)
    big.weight = nn.Parameter(torch.empty(BIG, 1))          # 5 M parameters without 5 M-by-anything matmuls
    assert choose_precision("auto", "cpu", big).used == "bf16"


def test_forced_modes(monkeypatch, caplog):
    native(monkeypatch, True)
    assert choose_precision("fp32", "cpu", params=BIG).used == "fp32"
    assert choose_precision("fp32", "cuda", params=BIG).used == "fp32"
    assert choose_precision("bf16", "cpu", params=SMALL).used == "bf16"     # forced: even where auto says fp32
    assert choose_precision("bf16", "cuda", params=SMALL).used == "bf16"
    native(monkeypatch, False)
    choice = choose_precision("bf16", "cpu", params=BIG)
    assert choice.used == "fp32" and "no native bf16" in choice.reason       # the documented fallback ...
    assert "bf16" in caplog.text                                              # ... said once per process
    caplog.clear()
    choose_precision("bf16", "cpu", params=BIG)
    assert "bf16" not in caplog.text
    with pytest.raises(TrainConfigError, match="auto"):
        resolve_train_cfg({"precision": "fp16"})
    assert resolve_train_cfg({})["precision"] == "auto"                      # the default


# --------------------------------------------------------------------------------------------- the record
def test_the_choice_is_recorded_and_printed_once(monkeypatch, tmp_path, capsys):
    native(monkeypatch, False)
    fit(make_mae(), MAETask(), mae_data(8, 0), mae_data(4, 1), base_cfg(epochs=1, precision="auto"), tmp_path / "a")
    fit(make_mae(), MAETask(), mae_data(8, 0), mae_data(4, 1), base_cfg(epochs=1, precision="auto"), tmp_path / "b")
    out = capsys.readouterr().out
    assert out.count("train.precision = auto -> fp32 (this CPU has no native bf16") == 1, out
    record = json.loads((tmp_path / "a" / "done.json").read_text())["precision"]
    assert record["setting"] == "auto" and record["used"] == "fp32" and record["segments"] == ["fp32"]
    assert record["device"] == "cpu" and record["cpu_native_bf16"] is False and record["params"] > 0
    assert "no native bf16" in record["reason"]
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert ck["precision"]["used"] == "fp32"


def train_fp32_then_bf16(out_dir) -> None:
    """One run in `out_dir`: two steps in fp32, stopped, then resumed to the end under a forced bf16."""
    def kill(step):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(make_mae(), MAETask(), mae_data(16, 0), None, base_cfg(epochs=2, precision="fp32", ckpt_every_steps=1),
            out_dir, on_step=kill)
    fit(make_mae(), MAETask(), mae_data(16, 0), None, base_cfg(epochs=2, precision="bf16", ckpt_every_steps=1),
        out_dir)


def test_a_resumed_run_records_each_segments_precision(monkeypatch, tmp_path):
    native(monkeypatch, True)   # so that a forced bf16 really runs under bf16 autocast here
    train_fp32_then_bf16(tmp_path)
    record = json.loads((tmp_path / "done.json").read_text())
    assert record["precision"]["segments"] == ["fp32", "bf16"]
    # a mixed run answers neither a changed setting ...
    assert "fp32 then bf16" in finished_run_precision_diff(tmp_path, "auto", "cpu")
    # ... but still the setting it finished under, as before
    assert finished_run_precision_diff(tmp_path, "bf16", "cpu") is None


def test_bf16_segments_use_the_fused_adamw_and_fp32_segments_foreach(monkeypatch, tmp_path):
    """The AdamW implementation follows the precision a segment trains in, also when it resumes another's state
    (load_state_dict would otherwise bring back the stored run's flags)."""
    from selfmae.train import engine as engine_mod

    native(monkeypatch, True)
    built = []
    real = engine_mod.build_optimizer
    monkeypatch.setattr(engine_mod, "build_optimizer", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    train_fp32_then_bf16(tmp_path)
    fp32_opt, bf16_opt = built
    assert all(g["foreach"] and not g["fused"] for g in fp32_opt.param_groups)
    assert all(g["fused"] and not g["foreach"] for g in bf16_opt.param_groups)   # after loading foreach state
    assert bf16_opt.state   # and it did step, from the resumed state
    assert not build_optimizer(make_mae(), base_cfg()).defaults["fused"]


# --------------------------------------------------------------------------------------------- nothing changes
def test_fp32_and_auto_train_the_same_numbers_on_this_cpu(tmp_path):
    """auto on any CPU trains a tiny model in fp32 (no autocast at all): the very same numbers as fp32."""
    runs = {}
    for setting in ("fp32", "auto"):
        model = make_mae()
        result = fit(model, MAETask(), mae_data(12, 0, noise=True), mae_data(4, 1),
                     base_cfg(precision=setting), tmp_path / setting)
        runs[setting] = ([{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")}
                          for r in result.history], model.state_dict())
    assert runs["fp32"][0] == runs["auto"][0]
    assert all(torch.equal(a, runs["auto"][1][k]) for k, a in runs["fp32"][1].items())


def test_the_engines_adamw_is_foreach_and_bit_identical_to_the_loop(tmp_path):
    """The foreach AdamW (fewer, larger ops) gives the same bits as torch's per-parameter loop."""
    params = {}
    for foreach in (False, True):
        model = make_mae()
        opt = build_optimizer(model, base_cfg())
        assert opt.defaults["foreach"] is True
        if not foreach:
            opt = torch.optim.AdamW(opt.param_groups, lr=opt.defaults["lr"], betas=opt.defaults["betas"],
                                    foreach=False)
        torch.manual_seed(3)
        for _ in range(4):
            loss = model(torch.randn(4, 1, 8, 8))[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        params[foreach] = [p.detach().clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(params[False], params[True]))


# --------------------------------------------------------------------------------------------- finished runs
def _finish(tmp_path, monkeypatch, setting: str, has_native: bool, run_json: dict | None, legacy: bool):
    """A finished run trained under `setting`; `legacy` drops the precision record as older engines wrote it."""
    native(monkeypatch, has_native)
    fit(make_mae(), MAETask(), mae_data(8, 0), None, base_cfg(epochs=1, precision=setting), tmp_path)
    done = tmp_path / "done.json"
    record = json.loads(done.read_text())
    if legacy:
        record.pop("precision")
        if run_json is not None and not run_json["hardware"].startswith("CPU"):
            record["config"]["train"]["device"] = "auto"     # it ran where CUDA was (train.device cpu would not)
        done.write_text(json.dumps(record))
    if run_json is not None:
        (tmp_path / "run.json").write_text(json.dumps(run_json))


AVX2 = {"hardware": "CPU AMD EPYC, 2 cores", "torch_cpu_capability": "AVX2"}
AVX512 = {"hardware": "CPU Intel Xeon, 2 cores", "torch_cpu_capability": "AVX512"}
GPU = {"hardware": "NVIDIA H200 x1", "torch_cpu_capability": "AVX512"}


def refit(tmp_path, setting: str):
    return fit(make_mae(), MAETask(), mae_data(8, 0), None, base_cfg(epochs=1, precision=setting), tmp_path)


@pytest.mark.parametrize("legacy", [True, False])
def test_a_bf16_run_that_trained_in_fp32_answers_auto_and_fp32(monkeypatch, tmp_path, legacy):
    """What every finished run of the tiny profile is: `bf16`, fallen back to fp32 on an AVX2 CPU."""
    _finish(tmp_path, monkeypatch, "bf16", False, AVX2, legacy)
    assert refit(tmp_path, "auto").skipped
    assert refit(tmp_path, "fp32").skipped
    native(monkeypatch, True)      # judged by the machine that trained it, not by this one
    assert refit(tmp_path, "auto").skipped


def test_a_legacy_bf16_run_that_cannot_tell_is_refused(monkeypatch, tmp_path):
    _finish(tmp_path, monkeypatch, "bf16", False, None, legacy=True)        # no run.json beside it
    with pytest.raises(TrainConfigError, match="does not record which precision"):
        refit(tmp_path, "auto")
    (tmp_path / "run.json").write_text(json.dumps(AVX512))                  # AVX512: native bf16 or not?
    with pytest.raises(TrainConfigError, match="train.precision"):
        refit(tmp_path, "fp32")
    assert refit(tmp_path, "bf16").skipped                                  # the same setting, as before


@pytest.mark.parametrize("legacy", [True, False])
def test_a_real_bf16_run_is_never_taken_for_an_fp32_one(monkeypatch, tmp_path, legacy):
    if legacy:   # an old record of a run on a GPU
        _finish(tmp_path, monkeypatch, "bf16", False, GPU, legacy=True)
    else:        # a run that trained under bf16 autocast on a (pretended) native-bf16 CPU
        _finish(tmp_path, monkeypatch, "bf16", True, None, legacy=False)
        assert json.loads((tmp_path / "done.json").read_text())["precision"]["used"] == "bf16"
    native(monkeypatch, False)
    with pytest.raises(TrainConfigError, match=r"train.precision \(bf16 -> fp32.*trained in bf16"):
        refit(tmp_path, "fp32")
    if not legacy:   # the tiny model: auto would have trained it in fp32 on that CPU
        with pytest.raises(TrainConfigError, match=r"bf16 -> auto"):
            refit(tmp_path, "auto")
    else:            # on a GPU auto is bf16: the same run
        assert refit(tmp_path, "auto").skipped


def test_an_fp32_run_answers_auto_only_where_auto_is_fp32(monkeypatch, tmp_path):
    _finish(tmp_path, monkeypatch, "fp32", False, None, legacy=False)
    assert refit(tmp_path, "auto").skipped                  # recorded: a CPU without native bf16
    _finish(tmp_path / "gpu", monkeypatch, "fp32", False, GPU, legacy=True)
    with pytest.raises(TrainConfigError, match="fp32 -> auto"):
        refit(tmp_path / "gpu", "auto")                     # auto on that GPU would have been bf16


def test_a_summary_is_reused_under_an_equivalent_setting(monkeypatch, tmp_path):
    """Fine-tuning summaries (keyed by config_hash) follow the engine's rule instead of re-evaluating."""
    from selfmae.config import config_hash
    from selfmae.experiments import stored_summary

    _finish(tmp_path, monkeypatch, "bf16", False, AVX2, legacy=True)
    cfg = {"experiment": "x", "data": {}, "model": {}, "train": base_cfg(epochs=1, precision="bf16")}
    (tmp_path / "summary.json").write_text(json.dumps({"config_hash": config_hash(cfg), "dice": 0.5}))
    auto = {**cfg, "train": {**cfg["train"], "precision": "auto"}}
    assert stored_summary(cfg, tmp_path)["dice"] == 0.5
    assert stored_summary(auto, tmp_path)["dice"] == 0.5
    assert stored_summary({**auto, "train": {**auto["train"], "lr": 1.0}}, tmp_path) is None   # a real change
    (tmp_path / "run.json").write_text(json.dumps(GPU))                   # had it trained in bf16 on a GPU ...
    assert stored_summary({**cfg, "train": {**cfg["train"], "precision": "fp32"}}, tmp_path) is None


def test_the_throughput_benchmark_records_the_machine(monkeypatch):
    """benchmarks/mae_throughput.py names the machine kind its JSON belongs to (no timing is asserted)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import mae_throughput as mt

    peaks = {"fp32": 180.0, "bf16": 1.0}
    monkeypatch.setattr(mt, "cpu_has_native_bf16", lambda: True)
    box = mt.machine("cpu", peaks, 1024)
    assert box["kind"] == mt.machine_kind(True, mt.cpu_flags(), box["cpu_capability"]) and box["cpu_native_bf16"]
    assert box["kind"] in ("amx", "avx512bf16")
    # AMX and AVX512-BF16 alone are kinds of their own (their bf16 peaks differ 1.6x); emulated bf16 is named by
    # torch's capability
    assert mt.machine_kind(True, {"avx512_bf16": True, "amx_bf16": True, "amx_tile": True}, "AVX512") == "amx"
    assert mt.machine_kind(True, {"avx512_bf16": True, "amx_bf16": False, "amx_tile": False}, "AVX512") == "avx512bf16"
    assert mt.machine_kind(False, {"avx512_bf16": False}, "AVX512") == "avx512"
    assert box["matmul_peak_gflops"] == peaks and box["threads"] == torch.get_num_threads()
    assert box["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    monkeypatch.setattr(mt, "cpu_has_native_bf16", lambda: False)
    assert mt.machine("cpu", peaks, 1024)["kind"] == torch.backends.cpu.get_cpu_capability().lower().replace(" ", "")


def test_the_precision_benchmark_times_a_config_in_both_precisions(tmp_path):
    """benchmarks/precision_cpu.py (the measurement behind the 5 M rule) runs a tiny config end to end; no timing
    is asserted, only that both precisions were timed and the machine is named."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import precision_cpu

    out = tmp_path / "p.json"
    report = precision_cpu.main(["--only", "finetune_cxr14", "--no-sweep", "--force", "--warmup", "1", "--iters", "1",
                                 "--out", str(out)])
    (row,) = report["results"]
    assert row["experiment"] == "finetune_cxr14" and row["params"] > 0
    assert row["fp32_ms"] > 0 and row["bf16_ms"] > 0 and row["bf16_speedup"] == row["fp32_ms"] / row["bf16_ms"]
    assert json.loads(out.read_text())["machine"]["kind"] == report["machine"]["kind"]
