"""data_scripts/: download (mirrors in order, HTTP Range resume, file:// URLs), verify, unpack atomically, report.

Offline: small fake archives in the real formats (LSP's and LSPe's zips without a top folder, joints.mat in the real
layouts with few images and `--expect-count`, UPi-S1h's `upi-s1h/data/...` tree with an MPII bulk that must not be
read) served by file:// URLs or a local HTTP server with Range support on 127.0.0.1.
"""
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.io

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCRIPTS = ROOT / "data_scripts"

from hybrid_pose.fixtures import write_fake_layout  # noqa: E402


def _load(name):
    "Import a data script as a module (its main(argv) runs in-process: faster than a subprocess)."
    spec = importlib.util.spec_from_file_location(f"_ds_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


get_lsp, get_lspet, get_upi, verify = (_load(n) for n in ("get_lsp", "get_lspet", "get_upi_s1h", "verify_data"))
dl = sys.modules["_download"]


def _zip(path: Path, files: dict, junk: int = 0):
    "Write a zip of {arcname: source path or bytes}; `junk` bytes of incompressible filler as an MPII image."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if junk:  # MPII bulk before and after the masks: neither may be downloaded
            zf.writestr("upi-s1h/data/mpii/images/00001.png", np.random.default_rng(0).bytes(junk), zipfile.ZIP_STORED)
        for name, src in files.items():
            zf.writestr(name, src if isinstance(src, bytes) else Path(src).read_bytes())
        if junk:
            zf.writestr("upi-s1h/data/mpii/images/00002.png", np.random.default_rng(1).bytes(junk), zipfile.ZIP_STORED)
    return path


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    "Fake archives built from a stick-figure layout: LSP 5 images, LSPe 4 (3 with a silhouette), UPi-S1h."
    d = tmp_path_factory.mktemp("archives")
    src = d / "src"
    write_fake_layout(src, lsp=(1, 2, 3, 4, 5), lspet=(1, 2, 3, 4), lspet_masks=(1, 2, 4), totals=(5, 4), seed=1)
    lsp = {f"images/{p.name}": p for p in sorted((src / "lsp/images").iterdir())}
    lsp.update({"joints.mat": src / "lsp/joints.mat", "README.txt": b"LSP fake\n",
                "visualized/im0001.jpg": src / "lsp/images/im0001.jpg"})
    lspet = {f"images/{p.name}": p for p in sorted((src / "lspet/images").iterdir())}
    lspet.update({"joints.mat": src / "lspet/joints.mat", "README.txt": b"LSPET fake\n"})
    up = {f"upi-s1h/{p.relative_to(src / 'upi-s1h')}": p for p in sorted((src / "upi-s1h").rglob("*.png"))}
    out = dict(src=src, dir=d, lsp=_zip(d / "lsp_dataset.zip", lsp), lspet=_zip(d / "lspet_dataset.zip", lspet),
               up=_zip(d / "upi-s1h.zip", up, junk=3 << 20))
    bad = dict(lsp); bad["joints.mat"] = d / "wrong.mat"
    scipy.io.savemat(d / "wrong.mat", {"joints": np.zeros((14, 3, 5))})
    out["lsp_wrong_joints"] = _zip(d / "wrong_joints.zip", bad)
    raw = bytearray(out["lsp"].read_bytes())
    with zipfile.ZipFile(out["lsp"]) as zf:
        info = zf.getinfo("images/im0003.jpg")
    raw[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF   # flip a byte inside a member's data
    out["lsp_bad_crc"] = d / "bad_crc.zip"; out["lsp_bad_crc"].write_bytes(bytes(raw))
    return out


class _Server:
    "A local HTTP server with Range support; `cut_after` makes the next full response stop early (an interruption)."
    def __init__(self, folder: Path):
        self.folder, self.cut_after, self.log, self.bytes = folder, None, [], 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a): pass

            def do_GET(self):
                f = server.folder / self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                if self.path.endswith(".html"):
                    body = b"<html>gone</html>"
                    self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
                    self.wfile.write(body); return
                if not f.is_file():
                    self.send_error(404); return
                data = f.read_bytes()
                if rng:
                    a, b = rng.split("=")[1].split("-")
                    a, b = int(a), int(b) if b else len(data) - 1
                    if a >= len(data):
                        self.send_response(416); self.send_header("Content-Range", f"bytes */{len(data)}"); self.end_headers(); return
                    chunk = data[a:b + 1]
                    self.send_response(206); self.send_header("Content-Range", f"bytes {a}-{a + len(chunk) - 1}/{len(data)}")
                else:
                    chunk = data
                    self.send_response(200)
                self.send_header("Content-Length", str(len(chunk))); self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.cut_after is not None and not rng:
                    chunk, server.cut_after = chunk[:server.cut_after], None
                    self.close_connection = True
                self.wfile.write(chunk); server.bytes += len(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(fake):
    s = _Server(fake["dir"])
    yield s
    s.httpd.shutdown(); s.httpd.server_close()


def _sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_get_lsp_file_url_then_verify(fake, tmp_path):
    "The plain commands, as subprocesses from another folder: download from file://, install, verify, rerun = no-op."
    data = tmp_path / "data"
    cmd = [sys.executable, str(SCRIPTS / "get_lsp.py"), "--data-root", str(data), "--url", fake["lsp"].as_uri(),
           "--expect-count", "5"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in (data / "lsp/images").iterdir()) == [f"im{i:04d}.jpg" for i in range(1, 6)]
    assert scipy.io.loadmat(data / "lsp/joints.mat")["joints"].shape == (3, 14, 5)
    assert (data / "lsp/visualized/im0001.jpg").is_file() and (data / "lsp/README.txt").is_file()
    assert [p.name for p in data.iterdir() if p.name.startswith(".")] == []          # no temporary folder left
    rec = json.loads((data / "downloads/checksums.json").read_text())["lsp_dataset.zip"]
    assert rec["sha256"] == _sha(fake["lsp"]) and rec["url"] == fake["lsp"].as_uri()
    r = subprocess.run([sys.executable, str(SCRIPTS / "verify_data.py"), "--data-root", str(data), "--datasets", "lsp",
                        "--lsp-count", "5"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "PRESENT" in r.stdout, r.stdout + r.stderr
    assert get_lsp.main(["--data-root", str(data), "--url", "file:///nonexistent.zip", "--expect-count", "5"]) == 0


def test_resume_after_interruption_http(fake, server, tmp_path, capsys):
    "A connection cut after 20 kB leaves a .part; the rerun asks for the rest with a Range header and installs."
    data = tmp_path / "data"
    args = ["--data-root", str(data), "--url", f"{server.url}/lspet_dataset.zip", "--expect-count", "4", "--retries", "0"]
    server.cut_after = 20_000
    assert get_lspet.main(args) == 2
    part = data / "downloads/lspet_dataset.zip.part"
    assert part.stat().st_size == 20_000 and not (data / "lspet").exists()
    assert "rerun to resume" in capsys.readouterr().err
    assert get_lspet.main(args) == 0
    assert server.log[-1] == ("/lspet_dataset.zip", "bytes=20000-")
    assert _sha(data / "downloads/lspet_dataset.zip") == _sha(fake["lspet"]) and not part.exists()
    assert scipy.io.loadmat(data / "lspet/joints.mat")["joints"].shape == (14, 3, 4)
    assert verify.main(["--data-root", str(data), "--datasets", "lspet", "--lspet-count", "4"]) == 0


def test_resume_within_one_run_and_file_url(fake, server, tmp_path):
    "With retries the same run resumes by itself; a .part of a file:// download resumes from its size."
    dest = tmp_path / "a.zip"
    server.cut_after = 5_000
    dl.download(f"{server.url}/lsp_dataset.zip", dest, retries=1, quiet=True)
    assert _sha(dest) == _sha(fake["lsp"]) and ("/lsp_dataset.zip", "bytes=5000-") in server.log
    dest2, url = tmp_path / "b.zip", fake["lsp"].as_uri()
    part = dest2.with_name("b.zip.part")
    part.write_bytes(fake["lsp"].read_bytes()[:7777]); dest2.with_name("b.zip.part.url").write_text(url)
    dl.download(url, dest2, retries=0, quiet=True)
    assert _sha(dest2) == _sha(fake["lsp"])


def test_mirrors_in_order(fake, server, tmp_path):
    "A missing file and an HTML error page are skipped; the next mirror is used."
    data = tmp_path / "data"
    assert get_lsp.main(["--data-root", str(data), "--expect-count", "5", "--quiet", "--retries", "0",
                         "--url", (tmp_path / "nope.zip").as_uri(), "--url", f"{server.url}/gone.html",
                         "--url", f"{server.url}/missing.zip", "--url", f"{server.url}/lsp_dataset.zip"]) == 0
    assert [p for p, _ in server.log] == ["/gone.html", "/missing.zip", "/lsp_dataset.zip"]
    assert (data / "lsp/joints.mat").is_file()


@pytest.mark.parametrize("case, expect", [("lsp_bad_crc", "download again"), ("lsp_wrong_joints", "(14, 3, 5)"),
                                           ("lsp", "1995 of 2000 images missing")])
def test_bad_archives_install_nothing(fake, tmp_path, capsys, case, expect):
    "A damaged archive, joints of the wrong shape, or too few images: exit 1, a clear message, nothing installed."
    data = tmp_path / "data"
    argv = ["--data-root", str(data), "--archive", str(fake[case])] + ([] if case == "lsp" else ["--expect-count", "5"])
    assert get_lsp.main(argv) == 1
    out = capsys.readouterr()
    assert expect in out.out + out.err, out
    assert not (data / "lsp").exists() and [p.name for p in data.iterdir()] == ["downloads"]


def test_existing_folder_needs_force(fake, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "lsp/images").mkdir(parents=True)
    argv = ["--data-root", str(data), "--archive", str(fake["lsp"]), "--expect-count", "5", "--quiet"]
    assert get_lsp.main(argv) == 1 and "--force" in capsys.readouterr().err
    assert get_lsp.main(argv + ["--force"]) == 0
    assert len(list((data / "lsp/images").iterdir())) == 5 and not list(data.glob(".old-*"))


def _install_images(fake, data):
    for src in ("lsp", "lspet"): shutil.copytree(fake["src"] / src, data / src)


def test_upi_s1h_remote_members_only(fake, server, tmp_path):
    "Over HTTP with Range, only the zip's directory and the LSP/LSPe masks are read, not the MPII bulk."
    data = tmp_path / "data"; _install_images(fake, data)
    argv = ["--data-root", str(data), "--url", f"{server.url}/upi-s1h.zip", "--lsp-range", "1-5", "--expect-lspet", "3",
            "--quiet"]
    assert get_upi.main(argv) == 0
    masks = sum(p.stat().st_size for p in (fake["src"] / "upi-s1h").rglob("*.png"))
    assert server.bytes < masks + (300 << 10), (server.bytes, masks, fake["up"].stat().st_size)   # masks + directory
    assert all(r and r.startswith("bytes=") for _, r in server.log)
    names = sorted(p.relative_to(data / "upi-s1h").as_posix() for p in (data / "upi-s1h").rglob("*.png"))
    assert len(names) == 13 and not any("mpii" in n for n in names) and "data/lsp_extended/im00004_segmentation.png" in names
    assert not (data / ".partial-upi-s1h").exists() and not (data / "downloads/upi-s1h.zip").exists()
    assert verify.main(["--data-root", str(data), "--lsp-count", "5", "--lspet-count", "4", "--lspet-masks", "3",
                        "--lsp-mask-range", "1-5", "--datasets", "lsp", "lspet", "upi-s1h"]) == 0
    assert get_upi.main(argv) == 0                                           # already present: nothing to do


def test_upi_s1h_full_download_and_partial_resume(fake, tmp_path):
    "--full downloads the zip; an interrupted extraction keeps good members and redoes a damaged one."
    data = tmp_path / "data"; _install_images(fake, data)
    partial = data / ".partial-upi-s1h/data/lsp"
    partial.mkdir(parents=True)
    good = fake["src"] / "upi-s1h/data/lsp/im0001_segmentation.png"
    shutil.copy(good, partial / good.name)
    (partial / "im0002_segmentation.png").write_bytes(b"half a file")
    assert get_upi.main(["--data-root", str(data), "--url", fake["up"].as_uri(), "--full", "--lsp-range", "1-5",
                         "--expect-lspet", "3", "--quiet"]) == 0
    assert _sha(data / "downloads/upi-s1h.zip") == _sha(fake["up"])
    for n in (1, 2):
        name = f"im{n:04d}_segmentation.png"
        assert _sha(data / "upi-s1h/data/lsp" / name) == _sha(fake["src"] / "upi-s1h/data/lsp" / name)


def test_upi_s1h_wrong_counts_install_nothing(fake, tmp_path, capsys):
    data = tmp_path / "data"
    assert get_upi.main(["--data-root", str(data), "--archive", str(fake["up"]), "--quiet"]) == 1   # real counts
    err = capsys.readouterr().err
    assert "not complete" in err and not (data / "upi-s1h").exists()


def test_verify_data_statuses(fake, tmp_path, capsys):
    data = tmp_path / "data"; _install_images(fake, data)
    assert verify.main(["--data-root", str(data), "--lsp-count", "5", "--lspet-count", "4"]) == 0   # upi-s1h missing: fine
    assert verify.main(["--data-root", str(data), "--datasets", "upi-s1h"]) == 2                   # asked for: missing
    (data / "lsp/images/im0004.jpg").unlink()
    capsys.readouterr()
    assert verify.main(["--data-root", str(data), "--datasets", "lsp", "--lsp-count", "5"]) == 1
    assert "MALFORMED" in capsys.readouterr().out
    assert verify.main(["--data-root", str(data), "--licensed", "--datasets", "lspet", "--lspet-count", "4"]) == 0
    out = capsys.readouterr().out
    assert "smpl.is.tue.mpg.de" in out and "amass.is.tue.mpg.de" in out and "--licensed" in out
    assert verify.main(["--data-root", str(data), "--datasets", "lsp", "--lsp-count", "5", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["lsp"]["status"] == "malformed" and "im 4" in rep["lsp"]["problems"][0]


def test_safe_member_names():
    assert dl._safe_name("a/b/c.png") == "a/b/c.png"
    assert dl._safe_name("/etc/passwd") is None and dl._safe_name("a/../../x") is None
    assert get_upi.select("upi-s1h/data/lsp/im0001_part_segmentation.png") == "data/lsp/im0001_part_segmentation.png"
    assert get_upi.select("upi-s1h/data/mpii/images/00001_segmentation.png") is None


def _png_bytes(path, edit=None):
    "A PNG's bytes, optionally with its pixel array edited in place by `edit(a)`."
    import io
    from PIL import Image
    a = np.array(Image.open(path))
    if edit is not None: edit(a)
    buf = io.BytesIO(); Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_upi_s1h_stray_mask_values_are_counted_not_fatal(fake, tmp_path, capsys):
    "One stray value in a sampled silhouette used to install nothing; now it installs and the note gives the count."
    data = tmp_path / "data"; _install_images(fake, data)
    up = {f"upi-s1h/{p.relative_to(fake['src'] / 'upi-s1h')}": p for p in sorted((fake["src"] / "upi-s1h").rglob("*.png"))}
    sil = "upi-s1h/data/lsp/im0002_segmentation.png"
    def stray(a): a[0, :2] = 254
    up[sil] = _png_bytes(up[sil], stray)
    archive = _zip(tmp_path / "upi-s1h.zip", up)
    argv = ["--data-root", str(data), "--archive", str(archive), "--lsp-range", "1-5", "--expect-lspet", "3"]
    assert get_upi.main(argv) == 0
    out = capsys.readouterr().out
    assert "1 of 5 sampled silhouette files hold 2 pixels outside [0, 255] (values [254])" in out, out
    assert (data / "upi-s1h/data/lsp/im0002_segmentation.png").is_file()


def test_upi_s1h_masks_of_another_kind_install_nothing(fake, tmp_path, capsys):
    "Silhouettes full of grey levels (JPEG-like) in most files: refused, nothing installed."
    data = tmp_path / "data"; _install_images(fake, data)
    up = {f"upi-s1h/{p.relative_to(fake['src'] / 'upi-s1h')}": p for p in sorted((fake["src"] / "upi-s1h").rglob("*.png"))}
    for k in list(up):
        if k.endswith("0_segmentation.png") or "/lsp/im000" in k and k.endswith("_segmentation.png") and "part" not in k:
            up[k] = _png_bytes(up[k], lambda a: a.__setitem__(slice(None), np.where(a > 0, 200, 30)))
    archive = _zip(tmp_path / "upi-s1h.zip", up)
    assert get_upi.main(["--data-root", str(data), "--archive", str(archive), "--lsp-range", "1-5",
                         "--expect-lspet", "3"]) == 1
    out = capsys.readouterr()
    assert "5 of 5 sampled silhouette files are not silhouettes of this kind" in out.out, out
    assert not (data / "upi-s1h").exists()


def test_original_resolution_lsp_is_named_at_install(fake, tmp_path, capsys):
    "lsp_dataset_original.zip (same names, large images) is refused at install, naming lsp_dataset.zip."
    from PIL import Image
    import io
    files = {}
    for p in sorted((fake["src"] / "lsp/images").iterdir()):
        im = Image.open(p); buf = io.BytesIO()
        im.resize((im.width * 3, im.height * 3)).save(buf, format="JPEG"); files[f"images/{p.name}"] = buf.getvalue()
    j = scipy.io.loadmat(fake["src"] / "lsp/joints.mat")["joints"]; j[:2] *= 3
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": j})
    files.update({"joints.mat": tmp_path / "joints.mat", "README.txt": b"LSP original\n"})
    archive = _zip(tmp_path / "lsp_dataset_original.zip", files)
    data = tmp_path / "data"
    assert get_lsp.main(["--data-root", str(data), "--archive", str(archive), "--expect-count", "5"]) == 1
    out = capsys.readouterr()
    assert "lsp_dataset_original.zip" in out.out and "Get lsp_dataset.zip instead" in out.out, out
    assert not (data / "lsp").exists()


def _link_zip(path: Path):
    "A zip with a symbolic link 'lnk' -> /tmp followed by 'lnk/x', plus '../evil', '/abs' and one good file."
    with zipfile.ZipFile(path, "w") as zf:
        link = zipfile.ZipInfo("lnk"); link.external_attr = (0o120777 << 16); zf.writestr(link, "/tmp")
        zf.writestr("lnk/x", b"x"); zf.writestr("../evil.txt", b"e"); zf.writestr("/abs.txt", b"a")
        zf.writestr("ok/good.txt", b"good")
    return path


def test_unsafe_members_are_dropped_and_counted(tmp_path, capsys):
    import tarfile
    out = dl.extract(_link_zip(tmp_path / "links.zip"), tmp_path / "z")
    assert sorted(out) == ["lnk/x", "ok/good.txt"] and (tmp_path / "z/lnk").is_dir() and not (tmp_path / "z/lnk").is_symlink()
    assert out.dropped == {"link": ["lnk"], "path traversal": ["../evil.txt"], "absolute path": ["/abs.txt"]}
    assert "dropped 3 unsafe archive members" in capsys.readouterr().err
    assert not (tmp_path / "evil.txt").exists()
    with tarfile.open(tmp_path / "links.tar", "w") as tf:
        for name, kind in (("lnk", tarfile.SYMTYPE), ("hard", tarfile.LNKTYPE), ("fifo", tarfile.FIFOTYPE)):
            ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = "/etc/passwd"; tf.addfile(ti)
        ti = tarfile.TarInfo("lnk/x"); ti.size = 1
        import io
        tf.addfile(ti, io.BytesIO(b"x"))
    out = dl.extract(tmp_path / "links.tar", tmp_path / "t")
    assert list(out) == ["lnk/x"] and out.dropped == {"link": ["lnk", "hard"], "special file": ["fifo"]}
    clash = tmp_path / "clash.zip"                                         # a file 'a' and a file 'a/b'
    with zipfile.ZipFile(clash, "w") as zf: zf.writestr("a", b"1"); zf.writestr("a/b", b"2")
    with pytest.raises(dl.DownloadError, match="clashes with .*a file and a folder of the same name"):
        dl.extract(clash, tmp_path / "c")


def test_unpacked_size_cap(fake, tmp_path, capsys):
    "A zip bomb (50 MB of zeros in a 50 kB zip) is refused under a 10 MB cap; the CLI says how to raise it."
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf: zf.writestr("images/zeros.bin", bytes(50 << 20))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(dl.DownloadError, match="more than 0.0 GB .*--max-unpacked-gb"):
        dl.extract(bomb, tmp_path / "b", max_bytes=10 << 20)
    assert not list((tmp_path / "b").iterdir())
    data = tmp_path / "data"
    assert get_lsp.main(["--data-root", str(data), "--archive", str(fake["lsp"]), "--expect-count", "5",
                         "--max-unpacked-gb", "0.00001"]) == 1
    assert "--max-unpacked-gb" in capsys.readouterr().err and not (data / "lsp").exists()


def _github_zip(fake, path: Path, commit: str, joints=None):
    "The layout of a GitHub archive of axelcarlier/lsp: lsp-<commit>/ with images/, joints.mat, README and two extras."
    top = f"lsp-{commit}/"
    files = {f"{top}images/{p.name}": p for p in sorted((fake["src"] / "lspet/images").iterdir())}
    files.update({f"{top}joints.mat": joints or fake["src"] / "lspet/joints.mat", f"{top}README.txt": b"LSPET README\n",
                  f"{top}image_resize.ipynb": b"{}", f"{top}labels.npz": b"PK"})
    return _zip(path, files)


def test_lspet_github_mirror_verified_by_content(fake, server, tmp_path, capsys):
    "The pinned GitHub archive: a dead mirror first, then the archive (top folder, extras dropped), pinned by content."
    import dataclasses
    m = get_lspet.GITHUB_MIRROR
    assert re.fullmatch(r"https://github\.com/axelcarlier/lsp/archive/[0-9a-f]{40}\.zip", m.url)
    assert m.url.split("/")[-1][:7] == "8fabf31" and set(m.content) == {"joints.mat", "images"}
    commit = m.url.split("/")[-1][:-4]
    _github_zip(fake, fake["dir"] / "gh.zip", commit)
    pins = {"joints.mat": _sha(fake["src"] / "lspet/joints.mat"), "images": dl.content_digest(fake["src"] / "lspet/images")}
    mirrors = [f"{server.url}/dead.zip", dataclasses.replace(m, url=f"{server.url}/gh.zip", content=pins)]
    data = tmp_path / "data"
    assert get_lspet.main(["--data-root", str(data), "--expect-count", "4", "--retries", "0"], mirrors=mirrors) == 0
    out = capsys.readouterr().out
    assert "content matches the pinned joints.mat and images" in out and "not installed: labels.npz" in out, out
    assert sorted(p.name for p in (data / "lspet").iterdir()) == ["README.txt", "images", "joints.mat"]
    assert len(list((data / "lspet/images").iterdir())) == 4
    assert (data / f"downloads/lsp-{commit[:7]}.zip").is_file() and not (data / "downloads/checksums.json").exists()
    assert [p for p, _ in server.log] == ["/dead.zip", "/gh.zip"]
    # the same archive given by hand is recognised by its layout and verified the same way
    assert get_lspet.main(["--data-root", str(tmp_path / "d2"), "--expect-count", "4", "--quiet",
                           "--archive", str(fake["dir"] / "gh.zip")], mirrors=mirrors[1:]) == 0
    # a copy whose joints.mat differs from the pinned one installs nothing
    j = scipy.io.loadmat(fake["src"] / "lspet/joints.mat")["joints"]; j[0, 0, 0] += 1
    scipy.io.savemat(tmp_path / "j.mat", {"joints": j})
    _github_zip(fake, fake["dir"] / "gh2.zip", commit, tmp_path / "j.mat")
    bad = [dataclasses.replace(mirrors[1], url=f"{server.url}/gh2.zip", archive="other.zip")]
    assert get_lspet.main(["--data-root", str(tmp_path / "d3"), "--expect-count", "4", "--quiet"], mirrors=bad) == 1
    err = capsys.readouterr().err
    assert "content differs from the pinned one: joints.mat" in err and not (tmp_path / "d3/lspet").exists(), err


# ----------------------------------------------------------------------------------------------------------------
# get_lsp_sample.py: the authors' 16 real LSP images with UPi-S1h silhouettes (lsp_16.tfrecords)
# ----------------------------------------------------------------------------------------------------------------
get_sample = _load("get_lsp_sample")
REAL_SAMPLE = Path("/work/realdata/lsp_16.tfrecords")


def _tiny_tfrecord(path: Path, tmp: Path, order=(3, 1, 2)) -> dict:
    "An lsp_16-format TFRecord of fake people, records in `order` (not by number); {number: (jpeg, png, joints)}."
    import io
    from PIL import Image
    from hybrid_pose.poses import example_bytes, write_tfrecord
    truth = write_fake_layout(tmp / "src", lsp=(1, 2, 3), lspet=(), seed=4)
    out, payloads = {}, []
    for n in order:
        jpg = (tmp / f"src/lsp/images/im{n:04d}.jpg").read_bytes()
        buf = io.BytesIO(); Image.open(tmp / f"src/upi-s1h/data/lsp/im{n:04d}_segmentation.png").save(buf, "PNG")
        j = truth["lsp"][n]
        W, H = Image.open(io.BytesIO(jpg)).size
        payloads.append(example_bytes({"image/encoded": [jpg], "image/seg_gt": [buf.getvalue()],
                                       "image/x": j[:, 0], "image/y": j[:, 1], "image/visibility": j[:, 2].astype(np.int64),
                                       "image/filename": [f"im{n:04d}.jpg".encode()], "image/width": [W], "image/height": [H],
                                       "image/center": np.array([W // 2, H // 2])}))
        out[n] = (jpg, buf.getvalue(), j)
    write_tfrecord(path, payloads)
    return out


def test_lsp_sample_parser_pairs_by_number(tmp_path):
    from hybrid_pose import data as D
    f = tmp_path / "tiny.tfrecords"
    truth = _tiny_tfrecord(f, tmp_path)
    sample = get_sample.read_lsp_sample(f)
    assert sorted(sample) == [1, 2, 3]
    for n, (jpg, png, j) in truth.items():
        assert sample[n]["image"] == jpg and sample[n]["mask"] == png and np.allclose(sample[n]["joints"], j, atol=1e-4)
    expected = {n: (hashlib.sha256(jpg).hexdigest(), hashlib.sha256(png).hexdigest()) for n, (jpg, png, _) in truth.items()}
    get_sample.verify_sample(sample, expected)
    swapped = dict(expected); swapped[1], swapped[2] = expected[2], expected[1]
    with pytest.raises(dl.DownloadError, match="the image of im0001 has SHA-256"):
        get_sample.verify_sample(sample, swapped)
    # written in the LSP layout, the registered source reads it back unchanged (joints.mat: flag 1 = occluded)
    get_sample.write_sample(sample, tmp_path / "data/lsp_sample")
    assert scipy.io.loadmat(tmp_path / "data/lsp_sample/joints.mat")["joints"].shape == (3, 14, 3)
    ds = D.PoseDataset(tmp_path / "data", "lsp_sample", "train", augment=False)
    assert [r.number for r in ds.records] == [1, 2, 3]
    for i, r in enumerate(ds.records):
        assert np.allclose(r.keypoints, truth[r.number][2], atol=1e-4)
        assert r.image.read_bytes() == truth[r.number][0] and r.mask.read_bytes() == truth[r.number][1]
        assert ds[i]["mask"].any()


@pytest.mark.parametrize("damage, needle", [
    ("truncate", "truncated record"),
    ("drop_key", "lacks image/seg_gt"),
    ("bad_name", "image/filename is 'photo.jpg'; expected imNNNN.jpg"),
])
def test_lsp_sample_bad_files_one_line(tmp_path, damage, needle):
    from hybrid_pose.poses import example_bytes, read_tfrecord, parse_example, write_tfrecord
    f = tmp_path / "tiny.tfrecords"
    _tiny_tfrecord(f, tmp_path)
    if damage == "truncate": f.write_bytes(f.read_bytes()[:-50])
    else:
        exs = [parse_example(p) for _, p in read_tfrecord(f)]
        if damage == "drop_key": del exs[1]["image/seg_gt"]
        else: exs[0]["image/filename"] = [b"photo.jpg"]
        write_tfrecord(f, [example_bytes({k: v for k, v in e.items()}) for e in exs])
    with pytest.raises(dl.DownloadError) as e: get_sample.read_lsp_sample(f)
    assert needle in str(e.value) and str(f) in str(e.value) and "\n" not in " ".join(str(e.value).split())


@pytest.mark.parametrize("content, needle", [
    ("tiny", "expected 114,636 (the authors' lsp_16.tfrecords"),
    ("same_size", "differs from the expected e74226ce"),
    ("truncated_real", "a truncated download?"),
])
def test_get_lsp_sample_refuses_other_files(tmp_path, capsys, content, needle):
    f = tmp_path / "lsp_16.tfrecords"
    if content == "tiny": _tiny_tfrecord(f, tmp_path)
    elif content == "same_size": f.write_bytes(np.random.default_rng(0).bytes(get_sample.SIZE))
    else: f.write_bytes(np.random.default_rng(0).bytes(get_sample.SIZE - 1000))
    assert get_sample.main(["--data-root", str(tmp_path / "data"), "--from", str(f), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and err.startswith("get_lsp_sample.py: error:"), err
    assert not (tmp_path / "data/lsp_sample").exists()


@pytest.mark.skipif(not REAL_SAMPLE.is_file(), reason="the authors' lsp_16.tfrecords is not on this machine")
def test_get_lsp_sample_real_file(tmp_path, capsys):
    from hybrid_pose import data as D
    root = tmp_path / "data"
    assert get_sample.main(["--data-root", str(root), "--url", REAL_SAMPLE.as_uri(), "--quiet"]) == 0   # the download path
    assert (root / "downloads/lsp_16.tfrecords").stat().st_size == get_sample.SIZE
    assert get_sample.main(["--data-root", str(root), "--from", str(REAL_SAMPLE), "--quiet"]) == 0
    assert "already complete" in capsys.readouterr().out
    tr, va = D.PoseDataset(root, "lsp_sample", "train"), D.PoseDataset(root, "lsp_sample", "val", augment=False)
    assert [r.number for r in tr.records] == list(range(1, 9)) and [r.number for r in va.records] == list(range(9, 17))
    assert tr.records[0].image.stat().st_size > 0 and np.asarray(D.Image.open(tr.records[0].image)).shape == (160, 70, 3)
    for ds in (tr, va):
        for i in range(len(ds)):
            full = ds.read(i)
            kp, m = full["keypoints"], full["mask"]
            on = m[np.clip(kp[:, 1].astype(int), 0, m.shape[0] - 1), np.clip(kp[:, 0].astype(int), 0, m.shape[1] - 1)]
            assert on.all(), ds.records[i].number                         # every joint lies on its own silhouette
            assert 0.1 < m.mean() < 0.4 and ds[i]["mask"].any()
    assert sum(int(r.keypoints[:, 2].sum()) for r in tr.records + va.records) == 224 - 23   # 23 occluded joints, flagged as in LSP
    (root / "lsp_sample/masks/im0003_segmentation.png").write_bytes(b"not a png")
    assert get_sample.main(["--data-root", str(root), "--quiet"]) == 2
    assert "the silhouette of im0003 has SHA-256" in capsys.readouterr().err
