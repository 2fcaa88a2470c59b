"""The learning check never looks complete when a notebook has not run; a floor missed reads MISSED, not NOT RUN."""
from __future__ import annotations

from selfmae import learning_check as lc
from selfmae.data import BTCV_ORGANS


def test_a_notebook_that_has_not_run_gives_a_not_run_row_that_counts_as_missed(capsys):
    saved = {"pretrain_cxr14": {"val_loss": 0.5, "flat_guess": 0.95}}
    rows = lc.collect_rows(saved.get, BTCV_ORGANS)
    not_run = {r.experiment for r in rows if not r.ran}
    assert "pretrain_cxr14" not in not_run
    assert {"pretrain_btcv", "table2_cxr14", "table1_btcv", "table3_brats", "nnformer_btcv"} <= not_run
    check = lc.table(rows)
    assert set(check["met"]) == {"yes", "NOT RUN"} and "ran" not in check.columns
    assert {r.experiment for r in lc.missed(rows)} == not_run
    assert "nnformer_btcv: no results" in capsys.readouterr().out


def test_every_result_present_gives_no_not_run_row():
    mae = {"val_loss": 0.7, "flat_guess": 0.95}     # above the 0.6 floor: MISSED, not NOT RUN
    saved = {name: mae for name in lc.MAE_RUNS}
    saved |= {name: {"runs": {}} for name in ("table2_cxr14", "table1_btcv", "table3_brats", "table3_ablation_btcv",
                                             "table3_ablation_brats")}
    saved["nnformer_btcv"] = {"runs": {}, "fractions": {}}
    rows = lc.collect_rows(saved.get, BTCV_ORGANS)
    assert all(r.ran for r in rows)
    assert set(lc.table(rows)["met"]) == {"MISSED"}
