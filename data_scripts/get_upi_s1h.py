#!/usr/bin/env python
"""Fetch the UPi-S1h silhouettes and six-part masks of LSP and LSPe (Unite the People), verify them, unpack them to
data/upi-s1h/data/{lsp,lsp_extended}.

    python data_scripts/get_upi_s1h.py [--data-root data] [--url URL] [--archive upi-s1h.zip] [--full] [--force]

upi-s1h.zip is about 45 GB, almost all of it MPII images this project does not use, for a few hundred MB of LSP and
LSPe masks. When the server (or a file:// URL) can serve byte ranges, only the zip's directory and the wanted members
are read; otherwise, or with --full, the whole zip is downloaded (resumably) into data/downloads/ and the members are
extracted from it. Members are extracted into data/.partial-upi-s1h/ (an interrupted run resumes and keeps what is
done), each member's CRC is checked, then the counts (LSP silhouettes and part masks for im1001-2000, 8642 LSPe
silhouettes), pixel values (silhouettes 0/255, parts 0-6/255: a few stray values are counted and reported, masks
refused only when clearly of another kind) and sizes (each mask the size of its image, when
data/lsp and data/lspet are there) are verified before the folder is renamed to data/upi-s1h.
Source: the UP-3D/UPi-S1h release of Lassner et al. (CVPR 2017). Licence: "for research purposes"; cite Lassner et al., CVPR 2017.

Exit status: 0 installed or already present, 1 verification failed (nothing installed), 2 download failed.
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _download import (MAX_UNPACKED_GB, DownloadError, existing_install, extract, fetch, import_hybrid_pose,  # noqa: E402
                       install, licensed_note, open_remote_zip_source, record_checksum, archive_kind)

MIRRORS = [
    "http://files.is.tuebingen.mpg.de/classner/up/datasets/upi-s1h.zip",  # the files page of the UP project
    "http://files.is.tue.mpg.de/classner/up/datasets/upi-s1h.zip",        # the same host's short alias
]
MEMBER = re.compile(r"(?:^|/)data/(lsp|lsp_extended)/(im\d+_(?:part_)?segmentation\.png)$")
MANUAL = """If the download fails, get upi-s1h.zip from http://up.is.tuebingen.mpg.de (files page
http://files.is.tuebingen.mpg.de/classner/up/) by other means and run:
    python data_scripts/get_upi_s1h.py --archive PATH/TO/upi-s1h.zip"""


def select(name: str):
    "data/lsp/... and data/lsp_extended/... mask members, renamed to data/<folder>/<file> (any top folder dropped)."
    m = MEMBER.search(name)
    return f"data/{m[1]}/{m[2]}" if m else None


def parse_range(s: str) -> tuple:
    a, _, b = s.partition("-")
    return int(a), int(b or a)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="get_upi_s1h.py", description=__doc__.split("\n\n")[0],
                                epilog="Mirrors tried in order:\n  " + "\n  ".join(MIRRORS) + "\n\n" + MANUAL,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path("data"), help="the data folder (default: data)")
    p.add_argument("--url", "--mirror", action="append", dest="urls", metavar="URL",
                   help="read from URL instead of the built-in mirrors (repeatable; http(s):// or file://)")
    p.add_argument("--archive", type=Path, help="use upi-s1h.zip you downloaded yourself")
    p.add_argument("--full", action="store_true", help="download the whole zip (45 GB) instead of reading members remotely")
    p.add_argument("--lsp-range", type=parse_range, default=(1001, 2000), metavar="A-B",
                   help="LSP images that must have a silhouette and a part mask (default 1001-2000)")
    p.add_argument("--expect-lspet", type=int, default=8642, help="LSPe silhouettes expected (default 8642)")
    p.add_argument("--sha256", help="expected SHA-256 of the whole zip (with --full / --archive)")
    p.add_argument("--force", action="store_true", help="replace an existing data_root/upi-s1h")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--deep", action="store_true", help="check the pixel values of every mask (default: 20 per kind)")
    p.add_argument("--max-unpacked-gb", type=float, default=MAX_UNPACKED_GB,
                   help=f"refuse to unpack more than this (default {MAX_UNPACKED_GB:g} GB; the LSP and LSPe masks are well below 1 GB)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    import_hybrid_pose()
    from hybrid_pose.datacheck import check_upi_s1h
    root, q = a.data_root, a.quiet
    target, partial = root / "upi-s1h", root / ".partial-upi-s1h"
    check = lambda folder: check_upi_s1h(folder, root, a.lsp_range, a.expect_lspet, a.deep)
    done = existing_install(target, check, a.force)
    if done is not None: return done
    try:
        source, errors = None, []
        if a.archive:
            if not a.archive.is_file(): raise DownloadError(f"{a.archive} does not exist")
            archive_kind(a.archive)
            if a.sha256: record_checksum(a.archive, root / "downloads/checksums.json", a.sha256, None, q)
            source = open(a.archive, "rb")
        elif not a.full:
            for url in a.urls or MIRRORS:
                source = open_remote_zip_source(url, a.timeout)
                if source is not None:
                    if not q: print(f"reading the members of {url} in place (byte ranges)")
                    break
                errors.append(f"{url}: cannot be read in pieces")
        if source is None:
            try:
                archive, url = fetch(a.urls or MIRRORS, root / "downloads/upi-s1h.zip", a.retries, a.timeout, q,
                                     check=archive_kind)
            except DownloadError as e:
                print(f"error: {e}\n\n{MANUAL}", file=sys.stderr); return 2
            record_checksum(archive, root / "downloads/checksums.json", a.sha256, url, q)
            source = open(archive, "rb")
        with source:
            done = extract(source, partial, select, skip_existing=True, quiet=q, max_bytes=int(a.max_unpacked_gb * 1e9))
        if not q: print(f"extracted {len(done)} mask files into {partial}")
        if not done: raise DownloadError("the archive holds no data/lsp/ or data/lsp_extended/ masks. Is it upi-s1h.zip?")
        chk = check(partial)
        if not q: print(chk)
        if chk.status != "present":
            raise DownloadError(f"the extracted masks are not complete (see above); nothing was installed. Delete {partial} "
                                "and the archive if they are damaged, then rerun.")
        install(partial, target, a.force, q)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr); return 1
    print(f"done: {target}. Check everything with: python data_scripts/verify_data.py --data-root {root}")
    print(licensed_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
