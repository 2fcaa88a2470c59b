"""Tables: segmentation tables state the Dice/HD95 conventions in their footnote; NaN seeds are never dropped
silently from a mean ± CI cell."""
from __future__ import annotations

from selfmae.eval.metrics import SEGMENTATION_CONVENTION
from selfmae.report import Stamp, format_ci, read_table, table1_btcv, table3_brats, write_table

STAMP = Stamp("tiny", "synthetic", "abc1234", "2026-01-01 00:00 UTC", "CPU test")


def test_segmentation_tables_state_the_conventions_in_every_format(tmp_path):
    seeds = [{"dice": 0.5, "hd95": 10.0, **{f"dice/{o}": 0.5 for o in ("Aorta", "Liver")}}] * 2
    df = table1_btcv({"mae": seeds})
    paths = write_table(df, "t1", tmp_path, STAMP, "Table 1")
    assert "373.13" in SEGMENTATION_CONVENTION and "Dice 1 and HD95 0" in SEGMENTATION_CONVENTION
    for fmt in ("csv", "md", "tex"):
        assert "image diagonal in mm" in paths[fmt].read_text(), fmt
    assert len(read_table(paths["csv"])) == len(df)          # the footnote is a comment line, not a row
    assert table3_brats({}, {}).attrs["note"] == SEGMENTATION_CONVENTION


def test_a_nan_seed_is_counted_in_the_cell():
    assert format_ci([0.5, float("nan"), 0.7], 100.0).endswith("(1 of 3 NaN)")
    assert format_ci([0.5, 0.7], 100.0) == "60.00 ± 127.06"
