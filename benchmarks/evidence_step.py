#!/usr/bin/env python
"""The perception-free step with and without its two savings, A/B in one process, interleaved round by round.

    python benchmarks/evidence_step.py [--people 96] [--rounds 5] [--repeat 5] [--settings kpr3d+none,kpr+none,both+none]

- loading: one batch of 32 from the training set in the main process (what `num_workers=0` pays each step), with the
  photograph and the part masks decoded (`PoseDataset(pixels=True, parts=True)`, as before), the part masks only
  (`pixels=False`, an input that reads no pixels, `InputMode.photographs` False), or neither (`parts=False` as well,
  what the trainer builds when no term or input reads the part masks);
- step: `Trainer.train_step` posing the whole 13,718-vertex mesh (`joints_layer=None`, as before) or only the joints
  (`body.LSPJointsLayer`, what the trainer does when no term reads the mesh; MR settings pose the mesh either way).
Synthetic people (the open body model), the evidence input at 64 px, batch 32, one thread; medians of the rounds.
"""
import argparse, datetime, os, platform, statistics, sys, tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timeit  # noqa: E402
from hybrid_pose.synthetic import generate_synthetic  # noqa: E402
from hybrid_pose.data import PoseDataset, collate_skip_none  # noqa: E402
from hybrid_pose.train import TrainConfig, Trainer, setting_fields  # noqa: E402


def loading_ms(root: Path, rounds: int, repeat: int, batch: int = 32) -> dict:
    "Median ms to make one training batch: (pixels, parts) decoded -> ms, the arms interleaved round by round."
    arms = ((True, True), (False, True), (False, False))
    ds = {a: PoseDataset(root, "synthetic", "train", size=64, pixels=a[0], parts=a[1], seed=0) for a in arms}
    n = len(ds[arms[0]])
    k = iter(range(10 ** 9))
    def load(a):
        i = next(k)
        return collate_skip_none([ds[a][((i * batch + j) % n, i)] for j in range(batch)])
    out = {a: [] for a in arms}
    for _ in range(rounds):
        for a in arms: out[a].append(timeit(lambda: load(a), repeat, lambda: None, warmup=1))
    return {a: statistics.median(v) for a, v in out.items()}


def step_ms(root: Path, setting: str, rounds: int, repeat: int, out: Path) -> tuple:
    "Median ms of `train_step` posing the whole mesh / only the joints (the same batch, interleaved rounds)."
    cfg = TrainConfig(**(setting_fields(setting) | dict(
        data_root=str(root), dataset="synthetic", body_model="open", input="evidence", input_px=64, img_size=64,
        batch_size=32, gen_lr=1e-3, num_workers=0, max_steps=10_000, log_every=10_000, ckpt_every=0, val_every=-1,
        progress=False, tensorboard=False, resume=False, threads=1, pose_source="natural_train", out_dir=str(out))))
    tr = Trainer(cfg)
    batch = next(iter(tr._loader()))
    layer = tr.joints_layer                       # None when a term reads the mesh (MR): both arms pose the mesh
    def step(joints_only):
        tr.joints_layer = layer if joints_only else None
        tr.train_step(batch)
    res = {False: [], True: []}
    for _ in range(rounds):
        for j in (False, True): res[j].append(timeit(lambda: step(j), repeat, lambda: None))
    tr.joints_layer = layer
    return statistics.median(res[False]), statistics.median(res[True]), layer is not None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--settings", default="kpr3d+none,kpr+none,both+none")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.machine()} CPU ({os.cpu_count()} cores), torch {torch.__version__}, 1 thread, {datetime.date.today()}, "
          f"load average {os.getloadavg()[0]:.1f}; {a.rounds} interleaved rounds × {a.repeat} calls, medians\n")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        generate_synthetic(root / "synthetic", n=a.people, seed=0, progress=False)
        ms = loading_ms(root, a.rounds, a.repeat)
        old, mid, new = ms[True, True], ms[False, True], ms[False, False]
        print("| part | before, ms | now, ms | speed-up |\n|---|---|---|---|")
        print(f"| loading a batch of 32 (photograph decoded → not; part masks decoded both) | {old:.0f} | {mid:.0f} | {old / mid:.2f}× |")
        print(f"| loading a batch of 32 (part masks decoded → not; no photograph both) | {mid:.0f} | {new:.0f} | {mid / new:.2f}× |")
        print(f"| loading a batch of 32 (both decoded → neither) | {old:.0f} | {new:.0f} | {old / new:.2f}× |")
        for s in [x.strip() for x in a.settings.split(",") if x.strip()]:
            full, joints, used = step_ms(root, s, a.rounds, a.repeat, root / f"run_{s}")
            what = "whole mesh → joints only" if used else "whole mesh both (MR reads it)"
            print(f"| `train_step`, {s} ({what}) | {full:.0f} | {joints:.0f} | {full / joints:.2f}× |")
            print(f"| step + loading, {s} | {full + old:.0f} | {joints + new:.0f} | {(full + old) / (joints + new):.2f}× |")


if __name__ == "__main__":
    main()
