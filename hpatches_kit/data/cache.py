"""The packed cache that training and evaluation build on first use and stream from afterwards.

A dataset folder is decoded once into a packed cache (:mod:`hpatches_kit.data.pack`) kept beside the data
(``<root>/.hpatches-kit-cache/``) when that folder is writable, else under the user cache folder
(``$HPATCHES_KIT_HOME/packed/``, see :func:`hpatches_kit.data.embedded.cache_dir`; always there for the
embedded default dataset, which is shared). Contract:

* **Keyed by the source.** The cache folder's name holds a hash of the source fingerprint (names, sizes and
  modification times of every sequence's PNGs: :func:`~hpatches_kit.data.packed.source_fingerprint`), the
  patch size and the noise flag: a changed dataset has another key, is rebuilt, and never reads a stale cache.
  Caches of older fingerprints of the same source and size are removed after the new one is complete.
* **Atomic.** A cache is built in a ``.<key>.<pid>.*.tmp`` sibling and renamed into place when complete (its
  ``manifest.json`` written last); a half-written cache is never read. A build killed midway leaves only its
  temporary folder, which the next build removes (its process is gone). When two processes build the same key
  at once, the first to finish wins and the other discards its copy.
* **Streaming.** Training reads S x K batches from the cache's *row store* (one file per track, read with
  ``tf.io.read_file``: random access in pure TensorFlow, static shapes, no ``py_function``) through
  :class:`StreamedTracks`; evaluation maps ``tracks.npy`` (memory-mapped, pages read on demand).

``HPATCHES_KIT_CACHE=off`` (or ``cache="off"``) reads the PNGs into memory as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from ..layout import NOISE_SUFFIX, TYPES
from .errors import DataError
from .fsio import OWN_SIDECARS
from .packed import FORMAT, FORMAT_VERSION, MANIFEST, PackedDataset, load_packed, source_fingerprint

log = logging.getLogger(__name__)

CACHE_DIRNAME = OWN_SIDECARS[0]  # fsio treats it as the toolkit's own beside a built dataset
CACHE_MODES = ("auto", "off")


def cache_mode(mode: str | None = None) -> str:
    """``mode``, else ``$HPATCHES_KIT_CACHE``, else ``"auto"``; one of :data:`CACHE_MODES`."""
    m = mode or os.environ.get("HPATCHES_KIT_CACHE") or "auto"
    if m not in CACHE_MODES:
        raise ValueError(f"cache mode must be one of {', '.join(CACHE_MODES)}, got {m!r} (HPATCHES_KIT_CACHE?)")
    return m


def is_packed_cache(path) -> bool:
    """Whether ``path`` is a packed cache folder (holds a ``manifest.json`` of this format, or a broken
    ``manifest.json`` beside a ``tracks.npy``: a corrupt cache, which :func:`load_packed` then names as such)."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        return False
    try:
        import json

        m = json.loads(f.read_text())
        return (m.get("format") == FORMAT) if isinstance(m, dict) else (Path(path) / "tracks.npy").is_file()
    except (OSError, ValueError):
        return (Path(path) / "tracks.npy").is_file()


def _writable(d: Path) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=d):
            return True
    except OSError:
        return False


def cache_parent(root) -> Path:
    """Where the caches of the dataset at ``root`` live: ``<root>/.hpatches-kit-cache`` when ``root`` is
    writable and not inside the user cache folder (the shared embedded data), else
    ``<cache_dir>/packed/<name>-<hash of the path>``."""
    from .embedded import cache_dir

    root = Path(root).resolve()
    home = cache_dir().resolve()
    inside_home = home == root or home in root.parents
    if not inside_home and _writable(root):
        return root / CACHE_DIRNAME
    return home / "packed" / f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:10]}"


def cache_key(fingerprint: str, size: int | None, noise: bool) -> str:
    """The folder name of a cache: patch size, noise flag and a hash of the source fingerprint and format."""
    h = hashlib.sha256(f"{FORMAT}:{FORMAT_VERSION}:{fingerprint}:{size}:{int(noise)}".encode()).hexdigest()[:16]
    return f"s{size or 'native'}-n{int(noise)}-{h}"


def ensure_packed(
    root, size: int | None = None, rows: bool = False, progress: bool = True, parent=None, workers: int | None = None
) -> Path:
    """The packed cache of the HPatches-format dataset at ``root`` (every sequence, noisy twins when all have
    them), built now when there is none for the dataset as it is on disk.

    Args:
        root: the dataset folder.
        size: patch size of the cache (``None``: the source's).
        rows: the cache must have the row store that training streams from.
        progress: progress bars while building.
        parent: where caches live (default :func:`cache_parent`).
        workers: PNG decoding threads.

    Returns:
        The cache folder (``<parent>/<key>``, :func:`cache_key`).

    Raises:
        DataError: unreadable data (the file is named), or no place to write the cache.

    Example:
        >>> ensure_packed("hpatches-release", size=32, rows=True)  # doctest: +SKIP
        PosixPath('hpatches-release/.hpatches-kit-cache/s32-n0-0f3a...')
    """
    from .hpatches import find_sequence_dirs
    from .pack import pack_dataset

    root = Path(root)
    dirs = find_sequence_dirs(root)
    noise = all((d / f"{t}{NOISE_SUFFIX}.png").is_file() for d in dirs for t in TYPES)
    key = cache_key(source_fingerprint(dirs), size, noise)
    parent = Path(parent) if parent is not None else cache_parent(root)
    out = parent / key
    if (out / MANIFEST).is_file():
        try:
            pk = load_packed(out, verify="quick")
            if pk.manifest.get("rows") or not rows:
                return out
        except DataError as e:
            log.warning("%s; rebuilding it", e)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(parent, f"cannot create the packed-cache folder ({e.strerror or e})") from None
    if out.is_dir() and not (out / MANIFEST).is_file():  # not a cache (no manifest, written last): ours to replace
        shutil.rmtree(out, ignore_errors=True)
    elif (out.exists() or out.is_symlink()) and not out.is_dir():  # a file where this cache goes: in our own folder
        log.warning("%s: not a packed cache (a file) in the cache folder; replacing it", out)
        try:
            out.unlink()
        except OSError as e:
            raise DataError(out, f"packed cache: cannot replace this file with the cache ({e.strerror or e})") from None
    log.info("packing %s into %s (once; later runs stream from it)", root, out)
    pack_dataset(
        root,
        out,
        size=size,
        noise=noise,
        tfrecords=False,
        progress=progress,
        workers=workers,
        rows=rows,
        keep_existing=not (out / MANIFEST).is_file(),
    )
    prefix = key.rsplit("-", 1)[0] + "-"
    for old in parent.glob(prefix + "*"):  # caches of earlier versions of this dataset at this size
        if old.name != key and old.is_dir() and (old / MANIFEST).is_file():
            shutil.rmtree(old, ignore_errors=True)
    return out


def _mapping(arr):
    """The ``mmap.mmap`` under ``arr`` (an ``np.memmap`` or a view of one), else ``None``."""
    import mmap

    base = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = (
            getattr(base, "_mmap", None)
            if isinstance(base, np.memmap) and base._mmap is not None
            else getattr(base, "base", None)
        )
    return base


def is_mapped(arr) -> bool:
    """Whether ``arr`` is (a view of) a memory-mapped file, e.g. a packed cache's tracks."""
    return _mapping(arr) is not None


def release_pages(arr) -> None:
    """Drop the pages of a memory-mapped array from this process's resident set (``madvise(MADV_DONTNEED)``
    on its mapping; the data stays in the page cache, a later read maps it again). No-op for other arrays.

    Args:
        arr: an ``np.memmap`` (or a view of one); anything else is ignored.
    """
    import mmap

    base = _mapping(arr)
    if base is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            base.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def packed_source_root(pk: PackedDataset) -> Path | None:
    """The dataset folder a cache was packed from, if it still exists."""
    r = (pk.manifest.get("source") or {}).get("root")
    return Path(r) if r and Path(r).is_dir() else None


class StreamedTracks:
    """Tracks of a packed cache, ``(T, 16, P, P) uint8`` rows ``rows`` of it, without loading them.

    Behaves like the array where training touches it (``len``, ``shape``, indexing and ``np.asarray`` read
    from the memory-mapped ``tracks.npy``); :func:`hpatches_kit.training.pipelines.descriptor_dataset` streams
    its batches from the row store instead of holding a table (:meth:`tf_read`).

    Args:
        packed: the loaded cache (:func:`~hpatches_kit.data.packed.load_packed`).
        rows: the cache rows of these tracks, in order (default: all).
        noisy: the ``*_noise`` twins instead of the clean patches.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, packed: PackedDataset, rows=None, noisy: bool = False):
        if noisy and packed.noisy is None:
            raise DataError(packed.path, "this packed cache has no noisy images")
        self.packed = packed
        self.rows = np.arange(packed.num_tracks, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        self.noisy = bool(noisy)

    @property
    def array(self) -> np.ndarray:
        return self.packed.noisy if self.noisy else self.packed.tracks

    @property
    def shape(self) -> tuple:
        return (len(self.rows),) + tuple(self.array.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        r = self.rows[key]
        if np.ndim(r) == 0:
            out = np.asarray(self.array[int(r)])
        elif len(r) and np.all(np.diff(r) == 1):
            out = np.asarray(self.array[int(r[0]) : int(r[-1]) + 1])
        else:
            out = self.array[r]
        if rest and np.ndim(r):
            # an array in the next position pairs with the rows, as NumPy's advanced indexing does
            # (tracks[idx, views] = one view per track), a slice applies to every row
            first = (np.arange(len(out)),) if np.ndim(rest[0]) > 0 else (slice(None),)
            return out[first + rest]
        return out[rest] if rest else out

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a.astype(dtype) if dtype is not None else a

    def reshape(self, *shape):
        return np.asarray(self).reshape(*shape)

    def astype(self, dtype):
        return np.asarray(self).astype(dtype)

    @property
    def has_row_store(self) -> bool:
        rows = self.packed.manifest.get("rows")
        return bool(rows and (rows.get("noisy_dir") if self.noisy else rows.get("dir")))

    def tf_read(self, row):
        """TensorFlow ops reading cache row ``row`` (an int64 scalar tensor) from the row store.

        Shape:
            ``(16, P, P) uint8``, static.
        """
        import tensorflow as tf

        from .packed import ROWS_PER_DIR

        if not self.has_row_store:
            raise DataError(
                self.packed.path, "this packed cache has no row store to stream from (pack it with rows=True)"
            )
        m = self.packed.manifest["rows"]
        base = str(Path(self.packed.path).resolve() / (m["noisy_dir"] if self.noisy else m["dir"]))
        p = self.packed.patch_size
        path = tf.strings.join(
            [
                base,
                "/",
                tf.strings.as_string(row // ROWS_PER_DIR, width=5, fill="0"),
                "/",
                tf.strings.as_string(row, width=8, fill="0"),
                ".u8",
            ]
        )
        flat = tf.ensure_shape(tf.io.decode_raw(tf.io.read_file(path), tf.uint8), [len(TYPES) * p * p])
        return tf.reshape(flat, [len(TYPES), p, p])
