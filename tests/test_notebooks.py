"""Every numbered notebook runs through papermill in the tiny profile and writes the tables and figures it should.

The notebooks run once per test session into a temporary folder (phantoms, runs, tables and figures all there),
with `max_steps=2` and two seeds so the whole chain takes minutes; the numbers are meaningless, the layout is not.
"""
import json
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from selfmae.report import read_table
from selfmae.runner import numbered_notebooks, reproduce

pytestmark = pytest.mark.slow

TABLES = {  # name -> columns that must be there
    "data_check": ["dataset", "folder", "problems"],
    "table1_btcv": ["Method", "Architecture", "Source", "Avg DSC", "Avg HD95", "Aorta", "Gallbladder", "Kidney(L)",
                    "Kidney(R)", "Liver", "Pancreas", "Spleen", "Stomach"],
    "table1_btcv_hd95": ["Method", "Architecture", "Source", "Avg HD95", "Aorta", "Stomach"],
    "table2_cxr14": ["Architecture", "Pre-training", "Data", "Epochs", "Source", "mAUC"],
    "table3_brats": ["Method", "Architecture", "Source", "Avg DSC (ET=3)", "Avg DSC (ET=2)", "WT DSC", "ET=3 DSC",
                     "ET=2 DSC", "TC DSC", "TC HD95"],
    "table3_brats_seeds": ["Method", "Seed", "WT DSC", "ET=3 DSC", "ET=2 DSC", "WT DSC (ET=2 runs)", "Cases"],
    "table3_ablation_brats": ["Mask ratio", "Pre-train epochs (paper)", "Pre-train epochs (ours)", "Architecture",
                              "Source", "Avg DSC", "WT DSC", "ET=2 DSC", "ET=3 DSC", "TC DSC"],
    "table3_ablation_btcv": ["Mask ratio", "Pre-train epochs (paper)", "Pre-train epochs (ours)", "Architecture",
                             "Source", "Avg DSC"],
    "nnformer_comparison": ["Model", "Architecture", "Source", "Avg DSC"],
    "nnformer_convergence": ["init", "seed", "epochs to 95% of final DSC"],
    "quickstart_pneumoniamnist": ["method", "Architecture"],
    "medmnist3d_scratch_vs_mae": ["Method", "Architecture", "Source", "seeds", "test AUC (%)", "test ACC (%)",
                                  "val AUC (%)"],
    "medmnist3d_mask_ratio": ["Mask ratio", "pre-training val loss", "flat-patch guess", "seeds", "val AUC (%)",
                              "test AUC (%)", "test ACC (%)"],
}
FIGURES = ["fig0_masking_demo", "data_examples_cxr14", "data_examples_btcv", "data_examples_brats",
           "curves_pretrain_cxr14", "recon_pretrain_cxr14", "curves_pretrain_btcv", "recon_pretrain_btcv",
           "curves_pretrain_brats", "recon_pretrain_brats", "curves_finetune_cxr14", "curves_finetune_btcv",
           "curves_finetune_brats", "ablation_mask_ratio", "fig2_reconstructions", "fig3_overlays_btcv",
           "fig3_overlays_brats", "curves_pretrain_nnformer_btcv", "nnformer_label_fraction", "nnformer_convergence",
           "explore_error_vs_ratio", "medmnist3d_examples", "medmnist3d_reconstruction", "medmnist3d_scratch_vs_mae",
           "medmnist3d_curves", "medmnist3d_mask_ratio"]
# notebook 10's sweep at one fraction below 100 % runs every code path of the four (each is 4 more fine-tunings)
PARAMS = {"max_steps": 2, "seeds": [0, 1], "label_fractions": [0.1, 1.0]}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SELFMAE_SYNTHETIC", str(root / "synthetic"))
        rc = reproduce("tiny", runs_dir=root / "runs", results_dir=root, params=PARAMS)
    return root, rc


def test_every_notebook_ran(executed):
    root, rc = executed
    assert rc == 0
    for source in numbered_notebooks():
        out = root / "runs" / "notebooks" / f"{source.stem}.ipynb"
        assert out.exists(), out
        nb = nbformat.read(out, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{out}: {errors[:1]}"
    assert not list((Path(__file__).parents[1] / "notebooks").glob("*.ipynb")), "executed copies next to sources"


@pytest.mark.parametrize("name", sorted(TABLES))
def test_tables_written_with_layout_and_stamp(executed, name):
    root, _ = executed
    tables = root / "tables" / "tiny"
    for ext in ("csv", "md", "tex"):
        path = tables / f"{name}.{ext}"
        assert path.exists() and path.stat().st_size > 0, path
        assert "profile=tiny" in path.read_text() and "commit=" in path.read_text()
    df = read_table(tables / f"{name}.csv")
    assert len(df) > 0
    assert set(TABLES[name]) <= set(df.columns), f"{name}: {list(df.columns)}"
    if "Source" in df.columns:
        sources = set(df["Source"])
        assert "paper" in sources and any(s.startswith("ours") for s in sources), sources


def test_reproduced_rows_hold_our_numbers(executed):
    root, _ = executed
    t1 = read_table(root / "tables" / "tiny" / "table1_btcv.csv")
    ours = t1[t1["Source"].str.startswith("ours")].set_index("Method")
    assert "±" in ours.loc["UNETR", "Avg DSC"] and "±" in ours.loc["UNETR+MAE", "Aorta"]
    assert ours.loc["UNETR+ImageNet", "Avg DSC"] == "not run"       # no local ImageNet weights in the test
    paper = t1[t1["Source"] == "paper"].set_index("Method")
    assert paper.loc["UNETR+MAE", "Avg DSC"] == "83.52"
    assert paper.loc["UNETR+MAE", "Architecture"] == "UNETR (ViT-B/16)"
    assert all(a.startswith("UNETR (ViT ") for a in ours["Architecture"])   # the tiny UNETR, named as built
    t2 = read_table(root / "tables" / "tiny" / "table2_cxr14.csv")
    assert len(t2) == 10 + 4 + 1                        # the paper's 10 rows + 4 reproduced rows + the reference
    assert all(a.startswith("ViT ") for a in t2.loc[t2["Source"].str.startswith("ours"), "Architecture"])  # not ViT-B/16
    assert t2.iloc[-1]["Source"] == "reference (this run)" and float(t2.iloc[-1]["mAUC"]) > 50   # logistic regression
    t1 = read_table(root / "tables" / "tiny" / "table1_btcv.csv")
    assert t1.iloc[-1]["Method"] == "intensity-only voxel classifier"


def test_medmnist3d_tables_hold_our_rows_beside_the_published_ones(executed):
    """Notebook 14 on the shipped AdrenalMNIST3D: MedMNIST v2's eight baselines, our two methods over the seeds, the
    voxel logistic regression; one mask-ratio row per ratio, the validation's choice marked."""
    root, _ = executed
    table = read_table(root / "tables" / "tiny" / "medmnist3d_scratch_vs_mae.csv")
    assert list(table["Source"]).count("paper") == 8 and "ResNet-18 (3D)" in set(table["Method"])
    ours = table[table["Source"].str.startswith("ours")]
    assert list(ours["Method"]) == ["ViT from scratch", "ViT, MAE self pre-trained"] and set(ours["seeds"]) == {"2"}
    assert all("±" in cell for cell in ours["test AUC (%)"])
    assert table.iloc[-1]["Source"] == "reference (this run)"
    assert "transcribed, unverified" in (root / "tables" / "tiny" / "medmnist3d_scratch_vs_mae.md").read_text()
    sweep = read_table(root / "tables" / "tiny" / "medmnist3d_mask_ratio.csv")
    assert list(sweep["Mask ratio"]) == ["87.5%", "75%", "50%", "25%", "12.5%"]
    assert sweep["note"].str.contains("chosen on validation").sum() == 1


def test_medmnist3d_notebook_refuses_a_folder_without_npz(tmp_path, capsys):
    """`-p data_dir=<folder without .npz>`: notebook 14 stops with FileNotFoundError naming the folder."""
    empty = tmp_path / "no_npz_here"
    empty.mkdir()
    rc = reproduce("tiny", data_dir=empty, only=["14"], runs_dir=tmp_path / "runs", results_dir=tmp_path)
    assert rc == 1 and "14_medmnist3d" in capsys.readouterr().err
    executed = (tmp_path / "runs" / "notebooks" / "14_medmnist3d.ipynb").read_text()
    assert "FileNotFoundError" in executed and str(empty) in executed and "no MedMNIST .npz" in executed


def test_learning_check_written(executed):
    """Notebook 13: one row per experiment and metric, with its floor, whether it was met and the reference."""
    root, _ = executed
    check = read_table(root / "tables" / "tiny" / "learning_check.csv")
    assert {"experiment", "run", "metric", "value", "floor", "met", "reference", "reference value"} <= set(check.columns)
    assert set(check["met"]) <= {"yes", "MISSED"}
    assert {"pretrain_cxr14", "table2_cxr14", "table1_btcv", "table3_brats", "nnformer_btcv"} <= set(check["experiment"])


@pytest.mark.parametrize("name", FIGURES)
def test_figures_written_and_not_blank(executed, name):
    root, _ = executed
    png, pdf = (root / "figures" / "tiny" / f"{name}.{ext}" for ext in ("png", "pdf"))
    assert pdf.exists() and pdf.stat().st_size > 1000, pdf
    with Image.open(png) as im:
        extrema = im.convert("L").getextrema()
        assert im.size[0] > 200 and extrema[1] - extrema[0] > 50, (png, im.size, extrema)


def test_rerun_skips_finished_notebooks(executed, capsys, monkeypatch):
    root, _ = executed
    monkeypatch.setenv("SELFMAE_SYNTHETIC", str(root / "synthetic"))
    rc = reproduce("tiny", runs_dir=root / "runs", results_dir=root, params=PARAMS)
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("skipped, inputs unchanged") == len(numbered_notebooks()), out


def test_changed_parameters_rerun(tmp_path, capsys):
    """Inputs are hashed: a different parameter re-runs the step (checked on a tiny throw-away notebook)."""
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    (nb_dir / "01_ok.py").write_text('# %% tags=["parameters"]\nprofile = "tiny"\ndata_dir = ""\nout_dir = ""\n'
                                     'results_dir = ""\nx = 1\n\n# %%\nprint(x)\n')
    kw = dict(runs_dir=tmp_path / "runs", results_dir=tmp_path, notebook_dir=nb_dir)
    assert reproduce("tiny", params={"x": 1}, **kw) == 0
    assert reproduce("tiny", params={"x": 1}, **kw) == 0
    assert reproduce("tiny", params={"x": 2}, **kw) == 0
    out = capsys.readouterr().out
    assert out.count("skipped, inputs unchanged") == 1 and out.count("running") == 2


def test_failing_notebook_keeps_its_executed_copy_and_stops(tmp_path, capsys):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    (nb_dir / "01_fails.py").write_text('# %% tags=["parameters"]\nprofile = "tiny"\n\n# %%\n'
                                        'raise RuntimeError("deliberate failure for the test")\n')
    (nb_dir / "02_never.py").write_text('# %% tags=["parameters"]\nprofile = "tiny"\n\n# %%\nprint("ran")\n')
    rc = reproduce("tiny", runs_dir=tmp_path / "runs", results_dir=tmp_path, notebook_dir=nb_dir)
    err = capsys.readouterr().err
    assert rc == 1 and "01_fails" in err and "FAILED" in err
    executed = tmp_path / "runs" / "notebooks" / "01_fails.ipynb"
    assert "deliberate failure for the test" in executed.read_text()
    assert not (tmp_path / "runs" / "notebooks" / "02_never.ipynb").exists()
    assert not (tmp_path / "runs" / "notebooks" / "01_fails.done.json").exists()
