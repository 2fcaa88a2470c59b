"""One training engine for pre-training, classification and segmentation (AMP, checkpoints, resume, DDP, logs).

    result = fit(model, MAETask(), train_ds, val_ds, cfg["train"], "runs/tiny/pretrain_btcv",
                 run_config={"data": cfg["data"], "model": cfg["model"]})
"""
from .checkpoint import capture_rng, check_state_fits, load_checkpoint, restore_rng, run_config
from .device import (PrecisionChoice, choose_precision, cpu_has_native_bf16, finished_run_precision_diff,
                      resolve_device, resolve_precision)
from .distributed import DistInfo, env_dist_info
from .engine import batches_per_epoch, fit, optimizer_steps_per_epoch
from .errors import CheckpointError, OutputDirError, TrainConfigError
from .rundir import RunResult, refuse_changed_inputs
from .schedule import WarmupCosine, build_optimizer, build_scheduler, simple_param_groups
from .settings import TRAIN_DEFAULTS, incompatible_keys, resolve_train_cfg
from .tasks import ClassificationTask, MAETask, SegmentationTask, Task

__all__ = [
    "fit", "batches_per_epoch", "optimizer_steps_per_epoch", "RunResult", "refuse_changed_inputs", "Task", "MAETask", "ClassificationTask",
    "SegmentationTask",
    "TRAIN_DEFAULTS", "resolve_train_cfg", "incompatible_keys",
    "build_optimizer", "build_scheduler", "simple_param_groups", "WarmupCosine",
    "load_checkpoint", "run_config", "check_state_fits", "capture_rng", "restore_rng",
    "resolve_device", "resolve_precision", "choose_precision", "PrecisionChoice",
    "finished_run_precision_diff", "cpu_has_native_bf16", "DistInfo", "env_dist_info",
    "TrainConfigError", "CheckpointError", "OutputDirError",
]
