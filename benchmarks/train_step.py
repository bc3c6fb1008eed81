#!/usr/bin/env python
"""Where the time of one training step goes: data, backbone + regressor, body model, losses, prior, optimiser.

    python benchmarks/train_step.py [--batch 8] [--repeat 3] [--rounds 5] [--threads N] [--device cpu|cuda] [--amp]
                                    [--backbone resnet50] [--setting both+critic]

Each part is timed on its own, forward + backward, on the tensors a real `Trainer.train_step` makes (synthetic
people, the open body model), and the whole `train_step` is timed too, in the same process:
- data: one batch from the trainer's DataLoader (in the main process, so this is the cost a worker must hide);
- backbone + regressor: images -> Θ of all IEF iterations, backward from a sum over the last Θ;
- body: Θ (a leaf) -> decode (body model + projections), backward;
- losses: KPR + MR on the projected joints/vertices (leaves), backward;
- prior: the generator's adversarial term (critic on the last Θ's poses, backward) + the critic update (fakes of all
  iterations through the LSP-only body layer, 24 real poses, WGAN-GP, backward, Adam);
- optimiser: the generator's Adam step.
The goal (issue 6): everything beyond backbone + regressor ≤ 15 % of the step. Prints a Markdown table, and the
step's host syncs by module (`count_host_syncs`).

    python benchmarks/train_step.py --ab OTHER_CHECKOUT [--deterministic] [--rounds 3] [--repeat 3]

times `Trainer.train_step` (ResNet-50, both+critic) of another checkout against this one, in fresh processes,
interleaved round by round (`compare`, `time_steps`: functions other benchmarks can call).
"""
import argparse, datetime, os, platform, statistics, sys, tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timeit  # noqa: E402
from hybrid_pose.synthetic import generate_synthetic  # noqa: E402
from hybrid_pose.train import TrainConfig, Trainer  # noqa: E402
from hybrid_pose.model import decode  # noqa: E402
from hybrid_pose.losses import keypoint_reprojection_loss, mesh_reprojection_loss  # noqa: E402
from hybrid_pose.critic import CriticInput  # noqa: E402


STEP_SNIPPET = """
import json, sys, tempfile, time, statistics, torch
from pathlib import Path
from hybrid_pose.synthetic import generate_synthetic
from hybrid_pose.train import TrainConfig, Trainer
root, batch, backbone, repeat, extra = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
if not (root / "synthetic" / "joints.mat").exists(): generate_synthetic(root / "synthetic", n=max(16, batch), seed=0, progress=False)
cfg = TrainConfig(data_root=str(root), dataset="synthetic", body_model="open", backbone=backbone, pretrained="no",
                  batch_size=batch, num_workers=0, out_dir=str(Path(tempfile.mkdtemp()) / "run"), resume=False, progress=False,
                  tensorboard=False, val_every=-1, log_every=10, **extra)
tr = Trainer(cfg); b = next(iter(tr._loader()))
for _ in range(2): tr.train_step(b); tr.step += 1
ts = []
for _ in range(repeat):
    t = time.perf_counter(); tr.train_step(b); tr.step += 1; ts.append(time.perf_counter() - t)
print(statistics.median(ts) * 1000)
"""


def time_steps(tree, data_root, batch=8, backbone="resnet50", repeat=3, threads=None, extra=None):
    "Median ms of `Trainer.train_step` (both+critic, CPU; `extra`: more TrainConfig fields) with the package of the checkout `tree`, in a fresh process."
    import json, subprocess
    env = dict(os.environ, PYTHONPATH=str(tree))
    if threads: env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, "-c", STEP_SNIPPET, str(data_root), str(batch), backbone, str(repeat), json.dumps(extra or {})],
                       env=env, capture_output=True, text=True, cwd=str(tree), check=True)
    return float(r.stdout.strip().splitlines()[-1])


def count_host_syncs(tr, batch, gpu_search=True):
    """Host syncs of one `tr.train_step(batch)` by module (`hybrid_pose.train.HostSyncCounter`), after one warm-up step;
    `gpu_search`: count with the MR search a GPU runs ("batched") also on the CPU."""
    import dataclasses
    from hybrid_pose.train import HostSyncCounter
    objective = tr.objective
    if gpu_search: tr.objective = dataclasses.replace(objective, mr_backend="batched")
    try:
        tr.train_step(batch)
        with HostSyncCounter() as c: tr.train_step(batch)
    finally: tr.objective = objective
    return c.counts()


def compare(trees, data_root, rounds=3, variants=None, **kw):
    """Interleave `time_steps` over the checkouts `trees` (and config `variants`, name -> extra fields) for `rounds`
    rounds: {label: [ms of each round]} (A/B on a shared machine)."""
    variants = variants or {"": {}}
    out = {f"{t}{' ' + n if n else ''}": [] for t in trees for n in variants}
    for _ in range(rounds):
        for t in trees:
            for n, extra in variants.items(): out[f"{t}{' ' + n if n else ''}"].append(time_steps(t, data_root, extra=extra, **kw))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3, help="timed calls per part and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all parts (medians of round medians)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--setting", default="both+critic", help="losses+prior, e.g. kpr+none, both+hmr")
    p.add_argument("--data", default=None, help="a data_root with synthetic/ (default: 16 images made in a temp dir)")
    p.add_argument("--ab", default=None, help="another checkout: time its train_step against this one's, interleaved")
    p.add_argument("--deterministic", action="store_true", help="with --ab: also time this checkout with deterministic=True")
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    root = Path(a.data) if a.data else Path(tempfile.mkdtemp())
    if a.ab:
        here = Path(__file__).resolve().parents[1]
        res = compare([Path(a.ab).resolve(), here], root, rounds=a.rounds, batch=a.batch, backbone=a.backbone,
                      repeat=a.repeat, threads=a.threads)
        if a.deterministic:
            res |= compare([here], root, rounds=a.rounds, batch=a.batch, backbone=a.backbone, repeat=a.repeat,
                           threads=a.threads, variants={"deterministic": {"deterministic": True}})
        print("| checkout | ms per step, each round | median |\n|---|---|---|")
        for t, v in res.items(): print(f"| {t} | {', '.join(f'{x:.0f}' for x in v)} | {statistics.median(v):.0f} |")
        return
    if not (root / "synthetic" / "joints.mat").exists():
        generate_synthetic(root / "synthetic", n=max(16, a.batch), seed=0, progress=False)
    losses, prior = a.setting.split("+")
    cfg = TrainConfig(data_root=str(root), dataset="synthetic", body_model="open", backbone=a.backbone, pretrained="no",
                      batch_size=a.batch, num_workers=0, losses=losses, prior=prior, device=a.device, amp=a.amp,
                      out_dir=str(root / "bench_run"), resume=False, progress=False, tensorboard=False, val_every=-1)
    tr = Trainer(cfg)
    dev = tr.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    it = iter(tr._loader())
    batch = next(it)

    def data():
        nonlocal it
        try: next(it)
        except StopIteration:
            it = iter(tr._loader()); next(it)
    images = batch["image"].to(dev)
    if dev.type == "cuda" and cfg.channels_last: images = images.contiguous(memory_format=torch.channels_last)

    def backbone():
        tr.net.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=tr.amp_dtype, enabled=tr.amp):
            th = tr.net(images)
        th[-1].float().sum().backward()

    with torch.no_grad(): theta = tr.net(images)[-1].float()

    def body():
        t = theta.detach().requires_grad_()
        d = decode(t, tr.body, cfg.img_size)
        (d.keypoints.sum() + d.vertices_px.sum() + d.body.lsp_joints.sum()).backward()

    d0 = decode(theta, tr.body, cfg.img_size)
    gt, masks = batch["keypoints"].to(dev), batch["mask"].to(dev)

    def loss_terms():
        kp, vp = d0.keypoints.detach().requires_grad_(), d0.vertices_px.detach().requires_grad_()
        l = keypoint_reprojection_loss(kp, gt, cfg.kpr_weight) + mesh_reprojection_loss(vp, masks, cfg.mr_reduction)
        l.backward()

    def prior_update_only():
        if tr.prior is None: return
        fake = tr._fakes([theta, theta, theta], d0)
        from hybrid_pose.train import real_poses
        pose, betas = real_poses(cfg.pose_source, len(fake), 0, cfg.seed, 0, {})
        with torch.no_grad(): real = tr.critic_layer(pose.to(dev), betas.to(dev))
        tr.prior.update(real, fake)

    def prior_gen_term():
        if tr.prior is None: return
        j = d0.body.lsp_joints.detach().requires_grad_()
        tr.prior.generator_loss(CriticInput(j, d0.betas.detach(), d0.body.rotmats[:, 1:].detach())).backward()

    def fake_decode():   # the two early IEF iterations through the LSP-only body layer (part of the critic update)
        if tr.prior is None: return
        with torch.no_grad(): tr._fakes([theta, theta, theta], d0)

    backbone()           # gradients exist for the optimiser step

    def optimiser():
        tr.opt_g.step()

    def full():
        tr.train_step(batch)

    parts = [("data (one batch, main process)", data), ("backbone + regressor (fwd+bwd)", backbone),
             ("body model + projection (fwd+bwd)", body), ("losses KPR + MR (fwd+bwd)", loss_terms),
             ("prior: generator term (fwd+bwd)", prior_gen_term), ("prior: critic update (fakes, GP, Adam)", prior_update_only),
             ("optimiser (Adam, generator)", optimiser), ("step", full)]
    syncs = count_host_syncs(tr, batch, gpu_search=dev.type == "cpu")
    times = {n: [] for n, _ in parts}
    for r in range(a.rounds):               # interleaved rounds: a shared machine's load hits every part alike
        for n, fn in parts: times[n].append(timeit(fn, a.repeat, sync, warmup=1 if r else 2))
    med = {n: statistics.median(v) for n, v in times.items()}
    rows = [(n, med[n]) for n, _ in parts[:-1]]
    step_ms = med["step"]
    bb = rows[1][1]
    beyond = sum(r[1] for r in rows[2:])
    print(f"## Training step split (`python benchmarks/train_step.py {' '.join(sys.argv[1:])}`)\n")
    dname = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{os.cpu_count()}-core {platform.machine()} CPU"
    print(f"{dname}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), {datetime.date.today()}, "
          f"{a.backbone}, batch {a.batch}, setting {a.setting}, AMP {tr.amp}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| part | ms | share of the step |\n|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {100 * ms / step_ms:.1f} % |")
    print(f"| **whole `train_step`** (data excluded) | **{step_ms:.1f}** | 100 % |")
    print(f"\nBeyond backbone + regressor: parts {beyond:.1f} ms = **{100 * beyond / step_ms:.1f} %** of the step "
          f"(step − backbone: {100 * (step_ms - bb) / step_ms:.1f} %); goal ≤ 15 %. "
          f"Throughput {1000 * a.batch / step_ms:.1f} images/s (data loading hidden by workers).")
    print(f"\nHost syncs of one step, by module (`HostSyncCounter`; `body`/`poses` outside the budget of 5): {syncs}")


if __name__ == "__main__":
    main()
