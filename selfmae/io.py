"""Atomic file writes: a reader never sees a half-written checkpoint, table or figure.

Every writer goes through a temporary file in the destination folder, then `os.replace`, which is atomic on
POSIX and Windows. An interrupted run leaves either the old file or the new one, never a truncated mix.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it.

    The temporary name keeps the suffix so writers that infer the format from it (matplotlib, nibabel) work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{''.join(path.suffixes)}")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, _mode_for(path))   # mkstemp makes it 0600; the renamed file gets what open() would give
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The permission bits a plain `open(path, "w")` would leave: an existing file's own, else 0o666 minus the
    process umask (mkstemp's private 0o600 would otherwise make every run file unreadable to the group)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc/self/status), else set and reset."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` through a temporary file + rename, so a crash never corrupts the previous checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
