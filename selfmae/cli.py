"""`python -m selfmae ...`: the stages as commands, for scripts, servers and `torchrun`.

Every command calls the same functions the notebooks call (selfmae.data, selfmae.experiments, selfmae.runner);
`--set key=value` overrides config keys through `selfmae.config.load_config`, exactly like papermill parameters.

    python -m selfmae prepare-data --synthetic --dataset btcv --out-dir data/synthetic
    python -m selfmae check-data --dataset btcv --data-dir /data/BTCV
    python -m selfmae pretrain --config pretrain_btcv --profile paper --data-dir /data/BTCV --out-dir runs/paper/pretrain_btcv
    python -m selfmae pretrain --dataset decathlon --data-dir /data/Task03_Liver      # your own scans (dataset.json)
    python -m selfmae finetune --dataset decathlon --data-dir /data/Task03_Liver --set model.init=mae --set model.pretrained=...
    torchrun --nproc_per_node=4 -m selfmae pretrain --config pretrain_btcv --profile paper ...
    python -m selfmae finetune --config finetune_btcv --set model.init=mae --set model.pretrained=runs/.../best.pt
    python -m selfmae reproduce --profile tiny
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

from selfmae.data.registry import DATASETS, PAPER_DATASETS, REGISTRY


def _check_settings(dataset: str) -> tuple[str, ...]:
    """The --set keys check-data takes for `dataset`: the data settings its check depends on."""
    return tuple(f"data.{k}" for k in REGISTRY[dataset].check_keys)


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --set expects key=value (e.g. train.epochs=5), got {pair!r}")
        out[key.strip()] = value
    return out


def _add_run_args(p: argparse.ArgumentParser, default_config: str) -> None:
    stage = default_config.split("_")[0]
    p.add_argument("--config", default=None,
                   help=f"experiment name under selfmae/configs or a YAML path (default: {default_config})")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help=f"shortcut for --config {stage}_<dataset> (decathlon: your own MSD / nnU-Net task folder)")
    p.add_argument("--profile", default="tiny", choices=("tiny", "paper"), help="numbers to use (default: tiny)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset root in its real layout (default: the synthetic phantoms under data/synthetic)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="run folder (default: runs/<profile>/<experiment>, or runs/<profile>/data-<name>-<hash>/"
                        "<experiment> for data other than the default; fine-tuning adds <init>/seed<N>)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="shortcut for --set train.seed=N")
    p.add_argument("--device", default=None, help="shortcut for --set train.device=cpu|cuda|auto")
    p.add_argument("--force", action="store_true", help="re-run even if the run folder holds a finished run")


def _overrides(args: argparse.Namespace) -> dict:
    ov = _parse_sets(args.sets)
    if args.seed is not None:
        ov["train.seed"] = args.seed
    if args.device is not None:
        ov["train.device"] = args.device
    if args.data_dir is not None:
        ov["data.data_dir"] = str(args.data_dir)
    return ov


def _experiment(args: argparse.Namespace) -> str:
    """--config, else <stage>_<--dataset>, else (evaluate) the fine-tuning config of the checkpoint's dataset,
    else the stage's default; SystemExit when --config and --dataset disagree."""
    stage = "pretrain" if args.command == "pretrain" else "finetune"
    if args.config is None:
        dataset = args.dataset or (_checkpoint_dataset(args.checkpoint) if args.command == "evaluate" else None)
        return f"{stage}_{dataset or 'btcv'}"
    if args.dataset is not None:
        from selfmae.config import load_config

        named = load_config(args.config, args.profile)["data"]["dataset"]
        if named != args.dataset:
            raise SystemExit(f"error: --config {args.config} reads dataset {named!r}, "
                             f"but --dataset {args.dataset} was given")
    return args.config


def _checkpoint_dataset(checkpoint: Path) -> str | None:
    """The dataset a checkpoint was trained on (`selfmae.train.run_config`); None when its config does not say
    (the caller's default applies, and loading the checkpoint reports what is wrong)."""
    import yaml

    from selfmae.train import run_config

    try:
        return (run_config(checkpoint).get("data") or {}).get("dataset")
    except (OSError, ValueError, yaml.YAMLError):   # unreadable: run_evaluate names the file and what it holds
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m selfmae", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare-data", help="write the synthetic phantoms in the real datasets' layouts")
    p.add_argument("--synthetic", action="store_true", required=True,
                   help="generate phantoms (real data is never downloaded: point --data-dir at it instead)")
    p.add_argument("--dataset", choices=(*PAPER_DATASETS, "decathlon", "all"), default="all",
                   help="all = the paper's three; decathlon = a CT task folder in the MSD form")
    p.add_argument("--out-dir", type=Path, default=Path("data/synthetic"), help="parent folder (default: data/synthetic)")
    p.add_argument("--size", choices=("tiny", "paper"), default="tiny", help="phantom sizes (default: tiny)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("check-data", help="integrity check of a dataset folder; lists every problem found")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--data-dir", type=Path, required=True, help="dataset root (for medmnist: the .npz file)")
    p.add_argument("--task", choices=("pretrain", "classify", "segment"), default=None,
                   help="check what this stage needs (decathlon: labels only for segment; default: those present)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="data.KEY=VALUE",
                   help="a data setting the dataset's check depends on, as the run sets it: " + "; ".join(
                       f"{name}: {', '.join(_check_settings(name))}" for name in DATASETS if _check_settings(name))
                   + " (CXR14's patient-wise validation split; default: the configs' 0.1 and 0); the other "
                     "datasets' checks depend on no setting")

    p = sub.add_parser("pretrain", help="MAE self pre-training (resumes an interrupted run)")
    _add_run_args(p, "pretrain_btcv")
    p = sub.add_parser("finetune", help="fine-tune a classifier/UNETR (scratch, ImageNet or MAE init) and evaluate")
    _add_run_args(p, "finetune_btcv")
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on the evaluation split; writes per-case CSVs")
    _add_run_args(p, "finetune_btcv")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file (best.pt / last.pt)")

    p = sub.add_parser("reproduce", help="run every numbered notebook through papermill (skips unchanged steps)")
    p.add_argument("--profile", default="tiny", choices=("tiny", "paper"))
    p.add_argument("--data-dir", type=Path, default=None, help="parent folder holding the real datasets")
    p.add_argument("--only", nargs="*", default=None, metavar="NB", help="notebook name prefixes, e.g. 01 05")
    p.add_argument("--force", action="store_true", help="re-run notebooks even when their inputs are unchanged")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (steps; estimated GPU-hours with --profile paper) and exit")
    p.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                   help="extra papermill parameter for every notebook (repeatable)")
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors about the user's inputs (settings, data, weights and checkpoint files), whose messages say what to fix."""
    from selfmae.config import ConfigError
    from selfmae.data import DataError
    from selfmae.models.transfer import PretrainedWeightsError
    from selfmae.torchfile import WeightsFileError
    from selfmae.train import CheckpointError, OutputDirError, TrainConfigError

    return (ConfigError, DataError, PretrainedWeightsError, WeightsFileError, CheckpointError, TrainConfigError,
            OutputDirError, FileNotFoundError)


def _user_error_in(err: BaseException) -> BaseException | None:
    """`err` when it is a user error (`_user_errors`), else the first one among its causes: MONAI's transforms
    wrap what a step raises (a DataError naming a volume) in RuntimeError("applying transform ..."); None if none."""
    user_errors, seen = _user_errors(), set()
    while err is not None and id(err) not in seen:
        if isinstance(err, user_errors):
            return err
        seen.add(id(err))
        err = err.__cause__
    return None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (as logging's own last-resort handler does)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


@contextlib.contextmanager
def _logs_shown() -> Iterator[None]:
    """selfmae's log lines on stderr while a command runs: INFO (epochs, a reused finished run, what pre-trained
    weights gave) on rank 0, warnings only on the other torchrun ranks; the logger is restored afterwards.
    Notebooks keep their own logging: only the command line does this."""
    logger = logging.getLogger("selfmae")
    handler, level = _StderrHandler(), logger.level
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _logs_shown():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.command == "prepare-data":
        from selfmae.data import prepare_synthetic

        names = PAPER_DATASETS if args.dataset == "all" else (args.dataset,)
        for name in names:
            root = prepare_synthetic(name, args.out_dir / name, size=args.size, seed=args.seed)
            print(f"{name}: wrote synthetic phantoms to {root}")
        return 0
    if args.command == "check-data":
        from selfmae.data import check_data

        from selfmae.data.registry import dataset_spec

        sets = _parse_sets(args.sets)
        allowed = _check_settings(args.dataset)
        unknown = sorted(set(sets) - set(allowed))
        if unknown:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no setting: its check depends on none"
            raise SystemExit(f"error: check-data --set for {args.dataset} {takes}; got {', '.join(unknown)}")
        problems = check_data(args.dataset, args.data_dir, args.task,
                              {k.removeprefix("data."): v for k, v in sets.items()} or None)
        print(f"{args.dataset} at {args.data_dir}: {len(problems)} problem(s)", flush=True)   # before the list
        for problem in problems:
            print(f"ERROR {problem}", file=sys.stderr)
        if not problems:
            for line in dataset_spec(args.dataset).check_summary(args.data_dir):
                print(line)
        return 1 if problems else 0
    if args.command == "reproduce":
        from selfmae.runner import reproduce

        return reproduce(profile=args.profile, data_dir=args.data_dir, only=args.only, force=args.force,
                         dry_run=args.dry_run, params=_parse_sets(args.params))

    from selfmae import experiments

    try:   # stdout carries only the JSON result; what the stages print on the way goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            result = _train_or_evaluate(args)
    except Exception as err:   # a user error's message names the file and what is wrong: no traceback needed
        user_error = _user_error_in(err)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        return 1
    from selfmae.experiments.stages import summary_json

    print(summary_json(result if isinstance(result, dict) else experiments.summary(result)))   # strict: NaN as null
    return 0


def _train_or_evaluate(args: argparse.Namespace):
    """pretrain / finetune / evaluate: the stage's RunResult or summary dict."""
    from selfmae.config import load_config

    from selfmae import experiments

    cfg = load_config(_experiment(args), args.profile, _overrides(args))
    if args.command == "pretrain":
        return experiments.run_pretrain(cfg, out_dir=args.out_dir, force=args.force)
    if args.command == "finetune":
        out_dir = args.out_dir or experiments.default_run_dir(cfg)
        return {"out_dir": str(out_dir), **experiments.run_finetune(cfg, out_dir=out_dir, force=args.force)}
    out_dir = experiments.evaluation_dir(args.checkpoint, args.out_dir)
    return {"out_dir": str(out_dir), **experiments.run_evaluate(cfg, checkpoint=args.checkpoint, out_dir=out_dir,
                                                                 force=args.force)}
