"""File-system helpers of the data layer: build a folder aside and swap it in, sha256, reading JSON, checking an
output file or folder can be written before long work.

The one copy of each: the dataset builders (:mod:`.extract`, :mod:`.synth`), the packer (:mod:`.pack`) and the
downloader (:mod:`.download`) use them. Single-file atomic writes live in :mod:`hpatches_kit.io`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import DataError


def sha256_file(path, chunk: int = 8 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks.

    Examples:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
        >>> sha256_file(p)[:12]
        'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def read_json(path):
    """Parse a JSON file. Raises :class:`DataError` naming the file when it is missing or not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON: {e}") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def sweep_dead_builds(out_dir) -> list[Path]:
    """Remove the temporary folders (``.<name>.<pid>.*.tmp``) that builds of ``out_dir`` killed before they
    could clean up (their process is gone) left beside it; returns the removed folders."""
    out_dir = Path(out_dir)
    gone = []
    if not out_dir.parent.is_dir():
        return gone
    for t in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
        pid = t.name[len(out_dir.name) + 2:].split(".", 1)[0]
        if t.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(t, ignore_errors=True)
            gone.append(t)
    return gone


@contextlib.contextmanager
def build_then_swap(out_dir, is_ours: Callable[[Path], bool], refusal: str,
                    keep_existing: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``out_dir``; when the block ends without error, swap it into
    place (replacing an older ``out_dir`` that ``is_ours`` accepts), else remove it. An interrupted build
    leaves ``out_dir`` as it was; a killed one leaves a ``.<name>.<pid>.*.tmp`` folder that the next build
    of the same ``out_dir`` removes (:func:`sweep_dead_builds`).

    Args:
        out_dir: the folder to produce.
        is_ours: ``is_ours(out_dir)`` says whether an existing non-empty ``out_dir`` may be replaced.
        refusal: the :class:`DataError` problem raised (before any work) when it may not.
        keep_existing: when another process finished ``out_dir`` while this one built (``is_ours`` accepts
            it at swap time), keep that one and discard this build: readers of the first never see it move.

    Returns:
        A context manager yielding the temporary folder to build in.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError(out_dir, "exists and is not a folder")
        if any(out_dir.iterdir()) and not is_ours(out_dir):
            raise DataError(out_dir, refusal)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead_builds(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{os.getpid()}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
        if keep_existing and out_dir.is_dir() and is_ours(out_dir):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.rmdir(old)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_image(path, flags: int, missing: str = "missing file",
               corrupt: str = "cannot decode image (corrupt or not a PNG)"):
    """``cv2.imread(path, flags)``, raising :class:`DataError` naming the file with ``missing`` when it is absent
    and ``corrupt`` when OpenCV cannot decode it."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(path, missing)
    img = cv2.imread(str(path), flags)
    if img is None:
        raise DataError(path, corrupt)
    return img


def check_output_file(path, flag: str) -> None:
    """``path`` can be written: not a folder, its folder exists (or can be made) and is writable."""
    p = Path(path)
    if p.is_dir():
        raise DataError(p, f"{flag}: is a folder, expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        check_output_dir(parent, flag)
    except DataError as e:
        raise DataError(p, f"{flag}: cannot write the file there ({e})") from None
    if p.exists() and not os.access(p, os.W_OK):
        raise DataError(p, f"{flag}: file is not writable")


def check_output_dir(path, flag: str) -> None:
    """``path`` is (or can be created as) a writable folder; created when missing."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DataError(p, f"{flag}: exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(p, f"{flag}: cannot create the folder ({e.strerror or e})") from None
    try:  # a real write: also right for root and read-only mounts, where os.access says yes
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise DataError(p, f"{flag}: folder is not writable ({e.strerror or e})") from None
