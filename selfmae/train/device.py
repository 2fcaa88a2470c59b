"""Device and precision choice: `train.device` and `train.precision` turned into a torch.device and an autocast.

`train.precision` is `auto` (the default), `bf16` or `fp32`; `choose_precision` turns it into what a run uses:

* `fp32`: no autocast at all (the bitwise-determinism tests rely on it).
* `bf16`: bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX). Elsewhere CPU bf16 is emulated
  (a 1024^2 bf16 matmul ran at 0.8 GFLOP/s against 55 in fp32 on one thread of the AVX2 machine), so it falls back to fp32 and
  warns once per process.
* `auto`: bf16 where it was measured to be faster, fp32 elsewhere: on CUDA always; on a CPU with native bf16 only
  for models of at least `AUTO_CPU_BF16_MIN_PARAMS` (5 M) parameters. Measured with benchmarks/precision_cpu.py
  (fp32 against bf16 for the engine's step, issue #15) on both kinds of native-bf16 CPU this project has run on:
  - a 2-core Xeon with AMX (results/precision_cpu_amx.json): our MAE from 6.3 M parameters up trained 1.57-2.22x
    faster under bf16 (6.3, 24.8, 44.4 and 92 M); below that the gain was small and not ordered by size: the tiny
    profile's MAEs (0.23-0.27 M) 0.94-1.09x, its classifiers, UNETRs and nnFormers (0.2-0.6 M) 1.13-1.37x, a 1.3 M
    MAE 1.24x (a 0.24 M one on 64^2 images 0.90x), the tiny SwinUNETR (4.1 M, convolution-bound at 64^3) 1.10x;
  - a 2-core AMD EPYC with AVX512-BF16 and no AMX (results/precision_cpu_avx512bf16.json): 2.30-3.41x from 6.3 M
    up, and the paper's 3D models at one 96^3 crop (precision_cpu_avx512bf16_paper.json) 1.96-3.69x (SwinUNETR
    62 M to MAE 104 M); the tiny models 0.82-1.83x, again not ordered by size (the SwinUNETR 0.82x and the
    nnFormers 0.96-1.07x, its MAEs 1.20-1.36x, UNETRs 1.48-1.72x, ViT classifiers 1.69-1.83x).
  Below 5 M `auto` keeps fp32 on both: the gain there is not there for every model, and fp32 keeps the default run
  (`make reproduce`, every model under 5 M) the same arithmetic on every CPU kind, so its numbers do not depend on
  which machine ran it; `bf16` forces bf16 there. The rule is by parameter count because it applies to every model
  the engine trains (ViT, UNETR, nnFormer, SwinUNETR); the paper profile's models hold 38-119 M.

The choice and why are logged once per run and written to the run's record (`done.json`, checkpoints) as
`PrecisionChoice.record()`. fp16 (GradScaler) is not offered, so checkpoints hold no scaler state.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ContextManager, Mapping

import torch

from torch import nn

from selfmae.config import PRECISIONS

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


AUTO_CPU_BF16_MIN_PARAMS = 5_000_000   # `auto` on a native-bf16 CPU: bf16 from this many parameters on (see above)

_fallback_told = False  # the fp32 fallback is said once per process (and forked workers inherit that it was)


@dataclass(frozen=True)
class PrecisionChoice:
    """What `train.precision` (`setting`) became for one run: `used` is 'bf16' or 'fp32', `reason` says why.

    `device` ('cuda' | 'cpu'), `cpu_native_bf16` and `params` (the model's parameter count, None when unknown)
    are what the choice depended on: recorded so that another setting can be re-resolved for that machine.
    """
    setting: str
    used: str
    reason: str
    device: str
    cpu_native_bf16: bool | None
    params: int | None = None

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for plain fp32."""
        return torch.bfloat16 if self.used == "bf16" else None

    def record(self) -> dict[str, Any]:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def choose_precision(setting: str, device: torch.device | str, model: nn.Module | None = None, *,
                     params: int | None = None, native_bf16: bool | None = None, warn: bool = True
                     ) -> PrecisionChoice:
    """Resolve `train.precision` for `device` and a model (or its parameter count `params`); see the module doc.

    `native_bf16` defaults to `cpu_has_native_bf16()` on a CPU. `auto` without a model or `params` on a native-bf16
    CPU counts as small (fp32). `warn=False` keeps the bf16 fallback warning quiet (re-resolving an old record).
    """
    global _fallback_told
    if setting not in PRECISIONS:
        raise TrainConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {setting!r}")
    dev = torch.device(device).type
    if params is None and model is not None:
        params = count_params(model)
    native = None if dev == "cuda" else (cpu_has_native_bf16() if native_bf16 is None else bool(native_bf16))

    def choice(used: str, reason: str) -> PrecisionChoice:
        return PrecisionChoice(setting, used, reason, dev, native, params)

    if setting == "fp32":
        return choice("fp32", "forced")
    if dev == "cuda":
        return choice("bf16", "CUDA")
    if not native:
        if setting == "bf16" and warn and not _fallback_told:
            log.warning("train.precision = 'bf16' but this CPU has no native bf16 (AVX512-BF16/AMX): training in fp32")
            _fallback_told = True
        return choice("fp32", "this CPU has no native bf16 (AVX512-BF16/AMX): emulated bf16 is slower than fp32")
    if setting == "bf16":
        return choice("bf16", "forced, on a CPU with native bf16")
    size = "unknown size" if params is None else f"{params / 1e6:.2f} M parameters"
    if params is not None and params >= AUTO_CPU_BF16_MIN_PARAMS:
        return choice("bf16", f"CPU with native bf16 and a model of {size} (>= "
                              f"{AUTO_CPU_BF16_MIN_PARAMS / 1e6:.0f} M: bf16 measured 1.6-3.7x faster from 6 M "
                              "parameters up)")
    return choice("fp32", f"CPU with native bf16 but a model of {size} (< {AUTO_CPU_BF16_MIN_PARAMS / 1e6:.0f} M: "
                          "bf16 measured 0.8-1.8x there, not faster for every model, and fp32 keeps the default "
                          "run's arithmetic on every CPU)")


_announced: set[tuple[str, str, str]] = set()


def announce(choice: PrecisionChoice) -> None:
    """Print the precision a run trains in and why, once per process for each distinct choice."""
    key = (choice.setting, choice.used, choice.reason)
    if key not in _announced:
        _announced.add(key)
        print(f"train.precision = {choice.setting} -> {choice.used} ({choice.reason})", flush=True)


def resolve_precision(precision: str, device: torch.device, model: nn.Module | None = None) -> torch.dtype | None:
    """The autocast dtype for `train.precision` on `device` (and `model`, for `auto`), or None for plain fp32."""
    return choose_precision(precision, device, model).dtype


# ------------------------------------------------------------------------------ comparing with a finished run
_NO_AVX512 = ("DEFAULT", "NO AVX", "AVX", "AVX2")   # torch.backends.cpu.get_cpu_capability() below AVX512


def legacy_precision_record(record: Mapping[str, Any], run_json: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a done.json written before `precision_used` was recorded trained in, from the run.json beside it.

    Those runs resolved `bf16` as `choose_precision` does now (CUDA or a native-bf16 CPU: bf16, else fp32). The
    machine comes from run.json (written by selfmae.experiments at the run's start): `hardware` names a GPU when
    CUDA was visible, and a CPU capability below AVX512 rules native bf16 out (AVX512-BF16 and AMX extend
    AVX512; the one blind spot is an ATEN_CPU_CAPABILITY set below the CPU's by hand). Returns a
    `PrecisionChoice.record()`-like dict, or None where the record cannot tell (no run.json, or an AVX512 CPU that
    may or may not have had native bf16) for a bf16 run.
    """
    train = record.get("config", {}).get("train", {})
    setting = train.get("precision", "bf16")
    if run_json is None:
        return None
    on_gpu = not str(run_json.get("hardware", "CPU")).startswith("CPU") and str(train.get("device", "auto")) != "cpu"
    capability = str(run_json.get("torch_cpu_capability", "")).upper()
    native = False if capability in _NO_AVX512 else None
    if on_gpu:
        return choose_precision(setting, "cuda").record()
    if native is None and setting != "fp32":
        return None
    return choose_precision(setting, "cpu", native_bf16=bool(native), warn=False).record() | {"cpu_native_bf16": native}


def finished_precision_diff(record: Mapping[str, Any], choice: PrecisionChoice,
                            run_json: Mapping[str, Any] | None = None) -> str | None:
    """Why a finished run (its done.json `record`) does not answer a request resolved to `choice`; None if it does.

    The same setting answers, as before (like `train.device`, the machine is not part of the request). Another
    setting answers only when the finished run trained, in every segment, in the precision that setting resolves
    to on the machine that ran it (recorded in `record["precision"]`, or for older records inferred by
    `legacy_precision_record`): e.g. a `bf16` run that fell back to fp32 on an AVX2 CPU answers `auto` or `fp32`,
    while a run that really trained in bf16 never answers `fp32`.
    """
    stored = record.get("config", {}).get("train", {}).get("precision", "bf16")
    if stored == choice.setting:
        return None
    done = record.get("precision") or legacy_precision_record(record, run_json)
    what = f"train.precision ({stored} -> {choice.setting}"
    if done is None:
        return what + ": the finished run does not record which precision it trained in)"
    if len(set(done.get("segments", [done["used"]]))) > 1:
        return what + f": the finished run trained in {' then '.join(done['segments'])})"
    params = done.get("params") if done.get("params") is not None else choice.params
    natives = [done["cpu_native_bf16"]] if done.get("cpu_native_bf16") is not None else [False, True]
    would = {choose_precision(choice.setting, done["device"], params=params, native_bf16=n, warn=False).used
             for n in natives}
    if would == {done["used"]}:
        return None
    there = " or ".join(sorted(would))
    return what + f": the finished run trained in {done['used']} on {done['device']}, where {choice.setting} would " \
                  f"train in {there})"


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """torch.autocast for bf16, a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def finished_run_precision_diff(out_dir: str | Path, setting: str, device: torch.device | str) -> str | None:
    """`finished_precision_diff` for the finished run in `out_dir` (its done.json and run.json) and a request for
    `setting` on `device`, without the model: its size is taken from the record (for records older than
    `precision`, whose bf16 runs are only judged where the size does not matter). None when it answers."""
    record = read_json_record(Path(out_dir) / "done.json")
    if record is None:
        return "no finished run"
    params = (record.get("precision") or {}).get("params")
    return finished_precision_diff(record, choose_precision(setting, device, params=params, warn=False),
                                   read_json_record(Path(out_dir) / "run.json"))


def read_json_record(path: Path) -> dict | None:
    """A run record (done.json, run.json) as a dict, or None when it is missing or unreadable."""
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
