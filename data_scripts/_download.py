"""Download, resume, verify and unpack helpers shared by get_lsp.py, get_lspet.py and get_upi_s1h.py.

Standard library only (urllib, zipfile, tarfile, hashlib). What the data must look like once unpacked is checked by
`hybrid_pose.datacheck` (`check_images_folder`, `check_upi_s1h`), imported by the scripts themselves.

- `fetch(urls, dest)`: try the mirrors in order; download into `dest.part` with HTTP Range requests so an
  interrupted download resumes where it stopped (also for file:// URLs); rename to `dest` only when complete.
- `check_pinned`: a file whose exact size and SHA-256 are known (the authors' lsp_16.tfrecords).
- `record_checksum`: SHA-256 and size of every archive, recorded in `downloads/checksums.json` the first time and
  compared afterwards (no public checksums exist for these archives; docs/data.md).
- `Mirror`, `content_digest`: a download location; one whose bytes cannot be pinned (a GitHub archive is generated on
  request) is pinned by its content instead: the SHA-256 of joints.mat and a digest of the image files.
- `test_archive`, `extract`: integrity (zip CRCs, gzip/tar stream) and safe extraction: members with absolute paths,
  `..` or links are dropped and counted, a file/folder clash is an error, and the unpacked size has a cap (zip bombs).
- `RemoteFile`: a seekable file over HTTP Range requests, so zipfile can read single members of a huge remote zip.
- `install`: move an unpacked folder into place atomically (rename; the old copy is removed only afterwards).
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

USER_AGENT = "hybrid_pose-data-scripts (python urllib)"
CHUNK = 1 << 20
MAX_UNPACKED_GB = 8.0  # default cap on what one extraction may write (LSPe: 0.2 GB; UPi-S1h's LSP/LSPe masks: < 1 GB)


class DownloadError(RuntimeError):
    "A download, verification or unpacking step failed; the message says what to do."


def import_hybrid_pose():
    "Make `import hybrid_pose` work from a plain clone (the repository root on sys.path)."
    try:
        import hybrid_pose  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _say(msg: str, quiet: bool = False):
    if not quiet: print(msg, flush=True)


def _local_path(url: str) -> Path | None:
    "The path of a file:// URL (None for other schemes)."
    p = urllib.parse.urlparse(url)
    return Path(urllib.request.url2pathname(p.path)) if p.scheme == "file" else None


def _open_url(url: str, offset: int = 0, timeout: float = 60):
    "(response, total size or None, start offset actually served). Honours Range; falls back to a full download."
    local = _local_path(url)
    if local is not None:
        fh = open(local, "rb")
        size = os.fstat(fh.fileno()).st_size
        offset = min(offset, size)
        fh.seek(offset)
        return fh, size, offset
    headers = {"User-Agent": USER_AGENT}
    if offset: headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the .part may already be complete
            total = _content_range_total(e.headers.get("Content-Range", ""))
            if total == offset: return io.BytesIO(b""), total, offset
        raise
    if resp.status == 206:
        cr = resp.headers.get("Content-Range", "")
        start = int(cr.split()[1].split("-")[0]) if cr.startswith("bytes ") else -1
        if start != offset:
            resp.close(); raise DownloadError(f"{url}: asked for bytes from {offset}, server sent {cr!r}")
        return resp, _content_range_total(cr), offset
    length = resp.headers.get("Content-Length")
    return resp, int(length) if length else None, 0  # 200: the server ignored the Range header


def _content_range_total(cr: str) -> int | None:
    "The total of a Content-Range header ('bytes a-b/total')."
    try: return int(cr.rsplit("/", 1)[1])
    except (IndexError, ValueError): return None


def download(url: str, dest: Path, retries: int = 3, timeout: float = 60, quiet: bool = False) -> Path:
    "Download `url` to `dest`, resuming `dest.part` (HTTP Range) after an interruption; retry with backoff."
    dest = Path(dest); part = dest.with_name(dest.name + ".part"); origin = dest.with_name(dest.name + ".part.url")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and (not origin.exists() or origin.read_text().strip() != url):
        part.unlink()  # a partial file from another mirror: its bytes may differ
    origin.write_text(url + "\n")
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            resp, total, start = _open_url(url, offset, timeout)
            if offset and start == 0: _say(f"  {url} does not support resuming; starting again", quiet)
            elif offset: _say(f"  resuming at {offset / 2**20:.1f} MiB", quiet)
            got = start
            with resp, open(part, "r+b" if start and part.exists() else "wb") as fh:
                fh.seek(start); fh.truncate()
                last = time.time()
                while True:
                    buf = resp.read(CHUNK)
                    if not buf: break
                    fh.write(buf); got += len(buf)
                    if time.time() - last > 5 and not quiet:
                        last = time.time()
                        print(f"  {got / 2**20:.1f}" + (f" / {total / 2**20:.1f}" if total else "") + " MiB", flush=True)
            if total is not None and got != total:
                raise DownloadError(f"connection closed after {got} of {total} bytes")
            os.replace(part, dest); origin.unlink(missing_ok=True)
            return dest
        except (OSError, urllib.error.URLError, http.client.HTTPException, DownloadError, ValueError) as e:
            reason = getattr(e, "reason", None)
            fatal = (isinstance(e, urllib.error.HTTPError) and e.code in (401, 403, 404, 410)) or \
                    isinstance(reason, (socket.gaierror, ConnectionRefusedError)) or \
                    (_local_path(url) is not None and not _local_path(url).exists())
            if attempt >= retries or fatal:
                have = part.stat().st_size if part.exists() else 0
                if not have: part.unlink(missing_ok=True); origin.unlink(missing_ok=True)
                raise DownloadError(f"{url}: {e}" + (f" ({have} bytes kept in {part}; rerun to resume)" if have else "")) from None
            attempt += 1
            wait = min(2 ** (attempt - 1), 30)
            _say(f"  {url}: {e}; retry {attempt}/{retries} in {wait} s", quiet)
            time.sleep(wait)


def fetch(urls: list, dest: Path, retries: int = 3, timeout: float = 60, quiet: bool = False, check=None) -> tuple:
    """Try each mirror in order until one gives the whole file; (path, url). A complete `dest` is reused.
    `check(path)` may raise DownloadError to reject a mirror's file (e.g. an HTML error page); it is then deleted."""
    dest = Path(dest)
    if dest.is_file(): return dest, None
    errors = []
    for url in urls:
        _say(f"downloading {url}\n  -> {dest}", quiet)
        try:
            download(url, dest, retries, timeout, quiet)
            if check is not None:
                try: check(dest)
                except DownloadError:
                    dest.unlink(); raise
            return dest, url
        except DownloadError as e:
            errors.append(str(e)); _say(f"  failed: {e}", quiet)
    raise DownloadError("every mirror failed:\n  " + "\n  ".join(errors))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for buf in iter(lambda: fh.read(CHUNK), b""): h.update(buf)
    return h.hexdigest()


def check_pinned(path: Path, sha256_hex: str, size: int, what: str):
    "Check a file whose exact bytes are known (size first: a short file is a truncated download), or a DownloadError."
    path = Path(path)
    got = path.stat().st_size
    if got != size:
        raise DownloadError(f"{path}: is {got:,} bytes; expected {size:,} ({what}){'; a truncated download?' if got < size else ''} "
                            "Delete it and download again.")
    digest = sha256(path)
    if digest != sha256_hex.lower():
        raise DownloadError(f"{path}: SHA-256 {digest} differs from the expected {sha256_hex} ({what}). "
                            "Delete it and download again.")


def record_checksum(archive: Path, registry: Path, known: str | None = None, url: str | None = None,
                    quiet: bool = False) -> dict:
    "Compare `archive`'s SHA-256 with a known value or the one recorded earlier; record it the first time."
    archive, registry = Path(archive), Path(registry)
    rec = json.loads(registry.read_text()) if registry.is_file() else {}
    digest, size = sha256(archive), archive.stat().st_size
    if known and digest != known.lower():
        raise DownloadError(f"{archive}: SHA-256 {digest} differs from the expected {known}. Delete it and download again.")
    old = rec.get(archive.name)
    if old and (old["sha256"] != digest or old["size"] != size):
        raise DownloadError(f"{archive}: SHA-256 {digest} ({size} bytes) differs from the one recorded in {registry} "
                            f"({old['sha256']}, {old['size']} bytes, from {old.get('url')}). The archive is corrupt or a "
                            "different release: delete it (and its entry) and download again.")
    if not old:
        rec[archive.name] = dict(sha256=digest, size=size, url=url, recorded=time.strftime("%Y-%m-%d"))
        registry.parent.mkdir(parents=True, exist_ok=True)
        tmp = registry.with_suffix(".tmp"); tmp.write_text(json.dumps(rec, indent=2) + "\n"); os.replace(tmp, registry)
        _say(f"  recorded SHA-256 {digest} ({size} bytes) in {registry}", quiet)
    else: _say(f"  SHA-256 matches the one recorded in {registry}", quiet)
    return rec[archive.name]


def archive_kind(path: Path) -> str:
    "'zip' or 'tar' (any compression), by content."
    if zipfile.is_zipfile(path): return "zip"
    try:
        if tarfile.is_tarfile(path): return "tar"
    except OSError: pass
    raise DownloadError(f"{path}: neither a zip nor a tar archive (truncated download or an error page?). "
                        "Delete it and download again.")


def test_archive(path: Path) -> int:
    "Check the archive's integrity (zip: every member's CRC; tar: the whole stream); the number of members."
    kind = archive_kind(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                if bad: raise DownloadError(f"{path}: member {bad} fails its CRC check. Delete the archive and download again.")
                return len(zf.infolist())
        n = 0
        with tarfile.open(path) as tf:
            for m in tf:
                if m.isfile():
                    f = tf.extractfile(m)
                    while f.read(CHUNK): pass
                n += 1
        return n
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DownloadError(f"{path}: damaged archive ({type(e).__name__}: {e}). Delete it and download again.") from None


def _unsafe(name: str) -> str | None:
    "Why a member name must not be written ('absolute path', 'path traversal'), or None if it is a plain relative path."
    name = name.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or (parts and ":" in parts[0]): return "absolute path"
    if any(p == ".." for p in parts): return "path traversal"
    return None


def _safe_name(name: str) -> str | None:
    "A member name as a relative POSIX path, or None if it is absolute or climbs out with '..'."
    if _unsafe(name): return None
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


class Unpacked(list):
    "The relative paths `extract` wrote, with `dropped` (reason -> member names left out as unsafe) and `bytes` written."
    def __init__(self):
        super().__init__(); self.dropped, self.bytes = {}, 0

    def drop(self, reason: str, name: str): self.dropped.setdefault(reason, []).append(name)

    def summary(self) -> str:
        "One line on the dropped members ('' if none)."
        if not self.dropped: return ""
        n = sum(map(len, self.dropped.values()))
        parts = [f"{r} {len(v)}: {', '.join(v[:3])}{', ...' if len(v) > 3 else ''}" for r, v in self.dropped.items()]
        return f"dropped {n} unsafe archive member{'s' * (n != 1)} (not written): " + "; ".join(parts)


def _is_zip_link(info: zipfile.ZipInfo) -> bool:
    "A zip member stored as a symbolic link (Unix mode in the external attributes)."
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def _target(dest: Path, rel: str, name: str) -> Path:
    "Where member `rel` goes under `dest`; a DownloadError if a file and a folder of the archive share a name."
    out = dest / rel
    for p in [*reversed(out.relative_to(dest).parents[:-1]), None]:
        q = out if p is None else dest / p
        if q.is_symlink() or (p is not None and q.exists() and not q.is_dir()) or (p is None and q.is_dir()):
            raise DownloadError(f"archive member {name!r} clashes with {q} (a file and a folder of the same name, or a "
                                "link): the archive is malformed. Delete it and download again.")
    return out


def _copy_capped(src, out: Path, left: int) -> int:
    "Copy a member's bytes to `out`, writing at most `left` bytes; the number written (-1: the cap was hit)."
    n = 0
    with open(out, "wb") as dst:
        for buf in iter(lambda: src.read(CHUNK), b""):
            n += len(buf)
            if n > left: return -1
            dst.write(buf)
    return n


def _cap_error(source, total: int, cap: int) -> DownloadError:
    return DownloadError(f"{source}: unpacking would write more than {cap / 1e9:.1f} GB ({total / 1e9:.1f} GB declared): "
                         "a zip bomb or the wrong archive. If you trust it, raise the cap with --max-unpacked-gb.")


def extract(source, dest: Path, select=None, skip_existing: bool = False, quiet: bool = False,
            max_bytes: int = int(MAX_UNPACKED_GB * 1e9)) -> Unpacked:
    """Extract the members `select(name) -> relative path or None` chooses (default: all) from a zip or tar archive
    (a path or a seekable file object) into `dest`; with `skip_existing`, members already there with the right size
    and CRC are kept (resuming an interrupted extraction). Members with an absolute path, `..` or a link are not
    written but counted (`Unpacked.dropped`); more than `max_bytes` in all is refused. Returns the relative paths written."""
    dest = Path(dest); dest.mkdir(parents=True, exist_ok=True)
    select = select or (lambda n: n)
    written = Unpacked()
    is_zip = not isinstance(source, (str, Path)) or archive_kind(source) == "zip"
    try:
        if is_zip:
            with zipfile.ZipFile(source) as zf:
                todo = []
                for i in zf.infolist():
                    if i.is_dir(): continue
                    why = _unsafe(i.filename) or ("link" if _is_zip_link(i) else None)
                    if why: written.drop(why, i.filename); continue
                    rel = select(_safe_name(i.filename))
                    if rel: todo.append((i, rel))
                total = sum(i.file_size for i, _ in todo)
                if total > max_bytes: raise _cap_error(source, total, max_bytes)
                if hasattr(source, "plan"):  # a RemoteFile: fetch the wanted members' bytes in a few requests
                    source.plan([(i.header_offset, i.header_offset + 30 + len(i.orig_filename.encode()) + len(i.extra)
                                  + i.compress_size + 1024) for i, _ in todo])
                last = time.time()
                for k, (info, rel) in enumerate(todo):
                    out = _target(dest, rel, info.filename)
                    if skip_existing and out.is_file() and out.stat().st_size == info.file_size and _crc(out) == info.CRC:
                        written.append(rel); written.bytes += info.file_size; continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src: n = _copy_capped(src, out, max_bytes - written.bytes)  # CRC checked at EOF
                    if n < 0: raise _cap_error(source, total, max_bytes)
                    written.append(rel); written.bytes += n
                    if time.time() - last > 5 and not quiet:
                        last = time.time(); print(f"  extracted {k + 1} / {len(todo)}", flush=True)
        else:
            with tarfile.open(source) as tf:
                todo = []
                for m in tf.getmembers():
                    if m.isdir(): continue
                    why = _unsafe(m.name) or ("link" if m.issym() or m.islnk() else None if m.isfile() else "special file")
                    if why: written.drop(why, m.name); continue
                    rel = select(_safe_name(m.name))
                    if rel: todo.append((m, rel))
                total = sum(m.size for m, _ in todo)
                if total > max_bytes: raise _cap_error(source, total, max_bytes)
                for m, rel in todo:
                    out = _target(dest, rel, m.name); out.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(m) as src: n = _copy_capped(src, out, max_bytes - written.bytes)
                    if n < 0: raise _cap_error(source, total, max_bytes)
                    written.append(rel); written.bytes += n
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        raise DownloadError(f"{source}: damaged archive ({type(e).__name__}: {e}). Delete it and download again.") from None
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
        raise DownloadError(f"{source}: cannot unpack ({type(e).__name__}: {e}): the archive is malformed. "
                            "Delete it and download again.") from None
    if written.dropped: print(f"warning: {source}: {written.summary()}", file=sys.stderr, flush=True)
    return written


def _crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        for buf in iter(lambda: fh.read(CHUNK), b""): crc = zlib.crc32(buf, crc)
    return crc


@dataclass(frozen=True)
class Mirror:
    "A place to download a dataset's archive from, and how to trust what it serves."
    url: str
    archive: str = ""  # file name under data_root/downloads (default: the dataset's archive name)
    content: dict = field(default_factory=dict)  # pins when the bytes cannot be pinned: joints.mat SHA-256, `content_digest` of images/
    extra: tuple = ()  # top-level files of the archive that are not part of the dataset (not installed)


def as_mirror(m) -> Mirror:
    return m if isinstance(m, Mirror) else Mirror(str(m))


def content_digest(folder: Path) -> str:
    "SHA-256 over the sorted lines 'name sha256' of the files in `folder` (pins a set of files, not an archive's bytes)."
    h = hashlib.sha256()
    for p in sorted(Path(folder).iterdir()):
        if p.is_file(): h.update(f"{p.name} {sha256(p)}\n".encode())
    return h.hexdigest()


def verify_content(root: Path, mirror: Mirror, quiet: bool = False):
    "Check an unpacked dataset against `mirror.content` (joints.mat SHA-256, images digest); remove `mirror.extra`."
    for name in mirror.extra:
        p = Path(root) / name
        if p.is_file(): p.unlink(); _say(f"  not installed: {name} (not part of the dataset)", quiet)
    pins = dict(mirror.content)
    got = {"joints.mat": sha256(Path(root) / "joints.mat"), "images": content_digest(Path(root) / "images")}
    bad = [f"{k} {got[k]} (pinned {v})" for k, v in pins.items() if k in got and got[k] != v]
    if bad:
        raise DownloadError(f"{mirror.url}: the content differs from the pinned one: " + "; ".join(bad) +
                            ". The mirror changed; nothing was installed. Use another mirror or --archive.")
    _say(f"  content matches the pinned joints.mat and images ({', '.join(f'{k} {v[:12]}' for k, v in pins.items())})", quiet)


def find_root(folder: Path, marker: str = "joints.mat") -> Path:
    "The single folder under `folder` (itself included) that contains `marker` (archives may or may not have a top folder)."
    hits = sorted(p.parent for p in Path(folder).rglob(marker))
    if len(hits) != 1:
        raise DownloadError(f"{folder}: expected exactly one {marker} in the archive, found {len(hits)}"
                            + (f" ({', '.join(map(str, hits[:5]))})" if hits else "") + ". Is this the right archive?")
    return hits[0]


def install(src: Path, target: Path, force: bool = False, quiet: bool = False) -> Path:
    "Move the folder `src` to `target` by renaming (atomic on one filesystem); an existing target needs `force`."
    src, target = Path(src), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        if not force: raise DownloadError(f"{target} already exists; pass --force to replace it")
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
    try: os.replace(src, target)
    except OSError:
        if old is not None: os.replace(old, target)  # put the old copy back
        raise
    if old is not None: shutil.rmtree(old, ignore_errors=True)
    _say(f"installed {target}", quiet)
    return target


class RemoteFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP Range requests (for zipfile). Reads fetch 64 KiB
    from the position, or a whole planned span (`plan`: the byte ranges of the members to extract, merged), so a
    few requests fetch exactly the wanted members of a huge zip."""
    def __init__(self, url: str, size: int, block: int = 1 << 16, timeout: float = 60, retries: int = 3):
        self.url, self.size, self.block, self.timeout, self.retries = url, size, block, timeout, retries
        self.pos, self.cache, self.spans, self.requests, self.bytes = 0, {}, [], 0, 0

    def readable(self): return True
    def seekable(self): return True
    def tell(self): return self.pos

    def seek(self, offset, whence=io.SEEK_SET):
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def plan(self, ranges, gap: int = 1 << 18, max_span: int = 32 << 20):
        "Byte ranges [a, b) that will be read: merged (gaps under `gap`) into spans fetched in one request each."
        spans = []
        for a, b in sorted(ranges):
            if spans and a - spans[-1][1] <= gap and b - spans[-1][0] <= max_span: spans[-1][1] = max(spans[-1][1], b)
            else: spans.append([a, b])
        self.spans = [(a, min(b, self.size)) for a, b in spans]

    def _get(self, a: int, b: int) -> bytes:
        "Bytes [a, b) in one Range request, with retries."
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(self.url, headers={"User-Agent": USER_AGENT, "Range": f"bytes={a}-{b - 1}"})
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    if r.status != 206: raise DownloadError(f"{self.url}: the server ignored a Range request")
                    data = r.read()
                if len(data) != b - a: raise DownloadError(f"short read: {len(data)} of {b - a} bytes")
                self.requests += 1; self.bytes += len(data)
                return data
            except (OSError, urllib.error.URLError, http.client.HTTPException, DownloadError) as e:
                if attempt == self.retries: raise DownloadError(f"{self.url}: bytes {a}-{b - 1}: {e}") from None
                time.sleep(min(2 ** attempt, 30))

    def _chunk(self, pos: int) -> tuple:
        "(start, bytes) of a cached or freshly fetched piece holding `pos`."
        for a, data in self.cache.items():
            if a <= pos < a + len(data): return a, data
        a, b = pos, min(pos + self.block, self.size)
        for sa, sb in self.spans:
            if sa <= pos < sb: b = max(b, sb); break
        data = self._get(a, b)
        if len(self.cache) >= 8: self.cache.pop(next(iter(self.cache)))
        self.cache[a] = data
        return a, data

    def readinto(self, buf) -> int:
        n = min(len(buf), max(0, self.size - self.pos))
        done = 0
        while done < n:
            a, data = self._chunk(self.pos + done)
            piece = data[self.pos + done - a:self.pos + done - a + n - done]
            buf[done:done + len(piece)] = piece; done += len(piece)
        self.pos += n
        return n


def open_remote_zip_source(url: str, timeout: float = 60):
    "A seekable file for `url` if it can be read in pieces (file://, or HTTP with Range support), else None."
    local = _local_path(url)
    if local is not None: return open(local, "rb") if local.is_file() else None
    try:
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Range": "bytes=0-0"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if r.status != 206: return None
            total = _content_range_total(r.headers.get("Content-Range", ""))
    except (OSError, urllib.error.URLError):
        return None
    return RemoteFile(url, total, timeout=timeout) if total else None


def licensed_note() -> str:
    return ("Data behind a licence (SMPL, MoSh, AMASS) cannot be fetched by a script: run "
            "`python data_scripts/verify_data.py --licensed` for what to register for and where.")


# --------------------------------------------------------------------------------------------------------------------
# The command shared by get_lsp.py and get_lspet.py
# --------------------------------------------------------------------------------------------------------------------
def existing_install(target, check, force):
    "For an existing `target` without --force: 0 if `check(target)` finds it complete, 1 (with a message) if not; else None."
    if not target.exists() or force:
        return None
    chk = check(target)
    print(chk)
    if chk.status == "present":
        print(f"{target} is already complete; nothing to do (--force reinstalls it)."); return 0
    print(f"error: {target} exists but is not complete; rerun with --force to replace it.", file=sys.stderr); return 1


def images_dataset_main(argv, name: str, archive_name: str, mirrors: list, layout: str, expect_count: int,
                        known_sha256: str | None, description: str, manual: str, low_res: str | None = None) -> int:
    """Download (resumably, trying `mirrors` in order), verify and install an LSP-layout zip as data_root/`name`.
    `mirrors`: URLs or `Mirror`s; `low_res`: the low-resolution archive name the images must match (see datacheck).
    Exit status: 0 installed or already present, 1 verification failed (nothing installed), 2 download failed."""
    import argparse, tempfile
    mirrors = [as_mirror(m) for m in mirrors]
    p = argparse.ArgumentParser(prog=f"get_{name}.py", description=description,
                                epilog="Mirrors tried in order:\n  " + "\n  ".join(m.url for m in mirrors) + "\n\n" + manual,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path("data"), help="the data folder (default: data)")
    p.add_argument("--url", "--mirror", action="append", dest="urls", metavar="URL",
                   help="download from URL instead of the built-in mirrors (repeatable; http(s):// or file://)")
    p.add_argument("--archive", type=Path, help=f"use {archive_name} you downloaded yourself (no download)")
    p.add_argument("--expect-count", type=int, default=expect_count,
                   help=f"images (and joints entries) the archive must hold (default {expect_count})")
    p.add_argument("--sha256", help="the archive's expected SHA-256 (none is published; the first download is recorded)")
    p.add_argument("--force", action="store_true", help=f"replace an existing data_root/{name}")
    p.add_argument("--retries", type=int, default=3, help="retries per mirror after an interruption (default 3)")
    p.add_argument("--timeout", type=float, default=60, help="network timeout in seconds (default 60)")
    p.add_argument("--delete-archive", action="store_true", help="delete the downloaded zip after installing")
    p.add_argument("--deep", action="store_true", help="decode every image when verifying (default: headers + 20)")
    p.add_argument("--max-unpacked-gb", type=float, default=MAX_UNPACKED_GB,
                   help=f"refuse an archive that unpacks to more than this (default {MAX_UNPACKED_GB:g} GB)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    import_hybrid_pose()
    from hybrid_pose.datacheck import check_images_folder
    root, q = a.data_root, a.quiet
    target = root / name
    check = lambda folder: check_images_folder(folder, layout, a.expect_count, a.deep, name, low_res=low_res)
    done = existing_install(target, check, a.force)
    if done is not None: return done
    downloads = root / "downloads"
    try:
        mirror = None
        if a.archive:
            if not a.archive.is_file(): raise DownloadError(f"{a.archive} does not exist")
            archive, url = a.archive, None
        else:
            errors = []
            for m in [Mirror(u) for u in a.urls] if a.urls else mirrors:
                try:
                    archive, url = fetch([m.url], downloads / (m.archive or archive_name), a.retries, a.timeout, q,
                                         check=archive_kind)
                    mirror = m; break
                except DownloadError as e: errors.append(str(e).removeprefix("every mirror failed:\n  "))
            else:
                print("error: every mirror failed:\n  " + "\n  ".join(errors) + f"\n\n{manual}", file=sys.stderr); return 2
        if mirror is not None and mirror.content and not a.sha256:
            _say(f"  {archive.name}: the bytes of a generated archive are not pinned; its content is verified instead", q)
        else: record_checksum(archive, downloads / "checksums.json", a.sha256 or known_sha256, url, q)
        _say(f"checking {archive}: {test_archive(archive)} members, CRCs fine", q)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
        try:
            extract(archive, tmp, quiet=q, max_bytes=int(a.max_unpacked_gb * 1e9))
            src = find_root(tmp)
            if mirror is None or not mirror.content:       # a manual archive or URL may be a pinned mirror's copy: its layout says
                mirror = next((m for m in mirrors if m.content and m.extra and all((src / e).is_file() for e in m.extra)), mirror)
            if mirror is not None and mirror.content: verify_content(src, mirror, q)
            chk = check(src)
            _say(str(chk), q)
            if chk.status != "present":
                raise DownloadError(f"{archive} does not hold the expected {name} data (see above); nothing was installed. "
                                    f"If it is damaged, delete it and rerun.")
            install(src, target, a.force, q)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr); return 1
    if a.delete_archive and not a.archive: archive.unlink(missing_ok=True)
    print(f"done: {target}. Check everything with: python data_scripts/verify_data.py --data-root {root}")
    return 0
