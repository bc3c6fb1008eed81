#!/usr/bin/env python
"""Download LSP (Leeds Sports Pose, low-resolution `lsp_dataset.zip`, 2000 images), verify it, unpack it to data/lsp.

    python data_scripts/get_lsp.py [--data-root data] [--url URL] [--archive lsp_dataset.zip] [--force]

Mirrors are tried in order; an interrupted download resumes (rerun the same command). The zip's CRCs, the 2000
images im0001-im2000, `joints` of shape (3, 14, 2000) with flags in {0, 1}, readable images and their size are checked
in a temporary folder (`lsp_dataset_original.zip`, the full-resolution release with the same names, is refused: the
UPi-S1h masks match the small images of `lsp_dataset.zip`), which is then renamed to data/lsp. The archive's SHA-256 is recorded in data/downloads/checksums.json
(no checksum is published). Source: the LSP release of Johnson & Everingham (BMVC 2010) and its mirrors listed below. Licence: none stated; cite Johnson &
Everingham, BMVC 2010. The silhouettes come from `get_upi_s1h.py`.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _download import images_dataset_main, licensed_note  # noqa: E402

MIRRORS = [
    "http://sam.johnson.io/research/lsp_dataset.zip",            # the author's page; reported dead since 2020-21
    "http://www.comp.leeds.ac.uk/mat4saj/lsp_dataset.zip",       # the original host; redirects since 2017
    "https://web.archive.org/web/2020id_/http://sam.johnson.io/research/lsp_dataset.zip",  # Wayback Machine (unverified)
]
MANUAL = """If no mirror works, get lsp_dataset.zip (not lsp_dataset_original.zip; about 34 MB: images/im0001-2000.jpg, joints.mat, visualized/,
README.txt) elsewhere, e.g. the Hugging Face re-upload https://huggingface.co/datasets/LiuRunky/Leeds_Sports_Pose
(if it offers the zip) or the Wayback Machine, then run:
    python data_scripts/get_lsp.py --archive PATH/TO/lsp_dataset.zip"""


def main(argv=None) -> int:
    return images_dataset_main(argv, "lsp", "lsp_dataset.zip", MIRRORS, "lsp", 2000, None,
                               __doc__.split("\n\n")[0], MANUAL + "\n" + licensed_note(), low_res="lsp_dataset.zip")


if __name__ == "__main__":
    sys.exit(main())
