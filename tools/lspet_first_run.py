"""The first run on real images: score a short LSPe run on LSPe's held-out tail beside trivial baselines.

Reproduce (about 5 minutes on a 2-core CPU, after `python data_scripts/get_lspet.py --data-root DATA`):

    hybrid-pose train --profile quick --set dataset=lspet losses=kpr prior=critic data_root=DATA \
        lspet_val=500 val_dataset=lspet max_steps=300 val_every=-1 out_dir=runs/lspet_quick
    python tools/lspet_first_run.py runs/lspet_quick --out figures

Writes `lspet_first_run.{csv,md}` (standard PCK@0.2 and the rest, one row per predictor, with the protocol of each
column) and `lspet_first_run.png` (overlays on held-out images), each with a provenance sidecar.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="the run folder (or its checkpoint.pt) of a model trained with lspet_val > 0")
    p.add_argument("--out", default="figures", help="where the table and figure go (default: figures)")
    p.add_argument("--data-root", default=None, help="default: the run's data_root")
    p.add_argument("--images", type=int, default=6, help="held-out images in the overlay figure (default 6)")
    p.add_argument("--name", default="lspet_first_run", help="the files' stem under --out (default lspet_first_run)")
    a = p.parse_args(argv)
    from hybrid_pose.checkpoint import Checkpoint
    from hybrid_pose.base import UsageError, one_line
    from hybrid_pose.data import PoseDataset, denormalize_image, make_loader
    from hybrid_pose.evaluate import METRIC_PROTOCOLS, evaluate
    from hybrid_pose.experiments import baseline_label, build_baseline, evaluate_baselines, mesh_overlays, overlay_grid, pose_pool
    from hybrid_pose.model import HybridPoseNet, decode
    from hybrid_pose.viz import save_figure, save_table
    t0 = time.time()
    try:
        ck = Checkpoint.load(a.run)
        cfg = ck.config
        if int(cfg.get("lspet_val", 0)) < 1 or "lspet" not in ck.val_dataset:
            raise UsageError(f"{ck.path}: trained without a held-out LSPe tail (lspet_val={cfg.get('lspet_val', 0)}, "
                             f"val_dataset={ck.val_dataset!r}); train with --set lspet_val=500 val_dataset=lspet")
        root = Path(a.data_root or ck.data_root)
        body = ck.body_model(None, str(root), "cpu")
        ds = PoseDataset(root, "lspet", "val", augment=False, size=ck.image_size, require_mask=False,
                         lspet_val=int(cfg["lspet_val"]))
    except (UsageError, FileNotFoundError) as e:
        print(f"lspet_first_run: error: {one_line(e)}", file=sys.stderr); return 2
    loader = lambda: make_loader(ds, batch_size=16, shuffle=False, num_workers=0)
    torch.manual_seed(int(cfg.get("seed", 0)))
    untrained = HybridPoseNet(cfg["backbone"], False, cfg["n_iter"], input=cfg.get("input", "rgb"),
                              input_px=cfg.get("input_px", 64)).eval()
    trained = ck.network().eval()
    pool = pose_pool("natural", 2000)
    results = {str(ck.trained_on): evaluate(trained, body, loader(), progress=False),
               "untrained network (same architecture, seed)": evaluate(untrained, body, loader(), progress=False)}
    results |= {baseline_label(k): r for k, r in evaluate_baselines(body, loader(), None, pool, net=trained).items()}
    cols = ["pck@0.2", "pck_crop@0.1", "KPR_paper", "KPR_paper_px", "kp_l2_px", "violations", "unseen_violations",
            "natural_dist_deg"]
    rows = [{"predictor": k, "images": r.summary["images"], **{c: r.summary[c] for c in cols}} for k, r in results.items()]
    caption = ("LSPe's last " + str(cfg["lspet_val"]) + " images (held out from training), deterministic crops. " +
               "; ".join(f"{c}: {METRIC_PROTOCOLS[c]}" for c in cols if c in METRIC_PROTOCOLS) +
               ". Rows marked 'oracle' use the test images' true 2D keypoints (their camera is fitted to them; the nearest "
               "pose is chosen by them), which the networks do not have; the Θ₀ row and retrieval fed the trained network's own keypoints use no test-time truth. "
               "One training seed: no interval; a first look, not a result.")
    out = Path(a.out)
    save_table(rows, out / f"{a.name}.csv", vars(a), data=[root / "lspet" / "joints.mat", ck.path], started=t0,
               caption=caption, train_config=cfg, seeds=[int(cfg.get("seed", 0))], trained_on=ck.trained_on)
    # overlays: the first held-out images, trained network / nearest pose by 2D keypoints / T-pose
    batch = next(iter(make_loader(ds, batch_size=a.images, shuffle=False, num_workers=0)))
    with torch.no_grad():
        grid = {"input": denormalize_image(batch["image"]).permute(0, 2, 3, 1),
                "trained network": mesh_overlays(decode(trained.predict_batch(batch)[-1], body, ck.image_size), body, batch["image"])}
        SHORT = {"nearest_2d": "oracle: nearest pose\nby the true 2D keypoints", "tpose": "oracle: T-pose, camera\nfitted to the true 2D keypoints"}
        for name in ("nearest_2d", "tpose"):
            b = build_baseline(name, body, **({"poses": pool} if name == "nearest_2d" else {}))
            grid[SHORT[name]] = mesh_overlays(
                decode(b.predict_batch(batch)[0], body, ck.image_size), body, batch["image"])
    fig = overlay_grid(grid)
    save_figure(fig, out / f"{a.name}.png", vars(a), data=[root / "lspet" / "joints.mat", ck.path], started=t0,
                label="held-out LSPe images; oracle rows: camera fitted to the true keypoints", train_config=cfg)
    for r in rows: print(" | ".join(f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else str(v) for v in r.values()))
    print(f"wrote {out / (a.name + '.csv')} and .png in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
