#!/usr/bin/env python
"""People made per second against samples trained per second, in the same conditions (one thread per process).

    python benchmarks/people_rate.py [--people 60] [--steps 30]

Answers "is making people the bottleneck?" for the two tracks: a process making synthetic people
(`hybrid-pose synth`: pose, body, render, background, JPEG/PNG writing) against a training process consuming them
(`Trainer.fit` with its loader in-process: reading, cropping, the step). Rows: the RGB `quick` profile (ResNet-18,
128 px, batch 8) and the perception-free track (evidence maps, 64 px, batch 32), each with KPR + MR. The ratio
made/consumed says how many generating processes one trainer needs to see only fresh people (≥ 2: making is not the
bottleneck); people made once are cached on disk and reused by every run (`synthetic:FOLDER`, `people.json`).
"""
import argparse, datetime, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def made_per_s(n: int, out: Path) -> float:
    "People per second of one `hybrid-pose synth` process (start-up included once; n people)."
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hybrid_pose.synthetic", "--n", str(n), "--out", str(out), "--poses", "natural_train",
                    "--no-progress"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return n / (time.perf_counter() - t0)


def consumed_per_s(root: Path, steps: int, **kw) -> tuple:
    "Samples per second of a training run over `root` (the first 5 steps are a warm-up), and seconds per step."
    import torch
    from hybrid_pose.train import TrainConfig, Trainer
    torch.set_num_threads(1)
    base = dict(data_root=str(root), dataset="synthetic", body_model="open", pretrained="no", num_workers=0, losses="both",
                prior="none", progress=False, tensorboard=False, val_every=-1, ckpt_every=0, log_every=1, resume=False)
    import statistics
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(TrainConfig(**(base | kw | dict(out_dir=d, max_steps=5 + steps))))
        tr.fit()
        sec = statistics.median(float(h["s_per_step"]) for h in tr.history if int(h["step"]) > 5)   # loading included
    return kw["batch_size"] / sec, sec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=60)
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        made = made_per_s(a.people, root / "synthetic")
        rows = [("RGB, quick profile (ResNet-18, 128 px, batch 8)", dict(input="rgb", backbone="resnet18", img_size=128, batch_size=8)),
                ("perception-free (evidence maps 64 px, batch 32)", dict(input="evidence", img_size=64, batch_size=32))]
        print(f"{platform.machine()} CPU ({os.cpu_count()} cores), torch {__import__('torch').__version__}, 1 thread per process, "
              f"{datetime.date.today()}, load average {os.getloadavg()[0]:.1f}\n")
        print(f"people made: {made:.1f}/s per process ({a.people} people, start-up included)\n")
        print("| track | samples/s trained | s/step | made/consumed |\n|---|---|---|---|")
        for name, kw in rows:
            sps, sec = consumed_per_s(root, a.steps, **kw)
            print(f"| {name} | {sps:.1f} | {sec:.3f} | {made / sps:.2f} |")


if __name__ == "__main__":
    main()
