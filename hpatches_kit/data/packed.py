"""Reading a packed dataset cache (the layout of :mod:`.pack`): :func:`load_packed` and :class:`PackedDataset`.

Also the format constants and the source fingerprint that the packer writes and the reader checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..layout import TYPES
from .errors import DataError
from .fsio import read_json, sha256_file
from .hpatches import HPatchesDataset, Sequence, find_sequence_dirs
from .tfrecord import parse_track_example

FORMAT = "hpatches-kit-packed"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_BYTES = 256 << 20  # default shard size when shards=None
NT = len(TYPES)


ROWS_PER_DIR = 1000


def row_file(i: int) -> str:
    """The path of track ``i`` inside a row store (``rows/`` or ``rows_noisy/``): ``DDDDD/IIIIIIII.u8``."""
    return f"{i // ROWS_PER_DIR:05d}/{i:08d}.u8"


def shard_name(i: int, n: int) -> str:
    return f"tracks-{i:05d}-of-{n:05d}.tfrecord"


def source_fingerprint(seq_dirs) -> str:
    """A cheap fingerprint of a dataset on disk: names, sizes and mtimes of every sequence's PNGs."""
    h = hashlib.sha256()
    for d in seq_dirs:
        d = Path(d)
        h.update(d.name.encode() + b"\0")
        for f in sorted(d.glob("*.png")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# -- loading ------------------------------------------------------------------------------------------
@dataclass
class PackedDataset:
    """A loaded packed cache. ``tracks``/``noisy`` are read-only memmaps when loaded with ``mmap=True``."""

    tracks: np.ndarray  # (T, 16, P, P) uint8
    noisy: np.ndarray | None
    seq_ids: np.ndarray  # (T,) int32
    seq_names: list[str]
    track_idx: np.ndarray | None = None
    manifest: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def patch_size(self) -> int:
        return int(self.tracks.shape[-1])

    @property
    def num_tracks(self) -> int:
        return int(self.tracks.shape[0])

    @property
    def tfrecord_files(self) -> list[str]:
        return [str(Path(self.path) / s["file"]) for s in self.manifest.get("shards", [])]

    def sequence_slice(self, name: str) -> slice:
        counts = self.manifest["seq_counts"]
        k = self.seq_names.index(name)
        a = int(sum(counts[:k]))
        return slice(a, a + int(counts[k]))

    def to_dataset(self) -> HPatchesDataset:
        """An :class:`HPatchesDataset` whose sequences are views into the (memory-mapped) arrays."""
        seqs = []
        for name in self.seq_names:
            sl = self.sequence_slice(name)
            seqs.append(
                Sequence(
                    name=name,
                    tracks=self.tracks[sl],
                    noisy=None if self.noisy is None else self.noisy[sl],
                    path=self.path,
                )
            )
        return HPatchesDataset(seqs, root=self.manifest.get("source", {}).get("root"))

    def tf_dataset(self, noisy: bool = False, shuffle_files: bool = False, num_parallel_reads=None):
        """``tf.data.Dataset`` of parsed tracks from the TFRecord shards."""
        import tensorflow as tf

        files = self.tfrecord_files
        if not files:
            raise DataError(self.path, "this packed cache has no TFRecord shards (packed with tfrecords=False)")
        if noisy and not self.manifest.get("noisy"):
            raise DataError(self.path, "this packed cache has no noisy images")
        fds = tf.data.Dataset.from_tensor_slices(files)
        if shuffle_files:
            fds = fds.shuffle(len(files))
        ds = tf.data.TFRecordDataset(fds, num_parallel_reads=num_parallel_reads or tf.data.AUTOTUNE)
        p = self.patch_size
        return ds.map(lambda s: parse_track_example(s, p, noisy), num_parallel_calls=tf.data.AUTOTUNE)


def _stale(path, why: str) -> DataError:
    return DataError(path, f"stale or corrupt packed cache: {why}; re-run `hpatches-data pack`")


def _check_row_store(folder: Path, total: int, row_bytes: int) -> None:
    """Every one of the ``total`` track files of a row store exists with ``row_bytes`` bytes (one directory
    listing per 1000 tracks: training would otherwise stop mid-epoch on the first missing or short file)."""
    import os

    for d in range((total + ROWS_PER_DIR - 1) // ROWS_PER_DIR):
        sub = folder / f"{d:05d}"
        try:
            sizes = {e.name: e.stat().st_size for e in os.scandir(sub) if e.name.endswith(".u8")}
        except OSError:
            raise _stale(sub, "row store folder is missing") from None
        for i in range(d * ROWS_PER_DIR, min(total, (d + 1) * ROWS_PER_DIR)):
            name = f"{i:08d}.u8"
            if name not in sizes:
                raise _stale(sub / name, "row store file is missing")
            if sizes[name] != row_bytes:
                raise _stale(sub / name, f"row store file is {sizes[name]} bytes, expected {row_bytes} (truncated)")


def _verified_record(out_dir: Path) -> Path:
    """Where the digests of the cache at ``out_dir`` are remembered as verified: a small file in the user cache
    folder (not in the cache itself: its entries are listed by its build marker; read-only caches work too)."""
    from .embedded import cache_dir

    key = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:20]
    return cache_dir() / "verified" / f"{key}.json"


def _stamp(f: Path, digest: str) -> list:
    st = f.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, digest]


def verify_digests(out_dir, man: dict, always: bool = False) -> None:
    """Check the sha256 of every array and shard of a packed cache against its manifest, once per cache: the
    files verified are remembered (size, modification time, inode and digest, :func:`_verified_record`), and a
    file is hashed again only when one of these changed (a rewrite, even one keeping the size, changes the
    time). ``always``: hash every file (``verify="full"``).

    Raises:
        DataError: "stale or corrupt packed cache: sha256 checksum mismatch", naming the file.
    """
    from ..io import atomic_write_json

    out_dir = Path(out_dir)
    rec = _verified_record(out_dir)
    try:
        known = json.loads(rec.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        known = {}
    done, changed = {}, False
    for entry in list(man.get("arrays", {}).values()) + list(man.get("shards", [])):
        f = out_dir / entry["file"]
        stamp = _stamp(f, entry["sha256"])
        if not always and known.get(entry["file"]) == stamp:
            done[entry["file"]] = stamp
            continue
        if sha256_file(f) != entry["sha256"]:
            raise _stale(f, "sha256 checksum mismatch (file corrupted)")
        done[entry["file"]], changed = stamp, True
    if changed or set(done) != set(known):
        try:
            atomic_write_json(rec, {"cache": str(out_dir.resolve()), "files": done})
        except OSError:  # nowhere to remember it: verified again next time
            pass


def remember_verified(out_dir, man: dict) -> None:
    """Record the files of a cache just built (their digests computed from the bytes written) as verified, so the
    first open does not hash them again; only when the manifest on disk is ``man`` (a concurrent build of the
    same cache may have been kept instead)."""
    from ..io import atomic_write_json

    out_dir = Path(out_dir)
    try:
        if json.loads((out_dir / MANIFEST).read_text()) != json.loads(json.dumps(man)):
            return
        files = {
            e["file"]: _stamp(out_dir / e["file"], e["sha256"])
            for e in list(man.get("arrays", {}).values()) + list(man.get("shards", []))
        }
        atomic_write_json(_verified_record(out_dir), {"cache": str(out_dir.resolve()), "files": files})
    except (OSError, ValueError):
        pass


def load_packed(out_dir, mmap: bool = True, verify: str = "quick", source=None) -> PackedDataset:
    """Load a packed cache.

    ``mmap=True`` memory-maps the arrays (near-instant, no RAM until touched). ``verify``: ``"quick"``
    checks the manifest, file sizes, array headers, counts and every row-store file, and the sha256 of every file
    once per cache (remembered: :func:`verify_digests`); ``"full"`` hashes every file each time;
    ``"none"`` skips the checks. ``source``: a dataset folder; raises if it changed since packing (stale).
    """
    out_dir = Path(out_dir)
    if verify not in ("none", "quick", "full"):
        raise ValueError(f"verify must be 'none', 'quick' or 'full', got {verify!r}")
    mf = out_dir / MANIFEST
    if not out_dir.is_dir():
        raise DataError(out_dir, "packed cache folder does not exist; create it with `hpatches-data pack`")
    if not mf.is_file():
        raise DataError(out_dir, "not a packed cache (no manifest.json); create it with `hpatches-data pack`")
    try:
        man = read_json(mf)
    except DataError as e:
        raise _stale(mf, f"manifest is {e.problem}") from None
    if man.get("format") != FORMAT:
        raise _stale(mf, f"unknown format {man.get('format')!r}")
    if man.get("version") != FORMAT_VERSION:
        raise _stale(
            mf, f"written by format version {man.get('version')}, this hpatches-kit reads version {FORMAT_VERSION}"
        )
    try:
        arrays = man["arrays"]
        total, p = int(man["num_tracks"]), int(man["patch_size"])
        names, counts = list(man["seq_names"]), [int(c) for c in man["seq_counts"]]
    except (KeyError, TypeError, ValueError) as e:
        raise _stale(mf, f"manifest lacks or has a bad field {e}") from None
    if verify != "none":
        if sum(counts) != total or len(names) != len(counts):
            raise _stale(
                mf,
                f"manifest counts disagree: {len(names)} names, {len(counts)} counts summing to {sum(counts)}, num_tracks {total}",
            )
        expect_shapes = {
            "tracks": [total, NT, p, p],
            "noisy": [total, NT, p, p],
            "seq_ids": [total],
            "track_idx": [total],
        }
        for name in ("tracks", "seq_ids") + (("noisy",) if man.get("noisy") else ()):
            if name not in arrays:
                raise _stale(mf, f"manifest lists no {name} array")
        for name, a in arrays.items():
            f = out_dir / a["file"]
            if not f.is_file():
                raise _stale(f, "file is missing")
            if f.stat().st_size != a["bytes"]:
                raise _stale(
                    f, f"file is {f.stat().st_size} bytes, manifest says {a['bytes']} (truncated or rewritten)"
                )
            if list(a["shape"]) != expect_shapes.get(name, a["shape"]):
                raise _stale(f, f"manifest shape {a['shape']} disagrees with the counts {expect_shapes[name]}")
        for s in man.get("shards", []):
            f = out_dir / s["file"]
            if not f.is_file():
                raise _stale(f, "TFRecord shard is missing")
            if f.stat().st_size != s["bytes"]:
                raise _stale(f, f"TFRecord shard is {f.stat().st_size} bytes, manifest says {s['bytes']}")
        rows = man.get("rows")
        if rows and total:
            for folder in (rows["dir"], rows.get("noisy_dir")):
                if folder:
                    _check_row_store(out_dir / folder, total, int(rows["row_bytes"]))
        if sum(s["tracks"] for s in man.get("shards", [])) not in (0, total):
            raise _stale(mf, "TFRecord shards do not cover every track")
        verify_digests(out_dir, man, always=verify == "full")
    if source is not None:
        by_name = {d.name: d for d in find_sequence_dirs(source)}
        gone = [n for n in names if n not in by_name]
        if gone:
            raise _stale(out_dir, f"source {source} no longer has the packed sequences {', '.join(gone[:5])}")
        if source_fingerprint([by_name[n] for n in names]) != man.get("source", {}).get("fingerprint"):
            raise _stale(out_dir, f"source {source} changed since it was packed (file sizes or times differ)")

    def load(name):
        a = arrays[name]
        f = out_dir / a["file"]
        try:
            arr = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise _stale(f, f"cannot read array ({e})") from None
        if verify != "none" and (list(arr.shape) != list(a["shape"]) or str(arr.dtype) != a["dtype"]):
            raise _stale(f, f"array is {arr.shape} {arr.dtype}, manifest says {tuple(a['shape'])} {a['dtype']}")
        return arr

    tracks = load("tracks")
    noisy = load("noisy") if "noisy" in arrays else None
    seq_ids = np.asarray(load("seq_ids"))
    track_idx = np.asarray(load("track_idx")) if "track_idx" in arrays else None
    return PackedDataset(
        tracks=tracks,
        noisy=noisy,
        seq_ids=seq_ids,
        seq_names=names,
        track_idx=track_idx,
        manifest=man,
        path=str(out_dir),
    )
