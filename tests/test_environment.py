"""pyproject.toml and environment.yml list the same packages with the same lower bounds."""
from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT

CONDA_NAMES = {"pytorch": "torch"}  # conda name -> pip name


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req)
    assert m, req
    return m.group(1).split("[")[0].lower(), m.group(2).replace(" ", "")


def test_pyproject_and_environment_agree():
    deps = dict(_split(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert {"pytorch", "conda-forge"} <= set(env["channels"])
    conda: dict[str, str] = {}
    for item in env["dependencies"]:
        if isinstance(item, dict):
            for req in item.get("pip", []):
                if not req.startswith("-e"):
                    name, bound = _split(req)
                    conda[name] = bound
        else:
            name, bound = _split(item)
            conda[CONDA_NAMES.get(name, name)] = bound
    conda.pop("python"), conda.pop("pip")
    assert conda == deps
    # every dependency is lower-bounded
    assert all(b.startswith(">=") for b in deps.values()), deps
