"""Data layer: real-format readers, synthetic phantoms in the same formats, integrity checks, paper transforms.

Public API (see the project's interface contract):
    prepare_synthetic(dataset, out_dir, size="tiny", seed=0) -> Path
    dataset_spec(name or data_cfg) -> DatasetSpec: the registry entry (reader, check, transforms, classes, sizes)
    check_data(dataset, data_dir) -> list[DataProblem];  require_valid(dataset, data_dir) raises DataError
    build_datasets(data_cfg, task) -> dict[str, Dataset]
    read_cxr14 / read_btcv / read_brats / read_medmnist / decathlon.read_decathlon -> dict[split, list[item dict]]
"""
from .brats import BRATS_MODALITIES, BRATS_REGIONS, label_to_regions, read_brats
from .btcv import BTCV_LABELS, BTCV_ORGANS, BTCV_VAL_IDS, organ_mapping, read_btcv
from .checks import check_data, require_valid
from .common import DataError, DataProblem
from .cxr14 import CXR14_LABELS, load_png, read_cxr14
from .medmnist import load_npz, read_medmnist
from .phantoms import SIZES, prepare_synthetic
from .registry import DATASETS, DatasetSpec, dataset_spec

__all__ = [
    "BRATS_MODALITIES", "BRATS_REGIONS", "BTCV_LABELS", "BTCV_ORGANS", "BTCV_VAL_IDS", "CXR14_LABELS", "DATASETS",
    "DataError", "DataProblem", "DatasetSpec", "SIZES", "build_datasets", "build_transforms", "check_data", "dataset_spec",
    "label_to_regions", "load_npz", "load_png", "organ_mapping", "prepare_synthetic", "read_brats", "read_btcv",
    "read_cxr14", "read_medmnist", "require_valid",
]


def __getattr__(name: str):
    """build_datasets / build_transforms import MONAI (seconds); load them only when asked for."""
    if name == "build_datasets":
        from .datasets import build_datasets
        return build_datasets
    if name == "build_transforms":
        from .transforms import build_transforms
        return build_transforms
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
