"""Device and precision choice: `train.device` and `train.precision` turned into a torch.device and an autocast.

bf16 autocast is used on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX); elsewhere CPU bf16 is emulated
and slower than fp32, so the engine falls back to fp32 and logs why. fp32 runs no autocast at all, which the
bitwise-determinism tests rely on. fp16 (GradScaler) is not offered, so checkpoints hold no scaler state.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import ContextManager

import torch

from .errors import TrainConfigError

log = logging.getLogger("selfmae.train")


def resolve_device(setting: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA is present else cpu; 'cuda' without CUDA -> TrainConfigError."""
    setting = str(setting)
    if setting == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if setting == "cpu":
        return torch.device("cpu")
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainConfigError(f"train.device = {setting!r} but this machine has no usable CUDA device "
                                   "(set train.device to 'auto' or 'cpu')")
        index = int(setting.split(":", 1)[1]) if ":" in setting else local_rank
        if index >= torch.cuda.device_count():
            raise TrainConfigError(f"train.device = {setting!r} but only {torch.cuda.device_count()} CUDA "
                                   f"device(s) are visible")
        return torch.device(f"cuda:{index}")
    raise TrainConfigError(f"train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {setting!r}")


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    if any(p is not None for p in probes):
        return any(bool(p()) for p in probes if p is not None)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_fallback_told = False  # the fp32 fallback is said once per process (and forked workers inherit that it was)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision` on `device`, or None for plain fp32."""
    global _fallback_told
    if precision == "fp32":
        return None
    if device.type == "cuda" or cpu_has_native_bf16():
        return torch.bfloat16
    if not _fallback_told:
        log.warning("train.precision = 'bf16' but this CPU has no native bf16 (AVX512-BF16/AMX): training in fp32")
        _fallback_told = True
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """torch.autocast for bf16, a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
