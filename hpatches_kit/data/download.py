"""Download the real HPatches data and the benchmark's split/task files (``hpatches-data download``).

Sources (official locations):

* ``hpatches-release`` -- the patches dataset (~4.2 GB), ``http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-release.tar.gz``
  (the URL the benchmark's own ``download.sh`` uses); extracts to ``hpatches-release/``.
* ``hpatches-sequences`` -- the full images + homographies, ``.../hpatches-sequences-release.tar.gz``;
  extracts to ``hpatches-sequences-release/``.
* ``benchmark-tasks`` -- ``splits.json`` and the retrieval task CSVs from github ``hpatches/hpatches-benchmark``
  at a pinned commit (sha256 known, checked).

Every file is downloaded to ``<name>.part`` with a tqdm bar, resumed with an HTTP ``Range`` request when a
``.part`` exists or the connection drops, checked (size against ``Content-Length``/``Content-Range``, sha256
where known, tarball validity -- the whole gzip stream with its CRC -- and safe member paths) and only then
renamed to its final name; archives are extracted into a temporary folder and renamed into place. A failed
check deletes the ``.part`` and raises :class:`DownloadError` -- nothing is left at the final path. ``force``
fetches again but keeps the present copy until the new one is verified and extracted, then swaps it in.
(The ICVL tarballs publish no checksum: they are checked by size, gzip CRC and tar structure.)

URLs are overridable: ``base_url=`` / ``--base-url`` or ``$HPATCHES_DOWNLOAD_BASE_URL`` replaces the base of
every source (files keep their relative paths), ``$HPATCHES_DOWNLOAD_BASE_URL_<SOURCE>`` (upper case, ``-`` ->
``_``) one source's base.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError
from .fsio import sha256_file

log = logging.getLogger(__name__)

ICVL_BASE = "http://icvl.ee.ic.ac.uk/vbalnt/hpatches"
BENCHMARK_COMMIT = "e0c993c7756d26129fef47f752f79e4cfe6681aa"
BENCHMARK_BASE = f"https://raw.githubusercontent.com/hpatches/hpatches-benchmark/{BENCHMARK_COMMIT}"
ENV_BASE = "HPATCHES_DOWNLOAD_BASE_URL"
CHUNK = 1 << 20
USER_AGENT = "hpatches-kit-download/0.1"


class DownloadError(DataError):
    """A download failed an integrity check or could not complete; names the URL/file and the problem."""


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the source's base URL
    dest: str  # relative to the output folder
    sha256: str | None = None
    size: int | None = None
    extract: bool = False  # a .tar.gz to unpack into the output folder
    extracts_to: str | None = None  # the top-level folder the archive creates (to skip when present)


@dataclass(frozen=True)
class Source:
    name: str
    base_url: str
    files: tuple[RemoteFile, ...] = field(default_factory=tuple)
    description: str = ""


_TASK_SHA256 = {
    "retr_distractors_split-a.csv": "e4d0a3154d170b8d54aec05c0296cc289b042a8addf5b36351cf2c56602fbc85",
    "retr_distractors_split-b.csv": "0cfc0e1b075ee97dad845aba66215eabc02aa37bc2540d66049355c471e54e8f",
    "retr_distractors_split-c.csv": "7876980a1ab106b3deebef2a2966df4b5921d31bc09df54aeb82c03544257735",
    "retr_distractors_split-full.csv": "a913f9196185dac05555686fd22fad19048c56920bf5cbd81688fa41770dc6e2",
    "retr_distractors_split-illum.csv": "ec9ea07576660a449f9ba4bd564fa53b906c36e3603896382ca320f43324def3",
    "retr_distractors_split-view.csv": "5d92e43fda28f4f3d0c18b59414fb907d704f397579eac73079ee910aaab8d2f",
    "retr_queries_split-a.csv": "9a1cc25469f672da4a642b02360dc563a2c8af8080ec9841376c6843e8f7ea3a",
    "retr_queries_split-b.csv": "1bb0554498cfdbce6e16afa2aec4b9527c0387c9df2e36ca68eef0a1e9a566f3",
    "retr_queries_split-c.csv": "1ac37b424fe69b4d3140e46672d336e1dbf99a8c9aab35a3724ee53f9d173791",
    "retr_queries_split-full.csv": "d34f4ee6530f791b796a9a2d78b0153e4a8d31ce0ecd3263686b0411e265c072",
    "retr_queries_split-illum.csv": "a3294d801eefa0579eb543a379343ca772dca71498db768173806e32b5bfc6dc",
    "retr_queries_split-view.csv": "9f22b14c47a177de13fece48c7aa58527a84a8459964d94cd35a3ab41509adee",
}

SOURCES: dict[str, Source] = {
    "hpatches-release": Source(
        "hpatches-release",
        ICVL_BASE,
        (
            RemoteFile(
                "hpatches-release.tar.gz", "hpatches-release.tar.gz", extract=True, extracts_to="hpatches-release"
            ),
        ),
        "HPatches patches (65x65, 116 sequences), ~4.2 GB",
    ),
    "hpatches-sequences": Source(
        "hpatches-sequences",
        ICVL_BASE,
        (
            RemoteFile(
                "hpatches-sequences-release.tar.gz",
                "hpatches-sequences-release.tar.gz",
                extract=True,
                extracts_to="hpatches-sequences-release",
            ),
        ),
        "HPatches full image sequences + homographies, ~1.3 GB",
    ),
    "benchmark-tasks": Source(
        "benchmark-tasks",
        BENCHMARK_BASE,
        (
            RemoteFile(
                "python/utils/splits.json",
                "hpatches-benchmark/splits.json",
                sha256="75d4272eb8872f5444d34c00b4111f317432b5fe7550e74749cb1354d972fa83",
                size=7613,
            ),
        )
        + tuple(
            RemoteFile(f"tasks/{n}", f"hpatches-benchmark/tasks/{n}", sha256=h) for n, h in sorted(_TASK_SHA256.items())
        ),
        f"official splits.json + retrieval task CSVs (hpatches-benchmark @ {BENCHMARK_COMMIT[:7]})",
    ),
}


def source_base_url(source: Source, base_url: str | None = None) -> str:
    env_one = os.environ.get(f"{ENV_BASE}_{source.name.upper().replace('-', '_')}")
    return (base_url or env_one or os.environ.get(ENV_BASE) or source.base_url).rstrip("/")


def _total_from_response(resp, offset: int) -> int | None:
    cr = resp.headers.get("Content-Range")  # "bytes 100-199/200"
    if cr and "/" in cr:
        tail = cr.rsplit("/", 1)[1].strip()
        if tail.isdigit():
            return int(tail)
    cl = resp.headers.get("Content-Length")
    if cl and cl.strip().isdigit():
        return int(cl) + offset
    return None


def download_file(
    url: str,
    dest,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part`` with resume; verify size and sha256; rename into place.

    An existing ``dest.part`` is resumed (HTTP Range). A dropped connection is retried (resuming) up to
    ``retries`` times. A size or checksum mismatch deletes the ``.part`` and raises :class:`DownloadError`.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    total = size
    while True:
        offset = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if offset:
            req.add_header("Range", f"bytes={offset}-")
        try:
            try:
                resp = urllib.request.urlopen(req, timeout=timeout)
            except urllib.error.HTTPError as e:
                if e.code == 416 and offset:  # range not satisfiable: the .part is already complete (or too long)
                    e.close()
                    break
                raise DownloadError(url, f"HTTP {e.code} {e.reason}") from None
            with resp:
                if offset and resp.status != 206:  # server ignored the Range: start over
                    offset = 0
                    part.unlink(missing_ok=True)
                got_total = _total_from_response(resp, offset)
                if got_total is not None:
                    if total is not None and got_total != total:
                        part.unlink(missing_ok=True)
                        raise DownloadError(url, f"server reports {got_total} bytes, expected {total}")
                    total = got_total
                with (
                    open(part, "ab") as f,
                    tqdm(
                        total=total,
                        initial=offset,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=dest.name,
                        disable=not progress,
                        leave=False,
                    ) as bar,
                ):
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        bar.update(len(chunk))
            have = part.stat().st_size if part.exists() else 0
            if total is not None and have < total:
                raise ConnectionError(f"connection closed after {have} of {total} bytes")
            break
        except (
            ConnectionError,
            http.client.IncompleteRead,
            http.client.HTTPException,
            TimeoutError,
            urllib.error.URLError,
        ) as e:
            attempt += 1
            if attempt > retries:
                have = part.stat().st_size if part.exists() else 0
                kept = f"{have} bytes kept in {part} -- run again to resume" if have else "nothing was downloaded"
                raise DownloadError(url, f"download failed after {retries} retries ({e}); {kept}") from None
            time.sleep(backoff * attempt)
    have = part.stat().st_size if part.exists() else 0
    if total is not None and have != total:
        part.unlink(missing_ok=True)
        raise DownloadError(url, f"size mismatch: got {have} bytes, expected {total}; deleted {part.name}")
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(url, f"sha256 mismatch: got {digest}, expected {sha256}; deleted {part.name}")
    os.replace(part, dest)
    return dest


def _check_gzip(archive: Path) -> None:
    """Decompress every gzip member of ``archive`` to its end, so the CRC-32 and length trailers are checked
    (tarfile stops reading at the tar end-of-archive blocks, before the trailer: a corrupt byte in the data
    would otherwise go unnoticed)."""
    with open(archive, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            return  # not gzip-compressed: tarfile checks the rest
    try:
        with gzip.open(archive, "rb") as f:
            while f.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as e:
        raise DownloadError(archive, f"corrupt gzip stream ({type(e).__name__}: {e})") from None


def _check_tar(archive: Path) -> list[str]:
    """Read the whole archive (detects truncation/corruption, gzip CRC included) and check member paths are safe."""
    try:
        _check_gzip(archive)
        with tarfile.open(archive, "r:*") as tf:
            names = []
            for m in tf:
                n = m.name
                if n.startswith("/") or ".." in Path(n).parts:
                    raise DownloadError(archive, f"unsafe path in archive: {n!r}")
                if m.issym() or m.islnk():
                    raise DownloadError(archive, f"links are not allowed in the archive: {n!r}")
                if m.isfile():  # reading the data verifies the gzip CRC stream
                    f = tf.extractfile(m)
                    while f is not None and f.read(CHUNK):
                        pass
                names.append(n)
    except DownloadError as e:
        raise DownloadError(archive, f"not a valid tar archive ({e.problem})") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as e:
        raise DownloadError(archive, f"not a valid tar archive ({type(e).__name__}: {e})") from None
    if not names:
        raise DownloadError(archive, "archive is empty")
    return names


def extract_tar(archive, out_dir, replace: bool = False) -> list[Path]:
    """Validate ``archive`` then extract it into ``out_dir`` atomically (temp folder, then rename each
    top-level entry into place). An existing top-level entry is an error, or with ``replace`` swapped out
    only once the new one is fully extracted (the old one is deleted last). Returns the top-level paths."""
    archive, out_dir = Path(archive), Path(out_dir)
    names = _check_tar(archive)
    tops = sorted({Path(n).parts[0] for n in names if Path(n).parts})
    clash = [t for t in tops if (out_dir / t).exists() or (out_dir / t).is_symlink()]
    if clash and not replace:
        raise DownloadError(out_dir / clash[0], "already exists; remove it (or pass --force) to extract again")
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=out_dir))
    try:
        with tarfile.open(archive, "r:*") as tf:
            try:
                tf.extractall(tmp, filter="data")
            except TypeError:  # Python < 3.12 without the filter argument (members already checked above)
                tf.extractall(tmp)
        old = tmp / ".replaced"
        old.mkdir()
        for t in tops:
            if t in clash:
                os.replace(out_dir / t, old / t)
            os.replace(tmp / t, out_dir / t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out_dir / t for t in tops]


def download(
    what=("hpatches-release", "benchmark-tasks"),
    out_dir=".",
    base_url: str | None = None,
    force: bool = False,
    keep_archives: bool = False,
    progress: bool = True,
    retries: int = 3,
) -> dict[str, list[Path]]:
    """Fetch the named sources into ``out_dir``; returns ``{source: [paths]}``. Already present outputs
    are skipped unless ``force``. A failed download leaves no folder it created empty (no network: no empty
    ``hpatches-benchmark/`` behind); a resumable ``.part`` stays where it is."""
    out_dir = Path(out_dir)
    if isinstance(what, str):
        what = [what]
    unknown = [w for w in what if w not in SOURCES]
    if unknown:
        raise ValueError(f"unknown download source(s) {unknown}; expected some of {', '.join(SOURCES)}")
    folders = {out_dir} | {
        d for w in what for rf in SOURCES[w].files for d in (out_dir / rf.dest).parents if out_dir in (d, *d.parents)
    }
    existed = {d for d in folders if d.exists()}
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _download(what, out_dir, base_url, force, keep_archives, progress, retries)
    except BaseException:
        for d in sorted(folders - existed, key=lambda d: len(d.parts), reverse=True):  # deepest first
            try:
                d.rmdir()  # only when empty
            except OSError:
                pass
        raise


def _download(what, out_dir: Path, base_url, force, keep_archives, progress, retries) -> dict[str, list[Path]]:
    result: dict[str, list[Path]] = {}
    for name in what:
        src = SOURCES[name]
        base = source_base_url(src, base_url)
        paths = []
        for rf in src.files:
            final = out_dir / (rf.extracts_to if rf.extract and rf.extracts_to else rf.dest)
            if final.exists() and not force:
                if progress:
                    log.info(f"{final}: already present, skipping (use --force to fetch again)")
                paths.append(final)
                continue
            # --force: the present copy stays until the new one is downloaded, verified and extracted
            url = f"{base}/{rf.path}"
            if progress:
                log.info(f"fetching {url}")
            f = download_file(
                url, out_dir / rf.dest, sha256=rf.sha256, size=rf.size, progress=progress, retries=retries
            )
            if rf.extract:
                try:
                    tops = extract_tar(f, out_dir, replace=force)
                except DownloadError:
                    f.unlink(missing_ok=True)  # an invalid archive is garbage: nothing left behind
                    raise
                if not keep_archives:
                    f.unlink()
                paths.extend(tops)
            else:
                paths.append(f)
        result[name] = paths
    return result
