"""Smoke runs of nbs/25_real_pose_prior.ipynb (papermill, tiny sizes): on a stand-in pose file written from the natural
sampler (always: CI has no real data) and on HMR's real joint-limit MoSh shard (skipped when it is not on disk)."""
import csv
import json
from pathlib import Path

import numpy as np
import papermill as pm
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "nbs" / "25_real_pose_prior.ipynb"
SHARD = ROOT / "data" / "mosh" / "neutrSMPL_jointLim_018.tfrecords"
TINY = dict(n_people=6, steps=4, pretrain_steps=2, seeds=2, in_activity=False)


def run(tmp_path, **params):
    declared = pm.inspect_notebook(str(NB))
    missing = set(params) - set(declared)
    assert not missing, f"{NB.name} has no parameters {missing} (is its parameters cell tagged?)"
    pm.execute_notebook(str(NB), str(tmp_path / NB.name), kernel_name="python3", parameters=params, cwd=str(NB.parent),
                        progress_bar=False, execution_timeout=600)


def _table(path):
    with open(path) as fh: return list(csv.DictReader(fh))


def _check_outputs(out: Path, n_test_sets: int, seeds: int):
    rows = _table(out / "real_prior_study.csv")
    assert len(rows) == n_test_sets * 6                                       # no prior, L2, 3 critics, truth per test set
    crit = [r for r in rows if r["fit"].startswith("fixed critic")]
    assert {r["seeds"] for r in crit} == {str(seeds)} and all("±" in r["pa_mpjpe_mm"] for r in crit)
    assert all(r["Δ pa_mpjpe_mm"].count("[") == 1 for r in crit)              # paired to no prior
    truth = [r for r in rows if r["fit"] == "truth"]
    assert all(float(r["pa_mpjpe_mm"]) < 0.1 for r in truth)                  # scoring the truth against itself
    side = json.loads((out / "real_prior_study.csv.json").read_text())
    assert side["config"]["seeds"] == seeds and side["data"][0]["sha256"] and side["elapsed_s"] > 0
    claims = _table(out / "real_prior_claims.csv")
    assert len(claims) == 7 * n_test_sets
    for c in claims:                                                          # Holm-adjusted p never below the raw one
        assert c["sentence"].startswith("no significant difference") == (c["significant"] == "False")
    assert len(_table(out / "real_prior_2x2.csv")) == 3 and len(_table(out / "real_prior_goals.csv")) == 2 * (1 + 2 * (n_test_sets - 1))
    assert (out / "real_prior_study.png").read_bytes()[:4] == b"\x89PNG" and (out / "real_prior_study.png.json").exists()
    return rows, (out / "real_prior_study.md").read_text()


def test_stand_in_pose_file(tmp_path):
    "CI's run: 'real' poses from a pose file written from the library sampler, with headings the sampler must remove."
    from hybrid_pose.natural_poses import NaturalPoseSampler
    pose, betas = NaturalPoseSampler(root="upright").sample(40, torch.Generator().manual_seed(0))
    f = tmp_path / "stand_in.npz"
    np.savez(f, poses=pose.numpy(), betas=betas.numpy())
    out = tmp_path / "figs"
    run(tmp_path, pose_file=str(f), out_dir=str(out), **TINY)
    rows, md = _check_outputs(out, 2, TINY["seeds"])
    assert "stand-in: NOT real captured poses" in md and "20 | 20 poses" in md
    assert {r["test people"] for r in rows} == {"real held-out (2nd half)", "library held-out activities"}


def test_missing_pose_file(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="no pose file"):
        run(tmp_path, pose_file=str(tmp_path / "absent.npz"), out_dir=str(tmp_path / "figs"), **TINY)


@pytest.mark.skipif(not SHARD.is_file(), reason=f"the real MoSh shard is not on disk ({SHARD.relative_to(ROOT)}; "
                                                 "HMR's neutrSMPL_jointLim_018.tfrecords, git-ignored)")
def test_real_shard(tmp_path):
    out = tmp_path / "figs"
    run(tmp_path, data_root=str(ROOT / "data"), out_dir=str(out), **(TINY | dict(in_activity=True)))
    rows, md = _check_outputs(out, 3, TINY["seeds"])
    assert "HMR's joint-limit MoSh shard" in md and "not CMU" in md and "984 | 984 poses" in md
    real_truth = next(r for r in rows if r["fit"] == "truth" and r["test people"].startswith("real"))
    assert float(real_truth["calibrated_violations"]) < float(real_truth["violations"])   # real poses break the authored limits
