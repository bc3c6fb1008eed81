#!/usr/bin/env python
"""Synthetic-data generation speed on CPU: images/s of `hybrid_pose.synthetic.generate_synthetic`.

    python benchmarks/synthetic.py [--n 40] [--procs 1 2] [--threads 1]

Generates `--n` images (LSP-like, 300–500 px per side) into a temporary folder, once per row: in one process, and
split into parallel chunks (`--start`) over P processes, as `python -m hybrid_pose.synthetic` would be run on a
multi-core machine. Also times the stages of one image (sampling + body, rasterization + shading + parts, background,
encoding + writing) over the first `--n` images. Prints a Markdown table: wall-clock images/s and images per
CPU-second of the generating processes (what one process delivers with a core to itself).
"""
import argparse, datetime, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_chunks(n: int, procs: int, threads: int, out: Path) -> tuple:
    "Wall seconds and CPU seconds to make images 1..n in `procs` parallel chunks."
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    per = -(-n // procs)
    cpu0, t0 = _children_cpu(), time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-m", "hybrid_pose.synthetic", "--n", str(min(per, n - s + 1)), "--start", str(s),
                            "--out", str(out), "--no-progress"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
          for s in range(1, n + 1, per)]
    for p in ps:
        if p.wait() != 0: raise RuntimeError("generation failed")
    return time.perf_counter() - t0, _children_cpu() - cpu0


def stages(n: int) -> dict:
    "Mean milliseconds per image of each stage, in this process."
    import torch
    import numpy as np
    from hybrid_pose import synthetic as S
    from hybrid_pose.body import load_body_model
    from hybrid_pose.render import body_part_labels
    body = load_body_model("open"); labels = body_part_labels(body); cfg = S.SyntheticConfig()
    t = dict(sample=0., render=0., background=0., write=0.)
    out = Path(tempfile.mkdtemp()) / "synthetic"
    S.make_person(1, 99, body, labels)  # warm-up
    for k in range(1, n + 1):
        t0 = time.perf_counter()
        p = S.sample_parameters(k, 0, cfg)
        with torch.no_grad(): v = body(p["pose"][None], p["betas"][None]).vertices[0]
        fr = S.frame_person(v, p["rng"], cfg)
        t1 = time.perf_counter()
        S.render_person(body, p["pose"], p["betas"], fr["cam"], fr["center"], fr["box_size"], fr["image_hw"], labels)
        t2 = time.perf_counter()
        S.background(np.random.default_rng(k), *fr["image_hw"])
        t3 = time.perf_counter()
        person = S.make_person(k, 0, body, labels, cfg)
        t4 = time.perf_counter()
        S.write_person(person, out, k)
        t5 = time.perf_counter()
        t["sample"] += t1 - t0; t["render"] += t2 - t1; t["background"] += t3 - t2; t["write"] += t5 - t4
        t.setdefault("make_person", 0.); t["make_person"] += t4 - t3
    return {k: 1000 * v / n for k, v in t.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch
    torch.set_num_threads(a.threads)
    print(f"## Synthetic generation (`python benchmarks/synthetic.py --n {a.n}`)\n")
    print(f"{os.cpu_count()}-core {platform.machine()} CPU, torch {torch.__version__}, {a.threads} thread(s) per process, "
          f"{datetime.date.today().isoformat()}, load average {os.getloadavg()[0]:.1f}\n")
    with tempfile.TemporaryDirectory() as d:                 # start-up alone: imports, body model, part labels
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        cpu0, t0 = _children_cpu(), time.perf_counter()
        subprocess.run([sys.executable, "-m", "hybrid_pose.synthetic", "--n", "0", "--out", str(Path(d) / "s"), "--no-progress"],
                       cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=True)
        w0, c0 = time.perf_counter() - t0, _children_cpu() - cpu0
    print(f"Start-up of one `python -m hybrid_pose.synthetic` process: {w0:.1f} s wall, {c0:.1f} CPU-s (excluded below).\n")
    print("| processes | images | wall s | images/s (wall) | images per CPU-second |")
    print("|---|---|---|---|---|")
    for P in a.procs:
        with tempfile.TemporaryDirectory() as d:
            wall, cpu = run_chunks(a.n, P, a.threads, Path(d) / "synthetic")
        wall, cpu = wall - w0, cpu - P * c0
        print(f"| {P} | {a.n} | {wall:.1f} | {a.n / wall:.1f} | {a.n / cpu:.1f} |")
    st = stages(min(a.n, 20))
    print("\nPer image, one process (ms, mean):\n")
    print("| " + " | ".join(st) + " |"); print("|" + "---|" * len(st)); print("| " + " | ".join(f"{v:.0f}" for v in st.values()) + " |")
    print("\n(sample = joint-limit sampler + body + camera; render = rasterize + part labels; make_person = everything "
          "of one image incl. shading and background; write = JPEG + 2 PNG + record, atomic)")


if __name__ == "__main__":
    main()
