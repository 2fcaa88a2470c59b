"""Tables: segmentation tables state the Dice/HD95 conventions in their footnote; NaN seeds are never dropped
silently from a mean ± CI cell."""
from __future__ import annotations

from selfmae.eval.metrics import DICE_CONVENTION, SEGMENTATION_CONVENTION
from selfmae.report import Stamp, format_ci, read_table, write_table
from selfmae.paper_tables import nnformer_comparison, table1_btcv, table3_brats, table3_brats_seeds

STAMP = Stamp("tiny", "synthetic", "abc1234", "2026-01-01 00:00 UTC", "CPU test")


def test_segmentation_tables_state_the_conventions_in_every_format(tmp_path):
    seeds = [{"dice": 0.5, "hd95": 10.0, **{f"dice/{o}": 0.5 for o in ("Aorta", "Liver")}}] * 2
    df = table1_btcv({"mae": seeds})
    paths = write_table(df, "t1", tmp_path, STAMP, "Table 1")
    assert "373.13" in SEGMENTATION_CONVENTION and "Dice 1 and HD95 0" in SEGMENTATION_CONVENTION
    for fmt in ("csv", "md", "tex"):
        assert "image diagonal in mm" in paths[fmt].read_text(), fmt
    assert len(read_table(paths["csv"])) == len(df)          # the footnote is a comment line, not a row
    assert table3_brats({}, {}).attrs["note"].startswith(SEGMENTATION_CONVENTION)
    # a table without HD95 states only the Dice rules; every one says what its ± and Source mean
    nn_note = nnformer_comparison({}).attrs["note"]
    assert nn_note.startswith(DICE_CONVENTION) and "HD95" not in nn_note and "seeds x cases" in nn_note


def test_our_rows_say_how_many_cases_each_seed_averages_and_table3_shows_each_seed():
    def seed(et2, cases=5):
        return {"dice": 0.9, "hd95": 1.0, "dice/WT": 0.9, "dice/ET": 0.9, "dice/TC": 0.9, "n_cases": cases,
                "code": et2}

    ours = {"mae": [seed(0)] * 3}
    code = {"mae": [{"dice": (1 + 1 + et2) / 3, "dice/WT": 1.0, "dice/TC": 1.0, "dice/ET": et2, "hd95": 0.0,
                     "n_cases": 5} for et2 in (1.0, 1.0, 0.23)]}
    df = table3_brats(ours, code)
    mine = df[df["Source"].str.startswith("ours")].set_index("Method")
    assert mine.loc["UNETR+MAE", "Source"] == "ours (n=3 seeds x 5 cases)"
    assert mine.loc["UNETR", "Source"] == "ours (n=0)" and mine.loc["UNETR", "WT DSC"] == "not run"
    assert mine.loc["UNETR+MAE", "WT DSC (ET=2 runs)"].startswith("100.00")   # the ET=2 average's own WT
    assert "separate fine-tunings" in df.attrs["note"]
    seeds = table3_brats_seeds(ours, code)
    assert list(seeds["Method"]) == ["mae"] * 3 and list(seeds["ET=2 DSC"]) == ["100.00", "100.00", "23.00"]
    assert list(seeds["Cases"]) == [5, 5, 5]


def test_a_nan_seed_is_counted_in_the_cell():
    assert format_ci([0.5, float("nan"), 0.7], 100.0).endswith("(1 of 3 NaN)")
    assert format_ci([0.5, 0.7], 100.0) == "60.00 ± 127.06"


def test_every_table_names_each_rows_architecture():
    """Paper rows say what the paper ran, ours what we built; methods not run still say 'not run'."""
    from selfmae.paper_tables import nnformer_comparison, table1_btcv_hd95, table2_cxr14, table3_ablation

    seed = {"dice": 0.5, "hd95": 10.0, "mAUC": 0.6, "dice/WT": 0.5, "dice/ET": 0.5, "dice/TC": 0.5}
    tiny = "UNETR (ViT 4x64, patch 4, features 8)"
    for df in (table1_btcv({"mae": [seed]}, architecture=tiny), table1_btcv_hd95({"mae": [seed]}, architecture=tiny),
               table3_brats({"mae": [seed]}, {"mae": [seed]}, architecture=tiny)):
        paper, ours = df[df["Source"] == "paper"].set_index("Method"), df[df["Source"] != "paper"].set_index("Method")
        assert paper.loc["UNETR+MAE", "Architecture"] == "UNETR (ViT-B/16)"
        assert (ours["Architecture"] == tiny).all() and ours.loc["UNETR", df.columns[-1]] == "not run"
        if "U-Net(R50)" in paper.index:
            assert paper.loc["U-Net(R50)", "Architecture"] == "U-Net(R50)"   # a baseline: its own name
    t2 = table2_cxr14({"mae": [seed]}, epochs={"mae": 8}, architecture={"mae": "ViT 4x64, patch 8"})
    ours = t2[t2["Source"] != "paper"]
    assert list(ours["Architecture"]) == ["–", "–", "–", "ViT 4x64, patch 8"]   # methods without a name: "–"
    assert list(ours["mAUC"])[:3] == ["not run"] * 3 and "ViT-B/16" in set(t2[t2["Source"] == "paper"]["Architecture"])
    abl = table3_ablation("btcv", {(0.125, 10000): [seed]}, {10000: 4}, architecture=tiny)
    assert set(abl[abl["Source"] == "paper"]["Architecture"]) == {"UNETR (ViT-B/16)"}
    assert set(abl[abl["Source"] != "paper"]["Architecture"]) == {tiny}
    nn = nnformer_comparison({"nnformer_mae": [seed]}, architecture={"nnformer_mae": "nnFormer (C=24, depths 2-2-2)"})
    mae = nn[(nn["Model"] == "MAE + nnFormer")].set_index("Source")["Architecture"]
    assert list(mae) == ["nnFormer", "nnFormer (C=24, depths 2-2-2)"]
    assert nn.loc[nn["Model"] == "TransUNet", "Architecture"].tolist() == ["TransUNet", "–"]
