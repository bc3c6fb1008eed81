#!/usr/bin/env python
"""Report which datasets under the data folder are present, missing or malformed, with counts.

    python data_scripts/verify_data.py [--data-root data] [--datasets lsp lspet upi-s1h synthetic] [--deep] [--licensed]

Checks (hybrid_pose.datacheck.verify_data_root): LSP 2000 images + joints
(3, 14, 2000), of the low-resolution release (lsp_dataset_original.zip is named and refused); LSPe 10000 images +
joints (14, 3, 10000); UPi-S1h LSP silhouettes and part masks (im1001-2000 at least), 8642 LSPe silhouettes, pixel
values (stray values counted in a note; masks of another kind refused), each mask the size of its image; synthetic:
LSP layout with a silhouette per image. Formats and sources: docs/data.md. With --licensed also the SMPL model, MoSh poses and AMASS, printing what to register for when missing.

Exit status: 0 nothing malformed; 1 something malformed; 2 a dataset named with --datasets is missing.
"""
import argparse
import json
import sys
from pathlib import Path

try:
    import hybrid_pose  # noqa: F401
except ImportError:  # run from a plain clone
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hybrid_pose.data import GET_COMMANDS  # noqa: E402
from hybrid_pose.datacheck import DATASET_NAMES, check_licensed, verify_data_root  # noqa: E402


def parse_range(s: str) -> tuple:
    a, _, b = s.partition("-")
    return int(a), int(b or a)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="verify_data.py", description=__doc__.split("\n\n")[0],
                                epilog="\n".join(f"{k}: {v.format(root='data')}" for k, v in GET_COMMANDS.items()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path("data"), help="the data folder (default: data)")
    p.add_argument("--datasets", nargs="+", choices=DATASET_NAMES, help="check only these (missing ones then fail)")
    p.add_argument("--deep", action="store_true", help="decode every image and mask (default: headers of all, pixels of 20)")
    p.add_argument("--licensed", action="store_true", help="also check the SMPL model, MoSh and AMASS")
    p.add_argument("--lsp-count", type=int, default=2000)
    p.add_argument("--lspet-count", type=int, default=10000)
    p.add_argument("--lspet-masks", type=int, default=8642, help="LSPe silhouettes expected in UPi-S1h")
    p.add_argument("--lsp-mask-range", type=parse_range, default=(1001, 2000), metavar="A-B")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    a = p.parse_args(argv)
    checks = verify_data_root(a.data_root, a.datasets or DATASET_NAMES, a.deep, a.lsp_count, a.lspet_count,
                              a.lspet_masks, a.lsp_mask_range)
    lic = check_licensed(a.data_root) if a.licensed else {}
    if a.json:
        print(json.dumps({k: dict(status=c.status, path=str(c.path), counts=c.counts, problems=c.problems, notes=c.notes)
                          for k, c in {**checks, **lic}.items()}, indent=2))
    else:
        print(f"data root: {a.data_root.resolve()}")
        for c in checks.values(): print(c)
        for c in lic.values():
            print(c if c.status != "missing" else f"{c.name:<10} MISSING   {c.path}\n" +
                  "\n".join("    " + line for line in c.fix.splitlines()))
    everything = {**checks, **lic}
    if any(c.status == "malformed" for c in everything.values()): return 1
    if a.datasets and any(checks[n].status == "missing" for n in a.datasets): return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
