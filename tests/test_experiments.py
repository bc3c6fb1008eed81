"""Smoke runs of the papermill experiment notebooks: a real kernel, injected parameters, files written."""
import json
from pathlib import Path

import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(nb_name, tmp_path, **params):
    nb = ROOT / "nbs" / nb_name
    declared = pm.inspect_notebook(str(nb))
    missing = set(params) - set(declared)
    assert not missing, f"{nb_name} has no parameters {missing} (is its parameters cell tagged?)"
    pm.execute_notebook(str(nb), str(tmp_path / nb_name), kernel_name="python3", parameters=params,
                        cwd=str(nb.parent), progress_bar=False, execution_timeout=600)


def test_body_gallery(tmp_path):
    out = tmp_path / "figs"
    run("19_body_gallery.ipynb", tmp_path, out_dir=str(out), n_random_shapes=1, dpi=40, device="cpu")
    png, table = out / "body_gallery.png", out / "body_shape_components.csv"
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    side = json.loads((out / "body_gallery.png.json").read_text())
    assert side["config"]["n_random_shapes"] == 1 and side["config"]["out_dir"] == str(out)  # injected, not defaults
    assert side["git_sha"] and side["data"][0]["sha256"] and side["elapsed_s"] > 0
    rows = table.read_text().splitlines()
    assert rows[0].startswith("component,") and len(rows) == 11
    assert (out / "body_shape_components.md").exists() and (out / "body_shape_components.csv.json").exists()
