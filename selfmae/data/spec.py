"""What a dataset entry of the registry answers (`DatasetSpec`), and the input size every entry reads the same way.

The entries themselves, one per dataset, are in `registry.py`; a data section without a known dataset gets a plain
`DatasetSpec` (channels and sizes from the section itself).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Mapping

from .common import DataProblem


def input_size(data_cfg: Mapping) -> tuple[int, ...]:
    """Network input size (voxels or pixels per axis) from a data section: 3D `roi_size`; 2D `crop`, else
    `roi_size`, else `resize`. A scalar is repeated over `spatial_dims` (default 2). Raises ValueError when the
    section gives no size or one with the wrong number of entries."""
    dims = int(data_cfg.get("spatial_dims", 2))
    for key in (("roi_size",) if dims == 3 else ("crop", "roi_size", "resize")):
        value = data_cfg.get(key)
        if value is not None:
            size = tuple(int(v) for v in value) if isinstance(value, Sequence) else (int(value),) * dims
            if len(size) != dims:
                raise ValueError(f"data.{key}={value} does not have {dims} entries (spatial_dims={dims}).")
            return size
    raise ValueError(f"data section gives no input size ({'roi_size' if dims == 3 else 'crop/roi_size/resize'}).")


class DatasetSpec:
    """What one dataset is. Subclasses set `name`, `tasks` (the fine-tuning tasks it serves) and
    `segmentation_kind`, and implement `read`, `check` and `transforms`."""

    name = ""
    tasks: tuple[str, ...] = ()
    # the label convention of segmentation (`selfmae.eval.inference`): "classes" = exclusive class ids (softmax,
    # argmax), "regions" = overlapping binary regions, one channel each (sigmoid > 0.5); None: no segmentation
    segmentation_kind: str | None = None
    data_keys: tuple[str, ...] = ()         # data keys its reader and pipeline read without a default: the
                                            # configs define them, `selfmae.config.load_config` requires them
    synthetic = True                        # data_dir null means phantoms written by `prepare_synthetic`
    release_folder = ""                     # the folder the real release unpacks to (notebooks' data_dir/<it>)
    image_folder = ""                       # where its images lie under the root, for the explorer's phantoms
    train_size: int | None = None           # training items per epoch of the real dataset (`make plan`)
    resizes_volumes = False                 # volumes are z-scored, then resized to data.resize (not resampled)
    image_files: tuple[str, ...] = (".nii.gz", ".nii")   # the files `read` names as images; () = arrays in memory
    bundle_files: tuple[str, ...] = ()     # files holding a whole dataset of images only it reads (MedMNIST .npz)
    check_keys: tuple[str, ...] = ()        # data settings its `check` depends on (CXR14: the validation split);
                                            # a remembered pass is keyed on them, check-data --set takes them

    def read(self, data_cfg: Mapping, task: str) -> dict[str, list[dict]]:
        """Item dicts per split ("train", "val"[, "test"]) of the data at data_cfg["data_dir"]: file paths
        (volumes) or arrays (MedMNIST) under "image" / "label", plus "case_id"; pretraining drops segmentation
        labels. Raises DataError naming the file when the layout cannot be read or a split is empty."""
        raise NotImplementedError

    def check(self, data_dir: Path, task: str | None = None, data_cfg: Mapping | None = None) -> list[DataProblem]:
        """Every problem of the folder (or file) on disk, each naming its file; [] when it is usable. `data_cfg`:
        the run's data section, for checks that depend on its settings (CXR14: the validation split it carves);
        None checks with the defaults."""
        raise NotImplementedError

    def transforms(self, data_cfg: Mapping, task: str, train: bool):
        """The MONAI `Compose` turning an item of `read` into tensors: image (C, *input size) float32 for
        training (3D: a list of num_samples crops), whole volumes for segment evaluation; see transforms.py."""
        raise NotImplementedError

    def inspect_transforms(self, data_cfg: Mapping):
        """The deterministic evaluation preprocessing of one image, without a label: the pipeline that validates
        pre-training (`transforms(data_cfg, "pretrain", train=False)`), so an image inspected (the explorer) is
        prepared exactly as the MAE was validated on (CXR14: histogram equalisation, resize, scaling, z-score,
        centre crop; BTCV: RAS, spacing, HU window, foreground crop, pad and centre crop to roi_size; BraTS: RAS,
        spacing, foreground crop, z-score over non-zero voxels, pad and centre crop; MedMNIST: z-score, resize,
        centre crop). In: {"image": as `read` gives it: a path with a suffix of `image_files`, or for MedMNIST a
        float (C, *spatial) array in [0, 1]}; out: {"image": float32 (C, *input size)} (C as the file holds)."""
        return self.transforms(data_cfg, "pretrain", train=False)

    def pretrain_config(self, spatial_dims: int) -> str:
        """The shipped pre-training config (selfmae/configs/<it>.yaml) whose MAE suits this dataset's images."""
        return f"pretrain_{self.name}"

    @property
    def regions(self) -> bool:
        """True when the label channels are overlapping regions (sigmoid), not class ids."""
        return self.segmentation_kind == "regions"

    def require_task(self, task: str) -> None:
        """Raise ValueError when `task` (pretrain | classify | segment) does not apply to this dataset."""
        if task not in ("pretrain", *self.tasks):
            raise ValueError(f"task {task!r} does not apply to dataset {self.name!r}")

    def eval_classes(self, data_cfg: Mapping) -> tuple[tuple[str, ...], list[int] | None]:
        """(names of the evaluated classes, output channels that hold them; None = channel i holds name i)."""
        return tuple(data_cfg.get("label_names") or ("label",)), None

    label_keys: tuple[str, ...] = ()   # data settings that decide what each output channel is trained on

    def label_record(self, data_cfg: Mapping) -> dict | None:
        """How this run turns the dataset's labels into what it trains on, for the run record (run.json
        `labels`), where the config alone does not say it; None when it does."""
        return None

    def out_channels(self, data_cfg: Mapping) -> int:
        """Segmentation outputs the labels need (used when model.out_channels is null)."""
        raise ValueError(f"model.out_channels is required for dataset {self.name!r}.")

    def in_channels(self, data_cfg: Mapping) -> int:
        """Input channels: data.in_channels (default 1)."""
        return int(data_cfg.get("in_channels") or 1)

    def input_size(self, data_cfg: Mapping) -> tuple[int, ...]:
        """The network's input size (`input_size`), the same rule for every dataset."""
        return input_size(data_cfg)

    def default_data_dir(self, data_cfg: Mapping) -> Path | None:
        """The data used when data.data_dir is null: a shipped sample, or None for synthetic phantoms."""
        return None

    def train_items(self, data_cfg: Mapping) -> int | None:
        """Training items per epoch of the real data this section reads (None: not known in advance)."""
        return self.train_size

    def check_summary(self, data_dir: str | os.PathLike) -> list[str]:
        """Lines `check-data` prints about a folder that passed its check (what it was read as)."""
        return []

    def multiclass(self, data_cfg: Mapping) -> bool:
        """True when a classifier's outputs are one softmax over classes (else independent sigmoids)."""
        return False

    def num_outputs(self, model_cfg: Mapping, data_cfg: Mapping) -> int:
        """A classifier's outputs: model.num_classes."""
        return int(model_cfg["num_classes"])
