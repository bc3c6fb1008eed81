#!/usr/bin/env python
"""How far does 2D -> 3D go on the perception-free track's people? A lifting network given the exact 2D keypoints.

    python benchmarks/lifting_ceiling.py [--data nbs/data/evidence] [--seeds 0,1,2] [--steps 6000] [--batch 256]

The perception-free networks read the true 2D evidence; what they must learn is the 2D -> 3D mapping. This script
measures how good that mapping can get on the same people with far more updates than the study's runs: a 3D-supervised
lifting MLP (Martinez et al., "A simple yet effective baseline for 3d human pose estimation", ICCV 2017: a linear
layer, two residual blocks of width 1024 with batch norm, ReLU and dropout 0.5, a linear layer out) reading the 14
visible keypoints' coordinates (crop units, hidden joints zeroed, a visibility flag each) and predicting the 14
pelvis-centred LSP joints directly (no body model), trained with the mean joint distance on the training people (half
of each batch mirrored left-right, as the networks' training crops are flipped) and
scored on both test sets with the project's PA-MPJPE (`evaluate.pa_mpjpe`). It is a reference for the 3D-supervised
control (`kpr3d`), not a setting of the study: it reads the keypoints as numbers, not maps, has no silhouette, and
predicts joints, not SMPL. Trivial predictor on the same data: the mean of the training people's pelvis-centred
joints. Seeds give a Student-t interval; the lifter's difference to the mean joints is paired over seeds × people
(`stats.compare`). Writes figures/evidence_lifting_ceiling.{csv,md} with its provenance sidecar.
"""
import argparse, os, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import torch
from torch import nn

from hybrid_pose.base import UsageError, check_writable, one_line
from hybrid_pose.evaluate import pa_mpjpe
from hybrid_pose.losses import root_center
from hybrid_pose.stats import mean_ci, compare
from hybrid_pose.viz import save_table

def fail(msg: str):
    "One line on stderr and exit 2 (bad input)."
    print(f"lifting_ceiling: {msg}", file=sys.stderr); sys.exit(2)


TESTS = {"heldout": "held-out activities (main)", "inactivity": "training activities, other people (in-distribution)"}


def load_people(folder: Path) -> tuple:
    "(N,42) inputs: x, y in crop units (0 where hidden) and visibility; (N,14,3) pelvis-centred joints, metres."
    f = folder / "truth.npz"
    if not f.is_file():
        fail(f"{f} does not exist; make the perception-free people first "
                 "(papermill nbs/35_evidence.ipynb, or its people cell), or pass --data")
    d = np.load(f)
    ok = d["valid"]
    kp = (d["joints2d"] - d["center"][:, None]) / (d["box_size"][:, None, None] / 2)
    vis = d["visible"].astype(np.float64)
    x = np.concatenate([kp * vis[..., None], vis[..., None]], -1).reshape(len(kp), -1)[ok]
    y = torch.as_tensor(d["joints3d"][ok], dtype=torch.float32)
    return torch.as_tensor(x, dtype=torch.float32), root_center(y)


class Block(nn.Module):
    def __init__(self, w: int, p: float):
        super().__init__()
        self.f = nn.Sequential(*[m for _ in range(2) for m in (nn.Linear(w, w), nn.BatchNorm1d(w), nn.ReLU(), nn.Dropout(p))])
    def forward(self, x): return x + self.f(x)


def lifter(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(42, width), nn.BatchNorm1d(width), nn.ReLU(), Block(width, 0.5), Block(width, 0.5),
                         nn.Linear(width, 42))


FLIP = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13]   # LSP-14: each joint's mirror (right <-> left)


def mirror(x: torch.Tensor, y: torch.Tensor, on: torch.Tensor) -> tuple:
    "The people where `on` (B,) mirrored left-right: x -> -x in the crop and in the camera frame, left and right swapped."
    xm, ym = x.view(-1, 14, 3)[:, FLIP].clone(), y[:, FLIP].clone()
    xm[..., 0] *= -1; ym[..., 0] *= -1
    return torch.where(on[:, None], xm.view(-1, 42), x), torch.where(on[:, None, None], ym, y)


def train_one(seed: int, x: torch.Tensor, y: torch.Tensor, a) -> tuple:
    "A lifter trained with Adam, a cosine schedule and left-right mirroring (as the networks' crops); (network, seconds)."
    torch.manual_seed(seed)
    net = lifter(a.width)
    opt = torch.optim.Adam(net.parameters(), a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        i = torch.randint(len(x), (a.batch,), generator=g)
        xb, yb = mirror(x[i], y[i], torch.rand(a.batch, generator=g) < 0.5)
        loss = (net(xb).view(-1, 14, 3) - yb).norm(dim=-1).mean()
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    return net.eval(), time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT / "data" / "evidence"), help="holds synthetic/, heldout/, inactivity/")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", default=str(ROOT / "figures" / "evidence_lifting_ceiling.csv"))
    a = p.parse_args()
    try: seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError: fail(f"--seeds must be integers joined by commas; got {a.seeds!r}")
    if not seeds or a.steps < 1 or a.batch < 2 or a.width < 1:
        fail("expected at least one seed, --steps >= 1, --batch >= 2, --width >= 1")
    out = Path(a.out)
    try: check_writable(out, "--out", is_file=True)                     # before any training
    except UsageError as e: fail(one_line(e))
    torch.set_num_threads(1)
    started = time.time()
    data = Path(a.data)
    x, y = load_people(data / "synthetic")
    tests = {t: load_people(data / t) for t in TESTS}
    mean_joints = y.mean(0, keepdim=True)                                   # (1,14,3) the trivial predictor
    per = {t: [] for t in TESTS}; train_err, secs = [], []
    for s in seeds:
        net, sec = train_one(s, x, y, a)
        secs.append(sec)
        with torch.no_grad():
            for t, (xt, yt) in tests.items(): per[t].append(pa_mpjpe(net(xt).view(-1, 14, 3), yt).double().numpy() * 1000)
            train_err.append(float(pa_mpjpe(net(x[:2000]).view(-1, 14, 3), y[:2000]).mean()) * 1000)
        print(f"seed {s}: {sec:.0f} s, " + ", ".join(f"{t} {per[t][-1].mean():.1f} mm" for t in TESTS)
              + f", training people {train_err[-1]:.1f} mm", flush=True)
    rows = []
    for t, title in TESTS.items():
        xt, yt = tests[t]
        base = pa_mpjpe(mean_joints.expand(len(yt), -1, -1), yt).double().numpy() * 1000
        iv = mean_ci([v.mean() for v in per[t]])
        diff, sentence = compare(np.stack(per[t]), base, names=("lifter", "mean training joints"), unit="mm")
        rows += [dict(test_set=title, row=f"lifting MLP on the true 2D keypoints (3D-supervised; {a.steps} steps of {a.batch})",
                      people=len(yt), PA_MPJPE_mm=iv.mean, ci_lo=iv.lo, ci_hi=iv.hi, seeds=len(seeds), versus_trivial=sentence),
                 dict(test_set=title, row="trivial: mean training joints (no input)", people=len(yt), PA_MPJPE_mm=float(base.mean()),
                      ci_lo=float("nan"), ci_hi=float("nan"), seeds=0, versus_trivial="")]
    tr = mean_ci(train_err)
    caption = (f"PA-MPJPE, mm, on the perception-free track's people ({len(y)} training people; test sets of "
               f"{', '.join(str(len(v[1])) for v in tests.values())}); seeds {seeds}, Student-t 95 % intervals over seeds; "
               f"the comparison is paired over seeds × people (`stats.compare`, one sentence per test set, no family). On "
               f"2,000 of its own training people the lifter scores {tr.mean:.1f} mm [{tr.lo:.1f}, {tr.hi:.1f}]. "
               f"One thread: {np.mean(secs):.0f} s per seed. The input is what the perception-free networks see as heat maps, "
               "given as numbers; it is a reference for the 3D-supervised control, not a setting of the study.")
    save_table(rows, out, vars(a) | dict(seeds=seeds), data=[data / f / "truth.npz" for f in ("synthetic", *TESTS)],
               started=started, caption=caption, train_people_pa_mpjpe_mm=train_err, seconds_per_seed=secs)
    print(Path(out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
