#!/usr/bin/env python
"""Get the 16 real LSP images with their UPi-S1h silhouettes that the paper's authors kept in their repository,
verify them by content, and write them to data/lsp_sample in the LSP layout (the registered source `lsp_sample`).

    python data_scripts/get_lsp_sample.py [--data-root data] [--from FILE] [--force]

Source: github.com/maxpit/human-pose-estimation at commit 379a2c3c6ba1b2e599ce152631f447e2f125f0e7, file
simple_datasets/lsp_16.tfrecords (114,636 bytes; `--from` takes a copy you have). It is a TFRecord file (length, CRC,
serialized tf.train.Example) with one record per image: image/encoded (the JPEG, original LSP resolution),
image/seg_gt (its UPi-S1h silhouette, a PNG of the same size, 0/255), image/x and image/y (the 14 LSP joints, pixels),
image/visibility (1 = visible: LSP's flag flipped), image/filename (imNNNN.jpg), image/width, image/height,
image/center. The file's SHA-256 and the SHA-256 of every image and every silhouette are pinned below.

Written: lsp_sample/images/imNNNN.jpg and lsp_sample/masks/imNNNN_segmentation.png (the bytes as stored),
lsp_sample/joints.mat (`joints` of shape (3, 14, 16): x, y, flag with LSP's 1 = occluded). Images, silhouettes and
joints are paired by the image number in image/filename, never by position in the file. Split (hybrid_pose.data):
im0001-0008 train, im0009-0016 validation. Exit status: 0 written (or already complete), 2 on any error (one line).
The images are LSP's (Johnson & Everingham, BMVC 2010), the silhouettes UPi-S1h's (Lassner et al., CVPR 2017); cite
both, and do not commit them.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _download import DownloadError, check_pinned, fetch, import_hybrid_pose, install  # noqa: E402

COMMIT = "379a2c3c6ba1b2e599ce152631f447e2f125f0e7"
URL = f"https://raw.githubusercontent.com/maxpit/human-pose-estimation/{COMMIT}/simple_datasets/lsp_16.tfrecords"
FILE_NAME, SIZE = "lsp_16.tfrecords", 114_636
SHA256 = "e74226ce40db91b8dd27cce06907c5f09c5da9cf24fabeccfd3aa0ebf944910f"
EXPECTED = {  # image number: (SHA-256 of its JPEG, SHA-256 of its silhouette PNG), as stored in the file
    1: ("aeeb8a05a805eac0e20b8bccdd893fd14dc896aeebd751f929c2c7b92d2b0784",
        "6951cef66e7f4ef91257589b5ca90ac191b81de69bf311a960b85dbb2e0d79d8"),
    2: ("ea3189965c7bfd4edf4934c1e67f971db5bfdbe77b14542ea51620021cdd0876",
        "4c8db18aa4e27a52416b3cdcb4cf37dfd03aa5f18b1ac12b0faf60bc46ab8780"),
    3: ("b5d7b1fc9248fcbade11b2fb6182374a1c420d37132fdfa1adb6a2ef150adec6",
        "f01da9d8f206e5cb1375bb48456e06ca6357b1339377a15ed10a323a54158ab6"),
    4: ("270629b21c6aad87f8ae2357b78f10f11efddfd110f65b08374e48c82d2165b3",
        "60790839490b25e46eaf9ddb51989dd33efceaaa3411a553a416acfb00114bdd"),
    5: ("e680f83f1812d8d34423e26ddeffba74edf02bdaa11519273c769c2c497326e0",
        "111e6026e5e55ca092202590ec0bda5bbeedc67eaadcc149dd2fe71095383b99"),
    6: ("c92d5a5393fc0bb9f04afea394619a1a4ca99d23ec9d7ab0303bf1f9abb061b8",
        "4df1fd38628c9f7ea24bad9e37b37f40ebc8919cc0bbbb59d28f767f97287d28"),
    7: ("a56a45abd2ab7678d93889814e5ece9fb86752cd61820dc5fa5de8fc5b5917b6",
        "37ddce0940ebceaab4348e0ee8b2fd3daa58e07c9954677009c70e3601e2abc1"),
    8: ("760601121d091a21fd4580f649c9c4b60a22ee844180c8fdcdd911a5b5b56550",
        "a06c788edbda5d6dbca81a0df7e49e203abdf16f7ee06c7cc8c6f277c7e90594"),
    9: ("9e9c9f5964817b5e0af08092cec9d8ec205863d9811231915ce8d24f223c36cb",
        "dc9f86f55e4351e7910fcbe7c65043fd9edbb9d6861b413dccd2900f3afd365f"),
    10: ("c760b6017d839f02767868e198fde5acd9e7692d8e6b97febad880b2e4560420",
         "8e65d8e6be941ae2efcdc854643831c1208cefe1db17f84976aa58c49aaacf64"),
    11: ("9ecdb9bbda7a0bdf7461956aed66b0eeb1765852cc432c0542d63af500c99f30",
         "523390332203a920a12ce29ba28cf4638e82b5471b3538d1389195efa88b1176"),
    12: ("1eb5d38b97dbec256ea153d28fe43c0d2d7f7e7b7d73dbcf0f979cb1d20d5d00",
         "539070625c522c8d4937aa6c4c773df016d52bcb91d6d23edc920bdca71bed55"),
    13: ("fdbe6b9a205a3b7c7f6a0a9b57555b797eea88f86e6cb0c408d9ebd4d994d457",
         "8446dd60bc0b25a4f104f5ae36b9519284176cf1db21b566ad70cfe35bcd8ee0"),
    14: ("1a46d23f8673a4bdacb27e29185a0e89c14fbd93021694a5581602703e81ed48",
         "105fb845219bc0220cfe8f60d22c588671ab51a3cabfdebfa33740b22e805bde"),
    15: ("6ffc99b2976583e3a9710082fdbcef6f145a5b41b5b97e38014a5d9edaf5ecf0",
         "d8ca4904aa0c6ef1b00dd9446388f4a3370e08f8c87fd81a1d7cfe595a595096"),
    16: ("7a5ee175ff3f193c401fd233f6e80d189a375b0bdb4d4a5401a19714dfa165b4",
         "e71452a4493c54d830c746ebfabc8b96e6ade2a0b8ce41093653f9391f500097"),
}
KEYS = ("image/encoded", "image/seg_gt", "image/x", "image/y", "image/visibility", "image/filename")


def read_lsp_sample(path) -> dict:
    """The records of an lsp_16-format TFRecord file: {image number: dict(image=JPEG bytes, mask=PNG bytes,
    joints=(14,3) float64 x, y, visible)}, keyed by the number in image/filename. Raises DownloadError (one line)."""
    import numpy as np
    from PIL import Image
    import_hybrid_pose()
    from hybrid_pose.poses import parse_example, read_tfrecord
    path = Path(path)
    try: recs = read_tfrecord(path, on_error="raise")
    except (ValueError, OSError) as e: raise DownloadError(" ".join(str(e).split())) from None
    if not recs: raise DownloadError(f"{path}: holds no records; expected {len(EXPECTED)} images")
    out = {}
    for k, (offset, payload) in enumerate(recs):
        where = f"{path}: record {k} (byte {offset})"
        try: ex = parse_example(payload)
        except ValueError as e: raise DownloadError(f"{where}: not a tf.train.Example ({e})") from None
        missing = [key for key in KEYS if key not in ex or len(ex[key]) == 0]
        if missing: raise DownloadError(f"{where}: lacks {', '.join(missing)}; expected the features {', '.join(KEYS)}")
        name = ex["image/filename"][0].decode("utf-8", "replace")
        if not (len(name) == 10 and name.startswith("im") and name[2:6].isdigit() and name.endswith(".jpg")):
            raise DownloadError(f"{where}: image/filename is {name!r}; expected imNNNN.jpg")
        n = int(name[2:6])
        if n in out: raise DownloadError(f"{where}: a second record for {name}")
        x, y, v = (np.asarray(ex[f"image/{c}"], np.float64) for c in ("x", "y", "visibility"))
        if not (x.shape == y.shape == v.shape == (14,)) or not np.isin(v, (0, 1)).all() or not np.isfinite([x, y]).all():
            raise DownloadError(f"{where} ({name}): joints must be 14 finite x, y and visibility 0/1; got {x.shape}, {y.shape}, {v.shape}")
        image, mask = ex["image/encoded"][0], ex["image/seg_gt"][0]
        try:
            with Image.open(io.BytesIO(image)) as im: isize = im.size
            with Image.open(io.BytesIO(mask)) as m: msize, values = m.size, set(np.unique(np.asarray(m)).tolist())
        except Exception as e: raise DownloadError(f"{where} ({name}): an undecodable image or silhouette ({e})") from None
        if msize != isize or not values <= {0, 255}:
            raise DownloadError(f"{where} ({name}): the silhouette is {msize} with values {sorted(values)[:5]}; expected "
                                f"{isize} (the image's size) with values 0/255")
        out[n] = dict(image=image, mask=mask, joints=np.stack([x, y, v], 1), name=name)
    return out


def verify_sample(sample: dict, expected: dict = EXPECTED, what: str = "the file"):
    "Each image and silhouette by its SHA-256 (`EXPECTED`), paired by image number."
    if sorted(sample) != sorted(expected):
        raise DownloadError(f"{what} holds images {sorted(sample)}; expected im0001-im{max(expected):04d} ({len(expected)})")
    for n, rec in sorted(sample.items()):
        for kind, data, want in (("image", rec["image"], expected[n][0]), ("silhouette", rec["mask"], expected[n][1])):
            if hashlib.sha256(data).hexdigest() != want:
                raise DownloadError(f"{what}: the {kind} of im{n:04d} has SHA-256 {hashlib.sha256(data).hexdigest()}; "
                                    f"expected {want} (not the authors' data)")


def write_sample(sample: dict, folder: Path):
    "Write images, silhouettes and joints.mat (LSP layout, flag 1 = occluded) into `folder`, by image number."
    import numpy as np
    import scipy.io
    (folder / "images").mkdir(parents=True, exist_ok=True); (folder / "masks").mkdir(parents=True, exist_ok=True)
    joints = np.zeros((3, 14, max(sample)))
    for n, rec in sorted(sample.items()):
        (folder / "images" / f"im{n:04d}.jpg").write_bytes(rec["image"])
        (folder / "masks" / f"im{n:04d}_segmentation.png").write_bytes(rec["mask"])
        j = rec["joints"]
        joints[:, :, n - 1] = np.stack([j[:, 0], j[:, 1], 1 - j[:, 2]])
    scipy.io.savemat(folder / "joints.mat", {"joints": joints}, do_compression=True)


def installed_sample(folder: Path) -> dict:
    "What an installed lsp_sample folder holds, in `read_lsp_sample`'s form (image and silhouette bytes only)."
    imgs = {int(p.name[2:6]): p for p in (folder / "images").glob("im????.jpg")}
    return {n: dict(image=p.read_bytes(), mask=(folder / "masks" / f"im{n:04d}_segmentation.png").read_bytes())
            for n, p in imgs.items() if (folder / "masks" / f"im{n:04d}_segmentation.png").is_file()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="get_lsp_sample.py", description=__doc__.split("\n\n")[0],
                                epilog=f"Downloaded from:\n  {URL}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path("data"), help="the data folder (default: data)")
    p.add_argument("--from", dest="src", type=Path, help=f"use a copy of {FILE_NAME} you have (no download)")
    p.add_argument("--url", default=URL, help="download from URL instead (http(s):// or file://; the content is still pinned)")
    p.add_argument("--force", action="store_true", help="replace an existing data_root/lsp_sample")
    p.add_argument("--timeout", type=float, default=60, help="network timeout in seconds (default 60)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    root, target = a.data_root, a.data_root / "lsp_sample"
    try:
        if target.exists() and not a.force:
            verify_sample(installed_sample(target), what=str(target))
            print(f"{target} is already complete; nothing to do (--force rewrites it)."); return 0
        if a.src is not None:
            if not a.src.is_file(): raise DownloadError(f"{a.src}: does not exist; expected a copy of {FILE_NAME} ({URL})")
            path = a.src
        else: path, _ = fetch([a.url], root / "downloads" / FILE_NAME, timeout=a.timeout, quiet=a.quiet)
        check_pinned(path, SHA256, SIZE, f"the authors' {FILE_NAME} of commit {COMMIT[:12]}")
        sample = read_lsp_sample(path)
        verify_sample(sample, what=str(path))
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-lsp_sample-", dir=root))
        try:
            write_sample(sample, tmp / "lsp_sample")
            install(tmp / "lsp_sample", target, a.force, a.quiet)
        finally: shutil.rmtree(tmp, ignore_errors=True)
    except DownloadError as e:
        print(f"get_lsp_sample.py: error: {' '.join(str(e).split())}", file=sys.stderr); return 2
    print(f"done: {target} ({len(sample)} images, silhouettes, joints.mat); "
          f"use it as dataset 'lsp_sample' (train im0001-0008, val im0009-0016)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
