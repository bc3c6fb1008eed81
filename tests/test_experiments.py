"""Smoke runs of the papermill experiment notebooks: a real kernel, injected parameters, files written."""
import json
from pathlib import Path

import papermill as pm
from hybrid_pose.checkpoint import Checkpoint
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


def _table(path):
    import csv
    with open(path) as fh: return list(csv.DictReader(fh))


def _sidecar(path):
    return json.loads(Path(str(path) + ".json").read_text())


def test_overfit_smoke(tmp_path):
    out, data = tmp_path / "figs", tmp_path / "data"
    run("20_overfit.ipynb", tmp_path, data_root=str(data), out_dir=str(out), runs_dir=str(tmp_path / "runs"), n_images=4,
        batch_size=4, epochs=2, profile="quick", settings="kpr+none,both+critic-norot", figure_settings="mr+none,both+critic",
        device="cpu", dpi=40, seeds="0,1")
    assert (data / "synthetic" / "truth.npz").exists()                        # made on the fly
    rows = _table(out / "overfit_synthetic.csv")
    assert [r["setting"] for r in rows] == ["kpr+none", "both+critic-norot", "baseline:tpose", "baseline:tpose_fixed_camera", "baseline:mean_pose",
                                            "baseline:mean_pose_fixed_camera", "baseline:nearest_2d"]
    assert {r["steps"] for r in rows[:2]} == {"2"} and {r["seeds"] for r in rows[:2]} == {"2"}
    assert all(float(r["KPR_paper_mean"]) > 0 and float(r["PA_MPJPE_mm_mean"]) > 0 for r in rows)
    assert all(float(r["PA_MPJPE_mm_lo"]) <= float(r["PA_MPJPE_mm_mean"]) <= float(r["PA_MPJPE_mm_hi"]) for r in rows[:2])
    assert "±" in rows[0]["PA_MPJPE_mm"] and "seeds [0, 1]" in (out / "overfit_synthetic.md").read_text()
    claims = _table(out / "overfit_claims_synthetic.csv")
    assert [(c["a"], c["b"]) for c in claims][:2] == [("kpr+none", claims[0]["b"]), ("both+critic-norot", claims[0]["b"])]
    for c in claims:                                                          # the sentence follows the interval
        lo, hi = float(c["lo"]), float(c["hi"])
        assert (c["significant"] == "True") == (lo > 0 or hi < 0)
        assert c["sentence"].startswith("no significant difference") == (c["significant"] == "False")
    side = _sidecar(out / "overfit_synthetic.csv")
    assert side["config"]["epochs"] == 2 and side["config"]["n_images"] == 4 and side["profile"] == "quick"
    assert side["seeds"] == [0, 1] and side["config"]["seeds"] == "0,1"
    assert side["lsp_joints"] == "smpl_joints+head_top"                        # which LSP-14 definition made the numbers
    assert side["train_configs"]["both+critic-norot"]["prior_options"]["rotations"] is False and side["git_sha"]
    assert any(d["path"].endswith("truth.npz") for d in side["data"])
    fig = out / "fig4_overfit_synthetic.png"
    assert fig.read_bytes()[:4] == b"\x89PNG" and _sidecar(fig)["config"]["figure_settings"] == "mr+none,both+critic"
    assert set(_sidecar(fig)["train_configs"]) == {"mr+none", "both+critic"}
    assert (out / "overfit_curves_synthetic.png").exists() and (out / "overfit_synthetic.md").exists()


def test_lsp_table1_smoke_on_synthetic(tmp_path):
    out, data = tmp_path / "figs", tmp_path / "data"
    run("30_lsp.ipynb", tmp_path, data_root=str(data), dataset="synthetic", n_synthetic=12, out_dir=str(out),
        runs_dir=str(tmp_path / "runs"), epochs=1, batch_size=4, profile="quick", settings="kpr+none,both+critic",
        device="cpu", dpi=40, seeds="0,1")
    rows = _table(out / "table1_synthetic.csv")
    assert [r["setting"] for r in rows] == ["kpr+none", "both+critic", "baseline:tpose", "baseline:tpose_fixed_camera", "baseline:mean_pose",
                                            "baseline:mean_pose_fixed_camera", "baseline:nearest_2d"]
    assert rows[0]["paper_KPR"] == "4.19" and rows[1]["paper_MR"] == "44.03"      # the paper's numbers beside ours
    assert {r["steps"] for r in rows[:2]} == {"2"} and all(float(r["KPR_paper_aug"]) > 0 for r in rows[:2])  # 1 epoch = 10 // 4
    assert all(float(r["PA_MPJPE_mm_mean"]) > 0 for r in rows)                    # synthetic people have 3D truth
    assert "seeds [0, 1]" in (out / "table1_synthetic.md").read_text()
    said = _table(out / "table1_claims_synthetic.csv")
    assert {c["metric"] for c in said} == {"pa_mpjpe_mm", "kpr_px"} and ("both+critic", "both+none") not in [(c["a"], c["b"]) for c in said]
    from hybrid_pose.experiments import BASELINES
    yardsticks = {c["b"] for c in said if c["b"] in BASELINES}
    assert yardsticks and not any(BASELINES[b].oracle for b in yardsticks)       # never an oracle as the yardstick
    p, holm = [float(c["p"]) for c in said], [float(c["p_holm"]) for c in said]
    assert all(h >= q - 1e-12 for h, q in zip(holm, p)) and max(holm) <= 1     # Holm: adjusted ≥ raw, capped at 1
    assert all((c["significant"] == "True") == (float(c["p_holm"]) < 0.05) for c in said)
    assert "Holm" in (out / "table1_claims_synthetic.md").read_text()
    assert "oracle:" in (out / "table1_synthetic.md").read_text()                # truth-using rows say so
    side = _sidecar(out / "table1_synthetic.csv")
    assert side["config"]["n_synthetic"] == 12 and side["train_configs"]["kpr+none"]["epochs"] == 1
    assert (out / "table1_curves_synthetic.png").exists()


def test_lsp_extended_smoke_with_baseline_predictions(tmp_path):
    import numpy as np
    from hybrid_pose.model import mean_theta
    out, data = tmp_path / "figs", tmp_path / "data"
    pred = tmp_path / "baseline.npz"
    np.savez(pred, number=np.arange(1, 13), theta=np.tile(mean_theta().numpy(), (12, 1)))   # "HMR" = Θ₀ everywhere
    run("40_lsp_extended.ipynb", tmp_path, data_root=str(data), dataset="synthetic", n_synthetic=12, out_dir=str(out),
        runs_dir=str(tmp_path / "runs"), epochs=1, batch_size=4, profile="quick", baseline_predictions=str(pred),
        n_figure_images=2, device="cpu", dpi=40, paper_augmented_val=False)
    rows = _table(out / "table2_synthetic.csv")
    assert [r["setting"] for r in rows] == ["kpr+critic", "both+critic", "baseline"]
    assert float(rows[2]["KPR_paper"]) > 0 and rows[2]["paper_KPR"] == "2.64"     # the baseline column is filled
    side = _sidecar(out / "table2_synthetic.csv")
    assert side["config"]["baseline_predictions"] == str(pred)
    assert any(d["path"].endswith("baseline.npz") for d in side["data"])
    assert (out / "fig5_synthetic.png").exists()


def test_real_data_missing_stops_at_once(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="get_lsp.py"):
        run("30_lsp.ipynb", tmp_path, data_root=str(tmp_path / "nothing"), dataset="lsp", out_dir=str(tmp_path / "f"),
            runs_dir=str(tmp_path / "runs"), profile="quick", device="cpu")


def test_extend_smoke_registers_a_term_and_a_prior_in_the_notebook(tmp_path):
    """21_extend defines a loss term and a prior in the notebook only and trains them into rows of the overfit table."""
    import math
    out, data = tmp_path / "figs", tmp_path / "data"
    run("21_extend.ipynb", tmp_path, data_root=str(data), out_dir=str(out), runs_dir=str(tmp_path / "runs"), n_images=4,
        batch_size=4, steps=2, profile="quick", device="cpu", settings="kpr+limb2d,kpr+l2pose")
    rows = _table(out / "extend_synthetic.csv")
    assert [(r["setting"], r["label"]) for r in rows] == [("kpr+limb2d", "KPR + 2D limb length"), ("kpr+l2pose", "KPR only + L2 pose prior")]
    for r in rows:
        for k in ("KPR_px", "MR_px", "PA_MPJPE_mm", "term_kpr", "term_limb2d"):
            assert math.isfinite(float(r[k])) and float(r[k]) >= 0, (r["setting"], k, r[k])
        assert r["steps"] == "2"
    side = _sidecar(out / "extend_synthetic.csv")
    cfgs = side["train_configs"]
    assert cfgs["kpr+l2pose"]["prior"] == "l2pose" and cfgs["kpr+l2pose"]["prior_options"] == {"weight": 1.0, "adv_weight": 1.0}
    assert cfgs["kpr+limb2d"]["weights"] == {"limb2d": 60.0}


def test_evidence_track_smoke(tmp_path):
    """The perception-free notebook end to end on a few people: the three folders made with their samplers, runs trained
    as processes side by side and reused, two test sets with no-truth and input-keypoint baselines, Holm claims, curves."""
    out, data = tmp_path / "figs", tmp_path / "data"
    kw = dict(data_root=str(data), out_dir=str(out), runs_dir=str(tmp_path / "runs"), n_train=12, n_test=6, max_steps=3,
              batch_size=4, settings="kpr+none,both+none,both+fixedcritic,kpr3d+none", seeds="0,1", curve_every=2,
              curve_settings="kpr3d+none", parallel=2, dpi=40)
    run("35_evidence.ipynb", tmp_path, **kw)
    people = json.loads((data / "heldout" / "people.json").read_text())
    assert {p["pose_sampler"] for p in people} == {"natural_heldout"} and people[0]["activity_split"]["heldout"]
    assert {p["pose_sampler"] for p in json.loads((data / "synthetic" / "people.json").read_text())} == {"natural_train"}
    for t in ("heldout", "inactivity"):
        rows = _table(out / f"evidence_{t}.csv")
        assert [r["setting"] for r in rows][:4] == ["kpr+none", "both+none", "both+fixedcritic", "kpr3d+none"]
        labels = {r["setting"]: r["label"] for r in rows}
        assert "input keypoints" in labels["baseline:nearest_2d"] and "no test-time truth" in labels["baseline:mean_pose_fixed_camera"]
        assert all(float(r["PA_MPJPE_mm_mean"]) > 0 for r in rows)
        side = _sidecar(out / f"evidence_{t}.csv")
        assert side["seeds"] == [0, 1] and side["input"] == "evidence" and side["activity_split"]["seed"] == 20
        assert side["train_configs"]["both+fixedcritic"]["pose_source"] == "natural_train"
        assert side["train_configs"]["kpr+none"]["input"] == "evidence"
        claims = _table(out / f"evidence_claims_{t}.csv")
        assert claims and all(c["p_holm"] for c in claims)
        for c in claims:
            assert (c["significant"] == "True") == (float(c["p_holm"]) <= 0.05)
    assert (out / "evidence_curves.png").read_bytes()[:4] == b"\x89PNG"
    t0 = (out / "evidence_heldout.csv").stat().st_mtime
    run("35_evidence.ipynb", tmp_path, **kw)                                   # reruns reuse the people and the runs
    assert json.loads((data / "heldout" / "people.json").read_text()) == people
    # the joint-centre encoder on the same people, then the two studies' controls compared by the tool
    xy = kw | dict(settings="kpr3d+none", input="evidence_xy", runs_dir=str(tmp_path / "runs_xy"), tag="evidence_xy")
    run("35_evidence.ipynb", tmp_path, **xy)
    assert _sidecar(out / "evidence_xy_heldout.csv")["train_configs"]["kpr3d+none"]["input"] == "evidence_xy"
    import subprocess, sys
    cmd = [sys.executable, str(ROOT / "tools" / "compare_studies.py"), str(tmp_path / "runs_xy"), str(tmp_path / "runs"),
           "--seeds", "0,1", "--data-root", str(data), "--out", str(out / "xy_vs_maps.csv")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = _table(out / "xy_vs_maps.csv")
    assert [(c["test"], c["metric"]) for c in rows][:2] == [("heldout", "pa_mpjpe_mm"), ("heldout", "mpjpe_mm")] and len(rows) == 8
    for t in ("heldout", "inactivity"):                                       # A and B are the notebooks' own numbers
        mine = {r["setting"]: float(r["PA_MPJPE_mm_mean"]) for r in _table(out / f"evidence_{t}.csv")}["kpr3d+none"]
        theirs = {r["setting"]: float(r["PA_MPJPE_mm_mean"]) for r in _table(out / f"evidence_xy_{t}.csv")}["kpr3d+none"]
        row = next(c for c in rows if c["test"] == t and c["metric"] == "pa_mpjpe_mm")
        assert abs(float(row["A_mean"]) - theirs) < 1e-3 and abs(float(row["B_mean"]) - mine) < 1e-3, (row, mine, theirs)
        assert abs(float(row["diff"]) - (theirs - mine)) < 1e-3 and row["p_holm"]
    side = _sidecar(out / "xy_vs_maps.csv")
    assert [c["input"] for c in side["configs"]["A"]] == ["evidence_xy"] * 2 and [c["input"] for c in side["configs"]["B"]] == ["evidence"] * 2
    bad = subprocess.run(cmd[:-2] + ["--seeds", "0,7", "--out", str(out / "x.csv")], capture_output=True, text=True)
    assert bad.returncode == 2 and "seed7" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    # a shared start per seed: a stage of KPR only, then every setting of that seed continues from its own seed's stage
    stage = kw | dict(settings="kpr+none,both+none", input="evidence_xy", init_steps=2, init_setting="kpr+none",
                      init_per_seed=True, curve_settings="", runs_dir=str(tmp_path / "runs_stage"), tag="evidence_stage")
    run("35_evidence.ipynb", tmp_path, **stage)
    for sd in (0, 1):
        pre = Checkpoint.load(tmp_path / "runs_stage" / f"seed{sd}" / "shared_stage" / "kpr+none")
        assert pre.step == 2 and pre.config["losses"] == "kpr" and pre.config["seed"] == sd
        for s in ("kpr+none", "both+none"):
            ck = Checkpoint.load(tmp_path / "runs_stage" / f"seed{sd}" / s)
            assert ck.step == 3 and pre["digest"][:12] in ck["weights"], (sd, s, ck["weights"])
    side = _sidecar(out / "evidence_stage_heldout.csv")
    assert side["init_per_seed"] is True and side["pretrain_2d"]["losses"] == "kpr"
    start = {r["setting"]: r for r in _table(out / "evidence_stage_heldout.csv")}["shared_start"]
    assert start["seeds"] == "2" and start["label"].startswith("shared start: KPR only, 2 steps") and float(start["PA_MPJPE_mm_mean"]) > 0
    for f in ("evidence_stage_heldout.md", "evidence_stage_claims_heldout.md"):   # the design is said beside the numbers
        assert "shared stage of KPR only (2 steps)" in (out / f).read_text(), f


def test_rgb_cpu_recipe_smoke(tmp_path):
    """The same notebook as the RGB track's CPU recipe: the shared 2D stage trained once (the heat-map term alone), every
    run started from it with the extra term in its setting, oracle rows labelled as such, retrieval fed the control's
    own keypoints, files under the track's tag."""
    out, data = tmp_path / "figs", tmp_path / "data"
    kw = dict(data_root=str(data), out_dir=str(out), runs_dir=str(tmp_path / "runs"), n_train=12, n_test=6, max_steps=2,
              batch_size=4, settings="both+none,kpr3d+none", seeds="0,1", curve_every=2, curve_settings="kpr3d+none",
              parallel=2, dpi=40, input="rgb_heatmaps", extra_terms="hm", init_steps=2, tag="rgb_cpu")
    run("35_evidence.ipynb", tmp_path, **kw)
    pre = Checkpoint.load(tmp_path / "runs" / "pretrain_2d" / "hm+none")
    assert pre.step == 2 and pre.config["losses"] == "hm" and pre.config["input"] == "rgb_heatmaps"
    for t in ("heldout", "inactivity"):
        rows = _table(out / f"rgb_cpu_{t}.csv")
        labels = {r["setting"]: r["label"] for r in rows}
        assert "2D heat maps (auxiliary)" in labels["kpr3d+none"]
        assert labels["baseline:nearest_2d"].startswith("oracle") and "no test-time truth" in labels["baseline:nearest_2d_predicted"]
        side = _sidecar(out / f"rgb_cpu_{t}.csv")
        assert side["input"] == "rgb_heatmaps" and side["run_names"]["kpr3d+none"] == "kpr3d+hm+none"
        assert side["train_configs"]["both+none"]["init_from"].endswith("hm+none") and side["pretrain_2d"]["max_steps"] == 2
        head = side["head_2d_px_heldout"]
        assert {"mean training keypoint (no test-time truth)", "2D stage (2 steps)", "kpr3d+hm+none, seed 0"} <= set(head)
        assert all(0 < e < 64 for e in head.values()), head
        run_ck = Checkpoint.load(tmp_path / "runs" / "seed1" / "kpr3d+hm+none")
        assert "init_from" in run_ck["weights"] and pre["digest"][:12] in run_ck["weights"]
    assert (out / "rgb_cpu_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_lspet_recipe_smoke(tmp_path):
    """The LSPe study end to end on a stick-figure LSPe layout: the 2D stage once, each setting × seed from it, the held-out
    tail scored beside no-truth and oracle rows (labelled), Holm claims, curves, overlays and a photograph; reruns reuse."""
    from hybrid_pose.fixtures import write_fake_layout
    out, data = tmp_path / "figs", tmp_path / "data"
    write_fake_layout(data, lsp=(), lspet=tuple(range(1, 9)) + (9997, 9998, 9999, 10000))
    kw = dict(data_root=str(data), out_dir=str(out), runs_dir=str(tmp_path / "runs"), lspet_val=4, init_steps=2, max_steps=2,
              seeds="0,1", batch_size=4, curve_every=1, n_overlay=4, dpi=40)
    run("41_lspet_recipe.ipynb", tmp_path, **kw)
    rows = _table(out / "lspet_recipe.csv")
    labels = {r["setting"]: r["label"] for r in rows}
    assert [r["setting"] for r in rows][:2] == ["kpr+none", "kpr+fixedcritic"]
    assert "2D heat maps (auxiliary)" in labels["kpr+fixedcritic"] and "fixed critic" in labels["kpr+fixedcritic"]
    for name in ("nearest_2d", "tpose", "mean_pose"): assert labels[f"baseline:{name}"].startswith("oracle"), labels
    for name in ("nearest_2d_predicted", "mean_pose_fixed_camera", "tpose_fixed_camera", "mean_keypoints"):
        assert "no test-time truth" in labels[f"baseline:{name}"], labels
    assert all(0 <= float(r["PCK@0.2_mean"]) <= 1 for r in rows)
    side = _sidecar(out / "lspet_recipe.csv")
    assert side["seeds"] == [0, 1] and side["run_names"]["kpr+fixedcritic"] == "kpr+hm+fixedcritic"
    assert side["train_configs"]["kpr+none"]["init_from"].endswith("hm+none") and side["pretrain_2d"]["losses"] == "hm"
    claims = _table(out / "lspet_recipe_claims.csv")
    assert len(claims) == 2 * 4 + 3 and all((c["significant"] == "True") == (float(c["p_holm"]) <= 0.05) for c in claims)
    for f in ("curves", "overlays", "photograph"): assert (out / f"lspet_recipe_{f}.png").read_bytes()[:4] == b"\x89PNG"
    assert "lspet" in _sidecar(out / "lspet_recipe_photograph.png")["trained_on"]
    ck = tmp_path / "runs" / "seed1" / "kpr+hm+fixedcritic" / "checkpoint.pt"
    t0 = ck.stat().st_mtime
    run("41_lspet_recipe.ipynb", tmp_path, **kw)                               # a rerun reuses every run
    assert ck.stat().st_mtime == t0
