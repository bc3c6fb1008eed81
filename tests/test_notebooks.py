"""Every component notebook, run by nbdev's own test runner (`nbdev.test.test_nb`, what `nbdev-test` does).

Cells flagged `#| slow` / `#| cuda` are skipped unless `HYBRID_POSE_NB_FLAGS="slow cuda"` is set; notebooks with
`skip_exec: true` frontmatter (the papermill experiments) are smoke-run by `test_experiments.py` instead.
"""
import os
from pathlib import Path

import pytest
import nbdev.test as nbt          # never `from nbdev.test import test_nb`: pytest would collect it
from nbdev.config import get_config

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith(("_", ".")))


def _is_experiment(nb: Path) -> bool:
    return "skip_exec: true" in nb.read_text()


COMPONENTS = [nb for nb in NBS if not _is_experiment(nb)]


def test_there_are_component_notebooks():
    assert len(COMPONENTS) >= 3, COMPONENTS


@pytest.mark.parametrize("nb", COMPONENTS, ids=lambda p: p.name)
def test_notebook(nb, monkeypatch):
    cfg = get_config(ROOT)
    run = set(os.environ.get("HYBRID_POSE_NB_FLAGS", "").split())
    skip = [f for f in str(cfg.tst_flags).split() if f not in run]
    monkeypatch.chdir(nb.parent)
    ok, elapsed = nbt.test_nb(nb, skip_flags=skip, basepath=ROOT, profile=False, cell_timeout=int(cfg.cell_timeout))
    assert ok, f"{nb.name} failed (run `nbdev-test {nb.relative_to(ROOT)} --do-print` to see the traceback)"
