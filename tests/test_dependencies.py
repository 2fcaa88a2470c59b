"""pyproject.toml (pip) and environment.yml (conda) must list the same packages."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# conda names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_pip_and_conda_lists_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = {_name(s) for s in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        pip |= {_name(s) for s in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {CONDA_TO_PYPI.get(_name(s), _name(s)) for s in env["dependencies"] if isinstance(s, str)}
    conda -= NOT_PACKAGES
    assert pip - conda == set(), f"in pyproject.toml but not environment.yml: {sorted(pip - conda)}"
    assert conda - pip == set(), f"in environment.yml but not pyproject.toml: {sorted(conda - pip)}"


def test_no_timm_or_torchvision():
    text = (ROOT / "pyproject.toml").read_text() + (ROOT / "environment.yml").read_text()
    assert "timm" not in text and "torchvision" not in text
