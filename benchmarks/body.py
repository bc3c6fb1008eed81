#!/usr/bin/env python
"""Body model speed: load time and forward (and forward+backward) time per batch size, on CPU and, if present, CUDA;
and the joints-only layer (`LSPJointsLayer`: the LSP-14 joints without the mesh, what the trainer and the retrieval
baseline use when nothing reads the mesh) beside the whole model's forward.

    python benchmarks/body.py [--model open] [--batch 1 64 512] [--repeat 20] [--threads N]

Prints a Markdown table; copy it into benchmarks/README.md with the machine it ran on.
"""
import argparse, platform, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timeit  # noqa: E402
from hybrid_pose.body import load_body_model, LSPJointsLayer  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="open")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    t = time.perf_counter(); load_body_model(a.model); load_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter(); body = load_body_model(a.model); load2_ms = (time.perf_counter() - t) * 1000
    print(f"# {a.model} body model: {body.num_vertices} vertices, {len(body.faces)} faces; "
          f"load {load_ms:.0f} ms (first, incl. imports/page cache), {load2_ms:.0f} ms (again)")
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads")
    print("| device | B | forward ms | forward+backward ms | ms per body (fwd) | joints only, forward ms |\n|---|---|---|---|---|---|")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        m = body.to(dev)
        joints = LSPJointsLayer(m)
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        for B in a.batch:
            pose = (0.3 * torch.randn(B, 72, device=dev)).requires_grad_()
            betas = torch.randn(B, 10, device=dev, requires_grad=True)
            def fwd():
                with torch.no_grad(): m(pose, betas)
            def fwdbwd():
                o = m(pose, betas); (o.vertices.sum() + o.lsp_joints.sum()).backward()
            def fwd_joints():
                with torch.no_grad(): joints(pose, betas)
            f, fb, fj = timeit(fwd, a.repeat, sync), timeit(fwdbwd, a.repeat, sync), timeit(fwd_joints, a.repeat, sync)
            print(f"| {dev} | {B} | {f:.1f} | {fb:.1f} | {f / B:.2f} | {fj:.1f} |")


if __name__ == "__main__":
    main()
