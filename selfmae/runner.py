"""`make reproduce`: run the numbered notebooks in order through papermill, skipping unchanged steps.

Executed copies go to `runs/<profile>/notebooks/` (never next to the sources). A notebook is skipped when its
*inputs* are unchanged since its last successful run: its source, the package code and configs, the data folder's
listing, its parameters, and the inputs of every notebook before it (a changed pre-training re-runs what follows).
A failing notebook keeps its executed copy with the traceback, and the run stops naming it.

Parameters (`reproduce -p NAME=value`) go only to the notebooks whose `parameters` cell declares NAME; a NAME
that no selected notebook declares, or a weights file (`*_weights`) that does not exist, stops the run before
anything executes.
"""
from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Mapping

from selfmae.io import atomic_write_text
from selfmae.repro import REPO_ROOT
from selfmae.torchfile import describe_non_torch_file

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def numbered_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """notebooks/NN_name.py in numeric order."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.py"))


def _hash_files(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def code_version() -> str:
    """Hash of the package's code and configs: the 'code version' input of every step."""
    pkg = REPO_ROOT / "selfmae"
    files = [p for p in pkg.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts]
    return _hash_files(files, REPO_ROOT)


def data_fingerprint(data_dir: str | Path | None) -> str:
    """Names, sizes and modification times of every file under `data_dir` ('synthetic' when None)."""
    if not data_dir:
        return "synthetic"
    h = hashlib.sha256()
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            h.update(f"{os.path.relpath(os.path.join(root, name), data_dir)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


def notebook_parameters(profile: str, data_dir: str | Path | None, runs_dir: Path, results_dir: Path,
                        extra: Mapping[str, object] | None = None) -> dict:
    """The papermill parameters every numbered notebook accepts (see each notebook's `parameters` cell)."""
    params = {"profile": profile, "data_dir": str(data_dir) if data_dir else "", "out_dir": str(runs_dir),
              "results_dir": str(results_dir)}
    params.update({k: _parse(v) for k, v in (extra or {}).items()})
    return params


def declared_parameters(source: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged `parameters` (jupytext percent format); empty if none."""
    import jupytext

    for cell in jupytext.read(source).cells:
        if "parameters" in cell.metadata.get("tags", []):
            names = set()
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AnnAssign) else []
                names.update(t.id for t in targets if isinstance(t, ast.Name))
            return names
    return set()


class ParameterError(ValueError):
    """A `-p NAME=value` that no notebook declares, or a file parameter naming a file that does not exist."""


def check_parameters(extra: Mapping[str, object], declared: Mapping[Path, set[str]],
                     every: Mapping[Path, set[str]] | None = None) -> None:
    """Raise ParameterError for each extra parameter no selected notebook declares (naming the closest declared
    name, difflib) and for each `*_weights` parameter whose non-empty value is not an existing file, or is a file
    that is clearly not a PyTorch file (an HTML page, a git-LFS pointer, text: `torchfile.describe_non_torch_file`).

    declared: selected notebook -> its parameter names; every: all numbered notebooks (for the hint that a name
    belongs to a notebook not selected)."""
    known = set().union(*declared.values()) if declared else set()
    problems = []
    for name, value in extra.items():
        if name not in known:
            elsewhere = sorted(nb.stem for nb, names in (every or {}).items() if name in names)
            close = difflib.get_close_matches(name, sorted(known | set().union(*(every or {}).values())), n=1)
            problems.append(f"parameter {name!r} is declared by no selected notebook"
                            + (f" (only by {', '.join(elsewhere)})" if elsewhere else "")
                            + (f"; did you mean {close[0]!r}?" if close and close[0] != name else ""))
        elif name.endswith("_weights") and value:
            path = Path(str(value)).expanduser()
            what = "no such file" if not path.is_file() else describe_non_torch_file(path)
            if what:   # an HTML page or an LFS pointer fails here, not hours later when its notebook starts
                problems.append(f"parameter {name}={value!r}: {what}")
    if problems:
        raise ParameterError("; ".join(problems))


def _parse(value: object) -> object:
    import yaml

    return yaml.safe_load(value) if isinstance(value, str) else value


def execute_notebook(source: Path, output: Path, parameters: Mapping[str, object]) -> None:
    """jupytext source -> papermill execution -> executed .ipynb at `output` (kept, with traceback, on failure)."""
    import jupytext
    import papermill

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    output.parent.mkdir(parents=True, exist_ok=True)
    with kernel_env_defaults():
        papermill.execute_notebook(nb, str(output), parameters=dict(parameters), kernel_name="python3",
                                   cwd=str(source.parent), progress_bar=sys.stderr.isatty(), log_output=False,
                                   kernel_manager_class=quiet_kernel_manager())


# What the notebook kernels get unless the caller's environment says otherwise:
# - SELFMAE_PROGRESS=0: training progress bars would flood the executed notebooks.
# - OMP_NUM_THREADS=1: one intra-op thread per training, as runs side by side get (`selfmae.parallel.threads_per_run`
#   says why: a run's numbers depend on its thread count, and must not on the machine's core count).
KERNEL_ENV_DEFAULTS = {"SELFMAE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def kernel_env_defaults(defaults: Mapping[str, str] = KERNEL_ENV_DEFAULTS) -> Iterator[dict[str, str]]:
    """Set each variable of `defaults` that the environment lacks while the block runs (kernels inherit them);
    yields what was set; restores the environment afterwards."""
    added = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield added
    finally:
        for key in added:
            os.environ.pop(key, None)


def quiet_kernel_manager() -> type:
    """A jupyter_client kernel manager that starts the kernel through `selfmae.quiet_kernel` (the same kernel,
    without its TCP-encryption warning) when the kernel spec runs `python -m ipykernel_launcher`."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            cmd = super().format_kernel_cmd(extra_arguments)
            return ["selfmae.quiet_kernel" if part == "ipykernel_launcher" else part for part in cmd]

    return QuietKernelManager


def reproduce(profile: str = "tiny", data_dir: str | Path | None = None, only: list[str] | None = None,
              force: bool = False, dry_run: bool = False, params: Mapping[str, object] | None = None,
              runs_dir: Path | None = None, results_dir: Path | None = None,
              notebook_dir: Path = NOTEBOOK_DIR) -> int:
    """Run the numbered notebooks; returns 0 on success, 1 when a notebook failed (named on stderr)."""
    runs_dir = Path(runs_dir or REPO_ROOT / "runs" / profile)
    results_dir = Path(results_dir or REPO_ROOT)
    notebooks = numbered_notebooks(notebook_dir)
    if only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(prefix) for prefix in only)]
    if not notebooks:
        print(f"no numbered notebooks matched in {notebook_dir}", file=sys.stderr)
        return 1
    every = {nb: declared_parameters(nb) for nb in numbered_notebooks(notebook_dir)}
    declared = {nb: every[nb] for nb in notebooks}
    try:
        check_parameters({k: _parse(v) for k, v in (params or {}).items()}, declared, every)
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if dry_run:
        print(plan(profile, notebooks))
        return 0
    parameters = notebook_parameters(profile, data_dir, runs_dir, results_dir, params)
    chain = hashlib.sha256(f"{code_version()}|{data_fingerprint(data_dir)}".encode()).hexdigest()
    executed_dir = runs_dir / "notebooks"
    total_start = time.time()
    for i, source in enumerate(notebooks, 1):
        own = {k: v for k, v in parameters.items() if k in declared[source]}   # papermill warns on the others
        chain = hashlib.sha256(f"{chain}|{source.read_text()}|{json.dumps(own, sort_keys=True)}".encode()
                               ).hexdigest()
        output = executed_dir / f"{source.stem}.ipynb"
        record = executed_dir / f"{source.stem}.done.json"
        tag = f"[{i}/{len(notebooks)}] {source.stem}"
        if not force and output.exists() and record.exists() and json.loads(record.read_text())["inputs"] == chain:
            print(f"{tag}: skipped, inputs unchanged since {json.loads(record.read_text())['finished']}", flush=True)
            continue
        record.unlink(missing_ok=True)
        print(f"{tag}: running ...", flush=True)
        start = time.time()
        try:
            execute_notebook(source, output, own)
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
            print(f"{tag}: FAILED after {time.time() - start:.0f} s: {type(exc).__name__}: "
                  f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}\n"
                  f"  the executed copy with the traceback is {output}", file=sys.stderr, flush=True)
            return 1
        seconds = time.time() - start
        atomic_write_text(record, json.dumps({"inputs": chain, "seconds": round(seconds, 1),
                                              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}))
        print(f"{tag}: done in {seconds:.0f} s -> {output}", flush=True)
    print(f"all {len(notebooks)} notebooks finished in {time.time() - total_start:.0f} s "
          f"(tables in {results_dir / 'tables' / profile}, figures in {results_dir / 'figures' / profile})")
    return 0


# ----- the plan: which trainings each notebook runs, for `make plan` / `reproduce --dry-run` ------------------------
# (notebook prefix, experiment config, number of runs). Keep in step with the notebooks.
PLAN = [
    ("02", "pretrain_cxr14", 1), ("03", "pretrain_btcv", 1), ("04", "pretrain_brats", 1),
    ("05", "finetune_cxr14", 3 * (1 + 4 + 1 + 1)),   # scratch, scratch 4x longer (counts 4), ImageNet, MAE; 3 seeds
    ("06", "finetune_btcv", 3 * 3), ("07", "finetune_brats", 2 * 3 * 3),   # 07: both ET conventions
    ("08", "pretrain_btcv", 4 + 4), ("08", "finetune_btcv", 3 * 5),        # 4 new ratios + 4x length; 12.5 % reused
    ("08", "pretrain_brats", 4 + 2 + 4), ("08", "finetune_brats", 3 * 6),  # 4 new ratios + 2x + 4x lengths
    # 10: the label fractions 0.1 / 0.25 / 0.5 train as many steps as the full set (epochs x 1/fraction)
    ("10", "pretrain_nnformer_btcv", 1), ("10", "finetune_nnformer_btcv", 3 * 2 * (1 + 3)),
    ("10", "finetune_swinunetr_btcv", 3),
    ("12", "pretrain_medmnist", 1), ("12", "finetune_medmnist", 3 * 2),
    ("14", "pretrain_medmnist3d", 5), ("14", "finetune_medmnist3d", 3 * 2 + 3 * 4),   # 5 mask ratios, 1 reused
]


def _step_times() -> dict:
    path = REPO_ROOT / "benchmarks" / "results" / "paper_steps.json"
    return json.loads(path.read_text()) if path.exists() else {}


def plan(profile: str, notebooks: list[Path]) -> str:
    """A table of each notebook's trainings with iteration counts; for the paper profile also GPU-hours from the
    step times measured on a GPU (benchmarks/results/paper_steps.json). The tiny profile gets no GPU-hour estimate:
    those step times are the paper models', and a tiny run is timed on a CPU in the README."""
    from selfmae.config import ConfigError, load_config
    from selfmae.data.registry import dataset_spec

    gpu = profile == "paper"
    measured = _step_times() if gpu else {}
    steps = measured.get("steps", {})
    lines = [f"make reproduce PROFILE={profile}: {len(notebooks)} notebooks"]
    if gpu:
        lines += [f"step times: {measured.get('device', 'not measured (run benchmarks/gpu_paper.py on a GPU)')}", ""]
        lines.append(f"{'notebook':28s} {'experiment':26s} {'runs':>5s} {'iters/run':>10s} {'s/iter':>8s} "
                     f"{'GPU-h':>8s}")
    else:
        lines += ["no GPU-hour estimate for this profile: the measured step times are the paper profile's "
                  "(`--profile paper`).",
                  "A tiny run took about 3.6 hours from empty runs/ and data/ on a 2-core CPU (AVX2); README.md, "
                  "section 'Two commands', lists the measured time of each notebook.", ""]
        lines.append(f"{'notebook':28s} {'experiment':26s} {'runs':>5s} {'iters/run':>10s}")
    total, unmeasured = 0.0, []
    graph_steps, graph_total = measured.get("steps_cuda_graph", {}), 0.0  # measured, not yet what the engine runs
    stems = {nb.stem[:2]: nb.stem for nb in notebooks}
    for prefix, experiment, runs in PLAN:
        if prefix not in stems:
            continue
        try:
            cfg = load_config(experiment, profile)
        except ConfigError:
            continue
        t = cfg["train"]
        # training-set size of the real dataset (samples per epoch before crops), from its registry entry
        iters = t["epochs"] * math.ceil(dataset_spec(cfg["data"]).train_items(cfg["data"]) / t["batch_size"])
        if t.get("max_steps"):
            iters = min(iters, t["max_steps"])
        row = f"{stems[prefix]:28s} {experiment:26s} {runs:5.1f} {iters:10d}"
        if gpu:
            sec = steps.get(experiment)
            if sec:
                hours = runs * iters * sec / 3600
                total += hours
                graph_total += runs * iters * graph_steps.get(experiment, sec) / 3600
                row += f" {sec:8.3f} {hours:8.1f}"
            else:
                unmeasured.append(experiment)
                row += f" {'n/a':>8s} {'n/a':>8s}"
        lines.append(row)
    lines += ["", "iters/run: the profile's epochs over the real dataset's training set (capped by max_steps)"]
    if not gpu:
        lines.append("  (without DATA_DIR the tiny runs read the synthetic phantoms, whose sizes differ: "
                     "far fewer CXR14 images)")
    if gpu:
        lines.append(f"total ≈ {total:.1f} GPU-hours (training only; evaluation and data caching add a little)")
        if graph_steps:
            lines.append(f"  the same steps as whole-step CUDA graphs (benchmarks/gpu_paper.py measured them; the engine "
                         f"does not capture graphs yet): ≈ {graph_total:.1f} GPU-hours")
        if unmeasured:
            lines.append(f"left out of the total (n/a): {', '.join(dict.fromkeys(unmeasured))}, which have no "
                         f"measured step time (benchmarks/gpu_paper.py does not time them)")
    return "\n".join(lines)
