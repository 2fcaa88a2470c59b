"""The dataset registry: one object per dataset that knows everything the rest of the package asks about it.

    from selfmae.data.registry import dataset_spec
    spec = dataset_spec(cfg["data"])          # or dataset_spec("btcv")
    spec.read(data_cfg, task)                 # {"train", "val"[, "test"]} item lists (its reader and folder layout)
    spec.check(data_dir, task, data_cfg)      # every problem on disk, each naming its file
    spec.transforms(data_cfg, task, train)    # the MONAI pipeline (train / eval)
    spec.inspect_transforms(data_cfg)         # the deterministic eval preprocessing of one image, no label needed
    spec.eval_classes(data_cfg)               # (evaluated class or region names, output channels holding them)
    spec.out_channels(data_cfg)               # segmentation outputs when model.out_channels is null
    spec.input_size(data_cfg)                 # the network's input size, from the data section
    spec.segmentation_kind                    # label convention: "classes" or "regions" (`selfmae.eval.inference`)
    spec.pretrain_config(spatial_dims)        # the shipped pre-training config for its images
    bundle_dataset(path)                      # which dataset a bundle file (MedMNIST .npz) belongs to

Adding a dataset is adding one `DatasetSpec` subclass to REGISTRY. Readers, checks and pipelines live in their
own modules (cxr14.py, btcv.py, brats.py, medmnist.py, decathlon.py, transforms.py); this file only routes, so
that nothing above `selfmae/data/` compares a dataset's name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from .common import DataError, DataProblem
from .spec import DatasetSpec, input_size

__all__ = ["DATASETS", "MEDMNIST3D_SAMPLE", "MEDMNIST_SAMPLE", "PAPER_DATASETS", "REGISTRY", "SAMPLES_DIR", "DatasetSpec",
           "bundle_dataset", "dataset_spec", "input_size", "missing_data_keys", "spec_of"]

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"   # real public samples, package data (see its README.md)
MEDMNIST_SAMPLE = SAMPLES_DIR / "medmnist" / "pneumoniamnist_subset.npz"
MEDMNIST3D_SAMPLE = SAMPLES_DIR / "medmnist3d" / "adrenalmnist3d.npz"


class CXR14(DatasetSpec):
    name, tasks = "cxr14", ("classify",)
    data_keys = ("data_dir", "resize", "crop", "val_fraction", "split_seed")
    release_folder, image_folder, train_size = "ChestX-ray14", "images", 77_871
    image_files = (".png",)
    check_keys = ("val_fraction", "split_seed")   # the patient-wise validation split its check carves

    def read(self, data_cfg, task):
        from .cxr14 import read_cxr14
        return read_cxr14(data_cfg["data_dir"], float(data_cfg["val_fraction"]), int(data_cfg["split_seed"]),
                          data_cfg.get("max_images"))

    def check(self, data_dir, task=None, data_cfg=None):
        from .checks import check_cxr14
        split = {k: data_cfg[k] for k in self.check_keys if data_cfg and data_cfg.get(k) is not None}
        return check_cxr14(Path(data_dir), **split, scored=task != "pretrain")

    def transforms(self, data_cfg, task, train):
        from .transforms import cxr14_transforms
        return cxr14_transforms(data_cfg, train)

    def eval_classes(self, data_cfg):
        from .cxr14 import CXR14_LABELS
        return CXR14_LABELS, None


def _without_labels(splits: Mapping[str, list[dict]]) -> dict[str, list[dict]]:
    return {k: [{kk: vv for kk, vv in it.items() if kk != "label"} for it in v] for k, v in splits.items()}


class BTCV(DatasetSpec):
    name, tasks, segmentation_kind = "btcv", ("segment",), "classes"
    data_keys = ("data_dir", "roi_size", "spacing", "a_min", "a_max", "organs", "num_samples")
    release_folder, image_folder, train_size = "BTCV", "RawData/Training/img", 18
    label_keys = ("organs",)

    def read(self, data_cfg, task):
        from .btcv import read_btcv
        splits = read_btcv(data_cfg["data_dir"])
        return _without_labels(splits) if task == "pretrain" else splits

    def check(self, data_dir, task=None, data_cfg=None):
        from .checks import check_btcv
        return check_btcv(Path(data_dir))

    def transforms(self, data_cfg, task, train):
        from .transforms import btcv_transforms
        return btcv_transforms(data_cfg, task, train)

    def eval_classes(self, data_cfg):
        """The paper's 8 organs (Table 1 order): trained on all 13 (organs=13, the paper's protocol) they are
        their ids in the 13-label numbering; with organs=8 the labels are already 1..8 in that order."""
        from .btcv import BTCV_ORGAN_IDS, BTCV_ORGANS
        return BTCV_ORGANS, (list(BTCV_ORGAN_IDS) if data_cfg["organs"] == 13 else list(range(1, 9)))

    def out_channels(self, data_cfg):
        return int(data_cfg["organs"]) + 1


class BraTS(DatasetSpec):
    name, tasks, segmentation_kind = "brats", ("segment",), "regions"
    data_keys = ("data_dir", "roi_size", "spacing", "et_convention", "num_samples", "val_fraction", "split_seed")
    release_folder, train_size = "Task01_BrainTumour", 387
    label_keys = ("et_convention",)

    def read(self, data_cfg, task):
        from .brats import read_brats
        splits = read_brats(data_cfg["data_dir"], float(data_cfg["val_fraction"]), int(data_cfg["split_seed"]))
        return _without_labels(splits) if task == "pretrain" else splits

    def check(self, data_dir, task=None, data_cfg=None):
        from .checks import check_brats
        return check_brats(Path(data_dir))

    def transforms(self, data_cfg, task, train):
        from .transforms import brats_transforms
        return brats_transforms(data_cfg, task, train)

    def eval_classes(self, data_cfg):
        from .brats import BRATS_REGIONS
        return BRATS_REGIONS, [0, 1, 2]

    def out_channels(self, data_cfg):
        return 3

    def label_record(self, data_cfg):
        """The label ids each output channel's region was made of (`brats.region_ids`: from the folder's
        dataset.json under data.et_convention), e.g. {"et_convention": "dataset_json", "regions": {"TC": [2, 3],
        "WT": [1, 2, 3], "ET": [3]}}: the two ET conventions score different tumour parts under one name."""
        from .brats import BRATS_REGIONS, region_ids
        ids = region_ids(data_cfg.get("data_dir"), data_cfg["et_convention"])
        return {"et_convention": data_cfg["et_convention"], "regions": {r: list(ids[r]) for r in BRATS_REGIONS}}

    def check_summary(self, data_dir) -> list[str]:
        """The label ids of each tumour region under both ET conventions: dataset.json's (its declared enhancing
        tumour) and the SelfMedMAE code's (ET = label 2, the 'ET=2' columns of Table 3)."""
        from .brats import region_ids
        said = {"dataset_json": "as dataset.json declares its labels",
                "selfmedmae_code": "under the SelfMedMAE code's convention (ET = label 2, Table 3's ET=2 columns)"}
        return [f"regions {said[c]}: " + ", ".join(f"{r}={list(ids)}" for r, ids in region_ids(data_dir, c).items())
                for c in said]


class MedMNIST(DatasetSpec):
    """A MedMNIST .npz file, 2D or 3D (the file decides; `data.spatial_dims` must agree)."""

    name, tasks, synthetic, resizes_volumes = "medmnist", ("classify",), False, True
    image_files, bundle_files = (), (".npz",)   # items hold the images as arrays (`medmnist.to_items`)

    def pretrain_config(self, spatial_dims):
        return "pretrain_medmnist3d" if int(spatial_dims) == 3 else "pretrain_medmnist"
    train_size = 4_708   # the shipped PneumoniaMNIST subset; volumes: `train_items`

    def train_items(self, data_cfg):
        return 1_188 if int(data_cfg.get("spatial_dims", 2)) == 3 else self.train_size   # AdrenalMNIST3D

    def read(self, data_cfg, task):
        from .medmnist import medmnist_file, read_medmnist
        return read_medmnist(medmnist_file(data_cfg), data_cfg.get("spatial_dims"))

    def check(self, data_dir, task=None, data_cfg=None):
        from .checks import check_medmnist
        return check_medmnist(Path(data_dir))

    def transforms(self, data_cfg, task, train):
        from .transforms import medmnist_transforms
        return medmnist_transforms(data_cfg, train)

    def default_data_dir(self, data_cfg):
        """The real MedMNIST file shipped in the package (data/samples): PneumoniaMNIST subset (2D) or AdrenalMNIST3D (3D)."""
        return MEDMNIST3D_SAMPLE if int(data_cfg.get("spatial_dims", 2)) == 3 else MEDMNIST_SAMPLE

    def labels(self, data_cfg):
        """The file's `medmnist.LabelSpec` (kind, outputs, names); only its label arrays are read."""
        from .medmnist import medmnist_file, read_label_spec
        source = data_cfg.get("data_dir") or self.default_data_dir(data_cfg)
        return read_label_spec(medmnist_file(dict(data_cfg, data_dir=str(source))))

    def eval_classes(self, data_cfg):
        if not data_cfg.get("label_names"):
            return self.labels(data_cfg).names, None   # from the file: "label", or "class 0".."class K-1"
        return super().eval_classes(data_cfg)

    def multiclass(self, data_cfg):
        return self.labels(data_cfg).kind == "multi-class"

    def num_outputs(self, model_cfg, data_cfg):
        """null means as many as the file's labels need (1 binary, K classes, L labels); a number (or
        data.label_names) that does not fit them is a DataError naming the file and the setting that fits."""
        from .medmnist import medmnist_file
        given, spec, names = model_cfg.get("num_classes"), self.labels(data_cfg), data_cfg.get("label_names")
        wrong = [f"model.num_classes={given}"] if given is not None and int(given) != spec.n_outputs else []
        wrong += [f"data.label_names={list(names)}"] if names and len(names) != spec.n_outputs else []
        if wrong:
            path = medmnist_file(dict(data_cfg, data_dir=str(data_cfg.get("data_dir") or
                                                             self.default_data_dir(data_cfg))))
            raise DataError([DataProblem(str(path), f"its labels are {spec.kind} with {spec.n_outputs} output(s), "
                                                    f"but {' and '.join(wrong)}; set model.num_classes="
                                                    f"{spec.n_outputs} (or null: from the file) and "
                                                    f"data.label_names to {spec.n_outputs} name(s) or null")])
        return spec.n_outputs


class Decathlon(DatasetSpec):
    """Any MSD task / nnU-Net v2 raw dataset (`decathlon.py`): channels and labels from its dataset.json."""

    name, tasks, segmentation_kind, synthetic = "decathlon", ("segment",), "classes", False
    data_keys = ("data_dir", "in_channels", "intensity", "spacing", "roi_size", "num_samples", "a_min", "a_max",
                 "augment_prob", "val_fraction", "split_seed")

    def read(self, data_cfg, task):
        from .decathlon import read_decathlon
        return read_decathlon(data_cfg["data_dir"], float(data_cfg["val_fraction"]), int(data_cfg["split_seed"]),
                              with_labels=task != "pretrain")

    def check(self, data_dir, task=None, data_cfg=None):
        from .decathlon import check_decathlon
        return check_decathlon(Path(data_dir), task)

    def transforms(self, data_cfg, task, train):
        from .decathlon_transforms import decathlon_transforms
        return decathlon_transforms(data_cfg, task, train)

    def default_data_dir(self, data_cfg):
        raise DataError([DataProblem("data.data_dir", "the decathlon dataset reads your own task folder: give it "
                                                      "(--data-dir /path/TaskXX_Name, the folder holding "
                                                      "dataset.json)")])

    def _spec(self, data_cfg) -> tuple[Path, dict]:
        from .decathlon import read_spec
        return read_spec(data_cfg["data_dir"] or self.default_data_dir(data_cfg))

    def eval_classes(self, data_cfg):
        """Every declared foreground label; output channel c holds the c-th declared id (background 0 first)."""
        from .decathlon import classes
        root, spec = self._spec(data_cfg)
        ids, names = classes(spec, root / "dataset.json")
        return names, list(range(1, len(ids)))

    def out_channels(self, data_cfg):
        return len(self.eval_classes(data_cfg)[0]) + 1

    def in_channels(self, data_cfg):
        """data.in_channels, or (null) the number of channels dataset.json declares."""
        if data_cfg.get("in_channels"):
            return int(data_cfg["in_channels"])
        from .decathlon import channels
        return len(channels(self._spec(data_cfg)[1]))

    def check_summary(self, data_dir) -> list[str]:
        """Channels, intensity recipe and labels as the folder's dataset.json declares them."""
        from .decathlon import channels, classes, intensity, read_spec
        root, spec = read_spec(data_dir)
        lines = [f"channels: {', '.join(channels(spec))} (intensity recipe: {intensity(spec)})"]
        try:
            lines.append(f"labels to segment: {', '.join(classes(spec, root / 'dataset.json')[1])}")
        except DataError as err:
            lines.append(f"no fine-tuning labels: {err.problems[0].message}")
        return lines


REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in (CXR14(), BTCV(), BraTS(), MedMNIST(), Decathlon())}
DATASETS = tuple(REGISTRY)
PAPER_DATASETS = ("cxr14", "btcv", "brats")   # the paper's three (their phantoms: `prepare-data --dataset all`)


def dataset_spec(data: Mapping[str, Any] | str | os.PathLike) -> DatasetSpec:
    """The registry entry of a dataset name or of a data section (its `dataset` key).

    Raises ValueError naming the known datasets for an unknown name."""
    name = data if isinstance(data, str) else data["dataset"]
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def bundle_dataset(path: str | os.PathLike) -> str | None:
    """The dataset whose own bundle file `path` is by its suffix (a MedMNIST .npz), None for any other file."""
    name = Path(path).name.lower()
    return next((spec.name for spec in REGISTRY.values() if spec.bundle_files and name.endswith(spec.bundle_files)),
                None)


def missing_data_keys(data_cfg: Mapping[str, Any]) -> list[str]:
    """The keys of the section's dataset entry (`DatasetSpec.data_keys`) that the data section lacks; [] when
    none is missing or the section names no known dataset."""
    return [k for k in spec_of(data_cfg).data_keys if k not in data_cfg]


def spec_of(data_cfg: Mapping[str, Any]) -> DatasetSpec:
    """The entry of a data section's dataset, or the generic `DatasetSpec` (sizes and channels from the section
    itself) when it names none or one the registry does not know, as model tests and benchmarks do."""
    return REGISTRY.get(data_cfg.get("dataset"), _GENERIC)


_GENERIC = DatasetSpec()
