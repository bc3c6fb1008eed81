#!/usr/bin/env python
"""GPU-speed benchmarks, one section per component; every section also runs on the CPU (small repeats).

    python benchmarks/gpu.py [--device auto|cpu|cuda] [--sections mr,...] [--repeat N] [--out DIR] [section options]

Sections (`SECTIONS`; add one with `@section(name, add_args)`: a function `(args, device) -> list of Markdown tables`):

- `mr`: the mesh reprojection loss (MR), forward + backward of the per-image sums, per image, before (the per-image
  "torch" search: chunked `cdist`, image by image) and after (the "batched" search), and on the CPU the k-d trees
  (the CPU default), at B = 8 and 64 with 6,890 (SMPL's count: a fixed random half of the open model's vertices) and
  13,718 vertices (the open body model). Masks: person silhouettes of the open model in random poses and shapes,
  224×224, rendered by `fixtures.rasterize_silhouette`; vertices: the model in *other* random poses with a shifted
  camera (a mid-training misalignment). Also checks that every search returns the same nearest neighbours.

Prints Markdown; with `--out DIR` also writes `DIR/gpu_<section>.md`.
"""
import argparse, datetime, os, platform, sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timeit  # noqa: E402

SECTIONS = {}  # name -> (function(args, device) -> list of Markdown tables, function(parser) adding its options)


def section(name, add_args=None):
    "Register a benchmark section: `fn(args, device)` returns Markdown tables; `add_args(parser)` adds its options."
    def register(fn):
        SECTIONS[name] = (fn, add_args or (lambda p: None))
        return fn
    return register


def markdown_table(columns, rows) -> str:
    "A Markdown table from column names and rows of values (floats with 3 significant digits or 1 decimal)."
    fmt = lambda x: (f"{x:.1f}" if abs(x) >= 100 else f"{x:.3g}") if isinstance(x, float) else str(x)
    return "\n".join([f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)] +
                     [f"| {' | '.join(fmt(x) for x in r)} |" for r in rows])


def sync_for(dev):
    return torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)


# ---------------------------------------------------------------- section: MR search

# the person masks and misaligned vertices of the MR benchmark (`benchmarks/losses.py`): one definition for both
from losses import make_inputs as person_inputs  # noqa: E402


def vertex_subset(verts, V, seed=0):
    "A fixed random subset of V of the vertices (B,V,2), in their order (6,890 stands for SMPL's mesh)."
    keep = torch.randperm(verts.shape[1], generator=torch.Generator().manual_seed(seed))[:V].sort().values
    return verts[:, keep].contiguous()


def agreement(a, b, verts, W):
    "Whether two searches' results (idx, gidx, nn) agree: the same nearest vertices, and each vertex's nearest pixel as near."
    def d2(idx):
        p = torch.stack([idx % W, idx // W], -1).double() + 0.5
        return ((verts.double() - p) ** 2).sum(-1)
    same = torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) and torch.equal(a[0] < 0, b[0] < 0)
    same = same and torch.equal(d2(a[0].clamp(min=0)), d2(b[0].clamp(min=0)))
    return same, int((a[0] != b[0]).sum())


def _mr_args(p):
    p.add_argument("--batches", type=int, nargs="+", default=[8, 64])
    p.add_argument("--vertices", type=int, nargs="+", default=[6890, 13718])
    p.add_argument("--old-repeat", type=int, default=None, help="runs of the 'before' row (default: --repeat on CUDA, 1 on the CPU)")
    p.add_argument("--skip-old", action="store_true", help="leave out the 'before' rows")


@section("mr", _mr_args)
def mr_section(a, dev):
    from hybrid_pose.losses import _neighbours, mesh_reprojection_terms
    sync = sync_for(dev)
    backends = [("before: per-image search (torch)", "torch")] * (not a.skip_old) + [("after: batched search", "batched")]
    if dev.type == "cpu": backends.append(("k-d trees (scipy, the CPU default)", "scipy"))
    rows, notes = [], []
    for B in a.batches:
        masks, full = person_inputs(B, seed=a.seed)
        masks = masks.to(dev)
        for V in a.vertices:
            verts = vertex_subset(full, V, a.seed).to(dev)
            x = verts.clone().requires_grad_()

            def step(backend):
                def f():
                    x.grad = None
                    t = mesh_reprojection_terms(x, masks, backend=backend)
                    (t.to_mask + t.to_vertices).sum().backward()
                return f
            found = {b: _neighbours(verts, masks, True, b) for _, b in backends}
            same = [agreement(found[b], found["batched"], verts, masks.shape[-1]) for b in found if b != "batched"]
            notes.append(f"B={B}, V={V}: {masks.sum((1, 2)).float().mean():.0f} mask pixels per image "
                         f"({masks.sum((1, 2)).min()}–{masks.sum((1, 2)).max()}); the searches agree: "
                         f"{all(s[0] for s in same)} ({sum(s[1] for s in same)} equally near other pixels chosen)")
            base = None
            for name, b in backends:
                slow = b == "torch"
                rep = (a.old_repeat or (a.repeat if dev.type == "cuda" else 1)) if slow else a.repeat
                ms = timeit(step(b), rep, sync, warmup=1 if (dev.type == "cuda" or not slow) else 0)
                base = ms if slow else base
                rows.append((dev.type, B, V, name, ms, ms / B, f"{base / ms:.1f}×" if base else "–"))
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    head = (f"MR forward+backward, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
            f"{where}; medians of {a.repeat} runs after a warm-up (the CPU 'before' rows: {a.old_repeat or 1} run, no warm-up); "
            f"1-min load average {os.getloadavg()[0]:.1f} at the end\n\n" + "\n".join(f"- {n}" for n in notes))
    return [head, markdown_table(["device", "B", "V", "search", "ms per batch", "ms per image", "vs before"], rows)]


# ---------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {list(SECTIONS)}")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per row (default 10 on CUDA, 3 on the CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write DIR/gpu_<section>.md")
    for _, add_args in SECTIONS.values(): add_args(p)
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    if a.device == "auto": a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.device == "cuda" and not torch.cuda.is_available(): p.error("--device cuda: no CUDA device here")
    dev = torch.device(a.device)
    a.repeat = a.repeat or (10 if dev.type == "cuda" else 3)
    names = [s for s in a.sections.split(",") if s]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown: p.error(f"--sections: unknown {unknown}; known: {list(SECTIONS)}")
    for name in names:
        text = "\n\n".join(SECTIONS[name][0](a, dev))
        print(f"## {name}\n\n{text}\n", flush=True)
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
            (Path(a.out) / f"gpu_{name}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
