#!/usr/bin/env python
"""Scoring a study's runs: one after another over the loaders, against `experiments.score_many` over `ScoringSet`s.

    python benchmarks/scoring.py [--people 300] [--runs 6] [--parallel 2]

A study notebook scores every run (settings × seeds) on the same test sets. Before: each run's `evaluate` read every
test person from disk again (the crop, and the whole photo's labels for the image-frame scores), one run after another
in one thread. Now: each test set is read once into a `ScoringSet`, and `score_many` scores `parallel` runs side by
side in threads. Both arms score the same networks (copies of one perception-free network trained for a few steps, so
that the MR search sees a real body) on two test sets of synthetic people, and must give the same numbers.
Wall-clock seconds of each arm (reading the test sets included), one thread per arm's worker.
"""
import argparse, copy, datetime, json, math, os, platform, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hybrid_pose.synthetic import generate_synthetic  # noqa: E402
from hybrid_pose.data import PoseDataset, make_loader  # noqa: E402
from hybrid_pose.evaluate import evaluate  # noqa: E402
from hybrid_pose.experiments import ScoringSet, score_many  # noqa: E402
from hybrid_pose.train import TrainConfig, Trainer, setting_fields  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=300, help="people per test set")
    ap.add_argument("--runs", type=int, default=6, help="networks scored")
    ap.add_argument("--parallel", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.machine()} CPU ({os.cpu_count()} cores), torch {torch.__version__}, 1 thread per worker, "
          f"{datetime.date.today()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        generate_synthetic(root / "synthetic", n=a.people, seed=1, progress=False)
        (root / "synthetic" / "split.json").write_text(json.dumps({"train": list(range(1, a.people + 1)),
                                                                   "val": list(range(1, a.people + 1))}))
        cfg = TrainConfig(**(setting_fields("kpr3d+none") | dict(
            data_root=str(root), dataset="synthetic", body_model="open", input="evidence_xy", input_px=64, img_size=64,
            batch_size=32, num_workers=0, max_steps=40, log_every=1000, ckpt_every=0, val_every=-1, progress=False,
            tensorboard=False, resume=False, threads=1, pose_source="natural_train", out_dir=str(root / "run"))))
        tr = Trainer(cfg); tr.fit()
        nets = {i: copy.deepcopy(tr.net) for i in range(a.runs)}
        tests = ("heldout", "inactivity")                       # the study's two test sets (here the same people twice)
        loader = lambda: make_loader(PoseDataset(root, "synthetic", "val", augment=False, size=64), batch_size=32,
                                     shuffle=False, num_workers=0)
        t0 = time.perf_counter()
        loaders = {t: loader() for t in tests}
        before = {i: {t: evaluate(n, tr.body, loaders[t], device="cpu", progress=False) for t in tests} for i, n in nets.items()}
        t1 = time.perf_counter()
        now = score_many(nets, tr.body, {t: ScoringSet(loader()) for t in tests}, a.parallel, device="cpu")
        t2 = time.perf_counter()
    same = all(before[i][t].summary[k] == now[i][t].summary[k] or
               (isinstance(before[i][t].summary[k], float) and math.isnan(before[i][t].summary[k])
                and math.isnan(now[i][t].summary[k]))
               for i in nets for t in tests for k in before[i][t].summary)
    n = a.runs * len(tests)
    print(f"\n{a.runs} runs × {len(tests)} test sets of {a.people} people; the same numbers in both arms: {same}\n")
    print("| arm | s | s per run and test set | speed-up |\n|---|---|---|---|")
    print(f"| one after another, files read by every run | {t1 - t0:.1f} | {(t1 - t0) / n:.2f} | 1.00× |")
    print(f"| `score_many` ({a.parallel} side by side) over `ScoringSet`s | {t2 - t1:.1f} | {(t2 - t1) / n:.2f} | "
          f"{(t1 - t0) / (t2 - t1):.2f}× |")


if __name__ == "__main__":
    main()
