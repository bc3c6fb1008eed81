#!/usr/bin/env python
"""Mesh reprojection loss (MR) speed and memory: the exact fast search vs the brute force, and vs a ResNet-50 step.

    python benchmarks/losses.py [--batch 8] [--repeat 5] [--brute-repeat 1] [--threads N] [--device cpu|cuda]

Inputs: B person-shaped 224×224 masks (silhouettes of the open body model in random poses and shapes, rasterised
by `fixtures.rasterize_silhouette`, i.e. `render.silhouette`) and the open model's 13,718 vertices projected from
*other* random poses with a shifted camera (a mid-training misalignment). Every row times forward + backward of the
per-image sums S_b (the reduction is irrelevant to the cost), all in one process at one thread count; medians over
`--repeat` runs after a warm-up, or over `--brute-repeat` runs for the rows that take seconds per call:

- fast (exact searches): `mesh_reprojection_loss` with backend "scipy" (k-d trees, the CPU default), "batched" (the
  GPU default, shown on the CPU for reference) and "torch" (the former GPU search, image by image).
  `benchmarks/gpu.py` compares the GPU searches per image at B = 8 and 64.
- brute force: `mesh_reprojection_bruteforce`, the full |G|×V matrices with autograd through them. It runs (and
  back-propagates) one image at a time: a batched graph would hold all 8 images' matrices at once.
- authors' dense search: the same dense |G|×V matrix from the -2ab + |a|² + |b|² form as in their code, but without
  autograd through it, then gather + distances (how much of the speed-up comes from dropping autograd alone).
- ResNet-50: torchvision resnet50(weights=None), train mode, forward + backward of a B×3×224×224 batch.

Memory: the peak RSS growth during one forward+backward (Linux VmHWM after glibc's malloc_trim and a reset through
/proc/self/clear_refs), i.e. what the process really takes from the OS; on CUDA, torch's peak allocated memory.
The fast and brute-force results are also compared (values and gradients). Prints a Markdown table.
"""
import argparse, datetime, math, os, platform, re, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hybrid_pose.body import load_body_model  # noqa: E402
from hybrid_pose.camera import crop_to_pixels, project  # noqa: E402
from hybrid_pose.fixtures import rasterize_silhouette  # noqa: E402
from hybrid_pose.losses import mesh_reprojection_bruteforce, mesh_reprojection_terms  # noqa: E402


def make_inputs(B, seed=0):
    "Person masks (B,224,224) and misaligned projected vertices (B,V,2) of the open body model."
    body = load_body_model("open")
    g = torch.Generator().manual_seed(seed)
    root = torch.tensor([math.pi, 0., 0.])
    pose = 0.3 * torch.randn(B, 72, generator=g); pose[:, :3] = root
    pose[:, 16 * 3 + 2], pose[:, 17 * 3 + 2] = -1.1, 1.1         # arms roughly down (shoulders about z)
    betas = torch.randn(B, 10, generator=g)
    cam = torch.tensor([[0.9, 0., 0.]]) + 0.03 * torch.randn(B, 3, generator=g)
    with torch.no_grad():
        masks = rasterize_silhouette(crop_to_pixels(project(body(pose, betas).vertices, cam)), body.faces)
        pose2 = pose + 0.15 * torch.randn(B, 72, generator=g); pose2[:, :3] = root
        cam2 = cam + 0.03 * torch.randn(B, 3, generator=g)
        verts = crop_to_pixels(project(body(pose2, torch.zeros(B, 10)).vertices, cam2))
    return masks, verts


def _kib(key):
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _reset_peak(device):
    "Start a peak-memory window; returns the baseline."
    if device == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); return torch.cuda.memory_allocated()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)                     # hand cached free memory back to the OS first
        Path("/proc/self/clear_refs").write_text("5")              # resets VmHWM to the current RSS
        return _kib("VmRSS") * 1024
    except OSError:
        return None


def _peak_since(base, device):
    "Peak memory growth since `_reset_peak`, MB."
    if base is None: return float("nan")
    if device == "cuda": return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    return (_kib("VmHWM") * 1024 - base) / 2 ** 20


def measure(fn, repeat, warmup, sync, device):
    "Median time (ms) and largest peak-memory growth (MB) over `repeat` calls of `fn`, after `warmup` calls."
    for _ in range(warmup):
        fn(); sync()
    ts, mbs = [], []
    for _ in range(repeat):
        base = _reset_peak(device)
        t = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t)
        mbs.append(_peak_since(base, device))
    return statistics.median(ts) * 1000, max(mbs)


def authors_dense(v, masks):
    "Per image: dense -2ab+|a|²+|b|² matrix and argmins without autograd (as their TF code), then gathered distances."
    out = []
    for vb, m in zip(v, masks):
        g = m.nonzero().flip(-1).to(vb.dtype) + 0.5
        with torch.no_grad():
            D = (g * g).sum(1, keepdim=True) - 2 * g @ vb.T.detach() + (vb.detach() ** 2).sum(1)[None]
            i_g, i_v = D.argmin(0), D.argmin(1)
        out.append((vb - g[i_g]).norm(dim=-1).sum() + (g - vb[i_v]).abs().sum())
    return torch.stack(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--brute-repeat", type=int, default=1, help="runs of the slow rows (brute force, dense, CPU torch search)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    masks, verts = make_inputs(a.batch, a.seed)
    masks, verts = masks.to(dev), verts.to(dev)
    B, V = verts.shape[:2]
    x = verts.clone().requires_grad_()

    def fast(backend):
        def f():
            x.grad = None
            t = mesh_reprojection_terms(x, masks, backend=backend)
            (t.to_mask + t.to_vertices).sum().backward()
        return f

    def brute():
        x.grad = None
        for b in range(B):                                          # one image's graph at a time
            mesh_reprojection_bruteforce(x[b:b + 1], masks[b:b + 1]).sum().backward()

    def dense():
        x.grad = None
        authors_dense(x, masks).sum().backward()

    import torchvision
    net = torchvision.models.resnet50(weights=None).to(dev).train()
    img = torch.randn(B, 3, 224, 224, device=dev)

    def resnet():
        net.zero_grad(set_to_none=True)
        net(img).sum().backward()

    # agreement of the fast version with the brute force, same inputs
    brute(); g_ref = x.grad.clone()
    s_ref = torch.stack([mesh_reprojection_bruteforce(x[b:b + 1], masks[b:b + 1]).detach()[0] for b in range(B)])
    fast_backends = ["scipy", "batched", "torch"] if dev.type == "cpu" else ["batched", "torch"]
    fast(fast_backends[0])(); g_fast = x.grad.clone()
    t = mesh_reprojection_terms(x, masks, backend=fast_backends[0]); s_fast = (t.to_mask + t.to_vertices).detach()
    val_err = ((s_fast - s_ref).abs() / s_ref.abs()).max().item()
    grad_err = ((g_fast - g_ref).abs().max() / g_ref.abs().max()).item()
    grad_rows = (g_fast - g_ref).abs().amax(-1).gt(1e-5 * g_ref.abs().max()).sum().item()

    rows = []
    load0 = os.getloadavg()[0]
    slow = dict(repeat=a.brute_repeat, warmup=0)                     # seconds per call: no warm-up needed
    quick = dict(repeat=a.repeat, warmup=1)
    for name, fn, kw in ([(f"fast, {b} search (this repo)", fast(b), quick if b == fast_backends[0] else slow)
                          for b in fast_backends] +
                         [("authors' dense search, no autograd through it", dense, slow),
                          ("brute force, autograd through the full matrices", brute, slow),
                          (f"ResNet-50 forward+backward, B={B}", resnet, quick)]):
        ms, mb = measure(fn, sync=sync, device=dev.type, **kw)
        rows.append((name, ms, mb))
    load1 = os.getloadavg()[0]
    t_fast = rows[0][1]
    t_brute = next(ms for n, ms, _ in rows if n.startswith("brute"))
    t_resnet = rows[-1][1]

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu}, {torch.get_num_threads()} torch threads"
    print(f"# MR loss benchmark, {now}; torch {torch.__version__}; {where}")
    print(f"# B={B}, V={V} vertices, mask pixels per image {masks.sum((1, 2)).float().mean():.0f} "
          f"(min {masks.sum((1, 2)).min()}, max {masks.sum((1, 2)).max()}); medians of {a.repeat} runs after a warm-up "
          f"({a.brute_repeat} without for the slow rows); 1-min load average {load0:.1f} before, {load1:.1f} after")
    print(f"# fast vs brute force: values max rel. diff {val_err:.1e}, gradients max diff {grad_err:.1e} of the largest, "
          f"{grad_rows} of {B * V} vertex gradients differ by more than 1e-5 of it")
    print("\n| method | fwd+bwd ms | vs fast | peak memory MB |\n|---|---|---|---|")
    for name, ms, mb in rows:
        print(f"| {name} | {ms:.1f} | {ms / t_fast:.1f}× | {mb:.0f} |")
    print(f"\nspeed-up over the brute force: {t_brute / t_fast:.0f}× (goal ≥ 50×); "
          f"MR / ResNet-50 step: {100 * t_fast / t_resnet:.1f} % (goal ≤ 10 %)")


if __name__ == "__main__":
    main()
