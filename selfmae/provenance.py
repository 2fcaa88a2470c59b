"""What data and files a run used, said the same way in run folders, stamps and captions.

* `data_label(path)`: the data in a stamp: "synthetic", the package path of a sample shipped with selfmae
  (e.g. selfmae/data/samples/medmnist/pneumoniamnist_subset.npz, wherever it is installed), a path relative to the
  repository for other files in it, or the dataset's own folder or file name for data
  elsewhere ("ChestX-ray14"): never an absolute path of the machine that ran it.
* `file_sha256(path)`: what a file holds, for run records (the pre-trained checkpoint a fine-tuning started from).
* `data_listing_sha256(path)`: what a data folder holds, cheaply, for run records: a run on data whose split
  lists, metadata or files changed since is not mistaken for a finished run on the same data.
* `data_tag(path)`: a short folder name for runs on data other than the default (synthetic phantoms, the
  shipped PneumoniaMNIST subset and AdrenalMNIST3D file): "<name>-<6 hex digits of the resolved path>", so runs
  on other data land in their own folders instead of colliding with finished runs on the default data.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from selfmae.data.registry import MEDMNIST3D_SAMPLE, MEDMNIST_SAMPLE, SAMPLES_DIR
from selfmae.repro import REPO_ROOT

DEFAULT_DATA = (MEDMNIST_SAMPLE, MEDMNIST3D_SAMPLE)   # the shipped samples read when data_dir is null


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def data_label(path: str | os.PathLike | None) -> str:
    """'synthetic' for no path, else the package path of a shipped sample, else the path relative to the
    repository, else the file or folder's name."""
    if not path:
        return "synthetic"
    resolved = _resolved(path)
    if resolved.is_relative_to(SAMPLES_DIR.resolve()):
        return (Path("selfmae", "data", "samples") / resolved.relative_to(SAMPLES_DIR.resolve())).as_posix()
    return repo_relative(path) or resolved.name or str(path)


def repo_relative(path: str | os.PathLike) -> str | None:
    """`path` relative to the repository (POSIX), None when outside it. Tried as written first, so a data/ or
    runs/ folder linked into the repository (a worktree, a shared disk) is named by its place there."""
    for inside, root in ((Path(os.path.abspath(path)), Path(os.path.abspath(REPO_ROOT))),
                         (_resolved(path), REPO_ROOT.resolve())):
        if inside.is_relative_to(root):
            return inside.relative_to(root).as_posix()
    return None


def data_tag(path: str | os.PathLike | None) -> str:
    """'' for the default data (no path, or a shipped default such as the PneumoniaMNIST subset), else a short,
    stable folder name for it: '<name>-<6 hex of its resolved path>' (name reduced to [A-Za-z0-9_.-])."""
    if not path or _resolved(path) in {p.resolve() for p in DEFAULT_DATA}:
        return ""
    resolved = _resolved(path)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", resolved.name)[:32] or "data"
    return f"{name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:6]}"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (e.g. the checkpoint `model.pretrained` names), so a run records what it
    started from, not only where it lay; cached per (resolved path, size, mtime) within a process.
    Raises FileNotFoundError / OSError naming the file when it cannot be read."""
    resolved = _resolved(path)
    stat = resolved.stat()
    return _sha256_of(str(resolved), stat.st_size, stat.st_mtime_ns)


LISTING_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".yaml", ".yml")   # split lists, metadata: read in full


def data_listing_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of what a data folder (or single data file, e.g. a MedMNIST .npz) holds, as a run depends on it:
    every file's path relative to the folder and size in bytes, and the full content of its listing files (suffixes
    in LISTING_SUFFIXES: CXR14's train_val_list.txt / test_list.txt / Data_Entry_2017.csv, a Decathlon
    dataset.json). Images are known by name and size only (hashing 45 GB of ChestX-ray14 per run would cost minutes),
    so an image re-written at the same size is not seen. Hidden files and folders (".DS_Store", ".ipynb_checkpoints")
    are skipped; modification times are not read, so a copied or moved folder keeps its digest.
    Raises FileNotFoundError naming the path when it does not exist."""
    root = _resolved(path)
    if not root.exists():
        raise FileNotFoundError(f"{path}: no such data file or folder")
    files = [root] if root.is_file() else sorted(_visible_files(root))
    digest = hashlib.sha256()
    for file in files:
        name = file.name if file == root else file.relative_to(root).as_posix()
        digest.update(f"{name}\0{file.stat().st_size}\0".encode())
        if file.suffix.lower() in LISTING_SUFFIXES:
            digest.update(bytes.fromhex(file_sha256(file)))
    return digest.hexdigest()


def _visible_files(root: Path):
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from (Path(folder, f) for f in files if not f.startswith("."))


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
