"""The dataset registry (issue #14): one entry per dataset, asked by everything above selfmae/data/; the answers
are the ones the code gave before it (same classes, channels, input sizes), and unknown names are refused."""
from __future__ import annotations

import pytest

from selfmae.config import available_experiments, load_config
from selfmae.data import DATASETS, BRATS_REGIONS, BTCV_ORGANS, CXR14_LABELS, dataset_spec
from selfmae.data.registry import input_size, spec_of


def test_every_config_names_a_registered_dataset_that_serves_its_task():
    assert set(DATASETS) == {"cxr14", "btcv", "brats", "medmnist", "decathlon"}
    for name in available_experiments():
        cfg = load_config(name, "tiny")
        spec = dataset_spec(cfg["data"])
        spec.require_task(cfg["task"])
        assert spec.name == cfg["data"]["dataset"]
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*decathlon"):
        dataset_spec("mnist")
    with pytest.raises(ValueError, match="task 'classify' does not apply to dataset 'btcv'"):
        dataset_spec("btcv").require_task("classify")


def test_classes_and_output_channels_are_the_papers():
    btcv = dataset_spec("btcv")
    assert btcv.eval_classes({"organs": 13}) == (BTCV_ORGANS, [8, 4, 3, 2, 6, 11, 1, 7])   # Table 1 order
    assert btcv.eval_classes({"organs": 8}) == (BTCV_ORGANS, list(range(1, 9)))
    assert btcv.out_channels({"organs": 13}) == 14 and btcv.out_channels({"organs": 8}) == 9
    assert dataset_spec("brats").eval_classes({}) == (BRATS_REGIONS, [0, 1, 2]) and dataset_spec("brats").regions
    assert dataset_spec("cxr14").eval_classes({}) == (CXR14_LABELS, None)
    assert (btcv.segmentation_kind, dataset_spec("brats").segmentation_kind) == ("classes", "regions")
    assert dataset_spec("decathlon").segmentation_kind == "classes"   # class ids, softmax
    assert not btcv.regions and not dataset_spec("decathlon").regions
    with pytest.raises(ValueError, match="model.out_channels is required"):
        dataset_spec("cxr14").out_channels({})


def test_one_input_size_for_models_experiments_and_the_explorer():
    from selfmae.explore import model_input_size
    from selfmae.models import img_size_of

    cases = [({"spatial_dims": 3, "roi_size": [16, 24, 32]}, (16, 24, 32)),
             ({"spatial_dims": 2, "crop": 224, "resize": 256}, (224, 224)),
             ({"spatial_dims": 2, "resize": 28}, (28, 28))]
    for data, size in cases:
        assert input_size(data) == img_size_of(data) == tuple(model_input_size(data)) == size
    for name in available_experiments():
        data = load_config(name, "paper")["data"]
        assert len(input_size(data)) == data["spatial_dims"]
    with pytest.raises(ValueError, match="does not have 3 entries"):
        input_size({"spatial_dims": 3, "roi_size": [16, 16]})


def test_sections_without_a_known_dataset_get_the_generic_entry():
    assert spec_of({"spatial_dims": 3, "in_channels": 4}).in_channels({"in_channels": 4}) == 4
    assert spec_of({}).name == "" and spec_of({"dataset": "btcv"}).name == "btcv"


def test_mae_refuses_drop_path_it_would_ignore():
    from selfmae.models import build_model

    model_cfg = dict(load_config("pretrain_btcv", "tiny")["model"])
    data_cfg = load_config("pretrain_btcv", "tiny")["data"]
    assert model_cfg["drop_path"] == 0.0 and build_model(model_cfg, data_cfg) is not None
    with pytest.raises(ValueError, match="model.drop_path=0.1 is not supported for model mae"):
        build_model(dict(model_cfg, drop_path=0.1), data_cfg)


def test_ablation_rows_follow_the_registry_not_the_name():
    from selfmae.learning_check import collect_rows

    summary = {"dice": 0.8, "dice/TC": 0.7, "dice/WT": 0.8, "dice/ET": 0.6}
    saved = {"table3_ablation_brats": {"runs": {"0.125": [summary]}}}
    rows = collect_rows(saved.get, BTCV_ORGANS)
    assert {r.metric for r in rows} >= {"WT DSC", "TC DSC", "ET DSC"}


def test_each_dataset_names_its_pretraining_config_and_its_bundle_files():
    from selfmae.data.registry import bundle_dataset

    medmnist = dataset_spec("medmnist")
    assert (medmnist.pretrain_config(2), medmnist.pretrain_config(3)) == ("pretrain_medmnist", "pretrain_medmnist3d")
    for name in DATASETS:
        for dims in (2, 3):
            cfg = load_config(dataset_spec(name).pretrain_config(dims), "tiny")   # a shipped config of that dataset
            assert cfg["task"] == "pretrain" and cfg["data"]["dataset"] == name
    assert bundle_dataset("/x/PneumoniaMNIST.NPZ") == "medmnist"
    assert bundle_dataset("scan.png") is None and bundle_dataset("ct.nii.gz") is None
