#!/usr/bin/env python
"""Download LSP-extended (`lspet_dataset.zip`, 10,000 images), verify it, unpack it to data/lspet.

    python data_scripts/get_lspet.py [--data-root data] [--url URL] [--archive lspet_dataset.zip] [--force]

This is the low-resolution LSPET whose images the UPi-S1h silhouettes match (not HR-LSPET). Mirrors are tried in
order; an interrupted download resumes. Checked before installing: the zip's CRCs, images im00001-im10000,
`joints` of shape (14, 3, 10000) with flags in {0, 1} (1 = visible), readable images. Sources:
the LSPe release of Johnson & Everingham (CVPR 2011). Licence: none stated; cite Johnson & Everingham, CVPR 2011.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _download import images_dataset_main, licensed_note  # noqa: E402

MIRRORS = [
    "http://sam.johnson.io/research/lspet_dataset.zip",          # the author's page; reported dead
    "http://www.comp.leeds.ac.uk/mat4saj/lspet_dataset.zip",     # the original host; dead since 2017-18
    "https://web.archive.org/web/2020id_/http://sam.johnson.io/research/lspet_dataset.zip",  # Wayback Machine (unverified)
]
MANUAL = """No public mirror of lspet_dataset.zip is known to work (about 206 MB: images/im00001-10000.jpg, joints.mat,
README.txt). If you find a copy (the Wayback Machine, a colleague), run:
    python data_scripts/get_lspet.py --archive PATH/TO/lspet_dataset.zip
Do not substitute HR-LSPET (hr-lspet.zip): its images are not the ones the UPi-S1h silhouettes were drawn on."""


def main(argv=None) -> int:
    return images_dataset_main(argv, "lspet", "lspet_dataset.zip", MIRRORS, "lspet", 10000, None,
                               __doc__.split("\n\n")[0], MANUAL + "\n" + licensed_note())


if __name__ == "__main__":
    sys.exit(main())
