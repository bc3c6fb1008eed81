#!/usr/bin/env python
"""Download LSP-extended (10,000 images), verify it, unpack it to data/lspet.

    python data_scripts/get_lspet.py [--data-root data] [--url URL] [--archive lspet_dataset.zip] [--force]

This is the low-resolution LSPET whose images the UPi-S1h silhouettes match (not HR-LSPET). Mirrors are tried in
order; an interrupted download resumes. Checked before installing: the zip's CRCs, images im00001-im10000,
`joints` of shape (14, 3, 10000) with flags in {0, 1} (1 = visible), readable images. Sources: the LSPe release of
Johnson & Everingham (CVPR 2011), whose author's page is gone, and a copy of it in the public GitHub repository
axelcarlier/lsp (commit 8fabf31, "initial images restored", 2021-02-27: images/im00001-10000.jpg, the original
joints.mat and the dataset's README; 172 MB). GitHub makes that zip on request, so its bytes are not pinned; its
content is: the SHA-256 of joints.mat and a digest of the 10,000 images (`content_digest`), measured on that commit.
The repository's own two extra files (image_resize.ipynb, labels.npz) are not installed.
Licence: none stated; cite Johnson & Everingham, CVPR 2011.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _download import Mirror, images_dataset_main, licensed_note  # noqa: E402

GITHUB_COMMIT = "8fabf3183516b1be5f9d44bd1c516609637e983e"  # axelcarlier/lsp, "initial images restored", 2021-02-27
GITHUB_MIRROR = Mirror(
    f"https://github.com/axelcarlier/lsp/archive/{GITHUB_COMMIT}.zip", archive=f"lsp-{GITHUB_COMMIT[:7]}.zip",
    content={"joints.mat": "cc66465117888d9f43aac78c15c4548e37df5022640a193f2002fd084cba13ef",   # (14, 3, 10000) float64
             "images": "8381b10e03c542afccbd3b2911ca21ccd21b971d72425f5fd7113a6c0c4b8fc9"},      # content_digest(images/)
    extra=("image_resize.ipynb", "labels.npz"))
MIRRORS = [
    GITHUB_MIRROR,                                               # works (2026); top folder lsp-<commit>/
    "http://sam.johnson.io/research/lspet_dataset.zip",          # the author's page; reported dead
    "http://www.comp.leeds.ac.uk/mat4saj/lspet_dataset.zip",     # the original host; dead since 2017-18
    "https://web.archive.org/web/2020id_/http://sam.johnson.io/research/lspet_dataset.zip",  # Wayback Machine (unverified)
]
MANUAL = f"""If no mirror works, get lspet_dataset.zip (about 206 MB: images/im00001-10000.jpg, joints.mat, README.txt) or
the GitHub copy ({GITHUB_MIRROR.url}) by other means and run:
    python data_scripts/get_lspet.py --archive PATH/TO/lspet_dataset.zip
Do not substitute HR-LSPET (hr-lspet.zip): its images are not the ones the UPi-S1h silhouettes were drawn on."""


def main(argv=None, mirrors=None) -> int:
    return images_dataset_main(argv, "lspet", "lspet_dataset.zip", MIRRORS if mirrors is None else mirrors, "lspet", 10000,
                               None, __doc__.split("\n\n")[0], MANUAL + "\n" + licensed_note())


if __name__ == "__main__":
    sys.exit(main())
