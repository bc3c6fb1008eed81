"""One setting of two studies on the same people: a paired claims table (seeds × test people, Holm across the table).

    python tools/compare_studies.py nbs/_runs/35_evidence_xy nbs/_runs/35_evidence_long --setting kpr3d+none \
        --seeds 0,1,2,3,4 --data-root data/evidence --tests heldout,inactivity --out figures/evidence_xy_vs_evidence.csv

A and B are `runs_dir`s of `nbs/35_evidence.ipynb` (each run in RUNS_DIR/seed<N>/<setting>/checkpoint.pt) that differ
in one thing — the input mode, the step count, a recipe — and trained the same setting under the same seeds on the same
people (and the same body model). Every checkpoint is scored on the deterministic crops of each test set
(`synthetic:<test>` under the data root; each set read once, two checkpoints at a time: `experiments.score_many`)
and A is compared with B on PA-MPJPE, MPJPE, KPR and the distance to natural poses, paired over seeds and people
(`experiments.comparison`; `experiments.claims`: Holm's correction across every row, each row's minimum detectable
difference). Writes the table (CSV, Markdown, provenance sidecar with both studies' configs; the checkpoints are its data).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

KEYS = {"pa_mpjpe_mm": ("mm", 1), "mpjpe_mm": ("mm", 1), "kp_l2_px": ("px", 2), "natural_dist_deg": ("°", 1)}


def checkpoints(runs_dir: Path, setting: str, seeds: list) -> list:
    "The checkpoint of each seed's run, in seed order; a UsageError naming the first missing one."
    from hybrid_pose.base import UsageError
    out = []
    for s in seeds:
        f = runs_dir / f"seed{s}" / setting / "checkpoint.pt"
        if not f.is_file():
            raise UsageError(f"{f} does not exist; expected a finished run of {setting!r} under seed {s} in {runs_dir} "
                             "(train it with nbs/35_evidence.ipynb -p runs_dir ..., or pass --seeds/--setting that exist)")
        out.append(f)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="study A's runs_dir (the new one)")
    p.add_argument("b", help="study B's runs_dir (the reference)")
    p.add_argument("--setting", default="kpr3d+none", help="the setting compared (default: the control, kpr3d+none)")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--data-root", default="data/evidence", help="holds synthetic/<test>/ (default: data/evidence)")
    p.add_argument("--tests", default="heldout,inactivity", help="test folders under the data root")
    p.add_argument("--out", required=True, help="the table's CSV path (.md and .csv.json beside it)")
    a = p.parse_args(argv)
    from hybrid_pose.base import UsageError, check_writable, one_line
    from hybrid_pose.checkpoint import Checkpoint
    from hybrid_pose.data import PoseDataset, make_loader
    from hybrid_pose.experiments import comparison, claims, parse_seeds, ScoringSet, score_many
    from hybrid_pose.model import input_mode
    from hybrid_pose.viz import save_table
    t0 = time.time()
    try:
        try: seeds = parse_seeds(a.seeds)
        except ValueError: raise UsageError(f"--seeds {a.seeds!r}: expected distinct integers joined by commas, e.g. 0,1,2") from None
        out = Path(a.out)
        if out.suffix != ".csv": raise UsageError(f"--out {out}: expected a .csv path (the .md and .csv.json go beside it)")
        check_writable(out, "--out", is_file=True)                      # before any checkpoint is scored
        files = {k: checkpoints(Path(d), a.setting, seeds) for k, d in (("A", a.a), ("B", a.b))}
        cks = {k: [Checkpoint.load(f) for f in fs] for k, fs in files.items()}
        for i, s in enumerate(seeds):
            ca, cb = cks["A"][i].config, cks["B"][i].config
            for field in ("seed", "dataset", "img_size", "losses", "prior"):
                if ca.get(field) != cb.get(field):
                    raise UsageError(f"{files['A'][i]} and {files['B'][i]} differ in {field} ({ca.get(field)!r} vs "
                                     f"{cb.get(field)!r}); the two studies must train the same setting on the same people")
        bodies = {c.body_name for cs in cks.values() for c in cs}
        if len(bodies) > 1:
            raise UsageError(f"the checkpoints were trained with different body models ({', '.join(sorted(bodies))}); "
                             "compare runs of the same body model")
        tests = [t.strip() for t in a.tests.split(",") if t.strip()]
        sets = {t: PoseDataset(a.data_root, f"synthetic:{t}", "val", augment=False, size=cks["A"][0].image_size) for t in tests}
    except (UsageError, FileNotFoundError, ValueError) as e:
        print(f"compare_studies: error: {one_line(e)}", file=sys.stderr); return 2
    torch.set_num_threads(1)
    name = {k: f"{Path(d).name} ({c[0].step} steps)" for (k, c), d in zip(cks.items(), (a.a, a.b))}   # the sentences' words
    inputs = {k: f"{input_mode(c[0].config.get('input', 'rgb')).label}, {c[0].step} steps" for k, c in cks.items()}
    body = cks["A"][0].body_model()
    nets = {(k, i): c.network() for k, cs in cks.items() for i, c in enumerate(cs)}   # built once, scored on every test set
    loaders = {t: ScoringSet(make_loader(ds, batch_size=32, shuffle=False, num_workers=0)) for t, ds in sets.items()}
    scored = score_many(nets, body, loaders, parallel=2, device="cpu")             # two runs side by side, sets read once
    results = {(t, k): [scored[k, i][t] for i in range(len(seeds))] for t in tests for k in cks}
    comps = []
    for t in tests:
        for key, (unit, dg) in KEYS.items():
            c = comparison({k: results[t, k] for k in ("A", "B")}, "A", "B", key, unit=unit, digits=dg, label=name.get)
            comps.append(c | dict(test=t))
    said = claims(comps)
    rows = [dict(test=c["test"], metric=c["metric"], A_mean=float(np.nanmean(c["a"])),
                 B_mean=float(np.nanmean(c["b"])), **{k: r[k] for k in ("diff", "lo", "hi", "p_holm", "mdd", "significant",
                                                                                   "sentence")}) for c, r in zip(comps, said)]
    caption = (f"{a.setting}, seeds {seeds}; A = {a.a} (input: {inputs['A']}), B = {a.b} (input: {inputs['B']}). Paired over seeds × "
               f"the same people of each test set ({', '.join(f'{t}: {len(sets[t])}' for t in tests)}); 95 % intervals "
               f"(seed t interval and people bootstrap combined); Holm's correction across all {len(rows)} rows; MDD at 80 % power.")
    save_table(rows, out, vars(a) | dict(seeds=seeds), data=[f for fs in files.values() for f in fs], started=t0,
               md_columns=["test", "metric", "A_mean", "B_mean", "sentence"], caption=caption,
               configs={k: [c.config for c in cs] for k, cs in cks.items()})
    for r in rows: print(f"{r['test']:10s} {r['metric']:16s} A {r['A_mean']:7.2f}  B {r['B_mean']:7.2f}  {r['sentence']}")
    print(f"wrote {out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
