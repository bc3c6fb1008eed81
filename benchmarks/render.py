#!/usr/bin/env python
"""Renderer speed on the open body model: hard rasterization (z-buffer), hard silhouette, soft silhouette forward and
forward+backward, per batch size, on CPU and, if present, CUDA.

    python benchmarks/render.py [--batch 8 32] [--size 224] [--sigma 0.5 1.0] [--repeat 7] [--threads N] [--device cpu cuda]

Prints a Markdown table (medians, and the best, of `--repeat` runs after a warm-up) and whether the goals are met:
hard rasterization <= 20 ms per image, soft silhouette forward+backward <= 100 ms per image (2-core CPU).
Copy the table into benchmarks/README.md with the machine it ran on.
"""
import argparse, math, os, platform, sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timeit  # noqa: E402
from hybrid_pose.body import example_poses, load_body_model  # noqa: E402
from hybrid_pose.render import rasterize, silhouette, soft_silhouette, to_screen  # noqa: E402

GOALS = {"rasterize": 20.0, "soft fwd+bwd": 100.0}  # ms per image on the 2-core CPU


def scene(body, B, size, device, seed=0):
    "B upright bodies: the example poses, jittered, seen by a weak-perspective camera that fits them in the crop."
    g = torch.Generator().manual_seed(seed)
    base = torch.stack(list(example_poses().values()))
    pose = base[torch.arange(B) % len(base)] + 0.1 * torch.randn(B, 72, generator=g)
    pose[:, :3] = torch.tensor([math.pi, 0.0, 0.0])
    betas = 0.5 * torch.randn(B, 10, generator=g)
    cam = torch.tensor([0.9, 0.0, 0.0]) + torch.tensor([0.05, 0.05, 0.05]) * torch.randn(B, 3, generator=g)
    with torch.no_grad():
        verts = body(pose, betas).vertices
    return to_screen(verts, cam, size).to(device)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--sigma", type=float, nargs="+", default=[0.5, 1.0], help="soft silhouette σ in pixels (0.5 is the default)")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", nargs="+", default=None, help="default: cpu, and cuda when available")
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    body = load_body_model("open")
    devices = a.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# open body model: {body.num_vertices} vertices, {len(body.faces)} faces; {a.size}x{a.size}; float32")
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, load average {load:.2f} at start"
          + (f", GPU {torch.cuda.get_device_name(0)}" if "cuda" in devices else ""))
    print("| device | B | operation | ms per batch | ms per image | best ms per image | images/s |\n|---|---|---|---|---|---|---|")
    verdicts = []
    for dev in devices:
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        faces = body.faces.to(dev)
        for B in a.batch:
            vs = scene(body, B, a.size, dev)
            def row(name, fn):
                ms, best = timeit(fn, a.repeat, sync)
                print(f"| {dev} | {B} | {name} | {ms:.1f} | {ms / B:.2f} | {best / B:.2f} | {1000 * B / ms:.0f} |", flush=True)
                return ms / B
            with torch.no_grad():
                r = row("rasterize (z-buffer, bary, depth)", lambda: rasterize(vs, faces, a.size))
                row("silhouette (hard)", lambda: silhouette(vs, faces, a.size))
            verdicts.append((dev, B, "rasterize", r))
            for s in a.sigma:
                for cull in (False, True):
                    tag = f"σ={s:g}" + (", cull_backfaces" if cull else "")
                    with torch.no_grad():
                        row(f"soft silhouette fwd ({tag})", lambda: soft_silhouette(vs, faces, a.size, sigma=s, cull_backfaces=cull))
                    x = vs.clone().requires_grad_()
                    def fwdbwd():
                        soft_silhouette(x, faces, a.size, sigma=s, cull_backfaces=cull).sum().backward()
                        x.grad = None
                    verdicts.append((dev, B, f"soft fwd+bwd ({tag})", row(f"soft silhouette fwd+bwd ({tag})", fwdbwd)))
    print()
    for dev, B, name, ms in verdicts:
        if dev != "cpu": continue
        goal = GOALS["rasterize" if name == "rasterize" else "soft fwd+bwd"]
        print(f"- cpu B={B} {name}: {ms:.1f} ms/image vs goal <= {goal:g}: {'met' if ms <= goal else f'NOT met ({ms / goal:.1f}x)'}")


if __name__ == "__main__":
    main()
