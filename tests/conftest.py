"""Session-wide test settings: tests write into temporary folders, never into the checkout (checked at the end)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfmae.repro import REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def _phantoms_in_the_session_temp_folder(tmp_path_factory):
    """Point SELFMAE_SYNTHETIC (where configs without data.data_dir generate their phantoms) at the session's temp
    folder, so a test that builds a tiny config's data leaves the user's data/synthetic untouched. Tests that set
    their own folder (monkeypatch.setenv) still do."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SELFMAE_SYNTHETIC", str(tmp_path_factory.getbasetemp() / "synthetic"))
        yield



# ----- a test run leaves the checkout as it found it ----------------------------------------------------------------
def _checkout_state(root: Path) -> dict[str, int]:
    """{path: mtime in ns} of the checkout's tracked and untracked (not ignored) files, and of the entries two levels
    under the ignored data/ and runs/ folders, where phantoms and trainings would land. Empty when git is absent."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                                capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return {}
    paths = [root / name for name in listed if name]
    for folder in ("data", "runs"):
        paths += [p for pattern in ("*", "*/*") for p in (root / folder).glob(pattern)]
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns if p.exists() else -1) for p in paths}


def pytest_sessionstart(session):
    session.config._checkout_before = _checkout_state(REPO_ROOT)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when a test wrote into the checkout (a committed figure re-drawn, phantoms under data/)."""
    before = getattr(session.config, "_checkout_before", {})
    if not before or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    after = _checkout_state(REPO_ROOT)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if changed:
        print(f"\nthe tests wrote into the checkout ({REPO_ROOT}): {', '.join(changed[:10])}"
              + (f" and {len(changed) - 10} more" if len(changed) > 10 else ""), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
