"""Smoke runs of the viewer notebook `nbs/50_explore.ipynb` through papermill: the snapshot and its provenance, the
widgets redrawing the figure, and the message when there is nothing to look at yet."""
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "nbs" / "50_explore.ipynb"

# Appended to the notebook in the smoke run: turn the widgets as a user would and check that each change redraws.
INTERACT = """
calls = []
_show = show
def show(*a, **k):
    calls.append(a); return _show(*a, **k)
w_yaw.value = -90; w_image.value = 0; w_settings.value = ("kpr+none",); w_settings.value = ()
assert [c[0] for c in calls] == [1, 0, 0, 0] and calls[0][2] == -90 and calls[2][1] == ("kpr+none",), calls
assert [o["output_type"] for o in out.outputs] == ["display_data"], out.outputs
"""


def run(tmp_path, extra_cell=None, **params):
    declared = pm.inspect_notebook(str(NB))
    missing = set(params) - set(declared)
    assert not missing, f"50_explore.ipynb has no parameters {missing} (is its parameters cell tagged?)"
    src = NB
    if extra_cell:
        nb = nbformat.read(NB, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(extra_cell))
        src = tmp_path / "50_explore_in.ipynb"
        nbformat.write(nb, src)
    out = tmp_path / "50_explore.ipynb"
    pm.execute_notebook(str(src), str(out), kernel_name="python3", parameters=params, cwd=str(NB.parent),
                        progress_bar=False, execution_timeout=300)
    return nbformat.read(out, as_version=4)


def make_runs(tmp_path, settings=("kpr+none", "both+critic")):
    "Two tiny finished runs (2 steps, 64 px) on synthetic people."
    from hybrid_pose.synthetic import generate_synthetic
    from hybrid_pose.experiments import experiment_config, run_setting
    data, runs = tmp_path / "data", tmp_path / "runs"
    generate_synthetic(data / "synthetic", n=10, seed=0, progress=False)
    for s in settings:
        run_setting(experiment_config(s, "quick", runs, data_root=str(data), dataset="synthetic", body_model="open",
                                      max_train_images=4, batch_size=4, augment=False, max_steps=2, progress=False,
                                      tensorboard=False, val_every=-1, img_size=64, device="cpu"))
    return data, runs


def test_explore_snapshot_and_widgets(tmp_path):
    data, runs = make_runs(tmp_path)
    (runs / "unfinished").mkdir()                           # a run folder without a checkpoint is not offered
    figs = tmp_path / "figs"
    nb = run(tmp_path, INTERACT, runs_dir=str(runs), data_root=str(data), out_dir=str(figs), n_images=3,
             image_index=1, yaw=30.0, device="cpu", dpi=40)
    png = figs / "explore_synthetic_train.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    side = json.loads((figs / "explore_synthetic_train.png.json").read_text())
    assert side["config"]["runs_dir"] == str(runs) and side["config"]["n_images"] == 3     # injected, not the defaults
    assert side["config"]["yaw"] == 30.0 and side["shown"]["image_index"] == 1 and side["git_sha"]
    assert side["shown"]["settings"] == ["kpr+none", "both+critic"]                      # every run, in table order
    assert {s: r["step"] for s, r in side["runs"].items()} == {"kpr+none": 2, "both+critic": 2}
    assert side["runs"]["kpr+none"]["train_config"]["img_size"] == 64
    assert all(m["kpr_px"] > 0 and 0 <= m["fgbg_f1"] <= 1 for m in side["metrics"].values())
    assert sum(d["path"].endswith("checkpoint.pt") and len(d["sha256"]) == 64 for d in side["data"]) == 2
    mimes = [set(o.get("data", {})) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in m for m in mimes)           # the viewer was displayed
    assert any("image/png" in m for m in mimes)                                           # and the snapshot shown


def test_explore_without_runs_says_what_to_run(tmp_path):
    empty = tmp_path / "runs"
    (empty / "kpr+none").mkdir(parents=True)                 # started, never finished: no checkpoint.pt
    with pytest.raises(pm.PapermillExecutionError, match=r"papermill nbs/20_overfit\.ipynb"):
        run(tmp_path, runs_dir=str(empty), data_root=str(tmp_path / "data"), out_dir=str(tmp_path / "figs"), device="cpu")
    assert not (tmp_path / "figs").exists()
