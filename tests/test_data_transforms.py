"""The paper's preprocessing: crop sizes, intensity ranges, label encodings, caching."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader, Dataset

from _data_helpers import SAMPLES, phantom, sample_copy
from selfmae.data import build_datasets, build_transforms


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "phantoms"


def small_cfg(dataset, root, **kw):
    cfg = {"dataset": dataset, "data_dir": str(root), "cache": False, "num_workers": 0, "split_seed": 0}
    cfg.update({"btcv": {"spacing": [9.6, 9.6, 13.0], "roi_size": [16, 16, 16], "num_samples": 2, "organs": 8,
                         "a_min": -175, "a_max": 250},
                "brats": {"roi_size": [16, 16, 16], "num_samples": 2, "et_convention": "dataset_json",
                          "spacing": None, "val_fraction": 0.2},
                "cxr14": {"resize": 48, "crop": 40, "val_fraction": 0.1}}.get(dataset, {}))
    cfg.update(kw)
    return cfg


def test_cxr14_real_sample_paper_sizes(tmp_path):
    root = sample_copy("cxr14-sample", tmp_path)
    cfg = {"dataset": "cxr14", "data_dir": str(root), "resize": 256, "crop": 224, "val_fraction": 0.0, "cache": False,
           "split_seed": 0}
    ds = build_datasets(cfg, "classify")
    train, test = ds["train"][0], ds["test"][0]
    for item in (train, test):
        assert item["image"].shape == (1, 224, 224) and item["image"].dtype == torch.float32
        assert item["label"].shape == (14,) and item["label"].dtype == torch.float32
    # z-scored per image (after histogram equalisation and the [0, 1] scaling): mean 0, variance 1 before the crop
    assert abs(float(test["image"].mean())) < 0.3 and 0.7 < float(test["image"].std()) < 1.3


def test_cxr14_train_random_eval_deterministic(base):
    ds = build_datasets(small_cfg("cxr14", phantom("cxr14", base), cache=True), "classify")
    assert isinstance(ds["train"], CacheDataset) and set(ds) == {"train", "val", "test"}
    a, b = ds["val"][0]["image"], ds["val"][0]["image"]
    assert a.shape == (1, 40, 40) and torch.equal(a, b)
    crops = {tuple(ds["train"][0]["image"].flatten()[:50].tolist()) for _ in range(6)}
    assert len(crops) > 1  # random crop / flip


def test_btcv_segment_crops_labels_and_range(base):
    ds = build_datasets(small_cfg("btcv", phantom("btcv", base)), "segment")
    crops = ds["train"][0]
    assert isinstance(crops, list) and len(crops) == 2
    for c in crops:
        assert c["image"].shape == (1, 16, 16, 16) and c["label"].shape == (1, 16, 16, 16)
        assert c["label"].dtype == torch.long and c["case_id"].startswith("img")
        assert 0.0 <= float(c["image"].min()) and float(c["image"].max()) <= 1.0
    val = ds["val"][0]
    assert val["image"].shape[1:] == val["label"].shape[1:] and min(val["image"].shape[1:]) >= 16
    assert set(torch.unique(val["label"]).tolist()) <= set(range(9)) and int(val["label"].max()) == 8
    batch = next(iter(DataLoader(ds["train"], batch_size=2)))  # list_data_collate: 2 volumes x 2 crops
    assert batch["image"].shape == (4, 1, 16, 16, 16)


def test_btcv_pretrain_needs_no_labels_and_reaches_paper_roi(base):
    cfg = small_cfg("btcv", phantom("btcv", base), roi_size=[96, 96, 96], num_samples=1)
    ds = build_datasets(cfg, "pretrain")
    item = ds["train"][0][0]
    assert "label" not in item and item["image"].shape == (1, 96, 96, 96)  # small volume padded to the paper roi
    assert ds["val"][0]["image"].shape == (1, 96, 96, 96)


def test_real_ct_through_paper_pipeline():
    cfg = {"dataset": "btcv", "spacing": [1.5, 1.5, 2.0], "roi_size": [96, 96, 96], "a_min": -175, "a_max": 250,
           "num_samples": 2, "organs": 8}
    item = {"image": str(SAMPLES / "ct-sample" / "example_ct.nii.gz"), "case_id": "example_ct"}
    out = build_transforms(cfg, "pretrain", train=True)(item)
    assert len(out) == 2 and out[0]["image"].shape == (1, 96, 96, 96)
    whole = build_transforms(cfg, "segment", train=False)({**item, "label": item["image"]})["image"]
    assert 0.0 == float(whole.min()) and float(whole.max()) == 1.0
    assert np.allclose(whole.pixdim.tolist(), [1.5, 1.5, 2.0])


def test_brats_zscore_regions_and_crops(base):
    ds = build_datasets(small_cfg("brats", phantom("brats", base)), "segment")
    val = ds["val"][0]
    img, lab = val["image"], val["label"]
    assert img.shape[0] == 4 and lab.shape[0] == 3 and img.shape[1:] == lab.shape[1:]
    for c in range(4):
        v = img[c][img[c] != 0]
        assert abs(float(v.mean())) < 1e-3 and abs(float(v.std()) - 1) < 1e-2
    tc, wt, et = lab.bool()
    assert wt.any() and et.any() and not (tc & ~wt).any() and not (et & ~tc).any()
    crops = ds["train"][0]
    assert len(crops) == 2 and crops[0]["image"].shape == (4, 16, 16, 16) and crops[0]["label"].shape == (3, 16, 16, 16)


def test_brats_selfmedmae_convention_marks_label_2_as_et(base):
    root = phantom("brats", base)
    a = build_datasets(small_cfg("brats", root), "segment")["val"][0]["label"]
    b = build_datasets(small_cfg("brats", root, et_convention="selfmedmae_code"), "segment")["val"][0]["label"]
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2], b[2])


def test_cache_matches_uncached(base):
    cfg = small_cfg("btcv", phantom("btcv", base))
    cached = build_datasets({**cfg, "cache": True}, "segment")["val"]
    plain = build_datasets(cfg, "segment")["val"]
    assert isinstance(cached, CacheDataset) and type(plain) is Dataset
    assert torch.equal(cached[1]["image"], plain[1]["image"])


def test_medmnist_real_subset_with_crop():
    cfg = {"dataset": "medmnist", "data_dir": str(SAMPLES / "medmnist"), "spatial_dims": 2, "crop": 24, "cache": False}
    ds = build_datasets(cfg, "classify")
    assert ds["train"][0]["image"].shape == (1, 24, 24) and ds["test"][0]["label"].shape == (1,)


def test_task_dataset_mismatch_is_an_error(base):
    with pytest.raises(ValueError, match="does not apply"):
        build_transforms({"dataset": "btcv"}, "classify", train=True)
    with pytest.raises(ValueError, match="does not apply"):
        build_transforms({"dataset": "cxr14"}, "segment", train=True)


def test_training_items_are_plain_tensors_cached_without_metadata_eval_keeps_affine(base):
    from monai.data import MetaTensor, get_track_meta

    ds = build_datasets(small_cfg("btcv", phantom("btcv", base), cache=True), "segment")
    cached = ds["train"]._cache[0]  # what CacheDataset deep-copies for every draw
    assert not any(isinstance(v, MetaTensor) for v in cached.values())
    for crop in ds["train"][0]:
        assert type(crop["image"]) is torch.Tensor and type(crop["label"]) is torch.Tensor
    assert get_track_meta()  # the per-epoch steps switch metadata off only while they run
    val = ds["val"][0]
    assert isinstance(val["image"], MetaTensor) and val["image"].affine.shape == (4, 4)


def test_a_brats_fine_tuning_records_the_label_ids_of_each_region(base, tmp_path, caplog):
    """run.json's `labels` (training and evaluation) says which label ids made each region, as this folder's
    dataset.json names them (here enhancing tumour is id 2, not MSD's 3): the config's et_convention alone does not
    say it."""
    import json

    from _data_helpers import phantom_copy
    from selfmae.config import load_config
    from selfmae.experiments import run_evaluate, run_training

    root = phantom_copy("brats", base, tmp_path)
    spec = json.loads((root / "dataset.json").read_text())
    spec["labels"] = {"0": "background", "1": "edema", "2": "enhancing tumour", "3": "non-enhancing tumour"}
    (root / "dataset.json").write_text(json.dumps(spec))
    cfg = load_config("finetune_brats", "tiny", {"data.data_dir": str(root), "data.cache": False,
                                                 "train.max_steps": 1, "train.epochs": 1, "train.device": "cpu"})
    result = run_training(cfg, tmp_path / "ft")
    run_evaluate(cfg, result.best_ckpt, tmp_path / "ev")       # an evaluation in a folder of its own records it too
    expected = {"et_convention": "dataset_json", "regions": {"TC": [2, 3], "WT": [1, 2, 3], "ET": [2]}}
    for folder in ("ft", "ev"):
        assert json.loads((tmp_path / folder / "run.json").read_text())["labels"] == expected
    assert "other label" not in caplog.text and "trained with data.et_convention" not in caplog.text
    code = {**cfg, "data": {**cfg["data"], "et_convention": "selfmedmae_code"}}   # ET scored as label 3 (core)
    run_evaluate(code, result.best_ckpt, tmp_path / "ev-code")
    assert ("trained with data.et_convention=dataset_json, this evaluation uses data.et_convention=selfmedmae_code"
            in caplog.text and "--set data.et_convention=dataset_json" in caplog.text)
