#!/usr/bin/env python
"""Download CMU motion capture takes (BVH), verify each file by content, and retarget them into SMPL pose files.

    python data_scripts/get_cmu_mocap.py [--data-root data] [--subjects 1-10] [--max-files 40] [--no-retarget]

Source: the CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu; about 2,500 takes of 140+ subjects,
Vicon, 120 Hz), in the BVH conversion by B. Hahne (cgspeed), as kept in the GitHub repository una-dinosauria/cmu-mocap.
CMU's terms: free for research and commercial use; cite "the CMU Graphics Lab Motion Capture Database" (and thank
mocap.cs.cmu.edu, funded by NSF EIA-0196217). Nothing is downloaded except by running this script.

Pinned commit. The repository's history has two layouts: 62ac0fb0... with three-digit subject folders (001/01_02.bvh)
and 34e1472e... with two-digit ones (01/01_04.bvh). This script pins 62ac0fb0ec43cff2bf66426928f4fa6682d4bbdc, the
layout whose folder names sort in subject order and from which real files were read while writing the reader;
completeness is not taken on trust: the script lists the pinned commit's tree through GitHub's API and refuses
(exit 1) a tree with fewer than --min-takes (default 2,400) takes, naming --commit to try the other layout.

Verification: every downloaded file's git blob SHA-1 (sha1 of "blob <size>\\0" + bytes) must equal the one the
pinned tree lists; a mismatch deletes the file and exits 1. Resumable: finished files are kept (and re-verified),
an interrupted download resumes from its .part file, and each take's fit is cached, so a rerun does only what is left.

Selection: --subjects (e.g. "1-10,86") and --max-files (takes, in subject and file order). The default (subjects 1-10,
at most 40 takes: roughly 100-200 MB) downloads in minutes and retargets in about 10 minutes on one CPU core. Each
take's first frame (the conversion's reference pose, not capture) is skipped.

Output, in data/cmu_mocap/: bvh/<subject>/<take>.bvh; fits/<take>.npz (one per take); cmu_train.npz and
cmu_heldout.npz, pose files that hybrid_pose.poses.read_pose_npz reads (subjects whose number ends in 0 are held out,
the rest train). See docs/real_poses.md.

Exit status: 0 done, 1 verification failed, 2 bad arguments or download failed.
"""
import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _download import DownloadError, download, import_hybrid_pose  # noqa: E402

REPO = "una-dinosauria/cmu-mocap"
COMMIT = "62ac0fb0ec43cff2bf66426928f4fa6682d4bbdc"
LISTING = "https://api.github.com/repos/{repo}/git/trees/{commit}?recursive=1"
RAW = "https://raw.githubusercontent.com/{repo}/{commit}/"
TAKE = re.compile(r"^(\d{2,3})/(\d+_\d+)\.bvh$")


class UsageFail(Exception):
    "Bad arguments or input: one line, exit 2."


def blob_sha1(data: bytes) -> str:
    "Git's object id of a file's bytes (what a tree listing gives for each file)."
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def parse_subjects(s: str) -> set:
    "'1-10,86' -> {1, ..., 10, 86}."
    out = set()
    for part in filter(None, (p.strip() for p in s.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m[2] and int(m[2]) < int(m[1])):
            raise UsageFail(f"--subjects {s!r}: {part!r} is not a subject number or a range like 1-10; give e.g. --subjects 1-10,86")
        out.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    if not out: raise UsageFail("--subjects is empty; give e.g. --subjects 1-10")
    return out


def read_listing(url: str, cache: Path, quiet: bool) -> list:
    "[(path, blob sha, size)] of the .bvh takes in the pinned tree (GitHub's JSON tree format), cached on disk."
    if not cache.is_file():
        try: download(url, cache, quiet=quiet)
        except DownloadError as e: raise UsageFail(f"tree listing {url}: {' '.join(str(e).split())}; check the network or pass --listing") from None
    try:
        tree = json.loads(cache.read_text())
        items = [(t["path"], t["sha"], int(t.get("size", -1))) for t in tree["tree"] if t.get("type") == "blob"]
    except (ValueError, KeyError, TypeError) as e:
        cache.unlink(missing_ok=True)
        raise UsageFail(f"tree listing {url}: not a GitHub tree listing ({type(e).__name__}: {e}); pass --listing with the JSON of "
                        f"{LISTING.format(repo=REPO, commit='<commit>')}") from None
    if tree.get("truncated"): raise UsageFail(f"tree listing {url} is truncated; list the subject folders one by one")
    return sorted((p, s, n) for p, s, n in items if TAKE.match(p))


def select(takes: list, subjects: set | None, max_files: int) -> list:
    "The takes of the chosen subjects, in subject and file order, at most `max_files`."
    chosen = [t for t in takes if subjects is None or int(TAKE.match(t[0])[1]) in subjects]
    return chosen[:max_files] if max_files > 0 else chosen


def fetch_take(raw: str, path: str, sha: str, dest: Path, quiet: bool) -> Path:
    "Download one take (resumable) and verify its blob SHA-1; a mismatch deletes it and raises."
    if dest.is_file() and blob_sha1(dest.read_bytes()) == sha: return dest
    dest.unlink(missing_ok=True)
    download(raw + path, dest, quiet=quiet)
    got = blob_sha1(dest.read_bytes())
    if got != sha:
        dest.unlink()
        raise ValueError(f"{path}: content does not match the pinned tree (git blob {got}, expected {sha}); deleted, rerun to fetch it again")
    return dest


def is_heldout(path: str) -> bool: return int(TAKE.match(path)[1]) % 10 == 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="get_cmu_mocap.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path("data"), help="the data folder (default: data)")
    p.add_argument("--subjects", default="1-10", help="subject numbers, e.g. 1-10,86 (default 1-10); 'all' for every subject")
    p.add_argument("--max-files", type=int, default=40, help="at most this many takes (default 40; 0: no limit)")
    p.add_argument("--commit", default=COMMIT, help=f"the commit of {REPO} to read (default: the pinned {COMMIT[:10]})")
    p.add_argument("--listing", help="URL or file:// of the tree listing (default: GitHub's API for --commit)")
    p.add_argument("--raw", help="base URL the take paths are appended to (default: raw.githubusercontent.com for --commit)")
    p.add_argument("--min-takes", type=int, default=2400, help="refuse a tree listing with fewer takes (default 2400)")
    p.add_argument("--no-retarget", action="store_true", help="download and verify only")
    p.add_argument("--fps", type=float, default=12.0, help="frames kept per second of capture (default 12)")
    p.add_argument("--steps", type=int, default=300, help="fitting steps per take (default 300)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    say = (lambda *m: None) if a.quiet else (lambda *m: print(*m, flush=True))
    try:
        if not re.fullmatch(r"[0-9a-f]{40}", a.commit): raise UsageFail(f"--commit {a.commit!r}: give a full 40-hex-digit commit id")
        if a.max_files < 0: raise UsageFail(f"--max-files {a.max_files}: give 0 (no limit) or a positive number")
        subjects = None if a.subjects.strip().lower() == "all" else parse_subjects(a.subjects)
        import_hybrid_pose()
        from hybrid_pose.base import UsageError, check_writable
        try: out = check_writable(a.data_root / "cmu_mocap", "--data-root")
        except UsageError as e: raise UsageFail(str(e)) from None
        takes = read_listing(a.listing or LISTING.format(repo=REPO, commit=a.commit), out / f"listing-{a.commit[:12]}.json", a.quiet)
        if len(takes) < a.min_takes:
            print(f"the tree listing of {a.commit[:12]} holds {len(takes)} takes, fewer than --min-takes {a.min_takes}: an "
                  f"incomplete layout; try --commit 34e1472e5b8c234d40a62bb9cd969b5910fa1803 (the other layout)", file=sys.stderr)
            return 1
        chosen = select(takes, subjects, a.max_files)
        if not chosen: raise UsageFail(f"--subjects {a.subjects!r}: no takes of these subjects in the tree ({len(takes)} takes in all)")
        raw = a.raw or RAW.format(repo=REPO, commit=a.commit)
        raw = raw if raw.endswith("/") else raw + "/"
        say(f"{len(chosen)} takes of {len({TAKE.match(t[0])[1] for t in chosen})} subjects ({sum(max(n, 0) for _, _, n in chosen) / 2**20:.0f} MiB)")
        files = []
        for i, (path, sha, _) in enumerate(chosen, 1):
            say(f"[{i}/{len(chosen)}] {path}")
            try: files.append((path, fetch_take(raw, path, sha, out / "bvh" / path, True)))
            except DownloadError as e: raise UsageFail(f"{path}: {' '.join(str(e).split())}") from None
        if a.no_retarget: say(f"downloaded and verified {len(files)} takes into {out / 'bvh'}"); return 0
        return retarget_all(files, out, a.fps, a.steps, say)
    except UsageFail as e:
        print(f"get_cmu_mocap.py: {e}", file=sys.stderr); return 2
    except ValueError as e:
        print(f"get_cmu_mocap.py: {' '.join(str(e).split())}", file=sys.stderr); return 1


def retarget_all(files: list, out: Path, fps: float, steps: int, say) -> int:
    "Fit the open body to every take (cached per take), then write cmu_train.npz and cmu_heldout.npz."
    import numpy as np
    import torch
    from hybrid_pose.body import load_body_model
    from hybrid_pose.mocap import BVHError, Retargeted, retarget_bvh, save_retargeted
    body = load_body_model("open", dtype=torch.float64)
    fits = {False: [], True: []}
    for path, f in files:
        cache = out / "fits" / (path[:-4] + ".npz")
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                r = Retargeted(*(torch.from_numpy(z[k]) for k in ("pose", "betas", "scale", "error", "angle"))); kept = z["kept"]
        else:
            try: r, kept = retarget_bvh(f, body, target_fps=fps, steps=steps, first_frame=1)  # frame 0: the conversion's reference pose
            except BVHError as e: print(f"get_cmu_mocap.py: skipped {e}", file=sys.stderr); continue
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, pose=r.pose.numpy(), betas=r.betas.numpy(), scale=r.scale.numpy(), error=r.error.numpy(),
                     angle=r.angle.numpy(), kept=kept)
            say(f"  {path}: {len(kept)} frames, fit error {r.error.mean() * 1000:.1f} mm, bones off by {r.angle.mean():.1f} deg")
        fits[is_heldout(path)].append((path, r, kept))
    for held, name in ((False, "cmu_train.npz"), (True, "cmu_heldout.npz")):
        if fits[held]:
            save_retargeted(out / name, fits[held], body_name="open")
            say(f"{out / name}: {sum(len(k) for _, _, k in fits[held])} poses from {len(fits[held])} takes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
