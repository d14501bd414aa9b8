"""Every notebook runs top to bottom in a fresh kernel with FAST=1, and is stored without outputs."""
from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 600  # per notebook; FAST runs take well under a minute
#: Figures each notebook writes through savefig (into OUT, relative to the kernel's folder).
FIGURES = {
    "02_meta_training": ["02_meta_training"],
    "03_new_task_tuning": ["03_new_task_tuning", "03_replay_benchmark"],
    "04_interpretability": ["04_importance", "04_importance_vs_metafeatures", "04_partial_dependence", "04_mapping",
                            "04_task_similarity"],
    "05_text_domain": ["05_text_importance", "05_text_replay_benchmark", "05_text_tuning", "05_cross_domain"],
    "06_rl_domain": ["06_rl_importance_by_env", "06_rl_replay_benchmark", "06_rl_tuning"],
}
#: Notebooks that show ipywidgets (and how many widget views at least).
WIDGETS = {"04_interpretability": 4, "05_text_domain": 1, "06_rl_domain": 1}


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "FAST" in tagged[0].source


def _parameters(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return cells[0].source


def test_parameters_are_stored_alike_and_read_the_environment(monkeypatch):
    """All store FAST=0 (the full run) and take FAST and OUT from the environment."""
    for path in NOTEBOOKS:
        source = _parameters(path)
        for env, fast, out in (({}, 0, "figures/notebooks"), ({"FAST": "1", "OUT": "/tmp/x"}, 1, "/tmp/x")):
            monkeypatch.delenv("FAST", raising=False)
            monkeypatch.delenv("OUT", raising=False)
            for k, v in env.items():
                monkeypatch.setenv(k, v)
            scope: dict = {}
            exec(source, scope)  # noqa: S102 - the notebook's own parameters cell
            assert (scope["FAST"], scope["OUT"]) == (fast, out), path.stem


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_markdown_math_renders(path):
    """MathJax shows a stray red ``\\*`` for an escaped star inside math: none in any markdown cell."""
    import re

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            for math in re.findall(r"\$[^$]+\$", cell.source):
                assert "\\*" not in math, (path.stem, math)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs_top_to_bottom(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("FAST", "1")  # as `FAST=1 jupyter lab` would: the kernel inherits it
    monkeypatch.delenv("OUT", raising=False)
    NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert len(outputs) >= 5  # it showed its tables and prints
    for name in FIGURES.get(path.stem, []):
        for ext in ("png", "pdf"):
            assert (tmp_path / "figures" / "notebooks" / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) >= WIDGETS.get(path.stem, 0)


def test_no_widget_state_is_printed_as_if_live():
    """A widget's state printed under it goes stale as soon as the reader moves a control: no cell that
    builds a widget ends on one of its state attributes (each widget shows its own live table)."""
    import ast

    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or "W." not in cell.source:
                continue
            last = ast.parse(cell.source).body[-1]
            assert not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Attribute)), \
                (path.stem, ast.unparse(last))
