"""Packed dataset cache: memory-mapped ``.npy`` arrays for fast reload, plus TFRecord shards for tf.data.

Layout of a packed cache folder::

    manifest.json                 format version, counts, shapes, sha256 of every file, source fingerprint
    tracks.npy                    (T, 16, P, P) uint8   -- track-major, rows of all sequences in order
    noisy.npy                     (T, 16, P, P) uint8   -- only when every sequence has *_noise.png twins
    seq_ids.npy                   (T,) int32            -- index into manifest["seq_names"]
    track_idx.npy                 (T,) int32            -- patch index of the track inside its sequence
    tracks-XXXXX-of-YYYYY.tfrecord  one tf.train.Example per track (see :func:`parse_track_example`)

The cache is built in a temporary sibling folder and renamed into place, so ``out_dir`` is either a complete
cache or untouched. Packing from a folder streams one sequence at a time into the memory-mapped output, so
peak memory is one sequence, not the dataset. :func:`load_packed` checks the manifest (format version,
file sizes, array shapes/dtypes, counts; ``verify="full"`` also sha256) and, given the source folder, that
the source has not changed since packing -- a stale or corrupt cache raises :class:`DataError` saying so.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np

from ..io import atomic_write_json
from ..layout import NOISE_SUFFIX, TYPES
from .errors import DataError
from .fsio import build_then_swap, check_outputs, sha256_file
from .hpatches import HPatchesDataset, iter_load_sequences, resize_patches, select_sequence_dirs
from .packed import (  # noqa: F401  (re-exported: public names of this module since v0.1)
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    NT,
    ROWS_PER_DIR,
    SHARD_BYTES,
    PackedDataset,
    load_packed,
    remember_verified,
    row_file,
    shard_name,
    source_fingerprint,
)
from .sequences import png_size
from .tfrecord import parse_track_example, track_example  # noqa: F401  (re-exported: public since v0.1)

# -- helpers ------------------------------------------------------------------------------------------


def _select_dirs(root, split, subset, splits_file, sequences=None) -> list[Path]:
    dirs = select_sequence_dirs(root, split=split, subset=subset, splits_file=splits_file, sequences=sequences)
    if not dirs:
        raise DataError(root, "no sequences selected to pack")
    return dirs


def _ref_count(d: Path) -> int:
    """Patch count of a sequence from its ref.png header (no decode); load_sequence re-checks on decode."""
    f = d / "ref.png"
    wh = png_size(f)
    if wh is None:
        raise DataError(f, "missing file" if not f.is_file() else "cannot decode image (corrupt or not a PNG)")
    w, h = wh
    if w == 0 or h == 0 or h % w:
        raise DataError(f, f"image height {h} is not a multiple of the patch size {w}")
    return h // w


def _atomic_dir(out_dir: Path, inputs=None, keep_existing: bool = False):
    """Build a packed cache in a temporary sibling and swap it into place on success."""
    return build_then_swap(out_dir, "pack", _REFUSAL, inputs=inputs, keep_existing=keep_existing)


_REFUSAL = "exists, is not empty and is not a packed cache; refusing to overwrite it"


# -- packing ------------------------------------------------------------------------------------------
def pack_dataset(
    ds_or_root=None,
    out_dir=None,
    size: int | None = 32,
    shards: int | None = None,
    split: str | None = None,
    subset: str = "test",
    splits_file=None,
    noise: bool | None = None,
    tfrecords: bool = True,
    progress: bool = True,
    workers: int | None = None,
    rows: bool = False,
    keep_existing: bool = False,
) -> Path:
    """Pack a dataset (an :class:`HPatchesDataset`, a dataset folder, or ``None`` = embedded default) into
    ``out_dir``; returns ``out_dir``.

    ``size``: patch size of the cache (``None`` keeps the source size). ``shards``: number of TFRecord shards
    (``None``: about 256 MiB each). ``split``/``subset``/``splits_file`` select sequences as in
    :func:`load_dataset`. ``noise``: ``None`` packs ``noisy.npy`` when every sequence has noisy twins, ``True``
    requires them, ``False`` skips them. ``workers``: threads decoding PNGs (see :func:`iter_load_sequences`).
    ``rows``: also write the row store (one file per track, ``rows/``) that training streams from
    (:func:`hpatches_kit.data.cache.StreamedTracks`). ``keep_existing``: see :func:`~.fsio.build_then_swap`.
    """
    from ..checks import check_options

    if out_dir is None:
        raise ValueError("out_dir is required")
    check_options(size=size, shards=shards, workers=workers)
    out_dir = Path(out_dir)
    t0 = time.time()
    root_in = None if ds_or_root is None or isinstance(ds_or_root, HPatchesDataset) else ds_or_root
    inputs = {"--data": root_in, "--splits-file": splits_file}
    check_outputs(replaced={"--out": (out_dir, "pack", _REFUSAL)}, inputs=inputs)

    if isinstance(ds_or_root, HPatchesDataset):
        ds = ds_or_root.split(split, subset=subset, splits_file=splits_file) if split else ds_or_root
        if not len(ds):
            raise DataError(ds.root, "no sequences selected to pack")
        names = ds.names
        counts = [s.num_patches for s in ds]
        src_p = ds.patch_size
        has_noise = ds.has_noise if noise is None else bool(noise)
        if noise and not ds.has_noise:
            raise DataError(ds.root, "noise=True but the dataset has no noisy images")
        source = {"root": ds.root, "fingerprint": None}

        def sequences():
            yield from ds

    else:
        root = ds_or_root
        if root is None:
            from .embedded import ensure_default

            root = ensure_default(progress=progress)
        root = Path(root)
        dirs = _select_dirs(root, split, subset, splits_file)
        names = [d.name for d in dirs]
        counts = [_ref_count(d) for d in dirs]
        src_p = png_size(dirs[0] / "ref.png")[0]
        all_noise = all((d / f"{t}{NOISE_SUFFIX}.png").is_file() for d in dirs for t in TYPES)
        if noise and not all_noise:
            bad = next(d for d in dirs if not all((d / f"{t}{NOISE_SUFFIX}.png").is_file() for t in TYPES))
            raise DataError(bad, "noise=True but this sequence has no (complete) *_noise.png twins")
        has_noise = all_noise if noise is None else bool(noise)
        source = {
            "root": str(root.resolve()),
            "fingerprint": source_fingerprint(dirs),
            "split": split,
            "subset": subset,
        }

        def sequences():
            yield from iter_load_sequences(dirs, size=size, noise=has_noise, workers=workers)

    return pack_stream(
        sequences(),
        out_dir,
        names,
        counts,
        patch_size=int(size or src_p),
        noisy=has_noise,
        source=source,
        source_patch_size=int(src_p),
        shards=shards,
        tfrecords=tfrecords,
        progress=progress,
        t0=t0,
        inputs=inputs,
        rows=rows,
        keep_existing=keep_existing,
    )


def pack_stream(
    sequences,
    out_dir,
    names,
    counts,
    patch_size: int,
    noisy: bool = False,
    source: dict | None = None,
    source_patch_size: int | None = None,
    shards: int | None = None,
    tfrecords: bool = True,
    progress: bool = True,
    t0: float | None = None,
    inputs=None,
    rows: bool = False,
    keep_existing: bool = False,
) -> Path:
    """Pack an iterable of :class:`Sequence` (named ``names``, holding ``counts`` tracks each, in order)
    without holding more than one of them in memory; patches are resized to ``patch_size``. This is what
    :func:`pack_dataset` does after reading the folder's PNG headers for the counts. ``inputs``: ``{flag: paths}``
    the packing reads (``out_dir`` may not overlap them, :func:`.fsio.check_outputs`)."""
    from tqdm.auto import tqdm

    t0 = time.time() if t0 is None else t0
    names, counts = list(names), [int(c) for c in counts]
    if len(names) != len(counts):
        raise ValueError(f"{len(names)} names but {len(counts)} counts")
    has_noise = bool(noisy)
    src_p = int(source_patch_size or patch_size)
    source = source or {"root": None, "fingerprint": None}
    p = int(patch_size)
    total = int(sum(counts))
    shape = (total, NT, p, p)
    per_track = NT * p * p * (2 if has_noise else 1)
    n_shards = int(shards) if shards else max(1, math.ceil(total * per_track / SHARD_BYTES))
    n_shards = max(1, min(n_shards, max(total, 1)))

    with _atomic_dir(out_dir, inputs, keep_existing) as tmp:
        # plain sequential writes (not a writable memmap): the written pages stay in the page cache instead
        # of the process's resident set, and the sha256 is computed on the way
        tracks = _NpyWriter(tmp / "tracks.npy", shape)
        noisy = _NpyWriter(tmp / "noisy.npy", shape) if has_noise else None
        seq_ids = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        track_idx = np.concatenate([np.arange(c, dtype=np.int32) for c in counts]) if counts else np.zeros(0, np.int32)
        off = 0
        try:
            it = tqdm(
                sequences, total=len(names), desc="packing sequences", unit="seq", disable=not progress, leave=False
            )
            for k, s in enumerate(it):
                if k >= len(names) or s.name != names[k]:
                    raise DataError(
                        s.path or s.name,
                        f"sequence {k} is {s.name!r}, expected {names[k]!r}"
                        if k < len(names)
                        else f"more sequences than the {len(names)} named",
                    )
                if s.noisy is None and noisy is not None:
                    raise DataError(s.path or s.name, "sequence has no noisy images but the cache is packed with noise")
                if s.num_patches != counts[k]:
                    raise DataError(
                        s.path or s.name, f"holds {s.num_patches} patches, expected {counts[k]} (from ref.png)"
                    )
                tracks.write(resize_patches(s.tracks, p))
                if noisy is not None:
                    noisy.write(resize_patches(s.noisy, p))
                off += s.num_patches
            if off != total:
                raise DataError(out_dir, f"sequences supplied {off} tracks, expected {total}")
        finally:
            tracks.close()
            if noisy is not None:
                noisy.close()
        np.save(tmp / "seq_ids.npy", seq_ids)
        np.save(tmp / "track_idx.npy", track_idx)

        row_meta = None
        if rows:
            row_meta = _write_rows(tmp, shape, has_noise, progress)
        shard_meta = []
        if tfrecords:
            shard_meta = _write_shards(tmp, shape, has_noise, seq_ids, n_shards, progress)
        arrays = {}
        for name, arr in (("tracks", tracks), ("noisy", noisy), ("seq_ids", seq_ids), ("track_idx", track_idx)):
            if arr is None:
                continue
            f = tmp / f"{name}.npy"
            digest = arr.sha256 if isinstance(arr, _NpyWriter) else sha256_file(f)
            arrays[name] = {
                "file": f.name,
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "bytes": f.stat().st_size,
                "sha256": digest,
            }
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(time.time() - t0, 2),
            "source": source,
            "source_patch_size": int(src_p),
            "patch_size": p,
            "num_tracks": total,
            "num_patches": total * NT,
            "types": list(TYPES),
            "noisy": bool(has_noise),
            "seq_names": names,
            "seq_counts": [int(c) for c in counts],
            "arrays": arrays,
            "shards": shard_meta,
        }
        if row_meta is not None:
            manifest["rows"] = row_meta
        atomic_write_json(tmp / MANIFEST, manifest)
    remember_verified(out_dir, manifest)  # its digests were computed from the bytes written
    return out_dir


class _NpyWriter:
    """Write a C-order uint8 ``.npy`` of known shape by appending row blocks; hashes as it goes."""

    def __init__(self, path: Path, shape, dtype=np.uint8):
        import io

        self.path, self.shape, self.dtype = Path(path), tuple(int(x) for x in shape), np.dtype(dtype)
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            head, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        )
        self._h = hashlib.sha256(head.getvalue())
        self._f = open(self.path, "wb")
        self._f.write(head.getvalue())
        self.rows = 0

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + block.shape[0] > self.shape[0]:
            raise ValueError(f"{self.path}: block {block.shape} does not fit array {self.shape} at row {self.rows}")
        mv = memoryview(block).cast("B")
        self._h.update(mv)
        self._f.write(mv)
        self.rows += block.shape[0]

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    @property
    def sha256(self) -> str:
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: wrote {self.rows} of {self.shape[0]} rows")
        return self._h.hexdigest()


def _read_rows(path: Path, shape, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of a uint8 ``.npy`` by a plain read (keeps the process's RSS small)."""
    row = int(np.prod(shape[1:]))
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        f.seek(f.tell() + start * row)
        buf = f.read((stop - start) * row)
    return np.frombuffer(buf, np.uint8).reshape((stop - start,) + tuple(shape[1:]))


def _write_shards(tmp: Path, shape, has_noise: bool, seq_ids, n_shards: int, progress: bool) -> list[dict]:
    import tensorflow as tf
    from tqdm.auto import tqdm

    total = shape[0]
    bounds = np.linspace(0, total, n_shards + 1).astype(np.int64)
    meta = []
    bar = tqdm(total=total, desc="writing TFRecords", unit="track", disable=not progress, leave=False)
    for i in range(n_shards):
        a, b = int(bounds[i]), int(bounds[i + 1])
        f = tmp / shard_name(i, n_shards)
        with tf.io.TFRecordWriter(str(f)) as w:
            for s in range(a, b, 2048):  # read the arrays in blocks
                e = min(b, s + 2048)
                blk = _read_rows(tmp / "tracks.npy", shape, s, e)
                nblk = _read_rows(tmp / "noisy.npy", shape, s, e) if has_noise else None
                for k in range(e - s):
                    w.write(track_example(blk[k], s + k, seq_ids[s + k], None if nblk is None else nblk[k]))
                bar.update(e - s)
        meta.append(
            {"file": f.name, "first_track": a, "tracks": b - a, "bytes": f.stat().st_size, "sha256": sha256_file(f)}
        )
    bar.close()
    return meta


def _write_rows(tmp: Path, shape, has_noise: bool, progress: bool) -> dict:
    """The row store: every track's ``16*P*P`` bytes in a file of its own, so that ``tf.data`` reads any track
    with ``tf.io.read_file`` (random access without ``py_function``: see :mod:`hpatches_kit.data.cache`)."""
    from tqdm.auto import tqdm

    total = shape[0]
    kinds = [("tracks", "rows")] + ([("noisy", "rows_noisy")] if has_noise else [])
    bar = tqdm(total=total * len(kinds), desc="writing the row store", unit="track", disable=not progress, leave=False)
    for arr, folder in kinds:
        for d in range((total + ROWS_PER_DIR - 1) // ROWS_PER_DIR):
            (tmp / folder / f"{d:05d}").mkdir(parents=True)
        for s in range(0, total, 2048):
            e = min(total, s + 2048)
            blk = _read_rows(tmp / f"{arr}.npy", shape, s, e)
            for k in range(e - s):
                with open(tmp / folder / row_file(s + k), "wb") as f:
                    f.write(memoryview(blk[k]).cast("B"))
            bar.update(e - s)
    bar.close()
    return {
        "dir": "rows",
        "noisy_dir": "rows_noisy" if has_noise else None,
        "per_dir": ROWS_PER_DIR,
        "row_bytes": int(np.prod(shape[1:])),
    }
