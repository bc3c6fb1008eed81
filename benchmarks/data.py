#!/usr/bin/env python
"""Data pipeline speed: samples/s per DataLoader worker for 224-px augmented crops, on CPU, with and without the cache.

    python benchmarks/data.py [--n 64] [--epochs 3] [--workers 0 1 2] [--batch 8]

Writes fake people in the real layouts (`hybrid_pose.fixtures.write_fake_layout`) at two realistic image sizes: LSP-like
400×300 JPEGs with single-channel silhouettes and part masks, and LSPe-like 1024×800 JPEGs with 3-channel
silhouettes. Times full training epochs (augmentation on, batch 8) after a warm-up epoch that also fills the cache.
Prints a Markdown table (medians of `--repeat` runs): wall-clock samples/s, and samples per CPU-second of the
loading processes (the workers; the main process with 0 workers), i.e. what one worker delivers with a core to
itself: on a shared or small machine the wall-clock rate also counts time the workers wait for a CPU. The goal is
>= 100 samples/s per worker, judged on the CPU rate.
"""
import argparse, datetime, os, platform, statistics, sys, tempfile, time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hybrid_pose.data import PoseDataset, make_loader  # noqa: E402
from hybrid_pose.fixtures import write_fake_layout  # noqa: E402

CONFIGS = {  # name -> (write_fake_layout kwargs, dataset)
    "LSP-like 400×300": (dict(lsp=range(1, 1000), lspet=()), "lsp"),
    "LSPe-like 1024×800": (dict(lsp=(), lspet=range(1, 10000)), "lspet"),
}
SIZES = {"LSP-like 400×300": (400, 300), "LSPe-like 1024×800": (1024, 800)}


def _cpu(pid: int) -> float:
    "CPU seconds (user + system) used so far by process `pid` (Linux /proc)."
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rate(ds, workers, batch, epochs, repeat):
    """Median over `repeat` runs of `epochs` epochs, after one warm-up epoch (worker start-up, cache filling):
    (wall-clock samples/s, samples per CPU-second of the loading processes, main-process CPU ms per sample).
    The CPU rate is what one worker achieves with a core to itself, whatever else runs on the machine."""
    dl = make_loader(ds, batch_size=batch, num_workers=workers, persistent_workers=True, pin_memory=False)
    it = iter(dl)
    for _ in it: pass
    pids = [w.pid for w in it._workers] if workers else []
    walls, cpus, mains = [], [], []
    for _ in range(repeat):
        n, t, m = 0, time.perf_counter(), time.process_time()
        c = sum(_cpu(p) for p in pids)
        for _ in range(epochs):
            for b in dl: n += len(b["image"])
        walls.append(n / (time.perf_counter() - t))
        main = time.process_time() - m
        cpu = sum(_cpu(p) for p in pids) - c if workers else main
        cpus.append(n / max(cpu, 1e-9)); mains.append(main / n * 1000)
    del it, dl
    return statistics.median(walls), statistics.median(cpus), statistics.median(mains)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=64, help="images per configuration")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3, help="timed runs per row (the median is printed)")
    a = p.parse_args()
    torch.set_num_threads(1)
    print(f"# {datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {a.n} images per row, batch {a.batch}, median of {a.repeat} x {a.epochs} epochs, "
          f"load average {os.getloadavg()[0]:.1f} (other processes compete for the CPUs when it exceeds 0)")
    print("| images | cache | workers | samples/s (wall) | per worker (wall) | per worker-CPU-second | main CPU ms/sample | "
          "goal ≥ 100/worker |\n|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for name, (kw, dataset) in CONFIGS.items():
            root = Path(d) / name.split()[0]
            kw = {k: list(v)[:a.n] for k, v in kw.items()}
            write_fake_layout(root, **kw, lspet_masks=kw["lspet"], image_size=SIZES[name], seed=0)
            for cache in (False, True):
                ds = PoseDataset(root, dataset, "train", cache_dir=Path(d) / f"cache-{dataset}" if cache else None)
                for w in a.workers:
                    wall, cpu, main_ms = rate(ds, w, a.batch, a.epochs, a.repeat)
                    print(f"| {name} | {'yes' if cache else 'no'} | {w} | {wall:.0f} | {wall / max(w, 1):.0f} | {cpu:.0f} | "
                          f"{main_ms:.2f} | {'met' if cpu >= 100 else 'not met'} |", flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
