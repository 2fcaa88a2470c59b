"""The one place a user's `.pt` / `.pth` / `.bin` file is opened with `torch.load`.

A weights path is often not what it claims: an HTML error page saved by a failed download, a git-LFS pointer,
an empty file, a zip or NumPy file. `load_torch_file` looks at the first bytes before unpickling and raises
`WeightsFileError` naming the file and saying what it holds, instead of torch's "invalid load key '<'".
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["WeightsFileError", "describe_non_torch_file", "load_torch_file"]


class WeightsFileError(ValueError):
    """A weights/checkpoint file that cannot be read as a PyTorch file; the message names it and its content."""


def _first_line(head: bytes) -> str:
    text = head.decode("utf-8", "replace").strip().splitlines()
    return (text[0][:80] + ("..." if len(text[0]) > 80 else "")) if text else ""


def describe_non_torch_file(path: str | os.PathLike) -> str | None:
    """What `path` holds when it is clearly not a PyTorch file ("an HTML page ...", "a git-LFS pointer ..."),
    else None (it may be one: let torch try)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): an interrupted download or copy?"
    with open(path, "rb") as fh:
        head = fh.read(1024)
    lower = head.lstrip().lower()
    if head.startswith(b"version https://git-lfs"):
        return "is a git-LFS pointer, not the weights: fetch the real file (git lfs pull)"
    if lower.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")) or b"<html" in lower[:256]:
        return f"starts like an HTML page, not weights: a failed download? (first line: {_first_line(head)!r})"
    if head.startswith(b"\x93NUMPY"):
        return "is a NumPy .npy array, not a PyTorch file"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as err:
            return f"is a damaged zip archive, corrupt or truncated ({err}): an interrupted download?"
        if not any(n.endswith("data.pkl") for n in names):
            return f"is a zip archive but not a PyTorch file (it holds {', '.join(names[:5])}{' ...' * (len(names) > 5)})"
        return None
    if head[:1] == b"\x80":                                   # a pickle: torch's legacy format
        return None
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head[:256]):
        return f"holds text, not a PyTorch file (first line: {_first_line(head)!r})"
    return None


def _first_error_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else ""


def _corrupt(path: Path, err: Exception) -> WeightsFileError:
    return WeightsFileError(f"{path} cannot be read as a PyTorch file, corrupt or truncated "
                            f"({type(err).__name__}: {_first_error_line(err)[:200]})")


def _load_fully(path: Path) -> Any:
    """torch.load with full unpickling; a file that still cannot be read is a WeightsFileError naming it (random
    bytes fail the weights-only load with torch's advice to unpickle fully, and then fail again)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise _corrupt(path, err) from err


def load_torch_file(path: str | os.PathLike, weights_only: bool = True, allow_full_unpickle: bool = False) -> Any:
    """torch.load(path) on CPU, with errors that say what the file is.

    weights_only=True reads tensors and plain containers only; with allow_full_unpickle a file that needs more
    (e.g. numpy objects in a checkpoint) is read fully, as torch did before 2.6 -- only for files you trust.
    Raises FileNotFoundError when there is no such file and WeightsFileError naming the file and what it holds
    when it is not a PyTorch file (HTML page, git-LFS pointer, empty, text, zip or NumPy file, corrupt pickle).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    what = describe_non_torch_file(path)
    if what:
        raise WeightsFileError(f"{path} {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:
        # a weights-only load names the class it refused ("Unsupported global: GLOBAL argparse.Namespace"); any
        # other refusal ("Unsupported operand 166") is a byte stream that is not a pickle at all
        holds_objects = "weights_only" in str(err) and "Unsupported global" in str(err)
        if weights_only and allow_full_unpickle and holds_objects:
            return _load_fully(path)
        if holds_objects:
            raise WeightsFileError(f"{path} holds Python objects besides tensors, which a weights-only load "
                                   f"refuses ({_first_error_line(err)[:120]})") from err
        raise _corrupt(path, err) from err
