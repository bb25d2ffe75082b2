"""File-system helpers of the data layer: build a folder aside and swap it in, sha256, reading JSON, checking an
output file or folder can be written before long work.

The one copy of each: the dataset builders (:mod:`.extract`, :mod:`.synth`), the packer (:mod:`.pack`) and the
downloader (:mod:`.download`) use them. Single-file atomic writes live in :mod:`hpatches_kit.io`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError

log = logging.getLogger(__name__)


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


#: the completion marker :func:`build_then_swap` writes into every folder it builds: the folder's kind and the
#: list of every entry it held when it was published ("nothing foreign" is checked against that list)
MARKER = ".hpatches-kit.json"
_TEMP_SUFFIXES = (".tmp", ".old")
#: folders the toolkit itself adds beside a built dataset later (the packed cache, :mod:`.cache`): never foreign
OWN_SIDECARS = (".hpatches-kit-cache",)
#: a temporary folder of an older version (no owner pid in its name) counts as stale after this many seconds
LEGACY_TEMP_AGE = 3600.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _entries(root: Path) -> list[str]:
    """Every file and folder under ``root`` (relative POSIX paths, sorted)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def write_marker(folder, kind: str) -> None:
    """Write :data:`MARKER` into ``folder``: ``kind`` and the list of every entry the folder holds now.

    Args:
        folder: a folder the toolkit has just built completely.
        kind: what it is (``"dataset"``, ``"pack"``, ``"embedded"``, ``"descriptors"``).
    """
    from ..io import atomic_write_json

    folder = Path(folder)
    atomic_write_json(folder / MARKER, {"kind": kind, "entries": _entries(folder) + [MARKER]})


def foreign_entries(folder, kind: str) -> list[str] | None:
    """What in ``folder`` was not put there by the toolkit's build of ``kind``.

    Args:
        folder: an existing folder.
        kind: the kind of build that wants to replace it.

    Returns:
        ``None`` when ``folder`` carries no (readable) :data:`MARKER` of ``kind``, else the entries it holds that
        the marker does not list (``[]``: the folder is exactly a completed build of ``kind``, replaceable).

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x"); write_marker(d, "dataset")
        >>> foreign_entries(d, "dataset"), foreign_entries(d, "pack")
        ([], None)
        >>> _ = (d / "notes.txt").write_text("mine"); foreign_entries(d, "dataset")
        ['notes.txt']
    """
    folder = Path(folder)
    try:
        marker = json.loads((folder / MARKER).read_text())
        if not isinstance(marker, dict) or marker.get("kind") != kind or not isinstance(marker.get("entries"), list):
            return None
    except (OSError, ValueError):
        return None
    listed = set(marker["entries"])
    return [e for e in _entries(folder) if e not in listed and e.split("/", 1)[0] not in OWN_SIDECARS]


def check_replaceable(out_dir, kind: str, refusal: str | None = None, flag: str = "--out") -> None:
    """Refuse (before any work) an ``out_dir`` that :func:`build_then_swap` of ``kind`` may not replace: not a
    folder, the current folder, or not empty without being a completed ``kind`` build with nothing foreign.

    Raises:
        DataError: naming ``out_dir`` and the reason (the foreign entries listed).
    """
    given = Path(out_dir)
    real = resolve_output(given)
    if real.exists():
        if not real.is_dir():
            raise DataError(given, f"{flag}: exists and is not a folder")
        if any(real.iterdir()):
            foreign = foreign_entries(real, kind)
            if foreign is None:
                why = (
                    f"{refusal} (no {MARKER} completion marker of a {kind}: not built by hpatches-kit, or by an "
                    f"older version; move it away or choose another {flag})"
                    if refusal
                    else f"{flag}: folder exists, is not empty and was not written by hpatches-kit as a {kind} "
                    f"(no {MARKER}); refusing to overwrite it"
                )
                raise DataError(given, why)
            if foreign:
                listed = ", ".join(foreign[:3]) + (f" (+{len(foreign) - 3} more)" if len(foreign) > 3 else "")
                raise DataError(
                    given,
                    f"{flag}: holds files hpatches-kit did not write ({listed}); refusing to "
                    f"replace it (move them away or choose another {flag})",
                )


def _owner_pid(name: str) -> int | None:
    """The pid in a temporary folder name ``.<out>.<pid>-<random>.tmp`` (``None``: an older name without one)."""
    stem = name.rsplit(".", 2)
    if len(stem) < 3:
        return None
    head = stem[1].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_builds(out_dir) -> list[Path]:
    """Remove the temporary folders (``.<name>.<pid>-*.tmp`` / ``.old``) that builds of ``out_dir`` left behind
    when they were killed: only those whose owner process is gone (older names without a pid: when untouched
    for :data:`LEGACY_TEMP_AGE` seconds).

    Args:
        out_dir: the folder a build produces.

    Returns:
        The folders removed.
    """
    import glob
    import time

    out_dir = Path(out_dir)
    removed = []
    if not out_dir.parent.is_dir():
        return removed
    for p in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.*"):
        if not p.name.endswith(_TEMP_SUFFIXES) or not p.is_dir() or p.is_symlink():
            continue
        pid = _owner_pid(p.name[len(out_dir.name) + 1 :])
        try:
            stale = not _alive(pid) if pid is not None else time.time() - p.stat().st_mtime > LEGACY_TEMP_AGE
        except OSError:
            continue
        if stale and pid != os.getpid():
            shutil.rmtree(p, ignore_errors=True)
            if not p.exists():
                log.info("removed %s (left by a build that was killed)", p)
                removed.append(p)
    return removed


@contextlib.contextmanager
def _terminate_as_exit():
    """In the main thread: SIGTERM raises ``SystemExit(143)`` for the duration, so ``finally`` blocks run."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        prev = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)


def resolve_output(out_dir) -> Path:
    """The folder a build of ``out_dir`` really writes: symlinks followed (a symlinked ``--out`` is written
    through, the link stays), made absolute; refuses the current folder or one that holds it (it cannot be
    swapped while the process runs in it).

    Raises:
        DataError: ``out_dir`` is (or holds) the current working folder.
    """
    given = Path(out_dir)
    real = Path(os.path.realpath(given))
    cwd = Path(os.path.realpath(os.getcwd()))
    if real == cwd or real in cwd.parents:
        raise DataError(
            given,
            "is the current folder (or holds it) and would be replaced under it; "
            "run from another folder or choose another --out",
        )
    return real


@contextlib.contextmanager
def build_then_swap(
    out_dir, kind: str, refusal: str | None = None, inputs=None, flag: str = "--out", keep_existing: bool = False
) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``out_dir``; when the block ends without error, write the
    completion :data:`MARKER` of ``kind`` into it and swap it into place, else remove it. ``out_dir`` is
    replaced only when it is empty or a completed ``kind`` build holding nothing foreign (checked before any
    work); an interrupted build (error, Ctrl-C, SIGTERM) leaves ``out_dir`` as it was and removes its temporary
    folder, and temporaries left by builds that were killed (``SIGKILL``) are removed at the next start.

    A symlinked ``out_dir`` is written through (the target is replaced, the link stays); the folder gets the
    permissions of a plain ``mkdir`` (``0777 & ~umask``).

    Args:
        out_dir: the folder to produce.
        kind: the kind of build (``"dataset"``, ``"pack"``, ``"embedded"``, ``"descriptors"``).
        refusal: what the :class:`DataError` raised for a folder that may not be replaced says (default: a
            sentence naming ``kind``).
        inputs: ``{flag: path or paths}`` the build reads: ``out_dir`` may not be, hold or lie inside any of them
            (:func:`check_outputs`).
        flag: the option that named ``out_dir`` (for the messages).
        keep_existing: when another process completed ``out_dir`` (a ``kind`` build with nothing foreign) while
            this one built, keep that one and discard this build: readers of the first never see it move (the
            packed cache, built on first use by concurrent runs).

    Returns:
        A context manager yielding the temporary folder to build in.

    Raises:
        DataError: ``out_dir`` exists and is not a folder, or may not be replaced (the foreign entries named),
            or is the current folder.
    """
    check_outputs(replaced={flag: (out_dir, kind, refusal)}, inputs=inputs)
    out_dir = resolve_output(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out_dir)
    with _terminate_as_exit():
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{os.getpid()}-", suffix=".tmp", dir=out_dir.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        try:
            yield tmp
            if keep_existing and out_dir.is_dir() and foreign_entries(out_dir, kind) == []:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            write_marker(tmp, kind)
            old = None
            if out_dir.exists():
                old = Path(
                    tempfile.mkdtemp(prefix=f".{out_dir.name}.{os.getpid()}-", suffix=".old", dir=out_dir.parent)
                )
                os.rmdir(old)
                os.replace(out_dir, old)
            try:
                os.replace(tmp, out_dir)
            except OSError as e:
                # another process (e.g. the other worker of a multi-worker run) published the same build between
                # the check above and this swap: with keep_existing its complete build stands, this one is dropped
                if not (
                    keep_existing
                    and e.errno in (errno.ENOTEMPTY, errno.EEXIST)
                    and out_dir.is_dir()
                    and foreign_entries(out_dir, kind) == []
                ):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def read_image(
    path, flags: int, missing: str = "missing file", corrupt: str = "cannot decode image (corrupt or not a PNG)"
):
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


def _writable_ancestor(p: Path, flag: str, what: str, named: Path | None = None) -> None:
    """The nearest existing ancestor of ``p`` is a folder a file can really be created in (nothing is created:
    a check that fails, or a command that fails later, leaves no empty folders behind)."""
    named = p if named is None else named
    anc = p
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise DataError(named, f"{flag}: {what} ({anc} is not a folder)")
    try:  # a real write: also right for root and read-only mounts, where os.access says yes
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as e:
        raise DataError(named, f"{flag}: {anc} is not writable ({e.strerror or e})") from None


def check_output_file(path, flag: str) -> None:
    """``path`` can be written: not a folder, and its folder exists and is writable, or can be created (it is
    not created here)."""
    p = Path(path)
    if p.is_dir():
        raise DataError(p, f"{flag}: is a folder, expected a file name")
    _writable_ancestor(p.parent if str(p.parent) else Path("."), flag, "cannot write the file there", named=p)
    if p.exists() and not os.access(p, os.W_OK):
        raise DataError(p, f"{flag}: file is not writable")


def check_output_dir(path, flag: str) -> None:
    """``path`` is a writable folder, or can be created as one (it is not created here)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DataError(p, f"{flag}: exists and is not a folder")
    _writable_ancestor(p, flag, "cannot create the folder")


def _real(path) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:  # hard links, bind mounts
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    return folder in child.parents


def _in_own_sidecar(child: Path, folder: Path) -> bool:
    """``child`` lies in one of the toolkit's own folders of ``folder`` (:data:`OWN_SIDECARS`: the packed cache
    beside a dataset), the only place an output may be written inside an input."""
    return any(_inside(child, folder / name) or child == folder / name for name in OWN_SIDECARS)


def _as_paths(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes, os.PathLike)):
        return [value]
    return [v for v in value if v is not None]


def check_outputs(files=None, folders=None, inputs=None, replaced=None) -> None:
    """Check every output of a command before its work starts: each can be written (nothing is created), none is
    an input, lies inside an input folder, or (output folders) holds an input. Paths are compared resolved
    (symlinks followed, hard links recognised), so ``--json base/dataset.json`` with ``--data base``, or an
    output reached through a symlink to an input, is refused. One rule for every output (files, folders written
    into, folders replaced whole): the only place inside an input an output may be is the toolkit's own cache
    folder there (:data:`OWN_SIDECARS`), for the packed cache of that dataset.

    Args:
        files: ``{flag: path}`` of output files (``None`` values are skipped).
        folders: ``{flag: path}`` of output folders written into.
        replaced: ``{flag: (path, kind, refusal or None)}`` of output folders replaced whole by
            :func:`build_then_swap` (:func:`check_replaceable`).
        inputs: ``{flag: path or paths}`` of the command's input files and folders.

    Raises:
        DataError: naming the output, its flag and the input it would overwrite, or why it cannot be written.

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "base").mkdir()
        >>> try:
        ...     check_outputs(files={"--json": d / "base" / "dataset.json"}, inputs={"--data": d / "base"})
        ... except DataError as e:
        ...     print(e.problem.split(" /")[0])
        --json is inside the input folder --data
    """
    files = {k: v for k, v in (files or {}).items() if v is not None}
    folders = {k: v for k, v in (folders or {}).items() if v is not None}
    packs = set()  # packed caches: the one output allowed inside an input, in its own cache folder
    for flag, (path, kind, refusal) in (replaced or {}).items():
        if path is not None:
            check_replaceable(path, kind, refusal, flag)
            folders[flag] = path
            if kind == "pack":
                packs.add(flag)
    # inputs that do not exist are reported by their readers (and may be names, e.g. of a hub model)
    ins = [(flag, Path(p), _real(p)) for flag, v in (inputs or {}).items() for p in _as_paths(v) if os.path.lexists(p)]
    for flag, path in files.items():
        check_output_file(path, flag)
    for flag, path in folders.items():
        check_output_dir(path, flag)
    outs = [(flag, Path(p), _real(p), False) for flag, p in files.items()]
    outs += [(flag, Path(p), _real(p), True) for flag, p in folders.items()]
    for flag, given, out, is_folder in outs:
        for iflag, igiven, inp in ins:
            if _same(out, inp):
                raise DataError(given, f"{flag} is the input {iflag} {igiven}; refusing to overwrite an input")
            if _inside(out, inp) and not (flag in packs and _in_own_sidecar(out, inp)):
                raise DataError(given, f"{flag} is inside the input folder {iflag} {igiven}; write it elsewhere")
            if is_folder and _inside(inp, out):
                raise DataError(given, f"{flag} folder holds the input {iflag} {igiven}; write it elsewhere")
    for i, (flag, given, out, _) in enumerate(outs):
        for flag2, _given2, out2, _ in outs[i + 1 :]:
            if _same(out, out2):
                raise DataError(given, f"{flag} and {flag2} are the same path; give them different paths")


#: the lock file :func:`lock_folder` holds in a folder while a process writes it
LOCK = ".lock"


def lock_folder(folder, flag: str = "--out"):
    """Take the OS-level exclusive lock of ``folder`` (``fcntl.flock`` on ``folder/.lock``) for as long as the
    returned file stays open; the OS releases it when the process ends, however it ends (also ``SIGKILL``).

    Args:
        folder: an existing folder this process is about to write.
        flag: the option that named it (for the message).

    Returns:
        The open lock file: keep it, ``close()`` it to release the lock.

    Raises:
        DataError: another process holds the lock (its pid is named).
    """
    import fcntl

    folder = Path(folder)
    f = open(folder / LOCK, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise DataError(
            folder, f"another run ({holder}) is writing this folder; wait for it to end or choose another {flag}"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


#: the options (argparse ``dest``) of the CLIs that name input files or folders
INPUT_OPTIONS = (
    "data",
    "splits_file",
    "descriptors",
    "model",
    "denoiser",
    "tasks_dir",
    "init",
    "photos",
    "src",
    "results",
    "weights",
)


def input_paths(args, **extra) -> dict:
    """``{flag: path}`` of every input option (:data:`INPUT_OPTIONS`) set in ``args`` (a namespace or dict),
    with ``extra`` (``data=root`` for a resolved default) overriding: the ``inputs`` of :func:`check_outputs`.

    Example:
        >>> import argparse
        >>> input_paths(argparse.Namespace(data="base", model=None, json="r.json"))
        {'--data': 'base'}
    """
    values = args if isinstance(args, dict) else vars(args)
    values = {**values, **extra}
    return {"--" + k.replace("_", "-"): values[k] for k in INPUT_OPTIONS if values.get(k) is not None}
