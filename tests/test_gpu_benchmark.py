"""benchmarks/gpu_paper.py and gpu_profile.py, the prepared GPU checks, run on the CPU here (no timing asserted)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
gpu_paper = pytest.importorskip("gpu_paper")
gpu_profile = pytest.importorskip("gpu_profile")


def test_the_plan_runs_the_issue_targets_first_and_compiles_last():
    todo = gpu_paper.plan(gpu_paper.EXPERIMENTS, cuda=True, compile_all=False)
    assert todo[:4] == [("pretrain_btcv", "eager", 1), ("pretrain_btcv", "graph", 1),
                        ("pretrain_btcv", "monai-fp32", 1), ("pretrain_btcv", "monai-tf32", 1)]
    assert {e for e, v, _ in todo if v == "eager"} == set(gpu_paper.EXPERIMENTS)  # every paper config, eager
    first_compile = next(i for i, (_, v, _) in enumerate(todo) if "compile" in v)
    assert all("compile" in v for _, v, _ in todo[first_compile:])
    cpu = gpu_paper.plan(gpu_paper.EXPERIMENTS, cuda=False, compile_all=False)
    assert not any("graph" in v or v == "monai-tf32" for _, v, _ in cpu)  # CUDA graphs and TF32 need a GPU


def test_a_cpu_run_writes_rows_with_flops_and_no_plan_times(tmp_path):
    out = tmp_path / "g.json"
    report = gpu_paper.main(["--device", "cpu", "--profile", "tiny", "--steps", "1", "--only", "finetune_cxr14",
                             "--out", str(out)])
    row = json.loads(out.read_text())["rows"][0]
    assert row["experiment"] == "finetune_cxr14" and row["variant"] == "eager" and row["finite"]
    assert row["gflop_per_step"] > 0 and row["s_per_step"] > 0 and row["x_eager"] == 1.0
    assert "finetune_cxr14" in report["markdown"]
    assert not (tmp_path / "paper_steps.json").exists()  # only a paper-profile run on CUDA feeds `make plan`


@pytest.mark.parametrize("name, category", [
    ("nvjet_sm90_tst_128x208_64x5_2x1_v_bz_coopA_NNT", "matmul"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26", "attention"),
    ("triton_poi_fused_cat_gelu_1", "fused (inductor/triton)"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<...>", "optimizer"),
    ("void at::native::vectorized_elementwise_kernel<8, at::native::bfloat16_copy_kernel_cuda>", "copy"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float>", "norm/elementwise/reduce"),
])
def test_profile_categories(name, category):
    assert gpu_profile.category(name) == category
