#!/usr/bin/env python
"""Cost of the pose prior per training step, relative to the ResNet-50 step it rides along with.

    python benchmarks/critic.py [--batch 8] [--repeat 20] [--rounds 5] [--threads N] [--device cpu|cuda]

One prior step = the prior's update (WGAN loss + gradient penalty, or HMR's LSGAN loss; backward; Adam step) on B real
and B fake poses, plus the backward of the generator's adversarial term into B fake poses. The authors' variant updates
on 3·B fakes (all IEF stages) against 3·B real poses. The reference is one ResNet-50 (torchvision, weights=None,
train mode) forward+backward on B 224×224 crops, timed in the same process. Prints a Markdown table; copy it into
benchmarks/README.md with the machine it ran on.
"""
import argparse, datetime, os, platform, statistics, sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timeit  # noqa: E402
from hybrid_pose.body import load_body_model  # noqa: E402
from hybrid_pose.critic import build_prior  # noqa: E402
from hybrid_pose.critic import CriticInput, CriticInputLayer  # noqa: E402
from hybrid_pose.poses import JointLimitSampler  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="images per step (the authors: 8)")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5, help="rounds of (one ResNet step, `repeat` steps of each case)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    B = a.batch
    body = load_body_model("open", device=dev)
    layer = CriticInputLayer(body)
    sampler = JointLimitSampler()
    g = torch.Generator().manual_seed(0)

    def inputs(n, grad=False):
        pose, betas = sampler.sample(n, g)
        with torch.no_grad(): x = layer(pose.to(dev), betas.to(dev))
        if grad: x = CriticInput(x.joints.requires_grad_(), x.betas.requires_grad_(), x.rotmats.requires_grad_())
        return x

    steps = {}
    cases = [("critic, per-sample GP (default)", "critic", "per_sample", 1), ("critic, authors' GP", "critic", "authors", 1),
             ("critic, per-sample GP, 3 IEF stages (3·B fakes)", "critic", "per_sample", 3),
             ("HMR discriminator (LSGAN)", "hmr", "per_sample", 1)]
    for name, kind, mode, stages in cases:
        prior = build_prior(kind, **({"gp_mode": mode} if kind == "critic" else {})).to(dev)
        real, fake, fake_g = inputs(stages * B), inputs(stages * B), inputs(B, grad=True)
        def step(prior=prior, real=real, fake=fake, fake_g=fake_g):
            prior.update(real, fake)
            prior.generator_loss(fake_g).backward()
        steps[name] = step
    pose, betas = sampler.sample(3 * B, g)
    pose, betas = pose.to(dev), betas.to(dev)
    def no_grad(f):
        def run():
            with torch.no_grad(): f(pose, betas)
        return run
    steps[f"real poses → critic inputs, {3 * B} poses (`CriticInputLayer`)"] = no_grad(layer)
    steps["the same through the full body model"] = no_grad(body)

    import torchvision
    net = torchvision.models.resnet50(weights=None).to(dev).train()
    img = torch.randn(B, 3, 224, 224, device=dev)
    def resnet_step():
        net.zero_grad(set_to_none=True); net(img).sum().backward()
    # Rounds of one ResNet step and `repeat` steps of each case, so that the ratios are taken under the same load
    # (shared machines); reported: medians over the rounds.
    resnet_step()
    res, per = [], {k: [] for k in steps}
    for _ in range(a.rounds):
        res.append(timeit(resnet_step, 1, sync, warmup=0))
        for k, f in steps.items(): per[k].append(timeit(f, a.repeat, sync))
    t_res = statistics.median(res)
    ratio = {k: statistics.median(t / r for t, r in zip(v, res)) for k, v in per.items()}

    cpu = platform.processor() or platform.machine()
    dname = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu}, {torch.get_num_threads()} CPU threads"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {datetime.date.today().isoformat()}, torch {torch.__version__}, {dname}, B = {B}, "
          f"{a.rounds} rounds, load average {load:.1f}")
    print("| step | ms (median) | relative to one ResNet-50 fwd+bwd step (median of per-round ratios) |\n|---|---|---|")
    print(f"| ResNet-50 forward+backward, {B}×3×224×224 (reference) | {t_res:.0f} | 1 |")
    for k, v in per.items():
        print(f"| {k} | {statistics.median(v):.2f} | {ratio[k]:.4f} (1/{1 / ratio[k]:.0f}) |")


if __name__ == "__main__":
    main()
